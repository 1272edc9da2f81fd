/*
 * govapp-sim.c - command line of the GovApp backend simulator.
 *
 *   govapp-sim --listen HOST:PORT --token TOKEN [--seed FILE.json]
 *              [--callback-url URL --callback-secret S] [--quiet] ...
 *   govapp-sim inbox PHONE [--url URL]
 *   govapp-sim mark [--url URL] NOTIFICATION_ID DEVICE_ID delivered|read
 *
 * The server prints "govapp-sim listening on HOST:PORT" once it accepts
 * connections (port 0 picks a free port) and stops cleanly on SIGTERM or
 * SIGINT. The two subcommands are small clients of the /_sim control API
 * for people who want to see what a citizen's phone received.
 * docs/govapp-protocol.md describes the protocol and the control API.
 */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <openssl/crypto.h>

#include "sim.h"

#define DEFAULT_URL "http://127.0.0.1:18081"

static void usage(FILE *f)
{
	fprintf(f,
		"usage: govapp-sim [--listen HOST:PORT | --port N] --token TOKEN [options]\n"
		"       govapp-sim inbox PHONE [--url URL]\n"
		"       govapp-sim mark [--url URL] NOTIFICATION_ID DEVICE_ID delivered|read\n"
		"\n"
		"Server options:\n"
		"  --listen HOST:PORT        address to listen on (default 127.0.0.1:18081; port 0 = any)\n"
		"  --port N                  port on 127.0.0.1 (shorthand)\n"
		"  --token TOKEN             API bearer token (or env GOVAPP_SIM_TOKEN)\n"
		"  --seed FILE.json          citizens to register: {\"citizens\":[...]}\n"
		"  --callback-url URL        where to POST signed status callbacks\n"
		"  --callback-secret S       HMAC secret of the callbacks (or env GOVAPP_SIM_CALLBACK_SECRET)\n"
		"  --threads N               HTTP threads (default 2)\n"
		"  --max-notifications N     notifications kept, oldest dropped first (default 50000)\n"
		"  --record N                API requests kept for /_sim/requests (default 1000, 0 = off)\n"
		"  --timeout-hold-ms N       how long a timeout fault holds a connection (default 30000)\n"
		"  --quiet                   no log lines on stderr\n"
		"Client options:\n"
		"  --url URL                 simulator base URL (default " DEFAULT_URL ")\n");
}

/* ------------------------------------------------------------------ */
/* Clients                                                             */
/* ------------------------------------------------------------------ */

struct buf {
	char *p;
	size_t n;
};

static size_t collect(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	struct buf *b = userdata;
	size_t n = size * nmemb;
	char *q = realloc(b->p, b->n + n + 1);

	if (!q)
		return 0;
	memcpy(q + b->n, ptr, n);
	b->p = q;
	b->n += n;
	b->p[b->n] = '\0';
	return n;
}

/* GET (body NULL) or POST JSON; returns the parsed answer or NULL. */
static struct json_object *client_call(const char *url, const char *body, long *status)
{
	CURL *c = curl_easy_init();
	struct curl_slist *h = NULL;
	struct buf b = { 0 };
	struct json_object *o = NULL;
	CURLcode rc;

	*status = 0;
	if (!c)
		return NULL;
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, 10L);
	if (body) {
		h = curl_slist_append(NULL, "Content-Type: application/json");
		curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
	}
	rc = curl_easy_perform(c);
	if (rc != CURLE_OK) {
		fprintf(stderr, "govapp-sim: %s: %s\n", url, curl_easy_strerror(rc));
	} else {
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
		o = b.p ? json_tokener_parse(b.p) : NULL;
		if (!o)
			fprintf(stderr, "govapp-sim: %s: HTTP %ld, not JSON\n", url, *status);
	}
	free(b.p);
	curl_slist_free_all(h);
	curl_easy_cleanup(c);
	return o;
}

static const char *js(struct json_object *o, const char *key)
{
	struct json_object *v;

	if (!o || !json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string))
		return NULL;
	return json_object_get_string(v);
}

static void print_message(struct json_object *m)
{
	struct json_object *langs = NULL, *content = NULL, *title = NULL, *ok = NULL;
	size_t nl;

	printf("\n%s  %s  device %s  [%s]\n", js(m, "notification_id"), js(m, "message_id"),
	       js(m, "device_id"), js(m, "status"));
	printf("  from %s%s%s, received %s", js(m, "sender"), js(m, "reference") ? ", reference " : "",
	       js(m, "reference") ? js(m, "reference") : "", js(m, "received_at"));
	if (js(m, "delivered_at"))
		printf(", delivered %s", js(m, "delivered_at"));
	if (js(m, "read_at"))
		printf(", read %s", js(m, "read_at"));
	printf("\n");
	json_object_object_get_ex(m, "languages", &langs);
	json_object_object_get_ex(m, "content", &content);
	json_object_object_get_ex(m, "title", &title);
	nl = langs && json_object_is_type(langs, json_type_array) ? json_object_array_length(langs) : 0;
	printf("  languages:");
	for (size_t i = 0; i < nl; i++)
		printf(" %s", json_object_get_string(json_object_array_get_idx(langs, i)));
	printf("\n");
	if (json_object_object_get_ex(m, "decrypt_ok", &ok) && !json_object_get_boolean(ok)) {
		printf("  UNDECRYPTABLE on this device (%s); clear title(s):\n", js(m, "decrypt_error"));
		for (size_t i = 0; i < nl; i++) {
			const char *l = json_object_get_string(json_object_array_get_idx(langs, i));

			printf("  [%s] %s\n", l, js(title, l) ? js(title, l) : "");
		}
		return;
	}
	for (size_t i = 0; i < nl; i++) {
		const char *l = json_object_get_string(json_object_array_get_idx(langs, i));
		struct json_object *c = NULL;

		if (!content || !json_object_object_get_ex(content, l, &c))
			continue;
		printf("  [%s] %s\n", l, js(c, "title") ? js(c, "title") : "");
		printf("       %s\n", js(c, "body_text") ? js(c, "body_text") : "");
	}
}

static int cmd_inbox(const char *base, const char *phone)
{
	char *esc = curl_easy_escape(NULL, phone, 0), *url;
	struct json_object *o, *list = NULL;
	long status;
	size_t n, len;
	int rc = 1;

	if (!esc)
		return 1;
	len = strlen(base) + strlen(esc) + 32;
	url = malloc(len);
	if (!url) {
		curl_free(esc);
		return 1;
	}
	snprintf(url, len, "%s/_sim/inbox?phone=%s", base, esc);
	o = client_call(url, NULL, &status);
	if (o && status == 200 && json_object_object_get_ex(o, "messages", &list)) {
		n = json_object_array_length(list);
		printf("%s: %zu message(s) on its devices\n", phone, n);
		for (size_t i = 0; i < n; i++)
			print_message(json_object_array_get_idx(list, i));
		rc = 0;
	} else if (o) {
		fprintf(stderr, "govapp-sim: HTTP %ld: %s\n", status, json_object_to_json_string(o));
	}
	json_object_put(o);
	free(url);
	curl_free(esc);
	return rc;
}

static int cmd_mark(const char *base, const char *nid, const char *dev, const char *status)
{
	struct json_object *req = json_object_new_object(), *o;
	char url[1024];
	long st;
	int rc = 1;

	json_object_object_add(req, "notification_id", json_object_new_string(nid));
	json_object_object_add(req, "device_id", json_object_new_string(dev));
	json_object_object_add(req, "status", json_object_new_string(status));
	snprintf(url, sizeof(url), "%s/_sim/mark", base);
	o = client_call(url, json_object_to_json_string(req), &st);
	if (o) {
		printf("%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY |
							      JSON_C_TO_STRING_NOSLASHESCAPE));
		rc = st == 200 ? 0 : 1;
	}
	json_object_put(o);
	json_object_put(req);
	return rc;
}

/* ------------------------------------------------------------------ */
/* Server                                                              */
/* ------------------------------------------------------------------ */

/* Split "HOST:PORT" / "[V6]:PORT" into host and port. */
static int parse_listen(const char *arg, char *host, size_t cap, unsigned *port)
{
	const char *colon = strrchr(arg, ':');
	const char *h = arg;
	size_t hl;
	char *end;
	unsigned long p;

	if (!colon)
		return -EINVAL;
	hl = (size_t)(colon - arg);
	if (hl >= 2 && arg[0] == '[' && arg[hl - 1] == ']') {
		h++;
		hl -= 2;
	}
	if (hl == 0 || hl >= cap)
		return -EINVAL;
	errno = 0;
	p = strtoul(colon + 1, &end, 10);
	if (errno || *end || end == colon + 1 || p > 65535)
		return -EINVAL;
	memcpy(host, h, hl);
	host[hl] = '\0';
	*port = (unsigned)p;
	return 0;
}

static int parse_count(const char *arg, unsigned long max, unsigned long *out)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(arg, &end, 10);
	if (errno || *end || end == arg || v > max)
		return -EINVAL;
	*out = v;
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "listen", required_argument, NULL, 'l' },
		{ "port", required_argument, NULL, 'p' },
		{ "token", required_argument, NULL, 't' },
		{ "seed", required_argument, NULL, 's' },
		{ "callback-url", required_argument, NULL, 'c' },
		{ "callback-secret", required_argument, NULL, 'k' },
		{ "threads", required_argument, NULL, 'T' },
		{ "max-notifications", required_argument, NULL, 'M' },
		{ "record", required_argument, NULL, 'R' },
		{ "timeout-hold-ms", required_argument, NULL, 'H' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "url", required_argument, NULL, 'u' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	char host[64] = "127.0.0.1", err[512];
	unsigned port = 18081, bound = 0;
	unsigned long threads = 2, max_notifs = 50000, max_records = 1000, hold_ms = 30000;
	const char *token = getenv("GOVAPP_SIM_TOKEN"), *seed = NULL, *cb_url = NULL;
	const char *cb_secret = getenv("GOVAPP_SIM_CALLBACK_SECRET"), *url = DEFAULT_URL;
	bool quiet = false;
	struct sim s;
	struct sim_server *srv = NULL;
	sigset_t sigs;
	int opt, sig, rc = 2, n_seed = 0;

	while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (opt) {
		case 'l':
			if (parse_listen(optarg, host, sizeof(host), &port) < 0) {
				fprintf(stderr, "govapp-sim: --listen wants HOST:PORT, got %s\n", optarg);
				return 2;
			}
			break;
		case 'p': {
			unsigned long p;

			if (parse_count(optarg, 65535, &p) < 0) {
				fprintf(stderr, "govapp-sim: bad --port %s\n", optarg);
				return 2;
			}
			port = (unsigned)p;
			break;
		}
		case 't':
			token = optarg;
			break;
		case 's':
			seed = optarg;
			break;
		case 'c':
			cb_url = optarg;
			break;
		case 'k':
			cb_secret = optarg;
			break;
		case 'T':
			if (parse_count(optarg, 64, &threads) < 0 || threads == 0) {
				fprintf(stderr, "govapp-sim: --threads wants 1 to 64\n");
				return 2;
			}
			break;
		case 'M':
			if (parse_count(optarg, 100000000, &max_notifs) < 0 || max_notifs == 0) {
				fprintf(stderr, "govapp-sim: bad --max-notifications\n");
				return 2;
			}
			break;
		case 'R':
			if (parse_count(optarg, 10000000, &max_records) < 0) {
				fprintf(stderr, "govapp-sim: bad --record\n");
				return 2;
			}
			break;
		case 'H':
			if (parse_count(optarg, 600000, &hold_ms) < 0) {
				fprintf(stderr, "govapp-sim: bad --timeout-hold-ms\n");
				return 2;
			}
			break;
		case 'q':
			quiet = true;
			break;
		case 'u':
			url = optarg;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}

	if (optind < argc && strcmp(argv[optind], "inbox") == 0) {
		if (argc - optind != 2) {
			usage(stderr);
			return 2;
		}
		curl_global_init(CURL_GLOBAL_DEFAULT);
		rc = cmd_inbox(url, argv[optind + 1]);
		curl_global_cleanup();
		return rc;
	}
	if (optind < argc && strcmp(argv[optind], "mark") == 0) {
		if (argc - optind != 4 ||
		    (strcmp(argv[optind + 3], "delivered") != 0 && strcmp(argv[optind + 3], "read") != 0)) {
			usage(stderr);
			return 2;
		}
		curl_global_init(CURL_GLOBAL_DEFAULT);
		rc = cmd_mark(url, argv[optind + 1], argv[optind + 2], argv[optind + 3]);
		curl_global_cleanup();
		return rc;
	}
	if (optind < argc && strcmp(argv[optind], "serve") == 0)
		optind++;
	if (optind != argc) {
		fprintf(stderr, "govapp-sim: unexpected argument %s\n", argv[optind]);
		usage(stderr);
		return 2;
	}
	if (!token || !token[0]) {
		fprintf(stderr, "govapp-sim: --token (or GOVAPP_SIM_TOKEN) is required\n");
		return 2;
	}
	if (!cb_url != !(cb_secret && cb_secret[0])) {
		fprintf(stderr, "govapp-sim: --callback-url and --callback-secret go together\n");
		return 2;
	}

	if (sim_init(&s, max_notifs, max_records) < 0) {
		fprintf(stderr, "govapp-sim: out of memory\n");
		sim_fini(&s);
		return 1;
	}
	s.quiet = quiet;
	s.timeout_hold_ms = (long)hold_ms;
	s.token = strdup(token);
	s.callback_url = cb_url ? strdup(cb_url) : NULL;
	s.callback_secret = cb_url ? strdup(cb_secret) : NULL;
	if (!s.token || (cb_url && (!s.callback_url || !s.callback_secret))) {
		fprintf(stderr, "govapp-sim: out of memory\n");
		rc = 1;
		goto out;
	}
	if (seed) {
		n_seed = sim_load_seed(&s, seed, err, sizeof(err));
		if (n_seed < 0) {
			fprintf(stderr, "govapp-sim: %s\n", err);
			rc = 1;
			goto out;
		}
	}
	curl_global_init(CURL_GLOBAL_DEFAULT);
	signal(SIGPIPE, SIG_IGN);
	/* Every thread inherits the mask; only main takes the signals. */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	if (cb_url && sim_callback_start(&s) < 0) {
		fprintf(stderr, "govapp-sim: cannot start the callback thread\n");
		rc = 1;
		goto out_curl;
	}
	if (sim_server_start(&s, host, port, (unsigned)threads, &srv, &bound) < 0) {
		rc = 1;
		goto out_cb;
	}
	sim_log(&s, "%d citizen(s) seeded, %lu HTTP thread(s), callbacks %s", n_seed, threads,
		cb_url ? "on" : "off");
	printf("govapp-sim listening on %s%s%s:%u\n", strchr(host, ':') ? "[" : "", host,
	       strchr(host, ':') ? "]" : "", bound);
	fflush(stdout);
	while (sigwait(&sigs, &sig) == 0 && sig != SIGINT && sig != SIGTERM)
		;
	sim_log(&s, "signal %d, stopping", sig);
	sim_server_stop(srv);
	rc = 0;
out_cb:
	sim_callback_stop(&s);
out_curl:
	curl_global_cleanup();
out:
	sim_fini(&s);
	return rc;
}
