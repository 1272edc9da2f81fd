/*
 * fuzz_json_parse.h - what the targets that read JSON back share (they are
 * built with json-c's flags; fuzz_common.h is not).
 */
#ifndef SMIS_FUZZ_JSON_PARSE_H
#define SMIS_FUZZ_JSON_PARSE_H

#include <stddef.h>

#include <json-c/json.h>

/* The n bytes at s as strict JSON in valid UTF-8, one value and nothing
 * after it; NULL when they are not. */
static inline json_object *fuzz_json_parse(const char *s, size_t n)
{
	json_tokener *tok = json_tokener_new();
	json_object *o;

	if (!tok)
		return NULL;
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
	o = json_tokener_parse_ex(tok, s, (int)n);
	if (o && (json_tokener_get_error(tok) != json_tokener_success || json_tokener_get_parse_end(tok) != n)) {
		json_object_put(o);
		o = NULL;
	}
	json_tokener_free(tok);
	return o;
}

#endif
