/*
 * retention.c - deletes what the store holds of messages older than
 * store.retention_s: the message row (with its Idempotency-Key and stored
 * answer), its attempts and its reports.
 *
 * Message ids begin with their creation time (job.h), and the three tables
 * are keyed by message id first, so "created before T" is a range at the
 * start of each b-tree: no index on created_ms (one more page write for
 * every message stored) is needed to find them.
 */
#include "config.h"

#include <stdio.h>

#include "core_api.h"
#include "job.h"
#include "log.h"
#include "retention.h"

/* Messages per transaction, and transactions per call: a call stops after
 * 16,000 messages or 50 ms, so that the messages queued for their commit
 * meanwhile do not wait long; the store writer calls again 100 ms later
 * while there is more (a backlog, as when retention is first turned on). */
#define PURGE_BATCH     1000
#define PURGE_ROUNDS    16
#define PURGE_BUDGET_MS 50
#define STR_(x) #x
#define STR(x)  STR_(x)

static const char *const purge_sql[] = {
	"DELETE FROM attempts WHERE message_id <= ?1",
	"DELETE FROM reports WHERE message_id <= ?1",
	"DELETE FROM messages WHERE id <= ?1",
};

/* The largest id of the next batch to delete, into `bound`: 1, or 0 when
 * there is nothing older than `cut`, or -1 when the read failed (the
 * connection keeps SQLite's message). */
static int batch_bound(sqlite3_stmt *sel, const char *cut, char *bound, size_t size)
{
	int found = -1, step;
	sqlite3_reset(sel);
	sqlite3_bind_text(sel, 1, cut, -1, SQLITE_STATIC);
	step = sqlite3_step(sel);
	if (step == SQLITE_ROW && sqlite3_column_type(sel, 0) == SQLITE_TEXT) {
		snprintf(bound, size, "%s", (const char *)sqlite3_column_text(sel, 0));
		found = 1;
	} else if (step == SQLITE_ROW || step == SQLITE_DONE) {
		found = 0;
	}
	sqlite3_reset(sel);
	return found;
}

long smisd_retention_purge(sqlite3 *db, pthread_mutex_t *gate, int64_t before_ms, bool *more, bool *failed)
{
	sqlite3_stmt *sel = NULL, *del[3] = { NULL, NULL, NULL };
	char cut[32], bound[64];
	long purged = 0;
	int64_t started = smisd_monotonic_ms();

	*more = false;
	*failed = false;
	smisd_id_time_bound("msg_", before_ms, cut, sizeof(cut));
	if (sqlite3_prepare_v2(db, "SELECT max(id) FROM (SELECT id FROM messages WHERE id < ?1"
				   " ORDER BY id LIMIT " STR(PURGE_BATCH) ")",
			       -1, &sel, NULL) != SQLITE_OK)
		goto failed;
	for (int i = 0; i < 3; i++)
		if (sqlite3_prepare_v2(db, purge_sql[i], -1, &del[i], NULL) != SQLITE_OK)
			goto failed;
	for (int round = 0; round < PURGE_ROUNDS; round++) {
		int n = 0, found = 0;
		const char *what = NULL; /* the step that failed, for the log */

		pthread_mutex_lock(gate);
		if (sqlite3_exec(db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK)
			what = "begin";
		/* A failed read is not "nothing to delete". */
		else if ((found = batch_bound(sel, cut, bound, sizeof(bound))) < 0)
			what = "read";
		for (int i = 0; !what && found && i < 3; i++) {
			sqlite3_reset(del[i]);
			sqlite3_bind_text(del[i], 1, bound, -1, SQLITE_STATIC);
			if (sqlite3_step(del[i]) != SQLITE_DONE)
				what = "delete";
			if (i == 2)
				n = sqlite3_changes(db);
			sqlite3_reset(del[i]);
		}
		/* Even the read-only round ends with a COMMIT that must not fail
		 * unseen: a transaction left open would make the writer's next
		 * BEGIN fail. */
		if (!what && sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
			what = "commit";
		/* Only this transaction is undone (SQLite may have rolled it
		 * back already: a trigger's RAISE(ROLLBACK), an interrupt);
		 * those committed before it stay deleted, and counted. */
		if (what) {
			smisd_log(SMIS_LOG_ERROR, "store", NULL, "retention: %s failed: %s", what, sqlite3_errmsg(db));
			if (!sqlite3_get_autocommit(db))
				sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
			pthread_mutex_unlock(gate);
			*failed = true;
			goto out;
		}
		pthread_mutex_unlock(gate);
		if (!found)
			break;
		purged += n;
		if (n < PURGE_BATCH)
			break;
		if (round + 1 == PURGE_ROUNDS || smisd_monotonic_ms() - started >= PURGE_BUDGET_MS) {
			*more = true;
			break;
		}
	}
out:
	sqlite3_finalize(sel);
	for (int i = 0; i < 3; i++)
		sqlite3_finalize(del[i]);
	return purged;
failed:
	smisd_log(SMIS_LOG_ERROR, "store", NULL, "retention: %s", sqlite3_errmsg(db));
	*failed = true;
	goto out;
}
