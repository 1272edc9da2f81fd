/*
 * json_writer.h - JSON text written straight into a growing buffer.
 *
 * Why not json-c here: the API answer is built for every message, and
 * building it as a json-c tree (an object and a hash table per level, a
 * copy of every string) and then serialising it cost ~37,000 instructions
 * per message, about a tenth of all smisd does for one (callgrind, bench
 * load); written directly, the whole answer, timestamps included, costs
 * ~18,000. Parsing stays with json-c; this only writes, and only what
 * smisd itself composes.
 *
 * Strings are escaped as RFC 8259 requires (quote, backslash, and every
 * control character below 0x20), and so are the C1 controls (U+0080 to
 * U+009F), which JSON allows raw but a terminal acts on (the same text
 * once decoded); other bytes are copied as they are, as json-c does, so
 * callers pass UTF-8. Keys are written unescaped: callers pass literals.
 *
 * Errors are sticky: after a failed allocation every call does nothing and
 * smisd_jw_finish() returns NULL.
 */
#ifndef SMISD_JSON_WRITER_H
#define SMISD_JSON_WRITER_H

#include <stddef.h>
#include <stdint.h>

#define SMISD_JW_MAX_DEPTH 8

struct smisd_jw {
	char *buf;
	size_t len, cap;
	int failed;
	int depth;
	unsigned char has_items[SMISD_JW_MAX_DEPTH]; /* per open level: write a comma first */
};

void smisd_jw_init(struct smisd_jw *w);

/* key is NULL inside an array and at the top level. */
void smisd_jw_object_begin(struct smisd_jw *w, const char *key);
void smisd_jw_object_end(struct smisd_jw *w);
void smisd_jw_array_begin(struct smisd_jw *w, const char *key);
void smisd_jw_array_end(struct smisd_jw *w);

/* value NULL writes null. */
void smisd_jw_string(struct smisd_jw *w, const char *key, const char *value);
void smisd_jw_int(struct smisd_jw *w, const char *key, int64_t value);

/* The text (malloc'd, the caller frees it), or NULL if anything failed or a
 * level is still open. The writer is empty afterwards. */
char *smisd_jw_finish(struct smisd_jw *w);

/* What the character at s (NUL-ended) is written as in a JSON string, into
 * out (NUL-ended), and its length: its escape sequence, or U+FFFD (3 bytes)
 * for a byte that is part of no well-formed UTF-8 character; 0 when the
 * character is written as it is. *used is how many bytes of s it stands
 * for: 1 to 4 for a character written as it is, 2 for a C1 control, else 1.
 * Shared with the JSON log lines, so that answers and logs are valid UTF-8
 * alike. */
size_t smisd_json_escape_char(const char *s, char out[7], size_t *used);

/* A copy (malloc'd, NULL when out of memory) of the JSON text `text`, with
 * its C1 controls escaped and its bytes that are no UTF-8 replaced as the
 * writer does: for answers json-c serialises, which leaves both raw, so
 * that every answer reads alike. */
char *smisd_json_text_safe(const char *text);

#endif
