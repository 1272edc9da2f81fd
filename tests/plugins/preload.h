/*
 * preload.h - what the LD_PRELOAD libraries of the integration tests share:
 * libc's own functions, and pwrite() and pwrite64() handed to the
 * including file's positioned() with the name of libc's function to call.
 */
#ifndef SMIS_TEST_PRELOAD_H
#define SMIS_TEST_PRELOAD_H

#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

/* libc's `name`; abort() without it (the test would mean nothing). */
static void *libc(const char *name)
{
	void *sym = dlsym(RTLD_NEXT, name);

	if (!sym)
		abort();
	return sym;
}

/* libc's pwrite() or pwrite64(), as `name` says. */
static ssize_t libc_pwrite(const char *name, int fd, const void *buf, size_t len, off64_t off)
{
	ssize_t (*f)(int, const void *, size_t, off64_t);
	void *sym = libc(name);

	memcpy(&f, &sym, sizeof(sym));
	return f(fd, buf, len, off);
}

/* pwrite() and pwrite64() are one function where smisd runs (a 64-bit
 * off_t: amd64, arm64); each is taken from libc under its own name. */
_Static_assert(sizeof(off_t) == sizeof(off64_t), "a 64-bit off_t");

static ssize_t positioned(const char *name, int fd, const void *buf, size_t len, off64_t off);

ssize_t pwrite(int fd, const void *buf, size_t len, off_t off)
{
	return positioned("pwrite", fd, buf, len, off);
}

ssize_t pwrite64(int fd, const void *buf, size_t len, off64_t off)
{
	return positioned("pwrite64", fd, buf, len, off);
}

#endif
