/*
 * simbuf.h - the growing text buffer the loopback simulators (ringring-sim,
 * govapp-sim) keep request bodies in, and ringring-sim writes its hot
 * answers into.
 */
#ifndef SMIS_TOOLS_SIMBUF_H
#define SMIS_TOOLS_SIMBUF_H

#include <stdbool.h>
#include <stddef.h>

/* A growing NUL-terminated text. An allocation failure sticks: `failed`,
 * and later adds do nothing. `s` is NULL until something is added; free it
 * with free(). */
struct sim_buf {
	char *s;
	size_t len;
	size_t cap;
	bool failed;
};

void sim_buf_add(struct sim_buf *b, const char *data, size_t n);
void sim_buf_str(struct sim_buf *b, const char *s);

/* One chunk of a request body as MHD hands it over: appended to `b` while
 * the body stays within `max` bytes; from the chunk that would pass it on,
 * the rest of the body is read and dropped and *too_big set (the handler
 * answers 413 once the body is in). False when out of memory. */
bool sim_buf_upload(struct sim_buf *b, bool *too_big, const char *data, size_t n, size_t max);

#endif
