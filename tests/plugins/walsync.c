/*
 * walsync.c - LD_PRELOAD for smisd in an integration test: counts the
 * flushes (fsync(), fdatasync()) of the store's WAL ("smis.db-wal") that
 * its commits make, by appending one byte per flush to the file named by
 * SMIS_TEST_WALSYNCS. A commit is the store thread's ("smisd-store"); the
 * checkpointer's flushes are another thread's and not counted. Nor is the
 * flush of a new WAL header, which the store thread makes whatever the
 * synchronous level when it starts the WAL over after a checkpoint: it
 * follows a write at offset 0 of the WAL, remembered per thread. The calls
 * themselves are libc's.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#include "preload.h"

static __thread bool header_written; /* the WAL's header, not yet flushed */

/* Whether fd is the store's WAL, written or flushed by the store thread. */
static bool store_wal(int fd)
{
	char link[64], path[4096], thread[16];
	size_t len;
	ssize_t n;
	int saved = errno;

	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	n = readlink(link, path, sizeof(path) - 1);
	path[n < 0 ? 0 : n] = '\0';
	len = strlen(path);
	thread[0] = '\0';
	pthread_getname_np(pthread_self(), thread, sizeof(thread));
	errno = saved;
	return len >= 12 && strcmp(path + len - 12, "/smis.db-wal") == 0 && strcmp(thread, "smisd-store") == 0;
}

static void count_flush(int fd)
{
	const char *out = getenv("SMIS_TEST_WALSYNCS");
	int saved = errno, o;

	if (!store_wal(fd))
		return;
	if (header_written) {
		header_written = false;
		return;
	}
	o = out ? open(out, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600) : -1;
	if (o >= 0) {
		ssize_t (*w)(int, const void *, size_t);
		void *sym = libc("write");
		memcpy(&w, &sym, sizeof(sym));
		if (w(o, "s", 1) != 1)
			abort();
		close(o);
	}
	errno = saved;
}

static int flush(const char *name, int fd)
{
	int (*f)(int);
	void *sym = libc(name);

	count_flush(fd);
	memcpy(&f, &sym, sizeof(sym));
	return f(fd);
}

int fsync(int fd)
{
	return flush("fsync", fd);
}

int fdatasync(int fd)
{
	return flush("fdatasync", fd);
}

/* A write at offset 0 of the WAL is its header's. */
static ssize_t positioned(const char *name, int fd, const void *buf, size_t len, off64_t off)
{
	if (off == 0 && store_wal(fd))
		header_written = true;
	return libc_pwrite(name, fd, buf, len, off);
}
