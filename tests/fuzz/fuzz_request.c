/*
 * fuzz_request.c - the body of POST /v1/messages, as an institution sends it.
 *
 * The whole admission path that reads client bytes: strict JSON, field
 * types and limits, UTF-8, number normalisation, languages, the HTML
 * sanitiser and the passthrough envelopes. Any input must give either a
 * request or exactly one problem (status 4xx, a code, a message), never a
 * crash or a leak; an accepted request must hold what the API promises.
 *
 * The first input byte picks the institution's shape (language order,
 * countries beyond Belgium), the rest is the body.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "generation.h"
#include "request.h"

static void check_request(const struct smisd_request *req)
{
	size_t n = strlen(req->recipient);
	FUZZ_CHECK(n >= 2 && n < SMISD_E164_MAX && req->recipient[0] == '+');
	for (size_t i = 1; i < n; i++)
		FUZZ_CHECK(req->recipient[i] >= '0' && req->recipient[i] <= '9');
	/* A passthrough message's content is encrypted: envelopes, no text. */
	if (req->encrypted_json)
		FUZZ_CHECK(smisd_valid_message_id(req->message_id));
	else
		FUZZ_CHECK(req->n_content >= 1);
	FUZZ_CHECK(req->n_content <= SMIS_LANG_MAX);
	for (size_t i = 0; i < req->n_content; i++) {
		const struct smisd_request_content *c = &req->content[i];
		FUZZ_CHECK(strlen(c->lang) == 2);
		FUZZ_CHECK(c->title && c->body && c->body_text);
		FUZZ_CHECK(smisd_utf8_valid(c->title, strlen(c->title), SMISD_UTF8_ONE_LINE));
		FUZZ_CHECK(smisd_utf8_valid(c->body, strlen(c->body), SMISD_UTF8_JSON));
		FUZZ_CHECK(smisd_utf8_valid(c->body_text, strlen(c->body_text), SMISD_UTF8_JSON));
		if (c->sms_text)
			FUZZ_CHECK(smisd_utf8_valid(c->sms_text, strlen(c->sms_text), SMISD_UTF8_MULTILINE));
		/* The sanitiser's allow-list has no script, style or handlers. */
		if (c->html) {
			FUZZ_CHECK(!fuzz_contains_ci(c->body, "<script"));
			FUZZ_CHECK(!fuzz_contains_ci(c->body, "<style"));
		}
	}
	if (req->reference)
		FUZZ_CHECK(strlen(req->reference) <= SMISD_MAX_REFERENCE);
}

/* Well-formed UTF-8, control characters allowed: scrubbing changes nothing. */
static int well_formed(const char *s)
{
	char copy[sizeof(((struct smisd_problem *)0)->detail)];

	snprintf(copy, sizeof(copy), "%s", s);
	smisd_utf8_scrub(copy);
	return strcmp(copy, s) == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char all[4][3] = { "fr", "nl", "de", "en" };
	static char *cc[] = { "31", "352", "33", NULL };
	struct smisd_institution inst;
	memset(&inst, 0, sizeof(inst));
	inst.name = "fuzz";
	uint8_t shape = size ? data[0] : 0;
	/* The configuration always lists all four languages (generation.c
	 * appends the ones left out): only their order varies. */
	inst.n_languages = SMIS_LANG_MAX;
	for (size_t i = 0; i < SMIS_LANG_MAX; i++)
		memcpy(inst.languages[i], all[(i + (shape & 3)) % SMIS_LANG_MAX], 3);
	inst.allowed_cc = (shape & 4) ? cc : NULL;
	if (size)
		data++, size--;

	struct smisd_request req;
	struct smisd_problem pb;
	memset(&pb, 0, sizeof(pb));
	if (smisd_request_parse((const char *)data, size, &inst, &req, &pb) == 0) {
		check_request(&req);
		smisd_request_clear(&req);
	} else {
		FUZZ_CHECK(pb.status >= 400 && pb.status < 500);
		FUZZ_CHECK(pb.code != NULL && pb.code[0] != '\0');
		FUZZ_CHECK(pb.detail[0] != '\0');
		/* They quote the client's bytes, and go out as JSON text. */
		FUZZ_CHECK(well_formed(pb.detail));
		FUZZ_CHECK(well_formed(pb.field));
	}
	return 0;
}
