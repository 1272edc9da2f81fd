/* utf8.c - see utf8.h. The decoding is lib/utf8_decode.c's; ASCII, nearly every
 * byte of a request, is handled here without a call. */
#include "utf8.h"

#include <string.h>

#include "utf8_decode.h"

bool smisd_utf8_valid(const char *s, size_t len, bool allow_controls)
{
	size_t i = 0, n;

	while (i < len) {
		unsigned char c = (unsigned char)s[i];
		if (c < 0x80) {
			if (c == 0 || (!allow_controls && (c < 0x20 || c == 0x7f)) ||
			    (allow_controls && c < 0x20 && c != '\n' && c != '\t' && c != '\r'))
				return false;
			i++;
			continue;
		}
		n = smis_utf8_char_len(s + i, len - i);
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
		n = (unsigned char)s[i] < 0x80 ? 1 : smis_utf8_char_len(s + i, len - i);
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
