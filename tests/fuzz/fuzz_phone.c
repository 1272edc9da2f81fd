/*
 * fuzz_phone.c - recipient number normalisation (daemon/phone.c) on any
 * string: a number is accepted only as E.164 ('+' and 8 to 15 digits), and
 * normalising an accepted number again gives the same number.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "phone.h"

static void check(const char *in, const char *const *cc)
{
	char out[SMISD_E164_MAX];
	memset(out, 'x', sizeof(out));
	enum smisd_phone_result r = smisd_phone_normalise(in, out, cc);
	FUZZ_CHECK(smisd_phone_result_code(r) != NULL);
	if (r != SMISD_PHONE_OK)
		return;
	size_t n = strnlen(out, sizeof(out));
	FUZZ_CHECK(n < sizeof(out) && n >= 9 && out[0] == '+');
	for (size_t i = 1; i < n; i++)
		FUZZ_CHECK(out[i] >= '0' && out[i] <= '9');
	char again[SMISD_E164_MAX];
	FUZZ_CHECK(smisd_phone_normalise(out, again, cc) == SMISD_PHONE_OK);
	FUZZ_CHECK(strcmp(out, again) == 0);
	/* Belgium needs no listing: a Belgian number is accepted either way. */
	if (strncmp(out, "+32", 3) == 0)
		FUZZ_CHECK(smisd_phone_normalise(out, again, NULL) == SMISD_PHONE_OK);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const cc[] = { "31", "352", "33", "1", NULL };
	char *in = fuzz_cstr(data, size);
	if (!in)
		return 0;
	check(in, NULL);
	check(in, cc);
	free(in);
	return 0;
}
