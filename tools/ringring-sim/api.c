/*
 * api.c - RingRing's Message API as the simulator speaks it.
 *
 *   POST [/sms]/{v1|sandbox}/message        send (1..1000 recipients)
 *   POST [/sms]/{v1|sandbox}/statusmessage  status of one MessageId
 *   GET  [/sms]/{v1|sandbox}/statusmessage?apiKey=..&messageId=..  (Node SDK)
 *
 * Paths and body keys are case-insensitive because RingRing's official
 * SDKs disagree on both. Validation follows the ResultCodes of the Java
 * SDK (shared/reference/ringring-api.md); where the reference is silent
 * (HTTP status of an error, limits) the choice is documented in
 * docs/ringring-channel.md.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>

#include "gsm7.h"
#include "sim.h"

enum api_op {
	API_NONE = 0,
	API_SEND,
	API_STATUS,
};

enum enc_mode {
	ENC_AUTO,
	ENC_TEXT,
	ENC_UNICODE,
};

/* Map "/sms/v1/Message/" and friends to an operation. */
static enum api_op api_route(const char *path, bool *sandbox)
{
	char buf[64];
	size_t n = strlen(path);
	const char *p = buf;

	if (n >= sizeof(buf))
		return API_NONE;
	memcpy(buf, path, n + 1);
	while (n > 1 && buf[n - 1] == '/')
		buf[--n] = '\0';
	if (strncasecmp(p, "/sms/", 5) == 0)
		p += 4;
	if (strncasecmp(p, "/v1/", 4) == 0) {
		*sandbox = false;
		p += 4;
	} else if (strncasecmp(p, "/sandbox/", 9) == 0) {
		*sandbox = true;
		p += 9;
	} else {
		return API_NONE;
	}
	if (strcasecmp(p, "message") == 0)
		return API_SEND;
	if (strcasecmp(p, "statusmessage") == 0)
		return API_STATUS;
	return API_NONE;
}

/* RingRing answers errors with a JSON body; the HTTP status is 403 for
 * throttling (R2), 500 for internal errors, else 400 ("Bad request"). */
static unsigned http_for_code(long long code)
{
	if (code == 0)
		return 200;
	if (code == 30)
		return 403;
	if (code == 1)
		return 500;
	return 400;
}

static long long code_for_http(unsigned status)
{
	if (status == 403)
		return 30;
	if (status == 400)
		return 34;
	return 1;
}

static int reply_error(struct sim *sim, struct sim_reply *r, unsigned status, long long code,
		       bool send)
{
	struct json_object *o = json_object_new_object();
	int rc;

	if (!o)
		return -ENOMEM;
	if (send)
		json_object_object_add(o, "MessageCount", json_object_new_int(0));
	json_object_object_add(o, "ResultCode", json_object_new_int64(code));
	json_object_object_add(o, "ResultDescription",
			       json_object_new_string(sim_result_description(code)));
	rc = sim_reply_json(r, status ? status : http_for_code(code), o);
	json_object_put(o);
	if (code != 0)
		atomic_fetch_add(&sim->stats.rejected, 1);
	return rc;
}

static bool is_digits(const char *s, size_t len, size_t min, size_t max)
{
	if (len < min || len > max)
		return false;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
	}
	return true;
}

static bool is_http_url(const char *s)
{
	return s && strlen(s) <= 1000 &&
	       (strncasecmp(s, "http://", 7) == 0 || strncasecmp(s, "https://", 8) == 0) &&
	       !strpbrk(s, " \t\r\n");
}

/* Parts and characters as RingRing bills them, through lib/gsm7 like the
 * plugin: Auto and Text remap typography to GSM-7 when that makes the whole
 * text fit; Unicode forces UCS-2; Text with characters GSM-7 lacks sends
 * one '?' septet for each (so chars == septets, escapes ignored).
 * `info` comes in as the text's own analysis (send_validate's) and leaves
 * as the billed one. A text that is GSM-7 as it is has nothing to remap
 * (lib/gsm7 never touches a GSM-7 character), so only the others are
 * rewritten and analysed again: once per request, not per recipient. */
static int count_text(const char *text, enum enc_mode mode, struct smis_sms_info *info)
{
	char *rewritten = NULL;

	if (mode != ENC_UNICODE && info->encoding != SMIS_SMS_GSM7 &&
	    smis_sms_replace_lookalikes(text, strlen(text), &rewritten) == 0) {
		int rc = smis_sms_analyze(rewritten, strlen(rewritten), info);

		free(rewritten);
		if (rc != 0)
			return rc;
	}
	if (mode == ENC_UNICODE && info->encoding == SMIS_SMS_GSM7) {
		info->encoding = SMIS_SMS_UCS2;
		info->units = info->chars;
		info->parts = info->units <= SMIS_SMS_UCS2_SINGLE ?
				      1 : (info->units + SMIS_SMS_UCS2_MULTI - 1) / SMIS_SMS_UCS2_MULTI;
	} else if (mode == ENC_TEXT && info->encoding == SMIS_SMS_UCS2) {
		info->encoding = SMIS_SMS_GSM7;
		info->units = info->chars;
		info->parts = info->units <= SMIS_SMS_GSM7_SINGLE ?
				      1 : (info->units + SMIS_SMS_GSM7_MULTI - 1) / SMIS_SMS_GSM7_MULTI;
	}
	return 0;
}

/* The apiKey check, in constant time over the key's bytes like a real
 * backend's: only the key's length can be learnt from the answer's timing. */
static bool api_key_ok(const struct sim *sim, const char *key)
{
	size_t n = strlen(sim->api_key);

	return key && strlen(key) == n && CRYPTO_memcmp(key, sim->api_key, n) == 0;
}

static char *dup_opt(const char *s)
{
	return s && *s ? strdup(s) : NULL;
}

/* The keys a send reads, each looked up once per request in one pass over
 * the request's keys (send_fields) rather than by a scan of them per use
 * (sim_json_get): a one-recipient send made about 100 strcasecmp calls. */
enum send_key {
	K_API_KEY,
	K_TO,
	K_MESSAGE,
	K_FROM,
	K_SENDER_ID,
	K_REFERENCE,
	K_MESSAGE_ENCODING,
	K_TIME_SCHEDULED,
	K_TIME_VALIDITY,
	K_STATUS_URL,
	K_STATUS_METHOD,
	K_STATUS_FORMAT,
	K_COUNT,
};

#define KEY(k, name) [k] = { name, sizeof(name) - 1 }
static const struct {
	const char *name;
	size_t len;
} send_keys[K_COUNT] = {
	KEY(K_API_KEY, "apiKey"),
	KEY(K_TO, "to"),
	KEY(K_MESSAGE, "message"),
	KEY(K_FROM, "from"),
	KEY(K_SENDER_ID, "senderId"),
	KEY(K_REFERENCE, "reference"),
	KEY(K_MESSAGE_ENCODING, "messageEncoding"),
	KEY(K_TIME_SCHEDULED, "timeScheduled"),
	KEY(K_TIME_VALIDITY, "timeValidity"),
	KEY(K_STATUS_URL, "statusUrl"),
	KEY(K_STATUS_METHOD, "statusMethod"),
	KEY(K_STATUS_FORMAT, "statusFormat"),
};
#undef KEY

/* As sim_json_get would find each key: the value of the first key, in the
 * request's order, equal to it but for case (NULL when there is none, or
 * when that value is JSON null). */
static void send_fields(struct json_object *req, struct json_object *v[K_COUNT])
{
	bool seen[K_COUNT] = { false };

	memset(v, 0, K_COUNT * sizeof(*v));
	json_object_object_foreach(req, k, val) {
		size_t n = strlen(k);

		for (int i = 0; i < K_COUNT; i++) {
			if (!seen[i] && send_keys[i].len == n && strcasecmp(k, send_keys[i].name) == 0) {
				seen[i] = true;
				v[i] = val;
				break;
			}
		}
	}
}

/* Validate a send request; returns its ResultCode (0 = fine). On 0,
 * `*info` holds the message's analysis (as sent, not remapped). */
static long long send_validate(struct sim *sim, struct json_object *const fld[K_COUNT],
			       enum enc_mode *mode, const char **status_method,
			       struct smis_sms_info *info)
{
	struct json_object *v;
	const char *s;
	long long n;

	if (!api_key_ok(sim, sim_json_str(fld[K_API_KEY])))
		return 12;

	s = sim_json_str(fld[K_TO]);
	if (!s || !*s)
		return 9;
	{
		size_t count = 0;
		const char *p = s;
		for (;;) {
			const char *comma = strchr(p, ',');
			size_t len = comma ? (size_t)(comma - p) : strlen(p);
			if (!is_digits(p, len, 6, 15))
				return 9;
			if (++count > SIM_MAX_RECIPIENTS)
				return 20;
			if (!comma)
				break;
			p = comma + 1;
		}
	}

	v = fld[K_MESSAGE];
	s = sim_json_str(v);
	if (!s || !*s)
		return 7;
	if (smis_sms_analyze(s, strlen(s), info) != 0)
		return 13;
	if (info->chars > SIM_MAX_CHARS)
		return 8;

	v = fld[K_FROM];
	s = sim_json_str(v);
	if (v && (!s || (*s && !is_digits(s, strlen(s), 3, 16))))
		return 5;

	v = fld[K_SENDER_ID];
	s = sim_json_str(v);
	if (v) {
		size_t len = s ? strlen(s) : 0;
		if (!s || len > 11)
			return 31;
		for (size_t i = 0; i < len; i++) {
			char c = s[i];
			if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
			      (c >= 'A' && c <= 'Z')))
				return 31;
		}
	}

	v = fld[K_REFERENCE];
	if (v && !json_object_is_type(v, json_type_null)) {
		s = sim_json_str(v);
		if (!s)
			return 13;
		if (strlen(s) > SIM_REFERENCE_MAX)
			return 4;
	}

	*mode = ENC_AUTO;
	v = fld[K_MESSAGE_ENCODING];
	if (v) {
		s = sim_json_str(v);
		if (s && strcasecmp(s, "Text") == 0)
			*mode = ENC_TEXT;
		else if (s && strcasecmp(s, "Unicode") == 0)
			*mode = ENC_UNICODE;
		else if (s && strcasecmp(s, "Auto") == 0)
			*mode = ENC_AUTO;
		else if (sim_json_int(v, &n) && (n == 0 || n == 8))
			*mode = n == 8 ? ENC_UNICODE : ENC_TEXT; /* PHP SDK: TP-DCS */
		else
			return 13;
	}

	v = fld[K_TIME_SCHEDULED];
	if (v && !json_object_is_type(v, json_type_null) && !sim_json_str(v))
		return 3;
	v = fld[K_TIME_VALIDITY];
	if (v && !json_object_is_type(v, json_type_null) && !sim_json_str(v))
		return 19;

	v = fld[K_STATUS_URL];
	s = sim_json_str(v);
	if (v && !json_object_is_type(v, json_type_null) && s && *s && !is_http_url(s))
		return 17;
	if (v && !json_object_is_type(v, json_type_null) && !s)
		return 17;
	*status_method = "POST";
	s = sim_json_str(fld[K_STATUS_METHOD]);
	if (fld[K_STATUS_METHOD]) {
		if (!s || (strcasecmp(s, "POST") != 0 && strcasecmp(s, "GET") != 0))
			return 18;
		*status_method = s;
	}
	v = fld[K_STATUS_FORMAT];
	if (v) {
		s = sim_json_str(v);
		if (!s || (strcasecmp(s, "Json") != 0 && strcasecmp(s, "Xml") != 0))
			return 33;
	}
	return 0;
}

/* The answer to an accepted send, around the Messages entries api_send
 * wrote. Written out, not built as a json-c tree: the tree and its
 * serialisation were the largest share of the simulator's own work per
 * message at the bench's load. Byte for byte what json-c wrote for the
 * tree it replaces (JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE):
 * the same keys in the same order, the reference escaped as json-c does. */
static int reply_sent(struct sim_reply *r, int count, const char *reference,
		      const struct sim_buf *msgs)
{
	struct sim_buf b = { 0 };
	char head[64];
	int rc;

	snprintf(head, sizeof(head), "{\"MessageCount\":%d,\"Reference\":", count);
	sim_buf_str(&b, head);
	if (reference)
		sim_buf_json_string(&b, reference);
	else
		sim_buf_str(&b, "null");
	sim_buf_str(&b, ",\"Messages\":[");
	sim_buf_add(&b, msgs->s, msgs->len);
	sim_buf_str(&b, "],\"ResultCode\":0,\"ResultDescription\":\"Success\"}");
	rc = sim_reply_buf(r, 200, &b);
	free(b.s);
	return rc;
}

static int api_send(struct sim *sim, struct json_object *req, bool sandbox,
		    const struct sim_faults *f, struct sim_reply *r)
{
	struct sim_buf msgs = { 0 };
	struct smis_sms_info info;
	enum enc_mode mode = ENC_AUTO;
	const char *method = "POST";
	const char *to;
	const char *text;
	const char *reference;
	const char *status_url;
	const char *p;
	struct json_object *fld[K_COUNT];
	long long code;
	long delay = f->dlr_delay_ms >= 0 ? f->dlr_delay_ms : sim->dlr_delay_ms;
	int64_t now = sim_now_ms();
	int64_t mono = sim_mono_ms();
	int count = 0;
	int rc = -ENOMEM;

	send_fields(req, fld);
	code = send_validate(sim, fld, &mode, &method, &info);
	if (code != 0) {
		if (!sim->quiet) {
			printf("send rejected: ResultCode %lld (%s)\n", code,
			       sim_result_description(code));
		}
		return reply_error(sim, r, 0, code, true);
	}
	to = sim_json_str(fld[K_TO]);
	text = sim_json_str(fld[K_MESSAGE]);
	reference = sim_json_str(fld[K_REFERENCE]);
	status_url = sim_json_str(fld[K_STATUS_URL]);
	if (status_url && !*status_url)
		status_url = NULL;

	if (count_text(text, mode, &info) != 0)
		goto out;
	for (p = to; p;) {
		const char *comma = strchr(p, ',');
		size_t len = comma ? (size_t)(comma - p) : strlen(p);
		struct sim_msg *m = calloc(1, sizeof(*m));
		char masked[32];

		if (!m)
			goto out;
		memcpy(m->to, p, len);
		m->to[len] = '\0';
		m->message = strdup(text);
		m->reference = dup_opt(reference);
		m->sender_id = dup_opt(sim_json_str(fld[K_SENDER_ID]));
		m->from = dup_opt(sim_json_str(fld[K_FROM]));
		m->encoding_in = fld[K_MESSAGE_ENCODING] ?
			dup_opt(json_object_get_string(fld[K_MESSAGE_ENCODING])) : NULL;
		m->status_url = dup_opt(status_url);
		m->sandbox = sandbox;
		m->submitted_ms = now;
		m->delivered_ms = now + delay;
		snprintf(m->dlr_status, sizeof(m->dlr_status), "%s",
			 f->dlr_status[0] ? f->dlr_status : "200");
		m->parts = (int)info.parts;
		m->chars = (int)info.chars;
		m->encoding = info.encoding == SMIS_SMS_UCS2 ? "UNICODE" : "TEXT";
		if (!m->message) {
			sim_msg_free_fields(m);
			free(m);
			goto out;
		}
		sim_store_assign_id(sim->store, m);
		if (m->status_url)
			sim_dlr_schedule(sim->dlr, m, method, mono + delay);
		if (!sim->quiet) {
			sim_mask_number(m->to, masked, sizeof(masked));
			printf("send %s to %s: %d part(s), %d chars, %s%s\n", m->message_id, masked,
			       m->parts, m->chars, m->encoding, m->status_url ? ", DLR" : "");
		}
		atomic_fetch_add(&sim->stats.sent, 1);
		count++;
		sim_buf_str(&msgs, count > 1 ? ",{\"MessageId\":\"" : "{\"MessageId\":\"");
		sim_buf_str(&msgs, m->message_id);
		sim_buf_str(&msgs, "\",\"To\":\"");
		sim_buf_str(&msgs, m->to);
		sim_buf_str(&msgs, "\",\"ResultCode\":0,\"ResultDescription\":\"Success\"}");
		/* Accepted is accepted: recorded even if the answer fails. */
		sim_store_add_msg(sim->store, m);
		if (msgs.failed)
			goto out;
		p = comma ? comma + 1 : NULL;
	}
	rc = reply_sent(r, count, reference, &msgs);

out:
	free(msgs.s);
	return rc;
}

static int api_status(struct sim *sim, const char *key, const char *id, struct sim_reply *r)
{
	struct sim_msg m;
	struct json_object *o;
	char submitted[32];
	char delivered[32];
	long code;
	bool final;
	int rc;

	if (!api_key_ok(sim, key))
		return reply_error(sim, r, 0, 12, false);
	if (!id || !*id)
		return reply_error(sim, r, 0, 26, false);
	if (sim_store_get_msg(sim->store, id, &m) != 0)
		return reply_error(sim, r, 0, 29, false);

	final = sim_now_ms() >= m.delivered_ms;
	if (!final || !sim_parse_long(m.dlr_status, -1000000, 1000000, &code))
		code = 100;
	sim_format_time(m.submitted_ms, submitted, sizeof(submitted));
	sim_format_time(m.delivered_ms, delivered, sizeof(delivered));
	o = json_object_new_object();
	if (!o) {
		sim_msg_free_fields(&m);
		return -ENOMEM;
	}
	json_object_object_add(o, "MessageId", json_object_new_string(m.message_id));
	json_object_object_add(o, "Reference", m.reference ? json_object_new_string(m.reference) : NULL);
	json_object_object_add(o, "StatusCode", json_object_new_int((int)code));
	json_object_object_add(o, "StatusDescription",
			       json_object_new_string(sim_status_description(code)));
	json_object_object_add(o, "TimeScheduled", json_object_new_string(submitted));
	json_object_object_add(o, "TimeSubmitted", json_object_new_string(submitted));
	json_object_object_add(o, "DeliveryTime", final ? json_object_new_string(delivered) : NULL);
	json_object_object_add(o, "Country",
			       json_object_new_string(strncmp(m.to, "32", 2) == 0 ? "BE" : ""));
	json_object_object_add(o, "To", json_object_new_string(m.to));
	json_object_object_add(o, "Message", json_object_new_string(m.message));
	json_object_object_add(o, "From", json_object_new_string(m.from ? m.from :
				       m.sender_id ? m.sender_id : "8686"));
	json_object_object_add(o, "MessageEncoding", json_object_new_string(m.encoding));
	json_object_object_add(o, "NumberOfParts", json_object_new_int(m.parts));
	json_object_object_add(o, "NumberOfChars", json_object_new_int(m.chars));
	json_object_object_add(o, "ResultCode", json_object_new_int(0));
	json_object_object_add(o, "ResultDescription", json_object_new_string("Success"));
	rc = sim_reply_json(r, 200, o);
	json_object_put(o);
	sim_msg_free_fields(&m);
	return rc;
}

int sim_api(struct sim *sim, const char *method, const char *path, const char *body,
	    size_t len, sim_arg_fn get_arg, void *arg_ctx, struct sim_reply *r)
{
	struct json_object *req = NULL;
	struct sim_faults f;
	bool sandbox = false;
	enum api_op op = api_route(path, &sandbox);
	bool get = strcmp(method, "GET") == 0;
	int rc;

	if (op == API_NONE)
		return -ENOENT;
	atomic_fetch_add(&sim->stats.requests, 1);
	if (op == API_STATUS)
		atomic_fetch_add(&sim->stats.status_requests, 1);

	sim_faults_take(sim, &f);
	r->latency_ms = f.latency_ms;
	if (f.active && f.timeout) {
		/* Never answered: the request is not processed either. */
		atomic_fetch_add(&sim->stats.faulted, 1);
		r->drop = true;
		r->latency_ms = f.hold_ms;
		return sim_reply_text(r, 504, "text/plain", "");
	}
	if (f.active && f.shape == SIM_SHAPE_REDIRECT) {
		atomic_fetch_add(&sim->stats.faulted, 1);
		r->shape = f.shape;
		r->location = path;
		return sim_reply_text(r, 307, "text/html", "<html><body>Moved</body></html>");
	}
	if (f.active)
		r->shape = f.shape;
	if (f.active && f.garbage) {
		atomic_fetch_add(&sim->stats.faulted, 1);
		return sim_reply_text(r, f.http_status ? (unsigned)f.http_status : 200,
				      "text/html; charset=utf-8",
				      "<html><body><h1>Simulated garbage</h1></body></html>");
	}
	if (f.active && ((f.http_status && (f.http_status < 200 || f.http_status > 299)) ||
			 f.result_code > 0)) {
		long long code = f.result_code > 0 ? f.result_code :
						     code_for_http((unsigned)f.http_status);
		atomic_fetch_add(&sim->stats.faulted, 1);
		return reply_error(sim, r, (unsigned)f.http_status, code, op == API_SEND);
	}

	if (op == API_STATUS && get && get_arg)
		return api_status(sim, get_arg(arg_ctx, "apiKey"), get_arg(arg_ctx, "messageId"), r);
	if (strcmp(method, "POST") != 0) {
		rc = sim_reply_text(r, 405, "application/json; charset=utf-8",
				    "{\"ResultCode\":13,\"ResultDescription\":\"Method not allowed\"}");
		atomic_fetch_add(&sim->stats.rejected, 1);
		return rc;
	}
	req = sim_json_parse(body, len);
	if (!json_object_is_type(req, json_type_object)) {
		rc = reply_error(sim, r, 0, 13, op == API_SEND);
		goto out;
	}
	if (op == API_SEND)
		rc = api_send(sim, req, sandbox, &f, r);
	else
		rc = api_status(sim, sim_json_str(sim_json_get(req, "apiKey")),
				sim_json_str(sim_json_get(req, "messageId")), r);
out:
	json_object_put(req);
	return rc;
}
