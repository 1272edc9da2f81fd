/*
 * generation.h - one immutable configuration generation: settings, plugin
 * instances, strategy chains and institutions, reference-counted.
 *
 * A job holds the generation it started with; a reload builds a new one
 * and swaps the current pointer; the old one is freed (and its plugin
 * instances destroyed) when its last job lets go.
 */
#ifndef SMISD_GENERATION_H
#define SMISD_GENERATION_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include <smis/smis-plugin.h>

#include "core_api.h"
#include "jwt_auth.h"
#include "plugin_loader.h"

struct smisd_http_settings {
	long timeout_ms;
	long connect_timeout_ms;
	bool verify_tls;
	char *ca_file;
	long max_connections; /* per host, 0 = curl's default */
};

struct smisd_channel {
	char *name;
	struct smisd_plugin *plugin;
	const struct smis_channel_ops *ops;
	unsigned caps;
	void *state;
	struct smis_instance self;
	struct smisd_http_settings http;
	size_t index;
};

struct smisd_step {
	struct smisd_plugin *plugin;
	const struct smis_strategy_ops *ops;
	void *state;
	struct smis_instance self;
};

struct smisd_strategy {
	char *name;
	struct smisd_step *steps;
	size_t n_steps;
};

/* Institution names are label values of /metrics and go into logs: 1-64
 * bytes of UTF-8, no double quote, backslash or control character. */
#define SMISD_INSTITUTION_NAME_MAX 64
/* Channel and strategy names, label values too: 1-48 of [a-z0-9_-]. */
#define SMISD_INSTANCE_NAME_MAX 48

struct smisd_institution {
	char *name;
	unsigned char (*key_hashes)[32];
	size_t n_keys;
	struct smisd_strategy **allowed;
	size_t n_allowed;
	struct smisd_strategy *default_strategy;
	char *sender;
	char **allowed_cc;    /* NULL-terminated calling-code prefixes beyond BE */
	char languages[SMIS_LANG_MAX][3]; /* fallback order */
	size_t n_languages;
	/* Limits (0 = off): request rate, daily messages, per recipient. */
	double requests_per_second;
	double burst;
	long daily_quota;
	int max_per_recipient;
	int recipient_window_s;
	int max_sms_segments; /* 0 = no cap */
	char **client_ids;    /* NULL-terminated: gateway token identities */
};

struct smisd_settings {
	char *listen_address;
	int listen_port;
	int http_threads;
	int connection_timeout_s;
	int max_connections;
	char *plugin_dir;
	char *store_path;
	unsigned char phone_hash_key[64];
	size_t phone_hash_key_len;
	int store_batch_max;
	bool store_commit_before_answer; /* else answer first, commit after */
	int store_commit_delay_ms;       /* read at start, like the path */
	long long store_retention_s;     /* messages older are deleted; 0 = kept forever */
	int max_in_flight;
	size_t max_body_bytes;
	long job_timeout_ms;
	int prepare_threads; /* workers for channels' prepare_send; read at start only */
	int log_level;
	/* Status polling, the fallback for reports that never come. */
	int poll_after_s;    /* 0 = off */
	int poll_interval_s; /* doubled after each poll */
	int poll_max;
};

struct smisd_generation {
	atomic_int refs;
	unsigned long id;
	char *path;
	struct smisd_settings settings;
	struct smisd_plugin **plugins;
	size_t n_plugins;
	struct smisd_channel *channels;
	size_t n_channels;
	/* Channels declared by a block that failed to load (while loading):
	 * their error is said once, by that block, not again by each
	 * strategy step naming them (api_channel_caps). */
	char **unloaded_channels;
	size_t n_unloaded_channels;
	struct smisd_strategy *strategies;
	size_t n_strategies;
	struct smisd_institution *institutions;
	size_t n_institutions;
	/* Gateway token issuers (JWT bearer tokens), see jwt_auth.h. */
	struct smisd_jwt_issuer **issuers;
	size_t n_issuers;
};

/* Load and validate `path` (plugins included). Returns NULL after having
 * reported every error as "file:line: ..." . */
struct smisd_generation *smisd_generation_load(const char *path);

struct smisd_generation *smisd_generation_ref(struct smisd_generation *g);
void smisd_generation_unref(struct smisd_generation *g);

const struct smisd_channel *smisd_generation_channel(const struct smisd_generation *g,
						     const char *name);
/* `name` as recorded in unloaded_channels, or NULL. */
const char *smisd_generation_unloaded_channel(const struct smisd_generation *g, const char *name);
struct smisd_strategy *smisd_generation_strategy(const struct smisd_generation *g,
						 const char *name);
bool smisd_institution_may_use(const struct smisd_institution *inst,
			       const struct smisd_strategy *s);

/* The process-wide current generation. acquire() returns a reference the
 * caller must unref; swap() installs `g` (taking the caller's reference) and
 * drops the previous one. */
struct smisd_generation *smisd_generation_acquire(void);
void smisd_generation_swap(struct smisd_generation *g);

#endif
