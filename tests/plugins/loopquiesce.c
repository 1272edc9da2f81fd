/*
 * loopquiesce.c - LD_PRELOAD for smisd in an integration test:
 * MHD_quiesce_daemon() called on any thread but an event loop's (named
 * "smisd-loopN", the one that runs the daemon in MHD_run()) says so on
 * stderr and aborts. libmicrohttpd's external mode is not thread-safe: from
 * the main thread it raced the loop inside MHD_run() on the same daemon
 * (helgrind: its listening state written unlocked while the loop read it).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct MHD_Daemon;

int MHD_quiesce_daemon(struct MHD_Daemon *daemon);

int MHD_quiesce_daemon(struct MHD_Daemon *daemon)
{
	/* Looked up on every call, not cached: both loops quiesce at once,
	 * and a lazily set static was a data race (ThreadSanitizer). */
	int (*real)(struct MHD_Daemon *);
	void *sym = dlsym(RTLD_NEXT, "MHD_quiesce_daemon");
	char name[16] = "";

	if (!sym)
		abort();
	memcpy(&real, &sym, sizeof(sym));
	pthread_getname_np(pthread_self(), name, sizeof(name));
	if (strncmp(name, "smisd-loop", strlen("smisd-loop")) != 0) {
		fprintf(stderr, "MHD_quiesce_daemon() called on thread '%s', not on its loop\n", name);
		abort();
	}
	return real(daemon);
}
