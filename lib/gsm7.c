/*
 * gsm7.c - SMS encoding choice and segment counting (GSM 03.38 / TS 23.040).
 *
 * One pass decodes strict UTF-8 and decides GSM-7 or UCS-2; a second pass
 * cuts parts greedily with the per-character cost of the chosen encoding,
 * because a plain ceil(units / 153) is wrong as soon as an escape pair or a
 * surrogate pair would straddle a part boundary. See gsm7.h for the rules.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "gsm7.h"
#include "utf8_decode.h"

struct gsm7_entry {
	uint16_t cp;  /* Unicode code point */
	uint8_t code; /* septet; for extension characters the one after ESC */
	uint8_t cost; /* 1 default alphabet, 2 extension table */
};

/*
 * GSM 03.38 default alphabet and extension table, keyed by code point and
 * sorted for bsearch (Unicode GSM0338.TXT v2.0). 0x1B (ESC) has no entry on
 * purpose; U+00C7 and U+00E7 both give 0x09 (see gsm7.h). The unit test
 * checks this table against the septet-ordered table of the reference.
 */
static const struct gsm7_entry gsm7_table[] = {
	{0x000A, 0x0A, 1}, {0x000C, 0x0A, 2}, {0x000D, 0x0D, 1}, {0x0020, 0x20, 1}, /* LF FF CR SP */
	{0x0021, 0x21, 1}, {0x0022, 0x22, 1}, {0x0023, 0x23, 1}, {0x0024, 0x02, 1}, /* ! " # $ */
	{0x0025, 0x25, 1}, {0x0026, 0x26, 1}, {0x0027, 0x27, 1}, {0x0028, 0x28, 1}, /* % & ' ( */
	{0x0029, 0x29, 1}, {0x002A, 0x2A, 1}, {0x002B, 0x2B, 1}, {0x002C, 0x2C, 1}, /* ) '*' + , */
	{0x002D, 0x2D, 1}, {0x002E, 0x2E, 1}, {0x002F, 0x2F, 1}, {0x0030, 0x30, 1}, /* - . '/' 0 */
	{0x0031, 0x31, 1}, {0x0032, 0x32, 1}, {0x0033, 0x33, 1}, {0x0034, 0x34, 1}, /* 1 2 3 4 */
	{0x0035, 0x35, 1}, {0x0036, 0x36, 1}, {0x0037, 0x37, 1}, {0x0038, 0x38, 1}, /* 5 6 7 8 */
	{0x0039, 0x39, 1}, {0x003A, 0x3A, 1}, {0x003B, 0x3B, 1}, {0x003C, 0x3C, 1}, /* 9 : ; < */
	{0x003D, 0x3D, 1}, {0x003E, 0x3E, 1}, {0x003F, 0x3F, 1}, {0x0040, 0x00, 1}, /* = > ? @ */
	{0x0041, 0x41, 1}, {0x0042, 0x42, 1}, {0x0043, 0x43, 1}, {0x0044, 0x44, 1}, /* A B C D */
	{0x0045, 0x45, 1}, {0x0046, 0x46, 1}, {0x0047, 0x47, 1}, {0x0048, 0x48, 1}, /* E F G H */
	{0x0049, 0x49, 1}, {0x004A, 0x4A, 1}, {0x004B, 0x4B, 1}, {0x004C, 0x4C, 1}, /* I J K L */
	{0x004D, 0x4D, 1}, {0x004E, 0x4E, 1}, {0x004F, 0x4F, 1}, {0x0050, 0x50, 1}, /* M N O P */
	{0x0051, 0x51, 1}, {0x0052, 0x52, 1}, {0x0053, 0x53, 1}, {0x0054, 0x54, 1}, /* Q R S T */
	{0x0055, 0x55, 1}, {0x0056, 0x56, 1}, {0x0057, 0x57, 1}, {0x0058, 0x58, 1}, /* U V W X */
	{0x0059, 0x59, 1}, {0x005A, 0x5A, 1}, {0x005B, 0x3C, 2}, {0x005C, 0x2F, 2}, /* Y Z [ '\' */
	{0x005D, 0x3E, 2}, {0x005E, 0x14, 2}, {0x005F, 0x11, 1}, {0x0061, 0x61, 1}, /* ] ^ _ a */
	{0x0062, 0x62, 1}, {0x0063, 0x63, 1}, {0x0064, 0x64, 1}, {0x0065, 0x65, 1}, /* b c d e */
	{0x0066, 0x66, 1}, {0x0067, 0x67, 1}, {0x0068, 0x68, 1}, {0x0069, 0x69, 1}, /* f g h i */
	{0x006A, 0x6A, 1}, {0x006B, 0x6B, 1}, {0x006C, 0x6C, 1}, {0x006D, 0x6D, 1}, /* j k l m */
	{0x006E, 0x6E, 1}, {0x006F, 0x6F, 1}, {0x0070, 0x70, 1}, {0x0071, 0x71, 1}, /* n o p q */
	{0x0072, 0x72, 1}, {0x0073, 0x73, 1}, {0x0074, 0x74, 1}, {0x0075, 0x75, 1}, /* r s t u */
	{0x0076, 0x76, 1}, {0x0077, 0x77, 1}, {0x0078, 0x78, 1}, {0x0079, 0x79, 1}, /* v w x y */
	{0x007A, 0x7A, 1}, {0x007B, 0x28, 2}, {0x007C, 0x40, 2}, {0x007D, 0x29, 2}, /* z { | } */
	{0x007E, 0x3D, 2}, {0x00A1, 0x40, 1}, {0x00A3, 0x01, 1}, {0x00A4, 0x24, 1}, /* ~ ¡ £ ¤ */
	{0x00A5, 0x03, 1}, {0x00A7, 0x5F, 1}, {0x00BF, 0x60, 1}, {0x00C4, 0x5B, 1}, /* ¥ § ¿ Ä */
	{0x00C5, 0x0E, 1}, {0x00C6, 0x1C, 1}, {0x00C7, 0x09, 1}, {0x00C9, 0x1F, 1}, /* Å Æ Ç É */
	{0x00D1, 0x5D, 1}, {0x00D6, 0x5C, 1}, {0x00D8, 0x0B, 1}, {0x00DC, 0x5E, 1}, /* Ñ Ö Ø Ü */
	{0x00DF, 0x1E, 1}, {0x00E0, 0x7F, 1}, {0x00E4, 0x7B, 1}, {0x00E5, 0x0F, 1}, /* ß à ä å */
	{0x00E6, 0x1D, 1}, {0x00E7, 0x09, 1}, {0x00E8, 0x04, 1}, {0x00E9, 0x05, 1}, /* æ ç è é */
	{0x00EC, 0x07, 1}, {0x00F1, 0x7D, 1}, {0x00F2, 0x08, 1}, {0x00F6, 0x7C, 1}, /* ì ñ ò ö */
	{0x00F8, 0x0C, 1}, {0x00F9, 0x06, 1}, {0x00FC, 0x7E, 1}, {0x0393, 0x13, 1}, /* ø ù ü Γ */
	{0x0394, 0x10, 1}, {0x0398, 0x19, 1}, {0x039B, 0x14, 1}, {0x039E, 0x1A, 1}, /* Δ Θ Λ Ξ */
	{0x03A0, 0x16, 1}, {0x03A3, 0x18, 1}, {0x03A6, 0x12, 1}, {0x03A8, 0x17, 1}, /* Π Σ Φ Ψ */
	{0x03A9, 0x15, 1}, {0x20AC, 0x65, 2}, /* Ω € */
};

#define GSM7_TABLE_LEN (sizeof(gsm7_table) / sizeof(gsm7_table[0]))

/*
 * Printable ASCII, most of most texts, lies in the table densely from its
 * fourth entry (U+0020), but for U+0060, which GSM-7 lacks: its entry is
 * found by index, not searched for (a send's text is looked up per
 * character, more than once). The index is checked, so that an edit of
 * the table can only make this slower, never wrong.
 */
static const struct gsm7_entry *gsm7_ascii(uint32_t cp)
{
	size_t i;

	if (cp < 0x20 || cp > 0x7E || cp == 0x60)
		return NULL;
	i = cp < 0x60 ? cp - 0x20 + 3 : cp - 0x61 + 67;
	return i < GSM7_TABLE_LEN && gsm7_table[i].cp == cp ? &gsm7_table[i] : NULL;
}

int smis_sms_gsm7_lookup(uint32_t cp, uint8_t *code)
{
	const struct gsm7_entry *e = gsm7_ascii(cp);
	size_t lo = 0;
	size_t hi = GSM7_TABLE_LEN;
	int cost = 0;

	if (e) {
		if (code)
			*code = e->code;
		return e->cost;
	}
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (gsm7_table[mid].cp == cp) {
			cost = gsm7_table[mid].cost;
			if (code)
				*code = gsm7_table[mid].code;
			break;
		}
		if (gsm7_table[mid].cp < cp)
			lo = mid + 1;
		else
			hi = mid;
	}
	return cost;
}

/*
 * Decode the code point at s[*pos], advancing *pos. Strict (the shared
 * decoder of lib/utf8_decode.c): a text the provider would mangle or reject
 * must be refused here, before it is billed.
 */
static int utf8_next(const unsigned char *s, size_t len, size_t *pos, uint32_t *cp)
{
	size_t n = smis_utf8_decode((const char *)s + *pos, len - *pos, cp);

	if (n == 0)
		return -EINVAL;
	*pos += n;
	return 0;
}

/* Septets, or UTF-16 code units, that one code point costs in `encoding`. */
static size_t char_cost(int encoding, uint32_t cp)
{
	if (encoding == SMIS_SMS_GSM7)
		return (size_t)smis_sms_gsm7_lookup(cp, NULL);
	return cp > 0xFFFF ? 2 : 1;
}

/* First pass: validate, pick the encoding, count characters and units. */
static int sms_scan(const unsigned char *s, size_t len, struct smis_sms_info *info)
{
	size_t pos = 0;
	size_t chars = 0;
	size_t septets = 0;
	size_t utf16 = 0;
	bool gsm = true;
	uint32_t cp;
	int ret = 0;

	while (pos < len) {
		int cost;

		ret = utf8_next(s, len, &pos, &cp);
		if (ret < 0)
			goto out;
		chars++;
		utf16 += cp > 0xFFFF ? 2 : 1;
		if (gsm) {
			cost = smis_sms_gsm7_lookup(cp, NULL);
			if (cost == 0)
				gsm = false;
			septets += (size_t)cost;
		}
	}
	info->encoding = gsm ? SMIS_SMS_GSM7 : SMIS_SMS_UCS2;
	info->chars = chars;
	info->units = gsm ? septets : utf16;
	info->parts = 1;
out:
	return ret;
}

/*
 * Second pass (text already validated): cut greedily like a phone. Writes at
 * most `max` start offsets when `offsets` is not NULL; returns the number of
 * parts needed.
 */
static size_t sms_cut(const unsigned char *s, size_t len, const struct smis_sms_info *info,
		      size_t *offsets, size_t max)
{
	size_t single = info->encoding == SMIS_SMS_GSM7 ? SMIS_SMS_GSM7_SINGLE : SMIS_SMS_UCS2_SINGLE;
	size_t limit = info->encoding == SMIS_SMS_GSM7 ? SMIS_SMS_GSM7_MULTI : SMIS_SMS_UCS2_MULTI;
	size_t parts = 1;
	size_t fill = 0;
	size_t pos = 0;
	uint32_t cp;

	if (offsets && max > 0)
		offsets[0] = 0;
	if (info->units <= single)
		goto out;
	while (pos < len) {
		size_t start = pos;
		size_t cost;

		(void)utf8_next(s, len, &pos, &cp);
		cost = char_cost(info->encoding, cp);
		/* A character that does not fit whole opens the next part: an
		 * escape or surrogate pair is never split. */
		if (fill + cost > limit) {
			if (offsets && parts < max)
				offsets[parts] = start;
			parts++;
			fill = 0;
		}
		fill += cost;
	}
out:
	return parts;
}

int smis_sms_analyze(const char *utf8, size_t len, struct smis_sms_info *out)
{
	const unsigned char *s = (const unsigned char *)utf8;
	struct smis_sms_info info;
	int ret = -EINVAL;

	if (!out || (!utf8 && len > 0))
		goto out;
	ret = sms_scan(s, len, &info);
	if (ret < 0)
		goto out;
	info.parts = sms_cut(s, len, &info, NULL, 0);
	*out = info;
out:
	return ret;
}

int smis_sms_split(const char *utf8, size_t len, size_t *offsets, size_t max_parts,
		   size_t *n_parts)
{
	const unsigned char *s = (const unsigned char *)utf8;
	struct smis_sms_info info;
	size_t parts;
	int ret = -EINVAL;

	if (!n_parts || (!utf8 && len > 0) || (!offsets && max_parts > 0))
		goto out;
	ret = sms_scan(s, len, &info);
	if (ret < 0)
		goto out;
	parts = sms_cut(s, len, &info, offsets, max_parts);
	*n_parts = parts;
	if (parts > max_parts)
		ret = -ENOBUFS;
out:
	return ret;
}

/*
 * GSM-7 stand-in for a character that has none, or NULL. Only characters a
 * reader would not notice changing are listed: punctuation and spaces that
 * word processors substitute, invisible characters, look-alike Greek
 * capitals. Letters with diacritics are real text and are never listed.
 */
static const char *lookalike(uint32_t cp)
{
	const char *r = NULL;

	switch (cp) {
	case 0x0060: /* ` grave accent */
	case 0x00B4: /* ´ acute accent */
	case 0x02BC: /* ʼ modifier apostrophe */
	case 0x2018: /* ‘ */
	case 0x2019: /* ’ */
	case 0x201A: /* ‚ */
	case 0x201B: /* ‛ */
	case 0x2032: /* ′ prime */
	case 0x2035: /* ‵ reversed prime */
	case 0x2039: /* ‹ */
	case 0x203A: /* › */
		r = "'";
		break;
	case 0x00AB: /* « */
	case 0x00BB: /* » */
	case 0x201C: /* “ */
	case 0x201D: /* ” */
	case 0x201E: /* „ */
	case 0x201F: /* ‟ */
	case 0x2033: /* ″ double prime */
	case 0x2036: /* ‶ */
		r = "\"";
		break;
	case 0x2010: /* ‐ hyphen */
	case 0x2011: /* ‑ non-breaking hyphen */
	case 0x2012: /* ‒ figure dash */
	case 0x2013: /* – en dash */
	case 0x2014: /* — em dash */
	case 0x2015: /* ― horizontal bar */
	case 0x2212: /* − minus sign */
	case 0x2022: /* • bullet */
	case 0x2023: /* ‣ triangular bullet */
	case 0x2043: /* ⁃ hyphen bullet */
	case 0x2219: /* ∙ bullet operator */
	case 0x25E6: /* ◦ white bullet */
		r = "-";
		break;
	case 0x2024: /* ․ one dot leader */
		r = ".";
		break;
	case 0x2025: /* ‥ two dot leader */
		r = "..";
		break;
	case 0x2026: /* … */
		r = "...";
		break;
	case 0x2044: /* ⁄ fraction slash */
	case 0x2215: /* ∕ division slash */
		r = "/";
		break;
	case 0x0009: /* TAB: phones render it badly anyway */
	case 0x00A0: /* NBSP */
	case 0x1680: /* ogham space mark */
	case 0x2000: case 0x2001: case 0x2002: case 0x2003: case 0x2004: case 0x2005:
	case 0x2006: case 0x2007: case 0x2008: case 0x2009: case 0x200A: /* en quad..hair */
	case 0x202F: /* narrow NBSP (French « ») */
	case 0x205F: /* medium mathematical space */
	case 0x3000: /* ideographic space */
		r = " ";
		break;
	case 0x2028: /* line separator */
	case 0x2029: /* paragraph separator */
		r = "\n";
		break;
	case 0x00AD: /* soft hyphen */
	case 0x200B: /* zero width space */
	case 0x200C: /* zero width non-joiner */
	case 0x200D: /* zero width joiner */
	case 0x2060: /* word joiner */
	case 0xFEFF: /* BOM / zero width no-break space */
		r = "";
		break;
	case 0x2126: /* Ω ohm sign -> Greek capital omega */
		r = "\xCE\xA9";
		break;
	case 0x2206: /* ∆ increment -> Greek capital delta */
		r = "\xCE\x94";
		break;
	/* Greek capitals identical to Latin ones (commented alternative
	 * mappings in GSM0338.TXT). */
	case 0x0391: r = "A"; break;
	case 0x0392: r = "B"; break;
	case 0x0395: r = "E"; break;
	case 0x0396: r = "Z"; break;
	case 0x0397: r = "H"; break;
	case 0x0399: r = "I"; break;
	case 0x039A: r = "K"; break;
	case 0x039C: r = "M"; break;
	case 0x039D: r = "N"; break;
	case 0x039F: r = "O"; break;
	case 0x03A1: r = "P"; break;
	case 0x03A4: r = "T"; break;
	case 0x03A5: r = "Y"; break;
	case 0x03A7: r = "X"; break;
	default:
		break;
	}
	return r;
}

int smis_sms_replace_lookalikes(const char *utf8, size_t len, char **out)
{
	const unsigned char *s = (const unsigned char *)utf8;
	size_t pos = 0;
	size_t out_len = 0;
	bool rewrite = true;
	char *buf = NULL;
	size_t w = 0;
	uint32_t cp;
	int ret = -EINVAL;

	if (!out || (!utf8 && len > 0))
		goto out;
	/* Pass 1: validate and size; any character with neither a GSM-7 form
	 * nor a stand-in keeps the text as it is (all or nothing). */
	while (pos < len) {
		size_t start = pos;
		const char *r;

		ret = utf8_next(s, len, &pos, &cp);
		if (ret < 0)
			goto out;
		if (smis_sms_gsm7_lookup(cp, NULL)) {
			out_len += pos - start;
		} else if ((r = lookalike(cp)) != NULL) {
			out_len += strlen(r);
		} else {
			rewrite = false;
			break;
		}
	}
	/* The rest of the text still has to be valid UTF-8. */
	while (pos < len) {
		ret = utf8_next(s, len, &pos, &cp);
		if (ret < 0)
			goto out;
	}
	if (!rewrite)
		out_len = len;
	ret = -ENOMEM;
	buf = malloc(out_len + 1);
	if (!buf)
		goto out;
	if (!rewrite) {
		if (len > 0)
			memcpy(buf, utf8, len);
		w = len;
	} else {
		pos = 0;
		while (pos < len) {
			size_t start = pos;
			const char *r;

			(void)utf8_next(s, len, &pos, &cp);
			r = smis_sms_gsm7_lookup(cp, NULL) ? NULL : lookalike(cp);
			if (r) {
				memcpy(buf + w, r, strlen(r));
				w += strlen(r);
			} else {
				memcpy(buf + w, utf8 + start, pos - start);
				w += pos - start;
			}
		}
	}
	buf[w] = '\0';
	*out = buf;
	buf = NULL;
	ret = 0;
out:
	free(buf);
	return ret;
}

const char *smis_sms_encoding_name(int encoding)
{
	const char *name = "unknown";

	if (encoding == SMIS_SMS_GSM7)
		name = "GSM-7";
	else if (encoding == SMIS_SMS_UCS2)
		name = "UCS-2";
	return name;
}
