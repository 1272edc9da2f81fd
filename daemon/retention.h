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

/* What the purges remember from one call to the next; zeroed at first. */
struct smisd_retention {
	/* The newest message whose delete was refused for good (a trigger, a
	 * constraint, a damaged page): it is left, and what is older was
	 * deleted but such messages. Later purges delete above it only, so
	 * that one such message does not stop the retention of all younger
	 * ones; "" until then. Forgotten on restart: tried once again. */
	char after[64];
	/* Messages per transaction: 1,000, or fewer while a refused
	 * batch is halved to find the message refused, which is at or below
	 * refused_to. */
	int batch;
	char refused_to[64];
	/* The failure that ended the last call, if it did not get through
	 * (the same step failing for the same reason, once a second: another
	 * process holding the database's lock, a damaged page): logged and
	 * counted once when it starts, then tried again quietly at each call
	 * until one gets through, which logs how long it lasted and how many
	 * tries failed. `failing` is the step ("read", "delete", ...; a
	 * prepare names its statement: "prepare delete reports"), NULL when
	 * none; `failing_rc` SQLite's primary code. */
	const char *failing;
	int failing_rc;
	int64_t failing_since_ms; /* monotonic */
	long failing_tries;
};

/* Delete every message created before before_ms (ms since the epoch) but
 * those left (above), in transactions of at most 1,000 messages, each
 * taken with `gate` held (the store's write gate), 16 at most and for 50
 * ms at most per call; *more says whether the call stopped with old
 * messages left. Returns the number of messages deleted, in the
 * transactions committed. *errors counts what was logged as errors: a
 * failed transaction, which SQLite rolled back alone and which ended the
 * call (tried again at the next; one failing again as at the last call is
 * not logged again), and each message found refused and so left. Call on the connection's own thread (the store writer). */
long smisd_retention_purge(sqlite3 *db, pthread_mutex_t *gate, struct smisd_retention *r, int64_t before_ms,
			   bool *more, int *errors);

#endif
