/*
 * fuzz_govapp.c - the GovApp channel plugin (govapp.so, loaded as smisd
 * loads it) on what reaches it from the network: signed status callbacks
 * and the backend's answers (docs/govapp-protocol.md).
 *
 * The first byte picks the mode (low four bits, modulo 7) and the number of
 * reports the core has room for (high four bits, 0 to 15); the rest is read
 * as fuzz_channel.h describes:
 * - 0: a callback (request line, headers, ?query lines, body) that the
 *   harness signs with the configured secret at the fake core's time, so
 *   that the parser is reached: it must never be refused as not authentic;
 * - 1: the same with the input's own X-GovApp-Signature, as anyone can
 *   send: accepted only when one of its v1 values is the MAC of the body
 *   under one of its t values within the allowed skew (the worked example
 *   of the protocol is such a signature);
 * - 2, 3, 4: answers to a LOOKUP, a SEND (which looks up first), a STATUS
 *   poll of a fixed message;
 * - 5, 6: a LOOKUP then a SEND in the same call slot, so that the SEND uses
 *   the devices and keys the answer gave (and, on "unknown_device", looks
 *   up again); in 6 the core's prepare_send seals ahead of the SEND.
 * A callback returns 0, -EACCES or -EINVAL; an accepted one is one report
 * (when there is room) of a delivered, read or failed device, with
 * terminated strings. An operation returns DONE, REQUEST or a negative
 * errno; a finished one has a documented kind, an error code when it
 * failed, terminated strings, reports as for callbacks, devices_json as a
 * JSON array of device keys, and a detail without the citizen's number or
 * the message's text. Every request made is freed; nothing leaks.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "fuzz_channel.h"
#include "fuzz_common.h"

/* The secret of the protocol's worked example: its signature, made 42 s
 * before FUZZ_NOW_MS, is a valid seed for mode 1. */
#define SECRET "whsec_test_0123456789abcdef"
#define MAX_SKEW_S 300
#define SIG_HEADER "X-GovApp-Signature"
#define NATIONAL_NUMBER "470123456"

static const struct smis_channel_ops *ops;
static void *state;

static const struct smis_message msg = {
	.size = sizeof(struct smis_message),
	.id = "msg_01HZY3K4N5P6Q7R8S9T0V1W2X3",
	.institution = "FOD Test",
	.recipient = "+32" NATIONAL_NUMBER,
	.reference = "dossier-42",
	.content = fuzz_content,
	.n_content = FUZZ_N_CONTENT,
	.provider_ref = "gn_01M8GXVR9FEZ1CD0WAGQC63PJ0", /* for STATUS */
};

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	static const struct fake_kv kv[] = {
		{ "base_url", "http://127.0.0.1:18081" },
		{ "api_token", "tok-ABC123" },
		{ "callback_secret", SECRET },
		{ "callback_max_skew_s", NULL, MAX_SKEW_S },
	};

	(void)argc;
	(void)argv;
	ops = fuzz_channel_load(FUZZ_PLUGIN_DIR "/govapp/.libs/govapp.so", kv,
				sizeof(kv) / sizeof(kv[0]), &state);
	return 0;
}

/* Lowercase hex of HMAC-SHA256(SECRET, "<t>.<body>") into hex[65]; false
 * (and hex "") when it cannot be computed. */
static bool mac_hex(const char *t, size_t t_len, const char *body, size_t body_len, char hex[65])
{
	unsigned char mac[32];
	unsigned int mac_len = 0;
	unsigned char *buf = malloc(t_len + 1 + body_len);
	bool ok = false;

	hex[0] = '\0';
	if (!buf)
		return false;
	memcpy(buf, t, t_len);
	buf[t_len] = '.';
	memcpy(buf + t_len + 1, body, body_len);
	if (HMAC(EVP_sha256(), SECRET, (int)strlen(SECRET), buf, t_len + 1 + body_len, mac, &mac_len) &&
	    mac_len == sizeof(mac)) {
		for (size_t i = 0; i < sizeof(mac); i++)
			snprintf(hex + 2 * i, 3, "%02x", mac[i]);
		ok = true;
	}
	free(buf);
	return ok;
}

/*
 * Whether `header` is authentic for `body` by the protocol's own words: some
 * "t=" item of 1 to 18 digits within the skew, and some "v1=" item that is
 * the MAC of "<t>.<body>" (either case). Written apart from the plugin's
 * parser, so that the two disagree only on a bug in one of them.
 */
static bool authentic(const char *header, const char *body, size_t body_len)
{
	char *copy = header ? strdup(header) : NULL, *save = NULL, hex[65];
	bool ok = false;

	for (char *t = copy ? strtok_r(copy, ",", &save) : NULL; t && !ok; t = strtok_r(NULL, ",", &save)) {
		size_t n;

		while (*t == ' ')
			t++;
		if (strncmp(t, "t=", 2) != 0)
			continue;
		n = strlen(t + 2);
		if (n < 1 || n > 18 || strspn(t + 2, "0123456789") != n ||
		    llabs(strtoll(t + 2, NULL, 10) - FUZZ_NOW_MS / 1000) > MAX_SKEW_S ||
		    !mac_hex(t + 2, n, body, body_len, hex))
			continue;
		for (const char *v = strstr(header, "v1="); v && !ok; v = strstr(v + 1, "v1="))
			ok = strncasecmp(v + 3, hex, 64) == 0 && (v[67] == ',' || v[67] == '\0') &&
			     (v == header || v[-1] == ',' || v[-1] == ' ');
	}
	free(copy);
	return ok;
}

static void callback(const uint8_t *data, size_t size, bool sign, size_t max_reports)
{
	struct fuzz_inbound f;
	struct smis_report reports[16];
	char t[24], hex[65], sig[128];
	size_t n = 0;
	int rc;

	if (fuzz_inbound_parse(&f, data, size) != 0)
		return;
	if (sign) {
		snprintf(t, sizeof(t), "%" PRId64, (int64_t)(FUZZ_NOW_MS / 1000));
		if (!mac_hex(t, strlen(t), f.in.body, f.in.body_len, hex)) {
			fuzz_inbound_free(&f);
			return;
		}
		snprintf(sig, sizeof(sig), "t=%s,v1=%s", t, hex);
		f.forced_name = SIG_HEADER;
		f.forced_value = sig;
	}
	rc = ops->inbound(state, &f.in, reports, max_reports, &n);
	FUZZ_CHECK(rc == 0 || rc == -EACCES || rc == -EINVAL);
	if (sign)
		FUZZ_CHECK(rc != -EACCES);
	if (rc == 0) {
		FUZZ_CHECK(authentic(f.in.header(&f.in, SIG_HEADER), f.in.body, f.in.body_len));
		/* "One event per request". */
		FUZZ_CHECK(n == (max_reports ? 1u : 0u));
		for (size_t i = 0; i < n; i++) {
			fuzz_check_report(&reports[i]);
			FUZZ_CHECK(reports[i].device[0] != '\0');
			FUZZ_CHECK(reports[i].status == SMIS_REPORT_DELIVERED ||
				   reports[i].status == SMIS_REPORT_READ ||
				   reports[i].status == SMIS_REPORT_FAILED);
		}
	}
	fuzz_inbound_free(&f);
}

/* One operation on the call slot; the slot is the caller's to free. */
static void operation(enum smis_op op, void **call, struct fuzz_responses *r)
{
	struct smis_outcome out;

	if (fuzz_channel_run(ops, state, op, &msg, call, r, &out) == SMIS_STEP_DONE) {
		/* "Human text, MUST NOT contain phone numbers or message content." */
		FUZZ_CHECK(!strstr(out.detail, NATIONAL_NUMBER));
		for (size_t i = 0; i < msg.n_content; i++)
			FUZZ_CHECK(!strstr(out.detail, msg.content[i].body_text));
	}
	free(out.devices_json);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_responses r;
	void *call = NULL;
	int mode;

	if (size == 0)
		return 0;
	mode = (data[0] & 0x0f) % 7;
	if (mode <= 1) {
		callback(data + 1, size - 1, mode == 0, data[0] >> 4);
		fuzz_check_requests_freed();
		return 0;
	}
	fuzz_responses_parse(&r, data + 1, size - 1);
	switch (mode) {
	case 2:
		operation(SMIS_OP_LOOKUP, &call, &r);
		break;
	case 3:
		operation(SMIS_OP_SEND, &call, &r);
		break;
	case 4:
		operation(SMIS_OP_STATUS, &call, &r);
		break;
	default:
		operation(SMIS_OP_LOOKUP, &call, &r);
		if (mode == 6 && ops->prepare_send)
			ops->prepare_send(state, &msg, &call);
		operation(SMIS_OP_SEND, &call, &r);
		break;
	}
	if (ops->call_free)
		ops->call_free(state, call);
	fuzz_responses_free(&r);
	fuzz_check_requests_freed();
	return 0;
}
