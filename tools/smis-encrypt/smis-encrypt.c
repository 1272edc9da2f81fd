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
 * every step is the public API, nothing of the daemon is linked. The HTTP
 * client is the one it shares with smisctl (tools/common/apiclient.h).
 *
 * Exit codes (as smisctl): 0 sent, 1 failed (the answer says "failed", or
 * the citizen has no app device to encrypt to: nothing sent), 2 usage,
 * 3 error (HTTP, API problem, transport, out of memory).
 */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>
#include <openssl/crypto.h>

#include "html_sanitize.h"
#include "passthrough.h"

#include "apiclient.h"

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
	struct smis_api_options api; /* what smisctl send takes too */
	const char *channel;
	bool dry_run;
	struct lang_block langs[MAX_LANGS];
	size_t n_langs;
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

/* ------------------------------------------------------------------ */
/* Message                                                              */
/* ------------------------------------------------------------------ */

/* The body members of one language of the plaintext: the sanitised HTML
 * and its plain rendering, or the text twice. False when out of memory,
 * *usage set when the HTML body is refused (said why). */
static bool add_plaintext_body(json_object *lc, const struct lang_block *b, const char *body, bool html,
			       bool *usage)
{
	char *clean = NULL, *text = NULL;
	int r;
	bool ok;

	if (!html)
		return smis_api_json_add_string(lc, "body", body) && smis_api_json_add_string(lc, "body_text", body) &&
		       smis_api_json_add_string(lc, "format", "text");
	r = smis_html_sanitize(body, strlen(body), &clean, &text);
	if (r == -ENOMEM)
		return false;
	if (r < 0 || !text[0]) {
		fprintf(stderr, "smis-encrypt: the %s HTML body %s\n", b->lang,
			r < 0 ? "cannot be sanitised (not UTF-8, or too large or complex)"
			      : "has no text left once sanitised");
		*usage = true;
		ok = false;
	} else {
		ok = smis_api_json_add_string(lc, "body", clean) && smis_api_json_add_string(lc, "body_text", text) &&
		     smis_api_json_add_string(lc, "format", "html");
	}
	if (clean)
		OPENSSL_cleanse(clean, strlen(clean));
	if (text)
		OPENSSL_cleanse(text, strlen(text));
	free(clean);
	free(text);
	return ok;
}

/*
 * The plaintext of docs/e2e-format.md section 7 (message_id and v are
 * filled in by smis_passthrough_seal). HTML is sanitised with the same
 * allow-list SMIS applies to the messages it encrypts, which also gives the
 * plain rendering. Returns SMIS_EXIT_OK (0) or the exit code of the failure:
 * out of memory is SMIS_EXIT_ERROR, never a plaintext with a member
 * missing (the app would show a message without its title).
 */
static int build_plaintext(const struct options *op, char **out)
{
	json_object *o = json_object_new_object(), *content = NULL;
	bool usage = false;
	int rc = SMIS_EXIT_ERROR;

	*out = NULL;
	if (!o || !smis_api_json_add(o, "content", content = json_object_new_object()))
		goto out_oom;
	for (size_t i = 0; i < op->n_langs; i++) {
		const struct lang_block *b = &op->langs[i];
		json_object *lc = json_object_new_object();

		if (!smis_api_json_add(content, b->lang, lc) || !smis_api_json_add_string(lc, "title", b->title) ||
		    !add_plaintext_body(lc, b, b->body ? b->body : b->body_read, op->api.html, &usage)) {
			if (usage) {
				rc = SMIS_EXIT_USAGE;
				goto out;
			}
			goto out_oom;
		}
	}
	*out = smis_api_json_dup(o);
	if (!*out)
		goto out_oom;
	rc = SMIS_EXIT_OK;
	goto out;
out_oom:
	fprintf(stderr, "smis-encrypt: out of memory\n");
out:
	/* o holds json-c's copies of the bodies and of *out's text. */
	smis_passthrough_json_put_cleansed(o);
	return rc;
}

/* The body of POST /v1/messages: everything but the bodies, which travel
 * only inside the envelopes. NULL when out of memory: never a body with a
 * member missing (without its reference or strategy, smisd would still
 * send the message). */
static char *send_body(const struct options *op, const char *message_id, const char *encrypted_json)
{
	json_object *o = json_object_new_object(), *content = NULL;
	char *out = NULL;
	bool ok;

	ok = o && smis_api_json_add_string(o, "recipient", op->api.to) &&
	     smis_api_json_add_string(o, "message_id", message_id) &&
	     smis_api_json_add(o, "encrypted", json_tokener_parse(encrypted_json)) &&
	     smis_api_json_add(o, "content", content = json_object_new_object());
	for (size_t i = 0; ok && i < op->n_langs; i++) {
		const struct lang_block *b = &op->langs[i];
		json_object *lc = json_object_new_object();

		ok = smis_api_json_add(content, b->lang, lc) && smis_api_json_add_string(lc, "title", b->title) &&
		     (!b->sms_text || smis_api_json_add_string(lc, "sms_text", b->sms_text));
	}
	ok = ok && (!op->api.strategy || smis_api_json_add_string(o, "strategy", op->api.strategy)) &&
	     (!op->api.reference || smis_api_json_add_string(o, "reference", op->api.reference));
	if (ok)
		out = smis_api_json_dup(o);
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
	int rc = SMIS_EXIT_USAGE;

	if (op->n_langs == 0) {
		fprintf(stderr, "smis-encrypt: --title and --body are required\n");
		goto out;
	}
	for (size_t i = 0; i < op->n_langs; i++) {
		struct lang_block *b = &op->langs[i];

		if (!b->lang && op->n_langs == 1)
			b->lang = "nl";
		if (!b->lang || !smis_api_lang_known(b->lang)) {
			fprintf(stderr, "smis-encrypt: every language needs --lang nl, fr, de or en\n");
			goto out;
		}
		for (size_t j = 0; j < i; j++)
			if (strcmp(op->langs[j].lang, b->lang) == 0) {
				fprintf(stderr, "smis-encrypt: language %s given twice\n", b->lang);
				goto out;
			}
		if (!b->title || (!b->body && !b->body_file) || (b->body && b->body_file)) {
			fprintf(stderr, "smis-encrypt: language %s needs --title and one of --body or --body-file\n",
				b->lang);
			goto out;
		}
		if (b->body_file) {
			b->body_read = read_file(b->body_file, BODY_FILE_MAX);
			if (!b->body_read) {
				rc = SMIS_EXIT_ERROR;
				goto out;
			}
		}
		/* What smisd would refuse (a title with a control character...),
		 * and a body that JSON cannot carry, are usage errors found
		 * before any request, not failures once the keys were fetched.
		 * The body is sealed: smisd never sees it. */
		if (!smis_api_check_content("smis-encrypt", b->lang, b->title, b->body ? b->body : b->body_read,
					    b->sms_text, true))
			goto out;
	}
	rc = 0;
out:
	return rc;
}

/* Parse argv into op. Returns 0, SMIS_EXIT_USAGE, or -1 after --help. */
static int parse_args(int argc, char **argv, struct options *op)
{
	enum { OPT_BODY_FILE = 256 };
	static const struct option opts[] = {
		SMIS_API_LONG_OPTIONS,
		SMIS_API_LONG_OPTIONS_SEND,
		{ "body-file", required_argument, NULL, OPT_BODY_FILE },
		{ "channel", required_argument, NULL, 'c' },
		{ "dry-run", no_argument, NULL, 'n' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct lang_block *b;
	int c, rc = SMIS_EXIT_USAGE;

	/* "+": options in order, no permutation: --lang applies to what follows. */
	while ((c = getopt_long(argc, argv, "+" SMIS_API_SHORT_OPTIONS SMIS_API_SHORT_OPTIONS_SEND "c:nh", opts,
				NULL)) != -1) {
		b = NULL;
		switch (c) {
		case 'c': op->channel = optarg; break;
		case 'n': op->dry_run = true; break;
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
		case SMIS_API_OPT_SMS_TEXT:
			if (!(b = block_for(op, offsetof(struct lang_block, sms_text))))
				goto out;
			b->sms_text = optarg;
			break;
		case 'h':
			usage(stdout);
			rc = -1;
			goto out;
		default:
			if (!smis_api_option(&op->api, c, optarg, "smis-encrypt", usage))
				goto out;
			break;
		}
	}
	if (optind != argc || !op->api.url || !op->api.to) {
		fprintf(stderr, "smis-encrypt: --url and --to are required\n");
		usage(stderr);
		goto out;
	}
	/* smisd answers a --channel that names none of its app channels 422
	 * unknown_channel: one no channel can have is refused before any
	 * request. */
	if (!smis_api_check_send(&op->api, "smis-encrypt") ||
	    !smis_api_check_name("smis-encrypt", "--channel", "channel", op->channel))
		goto out;
	rc = check_blocks(op);
out:
	return rc;
}

/* ------------------------------------------------------------------ */
/* Main                                                                 */
/* ------------------------------------------------------------------ */

/* Who asks: smis-encrypt's messages keep to printable ASCII and do not
 * mention Retry-After (its documented output). */
static struct smis_api_client client(const struct options *op, const char *key)
{
	struct smis_api_client cl = {
		.prog = "smis-encrypt",
		.url = op->api.url,
		.key = key,
		.timeout_s = op->api.timeout_s,
	};

	return cl;
}

/* Step 1: the keys answer (body of a 200), or NULL with *rc set. */
static char *fetch_keys(const struct options *op, const char *key, int *rc)
{
	const struct smis_api_client cl = client(op, key);
	json_object *req = json_object_new_object();
	struct smis_api_answer a;
	const char *text;
	char *keys = NULL;

	memset(&a, 0, sizeof(a));
	*rc = SMIS_EXIT_ERROR;
	/* Without its channel the request would ask smisd's default one;
	 * without a text it would be a GET. */
	if (!req || !smis_api_json_add_string(req, "recipient", op->api.to) ||
	    (op->channel && !smis_api_json_add_string(req, "channel", op->channel)) || !(text = smis_api_json_text(req))) {
		fprintf(stderr, "smis-encrypt: out of memory\n");
		goto out;
	}
	if (smis_api_request(&cl, "POST", "/v1/recipients/keys", NULL, NULL, text, &a) < 0)
		goto out;
	if (a.status != 200 || !a.body) {
		smis_api_report_problem(&cl, "POST /v1/recipients/keys", &a, NULL);
		goto out;
	}
	keys = a.body;
	a.body = NULL;
	*rc = SMIS_EXIT_OK;
out:
	smis_api_answer_clear(&a);
	json_object_put(req);
	return keys;
}

/* Step 3: send, print the answer and map it to the exit code. */
static int send_message(const struct options *op, const char *key, const char *body)
{
	const struct smis_api_client cl = client(op, key);
	struct smis_api_answer a;
	json_object *o = NULL;
	const char *status;
	int rc = SMIS_EXIT_ERROR;

	if (smis_api_request(&cl, "POST", "/v1/messages", NULL, op->api.idem, body, &a) < 0)
		goto out;
	if (a.status != 200 && a.status != 201) {
		smis_api_report_problem(&cl, "POST /v1/messages", &a, NULL);
		goto out;
	}
	o = smis_api_answer_json(&a);
	status = smis_api_json_str(o, "status");
	if (!status) {
		fprintf(stderr, "smis-encrypt: POST /v1/messages: HTTP %ld without a status\n", a.status);
		goto out;
	}
	smis_api_print_answer(&a, o);
	if (strcmp(status, "failed") == 0) {
		fputs("smis-encrypt: failed: ", stderr);
		smis_api_print_safe(stderr, smis_api_json_str(o, "error") ? smis_api_json_str(o, "error") : "?",
				    false);
		fputc('\n', stderr);
		rc = SMIS_EXIT_FAILED;
	} else {
		rc = SMIS_EXIT_OK;
	}
out:
	json_object_put(o);
	smis_api_answer_clear(&a);
	return rc;
}

int main(int argc, char **argv)
{
	struct options op = { .api = SMIS_API_OPTIONS_INIT };
	char *key = NULL, *keys = NULL, *plaintext = NULL, *encrypted = NULL, *message_id = NULL;
	char *body = NULL;
	bool curl_ready = false;
	json_object *ko = NULL;
	int rc, r;

	rc = parse_args(argc, argv, &op);
	if (rc != 0) {
		rc = rc < 0 ? SMIS_EXIT_OK : rc;
		goto out;
	}
	rc = SMIS_EXIT_USAGE;
	key = smis_api_key("smis-encrypt", &op.api);
	if (!key)
		goto out;
	rc = build_plaintext(&op, &plaintext);
	if (rc != SMIS_EXIT_OK)
		goto out;
	rc = SMIS_EXIT_ERROR;
	if (smis_api_global_init("smis-encrypt") != 0)
		goto out;
	curl_ready = true;

	keys = fetch_keys(&op, key, &rc);
	if (!keys)
		goto out;
	r = smis_passthrough_seal(keys, plaintext, &encrypted, &message_id);
	if (r == -ENODEV) {
		ko = json_tokener_parse(keys);
		fputs("smis-encrypt: the citizen has no app device to encrypt to (reachability ", stderr);
		smis_api_print_safe(stderr, smis_api_json_str(ko, "reachability") ?
					    smis_api_json_str(ko, "reachability") : "?", false);
		fputs("): nothing sent\n", stderr);
		rc = SMIS_EXIT_FAILED;
		goto out;
	}
	if (r < 0) {
		fprintf(stderr, "smis-encrypt: cannot encrypt: %s\n",
			r == -E2BIG ? "too many devices or too large a message" :
			r == -EINVAL ? "unexpected keys answer" :
				       strerror(-r));
		rc = SMIS_EXIT_ERROR;
		goto out;
	}
	body = send_body(&op, message_id, encrypted);
	if (!body) {
		fprintf(stderr, "smis-encrypt: out of memory\n");
		rc = SMIS_EXIT_ERROR;
		goto out;
	}
	if (op.dry_run) {
		printf("%s\n", body);
		rc = SMIS_EXIT_OK;
		goto out;
	}
	rc = send_message(&op, key, body);
out:
	if (plaintext)
		OPENSSL_cleanse(plaintext, strlen(plaintext));
	free(plaintext);
	smis_api_key_free(key);
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
		smis_api_global_cleanup();
	return rc;
}
