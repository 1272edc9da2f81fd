/*
 * Unit tests for lib/hpke.c: the RFC 9180 base-mode test vectors for
 * DHKEM(X25519, HKDF-SHA256) / HKDF-SHA256 with AEADs 1, 2 and 3 (every
 * key-schedule value, both encryptions, the exporter), then the edge cases
 * the vectors do not cover (small-order keys, tampering, limits).
 *
 * Built with -DSMIS_UNITTEST to reach the key-schedule accessor. The
 * vectors come from $SMIS_HPKE_VECTORS, else SMIS_TEST_DATADIR.
 */
#include "config.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <CUnit/Basic.h>
#include <json.h>
#include <openssl/rand.h>

#include "hpke.h"

#ifndef SMIS_TEST_DATADIR
#define SMIS_TEST_DATADIR "tests/data"
#endif
#define VECTORS_FILE "hpke-rfc9180-vectors.json"

static json_object *vectors_root;
static json_object *vectors; /* array, borrowed from vectors_root */

static const unsigned char *const no_bytes = (const unsigned char *)"";

/* Decode a hex string into a new buffer (at least 1 byte allocated). */
static unsigned char *hex_decode(const char *hex, size_t *len)
{
	size_t n = strlen(hex), i;
	unsigned char *out;

	if (n % 2 != 0)
		return NULL;
	out = malloc(n / 2 + 1);
	if (out == NULL)
		return NULL;
	for (i = 0; i < n / 2; i++) {
		unsigned int b;

		if (sscanf(hex + 2 * i, "%2x", &b) != 1) {
			free(out);
			return NULL;
		}
		out[i] = (unsigned char)b;
	}
	*len = n / 2;
	return out;
}

/* A hex field of obj, decoded; fails the test when absent or malformed. */
static unsigned char *field(json_object *obj, const char *name, size_t *len)
{
	json_object *v = NULL;
	unsigned char *out = NULL;

	*len = 0;
	if (json_object_object_get_ex(obj, name, &v) && json_object_is_type(v, json_type_string))
		out = hex_decode(json_object_get_string(v), len);
	CU_ASSERT_PTR_NOT_NULL(out);
	return out;
}

static int64_t int_field(json_object *obj, const char *name)
{
	json_object *v = NULL;

	if (!json_object_object_get_ex(obj, name, &v))
		return -1;
	return json_object_get_int64(v);
}

static int suite_vectors_init(void)
{
	const char *path = getenv("SMIS_HPKE_VECTORS");
	char buf[4096];

	if (path == NULL || *path == '\0') {
		snprintf(buf, sizeof(buf), "%s/%s", SMIS_TEST_DATADIR, VECTORS_FILE);
		path = buf;
	}
	vectors_root = json_object_from_file(path);
	if (vectors_root == NULL) {
		fprintf(stderr, "cannot read HPKE vectors from %s\n", path);
		return -1;
	}
	if (!json_object_object_get_ex(vectors_root, "vectors", &vectors)
		|| !json_object_is_type(vectors, json_type_array)) {
		fprintf(stderr, "%s has no \"vectors\" array\n", path);
		return -1;
	}
	return 0;
}

static int suite_vectors_clean(void)
{
	json_object_put(vectors_root);
	vectors_root = NULL;
	return 0;
}

/* The vector for aead_id with mode 0, kem 32, kdf 1, or NULL. */
static json_object *find_vector(int aead_id)
{
	size_t i, n = json_object_array_length(vectors);

	for (i = 0; i < n; i++) {
		json_object *v = json_object_array_get_idx(vectors, i);

		if (int_field(v, "mode") == 0 && int_field(v, "kem_id") == 32
			&& int_field(v, "kdf_id") == 1 && int_field(v, "aead_id") == aead_id)
			return v;
	}
	return NULL;
}

#define ASSERT_BYTES(got, got_len, want, want_len) \
	do { \
		CU_ASSERT_EQUAL_FATAL((got_len), (want_len)); \
		CU_ASSERT(memcmp((got), (want), (want_len)) == 0); \
	} while (0)

/* Every value of one vector, sender and recipient side. */
static void check_vector(int aead_id)
{
	json_object *v = find_vector(aead_id), *encs = NULL, *exp = NULL;
	unsigned char *info, *ikmE, *ikmR, *skEm, *skRm, *pkEm, *pkRm, *enc, *shared, *ksc,
		*secret, *key, *base_nonce, *exporter_secret, *exp_ctx, *exp_val;
	size_t info_len, ikmE_len, ikmR_len, skEm_len, skRm_len, pkEm_len, pkRm_len, enc_len,
		shared_len, ksc_len, secret_len, key_len, base_nonce_len, exporter_secret_len,
		exp_ctx_len, exp_val_len, i, n_enc;
	unsigned char sk[32], pk[32], got_enc[32], g_shared[32], g_ksc[65], g_secret[32], g_key[32],
		g_nonce[12], g_exp_secret[32], g_export[64];
	size_t g_key_len = 0;
	struct smis_hpke_ctx *sctx = NULL, *rctx = NULL;
	json_object *vlen = NULL;
	int64_t L;

	CU_ASSERT_PTR_NOT_NULL_FATAL(v);
	info = field(v, "info", &info_len);
	ikmE = field(v, "ikmE", &ikmE_len);
	ikmR = field(v, "ikmR", &ikmR_len);
	skEm = field(v, "skEm", &skEm_len);
	skRm = field(v, "skRm", &skRm_len);
	pkEm = field(v, "pkEm", &pkEm_len);
	pkRm = field(v, "pkRm", &pkRm_len);
	enc = field(v, "enc", &enc_len);
	shared = field(v, "shared_secret", &shared_len);
	ksc = field(v, "key_schedule_context", &ksc_len);
	secret = field(v, "secret", &secret_len);
	key = field(v, "key", &key_len);
	base_nonce = field(v, "base_nonce", &base_nonce_len);
	exporter_secret = field(v, "exporter_secret", &exporter_secret_len);
	CU_ASSERT_FATAL(json_object_object_get_ex(v, "encryptions", &encs));
	CU_ASSERT_FATAL(json_object_object_get_ex(v, "exports_first", &exp));
	exp_ctx = field(exp, "exporter_context", &exp_ctx_len);
	exp_val = field(exp, "exported_value", &exp_val_len);
	CU_ASSERT_FATAL(json_object_object_get_ex(exp, "L", &vlen));
	L = json_object_get_int64(vlen);
	CU_ASSERT_FATAL(L > 0 && (size_t)L == exp_val_len && exp_val_len <= sizeof(g_export));

	/* DeriveKeyPair for both parties. */
	CU_ASSERT_EQUAL(smis_hpke_derive_keypair(ikmE, ikmE_len, sk, pk), 0);
	ASSERT_BYTES(sk, sizeof(sk), skEm, skEm_len);
	ASSERT_BYTES(pk, sizeof(pk), pkEm, pkEm_len);
	CU_ASSERT_EQUAL(smis_hpke_derive_keypair(ikmR, ikmR_len, sk, pk), 0);
	ASSERT_BYTES(sk, sizeof(sk), skRm, skRm_len);
	ASSERT_BYTES(pk, sizeof(pk), pkRm, pkRm_len);

	/* Sender: SetupBaseS with the vector's ephemeral key. */
	CU_ASSERT_EQUAL_FATAL(smis_hpke_setup_base_s((uint16_t)aead_id, pkRm, skEm, info, info_len,
				      got_enc, &sctx), 0);
	ASSERT_BYTES(got_enc, sizeof(got_enc), enc, enc_len);
	CU_ASSERT_EQUAL(smis_hpke_ctx_key_schedule(sctx, g_shared, g_ksc, g_secret, g_key,
				&g_key_len, g_nonce, g_exp_secret), 0);
	ASSERT_BYTES(g_shared, sizeof(g_shared), shared, shared_len);
	ASSERT_BYTES(g_ksc, sizeof(g_ksc), ksc, ksc_len);
	ASSERT_BYTES(g_secret, sizeof(g_secret), secret, secret_len);
	ASSERT_BYTES(g_key, g_key_len, key, key_len);
	ASSERT_BYTES(g_nonce, sizeof(g_nonce), base_nonce, base_nonce_len);
	ASSERT_BYTES(g_exp_secret, sizeof(g_exp_secret), exporter_secret, exporter_secret_len);

	/* Recipient: SetupBaseR must reach the same schedule. */
	CU_ASSERT_EQUAL_FATAL(smis_hpke_setup_base_r((uint16_t)aead_id, skRm, enc, info, info_len,
				      &rctx), 0);
	memset(g_key, 0, sizeof(g_key));
	CU_ASSERT_EQUAL(smis_hpke_ctx_key_schedule(rctx, g_shared, g_ksc, g_secret, g_key,
				&g_key_len, g_nonce, g_exp_secret), 0);
	ASSERT_BYTES(g_shared, sizeof(g_shared), shared, shared_len);
	ASSERT_BYTES(g_key, g_key_len, key, key_len);
	ASSERT_BYTES(g_nonce, sizeof(g_nonce), base_nonce, base_nonce_len);

	/* Both encryptions, in sequence order, on both sides. */
	n_enc = json_object_array_length(encs);
	CU_ASSERT(n_enc >= 2);
	for (i = 0; i < n_enc; i++) {
		json_object *e = json_object_array_get_idx(encs, i);
		unsigned char *pt, *aad, *ct, *out;
		size_t pt_len, aad_len, ct_len;

		CU_ASSERT_EQUAL_FATAL(int_field(e, "seq"), (int64_t)i);
		pt = field(e, "pt", &pt_len);
		aad = field(e, "aad", &aad_len);
		ct = field(e, "ct", &ct_len);
		CU_ASSERT_EQUAL_FATAL(ct_len, pt_len + SMIS_HPKE_NT);
		out = malloc(ct_len);
		CU_ASSERT_PTR_NOT_NULL_FATAL(out);
		CU_ASSERT_EQUAL(smis_hpke_ctx_seal(sctx, aad, aad_len, pt, pt_len, out), 0);
		CU_ASSERT(memcmp(out, ct, ct_len) == 0);

		/* A damaged tag fails and must not consume the sequence number. */
		ct[ct_len - 1] ^= 0x01;
		CU_ASSERT_EQUAL(smis_hpke_ctx_open(rctx, aad, aad_len, ct, ct_len, out), -EBADMSG);
		ct[ct_len - 1] ^= 0x01;
		memset(out, 0, ct_len);
		CU_ASSERT_EQUAL(smis_hpke_ctx_open(rctx, aad, aad_len, ct, ct_len, out), 0);
		CU_ASSERT(memcmp(out, pt, pt_len) == 0);

		/* The single-shot API is sequence number 0. */
		if (i == 0) {
			unsigned char one_enc[32];

			CU_ASSERT_EQUAL(smis_hpke_seal_with_ephemeral((uint16_t)aead_id, skEm, pkRm,
						info, info_len, aad, aad_len, pt, pt_len, one_enc, out), 0);
			CU_ASSERT(memcmp(one_enc, enc, 32) == 0);
			CU_ASSERT(memcmp(out, ct, ct_len) == 0);
			memset(out, 0, ct_len);
			CU_ASSERT_EQUAL(smis_hpke_open((uint16_t)aead_id, skRm, enc, info, info_len,
						aad, aad_len, ct, ct_len, out), 0);
			CU_ASSERT(memcmp(out, pt, pt_len) == 0);
			/* Wrong aad and wrong info both fail. */
			CU_ASSERT_EQUAL(smis_hpke_open((uint16_t)aead_id, skRm, enc, info, info_len,
						aad, aad_len - 1, ct, ct_len, out), -EBADMSG);
			CU_ASSERT_EQUAL(smis_hpke_open((uint16_t)aead_id, skRm, enc, info,
						info_len - 1, aad, aad_len, ct, ct_len, out), -EBADMSG);
		} else {
			/* ...so a later ciphertext does not open single-shot. */
			CU_ASSERT_EQUAL(smis_hpke_open((uint16_t)aead_id, skRm, enc, info, info_len,
						aad, aad_len, ct, ct_len, out), -EBADMSG);
		}
		free(out);
		free(pt);
		free(aad);
		free(ct);
	}

	/* Exporter, both sides. */
	memset(g_export, 0, sizeof(g_export));
	CU_ASSERT_EQUAL(smis_hpke_ctx_export(sctx, exp_ctx, exp_ctx_len, (size_t)L, g_export), 0);
	ASSERT_BYTES(g_export, (size_t)L, exp_val, exp_val_len);
	memset(g_export, 0, sizeof(g_export));
	CU_ASSERT_EQUAL(smis_hpke_ctx_export(rctx, exp_ctx, exp_ctx_len, (size_t)L, g_export), 0);
	ASSERT_BYTES(g_export, (size_t)L, exp_val, exp_val_len);

	smis_hpke_ctx_free(sctx);
	smis_hpke_ctx_free(rctx);
	free(info);
	free(ikmE);
	free(ikmR);
	free(skEm);
	free(skRm);
	free(pkEm);
	free(pkRm);
	free(enc);
	free(shared);
	free(ksc);
	free(secret);
	free(key);
	free(base_nonce);
	free(exporter_secret);
	free(exp_ctx);
	free(exp_val);
}

static void test_vector_aes128gcm(void)
{
	check_vector(SMIS_HPKE_AEAD_AES128GCM);
}

static void test_vector_aes256gcm(void)
{
	check_vector(SMIS_HPKE_AEAD_AES256GCM);
}

static void test_vector_chacha20poly1305(void)
{
	check_vector(SMIS_HPKE_AEAD_CHACHA20POLY1305);
}

/* Headline values from RFC 9180 A.1.1, so a swapped vectors file is noticed. */
static void test_vector_file_is_rfc9180(void)
{
	static const unsigned char want_key[16] = {0x45, 0x31, 0x68, 0x5d, 0x41, 0xd6, 0x5f, 0x03,
		0xdc, 0x48, 0xf6, 0xb8, 0x30, 0x2c, 0x05, 0xb0};
	json_object *v = find_vector(1);
	unsigned char *key;
	size_t key_len;

	CU_ASSERT_PTR_NOT_NULL_FATAL(v);
	key = field(v, "key", &key_len);
	ASSERT_BYTES(key, key_len, want_key, sizeof(want_key));
	free(key);
}

/*
 * Encodings of small-order points (RFC 7748 / libsodium blacklist): 0, 1,
 * the two points of order 8, p-1, p, p+1, and 0 and 1 with the ignored top
 * bit set.
 */
static const unsigned char small_order[][32] = {
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
	{[31] = 0x80},
	{1, [31] = 0x80},
};

static void test_small_order_keys_rejected(void)
{
	unsigned char sk[32], pk[32], enc[32], ct[16 + 3], pt[3] = {1, 2, 3};
	size_t i;

	CU_ASSERT_EQUAL_FATAL(smis_hpke_keygen(sk, pk), 0);
	CU_ASSERT_EQUAL(smis_hpke_check_public_key(pk), 0);
	for (i = 0; i < sizeof(small_order) / sizeof(small_order[0]); i++) {
		CU_ASSERT_EQUAL(smis_hpke_check_public_key(small_order[i]), -EINVAL);
		/* The sender refuses them as recipient keys... */
		memset(enc, 0xaa, sizeof(enc));
		CU_ASSERT_EQUAL(smis_hpke_seal(SMIS_HPKE_AEAD_AES128GCM, small_order[i], NULL, 0,
					NULL, 0, pt, sizeof(pt), enc, ct), -EINVAL);
		CU_ASSERT_EQUAL(enc[0], 0xaa); /* nothing written on failure */
		/* ...and the recipient refuses them as enc. */
		memset(ct, 0, sizeof(ct));
		CU_ASSERT_EQUAL(smis_hpke_open(SMIS_HPKE_AEAD_AES128GCM, sk, small_order[i], NULL, 0,
					NULL, 0, ct, sizeof(ct), pt), -EBADMSG);
	}
}

/* The check compares against a list; OpenSSL's X25519 is the oracle: every
 * listed encoding with the ignored top bit set is refused like the bare one
 * (the seal's Diffie-Hellman gives zero), and random byte strings, which are
 * almost all usable points of the curve or its twist, pass the check exactly
 * when a seal to them works. */
static void test_key_check_agrees_with_x25519(void)
{
	unsigned char pk[32], enc[32], ct[16 + 3], pt[3] = {1, 2, 3};
	size_t i;

	for (i = 0; i < sizeof(small_order) / sizeof(small_order[0]); i++) {
		memcpy(pk, small_order[i], sizeof(pk));
		pk[31] ^= 0x80;
		CU_ASSERT_EQUAL(smis_hpke_check_public_key(pk), -EINVAL);
		CU_ASSERT_EQUAL(smis_hpke_seal(SMIS_HPKE_AEAD_AES128GCM, pk, NULL, 0, NULL, 0, pt,
					sizeof(pt), enc, ct), -EINVAL);
	}
	for (i = 0; i < 300; i++) {
		int checked, sealed;
		CU_ASSERT_EQUAL_FATAL(RAND_bytes(pk, sizeof(pk)), 1);
		checked = smis_hpke_check_public_key(pk);
		sealed = smis_hpke_seal(SMIS_HPKE_AEAD_AES128GCM, pk, NULL, 0, NULL, 0, pt, sizeof(pt),
					enc, ct);
		CU_ASSERT_EQUAL(checked, 0);
		CU_ASSERT_EQUAL(sealed, 0);
	}
	CU_ASSERT_EQUAL(smis_hpke_check_public_key(NULL), -EINVAL);
}

static void test_roundtrip_random_keys(void)
{
	static const uint16_t aeads[] = {SMIS_HPKE_AEAD_AES128GCM, SMIS_HPKE_AEAD_AES256GCM,
		SMIS_HPKE_AEAD_CHACHA20POLY1305};
	static const unsigned char msg[] = "Beauty is truth, truth beauty";
	unsigned char sk[32], pk[32], sk2[32], pk2[32], pk_again[32], enc[32], enc2[32];
	unsigned char ct[sizeof(msg) + 16], ct2[sizeof(msg) + 16], out[sizeof(msg)];
	size_t i;

	CU_ASSERT_EQUAL_FATAL(smis_hpke_keygen(sk, pk), 0);
	CU_ASSERT_EQUAL_FATAL(smis_hpke_keygen(sk2, pk2), 0);
	CU_ASSERT(memcmp(sk, sk2, 32) != 0);
	CU_ASSERT_EQUAL(smis_hpke_public_key(sk, pk_again), 0);
	CU_ASSERT(memcmp(pk, pk_again, 32) == 0);
	for (i = 0; i < sizeof(aeads) / sizeof(aeads[0]); i++) {
		CU_ASSERT_EQUAL(smis_hpke_seal(aeads[i], pk, no_bytes, 0, no_bytes, 0, msg,
					sizeof(msg), enc, ct), 0);
		/* A fresh ephemeral key each time: same input, different output. */
		CU_ASSERT_EQUAL(smis_hpke_seal(aeads[i], pk, NULL, 0, NULL, 0, msg, sizeof(msg),
					enc2, ct2), 0);
		CU_ASSERT(memcmp(enc, enc2, 32) != 0);
		CU_ASSERT(memcmp(ct, ct2, sizeof(ct)) != 0);
		memset(out, 0, sizeof(out));
		CU_ASSERT_EQUAL(smis_hpke_open(aeads[i], sk, enc, NULL, 0, NULL, 0, ct, sizeof(ct),
					out), 0);
		CU_ASSERT(memcmp(out, msg, sizeof(msg)) == 0);
		/* The wrong private key does not open, and leaves no plaintext. */
		CU_ASSERT_EQUAL(smis_hpke_open(aeads[i], sk2, enc, NULL, 0, NULL, 0, ct, sizeof(ct),
					out), -EBADMSG);
		CU_ASSERT(memcmp(out, msg, sizeof(msg)) != 0);
		/* Opening under another AEAD id fails too. */
		CU_ASSERT_EQUAL(smis_hpke_open(aeads[(i + 1) % 3], sk, enc, NULL, 0, NULL, 0, ct,
					sizeof(ct), out), -EBADMSG);
	}
	/* Empty plaintext: ciphertext is the tag alone. */
	CU_ASSERT_EQUAL(smis_hpke_seal(SMIS_HPKE_AEAD_AES128GCM, pk, NULL, 0, NULL, 0, NULL, 0, enc,
				ct), 0);
	CU_ASSERT_EQUAL(smis_hpke_open(SMIS_HPKE_AEAD_AES128GCM, sk, enc, NULL, 0, NULL, 0, ct, 16,
				NULL), 0);
	ct[0] ^= 0x80;
	CU_ASSERT_EQUAL(smis_hpke_open(SMIS_HPKE_AEAD_AES128GCM, sk, enc, NULL, 0, NULL, 0, ct, 16,
				NULL), -EBADMSG);
}

static void test_bad_arguments(void)
{
	unsigned char sk[32], pk[32], enc[32], ct[32], pt[16] = {0}, out[64];
	unsigned char big[SMIS_HPKE_MAX_EXPORTER_CONTEXT + 1] = {0};
	struct smis_hpke_ctx *ctx = NULL;

	CU_ASSERT_EQUAL_FATAL(smis_hpke_keygen(sk, pk), 0);
	CU_ASSERT_EQUAL(smis_hpke_seal(0x0004, pk, NULL, 0, NULL, 0, pt, sizeof(pt), enc, ct),
		-EINVAL);
	CU_ASSERT_EQUAL(smis_hpke_seal(0xffff, pk, NULL, 0, NULL, 0, pt, sizeof(pt), enc, ct),
		-EINVAL);
	CU_ASSERT_EQUAL(smis_hpke_seal(SMIS_HPKE_AEAD_AES128GCM, NULL, NULL, 0, NULL, 0, pt,
				sizeof(pt), enc, ct), -EINVAL);
	CU_ASSERT_EQUAL(smis_hpke_seal(SMIS_HPKE_AEAD_AES128GCM, pk, NULL, 3, NULL, 0, pt,
				sizeof(pt), enc, ct), -EINVAL);
	CU_ASSERT_EQUAL(smis_hpke_seal(SMIS_HPKE_AEAD_AES128GCM, pk, NULL, 0, NULL, 0, NULL, 1, enc,
				ct), -EINVAL);
	/* A ciphertext shorter than a tag is malformed, not merely inauthentic. */
	CU_ASSERT_EQUAL(smis_hpke_open(SMIS_HPKE_AEAD_AES128GCM, sk, pk, NULL, 0, NULL, 0, ct, 15,
				out), -EINVAL);
	CU_ASSERT_EQUAL(smis_hpke_derive_keypair(pt, 16, sk, pk), -EINVAL);
	CU_ASSERT_EQUAL(smis_hpke_keygen(NULL, pk), -EINVAL);

	CU_ASSERT_EQUAL_FATAL(smis_hpke_setup_base_s(SMIS_HPKE_AEAD_AES128GCM, pk, NULL, NULL, 0,
				      enc, &ctx), 0);
	CU_ASSERT_EQUAL(smis_hpke_ctx_export(ctx, big, sizeof(big), 32, out), -EINVAL);
	CU_ASSERT_EQUAL(smis_hpke_ctx_export(ctx, big, sizeof(big) - 1, 32, out), 0);
	CU_ASSERT_EQUAL(smis_hpke_ctx_export(ctx, NULL, 0, 0, out), -EINVAL);
	CU_ASSERT_EQUAL(smis_hpke_ctx_export(ctx, NULL, 0, 255 * 32 + 1, out), -EINVAL);
	smis_hpke_ctx_free(ctx);
	smis_hpke_ctx_free(NULL);
}

/* 5.2: the last sequence number is usable once, then the context refuses. */
static void test_sequence_overflow(void)
{
	unsigned char sk[32], pk[32], enc[32], ct[4 + 16], pt[4] = {9, 8, 7, 6}, out[4];
	struct smis_hpke_ctx *s = NULL, *r = NULL;

	CU_ASSERT_EQUAL_FATAL(smis_hpke_keygen(sk, pk), 0);
	CU_ASSERT_EQUAL_FATAL(smis_hpke_setup_base_s(SMIS_HPKE_AEAD_CHACHA20POLY1305, pk, NULL,
				      NULL, 0, enc, &s), 0);
	CU_ASSERT_EQUAL_FATAL(smis_hpke_setup_base_r(SMIS_HPKE_AEAD_CHACHA20POLY1305, sk, enc, NULL,
				      0, &r), 0);
	smis_hpke_ctx_set_seq(s, UINT64_MAX - 1);
	smis_hpke_ctx_set_seq(r, UINT64_MAX - 1);
	CU_ASSERT_EQUAL(smis_hpke_ctx_seal(s, NULL, 0, pt, sizeof(pt), ct), 0);
	CU_ASSERT_EQUAL(smis_hpke_ctx_open(r, NULL, 0, ct, sizeof(ct), out), 0);
	CU_ASSERT(memcmp(out, pt, sizeof(pt)) == 0);
	CU_ASSERT_EQUAL(smis_hpke_ctx_seal(s, NULL, 0, pt, sizeof(pt), ct), -EOVERFLOW);
	CU_ASSERT_EQUAL(smis_hpke_ctx_open(r, NULL, 0, ct, sizeof(ct), out), -EOVERFLOW);
	smis_hpke_ctx_free(s);
	smis_hpke_ctx_free(r);
}

int main(void)
{
	CU_pSuite suite;
	unsigned int failures;
	int rc = 1;

	if (CU_initialize_registry() != CUE_SUCCESS)
		return 1;
	suite = CU_add_suite("hpke_rfc9180_vectors", suite_vectors_init, suite_vectors_clean);
	if (suite == NULL
		|| !CU_add_test(suite, "vectors file is the RFC 9180 one", test_vector_file_is_rfc9180)
		|| !CU_add_test(suite, "aead 1 AES-128-GCM", test_vector_aes128gcm)
		|| !CU_add_test(suite, "aead 2 AES-256-GCM", test_vector_aes256gcm)
		|| !CU_add_test(suite, "aead 3 ChaCha20-Poly1305", test_vector_chacha20poly1305))
		goto out;
	suite = CU_add_suite("hpke_edges", NULL, NULL);
	if (suite == NULL
		|| !CU_add_test(suite, "small-order keys rejected", test_small_order_keys_rejected)
		|| !CU_add_test(suite, "key check agrees with X25519", test_key_check_agrees_with_x25519)
		|| !CU_add_test(suite, "round trip with random keys", test_roundtrip_random_keys)
		|| !CU_add_test(suite, "bad arguments", test_bad_arguments)
		|| !CU_add_test(suite, "sequence overflow", test_sequence_overflow))
		goto out;
	CU_basic_set_mode(CU_BRM_VERBOSE);
	CU_basic_run_tests();
	failures = CU_get_number_of_failures() + CU_get_number_of_suites_failed()
		+ CU_get_number_of_tests_failed();
	rc = failures == 0 && CU_get_number_of_tests_run() > 0 ? 0 : 1;
out:
	CU_cleanup_registry();
	return rc;
}
