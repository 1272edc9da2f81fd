/*
 * HPKE base mode (RFC 9180) on OpenSSL 3.0 EVP: X25519 through EVP_PKEY raw
 * keys, HKDF-SHA256's extract and expand (RFC 5869) on EVP_MAC HMAC, the
 * AEADs through EVP_CIPHER. Section numbers below are RFC 9180's.
 */
#include "config.h"

#include "hpke.h"

#include <errno.h>
#include <pthread.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#define HPKE_NH 32 /* SHA-256 output, the size of every PRK */
#define HPKE_MAX_NK 32
#define HPKE_KS_CONTEXT_LEN (1 + 2 * HPKE_NH) /* mode || psk_id_hash || info_hash */
#define HPKE_MAX_EXPORT (255 * HPKE_NH)

static const char hpke_version_label[] = "HPKE-v1";
#define HPKE_VERSION_LABEL_LEN (sizeof(hpke_version_label) - 1)

/* suite_id = "KEM" || I2OSP(kem_id, 2) (4.1) */
static const unsigned char kem_suite_id[] = {'K', 'E', 'M', 0x00, 0x20};
#define HPKE_SUITE_ID_LEN 10 /* "HPKE" || kem_id || kdf_id || aead_id (5.1) */

struct smis_hpke_ctx {
	const EVP_CIPHER *cipher;
	size_t nk;
	unsigned char key[HPKE_MAX_NK];
	unsigned char base_nonce[SMIS_HPKE_NN];
	unsigned char exporter_secret[HPKE_NH];
	unsigned char suite_id[HPKE_SUITE_ID_LEN];
	uint64_t seq;
#ifdef SMIS_UNITTEST
	/* Kept only so the tests can compare them with the RFC vectors. */
	unsigned char shared_secret[SMIS_HPKE_NSECRET];
	unsigned char ks_context[HPKE_KS_CONTEXT_LEN];
	unsigned char secret[HPKE_NH];
#endif
};

/* The cipher and key length of a supported AEAD id, or -EINVAL. */
static int hpke_aead(uint16_t aead_id, const EVP_CIPHER **cipher, size_t *nk)
{
	int rc = 0;

	switch (aead_id) {
	case SMIS_HPKE_AEAD_AES128GCM:
		*cipher = EVP_aes_128_gcm();
		*nk = 16;
		break;
	case SMIS_HPKE_AEAD_AES256GCM:
		*cipher = EVP_aes_256_gcm();
		*nk = 32;
		break;
	case SMIS_HPKE_AEAD_CHACHA20POLY1305:
		*cipher = EVP_chacha20_poly1305();
		*nk = 32;
		break;
	default:
		rc = -EINVAL;
		break;
	}
	if (rc == 0 && *cipher == NULL)
		rc = -EIO;
	return rc;
}

static void hpke_put_u16(unsigned char *p, uint16_t v)
{
	p[0] = (unsigned char)(v >> 8);
	p[1] = (unsigned char)v;
}

/* HKDF (RFC 5869) on OpenSSL's HMAC-SHA256. OpenSSL's own HKDF (EVP_KDF)
 * fetches its digest and, inside, HMAC by name on every call: a provider
 * lookup under a lock, about a third of a seal's time beside the two X25519
 * operations, ten times per seal. So HMAC is fetched and set to SHA-256 once
 * per process, and each step duplicates that context. The RFC 9180 vectors
 * in tests/unit/test_hpke.c cover both steps. */
static EVP_MAC_CTX *hmac_template;
static pthread_once_t hmac_once = PTHREAD_ONCE_INIT;

static void hmac_setup(void)
{
	EVP_MAC *mac = EVP_MAC_fetch(NULL, OSSL_MAC_NAME_HMAC, NULL);
	char digest[] = "SHA256";
	OSSL_PARAM params[2];

	if (mac == NULL)
		return;
	hmac_template = EVP_MAC_CTX_new(mac);
	EVP_MAC_free(mac); /* the context keeps its own reference */
	params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0);
	params[1] = OSSL_PARAM_construct_end();
	if (hmac_template != NULL && EVP_MAC_CTX_set_params(hmac_template, params) <= 0) {
		EVP_MAC_CTX_free(hmac_template);
		hmac_template = NULL;
	}
}

/* This code is also linked into plugins that are dlclose()d on reload:
 * give the cached context back when the object goes away. */
__attribute__((destructor)) static void hmac_release(void)
{
	EVP_MAC_CTX_free(hmac_template);
	hmac_template = NULL;
}

/* out = HMAC-SHA256(key, a || b || c); out holds HPKE_NH bytes. */
static int hmac3(const unsigned char *key, size_t key_len, const unsigned char *a, size_t a_len,
	const unsigned char *b, size_t b_len, const unsigned char *c, size_t c_len,
	unsigned char out[HPKE_NH])
{
	static const unsigned char empty_key[1];
	EVP_MAC_CTX *ctx;
	size_t out_len = 0;
	int rc = 0;

	pthread_once(&hmac_once, hmac_setup);
	if (hmac_template == NULL)
		return -EIO;
	ctx = EVP_MAC_CTX_dup(hmac_template);
	if (ctx == NULL)
		return -ENOMEM;
	/* An empty salt is HashLen zero bytes: HMAC pads any key with zeros. */
	if (EVP_MAC_init(ctx, key_len ? key : empty_key, key_len, NULL) <= 0 ||
	    (a_len && EVP_MAC_update(ctx, a, a_len) <= 0) || (b_len && EVP_MAC_update(ctx, b, b_len) <= 0) ||
	    (c_len && EVP_MAC_update(ctx, c, c_len) <= 0) ||
	    EVP_MAC_final(ctx, out, &out_len, HPKE_NH) <= 0 || out_len != HPKE_NH)
		rc = -EIO;
	EVP_MAC_CTX_free(ctx);
	return rc;
}

/* HKDF-Extract: prk = HMAC-SHA256(salt, ikm); an empty salt is HashLen zeros. */
static int hkdf_extract(const unsigned char *salt, size_t salt_len, const unsigned char *ikm,
	size_t ikm_len, unsigned char prk[HPKE_NH])
{
	return hmac3(salt, salt_len, ikm, ikm_len, NULL, 0, NULL, 0, prk);
}

/* HKDF-Expand: out_len bytes (1 .. 255 blocks) of T(1) || T(2) || ..., where
 * T(i) = HMAC-SHA256(prk, T(i-1) || info || i). */
static int hkdf_expand(const unsigned char prk[HPKE_NH], const unsigned char *info, size_t info_len,
	unsigned char *out, size_t out_len)
{
	unsigned char t[HPKE_NH];
	size_t done = 0, t_len = 0;
	int rc = 0;

	if (out_len == 0 || out_len > 255 * HPKE_NH)
		return -EINVAL;
	for (unsigned char i = 1; rc == 0 && done < out_len; i++) {
		rc = hmac3(prk, HPKE_NH, t, t_len, info, info_len, &i, 1, t);
		t_len = HPKE_NH;
		if (rc == 0) {
			size_t n = out_len - done < HPKE_NH ? out_len - done : HPKE_NH;
			memcpy(out + done, t, n);
			done += n;
		}
	}
	OPENSSL_cleanse(t, sizeof(t));
	return rc;
}

/* LabeledExtract(salt, label, ikm) = Extract(salt, "HPKE-v1" || suite_id || label || ikm) (4) */
static int labeled_extract(const unsigned char *suite_id, size_t suite_id_len,
	const unsigned char *salt, size_t salt_len, const char *label, const unsigned char *ikm,
	size_t ikm_len, unsigned char prk[HPKE_NH])
{
	size_t label_len = strlen(label), n;
	unsigned char *buf = NULL;
	int rc;

	if (ikm_len > SIZE_MAX - 64) {
		rc = -EINVAL;
		goto out;
	}
	n = HPKE_VERSION_LABEL_LEN + suite_id_len + label_len + ikm_len;
	buf = malloc(n);
	if (buf == NULL) {
		rc = -ENOMEM;
		goto out;
	}
	memcpy(buf, hpke_version_label, HPKE_VERSION_LABEL_LEN);
	memcpy(buf + HPKE_VERSION_LABEL_LEN, suite_id, suite_id_len);
	memcpy(buf + HPKE_VERSION_LABEL_LEN + suite_id_len, label, label_len);
	if (ikm_len > 0)
		memcpy(buf + HPKE_VERSION_LABEL_LEN + suite_id_len + label_len, ikm, ikm_len);
	rc = hkdf_extract(salt, salt_len, buf, n, prk);
	/* ikm is often a DH output or a shared secret. */
	OPENSSL_cleanse(buf, n);
	free(buf);
out:
	return rc;
}

/*
 * LabeledExpand(prk, label, info, L) =
 *   Expand(prk, I2OSP(L, 2) || "HPKE-v1" || suite_id || label || info, L) (4)
 */
static int labeled_expand(const unsigned char *suite_id, size_t suite_id_len,
	const unsigned char prk[HPKE_NH], const char *label, const unsigned char *info,
	size_t info_len, unsigned char *out, size_t L)
{
	size_t label_len = strlen(label), n;
	unsigned char *buf = NULL;
	int rc;

	if (L == 0 || L > HPKE_MAX_EXPORT || info_len > SIZE_MAX - 64) {
		rc = -EINVAL;
		goto out;
	}
	n = 2 + HPKE_VERSION_LABEL_LEN + suite_id_len + label_len + info_len;
	buf = malloc(n);
	if (buf == NULL) {
		rc = -ENOMEM;
		goto out;
	}
	hpke_put_u16(buf, (uint16_t)L);
	memcpy(buf + 2, hpke_version_label, HPKE_VERSION_LABEL_LEN);
	memcpy(buf + 2 + HPKE_VERSION_LABEL_LEN, suite_id, suite_id_len);
	memcpy(buf + 2 + HPKE_VERSION_LABEL_LEN + suite_id_len, label, label_len);
	if (info_len > 0)
		memcpy(buf + 2 + HPKE_VERSION_LABEL_LEN + suite_id_len + label_len, info, info_len);
	rc = hkdf_expand(prk, buf, n, out, L);
	OPENSSL_cleanse(buf, n);
	free(buf);
out:
	return rc;
}

/* Constant-time "is every byte zero". */
static int is_all_zero(const unsigned char *p, size_t n)
{
	unsigned char acc = 0;
	size_t i;

	for (i = 0; i < n; i++)
		acc |= p[i];
	return acc == 0;
}

/*
 * X25519(sk, pk) into out. -EINVAL when pk is unusable: OpenSSL 3.0 already
 * fails the derivation when the result is all-zero (a small-order pk), the
 * explicit check below keeps the RFC's MUST (7.1.4) independent of that.
 */
/* DH with a private key already imported (its public half computed). */
static int x25519_pkey(EVP_PKEY *priv, const unsigned char pk[SMIS_HPKE_NPK],
	unsigned char out[SMIS_HPKE_NSECRET])
{
	EVP_PKEY *peer = NULL;
	EVP_PKEY_CTX *pctx = NULL;
	size_t out_len = SMIS_HPKE_NSECRET;
	int rc = 0;

	peer = EVP_PKEY_new_raw_public_key(EVP_PKEY_X25519, NULL, pk, SMIS_HPKE_NPK);
	if (peer == NULL) {
		rc = -EINVAL;
		goto out;
	}
	pctx = EVP_PKEY_CTX_new_from_pkey(NULL, priv, NULL);
	if (pctx == NULL) {
		rc = -ENOMEM;
		goto out_free_peer;
	}
	if (EVP_PKEY_derive_init(pctx) <= 0) {
		rc = -EIO;
		goto out_free_pctx;
	}
	if (EVP_PKEY_derive_set_peer(pctx, peer) <= 0
		|| EVP_PKEY_derive(pctx, out, &out_len) <= 0 || out_len != SMIS_HPKE_NSECRET
		|| is_all_zero(out, SMIS_HPKE_NSECRET)) {
		OPENSSL_cleanse(out, SMIS_HPKE_NSECRET);
		rc = -EINVAL;
	}
out_free_pctx:
	EVP_PKEY_CTX_free(pctx);
out_free_peer:
	EVP_PKEY_free(peer);
out:
	return rc;
}

int smis_hpke_public_key(const unsigned char sk[SMIS_HPKE_NSK], unsigned char pk[SMIS_HPKE_NPK])
{
	EVP_PKEY *priv = NULL;
	size_t pk_len = SMIS_HPKE_NPK;
	int rc = 0;

	if (sk == NULL || pk == NULL) {
		rc = -EINVAL;
		goto out;
	}
	priv = EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, NULL, sk, SMIS_HPKE_NSK);
	if (priv == NULL) {
		rc = -ENOMEM;
		goto out;
	}
	if (EVP_PKEY_get_raw_public_key(priv, pk, &pk_len) <= 0 || pk_len != SMIS_HPKE_NPK)
		rc = -EIO;
	EVP_PKEY_free(priv);
out:
	return rc;
}

int smis_hpke_keygen(unsigned char sk[SMIS_HPKE_NSK], unsigned char pk[SMIS_HPKE_NPK])
{
	unsigned char tmp[SMIS_HPKE_NSK];
	int rc;

	if (sk == NULL || pk == NULL) {
		rc = -EINVAL;
		goto out;
	}
	/* Any 32 random bytes are an X25519 private key (RFC 7748 clamps on use). */
	if (RAND_priv_bytes(tmp, sizeof(tmp)) != 1) {
		rc = -EIO;
		goto out_wipe;
	}
	rc = smis_hpke_public_key(tmp, pk);
	if (rc == 0)
		memcpy(sk, tmp, SMIS_HPKE_NSK);
out_wipe:
	OPENSSL_cleanse(tmp, sizeof(tmp));
out:
	return rc;
}

int smis_hpke_derive_keypair(const unsigned char *ikm, size_t ikm_len,
	unsigned char sk[SMIS_HPKE_NSK], unsigned char pk[SMIS_HPKE_NPK])
{
	unsigned char dkp_prk[HPKE_NH], tmp[SMIS_HPKE_NSK];
	int rc;

	if (ikm == NULL || ikm_len < SMIS_HPKE_NSK || sk == NULL || pk == NULL) {
		rc = -EINVAL;
		goto out;
	}
	/* 7.1.3: dkp_prk = LabeledExtract("", "dkp_prk", ikm); sk = LabeledExpand(dkp_prk, "sk", "", Nsk) */
	rc = labeled_extract(kem_suite_id, sizeof(kem_suite_id), NULL, 0, "dkp_prk", ikm, ikm_len,
		dkp_prk);
	if (rc < 0)
		goto out_wipe;
	rc = labeled_expand(kem_suite_id, sizeof(kem_suite_id), dkp_prk, "sk", NULL, 0, tmp,
		SMIS_HPKE_NSK);
	if (rc < 0)
		goto out_wipe;
	rc = smis_hpke_public_key(tmp, pk);
	if (rc == 0)
		memcpy(sk, tmp, SMIS_HPKE_NSK);
out_wipe:
	OPENSSL_cleanse(dkp_prk, sizeof(dkp_prk));
	OPENSSL_cleanse(tmp, sizeof(tmp));
out:
	return rc;
}

/*
 * The u-coordinates whose X25519 with any (clamped) scalar is zero: the points
 * of small order on the curve and its twist, u = 0 (order 2), 1 and p-1
 * (order 4) and the two of order 8, plus the non-canonical encodings below
 * 2^255 of 0 and 1 (p and p+1). Clamping makes every scalar a multiple of
 * the cofactor 8, so these and only these give the all-zero secret (RFC 7748 section 6.1; the same list as
 * libsodium's). Comparing against them replaces a probe scalar multiplication
 * (~30 us) per key check, which the lookup path paid once per device.
 */
static const unsigned char small_order_u[][SMIS_HPKE_NPK] = {
	{0},
	{1},
	{0xe0, 0xeb, 0x7a, 0x7c, 0x3b, 0x41, 0xb8, 0xae, 0x16, 0x56, 0xe3, 0xfa, 0xf1, 0x9f, 0xc4,
		0x6a, 0xda, 0x09, 0x8d, 0xeb, 0x9c, 0x32, 0xb1, 0xfd, 0x86, 0x62, 0x05, 0x16, 0x5f,
		0x49, 0xb8, 0x00},
	{0x5f, 0x9c, 0x95, 0xbc, 0xa3, 0x50, 0x8c, 0x24, 0xb1, 0xd0, 0xb1, 0x55, 0x9c, 0x83, 0xef,
		0x5b, 0x04, 0x44, 0x5c, 0xc4, 0x58, 0x1c, 0x8e, 0x86, 0xd8, 0x22, 0x4e, 0xdd, 0xd0,
		0x9f, 0x11, 0x57},
	{0xec, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
		0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
		0xff, 0xff, 0x7f},
	{0xed, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
		0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
		0xff, 0xff, 0x7f},
	{0xee, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
		0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
		0xff, 0xff, 0x7f},
};

int smis_hpke_check_public_key(const unsigned char pk[SMIS_HPKE_NPK])
{
	unsigned char hit = 0;

	if (pk == NULL)
		return -EINVAL;
	/* Constant time in the key (device keys are public, but cheap to keep
	 * so). X25519 ignores the top bit (RFC 7748 section 5): so does this. */
	for (size_t k = 0; k < sizeof(small_order_u) / sizeof(small_order_u[0]); k++) {
		unsigned char diff = (unsigned char)((pk[SMIS_HPKE_NPK - 1] & 0x7f) ^
						     small_order_u[k][SMIS_HPKE_NPK - 1]);
		for (size_t i = 0; i < SMIS_HPKE_NPK - 1; i++)
			diff |= (unsigned char)(pk[i] ^ small_order_u[k][i]);
		hit |= (unsigned char)(diff == 0);
	}
	return hit ? -EINVAL : 0;
}

/*
 * 4.1 ExtractAndExpand: eae_prk = LabeledExtract("", "eae_prk", dh);
 * shared_secret = LabeledExpand(eae_prk, "shared_secret", enc || pkRm, Nsecret)
 */
static int kem_extract_and_expand(const unsigned char dh[SMIS_HPKE_NSECRET],
	const unsigned char enc[SMIS_HPKE_NENC], const unsigned char pkR[SMIS_HPKE_NPK],
	unsigned char shared_secret[SMIS_HPKE_NSECRET])
{
	unsigned char eae_prk[HPKE_NH], kem_context[SMIS_HPKE_NENC + SMIS_HPKE_NPK];
	int rc;

	memcpy(kem_context, enc, SMIS_HPKE_NENC);
	memcpy(kem_context + SMIS_HPKE_NENC, pkR, SMIS_HPKE_NPK);
	rc = labeled_extract(kem_suite_id, sizeof(kem_suite_id), NULL, 0, "eae_prk", dh,
		SMIS_HPKE_NSECRET, eae_prk);
	if (rc < 0)
		goto out_wipe;
	rc = labeled_expand(kem_suite_id, sizeof(kem_suite_id), eae_prk, "shared_secret",
		kem_context, sizeof(kem_context), shared_secret, SMIS_HPKE_NSECRET);
out_wipe:
	OPENSSL_cleanse(eae_prk, sizeof(eae_prk));
	return rc;
}

/* 4.1 Encap(pkR), with skE supplied by the caller or fresh when NULL. */
static int kem_encap(const unsigned char pkR[SMIS_HPKE_NPK], const unsigned char *skE,
	unsigned char shared_secret[SMIS_HPKE_NSECRET], unsigned char enc[SMIS_HPKE_NENC])
{
	unsigned char sk[SMIS_HPKE_NSK], pkE[SMIS_HPKE_NPK], dh[SMIS_HPKE_NSECRET];
	int rc;

	EVP_PKEY *eph = NULL;
	size_t pk_len = SMIS_HPKE_NPK;

	/* One import gives both halves of the ephemeral key: importing it
	 * again for the DH would recompute its public key (a scalar
	 * multiplication, most of a seal's cost). */
	if (skE != NULL)
		memcpy(sk, skE, SMIS_HPKE_NSK);
	else if (RAND_priv_bytes(sk, sizeof(sk)) != 1) {
		rc = -EIO;
		goto out_wipe;
	}
	eph = EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, NULL, sk, SMIS_HPKE_NSK);
	if (eph == NULL) {
		rc = -ENOMEM;
		goto out_wipe;
	}
	if (EVP_PKEY_get_raw_public_key(eph, pkE, &pk_len) <= 0 || pk_len != SMIS_HPKE_NPK) {
		rc = -EIO;
		goto out_wipe;
	}
	/* A failure here is the recipient key's fault: all-zero or small order. */
	rc = x25519_pkey(eph, pkR, dh);
	if (rc < 0)
		goto out_wipe;
	rc = kem_extract_and_expand(dh, pkE, pkR, shared_secret);
	if (rc == 0)
		memcpy(enc, pkE, SMIS_HPKE_NENC);
out_wipe:
	EVP_PKEY_free(eph);
	OPENSSL_cleanse(sk, sizeof(sk));
	OPENSSL_cleanse(dh, sizeof(dh));
	return rc;
}

/* 4.1 Decap(enc, skR). An enc that gives no usable DH makes the message bad. */
static int kem_decap(const unsigned char enc[SMIS_HPKE_NENC], const unsigned char skR[SMIS_HPKE_NSK],
	unsigned char shared_secret[SMIS_HPKE_NSECRET])
{
	unsigned char pkR[SMIS_HPKE_NPK], dh[SMIS_HPKE_NSECRET];
	EVP_PKEY *priv = EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, NULL, skR, SMIS_HPKE_NSK);
	size_t pk_len = SMIS_HPKE_NPK;
	int rc;

	/* One import for both the public half and the DH (see kem_encap). */
	if (priv == NULL) {
		rc = -ENOMEM;
		goto out;
	}
	if (EVP_PKEY_get_raw_public_key(priv, pkR, &pk_len) <= 0 || pk_len != SMIS_HPKE_NPK) {
		rc = -EIO;
		goto out;
	}
	rc = x25519_pkey(priv, enc, dh);
	if (rc == -EINVAL) {
		rc = -EBADMSG;
		goto out;
	}
	if (rc < 0)
		goto out;
	rc = kem_extract_and_expand(dh, enc, pkR, shared_secret);
	OPENSSL_cleanse(dh, sizeof(dh));
out:
	EVP_PKEY_free(priv);
	return rc;
}

void smis_hpke_ctx_free(struct smis_hpke_ctx *ctx)
{
	if (ctx == NULL)
		return;
	OPENSSL_cleanse(ctx, sizeof(*ctx));
	free(ctx);
}

/* 5.1 KeySchedule for mode_base (no PSK): a new context from shared_secret and info. */
static int key_schedule(uint16_t aead_id, const unsigned char shared_secret[SMIS_HPKE_NSECRET],
	const unsigned char *info, size_t info_len, struct smis_hpke_ctx **out)
{
	struct smis_hpke_ctx *ctx = NULL;
	unsigned char ks_context[HPKE_KS_CONTEXT_LEN], secret[HPKE_NH];
	int rc;

	ctx = calloc(1, sizeof(*ctx));
	if (ctx == NULL) {
		rc = -ENOMEM;
		goto out;
	}
	rc = hpke_aead(aead_id, &ctx->cipher, &ctx->nk);
	if (rc < 0)
		goto out_free_ctx;
	memcpy(ctx->suite_id, "HPKE", 4);
	hpke_put_u16(ctx->suite_id + 4, SMIS_HPKE_KEM_X25519_SHA256);
	hpke_put_u16(ctx->suite_id + 6, SMIS_HPKE_KDF_HKDF_SHA256);
	hpke_put_u16(ctx->suite_id + 8, aead_id);

	/* key_schedule_context = mode || psk_id_hash || info_hash, mode_base = 0 */
	ks_context[0] = 0x00;
	rc = labeled_extract(ctx->suite_id, HPKE_SUITE_ID_LEN, NULL, 0, "psk_id_hash", NULL, 0,
		ks_context + 1);
	if (rc < 0)
		goto out_free_ctx;
	rc = labeled_extract(ctx->suite_id, HPKE_SUITE_ID_LEN, NULL, 0, "info_hash", info, info_len,
		ks_context + 1 + HPKE_NH);
	if (rc < 0)
		goto out_free_ctx;
	/* secret = LabeledExtract(shared_secret, "secret", psk = "") */
	rc = labeled_extract(ctx->suite_id, HPKE_SUITE_ID_LEN, shared_secret, SMIS_HPKE_NSECRET,
		"secret", NULL, 0, secret);
	if (rc < 0)
		goto out_free_ctx;
	rc = labeled_expand(ctx->suite_id, HPKE_SUITE_ID_LEN, secret, "key", ks_context,
		sizeof(ks_context), ctx->key, ctx->nk);
	if (rc < 0)
		goto out_free_ctx;
	rc = labeled_expand(ctx->suite_id, HPKE_SUITE_ID_LEN, secret, "base_nonce", ks_context,
		sizeof(ks_context), ctx->base_nonce, SMIS_HPKE_NN);
	if (rc < 0)
		goto out_free_ctx;
	rc = labeled_expand(ctx->suite_id, HPKE_SUITE_ID_LEN, secret, "exp", ks_context,
		sizeof(ks_context), ctx->exporter_secret, HPKE_NH);
	if (rc < 0)
		goto out_free_ctx;
#ifdef SMIS_UNITTEST
	memcpy(ctx->shared_secret, shared_secret, SMIS_HPKE_NSECRET);
	memcpy(ctx->ks_context, ks_context, sizeof(ks_context));
	memcpy(ctx->secret, secret, sizeof(secret));
#endif
	*out = ctx;
	goto out_wipe;

out_free_ctx:
	smis_hpke_ctx_free(ctx);
out_wipe:
	OPENSSL_cleanse(secret, sizeof(secret));
out:
	return rc;
}

int smis_hpke_setup_base_s(uint16_t aead_id, const unsigned char pkR[SMIS_HPKE_NPK],
	const unsigned char *skE, const unsigned char *info, size_t info_len,
	unsigned char enc[SMIS_HPKE_NENC], struct smis_hpke_ctx **out)
{
	unsigned char shared_secret[SMIS_HPKE_NSECRET], enc_tmp[SMIS_HPKE_NENC];
	const EVP_CIPHER *cipher;
	size_t nk;
	int rc;

	if (pkR == NULL || enc == NULL || out == NULL || (info == NULL && info_len > 0)) {
		rc = -EINVAL;
		goto out;
	}
	*out = NULL;
	/* Fail on an unknown AEAD before spending a key generation on it. */
	rc = hpke_aead(aead_id, &cipher, &nk);
	if (rc < 0)
		goto out;
	rc = kem_encap(pkR, skE, shared_secret, enc_tmp);
	if (rc < 0)
		goto out_wipe;
	rc = key_schedule(aead_id, shared_secret, info, info_len, out);
	if (rc == 0)
		memcpy(enc, enc_tmp, SMIS_HPKE_NENC);
out_wipe:
	OPENSSL_cleanse(shared_secret, sizeof(shared_secret));
out:
	return rc;
}

int smis_hpke_setup_base_r(uint16_t aead_id, const unsigned char skR[SMIS_HPKE_NSK],
	const unsigned char enc[SMIS_HPKE_NENC], const unsigned char *info, size_t info_len,
	struct smis_hpke_ctx **out)
{
	unsigned char shared_secret[SMIS_HPKE_NSECRET];
	const EVP_CIPHER *cipher;
	size_t nk;
	int rc;

	if (skR == NULL || enc == NULL || out == NULL || (info == NULL && info_len > 0)) {
		rc = -EINVAL;
		goto out;
	}
	*out = NULL;
	rc = hpke_aead(aead_id, &cipher, &nk);
	if (rc < 0)
		goto out;
	rc = kem_decap(enc, skR, shared_secret);
	if (rc < 0)
		goto out_wipe;
	rc = key_schedule(aead_id, shared_secret, info, info_len, out);
out_wipe:
	OPENSSL_cleanse(shared_secret, sizeof(shared_secret));
out:
	return rc;
}

/* 5.2 ComputeNonce(seq) = base_nonce XOR I2OSP(seq, Nn) */
static void compute_nonce(const struct smis_hpke_ctx *ctx, unsigned char nonce[SMIS_HPKE_NN])
{
	uint64_t seq = ctx->seq;
	int i;

	memcpy(nonce, ctx->base_nonce, SMIS_HPKE_NN);
	for (i = SMIS_HPKE_NN - 1; i >= SMIS_HPKE_NN - 8; i--) {
		nonce[i] ^= (unsigned char)seq;
		seq >>= 8;
	}
}

/*
 * One AEAD operation with the context's key and nonce for its current seq.
 * Encrypts in[0..in_len) into out and appends the tag, or (decrypt) checks
 * the tag at the end of in and writes in_len - Nt bytes.
 */
static int aead_crypt(const struct smis_hpke_ctx *ctx, int encrypt, const unsigned char *aad,
	size_t aad_len, const unsigned char *in, size_t in_len, unsigned char *out)
{
	EVP_CIPHER_CTX *cctx = NULL;
	unsigned char nonce[SMIS_HPKE_NN];
	size_t body_len = encrypt ? in_len : in_len - SMIS_HPKE_NT;
	int len = 0, rc = 0;
	/* Where the body ends. Opening an empty plaintext may come with no
	 * output buffer, and NULL + 0 is undefined behaviour (UBSan says so);
	 * the AEAD's final step writes nothing there anyway. */
	unsigned char none[1];
	unsigned char *end = out ? out + body_len : none;

	if (aad_len > INT_MAX || body_len > SMIS_HPKE_MAX_PT_LEN) {
		rc = -EINVAL;
		goto out;
	}
	cctx = EVP_CIPHER_CTX_new();
	if (cctx == NULL) {
		rc = -ENOMEM;
		goto out;
	}
	compute_nonce(ctx, nonce);
	if (EVP_CipherInit_ex(cctx, ctx->cipher, NULL, NULL, NULL, encrypt) != 1
		|| EVP_CIPHER_CTX_ctrl(cctx, EVP_CTRL_AEAD_SET_IVLEN, SMIS_HPKE_NN, NULL) != 1
		|| EVP_CipherInit_ex(cctx, NULL, NULL, ctx->key, nonce, encrypt) != 1) {
		rc = -EIO;
		goto out_free_cctx;
	}
	if (aad_len > 0 && EVP_CipherUpdate(cctx, NULL, &len, aad, (int)aad_len) != 1) {
		rc = -EIO;
		goto out_free_cctx;
	}
	if (body_len > 0 && EVP_CipherUpdate(cctx, out, &len, in, (int)body_len) != 1) {
		rc = -EIO;
		goto out_free_cctx;
	}
	if (encrypt) {
		if (EVP_CipherFinal_ex(cctx, end, &len) != 1
			|| EVP_CIPHER_CTX_ctrl(cctx, EVP_CTRL_AEAD_GET_TAG, SMIS_HPKE_NT, end) != 1)
			rc = -EIO;
	} else {
		/* The tag is only read by OpenSSL, the cast drops a const it keeps. */
		if (EVP_CIPHER_CTX_ctrl(cctx, EVP_CTRL_AEAD_SET_TAG, SMIS_HPKE_NT,
			    (void *)(in + body_len)) != 1) {
			rc = -EIO;
		} else if (EVP_CipherFinal_ex(cctx, end, &len) != 1) {
			/* Never hand out plaintext that did not authenticate. */
			if (body_len > 0)
				OPENSSL_cleanse(out, body_len);
			rc = -EBADMSG;
		}
	}
out_free_cctx:
	EVP_CIPHER_CTX_free(cctx);
out:
	OPENSSL_cleanse(nonce, sizeof(nonce));
	return rc;
}

int smis_hpke_ctx_seal(struct smis_hpke_ctx *ctx, const unsigned char *aad, size_t aad_len,
	const unsigned char *pt, size_t pt_len, unsigned char *ct)
{
	int rc;

	if (ctx == NULL || ct == NULL || (aad == NULL && aad_len > 0) || (pt == NULL && pt_len > 0)
		|| pt_len > SMIS_HPKE_MAX_PT_LEN) {
		rc = -EINVAL;
		goto out;
	}
	/* 5.2: the sequence number must never wrap to a reused nonce. */
	if (ctx->seq == UINT64_MAX) {
		rc = -EOVERFLOW;
		goto out;
	}
	rc = aead_crypt(ctx, 1, aad, aad_len, pt, pt_len, ct);
	if (rc == 0)
		ctx->seq++;
out:
	return rc;
}

int smis_hpke_ctx_open(struct smis_hpke_ctx *ctx, const unsigned char *aad, size_t aad_len,
	const unsigned char *ct, size_t ct_len, unsigned char *pt)
{
	int rc;

	if (ctx == NULL || ct == NULL || ct_len < SMIS_HPKE_NT || (aad == NULL && aad_len > 0)
		|| (pt == NULL && ct_len > SMIS_HPKE_NT)) {
		rc = -EINVAL;
		goto out;
	}
	if (ctx->seq == UINT64_MAX) {
		rc = -EOVERFLOW;
		goto out;
	}
	rc = aead_crypt(ctx, 0, aad, aad_len, ct, ct_len, pt);
	if (rc == 0)
		ctx->seq++;
out:
	return rc;
}

int smis_hpke_ctx_export(const struct smis_hpke_ctx *ctx, const unsigned char *exporter_context,
	size_t exporter_context_len, size_t L, unsigned char *out)
{
	int rc;

	if (ctx == NULL || out == NULL || L == 0 || L > HPKE_MAX_EXPORT
		|| exporter_context_len > SMIS_HPKE_MAX_EXPORTER_CONTEXT
		|| (exporter_context == NULL && exporter_context_len > 0)) {
		rc = -EINVAL;
		goto out;
	}
	/* 5.3: Export(exporter_context, L) = LabeledExpand(exporter_secret, "sec", ctx, L) */
	rc = labeled_expand(ctx->suite_id, HPKE_SUITE_ID_LEN, ctx->exporter_secret, "sec",
		exporter_context, exporter_context_len, out, L);
out:
	return rc;
}

int smis_hpke_seal_with_ephemeral(uint16_t aead_id, const unsigned char skE[SMIS_HPKE_NSK],
	const unsigned char pkR[SMIS_HPKE_NPK], const unsigned char *info, size_t info_len,
	const unsigned char *aad, size_t aad_len, const unsigned char *pt, size_t pt_len,
	unsigned char enc[SMIS_HPKE_NENC], unsigned char *ct)
{
	struct smis_hpke_ctx *ctx = NULL;
	unsigned char enc_tmp[SMIS_HPKE_NENC];
	int rc;

	/* Check what the context seal would only see after the costly setup. */
	if (enc == NULL || ct == NULL || (aad == NULL && aad_len > 0) || (pt == NULL && pt_len > 0)
		|| pt_len > SMIS_HPKE_MAX_PT_LEN) {
		rc = -EINVAL;
		goto out;
	}
	rc = smis_hpke_setup_base_s(aead_id, pkR, skE, info, info_len, enc_tmp, &ctx);
	if (rc < 0)
		goto out;
	rc = smis_hpke_ctx_seal(ctx, aad, aad_len, pt, pt_len, ct);
	if (rc == 0)
		memcpy(enc, enc_tmp, SMIS_HPKE_NENC);
	smis_hpke_ctx_free(ctx);
out:
	return rc;
}

int smis_hpke_seal(uint16_t aead_id, const unsigned char pkR[SMIS_HPKE_NPK],
	const unsigned char *info, size_t info_len, const unsigned char *aad, size_t aad_len,
	const unsigned char *pt, size_t pt_len, unsigned char enc[SMIS_HPKE_NENC], unsigned char *ct)
{
	return smis_hpke_seal_with_ephemeral(aead_id, NULL, pkR, info, info_len, aad, aad_len, pt,
		pt_len, enc, ct);
}

int smis_hpke_open(uint16_t aead_id, const unsigned char skR[SMIS_HPKE_NSK],
	const unsigned char enc[SMIS_HPKE_NENC], const unsigned char *info, size_t info_len,
	const unsigned char *aad, size_t aad_len, const unsigned char *ct, size_t ct_len,
	unsigned char *pt)
{
	struct smis_hpke_ctx *ctx = NULL;
	int rc;

	if (ct == NULL || ct_len < SMIS_HPKE_NT || (aad == NULL && aad_len > 0)
		|| (pt == NULL && ct_len > SMIS_HPKE_NT)) {
		rc = -EINVAL;
		goto out;
	}
	rc = smis_hpke_setup_base_r(aead_id, skR, enc, info, info_len, &ctx);
	if (rc < 0)
		goto out;
	rc = smis_hpke_ctx_open(ctx, aad, aad_len, ct, ct_len, pt);
	smis_hpke_ctx_free(ctx);
out:
	return rc;
}

#ifdef SMIS_UNITTEST
int smis_hpke_ctx_key_schedule(const struct smis_hpke_ctx *ctx, unsigned char *shared_secret,
	unsigned char *key_schedule_context, unsigned char *secret, unsigned char *key,
	size_t *key_len, unsigned char *base_nonce, unsigned char *exporter_secret)
{
	memcpy(shared_secret, ctx->shared_secret, SMIS_HPKE_NSECRET);
	memcpy(key_schedule_context, ctx->ks_context, HPKE_KS_CONTEXT_LEN);
	memcpy(secret, ctx->secret, HPKE_NH);
	memcpy(key, ctx->key, ctx->nk);
	*key_len = ctx->nk;
	memcpy(base_nonce, ctx->base_nonce, SMIS_HPKE_NN);
	memcpy(exporter_secret, ctx->exporter_secret, HPKE_NH);
	return 0;
}

void smis_hpke_ctx_set_seq(struct smis_hpke_ctx *ctx, uint64_t seq)
{
	ctx->seq = seq;
}
#endif
