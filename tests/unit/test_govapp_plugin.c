/*
 * test_govapp_plugin.c - the GovApp channel plugin against a fake core.
 *
 * The built govapp.so is dlopen()ed the way smisd loads it (RTLD_NOW |
 * RTLD_LOCAL, one exported descriptor) and driven through a fake
 * struct smis_core_api: configuration from a key/value array, HTTP requests
 * captured instead of sent, a clock the tests move. Responses are canned, so
 * every outcome of docs/govapp-protocol.md can be checked without a network.
 * Envelopes are opened with the device secret keys made here, which proves
 * the plugin encrypts to the right key, binds the right ids, and leaves the
 * body out of the clear part of the request.
 */
#include "config.h"

#include <dlfcn.h>
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <CUnit/Basic.h>
#include <json-c/json.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "smis/smis-plugin.h"
#include "fake_config.h"
#include "fake_config.h"
#include "fake_core.h"
#include "b64url.h"
#include "e2e.h"

#ifndef GOVAPP_PLUGIN_PATH
#define GOVAPP_PLUGIN_PATH "plugins/channels/govapp/.libs/govapp.so"
#endif

#define BASE "http://127.0.0.1:18081"
#define TOKEN "tok-ABC123"
#define SECRET "0123456789abcdef-callback-secret"
#define PHONE "+32470123456"
#define PHONE_DIGITS "470123456"
#define MSG_ID "msg_01HZY3K4N5P6Q7R8S9T0V1W2X3"
#define BODY_NL "Geheime inhoud voor de burger NL"
#define BODY_FR "Contenu secret pour le citoyen FR"
#define ZERO_KEY "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
/* docs/govapp-protocol.md, "Worked example", computed there with Python's hmac. */
#define GOVAPP_DOC_EXAMPLE_MAC "922fee03a6b58b17effff3bc8044b9319b9fbf7edd48edeeb473960b2ae8bc11"

/* ------------------------------------------------------------------ */
/* Fake core                                                           */
/* ------------------------------------------------------------------ */

struct smis_instance {
	int unused;
};

static int64_t fake_now_ms = 1714566896000LL;
static int64_t fake_mono_ms = 1000000;
static char log_text[8192];
static int n_warn;

static void SMIS_PRINTF(3, 4)
fake_log(struct smis_instance *self, enum smis_log_level level, const char *fmt, ...)
{
	size_t len = strlen(log_text);
	va_list ap;

	if (level >= SMIS_LOG_WARN)
		n_warn++;
	va_start(ap, fmt);
	if (len < sizeof(log_text) - 2)
		vsnprintf(log_text + len, sizeof(log_text) - len - 1, fmt, ap);
	va_end(ap);
	len = strlen(log_text);
	if (len < sizeof(log_text) - 1)
		log_text[len] = '\n', log_text[len + 1] = '\0';
}

static void SMIS_PRINTF(3, 4)
fake_config_error(struct smis_config *cfg, const char *key, const char *fmt, ...)
{
	cfg->errors++;
	snprintf(cfg->last_error_key, sizeof(cfg->last_error_key), "%s", key ? key : "(block)");
}

static int64_t fake_now(void)
{
	return fake_now_ms;
}

static int64_t fake_mono(void)
{
	return fake_mono_ms;
}

static const struct smis_core_api api = FAKE_CORE_API(fake_log, fake_config_error, fake_now, fake_mono);

/* ------------------------------------------------------------------ */
/* Fixtures                                                            */
/* ------------------------------------------------------------------ */

static void *dl;
static const struct smis_plugin_descriptor *desc;
static const struct smis_channel_ops *ops;
static struct smis_instance self;
static void *inst;        /* base_url, api_token, callback_secret */
static void *inst_nosig;  /* no callback_secret */

/* Two device key pairs made once. */
static char *sk1_b64, *pk1_b64, *sk2_b64, *pk2_b64;

static const struct smis_content contents[2] = {
	{ .lang = "nl", .title = "Uw afspraak / vaccinatie", .body = "<p>" BODY_NL "</p>",
	  .body_text = BODY_NL, .body_is_html = true },
	{ .lang = "fr", .title = "Votre rendez-vous", .body = BODY_FR, .body_text = BODY_FR,
	  .body_is_html = false },
};

static struct smis_message msg = {
	.size = sizeof(struct smis_message),
	.id = MSG_ID,
	.institution = "FOD Test",
	.recipient = PHONE,
	.reference = "ref-42",
	.content = contents,
	.n_content = 2,
};

static struct smis_http_response resp_of(long status, const char *body)
{
	struct smis_http_response r = {
		.size = sizeof(struct smis_http_response),
		.transport = SMIS_TRANSPORT_OK,
		.status = status,
		.body = body,
		.body_len = strlen(body),
		.content_type = "application/json",
		.elapsed_ms = 12,
	};
	return r;
}

static struct smis_http_response resp_transport(enum smis_transport t)
{
	struct smis_http_response r = {
		.size = sizeof(struct smis_http_response),
		.transport = t,
		.body = "",
		.elapsed_ms = 5000,
		.error = "canned transport failure",
	};
	return r;
}

/* A lookup answer with the two test devices, the second optionally broken. */
static char *lookup_body(bool notifications, const char *pk1, const char *pk2)
{
	char *s = NULL;
	size_t n = 1024;

	s = malloc(n);
	if (pk2)
		snprintf(s, n,
			 "{\"registered\":true,\"notifications_enabled\":%s,\"language\":\"fr\",\"devices\":["
			 "{\"device_id\":\"d-1\",\"platform\":\"android\",\"public_key\":\"%s\",\"key_alg\":\"X25519\"},"
			 "{\"device_id\":\"d-2\",\"platform\":\"ios\",\"public_key\":\"%s\",\"key_alg\":\"X25519\"}]}",
			 notifications ? "true" : "false", pk1, pk2);
	else
		snprintf(s, n,
			 "{\"registered\":true,\"notifications_enabled\":%s,\"language\":\"fr\",\"devices\":["
			 "{\"device_id\":\"d-1\",\"platform\":\"android\",\"public_key\":\"%s\",\"key_alg\":\"X25519\"}]}",
			 notifications ? "true" : "false", pk1);
	return s;
}

static void *make_instance(const struct fake_kv *kv, size_t n, int *errors)
{
	struct smis_config cfg = { .kv = kv, .n = n };
	void *st = NULL;
	int rc = ops->create(&api, &self, &cfg, &st);

	if (errors)
		*errors = cfg.errors;
	return rc == 0 ? st : NULL;
}

static int suite_init(void)
{
	static const struct fake_kv good[] = {
		{ "base_url", BASE "/" }, /* trailing slash must be tolerated */
		{ "api_token", TOKEN },
		{ "callback_secret", SECRET },
	};
	static const struct fake_kv nosig[] = {
		{ "base_url", BASE },
		{ "api_token", TOKEN },
	};

	dl = dlopen(GOVAPP_PLUGIN_PATH, RTLD_NOW | RTLD_LOCAL);
	if (!dl) {
		fprintf(stderr, "dlopen %s: %s\n", GOVAPP_PLUGIN_PATH, dlerror());
		return -1;
	}
	desc = dlsym(dl, SMIS_PLUGIN_SYMBOL);
	if (!desc || !desc->channel)
		return -1;
	ops = desc->channel;
	if (smis_e2e_keygen_b64url(&sk1_b64, &pk1_b64) || smis_e2e_keygen_b64url(&sk2_b64, &pk2_b64))
		return -1;
	inst = make_instance(good, 3, NULL);
	inst_nosig = make_instance(nosig, 2, NULL);
	return inst && inst_nosig ? 0 : -1;
}

static int suite_clean(void)
{
	if (ops) {
		ops->destroy(inst);
		ops->destroy(inst_nosig);
	}
	free(sk1_b64);
	free(pk1_b64);
	free(sk2_b64);
	free(pk2_b64);
	if (dl)
		dlclose(dl);
	return 0;
}

/* Run one LOOKUP to completion with a canned answer. */
static int do_lookup(void **call, struct smis_http_response *resp, struct smis_outcome *out)
{
	struct smis_http_request *req = NULL;
	int rc;

	memset(out, 0, sizeof(*out));
	rc = ops->start(inst, SMIS_OP_LOOKUP, &msg, call, &req, out);
	CU_ASSERT_EQUAL_FATAL(rc, SMIS_STEP_REQUEST);
	fake_http_request_free(req);
	req = NULL;
	rc = ops->resume(inst, SMIS_OP_LOOKUP, &msg, call, resp, &req, out);
	CU_ASSERT_PTR_NULL(req);
	fake_http_request_free(req);
	return rc;
}

/* A call slot that has looked up the two test devices. */
static void *looked_up_call(const char *pk2)
{
	void *call = NULL;
	struct smis_outcome out;
	char *body = lookup_body(true, pk1_b64, pk2);
	struct smis_http_response r = resp_of(200, body);

	CU_ASSERT_EQUAL(do_lookup(&call, &r, &out), SMIS_STEP_DONE);
	free(out.devices_json);
	free(body);
	return call;
}

static struct json_object *parse(const char *s)
{
	return s ? json_tokener_parse(s) : NULL;
}

static const char *jstr(struct json_object *o, const char *key)
{
	struct json_object *v;

	if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string))
		return NULL;
	return json_object_get_string(v);
}

/* ------------------------------------------------------------------ */
/* Tests                                                               */
/* ------------------------------------------------------------------ */

static void test_descriptor(void)
{
	CU_ASSERT_EQUAL(desc->abi_version, SMIS_PLUGIN_ABI_VERSION);
	CU_ASSERT_EQUAL(desc->kind, SMIS_PLUGIN_CHANNEL);
	CU_ASSERT_STRING_EQUAL(desc->name, "govapp");
	CU_ASSERT_EQUAL(desc->caps, SMIS_CAP_LOOKUP | SMIS_CAP_SEND | SMIS_CAP_APP | SMIS_CAP_STATUS);
	CU_ASSERT_PTR_NOT_NULL(ops->create);
	CU_ASSERT_PTR_NOT_NULL(ops->call_free);
	CU_ASSERT_PTR_NOT_NULL(ops->inbound);
	/* Only the descriptor is exported (STYLE.md rule 13). */
	CU_ASSERT_PTR_NULL(dlsym(dl, "govapp_start"));
	CU_ASSERT_PTR_NULL(dlsym(dl, "smis_e2e_seal"));
}

static void test_config(void)
{
	static const struct fake_kv no_url[] = { { "api_token", TOKEN } };
	static const struct fake_kv bad_url[] = { { "base_url", "ftp://x" }, { "api_token", TOKEN } };
	/* Accepted until the shared check: every request then went to ".../x?v=1/v1/...". */
	static const struct fake_kv query_url[] = { { "base_url", BASE "?v=1" }, { "api_token", TOKEN } };
	static const struct fake_kv hostless_url[] = { { "base_url", "https:///v1" }, { "api_token", TOKEN } };
	static const struct fake_kv no_token[] = { { "base_url", BASE } };
	static const struct fake_kv short_secret[] = {
		{ "base_url", BASE }, { "api_token", TOKEN }, { "callback_secret", "short" } };
	/* Read as absent, it would refuse every callback: an error instead. */
	static const struct fake_kv secret_no_memory[] = {
		{ "base_url", BASE }, { "api_token", TOKEN }, { "callback_secret", FAKE_NO_MEMORY } };
	static const struct fake_kv bad_skew[] = {
		{ "base_url", BASE }, { "api_token", TOKEN }, { "callback_max_skew_s", NULL, 0 } };
	static const struct fake_kv typed[] = {
		{ "base_url", BASE }, { "api_token", TOKEN }, { "callback_max_skew_s", "300" } };
	static const struct fake_kv full[] = {
		{ "base_url", BASE }, { "api_token", TOKEN }, { "callback_secret", SECRET },
		{ "callback_max_skew_s", NULL, 60 }, { "lookup_max_age_s", NULL, 0 } };
	int errors = 0;
	void *st;

	CU_ASSERT_PTR_NULL(make_instance(no_url, 1, &errors));
	CU_ASSERT(errors >= 1);
	CU_ASSERT_PTR_NULL(make_instance(bad_url, 2, &errors));
	CU_ASSERT_EQUAL(errors, 1);
	CU_ASSERT_PTR_NULL(make_instance(query_url, 2, &errors));
	CU_ASSERT_EQUAL(errors, 1);
	CU_ASSERT_PTR_NULL(make_instance(hostless_url, 2, &errors));
	CU_ASSERT_EQUAL(errors, 1);
	CU_ASSERT_PTR_NULL(make_instance(no_token, 1, &errors));
	CU_ASSERT_EQUAL(errors, 1);
	CU_ASSERT_PTR_NULL(make_instance(short_secret, 3, &errors));
	CU_ASSERT_EQUAL(errors, 1);
	CU_ASSERT_PTR_NULL(make_instance(secret_no_memory, 3, &errors));
	CU_ASSERT_EQUAL(errors, 1);
	CU_ASSERT_PTR_NULL(make_instance(bad_skew, 3, &errors));
	CU_ASSERT_EQUAL(errors, 1);
	CU_ASSERT_PTR_NULL(make_instance(typed, 3, &errors));
	CU_ASSERT_EQUAL(errors, 1);
	st = make_instance(full, 5, &errors);
	CU_ASSERT_PTR_NOT_NULL_FATAL(st);
	CU_ASSERT_EQUAL(errors, 0);
	/* lookup_max_age_s = 0: a SEND never reuses a lookup, even a fresh one. */
	{
		struct smis_http_request *req = NULL;
		struct smis_outcome out = { 0 };
		char *body = lookup_body(true, pk1_b64, NULL);
		struct smis_http_response r = resp_of(200, body);
		void *call = NULL;

		CU_ASSERT_EQUAL(ops->start(st, SMIS_OP_LOOKUP, &msg, &call, &req, &out), SMIS_STEP_REQUEST);
		fake_http_request_free(req);
		req = NULL;
		CU_ASSERT_EQUAL(ops->resume(st, SMIS_OP_LOOKUP, &msg, &call, &r, &req, &out), SMIS_STEP_DONE);
		CU_ASSERT_EQUAL(out.reach, SMIS_REACH_YES);
		free(out.devices_json);
		CU_ASSERT_EQUAL(ops->start(st, SMIS_OP_SEND, &msg, &call, &req, &out), SMIS_STEP_REQUEST);
		CU_ASSERT_STRING_EQUAL(req ? req->url : "", BASE "/v1/citizens/lookup");
		fake_http_request_free(req);
		ops->call_free(st, call);
		free(body);
	}
	ops->destroy(st);
	ops->destroy(NULL);
	ops->call_free(inst, NULL);
}

static void test_lookup_request(void)
{
	struct smis_http_request *req = NULL;
	struct smis_outcome out = { 0 };
	void *call = NULL;
	struct json_object *o;

	CU_ASSERT_EQUAL(ops->start(inst, SMIS_OP_LOOKUP, &msg, &call, &req, &out), SMIS_STEP_REQUEST);
	CU_ASSERT_PTR_NOT_NULL_FATAL(req);
	CU_ASSERT_PTR_NOT_NULL(call);
	CU_ASSERT_STRING_EQUAL(req->method, "POST");
	CU_ASSERT_STRING_EQUAL(req->url, BASE "/v1/citizens/lookup");
	CU_ASSERT_PTR_NULL(strstr(req->url, PHONE_DIGITS));
	CU_ASSERT_PTR_NOT_NULL(fake_http_header(req, "Authorization"));
	if (fake_http_header(req, "Authorization"))
		CU_ASSERT_STRING_EQUAL(fake_http_header(req, "Authorization"), "Bearer " TOKEN);
	CU_ASSERT_PTR_NOT_NULL(fake_http_header(req, "Content-Type"));
	if (fake_http_header(req, "Content-Type"))
		CU_ASSERT_STRING_EQUAL(fake_http_header(req, "Content-Type"), "application/json");
	o = parse(req->body);
	CU_ASSERT_PTR_NOT_NULL(o);
	CU_ASSERT_STRING_EQUAL(jstr(o, "phone") ? jstr(o, "phone") : "", PHONE);
	CU_ASSERT_EQUAL(json_object_object_length(o), 1);
	json_object_put(o);
	fake_http_request_free(req);
	ops->call_free(inst, call);
}

static void test_lookup_reach(void)
{
	struct {
		const char *body;
		enum smis_reach reach;
		int devices;
		const char *lang;
	} cases[] = {
		{ "{\"registered\":false}", SMIS_REACH_NOT_INSTALLED, 0, "" },
		{ "{\"registered\":true,\"notifications_enabled\":false,\"language\":\"nl\",\"devices\":[]}",
		  SMIS_REACH_NOTIFICATIONS_OFF, 0, "nl" },
		{ "{\"registered\":true,\"notifications_enabled\":true,\"language\":\"de\",\"devices\":[]}",
		  SMIS_REACH_NOT_INSTALLED, 0, "de" },
		/* A device whose key is unusable still counts as an installation:
		 * the SEND then fails with the precise "govapp_no_device_key". */
		{ "{\"registered\":true,\"notifications_enabled\":true,\"language\":\"en\",\"devices\":["
		  "{\"device_id\":\"d-1\",\"public_key\":\"" ZERO_KEY "\",\"key_alg\":\"X25519\"}]}",
		  SMIS_REACH_YES, 1, "en" },
	};
	struct smis_outcome out;
	char *body;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		void *call = NULL;
		struct smis_http_response r = resp_of(200, cases[i].body);

		CU_ASSERT_EQUAL(do_lookup(&call, &r, &out), SMIS_STEP_DONE);
		CU_ASSERT_EQUAL(out.kind, SMIS_OUTCOME_OK);
		CU_ASSERT_EQUAL(out.reach, cases[i].reach);
		CU_ASSERT_EQUAL(out.devices, cases[i].devices);
		CU_ASSERT_STRING_EQUAL(out.language, cases[i].lang);
		/* Only usable keys are offered to institutions. */
		if (i == 0)
			CU_ASSERT_PTR_NULL(out.devices_json);
		if (i > 0)
			CU_ASSERT_STRING_EQUAL(out.devices_json ? out.devices_json : "", "[]");
		free(out.devices_json);
		ops->call_free(inst, call);
	}

	/* Reachable: two devices with good keys. */
	{
		void *call = NULL;
		struct smis_http_response r;

		body = lookup_body(true, pk1_b64, pk2_b64);
		r = resp_of(200, body);
		CU_ASSERT_EQUAL(do_lookup(&call, &r, &out), SMIS_STEP_DONE);
		CU_ASSERT_EQUAL(out.kind, SMIS_OUTCOME_OK);
		CU_ASSERT_EQUAL(out.reach, SMIS_REACH_YES);
		CU_ASSERT_EQUAL(out.devices, 2);
		CU_ASSERT_STRING_EQUAL(out.language, "fr");
		CU_ASSERT_PTR_NULL(strstr(out.detail, PHONE_DIGITS));
		/* The keys, for institutions that encrypt themselves. */
		{
			struct json_object *a = parse(out.devices_json), *d;

			CU_ASSERT_FATAL(a && json_object_is_type(a, json_type_array));
			CU_ASSERT_EQUAL(json_object_array_length(a), 2);
			d = json_object_array_get_idx(a, 1);
			CU_ASSERT_STRING_EQUAL(jstr(d, "device_id"), "d-2");
			CU_ASSERT_STRING_EQUAL(jstr(d, "public_key"), pk2_b64);
			CU_ASSERT_STRING_EQUAL(jstr(d, "key_alg"), "X25519");
			json_object_put(a);
		}
		free(out.devices_json);
		ops->call_free(inst, call);
		free(body);
	}
}

/* Open every envelope of a send body and check its plaintext. */
static void check_envelopes(struct json_object *o, size_t want_envelopes)
{
	struct json_object *envs;
	unsigned char sk[32];

	CU_ASSERT_FATAL(json_object_object_get_ex(o, "envelopes", &envs));
	CU_ASSERT_EQUAL_FATAL(json_object_array_length(envs), want_envelopes);
	for (size_t i = 0; i < want_envelopes; i++) {
		struct json_object *e = json_object_array_get_idx(envs, i), *pt, *content, *l, *v;
		const char *dev = jstr(e, "device_id");
		unsigned char *plain = NULL;
		size_t plain_len = 0;

		CU_ASSERT_PTR_NOT_NULL_FATAL(dev);
		CU_ASSERT_EQUAL_FATAL(smis_b64url_decode_fixed(strcmp(dev, "d-1") == 0 ? sk1_b64 : sk2_b64,
							       sk, sizeof(sk)), 0);
		CU_ASSERT_EQUAL_FATAL(smis_e2e_open(MSG_ID, dev, sk, jstr(e, "enc"), jstr(e, "ciphertext"),
						    &plain, &plain_len), 0);
		/* Bound to the device: the other device's id does not open it. */
		{
			unsigned char *p2 = NULL;
			size_t l2 = 0;

			CU_ASSERT_EQUAL(smis_e2e_open(MSG_ID, strcmp(dev, "d-1") == 0 ? "d-2" : "d-1", sk,
						      jstr(e, "enc"), jstr(e, "ciphertext"), &p2, &l2),
					-EBADMSG);
			free(p2);
		}
		pt = parse((const char *)plain);
		CU_ASSERT_PTR_NOT_NULL_FATAL(pt);
		CU_ASSERT(json_object_object_get_ex(pt, "v", &v) && json_object_get_int(v) == 1);
		CU_ASSERT_STRING_EQUAL(jstr(pt, "message_id"), MSG_ID);
		CU_ASSERT_FATAL(json_object_object_get_ex(pt, "content", &content));
		CU_ASSERT_EQUAL(json_object_object_length(content), 2);
		CU_ASSERT_FATAL(json_object_object_get_ex(content, "nl", &l));
		CU_ASSERT_STRING_EQUAL(jstr(l, "title"), "Uw afspraak / vaccinatie");
		CU_ASSERT_STRING_EQUAL(jstr(l, "body"), "<p>" BODY_NL "</p>");
		CU_ASSERT_STRING_EQUAL(jstr(l, "body_text"), BODY_NL);
		CU_ASSERT_STRING_EQUAL(jstr(l, "format"), "html");
		CU_ASSERT_FATAL(json_object_object_get_ex(content, "fr", &l));
		CU_ASSERT_STRING_EQUAL(jstr(l, "body"), BODY_FR);
		CU_ASSERT_STRING_EQUAL(jstr(l, "format"), "text");
		json_object_put(pt);
		free(plain);
	}
}

static void test_send_envelopes(void)
{
	void *call = looked_up_call(pk2_b64);
	struct smis_http_request *req = NULL;
	struct smis_outcome out = { 0 };
	struct json_object *o, *v;
	struct smis_http_response r;

	/* The remembered lookup is used: the first request is the send. */
	CU_ASSERT_EQUAL(ops->start(inst, SMIS_OP_SEND, &msg, &call, &req, &out), SMIS_STEP_REQUEST);
	CU_ASSERT_PTR_NOT_NULL_FATAL(req);
	CU_ASSERT_STRING_EQUAL(req->method, "POST");
	CU_ASSERT_STRING_EQUAL(req->url, BASE "/v1/notifications");
	CU_ASSERT_STRING_EQUAL(fake_http_header(req, "Authorization") ? fake_http_header(req, "Authorization") : "",
			       "Bearer " TOKEN);
	/* Nothing of the body in clear, whatever its form. */
	CU_ASSERT_PTR_NULL(strstr(req->body, BODY_NL));
	CU_ASSERT_PTR_NULL(strstr(req->body, BODY_FR));
	CU_ASSERT_PTR_NULL(strstr(req->body, "Geheime"));
	CU_ASSERT_PTR_NULL(strstr(req->body, "body"));
	o = parse(req->body);
	CU_ASSERT_PTR_NOT_NULL_FATAL(o);
	CU_ASSERT_STRING_EQUAL(jstr(o, "message_id"), MSG_ID);
	CU_ASSERT_STRING_EQUAL(jstr(o, "phone"), PHONE);
	CU_ASSERT_STRING_EQUAL(jstr(o, "sender"), "FOD Test");
	CU_ASSERT_STRING_EQUAL(jstr(o, "reference"), "ref-42");
	CU_ASSERT_STRING_EQUAL(jstr(o, "encryption"), "HPKE-Base-X25519-SHA256-AES128GCM");
	CU_ASSERT(json_object_object_get_ex(o, "title", &v));
	CU_ASSERT_STRING_EQUAL(jstr(v, "nl"), "Uw afspraak / vaccinatie");
	CU_ASSERT_STRING_EQUAL(jstr(v, "fr"), "Votre rendez-vous");
	CU_ASSERT(json_object_object_get_ex(o, "languages", &v) && json_object_array_length(v) == 2);
	CU_ASSERT_STRING_EQUAL(json_object_get_string(json_object_array_get_idx(v, 0)), "nl");
	CU_ASSERT_STRING_EQUAL(json_object_get_string(json_object_array_get_idx(v, 1)), "fr");
	check_envelopes(o, 2);
	json_object_put(o);
	fake_http_request_free(req);
	req = NULL;

	r = resp_of(202, "{\"notification_id\":\"gn_01ABC\",\"devices\":[{\"device_id\":\"d-1\",\"status\":\"accepted\"}]}");
	memset(&out, 0, sizeof(out));
	CU_ASSERT_EQUAL(ops->resume(inst, SMIS_OP_SEND, &msg, &call, &r, &req, &out), SMIS_STEP_DONE);
	CU_ASSERT_PTR_NULL(req);
	CU_ASSERT_EQUAL(out.kind, SMIS_OUTCOME_OK);
	CU_ASSERT_STRING_EQUAL(out.provider_ref, "gn_01ABC");
	ops->call_free(inst, call);
}

static void test_send_skips_invalid_key(void)
{
	void *call = looked_up_call(ZERO_KEY);
	struct smis_http_request *req = NULL;
	struct smis_outcome out = { 0 };
	struct json_object *o, *envs;

	CU_ASSERT_EQUAL(ops->start(inst, SMIS_OP_SEND, &msg, &call, &req, &out), SMIS_STEP_REQUEST);
	CU_ASSERT_PTR_NOT_NULL_FATAL(req);
	o = parse(req->body);
	CU_ASSERT_PTR_NOT_NULL_FATAL(o);
	check_envelopes(o, 1);
	CU_ASSERT(json_object_object_get_ex(o, "envelopes", &envs));
	CU_ASSERT_STRING_EQUAL(jstr(json_object_array_get_idx(envs, 0), "device_id"), "d-1");
	json_object_put(o);
	fake_http_request_free(req);
	ops->call_free(inst, call);
}

static void test_send_no_valid_key(void)
{
	static const char *bodies[] = {
		"{\"registered\":true,\"notifications_enabled\":true,\"devices\":["
		"{\"device_id\":\"d-1\",\"public_key\":\"" ZERO_KEY "\",\"key_alg\":\"X25519\"},"
		"{\"device_id\":\"d-2\",\"public_key\":\"not-a-key\",\"key_alg\":\"X25519\"},"
		"{\"device_id\":\"d-3\",\"key_alg\":\"X25519\"}]}",
		"{\"registered\":true,\"notifications_enabled\":true,\"devices\":[]}",
	};

	for (size_t i = 0; i < 2; i++) {
		void *call = NULL;
		struct smis_http_request *req = NULL;
		struct smis_outcome out;
		struct smis_http_response r = resp_of(200, bodies[i]);

		CU_ASSERT_EQUAL(do_lookup(&call, &r, &out), SMIS_STEP_DONE);
		free(out.devices_json);
		memset(&out, 0, sizeof(out));
		CU_ASSERT_EQUAL(ops->start(inst, SMIS_OP_SEND, &msg, &call, &req, &out), SMIS_STEP_DONE);
		CU_ASSERT_PTR_NULL(req);
		fake_http_request_free(req);
		CU_ASSERT_EQUAL(out.kind, SMIS_OUTCOME_PERMFAIL);
		CU_ASSERT_STRING_EQUAL(out.error, "govapp_no_device_key");
		ops->call_free(inst, call);
	}

	/* A device whose key uses another algorithm is not sealed to either. */
	{
		char body[512];
		void *call = NULL;
		struct smis_http_request *req = NULL;
		struct smis_outcome out;
		struct smis_http_response r;

		snprintf(body, sizeof(body),
			 "{\"registered\":true,\"notifications_enabled\":true,\"devices\":["
			 "{\"device_id\":\"d-1\",\"public_key\":\"%s\",\"key_alg\":\"P-256\"}]}", pk1_b64);
		r = resp_of(200, body);
		CU_ASSERT_EQUAL(do_lookup(&call, &r, &out), SMIS_STEP_DONE);
		CU_ASSERT_EQUAL(out.devices, 1);
		CU_ASSERT_STRING_EQUAL(out.devices_json ? out.devices_json : "", "[]");
		free(out.devices_json);
		CU_ASSERT_EQUAL(ops->start(inst, SMIS_OP_SEND, &msg, &call, &req, &out), SMIS_STEP_DONE);
		CU_ASSERT_STRING_EQUAL(out.error, "govapp_no_device_key");
		fake_http_request_free(req);
		ops->call_free(inst, call);
	}
}

static void test_send_unreachable_from_lookup(void)
{
	struct {
		const char *body;
		const char *error;
	} cases[] = {
		{ "{\"registered\":false}", "govapp_not_registered" },
		{ "{\"registered\":true,\"notifications_enabled\":false,\"devices\":[]}",
		  "govapp_notifications_disabled" },
	};

	for (size_t i = 0; i < 2; i++) {
		void *call = NULL;
		struct smis_http_request *req = NULL;
		struct smis_outcome out = { 0 };
		struct smis_http_response r = resp_of(200, cases[i].body);

		/* SEND on a fresh slot: lookup first, then no send at all. */
		CU_ASSERT_EQUAL(ops->start(inst, SMIS_OP_SEND, &msg, &call, &req, &out), SMIS_STEP_REQUEST);
		CU_ASSERT_STRING_EQUAL(req->url, BASE "/v1/citizens/lookup");
		fake_http_request_free(req);
		req = NULL;
		CU_ASSERT_EQUAL(ops->resume(inst, SMIS_OP_SEND, &msg, &call, &r, &req, &out), SMIS_STEP_DONE);
		CU_ASSERT_PTR_NULL(req);
		CU_ASSERT_EQUAL(out.kind, SMIS_OUTCOME_PERMFAIL);
		CU_ASSERT_STRING_EQUAL(out.error, cases[i].error);
		ops->call_free(inst, call);
	}
}

static void test_lookup_then_send(void)
{
	void *call = NULL;
	struct smis_http_request *req = NULL;
	struct smis_outcome out = { 0 };
	char *body = lookup_body(true, pk1_b64, pk2_b64);
	struct smis_http_response r = resp_of(200, body);
	struct json_object *o;

	CU_ASSERT_EQUAL(ops->start(inst, SMIS_OP_SEND, &msg, &call, &req, &out), SMIS_STEP_REQUEST);
	CU_ASSERT_PTR_NOT_NULL_FATAL(req);
	CU_ASSERT_STRING_EQUAL(req->url, BASE "/v1/citizens/lookup");
	fake_http_request_free(req);
	req = NULL;

	CU_ASSERT_EQUAL(ops->resume(inst, SMIS_OP_SEND, &msg, &call, &r, &req, &out), SMIS_STEP_REQUEST);
	CU_ASSERT_PTR_NOT_NULL_FATAL(req);
	CU_ASSERT_STRING_EQUAL(req->url, BASE "/v1/notifications");
	o = parse(req->body);
	check_envelopes(o, 2);
	json_object_put(o);
	fake_http_request_free(req);
	req = NULL;

	r = resp_of(202, "{\"notification_id\":\"gn_CHAIN\",\"devices\":[]}");
	CU_ASSERT_EQUAL(ops->resume(inst, SMIS_OP_SEND, &msg, &call, &r, &req, &out), SMIS_STEP_DONE);
	CU_ASSERT_EQUAL(out.kind, SMIS_OUTCOME_OK);
	CU_ASSERT_STRING_EQUAL(out.provider_ref, "gn_CHAIN");

	/* The lookup is remembered for a while, then asked again. */
	memset(&out, 0, sizeof(out));
	CU_ASSERT_EQUAL(ops->start(inst, SMIS_OP_SEND, &msg, &call, &req, &out), SMIS_STEP_REQUEST);
	CU_ASSERT_STRING_EQUAL(req->url, BASE "/v1/notifications");
	fake_http_request_free(req);
	req = NULL;
	fake_mono_ms += 61000;
	CU_ASSERT_EQUAL(ops->start(inst, SMIS_OP_SEND, &msg, &call, &req, &out), SMIS_STEP_REQUEST);
	CU_ASSERT_STRING_EQUAL(req->url, BASE "/v1/citizens/lookup");
	fake_http_request_free(req);
	free(body);
	ops->call_free(inst, call);
}

/* A step that must ask for `url`; with envelopes > 0, a SEND carrying that
 * many envelopes that open. Frees the request. */
static void expect_request(int rc, struct smis_http_request *req, const char *url, size_t envelopes)
{
	CU_ASSERT_EQUAL(rc, SMIS_STEP_REQUEST);
	CU_ASSERT_PTR_NOT_NULL_FATAL(req);
	CU_ASSERT_STRING_EQUAL(req->url, url);
	if (envelopes > 0) {
		struct json_object *o = parse(req->body);
		check_envelopes(o, envelopes);
		json_object_put(o);
	}
	fake_http_request_free(req);
}

/* Look up with the devices array `devices`: `counted` devices counted, the
 * usable keys (`want`, pairs of device id and key, n_want of them) in this
 * order, then a SEND sealed once for each of them. */
static void check_looked_up(const char *devices, size_t counted, const char *const want[][2], size_t n_want)
{
	void *call = NULL;
	struct smis_http_request *req = NULL;
	struct smis_outcome out;
	struct smis_http_response r;
	struct json_object *a;
	char body[1024];
	int rc;

	snprintf(body, sizeof(body),
		 "{\"registered\":true,\"notifications_enabled\":true,\"language\":\"fr\",\"devices\":%s}",
		 devices);
	r = resp_of(200, body);
	CU_ASSERT_EQUAL(do_lookup(&call, &r, &out), SMIS_STEP_DONE);
	CU_ASSERT_EQUAL(out.reach, SMIS_REACH_YES);
	CU_ASSERT_EQUAL((size_t)out.devices, counted);
	a = parse(out.devices_json);
	CU_ASSERT_FATAL(a && json_object_is_type(a, json_type_array));
	CU_ASSERT_EQUAL_FATAL(json_object_array_length(a), n_want);
	for (size_t i = 0; i < n_want; i++) {
		CU_ASSERT_STRING_EQUAL(jstr(json_object_array_get_idx(a, i), "device_id"), want[i][0]);
		CU_ASSERT_STRING_EQUAL(jstr(json_object_array_get_idx(a, i), "public_key"), want[i][1]);
	}
	json_object_put(a);
	free(out.devices_json);

	memset(&out, 0, sizeof(out));
	rc = ops->start(inst, SMIS_OP_SEND, &msg, &call, &req, &out);
	expect_request(rc, req, BASE "/v1/notifications", n_want);
	ops->call_free(inst, call);
}

/* A device listed twice counts once, with its first entry that has a
 * usable key (else its first): one envelope per device id, as the backend
 * requires (else 422 duplicate_device). */
static void test_lookup_duplicate_devices(void)
{
	char devices[768];

	/* The SEND seals once per device, to the key of its first entry. */
	snprintf(devices, sizeof(devices),
		 "[{\"device_id\":\"d-2\",\"public_key\":\"%s\"},{\"device_id\":\"d-1\",\"public_key\":\"%s\"},"
		 "{\"device_id\":\"d-2\",\"public_key\":\"%s\"},{\"device_id\":\"d-1\",\"public_key\":\"" ZERO_KEY "\"},"
		 "{\"device_id\":\"d-2\"}]",
		 pk2_b64, pk1_b64, pk1_b64);
	check_looked_up(devices, 2, (const char *const[][2]){ { "d-2", pk2_b64 }, { "d-1", pk1_b64 } }, 2);

	/* An unusable first entry gives way to a later usable one of the
	 * same device (else: govapp_no_device_key for a reachable device);
	 * with none usable, the first stays and counts. */
	snprintf(devices, sizeof(devices),
		 "[{\"device_id\":\"d-1\",\"public_key\":\"" ZERO_KEY "\"},{\"device_id\":\"d-2\"},"
		 "{\"device_id\":\"d-1\",\"public_key\":\"%s\"},"
		 "{\"device_id\":\"d-2\",\"public_key\":\"%s\",\"key_alg\":\"P-256\"}]",
		 pk1_b64, pk2_b64);
	check_looked_up(devices, 2, (const char *const[][2]){ { "d-1", pk1_b64 } }, 1);
}

/* prepare_send seals ahead (on a core worker thread) for the devices the
 * call's lookup holds; the SEND then takes those envelopes; anything that
 * changes the devices in between throws them away. */
static void test_prepare_send(void)
{
	struct smis_content other[2] = { contents[0], contents[1] };
	struct smis_message later = msg;
	struct smis_http_request *req = NULL;
	struct smis_outcome out = { 0 };
	void *call;
	char *one = lookup_body(true, pk1_b64, NULL);
	struct smis_http_response r = resp_of(200, one);
	int rc;

	CU_ASSERT_PTR_NOT_NULL_FATAL(ops->prepare_send);
	/* A message whose content start() would seal differently: the
	 * envelopes of the SEND hold what prepare_send sealed (msg's). */
	other[0].body = other[0].body_text = "Iets anders";
	later.content = other;

	/* Fresh lookup: prepared, and taken by start. */
	call = looked_up_call(pk2_b64);
	ops->prepare_send(inst, &msg, &call);
	rc = ops->start(inst, SMIS_OP_SEND, &later, &call, &req, &out);
	expect_request(rc, req, BASE "/v1/notifications", 2);
	ops->call_free(inst, call);

	/* Prepared, then the lookup got too old before start: start looks the
	 * citizen up again, who now has one device; the SEND carries that
	 * device's envelope only, sealed anew. */
	call = looked_up_call(pk2_b64);
	ops->prepare_send(inst, &msg, &call);
	fake_mono_ms += 61000;
	rc = ops->start(inst, SMIS_OP_SEND, &msg, &call, &req, &out);
	expect_request(rc, req, BASE "/v1/citizens/lookup", 0);
	rc = ops->resume(inst, SMIS_OP_SEND, &msg, &call, &r, &req, &out);
	expect_request(rc, req, BASE "/v1/notifications", 1);
	ops->call_free(inst, call);

	/* A stale lookup is not sealed for at all, and a call never looked
	 * up, or NULL, is left alone; a prepared call freed unused leaks
	 * nothing (valgrind runs this). */
	call = looked_up_call(pk2_b64);
	fake_mono_ms += 61000;
	ops->prepare_send(inst, &msg, &call);
	rc = ops->start(inst, SMIS_OP_SEND, &msg, &call, &req, &out);
	expect_request(rc, req, BASE "/v1/citizens/lookup", 0);
	ops->call_free(inst, call);
	call = NULL;
	ops->prepare_send(inst, &msg, &call);
	CU_ASSERT_PTR_NULL(call);
	ops->prepare_send(inst, &msg, NULL);
	call = looked_up_call(pk2_b64);
	ops->prepare_send(inst, &msg, &call);
	ops->call_free(inst, call);
	free(one);
}

static void test_unknown_device_relookup(void)
{
	void *call = looked_up_call(pk2_b64);
	struct smis_http_request *req = NULL;
	struct smis_outcome out = { 0 };
	char *body = lookup_body(true, pk1_b64, NULL);
	struct smis_http_response unknown = resp_of(422, "{\"error\":\"unknown_device\"}");
	struct smis_http_response lk = resp_of(200, body);
	struct json_object *o;

	CU_ASSERT_EQUAL(ops->start(inst, SMIS_OP_SEND, &msg, &call, &req, &out), SMIS_STEP_REQUEST);
	fake_http_request_free(req);
	req = NULL;
	/* Devices changed since the remembered lookup: learn them again. */
	CU_ASSERT_EQUAL(ops->resume(inst, SMIS_OP_SEND, &msg, &call, &unknown, &req, &out),
			SMIS_STEP_REQUEST);
	CU_ASSERT_PTR_NOT_NULL_FATAL(req);
	CU_ASSERT_STRING_EQUAL(req->url, BASE "/v1/citizens/lookup");
	fake_http_request_free(req);
	req = NULL;
	CU_ASSERT_EQUAL(ops->resume(inst, SMIS_OP_SEND, &msg, &call, &lk, &req, &out), SMIS_STEP_REQUEST);
	CU_ASSERT_PTR_NOT_NULL_FATAL(req);
	o = parse(req->body);
	check_envelopes(o, 1);
	json_object_put(o);
	fake_http_request_free(req);
	req = NULL;
	/* Only once per operation. */
	CU_ASSERT_EQUAL(ops->resume(inst, SMIS_OP_SEND, &msg, &call, &unknown, &req, &out), SMIS_STEP_DONE);
	CU_ASSERT_PTR_NULL(req);
	CU_ASSERT_EQUAL(out.kind, SMIS_OUTCOME_PERMFAIL);
	CU_ASSERT_STRING_EQUAL(out.error, "govapp_rejected");
	free(body);
	ops->call_free(inst, call);
}

/* A send answer naming another message: its notification_id is not this
 * message's, but this one may have been accepted. The plugin sends again
 * (idempotent on message_id) and believes the answer about its message;
 * a second mixed-up answer is upstream_bad_response, never an OK. */
static void send_answered_mixed(void **call, const struct smis_http_response *mixed,
				struct smis_outcome *out)
{
	struct smis_http_request *req = NULL;
	int rc;

	CU_ASSERT_EQUAL(ops->start(inst, SMIS_OP_SEND, &msg, call, &req, out), SMIS_STEP_REQUEST);
	fake_http_request_free(req);
	req = NULL;
	rc = ops->resume(inst, SMIS_OP_SEND, &msg, call, mixed, &req, out);
	expect_request(rc, req, BASE "/v1/notifications", 2);
}

static void test_send_answer_other_message(void)
{
	static const char *const other[] = {
		"{\"notification_id\":\"gn_OTHER\",\"message_id\":\"msg_OTHER\"}",
		"{\"notification_id\":\"gn_OTHER\",\"message_id\":7}",
	};
	struct smis_http_response ok = resp_of(202, "{\"notification_id\":\"gn_MINE\",\"message_id\":\"" MSG_ID "\"}");

	for (size_t i = 0; i < sizeof(other) / sizeof(other[0]); i++) {
		void *call = looked_up_call(pk2_b64);
		struct smis_http_request *req = NULL;
		struct smis_outcome out = { 0 };
		struct smis_http_response mixed = resp_of(202, other[i]);
		int warns = n_warn;

		send_answered_mixed(&call, &mixed, &out);
		CU_ASSERT_EQUAL(ops->resume(inst, SMIS_OP_SEND, &msg, &call, &ok, &req, &out), SMIS_STEP_DONE);
		CU_ASSERT_EQUAL(out.kind, SMIS_OUTCOME_OK);
		CU_ASSERT_STRING_EQUAL(out.provider_ref, "gn_MINE");

		/* A new SEND may send again once more; twice mixed up is final. */
		memset(&out, 0, sizeof(out));
		send_answered_mixed(&call, &mixed, &out);
		CU_ASSERT_EQUAL(ops->resume(inst, SMIS_OP_SEND, &msg, &call, &mixed, &req, &out), SMIS_STEP_DONE);
		CU_ASSERT_PTR_NULL(req);
		CU_ASSERT_EQUAL(out.kind, SMIS_OUTCOME_TEMPFAIL);
		CU_ASSERT_STRING_EQUAL(out.error, "upstream_bad_response");
		CU_ASSERT_STRING_EQUAL(out.provider_ref, "");
		CU_ASSERT_EQUAL(n_warn, warns + 3);
		ops->call_free(inst, call);
	}
	CU_ASSERT_PTR_NULL(strstr(log_text, "gn_OTHER"));
	CU_ASSERT_PTR_NULL(strstr(log_text, "msg_OTHER"));
}

/* A notification_id of 127 characters, any printable ASCII but space, as
 * JSON and as decoded. */
#define NID_60 "012345678901234567890123456789012345678901234567890123456789"
#define NID_JSON_127 "!~\\\"\\\\/ab" NID_60 NID_60
#define NID_127 "!~\"\\/ab" NID_60 NID_60
#define BAD_SEND_ID(id) \
	{ resp_of(202, "{\"notification_id\":\"" id "\"}"), SMIS_OUTCOME_TEMPFAIL, "upstream_bad_response" }

static void test_error_mapping(void)
{
	struct {
		struct smis_http_response r;
		enum smis_outcome_kind kind;
		const char *error;
	} cases[] = {
		{ resp_transport(SMIS_TRANSPORT_TIMEOUT), SMIS_OUTCOME_TEMPFAIL, "upstream_timeout" },
		{ resp_transport(SMIS_TRANSPORT_CONNECT), SMIS_OUTCOME_TEMPFAIL, "upstream_unreachable" },
		{ resp_transport(SMIS_TRANSPORT_ERROR), SMIS_OUTCOME_TEMPFAIL, "upstream_error" },
		{ resp_of(500, "{\"error\":\"internal\"}"), SMIS_OUTCOME_TEMPFAIL, "upstream_5xx" },
		{ resp_of(503, ""), SMIS_OUTCOME_TEMPFAIL, "upstream_5xx" },
		{ resp_of(401, "{\"error\":\"unauthorized\"}"), SMIS_OUTCOME_PERMFAIL, "govapp_unauthorized" },
		{ resp_of(403, ""), SMIS_OUTCOME_PERMFAIL, "govapp_unauthorized" },
		{ resp_of(404, "{\"error\":\"not_registered\"}"), SMIS_OUTCOME_PERMFAIL, "govapp_not_registered" },
		{ resp_of(404, "<html>nope</html>"), SMIS_OUTCOME_PERMFAIL, "govapp_rejected" },
		{ resp_of(409, "{\"error\":\"notifications_disabled\"}"), SMIS_OUTCOME_PERMFAIL,
		  "govapp_notifications_disabled" },
		{ resp_of(422, "{\"error\":\"invalid_envelope\"}"), SMIS_OUTCOME_PERMFAIL, "govapp_rejected" },
		{ resp_of(400, "{\"error\":\"bad_json\"}"), SMIS_OUTCOME_PERMFAIL, "govapp_rejected" },
		/* A token may hold the number (fuzz_govapp): not copied to the detail. */
		{ resp_of(422, "{\"error\":\"unkno" PHONE_DIGITS "wn_device\"}"), SMIS_OUTCOME_PERMFAIL,
		  "govapp_rejected" },
		{ resp_of(429, "{\"error\":\"slow_down\"}"), SMIS_OUTCOME_TEMPFAIL, "upstream_throttled" },
		{ resp_of(302, ""), SMIS_OUTCOME_TEMPFAIL, "upstream_bad_response" },
		{ resp_of(202, "not json"), SMIS_OUTCOME_TEMPFAIL, "upstream_bad_response" },
		{ resp_of(202, "{\"devices\":[]}"), SMIS_OUTCOME_TEMPFAIL, "upstream_bad_response" },
		{ resp_of(202, "{\"notification_id\":\"gn_1\"} trailing"), SMIS_OUTCOME_TEMPFAIL,
		  "upstream_bad_response" },
		/* A notification_id outside section 1's printable ASCII would
		 * become the provider reference: a C0 or C1 control (escaped
		 * or raw), a byte that is no UTF-8, DEL, a space, a character
		 * beyond ASCII, 128 characters. */
		BAD_SEND_ID("gn\\u001b[2J"), BAD_SEND_ID("gn\\u009b2J"), BAD_SEND_ID("gn\xc2\x9b" "2J"),
		BAD_SEND_ID("gn\x9b" "2J"), BAD_SEND_ID("gn\x7f"), BAD_SEND_ID("gn 1"),
		BAD_SEND_ID("gn_\xc3\xa9"), BAD_SEND_ID(NID_JSON_127 "x"),
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		void *call = looked_up_call(pk2_b64);
		struct smis_http_request *req = NULL;
		struct smis_outcome out = { 0 };

		CU_ASSERT_EQUAL(ops->start(inst, SMIS_OP_SEND, &msg, &call, &req, &out), SMIS_STEP_REQUEST);
		fake_http_request_free(req);
		req = NULL;
		CU_ASSERT_EQUAL(ops->resume(inst, SMIS_OP_SEND, &msg, &call, &cases[i].r, &req, &out),
				SMIS_STEP_DONE);
		CU_ASSERT_PTR_NULL(req);
		if (out.kind != cases[i].kind || strcmp(out.error, cases[i].error) != 0)
			fprintf(stderr, "\ncase %zu: got %d %s, want %d %s\n", i, out.kind, out.error,
				cases[i].kind, cases[i].error);
		CU_ASSERT_EQUAL(out.kind, cases[i].kind);
		CU_ASSERT_STRING_EQUAL(out.error, cases[i].error);
		CU_ASSERT(out.detail[0] != '\0');
		CU_ASSERT_PTR_NULL(strstr(out.detail, PHONE_DIGITS));
		CU_ASSERT_PTR_NULL(strstr(out.detail, "nope"));
		ops->call_free(inst, call);
	}

	/* The same table applies to the lookup. */
	{
		struct smis_http_response lk[] = {
			resp_of(401, "{\"error\":\"unauthorized\"}"), resp_of(200, "{\"registered\":\"yes\"}"),
			resp_of(200, "[]"), resp_transport(SMIS_TRANSPORT_TIMEOUT), resp_of(502, "") };
		const char *want[] = { "govapp_unauthorized", "upstream_bad_response", "upstream_bad_response",
				       "upstream_timeout", "upstream_5xx" };

		for (size_t i = 0; i < 5; i++) {
			void *call = NULL;
			struct smis_outcome out;

			CU_ASSERT_EQUAL(do_lookup(&call, &lk[i], &out), SMIS_STEP_DONE);
			CU_ASSERT_STRING_EQUAL(out.error, want[i]);
			CU_ASSERT_EQUAL(out.reach, SMIS_REACH_UNKNOWN);
			CU_ASSERT_PTR_NULL(out.devices_json);
			ops->call_free(inst, call);
		}
	}
	CU_ASSERT_PTR_NULL(strstr(log_text, PHONE_DIGITS));
}

/* The outcome of a SEND (after a lookup) answered 202 `body`. */
static void send_answered(const char *body, struct smis_outcome *out)
{
	void *call = looked_up_call(pk2_b64);
	struct smis_http_request *req = NULL;
	struct smis_http_response r = resp_of(202, body);

	memset(out, 0, sizeof(*out));
	CU_ASSERT_EQUAL(ops->start(inst, SMIS_OP_SEND, &msg, &call, &req, out), SMIS_STEP_REQUEST);
	fake_http_request_free(req);
	req = NULL;
	CU_ASSERT_EQUAL(ops->resume(inst, SMIS_OP_SEND, &msg, &call, &r, &req, out), SMIS_STEP_DONE);
	CU_ASSERT_PTR_NULL(req);
	ops->call_free(inst, call);
}

/* The instance keeps its answer parser from one answer to the next: an
 * answer cut off inside a surrogate pair must leave nothing behind for the
 * next one (json-c's tokener reset keeps the pending high surrogate, so the
 * next answer's first \u escape would come out after a U+FFFD: here a
 * notification_id no longer ASCII, refused). */
static void test_cut_answer_leaves_nothing(void)
{
	static const char *const cut[] = { "{\"notification_id\":\"\\ud83d",
					   "{\"notification_id\":\"\\uD83D\\u" };
	struct smis_outcome out;

	for (size_t i = 0; i < sizeof(cut) / sizeof(cut[0]); i++) {
		send_answered(cut[i], &out);
		CU_ASSERT_EQUAL(out.kind, SMIS_OUTCOME_TEMPFAIL);
		CU_ASSERT_STRING_EQUAL(out.error, "upstream_bad_response");
		send_answered("{\"notification_id\":\"\\u0041bc\"}", &out);
		CU_ASSERT_EQUAL(out.kind, SMIS_OUTCOME_OK);
		CU_ASSERT_STRING_EQUAL(out.provider_ref, "Abc");
	}
}

/* Any 2xx with the documented body is the backend's yes: a send answered
 * 200 or 201 instead of 202 was accepted, and counting it a failure would
 * resend it or fall back to an SMS on top of the notification. */
static void test_success_any_2xx(void)
{
	static const long statuses[] = { 200, 201, 203 };

	for (size_t i = 0; i < sizeof(statuses) / sizeof(statuses[0]); i++) {
		void *call = looked_up_call(pk2_b64);
		struct smis_http_request *req = NULL;
		struct smis_outcome out = { 0 };
		struct smis_http_response r = resp_of(statuses[i], "{\"notification_id\":\"gn_2XX\"}");
		char *body = lookup_body(true, pk1_b64, NULL);
		struct smis_http_response lk = resp_of(statuses[i], body);

		CU_ASSERT_EQUAL(ops->start(inst, SMIS_OP_SEND, &msg, &call, &req, &out), SMIS_STEP_REQUEST);
		fake_http_request_free(req);
		req = NULL;
		CU_ASSERT_EQUAL(ops->resume(inst, SMIS_OP_SEND, &msg, &call, &r, &req, &out), SMIS_STEP_DONE);
		CU_ASSERT_EQUAL(out.kind, SMIS_OUTCOME_OK);
		CU_ASSERT_STRING_EQUAL(out.provider_ref, "gn_2XX");
		ops->call_free(inst, call);

		/* The longest notification_id section 1 allows. */
		call = looked_up_call(pk2_b64);
		r = resp_of(statuses[i], "{\"notification_id\":\"" NID_JSON_127 "\"}");
		CU_ASSERT_EQUAL(ops->start(inst, SMIS_OP_SEND, &msg, &call, &req, &out), SMIS_STEP_REQUEST);
		fake_http_request_free(req);
		req = NULL;
		CU_ASSERT_EQUAL(ops->resume(inst, SMIS_OP_SEND, &msg, &call, &r, &req, &out), SMIS_STEP_DONE);
		CU_ASSERT_EQUAL(out.kind, SMIS_OUTCOME_OK);
		CU_ASSERT_STRING_EQUAL(out.provider_ref, NID_127);
		CU_ASSERT_EQUAL(strlen(out.provider_ref), 127);
		ops->call_free(inst, call);

		call = NULL;
		CU_ASSERT_EQUAL(do_lookup(&call, &lk, &out), SMIS_STEP_DONE);
		CU_ASSERT_EQUAL(out.kind, SMIS_OUTCOME_OK);
		CU_ASSERT_EQUAL(out.reach, SMIS_REACH_YES);
		free(out.devices_json);
		ops->call_free(inst, call);
		free(body);
	}
	/* A 2xx still needs the documented body. */
	{
		void *call = NULL;
		struct smis_outcome out;
		struct smis_http_response lk = resp_of(204, "");

		CU_ASSERT_EQUAL(do_lookup(&call, &lk, &out), SMIS_STEP_DONE);
		CU_ASSERT_EQUAL(out.kind, SMIS_OUTCOME_TEMPFAIL);
		CU_ASSERT_STRING_EQUAL(out.error, "upstream_bad_response");
		ops->call_free(inst, call);
	}
}

static void test_status(void)
{
	struct smis_message m = msg;
	struct smis_http_request *req = NULL;
	struct smis_outcome out = { 0 };
	void *call = NULL;
	struct smis_http_response r = resp_of(200,
		"{\"notification_id\":\"gn_01ABC\",\"message_id\":\"" MSG_ID "\",\"devices\":["
		"{\"device_id\":\"d-1\",\"status\":\"read\",\"delivered_at\":\"2024-05-01T12:34:50Z\","
		"\"read_at\":\"2024-05-01T12:34:56.789Z\"},"
		"{\"device_id\":\"d-2\",\"status\":\"delivered\",\"delivered_at\":\"2024-05-01T14:34:56+02:00\","
		"\"read_at\":null},"
		"{\"device_id\":\"d-3\",\"status\":\"accepted\",\"delivered_at\":null,\"read_at\":null},"
		"{\"device_id\":\"d-4\",\"status\":\"failed\",\"delivered_at\":null,\"read_at\":null},"
		"{\"device_id\":\"d-5\",\"status\":\"teleported\"}]}");

	/* No provider_ref: nothing to poll. */
	CU_ASSERT_EQUAL(ops->start(inst, SMIS_OP_STATUS, &m, &call, &req, &out), SMIS_STEP_DONE);
	CU_ASSERT_EQUAL(out.kind, SMIS_OUTCOME_PERMFAIL);

	/* A core whose message struct ends before provider_ref: absent too. */
	m.provider_ref = "gn_01ABC";
	m.size = offsetof(struct smis_message, provider_ref);
	memset(&out, 0, sizeof(out));
	CU_ASSERT_EQUAL(ops->start(inst, SMIS_OP_STATUS, &m, &call, &req, &out), SMIS_STEP_DONE);
	CU_ASSERT_EQUAL(out.kind, SMIS_OUTCOME_PERMFAIL);
	CU_ASSERT_STRING_EQUAL(out.error, "govapp_no_notification_id");
	CU_ASSERT_PTR_NULL(req);

	m.size = sizeof(m);
	memset(&out, 0, sizeof(out));
	CU_ASSERT_EQUAL(ops->start(inst, SMIS_OP_STATUS, &m, &call, &req, &out), SMIS_STEP_REQUEST);
	CU_ASSERT_PTR_NOT_NULL_FATAL(req);
	CU_ASSERT_STRING_EQUAL(req->method, "GET");
	CU_ASSERT_STRING_EQUAL(req->url, BASE "/v1/notifications/gn_01ABC");
	CU_ASSERT_PTR_NULL(req->body);
	CU_ASSERT_STRING_EQUAL(fake_http_header(req, "Authorization") ? fake_http_header(req, "Authorization") : "",
			       "Bearer " TOKEN);
	fake_http_request_free(req);
	req = NULL;
	CU_ASSERT_EQUAL(ops->resume(inst, SMIS_OP_STATUS, &m, &call, &r, &req, &out), SMIS_STEP_DONE);
	CU_ASSERT_EQUAL(out.kind, SMIS_OUTCOME_OK);
	CU_ASSERT_EQUAL_FATAL(out.n_reports, 4);
	CU_ASSERT_STRING_EQUAL(out.reports[0].provider_ref, "gn_01ABC");
	CU_ASSERT_STRING_EQUAL(out.reports[0].device, "d-1");
	CU_ASSERT_EQUAL(out.reports[0].status, SMIS_REPORT_READ);
	CU_ASSERT_EQUAL(out.reports[0].at_ms, 1714566896789LL);
	CU_ASSERT_STRING_EQUAL(out.reports[1].device, "d-2");
	CU_ASSERT_EQUAL(out.reports[1].status, SMIS_REPORT_DELIVERED);
	CU_ASSERT_EQUAL(out.reports[1].at_ms, 1714566896000LL);
	CU_ASSERT_EQUAL(out.reports[2].status, SMIS_REPORT_PENDING);
	CU_ASSERT_EQUAL(out.reports[2].at_ms, 0);
	CU_ASSERT_EQUAL(out.reports[3].status, SMIS_REPORT_FAILED);

	/* A provider_ref cannot reshape the URL. */
	m.provider_ref = "../x?y";
	CU_ASSERT_EQUAL(ops->start(inst, SMIS_OP_STATUS, &m, &call, &req, &out), SMIS_STEP_REQUEST);
	CU_ASSERT_STRING_EQUAL(req->url, BASE "/v1/notifications/..%2Fx%3Fy");
	fake_http_request_free(req);
	req = NULL;
	r = resp_of(404, "{\"error\":\"not_found\"}");
	memset(&out, 0, sizeof(out));
	CU_ASSERT_EQUAL(ops->resume(inst, SMIS_OP_STATUS, &m, &call, &r, &req, &out), SMIS_STEP_DONE);
	CU_ASSERT_EQUAL(out.kind, SMIS_OUTCOME_PERMFAIL);
	CU_ASSERT_EQUAL(ops->start(inst, SMIS_OP_STATUS, &m, &call, &req, &out), SMIS_STEP_REQUEST);
	fake_http_request_free(req);
	req = NULL;
	r = resp_of(200, "{\"notification_id\":\"gn_01ABC\"}");
	memset(&out, 0, sizeof(out));
	CU_ASSERT_EQUAL(ops->resume(inst, SMIS_OP_STATUS, &m, &call, &r, &req, &out), SMIS_STEP_DONE);
	CU_ASSERT_EQUAL(out.kind, SMIS_OUTCOME_TEMPFAIL);
	CU_ASSERT_STRING_EQUAL(out.error, "upstream_bad_response");
	ops->call_free(inst, call);
}

#define POLL_ID "gn_01ABC"

/* The outcome, of kind `want`, of a poll of POLL_ID answered `body`. */
static void poll_answer(const char *body, enum smis_outcome_kind want, struct smis_outcome *out)
{
	struct smis_message m = msg;
	struct smis_http_request *req = NULL;
	struct smis_http_response r = resp_of(200, body);
	void *call = NULL;

	m.provider_ref = POLL_ID;
	memset(out, 0, sizeof(*out));
	CU_ASSERT_EQUAL_FATAL(ops->start(inst, SMIS_OP_STATUS, &m, &call, &req, out), SMIS_STEP_REQUEST);
	fake_http_request_free(req);
	req = NULL;
	CU_ASSERT_EQUAL(ops->resume(inst, SMIS_OP_STATUS, &m, &call, &r, &req, out), SMIS_STEP_DONE);
	CU_ASSERT_EQUAL(out->kind, want);
	ops->call_free(inst, call);
}

/* A device listed twice gets one report, its most advanced status
 * (read > delivered > failed > accepted; the first of equals), whatever
 * the order, and takes no slot of another device. */
static void test_status_duplicate_devices(void)
{
	struct smis_outcome out;

	poll_answer("{\"notification_id\":\"" POLL_ID "\",\"devices\":["
		    "{\"device_id\":\"d-1\",\"status\":\"accepted\"},"
		    "{\"device_id\":\"d-2\",\"status\":\"failed\",\"failed_at\":\"2024-05-01T12:00:00Z\"},"
		    "{\"device_id\":\"d-1\",\"status\":\"read\",\"read_at\":\"2024-05-01T12:34:56.789Z\"},"
		    "{\"device_id\":\"d-1\",\"status\":\"delivered\",\"delivered_at\":\"2024-05-01T12:00:00Z\"},"
		    "{\"device_id\":\"d-2\",\"status\":\"delivered\",\"delivered_at\":\"2024-05-01T12:34:56Z\"},"
		    "{\"device_id\":\"d-3\",\"status\":\"read\",\"read_at\":\"2024-05-01T12:34:56Z\"},"
		    "{\"device_id\":\"d-3\",\"status\":\"read\",\"read_at\":\"2024-05-01T13:00:00Z\"},"
		    "{\"device_id\":\"d-2\",\"status\":\"accepted\"}]}", SMIS_OUTCOME_OK, &out);
	CU_ASSERT_EQUAL_FATAL(out.n_reports, 3);
	CU_ASSERT_STRING_EQUAL(out.reports[0].device, "d-1");
	CU_ASSERT_EQUAL(out.reports[0].status, SMIS_REPORT_READ);
	CU_ASSERT_EQUAL(out.reports[0].at_ms, 1714566896789LL);
	CU_ASSERT_STRING_EQUAL(out.reports[0].detail, "govapp_read");
	CU_ASSERT_STRING_EQUAL(out.reports[1].device, "d-2");
	CU_ASSERT_EQUAL(out.reports[1].status, SMIS_REPORT_DELIVERED);
	CU_ASSERT_EQUAL(out.reports[1].at_ms, 1714566896000LL);
	CU_ASSERT_STRING_EQUAL(out.reports[2].device, "d-3");
	CU_ASSERT_EQUAL(out.reports[2].at_ms, 1714566896000LL);

	/* Eight devices fill the outcome; a later entry of one of them still
	 * counts, a ninth device does not. */
	{
		static const char *const ent[][2] = {
			{ "a", "accepted" }, { "a", "accepted" }, { "b", "accepted" }, { "c", "accepted" },
			{ "d", "accepted" }, { "e", "accepted" }, { "f", "accepted" }, { "g", "accepted" },
			{ "h", "accepted" }, { "i", "read" }, { "a", "delivered" },
		};
		char body[1024];
		size_t len = (size_t)snprintf(body, sizeof(body), "{\"notification_id\":\"" POLL_ID "\",\"devices\":[");

		for (size_t i = 0; i < sizeof(ent) / sizeof(ent[0]); i++)
			len += (size_t)snprintf(body + len, sizeof(body) - len,
						"%s{\"device_id\":\"%s\",\"status\":\"%s\"}",
						i ? "," : "", ent[i][0], ent[i][1]);
		snprintf(body + len, sizeof(body) - len, "]}");
		poll_answer(body, SMIS_OUTCOME_OK, &out);
	}
	CU_ASSERT_EQUAL_FATAL(out.n_reports, 8);
	CU_ASSERT_STRING_EQUAL(out.reports[0].device, "a");
	CU_ASSERT_EQUAL(out.reports[0].status, SMIS_REPORT_DELIVERED);
	CU_ASSERT_STRING_EQUAL(out.reports[7].device, "h");
}

/* An entry with an empty device_id names no device: no report (one
 * without a device would read as an SMS report and end the polling of
 * every device of the message). */
static void test_status_empty_device_id(void)
{
	struct smis_outcome out;

	poll_answer("{\"notification_id\":\"" POLL_ID "\",\"devices\":[{\"device_id\":\"\",\"status\":\"delivered\"},"
		    "{\"device_id\":\"d-1\",\"status\":\"accepted\"}]}", SMIS_OUTCOME_OK, &out);
	CU_ASSERT_EQUAL_FATAL(out.n_reports, 1);
	CU_ASSERT_STRING_EQUAL(out.reports[0].device, "d-1");
	CU_ASSERT_EQUAL(out.reports[0].status, SMIS_REPORT_PENDING);
}

/* Device ids outside section 1's printable ASCII (a C1 control escaped
 * and raw, a stray byte, a space): a lookup skips those devices, a poll
 * their reports, as for an entry without an id. */
#define BAD_DEVICE_IDS(field_rest)                                                                    \
	"{\"device_id\":\"d\\u009b2J\"" field_rest "},{\"device_id\":\"d\xc2\x9b" "2J\"" field_rest "}," \
	"{\"device_id\":\"d\x9b" "2J\"" field_rest "},{\"device_id\":\"my phone\"" field_rest "}"

static void test_bad_device_ids_skipped(void)
{
	struct smis_outcome out;
	char devices[768];

	poll_answer("{\"notification_id\":\"" POLL_ID "\",\"devices\":["
		    BAD_DEVICE_IDS(",\"status\":\"read\"") ",{\"device_id\":\"d-1\",\"status\":\"accepted\"}]}",
		    SMIS_OUTCOME_OK, &out);
	CU_ASSERT_EQUAL_FATAL(out.n_reports, 1);
	CU_ASSERT_STRING_EQUAL(out.reports[0].device, "d-1");

	snprintf(devices, sizeof(devices),
		 "[" BAD_DEVICE_IDS(",\"public_key\":\"%s\"") ",{\"device_id\":\"d-1\",\"public_key\":\"%s\"}]",
		 pk2_b64, pk2_b64, pk2_b64, pk2_b64, pk1_b64);
	check_looked_up(devices, 1, (const char *const[][2]){ { "d-1", pk1_b64 } }, 1);
}

/* An answer about another notification, or that names none, moves
 * nothing: no report, a TEMPFAIL, a warning without personal data. */
static void test_status_other_notification(void)
{
	static const char *const bodies[] = {
		"{\"notification_id\":\"gn_OTHER\",\"devices\":[{\"device_id\":\"d-1\",\"status\":\"read\"}]}",
		"{\"notification_id\":\"" POLL_ID "x\",\"devices\":[{\"device_id\":\"d-1\",\"status\":\"read\"}]}",
		"{\"notification_id\":7,\"devices\":[{\"device_id\":\"d-1\",\"status\":\"read\"}]}",
		"{\"devices\":[{\"device_id\":\"d-1\",\"status\":\"read\"}]}",
	};
	struct smis_outcome out;

	for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
		int warns = n_warn;

		poll_answer(bodies[i], SMIS_OUTCOME_TEMPFAIL, &out);
		CU_ASSERT_STRING_EQUAL(out.error, "upstream_bad_response");
		CU_ASSERT_EQUAL(out.n_reports, 0);
		CU_ASSERT_EQUAL(n_warn, warns + 1);
	}
	CU_ASSERT_PTR_NULL(strstr(log_text, "gn_OTHER"));
}

static void test_passthrough(void)
{
	const char *enc_json = "{\"encryption\":\"HPKE-Base-X25519-SHA256-AES128GCM\",\"envelopes\":["
			       "{\"device_id\":\"d-9\",\"enc\":\"ZW5j\",\"ciphertext\":\"Y3Q\"}]}";
	static const struct smis_content empty[1] = {
		{ .lang = "nl", .title = "Titel in klare tekst", .body = "", .body_text = "" } };
	struct smis_message m = msg;
	struct smis_http_request *req = NULL;
	struct smis_outcome out = { 0 };
	struct smis_http_response unknown = resp_of(422, "{\"error\":\"unknown_device\"}");
	struct json_object *o, *envs, *v;
	void *call = NULL;

	m.content = empty;
	m.n_content = 1;
	m.encrypted_json = enc_json;
	/* Sent as is, without a lookup: there is nothing to seal. */
	CU_ASSERT_EQUAL(ops->start(inst, SMIS_OP_SEND, &m, &call, &req, &out), SMIS_STEP_REQUEST);
	CU_ASSERT_PTR_NOT_NULL_FATAL(req);
	CU_ASSERT_STRING_EQUAL(req->url, BASE "/v1/notifications");
	o = parse(req->body);
	CU_ASSERT_PTR_NOT_NULL_FATAL(o);
	CU_ASSERT_STRING_EQUAL(jstr(o, "message_id"), MSG_ID);
	CU_ASSERT_STRING_EQUAL(jstr(o, "encryption"), "HPKE-Base-X25519-SHA256-AES128GCM");
	CU_ASSERT(json_object_object_get_ex(o, "title", &v));
	CU_ASSERT_STRING_EQUAL(jstr(v, "nl"), "Titel in klare tekst");
	CU_ASSERT(json_object_object_get_ex(o, "envelopes", &envs) && json_object_array_length(envs) == 1);
	CU_ASSERT_STRING_EQUAL(jstr(json_object_array_get_idx(envs, 0), "device_id"), "d-9");
	CU_ASSERT_STRING_EQUAL(jstr(json_object_array_get_idx(envs, 0), "enc"), "ZW5j");
	CU_ASSERT_STRING_EQUAL(jstr(json_object_array_get_idx(envs, 0), "ciphertext"), "Y3Q");
	json_object_put(o);
	fake_http_request_free(req);
	req = NULL;
	/* The envelopes cannot be re-sealed: an unknown device is final. */
	CU_ASSERT_EQUAL(ops->resume(inst, SMIS_OP_SEND, &m, &call, &unknown, &req, &out), SMIS_STEP_DONE);
	CU_ASSERT_PTR_NULL(req);
	CU_ASSERT_STRING_EQUAL(out.error, "govapp_rejected");

	/* Another suite is refused before anything is sent. */
	m.encrypted_json = "{\"encryption\":\"RSA-OAEP\",\"envelopes\":[]}";
	memset(&out, 0, sizeof(out));
	CU_ASSERT_EQUAL(ops->start(inst, SMIS_OP_SEND, &m, &call, &req, &out), SMIS_STEP_DONE);
	CU_ASSERT_PTR_NULL(req);
	CU_ASSERT_EQUAL(out.kind, SMIS_OUTCOME_PERMFAIL);
	CU_ASSERT_STRING_EQUAL(out.error, "govapp_bad_envelopes");

	/* A core whose message struct ends before encrypted_json: ignored. */
	m.encrypted_json = enc_json;
	m.size = offsetof(struct smis_message, encrypted_json);
	CU_ASSERT_EQUAL(ops->start(inst, SMIS_OP_SEND, &m, &call, &req, &out), SMIS_STEP_REQUEST);
	CU_ASSERT_STRING_EQUAL(req ? req->url : "", BASE "/v1/citizens/lookup");
	fake_http_request_free(req);
	ops->call_free(inst, call);
}

/* ------------------------------------------------------------------ */
/* Inbound callbacks                                                   */
/* ------------------------------------------------------------------ */

struct fake_inbound {
	struct smis_inbound in;
	const char *sig; /* X-GovApp-Signature or NULL */
};

static const char *fake_header(const struct smis_inbound *in, const char *name)
{
	const struct fake_inbound *f = (const struct fake_inbound *)in;

	return strcasecmp(name, "X-GovApp-Signature") == 0 ? f->sig : NULL;
}

static const char *fake_query(const struct smis_inbound *in, const char *name)
{
	return NULL;
}

/* "t=<t>,v1=<hex>" computed here independently of the plugin. */
static void sign(char *out, size_t cap, const char *secret, long long t, const char *body)
{
	char ts[32], *buf;
	unsigned char mac[32];
	unsigned int len = 0;
	size_t n;
	int w;

	snprintf(ts, sizeof(ts), "%lld", t);
	n = strlen(ts) + 1 + strlen(body);
	buf = malloc(n + 1);
	snprintf(buf, n + 1, "%s.%s", ts, body);
	HMAC(EVP_sha256(), secret, (int)strlen(secret), (unsigned char *)buf, n, mac, &len);
	free(buf);
	w = snprintf(out, cap, "t=%s,v1=", ts);
	for (unsigned i = 0; i < len && (size_t)w + 3 < cap; i++)
		w += snprintf(out + w, cap - (size_t)w, "%02x", mac[i]);
}

static int call_inbound(void *st, const char *method, const char *body, const char *sig,
			struct smis_report *rep, size_t *n)
{
	struct fake_inbound f = {
		.in = {
			.size = sizeof(struct smis_inbound),
			.method = method,
			.path_rest = "",
			.remote_addr = "127.0.0.1",
			.body = body,
			.body_len = strlen(body),
			.header = fake_header,
			.query = fake_query,
		},
		.sig = sig,
	};

	memset(rep, 0, sizeof(*rep) * 4);
	return ops->inbound(st, &f.in, rep, 4, n);
}

#define CB_BODY "{\"notification_id\":\"gn_01ABC\",\"message_id\":\"" MSG_ID "\",\"device_id\":\"d-1\"," \
		"\"status\":\"read\",\"at\":\"2024-05-01T12:34:56Z\"}"

static void test_inbound(void)
{
	struct smis_report rep[4];
	size_t n = 99;
	char sig[256], sig2[512];
	long long now = fake_now_ms / 1000;
	int warns = n_warn;

	sign(sig, sizeof(sig), SECRET, now, CB_BODY);
	CU_ASSERT_EQUAL(call_inbound(inst, "POST", CB_BODY, sig, rep, &n), 0);
	CU_ASSERT_EQUAL(n, 1);
	CU_ASSERT_STRING_EQUAL(rep[0].provider_ref, "gn_01ABC");
	CU_ASSERT_STRING_EQUAL(rep[0].device, "d-1");
	CU_ASSERT_EQUAL(rep[0].status, SMIS_REPORT_READ);
	CU_ASSERT_EQUAL(rep[0].at_ms, 1714566896000LL);
	CU_ASSERT_EQUAL(n_warn, warns);

	/* Delivered, at the edge of the allowed skew, both directions. */
	{
		const char *b = "{\"notification_id\":\"gn_2\",\"message_id\":\"m\",\"device_id\":\"d-2\","
				"\"status\":\"delivered\",\"at\":\"2024-05-01T12:00:00Z\"}";

		sign(sig, sizeof(sig), SECRET, now - 300, b);
		CU_ASSERT_EQUAL(call_inbound(inst, "POST", b, sig, rep, &n), 0);
		CU_ASSERT_EQUAL(rep[0].status, SMIS_REPORT_DELIVERED);
		sign(sig, sizeof(sig), SECRET, now + 300, b);
		CU_ASSERT_EQUAL(call_inbound(inst, "POST", b, sig, rep, &n), 0);
	}

	/* "at" absent or null: the core uses arrival time. */
	{
		const char *b[] = {
			"{\"notification_id\":\"gn_3\",\"device_id\":\"d-1\",\"status\":\"read\",\"at\":null}",
			"{\"notification_id\":\"gn_3\",\"device_id\":\"d-1\",\"status\":\"read\"}",
		};

		for (size_t i = 0; i < sizeof(b) / sizeof(b[0]); i++) {
			sign(sig, sizeof(sig), SECRET, now, b[i]);
			CU_ASSERT_EQUAL(call_inbound(inst, "POST", b[i], sig, rep, &n), 0);
			CU_ASSERT_EQUAL(n, 1);
			CU_ASSERT_EQUAL(rep[0].at_ms, 0);
		}
	}

	/* A device_id of 63 characters, any printable ASCII but space. */
	{
		const char *b = "{\"notification_id\":\"gn_4\",\"device_id\":"
				"\"!~\\\"\\\\/3456789012345678901234567890123456789012345678901234567890\","
				"\"status\":\"read\"}";

		sign(sig, sizeof(sig), SECRET, now, b);
		CU_ASSERT_EQUAL(call_inbound(inst, "POST", b, sig, rep, &n), 0);
		CU_ASSERT_EQUAL_FATAL(n, 1);
		CU_ASSERT_STRING_EQUAL(rep[0].device, "!~\"\\/3456789012345678901234567890123456789012345678901234567890");
		CU_ASSERT_EQUAL(strlen(rep[0].device), 63);
	}

	/* A notification_id of 127 characters, any printable ASCII but space. */
	{
		const char *b = "{\"notification_id\":\"" NID_JSON_127 "\",\"device_id\":\"d-1\",\"status\":\"read\"}";

		sign(sig, sizeof(sig), SECRET, now, b);
		CU_ASSERT_EQUAL(call_inbound(inst, "POST", b, sig, rep, &n), 0);
		CU_ASSERT_EQUAL_FATAL(n, 1);
		CU_ASSERT_STRING_EQUAL(rep[0].provider_ref, NID_127);
	}

	/* Rotation: one of several v1 values matches. */
	sign(sig, sizeof(sig), SECRET, now, CB_BODY);
	snprintf(sig2, sizeof(sig2), "t=%lld,v1=%064d, v1=%s", now, 0, strstr(sig, "v1=") + 3);
	CU_ASSERT_EQUAL(call_inbound(inst, "POST", CB_BODY, sig2, rep, &n), 0);

	/* Wrong secret. */
	sign(sig, sizeof(sig), "another-secret-of-some-length", now, CB_BODY);
	CU_ASSERT_EQUAL(call_inbound(inst, "POST", CB_BODY, sig, rep, &n), -EACCES);
	CU_ASSERT_EQUAL(n, 0);
	/* Missing header. */
	CU_ASSERT_EQUAL(call_inbound(inst, "POST", CB_BODY, NULL, rep, &n), -EACCES);
	/* Too old, too far in the future. */
	sign(sig, sizeof(sig), SECRET, now - 301, CB_BODY);
	CU_ASSERT_EQUAL(call_inbound(inst, "POST", CB_BODY, sig, rep, &n), -EACCES);
	sign(sig, sizeof(sig), SECRET, now + 301, CB_BODY);
	CU_ASSERT_EQUAL(call_inbound(inst, "POST", CB_BODY, sig, rep, &n), -EACCES);
	/* Tampered body (read -> delivered) under a signature for the original. */
	sign(sig, sizeof(sig), SECRET, now, CB_BODY);
	{
		char tampered[sizeof(CB_BODY) + 8];
		char *p;

		snprintf(tampered, sizeof(tampered), "%s", CB_BODY);
		p = strstr(tampered, "d-1");
		p[2] = '2';
		CU_ASSERT_EQUAL(call_inbound(inst, "POST", tampered, sig, rep, &n), -EACCES);
	}
	/* Tampered timestamp with the old MAC. */
	{
		char moved[256];

		snprintf(moved, sizeof(moved), "t=%lld,%s", now + 1, strstr(sig, "v1="));
		CU_ASSERT_EQUAL(call_inbound(inst, "POST", CB_BODY, moved, rep, &n), -EACCES);
	}
	/* Malformed headers. */
	CU_ASSERT_EQUAL(call_inbound(inst, "POST", CB_BODY, "", rep, &n), -EACCES);
	CU_ASSERT_EQUAL(call_inbound(inst, "POST", CB_BODY, "v1=abcd", rep, &n), -EACCES);
	snprintf(sig2, sizeof(sig2), "t=%lld", now);
	CU_ASSERT_EQUAL(call_inbound(inst, "POST", CB_BODY, sig2, rep, &n), -EACCES);
	snprintf(sig2, sizeof(sig2), "t=%lldx,%s", now, strstr(sig, "v1="));
	CU_ASSERT_EQUAL(call_inbound(inst, "POST", CB_BODY, sig2, rep, &n), -EACCES);
	snprintf(sig2, sizeof(sig2), "t=%lld,v1=%.63s", now, strstr(sig, "v1=") + 3);
	CU_ASSERT_EQUAL(call_inbound(inst, "POST", CB_BODY, sig2, rep, &n), -EACCES);
	/* No secret configured: nothing is authentic. */
	CU_ASSERT_EQUAL(call_inbound(inst_nosig, "POST", CB_BODY, sig, rep, &n), -EACCES);
	CU_ASSERT(n_warn > warns);

	/* Authentic but malformed. */
#define BAD_CB_ID(id) "{\"notification_id\":\"" id "\",\"device_id\":\"d-1\",\"status\":\"read\"}"
	{
		const char *bad[] = {
			"{not json",
			"{\"notification_id\":\"gn_1\",\"device_id\":\"d-1\",\"status\":\"exploded\"}",
			"{\"notification_id\":\"gn_1\",\"status\":\"read\"}",
			"{\"notification_id\":\"gn_1\",\"device_id\":\"d-1\",\"status\":\"read\",\"at\":\"yesterday\"}",
			/* A time of another type is not an absent one. */
			"{\"notification_id\":\"gn_1\",\"device_id\":\"d-1\",\"status\":\"read\",\"at\":1714566896}",
			"{\"notification_id\":\"gn_1\",\"device_id\":\"d-1\",\"status\":\"read\",\"at\":false}",
			"{\"notification_id\":\"gn_1\",\"device_id\":\"d-1\",\"status\":\"read\",\"at\":{}}",
			/* A device_id outside section 1's printable ASCII: a C0 or
			 * C1 control (escaped or raw), a byte that is no UTF-8, a
			 * space, a character beyond ASCII; or over 63 characters. */
			"{\"notification_id\":\"gn_1\",\"device_id\":\"d\\u001b[2J\",\"status\":\"read\"}",
			"{\"notification_id\":\"gn_1\",\"device_id\":\"d\\u009b2J\",\"status\":\"read\"}",
			"{\"notification_id\":\"gn_1\",\"device_id\":\"d\xc2\x9b" "2J\",\"status\":\"read\"}",
			"{\"notification_id\":\"gn_1\",\"device_id\":\"d\x9b" "2J\",\"status\":\"read\"}",
			"{\"notification_id\":\"gn_1\",\"device_id\":\"d\x7f\",\"status\":\"read\"}",
			"{\"notification_id\":\"gn_1\",\"device_id\":\"my phone\",\"status\":\"read\"}",
			"{\"notification_id\":\"gn_1\",\"device_id\":\"t\xc3\xa9l\xc3\xa9phone\",\"status\":\"read\"}",
			"{\"notification_id\":\"gn_1\",\"device_id\":\""
			"d234567890123456789012345678901234567890123456789012345678901234\",\"status\":\"read\"}",
			/* A notification_id outside it likewise, or over 127 characters. */
			BAD_CB_ID("gn\\u001b[2J"), BAD_CB_ID("gn\\u009b2J"), BAD_CB_ID("gn\xc2\x9b" "2J"),
			BAD_CB_ID("gn\x9b" "2J"), BAD_CB_ID("gn\x7f"), BAD_CB_ID("gn 1"), BAD_CB_ID("gn_\xc3\xa9"),
			BAD_CB_ID(NID_JSON_127 "x"),
		};

		for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
			sign(sig, sizeof(sig), SECRET, now, bad[i]);
			CU_ASSERT_EQUAL(call_inbound(inst, "POST", bad[i], sig, rep, &n), -EINVAL);
			CU_ASSERT_EQUAL(n, 0);
		}
	}
}

/* A time that ends inside its UTC offset is refused without reading past
 * its end (fuzz_govapp found "...56.78-2" in a status poll; valgrind and
 * ASan see the read). */
static void test_time_offset_cut_short(void)
{
	static const char *const times[] = { "2024-05-01T12:34:56+", "2024-05-01T12:34:56.78-2" };
	struct smis_report rep[4];
	char body[256], sig[256];
	size_t n;

	for (size_t i = 0; i < sizeof(times) / sizeof(times[0]); i++) {
		struct smis_outcome out;

		snprintf(body, sizeof(body), "{\"notification_id\":\"gn_1\",\"device_id\":\"d-1\","
			 "\"status\":\"read\",\"at\":\"%s\"}", times[i]);
		sign(sig, sizeof(sig), SECRET, fake_now_ms / 1000, body);
		CU_ASSERT_EQUAL(call_inbound(inst, "POST", body, sig, rep, &n), -EINVAL);

		snprintf(body, sizeof(body), "{\"notification_id\":\"" POLL_ID "\",\"devices\":[{\"device_id\":\"d-1\","
			 "\"status\":\"read\",\"read_at\":\"%s\"}]}", times[i]);
		poll_answer(body, SMIS_OUTCOME_OK, &out);
		CU_ASSERT_EQUAL(out.n_reports, 0);
	}
}

/* A poll entry whose time is not a time (bad text, another type) is
 * malformed like a callback with one: that device is not reported (arrival
 * time would misdate it); the others are. Absent or null: arrival time. */
static void test_status_bad_time(void)
{
	struct smis_outcome out;
	int warns = n_warn;

	poll_answer("{\"notification_id\":\"" POLL_ID "\",\"devices\":["
		    "{\"device_id\":\"d-1\",\"status\":\"read\",\"read_at\":\"yesterday\"},"
		    "{\"device_id\":\"d-2\",\"status\":\"delivered\",\"delivered_at\":1714566896},"
		    "{\"device_id\":\"d-3\",\"status\":\"failed\",\"failed_at\":\"2024-13-01T00:00:00Z\"},"
		    "{\"device_id\":\"d-4\",\"status\":\"read\",\"read_at\":null},"
		    "{\"device_id\":\"d-5\",\"status\":\"delivered\"},"
		    "{\"device_id\":\"d-6\",\"status\":\"read\",\"read_at\":\"2024-05-01T12:34:56Z\"},"
		    /* Days a month does not have were rolled into the next. */
		    "{\"device_id\":\"d-7\",\"status\":\"read\",\"read_at\":\"2023-02-29T00:00:00Z\"},"
		    "{\"device_id\":\"d-8\",\"status\":\"read\",\"read_at\":\"2024-04-31T00:00:00Z\"},"
		    "{\"device_id\":\"d-9\",\"status\":\"read\",\"read_at\":\"2024-02-29T00:00:00Z\"}]}",
		    SMIS_OUTCOME_OK, &out);
	CU_ASSERT_EQUAL(n_warn, warns + 5);
	CU_ASSERT_EQUAL_FATAL(out.n_reports, 4);
	CU_ASSERT_STRING_EQUAL(out.reports[3].device, "d-9");
	CU_ASSERT_EQUAL(out.reports[3].at_ms, 1709164800000LL);
	CU_ASSERT_STRING_EQUAL(out.reports[0].device, "d-4");
	CU_ASSERT_EQUAL(out.reports[0].at_ms, 0);
	CU_ASSERT_STRING_EQUAL(out.reports[1].device, "d-5");
	CU_ASSERT_EQUAL(out.reports[1].at_ms, 0);
	CU_ASSERT_STRING_EQUAL(out.reports[2].device, "d-6");
	CU_ASSERT_EQUAL(out.reports[2].at_ms, 1714566896000LL);
}

/* The worked example of docs/govapp-protocol.md, so that the document and
 * the code cannot drift apart. */
static void test_signature_worked_example(void)
{
	static const struct fake_kv kv[] = {
		{ "base_url", BASE }, { "api_token", TOKEN },
		{ "callback_secret", "whsec_test_0123456789abcdef" } };
	const char *body = "{\"notification_id\":\"gn_01HZY3K4N5P6Q7R8S9T0V1W2X3\",\"message_id\":"
			   "\"msg_01HZY3K4N5P6Q7R8S9T0V1W2X3\",\"device_id\":\"d-1\",\"status\":\"read\","
			   "\"at\":\"2024-05-01T12:34:56Z\"}";
	const char *header = "t=1714566896,v1=" GOVAPP_DOC_EXAMPLE_MAC;
	struct smis_report rep[4];
	size_t n = 0;
	int64_t saved = fake_now_ms;
	void *st = make_instance(kv, 3, NULL);

	CU_ASSERT_PTR_NOT_NULL_FATAL(st);
	fake_now_ms = 1714566896000LL + 42000;
	CU_ASSERT_EQUAL(call_inbound(st, "POST", body, header, rep, &n), 0);
	CU_ASSERT_EQUAL(n, 1);
	fake_now_ms = saved;
	ops->destroy(st);
}

int main(void)
{
	CU_pSuite s;
	unsigned failures;

	if (CU_initialize_registry() != CUE_SUCCESS)
		return 2;
	s = CU_add_suite("govapp_plugin", suite_init, suite_clean);
	if (!s ||
	    !CU_add_test(s, "descriptor", test_descriptor) ||
	    !CU_add_test(s, "config", test_config) ||
	    !CU_add_test(s, "lookup request", test_lookup_request) ||
	    !CU_add_test(s, "lookup reach", test_lookup_reach) ||
	    !CU_add_test(s, "send envelopes", test_send_envelopes) ||
	    !CU_add_test(s, "send skips invalid key", test_send_skips_invalid_key) ||
	    !CU_add_test(s, "send without valid key", test_send_no_valid_key) ||
	    !CU_add_test(s, "send after negative lookup", test_send_unreachable_from_lookup) ||
	    !CU_add_test(s, "lookup duplicate devices", test_lookup_duplicate_devices) ||
	    !CU_add_test(s, "lookup then send", test_lookup_then_send) ||
	    !CU_add_test(s, "prepare send", test_prepare_send) ||
	    !CU_add_test(s, "unknown device relookup", test_unknown_device_relookup) ||
	    !CU_add_test(s, "send answer of another message", test_send_answer_other_message) ||
	    !CU_add_test(s, "error mapping", test_error_mapping) ||
	    !CU_add_test(s, "success is any 2xx", test_success_any_2xx) ||
	    !CU_add_test(s, "cut answer leaves nothing", test_cut_answer_leaves_nothing) ||
	    !CU_add_test(s, "status poll", test_status) ||
	    !CU_add_test(s, "status poll duplicate devices", test_status_duplicate_devices) ||
	    !CU_add_test(s, "status poll empty device id", test_status_empty_device_id) ||
	    !CU_add_test(s, "bad device ids skipped", test_bad_device_ids_skipped) ||
	    !CU_add_test(s, "status poll of another notification", test_status_other_notification) ||
	    !CU_add_test(s, "passthrough", test_passthrough) ||
	    !CU_add_test(s, "inbound signature", test_inbound) ||
	    !CU_add_test(s, "time offset cut short", test_time_offset_cut_short) ||
	    !CU_add_test(s, "status poll bad time", test_status_bad_time) ||
	    !CU_add_test(s, "signature worked example", test_signature_worked_example)) {
		CU_cleanup_registry();
		return 2;
	}
	CU_basic_set_mode(CU_BRM_VERBOSE);
	CU_basic_run_tests();
	failures = CU_get_number_of_failures() + CU_get_number_of_suites_failed();
	CU_cleanup_registry();
	return failures ? 1 : 0;
}
