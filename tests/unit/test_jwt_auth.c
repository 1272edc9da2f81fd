/*
 * JWT bearer tokens (daemon/jwt_auth.c). Tokens are signed here, with
 * OpenSSL and the TEST-ONLY private keys in tests/data/jwt (see gen.sh), so
 * that their times are relative to the real clock; every refusal is checked
 * for its reason, not only for failing.
 */
#include "config.h"

#include <CUnit/Basic.h>
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>

#include "jwt_auth.h"

#ifndef SMIS_TEST_DATADIR
#define SMIS_TEST_DATADIR "tests/data"
#endif
#define JWT_DIR SMIS_TEST_DATADIR "/jwt/"

#define ISS "https://api-acpt.ehealth.fgov.be/auth/realms/M2M"
#define AUD "smis"
#define CLIENT "cbe-0123456789"
#define SKEW 30

static EVP_PKEY *rsa_key, *ec_key, *other_rsa_key, *other_ec_key;
static struct smisd_jwt_issuer *rsa_pem, *ec_pem, *jwks, *both_pem, *rsa_crt;
static int64_t now;
static char tmpdir[64];

/* ---- helpers ---------------------------------------------------------- */

static char *b64url(const unsigned char *in, size_t len)
{
	static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	char *s = malloc(len / 3 * 4 + 5), *o = s;
	size_t i;

	for (i = 0; i + 3 <= len; i += 3) {
		unsigned v = (unsigned)in[i] << 16 | (unsigned)in[i + 1] << 8 | in[i + 2];
		*o++ = a[v >> 18 & 63];
		*o++ = a[v >> 12 & 63];
		*o++ = a[v >> 6 & 63];
		*o++ = a[v & 63];
	}
	if (len - i == 1) {
		*o++ = a[in[i] >> 2];
		*o++ = a[(in[i] & 3) << 4];
	} else if (len - i == 2) {
		*o++ = a[in[i] >> 2];
		*o++ = a[(in[i] & 3) << 4 | in[i + 1] >> 4];
		*o++ = a[(in[i + 1] & 15) << 2];
	}
	*o = '\0';
	return s;
}

static char *b64url_str(const char *s)
{
	return b64url((const unsigned char *)s, strlen(s));
}

__attribute__((format(printf, 1, 2)))
static char *fmt(const char *f, ...)
{
	va_list ap;
	int n;
	char *s;

	va_start(ap, f);
	n = vsnprintf(NULL, 0, f, ap);
	va_end(ap);
	s = malloc((size_t)n + 1);
	va_start(ap, f);
	vsnprintf(s, (size_t)n + 1, f, ap);
	va_end(ap);
	return s;
}

static EVP_PKEY *load_private(const char *name)
{
	FILE *f = fopen(name, "r");
	EVP_PKEY *k = NULL;

	if (f) {
		k = PEM_read_PrivateKey(f, NULL, NULL, NULL);
		fclose(f);
	}
	if (!k)
		fprintf(stderr, "cannot load %s\n", name);
	return k;
}

/* JWS signature bytes of msg: RS256, or ES256 as raw r || s. */
static unsigned char *sign(EVP_PKEY *key, const char *msg, size_t *sig_len)
{
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	unsigned char *der, *sig;
	size_t der_len = 0;

	CU_ASSERT_FATAL(EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, key) == 1);
	CU_ASSERT_FATAL(EVP_DigestSign(md, NULL, &der_len, (const unsigned char *)msg, strlen(msg)) == 1);
	der = malloc(der_len);
	CU_ASSERT_FATAL(EVP_DigestSign(md, der, &der_len, (const unsigned char *)msg, strlen(msg)) == 1);
	EVP_MD_CTX_free(md);
	if (!EVP_PKEY_is_a(key, "EC")) {
		*sig_len = der_len;
		return der;
	}
	const unsigned char *p = der;
	ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &p, (long)der_len);
	CU_ASSERT_FATAL(es != NULL);
	sig = malloc(64);
	BN_bn2binpad(ECDSA_SIG_get0_r(es), sig, 32);
	BN_bn2binpad(ECDSA_SIG_get0_s(es), sig + 32, 32);
	ECDSA_SIG_free(es);
	free(der);
	*sig_len = 64;
	return sig;
}

/* header.payload, both JSON texts encoded here; caller frees. */
static char *signing_input(const char *header, const char *payload)
{
	char *h = b64url_str(header), *p = b64url_str(payload);
	char *s = fmt("%s.%s", h, p);

	free(h);
	free(p);
	return s;
}

/* A compact JWS; key NULL gives an empty signature (alg none). */
static char *token(const char *header, const char *payload, EVP_PKEY *key)
{
	char *in = signing_input(header, payload), *sig = NULL, *t;
	size_t sig_len = 0;

	if (key) {
		unsigned char *raw = sign(key, in, &sig_len);
		sig = b64url(raw, sig_len);
		free(raw);
	}
	t = fmt("%s.%s", in, sig ? sig : "");
	free(in);
	free(sig);
	return t;
}

/* Claims with iss/aud/exp/iat/client_id, plus `extra` members ("" or ",..."). */
static char *claims(const char *extra)
{
	return fmt("{\"iss\":\"" ISS "\",\"aud\":\"" AUD "\",\"exp\":%lld,\"iat\":%lld,"
		   "\"client_id\":\"" CLIENT "\"%s}",
		   (long long)(now + 300), (long long)now, extra);
}

/* Verify tok against issuers, expect rc 0 or the given reason. */
static void expect_n(const struct smisd_jwt_issuer *const *is, size_t n, char *tok,
		     const char *want_reason, const char *want_client, int line)
{
	char cid[64];
	const char *why = "unset";
	int rc;

	memset(cid, 'X', sizeof(cid));
	rc = smisd_jwt_verify(is, n, tok, now, cid, sizeof(cid), &why);
	if (want_reason == NULL) {
		CU_ASSERT_EQUAL(rc, 0);
		CU_ASSERT_PTR_NULL(why);
		CU_ASSERT_STRING_EQUAL(cid, want_client ? want_client : CLIENT);
	} else {
		CU_ASSERT_EQUAL(rc, -EACCES);
		CU_ASSERT_PTR_NOT_NULL(why);
		if (why)
			CU_ASSERT_STRING_EQUAL(why, want_reason);
		CU_ASSERT_STRING_EQUAL(cid, "");
	}
	if ((want_reason == NULL) != (rc == 0) ||
	    (want_reason && why && strcmp(why, want_reason) != 0))
		fprintf(stderr, "\n  line %d: rc %d reason %s, want %s\n", line, rc,
			why ? why : "(null)", want_reason ? want_reason : "ok");
	free(tok);
}

#define EXPECT(is, tok, reason) \
	do { \
		const struct smisd_jwt_issuer *one_[1] = { (is) }; \
		expect_n(one_, 1, (tok), (reason), NULL, __LINE__); \
	} while (0)

/* An issuer of ISS for aud whose key file, in tmpdir, holds text[0..len),
 * NUL bytes and all. */
static struct smisd_jwt_issuer *issuer_for(const char *aud, const char *text, size_t len, char *err,
					   size_t errlen)
{
	char path[128];
	FILE *f;
	struct smisd_jwt_issuer *is;

	snprintf(path, sizeof(path), "%s/keys", tmpdir);
	f = fopen(path, "w");
	CU_ASSERT_FATAL(f != NULL);
	CU_ASSERT(fwrite(text, 1, len, f) == len);
	fclose(f);
	is = smisd_jwt_issuer_new(ISS, aud, path, SKEW, err, errlen);
	unlink(path);
	return is;
}

static struct smisd_jwt_issuer *issuer_from_bytes(const char *text, size_t len, char *err,
						  size_t errlen)
{
	return issuer_for(AUD, text, len, err, errlen);
}

static struct smisd_jwt_issuer *issuer_from_text(const char *text, char *err, size_t errlen)
{
	return issuer_from_bytes(text, strlen(text), err, errlen);
}

static struct smisd_jwt_issuer *issuer(const char *file)
{
	char err[256] = "";
	struct smisd_jwt_issuer *is = smisd_jwt_issuer_new(ISS, AUD, file, SKEW, err, sizeof(err));

	if (!is)
		fprintf(stderr, "issuer %s: %s\n", file, err);
	return is;
}

static int suite_init(void)
{
	now = (int64_t)time(NULL);
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/test_jwt_auth.XXXXXX");
	if (!mkdtemp(tmpdir))
		return -1;
	rsa_key = load_private(JWT_DIR "rsa.key");
	ec_key = load_private(JWT_DIR "ec.key");
	other_rsa_key = load_private(JWT_DIR "other-rsa.key");
	other_ec_key = load_private(JWT_DIR "other-ec.key");
	rsa_pem = issuer(JWT_DIR "rsa.pub");
	ec_pem = issuer(JWT_DIR "ec.pub");
	jwks = issuer(JWT_DIR "jwks.json");
	both_pem = issuer(JWT_DIR "both.pub");
	rsa_crt = issuer(JWT_DIR "rsa.crt");
	return rsa_key && ec_key && other_rsa_key && other_ec_key && rsa_pem && ec_pem && jwks &&
	       both_pem && rsa_crt ? 0 : -1;
}

static int suite_clean(void)
{
	EVP_PKEY_free(rsa_key);
	EVP_PKEY_free(ec_key);
	EVP_PKEY_free(other_rsa_key);
	EVP_PKEY_free(other_ec_key);
	smisd_jwt_issuer_free(rsa_pem);
	smisd_jwt_issuer_free(ec_pem);
	smisd_jwt_issuer_free(jwks);
	smisd_jwt_issuer_free(both_pem);
	smisd_jwt_issuer_free(rsa_crt);
	rmdir(tmpdir);
	return 0;
}

#define RS "{\"alg\":\"RS256\",\"typ\":\"JWT\"}"
#define ES "{\"alg\":\"ES256\",\"typ\":\"JWT\"}"
#define ES_KID "{\"alg\":\"ES256\",\"kid\":\"ec-1\"}"

/* A token from claims(extra), then freed claims. */
static char *tok_claims(const char *header, const char *extra, EVP_PKEY *key)
{
	char *c = claims(extra), *t = token(header, c, key);

	free(c);
	return t;
}

/* ---- tests ------------------------------------------------------------ */

static void test_looks_like(void)
{
	CU_ASSERT_TRUE(smisd_jwt_looks_like("a.b.c"));
	CU_ASSERT_TRUE(smisd_jwt_looks_like("eyJh-_.eyJ0.sig_-0"));
	CU_ASSERT_TRUE(smisd_jwt_looks_like("a.b."));	/* alg none: refused later, with a reason */
	CU_ASSERT_FALSE(smisd_jwt_looks_like(NULL));
	CU_ASSERT_FALSE(smisd_jwt_looks_like(""));
	CU_ASSERT_FALSE(smisd_jwt_looks_like("smis_live_4f3a9c0d2b"));
	CU_ASSERT_FALSE(smisd_jwt_looks_like("a.b"));
	CU_ASSERT_FALSE(smisd_jwt_looks_like("a.b.c.d"));
	CU_ASSERT_FALSE(smisd_jwt_looks_like(".b.c"));
	CU_ASSERT_FALSE(smisd_jwt_looks_like("a..c"));
	CU_ASSERT_FALSE(smisd_jwt_looks_like("a.b.c="));
	CU_ASSERT_FALSE(smisd_jwt_looks_like("a+/.b.c"));
	CU_ASSERT_FALSE(smisd_jwt_looks_like("a.b c.d"));
}

static void test_valid(void)
{
	EXPECT(rsa_pem, tok_claims(RS, "", rsa_key), NULL);
	EXPECT(ec_pem, tok_claims(ES, "", ec_key), NULL);
	/* JWKS: kid picks the key; without kid the keys of the alg's type are tried. */
	EXPECT(jwks, tok_claims("{\"alg\":\"RS256\",\"kid\":\"rsa-1\"}", "", rsa_key), NULL);
	EXPECT(jwks, tok_claims("{\"alg\":\"ES256\",\"kid\":\"ec-1\"}", "", ec_key), NULL);
	EXPECT(jwks, tok_claims(RS, "", rsa_key), NULL);
	EXPECT(jwks, tok_claims(ES, "", ec_key), NULL);
	/* Several PEM blocks, a certificate; PEM keys have no kid and serve any. */
	EXPECT(both_pem, tok_claims(RS, "", rsa_key), NULL);
	EXPECT(both_pem, tok_claims(ES, "", ec_key), NULL);
	EXPECT(both_pem, tok_claims("{\"alg\":\"ES256\",\"kid\":\"whatever\"}", "", ec_key), NULL);
	EXPECT(rsa_crt, tok_claims(RS, "", rsa_key), NULL);
	/* Claims as the eHealth realm issues them, fractional NumericDate. */
	char *c = fmt("{\"iss\":\"" ISS "\",\"aud\":[\"account\",\"" AUD "\"],\"exp\":%lld.5,"
		      "\"nbf\":%lld,\"iat\":%lld,\"jti\":\"0b7e\",\"typ\":\"Bearer\","
		      "\"azp\":\"" CLIENT "\",\"client_id\":\"" CLIENT "\",\"sub\":\"1f2e\"}",
		      (long long)now + 60, (long long)now - 5, (long long)now - 5);
	EXPECT(jwks, token("{\"alg\":\"RS256\",\"typ\":\"JWT\",\"kid\":\"rsa-1\"}", c, rsa_key), NULL);
	free(c);
}

static void test_forged(void)
{
	char *t, *c, *forged;
	char *dot;

	EXPECT(rsa_pem, tok_claims(RS, "", other_rsa_key), "bad_signature");
	EXPECT(ec_pem, tok_claims(ES, "", other_ec_key), "bad_signature");
	EXPECT(jwks, tok_claims("{\"alg\":\"RS256\",\"kid\":\"rsa-1\"}", "", other_rsa_key),
	       "bad_signature");
	EXPECT(jwks, tok_claims("{\"alg\":\"ES256\",\"kid\":\"ec-1\"}", "", other_ec_key),
	       "bad_signature");
	EXPECT(jwks, tok_claims(ES, "", other_ec_key), "bad_signature");
	/* An expired forgery says bad_signature: claims of a forgery mean nothing. */
	c = fmt("{\"iss\":\"" ISS "\",\"aud\":\"" AUD "\",\"exp\":1,\"sub\":\"x\"}");
	EXPECT(rsa_pem, token(RS, c, other_rsa_key), "bad_signature");
	free(c);

	/* A genuine signature moved onto other claims. */
	t = tok_claims(RS, "", rsa_key);
	c = fmt("{\"iss\":\"" ISS "\",\"aud\":\"" AUD "\",\"exp\":%lld,\"client_id\":\"cbe-9\"}",
		(long long)now + 300);
	forged = signing_input(RS, c);
	dot = strrchr(t, '.');
	char *f2 = fmt("%s%s", forged, dot);
	EXPECT(rsa_pem, f2, "bad_signature");
	/* One flipped signature character, staying canonical base64url. */
	dot[1] = dot[1] == 'A' ? 'B' : 'A';
	EXPECT(rsa_pem, t, "bad_signature");
	free(c);
	free(forged);

	/* ES256 signature with a byte too many or too few (valid base64url). */
	{
		char *in, *c2 = claims(""), *s64;
		unsigned char sig[65];
		size_t sig_len;
		unsigned char *raw;

		in = signing_input(ES, c2);
		raw = sign(ec_key, in, &sig_len);
		CU_ASSERT_EQUAL_FATAL(sig_len, 64);
		memcpy(sig, raw, 64);
		sig[64] = 0;
		s64 = b64url(sig, 63);
		EXPECT(ec_pem, fmt("%s.%s", in, s64), "bad_signature");
		free(s64);
		s64 = b64url(sig, 65);
		EXPECT(ec_pem, fmt("%s.%s", in, s64), "bad_signature");
		free(s64);
		s64 = b64url(sig, 64);
		EXPECT(ec_pem, fmt("%s.%s", in, s64), NULL);
		free(s64);
		free(raw);
		free(in);
		free(c2);
	}
}

static void test_times(void)
{
	char *c;

	/* exp in the past beyond the skew; exactly at now - skew is expired too. */
	c = fmt("{\"iss\":\"" ISS "\",\"aud\":\"" AUD "\",\"exp\":%lld,\"sub\":\"" CLIENT "\"}",
		(long long)now - 100);
	EXPECT(rsa_pem, token(RS, c, rsa_key), "expired");
	free(c);
	c = fmt("{\"iss\":\"" ISS "\",\"aud\":\"" AUD "\",\"exp\":%lld,\"sub\":\"" CLIENT "\"}",
		(long long)now - SKEW);
	EXPECT(rsa_pem, token(RS, c, rsa_key), "expired");
	free(c);
	/* Within the skew: accepted. */
	c = fmt("{\"iss\":\"" ISS "\",\"aud\":\"" AUD "\",\"exp\":%lld,\"sub\":\"" CLIENT "\"}",
		(long long)now - SKEW + 1);
	EXPECT(rsa_pem, token(RS, c, rsa_key), NULL);
	free(c);

	c = fmt(",\"nbf\":%lld", (long long)now + 100);
	EXPECT(ec_pem, tok_claims(ES, c, ec_key), "not_yet_valid");
	free(c);
	c = fmt(",\"nbf\":%lld", (long long)now + SKEW + 1);
	EXPECT(ec_pem, tok_claims(ES, c, ec_key), "not_yet_valid");
	free(c);
	c = fmt(",\"nbf\":%lld", (long long)now + SKEW);
	EXPECT(ec_pem, tok_claims(ES, c, ec_key), NULL);
	free(c);
	/* Issued in the future (claims() already has iat: build by hand). */
	c = fmt("{\"iss\":\"" ISS "\",\"aud\":\"" AUD "\",\"exp\":%lld,\"iat\":%lld,"
		"\"sub\":\"" CLIENT "\"}", (long long)now + 600, (long long)now + 100);
	EXPECT(ec_pem, token(ES, c, ec_key), "not_yet_valid");
	free(c);

	/* exp is required and must be a number; so must nbf/iat when present. */
	c = fmt("{\"iss\":\"" ISS "\",\"aud\":\"" AUD "\",\"sub\":\"" CLIENT "\"}");
	EXPECT(rsa_pem, token(RS, c, rsa_key), "malformed");
	free(c);
	c = fmt("{\"iss\":\"" ISS "\",\"aud\":\"" AUD "\",\"exp\":\"%lld\",\"sub\":\"x\"}",
		(long long)now + 60);
	EXPECT(rsa_pem, token(RS, c, rsa_key), "malformed");
	free(c);
	EXPECT(rsa_pem, tok_claims(RS, ",\"nbf\":null", rsa_key), "malformed");
	EXPECT(rsa_pem, tok_claims(RS, ",\"nbf\":1e999", rsa_key), "malformed");
}

static void test_audience(void)
{
	char *c;
	const char *fmts[] = {
		"{\"iss\":\"" ISS "\",\"aud\":\"other\",\"exp\":%lld,\"sub\":\"" CLIENT "\"}",
		"{\"iss\":\"" ISS "\",\"aud\":[\"a\",\"" AUD "\",\"b\"],\"exp\":%lld,\"sub\":\"" CLIENT "\"}",
		"{\"iss\":\"" ISS "\",\"aud\":[\"a\",\"b\"],\"exp\":%lld,\"sub\":\"" CLIENT "\"}",
		"{\"iss\":\"" ISS "\",\"aud\":[],\"exp\":%lld,\"sub\":\"" CLIENT "\"}",
		"{\"iss\":\"" ISS "\",\"exp\":%lld,\"sub\":\"" CLIENT "\"}",
		"{\"iss\":\"" ISS "\",\"aud\":\"SMIS\",\"exp\":%lld,\"sub\":\"" CLIENT "\"}",
		"{\"iss\":\"" ISS "\",\"aud\":[\"" AUD "\",7],\"exp\":%lld,\"sub\":\"" CLIENT "\"}",
		"{\"iss\":\"" ISS "\",\"aud\":{\"" AUD "\":1},\"exp\":%lld,\"sub\":\"" CLIENT "\"}",
	};
	const char *want[] = { "wrong_audience", NULL, "wrong_audience", "wrong_audience",
			       "wrong_audience", "wrong_audience", "malformed", "malformed" };

	for (size_t i = 0; i < sizeof(fmts) / sizeof(fmts[0]); i++) {
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
		c = fmt(fmts[i], (long long)now + 300);
#pragma GCC diagnostic pop
		EXPECT(rsa_pem, token(RS, c, rsa_key), want[i]);
		free(c);
	}
}

static void test_issuers(void)
{
	char err[256];
	struct smisd_jwt_issuer *prod, *other_aud;
	char *c;

	c = fmt("{\"iss\":\"https://api.ehealth.fgov.be/auth/realms/M2M\",\"aud\":\"" AUD "\","
		"\"exp\":%lld,\"sub\":\"" CLIENT "\"}", (long long)now + 60);
	EXPECT(rsa_pem, token(RS, c, rsa_key), "wrong_issuer");
	/* Several issuers: the token's iss picks; prod trusts the EC key only. */
	prod = smisd_jwt_issuer_new("https://api.ehealth.fgov.be/auth/realms/M2M", AUD,
				    JWT_DIR "ec.pub", 0, err, sizeof(err));
	CU_ASSERT_PTR_NOT_NULL_FATAL(prod);
	{
		const struct smisd_jwt_issuer *set[] = { rsa_pem, prod };

		expect_n(set, 2, token(ES, c, ec_key), NULL, CLIENT, __LINE__);
		/* The acceptance key is not trusted for the prod iss. */
		expect_n(set, 2, token(RS, c, rsa_key), "unknown_key", NULL, __LINE__);
		expect_n(set, 2, tok_claims(RS, "", rsa_key), NULL, CLIENT, __LINE__);
		expect_n(set, 0, tok_claims(RS, "", rsa_key), "wrong_issuer", NULL, __LINE__);
	}
	free(c);
	smisd_jwt_issuer_free(prod);

	/* Same iss twice, with other audiences: either audience is accepted. */
	other_aud = smisd_jwt_issuer_new(ISS, "smis-admin", JWT_DIR "rsa.pub", SKEW, err,
					 sizeof(err));
	CU_ASSERT_PTR_NOT_NULL_FATAL(other_aud);
	{
		const struct smisd_jwt_issuer *set[] = { rsa_pem, other_aud };

		c = fmt("{\"iss\":\"" ISS "\",\"aud\":\"smis-admin\",\"exp\":%lld,\"sub\":\"adm\"}",
			(long long)now + 60);
		expect_n(set, 2, token(RS, c, rsa_key), NULL, "adm", __LINE__);
		expect_n(set, 2, tok_claims(RS, "", rsa_key), NULL, CLIENT, __LINE__);
		free(c);
		c = fmt("{\"iss\":\"" ISS "\",\"aud\":\"nobody\",\"exp\":%lld,\"sub\":\"adm\"}",
			(long long)now + 60);
		expect_n(set, 2, token(RS, c, rsa_key), "wrong_audience", NULL, __LINE__);
		free(c);
	}
	smisd_jwt_issuer_free(other_aud);

	/* iss missing, iss not a string; an iss differing in a trailing slash. */
	c = fmt("{\"aud\":\"" AUD "\",\"exp\":%lld,\"sub\":\"x\"}", (long long)now + 60);
	EXPECT(rsa_pem, token(RS, c, rsa_key), "wrong_issuer");
	free(c);
	c = fmt("{\"iss\":[\"" ISS "\"],\"aud\":\"" AUD "\",\"exp\":%lld,\"sub\":\"x\"}",
		(long long)now + 60);
	EXPECT(rsa_pem, token(RS, c, rsa_key), "malformed");
	free(c);
	c = fmt("{\"iss\":\"" ISS "/\",\"aud\":\"" AUD "\",\"exp\":%lld,\"sub\":\"x\"}",
		(long long)now + 60);
	EXPECT(rsa_pem, token(RS, c, rsa_key), "wrong_issuer");
	free(c);
}

static void test_alg_none(void)
{
	char *t, *c;

	EXPECT(rsa_pem, tok_claims("{\"alg\":\"none\",\"typ\":\"JWT\"}", "", NULL), "alg_not_allowed");
	EXPECT(jwks, tok_claims("{\"alg\":\"none\"}", "", NULL), "alg_not_allowed");
	EXPECT(rsa_pem, tok_claims("{\"alg\":\"None\"}", "", NULL), "alg_not_allowed");
	EXPECT(rsa_pem, tok_claims("{\"alg\":\"NONE\"}", "", NULL), "alg_not_allowed");
	EXPECT(rsa_pem, tok_claims("{\"alg\":\"rs256\"}", "", rsa_key), "alg_not_allowed");
	EXPECT(rsa_pem, tok_claims("{\"alg\":\"PS256\"}", "", rsa_key), "alg_not_allowed");
	EXPECT(ec_pem, tok_claims("{\"alg\":\"ES384\"}", "", ec_key), "alg_not_allowed");
	EXPECT(rsa_pem, tok_claims("{\"alg\":\"\"}", "", NULL), "alg_not_allowed");
	/* "none" with a genuine RS256 signature still attached. */
	c = claims("");
	t = token(RS, c, rsa_key);
	char *n = signing_input("{\"alg\":\"none\"}", c);
	EXPECT(rsa_pem, fmt("%s%s", n, strrchr(t, '.')), "alg_not_allowed");
	free(n);
	free(t);
	free(c);
	/* alg missing or not a string. */
	EXPECT(rsa_pem, tok_claims("{\"typ\":\"JWT\"}", "", rsa_key), "malformed");
	EXPECT(rsa_pem, tok_claims("{\"alg\":[\"RS256\"]}", "", rsa_key), "malformed");
	EXPECT(rsa_pem, tok_claims("{\"alg\":null}", "", rsa_key), "malformed");
}

/* Explicit typing (RFC 8725 3.11): a JWT's typ, or none, and nothing else,
 * checked before the signature like alg; genuinely signed tokens all. */
static void test_typ(void)
{
	static const char *const ok[] = { "JWT", "jwt", "at+jwt", "AT+JWT", "application/at+jwt",
					   "Application/At+JWT", "application/jwt" };
	static const char *const refused[] = { "JOSE", "JWS", "id_token+jwt", "dpop+jwt", "",
					       "application/", "application/json", "at+jwt ",
					       "xapplication/at+jwt", "application/application/jwt" };
	char *h;

	EXPECT(rsa_pem, tok_claims("{\"alg\":\"RS256\"}", "", rsa_key), NULL);
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		h = fmt("{\"alg\":\"RS256\",\"typ\":\"%s\"}", ok[i]);
		EXPECT(rsa_pem, tok_claims(h, "", rsa_key), NULL);
		free(h);
	}
	for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
		h = fmt("{\"alg\":\"ES256\",\"typ\":\"%s\"}", refused[i]);
		EXPECT(ec_pem, tok_claims(h, "", ec_key), "typ_not_allowed");
		free(h);
	}
	/* Not a string (or with a NUL in it): malformed, as a bad alg is. */
	EXPECT(rsa_pem, tok_claims("{\"alg\":\"RS256\",\"typ\":null}", "", rsa_key), "malformed");
	EXPECT(rsa_pem, tok_claims("{\"alg\":\"RS256\",\"typ\":[\"JWT\"]}", "", rsa_key), "malformed");
	EXPECT(rsa_pem, tok_claims("{\"alg\":\"RS256\",\"typ\":1}", "", rsa_key), "malformed");
	EXPECT(rsa_pem, tok_claims("{\"alg\":\"RS256\",\"typ\":\"JWT\\u0000x\"}", "", rsa_key),
	       "malformed");
	/* The claim set's own "typ" (Keycloak's "Bearer") is not the header's. */
	EXPECT(rsa_pem, tok_claims(RS, ",\"typ\":\"Bearer\"", rsa_key), NULL);
}

/* HMAC-SHA256 keyed with `secret`: what a library that confuses keys would accept. */
static char *hs256_token(const char *header, const char *payload, const unsigned char *secret,
			 size_t secret_len)
{
	char *in = signing_input(header, payload), *sig, *t;
	unsigned char mac[32];
	unsigned int mac_len = 0;

	CU_ASSERT_FATAL(HMAC(EVP_sha256(), secret, (int)secret_len, (const unsigned char *)in,
			     strlen(in), mac, &mac_len) != NULL);
	sig = b64url(mac, mac_len);
	t = fmt("%s.%s", in, sig);
	free(in);
	free(sig);
	return t;
}

static void test_key_confusion(void)
{
	unsigned char pem[4096];
	size_t pem_len;
	FILE *f = fopen(JWT_DIR "rsa.pub", "rb");
	char *c = claims("");

	CU_ASSERT_PTR_NOT_NULL_FATAL(f);
	pem_len = fread(pem, 1, sizeof(pem), f);
	fclose(f);
	CU_ASSERT_FATAL(pem_len > 100);
	EXPECT(rsa_pem, hs256_token("{\"alg\":\"HS256\",\"typ\":\"JWT\"}", c, pem, pem_len),
	       "alg_not_allowed");
	EXPECT(both_pem, hs256_token("{\"alg\":\"HS256\"}", c, pem, pem_len), "alg_not_allowed");
	EXPECT(jwks, hs256_token("{\"alg\":\"HS256\",\"kid\":\"rsa-1\"}", c, pem, pem_len),
	       "alg_not_allowed");
	EXPECT(rsa_pem, hs256_token("{\"alg\":\"HS512\"}", c, pem, pem_len), "alg_not_allowed");
	/* The same MAC under an RS256 header is just a wrong signature. */
	EXPECT(rsa_pem, hs256_token(RS, c, pem, pem_len), "bad_signature");

	/* alg and key type must agree: an ES256 signature under an RS256 header. */
	char *es = token(ES, c, ec_key);
	char *rs_in = signing_input(RS, c);
	char *es_in = signing_input(ES, c);
	EXPECT(ec_pem, fmt("%s%s", rs_in, strrchr(es, '.')), "unknown_key");
	free(es);
	/* RS256 signature under an ES256 header: the RSA key is never tried. */
	char *rs = token(RS, c, rsa_key);
	EXPECT(rsa_pem, fmt("%s%s", es_in, strrchr(rs, '.')), "unknown_key");
	EXPECT(both_pem, fmt("%s%s", es_in, strrchr(rs, '.')), "bad_signature");
	free(rs);
	free(rs_in);
	free(es_in);
	/* JWKS: a kid naming the EC key with alg RS256 does not reach the EC key. */
	char *h = fmt("{\"alg\":\"RS256\",\"kid\":\"ec-1\"}");
	EXPECT(jwks, token(h, c, rsa_key), "unknown_key");
	free(h);
	free(c);
}

static void test_kid(void)
{
	EXPECT(jwks, tok_claims("{\"alg\":\"RS256\",\"kid\":\"rsa-2\"}", "", rsa_key), "unknown_key");
	EXPECT(jwks, tok_claims("{\"alg\":\"ES256\",\"kid\":\"\"}", "", ec_key), "unknown_key");
	/* enc-1 is an encryption key in the JWKS: skipped at load, never used. */
	EXPECT(jwks, tok_claims("{\"alg\":\"RS256\",\"kid\":\"enc-1\"}", "", other_rsa_key),
	       "unknown_key");
	EXPECT(jwks, tok_claims("{\"alg\":\"RS256\",\"kid\":7}", "", rsa_key), "malformed");
	/* Keys are only ever configured: an embedded jwk or jku is ignored. */
	EXPECT(rsa_pem, tok_claims("{\"alg\":\"RS256\",\"jku\":\"http://127.0.0.1/k\","
				   "\"jwk\":{\"kty\":\"oct\",\"k\":\"AA\"}}", "", other_rsa_key),
	       "bad_signature");
}

/* A token from already-encoded segments, signed over exactly that text. */
static char *token_raw(const char *h64, const char *p64, EVP_PKEY *key)
{
	char *in = fmt("%s.%s", h64, p64), *sig, *t;
	size_t sig_len;
	unsigned char *raw = sign(key, in, &sig_len);

	sig = b64url(raw, sig_len);
	t = fmt("%s.%s", in, sig);
	free(raw);
	free(in);
	free(sig);
	return t;
}

static void test_malformed(void)
{
	char *c = claims(""), *p64 = b64url_str(c), *h64, *t;
	static const char *bad_headers[] = {
		"{\"alg\":\"RS256\"",			/* unterminated */
		"[\"RS256\"]",				/* not an object */
		"{'alg':'RS256'}",			/* not strict JSON */
		"{\"alg\":\"RS256\",}",
		"{\"alg\":\"RS256\"} x",		/* trailing bytes */
		"{\"alg\":\"RS256\"}{}",
		"{\"alg\":\"RS256\",\"crit\":[\"b64\"],\"b64\":false}",
		"{\"alg\":\"RS256\",\"x\":[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]}",
		"",
	};

	for (size_t i = 0; i < sizeof(bad_headers) / sizeof(bad_headers[0]); i++) {
		h64 = b64url_str(bad_headers[i]);
		EXPECT(rsa_pem, token_raw(h64, p64, rsa_key), "malformed");
		free(h64);
	}
	/* A NUL inside the header JSON. */
	h64 = b64url((const unsigned char *)"{\"alg\":\"RS256\"}\0", 16);
	EXPECT(rsa_pem, token_raw(h64, p64, rsa_key), "malformed");
	free(h64);
	/* Invalid UTF-8 in a claim, genuinely signed. */
	EXPECT(rsa_pem, tok_claims(RS, ",\"name\":\"\xff\xfe\"", rsa_key), "malformed");

	/* Non-canonical base64url with a valid signature over that very text:
	 * 22 header bytes leave 4 unused bits, set one of them. */
	h64 = b64url_str("{\"alg\":\"RS256\",\"p\":\"\"}");
	CU_ASSERT_EQUAL_FATAL(strlen(h64) % 4, 2);
	EXPECT(rsa_pem, token_raw(h64, p64, rsa_key), NULL);
	h64[strlen(h64) - 1]++;
	EXPECT(rsa_pem, token_raw(h64, p64, rsa_key), "malformed");
	/* Length 1 mod 4. */
	t = fmt("%sA", p64);
	h64[strlen(h64) - 1]--;
	EXPECT(rsa_pem, token_raw(h64, t, rsa_key), "malformed");
	free(t);
	free(h64);

	/* Shapes. */
	EXPECT(rsa_pem, fmt("%s", ""), "malformed");
	EXPECT(rsa_pem, fmt(".."), "malformed");
	EXPECT(rsa_pem, fmt("abc"), "malformed");
	t = tok_claims(RS, "", rsa_key);
	EXPECT(rsa_pem, fmt("%s.", t), "malformed");
	EXPECT(rsa_pem, fmt("%s=", t), "malformed");
	EXPECT(rsa_pem, fmt(" %s", t), "malformed");
	EXPECT(rsa_pem, fmt("Bearer %s", t), "malformed");
	free(t);
	/* Claims that are not an object. */
	h64 = b64url_str(RS);
	free(p64);
	p64 = b64url_str("[1,2]");
	EXPECT(rsa_pem, token_raw(h64, p64, rsa_key), "malformed");
	free(h64);
	free(p64);
	free(c);

	/* Argument errors. */
	{
		char cid[8];
		const char *why = NULL;
		const struct smisd_jwt_issuer *set[] = { rsa_pem };

		CU_ASSERT_EQUAL(smisd_jwt_verify(set, 1, NULL, now, cid, sizeof(cid), &why), -EINVAL);
		CU_ASSERT_EQUAL(smisd_jwt_verify(set, 1, "a.b.c", now, NULL, 8, &why), -EINVAL);
		CU_ASSERT_EQUAL(smisd_jwt_verify(set, 1, "a.b.c", now, cid, 0, &why), -EINVAL);
		CU_ASSERT_EQUAL(smisd_jwt_verify(NULL, 1, "a.b.c", now, cid, sizeof(cid), NULL), -EINVAL);
	}
}

static void test_identity(void)
{
	char *c;
	char long_id[80];

	/* client_id wins over sub; sub is the fallback. */
	EXPECT(rsa_pem, tok_claims(RS, ",\"sub\":\"service-account-uuid\"", rsa_key), NULL);
	c = fmt("{\"iss\":\"" ISS "\",\"aud\":\"" AUD "\",\"exp\":%lld,\"sub\":\"cbe-0987654321\"}",
		(long long)now + 60);
	{
		const struct smisd_jwt_issuer *set[] = { rsa_pem };
		expect_n(set, 1, token(RS, c, rsa_key), NULL, "cbe-0987654321", __LINE__);
	}
	free(c);
	c = fmt("{\"iss\":\"" ISS "\",\"aud\":\"" AUD "\",\"exp\":%lld}", (long long)now + 60);
	EXPECT(rsa_pem, token(RS, c, rsa_key), "malformed");
	free(c);
	/* A client_id that is not a string does not fall back to sub. */
	c = fmt("{\"iss\":\"" ISS "\",\"aud\":\"" AUD "\",\"exp\":%lld,\"client_id\":42,"
		"\"sub\":\"x\"}", (long long)now + 60);
	EXPECT(rsa_pem, token(RS, c, rsa_key), "malformed");
	free(c);
	static const char *bad[] = { "", "cbe 1", "cbe\\u00011", "cbe-\\u00e9" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		c = fmt("{\"iss\":\"" ISS "\",\"aud\":\"" AUD "\",\"exp\":%lld,\"sub\":\"%s\"}",
			(long long)now + 60, bad[i]);
		EXPECT(rsa_pem, token(RS, c, rsa_key), "malformed");
		free(c);
	}
	/* expect_n's buffer is 64 bytes: 63 characters fit, 64 do not. */
	memset(long_id, 'a', sizeof(long_id));
	long_id[63] = '\0';
	c = fmt("{\"iss\":\"" ISS "\",\"aud\":\"" AUD "\",\"exp\":%lld,\"sub\":\"%s\"}",
		(long long)now + 60, long_id);
	{
		const struct smisd_jwt_issuer *set[] = { rsa_pem };
		expect_n(set, 1, token(RS, c, rsa_key), NULL, long_id, __LINE__);
	}
	free(c);
	long_id[63] = 'a';
	long_id[64] = '\0';
	c = fmt("{\"iss\":\"" ISS "\",\"aud\":\"" AUD "\",\"exp\":%lld,\"sub\":\"%s\"}",
		(long long)now + 60, long_id);
	EXPECT(rsa_pem, token(RS, c, rsa_key), "malformed");
	free(c);
}

/* JSON strings may hold \u0000; json-c keeps the bytes after it, C string
 * functions stop there: "smis\u0000x" must not pass for "smis". Such a
 * string is refused as malformed wherever it is. */
static void test_embedded_nul(void)
{
	/* iss, aud (string and array member), client_id, sub: %s is the NUL. */
	static const char *const fmts[] = {
		"{\"iss\":\"" ISS "%s.evil\",\"aud\":\"" AUD "\",\"sub\":\"" CLIENT "\",",
		"{\"iss\":\"" ISS "\",\"aud\":\"" AUD "%s-other\",\"sub\":\"" CLIENT "\",",
		"{\"iss\":\"" ISS "\",\"aud\":[\"" AUD "%s-other\"],\"sub\":\"" CLIENT "\",",
		/* The caller maps the identity to an institution: no truncated name. */
		"{\"iss\":\"" ISS "\",\"aud\":\"" AUD "\",\"client_id\":\"" CLIENT "%s-other\",",
		"{\"iss\":\"" ISS "\",\"aud\":\"" AUD "\",\"sub\":\"" CLIENT "%s\",",
	};

	EXPECT(rsa_pem, tok_claims("{\"alg\":\"RS256\\u0000x\"}", "", rsa_key), "malformed");
	EXPECT(jwks, tok_claims("{\"alg\":\"RS256\",\"kid\":\"rsa-1\\u0000x\"}", "", rsa_key),
	       "malformed");
	for (size_t i = 0; i < sizeof(fmts) / sizeof(fmts[0]); i++) {
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
		char *head = fmt(fmts[i], "\\u0000");
#pragma GCC diagnostic pop
		char *c = fmt("%s\"exp\":%lld}", head, (long long)now + 60);

		EXPECT(rsa_pem, token(RS, c, rsa_key), "malformed");
		free(head);
		free(c);
	}
}

/* RFC 7515 section 5.2 and RFC 7519 section 7.2 let a parser keep the last
 * of duplicate members; a gateway or issuer that keeps the first would read
 * another token: a duplicate is refused, at any depth. */
static void test_duplicate_members(void)
{
	char *c;

	EXPECT(rsa_pem, tok_claims("{\"alg\":\"none\",\"alg\":\"RS256\"}", "", rsa_key), "malformed");
	EXPECT(jwks, tok_claims("{\"alg\":\"RS256\",\"kid\":\"x\",\"kid\":\"rsa-1\"}", "", rsa_key),
	       "malformed");
	EXPECT(rsa_pem, tok_claims(RS, ",\"aud\":\"other\",\"aud\":\"" AUD "\"", rsa_key), "malformed");
	EXPECT(rsa_pem, tok_claims(RS, ",\"client_id\":\"" CLIENT "\"", rsa_key), "malformed");
	EXPECT(rsa_pem, tok_claims(RS, ",\"x\":{\"a\":1,\"a\":2}", rsa_key), "malformed");
	/* The same name escaped otherwise is the same name. */
	EXPECT(rsa_pem, tok_claims(RS, ",\"\\u0061ud\":\"" AUD "\"", rsa_key), "malformed");
	/* Equal names in different objects, and colons inside strings, are fine. */
	c = fmt(",\"x\":{\"aud\":\"a:b\",\"k\\\":\":[{\"a\":1},{\"a\":\"\\\\\"}]}");
	EXPECT(rsa_pem, tok_claims(RS, c, rsa_key), NULL);
	free(c);
}

static void test_oversized(void)
{
	int seen_ok = 0, seen_big = 0;

	char *t0 = tok_claims(RS, ",\"pad\":\"\"", rsa_key);
	/* Each claim byte adds 4/3 characters: start a little below the limit. */
	size_t start = (SMISD_JWT_MAX_LEN - strlen(t0)) * 3 / 4 - 8;

	free(t0);
	/* Grow a padding claim until the token crosses SMISD_JWT_MAX_LEN. */
	for (size_t pad = start; pad < start + 32 && !(seen_ok && seen_big); pad++) {
		char *fill = malloc(pad + 1), *extra, *t;
		size_t len;

		memset(fill, 'x', pad);
		fill[pad] = '\0';
		extra = fmt(",\"pad\":\"%s\"", fill);
		t = tok_claims(RS, extra, rsa_key);
		len = strlen(t);
		free(fill);
		free(extra);
		if (len > SMISD_JWT_MAX_LEN - 3 && len <= SMISD_JWT_MAX_LEN && !seen_ok) {
			seen_ok = 1;
			EXPECT(rsa_pem, t, NULL);
		} else if (len > SMISD_JWT_MAX_LEN && len <= SMISD_JWT_MAX_LEN + 3 && !seen_big) {
			seen_big = 1;
			EXPECT(rsa_pem, t, "malformed");
		} else {
			free(t);
		}
	}
	CU_ASSERT_TRUE(seen_ok);
	CU_ASSERT_TRUE(seen_big);
}

/* Members of the committed JWKS, to build broken variants from. */
static char *jwks_member(int key, const char *name)
{
	json_object *root = json_object_from_file(JWT_DIR "jwks.json"), *keys, *v;
	char *s = NULL;

	if (root && json_object_object_get_ex(root, "keys", &keys) &&
	    json_object_object_get_ex(json_object_array_get_idx(keys, key), name, &v))
		s = strdup(json_object_get_string(v));
	json_object_put(root);
	CU_ASSERT_PTR_NOT_NULL_FATAL(s);
	return s;
}

static void expect_load_error(const char *text, const char *err_part)
{
	char err[256] = "";
	struct smisd_jwt_issuer *is = issuer_from_text(text, err, sizeof(err));

	CU_ASSERT_PTR_NULL(is);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, err_part));
	if (is || !strstr(err, err_part))
		fprintf(stderr, "\n  load: got '%s', want '%s'\n", err, err_part);
	smisd_jwt_issuer_free(is);
}

/* The test EC key in PEM, then `tail`: refused with err_part. */
static void expect_ec_pem_then_error(const char *tail, const char *err_part)
{
	BIO *b = BIO_new(BIO_s_mem());
	BUF_MEM *mem;

	CU_ASSERT_FATAL(b != NULL && PEM_write_bio_PUBKEY(b, ec_key) == 1);
	BIO_puts(b, tail);
	BIO_write(b, "", 1);
	BIO_get_mem_ptr(b, &mem);
	expect_load_error(mem->data, err_part);
	BIO_free(b);
}

/* A JWKS of `n` copies of the test RSA key, with kids "k1".."kn" or none,
 * and then the test EC key with kid "ec". */
static char *rsa_jwks(int n, bool kids)
{
	char *mod = jwks_member(0, "n"), *x = jwks_member(1, "x"), *y = jwks_member(1, "y");
	char *text = fmt("{\"keys\":["), *more;

	for (int i = 1; i <= n; i++) {
		char kid[32] = "";

		if (kids)
			snprintf(kid, sizeof(kid), "\"kid\":\"k%d\",", i);
		more = fmt("%s{\"kty\":\"RSA\",%s\"n\":\"%s\",\"e\":\"AQAB\"},", text, kid, mod);
		free(text);
		text = more;
	}
	more = fmt("%s{\"kty\":\"EC\",\"kid\":\"ec\",\"crv\":\"P-256\",\"x\":\"%s\",\"y\":\"%s\"}]}",
		   text, x, y);
	free(text);
	free(mod);
	free(x);
	free(y);
	return more;
}

/* The test RSA key in PEM, `n` times over. */
static char *rsa_pems(int n)
{
	BIO *b = BIO_new(BIO_s_mem());
	BUF_MEM *mem;
	char *text;

	CU_ASSERT_FATAL(b != NULL);
	for (int i = 0; i < n; i++)
		CU_ASSERT_FATAL(PEM_write_bio_PUBKEY(b, rsa_key) == 1);
	BIO_get_mem_ptr(b, &mem);
	text = fmt("%.*s", (int)mem->length, mem->data);
	BIO_free(b);
	return text;
}

static struct smisd_jwt_issuer *issuer_from_owned_text(char *text)
{
	char err[256] = "";
	struct smisd_jwt_issuer *is = issuer_from_text(text, err, sizeof(err));

	if (!is)
		fprintf(stderr, "\n  load: %s\n", err);
	free(text);
	return is;
}

/* A token without a kid was tried against every key of its type, however
 * many: each request could cost as many signature checks as the issuer
 * has keys. Up to SMISD_JWT_MAX_UNNAMED_KEYS it still is (key rotation);
 * past that the token must name its key, and a key file with more keys
 * without a kid of one type (they are tried for any token) is refused. */
static void test_unnamed_keys_bounded(void)
{
	struct smisd_jwt_issuer *is;
	char *t;

	CU_ASSERT_EQUAL_FATAL(SMISD_JWT_MAX_UNNAMED_KEYS, 4);
	is = issuer_from_owned_text(rsa_jwks(4, true));
	CU_ASSERT_PTR_NOT_NULL_FATAL(is);
	EXPECT(is, tok_claims(RS, "", rsa_key), NULL);
	smisd_jwt_issuer_free(is);
	is = issuer_from_owned_text(rsa_jwks(5, true));
	CU_ASSERT_PTR_NOT_NULL_FATAL(is);
	EXPECT(is, tok_claims(RS, "", rsa_key), "kid_required");
	EXPECT(is, tok_claims(RS, "", other_rsa_key), "kid_required"); /* before any check */
	EXPECT(is, tok_claims("{\"alg\":\"RS256\",\"kid\":\"k5\"}", "", rsa_key), NULL);
	EXPECT(is, tok_claims(ES, "", ec_key), NULL); /* one EC key: counted apart */
	smisd_jwt_issuer_free(is);
	/* Keys without a kid: four of a type load, five do not. */
	is = issuer_from_owned_text(rsa_pems(4));
	CU_ASSERT_PTR_NOT_NULL_FATAL(is);
	EXPECT(is, tok_claims("{\"alg\":\"RS256\",\"kid\":\"any\"}", "", rsa_key), NULL);
	smisd_jwt_issuer_free(is);
	t = rsa_pems(5);
	expect_load_error(t, "5 RS256 keys without a kid, at most 4: publish them in a JWKS, each with its kid");
	free(t);
	t = rsa_jwks(5, false);
	expect_load_error(t, "5 RS256 keys without a kid, at most 4");
	free(t);
}

/* PEM text of n P-256 keys, all fresh but the one at test_key_at (the
 * test EC key; -1: none). */
static char *ec_pems(int n, int test_key_at)
{
	BIO *b = BIO_new(BIO_s_mem());
	BUF_MEM *mem;
	char *text;

	CU_ASSERT_FATAL(b != NULL);
	for (int i = 0; i < n; i++) {
		EVP_PKEY *k = i == test_key_at ? NULL : EVP_EC_gen("P-256");

		CU_ASSERT_FATAL(PEM_write_bio_PUBKEY(b, k ? k : ec_key) == 1);
		EVP_PKEY_free(k);
	}
	BIO_get_mem_ptr(b, &mem);
	text = fmt("%.*s", (int)mem->length, mem->data);
	BIO_free(b);
	return text;
}

/* The issuer blocks `texts` (a NULL audience: AUD) sharing ISS; expect
 * want_reason for an ES256 token of the test key with that header. */
static void expect_same_iss(const char *const texts[2], const char *const auds[2], const char *header,
			    const char *want_reason, int line)
{
	struct smisd_jwt_issuer *set[2];
	char err[256] = "";

	for (int i = 0; i < 2; i++) {
		set[i] = issuer_for(auds[i] ? auds[i] : AUD, texts[i], strlen(texts[i]), err, sizeof(err));
		CU_ASSERT_PTR_NOT_NULL_FATAL(set[i]);
	}
	expect_n((const struct smisd_jwt_issuer *const *)set, 2, tok_claims(header, "", ec_key), want_reason, NULL, line);
	for (int i = 0; i < 2; i++)
		smisd_jwt_issuer_free(set[i]);
}

/* Blocks sharing an iss are each bounded when loaded, but a token is tried
 * against all of them: two blocks of 4 keys cost 8 checks. Together they
 * get the one-issuer bound, 1 + SMISD_JWT_MAX_UNNAMED_KEYS checks, and a
 * key both list (one key file, two audiences) is checked once. */
static void test_same_iss_checks_bounded(void)
{
	char *four_others = ec_pems(4, -1), *key_last = ec_pems(4, 3), *key_first = ec_pems(4, 0);

	/* The test key is the 8th key tried: past the bound. Without a kid
	 * the reason is the one issuer's with too many keys: kid_required. */
	expect_same_iss((const char *const[]){ four_others, key_last }, (const char *const[]){ NULL, NULL }, ES,
			"kid_required", __LINE__);
	/* Authentic for the first block, of another audience: that reason
	 * goes furthest, however the second block ends. */
	expect_same_iss((const char *const[]){ key_last, four_others }, (const char *const[]){ "smis-admin", NULL },
			ES, "wrong_audience", __LINE__);
	/* A token that names its key gets the reason it got so far. */
	expect_same_iss((const char *const[]){ four_others, key_last }, (const char *const[]){ NULL, NULL }, ES_KID,
			"bad_signature", __LINE__);
	/* The 5th: within it. */
	expect_same_iss((const char *const[]){ four_others, key_first }, (const char *const[]){ NULL, NULL }, ES,
			NULL, __LINE__);
	/* One file for two audiences: the second block costs no check. */
	expect_same_iss((const char *const[]){ key_last, key_last }, (const char *const[]){ "smis-admin", NULL }, ES,
			NULL, __LINE__);
	free(four_others);
	free(key_last);
	free(key_first);
}

static void test_load(void)
{
	char err[256];
	struct smisd_jwt_issuer *is;
	char *n = jwks_member(0, "n"), *x = jwks_member(1, "x"), *y = jwks_member(1, "y"), *t;

	smisd_jwt_issuer_free(NULL);
	/* Arguments. */
	CU_ASSERT_PTR_NULL(smisd_jwt_issuer_new(ISS, AUD, JWT_DIR "rsa.pub", -1, err, sizeof(err)));
	CU_ASSERT_PTR_NULL(smisd_jwt_issuer_new(ISS, AUD, JWT_DIR "rsa.pub", SMISD_JWT_MAX_SKEW + 1,
						err, sizeof(err)));
	CU_ASSERT_PTR_NULL(smisd_jwt_issuer_new("", AUD, JWT_DIR "rsa.pub", 0, err, sizeof(err)));
	CU_ASSERT_PTR_NULL(smisd_jwt_issuer_new(ISS, NULL, JWT_DIR "rsa.pub", 0, NULL, 0));
	CU_ASSERT_PTR_NULL(smisd_jwt_issuer_new(ISS, AUD, JWT_DIR "missing.pem", 0, err, sizeof(err)));
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "missing.pem"));
	/* Keys refused in PEM. */
	CU_ASSERT_PTR_NULL(smisd_jwt_issuer_new(ISS, AUD, JWT_DIR "weak-rsa1024.pub", 0, err,
						sizeof(err)));
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "1024 bits"));
	CU_ASSERT_PTR_NULL(smisd_jwt_issuer_new(ISS, AUD, JWT_DIR "p384.pub", 0, err, sizeof(err)));
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "P-256"));
	CU_ASSERT_PTR_NULL(smisd_jwt_issuer_new(ISS, AUD, JWT_DIR "rsa.key", 0, err, sizeof(err)));
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "PRIVATE KEY"));
	expect_load_error("", "empty");
	expect_load_error("hello\n", "no PEM block");
	expect_load_error("-----BEGIN PUBLIC KEY-----\nAAAA!!\n-----END PUBLIC KEY-----\n",
			  "PEM block 1");
	expect_load_error("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
			  "PEM block 1: cannot be parsed");

	/* A label or kid from the file is shown on one line, each control
	 * character as '?' (fuzz_jwks: a kid "a\nb" split the reason). */
	expect_load_error("-----BEGIN A\x1b[2J-----\nAAAA\n-----END A\x1b[2J-----\n",
			  "\"A?[2J\" is not a PUBLIC KEY");
	expect_load_error("{\"keys\":[{\"kty\":\"RSA\",\"kid\":\"a\\nb\\u001b[2J\",\"n\":\"AQAB\","
			  "\"e\":\"AQAB\"}]}", "JWKS key a?b?[2J: RSA key of 17 bits");

	/* JWKS. */
	expect_load_error("{}", "no \"keys\" array");
	expect_load_error("{\"keys\":[]}", "no RS256/ES256 signature key");
	expect_load_error("{\"keys\":[{\"kty\":\"oct\",\"k\":\"c2VjcmV0\"}]}", "no RS256/ES256");
	expect_load_error("{\"keys\":[1]}", "JWKS key 0");
	expect_load_error("{\"keys\":[{\"kty\":\"RSA\",\"n\":\"AQAB\",\"e\":\"AQAB\"}]}", "JWKS key");
	expect_load_error("{\"keys\":[{\"kty\":\"RSA\",\"n\":\"AQAB\",\"e\":\"AQAB\"},]}",
			  "strict JSON");
	t = fmt("{\"keys\":[{\"kty\":\"RSA\",\"kid\":\"a\",\"n\":\"%s\",\"e\":\"AQAB\"},"
		"{\"kty\":\"RSA\",\"kid\":\"a\",\"n\":\"%s\",\"e\":\"AQAB\"}]}", n, n);
	expect_load_error(t, "duplicate kid");
	free(t);
	t = fmt("{\"keys\":[{\"kty\":\"RSA\",\"n\":\"%s=\",\"e\":\"AQAB\"}]}", n);
	expect_load_error(t, "invalid RSA public key");
	free(t);
	t = fmt("{\"keys\":[{\"kty\":\"RSA\",\"n\":\"%s\",\"e\":\"AQAB\",\"d\":\"AQAB\"}]}", n);
	expect_load_error(t, "private key material");
	free(t);
	t = fmt("{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"%s\",\"y\":\"%s\"}]}", x + 1, y);
	expect_load_error(t, "invalid EC public key");
	free(t);
	/* A point off the curve. */
	y[5] = y[5] == 'A' ? 'B' : 'A';
	t = fmt("{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"%s\",\"y\":\"%s\"}]}", x, y);
	expect_load_error(t, "EC");
	free(t);
	y[5] = y[5] == 'A' ? 'B' : 'A';

	/* OpenSSL's public-key validation: an RSA exponent of 1. */
	t = fmt("{\"keys\":[{\"kty\":\"RSA\",\"n\":\"%s\",\"e\":\"AQ\"}]}", n);
	expect_load_error(t, "fails validation");
	free(t);
	/* DER with trailing bytes inside a PUBLIC KEY block. */
	{
		unsigned char *der = NULL, *longer;
		int der_len = i2d_PUBKEY(rsa_key, &der);
		BIO *b = BIO_new(BIO_s_mem());
		BUF_MEM *mem;

		CU_ASSERT_FATAL(der_len > 0 && b != NULL);
		longer = malloc((size_t)der_len + 2);
		memcpy(longer, der, (size_t)der_len);
		longer[der_len] = 0x05;
		longer[der_len + 1] = 0x00;
		PEM_write_bio(b, "PUBLIC KEY", "", longer, der_len + 2);
		BIO_write(b, "", 1);
		BIO_get_mem_ptr(b, &mem);
		expect_load_error(mem->data, "PEM block 1: cannot be parsed");
		BIO_free(b);
		free(longer);
		OPENSSL_free(der);
	}

	/* A block whose BEGIN line OpenSSL cannot read is not skipped as text
	 * between blocks, key and all (fuzz_jwks); nor is one after a lone
	 * '\r', a line break to an editor. */
	expect_ec_pem_then_error("-----BEGIN PUBLIC KEY--(--\nAAAA\n-----END PUBLIC KEY-----\n",
				 "opens no PEM block");
	expect_ec_pem_then_error("note\r-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
				 "opens no PEM block");
	/* OpenSSL reads a line only up to a NUL byte, so the label "PUBLIC
	 * KEY\0X" passed for "PUBLIC KEY" (fuzz_jwks): a key file is text. */
	{
		static const char label[] = "-----BEGIN PUBLIC KEY\0X-----";
		BIO *b = BIO_new(BIO_s_mem());
		BUF_MEM *mem;
		char *text, *rest;
		size_t len;

		CU_ASSERT_FATAL(b != NULL && PEM_write_bio_PUBKEY(b, ec_key) == 1);
		BIO_get_mem_ptr(b, &mem);
		rest = memchr(mem->data, '\n', mem->length);
		CU_ASSERT_FATAL(rest != NULL);
		len = sizeof(label) - 1 + (size_t)(mem->data + mem->length - rest);
		text = malloc(len);
		CU_ASSERT_FATAL(text != NULL);
		memcpy(text, label, sizeof(label) - 1);
		memcpy(text + sizeof(label) - 1, rest, len - (sizeof(label) - 1));
		is = issuer_from_bytes(text, len, err, sizeof(err));
		CU_ASSERT_PTR_NULL(is);
		CU_ASSERT_PTR_NOT_NULL(strstr(err, "NUL byte"));
		smisd_jwt_issuer_free(is);
		free(text);
		BIO_free(b);
	}

	/* Skipped keys around a usable one; the usable one works. A key
	 * marked for encryption is never used to verify, even with no alg,
	 * whether by "use" or by "key_ops" (RFC 7517, 4.3) without "verify". */
	t = fmt("{\"keys\":[{\"kty\":\"RSA\",\"use\":\"enc\",\"kid\":\"e\",\"n\":\"%s\","
		"\"e\":\"AQAB\"},{\"kty\":\"RSA\",\"key_ops\":[\"encrypt\"],\"kid\":\"o\",\"n\":\"%s\","
		"\"e\":\"AQAB\"},{\"kty\":\"EC\",\"key_ops\":[\"verify\"],\"crv\":\"P-256\",\"x\":\"%s\",\"y\":\"%s\"}]}",
		n, n, x, y);
	is = issuer_from_text(t, err, sizeof(err));
	CU_ASSERT_PTR_NOT_NULL(is);
	if (is) {
		EXPECT(is, tok_claims("{\"alg\":\"RS256\",\"kid\":\"e\"}", "", rsa_key),
		       "unknown_key");
		EXPECT(is, tok_claims("{\"alg\":\"RS256\",\"kid\":\"o\"}", "", rsa_key),
		       "unknown_key");
		EXPECT(is, tok_claims(RS, "", rsa_key), "unknown_key");
		EXPECT(is, tok_claims(ES, "", ec_key), NULL);
	}
	smisd_jwt_issuer_free(is);
	free(t);
	t = fmt("{\"keys\":[{\"kty\":\"EC\",\"key_ops\":\"verify\",\"crv\":\"P-256\",\"x\":\"%s\",\"y\":\"%s\"}]}",
		x, y);
	expect_load_error(t, "JWKS key 0: key_ops is not an array of strings");
	free(t);
	t = fmt("{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-384\",\"x\":\"AA\",\"y\":\"AA\"},"
		"{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\"AA\"},"
		"{\"kty\":\"RSA\",\"alg\":\"RS512\",\"n\":\"AA\",\"e\":\"AQAB\"},"
		"{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"%s\",\"y\":\"%s\"}]}", x, y);
	is = issuer_from_text(t, err, sizeof(err));
	CU_ASSERT_PTR_NOT_NULL(is);
	if (is) {
		EXPECT(is, tok_claims(ES, "", ec_key), NULL);
		EXPECT(is, tok_claims(RS, "", rsa_key), "unknown_key");
	}
	smisd_jwt_issuer_free(is);
	free(t);
	free(n);
	free(x);
	free(y);
}

int main(void)
{
	CU_pSuite s;
	unsigned failed;

	if (CU_initialize_registry() != CUE_SUCCESS)
		return 1;
	s = CU_add_suite("jwt_auth", suite_init, suite_clean);
	CU_add_test(s, "looks_like", test_looks_like);
	CU_add_test(s, "valid RS256/ES256, PEM/JWKS/cert", test_valid);
	CU_add_test(s, "forged", test_forged);
	CU_add_test(s, "exp/nbf/iat with skew", test_times);
	CU_add_test(s, "audience", test_audience);
	CU_add_test(s, "issuers", test_issuers);
	CU_add_test(s, "alg none", test_alg_none);
	CU_add_test(s, "typ", test_typ);
	CU_add_test(s, "key confusion", test_key_confusion);
	CU_add_test(s, "kid", test_kid);
	CU_add_test(s, "keys tried without a kid are bounded", test_unnamed_keys_bounded);
	CU_add_test(s, "checks bounded over issuers sharing an iss", test_same_iss_checks_bounded);
	CU_add_test(s, "malformed", test_malformed);
	CU_add_test(s, "client_id/sub", test_identity);
	CU_add_test(s, "embedded NUL", test_embedded_nul);
	CU_add_test(s, "duplicate members", test_duplicate_members);
	CU_add_test(s, "oversized", test_oversized);
	CU_add_test(s, "key loading", test_load);
	CU_basic_set_mode(CU_BRM_VERBOSE);
	CU_basic_run_tests();
	failed = CU_get_number_of_failures() + CU_get_number_of_suites_failed();
	CU_cleanup_registry();
	return failed ? 1 : 0;
}
