/*
 * job.c - message ids, the message view plugins see, and the summary of
 * what happened that becomes the API answer.
 */
#include "config.h"

#include <stdatomic.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/rand.h>

#include "core_api.h"
#include "job.h"
#include "json_writer.h"
#include "log.h"
#include "metrics.h"

/* Ids take 10 random bytes each, twice per call: draw them from a
 * per-thread buffer filled 2 KiB at a time (one DRBG call instead of
 * ~200). 0, or -1 (logged) when OpenSSL's DRBG gives none: nothing else
 * stands in for it, since ids made in the same millisecond differ only by
 * these bytes (a message sharing its id with another is not stored). */
static int random_bytes(unsigned char *out, size_t n)
{
	static __thread unsigned char pool[2048];
	static __thread size_t left;
	if (left < n) {
		if (RAND_bytes(pool, sizeof(pool)) != 1) {
			char why[256] = "no reason given";
			unsigned long e = ERR_get_error();
			if (e)
				ERR_error_string_n(e, why, sizeof(why));
			ERR_clear_error();
			smisd_log(SMIS_LOG_ERROR, "ids", NULL, "no random bytes for an id: %s", why);
			return -1;
		}
		left = sizeof(pool);
	}
	memcpy(out, pool + sizeof(pool) - left, n);
	OPENSSL_cleanse(pool + sizeof(pool) - left, n);
	left -= n;
	return 0;
}

static const char id_b32[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/* The low 5 * n bits of v as n characters, most significant first. */
static void id_b32_put(uint64_t v, char *out, int n)
{
	for (int i = n - 1; i >= 0; i--) {
		out[i] = id_b32[v & 31];
		v >>= 5;
	}
}

/* 10 chars of time (50 bits, top 2 zero). */
static void id_time(int64_t ms, char out[10])
{
	id_b32_put(ms > 0 ? (uint64_t)ms : 0, out, 10);
}

void smisd_id_time_bound(const char *prefix, int64_t ms, char *out, size_t outlen)
{
	char t[11];
	id_time(ms, t);
	t[10] = '\0';
	smisd_concat(out, outlen, prefix, t, NULL);
}

int64_t smisd_id_time_ms(const char *id, size_t prefix_len)
{
	uint64_t t = 0;
	if (strlen(id) < prefix_len + 10)
		return -1;
	for (size_t i = prefix_len; i < prefix_len + 10; i++) {
		const char *p = id[i] ? strchr(id_b32, id[i]) : NULL;
		if (!p)
			return -1;
		t = t << 5 | (uint64_t)(p - id_b32);
	}
	return (int64_t)t;
}

bool smisd_id_well_formed(const char *prefix, const char *id)
{
	size_t n = strlen(prefix);
	if (strncmp(id, prefix, n) != 0 || strlen(id) != n + 26)
		return false;
	for (const char *p = id + n; *p; p++)
		if (!strchr(id_b32, *p))
			return false;
	return true;
}

int smisd_new_id(const char *prefix, char *out, size_t outlen)
{
	unsigned char rnd[10];
	char body[27];

	if (random_bytes(rnd, sizeof(rnd)) != 0) {
		if (outlen)
			out[0] = '\0';
		return -1;
	}
	/* 10 chars of time then 16 chars of randomness. */
	id_time(smisd_now_ms(), body);
	for (int i = 0; i < 16; i++) {
		int bit = i * 5;
		unsigned v = (unsigned)((rnd[bit / 8] << 8 | (bit / 8 + 1 < 10 ? rnd[bit / 8 + 1] : 0)) >>
					(11 - bit % 8)) & 31;
		body[10 + i] = id_b32[v];
	}
	body[26] = '\0';
	smisd_concat(out, outlen, prefix, body, NULL);
	return 0;
}

void smisd_fallback_id(const char *prefix, char *out, size_t outlen)
{
	static atomic_uint_fast64_t made;
	uint64_t n = atomic_fetch_add(&made, 1);
	char body[27];

	/* Not random, since OpenSSL had no random bytes (the only case this is
	 * for): time as in any id, then 30 bits of the monotonic clock (us)
	 * and a 50-bit count, unique within this process though guessable. */
	id_time(smisd_now_ms(), body);
	id_b32_put((uint64_t)smisd_monotonic_us(), body + 10, 6);
	id_b32_put(n, body + 16, 10);
	body[26] = '\0';
	smisd_concat(out, outlen, prefix, body, NULL);
}

void smisd_job_bind_message(struct smisd_job *job)
{
	struct smis_message *m = &job->msg;
	memset(m, 0, sizeof(*m));
	for (size_t i = 0; i < job->req.n_content; i++) {
		struct smisd_request_content *c = &job->req.content[i];
		job->contents[i] = (struct smis_content){
			.lang = c->lang,
			.title = c->title,
			.body = c->body,
			.body_text = c->body_text,
			.body_is_html = c->html,
			.sms_text = c->sms_text,
		};
	}
	m->size = sizeof(*m);
	m->id = job->id;
	m->institution = job->inst->name;
	m->recipient = job->req.recipient;
	m->reference = job->req.reference;
	m->language = job->req.language[0] ? job->req.language : NULL;
	m->sender = job->inst->sender;
	m->content = job->contents;
	m->n_content = job->req.n_content;
	m->encrypted_json = job->req.encrypted_json;
	m->max_sms_parts = job->inst->max_sms_segments;
}

/* The fields a kept record shares with struct smis_outcome, one list for
 * both directions (the reports go by pointer, apart). */
#define OUTCOME_SHARED_FIELDS(X)                                                                  \
	X(kind) X(error) X(detail) X(provider_ref) X(reach) X(language) X(devices) X(sms_parts) \
	X(sms_chars) X(sms_encoding) X(devices_json)
#define COPY_FIELD(f)                                                                  \
	_Static_assert(sizeof(((struct smisd_outcome_rec *)0)->f) ==                   \
			       sizeof(((struct smis_outcome *)0)->f),                  \
		       "smisd_outcome_rec." #f " differs from smis_outcome." #f);      \
	memcpy(&to->f, &from->f, sizeof(to->f));

void smisd_outcome_keep(struct smisd_outcome_rec *rec, const struct smis_outcome *out)
{
	const struct smis_outcome *from = out;
	struct smisd_outcome_rec *to = rec;
	size_t n = out->n_reports < 8 ? out->n_reports : 8;

	OUTCOME_SHARED_FIELDS(COPY_FIELD)
	rec->reports = NULL;
	rec->n_reports = 0;
	rec->n_reports_lost = 0;
	if (!n)
		return;
	if (!(rec->reports = calloc(n, sizeof(*rec->reports)))) {
		rec->n_reports_lost = n;
		return;
	}
	memcpy(rec->reports, out->reports, n * sizeof(*rec->reports));
	rec->n_reports = n;
}

void smisd_outcome_view(const struct smisd_outcome_rec *rec, struct smis_outcome *out)
{
	const struct smisd_outcome_rec *from = rec;
	struct smis_outcome *to = out;

	memset(out, 0, offsetof(struct smis_outcome, reports));
	OUTCOME_SHARED_FIELDS(COPY_FIELD)
	if (rec->n_reports)
		memcpy(out->reports, rec->reports, rec->n_reports * sizeof(*rec->reports));
	out->n_reports = rec->n_reports;
}

void smisd_job_free(struct smisd_job *job)
{
	if (!job)
		return;
	if (job->calls) {
		for (size_t i = 0; job->gen && i < job->gen->n_channels; i++) {
			const struct smisd_channel *ch = &job->gen->channels[i];
			if (job->calls[i] && ch->ops->size > offsetof(struct smis_channel_ops, call_free) &&
			    ch->ops->call_free)
				ch->ops->call_free(ch->state, job->calls[i]);
		}
		free(job->calls);
	}
	for (size_t i = 0; i < job->n_attempts; i++) {
		free(job->attempts[i].out.devices_json);
		free(job->attempts[i].out.reports);
	}
	free(job->attempts);
	if (job->easy)
		curl_easy_cleanup(job->easy);
	curl_slist_free_all(job->easy_headers);
	free(job->easy_body);
	free(job->resp_buf);
	smisd_request_clear(&job->req);
	free(job->idem_key);
	free(job->response_json);
	free(job->orphans_excluded);
	smisd_generation_unref(job->gen);
	free(job);
}

struct smisd_attempt *smisd_job_add_attempt(struct smisd_job *job)
{
	if (job->n_attempts >= SMISD_MAX_ATTEMPTS)
		return NULL;
	if (job->n_attempts == job->cap_attempts) {
		/* From 1: most messages make one attempt. */
		size_t cap = job->cap_attempts ? job->cap_attempts * 2 : 1;
		struct smisd_attempt *grown = realloc(job->attempts, cap * sizeof(*grown));
		if (!grown)
			return NULL;
		job->attempts = grown;
		job->cap_attempts = cap;
	}
	memset(&job->attempts[job->n_attempts], 0, sizeof(job->attempts[0]));
	return &job->attempts[job->n_attempts++];
}

const char *smisd_op_name(enum smis_op op)
{
	switch (op) {
	case SMIS_OP_LOOKUP:
		return "lookup";
	case SMIS_OP_SEND:
		return "send";
	case SMIS_OP_STATUS:
		return "status";
	}
	return "unknown";
}

const char *smisd_outcome_name(enum smis_outcome_kind k, enum smis_op op)
{
	switch (k) {
	case SMIS_OUTCOME_OK:
		return op == SMIS_OP_SEND ? "sent" : "ok";
	case SMIS_OUTCOME_TEMPFAIL:
		return "temporary_failure";
	case SMIS_OUTCOME_PERMFAIL:
		return "permanent_failure";
	case SMIS_OUTCOME_NONE:
		break;
	}
	return "none";
}

const char *smisd_reach_name(enum smis_reach r)
{
	switch (r) {
	case SMIS_REACH_YES:
		return "reachable";
	case SMIS_REACH_NOT_INSTALLED:
		return "not_installed";
	case SMIS_REACH_NOTIFICATIONS_OFF:
		return "notifications_off";
	case SMIS_REACH_UNKNOWN:
		break;
	}
	return "unknown";
}

/* v (0 <= v < 10^n) in n decimal digits, zero-padded, as "%0*d" writes it. */
static void put_digits(char *p, int v, int n)
{
	for (int i = n - 1; i >= 0; i--, v /= 10)
		p[i] = (char)('0' + v % 10);
}

static void iso8601_full(int64_t ms, char *buf, size_t len)
{
	time_t s = (time_t)(ms / 1000);
	struct tm tm;
	gmtime_r(&s, &tm);
	snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
		 tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ms % 1000));
}

/*
 * Every answer formats two timestamps, and the store more, mostly of the
 * same second: each thread keeps the "YYYY-MM-DDTHH:MM:SS" of the last
 * second it formatted and only writes the milliseconds after it (gmtime_r
 * and snprintf cost more than the rest of building an answer's JSON).
 * Whatever the shortcut would not write exactly as iso8601_full does (a
 * time before 1970, a year past 9999, a short buffer) takes the long way.
 */
void smisd_iso8601(int64_t ms, char *buf, size_t len)
{
	static __thread int64_t second = -1;
	static __thread char prefix[sizeof("YYYY-MM-DDTHH:MM:SS")];

	if (ms < 0 || len < sizeof("YYYY-MM-DDTHH:MM:SS.mmmZ")) {
		iso8601_full(ms, buf, len);
		return;
	}
	if (ms / 1000 != second) {
		time_t s = (time_t)(ms / 1000);
		struct tm tm;
		if (!gmtime_r(&s, &tm) || tm.tm_year + 1900 > 9999) {
			iso8601_full(ms, buf, len);
			return;
		}
		put_digits(prefix, tm.tm_year + 1900, 4);
		prefix[4] = '-';
		put_digits(prefix + 5, tm.tm_mon + 1, 2);
		prefix[7] = '-';
		put_digits(prefix + 8, tm.tm_mday, 2);
		prefix[10] = 'T';
		put_digits(prefix + 11, tm.tm_hour, 2);
		prefix[13] = ':';
		put_digits(prefix + 14, tm.tm_min, 2);
		prefix[16] = ':';
		put_digits(prefix + 17, tm.tm_sec, 2);
		second = ms / 1000;
	}
	memcpy(buf, prefix, sizeof(prefix) - 1);
	buf[19] = '.';
	put_digits(buf + 20, (int)(ms % 1000), 3);
	buf[23] = 'Z';
	buf[24] = '\0';
}

/* The longest label set of smis_messages_total, with the longest names
 * (channel "none" is shorter than one) and the longer status, "failed":
 * it must fit the series table's, which makes no series it would cut. */
#define MESSAGE_LABELS "institution=\"\",strategy=\"\",status=\"failed\",channel=\"\""
_Static_assert(sizeof(MESSAGE_LABELS) + SMISD_INSTITUTION_NAME_MAX + 2 * SMISD_INSTANCE_NAME_MAX <=
		       SMISD_METRIC_LABELS_MAX,
	       "smis_messages_total's labels of the longest names fit a series");

/* Counted where the answer is made, so /metrics agrees with the answers
 * already given. */
static void count_message(const struct smisd_job *job)
{
	char labels[SMISD_METRIC_LABELS_MAX];
	smisd_concat(labels, sizeof(labels), "institution=\"", job->inst->name, "\",strategy=\"", job->strategy->name,
		     "\",status=\"", job->status, "\",channel=\"", job->channel ? job->channel : "none", "\"", NULL);
	smisd_metric_add("smis_messages_total", labels, 1);
}

void smisd_job_conclude(struct smisd_job *job)
{
	const struct smisd_attempt *last_fail = NULL, *lookup = NULL;
	struct smisd_jw w;
	char ts[40];
	char chain_error[sizeof(job->error)];

	/* An error set while running the chain (strategy_error) wins. */
	memcpy(chain_error, job->error, sizeof(chain_error));
	job->concluded_ms = smisd_now_ms();
	job->status = "failed";
	job->channel = NULL;
	job->error[0] = '\0';
	for (size_t i = 0; i < job->n_attempts; i++) {
		const struct smisd_attempt *a = &job->attempts[i];
		if (a->op == SMIS_OP_SEND && a->out.kind == SMIS_OUTCOME_OK) {
			if (!job->channel)
				job->channel = a->ch->name;
			job->status = "sent";
		} else if (a->out.kind != SMIS_OUTCOME_OK) {
			last_fail = a;
		} else if (a->op == SMIS_OP_LOOKUP) {
			lookup = a;
		}
	}
	if (strcmp(job->status, "failed") == 0) {
		if (chain_error[0])
			memcpy(job->error, chain_error, sizeof(job->error));
		else if (last_fail)
			snprintf(job->error, sizeof(job->error), "%s", last_fail->out.error[0] ? last_fail->out.error : "channel_failed");
		else if (lookup && lookup->out.reach != SMIS_REACH_YES)
			snprintf(job->error, sizeof(job->error), "recipient_not_reachable");
		else if (job->error[0] == '\0')
			snprintf(job->error, sizeof(job->error), "no_channel_attempted");
	}

	smisd_jw_init(&w);
	smisd_jw_object_begin(&w, NULL);
	smisd_jw_string(&w, "id", job->id);
	smisd_jw_string(&w, "status", job->status);
	smisd_jw_string(&w, "channel", job->channel);
	smisd_jw_array_begin(&w, "channels");
	for (size_t i = 0; i < job->n_attempts; i++) {
		const struct smisd_attempt *a = &job->attempts[i];
		if (a->op == SMIS_OP_SEND && a->out.kind == SMIS_OUTCOME_OK)
			smisd_jw_string(&w, NULL, a->ch->name);
	}
	smisd_jw_array_end(&w);
	if (job->error[0])
		smisd_jw_string(&w, "error", job->error);
	smisd_jw_string(&w, "strategy", job->strategy->name);
	if (job->req.reference)
		smisd_jw_string(&w, "reference", job->req.reference);
	smisd_iso8601(job->created_ms, ts, sizeof(ts));
	smisd_jw_string(&w, "created_at", ts);
	smisd_jw_array_begin(&w, "attempts");
	for (size_t i = 0; i < job->n_attempts; i++) {
		const struct smisd_attempt *a = &job->attempts[i];
		smisd_jw_object_begin(&w, NULL);
		smisd_jw_string(&w, "channel", a->ch ? a->ch->name : "?");
		smisd_jw_string(&w, "operation", smisd_op_name(a->op));
		smisd_jw_string(&w, "outcome", smisd_outcome_name(a->out.kind, a->op));
		if (a->out.error[0])
			smisd_jw_string(&w, "error", a->out.error);
		if (a->out.detail[0])
			smisd_jw_string(&w, "detail", a->out.detail);
		if (a->out.provider_ref[0])
			smisd_jw_string(&w, "provider_reference", a->out.provider_ref);
		if (a->op == SMIS_OP_LOOKUP && a->out.kind == SMIS_OUTCOME_OK) {
			smisd_jw_string(&w, "reachability", smisd_reach_name(a->out.reach));
			if (a->out.language[0])
				smisd_jw_string(&w, "language", a->out.language);
			smisd_jw_int(&w, "devices", a->out.devices);
		}
		if (a->op == SMIS_OP_SEND && a->out.sms_parts > 0) {
			smisd_jw_object_begin(&w, "sms");
			smisd_jw_string(&w, "encoding", a->out.sms_encoding);
			smisd_jw_int(&w, "characters", a->out.sms_chars);
			smisd_jw_int(&w, "segments", a->out.sms_parts);
			smisd_jw_object_end(&w);
		}
		smisd_iso8601(a->started_ms, ts, sizeof(ts));
		smisd_jw_string(&w, "started_at", ts);
		smisd_jw_int(&w, "duration_ms", a->elapsed_ms);
		smisd_jw_object_end(&w);
	}
	smisd_jw_array_end(&w);
	smisd_jw_object_end(&w);
	free(job->response_json);
	job->response_json = smisd_jw_finish(&w);
	count_message(job);
}
