/*
 * ringring-sim - a loopback simulator of RingRing's Message API for tests,
 * demos and benchmarks of smisd (see docs/ringring-channel.md).
 *
 *   ringring-sim --listen 127.0.0.1:18082 --api-key KEY [--quiet]
 *
 * Prints "ringring-sim listening on HOST:PORT" once it accepts connections
 * (with the real port when asked for port 0) and stops cleanly on SIGINT or
 * SIGTERM.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <curl/curl.h>
#include <microhttpd.h>

#include "sim.h"

static void usage(FILE *f)
{
	fputs("Usage: ringring-sim --api-key KEY [options]\n"
	      "Simulates RingRing's Message API (POST /v1/message, /v1/statusmessage,\n"
	      "delivery reports to statusUrl) with a control API under /_sim/.\n"
	      "\n"
	      "  --listen HOST[:PORT]     address to listen on (default 127.0.0.1:18082)\n"
	      "  --port PORT              port, overrides --listen's; 0 = any free port\n"
	      "  --api-key KEY            the only apiKey accepted (required)\n"
	      "  --dlr-delay-ms MS        delay before a delivery report (default 200)\n"
	      "  --timeout-hold-ms MS     how long the timeout fault holds a request\n"
	      "                           before dropping it (default 30000)\n"
	      "  --threads N              HTTP threads (default 2)\n"
	      "  --max-records N          messages and DLRs remembered (default 10000)\n"
	      "  --quiet                  no line per request\n"
	      "  --help                   this text\n",
	      f);
}

/* "HOST", "HOST:PORT", "[V6]:PORT", ":PORT". */
static bool parse_listen(const char *arg, char *host, size_t hostlen, long *port)
{
	const char *colon;
	size_t n;

	if (arg[0] == '[') {
		const char *close = strchr(arg, ']');
		if (!close)
			return false;
		n = (size_t)(close - arg - 1);
		colon = close[1] == ':' ? close + 1 : NULL;
		if (close[1] && !colon)
			return false;
		arg++;
	} else {
		colon = strrchr(arg, ':');
		if (colon && strchr(arg, ':') != colon)
			colon = NULL; /* bare IPv6 address */
		n = colon ? (size_t)(colon - arg) : strlen(arg);
	}
	if (n >= hostlen)
		return false;
	if (n == 0) {
		snprintf(host, hostlen, "127.0.0.1");
	} else {
		memcpy(host, arg, n);
		host[n] = '\0';
	}
	if (colon && !sim_parse_long(colon + 1, 0, 65535, port))
		return false;
	return true;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "listen", required_argument, NULL, 'l' },
		{ "port", required_argument, NULL, 'p' },
		{ "api-key", required_argument, NULL, 'k' },
		{ "dlr-delay-ms", required_argument, NULL, 'd' },
		{ "timeout-hold-ms", required_argument, NULL, 'T' },
		{ "threads", required_argument, NULL, 't' },
		{ "max-records", required_argument, NULL, 'm' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct sim sim;
	char host[64] = "127.0.0.1";
	long port = 18082;
	long port_opt = -1;
	long threads = 2;
	long records = 10000;
	unsigned bound = 0;
	struct MHD_Daemon *daemon = NULL;
	sigset_t sigs;
	int sig = 0;
	int c;
	int rc = 1;

	memset(&sim, 0, sizeof(sim));
	sim.dlr_delay_ms = 200;
	sim.hold_ms = 30000;
	while ((c = getopt_long(argc, argv, "l:p:k:d:T:t:m:qh", opts, NULL)) != -1) {
		switch (c) {
		case 'l':
			if (!parse_listen(optarg, host, sizeof(host), &port)) {
				fprintf(stderr, "ringring-sim: bad --listen '%s'\n", optarg);
				return 2;
			}
			break;
		case 'p':
			if (!sim_parse_long(optarg, 0, 65535, &port_opt)) {
				fprintf(stderr, "ringring-sim: bad --port '%s'\n", optarg);
				return 2;
			}
			break;
		case 'k':
			sim.api_key = optarg;
			break;
		case 'd':
			if (!sim_parse_long(optarg, 0, 3600000, &sim.dlr_delay_ms)) {
				fprintf(stderr, "ringring-sim: bad --dlr-delay-ms '%s'\n", optarg);
				return 2;
			}
			break;
		case 'T':
			if (!sim_parse_long(optarg, 0, 600000, &sim.hold_ms)) {
				fprintf(stderr, "ringring-sim: bad --timeout-hold-ms '%s'\n", optarg);
				return 2;
			}
			break;
		case 't':
			if (!sim_parse_long(optarg, 1, 64, &threads)) {
				fprintf(stderr, "ringring-sim: bad --threads '%s'\n", optarg);
				return 2;
			}
			break;
		case 'm':
			if (!sim_parse_long(optarg, 1, 10000000, &records)) {
				fprintf(stderr, "ringring-sim: bad --max-records '%s'\n", optarg);
				return 2;
			}
			break;
		case 'q':
			sim.quiet = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc || !sim.api_key || !*sim.api_key) {
		if (!sim.api_key || !*sim.api_key)
			fprintf(stderr, "ringring-sim: --api-key is required\n");
		usage(stderr);
		return 2;
	}
	if (port_opt >= 0)
		port = port_opt;
	sim.max_records = (size_t)records;
	sim.nonce = (uint32_t)((uint64_t)sim_now_ms() * 2654435761u) ^ ((uint32_t)getpid() << 16);
	pthread_mutex_init(&sim.faults_lock, NULL);
	sim_faults_default(&sim, &sim.faults);
	/* Logs are read by test harnesses line by line. */
	setvbuf(stdout, NULL, _IOLBF, 0);

	/* Every thread created from here on inherits the mask; only sigwait
	 * below sees the signals. */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);

	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		fprintf(stderr, "ringring-sim: curl_global_init failed\n");
		goto out;
	}
	sim.store = sim_store_new(sim.max_records, sim.nonce);
	sim.delay = sim_delay_new();
	sim.dlr = sim.store && sim.delay ? sim_dlr_new(&sim) : NULL;
	if (!sim.store || !sim.delay || !sim.dlr) {
		fprintf(stderr, "ringring-sim: out of memory\n");
		goto out_free;
	}
	daemon = sim_server_start(&sim, host, (unsigned)port, (unsigned)threads, &bound);
	if (!daemon)
		goto out_free;
	printf(strchr(host, ':') ? "ringring-sim listening on [%s]:%u\n" :
				   "ringring-sim listening on %s:%u\n",
	       host, bound);
	fflush(stdout);

	while (sigwait(&sigs, &sig) != 0)
		;
	if (!sim.quiet)
		printf("ringring-sim: signal %d, stopping\n", sig);
	rc = 0;

	sim_server_stop(&sim, daemon);
out_free:
	sim_dlr_free(sim.dlr);
	sim_delay_free(sim.delay);
	sim_store_free(sim.store);
	curl_global_cleanup();
out:
	pthread_mutex_destroy(&sim.faults_lock);
	return rc;
}
