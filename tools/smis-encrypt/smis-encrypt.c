/*
 * smis-encrypt.c - send a GovApp message that the institution encrypts
 * itself ("passthrough", docs/passthrough.md), so that SMIS never sees its
 * body:
 *
 *   1. POST /v1/recipients/keys   the citizen's device keys and a message id;
 *   2. seal the plaintext (docs/e2e-format.md) to every device, bound to
 *      that message id (smis_passthrough_seal, lib/passthrough.h);
 *   3. POST /v1/messages          `message_id`, `encrypted` and the titles
 *                                 (plus `sms_text` when given), nothing else.
 *
 * It is also the reference for institutions that write their own client:
 * every step is the public API, nothing of the daemon is linked.
 *
 * Exit codes (as smisctl): 0 sent, 1 failed (the answer says "failed", or
 * the citizen has no app device to encrypt to: nothing sent), 2 usage,
 * 3 error (HTTP, API problem, transport).
 */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>
#include <json-c/json.h>
#include <openssl/crypto.h>

#include "html_sanitize.h"
#include "passthrough.h"

enum enc_exit {
	ENC_SENT = 0,
	ENC_FAILED = 1,
	ENC_USAGE = 2,
	ENC_ERROR = 3,
};

#define DEFAULT_TIMEOUT_S 60L
#define KEY_MAX 8192
/* An answer bigger than this is not SMIS talking. */
#define ANSWER_MAX (4u << 20)
/* A body read from a file: SMIS refuses requests over 64 KiB by default, the
 * sealed body grows by a third, so this is generous. */
#define BODY_FILE_MAX (1u << 20)
#define MAX_LANGS 4

struct lang_block {
	const char *lang;
	const char *title;
	const char *body;      /* --body, or NULL */
	const char *body_file; /* --body-file, or NULL */
	const char *sms_text;
	char *body_read;       /* what body_file held */
};

struct options {
	const char *url;
	const char *to;
	const char *strategy;
	const char *reference;
	const char *idem;
	const char *channel;
	bool html;
	bool dry_run;
	long timeout_s;
	struct lang_block langs[MAX_LANGS];
	size_t n_langs;
};

struct answer {
	long status;
	char *body;
	size_t len;
	bool too_big;
	char error[CURL_ERROR_SIZE];
};

static void usage(FILE *f)
{
	fputs("Usage: smis-encrypt --url URL --to NUMBER --title TITLE --body BODY [options]\n"
	      "Encrypt a GovApp message on this side for each of the citizen's devices, then send it\n"
	      "through SMIS, which never sees the body (docs/passthrough.md). Prints SMIS's answer.\n"
	      "  -u, --url URL             SMIS base URL, e.g. http://127.0.0.1:8080\n"
	      "  -k, --key KEY             API key (visible to other users: prefer the next two)\n"
	      "  -K, --key-file FILE       read the API key from the first line of FILE\n"
	      "                            (default: the SMIS_API_KEY environment variable)\n"
	      "  -t, --to NUMBER           recipient: E.164 (+32470123456) or Belgian national form\n"
	      "  -l, --lang LANG           language of the next title/body: nl (default), fr, de, en\n"
	      "  -T, --title TITLE         title (sent in clear: GovApp shows it in the notification)\n"
	      "  -b, --body BODY           body, encrypted (text, or HTML with --html)\n"
	      "      --body-file FILE      read the body from FILE ('-': standard input)\n"
	      "      --sms-text TEXT       text for SMS channels; without it an SMS fallback only\n"
	      "                            carries the title (SMIS cannot read the body)\n"
	      "                            Repeat --lang/--title/--body/--sms-text for more languages.\n"
	      "      --html                the bodies are HTML: sanitised here with SMIS's allow-list\n"
	      "  -s, --strategy NAME       strategy, e.g. govapp_only (default: the institution's)\n"
	      "  -r, --reference REF       your reference, returned in the answer\n"
	      "  -i, --idempotency-key K   Idempotency-Key header of the send\n"
	      "  -c, --channel NAME        app channel to ask for keys (default: SMIS's first one)\n"
	      "  -n, --dry-run             fetch the keys and encrypt, print the request body of\n"
	      "                            POST /v1/messages instead of sending it\n"
	      "      --timeout SECONDS     per request (default 60)\n"
	      "  -h, --help                this text\n"
	      "Exit: 0 sent, 1 failed (or no device to encrypt to: nothing sent), 2 usage,\n"
	      "3 HTTP, API or transport error (problem code on stderr).\n",
	      f);
}

/* ------------------------------------------------------------------ */
/* Small helpers                                                        */
/* ------------------------------------------------------------------ */

static const char *json_str(json_object *o, const char *key)
{
	json_object *v;

	if (o && json_object_is_type(o, json_type_object) && json_object_object_get_ex(o, key, &v) &&
	    json_object_is_type(v, json_type_string))
		return json_object_get_string(v);
	return NULL;
}

static const char *json_text(json_object *o)
{
	return json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
}

static bool parse_long(const char *s, long min, long max, long *out)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < min || v > max)
		return false;
	*out = v;
	return true;
}

/* Read a whole file (or stdin for "-") as a NUL-terminated string. */
static char *read_file(const char *path, size_t max)
{
	FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
	char *buf = NULL, *grown;
	size_t len = 0, cap = 0, n;

	if (!f) {
		fprintf(stderr, "smis-encrypt: %s: %s\n", path, strerror(errno));
		goto out;
	}
	do {
		if (cap - len < 4097) {
			cap = cap ? cap * 2 : 8192;
			grown = realloc(buf, cap);
			if (!grown) {
				fprintf(stderr, "smis-encrypt: out of memory\n");
				goto out_fail;
			}
			buf = grown;
		}
		n = fread(buf + len, 1, cap - len - 1, f);
		len += n;
		if (len > max) {
			fprintf(stderr, "smis-encrypt: %s: larger than %zu bytes\n", path, max);
			goto out_fail;
		}
	} while (n > 0);
	if (ferror(f)) {
		fprintf(stderr, "smis-encrypt: %s: read error\n", path);
		goto out_fail;
	}
	buf[len] = '\0';
	if (strlen(buf) != len) {
		fprintf(stderr, "smis-encrypt: %s: holds a NUL byte\n", path);
		goto out_fail;
	}
	goto out_close;
out_fail:
	if (buf)
		OPENSSL_cleanse(buf, len);
	free(buf);
	buf = NULL;
out_close:
	if (f != stdin)
		fclose(f);
out:
	return buf;
}

/* The API key: --key, else the first line of --key-file, else SMIS_API_KEY. */
static char *api_key(const char *opt_key, const char *key_file)
{
	const char *env = getenv("SMIS_API_KEY");
	char *key = NULL;

	if (opt_key) {
		key = strdup(opt_key);
	} else if (key_file) {
		key = read_file(key_file, KEY_MAX);
		if (key)
			key[strcspn(key, "\r\n")] = '\0';
	} else if (env) {
		key = strdup(env);
	} else {
		fprintf(stderr, "smis-encrypt: no API key: use --key-file, SMIS_API_KEY or --key\n");
		goto out;
	}
	if (!key)
		goto out;
	if (!key[0] || strpbrk(key, "\r\n") || strlen(key) > KEY_MAX) {
		fprintf(stderr, "smis-encrypt: the API key must be one non-empty line\n");
		OPENSSL_cleanse(key, strlen(key));
		free(key);
		key = NULL;
	}
out:
	return key;
}

/* ------------------------------------------------------------------ */
/* HTTP                                                                 */
/* ------------------------------------------------------------------ */

static size_t on_body(char *data, size_t size, size_t nmemb, void *arg)
{
	struct answer *a = arg;
	size_t n = size * nmemb;
	char *grown;

	if (a->len + n > ANSWER_MAX) {
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

static void answer_clear(struct answer *a)
{
	free(a->body);
	memset(a, 0, sizeof(*a));
}

/* POST body (JSON) to base + path. Returns 0 when an HTTP answer arrived
 * (any status), -1 after printing why none did. */
static int http_post(const char *base, const char *path, const char *key, const char *idem,
		     const char *body, long timeout_s, struct answer *a)
{
	struct curl_slist *h = NULL, *grown;
	char *url = NULL, *line = NULL;
	size_t n;
	CURL *c = curl_easy_init();
	CURLcode cc;
	int rc = -1;

	memset(a, 0, sizeof(*a));
	if (!c) {
		fprintf(stderr, "smis-encrypt: cannot initialise libcurl\n");
		goto out;
	}
	n = strlen(base);
	while (n > 0 && base[n - 1] == '/')
		n--;
	url = malloc(n + strlen(path) + 1);
	line = malloc(strlen(key) + 32);
	if (!url || !line)
		goto out_oom;
	memcpy(url, base, n);
	memcpy(url + n, path, strlen(path) + 1);
	snprintf(line, strlen(key) + 32, "Authorization: Bearer %s", key);
	grown = curl_slist_append(h, line);
	OPENSSL_cleanse(line, strlen(line));
	if (!grown)
		goto out_oom;
	h = grown;
	if (!(grown = curl_slist_append(h, "Accept: application/json, application/problem+json")))
		goto out_oom;
	h = grown;
	if (!(grown = curl_slist_append(h, "Content-Type: application/json")))
		goto out_oom;
	h = grown;
	/* libcurl would otherwise wait for a 100 Continue on big bodies. */
	if (!(grown = curl_slist_append(h, "Expect:")))
		goto out_oom;
	h = grown;
	if (idem) {
		free(line);
		line = malloc(strlen(idem) + 32);
		if (!line)
			goto out_oom;
		snprintf(line, strlen(idem) + 32, "Idempotency-Key: %s", idem);
		if (!(grown = curl_slist_append(h, line)))
			goto out_oom;
		h = grown;
	}
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_POST, 1L);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(c, CURLOPT_USERAGENT, "smis-encrypt/" PACKAGE_VERSION);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, timeout_s);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, timeout_s < 10 ? timeout_s : 10L);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
#if LIBCURL_VERSION_NUM >= 0x075500
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
#else
	curl_easy_setopt(c, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, a);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, a->error);
	curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
	cc = curl_easy_perform(c);
	if (cc != CURLE_OK) {
		fprintf(stderr, "smis-encrypt: POST %s: %s\n", url,
			a->too_big ? "answer too large" : a->error[0] ? a->error : curl_easy_strerror(cc));
		goto out;
	}
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &a->status);
	rc = 0;
	goto out;
out_oom:
	fprintf(stderr, "smis-encrypt: out of memory\n");
out:
	curl_slist_free_all(h);
	free(url);
	free(line);
	if (c)
		curl_easy_cleanup(c);
	return rc;
}

/* Print only printable ASCII of a server-supplied string: an answer must
 * not be able to drive the terminal. */
static void print_safe(FILE *f, const char *s)
{
	for (; *s; s++)
		fputc(*s >= 0x20 && *s < 0x7f ? *s : '?', f);
}

/* An answer that is not a success: name the problem on stderr. */
static void report_problem(const char *what, const struct answer *a)
{
	json_object *o = a->body ? json_tokener_parse(a->body) : NULL;
	const char *code = json_str(o, "code"), *detail = json_str(o, "detail");

	fprintf(stderr, "smis-encrypt: %s: HTTP %ld", what, a->status);
	if (code) {
		fputc(' ', stderr);
		print_safe(stderr, code);
	}
	if (detail) {
		fputs(": ", stderr);
		print_safe(stderr, detail);
	}
	fputc('\n', stderr);
	json_object_put(o);
}

/* ------------------------------------------------------------------ */
/* Message                                                              */
/* ------------------------------------------------------------------ */

static bool known_lang(const char *l)
{
	return strcmp(l, "nl") == 0 || strcmp(l, "fr") == 0 || strcmp(l, "de") == 0 || strcmp(l, "en") == 0;
}

/*
 * The plaintext of docs/e2e-format.md section 7 (message_id and v are
 * filled in by smis_passthrough_seal). HTML is sanitised with the same
 * allow-list SMIS applies to the messages it encrypts, which also gives the
 * plain rendering. Returns ENC_SENT (0) or the exit code of the failure.
 */
static int build_plaintext(const struct options *op, char **out)
{
	json_object *o = json_object_new_object(), *content = json_object_new_object();
	int rc = ENC_ERROR;

	*out = NULL;
	if (!o || !content) {
		json_object_put(content);
		fprintf(stderr, "smis-encrypt: out of memory\n");
		goto out;
	}
	json_object_object_add(o, "content", content);
	for (size_t i = 0; i < op->n_langs; i++) {
		const struct lang_block *b = &op->langs[i];
		const char *body = b->body ? b->body : b->body_read;
		json_object *lc = json_object_new_object();
		char *clean = NULL, *text = NULL;

		if (!lc)
			goto out_oom;
		json_object_object_add(content, b->lang, lc);
		json_object_object_add(lc, "title", json_object_new_string(b->title));
		if (op->html) {
			int r = smis_html_sanitize(body, strlen(body), &clean, &text);

			if (r == -ENOMEM)
				goto out_oom;
			if (r < 0 || !text[0]) {
				fprintf(stderr, "smis-encrypt: the %s HTML body %s\n", b->lang,
					r < 0 ? "cannot be sanitised (not UTF-8, or too large or complex)"
					      : "has no text left once sanitised");
				if (text)
					OPENSSL_cleanse(text, strlen(text));
				free(clean);
				free(text);
				rc = ENC_USAGE;
				goto out;
			}
			json_object_object_add(lc, "body", json_object_new_string(clean));
			json_object_object_add(lc, "body_text", json_object_new_string(text));
			json_object_object_add(lc, "format", json_object_new_string("html"));
			OPENSSL_cleanse(clean, strlen(clean));
			OPENSSL_cleanse(text, strlen(text));
			free(clean);
			free(text);
		} else {
			json_object_object_add(lc, "body", json_object_new_string(body));
			json_object_object_add(lc, "body_text", json_object_new_string(body));
			json_object_object_add(lc, "format", json_object_new_string("text"));
		}
	}
	*out = strdup(json_text(o));
	if (!*out)
		goto out_oom;
	rc = ENC_SENT;
	goto out;
out_oom:
	fprintf(stderr, "smis-encrypt: out of memory\n");
out:
	json_object_put(o);
	return rc;
}

/* The body of POST /v1/messages: everything but the bodies, which travel
 * only inside the envelopes. */
static char *send_body(const struct options *op, const char *message_id, const char *encrypted_json)
{
	json_object *o = json_object_new_object(), *content = json_object_new_object();
	json_object *enc = json_tokener_parse(encrypted_json);
	char *out = NULL;

	if (!o || !content || !enc) {
		json_object_put(content);
		json_object_put(enc);
		goto out;
	}
	json_object_object_add(o, "recipient", json_object_new_string(op->to));
	json_object_object_add(o, "message_id", json_object_new_string(message_id));
	json_object_object_add(o, "encrypted", enc);
	json_object_object_add(o, "content", content);
	for (size_t i = 0; i < op->n_langs; i++) {
		json_object *lc = json_object_new_object();

		if (!lc)
			goto out;
		json_object_object_add(content, op->langs[i].lang, lc);
		json_object_object_add(lc, "title", json_object_new_string(op->langs[i].title));
		if (op->langs[i].sms_text)
			json_object_object_add(lc, "sms_text", json_object_new_string(op->langs[i].sms_text));
	}
	if (op->strategy)
		json_object_object_add(o, "strategy", json_object_new_string(op->strategy));
	if (op->reference)
		json_object_object_add(o, "reference", json_object_new_string(op->reference));
	out = strdup(json_text(o));
out:
	json_object_put(o);
	return out;
}

/* ------------------------------------------------------------------ */
/* Command line                                                         */
/* ------------------------------------------------------------------ */

static struct lang_block *new_block(struct options *op)
{
	if (op->n_langs == MAX_LANGS) {
		fprintf(stderr, "smis-encrypt: at most %d languages\n", MAX_LANGS);
		return NULL;
	}
	return &op->langs[op->n_langs++];
}

/* The block the next --lang/--title/--sms-text belongs to: the current one
 * unless it already has that item. So both "--lang fr --title T --body B"
 * and "--title T --body B --lang fr" name one French block. */
static struct lang_block *block_for(struct options *op, size_t item_offset)
{
	struct lang_block *b = op->n_langs ? &op->langs[op->n_langs - 1] : NULL;

	if (b && !*(const char **)((char *)b + item_offset))
		return b;
	return new_block(op);
}

static int check_blocks(struct options *op)
{
	int rc = ENC_USAGE;

	if (op->n_langs == 0) {
		fprintf(stderr, "smis-encrypt: --title and --body are required\n");
		goto out;
	}
	for (size_t i = 0; i < op->n_langs; i++) {
		struct lang_block *b = &op->langs[i];

		if (!b->lang && op->n_langs == 1)
			b->lang = "nl";
		if (!b->lang || !known_lang(b->lang)) {
			fprintf(stderr, "smis-encrypt: every language needs --lang nl, fr, de or en\n");
			goto out;
		}
		for (size_t j = 0; j < i; j++)
			if (strcmp(op->langs[j].lang, b->lang) == 0) {
				fprintf(stderr, "smis-encrypt: language %s given twice\n", b->lang);
				goto out;
			}
		if (!b->title || !b->title[0] || (!b->body && !b->body_file) || (b->body && b->body_file)) {
			fprintf(stderr, "smis-encrypt: language %s needs --title and one of --body or --body-file\n",
				b->lang);
			goto out;
		}
		if (b->body_file) {
			b->body_read = read_file(b->body_file, BODY_FILE_MAX);
			if (!b->body_read) {
				rc = ENC_ERROR;
				goto out;
			}
		}
	}
	rc = 0;
out:
	return rc;
}

/* Parse argv into op (and the key options). Returns 0, ENC_USAGE, or -1
 * after --help. */
static int parse_args(int argc, char **argv, struct options *op, const char **opt_key,
		      const char **key_file)
{
	enum { OPT_HTML = 256, OPT_SMS, OPT_TIMEOUT, OPT_BODY_FILE };
	static const struct option opts[] = {
		{ "url", required_argument, NULL, 'u' },
		{ "key", required_argument, NULL, 'k' },
		{ "key-file", required_argument, NULL, 'K' },
		{ "to", required_argument, NULL, 't' },
		{ "lang", required_argument, NULL, 'l' },
		{ "title", required_argument, NULL, 'T' },
		{ "body", required_argument, NULL, 'b' },
		{ "body-file", required_argument, NULL, OPT_BODY_FILE },
		{ "sms-text", required_argument, NULL, OPT_SMS },
		{ "html", no_argument, NULL, OPT_HTML },
		{ "strategy", required_argument, NULL, 's' },
		{ "reference", required_argument, NULL, 'r' },
		{ "idempotency-key", required_argument, NULL, 'i' },
		{ "channel", required_argument, NULL, 'c' },
		{ "dry-run", no_argument, NULL, 'n' },
		{ "timeout", required_argument, NULL, OPT_TIMEOUT },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct lang_block *b;
	int c, rc = ENC_USAGE;

	/* "+": options in order, no permutation: --lang applies to what follows. */
	while ((c = getopt_long(argc, argv, "+u:k:K:t:l:T:b:s:r:i:c:nh", opts, NULL)) != -1) {
		b = NULL;
		switch (c) {
		case 'u': op->url = optarg; break;
		case 'k': *opt_key = optarg; break;
		case 'K': *key_file = optarg; break;
		case 't': op->to = optarg; break;
		case 's': op->strategy = optarg; break;
		case 'r': op->reference = optarg; break;
		case 'i': op->idem = optarg; break;
		case 'c': op->channel = optarg; break;
		case 'n': op->dry_run = true; break;
		case OPT_HTML: op->html = true; break;
		case 'l':
			if (!(b = block_for(op, offsetof(struct lang_block, lang))))
				goto out;
			b->lang = optarg;
			break;
		case 'T':
			if (!(b = block_for(op, offsetof(struct lang_block, title))))
				goto out;
			b->title = optarg;
			break;
		case 'b':
		case OPT_BODY_FILE:
			/* --body and --body-file fill the same slot. */
			b = op->n_langs ? &op->langs[op->n_langs - 1] : NULL;
			if ((!b || b->body || b->body_file) && !(b = new_block(op)))
				goto out;
			if (c == 'b')
				b->body = optarg;
			else
				b->body_file = optarg;
			break;
		case OPT_SMS:
			if (!(b = block_for(op, offsetof(struct lang_block, sms_text))))
				goto out;
			b->sms_text = optarg;
			break;
		case OPT_TIMEOUT:
			if (!parse_long(optarg, 1, 3600, &op->timeout_s)) {
				fprintf(stderr, "smis-encrypt: --timeout must be 1-3600 seconds\n");
				goto out;
			}
			break;
		case 'h':
			usage(stdout);
			rc = -1;
			goto out;
		default:
			usage(stderr);
			goto out;
		}
	}
	if (optind != argc || !op->url || !op->to) {
		fprintf(stderr, "smis-encrypt: --url and --to are required\n");
		usage(stderr);
		goto out;
	}
	if (op->idem && (strpbrk(op->idem, "\r\n") || strlen(op->idem) > 128)) {
		fprintf(stderr, "smis-encrypt: --idempotency-key must be one line of at most 128 characters\n");
		goto out;
	}
	rc = check_blocks(op);
out:
	return rc;
}

/* ------------------------------------------------------------------ */
/* Main                                                                 */
/* ------------------------------------------------------------------ */

/* Step 1: the keys answer (body of a 200), or NULL with *rc set. */
static char *fetch_keys(const struct options *op, const char *key, int *rc)
{
	json_object *req = json_object_new_object();
	struct answer a;
	char *keys = NULL;

	memset(&a, 0, sizeof(a));
	*rc = ENC_ERROR;
	if (!req)
		goto out;
	json_object_object_add(req, "recipient", json_object_new_string(op->to));
	if (op->channel)
		json_object_object_add(req, "channel", json_object_new_string(op->channel));
	if (http_post(op->url, "/v1/recipients/keys", key, NULL, json_text(req), op->timeout_s, &a) < 0)
		goto out;
	if (a.status != 200 || !a.body) {
		report_problem("POST /v1/recipients/keys", &a);
		goto out;
	}
	keys = a.body;
	a.body = NULL;
	*rc = ENC_SENT;
out:
	answer_clear(&a);
	json_object_put(req);
	return keys;
}

/* Step 3: send, print the answer and map it to the exit code. */
static int send_message(const struct options *op, const char *key, const char *body)
{
	struct answer a;
	json_object *o = NULL;
	const char *status;
	int rc = ENC_ERROR;

	if (http_post(op->url, "/v1/messages", key, op->idem, body, op->timeout_s, &a) < 0)
		goto out;
	if (a.status != 200 && a.status != 201) {
		report_problem("POST /v1/messages", &a);
		goto out;
	}
	o = a.body ? json_tokener_parse(a.body) : NULL;
	status = json_str(o, "status");
	if (!status) {
		fprintf(stderr, "smis-encrypt: POST /v1/messages: HTTP %ld without a status\n", a.status);
		goto out;
	}
	printf("%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE));
	fflush(stdout);
	if (strcmp(status, "failed") == 0) {
		fputs("smis-encrypt: failed: ", stderr);
		print_safe(stderr, json_str(o, "error") ? json_str(o, "error") : "?");
		fputc('\n', stderr);
		rc = ENC_FAILED;
	} else {
		rc = ENC_SENT;
	}
out:
	json_object_put(o);
	answer_clear(&a);
	return rc;
}

int main(int argc, char **argv)
{
	struct options op = { .timeout_s = DEFAULT_TIMEOUT_S };
	const char *opt_key = NULL, *key_file = NULL;
	char *key = NULL, *keys = NULL, *plaintext = NULL, *encrypted = NULL, *message_id = NULL;
	char *body = NULL;
	bool curl_ready = false;
	json_object *ko = NULL;
	int rc, r;

	rc = parse_args(argc, argv, &op, &opt_key, &key_file);
	if (rc != 0) {
		rc = rc < 0 ? ENC_SENT : rc;
		goto out;
	}
	rc = ENC_USAGE;
	key = api_key(opt_key, key_file);
	if (!key)
		goto out;
	rc = build_plaintext(&op, &plaintext);
	if (rc != ENC_SENT)
		goto out;
	rc = ENC_ERROR;
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		fprintf(stderr, "smis-encrypt: cannot initialise libcurl\n");
		goto out;
	}
	curl_ready = true;

	keys = fetch_keys(&op, key, &rc);
	if (!keys)
		goto out;
	r = smis_passthrough_seal(keys, plaintext, &encrypted, &message_id);
	if (r == -ENODEV) {
		ko = json_tokener_parse(keys);
		fputs("smis-encrypt: the citizen has no app device to encrypt to (reachability ", stderr);
		print_safe(stderr, json_str(ko, "reachability") ? json_str(ko, "reachability") : "?");
		fputs("): nothing sent\n", stderr);
		rc = ENC_FAILED;
		goto out;
	}
	if (r < 0) {
		fprintf(stderr, "smis-encrypt: cannot encrypt: %s\n",
			r == -E2BIG ? "too many devices or too large a message" :
			r == -EINVAL ? "unexpected keys answer" : strerror(-r));
		rc = ENC_ERROR;
		goto out;
	}
	body = send_body(&op, message_id, encrypted);
	if (!body) {
		fprintf(stderr, "smis-encrypt: out of memory\n");
		rc = ENC_ERROR;
		goto out;
	}
	if (op.dry_run) {
		printf("%s\n", body);
		rc = ENC_SENT;
		goto out;
	}
	rc = send_message(&op, key, body);
out:
	if (plaintext)
		OPENSSL_cleanse(plaintext, strlen(plaintext));
	free(plaintext);
	if (key)
		OPENSSL_cleanse(key, strlen(key));
	free(key);
	for (size_t i = 0; i < op.n_langs; i++) {
		if (op.langs[i].body_read)
			OPENSSL_cleanse(op.langs[i].body_read, strlen(op.langs[i].body_read));
		free(op.langs[i].body_read);
	}
	json_object_put(ko);
	free(keys);
	free(encrypted);
	free(message_id);
	free(body);
	if (curl_ready)
		curl_global_cleanup();
	return rc;
}
