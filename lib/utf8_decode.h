/*
 * utf8_decode.h - a strict UTF-8 decoder, shared by the HTML sanitiser
 * (lib/html_sanitize.c), the SMS counter (lib/gsm7.c) and the daemon
 * (daemon/utf8.c). Built into libsmisutf8 (lib/utf8.mk), which libsmishtml
 * and libsmisgsm7 carry: link either of them.
 */
#ifndef SMIS_UTF8_DECODE_H
#define SMIS_UTF8_DECODE_H

#include <stddef.h>
#include <stdint.h>

/* Length (1-4) of the well-formed UTF-8 character at s[0..len), or 0 when
 * it is ill-formed: an overlong form, a surrogate, past U+10FFFF, a stray
 * continuation byte or a sequence cut short. Any byte below 0x80 (NUL
 * included) is a character of length 1. len must be at least 1. */
size_t smis_utf8_char_len(const char *s, size_t len);

/* The same, and the character's code point in *cp when it is well-formed
 * (*cp is left alone otherwise). */
size_t smis_utf8_decode(const char *s, size_t len, uint32_t *cp);

#endif
