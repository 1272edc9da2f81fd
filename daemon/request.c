/*
 * request.c - JSON body -> struct smisd_request, with a problem code for
 * each way it can be wrong (see problem.c for the list).
 */
#include "config.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "core_api.h"
#include "generation.h"
#include "html_sanitize.h"
#include "job.h"
#include "json_reuse.h"
#include "request.h"

struct json_object *smisd_json_member(struct json_object *obj, const char *key)
{
	json_object *v = NULL;

	/* json-c holds a JSON null as a NULL member: found, and NULL. */
	json_object_object_get_ex(obj, key, &v);
	return v;
}

/* Fetch an optional string member with type, UTF-8 and length checks. */
static int get_text(json_object *obj, const char *key, const char *ptr, size_t max,
		    enum smisd_utf8_controls controls, bool required, const char **out, struct smisd_problem *pb)
{
	json_object *v;
	const char *s;
	size_t len;

	*out = NULL;
	v = smisd_json_member(obj, key);
	if (!v) {
		if (required) {
			smisd_problem_set(pb, 400, "missing_field", ptr, "'%s' is required", ptr);
			return -1;
		}
		return 0;
	}
	if (!json_object_is_type(v, json_type_string)) {
		smisd_problem_set(pb, 400, "invalid_type", ptr, "'%s' must be a string", ptr);
		return -1;
	}
	s = json_object_get_string(v);
	len = (size_t)json_object_get_string_len(v);
	if (!smisd_utf8_valid(s, len, controls)) {
		smisd_problem_set(pb, 400, "invalid_utf8", ptr, "'%s' must be valid UTF-8 without control characters%s",
				  ptr, controls == SMISD_UTF8_MULTILINE ? " other than tab, newline and carriage return" : "");
		return -1;
	}
	if (len > max) {
		smisd_problem_set(pb, 400, "field_too_long", ptr, "'%s' is %zu bytes, at most %zu are allowed",
				  ptr, len, max);
		return -1;
	}
	if (required && len == 0) {
		smisd_problem_set(pb, 400, "missing_field", ptr, "'%s' must not be empty", ptr);
		return -1;
	}
	*out = s;
	return 0;
}

/* A copy of a member's text for the request, which outlives the parsed
 * body: without memory the request cannot go on (500, not a NULL that
 * would read as "absent" further on). */
static int keep_copy(const char *s, char **out, struct smisd_problem *pb)
{
	*out = strdup(s);
	if (!*out) {
		smisd_problem_set(pb, 500, "internal_error", NULL, "out of memory");
		return -1;
	}
	return 0;
}

static int lang_index(const char *l)
{
	static const char *const codes[] = { "nl", "fr", "de", "en" };
	for (int i = 0; i < 4; i++)
		if (strcmp(l, codes[i]) == 0)
			return i;
	return -1;
}

/* "/content/<lang>/<member>" in ptr, made for every member checked in case
 * it is refused: copied, not formatted (lang is one of nl, fr, de, en). */
static const char *content_ptr(char ptr[64], const char *lang, const char *member)
{
	memcpy(ptr, "/content/", 9);
	memcpy(ptr + 9, lang, 2);
	ptr[11] = '/';
	memcpy(ptr + 12, member, strlen(member) + 1);
	return ptr;
}

static int parse_content(json_object *lc, const char *lang, struct smisd_request_content *c,
			 bool body_optional, struct smisd_problem *pb)
{
	static const char *const known[] = { "title", "body", "format", "sms_text", NULL };
	char ptr[64];
	const char *title, *body, *format, *sms;

	if (!json_object_is_type(lc, json_type_object)) {
		snprintf(ptr, sizeof(ptr), "/content/%s", lang);
		smisd_problem_set(pb, 400, "invalid_type", ptr, "'%s' must be an object", ptr);
		return -1;
	}
	json_object_object_foreach(lc, k, v) {
		int ok = 0;
		(void)v;
		for (const char *const *p = known; *p && !ok; p++)
			ok = strcmp(*p, k) == 0;
		if (!ok) {
			snprintf(ptr, sizeof(ptr), "/content/%s/%.32s", lang, k);
			smisd_problem_set(pb, 400, "unknown_field", ptr, "unknown field '%s'", ptr);
			return -1;
		}
	}
	if (get_text(lc, "title", content_ptr(ptr, lang, "title"), SMISD_MAX_TITLE, SMISD_UTF8_ONE_LINE, true,
		     &title, pb))
		return -1;
	if (get_text(lc, "body", content_ptr(ptr, lang, "body"), SMISD_MAX_BODY, SMISD_UTF8_MULTILINE,
		     !body_optional, &body, pb))
		return -1;
	if (!body)
		body = "";
	if (get_text(lc, "format", content_ptr(ptr, lang, "format"), 8, SMISD_UTF8_ONE_LINE, false, &format, pb))
		return -1;
	if (format && strcmp(format, "text") != 0 && strcmp(format, "html") != 0) {
		smisd_problem_set(pb, 400, "invalid_value", ptr, "'%s' must be \"text\" or \"html\"", ptr);
		return -1;
	}
	if (get_text(lc, "sms_text", content_ptr(ptr, lang, "sms_text"), SMISD_MAX_SMS_TEXT, SMISD_UTF8_MULTILINE,
		     false, &sms, pb))
		return -1;

	memcpy(c->lang, lang, 3);
	c->title = strdup(title);
	c->sms_text = sms ? strdup(sms) : NULL;
	c->html = format && strcmp(format, "html") == 0;
	if (c->html && body[0]) {
		int rc = smis_html_sanitize(body, strlen(body), &c->body, &c->body_text);
		if (rc == -ENOMEM) {
			smisd_problem_set(pb, 500, "internal_error", NULL, "out of memory");
			return -1;
		}
		if (rc != 0) {
			snprintf(ptr, sizeof(ptr), "/content/%s/body", lang);
			smisd_problem_set(pb, 400, "invalid_html", ptr, rc == -E2BIG
					  ? "'%s' is too complex to sanitise (too many tags or too deep)"
					  : "'%s' cannot be sanitised", ptr);
			return -1;
		}
		if (!c->body_text || !c->body_text[0]) {
			snprintf(ptr, sizeof(ptr), "/content/%s/body", lang);
			smisd_problem_set(pb, 400, "invalid_html", ptr,
					  "'%s' has no text left once sanitised", ptr);
			return -1;
		}
	} else {
		c->body = strdup(body);
		c->body_text = strdup(body);
	}
	if (!c->title || !c->body || !c->body_text || (sms && !c->sms_text)) {
		smisd_problem_set(pb, 500, "internal_error", NULL, "out of memory");
		return -1;
	}
	return 0;
}

#define MESSAGE_ID_MAX_AHEAD_MS 60000

bool smisd_valid_message_id(const char *id)
{
	return smisd_id_well_formed("msg_", id);
}

static bool b64url_text(const char *s, size_t max)
{
	size_t n = strlen(s);
	if (n == 0 || n > max)
		return false;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
		      *s == '-' || *s == '_'))
			return false;
	return true;
}

/* Validate the passthrough object and keep a normalised copy. */
static int parse_encrypted(json_object *enc, struct smisd_request *req, struct smisd_problem *pb)
{
	json_object *suite, *envs, *out = NULL, *out_envs;
	size_t n;

	if (!json_object_is_type(enc, json_type_object)) {
		smisd_problem_set(pb, 400, "invalid_type", "/encrypted", "'/encrypted' must be an object");
		return -1;
	}
	json_object_object_foreach(enc, k, v) {
		(void)v;
		if (strcmp(k, "encryption") != 0 && strcmp(k, "envelopes") != 0) {
			char ptr[64];
			snprintf(ptr, sizeof(ptr), "/encrypted/%.32s", k);
			smisd_problem_set(pb, 400, "unknown_field", ptr, "unknown field '%s'", ptr);
			return -1;
		}
	}
	suite = smisd_json_member(enc, "encryption");
	envs = smisd_json_member(enc, "envelopes");
	if (!json_object_is_type(suite, json_type_string) ||
	    strcmp(json_object_get_string(suite), SMISD_E2E_SUITE) != 0) {
		smisd_problem_set(pb, 400, "invalid_value", "/encrypted/encryption",
				  "'/encrypted/encryption' must be \"" SMISD_E2E_SUITE "\"");
		return -1;
	}
	if (!json_object_is_type(envs, json_type_array) ||
	    (n = json_object_array_length(envs)) == 0 || n > SMISD_MAX_ENVELOPES) {
		smisd_problem_set(pb, 400, "invalid_value", "/encrypted/envelopes",
				  "'/encrypted/envelopes' must hold 1 to %d envelopes", SMISD_MAX_ENVELOPES);
		return -1;
	}
	out = json_object_new_object();
	out_envs = json_object_new_array();
	json_object_object_add(out, "encryption", json_object_new_string(SMISD_E2E_SUITE));
	json_object_object_add(out, "envelopes", out_envs);
	for (size_t i = 0; i < n; i++) {
		json_object *e = json_object_array_get_idx(envs, i), *dev, *encap, *ct, *o;
		char ptr[64];
		snprintf(ptr, sizeof(ptr), "/encrypted/envelopes/%zu", i);
		if (!json_object_is_type(e, json_type_object) ||
		    !json_object_object_get_ex(e, "device_id", &dev) || !json_object_is_type(dev, json_type_string) ||
		    !json_object_object_get_ex(e, "enc", &encap) || !json_object_is_type(encap, json_type_string) ||
		    !json_object_object_get_ex(e, "ciphertext", &ct) || !json_object_is_type(ct, json_type_string) ||
		    json_object_object_length(e) != 3 ||
		    json_object_get_string_len(dev) == 0 || json_object_get_string_len(dev) > 128 ||
		    !smisd_utf8_valid(json_object_get_string(dev), (size_t)json_object_get_string_len(dev),
				      SMISD_UTF8_ONE_LINE) ||
		    !b64url_text(json_object_get_string(encap), 64) ||
		    !b64url_text(json_object_get_string(ct), SMISD_MAX_BODY * 2)) {
			smisd_problem_set(pb, 400, "invalid_value", ptr,
					  "'%s' must be {\"device_id\", \"enc\", \"ciphertext\"} with base64url values", ptr);
			json_object_put(out);
			return -1;
		}
		o = json_object_new_object();
		json_object_object_add(o, "device_id", json_object_get(dev));
		json_object_object_add(o, "enc", json_object_get(encap));
		json_object_object_add(o, "ciphertext", json_object_get(ct));
		json_object_array_add(out_envs, o);
	}
	req->encrypted_json = strdup(json_object_to_json_string_ext(out, JSON_C_TO_STRING_PLAIN));
	json_object_put(out);
	if (!req->encrypted_json) {
		smisd_problem_set(pb, 500, "internal_error", NULL, "out of memory");
		return -1;
	}
	return 0;
}

static int valid_reference(const char *r)
{
	for (; *r; r++)
		if (!((*r >= 'a' && *r <= 'z') || (*r >= 'A' && *r <= 'Z') || (*r >= '0' && *r <= '9') ||
		      strchr("._:/-", *r)))
			return 0;
	return 1;
}

/* One strict tokener per event-loop thread, reset for each body: making one costs
 * four allocations and a stack per request. Freed when its thread ends, and
 * after a body that did not parse (lib/json_reuse.h says why). */
static struct smis_json_thread_tokener body_tokener = SMIS_JSON_THREAD_TOKENER(16, JSON_TOKENER_STRICT);

/* The main thread's tokener (tests parse there) has no key destructor. */
__attribute__((destructor)) static void body_tokener_release(void)
{
	smis_json_thread_free(&body_tokener);
}

int smisd_request_recipient(struct json_object *root, const struct smisd_institution *inst,
			    char e164[SMISD_E164_MAX], struct smisd_problem *pb)
{
	static const char *const why[] = {
		"", "'/recipient' is not a valid phone number (E.164 or Belgian national form)",
		"'/recipient' is not a mobile number", "'/recipient' is in a country this institution may not send to",
	};
	const char *recipient;
	enum smisd_phone_result pr;

	if (get_text(root, "recipient", "/recipient", SMISD_MAX_RECIPIENT, SMISD_UTF8_ONE_LINE, true, &recipient,
		     pb))
		return -1;
	pr = smisd_phone_normalise(recipient, e164, (const char *const *)inst->allowed_cc);
	if (pr != SMISD_PHONE_OK) {
		smisd_problem_set(pb, 422, smisd_phone_result_code(pr), "/recipient", "%s", why[-pr]);
		return -1;
	}
	return 0;
}

/* Members of every object in `v`, nested ones included. */
static size_t tree_members(json_object *v)
{
	size_t n = 0, len;

	if (json_object_is_type(v, json_type_object)) {
		json_object_object_foreach(v, k, m) {
			(void)k;
			n += 1 + tree_members(m);
		}
	} else if (json_object_is_type(v, json_type_array)) {
		len = json_object_array_length(v);
		for (size_t i = 0; i < len; i++)
			n += tree_members(json_object_array_get_idx(v, i));
	}
	return n;
}

/* json-c's strict mode still takes NaN, Infinity and single-quoted names,
 * none of which is JSON, and keeps the last of two members with one name
 * where another reader of the same bytes (a gateway's filter) may keep the
 * first. So the text json-c found well formed is read again: outside
 * strings only JSON's own bytes may stand, and there each member has its
 * one ':'; fewer members in the tree than that means a repeated name. */
static bool json_text_exact(const char *s, size_t len, json_object *root)
{
	size_t colons = 0;
	bool in_string = false;

	for (size_t i = 0; i < len; i++) {
		if (in_string) {
			if (s[i] == '\\')
				i++;
			else if (s[i] == '"')
				in_string = false;
		} else if (s[i] == '"') {
			in_string = true;
		} else if (s[i] == ':') {
			colons++;
		} else if (!strchr(" \t\n\r{}[],-+.0123456789eEtrufalsn", s[i])) {
			return false;
		}
	}
	return tree_members(root) == colons;
}

struct json_object *smisd_json_parse_strict(const char *body, size_t len, struct smisd_problem *pb)
{
	json_tokener *tok;
	json_object *root;
	enum json_tokener_error err;
	bool clean;

	if (!smisd_utf8_valid(body, len, SMISD_UTF8_JSON)) {
		smisd_problem_set(pb, 400, "malformed_json", NULL, "the body is not UTF-8 JSON");
		return NULL;
	}
	tok = smis_json_thread_get(&body_tokener);
	if (!tok) {
		smisd_problem_set(pb, 500, "internal_error", NULL, "out of memory");
		return NULL;
	}
	root = json_tokener_parse_ex(tok, body, (int)len);
	err = json_tokener_get_error(tok);
	clean = root && err == json_tokener_success && json_tokener_get_parse_end(tok) == len;
	smis_json_thread_done(&body_tokener, clean);
	if (!clean) {
		/* json-c's words for an empty or cut body are "continue". */
		smisd_problem_set(pb, 400, "malformed_json", NULL, "the body is not valid JSON: %s",
				  err == json_tokener_continue ? "it ends before its value does (or is empty)"
				  : err != json_tokener_success ? json_tokener_error_desc(err)
				  : "something follows the value");
		goto refused;
	}
	if (!json_text_exact(body, len, root)) {
		smisd_problem_set(pb, 400, "malformed_json", NULL,
				  "the body is not valid JSON: a repeated member name, NaN, Infinity or a single quote");
		goto refused;
	}
	if (!json_object_is_type(root, json_type_object)) {
		smisd_problem_set(pb, 400, "invalid_type", "", "the body must be a JSON object");
		goto refused;
	}
	return root;
refused:
	json_object_put(root);
	return NULL;
}

int smisd_request_parse(const char *body, size_t len, const struct smisd_institution *inst,
			struct smisd_request *req, struct smisd_problem *pb)
{
	static const char *const known[] = { "recipient", "content", "strategy", "reference",
					      "language", "encrypted", "message_id", NULL };
	json_object *root = NULL, *content, *enc;
	struct smisd_request_content unordered[SMIS_LANG_MAX];
	const char *s;
	int rc = -1;
	size_t n = 0;

	memset(req, 0, sizeof(*req));
	memset(unordered, 0, sizeof(unordered));
	root = smisd_json_parse_strict(body, len, pb);
	if (!root)
		goto out;
	json_object_object_foreach(root, key, val) {
		int ok = 0;
		(void)val;
		for (const char *const *k = known; *k && !ok; k++)
			ok = strcmp(*k, key) == 0;
		if (!ok) {
			char ptr[64];
			snprintf(ptr, sizeof(ptr), "/%.40s", key);
			smisd_problem_set(pb, 400, "unknown_field", ptr, "unknown field '%s'", ptr);
			goto out;
		}
	}

	if (smisd_request_recipient(root, inst, req->recipient, pb) != 0)
		goto out;
	if (get_text(root, "reference", "/reference", SMISD_MAX_REFERENCE, SMISD_UTF8_ONE_LINE, false, &s, pb))
		goto out;
	if (s) {
		if (!valid_reference(s)) {
			smisd_problem_set(pb, 400, "invalid_value", "/reference",
					  "'/reference' may hold letters, digits and . _ : / - only");
			goto out;
		}
		if (keep_copy(s, &req->reference, pb) != 0)
			goto out;
	}
	if (get_text(root, "strategy", "/strategy", SMISD_MAX_STRATEGY, SMISD_UTF8_ONE_LINE, false, &s, pb))
		goto out;
	if (s && keep_copy(s, &req->strategy, pb) != 0)
		goto out;
	if (get_text(root, "language", "/language", 2, SMISD_UTF8_ONE_LINE, false, &s, pb))
		goto out;
	if (s) {
		if (lang_index(s) < 0) {
			smisd_problem_set(pb, 400, "unknown_language", "/language",
					  "'/language' must be one of nl, fr, de, en");
			goto out;
		}
		memcpy(req->language, s, 3);
	}

	if ((enc = smisd_json_member(root, "encrypted"))) {
		if (parse_encrypted(enc, req, pb) != 0)
			goto out;
		/* No length limit of its own: any text that is not an id ("msg_"
		 * and 26 characters), longer or not, is invalid_value. */
		if (get_text(root, "message_id", "/message_id", SIZE_MAX, SMISD_UTF8_ONE_LINE, true, &s, pb))
			goto out;
		if (!smisd_valid_message_id(s)) {
			smisd_problem_set(pb, 400, "invalid_value", "/message_id",
					  "'/message_id' must be the id given by POST /v1/recipients/keys");
			goto out;
		}
		/* SMIS dates its ids with their making. One dated ahead was made
		 * up, and would outlive store.retention_s (the store deletes by
		 * the ids' dates) and the check of ids past it. A minute allows
		 * for the clock being set back since the keys were asked. */
		if (smisd_id_time_ms(s, 4) > smisd_now_ms() + MESSAGE_ID_MAX_AHEAD_MS) {
			smisd_problem_set(pb, 400, "invalid_value", "/message_id",
					  "'/message_id' is dated ahead of SMIS's clock: it must be the id given by "
					  "POST /v1/recipients/keys");
			goto out;
		}
		snprintf(req->message_id, sizeof(req->message_id), "%s", s);
	} else if (smisd_json_member(root, "message_id")) {
		smisd_problem_set(pb, 400, "invalid_value", "/message_id",
				  "'/message_id' is only for institution-encrypted messages ('/encrypted')");
		goto out;
	}
	if (!(content = smisd_json_member(root, "content"))) {
		smisd_problem_set(pb, 400, "missing_content", "/content",
				  "'/content' is required, with at least one of nl, fr, de, en");
		goto out;
	}
	if (!json_object_is_type(content, json_type_object)) {
		smisd_problem_set(pb, 400, "invalid_type", "/content", "'/content' must be an object keyed by language");
		goto out;
	}
	json_object_object_foreach(content, lang, lc) {
		int li = lang_index(lang);
		if (li < 0) {
			char ptr[64];
			snprintf(ptr, sizeof(ptr), "/content/%.40s", lang);
			smisd_problem_set(pb, 400, "unknown_language", ptr,
					  "'%s': languages are nl, fr, de, en", ptr);
			goto out;
		}
		if (!lc)
			continue; /* null: absent, as for any member */
		if (parse_content(lc, lang, &unordered[n], req->encrypted_json != NULL, pb) != 0) {
			n++;
			goto out;
		}
		n++;
	}
	if (n == 0) {
		smisd_problem_set(pb, 400, "missing_content", "/content",
				  "'/content' must hold at least one of nl, fr, de, en");
		goto out;
	}
	/* Reorder by the institution's language preference; a language it does
	 * not list (the configuration lists all four) still goes, last. */
	for (size_t k = 0; k <= inst->n_languages; k++)
		for (size_t i = 0; i < n; i++)
			if (unordered[i].title &&
			    (k == inst->n_languages || strcmp(unordered[i].lang, inst->languages[k]) == 0)) {
				req->content[req->n_content++] = unordered[i];
				memset(&unordered[i], 0, sizeof(unordered[i]));
			}
	rc = 0;
out:
	for (size_t i = 0; i < SMIS_LANG_MAX; i++) {
		free(unordered[i].title);
		free(unordered[i].body);
		free(unordered[i].body_text);
		free(unordered[i].sms_text);
	}
	if (root)
		json_object_put(root);
	if (rc != 0)
		smisd_request_clear(req);
	return rc;
}

void smisd_request_clear(struct smisd_request *req)
{
	for (size_t i = 0; i < req->n_content; i++) {
		free(req->content[i].title);
		free(req->content[i].body);
		free(req->content[i].body_text);
		free(req->content[i].sms_text);
	}
	free(req->reference);
	free(req->strategy);
	free(req->encrypted_json);
	memset(req, 0, sizeof(*req));
}
