/*
 * simbuf.c - the simulators' growing text buffer (simbuf.h).
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include <stdlib.h>
#include <string.h>

#include "simbuf.h"

void sim_buf_add(struct sim_buf *b, const char *data, size_t n)
{
	size_t need = b->len + n + 1;

	if (b->failed)
		return;
	if (need > b->cap) {
		/* Doubling, so that a long text is copied O(1) times a byte. */
		size_t cap = b->cap * 2 > need ? b->cap * 2 : need < 256 ? 256 : need;
		char *s = realloc(b->s, cap);

		if (!s) {
			b->failed = true;
			return;
		}
		b->s = s;
		b->cap = cap;
	}
	memcpy(b->s + b->len, data, n);
	b->len += n;
	b->s[b->len] = '\0';
}

void sim_buf_str(struct sim_buf *b, const char *s)
{
	sim_buf_add(b, s, strlen(s));
}

bool sim_buf_upload(struct sim_buf *b, bool *too_big, const char *data, size_t n, size_t max)
{
	if (*too_big || b->len + n > max) {
		*too_big = true;
		return true;
	}
	sim_buf_add(b, data, n);
	return !b->failed;
}
