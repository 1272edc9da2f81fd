/*
 * request.h - parse and validate the body of POST /v1/messages (and
 * read that of POST /v1/recipients/keys the same way).
 *
 * Everything an institution can get wrong is caught here, before any
 * upstream is touched, and answered with one precise problem code.
 */
#ifndef SMISD_REQUEST_H
#define SMISD_REQUEST_H

#include <stdbool.h>
#include <stddef.h>

#include <smis/smis-plugin.h>

#include "phone.h"
#include "problem.h"
#include "utf8.h" /* smisd_utf8_valid, for request.c's users */

/* Field limits (bytes of UTF-8), documented in docs/openapi.yaml. */
#define SMISD_MAX_TITLE 256
#define SMISD_MAX_BODY 32768
#define SMISD_MAX_SMS_TEXT 1600
#define SMISD_MAX_REFERENCE 128
#define SMISD_MAX_RECIPIENT 40
#define SMISD_MAX_STRATEGY 48

struct smisd_request_content {
	char lang[3];
	char *title;
	char *body;      /* sanitised HTML or text */
	char *body_text; /* plain text */
	char *sms_text;  /* or NULL */
	bool html;
};

struct smisd_request {
	char recipient[SMISD_E164_MAX];
	char *reference;
	char *strategy;  /* NULL: institution default */
	char language[3];
	struct smisd_request_content content[SMIS_LANG_MAX];
	size_t n_content;
	/* Passthrough (institution-side encryption): the normalised
	 * {"encryption","envelopes"} JSON and the message id the envelopes
	 * are bound to (from POST /v1/recipients/keys). */
	char *encrypted_json;
	char message_id[40];
};

#define SMISD_E2E_SUITE "HPKE-Base-X25519-SHA256-AES128GCM"
#define SMISD_MAX_ENVELOPES 16

/* True for "msg_" + 26 Crockford base32 characters. */
bool smisd_valid_message_id(const char *id);

struct smisd_institution;
struct json_object;

/* The member `key` of the object `obj`, or NULL when it is absent or JSON
 * null: every optional member of a request body means the same whether it
 * is left out or null, and every required one is missing either way. */
struct json_object *smisd_json_member(struct json_object *obj, const char *key);

/* `body` as one JSON object, read strictly: UTF-8, JSON and nothing after
 * it, no member name twice in one object, none of json-c's extensions.
 * NULL with *problem filled (400 malformed_json, invalid_type for another
 * value than an object, 500 out of memory); the caller puts the object. */
struct json_object *smisd_json_parse_strict(const char *body, size_t len, struct smisd_problem *problem);

/* The `recipient` member of a body read by smisd_json_parse_strict(),
 * checked as a text (missing_field when absent, null or empty) and
 * normalised for `inst` into `e164`. 0, or -1 with *problem filled. */
int smisd_request_recipient(struct json_object *root, const struct smisd_institution *inst,
			    char e164[SMISD_E164_MAX], struct smisd_problem *problem);

/* Parse `body` for `inst`. Returns 0, or -1 with *problem filled. Content
 * comes out in the institution's language order. */
int smisd_request_parse(const char *body, size_t len, const struct smisd_institution *inst,
			struct smisd_request *req, struct smisd_problem *problem);
void smisd_request_clear(struct smisd_request *req);


#endif
