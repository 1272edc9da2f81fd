/*
 * problem.c - RFC 9457 bodies. The `type` is a relative URI under
 * /problems/ so that it stays valid whatever host SMIS is served from.
 */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "json_writer.h"
#include "problem.h"
#include "utf8.h"

/* Each code with its title, and the body sent when not even the problem's
 * text can be made (out of memory): type, title and code, written at
 * compile time. The status is the response's. */
#define PROBLEM(code, title)                                                                  \
	{ code, title, "{\"type\":\"/problems/" code "\",\"title\":\"" title "\",\"code\":\"" code "\"}" }

static const struct {
	const char *code;
	const char *title;
	const char *static_json;
} titles[] = {
	PROBLEM("malformed_request", "The request's framing or Host header is malformed"),
	PROBLEM("headers_too_large", "The request line and headers are too large"),
	PROBLEM("malformed_json", "The request body is not valid JSON"),
	PROBLEM("invalid_type", "A field has the wrong type"),
	PROBLEM("unknown_field", "The request has a field SMIS does not know"),
	PROBLEM("missing_field", "A required field is missing"),
	PROBLEM("invalid_utf8", "A text is not valid UTF-8"),
	PROBLEM("invalid_value", "A field has an invalid value"),
	PROBLEM("field_too_long", "A field is longer than allowed"),
	PROBLEM("invalid_number", "The recipient is not a valid phone number"),
	PROBLEM("not_mobile", "The recipient is not a mobile number"),
	PROBLEM("country_not_allowed", "The recipient's country is not allowed for this institution"),
	PROBLEM("unknown_language", "Unknown content language"),
	PROBLEM("missing_content", "The message has no content"),
	PROBLEM("invalid_html", "The HTML body cannot be used"),
	PROBLEM("unknown_strategy", "Unknown strategy"),
	PROBLEM("strategy_forbidden", "The institution may not use this strategy"),
	PROBLEM("body_too_large", "The request body is too large"),
	PROBLEM("unsupported_media_type", "The request body must be application/json"),
	PROBLEM("unauthorized", "Missing or invalid credentials"),
	PROBLEM("not_found", "No such resource"),
	PROBLEM("method_not_allowed", "Method not allowed on this resource"),
	PROBLEM("method_not_implemented", "The method is not one SMIS implements"),
	PROBLEM("invalid_idempotency_key", "The Idempotency-Key header is invalid"),
	PROBLEM("idempotency_in_progress", "A request with this Idempotency-Key is still being processed"),
	PROBLEM("idempotency_key_reused", "This Idempotency-Key was used for a different request"),
	PROBLEM("idempotency_unavailable", "Whether this Idempotency-Key was used cannot be told now"),
	PROBLEM("store_unavailable", "The status store cannot be read now"),
	PROBLEM("overloaded", "Too many messages in flight; retry later"),
	PROBLEM("rate_limited", "Too many requests from this institution; retry later"),
	PROBLEM("quota_exceeded", "The institution's daily message quota is used up"),
	PROBLEM("recipient_rate_limited", "Too many messages to this recipient; retry later"),
	PROBLEM("shutting_down", "SMIS is shutting down"),
	PROBLEM("callback_rejected", "The callback is not authentic"),
	PROBLEM("callback_malformed", "The callback body cannot be parsed"),
	PROBLEM("unknown_message", "The callback is about a message SMIS does not know"),
	PROBLEM("unknown_channel", "No such channel for this operation"),
	PROBLEM("message_id_used", "This message id was used already"),
	PROBLEM("upstream_unavailable", "The upstream service could not be asked"),
	PROBLEM("internal_error", "Internal error"),
	{ NULL, NULL, NULL },
};

const char *smisd_problem_title(const char *code)
{
	for (size_t i = 0; titles[i].code; i++)
		if (strcmp(titles[i].code, code) == 0)
			return titles[i].title;
	return "Error";
}

const char *smisd_problem_static_json(const char *code)
{
	for (size_t i = 0; titles[i].code; i++)
		if (strcmp(titles[i].code, code) == 0)
			return titles[i].static_json;
	return "{\"type\":\"about:blank\",\"title\":\"Error\"}";
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

/* Written with json_writer, whose errors are sticky: out of memory at any
 * step is NULL, never a problem with members missing. */
char *smisd_problem_json(const struct smisd_problem *p, const char *request_id)
{
	char type[96];
	struct smisd_jw w;

	snprintf(type, sizeof(type), "/problems/%s", p->code);
	smisd_jw_init(&w);
	smisd_jw_object_begin(&w, NULL);
	smisd_jw_string(&w, "type", type);
	smisd_jw_string(&w, "title", smisd_problem_title(p->code));
	smisd_jw_int(&w, "status", p->status);
	smisd_jw_string(&w, "code", p->code);
	smisd_jw_string(&w, "detail", p->detail);
	if (p->field[0])
		smisd_jw_string(&w, "field", p->field);
	if (request_id)
		smisd_jw_string(&w, "request_id", request_id);
	smisd_jw_object_end(&w);
	return smisd_jw_finish(&w);
}
