/*
 * ringring.c - SMS channel through RingRing's Message API (api.ringring.be).
 *
 * A pair of pure functions (STYLE.md rule 7): start() turns a message into
 * the upstream HTTP request, resume() turns RingRing's answer into an
 * outcome. The core performs the HTTP itself, so nothing here blocks or
 * touches a socket. inbound() authenticates and parses RingRing's delivery
 * report (DLR) webhook.
 *
 * Mapping tables and configuration keys are documented in
 * docs/ringring-channel.md; keep both in step.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <json-c/json.h>
#include <openssl/crypto.h>

#include <smis/smis-plugin.h>

#include "gsm7.h"
#include "http_url.h"
#include "json_reuse.h"

#define RR_DEFAULT_BASE_URL "https://api.ringring.be/sms/v1"
/* RingRing refuses longer texts (ResultCode 8); counted in characters. */
#define RR_MAX_CHARS 758u
/* An alphanumeric originator is at most 11 characters in GSM (TP-OA). */
#define RR_SENDER_ALNUM_MAX 11u
#define RR_SENDER_DIGITS_MAX 15u
#define RR_ALLOW_MAX 32u
#define RR_TOKEN_MIN 16u
#define RR_TOKEN_MAX 128u
#define RR_URL_MAX 1024u
#define RR_JSON_DEPTH 16

enum rr_encoding {
	RR_ENC_AUTO = 0,
	RR_ENC_TEXT = 1,
	RR_ENC_UNICODE = 2,
};

static const char *const rr_encoding_names[] = { "Auto", "Text", "Unicode" };

/* One entry of callback_allow: an address with a prefix length (a plain
 * address is a /32 or /128). IPv4 is kept as such, never as mapped IPv6. */
struct rr_net {
	int family;
	unsigned char addr[16];
	unsigned prefix;
};

struct rr_state {
	const struct smis_core_api *api;
	struct smis_instance *self;
	char *base_url;
	char *api_key;
	char *status_url;
	char *callback_token;
	/* "/" + callback_token, what inbound path_rest must equal. */
	char *expected_path;
	size_t expected_path_len;
	enum rr_encoding encoding;
	/* Rewrite typographic look-alikes (quotes, dashes, NBSP) to GSM-7 to
	 * avoid UCS-2 pricing; off by default: it changes the text. */
	bool replace_lookalikes;
	struct rr_net allow[RR_ALLOW_MAX];
	size_t n_allow;
	/* Fallback language order; n_langs == 0 means the institution's. */
	char langs[SMIS_LANG_MAX][3];
	size_t n_langs;
	/* Parser for answers, made on first use, reused by resume() (on the
	 * event loops, which the core lets call the plugin one at a time for
	 * the whole daemon) and dropped after a failed parse (rr_json_parse);
	 * inbound() runs on several threads at once and makes its own. */
	struct json_tokener *answer_tok;
};

/* The SMS text of a message, ready to send, and what it costs. */
struct rr_text {
	char *text; /* malloc'd; free() */
	size_t len;
	struct smis_sms_info info;
};

/* ------------------------------------------------------------------ */
/* Small helpers                                                        */
/* ------------------------------------------------------------------ */

static bool rr_is_digits(const char *s, size_t min, size_t max)
{
	size_t n = 0;

	if (!s)
		return false;
	for (; s[n]; n++) {
		if (s[n] < '0' || s[n] > '9')
			return false;
	}
	return n >= min && n <= max;
}

static bool rr_is_alnum_ascii(char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/* Whether s is 1 to max characters of printable ASCII without space
 * (0x21-0x7E): no control character, no byte that is not UTF-8. */
static bool rr_is_visible_ascii(const char *s, size_t max)
{
	size_t n = 0;

	if (!s)
		return false;
	for (; s[n]; n++) {
		if ((unsigned char)s[n] <= 0x20 || (unsigned char)s[n] >= 0x7f)
			return false;
	}
	return n >= 1 && n <= max;
}

/*
 * Whether an id from RingRing (a send's MessageId, a DLR's Reference) is
 * one SMIS may keep: it becomes a provider reference, answered to
 * institutions and logged, so it holds what docs/ringring-channel.md
 * allows (printable ASCII without space, as RingRing's GUID-like ids and
 * SMIS's message ids are) and fits smis_report.provider_ref.
 */
static bool rr_id_ok(const char *id)
{
	return rr_is_visible_ascii(id, sizeof(((struct smis_report *)0)->provider_ref) - 1);
}

static bool rr_is_http_url(const char *s)
{
	if (!s)
		return false;
	if (strncasecmp(s, "http://", 7) != 0 && strncasecmp(s, "https://", 8) != 0)
		return false;
	return strlen(s) > 8 && rr_is_visible_ascii(s, RR_URL_MAX);
}

/* Language tags match on equality or on the primary subtag ("nl-BE"). */
static bool rr_lang_match(const char *want, const char *have)
{
	size_t n = 0;

	if (!want || !have || !*want || !*have)
		return false;
	while (want[n] && want[n] != '-' && want[n] != '_')
		n++;
	return strlen(have) == n && strncasecmp(want, have, n) == 0;
}

static bool rr_is_token_char(char c)
{
	return rr_is_alnum_ascii(c) || c == '-' || c == '_';
}

/*
 * Length of the number written in groups at s ("+32 470 12 34 56",
 * "0470/12.34.56", "(0470) 12-34-56"), up to its last digit and the rest of
 * a word glued to it, when it holds 5 digits or more; 0 otherwise.
 */
static size_t rr_number_span(const char *s)
{
	size_t i = 0, end = 0, digits = 0;

	if (!(*s == '+' || *s == '(' || (*s >= '0' && *s <= '9')))
		return 0;
	for (; s[i] && ((s[i] >= '0' && s[i] <= '9') || strchr(" +./()-", s[i])); i++) {
		if (s[i] >= '0' && s[i] <= '9') {
			digits++;
			end = i + 1;
		}
	}
	if (digits < 5)
		return 0;
	while (rr_is_token_char(s[end]))
		end++;
	return end;
}

/*
 * Copy upstream text into an outcome/report field so that it can be logged
 * and stored: printable ASCII only, and anything that could be a phone
 * number (5+ digits, also when written in groups) or a credential (20+
 * token characters) is masked. RingRing descriptions are short English
 * phrases, so this costs nothing in the common case.
 */
static void rr_sanitize(char *dst, size_t dstlen, const char *src)
{
	size_t o = 0;
	size_t i = 0;

	if (dstlen == 0)
		return;
	while (src && src[i] && o + 1 < dstlen) {
		size_t run = rr_number_span(src + i);
		size_t digits = 0;

		if (run > 0) {
			for (size_t k = 0; k < 3 && o + 1 < dstlen; k++)
				dst[o++] = '*';
			i += run;
			continue;
		}
		while (rr_is_token_char(src[i + run])) {
			if (src[i + run] >= '0' && src[i + run] <= '9')
				digits++;
			run++;
		}
		if (run > 0) {
			bool mask = digits >= 5 || run >= 20;
			const char *piece = mask ? "***" : src + i;
			size_t plen = mask ? 3 : run;
			for (size_t k = 0; k < plen && o + 1 < dstlen; k++)
				dst[o++] = piece[k];
			i += run;
			continue;
		}
		unsigned char c = (unsigned char)src[i];
		if (c >= 0x80) {
			/* One '?' per UTF-8 sequence, not per byte. */
			i++;
			while ((unsigned char)src[i] >= 0x80 && (unsigned char)src[i] < 0xc0)
				i++;
			dst[o++] = '?';
			continue;
		}
		dst[o++] = (c < 0x20 || c == 0x7f) ? ' ' : (char)c;
		i++;
	}
	dst[o] = '\0';
}

static void rr_outcome_fail(struct smis_outcome *out, enum smis_outcome_kind kind,
			    const char *error, const char *detail)
{
	out->kind = kind;
	SMIS_OUTCOME_SET(out->error, error);
	rr_sanitize(out->detail, sizeof(out->detail), detail);
}

/* ------------------------------------------------------------------ */
/* JSON helpers: RingRing's SDKs disagree on key casing, so every key   */
/* lookup is case-insensitive.                                          */
/* ------------------------------------------------------------------ */

/*
 * Parse one whole JSON value. *reuse, when given, is a tokener kept between
 * calls (one fewer set of allocations per answer), dropped after a parse
 * that fails (lib/json_reuse.h says why); without it, one for this call.
 */
static struct json_object *rr_json_parse(struct json_tokener **reuse, const char *body, size_t len)
{
	/* Only JSON's whitespace may follow the value (RFC 8259): a NUL is a
	 * byte like any other there, not the end of the body. */
	return smis_json_reuse_parse(reuse, RR_JSON_DEPTH, 0, body, len);
}

/*
 * The value of `key` in any casing; NULL when absent. A null member says
 * nothing, so another casing with a value wins over it ({"resultCode":null,
 * "ResultCode":9} is 9, not an absent code). Two casings with different
 * values are ambiguous and read as absent: member order must not pick a
 * ResultCode or a Reference.
 */
static struct json_object *rr_json_get(struct json_object *obj, const char *key)
{
	struct json_object *found = NULL;

	if (!json_object_is_type(obj, json_type_object))
		return NULL;
	json_object_object_foreach(obj, k, v) {
		if (!v || strcasecmp(k, key) != 0)
			continue;
		if (found && !json_object_equal(found, v))
			return NULL;
		found = v;
	}
	return found;
}

/* An integer given as a JSON number or as a string of digits (RingRing
 * sends StatusCode as "200" in DLRs and as a number elsewhere). */
static bool rr_json_int(struct json_object *v, long long *out)
{
	const char *s;
	char *end = NULL;
	long long n;
	double d;

	switch (json_object_get_type(v)) {
	case json_type_int:
		*out = (long long)json_object_get_int64(v);
		return true;
	case json_type_double:
		d = json_object_get_double(v);
		if (d != d || d < -1e15 || d > 1e15 || d != (double)(long long)d)
			return false;
		*out = (long long)d;
		return true;
	case json_type_string:
		s = json_object_get_string(v);
		while (*s == ' ')
			s++;
		if (*s == '\0')
			return false;
		errno = 0;
		n = strtoll(s, &end, 10);
		if (errno != 0 || end == s)
			return false;
		while (*end == ' ')
			end++;
		if (*end != '\0')
			return false;
		*out = n;
		return true;
	default:
		return false;
	}
}

static const char *rr_json_str(struct json_object *v)
{
	return json_object_is_type(v, json_type_string) ? json_object_get_string(v) : NULL;
}

/* ------------------------------------------------------------------ */
/* Result and status vocabularies                                      */
/* ------------------------------------------------------------------ */

/* ResultCode -> outcome (docs/ringring-channel.md, "ResultCode"). Only
 * failures RingRing itself calls transient are retried on this channel;
 * everything else lets the strategy fall back at once. */
static enum smis_outcome_kind rr_result_kind(long long code)
{
	switch (code) {
	case 0:
		return SMIS_OUTCOME_OK;
	case 1:  /* Internal */
	case 2:  /* Gateway not active */
	case 30: /* X-RateLimit reached */
	case 34: /* Maintenance, please retry later */
		return SMIS_OUTCOME_TEMPFAIL;
	default:
		return SMIS_OUTCOME_PERMFAIL;
	}
}

/*
 * "<prefix><code>", the stable name of a RingRing ResultCode or StatusCode.
 * Its codes are small numbers (ResultCode under 100, StatusCode 100-999);
 * one of five digits or more, or negative, is none of them, and could be a
 * phone number echoed back, which must not reach stored fields: it is
 * named "<prefix>unknown", as the GovApp channel leaves such codes out.
 */
static void rr_code_name(char *dst, size_t len, const char *prefix, long long code)
{
	if (code >= 0 && code <= 9999)
		snprintf(dst, len, "%s%lld", prefix, code);
	else
		snprintf(dst, len, "%sunknown", prefix);
}

static void rr_outcome_result(struct smis_outcome *out, long long code, const char *desc)
{
	char error[64];

	if (code == 30)
		snprintf(error, sizeof(error), "ringring_throttled");
	else
		rr_code_name(error, sizeof(error), "ringring_result_", code);
	rr_outcome_fail(out, rr_result_kind(code), error,
			desc && *desc ? desc : "RingRing refused the request");
}

/* StatusCode ranges (R7) -> report status. 400-499 means RingRing never
 * got a status from the operator and never will: final, so FAILED (a
 * strategy may then try another channel; a duplicate beats a lost
 * message). Undocumented codes stay PENDING: they say nothing final. */
static enum smis_report_status rr_status_of(long long code)
{
	if (code >= 200 && code <= 201)
		return SMIS_REPORT_DELIVERED;
	if ((code >= 300 && code <= 399) || (code >= 400 && code <= 499) ||
	    (code >= 800 && code <= 899))
		return SMIS_REPORT_FAILED;
	return SMIS_REPORT_PENDING;
}

/*
 * Fill `rep` from a StatusMessage response or a DLR object; -EINVAL when
 * the object has no usable StatusCode or names no message. The channel has
 * SMIS_CAP_REPORTS_BY_ID: a report names the message by SMIS's id, which
 * every send carries as its Reference and RingRing echoes; `message_id`,
 * when known (a status answer for that message), is used as is.
 */
static int rr_report_from_json(struct json_object *obj, const char *message_id,
			       struct smis_report *rep)
{
	const char *ref = message_id ? message_id : rr_json_str(rr_json_get(obj, "Reference"));
	long long code;

	if (!rr_id_ok(ref))
		return -EINVAL;
	if (!rr_json_int(rr_json_get(obj, "StatusCode"), &code))
		return -EINVAL;
	memset(rep, 0, sizeof(*rep));
	SMIS_OUTCOME_SET(rep->provider_ref, ref);
	rep->status = rr_status_of(code);
	rep->at_ms = 0; /* RingRing's timestamps carry no zone: use arrival */
	rr_code_name(rep->detail, sizeof(rep->detail), "ringring_status_", code);
	return 0;
}

/*
 * What every RingRing answer has in common: the transport, the HTTP status
 * classes that need no body, and the top-level ResultCode. Returns the
 * parsed body (caller puts it) when the caller has to look further, i.e.
 * on ResultCode 0 with a 2xx status; otherwise fills *out and returns NULL.
 */
static struct json_object *rr_map_common(struct json_tokener **tok, const struct smis_http_response *resp,
					 struct smis_outcome *out)
{
	struct json_object *obj = NULL;
	long long code;
	char detail[96];

	if (resp->transport != SMIS_TRANSPORT_OK) {
		if (resp->transport == SMIS_TRANSPORT_TIMEOUT)
			rr_outcome_fail(out, SMIS_OUTCOME_TEMPFAIL, "upstream_timeout",
					"RingRing did not answer in time");
		else if (resp->transport == SMIS_TRANSPORT_CONNECT)
			rr_outcome_fail(out, SMIS_OUTCOME_TEMPFAIL, "upstream_unreachable",
					resp->error ? resp->error : "cannot connect to RingRing");
		else
			rr_outcome_fail(out, SMIS_OUTCOME_TEMPFAIL, "upstream_error",
					resp->error ? resp->error : "transport error");
		goto out;
	}
	snprintf(detail, sizeof(detail), "HTTP %ld from RingRing", resp->status);
	if (resp->status >= 500) {
		rr_outcome_fail(out, SMIS_OUTCOME_TEMPFAIL, "upstream_5xx", detail);
		goto out;
	}
	if (resp->status == 403) {
		rr_outcome_fail(out, SMIS_OUTCOME_TEMPFAIL, "ringring_throttled",
				"HTTP 403: throttling limit exceeded");
		goto out;
	}
	obj = rr_json_parse(tok, resp->body, resp->body_len);
	if (!obj || !rr_json_int(rr_json_get(obj, "ResultCode"), &code)) {
		snprintf(detail, sizeof(detail), "HTTP %ld, body is not a RingRing answer",
			 resp->status);
		rr_outcome_fail(out, SMIS_OUTCOME_TEMPFAIL, "upstream_bad_response", detail);
		goto out_put;
	}
	if (code != 0) {
		rr_outcome_result(out, code, rr_json_str(rr_json_get(obj, "ResultDescription")));
		goto out_put;
	}
	if (resp->status < 200 || resp->status > 299) {
		snprintf(detail, sizeof(detail), "HTTP %ld with ResultCode 0", resp->status);
		rr_outcome_fail(out, SMIS_OUTCOME_TEMPFAIL, "upstream_bad_response", detail);
		goto out_put;
	}
	goto out;

out_put:
	json_object_put(obj);
	obj = NULL;
out:
	return obj;
}

static void rr_map_send(struct rr_state *st, const struct smis_http_response *resp,
			struct smis_outcome *out)
{
	struct json_object *obj = rr_map_common(&st->answer_tok, resp, out);
	struct json_object *msgs;
	struct json_object *first;
	const char *id;
	long long code;

	if (!obj)
		return;
	msgs = rr_json_get(obj, "Messages");
	first = json_object_is_type(msgs, json_type_array) && json_object_array_length(msgs) > 0 ?
			json_object_array_get_idx(msgs, 0) : NULL;
	if (!json_object_is_type(first, json_type_object)) {
		rr_outcome_fail(out, SMIS_OUTCOME_TEMPFAIL, "upstream_bad_response",
				"RingRing answer lists no message");
		goto out_put;
	}
	/* A per-recipient code overrides the request's: the request was fine,
	 * this number was not. It is required like the request's (RingRing's
	 * Message always has one, R1): a missing or null code says nothing
	 * about this recipient and must not read as success. */
	if (!rr_json_int(rr_json_get(first, "ResultCode"), &code)) {
		rr_outcome_fail(out, SMIS_OUTCOME_TEMPFAIL, "upstream_bad_response",
				"RingRing message has no integer ResultCode");
		goto out_put;
	}
	if (code != 0) {
		rr_outcome_result(out, code, rr_json_str(rr_json_get(first, "ResultDescription")));
		goto out_put;
	}
	id = rr_json_str(rr_json_get(first, "MessageId"));
	if (!rr_id_ok(id)) {
		rr_outcome_fail(out, SMIS_OUTCOME_TEMPFAIL, "upstream_bad_response",
				"RingRing answer has no usable MessageId");
		goto out_put;
	}
	out->kind = SMIS_OUTCOME_OK;
	SMIS_OUTCOME_SET(out->provider_ref, id);

out_put:
	json_object_put(obj);
}

/*
 * Whether `key`, in any casing and not null, names something else than
 * `want` (or is no string). Unlike rr_json_get, two casings that disagree
 * count: one of them names another message.
 */
static bool rr_names_other(struct json_object *obj, const char *key, const char *want)
{
	json_object_object_foreach(obj, k, v) {
		if (v && strcasecmp(k, key) == 0 && (!want || !json_object_is_type(v, json_type_string) ||
						     strcmp(json_object_get_string(v), want) != 0))
			return true;
	}
	return false;
}

static void rr_map_status(struct rr_state *st, const struct smis_message *msg,
			  const struct smis_http_response *resp, struct smis_outcome *out)
{
	struct json_object *obj = rr_map_common(&st->answer_tok, resp, out);
	const char *ref = SMIS_HAS_MEMBER(struct smis_message, msg, provider_ref) ? msg->provider_ref : NULL;

	if (!obj)
		return;
	/* The status of another message (a mixed-up answer, a proxy's cache)
	 * must not move this one: nothing is reported. An absent id says
	 * nothing against the answer; it is the one asked about. */
	if (rr_names_other(obj, "MessageId", ref) || rr_names_other(obj, "Reference", msg->id)) {
		st->api->log(st->self, SMIS_LOG_WARN,
			     "RingRing status answer names another message than the polled one: ignored");
		rr_outcome_fail(out, SMIS_OUTCOME_TEMPFAIL, "upstream_bad_response",
				"RingRing status answer is not about the polled message");
		goto out_put;
	}
	if (!msg->id || rr_report_from_json(obj, msg->id, &out->reports[0]) != 0) {
		rr_outcome_fail(out, SMIS_OUTCOME_TEMPFAIL, "upstream_bad_response",
				"RingRing status answer has no StatusCode");
		goto out_put;
	}
	out->n_reports = 1;
	out->kind = SMIS_OUTCOME_OK;
	SMIS_OUTCOME_SET(out->provider_ref, ref);

out_put:
	json_object_put(obj);
}

/* ------------------------------------------------------------------ */
/* Building the SMS                                                     */
/* ------------------------------------------------------------------ */

static const struct smis_content *rr_find_lang(const struct smis_message *msg, const char *lang)
{
	for (size_t i = 0; lang && i < msg->n_content; i++) {
		if (rr_lang_match(lang, msg->content[i].lang))
			return &msg->content[i];
	}
	return NULL;
}

/* The citizen's language when a lookup learnt it, then the one the
 * institution asked for, then the configured order, then the first text
 * the institution gave (its own order). */
static const struct smis_content *rr_choose_content(const struct rr_state *st,
						    const struct smis_message *msg)
{
	const struct smis_content *c = NULL;

	if (!msg->content || msg->n_content == 0)
		return NULL;
	if (SMIS_HAS_MEMBER(struct smis_message, msg, citizen_language))
		c = rr_find_lang(msg, msg->citizen_language);
	if (!c)
		c = rr_find_lang(msg, msg->language);
	for (size_t i = 0; !c && i < st->n_langs; i++)
		c = rr_find_lang(msg, st->langs[i]);
	return c ? c : &msg->content[0];
}

static void rr_text_free(struct rr_text *t)
{
	if (!t)
		return;
	free(t->text);
	t->text = NULL;
}

/*
 * Compose the SMS and count it. Returns 0, -ENOMEM, or -EINVAL with the
 * failure already in *out (PERMFAIL: no retry can fix the text).
 */
static void rr_outcome_counts(struct smis_outcome *out, const struct rr_text *t);

static int rr_text_build(const struct rr_state *st, const struct smis_message *msg,
			 struct rr_text *t, struct smis_outcome *out)
{
	const struct smis_content *c = rr_choose_content(st, msg);
	const char *title;
	const char *body;
	size_t tlen;
	size_t blen;
	int rc = 0;

	memset(t, 0, sizeof(*t));
	if (!c) {
		rr_outcome_fail(out, SMIS_OUTCOME_PERMFAIL, "sms_empty", "message has no content");
		rc = -EINVAL;
		goto out;
	}
	if (c->sms_text && *c->sms_text) {
		t->text = strdup(c->sms_text);
	} else {
		title = c->title ? c->title : "";
		body = c->body_text ? c->body_text : "";
		tlen = strlen(title);
		blen = strlen(body);
		t->text = malloc(tlen + blen + 2);
		if (t->text) {
			memcpy(t->text, title, tlen);
			/* No lone newline when one of the two is empty. */
			if (tlen && blen)
				t->text[tlen++] = '\n';
			memcpy(t->text + tlen, body, blen);
			t->text[tlen + blen] = '\0';
		}
	}
	if (!t->text) {
		rc = -ENOMEM;
		goto out;
	}
	t->len = strlen(t->text);
	/* With replace_lookalikes, typography is remapped to GSM-7 when that
	 * makes the whole text fit (as RingRing's "Auto" does), so the counts
	 * here are the ones it bills. */
	if (st->replace_lookalikes && st->encoding != RR_ENC_UNICODE) {
		char *rewritten = NULL;
		rc = smis_sms_replace_lookalikes(t->text, t->len, &rewritten);
		if (rc == 0) {
			free(t->text);
			t->text = rewritten;
			t->len = strlen(t->text);
		} else if (rc == -ENOMEM) {
			goto out_free;
		}
	}
	if (smis_sms_analyze(t->text, t->len, &t->info) != 0) {
		rr_outcome_fail(out, SMIS_OUTCOME_PERMFAIL, "sms_invalid_text",
				"SMS text is not valid UTF-8");
		rc = -EINVAL;
		goto out_free;
	}
	if (st->encoding == RR_ENC_UNICODE && t->info.encoding != SMIS_SMS_UCS2) {
		/* A GSM-7 text is all BMP: one UTF-16 unit per character. */
		t->info.encoding = SMIS_SMS_UCS2;
		t->info.units = t->info.chars;
		t->info.parts = t->info.units <= SMIS_SMS_UCS2_SINGLE ?
					1 : (t->info.units + SMIS_SMS_UCS2_MULTI - 1) / SMIS_SMS_UCS2_MULTI;
	}
	if (t->info.chars == 0) {
		rr_outcome_fail(out, SMIS_OUTCOME_PERMFAIL, "sms_empty", "SMS text is empty");
		rc = -EINVAL;
		goto out_free;
	}
	if (SMIS_HAS_MEMBER(struct smis_message, msg, max_sms_parts) && msg->max_sms_parts > 0 &&
	    t->info.parts > (size_t)msg->max_sms_parts) {
		char detail[128];
		snprintf(detail, sizeof(detail), "SMS text needs %zu segments (%s), the institution allows %d",
			 t->info.parts, smis_sms_encoding_name(t->info.encoding), msg->max_sms_parts);
		rr_outcome_fail(out, SMIS_OUTCOME_PERMFAIL, "sms_too_many_segments", detail);
		rr_outcome_counts(out, t);
		rc = -EINVAL;
		goto out_free;
	}
	if (t->info.chars > RR_MAX_CHARS) {
		char detail[96];
		snprintf(detail, sizeof(detail), "SMS text has %zu characters, RingRing takes %u",
			 t->info.chars, RR_MAX_CHARS);
		rr_outcome_fail(out, SMIS_OUTCOME_PERMFAIL, "sms_too_long", detail);
		rc = -EINVAL;
		goto out_free;
	}
	rc = 0;
	goto out;

out_free:
	rr_text_free(t);
out:
	return rc;
}

static void rr_outcome_counts(struct smis_outcome *out, const struct rr_text *t)
{
	out->sms_parts = (int)t->info.parts;
	out->sms_chars = (int)t->info.chars;
	SMIS_OUTCOME_SET(out->sms_encoding, smis_sms_encoding_name(t->info.encoding));
}

/*
 * The messageEncoding to ask for. A text we count as UCS-2 always goes as
 * "Unicode", whatever message_encoding says: "Text" would make RingRing
 * replace every character GSM-7 lacks, and "Auto" rewrites typography on
 * its side (R6); either way the citizen would not get the text as written,
 * nor would it be billed as we counted it (segments, max_sms_segments).
 */
static const char *rr_wire_encoding(const struct rr_state *st, const struct rr_text *t)
{
	return rr_encoding_names[t->info.encoding == SMIS_SMS_UCS2 ? RR_ENC_UNICODE : st->encoding];
}

static int rr_json_add_str(struct json_object *obj, const char *key, const char *val)
{
	struct json_object *s = json_object_new_string(val);

	if (!s)
		return -ENOMEM;
	/* Keys are string literals: no copy of each per message. */
	if (json_object_object_add_ex(obj, key, s, JSON_C_OBJECT_ADD_KEY_IS_NEW | JSON_C_OBJECT_KEY_IS_CONSTANT) != 0) {
		json_object_put(s);
		return -ENOMEM;
	}
	return 0;
}

/* POST {base_url}{path} with `obj` as its JSON body. */
static int rr_request(const struct rr_state *st, const char *path, struct json_object *obj,
		      struct smis_http_request **req)
{
	const struct smis_core_api *api = st->api;
	struct smis_http_request *r = NULL;
	const char *body;
	size_t body_len = 0;
	char url[RR_URL_MAX + 32];
	int rc = -ENOMEM;

	if ((size_t)snprintf(url, sizeof(url), "%s%s", st->base_url, path) >= sizeof(url)) {
		rc = -E2BIG;
		goto out;
	}
	body = json_object_to_json_string_length(
		obj, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &body_len);
	if (!body)
		goto out;
	r = api->http_request_new("POST", url);
	if (!r)
		goto out;
	rc = api->http_request_header(r, "Content-Type", "application/json; charset=UTF-8");
	if (rc == 0)
		rc = api->http_request_header(r, "Accept", "application/json");
	if (rc == 0)
		rc = api->http_request_body(r, body, body_len);
	if (rc != 0) {
		rc = rc < 0 ? rc : -ENOMEM;
		goto out_free_req;
	}
	*req = r;
	rc = SMIS_STEP_REQUEST;
	goto out;

out_free_req:
	api->http_request_free(r);
out:
	return rc;
}

/*
 * What a send's start() counted, kept in the message's call slot for
 * resume() to report: rebuilding and analysing the text again there cost
 * about as much as the counting itself. The three numbers are packed into
 * the slot's own bits (chars <= RR_MAX_CHARS, so parts too), not
 * allocated: nothing to free, never NULL once set (chars >= 1).
 */
static void *rr_counts_pack(const struct rr_text *t)
{
	return (void *)(uintptr_t)(t->info.chars | t->info.parts << 12 |
				   (uintptr_t)(t->info.encoding == SMIS_SMS_UCS2) << 24);
}

static void rr_counts_unpack(const void *call, struct rr_text *t)
{
	uintptr_t v = (uintptr_t)call;

	t->info.chars = v & 0xfff;
	t->info.parts = v >> 12 & 0xfff;
	t->info.encoding = v >> 24 ? SMIS_SMS_UCS2 : SMIS_SMS_GSM7;
}

static int rr_start_send(const struct rr_state *st, const struct smis_message *msg, void **call,
			 struct smis_http_request **req, struct smis_outcome *out)
{
	struct rr_text t;
	struct json_object *obj = NULL;
	const char *to = msg->recipient;
	const char *sender = msg->sender;
	int rc;

	rc = rr_text_build(st, msg, &t, out);
	if (rc == -EINVAL) {
		rc = SMIS_STEP_DONE;
		goto out;
	}
	if (rc != 0)
		goto out;
	rr_outcome_counts(out, &t);

	/* RingRing wants E.164 without '+' (R1 README). */
	if (to && to[0] == '+')
		to++;
	if (!rr_is_digits(to, 6, 15)) {
		rr_outcome_fail(out, SMIS_OUTCOME_PERMFAIL, "invalid_recipient",
				"recipient is not an E.164 number");
		rc = SMIS_STEP_DONE;
		goto out_free_text;
	}
	if (sender && !*sender)
		sender = NULL;
	if (sender && sender[0] == '+' && rr_is_digits(sender + 1, 3, RR_SENDER_DIGITS_MAX))
		sender++;

	obj = json_object_new_object();
	rc = obj ? 0 : -ENOMEM;
	if (rc == 0)
		rc = rr_json_add_str(obj, "apiKey", st->api_key);
	if (rc == 0)
		rc = rr_json_add_str(obj, "to", to);
	if (rc == 0)
		rc = rr_json_add_str(obj, "message", t.text);
	if (rc == 0 && msg->id)
		rc = rr_json_add_str(obj, "reference", msg->id);
	if (rc == 0 && sender) {
		size_t n = strlen(sender);
		bool alnum = n > 0 && n <= RR_SENDER_ALNUM_MAX;
		for (size_t i = 0; alnum && i < n; i++)
			alnum = rr_is_alnum_ascii(sender[i]);
		if (rr_is_digits(sender, 3, RR_SENDER_DIGITS_MAX)) {
			rc = rr_json_add_str(obj, "from", sender);
		} else if (alnum) {
			rc = rr_json_add_str(obj, "senderId", sender);
		} else {
			/* Sending under RingRing's default number instead would
			 * misrepresent the institution. */
			rr_outcome_fail(out, SMIS_OUTCOME_PERMFAIL, "invalid_sender",
					"sender is neither a number nor 1-11 letters/digits");
			rc = SMIS_STEP_DONE;
			goto out_put;
		}
	}
	if (rc == 0)
		rc = rr_json_add_str(obj, "messageEncoding", rr_wire_encoding(st, &t));
	if (rc == 0 && st->status_url) {
		rc = rr_json_add_str(obj, "statusUrl", st->status_url);
		if (rc == 0)
			rc = rr_json_add_str(obj, "statusMethod", "POST");
		if (rc == 0)
			rc = rr_json_add_str(obj, "statusFormat", "Json");
	}
	if (rc != 0)
		goto out_put;
	rc = rr_request(st, "/message", obj, req);
	if (rc == SMIS_STEP_REQUEST) {
		*call = rr_counts_pack(&t);
		st->api->log(st->self, SMIS_LOG_DEBUG, "ringring send: %zu chars, %zu part(s), %s",
			     t.info.chars, t.info.parts, smis_sms_encoding_name(t.info.encoding));
	}

out_put:
	json_object_put(obj);
out_free_text:
	rr_text_free(&t);
out:
	return rc;
}

static int rr_start_status(const struct rr_state *st, const struct smis_message *msg,
			   struct smis_http_request **req, struct smis_outcome *out)
{
	const char *ref = SMIS_HAS_MEMBER(struct smis_message, msg, provider_ref) ? msg->provider_ref : NULL;
	struct json_object *obj = NULL;
	int rc;

	if (!ref || !*ref) {
		rr_outcome_fail(out, SMIS_OUTCOME_PERMFAIL, "no_provider_ref",
				"no RingRing MessageId to ask about");
		rc = SMIS_STEP_DONE;
		goto out;
	}
	obj = json_object_new_object();
	rc = obj ? 0 : -ENOMEM;
	if (rc == 0)
		rc = rr_json_add_str(obj, "apiKey", st->api_key);
	if (rc == 0)
		rc = rr_json_add_str(obj, "messageId", ref);
	if (rc == 0)
		rc = rr_request(st, "/statusmessage", obj, req);
	json_object_put(obj);
out:
	return rc;
}

/* ------------------------------------------------------------------ */
/* Channel ops                                                          */
/* ------------------------------------------------------------------ */

static int rr_start(void *state, enum smis_op op, const struct smis_message *msg, void **call,
		    struct smis_http_request **req, struct smis_outcome *out)
{
	const struct rr_state *st = state;
	int rc;

	switch (op) {
	case SMIS_OP_SEND:
		rc = rr_start_send(st, msg, call, req, out);
		break;
	case SMIS_OP_STATUS:
		rc = rr_start_status(st, msg, req, out);
		break;
	default:
		rc = -EOPNOTSUPP;
		break;
	}
	return rc;
}

static int rr_resume(void *state, enum smis_op op, const struct smis_message *msg, void **call,
		     const struct smis_http_response *resp, struct smis_http_request **req,
		     struct smis_outcome *out)
{
	struct rr_state *st = state;
	struct rr_text t;
	struct smis_outcome scratch;
	int rc = SMIS_STEP_DONE;

	switch (op) {
	case SMIS_OP_SEND:
		rr_map_send(st, resp, out);
		if (*call) {
			rr_counts_unpack(*call, &t);
			rr_outcome_counts(out, &t);
			break;
		}
		/* Not started here (a core must start first; tests may not):
		 * the counts are a pure function of the message. */
		memset(&scratch, 0, sizeof(scratch));
		if (rr_text_build(st, msg, &t, &scratch) == 0) {
			rr_outcome_counts(out, &t);
			rr_text_free(&t);
		}
		break;
	case SMIS_OP_STATUS:
		rr_map_status(st, msg, resp, out);
		break;
	default:
		rc = -EOPNOTSUPP;
		break;
	}
	return rc;
}

/* ------------------------------------------------------------------ */
/* Webhook                                                              */
/* ------------------------------------------------------------------ */

static bool rr_net_parse(const char *s, size_t len, struct rr_net *net)
{
	char buf[64];
	char *slash;
	char *end = NULL;
	unsigned long prefix;
	unsigned max;

	if (len == 0 || len >= sizeof(buf))
		return false;
	memcpy(buf, s, len);
	buf[len] = '\0';
	slash = strchr(buf, '/');
	if (slash)
		*slash = '\0';
	memset(net, 0, sizeof(*net));
	if (inet_pton(AF_INET, buf, net->addr) == 1) {
		net->family = AF_INET;
		max = 32;
	} else if (inet_pton(AF_INET6, buf, net->addr) == 1) {
		net->family = AF_INET6;
		max = 128;
	} else {
		return false;
	}
	net->prefix = max;
	if (slash) {
		errno = 0;
		prefix = strtoul(slash + 1, &end, 10);
		if (errno || end == slash + 1 || *end || prefix > max)
			return false;
		net->prefix = (unsigned)prefix;
	}
	return true;
}

static bool rr_net_contains(const struct rr_net *net, int family, const unsigned char *addr)
{
	unsigned full = net->prefix / 8;
	unsigned rest = net->prefix % 8;

	if (net->family != family)
		return false;
	if (memcmp(net->addr, addr, full) != 0)
		return false;
	if (rest) {
		unsigned char mask = (unsigned char)(0xffu << (8 - rest));
		if ((net->addr[full] & mask) != (addr[full] & mask))
			return false;
	}
	return true;
}

static bool rr_addr_allowed(const struct rr_state *st, const char *remote)
{
	static const unsigned char mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
	unsigned char addr[16];
	int family;

	if (!remote)
		return false;
	if (inet_pton(AF_INET, remote, addr) == 1) {
		family = AF_INET;
	} else if (inet_pton(AF_INET6, remote, addr) == 1) {
		family = AF_INET6;
		/* A dual-stack listener shows IPv4 peers as ::ffff:a.b.c.d. */
		if (memcmp(addr, mapped, sizeof(mapped)) == 0) {
			memmove(addr, addr + 12, 4);
			family = AF_INET;
		}
	} else {
		return false;
	}
	for (size_t i = 0; i < st->n_allow; i++) {
		if (rr_net_contains(&st->allow[i], family, addr))
			return true;
	}
	return false;
}

static bool rr_token_ok(const struct rr_state *st, const char *path)
{
	/* The token's length is not the secret; its bytes are compared in
	 * constant time. */
	if (!path || strlen(path) != st->expected_path_len)
		return false;
	return CRYPTO_memcmp(path, st->expected_path, st->expected_path_len) == 0;
}

static int rr_inbound(void *state, const struct smis_inbound *in, struct smis_report *reports,
		      size_t max_reports, size_t *n_reports)
{
	const struct rr_state *st = state;
	struct json_object *obj = NULL;
	struct smis_report rep;
	size_t n = 0;
	int rc = -EACCES;

	*n_reports = 0;
	/* Fail closed: a channel with neither token nor allow list takes no
	 * webhooks at all. */
	if (!st->expected_path && st->n_allow == 0)
		goto out;
	if (st->n_allow && !rr_addr_allowed(st, in->remote_addr))
		goto out;
	if (st->expected_path && !rr_token_ok(st, in->path_rest))
		goto out;

	rc = -EINVAL;
	if (in->method && strcasecmp(in->method, "GET") == 0) {
		/* statusMethod GET: the DLR fields come as query arguments. */
		const char *id = NULL;
		const char *code = NULL;
		if (SMIS_HAS_MEMBER(struct smis_inbound, in, query) && in->query) {
			id = in->query(in, "Reference");
			if (!id)
				id = in->query(in, "reference");
			code = in->query(in, "StatusCode");
			if (!code)
				code = in->query(in, "statusCode");
		}
		if (!id || !code)
			goto out;
		obj = json_object_new_object();
		if (!obj || rr_json_add_str(obj, "Reference", id) != 0 ||
		    rr_json_add_str(obj, "StatusCode", code) != 0) {
			rc = -ENOMEM;
			goto out_put;
		}
	} else {
		obj = rr_json_parse(NULL, in->body, in->body_len);
	}

	if (json_object_is_type(obj, json_type_object)) {
		if (rr_report_from_json(obj, NULL, &rep) != 0)
			goto out_put;
		if (max_reports > 0)
			reports[n++] = rep;
	} else if (json_object_is_type(obj, json_type_array)) {
		size_t len = json_object_array_length(obj);
		if (len == 0)
			goto out_put;
		/* Refused whole rather than cut: a 200 for a batch whose tail
		 * was dropped would tell the sender those reports arrived, and
		 * it would never send them again. */
		if (len > max_reports) {
			st->api->log(st->self, SMIS_LOG_WARN,
				     "ringring webhook carried %zu reports, more than the %zu taken at once",
				     len, max_reports);
			goto out_put;
		}
		for (size_t i = 0; i < len; i++) {
			if (rr_report_from_json(json_object_array_get_idx(obj, i), NULL, &rep) != 0)
				goto out_put;
			reports[n++] = rep;
		}
	} else {
		goto out_put;
	}
	*n_reports = n;
	rc = 0;

out_put:
	json_object_put(obj);
out:
	return rc;
}

/* ------------------------------------------------------------------ */
/* Instance lifecycle                                                   */
/* ------------------------------------------------------------------ */

static void rr_destroy(void *state)
{
	struct rr_state *st = state;
	const struct smis_core_api *api;

	if (!st)
		return;
	api = st->api;
	api->free(st->base_url);
	if (st->api_key)
		OPENSSL_cleanse(st->api_key, strlen(st->api_key));
	api->free(st->api_key);
	api->free(st->status_url);
	if (st->callback_token)
		OPENSSL_cleanse(st->callback_token, strlen(st->callback_token));
	api->free(st->callback_token);
	if (st->expected_path)
		OPENSSL_cleanse(st->expected_path, st->expected_path_len);
	api->free(st->expected_path);
	smis_json_reuse_free(&st->answer_tok);
	api->free(st);
}

/* Read an optional string; false (after reporting) on a wrong type. */
static bool rr_cfg_string(const struct smis_core_api *api, struct smis_config *cfg,
			  const char *key, char **out)
{
	int rc = api->config_string(cfg, key, out);

	if (rc == -EINVAL) {
		api->config_error(cfg, key, "'%s' must be a string", key);
		return false;
	}
	if (rc != 0 && rc != -ENOENT) {
		api->config_error(cfg, key, "cannot read '%s' (error %d)", key, rc);
		return false;
	}
	return true;
}

/*
 * The next entry of a comma-separated setting, without surrounding blanks,
 * as [*a, *b); *p moves past it. 1 for an entry, 0 at the end of the list,
 * -1 for an empty one: ",," or a trailing comma is a typo, and reading it
 * as nothing would hide it.
 */
static int rr_list_next(const char **p, const char **a, const char **b)
{
	const char *end;

	if (!*p)
		return 0;
	end = strchr(*p, ',');
	*a = *p;
	*b = end ? end : *p + strlen(*p);
	*p = end ? end + 1 : NULL;
	while (*a < *b && (**a == ' ' || **a == '\t'))
		(*a)++;
	while (*b > *a && ((*b)[-1] == ' ' || (*b)[-1] == '\t'))
		(*b)--;
	return *a < *b ? 1 : -1;
}

static bool rr_cfg_empty_entry(struct rr_state *st, struct smis_config *cfg, const char *key,
			       const char *list)
{
	if (strspn(list, " \t") == strlen(list))
		st->api->config_error(cfg, key, "'%s' is empty", key);
	else
		st->api->config_error(cfg, key, "'%s' has an empty entry (a doubled or trailing comma?)",
				      key);
	return false;
}

static bool rr_cfg_allow(struct rr_state *st, struct smis_config *cfg, const char *list)
{
	const char *p = list;
	const char *a;
	const char *b;
	int r;

	while ((r = rr_list_next(&p, &a, &b)) != 0) {
		if (r < 0)
			return rr_cfg_empty_entry(st, cfg, "callback_allow", list);
		if (st->n_allow == RR_ALLOW_MAX) {
			st->api->config_error(cfg, "callback_allow", "more than %u entries",
					      RR_ALLOW_MAX);
			return false;
		}
		if (!rr_net_parse(a, (size_t)(b - a), &st->allow[st->n_allow])) {
			st->api->config_error(cfg, "callback_allow",
					      "'%.*s' is not an IP address or address/prefix",
					      (int)(b - a), a);
			return false;
		}
		st->n_allow++;
	}
	return true;
}

static bool rr_cfg_langs(struct rr_state *st, struct smis_config *cfg, const char *list)
{
	static const char *const known[] = { "nl", "fr", "de", "en" };
	const char *p = list;
	const char *a;
	const char *b;
	int r;

	while ((r = rr_list_next(&p, &a, &b)) != 0) {
		bool ok = false;
		if (r < 0)
			return rr_cfg_empty_entry(st, cfg, "language_order", list);
		for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
			ok = ok || (b - a == 2 && strncasecmp(a, known[i], 2) == 0);
		for (size_t i = 0; ok && i < st->n_langs; i++)
			ok = strncasecmp(st->langs[i], a, 2) != 0;
		if (!ok || st->n_langs == SMIS_LANG_MAX) {
			st->api->config_error(cfg, "language_order",
					      "'%.*s' is not one of nl, fr, de, en (each once)",
					      (int)(b - a), a);
			return false;
		}
		st->langs[st->n_langs][0] = (char)(a[0] | 0x20);
		st->langs[st->n_langs][1] = (char)(a[1] | 0x20);
		st->langs[st->n_langs][2] = '\0';
		st->n_langs++;
	}
	return true;
}

/*
 * Whether the path of status_url (checked by rr_is_http_url) ends in
 * "/<callback_token>": the core hands inbound() what follows
 * "/v1/callbacks/<instance>" (the query stripped), and rr_token_ok()
 * wants exactly that. Any other URL has every delivery report refused.
 */
static bool rr_status_url_has_token(const struct rr_state *st)
{
	const char *path = strstr(st->status_url, "://") + 3;
	size_t len;

	path += strcspn(path, "/?#"); /* past the authority */
	len = strcspn(path, "?#");
	return len >= st->expected_path_len &&
	       memcmp(path + len - st->expected_path_len, st->expected_path, st->expected_path_len) == 0;
}

static int rr_create(const struct smis_core_api *api, struct smis_instance *self,
		     struct smis_config *cfg, void **state)
{
	struct rr_state *st;
	char *encoding = NULL;
	char *allow = NULL;
	char *langs = NULL;
	bool ok = true;
	bool key_read;
	bool url_ok;
	size_t n;
	int rc = 0;

	*state = NULL;
	st = api->alloc(sizeof(*st));
	if (!st) {
		api->config_error(cfg, NULL, "out of memory");
		rc = -ENOMEM;
		goto out;
	}
	st->api = api;
	st->self = self;

	/* Read every key even after an error: all problems are reported in
	 * one go, and none of our keys is then called "unknown". */
	ok &= rr_cfg_string(api, cfg, "base_url", &st->base_url);
	key_read = rr_cfg_string(api, cfg, "api_key", &st->api_key);
	ok &= key_read;
	ok &= rr_cfg_string(api, cfg, "message_encoding", &encoding);
	ok &= rr_cfg_string(api, cfg, "status_url", &st->status_url);
	ok &= rr_cfg_string(api, cfg, "callback_token", &st->callback_token);
	ok &= rr_cfg_string(api, cfg, "callback_allow", &allow);
	ok &= rr_cfg_string(api, cfg, "language_order", &langs);
	{
		bool b = false;
		int brc = api->config_bool(cfg, "replace_lookalikes", &b);
		if (brc == -EINVAL) {
			api->config_error(cfg, "replace_lookalikes", "'replace_lookalikes' must be true or false");
			ok = 0;
		}
		st->replace_lookalikes = brc == 0 && b;
	}

	if (!st->base_url) {
		n = sizeof(RR_DEFAULT_BASE_URL);
		st->base_url = api->alloc(n);
		if (!st->base_url) {
			api->config_error(cfg, NULL, "out of memory");
			rc = -ENOMEM;
			goto out_free;
		}
		memcpy(st->base_url, RR_DEFAULT_BASE_URL, n);
	} else {
		/* Trailing '/' removed: the paths we append start with one. */
		const char *why = NULL;
		if (smis_http_base_url(st->base_url, &why) != 0) {
			api->config_error(cfg, "base_url", "'base_url' %s", why);
			ok = false;
		}
	}

	if (!st->api_key) {
		/* A wrong type was reported already. */
		if (key_read)
			api->config_error(cfg, NULL, "'api_key' is required");
		ok = false;
	} else {
		if (!rr_is_visible_ascii(st->api_key, 256)) {
			/* Never echo the key itself. */
			api->config_error(cfg, "api_key",
					  "must be 1-256 printable characters without spaces");
			ok = false;
		}
	}

	st->encoding = RR_ENC_AUTO;
	if (encoding) {
		bool found = false;
		for (int i = 0; i < 3 && !found; i++) {
			if (strcasecmp(encoding, rr_encoding_names[i]) == 0) {
				st->encoding = (enum rr_encoding)i;
				found = true;
			}
		}
		if (!found) {
			api->config_error(cfg, "message_encoding",
					  "must be \"Auto\", \"Text\" or \"Unicode\"");
			ok = false;
		}
	}

	url_ok = !st->status_url || rr_is_http_url(st->status_url);
	if (!url_ok) {
		api->config_error(cfg, "status_url", "must be an http:// or https:// URL");
		ok = false;
	}

	if (st->callback_token) {
		n = strlen(st->callback_token);
		bool good = n >= RR_TOKEN_MIN && n <= RR_TOKEN_MAX;
		for (size_t i = 0; good && i < n; i++) {
			char c = st->callback_token[i];
			good = rr_is_alnum_ascii(c) || c == '-' || c == '_' || c == '.' || c == '~';
		}
		if (!good) {
			api->config_error(cfg, "callback_token",
					  "must be %u-%u characters of A-Z a-z 0-9 - _ . ~",
					  RR_TOKEN_MIN, RR_TOKEN_MAX);
			ok = false;
		} else {
			st->expected_path = api->alloc(n + 2);
			if (!st->expected_path) {
				api->config_error(cfg, NULL, "out of memory");
				rc = -ENOMEM;
				goto out_free;
			}
			st->expected_path[0] = '/';
			memcpy(st->expected_path + 1, st->callback_token, n + 1);
			st->expected_path_len = n + 1;
		}
	}

	/* Only when both are valid: a bad one was reported already. The
	 * token is a secret: neither it nor the URL is echoed. */
	if (url_ok && st->status_url && st->expected_path && !rr_status_url_has_token(st)) {
		api->config_error(cfg, "status_url",
				  "'status_url' must end in \"/\" + callback_token "
				  "(https://<smis>/v1/callbacks/<channel>/<callback_token>): "
				  "every delivery report would be refused");
		ok = false;
	}

	if (allow && !rr_cfg_allow(st, cfg, allow))
		ok = false;
	if (langs && !rr_cfg_langs(st, cfg, langs))
		ok = false;

	if (!ok) {
		rc = -EINVAL;
		goto out_free;
	}
	if (st->status_url && !st->expected_path && st->n_allow == 0)
		api->log(self, SMIS_LOG_WARN,
			 "status_url is set but neither callback_token nor callback_allow: "
			 "every delivery report webhook will be refused");
	*state = st;
	st = NULL;
	goto out;

out_free:
	rr_destroy(st);
out:
	api->free(encoding);
	api->free(allow);
	api->free(langs);
	return rc;
}

static const struct smis_channel_ops rr_ops = {
	.size = sizeof(struct smis_channel_ops),
	.create = rr_create,
	.destroy = rr_destroy,
	.start = rr_start,
	.resume = rr_resume,
	.call_free = NULL,
	.inbound = rr_inbound,
};

SMIS_PLUGIN_EXPORT const struct smis_plugin_descriptor smis_plugin_descriptor = {
	.abi_version = SMIS_PLUGIN_ABI_VERSION,
	.size = sizeof(struct smis_plugin_descriptor),
	.kind = SMIS_PLUGIN_CHANNEL,
	.name = "ringring",
	.version = "0.1.0",
	.description = "SMS through RingRing's Message API (ringring.be)",
	.caps = SMIS_CAP_SEND | SMIS_CAP_SMS | SMIS_CAP_STATUS | SMIS_CAP_REPORTS_BY_ID,
	.channel = &rr_ops,
	.strategy = NULL,
};
