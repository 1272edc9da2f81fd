/*
 * store.c - SQLite status store: one writer thread with group commit and
 * one shared read connection (WAL lets reads run beside the writer).
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <json-c/json.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <sqlite3.h>

#include "auth.h"
#include "core_api.h"
#include "dispatcher.h"
#include "json_writer.h"
#include "log.h"
#include "metrics.h"
#include "retention.h"
#include "store.h"
#include "unstored.h"

/* What a keyed request hash starts with; see smisd_store_same_request(). */
#define REQUEST_HASH_V1 "h1:"

struct report_item {
	char channel[64];
	bool by_id; /* the channel has SMIS_CAP_REPORTS_BY_ID: r.provider_ref is a message id */
	bool error_counted; /* refused for itself: counted once over the batch's tries */
	bool excluded; /* refused with the whole transaction: left out of the batch's next tries */
	bool drop_counted; /* not kept as an orphan (orphan_room): counted once over the batch's tries */
	struct smis_report r;
	struct report_item *next;
};

static void free_reports(struct report_item *r)
{
	while (r) {
		struct report_item *next = r->next;
		free(r);
		r = next;
	}
}

static sqlite3 *wdb, *rdb;
static pthread_t writer;
/* WAL checkpoints run on their own thread and connection: done by the
 * writer (SQLite's default), each one would stall every answer queued
 * behind it for the length of a disk flush. */
static pthread_t checkpointer;
static sqlite3 *cdb;
/*
 * A passive checkpoint never waits, but under steady writes it never
 * catches up either: frames are added while it copies, so the WAL is never
 * found fully copied, SQLite never starts it over, and it grows for as
 * long as the load lasts (65 MB a second at 6,000 msg/s). So once the WAL
 * holds WAL_RESTART_FRAMES, the checkpointer copies what is left with the
 * writer held off between two transactions (write_gate): a short stop,
 * since the bulk was copied just before without it, after which the
 * writer's next transaction starts the WAL over.
 */
#define WAL_RESTART_FRAMES 4096 /* 16 MiB of 4 KiB pages */
#define WAL_CATCHUP_PASSES 4    /* unheld copies before the held one, at most */
#define WAL_GATED_FRAMES 256    /* few enough to copy with the writer held */
static pthread_mutex_t write_gate = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t ccond = PTHREAD_COND_INITIALIZER;
static pthread_mutex_t qlock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t qcond = PTHREAD_COND_INITIALIZER;
static pthread_mutex_t rlock = PTHREAD_MUTEX_INITIALIZER;
static struct smisd_job_queue jq;
static struct report_item *rq_head, *rq_tail;
static size_t rq_len, rq_bound = 65536; /* queued reports; their bound */
static int pending;
static int stopping;
static int batch_limit;
static int queued;          /* jobs in jq */
static int commit_delay_ms; /* see smisd_store_open() */

static sqlite3_stmt *st_msg, *st_att, *st_find_att, *st_find_by_id, *st_rep, *st_upd, *st_exists;
static sqlite3_stmt *st_orphan, *st_orphan_get, *st_orphan_del, *st_orphan_expire, *st_orphan_count,
	*st_orphan_ref_count;
/* Prepared once: sqlite3_exec("BEGIN") compiles the statement on every call. */
static sqlite3_stmt *st_begin, *st_commit, *st_rollback;
static sqlite3_stmt *st_undo_att, *st_undo_msg; /* a message's rows out again (write_job_whole) */
static sqlite3_stmt *st_undo_rep;               /* a report's row out again (write_report) */

static const char schema[] =
	"PRAGMA journal_mode=WAL;"
	"PRAGMA synchronous=NORMAL;"
	/* The WAL file is cut back to 64 MiB when it is started over (see
	 * WAL_RESTART_FRAMES). */
	"PRAGMA journal_size_limit=67108864;"
	"CREATE TABLE IF NOT EXISTS messages ("
	" id TEXT PRIMARY KEY,"
	" institution TEXT NOT NULL,"
	" recipient_hash TEXT NOT NULL,"
	" reference TEXT,"
	" strategy TEXT NOT NULL,"
	" status TEXT NOT NULL,"
	" channel TEXT,"
	" error TEXT,"
	" created_ms INTEGER NOT NULL,"
	" updated_ms INTEGER NOT NULL,"
	" idem_key TEXT,"
	" request_hash TEXT,"
	" response TEXT NOT NULL,"
	" next_poll_ms INTEGER,"
	" polls INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID;"
	"CREATE UNIQUE INDEX IF NOT EXISTS messages_idem ON messages(institution, idem_key)"
	" WHERE idem_key IS NOT NULL;"
	"CREATE INDEX IF NOT EXISTS messages_poll ON messages(next_poll_ms) WHERE next_poll_ms IS NOT NULL;"
	"CREATE TABLE IF NOT EXISTS attempts ("
	" message_id TEXT NOT NULL,"
	" seq INTEGER NOT NULL,"
	" channel TEXT NOT NULL,"
	" operation TEXT NOT NULL,"
	" outcome TEXT NOT NULL,"
	" error TEXT,"
	" provider_ref TEXT,"
	" lookup_ref TEXT,"
	" sms_encoding TEXT, sms_chars INTEGER, sms_parts INTEGER,"
	" started_ms INTEGER NOT NULL,"
	" duration_ms INTEGER NOT NULL,"
	" PRIMARY KEY (message_id, seq)) WITHOUT ROWID;"
	"CREATE TABLE IF NOT EXISTS reports ("
	" message_id TEXT NOT NULL,"
	" channel TEXT NOT NULL,"
	" device TEXT NOT NULL,"
	" status TEXT NOT NULL,"
	" at_ms INTEGER NOT NULL,"
	" detail TEXT,"
	" PRIMARY KEY (message_id, channel, device, status));"
	"CREATE TABLE IF NOT EXISTS orphan_reports ("
	" channel TEXT NOT NULL, provider_ref TEXT NOT NULL, device TEXT NOT NULL,"
	" status INTEGER NOT NULL, at_ms INTEGER NOT NULL, detail TEXT, received_ms INTEGER NOT NULL);"
	"CREATE INDEX IF NOT EXISTS orphan_reports_ref ON orphan_reports(channel, provider_ref);";

/* A keyed HMAC template, duplicated per use: keying and fetching on every
 * call cost more than the hash itself. Rebuilt when the key changes. */
static pthread_mutex_t mac_lock = PTHREAD_MUTEX_INITIALIZER;
static EVP_MAC_CTX *mac_tmpl;
static unsigned char mac_key[64];
static size_t mac_keylen;

static unsigned mac_gen; /* under mac_lock: bumped when the key changes */

/* Each thread keeps its own context, re-initialised with the same key for
 * every hash: duplicating the template cost seven allocations a message. */
struct mac_cache {
	EVP_MAC_CTX *ctx;
	unsigned gen;
};
static pthread_key_t mac_tls;
static pthread_once_t mac_tls_once = PTHREAD_ONCE_INIT;
static bool mac_tls_ready;

static void mac_cache_free(void *p)
{
	struct mac_cache *c = p;

	EVP_MAC_CTX_free(c->ctx);
	free(c);
}

static void mac_tls_make(void)
{
	if (pthread_key_create(&mac_tls, mac_cache_free) != 0)
		abort();
	mac_tls_ready = true;
}

/* A context keyed with `key`, ready for update; owned by this thread. */
static EVP_MAC_CTX *phone_mac(const unsigned char *key, size_t keylen)
{
	struct mac_cache *c;
	unsigned gen;

	pthread_once(&mac_tls_once, mac_tls_make);
	c = pthread_getspecific(mac_tls);
	if (!c) {
		c = calloc(1, sizeof(*c));
		if (!c || pthread_setspecific(mac_tls, c) != 0) {
			free(c);
			return NULL;
		}
	}
	pthread_mutex_lock(&mac_lock);
	if (!mac_tmpl || keylen != mac_keylen || CRYPTO_memcmp(key, mac_key, keylen) != 0) {
		EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
		OSSL_PARAM params[] = {
			OSSL_PARAM_construct_utf8_string("digest", (char *)"SHA256", 0),
			OSSL_PARAM_construct_end(),
		};
		EVP_MAC_CTX_free(mac_tmpl);
		mac_tmpl = mac ? EVP_MAC_CTX_new(mac) : NULL;
		EVP_MAC_free(mac);
		if (mac_tmpl && EVP_MAC_init(mac_tmpl, key, keylen, params) != 1) {
			EVP_MAC_CTX_free(mac_tmpl);
			mac_tmpl = NULL;
		}
		memcpy(mac_key, key, keylen < sizeof(mac_key) ? keylen : sizeof(mac_key));
		mac_keylen = keylen;
		mac_gen++;
	}
	gen = mac_gen;
	if (c->ctx && c->gen == gen) {
		pthread_mutex_unlock(&mac_lock);
		/* NULL key: HMAC starts over with the key it has. */
		return EVP_MAC_init(c->ctx, NULL, 0, NULL) == 1 ? c->ctx : NULL;
	}
	EVP_MAC_CTX_free(c->ctx);
	c->ctx = mac_tmpl ? EVP_MAC_CTX_dup(mac_tmpl) : NULL;
	c->gen = gen;
	pthread_mutex_unlock(&mac_lock);
	return c->ctx;
}

/* At exit: the template and the exiting (main) thread's context, which no
 * key destructor frees. */
__attribute__((destructor)) static void phone_mac_release(void)
{
	if (mac_tls_ready) {
		struct mac_cache *c = pthread_getspecific(mac_tls);
		if (c)
			mac_cache_free(c);
		pthread_setspecific(mac_tls, NULL);
	}
	EVP_MAC_CTX_free(mac_tmpl);
	OPENSSL_cleanse(mac_key, sizeof(mac_key));
}

/* HMAC-SHA256(key, data) as 64 hex characters and a NUL: 0, or -1 when
 * OpenSSL could not compute it (out of memory), `out` then unusable. */
static int keyed_hash_hex(const unsigned char *key, size_t keylen, const void *data, size_t len,
			   char out[65])
{
	unsigned char mac[32];
	unsigned int maclen = sizeof(mac);
	static const char hex[] = "0123456789abcdef";
	EVP_MAC_CTX *ctx = phone_mac(key, keylen);
	size_t outl = 0;

	if (ctx && EVP_MAC_update(ctx, data, len) == 1 &&
	    EVP_MAC_final(ctx, mac, &outl, sizeof(mac)) == 1 && outl == sizeof(mac))
		maclen = (unsigned int)outl;
	else if (!HMAC(EVP_sha256(), key, (int)keylen, data, len, mac, &maclen) || maclen != sizeof(mac))
		return -1;
	for (int i = 0; i < 32; i++) {
		out[2 * i] = hex[mac[i] >> 4];
		out[2 * i + 1] = hex[mac[i] & 15];
	}
	out[64] = '\0';
	return 0;
}

int smisd_store_phone_hash(const unsigned char *key, size_t keylen, const char *e164, char out[65])
{
	return keyed_hash_hex(key, keylen, e164, strlen(e164), out);
}

/* Keyed with the phone key itself: a body is a JSON object, never an
 * E.164 number, so no request hash can equal a recipient's. */
int smisd_store_request_hash(const unsigned char *key, size_t keylen, const void *body, size_t len,
			     char out[SMISD_REQUEST_HASH_SIZE])
{
	memcpy(out, REQUEST_HASH_V1, strlen(REQUEST_HASH_V1));
	return keyed_hash_hex(key, keylen, body, len, out + strlen(REQUEST_HASH_V1));
}

bool smisd_store_same_request(const char *stored, const char *request_hash, const void *body, size_t len)
{
	char plain[65];

	if (strncmp(stored, REQUEST_HASH_V1, strlen(REQUEST_HASH_V1)) == 0)
		return strcmp(stored, request_hash) == 0;
	/* Written before request hashes were keyed: the body's SHA-256. */
	smisd_sha256_hex(body, len, plain);
	return strcmp(stored, plain) == 0;
}

static const char *report_status_name(enum smis_report_status s)
{
	switch (s) {
	case SMIS_REPORT_PENDING:
		return "pending";
	case SMIS_REPORT_DELIVERED:
		return "delivered";
	case SMIS_REPORT_READ:
		return "read";
	case SMIS_REPORT_FAILED:
		return "undelivered";
	case SMIS_REPORT_NONE:
		break;
	}
	return "none";
}

/* Step a statement that returns no row; SQLITE_OK or the error. */
static int run_stmt(sqlite3_stmt *st)
{
	int rc = sqlite3_step(st);

	sqlite3_reset(st);
	return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

/* Failures that say nothing about the rows: the database is locked by
 * another writer past busy_timeout, full, read-only, or failing to read or
 * write. The batch is rolled back and written again, whole, once the
 * cause may have gone; dropping it would lose records (and Idempotency-Keys)
 * of messages already sent and, by default, already answered. */
bool smisd_store_transient_error(int rc)
{
	switch (rc & 0xff) {
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
	case SQLITE_FULL:
	case SQLITE_IOERR:
	case SQLITE_READONLY:
	case SQLITE_NOMEM:
	case SQLITE_CANTOPEN:
	case SQLITE_PROTOCOL:
		return true;
	default:
		return false;
	}
}

static int write_report(struct report_item *it, sqlite3_int64 *undo);
static int take_back_report(sqlite3_int64 undo, int rc);

/* A statement of the writer failed where nothing retries it: said once in
 * the log (what and why, never a row's content) and counted. */
static void count_store_error(const char *operation)
{
	char labels[64];

	snprintf(labels, sizeof(labels), "operation=\"%s\"", operation);
	smisd_metric_add("smis_store_errors_total", labels, 1);
}

static void store_failed(const char *operation, const char *id, int rc)
{
	count_store_error(operation);
	smisd_log(SMIS_LOG_ERROR, "store", id, "%s failed: %s (%s)", operation, sqlite3_errstr(rc),
		  sqlite3_errmsg(wdb));
}

/* store_failed once for a row however often its batch is tried again
 * (after a transient failure): `*counted` says whether it was. */
static void store_failed_once(const char *operation, const char *id, int rc, bool *counted)
{
	if (!*counted)
		store_failed(operation, id, rc);
	*counted = true;
}

/*
 * A refused statement may end the whole transaction, not only itself (a
 * trigger's RAISE(ROLLBACK), an interrupt): what the batch wrote before it
 * is gone, and what came after would be committed statement by statement,
 * outside any transaction. The record refused is then left out and the
 * batch written again at once (write_batch_until_stored); each such try
 * leaves out one record more, so they end.
 */
#define BATCH_ROLLED_BACK (-1)

/* A statement's failure that no retry would cure: refused for the row. */
static bool refused(int rc)
{
	return rc != SQLITE_OK && rc != SQLITE_DONE && rc != BATCH_ROLLED_BACK && !smisd_store_transient_error(rc);
}

/* What a failed statement of a batch means for the batch: a transient
 * failure is returned, and the whole batch rolled back and written again
 * (SQLite may have rolled the transaction back already); any other is
 * logged and counted (store_failed, once over the tries with `counted`)
 * and the batch goes on (SQLITE_OK), unless the refusal ended the
 * transaction (BATCH_ROLLED_BACK, which is passed on as it is). */
static int unless_transient(int rc, const char *operation, const char *id, bool *counted)
{
	if (!refused(rc))
		return rc == SQLITE_DONE ? SQLITE_OK : rc;
	store_failed_once(operation, id, rc, counted);
	return sqlite3_get_autocommit(wdb) ? BATCH_ROLLED_BACK : SQLITE_OK;
}

/* unless_transient() for the adoption of a job's orphan reports. These are
 * read anew at each try (rows, not items kept over the tries), the same
 * ones in the same order: the try's n-th failure (*failures counts them)
 * was counted if an earlier try had n. */
static int unless_transient_adopting(int rc, const char *operation, struct smisd_job *job, int *failures)
{
	bool counted = false;

	if (refused(rc)) {
		counted = ++*failures <= job->orphan_errors_counted;
		if (!counted)
			job->orphan_errors_counted = *failures;
	}
	return unless_transient(rc, operation, job->id, &counted);
}

/* Reports that arrived before this job's attempts were stored. Such
 * reports are rare: skip the lookups while none are kept. */
static long orphans_kept = -1; /* -1: unknown (rows may exist from before) */

/* The n-th orphan report read for a job (in the same order at each try)
 * refused with the whole transaction: its bit in job->orphans_excluded. */
static bool orphan_excluded(const struct smisd_job *job, size_t n)
{
	return n / 64 < job->n_orphans_excluded && ((job->orphans_excluded[n / 64] >> (n % 64)) & 1);
}

/* Leave the n-th orphan report out of the job's next tries. Without
 * memory for its bit, all the job's orphans are left (kept, and expired
 * in a day). */
static void exclude_orphan(struct smisd_job *job, size_t n)
{
	if (n / 64 >= job->n_orphans_excluded) {
		size_t words = n / 64 + 1;
		uint64_t *grown = realloc(job->orphans_excluded, words * sizeof(*grown));
		if (!grown) {
			smisd_log(SMIS_LOG_ERROR, "store", job->id, "out of memory: its orphan reports are left");
			job->orphans_left = true;
			return;
		}
		memset(grown + job->n_orphans_excluded, 0, (words - job->n_orphans_excluded) * sizeof(*grown));
		job->orphans_excluded = grown;
		job->n_orphans_excluded = words;
	}
	job->orphans_excluded[n / 64] |= (uint64_t)1 << (n % 64);
}

static int adopt_orphans(struct smisd_job *job)
{
	int rc = SQLITE_OK, failures = 0;
	size_t n = 0;

	if (orphans_kept == 0 || job->orphans_left)
		return SQLITE_OK;
	for (size_t i = 0; rc == SQLITE_OK && i < job->n_attempts; i++) {
		const struct smisd_attempt *a = &job->attempts[i];
		bool by_id = (a->ch->caps & SMIS_CAP_REPORTS_BY_ID) != 0;
		const char *key = by_id ? job->id : a->out.provider_ref;
		if (a->op != SMIS_OP_SEND || !a->out.provider_ref[0])
			continue;
		sqlite3_reset(st_orphan_get);
		sqlite3_bind_text(st_orphan_get, 1, a->ch->name, -1, SQLITE_STATIC);
		sqlite3_bind_text(st_orphan_get, 2, key, -1, SQLITE_STATIC);
		while ((rc = sqlite3_step(st_orphan_get)) == SQLITE_ROW) {
			struct report_item it;
			memset(&it, 0, sizeof(it));
			snprintf(it.channel, sizeof(it.channel), "%s", a->ch->name);
			it.by_id = by_id;
			snprintf(it.r.provider_ref, sizeof(it.r.provider_ref), "%s", key);
			snprintf(it.r.device, sizeof(it.r.device), "%s", (const char *)sqlite3_column_text(st_orphan_get, 0));
			it.r.status = (enum smis_report_status)sqlite3_column_int(st_orphan_get, 1);
			it.r.at_ms = sqlite3_column_int64(st_orphan_get, 2);
			snprintf(it.r.detail, sizeof(it.r.detail), "%s",
				 sqlite3_column_text(st_orphan_get, 3) ? (const char *)sqlite3_column_text(st_orphan_get, 3) : "");
			/* Left out: refused at an earlier try (and counted then),
			 * as it would be again; its failure keeps its number. */
			if (orphan_excluded(job, n++)) {
				failures++;
				continue;
			}
			sqlite3_int64 undo = 0;
			rc = unless_transient_adopting(write_report(&it, &undo), "report", job, &failures);
			rc = take_back_report(undo, rc);
			if (rc == BATCH_ROLLED_BACK)
				exclude_orphan(job, n - 1);
			if (rc != SQLITE_OK)
				break;
		}
		sqlite3_reset(st_orphan_get);
		if (rc == SQLITE_DONE) {
			sqlite3_bind_text(st_orphan_del, 1, a->ch->name, -1, SQLITE_STATIC);
			sqlite3_bind_text(st_orphan_del, 2, key, -1, SQLITE_STATIC);
			rc = run_stmt(st_orphan_del);
		}
		/* The lookup or the delete itself ended the transaction: the
		 * orphans are left as they are (kept, and expired in time). */
		if (rc != BATCH_ROLLED_BACK &&
		    (rc = unless_transient_adopting(rc, "adopt_orphans", job, &failures)) == BATCH_ROLLED_BACK)
			job->orphans_left = true;
	}
	return rc;
}

/* SQLITE_OK, or the code of the statement that failed; *row says whether
 * the message row went in. */
static int write_job(struct smisd_job *job, bool *row)
{
	int rc = SQLITE_OK, step;
	int64_t now = smisd_now_ms();

	sqlite3_reset(st_msg);
	sqlite3_bind_text(st_msg, 1, job->id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st_msg, 2, job->inst->name, -1, SQLITE_STATIC);
	sqlite3_bind_text(st_msg, 3, job->recipient_hash, -1, SQLITE_STATIC);
	if (job->req.reference)
		sqlite3_bind_text(st_msg, 4, job->req.reference, -1, SQLITE_STATIC);
	else
		sqlite3_bind_null(st_msg, 4);
	sqlite3_bind_text(st_msg, 5, job->strategy->name, -1, SQLITE_STATIC);
	sqlite3_bind_text(st_msg, 6, job->status, -1, SQLITE_STATIC);
	if (job->channel)
		sqlite3_bind_text(st_msg, 7, job->channel, -1, SQLITE_STATIC);
	else
		sqlite3_bind_null(st_msg, 7);
	if (job->error[0])
		sqlite3_bind_text(st_msg, 8, job->error, -1, SQLITE_STATIC);
	else
		sqlite3_bind_null(st_msg, 8);
	sqlite3_bind_int64(st_msg, 9, job->created_ms);
	sqlite3_bind_int64(st_msg, 10, job->concluded_ms);
	if (job->idem_key) {
		sqlite3_bind_text(st_msg, 11, job->idem_key, -1, SQLITE_STATIC);
		sqlite3_bind_text(st_msg, 12, job->request_hash, -1, SQLITE_STATIC);
	} else {
		sqlite3_bind_null(st_msg, 11);
		sqlite3_bind_null(st_msg, 12);
	}
	sqlite3_bind_text(st_msg, 13, job->response_json ? job->response_json : "{}", -1, SQLITE_STATIC);
	if (strcmp(job->status, "sent") == 0 && job->gen->settings.poll_after_s > 0 &&
	    job->gen->settings.poll_max > 0)
		sqlite3_bind_int64(st_msg, 14, now + (int64_t)job->gen->settings.poll_after_s * 1000);
	else
		sqlite3_bind_null(st_msg, 14);
	if ((step = sqlite3_step(st_msg)) != SQLITE_DONE)
		rc = step;
	*row = rc == SQLITE_OK;
	for (size_t i = 0; rc == SQLITE_OK && i < job->n_attempts; i++) {
		const struct smisd_attempt *a = &job->attempts[i];
		sqlite3_reset(st_att);
		sqlite3_bind_text(st_att, 1, job->id, -1, SQLITE_STATIC);
		sqlite3_bind_int(st_att, 2, (int)i);
		sqlite3_bind_text(st_att, 3, a->ch->name, -1, SQLITE_STATIC);
		sqlite3_bind_text(st_att, 4, smisd_op_name(a->op), -1, SQLITE_STATIC);
		sqlite3_bind_text(st_att, 5, smisd_outcome_name(a->out.kind, a->op), -1, SQLITE_STATIC);
		if (a->out.error[0])
			sqlite3_bind_text(st_att, 6, a->out.error, -1, SQLITE_STATIC);
		else
			sqlite3_bind_null(st_att, 6);
		if (a->out.provider_ref[0] && a->op == SMIS_OP_SEND)
			sqlite3_bind_text(st_att, 7, a->out.provider_ref, -1, SQLITE_STATIC);
		else
			sqlite3_bind_null(st_att, 7);
		/* The indexed key reports are matched by: none when they name
		 * the message itself (its primary key serves). */
		if (a->out.provider_ref[0] && a->op == SMIS_OP_SEND && !(a->ch->caps & SMIS_CAP_REPORTS_BY_ID))
			sqlite3_bind_text(st_att, 13, a->out.provider_ref, -1, SQLITE_STATIC);
		else
			sqlite3_bind_null(st_att, 13);
		if (a->out.sms_parts > 0) {
			sqlite3_bind_text(st_att, 8, a->out.sms_encoding, -1, SQLITE_STATIC);
			sqlite3_bind_int(st_att, 9, a->out.sms_chars);
			sqlite3_bind_int(st_att, 10, a->out.sms_parts);
		} else {
			sqlite3_bind_null(st_att, 8);
			sqlite3_bind_null(st_att, 9);
			sqlite3_bind_null(st_att, 10);
		}
		sqlite3_bind_int64(st_att, 11, a->started_ms);
		sqlite3_bind_int64(st_att, 12, a->elapsed_ms);
		if ((step = sqlite3_step(st_att)) != SQLITE_DONE)
			rc = step;
	}
	if (rc == SQLITE_OK)
		rc = adopt_orphans(job);
	return rc;
}

/* Status order: a report may only move a message forward. */
static int status_rank(const char *s)
{
	if (strcmp(s, "read") == 0)
		return 4;
	if (strcmp(s, "delivered") == 0)
		return 3;
	if (strcmp(s, "undelivered") == 0)
		return 2;
	if (strcmp(s, "sent") == 0)
		return 1;
	return 0;
}

/* Orphans come from anyone who can post an authentic webhook while a
 * message is in flight (a provider misbehaving, a leaked webhook secret),
 * for references that may never be stored: at most ORPHANS_PER_REF are
 * kept per (channel, reference), more than a message's statuses on all its
 * devices, and ORPHANS_MAX in all (37 MB of database with 200-byte
 * details and 32-character references, measured); the day's expiry alone
 * bounded them. Those past either are dropped: counted, and logged once a
 * second (log_orphans), not one by one. */
#define ORPHANS_PER_REF 100
#define ORPHANS_MAX     100000
static long orphans_dropped; /* since the last log */

/* Orphan reports kept, in all and per channel: a line each is logged
 * (log_orphans). Reports come from the few channels with webhooks; those
 * of channels past the first ORPHAN_TALLY_CHANNELS of a second are
 * counted together, as on other channels. */
#define ORPHAN_TALLY_CHANNELS 8
struct orphan_tally {
	long n;
	struct {
		char channel[64];
		long n;
	} by[ORPHAN_TALLY_CHANNELS];
	long others;
};
/* Those the batch being written kept: in orphans_kept and the log only
 * once it commits, as a batch rolled back is written again (it counted
 * them at each try, and the total bound then dropped reports early, until
 * the once-a-second recount). */
static struct orphan_tally batch_kept;
/* Those committed since the last log: logged once a second with how many
 * (log_orphans), not one line each (up to 100,000 in a flood). */
static struct orphan_tally kept_since_log;

/* n more on `channel` (NULL: on other channels). The channels' places
 * are taken in order: the first free one ends those taken. */
static void tally_add(struct orphan_tally *t, const char *channel, long n)
{
	size_t i = 0;

	if (n <= 0)
		return;
	t->n += n;
	while (channel && i < ORPHAN_TALLY_CHANNELS && t->by[i].n > 0 && strcmp(t->by[i].channel, channel) != 0)
		i++;
	if (!channel || i == ORPHAN_TALLY_CHANNELS) {
		t->others += n;
		return;
	}
	if (t->by[i].n == 0)
		snprintf(t->by[i].channel, sizeof(t->by[i].channel), "%s", channel);
	t->by[i].n += n;
}

/* The end of a batch's transaction: what it kept counts if committed. */
static void orphans_batch_ended(bool committed)
{
	if (committed && batch_kept.n > 0) {
		if (orphans_kept >= 0)
			orphans_kept += batch_kept.n;
		smisd_metric_add("smis_orphan_reports_kept_total", "", (double)batch_kept.n);
		for (size_t i = 0; i < ORPHAN_TALLY_CHANNELS; i++)
			tally_add(&kept_since_log, batch_kept.by[i].channel, batch_kept.by[i].n);
		tally_add(&kept_since_log, NULL, batch_kept.others);
	}
	batch_kept = (struct orphan_tally){ 0 };
}

/* Whether one more orphan report fits (*room); SQLITE_OK or the code of
 * the count that failed. */
static int orphan_room(const struct report_item *it, bool *room)
{
	int rc;

	if (orphans_kept < 0) {
		/* The count sees the batch's own rows, not committed yet. */
		if ((rc = sqlite3_step(st_orphan_count)) == SQLITE_ROW)
			orphans_kept = sqlite3_column_int64(st_orphan_count, 0) - batch_kept.n;
		sqlite3_reset(st_orphan_count);
		if (rc != SQLITE_ROW)
			return rc;
	}
	*room = orphans_kept + batch_kept.n < ORPHANS_MAX;
	if (!*room)
		return SQLITE_OK;
	sqlite3_bind_text(st_orphan_ref_count, 1, it->channel, -1, SQLITE_STATIC);
	sqlite3_bind_text(st_orphan_ref_count, 2, it->r.provider_ref, -1, SQLITE_STATIC);
	if ((rc = sqlite3_step(st_orphan_ref_count)) == SQLITE_ROW)
		*room = sqlite3_column_int64(st_orphan_ref_count, 0) < ORPHANS_PER_REF;
	sqlite3_reset(st_orphan_ref_count);
	return rc == SQLITE_ROW ? SQLITE_OK : rc;
}

static void log_orphans(void)
{
	for (size_t i = 0; i < ORPHAN_TALLY_CHANNELS && kept_since_log.by[i].n > 0; i++)
		smisd_log(SMIS_LOG_INFO, "store", NULL,
			  "%ld report(s) for provider references not stored yet kept, on channel %s",
			  kept_since_log.by[i].n, kept_since_log.by[i].channel);
	if (kept_since_log.others > 0)
		smisd_log(SMIS_LOG_INFO, "store", NULL,
			  "%ld report(s) for provider references not stored yet kept, on other channels",
			  kept_since_log.others);
	if (orphans_dropped > 0)
		smisd_log(SMIS_LOG_WARN, "store", NULL,
			  "%ld report(s) for provider references not stored yet dropped: %d kept for the reference"
			  " or %d in all already", orphans_dropped, ORPHANS_PER_REF, ORPHANS_MAX);
	kept_since_log = (struct orphan_tally){ 0 };
	orphans_dropped = 0;
}

/* A report can overtake the send's own answer (a fast DLR): keep it until
 * the attempt is written, for a day at most. */
static int keep_orphan(struct report_item *it)
{
	bool room = false;
	int rc;

	if ((rc = orphan_room(it, &room)) != SQLITE_OK)
		return rc;
	if (!room) {
		if (!it->drop_counted) {
			smisd_metric_add("smis_orphan_reports_dropped_total", "", 1);
			orphans_dropped++;
		}
		it->drop_counted = true;
		return SQLITE_OK;
	}
	sqlite3_bind_text(st_orphan, 1, it->channel, -1, SQLITE_STATIC);
	sqlite3_bind_text(st_orphan, 2, it->r.provider_ref, -1, SQLITE_STATIC);
	sqlite3_bind_text(st_orphan, 3, it->r.device, -1, SQLITE_STATIC);
	sqlite3_bind_int(st_orphan, 4, (int)it->r.status);
	sqlite3_bind_int64(st_orphan, 5, it->r.at_ms ? it->r.at_ms : smisd_now_ms());
	sqlite3_bind_text(st_orphan, 6, it->r.detail, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st_orphan, 7, smisd_now_ms());
	if ((rc = run_stmt(st_orphan)) != SQLITE_OK)
		return rc;
	tally_add(&batch_kept, it->channel, 1);
	return SQLITE_OK;
}

/* SQLITE_OK, or the code of the first statement that failed (what came
 * before it stays in the transaction). When its status update was refused
 * after its row went in, *undo is that row's rowid (else 0): the caller
 * takes it back (take_back_report) once the refusal is logged. */
static int write_report(struct report_item *it, sqlite3_int64 *undo)
{
	const char *mid;
	char id[64];
	const char *st = report_status_name(it->r.status);
	sqlite3_stmt *find;
	sqlite3_int64 rowid;
	bool inserted, final;
	int rc;

	if (it->r.status == SMIS_REPORT_NONE || it->r.status == SMIS_REPORT_PENDING)
		return SQLITE_OK;
	find = it->by_id ? st_find_by_id : st_find_att;
	sqlite3_reset(find);
	sqlite3_bind_text(find, 1, it->channel, -1, SQLITE_STATIC);
	sqlite3_bind_text(find, 2, it->r.provider_ref, -1, SQLITE_STATIC);
	rc = sqlite3_step(find);
	mid = rc == SQLITE_ROW ? (const char *)sqlite3_column_text(find, 0) : NULL;
	snprintf(id, sizeof(id), "%s", mid ? mid : "");
	sqlite3_reset(find);
	if (rc == SQLITE_DONE)
		return keep_orphan(it);
	if (rc != SQLITE_ROW)
		return rc;
	sqlite3_bind_text(st_rep, 1, id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st_rep, 2, it->channel, -1, SQLITE_STATIC);
	sqlite3_bind_text(st_rep, 3, it->r.device, -1, SQLITE_STATIC);
	sqlite3_bind_text(st_rep, 4, st, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st_rep, 5, it->r.at_ms ? it->r.at_ms : smisd_now_ms());
	sqlite3_bind_text(st_rep, 6, it->r.detail, -1, SQLITE_STATIC);
	/* The status moves only with a report stored to show for it. */
	if ((rc = run_stmt(st_rep)) != SQLITE_OK)
		return rc;
	inserted = sqlite3_changes(wdb) > 0; /* not there already (OR IGNORE) */
	rowid = sqlite3_last_insert_rowid(wdb);
	/* A final report ends status polling for an SMS, and the message's
	 * once none of its sends is left to ask about (POLLED_SEND): the app
	 * notification of govapp_and_sms goes on being polled. App messages go
	 * to several devices: one device's final word says nothing of the
	 * others, so their polling runs its bounded course (max_polls). */
	final = it->r.device[0] == '\0' &&
		(it->r.status == SMIS_REPORT_DELIVERED || it->r.status == SMIS_REPORT_FAILED);
	/* Move the message's overall status forward only; one statement with
	 * the end of polling, so that either is written with the other. */
	sqlite3_bind_text(st_upd, 1, st, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st_upd, 2, smisd_now_ms());
	sqlite3_bind_text(st_upd, 3, id, -1, SQLITE_STATIC);
	sqlite3_bind_int(st_upd, 4, status_rank(st));
	sqlite3_bind_int(st_upd, 5, final);
	if ((rc = run_stmt(st_upd)) != SQLITE_OK && inserted && refused(rc))
		*undo = rowid;
	return rc;
}

/* A report and the status it moves are stored together or not at all: the
 * row of a report whose status update was refused (write_report's `undo`)
 * is deleted again, unless the refusal (`rc`, as unless_transient() took
 * it) ended the transaction. A row that cannot be deleted takes the whole
 * transaction with it, and the batch is written again without the report:
 * BATCH_ROLLED_BACK. */
static int take_back_report(sqlite3_int64 undo, int rc)
{
	if (!undo || rc != SQLITE_OK)
		return rc;
	sqlite3_bind_int64(st_undo_rep, 1, undo);
	if (run_stmt(st_undo_rep) == SQLITE_OK)
		return SQLITE_OK;
	run_stmt(st_rollback);
	return BATCH_ROLLED_BACK;
}

/* Reports kept for a message that was never stored (its send's answer
 * lost, or a report for a reference SMIS never returned while others were
 * in flight) go after a day. Runs once a second on the writer, with or
 * without status polling. */
#define ORPHAN_KEEP_MS 86400000
static void expire_orphans(void)
{
	int rc;

	log_orphans();
	if (orphans_kept == 0)
		return;
	sqlite3_bind_int64(st_orphan_expire, 1, smisd_now_ms() - ORPHAN_KEEP_MS);
	if ((rc = run_stmt(st_orphan_expire)) != SQLITE_OK) {
		store_failed("expire_orphans", NULL, rc);
		return;
	}
	/* Recount: adopted and expired rows are gone. */
	if ((rc = sqlite3_step(st_orphan_count)) == SQLITE_ROW)
		orphans_kept = sqlite3_column_int64(st_orphan_count, 0);
	else
		store_failed("expire_orphans", NULL, rc);
	sqlite3_reset(st_orphan_count);
}

/* A poll job: SMIS_OP_STATUS on `ch` for message `id`'s send that returned
 * `ref`; NULL when out of memory. */
static struct smisd_job *poll_job(struct smisd_generation *g, const struct smisd_channel *ch, const char *id,
				  const char *ref)
{
	struct smisd_job *job = calloc(1, sizeof(*job));
	if (!job || !(job->calls = calloc(g->n_channels + 1, sizeof(void *)))) {
		free(job);
		return NULL;
	}
	snprintf(job->id, sizeof(job->id), "%s", id);
	snprintf(job->poll_ref, sizeof(job->poll_ref), "%s", ref);
	job->gen = smisd_generation_ref(g);
	job->poll_channel = ch;
	job->single_op = SMIS_OP_STATUS;
	job->deadline_mono = smisd_monotonic_ms() + g->settings.job_timeout_ms;
	job->msg.size = sizeof(job->msg);
	job->msg.id = job->id;
	job->msg.recipient = "";
	job->msg.institution = "";
	job->msg.provider_ref = job->poll_ref;
	return job;
}

/* Messages sent whose final report has not come: ask the channel (its
 * SMIS_OP_STATUS) through the dispatcher. Runs on the writer thread, so
 * the bookkeeping update needs no other connection. The polls are handed
 * to the loops only after the COMMIT that counts them, so that what the
 * store says (polls made, next poll) is never behind what was asked.
 *
 * A round asks each polled send of a due message (govapp_and_sms has two)
 * and counts one poll of the message. The sends are all read before any
 * count is written: a message row updated under the open SELECT read as
 * NULL in the rows after, so the second send was polled for message
 * "(null)" and its reports were never matched. */
#define POLL_BATCH 256 /* messages a round */
/* A send `a` that polls ask about: it went out with a provider reference,
 * and no final report for no device in particular (an SMS's: delivered or
 * undelivered) has come for it. App reports name their device: an app
 * notification is asked until the message's max_polls. */
#define POLLED_SEND                                                                                 \
	"a.operation = 'send' AND a.outcome = 'sent' AND a.provider_ref IS NOT NULL AND NOT EXISTS" \
	" (SELECT 1 FROM reports r WHERE r.message_id = a.message_id AND r.channel = a.channel"     \
	" AND r.device = '' AND r.status IN ('delivered', 'undelivered'))"
struct poll_count {
	char id[SMISD_ID_LEN];
	int polls; /* made before this round */
};

/* The due messages into `counts` (*n of them), and a poll job for each of
 * their sends on a channel with SMIS_CAP_STATUS into `due`: SQLITE_DONE,
 * or the error. */
static int read_due(struct smisd_generation *g, int64_t now, struct poll_count *counts, size_t *n,
		    struct smisd_job_queue *due)
{
	sqlite3_stmt *sel = NULL;
	int rc;

	*n = 0;
	if ((rc = sqlite3_prepare_v2(wdb, "SELECT m.id, a.channel, a.provider_ref, m.polls FROM"
					  " (SELECT id, polls FROM messages WHERE next_poll_ms IS NOT NULL AND next_poll_ms <= ?"
					  "  AND EXISTS (SELECT 1 FROM attempts a WHERE a.message_id = messages.id AND " POLLED_SEND ")"
					  "  LIMIT 256 /* POLL_BATCH */) m"
					  " JOIN attempts a ON a.message_id = m.id WHERE " POLLED_SEND " ORDER BY m.id",
				     -1, &sel, NULL)) != SQLITE_OK)
		return rc;
	sqlite3_bind_int64(sel, 1, now);
	while ((rc = sqlite3_step(sel)) == SQLITE_ROW) {
		const char *id = (const char *)sqlite3_column_text(sel, 0);
		const struct smisd_channel *ch = smisd_generation_channel(g, (const char *)sqlite3_column_text(sel, 1));
		struct smisd_job *job;
		/* A message's rows come together (ORDER BY m.id). */
		if (*n == 0 || strcmp(counts[*n - 1].id, id) != 0) {
			if (*n == POLL_BATCH) /* not counted: not asked (LIMIT: cannot happen) */
				continue;
			snprintf(counts[*n].id, sizeof(counts[*n].id), "%s", id);
			counts[(*n)++].polls = sqlite3_column_int(sel, 3);
		}
		if (ch && (ch->caps & SMIS_CAP_STATUS) &&
		    (job = poll_job(g, ch, id, (const char *)sqlite3_column_text(sel, 2))))
			smisd_job_queue_push(due, job);
	}
	sqlite3_finalize(sel);
	return rc;
}

/* Count a poll of each message, and set its next one: SQLITE_OK or the error. */
static int count_polls(struct smisd_generation *g, int64_t now, const struct poll_count *counts, size_t n)
{
	sqlite3_stmt *upd = NULL;
	int rc = sqlite3_prepare_v2(wdb, "UPDATE messages SET polls = ?, next_poll_ms = ? WHERE id = ?", -1, &upd, NULL);

	for (size_t i = 0; rc == SQLITE_OK && i < n; i++) {
		int polls = counts[i].polls + 1;
		int64_t next = polls >= g->settings.poll_max ? 0 :
			       now + ((int64_t)g->settings.poll_interval_s * 1000 << (polls - 1 < 10 ? polls - 1 : 10));
		sqlite3_bind_int(upd, 1, polls);
		if (next)
			sqlite3_bind_int64(upd, 2, next);
		else
			sqlite3_bind_null(upd, 2);
		sqlite3_bind_text(upd, 3, counts[i].id, -1, SQLITE_STATIC);
		rc = run_stmt(upd);
	}
	sqlite3_finalize(upd);
	return rc;
}

static void poll_due(void)
{
	struct smisd_generation *g = smisd_generation_acquire();
	int64_t now = smisd_now_ms();
	struct poll_count counts[POLL_BATCH];
	struct smisd_job_queue due = { NULL, NULL };
	struct smisd_job *job;
	size_t n;
	int rc;

	if (!g || g->settings.poll_after_s <= 0)
		goto out;
	if ((rc = sqlite3_exec(wdb, "BEGIN", NULL, NULL, NULL)) != SQLITE_OK)
		goto failed;
	/* A poll whose count is not written is not made. */
	if ((rc = read_due(g, now, counts, &n, &due)) == SQLITE_DONE &&
	    (rc = count_polls(g, now, counts, n)) == SQLITE_OK)
		rc = sqlite3_exec(wdb, "COMMIT", NULL, NULL, NULL);
	if (rc == SQLITE_OK) {
		while ((job = smisd_job_queue_pop(&due)))
			smisd_dispatcher_submit(job);
		goto out;
	}
	while ((job = smisd_job_queue_pop(&due)))
		smisd_job_free(job);
failed:
	store_failed("poll", NULL, rc);
	/* A failed COMMIT (SQLITE_BUSY) leaves the transaction open, and the
	 * writer's next BEGIN would fail with it: nothing else is written. */
	if (!sqlite3_get_autocommit(wdb) && (rc = sqlite3_exec(wdb, "ROLLBACK", NULL, NULL, NULL)) != SQLITE_OK)
		store_failed("poll_rollback", NULL, rc);
out:
	smisd_generation_unref(g);
}

/*
 * Reports are matched through attempts.lookup_ref, indexed. A database made
 * before that column matched them by provider_ref: the column is added,
 * filled with provider_ref (what those rows' reports still carry, unless
 * their channel now reports by message id, which its primary key serves),
 * and the old index swapped for the new one.
 */
static int migrate_lookup_ref(const char *path)
{
	sqlite3_stmt *st = NULL;
	int step = SQLITE_ERROR;
	bool has;
	char *err = NULL;

	if (sqlite3_prepare_v2(wdb, "SELECT 1 FROM pragma_table_info('attempts') WHERE name = 'lookup_ref'", -1,
			       &st, NULL) == SQLITE_OK)
		step = sqlite3_step(st);
	/* A read that fails is not "no column": adding it again would fail
	 * too, and say "duplicate column" instead of what went wrong. */
	if (step != SQLITE_ROW && step != SQLITE_DONE) {
		smisd_log(SMIS_LOG_ERROR, "store", NULL, "cannot read the schema of %s: %s", path, sqlite3_errmsg(wdb));
		sqlite3_finalize(st);
		return -1;
	}
	has = step == SQLITE_ROW;
	sqlite3_finalize(st);
	if ((!has && sqlite3_exec(wdb,
				  "BEGIN; ALTER TABLE attempts ADD COLUMN lookup_ref TEXT;"
				  " UPDATE attempts SET lookup_ref = provider_ref WHERE provider_ref IS NOT NULL;"
				  " COMMIT;",
				  NULL, NULL, &err) != SQLITE_OK) ||
	    sqlite3_exec(wdb,
			 "DROP INDEX IF EXISTS attempts_provider;"
			 " CREATE INDEX IF NOT EXISTS attempts_lookup ON attempts(channel, lookup_ref)"
			 " WHERE lookup_ref IS NOT NULL;",
			 NULL, NULL, err ? NULL : &err) != SQLITE_OK) {
		smisd_log(SMIS_LOG_ERROR, "store", NULL, "cannot update the schema of %s: %s", path,
			  err ? err : sqlite3_errmsg(wdb));
		sqlite3_free(err);
		sqlite3_exec(wdb, "ROLLBACK", NULL, NULL, NULL);
		return -1;
	}
	if (!has)
		smisd_log(SMIS_LOG_INFO, "store", NULL, "%s: attempts.lookup_ref added", path);
	return 0;
}

static bool purge_expired(void);

/* A job's rows within the batch's transaction, whole or not at all: a
 * statement refused for the message itself (a constraint) fails it, and
 * what its message wrote before that (the message row, the attempts before
 * the one refused) is deleted again; it is counted as not stored. (A
 * savepoint per message would do it too, for some 5 us more of the
 * writer's CPU per message, about a quarter more.)
 * Returns SQLITE_OK, or an error that fails the whole batch. */
static int write_job_whole(struct smisd_job *job)
{
	bool row = false;
	int jrc = write_job(job, &row), rc = SQLITE_OK;

	job->store_failed = jrc != SQLITE_OK;
	if (jrc == SQLITE_OK || jrc == BATCH_ROLLED_BACK || smisd_store_transient_error(jrc))
		return jrc;
	store_failed_once("message", job->id, jrc, &job->store_error_counted);
	if (sqlite3_get_autocommit(wdb)) {
		/* Its rows went with the transaction: none to delete. */
		job->store_excluded = true;
		return BATCH_ROLLED_BACK;
	}
	/* A refused message row wrote nothing, and a row of that id is
	 * another message's. Reports are adopted only after the attempts. */
	if (row) {
		sqlite3_bind_text(st_undo_att, 1, job->id, -1, SQLITE_STATIC);
		sqlite3_bind_text(st_undo_msg, 1, job->id, -1, SQLITE_STATIC);
		if ((rc = run_stmt(st_undo_att)) == SQLITE_OK)
			rc = run_stmt(st_undo_msg);
	}
	return rc;
}

/* Whether the writer's connection runs synchronous=FULL, not NORMAL
 * (the schema's). Writer thread only, but for smisd_store_open(). */
static bool sync_full;

/* NORMAL flushes the WAL only at the checkpoints, so a power failure can
 * lose the last commits. A message whose answer waits for its commit
 * (store.commit_before_answer) was sent by an operator who chose that the
 * answer prove the record, latency notwithstanding: a batch holding one
 * (a job not answered first) is committed with FULL, which flushes the WAL
 * at the commit. The setting is per generation, so this is decided per
 * batch, and the pragma (no I/O) runs between two transactions only when
 * it changes; the writer's other transactions (polls, retention) keep the
 * level of the batch before. */
static int sync_for_batch(const struct smisd_job *jobs)
{
	bool full = false;
	int rc;

	for (const struct smisd_job *j = jobs; j && !full; j = j->next)
		full = !j->answered_first;
	if (full == sync_full)
		return SQLITE_OK;
	rc = sqlite3_exec(wdb, full ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL", NULL, NULL, NULL);
	if (rc == SQLITE_OK)
		sync_full = full;
	return rc;
}

/* One transaction: the jobs and the reports. Returns SQLITE_OK, or the
 * error that made it roll back (then nothing of it is written). A job
 * refused for itself (a constraint) is marked failed, nothing of it is
 * written, and the rest goes on; BATCH_ROLLED_BACK when such a refusal
 * ended the transaction (the record is then left out of the next tries). */
static int write_batch(struct smisd_job *jobs, struct report_item *reps)
{
	int rc;

	pthread_mutex_lock(&write_gate);
	if ((rc = sync_for_batch(jobs)) == SQLITE_OK)
		rc = run_stmt(st_begin);
	for (struct smisd_job *j = jobs; rc == SQLITE_OK && j; j = j->next)
		if (!j->store_excluded)
			rc = write_job_whole(j);
	for (struct report_item *r = reps; rc == SQLITE_OK && r; r = r->next) {
		sqlite3_int64 undo = 0;
		if (r->excluded)
			continue;
		rc = unless_transient(write_report(r, &undo), "report", NULL, &r->error_counted);
		if ((rc = take_back_report(undo, rc)) == BATCH_ROLLED_BACK)
			r->excluded = true;
	}
	if (rc == SQLITE_OK)
		rc = run_stmt(st_commit);
	if (rc != SQLITE_OK && !sqlite3_get_autocommit(wdb))
		run_stmt(st_rollback);
	orphans_batch_ended(rc == SQLITE_OK);
	pthread_mutex_unlock(&write_gate);
	return rc;
}

/* Once the store is closing the stop waits for the last tries of a
 * failing batch (after the drain window): each pause before one lasts
 * CLOSING_PAUSE_MS at most, and all of them, of all batches, together
 * CLOSING_PAUSES_MS at most. closing_since: when the writer first saw
 * the store closing (monotonic ms), 0 before. Writer thread only, but
 * for smisd_store_open(). */
#define CLOSING_PAUSE_MS 500
#define CLOSING_PAUSES_MS 1500
static int64_t closing_since;

/* Whether the store is closing; when first seen so, noted. */
static bool seen_closing(int64_t now)
{
	if (!closing_since) {
		pthread_mutex_lock(&qlock);
		if (stopping)
			closing_since = now;
		pthread_mutex_unlock(&qlock);
	}
	return closing_since != 0;
}

/* Sleep about `ms` in short slices; true once the store is closing. A
 * pause is then cut short as said above, but not ended at once: the last
 * tries ran back to back within a few milliseconds, which gave a disk
 * failing for a moment no chance. */
static bool writer_pause(int64_t ms)
{
	int64_t now = smisd_monotonic_ms(), end = now + ms;
	bool cut = false;

	for (; now < end; now = smisd_monotonic_ms()) {
		struct timespec ts = { 0, 0 };
		if (!cut && seen_closing(now)) {
			int64_t budget_end = closing_since + CLOSING_PAUSES_MS;
			end = end < now + CLOSING_PAUSE_MS ? end : now + CLOSING_PAUSE_MS;
			end = end < budget_end ? end : budget_end;
			cut = true;
			continue;
		}
		ts.tv_nsec = (long)(end - now < 50 ? end - now : 50) * 1000000L;
		nanosleep(&ts, NULL);
	}
	return seen_closing(now);
}

/* A batch that will not be written: each message and report lost counted
 * as one that failed for itself would be (operation "message", "report"),
 * except those refused for themselves in a try, counted already. */
static void give_up_batch(struct smisd_job *jobs, struct report_item *reps)
{
	for (struct smisd_job *j = jobs; j; j = j->next) {
		if (!j->store_error_counted)
			count_store_error("message");
		j->store_failed = 1;
		j->store_error_counted = true;
	}
	for (struct report_item *r = reps; r; r = r->next) {
		if (!r->error_counted)
			count_store_error("report");
		r->error_counted = true;
	}
}

/* Write a batch, again and again while the failure is transient: 100 ms
 * apart, doubling up to 5 s. Meanwhile the jobs keep their in-flight slots
 * (max_in_flight then turns new work away with 503 overloaded) and the
 * answered ones stay readable from memory (unstored.c). Once the store is
 * closing, three more tries, spaced by pauses of CLOSING_PAUSE_MS at most
 * (CLOSING_PAUSES_MS for all batches), then the batch is given up (logged). */
static void write_batch_until_stored(struct smisd_job *jobs, struct report_item *reps)
{
	int64_t pause_ms = 100;
	int closing_tries = 0;
	size_t n_jobs = 0, n_reps = 0;

	for (struct smisd_job *j = jobs; j; j = j->next)
		n_jobs++;
	for (struct report_item *r = reps; r; r = r->next)
		n_reps++;
	for (int attempt = 0;; attempt++) {
		int rc;
		/* A record refused with the transaction: again at once, without it. */
		while ((rc = write_batch(jobs, reps)) == BATCH_ROLLED_BACK)
			;
		if (rc == SQLITE_OK) {
			if (attempt > 0)
				smisd_log(SMIS_LOG_WARN, "store", NULL, "written after %d retries", attempt);
			return;
		}
		if (!smisd_store_transient_error(rc) || closing_tries >= 3) {
			smisd_log(SMIS_LOG_ERROR, "store", NULL,
				  "commit failed (%s): %zu message record(s) and %zu report(s) not stored",
				  sqlite3_errstr(rc), n_jobs, n_reps);
			give_up_batch(jobs, reps);
			return;
		}
		smisd_metric_add("smis_store_retries_total", "", 1);
		if (attempt == 0)
			smisd_log(SMIS_LOG_ERROR, "store", NULL,
				  "cannot write (%s): %zu message record(s) and %zu report(s) kept in memory,"
				  " retrying", sqlite3_errstr(rc), n_jobs, n_reps);
		if (writer_pause(pause_ms))
			closing_tries++;
		pause_ms = pause_ms * 2 > 5000 ? 5000 : pause_ms * 2;
	}
}

/* The CLOCK_REALTIME time `ms` from now, for pthread_cond_timedwait(). */
static struct timespec realtime_after_ms(int64_t ms)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += (time_t)(ms / 1000);
	ts.tv_nsec += (long)(ms % 1000) * 1000000L;
	ts.tv_sec += ts.tv_nsec / 1000000000L;
	ts.tv_nsec %= 1000000000L;
	return ts;
}

static void *writer_main(void *arg)
{
	int64_t next_poll = 0, next_purge = 0;
	(void)arg;
	for (;;) {
		struct smisd_job *jobs;
		struct report_item *reps;
		int64_t now = smisd_monotonic_ms(), wake;

		if (now >= next_poll) {
			pthread_mutex_lock(&write_gate);
			expire_orphans();
			poll_due();
			pthread_mutex_unlock(&write_gate);
			next_poll = smisd_monotonic_ms() + 1000;
		}
		/* Once a second; every 100 ms while a backlog lasts (each call
		 * stops after 50 ms: half the writer's time at most). */
		if (now >= next_purge)
			next_purge = smisd_monotonic_ms() + (purge_expired() ? 100 : 1000);
		wake = next_poll < next_purge ? next_poll : next_purge;
		pthread_mutex_lock(&qlock);
		while (!jq.head && !rq_head && !stopping) {
			struct timespec ts;
			int64_t ms = wake - smisd_monotonic_ms();
			if (ms <= 0)
				break;
			ts = realtime_after_ms(ms);
			if (pthread_cond_timedwait(&qcond, &qlock, &ts) != 0)
				break;
		}
		if (!jq.head && !rq_head && !stopping) {
			pthread_mutex_unlock(&qlock);
			continue;
		}
		if (!jq.head && !rq_head && stopping) {
			pthread_mutex_unlock(&qlock);
			break;
		}
		/* Jobs already answered wait for nobody: gather more of them
		 * into this commit, as many as come within commit_delay_ms
		 * (fewer, larger transactions: far less CPU per message). */
		if (jq.head && jq.head->answered_first && commit_delay_ms > 0 && !stopping) {
			struct timespec until = realtime_after_ms(commit_delay_ms);
			while (queued < batch_limit && !stopping &&
			       pthread_cond_timedwait(&qcond, &qlock, &until) == 0)
				;
		}
		/* Take at most batch_limit jobs: one transaction each round. */
		jobs = smisd_job_queue_take_upto(&jq, (size_t)batch_limit);
		for (struct smisd_job *j = jobs; j; j = j->next)
			queued--;
		reps = rq_head;
		rq_head = rq_tail = NULL;
		rq_len = 0;
		pthread_mutex_unlock(&qlock);

		/* Conclude here rather than on the event loops: building the
		 * answer is the largest piece of per-message work after HTTP. */
		for (struct smisd_job *j = jobs; j; j = j->next)
			if (!j->answered_first) /* else concluded on its loop */
				smisd_job_conclude(j);
		write_batch_until_stored(jobs, reps);
		free_reports(reps);
		while (jobs) {
			struct smisd_job *next = jobs->next;
			jobs->next = NULL;
			/* Committed (or failed): the reads find it on disk now. */
			if (jobs->answered_first)
				smisd_unstored_remove(jobs);
			pthread_mutex_lock(&qlock);
			pending--;
			pthread_mutex_unlock(&qlock);
			jobs->done(jobs);
			jobs = next;
		}
	}
	return NULL;
}

/* store.retention_s, read from the generation in force (a reload changes
 * it): what is older goes, a batch at a time between the writer's commits. */
static struct smisd_retention retention;

static bool purge_expired(void)
{
	struct smisd_generation *g = smisd_generation_acquire();
	long long keep_s = g ? g->settings.store_retention_s : 0;
	bool more = false;
	int errors = 0;
	long n;

	smisd_generation_unref(g);
	if (keep_s <= 0)
		return false;
	n = smisd_retention_purge(wdb, &write_gate, &retention, smisd_now_ms() - keep_s * 1000, &more, &errors);
	while (errors-- > 0)
		count_store_error("retention"); /* logged by the purge */
	if (n > 0) {
		smisd_metric_add("smis_store_purged_messages_total", "", (double)n);
		smisd_log(SMIS_LOG_DEBUG, "store", NULL, "retention: deleted %ld messages older than %lld s", n, keep_s);
	}
	return more;
}

/* fdatasync() the database file or its WAL, through SQLite's own handle. */
static void flush_file(int which)
{
	sqlite3_file *f = NULL;
	if (sqlite3_file_control(cdb, "main", which, &f) == SQLITE_OK && f && f->pMethods)
		f->pMethods->xSync(f, SQLITE_SYNC_NORMAL);
}

/* A checkpoint that fails other than busy (the database file cannot be
 * written or flushed: full, an I/O error) leaves the WAL to grow and its
 * commits unflushed, while the commits themselves go on: logged and
 * counted once when it starts, once more when a checkpoint works again,
 * quiet in between (tried once a second). Checkpointer thread only. */
static void checkpoint_outcome(int rc)
{
	static long failed_tries;

	if ((rc & 0xff) == SQLITE_BUSY)
		return;
	if (rc != SQLITE_OK) {
		if (failed_tries++ == 0) {
			count_store_error("checkpoint");
			smisd_log(SMIS_LOG_ERROR, "store", NULL,
				  "checkpoint failed (%s): the WAL grows until one works", sqlite3_errstr(rc));
		}
		return;
	}
	if (failed_tries > 0)
		smisd_log(SMIS_LOG_WARN, "store", NULL, "checkpoint works again, after %ld failed tries",
			  failed_tries);
	failed_tries = 0;
}

static void *checkpoint_main(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&qlock);
	while (!stopping) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += 1;
		pthread_cond_timedwait(&ccond, &qlock, &ts);
		if (stopping)
			break;
		pthread_mutex_unlock(&qlock);
		/* PASSIVE: copies what it can without waiting for anyone. */
		int frames = 0, rc = sqlite3_wal_checkpoint_v2(cdb, NULL, SQLITE_CHECKPOINT_PASSIVE, &frames, NULL);
		checkpoint_outcome(rc);
		/* Both counts are of the WAL as it was when the copy began, so
		 * even "all copied" does not mean that nothing was added since. */
		if (rc == SQLITE_OK && frames >= WAL_RESTART_FRAMES) {
			/* Each pass copies what was added during the one before:
			 * a few passes leave little for the writer to wait on. */
			for (int pass = 0; pass < WAL_CATCHUP_PASSES; pass++) {
				int before = frames;
				if (sqlite3_wal_checkpoint_v2(cdb, NULL, SQLITE_CHECKPOINT_PASSIVE, &frames, NULL) !=
					    SQLITE_OK ||
				    frames - before <= WAL_GATED_FRAMES)
					break;
			}
			/* Only the pass that copies the WAL's end flushes the
			 * database file; flush the passes above first, and the
			 * WAL so far, so that the held pass has little to flush. */
			flush_file(SQLITE_FCNTL_FILE_POINTER);
			flush_file(SQLITE_FCNTL_JOURNAL_POINTER);
			pthread_mutex_lock(&write_gate);
			sqlite3_wal_checkpoint_v2(cdb, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
			pthread_mutex_unlock(&write_gate);
		}
		pthread_mutex_lock(&qlock);
	}
	pthread_mutex_unlock(&qlock);
	return NULL;
}

static int prepare(sqlite3 *db, const char *sql, sqlite3_stmt **st)
{
	if (sqlite3_prepare_v2(db, sql, -1, st, NULL) != SQLITE_OK) {
		smisd_log(SMIS_LOG_ERROR, "store", NULL, "prepare failed: %s", sqlite3_errmsg(db));
		return -1;
	}
	return 0;
}

/* A report of rank ?4 moves the message's status (a column of the row
 * updated) forward: never back, and never off "failed". */
#define MOVES_FORWARD                                                                               \
	"((CASE status WHEN 'read' THEN 4 WHEN 'delivered' THEN 3 WHEN 'undelivered' THEN 2"        \
	" WHEN 'sent' THEN 1 ELSE 0 END) < ?4 AND status != 'failed')"

int smisd_store_open(const char *path, int batch_max, int commit_delay)
{
	char *err = NULL;
	int wal_frames = -1;
	batch_limit = batch_max > 0 ? batch_max : 512;
	commit_delay_ms = commit_delay > 0 ? commit_delay : 0;
	if (sqlite3_open_v2(path, &wdb, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK) {
		smisd_log(SMIS_LOG_ERROR, "store", NULL, "cannot open %s: %s", path, wdb ? sqlite3_errmsg(wdb) : "?");
		goto fail;
	}
	sqlite3_busy_timeout(wdb, 5000);
	if (sqlite3_exec(wdb, schema, NULL, NULL, &err) != SQLITE_OK) {
		smisd_log(SMIS_LOG_ERROR, "store", NULL, "cannot create schema in %s: %s", path, err ? err : "?");
		sqlite3_free(err);
		goto fail;
	}
	if (migrate_lookup_ref(path) != 0)
		goto fail;
	if (sqlite3_open_v2(path, &rdb, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK)
		goto fail;
	sqlite3_busy_timeout(rdb, 5000);
	if (prepare(wdb, "INSERT INTO messages (id, institution, recipient_hash, reference, strategy, status,"
			 " channel, error, created_ms, updated_ms, idem_key, request_hash, response, next_poll_ms)"
			 " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)", &st_msg) ||
	    prepare(wdb, "INSERT INTO attempts (message_id, seq, channel, operation, outcome, error,"
			 " provider_ref, sms_encoding, sms_chars, sms_parts, started_ms, duration_ms, lookup_ref)"
			 " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)", &st_att) ||
	    prepare(wdb, "SELECT message_id FROM attempts WHERE channel = ? AND lookup_ref = ?", &st_find_att) ||
	    prepare(wdb, "SELECT message_id FROM attempts WHERE channel = ?1 AND message_id = ?2"
			 " AND operation = 'send' LIMIT 1", &st_find_by_id) ||
	    prepare(wdb, "INSERT OR IGNORE INTO reports (message_id, channel, device, status, at_ms, detail)"
			 " VALUES (?,?,?,?,?,?)", &st_rep) ||
	    prepare(wdb, "UPDATE messages SET status = CASE WHEN " MOVES_FORWARD " THEN ?1 ELSE status END,"
			 " updated_ms = CASE WHEN " MOVES_FORWARD " THEN ?2 ELSE updated_ms END,"
			 " next_poll_ms = CASE WHEN ?5 AND NOT EXISTS (SELECT 1 FROM attempts a"
			 "  WHERE a.message_id = ?3 AND " POLLED_SEND ") THEN NULL ELSE next_poll_ms END"
			 " WHERE id = ?3 AND (" MOVES_FORWARD " OR ?5)", &st_upd) ||
	    prepare(wdb, "INSERT INTO orphan_reports (channel, provider_ref, device, status, at_ms, detail, received_ms)"
			 " VALUES (?,?,?,?,?,?,?)", &st_orphan) ||
	    /* In the same order at each try of a batch (orphan_excluded()):
	     * the index's, with no sort. */
	    prepare(wdb, "SELECT device, status, at_ms, detail FROM orphan_reports WHERE channel = ? AND provider_ref = ?"
			 " ORDER BY rowid", &st_orphan_get) ||
	    prepare(wdb, "DELETE FROM orphan_reports WHERE channel = ? AND provider_ref = ?", &st_orphan_del) ||
	    prepare(wdb, "DELETE FROM orphan_reports WHERE received_ms < ?", &st_orphan_expire) ||
	    prepare(wdb, "SELECT count(*) FROM orphan_reports", &st_orphan_count) ||
	    prepare(wdb, "SELECT count(*) FROM orphan_reports WHERE channel = ? AND provider_ref = ?",
		    &st_orphan_ref_count) ||
	    prepare(wdb, "BEGIN IMMEDIATE", &st_begin) || prepare(wdb, "COMMIT", &st_commit) ||
	    prepare(wdb, "ROLLBACK", &st_rollback) ||
	    prepare(wdb, "DELETE FROM attempts WHERE message_id = ?", &st_undo_att) ||
	    prepare(wdb, "DELETE FROM messages WHERE id = ?", &st_undo_msg) ||
	    prepare(wdb, "DELETE FROM reports WHERE rowid = ?", &st_undo_rep) ||
	    prepare(rdb, "SELECT 1 FROM messages WHERE id = ?", &st_exists))
		goto fail;
	sqlite3_exec(wdb, "PRAGMA wal_autocheckpoint=0", NULL, NULL, NULL);
	if (sqlite3_open_v2(path, &cdb, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK)
		goto fail;
	sqlite3_busy_timeout(cdb, 5000);
	/* A connection learns that the database is in WAL mode on its first
	 * read; until then sqlite3_wal_checkpoint_v2() on it does nothing at
	 * all (it answers -1 frames), and the WAL grew without bound. */
	if (sqlite3_exec(cdb, "SELECT count(*) FROM sqlite_schema", NULL, NULL, NULL) != SQLITE_OK ||
	    sqlite3_wal_checkpoint_v2(cdb, NULL, SQLITE_CHECKPOINT_PASSIVE, &wal_frames, NULL) != SQLITE_OK ||
	    wal_frames < 0) {
		smisd_log(SMIS_LOG_ERROR, "store", NULL, "cannot checkpoint the WAL of %s: %s", path, sqlite3_errmsg(cdb));
		goto fail;
	}
	stopping = 0;
	closing_since = 0;
	sync_full = false;
	if (pthread_create(&writer, NULL, writer_main, NULL) != 0)
		goto fail;
	pthread_setname_np(writer, "smisd-store");
	if (pthread_create(&checkpointer, NULL, checkpoint_main, NULL) != 0)
		goto fail;
	pthread_setname_np(checkpointer, "smisd-checkpnt");
	return 0;
fail:
	smisd_store_close();
	return -1;
}

void smisd_store_close(void)
{
	if (writer) {
		pthread_mutex_lock(&qlock);
		stopping = 1;
		pthread_cond_signal(&qcond);
		pthread_cond_signal(&ccond);
		pthread_mutex_unlock(&qlock);
		pthread_join(writer, NULL);
		writer = 0;
		log_orphans(); /* of its last second */
	}
	if (checkpointer) {
		pthread_mutex_lock(&qlock);
		stopping = 1;
		pthread_cond_signal(&ccond);
		pthread_mutex_unlock(&qlock);
		pthread_join(checkpointer, NULL);
		checkpointer = 0;
	}
	if (cdb) {
		/* Leave a short WAL behind. */
		sqlite3_wal_checkpoint_v2(cdb, NULL, SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL);
		sqlite3_close(cdb);
		cdb = NULL;
	}
	free_reports(rq_head);
	rq_head = rq_tail = NULL;
	rq_len = 0;
	sqlite3_finalize(st_msg);
	sqlite3_finalize(st_att);
	sqlite3_finalize(st_find_att);
	sqlite3_finalize(st_find_by_id);
	st_find_by_id = NULL;
	sqlite3_finalize(st_rep);
	sqlite3_finalize(st_upd);
	sqlite3_finalize(st_exists);
	sqlite3_finalize(st_orphan);
	sqlite3_finalize(st_orphan_get);
	sqlite3_finalize(st_orphan_del);
	sqlite3_finalize(st_orphan_expire);
	sqlite3_finalize(st_orphan_count);
	sqlite3_finalize(st_orphan_ref_count);
	sqlite3_finalize(st_begin);
	sqlite3_finalize(st_commit);
	sqlite3_finalize(st_rollback);
	sqlite3_finalize(st_undo_att);
	sqlite3_finalize(st_undo_msg);
	sqlite3_finalize(st_undo_rep);
	st_begin = st_commit = st_rollback = st_undo_att = st_undo_msg = st_undo_rep = NULL;
	st_orphan = st_orphan_get = st_orphan_del = st_orphan_expire = st_orphan_count = st_orphan_ref_count = NULL;
	st_msg = st_att = st_find_att = st_rep = st_upd = st_exists = NULL;
	sqlite3_close(rdb);
	sqlite3_close(wdb);
	rdb = wdb = NULL;
}

void smisd_store_submit(struct smisd_job *job)
{
	if (job->answered_first)
		smisd_unstored_add(job); /* before its answer can go out */
	pthread_mutex_lock(&qlock);
	smisd_job_queue_push(&jq, job);
	pending++;
	queued++;
	/* An answered job needs the writer only to start its commit delay
	 * or to end it early with a full batch: not at every job. */
	if (!job->answered_first || queued == 1 || queued >= batch_limit)
		pthread_cond_signal(&qcond);
	pthread_mutex_unlock(&qlock);
}

void smisd_store_set_report_bound(size_t bound)
{
	rq_bound = bound > 0 ? bound : 1;
}

int smisd_store_submit_reports(const char *channel, bool by_id, const struct smis_report *r, size_t n)
{
	struct report_item *head = NULL, *last = NULL;

	for (size_t i = 0; i < n; i++) {
		struct report_item *it = calloc(1, sizeof(*it));
		if (!it) {
			free_reports(head);
			smisd_log(SMIS_LOG_ERROR, "store", NULL, "out of memory queueing a report");
			return -ENOMEM;
		}
		snprintf(it->channel, sizeof(it->channel), "%s", channel);
		it->by_id = by_id;
		it->r = r[i];
		if (last)
			last->next = it;
		else
			head = it;
		last = it;
	}
	pthread_mutex_lock(&qlock);
	/* Reports wait in memory while the store cannot write (the writer
	 * retries its batch): bounded, so that a long outage is answered with
	 * 503 to the webhooks (their senders retry) instead of growing. */
	if (stopping || rq_len + n > rq_bound) {
		/* Stopping: the writer may be gone, and nothing would write
		 * them; the caller says so rather than take them. */
		int rc = stopping ? -ESHUTDOWN : -EBUSY;
		pthread_mutex_unlock(&qlock);
		free_reports(head);
		return rc;
	}
	if (head) {
		if (rq_tail)
			rq_tail->next = head;
		else
			rq_head = head;
		rq_tail = last;
		rq_len += n;
		pthread_cond_signal(&qcond);
	}
	pthread_mutex_unlock(&qlock);
	return 0;
}

int smisd_store_pending(void)
{
	int n;
	pthread_mutex_lock(&qlock);
	n = pending;
	pthread_mutex_unlock(&qlock);
	return n;
}


/* A lookup's last step as its answer: 1 for a row, 0 for none, -EIO for
 * an error (logged: `what` failed), which the caller must not take for
 * "none". Called before the statement is reset, which keeps the message. */
static int lookup_answer(int step, const char *what)
{
	if (step == SQLITE_ROW)
		return 1;
	if (step == SQLITE_DONE)
		return 0;
	smisd_log(SMIS_LOG_ERROR, "store", NULL, "%s failed: %s", what, sqlite3_errmsg(rdb));
	return -EIO;
}

/* A message's answer as stored, with what moves on after it: its status
 * and when that last changed. */
static json_object *answer_with_status(const char *answer, const char *status, int64_t updated_ms)
{
	char ts[40];
	json_object *o = json_tokener_parse(answer);
	if (!o)
		return NULL;
	json_object_object_add(o, "status", json_object_new_string(status));
	smisd_iso8601(updated_ms, ts, sizeof(ts));
	json_object_object_add(o, "updated_at", json_object_new_string(ts));
	return o;
}

/* The reports of message `id`, added to `reports`: 0, or -EIO (logged). */
static int read_reports(const char *id, json_object *reports)
{
	sqlite3_stmt *st = NULL;
	int step = SQLITE_ERROR, rc;
	char ts[40];

	if (sqlite3_prepare_v2(rdb, "SELECT channel, device, status, at_ms, detail FROM reports"
				    " WHERE message_id = ? ORDER BY at_ms, status", -1, &st, NULL) == SQLITE_OK) {
		sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
		while ((step = sqlite3_step(st)) == SQLITE_ROW) {
			json_object *r = json_object_new_object();
			json_object_object_add(r, "channel", json_object_new_string((const char *)sqlite3_column_text(st, 0)));
			if (sqlite3_column_text(st, 1) && sqlite3_column_text(st, 1)[0])
				json_object_object_add(r, "device", json_object_new_string((const char *)sqlite3_column_text(st, 1)));
			json_object_object_add(r, "status", json_object_new_string((const char *)sqlite3_column_text(st, 2)));
			smisd_iso8601(sqlite3_column_int64(st, 3), ts, sizeof(ts));
			json_object_object_add(r, "at", json_object_new_string(ts));
			if (sqlite3_column_text(st, 4) && sqlite3_column_text(st, 4)[0])
				json_object_object_add(r, "detail", json_object_new_string((const char *)sqlite3_column_text(st, 4)));
			json_object_array_add(reports, r);
		}
	}
	rc = lookup_answer(step, "reading a message's reports") < 0 ? -EIO : 0;
	sqlite3_finalize(st);
	return rc;
}

/* The stored answer of message `id` of `institution`: its JSON object, or
 * NULL with *rc -ENOENT (absent), -EIO (logged) or -ENOMEM. */
static json_object *read_message(const char *institution, const char *id, int *rc)
{
	sqlite3_stmt *st = NULL;
	json_object *o = NULL;
	int step = SQLITE_ERROR;

	if (sqlite3_prepare_v2(rdb, "SELECT response, status, updated_ms FROM messages"
				    " WHERE id = ? AND institution = ?", -1, &st, NULL) == SQLITE_OK) {
		sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 2, institution, -1, SQLITE_STATIC);
		step = sqlite3_step(st);
	}
	/* Not "absent": 404 would tell the client the message is not there. */
	switch (lookup_answer(step, "reading a message")) {
	case 1:
		o = answer_with_status((const char *)sqlite3_column_text(st, 0),
				       (const char *)sqlite3_column_text(st, 1), sqlite3_column_int64(st, 2));
		*rc = o ? 0 : -ENOMEM;
		break;
	case 0:
		*rc = -ENOENT;
		break;
	default:
		*rc = -EIO;
	}
	sqlite3_finalize(st);
	return o;
}

int smisd_store_get_message(const char *institution, const char *id, char **json)
{
	json_object *o = NULL, *reports;
	int rc = -ENOMEM;
	char *answer = NULL;
	const char *status = NULL;
	int64_t updated_ms = 0;

	*json = NULL;
	/* Answered, not committed yet: from memory. Its reports, if any came
	 * already, wait as orphans, so the query below finds none. A copy
	 * that fails is not "not here": the row may not be written yet, and
	 * a 404 would deny a message just answered. */
	int mem = smisd_unstored_get(institution, id, &answer, &status, &updated_ms);
	if (mem == -ENOMEM)
		return -ENOMEM;
	bool unstored = mem == 0;
	pthread_mutex_lock(&rlock);
	if (unstored)
		o = answer_with_status(answer, status, updated_ms);
	else
		o = read_message(institution, id, &rc);
	if (!o)
		goto out;
	reports = json_object_new_array();
	json_object_object_add(o, "reports", reports);
	if ((rc = read_reports(id, reports)) != 0)
		goto out;
	/* json-c writes C1 controls and bytes that are no UTF-8 as they are;
	 * the POST answer escaped the former and replaced the latter (U+FFFD):
	 * the same here, so both answers read alike. */
	*json = smisd_json_text_safe(
		json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
	rc = *json ? 0 : -ENOMEM;
out:
	pthread_mutex_unlock(&rlock);
	free(answer);
	json_object_put(o);
	return rc;
}

int smisd_store_provider_ref_known(const char *channel, bool by_id, const char *provider_ref)
{
	sqlite3_stmt *st = NULL;
	int step = SQLITE_ERROR, known;
	pthread_mutex_lock(&rlock);
	if (sqlite3_prepare_v2(rdb,
			       by_id ? "SELECT 1 FROM attempts WHERE channel = ?1 AND message_id = ?2 LIMIT 1"
				     : "SELECT 1 FROM attempts WHERE channel = ? AND lookup_ref = ?",
			       -1, &st, NULL) == SQLITE_OK) {
		sqlite3_bind_text(st, 1, channel, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 2, provider_ref, -1, SQLITE_STATIC);
		step = sqlite3_step(st);
	}
	/* Not "unknown": a real report would be refused for good. */
	known = lookup_answer(step, "report lookup");
	sqlite3_finalize(st);
	pthread_mutex_unlock(&rlock);
	return known;
}

int smisd_store_message_exists(const char *id)
{
	int exists;
	if (smisd_unstored_exists(id))
		return 1;
	pthread_mutex_lock(&rlock);
	sqlite3_reset(st_exists);
	sqlite3_bind_text(st_exists, 1, id, -1, SQLITE_STATIC);
	/* Not "free": the caller would send the message a second time. */
	exists = lookup_answer(sqlite3_step(st_exists), "message id lookup");
	sqlite3_reset(st_exists);
	pthread_mutex_unlock(&rlock);
	return exists;
}

int smisd_store_find_idempotent(const char *institution, const char *key,
				char request_hash[SMISD_REQUEST_HASH_SIZE], char **response_json)
{
	sqlite3_stmt *st = NULL;
	int rc, step = SQLITE_ERROR;

	*response_json = NULL;
	rc = smisd_unstored_find_idempotent(institution, key, request_hash, response_json);
	if (rc != -ENOENT)
		return rc;
	pthread_mutex_lock(&rlock);
	if (sqlite3_prepare_v2(rdb, "SELECT request_hash, response FROM messages WHERE institution = ? AND idem_key = ?",
			       -1, &st, NULL) == SQLITE_OK) {
		sqlite3_bind_text(st, 1, institution, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 2, key, -1, SQLITE_STATIC);
		step = sqlite3_step(st);
	}
	if (step == SQLITE_ROW) {
		/* NULL: SQLite out of memory (or a row without them, which
		 * SMIS never writes); either way not "unused". */
		const char *hash = (const char *)sqlite3_column_text(st, 0);
		const char *answer = (const char *)sqlite3_column_text(st, 1);
		if (hash && answer) {
			snprintf(request_hash, SMISD_REQUEST_HASH_SIZE, "%s", hash);
			*response_json = strdup(answer);
		}
		rc = *response_json ? 0 : -ENOMEM;
	} else if (step != SQLITE_DONE) {
		/* Not "unused": the caller would send the message again. */
		smisd_log(SMIS_LOG_ERROR, "store", NULL, "idempotency lookup failed: %s", sqlite3_errmsg(rdb));
		rc = -EIO;
	}
	sqlite3_finalize(st);
	pthread_mutex_unlock(&rlock);
	return rc;
}
