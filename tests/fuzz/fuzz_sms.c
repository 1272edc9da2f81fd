/*
 * fuzz_sms.c - GSM-7/UCS-2 analysis, splitting and the look-alike rewrite
 * (lib/gsm7.c) on any bytes: what decides how many SMS a citizen receives
 * and what RingRing is asked to send.
 *
 * Checked on every valid text: analysis and split agree on the number of
 * parts; parts start at 0, grow strictly, start on a character boundary and
 * each fits one SMS on its own; a rewrite is valid UTF-8 and, when it
 * changed the text, made it GSM-7 (the rewrite is all or nothing).
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "gsm7.h"

#define MAX_PARTS 64

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *s = (const char *)data;
	struct smis_sms_info info;
	if (smis_sms_analyze(s, size, &info) != 0) {
		size_t n = 0;
		FUZZ_CHECK(smis_sms_split(s, size, NULL, 0, &n) == -EINVAL);
		char *out = NULL;
		FUZZ_CHECK(smis_sms_replace_lookalikes(s, size, &out) == -EINVAL);
		return 0;
	}
	FUZZ_CHECK(info.parts >= 1);
	FUZZ_CHECK(info.encoding == SMIS_SMS_GSM7 || info.encoding == SMIS_SMS_UCS2);
	FUZZ_CHECK(info.chars <= size);

	size_t offsets[MAX_PARTS], n = 0;
	int rc = smis_sms_split(s, size, offsets, MAX_PARTS, &n);
	FUZZ_CHECK(n == info.parts);
	if (rc == 0) {
		FUZZ_CHECK(offsets[0] == 0);
		for (size_t i = 0; i < n; i++) {
			size_t end = i + 1 < n ? offsets[i + 1] : size;
			FUZZ_CHECK(i == 0 || offsets[i] > offsets[i - 1]);
			FUZZ_CHECK(end <= size);
			/* No part starts inside a UTF-8 sequence. */
			if (offsets[i] < size)
				FUZZ_CHECK((data[offsets[i]] & 0xC0) != 0x80);
			struct smis_sms_info part;
			FUZZ_CHECK(smis_sms_analyze(s + offsets[i], end - offsets[i], &part) == 0);
			FUZZ_CHECK(part.parts == 1);
		}
	} else {
		FUZZ_CHECK(rc == -ENOBUFS && n > MAX_PARTS);
	}

	char *out = NULL;
	FUZZ_CHECK(smis_sms_replace_lookalikes(s, size, &out) == 0 && out);
	size_t out_len = strlen(out);
	/* A text with U+0000 is returned unchanged (and so shorter by strlen). */
	if (memchr(s, 0, size) == NULL && (out_len != size || memcmp(out, s, size) != 0)) {
		struct smis_sms_info after;
		FUZZ_CHECK(smis_sms_analyze(out, out_len, &after) == 0);
		FUZZ_CHECK(after.encoding == SMIS_SMS_GSM7);
	}
	free(out);
	return 0;
}
