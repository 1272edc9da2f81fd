/*
 * slowresume.c - LD_PRELOAD for smisd in an integration test:
 * MHD_resume_connection() called on the store writer's thread (named
 * "smisd-store") returns SMIS_TEST_SLOW_RESUME_MS milliseconds after the
 * real one has resumed the connection, as when the writer is descheduled
 * right there; on every other thread it is libmicrohttpd's, unchanged.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct MHD_Connection;

void MHD_resume_connection(struct MHD_Connection *connection);

void MHD_resume_connection(struct MHD_Connection *connection)
{
	/* Looked up on every call: a lazily set static would be a data race
	 * between the loops and the store writer (ThreadSanitizer). */
	void (*real)(struct MHD_Connection *);
	void *sym = dlsym(RTLD_NEXT, "MHD_resume_connection");
	const char *ms = getenv("SMIS_TEST_SLOW_RESUME_MS");
	char name[16] = "";

	if (!sym)
		abort();
	memcpy(&real, &sym, sizeof(sym));
	real(connection);
	pthread_getname_np(pthread_self(), name, sizeof(name));
	if (ms && strcmp(name, "smisd-store") == 0) {
		long n = atol(ms);
		struct timespec ts = { n / 1000, (n % 1000) * 1000000L };
		nanosleep(&ts, NULL);
	}
}
