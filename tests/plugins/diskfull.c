/*
 * diskfull.c - LD_PRELOAD for smisd in an integration test: write(),
 * pwrite() and pwrite64() to a file whose path holds "/smis.db" (the
 * store's database, its WAL and shared-memory index) fail with ENOSPC, as
 * on a full disk, while the file named by SMIS_TEST_DISKFULL exists; when
 * that file holds a name ("smis.db"), only the file of that name fails (the
 * database, not its WAL: a failing disk region). Otherwise, and for every
 * other file (the log on stderr included), they are libc's. The path is
 * checked at each write, not remembered per descriptor: a descriptor number
 * is reused once closed.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#include "preload.h"

/* The name the flag file holds, "" for none; false without the file. */
static bool flag_name(char *name, size_t size)
{
	const char *flag = getenv("SMIS_TEST_DISKFULL");
	FILE *f = flag ? fopen(flag, "r") : NULL;

	if (!f)
		return false;
	if (!fgets(name, (int)size, f))
		name[0] = '\0';
	name[strcspn(name, "\n")] = '\0';
	fclose(f);
	return true;
}

/* Whether a write to fd fails; errno is then ENOSPC, else left as it was
 * (the checks here must not show in the writes that go through). */
static bool full(int fd)
{
	char link[64], path[4096], name[256];
	const char *base;
	int saved = errno;
	ssize_t n;

	if (!flag_name(name, sizeof(name))) {
		errno = saved;
		return false;
	}
	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	n = readlink(link, path, sizeof(path) - 1);
	path[n < 0 ? 0 : n] = '\0';
	base = strrchr(path, '/');
	errno = saved;
	if (!base || !strstr(path, "/smis.db") || (name[0] && strcmp(base + 1, name) != 0))
		return false;
	errno = ENOSPC;
	return true;
}

ssize_t write(int fd, const void *buf, size_t len)
{
	ssize_t (*f)(int, const void *, size_t);
	void *sym = libc("write");

	if (full(fd))
		return -1;
	memcpy(&f, &sym, sizeof(sym));
	return f(fd, buf, len);
}

static ssize_t positioned(const char *name, int fd, const void *buf, size_t len, off64_t off)
{
	if (full(fd))
		return -1;
	return libc_pwrite(name, fd, buf, len, off);
}
