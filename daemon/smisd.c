/*
 * smisd.c - the SMIS daemon: load the configuration, start the store, the
 * dispatcher and the HTTP API, then wait for signals (SIGHUP reloads,
 * SIGTERM/SIGINT drain and stop).
 */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <systemd/sd-daemon.h>
#ifdef HAVE_MIMALLOC
#include <mimalloc.h>
#endif

#include "core_api.h"
#include "dispatcher.h"
#include "generation.h"
#include "http_server.h"
#include "log.h"
#include "metrics.h"
#include "ratelimit.h"
#include "store.h"
#include "utf8.h"

#define DEFAULT_CONFIG SMIS_SYSCONFDIR "/smis/smisd.conf"

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: smisd [-c FILE] [--pidfile FILE] | --check-config [-c FILE] | --version | --help\n"
		"  -c, --config FILE    configuration file (default " DEFAULT_CONFIG ")\n"
		"  -t, --check-config   load and validate the configuration, plugins included, then exit\n"
		"  -p, --pidfile FILE   write the daemon's PID to FILE (removed at exit)\n"
		"  -V, --version        print the version and plugin ABI, then exit\n"
		"  -h, --help           this text\n"
		"Signals: SIGHUP reloads the configuration; SIGTERM/SIGINT stop after in-flight messages.\n"
		"Exit codes: 0 ok, 1 invalid configuration, 2 usage, 3 runtime failure.\n");
}

/* Many connections in flight need many descriptors: raise the soft limit
 * to the hard one. */
static void raise_fd_limit(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

/* Which allocator this smisd runs on (configure's --with-mimalloc): the
 * benchmarks' figures depend on it. */
static void print_allocator(void)
{
#ifdef HAVE_MIMALLOC
	int v = mi_version(); /* e.g. 209 for 2.0.9 */
	printf("allocator: mimalloc %d.%d.%d\n", v / 100, v / 10 % 10, v % 10);
#else
	printf("allocator: glibc malloc\n");
#endif
}

/* The longest job_timeout_ms of any generation loaded: a message runs to the
 * end on the generation it was admitted under, so after a reload that
 * shortens the timeout, messages of the longer one may still be running,
 * and the drain must wait for them too. */
static int64_t longest_job_ms;

static void note_job_timeout(const struct smisd_generation *g)
{
	if (g->settings.job_timeout_ms > longest_job_ms)
		longest_job_ms = g->settings.job_timeout_ms;
}

/* The settings smisd read once at start (the HTTP daemons, the store, the
 * dispatcher's threads, the in-flight limit). A reload compares its file
 * with these, not with the previous reload's: what differs still waits for
 * a restart, and what was set back is in effect. */
static struct smisd_settings started;

static void note_started(const struct smisd_settings *s)
{
	started = *s;
	started.listen_address = strdup(s->listen_address);
	started.store_path = strdup(s->store_path);
	started.plugin_dir = NULL;
}

/* One line per start-only setting that the reloaded file changes. */
static void warn_start_only(const struct smisd_settings *now)
{
	const struct {
		const char *name;
		const char *was, *now;
	} strs[] = {
		{ "listen.address", started.listen_address, now->listen_address },
		{ "store.path", started.store_path, now->store_path },
	};
	const struct {
		const char *name;
		long long was, now;
	} ints[] = {
		{ "listen.port", started.listen_port, now->listen_port },
		{ "listen.threads", started.http_threads, now->http_threads },
		{ "listen.connection_timeout_s", started.connection_timeout_s, now->connection_timeout_s },
		{ "listen.max_connections", started.max_connections, now->max_connections },
		{ "store.batch_max", started.store_batch_max, now->store_batch_max },
		{ "store.commit_delay_ms", started.store_commit_delay_ms, now->store_commit_delay_ms },
		{ "limits.max_in_flight", started.max_in_flight, now->max_in_flight },
		{ "limits.prepare_threads", started.prepare_threads, now->prepare_threads },
	};

	for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++)
		if (strs[i].was && strs[i].now && strcmp(strs[i].was, strs[i].now) != 0)
			smisd_log(SMIS_LOG_WARN, "reload", NULL,
				  "%s changed to \"%s\": smisd keeps \"%s\" until its next restart", strs[i].name,
				  strs[i].now, strs[i].was);
	for (size_t i = 0; i < sizeof(ints) / sizeof(ints[0]); i++)
		if (ints[i].was != ints[i].now)
			smisd_log(SMIS_LOG_WARN, "reload", NULL,
				  "%s changed to %lld: smisd keeps %lld until its next restart", ints[i].name,
				  ints[i].now, ints[i].was);
}

/* A plugin file rebuilt since its code was loaded: the reload keeps the
 * loaded copy (see smisd_plugin_inherit). */
static void warn_stale_plugins(struct smisd_generation *g)
{
	struct smisd_generation *old = smisd_generation_acquire();

	for (size_t i = 0; old && i < g->n_plugins; i++)
		for (size_t j = 0; j < old->n_plugins; j++)
			if (smisd_plugin_inherit(g->plugins[i], old->plugins[j]))
				smisd_log(SMIS_LOG_WARN, "reload", NULL,
					  "plugin file %s changed since it was loaded: the loaded copy serves until"
					  " smisd restarts",
					  g->plugins[i]->path);
	smisd_generation_unref(old);
}

/* Whether `name` is an institution of generation `arg`. */
static bool institution_configured(const char *name, const void *arg)
{
	const struct smisd_generation *g = arg;

	for (size_t i = 0; i < g->n_institutions; i++)
		if (strcmp(g->institutions[i].name, name) == 0)
			return true;
	return false;
}

static void reload(const char *path)
{
	struct smisd_generation *g = smisd_generation_load(path);
	if (!g) {
		smisd_log(SMIS_LOG_ERROR, "reload", NULL,
			  "configuration refused, the previous one keeps serving");
		smisd_metric_add("smis_reloads_total", "result=\"refused\"", 1);
		return;
	}
	warn_start_only(&g->settings);
	warn_stale_plugins(g);
	smisd_log_set_level((enum smis_log_level)g->settings.log_level);
	smisd_log(SMIS_LOG_INFO, "reload", NULL, "configuration generation %lu active", g->id);
	smisd_metric_add("smis_reloads_total", "result=\"ok\"", 1);
	note_job_timeout(g);
	/* Names given up stop holding rate-limit state. */
	smisd_ratelimit_retain(institution_configured, g);
	smisd_generation_swap(g);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "check-config", no_argument, NULL, 't' },
		{ "pidfile", required_argument, NULL, 'p' },
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *path = DEFAULT_CONFIG;
	const char *pidfile = NULL;
	int check = 0, c, port, rc = 3;
	struct smisd_generation *g;
	sigset_t sigs;

	while ((c = getopt_long(argc, argv, "c:tp:Vh", opts, NULL)) != -1) {
		switch (c) {
		case 'p':
			pidfile = optarg;
			break;
		case 'c':
			path = optarg;
			break;
		case 't':
			check = 1;
			break;
		case 'V':
			printf("smisd %s (plugin ABI %u)\n", PACKAGE_VERSION, SMIS_PLUGIN_ABI_VERSION);
			print_allocator();
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 2;
	}
	/* The core, not plugins, initialises libcurl, once, single-threaded. */
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		fprintf(stderr, "smisd: cannot initialise libcurl\n");
		return 3;
	}
	smisd_config_report_plain(check);
	g = smisd_generation_load(path);
	if (check) {
		if (g) {
			/* The path as typed goes to the operator's terminal too:
			 * shown as every name --check-config quotes (utf8.h). */
			char shown[4096];

			smisd_text_shown(path, shown, sizeof(shown));
			printf("%s: configuration OK (%zu channels, %zu strategies, %zu institutions)\n", shown,
			       g->n_channels, g->n_strategies, g->n_institutions);
			smisd_generation_unref(g);
		}
		curl_global_cleanup();
		return g ? 0 : 1;
	}
	if (!g) {
		curl_global_cleanup();
		return 1;
	}
	smisd_log_set_level((enum smis_log_level)g->settings.log_level);
	raise_fd_limit();
	/* Signals are taken synchronously by this thread only: block them
	 * before any other thread exists so every thread inherits the mask. */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGHUP);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);
	/* A file-size limit (systemd's LimitFSIZE=) reached by the log or the
	 * database: the write fails with EFBIG, which the store retries as it
	 * does a full disk. By default the signal killed smisd instead, with
	 * the records of messages answered but not written yet. */
	signal(SIGXFSZ, SIG_IGN);

	note_job_timeout(g);
	note_started(&g->settings);
	smisd_generation_swap(g);
	/* Reports wait in memory while the store cannot write: a few per
	 * message, scaled with how many messages may be in flight. */
	smisd_store_set_report_bound((size_t)g->settings.max_in_flight * 8);
	if (smisd_store_open(g->settings.store_path, g->settings.store_batch_max,
			     g->settings.store_commit_delay_ms) != 0)
		goto out;
	if (smisd_dispatcher_start(smisd_http_job_finished, g->settings.prepare_threads,
				   g->settings.http_threads) != 0) {
		smisd_log(SMIS_LOG_ERROR, "smisd", NULL, "cannot start the dispatcher");
		goto out_store;
	}
	port = smisd_http_start(g);
	if (port < 0)
		goto out_dispatcher;
	smisd_log(SMIS_LOG_INFO, "smisd", NULL, "smisd %s listening on %s:%d (generation %lu)",
		  PACKAGE_VERSION, g->settings.listen_address, port, g->id);
	if (pidfile) {
		FILE *pf = fopen(pidfile, "w");
		if (!pf || fprintf(pf, "%ld\n", (long)getpid()) < 0) {
			smisd_log(SMIS_LOG_ERROR, "smisd", NULL, "cannot write pid file %s", pidfile);
			if (pf)
				fclose(pf);
			goto out_http;
		}
		fclose(pf);
	}
	/* systemd Type=notify: ready only once the socket accepts. */
	sd_notifyf(0, "READY=1\nSTATUS=listening on %s:%d\nMAINPID=%ld", g->settings.listen_address,
		   port, (long)getpid());

	for (;;) {
		int sig = 0;
		if (sigwait(&sigs, &sig) != 0)
			continue;
		if (sig == SIGHUP) {
			sd_notify(0, "RELOADING=1");
			reload(path);
			sd_notify(0, "READY=1");
			continue;
		}
		break;
	}
	/* Graceful stop: no new connections, let in-flight messages finish. */
	sd_notify(0, "STOPPING=1");
	/* Logged once no loop listens any more: the line says new
	 * connections are refused from then on (the tests wait for it). */
	smisd_http_quiesce();
	smisd_log(SMIS_LOG_INFO, "smisd", NULL, "stopping: draining %d message(s) in flight",
		  smisd_http_in_flight());
	{
		/* Every job ends by its own deadline (job_timeout_ms from its
		 * admission), and its commit follows within milliseconds. */
		int64_t deadline = smisd_monotonic_ms() + longest_job_ms + 1000;
		bool cut_short = false;
		while (!cut_short && smisd_http_in_flight() > 0 && smisd_monotonic_ms() < deadline) {
			/* Signals still arrive here: a second SIGTERM or SIGINT (an
			 * operator's second Ctrl-C) means "now", a SIGHUP is moot. */
			struct timespec ts = { 0, 20 * 1000 * 1000 };
			int sig = sigtimedwait(&sigs, NULL, &ts);
			if (sig == SIGTERM || sig == SIGINT) {
				smisd_log(SMIS_LOG_WARN, "smisd", NULL,
					  "second stop signal: not waiting for the %d message(s) still in flight",
					  smisd_http_in_flight());
				cut_short = true;
			}
			if (sig == SIGHUP)
				smisd_log(SMIS_LOG_INFO, "smisd", NULL, "stopping: reload ignored");
		}
		if (!cut_short && smisd_http_in_flight() > 0)
			smisd_log(SMIS_LOG_ERROR, "smisd", NULL,
				  "stopping with %d message(s) still in flight after the drain window",
				  smisd_http_in_flight());
	}
	rc = 0;
out_http:
	/* The loops first (they run the HTTP daemons, which may only be
	 * stopped when nothing runs them): status polls in flight end and
	 * their reports still reach the store, which then drains and closes.
	 * The store writer may be resuming a connection on a loop still (the
	 * drain ends as soon as its answer is out): it is let finish. */
	smisd_http_leave_loops();
	smisd_dispatcher_stop();
	smisd_http_stop();
	if (pidfile)
		unlink(pidfile);
out_dispatcher:
	smisd_dispatcher_stop();
out_store:
	smisd_store_close();
	smisd_http_free_abandoned();
out:
	free(started.listen_address);
	free(started.store_path);
	smisd_generation_swap(NULL);
	curl_global_cleanup();
	smisd_log(SMIS_LOG_INFO, "smisd", NULL, "stopped");
	return rc;
}
