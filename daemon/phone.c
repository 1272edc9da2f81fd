/*
 * phone.c - E.164 normalisation (rules from ../shared/reference/
 * belgian-mobile-numbers.md: BE mobile = +32 4[5-9] + 7 digits).
 */
#include "config.h"

#include <string.h>

#include "phone.h"

/* Separators people put in numbers; anything else that is not a digit (or
 * a leading '+') makes the input invalid rather than guessed at. */
static int is_separator(char c)
{
	return c == ' ' || c == '.' || c == '-' || c == '/' || c == '(' || c == ')' ||
	       c == '\t';
}

static int is_be_mobile(const char *national)
{
	if (strlen(national) != 9 || national[0] != '4')
		return 0;
	return national[1] >= '5' && national[1] <= '9';
}

/* Countries whose numbers keep their leading 0 when dialled from abroad:
 * Italy (and the Vatican's +39 06 698), San Marino (+378 0549) and Côte
 * d'Ivoire (10-digit numbers since 2021, +225 07...). There a "(0)" is
 * part of the number, not a trunk prefix. */
static const char *const zero_kept[] = { "39", "378", "225" };

static int keeps_zero(const char *code, size_t len)
{
	for (size_t i = 0; i < sizeof(zero_kept) / sizeof(zero_kept[0]); i++)
		if (strlen(zero_kept[i]) == len && memcmp(zero_kept[i], code, len) == 0)
			return 1;
	return 0;
}

/* "+44 (0)7700 900123": the national trunk 0, written in parentheses after
 * the country code, is not dialled from abroad. `trunk` is the index in
 * `digits` of the 0 read from "(0)" (-1: none), `cc` that of the country
 * code's first digit: the 0 goes when 1 to 3 digits (a calling code) come
 * before it, unless that code's numbers keep it; elsewhere it is kept, as
 * before. */
static void drop_trunk_zero(char *digits, size_t *n, long trunk, size_t cc)
{
	if (trunk < 0 || (size_t)trunk <= cc || (size_t)trunk - cc > 3 ||
	    keeps_zero(digits + cc, (size_t)trunk - cc))
		return;
	memmove(digits + trunk, digits + trunk + 1, *n - (size_t)trunk); /* with the NUL */
	(*n)--;
}

enum smisd_phone_result smisd_phone_normalise(const char *in, char *out,
					      const char *const *allowed_cc)
{
	char digits[32];
	size_t n = 0;
	long trunk = -1;
	int plus = 0;
	const char *p = in;

	out[0] = '\0';
	if (!in)
		return SMISD_PHONE_INVALID;
	while (is_separator(*p))
		p++;
	if (*p == '+') {
		plus = 1;
		p++;
	}
	for (; *p; p++) {
		if (*p >= '0' && *p <= '9') {
			if (n + 1 >= sizeof(digits))
				return SMISD_PHONE_INVALID;
			if (trunk < 0 && p > in && strncmp(p - 1, "(0)", 3) == 0)
				trunk = (long)n;
			digits[n++] = *p;
		} else if (!is_separator(*p)) {
			return SMISD_PHONE_INVALID;
		}
	}
	digits[n] = '\0';

	const char *intl; /* digits after the country code's leading '+' */
	/* "32" + the digits after the trunk 0 + NUL: one byte more than
	 * digits[] holds (an off-by-one here let 31 digits write past it,
	 * found by tests/fuzz/fuzz_phone). */
	char buf[sizeof(digits) + 1];
	if (plus) {
		drop_trunk_zero(digits, &n, trunk, 0);
		intl = digits;
	} else if (n > 2 && digits[0] == '0' && digits[1] == '0') {
		drop_trunk_zero(digits, &n, trunk, 2);
		intl = digits + 2;
	} else if (n > 1 && digits[0] == '0') {
		/* Belgian national form: trunk 0 replaced by 32. */
		memcpy(buf, "32", 2);
		memcpy(buf + 2, digits + 1, n); /* includes NUL */
		intl = buf;
	} else {
		return SMISD_PHONE_INVALID;
	}

	/* "+32 0470...": the Belgian trunk 0 written after the code without
	 * parentheses (with them, drop_trunk_zero() took it out). */
	char fixed[32];
	if (strncmp(intl, "320", 3) == 0 && strlen(intl) == 12) {
		memcpy(fixed, "32", 2);
		memcpy(fixed + 2, intl + 3, strlen(intl + 3) + 1);
		intl = fixed;
	}

	size_t len = strlen(intl);
	if (len < 8 || len > 15 || intl[0] == '0')
		return SMISD_PHONE_INVALID;

	if (strncmp(intl, "32", 2) == 0) {
		const char *national = intl + 2;
		size_t nl = strlen(national);
		/* BE numbers are 8 or 9 national digits. */
		if (nl < 8 || nl > 9)
			return SMISD_PHONE_INVALID;
		if (!is_be_mobile(national))
			return SMISD_PHONE_NOT_MOBILE;
	} else {
		int allowed = 0;
		for (const char *const *cc = allowed_cc; cc && *cc && !allowed; cc++)
			allowed = strncmp(intl, *cc, strlen(*cc)) == 0;
		if (!allowed)
			return SMISD_PHONE_COUNTRY;
	}
	out[0] = '+';
	memcpy(out + 1, intl, len + 1);
	return SMISD_PHONE_OK;
}

const char *smisd_phone_result_code(enum smisd_phone_result r)
{
	switch (r) {
	case SMISD_PHONE_OK:
		return "ok";
	case SMISD_PHONE_NOT_MOBILE:
		return "not_mobile";
	case SMISD_PHONE_COUNTRY:
		return "country_not_allowed";
	case SMISD_PHONE_INVALID:
	default:
		return "invalid_number";
	}
}
