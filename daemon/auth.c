/*
 * auth.c - bearer API keys (see auth.h for why digests).
 */
#include "config.h"

#include <string.h>
#include <strings.h>

#include <pthread.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/sha.h>

#include "auth.h"
#include "core_api.h"
#include "jwt_auth.h"
#include "utf8.h"

/* SHA256() fetches the algorithm from the provider on every call; fetch
 * it once (it is reference-counted and thread-safe to share). */
static EVP_MD *sha256_md;
static pthread_once_t sha256_once = PTHREAD_ONCE_INIT;

static void sha256_fetch(void)
{
	sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL);
}

static void sha256(const void *data, size_t len, unsigned char out[SHA256_DIGEST_LENGTH])
{
	pthread_once(&sha256_once, sha256_fetch);
	if (!sha256_md || EVP_Digest(data, len, out, NULL, sha256_md, NULL) != 1)
		SHA256(data, len, out);
}

__attribute__((destructor)) static void sha256_release(void)
{
	EVP_MD_free(sha256_md);
}

void smisd_sha256_hex(const void *data, size_t len, char out[65])
{
	static const char hex[] = "0123456789abcdef";
	unsigned char d[SHA256_DIGEST_LENGTH];
	sha256(data, len, d);
	for (int i = 0; i < SHA256_DIGEST_LENGTH; i++) {
		out[2 * i] = hex[d[i] >> 4];
		out[2 * i + 1] = hex[d[i] & 15];
	}
	out[64] = '\0';
}

/* A gateway token: verified against the configured issuers, then its
 * client id names the institution. */
static const struct smisd_institution *jwt_institution(const struct smisd_generation *g,
							const char *token, const char **why)
{
	char client[256];
	int64_t now = smisd_now_ms() / 1000;

	if (smisd_jwt_verify((const struct smisd_jwt_issuer *const *)g->issuers, g->n_issuers, token, now,
			     client, sizeof(client), why) != 0)
		return NULL;
	for (size_t i = 0; i < g->n_institutions; i++)
		for (char **c = g->institutions[i].client_ids; c && *c; c++)
			if (strcmp(*c, client) == 0)
				return &g->institutions[i];
	*why = "unknown_client";
	return NULL;
}

/* Whether [key, key + len) has a gateway token's shape. The JWT functions
 * read a C string: a token the header had OWS after is read from `copy`
 * (SMISD_JWT_MAX_LEN + 1 bytes), without it; only such a token costs that
 * copy. `*token` is the string to verify. */
static bool jwt_shaped(const char *key, size_t len, char *copy, const char **token)
{
	*token = key;
	if (key[len] != '\0') {
		if (len > SMISD_JWT_MAX_LEN)
			return false;
		memcpy(copy, key, len);
		copy[len] = '\0';
		*token = copy;
	}
	return smisd_jwt_looks_like(*token);
}

const struct smisd_institution *smisd_auth_institution_why(const struct smisd_generation *g,
							   const char *authorization, size_t len, const char **why)
{
	const struct smisd_institution *found = NULL;
	unsigned char digest[SHA256_DIGEST_LENGTH];
	char copy[SMISD_JWT_MAX_LEN + 1];
	const char *key, *token;

	if (!authorization || len < 7 || strncasecmp(authorization, "Bearer ", 7) != 0)
		return NULL;
	key = authorization + 7;
	len -= 7;
	for (; len > 0 && *key == ' '; len--)
		key++;
	/* A control character (RFC 9110 5.5) makes the header invalid, and
	 * no configured key holds one (smisctl hash-key refuses it): refused
	 * as malformed, before any hashing, a gateway token's as a key's. */
	if (smisd_field_value_has_ctl(key, len)) {
		*why = "malformed";
		return NULL;
	}
	if (g->n_issuers && jwt_shaped(key, len, copy, &token))
		return jwt_institution(g, token, why);
	*why = "unknown_key";
	if (len == 0 || len > SMISD_API_KEY_MAX)
		return NULL;
	sha256(key, len, digest);
	/* No early exit: every key is compared whatever matched before. */
	for (size_t i = 0; i < g->n_institutions; i++) {
		const struct smisd_institution *in = &g->institutions[i];
		for (size_t k = 0; k < in->n_keys; k++)
			if (CRYPTO_memcmp(digest, in->key_hashes[k], sizeof(digest)) == 0)
				found = in;
	}
	return found;
}
