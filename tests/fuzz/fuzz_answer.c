/*
 * fuzz_answer.c - what smisctl and smis-encrypt show of an HTTP answer
 * (tools/common/apiclient.c): the body on standard output, and a problem's
 * code and detail and the Retry-After header on standard error. The answer
 * comes from whatever listens at --url: smisd, or a proxy in front of it.
 *
 * The first byte holds the tool's flags (bit 0: SMIS_API_UTF8, as smisctl;
 * clear, as smis-encrypt) and picks the HTTP status; then come the
 * Retry-After value, a NUL byte, and the body (without a NUL byte, all of
 * it is the body). Both outputs go to a terminal: they must be valid UTF-8
 * with no control character but the newlines that end lines (C0, C1: an
 * ESC or a U+009B CSI drives the terminal), and the problem is one line.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apiclient.h"
#include "fuzz_common.h"
#include "utf8_decode.h"

/* Valid UTF-8 with no control character but LF (and DEL, which a terminal
 * shows as nothing). */
static void check_shown(const char *s, size_t n)
{
	for (size_t i = 0; i < n;) {
		uint32_t cp;
		size_t used = smis_utf8_decode(s + i, n - i, &cp);

		FUZZ_CHECK(used > 0);
		FUZZ_CHECK(cp == '\n' || (cp >= 0x20 && !(cp >= 0x80 && cp <= 0x9f)));
		i += used;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const long statuses[] = { 200, 201, 400, 401, 429, 502, 503, 0 };
	struct smis_api_answer a;
	struct smis_api_client cl = { .prog = "smisctl", .url = "http://127.0.0.1:1", .timeout_s = 1 };
	const uint8_t *body, *nul;
	char *out = NULL, *err = NULL;
	size_t out_len = 0, err_len = 0;
	FILE *saved_out = stdout, *saved_err = stderr;
	json_object *o;

	if (size == 0)
		return 0;
	memset(&a, 0, sizeof(a));
	cl.flags = (data[0] & 1 ? SMIS_API_UTF8 : 0) | SMIS_API_SHOW_RETRY_AFTER;
	a.status = statuses[(data[0] >> 1) & 7];
	data++;
	size--;
	nul = memchr(data, '\0', size);
	body = data;
	if (nul) {
		snprintf(a.retry_after, sizeof(a.retry_after), "%.*s", (int)(nul - data), (const char *)data);
		body = nul + 1;
	}
	a.len = size - (size_t)(body - data);
	if (a.len > 0) {
		a.body = fuzz_cstr(body, a.len);
		if (!a.body)
			return 0;
	}

	o = smis_api_answer_json(&a);
	stdout = open_memstream(&out, &out_len);
	stderr = open_memstream(&err, &err_len);
	FUZZ_CHECK(stdout && stderr);
	smis_api_print_answer(&a, o);
	smis_api_report_problem(&cl, "POST /v1/messages", &a, o);
	fclose(stdout);
	fclose(stderr);
	stdout = saved_out;
	stderr = saved_err;

	check_shown(out, out_len);
	check_shown(err, err_len);
	FUZZ_CHECK(err_len > 0 && err[err_len - 1] == '\n' && memchr(err, '\n', err_len - 1) == NULL);
	free(out);
	free(err);
	json_object_put(o);
	smis_api_answer_clear(&a);
	return 0;
}
