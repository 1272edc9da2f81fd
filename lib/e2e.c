/*
 * GovApp envelope on top of HPKE: one AES-128-GCM base-mode seal per device,
 * with the message id and device id in both the HPKE info (so the key
 * itself depends on them) and the AEAD aad. An envelope replayed under
 * another message id or to another device therefore fails to open.
 */
#include "config.h"

#include "e2e.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "b64url.h"
#include "hpke.h"

#define E2E_AEAD SMIS_HPKE_AEAD_AES128GCM

/* Length of an id, or 0 when it is missing, empty or too long. */
static size_t e2e_id_len(const char *id)
{
	size_t n = 0;

	if (id != NULL) {
		n = strnlen(id, SMIS_E2E_MAX_ID_LEN + 1);
		if (n > SMIS_E2E_MAX_ID_LEN)
			n = 0;
	}
	return n;
}

/*
 * info = "smis-govapp-e2e-v1" 0x00 message_id 0x00 device_id. Neither id
 * can hold a NUL, so the separators keep the encoding unambiguous.
 */
static int e2e_info(const char *message_id, const char *device_id, unsigned char **out,
	size_t *out_len)
{
	size_t label_len = sizeof(SMIS_E2E_INFO_LABEL) - 1;
	size_t mlen = e2e_id_len(message_id), dlen = e2e_id_len(device_id), n;
	unsigned char *buf;
	int rc = 0;

	if (mlen == 0 || dlen == 0) {
		rc = -EINVAL;
		goto out;
	}
	n = label_len + 1 + mlen + 1 + dlen;
	buf = malloc(n);
	if (buf == NULL) {
		rc = -ENOMEM;
		goto out;
	}
	memcpy(buf, SMIS_E2E_INFO_LABEL, label_len);
	buf[label_len] = 0x00;
	memcpy(buf + label_len + 1, message_id, mlen);
	buf[label_len + 1 + mlen] = 0x00;
	memcpy(buf + label_len + 1 + mlen + 1, device_id, dlen);
	*out = buf;
	*out_len = n;
out:
	return rc;
}

int smis_e2e_check_public_key(const char *pk_b64url)
{
	unsigned char pk[SMIS_E2E_KEY_LEN];
	int rc;

	rc = smis_b64url_decode_fixed(pk_b64url, pk, sizeof(pk));
	if (rc < 0)
		goto out;
	rc = smis_hpke_check_public_key(pk) < 0 ? -EINVAL : 0;
out:
	return rc;
}

int smis_e2e_seal(const char *message_id, const char *device_id, const char *pk_b64url,
	const unsigned char *pt, size_t pt_len, char **enc_b64url, char **ct_b64url)
{
	unsigned char pk[SMIS_E2E_KEY_LEN], enc[SMIS_HPKE_NENC];
	unsigned char *info = NULL, *ct = NULL;
	char *enc_s = NULL, *ct_s = NULL;
	size_t info_len = 0;
	int rc;

	if (enc_b64url == NULL || ct_b64url == NULL) {
		rc = -EINVAL;
		goto out;
	}
	*enc_b64url = NULL;
	*ct_b64url = NULL;
	if ((pt == NULL && pt_len > 0) || pt_len > SMIS_E2E_MAX_PT_LEN) {
		rc = -EINVAL;
		goto out;
	}
	rc = smis_b64url_decode_fixed(pk_b64url, pk, sizeof(pk));
	if (rc < 0)
		goto out;
	rc = e2e_info(message_id, device_id, &info, &info_len);
	if (rc < 0)
		goto out;
	ct = malloc(pt_len + SMIS_HPKE_NT);
	if (ct == NULL) {
		rc = -ENOMEM;
		goto out_free_info;
	}
	/*
	 * No separate key check: the seal's own X25519 refuses an all-zero or
	 * small-order pk with -EINVAL, which saves a scalar multiplication.
	 */
	rc = smis_hpke_seal(E2E_AEAD, pk, info, info_len, info, info_len, pt, pt_len, enc, ct);
	if (rc < 0)
		goto out_free_ct;
	rc = smis_b64url_encode(enc, sizeof(enc), &enc_s);
	if (rc < 0)
		goto out_free_ct;
	rc = smis_b64url_encode(ct, pt_len + SMIS_HPKE_NT, &ct_s);
	if (rc < 0)
		goto out_free_enc_s;
	*enc_b64url = enc_s;
	*ct_b64url = ct_s;
	goto out_free_ct;

out_free_enc_s:
	free(enc_s);
out_free_ct:
	free(ct);
out_free_info:
	free(info);
out:
	return rc;
}

int smis_e2e_open(const char *message_id, const char *device_id, const unsigned char sk[32],
	const char *enc_b64url, const char *ct_b64url, unsigned char **pt, size_t *pt_len)
{
	unsigned char enc[SMIS_HPKE_NENC];
	unsigned char *info = NULL, *ct = NULL, *buf = NULL;
	size_t info_len = 0, ct_len = 0, ct_s_len, body_len;
	int rc;

	if (pt == NULL || pt_len == NULL) {
		rc = -EINVAL;
		goto out;
	}
	*pt = NULL;
	*pt_len = 0;
	if (sk == NULL || ct_b64url == NULL) {
		rc = -EINVAL;
		goto out;
	}
	rc = smis_b64url_decode_fixed(enc_b64url, enc, sizeof(enc));
	if (rc < 0)
		goto out;
	/* Bound the scan before decoding: nothing longer can be a valid envelope. */
	ct_s_len = strnlen(ct_b64url, SMIS_B64URL_ENCODED_LEN(SMIS_E2E_MAX_PT_LEN + SMIS_HPKE_NT) + 1);
	if (ct_s_len > SMIS_B64URL_ENCODED_LEN(SMIS_E2E_MAX_PT_LEN + SMIS_HPKE_NT)) {
		rc = -EINVAL;
		goto out;
	}
	rc = smis_b64url_decode(ct_b64url, ct_s_len, &ct, &ct_len);
	if (rc < 0)
		goto out;
	if (ct_len < SMIS_HPKE_NT) {
		rc = -EINVAL;
		goto out_free_ct;
	}
	rc = e2e_info(message_id, device_id, &info, &info_len);
	if (rc < 0)
		goto out_free_ct;
	body_len = ct_len - SMIS_HPKE_NT;
	buf = malloc(body_len + 1);
	if (buf == NULL) {
		rc = -ENOMEM;
		goto out_free_info;
	}
	rc = smis_hpke_open(E2E_AEAD, sk, enc, info, info_len, info, info_len, ct, ct_len, buf);
	if (rc < 0) {
		/* smis_hpke_open already wiped buf on an authentication failure. */
		free(buf);
		goto out_free_info;
	}
	buf[body_len] = '\0';
	*pt = buf;
	*pt_len = body_len;
out_free_info:
	free(info);
out_free_ct:
	free(ct);
out:
	return rc;
}

int smis_e2e_keygen_b64url(char **sk_b64url, char **pk_b64url)
{
	unsigned char sk[SMIS_HPKE_NSK], pk[SMIS_HPKE_NPK];
	char *sk_s = NULL, *pk_s = NULL;
	int rc;

	if (sk_b64url == NULL || pk_b64url == NULL) {
		rc = -EINVAL;
		goto out;
	}
	*sk_b64url = NULL;
	*pk_b64url = NULL;
	rc = smis_hpke_keygen(sk, pk);
	if (rc < 0)
		goto out_wipe;
	rc = smis_b64url_encode(sk, sizeof(sk), &sk_s);
	if (rc < 0)
		goto out_wipe;
	rc = smis_b64url_encode(pk, sizeof(pk), &pk_s);
	if (rc < 0)
		goto out_free_sk_s;
	*sk_b64url = sk_s;
	*pk_b64url = pk_s;
	goto out_wipe;

out_free_sk_s:
	OPENSSL_cleanse(sk_s, strlen(sk_s));
	free(sk_s);
out_wipe:
	OPENSSL_cleanse(sk, sizeof(sk));
out:
	return rc;
}
