/* The json-c tokener kept between parses (lib/json_reuse.h): kept after a
 * clean parse, never after one that was cut off. */
#include <CUnit/Basic.h>
#include <json-c/json.h>
#include <pthread.h>
#include <string.h>

#include "json_reuse.h"

/* A high surrogate's escape with the body cut after it, then a body whose
 * first escape a kept tokener would prefix with U+FFFD. */
static const char cut[] = "\"\\ud83d";
static const char next[] = "\"\\u0041\"";

/* Parse all of `text` with `tok`; *clean says whether it ended cleanly. */
static json_object *parse(struct json_tokener *tok, const char *text, bool *clean)
{
	json_object *o = json_tokener_parse_ex(tok, text, (int)strlen(text));

	*clean = o && json_tokener_get_error(tok) == json_tokener_success &&
		 json_tokener_get_parse_end(tok) == strlen(text);
	return o;
}

/* `next` parsed with `tok` gives "A", and tok is fit to keep. */
static void expect_next_reads_a(struct json_tokener *tok)
{
	bool clean;
	json_object *o;

	CU_ASSERT_PTR_NOT_NULL_FATAL(tok);
	o = parse(tok, next, &clean);
	CU_ASSERT_TRUE(clean);
	CU_ASSERT_STRING_EQUAL(json_object_get_string(o), "A");
	json_object_put(o);
}

static void test_slot_cut_parse_dropped(void)
{
	struct json_tokener *slot = NULL;
	bool clean;

	CU_ASSERT_PTR_NULL(parse(smis_json_reuse_get(&slot, 16, 0), cut, &clean));
	CU_ASSERT_FALSE(clean);
	smis_json_reuse_done(&slot, clean);
	CU_ASSERT_PTR_NULL(slot);
	expect_next_reads_a(smis_json_reuse_get(&slot, 16, 0));
	smis_json_reuse_free(&slot);
	CU_ASSERT_PTR_NULL(slot);
}

/* The point of keeping one: a clean parse allocates no new tokener. */
static void test_slot_clean_parse_kept(void)
{
	struct json_tokener *slot = NULL, *first;

	first = smis_json_reuse_get(&slot, 16, 0);
	expect_next_reads_a(first);
	smis_json_reuse_done(&slot, true);
	CU_ASSERT_PTR_EQUAL(slot, first);
	CU_ASSERT_PTR_EQUAL(smis_json_reuse_get(&slot, 16, 0), first);
	expect_next_reads_a(first);
	smis_json_reuse_free(&slot);
}

/* A new tokener has the depth and flags asked for. */
static void test_slot_depth_and_flags(void)
{
	struct json_tokener *slot = NULL;
	json_object *o;
	bool clean;

	o = parse(smis_json_reuse_get(&slot, 3, 0), "[[1]]", &clean);
	CU_ASSERT_TRUE(clean);
	json_object_put(o);
	CU_ASSERT_PTR_NULL(parse(smis_json_reuse_get(&slot, 3, 0), "[[[1]]]", &clean));
	CU_ASSERT_EQUAL(json_tokener_get_error(slot), json_tokener_error_depth);
	smis_json_reuse_done(&slot, clean);

	o = parse(smis_json_reuse_get(&slot, 16, 0), "[1,]", &clean);
	CU_ASSERT_TRUE(clean); /* json-c's default takes a trailing comma */
	json_object_put(o);
	smis_json_reuse_free(&slot);
	CU_ASSERT_PTR_NULL(parse(smis_json_reuse_get(&slot, 16, JSON_TOKENER_STRICT), "[1,]", &clean));
	CU_ASSERT_FALSE(clean);
	smis_json_reuse_done(&slot, clean);
}

static struct smis_json_thread_tokener thread_tok = SMIS_JSON_THREAD_TOKENER(16, JSON_TOKENER_STRICT);

static void test_thread_cut_parse_dropped(void)
{
	struct json_tokener *tok;
	bool clean;

	tok = smis_json_thread_get(&thread_tok);
	CU_ASSERT_PTR_NOT_NULL_FATAL(tok);
	expect_next_reads_a(tok);
	smis_json_thread_done(&thread_tok, true);
	CU_ASSERT_PTR_EQUAL(smis_json_thread_get(&thread_tok), tok); /* kept */

	CU_ASSERT_PTR_NULL(parse(tok, cut, &clean));
	smis_json_thread_done(&thread_tok, clean);
	expect_next_reads_a(smis_json_thread_get(&thread_tok));
	smis_json_thread_done(&thread_tok, true);

	/* Strict, as defined above. */
	CU_ASSERT_PTR_NULL(parse(smis_json_thread_get(&thread_tok), "[1,]", &clean));
	smis_json_thread_done(&thread_tok, clean);
}

static void *other_thread(void *main_tok)
{
	struct json_tokener *tok = smis_json_thread_get(&thread_tok);

	/* Its own tokener, freed by the key when the thread ends (valgrind
	 * would report it lost otherwise). */
	CU_ASSERT_PTR_NOT_NULL(tok);
	CU_ASSERT_PTR_NOT_EQUAL(tok, main_tok);
	expect_next_reads_a(tok);
	smis_json_thread_done(&thread_tok, true);
	return NULL;
}

static void test_thread_one_each(void)
{
	struct json_tokener *tok = smis_json_thread_get(&thread_tok);
	pthread_t th;

	CU_ASSERT_PTR_NOT_NULL_FATAL(tok);
	CU_ASSERT_EQUAL_FATAL(pthread_create(&th, NULL, other_thread, tok), 0);
	pthread_join(th, NULL);
	CU_ASSERT_PTR_EQUAL(smis_json_thread_get(&thread_tok), tok);
	smis_json_thread_free(&thread_tok);
	smis_json_thread_free(&thread_tok); /* none left: nothing to do */
}

/* The whole-body parse: JSON's whitespace may follow the value, nothing
 * else (a NUL neither); a refused or cut body drops the kept tokener, and
 * the next body still reads right, in both forms. */
static void test_whole_parse(void)
{
	static struct smis_json_thread_tokener whole_tok = SMIS_JSON_THREAD_TOKENER(16, 0);
	static const char *const refused[] = { "{} x", "{}\v", "{}\f", "[1]]" };
	struct json_tokener *slot = NULL;
	json_object *o;

	o = smis_json_reuse_parse(&slot, 16, 0, "{\"a\":1} \t\r\n", 10);
	CU_ASSERT_PTR_NOT_NULL(o);
	CU_ASSERT_PTR_NOT_NULL(slot);
	json_object_put(o);
	CU_ASSERT_PTR_NULL(smis_json_reuse_parse(&slot, 16, 0, "{}\0", 3));
	CU_ASSERT_PTR_NULL(slot);
	for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++)
		CU_ASSERT_PTR_NULL(smis_json_reuse_parse(NULL, 16, 0, refused[i], strlen(refused[i])));
	CU_ASSERT_PTR_NULL(smis_json_reuse_parse(&slot, 16, 0, "", 0));
	CU_ASSERT_PTR_NULL(smis_json_reuse_parse(&slot, 16, 0, cut, strlen(cut)));
	CU_ASSERT_PTR_NULL(slot);
	o = smis_json_reuse_parse(&slot, 16, 0, next, strlen(next));
	CU_ASSERT_STRING_EQUAL(json_object_get_string(o), "A");
	json_object_put(o);
	smis_json_reuse_free(&slot);

	CU_ASSERT_PTR_NULL(smis_json_thread_parse(&whole_tok, cut, strlen(cut)));
	o = smis_json_thread_parse(&whole_tok, next, strlen(next));
	CU_ASSERT_STRING_EQUAL(json_object_get_string(o), "A");
	json_object_put(o);
	smis_json_thread_free(&whole_tok);
}

int main(void)
{
	CU_pSuite s;
	unsigned failed;

	if (CU_initialize_registry() != CUE_SUCCESS)
		return 2;
	s = CU_add_suite("json_reuse", NULL, NULL);
	CU_add_test(s, "owned: a cut parse's tokener is not kept", test_slot_cut_parse_dropped);
	CU_add_test(s, "owned: a clean parse's tokener is kept", test_slot_clean_parse_kept);
	CU_add_test(s, "owned: depth and flags", test_slot_depth_and_flags);
	CU_add_test(s, "per thread: a cut parse's tokener is not kept", test_thread_cut_parse_dropped);
	CU_add_test(s, "per thread: one tokener per thread", test_thread_one_each);
	CU_add_test(s, "whole-body parse, both forms", test_whole_parse);
	CU_basic_set_mode(CU_BRM_VERBOSE);
	CU_basic_run_tests();
	failed = CU_get_number_of_failures();
	CU_cleanup_registry();
	return failed ? 1 : 0;
}
