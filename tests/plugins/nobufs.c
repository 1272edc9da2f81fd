/*
 * nobufs.c - LD_PRELOAD for smisd in an integration test: accept(),
 * accept4() and socket() fail with ENOBUFS, as when the kernel has no
 * memory left for sockets, while the file named by SMIS_TEST_NOBUFS exists;
 * otherwise they are libc's.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static bool starved(void)
{
	const char *flag = getenv("SMIS_TEST_NOBUFS");

	if (flag && access(flag, F_OK) == 0) {
		errno = ENOBUFS;
		return true;
	}
	return false;
}

/* libc's `name`, or NULL. */
static void *real(const char *name)
{
	return dlsym(RTLD_NEXT, name);
}

int accept4(int fd, struct sockaddr *addr, socklen_t *len, int flags)
{
	int (*f)(int, struct sockaddr *, socklen_t *, int);
	void *sym = real("accept4");

	if (starved() || !sym)
		return -1;
	memcpy(&f, &sym, sizeof(sym));
	return f(fd, addr, len, flags);
}

int accept(int fd, struct sockaddr *addr, socklen_t *len)
{
	return accept4(fd, addr, len, 0);
}

int socket(int domain, int type, int protocol)
{
	int (*f)(int, int, int);
	void *sym = real("socket");

	if (starved() || !sym)
		return -1;
	memcpy(&f, &sym, sizeof(sym));
	return f(domain, type, protocol);
}
