/*
 * utf8.h - strict UTF-8, for what clients send and what SMIS writes back
 * (the decoder itself is lib/utf8_decode.h's).
 */
#ifndef SMISD_UTF8_H
#define SMISD_UTF8_H
#include <stdbool.h>
#include <stddef.h>

/* Strict UTF-8 check (no overlongs, no surrogates, <= U+10FFFF, no NUL).
 * When `allow_controls` is false, control characters are refused too;
 * when true, only TAB, LF and CR are allowed among them. */
bool smisd_utf8_valid(const char *s, size_t len, bool allow_controls);

/* Drops, in place, every byte of the NUL-terminated s that is not part of
 * a well-formed character. For text that quotes a client's bytes after a
 * cut ("%.40s" can split a character) or without a check of its own. */
void smisd_utf8_scrub(char *s);

#endif
