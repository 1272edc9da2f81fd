/*
 * Unit tests for smis_passthrough_seal (lib/passthrough.c): envelopes sealed
 * on the institution's side open on each device with smis_e2e_open, are
 * bound to the message id and their device, fail after a flipped bit, and
 * bad keys answers, bad plaintexts and unusable devices are refused.
 */
#include "config.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <CUnit/Basic.h>
#include <json-c/json.h>
#include <openssl/crypto.h>

#include "b64url.h"
#include "e2e.h"
#include "passthrough.h"

#define MID "msg_01J2Z8Q4XK7M3N5P9R2T6V8W0Y"
#define SUITE SMIS_E2E_SUITE

struct device {
	char id[32];
	char *sk_b64;
	char *pk_b64;
	unsigned char sk[32];
};

static void device_make(struct device *d, const char *id)
{
	snprintf(d->id, sizeof(d->id), "%s", id);
	CU_ASSERT_EQUAL_FATAL(smis_e2e_keygen_b64url(&d->sk_b64, &d->pk_b64), 0);
	CU_ASSERT_EQUAL_FATAL(smis_b64url_decode_fixed(d->sk_b64, d->sk, 32), 0);
}

static void device_free(struct device *d)
{
	if (d->sk_b64)
		OPENSSL_cleanse(d->sk_b64, strlen(d->sk_b64));
	free(d->sk_b64);
	free(d->pk_b64);
	OPENSSL_cleanse(d->sk, sizeof(d->sk));
}

/* The answer of POST /v1/recipients/keys for these devices. */
static char *keys_answer(const char *mid, const char *suite, struct device *devs, size_t n)
{
	struct json_object *o = json_object_new_object(), *a = json_object_new_array();
	char *text;

	json_object_object_add(o, "message_id", json_object_new_string(mid));
	json_object_object_add(o, "channel", json_object_new_string("govapp"));
	json_object_object_add(o, "reachability", json_object_new_string("reachable"));
	json_object_object_add(o, "language", json_object_new_string("fr"));
	json_object_object_add(o, "encryption", json_object_new_string(suite));
	json_object_object_add(o, "devices", a);
	for (size_t i = 0; i < n; i++) {
		struct json_object *d = json_object_new_object();

		json_object_object_add(d, "device_id", json_object_new_string(devs[i].id));
		json_object_object_add(d, "public_key", json_object_new_string(devs[i].pk_b64));
		json_object_object_add(d, "key_alg", json_object_new_string("X25519"));
		json_object_array_add(a, d);
	}
	text = strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
	json_object_put(o);
	return text;
}

static const char *PLAIN =
	"{\"v\":1,\"message_id\":\"" MID "\",\"content\":{"
	"\"nl\":{\"title\":\"Uw document\",\"body\":\"<p>Uw <b>document</b> is klaar</p>\","
	"\"body_text\":\"Uw document is klaar\",\"format\":\"html\"},"
	"\"fr\":{\"title\":\"Votre document\",\"body\":\"Votre document est pr\xc3\xaat\",\"format\":\"text\"}}}";

/* Find the envelope of device_id in the encrypted object. */
static struct json_object *envelope_of(struct json_object *enc, const char *device_id)
{
	struct json_object *envs, *e, *v;

	if (!json_object_object_get_ex(enc, "envelopes", &envs))
		return NULL;
	for (size_t i = 0; i < json_object_array_length(envs); i++) {
		e = json_object_array_get_idx(envs, i);
		if (json_object_object_get_ex(e, "device_id", &v) &&
		    strcmp(json_object_get_string(v), device_id) == 0)
			return e;
	}
	return NULL;
}

static const char *member(struct json_object *o, const char *key)
{
	struct json_object *v;

	return json_object_object_get_ex(o, key, &v) ? json_object_get_string(v) : NULL;
}

/* Open the envelope of d (as device `as`) under message id mid. */
static int open_as(struct json_object *enc, const struct device *d, const char *as_id,
		   const unsigned char *sk, const char *mid, char **pt)
{
	struct json_object *e = envelope_of(enc, d->id);
	unsigned char *out = NULL;
	size_t n = 0;
	int rc;

	*pt = NULL;
	if (!e)
		return -ENOENT;
	rc = smis_e2e_open(mid, as_id, sk, member(e, "enc"), member(e, "ciphertext"), &out, &n);
	*pt = (char *)out;
	return rc;
}

static void test_round_trip_two_devices(void)
{
	struct device d[2] = { 0 };
	char *keys, *enc = NULL, *mid = NULL, *pt = NULL;
	struct json_object *eo, *po, *content, *nl, *fr, *v;

	device_make(&d[0], "fr-phone");
	device_make(&d[1], "fr-tablet");
	keys = keys_answer(MID, SUITE, d, 2);
	CU_ASSERT_EQUAL_FATAL(smis_passthrough_seal(keys, PLAIN, &enc, &mid), 0);
	CU_ASSERT_STRING_EQUAL(mid, MID);
	eo = json_tokener_parse(enc);
	CU_ASSERT_PTR_NOT_NULL_FATAL(eo);
	CU_ASSERT_STRING_EQUAL(member(eo, "encryption"), SUITE);
	CU_ASSERT_TRUE(json_object_object_get_ex(eo, "envelopes", &v));
	CU_ASSERT_EQUAL(json_object_array_length(v), 2);
	/* Exactly the three members POST /v1/messages accepts. */
	CU_ASSERT_EQUAL(json_object_object_length(json_object_array_get_idx(v, 0)), 3);
	/* A fresh ephemeral key per envelope. */
	CU_ASSERT_STRING_NOT_EQUAL(member(envelope_of(eo, "fr-phone"), "enc"),
				   member(envelope_of(eo, "fr-tablet"), "enc"));
	/* The body never appears outside the envelopes. */
	CU_ASSERT_PTR_NULL(strstr(enc, "klaar"));
	CU_ASSERT_PTR_NULL(strstr(enc, "Votre"));

	for (int i = 0; i < 2; i++) {
		CU_ASSERT_EQUAL_FATAL(open_as(eo, &d[i], d[i].id, d[i].sk, MID, &pt), 0);
		po = json_tokener_parse(pt);
		CU_ASSERT_PTR_NOT_NULL_FATAL(po);
		CU_ASSERT_TRUE(json_object_object_get_ex(po, "v", &v) && json_object_get_int(v) == 1);
		CU_ASSERT_STRING_EQUAL(member(po, "message_id"), MID);
		CU_ASSERT_TRUE_FATAL(json_object_object_get_ex(po, "content", &content));
		CU_ASSERT_TRUE_FATAL(json_object_object_get_ex(content, "nl", &nl));
		CU_ASSERT_TRUE_FATAL(json_object_object_get_ex(content, "fr", &fr));
		CU_ASSERT_STRING_EQUAL(member(nl, "body"), "<p>Uw <b>document</b> is klaar</p>");
		CU_ASSERT_STRING_EQUAL(member(nl, "format"), "html");
		CU_ASSERT_STRING_EQUAL(member(fr, "body"), "Votre document est pr\xc3\xaat");
		/* Filled in for text when absent. */
		CU_ASSERT_STRING_EQUAL(member(fr, "body_text"), "Votre document est pr\xc3\xaat");
		json_object_put(po);
		free(pt);
	}
	json_object_put(eo);
	free(enc);
	free(mid);
	free(keys);
	device_free(&d[0]);
	device_free(&d[1]);
}

/* An envelope opens only for its device, its message and unmodified. */
static void test_binding_and_tampering(void)
{
	struct device d[2] = { 0 };
	char *keys, *enc = NULL, *mid = NULL, *pt = NULL, *ct;
	struct json_object *eo, *e;
	unsigned char *raw = NULL;
	size_t raw_len = 0;

	device_make(&d[0], "a");
	device_make(&d[1], "b");
	keys = keys_answer(MID, SUITE, d, 2);
	CU_ASSERT_EQUAL_FATAL(smis_passthrough_seal(keys, PLAIN, &enc, &mid), 0);
	eo = json_tokener_parse(enc);
	CU_ASSERT_PTR_NOT_NULL_FATAL(eo);
	/* a's envelope as b (b's key and id), as a under b's id, under
	 * another message id: all fail to authenticate. */
	CU_ASSERT_EQUAL(open_as(eo, &d[0], "b", d[1].sk, MID, &pt), -EBADMSG);
	CU_ASSERT_PTR_NULL(pt);
	CU_ASSERT_EQUAL(open_as(eo, &d[0], "b", d[0].sk, MID, &pt), -EBADMSG);
	CU_ASSERT_EQUAL(open_as(eo, &d[0], "a", d[0].sk, "msg_01J2Z8Q4XK7M3N5P9R2T6V8W0Z", &pt), -EBADMSG);
	/* One bit flipped in a's ciphertext. */
	e = envelope_of(eo, "a");
	CU_ASSERT_EQUAL_FATAL(smis_b64url_decode(member(e, "ciphertext"), strlen(member(e, "ciphertext")),
						 &raw, &raw_len), 0);
	raw[raw_len / 2] ^= 0x01;
	CU_ASSERT_EQUAL_FATAL(smis_b64url_encode(raw, raw_len, &ct), 0);
	json_object_object_add(e, "ciphertext", json_object_new_string(ct));
	CU_ASSERT_EQUAL(open_as(eo, &d[0], "a", d[0].sk, MID, &pt), -EBADMSG);
	CU_ASSERT_PTR_NULL(pt);
	/* b's envelope is untouched and still opens. */
	CU_ASSERT_EQUAL(open_as(eo, &d[1], "b", d[1].sk, MID, &pt), 0);
	free(pt);
	free(ct);
	free(raw);
	json_object_put(eo);
	free(enc);
	free(mid);
	free(keys);
	device_free(&d[0]);
	device_free(&d[1]);
}

/* v and message_id are filled in; present, they must match. */
static void test_plaintext_completion_and_checks(void)
{
	struct device d = { 0 };
	char *keys, *enc = NULL, *mid = NULL, *pt = NULL;
	struct json_object *eo, *po;
	static const char *const bad[] = {
		"[]",
		"{\"content\":{}}",
		"{\"v\":2,\"content\":{\"nl\":{\"title\":\"t\",\"body\":\"b\"}}}",
		"{\"v\":\"1\",\"content\":{\"nl\":{\"title\":\"t\",\"body\":\"b\"}}}",
		"{\"message_id\":\"msg_01J2Z8Q4XK7M3N5P9R2T6V8W0Z\",\"content\":{\"nl\":{\"title\":\"t\",\"body\":\"b\"}}}",
		"{\"content\":{\"nl\":{\"body\":\"b\"}}}",
		"{\"content\":{\"nl\":{\"title\":\"t\"}}}",
		"{\"content\":{\"nl\":{\"title\":\"t\",\"body\":\"b\",\"format\":\"pdf\"}}}",
		"{\"content\":{\"nl\":{\"title\":\"t\",\"body\":\"<p>b</p>\",\"format\":\"html\"}}}",
		"{\"content\":{\"nl\":\"text\"}}",
		"{\"content\":{\"nl\":{\"title\":\"t\",\"body\":\"b\"}}} trailing",
		"not json",
		/* Not UTF-8 (a Latin-1 body): the app could not read the
		 * plaintext (found by fuzz_passthrough). */
		"{\"content\":{\"nl\":{\"title\":\"t\",\"body\":\"caf\xe9\"}}}",
		"{\"content\":{\"nl\":{\"title\":\"\xc3\",\"body\":\"b\"}}}",
	};

	device_make(&d, "only");
	keys = keys_answer(MID, SUITE, &d, 1);
	CU_ASSERT_EQUAL_FATAL(smis_passthrough_seal(keys, "{\"content\":{\"de\":{\"title\":\"T\",\"body\":\"B\"}}}",
						    &enc, &mid), 0);
	eo = json_tokener_parse(enc);
	CU_ASSERT_EQUAL_FATAL(open_as(eo, &d, "only", d.sk, MID, &pt), 0);
	po = json_tokener_parse(pt);
	CU_ASSERT_PTR_NOT_NULL_FATAL(po);
	CU_ASSERT_STRING_EQUAL(member(po, "message_id"), MID);
	CU_ASSERT_STRING_EQUAL(member(po, "v"), "1");
	json_object_put(po);
	json_object_put(eo);
	free(pt);
	free(enc);
	free(mid);

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		enc = mid = (char *)"x";
		CU_ASSERT_EQUAL(smis_passthrough_seal(keys, bad[i], &enc, &mid), -EINVAL);
		CU_ASSERT_PTR_NULL(enc);
		CU_ASSERT_PTR_NULL(mid);
	}
	free(keys);
	device_free(&d);
}

static void test_bad_keys_answers(void)
{
	struct device d = { 0 };
	char *keys, *enc = NULL, *mid = NULL;
	static const char *const bad[] = {
		"", "null", "[]", "{}",
		"{\"message_id\":\"" MID "\",\"encryption\":\"" SUITE "\"}",
		"{\"message_id\":\"" MID "\",\"encryption\":\"" SUITE "\",\"devices\":{}}",
		"{\"message_id\":\"msg_short\",\"encryption\":\"" SUITE "\",\"devices\":[]}",
		"{\"message_id\":\"msg_01j2z8q4xk7m3n5p9r2t6v8w0y\",\"encryption\":\"" SUITE "\",\"devices\":[]}",
		"{\"encryption\":\"" SUITE "\",\"devices\":[]}",
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		CU_ASSERT_EQUAL(smis_passthrough_seal(bad[i], PLAIN, &enc, &mid), -EINVAL);
	device_make(&d, "x");
	keys = keys_answer(MID, "HPKE-Base-X25519-SHA256-CHACHA20POLY1305", &d, 1);
	CU_ASSERT_EQUAL(smis_passthrough_seal(keys, PLAIN, &enc, &mid), -EINVAL);
	free(keys);
	keys = keys_answer(MID, SUITE, &d, 1);
	CU_ASSERT_EQUAL(smis_passthrough_seal(NULL, PLAIN, &enc, &mid), -EINVAL);
	CU_ASSERT_EQUAL(smis_passthrough_seal(keys, NULL, &enc, &mid), -EINVAL);
	CU_ASSERT_EQUAL(smis_passthrough_seal(keys, PLAIN, NULL, &mid), -EINVAL);
	CU_ASSERT_EQUAL(smis_passthrough_seal(keys, PLAIN, &enc, NULL), -EINVAL);
	CU_ASSERT_PTR_NULL(enc);
	free(keys);
	device_free(&d);
}

/* Unusable devices are skipped; none left is -ENODEV, too many -E2BIG. */
static void test_device_selection(void)
{
	struct device d = { 0 }, many[SMIS_PASSTHROUGH_MAX_ENVELOPES + 1];
	char *keys, *enc = NULL, *mid = NULL;
	char buf[2048];
	struct json_object *eo, *envs;

	device_make(&d, "good");
	snprintf(buf, sizeof(buf),
		 "{\"message_id\":\"" MID "\",\"encryption\":\"" SUITE "\",\"devices\":["
		 "{\"device_id\":\"zero\",\"public_key\":\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\"},"
		 "{\"device_id\":\"p256\",\"public_key\":\"%s\",\"key_alg\":\"P-256\"},"
		 /* A key_alg of another type is malformed, not absent. */
		 "{\"device_id\":\"nullalg\",\"public_key\":\"%s\",\"key_alg\":null},"
		 "{\"device_id\":\"numalg\",\"public_key\":\"%s\",\"key_alg\":25519},"
		 "{\"device_id\":\"short\",\"public_key\":\"AAAA\"},"
		 "{\"device_id\":\"nokey\"},"
		 "{\"public_key\":\"%s\"},"
		 "{\"device_id\":\"good\",\"public_key\":\"%s\"},"
		 "{\"device_id\":\"good\",\"public_key\":\"%s\",\"key_alg\":\"X25519\"},"
		 /* An id seen first without a usable key is sealed with its
		  * later key (fuzz_passthrough found it dropped as seen). */
		 "{\"device_id\":\"late\",\"public_key\":\"AAAA\"},"
		 "{\"device_id\":\"late\",\"public_key\":\"%s\"}]}",
		 d.pk_b64, d.pk_b64, d.pk_b64, d.pk_b64, d.pk_b64, d.pk_b64, d.pk_b64);
	CU_ASSERT_EQUAL_FATAL(smis_passthrough_seal(buf, PLAIN, &enc, &mid), 0);
	eo = json_tokener_parse(enc);
	CU_ASSERT_TRUE_FATAL(json_object_object_get_ex(eo, "envelopes", &envs));
	CU_ASSERT_EQUAL(json_object_array_length(envs), 2);
	CU_ASSERT_PTR_NOT_NULL(envelope_of(eo, "good"));
	CU_ASSERT_PTR_NOT_NULL(envelope_of(eo, "late"));
	json_object_put(eo);
	free(enc);
	free(mid);

	snprintf(buf, sizeof(buf),
		 "{\"message_id\":\"" MID "\",\"encryption\":\"" SUITE "\",\"devices\":["
		 "{\"device_id\":\"zero\",\"public_key\":\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\"}]}");
	enc = mid = (char *)"x";
	CU_ASSERT_EQUAL(smis_passthrough_seal(buf, PLAIN, &enc, &mid), -ENODEV);
	CU_ASSERT_PTR_NULL(enc);
	CU_ASSERT_PTR_NULL(mid);
	CU_ASSERT_EQUAL(smis_passthrough_seal("{\"message_id\":\"" MID "\",\"encryption\":\"" SUITE
					      "\",\"devices\":[]}", PLAIN, &enc, &mid), -ENODEV);

	memset(many, 0, sizeof(many));
	for (size_t i = 0; i < SMIS_PASSTHROUGH_MAX_ENVELOPES + 1; i++) {
		char id[16];

		snprintf(id, sizeof(id), "dev-%zu", i);
		device_make(&many[i], id);
	}
	keys = keys_answer(MID, SUITE, many, SMIS_PASSTHROUGH_MAX_ENVELOPES + 1);
	CU_ASSERT_EQUAL(smis_passthrough_seal(keys, PLAIN, &enc, &mid), -E2BIG);
	CU_ASSERT_PTR_NULL(enc);
	free(keys);
	keys = keys_answer(MID, SUITE, many, SMIS_PASSTHROUGH_MAX_ENVELOPES);
	CU_ASSERT_EQUAL(smis_passthrough_seal(keys, PLAIN, &enc, &mid), 0);
	free(enc);
	free(mid);
	free(keys);
	for (size_t i = 0; i < SMIS_PASSTHROUGH_MAX_ENVELOPES + 1; i++)
		device_free(&many[i]);
	device_free(&d);
}

static bool all_zero(const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return false;
	return true;
}

/* The wipe itself, seen through a reference kept for the test: the
 * strings of the tree (nested ones too) and the text json-c made of it are
 * zeros once released. What the callers free is not readable after. */
static void test_put_cleansed_wipes_strings_and_text(void)
{
	struct json_object *o = json_tokener_parse("{\"content\":{\"nl\":{\"title\":\"T\",\"body\":\"secret body\"}},"
						   "\"list\":[\"secret item\",1,true]}");
	struct json_object *body, *item;
	const char *text, *b, *it;
	size_t text_len;

	CU_ASSERT_PTR_NOT_NULL_FATAL(o);
	CU_ASSERT_FATAL(json_object_object_get_ex(json_object_object_get(json_object_object_get(o, "content"), "nl"),
						  "body", &body));
	item = json_object_array_get_idx(json_object_object_get(o, "list"), 0);
	b = json_object_get_string(body);
	it = json_object_get_string(item);
	text = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
	text_len = strlen(text);
	CU_ASSERT_PTR_NOT_NULL(strstr(text, "secret body"));
	json_object_get(o);
	smis_passthrough_json_put_cleansed(o);
	CU_ASSERT(all_zero(b, strlen("secret body")));
	CU_ASSERT(all_zero(it, strlen("secret item")));
	CU_ASSERT(all_zero(text, text_len));
	json_object_put(o);
	smis_passthrough_json_put_cleansed(NULL);
}

int main(void)
{
	CU_pSuite s;
	int failures;

	if (CU_initialize_registry() != CUE_SUCCESS)
		return CU_get_error();
	s = CU_add_suite("passthrough", NULL, NULL);
	if (!s || !CU_add_test(s, "round trip, two devices", test_round_trip_two_devices) ||
	    !CU_add_test(s, "binding and tampering", test_binding_and_tampering) ||
	    !CU_add_test(s, "plaintext completion and checks", test_plaintext_completion_and_checks) ||
	    !CU_add_test(s, "bad keys answers", test_bad_keys_answers) ||
	    !CU_add_test(s, "device selection", test_device_selection) ||
	    !CU_add_test(s, "put cleansed wipes strings and text", test_put_cleansed_wipes_strings_and_text)) {
		CU_cleanup_registry();
		return CU_get_error();
	}
	CU_basic_set_mode(CU_BRM_VERBOSE);
	CU_basic_run_tests();
	failures = (int)CU_get_number_of_failures();
	CU_cleanup_registry();
	return failures ? 1 : 0;
}
