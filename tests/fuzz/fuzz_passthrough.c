/*
 * fuzz_passthrough.c - the institution's side of a passthrough message
 * (lib/passthrough.c, what smis-encrypt and an institution's own client
 * link): SMIS's answer to POST /v1/recipients/keys and the plaintext the
 * institution wrote, sealed to every device the answer lists.
 *
 * The input is the keys answer, a NUL byte, then the plaintext object.
 * The call returns 0, -EINVAL, -ENODEV or -E2BIG, and -ENODEV only when no
 * device has a usable key. A sealed message is the `encrypted` member SMIS
 * takes: its suite, 1 to 16 envelopes, one per usable device and each for
 * a device of the answer; the envelope for the device whose key is the test
 * key below opens, bound to the answer's message id and that device, to a
 * JSON object in valid UTF-8 (docs/e2e-format.md section 7) with `v` 1,
 * that message id and each language's title, body, body_text and format.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "b64url.h"
#include "e2e.h"
#include "fuzz_common.h"
#include "fuzz_json_parse.h"
#include "passthrough.h"

/* A device key pair made for this target only (smis_e2e_keygen_b64url);
 * the seeds list its public key. */
#define TEST_SK "24bo1Cw3FAbcpNj6YoVJCNDiydK1bLZ-6CLRyiZru_8"
#define TEST_PK "UZrxoQ636h0_vrCoTG5eBpdUsKFLy_bcGfixNW3XETc"

static const char *string_member(json_object *o, const char *key)
{
	json_object *v;

	if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string))
		return NULL;
	return json_object_get_string(v);
}

/* Whether the device entry d is one the seal must use (passthrough.h). A
 * key_alg that is present but no string (null, a number) makes the entry
 * unusable, as in SMIS's own reading of GovApp's lookup (govapp.c). */
static int usable(json_object *d)
{
	const char *id = string_member(d, "device_id"), *pk = string_member(d, "public_key");
	const char *alg = string_member(d, "key_alg");
	int alg_ok = alg ? strcmp(alg, "X25519") == 0 : !json_object_object_get_ex(d, "key_alg", NULL);

	return id && id[0] && strlen(id) <= SMIS_E2E_MAX_ID_LEN && pk && alg_ok &&
	       smis_e2e_check_public_key(pk) == 0;
}

/* The device entry of keys named id that the seal used, or NULL. */
static json_object *device_of(json_object *keys, const char *id)
{
	json_object *devs;

	FUZZ_CHECK(json_object_object_get_ex(keys, "devices", &devs));
	for (size_t i = 0; i < json_object_array_length(devs); i++) {
		json_object *d = json_object_array_get_idx(devs, i);
		const char *other = string_member(d, "device_id");

		if (other && strcmp(other, id) == 0 && usable(d))
			return d;
	}
	return NULL;
}

static size_t usable_devices(json_object *keys)
{
	json_object *devs;
	size_t n = 0;

	if (!keys || !json_object_object_get_ex(keys, "devices", &devs) ||
	    !json_object_is_type(devs, json_type_array))
		return 0;
	for (size_t i = 0; i < json_object_array_length(devs); i++)
		n += usable(json_object_array_get_idx(devs, i)) != 0;
	return n;
}

/* The plaintext an envelope for the test key opens to. */
static void check_plaintext(json_object *env, const char *mid, const char *device_id)
{
	unsigned char sk[32], *pt = NULL;
	size_t n = 0;
	json_object *o, *content, *v;

	FUZZ_CHECK(smis_b64url_decode_fixed(TEST_SK, sk, sizeof(sk)) == 0);
	FUZZ_CHECK(smis_e2e_open(mid, device_id, sk, string_member(env, "enc"), string_member(env, "ciphertext"),
				 &pt, &n) == 0);
	o = fuzz_json_parse((const char *)pt, n);
	FUZZ_CHECK(o && json_object_is_type(o, json_type_object));
	FUZZ_CHECK(json_object_object_get_ex(o, "v", &v) && json_object_is_type(v, json_type_int) &&
		   json_object_get_int64(v) == 1);
	FUZZ_CHECK(string_member(o, "message_id") && strcmp(string_member(o, "message_id"), mid) == 0);
	FUZZ_CHECK(json_object_object_get_ex(o, "content", &content) &&
		   json_object_is_type(content, json_type_object) && json_object_object_length(content) > 0);
	json_object_object_foreach(content, lang, lc) {
		const char *format = string_member(lc, "format");

		(void)lang;
		FUZZ_CHECK(string_member(lc, "title") && string_member(lc, "body") && string_member(lc, "body_text"));
		FUZZ_CHECK(format && (strcmp(format, "text") == 0 || strcmp(format, "html") == 0));
	}
	json_object_put(o);
	free(pt);
}

static void check_sealed(const char *keys_json, const char *encrypted, const char *mid)
{
	json_object *keys = json_tokener_parse(keys_json), *o, *envs;
	size_t n;

	FUZZ_CHECK(keys);
	FUZZ_CHECK(string_member(keys, "message_id") && strcmp(string_member(keys, "message_id"), mid) == 0);
	o = fuzz_json_parse(encrypted, strlen(encrypted));
	FUZZ_CHECK(o);
	FUZZ_CHECK(string_member(o, "encryption") && strcmp(string_member(o, "encryption"), SMIS_E2E_SUITE) == 0);
	FUZZ_CHECK(json_object_object_get_ex(o, "envelopes", &envs));
	n = json_object_array_length(envs);
	FUZZ_CHECK(n >= 1 && n <= SMIS_PASSTHROUGH_MAX_ENVELOPES);
	for (size_t i = 0; i < n; i++) {
		json_object *env = json_object_array_get_idx(envs, i), *d;
		const char *id = string_member(env, "device_id");

		FUZZ_CHECK(id && (d = device_of(keys, id)) != NULL);
		for (size_t j = 0; j < i; j++)
			FUZZ_CHECK(strcmp(string_member(json_object_array_get_idx(envs, j), "device_id"), id) != 0);
		if (strcmp(string_member(d, "public_key"), TEST_PK) == 0)
			check_plaintext(env, mid, id);
	}
	json_object_put(o);
	json_object_put(keys);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *in = fuzz_cstr(data, size), *encrypted = NULL, *mid = NULL;
	const char *plaintext;
	json_object *keys;
	int rc;

	if (!in)
		return 0;
	/* The plaintext starts after the first NUL; without one it is empty. */
	plaintext = in + strlen(in) + (strlen(in) < size);
	rc = smis_passthrough_seal(in, plaintext, &encrypted, &mid);
	FUZZ_CHECK(rc == 0 || rc == -EINVAL || rc == -ENODEV || rc == -E2BIG);
	FUZZ_CHECK((rc == 0) == (encrypted != NULL) && (rc == 0) == (mid != NULL));
	if (rc == -ENODEV) {
		keys = json_tokener_parse(in);
		FUZZ_CHECK(usable_devices(keys) == 0);
		json_object_put(keys);
	}
	if (rc == 0)
		check_sealed(in, encrypted, mid);
	free(encrypted);
	free(mid);
	free(in);
	return 0;
}
