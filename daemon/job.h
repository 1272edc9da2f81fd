/*
 * job.h - one institution call in flight: the validated request, the
 * generation it runs under, the attempts made so far and, at the end, the
 * answer. Owned by the HTTP connection that created it; the event loop and
 * the store work on it in turn. Only a job answered before its commit is
 * shared: its loop answers from it while the store writer writes it, and
 * both only read it then.
 */
#ifndef SMISD_JOB_H
#define SMISD_JOB_H

#include <stdbool.h>
#include <stdint.h>

#include <curl/curl.h>

#include <smis/smis-plugin.h>

#include "generation.h"
#include "request.h"

#define SMISD_MAX_ATTEMPTS 16
#define SMISD_ID_LEN 40
/* A request hash as stored: "h1:" and 64 hex digits (smisd_store_request_hash). */
#define SMISD_REQUEST_HASH_SIZE 68

/* What the core keeps of an attempt's struct smis_outcome: the same fields
 * (so `a->out.kind` reads as before) but the reports, which only status
 * polls have, held by pointer. The ABI struct is 3.2 KiB, 2.7 of them the
 * reports[8] array: kept whole in every attempt, that was ~5 MiB of peak
 * RSS with 1000 messages in flight. smisd_outcome_view() rebuilds the ABI
 * struct where a plugin must see one. */
struct smisd_outcome_rec {
	enum smis_outcome_kind kind;
	char error[64];
	char detail[256];
	char provider_ref[128];
	enum smis_reach reach;
	char language[8];
	int devices;
	int sms_parts;
	int sms_chars;
	char sms_encoding[16];
	char *devices_json;          /* owned, as in smis_outcome */
	struct smis_report *reports; /* n_reports of them (calloc), or NULL */
	size_t n_reports;
	size_t n_reports_lost; /* not copied for lack of memory (said and counted where stored) */
};

struct smisd_attempt {
	const struct smisd_channel *ch;
	enum smis_op op;
	struct smisd_outcome_rec out;
	int64_t started_ms; /* wall clock */
	long elapsed_ms;
};

/* Keep `out` (taking its devices_json) in `rec`. Reports that cannot be
 * copied for lack of memory are dropped (a status poll runs again), their
 * number left in n_reports_lost for the caller to say and count. */
void smisd_outcome_keep(struct smisd_outcome_rec *rec, const struct smis_outcome *out);
/* Fill the ABI struct from a kept record (devices_json is lent, not given). */
void smisd_outcome_view(const struct smisd_outcome_rec *rec, struct smis_outcome *out);

struct smisd_job;
struct smisd_loop;
struct smisd_url_entry;
typedef void (*smisd_job_done_fn)(struct smisd_job *job);

struct smisd_job {
	char id[SMISD_ID_LEN];
	char request_id[SMISD_ID_LEN];
	struct smisd_generation *gen;  /* reference held by the job */
	const struct smisd_institution *inst;
	const struct smisd_strategy *strategy;
	struct smisd_request req;
	struct smis_content contents[SMIS_LANG_MAX];
	struct smis_message msg;
	char recipient_hash[65];
	char *idem_key;                /* NULL when the call had none */
	char request_hash[SMISD_REQUEST_HASH_SIZE];
	int64_t created_ms;
	int64_t deadline_mono;

	/* Strategy execution (the job's event loop only). */
	size_t step;
	size_t step_first_attempt;
	struct smisd_attempt *attempts; /* grown by smisd_job_add_attempt */
	size_t n_attempts, cap_attempts;
	void **calls;                  /* per channel index, see start() */
	char citizen_language[8];
	int64_t op_started_mono;
	/* What SMIS itself adds (smis_message_overhead_seconds): the time
	 * spent waiting on upstream HTTP calls, summed over the attempts, and
	 * when the current call was handed to curl (monotonic microseconds). */
	int64_t upstream_us;
	int64_t upstream_started_us;
	CURL *easy;
	/* The parsed URL its transfer reads (the loop's), NULL if none. */
	struct smisd_url_entry *url;
	struct curl_slist *easy_headers;
	char *easy_body; /* the upstream request's body: curl reads it in place */
	struct smisd_loop *loop; /* the event loop the job runs on */
	char *resp_buf;
	size_t resp_len, resp_cap;
	int resp_overflow;

	/* Result. */
	const char *status;            /* "sent" or "failed" */
	const char *channel;           /* first channel that took it, or NULL */
	char error[64];
	char *response_json;           /* the POST answer, also stored */
	int64_t concluded_ms;          /* wall clock: the record's updated_ms */
	int store_failed;
	bool store_error_counted; /* in smis_store_errors_total, once over the batch's tries */
	int orphan_errors_counted; /* adopting its orphan reports: failures counted over the tries */
	/* Refused with the batch's whole transaction (store.c), and so left out
	 * of the batch's next tries: the job's own rows, the n-th orphan report
	 * adopted (bit n of the words, as many as it takes), or all its orphans
	 * (their lookup or delete, or no memory for the words). */
	bool store_excluded;
	uint64_t *orphans_excluded;
	size_t n_orphans_excluded; /* words */
	bool orphans_left;

	/* Answered before its commit (store.commit_before_answer = false):
	 * the connection and the store writer each hold the job (`holds`, 2
	 * then 1 then freed, by whichever finishes last), and until the
	 * commit the job is in the index of unstored.c, linked through these. */
	bool answered_first;
	int holds;                     /* __atomic builtins */
	struct smisd_job *unstored_by_id, *unstored_by_key;

	/* While its connection is suspended, the job is in http_server.c's list
	 * of them: a stop that cannot wait for it any more resumes (and so
	 * closes) those connections, which MHD requires before it stops. */
	struct smisd_job *suspended_prev, *suspended_next;
	bool abandoned;                /* its connection was closed by that stop */

	/* A single operation instead of a strategy: SMIS_OP_STATUS polls (the
	 * reports are stored, the job freed) and SMIS_OP_LOOKUP for the device
	 * keys endpoint (job->done answers the HTTP call). */
	const struct smisd_channel *poll_channel;
	enum smis_op single_op;
	char poll_ref[128];

	/* Completion: called from the store thread once the rows are
	 * committed (or failed to be). */
	smisd_job_done_fn done;
	void *done_arg;
	struct smisd_job *next;        /* queue link */
	struct smisd_job *active_prev, *active_next; /* dispatcher: waiting on curl */
};

/* A FIFO of jobs linked through job->next, for the hand-overs between
 * threads (HTTP -> dispatcher -> prepare pool -> dispatcher -> store). The
 * owner of the queue holds its own lock around these. */
struct smisd_job_queue {
	struct smisd_job *head, *tail;
};

static inline void smisd_job_queue_push(struct smisd_job_queue *q, struct smisd_job *job)
{
	job->next = NULL;
	if (q->tail)
		q->tail->next = job;
	else
		q->head = job;
	q->tail = job;
}

/* The first job, unlinked, or NULL. */
static inline struct smisd_job *smisd_job_queue_pop(struct smisd_job_queue *q)
{
	struct smisd_job *job = q->head;
	if (job) {
		q->head = job->next;
		if (!q->head)
			q->tail = NULL;
		job->next = NULL;
	}
	return job;
}

/* At most max jobs (at least 1) from the front, as a list linked through
 * next; NULL when the queue is empty. */
static inline struct smisd_job *smisd_job_queue_take_upto(struct smisd_job_queue *q, size_t max)
{
	struct smisd_job *first = q->head, *last = first;
	if (!first)
		return NULL;
	for (size_t n = 1; n < max && last->next; n++)
		last = last->next;
	q->head = last->next;
	if (!q->head)
		q->tail = NULL;
	last->next = NULL;
	return first;
}

/* Everything queued, as a list linked through next; the queue is empty. */
static inline struct smisd_job *smisd_job_queue_take(struct smisd_job_queue *q)
{
	struct smisd_job *all = q->head;
	q->head = q->tail = NULL;
	return all;
}

/* Fill msg/contents from req; called once the request is validated. */
void smisd_job_bind_message(struct smisd_job *job);
void smisd_job_free(struct smisd_job *job);

/* Append a zeroed attempt (most messages make one to three: the array
 * grows instead of reserving SMISD_MAX_ATTEMPTS outcomes per message).
 * NULL when out of memory or at SMISD_MAX_ATTEMPTS. */
struct smisd_attempt *smisd_job_add_attempt(struct smisd_job *job);

/* "msg_" + 26 Crockford base32 characters: 48-bit ms time + 80 random
 * bits, sortable by creation time. 0, or -1 (logged, out set to "") when
 * no random bytes could be had: the caller fails its request. */
int smisd_new_id(const char *prefix, char *out, size_t outlen);

/* An id of the same form made without random bytes, unique within the
 * process but predictable: only for naming a request refused because
 * smisd_new_id had none (its answer and log lines still need an id that
 * matches the documented form), never for anything an id must protect. */
void smisd_fallback_id(const char *prefix, char *out, size_t outlen);

/* Whether id is prefix + 26 characters of the alphabet smisd_new_id uses. */
bool smisd_id_well_formed(const char *prefix, const char *id);

/* prefix + the 10 time characters of ms: every id made before ms sorts
 * below it, every id made at or after ms at or above it (retention). */
void smisd_id_time_bound(const char *prefix, int64_t ms, char *out, size_t outlen);

/* The creation time (ms since the epoch) written in an id after its
 * prefix_len-character prefix; -1 when those characters are not one. */
int64_t smisd_id_time_ms(const char *id, size_t prefix_len);

/* Build the POST answer (and status/channel/error) from the attempts. */
void smisd_job_conclude(struct smisd_job *job);

/* UTC "2026-11-28T11:16:15.331Z" for epoch milliseconds. */
void smisd_iso8601(int64_t ms, char *buf, size_t len);

const char *smisd_op_name(enum smis_op op);
const char *smisd_outcome_name(enum smis_outcome_kind k, enum smis_op op);
const char *smisd_reach_name(enum smis_reach r);

#endif
