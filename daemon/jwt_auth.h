/*
 * jwt_auth.h - verification of bearer tokens that are JWTs (RFC 7519) signed
 * by a configured issuer, as institutions present them through the eHealth
 * API gateway (OIDC client-credentials realm). It complements API keys: the
 * caller tells the two apart with smisd_jwt_looks_like().
 *
 * Only RS256 (RSA >= 2048 bits, PKCS#1 v1.5, SHA-256) and ES256 (P-256,
 * SHA-256) signatures are accepted, checked with OpenSSL 3 EVP. "none", the
 * HS* family and every other alg are refused before any key is touched, and a
 * key is only ever used with the one alg of its type: an RSA public key can
 * never serve as an HMAC secret or verify an ES256 token (key confusion).
 * Keys come only from configuration: header fields that carry or point to
 * keys (jwk, jku, x5c, x5u) are ignored.
 *
 * This module does not log: it returns a short static reason that the caller
 * may log. Never log the token itself (it is a credential).
 *
 * Thread context: an issuer is immutable once created; smisd_jwt_verify()
 * may run concurrently from any number of threads on the same issuers. No
 * function here blocks, except smisd_jwt_issuer_new(), which reads a file.
 */
#ifndef SMISD_JWT_AUTH_H
#define SMISD_JWT_AUTH_H

#include <stddef.h>
#include <stdint.h>

/* Longest token accepted (the whole compact form, without "Bearer "). */
#define SMISD_JWT_MAX_LEN 8192
/* Largest clock skew smisd_jwt_issuer_new() accepts, in seconds. */
#define SMISD_JWT_MAX_SKEW 600
/* Keys of one type a token may be tried against without naming them by
 * kid (a token without a kid: every key of its type; any token: the keys
 * without a kid), so that no token costs more signature checks than that
 * (plus its kid's key): per issuer, and over all the issuers sharing its
 * iss together. */
#define SMISD_JWT_MAX_UNNAMED_KEYS 4

/* One trusted issuer: its iss, the audience SMIS expects, its keys. Opaque. */
struct smisd_jwt_issuer;

/*
 * Load an issuer. All strings are borrowed for the call (copied).
 * - issuer: the exact "iss" value, e.g.
 *   "https://api.ehealth.fgov.be/auth/realms/M2M" (no normalisation).
 * - audience: a value the token's "aud" (string or array) must contain.
 * - key_file: path of either PEM text (one or more "PUBLIC KEY" or
 *   "CERTIFICATE" blocks; these keys have no kid) or a JWKS JSON document
 *   ({"keys":[...]}, recognised by its first non-blank character "{").
 *   Every PEM block must be a usable key: an RSA key under 2048 bits, an EC
 *   key not on P-256, a private key or any other block is an error, and so
 *   is a "-----BEGIN " line that opens no readable block or a NUL byte. In a
 *   JWKS, keys meant for something else are skipped (use other than "sig",
 *   key_ops without "verify",
 *   alg other than RS256/ES256, kty other than RSA/EC, EC curve other than
 *   P-256: a Keycloak realm also publishes its RSA-OAEP encryption key); a
 *   key that could sign RS256/ES256 but is malformed or weak is an error, as
 *   is a duplicate kid. At least one key must remain, and at most
 *   SMISD_JWT_MAX_UNNAMED_KEYS of one type without a kid (so a PEM file
 *   holds at most that many RSA and that many EC keys).
 * - max_skew_s: clock skew tolerated on exp/nbf/iat, 0..SMISD_JWT_MAX_SKEW.
 * On failure returns NULL and writes a one-line reason to err (caller's
 * buffer, may be NULL when errlen is 0). Caller frees with
 * smisd_jwt_issuer_free(). Blocks on file I/O: call at (re)load time.
 */
struct smisd_jwt_issuer *smisd_jwt_issuer_new(const char *issuer, const char *audience,
					      const char *key_file, int max_skew_s,
					      char *err, size_t errlen);

/* Frees an issuer; accepts NULL. */
void smisd_jwt_issuer_free(struct smisd_jwt_issuer *iss);

/*
 * Whether `token` (borrowed, NUL-terminated, without "Bearer ") has the
 * shape of a compact JWS: three dot-separated base64url segments, the first
 * two non-empty (the third may be empty, so that "alg":"none" tokens are
 * routed here and refused with a reason rather than tried as API keys).
 * Says nothing about validity. Returns 1 or 0; NULL gives 0.
 */
int smisd_jwt_looks_like(const char *token);

/*
 * Verify `token` (borrowed, NUL-terminated, without "Bearer ") against the
 * issuers[0..n) (borrowed; the issuer is chosen by the token's "iss"; several
 * issuers may share an iss, e.g. with different audiences). now_s is the
 * current Unix time in seconds (passed in so that tests control the clock).
 *
 * Checks, in this order: length <= SMISD_JWT_MAX_LEN and strict shape
 * (base64url without padding, JSON objects, no trailing bytes, valid UTF-8,
 * no "\u0000" inside a string: C comparisons would stop there; no duplicate
 * member name in any object);
 * header alg RS256 or ES256, no "crit", "typ" absent or a JWT's ("JWT" or
 * "at+jwt", in any case, with or without "application/"); iss names a
 * configured issuer; the signature under a key of the alg's type (the
 * header "kid" picks the JWKS key; kid-less PEM keys are tried for any kid;
 * without a kid every key of the type is tried, unless the issuer has more
 * than SMISD_JWT_MAX_UNNAMED_KEYS of them: "kid_required"; issuers sharing
 * the iss are tried in turn, with 1 + SMISD_JWT_MAX_UNNAMED_KEYS signature
 * checks for them all, a key listed by several counting once: past that
 * the token is refused, "kid_required" without a kid, else with the
 * reason it got so far); then, only for an
 * authentic token, exp (required), nbf and iat (optional) with the
 * issuer's skew, and aud.
 *
 * On success returns 0 and writes the caller identity, NUL-terminated, into
 * client_id[0..client_id_len) (caller's buffer): the "client_id" claim when
 * present, else "sub"; it must be 1..client_id_len-1 printable ASCII
 * characters without spaces. The caller maps it to an institution.
 * On failure returns -EACCES (-EINVAL for NULL arguments), sets client_id to
 * "" and *reason (may be NULL) to a static string: "malformed",
 * "alg_not_allowed", "typ_not_allowed", "wrong_issuer", "unknown_key",
 * "kid_required", "bad_signature", "expired", "not_yet_valid" or
 * "wrong_audience".
 */
int smisd_jwt_verify(const struct smisd_jwt_issuer *const *issuers, size_t n, const char *token,
		     int64_t now_s, char *client_id, size_t client_id_len, const char **reason);

#endif /* SMISD_JWT_AUTH_H */
