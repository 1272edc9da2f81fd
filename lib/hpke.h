/*
 * HPKE (RFC 9180), base mode only, KEM DHKEM(X25519, HKDF-SHA256), KDF
 * HKDF-SHA256, AEAD AES-128-GCM, AES-256-GCM or ChaCha20-Poly1305. Built on
 * OpenSSL 3.0 EVP primitives because Debian 12's OpenSSL has no OSSL_HPKE
 * (added in 3.2). The GovApp envelope (e2e.h) is the only intended user;
 * the context API exists so the RFC test vectors can be checked end to end.
 *
 * Conventions: keys are raw 32-byte X25519 strings (RFC 7748 encoding);
 * every pointer argument is borrowed for the call; a NULL pointer with a
 * zero length is accepted for info, aad, pt and exporter contexts. Actions
 * return 0 or a negative errno:
 *   -EINVAL   bad argument, unknown AEAD id, invalid (all-zero / low-order)
 *             recipient public key at the sender;
 *   -EBADMSG  the message does not authenticate (tag mismatch, or an enc
 *             that is not a usable X25519 public key) at the recipient;
 *   -ENOMEM   allocation failure;
 *   -EOVERFLOW the context's sequence number is exhausted;
 *   -EIO      an unexpected OpenSSL failure (including the RNG).
 * Outputs are written only on success; secrets held in temporaries are
 * wiped with OPENSSL_cleanse before return.
 *
 * Thread context: no global state; every function is safe from any thread
 * and never blocks (apart from the first OpenSSL algorithm fetch). A
 * struct smis_hpke_ctx must not be used by two threads at once.
 */
#ifndef SMIS_HPKE_H
#define SMIS_HPKE_H

#include <stddef.h>
#include <stdint.h>

#define SMIS_HPKE_KEM_X25519_SHA256 0x0020
#define SMIS_HPKE_KDF_HKDF_SHA256 0x0001
#define SMIS_HPKE_AEAD_AES128GCM 0x0001
#define SMIS_HPKE_AEAD_AES256GCM 0x0002
#define SMIS_HPKE_AEAD_CHACHA20POLY1305 0x0003

#define SMIS_HPKE_NSK 32 /* private key */
#define SMIS_HPKE_NPK 32 /* public key */
#define SMIS_HPKE_NENC 32 /* encapsulated key */
#define SMIS_HPKE_NSECRET 32 /* KEM shared secret */
#define SMIS_HPKE_NN 12 /* AEAD nonce */
#define SMIS_HPKE_NT 16 /* AEAD tag: ct_len = pt_len + SMIS_HPKE_NT */

/*
 * Largest exporter_context accepted by smis_hpke_ctx_export: OpenSSL 3.0's
 * HKDF refuses an expand info above 1024 bytes and the labels take some.
 */
#define SMIS_HPKE_MAX_EXPORTER_CONTEXT 960
/* Largest plaintext: the EVP cipher API counts in int. */
#define SMIS_HPKE_MAX_PT_LEN ((size_t)0x7fffffff - SMIS_HPKE_NT)

/* New random X25519 key pair into the caller's buffers. */
int smis_hpke_keygen(unsigned char sk[SMIS_HPKE_NSK], unsigned char pk[SMIS_HPKE_NPK]);

/*
 * RFC 9180 DeriveKeyPair(ikm) for DHKEM(X25519, HKDF-SHA256); deterministic,
 * used for the test vectors. ikm_len must be at least 32 (RFC 9180 7.1.3).
 */
int smis_hpke_derive_keypair(const unsigned char *ikm, size_t ikm_len,
	unsigned char sk[SMIS_HPKE_NSK], unsigned char pk[SMIS_HPKE_NPK]);

/* The public key belonging to private key sk. */
int smis_hpke_public_key(const unsigned char sk[SMIS_HPKE_NSK], unsigned char pk[SMIS_HPKE_NPK]);

/*
 * 0 when pk is usable as a recipient key, -EINVAL when it is all-zero or of
 * small order (a Diffie-Hellman with it would give the all-zero secret).
 */
int smis_hpke_check_public_key(const unsigned char pk[SMIS_HPKE_NPK]);

/*
 * Single-shot base-mode encryption to pkR (sequence number 0). Writes the
 * encapsulated key to enc and pt_len + SMIS_HPKE_NT bytes to ct (caller's
 * buffer; ct must not overlap pt).
 */
int smis_hpke_seal(uint16_t aead_id, const unsigned char pkR[SMIS_HPKE_NPK],
	const unsigned char *info, size_t info_len, const unsigned char *aad, size_t aad_len,
	const unsigned char *pt, size_t pt_len, unsigned char enc[SMIS_HPKE_NENC], unsigned char *ct);

/*
 * smis_hpke_seal with a caller-chosen ephemeral private key skE instead of a
 * random one. For known-answer tests only: reusing skE destroys security.
 */
int smis_hpke_seal_with_ephemeral(uint16_t aead_id, const unsigned char skE[SMIS_HPKE_NSK],
	const unsigned char pkR[SMIS_HPKE_NPK], const unsigned char *info, size_t info_len,
	const unsigned char *aad, size_t aad_len, const unsigned char *pt, size_t pt_len,
	unsigned char enc[SMIS_HPKE_NENC], unsigned char *ct);

/*
 * Single-shot base-mode decryption with skR (sequence number 0).
 * ct_len must be at least SMIS_HPKE_NT; writes ct_len - SMIS_HPKE_NT bytes to
 * pt (caller's buffer). On -EBADMSG pt has been wiped.
 */
int smis_hpke_open(uint16_t aead_id, const unsigned char skR[SMIS_HPKE_NSK],
	const unsigned char enc[SMIS_HPKE_NENC], const unsigned char *info, size_t info_len,
	const unsigned char *aad, size_t aad_len, const unsigned char *ct, size_t ct_len,
	unsigned char *pt);

/* An HPKE encryption context (RFC 9180 5.2): key, base nonce, sequence number. */
struct smis_hpke_ctx;

/*
 * SetupBaseS: encapsulate to pkR and derive a sender context. skE NULL means
 * a fresh random ephemeral key (non-NULL is for known-answer tests only).
 * *out: caller frees with smis_hpke_ctx_free().
 */
int smis_hpke_setup_base_s(uint16_t aead_id, const unsigned char pkR[SMIS_HPKE_NPK],
	const unsigned char *skE, const unsigned char *info, size_t info_len,
	unsigned char enc[SMIS_HPKE_NENC], struct smis_hpke_ctx **out);

/* SetupBaseR: decapsulate enc with skR. *out: caller frees with smis_hpke_ctx_free(). */
int smis_hpke_setup_base_r(uint16_t aead_id, const unsigned char skR[SMIS_HPKE_NSK],
	const unsigned char enc[SMIS_HPKE_NENC], const unsigned char *info, size_t info_len,
	struct smis_hpke_ctx **out);

/* ContextS.Seal: encrypt with the next sequence number; ct receives pt_len + SMIS_HPKE_NT bytes. */
int smis_hpke_ctx_seal(struct smis_hpke_ctx *ctx, const unsigned char *aad, size_t aad_len,
	const unsigned char *pt, size_t pt_len, unsigned char *ct);

/*
 * ContextR.Open: decrypt with the next sequence number; pt receives ct_len -
 * SMIS_HPKE_NT bytes. The sequence number only advances on success.
 */
int smis_hpke_ctx_open(struct smis_hpke_ctx *ctx, const unsigned char *aad, size_t aad_len,
	const unsigned char *ct, size_t ct_len, unsigned char *pt);

/* Context.Export(exporter_context, L): L bytes (at most 255 * 32) into out. */
int smis_hpke_ctx_export(const struct smis_hpke_ctx *ctx, const unsigned char *exporter_context,
	size_t exporter_context_len, size_t L, unsigned char *out);

/* Wipes and frees ctx; accepts NULL. */
void smis_hpke_ctx_free(struct smis_hpke_ctx *ctx);

#ifdef SMIS_UNITTEST
/*
 * Test builds only: the intermediate key-schedule values of a context, to
 * compare with the RFC vectors. Buffers are the caller's; lengths are
 * 32 (shared_secret), 65 (key_schedule_context), 32 (secret), Nk (key),
 * 12 (base_nonce) and 32 (exporter_secret). *key_len receives Nk.
 */
int smis_hpke_ctx_key_schedule(const struct smis_hpke_ctx *ctx, unsigned char *shared_secret,
	unsigned char *key_schedule_context, unsigned char *secret, unsigned char *key,
	size_t *key_len, unsigned char *base_nonce, unsigned char *exporter_secret);

/* Test builds only: jump the sequence number, to reach its overflow. */
void smis_hpke_ctx_set_seq(struct smis_hpke_ctx *ctx, uint64_t seq);
#endif

#endif /* SMIS_HPKE_H */
