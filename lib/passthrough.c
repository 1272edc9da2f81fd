/*
 * passthrough.c - seal a GovApp message on the institution's side, for
 * every device SMIS reported (docs/passthrough.md). The envelopes are the
 * same as the ones the govapp channel seals itself (lib/e2e.c), so the app
 * cannot tell who encrypted them.
 */
#include "config.h"

#include "passthrough.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>
#include <openssl/crypto.h>

#include "e2e.h"

#define PT_KEY_ALG "X25519"

static const char *pt_string(struct json_object *o, const char *key)
{
	struct json_object *v;

	if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string))
		return NULL;
	return json_object_get_string(v);
}

/* A device's key_alg: absent means X25519; present, it must be that
 * string. null or a number is a malformed entry, skipped like a bad key,
 * not read as "absent" (SMIS reads GovApp's lookup the same way). */
static bool pt_key_alg_ok(struct json_object *d)
{
	const char *alg = pt_string(d, "key_alg");

	return alg ? strcmp(alg, PT_KEY_ALG) == 0 : !json_object_object_get_ex(d, "key_alg", NULL);
}

/* The id SMIS hands out: "msg_" and 26 Crockford base32 characters. It is
 * also the only form POST /v1/messages takes back. */
static bool pt_valid_message_id(const char *id)
{
	static const char b32[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

	if (!id || strncmp(id, "msg_", 4) != 0 || strlen(id) != 30)
		return false;
	for (const char *p = id + 4; *p; p++)
		if (!strchr(b32, *p))
			return false;
	return true;
}

static struct json_object *pt_parse(const char *text)
{
	struct json_tokener *tok = json_tokener_new();
	struct json_object *o = NULL;
	size_t len = strlen(text);

	if (!tok || len > SMIS_E2E_MAX_PT_LEN * 2)
		goto out;
	/* JSON is UTF-8 (RFC 8259), and the app reads the plaintext as such:
	 * json-c would take other bytes and write them back as they are. */
	json_tokener_set_flags(tok, JSON_TOKENER_VALIDATE_UTF8);
	o = json_tokener_parse_ex(tok, text, (int)len);
	/* Exactly one value: trailing bytes mean a truncated or glued body. */
	if (o && (json_tokener_get_error(tok) != json_tokener_success ||
		  json_tokener_get_parse_end(tok) != len)) {
		json_object_put(o);
		o = NULL;
	}
out:
	json_tokener_free(tok);
	return o;
}

/*
 * Check the plaintext object and complete it in place (v, message_id,
 * format, body_text). Returns 0 or -EINVAL.
 */
static int pt_complete_plaintext(struct json_object *pt, const char *message_id)
{
	struct json_object *v, *content;
	const char *mid;
	int rc = -EINVAL;

	if (!json_object_is_type(pt, json_type_object))
		goto out;
	if (json_object_object_get_ex(pt, "v", &v)) {
		if (!json_object_is_type(v, json_type_int) || json_object_get_int64(v) != 1)
			goto out;
	} else if (json_object_object_add(pt, "v", json_object_new_int(1)) < 0) {
		goto out;
	}
	if (json_object_object_get_ex(pt, "message_id", &v)) {
		/* The app checks it against the id the envelope is bound to. */
		mid = json_object_is_type(v, json_type_string) ? json_object_get_string(v) : NULL;
		if (!mid || strcmp(mid, message_id) != 0)
			goto out;
	} else if (json_object_object_add(pt, "message_id", json_object_new_string(message_id)) < 0) {
		goto out;
	}
	if (!json_object_object_get_ex(pt, "content", &content) ||
	    !json_object_is_type(content, json_type_object) || json_object_object_length(content) == 0)
		goto out;
	json_object_object_foreach(content, lang, lc) {
		const char *format, *body;

		(void)lang;
		if (!json_object_is_type(lc, json_type_object) || !pt_string(lc, "title") ||
		    !(body = pt_string(lc, "body")))
			goto out;
		format = pt_string(lc, "format");
		if (json_object_object_get_ex(lc, "format", &v) && !format)
			goto out;
		if (format && strcmp(format, "text") != 0 && strcmp(format, "html") != 0)
			goto out;
		if (!format && json_object_object_add(lc, "format", json_object_new_string("text")) < 0)
			goto out;
		if (json_object_object_get_ex(lc, "body_text", &v)) {
			if (!json_object_is_type(v, json_type_string))
				goto out;
		} else if (format && strcmp(format, "html") == 0) {
			/* A plain rendering of HTML needs a parser; the caller
			 * has one (smis-encrypt uses lib/html_sanitize). */
			goto out;
		} else if (json_object_object_add(lc, "body_text", json_object_new_string(body)) < 0) {
			goto out;
		}
	}
	rc = 0;
out:
	return rc;
}

/* Seal pt to one device and append its envelope to envs. */
static int pt_seal_one(const char *message_id, const char *device_id, const char *pk, const char *pt,
		       size_t pt_len, struct json_object *envs)
{
	struct json_object *e = NULL;
	char *enc = NULL, *ct = NULL;
	int rc;

	/* The envelope is bound to the message id and the device id. */
	rc = smis_e2e_seal(message_id, device_id, pk, (const unsigned char *)pt, pt_len, &enc, &ct);
	if (rc < 0)
		goto out;
	rc = -ENOMEM;
	e = json_object_new_object();
	if (!e || json_object_object_add(e, "device_id", json_object_new_string(device_id)) < 0 ||
	    json_object_object_add(e, "enc", json_object_new_string(enc)) < 0 ||
	    json_object_object_add(e, "ciphertext", json_object_new_string(ct)) < 0 ||
	    json_object_array_add(envs, e) < 0)
		goto out;
	e = NULL;
	rc = 0;
out:
	json_object_put(e);
	free(enc);
	free(ct);
	return rc;
}

/* True when envs already holds an envelope for device_id. Only sealed
 * devices count: an earlier entry of the same id that was skipped (no
 * usable key) must not hide a later one that has a key. */
static bool pt_sealed(struct json_object *envs, const char *device_id)
{
	for (size_t j = 0; j < json_object_array_length(envs); j++) {
		const char *other = pt_string(json_object_array_get_idx(envs, j), "device_id");

		if (other && strcmp(other, device_id) == 0)
			return true;
	}
	return false;
}

/* Wipes the strings of o's tree in place (json-c's copies, freed by
 * json_object_put as they are). */
static void pt_cleanse_strings(struct json_object *o)
{
	switch (json_object_get_type(o)) {
	case json_type_string:
		OPENSSL_cleanse((char *)json_object_get_string(o), (size_t)json_object_get_string_len(o));
		break;
	case json_type_object: {
		json_object_object_foreach(o, key, member) {
			(void)key;
			pt_cleanse_strings(member);
		}
		break;
	}
	case json_type_array:
		for (size_t i = 0; i < json_object_array_length(o); i++)
			pt_cleanse_strings(json_object_array_get_idx(o, i));
		break;
	default:
		break;
	}
}

void smis_passthrough_json_put_cleansed(struct json_object *o)
{
	const char *text;

	if (!o)
		return;
	/* json-c keeps the text it made of o in a buffer of o's, which is not
	 * reachable otherwise: made again with the same flags, the same text
	 * lands in the same buffer (before the strings are wiped, so that its
	 * length does not change), and is wiped there. */
	text = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
	if (text)
		OPENSSL_cleanse((char *)text, strlen(text));
	pt_cleanse_strings(o);
	json_object_put(o);
}

int smis_passthrough_seal(const char *keys_json, const char *plaintext_json, char **encrypted_json,
			  char **message_id)
{
	struct json_object *keys = NULL, *pt = NULL, *devs, *out = NULL, *envs;
	const char *mid, *suite, *text;
	char *pt_text = NULL, *enc_text = NULL, *mid_copy = NULL;
	size_t n, pt_len = 0;
	int rc = -EINVAL;

	if (encrypted_json)
		*encrypted_json = NULL;
	if (message_id)
		*message_id = NULL;
	if (!keys_json || !plaintext_json || !encrypted_json || !message_id)
		goto out;
	keys = pt_parse(keys_json);
	if (!keys || !json_object_is_type(keys, json_type_object))
		goto out;
	mid = pt_string(keys, "message_id");
	suite = pt_string(keys, "encryption");
	if (!pt_valid_message_id(mid) || !suite || strcmp(suite, SMIS_E2E_SUITE) != 0 ||
	    !json_object_object_get_ex(keys, "devices", &devs) || !json_object_is_type(devs, json_type_array))
		goto out;

	pt = pt_parse(plaintext_json);
	if (!pt || pt_complete_plaintext(pt, mid) < 0)
		goto out;
	rc = -ENOMEM;
	text = json_object_to_json_string_ext(pt, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
	pt_text = text ? strdup(text) : NULL;
	if (!pt_text)
		goto out;
	pt_len = strlen(pt_text);
	if (pt_len > SMIS_E2E_MAX_PT_LEN) {
		rc = -E2BIG;
		goto out;
	}

	out = json_object_new_object();
	envs = json_object_new_array();
	if (!out || !envs || json_object_object_add(out, "encryption", json_object_new_string(SMIS_E2E_SUITE)) < 0 ||
	    json_object_object_add(out, "envelopes", envs) < 0) {
		json_object_put(envs);
		goto out;
	}
	n = json_object_array_length(devs);
	for (size_t i = 0; i < n; i++) {
		struct json_object *d = json_object_array_get_idx(devs, i);
		const char *id = pt_string(d, "device_id"), *pk = pt_string(d, "public_key");
		int r;

		if (!id || !id[0] || !pk || !pt_key_alg_ok(d) || pt_sealed(envs, id) ||
		    smis_e2e_check_public_key(pk) < 0)
			continue;
		if (json_object_array_length(envs) == SMIS_PASSTHROUGH_MAX_ENVELOPES) {
			rc = -E2BIG;
			goto out;
		}
		r = pt_seal_one(mid, id, pk, pt_text, pt_len, envs);
		/* -EINVAL here is a device id SMIS could not bind (too long):
		 * that device is skipped like one without a usable key. */
		if (r < 0 && r != -EINVAL) {
			rc = r;
			goto out;
		}
	}
	if (json_object_array_length(envs) == 0) {
		rc = -ENODEV;
		goto out;
	}
	text = json_object_to_json_string_ext(out, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
	enc_text = text ? strdup(text) : NULL;
	mid_copy = strdup(mid);
	if (!enc_text || !mid_copy)
		goto out;
	*encrypted_json = enc_text;
	*message_id = mid_copy;
	enc_text = NULL;
	mid_copy = NULL;
	rc = 0;
out:
	/* The plaintext is the secret this whole exercise protects. */
	if (pt_text) {
		OPENSSL_cleanse(pt_text, pt_len);
		free(pt_text);
	}
	free(enc_text);
	free(mid_copy);
	json_object_put(out);
	smis_passthrough_json_put_cleansed(pt);
	json_object_put(keys);
	return rc;
}
