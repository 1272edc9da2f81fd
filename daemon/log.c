/*
 * log.c - JSON-lines logging. A single write(2) per line keeps lines whole
 * when several threads log at once.
 */
#include "config.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <stdatomic.h>

#include "json_writer.h"
#include "log.h"

/* Set by a reload (main thread) while every other thread logs. */
static atomic_int log_min = SMIS_LOG_INFO;

static const char *const level_names[] = { "debug", "info", "warn", "error" };

void smisd_log_set_level(enum smis_log_level min)
{
	atomic_store_explicit(&log_min, (int)min, memory_order_relaxed);
}

int smisd_log_level_parse(const char *s)
{
	for (int i = 0; i < 4; i++)
		if (strcasecmp(s, level_names[i]) == 0)
			return i;
	return -1;
}

/* Append `s` JSON-escaped to buf at *pos, never past cap - 1. The line
 * goes to a terminal as often as to a collector: no control character, C1
 * included, is left raw in it. Nor is a byte that is not part of a
 * well-formed UTF-8 character (a plugin's or an upstream's text, a "%.40s"
 * cut inside a character): it would make the whole line invalid UTF-8,
 * which a collector may drop; it is written as U+FFFD, as a decoder shows
 * it. smisd_json_escape_char does both, as for the API's answers. */
static void json_escape_into(char *buf, size_t cap, size_t *pos, const char *s)
{
	size_t used;

	for (; *s && *pos + 7 < cap; s += used) {
		char esc[7];
		size_t n = smisd_json_escape_char(s, esc, &used);
		if (n > 0) {
			memcpy(buf + *pos, esc, n);
			*pos += n;
		} else {
			memcpy(buf + *pos, s, used);
			*pos += used;
		}
	}
}

static void logv_full(enum smis_log_level level, const char *component, const char *request_id,
		      const char *msg_id, const char *fmt, va_list ap);

void smisd_logv(enum smis_log_level level, const char *component,
		const char *msg_id, const char *fmt, va_list ap)
{
	logv_full(level, component, NULL, msg_id, fmt, ap);
}

void smisd_log_request(enum smis_log_level level, const char *component, const char *request_id,
		       const char *msg_id, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	logv_full(level, component, request_id, msg_id, fmt, ap);
	va_end(ap);
}

static void __attribute__((format(printf, 5, 0)))
logv_full(enum smis_log_level level, const char *component, const char *request_id,
	  const char *msg_id, const char *fmt, va_list ap)
{
	char text[1024];
	char line[2048];
	size_t pos = 0;
	struct timespec ts;
	struct tm tm;

	if ((int)level < atomic_load_explicit(&log_min, memory_order_relaxed))
		return;
	vsnprintf(text, sizeof(text), fmt, ap);
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	pos += strftime(line, sizeof(line), "{\"ts\":\"%Y-%m-%dT%H:%M:%S", &tm);
	pos += (size_t)snprintf(line + pos, sizeof(line) - pos,
				".%03ldZ\",\"level\":\"%s\",\"component\":\"",
				ts.tv_nsec / 1000000L, level_names[level & 3]);
	json_escape_into(line, sizeof(line), &pos, component ? component : "smisd");
	if (request_id) {
		pos += (size_t)snprintf(line + pos, sizeof(line) - pos, "\",\"request_id\":\"");
		json_escape_into(line, sizeof(line), &pos, request_id);
	}
	if (msg_id) {
		pos += (size_t)snprintf(line + pos, sizeof(line) - pos, "\",\"message_id\":\"");
		json_escape_into(line, sizeof(line), &pos, msg_id);
	}
	pos += (size_t)snprintf(line + pos, sizeof(line) - pos, "\",\"msg\":\"");
	json_escape_into(line, sizeof(line), &pos, text);
	if (pos > sizeof(line) - 4)
		pos = sizeof(line) - 4;
	line[pos++] = '"';
	line[pos++] = '}';
	line[pos++] = '\n';
	if (write(STDERR_FILENO, line, pos) < 0) {
		/* Nowhere left to report a failing stderr. */
	}
}

void smisd_log(enum smis_log_level level, const char *component,
	       const char *msg_id, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	smisd_logv(level, component, msg_id, fmt, ap);
	va_end(ap);
}
