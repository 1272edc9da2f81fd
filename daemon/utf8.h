/*
 * utf8.h - strict UTF-8, for what clients send and what SMIS writes back
 * (the decoder itself is lib/utf8_decode.h's).
 */
#ifndef SMISD_UTF8_H
#define SMISD_UTF8_H
#include <stdbool.h>
#include <stddef.h>

/* Which control characters a text may hold besides its characters. */
enum smisd_utf8_controls {
	/* A JSON text as a whole: TAB, LF and CR among C0 (raw ones elsewhere
	 * are not JSON); DEL and C1 are left to the checks of its members. */
	SMISD_UTF8_JSON,
	/* A text of several lines (a body, an SMS): TAB, LF and CR only. */
	SMISD_UTF8_MULTILINE,
	/* A one-line text (a title, a number, a name): none. */
	SMISD_UTF8_ONE_LINE,
};

/* Strict UTF-8 check (no overlongs, no surrogates, <= U+10FFFF, no NUL),
 * and no control character but those `controls` allows: the C0 controls
 * (U+0000-U+001F), DEL (U+007F) and the C1 controls (U+0080-U+009F) are
 * all controls, invisible or acted on by whatever shows the text. */
bool smisd_utf8_valid(const char *s, size_t len, enum smisd_utf8_controls controls);

/* Whether s[0..len) holds a control character RFC 9110 (5.5) does not
 * allow in a header's value: a C0 control other than HTAB, or DEL.
 * libmicrohttpd passes them through. Bytes 0x80-0xFF are not looked at: a
 * header may carry them (obs-text) in any encoding. */
bool smisd_field_value_has_ctl(const char *s, size_t len);

/* Drops, in place, every byte of the NUL-terminated s that is not part of
 * a well-formed character. For text that quotes a client's bytes after a
 * cut ("%.40s" can split a character) or without a check of its own. */
void smisd_utf8_scrub(char *s);

/* s as one line for a terminal or a log line: at most len - 1 bytes, each
 * control character (C0, DEL, C1) and each byte that is not part of a
 * well-formed character as '?', so that a newline cannot forge a line nor
 * an ESC drive the terminal. For names a file gives (a JWK's kid, anything
 * smisd --check-config quotes). out may be s itself. */
void smisd_text_shown(const char *s, char *out, size_t len);

#endif
