/*
 * log.h - smisd's logger: one JSON object per line on stderr.
 *
 * Log once, at the lowest level that sees the failure. Never pass secrets,
 * message content or phone numbers, whole or in part: name a message by its
 * id (tests/integration/test_privacy.py checks the log at debug level).
 */
#ifndef SMISD_LOG_H
#define SMISD_LOG_H

#include <stdarg.h>
#include <stddef.h>

#include <smis/smis-plugin.h>

void smisd_log_set_level(enum smis_log_level min);
/* Parse "debug|info|warn|error"; returns -1 when unknown. */
int smisd_log_level_parse(const char *s);

/* `component` is e.g. "http", "store", "plugin:ringring/ringring-main";
 * `msg_id` may be NULL. */
void smisd_logv(enum smis_log_level level, const char *component,
		const char *msg_id, const char *fmt, va_list ap);
void smisd_log(enum smis_log_level level, const char *component,
	       const char *msg_id, const char *fmt, ...) SMIS_PRINTF(4, 5);
/* The same with the HTTP request id (returned as X-Request-Id), so that a
 * caller's report can be matched to the log. */
void smisd_log_request(enum smis_log_level level, const char *component, const char *request_id,
		       const char *msg_id, const char *fmt, ...) SMIS_PRINTF(5, 6);

#define SMISD_DEBUG(c, ...) smisd_log(SMIS_LOG_DEBUG, (c), NULL, __VA_ARGS__)
#define SMISD_INFO(c, ...) smisd_log(SMIS_LOG_INFO, (c), NULL, __VA_ARGS__)
#define SMISD_WARN(c, ...) smisd_log(SMIS_LOG_WARN, (c), NULL, __VA_ARGS__)
#define SMISD_ERROR(c, ...) smisd_log(SMIS_LOG_ERROR, (c), NULL, __VA_ARGS__)

#endif
