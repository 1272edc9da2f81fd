/* utf8.c - see utf8.h. The decoding is lib/utf8_decode.c's; ASCII, nearly every
 * byte of a request, is handled here without a call. */
#include "utf8.h"

#include <string.h>

#include "utf8_decode.h"

bool smisd_utf8_valid(const char *s, size_t len, enum smisd_utf8_controls controls)
{
	bool text = controls != SMISD_UTF8_JSON;
	size_t i = 0, n;

	while (i < len) {
		unsigned char c;
		/* Printable ASCII (0x20-0x7E), allowed in every mode: most of a
		 * request, skipped in a loop of its own. */
		while (i < len && (unsigned char)s[i] - 0x20u < 0x5fu)
			i++;
		if (i == len)
			break;
		c = (unsigned char)s[i];
		if (c < 0x80) {
			bool space = c == '\n' || c == '\t' || c == '\r';
			if (c == 0 || (c < 0x20 && (!space || controls == SMISD_UTF8_ONE_LINE)) || (c == 0x7f && text))
				return false;
			i++;
			continue;
		}
		n = smis_utf8_char_len(s + i, len - i);
		if (n == 0)
			return false;
		/* C1: U+0080-U+009F, the two bytes C2 80 to C2 9F. */
		if (text && c == 0xc2 && (unsigned char)s[i + 1] < 0xa0)
			return false;
		i += n;
	}
	return true;
}

bool smisd_field_value_has_ctl(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if ((c < 0x20 && c != '\t') || c == 0x7f)
			return true;
	}
	return false;
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

void smisd_text_shown(const char *s, char *out, size_t len)
{
	size_t slen = strlen(s), i = 0, o = 0, n;

	if (len == 0)
		return;
	while (i < slen && o + 1 < len) {
		unsigned char c = (unsigned char)s[i];
		n = c < 0x80 ? 1 : smis_utf8_char_len(s + i, slen - i);
		if (n == 0 || c < 0x20 || c == 0x7f || (c == 0xc2 && (unsigned char)s[i + 1] < 0xa0)) {
			out[o++] = '?';
			i += n ? n : 1;
			continue;
		}
		if (o + n >= len)
			break;
		memmove(out + o, s + i, n);
		o += n;
		i += n;
	}
	out[o] = '\0';
}
