/*
 * core_api.c - the function table plugins receive (Redis-module style).
 * Plugins never call daemon symbols; everything goes through here.
 */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core_api.h"
#include "generation.h"
#include "log.h"
#include "utf8.h"

static int report_plain;

void smisd_config_report_plain(int plain)
{
	report_plain = plain;
}

static void __attribute__((format(printf, 2, 0)))
config_reportv(const config_setting_t *where, const char *fmt, va_list ap)
{
	char text[768], at[320] = "", line[1088];

	vsnprintf(text, sizeof(text), fmt, ap);
	/* Without a setting, the text names its file (and line) itself. */
	if (where) {
		const char *file = config_setting_source_file(where);
		snprintf(at, sizeof(at), "%s:%d: ", file ? file : "(config)",
			 (int)config_setting_source_line(where));
	}
	/* The file's names and values (and its own name) go to the operator's
	 * terminal as they are with --check-config: one line, no escapes. */
	snprintf(line, sizeof(line), "%s%s", at, text);
	smisd_text_shown(line, line, sizeof(line));
	if (report_plain)
		fprintf(stderr, "%s\n", line);
	else
		smisd_log(SMIS_LOG_ERROR, "config", NULL, "%s", line);
}

void smisd_config_report(const config_setting_t *where, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	config_reportv(where, fmt, ap);
	va_end(ap);
}

int64_t smisd_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t smisd_monotonic_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t smisd_monotonic_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

size_t smisd_concat(char *out, size_t len, ...)
{
	va_list ap;
	size_t total = 0;

	va_start(ap, len);
	for (const char *piece; (piece = va_arg(ap, const char *));) {
		size_t n = strlen(piece);
		if (total < len) {
			size_t room = len - 1 - total;
			memcpy(out + total, piece, n < room ? n : room);
		}
		total += n;
	}
	va_end(ap);
	if (len)
		out[total < len ? total : len - 1] = '\0';
	return total;
}

int smisd_config_wrap(struct smis_config *cfg, config_setting_t *setting,
		      const char *const *core_keys)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->setting = setting;
	cfg->n_children = config_setting_length(setting);
	cfg->used = calloc((size_t)cfg->n_children + 1, 1);
	if (!cfg->used)
		return -ENOMEM;
	for (int i = 0; i < cfg->n_children; i++) {
		const char *name = config_setting_name(config_setting_get_elem(setting, (unsigned)i));
		for (const char *const *k = core_keys; k && *k; k++)
			if (name && strcmp(name, *k) == 0)
				cfg->used[i] = 1;
	}
	return 0;
}

int smisd_config_check_unused(struct smis_config *cfg, const char *what)
{
	int n = 0;
	for (int i = 0; i < cfg->n_children; i++) {
		if (cfg->used[i])
			continue;
		config_setting_t *s = config_setting_get_elem(cfg->setting, (unsigned)i);
		smisd_config_report(s, "unknown setting '%s' in %s",
				    config_setting_name(s) ? config_setting_name(s) : "?", what);
		n++;
	}
	return n;
}

void smisd_config_unwrap(struct smis_config *cfg)
{
	free(cfg->used);
	cfg->used = NULL;
}

/* Find `key` among the block's direct children and mark it read. */
static config_setting_t *cfg_member(struct smis_config *cfg, const char *key)
{
	for (int i = 0; i < cfg->n_children; i++) {
		config_setting_t *s = config_setting_get_elem(cfg->setting, (unsigned)i);
		const char *name = config_setting_name(s);
		if (name && strcmp(name, key) == 0) {
			cfg->used[i] = 1;
			return s;
		}
	}
	return NULL;
}

static int api_config_string(struct smis_config *cfg, const char *key, char **out)
{
	config_setting_t *s = cfg_member(cfg, key);
	const char *v;

	*out = NULL;
	if (!s)
		return -ENOENT;
	v = config_setting_get_string(s);
	if (!v || config_setting_type(s) != CONFIG_TYPE_STRING)
		return -EINVAL;
	*out = strdup(v);
	return *out ? 0 : -ENOMEM;
}

static int api_config_int(struct smis_config *cfg, const char *key, long long *out)
{
	config_setting_t *s = cfg_member(cfg, key);
	if (!s)
		return -ENOENT;
	if (config_setting_type(s) == CONFIG_TYPE_INT) {
		*out = config_setting_get_int(s);
		return 0;
	}
	if (config_setting_type(s) == CONFIG_TYPE_INT64) {
		*out = config_setting_get_int64(s);
		return 0;
	}
	return -EINVAL;
}

static int api_config_bool(struct smis_config *cfg, const char *key, bool *out)
{
	config_setting_t *s = cfg_member(cfg, key);
	if (!s)
		return -ENOENT;
	if (config_setting_type(s) != CONFIG_TYPE_BOOL)
		return -EINVAL;
	*out = config_setting_get_bool(s) != 0;
	return 0;
}

/* Whether `text` quotes the channel that channel_caps just refused because
 * its block failed to load: that block's own error says it already, and
 * "no channel named" would be wrong (it is declared). Still an error. */
static bool names_unloaded_channel(const struct smis_config *cfg, const char *text)
{
	char quoted[64];

	if (!cfg->self || !cfg->self->unloaded_asked)
		return false;
	snprintf(quoted, sizeof(quoted), "'%s'", cfg->self->unloaded_asked);
	return strstr(text, quoted) != NULL;
}

static void __attribute__((format(printf, 3, 4)))
api_config_error(struct smis_config *cfg, const char *key, const char *fmt, ...)
{
	va_list ap;
	config_setting_t *where = NULL;
	char text[768];

	for (int i = 0; key && i < cfg->n_children && !where; i++) {
		config_setting_t *s = config_setting_get_elem(cfg->setting, (unsigned)i);
		if (config_setting_name(s) && strcmp(config_setting_name(s), key) == 0)
			where = s;
	}
	cfg->errors++;
	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	if (names_unloaded_channel(cfg, text))
		return;
	smisd_config_report(where ? where : cfg->setting, "%s", text);
}

static void api_log(struct smis_instance *self, enum smis_log_level level, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	smisd_logv(level, self ? self->component : "plugin", NULL, fmt, ap);
	va_end(ap);
}

static int api_channel_caps(struct smis_instance *self, const char *name, unsigned *caps)
{
	const struct smisd_channel *ch = self && self->gen ? smisd_generation_channel(self->gen, name) : NULL;
	if (self)
		self->unloaded_asked = !ch && self->gen ? smisd_generation_unloaded_channel(self->gen, name) : NULL;
	if (!ch)
		return -ENOENT;
	*caps = ch->caps;
	return 0;
}

static struct smis_http_request *api_http_request_new(const char *method, const char *url)
{
	struct smis_http_request *req = calloc(1, sizeof(*req));
	if (!req)
		return NULL;
	req->method = strdup(method ? method : "GET");
	req->url = strdup(url ? url : "");
	if (!req->method || !req->url) {
		free(req->method);
		free(req->url);
		free(req);
		return NULL;
	}
	return req;
}

static int api_http_request_header(struct smis_http_request *req, const char *name,
				   const char *value)
{
	char line[2048];
	struct curl_slist *l;

	if (!req || !name || !value || strpbrk(name, ":\r\n") || strpbrk(value, "\r\n"))
		return -EINVAL;
	if (smisd_concat(line, sizeof(line), name, ": ", value, NULL) >= sizeof(line))
		return -E2BIG;
	l = curl_slist_append(req->headers, line);
	if (!l)
		return -ENOMEM;
	req->headers = l;
	return 0;
}

static int api_http_request_body(struct smis_http_request *req, const char *body, size_t len)
{
	char *copy = malloc(len + 1);
	if (!copy)
		return -ENOMEM;
	memcpy(copy, body, len);
	copy[len] = '\0';
	free(req->body);
	req->body = copy;
	req->body_len = len;
	return 0;
}

static void api_http_request_free(struct smis_http_request *req)
{
	if (!req)
		return;
	free(req->method);
	free(req->url);
	curl_slist_free_all(req->headers);
	free(req->body);
	free(req);
}

static void *api_alloc(size_t n)
{
	return calloc(1, n ? n : 1);
}

static void api_free(void *p)
{
	free(p);
}

const struct smis_core_api smisd_core_api = {
	.size = sizeof(struct smis_core_api),
	.abi_version = SMIS_PLUGIN_ABI_VERSION,
	.log = api_log,
	.config_string = api_config_string,
	.config_int = api_config_int,
	.config_bool = api_config_bool,
	.config_error = api_config_error,
	.channel_caps = api_channel_caps,
	.http_request_new = api_http_request_new,
	.http_request_header = api_http_request_header,
	.http_request_body = api_http_request_body,
	.http_request_free = api_http_request_free,
	.now_ms = smisd_now_ms,
	.monotonic_ms = smisd_monotonic_ms,
	.alloc = api_alloc,
	.free = api_free,
};
