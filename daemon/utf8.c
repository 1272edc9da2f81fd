/* utf8.c - see utf8.h. */
#include "utf8.h"

#include <string.h>

size_t smisd_utf8_char_len(const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s;
	unsigned c = p[0], cp;
	size_t n;

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf) {
		n = 1;
		cp = c & 0x1f;
	} else if (c >= 0xe0 && c <= 0xef) {
		n = 2;
		cp = c & 0x0f;
	} else if (c >= 0xf0 && c <= 0xf4) {
		n = 3;
		cp = c & 0x07;
	} else {
		return 0;
	}
	if (len <= n)
		return 0;
	for (size_t i = 1; i <= n; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (p[i] & 0x3f);
	}
	if ((n == 2 && cp < 0x800) || (n == 3 && (cp < 0x10000 || cp > 0x10ffff)) ||
	    (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return n + 1;
}

bool smisd_utf8_valid(const char *s, size_t len, bool allow_controls)
{
	size_t i = 0, n;

	while (i < len) {
		unsigned char c = (unsigned char)s[i];
		if (c == 0 || (!allow_controls && (c < 0x20 || c == 0x7f)) ||
		    (allow_controls && c < 0x20 && c != '\n' && c != '\t' && c != '\r'))
			return false;
		n = smisd_utf8_char_len(s + i, len - i);
		if (n == 0)
			return false;
		i += n;
	}
	return true;
}

void smisd_utf8_scrub(char *s)
{
	size_t len = strlen(s), i = 0, o = 0, n;

	while (i < len) {
		n = smisd_utf8_char_len(s + i, len - i);
		if (n == 0) {
			i++;
			continue;
		}
		memmove(s + o, s + i, n);
		o += n;
		i += n;
	}
	s[o] = '\0';
}
