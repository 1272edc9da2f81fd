/*
 * core_api.h - the daemon's side of the plugin contract: the concrete
 * structs behind the opaque handles of smis-plugin.h and the API table.
 */
#ifndef SMISD_CORE_API_H
#define SMISD_CORE_API_H

#include <libconfig.h>
#include <curl/curl.h>

#include <smis/smis-plugin.h>

struct smisd_generation;

/* What a plugin's `self` points to. */
struct smis_instance {
	enum smis_plugin_kind kind;
	char component[160];          /* "plugin:ringring/ringring-main" for logs */
	struct smisd_generation *gen; /* for channel_caps during create */
	/* The channel channel_caps last refused because its own block failed
	 * to load: the plugin's error quoting it is not shown (said once). */
	const char *unloaded_asked;
};

/* A configuration block as handed to a plugin's create(). Tracks which
 * settings were read so that the core can report unknown ones. */
struct smis_config {
	config_setting_t *setting;
	unsigned char *used;   /* one flag per child setting */
	int n_children;
	int errors;            /* config_error() calls */
	struct smis_instance *self; /* the instance created, if any */
};

struct smis_http_request {
	char *method;
	char *url;
	struct curl_slist *headers;
	char *body;
	size_t body_len;
};

extern const struct smis_core_api smisd_core_api;

/* Wrap `setting` for a plugin; `core_keys` (NULL-terminated) are keys the
 * core reads itself and are marked as used. */
int smisd_config_wrap(struct smis_config *cfg, config_setting_t *setting,
		      const char *const *core_keys);
/* Report every child never read as "file:line: unknown setting"; returns
 * the number reported. `what` names the block ("channel 'x'"). */
int smisd_config_check_unused(struct smis_config *cfg, const char *what);
void smisd_config_unwrap(struct smis_config *cfg);

/* Config error printer shared with the loader: "file:line: message". */
void smisd_config_report(const config_setting_t *where, const char *fmt, ...)
	SMIS_PRINTF(2, 3);
/* When set, config errors go to stderr as plain lines (--check-config);
 * otherwise through the JSON log. */
void smisd_config_report_plain(int plain);

/* snprintf(out, len, "%s%s...", ...) of the strings up to the NULL, without
 * the format: the pieces copied and cut as snprintf cuts them; returns the
 * whole length, as snprintf does. For the labels and ids made per message. */
size_t smisd_concat(char *out, size_t len, ...) __attribute__((sentinel));

int64_t smisd_now_ms(void);
int64_t smisd_monotonic_ms(void);
/* The same clock in microseconds (the overhead histogram). */
int64_t smisd_monotonic_us(void);

#endif
