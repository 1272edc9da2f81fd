/*
 * nomem_claim.c - LD_PRELOAD for smisd in an integration test: strdup() of
 * an idempotency claim ("institution\nkey", http_server.c) whose key begins
 * "nomem-" fails as without memory; every other strdup() works.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

char *strdup(const char *s)
{
	const char *nl = strchr(s, '\n');
	size_t n = strlen(s) + 1;
	char *copy;

	if (nl && strncmp(nl + 1, "nomem-", 6) == 0) {
		errno = ENOMEM;
		return NULL;
	}
	copy = malloc(n);
	return copy ? memcpy(copy, s, n) : NULL;
}
