/*
 * apiclient.h - what SMIS's command-line tools (smisctl, smis-encrypt) share
 * to talk to the public HTTP API (docs/openapi.yaml): the exit codes, the
 * API options (--url, --key, --key-file, --timeout, --idempotency-key), the
 * API key, one libcurl request and its answer, and RFC 9457 problems on
 * standard error.
 *
 * A noinst convenience library (tools/common/libsmisapiclient.la) for tools
 * only, never the daemon or plugins: its functions print their own error
 * messages to stderr, prefixed with the program name the caller gives
 * ("smisctl: ..."), so a caller only maps a failure to its exit code.
 *
 * Thread context: single-threaded command-line programs. Call
 * smis_api_global_init() once before the first request.
 */
#ifndef SMIS_TOOLS_APICLIENT_H
#define SMIS_TOOLS_APICLIENT_H

#include <getopt.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include <curl/curl.h>
#include <json-c/json.h>

/* Exit codes, the same for every tool and command (smisctl(1),
 * smis-encrypt(1)). */
enum smis_api_exit {
	SMIS_EXIT_OK = 0,     /* sent, found, valid... */
	SMIS_EXIT_FAILED = 1, /* a negative result: the message failed... */
	SMIS_EXIT_USAGE = 2,
	SMIS_EXIT_ERROR = 3,  /* HTTP or API problem, transport, system */
};

#define SMIS_API_DEFAULT_TIMEOUT_S 60L
/* An answer bigger than this is not SMIS talking. */
#define SMIS_API_ANSWER_MAX (4u << 20)
/* Longest --idempotency-key, as smisd takes. */
#define SMIS_API_IDEM_MAX 128

/* ------------------------------------------------------------------ */
/* Options                                                              */
/* ------------------------------------------------------------------ */

/* getopt_long values of the shared options without a short form; above
 * the 256-based values the tools give their own long-only options. */
#define SMIS_API_OPT_TIMEOUT 0x1000
#define SMIS_API_OPT_HTML 0x1001
#define SMIS_API_OPT_SMS_TEXT 0x1002

/* The options of every API command, to put into a tool's getopt_long table
 * and short option string. */
#define SMIS_API_SHORT_OPTIONS "u:k:K:"
#define SMIS_API_LONG_OPTIONS                                                  \
	{ "url", required_argument, NULL, 'u' },                               \
	{ "key", required_argument, NULL, 'k' },                               \
	{ "key-file", required_argument, NULL, 'K' },                          \
	{ "timeout", required_argument, NULL, SMIS_API_OPT_TIMEOUT }

/* And those of the commands that send a message (POST /v1/messages), so
 * that both tools take the same ones. The tool handles the content
 * options itself (-l, -T, -b, --sms-text): one language or several. */
#define SMIS_API_SHORT_OPTIONS_SEND "t:l:T:b:s:r:i:"
#define SMIS_API_LONG_OPTIONS_SEND                                             \
	{ "to", required_argument, NULL, 't' },                                \
	{ "lang", required_argument, NULL, 'l' },                              \
	{ "title", required_argument, NULL, 'T' },                             \
	{ "body", required_argument, NULL, 'b' },                              \
	{ "sms-text", required_argument, NULL, SMIS_API_OPT_SMS_TEXT },        \
	{ "html", no_argument, NULL, SMIS_API_OPT_HTML },                      \
	{ "strategy", required_argument, NULL, 's' },                          \
	{ "reference", required_argument, NULL, 'r' },                         \
	{ "idempotency-key", required_argument, NULL, 'i' }

/* What the shared options say. The strings are borrowed from argv. */
struct smis_api_options {
	const char *url;       /* --url, the API base URL */
	const char *key;       /* --key */
	const char *key_file;  /* --key-file */
	long timeout_s;        /* --timeout, per request */
	/* Sending commands only: */
	const char *to;        /* --to, the recipient as the user wrote it */
	const char *strategy;  /* --strategy, or NULL */
	const char *reference; /* --reference, or NULL */
	const char *idem;      /* --idempotency-key, or NULL */
	bool html;             /* --html */
};

#define SMIS_API_OPTIONS_INIT { .timeout_s = SMIS_API_DEFAULT_TIMEOUT_S }

/*
 * Take option `c` (as getopt_long returned it, with `arg` its optarg), one
 * the caller does not handle itself. Returns true when it is one of the
 * shared options that o holds, now stored (arg is borrowed: o keeps the
 * pointer). Returns false after printing why not, a usage error: a
 * --timeout value out of 1-3600 ("<who>: --timeout must be 1-3600
 * seconds"; who names the command, e.g. "smisctl send"), or an option that
 * is not one of them (getopt_long has named it: usage(stderr) follows).
 */
bool smis_api_option(struct smis_api_options *o, int c, const char *arg, const char *who,
		     void (*usage)(FILE *));

/*
 * What smisd would refuse by syntax alone in the options of a send, found
 * before any request (a usage error): an --idempotency-key that is not
 * 1-SMIS_API_IDEM_MAX of [A-Za-z0-9-_.:]; a --to, --strategy or
 * --reference that is not UTF-8, holds a control character or is longer
 * than smisd takes (docs/openapi.yaml), an empty --to, a --reference of
 * other characters than [A-Za-z0-9._:/-], a --strategy that no strategy
 * can have as its name (smis_api_check_name). False after printing why,
 * "<who>: --reference ..." (who names the command, e.g. "smisctl send").
 */
bool smis_api_check_send(const struct smis_api_options *o, const char *who);

/* A channel's or strategy's name is 1-SMIS_API_NAME_MAX characters of
 * [a-z0-9_-]: smisd refuses any other in its configuration
 * (valid_instance_name, daemon/generation.c), so a request naming another
 * could only be answered 422 (unknown_strategy, unknown_channel). True for
 * NULL (absent: smisd's default); false after printing "<who>: <option>
 * must name a <what>: ...". */
#define SMIS_API_NAME_MAX 48
bool smis_api_check_name(const char *who, const char *option, const char *what, const char *name);

/* Whether lang is one of the languages smisd takes: nl, fr, de, en. */
bool smis_api_lang_known(const char *lang);

/*
 * The same for one language of a message: a lang smisd does not know, a
 * title, body or SMS text that is not UTF-8, holds a control character
 * (any in a title; in a body or an SMS text any but tab, newline and
 * carriage return), is longer than smisd takes, or an empty title or body.
 * sealed: the body is encrypted by the tool, smisd never sees it: it must
 * only be UTF-8 (JSON, for the plaintext sealed). sms_text may be NULL
 * (absent). False after printing why, "<who>: the fr title is not UTF-8".
 */
bool smis_api_check_content(const char *who, const char *lang, const char *title, const char *body,
			    const char *sms_text, bool sealed);

/* ------------------------------------------------------------------ */
/* The API key                                                          */
/* ------------------------------------------------------------------ */

/*
 * The API key or gateway token: o->key, else the first line of
 * o->key_file, else $SMIS_API_KEY. Returns it (caller frees with
 * smis_api_key_free), or NULL after printing why there is none or smisd
 * could never accept it (a usage error: smis_api_key_refusal with token,
 * "<prog>: the API key is empty").
 */
char *smis_api_key(const char *prog, const struct smis_api_options *o);

/* Wipe and free a key; NULL is fine. */
void smis_api_key_free(char *key);

/*
 * Why smisd could never accept `key` as an API key or, when `token`, as a
 * gateway token either, or NULL when it could. smisd (daemon/auth.c) takes
 * what follows "Bearer " and the spaces after it, any bytes the header
 * brings (UTF-8 or not, tabs, spaces) but the spaces and tabs that end
 * it, which are not part of a header's value (RFC 9110 5.5), and refuses a
 * value with any other control character: an API key of
 * 1-SMISD_API_KEY_MAX bytes, or a JWT's compact form
 * (smisd_jwt_looks_like) of up to SMISD_JWT_MAX_LEN. So a key must not be
 * empty, start with a space or end with a space or tab (smisd would read
 * another key), or be longer; nor hold CR or LF,
 * which would end the header line (a sender must not send a bare CR, and
 * CR LF would smuggle in a header of the key's making), nor another
 * control character but a tab. The reason completes "the API key ...".
 */
const char *smis_api_key_refusal(const char *key, bool token);

/* The first line of f, without its CR/LF, as a new string (caller frees
 * with free(), or smis_api_key_free for a secret); NULL at end of file or
 * out of memory. A line longer than SMISD_JWT_MAX_LEN + 2 is cut there.
 * f is borrowed: its position moves past what was read. */
char *smis_api_read_line(FILE *f);

/* ------------------------------------------------------------------ */
/* Requests                                                             */
/* ------------------------------------------------------------------ */

/* How problems and server text are printed: the tools differ, and each
 * keeps its documented output. */
enum smis_api_flags {
	/* Server text: bytes >= 0x80 (UTF-8) are printed as they are;
	 * without this flag they become '?' like control characters. */
	SMIS_API_UTF8 = 1u << 0,
	/* Problem lines end with " (retry after N s)" when the answer had a
	 * Retry-After header. */
	SMIS_API_SHOW_RETRY_AFTER = 1u << 1,
};

/* Who asks what of whom. All strings borrowed; the struct is the caller's. */
struct smis_api_client {
	const char *prog; /* "smisctl": prefixes messages, names the User-Agent */
	unsigned flags;   /* enum smis_api_flags */
	const char *url;  /* API base URL; trailing '/' ignored */
	const char *key;  /* sent as "Authorization: Bearer <key>" */
	long timeout_s;   /* whole request; connecting at most 10 s of it */
};

/* One HTTP answer. */
struct smis_api_answer {
	long status;                /* HTTP status */
	char *body;                 /* NUL-terminated, NULL when empty; owned */
	size_t len;
	bool too_big;               /* over SMIS_API_ANSWER_MAX: request failed */
	bool replayed;              /* Idempotent-Replayed: true */
	char retry_after[32];       /* Retry-After as sent, "" when absent */
	char error[CURL_ERROR_SIZE];
};

/* Free what an answer holds and zero it; a zeroed answer is fine. */
void smis_api_answer_clear(struct smis_api_answer *a);

/* curl_global_init, once, while single-threaded. Returns 0, or -1 after
 * printing why. */
int smis_api_global_init(const char *prog);
void smis_api_global_cleanup(void);

/*
 * Perform `method` on cl->url + path (+ "/" + id when id is not NULL), with
 * the key, Accept JSON or problem+json, and, when body is not NULL, body as
 * application/json (otherwise no body). idem, when not NULL, is sent as
 * Idempotency-Key. http and https only; redirects are not followed.
 *
 * Returns 0 when an HTTP answer arrived, whatever its status (the caller
 * owns *a: smis_api_answer_clear), -1 after printing
 * "<prog>: <method> <url>: <reason>" when none did (a is then cleared).
 * *a is overwritten, not freed, first. Blocks up to cl->timeout_s.
 */
int smis_api_request(const struct smis_api_client *cl, const char *method, const char *path,
		     const char *id, const char *idem, const char *body, struct smis_api_answer *a);

/* The answer body parsed as JSON (caller frees with json_object_put), or
 * NULL when empty or not JSON. */
json_object *smis_api_answer_json(const struct smis_api_answer *a);

/* Print the answer on stdout: o (a's parsed body, borrowed) indented, C1
 * controls \u-escaped as well and bytes that are no UTF-8 as U+FFFD, when
 * not NULL, else the body when there is one, its control characters shown
 * as '?' but for line ends; then flush. */
void smis_api_print_answer(const struct smis_api_answer *a, json_object *o);

/*
 * Name a failed answer on stderr:
 *   "<prog>: [<what>: ]HTTP <status>[ <code>][: <detail>][ (retry after N s)]"
 * with code and detail from the problem+json body. o is that body parsed
 * (borrowed) when the caller has it, else NULL and it is parsed here. what
 * (e.g. "POST /v1/messages") may be NULL.
 */
void smis_api_report_problem(const struct smis_api_client *cl, const char *what,
			     const struct smis_api_answer *a, json_object *o);

/* ------------------------------------------------------------------ */
/* Small helpers                                                        */
/* ------------------------------------------------------------------ */

/* o[key] when o is an object and that member a string, else NULL.
 * Borrowed from o. */
const char *smis_api_json_str(json_object *o, const char *key);

/* o as compact JSON, '/' not escaped: what the tools send. Borrowed from
 * o, valid until o changes or is freed; NULL when out of memory. */
const char *smis_api_json_text(json_object *o);

/* The same text, a copy the caller frees; NULL when out of memory. */
char *smis_api_json_dup(json_object *o);

/*
 * Add member key = v to the object o, taking v over (it is freed when it
 * cannot be added). False when v is NULL, a json-c allocation that failed,
 * or json-c could not add it: out of memory either way. A tool builds a
 * request whole with these, or fails (SMIS_EXIT_ERROR): never sends one
 * with a member missing, which smisd would take for an option not given.
 */
bool smis_api_json_add(json_object *o, const char *key, json_object *v);

/* smis_api_json_add of a new JSON string s. */
bool smis_api_json_add_string(json_object *o, const char *key, const char *s);

/* Print s (NULL prints nothing) so that text from a server or a plugin
 * cannot drive the terminal: printable ASCII as is, and when utf8 the
 * characters beyond ASCII but the C1 controls (smisd_text_shown, utf8.h),
 * everything else as '?'. */
void smis_api_print_safe(FILE *f, const char *s, bool utf8);

/* Parse s as a whole decimal number in [min, max]; false (out untouched)
 * otherwise. */
bool smis_api_parse_long(const char *s, long min, long max, long *out);

#endif /* SMIS_TOOLS_APICLIENT_H */
