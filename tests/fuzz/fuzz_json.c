/*
 * fuzz_json.c - what smisd writes as JSON from strings it did not compose
 * itself: the answers' writer (daemon/json_writer.c), a problem's detail and
 * field (daemon/problem.c: a field name or strategy the client sent, cut to
 * fit) and a log line (daemon/log.c: a plugin's or an upstream's text).
 *
 * The input is cut at its NUL bytes into up to four strings. Every output
 * must be valid JSON (json-c, strict, UTF-8 checked) in valid UTF-8 with
 * no raw control character, C0 or C1; a string the writer wrote must read
 * back as the input with each byte that is part of no well-formed UTF-8
 * character as U+FFFD; a log line is one line, one object whose `msg` is a
 * prefix of the text so read.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <json-c/json.h>

#include "fuzz_common.h"
#include "fuzz_json_parse.h"
#include "json_writer.h"
#include "log.h"
#include "problem.h"
#include "utf8_decode.h"

#define N_PARTS 4

/* What a reader of the writer's output gets back for s: s with each byte
 * that starts no well-formed character as U+FFFD (malloc'd). */
static char *as_read(const char *s)
{
	size_t n = strlen(s), len = 0;
	char *out = malloc(3 * n + 1);

	FUZZ_CHECK(out);
	for (size_t i = 0; i < n;) {
		size_t used = smis_utf8_char_len(s + i, n - i);

		if (used == 0) {
			memcpy(out + len, "\xef\xbf\xbd", 3);
			len += 3;
			used = 1;
		} else {
			memcpy(out + len, s + i, used);
			len += used;
		}
		i += used;
	}
	out[len] = '\0';
	return out;
}

/* Valid UTF-8, and no raw C0 or C1 control: a terminal or a collector
 * takes the text as it is. */
static void check_clean(const char *s, size_t n)
{
	for (size_t i = 0; i < n;) {
		uint32_t cp;
		size_t used = smis_utf8_decode(s + i, n - i, &cp);

		FUZZ_CHECK(used > 0);
		FUZZ_CHECK(cp >= 0x20 && !(cp >= 0x80 && cp <= 0x9f));
		i += used;
	}
}

/* The JSON text s, which must be one value. */
static json_object *parse(const char *s, size_t n)
{
	json_object *o = fuzz_json_parse(s, n);

	FUZZ_CHECK(o);
	return o;
}

static const char *member(json_object *o, const char *key)
{
	json_object *v;

	FUZZ_CHECK(json_object_object_get_ex(o, key, &v) && json_object_is_type(v, json_type_string));
	return json_object_get_string(v);
}

/* An answer with every part as a member and in an array. */
static void check_writer(char *const part[N_PARTS])
{
	static const char *const keys[N_PARTS] = { "a", "b", "c", "d" };
	struct smisd_jw w;
	json_object *o, *arr;
	char *text;

	smisd_jw_init(&w);
	smisd_jw_object_begin(&w, NULL);
	for (int i = 0; i < N_PARTS; i++)
		smisd_jw_string(&w, keys[i], part[i]);
	smisd_jw_array_begin(&w, "all");
	for (int i = 0; i < N_PARTS; i++)
		smisd_jw_string(&w, NULL, part[i]);
	smisd_jw_array_end(&w);
	smisd_jw_object_end(&w);
	text = smisd_jw_finish(&w);
	FUZZ_CHECK(text);
	check_clean(text, strlen(text));
	o = parse(text, strlen(text));
	FUZZ_CHECK(json_object_object_get_ex(o, "all", &arr) && json_object_array_length(arr) == N_PARTS);
	for (int i = 0; i < N_PARTS; i++) {
		char *expect = as_read(part[i]);

		FUZZ_CHECK(strcmp(member(o, keys[i]), expect) == 0);
		FUZZ_CHECK(strcmp(json_object_get_string(json_object_array_get_idx(arr, (size_t)i)), expect) == 0);
		free(expect);
	}
	json_object_put(o);
	free(text);
}

/* A problem quoting what the client sent, as request.c makes them. */
static void check_problem(char *const part[N_PARTS])
{
	struct smisd_problem p;
	json_object *o;
	char *text;

	smisd_problem_set(&p, 400, "unknown_field", part[0], "unknown field '%s' in %.40s", part[1], part[2]);
	text = smisd_problem_json(&p, part[3]);
	FUZZ_CHECK(text);
	check_clean(text, strlen(text));
	o = parse(text, strlen(text));
	FUZZ_CHECK(strcmp(member(o, "code"), "unknown_field") == 0);
	member(o, "detail");
	json_object_put(o);
	free(text);
}

/* The member `key` of the log line o is what a reader gets back for the
 * first `max` bytes of s (the logger's own cut), or a prefix of it. */
static void check_log_member(json_object *o, const char *key, const char *s, size_t max)
{
	char *cut = strndup(s, max), *expect;
	const char *got = member(o, key);

	FUZZ_CHECK(cut);
	expect = as_read(cut);
	FUZZ_CHECK(strncmp(got, expect, strlen(got)) == 0);
	free(expect);
	free(cut);
}

/* A log line (written to stderr, read back through a pipe: one line is at
 * most 2 KiB, less than a pipe holds) is one line of one JSON object that
 * holds every member, each as logged or cut short. */
static void check_log(char *const part[N_PARTS])
{
	static char line[8192];
	int fds[2], saved;
	ssize_t n;
	json_object *o;

	FUZZ_CHECK(pipe(fds) == 0);
	saved = dup(STDERR_FILENO);
	FUZZ_CHECK(saved >= 0 && dup2(fds[1], STDERR_FILENO) >= 0);
	smisd_log_request(SMIS_LOG_ERROR, part[0], part[1], part[2], "%s", part[3]);
	dup2(saved, STDERR_FILENO);
	close(saved);
	close(fds[1]);
	n = read(fds[0], line, sizeof(line));
	close(fds[0]);
	FUZZ_CHECK(n > 0 && line[n - 1] == '\n' && memchr(line, '\n', (size_t)n - 1) == NULL);
	check_clean(line, (size_t)n - 1);
	o = parse(line, (size_t)n - 1);
	check_log_member(o, "component", part[0], SIZE_MAX);
	check_log_member(o, "request_id", part[1], SIZE_MAX);
	check_log_member(o, "message_id", part[2], SIZE_MAX);
	check_log_member(o, "msg", part[3], 1023); /* log.c's text[1024] */
	json_object_put(o);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *part[N_PARTS];
	size_t at = 0;

	/* The first N_PARTS - 1 NUL-ended pieces, then the rest with its NULs
	 * dropped; each may be empty. */
	for (int i = 0; i < N_PARTS; i++) {
		size_t len = 0;

		part[i] = malloc(size - at + 1);
		FUZZ_CHECK(part[i]);
		for (; at < size && (data[at] != '\0' || i == N_PARTS - 1); at++)
			if (data[at] != '\0')
				part[i][len++] = (char)data[at];
		part[i][len] = '\0';
		if (at < size)
			at++; /* the NUL that ends this piece */
	}
	check_writer(part);
	check_problem(part);
	check_log(part);
	for (int i = 0; i < N_PARTS; i++)
		free(part[i]);
	return 0;
}
