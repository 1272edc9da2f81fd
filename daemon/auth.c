/*
 * auth.c - bearer API keys (see auth.h for why digests).
 */
#include "config.h"

#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>
#include <openssl/sha.h>

#include "auth.h"

void smisd_sha256_hex(const void *data, size_t len, char out[65])
{
	static const char hex[] = "0123456789abcdef";
	unsigned char d[SHA256_DIGEST_LENGTH];
	SHA256(data, len, d);
	for (int i = 0; i < SHA256_DIGEST_LENGTH; i++) {
		out[2 * i] = hex[d[i] >> 4];
		out[2 * i + 1] = hex[d[i] & 15];
	}
	out[64] = '\0';
}

const struct smisd_institution *smisd_auth_institution(const struct smisd_generation *g,
						       const char *authorization)
{
	const struct smisd_institution *found = NULL;
	unsigned char digest[SHA256_DIGEST_LENGTH];
	const char *key;

	if (!authorization || strncasecmp(authorization, "Bearer ", 7) != 0)
		return NULL;
	key = authorization + 7;
	while (*key == ' ')
		key++;
	if (!*key || strlen(key) > 512)
		return NULL;
	SHA256((const unsigned char *)key, strlen(key), digest);
	/* No early exit: every key is compared whatever matched before. */
	for (size_t i = 0; i < g->n_institutions; i++) {
		const struct smisd_institution *in = &g->institutions[i];
		for (size_t k = 0; k < in->n_keys; k++)
			if (CRYPTO_memcmp(digest, in->key_hashes[k], sizeof(digest)) == 0)
				found = in;
	}
	return found;
}
