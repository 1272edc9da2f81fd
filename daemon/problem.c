/*
 * problem.c - RFC 9457 bodies. The `type` is a relative URI under
 * /problems/ so that it stays valid whatever host SMIS is served from.
 */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <json-c/json.h>

#include "problem.h"
#include "utf8.h"

static const struct {
	const char *code;
	const char *title;
} titles[] = {
	{ "malformed_json", "The request body is not valid JSON" },
	{ "invalid_type", "A field has the wrong type" },
	{ "unknown_field", "The request has a field SMIS does not know" },
	{ "missing_field", "A required field is missing" },
	{ "invalid_utf8", "A text is not valid UTF-8" },
	{ "invalid_value", "A field has an invalid value" },
	{ "field_too_long", "A field is longer than allowed" },
	{ "invalid_number", "The recipient is not a valid phone number" },
	{ "not_mobile", "The recipient is not a mobile number" },
	{ "country_not_allowed", "The recipient's country is not allowed for this institution" },
	{ "unknown_language", "Unknown content language" },
	{ "missing_content", "The message has no content" },
	{ "invalid_html", "The HTML body cannot be used" },
	{ "unknown_strategy", "Unknown strategy" },
	{ "strategy_forbidden", "The institution may not use this strategy" },
	{ "body_too_large", "The request body is too large" },
	{ "unsupported_media_type", "The request body must be application/json" },
	{ "unauthorized", "Missing or invalid credentials" },
	{ "not_found", "No such resource" },
	{ "method_not_allowed", "Method not allowed on this resource" },
	{ "invalid_idempotency_key", "The Idempotency-Key header is invalid" },
	{ "idempotency_in_progress", "A request with this Idempotency-Key is still being processed" },
	{ "idempotency_key_reused", "This Idempotency-Key was used for a different request" },
	{ "idempotency_unavailable", "Whether this Idempotency-Key was used cannot be told now" },
	{ "store_unavailable", "The status store cannot be read now" },
	{ "overloaded", "Too many messages in flight; retry later" },
	{ "rate_limited", "Too many requests from this institution; retry later" },
	{ "quota_exceeded", "The institution's daily message quota is used up" },
	{ "recipient_rate_limited", "Too many messages to this recipient; retry later" },
	{ "shutting_down", "SMIS is shutting down" },
	{ "callback_rejected", "The callback is not authentic" },
	{ "callback_malformed", "The callback body cannot be parsed" },
	{ "unknown_message", "The callback is about a message SMIS does not know" },
	{ "unknown_channel", "No such channel for this operation" },
	{ "message_id_used", "This message id was used already" },
	{ "upstream_unavailable", "The upstream service could not be asked" },
	{ "internal_error", "Internal error" },
	{ NULL, NULL },
};

const char *smisd_problem_title(const char *code)
{
	for (size_t i = 0; titles[i].code; i++)
		if (strcmp(titles[i].code, code) == 0)
			return titles[i].title;
	return "Error";
}

void smisd_problem_set(struct smisd_problem *p, int status, const char *code,
		       const char *field, const char *fmt, ...)
{
	va_list ap;
	p->status = status;
	p->code = code;
	p->retry_after_s = 0;
	snprintf(p->field, sizeof(p->field), "%s", field ? field : "");
	va_start(ap, fmt);
	vsnprintf(p->detail, sizeof(p->detail), fmt, ap);
	va_end(ap);
	/* Both may quote what the client sent (a field name, a strategy), cut
	 * to fit, which can split a character, or from a body that was never
	 * checked as a whole: the problem must stay UTF-8 JSON (RFC 8259). */
	smisd_utf8_scrub(p->field);
	smisd_utf8_scrub(p->detail);
}

char *smisd_problem_json(const struct smisd_problem *p, const char *request_id)
{
	char type[96];
	char *out;
	json_object *o = json_object_new_object();

	snprintf(type, sizeof(type), "/problems/%s", p->code);
	json_object_object_add(o, "type", json_object_new_string(type));
	json_object_object_add(o, "title", json_object_new_string(smisd_problem_title(p->code)));
	json_object_object_add(o, "status", json_object_new_int(p->status));
	json_object_object_add(o, "code", json_object_new_string(p->code));
	json_object_object_add(o, "detail", json_object_new_string(p->detail));
	if (p->field[0])
		json_object_object_add(o, "field", json_object_new_string(p->field));
	if (request_id)
		json_object_object_add(o, "request_id", json_object_new_string(request_id));
	out = strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
	json_object_put(o);
	return out;
}
