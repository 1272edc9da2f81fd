/* Validation of POST /v1/messages bodies: one problem code per mistake. */
#include <CUnit/Basic.h>
#include <json-c/json.h>
#include <stdlib.h>
#include <string.h>

#include "core_api.h"
#include "generation.h"
#include "job.h"
#include "request.h"
#include "utf8_decode.h"

static struct smisd_institution inst;

/* strdup() of this text fails, as without memory (NULL: never). The
 * request's copies go through strdup; json-c copies names, not values. */
static const char *strdup_fails_for;

char *strdup(const char *s)
{
	size_t n = strlen(s) + 1;
	char *p;

	if (strdup_fails_for && strcmp(s, strdup_fails_for) == 0)
		return NULL;
	p = malloc(n);
	if (p)
		memcpy(p, s, n);
	return p;
}

/* realloc() of the linked daemon code (-Wl,--wrap=realloc) fails while
 * this is set, as without memory. */
static int realloc_fails;
void *__real_realloc(void *p, size_t n);
void *__wrap_realloc(void *p, size_t n);

void *__wrap_realloc(void *p, size_t n)
{
	return realloc_fails ? NULL : __real_realloc(p, n);
}

static int setup(void)
{
	static const char langs[4][3] = { "fr", "nl", "de", "en" };
	memset(&inst, 0, sizeof(inst));
	inst.name = "test";
	memcpy(inst.languages, langs, sizeof(langs));
	inst.n_languages = 4;
	return 0;
}

/* Parse `body`; expect `code` (NULL = success) and, if given, `field`. */
static void expect(const char *body, int status, const char *code, const char *field)
{
	struct smisd_request req;
	struct smisd_problem pb;
	int rc = smisd_request_parse(body, strlen(body), &inst, &req, &pb);
	if (!code) {
		CU_ASSERT_EQUAL(rc, 0);
		if (rc != 0)
			fprintf(stderr, "\n  unexpected %s (%s) for %s\n", pb.code, pb.detail, body);
		smisd_request_clear(&req);
		return;
	}
	CU_ASSERT_EQUAL(rc, -1);
	if (rc != -1) {
		smisd_request_clear(&req);
		fprintf(stderr, "\n  accepted, wanted %s: %s\n", code, body);
		return;
	}
	CU_ASSERT_STRING_EQUAL(pb.code, code);
	CU_ASSERT_EQUAL(pb.status, status);
	if (strcmp(pb.code, code) != 0)
		fprintf(stderr, "\n  got %s (%s), wanted %s: %s\n", pb.code, pb.detail, code, body);
	if (field)
		CU_ASSERT_STRING_EQUAL(pb.field, field);
}

#define OK_CONTENT "\"content\":{\"nl\":{\"title\":\"Hallo\",\"body\":\"Tekst\"}}"

static void test_valid(void)
{
	struct smisd_request req;
	struct smisd_problem pb;
	const char *body = "{\"recipient\":\"0470 12 34 56\",\"reference\":\"case-42\",\"language\":\"nl\","
			   "\"content\":{\"nl\":{\"title\":\"Hallo\",\"body\":\"Tekst\"},"
			   "\"fr\":{\"title\":\"Bonjour\",\"body\":\"Texte\",\"sms_text\":\"SMS fr\"}}}";
	CU_ASSERT_EQUAL_FATAL(smisd_request_parse(body, strlen(body), &inst, &req, &pb), 0);
	CU_ASSERT_STRING_EQUAL(req.recipient, "+32470123456");
	CU_ASSERT_STRING_EQUAL(req.reference, "case-42");
	CU_ASSERT_STRING_EQUAL(req.language, "nl");
	CU_ASSERT_EQUAL(req.n_content, 2);
	/* Institution order is fr, nl. */
	CU_ASSERT_STRING_EQUAL(req.content[0].lang, "fr");
	CU_ASSERT_STRING_EQUAL(req.content[0].sms_text, "SMS fr");
	CU_ASSERT_STRING_EQUAL(req.content[1].lang, "nl");
	CU_ASSERT_PTR_NULL(req.content[1].sms_text);
	CU_ASSERT_STRING_EQUAL(req.content[1].body_text, "Tekst");
	smisd_request_clear(&req);
}

static void test_html_body(void)
{
	struct smisd_request req;
	struct smisd_problem pb;
	const char *body = "{\"recipient\":\"+32470123456\",\"content\":{\"en\":{\"title\":\"T\","
			   "\"body\":\"<p>Hello <script>alert(1)</script><b>world</b></p>\",\"format\":\"html\"}}}";
	CU_ASSERT_EQUAL_FATAL(smisd_request_parse(body, strlen(body), &inst, &req, &pb), 0);
	CU_ASSERT_TRUE(req.content[0].html);
	CU_ASSERT_PTR_NULL(strstr(req.content[0].body, "script"));
	CU_ASSERT_PTR_NOT_NULL(strstr(req.content[0].body, "<b>world</b>"));
	CU_ASSERT_PTR_NULL(strstr(req.content[0].body_text, "<"));
	smisd_request_clear(&req);
}

/* The detail of a malformed body says what is wrong with it. */
static void expect_detail(const char *body, const char *detail)
{
	struct smisd_request req;
	struct smisd_problem pb;

	CU_ASSERT_EQUAL_FATAL(smisd_request_parse(body, strlen(body), &inst, &req, &pb), -1);
	CU_ASSERT_STRING_EQUAL(pb.code, "malformed_json");
	CU_ASSERT_STRING_EQUAL(pb.detail, detail);
}

static void test_errors(void)
{
	expect("{", 400, "malformed_json", NULL);
	expect_detail("", "the body is not valid JSON: it ends before its value does (or is empty)");
	expect_detail("{\"recipient\":", "the body is not valid JSON: it ends before its value does (or is empty)");
	expect_detail("{} {}", "the body is not valid JSON: unexpected character");
	expect("{\"recipient\":\"+32470123456\"} trailing", 400, "malformed_json", NULL);
	expect("[1,2]", 400, "invalid_type", NULL);
	/* What json-c's strict mode lets through but JSON is not: a name twice
	 * (json-c keeps the last, another reader the first), NaN, Infinity,
	 * single-quoted names. */
	expect("{\"recipient\":\"+32470123456\",\"recipient\":\"+32470123457\"," OK_CONTENT "}", 400,
	       "malformed_json", NULL);
	expect("{\"recipient\":\"+32470123456\",\"content\":{\"nl\":{\"title\":\"a\",\"title\":\"b\","
	       "\"body\":\"b\"}}}", 400, "malformed_json", NULL);
	expect("{\"recipient\":\"+32470123456\",'recipient':\"+32470123457\"," OK_CONTENT "}", 400,
	       "malformed_json", NULL);
	expect("{\"recipient\":\"+32470123456\",\"x\":[NaN]," OK_CONTENT "}", 400, "malformed_json", NULL);
	expect("{\"recipient\":\"+32470123456\",\"x\":-Infinity," OK_CONTENT "}", 400, "malformed_json", NULL);
	/* Colons, quotes and backslashes inside strings are only text. */
	expect("{\"recipient\" : \"+32470123456\",\"reference\":\"a:b\",\"content\":{\"nl\":{\"title\":"
	       "\"x\\\":\\\\\",\"body\":\"{'y': 1e5, \\\"z\\\": [true]}\"}}}\r\n", 0, NULL, NULL);
	expect("{\"recipient\":32470123456," OK_CONTENT "}", 400, "invalid_type", "/recipient");
	expect("{\"recipient\":\"+32470123456\",\"colour\":\"red\"," OK_CONTENT "}", 400, "unknown_field", "/colour");
	expect("{" OK_CONTENT "}", 400, "missing_field", "/recipient");
	expect("{\"recipient\":\"+32 2 123 45 67\"," OK_CONTENT "}", 422, "not_mobile", "/recipient");
	expect("{\"recipient\":\"not a number\"," OK_CONTENT "}", 422, "invalid_number", "/recipient");
	expect("{\"recipient\":\"+31612345678\"," OK_CONTENT "}", 422, "country_not_allowed", "/recipient");
	expect("{\"recipient\":\"+32470123456\"}", 400, "missing_content", "/content");
	expect("{\"recipient\":\"+32470123456\",\"content\":{}}", 400, "missing_content", "/content");
	expect("{\"recipient\":\"+32470123456\",\"content\":{\"it\":{\"title\":\"a\",\"body\":\"b\"}}}", 400,
	       "unknown_language", "/content/it");
	expect("{\"recipient\":\"+32470123456\",\"language\":\"es\"," OK_CONTENT "}", 400, "unknown_language", "/language");
	expect("{\"recipient\":\"+32470123456\",\"content\":{\"nl\":{\"body\":\"b\"}}}", 400, "missing_field",
	       "/content/nl/title");
	/* Each language's pointer names its own language. */
	expect("{\"recipient\":\"+32470123456\",\"content\":{\"fr\":{\"body\":\"b\"}}}", 400, "missing_field",
	       "/content/fr/title");
	expect("{\"recipient\":\"+32470123456\",\"content\":{\"de\":{\"title\":\"t\",\"body\":[]}}}", 400,
	       "invalid_type", "/content/de/body");
	expect("{\"recipient\":\"+32470123456\",\"content\":{\"en\":{\"title\":\"t\",\"body\":\"b\",\"format\":1}}}",
	       400, "invalid_type", "/content/en/format");
	expect("{\"recipient\":\"+32470123456\",\"content\":{\"nl\":{\"title\":\"t\",\"body\":7}}}", 400,
	       "invalid_type", "/content/nl/body");
	expect("{\"recipient\":\"+32470123456\",\"content\":{\"nl\":{\"title\":\"t\",\"body\":\"b\",\"x\":1}}}", 400,
	       "unknown_field", "/content/nl/x");
	expect("{\"recipient\":\"+32470123456\",\"content\":{\"nl\":{\"title\":\"t\",\"body\":\"b\",\"format\":\"pdf\"}}}",
	       400, "invalid_value", "/content/nl/format");
	expect("{\"recipient\":\"+32470123456\",\"content\":{\"nl\":{\"title\":\"a\\u0007b\",\"body\":\"b\"}}}", 400,
	       "invalid_utf8", "/content/nl/title");
	/* DEL and C1 controls are refused like C0 ones, escaped or raw. */
	expect("{\"recipient\":\"+32470123456\",\"content\":{\"nl\":{\"title\":\"a\\u007fb\",\"body\":\"b\"}}}", 400,
	       "invalid_utf8", "/content/nl/title");
	expect("{\"recipient\":\"+32470123456\",\"content\":{\"nl\":{\"title\":\"a\xc2\x85\",\"body\":\"b\"}}}", 400,
	       "invalid_utf8", "/content/nl/title");
	expect("{\"recipient\":\"+32470123456\",\"content\":{\"nl\":{\"title\":\"t\",\"body\":\"a\\nb\\u009b\"}}}",
	       400, "invalid_utf8", "/content/nl/body");
	expect("{\"recipient\":\"+32470123456\",\"content\":{\"nl\":{\"title\":\"t\",\"body\":\"b\","
	       "\"sms_text\":\"a\x7f\"}}}", 400, "invalid_utf8", "/content/nl/sms_text");
	expect("{\"recipient\":\"+32470123456\",\"reference\":\"has space\"," OK_CONTENT "}", 400, "invalid_value",
	       "/reference");
	expect("{\"recipient\":\"+32470123456\",\"content\":\"hi\"}", 400, "invalid_type", "/content");
}

/* A null member is an absent one, whichever member it is. */
static void test_null_is_absent(void)
{
	expect("{\"recipient\":\"+32470123456\",\"reference\":null,\"strategy\":null,\"language\":null,"
	       "\"encrypted\":null,\"message_id\":null,\"content\":{\"nl\":{\"title\":\"t\",\"body\":\"b\","
	       "\"format\":null,\"sms_text\":null},\"fr\":null}}", 0, NULL, NULL);
	expect("{\"recipient\":null," OK_CONTENT "}", 400, "missing_field", "/recipient");
	expect("{\"recipient\":\"+32470123456\",\"content\":null}", 400, "missing_content", "/content");
	expect("{\"recipient\":\"+32470123456\",\"content\":{\"nl\":null}}", 400, "missing_content", "/content");
	expect("{\"recipient\":\"+32470123456\",\"content\":{\"nl\":{\"title\":null,\"body\":\"b\"}}}", 400,
	       "missing_field", "/content/nl/title");
}

/* HTML that the sanitiser refuses: the two ways a request can reach. */
static void test_invalid_html(void)
{
	char *body = malloc(SMISD_MAX_BODY + 200), *html = malloc(SMISD_MAX_BODY);
	size_t n = 0;

	expect("{\"recipient\":\"+32470123456\",\"content\":{\"nl\":{\"title\":\"t\","
	       "\"body\":\"<img src=x><script>alert(1)</script>\",\"format\":\"html\"}}}",
	       400, "invalid_html", "/content/nl/body");
	/* More markup than the sanitiser parses (SMIS_HTML_MAX_MARKUP tags),
	 * in a body the request limits allow. */
	while (n + 4 < SMISD_MAX_BODY - 8 && n / 3 <= 4200) {
		memcpy(html + n, "<b>", 3);
		n += 3;
	}
	memcpy(html + n, "x", 2);
	snprintf(body, SMISD_MAX_BODY + 200,
		 "{\"recipient\":\"+32470123456\",\"content\":{\"nl\":{\"title\":\"t\",\"body\":\"%s\","
		 "\"format\":\"html\"}}}", html);
	expect(body, 400, "invalid_html", "/content/nl/body");
	{
		struct smisd_request req;
		struct smisd_problem pb;
		if (smisd_request_parse(body, strlen(body), &inst, &req, &pb) == -1)
			CU_ASSERT_PTR_NOT_NULL(strstr(pb.detail, "too complex"));
	}
	/* The same text as plain text is only text. */
	snprintf(body, SMISD_MAX_BODY + 200,
		 "{\"recipient\":\"+32470123456\",\"content\":{\"nl\":{\"title\":\"t\",\"body\":\"%s\"}}}", html);
	expect(body, 0, NULL, NULL);
	free(html);
	free(body);
}

#define MID "\"message_id\":\"msg_01J2Z8Q4XK7M3N5P9R2T6V8W0Y\""
#define SUITE "\"encryption\":\"" SMISD_E2E_SUITE "\""
#define ENV "{\"device_id\":\"d1\",\"enc\":\"QUJD\",\"ciphertext\":\"REVG\"}"
#define ENC_CONTENT "\"content\":{\"nl\":{\"title\":\"t\",\"body\":\"\"}}"

/* Institution-encrypted messages: each malformed part has its code and field. */
static void test_encrypted(void)
{
	struct smisd_request req;
	struct smisd_problem pb;
	const char *ok = "{\"recipient\":\"+32470123456\"," MID ",\"encrypted\":{" SUITE ",\"envelopes\":[" ENV
			 "]}," ENC_CONTENT "}";
	char body[2048], envs[1024] = "";

	CU_ASSERT_EQUAL_FATAL(smisd_request_parse(ok, strlen(ok), &inst, &req, &pb), 0);
	CU_ASSERT_STRING_EQUAL(req.message_id, "msg_01J2Z8Q4XK7M3N5P9R2T6V8W0Y");
	CU_ASSERT_PTR_NOT_NULL(req.encrypted_json);
	if (req.encrypted_json)
		CU_ASSERT_PTR_NOT_NULL(strstr(req.encrypted_json, "\"device_id\":\"d1\""));
	smisd_request_clear(&req);

	expect("{\"recipient\":\"+32470123456\"," MID ",\"encrypted\":[]," ENC_CONTENT "}", 400, "invalid_type",
	       "/encrypted");
	expect("{\"recipient\":\"+32470123456\"," MID ",\"encrypted\":{" SUITE ",\"envelopes\":[" ENV "],\"x\":1},"
	       ENC_CONTENT "}", 400, "unknown_field", "/encrypted/x");
	expect("{\"recipient\":\"+32470123456\"," MID ",\"encrypted\":{\"encryption\":\"rot13\",\"envelopes\":[" ENV
	       "]}," ENC_CONTENT "}", 400, "invalid_value", "/encrypted/encryption");
	expect("{\"recipient\":\"+32470123456\"," MID ",\"encrypted\":{\"envelopes\":[" ENV "]}," ENC_CONTENT "}",
	       400, "invalid_value", "/encrypted/encryption");
	expect("{\"recipient\":\"+32470123456\"," MID ",\"encrypted\":{" SUITE ",\"envelopes\":[]}," ENC_CONTENT "}",
	       400, "invalid_value", "/encrypted/envelopes");
	for (int i = 0; i <= SMISD_MAX_ENVELOPES; i++)
		strcat(strcat(envs, i ? "," : ""), ENV);
	snprintf(body, sizeof(body), "{\"recipient\":\"+32470123456\"," MID ",\"encrypted\":{" SUITE
		 ",\"envelopes\":[%s]}," ENC_CONTENT "}", envs);
	expect(body, 400, "invalid_value", "/encrypted/envelopes");
	static const char *const bad_envelopes[] = {
		"{\"device_id\":\"d1\",\"enc\":\"QUJD\"}",                                  /* no ciphertext */
		"{\"device_id\":\"d1\",\"enc\":\"QUJD\",\"ciphertext\":\"REVG\",\"k\":1}",    /* a fourth key */
		"{\"device_id\":\"\",\"enc\":\"QUJD\",\"ciphertext\":\"REVG\"}",              /* empty device */
		"{\"device_id\":\"d1\",\"enc\":\"QU+D\",\"ciphertext\":\"REVG\"}",            /* not base64url */
		"{\"device_id\":\"d1\",\"enc\":\"QUJD\",\"ciphertext\":7}",                   /* not a string */
		"\"d1\"",                                                    /* not an object */
	};
	for (size_t i = 0; i < sizeof(bad_envelopes) / sizeof(bad_envelopes[0]); i++) {
		snprintf(body, sizeof(body), "{\"recipient\":\"+32470123456\"," MID ",\"encrypted\":{" SUITE
			 ",\"envelopes\":[" ENV ",%s]}," ENC_CONTENT "}", bad_envelopes[i]);
		expect(body, 400, "invalid_value", "/encrypted/envelopes/1");
	}
	/* The id given by POST /v1/recipients/keys goes with the envelopes, and only with them. */
	expect("{\"recipient\":\"+32470123456\",\"encrypted\":{" SUITE ",\"envelopes\":[" ENV "]}," ENC_CONTENT "}",
	       400, "missing_field", "/message_id");
	expect("{\"recipient\":\"+32470123456\",\"message_id\":null,\"encrypted\":{" SUITE ",\"envelopes\":[" ENV
	       "]}," ENC_CONTENT "}", 400, "missing_field", "/message_id");
	expect("{\"recipient\":\"+32470123456\",\"message_id\":\"msg_short\",\"encrypted\":{" SUITE
	       ",\"envelopes\":[" ENV "]}," ENC_CONTENT "}", 400, "invalid_value", "/message_id");
	/* Too long is not an id either: the same code, not field_too_long. */
	expect("{\"recipient\":\"+32470123456\",\"message_id\":\"msg_01J2Z8Q4XK7M3N5P9R2T6V8W0YZ\",\"encrypted\":{"
	       SUITE ",\"envelopes\":[" ENV "]}," ENC_CONTENT "}", 400, "invalid_value", "/message_id");
	expect("{\"recipient\":\"+32470123456\"," MID "," OK_CONTENT "}", 400, "invalid_value", "/message_id");
	/* An id dated more than a minute ahead of the clock was not given by SMIS. */
	for (int ahead_s = 30; ahead_s <= 120; ahead_s += 90) {
		char id[48];
		smisd_id_time_bound("msg_", smisd_now_ms() + ahead_s * 1000, id, sizeof(id));
		snprintf(body, sizeof(body), "{\"recipient\":\"+32470123456\",\"message_id\":\"%s0000000000000000\","
			 "\"encrypted\":{" SUITE ",\"envelopes\":[" ENV "]}," ENC_CONTENT "}", id);
		if (ahead_s > 60)
			expect(body, 400, "invalid_value", "/message_id");
		else
			expect(body, 0, NULL, NULL);
	}
}

/* Out of memory copying a member is a 500, not a member gone missing (a
 * NULL strategy would have sent with the institution's default one). */
static void test_out_of_memory(void)
{
	static const char *const texts[] = { "case-oom", "strategy-oom", "title-oom", "sms-oom" };
	const char *body = "{\"recipient\":\"+32470123456\",\"reference\":\"case-oom\",\"strategy\":\"strategy-oom\","
			   "\"content\":{\"nl\":{\"title\":\"title-oom\",\"body\":\"b\",\"sms_text\":\"sms-oom\"}}}";

	for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
		strdup_fails_for = texts[i];
		expect(body, 500, "internal_error", NULL);
	}
	strdup_fails_for = NULL;
	expect(body, 0, NULL, NULL);
}

/* A text in a language the institution's order does not list is kept, last. */
static void test_unlisted_language_kept(void)
{
	struct smisd_request req;
	struct smisd_problem pb;
	const char *body = "{\"recipient\":\"+32470123456\",\"content\":{\"en\":{\"title\":\"Hi\",\"body\":\"Text\"},"
			   "\"fr\":{\"title\":\"Salut\",\"body\":\"Texte\"}}}";
	size_t saved = inst.n_languages;

	inst.n_languages = 1; /* fr only */
	CU_ASSERT_EQUAL_FATAL(smisd_request_parse(body, strlen(body), &inst, &req, &pb), 0);
	inst.n_languages = saved;
	CU_ASSERT_EQUAL(req.n_content, 2);
	CU_ASSERT_STRING_EQUAL(req.content[0].lang, "fr");
	CU_ASSERT_STRING_EQUAL(req.content[1].lang, "en");
	smisd_request_clear(&req);
}

static void test_limits(void)
{
	char *body = malloc(SMISD_MAX_BODY + 200);
	char *title = malloc(SMISD_MAX_TITLE + 2);
	memset(title, 'a', SMISD_MAX_TITLE + 1);
	title[SMISD_MAX_TITLE + 1] = '\0';
	snprintf(body, SMISD_MAX_BODY + 200,
		 "{\"recipient\":\"+32470123456\",\"content\":{\"nl\":{\"title\":\"%s\",\"body\":\"b\"}}}", title);
	expect(body, 400, "field_too_long", "/content/nl/title");
	title[SMISD_MAX_TITLE] = '\0'; /* exactly the limit is fine */
	snprintf(body, SMISD_MAX_BODY + 200,
		 "{\"recipient\":\"+32470123456\",\"content\":{\"nl\":{\"title\":\"%s\",\"body\":\"b\"}}}", title);
	expect(body, 0, NULL, NULL);
	free(title);
	free(body);
}

/* What smisd_utf8_valid answers, said per code point: strict UTF-8 with no
 * NUL; C0 controls only as tab, newline and carriage return, and not even
 * those in one line; DEL and C1 controls (U+007F-U+009F) only in a JSON
 * text as a whole. */
static bool utf8_valid_model(const char *s, size_t len, enum smisd_utf8_controls controls)
{
	uint32_t cp;

	for (size_t i = 0, n; i < len; i += n) {
		n = smis_utf8_decode(s + i, len - i, &cp);
		if (n == 0 || cp == 0)
			return false;
		if (cp < 0x20 && (controls == SMISD_UTF8_ONE_LINE || !strchr("\t\n\r", (int)cp)))
			return false;
		if (cp >= 0x7f && cp <= 0x9f && controls != SMISD_UTF8_JSON)
			return false;
	}
	return true;
}

/* Every one and two bytes, alone, between printable ASCII and followed by
 * the rest of a character, in every mode, answered as the model says. */
static void test_utf8_exhaustive(void)
{
	static const enum smisd_utf8_controls all[] = { SMISD_UTF8_JSON, SMISD_UTF8_MULTILINE, SMISD_UTF8_ONE_LINE };
	size_t wrong = 0;

	for (size_t m = 0; m < 3; m++) {
		for (unsigned a = 0; a < 256; a++) {
			for (unsigned b = 0; b < 256; b++) {
				char t[] = { 'x', (char)a, (char)b, '\x80', '\x80', 'y', '\0' };
				for (size_t from = 0; from < 2; from++)
					for (size_t len = 1; from + len <= 6; len++)
						wrong += smisd_utf8_valid(t + from, len, all[m]) !=
							 utf8_valid_model(t + from, len, all[m]);
			}
		}
	}
	CU_ASSERT_EQUAL(wrong, 0);
}

static void test_utf8(void)
{
	static const enum smisd_utf8_controls all[] = { SMISD_UTF8_JSON, SMISD_UTF8_MULTILINE, SMISD_UTF8_ONE_LINE };

	for (size_t i = 0; i < 3; i++) {
		CU_ASSERT_TRUE(smisd_utf8_valid("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xc2\xa0", 17, all[i]));
		CU_ASSERT_FALSE(smisd_utf8_valid("\xc0\xaf", 2, all[i]));         /* overlong '/' */
		CU_ASSERT_FALSE(smisd_utf8_valid("\xed\xa0\x80", 3, all[i]));     /* surrogate */
		CU_ASSERT_FALSE(smisd_utf8_valid("\xf4\x90\x80\x80", 4, all[i])); /* > U+10FFFF */
		CU_ASSERT_FALSE(smisd_utf8_valid("\xe2\x82", 2, all[i]));         /* truncated */
		CU_ASSERT_FALSE(smisd_utf8_valid("a\0b", 3, all[i]));
		CU_ASSERT_FALSE(smisd_utf8_valid("a\x07", 2, all[i]));
	}
	CU_ASSERT_FALSE(smisd_utf8_valid("a\nb", 3, SMISD_UTF8_ONE_LINE));
	CU_ASSERT_TRUE(smisd_utf8_valid("a\nb\tc\r\n", 7, SMISD_UTF8_MULTILINE));
	CU_ASSERT_TRUE(smisd_utf8_valid("a\nb", 3, SMISD_UTF8_JSON));
	/* DEL and the C1 controls (U+0080, U+0085 NEL, U+009F) are controls in
	 * a text; a JSON text as a whole leaves them to its members' checks. */
	static const char *const c1[] = { "a\x7f", "a\xc2\x80", "a\xc2\x85", "a\xc2\x9f" };
	for (size_t i = 0; i < 4; i++) {
		CU_ASSERT_FALSE(smisd_utf8_valid(c1[i], strlen(c1[i]), SMISD_UTF8_ONE_LINE));
		CU_ASSERT_FALSE(smisd_utf8_valid(c1[i], strlen(c1[i]), SMISD_UTF8_MULTILINE));
		CU_ASSERT_TRUE(smisd_utf8_valid(c1[i], strlen(c1[i]), SMISD_UTF8_JSON));
	}

	char s[] = "a\xc3\xa9\xc3-\xe2\x82\xac\xe2\x82\xff\xf0\x9f\x98\x80\x80";
	smisd_utf8_scrub(s);
	CU_ASSERT_STRING_EQUAL(s, "a\xc3\xa9-\xe2\x82\xac\xf0\x9f\x98\x80");

	/* Shown on a terminal: C0, DEL, C1 (CSI, U+009B) and stray bytes as
	 * '?', characters kept whole, cut to the room there is, in place. */
	char t[] = "\x1b[31m\xc3\xa9\n\x7f\xc2\x9b" "2J\xc2\xa0\xff\xe2\x82\xac";
	char cut[6];
	smisd_text_shown(t, t, sizeof(t));
	CU_ASSERT_STRING_EQUAL(t, "?[31m\xc3\xa9???2J\xc2\xa0?\xe2\x82\xac");
	smisd_text_shown("ab\xe2\x82\xac\xe2\x82\xac", cut, sizeof(cut));
	CU_ASSERT_STRING_EQUAL(cut, "ab\xe2\x82\xac");
	smisd_text_shown("abc\xe2\x82\xac", cut, sizeof(cut));
	CU_ASSERT_STRING_EQUAL(cut, "abc");
}

/* A problem quotes the client's field name, cut to fit: the cut must not
 * split a character, or the problem is not UTF-8 JSON any more. */
static void test_problem_stays_utf8(void)
{
	char body[256], key[64] = "a";
	struct smisd_request req;
	struct smisd_problem pb;

	for (int i = 0; i < 30; i++)
		strcat(key, "\xc3\xa9");
	snprintf(body, sizeof(body), "{\"recipient\":\"+32470123456\",\"%s\":1}", key);
	CU_ASSERT_EQUAL_FATAL(smisd_request_parse(body, strlen(body), &inst, &req, &pb), -1);
	CU_ASSERT_STRING_EQUAL(pb.code, "unknown_field");
	CU_ASSERT_TRUE(smisd_utf8_valid(pb.field, strlen(pb.field), SMISD_UTF8_ONE_LINE));
	CU_ASSERT_TRUE(smisd_utf8_valid(pb.detail, strlen(pb.detail), SMISD_UTF8_ONE_LINE));
	CU_ASSERT_EQUAL(strncmp(pb.field, "/a\xc3\xa9", 4), 0);

	smisd_problem_set(&pb, 422, "unknown_strategy", "/strategy", "no strategy named '%.4s'",
			  "ab\xe2\x82\xac");
	CU_ASSERT_STRING_EQUAL(pb.detail, "no strategy named 'ab'");
}

/* A body cut off inside a surrogate pair must leave nothing behind for the
 * next body parsed on the thread: json-c's tokener reset kept the pending
 * high surrogate, and the next body's first \u escape came out after a
 * U+FFFD (another client's message, changed). */
static void test_cut_body_leaves_nothing(void)
{
	static const char *const cut[] = { "{\"recipient\":\"\\ud83d", "{\"recipient\":\"\\ud83d\\u",
					   "{\"content\":{\"nl\":{\"title\":\"\\uD83D" };
	const char *next = "{\"recipient\":\"+32470123456\",\"content\":{\"nl\":"
			   "{\"title\":\"\\u0041bc\",\"body\":\"b\"}}}";
	struct smisd_request req;
	struct smisd_problem pb;

	for (size_t i = 0; i < sizeof(cut) / sizeof(cut[0]); i++) {
		CU_ASSERT_EQUAL(smisd_request_parse(cut[i], strlen(cut[i]), &inst, &req, &pb), -1);
		CU_ASSERT_STRING_EQUAL(pb.code, "malformed_json");
		CU_ASSERT_EQUAL_FATAL(smisd_request_parse(next, strlen(next), &inst, &req, &pb), 0);
		CU_ASSERT_STRING_EQUAL(req.content[0].title, "Abc");
		smisd_request_clear(&req);
	}
}

/* The string member `key` of `o`, or "" when it has none. */
static const char *member(json_object *o, const char *key)
{
	json_object *v;
	return json_object_object_get_ex(o, key, &v) && json_object_is_type(v, json_type_string) ?
		       json_object_get_string(v) : "";
}

/* A problem always carries its code: its text, or without memory for that
 * a constant body of the code (which an answer was once sent without). */
static void test_problem_bodies(void)
{
	static const char *const codes[] = { "malformed_json", "invalid_utf8", "quota_exceeded",
					     "country_not_allowed", "internal_error" };
	struct smisd_problem pb;
	json_object *o, *v;
	char *text;

	smisd_problem_set(&pb, 422, "unknown_strategy", "/strategy", "no strategy named '%s'", "a\"b\\c\nd");
	text = smisd_problem_json(&pb, "req_1");
	o = json_tokener_parse(text ? text : "");
	CU_ASSERT_PTR_NOT_NULL_FATAL(o);
	CU_ASSERT_STRING_EQUAL(member(o, "type"), "/problems/unknown_strategy");
	CU_ASSERT_STRING_EQUAL(member(o, "title"), "Unknown strategy");
	CU_ASSERT_STRING_EQUAL(member(o, "code"), "unknown_strategy");
	CU_ASSERT_STRING_EQUAL(member(o, "detail"), "no strategy named 'a\"b\\c\nd'");
	CU_ASSERT_STRING_EQUAL(member(o, "field"), "/strategy");
	CU_ASSERT_STRING_EQUAL(member(o, "request_id"), "req_1");
	CU_ASSERT(json_object_object_get_ex(o, "status", &v) && json_object_get_int(v) == 422);
	CU_ASSERT_PTR_NULL(strstr(text, "\\/")); /* slashes as they are */
	json_object_put(o);
	free(text);

	realloc_fails = 1;
	text = smisd_problem_json(&pb, "req_1");
	realloc_fails = 0;
	CU_ASSERT_PTR_NULL(text);
	free(text);

	for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
		char type[64];
		o = json_tokener_parse(smisd_problem_static_json(codes[i]));
		CU_ASSERT_PTR_NOT_NULL_FATAL(o);
		snprintf(type, sizeof(type), "/problems/%s", codes[i]);
		CU_ASSERT_STRING_EQUAL(member(o, "type"), type);
		CU_ASSERT_STRING_EQUAL(member(o, "title"), smisd_problem_title(codes[i]));
		CU_ASSERT_STRING_EQUAL(member(o, "code"), codes[i]);
		json_object_put(o);
	}
	o = json_tokener_parse(smisd_problem_static_json("no_such_code"));
	CU_ASSERT_PTR_NOT_NULL(o);
	json_object_put(o);
}

int main(void)
{
	CU_pSuite s;
	unsigned failed;
	if (CU_initialize_registry() != CUE_SUCCESS)
		return 2;
	s = CU_add_suite("request", setup, NULL);
	CU_add_test(s, "valid request", test_valid);
	CU_add_test(s, "html body sanitised", test_html_body);
	CU_add_test(s, "each error has its code", test_errors);
	CU_add_test(s, "null is absent", test_null_is_absent);
	CU_add_test(s, "out of memory", test_out_of_memory);
	CU_add_test(s, "field limits", test_limits);
	CU_add_test(s, "invalid html", test_invalid_html);
	CU_add_test(s, "unlisted language kept", test_unlisted_language_kept);
	CU_add_test(s, "institution-encrypted messages", test_encrypted);
	CU_add_test(s, "utf-8", test_utf8);
	CU_add_test(s, "utf-8: every byte pair answered as before", test_utf8_exhaustive);
	CU_add_test(s, "problems stay UTF-8", test_problem_stays_utf8);
	CU_add_test(s, "problem bodies", test_problem_bodies);
	CU_add_test(s, "a cut body leaves nothing for the next", test_cut_body_leaves_nothing);
	CU_basic_set_mode(CU_BRM_VERBOSE);
	CU_basic_run_tests();
	failed = CU_get_number_of_failures();
	CU_cleanup_registry();
	return failed ? 1 : 0;
}
