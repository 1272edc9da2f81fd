/*
 * util.c - small helpers of ringring-sim: clocks, case-insensitive JSON
 * access (RingRing's SDKs send both PascalCase and camelCase keys), reply
 * construction and RingRing's code descriptions.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "json_reuse.h"
#include "sim.h"

int64_t sim_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t sim_mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* One tokener per thread, reset before each parse: creating and freeing one
 * per request was a measurable share of a send's cost under the bench. Only
 * a tokener whose last parse succeeded is kept (lib/json_reuse.h says why).
 * Depth 16, as the strict parse has always allowed. */
static struct smis_json_thread_tokener request_tokener = SMIS_JSON_THREAD_TOKENER(16, 0);

/* JSON's whitespace may follow the value (RFC 8259's JSON-text); anything
 * else after it makes the body no JSON, as RingRing's parser would say. */
struct json_object *sim_json_parse(const char *body, size_t len)
{
	return smis_json_thread_parse(&request_tokener, body, len);
}

struct json_object *sim_json_get(struct json_object *obj, const char *key)
{
	struct json_object *found = NULL;

	if (!json_object_is_type(obj, json_type_object))
		return NULL;
	json_object_object_foreach(obj, k, v) {
		if (strcasecmp(k, key) == 0) {
			found = v;
			break;
		}
	}
	return found;
}

bool sim_json_int(struct json_object *v, long long *out)
{
	const char *s;
	char *end = NULL;

	switch (json_object_get_type(v)) {
	case json_type_int:
		*out = (long long)json_object_get_int64(v);
		return true;
	case json_type_string:
		s = json_object_get_string(v);
		if (!*s)
			return false;
		errno = 0;
		*out = strtoll(s, &end, 10);
		return errno == 0 && end != s && *end == '\0';
	default:
		return false;
	}
}

const char *sim_json_str(struct json_object *v)
{
	return json_object_is_type(v, json_type_string) ? json_object_get_string(v) : NULL;
}

/* RingRing's DLR shows "2018-05-04 14:20:56", local time, no zone. */
void sim_format_time(int64_t ms, char *buf, size_t len)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;

	if (!localtime_r(&t, &tm) || strftime(buf, len, "%Y-%m-%d %H:%M:%S", &tm) == 0)
		snprintf(buf, len, "%s", "");
}

/* Logs show the country code and the last two digits only. */
void sim_mask_number(const char *num, char *buf, size_t len)
{
	size_t n = num ? strlen(num) : 0;

	if (n < 6)
		snprintf(buf, len, "***");
	else
		snprintf(buf, len, "%.2s****%s", num, num + n - 2);
}

int sim_reply_text(struct sim_reply *r, unsigned status, const char *ctype, const char *text)
{
	size_t n = strlen(text);

	r->body = malloc(n + 1);
	if (!r->body)
		return -ENOMEM;
	memcpy(r->body, text, n + 1);
	r->len = n;
	r->status = status;
	r->content_type = ctype;
	return 0;
}

int sim_reply_json(struct sim_reply *r, unsigned status, struct json_object *obj)
{
	const char *s;
	size_t n = 0;

	s = json_object_to_json_string_length(
		obj, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &n);
	if (!s)
		return -ENOMEM;
	r->body = malloc(n + 1);
	if (!r->body)
		return -ENOMEM;
	memcpy(r->body, s, n + 1);
	r->len = n;
	r->status = status;
	r->content_type = "application/json; charset=utf-8";
	return 0;
}

/* json-c's escapes: the short forms where JSON has one, else \u00xx in
 * lower case; NULL for a byte json-c writes as it is (UTF-8, DEL, '/'). */
static const char *json_escape(unsigned char c, char u[7])
{
	static const char hex[] = "0123456789abcdef";

	switch (c) {
	case '"':
		return "\\\"";
	case '\\':
		return "\\\\";
	case '\b':
		return "\\b";
	case '\f':
		return "\\f";
	case '\n':
		return "\\n";
	case '\r':
		return "\\r";
	case '\t':
		return "\\t";
	}
	if (c >= 0x20)
		return NULL;
	memcpy(u, "\\u00", 4);
	u[4] = hex[c >> 4];
	u[5] = hex[c & 0xf];
	u[6] = '\0';
	return u;
}

void sim_buf_json_string(struct sim_buf *b, const char *s)
{
	const char *run = s;
	char u[7];

	sim_buf_add(b, "\"", 1);
	for (; *s; s++) {
		const char *esc = json_escape((unsigned char)*s, u);

		if (!esc)
			continue;
		sim_buf_add(b, run, (size_t)(s - run));
		sim_buf_str(b, esc);
		run = s + 1;
	}
	sim_buf_add(b, run, (size_t)(s - run));
	sim_buf_add(b, "\"", 1);
}

int sim_reply_buf(struct sim_reply *r, unsigned status, struct sim_buf *b)
{
	if (b->failed || !b->s)
		return -ENOMEM;
	r->body = b->s;
	r->len = b->len;
	r->status = status;
	r->content_type = "application/json; charset=utf-8";
	b->s = NULL;
	return 0;
}

bool sim_parse_long(const char *s, long min, long max, long *out)
{
	char *end = NULL;
	long v;

	if (!s || !*s)
		return false;
	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || *end || v < min || v > max)
		return false;
	*out = v;
	return true;
}

/* Texts of the official Java SDK's Error enum (R2). */
const char *sim_result_description(long long code)
{
	static const char *const texts[] = {
		[0] = "Success",
		[1] = "Internal error",
		[2] = "Gateway not active",
		[3] = "TimeScheduled invalid",
		[4] = "Reference too long",
		[5] = "Number From invalid",
		[6] = "Number From invalid",
		[7] = "Message empty",
		[8] = "Message too long",
		[9] = "Number To invalid",
		[10] = "Number To invalid",
		[11] = "Application not associated with a right AppId",
		[12] = "ApiKey invalid",
		[13] = "XML or JSON invalid",
		[14] = "ApiKey Invalid",
		[15] = "IP Address denied",
		[16] = "RIP invalid",
		[17] = "StatusUrl invalid",
		[18] = "StatusMethod invalid",
		[19] = "TimeValidity invalid",
		[20] = "Number To limit reached",
		[21] = "Out of Time Window",
		[22] = "TimeValidity invalid",
		[23] = "TimeSchedule invalid",
		[24] = "MaxRecords invalid",
		[25] = "MaxRecords invalid",
		[26] = "MessageId invalid",
		[27] = "Message already cancelled",
		[29] = "MessageId not found",
		[30] = "X-RateLimit reached",
		[31] = "SenderId invalid",
		[32] = "Number To Blacklisted",
		[33] = "StatusFormat invalid",
		[34] = "Maintenance, please retry later",
		[35] = "Trial Period Expired",
		[36] = "Mobile Not Authorized",
		[37] = "Trial Quota Limit Reached",
	};

	if (code >= 0 && code < (long long)(sizeof(texts) / sizeof(texts[0])) && texts[code])
		return texts[code];
	return "Error";
}

/* StatusCode ranges of R7. */
const char *sim_status_description(long code)
{
	if (code < 100)
		return "Not sent";
	if (code < 200)
		return "Pending";
	if (code <= 201)
		return "Delivered";
	if (code >= 300 && code < 400)
		return "Not delivered";
	if (code >= 400 && code < 500)
		return "Unknown";
	if (code >= 800 && code < 900)
		return "Not delivered (internal error)";
	if (code >= 900 && code < 1000)
		return "In progress";
	return "Unknown";
}
