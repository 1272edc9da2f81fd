/*
 * govapp.c - channel plugin for the GovApp backend (SMIS side of the
 * protocol written in docs/govapp-protocol.md, v1).
 *
 * A pair of pure functions in the sense of STYLE.md rule 7: start() builds
 * the next HTTP request, resume() turns its response into an outcome or into
 * the request after it. The core performs the HTTP itself. A LOOKUP learns
 * the citizen's devices and public keys and keeps them in the per-message
 * `call` slot, so that the SEND that usually follows needs no second lookup;
 * a SEND without a recent lookup makes one first (lookup then send). A
 * LOOKUP also hands the core the usable device keys (devices_json) for
 * institutions that seal the envelopes themselves; their "passthrough"
 * messages (smis_message.encrypted_json) are sent without a lookup.
 *
 * The message content travels only inside per-device HPKE envelopes
 * (lib/e2e.h, docs/e2e-format.md); the titles are the only text in clear,
 * as GovApp's privacy statement promises.
 *
 * inbound() authenticates the backend's status callbacks with an HMAC-SHA256
 * signature over "<t>.<raw body>" and a bounded clock skew.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "smis/smis-plugin.h"
#include "e2e.h"
#include "http_url.h"
#include "json_reuse.h"

#define GOVAPP_VERSION "1.0.0"
#define GOVAPP_SUITE SMIS_E2E_SUITE
#define GOVAPP_KEY_ALG "X25519"
#define GOVAPP_DEFAULT_SKEW_S 300
#define GOVAPP_DEFAULT_LOOKUP_MAX_AGE_S 60
/* A secret shorter than this is guessable offline from one signed callback. */
#define GOVAPP_MIN_SECRET_LEN 16
#define GOVAPP_SIG_HEADER "X-GovApp-Signature"

struct govapp {
	const struct smis_core_api *api;
	struct smis_instance *self;
	char *lookup_url;
	char *send_url;
	char *authorization;  /* "Bearer <api_token>" */
	char *callback_secret; /* NULL: status callbacks are refused */
	size_t callback_secret_len;
	int64_t max_skew_s;
	int64_t lookup_max_age_ms;
	/* Parser for answers, made on first use and kept (one fewer set of
	 * allocations per answer), dropped after a parse that did not end
	 * cleanly (lib/json_reuse.h says why). Only start() and resume() use
	 * it: the core calls them one at a time for the whole daemon, and
	 * prepare_send() parses nothing. inbound() runs on several threads at
	 * once and makes its own. Not a per-thread tokener: its key's
	 * destructor would live in this plugin, which a reload unloads while
	 * the loop threads that hold one go on. */
	struct json_tokener *answer_tok;
};

struct govapp_device {
	char *id;
	char *public_key; /* base64url X25519, as the backend sent it */
	bool usable;      /* key algorithm and key passed the checks */
	const char *unusable_why; /* static, for the log: why not (NULL if usable) */
};

/* What the request handed to the core last was, so resume() knows what
 * the response answers. */
enum govapp_pending {
	GOVAPP_PENDING_NONE = 0,
	GOVAPP_PENDING_LOOKUP,
	GOVAPP_PENDING_SEND,
	GOVAPP_PENDING_STATUS,
};

/* The per (message, instance) slot. */
struct govapp_call {
	enum govapp_pending pending;
	bool have_lookup;
	int64_t lookup_at_ms; /* monotonic */
	bool registered;
	bool notifications;
	char language[8];
	struct govapp_device *devices;
	size_t n_devices;
	size_t n_usable;
	/* A lookup was made during the current SEND: an "unknown_device"
	 * answer then is final instead of a reason to refresh the keys. */
	bool fresh_in_op;
	/* The current SEND was already sent again because an answer named
	 * another message: a second such answer is final. */
	bool asked_again;
	/* Envelopes sealed by govapp_prepare_send for `devices` as they are
	 * now (freed with them), taken by the SEND that follows. */
	struct json_object *prepared_envs;
};

/* ------------------------------------------------------------------ */
/* Small helpers                                                       */
/* ------------------------------------------------------------------ */

static char *govapp_strdup(const char *s)
{
	size_t n = strlen(s) + 1;
	char *p = malloc(n);

	if (p)
		memcpy(p, s, n);
	return p;
}

static char *govapp_concat(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	char *p = malloc(la + lb + 1);

	if (p) {
		memcpy(p, a, la);
		memcpy(p + la, b, lb + 1);
	}
	return p;
}

static void govapp_devices_free(struct govapp_call *c)
{
	for (size_t i = 0; i < c->n_devices; i++) {
		free(c->devices[i].id);
		free(c->devices[i].public_key);
	}
	free(c->devices);
	c->devices = NULL;
	c->n_devices = 0;
	c->n_usable = 0;
	json_object_put(c->prepared_envs);
	c->prepared_envs = NULL;
}

/*
 * Parse exactly buf[0..len) as one JSON value; NULL when it is not JSON.
 * *reuse, when given, is the instance's kept tokener (struct govapp's
 * answer_tok says who may use it); without it, one for this call.
 */
static struct json_object *govapp_parse_json(struct json_tokener **reuse, const char *buf, size_t len)
{
	/* Trailing bytes after the value mean a corrupt or concatenated body. */
	return smis_json_reuse_parse(reuse, JSON_TOKENER_DEFAULT_DEPTH, 0, buf, len);
}

static const char *govapp_json_string(struct json_object *o, const char *key)
{
	struct json_object *v;

	if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string))
		return NULL;
	return json_object_get_string(v);
}

/*
 * An optional string member: 0 with *v NULL when absent or null, 0 with *v
 * the string, -EINVAL when it holds another type (a sender that wrote a
 * number there meant something SMIS cannot read, not "absent").
 */
static int govapp_json_opt_string(struct json_object *o, const char *key, const char **v)
{
	struct json_object *m = NULL;

	*v = NULL;
	if (!json_object_object_get_ex(o, key, &m) || !m)
		return 0;
	if (!json_object_is_type(m, json_type_string))
		return -EINVAL;
	*v = json_object_get_string(m);
	return 0;
}

/* -1 when absent or not a boolean. */
static int govapp_json_bool(struct json_object *o, const char *key)
{
	struct json_object *v;

	if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_boolean))
		return -1;
	return json_object_get_boolean(v) ? 1 : 0;
}

/*
 * Copy the upstream "error" code into dst when it is a short token of
 * [a-z0-9_] with fewer than five digits; anything else becomes "" so that
 * outcome details never carry upstream text that could hold personal data
 * (five digits may be the citizen's number, echoed).
 */
static void govapp_error_code(struct govapp *g, const struct smis_http_response *resp, char *dst,
			      size_t cap)
{
	struct json_object *o = govapp_parse_json(&g->answer_tok, resp->body, resp->body_len);
	const char *e = o ? govapp_json_string(o, "error") : NULL;
	size_t n = e ? strlen(e) : 0, digits = 0;

	dst[0] = '\0';
	if (n == 0 || n >= cap || n > 40)
		goto out;
	for (size_t i = 0; i < n; i++) {
		if (!((e[i] >= 'a' && e[i] <= 'z') || (e[i] >= '0' && e[i] <= '9') || e[i] == '_'))
			goto out;
		digits += e[i] >= '0' && e[i] <= '9';
	}
	if (digits >= 5)
		goto out;
	memcpy(dst, e, n + 1);
out:
	json_object_put(o);
}

static void govapp_fail(struct smis_outcome *out, enum smis_outcome_kind kind, const char *error,
			const char *fmt, ...) SMIS_PRINTF(4, 5);

static void govapp_fail(struct smis_outcome *out, enum smis_outcome_kind kind, const char *error,
			const char *fmt, ...)
{
	va_list ap;

	out->kind = kind;
	SMIS_OUTCOME_SET(out->error, error);
	va_start(ap, fmt);
	vsnprintf(out->detail, sizeof(out->detail), fmt, ap);
	va_end(ap);
}

/*
 * The outcome of a response that is not the expected success, following
 * the table in docs/govapp-protocol.md ("Error mapping"). `what` names the
 * request in the detail text ("lookup", "send", "status poll").
 */
static void govapp_map_failure(struct govapp *g, const struct smis_http_response *resp,
			       const char *what, struct smis_outcome *out)
{
	char code[48];
	long st = resp->status;

	switch (resp->transport) {
	case SMIS_TRANSPORT_OK:
		break;
	case SMIS_TRANSPORT_TIMEOUT:
		govapp_fail(out, SMIS_OUTCOME_TEMPFAIL, "upstream_timeout",
			    "GovApp %s timed out after %ld ms", what, resp->elapsed_ms);
		return;
	case SMIS_TRANSPORT_CONNECT:
		govapp_fail(out, SMIS_OUTCOME_TEMPFAIL, "upstream_unreachable",
			    "GovApp backend unreachable for %s", what);
		return;
	default:
		govapp_fail(out, SMIS_OUTCOME_TEMPFAIL, "upstream_error",
			    "GovApp %s failed in transport", what);
		return;
	}
	govapp_error_code(g, resp, code, sizeof(code));
	if (st >= 500 && st <= 599)
		govapp_fail(out, SMIS_OUTCOME_TEMPFAIL, "upstream_5xx",
			    "GovApp %s answered HTTP %ld", what, st);
	else if (st == 401 || st == 403)
		govapp_fail(out, SMIS_OUTCOME_PERMFAIL, "govapp_unauthorized",
			    "GovApp refused the api_token for %s (HTTP %ld)", what, st);
	else if (st == 404 && strcmp(code, "not_registered") == 0)
		govapp_fail(out, SMIS_OUTCOME_PERMFAIL, "govapp_not_registered",
			    "citizen has no GovApp installation");
	else if (st == 409)
		govapp_fail(out, SMIS_OUTCOME_PERMFAIL, "govapp_notifications_disabled",
			    "citizen turned GovApp notifications off");
	else if (st == 429)
		/* Rate limiting passes; failing over to SMS for it would be
		 * a costly answer to a temporary condition. */
		govapp_fail(out, SMIS_OUTCOME_TEMPFAIL, "upstream_throttled",
			    "GovApp throttled the %s (HTTP 429)", what);
	else if (st >= 400 && st <= 499)
		govapp_fail(out, SMIS_OUTCOME_PERMFAIL, "govapp_rejected",
			    "GovApp rejected the %s: HTTP %ld %s", what, st, code[0] ? code : "-");
	else
		govapp_fail(out, SMIS_OUTCOME_TEMPFAIL, "upstream_bad_response",
			    "GovApp %s answered unexpected HTTP %ld", what, st);
}

/*
 * True when the backend did what was asked, whatever 2xx it chose (200 or
 * 201 for a send documented as 202, say): the body then decides. Mapping
 * an unexpected 2xx to a failure would resend a notification the citizen
 * may already have, or fail over to an SMS that duplicates it.
 */
static bool govapp_answered_2xx(const struct smis_http_response *resp)
{
	return resp->transport == SMIS_TRANSPORT_OK && resp->status >= 200 && resp->status <= 299;
}

static void govapp_bad_response(struct smis_outcome *out, const char *what, const char *why)
{
	govapp_fail(out, SMIS_OUTCOME_TEMPFAIL, "upstream_bad_response",
		    "GovApp %s answer unusable: %s", what, why);
}

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant). */
static int64_t govapp_days_from_civil(int64_t y, unsigned m, unsigned d)
{
	int64_t era;
	unsigned yoe, doy, doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = (unsigned)(y - era * 400);
	doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + (int64_t)doe - 719468;
}

static int govapp_digits(const char *s, int n, int *out)
{
	int v = 0;

	for (int i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -EINVAL;
		v = v * 10 + (s[i] - '0');
	}
	*out = v;
	return 0;
}

/*
 * RFC 3339 date-time ("2024-05-01T12:34:56Z", optional fraction, "Z" or a
 * numeric offset) to epoch milliseconds. Returns 0 or -EINVAL.
 */
/* Days in month `mo` (1-12) of year `y`, Gregorian. */
static int govapp_month_days(int y, int mo)
{
	static const unsigned char days[12] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;

	return days[mo - 1] + (mo == 2 && leap);
}

static int govapp_parse_rfc3339(const char *s, int64_t *out_ms)
{
	int y, mo, d, h, mi, sec, ms = 0, oh = 0, om = 0, sign = 0;
	const char *p;
	int64_t t;

	if (!s || strlen(s) < 20 || s[4] != '-' || s[7] != '-' ||
	    (s[10] != 'T' && s[10] != 't') || s[13] != ':' || s[16] != ':')
		return -EINVAL;
	if (govapp_digits(s, 4, &y) || govapp_digits(s + 5, 2, &mo) || govapp_digits(s + 8, 2, &d) ||
	    govapp_digits(s + 11, 2, &h) || govapp_digits(s + 14, 2, &mi) ||
	    govapp_digits(s + 17, 2, &sec))
		return -EINVAL;
	/* "2024-02-30" is no date: days_from_civil would roll it into March. */
	if (mo < 1 || mo > 12 || d < 1 || d > govapp_month_days(y, mo) || h > 23 || mi > 59 || sec > 60)
		return -EINVAL;
	p = s + 19;
	if (*p == '.') {
		int n = 0;

		for (p++; *p >= '0' && *p <= '9'; p++, n++)
			if (n < 3)
				ms = ms * 10 + (*p - '0');
		if (n == 0)
			return -EINVAL;
		for (; n < 3; n++)
			ms *= 10;
	}
	if (*p == 'Z' || *p == 'z') {
		p++;
	} else if (*p == '+' || *p == '-') {
		sign = *p == '+' ? 1 : -1;
		/* The hours first: p[3] lies past the end of "...+" or "...+0". */
		if (govapp_digits(p + 1, 2, &oh) || p[3] != ':' || govapp_digits(p + 4, 2, &om) ||
		    oh > 23 || om > 59)
			return -EINVAL;
		p += 6;
	} else {
		return -EINVAL;
	}
	if (*p != '\0')
		return -EINVAL;
	t = govapp_days_from_civil(y, (unsigned)mo, (unsigned)d) * 86400 + h * 3600 + mi * 60 +
	    (sec > 59 ? 59 : sec);
	t -= sign * (oh * 3600 + om * 60);
	*out_ms = t * 1000 + ms;
	return 0;
}

/* Percent-encode a path segment; notification ids are plain tokens, but a
 * provider_ref comes from storage and must not be able to alter the path. */
static char *govapp_path_escape(const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t n = strlen(s);
	char *o = malloc(n * 3 + 1), *w = o;

	if (!o)
		return NULL;
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
		    *p == '-' || *p == '_' || *p == '.' || *p == '~') {
			*w++ = (char)*p;
		} else {
			*w++ = '%';
			*w++ = hex[*p >> 4];
			*w++ = hex[*p & 15];
		}
	}
	*w = '\0';
	return o;
}

/* ------------------------------------------------------------------ */
/* Instance                                                            */
/* ------------------------------------------------------------------ */

static void govapp_destroy(void *state)
{
	struct govapp *g = state;

	if (!g)
		return;
	free(g->lookup_url);
	free(g->send_url);
	if (g->authorization)
		OPENSSL_cleanse(g->authorization, strlen(g->authorization));
	free(g->authorization);
	if (g->callback_secret)
		OPENSSL_cleanse(g->callback_secret, g->callback_secret_len);
	free(g->callback_secret);
	smis_json_reuse_free(&g->answer_tok);
	free(g);
}

/* Read optional integer `key` in [min, max] into *v (left as is when absent). */
static int govapp_config_range(const struct smis_core_api *api, struct smis_config *cfg,
			       const char *key, long long min, long long max, int64_t *v)
{
	long long x;
	int rc = api->config_int(cfg, key, &x);

	if (rc == -ENOENT)
		return 0;
	if (rc < 0 || x < min || x > max) {
		api->config_error(cfg, key, "'%s' must be an integer from %lld to %lld", key, min, max);
		return -EINVAL;
	}
	*v = x;
	return 0;
}

static int govapp_create(const struct smis_core_api *api, struct smis_instance *self,
			 struct smis_config *cfg, void **state)
{
	struct govapp *g = calloc(1, sizeof(*g));
	char *base = NULL, *token = NULL, *secret = NULL;
	const char *why = NULL;
	int64_t max_age_s = GOVAPP_DEFAULT_LOOKUP_MAX_AGE_S;
	int rc = -ENOMEM, r;

	if (!g) {
		api->config_error(cfg, NULL, "out of memory");
		goto out;
	}
	g->api = api;
	g->self = self;
	g->max_skew_s = GOVAPP_DEFAULT_SKEW_S;

	/* Read every key before failing so that the core can report them all. */
	r = api->config_string(cfg, "base_url", &base);
	if (r < 0 || !base) {
		api->config_error(cfg, r == -ENOENT ? NULL : "base_url",
				  "'base_url' is required: the GovApp backend's http:// or https:// URL");
		rc = -EINVAL;
	} else if (smis_http_base_url(base, &why) != 0) {
		/* Trailing '/' removed: the paths we append start with one. */
		api->config_error(cfg, "base_url", "'base_url' %s", why);
		rc = -EINVAL;
	}
	r = api->config_string(cfg, "api_token", &token);
	if (r < 0 || !token || !token[0] || strpbrk(token, "\r\n \t")) {
		api->config_error(cfg, r == -ENOENT ? NULL : "api_token",
				  "'api_token' is required: a non-empty string without spaces");
		rc = -EINVAL;
	}
	r = api->config_string(cfg, "callback_secret", &secret);
	if (r == -ENOMEM) {
		/* Not read as absent: that would refuse every callback. */
		api->config_error(cfg, "callback_secret", "out of memory reading 'callback_secret'");
		rc = -EINVAL; /* an error reported: the block is refused below */
	} else if (r == -EINVAL || (r == 0 && strlen(secret) < GOVAPP_MIN_SECRET_LEN)) {
		api->config_error(cfg, "callback_secret",
				  "'callback_secret' must be a string of at least %d characters",
				  GOVAPP_MIN_SECRET_LEN);
		rc = -EINVAL;
	}
	if (govapp_config_range(api, cfg, "callback_max_skew_s", 1, 86400, &g->max_skew_s) < 0)
		rc = -EINVAL;
	if (govapp_config_range(api, cfg, "lookup_max_age_s", 0, 86400, &max_age_s) < 0)
		rc = -EINVAL;
	if (rc == -EINVAL)
		goto out;

	g->lookup_max_age_ms = max_age_s * 1000;
	g->lookup_url = govapp_concat(base, "/v1/citizens/lookup");
	g->send_url = govapp_concat(base, "/v1/notifications");
	g->authorization = govapp_concat("Bearer ", token);
	if (secret) {
		g->callback_secret = govapp_strdup(secret);
		g->callback_secret_len = strlen(secret);
	}
	if (!g->lookup_url || !g->send_url || !g->authorization || (secret && !g->callback_secret)) {
		api->config_error(cfg, NULL, "out of memory");
		rc = -ENOMEM;
		goto out;
	}
	if (!g->callback_secret)
		api->log(self, SMIS_LOG_INFO,
			 "no callback_secret: GovApp status callbacks will be refused, use STATUS polling");
	*state = g;
	g = NULL;
	rc = 0;
out:
	if (token)
		OPENSSL_cleanse(token, strlen(token));
	if (secret)
		OPENSSL_cleanse(secret, strlen(secret));
	api->free(base);
	api->free(token);
	api->free(secret);
	govapp_destroy(g);
	return rc;
}

static void govapp_call_free(void *state, void *call)
{
	struct govapp_call *c = call;

	if (!c)
		return;
	govapp_devices_free(c);
	free(c);
}

/* ------------------------------------------------------------------ */
/* Requests                                                            */
/* ------------------------------------------------------------------ */

/* A request with the bearer token and, when body is set, a JSON body. */
static struct smis_http_request *govapp_request(struct govapp *g, const char *method,
						const char *url, const char *body)
{
	const struct smis_core_api *api = g->api;
	struct smis_http_request *req = api->http_request_new(method, url);

	if (!req)
		goto out;
	if (api->http_request_header(req, "Authorization", g->authorization) < 0 ||
	    api->http_request_header(req, "Accept", "application/json") < 0)
		goto out_free;
	if (body && (api->http_request_header(req, "Content-Type", "application/json") < 0 ||
		     api->http_request_body(req, body, strlen(body)) < 0))
		goto out_free;
	goto out;
out_free:
	api->http_request_free(req);
	req = NULL;
out:
	return req;
}

/* Serialise without escaping '/' (URLs in titles stay readable). */
static const char *govapp_json_text(struct json_object *o)
{
	return json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
}

static int govapp_lookup_request(struct govapp *g, const struct smis_message *msg,
				 struct govapp_call *c, struct smis_http_request **req)
{
	struct json_object *o = json_object_new_object();
	int rc = -ENOMEM;

	/* POST with the number in the body: numbers never reach URLs, and so
	 * never proxy or access logs. */
	if (!o || json_object_object_add(o, "phone", json_object_new_string(msg->recipient)) < 0)
		goto out;
	*req = govapp_request(g, "POST", g->lookup_url, govapp_json_text(o));
	if (!*req)
		goto out;
	c->pending = GOVAPP_PENDING_LOOKUP;
	rc = SMIS_STEP_REQUEST;
out:
	json_object_put(o);
	return rc;
}

/* The plaintext sealed to every device (docs/govapp-protocol.md, "Envelope plaintext"). */
static char *govapp_plaintext(const struct smis_message *msg)
{
	struct json_object *o = json_object_new_object();
	struct json_object *content = json_object_new_object();
	char *text = NULL;

	if (!o || !content) {
		json_object_put(content);
		goto out;
	}
	json_object_object_add(o, "v", json_object_new_int(1));
	json_object_object_add(o, "message_id", json_object_new_string(msg->id));
	json_object_object_add(o, "content", content); /* o owns it from here */
	for (size_t i = 0; i < msg->n_content; i++) {
		const struct smis_content *ct = &msg->content[i];
		struct json_object *l = json_object_new_object();

		if (!l)
			goto out;
		json_object_object_add(l, "title", json_object_new_string(ct->title));
		json_object_object_add(l, "body", json_object_new_string(ct->body ? ct->body : ct->body_text));
		json_object_object_add(l, "body_text", json_object_new_string(ct->body_text));
		json_object_object_add(l, "format", json_object_new_string(ct->body_is_html ? "html" : "text"));
		json_object_object_add(content, ct->lang, l);
	}
	text = govapp_strdup(govapp_json_text(o));
out:
	json_object_put(o);
	return text;
}

/*
 * Hand the core the SEND: the clear part (ids, sender, titles) around the
 * envelopes array `envs`, which this takes ownership of.
 */
static int govapp_post_send(struct govapp *g, const struct smis_message *msg, struct govapp_call *c,
			    struct json_object *envs, struct smis_http_request **req)
{
	struct json_object *o = json_object_new_object();
	struct json_object *title = json_object_new_object();
	struct json_object *langs = json_object_new_array();
	int rc = -ENOMEM;

	if (!o || !title || !langs) {
		json_object_put(title);
		json_object_put(langs);
		json_object_put(envs);
		goto out;
	}
	json_object_object_add(o, "message_id", json_object_new_string(msg->id));
	json_object_object_add(o, "phone", json_object_new_string(msg->recipient));
	json_object_object_add(o, "sender", json_object_new_string(msg->institution ? msg->institution : ""));
	json_object_object_add(o, "reference", msg->reference ? json_object_new_string(msg->reference) : NULL);
	json_object_object_add(o, "title", title);
	json_object_object_add(o, "languages", langs);
	json_object_object_add(o, "encryption", json_object_new_string(GOVAPP_SUITE));
	json_object_object_add(o, "envelopes", envs);
	/* Titles only: GovApp shows them in the push notification, the rest
	 * exists only inside the envelopes. */
	for (size_t i = 0; i < msg->n_content; i++) {
		json_object_object_add(title, msg->content[i].lang,
				       json_object_new_string(msg->content[i].title));
		json_object_array_add(langs, json_object_new_string(msg->content[i].lang));
	}
	*req = govapp_request(g, "POST", g->send_url, govapp_json_text(o));
	if (!*req)
		goto out;
	c->pending = GOVAPP_PENDING_SEND;
	rc = SMIS_STEP_REQUEST;
out:
	json_object_put(o);
	return rc;
}

/* The envelopes an institution sealed itself, or NULL for a normal message. */
static const char *govapp_passthrough(const struct smis_message *msg)
{
	/* A core whose message ends before the member has no passthrough. */
	return SMIS_HAS_MEMBER(struct smis_message, msg, encrypted_json) ? msg->encrypted_json : NULL;
}

/* SEND of a passthrough message: its envelopes go as they are. */
static int govapp_send_passthrough(struct govapp *g, const struct smis_message *msg,
				   struct govapp_call *c, const char *enc_json,
				   struct smis_http_request **req, struct smis_outcome *out)
{
	struct json_object *o = govapp_parse_json(&g->answer_tok, enc_json, strlen(enc_json)), *envs = NULL;
	const char *suite = o ? govapp_json_string(o, "encryption") : NULL;
	int rc = SMIS_STEP_DONE;

	if (!suite || strcmp(suite, GOVAPP_SUITE) != 0 || !json_object_object_get_ex(o, "envelopes", &envs) ||
	    !json_object_is_type(envs, json_type_array) || json_object_array_length(envs) == 0) {
		govapp_fail(out, SMIS_OUTCOME_PERMFAIL, "govapp_bad_envelopes",
			    "the institution's envelopes are not \"%s\" envelopes", GOVAPP_SUITE);
		goto out;
	}
	rc = govapp_post_send(g, msg, c, json_object_get(envs), req);
out:
	json_object_put(o);
	return rc;
}

/*
 * Seal the message for every usable device: *envs gets the envelopes array
 * (one per device sealed for, possibly none). 0, or -ENOMEM. Thread-safe on
 * its own call (govapp_prepare_send runs it on a core worker thread).
 */
static int govapp_seal_envelopes(struct govapp *g, const struct smis_message *msg,
				 const struct govapp_call *c, struct json_object **envs)
{
	char *pt = govapp_plaintext(msg);
	size_t pt_len;
	int rc = -ENOMEM;

	*envs = json_object_new_array();
	if (!pt || !*envs)
		goto out;
	pt_len = strlen(pt);
	for (size_t i = 0; i < c->n_devices; i++) {
		const struct govapp_device *d = &c->devices[i];
		struct json_object *e;
		char *enc = NULL, *ct = NULL;
		int r;

		if (!d->usable)
			continue;
		/* The envelope is bound to the message and device ids: the
		 * backend cannot move it to another device or message. */
		r = smis_e2e_seal(msg->id, d->id, d->public_key, (const unsigned char *)pt, pt_len,
				  &enc, &ct);
		if (r == -ENOMEM)
			goto out;
		if (r < 0) {
			g->api->log(g->self, SMIS_LOG_INFO,
				    "GovApp device %s: sealing failed (%d), device skipped", d->id, r);
			continue;
		}
		e = json_object_new_object();
		if (e) {
			json_object_object_add(e, "device_id", json_object_new_string(d->id));
			json_object_object_add(e, "enc", json_object_new_string(enc));
			json_object_object_add(e, "ciphertext", json_object_new_string(ct));
			json_object_array_add(*envs, e);
		}
		free(enc);
		free(ct);
		if (!e)
			goto out;
	}
	rc = 0;
out:
	if (pt) {
		OPENSSL_cleanse(pt, strlen(pt));
		free(pt);
	}
	if (rc != 0) {
		json_object_put(*envs);
		*envs = NULL;
	}
	return rc;
}

/* True when a SEND started now would use the lookup this call holds. */
static bool govapp_lookup_fresh(const struct govapp *g, const struct govapp_call *c)
{
	return c->have_lookup && g->lookup_max_age_ms > 0 &&
	       g->api->monotonic_ms() - c->lookup_at_ms <= g->lookup_max_age_ms;
}

/*
 * Build the SEND from the looked-up devices, or finish with a PERMFAIL when
 * the lookup already shows the send cannot succeed.
 */
static int govapp_send_request(struct govapp *g, const struct smis_message *msg,
			       struct govapp_call *c, struct smis_http_request **req,
			       struct smis_outcome *out)
{
	struct json_object *envs = NULL;
	int rc;

	if (!c->registered) {
		govapp_fail(out, SMIS_OUTCOME_PERMFAIL, "govapp_not_registered",
			    "citizen has no GovApp installation");
		return SMIS_STEP_DONE;
	}
	if (!c->notifications) {
		govapp_fail(out, SMIS_OUTCOME_PERMFAIL, "govapp_notifications_disabled",
			    "citizen turned GovApp notifications off");
		return SMIS_STEP_DONE;
	}
	if (c->n_usable == 0) {
		govapp_fail(out, SMIS_OUTCOME_PERMFAIL, "govapp_no_device_key",
			    "none of the citizen's %zu GovApp devices has a usable public key",
			    c->n_devices);
		return SMIS_STEP_DONE;
	}
	if (c->prepared_envs) { /* sealed by govapp_prepare_send for these devices */
		envs = c->prepared_envs;
		c->prepared_envs = NULL;
	} else if ((rc = govapp_seal_envelopes(g, msg, c, &envs)) != 0) {
		return rc;
	}
	if (json_object_array_length(envs) == 0) {
		json_object_put(envs);
		govapp_fail(out, SMIS_OUTCOME_PERMFAIL, "govapp_no_device_key",
			    "no envelope could be sealed for the citizen's GovApp devices");
		return SMIS_STEP_DONE;
	}
	return govapp_post_send(g, msg, c, envs, req);
}

/*
 * The sealing of a SEND, ahead of it on a core worker thread: only when the
 * SEND will use the lookup this call already holds (the same test as
 * govapp_start's). Anything else, start handles as if this had not run.
 */
static void govapp_prepare_send(void *state, const struct smis_message *msg, void **call)
{
	struct govapp *g = state;
	struct govapp_call *c = call ? *call : NULL;

	if (!g || !c || !msg || !msg->id || c->prepared_envs || govapp_passthrough(msg) ||
	    !govapp_lookup_fresh(g, c) || !c->registered || !c->notifications || c->n_usable == 0)
		return;
	if (govapp_seal_envelopes(g, msg, c, &c->prepared_envs) != 0)
		c->prepared_envs = NULL; /* start seals, or fails, itself */
}

static int govapp_status_request(struct govapp *g, const struct smis_message *msg,
				 struct govapp_call *c, struct smis_http_request **req,
				 struct smis_outcome *out)
{
	char *id = NULL, *url = NULL;
	int rc = -ENOMEM;

	if (!SMIS_HAS_MEMBER(struct smis_message, msg, provider_ref) || !msg->provider_ref ||
	    !msg->provider_ref[0]) {
		govapp_fail(out, SMIS_OUTCOME_PERMFAIL, "govapp_no_notification_id",
			    "no GovApp notification id to poll");
		rc = SMIS_STEP_DONE;
		goto out;
	}
	id = govapp_path_escape(msg->provider_ref);
	url = id ? malloc(strlen(g->send_url) + strlen(id) + 2) : NULL;
	if (!url)
		goto out;
	snprintf(url, strlen(g->send_url) + strlen(id) + 2, "%s/%s", g->send_url, id);
	*req = govapp_request(g, "GET", url, NULL);
	if (!*req)
		goto out;
	c->pending = GOVAPP_PENDING_STATUS;
	rc = SMIS_STEP_REQUEST;
out:
	free(id);
	free(url);
	return rc;
}

/* ------------------------------------------------------------------ */
/* Responses                                                           */
/* ------------------------------------------------------------------ */

/* A device's place in the lookup answer, to sort by id. */
struct govapp_dev_key {
	const char *id;
	bool usable;
	size_t idx;
};

/* By id, then entries with a usable key, then by position: the entry of
 * an id that is kept sorts first. */
static int govapp_dev_key_cmp(const void *a, const void *b)
{
	const struct govapp_dev_key *x = a, *y = b;
	int c = strcmp(x->id, y->id);

	if (c)
		return c;
	if (x->usable != y->usable)
		return x->usable ? -1 : 1;
	return (x->idx > y->idx) - (x->idx < y->idx);
}

/*
 * An id as docs/govapp-protocol.md section 1 allows it: 1 to cap - 1
 * printable ASCII characters, 0x21 to 0x7E. Ids are stored with the
 * reports, answered to institutions and logged, so a control character
 * or a byte that is no UTF-8 would reach their parsers and terminals.
 */
static bool govapp_id_ok(const char *id, size_t cap)
{
	size_t len = id ? strlen(id) : 0;

	if (len == 0 || len >= cap)
		return false;
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)id[i] < 0x21 || (unsigned char)id[i] > 0x7e)
			return false;
	return true;
}

/* A device_id: 63 characters is what smis_report.device holds. */
static bool govapp_device_id_ok(const char *id)
{
	return govapp_id_ok(id, sizeof(((struct smis_report *)0)->device));
}

/* A notification_id, which becomes the provider reference: 127
 * characters is what smis_outcome.provider_ref and smis_report.provider_ref
 * hold. */
static bool govapp_notification_id_ok(const char *id)
{
	return govapp_id_ok(id, sizeof(((struct smis_report *)0)->provider_ref));
}

/*
 * A lookup answer that lists a device_id twice would make the SEND seal
 * two envelopes for one device, which the backend refuses (422
 * duplicate_device), and hand institutions that encrypt themselves the
 * device twice. One entry of each id is kept, where the backend put it:
 * the first with a usable key, else the first (keeping an unusable one
 * over a usable one would fail the SEND with govapp_no_device_key for a
 * device that can be reached); the others are dropped (logged). Sorting
 * keeps this O(n log n) however long the answer. 0 or -ENOMEM.
 */
static int govapp_devices_dedupe(struct govapp *g, struct govapp_call *c)
{
	struct govapp_dev_key *keys;
	bool *drop;
	size_t n = c->n_devices, kept = 0;

	if (n < 2)
		return 0;
	keys = malloc(n * sizeof(*keys));
	drop = calloc(n, sizeof(*drop));
	if (!keys || !drop) {
		free(keys);
		free(drop);
		return -ENOMEM;
	}
	for (size_t i = 0; i < n; i++)
		keys[i] = (struct govapp_dev_key){ c->devices[i].id, c->devices[i].usable, i };
	qsort(keys, n, sizeof(*keys), govapp_dev_key_cmp);
	for (size_t i = 1; i < n; i++)
		drop[keys[i].idx] = strcmp(keys[i].id, keys[i - 1].id) == 0;
	for (size_t i = 0; i < n; i++) {
		if (drop[i]) {
			free(c->devices[i].id);
			free(c->devices[i].public_key);
		} else {
			c->devices[kept++] = c->devices[i];
		}
	}
	c->n_devices = kept;
	if (kept < n)
		g->api->log(g->self, SMIS_LOG_INFO,
			    "GovApp lookup listed a device id more than once: %zu duplicate entr%s dropped",
			    n - kept, n - kept == 1 ? "y" : "ies");
	free(keys);
	free(drop);
	return 0;
}

/*
 * Why SMIS cannot encrypt to a device entry, for the log (NULL: it can).
 * An absent key_alg means X25519 (docs/govapp-protocol.md section 1), a
 * string must name it. Any other type, null included, is malformed backend
 * data, not "absent": the device is unusable, as with a bad key, rather
 * than sealed to by default. The operator is told which of the two the
 * backend got wrong, its key_alg or its key, but not the values: a key
 * is no business of the log.
 */
static const char *govapp_device_unusable(struct json_object *d, const char *pk)
{
	struct json_object *v;

	if (json_object_object_get_ex(d, "key_alg", &v)) {
		if (!json_object_is_type(v, json_type_string))
			return "its key_alg is malformed (not a string)";
		if (strcmp(json_object_get_string(v), GOVAPP_KEY_ALG) != 0)
			return "its key_alg is not " GOVAPP_KEY_ALG;
	}
	if (!pk || smis_e2e_check_public_key(pk) != 0)
		return "it has no valid " GOVAPP_KEY_ALG " public key";
	return NULL;
}

/* Store the lookup answer in the slot. Returns 0 or -EINVAL (bad answer). */
static int govapp_take_lookup(struct govapp *g, struct govapp_call *c, struct json_object *o)
{
	struct json_object *devs;
	const char *lang;
	size_t n;
	int reg, rc = -EINVAL;

	govapp_devices_free(c);
	c->have_lookup = false;
	reg = govapp_json_bool(o, "registered");
	if (reg < 0)
		goto out;
	c->registered = reg == 1;
	c->notifications = govapp_json_bool(o, "notifications_enabled") == 1;
	c->language[0] = '\0';
	lang = govapp_json_string(o, "language");
	if (lang && strlen(lang) < sizeof(c->language) && strspn(lang, "abcdefghijklmnopqrstuvwxyz-") == strlen(lang))
		SMIS_OUTCOME_SET(c->language, lang);
	if (!c->registered || !json_object_object_get_ex(o, "devices", &devs)) {
		rc = 0;
		goto out_done;
	}
	if (!json_object_is_type(devs, json_type_array))
		goto out;
	n = json_object_array_length(devs);
	c->devices = n ? calloc(n, sizeof(*c->devices)) : NULL;
	if (n && !c->devices) {
		rc = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		struct json_object *d = json_object_array_get_idx(devs, i);
		const char *id = govapp_json_string(d, "device_id");
		const char *pk = govapp_json_string(d, "public_key");
		struct govapp_device *dev = &c->devices[c->n_devices];

		if (!govapp_device_id_ok(id)) {
			g->api->log(g->self, SMIS_LOG_INFO, "GovApp lookup: device without a usable id skipped");
			continue;
		}
		dev->id = govapp_strdup(id);
		dev->public_key = govapp_strdup(pk ? pk : "");
		c->n_devices++;
		if (!dev->id || !dev->public_key) {
			rc = -ENOMEM;
			goto out;
		}
		dev->unusable_why = govapp_device_unusable(d, pk);
		dev->usable = dev->unusable_why == NULL;
	}
	rc = govapp_devices_dedupe(g, c);
	if (rc < 0)
		goto out;
	for (size_t i = 0; i < c->n_devices; i++) {
		if (c->devices[i].usable)
			c->n_usable++;
		else
			g->api->log(g->self, SMIS_LOG_INFO, "GovApp device %s skipped: %s", c->devices[i].id,
				    c->devices[i].unusable_why);
	}
out_done:
	c->have_lookup = true;
	c->lookup_at_ms = g->api->monotonic_ms();
out:
	if (rc < 0)
		govapp_devices_free(c);
	return rc;
}

/*
 * The devices with a usable key as JSON for institutions that encrypt
 * themselves (smis_outcome.devices_json), allocated with api->alloc.
 */
static char *govapp_devices_json(const struct govapp *g, const struct govapp_call *c)
{
	struct json_object *a = json_object_new_array();
	const char *text;
	char *copy = NULL;
	size_t n;

	if (!a)
		return NULL;
	for (size_t i = 0; i < c->n_devices; i++) {
		struct json_object *d;

		if (!c->devices[i].usable)
			continue;
		d = json_object_new_object();
		if (!d)
			goto out;
		json_object_object_add(d, "device_id", json_object_new_string(c->devices[i].id));
		json_object_object_add(d, "public_key", json_object_new_string(c->devices[i].public_key));
		json_object_object_add(d, "key_alg", json_object_new_string(GOVAPP_KEY_ALG));
		json_object_array_add(a, d);
	}
	text = govapp_json_text(a);
	n = strlen(text);
	copy = g->api->alloc(n + 1);
	if (copy)
		memcpy(copy, text, n + 1);
out:
	json_object_put(a);
	return copy;
}

/* Fill a LOOKUP outcome from the slot. */
static int govapp_lookup_outcome(const struct govapp *g, const struct govapp_call *c,
				 struct smis_outcome *out)
{
	out->kind = SMIS_OUTCOME_OK;
	SMIS_OUTCOME_SET(out->language, c->language);
	out->devices = (int)c->n_devices;
	if (!c->registered) {
		out->reach = SMIS_REACH_NOT_INSTALLED;
		SMIS_OUTCOME_SET(out->detail, "not registered with GovApp");
	} else if (!c->notifications) {
		out->reach = SMIS_REACH_NOTIFICATIONS_OFF;
		SMIS_OUTCOME_SET(out->detail, "GovApp notifications are off");
	} else if (c->n_devices == 0) {
		out->reach = SMIS_REACH_NOT_INSTALLED;
		SMIS_OUTCOME_SET(out->detail, "registered, but no device");
	} else {
		/* Reachable even when no key is usable: the SEND then says
		 * "govapp_no_device_key", which names the actual problem. */
		out->reach = SMIS_REACH_YES;
		snprintf(out->detail, sizeof(out->detail), "reachable on %zu device(s), %zu with a usable key",
			 c->n_devices, c->n_usable);
	}
	if (!c->registered)
		return 0;
	out->devices_json = govapp_devices_json(g, c);
	return out->devices_json ? 0 : -ENOMEM;
}

static int govapp_on_lookup(struct govapp *g, enum smis_op op, const struct smis_message *msg,
			    struct govapp_call *c, const struct smis_http_response *resp,
			    struct smis_http_request **req, struct smis_outcome *out)
{
	struct json_object *o = NULL;
	int rc = SMIS_STEP_DONE, r;

	if (!govapp_answered_2xx(resp)) {
		govapp_map_failure(g, resp, "lookup", out);
		goto out;
	}
	o = govapp_parse_json(&g->answer_tok, resp->body, resp->body_len);
	r = o && json_object_is_type(o, json_type_object) ? govapp_take_lookup(g, c, o) : -EINVAL;
	if (r == -ENOMEM) {
		rc = r;
		goto out;
	}
	if (r < 0) {
		govapp_bad_response(out, "lookup", "not the documented JSON");
		goto out;
	}
	if (op == SMIS_OP_SEND)
		rc = govapp_send_request(g, msg, c, req, out);
	else
		rc = govapp_lookup_outcome(g, c, out) < 0 ? -ENOMEM : SMIS_STEP_DONE;
out:
	json_object_put(o);
	return rc;
}

/* A send answer's message_id, when it has one, must be the sent message's. */
static bool govapp_answer_names_other(struct json_object *o, const char *message_id)
{
	struct json_object *v;

	if (!json_object_object_get_ex(o, "message_id", &v))
		return false;
	return !json_object_is_type(v, json_type_string) || strcmp(json_object_get_string(v), message_id) != 0;
}

/*
 * An accepted send whose answer names another message (a mixed-up answer,
 * a proxy's cache): its notification_id is not this message's, yet this
 * message may have been accepted. Sending again is safe (idempotent on
 * message_id) and its answer tells; once only, then upstream_bad_response.
 */
static int govapp_send_again(struct govapp *g, const struct smis_message *msg, struct govapp_call *c,
			     struct smis_http_request **req, struct smis_outcome *out)
{
	g->api->log(g->self, SMIS_LOG_WARN, "GovApp send answer names another message_id%s",
		    c->asked_again ? " again: ignored" : ": sending again");
	if (c->asked_again) {
		govapp_bad_response(out, "send", "not about the sent message");
		return SMIS_STEP_DONE;
	}
	c->asked_again = true;
	if (govapp_passthrough(msg))
		return govapp_send_passthrough(g, msg, c, govapp_passthrough(msg), req, out);
	return govapp_send_request(g, msg, c, req, out);
}

static int govapp_on_send(struct govapp *g, const struct smis_message *msg, struct govapp_call *c,
			  const struct smis_http_response *resp, struct smis_http_request **req,
			  struct smis_outcome *out)
{
	struct json_object *o = NULL;
	const char *id;
	char code[48];
	int rc = SMIS_STEP_DONE;

	if (govapp_answered_2xx(resp)) {
		o = govapp_parse_json(&g->answer_tok, resp->body, resp->body_len);
		id = o ? govapp_json_string(o, "notification_id") : NULL;
		if (!govapp_notification_id_ok(id)) {
			govapp_bad_response(out, "send", "no usable notification_id");
			goto out;
		}
		if (govapp_answer_names_other(o, msg->id)) {
			rc = govapp_send_again(g, msg, c, req, out);
			goto out;
		}
		out->kind = SMIS_OUTCOME_OK;
		SMIS_OUTCOME_SET(out->provider_ref, id);
		snprintf(out->detail, sizeof(out->detail), "accepted by GovApp for %zu device(s)",
			 c->n_usable);
		goto out;
	}
	if (resp->transport == SMIS_TRANSPORT_OK && resp->status == 422 && !c->fresh_in_op) {
		govapp_error_code(g, resp, code, sizeof(code));
		if (strcmp(code, "unknown_device") == 0) {
			/* The citizen's devices changed since the remembered
			 * lookup: learn them again and resend once. */
			c->fresh_in_op = true;
			rc = govapp_lookup_request(g, msg, c, req);
			goto out;
		}
	}
	govapp_map_failure(g, resp, "send", out);
out:
	json_object_put(o);
	return rc;
}

static enum smis_report_status govapp_report_status(const char *s)
{
	if (!s)
		return SMIS_REPORT_NONE;
	if (strcmp(s, "accepted") == 0)
		return SMIS_REPORT_PENDING;
	if (strcmp(s, "delivered") == 0)
		return SMIS_REPORT_DELIVERED;
	if (strcmp(s, "read") == 0)
		return SMIS_REPORT_READ;
	if (strcmp(s, "failed") == 0)
		return SMIS_REPORT_FAILED;
	return SMIS_REPORT_NONE;
}

/*
 * The time of an event in member `key`: *at_ms 0 (the core then uses
 * arrival time) when absent or null, -EINVAL when it is of another type or
 * not an RFC 3339 time: taking arrival time then would misdate it silently.
 */
static int govapp_event_time(struct json_object *o, const char *key, int64_t *at_ms)
{
	const char *at;

	*at_ms = 0;
	if (govapp_json_opt_string(o, key, &at) < 0)
		return -EINVAL;
	return at && govapp_parse_rfc3339(at, at_ms) < 0 ? -EINVAL : 0;
}

/* Fill one report from a device status object of a poll; false if unusable
 * (an entry with a malformed time too: it is skipped, as a callback with one
 * is refused, and the device's status waits for a later poll or callback). */
static bool govapp_device_report(const struct govapp *g, struct json_object *d, const char *ref,
				 struct smis_report *r)
{
	const char *id = govapp_json_string(d, "device_id");
	const char *st = govapp_json_string(d, "status");
	const char *at_key = NULL;
	enum smis_report_status s = govapp_report_status(st);

	/* No empty id: the core takes a report without a device for an SMS
	 * one, whose final word ends the message's polling for all devices.
	 * Nor one that breaks section 1's charset: skipped like it. */
	if (!govapp_device_id_ok(id) || s == SMIS_REPORT_NONE)
		return false;
	memset(r, 0, sizeof(*r));
	SMIS_OUTCOME_SET(r->provider_ref, ref);
	SMIS_OUTCOME_SET(r->device, id);
	r->status = s;
	if (s == SMIS_REPORT_READ)
		at_key = "read_at";
	else if (s == SMIS_REPORT_DELIVERED)
		at_key = "delivered_at";
	else if (s == SMIS_REPORT_FAILED)
		at_key = "failed_at";
	if (at_key && govapp_event_time(d, at_key, &r->at_ms) < 0) {
		g->api->log(g->self, SMIS_LOG_WARN, "GovApp status poll: device %s has no valid %s, not reported",
			    id, at_key);
		return false;
	}
	snprintf(r->detail, sizeof(r->detail), "govapp_%s", st);
	return true;
}

/* How far a device status has come, as the core ranks a message's status
 * (read > delivered > undelivered > sent). */
static int govapp_status_rank(enum smis_report_status s)
{
	switch (s) {
	case SMIS_REPORT_READ:
		return 4;
	case SMIS_REPORT_DELIVERED:
		return 3;
	case SMIS_REPORT_FAILED:
		return 2;
	default:
		return 1;
	}
}

/*
 * Add one device's report to a poll's outcome. A device the answer lists
 * twice keeps one report, its most advanced status (the first of equals):
 * two would store contradictory statuses for it and take a slot of
 * another device. False when the outcome is full.
 */
static bool govapp_add_report(struct smis_outcome *out, const struct smis_report *r)
{
	for (size_t i = 0; i < out->n_reports; i++) {
		if (strcmp(out->reports[i].device, r->device) != 0)
			continue;
		if (govapp_status_rank(r->status) > govapp_status_rank(out->reports[i].status))
			out->reports[i] = *r;
		return true;
	}
	if (out->n_reports == sizeof(out->reports) / sizeof(out->reports[0]))
		return false;
	out->reports[out->n_reports++] = *r;
	return true;
}

static int govapp_on_status(struct govapp *g, const struct smis_message *msg,
			    const struct smis_http_response *resp, struct smis_outcome *out)
{
	struct json_object *o = NULL, *devs;
	struct smis_report r;
	const char *id;
	size_t n, dropped = 0;

	if (!govapp_answered_2xx(resp)) {
		govapp_map_failure(g, resp, "status poll", out);
		goto out;
	}
	o = govapp_parse_json(&g->answer_tok, resp->body, resp->body_len);
	if (!o || !json_object_object_get_ex(o, "devices", &devs) ||
	    !json_object_is_type(devs, json_type_array)) {
		govapp_bad_response(out, "status poll", "no devices array");
		goto out;
	}
	/* The statuses of another notification (a mixed-up answer, a proxy's
	 * cache) must not move this message: nothing is reported. */
	id = govapp_json_string(o, "notification_id");
	if (!id || strcmp(id, msg->provider_ref) != 0) {
		g->api->log(g->self, SMIS_LOG_WARN,
			    "GovApp status poll answer %s the polled notification_id: ignored",
			    id ? "does not name" : "lacks");
		govapp_bad_response(out, "status poll", "not about the polled notification");
		goto out;
	}
	n = json_object_array_length(devs);
	for (size_t i = 0; i < n; i++) {
		if (govapp_device_report(g, json_object_array_get_idx(devs, i), msg->provider_ref, &r) &&
		    !govapp_add_report(out, &r))
			dropped++;
	}
	if (dropped)
		g->api->log(g->self, SMIS_LOG_DEBUG, "GovApp status: %zu device entr%s past the first %zu devices not reported",
			    dropped, dropped == 1 ? "y" : "ies", out->n_reports);
	out->kind = SMIS_OUTCOME_OK;
	snprintf(out->detail, sizeof(out->detail), "%zu device status(es)", out->n_reports);
out:
	json_object_put(o);
	return SMIS_STEP_DONE;
}

/* ------------------------------------------------------------------ */
/* Channel operations                                                  */
/* ------------------------------------------------------------------ */

static int govapp_start(void *state, enum smis_op op, const struct smis_message *msg, void **call,
			struct smis_http_request **req, struct smis_outcome *out)
{
	struct govapp *g = state;
	struct govapp_call *c = *call;
	int rc = -EINVAL;

	if (!g || !msg || !msg->id || !msg->recipient)
		goto out;
	if (!c) {
		c = calloc(1, sizeof(*c));
		if (!c) {
			rc = -ENOMEM;
			goto out;
		}
		*call = c;
	}
	c->pending = GOVAPP_PENDING_NONE;
	c->fresh_in_op = false;
	c->asked_again = false;
	switch (op) {
	case SMIS_OP_LOOKUP:
		rc = govapp_lookup_request(g, msg, c, req);
		break;
	case SMIS_OP_SEND:
		if (govapp_passthrough(msg)) {
			/* Nothing to seal, so no keys to learn: the backend
			 * answers not_registered and the like itself. */
			c->fresh_in_op = true;
			rc = govapp_send_passthrough(g, msg, c, govapp_passthrough(msg), req, out);
		} else if (govapp_lookup_fresh(g, c)) {
			rc = govapp_send_request(g, msg, c, req, out);
		} else {
			c->fresh_in_op = true;
			rc = govapp_lookup_request(g, msg, c, req);
		}
		break;
	case SMIS_OP_STATUS:
		rc = govapp_status_request(g, msg, c, req, out);
		break;
	default:
		rc = -EINVAL;
		break;
	}
out:
	return rc;
}

static int govapp_resume(void *state, enum smis_op op, const struct smis_message *msg, void **call,
			 const struct smis_http_response *resp, struct smis_http_request **req,
			 struct smis_outcome *out)
{
	struct govapp *g = state;
	struct govapp_call *c = *call;
	enum govapp_pending pending;
	int rc = -EINVAL;

	if (!g || !c || !resp)
		goto out;
	pending = c->pending;
	c->pending = GOVAPP_PENDING_NONE;
	switch (pending) {
	case GOVAPP_PENDING_LOOKUP:
		rc = govapp_on_lookup(g, op, msg, c, resp, req, out);
		break;
	case GOVAPP_PENDING_SEND:
		rc = govapp_on_send(g, msg, c, resp, req, out);
		break;
	case GOVAPP_PENDING_STATUS:
		rc = govapp_on_status(g, msg, resp, out);
		break;
	default:
		rc = -EINVAL;
		break;
	}
out:
	return rc;
}

/* ------------------------------------------------------------------ */
/* Status callbacks                                                    */
/* ------------------------------------------------------------------ */

static int govapp_hexval(char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

/*
 * Check "t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>[,v1=..]"
 * against the body. Several v1 entries let the backend sign with an old and
 * a new secret while a rotation is under way. Returns 0 or -EACCES, with a
 * reason for the log in *why.
 */
static int govapp_check_signature(const struct govapp *g, const char *header, const char *body,
				  size_t body_len, const char **why)
{
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned int mac_len = 0;
	const char *p = header, *t = NULL;
	size_t t_len = 0;
	int64_t ts = 0, now_s;
	bool any_v1 = false, match = false;
	int rc = -EACCES;

	*why = "missing signature header";
	if (!header)
		goto out;
	*why = "malformed signature header";
	/* First pass: the timestamp. */
	while (*p) {
		const char *end = strchr(p, ',');
		size_t len = end ? (size_t)(end - p) : strlen(p);

		while (len && *p == ' ') {
			p++;
			len--;
		}
		if (len > 2 && p[0] == 't' && p[1] == '=') {
			if (t || len - 2 > 18)
				goto out;
			t = p + 2;
			t_len = len - 2;
			for (size_t i = 0; i < t_len; i++) {
				if (t[i] < '0' || t[i] > '9')
					goto out;
				ts = ts * 10 + (t[i] - '0');
			}
		}
		p += len;
		if (*p == ',')
			p++;
	}
	if (!t)
		goto out;
	now_s = g->api->now_ms() / 1000;
	if (ts < now_s - g->max_skew_s || ts > now_s + g->max_skew_s) {
		*why = "signature timestamp outside the allowed clock skew";
		goto out;
	}
	{
		/* HMAC over "<t>.<body>" exactly as the header spells t. */
		unsigned char *msgbuf = malloc(t_len + 1 + body_len);

		if (!msgbuf) {
			*why = "out of memory";
			goto out;
		}
		memcpy(msgbuf, t, t_len);
		msgbuf[t_len] = '.';
		if (body_len)
			memcpy(msgbuf + t_len + 1, body, body_len);
		if (!HMAC(EVP_sha256(), g->callback_secret, (int)g->callback_secret_len, msgbuf,
			  t_len + 1 + body_len, mac, &mac_len))
			mac_len = 0;
		free(msgbuf);
	}
	if (mac_len != 32) {
		*why = "HMAC computation failed";
		goto out;
	}
	/* Second pass: every v1 value, compared in constant time. */
	for (p = header; *p;) {
		const char *end = strchr(p, ',');
		size_t len = end ? (size_t)(end - p) : strlen(p);

		while (len && *p == ' ') {
			p++;
			len--;
		}
		if (len > 3 && strncmp(p, "v1=", 3) == 0) {
			unsigned char want[32];
			bool hex_ok = len - 3 == 64;

			any_v1 = true;
			for (size_t i = 0; hex_ok && i < 32; i++) {
				int hi = govapp_hexval(p[3 + 2 * i]), lo = govapp_hexval(p[4 + 2 * i]);

				if (hi < 0 || lo < 0)
					hex_ok = false;
				else
					want[i] = (unsigned char)(hi << 4 | lo);
			}
			if (hex_ok && CRYPTO_memcmp(want, mac, 32) == 0)
				match = true;
		}
		p += len;
		if (*p == ',')
			p++;
	}
	if (!any_v1) {
		*why = "malformed signature header";
		goto out;
	}
	if (!match) {
		*why = "signature mismatch";
		goto out;
	}
	rc = 0;
out:
	OPENSSL_cleanse(mac, sizeof(mac));
	return rc;
}

static int govapp_inbound(void *state, const struct smis_inbound *in, struct smis_report *reports,
			  size_t max_reports, size_t *n_reports)
{
	const struct govapp *g = state;
	struct json_object *o = NULL;
	const char *why = "no callback_secret configured";
	const char *ref, *dev, *st;
	enum smis_report_status s;
	struct smis_report *r = reports;
	int rc = -EACCES;

	*n_reports = 0;
	if (!g || !in || !g->callback_secret)
		goto out_refuse;
	if (govapp_check_signature(g, in->header ? in->header(in, GOVAPP_SIG_HEADER) : NULL,
				   in->body ? in->body : "", in->body ? in->body_len : 0, &why) < 0)
		goto out_refuse;
	rc = -EINVAL;
	if (!in->method || strcmp(in->method, "POST") != 0 || max_reports == 0)
		goto out;
	o = govapp_parse_json(NULL, in->body, in->body_len);
	ref = o ? govapp_json_string(o, "notification_id") : NULL;
	dev = o ? govapp_json_string(o, "device_id") : NULL;
	st = o ? govapp_json_string(o, "status") : NULL;
	s = govapp_report_status(st);
	if (!govapp_notification_id_ok(ref) || !govapp_device_id_ok(dev) ||
	    s == SMIS_REPORT_NONE || s == SMIS_REPORT_PENDING)
		goto out;
	memset(r, 0, sizeof(*r));
	if (govapp_event_time(o, "at", &r->at_ms) < 0)
		goto out;
	SMIS_OUTCOME_SET(r->provider_ref, ref);
	SMIS_OUTCOME_SET(r->device, dev);
	r->status = s;
	snprintf(r->detail, sizeof(r->detail), "govapp_callback_%s", st);
	*n_reports = 1;
	rc = 0;
	goto out;
out_refuse:
	if (g)
		g->api->log(g->self, SMIS_LOG_WARN, "GovApp callback from %s refused: %s",
			    in && in->remote_addr ? in->remote_addr : "?", why);
out:
	json_object_put(o);
	return rc;
}

/* ------------------------------------------------------------------ */
/* Descriptor                                                          */
/* ------------------------------------------------------------------ */

static const struct smis_channel_ops govapp_ops = {
	.size = sizeof(struct smis_channel_ops),
	.create = govapp_create,
	.destroy = govapp_destroy,
	.start = govapp_start,
	.resume = govapp_resume,
	.call_free = govapp_call_free,
	.inbound = govapp_inbound,
	.prepare_send = govapp_prepare_send,
};

SMIS_PLUGIN_EXPORT const struct smis_plugin_descriptor smis_plugin_descriptor = {
	.abi_version = SMIS_PLUGIN_ABI_VERSION,
	.size = sizeof(struct smis_plugin_descriptor),
	.kind = SMIS_PLUGIN_CHANNEL,
	.name = "govapp",
	.version = GOVAPP_VERSION,
	.description = "GovApp push-to-app channel: end-to-end encrypted, per device (protocol v1)",
	.caps = SMIS_CAP_LOOKUP | SMIS_CAP_SEND | SMIS_CAP_APP | SMIS_CAP_STATUS,
	.channel = &govapp_ops,
};
