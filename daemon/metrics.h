/*
 * metrics.h - Prometheus text-format metrics for GET /metrics.
 *
 * Series are created on first use; label values are configuration names
 * (institutions, strategies, channels) and fixed vocabularies, never
 * personal data.
 */
#ifndef SMISD_METRICS_H
#define SMISD_METRICS_H

/* The bytes of a series' label set, its NUL included: a longer one is not
 * made (counted in smis_metrics_series_dropped_total), never cut. */
#define SMISD_METRIC_LABELS_MAX 256

/* Add `v` to counter family `name` with `labels` (e.g.
 * "route=\"send\",status=\"201\"" or "" for none). */
void smisd_metric_add(const char *name, const char *labels, double v);
/* Set a gauge. */
void smisd_metric_set(const char *name, const char *labels, double v);
/* Observe a duration in seconds into the family's histogram. */
void smisd_metric_observe(const char *name, const char *labels, double seconds);

/* Render every series; caller frees with free(). */
char *smisd_metrics_render(void);
void smisd_metrics_reset(void);

#endif
