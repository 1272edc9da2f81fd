/*
 * generation.c - parse a libconfig file into a generation (collectd style:
 * the core parses, each plugin instance gets its own block through
 * accessors). Every error names file:line; loading goes on after an error
 * so that one run reports as many problems as it can.
 */
#include "config.h"

#include <errno.h>
#include <libgen.h>
#include <netdb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "config_includes.h"
#include "generation.h"
#include "log.h"
#include "metrics.h"
#include "utf8.h"

#define report smisd_config_report

static const char *const lang_codes[SMIS_LANG_MAX] = { "nl", "fr", "de", "en" };

/* ---- small libconfig helpers ------------------------------------------ */

/* Report every child of group `s` whose name is not in `known`. */
static int check_keys(const config_setting_t *s, const char *const *known, const char *what)
{
	int errors = 0;
	for (int i = 0; s && i < config_setting_length(s); i++) {
		config_setting_t *c = config_setting_get_elem(s, (unsigned)i);
		const char *n = config_setting_name(c);
		int ok = 0;
		for (const char *const *k = known; *k && !ok; k++)
			ok = n && strcmp(n, *k) == 0;
		if (!ok) {
			report(c, "unknown setting '%s' in %s", n ? n : "?", what);
			errors++;
		}
	}
	return errors;
}

/* `p`, memory just allocated for setting `s` (its value, a copy, a path
 * made of it): without it (NULL) the setting is reported and counted in
 * *errors, so that the load fails and says why rather than reading it as
 * empty, short or absent (an institution without its keys, countries or
 * gateway identities, a store without its path). */
static void *value_memory(const config_setting_t *s, void *p, int *errors)
{
	if (!p) {
		report(s, "out of memory reading this setting");
		(*errors)++;
	}
	return p;
}

static int get_string(const config_setting_t *grp, const char *key, char **out,
		      bool required, const char *what)
{
	config_setting_t *s = grp ? config_setting_get_member(grp, key) : NULL;
	int errors = 0;
	if (!s) {
		if (required) {
			report(grp, "%s: missing required setting '%s'", what, key);
			return -1;
		}
		return 0;
	}
	if (config_setting_type(s) != CONFIG_TYPE_STRING) {
		report(s, "%s: '%s' must be a string", what, key);
		return -1;
	}
	free(*out);
	*out = value_memory(s, strdup(config_setting_get_string(s)), &errors);
	return -errors;
}

static int get_int(const config_setting_t *grp, const char *key, long long *out,
		   long long min, long long max, const char *what)
{
	config_setting_t *s = grp ? config_setting_get_member(grp, key) : NULL;
	long long v;
	if (!s)
		return 0;
	if (config_setting_type(s) == CONFIG_TYPE_INT)
		v = config_setting_get_int(s);
	else if (config_setting_type(s) == CONFIG_TYPE_INT64)
		v = config_setting_get_int64(s);
	else {
		report(s, "%s: '%s' must be an integer", what, key);
		return -1;
	}
	if (v < min || v > max) {
		report(s, "%s: '%s' must be between %lld and %lld", what, key, min, max);
		return -1;
	}
	*out = v;
	return 0;
}

static int get_bool(const config_setting_t *grp, const char *key, bool *out, const char *what)
{
	config_setting_t *s = grp ? config_setting_get_member(grp, key) : NULL;
	if (!s)
		return 0;
	if (config_setting_type(s) != CONFIG_TYPE_BOOL) {
		report(s, "%s: '%s' must be true or false", what, key);
		return -1;
	}
	*out = config_setting_get_bool(s) != 0;
	return 0;
}

/* Resolve a relative path against the configuration file's folder. */
static char *resolve_path(const char *base_file, const char *p)
{
	char *copy, *dir, *out;
	size_t n;
	if (p[0] == '/')
		return strdup(p);
	copy = strdup(base_file);
	if (!copy)
		return NULL;
	dir = dirname(copy);
	n = strlen(dir) + strlen(p) + 2;
	out = malloc(n);
	if (out)
		snprintf(out, n, "%s/%s", dir, p);
	free(copy);
	return out;
}

/* resolve_path() for the path `p` of setting `s`, said at its line when
 * out of memory (NULL) and counted in *errors. */
static char *setting_path(const char *base_file, const config_setting_t *s, const char *p, int *errors)
{
	return value_memory(s, resolve_path(base_file, p), errors);
}

static int hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static int parse_hex(const char *hex, unsigned char *out, size_t outlen)
{
	if (strlen(hex) != outlen * 2)
		return -1;
	for (size_t i = 0; i < outlen; i++) {
		int hi = hex_value(hex[2 * i]), lo = hex_value(hex[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return -1;
		out[i] = (unsigned char)(hi << 4 | lo);
	}
	return 0;
}

/* An optional group `name = { ... };` of `parent`, or NULL. Anything else
 * there (`limits = 5;`, `http = [ ... ];`) has no members: its settings
 * would be silently left at their defaults, so it is an error. */
static config_setting_t *optional_group(const config_setting_t *parent, const char *name, const char *what,
					int *errors)
{
	config_setting_t *s = config_setting_get_member(parent, name);

	if (s && !config_setting_is_group(s)) {
		report(s, "%s%s'%s' must be a group { ... }", what, *what ? ": " : "", name);
		(*errors)++;
		return NULL;
	}
	return s;
}

/* ---- settings ----------------------------------------------------------- */

/* The listener takes a numeric address only (no resolver at start): a host
 * name is refused here, with its line, not when smisd binds. */
static int check_listen_address(const config_setting_t *listen, const char *addr)
{
	struct addrinfo hints = { .ai_flags = AI_NUMERICHOST | AI_PASSIVE, .ai_socktype = SOCK_STREAM };
	struct addrinfo *ai = NULL;

	if (getaddrinfo(addr, NULL, &hints, &ai) == 0) {
		freeaddrinfo(ai);
		return 0;
	}
	report(config_setting_get_member(listen, "address"),
	       "listen: 'address' '%s' must be a numeric IPv4 or IPv6 address (\"127.0.0.1\", \"::\")", addr);
	return 1;
}

static int load_settings(struct smisd_generation *g, config_t *cfg)
{
	static const char *const top_keys[] = { "listen", "plugin_dir", "store", "limits", "log",
						"status_poll", "token_issuers", "channels", "strategies",
						"institutions", NULL };
	static const char *const poll_keys[] = { "after_s", "interval_s", "max_polls", NULL };
	static const char *const listen_keys[] = { "address", "port", "threads",
						   "connection_timeout_s", "max_connections", NULL };
	static const char *const store_keys[] = { "path", "phone_hash_key", "batch_max",
						  "commit_before_answer", "commit_delay_ms", "retention_s",
						  NULL };
	static const char *const limits_keys[] = { "max_in_flight", "max_body_bytes",
						   "job_timeout_ms", "prepare_threads", NULL };
	static const char *const log_keys[] = { "level", NULL };
	struct smisd_settings *st = &g->settings;
	config_setting_t *root = config_root_setting(cfg);
	long long v;
	char *s = NULL;
	int errors = check_keys(root, top_keys, "the top level");
	config_setting_t *listen = optional_group(root, "listen", "", &errors);
	config_setting_t *store = optional_group(root, "store", "", &errors);
	config_setting_t *limits = optional_group(root, "limits", "", &errors);
	config_setting_t *logs = optional_group(root, "log", "", &errors);
	config_setting_t *poll = optional_group(root, "status_poll", "", &errors);

	errors += check_keys(listen, listen_keys, "'listen'");
	errors += check_keys(store, store_keys, "'store'");
	errors += check_keys(limits, limits_keys, "'limits'");
	errors += check_keys(logs, log_keys, "'log'");
	errors += check_keys(poll, poll_keys, "'status_poll'");

	st->listen_address = value_memory(listen ? listen : root, strdup("127.0.0.1"), &errors);
	st->listen_port = 8080;
	st->http_threads = 2;
	st->connection_timeout_s = 30;
	st->max_connections = 10000;
	st->store_batch_max = 512;
	st->store_commit_delay_ms = 2;
	st->store_retention_s = 90LL * 86400; /* personal data is not kept for ever by default */
	st->max_in_flight = 8192;
	st->max_body_bytes = 64 * 1024;
	st->job_timeout_ms = 30000;
	st->prepare_threads = 2;
	st->log_level = SMIS_LOG_INFO;

	if (get_string(listen, "address", &st->listen_address, false, "listen") != 0)
		errors++;
	else if (st->listen_address)
		errors += check_listen_address(listen, st->listen_address);
	v = st->listen_port;
	errors += get_int(listen, "port", &v, 0, 65535, "listen") != 0;
	st->listen_port = (int)v;
	v = st->http_threads;
	errors += get_int(listen, "threads", &v, 1, 64, "listen") != 0;
	st->http_threads = (int)v;
	v = st->connection_timeout_s;
	errors += get_int(listen, "connection_timeout_s", &v, 1, 3600, "listen") != 0;
	st->connection_timeout_s = (int)v;
	v = st->max_connections;
	errors += get_int(listen, "max_connections", &v, 16, 1000000, "listen") != 0;
	st->max_connections = (int)v;

	/* Left NULL when in error: no plugin is then loaded (get_plugin),
	 * rather than one of the same name from the default folder. */
	if (get_string(root, "plugin_dir", &s, false, "config") != 0)
		errors++;
	else
		st->plugin_dir = setting_path(g->path, s ? config_setting_get_member(root, "plugin_dir") : root,
					      s ? s : SMIS_PLUGINDIR, &errors);
	free(s);
	s = NULL;

	if (!config_setting_get_member(root, "store")) {
		report(root, "missing required group 'store'");
		errors++;
	} else if (store) {
		if (get_string(store, "path", &s, true, "store") != 0)
			errors++;
		else
			st->store_path = setting_path(g->path, config_setting_get_member(store, "path"), s, &errors);
		free(s);
		s = NULL;
		/* The key that turns phone numbers into pseudonyms: 64 hex digits. */
		if (get_string(store, "phone_hash_key", &s, true, "store") != 0) {
			errors++;
		} else if (parse_hex(s, st->phone_hash_key, 32) != 0) {
			report(config_setting_get_member(store, "phone_hash_key"),
			       "store: 'phone_hash_key' must be 64 hex digits (32 random bytes)");
			errors++;
		} else {
			st->phone_hash_key_len = 32;
		}
		free(s);
		s = NULL;
		v = st->store_batch_max;
		errors += get_int(store, "batch_max", &v, 1, 100000, "store") != 0;
		st->store_batch_max = (int)v;
		errors += get_bool(store, "commit_before_answer", &st->store_commit_before_answer, "store") != 0;
		v = st->store_commit_delay_ms;
		errors += get_int(store, "commit_delay_ms", &v, 0, 1000, "store") != 0;
		st->store_commit_delay_ms = (int)v;
		errors += get_int(store, "retention_s", &st->store_retention_s, 0, 10LL * 366 * 86400, "store") != 0;
	}

	v = st->max_in_flight;
	errors += get_int(limits, "max_in_flight", &v, 1, 1000000, "limits") != 0;
	st->max_in_flight = (int)v;
	v = (long long)st->max_body_bytes;
	errors += get_int(limits, "max_body_bytes", &v, 1024, 16 * 1024 * 1024, "limits") != 0;
	st->max_body_bytes = (size_t)v;
	v = st->job_timeout_ms;
	errors += get_int(limits, "job_timeout_ms", &v, 100, 600000, "limits") != 0;
	st->job_timeout_ms = (long)v;
	v = st->prepare_threads;
	errors += get_int(limits, "prepare_threads", &v, 0, 64, "limits") != 0;
	st->prepare_threads = (int)v;

	v = 600;
	errors += get_int(poll, "after_s", &v, 0, 86400 * 7, "status_poll") != 0;
	st->poll_after_s = (int)v;
	v = 900;
	errors += get_int(poll, "interval_s", &v, 1, 86400, "status_poll") != 0;
	st->poll_interval_s = (int)v;
	v = 4;
	errors += get_int(poll, "max_polls", &v, 0, 100, "status_poll") != 0;
	st->poll_max = (int)v;

	if (get_string(logs, "level", &s, false, "log") != 0) {
		errors++;
	} else if (s) {
		int lvl = smisd_log_level_parse(s);
		if (lvl < 0) {
			report(config_setting_get_member(logs, "level"),
			       "log: 'level' must be debug, info, warn or error");
			errors++;
		} else {
			st->log_level = lvl;
		}
	}
	free(s);
	return errors;
}

/* ---- plugins ------------------------------------------------------------ */

static struct smisd_plugin *get_plugin(struct smisd_generation *g, const char *name,
				       enum smis_plugin_kind kind, const config_setting_t *where)
{
	char err[1024];
	struct smisd_plugin *p, **grown;

	if (!g->settings.plugin_dir)
		return NULL; /* said once, by smisd_generation_load */
	for (size_t i = 0; i < g->n_plugins; i++)
		if (strcmp(g->plugins[i]->name, name) == 0) {
			if (g->plugins[i]->desc->kind != kind) {
				report(where, "plugin '%s' is not a %s plugin", name,
				       kind == SMIS_PLUGIN_CHANNEL ? "channel" : "strategy");
				return NULL;
			}
			return g->plugins[i];
		}
	p = smisd_plugin_load(g->settings.plugin_dir, name, kind, err, sizeof(err));
	if (!p) {
		report(where, "%s", err);
		smisd_metric_add("smis_plugin_load_failures_total", "", 1);
		return NULL;
	}
	grown = realloc(g->plugins, (g->n_plugins + 1) * sizeof(*grown));
	if (!grown) {
		report(where, "out of memory reading this setting");
		smisd_plugin_free(p);
		return NULL;
	}
	g->plugins = grown;
	g->plugins[g->n_plugins++] = p;
	return p;
}

static int valid_instance_name(const char *n)
{
	size_t len = strlen(n);
	if (len == 0 || len > SMISD_INSTANCE_NAME_MAX)
		return 0;
	for (; *n; n++)
		if (!((*n >= 'a' && *n <= 'z') || (*n >= '0' && *n <= '9') || *n == '_' || *n == '-'))
			return 0;
	return 1;
}

/* ca_file: relative to the configuration's folder, like every path in it,
 * and read now: curl would only find a missing or unreadable file at the
 * first request, and fail every TLS call of the channel from then on. */
static int load_ca_file(struct smisd_http_settings *h, const config_setting_t *grp, const char *conf_path,
			const char *what)
{
	char *s = NULL;
	struct stat st;
	FILE *f;
	int errors = 0;

	if (get_string(grp, "ca_file", &s, false, what) != 0)
		return 1;
	if (!s)
		return 0;
	h->ca_file = setting_path(conf_path, config_setting_get_member(grp, "ca_file"), s, &errors);
	free(s);
	if (!h->ca_file)
		return errors;
	/* A folder, a device or a FIFO: nothing curl can read (and a FIFO
	 * would hold fopen() here). */
	if (stat(h->ca_file, &st) == 0 && !S_ISREG(st.st_mode)) {
		report(config_setting_get_member(grp, "ca_file"), "%s: 'ca_file' %s: not a regular file", what,
		       h->ca_file);
		return 1;
	}
	f = fopen(h->ca_file, "r");
	if (!f) {
		report(config_setting_get_member(grp, "ca_file"), "%s: 'ca_file' %s: %s", what, h->ca_file,
		       strerror(errno));
		return 1;
	}
	fclose(f);
	return 0;
}

/* The channel block `blk`'s optional `http = { ... };`. */
static int load_http_settings(struct smisd_http_settings *h, const config_setting_t *blk,
			      const char *conf_path, const char *what)
{
	static const char *const keys[] = { "timeout_ms", "connect_timeout_ms", "verify_tls",
					    "ca_file", "max_connections", NULL };
	long long v;
	int errors = 0;
	const config_setting_t *grp = optional_group(blk, "http", what, &errors);

	errors += check_keys(grp, keys, "'http'");

	h->timeout_ms = 5000;
	h->connect_timeout_ms = 2000;
	h->verify_tls = true;
	h->max_connections = 0;
	v = h->timeout_ms;
	errors += get_int(grp, "timeout_ms", &v, 10, 600000, what) != 0;
	h->timeout_ms = (long)v;
	v = h->connect_timeout_ms;
	errors += get_int(grp, "connect_timeout_ms", &v, 10, 600000, what) != 0;
	h->connect_timeout_ms = (long)v;
	errors += get_bool(grp, "verify_tls", &h->verify_tls, what) != 0;
	errors += load_ca_file(h, grp, conf_path, what);
	v = h->max_connections;
	errors += get_int(grp, "max_connections", &v, 0, 100000, what) != 0;
	h->max_connections = (long)v;
	return errors;
}

/* A required top-level list of blocks, `name = ( { ... }, ... );`: a scalar,
 * an array or a group would read as a list of nothing (or of non-blocks). */
static config_setting_t *required_list(config_t *cfg, const char *name)
{
	config_setting_t *list = config_lookup(cfg, name);

	if (!list) {
		report(config_root_setting(cfg), "missing required list '%s'", name);
		return NULL;
	}
	if (!config_setting_is_list(list)) {
		report(list, "'%s' must be a list ( { ... }, ... )", name);
		return NULL;
	}
	return list;
}

/* Remember the name of a channel block that failed to load; without
 * memory, its steps merely say again that it is missing. */
static void note_unloaded_channel(struct smisd_generation *g, char **name)
{
	char **grown;

	if (!*name || !valid_instance_name(*name) || smisd_generation_channel(g, *name))
		return;
	grown = realloc(g->unloaded_channels, (g->n_unloaded_channels + 1) * sizeof(*grown));
	if (!grown)
		return;
	g->unloaded_channels = grown;
	g->unloaded_channels[g->n_unloaded_channels++] = *name;
	*name = NULL;
}

static int load_channels(struct smisd_generation *g, config_t *cfg)
{
	static const char *const core_keys[] = { "name", "plugin", "http", NULL };
	config_setting_t *list = required_list(cfg, "channels");
	int errors = 0;
	int n;

	if (!list)
		return 1;
	n = config_setting_length(list);
	g->channels = value_memory(list, calloc((size_t)n + 1, sizeof(*g->channels)), &(int){ 0 });
	if (!g->channels)
		return 1;
	for (int i = 0; i < n; i++) {
		config_setting_t *blk = config_setting_get_elem(list, (unsigned)i);
		struct smisd_channel *ch = &g->channels[g->n_channels];
		char *name = NULL, *plugin = NULL;
		char what[128];
		struct smis_config wrap;

		if (!config_setting_is_group(blk)) {
			report(blk, "channels: each entry must be a group { ... }");
			errors++;
			continue;
		}
		if (get_string(blk, "name", &name, true, "channel") != 0 ||
		    get_string(blk, "plugin", &plugin, true, "channel") != 0) {
			errors++;
			goto next;
		}
		if (!valid_instance_name(name)) {
			report(config_setting_get_member(blk, "name"),
			       "channel name '%s' must be 1-%d characters of [a-z0-9_-]", name,
			       SMISD_INSTANCE_NAME_MAX);
			errors++;
			goto next;
		}
		if (smisd_generation_channel(g, name)) {
			report(config_setting_get_member(blk, "name"), "duplicate channel '%s'", name);
			errors++;
			goto next;
		}
		snprintf(what, sizeof(what), "channel '%s'", name);
		ch->plugin = get_plugin(g, plugin, SMIS_PLUGIN_CHANNEL, config_setting_get_member(blk, "plugin"));
		if (!ch->plugin) {
			errors++;
			goto next;
		}
		if (load_http_settings(&ch->http, blk, g->path, what) != 0) {
			errors++;
			goto next;
		}
		ch->ops = ch->plugin->desc->channel;
		ch->caps = ch->plugin->desc->caps;
		ch->self.kind = SMIS_PLUGIN_CHANNEL;
		ch->self.gen = g;
		snprintf(ch->self.component, sizeof(ch->self.component), "plugin:%s/%s", plugin, name);
		if (smisd_config_wrap(&wrap, blk, core_keys) != 0) {
			errors++;
			goto next;
		}
		if (ch->ops->create(&smisd_core_api, &ch->self, &wrap, &ch->state) != 0 || wrap.errors) {
			if (!wrap.errors)
				report(blk, "%s: plugin '%s' refused its configuration", what, plugin);
			if (ch->state)
				ch->ops->destroy(ch->state);
			ch->state = NULL;
			errors++;
		} else if (smisd_config_check_unused(&wrap, what) != 0) {
			ch->ops->destroy(ch->state);
			ch->state = NULL;
			errors++;
		} else {
			ch->name = name;
			name = NULL;
			ch->index = g->n_channels++;
		}
		smisd_config_unwrap(&wrap);
next:
		if (!ch->name) {
			free(ch->http.ca_file);
			memset(ch, 0, sizeof(*ch));
			note_unloaded_channel(g, &name);
		}
		free(name);
		free(plugin);
	}
	return errors;
}

static int load_strategies(struct smisd_generation *g, config_t *cfg)
{
	static const char *const strat_keys[] = { "name", "steps", NULL };
	static const char *const core_keys[] = { "plugin", NULL };
	config_setting_t *list = required_list(cfg, "strategies");
	int errors = 0;
	int n;

	if (!list)
		return 1;
	n = config_setting_length(list);
	g->strategies = value_memory(list, calloc((size_t)n + 1, sizeof(*g->strategies)), &(int){ 0 });
	if (!g->strategies)
		return 1;
	for (int i = 0; i < n; i++) {
		config_setting_t *blk = config_setting_get_elem(list, (unsigned)i);
		config_setting_t *steps = config_setting_get_member(blk, "steps");
		struct smisd_strategy *st = &g->strategies[g->n_strategies];
		char *name = NULL;
		int nsteps, ok = 1;

		errors += check_keys(blk, strat_keys, "a strategy");
		if (get_string(blk, "name", &name, true, "strategy") != 0) {
			errors++;
			continue;
		}
		if (!valid_instance_name(name) || smisd_generation_strategy(g, name)) {
			report(config_setting_get_member(blk, "name"),
			       "strategy name '%s' is invalid or duplicate", name);
			errors++;
			free(name);
			continue;
		}
		if (!steps || !config_setting_is_list(steps) || config_setting_length(steps) == 0) {
			report(steps ? steps : blk, "strategy '%s': 'steps' must be a non-empty list ( {...}, ... )", name);
			errors++;
			free(name);
			continue;
		}
		nsteps = config_setting_length(steps);
		st->steps = value_memory(steps, calloc((size_t)nsteps, sizeof(*st->steps)), &errors);
		st->name = name;
		for (int j = 0; st->steps && j < nsteps; j++) {
			config_setting_t *sb = config_setting_get_elem(steps, (unsigned)j);
			struct smisd_step *step = &st->steps[st->n_steps];
			char *plugin = NULL;
			char what[160];
			struct smis_config wrap;

			if (get_string(sb, "plugin", &plugin, true, "strategy step") != 0) {
				ok = 0;
				continue;
			}
			snprintf(what, sizeof(what), "step %d (%s) of strategy '%s'", j + 1, plugin, name);
			step->plugin = get_plugin(g, plugin, SMIS_PLUGIN_STRATEGY,
						  config_setting_get_member(sb, "plugin"));
			if (!step->plugin || smisd_config_wrap(&wrap, sb, core_keys) != 0) {
				ok = 0;
				free(plugin);
				continue;
			}
			wrap.self = &step->self;
			step->ops = step->plugin->desc->strategy;
			step->self.kind = SMIS_PLUGIN_STRATEGY;
			step->self.gen = g;
			snprintf(step->self.component, sizeof(step->self.component), "plugin:%s/%s#%d",
				 plugin, name, j + 1);
			if (step->ops->create(&smisd_core_api, &step->self, &wrap, &step->state) != 0 ||
			    wrap.errors) {
				if (!wrap.errors)
					report(sb, "%s: plugin refused its configuration", what);
				if (step->state)
					step->ops->destroy(step->state);
				ok = 0;
			} else if (smisd_config_check_unused(&wrap, what) != 0) {
				step->ops->destroy(step->state);
				ok = 0;
			} else {
				st->n_steps++;
			}
			/* A refused step's slot serves the next step: nothing of it
			 * may stay there (a destroyed state passed to destroy()
			 * again when the next step's create failed early). */
			if (step == &st->steps[st->n_steps])
				memset(step, 0, sizeof(*step));
			smisd_config_unwrap(&wrap);
			free(plugin);
		}
		if (!ok || !st->steps) {
			errors++;
		}
		g->n_strategies++;
	}
	return errors;
}

/* A name that is a label value as it is (smis_messages_total{institution=
 * "..."}): a quote or a backslash would end or escape it, a newline start
 * a series of its own. */
static bool valid_institution_name(const char *n)
{
	size_t len = strlen(n);

	return len >= 1 && len <= SMISD_INSTITUTION_NAME_MAX && !strpbrk(n, "\"\\") &&
	       smisd_utf8_valid(n, len, SMISD_UTF8_ONE_LINE);
}

/* A key of two institutions would authenticate as whichever is compared
 * last (smisd_auth_institution_why): one of them could read the other's
 * messages. `hash` is api_keys[k] of the last institution of `g`. */
static int check_key_unique(const struct smisd_generation *g, const config_setting_t *keyl,
			    const unsigned char hash[32], int k)
{
	const struct smisd_institution *in = &g->institutions[g->n_institutions - 1];

	for (size_t m = 0; m + 1 < g->n_institutions; m++)
		for (size_t j = 0; j < g->institutions[m].n_keys; j++)
			if (memcmp(g->institutions[m].key_hashes[j], hash, 32) == 0) {
				report(keyl, "institution '%s': api_keys[%d] is a key of institution '%s' already",
				       in->name, k, g->institutions[m].name);
				return 1;
			}
	return 0;
}

static void *calloc_values(const config_setting_t *s, size_t n, size_t size, int *errors)
{
	return value_memory(s, calloc(n, size), errors);
}

static int load_institutions(struct smisd_generation *g, config_t *cfg)
{
	static const char *const keys[] = { "name", "api_keys", "strategies", "default_strategy",
					    "sender", "allowed_countries", "languages",
					    "requests_per_second", "burst", "daily_quota",
					    "max_per_recipient", "recipient_window_s", "max_sms_segments",
					    "client_ids", NULL };
	config_setting_t *list = required_list(cfg, "institutions");
	int errors = 0;
	int n;

	if (!list)
		return 1;
	n = config_setting_length(list);
	g->institutions = value_memory(list, calloc((size_t)n + 1, sizeof(*g->institutions)), &(int){ 0 });
	if (!g->institutions)
		return 1;
	for (int i = 0; i < n; i++) {
		config_setting_t *blk = config_setting_get_elem(list, (unsigned)i);
		struct smisd_institution *in = &g->institutions[g->n_institutions++];
		config_setting_t *keyl = config_setting_get_member(blk, "api_keys");
		config_setting_t *strl = config_setting_get_member(blk, "strategies");
		config_setting_t *ccl = config_setting_get_member(blk, "allowed_countries");
		config_setting_t *langl = config_setting_get_member(blk, "languages");
		char *def = NULL;

		errors += check_keys(blk, keys, "an institution");
		if (get_string(blk, "name", &in->name, true, "institution") != 0) {
			errors++;
			continue;
		}
		if (!valid_institution_name(in->name)) {
			/* Not echoed: it may hold a newline or bytes that are not text. */
			report(config_setting_get_member(blk, "name"),
			       "institution name must be 1-%d bytes of UTF-8 without double quotes, backslashes"
			       " or control characters",
			       SMISD_INSTITUTION_NAME_MAX);
			errors++;
		}
		for (size_t k = 0; k + 1 < g->n_institutions; k++)
			/* An earlier block without a valid name has none. */
			if (g->institutions[k].name && strcmp(g->institutions[k].name, in->name) == 0) {
				report(blk, "duplicate institution '%s'", in->name);
				errors++;
			}
		/* API keys are stored as "sha256:<64 hex>", never in clear. */
		if (!keyl || !config_setting_is_array(keyl) || config_setting_length(keyl) == 0) {
			report(keyl ? keyl : blk, "institution '%s': 'api_keys' must be a non-empty array of \"sha256:<hex>\"", in->name);
			errors++;
		} else {
			int nk = config_setting_length(keyl);
			in->key_hashes = calloc_values(keyl, (size_t)nk, 32, &errors);
			for (int k = 0; in->key_hashes && k < nk; k++) {
				const char *h = config_setting_get_string_elem(keyl, k);
				if (!h || strncmp(h, "sha256:", 7) != 0 ||
				    parse_hex(h + 7, in->key_hashes[in->n_keys], 32) != 0) {
					report(keyl, "institution '%s': api_keys[%d] must be \"sha256:\" followed by 64 hex digits (see smisctl hash-key)", in->name, k);
					errors++;
				} else {
					errors += check_key_unique(g, keyl, in->key_hashes[in->n_keys], k);
					in->n_keys++;
				}
			}
		}
		if (!strl || !config_setting_is_array(strl) || config_setting_length(strl) == 0) {
			report(strl ? strl : blk, "institution '%s': 'strategies' must be a non-empty array of strategy names", in->name);
			errors++;
		} else {
			int ns = config_setting_length(strl);
			in->allowed = calloc_values(strl, (size_t)ns, sizeof(*in->allowed), &errors);
			for (int k = 0; in->allowed && k < ns; k++) {
				const char *sn = config_setting_get_string_elem(strl, k);
				struct smisd_strategy *s = sn ? smisd_generation_strategy(g, sn) : NULL;
				if (!s) {
					report(strl, "institution '%s': unknown strategy '%s'", in->name, sn ? sn : "?");
					errors++;
				} else {
					in->allowed[in->n_allowed++] = s;
				}
			}
		}
		if (get_string(blk, "default_strategy", &def, true, "institution") != 0) {
			errors++;
		} else {
			in->default_strategy = smisd_generation_strategy(g, def);
			if (!in->default_strategy || !smisd_institution_may_use(in, in->default_strategy)) {
				report(config_setting_get_member(blk, "default_strategy"),
				       "institution '%s': default_strategy '%s' must be one of its 'strategies'",
				       in->name, def);
				errors++;
			}
		}
		free(def);
		if (get_string(blk, "sender", &in->sender, false, "institution") != 0) {
			errors++;
		} else if (in->sender) {
			/* Alphanumeric sender ids are at most 11 GSM characters;
			 * numeric senders are up to 15 digits (E.164). */
			/* A number may be written in E.164 with its '+'. */
			const char *sp = in->sender[0] == '+' ? in->sender + 1 : in->sender;
			size_t len = strlen(sp);
			int digits = 1, alnum = 1;
			for (const char *p = sp; *p; p++) {
				if (*p < '0' || *p > '9')
					digits = 0;
				if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
				      (*p >= '0' && *p <= '9')))
					alnum = 0;
			}
			if (len == 0 || !alnum || (!digits && len > 11) || (digits && len > 15) ||
			    (sp != in->sender && !digits)) {
				report(config_setting_get_member(blk, "sender"),
				       "institution '%s': 'sender' must be 1-11 ASCII letters/digits (alphanumeric sender id) or up to 15 digits (number)",
				       in->name);
				errors++;
			}
		}
		{
			/* Identities (client_id/sub) of gateway tokens that act for
			 * this institution. */
			config_setting_t *cl = config_setting_get_member(blk, "client_ids");
			int nc = cl ? config_setting_length(cl) : 0;
			if (cl && !config_setting_is_array(cl)) {
				report(cl, "institution '%s': 'client_ids' must be an array of strings", in->name);
				errors++;
				nc = 0;
			}
			in->client_ids = calloc_values(cl ? cl : blk, (size_t)nc + 1, sizeof(char *), &errors);
			for (int k = 0; in->client_ids && k < nc; k++) {
				const char *id = config_setting_get_string_elem(cl, k);
				if (!id || !*id || strlen(id) > 255) {
					report(cl, "institution '%s': client_ids[%d] must be a non-empty string", in->name, k);
					errors++;
					break;
				}
				for (size_t m = 0; m + 1 < g->n_institutions; m++)
					for (char **o = g->institutions[m].client_ids; o && *o; o++)
						if (strcmp(*o, id) == 0) {
							report(cl, "client id '%s' belongs to institution '%s' already", id,
							       g->institutions[m].name);
							errors++;
						}
				/* The list ends at its first NULL: stop there. */
				if (!(in->client_ids[k] = value_memory(cl, strdup(id), &errors)))
					break;
			}
		}
		/* A scalar has no elements: it would be read as an empty list. */
		if (ccl && !config_setting_is_array(ccl)) {
			report(ccl, "institution '%s': 'allowed_countries' must be an array of calling codes such as [ \"31\" ]",
			       in->name);
			errors++;
			ccl = NULL;
		}
		if (langl && !config_setting_is_array(langl)) {
			report(langl, "institution '%s': 'languages' must be an array such as [ \"nl\", \"fr\" ]", in->name);
			errors++;
			langl = NULL;
		}
		if (ccl) {
			int nc = config_setting_length(ccl);
			in->allowed_cc = calloc_values(ccl, (size_t)nc + 1, sizeof(char *), &errors);
			for (int k = 0; in->allowed_cc && k < nc; k++) {
				const char *cc = config_setting_get_string_elem(ccl, k);
				size_t l = cc ? strlen(cc) : 0;
				if (l == 0 || l > 3 || strspn(cc, "0123456789") != l || cc[0] == '0') {
					report(ccl, "institution '%s': allowed_countries entries are calling codes such as \"31\"", in->name);
					errors++;
					break;
				}
				if (!(in->allowed_cc[k] = value_memory(ccl, strdup(cc), &errors)))
					break;
			}
		}
		if (langl) {
			int nl = config_setting_length(langl);
			for (int k = 0; k < nl; k++) {
				const char *l = config_setting_get_string_elem(langl, k);
				int known = 0, twice = 0;
				for (int m = 0; m < SMIS_LANG_MAX && l; m++)
					known |= strcmp(l, lang_codes[m]) == 0;
				if (!known) {
					report(langl, "institution '%s': unknown language '%s' (nl, fr, de, en)",
					       in->name, l ? l : "?");
					errors++;
					break;
				}
				/* A repeat would take the place of a language that then
				 * never gets ordered, and its texts would be dropped. */
				for (size_t m = 0; m < in->n_languages; m++)
					twice |= strcmp(in->languages[m], l) == 0;
				if (twice) {
					report(langl, "institution '%s': language '%s' is listed twice", in->name, l);
					errors++;
					break;
				}
				memcpy(in->languages[in->n_languages++], l, 3);
			}
		}
		{
			long long v = 0;
			errors += get_int(blk, "requests_per_second", &v, 0, 1000000, "institution") != 0;
			in->requests_per_second = (double)v;
			v = v * 2 > 10 ? v * 2 : 10;
			errors += get_int(blk, "burst", &v, 1, 10000000, "institution") != 0;
			in->burst = (double)v;
			v = 0;
			errors += get_int(blk, "daily_quota", &v, 0, 1000000000, "institution") != 0;
			in->daily_quota = (long)v;
			/* Against SMS pumping: a number gets at most this many
			 * messages per window from one institution. */
			v = 10;
			errors += get_int(blk, "max_per_recipient", &v, 0, 64, "institution") != 0;
			in->max_per_recipient = (int)v;
			v = 3600;
			errors += get_int(blk, "recipient_window_s", &v, 1, 7 * 86400, "institution") != 0;
			in->recipient_window_s = (int)v;
			v = 0;
			errors += get_int(blk, "max_sms_segments", &v, 0, 255, "institution") != 0;
			in->max_sms_segments = (int)v;
		}
		/* Languages not listed keep the default order after the listed ones. */
		for (int m = 0; m < SMIS_LANG_MAX; m++) {
			int present = 0;
			for (size_t k = 0; k < in->n_languages; k++)
				present |= strcmp(in->languages[k], lang_codes[m]) == 0;
			if (!present && in->n_languages < SMIS_LANG_MAX)
				memcpy(in->languages[in->n_languages++], lang_codes[m], 3);
		}
	}
	return errors;
}

/* Gateway token issuers: token_issuers = ( { issuer; audience; key_file;
 * max_skew_s; } ). Keys are read now, so a reload picks up rotated keys. */
static int load_issuers(struct smisd_generation *g, config_t *cfg)
{
	static const char *const keys[] = { "issuer", "audience", "key_file", "max_skew_s", NULL };
	config_setting_t *list = config_lookup(cfg, "token_issuers");
	int errors = 0, n;

	if (!list)
		return 0;
	if (!config_setting_is_list(list)) {
		report(list, "'token_issuers' must be a list ( { ... }, ... )");
		return 1;
	}
	n = config_setting_length(list);
	g->issuers = value_memory(list, calloc((size_t)n + 1, sizeof(*g->issuers)), &(int){ 0 });
	if (!g->issuers)
		return 1;
	for (int i = 0; i < n; i++) {
		config_setting_t *blk = config_setting_get_elem(list, (unsigned)i);
		char *iss = NULL, *aud = NULL, *file = NULL, *path = NULL;
		long long skew = 60;
		char err[512];

		errors += check_keys(blk, keys, "a token issuer");
		if (get_string(blk, "issuer", &iss, true, "token issuer") != 0 ||
		    get_string(blk, "audience", &aud, true, "token issuer") != 0 ||
		    get_string(blk, "key_file", &file, true, "token issuer") != 0 ||
		    get_int(blk, "max_skew_s", &skew, 0, SMISD_JWT_MAX_SKEW, "token issuer") != 0) {
			errors++;
		} else {
			path = setting_path(g->path, config_setting_get_member(blk, "key_file"), file, &errors);
			struct smisd_jwt_issuer *is = path ? smisd_jwt_issuer_new(iss, aud, path, (int)skew, err, sizeof(err)) : NULL;
			if (path && !is) {
				report(config_setting_get_member(blk, "key_file"), "token issuer '%s': %s", iss, err);
				errors++;
			} else if (is) {
				g->issuers[g->n_issuers++] = is;
			}
		}
		free(iss);
		free(aud);
		free(file);
		free(path);
	}
	return errors;
}

/* ---- lifecycle ------------------------------------------------------------ */

static void generation_free(struct smisd_generation *g)
{
	if (!g)
		return;
	for (size_t i = 0; i < g->n_institutions; i++) {
		struct smisd_institution *in = &g->institutions[i];
		free(in->name);
		free(in->key_hashes);
		free(in->allowed);
		free(in->sender);
		for (char **c = in->allowed_cc; c && *c; c++)
			free(*c);
		free(in->allowed_cc);
		for (char **c = in->client_ids; c && *c; c++)
			free(*c);
		free(in->client_ids);
	}
	free(g->institutions);
	for (size_t i = 0; i < g->n_issuers; i++)
		smisd_jwt_issuer_free(g->issuers[i]);
	free(g->issuers);
	for (size_t i = 0; i < g->n_strategies; i++) {
		struct smisd_strategy *s = &g->strategies[i];
		for (size_t j = 0; j < s->n_steps; j++)
			s->steps[j].ops->destroy(s->steps[j].state);
		free(s->steps);
		free(s->name);
	}
	free(g->strategies);
	for (size_t i = 0; i < g->n_channels; i++) {
		g->channels[i].ops->destroy(g->channels[i].state);
		free(g->channels[i].name);
		free(g->channels[i].http.ca_file);
	}
	free(g->channels);
	for (size_t i = 0; i < g->n_unloaded_channels; i++)
		free(g->unloaded_channels[i]);
	free(g->unloaded_channels);
	/* Plugins last: their code must outlive their instances. */
	for (size_t i = 0; i < g->n_plugins; i++)
		smisd_plugin_free(g->plugins[i]);
	free(g->plugins);
	free(g->settings.listen_address);
	free(g->settings.plugin_dir);
	free(g->settings.store_path);
	free(g->path);
	free(g);
}

static void report_include(void *arg, const char *message)
{
	(void)arg;
	smisd_config_report(NULL, "%s", message);
}

/* Without a plugin_dir no channel or strategy plugin is loaded, so the
 * settings of their blocks are not checked: the operator is told why
 * their errors, if any, will only show once plugin_dir is fixed. */
static void report_plugins_skipped(config_t *cfg)
{
	config_setting_t *dir = config_lookup(cfg, "plugin_dir");

	report(dir ? dir : config_root_setting(cfg),
	       "no plugin loaded, channel and strategy step settings not checked: 'plugin_dir' is in error");
}

struct smisd_generation *smisd_generation_load(const char *path)
{
	static atomic_ulong next_id = 1;
	struct smisd_generation *g = calloc(1, sizeof(*g));
	config_t cfg;
	char *inc, *dir;
	int errors = 0;

	/* Said, as every other reason a load fails: --check-config and a
	 * refused reload stayed silent. */
	if (!g) {
		smisd_config_report(NULL, "%s: out of memory", path);
		return NULL;
	}
	config_init(&cfg);
	g->path = strdup(path);
	inc = strdup(path);
	if (!g->path || !inc) {
		smisd_config_report(NULL, "%s: out of memory", path);
		free(inc);
		config_destroy(&cfg);
		generation_free(g);
		return NULL;
	}
	dir = dirname(inc);
	config_set_include_dir(&cfg, dir);
	if (smis_config_check_includes(path, dir, report_include, NULL) != 0) {
		free(inc);
		config_destroy(&cfg);
		generation_free(g);
		return NULL;
	}
	if (!config_read_file(&cfg, path)) {
		const char *f = config_error_file(&cfg);
		if (config_error_type(&cfg) == CONFIG_ERR_FILE_IO)
			smisd_config_report(NULL, "%s: cannot read configuration file", path);
		else
			smisd_config_report(NULL, "%s:%d: %s", f ? f : path,
					    config_error_line(&cfg), config_error_text(&cfg));
		free(inc);
		config_destroy(&cfg);
		generation_free(g);
		return NULL;
	}
	free(inc);
	/* An error in the settings does not hide those of the blocks below
	 * (one --check-config run reports them all): they depend on the
	 * settings only through plugin_dir. */
	errors += load_settings(g, &cfg);
	if (!g->settings.plugin_dir)
		report_plugins_skipped(&cfg);
	errors += load_channels(g, &cfg);
	errors += load_strategies(g, &cfg);
	errors += load_institutions(g, &cfg);
	errors += load_issuers(g, &cfg);
	config_destroy(&cfg);
	if (errors) {
		generation_free(g);
		return NULL;
	}
	atomic_init(&g->refs, 1);
	g->id = atomic_fetch_add(&next_id, 1);
	return g;
}

struct smisd_generation *smisd_generation_ref(struct smisd_generation *g)
{
	if (g)
		atomic_fetch_add(&g->refs, 1);
	return g;
}

void smisd_generation_unref(struct smisd_generation *g)
{
	if (g && atomic_fetch_sub(&g->refs, 1) == 1)
		generation_free(g);
}

const struct smisd_channel *smisd_generation_channel(const struct smisd_generation *g,
						     const char *name)
{
	for (size_t i = 0; i < g->n_channels; i++)
		if (g->channels[i].name && strcmp(g->channels[i].name, name) == 0)
			return &g->channels[i];
	return NULL;
}

const char *smisd_generation_unloaded_channel(const struct smisd_generation *g, const char *name)
{
	for (size_t i = 0; i < g->n_unloaded_channels; i++)
		if (strcmp(g->unloaded_channels[i], name) == 0)
			return g->unloaded_channels[i];
	return NULL;
}

struct smisd_strategy *smisd_generation_strategy(const struct smisd_generation *g,
						 const char *name)
{
	for (size_t i = 0; i < g->n_strategies; i++)
		if (g->strategies[i].name && strcmp(g->strategies[i].name, name) == 0)
			return &g->strategies[i];
	return NULL;
}

bool smisd_institution_may_use(const struct smisd_institution *inst,
			       const struct smisd_strategy *s)
{
	for (size_t i = 0; i < inst->n_allowed; i++)
		if (inst->allowed[i] == s)
			return true;
	return false;
}

/* The current generation: a mutex is enough, acquire is two atomic ops
 * under it and happens once per request. */
static pthread_mutex_t current_lock = PTHREAD_MUTEX_INITIALIZER;
static struct smisd_generation *current;

struct smisd_generation *smisd_generation_acquire(void)
{
	struct smisd_generation *g;
	pthread_mutex_lock(&current_lock);
	g = smisd_generation_ref(current);
	pthread_mutex_unlock(&current_lock);
	return g;
}

void smisd_generation_swap(struct smisd_generation *g)
{
	struct smisd_generation *old;
	pthread_mutex_lock(&current_lock);
	old = current;
	current = g;
	pthread_mutex_unlock(&current_lock);
	smisd_generation_unref(old);
}
