/*
 * norandom.c - LD_PRELOAD for smisd in an integration test: RAND_bytes()
 * fails, as with OpenSSL's DRBG out of entropy, while the file named by
 * SMIS_TEST_NORANDOM exists; otherwise it is OpenSSL's.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int RAND_bytes(unsigned char *buf, int num);

int RAND_bytes(unsigned char *buf, int num)
{
	/* Looked up on every call: a lazily set static would be a data race
	 * between smisd's threads (ThreadSanitizer). */
	int (*real)(unsigned char *, int);
	const char *flag = getenv("SMIS_TEST_NORANDOM");
	void *sym;

	if (flag && access(flag, F_OK) == 0)
		return 0;
	sym = dlsym(RTLD_NEXT, "RAND_bytes");
	if (!sym)
		return 0;
	memcpy(&real, &sym, sizeof(sym));
	return real(buf, num);
}
