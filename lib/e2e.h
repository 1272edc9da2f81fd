/*
 * The SMIS GovApp end-to-end envelope: a message body encrypted with HPKE
 * (RFC 9180) base mode to one device's X25519 public key, bound to the
 * message id and the device id. docs/e2e-format.md is the normative
 * description for the app side; in short:
 *   suite  DHKEM(X25519, HKDF-SHA256) / HKDF-SHA256 / AES-128-GCM
 *          (kem 0x0020, kdf 0x0001, aead 0x0001), SMIS_E2E_SUITE names it;
 *   info = aad = "smis-govapp-e2e-v1" 0x00 message_id 0x00 device_id
 *          (the ids' bytes as given, no terminator);
 *   enc, ct, keys travel as unpadded base64url.
 *
 * Conventions: every pointer argument is borrowed for the call; results
 * are 0 or a negative errno: -EINVAL bad input or key (including malformed
 * base64url and an invalid public key), -EBADMSG the envelope does not
 * authenticate for this key / message id / device id, -ENOMEM, -EIO for an
 * unexpected OpenSSL failure. On error every output pointer is set to NULL
 * (and *pt_len to 0).
 *
 * Thread context: no global state, safe from any thread, never blocks; one
 * seal costs two X25519 operations, so call it outside latency-critical
 * locks when fanning out to many devices.
 */
#ifndef SMIS_E2E_H
#define SMIS_E2E_H

#include <stddef.h>

#define SMIS_E2E_SUITE "HPKE-Base-X25519-SHA256-AES128GCM"
#define SMIS_E2E_INFO_LABEL "smis-govapp-e2e-v1"
/* Bytes in message_id or device_id (not counting the NUL); both at least 1. */
#define SMIS_E2E_MAX_ID_LEN 256
/* Largest plaintext accepted by seal and returned by open. */
#define SMIS_E2E_MAX_PT_LEN (1024 * 1024)
/* X25519 keys and enc: 32 bytes, 43 characters of base64url. */
#define SMIS_E2E_KEY_LEN 32
#define SMIS_E2E_KEY_B64URL_LEN 43

/*
 * Encrypt pt[0..pt_len) (pt may be NULL when pt_len is 0) for the device
 * whose public key is pk_b64url. *enc_b64url and *ct_b64url receive
 * NUL-terminated strings, caller frees each with free().
 */
int smis_e2e_seal(const char *message_id, const char *device_id, const char *pk_b64url,
	const unsigned char *pt, size_t pt_len, char **enc_b64url, char **ct_b64url);

/*
 * Decrypt an envelope with the device's raw private key sk. *pt receives
 * *pt_len bytes followed by one NUL byte not counted in *pt_len (the body
 * is JSON text), caller frees with free() - wiping it first if it matters.
 */
int smis_e2e_open(const char *message_id, const char *device_id, const unsigned char sk[32],
	const char *enc_b64url, const char *ct_b64url, unsigned char **pt, size_t *pt_len);

/*
 * A fresh device key pair, both as base64url strings. Caller frees each
 * with free(); *sk_b64url is a secret: OPENSSL_cleanse it before freeing.
 * Meant for the simulator and tests: real devices make their own keys.
 */
int smis_e2e_keygen_b64url(char **sk_b64url, char **pk_b64url);

/*
 * 0 when pk_b64url is the canonical base64url of a 32-byte X25519 public
 * key that is neither all-zero nor of small order, -EINVAL otherwise.
 */
int smis_e2e_check_public_key(const char *pk_b64url);

#endif /* SMIS_E2E_H */
