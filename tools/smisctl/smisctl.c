/*
 * smisctl.c - the command line of SMIS operators and integrators: send a
 * message and look it up through the public API, make API keys and secrets
 * for the configuration, validate a configuration, list plugins and reload a
 * running smisd.
 *
 * It knows nothing of the daemon's internals, only its public surface: the
 * HTTP API (docs/openapi.yaml), `smisd --check-config`, the plugin
 * descriptor of <smis/smis-plugin.h>, the configuration file and the pid
 * file. So it can run from another host, a CI job or an install tree.
 *
 * The HTTP client (options, API key, requests, problems) is the one it
 * shares with smis-encrypt, tools/common/apiclient.h.
 *
 * Exit codes, the same for every command (smisctl(1), SMIS_EXIT_*):
 *   0 ok, 1 failed / negative result, 2 usage, 3 error.
 */
#include "config.h"

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <json-c/json.h>
#include <libconfig.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include <smis/smis-plugin.h>

#include "apiclient.h"
#include "config_includes.h"
#include "utf8.h"

#ifndef SMIS_SBINDIR
#define SMIS_SBINDIR "/usr/local/sbin"
#endif
#ifndef SMIS_PLUGINDIR
#define SMIS_PLUGINDIR "/usr/local/lib/smis/plugins"
#endif
#ifndef SMIS_SYSCONFDIR
#define SMIS_SYSCONFDIR "/usr/local/etc"
#endif

#define DEFAULT_CONFIG SMIS_SYSCONFDIR "/smis/smisd.conf"
#define DEFAULT_PIDFILE "/run/smis/smisd.pid"

/* ------------------------------------------------------------------ */
/* Small helpers                                                        */
/* ------------------------------------------------------------------ */

static void hex_encode(const unsigned char *in, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[in[i] >> 4];
		out[2 * i + 1] = digits[in[i] & 15];
	}
	out[2 * n] = '\0';
}

/* RFC 4648 section 5 without padding: keys then need no quoting anywhere. */
static void b64url_encode(const unsigned char *in, size_t n, char *out)
{
	static const char alphabet[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	size_t o = 0, i = 0;

	for (; i + 2 < n; i += 3) {
		unsigned v = (unsigned)in[i] << 16 | (unsigned)in[i + 1] << 8 | in[i + 2];
		out[o++] = alphabet[v >> 18 & 63];
		out[o++] = alphabet[v >> 12 & 63];
		out[o++] = alphabet[v >> 6 & 63];
		out[o++] = alphabet[v & 63];
	}
	if (n - i == 1) {
		unsigned v = (unsigned)in[i] << 16;
		out[o++] = alphabet[v >> 18 & 63];
		out[o++] = alphabet[v >> 12 & 63];
	} else if (n - i == 2) {
		unsigned v = (unsigned)in[i] << 16 | (unsigned)in[i + 1] << 8;
		out[o++] = alphabet[v >> 18 & 63];
		out[o++] = alphabet[v >> 12 & 63];
		out[o++] = alphabet[v >> 6 & 63];
	}
	out[o] = '\0';
}

/* "sha256:<hex>", what an institution's api_keys lists. */
static void key_hash(const char *key, char out[7 + 2 * SHA256_DIGEST_LENGTH + 1])
{
	unsigned char d[SHA256_DIGEST_LENGTH];

	SHA256((const unsigned char *)key, strlen(key), d);
	memcpy(out, "sha256:", 7);
	hex_encode(d, sizeof(d), out + 7);
	OPENSSL_cleanse(d, sizeof(d));
}

/*
 * printf(fmt) on f as smisd_text_shown shows it (control characters and
 * stray bytes as '?'), keeping only a final newline: the names a
 * configuration, a plugin folder or a plugin gives reach the operator's
 * terminal, where an ESC would drive it and a newline forge a line.
 */
static void __attribute__((format(printf, 2, 3))) print_shown(FILE *f, const char *fmt, ...)
{
	char text[2 * PATH_MAX];
	size_t len;
	bool nl;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	len = strlen(text);
	nl = len > 0 && text[len - 1] == '\n';
	if (nl)
		text[len - 1] = '\0';
	smisd_text_shown(text, text, sizeof(text));
	fprintf(f, "%s%s", text, nl ? "\n" : "");
}

/* A configuration problem, "file:line: ...", on stderr. It quotes file
 * names, the configuration's and the ones it @includes. */
static void print_problem(void *arg, const char *message)
{
	(void)arg;
	print_shown(stderr, "%s\n", message);
}

/* The folder of `path` + "/" + `name`, freshly allocated. */
static char *sibling_path(const char *path, const char *name)
{
	const char *slash = strrchr(path, '/');
	size_t dirlen = slash ? (size_t)(slash - path) : 1;
	const char *dir = slash ? path : ".";
	size_t n = dirlen + 1 + strlen(name) + 1;
	char *out = malloc(n);

	if (out)
		snprintf(out, n, "%.*s/%s", (int)dirlen, dir, name);
	return out;
}

/* ------------------------------------------------------------------ */
/* Finding and running smisd                                            */
/* ------------------------------------------------------------------ */

/* --smisd, else next to this program (build tree, or a relocated tree
 * where bin/ and sbin/ are siblings), else the configured sbindir. */
static char *find_smisd(const char *given)
{
	char self[PATH_MAX];
	char *cand = NULL;
	ssize_t n;

	if (given)
		return strdup(given);
	n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n > 0) {
		self[n] = '\0';
		cand = sibling_path(self, "smisd");
		if (cand && access(cand, X_OK) == 0)
			return cand;
		free(cand);
		cand = sibling_path(self, "../sbin/smisd");
		if (cand && access(cand, X_OK) == 0)
			return cand;
		free(cand);
	}
	cand = strdup(SMIS_SBINDIR "/smisd");
	if (cand && access(cand, X_OK) != 0) {
		free(cand);
		cand = NULL;
	}
	return cand;
}

/* Run `smisd --check-config -c conf`, its output going where ours goes.
 * Returns its exit code, or SMIS_EXIT_ERROR when it could not run. */
static int run_check(const char *smisd_opt, const char *conf)
{
	char *smisd = find_smisd(smisd_opt);
	int rc = SMIS_EXIT_ERROR, status;
	pid_t pid;

	if (!smisd) {
		fprintf(stderr, "smisctl: cannot find smisd (looked beside smisctl and in %s); "
				"use --smisd PATH\n", SMIS_SBINDIR);
		goto out;
	}
	fflush(stdout);
	fflush(stderr);
	pid = fork();
	if (pid < 0) {
		fprintf(stderr, "smisctl: fork: %s\n", strerror(errno));
		goto out_free;
	}
	if (pid == 0) {
		char *argv[] = { smisd, (char *)"--check-config", (char *)"-c", (char *)conf, NULL };
		execv(smisd, argv);
		fprintf(stderr, "smisctl: cannot run %s: %s\n", smisd, strerror(errno));
		_exit(127);
	}
	while (waitpid(pid, &status, 0) < 0) {
		if (errno != EINTR) {
			fprintf(stderr, "smisctl: waitpid: %s\n", strerror(errno));
			goto out_free;
		}
	}
	if (WIFEXITED(status) && WEXITSTATUS(status) != 127)
		rc = WEXITSTATUS(status);
	else if (WIFSIGNALED(status))
		fprintf(stderr, "smisctl: %s died of signal %d\n", smisd, WTERMSIG(status));
out_free:
	free(smisd);
out:
	return rc;
}

/* ------------------------------------------------------------------ */
/* The API                                                              */
/* ------------------------------------------------------------------ */

/*
 * send and status: perform `method` on /v1/messages[/id] and print the
 * answer, whatever its status: an RFC 9457 problem is useful output too.
 * Returns 0 for a success, 1 after naming the problem on stderr, -1 when no
 * answer arrived (said why). *a and *o (the parsed body, or NULL) are the
 * caller's either way.
 */
static int api_call(const struct smis_api_options *api, const char *key, const char *method,
		    const char *id, const char *body, struct smis_api_answer *a, json_object **o)
{
	/* Plugin authors and operators read any language: UTF-8 as is. */
	const struct smis_api_client cl = {
		.prog = "smisctl",
		.flags = SMIS_API_UTF8 | SMIS_API_SHOW_RETRY_AFTER,
		.url = api->url,
		.key = key,
		.timeout_s = api->timeout_s,
	};

	*o = NULL;
	if (smis_api_request(&cl, method, "/v1/messages", id, api->idem, body, a) != 0)
		return -1;
	*o = smis_api_answer_json(a);
	smis_api_print_answer(a, *o);
	/* 201 a new message, 200 a replay or a record; a record is JSON (a
	 * send without "status" is the caller's to name). */
	if ((a->status == 200 || (body && a->status == 201)) && (body || *o))
		return 0;
	smis_api_report_problem(&cl, NULL, a, *o);
	return 1;
}

/* ------------------------------------------------------------------ */
/* send                                                                 */
/* ------------------------------------------------------------------ */

static void usage_send(FILE *f)
{
	fputs("Usage: smisctl send --url URL --to NUMBER --title TITLE --body BODY [options]\n"
	      "Send one message through POST /v1/messages and print the JSON answer.\n"
	      "  -u, --url URL             SMIS base URL, e.g. http://127.0.0.1:8080\n"
	      "  -k, --key KEY             API key or gateway token (visible to other users:\n"
	      "                            prefer the next two)\n"
	      "  -K, --key-file FILE       read the API key from the first line of FILE\n"
	      "                            (default: the SMIS_API_KEY environment variable)\n"
	      "  -t, --to NUMBER           recipient: E.164 (+32470123456) or Belgian national form\n"
	      "  -T, --title TITLE         message title\n"
	      "  -b, --body BODY           message body (text, or HTML with --html)\n"
	      "  -l, --lang LANG           language of the text: nl (default), fr, de or en\n"
	      "      --html                the body is HTML (sanitised by smisd)\n"
	      "      --sms-text TEXT       explicit text for SMS channels\n"
	      "  -s, --strategy NAME       strategy (default: the institution's default)\n"
	      "  -r, --reference REF       your reference, returned in the answer\n"
	      "  -i, --idempotency-key K   a retry with the same key sends nothing twice\n"
	      "      --timeout SECONDS     give up after this long (default 60)\n"
	      "  -h, --help                this text\n"
	      "Exit: 0 status sent, 1 status failed, 2 usage, 3 HTTP or API error (problem code on stderr).\n",
	      f);
}

/* The body of POST /v1/messages; NULL when out of memory, never a body
 * with a member missing (smisd would send the message without its
 * reference, strategy or SMS text). */
static char *send_body(const struct smis_api_options *api, const char *lang, const char *title,
		       const char *body, const char *sms_text)
{
	json_object *o = json_object_new_object(), *content = NULL, *lc = NULL;
	char *out = NULL;
	bool ok;

	ok = o && smis_api_json_add_string(o, "recipient", api->to) &&
	     smis_api_json_add(o, "content", content = json_object_new_object()) &&
	     smis_api_json_add(content, lang, lc = json_object_new_object()) &&
	     smis_api_json_add_string(lc, "title", title) && smis_api_json_add_string(lc, "body", body) &&
	     (!api->html || smis_api_json_add_string(lc, "format", "html")) &&
	     (!sms_text || smis_api_json_add_string(lc, "sms_text", sms_text)) &&
	     (!api->strategy || smis_api_json_add_string(o, "strategy", api->strategy)) &&
	     (!api->reference || smis_api_json_add_string(o, "reference", api->reference));
	if (ok)
		out = smis_api_json_dup(o);
	json_object_put(o);
	return out;
}

static int cmd_send(int argc, char **argv)
{
	static const struct option opts[] = {
		SMIS_API_LONG_OPTIONS,
		SMIS_API_LONG_OPTIONS_SEND,
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct smis_api_options api = SMIS_API_OPTIONS_INIT;
	const char *title = NULL, *body = NULL, *lang = "nl", *sms_text = NULL;
	char *key = NULL, *json = NULL;
	struct smis_api_answer a;
	json_object *o = NULL;
	const char *status;
	int c, rc = SMIS_EXIT_USAGE;

	memset(&a, 0, sizeof(a));
	while ((c = getopt_long(argc, argv, SMIS_API_SHORT_OPTIONS SMIS_API_SHORT_OPTIONS_SEND "h", opts,
				NULL)) != -1) {
		switch (c) {
		case 'T': title = optarg; break;
		case 'b': body = optarg; break;
		case 'l': lang = optarg; break;
		case SMIS_API_OPT_SMS_TEXT: sms_text = optarg; break;
		case 'h':
			usage_send(stdout);
			rc = SMIS_EXIT_OK;
			goto out;
		default:
			if (!smis_api_option(&api, c, optarg, "smisctl send", usage_send))
				goto out;
			break;
		}
	}
	if (optind != argc || !api.url || !api.to || !title || !body) {
		fprintf(stderr, "smisctl send: --url, --to, --title and --body are required\n");
		usage_send(stderr);
		goto out;
	}
	/* What smisd would refuse is refused here, without a request. */
	if (!smis_api_check_send(&api, "smisctl send") ||
	    !smis_api_check_content("smisctl send", lang, title, body, sms_text, false))
		goto out;
	key = smis_api_key("smisctl", &api);
	if (!key)
		goto out;
	rc = SMIS_EXIT_ERROR;
	json = send_body(&api, lang, title, body, sms_text);
	if (!json) {
		fprintf(stderr, "smisctl: out of memory\n");
		goto out;
	}
	if (api_call(&api, key, "POST", NULL, json, &a, &o) != 0)
		goto out;
	status = smis_api_json_str(o, "status");
	if (!status) {
		fprintf(stderr, "smisctl: HTTP %ld without a JSON \"status\"\n", a.status);
		goto out;
	}
	if (a.replayed)
		fprintf(stderr, "smisctl: idempotent replay: the first answer to this key, nothing was sent again\n");
	rc = strcmp(status, "sent") == 0 ? SMIS_EXIT_OK : SMIS_EXIT_FAILED;
out:
	json_object_put(o);
	smis_api_answer_clear(&a);
	free(json);
	smis_api_key_free(key);
	return rc;
}

/* ------------------------------------------------------------------ */
/* status                                                               */
/* ------------------------------------------------------------------ */

static void usage_status(FILE *f)
{
	fputs("Usage: smisctl status --url URL [--key KEY | --key-file FILE] MESSAGE_ID\n"
	      "Print a message's status (GET /v1/messages/{id}) as JSON.\n"
	      "  -u, --url URL          SMIS base URL\n"
	      "  -k, --key KEY          API key or gateway token (default: $SMIS_API_KEY)\n"
	      "  -K, --key-file FILE    read the API key from the first line of FILE\n"
	      "      --timeout SECONDS  give up after this long (default 60)\n"
	      "  -h, --help             this text\n"
	      "An institution sees only its own messages: others answer 404.\n"
	      "Exit: 0 found, 2 usage, 3 HTTP or API error (404 included).\n",
	      f);
}

/* The form of every id smisd gives a message (smisd_new_id, daemon/job.c):
 * "msg_" and 26 characters of Crockford's base32 alphabet, upper case. Any
 * other string is no message of smisd's, and a round trip would only come
 * back 404; it goes into the request's path, too. */
#define MESSAGE_ID_PREFIX "msg_"
#define MESSAGE_ID_CHARS 26

static bool valid_message_id(const char *id)
{
	static const char crockford[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
	size_t n = strlen(MESSAGE_ID_PREFIX);

	return strncmp(id, MESSAGE_ID_PREFIX, n) == 0 && strlen(id + n) == MESSAGE_ID_CHARS &&
	       strspn(id + n, crockford) == MESSAGE_ID_CHARS;
}

static int cmd_status(int argc, char **argv)
{
	static const struct option opts[] = {
		SMIS_API_LONG_OPTIONS,
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct smis_api_options api = SMIS_API_OPTIONS_INIT;
	const char *id;
	char *key = NULL;
	struct smis_api_answer a;
	json_object *o = NULL;
	int c, rc = SMIS_EXIT_USAGE;

	memset(&a, 0, sizeof(a));
	while ((c = getopt_long(argc, argv, SMIS_API_SHORT_OPTIONS "h", opts, NULL)) != -1) {
		if (c == 'h') {
			usage_status(stdout);
			rc = SMIS_EXIT_OK;
			goto out;
		}
		if (!smis_api_option(&api, c, optarg, "smisctl status", usage_status))
			goto out;
	}
	if (!api.url || optind + 1 != argc) {
		usage_status(stderr);
		goto out;
	}
	id = argv[optind];
	if (!valid_message_id(id)) {
		fputs("smisctl status: '", stderr);
		smis_api_print_safe(stderr, id, true);
		fprintf(stderr, "' is not a message id (" MESSAGE_ID_PREFIX " and %d characters of 0-9 and A-Z but I, L, O and U)\n",
			MESSAGE_ID_CHARS);
		goto out;
	}
	key = smis_api_key("smisctl", &api);
	if (!key)
		goto out;
	rc = SMIS_EXIT_ERROR;
	if (api_call(&api, key, "GET", id, NULL, &a, &o) == 0 && a.status == 200 && o)
		rc = SMIS_EXIT_OK;
out:
	json_object_put(o);
	smis_api_answer_clear(&a);
	smis_api_key_free(key);
	return rc;
}

/* ------------------------------------------------------------------ */
/* gen-key, hash-key, gen-secret                                        */
/* ------------------------------------------------------------------ */

static int only_help(int argc, char **argv, void (*usage)(FILE *))
{
	static const struct option opts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		if (c == 'h') {
			usage(stdout);
			return SMIS_EXIT_OK;
		}
		usage(stderr);
		return SMIS_EXIT_USAGE;
	}
	return -1;
}

static void usage_gen_key(FILE *f)
{
	fputs("Usage: smisctl gen-key\n"
	      "Print a new random API key (32 bytes from the OpenSSL CSPRNG, base64url) on the\n"
	      "first line and, on the second, the configuration line with its SHA-256 for the\n"
	      "institution's block. Give the key to the institution; smisd keeps only the hash.\n",
	      f);
}

static int cmd_gen_key(int argc, char **argv)
{
	unsigned char raw[32];
	char key[64];
	char hash[7 + 2 * SHA256_DIGEST_LENGTH + 1];
	int rc = only_help(argc, argv, usage_gen_key);

	if (rc >= 0)
		return rc;
	if (optind != argc) {
		usage_gen_key(stderr);
		return SMIS_EXIT_USAGE;
	}
	/* A key that starts with '-' (1 in 64) reads as an option to most
	 * command lines, `smisctl hash-key KEY` included: draw again. It
	 * costs the key 0.02 of its 256 bits. */
	do {
		if (RAND_bytes(raw, sizeof(raw)) != 1) {
			fprintf(stderr, "smisctl: the random generator failed\n");
			return SMIS_EXIT_ERROR;
		}
		b64url_encode(raw, sizeof(raw), key);
	} while (key[0] == '-');
	key_hash(key, hash);
	printf("%s\napi_keys = [ \"%s\" ];\n", key, hash);
	OPENSSL_cleanse(raw, sizeof(raw));
	OPENSSL_cleanse(key, sizeof(key));
	return fflush(stdout) == 0 ? SMIS_EXIT_OK : SMIS_EXIT_ERROR;
}

static void usage_hash_key(FILE *f)
{
	fputs("Usage: smisctl hash-key [KEY]\n"
	      "Print \"sha256:<hex>\", the form of KEY that goes into an institution's api_keys.\n"
	      "Without KEY, the key is read from the first line of standard input (better: a key\n"
	      "on the command line is visible to other users and kept in shell history).\n"
	      "A KEY that starts with '-' goes after \"--\" (gen-key never makes one).\n",
	      f);
}

static int cmd_hash_key(int argc, char **argv)
{
	char hash[7 + 2 * SHA256_DIGEST_LENGTH + 1];
	const char *why;
	char *key = NULL;
	int rc = only_help(argc, argv, usage_hash_key);

	if (rc >= 0)
		return rc;
	rc = SMIS_EXIT_USAGE;
	if (optind + 1 < argc) {
		usage_hash_key(stderr);
		goto out;
	}
	key = optind < argc ? strdup(argv[optind]) : smis_api_read_line(stdin);
	if (!key) {
		fprintf(stderr, "smisctl hash-key: no key given\n");
		goto out;
	}
	/* An API key: smisd never hashes a gateway token. */
	if ((why = smis_api_key_refusal(key, false))) {
		fprintf(stderr, "smisctl hash-key: the key %s\n", why);
		goto out;
	}
	key_hash(key, hash);
	printf("%s\n", hash);
	rc = fflush(stdout) == 0 ? SMIS_EXIT_OK : SMIS_EXIT_ERROR;
out:
	smis_api_key_free(key);
	return rc;
}

static void usage_gen_secret(FILE *f)
{
	fputs("Usage: smisctl gen-secret\n"
	      "Print 32 random bytes as 64 hex digits, e.g. for store.phone_hash_key.\n",
	      f);
}

static int cmd_gen_secret(int argc, char **argv)
{
	unsigned char raw[32];
	char hex[2 * sizeof(raw) + 1];
	int rc = only_help(argc, argv, usage_gen_secret);

	if (rc >= 0)
		return rc;
	if (optind != argc) {
		usage_gen_secret(stderr);
		return SMIS_EXIT_USAGE;
	}
	if (RAND_bytes(raw, sizeof(raw)) != 1) {
		fprintf(stderr, "smisctl: the random generator failed\n");
		return SMIS_EXIT_ERROR;
	}
	hex_encode(raw, sizeof(raw), hex);
	printf("%s\n", hex);
	OPENSSL_cleanse(raw, sizeof(raw));
	OPENSSL_cleanse(hex, sizeof(hex));
	return fflush(stdout) == 0 ? SMIS_EXIT_OK : SMIS_EXIT_ERROR;
}

/* ------------------------------------------------------------------ */
/* check-config                                                         */
/* ------------------------------------------------------------------ */

static void usage_check_config(FILE *f)
{
	fputs("Usage: smisctl check-config [-c FILE] [--smisd PATH]\n"
	      "Validate a configuration, plugins included, with `smisd --check-config`;\n"
	      "errors are printed as FILE:LINE: message.\n"
	      "  -c, --config FILE   configuration (default " DEFAULT_CONFIG ")\n"
	      "      --smisd PATH    the smisd to use (default: beside smisctl, then " SMIS_SBINDIR ")\n"
	      "  -h, --help          this text\n"
	      "Exit: 0 valid, 1 invalid, 2 usage, 3 error (smisd not found, ...).\n",
	      f);
}

static int cmd_check_config(int argc, char **argv)
{
	enum { OPT_SMISD = 256 };
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "smisd", required_argument, NULL, OPT_SMISD },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *conf = DEFAULT_CONFIG, *smisd = NULL;
	int c;

	while ((c = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
		switch (c) {
		case 'c': conf = optarg; break;
		case OPT_SMISD: smisd = optarg; break;
		case 'h':
			usage_check_config(stdout);
			return SMIS_EXIT_OK;
		default:
			usage_check_config(stderr);
			return SMIS_EXIT_USAGE;
		}
	}
	if (optind != argc) {
		usage_check_config(stderr);
		return SMIS_EXIT_USAGE;
	}
	return run_check(smisd, conf);
}

/* ------------------------------------------------------------------ */
/* plugins                                                              */
/* ------------------------------------------------------------------ */

/* A plugin named in the configuration, and how it is used there. */
struct use {
	char *plugin;
	enum smis_plugin_kind kind;
	char *where; /* "channel 'govapp'" */
	bool found;
};

struct uses {
	struct use *v;
	size_t n;
};

static int uses_add(struct uses *u, const char *plugin, enum smis_plugin_kind kind,
		    const char *where)
{
	struct use *grown = realloc(u->v, (u->n + 1) * sizeof(*grown));

	if (!grown)
		return -ENOMEM;
	u->v = grown;
	u->v[u->n].plugin = strdup(plugin);
	u->v[u->n].where = strdup(where);
	u->v[u->n].kind = kind;
	u->v[u->n].found = false;
	if (!u->v[u->n].plugin || !u->v[u->n].where) {
		free(u->v[u->n].plugin);
		free(u->v[u->n].where);
		return -ENOMEM;
	}
	u->n++;
	return 0;
}

static void uses_clear(struct uses *u)
{
	for (size_t i = 0; i < u->n; i++) {
		free(u->v[i].plugin);
		free(u->v[i].where);
	}
	free(u->v);
	u->v = NULL;
	u->n = 0;
}

static const char *kind_name(enum smis_plugin_kind k)
{
	return k == SMIS_PLUGIN_CHANNEL ? "channel" : k == SMIS_PLUGIN_STRATEGY ? "strategy" : "unknown";
}

static const char *lookup_str(const config_setting_t *grp, const char *key)
{
	const char *v = NULL;

	if (grp && config_setting_is_group(grp) && config_setting_lookup_string(grp, key, &v))
		return v;
	return NULL;
}

/* Print the channels and strategies of the configuration and note which
 * plugins they name. Returns the number of problems found. */
static int list_config(config_t *cfg, struct uses *u)
{
	config_setting_t *list = config_lookup(cfg, "channels");
	char where[160];
	int problems = 0;
	int n = list ? config_setting_length(list) : 0;

	printf("channel instances (%d):\n", n);
	for (int i = 0; i < n; i++) {
		config_setting_t *blk = config_setting_get_elem(list, (unsigned)i);
		const char *name = lookup_str(blk, "name"), *plugin = lookup_str(blk, "plugin");

		print_shown(stdout, "  %-24s plugin %s\n", name ? name : "?", plugin ? plugin : "(none)");
		snprintf(where, sizeof(where), "channel '%s'", name ? name : "?");
		if (!plugin) {
			print_shown(stderr, "smisctl: %s:%u: %s has no plugin\n",
				    config_setting_source_file(blk) ? config_setting_source_file(blk) : "?",
				    config_setting_source_line(blk), where);
			problems++;
		} else if (uses_add(u, plugin, SMIS_PLUGIN_CHANNEL, where) != 0) {
			problems++;
		}
	}
	list = config_lookup(cfg, "strategies");
	n = list ? config_setting_length(list) : 0;
	printf("strategies (%d):\n", n);
	for (int i = 0; i < n; i++) {
		config_setting_t *blk = config_setting_get_elem(list, (unsigned)i);
		config_setting_t *steps = blk ? config_setting_get_member(blk, "steps") : NULL;
		const char *name = lookup_str(blk, "name");
		int ns = steps ? config_setting_length(steps) : 0;

		print_shown(stdout, "  %-24s", name ? name : "?");
		for (int j = 0; j < ns; j++) {
			config_setting_t *sb = config_setting_get_elem(steps, (unsigned)j);
			const char *plugin = lookup_str(sb, "plugin");

			print_shown(stdout, "%s%s", j ? " -> " : " steps ", plugin ? plugin : "?");
			snprintf(where, sizeof(where), "step %d of strategy '%s'", j + 1, name ? name : "?");
			if (plugin && uses_add(u, plugin, SMIS_PLUGIN_STRATEGY, where) != 0)
				problems++;
		}
		printf("%s\n", ns ? "" : " (no steps)");
	}
	return problems;
}

#define DESC_MIN (offsetof(struct smis_plugin_descriptor, strategy) + sizeof(void *))

/* Mirror of the daemon's acceptance rules, from the public ABI alone. */
static const char *descriptor_problem(const struct smis_plugin_descriptor *d, const char *file_name)
{
	if (d->abi_version != SMIS_PLUGIN_ABI_VERSION)
		return "ABI version differs from this SMIS";
	if (d->size < DESC_MIN)
		return "descriptor too small";
	if (!d->name || strcmp(d->name, file_name) != 0)
		return "descriptor name differs from the file name";
	if (d->kind == SMIS_PLUGIN_CHANNEL) {
		const struct smis_channel_ops *o = d->channel;
		if (!o || o->size < offsetof(struct smis_channel_ops, resume) + sizeof(void *))
			return "channel ops missing or too small";
		if (!o->create || !o->destroy || !o->start || !o->resume)
			return "a mandatory channel op is missing";
	} else if (d->kind == SMIS_PLUGIN_STRATEGY) {
		const struct smis_strategy_ops *o = d->strategy;
		if (!o || o->size < offsetof(struct smis_strategy_ops, decide) + sizeof(void *))
			return "strategy ops missing or too small";
		if (!o->create || !o->destroy || !o->decide)
			return "a mandatory strategy op is missing";
	} else {
		return "unknown plugin kind";
	}
	return NULL;
}

static void print_caps(unsigned caps)
{
	static const struct {
		unsigned bit;
		const char *name;
	} names[] = {
		{ SMIS_CAP_LOOKUP, "lookup" }, { SMIS_CAP_SEND, "send" }, { SMIS_CAP_APP, "app" },
		{ SMIS_CAP_SMS, "sms" },       { SMIS_CAP_STATUS, "status" },
	};
	const char *sep = "";

	printf(" caps ");
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (caps & names[i].bit) {
			printf("%s%s", sep, names[i].name);
			sep = ",";
		}
	if (!*sep)
		printf("none");
}

static int so_filter(const struct dirent *e)
{
	size_t n = strlen(e->d_name);
	return n > 3 && e->d_name[0] != '.' && strcmp(e->d_name + n - 3, ".so") == 0;
}

/* Load and describe one plugin file. Returns the number of problems. */
static int describe_plugin(const char *dir, const char *file, struct uses *u)
{
	char path[PATH_MAX], name[256];
	const struct smis_plugin_descriptor *d;
	const char *problem = NULL;
	void *h;
	int problems = 0;

	snprintf(name, sizeof(name), "%.*s", (int)(strlen(file) - 3), file);
	if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, file) >= sizeof(path))
		return 1;
	print_shown(stdout, "  %-20s", file);
	/* RTLD_LOCAL as smisd does: plugins must not need each other's
	 * symbols, and a missing symbol shows here as it would at load. */
	h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (!h) {
		printf(" NOT LOADABLE: ");
		smis_api_print_safe(stdout, dlerror(), true);
		printf("\n");
		problems++;
		goto out_mark;
	}
	d = dlsym(h, SMIS_PLUGIN_SYMBOL);
	if (!d) {
		printf(" NOT A PLUGIN: no '%s' symbol\n", SMIS_PLUGIN_SYMBOL);
		problems++;
		goto out_close;
	}
	if (d->abi_version != SMIS_PLUGIN_ABI_VERSION) {
		/* The rest of the layout is unknown: read nothing more. */
		printf(" ABI %u, NOT LOADABLE: this SMIS speaks ABI %u\n", d->abi_version,
		       SMIS_PLUGIN_ABI_VERSION);
		problems++;
		goto out_close;
	}
	problem = descriptor_problem(d, name);
	printf(" %-8s ", kind_name(d->kind));
	if (d->size >= DESC_MIN) {
		smis_api_print_safe(stdout, d->name ? d->name : "(no name)", true);
		putchar(' ');
		smis_api_print_safe(stdout, d->version ? d->version : "(no version)", true);
		printf(" ABI %u", d->abi_version);
		if (d->kind == SMIS_PLUGIN_CHANNEL)
			print_caps(d->caps);
		printf("\n  %-20s ", "");
		smis_api_print_safe(stdout, d->description ? d->description : "(no description)", true);
	}
	printf("\n");
	if (problem) {
		printf("  %-20s NOT LOADABLE: %s\n", "", problem);
		problems++;
	}
	for (size_t i = 0; i < u->n; i++) {
		if (strcmp(u->v[i].plugin, name) != 0)
			continue;
		if (d->kind != u->v[i].kind) {
			print_shown(stderr, "smisctl: %s names '%s', a %s plugin where a %s plugin is needed\n",
				    u->v[i].where, name, kind_name(d->kind), kind_name(u->v[i].kind));
			problems++;
		}
	}
out_close:
	dlclose(h);
out_mark:
	for (size_t i = 0; i < u->n; i++)
		if (strcmp(u->v[i].plugin, name) == 0)
			u->v[i].found = true;
	return problems;
}

static int list_plugins(const char *dir, struct uses *u)
{
	struct dirent **ents = NULL;
	int n = scandir(dir, &ents, so_filter, alphasort);
	int problems = 0;

	if (n < 0) {
		print_shown(stderr, "smisctl: plugin_dir %s: %s\n", dir, strerror(errno));
		return 1;
	}
	print_shown(stdout, "plugins in %s (%d):\n", dir, n);
	for (int i = 0; i < n; i++) {
		problems += describe_plugin(dir, ents[i]->d_name, u);
		free(ents[i]);
	}
	free(ents);
	for (size_t i = 0; i < u->n; i++)
		if (!u->v[i].found) {
			print_shown(stderr, "smisctl: %s names plugin '%s': no %s.so in %s\n", u->v[i].where,
				    u->v[i].plugin, u->v[i].plugin, dir);
			problems++;
		}
	return problems;
}

static void usage_plugins(FILE *f)
{
	fputs("Usage: smisctl plugins [-c FILE] [--dir DIR]\n"
	      "List the channel instances and strategies of a configuration, then load every\n"
	      "<name>.so of its plugin_dir (dlopen, as smisd does) and print its descriptor:\n"
	      "kind, name, version, plugin ABI, capabilities and description.\n"
	      "  -c, --config FILE   configuration (default " DEFAULT_CONFIG ")\n"
	      "  -d, --dir DIR       plugin folder to list (default: the configuration's plugin_dir);\n"
	      "                      with --dir and no -c, the folder alone is listed\n"
	      "  -h, --help          this text\n"
	      "Loading a plugin runs its code: list only folders you trust.\n"
	      "Exit: 0 every plugin loads and every plugin the configuration names is there,\n"
	      "      1 otherwise, 2 usage, 3 error.\n",
	      f);
}

static int cmd_plugins(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "dir", required_argument, NULL, 'd' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *conf = NULL, *dir_opt = NULL, *pd;
	char *inc = NULL, *dir = NULL;
	struct uses u = { NULL, 0 };
	config_t cfg;
	int c, problems = 0, rc = SMIS_EXIT_USAGE;

	config_init(&cfg);
	while ((c = getopt_long(argc, argv, "c:d:h", opts, NULL)) != -1) {
		switch (c) {
		case 'c': conf = optarg; break;
		case 'd': dir_opt = optarg; break;
		case 'h':
			usage_plugins(stdout);
			rc = SMIS_EXIT_OK;
			goto out;
		default:
			usage_plugins(stderr);
			goto out;
		}
	}
	if (optind != argc) {
		usage_plugins(stderr);
		goto out;
	}
	rc = SMIS_EXIT_ERROR;
	if (!conf && !dir_opt)
		conf = DEFAULT_CONFIG;
	if (conf) {
		/* @include is relative to the configuration's folder, as in smisd. */
		inc = sibling_path(conf, ".");
		if (!inc)
			goto out_oom;
		config_set_include_dir(&cfg, inc);
		/* libconfig exit()s on an @include it cannot read (a folder). */
		if (smis_config_check_includes(conf, inc, print_problem, NULL) != 0) {
			rc = SMIS_EXIT_FAILED;
			goto out;
		}
		if (!config_read_file(&cfg, conf)) {
			if (config_error_type(&cfg) == CONFIG_ERR_FILE_IO) {
				fprintf(stderr, "smisctl: %s: cannot read configuration file\n", conf);
			} else {
				/* The file may be one the configuration @includes. */
				print_shown(stderr, "%s:%d: %s\n",
					    config_error_file(&cfg) ? config_error_file(&cfg) : conf,
					    config_error_line(&cfg), config_error_text(&cfg));
				rc = SMIS_EXIT_FAILED;
			}
			goto out;
		}
		printf("configuration: %s\n", conf);
		problems += list_config(&cfg, &u);
	}
	if (dir_opt) {
		dir = strdup(dir_opt);
	} else if (config_lookup_string(&cfg, "plugin_dir", &pd)) {
		/* Relative to the configuration file, as smisd resolves it. */
		dir = pd[0] == '/' ? strdup(pd) : sibling_path(conf, pd);
	} else {
		dir = strdup(SMIS_PLUGINDIR);
	}
	if (!dir)
		goto out_oom;
	problems += list_plugins(dir, &u);
	rc = problems ? SMIS_EXIT_FAILED : SMIS_EXIT_OK;
	goto out;
out_oom:
	fprintf(stderr, "smisctl: out of memory\n");
out:
	uses_clear(&u);
	config_destroy(&cfg);
	free(dir);
	free(inc);
	return rc;
}

/* ------------------------------------------------------------------ */
/* reload                                                               */
/* ------------------------------------------------------------------ */

static void usage_reload(FILE *f)
{
	fputs("Usage: smisctl reload [--pidfile FILE] [-c FILE [--smisd PATH]]\n"
	      "Ask a running smisd to reload its configuration (SIGHUP to the PID in the pid\n"
	      "file that `smisd --pidfile` writes). Under systemd, `systemctl reload smisd`.\n"
	      "  -p, --pidfile FILE  default " DEFAULT_PIDFILE "\n"
	      "  -c, --config FILE   validate FILE first (smisd --check-config) and do not signal\n"
	      "                      when it is invalid; smisd would refuse it and keep the old one\n"
	      "      --smisd PATH    the smisd used for the check\n"
	      "  -h, --help          this text\n"
	      "Exit: 0 signalled, 1 not signalled (no such process, invalid configuration...),\n"
	      "      2 usage, 3 error.\n",
	      f);
}

/* Is `pid` an smisd? Guards against a stale pid file whose PID now belongs
 * to another program. Unknown (no /proc access) counts as yes. */
static bool pid_is_smisd(long pid)
{
	char path[64], buf[4096];
	size_t n, i = 0;
	FILE *f;
	bool yes = false;

	snprintf(path, sizeof(path), "/proc/%ld/cmdline", pid);
	f = fopen(path, "r");
	if (!f)
		return true;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	/* argv[0], or a later argument when smisd runs under a wrapper such
	 * as valgrind. */
	while (i < n && !yes) {
		const char *arg = buf + i;
		const char *base = strrchr(arg, '/');
		base = base ? base + 1 : arg;
		yes = strcmp(base, "smisd") == 0 || strcmp(base, "lt-smisd") == 0;
		i += strlen(arg) + 1;
	}
	return yes;
}

static int cmd_reload(int argc, char **argv)
{
	enum { OPT_SMISD = 256 };
	static const struct option opts[] = {
		{ "pidfile", required_argument, NULL, 'p' },
		{ "config", required_argument, NULL, 'c' },
		{ "smisd", required_argument, NULL, OPT_SMISD },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *pidfile = DEFAULT_PIDFILE, *conf = NULL, *smisd = NULL;
	char *line = NULL;
	long pid = 0;
	FILE *f;
	int c, rc = SMIS_EXIT_USAGE;

	while ((c = getopt_long(argc, argv, "p:c:h", opts, NULL)) != -1) {
		switch (c) {
		case 'p': pidfile = optarg; break;
		case 'c': conf = optarg; break;
		case OPT_SMISD: smisd = optarg; break;
		case 'h':
			usage_reload(stdout);
			rc = SMIS_EXIT_OK;
			goto out;
		default:
			usage_reload(stderr);
			goto out;
		}
	}
	if (optind != argc) {
		usage_reload(stderr);
		goto out;
	}
	rc = SMIS_EXIT_FAILED;
	f = fopen(pidfile, "r");
	if (!f) {
		fprintf(stderr, "smisctl: %s: %s (is smisd running with --pidfile?)\n", pidfile,
			strerror(errno));
		goto out;
	}
	line = smis_api_read_line(f);
	fclose(f);
	if (!line || !smis_api_parse_long(line, 2, INT_MAX, &pid)) {
		fprintf(stderr, "smisctl: %s does not hold a process id\n", pidfile);
		goto out;
	}
	if (kill((pid_t)pid, 0) != 0 && errno == ESRCH) {
		fprintf(stderr, "smisctl: no process %ld: %s is stale\n", pid, pidfile);
		goto out;
	}
	if (!pid_is_smisd(pid)) {
		fprintf(stderr, "smisctl: process %ld is not smisd: %s is stale\n", pid, pidfile);
		goto out;
	}
	if (conf) {
		int check = run_check(smisd, conf);
		if (check != 0) {
			fprintf(stderr, "smisctl: %s not reloaded: the configuration %s\n", pidfile,
				check == SMIS_EXIT_FAILED ? "is invalid" : "could not be checked");
			rc = check == SMIS_EXIT_FAILED ? SMIS_EXIT_FAILED : SMIS_EXIT_ERROR;
			goto out;
		}
	}
	if (kill((pid_t)pid, SIGHUP) != 0) {
		fprintf(stderr, "smisctl: cannot signal process %ld: %s\n", pid, strerror(errno));
		goto out;
	}
	printf("smisd (pid %ld) asked to reload; its log says whether the new configuration is active\n",
	       pid);
	rc = SMIS_EXIT_OK;
out:
	free(line);
	return rc;
}

/* ------------------------------------------------------------------ */
/* main                                                                 */
/* ------------------------------------------------------------------ */

struct command {
	const char *name;
	int (*run)(int argc, char **argv);
	const char *summary;
};

static const struct command commands[] = {
	{ "send", cmd_send, "send a message (POST /v1/messages)" },
	{ "status", cmd_status, "print a message's status (GET /v1/messages/{id})" },
	{ "gen-key", cmd_gen_key, "make a new API key and its configuration line" },
	{ "hash-key", cmd_hash_key, "print the sha256:<hex> form of an API key" },
	{ "gen-secret", cmd_gen_secret, "print 64 random hex digits (store.phone_hash_key)" },
	{ "check-config", cmd_check_config, "validate a configuration (smisd --check-config)" },
	{ "plugins", cmd_plugins, "list configured plugins and the descriptors in plugin_dir" },
	{ "reload", cmd_reload, "make a running smisd reload its configuration (SIGHUP)" },
};

static void usage(FILE *f)
{
	fputs("Usage: smisctl COMMAND [OPTIONS]   (smisctl COMMAND --help for each)\n", f);
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		fprintf(f, "  %-14s %s\n", commands[i].name, commands[i].summary);
	fputs("Exit codes: 0 ok, 1 failed or negative result, 2 usage, 3 error.\n"
	      "See smisctl(1).\n",
	      f);
}

int main(int argc, char **argv)
{
	const struct command *cmd = NULL;
	int rc;

	if (argc < 2) {
		usage(stderr);
		return SMIS_EXIT_USAGE;
	}
	if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0 ||
	    strcmp(argv[1], "help") == 0) {
		if (argc > 2 && strcmp(argv[1], "help") == 0) {
			char *help_argv[] = { argv[2], (char *)"--help", NULL };
			for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
				if (strcmp(commands[i].name, argv[2]) == 0)
					return commands[i].run(2, help_argv);
		}
		usage(stdout);
		return SMIS_EXIT_OK;
	}
	if (strcmp(argv[1], "-V") == 0 || strcmp(argv[1], "--version") == 0) {
		printf("smisctl %s (plugin ABI %u)\n", PACKAGE_VERSION, SMIS_PLUGIN_ABI_VERSION);
		return SMIS_EXIT_OK;
	}
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (strcmp(commands[i].name, argv[1]) == 0)
			cmd = &commands[i];
	if (!cmd) {
		fprintf(stderr, "smisctl: unknown command '%s'\n", argv[1]);
		usage(stderr);
		return SMIS_EXIT_USAGE;
	}
	/* libcurl once, single-threaded, before any request. */
	if (smis_api_global_init("smisctl") != 0)
		return SMIS_EXIT_ERROR;
	rc = cmd->run(argc - 1, argv + 1);
	smis_api_global_cleanup();
	return rc;
}
