/*
 * fuzz_jwt.c - gateway bearer tokens (daemon/jwt_auth.c): what any client
 * on the network can put after "Bearer ".
 *
 * The first byte picks the mode:
 * - even: the rest is the token, as received. Nothing is signed, so it must
 *   be refused, with one of the documented reasons.
 * - odd: the rest is "HEADER\nPAYLOAD" (JSON texts, as they come): the
 *   harness signs them with the test issuer's EC key (ES256) so that the
 *   claims checks behind the signature are explored too. When such a token
 *   is accepted, its payload must name the issuer, carry an unexpired "exp"
 *   and yield a printable client identity.
 * Keys are the TEST-ONLY ones of tests/data/jwt (see gen.sh there).
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "b64url.h"
#include "fuzz_common.h"
#include "jwt_auth.h"

#define ISS "https://api-acpt.ehealth.fgov.be/auth/realms/M2M"
#define AUD "smis"
#define SKEW 30
#define NOW 1893456000 /* 2030-01-01: a fixed clock, reproducible runs */

static struct smisd_jwt_issuer *issuers[2];
static EVP_PKEY *ec_key;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	char err[256];
	issuers[0] = smisd_jwt_issuer_new(ISS, AUD, FUZZ_DATA "/jwt/jwks.json", SKEW, err, sizeof(err));
	issuers[1] = smisd_jwt_issuer_new(ISS, "smis-admin", FUZZ_DATA "/jwt/both.pub", SKEW, err,
					  sizeof(err));
	FILE *f = fopen(FUZZ_DATA "/jwt/ec.key", "r");
	if (f) {
		ec_key = PEM_read_PrivateKey(f, NULL, NULL, NULL);
		fclose(f);
	}
	if (!issuers[0] || !issuers[1] || !ec_key) {
		fprintf(stderr, "fuzz_jwt: cannot load the test keys from %s: %s\n", FUZZ_DATA, err);
		exit(1);
	}
	return 0;
}

static char *b64(const unsigned char *in, size_t len)
{
	char *out = NULL;
	return smis_b64url_encode(in, len, &out) == 0 ? out : NULL;
}

/* header.payload.signature with ES256 (raw r || s), or NULL. */
static char *sign_es256(const char *header, size_t hlen, const char *payload, size_t plen)
{
	char *h = b64((const unsigned char *)header, hlen), *p = b64((const unsigned char *)payload, plen);
	char *input = NULL, *tok = NULL, *s = NULL;
	unsigned char der[80], raw[64];
	size_t der_len = sizeof(der);
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	ECDSA_SIG *es = NULL;
	if (!h || !p || !md)
		goto out;
	size_t in_len = strlen(h) + 1 + strlen(p);
	input = malloc(in_len + 1);
	if (!input)
		goto out;
	snprintf(input, in_len + 1, "%s.%s", h, p);
	if (EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, ec_key) != 1 ||
	    EVP_DigestSign(md, der, &der_len, (const unsigned char *)input, in_len) != 1)
		goto out;
	const unsigned char *q = der;
	es = d2i_ECDSA_SIG(NULL, &q, (long)der_len);
	if (!es)
		goto out;
	BN_bn2binpad(ECDSA_SIG_get0_r(es), raw, 32);
	BN_bn2binpad(ECDSA_SIG_get0_s(es), raw + 32, 32);
	s = b64(raw, sizeof(raw));
	if (!s)
		goto out;
	tok = malloc(in_len + 2 + strlen(s));
	if (tok)
		sprintf(tok, "%s.%s", input, s);
out:
	ECDSA_SIG_free(es);
	EVP_MD_CTX_free(md);
	free(h);
	free(p);
	free(input);
	free(s);
	return tok;
}

static void check_accepted(const char *payload, size_t plen, const char *client_id)
{
	size_t n = strlen(client_id);
	FUZZ_CHECK(n >= 1);
	for (size_t i = 0; i < n; i++)
		FUZZ_CHECK(client_id[i] > 0x20 && client_id[i] < 0x7f);
	struct json_tokener *tk = json_tokener_new();
	struct json_object *o = json_tokener_parse_ex(tk, payload, (int)plen);
	FUZZ_CHECK(o && json_object_is_type(o, json_type_object));
	struct json_object *iss, *exp;
	FUZZ_CHECK(json_object_object_get_ex(o, "iss", &iss) &&
		   strcmp(json_object_get_string(iss), ISS) == 0);
	FUZZ_CHECK(json_object_object_get_ex(o, "exp", &exp));
	FUZZ_CHECK(json_object_is_type(exp, json_type_int) || json_object_is_type(exp, json_type_double));
	FUZZ_CHECK(json_object_get_double(exp) + SKEW > NOW);
	json_object_put(o);
	json_tokener_free(tk);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0)
		return 0;
	int signed_mode = data[0] & 1;
	char *in = fuzz_cstr(data + 1, size - 1);
	if (!in)
		return 0;
	char *token = in;
	const char *payload = NULL;
	size_t plen = 0;
	if (signed_mode) {
		char *nl = memchr(in, '\n', size - 1);
		if (!nl)
			goto out;
		payload = nl + 1;
		plen = size - 1 - (size_t)(payload - in);
		token = sign_es256(in, (size_t)(nl - in), payload, plen);
		if (!token)
			goto out;
	}
	(void)smisd_jwt_looks_like(token);
	char client_id[128];
	const char *reason = NULL;
	int rc = smisd_jwt_verify((const struct smisd_jwt_issuer *const *)issuers, 2, token, NOW,
				  client_id, sizeof(client_id), &reason);
	if (rc == 0) {
		FUZZ_CHECK(signed_mode);
		check_accepted(payload, plen, client_id);
	} else {
		FUZZ_CHECK(rc == -EACCES);
		FUZZ_CHECK(client_id[0] == '\0');
		FUZZ_CHECK(reason != NULL);
		static const char *const reasons[] = { "malformed", "alg_not_allowed", "typ_not_allowed",
						       "wrong_issuer", "unknown_key", "kid_required", "bad_signature",
						       "expired", "not_yet_valid", "wrong_audience" };
		int known = 0;
		for (size_t i = 0; i < sizeof(reasons) / sizeof(reasons[0]); i++)
			known |= strcmp(reason, reasons[i]) == 0;
		FUZZ_CHECK(known);
	}
	if (token != in)
		free(token);
out:
	free(in);
	return 0;
}
