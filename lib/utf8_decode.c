/* utf8_decode.c - see utf8_decode.h. */
#include "utf8_decode.h"

size_t smis_utf8_decode(const char *s, size_t len, uint32_t *cp_out)
{
	const unsigned char *p = (const unsigned char *)s;
	uint32_t c = p[0], cp;
	size_t n;

	if (c < 0x80) {
		*cp_out = c;
		return 1;
	}
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
	*cp_out = cp;
	return n + 1;
}

size_t smis_utf8_char_len(const char *s, size_t len)
{
	uint32_t cp;

	return smis_utf8_decode(s, len, &cp);
}
