/*
 * http_server.c - REST API (docs/openapi.yaml) on libmicrohttpd.
 *
 * A POST is validated on the event loop that read it (dispatcher.c runs
 * one daemon per loop), then its connection is suspended while the same
 * loop runs the strategy; the store thread resumes it once the outcome is
 * committed. No thread waits on upstream.
 */
#include "config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>
#include <microhttpd.h>

#include "auth.h"
#include "core_api.h"
#include "dispatcher.h"
#include "http_server.h"
#include "json_writer.h"
#include "log.h"
#include "metrics.h"
#include "problem.h"
#include "ratelimit.h"
#include "request.h"
#include "store.h"

enum route {
	ROUTE_NONE,
	ROUTE_HEALTH,
	ROUTE_SEND,
	ROUTE_GET_MESSAGE,
	ROUTE_CALLBACK,
	ROUTE_METRICS,
	ROUTE_KEYS,
	ROUTE_NOT_FOUND,
	ROUTE_BAD_METHOD,
	ROUTE_UNKNOWN_METHOD,
};

struct conn {
	enum route route;
	char request_id[SMISD_ID_LEN];
	char *body;
	size_t len, cap;
	int too_large;
	size_t max_body;
	size_t received;           /* of the body, kept or not */
	struct smisd_job *job;
	int counted; /* holds an in-flight slot */
	int no_request_id;         /* no random bytes for request_id: refused */
	int must_close;            /* answered without its body: close after */
	unsigned status;           /* HTTP status of the answer queued, or 0 */
	int on_socket;             /* answer_on_socket wrote all of it */
	char institution[SMISD_INSTITUTION_NAME_MAX + 1]; /* the caller's name or "" */
	int64_t started_us;        /* monotonic: the request's first callback */
	/* For the access log: an unknown method too is logged whole
	 * (PROPFIND, VERSION-CONTROL), up to a length no real one reaches;
	 * a longer one is cut, and ends with "..." (keep_method). */
	char method[32];
};

static const char *const route_names[] = { "none", "healthz", "send", "get_message", "callback",
					   "metrics", "keys", "not_found", "bad_method",
					   "unknown_method" };
/* One daemon per event loop (dispatcher.c runs it), each accepting from
 * its own listening socket bound with SO_REUSEPORT (see listen_socket()). */
#define MAX_DAEMONS 64
static struct MHD_Daemon *mhds[MAX_DAEMONS];
static MHD_socket quiesced[MAX_DAEMONS];
/* libmicrohttpd's external mode is not thread-safe: a daemon is quiesced
 * by the loop that runs it (mhd_run), at the request of the main thread
 * (smisd_http_quiesce), which waits until all of them are. quiesce_done
 * is its loop's alone (then read after the loops are joined). */
static atomic_bool quiesce_wanted;
static bool quiesce_done[MAX_DAEMONS];
static pthread_mutex_t quiesce_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t quiesce_cond = PTHREAD_COND_INITIALIZER;
static int n_quiesced; /* daemons quiesced (quiesce_lock) */
static int n_mhds;
static atomic_int in_flight;
static atomic_int max_in_flight = 8192;
static atomic_int shutting_down;
#define SHUTTING_DOWN_DETAIL "SMIS is shutting down; retry on another instance"
/* OpenSSL's DRBG failed (logged): no id is made without it. */
#define NO_RANDOM_DETAIL "no random bytes for an id; nothing was sent"
/* No memory to claim an Idempotency-Key or message id (idem_claim() is
 * -ENOMEM): not a 409, which would say that it is in use. */
#define CLAIM_NOMEM_DETAIL "out of memory; nothing was sent"
#define HASH_FAILED_DETAIL "out of memory hashing the request; nothing was sent"

/* ---- idempotency keys being processed ---------------------------------- */

#define IDEM_BUCKETS 1024
struct idem_entry {
	char *key; /* "institution\nkey" */
	struct idem_entry *next;
};
static struct idem_entry *idem_table[IDEM_BUCKETS];
static pthread_mutex_t idem_lock = PTHREAD_MUTEX_INITIALIZER;

static unsigned idem_hash(const char *s)
{
	unsigned h = 2166136261u;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 16777619u;
	return h % IDEM_BUCKETS;
}

/* Returns 0 when claimed, -EBUSY when already in progress. */
static int idem_claim(const char *full)
{
	unsigned h = idem_hash(full);
	int rc = 0;
	pthread_mutex_lock(&idem_lock);
	for (struct idem_entry *e = idem_table[h]; e; e = e->next)
		if (strcmp(e->key, full) == 0)
			rc = -EBUSY;
	if (rc == 0) {
		struct idem_entry *e = malloc(sizeof(*e));
		if (e && (e->key = strdup(full))) {
			e->next = idem_table[h];
			idem_table[h] = e;
		} else {
			free(e);
			rc = -ENOMEM;
		}
	}
	pthread_mutex_unlock(&idem_lock);
	return rc;
}

static void idem_release(const char *full)
{
	unsigned h = idem_hash(full);
	pthread_mutex_lock(&idem_lock);
	for (struct idem_entry **p = &idem_table[h]; *p; p = &(*p)->next)
		if (strcmp((*p)->key, full) == 0) {
			struct idem_entry *e = *p;
			*p = e->next;
			free(e->key);
			free(e);
			break;
		}
	pthread_mutex_unlock(&idem_lock);
}

static void idem_full_key(const char *inst, const char *key, char *out, size_t len)
{
	snprintf(out, len, "%s\n%s", inst, key);
}

/* ---- responses ----------------------------------------------------------- */

/* Count the answer sent, once it is (on_completed): one queued may still
 * not go out, MHD without the memory to build its headers (blank lines
 * before the request line, docs/architecture.md 4a) or the client gone. */
static void count_answer(const struct conn *st)
{
	char labels[64];

	snprintf(labels, sizeof(labels), "route=\"%s\",status=\"%u\"", route_names[st->route], st->status);
	smisd_metric_add("smis_http_requests_total", labels, 1);
}

/* Queue `r` (taken over) as the answer, with the headers every answer has. */
static enum MHD_Result queue(struct MHD_Connection *c, struct conn *st, unsigned status,
			     const char *ctype, struct MHD_Response *r, int retry_after,
			     const char *extra_name, const char *extra_value)
{
	enum MHD_Result ret;

	MHD_add_response_header(r, "Content-Type", ctype);
	MHD_add_response_header(r, "X-Request-Id", st->request_id);
	MHD_add_response_header(r, "Cache-Control", "no-store");
	if (retry_after > 0) {
		char ra[16];
		snprintf(ra, sizeof(ra), "%d", retry_after);
		MHD_add_response_header(r, "Retry-After", ra);
	}
	if (extra_name)
		MHD_add_response_header(r, extra_name, extra_value);
	/* Draining: a kept-alive client is sent away after this answer, so that
	 * its next request finds the refused port and another instance. */
	if (atomic_load(&shutting_down) || st->must_close)
		MHD_add_response_header(r, MHD_HTTP_HEADER_CONNECTION, "close");
	st->status = status;
	ret = MHD_queue_response(c, status, r);
	MHD_destroy_response(r);
	return ret;
}

/* A problem always goes out with its code: without memory for its text,
 * with the code's constant body (smisd_problem_static_json). */
static enum MHD_Result respond_problem(struct MHD_Connection *c, struct conn *st,
				       const struct smisd_problem *p)
{
	const char *extra = p->status == 401 ? "WWW-Authenticate" : p->status == 405 ? "Allow" : NULL;
	const char *val = p->status == 401 ? "Bearer realm=\"smis\"" : p->field[0] ? p->field : "GET";
	char *body = smisd_problem_json(p, st->request_id);
	struct MHD_Response *r;

	if (p->status >= 500 && p->status != 501) /* 501: the client's method */
		smisd_log(SMIS_LOG_WARN, "http", NULL, "request %s: %d %s", st->request_id, p->status, p->code);
	if (body) {
		r = MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
		if (!r)
			free(body);
	} else {
		const char *fixed = smisd_problem_static_json(p->code);
		r = MHD_create_response_from_buffer(strlen(fixed), (void *)fixed, MHD_RESPMEM_PERSISTENT);
	}
	if (!r)
		return MHD_NO;
	return queue(c, st, (unsigned)p->status, "application/problem+json", r, p->retry_after_s, extra, val);
}

/* How many bytes from `p`, before `end`, are (`in`) or are not in `set`:
 * strspn() and strcspn() on a field value, which is not NUL-terminated
 * where its OWS is left out. */
static size_t span(const char *p, const char *end, const char *set, bool in)
{
	const char *from = p;

	while (p < end && (strchr(set, *p) != NULL) == in)
		p++;
	return (size_t)(p - from);
}

/* Whether the Content-Type parameters [p, end) (from a ';', or empty)
 * leave the body UTF-8, which is all SMIS reads (RFC 8259 8.1): a charset,
 * if one is named, must be utf-8, in any case, quoted or not. Other
 * parameters are ignored. */
static bool charset_utf8(const char *p, const char *end)
{
	while (p < end && *p == ';') {
		const char *name, *val;
		size_t nlen, vlen;

		p++;
		p += span(p, end, " \t", true);
		name = p;
		nlen = span(p, end, "=; \t", false);
		p += nlen;
		p += span(p, end, " \t", true);
		if (p < end && *p == '=') {
			p++;
			p += span(p, end, " \t", true);
			if (p < end && *p == '"') {
				val = ++p;
				while (p < end && *p != '"')
					p += p[0] == '\\' && p + 1 < end ? 2 : 1;
			} else {
				val = p;
				p += span(p, end, "; \t", false);
			}
			vlen = (size_t)(p - val);
			if (nlen == 7 && strncasecmp(name, "charset", 7) == 0 &&
			    !(vlen == 5 && strncasecmp(val, "utf-8", 5) == 0))
				return false;
		}
		p += span(p, end, ";", false); /* past a closing quote, or what cannot be read */
	}
	return true;
}

/* The length of the field value [v, v + n) without the spaces and tabs
 * after it. MHD (0.9.75) skips those before a value, not those after,
 * which are not part of it either (OWS, RFC 9112 5, RFC 9110 5.5):
 * "Bearer <key> " names the key, "abc\t" is the Idempotency-Key abc. Every
 * header smisd reads goes through here, by single_header() or
 * header_value(): a length, not a trimmed copy, so that nothing is
 * allocated for it. Not the framing ones: MHD framed the body by
 * Transfer-Encoding as it came (framing_refusal), and answers a
 * Content-Length with whitespace after it 400 itself. */
static size_t without_ows(const char *v, size_t n)
{
	while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t'))
		n--;
	return n;
}

/* The request's header `name`, the first if it came more than once, or
 * NULL; `*len` its length without OWS. */
static const char *header_value(struct MHD_Connection *c, const char *name, size_t *len)
{
	const char *v = NULL;

	if (MHD_lookup_connection_value_n(c, MHD_HEADER_KIND, name, strlen(name), &v, len) != MHD_YES || !v)
		return NULL;
	*len = without_ows(v, *len);
	return v;
}

struct header_count {
	const char *name;
	unsigned n;
	const char *first;
	size_t len;
};

static enum MHD_Result count_header(void *cls, enum MHD_ValueKind kind, const char *key, size_t key_size,
				    const char *value, size_t value_size)
{
	struct header_count *hc = cls;

	(void)kind;
	(void)key_size;
	if (key && strcasecmp(key, hc->name) == 0 && hc->n++ == 0) {
		hc->first = value;
		hc->len = value ? value_size : 0;
	}
	return MHD_YES;
}

/* The request's header `name` (NULL when absent), `*len` its length
 * without OWS, or `*repeated` set when it came more than once. None of the
 * headers SMIS reads is a list (RFC 9110 5.3): MHD would give the first of
 * them, while a proxy in front may have acted on another (a second
 * Authorization naming another institution, a second Idempotency-Key), so
 * two are refused, not chosen from. One pass over the headers. */
static const char *single_header(struct MHD_Connection *c, const char *name, bool *repeated, size_t *len)
{
	struct header_count hc = { name, 0, NULL, 0 };

	MHD_get_connection_values_n(c, MHD_HEADER_KIND, count_header, &hc);
	*repeated = hc.n > 1;
	*len = hc.first ? without_ows(hc.first, hc.len) : 0;
	return *repeated ? NULL : hc.first;
}

/* Why the body's length cannot be told for sure (RFC 9112 6.3), or NULL.
 * Two Content-Lengths (MHD reads the first), or one with Transfer-Encoding
 * (MHD reads the chunks): a proxy in front that read the other would see a
 * different body, and the bytes in between as a request of their own
 * (request smuggling). A transfer coding other than chunked: MHD would wait
 * for a body it cannot delimit until the connection times out. Refused,
 * and the connection closed, unread. */
static const char *framing_refusal(struct MHD_Connection *c)
{
	bool repeated;
	size_t len;
	const char *cl = single_header(c, "Content-Length", &repeated, &len);
	/* As MHD read it, whitespace and all: "chunked " is not chunked to
	 * MHD (it waits for a body it cannot delimit), so it is refused. */
	const char *te = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Transfer-Encoding");

	if (repeated)
		return "send one Content-Length";
	if (cl && te)
		return "send Content-Length or Transfer-Encoding, not both";
	if (te && strcasecmp(te, "chunked") != 0)
		return "no Transfer-Encoding but chunked is taken";
	return NULL;
}

/* RFC 3986's unreserved and sub-delims characters: with pct-encoded, a
 * reg-name's (which takes in IPv4 addresses); with ':', an IPvFuture's. */
static const char HOST_CHARS[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$&'()*+,;=";

/* Whether [p, end) is what RFC 3986 3.2.2 puts in an IP-literal's
 * brackets: an IPv6 address, or "v" 1*HEXDIG "." 1*( unreserved /
 * sub-delims / ":" ). */
static bool ip_literal(const char *p, const char *end)
{
	char text[INET6_ADDRSTRLEN];
	struct in6_addr addr;
	size_t n = (size_t)(end - p), hex;

	if (n > 0 && (*p == 'v' || *p == 'V')) {
		hex = strspn(p + 1, "0123456789abcdefABCDEF");
		if (hex == 0 || p + 1 + hex >= end || p[1 + hex] != '.' || p + 2 + hex == end)
			return false;
		for (p += 2 + hex; p < end; p++)
			if (*p != ':' && !strchr(HOST_CHARS, *p))
				return false;
		return true;
	}
	if (n >= sizeof(text))
		return false;
	memcpy(text, p, n);
	text[n] = '\0';
	return inet_pton(AF_INET6, text, &addr) == 1;
}

/* Whether [p, end) is a TCP port, 0-65535, leading zeros or not: digits
 * only, maybe none. */
static bool port_valid(const char *p, const char *end)
{
	unsigned long port = 0;

	for (; p < end; p++)
		if (!isdigit((unsigned char)*p) || (port = port * 10 + (unsigned long)(*p - '0')) > 65535)
			return false;
	return true;
}

/* Whether [h, end) is a Host field value (RFC 9110 7.2): uri-host [ ":"
 * port ], RFC 3986 3.2.2 and 3.2.3: an IP-literal in brackets, or a
 * reg-name (empty too, what a client sends for a target without a host); a
 * port of digits only, if any, and one TCP has (no authority has a port
 * past 65535). */
static bool host_valid(const char *h, const char *end)
{
	if (h < end && *h == '[') {
		const char *close = memchr(h, ']', (size_t)(end - h));

		if (!close || !ip_literal(h + 1, close))
			return false;
		h = close + 1;
	} else {
		while (h < end && *h != ':') {
			if (*h == '%' && end - h >= 3 && isxdigit((unsigned char)h[1]) && isxdigit((unsigned char)h[2]))
				h += 3;
			else if (*h != '%' && strchr(HOST_CHARS, *h))
				h++;
			else
				return false;
		}
	}
	return h == end || (*h == ':' && port_valid(h + 1, end));
}

/* Why the request's Host is refused, or NULL. RFC 9112 3.2: a server
 * must answer 400 to an HTTP/1.1 request without Host, to any request
 * with more than one, and to one whose value is not a host and port;
 * libmicrohttpd served all three. Which authority a request was meant for
 * cannot be told, and a proxy in front may have routed it by another Host
 * than the one MHD would give us, or read an invalid one otherwise.
 * HTTP/1.0 had no Host; an empty one is what a client sends for a target
 * without a host. */
static const char *host_refusal(struct MHD_Connection *c, const char *version)
{
	bool repeated;
	size_t len;
	const char *host = single_header(c, "Host", &repeated, &len);

	if (repeated)
		return "send one Host header";
	if (!host && strcmp(version, MHD_HTTP_VERSION_1_0) != 0)
		return "send a Host header (required in HTTP/1.1)";
	if (host && !host_valid(host, host + len))
		return "the Host header must be a host name, an IPv4 address or a bracketed IPv6 address, "
		       "then ':' and a port (0-65535), if any (RFC 9110 7.2)";
	return NULL;
}

#define NOT_JSON_DETAIL "send 'Content-Type: application/json'"

/* Why the request's Content-Type is refused, or NULL when it is JSON: the
 * media type application/json in any case, then nothing or parameters (RFC
 * 9110: type/subtype *( OWS ";" OWS parameter )), of which a charset must
 * be utf-8. Not application/json-seq, nor application/problem+json. */
static const char *content_type_refusal(struct MHD_Connection *c)
{
	bool repeated;
	size_t len;
	const char *t = single_header(c, "Content-Type", &repeated, &len), *end;

	if (repeated)
		return "send one Content-Type header";
	if (!t || len < 16 || strncasecmp(t, "application/json", 16) != 0)
		return NOT_JSON_DETAIL;
	end = t + len;
	t += 16;
	t += span(t, end, " \t", true);
	if (t < end && *t != ';')
		return NOT_JSON_DETAIL;
	if (!charset_utf8(t, end))
		return "the body must be UTF-8: send no charset, or charset=utf-8";
	return NULL;
}

static enum MHD_Result respond_code(struct MHD_Connection *c, struct conn *st, int status,
				    const char *code, const char *detail)
{
	struct smisd_problem p;
	smisd_problem_set(&p, status, code, NULL, "%s", detail);
	return respond_problem(c, st, &p);
}

/* Answer with `body` (malloc'd, taken over). NULL is a body that could not
 * be made (out of memory): a 500, never the status with an empty body. */
static enum MHD_Result respond(struct MHD_Connection *c, struct conn *st, unsigned status,
			       const char *ctype, char *body, int retry_after, const char *extra_name,
			       const char *extra_value)
{
	struct MHD_Response *r;

	if (!body)
		return respond_code(c, st, 500, "internal_error", "out of memory");
	r = MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
	if (!r) {
		free(body);
		return MHD_NO;
	}
	return queue(c, st, status, ctype, r, retry_after, extra_name, extra_value);
}

/* A refusal that a retry a second later may get past (Retry-After: 1). */
static enum MHD_Result respond_retry_soon(struct MHD_Connection *c, struct conn *st, int status,
					  const char *code, const char *detail)
{
	struct smisd_problem p;
	smisd_problem_set(&p, status, code, NULL, "%s", detail);
	p.retry_after_s = 1;
	return respond_problem(c, st, &p);
}

/* ---- routes -------------------------------------------------------------- */

/* The institution the request's Authorization names, or NULL (`*why` then
 * says why, when `why` is given). Its name is kept for the access line: a
 * copy, as the generation may be gone when that line is written. */
/* The institution the request's credentials name, or NULL with `*why`
 * set to the reason (NULL: no usable `Bearer` header at all). */
static const struct smisd_institution *authenticate(struct MHD_Connection *c, struct conn *st,
						    const struct smisd_generation *g, const char **why)
{
	bool repeated;
	size_t len;
	const char *auth = single_header(c, "Authorization", &repeated, &len);
	const struct smisd_institution *inst;

	*why = NULL;
	if (repeated) {
		*why = "duplicate_header";
		return NULL;
	}
	inst = smisd_auth_institution_why(g, auth, len, why);
	if (inst)
		smisd_concat(st->institution, sizeof(st->institution), inst->name, NULL);
	return inst;
}

/* The one 401 of every authenticated endpoint: the same code and words,
 * with authenticate()'s reason, which names no institution and no key. */
static enum MHD_Result refuse_unauthenticated(struct MHD_Connection *c, struct conn *st, const char *why)
{
	struct smisd_problem pb;

	smisd_problem_set(&pb, 401, "unauthorized", NULL,
			  "a valid 'Authorization: Bearer <API key or gateway token>' header is required (%s)",
			  why ? why : "missing");
	return respond_problem(c, st, &pb);
}

/* Whether `method` is one of RFC 9110's (9.3) or PATCH (RFC 5789). Method
 * names are case-sensitive (9.1): "get" is not one. Any other is answered
 * 501 on every path (15.6.2), not 405, whose Allow would take it for a
 * method SMIS knows but that path does not take. */
static bool method_known(const char *method)
{
	static const char *const known[] = { "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS",
					     "TRACE", "PATCH" };

	for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
		if (strcmp(method, known[i]) == 0)
			return true;
	return false;
}

static enum route route_of(const char *method, const char *url)
{
	int get = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
	int post = strcmp(method, "POST") == 0;

	if (!method_known(method))
		return ROUTE_UNKNOWN_METHOD;
	if (strcmp(url, "/healthz") == 0)
		return get ? ROUTE_HEALTH : ROUTE_BAD_METHOD;
	if (strcmp(url, "/metrics") == 0)
		return get ? ROUTE_METRICS : ROUTE_BAD_METHOD;
	if (strcmp(url, "/v1/recipients/keys") == 0)
		return post ? ROUTE_KEYS : ROUTE_BAD_METHOD;
	if (strcmp(url, "/v1/messages") == 0)
		return post ? ROUTE_SEND : ROUTE_BAD_METHOD;
	if (strncmp(url, "/v1/messages/", 13) == 0 && url[13] && !strchr(url + 13, '/'))
		return get ? ROUTE_GET_MESSAGE : ROUTE_BAD_METHOD;
	/* Not HEAD: a webhook's GET records a report (RingRing's statusMethod
	 * GET), which a HEAD, safe by definition, must not; and a plugin would
	 * take it for a webhook it cannot read (a warning, counted). */
	if (strncmp(url, "/v1/callbacks/", 14) == 0 && url[14])
		return (post || strcmp(method, "GET") == 0) ? ROUTE_CALLBACK : ROUTE_BAD_METHOD;
	return ROUTE_NOT_FOUND;
}

/* The Allow header of a 405 on a known path: what route_of() takes there. */
static const char *allowed_methods(const char *url)
{
	if (strcmp(url, "/v1/messages") == 0 || strcmp(url, "/v1/recipients/keys") == 0)
		return "POST";
	if (strncmp(url, "/v1/callbacks/", 14) == 0)
		return "GET, POST";
	return "GET"; /* /healthz, /metrics, /v1/messages/{id} */
}

static enum MHD_Result handle_health(struct MHD_Connection *c, struct conn *st)
{
	struct smisd_generation *g = smisd_generation_acquire();
	char *body = malloc(160);
	if (body)
		snprintf(body, 160, "{\"status\":\"ok\",\"generation\":%lu,\"in_flight\":%d}",
			 g ? g->id : 0UL, atomic_load(&in_flight));
	smisd_generation_unref(g);
	return respond(c, st, 200, "application/json", body, 0, NULL, NULL);
}

static enum MHD_Result handle_get_message(struct MHD_Connection *c, struct conn *st, const char *url)
{
	struct smisd_generation *g = smisd_generation_acquire();
	const struct smisd_institution *inst;
	const char *id = url + strlen("/v1/messages/"), *why;
	char *json = NULL;
	enum MHD_Result ret;

	inst = authenticate(c, st, g, &why);
	if (!inst) {
		ret = refuse_unauthenticated(c, st, why);
		goto out;
	}
	/* Another institution's message answers exactly like a missing one:
	 * ids must not be probed across institutions. */
	switch (strlen(id) >= SMISD_ID_LEN ? -ENOENT : smisd_store_get_message(inst->name, id, &json)) {
	case 0:
		ret = respond(c, st, 200, "application/json", json, 0, NULL, NULL);
		break;
	case -ENOENT:
		ret = respond_code(c, st, 404, "not_found", "no message with this id for this institution");
		break;
	case -EIO:
		ret = respond_retry_soon(c, st, 503, "store_unavailable", "the message cannot be read now; retry shortly");
		break;
	default:
		ret = respond_code(c, st, 500, "internal_error", "out of memory");
	}
out:
	smisd_generation_unref(g);
	return ret;
}

struct inbound_copy {
	struct inbound_copy *next;
	char value[];
};

struct inbound_ctx {
	struct MHD_Connection *c;
	struct inbound_copy *copies; /* inbound_header()'s, freed once the plugin returns */
};

/* A header's value handed to a plugin without OWS after it, to be read as
 * a C string: when it had some, a copy, kept until the plugin returns
 * (most values have none, and cost nothing). Out of memory, the value as
 * MHD has it. */
static const char *inbound_header(const struct smis_inbound *in, const char *name)
{
	struct inbound_ctx *ctx = in->core_private;
	size_t len;
	const char *v = header_value(ctx->c, name, &len);
	struct inbound_copy *copy;

	if (!v || v[len] == '\0' || !(copy = malloc(sizeof(*copy) + len + 1)))
		return v;
	memcpy(copy->value, v, len);
	copy->value[len] = '\0';
	copy->next = ctx->copies;
	ctx->copies = copy;
	return copy->value;
}

static const char *inbound_query(const struct smis_inbound *in, const char *name)
{
	const struct inbound_ctx *ctx = in->core_private;
	return MHD_lookup_connection_value(ctx->c, MHD_GET_ARGUMENT_KIND, name);
}

static enum MHD_Result handle_callback(struct MHD_Connection *c, struct conn *st, const char *url,
				       const char *method)
{
	struct smisd_generation *g = smisd_generation_acquire();
	const char *rest = url + strlen("/v1/callbacks/");
	const char *slash = strchr(rest, '/');
	char name[64];
	const struct smisd_channel *ch;
	struct smis_report reports[16];
	size_t n = 0;
	enum MHD_Result ret;
	char addr[INET6_ADDRSTRLEN] = "";
	const union MHD_ConnectionInfo *ci;
	struct inbound_ctx ctx = { c, NULL };
	struct smis_inbound in;
	bool by_id;
	int rc;

	snprintf(name, sizeof(name), "%.*s", slash ? (int)(slash - rest) : (int)strlen(rest), rest);
	ch = smisd_generation_channel(g, name);
	if (!ch || ch->ops->size <= offsetof(struct smis_channel_ops, inbound) || !ch->ops->inbound) {
		ret = respond_code(c, st, 404, "not_found", "no channel takes callbacks at this address");
		goto out;
	}
	if (st->too_large) {
		ret = respond_code(c, st, 413, "body_too_large", "the callback body is too large");
		goto out;
	}
	ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	if (ci && ci->client_addr) {
		if (ci->client_addr->sa_family == AF_INET)
			inet_ntop(AF_INET, &((const struct sockaddr_in *)ci->client_addr)->sin_addr, addr, sizeof(addr));
		else if (ci->client_addr->sa_family == AF_INET6)
			inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)ci->client_addr)->sin6_addr, addr, sizeof(addr));
	}
	in = (struct smis_inbound){
		.size = sizeof(in),
		.method = method,
		.path_rest = slash ? slash : "",
		.remote_addr = addr,
		.body = st->body ? st->body : "",
		.body_len = st->len,
		.header = inbound_header,
		.query = inbound_query,
		.core_private = &ctx,
	};
	rc = ch->ops->inbound(ch->state, &in, reports, 16, &n);
	while (ctx.copies) {
		struct inbound_copy *next = ctx.copies->next;

		free(ctx.copies);
		ctx.copies = next;
	}
	{
		char labels[128];
		snprintf(labels, sizeof(labels), "channel=\"%s\",result=\"%s\"", ch->name,
			 rc == 0 ? "accepted" : rc == -EACCES ? "rejected" : "malformed");
		smisd_metric_add("smis_callbacks_total", labels, 1);
	}
	if (rc == -EACCES) {
		smisd_log(SMIS_LOG_WARN, ch->self.component, NULL, "callback refused (not authentic), request %s",
			  st->request_id);
		ret = respond_code(c, st, 401, "callback_rejected", "the callback is not authentic");
		goto out;
	}
	if (rc != 0) {
		smisd_log(SMIS_LOG_WARN, ch->self.component, NULL, "callback malformed, request %s", st->request_id);
		ret = respond_code(c, st, 400, "callback_malformed", "the callback cannot be parsed");
		goto out;
	}
	by_id = (ch->caps & SMIS_CAP_REPORTS_BY_ID) != 0;
	{
		/* A report for a message SMIS never sent is refused. One that
		 * overtakes its send's answer (a fast DLR) is kept instead, which
		 * is only possible while messages are in flight. */
		size_t unknown = 0, unread = 0;
		int busy = atomic_load(&in_flight) > 0;
		for (size_t i = 0; i < n && i < 16 && !busy; i++) {
			int known = smisd_store_provider_ref_known(ch->name, by_id, reports[i].provider_ref);
			unknown += known == 0;
			unread += known < 0;
		}
		/* Refused for good only if known to be unknown: the sender
		 * retries a 503, and the store may answer then. */
		if (n > 0 && unread > 0 && unknown + unread == n) {
			ret = respond_retry_soon(c, st, 503, "store_unavailable",
						 "the message of this report cannot be looked up now; nothing was "
						 "kept, retry shortly");
			goto out;
		}
		if (n > 0 && unknown == n) {
			smisd_log(SMIS_LOG_WARN, ch->self.component, NULL,
				  "callback for an unknown message refused, request %s", st->request_id);
			ret = respond_code(c, st, 404, "unknown_message", "no message of SMIS has this provider reference");
			goto out;
		}
	}
	switch (smisd_store_submit_reports(ch->name, by_id, reports, n < 16 ? n : 16)) {
	case 0:
		break;
	case -EBUSY:
		ret = respond_retry_soon(c, st, 503, "overloaded",
					 "too many reports waiting to be stored, retry shortly");
		goto out;
	case -ESHUTDOWN:
		ret = respond_code(c, st, 503, "shutting_down", SHUTTING_DOWN_DETAIL);
		goto out;
	default:
		ret = respond_code(c, st, 500, "internal_error", "out of memory");
		goto out;
	}
	{
		char *body = malloc(64);
		if (body)
			snprintf(body, 64, "{\"accepted\":%zu}", n);
		ret = respond(c, st, 200, "application/json", body, 0, NULL, NULL);
	}
out:
	smisd_generation_unref(g);
	return ret;
}

/* The institution's request rate (token bucket): true and *pb filled when
 * this request is over it. Both authenticated POST routes take a token. */
static bool rate_limited(const struct smisd_institution *inst, struct smisd_problem *pb)
{
	int wait = smisd_ratelimit_take(inst->name, inst->requests_per_second, inst->burst, smisd_monotonic_ms());
	if (wait <= 0)
		return false;
	smisd_problem_set(pb, 429, "rate_limited", NULL, "more than %.0f requests per second; retry in %d s",
			  inst->requests_per_second, wait);
	pb->retry_after_s = wait;
	return true;
}

/* ---- device keys for institution-side encryption ------------------------ */

/* ---- suspended connections ------------------------------------------------ */

/* Jobs whose connection is suspended. libmicrohttpd aborts the process when
 * a daemon is stopped with a suspended connection: a stop that ends before
 * every job did (a second stop signal, or a job past the drain window)
 * resumes these first (smisd_http_stop). */
static pthread_mutex_t suspended_lock = PTHREAD_MUTEX_INITIALIZER;
static struct smisd_job *suspended_head;
static atomic_bool http_stopped;

/* Take job out of the suspended list (suspended_lock held). */
static void suspended_unlink(struct smisd_job *job)
{
	if (job->suspended_prev)
		job->suspended_prev->suspended_next = job->suspended_next;
	else
		suspended_head = job->suspended_next;
	if (job->suspended_next)
		job->suspended_next->suspended_prev = job->suspended_prev;
	job->suspended_prev = job->suspended_next = NULL;
}

static void suspend_for(struct MHD_Connection *c, struct smisd_job *job)
{
	pthread_mutex_lock(&suspended_lock);
	job->suspended_prev = NULL;
	job->suspended_next = suspended_head;
	if (suspended_head)
		suspended_head->suspended_prev = job;
	suspended_head = job;
	pthread_mutex_unlock(&suspended_lock);
	MHD_suspend_connection(c);
}

/* Resume a suspended connection and have its loop run MHD (external mode
 * needs that). The loop is read first: once resumed, the loop may answer
 * and free the job before this thread reads another field. After
 * smisd_http_leave_loops the loops may be gone, and after smisd_http_stop
 * the connection: nothing to resume (the store writer still finishes its
 * queue then). */
static void resume_on_loop(struct smisd_job *job, struct MHD_Connection *c)
{
	struct smisd_loop *lp = job->loop;

	pthread_mutex_lock(&suspended_lock);
	if (atomic_load(&http_stopped)) {
		pthread_mutex_unlock(&suspended_lock);
		return;
	}
	suspended_unlink(job);
	/* On its own loop (answers before the commit, the default), the loop
	 * cannot be freed under it: the lock, which both loops take for every
	 * message, is not held over the resume (a loop preempted there would
	 * stall the other). From the store writer (commit_before_answer) both
	 * steps are under it: the resume lets MHD wake the loop itself, the
	 * answer can go out and the drain end before the loop is told, and the
	 * main thread then stops and frees the loops.
	 * smisd_http_leave_loops() takes this lock first, so the writer is
	 * done with `lp` before that. */
	if (smisd_dispatcher_on_loop(lp)) {
		pthread_mutex_unlock(&suspended_lock);
		MHD_resume_connection(c);
		smisd_dispatcher_source_due(lp);
		return;
	}
	MHD_resume_connection(c);
	smisd_dispatcher_source_due(lp);
	pthread_mutex_unlock(&suspended_lock);
}

static void keys_done(struct smisd_job *job)
{
	resume_on_loop(job, job->done_arg);
}

/* o[key] = value, taking `value` over; false when either was not made
 * (out of memory). */
static bool add_member(json_object *o, const char *key, json_object *value)
{
	if (value && json_object_object_add(o, key, value) == 0)
		return true;
	json_object_put(value);
	return false;
}

/* The answer of POST /v1/recipients/keys, from the lookup attempt. Out of
 * memory at any step is a 500, not an answer with members missing. */
static enum MHD_Result keys_answer(struct MHD_Connection *c, struct conn *st)
{
	const struct smisd_job *job = st->job;
	const struct smisd_attempt *a = job->n_attempts ? &job->attempts[0] : NULL;
	json_object *o, *devs = NULL;
	const char *text = NULL;
	char *body = NULL;
	bool ok;

	if (!a || a->out.kind != SMIS_OUTCOME_OK) {
		struct smisd_problem pb;
		smisd_problem_set(&pb, 502, "upstream_unavailable", NULL, "the app backend could not be asked (%s)",
				  a && a->out.error[0] ? a->out.error : "no answer");
		return respond_problem(c, st, &pb);
	}
	if (a->out.devices_json)
		devs = json_tokener_parse(a->out.devices_json);
	if (devs && !json_object_is_type(devs, json_type_array)) {
		json_object_put(devs);
		devs = NULL;
	}
	o = json_object_new_object();
	/* The id the envelopes must be bound to, and sent back as message_id. */
	ok = o && add_member(o, "message_id", json_object_new_string(job->id)) &&
	     add_member(o, "channel", json_object_new_string(a->ch->name)) &&
	     add_member(o, "reachability", json_object_new_string(smisd_reach_name(a->out.reach))) &&
	     (!a->out.language[0] || add_member(o, "language", json_object_new_string(a->out.language))) &&
	     add_member(o, "encryption", json_object_new_string(SMISD_E2E_SUITE));
	if (ok) {
		ok = add_member(o, "devices", devs ? devs : json_object_new_array());
		devs = NULL; /* taken over, or released */
	}
	if (ok)
		text = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
	/* json-c leaves C1 controls and bytes that are no UTF-8 (a plugin's
	 * devices_json or language) raw: written as every other answer. */
	if (text)
		body = smisd_json_text_safe(text);
	json_object_put(devs);
	json_object_put(o);
	return respond(c, st, 200, "application/json", body, 0, NULL, NULL);
}

/* Take an in-flight slot for the request: held until it completes
 * (on_completed), or for a message answered before its commit until the
 * commit (job_put); a drain on shutdown waits for it. The add is the check:
 * a check and a later add let requests on several loops all pass the check
 * and overshoot the limit.
 *
 * The slot is counted before the drain flag is read, as smisd_http_quiesce
 * sets the flag before the drain reads the count: either this request sees
 * the flag, or the drain sees its slot and waits for it. Read the other way
 * round, a request could pass the flag, the drain find nothing in flight and
 * stop the loops, and the job be submitted to none: never run, and its
 * connection closed unanswered.
 *
 * Refused, it answers (`what` is in flight) and returns false with `ret`. */
static bool take_slot(struct MHD_Connection *c, struct conn *st, const char *what, enum MHD_Result *ret)
{
	char detail[64];
	bool full = atomic_fetch_add(&in_flight, 1) >= atomic_load(&max_in_flight);

	if (!full && !atomic_load(&shutting_down)) {
		st->counted = 1;
		return true;
	}
	atomic_fetch_sub(&in_flight, 1);
	if (atomic_load(&shutting_down)) {
		*ret = respond_code(c, st, 503, "shutting_down", SHUTTING_DOWN_DETAIL);
		return false;
	}
	snprintf(detail, sizeof(detail), "too many %s in flight, retry shortly", what);
	*ret = respond_retry_soon(c, st, 503, "overloaded", detail);
	return false;
}

static enum MHD_Result handle_keys(struct MHD_Connection *c, struct conn *st)
{
	struct smisd_generation *g = smisd_generation_acquire();
	const struct smisd_institution *inst;
	const struct smisd_channel *ch = NULL;
	struct smisd_problem pb;
	struct smisd_job *job;
	json_object *root = NULL, *v;
	char e164[SMISD_E164_MAX];
	const char *refusal, *why;
	enum MHD_Result ret;

	inst = authenticate(c, st, g, &why);
	if (!inst) {
		ret = refuse_unauthenticated(c, st, why);
		goto out;
	}
	if (rate_limited(inst, &pb)) {
		ret = respond_problem(c, st, &pb);
		goto out;
	}
	if (st->too_large) {
		ret = respond_code(c, st, 413, "body_too_large", "the body is too large");
		goto out;
	}
	if ((refusal = content_type_refusal(c))) {
		ret = respond_code(c, st, 415, "unsupported_media_type", refusal);
		goto out;
	}
	if (!take_slot(c, st, "requests", &ret))
		goto out;
	root = smisd_json_parse_strict(st->body ? st->body : "", st->len, &pb);
	if (!root) {
		ret = respond_problem(c, st, &pb);
		goto out;
	}
	json_object_object_foreach(root, k, val) {
		(void)val;
		if (strcmp(k, "recipient") != 0 && strcmp(k, "channel") != 0) {
			char ptr[64];
			snprintf(ptr, sizeof(ptr), "/%.40s", k);
			smisd_problem_set(&pb, 400, "unknown_field", ptr, "unknown field '%s'", ptr);
			ret = respond_problem(c, st, &pb);
			goto out;
		}
	}
	if (smisd_request_recipient(root, inst, e164, &pb) != 0) {
		ret = respond_problem(c, st, &pb);
		goto out;
	}
	if ((v = smisd_json_member(root, "channel"))) {
		ch = json_object_is_type(v, json_type_string) ? smisd_generation_channel(g, json_object_get_string(v)) : NULL;
	} else {
		for (size_t i = 0; i < g->n_channels && !ch; i++)
			if ((g->channels[i].caps & (SMIS_CAP_APP | SMIS_CAP_LOOKUP)) == (SMIS_CAP_APP | SMIS_CAP_LOOKUP))
				ch = &g->channels[i];
	}
	if (!ch || (ch->caps & (SMIS_CAP_APP | SMIS_CAP_LOOKUP)) != (SMIS_CAP_APP | SMIS_CAP_LOOKUP)) {
		smisd_problem_set(&pb, 422, "unknown_channel", "/channel", "no app channel that can look citizens up");
		ret = respond_problem(c, st, &pb);
		goto out;
	}
	job = calloc(1, sizeof(*job));
	if (!job || !(job->calls = calloc(g->n_channels + 1, sizeof(void *)))) {
		free(job);
		ret = respond_code(c, st, 500, "internal_error", "out of memory");
		goto out;
	}
	if (smisd_new_id("msg_", job->id, sizeof(job->id)) != 0) {
		smisd_job_free(job);
		ret = respond_code(c, st, 500, "internal_error", NO_RANDOM_DETAIL);
		goto out;
	}
	memcpy(job->request_id, st->request_id, sizeof(job->request_id));
	memcpy(job->req.recipient, e164, sizeof(e164));
	job->gen = smisd_generation_ref(g);
	job->inst = inst;
	job->poll_channel = ch;
	job->single_op = SMIS_OP_LOOKUP;
	job->deadline_mono = smisd_monotonic_ms() + g->settings.job_timeout_ms;
	job->done = keys_done;
	job->done_arg = c;
	smisd_job_bind_message(job);
	st->job = job;
	suspend_for(c, job);
	smisd_dispatcher_submit(job);
	ret = MHD_YES;
out:
	if (root)
		json_object_put(root);
	smisd_generation_unref(g);
	return ret;
}

/* Longest Idempotency-Key taken (docs/openapi.yaml). */
#define IDEM_KEY_MAX 128

static int valid_idem_key(const char *k, size_t n)
{
	if (n == 0 || n > IDEM_KEY_MAX)
		return 0;
	for (const char *end = k + n; k < end; k++)
		if (!((*k >= 'a' && *k <= 'z') || (*k >= 'A' && *k <= 'Z') || (*k >= '0' && *k <= '9') ||
		      strchr("-_.:", *k)))
			return 0;
	return 1;
}

/* What a message holds from its admission until the reads can find it:
 * its passthrough message_id and its Idempotency-Key. */
static void release_claims(const struct smisd_job *job)
{
	if (job->req.message_id[0]) {
		char key[64];
		snprintf(key, sizeof(key), "\001message_id\n%s", job->req.message_id);
		idem_release(key);
	}
	if (job->idem_key) {
		char full[256];
		idem_full_key(job->inst->name, job->idem_key, full, sizeof(full));
		idem_release(full);
	}
}

/* store.commit_before_answer: the writer has committed the job's rows (or
 * failed to); its loop answers now. */
static void job_stored(struct smisd_job *job)
{
	struct MHD_Connection *c = job->done_arg;
	release_claims(job);
	if (job->store_failed)
		smisd_log(SMIS_LOG_ERROR, "http", job->id, "answering without a stored record");
	resume_on_loop(job, c);
}

/* A job answered before its commit is held by its connection and by the
 * store writer; whichever lets go last frees it, and its in-flight slot
 * with it, so that limits.max_in_flight also bounds the writer's backlog
 * and a drain on shutdown waits for the commits. */
static void job_put(struct smisd_job *job)
{
	if (__atomic_sub_fetch(&job->holds, 1, __ATOMIC_ACQ_REL) != 0)
		return;
	atomic_fetch_sub(&in_flight, 1);
	smisd_job_free(job);
}

/* The writer, after the commit of a job answered first. */
static void job_committed(struct smisd_job *job)
{
	if (job->store_failed)
		smisd_log(SMIS_LOG_ERROR, "http", job->id, "answered, but the record could not be stored");
	job_put(job);
}

/* The strategy has ended (on the job's loop). By default the answer goes
 * out now, from this loop, and the writer commits the rows a few
 * milliseconds later with others: a message's way back does not wait for
 * another thread or the disk (docs/architecture.md, section 2). Until the
 * commit the store's reads find the job in memory (unstored.h). With
 * store.commit_before_answer the loop is woken to answer after the commit. */
void smisd_http_job_finished(struct smisd_job *job)
{
	struct MHD_Connection *c = job->done_arg;

	if (job->gen->settings.store_commit_before_answer) {
		smisd_store_submit(job);
		return;
	}
	smisd_job_conclude(job);
	job->answered_first = true;
	__atomic_store_n(&job->holds, 2, __ATOMIC_RELEASE);
	job->done = job_committed;
	smisd_store_submit(job); /* findable from here on */
	release_claims(job);
	resume_on_loop(job, c);
}

static enum MHD_Result handle_send(struct MHD_Connection *c, struct conn *st)
{
	struct smisd_generation *g = smisd_generation_acquire();
	const struct smisd_institution *inst;
	const struct smisd_strategy *strategy;
	struct smisd_problem pb;
	struct smisd_request req;
	struct smisd_job *job = NULL;
	const char *idem, *refusal;
	char full[256], rh[SMISD_REQUEST_HASH_SIZE], rcpt_hash[65];
	char msgid_key[64] = "", idem_key[IDEM_KEY_MAX + 1];
	int idem_claimed = 0, rcpt_taken = 0, quota_taken = 0, rc;
	enum MHD_Result ret;

	memset(&req, 0, sizeof(req));
	{
		const char *why;
		inst = authenticate(c, st, g, &why);
		if (!inst) {
			ret = refuse_unauthenticated(c, st, why);
			goto out;
		}
	}
	if (rate_limited(inst, &pb)) {
		ret = respond_problem(c, st, &pb);
		goto out;
	}
	if (st->too_large) {
		smisd_problem_set(&pb, 413, "body_too_large", NULL, "the body is larger than %zu bytes", st->max_body);
		ret = respond_problem(c, st, &pb);
		goto out;
	}
	if ((refusal = content_type_refusal(c))) {
		ret = respond_code(c, st, 415, "unsupported_media_type", refusal);
		goto out;
	}
	{
		bool repeated;
		size_t len;
		idem = single_header(c, "Idempotency-Key", &repeated, &len);
		if (repeated || (idem && !valid_idem_key(idem, len))) {
			ret = respond_code(c, st, 400, "invalid_idempotency_key",
					   repeated ? "send one 'Idempotency-Key' header"
						    : "'Idempotency-Key' must be 1-128 characters of A-Z a-z 0-9 - _ . :");
			goto out;
		}
		/* Read as a C string from here on: without its OWS. */
		if (idem) {
			memcpy(idem_key, idem, len);
			idem_key[len] = '\0';
			idem = idem_key;
		}
	}
	if (smisd_request_parse(st->body ? st->body : "", st->len, inst, &req, &pb) != 0) {
		ret = respond_problem(c, st, &pb);
		goto out;
	}
	strategy = req.strategy ? smisd_generation_strategy(g, req.strategy) : inst->default_strategy;
	if (!strategy) {
		smisd_problem_set(&pb, 422, "unknown_strategy", "/strategy", "no strategy named '%.48s'", req.strategy);
		ret = respond_problem(c, st, &pb);
		goto out;
	}
	if (!smisd_institution_may_use(inst, strategy)) {
		smisd_problem_set(&pb, 403, "strategy_forbidden", "/strategy",
				  "this institution may not use strategy '%.48s'", strategy->name);
		ret = respond_problem(c, st, &pb);
		goto out;
	}
	rh[0] = '\0';
	if (idem) {
		char stored_hash[SMISD_REQUEST_HASH_SIZE] = "";
		char *answer = NULL;
		/* The body's hash is what a replay is checked against; it is
		 * stored with the key, so only keyed requests need it. */
		if (smisd_store_request_hash(g->settings.phone_hash_key, g->settings.phone_hash_key_len,
					     st->body ? st->body : "", st->len, rh) != 0) {
			ret = respond_code(c, st, 500, "internal_error", HASH_FAILED_DETAIL);
			goto out;
		}
		idem_full_key(inst->name, idem, full, sizeof(full));
		rc = idem_claim(full);
		if (rc != 0) {
			ret = rc == -EBUSY ? respond_retry_soon(c, st, 409, "idempotency_in_progress",
								"a request with this Idempotency-Key is still being processed")
					   : respond_code(c, st, 500, "internal_error", CLAIM_NOMEM_DETAIL);
			goto out;
		}
		idem_claimed = 1;
		switch (smisd_store_find_idempotent(inst->name, idem, stored_hash, &answer)) {
		case -ENOENT:
			break;
		case 0:
			if (!smisd_store_same_request(stored_hash, rh, st->body ? st->body : "", st->len)) {
				free(answer);
				ret = respond_code(c, st, 422, "idempotency_key_reused",
						   "this Idempotency-Key was used with a different request body");
				goto out;
			}
			ret = respond(c, st, 200, "application/json", answer, 0, "Idempotent-Replayed", "true");
			goto out;
		default:
			/* Sending could send the message a second time. */
			ret = respond_retry_soon(c, st, 503, "idempotency_unavailable",
						 "whether this Idempotency-Key was used cannot be told now; nothing was "
						 "sent, retry shortly");
			goto out;
		}
	}
	if (smisd_store_phone_hash(g->settings.phone_hash_key, g->settings.phone_hash_key_len, req.recipient,
				   rcpt_hash) != 0) {
		ret = respond_code(c, st, 500, "internal_error", HASH_FAILED_DETAIL);
		goto out;
	}
	{
		int64_t now = smisd_now_ms();
		int wait = smisd_ratelimit_recipient(inst->name, rcpt_hash, inst->max_per_recipient,
						     inst->recipient_window_s, now);
		if (wait > 0) {
			smisd_problem_set(&pb, 429, "recipient_rate_limited", "/recipient",
					  "at most %d messages per %d s to one recipient; retry in %d s",
					  inst->max_per_recipient, inst->recipient_window_s, wait);
			pb.retry_after_s = wait;
			ret = respond_problem(c, st, &pb);
			goto out;
		}
		rcpt_taken = 1;
		wait = smisd_ratelimit_quota(inst->name, inst->daily_quota, now);
		if (wait > 0) {
			smisd_problem_set(&pb, 429, "quota_exceeded", NULL,
					  "the daily quota of %ld messages is used up", inst->daily_quota);
			pb.retry_after_s = wait;
			ret = respond_problem(c, st, &pb);
			goto out;
		}
		quota_taken = 1;
	}
	if (req.message_id[0]) {
		/* Claimed until stored, like idempotency keys: two concurrent
		 * sends of one institution-encrypted message cannot both go. */
		snprintf(msgid_key, sizeof(msgid_key), "\001message_id\n%s", req.message_id);
		rc = idem_claim(msgid_key);
		if (rc != 0) {
			msgid_key[0] = '\0';
			if (rc == -EBUSY)
				smisd_problem_set(&pb, 409, "message_id_used", "/message_id",
						  "this message id is being sent already");
			else
				smisd_problem_set(&pb, 500, "internal_error", NULL, CLAIM_NOMEM_DETAIL);
			ret = respond_problem(c, st, &pb);
			goto out;
		}
		switch (smisd_store_message_exists(req.message_id)) {
		case 0:
			break;
		case 1:
			smisd_problem_set(&pb, 409, "message_id_used", "/message_id",
					  "this message id was used already; ask POST /v1/recipients/keys for a new one");
			ret = respond_problem(c, st, &pb);
			goto out;
		default:
			/* Sending could send the message a second time. */
			ret = respond_retry_soon(c, st, 503, "store_unavailable",
						 "whether this message id was used cannot be told now; nothing was "
						 "sent, retry shortly");
			goto out;
		}
		/* Past the retention its message may have been deleted: whether
		 * it was used can no longer be told, so it counts as used. */
		if (g->settings.store_retention_s > 0 &&
		    smisd_id_time_ms(req.message_id, 4) < smisd_now_ms() - g->settings.store_retention_s * 1000) {
			smisd_problem_set(&pb, 409, "message_id_used", "/message_id",
					  "this message id is older than the store keeps messages; ask POST "
					  "/v1/recipients/keys for a new one");
			ret = respond_problem(c, st, &pb);
			goto out;
		}
	}
	if (!take_slot(c, st, "messages", &ret))
		goto out;

	job = calloc(1, sizeof(*job));
	if (!job || !(job->calls = calloc(g->n_channels + 1, sizeof(void *))) ||
	    (idem && !(job->idem_key = strdup(idem)))) {
		free(job ? job->idem_key : NULL);
		free(job ? job->calls : NULL);
		free(job);
		job = NULL;
		ret = respond_code(c, st, 500, "internal_error", "out of memory");
		goto out;
	}
	if (req.message_id[0]) {
		snprintf(job->id, sizeof(job->id), "%s", req.message_id);
	} else if (smisd_new_id("msg_", job->id, sizeof(job->id)) != 0) {
		smisd_job_free(job);
		job = NULL;
		ret = respond_code(c, st, 500, "internal_error", NO_RANDOM_DETAIL);
		goto out;
	}
	memcpy(job->request_id, st->request_id, sizeof(job->request_id));
	job->gen = smisd_generation_ref(g);
	job->inst = inst;
	job->strategy = strategy;
	job->req = req;
	memset(&req, 0, sizeof(req));
	memcpy(job->request_hash, rh, sizeof(rh));
	memcpy(job->recipient_hash, rcpt_hash, sizeof(rcpt_hash));
	job->created_ms = smisd_now_ms();
	job->deadline_mono = smisd_monotonic_ms() + g->settings.job_timeout_ms;
	job->done = job_stored;
	job->done_arg = c;
	smisd_job_bind_message(job);
	st->job = job;
	suspend_for(c, job);
	smisd_dispatcher_submit(job);
	ret = MHD_YES;
out:
	/* Refused (or failed) before a job took over: give back what the
	 * checks above took, so that a refused call costs no quota and holds
	 * no key. A job releases its keys itself once stored (job_stored). */
	if (!job) {
		if (rcpt_taken)
			smisd_ratelimit_unrecipient(inst->name, rcpt_hash);
		if (quota_taken)
			smisd_ratelimit_unquota(inst->name, smisd_now_ms());
		if (idem_claimed)
			idem_release(full);
		if (msgid_key[0])
			idem_release(msgid_key);
	}
	smisd_request_clear(&req);
	smisd_generation_unref(g);
	return ret;
}

/* The request's method, for its access line. One cut to fit ends with
 * "...", so that the line does not pass a part for the method the client
 * sent (any token is taken, and answered 501: its length is the client's). */
static void keep_method(struct conn *st, const char *method)
{
	if (smisd_concat(st->method, sizeof(st->method), method, NULL) >= sizeof(st->method))
		memcpy(st->method + sizeof(st->method) - 4, "...", 4);
}

/* What SMIS itself added to a message's answer: from the request's first
 * callback to now, less the time its upstream calls were in curl's hands.
 * It leaves out what happened before the loop read the request (the
 * kernel's queue, a loop busy with others): bench/run.sh measures that end
 * to end. */
static void observe_overhead(const struct conn *st)
{
	char labels[96];
	int64_t us = smisd_monotonic_us() - st->started_us - st->job->upstream_us;
	smisd_concat(labels, sizeof(labels), "strategy=\"", st->job->strategy ? st->job->strategy->name : "", "\"", NULL);
	smisd_metric_observe("smis_message_overhead_seconds", labels, us > 0 ? us / 1e6 : 0.0);
}

/* The path of a request target in absolute form ("http://host/path"),
 * which a server must take as it takes the path alone (RFC 9112 3.2.2);
 * other targets as they are. */
static const char *origin_form(const char *url)
{
	size_t scheme = strncasecmp(url, "http://", 7) == 0 ? 7 : strncasecmp(url, "https://", 8) == 0 ? 8 : 0;

	if (!scheme)
		return url;
	url += scheme;
	url += strcspn(url, "/");
	return *url ? url : "/";
}

/* What of a body past limits.max_body_bytes is read, to be discarded, at
 * most. A client that sends a little too much gets its 413 after its whole
 * body, as a client that writes it all before it reads expects; one that
 * sends more than a message ever needs cannot keep a loop reading. */
#define BODY_DISCARD_MAX ((size_t)1 << 20)

/* ---- request heads too large -------------------------------------------- */

/* libmicrohttpd 0.9.75 keeps a request's head in the connection's
 * CONN_MEMORY bytes: its lines, a record of FIELD_COST bytes for each
 * header field, query argument and cookie, and a copy of the Cookie
 * header; then builds the answer's headers in what is left. A head that
 * fits but leaves too little (under some 250 bytes, which a client chooses
 * to the byte) had its connection closed without an answer ("failed to
 * create response header"), once served: a POST's message sent. MHD
 * answers 431 itself only to a head that does not fit at all. Blank lines
 * before the request line take pool memory too, which MHD's head size
 * leaves out: enough of them can still leave an answer unbuilt, and its
 * connection closed unanswered (docs/architecture.md 4a). */
#define CONN_MEMORY ((size_t)12288)
#define FIELD_COST ((size_t)64)
/* Kept for the answer's headers (a 201's, with Location, take some 300
 * bytes): a head that takes more than HEAD_MAX is refused, unserved. */
#define HEAD_MAX (CONN_MEMORY - 1024)
/* Under this, not even the 431's headers could be built by MHD. */
#define PROBLEM_ROOM ((size_t)512)

/* What of CONN_MEMORY the request's head takes, as MHD counts it. */
static size_t head_memory(struct MHD_Connection *c)
{
	const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_REQUEST_HEADER_SIZE);
	int fields = MHD_get_connection_values(c, MHD_HEADER_KIND | MHD_COOKIE_KIND | MHD_GET_ARGUMENT_KIND,
					       NULL, NULL);
	const char *cookie = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_COOKIE);

	if (!ci)
		return CONN_MEMORY;
	return ci->header_size + (fields > 0 ? (size_t)fields : 0) * FIELD_COST + (cookie ? strlen(cookie) + 1 : 0);
}

/* Write the problem `p` on the connection's socket, with the headers
 * queue() and MHD would give it; MHD is then to close the connection.
 * Only for an answer MHD has no memory left to build; one small write,
 * which a connection whose previous answers MHD has written whole takes at
 * once. */
static void answer_on_socket(struct MHD_Connection *c, struct conn *st, const char *method,
			     const struct smisd_problem *p)
{
	const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
	char *json = smisd_problem_json(p, st->request_id);
	const char *body = json ? json : smisd_problem_static_json(p->code);
	char head[512], date[40] = "";
	struct iovec iov[2];
	/* A HEAD's answer has a GET's headers, without its body. */
	struct msghdr msg = { .msg_iov = iov, .msg_iovlen = strcmp(method, "HEAD") == 0 ? 1 : 2 };
	time_t now = time(NULL);
	struct tm tm;
	ssize_t sent = -1;
	int n;

	if (gmtime_r(&now, &tm))
		strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
	n = snprintf(head, sizeof(head),
		     "HTTP/1.1 %d %s\r\nDate: %s\r\nConnection: close\r\nContent-Type: application/problem+json\r\n"
		     "X-Request-Id: %s\r\nCache-Control: no-store\r\nContent-Length: %zu\r\n\r\n",
		     p->status, MHD_get_reason_phrase_for((unsigned)p->status), date, st->request_id, strlen(body));
	iov[0] = (struct iovec){ .iov_base = head, .iov_len = (size_t)n };
	iov[1] = (struct iovec){ .iov_base = (void *)body, .iov_len = strlen(body) };
	if (ci)
		sent = sendmsg(ci->connect_fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
	st->status = (unsigned)p->status;
	st->on_socket = sent == (ssize_t)(iov[0].iov_len + (msg.msg_iovlen > 1 ? iov[1].iov_len : 0));
	smisd_log_request(SMIS_LOG_INFO, "http", st->request_id, NULL,
			  "%d answered on the socket (no memory left in libmicrohttpd for its headers)%s",
			  p->status, st->on_socket ? "" : ", cut short");
	free(json);
}

/* A head past HEAD_MAX: refused before anything is done for it, and its
 * connection closed (what follows is not read). */
static enum MHD_Result refuse_large_head(struct MHD_Connection *c, struct conn *st, const char *method,
					 size_t used)
{
	struct smisd_problem p;

	smisd_problem_set(&p, 431, "headers_too_large", NULL,
			  "the request line and headers take %zu bytes, more than %zu (each header field, "
			  "query argument or cookie counting %zu more)", used, HEAD_MAX, FIELD_COST);
	st->must_close = 1;
	if (used <= CONN_MEMORY - PROBLEM_ROOM)
		return respond_problem(c, st, &p);
	answer_on_socket(c, st, method, &p);
	return MHD_NO; /* MHD closes it (and logs "Application reported internal error") */
}

static bool expects_continue(struct MHD_Connection *c)
{
	size_t len;
	const char *e = header_value(c, "Expect", &len);

	return e && len == 12 && strncasecmp(e, "100-continue", 12) == 0;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
				  const char *method, const char *version, const char *upload,
				  size_t *upload_size, void **con_cls)
{
	struct conn *st = *con_cls;
	(void)cls;

	url = origin_form(url);
	if (!st) {
		const char *cl;
		size_t head;
		st = calloc(1, sizeof(*st));
		if (!st)
			return MHD_NO;
		*con_cls = st;
		/* Without one the request is refused once read (below), under
		 * a stand-in id: its answer and log line still name it. */
		st->no_request_id = smisd_new_id("req_", st->request_id, sizeof(st->request_id)) != 0;
		if (st->no_request_id)
			smisd_fallback_id("req_", st->request_id, sizeof(st->request_id));
		st->route = route_of(method, url);
		st->started_us = smisd_monotonic_us();
		keep_method(st, method);
		{
			struct smisd_generation *g = smisd_generation_acquire();
			st->max_body = g ? g->settings.max_body_bytes : 65536;
			smisd_generation_unref(g);
		}
		if ((head = head_memory(c)) > HEAD_MAX)
			return refuse_large_head(c, st, method, head);
		if ((cl = framing_refusal(c)) || (cl = host_refusal(c, version))) {
			st->must_close = 1;
			return respond_code(c, st, 400, "malformed_request", cl);
		}
		cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
		if (cl && strtoull(cl, NULL, 10) > st->max_body)
			st->too_large = 1;
		/* A client that waits for "100 Continue" before its body is
		 * answered now (413 once authenticated), instead of being asked
		 * for a body only to discard it (RFC 9110 10.1.1). Without
		 * Expect the body is on its way: it is read and discarded, as
		 * closing on unread bytes would reset the connection, and the
		 * answer with it; but only up to BODY_DISCARD_MAX past the
		 * limit: a longer one is answered now too, and its connection
		 * closed (MHD takes no answer in the middle of a body). */
		if (!(st->too_large && (expects_continue(c) ||
					strtoull(cl, NULL, 10) > st->max_body + BODY_DISCARD_MAX)))
			return MHD_YES;
	}
	if (*upload_size) {
		/* A chunked body has no length to be answered by at once: one
		 * that goes on past that is cut short, unanswered. */
		st->received += *upload_size;
		if (st->received > st->max_body + BODY_DISCARD_MAX) {
			/* MHD follows with "Application reported internal error". */
			smisd_log_request(SMIS_LOG_INFO, "http", st->request_id, NULL,
					  "body %zu bytes past the limit, and more: connection closed unanswered",
					  st->received - st->max_body);
			return MHD_NO;
		}
		if (!st->too_large) {
			if (st->len + *upload_size > st->max_body) {
				st->too_large = 1;
			} else {
				if (st->len + *upload_size + 1 > st->cap) {
					/* First chunk: size for the announced body when
					 * there is one (most are a few hundred bytes). */
					const char *cl = st->cap ? NULL :
						MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
					size_t want = cl ? (size_t)strtoull(cl, NULL, 10) + 1 : 0;
					size_t cap = st->cap ? st->cap * 2 : (want > 0 && want <= st->max_body + 1 ? want : 1024);
					while (cap < st->len + *upload_size + 1)
						cap *= 2;
					char *grown = realloc(st->body, cap);
					if (!grown)
						return MHD_NO;
					st->body = grown;
					st->cap = cap;
				}
				memcpy(st->body + st->len, upload, *upload_size);
				st->len += *upload_size;
				st->body[st->len] = '\0';
			}
		}
		*upload_size = 0;
		return MHD_YES;
	}
	if (st->no_request_id)
		return respond_code(c, st, 500, "internal_error", NO_RANDOM_DETAIL);
	if (st->job && st->route == ROUTE_KEYS)
		return keys_answer(c, st);
	if (st->job) {
		/* Resumed: the job's answer is ready. With commit before answer
		 * the response takes the text over (the job only has to be
		 * freed now); otherwise the writer may still be storing it. */
		char *body = st->job->response_json;
		if (st->job->answered_first)
			body = body ? strdup(body) : NULL;
		else
			st->job->response_json = NULL;
		if (!body)
			return respond_code(c, st, 500, "internal_error", "no answer was produced");
		char loc[64];
		smisd_concat(loc, sizeof(loc), "/v1/messages/", st->job->id, NULL);
		observe_overhead(st);
		return respond(c, st, 201, "application/json", body, 0, "Location", loc);
	}
	switch (st->route) {
	case ROUTE_HEALTH:
		return handle_health(c, st);
	case ROUTE_SEND:
		return handle_send(c, st);
	case ROUTE_GET_MESSAGE:
		return handle_get_message(c, st, url);
	case ROUTE_CALLBACK:
		return handle_callback(c, st, url, method);
	case ROUTE_KEYS:
		return handle_keys(c, st);
	case ROUTE_METRICS:
		smisd_metric_set("smis_in_flight", "", atomic_load(&in_flight));
		return respond(c, st, 200, "text/plain; version=0.0.4", smisd_metrics_render(), 0, NULL, NULL);
	case ROUTE_BAD_METHOD: {
		struct smisd_problem p;
		smisd_problem_set(&p, 405, "method_not_allowed", NULL, "%s is not allowed on %s", method,
				  strncmp(url, "/v1/messages/", 13) == 0 ? "this message" : "this resource");
		snprintf(p.field, sizeof(p.field), "%s", allowed_methods(url));
		return respond_problem(c, st, &p);
	}
	case ROUTE_UNKNOWN_METHOD:
		return respond_code(c, st, 501, "method_not_implemented",
				    "SMIS does not implement this method (method names are case-sensitive)");
	case ROUTE_NONE:
	case ROUTE_NOT_FOUND:
	default:
		return respond_code(c, st, 404, "not_found", "no such resource");
	}
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
			 enum MHD_RequestTerminationCode toe)
{
	struct conn *st = *con_cls;
	bool sent;
	(void)cls;
	(void)c;
	if (!st)
		return;
	/* MHD completes a request only once its answer is written whole. */
	sent = st->status && (toe == MHD_REQUEST_TERMINATED_COMPLETED_OK || st->on_socket);
	if (sent)
		count_answer(st);
	/* A job answered before its commit gives its slot back once stored. */
	if (st->counted && !(st->job && st->job->answered_first))
		atomic_fetch_sub(&in_flight, 1);
	/* One access line per request: no query, no body, no number. */
	smisd_log_request(SMIS_LOG_INFO, "access", st->request_id, st->job ? st->job->id : NULL,
			  "%s %s %u %lldms%s%s%s", st->method, route_names[st->route], st->status,
			  (long long)((smisd_monotonic_us() - st->started_us) / 1000),
			  st->status && !sent ? " unsent" : "",
			  st->institution[0] ? " institution=" : "", st->institution);
	if (st->job && st->job->answered_first)
		job_put(st->job);
	else if (!(st->job && st->job->abandoned))
		smisd_job_free(st->job);
	/* An abandoned job stays in the suspended list, unfreed: the store
	 * writer may still hold it (store.commit_before_answer) until it is
	 * closed, after which smisd_http_free_abandoned frees it. */
	free(st->body);
	free(st);
	*con_cls = NULL;
}

/*
 * libmicrohttpd names the request's path in some messages ("Failed to send
 * the response headers for the request for `/v1/...'", when the caller hung
 * up), and a callback path may carry a channel's secret (RingRing's callback
 * token): what follows /v1/callbacks/<channel>/ is masked, in place.
 */
static void mask_callback_paths(char *s)
{
	static const char prefix[] = "/v1/callbacks/";
	/* Where a path ends in those messages: a quote, a blank; then '/' too. */
	static const char end_path[] = "'` \t\r\n", end_segment[] = "'` \t\r\n/";
	char *p = s;

	while ((p = strstr(p, prefix)) != NULL) {
		char *rest = p + strlen(prefix);
		size_t n;

		rest += strcspn(rest, end_segment);	/* the channel's name stays */
		p = rest;
		if (*rest != '/')
			continue;
		rest++;
		n = strcspn(rest, end_path);
		if (n >= 3) {
			memcpy(rest, "***", 3);
			memmove(rest + 3, rest + n, strlen(rest + n) + 1);
		} else {
			memset(rest, '*', n);
		}
		p = rest;
	}
}

/* libmicrohttpd's messages a loop writes in a second at most. A daemon
 * with no connection whose accept() fails for want of descriptors retries
 * at once, and says so each time: 40,000 lines in half a second. */
#define MHD_LOG_PER_SECOND 10

/* libmicrohttpd's messages are printf formats of its own. */
static void __attribute__((format(printf, 2, 0))) mhd_log(void *cls, const char *fmt, va_list ap)
{
	static __thread int64_t second;
	static __thread unsigned said;
	int64_t now = smisd_monotonic_ms() / 1000;
	char text[1024];

	(void)cls;
	if (now != second) {
		second = now;
		said = 0;
	}
	if (++said > MHD_LOG_PER_SECOND) {
		if (said == MHD_LOG_PER_SECOND + 1)
			smisd_log(SMIS_LOG_WARN, "http", NULL, "further libmicrohttpd messages this second left out");
		return;
	}
	vsnprintf(text, sizeof(text), fmt, ap);
	mask_callback_paths(text);
	smisd_log(SMIS_LOG_WARN, "http", NULL, "%s", text);
}

static unsigned mhd_connections(struct MHD_Daemon *d)
{
	const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_CURRENT_CONNECTIONS);

	return info ? info->num_connections : 0;
}

/* MHD hands the listening socket back and stops accepting on it. Left
 * listening, the kernel would still complete handshakes into its backlog,
 * and those clients would hang for the whole drain and be reset at exit;
 * a load balancer must see "refused" at once and go elsewhere. shutdown()
 * stops a listening socket on Linux (new connections are refused, queued
 * ones reset) and, unlike close(), keeps the descriptor valid: its number
 * must not be reused before MHD_stop_daemon(), after which we close it.
 * Connections already accepted are served to the end. On daemon i's loop. */
static void quiesce_on_loop(int i)
{
	quiesce_done[i] = true;
	quiesced[i] = MHD_quiesce_daemon(mhds[i]);
	if (quiesced[i] != MHD_INVALID_SOCKET && shutdown(quiesced[i], SHUT_RDWR) != 0)
		smisd_log(SMIS_LOG_WARN, "http", NULL, "cannot stop listening: %s", strerror(errno));
	pthread_mutex_lock(&quiesce_lock);
	n_quiesced++;
	pthread_cond_signal(&quiesce_cond);
	pthread_mutex_unlock(&quiesce_lock);
}

/* How long a loop leaves its daemon alone when no descriptor is left. */
#define ACCEPT_REST_MS 100

/* Whether a socket cannot be made now: no descriptor left in the process
 * (EMFILE) or in the system (ENFILE), no kernel memory for one (ENOBUFS,
 * ENOMEM). A daemon without connections then fails to accept() from its
 * listening socket, which MHD leaves in its epoll set (it has no
 * connection whose end would put it back): readable still, it would be
 * run again at once, for ever, at 100% CPU. A socket of the listening
 * one's family is what accept() would have made; a dup() would need no
 * system file table entry nor socket memory, and so tell EMFILE alone.
 * Made (some 10 us) only when a client still waits in the backlog, that
 * is when accept() may have failed: not after every idle run. */
static bool no_descriptor_left(struct MHD_Daemon *d)
{
	const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_LISTEN_FD);
	struct pollfd waiting;
	int domain, fd;
	socklen_t len = sizeof(domain);

	if (!info)
		return false;
	waiting = (struct pollfd){ .fd = info->listen_fd, .events = POLLIN };
	if (poll(&waiting, 1, 0) != 1 ||
	    getsockopt(info->listen_fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) != 0)
		return false;
	fd = socket(domain, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM;
	close(fd);
	return false;
}

/* A loop's source: `arg` is its daemon's place in mhds. */
static void mhd_run(void *arg)
{
	struct MHD_Daemon **d = arg;
	int i = (int)(d - mhds);
	unsigned before;

	if (atomic_load(&quiesce_wanted) && !quiesce_done[i])
		quiesce_on_loop(i);
	before = mhd_connections(*d);
	MHD_run(*d);
	/* A run that begins at the connection limit, or after accept() failed
	 * for want of descriptors or memory (EMFILE, ENFILE, ENOBUFS, ENOMEM),
	 * takes the listening socket out of MHD's epoll set, and only a run
	 * that begins with room puts it back.
	 * The room is made by connections closing in a run (timed out,
	 * answered), after which no event may come for another (none is left
	 * to send one): the clients in the backlog, and every new one, would
	 * wait for ever. A run that closed some is followed by one more. */
	if (mhd_connections(*d) < before)
		MHD_run(*d);
	/* Then the daemon is run again once every ACCEPT_REST_MS: the
	 * clients in the backlog wait, and are accepted once there are
	 * descriptors (or memory) again. */
	if (mhd_connections(*d) == 0 && no_descriptor_left(*d))
		smisd_dispatcher_source_rest(ACCEPT_REST_MS);
}

static int64_t mhd_timeout(void *arg)
{
	struct MHD_Daemon **d = arg;
	MHD_UNSIGNED_LONG_LONG ms;
	if (MHD_get_timeout(*d, &ms) != MHD_YES)
		return -1;
	return ms > INT32_MAX ? INT32_MAX : (int64_t)ms;
}

/* One listening socket per loop, made here rather than by MHD, all bound to
 * the same address with SO_REUSEPORT: the kernel spreads new connections
 * evenly over them, so each loop gets its share of the clients. (With one
 * socket shared through dup()s, the loop that happened to be awake took
 * most of a burst of connections, and kept them: 3 to 1 was common, and
 * the busier loop made the latency tail.) SO_REUSEPORT alone would also let
 * a second smisd started by mistake on the same port share the traffic
 * instead of failing; so the port is first probed with a plain bind, which
 * fails when anything listens there already. `*port` 0 picks one. */
static int listen_one(const struct addrinfo *ai, int *port, bool reuseport)
{
	int one = 1;
	int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);

	if (fd < 0)
		return -1;
	memcpy(&ss, ai->ai_addr, ai->ai_addrlen);
	if (ss.ss_family == AF_INET6)
		((struct sockaddr_in6 *)&ss)->sin6_port = htons((uint16_t)*port);
	else
		((struct sockaddr_in *)&ss)->sin_port = htons((uint16_t)*port);
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (reuseport)
		setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
	if (ai->ai_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&ss, ai->ai_addrlen) != 0 || (reuseport && listen(fd, 4096) != 0) ||
	    getsockname(fd, (struct sockaddr *)&ss, &len) != 0) {
		int e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	*port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
					       : ((struct sockaddr_in *)&ss)->sin_port);
	return fd;
}

/* `n` listening sockets into `fds`; 0, or -1 (errno set, none left open). */
static int listen_sockets(const struct addrinfo *ai, int n, int *fds, int *port)
{
	if (*port != 0) {
		int probe = listen_one(ai, port, false);
		if (probe < 0)
			return -1;
		close(probe);
	}
	for (int i = 0; i < n; i++) {
		fds[i] = listen_one(ai, port, true);
		if (fds[i] < 0) {
			int e = errno;
			while (i-- > 0)
				close(fds[i]);
			errno = e;
			return -1;
		}
	}
	return 0;
}

int smisd_http_start(const struct smisd_generation *g)
{
	struct addrinfo hints, *ai = NULL;
	char port[8];
	unsigned flags = MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
	const union MHD_DaemonInfo *info;
	int n = smisd_dispatcher_loops();
	int bound = g->settings.listen_port;
	int lfds[MAX_DAEMONS], lrc;
	unsigned limit;

	atomic_store(&max_in_flight, g->settings.max_in_flight);
	if (n < 1 || n > MAX_DAEMONS)
		return -1;
	limit = (unsigned)g->settings.max_connections / (unsigned)n;
	if (limit < 1)
		limit = 1;
	memset(&hints, 0, sizeof(hints));
	hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE;
	hints.ai_socktype = SOCK_STREAM;
	snprintf(port, sizeof(port), "%d", g->settings.listen_port);
	if (getaddrinfo(g->settings.listen_address, port, &hints, &ai) != 0 || !ai) {
		smisd_log(SMIS_LOG_ERROR, "http", NULL, "listen address '%s' is not a numeric IP address",
			  g->settings.listen_address);
		return -1;
	}
	if (ai->ai_family == AF_INET6)
		flags |= MHD_USE_IPv6;
	lrc = listen_sockets(ai, n, lfds, &bound);
	freeaddrinfo(ai);
	if (lrc != 0) {
		smisd_log(SMIS_LOG_ERROR, "http", NULL, "cannot listen on %s:%d: %s", g->settings.listen_address,
			  g->settings.listen_port, strerror(errno));
		return -1;
	}
	for (int i = 0; i < n; i++) {
		struct smisd_loop_source src;
		int fd = lfds[i];

		lfds[i] = -1; /* the daemon's from here on */
		quiesced[i] = MHD_INVALID_SOCKET;
		quiesce_done[i] = false;
		mhds[i] = MHD_start_daemon(flags, (uint16_t)bound, NULL, NULL, on_request, NULL,
					   MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
					   MHD_OPTION_LISTEN_SOCKET, (MHD_socket)fd,
					   MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL,
					   MHD_OPTION_CONNECTION_LIMIT, limit,
					   MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)g->settings.connection_timeout_s,
					   /* MHD clears a connection's memory pool for every
					    * request: 12 KiB (headers up to a gateway token of
					    * 8 KiB, HEAD_MAX; bodies are copied out as they
					    * arrive) instead of the default 32 KiB is most of
					    * that work saved. */
					   MHD_OPTION_CONNECTION_MEMORY_LIMIT, CONN_MEMORY,
					   MHD_OPTION_END);
		if (!mhds[i])
			goto fail; /* whether MHD closed `fd` is not said: leave it (we exit) */
		n_mhds = i + 1;
		info = MHD_get_daemon_info(mhds[i], MHD_DAEMON_INFO_EPOLL_FD);
		src = (struct smisd_loop_source){ .fd = info ? info->epoll_fd : -1, .run = mhd_run,
						  .timeout_ms = mhd_timeout, .arg = &mhds[i] };
		if (src.fd < 0 || smisd_dispatcher_attach(i, &src) != 0) {
			smisd_log(SMIS_LOG_ERROR, "http", NULL, "cannot attach the HTTP daemon to its loop");
			goto fail;
		}
	}
	return bound;
fail:
	smisd_log(SMIS_LOG_ERROR, "http", NULL, "cannot start the HTTP daemons on %s:%d", g->settings.listen_address,
		  bound);
	for (int i = 0; i < n; i++)
		if (lfds[i] >= 0)
			close(lfds[i]);
	/* Daemons not attached yet, or loops not started: nothing runs them. */
	smisd_http_leave_loops();
	smisd_dispatcher_stop();
	smisd_http_stop();
	return -1;
}

/* Once, with the loops running. MHD_quiesce_daemon() from this thread
 * raced the loop inside MHD_run() on the same daemon (both change its
 * listening state and epoll set, unlocked): each loop quiesces its own at
 * its next turn, woken for it. Waited for, so that new connections are
 * refused from the return on, as the drain's callers expect. */
void smisd_http_quiesce(void)
{
	atomic_store(&shutting_down, 1);
	atomic_store(&quiesce_wanted, true);
	for (int i = 0; i < n_mhds; i++)
		smisd_dispatcher_source_due_at(i);
	pthread_mutex_lock(&quiesce_lock);
	while (n_quiesced < n_mhds)
		pthread_cond_wait(&quiesce_cond, &quiesce_lock);
	pthread_mutex_unlock(&quiesce_lock);
}

void smisd_http_leave_loops(void)
{
	pthread_mutex_lock(&suspended_lock);
	atomic_store(&http_stopped, true);
	pthread_mutex_unlock(&suspended_lock);
}

/* After smisd_dispatcher_stop(): no loop runs the daemons any more. */
void smisd_http_stop(void)
{
	int abandoned = 0;

	smisd_http_leave_loops();
	/* Jobs the drain did not wait for: their connections are resumed so
	 * that MHD_stop_daemon closes them (it aborts on a suspended one). */
	pthread_mutex_lock(&suspended_lock);
	for (struct smisd_job *job = suspended_head, *next; job; job = next) {
		next = job->suspended_next;
		MHD_resume_connection(job->done_arg);
		abandoned++;
		/* Finished as the loops stopped, after they could resume it: its
		 * connection and the store writer hold it (job_put), and the
		 * last of them frees it. The others are this list's to free
		 * (smisd_http_free_abandoned). */
		if (job->answered_first)
			suspended_unlink(job);
		else
			job->abandoned = true;
	}
	pthread_mutex_unlock(&suspended_lock);
	if (abandoned)
		smisd_log(SMIS_LOG_WARN, "http", NULL, "closing %d connection(s) whose message was not answered",
			  abandoned);
	for (int i = 0; i < n_mhds; i++) {
		if (mhds[i])
			MHD_stop_daemon(mhds[i]);
		mhds[i] = NULL;
		if (quiesced[i] != MHD_INVALID_SOCKET)
			close(quiesced[i]);
		quiesced[i] = MHD_INVALID_SOCKET;
	}
	n_mhds = 0;
	n_quiesced = 0;
	atomic_store(&quiesce_wanted, false);
}

/* After smisd_store_close(): nothing holds the jobs smisd_http_stop
 * abandoned any more (their loop is freed, their connection closed, the
 * writer's queue done), but they still hold what their strategy left: the
 * curl easy handle of an upstream call, the channels' call slots, a
 * generation. Freed here, while the plugins that free their slots are
 * loaded and before curl_global_cleanup(). */
void smisd_http_free_abandoned(void)
{
	pthread_mutex_lock(&suspended_lock);
	while (suspended_head) {
		struct smisd_job *job = suspended_head;

		suspended_unlink(job);
		smisd_job_free(job);
	}
	pthread_mutex_unlock(&suspended_lock);
}

int smisd_http_in_flight(void)
{
	return atomic_load(&in_flight);
}
