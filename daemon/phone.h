/*
 * phone.h - recipient number normalisation and validation.
 *
 * Institutions write numbers the way people do ("0470 12 34 56",
 * "+32 (0)470/12.34.56", "0032470123456"); SMIS works on E.164 only.
 */
#ifndef SMISD_PHONE_H
#define SMISD_PHONE_H

#include <stddef.h>

enum smisd_phone_result {
	SMISD_PHONE_OK = 0,
	SMISD_PHONE_INVALID = -1,     /* not a telephone number at all */
	SMISD_PHONE_NOT_MOBILE = -2,  /* a valid Belgian number, but not a mobile */
	SMISD_PHONE_COUNTRY = -3,     /* a country the institution may not reach */
};

#define SMISD_E164_MAX 17 /* '+' + 15 digits + NUL */

/*
 * Normalise `in` to E.164 in `out` (at least SMISD_E164_MAX bytes) and
 * check it: Belgian numbers must be mobiles (+32 4[5-9]x xx xx xx); other
 * countries only when their calling code is a prefix listed in
 * `allowed_cc` (NULL-terminated list of digit strings such as "31", "352";
 * NULL means Belgium only). A national number (leading single 0) is Belgian.
 */
enum smisd_phone_result smisd_phone_normalise(const char *in, char *out,
					      const char *const *allowed_cc);

const char *smisd_phone_result_code(enum smisd_phone_result r);

#endif
