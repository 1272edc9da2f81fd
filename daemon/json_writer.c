/*
 * json_writer.c - JSON text written straight into a growing buffer (see
 * json_writer.h for why).
 */
#include "config.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "json_writer.h"
#include "utf8_decode.h"

void smisd_jw_init(struct smisd_jw *w)
{
	memset(w, 0, sizeof(*w));
}

static int reserve(struct smisd_jw *w, size_t more)
{
	char *nb;
	size_t cap;

	if (w->failed)
		return -1;
	if (w->len + more + 1 <= w->cap)
		return 0;
	cap = w->cap ? w->cap : 1024;
	while (cap < w->len + more + 1)
		cap *= 2;
	nb = realloc(w->buf, cap);
	if (!nb) {
		w->failed = 1;
		return -1;
	}
	w->buf = nb;
	w->cap = cap;
	return 0;
}

static void put(struct smisd_jw *w, const char *s, size_t n)
{
	if (reserve(w, n) != 0)
		return;
	memcpy(w->buf + w->len, s, n);
	w->len += n;
	w->buf[w->len] = '\0';
}

/* One byte: the quotes, commas and brackets around every value, written
 * without put()'s call to memcpy for each. */
static void put_char(struct smisd_jw *w, char c)
{
	if (reserve(w, 1) != 0)
		return;
	w->buf[w->len++] = c;
	w->buf[w->len] = '\0';
}

/*
 * The character beyond ASCII at s: copied whole when it is well-formed
 * UTF-8 (0, *used its length), else its first byte written as U+FFFD, as a
 * decoder shows it (a lone 0x9B from an upstream, a character cut by a
 * "%.40s" or a buffer's end, an overlong form, a surrogate): a raw one
 * would make the whole text invalid UTF-8, which a client or a log
 * collector may refuse.
 */
static size_t utf8_char_or_replacement(const char *s, char out[7], size_t *used)
{
	*used = smis_utf8_char_len(s, strnlen(s, 4));
	if (*used > 0)
		return 0;
	*used = 1;
	memcpy(out, "\xef\xbf\xbd", 4);
	return 3;
}

size_t smisd_json_escape_char(const char *s, char out[7], size_t *used)
{
	static const char hex[] = "0123456789abcdef";
	unsigned char c = (unsigned char)s[0];
	char short_form = 0;

	*used = 1;
	switch (c) {
	case '"':  short_form = '"'; break;
	case '\\': short_form = '\\'; break;
	case '\b': short_form = 'b'; break;
	case '\f': short_form = 'f'; break;
	case '\n': short_form = 'n'; break;
	case '\r': short_form = 'r'; break;
	case '\t': short_form = 't'; break;
	case 0xc2:
		/* U+0080-U+009F, C2 80 to C2 9F: JSON allows them raw, but a
		 * terminal showing the text acts on them (U+009B is a CSI). The
		 * code point is the second byte. */
		if ((unsigned char)s[1] < 0x80 || (unsigned char)s[1] > 0x9f)
			return utf8_char_or_replacement(s, out, used);
		*used = 2;
		c = (unsigned char)s[1];
		break;
	default:
		if (c >= 0x80)
			return utf8_char_or_replacement(s, out, used);
		if (c >= 0x20)
			return 0;
		break;
	}
	if (short_form) {
		out[0] = '\\';
		out[1] = short_form;
		out[2] = '\0';
		return 2;
	}
	memcpy(out, "\\u00", 4);
	out[4] = hex[c >> 4];
	out[5] = hex[c & 15];
	out[6] = '\0';
	return 6;
}

/*
 * s with what JSON or a reader cannot take raw written otherwise: bytes
 * beyond ASCII through smisd_json_escape_char (C1 controls escaped, bytes
 * that are no UTF-8 as U+FFFD); inside a string, also '"', '\\' and C0
 * controls. A whole JSON text (in_string false) has no other bytes beyond
 * ASCII than those of its strings.
 */
/* The length of the ASCII at s that put_text() copies as it is (inside a
 * string: no C0 control, '"' or '\\'): the common case, scanned in a
 * loop of its own. */
static size_t plain_ascii(const char *s, bool in_string)
{
	const unsigned char *p = (const unsigned char *)s;

	if (in_string)
		while (*p >= 0x20 && *p < 0x80 && *p != '"' && *p != '\\')
			p++;
	else
		while (*p && *p < 0x80)
			p++;
	return (size_t)(p - (const unsigned char *)s);
}

static void put_text(struct smisd_jw *w, const char *s, bool in_string)
{
	const char *run = s;
	size_t used = 0;

	for (; *s; s += used) {
		char esc[7];
		size_t n;

		s += plain_ascii(s, in_string); /* copied with its run */
		if (!*s)
			break;
		n = smisd_json_escape_char(s, esc, &used);
		if (n == 0)
			continue; /* well-formed UTF-8, no C1 control: copied with its run */
		put(w, run, (size_t)(s - run));
		put(w, esc, n);
		run = s + used;
	}
	put(w, run, (size_t)(s - run));
}

static void put_escaped(struct smisd_jw *w, const char *s)
{
	put_char(w, '"');
	put_text(w, s, true);
	put_char(w, '"');
}

/* The comma before an item, and its key inside an object. */
static void item(struct smisd_jw *w, const char *key)
{
	if (w->depth > 0) {
		if (w->has_items[w->depth - 1])
			put_char(w, ',');
		w->has_items[w->depth - 1] = 1;
	}
	if (key) {
		put_char(w, '"');
		put(w, key, strlen(key));
		put_char(w, '"');
		put_char(w, ':');
	}
}

static void open_level(struct smisd_jw *w, const char *key, char bracket)
{
	item(w, key);
	if (w->depth == SMISD_JW_MAX_DEPTH) {
		w->failed = 1;
		return;
	}
	w->has_items[w->depth++] = 0;
	put_char(w, bracket);
}

static void close_level(struct smisd_jw *w, char bracket)
{
	if (w->depth == 0) {
		w->failed = 1;
		return;
	}
	w->depth--;
	put_char(w, bracket);
}

void smisd_jw_object_begin(struct smisd_jw *w, const char *key)
{
	open_level(w, key, '{');
}

void smisd_jw_object_end(struct smisd_jw *w)
{
	close_level(w, '}');
}

void smisd_jw_array_begin(struct smisd_jw *w, const char *key)
{
	open_level(w, key, '[');
}

void smisd_jw_array_end(struct smisd_jw *w)
{
	close_level(w, ']');
}

void smisd_jw_string(struct smisd_jw *w, const char *key, const char *value)
{
	item(w, key);
	if (value)
		put_escaped(w, value);
	else
		put(w, "null", 4);
}

void smisd_jw_int(struct smisd_jw *w, const char *key, int64_t value)
{
	char num[24], *p = num + sizeof(num);
	/* Digits from the end, on the magnitude as unsigned (INT64_MIN has no
	 * positive int64_t). */
	uint64_t mag = value < 0 ? (uint64_t)0 - (uint64_t)value : (uint64_t)value;
	do {
		*--p = (char)('0' + mag % 10);
		mag /= 10;
	} while (mag);
	if (value < 0)
		*--p = '-';
	item(w, key);
	put(w, p, (size_t)(num + sizeof(num) - p));
}

char *smisd_jw_finish(struct smisd_jw *w)
{
	char *out = NULL;

	if (!w->failed && w->depth == 0 && w->buf)
		out = w->buf;
	else
		free(w->buf);
	smisd_jw_init(w);
	return out;
}

char *smisd_json_text_safe(const char *text)
{
	struct smisd_jw w;

	if (!text)
		return NULL;
	smisd_jw_init(&w);
	put_text(&w, text, false);
	return smisd_jw_finish(&w);
}
