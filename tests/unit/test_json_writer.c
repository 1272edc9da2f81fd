/*
 * test_json_writer.c - the answer's JSON writer, checked against json-c's
 * parser: whatever it writes must parse back to what was written.
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <CUnit/Basic.h>
#include <json-c/json.h>

#include "json_writer.h"

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

/* Every ASCII byte but NUL, inside a string between others, parses back
 * to the same bytes; so does UTF-8 beyond ASCII, copied as it is. */
static void test_every_byte_round_trips(void)
{
	for (int c = 1; c < 0x80; c++) {
		char s[8] = { 'a', (char)c, 'b', (char)c, '\0' };
		struct smisd_jw w;
		char *text;
		json_object *o;

		smisd_jw_init(&w);
		smisd_jw_object_begin(&w, NULL);
		smisd_jw_string(&w, "s", s);
		smisd_jw_object_end(&w);
		text = smisd_jw_finish(&w);
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
	{
		struct smisd_jw w;
		char *text;
		json_object *o;
		const char *utf8 = "caf\xc3\xa9 \xe2\x82\xac";
		smisd_jw_init(&w);
		smisd_jw_array_begin(&w, NULL);
		smisd_jw_string(&w, NULL, utf8);
		smisd_jw_array_end(&w);
		text = smisd_jw_finish(&w);
		CU_ASSERT_PTR_NOT_NULL_FATAL(text);
		o = parse(text);
		CU_ASSERT_PTR_NOT_NULL_FATAL(o);
		CU_ASSERT_STRING_EQUAL(json_object_get_string(json_object_array_get_idx(o, 0)), utf8);
		json_object_put(o);
		free(text);
	}
}

static void test_escapes_are_the_short_forms(void)
{
	char esc[7];
	CU_ASSERT_EQUAL(smisd_json_escape_byte('"', esc), 2);
	CU_ASSERT_STRING_EQUAL(esc, "\\\"");
	CU_ASSERT_EQUAL(smisd_json_escape_byte('\\', esc), 2);
	CU_ASSERT_STRING_EQUAL(esc, "\\\\");
	CU_ASSERT_EQUAL(smisd_json_escape_byte('\n', esc), 2);
	CU_ASSERT_STRING_EQUAL(esc, "\\n");
	CU_ASSERT_EQUAL(smisd_json_escape_byte('\t', esc), 2);
	CU_ASSERT_STRING_EQUAL(esc, "\\t");
	CU_ASSERT_EQUAL(smisd_json_escape_byte(0x01, esc), 6);
	CU_ASSERT_STRING_EQUAL(esc, "\\u0001");
	CU_ASSERT_EQUAL(smisd_json_escape_byte(0x1f, esc), 6);
	CU_ASSERT_STRING_EQUAL(esc, "\\u001f");
	CU_ASSERT_EQUAL(smisd_json_escape_byte('/', esc), 0);
	CU_ASSERT_EQUAL(smisd_json_escape_byte(' ', esc), 0);
	CU_ASSERT_EQUAL(smisd_json_escape_byte(0xc3, esc), 0);
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
	struct smisd_jw w;
	size_t n = 100000;
	char *big = malloc(n + 1), *text;
	json_object *o;

	memset(big, 'x', n);
	big[n / 2] = '"';
	big[n] = '\0';
	smisd_jw_init(&w);
	smisd_jw_array_begin(&w, NULL);
	smisd_jw_string(&w, NULL, big);
	smisd_jw_array_end(&w);
	text = smisd_jw_finish(&w);
	CU_ASSERT_PTR_NOT_NULL_FATAL(text);
	CU_ASSERT_EQUAL(strlen(text), n + 5); /* [" "] and the escaping backslash */
	o = parse(text);
	CU_ASSERT_PTR_NOT_NULL_FATAL(o);
	CU_ASSERT_STRING_EQUAL(json_object_get_string(json_object_array_get_idx(o, 0)), big);
	json_object_put(o);
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
	CU_add_test(s, "structure, null and integers", test_structure);
	CU_add_test(s, "buffer grows", test_grows);
	CU_add_test(s, "unbalanced or too deep gives NULL", test_unbalanced_gives_null);
	CU_basic_set_mode(CU_BRM_VERBOSE);
	CU_basic_run_tests();
	failed = CU_get_number_of_failures();
	CU_cleanup_registry();
	return failed ? 1 : 0;
}
