/*
 * jwt_auth.c - JWT bearer tokens from the eHealth API gateway (see
 * jwt_auth.h for the rules). Signatures are checked by OpenSSL 3 EVP, JSON is
 * parsed by json-c in strict mode; the only code written here is the
 * plumbing between them, so there is no hand-rolled cryptography.
 *
 * No secret is compared anywhere in this file: public-key verification only
 * handles public keys, public claims and signatures, so plain strcmp() on
 * iss/aud/kid leaks nothing and constant-time comparison is not needed. The
 * one secret-like thing, the token, is never logged or copied out.
 */
#include "config.h"

#include "b64url.h"
#include "jwt_auth.h"
#include "utf8.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <json-c/json.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

/* A realm JWKS is a few KiB; anything near this is not a key file. */
#define JWT_KEY_FILE_MAX (1024 * 1024)
/* Headers, claims and JWKS are all shallow; deep nesting is an attack. */
#define JWT_JSON_DEPTH 16
#define JWT_RSA_MIN_BITS 2048
#define JWT_P256_COORD 32

/* Static reasons returned to the caller (jwt_auth.h lists them). */
static const char R_MALFORMED[] = "malformed";
static const char R_ALG[] = "alg_not_allowed";
static const char R_TYP[] = "typ_not_allowed";
static const char R_ISSUER[] = "wrong_issuer";
static const char R_UNKNOWN_KEY[] = "unknown_key";
static const char R_SIGNATURE[] = "bad_signature";
static const char R_EXPIRED[] = "expired";
static const char R_NOT_YET[] = "not_yet_valid";
static const char R_AUDIENCE[] = "wrong_audience";
static const char R_KID_REQUIRED[] = "kid_required";

/* The key type is the alg: RSA keys verify RS256 only, EC keys ES256 only. */
enum jwt_kty {
	JWT_KTY_RSA,
	JWT_KTY_EC,
};

struct jwt_key {
	EVP_PKEY *pkey;
	char *kid;		/* NULL for PEM keys */
	enum jwt_kty kty;
};

struct smisd_jwt_issuer {
	char *issuer;
	char *audience;
	int skew;
	struct jwt_key *keys;
	size_t n_keys;
	size_t cap_keys;
};

/* A token cut into its parts; every pointer is owned by the struct. */
struct jwt_token {
	size_t signing_len;	/* bytes of "header.payload" */
	json_object *header;
	json_object *claims;
	unsigned char *sig;
	size_t sig_len;
	enum jwt_kty kty;
	const char *kid;	/* borrowed from header, NULL when absent */
};

__attribute__((format(printf, 3, 4)))
static void jwt_set_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

/* Members written in buf: its ':' outside strings (buf is valid JSON). */
static size_t jwt_text_members(const unsigned char *buf, size_t len)
{
	size_t n = 0;
	bool in_string = false;

	for (size_t i = 0; i < len; i++) {
		if (in_string && buf[i] == '\\')
			i++;
		else if (buf[i] == '"')
			in_string = !in_string;
		else if (!in_string && buf[i] == ':')
			n++;
	}
	return n;
}

/* Members json-c kept in obj and below (depth is bounded by the parser). */
static size_t jwt_tree_members(json_object *obj)
{
	size_t n = 0;

	if (json_object_is_type(obj, json_type_object)) {
		json_object_object_foreach(obj, name, val) {
			(void)name;
			n += 1 + jwt_tree_members(val);
		}
	} else if (json_object_is_type(obj, json_type_array)) {
		for (size_t i = 0; i < json_object_array_length(obj); i++)
			n += jwt_tree_members(json_object_array_get_idx(obj, i));
	}
	return n;
}

/*
 * Parse buf[0..len) as exactly one JSON object: strict grammar, valid UTF-8,
 * no NUL byte (json-c would stop there), nothing after the object and no
 * duplicate member at any depth. json-c keeps the last of duplicates, as
 * RFC 7515/7519 allow, but a gateway or issuer that keeps the first would
 * read another header or claim: refusing them leaves one reading only.
 * Returns a new reference, or NULL.
 */
static json_object *jwt_parse_object(const unsigned char *buf, size_t len)
{
	json_tokener *tok = NULL;
	json_object *obj = NULL;

	if (len == 0 || len > JWT_KEY_FILE_MAX || memchr(buf, '\0', len) != NULL)
		goto out;
	tok = json_tokener_new_ex(JWT_JSON_DEPTH);
	if (tok == NULL)
		goto out;
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
	obj = json_tokener_parse_ex(tok, (const char *)buf, (int)len);
	if (obj == NULL || json_tokener_get_error(tok) != json_tokener_success ||
	    json_tokener_get_parse_end(tok) != len || !json_object_is_type(obj, json_type_object) ||
	    jwt_tree_members(obj) != jwt_text_members(buf, len)) {
		json_object_put(obj);
		obj = NULL;
	}
	json_tokener_free(tok);
out:
	return obj;
}

/*
 * v as a C string, or NULL when it is not a JSON string or holds "\u0000":
 * every use below (strcmp, strlen) would stop at that NUL and take
 * "smis\u0000-other" for "smis".
 */
static const char *jwt_string(json_object *v)
{
	const char *s = NULL;

	if (json_object_is_type(v, json_type_string) &&
	    strlen(json_object_get_string(v)) == (size_t)json_object_get_string_len(v))
		s = json_object_get_string(v);
	return s;
}

/* The string member `name` of obj: 1 and *val, 0 when absent, -1 when not a string. */
static int jwt_get_string(json_object *obj, const char *name, const char **val)
{
	json_object *v;
	int rc = 0;

	*val = NULL;
	if (!json_object_object_get_ex(obj, name, &v))
		goto out;
	*val = jwt_string(v);
	rc = *val != NULL ? 1 : -1;
out:
	return rc;
}

/* ---- keys ---------------------------------------------------------------- */

/*
 * Decide the key's type and enforce the key rules: RSA (not RSA-PSS) of at
 * least 2048 bits or EC on P-256, and OpenSSL's public-key validation (point
 * on the curve; RSA modulus odd and composite, sane exponent).
 */
static int jwt_key_check(EVP_PKEY *pkey, enum jwt_kty *kty, const char *what, char *err,
			 size_t errlen)
{
	EVP_PKEY_CTX *ctx = NULL;
	char group[64];
	int rc = -EINVAL;

	if (EVP_PKEY_is_a(pkey, "RSA")) {
		int bits = EVP_PKEY_get_bits(pkey);

		if (bits < JWT_RSA_MIN_BITS) {
			jwt_set_err(err, errlen, "%s: RSA key of %d bits (at least %d required)",
				    what, bits, JWT_RSA_MIN_BITS);
			goto out;
		}
		*kty = JWT_KTY_RSA;
	} else if (EVP_PKEY_is_a(pkey, "EC")) {
		if (!EVP_PKEY_get_utf8_string_param(pkey, OSSL_PKEY_PARAM_GROUP_NAME, group,
						    sizeof(group), NULL) ||
		    strcmp(group, SN_X9_62_prime256v1) != 0) {
			jwt_set_err(err, errlen, "%s: EC key not on curve P-256", what);
			goto out;
		}
		*kty = JWT_KTY_EC;
	} else {
		jwt_set_err(err, errlen, "%s: key type %s is neither RSA nor EC", what,
			    EVP_PKEY_get0_type_name(pkey) ? EVP_PKEY_get0_type_name(pkey) : "?");
		goto out;
	}
	ctx = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
	if (ctx == NULL || EVP_PKEY_public_check(ctx) != 1) {
		jwt_set_err(err, errlen, "%s: public key fails validation", what);
		goto out_free_ctx;
	}
	rc = 0;
out_free_ctx:
	EVP_PKEY_CTX_free(ctx);
out:
	return rc;
}

/* Takes ownership of pkey in every case. kid (borrowed) may be NULL. */
static int jwt_issuer_add_key(struct smisd_jwt_issuer *is, EVP_PKEY *pkey, const char *kid,
			      const char *what, char *err, size_t errlen)
{
	struct jwt_key *k;
	enum jwt_kty kty = JWT_KTY_RSA;
	int rc;

	rc = jwt_key_check(pkey, &kty, what, err, errlen);
	if (rc != 0)
		goto out_free_pkey;
	if (kid != NULL) {
		for (size_t i = 0; i < is->n_keys; i++) {
			if (is->keys[i].kid != NULL && strcmp(is->keys[i].kid, kid) == 0) {
				jwt_set_err(err, errlen, "%s: duplicate kid", what);
				rc = -EINVAL;
				goto out_free_pkey;
			}
		}
	}
	if (is->n_keys == is->cap_keys) {
		size_t cap = is->cap_keys ? is->cap_keys * 2 : 4;

		k = realloc(is->keys, cap * sizeof(*k));
		if (k == NULL) {
			rc = -ENOMEM;
			goto out_free_pkey;
		}
		is->keys = k;
		is->cap_keys = cap;
	}
	k = &is->keys[is->n_keys];
	k->kid = NULL;
	if (kid != NULL) {
		k->kid = strdup(kid);
		if (k->kid == NULL) {
			rc = -ENOMEM;
			goto out_free_pkey;
		}
	}
	k->pkey = pkey;
	k->kty = kty;
	is->n_keys++;
	goto out;
out_free_pkey:
	EVP_PKEY_free(pkey);
out:
	return rc;
}

/*
 * The lines of text[0..len) that open a PEM block ("-----BEGIN " at the start
 * of a line, after a '\n' or, as an editor shows it, a lone '\r'), as the
 * operator counts blocks. OpenSSL takes one that does not end as a label line
 * must ("-----BEGIN PUBLIC KEY--(--"), or that follows a '\r' in its line,
 * for text between blocks, and would drop its key without a word.
 */
static int jwt_pem_begin_lines(const char *text, size_t len)
{
	static const char begin[] = "-----BEGIN ";
	const char *p = text, *end = text + len;
	int n = 0;

	while (p != NULL && (size_t)(end - p) >= sizeof(begin) - 1) {
		n += memcmp(p, begin, sizeof(begin) - 1) == 0;
		while (p < end && *p != '\n' && *p != '\r')
			p++;
		p = p < end ? p + 1 : NULL;
	}
	return n;
}

/*
 * PEM: every block must be a SubjectPublicKeyInfo ("PUBLIC KEY") or an X.509
 * certificate, used only as a container for its key: its validity dates and
 * chain are not looked at, trust comes from the configuration. Text between
 * blocks is ignored, but not a block OpenSSL cannot find the label of.
 */
static int jwt_load_pem(struct smisd_jwt_issuer *is, const char *text, size_t len, char *err,
			size_t errlen)
{
	BIO *bio;
	int rc = 0, blocks = 0;

	/* OpenSSL reads a line only up to a NUL byte: what follows it would be
	 * a second, unchecked meaning (a label "PUBLIC KEY\0..." passes). */
	if (memchr(text, '\0', len) != NULL) {
		jwt_set_err(err, errlen, "the key file holds a NUL byte: not PEM text");
		rc = -EINVAL;
		goto out;
	}
	bio = BIO_new_mem_buf(text, (int)len);
	if (bio == NULL) {
		rc = -ENOMEM;
		goto out;
	}
	for (;;) {
		char *name = NULL, *header = NULL;
		unsigned char *data = NULL;
		long dlen = 0;
		const unsigned char *p;
		EVP_PKEY *pkey = NULL;
		char what[32];

		ERR_clear_error();
		if (!PEM_read_bio(bio, &name, &header, &data, &dlen)) {
			if (ERR_GET_REASON(ERR_peek_last_error()) != PEM_R_NO_START_LINE) {
				jwt_set_err(err, errlen, "PEM block %d: cannot be decoded",
					    blocks + 1);
				rc = -EINVAL;
			}
			break;
		}
		blocks++;
		snprintf(what, sizeof(what), "PEM block %d", blocks);
		p = data;
		if (strcmp(name, PEM_STRING_PUBLIC) == 0) {
			pkey = d2i_PUBKEY(NULL, &p, dlen);
		} else if (strcmp(name, PEM_STRING_X509) == 0) {
			X509 *x = d2i_X509(NULL, &p, dlen);

			if (x != NULL)
				pkey = X509_get_pubkey(x);
			X509_free(x);
		} else {
			char label[64];

			smisd_text_shown(name, label, sizeof(label));
			jwt_set_err(err, errlen, "%s: \"%s\" is not a PUBLIC KEY or CERTIFICATE",
				    what, label);
			rc = -EINVAL;
		}
		/* Trailing bytes inside a block would be a second, unchecked meaning. */
		if (rc == 0 && (pkey == NULL || p != data + dlen)) {
			jwt_set_err(err, errlen, "%s: cannot be parsed", what);
			rc = -EINVAL;
		}
		OPENSSL_free(name);
		OPENSSL_free(header);
		OPENSSL_free(data);
		if (rc == 0)
			rc = jwt_issuer_add_key(is, pkey, NULL, what, err, errlen);
		else
			EVP_PKEY_free(pkey);
		if (rc != 0)
			break;
	}
	if (rc == 0 && blocks == 0) {
		jwt_set_err(err, errlen, "no PEM block found");
		rc = -EINVAL;
	} else if (rc == 0 && blocks < jwt_pem_begin_lines(text, len)) {
		jwt_set_err(err, errlen, "a \"-----BEGIN \" line opens no PEM block that can be decoded");
		rc = -EINVAL;
	}
	BIO_free(bio);
out:
	ERR_clear_error();
	return rc;
}

/* Decode base64url member `name` of jwk into a new BIGNUM. */
static BIGNUM *jwt_jwk_bn(json_object *jwk, const char *name)
{
	const char *s;
	unsigned char *raw = NULL;
	size_t raw_len = 0;
	BIGNUM *bn = NULL;

	if (jwt_get_string(jwk, name, &s) != 1 || smis_b64url_decode(s, strlen(s), &raw, &raw_len) != 0)
		goto out;
	if (raw_len > 0)
		bn = BN_bin2bn(raw, (int)raw_len, NULL);
	free(raw);
out:
	return bn;
}

/* Decode a P-256 coordinate: exactly 32 bytes (RFC 7518 section 6.2.1.2). */
static int jwt_jwk_coord(json_object *jwk, const char *name, unsigned char *out)
{
	const char *s;
	unsigned char *raw = NULL;
	size_t raw_len = 0;
	int rc = -EINVAL;

	if (jwt_get_string(jwk, name, &s) != 1 || smis_b64url_decode(s, strlen(s), &raw, &raw_len) != 0)
		goto out;
	if (raw_len == JWT_P256_COORD) {
		memcpy(out, raw, JWT_P256_COORD);
		rc = 0;
	}
	free(raw);
out:
	return rc;
}

/* Build a public key from OSSL_PARAMs; NULL on failure. */
static EVP_PKEY *jwt_pkey_fromdata(const char *type, OSSL_PARAM_BLD *bld)
{
	OSSL_PARAM *params = NULL;
	EVP_PKEY_CTX *ctx = NULL;
	EVP_PKEY *pkey = NULL;

	params = OSSL_PARAM_BLD_to_param(bld);
	if (params == NULL)
		goto out;
	ctx = EVP_PKEY_CTX_new_from_name(NULL, type, NULL);
	if (ctx == NULL || EVP_PKEY_fromdata_init(ctx) != 1 ||
	    EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) != 1)
		pkey = NULL;
	EVP_PKEY_CTX_free(ctx);
	OSSL_PARAM_free(params);
out:
	return pkey;
}

static EVP_PKEY *jwt_jwk_rsa(json_object *jwk)
{
	OSSL_PARAM_BLD *bld = NULL;
	BIGNUM *n = NULL, *e = NULL;
	EVP_PKEY *pkey = NULL;

	n = jwt_jwk_bn(jwk, "n");
	e = jwt_jwk_bn(jwk, "e");
	if (n == NULL || e == NULL)
		goto out;
	bld = OSSL_PARAM_BLD_new();
	if (bld == NULL || !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n) ||
	    !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e))
		goto out_free_bld;
	pkey = jwt_pkey_fromdata("RSA", bld);
out_free_bld:
	OSSL_PARAM_BLD_free(bld);
out:
	BN_free(n);
	BN_free(e);
	return pkey;
}

static EVP_PKEY *jwt_jwk_ec(json_object *jwk)
{
	unsigned char point[1 + 2 * JWT_P256_COORD];
	OSSL_PARAM_BLD *bld = NULL;
	EVP_PKEY *pkey = NULL;

	point[0] = POINT_CONVERSION_UNCOMPRESSED;
	if (jwt_jwk_coord(jwk, "x", point + 1) != 0 ||
	    jwt_jwk_coord(jwk, "y", point + 1 + JWT_P256_COORD) != 0)
		goto out;
	bld = OSSL_PARAM_BLD_new();
	if (bld == NULL ||
	    !OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, SN_X9_62_prime256v1, 0) ||
	    !OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, point, sizeof(point)))
		goto out_free_bld;
	pkey = jwt_pkey_fromdata("EC", bld);
out_free_bld:
	OSSL_PARAM_BLD_free(bld);
out:
	return pkey;
}

/*
 * A JWK's "key_ops" (RFC 7517, 4.3): 1 when absent or listing "verify",
 * 0 when it lists other operations only (the key is meant for something
 * else), -1 when it is not an array of strings.
 */
static int jwt_jwk_may_verify(json_object *jwk)
{
	json_object *ops;
	int verify = 0;

	if (!json_object_object_get_ex(jwk, "key_ops", &ops))
		return 1;
	if (!json_object_is_type(ops, json_type_array))
		return -1;
	for (size_t i = 0; i < json_object_array_length(ops); i++) {
		const char *op = jwt_string(json_object_array_get_idx(ops, i));
		if (op == NULL)
			return -1;
		verify |= strcmp(op, "verify") == 0;
	}
	return verify;
}

/*
 * One JWK. Returns 0 when it was added or skipped as meant for something
 * else (see jwt_auth.h), -EINVAL/-ENOMEM otherwise.
 */
static int jwt_load_jwk(struct smisd_jwt_issuer *is, json_object *jwk, size_t idx, char *err,
			size_t errlen)
{
	const char *kty, *use, *alg, *kid, *crv;
	EVP_PKEY *pkey = NULL;
	char what[48], shown[33] = "no kid";
	int rc = -EINVAL;

	snprintf(what, sizeof(what), "JWKS key %zu", idx);
	if (!json_object_is_type(jwk, json_type_object) || jwt_get_string(jwk, "kty", &kty) != 1 ||
	    jwt_get_string(jwk, "use", &use) < 0 || jwt_get_string(jwk, "alg", &alg) < 0 ||
	    jwt_get_string(jwk, "kid", &kid) < 0 || jwt_get_string(jwk, "crv", &crv) < 0) {
		jwt_set_err(err, errlen, "%s: not an object with string kty/use/alg/kid/crv", what);
		goto out;
	}
	/* A verification key file has no business holding a private key. */
	if (json_object_object_get_ex(jwk, "d", NULL)) {
		jwt_set_err(err, errlen, "%s: holds private key material", what);
		goto out;
	}
	if (kid != NULL && kid[0] == '\0') {
		jwt_set_err(err, errlen, "%s: empty kid", what);
		goto out;
	}
	switch (jwt_jwk_may_verify(jwk)) {
	case -1:
		jwt_set_err(err, errlen, "%s: key_ops is not an array of strings", what);
		goto out;
	case 0:
		rc = 0;
		goto out;
	}
	if (kid != NULL)
		smisd_text_shown(kid, shown, sizeof(shown));
	rc = 0;
	if (use != NULL && strcmp(use, "sig") != 0)
		goto out;
	if (strcmp(kty, "RSA") == 0) {
		if (alg != NULL && strcmp(alg, "RS256") != 0)
			goto out;
		pkey = jwt_jwk_rsa(jwk);
	} else if (strcmp(kty, "EC") == 0) {
		if ((alg != NULL && strcmp(alg, "ES256") != 0) || crv == NULL ||
		    strcmp(crv, "P-256") != 0)
			goto out;
		pkey = jwt_jwk_ec(jwk);
	} else {
		goto out;
	}
	if (pkey == NULL) {
		jwt_set_err(err, errlen, "%s (%s): invalid %s public key", what, shown, kty);
		rc = -EINVAL;
		goto out;
	}
	if (kid != NULL)
		snprintf(what, sizeof(what), "JWKS key %s", shown);
	rc = jwt_issuer_add_key(is, pkey, kid, what, err, errlen);
out:
	return rc;
}

static int jwt_load_jwks(struct smisd_jwt_issuer *is, const char *text, size_t len, char *err,
			 size_t errlen)
{
	json_object *root, *keys;
	size_t i, n;
	int rc = -EINVAL;

	root = jwt_parse_object((const unsigned char *)text, len);
	if (root == NULL) {
		jwt_set_err(err, errlen, "JWKS is not a strict JSON object");
		goto out;
	}
	if (!json_object_object_get_ex(root, "keys", &keys) ||
	    !json_object_is_type(keys, json_type_array)) {
		jwt_set_err(err, errlen, "JWKS has no \"keys\" array");
		goto out_put;
	}
	n = json_object_array_length(keys);
	rc = 0;
	for (i = 0; i < n && rc == 0; i++)
		rc = jwt_load_jwk(is, json_object_array_get_idx(keys, i), i, err, errlen);
out_put:
	json_object_put(root);
out:
	ERR_clear_error();
	return rc;
}

/* Whole file into a NUL-terminated buffer, caller frees. */
static int jwt_read_file(const char *path, char **buf, size_t *len, char *err, size_t errlen)
{
	FILE *f;
	char *b = NULL;
	size_t n;
	int rc = -EINVAL;

	*buf = NULL;
	f = fopen(path, "rb");
	if (f == NULL) {
		rc = -errno;
		jwt_set_err(err, errlen, "%s: %s", path, strerror(errno));
		goto out;
	}
	b = malloc(JWT_KEY_FILE_MAX + 1);
	if (b == NULL) {
		rc = -ENOMEM;
		goto out_close;
	}
	n = fread(b, 1, JWT_KEY_FILE_MAX + 1, f);
	if (ferror(f) || n == 0 || n > JWT_KEY_FILE_MAX) {
		jwt_set_err(err, errlen, "%s: %s", path,
			    ferror(f) ? "read error" : n == 0 ? "empty" : "too large");
		free(b);
		goto out_close;
	}
	b[n] = '\0';
	*buf = b;
	*len = n;
	rc = 0;
out_close:
	fclose(f);
out:
	return rc;
}

/* The issuer's keys of type kty; with unnamed_only, those without a kid. */
static size_t jwt_count_keys(const struct smisd_jwt_issuer *is, enum jwt_kty kty, bool unnamed_only)
{
	size_t n = 0;

	for (size_t i = 0; i < is->n_keys; i++)
		n += is->keys[i].kty == kty && (!unnamed_only || is->keys[i].kid == NULL);
	return n;
}

/*
 * A key without a kid (every PEM key) is tried for any token of its type,
 * whatever kid the token names: past SMISD_JWT_MAX_UNNAMED_KEYS of one
 * type, anyone could make each request cost that many signature checks.
 * Such a file is refused when it is loaded, not token by token.
 */
static int jwt_check_unnamed(const struct smisd_jwt_issuer *is, const char *key_file, char *err,
			     size_t errlen)
{
	static const enum jwt_kty types[] = { JWT_KTY_RSA, JWT_KTY_EC };

	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
		size_t n = jwt_count_keys(is, types[i], true);

		if (n > SMISD_JWT_MAX_UNNAMED_KEYS) {
			jwt_set_err(err, errlen, "%s: %zu %s keys without a kid, at most %d: publish them in a JWKS, "
				    "each with its kid", key_file, n, types[i] == JWT_KTY_RSA ? "RS256" : "ES256",
				    SMISD_JWT_MAX_UNNAMED_KEYS);
			return -EINVAL;
		}
	}
	return 0;
}

struct smisd_jwt_issuer *smisd_jwt_issuer_new(const char *issuer, const char *audience,
					      const char *key_file, int max_skew_s,
					      char *err, size_t errlen)
{
	struct smisd_jwt_issuer *is = NULL;
	char *text = NULL;
	size_t len = 0, i;
	int rc;

	jwt_set_err(err, errlen, "out of memory");
	if (issuer == NULL || issuer[0] == '\0' || audience == NULL || audience[0] == '\0' ||
	    key_file == NULL || key_file[0] == '\0') {
		jwt_set_err(err, errlen, "issuer, audience and key file are required");
		goto out;
	}
	if (max_skew_s < 0 || max_skew_s > SMISD_JWT_MAX_SKEW) {
		jwt_set_err(err, errlen, "clock skew %d s out of range 0..%d", max_skew_s,
			    SMISD_JWT_MAX_SKEW);
		goto out;
	}
	is = calloc(1, sizeof(*is));
	if (is == NULL)
		goto out;
	is->skew = max_skew_s;
	is->issuer = strdup(issuer);
	is->audience = strdup(audience);
	if (is->issuer == NULL || is->audience == NULL)
		goto out_free;
	if (jwt_read_file(key_file, &text, &len, err, errlen) != 0)
		goto out_free;
	for (i = 0; i < len && strchr(" \t\r\n", text[i]) != NULL; i++)
		;
	if (i < len && text[i] == '{')
		rc = jwt_load_jwks(is, text, len, err, errlen);
	else
		rc = jwt_load_pem(is, text, len, err, errlen);
	if (rc == -ENOMEM)
		jwt_set_err(err, errlen, "out of memory");
	if (rc == 0 && is->n_keys == 0) {
		jwt_set_err(err, errlen, "%s: no RS256/ES256 signature key", key_file);
		rc = -EINVAL;
	}
	if (rc == 0)
		rc = jwt_check_unnamed(is, key_file, err, errlen);
	if (rc != 0)
		goto out_free;
	if (err != NULL && errlen > 0)
		err[0] = '\0';
	goto out_text;
out_free:
	smisd_jwt_issuer_free(is);
	is = NULL;
out_text:
	free(text);
out:
	return is;
}

void smisd_jwt_issuer_free(struct smisd_jwt_issuer *is)
{
	if (is == NULL)
		return;
	for (size_t i = 0; i < is->n_keys; i++) {
		EVP_PKEY_free(is->keys[i].pkey);
		free(is->keys[i].kid);
	}
	free(is->keys);
	free(is->issuer);
	free(is->audience);
	free(is);
}

/* ---- tokens -------------------------------------------------------------- */

int smisd_jwt_looks_like(const char *token)
{
	size_t seg[3] = { 0, 0, 0 };
	int dots = 0, ok = 0;

	if (token == NULL)
		goto out;
	for (const char *p = token; *p; p++) {
		if (*p == '.') {
			if (++dots > 2)
				goto out;
		} else if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
			     *p == '-' || *p == '_')) {
			goto out;
		} else {
			seg[dots]++;
		}
	}
	ok = dots == 2 && seg[0] > 0 && seg[1] > 0;
out:
	return ok;
}

static void jwt_token_clear(struct jwt_token *t)
{
	json_object_put(t->header);
	json_object_put(t->claims);
	free(t->sig);
	memset(t, 0, sizeof(*t));
}

/* Decode one segment as a JSON object; NULL when it is not one. */
static json_object *jwt_segment_object(const char *seg, size_t len)
{
	unsigned char *raw = NULL;
	size_t raw_len = 0;
	json_object *obj = NULL;

	if (smis_b64url_decode(seg, len, &raw, &raw_len) == 0)
		obj = jwt_parse_object(raw, raw_len);
	free(raw);
	return obj;
}

/*
 * Whether a header's "typ" names a JWT (RFC 8725 section 3.11: explicit
 * typing keeps another kind of JWS from the same issuer, an ID token or a
 * signed document, from passing for an access token): "JWT" (RFC 7519 5.1)
 * or "at+jwt" (RFC 9068 2.1). Media types are compared without case, and a
 * typ may carry the "application/" prefix RFC 7515 4.1.9 lets it omit.
 */
static bool jwt_typ_allowed(const char *typ)
{
	static const char prefix[] = "application/";

	if (strncasecmp(typ, prefix, sizeof(prefix) - 1) == 0)
		typ += sizeof(prefix) - 1;
	return strcasecmp(typ, "JWT") == 0 || strcasecmp(typ, "at+jwt") == 0;
}

/*
 * Split and decode; check the header. Returns NULL or a reason. The claims
 * are only parsed here, they mean nothing until the signature is checked.
 */
static const char *jwt_token_parse(const char *token, struct jwt_token *t)
{
	const char *why = R_MALFORMED, *alg, *typ, *dot1, *dot2;
	size_t len;
	int has_typ;

	memset(t, 0, sizeof(*t));
	len = strnlen(token, SMISD_JWT_MAX_LEN + 1);
	if (len > SMISD_JWT_MAX_LEN || !smisd_jwt_looks_like(token))
		goto out;
	dot1 = strchr(token, '.');
	dot2 = strchr(dot1 + 1, '.');
	t->signing_len = (size_t)(dot2 - token);
	t->header = jwt_segment_object(token, (size_t)(dot1 - token));
	t->claims = jwt_segment_object(dot1 + 1, (size_t)(dot2 - dot1 - 1));
	if (t->header == NULL || t->claims == NULL ||
	    smis_b64url_decode(dot2 + 1, strlen(dot2 + 1), &t->sig, &t->sig_len) != 0)
		goto out;
	if (jwt_get_string(t->header, "alg", &alg) != 1)
		goto out;
	/* Exact, case-sensitive names: "none", "None", HS256... all end here. */
	if (strcmp(alg, "RS256") == 0) {
		t->kty = JWT_KTY_RSA;
	} else if (strcmp(alg, "ES256") == 0) {
		t->kty = JWT_KTY_EC;
	} else {
		why = R_ALG;
		goto out;
	}
	/* RFC 7515 4.1.11: extensions we do not understand must not be ignored. */
	if (json_object_object_get_ex(t->header, "crit", NULL))
		goto out;
	/* Absent is a JWT too: gateways that leave typ out are common. */
	has_typ = jwt_get_string(t->header, "typ", &typ);
	if (has_typ < 0)
		goto out;
	if (has_typ == 1 && !jwt_typ_allowed(typ)) {
		why = R_TYP;
		goto out;
	}
	if (jwt_get_string(t->header, "kid", &t->kid) < 0)
		goto out;
	why = NULL;
out:
	return why;
}

/*
 * One signature under one key. For ES256 the JWS form is r || s, 32 bytes
 * each (RFC 7518 section 3.4), while OpenSSL verifies DER: convert.
 */
static bool jwt_verify_with(const struct jwt_key *k, const char *msg, size_t msg_len,
			    const unsigned char *sig, size_t sig_len)
{
	EVP_MD_CTX *md = NULL;
	EVP_PKEY_CTX *pctx = NULL;
	ECDSA_SIG *es = NULL;
	BIGNUM *r = NULL, *s = NULL;
	unsigned char *der = NULL;
	const unsigned char *vsig = sig;
	size_t vsig_len = sig_len;
	bool ok = false;

	if (k->kty == JWT_KTY_EC) {
		int der_len;

		if (sig_len != 2 * JWT_P256_COORD)
			goto out;
		es = ECDSA_SIG_new();
		r = BN_bin2bn(sig, JWT_P256_COORD, NULL);
		s = BN_bin2bn(sig + JWT_P256_COORD, JWT_P256_COORD, NULL);
		if (es == NULL || r == NULL || s == NULL || !ECDSA_SIG_set0(es, r, s))
			goto out_free;
		r = s = NULL;	/* now owned by es */
		der_len = i2d_ECDSA_SIG(es, &der);
		if (der_len <= 0)
			goto out_free;
		vsig = der;
		vsig_len = (size_t)der_len;
	} else if (sig_len != (size_t)EVP_PKEY_get_size(k->pkey)) {
		goto out;
	}
	md = EVP_MD_CTX_new();
	if (md == NULL ||
	    EVP_DigestVerifyInit_ex(md, &pctx, "SHA256", NULL, NULL, k->pkey, NULL) != 1)
		goto out_free;
	if (k->kty == JWT_KTY_RSA && EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PADDING) != 1)
		goto out_free;
	ok = EVP_DigestVerify(md, vsig, vsig_len, (const unsigned char *)msg, msg_len) == 1;
out_free:
	EVP_MD_CTX_free(md);
	OPENSSL_free(der);
	ECDSA_SIG_free(es);
	BN_free(r);
	BN_free(s);
out:
	return ok;
}

/*
 * The signature checks one token has cost. Issuer blocks may share an iss
 * (other audiences, say); each alone is bounded when loaded, but the token
 * is tried against every block of its iss, so the bound is the token's:
 * JWT_MAX_CHECKS over all of them, as for one issuer. A key that an
 * earlier block also lists (the same key file under another audience)
 * answers from here, without a second check.
 */
#define JWT_MAX_CHECKS (1 + SMISD_JWT_MAX_UNNAMED_KEYS)
struct jwt_checks {
	const EVP_PKEY *key[JWT_MAX_CHECKS];
	bool ok[JWT_MAX_CHECKS];
	size_t n;
	bool ran_out;	/* a key was left untried for want of checks */
};

/*
 * Try k on the token's signature. Returns true when the search ends here:
 * verified (*why NULL), or no check is left (*why as it was). Else *why is
 * bad_signature and the next key may be tried.
 */
static bool jwt_try_key(struct jwt_checks *c, const struct jwt_key *k, const char *token,
			const struct jwt_token *t, const char **why)
{
	size_t i;

	for (i = 0; i < c->n && EVP_PKEY_eq(c->key[i], k->pkey) != 1; i++)
		;
	if (i == c->n) {
		if (c->n == JWT_MAX_CHECKS) {
			c->ran_out = true;
			return true;
		}
		c->key[c->n] = k->pkey;
		c->ok[c->n++] = jwt_verify_with(k, token, t->signing_len, t->sig, t->sig_len);
	}
	*why = c->ok[i] ? NULL : R_SIGNATURE;
	return c->ok[i];
}

/*
 * Keys of the alg's type only. A kid picks the JWKS key of that name; PEM
 * keys carry no kid and stand in when no named key matches. Without a kid
 * every key of the type is tried (key rotation), as long as there are
 * SMISD_JWT_MAX_UNNAMED_KEYS at most: past that, anyone could make each
 * request cost that many signature checks, and the token must name its
 * key. So at most 1 + SMISD_JWT_MAX_UNNAMED_KEYS checks per issuer (the
 * kid-less keys of a type are bounded when loaded), and per token over
 * the issuers sharing its iss (struct jwt_checks).
 */
static const char *jwt_check_signature(const struct smisd_jwt_issuer *is, const char *token,
				       const struct jwt_token *t, struct jwt_checks *checks)
{
	const char *why = R_UNKNOWN_KEY;

	if (t->kid == NULL && jwt_count_keys(is, t->kty, false) > SMISD_JWT_MAX_UNNAMED_KEYS) {
		why = R_KID_REQUIRED;
		goto out;
	}
	if (t->kid != NULL) {
		for (size_t i = 0; i < is->n_keys; i++) {
			const struct jwt_key *k = &is->keys[i];

			if (k->kty != t->kty || k->kid == NULL || strcmp(k->kid, t->kid) != 0)
				continue;
			if (jwt_try_key(checks, k, token, t, &why))
				goto out;
		}
	}
	/* With a kid, only kid-less (PEM) keys are left to try. */
	for (size_t i = 0; i < is->n_keys; i++) {
		const struct jwt_key *k = &is->keys[i];

		if (k->kty != t->kty || (t->kid != NULL && k->kid != NULL))
			continue;
		if (jwt_try_key(checks, k, token, t, &why))
			goto out;
	}
out:
	ERR_clear_error();
	return why;
}

/*
 * A NumericDate claim (RFC 7519: seconds, possibly fractional). Returns 1
 * and *out, 0 when absent, -1 when not a finite number.
 */
static int jwt_get_time(json_object *claims, const char *name, int64_t *out)
{
	json_object *v;
	int rc = 0;

	if (!json_object_object_get_ex(claims, name, &v))
		goto out;
	rc = -1;
	if (json_object_is_type(v, json_type_int)) {
		*out = json_object_get_int64(v);
		rc = 1;
	} else if (json_object_is_type(v, json_type_double)) {
		double d = json_object_get_double(v);

		/* ±4.6e18 s is far beyond any clock; it keeps the cast defined
		 * and NaN fails both comparisons. Rounded down, as floor(). */
		if (d > -4.6e18 && d < 4.6e18) {
			int64_t whole = (int64_t)d;

			*out = (double)whole > d ? whole - 1 : whole;
			rc = 1;
		}
	}
out:
	return rc;
}

static const char *jwt_check_times(const struct smisd_jwt_issuer *is, json_object *claims,
				   int64_t now)
{
	const char *why = R_MALFORMED;
	int64_t exp = 0, nbf = 0, iat = 0;
	int has_nbf, has_iat;

	if (jwt_get_time(claims, "exp", &exp) != 1)
		goto out;
	has_nbf = jwt_get_time(claims, "nbf", &nbf);
	has_iat = jwt_get_time(claims, "iat", &iat);
	if (has_nbf < 0 || has_iat < 0)
		goto out;
	/* Written as now - skew / now + skew so that a huge claim cannot overflow. */
	why = R_EXPIRED;
	if (now - is->skew >= exp)
		goto out;
	why = R_NOT_YET;
	if ((has_nbf && now + is->skew < nbf) || (has_iat && now + is->skew < iat))
		goto out;
	why = NULL;
out:
	return why;
}

static const char *jwt_check_audience(const struct smisd_jwt_issuer *is, json_object *claims)
{
	const char *why = R_AUDIENCE;
	json_object *aud;

	if (!json_object_object_get_ex(claims, "aud", &aud))
		goto out;
	if (json_object_is_type(aud, json_type_string)) {
		const char *a = jwt_string(aud);

		if (a == NULL)
			why = R_MALFORMED;
		else if (strcmp(a, is->audience) == 0)
			why = NULL;
	} else if (json_object_is_type(aud, json_type_array)) {
		size_t n = json_object_array_length(aud);

		for (size_t i = 0; i < n; i++) {
			const char *a = jwt_string(json_object_array_get_idx(aud, i));

			if (a == NULL) {
				why = R_MALFORMED;
				goto out;
			}
			if (strcmp(a, is->audience) == 0)
				why = NULL;
		}
	} else {
		why = R_MALFORMED;
	}
out:
	return why;
}

/* "client_id" (Keycloak client-credentials tokens), else "sub". */
static const char *jwt_identity(json_object *claims, char *out, size_t out_len)
{
	const char *why = R_MALFORMED, *id = NULL;
	int has;
	size_t len;

	has = jwt_get_string(claims, "client_id", &id);
	if (has == 0)
		has = jwt_get_string(claims, "sub", &id);
	if (has != 1)
		goto out;
	len = strlen(id);
	if (len == 0 || len >= out_len)
		goto out;
	/* It is looked up and logged by the caller: printable ASCII only. */
	for (size_t i = 0; i < len; i++)
		if (id[i] < 0x21 || id[i] > 0x7e)
			goto out;
	memcpy(out, id, len + 1);
	why = NULL;
out:
	return why;
}

/* Signature, then claims: only an authentic token gets a claim-level reason. */
static const char *jwt_verify_issuer(const struct smisd_jwt_issuer *is, const char *token,
				     const struct jwt_token *t, struct jwt_checks *checks, int64_t now,
				     char *client_id, size_t client_id_len)
{
	const char *why;

	why = jwt_check_signature(is, token, t, checks);
	if (why == NULL)
		why = jwt_check_times(is, t->claims, now);
	if (why == NULL)
		why = jwt_check_audience(is, t->claims);
	if (why == NULL)
		why = jwt_identity(t->claims, client_id, client_id_len);
	return why;
}

int smisd_jwt_verify(const struct smisd_jwt_issuer *const *issuers, size_t n, const char *token,
		     int64_t now_s, char *client_id, size_t client_id_len, const char **reason)
{
	struct jwt_token t;
	struct jwt_checks checks = { .n = 0 };
	const char *why = R_MALFORMED, *iss = NULL;
	int rc = -EACCES;

	memset(&t, 0, sizeof(t));
	if (token == NULL || client_id == NULL || client_id_len == 0 ||
	    (issuers == NULL && n > 0)) {
		rc = -EINVAL;
		goto out;
	}
	client_id[0] = '\0';
	why = jwt_token_parse(token, &t);
	if (why != NULL)
		goto out_clear;
	why = R_MALFORMED;
	switch (jwt_get_string(t.claims, "iss", &iss)) {
	case -1:
		goto out_clear;
	case 0:
		why = R_ISSUER;
		goto out_clear;
	}
	why = R_ISSUER;
	for (size_t i = 0; i < n; i++) {
		const char *r;

		if (issuers[i] == NULL || strcmp(issuers[i]->issuer, iss) != 0)
			continue;
		r = jwt_verify_issuer(issuers[i], token, &t, &checks, now_s, client_id, client_id_len);
		if (r == NULL) {
			why = NULL;
			rc = 0;
			goto out_clear;
		}
		/* Of several same-iss issuers, report the one the token got
		 * furthest with (no key tried: unknown_key, kid_required). */
		if (why == R_ISSUER || why == R_UNKNOWN_KEY || why == R_KID_REQUIRED ||
		    (why == R_SIGNATURE && r != R_UNKNOWN_KEY && r != R_KID_REQUIRED))
			why = r;
	}
	/* Out of checks over the blocks with keys of its type left: as for
	 * one issuer with too many of them, the token must name its key. */
	if (checks.ran_out && t.kid == NULL && (why == R_SIGNATURE || why == R_UNKNOWN_KEY))
		why = R_KID_REQUIRED;
out_clear:
	jwt_token_clear(&t);
out:
	if (rc != 0 && client_id != NULL && client_id_len > 0)
		client_id[0] = '\0';
	if (reason != NULL)
		*reason = why;
	return rc;
}
