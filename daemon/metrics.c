/*
 * metrics.c - a small series table behind one mutex. Updates are a hash
 * lookup; rendering sorts nothing: series print in creation order, grouped
 * by family, which Prometheus accepts.
 */
#include "config.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core_api.h"
#include "log.h"
#include "metrics.h"

#define MAX_SERIES 4096
#define DROPPED_FAMILY "smis_metrics_series_dropped_total"
#define N_BUCKETS 12
/* Upstream calls take milliseconds to seconds; SMIS's own part of a
 * message takes tens of microseconds to milliseconds. */
static const double bucket_le[N_BUCKETS] = { 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
					     0.1, 0.25, 0.5, 1, 2.5, 5 };
static const double fine_le[N_BUCKETS] = { 0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005,
					   0.01, 0.025, 0.05, 0.1, 0.25, 1 };

enum kind { COUNTER, GAUGE, HISTOGRAM };

struct family {
	const char *name;
	const char *help;
	enum kind kind;
	const double *le; /* histogram bucket bounds: bucket_le unless set */
};

static const struct family families[] = {
	{ "smis_http_requests_total", "HTTP answers sent whole, by route and status", COUNTER },
	{ "smis_messages_total", "Messages concluded, by institution, strategy, status and channel", COUNTER },
	{ "smis_upstream_requests_total",
	  "Channel operations ended (lookup, send, status; also those that ended before any upstream request),"
	  " by channel, operation and outcome",
	  COUNTER },
	{ "smis_upstream_duration_seconds",
	  "Channel operation duration, from its start (sealing included) to its outcome, by channel and operation",
	  HISTOGRAM },
	{ "smis_message_overhead_seconds",
	  "Time SMIS itself added to a message's answer (request to answer, less the upstream calls), by strategy",
	  HISTOGRAM, fine_le },
	{ "smis_in_flight",
	  "Requests holding a limits.max_in_flight slot: messages until answered and stored (whichever is last),"
	  " device-key lookups until answered",
	  GAUGE },
	{ "smis_reloads_total", "Configuration reloads, by result", COUNTER },
	{ "smis_plugin_load_failures_total",
	  "Plugin loads that failed, one per channel or strategy step naming the plugin (the configuration is then"
	  " refused)",
	  COUNTER },
	{ "smis_callbacks_total",
	  "Status webhooks read by their channel's plugin, by channel and result (accepted: authentic and readable,"
	  " though SMIS may still refuse its reports)",
	  COUNTER },
	{ "smis_orphan_reports_kept_total",
	  "Reports for a provider reference not stored yet that were kept (committed) until their message is"
	  " stored, for a day at most",
	  COUNTER },
	{ "smis_orphan_reports_dropped_total",
	  "Reports for a provider reference not stored yet that were not kept: 100 kept for that reference, or"
	  " 100,000 in all, already",
	  COUNTER },
	{ "smis_store_purged_messages_total", "Messages deleted from the store after store.retention_s", COUNTER },
	{ "smis_store_retries_total",
	  "Store transactions rolled back for a transient failure (database locked, full, read-only, I/O) and retried",
	  COUNTER },
	{ "smis_store_errors_total",
	  "Store statements that failed outside a retried transaction (a message's record, a report, a status poll,"
	  " orphan expiry, retention, the first of a run of failed checkpoints), message records and reports lost"
	  " with a batch whose commit failed for good, status polls' reports the daemon could not keep or the store"
	  " take, and old messages whose delete was refused (left, counted once), by operation",
	  COUNTER },
	/* Kept outside the series table (`dropped`), which may be full. */
	{ DROPPED_FAMILY,
	  "Metric updates lost because their series could not be made (4096 series already, or labels too long)",
	  COUNTER },
	{ NULL, NULL, COUNTER },
};

/* The bucket bounds of a histogram family. */
static const double *bounds_of(const struct family *f)
{
	return f->le ? f->le : bucket_le;
}

struct series {
	const struct family *fam;
	/* The longest label set of valid names, smis_messages_total's
	 * (institution 64, strategy 48, status, channel 48), fits: job.c
	 * asserts it. */
	char labels[SMISD_METRIC_LABELS_MAX];
	double value;               /* counter/gauge; histogram sum */
	unsigned long count;        /* histogram count */
	unsigned long buckets[N_BUCKETS];
	struct series *hnext;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct series table[MAX_SERIES];
static int n_series;
static struct series *hash[1024];
static unsigned long dropped;       /* updates without a series */
static int64_t dropped_logged_ms;   /* monotonic; 0: not logged yet */

static const struct family *family_of(const char *name)
{
	/* Callers name families with string literals, which the linker
	 * merges with the table's: the address usually matches, and the
	 * strcmp() of up to every name is only for the others. */
	for (const struct family *f = families; f->name; f++)
		if (f->name == name)
			return f;
	for (const struct family *f = families; f->name; f++)
		if (strcmp(f->name, name) == 0)
			return f;
	return NULL;
}

/* The family is known by then: its index stands for its name, which
 * hashing byte by byte cost as much as the labels on every update. */
static unsigned hash_of(const struct family *f, const char *labels)
{
	unsigned h = (2166136261u ^ (unsigned)(f - families)) * 16777619u;
	for (; *labels; labels++)
		h = (h ^ (unsigned char)*labels) * 16777619u;
	return h % 1024;
}

/* An update that has no series: counted, and logged at most once a minute
 * (every update of that series would log otherwise). Caller holds the lock. */
static void note_dropped(const char *name, const char *labels)
{
	int64_t now = smisd_monotonic_ms();

	dropped++;
	if (dropped_logged_ms && now - dropped_logged_ms < 60000)
		return;
	dropped_logged_ms = now ? now : 1;
	smisd_log(SMIS_LOG_ERROR, "metrics", NULL,
		  "%s{%.80s%s}: no series for it (%s); %lu update(s) dropped so far, see " DROPPED_FAMILY,
		  name, labels, strlen(labels) > 80 ? "..." : "",
		  n_series == MAX_SERIES ? "4096 series already" : "labels too long", dropped);
}

/* Caller holds the lock. */
static struct series *series_get(const char *name, const char *labels)
{
	const struct family *f = family_of(name);
	unsigned h;
	if (!f)
		return NULL;
	h = hash_of(f, labels);
	for (struct series *s = hash[h]; s; s = s->hnext)
		if (s->fam == f && strcmp(s->labels, labels) == 0)
			return s;
	/* A cut label set would render as a broken line of the exposition. */
	if (n_series == MAX_SERIES || strlen(labels) >= sizeof(table[0].labels)) {
		note_dropped(name, labels);
		return NULL;
	}
	struct series *s = &table[n_series++];
	memset(s, 0, sizeof(*s));
	s->fam = f;
	snprintf(s->labels, sizeof(s->labels), "%s", labels);
	s->hnext = hash[h];
	hash[h] = s;
	return s;
}

void smisd_metric_add(const char *name, const char *labels, double v)
{
	pthread_mutex_lock(&lock);
	struct series *s = series_get(name, labels ? labels : "");
	if (s)
		s->value += v;
	pthread_mutex_unlock(&lock);
}

void smisd_metric_set(const char *name, const char *labels, double v)
{
	pthread_mutex_lock(&lock);
	struct series *s = series_get(name, labels ? labels : "");
	if (s)
		s->value = v;
	pthread_mutex_unlock(&lock);
}

void smisd_metric_observe(const char *name, const char *labels, double seconds)
{
	pthread_mutex_lock(&lock);
	struct series *s = series_get(name, labels ? labels : "");
	if (s) {
		const double *le = bounds_of(s->fam);
		s->value += seconds;
		s->count++;
		for (int i = 0; i < N_BUCKETS; i++)
			if (seconds <= le[i])
				s->buckets[i]++;
	}
	pthread_mutex_unlock(&lock);
}

struct buf {
	char *p;
	size_t len, cap;
};

static void put(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	int n;
	if (!b->p)
		return;
	for (;;) {
		va_start(ap, fmt);
		n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
		va_end(ap);
		if (n >= 0 && (size_t)n < b->cap - b->len) {
			b->len += (size_t)n;
			return;
		}
		char *g = realloc(b->p, b->cap * 2);
		if (!g) {
			free(b->p);
			b->p = NULL;
			return;
		}
		b->p = g;
		b->cap *= 2;
	}
}

char *smisd_metrics_render(void)
{
	struct buf b = { malloc(8192), 0, 8192 };
	static const char *const kinds[] = { "counter", "gauge", "histogram" };
	pthread_mutex_lock(&lock);
	for (const struct family *f = families; f->name; f++) {
		put(&b, "# HELP %s %s\n# TYPE %s %s\n", f->name, f->help, f->name, kinds[f->kind]);
		if (strcmp(f->name, DROPPED_FAMILY) == 0)
			put(&b, "%s %lu\n", f->name, dropped);
		for (int i = 0; i < n_series; i++) {
			const struct series *s = &table[i];
			const char *sep = s->labels[0] ? "," : "";
			if (s->fam != f)
				continue;
			if (f->kind != HISTOGRAM) {
				put(&b, "%s%s%s%s %.17g\n", f->name, s->labels[0] ? "{" : "", s->labels,
				    s->labels[0] ? "}" : "", s->value);
				continue;
			}
			for (int k = 0; k < N_BUCKETS; k++)
				put(&b, "%s_bucket{%s%sle=\"%g\"} %lu\n", f->name, s->labels, sep,
				    bounds_of(f)[k], s->buckets[k]);
			put(&b, "%s_bucket{%s%sle=\"+Inf\"} %lu\n", f->name, s->labels, sep, s->count);
			put(&b, "%s_sum{%s} %.17g\n", f->name, s->labels, s->value);
			put(&b, "%s_count{%s} %lu\n", f->name, s->labels, s->count);
		}
	}
	pthread_mutex_unlock(&lock);
	return b.p;
}

void smisd_metrics_reset(void)
{
	pthread_mutex_lock(&lock);
	n_series = 0;
	memset(hash, 0, sizeof(hash));
	dropped = 0;
	dropped_logged_ms = 0;
	pthread_mutex_unlock(&lock);
}
