/*
 * webhook.c - example SMIS channel plugin, built out of tree against the
 * installed <smis/smis-plugin.h> only (see README.md and
 * docs/plugin-guide.md).
 *
 * It delivers a message by POSTing it as JSON to one URL:
 *
 *   {"message_id":"msg_...","to":"+32470123456","title":"...","body":"...","lang":"nl"}
 *
 * with an optional "Authorization: Bearer <token>". The answer decides:
 *   2xx                  OK; provider_ref = the answer's string "id", if any
 *   5xx, 408, 429        TEMPFAIL (may work later: a strategy may fall back)
 *   other 4xx            PERMFAIL (this request will never be accepted)
 *   timeout, no connect  TEMPFAIL
 *
 * Like every SMIS channel it is a pair of pure functions: start() builds the
 * HTTP request, resume() turns the answer into an outcome. The core performs
 * the HTTP (timeouts and TLS from the instance's `http` block), so nothing
 * here blocks.
 *
 * Settings (one block per webhook, e.g. two URLs = two instances):
 *   url    = "https://hooks.example.org/smis";   required, http:// or https://
 *   bearer = "secret-token";                     optional
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <smis/smis-plugin.h>

#define WEBHOOK_VERSION "1.0.0"
/* JSON nesting we are willing to walk in an answer. */
#define WEBHOOK_JSON_DEPTH 32

struct webhook {
	const struct smis_core_api *api;
	struct smis_instance *self;
	char *url;
	char *authorization; /* "Bearer <token>" or NULL */
};

/* ------------------------------------------------------------------ */
/* Lifecycle                                                            */
/* ------------------------------------------------------------------ */

static void webhook_destroy(void *state)
{
	struct webhook *w = state;

	if (!w)
		return;
	if (w->authorization)
		explicit_bzero(w->authorization, strlen(w->authorization));
	w->api->free(w->authorization);
	w->api->free(w->url);
	w->api->free(w);
}

static bool is_http_url(const char *u)
{
	return (strncmp(u, "http://", 7) == 0 && u[7]) || (strncmp(u, "https://", 8) == 0 && u[8]);
}

static int webhook_create(const struct smis_core_api *api, struct smis_instance *self,
			  struct smis_config *cfg, void **state)
{
	struct webhook *w = api->alloc(sizeof(*w));
	char *bearer = NULL;
	size_t n;
	int rc = -EINVAL, r;

	if (!w)
		return -ENOMEM;
	w->api = api;
	w->self = self;
	/* Read every key before giving up, so that one run of
	 * `smisd --check-config` reports every mistake of the block; a key
	 * never read would be reported by the core as unknown. */
	r = api->config_string(cfg, "url", &w->url);
	if (r == -ENOENT)
		api->config_error(cfg, NULL, "'url' is required");
	else if (r != 0 || !is_http_url(w->url))
		api->config_error(cfg, "url", "'url' must be an http:// or https:// URL");
	r = api->config_string(cfg, "bearer", &bearer);
	if (r == -EINVAL || (r == 0 && (!bearer[0] || strpbrk(bearer, " \t\r\n")))) {
		/* Never echo a secret in an error. */
		api->config_error(cfg, "bearer", "'bearer' must be a non-empty token without spaces");
		goto out;
	}
	if (!w->url || !is_http_url(w->url))
		goto out;
	if (bearer) {
		n = strlen("Bearer ") + strlen(bearer) + 1;
		w->authorization = api->alloc(n);
		if (!w->authorization) {
			rc = -ENOMEM;
			goto out;
		}
		snprintf(w->authorization, n, "Bearer %s", bearer);
	}
	*state = w;
	w = NULL;
	rc = 0;
out:
	if (bearer)
		explicit_bzero(bearer, strlen(bearer));
	api->free(bearer);
	webhook_destroy(w);
	return rc;
}

/* ------------------------------------------------------------------ */
/* start: the request                                                   */
/* ------------------------------------------------------------------ */

/* Bytes `s` takes once JSON-escaped (without the quotes). */
static size_t json_len(const char *s)
{
	size_t n = 0;

	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		n += c == '"' || c == '\\' || c == '\n' || c == '\r' || c == '\t' ? 2 : c < 0x20 ? 6 : 1;
	}
	return n;
}

/* Append `"s"` JSON-escaped at p; returns the new end. Room was counted by
 * json_len(). UTF-8 passes through: the core validated it. */
static char *json_put(char *p, const char *s)
{
	static const char hex[] = "0123456789abcdef";

	*p++ = '"';
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\') {
			*p++ = '\\';
			*p++ = (char)c;
		} else if (c == '\n' || c == '\r' || c == '\t') {
			*p++ = '\\';
			*p++ = c == '\n' ? 'n' : c == '\r' ? 'r' : 't';
		} else if (c < 0x20) {
			memcpy(p, "\\u00", 4);
			p[4] = hex[c >> 4];
			p[5] = hex[c & 15];
			p += 6;
		} else {
			*p++ = (char)c;
		}
	}
	*p++ = '"';
	return p;
}

/* The citizen's language when a lookup on some channel learnt it, else the
 * one the institution asked for, else the institution's first text. */
static const struct smis_content *pick_content(const struct smis_message *msg)
{
	const char *want[2] = {
		SMIS_HAS_MEMBER(struct smis_message, msg, citizen_language) ? msg->citizen_language : NULL,
		msg->language,
	};

	for (size_t w = 0; w < 2; w++)
		for (size_t i = 0; want[w] && i < msg->n_content; i++)
			if (strcmp(msg->content[i].lang, want[w]) == 0)
				return &msg->content[i];
	return &msg->content[0];
}

/* The JSON body, allocated with api->alloc. */
static char *build_body(const struct webhook *w, const struct smis_message *msg, size_t *len)
{
	static const char *const keys[] = { "message_id", "to", "title", "body", "lang" };
	const struct smis_content *c = pick_content(msg);
	/* Plain text for a generic receiver: body_text is never HTML. */
	const char *values[] = { msg->id, msg->recipient, c->title, c->body_text, c->lang };
	size_t n = 2 + 1; /* braces and the NUL */
	char *body, *p;

	for (size_t i = 0; i < 5; i++)
		n += strlen(keys[i]) + 2 + 1 + json_len(values[i]) + 2 + 1; /* "k":"v", */
	body = w->api->alloc(n);
	if (!body)
		return NULL;
	p = body;
	*p++ = '{';
	for (size_t i = 0; i < 5; i++) {
		if (i)
			*p++ = ',';
		p = json_put(p, keys[i]);
		*p++ = ':';
		p = json_put(p, values[i]);
	}
	*p++ = '}';
	*p = '\0';
	*len = (size_t)(p - body);
	return body;
}

static int webhook_start(void *state, enum smis_op op, const struct smis_message *msg,
			 void **call, struct smis_http_request **req, struct smis_outcome *out)
{
	struct webhook *w = state;
	const struct smis_core_api *api = w->api;
	struct smis_http_request *r = NULL;
	char *body = NULL;
	size_t len = 0;
	int rc = -ENOMEM;

	if (op != SMIS_OP_SEND) {
		/* Our caps say SEND only: the core should not ask, but a
		 * plugin answers every op with a defined outcome. */
		out->kind = SMIS_OUTCOME_PERMFAIL;
		SMIS_OUTCOME_SET(out->error, "operation_unsupported");
		SMIS_OUTCOME_SET(out->detail, "the webhook channel only sends");
		return SMIS_STEP_DONE;
	}
	if (SMIS_HAS_MEMBER(struct smis_message, msg, encrypted_json) && msg->encrypted_json) {
		/* The institution encrypted the content for app devices: we
		 * have nothing readable to forward, and a title alone would
		 * look delivered while the body is lost. */
		out->kind = SMIS_OUTCOME_PERMFAIL;
		SMIS_OUTCOME_SET(out->error, "encrypted_content_unsupported");
		SMIS_OUTCOME_SET(out->detail, "end-to-end encrypted content is for app channels");
		return SMIS_STEP_DONE;
	}
	body = build_body(w, msg, &len);
	r = body ? api->http_request_new("POST", w->url) : NULL;
	if (!r)
		goto out;
	if (api->http_request_header(r, "Content-Type", "application/json") != 0 ||
	    (w->authorization && api->http_request_header(r, "Authorization", w->authorization) != 0) ||
	    api->http_request_body(r, body, len) != 0)
		goto out;
	*req = r; /* the core takes ownership */
	r = NULL;
	rc = SMIS_STEP_REQUEST;
out:
	api->http_request_free(r);
	api->free(body);
	return rc;
}

/* ------------------------------------------------------------------ */
/* resume: the outcome                                                  */
/* ------------------------------------------------------------------ */

/* The smallest JSON walker that is still right for our need: skip one
 * value, so that only a top-level "id" is taken, never one nested in
 * another member or inside a string. Returns the end of the value or NULL. */
static const char *skip_ws(const char *p, const char *end)
{
	while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
		p++;
	return p;
}

static const char *skip_string(const char *p, const char *end)
{
	for (p++; p < end; p++) {
		if (*p == '\\')
			p++;
		else if (*p == '"')
			return p + 1;
	}
	return NULL;
}

static const char *skip_value(const char *p, const char *end, int depth)
{
	char close;

	p = skip_ws(p, end);
	if (p >= end || depth > WEBHOOK_JSON_DEPTH)
		return NULL;
	if (*p == '"')
		return skip_string(p, end);
	if (*p != '{' && *p != '[') {
		const char *start = p;
		while (p < end && (strchr("+-.eE", *p) || (*p >= '0' && *p <= '9') ||
				   (*p >= 'a' && *p <= 'z')))
			p++;
		return p > start ? p : NULL;
	}
	close = *p == '{' ? '}' : ']';
	p = skip_ws(p + 1, end);
	if (p < end && *p == close)
		return p + 1;
	while (p && p < end) {
		if (close == '}') {
			p = *p == '"' ? skip_string(p, end) : NULL;
			p = p ? skip_ws(p, end) : NULL;
			if (!p || p >= end || *p != ':')
				return NULL;
			p++;
		}
		p = skip_value(p, end, depth + 1);
		p = p ? skip_ws(p, end) : NULL;
		if (!p || p >= end)
			return NULL;
		if (*p == close)
			return p + 1;
		if (*p != ',')
			return NULL;
		p = skip_ws(p + 1, end);
	}
	return NULL;
}

/* Copy the top-level string member "id" of a JSON object into out. An id
 * with escapes, non-printable bytes or too long for out is not taken: a
 * provider reference must be exact or absent. */
static bool find_id(const char *body, size_t len, char *out, size_t outlen)
{
	const char *end = body + len, *p = skip_ws(body, end);

	if (p >= end || *p != '{')
		return false;
	p = skip_ws(p + 1, end);
	while (p < end && *p == '"') {
		const char *key = p + 1, *key_end = skip_string(p, end), *v;
		if (!key_end)
			return false;
		p = skip_ws(key_end, end);
		if (p >= end || *p != ':')
			return false;
		v = skip_ws(p + 1, end);
		if (key_end - key == 3 && memcmp(key, "id", 2) == 0 && v < end && *v == '"') {
			size_t n = 0;
			for (const char *q = v + 1; q < end && *q != '"'; q++, n++)
				if (*q == '\\' || (unsigned char)*q < 0x20 || (unsigned char)*q > 0x7e ||
				    n + 1 >= outlen)
					return false;
			if (n == 0 || v + 1 + n >= end)
				return false;
			memcpy(out, v + 1, n);
			out[n] = '\0';
			return true;
		}
		p = skip_value(v, end, 1);
		p = p ? skip_ws(p, end) : NULL;
		if (!p || p >= end || *p != ',')
			return false;
		p = skip_ws(p + 1, end);
	}
	return false;
}

static void fail(struct smis_outcome *out, enum smis_outcome_kind kind, const char *error,
		 const char *detail)
{
	out->kind = kind;
	SMIS_OUTCOME_SET(out->error, error);
	SMIS_OUTCOME_SET(out->detail, detail);
}

static int webhook_resume(void *state, enum smis_op op, const struct smis_message *msg,
			  void **call, const struct smis_http_response *resp,
			  struct smis_http_request **req, struct smis_outcome *out)
{
	char detail[64];

	switch (resp->transport) {
	case SMIS_TRANSPORT_OK:
		break;
	case SMIS_TRANSPORT_TIMEOUT:
		fail(out, SMIS_OUTCOME_TEMPFAIL, "upstream_timeout", "the webhook did not answer in time");
		return SMIS_STEP_DONE;
	case SMIS_TRANSPORT_CONNECT:
		fail(out, SMIS_OUTCOME_TEMPFAIL, "upstream_unreachable", "cannot connect to the webhook");
		return SMIS_STEP_DONE;
	default:
		fail(out, SMIS_OUTCOME_TEMPFAIL, "upstream_error", "transport error");
		return SMIS_STEP_DONE;
	}
	snprintf(detail, sizeof(detail), "the webhook answered HTTP %ld", resp->status);
	if (resp->status >= 200 && resp->status <= 299) {
		out->kind = SMIS_OUTCOME_OK;
		/* The id is optional: without one there is only no reference. */
		find_id(resp->body, resp->body_len, out->provider_ref, sizeof(out->provider_ref));
	} else if (resp->status >= 500 && resp->status <= 599) {
		fail(out, SMIS_OUTCOME_TEMPFAIL, "upstream_5xx", detail);
	} else if (resp->status == 408 || resp->status == 429) {
		/* "Too slow" and "too many": the same request may pass later. */
		fail(out, SMIS_OUTCOME_TEMPFAIL, "upstream_throttled", detail);
	} else if (resp->status >= 400 && resp->status <= 499) {
		fail(out, SMIS_OUTCOME_PERMFAIL, "upstream_4xx", detail);
	} else {
		/* 1xx/3xx: redirects are not followed; the url is wrong. */
		fail(out, SMIS_OUTCOME_PERMFAIL, "upstream_unexpected_status", detail);
	}
	return SMIS_STEP_DONE;
}

/* ------------------------------------------------------------------ */
/* The one exported symbol                                              */
/* ------------------------------------------------------------------ */

static const struct smis_channel_ops webhook_ops = {
	.size = sizeof(struct smis_channel_ops),
	.create = webhook_create,
	.destroy = webhook_destroy,
	.start = webhook_start,
	.resume = webhook_resume,
	/* No call_free: nothing is kept per message. No inbound: this
	 * channel takes no status webhooks (the core answers 404). */
};

SMIS_PLUGIN_EXPORT const struct smis_plugin_descriptor smis_plugin_descriptor = {
	.abi_version = SMIS_PLUGIN_ABI_VERSION,
	.size = sizeof(struct smis_plugin_descriptor),
	.kind = SMIS_PLUGIN_CHANNEL,
	.name = "webhook",
	.version = WEBHOOK_VERSION,
	.description = "Example: POST each message as JSON to a URL",
	.caps = SMIS_CAP_SEND,
	.channel = &webhook_ops,
};
