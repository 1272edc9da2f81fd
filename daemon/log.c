/*
 * log.c - JSON-lines logging. A single write(2) per line keeps lines whole
 * when several threads log at once.
 */
#include "config.h"

#include <stdbool.h>
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

/* A log line being written. Every member is a JSON string, so the line
 * is always inside one: cut anywhere between two whole pieces, it still
 * ends well with '"}' and its newline, for which room is always kept. A
 * piece that does not fit (an escape, a character) is left out whole, and
 * so is the rest of its member, so that no cut ever splits an escape or a
 * character (a lone backslash before the closing quote, "\u00", half of a
 * UTF-8 character: a line no collector reads). */
#define LINE_CAP 2048
#define LINE_END "\"}\n"
/* What the component, the request id and the message id each take at most,
 * escaped (names and ids, far shorter): the line keeps room for `msg`. */
#define LABEL_MAX 256
struct line {
	char buf[LINE_CAP];
	size_t pos;
};

static bool line_put(struct line *l, const char *s, size_t n, size_t end)
{
	if (l->pos + n > end)
		return false;
	memcpy(l->buf + l->pos, s, n);
	l->pos += n;
	return true;
}

/* Append `s` JSON-escaped, up to `max` bytes. The line goes to a terminal
 * as often as to a collector: no control character, C1 included, is left
 * raw in it. Nor is a byte that is not part of a well-formed UTF-8
 * character (a plugin's or an upstream's text, a "%.40s" cut inside a
 * character): it would make the whole line invalid UTF-8, which a
 * collector may drop; it is written as U+FFFD, as a decoder shows it.
 * smisd_json_escape_char does both, as for the API's answers. */
static void line_put_escaped(struct line *l, const char *s, size_t max)
{
	size_t used, end = sizeof(l->buf) - strlen(LINE_END);

	if (l->pos + max < end)
		end = l->pos + max;
	for (; *s; s += used) {
		char esc[7];
		size_t n = smisd_json_escape_char(s, esc, &used);

		if (!line_put(l, n > 0 ? esc : s, n > 0 ? n : used, end))
			return;
	}
}

/* `","key":"` (key a literal) then value escaped: the label members come
 * before `msg`, so there is always room for them. */
static void line_put_member(struct line *l, const char *key, const char *value, size_t max)
{
	l->pos += (size_t)snprintf(l->buf + l->pos, sizeof(l->buf) - l->pos, "\",\"%s\":\"", key);
	line_put_escaped(l, value, max);
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
	char text[1024], stamp[32];
	struct line l = { .pos = 0 };
	struct timespec ts;
	struct tm tm;

	if ((int)level < atomic_load_explicit(&log_min, memory_order_relaxed))
		return;
	vsnprintf(text, sizeof(text), fmt, ap);
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
	l.pos = (size_t)snprintf(l.buf, sizeof(l.buf), "{\"ts\":\"%s.%03ldZ\",\"level\":\"%s\",\"component\":\"",
				 stamp, ts.tv_nsec / 1000000L, level_names[level & 3]);
	line_put_escaped(&l, component ? component : "smisd", LABEL_MAX);
	if (request_id)
		line_put_member(&l, "request_id", request_id, LABEL_MAX);
	if (msg_id)
		line_put_member(&l, "message_id", msg_id, LABEL_MAX);
	line_put_member(&l, "msg", text, sizeof(l.buf));
	memcpy(l.buf + l.pos, LINE_END, strlen(LINE_END));
	l.pos += strlen(LINE_END);
	if (write(STDERR_FILENO, l.buf, l.pos) < 0) {
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
