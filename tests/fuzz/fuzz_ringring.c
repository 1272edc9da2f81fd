/*
 * fuzz_ringring.c - the RingRing channel plugin (ringring.so, loaded as
 * smisd loads it) on what reaches it from the network: delivery-report
 * webhooks and RingRing's answers (docs/ringring-channel.md).
 *
 * The first byte picks the mode (low two bits) and the number of reports
 * the core has room for (high four bits, 0 to 15); the rest is read as
 * fuzz_channel.h describes:
 * - 0: a webhook (request line, headers, ?query lines, body) sent with the
 *   configured secret path from an allowed address, so that the parser is
 *   reached: it must never be refused as not authentic;
 * - 1: the same with the path and peer address of the input, as anyone
 *   can send: accepted only on the secret path;
 * - 2, 3: answers to a SEND, or to a STATUS poll, of a fixed message.
 * A webhook returns 0, -EACCES or -EINVAL; an accepted one fills at least
 * one report when there is room, no more than there is room for, each
 * naming a message with terminated strings and a known status. An
 * operation returns DONE, REQUEST or a negative errno; a finished one has
 * a documented kind, an error code when it failed, terminated strings, and
 * a detail in printable ASCII with no run of five digits (a phone number
 * RingRing might echo). Every request made is freed; nothing leaks.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_channel.h"
#include "fuzz_common.h"

#define TOKEN "tok_ABCDEFGHIJKLMNOP"
#define ALLOWED_PEER "127.0.0.1"

static const struct smis_channel_ops *ops;
static void *state;

static const struct smis_message msg = {
	.size = sizeof(struct smis_message),
	.id = "msg_01HZY3K4N5P6Q7R8S9T0V1W2X3",
	.institution = "FOD Test",
	.recipient = "+32470123456",
	.sender = "FODTest",
	.content = fuzz_content,
	.n_content = FUZZ_N_CONTENT,
	.provider_ref = "UNIQUE-MESSAGE-ID", /* for STATUS */
};

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	static const struct fake_kv kv[] = {
		{ "api_key", "k3y-0123456789abcdef0123456789" },
		{ "base_url", "http://127.0.0.1:18082/sms/v1" },
		{ "status_url", "http://127.0.0.1:8080/v1/callbacks/rr/" TOKEN },
		{ "callback_token", TOKEN },
		{ "callback_allow", ALLOWED_PEER ", 10.1.0.0/16, 2001:db8::/32" },
	};

	(void)argc;
	(void)argv;
	ops = fuzz_channel_load(FUZZ_PLUGIN_DIR "/ringring/.libs/ringring.so", kv,
				sizeof(kv) / sizeof(kv[0]), &state);
	return 0;
}

static void webhook(const uint8_t *data, size_t size, bool with_secret, size_t max_reports)
{
	struct fuzz_inbound f;
	struct smis_report reports[16];
	size_t n = 0;
	int rc;

	if (fuzz_inbound_parse(&f, data, size) != 0)
		return;
	if (with_secret) {
		f.in.path_rest = "/" TOKEN;
		f.in.remote_addr = ALLOWED_PEER;
	}
	rc = ops->inbound(state, &f.in, reports, max_reports, &n);
	FUZZ_CHECK(rc == 0 || rc == -EACCES || rc == -EINVAL);
	if (with_secret)
		FUZZ_CHECK(rc != -EACCES);
	if (rc == 0) {
		/* Rule 3 of the webhook's authentication. */
		FUZZ_CHECK(strcmp(f.in.path_rest, "/" TOKEN) == 0);
		FUZZ_CHECK(n <= max_reports);
		FUZZ_CHECK(n >= 1 || max_reports == 0);
		for (size_t i = 0; i < n; i++)
			fuzz_check_report(&reports[i]);
	}
	fuzz_inbound_free(&f);
}

static void operation(const uint8_t *data, size_t size, enum smis_op op)
{
	struct fuzz_responses r;
	struct smis_outcome out;
	void *call = NULL;
	int rc;

	fuzz_responses_parse(&r, data, size);
	rc = fuzz_channel_run(ops, state, op, &msg, &call, &r, &out);
	if (rc == SMIS_STEP_DONE) {
		int digits = 0;

		for (const char *p = out.detail; *p; p++) {
			FUZZ_CHECK(*p >= 0x20 && *p < 0x7f);
			digits = *p >= '0' && *p <= '9' ? digits + 1 : 0;
			FUZZ_CHECK(digits < 5);
		}
	}
	if (ops->call_free)
		ops->call_free(state, call);
	free(out.devices_json);
	fuzz_responses_free(&r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0)
		return 0;
	switch (data[0] & 3) {
	case 0:
	case 1:
		webhook(data + 1, size - 1, (data[0] & 3) == 0, data[0] >> 4);
		break;
	case 2:
		operation(data + 1, size - 1, SMIS_OP_SEND);
		break;
	default:
		operation(data + 1, size - 1, SMIS_OP_STATUS);
		break;
	}
	fuzz_check_requests_freed();
	return 0;
}
