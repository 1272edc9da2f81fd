/*
 * retention.h - the store's retention: messages older than
 * store.retention_s are deleted, with their attempts and reports.
 */
#ifndef SMISD_RETENTION_H
#define SMISD_RETENTION_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include <sqlite3.h>

/* Delete every message created before before_ms (ms since the epoch), in
 * transactions of at most 1,000 messages, each taken with `gate` held
 * (the store's write gate), 16 at most and for 50 ms at most per call;
 * *more says whether the call stopped with old messages left. Returns the
 * number of messages deleted, in the transactions committed; *failed says
 * whether SQLite failed (logged), which rolled back that transaction alone
 * and ended the call. Call on the connection's own thread (the store
 * writer). */
long smisd_retention_purge(sqlite3 *db, pthread_mutex_t *gate, int64_t before_ms, bool *more, bool *failed);

#endif
