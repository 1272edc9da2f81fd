/*
 * fuzz_common.h - what the fuzz targets share: a property check that stops
 * the run (libFuzzer and the replay driver both report an abort as a crash,
 * with the input that caused it) and small helpers on untrusted bytes.
 */
#ifndef SMIS_FUZZ_COMMON_H
#define SMIS_FUZZ_COMMON_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A property every output must have; a failure is a bug like a crash. */
#define FUZZ_CHECK(cond)                                                              \
	do {                                                                          \
		if (!(cond)) {                                                        \
			fprintf(stderr, "%s:%d: property failed: %s\n", __FILE__, __LINE__, \
				#cond);                                               \
			abort();                                                      \
		}                                                                     \
	} while (0)

/* A NUL-terminated copy of the input, for APIs that take C strings. */
static inline char *fuzz_cstr(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);
	if (s) {
		memcpy(s, data, size);
		s[size] = '\0';
	}
	return s;
}

/* Whether the size bytes at hay (NULs included) hold needle, ASCII case
 * aside (no locale). */
static inline int fuzz_holds_ci(const void *hay, size_t size, const char *needle)
{
	const unsigned char *h = hay;
	size_t n = strlen(needle);
	for (size_t at = 0; at + n <= size; at++) {
		size_t i = 0;
		while (i < n && (h[at + i] | 0x20) == (needle[i] | 0x20))
			i++;
		if (i == n)
			return 1;
	}
	return 0;
}

/* The same in a C string. */
static inline int fuzz_contains_ci(const char *hay, const char *needle)
{
	return fuzz_holds_ci(hay, strlen(hay), needle);
}

#endif
