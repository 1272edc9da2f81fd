/*
 * apiclient.c - the HTTP API client shared by smisctl and smis-encrypt
 * (apiclient.h): options, API key, one libcurl request per call, problems
 * on stderr. One connection per request is plenty for a command line.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>

#include "apiclient.h"
#include "auth.h"     /* SMISD_API_KEY_MAX */
#include "jwt_auth.h" /* SMISD_JWT_MAX_LEN, smisd_jwt_looks_like */
#include "json_writer.h"
#include "request.h" /* smisd's limits: SMISD_MAX_TITLE... */
#include "utf8.h"
#include "utf8_decode.h"

/* ------------------------------------------------------------------ */
/* Small helpers                                                        */
/* ------------------------------------------------------------------ */

const char *smis_api_json_str(json_object *o, const char *key)
{
	json_object *v;

	if (o && json_object_is_type(o, json_type_object) && json_object_object_get_ex(o, key, &v) &&
	    json_object_is_type(v, json_type_string))
		return json_object_get_string(v);
	return NULL;
}

const char *smis_api_json_text(json_object *o)
{
	return json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
}

char *smis_api_json_dup(json_object *o)
{
	const char *text = smis_api_json_text(o);

	return text ? strdup(text) : NULL;
}

bool smis_api_json_add(json_object *o, const char *key, json_object *v)
{
	/* json-c leaves v to the caller when it cannot add it. */
	if (v && json_object_object_add(o, key, v) == 0)
		return true;
	json_object_put(v);
	return false;
}

bool smis_api_json_add_string(json_object *o, const char *key, const char *s)
{
	return smis_api_json_add(o, key, json_object_new_string(s));
}

void smis_api_print_safe(FILE *f, const char *s, bool utf8)
{
	size_t len = s ? strlen(s) + 1 : 0;
	char *shown = utf8 && s ? malloc(len) : NULL;

	/* Bytes >= 0x80 are not all characters: C2 9B is a CSI (U+009B) to a
	 * terminal, and a stray 9B one too to some. smisd_text_shown keeps
	 * the characters and nothing else. */
	if (shown) {
		smisd_text_shown(s, shown, len);
		fputs(shown, f);
		free(shown);
		return;
	}
	/* No isprint(): its answer would depend on the locale. Without the
	 * room to check UTF-8, ASCII alone. */
	for (; s && *s; s++) {
		unsigned char ch = (unsigned char)*s;

		fputc(ch >= 0x20 && ch < 0x7f ? *s : '?', f);
	}
}

bool smis_api_parse_long(const char *s, long min, long max, long *out)
{
	char *end = NULL;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v < min || v > max)
		return false;
	*out = v;
	return true;
}

/* ------------------------------------------------------------------ */
/* Options and the API key                                              */
/* ------------------------------------------------------------------ */

bool smis_api_option(struct smis_api_options *o, int c, const char *arg, const char *who,
		     void (*usage)(FILE *))
{
	bool ok = true;

	switch (c) {
	case 'u': o->url = arg; break;
	case 'k': o->key = arg; break;
	case 'K': o->key_file = arg; break;
	case 't': o->to = arg; break;
	case 's': o->strategy = arg; break;
	case 'r': o->reference = arg; break;
	case 'i': o->idem = arg; break;
	case SMIS_API_OPT_HTML: o->html = true; break;
	case SMIS_API_OPT_TIMEOUT:
		if (!smis_api_parse_long(arg, 1, 3600, &o->timeout_s)) {
			fprintf(stderr, "%s: --timeout must be 1-3600 seconds\n", who);
			ok = false;
		}
		break;
	default:
		usage(stderr);
		ok = false;
		break;
	}
	return ok;
}

/* How smisd reads a text of a request (daemon/request.c): the control
 * characters it takes, its length in bytes, whether it may be empty. What
 * it would refuse is a usage error here, found before any request: a round
 * trip (two for smis-encrypt) and a 400 for nothing otherwise. */
struct text_rule {
	enum smisd_utf8_controls controls;
	size_t max;
	bool required;
};

static const struct text_rule RECIPIENT = { SMISD_UTF8_ONE_LINE, SMISD_MAX_RECIPIENT, true };
static const struct text_rule STRATEGY = { SMISD_UTF8_ONE_LINE, SMISD_MAX_STRATEGY, false };
static const struct text_rule REFERENCE = { SMISD_UTF8_ONE_LINE, SMISD_MAX_REFERENCE, false };
static const struct text_rule TITLE = { SMISD_UTF8_ONE_LINE, SMISD_MAX_TITLE, true };
static const struct text_rule BODY = { SMISD_UTF8_MULTILINE, SMISD_MAX_BODY, true };
static const struct text_rule SMS_TEXT = { SMISD_UTF8_MULTILINE, SMISD_MAX_SMS_TEXT, false };

/* Whether s is UTF-8 throughout. */
static bool utf8_text(const char *s)
{
	size_t len = strlen(s), n;

	for (; len > 0; s += n, len -= n)
		if ((n = smis_utf8_char_len(s, len)) == 0)
			return false;
	return true;
}

/* s (NULL: absent, fine) against rule r (NULL: UTF-8 is all it must be);
 * false after saying why, naming it `what`, in smisd's order: UTF-8 and
 * controls, length, emptiness. */
static bool check_text(const char *who, const char *what, const char *s, const struct text_rule *r)
{
	size_t len = s ? strlen(s) : 0;

	if (!s)
		return true;
	if (!utf8_text(s))
		fprintf(stderr, "%s: %s is not UTF-8\n", who, what);
	else if (!r)
		return true;
	else if (!smisd_utf8_valid(s, len, r->controls))
		fprintf(stderr, "%s: %s holds a control character (%s)\n", who, what,
			r->controls == SMISD_UTF8_MULTILINE ? "only tab, newline and carriage return are allowed"
							    : "none is allowed");
	else if (len > r->max)
		fprintf(stderr, "%s: %s is %zu bytes, at most %zu are allowed\n", who, what, len, r->max);
	else if (r->required && len == 0)
		fprintf(stderr, "%s: %s must not be empty\n", who, what);
	else
		return true;
	return false;
}

/* smisd's syntax (docs/openapi.yaml, 400 invalid_idempotency_key). It
 * also keeps line breaks, which would smuggle in another header line, out
 * of the header. */
static bool check_idem(const struct smis_api_options *o, const char *who)
{
	static const char allowed[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.:";
	size_t n;

	if (!o->idem)
		return true;
	n = strlen(o->idem);
	if (n == 0 || n > SMIS_API_IDEM_MAX || strspn(o->idem, allowed) != n) {
		fprintf(stderr, "%s: --idempotency-key must be 1-%d characters of A-Z, a-z, 0-9, '-', '_', '.' and ':'\n",
			who, SMIS_API_IDEM_MAX);
		return false;
	}
	return true;
}

/* smisd's syntax (docs/openapi.yaml, 400 invalid_value). */
static bool check_reference(const struct smis_api_options *o, const char *who)
{
	static const char allowed[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:/-";

	if (!check_text(who, "--reference", o->reference, &REFERENCE))
		return false;
	if (o->reference && strspn(o->reference, allowed) != strlen(o->reference)) {
		fprintf(stderr, "%s: --reference may hold letters, digits and . _ : / - only\n", who);
		return false;
	}
	return true;
}

bool smis_api_check_name(const char *who, const char *option, const char *what, const char *name)
{
	static const char allowed[] = "abcdefghijklmnopqrstuvwxyz0123456789_-";
	size_t n;

	if (!name) /* absent: smisd's default */
		return true;
	n = strlen(name);
	if (n > 0 && n <= SMIS_API_NAME_MAX && strspn(name, allowed) == n)
		return true;
	fprintf(stderr, "%s: %s must name a %s: 1-%d characters of a-z, 0-9, '_' and '-'\n", who, option, what,
		SMIS_API_NAME_MAX);
	return false;
}

bool smis_api_check_send(const struct smis_api_options *o, const char *who)
{
	return check_idem(o, who) && check_text(who, "--to", o->to, &RECIPIENT) &&
	       check_text(who, "--strategy", o->strategy, &STRATEGY) &&
	       smis_api_check_name(who, "--strategy", "strategy", o->strategy) && check_reference(o, who);
}

bool smis_api_lang_known(const char *lang)
{
	return strcmp(lang, "nl") == 0 || strcmp(lang, "fr") == 0 || strcmp(lang, "de") == 0 ||
	       strcmp(lang, "en") == 0;
}

bool smis_api_check_content(const char *who, const char *lang, const char *title, const char *body,
			    const char *sms_text, bool sealed)
{
	char title_is[16], body_is[16], sms_is[24];

	if (!smis_api_lang_known(lang)) {
		fprintf(stderr, "%s: --lang must be nl, fr, de or en\n", who);
		return false;
	}
	snprintf(title_is, sizeof(title_is), "the %s title", lang);
	snprintf(body_is, sizeof(body_is), "the %s body", lang);
	snprintf(sms_is, sizeof(sms_is), "the %s SMS text", lang);
	return check_text(who, title_is, title, &TITLE) && check_text(who, body_is, body, sealed ? NULL : &BODY) &&
	       check_text(who, sms_is, sms_text, &SMS_TEXT);
}

char *smis_api_read_line(FILE *f)
{
	char buf[SMISD_JWT_MAX_LEN + 3];
	char *line = NULL;
	size_t n;

	if (!fgets(buf, sizeof(buf), f))
		goto out;
	n = strlen(buf);
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
		buf[--n] = '\0';
	line = strdup(buf);
	/* It may have been a key. */
	OPENSSL_cleanse(buf, sizeof(buf));
out:
	return line;
}

#define DECIMAL(n) #n
#define AS_TEXT(n) DECIMAL(n)

const char *smis_api_key_refusal(const char *key, bool token)
{
	size_t n = strlen(key);

	if (n == 0)
		return "is empty";
	if (key[0] == ' ')
		return "starts with a space, which smisd skips: it would read another key";
	if (key[n - 1] == ' ' || key[n - 1] == '\t')
		return "ends with a space or tab, not part of an HTTP header's value: smisd would read another key";
	if (strpbrk(key, "\r\n"))
		return "holds a line break (CR or LF), which cannot travel in an HTTP header";
	if (smisd_field_value_has_ctl(key, n))
		return "holds a control character other than a tab, which smisd refuses";
	if (n <= SMISD_API_KEY_MAX)
		return NULL;
	if (!token)
		return "is longer than the " AS_TEXT(SMISD_API_KEY_MAX) " bytes smisd takes";
	if (n > SMISD_JWT_MAX_LEN || !smisd_jwt_looks_like(key))
		return "is longer than smisd takes: " AS_TEXT(SMISD_API_KEY_MAX) " bytes, "
		       AS_TEXT(SMISD_JWT_MAX_LEN) " for a gateway token (a JWT)";
	return NULL;
}

void smis_api_key_free(char *key)
{
	if (key)
		OPENSSL_cleanse(key, strlen(key));
	free(key);
}

char *smis_api_key(const char *prog, const struct smis_api_options *o)
{
	const char *env = getenv("SMIS_API_KEY");
	const char *why;
	char *key = NULL;
	FILE *f;

	if (o->key) {
		key = strdup(o->key);
	} else if (o->key_file) {
		f = fopen(o->key_file, "r");
		if (!f) {
			fprintf(stderr, "%s: %s: %s\n", prog, o->key_file, strerror(errno));
			goto out;
		}
		key = smis_api_read_line(f);
		fclose(f);
	} else if (env) {
		key = strdup(env);
	}
	if (!key) {
		fprintf(stderr, "%s: an API key is needed: --key-file FILE, $SMIS_API_KEY or --key KEY\n", prog);
	} else if ((why = smis_api_key_refusal(key, true))) {
		fprintf(stderr, "%s: the API key %s\n", prog, why);
		smis_api_key_free(key);
		key = NULL;
	}
out:
	return key;
}

/* ------------------------------------------------------------------ */
/* Requests                                                             */
/* ------------------------------------------------------------------ */

int smis_api_global_init(const char *prog)
{
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		fprintf(stderr, "%s: cannot initialise libcurl\n", prog);
		return -1;
	}
	return 0;
}

void smis_api_global_cleanup(void)
{
	curl_global_cleanup();
}

void smis_api_answer_clear(struct smis_api_answer *a)
{
	free(a->body);
	memset(a, 0, sizeof(*a));
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *arg)
{
	struct smis_api_answer *a = arg;
	size_t n = size * nmemb;
	char *grown;

	if (a->len + n > SMIS_API_ANSWER_MAX) {
		a->too_big = true;
		return 0;
	}
	grown = realloc(a->body, a->len + n + 1);
	if (!grown)
		return 0;
	memcpy(grown + a->len, data, n);
	a->body = grown;
	a->len += n;
	a->body[a->len] = '\0';
	return n;
}

/* Keep the headers that change what the user should do next. */
static size_t on_header(char *data, size_t size, size_t nmemb, void *arg)
{
	struct smis_api_answer *a = arg;
	size_t n = size * nmemb;
	size_t vlen;
	const char *v;

	if (n > 12 && strncasecmp(data, "Retry-After:", 12) == 0) {
		v = data + 12;
		vlen = n - 12;
		while (vlen && (*v == ' ' || *v == '\t')) {
			v++;
			vlen--;
		}
		while (vlen && (v[vlen - 1] == '\r' || v[vlen - 1] == '\n' || v[vlen - 1] == ' '))
			vlen--;
		snprintf(a->retry_after, sizeof(a->retry_after), "%.*s", (int)vlen, v);
	} else if (n > 20 && strncasecmp(data, "Idempotent-Replayed:", 20) == 0) {
		a->replayed = memmem(data + 20, n - 20, "true", 4) != NULL;
	}
	return n;
}

/* "http://host:port" + path [+ "/" + id], without a doubled '/'. */
static char *api_url(const char *base, const char *path, const char *id)
{
	size_t blen = strlen(base);
	size_t n;
	char *out;

	while (blen > 0 && base[blen - 1] == '/')
		blen--;
	n = blen + strlen(path) + (id ? strlen(id) + 1 : 0) + 1;
	out = malloc(n);
	if (out)
		snprintf(out, n, "%.*s%s%s%s", (int)blen, base, path, id ? "/" : "", id ? id : "");
	return out;
}

/* Append "<name><value>" to *h; false when out of memory. */
static bool add_header(struct curl_slist **h, const char *name, const char *value)
{
	size_t n = strlen(name) + strlen(value) + 1;
	char *line = malloc(n);
	struct curl_slist *grown = NULL;

	if (!line)
		goto out;
	snprintf(line, n, "%s%s", name, value);
	grown = curl_slist_append(*h, line);
	/* The Authorization line holds the key: wipe our copy. */
	OPENSSL_cleanse(line, n);
	free(line);
	if (grown)
		*h = grown;
out:
	return grown != NULL;
}

int smis_api_request(const struct smis_api_client *cl, const char *method, const char *path,
		     const char *id, const char *idem, const char *body, struct smis_api_answer *a)
{
	struct curl_slist *h = NULL;
	char *url = NULL;
	char agent[64];
	CURL *c;
	CURLcode cc;
	int rc = -1;

	memset(a, 0, sizeof(*a));
	c = curl_easy_init();
	if (!c) {
		fprintf(stderr, "%s: cannot initialise libcurl\n", cl->prog);
		goto out;
	}
	url = api_url(cl->url, path, id);
	/* Authorization first: it is the node wiped at the end. */
	if (!url || !add_header(&h, "Authorization: Bearer ", cl->key) ||
	    !add_header(&h, "Accept: ", "application/json, application/problem+json"))
		goto out_oom;
	/* Expect: libcurl would otherwise wait for a 100 Continue on big
	 * bodies. */
	if (body && (!add_header(&h, "Content-Type: ", "application/json") || !add_header(&h, "Expect:", "")))
		goto out_oom;
	if (idem && !add_header(&h, "Idempotency-Key: ", idem))
		goto out_oom;
	snprintf(agent, sizeof(agent), "%s/%s", cl->prog, PACKAGE_VERSION);
	curl_easy_setopt(c, CURLOPT_URL, url);
	if (body) {
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
	}
	/* A body makes a POST, none a GET; anything else is named. */
	if (strcmp(method, body ? "POST" : "GET") != 0)
		curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(c, CURLOPT_USERAGENT, agent);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, cl->timeout_s);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, cl->timeout_s < 10 ? cl->timeout_s : 10L);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
#if LIBCURL_VERSION_NUM >= 0x075500
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
#else
	curl_easy_setopt(c, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, a);
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, a);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, a->error);
	cc = curl_easy_perform(c);
	if (cc != CURLE_OK) {
		fprintf(stderr, "%s: %s %s: %s\n", cl->prog, method, url,
			a->too_big ? "answer too large" : a->error[0] ? a->error : curl_easy_strerror(cc));
		smis_api_answer_clear(a);
		goto out;
	}
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &a->status);
	rc = 0;
	goto out;
out_oom:
	fprintf(stderr, "%s: out of memory\n", cl->prog);
out:
	if (h)
		OPENSSL_cleanse(h->data, strlen(h->data));
	curl_slist_free_all(h);
	free(url);
	if (c)
		curl_easy_cleanup(c);
	return rc;
}

json_object *smis_api_answer_json(const struct smis_api_answer *a)
{
	return a->body ? json_tokener_parse(a->body) : NULL;
}

/* JSON text as json-c writes it, but the C1 controls (U+0080-U+009F), which
 * json-c leaves raw as JSON allows and a terminal acts on (U+009B is a CSI),
 * as their \u escapes: the same JSON. And each byte that is no UTF-8 (json-c
 * reads and writes any byte in a string: a lone 0x9B is a CSI to some
 * terminals) as U+FFFD, as smisd writes its own answers. json-c escapes the
 * rest itself. */
static void print_json(FILE *f, const char *text)
{
	size_t used;

	for (; *text; text += used) {
		char esc[7];

		used = 1;
		if ((unsigned char)*text >= 0x80 && smisd_json_escape_char(text, esc, &used) > 0)
			fputs(esc, f);
		else
			fwrite(text, 1, used, f);
	}
}

/* A body that is not JSON (a proxy's error page, whatever listens at the
 * URL): each line as smisd_text_shown shows it, so that no control
 * character in it reaches the terminal. */
static void print_text(FILE *f, const char *text)
{
	while (*text) {
		size_t n = strcspn(text, "\n"), shown = n;
		char *line;

		if (shown > 0 && text[shown - 1] == '\r')
			shown--;
		line = strndup(text, shown);
		if (line)
			smis_api_print_safe(f, line, true);
		free(line);
		fputc('\n', f);
		text += n + (text[n] == '\n');
	}
}

void smis_api_print_answer(const struct smis_api_answer *a, json_object *o)
{
	if (o) {
		print_json(stdout, json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY |
								     JSON_C_TO_STRING_NOSLASHESCAPE));
		putchar('\n');
	} else if (a->len) {
		print_text(stdout, a->body);
	}
	fflush(stdout);
}

void smis_api_report_problem(const struct smis_api_client *cl, const char *what,
			     const struct smis_api_answer *a, json_object *o)
{
	json_object *parsed = o ? NULL : smis_api_answer_json(a);
	json_object *p = o ? o : parsed;
	const char *code = smis_api_json_str(p, "code");
	const char *detail = smis_api_json_str(p, "detail");
	bool utf8 = cl->flags & SMIS_API_UTF8;

	fprintf(stderr, "%s: ", cl->prog);
	if (what)
		fprintf(stderr, "%s: ", what);
	fprintf(stderr, "HTTP %ld", a->status);
	if (code) {
		fputc(' ', stderr);
		smis_api_print_safe(stderr, code, utf8);
	}
	if (detail) {
		fputs(": ", stderr);
		smis_api_print_safe(stderr, detail, utf8);
	}
	if ((cl->flags & SMIS_API_SHOW_RETRY_AFTER) && a->retry_after[0]) {
		fputs(" (retry after ", stderr);
		smis_api_print_safe(stderr, a->retry_after, utf8);
		fputs(" s)", stderr);
	}
	fputc('\n', stderr);
	json_object_put(parsed);
}
