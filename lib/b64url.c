/*
 * Strict unpadded base64url (RFC 4648 section 5). Hand-written rather than
 * wrapped around EVP_EncodeBlock/EVP_DecodeBlock because those speak the
 * "+/" alphabet with padding and silently skip whitespace, so the strictness
 * would have to be re-added around them anyway.
 */
#include "config.h"

#include "b64url.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

static const char b64url_alphabet[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* Value of one base64url character, or -1 when it is not one. */
static int b64url_value(unsigned char c)
{
	int v = -1;

	if (c >= 'A' && c <= 'Z')
		v = c - 'A';
	else if (c >= 'a' && c <= 'z')
		v = c - 'a' + 26;
	else if (c >= '0' && c <= '9')
		v = c - '0' + 52;
	else if (c == '-')
		v = 62;
	else if (c == '_')
		v = 63;
	return v;
}

int smis_b64url_encode(const unsigned char *in, size_t len, char **out)
{
	char *s = NULL;
	size_t i, o = 0, olen;
	int rc = 0;

	if (out == NULL || (in == NULL && len > 0)) {
		rc = -EINVAL;
		goto out;
	}
	*out = NULL;
	/* Keep the length computation below from overflowing. */
	if (len > (SIZE_MAX / 4) - 4) {
		rc = -EINVAL;
		goto out;
	}
	olen = SMIS_B64URL_ENCODED_LEN(len);
	s = malloc(olen + 1);
	if (s == NULL) {
		rc = -ENOMEM;
		goto out;
	}
	for (i = 0; i + 3 <= len; i += 3) {
		uint32_t v = ((uint32_t)in[i] << 16) | ((uint32_t)in[i + 1] << 8) | in[i + 2];

		s[o++] = b64url_alphabet[(v >> 18) & 0x3f];
		s[o++] = b64url_alphabet[(v >> 12) & 0x3f];
		s[o++] = b64url_alphabet[(v >> 6) & 0x3f];
		s[o++] = b64url_alphabet[v & 0x3f];
	}
	if (len - i == 1) {
		uint32_t v = (uint32_t)in[i] << 16;

		s[o++] = b64url_alphabet[(v >> 18) & 0x3f];
		s[o++] = b64url_alphabet[(v >> 12) & 0x3f];
	} else if (len - i == 2) {
		uint32_t v = ((uint32_t)in[i] << 16) | ((uint32_t)in[i + 1] << 8);

		s[o++] = b64url_alphabet[(v >> 18) & 0x3f];
		s[o++] = b64url_alphabet[(v >> 12) & 0x3f];
		s[o++] = b64url_alphabet[(v >> 6) & 0x3f];
	}
	s[o] = '\0';
	*out = s;
out:
	return rc;
}

/*
 * Length that in_len characters decode to, or -EINVAL when no canonical
 * unpadded encoding has that length (1 mod 4).
 */
static int b64url_decoded_len(size_t in_len, size_t *out_len)
{
	int rc = 0;

	if (in_len % 4 == 1)
		rc = -EINVAL;
	else
		*out_len = (in_len / 4) * 3 + (in_len % 4 == 0 ? 0 : in_len % 4 - 1);
	return rc;
}

/* Decode into out, which holds exactly the length b64url_decoded_len gave. */
static int b64url_decode_into(const char *in, size_t in_len, unsigned char *out)
{
	uint32_t acc = 0;
	size_t i, o = 0;
	int bits = 0, rc = 0;

	for (i = 0; i < in_len; i++) {
		int v = b64url_value((unsigned char)in[i]);

		if (v < 0) {
			rc = -EINVAL;
			goto out;
		}
		acc = (acc << 6) | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[o++] = (unsigned char)(acc >> bits);
			acc &= (1u << bits) - 1;
		}
	}
	/* Canonical form: the bits left over after the last byte are zero. */
	if (acc != 0)
		rc = -EINVAL;
out:
	return rc;
}

int smis_b64url_decode(const char *in, size_t in_len, unsigned char **out, size_t *out_len)
{
	unsigned char *buf = NULL;
	size_t n = 0;
	int rc;

	if (out == NULL || out_len == NULL) {
		rc = -EINVAL;
		goto out;
	}
	*out = NULL;
	*out_len = 0;
	if (in == NULL && in_len > 0) {
		rc = -EINVAL;
		goto out;
	}
	rc = b64url_decoded_len(in_len, &n);
	if (rc < 0)
		goto out;
	buf = malloc(n + 1);
	if (buf == NULL) {
		rc = -ENOMEM;
		goto out;
	}
	rc = b64url_decode_into(in, in_len, buf);
	if (rc < 0)
		goto out_free_buf;
	buf[n] = '\0';
	*out = buf;
	*out_len = n;
	goto out;

out_free_buf:
	/* The input may have been a private key. */
	OPENSSL_cleanse(buf, n + 1);
	free(buf);
out:
	return rc;
}

int smis_b64url_decode_fixed(const char *in, unsigned char *out, size_t out_len)
{
	size_t in_len, n = 0;
	int rc;

	if (in == NULL || out == NULL) {
		rc = -EINVAL;
		goto out;
	}
	/* Bound the scan: a fixed-size field is never longer than this. */
	in_len = strnlen(in, SMIS_B64URL_ENCODED_LEN(out_len) + 1);
	rc = b64url_decoded_len(in_len, &n);
	if (rc < 0 || n != out_len) {
		rc = -EINVAL;
		goto out_wipe;
	}
	rc = b64url_decode_into(in, in_len, out);
	if (rc < 0)
		goto out_wipe;
	goto out;

out_wipe:
	OPENSSL_cleanse(out, out_len);
out:
	return rc;
}
