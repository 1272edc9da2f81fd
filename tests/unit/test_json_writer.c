/*
 * test_json_writer.c - the answer's JSON writer, checked against json-c's
 * parser: whatever it writes must parse back to what was written; and the
 * JSON log lines, which share its escaping.
 */
#include "config.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <CUnit/Basic.h>
#include <json-c/json.h>

#include "json_writer.h"
#include "log.h"
#include "utf8.h"

static json_object *parse(const char *text)
{
	json_tokener *tok = json_tokener_new();
	json_object *o;
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
	o = json_tokener_parse_ex(tok, text, (int)strlen(text));
	if (json_tokener_get_error(tok) != json_tokener_success || json_tokener_get_parse_end(tok) != strlen(text)) {
		json_object_put(o);
		o = NULL;
	}
	json_tokener_free(tok);
	return o;
}

/* [s] as the writer writes it (the caller frees it), once it is known to
 * parse back to s. */
static char *array_round_trip(const char *s)
{
	struct smisd_jw w;
	char *text;
	json_object *o;

	smisd_jw_init(&w);
	smisd_jw_array_begin(&w, NULL);
	smisd_jw_string(&w, NULL, s);
	smisd_jw_array_end(&w);
	text = smisd_jw_finish(&w);
	CU_ASSERT_PTR_NOT_NULL_FATAL(text);
	o = parse(text);
	CU_ASSERT_PTR_NOT_NULL_FATAL(o);
	CU_ASSERT_STRING_EQUAL(json_object_get_string(json_object_array_get_idx(o, 0)), s);
	json_object_put(o);
	return text;
}

/* {"s":s} as the writer writes it (the caller frees it). */
static char *object_of(const char *s)
{
	struct smisd_jw w;

	smisd_jw_init(&w);
	smisd_jw_object_begin(&w, NULL);
	smisd_jw_string(&w, "s", s);
	smisd_jw_object_end(&w);
	return smisd_jw_finish(&w);
}

/* Every ASCII byte but NUL, inside a string between others, parses back
 * to the same bytes; so does UTF-8 beyond ASCII, copied as it is. */
static void test_every_byte_round_trips(void)
{
	for (int c = 1; c < 0x80; c++) {
		char s[8] = { 'a', (char)c, 'b', (char)c, '\0' };
		char *text = object_of(s);
		json_object *o;

		CU_ASSERT_PTR_NOT_NULL_FATAL(text);
		o = parse(text);
		CU_ASSERT_PTR_NOT_NULL(o);
		if (o) {
			json_object *v = NULL;
			CU_ASSERT(json_object_object_get_ex(o, "s", &v));
			CU_ASSERT_STRING_EQUAL(json_object_get_string(v), s);
			json_object_put(o);
		} else {
			fprintf(stderr, "\n  byte 0x%02x: %s does not parse\n", c, text);
		}
		/* Control characters never appear raw in the text. */
		for (const char *p = text; *p; p++)
			CU_ASSERT((unsigned char)*p >= 0x20);
		free(text);
	}
	free(array_round_trip("caf\xc3\xa9 \xe2\x82\xac"));
}

/* The escape of the character that opens each text ("" for none), and how
 * many bytes of the text it stands for. */
static void test_escapes_are_the_short_forms(void)
{
	static const struct {
		const char *text, *escape;
		size_t used;
	} cases[] = {
		{ "\"", "\\\"", 1 },
		{ "\\", "\\\\", 1 },
		{ "\n", "\\n", 1 },
		{ "\t", "\\t", 1 },
		{ "\x01", "\\u0001", 1 },
		{ "\x1f", "\\u001f", 1 },
		{ "/", "", 1 },
		{ " ", "", 1 },
		/* Well-formed UTF-8 is copied whole. */
		{ "\xc3\xa9", "", 2 },
		{ "\xe2\x82\xac", "", 3 },
		{ "\xf0\x9f\x98\x80", "", 4 },
		/* C1 controls, U+0080-U+009F (U+009B is a terminal's CSI): both
		 * bytes as one \u escape. Not U+00A0 nor a lone C2. */
		{ "\xc2\x9b" "2J", "\\u009b", 2 },
		{ "\xc2\x80", "\\u0080", 2 },
		{ "\xc2\x9f", "\\u009f", 2 },
		{ "\xc2\xa0", "", 2 },
		/* A byte that is part of no well-formed character: U+FFFD for
		 * it alone (a lone C2 or 0x9B, a cut sequence, an overlong
		 * form, a surrogate, 0xFF). */
		{ "\xc2", "\xef\xbf\xbd", 1 },
		{ "\xc2" "A", "\xef\xbf\xbd", 1 },
		{ "\x9b" "2J", "\xef\xbf\xbd", 1 },
		{ "\xe2\x82", "\xef\xbf\xbd", 1 },
		{ "\xc0\xaf", "\xef\xbf\xbd", 1 },
		{ "\xed\xa0\x80", "\xef\xbf\xbd", 1 },
		{ "\xff", "\xef\xbf\xbd", 1 },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char esc[7] = "";
		size_t used = 0;
		CU_ASSERT_EQUAL(smisd_json_escape_char(cases[i].text, esc, &used), strlen(cases[i].escape));
		CU_ASSERT_STRING_EQUAL(esc, cases[i].escape);
		CU_ASSERT_EQUAL(used, cases[i].used);
	}
}

/* No C0 nor C1 control is raw in text (C1: C2 80 to C2 9F). */
static bool no_raw_controls(const char *text)
{
	for (const unsigned char *p = (const unsigned char *)text; *p; p++)
		if (*p < 0x20 || (p[0] == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f))
			return false;
	return true;
}

/* Every C1 control, between other characters (U+00A0 right after one), is
 * written as its \u escape and parses back to the same text. */
static void test_c1_controls_are_escaped(void)
{
	for (int c = 0x80; c < 0xa0; c++) {
		char s[16], want[32], *text;

		snprintf(s, sizeof(s), "a%c%c\xc2\xa0" "b", 0xc2, c);
		snprintf(want, sizeof(want), "[\"a\\u00%02x\xc2\xa0" "b\"]", c);
		text = array_round_trip(s);
		CU_ASSERT_STRING_EQUAL(text, want);
		CU_ASSERT(no_raw_controls(text));
		free(text);
	}
}

/* A text json-c wrote, C1 controls raw: each becomes its \u escape, the
 * rest (U+00A0, U+00E9) is copied, and the text parses back to what
 * json-c was given. */
static void test_json_c_text_c1_escaped(void)
{
	json_object *o = json_object_new_object(), *back;
	const char *raw;
	char *text;

	json_object_object_add(o, "device", json_object_new_string("nl\xc2\x9b[2J\xc2\x85\xc2\xa0phone"));
	json_object_object_add(o, "k\xc2\x80", json_object_new_string("end \xc2\x9f"));
	json_object_object_add(o, "caf\xc3\xa9", json_object_new_string("\xc2\xa0"));
	raw = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
	CU_ASSERT_FALSE(no_raw_controls(raw)); /* what it is for */
	text = smisd_json_text_safe(raw);
	CU_ASSERT_PTR_NOT_NULL_FATAL(text);
	CU_ASSERT_STRING_EQUAL(text, "{\"device\":\"nl\\u009b[2J\\u0085\xc2\xa0phone\",\"k\\u0080\":\"end \\u009f\","
				     "\"caf\xc3\xa9\":\"\xc2\xa0\"}");
	CU_ASSERT(no_raw_controls(text));
	back = parse(text);
	CU_ASSERT_PTR_NOT_NULL_FATAL(back);
	CU_ASSERT_STRING_EQUAL(json_object_to_json_string_ext(back, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE),
			       raw);
	json_object_put(back);
	free(text);
	text = smisd_json_text_safe("");
	CU_ASSERT_STRING_EQUAL(text, "");
	free(text);
	CU_ASSERT_PTR_NULL(smisd_json_text_safe(NULL));
	json_object_put(o);
}

/* A log line (written to stderr, often a terminal) escapes C0 and C1
 * controls in each of its strings alike: it holds none raw, and its
 * members parse back to what was logged. */
/* The line smisd_log writes to stderr for (component, msg_id, msg), its
 * newline cut off, into line (cap bytes). */
static void log_line(const char *component, const char *msg_id, const char *msg, char *line, size_t cap)
{
	FILE *f = tmpfile();
	size_t n;
	int saved;

	CU_ASSERT_PTR_NOT_NULL_FATAL(f);
	fflush(stderr);
	saved = dup(STDERR_FILENO);
	dup2(fileno(f), STDERR_FILENO);
	smisd_log(SMIS_LOG_ERROR, component, msg_id, "%s", msg);
	dup2(saved, STDERR_FILENO);
	close(saved);
	rewind(f);
	n = fread(line, 1, cap - 1, f);
	line[n] = '\0';
	fclose(f);
	CU_ASSERT_FATAL(n > 0 && line[n - 1] == '\n');
	line[n - 1] = '\0';
}

/* The log line parses to these component, message_id and msg. */
static void check_log_members(const char *line, const char *component, const char *msg_id, const char *msg)
{
	json_object *o = parse(line), *v;

	CU_ASSERT_PTR_NOT_NULL_FATAL(o);
	CU_ASSERT(json_object_object_get_ex(o, "msg", &v));
	CU_ASSERT_STRING_EQUAL(json_object_get_string(v), msg);
	CU_ASSERT(json_object_object_get_ex(o, "component", &v));
	CU_ASSERT_STRING_EQUAL(json_object_get_string(v), component);
	CU_ASSERT(json_object_object_get_ex(o, "message_id", &v));
	CU_ASSERT_STRING_EQUAL(json_object_get_string(v), msg_id);
	json_object_put(o);
}

static void test_log_line_escapes_controls(void)
{
	const char *msg = "upstream said \x1b[31m\xc2\x9b" "2J\xc2\x85 caf\xc3\xa9";
	char line[1024];

	log_line("plug\xc2\x9bin", "msg_\xc2\x90", msg, line, sizeof(line));
	CU_ASSERT(no_raw_controls(line));
	CU_ASSERT_PTR_NOT_NULL(strstr(line, "\"msg\":\"upstream said \\u001b[31m\\u009b2J\\u0085 caf\xc3\xa9\""));
	check_log_members(line, "plug\xc2\x9bin", "msg_\xc2\x90", msg);
}

/* Bytes that are no UTF-8 (a lone 0x9B, a character cut short, an
 * overlong form, a surrogate, 0xFF), in the message, the component or the
 * message id, are each written as U+FFFD: the line stays valid UTF-8 JSON;
 * well-formed characters and the C1 escape are kept. */
static const char bad_utf8[] = "lone \x9b[2J cut \xe2\x82 overlong \xc0\xaf surrogate \xed\xa0\x80 ff \xff"
			       " ok \xe2\x82\xac \xf0\x9f\x98\x80 \xc2\x9b end \xc2";
static const char bad_utf8_replaced[] =
	"lone \xef\xbf\xbd[2J cut \xef\xbf\xbd\xef\xbf\xbd overlong \xef\xbf\xbd\xef\xbf\xbd"
	" surrogate \xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd ff \xef\xbf\xbd"
	" ok \xe2\x82\xac \xf0\x9f\x98\x80 \xc2\x9b end \xef\xbf\xbd";

static void test_log_line_replaces_invalid_utf8(void)
{
	char line[1024];

	log_line("plug\x9bin", "msg_\xc3", bad_utf8, line, sizeof(line));
	CU_ASSERT(smisd_utf8_valid(line, strlen(line), SMISD_UTF8_ONE_LINE));
	CU_ASSERT(no_raw_controls(line));
	check_log_members(line, "plug\xef\xbf\xbdin", "msg_\xef\xbf\xbd", bad_utf8_replaced);
}

/* A message longer than the line once escaped is cut between two whole
 * escapes, wherever the room ends: the line is still one JSON object, its
 * `msg` the start of the message (fuzz_json found lines cut inside an
 * escape: "\u00" or a lone backslash before the closing quote). */
static void test_log_line_cut_between_escapes(void)
{
	static const char *const units[] = { "\x01", "\"", "\\", "\xc2\x9b" };
	char msg[1024], line[4096]; /* msg: what log.c formats at most */

	for (size_t u = 0; u < sizeof(units) / sizeof(units[0]); u++)
		for (size_t lead = 0; lead < 8; lead++) {
			json_object *o, *v;
			size_t len;

			memset(msg, 'a', lead);
			for (len = lead; len + strlen(units[u]) < sizeof(msg); len += strlen(units[u]))
				memcpy(msg + len, units[u], strlen(units[u]));
			msg[len] = '\0';
			log_line("http", "msg_1", msg, line, sizeof(line));
			CU_ASSERT(smisd_utf8_valid(line, strlen(line), SMISD_UTF8_ONE_LINE));
			o = parse(line);
			CU_ASSERT_PTR_NOT_NULL_FATAL(o);
			CU_ASSERT_FATAL(json_object_object_get_ex(o, "msg", &v));
			CU_ASSERT(json_object_get_string_len(v) > 0);
			CU_ASSERT(strncmp(json_object_get_string(v), msg, (size_t)json_object_get_string_len(v)) == 0);
			json_object_put(o);
		}
}

/* An answer's text is valid UTF-8 without raw controls, and its string
 * member "s" is bad_utf8_replaced. */
static void check_answer_replaced(const char *text)
{
	json_object *o, *v = NULL;

	CU_ASSERT_PTR_NOT_NULL_FATAL(text);
	CU_ASSERT(smisd_utf8_valid(text, strlen(text), SMISD_UTF8_ONE_LINE));
	CU_ASSERT(no_raw_controls(text));
	o = parse(text);
	CU_ASSERT_PTR_NOT_NULL_FATAL(o);
	CU_ASSERT(json_object_object_get_ex(o, "s", &v));
	CU_ASSERT_STRING_EQUAL(json_object_get_string(v), bad_utf8_replaced);
	json_object_put(o);
}

/* The API's answers take the same bytes as the log lines: written by the
 * writer or by json-c (then passed through smisd_json_text_safe), each
 * byte that is no UTF-8 is U+FFFD, so that no client gets a text its
 * decoder refuses. */
static void test_answers_replace_invalid_utf8(void)
{
	json_object *o = json_object_new_object();
	const char *raw;
	char *text = object_of(bad_utf8);

	check_answer_replaced(text);
	free(text);

	json_object_object_add(o, "s", json_object_new_string(bad_utf8));
	raw = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
	CU_ASSERT_FALSE(smisd_utf8_valid(raw, strlen(raw), SMISD_UTF8_ONE_LINE)); /* what it is for */
	text = smisd_json_text_safe(raw);
	check_answer_replaced(text);
	free(text);
	json_object_put(o);
}

/* Nesting, commas, null and integers: the text is exactly what JSON
 * wants, byte for byte. */
static void test_structure(void)
{
	struct smisd_jw w;
	char *text;

	smisd_jw_init(&w);
	smisd_jw_object_begin(&w, NULL);
	smisd_jw_string(&w, "id", "msg_1");
	smisd_jw_string(&w, "channel", NULL);
	smisd_jw_array_begin(&w, "empty");
	smisd_jw_array_end(&w);
	smisd_jw_array_begin(&w, "list");
	smisd_jw_string(&w, NULL, "a");
	smisd_jw_object_begin(&w, NULL);
	smisd_jw_int(&w, "min", INT64_MIN);
	smisd_jw_int(&w, "max", INT64_MAX);
	smisd_jw_object_end(&w);
	smisd_jw_int(&w, NULL, -1);
	smisd_jw_array_end(&w);
	smisd_jw_object_begin(&w, "sms");
	smisd_jw_object_end(&w);
	smisd_jw_object_end(&w);
	text = smisd_jw_finish(&w);
	CU_ASSERT_PTR_NOT_NULL_FATAL(text);
	CU_ASSERT_STRING_EQUAL(text, "{\"id\":\"msg_1\",\"channel\":null,\"empty\":[],\"list\":[\"a\","
				     "{\"min\":-9223372036854775808,\"max\":9223372036854775807},-1],\"sms\":{}}");
	free(text);
	/* The writer is empty and reusable after finish. */
	CU_ASSERT_PTR_NULL(w.buf);
	CU_ASSERT_EQUAL(w.depth, 0);
}

/* A long string grows the buffer past its first allocation. */
static void test_grows(void)
{
	size_t n = 100000;
	char *big = malloc(n + 1), *text;

	memset(big, 'x', n);
	big[n / 2] = '"';
	big[n] = '\0';
	text = array_round_trip(big);
	CU_ASSERT_EQUAL(strlen(text), n + 5); /* [" "] and the escaping backslash */
	free(text);
	free(big);
}

/* Misuse gives no text rather than broken JSON. */
static void test_unbalanced_gives_null(void)
{
	struct smisd_jw w;

	smisd_jw_init(&w);
	smisd_jw_object_begin(&w, NULL);
	CU_ASSERT_PTR_NULL(smisd_jw_finish(&w)); /* still open */

	smisd_jw_init(&w);
	smisd_jw_array_end(&w); /* nothing open */
	CU_ASSERT_PTR_NULL(smisd_jw_finish(&w));

	smisd_jw_init(&w);
	for (int i = 0; i <= SMISD_JW_MAX_DEPTH; i++)
		smisd_jw_array_begin(&w, NULL);
	for (int i = 0; i <= SMISD_JW_MAX_DEPTH; i++)
		smisd_jw_array_end(&w);
	CU_ASSERT_PTR_NULL(smisd_jw_finish(&w)); /* too deep */
}

int main(void)
{
	CU_pSuite s;
	unsigned failed;
	if (CU_initialize_registry() != CUE_SUCCESS)
		return 2;
	s = CU_add_suite("json_writer", NULL, NULL);
	CU_add_test(s, "every byte round-trips through json-c", test_every_byte_round_trips);
	CU_add_test(s, "escapes are the short forms", test_escapes_are_the_short_forms);
	CU_add_test(s, "C1 controls are escaped", test_c1_controls_are_escaped);
	CU_add_test(s, "json-c's text gets its C1 controls escaped", test_json_c_text_c1_escaped);
	CU_add_test(s, "log lines escape C0 and C1 controls", test_log_line_escapes_controls);
	CU_add_test(s, "log lines replace bytes that are no UTF-8", test_log_line_replaces_invalid_utf8);
	CU_add_test(s, "a long log line is cut between escapes", test_log_line_cut_between_escapes);
	CU_add_test(s, "answers replace bytes that are no UTF-8", test_answers_replace_invalid_utf8);
	CU_add_test(s, "structure, null and integers", test_structure);
	CU_add_test(s, "buffer grows", test_grows);
	CU_add_test(s, "unbalanced or too deep gives NULL", test_unbalanced_gives_null);
	CU_basic_set_mode(CU_BRM_VERBOSE);
	CU_basic_run_tests();
	failed = CU_get_number_of_failures();
	CU_cleanup_registry();
	return failed ? 1 : 0;
}
