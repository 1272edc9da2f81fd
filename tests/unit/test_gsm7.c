/*
 * test_gsm7.c - unit tests of lib/gsm7.c: the GSM 03.38 table, encoding
 * choice, segment counting and splitting, strict UTF-8, look-alike rewrite.
 *
 * The expected tables below are typed from the reference in septet order
 * (shared/reference/gsm-03.38-and-segments.md), independently of the
 * code-point-sorted table in the library, so a typo in either shows up.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <CUnit/Basic.h>
#include <CUnit/CUnit.h>

#include "gsm7.h"

#define NONE 0xFFFFFFFFu /* 0x1B: escape, no character */

static const uint32_t ref_basic[128] = {
	/* 0x00 */ 0x0040, 0x00A3, 0x0024, 0x00A5, 0x00E8, 0x00E9, 0x00F9, 0x00EC,
	/* 0x08 */ 0x00F2, 0x00E7, 0x000A, 0x00D8, 0x00F8, 0x000D, 0x00C5, 0x00E5,
	/* 0x10 */ 0x0394, 0x005F, 0x03A6, 0x0393, 0x039B, 0x03A9, 0x03A0, 0x03A8,
	/* 0x18 */ 0x03A3, 0x0398, 0x039E, NONE,   0x00C6, 0x00E6, 0x00DF, 0x00C9,
	/* 0x20 */ 0x0020, 0x0021, 0x0022, 0x0023, 0x00A4, 0x0025, 0x0026, 0x0027,
	/* 0x28 */ 0x0028, 0x0029, 0x002A, 0x002B, 0x002C, 0x002D, 0x002E, 0x002F,
	/* 0x30 */ 0x0030, 0x0031, 0x0032, 0x0033, 0x0034, 0x0035, 0x0036, 0x0037,
	/* 0x38 */ 0x0038, 0x0039, 0x003A, 0x003B, 0x003C, 0x003D, 0x003E, 0x003F,
	/* 0x40 */ 0x00A1, 0x0041, 0x0042, 0x0043, 0x0044, 0x0045, 0x0046, 0x0047,
	/* 0x48 */ 0x0048, 0x0049, 0x004A, 0x004B, 0x004C, 0x004D, 0x004E, 0x004F,
	/* 0x50 */ 0x0050, 0x0051, 0x0052, 0x0053, 0x0054, 0x0055, 0x0056, 0x0057,
	/* 0x58 */ 0x0058, 0x0059, 0x005A, 0x00C4, 0x00D6, 0x00D1, 0x00DC, 0x00A7,
	/* 0x60 */ 0x00BF, 0x0061, 0x0062, 0x0063, 0x0064, 0x0065, 0x0066, 0x0067,
	/* 0x68 */ 0x0068, 0x0069, 0x006A, 0x006B, 0x006C, 0x006D, 0x006E, 0x006F,
	/* 0x70 */ 0x0070, 0x0071, 0x0072, 0x0073, 0x0074, 0x0075, 0x0076, 0x0077,
	/* 0x78 */ 0x0078, 0x0079, 0x007A, 0x00E4, 0x00F6, 0x00F1, 0x00FC, 0x00E0,
};

static const struct {
	uint8_t code;
	uint32_t cp;
} ref_ext[] = {
	{0x0A, 0x000C}, {0x14, 0x005E}, {0x28, 0x007B}, {0x29, 0x007D}, {0x2F, 0x005C},
	{0x3C, 0x005B}, {0x3D, 0x007E}, {0x3E, 0x005D}, {0x40, 0x007C}, {0x65, 0x20AC},
};

#define N_EXT (sizeof(ref_ext) / sizeof(ref_ext[0]))

/* ------------------------------------------------------------------ */
/* helpers                                                             */
/* ------------------------------------------------------------------ */

static size_t put_utf8(char *b, uint32_t cp)
{
	size_t n;

	if (cp < 0x80) {
		b[0] = (char)cp;
		n = 1;
	} else if (cp < 0x800) {
		b[0] = (char)(0xC0 | (cp >> 6));
		b[1] = (char)(0x80 | (cp & 0x3F));
		n = 2;
	} else if (cp < 0x10000) {
		b[0] = (char)(0xE0 | (cp >> 12));
		b[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
		b[2] = (char)(0x80 | (cp & 0x3F));
		n = 3;
	} else {
		b[0] = (char)(0xF0 | (cp >> 18));
		b[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
		b[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
		b[3] = (char)(0x80 | (cp & 0x3F));
		n = 4;
	}
	return n;
}

/* A growing test text; aborts the test program on OOM (tests only). */
struct text {
	char buf[4096];
	size_t len;
};

static void t_reset(struct text *t)
{
	t->len = 0;
}

static void t_add(struct text *t, const char *utf8, size_t times)
{
	size_t n = strlen(utf8);
	size_t i;

	for (i = 0; i < times; i++) {
		if (t->len + n >= sizeof(t->buf))
			abort();
		memcpy(t->buf + t->len, utf8, n);
		t->len += n;
	}
}

static void analyze_ok(const char *s, size_t len, struct smis_sms_info *info)
{
	memset(info, 0xA5, sizeof(*info));
	CU_ASSERT_EQUAL_FATAL(smis_sms_analyze(s, len, info), 0);
}

static void check(const struct text *t, int enc, size_t chars, size_t units, size_t parts)
{
	struct smis_sms_info info;

	analyze_ok(t->buf, t->len, &info);
	CU_ASSERT_EQUAL(info.encoding, enc);
	CU_ASSERT_EQUAL(info.chars, chars);
	CU_ASSERT_EQUAL(info.units, units);
	CU_ASSERT_EQUAL(info.parts, parts);
}

/* Byte offsets where each part starts, via smis_sms_split. */
static size_t split_ok(const struct text *t, size_t *offsets, size_t max)
{
	size_t n = 0;

	CU_ASSERT_EQUAL_FATAL(smis_sms_split(t->buf, t->len, offsets, max, &n), 0);
	return n;
}

/* ------------------------------------------------------------------ */
/* the table                                                           */
/* ------------------------------------------------------------------ */

static void test_basic_table(void)
{
	char b[8];
	unsigned sep;

	for (sep = 0; sep < 128; sep++) {
		struct smis_sms_info info;
		uint8_t code = 0xFF;
		size_t n;

		if (ref_basic[sep] == NONE)
			continue;
		n = put_utf8(b, ref_basic[sep]);
		analyze_ok(b, n, &info);
		CU_ASSERT_EQUAL(info.encoding, SMIS_SMS_GSM7);
		CU_ASSERT_EQUAL(info.chars, 1);
		CU_ASSERT_EQUAL(info.units, 1);
		CU_ASSERT_EQUAL(info.parts, 1);
		CU_ASSERT_EQUAL(smis_sms_gsm7_lookup(ref_basic[sep], &code), 1);
		if (code != sep)
			fprintf(stderr, "U+%04X: septet 0x%02X, want 0x%02X\n", ref_basic[sep],
				code, sep);
		CU_ASSERT_EQUAL(code, sep);
	}
}

static void test_cedilla_both_cases(void)
{
	struct smis_sms_info info;
	uint8_t code = 0;

	CU_ASSERT_EQUAL(smis_sms_gsm7_lookup(0x00C7, &code), 1);
	CU_ASSERT_EQUAL(code, 0x09);
	CU_ASSERT_EQUAL(smis_sms_gsm7_lookup(0x00E7, &code), 1);
	CU_ASSERT_EQUAL(code, 0x09);
	analyze_ok("Ça va, garçon", strlen("Ça va, garçon"), &info);
	CU_ASSERT_EQUAL(info.encoding, SMIS_SMS_GSM7);
	CU_ASSERT_EQUAL(info.units, 13);
	CU_ASSERT_EQUAL(info.chars, 13);
}

static void test_extension_table(void)
{
	char b[8];
	size_t i;

	for (i = 0; i < N_EXT; i++) {
		struct smis_sms_info info;
		uint8_t code = 0xFF;
		size_t n = put_utf8(b, ref_ext[i].cp);

		analyze_ok(b, n, &info);
		CU_ASSERT_EQUAL(info.encoding, SMIS_SMS_GSM7);
		CU_ASSERT_EQUAL(info.chars, 1);
		CU_ASSERT_EQUAL(info.units, 2);
		CU_ASSERT_EQUAL(info.parts, 1);
		CU_ASSERT_EQUAL(smis_sms_gsm7_lookup(ref_ext[i].cp, &code), 2);
		CU_ASSERT_EQUAL(code, ref_ext[i].code);
	}
}

/* Nothing outside the reference maps to GSM-7 (NBSP, Greek look-alikes, `). */
static void test_table_exhaustive(void)
{
	size_t hits = 0;
	uint32_t cp;

	for (cp = 0; cp <= 0x10FFFF; cp++) {
		uint8_t code;
		int cost = smis_sms_gsm7_lookup(cp, &code);
		bool ok = false;
		size_t i;

		if (cost == 0)
			continue;
		hits++;
		if (cost == 1)
			ok = (code < 128 && ref_basic[code] == cp) || (cp == 0x00C7 && code == 0x09);
		for (i = 0; cost == 2 && i < N_EXT; i++)
			ok = ok || (ref_ext[i].cp == cp && ref_ext[i].code == code);
		if (!ok)
			fprintf(stderr, "unexpected GSM-7 mapping U+%04X -> %d/0x%02X\n", cp, cost,
				code);
		CU_ASSERT(ok);
	}
	/* 127 basic (no ESC) + capital Ç + 10 extension characters */
	CU_ASSERT_EQUAL(hits, 127 + 1 + N_EXT);
}

/* ------------------------------------------------------------------ */
/* encoding choice                                                     */
/* ------------------------------------------------------------------ */

static void test_non_gsm_forces_ucs2(void)
{
	static const struct {
		const char *s;
		size_t units;
	} cases[] = {
		{"ê", 1},  {"œ", 1},  {"Œ", 1}, {"’", 1}, {"“", 1}, {"–", 1}, {"…", 1},
		{"中", 1}, {"ô", 1},  {"`", 1}, {"\t", 1}, {"\xC2\xA0", 1}, /* NBSP */
		{"Α", 1}, /* Greek capital alpha, not Latin A */
		{"😀", 2}, {"\xF4\x8F\xBF\xBF", 2}, /* U+10FFFF */
	};
	size_t i;
	struct text t;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		t_reset(&t);
		t_add(&t, "Hello {world} ", 1); /* extension chars count 1 in UCS-2 */
		t_add(&t, cases[i].s, 1);
		check(&t, SMIS_SMS_UCS2, 15, 14 + cases[i].units, 1);
	}
}

static void test_realistic_texts(void)
{
	struct text t;

	t_reset(&t);
	t_add(&t, "Uw afspraak bij het OCMW op 12/03 om 14u is bevestigd.", 1);
	check(&t, SMIS_SMS_GSM7, 54, 54, 1);
	t_reset(&t);
	t_add(&t, "Größe: 5 € für Müller", 1); /* € costs 2 */
	check(&t, SMIS_SMS_GSM7, 21, 22, 1);
	t_reset(&t);
	t_add(&t, "Votre rendez-vous à l'hôpital", 1); /* ô */
	check(&t, SMIS_SMS_UCS2, 29, 29, 1);
	t_reset(&t);
	t_add(&t, "Votre rendez-vous à l’hopital", 1); /* typographic apostrophe */
	check(&t, SMIS_SMS_UCS2, 29, 29, 1);
}

static void test_empty(void)
{
	struct smis_sms_info info;
	size_t off[2] = {99, 99};
	size_t n = 0;

	analyze_ok("", 0, &info);
	CU_ASSERT_EQUAL(info.encoding, SMIS_SMS_GSM7);
	CU_ASSERT_EQUAL(info.chars, 0);
	CU_ASSERT_EQUAL(info.units, 0);
	CU_ASSERT_EQUAL(info.parts, 1);
	analyze_ok(NULL, 0, &info);
	CU_ASSERT_EQUAL(info.parts, 1);
	CU_ASSERT_EQUAL(smis_sms_split("", 0, off, 2, &n), 0);
	CU_ASSERT_EQUAL(n, 1);
	CU_ASSERT_EQUAL(off[0], 0);
	CU_ASSERT_EQUAL(off[1], 99);
}

static void test_embedded_nul(void)
{
	struct smis_sms_info info;

	/* U+0000 is valid UTF-8 but not GSM-7 (septet 0x00 is '@'). */
	analyze_ok("a\0b", 3, &info);
	CU_ASSERT_EQUAL(info.encoding, SMIS_SMS_UCS2);
	CU_ASSERT_EQUAL(info.chars, 3);
	/* only `len` bytes are read */
	analyze_ok("ab\xFF", 2, &info);
	CU_ASSERT_EQUAL(info.chars, 2);
}

/* ------------------------------------------------------------------ */
/* GSM-7 segments                                                      */
/* ------------------------------------------------------------------ */

static void test_gsm7_boundaries(void)
{
	struct text t;

	t_reset(&t);
	t_add(&t, "a", 159);
	check(&t, SMIS_SMS_GSM7, 159, 159, 1);
	t_add(&t, "a", 1);
	check(&t, SMIS_SMS_GSM7, 160, 160, 1);
	t_add(&t, "a", 1);
	check(&t, SMIS_SMS_GSM7, 161, 161, 2);
	t_reset(&t);
	t_add(&t, "a", 306);
	check(&t, SMIS_SMS_GSM7, 306, 306, 2);
	t_add(&t, "a", 1);
	check(&t, SMIS_SMS_GSM7, 307, 307, 3);
	t_reset(&t);
	t_add(&t, "a", 459);
	check(&t, SMIS_SMS_GSM7, 459, 459, 3);
	t_add(&t, "a", 1);
	check(&t, SMIS_SMS_GSM7, 460, 460, 4);

	/* The extension cost decides the single-part limit: 158 + 2 = 160. */
	t_reset(&t);
	t_add(&t, "a", 158);
	t_add(&t, "€", 1);
	check(&t, SMIS_SMS_GSM7, 159, 160, 1);
	t_reset(&t);
	t_add(&t, "a", 159);
	t_add(&t, "[", 1);
	check(&t, SMIS_SMS_GSM7, 160, 161, 2);
	/* 80 extension chars = 160 septets, 81 = 162 */
	t_reset(&t);
	t_add(&t, "|", 80);
	check(&t, SMIS_SMS_GSM7, 80, 160, 1);
	t_add(&t, "|", 1);
	check(&t, SMIS_SMS_GSM7, 81, 162, 2);
}

static void test_gsm7_escape_straddle(void)
{
	struct text t;
	size_t off[4];
	size_t n;

	/* ESC would land at septet 153 and its code at 154: € opens part 2. */
	t_reset(&t);
	t_add(&t, "a", 152);
	t_add(&t, "€", 1);
	t_add(&t, "b", 10);
	check(&t, SMIS_SMS_GSM7, 163, 164, 2);
	n = split_ok(&t, off, 4);
	CU_ASSERT_EQUAL(n, 2);
	CU_ASSERT_EQUAL(off[0], 0);
	CU_ASSERT_EQUAL(off[1], 152);

	/* 306 septets would fit ceil(306/153) = 2 parts, but part 1 can only
	 * hold 152, so the 153 remaining septets spill into a third part. */
	t_reset(&t);
	t_add(&t, "a", 152);
	t_add(&t, "€", 1);
	t_add(&t, "b", 152);
	check(&t, SMIS_SMS_GSM7, 305, 306, 3);
	n = split_ok(&t, off, 4);
	CU_ASSERT_EQUAL(n, 3);
	CU_ASSERT_EQUAL(off[1], 152);
	CU_ASSERT_EQUAL(off[2], 152 + 3 + 151); /* € (3 bytes) + 151 b = 153 septets */

	/* Exactly fitting: 151 a + € = 153 septets, nothing moves. */
	t_reset(&t);
	t_add(&t, "a", 151);
	t_add(&t, "€", 1);
	t_add(&t, "b", 10);
	check(&t, SMIS_SMS_GSM7, 162, 163, 2);
	n = split_ok(&t, off, 4);
	CU_ASSERT_EQUAL(n, 2);
	CU_ASSERT_EQUAL(off[1], 151 + 3);
}

/* ------------------------------------------------------------------ */
/* UCS-2 segments                                                      */
/* ------------------------------------------------------------------ */

static void test_ucs2_boundaries(void)
{
	struct text t;

	t_reset(&t);
	t_add(&t, "ê", 1);
	t_add(&t, "a", 69);
	check(&t, SMIS_SMS_UCS2, 70, 70, 1);
	t_add(&t, "a", 1);
	check(&t, SMIS_SMS_UCS2, 71, 71, 2);
	t_reset(&t);
	t_add(&t, "ê", 134);
	check(&t, SMIS_SMS_UCS2, 134, 134, 2);
	t_add(&t, "ê", 1);
	check(&t, SMIS_SMS_UCS2, 135, 135, 3);
	/* GSM-7 characters in a UCS-2 text cost 1 unit, extension ones too */
	t_reset(&t);
	t_add(&t, "€", 69);
	t_add(&t, "ê", 1);
	check(&t, SMIS_SMS_UCS2, 70, 70, 1);
	/* emoji = 2 units: 35 emoji fill one SMS, 36 need two */
	t_reset(&t);
	t_add(&t, "😀", 35);
	check(&t, SMIS_SMS_UCS2, 35, 70, 1);
	t_add(&t, "😀", 1);
	check(&t, SMIS_SMS_UCS2, 36, 72, 2);
	t_reset(&t);
	t_add(&t, "ê", 1);
	t_add(&t, "a", 67);
	t_add(&t, "😀", 1);
	check(&t, SMIS_SMS_UCS2, 69, 70, 1);
}

static void test_ucs2_surrogate_straddle(void)
{
	struct text t;
	size_t off[4];
	size_t n;

	/* units 1..66 filled, the emoji would take 67 and 68: it opens part 2 */
	t_reset(&t);
	t_add(&t, "ê", 1);
	t_add(&t, "a", 65);
	t_add(&t, "😀", 1);
	t_add(&t, "b", 10);
	check(&t, SMIS_SMS_UCS2, 77, 78, 2);
	n = split_ok(&t, off, 4);
	CU_ASSERT_EQUAL(n, 2);
	CU_ASSERT_EQUAL(off[1], 2 + 65);

	/* 134 units would be 2 parts by division; the straddle makes it 3 */
	t_reset(&t);
	t_add(&t, "ê", 1);
	t_add(&t, "a", 65);
	t_add(&t, "😀", 1);
	t_add(&t, "b", 66);
	check(&t, SMIS_SMS_UCS2, 133, 134, 3);
	n = split_ok(&t, off, 4);
	CU_ASSERT_EQUAL(n, 3);
	CU_ASSERT_EQUAL(off[1], 67);
	CU_ASSERT_EQUAL(off[2], 67 + 4 + 65);
}

/* ------------------------------------------------------------------ */
/* split                                                               */
/* ------------------------------------------------------------------ */

static size_t cost_of(int enc, uint32_t cp)
{
	if (enc == SMIS_SMS_GSM7)
		return (size_t)smis_sms_gsm7_lookup(cp, NULL);
	return cp > 0xFFFF ? 2 : 1;
}

/* Decode the (valid, test-made) UTF-8 code point at s[*pos]. */
static uint32_t next_cp(const char *s, size_t *pos)
{
	const unsigned char *u = (const unsigned char *)s + *pos;
	uint32_t cp;
	size_t n;

	if (u[0] < 0x80) {
		cp = u[0];
		n = 1;
	} else if (u[0] < 0xE0) {
		cp = ((uint32_t)(u[0] & 0x1F) << 6) | (u[1] & 0x3F);
		n = 2;
	} else if (u[0] < 0xF0) {
		cp = ((uint32_t)(u[0] & 0x0F) << 12) | ((uint32_t)(u[1] & 0x3F) << 6) | (u[2] & 0x3F);
		n = 3;
	} else {
		cp = ((uint32_t)(u[0] & 0x07) << 18) | ((uint32_t)(u[1] & 0x3F) << 12) |
		     ((uint32_t)(u[2] & 0x3F) << 6) | (u[3] & 0x3F);
		n = 4;
	}
	*pos += n;
	return cp;
}

/* Every split must agree with analyze, respect the limits, cut on character
 * boundaries, and be greedy (a part is only closed when the next character
 * does not fit), which is what "as a phone would" means. */
static void check_split(const struct text *t)
{
	struct smis_sms_info info;
	size_t off[64];
	size_t n, i, total = 0;

	analyze_ok(t->buf, t->len, &info);
	n = split_ok(t, off, 64);
	CU_ASSERT_EQUAL_FATAL(n, info.parts);
	CU_ASSERT_EQUAL(off[0], 0);
	for (i = 0; i < n; i++) {
		size_t end = i + 1 < n ? off[i + 1] : t->len;
		size_t limit = n == 1 ? (info.encoding == SMIS_SMS_GSM7 ? 160 : 70)
				      : (info.encoding == SMIS_SMS_GSM7 ? 153 : 67);
		size_t pos = off[i];
		size_t units = 0;
		struct smis_sms_info sub;

		CU_ASSERT_FATAL(end > off[i] || t->len == 0);
		/* the part alone is valid UTF-8: cut on a character boundary */
		CU_ASSERT_EQUAL(smis_sms_analyze(t->buf + off[i], end - off[i], &sub), 0);
		while (pos < end)
			units += cost_of(info.encoding, next_cp(t->buf, &pos));
		CU_ASSERT(units <= limit);
		if (i + 1 < n) {
			size_t p2 = end;

			CU_ASSERT(units + cost_of(info.encoding, next_cp(t->buf, &p2)) > limit);
		}
		total += units;
	}
	CU_ASSERT_EQUAL(total, info.units);
}

static void test_split_consistency(void)
{
	static const char *const pieces[] = {"a", "€", "ê", "😀", "[", "é", "中", "|"};
	struct text t;
	unsigned seed = 12345;
	int round;

	for (round = 0; round < 400; round++) {
		size_t len = (size_t)(round % 200) * 3 + (size_t)round / 200;
		/* one alphabet per round so both encodings get long texts */
		size_t alpha = round % 3 == 0 ? 8 : (round % 3 == 1 ? 2 : 4);
		size_t i;

		t_reset(&t);
		for (i = 0; i < len; i++) {
			seed = seed * 1103515245u + 12345u;
			t_add(&t, pieces[(seed >> 16) % alpha], 1);
		}
		if (round % 3 == 1 && len > 0)
			t_add(&t, "[", 1);
		check_split(&t);
	}
	t_reset(&t);
	check_split(&t);
}

static void test_split_enobufs(void)
{
	struct text t;
	size_t off[3] = {7, 7, 7};
	size_t n = 0;

	t_reset(&t);
	t_add(&t, "a", 400); /* 3 parts: 153 + 153 + 94 */
	CU_ASSERT_EQUAL(smis_sms_split(t.buf, t.len, off, 2, &n), -ENOBUFS);
	CU_ASSERT_EQUAL(n, 3);
	CU_ASSERT_EQUAL(off[0], 0);
	CU_ASSERT_EQUAL(off[1], 153);
	CU_ASSERT_EQUAL(off[2], 7); /* nothing written beyond max_parts */
	n = 0;
	CU_ASSERT_EQUAL(smis_sms_split(t.buf, t.len, NULL, 0, &n), -ENOBUFS);
	CU_ASSERT_EQUAL(n, 3);
	CU_ASSERT_EQUAL(smis_sms_split(t.buf, t.len, off, 3, &n), 0);
	CU_ASSERT_EQUAL(off[2], 306);
	CU_ASSERT_EQUAL(smis_sms_split(t.buf, t.len, NULL, 3, &n), -EINVAL);
	CU_ASSERT_EQUAL(smis_sms_split(t.buf, t.len, off, 3, NULL), -EINVAL);
}

/* ------------------------------------------------------------------ */
/* strict UTF-8                                                        */
/* ------------------------------------------------------------------ */

static void test_invalid_utf8(void)
{
	static const char *const bad[] = {
		"\xC0\x80",             /* overlong NUL */
		"\xC1\xBF",             /* overlong U+007F */
		"\xE0\x80\x80",         /* overlong, 3 bytes */
		"\xE0\x9F\xBF",         /* overlong U+07FF */
		"\xF0\x80\x80\x80",     /* overlong, 4 bytes */
		"\xF0\x8F\xBF\xBF",     /* overlong U+FFFF */
		"\xED\xA0\x80",         /* U+D800 */
		"\xED\xBF\xBF",         /* U+DFFF */
		"\xED\xA0\xBD\xED\xB8\x80", /* CESU-8 surrogate pair */
		"\xF4\x90\x80\x80",     /* U+110000 */
		"\xF5\x80\x80\x80",     /* lead byte F5 */
		"\xF8\x88\x80\x80\x80", /* 5-byte form */
		"\xFF",
		"\xFE",
		"\x80",                 /* stray continuation */
		("a\xBF" "b"), /* split: \xBFb would be one escape */
		"\xC3",                 /* truncated */
		"\xE2\x82",             /* truncated € */
		"ok \xF0\x9F\x98",      /* truncated emoji at the end */
		"\xC3\x28",             /* bad continuation */
		"\xE2\x28\xA1",
		"\xF0\x9F\x98\x28",
	};
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct smis_sms_info info = {.encoding = 42, .chars = 42, .units = 42, .parts = 42};
		size_t len = strlen(bad[i]);
		char *out = (char *)&info;
		size_t off[2];
		size_t n = 42;
		struct text t;

		CU_ASSERT_EQUAL(smis_sms_analyze(bad[i], len, &info), -EINVAL);
		CU_ASSERT(info.encoding == 42 && info.chars == 42 && info.units == 42 &&
			  info.parts == 42);
		CU_ASSERT_EQUAL(smis_sms_split(bad[i], len, off, 2, &n), -EINVAL);
		CU_ASSERT_EQUAL(smis_sms_replace_lookalikes(bad[i], len, &out), -EINVAL);
		CU_ASSERT_PTR_EQUAL(out, (char *)&info);
		/* also when the bad bytes follow a long valid (and rewritable) text */
		t_reset(&t);
		t_add(&t, "“a”", 100);
		t_add(&t, bad[i], 1);
		CU_ASSERT_EQUAL(smis_sms_analyze(t.buf, t.len, &info), -EINVAL);
		CU_ASSERT_EQUAL(smis_sms_replace_lookalikes(t.buf, t.len, &out), -EINVAL);
		t_reset(&t);
		t_add(&t, "ê", 1); /* replace stops rewriting at ê: still validates */
		t_add(&t, bad[i], 1);
		CU_ASSERT_EQUAL(smis_sms_replace_lookalikes(t.buf, t.len, &out), -EINVAL);
		CU_ASSERT_PTR_EQUAL(out, (char *)&info);
	}
	CU_ASSERT_EQUAL(smis_sms_analyze("a", 1, NULL), -EINVAL);
	CU_ASSERT_EQUAL(smis_sms_replace_lookalikes("a", 1, NULL), -EINVAL);
}

static void test_valid_utf8_edges(void)
{
	static const struct {
		const char *s;
		size_t units;
	} ok[] = {
		{"\x7F", 1},             {"\xC2\x80", 1},     {"\xDF\xBF", 1},
		{"\xE0\xA0\x80", 1},     {"\xED\x9F\xBF", 1}, /* U+D7FF */
		{"\xEE\x80\x80", 1},     /* U+E000 */
		{"\xEF\xBF\xBF", 1},     /* U+FFFF */
		{"\xF0\x90\x80\x80", 2}, /* U+10000 */
		{"\xF4\x8F\xBF\xBF", 2}, /* U+10FFFF */
	};
	size_t i;

	for (i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		struct smis_sms_info info;

		analyze_ok(ok[i].s, strlen(ok[i].s), &info);
		CU_ASSERT_EQUAL(info.encoding, SMIS_SMS_UCS2);
		CU_ASSERT_EQUAL(info.chars, 1);
		CU_ASSERT_EQUAL(info.units, ok[i].units);
	}
}

/* ------------------------------------------------------------------ */
/* look-alike rewrite                                                  */
/* ------------------------------------------------------------------ */

static void check_replace(const char *in, const char *want)
{
	char *out = NULL;

	CU_ASSERT_EQUAL_FATAL(smis_sms_replace_lookalikes(in, strlen(in), &out), 0);
	CU_ASSERT_PTR_NOT_NULL_FATAL(out);
	if (strcmp(out, want) != 0)
		fprintf(stderr, "replace(\"%s\") = \"%s\", want \"%s\"\n", in, out, want);
	CU_ASSERT_STRING_EQUAL(out, want);
	free(out);
}

static void test_lookalikes_to_gsm7(void)
{
	const char *in = "‘Hello’ — “wereld” … «ok» • x\xC2\xA0y – ‚a‛ „b“ ‐‑‒―";
	const char *want = "'Hello' - \"wereld\" ... \"ok\" - x y - 'a' \"b\" ----";
	struct smis_sms_info info;
	char *out = NULL;

	analyze_ok(in, strlen(in), &info);
	CU_ASSERT_EQUAL(info.encoding, SMIS_SMS_UCS2);
	CU_ASSERT_EQUAL_FATAL(smis_sms_replace_lookalikes(in, strlen(in), &out), 0);
	CU_ASSERT_STRING_EQUAL(out, want);
	analyze_ok(out, strlen(out), &info);
	CU_ASSERT_EQUAL(info.encoding, SMIS_SMS_GSM7);
	free(out);

	check_replace("l’hôpital", "l’hôpital"); /* ô is real text: all unchanged */
	check_replace("l’hopital", "l'hopital");
	check_replace("Ça coûte 5 €", "Ça coûte 5 €");
	check_replace("Ça coute 5\xE2\x80\xAF€ [x]", "Ça coute 5 € [x]"); /* narrow NBSP */
	check_replace("a\xC2\xAD" "b\xE2\x80\x8B" "c\xEF\xBB\xBF", "abc"); /* invisible */
	check_replace("a\tb\xE2\x80\xA8" "c", "a b\nc");
	check_replace("ΑΒΓΔ ΟΚ", "ABΓΔ OK"); /* Γ and Δ are GSM-7, Greek Α Β Ο Κ are not */
	check_replace("10\xE2\x84\xA6", "10Ω"); /* ohm sign -> omega */
	check_replace("`x´", "'x'");
	check_replace("", "");
}

static void test_lookalikes_leave_real_text(void)
{
	static const char *const keep[] = {
		"Fête – “ok”", "ê", "œuvre…", "Merci 😀 – à bientôt", "中文 “x”", "a\x7F",
		"Kôn – dù", "Plain GSM-7 text: @£$¥èéùìòÇØøÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ {}[]~^\\|€\f\r\n",
	};
	size_t i;

	for (i = 0; i < sizeof(keep) / sizeof(keep[0]); i++)
		check_replace(keep[i], keep[i]);
}

/* Whatever the rewrite produces must be GSM-7: any BMP character that is
 * rewritten at all must come out GSM-7, and GSM-7 ones never change. */
static void test_lookalikes_always_gsm7(void)
{
	uint32_t cp;
	size_t rewritten = 0;

	for (cp = 0; cp < 0x10000; cp++) {
		char in[8];
		size_t n;
		char *out = NULL;
		struct smis_sms_info info;
		bool same;

		if (cp >= 0xD800 && cp <= 0xDFFF)
			continue;
		n = put_utf8(in, cp);
		in[n] = '\0';
		CU_ASSERT_EQUAL_FATAL(smis_sms_replace_lookalikes(in, n, &out), 0);
		same = strlen(out) == n && memcmp(out, in, n) == 0;
		if (cp == 0)
			same = out[0] == '\0'; /* U+0000: copied, reads as "" */
		if (smis_sms_gsm7_lookup(cp, NULL))
			CU_ASSERT(same);
		if (!same) {
			rewritten++;
			analyze_ok(out, strlen(out), &info);
			CU_ASSERT_EQUAL(info.encoding, SMIS_SMS_GSM7);
		}
		free(out);
	}
	CU_ASSERT(rewritten > 50);
}

static void test_encoding_name(void)
{
	CU_ASSERT_STRING_EQUAL(smis_sms_encoding_name(SMIS_SMS_GSM7), "GSM-7");
	CU_ASSERT_STRING_EQUAL(smis_sms_encoding_name(SMIS_SMS_UCS2), "UCS-2");
	CU_ASSERT_STRING_EQUAL(smis_sms_encoding_name(3), "unknown");
}

int main(void)
{
	static const struct {
		const char *name;
		CU_TestFunc fn;
	} tests[] = {
		{"basic table", test_basic_table},
		{"C cedilla both cases", test_cedilla_both_cases},
		{"extension table", test_extension_table},
		{"no mapping outside the table", test_table_exhaustive},
		{"non-GSM characters force UCS-2", test_non_gsm_forces_ucs2},
		{"realistic texts", test_realistic_texts},
		{"empty text", test_empty},
		{"embedded NUL and len", test_embedded_nul},
		{"GSM-7 boundaries", test_gsm7_boundaries},
		{"GSM-7 escape pair straddle", test_gsm7_escape_straddle},
		{"UCS-2 boundaries", test_ucs2_boundaries},
		{"UCS-2 surrogate pair straddle", test_ucs2_surrogate_straddle},
		{"split consistency", test_split_consistency},
		{"split -ENOBUFS", test_split_enobufs},
		{"invalid UTF-8", test_invalid_utf8},
		{"valid UTF-8 edges", test_valid_utf8_edges},
		{"look-alikes to GSM-7", test_lookalikes_to_gsm7},
		{"look-alikes leave real text", test_lookalikes_leave_real_text},
		{"look-alikes always yield GSM-7", test_lookalikes_always_gsm7},
		{"encoding names", test_encoding_name},
	};
	CU_pSuite suite;
	unsigned failures = 1;
	size_t i;

	if (CU_initialize_registry() != CUE_SUCCESS)
		goto out;
	suite = CU_add_suite("gsm7", NULL, NULL);
	if (!suite)
		goto out_cleanup;
	for (i = 0; i < sizeof(tests) / sizeof(tests[0]); i++)
		if (!CU_add_test(suite, tests[i].name, tests[i].fn))
			goto out_cleanup;
	CU_basic_set_mode(CU_BRM_VERBOSE);
	if (CU_basic_run_tests() != CUE_SUCCESS)
		goto out_cleanup;
	failures = CU_get_number_of_failures();
out_cleanup:
	CU_cleanup_registry();
out:
	return failures ? 1 : 0;
}
