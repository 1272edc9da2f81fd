/*
 * auth.h - who is calling: API keys are compared as SHA-256 digests with
 * CRYPTO_memcmp over every configured key, so neither a near-miss nor the
 * position of a key in the configuration shows in the timing.
 */
#ifndef SMISD_AUTH_H
#define SMISD_AUTH_H

#include "generation.h"

/* Longest API key taken (after "Bearer " and the spaces that follow it);
 * a gateway token may be longer: SMISD_JWT_MAX_LEN. */
#define SMISD_API_KEY_MAX 512

/* The institution `authorization` authenticates, or NULL with `*why` set
 * to the reason ("expired", "bad_signature", "unknown_key", "malformed",
 * ...: a static string, safe to log), or left as it was when the header is
 * absent or not `Bearer`. `authorization` is the header value or NULL:
 * "Bearer <api key>" or, when token issuers are configured, "Bearer <JWT>"
 * from the gateway. A NUL-terminated string, of which the first `len`
 * bytes are the value: the spaces and tabs after them, if any, are not
 * part of it (RFC 9110 5.5). */
const struct smisd_institution *smisd_auth_institution_why(const struct smisd_generation *g,
							   const char *authorization, size_t len, const char **why);

/* SHA-256 of `s` as 64 hex characters. */
void smisd_sha256_hex(const void *data, size_t len, char out[65]);

#endif
