/*
 * json_writer.c - JSON text written straight into a growing buffer (see
 * json_writer.h for why).
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "json_writer.h"

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
			return 0;
		*used = 2;
		c = (unsigned char)s[1];
		break;
	default:
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

static void put_escaped(struct smisd_jw *w, const char *s)
{
	const char *run = s;
	size_t used = 1;

	put(w, "\"", 1);
	for (; *s; s += used) {
		unsigned char c = (unsigned char)*s;
		char esc[7];
		size_t n;

		used = 1;
		if (c >= 0x20 && c != '"' && c != '\\' && c != 0xc2)
			continue; /* the common case, copied with its run */
		n = smisd_json_escape_char(s, esc, &used);
		if (n == 0)
			continue; /* C2 opens no C1 control: copied with its run */
		put(w, run, (size_t)(s - run));
		put(w, esc, n);
		run = s + used;
	}
	put(w, run, (size_t)(s - run));
	put(w, "\"", 1);
}

/* The comma before an item, and its key inside an object. */
static void item(struct smisd_jw *w, const char *key)
{
	if (w->depth > 0) {
		if (w->has_items[w->depth - 1])
			put(w, ",", 1);
		w->has_items[w->depth - 1] = 1;
	}
	if (key) {
		put(w, "\"", 1);
		put(w, key, strlen(key));
		put(w, "\":", 2);
	}
}

static void open_level(struct smisd_jw *w, const char *key, const char *bracket)
{
	item(w, key);
	if (w->depth == SMISD_JW_MAX_DEPTH) {
		w->failed = 1;
		return;
	}
	w->has_items[w->depth++] = 0;
	put(w, bracket, 1);
}

static void close_level(struct smisd_jw *w, const char *bracket)
{
	if (w->depth == 0) {
		w->failed = 1;
		return;
	}
	w->depth--;
	put(w, bracket, 1);
}

void smisd_jw_object_begin(struct smisd_jw *w, const char *key)
{
	open_level(w, key, "{");
}

void smisd_jw_object_end(struct smisd_jw *w)
{
	close_level(w, "}");
}

void smisd_jw_array_begin(struct smisd_jw *w, const char *key)
{
	open_level(w, key, "[");
}

void smisd_jw_array_end(struct smisd_jw *w)
{
	close_level(w, "]");
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

char *smisd_json_c1_escaped(const char *text)
{
	struct smisd_jw w;
	const char *run = text, *s = text;

	if (!text)
		return NULL;
	smisd_jw_init(&w);
	/* Outside strings a JSON text is ASCII: every C2 is in a string. */
	while ((s = strchr(s, '\xc2')) != NULL) {
		char esc[7];
		size_t used, n = smisd_json_escape_char(s, esc, &used);

		if (n == 0) {
			s++;
			continue;
		}
		put(&w, run, (size_t)(s - run));
		put(&w, esc, n);
		s += used;
		run = s;
	}
	put(&w, run, strlen(run));
	return smisd_jw_finish(&w);
}
