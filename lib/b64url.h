/*
 * base64url without padding (RFC 4648 section 5, "=" omitted), the text form
 * of every binary field in the GovApp end-to-end envelope (keys, enc, ct).
 *
 * Decoding is strict so that one byte string has exactly one accepted text
 * form: characters outside [A-Za-z0-9_-], any "=", a length of 1 mod 4 and
 * non-zero unused trailing bits are all rejected.
 *
 * Thread context: pure functions, safe from any thread, never block.
 */
#ifndef SMIS_B64URL_H
#define SMIS_B64URL_H

#include <stddef.h>

/* Length of the encoding of n bytes, without the terminating NUL. */
#define SMIS_B64URL_ENCODED_LEN(n) (((n) / 3) * 4 + (((n) % 3) * 4 + 2) / 3)

/*
 * Encode in[0..len) (borrowed for the call; may be NULL when len is 0).
 * *out receives a NUL-terminated string, caller frees with free().
 * Returns 0, -EINVAL (out NULL or len too large) or -ENOMEM.
 */
int smis_b64url_encode(const unsigned char *in, size_t len, char **out);

/*
 * Decode in[0..in_len) (borrowed for the call). *out receives in_len*3/4
 * bytes plus one NUL byte that is not counted in *out_len (handy for text),
 * caller frees with free(); on error *out is NULL and *out_len 0.
 * Returns 0, -EINVAL (not canonical unpadded base64url) or -ENOMEM.
 */
int smis_b64url_decode(const char *in, size_t in_len, unsigned char **out, size_t *out_len);

/*
 * Decode the NUL-terminated string in into exactly out_len bytes at out
 * (caller's buffer). Meant for fixed-size keys: any other decoded length is
 * -EINVAL. On error out is zeroed. Returns 0 or -EINVAL.
 */
int smis_b64url_decode_fixed(const char *in, unsigned char *out, size_t out_len);

#endif /* SMIS_B64URL_H */
