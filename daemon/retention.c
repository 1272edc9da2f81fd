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
#include <string.h>

#include "core_api.h"
#include "job.h"
#include "log.h"
#include "retention.h"
#include "store.h"

/* Messages per transaction, and transactions per call: a call stops after
 * 16 transactions or 50 ms, so that the messages queued for their commit
 * meanwhile do not wait long; the store writer calls again 100 ms later
 * while there is more (a backlog, as when retention is first turned on). */
#define PURGE_BATCH     1000
#define PURGE_ROUNDS    16
#define PURGE_BUDGET_MS 50

/* Both ranges are (after, bound]: messages at or below `after` were
 * deleted but those whose delete was refused for good. Each with the step
 * its prepare is for the log: the four statements fail to prepare with
 * one code (SQLITE_ERROR) and may with one message ("no such column:
 * message_id"), so the statement tells one failure from the next (a
 * table repaired, another still short of its column). */
static const char READ_SQL[] = "SELECT max(id) FROM (SELECT id FROM messages WHERE id < ?1 AND id > ?2"
			       " ORDER BY id LIMIT ?3)";
static const struct {
	const char *sql, *prepare;
} purge_del[] = {
	{ "DELETE FROM attempts WHERE message_id <= ?1 AND message_id > ?2", "prepare delete attempts" },
	{ "DELETE FROM reports WHERE message_id <= ?1 AND message_id > ?2", "prepare delete reports" },
	{ "DELETE FROM messages WHERE id <= ?1 AND id > ?2", "prepare delete messages" },
};

struct purge {
	sqlite3 *db;
	sqlite3_stmt *sel, *del[3];
	const char *cut;          /* messages older: their ids are below it */
	struct smisd_retention *r;
	char bound[64];           /* the largest id of the transaction's batch */
	int n;                    /* messages it deleted */
	const char *what;         /* the step that failed, for the log */
	int rc;                   /* and SQLite's code */
	char reason[256];         /* and message */
};

/* The largest id of the next batch to delete, into p->bound: 1, or 0 when
 * there is nothing older than the cut, or -1 when the read failed (the
 * connection keeps SQLite's message). */
static int batch_bound(struct purge *p)
{
	sqlite3_stmt *sel = p->sel;
	int found = -1, step;

	sqlite3_reset(sel);
	sqlite3_bind_text(sel, 1, p->cut, -1, SQLITE_STATIC);
	sqlite3_bind_text(sel, 2, p->r->after, -1, SQLITE_STATIC);
	sqlite3_bind_int(sel, 3, p->r->batch);
	step = sqlite3_step(sel);
	if (step == SQLITE_ROW && sqlite3_column_type(sel, 0) == SQLITE_TEXT) {
		snprintf(p->bound, sizeof(p->bound), "%s", (const char *)sqlite3_column_text(sel, 0));
		found = 1;
	} else if (step == SQLITE_ROW || step == SQLITE_DONE) {
		found = 0;
	}
	sqlite3_reset(sel);
	return found;
}

/* One transaction: deletes the next batch (p->r->batch messages at most),
 * counted into p->n. Returns 1 when there was one, 0 when nothing was
 * left, or -1 when a step failed (p->what, p->rc, p->reason), the
 * transaction rolled back whole. */
static int purge_batch(struct purge *p, pthread_mutex_t *gate)
{
	int found = 0;

	p->n = 0;
	p->what = NULL;
	pthread_mutex_lock(gate);
	if (sqlite3_exec(p->db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK)
		p->what = "begin";
	/* A failed read is not "nothing to delete". */
	else if ((found = batch_bound(p)) < 0)
		p->what = "read";
	for (int i = 0; !p->what && found && i < 3; i++) {
		sqlite3_reset(p->del[i]);
		sqlite3_bind_text(p->del[i], 1, p->bound, -1, SQLITE_STATIC);
		sqlite3_bind_text(p->del[i], 2, p->r->after, -1, SQLITE_STATIC);
		if (sqlite3_step(p->del[i]) != SQLITE_DONE)
			p->what = "delete";
		if (i == 2)
			p->n = sqlite3_changes(p->db);
		sqlite3_reset(p->del[i]);
	}
	/* Even the read-only round ends with a COMMIT that must not fail
	 * unseen: a transaction left open would make the writer's next
	 * BEGIN fail. */
	if (!p->what && sqlite3_exec(p->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
		p->what = "commit";
	if (p->what) {
		p->rc = sqlite3_errcode(p->db);
		snprintf(p->reason, sizeof(p->reason), "%s", sqlite3_errmsg(p->db));
		/* SQLite may have rolled it back already: a trigger's
		 * RAISE(ROLLBACK), an interrupt. */
		if (!sqlite3_get_autocommit(p->db))
			sqlite3_exec(p->db, "ROLLBACK", NULL, NULL, NULL);
	}
	pthread_mutex_unlock(gate);
	return p->what ? -1 : found;
}

/* What a failed batch means. When its delete or commit was refused for a
 * reason that is about its rows (a trigger, a constraint, a damaged page;
 * not a lock, a full disk, an I/O error), the message refused is looked
 * for by halving the batch (some 2 log2(1,000) transactions, the parts
 * without it deleted on the way): HALVED; found alone, it is left out of
 * every later purge, logged: LEFT. Any other failure: FAILED. */
enum refusal { FAILED, HALVED, LEFT };

static enum refusal refusal_of(struct purge *p)
{
	if ((strcmp(p->what, "delete") != 0 && strcmp(p->what, "commit") != 0) || smisd_store_transient_error(p->rc))
		return FAILED;
	snprintf(p->r->refused_to, sizeof(p->r->refused_to), "%s", p->bound);
	if (p->r->batch > 1) {
		p->r->batch /= 2;
		return HALVED;
	}
	smisd_log(SMIS_LOG_ERROR, "store", p->bound, "retention: message left for good: %s refused: %s", p->what,
		  p->reason);
	snprintf(p->r->after, sizeof(p->r->after), "%s", p->bound);
	p->r->batch = PURGE_BATCH;
	return LEFT;
}

/* Whether the failure is the one that ended the last call again (the
 * same step, the statement of a prepare included, for the same reason):
 * it would otherwise be logged and
 * counted once a second for as long as it lasts, a lock held by another
 * process as a damaged page. A new one starts being remembered. */
static bool failed_again(struct purge *p)
{
	struct smisd_retention *r = p->r;

	if (r->failing && strcmp(r->failing, p->what) == 0 && r->failing_rc == (p->rc & 0xff)) {
		r->failing_tries++;
		return true;
	}
	r->failing = p->what;
	r->failing_rc = p->rc & 0xff;
	r->failing_since_ms = smisd_monotonic_ms();
	r->failing_tries = 1;
	return false;
}

/* A failure that ends the call: logged (1, to count) unless it is the one
 * that ended the last call again (0). */
static int failed_first(struct purge *p)
{
	if (failed_again(p))
		return 0;
	smisd_log(SMIS_LOG_ERROR, "store", NULL, "retention: %s failed: %s", p->what, p->reason);
	return 1;
}

/* A transaction got through (or was refused for its rows): the failure
 * that ended the calls before, if any, is over, and said so once. */
static void failing_over(struct smisd_retention *r)
{
	if (!r->failing)
		return;
	smisd_log(SMIS_LOG_WARN, "store", NULL, "retention: %s works again, after %ld failed tries in %.1f s",
		  r->failing, r->failing_tries, (double)(smisd_monotonic_ms() - r->failing_since_ms) / 1000);
	r->failing = NULL;
}

/* A batch deleted: once the range of the last refused one is passed
 * without a refusal (it went meanwhile: a trigger dropped), the batches
 * are whole again. */
static void deleted(struct purge *p)
{
	if (p->r->batch < PURGE_BATCH && strcmp(p->bound, p->r->refused_to) >= 0)
		p->r->batch = PURGE_BATCH;
}

long smisd_retention_purge(sqlite3 *db, pthread_mutex_t *gate, struct smisd_retention *r, int64_t before_ms,
			   bool *more, int *errors)
{
	struct purge p = { .db = db, .r = r };
	char cut[32];
	long purged = 0;
	int64_t started = smisd_monotonic_ms();

	*more = false;
	*errors = 0;
	smisd_id_time_bound("msg_", before_ms, cut, sizeof(cut));
	p.cut = cut;
	/* A longer store.retention_s (a reload) may bring the cut below what
	 * was left: those messages are tried again, once. */
	if (strcmp(r->after, cut) >= 0 || r->batch < 1) {
		r->after[0] = r->refused_to[0] = '\0';
		r->batch = PURGE_BATCH;
	}
	p.what = "prepare read";
	if (sqlite3_prepare_v2(db, READ_SQL, -1, &p.sel, NULL) != SQLITE_OK)
		goto prepare_failed;
	for (int i = 0; i < 3; i++) {
		p.what = purge_del[i].prepare;
		if (sqlite3_prepare_v2(db, purge_del[i].sql, -1, &p.del[i], NULL) != SQLITE_OK)
			goto prepare_failed;
	}
	for (int round = 0; round < PURGE_ROUNDS; round++) {
		int batch = r->batch, found = purge_batch(&p, gate);

		if (found < 0) {
			enum refusal refusal = refusal_of(&p);
			if (refusal == FAILED) {
				/* Only this transaction is undone; those
				 * committed before it stay deleted, and counted. */
				*errors += failed_first(&p);
				goto out;
			}
			failing_over(r);
			*errors += refusal == LEFT;
		} else {
			failing_over(r);
			if (!found)
				goto out;
			purged += p.n;
			deleted(&p);
			if (p.n < batch)
				goto out;
		}
		if (smisd_monotonic_ms() - started >= PURGE_BUDGET_MS)
			break;
	}
	*more = true;
out:
	sqlite3_finalize(p.sel);
	for (int i = 0; i < 3; i++)
		sqlite3_finalize(p.del[i]);
	return purged;
prepare_failed:
	/* A schema that lacks what the statements name ("no such column")
	 * fails them at every call, as a lock held does its transactions.
	 * p.what names the statement. */
	p.rc = sqlite3_errcode(db);
	snprintf(p.reason, sizeof(p.reason), "%s", sqlite3_errmsg(db));
	*errors += failed_first(&p);
	goto out;
}
