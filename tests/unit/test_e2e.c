/*
 * Unit tests for the GovApp envelope (lib/e2e.c) and its base64url helper
 * (lib/b64url.c): RFC 4648 vectors and strictness, envelope round trips,
 * every way an envelope must fail to open (tampering, wrong key, wrong
 * ids), refused recipient keys, and the worked example printed in
 * docs/e2e-format.md so that the document cannot drift from the code.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <CUnit/Basic.h>
#include <openssl/rand.h>

#include "b64url.h"
#include "e2e.h"
#include "hpke.h"

/* ---- base64url ---------------------------------------------------------- */

static void test_b64url_rfc4648_vectors(void)
{
	static const struct {
		const char *raw, *enc;
	} v[] = {
		{"", ""}, {"f", "Zg"}, {"fo", "Zm8"}, {"foo", "Zm9v"}, {"foob", "Zm9vYg"},
		{"fooba", "Zm9vYmE"}, {"foobar", "Zm9vYmFy"},
	};
	size_t i;

	for (i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		char *s = NULL;
		unsigned char *d = NULL;
		size_t n = 99;

		CU_ASSERT_EQUAL(smis_b64url_encode((const unsigned char *)v[i].raw, strlen(v[i].raw),
					&s), 0);
		CU_ASSERT_PTR_NOT_NULL_FATAL(s);
		CU_ASSERT_STRING_EQUAL(s, v[i].enc);
		CU_ASSERT_EQUAL(strlen(s), SMIS_B64URL_ENCODED_LEN(strlen(v[i].raw)));
		CU_ASSERT_EQUAL(smis_b64url_decode(v[i].enc, strlen(v[i].enc), &d, &n), 0);
		CU_ASSERT_PTR_NOT_NULL_FATAL(d);
		CU_ASSERT_EQUAL(n, strlen(v[i].raw));
		CU_ASSERT(memcmp(d, v[i].raw, n) == 0);
		CU_ASSERT_EQUAL(d[n], '\0');
		free(s);
		free(d);
	}
}

/* The two characters that differ from standard base64. */
static void test_b64url_alphabet(void)
{
	static const unsigned char raw[] = {0xfb, 0xff, 0xbf};
	unsigned char out[3];
	char *s = NULL;

	CU_ASSERT_EQUAL(smis_b64url_encode(raw, sizeof(raw), &s), 0);
	CU_ASSERT_STRING_EQUAL(s, "-_-_");
	CU_ASSERT_EQUAL(smis_b64url_decode_fixed("-_-_", out, sizeof(out)), 0);
	CU_ASSERT(memcmp(out, raw, sizeof(raw)) == 0);
	CU_ASSERT_EQUAL(smis_b64url_decode_fixed("+/+/", out, sizeof(out)), -EINVAL);
	free(s);
}

static void test_b64url_strict_decode(void)
{
	static const char *const bad[] = {
		"Zg==",	    /* padding */
		"Zg=",	    /* padding */
		"Zm9v=",    /* padding after a full group */
		"Z",	    /* 1 mod 4 */
		"Zm9vY",    /* 1 mod 4 */
		"Zh",	    /* non-zero unused bits */
		"Zm9",	    /* non-zero unused bits */
		"Zm+v",	    /* standard-base64 character */
		"Zm/v",	    /* standard-base64 character */
		" Zm9v",    /* whitespace */
		"Zm9v\n",   /* whitespace */
		"Zm\x80v",  /* non-ASCII */
	};
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		unsigned char *d = (unsigned char *)"x";
		size_t n = 7;

		CU_ASSERT_EQUAL(smis_b64url_decode(bad[i], strlen(bad[i]), &d, &n), -EINVAL);
		CU_ASSERT_PTR_NULL(d);
		CU_ASSERT_EQUAL(n, 0);
	}
	/* An embedded NUL inside the given length is not a character either. */
	{
		unsigned char *d = NULL;
		size_t n = 0;

		CU_ASSERT_EQUAL(smis_b64url_decode("Zm\0v", 4, &d, &n), -EINVAL);
	}
}

static void test_b64url_fixed(void)
{
	unsigned char out[4] = {1, 2, 3, 4};

	CU_ASSERT_EQUAL(smis_b64url_decode_fixed("Zm9vYg", out, 4), 0);
	CU_ASSERT(memcmp(out, "foob", 4) == 0);
	CU_ASSERT_EQUAL(smis_b64url_decode_fixed("Zm9vYmE", out, 4), -EINVAL); /* 5 bytes */
	CU_ASSERT_EQUAL(smis_b64url_decode_fixed("Zm9v", out, 4), -EINVAL);	/* 3 bytes */
	CU_ASSERT_EQUAL(smis_b64url_decode_fixed("Zm9vYmFyYmF6YmF6", out, 4), -EINVAL);
	CU_ASSERT_EQUAL(smis_b64url_decode_fixed("", out, 4), -EINVAL);
	CU_ASSERT_EQUAL(smis_b64url_decode_fixed(NULL, out, 4), -EINVAL);
	/* A failed decode leaves no partial key behind. */
	CU_ASSERT_EQUAL(smis_b64url_decode_fixed("Zm9v!g", out, 4), -EINVAL);
	CU_ASSERT(memcmp(out, "\0\0\0\0", 4) == 0);
}

static void test_b64url_roundtrip_random(void)
{
	unsigned char raw[100];
	size_t len;

	CU_ASSERT_EQUAL_FATAL(RAND_bytes(raw, sizeof(raw)), 1);
	for (len = 0; len <= sizeof(raw); len++) {
		char *s = NULL;
		unsigned char *d = NULL;
		size_t n = 0;

		CU_ASSERT_EQUAL_FATAL(smis_b64url_encode(raw, len, &s), 0);
		CU_ASSERT_EQUAL(strlen(s), SMIS_B64URL_ENCODED_LEN(len));
		CU_ASSERT(strpbrk(s, "+/=") == NULL);
		CU_ASSERT_EQUAL_FATAL(smis_b64url_decode(s, strlen(s), &d, &n), 0);
		CU_ASSERT_EQUAL(n, len);
		CU_ASSERT(len == 0 || memcmp(d, raw, len) == 0);
		free(s);
		free(d);
	}
}

/* ---- envelope ------------------------------------------------------------ */

#define MID "msg_01HZY3K8Q9V7T2M4N6P8R0S2T4"
#define DID "dev_0a1b2c3d4e5f"
static const char body[] = "{\"v\":1,\"message_id\":\"" MID "\",\"content\":{\"nl\":{\"title\":"
			   "\"Test\",\"body\":\"Hallo\",\"body_text\":\"Hallo\",\"format\":\"text\"}}}";

/* A fresh device: private key raw, public key base64url (caller frees). */
static char *new_device(unsigned char sk[32])
{
	char *sk_s = NULL, *pk_s = NULL;

	CU_ASSERT_EQUAL_FATAL(smis_e2e_keygen_b64url(&sk_s, &pk_s), 0);
	CU_ASSERT_EQUAL(strlen(sk_s), SMIS_E2E_KEY_B64URL_LEN);
	CU_ASSERT_EQUAL(strlen(pk_s), SMIS_E2E_KEY_B64URL_LEN);
	CU_ASSERT_EQUAL(smis_b64url_decode_fixed(sk_s, sk, 32), 0);
	free(sk_s);
	return pk_s;
}

static void test_e2e_roundtrip(void)
{
	unsigned char sk[32], pk_raw[32], pk_from_sk[32], *pt = NULL;
	char *pk = new_device(sk), *enc = NULL, *ct = NULL, *enc2 = NULL, *ct2 = NULL;
	size_t pt_len = 0;

	/* The key pair belongs together. */
	CU_ASSERT_EQUAL(smis_e2e_check_public_key(pk), 0);
	CU_ASSERT_EQUAL(smis_b64url_decode_fixed(pk, pk_raw, 32), 0);
	CU_ASSERT_EQUAL(smis_hpke_public_key(sk, pk_from_sk), 0);
	CU_ASSERT(memcmp(pk_raw, pk_from_sk, 32) == 0);

	CU_ASSERT_EQUAL_FATAL(smis_e2e_seal(MID, DID, pk, (const unsigned char *)body,
				      strlen(body), &enc, &ct), 0);
	CU_ASSERT_EQUAL(strlen(enc), SMIS_E2E_KEY_B64URL_LEN);
	CU_ASSERT_EQUAL(strlen(ct), SMIS_B64URL_ENCODED_LEN(strlen(body) + 16));
	CU_ASSERT_EQUAL_FATAL(smis_e2e_open(MID, DID, sk, enc, ct, &pt, &pt_len), 0);
	CU_ASSERT_EQUAL(pt_len, strlen(body));
	CU_ASSERT_STRING_EQUAL((char *)pt, body); /* also checks the trailing NUL */
	free(pt);

	/* Sealing the same thing twice gives unrelated envelopes. */
	CU_ASSERT_EQUAL_FATAL(smis_e2e_seal(MID, DID, pk, (const unsigned char *)body,
				      strlen(body), &enc2, &ct2), 0);
	CU_ASSERT_STRING_NOT_EQUAL(enc, enc2);
	CU_ASSERT_STRING_NOT_EQUAL(ct, ct2);
	free(enc2);
	free(ct2);
	free(enc);
	free(ct);
	enc = ct = NULL;

	/* An empty body is legal: the ciphertext is the tag alone. */
	CU_ASSERT_EQUAL_FATAL(smis_e2e_seal(MID, DID, pk, NULL, 0, &enc, &ct), 0);
	CU_ASSERT_EQUAL(strlen(ct), SMIS_B64URL_ENCODED_LEN(16));
	CU_ASSERT_EQUAL(smis_e2e_open(MID, DID, sk, enc, ct, &pt, &pt_len), 0);
	CU_ASSERT_EQUAL(pt_len, 0);
	CU_ASSERT_PTR_NOT_NULL(pt);
	free(pt);
	free(enc);
	free(ct);
	free(pk);
}

/* Flip one bit of the decoded field, return it re-encoded (caller frees). */
static char *flip_bit(const char *b64, size_t bit)
{
	unsigned char *raw = NULL;
	size_t n = 0;
	char *s = NULL;

	CU_ASSERT_EQUAL_FATAL(smis_b64url_decode(b64, strlen(b64), &raw, &n), 0);
	CU_ASSERT_FATAL(bit / 8 < n);
	raw[bit / 8] ^= (unsigned char)(1u << (bit % 8));
	CU_ASSERT_EQUAL_FATAL(smis_b64url_encode(raw, n, &s), 0);
	free(raw);
	return s;
}

static void test_e2e_tampering_rejected(void)
{
	unsigned char sk[32], *pt = (unsigned char *)"x";
	char *pk = new_device(sk), *enc = NULL, *ct = NULL;
	size_t pt_len = 5, ct_bits, i;
	/* First bit, a body bit, the last body bit, inside the tag, the last bit. */
	size_t ct_flips[5];
	/* Low, middle, and bit 255 which X25519 itself ignores (enc is hashed). */
	static const size_t enc_flips[] = {0, 129, 255};

	CU_ASSERT_EQUAL_FATAL(smis_e2e_seal(MID, DID, pk, (const unsigned char *)body,
				      strlen(body), &enc, &ct), 0);
	ct_bits = (strlen(body) + 16) * 8;
	ct_flips[0] = 0;
	ct_flips[1] = 77;
	ct_flips[2] = strlen(body) * 8 - 1;
	ct_flips[3] = strlen(body) * 8 + 40;
	ct_flips[4] = ct_bits - 1;
	for (i = 0; i < sizeof(ct_flips) / sizeof(ct_flips[0]); i++) {
		char *bad = flip_bit(ct, ct_flips[i]);

		CU_ASSERT_EQUAL(smis_e2e_open(MID, DID, sk, enc, bad, &pt, &pt_len), -EBADMSG);
		CU_ASSERT_PTR_NULL(pt);
		CU_ASSERT_EQUAL(pt_len, 0);
		free(bad);
	}
	for (i = 0; i < sizeof(enc_flips) / sizeof(enc_flips[0]); i++) {
		char *bad = flip_bit(enc, enc_flips[i]);

		CU_ASSERT_EQUAL(smis_e2e_open(MID, DID, sk, bad, ct, &pt, &pt_len), -EBADMSG);
		CU_ASSERT_PTR_NULL(pt);
		free(bad);
	}
	/* Truncated ciphertexts: one byte short fails authentication... */
	{
		unsigned char *raw = NULL;
		size_t n = 0;
		char *s = NULL;

		CU_ASSERT_EQUAL_FATAL(smis_b64url_decode(ct, strlen(ct), &raw, &n), 0);
		CU_ASSERT_EQUAL_FATAL(smis_b64url_encode(raw, n - 1, &s), 0);
		CU_ASSERT_EQUAL(smis_e2e_open(MID, DID, sk, enc, s, &pt, &pt_len), -EBADMSG);
		free(s);
		/* ...and shorter than a tag is malformed. */
		CU_ASSERT_EQUAL_FATAL(smis_b64url_encode(raw, 15, &s), 0);
		CU_ASSERT_EQUAL(smis_e2e_open(MID, DID, sk, enc, s, &pt, &pt_len), -EINVAL);
		free(s);
		free(raw);
	}
	/* The untouched envelope still opens: the failures above were real. */
	CU_ASSERT_EQUAL(smis_e2e_open(MID, DID, sk, enc, ct, &pt, &pt_len), 0);
	free(pt);
	free(enc);
	free(ct);
	free(pk);
}

static void test_e2e_wrong_key_or_ids(void)
{
	unsigned char sk[32], sk_other[32], *pt = NULL;
	char *pk = new_device(sk), *pk_other = new_device(sk_other), *enc = NULL, *ct = NULL;
	size_t pt_len = 0;

	CU_ASSERT_EQUAL_FATAL(smis_e2e_seal("ab", "cd", pk, (const unsigned char *)body,
				      strlen(body), &enc, &ct), 0);
	CU_ASSERT_EQUAL(smis_e2e_open("ab", "cd", sk, enc, ct, &pt, &pt_len), 0);
	free(pt);
	pt = NULL;
	/* Another device's key. */
	CU_ASSERT_EQUAL(smis_e2e_open("ab", "cd", sk_other, enc, ct, &pt, &pt_len), -EBADMSG);
	/* Another device id or message id. */
	CU_ASSERT_EQUAL(smis_e2e_open("ab", "ce", sk, enc, ct, &pt, &pt_len), -EBADMSG);
	CU_ASSERT_EQUAL(smis_e2e_open("ac", "cd", sk, enc, ct, &pt, &pt_len), -EBADMSG);
	/* The two ids swapped. */
	CU_ASSERT_EQUAL(smis_e2e_open("cd", "ab", sk, enc, ct, &pt, &pt_len), -EBADMSG);
	/* The separator keeps "ab"|"cd" apart from "abc"|"d" and "a"|"bcd". */
	CU_ASSERT_EQUAL(smis_e2e_open("abc", "d", sk, enc, ct, &pt, &pt_len), -EBADMSG);
	CU_ASSERT_EQUAL(smis_e2e_open("a", "bcd", sk, enc, ct, &pt, &pt_len), -EBADMSG);
	CU_ASSERT_PTR_NULL(pt);
	free(enc);
	free(ct);
	free(pk);
	free(pk_other);
}

static void test_e2e_bad_public_keys(void)
{
	static const char *const bad[] = {
		"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",	 /* all zeros */
		"AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",	 /* u = 1, small order */
		"4Ot6fDtBuK4WVuP68Z_EatoJjeucMrH9hmIFFl9JuAA",	 /* order-8 point */
		"7P_______________________________________38",	 /* p - 1, small order */
		"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAIA",	 /* 0 with bit 255 */
		"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",	 /* 31 bytes */
		"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", /* 34 bytes */
		"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",	 /* padded */
		"FzQ4CqkmxtTCG+xcVbRqY0G/EvcvD1WmwNj/NrpCcn8",	 /* standard base64 */
		"FzQ4CqkmxtTCG-xcVbRqY0G_EvcvD1WmwNj_NrpCcn9",	 /* unused bits set */
		"",
	};
	unsigned char sk[32];
	char *good = new_device(sk);
	size_t i;

	CU_ASSERT_EQUAL(smis_e2e_check_public_key(good), 0);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char *enc = (char *)"x", *ct = (char *)"y";

		CU_ASSERT_EQUAL(smis_e2e_check_public_key(bad[i]), -EINVAL);
		CU_ASSERT_EQUAL(smis_e2e_seal(MID, DID, bad[i], (const unsigned char *)body,
					strlen(body), &enc, &ct), -EINVAL);
		CU_ASSERT_PTR_NULL(enc);
		CU_ASSERT_PTR_NULL(ct);
	}
	CU_ASSERT_EQUAL(smis_e2e_check_public_key(NULL), -EINVAL);
	free(good);
}

static void test_e2e_bad_arguments(void)
{
	char long_id[SMIS_E2E_MAX_ID_LEN + 2], *enc = NULL, *ct = NULL;
	unsigned char sk[32], *pt = NULL;
	char *pk = new_device(sk);
	size_t pt_len = 0;

	memset(long_id, 'x', sizeof(long_id) - 1);
	long_id[sizeof(long_id) - 1] = '\0';
	CU_ASSERT_EQUAL(smis_e2e_seal(NULL, DID, pk, (const unsigned char *)"a", 1, &enc, &ct),
		-EINVAL);
	CU_ASSERT_EQUAL(smis_e2e_seal(MID, "", pk, (const unsigned char *)"a", 1, &enc, &ct),
		-EINVAL);
	CU_ASSERT_EQUAL(smis_e2e_seal(MID, long_id, pk, (const unsigned char *)"a", 1, &enc, &ct),
		-EINVAL);
	CU_ASSERT_EQUAL(smis_e2e_seal(MID, DID, pk, NULL, 1, &enc, &ct), -EINVAL);
	CU_ASSERT_EQUAL(smis_e2e_seal(MID, DID, pk, (const unsigned char *)"a",
				SMIS_E2E_MAX_PT_LEN + 1, &enc, &ct), -EINVAL);
	CU_ASSERT_PTR_NULL(enc);
	CU_ASSERT_PTR_NULL(ct);
	/* The longest id is accepted. */
	long_id[SMIS_E2E_MAX_ID_LEN] = '\0';
	CU_ASSERT_EQUAL_FATAL(smis_e2e_seal(long_id, long_id, pk, (const unsigned char *)"a", 1,
				      &enc, &ct), 0);
	CU_ASSERT_EQUAL(smis_e2e_open(long_id, long_id, sk, enc, ct, &pt, &pt_len), 0);
	free(pt);
	pt = NULL;
	/* Malformed enc / ct text. */
	CU_ASSERT_EQUAL(smis_e2e_open(long_id, long_id, sk, "AAAA", ct, &pt, &pt_len), -EINVAL);
	CU_ASSERT_EQUAL(smis_e2e_open(long_id, long_id, sk, enc, "!!!!", &pt, &pt_len), -EINVAL);
	CU_ASSERT_EQUAL(smis_e2e_open(long_id, long_id, sk, NULL, ct, &pt, &pt_len), -EINVAL);
	CU_ASSERT_EQUAL(smis_e2e_open(long_id, long_id, NULL, enc, ct, &pt, &pt_len), -EINVAL);
	CU_ASSERT_EQUAL(smis_e2e_open("", long_id, sk, enc, ct, &pt, &pt_len), -EINVAL);
	CU_ASSERT_PTR_NULL(pt);
	free(enc);
	free(ct);
	free(pk);
}

/* ---- worked example of docs/e2e-format.md ------------------------------- */

#define EX_MID "msg_01J2Z8Q4XK7M3N5P9R2T6V8W0Y"
#define EX_DID "dev_3f9a2c7e5b1d4086"
#define EX_SK "n4eopmmDJ8O5KdVS1uN1nx66m6nsCjMWX4uxgB53euE"
#define EX_PK "FzQ4CqkmxtTCG-xcVbRqY0G_EvcvD1WmwNj_NrpCcn8"
#define EX_ENC "6JCVKV4RV6a-8-vfsinxmmFiT1C_an5m0YC9C5Z4njk"
#define EX_CT \
	"fpEeBmiSvX9iGhTy6Ea857cznqMzqjzgoIevqUqMzbF41Upztw59lVyT3I5QwIGqcQnFydlOx_RYnisKoX2cNI-W" \
	"shotDCMwPdJCV7PtHUZh0bJZ1HHQbzVYHh-3wv3jnaPhnQzqW7h7OmqOjp_eEqaC3j9ezU6h-InwzhvWpmbnMnDJ" \
	"GMaL5ghdHoth5-LiECpo46bGMJCQ5H0UsJ1hT4PAHxxk9VyI55The3gJb74ri8K0wMHnpfL9KXW5kr84CuikwQMn" \
	"iGDPNWUWzAjN9ZIxNiJ-77E"
#define EX_PT \
	"{\"v\":1,\"message_id\":\"msg_01J2Z8Q4XK7M3N5P9R2T6V8W0Y\",\"content\":{\"fr\":{\"title\":" \
	"\"Rendez-vous confirm\xc3\xa9\",\"body\":\"<p>Le <b>12 juin</b> \xc3\xa0 10:00.</p>\"," \
	"\"body_text\":\"Le 12 juin \xc3\xa0 10:00.\",\"format\":\"html\"}}}"
/* The document's example keys come from DeriveKeyPair on these ASCII strings. */
#define EX_IKM_R "SMIS GovApp e2e worked example R"
#define EX_IKM_E "SMIS GovApp e2e worked example E"
/* info as the document spells it out, in hex. */
static const unsigned char ex_info[] = "smis-govapp-e2e-v1\0" EX_MID "\0" EX_DID;

static void test_e2e_worked_example_opens(void)
{
	unsigned char sk[32], *pt = NULL;
	size_t pt_len = 0;

	CU_ASSERT_EQUAL_FATAL(smis_b64url_decode_fixed(EX_SK, sk, 32), 0);
	CU_ASSERT_EQUAL_FATAL(smis_e2e_open(EX_MID, EX_DID, sk, EX_ENC, EX_CT, &pt, &pt_len), 0);
	CU_ASSERT_EQUAL(pt_len, strlen(EX_PT));
	CU_ASSERT_STRING_EQUAL((char *)pt, EX_PT);
	free(pt);
}

/* The example is reproducible from the document's inputs, byte for byte. */
static void test_e2e_worked_example_reproduces(void)
{
	unsigned char skR[32], pkR[32], skE[32], pkE[32], enc[32], *ct;
	char *s = NULL;
	size_t pt_len = strlen(EX_PT), info_len = sizeof(ex_info) - 1;

	CU_ASSERT_EQUAL_FATAL(info_len, 18 + 1 + strlen(EX_MID) + 1 + strlen(EX_DID));
	CU_ASSERT_EQUAL_FATAL(smis_hpke_derive_keypair((const unsigned char *)EX_IKM_R, 32, skR,
				      pkR), 0);
	CU_ASSERT_EQUAL_FATAL(smis_hpke_derive_keypair((const unsigned char *)EX_IKM_E, 32, skE,
				      pkE), 0);
	CU_ASSERT_EQUAL(smis_b64url_encode(skR, 32, &s), 0);
	CU_ASSERT_STRING_EQUAL(s, EX_SK);
	free(s);
	CU_ASSERT_EQUAL(smis_b64url_encode(pkR, 32, &s), 0);
	CU_ASSERT_STRING_EQUAL(s, EX_PK);
	free(s);
	ct = malloc(pt_len + 16);
	CU_ASSERT_PTR_NOT_NULL_FATAL(ct);
	CU_ASSERT_EQUAL_FATAL(smis_hpke_seal_with_ephemeral(SMIS_HPKE_AEAD_AES128GCM, skE, pkR,
				      ex_info, info_len, ex_info, info_len,
				      (const unsigned char *)EX_PT, pt_len, enc, ct), 0);
	CU_ASSERT(memcmp(enc, pkE, 32) == 0);
	CU_ASSERT_EQUAL(smis_b64url_encode(enc, 32, &s), 0);
	CU_ASSERT_STRING_EQUAL(s, EX_ENC);
	free(s);
	CU_ASSERT_EQUAL(smis_b64url_encode(ct, pt_len + 16, &s), 0);
	CU_ASSERT_STRING_EQUAL(s, EX_CT);
	free(s);
	free(ct);
}

int main(void)
{
	CU_pSuite suite;
	int rc = 1;

	if (CU_initialize_registry() != CUE_SUCCESS)
		return 1;
	suite = CU_add_suite("b64url", NULL, NULL);
	if (suite == NULL
		|| !CU_add_test(suite, "RFC 4648 vectors", test_b64url_rfc4648_vectors)
		|| !CU_add_test(suite, "url-safe alphabet", test_b64url_alphabet)
		|| !CU_add_test(suite, "strict decode", test_b64url_strict_decode)
		|| !CU_add_test(suite, "fixed-length decode", test_b64url_fixed)
		|| !CU_add_test(suite, "random round trips", test_b64url_roundtrip_random))
		goto out;
	suite = CU_add_suite("e2e", NULL, NULL);
	if (suite == NULL
		|| !CU_add_test(suite, "round trip", test_e2e_roundtrip)
		|| !CU_add_test(suite, "tampered ct or enc rejected", test_e2e_tampering_rejected)
		|| !CU_add_test(suite, "wrong key or ids rejected", test_e2e_wrong_key_or_ids)
		|| !CU_add_test(suite, "bad public keys refused", test_e2e_bad_public_keys)
		|| !CU_add_test(suite, "bad arguments", test_e2e_bad_arguments)
		|| !CU_add_test(suite, "doc example opens", test_e2e_worked_example_opens)
		|| !CU_add_test(suite, "doc example reproduces", test_e2e_worked_example_reproduces))
		goto out;
	CU_basic_set_mode(CU_BRM_VERBOSE);
	CU_basic_run_tests();
	rc = CU_get_number_of_failures() == 0 && CU_get_number_of_suites_failed() == 0
			&& CU_get_number_of_tests_failed() == 0 && CU_get_number_of_tests_run() > 0
		? 0
		: 1;
out:
	CU_cleanup_registry();
	return rc;
}
