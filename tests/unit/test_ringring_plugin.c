/*
 * test_ringring_plugin.c - the RingRing channel plugin against a fake core.
 *
 * The plugin is loaded from its built module with dlopen(RTLD_NOW |
 * RTLD_LOCAL), exactly as smisd loads it, and driven through its descriptor
 * with a hand-filled `struct smis_core_api`: configuration comes from a small
 * key/value table, HTTP requests are captured instead of performed, and
 * responses are canned. No network, no daemon.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include <dlfcn.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <CUnit/Basic.h>
#include <json-c/json.h>

#include <smis/smis-plugin.h>

#include "fake_core.h"

#ifndef RINGRING_SO
#define RINGRING_SO "plugins/channels/ringring/.libs/ringring.so"
#endif

/* ------------------------------------------------------------------ */
/* Fake core                                                            */
/* ------------------------------------------------------------------ */

enum fake_type { FT_STRING, FT_INT, FT_BOOL };

struct fake_setting {
	const char *key;
	enum fake_type type;
	const char *value;
	int read;
};

struct smis_config {
	struct fake_setting *settings;
	size_t n;
	int errors;
	char last_error_key[64];
	char last_error[256];
};

struct smis_instance {
	int dummy;
};

static int g_warnings;
static char g_log[4096];

static void SMIS_PRINTF(3, 4)
fake_log(struct smis_instance *self, enum smis_log_level level, const char *fmt, ...)
{
	va_list ap;
	size_t used = strlen(g_log);

	if (level >= SMIS_LOG_WARN)
		g_warnings++;
	va_start(ap, fmt);
	if (used + 2 < sizeof(g_log)) {
		vsnprintf(g_log + used, sizeof(g_log) - used - 1, fmt, ap);
		used = strlen(g_log);
		g_log[used] = '\n';
		g_log[used + 1] = '\0';
	}
	va_end(ap);
}

static struct fake_setting *fake_find(struct smis_config *cfg, const char *key)
{
	for (size_t i = 0; i < cfg->n; i++) {
		if (strcmp(cfg->settings[i].key, key) == 0) {
			cfg->settings[i].read = 1;
			return &cfg->settings[i];
		}
	}
	return NULL;
}

static int fake_config_string(struct smis_config *cfg, const char *key, char **out)
{
	struct fake_setting *s = fake_find(cfg, key);

	*out = NULL;
	if (!s)
		return -ENOENT;
	if (s->type != FT_STRING)
		return -EINVAL;
	*out = strdup(s->value);
	return *out ? 0 : -ENOMEM;
}

static int fake_config_int(struct smis_config *cfg, const char *key, long long *out)
{
	struct fake_setting *s = fake_find(cfg, key);

	if (!s)
		return -ENOENT;
	if (s->type != FT_INT)
		return -EINVAL;
	*out = strtoll(s->value, NULL, 10);
	return 0;
}

static int fake_config_bool(struct smis_config *cfg, const char *key, bool *out)
{
	struct fake_setting *s = fake_find(cfg, key);

	if (!s)
		return -ENOENT;
	if (s->type != FT_BOOL)
		return -EINVAL;
	*out = strcmp(s->value, "true") == 0;
	return 0;
}

static void SMIS_PRINTF(3, 4)
fake_config_error(struct smis_config *cfg, const char *key, const char *fmt, ...)
{
	va_list ap;

	cfg->errors++;
	snprintf(cfg->last_error_key, sizeof(cfg->last_error_key), "%s", key ? key : "");
	va_start(ap, fmt);
	vsnprintf(cfg->last_error, sizeof(cfg->last_error), fmt, ap);
	va_end(ap);
}






static int64_t fake_now_ms(void)
{
	return 1700000000000LL;
}

static int64_t fake_monotonic_ms(void)
{
	return 42;
}


static const struct smis_core_api fake_api = FAKE_CORE_API(fake_log, fake_config_error, fake_now_ms, fake_monotonic_ms);

/* ------------------------------------------------------------------ */
/* Fixtures                                                             */
/* ------------------------------------------------------------------ */

#define API_KEY "k3y-0123456789abcdef0123456789"
#define TOKEN "tok_ABCDEFGHIJKLMNOP"
#define NUMBER "+32470123456"

static void *g_dl;
static const struct smis_plugin_descriptor *g_desc;
static const struct smis_channel_ops *ops;
static struct smis_instance g_self;

static int suite_init(void)
{
	g_dl = dlopen(RINGRING_SO, RTLD_NOW | RTLD_LOCAL);
	if (!g_dl) {
		fprintf(stderr, "dlopen %s: %s\n", RINGRING_SO, dlerror());
		return -1;
	}
	g_desc = dlsym(g_dl, SMIS_PLUGIN_SYMBOL);
	if (!g_desc)
		return -1;
	ops = g_desc->channel;
	return ops ? 0 : -1;
}

static int suite_clean(void)
{
	if (g_dl)
		dlclose(g_dl);
	return 0;
}

/* Create an instance from NULL-terminated key/value pairs (all strings). */
static int make_instance(void **state, struct smis_config *cfg, struct fake_setting *set,
			 size_t n)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->settings = set;
	cfg->n = n;
	*state = NULL;
	return ops->create(&fake_api, &g_self, cfg, state);
}

#define S(k, v) { (k), FT_STRING, (v), 0 }
#define NSET(a) (sizeof(a) / sizeof((a)[0]))

static void *basic_instance(void)
{
	struct fake_setting set[] = {
		S("api_key", API_KEY),
		S("base_url", "http://127.0.0.1:18082/sms/v1/"),
	};
	struct smis_config cfg;
	void *st = NULL;

	CU_ASSERT_EQUAL_FATAL(make_instance(&st, &cfg, set, NSET(set)), 0);
	CU_ASSERT_EQUAL(cfg.errors, 0);
	return st;
}

static struct smis_content g_content[SMIS_LANG_MAX];

static struct smis_message make_msg(void)
{
	struct smis_message m;

	memset(&m, 0, sizeof(m));
	memset(g_content, 0, sizeof(g_content));
	g_content[0] = (struct smis_content){ .lang = "nl", .title = "Titel",
					      .body = "<p>Tekst</p>", .body_text = "Tekst",
					      .body_is_html = true };
	g_content[1] = (struct smis_content){ .lang = "fr", .title = "Titre",
					      .body = "Texte", .body_text = "Texte" };
	g_content[2] = (struct smis_content){ .lang = "de", .title = "Titel DE",
					      .body = "Text", .body_text = "Text" };
	m.size = sizeof(m);
	m.id = "msg_01HZZZZZZZZZZZZZZZZZZZZZZZ";
	m.institution = "test";
	m.recipient = NUMBER;
	m.content = g_content;
	m.n_content = 3;
	return m;
}

/* Run SEND start; returns the JSON body (caller puts) or NULL when DONE. */
static struct json_object *send_body(void *st, const struct smis_message *m,
				     struct smis_outcome *out, char *url, size_t urllen)
{
	struct smis_http_request *req = NULL;
	void *call = NULL;
	struct json_object *obj = NULL;
	int rc;

	memset(out, 0, sizeof(*out));
	rc = ops->start(st, SMIS_OP_SEND, m, &call, &req, out);
	if (rc == SMIS_STEP_REQUEST) {
		CU_ASSERT_PTR_NOT_NULL_FATAL(req);
		CU_ASSERT_STRING_EQUAL(req->method, "POST");
		if (url)
			snprintf(url, urllen, "%s", req->url);
		obj = json_tokener_parse(req->body);
		CU_ASSERT_PTR_NOT_NULL(obj);
		fake_http_request_free(req);
	} else {
		CU_ASSERT_EQUAL(rc, SMIS_STEP_DONE);
		CU_ASSERT_PTR_NULL(req);
	}
	return obj;
}

static const char *jstr(struct json_object *obj, const char *key)
{
	struct json_object *v = NULL;

	if (!json_object_object_get_ex(obj, key, &v))
		return NULL;
	return json_object_get_string(v);
}

/* Feed a canned response to resume(). */
static int resume_with(void *st, enum smis_op op, const struct smis_message *m,
		       enum smis_transport transport, long status, const char *body,
		       struct smis_outcome *out)
{
	struct smis_http_response resp = {
		.size = sizeof(resp),
		.transport = transport,
		.status = status,
		.body = body ? body : "",
		.body_len = body ? strlen(body) : 0,
		.content_type = "application/json",
	};
	struct smis_http_request *req = NULL;
	void *call = NULL;
	int rc;

	memset(out, 0, sizeof(*out));
	rc = ops->resume(st, op, m, &call, &resp, &req, out);
	CU_ASSERT_PTR_NULL(req);
	return rc;
}

/* ------------------------------------------------------------------ */
/* Descriptor and configuration                                         */
/* ------------------------------------------------------------------ */

static void test_descriptor(void)
{
	CU_ASSERT_EQUAL(g_desc->abi_version, SMIS_PLUGIN_ABI_VERSION);
	CU_ASSERT_EQUAL(g_desc->size, sizeof(struct smis_plugin_descriptor));
	CU_ASSERT_EQUAL(g_desc->kind, SMIS_PLUGIN_CHANNEL);
	CU_ASSERT_STRING_EQUAL(g_desc->name, "ringring");
	CU_ASSERT_EQUAL(g_desc->caps, SMIS_CAP_SEND | SMIS_CAP_SMS | SMIS_CAP_STATUS | SMIS_CAP_REPORTS_BY_ID);
	CU_ASSERT_EQUAL(ops->size, sizeof(struct smis_channel_ops));
	CU_ASSERT_PTR_NOT_NULL(ops->create);
	CU_ASSERT_PTR_NOT_NULL(ops->destroy);
	CU_ASSERT_PTR_NOT_NULL(ops->start);
	CU_ASSERT_PTR_NOT_NULL(ops->resume);
	CU_ASSERT_PTR_NOT_NULL(ops->inbound);
	/* Only the descriptor is exported (rule 13). */
	CU_ASSERT_PTR_NULL(dlsym(g_dl, "rr_create"));
	CU_ASSERT_PTR_NULL(dlsym(g_dl, "smis_sms_analyze"));
	ops->destroy(NULL);
}

/* The error text of the last expect_config_error(). */
static char g_last_error[256];

static void expect_config_error(struct fake_setting *set, size_t n, const char *key)
{
	struct smis_config cfg;
	void *st = (void *)1;

	CU_ASSERT_EQUAL(make_instance(&st, &cfg, set, n), -EINVAL);
	CU_ASSERT_PTR_NULL(st);
	CU_ASSERT(cfg.errors >= 1);
	CU_ASSERT_STRING_EQUAL(cfg.last_error_key, key);
	/* Every key was read despite the error: none reported "unknown". */
	for (size_t i = 0; i < n; i++)
		CU_ASSERT(set[i].read);
	/* The API key is never echoed in an error. */
	CU_ASSERT_PTR_NULL(strstr(cfg.last_error, API_KEY));
	snprintf(g_last_error, sizeof(g_last_error), "%s", cfg.last_error);
}

static void test_config(void)
{
	struct fake_setting missing_key[] = { S("base_url", "https://example.test/v1") };
	struct fake_setting wrong_type[] = { { "api_key", FT_INT, "12", 0 } };
	struct fake_setting bad_url[] = { S("api_key", API_KEY), S("base_url", "ftp://x/y") };
	/* Accepted until the shared check: every send then went to ".../v1?x=1/message". */
	struct fake_setting query_url[] = { S("api_key", API_KEY), S("base_url", "https://example.test/v1?x=1") };
	struct fake_setting bad_enc[] = { S("api_key", API_KEY), S("message_encoding", "Latin1") };
	struct fake_setting short_tok[] = { S("api_key", API_KEY), S("callback_token", "short") };
	struct fake_setting bad_tok[] = { S("api_key", API_KEY),
					  S("callback_token", "abcdefghijklmnop/q") };
	struct fake_setting bad_allow[] = { S("api_key", API_KEY),
					    S("callback_allow", "127.0.0.1, 300.1.1.1") };
	struct fake_setting bad_prefix[] = { S("api_key", API_KEY),
					     S("callback_allow", "10.0.0.0/33") };
	struct fake_setting bad_lang[] = { S("api_key", API_KEY), S("language_order", "nl,xx") };
	struct fake_setting dup_lang[] = { S("api_key", API_KEY), S("language_order", "nl,fr,nl") };
	struct fake_setting trailing_lang[] = { S("api_key", API_KEY), S("language_order", "nl,fr,") };
	struct fake_setting hole_lang[] = { S("api_key", API_KEY), S("language_order", "nl, ,fr") };
	struct fake_setting empty_lang[] = { S("api_key", API_KEY), S("language_order", " ") };
	struct fake_setting trailing_allow[] = { S("api_key", API_KEY), S("callback_allow", "::1,") };
	struct fake_setting lead_allow[] = { S("api_key", API_KEY), S("callback_allow", ",127.0.0.1") };
	struct fake_setting bad_status[] = { S("api_key", API_KEY), S("status_url", "not a url") };
	struct fake_setting space_key[] = { S("api_key", "has space") };
	struct fake_setting full[] = {
		S("api_key", API_KEY),
		S("base_url", "https://api.ringring.be/sms/sandbox"),
		S("message_encoding", "unicode"),
		S("status_url", "http://127.0.0.1:8080/v1/callbacks/rr/" TOKEN),
		S("callback_token", TOKEN),
		S("callback_allow", "194.78.45.194, 80.169.61.10,10.0.0.0/8 , ::1"),
		S("language_order", "fr, nl,de,en"),
	};
	struct smis_config cfg;
	void *st = NULL;

	expect_config_error(missing_key, NSET(missing_key), "");
	expect_config_error(wrong_type, NSET(wrong_type), "api_key");
	expect_config_error(bad_url, NSET(bad_url), "base_url");
	expect_config_error(query_url, NSET(query_url), "base_url");
	expect_config_error(bad_enc, NSET(bad_enc), "message_encoding");
	expect_config_error(short_tok, NSET(short_tok), "callback_token");
	expect_config_error(bad_tok, NSET(bad_tok), "callback_token");
	expect_config_error(bad_allow, NSET(bad_allow), "callback_allow");
	expect_config_error(bad_prefix, NSET(bad_prefix), "callback_allow");
	expect_config_error(bad_lang, NSET(bad_lang), "language_order");
	expect_config_error(dup_lang, NSET(dup_lang), "language_order");
	expect_config_error(trailing_lang, NSET(trailing_lang), "language_order");
	CU_ASSERT_PTR_NOT_NULL(strstr(g_last_error, "empty entry"));
	expect_config_error(hole_lang, NSET(hole_lang), "language_order");
	CU_ASSERT_PTR_NOT_NULL(strstr(g_last_error, "empty entry"));
	expect_config_error(empty_lang, NSET(empty_lang), "language_order");
	CU_ASSERT_PTR_NOT_NULL(strstr(g_last_error, "is empty"));
	expect_config_error(trailing_allow, NSET(trailing_allow), "callback_allow");
	CU_ASSERT_PTR_NOT_NULL(strstr(g_last_error, "empty entry"));
	expect_config_error(lead_allow, NSET(lead_allow), "callback_allow");
	expect_config_error(bad_status, NSET(bad_status), "status_url");
	expect_config_error(space_key, NSET(space_key), "api_key");

	g_warnings = 0;
	CU_ASSERT_EQUAL(make_instance(&st, &cfg, full, NSET(full)), 0);
	CU_ASSERT_EQUAL(cfg.errors, 0);
	CU_ASSERT_PTR_NOT_NULL(st);
	CU_ASSERT_EQUAL(g_warnings, 0);
	for (size_t i = 0; i < NSET(full); i++)
		CU_ASSERT(full[i].read);
	ops->destroy(st);
}

/* status_url without any webhook authentication works but warns. */
static void test_config_warns_unauthenticated_webhook(void)
{
	struct fake_setting set[] = { S("api_key", API_KEY),
				      S("status_url", "http://127.0.0.1:8080/v1/callbacks/rr") };
	struct smis_config cfg;
	void *st = NULL;

	g_warnings = 0;
	CU_ASSERT_EQUAL(make_instance(&st, &cfg, set, NSET(set)), 0);
	CU_ASSERT_EQUAL(g_warnings, 1);
	ops->destroy(st);
}

/* With both status_url and callback_token, the URL must carry the token
 * as the last path segment, or inbound() refuses every report it brings. */
static void test_config_status_url_token(void)
{
	static const char *const bad[] = {
		"http://127.0.0.1:8080/v1/callbacks/rr",
		"http://127.0.0.1:8080/v1/callbacks/rr/",
		"http://127.0.0.1:8080/v1/callbacks/rr/" TOKEN "/",
		"http://127.0.0.1:8080/v1/callbacks/rr/" TOKEN "x",
		"http://127.0.0.1:8080/v1/callbacks/rr/x" TOKEN,
		"http://127.0.0.1:8080/v1/callbacks/rr/tok_ABCDEFGHIJKLMNOp",
		"http://127.0.0.1:8080/v1/callbacks/rr?t=" TOKEN,
		"http://127.0.0.1:8080/v1/callbacks/rr#/" TOKEN,
		"http://" TOKEN, /* the token as the host, no path */
	};
	static const char *const good[] = {
		"http://127.0.0.1:8080/v1/callbacks/rr/" TOKEN,
		"https://smis.example.be/v1/callbacks/ringring-main/" TOKEN "?src=rr",
		"https://gw.example.be/" TOKEN,
	};
	struct smis_config cfg;
	void *st = NULL;

	for (size_t i = 0; i < NSET(bad); i++) {
		struct fake_setting set[] = { S("api_key", API_KEY), S("status_url", bad[i]),
					      S("callback_token", TOKEN) };
		expect_config_error(set, NSET(set), "status_url");
		CU_ASSERT_PTR_NOT_NULL(strstr(g_last_error, "callback_token"));
		/* The secret is not echoed. */
		CU_ASSERT_PTR_NULL(strstr(g_last_error, TOKEN));
	}
	for (size_t i = 0; i < NSET(good); i++) {
		struct fake_setting set[] = { S("api_key", API_KEY), S("status_url", good[i]),
					      S("callback_token", TOKEN) };
		CU_ASSERT_EQUAL(make_instance(&st, &cfg, set, NSET(set)), 0);
		CU_ASSERT_EQUAL(cfg.errors, 0);
		ops->destroy(st);
	}
	/* Reported along with another error of the block, not hidden by it. */
	{
		struct fake_setting set[] = { S("api_key", API_KEY), S("message_encoding", "Latin1"),
					      S("callback_token", TOKEN), S("status_url", bad[0]) };
		expect_config_error(set, NSET(set), "status_url");
	}
}

/* ------------------------------------------------------------------ */
/* SEND request building                                                */
/* ------------------------------------------------------------------ */

static void test_send_request(void)
{
	struct fake_setting set[] = { S("api_key", API_KEY) };
	struct smis_config cfg;
	struct smis_message m = make_msg();
	struct smis_outcome out;
	struct smis_http_request *req = NULL;
	struct json_object *obj;
	void *st = NULL;
	void *call = NULL;
	char url[256];

	CU_ASSERT_EQUAL_FATAL(make_instance(&st, &cfg, set, NSET(set)), 0);
	g_log[0] = '\0';
	obj = send_body(st, &m, &out, url, sizeof(url));
	CU_ASSERT_PTR_NOT_NULL_FATAL(obj);
	CU_ASSERT_STRING_EQUAL(url, "https://api.ringring.be/sms/v1/message");
	CU_ASSERT_STRING_EQUAL(jstr(obj, "apiKey"), API_KEY);
	CU_ASSERT_STRING_EQUAL(jstr(obj, "to"), "32470123456");
	CU_ASSERT_STRING_EQUAL(jstr(obj, "message"), "Titel\nTekst");
	CU_ASSERT_STRING_EQUAL(jstr(obj, "reference"), m.id);
	CU_ASSERT_STRING_EQUAL(jstr(obj, "messageEncoding"), "Auto");
	CU_ASSERT_PTR_NULL(jstr(obj, "senderId"));
	CU_ASSERT_PTR_NULL(jstr(obj, "from"));
	CU_ASSERT_PTR_NULL(jstr(obj, "statusUrl"));
	CU_ASSERT_EQUAL(json_object_object_length(obj), 5);
	json_object_put(obj);
	/* Counts are reported already. */
	CU_ASSERT_EQUAL(out.sms_parts, 1);
	CU_ASSERT_EQUAL(out.sms_chars, 11);
	CU_ASSERT_STRING_EQUAL(out.sms_encoding, "GSM-7");
	/* Nothing personal or secret was logged. */
	CU_ASSERT_PTR_NULL(strstr(g_log, "470123456"));
	CU_ASSERT_PTR_NULL(strstr(g_log, API_KEY));
	CU_ASSERT_PTR_NULL(strstr(g_log, "Tekst"));

	/* Headers. */
	memset(&out, 0, sizeof(out));
	CU_ASSERT_EQUAL(ops->start(st, SMIS_OP_SEND, &m, &call, &req, &out), SMIS_STEP_REQUEST);
	CU_ASSERT_PTR_NOT_NULL_FATAL(req);
	CU_ASSERT_EQUAL(req->n_headers, 2);
	CU_ASSERT_STRING_EQUAL(req->headers[0], "Content-Type: application/json; charset=UTF-8");
	fake_http_request_free(req);

	/* Unsupported operation. */
	req = NULL;
	CU_ASSERT(ops->start(st, SMIS_OP_LOOKUP, &m, &call, &req, &out) < 0);
	CU_ASSERT_PTR_NULL(req);
	ops->destroy(st);
}

static void test_send_status_url(void)
{
	struct fake_setting set[] = {
		S("api_key", API_KEY),
		S("base_url", "http://127.0.0.1:18082/sms/v1///"),
		S("message_encoding", "text"),
		S("status_url", "http://127.0.0.1:8080/v1/callbacks/rr/" TOKEN),
		S("callback_token", TOKEN),
	};
	struct smis_config cfg;
	struct smis_message m = make_msg();
	struct smis_outcome out;
	struct json_object *obj;
	void *st = NULL;
	char url[256];

	CU_ASSERT_EQUAL_FATAL(make_instance(&st, &cfg, set, NSET(set)), 0);
	obj = send_body(st, &m, &out, url, sizeof(url));
	CU_ASSERT_PTR_NOT_NULL_FATAL(obj);
	CU_ASSERT_STRING_EQUAL(url, "http://127.0.0.1:18082/sms/v1/message");
	CU_ASSERT_STRING_EQUAL(jstr(obj, "statusUrl"),
			       "http://127.0.0.1:8080/v1/callbacks/rr/" TOKEN);
	CU_ASSERT_STRING_EQUAL(jstr(obj, "statusMethod"), "POST");
	CU_ASSERT_STRING_EQUAL(jstr(obj, "statusFormat"), "Json");
	CU_ASSERT_STRING_EQUAL(jstr(obj, "messageEncoding"), "Text");
	json_object_put(obj);
	ops->destroy(st);
}

static void test_send_sender(void)
{
	void *st = basic_instance();
	struct smis_message m = make_msg();
	struct smis_outcome out;
	struct json_object *obj;
	int made;

	m.sender = "Gemeente1";
	obj = send_body(st, &m, &out, NULL, 0);
	CU_ASSERT_STRING_EQUAL(jstr(obj, "senderId"), "Gemeente1");
	CU_ASSERT_PTR_NULL(jstr(obj, "from"));
	json_object_put(obj);

	m.sender = "+3280012345";
	obj = send_body(st, &m, &out, NULL, 0);
	CU_ASSERT_STRING_EQUAL(jstr(obj, "from"), "3280012345");
	CU_ASSERT_PTR_NULL(jstr(obj, "senderId"));
	json_object_put(obj);

	m.sender = "8686";
	obj = send_body(st, &m, &out, NULL, 0);
	CU_ASSERT_STRING_EQUAL(jstr(obj, "from"), "8686");
	json_object_put(obj);

	m.sender = "";
	obj = send_body(st, &m, &out, NULL, 0);
	CU_ASSERT_PTR_NULL(jstr(obj, "from"));
	CU_ASSERT_PTR_NULL(jstr(obj, "senderId"));
	json_object_put(obj);

	/* 12 characters, and characters GSM originators cannot carry. */
	made = fake_requests_made;
	m.sender = "Gemeente1234";
	obj = send_body(st, &m, &out, NULL, 0);
	CU_ASSERT_PTR_NULL(obj);
	CU_ASSERT_EQUAL(out.kind, SMIS_OUTCOME_PERMFAIL);
	CU_ASSERT_STRING_EQUAL(out.error, "invalid_sender");
	m.sender = "Stad Gent";
	obj = send_body(st, &m, &out, NULL, 0);
	CU_ASSERT_PTR_NULL(obj);
	CU_ASSERT_STRING_EQUAL(out.error, "invalid_sender");
	CU_ASSERT_EQUAL(fake_requests_made, made);
	ops->destroy(st);
}

static void test_send_recipient(void)
{
	void *st = basic_instance();
	struct smis_message m = make_msg();
	struct smis_outcome out;
	struct json_object *obj;

	m.recipient = "32470123456";
	obj = send_body(st, &m, &out, NULL, 0);
	CU_ASSERT_STRING_EQUAL(jstr(obj, "to"), "32470123456");
	json_object_put(obj);

	m.recipient = "+32 470 12";
	obj = send_body(st, &m, &out, NULL, 0);
	CU_ASSERT_PTR_NULL(obj);
	CU_ASSERT_EQUAL(out.kind, SMIS_OUTCOME_PERMFAIL);
	CU_ASSERT_STRING_EQUAL(out.error, "invalid_recipient");
	CU_ASSERT_PTR_NULL(strstr(out.detail, "470"));

	m.recipient = NULL;
	obj = send_body(st, &m, &out, NULL, 0);
	CU_ASSERT_PTR_NULL(obj);
	CU_ASSERT_STRING_EQUAL(out.error, "invalid_recipient");
	ops->destroy(st);
}

static void expect_message(void *st, const struct smis_message *m, const char *text)
{
	struct smis_outcome out;
	struct json_object *obj = send_body(st, m, &out, NULL, 0);

	CU_ASSERT_PTR_NOT_NULL_FATAL(obj);
	CU_ASSERT_STRING_EQUAL(jstr(obj, "message"), text);
	json_object_put(obj);
}

static void test_send_language(void)
{
	void *st = basic_instance();
	struct smis_message m = make_msg();
	struct smis_message old;
	struct fake_setting set[] = { S("api_key", API_KEY), S("language_order", "de,fr") };
	struct smis_config cfg;
	void *st2 = NULL;

	/* First text in institution order when nothing else is known. */
	expect_message(st, &m, "Titel\nTekst");
	/* Requested language. */
	m.language = "fr";
	expect_message(st, &m, "Titre\nTexte");
	/* The citizen's language wins over the request's. */
	m.citizen_language = "de";
	expect_message(st, &m, "Titel DE\nText");
	/* A citizen language without a text falls back to the request's. */
	m.citizen_language = "en";
	expect_message(st, &m, "Titre\nTexte");
	/* Region subtags and case do not matter. */
	m.citizen_language = "DE-be";
	expect_message(st, &m, "Titel DE\nText");
	/* Neither available: first text. */
	m.citizen_language = "en";
	m.language = "en";
	expect_message(st, &m, "Titel\nTekst");

	/* A core built before citizen_language existed: member is absent. */
	old = make_msg();
	old.language = "fr";
	old.citizen_language = "de";
	old.size = offsetof(struct smis_message, citizen_language);
	expect_message(st, &old, "Titre\nTexte");

	/* Configured order before the institution's. */
	CU_ASSERT_EQUAL_FATAL(make_instance(&st2, &cfg, set, NSET(set)), 0);
	m = make_msg();
	expect_message(st2, &m, "Titel DE\nText");
	m.n_content = 2; /* no "de" */
	expect_message(st2, &m, "Titre\nTexte");
	m.language = "nl";
	expect_message(st2, &m, "Titel\nTekst");

	ops->destroy(st2);
	ops->destroy(st);
}

static void test_send_text(void)
{
	void *st = basic_instance();
	struct smis_message m = make_msg();
	struct smis_outcome out;
	struct json_object *obj;

	/* sms_text has priority over title + body. */
	g_content[0].sms_text = "Kort bericht";
	expect_message(st, &m, "Kort bericht");
	/* An empty sms_text is no text. */
	g_content[0].sms_text = "";
	expect_message(st, &m, "Titel\nTekst");
	/* No lone newline. */
	g_content[0].title = "";
	expect_message(st, &m, "Tekst");
	g_content[0].title = "Titel";
	g_content[0].body_text = "";
	expect_message(st, &m, "Titel");

	/* Both empty: PERMFAIL without upstream. */
	g_content[0].title = "";
	obj = send_body(st, &m, &out, NULL, 0);
	CU_ASSERT_PTR_NULL(obj);
	CU_ASSERT_EQUAL(out.kind, SMIS_OUTCOME_PERMFAIL);
	CU_ASSERT_STRING_EQUAL(out.error, "sms_empty");

	/* Invalid UTF-8. */
	g_content[0].sms_text = "bad \xff text";
	obj = send_body(st, &m, &out, NULL, 0);
	CU_ASSERT_PTR_NULL(obj);
	CU_ASSERT_STRING_EQUAL(out.error, "sms_invalid_text");

	/* By default typography is sent as written: UCS-2. */
	g_content[0].sms_text = "\xe2\x80\x9cHallo\xe2\x80\x9d \xe2\x80\x93 ok";
	obj = send_body(st, &m, &out, NULL, 0);
	CU_ASSERT_STRING_EQUAL(jstr(obj, "message"), "\xe2\x80\x9cHallo\xe2\x80\x9d \xe2\x80\x93 ok");
	CU_ASSERT_STRING_EQUAL(out.sms_encoding, "UCS-2");
	/* ... and as Unicode, so RingRing's Auto does not rewrite it behind our counts. */
	CU_ASSERT_STRING_EQUAL(jstr(obj, "messageEncoding"), "Unicode");
	json_object_put(obj);
	/* replace_lookalikes rewrites it to GSM-7 when that makes it all fit. */
	{
		struct fake_setting set[] = {
			S("api_key", API_KEY),
			S("base_url", "http://127.0.0.1:18082/sms/v1/"),
			{ "replace_lookalikes", FT_BOOL, "true", 0 },
		};
		struct smis_config cfg;
		void *st2 = NULL;
		CU_ASSERT_EQUAL_FATAL(make_instance(&st2, &cfg, set, NSET(set)), 0);
		CU_ASSERT_EQUAL(cfg.errors, 0);
		obj = send_body(st2, &m, &out, NULL, 0);
		CU_ASSERT_STRING_EQUAL(jstr(obj, "message"), "\"Hallo\" - ok");
		CU_ASSERT_STRING_EQUAL(out.sms_encoding, "GSM-7");
		json_object_put(obj);
		/* The institution's segment cap refuses, never truncates. */
		g_content[0].sms_text = "0123456789012345678901234567890123456789012345678901234567890123456789"
					"0123456789012345678901234567890123456789012345678901234567890123456789"
					"0123456789012345678901234567890123456789";
		m.max_sms_parts = 1;
		obj = send_body(st2, &m, &out, NULL, 0);
		CU_ASSERT_PTR_NULL(obj);
		CU_ASSERT_EQUAL(out.kind, SMIS_OUTCOME_PERMFAIL);
		CU_ASSERT_STRING_EQUAL(out.error, "sms_too_many_segments");
		CU_ASSERT_EQUAL(out.sms_parts, 2);
		m.max_sms_parts = 2;
		obj = send_body(st2, &m, &out, NULL, 0);
		CU_ASSERT_PTR_NOT_NULL(obj);
		json_object_put(obj);
		m.max_sms_parts = 0;
		ops->destroy(st2);
	}

	/* A real non-GSM character: UCS-2, unchanged. */
	g_content[0].sms_text = "For\xc3\xaat";
	obj = send_body(st, &m, &out, NULL, 0);
	CU_ASSERT_STRING_EQUAL(jstr(obj, "message"), "For\xc3\xaat");
	CU_ASSERT_STRING_EQUAL(out.sms_encoding, "UCS-2");
	CU_ASSERT_EQUAL(out.sms_chars, 5);
	CU_ASSERT_EQUAL(out.sms_parts, 1);
	json_object_put(obj);
	ops->destroy(st);
}

static void test_send_unicode_mode(void)
{
	struct fake_setting set[] = { S("api_key", API_KEY), S("message_encoding", "Unicode") };
	struct smis_config cfg;
	struct smis_message m = make_msg();
	struct smis_outcome out;
	struct json_object *obj;
	char text[100];
	void *st = NULL;

	CU_ASSERT_EQUAL_FATAL(make_instance(&st, &cfg, set, NSET(set)), 0);
	memset(text, 'a', 71);
	text[71] = '\0';
	g_content[0].sms_text = text;
	obj = send_body(st, &m, &out, NULL, 0);
	CU_ASSERT_STRING_EQUAL(jstr(obj, "messageEncoding"), "Unicode");
	CU_ASSERT_STRING_EQUAL(out.sms_encoding, "UCS-2");
	CU_ASSERT_EQUAL(out.sms_chars, 71);
	CU_ASSERT_EQUAL(out.sms_parts, 2);
	json_object_put(obj);
	/* No lookalike rewrite when Unicode is asked for. */
	g_content[0].sms_text = "\xe2\x80\x9cHi\xe2\x80\x9d";
	obj = send_body(st, &m, &out, NULL, 0);
	CU_ASSERT_STRING_EQUAL(jstr(obj, "message"), "\xe2\x80\x9cHi\xe2\x80\x9d");
	json_object_put(obj);
	ops->destroy(st);
}

/* resume() reports the counts start() made for the text it sent, as start
 * reported them, whatever the text: the largest RingRing takes included. */
static void test_send_counts_kept(void)
{
	struct fake_setting set[] = { S("api_key", API_KEY) };
	struct smis_config cfg;
	struct smis_message m = make_msg();
	struct smis_outcome started;
	struct smis_outcome out;
	struct smis_http_response resp = {
		.size = sizeof(resp), .transport = SMIS_TRANSPORT_OK, .status = 200,
		.body = "{\"messageCount\":1,\"messages\":[{\"messageId\":\"k-1\",\"resultCode\":0}],"
			"\"resultCode\":0}",
		.content_type = "application/json",
	};
	static char texts[4][800];
	struct smis_http_request *req = NULL;
	void *st = NULL;

	resp.body_len = strlen(resp.body);
	memset(texts[0], 'a', 161);                   /* GSM-7, 2 parts */
	memset(texts[1], 'a', 758);                   /* GSM-7, RR_MAX_CHARS */
	strcpy(texts[2], "\xd0\x96");                 /* UCS-2, 1 char */
	memset(texts[3], 'b', 757);                   /* UCS-2, 758 chars */
	memcpy(texts[3] + 757, "\xd0\x96", 3);
	CU_ASSERT_EQUAL_FATAL(make_instance(&st, &cfg, set, NSET(set)), 0);
	for (size_t i = 0; i < 4; i++) {
		void *call = NULL;

		g_content[0].sms_text = texts[i];
		memset(&started, 0, sizeof(started));
		CU_ASSERT_EQUAL_FATAL(ops->start(st, SMIS_OP_SEND, &m, &call, &req, &started), SMIS_STEP_REQUEST);
		fake_http_request_free(req);
		req = NULL;
		/* Not counted again: a text changed after the send is not it. */
		g_content[0].sms_text = "x";
		memset(&out, 0, sizeof(out));
		CU_ASSERT_EQUAL(ops->resume(st, SMIS_OP_SEND, &m, &call, &resp, &req, &out), SMIS_STEP_DONE);
		CU_ASSERT_PTR_NULL(req);
		CU_ASSERT_EQUAL(out.kind, SMIS_OUTCOME_OK);
		CU_ASSERT_EQUAL(out.sms_chars, started.sms_chars);
		CU_ASSERT_EQUAL(out.sms_parts, started.sms_parts);
		CU_ASSERT_STRING_EQUAL(out.sms_encoding, started.sms_encoding);
	}
	CU_ASSERT_EQUAL(started.sms_chars, 758);
	CU_ASSERT_EQUAL(started.sms_parts, 12);
	CU_ASSERT_STRING_EQUAL(started.sms_encoding, "UCS-2");
	ops->destroy(st);
}

/* "Text" is for GSM-7 texts: one that needs UCS-2 still goes as "Unicode",
 * or RingRing would replace what GSM-7 lacks and bill other counts. */
static void test_send_text_mode_ucs2(void)
{
	struct fake_setting set[] = { S("api_key", API_KEY), S("message_encoding", "Text"),
				      { "replace_lookalikes", FT_BOOL, "true", 0 } };
	struct smis_config cfg;
	struct smis_message m = make_msg();
	struct smis_outcome out;
	struct json_object *obj;
	void *st = NULL;

	CU_ASSERT_EQUAL_FATAL(make_instance(&st, &cfg, set, NSET(set)), 0);
	g_content[0].sms_text = "Dag Fran\xc3\xa7oise";
	obj = send_body(st, &m, &out, NULL, 0);
	CU_ASSERT_STRING_EQUAL(jstr(obj, "messageEncoding"), "Text");
	CU_ASSERT_STRING_EQUAL(out.sms_encoding, "GSM-7");
	json_object_put(obj);
	/* Look-alikes alone are rewritten to GSM-7: still "Text". */
	g_content[0].sms_text = "\xe2\x80\x9cHi\xe2\x80\x9d";
	obj = send_body(st, &m, &out, NULL, 0);
	CU_ASSERT_STRING_EQUAL(jstr(obj, "message"), "\"Hi\"");
	CU_ASSERT_STRING_EQUAL(jstr(obj, "messageEncoding"), "Text");
	json_object_put(obj);
	/* A character GSM-7 lacks (and no look-alike of one): as written. */
	g_content[0].sms_text = "\xe2\x80\x9c\xc5\x81\xc3\xb3" "d\xc5\xba\xe2\x80\x9d";
	obj = send_body(st, &m, &out, NULL, 0);
	CU_ASSERT_STRING_EQUAL(jstr(obj, "message"), g_content[0].sms_text);
	CU_ASSERT_STRING_EQUAL(jstr(obj, "messageEncoding"), "Unicode");
	CU_ASSERT_STRING_EQUAL(out.sms_encoding, "UCS-2");
	json_object_put(obj);
	ops->destroy(st);
}

static void test_send_length(void)
{
	void *st = basic_instance();
	struct smis_message m = make_msg();
	struct smis_outcome out;
	struct json_object *obj;
	static char text[2000];
	int made;

	memset(text, 'x', 160);
	text[160] = '\0';
	g_content[0].sms_text = text;
	obj = send_body(st, &m, &out, NULL, 0);
	CU_ASSERT_EQUAL(out.sms_parts, 1);
	CU_ASSERT_EQUAL(out.sms_chars, 160);
	json_object_put(obj);

	text[160] = 'x';
	text[161] = '\0';
	obj = send_body(st, &m, &out, NULL, 0);
	CU_ASSERT_EQUAL(out.sms_parts, 2);
	json_object_put(obj);

	memset(text, 'x', 758);
	text[758] = '\0';
	obj = send_body(st, &m, &out, NULL, 0);
	CU_ASSERT_PTR_NOT_NULL(obj);
	CU_ASSERT_EQUAL(out.sms_chars, 758);
	CU_ASSERT_EQUAL(out.sms_parts, 5);
	json_object_put(obj);

	made = fake_requests_made;
	text[758] = 'x';
	text[759] = '\0';
	obj = send_body(st, &m, &out, NULL, 0);
	CU_ASSERT_PTR_NULL(obj);
	CU_ASSERT_EQUAL(out.kind, SMIS_OUTCOME_PERMFAIL);
	CU_ASSERT_STRING_EQUAL(out.error, "sms_too_long");
	CU_ASSERT_EQUAL(fake_requests_made, made);

	/* Characters, not bytes: 758 two-byte characters are fine. */
	for (size_t i = 0; i < 758; i++) {
		text[2 * i] = '\xc3';
		text[2 * i + 1] = '\xa9'; /* é, GSM-7 */
	}
	text[2 * 758] = '\0';
	obj = send_body(st, &m, &out, NULL, 0);
	CU_ASSERT_PTR_NOT_NULL(obj);
	CU_ASSERT_EQUAL(out.sms_chars, 758);
	json_object_put(obj);

	/* Title + body also count. */
	memset(text, 'y', 758);
	text[758] = '\0';
	g_content[0].sms_text = NULL;
	g_content[0].body_text = text;
	obj = send_body(st, &m, &out, NULL, 0);
	CU_ASSERT_PTR_NULL(obj);
	CU_ASSERT_STRING_EQUAL(out.error, "sms_too_long");
	ops->destroy(st);
}

/* ------------------------------------------------------------------ */
/* SEND response mapping                                                */
/* ------------------------------------------------------------------ */

static void expect_send(void *st, enum smis_transport tr, long status, const char *body,
			enum smis_outcome_kind kind, const char *error)
{
	struct smis_message m = make_msg();
	struct smis_outcome out;

	CU_ASSERT_EQUAL(resume_with(st, SMIS_OP_SEND, &m, tr, status, body, &out), SMIS_STEP_DONE);
	CU_ASSERT_EQUAL(out.kind, kind);
	if (error)
		CU_ASSERT_STRING_EQUAL(out.error, error);
	if (out.kind != kind || (error && strcmp(out.error, error) != 0))
		fprintf(stderr, "\n  status %ld body %s -> kind %d error %s detail %s\n", status,
			body ? body : "(null)", out.kind, out.error, out.detail);
}

/* An id of 127 characters, any printable ASCII but space, as JSON and as
 * decoded; and the ids docs/ringring-channel.md refuses: a C0 or C1
 * control (escaped or raw), a byte that is not UTF-8, DEL, a space, a
 * character beyond ASCII, 128 characters. */
#define ID_60 "012345678901234567890123456789012345678901234567890123456789"
#define ID_JSON_127 "!~\\\"\\\\/ab" ID_60 ID_60
#define ID_127 "!~\"\\/ab" ID_60 ID_60
static const char *const bad_ids[] = {
	"m\\u001b[2J", "m\\u009b2J", "m\xc2\x9b" "2J", "m\x9b" "2J", "m\x7f", "m 1", "m\xc3\xa9",
	ID_JSON_127 "x",
};

static void test_map_send_success(void)
{
	void *st = basic_instance();
	struct smis_message m = make_msg();
	struct smis_outcome out;
	const char *ok =
		"{\"MessageCount\":1,\"Reference\":\"msg_x\",\"Messages\":[{\"MessageId\":"
		"\"0E1B6C3A-1\",\"To\":\"32470123456\",\"ResultCode\":0,\"ResultDescription\":"
		"\"Success\"}],\"ResultCode\":0,\"ResultDescription\":\"Success\"}";
	const char *camel =
		"{\"messageCount\":1,\"messages\":[{\"messageId\":\"abc-2\",\"resultCode\":\"0\"}],"
		"\"resultCode\":\"0\"} \n";

	CU_ASSERT_EQUAL(resume_with(st, SMIS_OP_SEND, &m, SMIS_TRANSPORT_OK, 200, ok, &out),
			SMIS_STEP_DONE);
	CU_ASSERT_EQUAL(out.kind, SMIS_OUTCOME_OK);
	CU_ASSERT_STRING_EQUAL(out.provider_ref, "0E1B6C3A-1");
	CU_ASSERT_STRING_EQUAL(out.error, "");
	CU_ASSERT_EQUAL(out.sms_parts, 1);
	CU_ASSERT_STRING_EQUAL(out.sms_encoding, "GSM-7");

	CU_ASSERT_EQUAL(resume_with(st, SMIS_OP_SEND, &m, SMIS_TRANSPORT_OK, 201, camel, &out),
			SMIS_STEP_DONE);
	CU_ASSERT_EQUAL(out.kind, SMIS_OUTCOME_OK);
	CU_ASSERT_STRING_EQUAL(out.provider_ref, "abc-2");

	/* The longest MessageId taken: 127 characters, any printable ASCII
	 * but space. */
	CU_ASSERT_EQUAL(resume_with(st, SMIS_OP_SEND, &m, SMIS_TRANSPORT_OK, 200,
				    "{\"ResultCode\":0,\"Messages\":[{\"MessageId\":\"" ID_JSON_127 "\","
				    "\"ResultCode\":0}]}", &out),
			SMIS_STEP_DONE);
	CU_ASSERT_EQUAL(out.kind, SMIS_OUTCOME_OK);
	CU_ASSERT_STRING_EQUAL(out.provider_ref, ID_127);
	ops->destroy(st);
}

/* An answer cut off inside a surrogate pair must leave nothing behind for
 * the next answer: json-c's tokener reset kept the pending high surrogate,
 * so the next answer's first \u escape came out after a U+FFFD (here a
 * MessageId no longer ASCII, refused). */
static void test_cut_answer_leaves_nothing(void)
{
	static const char *const cut[] = { "{\"ResultCode\":0,\"Messages\":[{\"MessageId\":\"\\ud83d",
					   "{\"ResultCode\":0,\"Messages\":[{\"MessageId\":\"\\uD83D\\u" };
	void *st = basic_instance();
	struct smis_message m = make_msg();
	struct smis_outcome out;

	for (size_t i = 0; i < sizeof(cut) / sizeof(cut[0]); i++) {
		expect_send(st, SMIS_TRANSPORT_OK, 200, cut[i], SMIS_OUTCOME_TEMPFAIL, "upstream_bad_response");
		CU_ASSERT_EQUAL(resume_with(st, SMIS_OP_SEND, &m, SMIS_TRANSPORT_OK, 200,
					    "{\"ResultCode\":0,\"Messages\":[{\"MessageId\":\"\\u0041bc\","
					    "\"ResultCode\":0}]}", &out),
				SMIS_STEP_DONE);
		CU_ASSERT_EQUAL(out.kind, SMIS_OUTCOME_OK);
		CU_ASSERT_STRING_EQUAL(out.provider_ref, "Abc");
	}
	ops->destroy(st);
}

/* Only JSON's whitespace may follow an answer's value: a NUL there is a
 * trailing byte like any other (the answer is malformed), not its end. */
#define NUL_GOOD "{\"ResultCode\":0,\"Messages\":[{\"MessageId\":\"m1\",\"ResultCode\":0}]}"
#define NUL_TAIL(t) { NUL_GOOD t, sizeof(NUL_GOOD t) - 1 }
static void test_nul_after_answer_refused(void)
{
	static const struct {
		const char *body;
		size_t len;
	} bad[] = { NUL_TAIL("\0"), NUL_TAIL("\r\n\0"), NUL_TAIL("\0\0"), NUL_TAIL("\0 ") };
	void *st = basic_instance();
	struct smis_message m = make_msg();

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct smis_http_response resp = {
			.size = sizeof(resp), .transport = SMIS_TRANSPORT_OK, .status = 200,
			.body = bad[i].body, .body_len = bad[i].len, .content_type = "application/json",
		};
		struct smis_outcome out = { 0 };
		struct smis_http_request *req = NULL;
		void *call = NULL;

		CU_ASSERT_EQUAL(ops->resume(st, SMIS_OP_SEND, &m, &call, &resp, &req, &out), SMIS_STEP_DONE);
		CU_ASSERT_EQUAL(out.kind, SMIS_OUTCOME_TEMPFAIL);
		CU_ASSERT_STRING_EQUAL(out.error, "upstream_bad_response");
	}
	/* JSON's own whitespace is still fine. */
	expect_send(st, SMIS_TRANSPORT_OK, 200, NUL_GOOD " \t\r\n", SMIS_OUTCOME_OK, NULL);
	ops->destroy(st);
}

static void test_map_send_failures(void)
{
	void *st = basic_instance();
	struct smis_message m = make_msg();
	struct smis_outcome out;
	char body[512];
	static const int temp[] = { 1, 2, 34 };
	static const int perm[] = { 3, 4, 5, 7, 8, 9, 10, 12, 13, 14, 15, 17, 20, 21, 31, 32,
				    35, 36, 37, 99 };

	/* Transport. */
	expect_send(st, SMIS_TRANSPORT_TIMEOUT, 0, NULL, SMIS_OUTCOME_TEMPFAIL, "upstream_timeout");
	expect_send(st, SMIS_TRANSPORT_CONNECT, 0, NULL, SMIS_OUTCOME_TEMPFAIL,
		    "upstream_unreachable");
	expect_send(st, SMIS_TRANSPORT_ERROR, 0, NULL, SMIS_OUTCOME_TEMPFAIL, "upstream_error");
	/* HTTP classes, whatever the body says. */
	expect_send(st, SMIS_TRANSPORT_OK, 500, "{\"ResultCode\":1}", SMIS_OUTCOME_TEMPFAIL,
		    "upstream_5xx");
	expect_send(st, SMIS_TRANSPORT_OK, 503, "<html>down</html>", SMIS_OUTCOME_TEMPFAIL,
		    "upstream_5xx");
	expect_send(st, SMIS_TRANSPORT_OK, 403, "{\"ResultCode\":30}", SMIS_OUTCOME_TEMPFAIL,
		    "ringring_throttled");
	expect_send(st, SMIS_TRANSPORT_OK, 403, "", SMIS_OUTCOME_TEMPFAIL, "ringring_throttled");
	/* ResultCode 30 without 403. */
	expect_send(st, SMIS_TRANSPORT_OK, 400,
		    "{\"ResultCode\":30,\"ResultDescription\":\"X-RateLimit reached\"}",
		    SMIS_OUTCOME_TEMPFAIL, "ringring_throttled");

	for (size_t i = 0; i < sizeof(temp) / sizeof(temp[0]); i++) {
		char err[64];
		snprintf(body, sizeof(body), "{\"ResultCode\":%d,\"ResultDescription\":\"x\"}",
			 temp[i]);
		snprintf(err, sizeof(err), "ringring_result_%d", temp[i]);
		expect_send(st, SMIS_TRANSPORT_OK, 400, body, SMIS_OUTCOME_TEMPFAIL, err);
	}
	for (size_t i = 0; i < sizeof(perm) / sizeof(perm[0]); i++) {
		char err[64];
		snprintf(body, sizeof(body), "{\"resultcode\":%d,\"ResultDescription\":\"x\"}",
			 perm[i]);
		snprintf(err, sizeof(err), "ringring_result_%d", perm[i]);
		expect_send(st, SMIS_TRANSPORT_OK, 400, body, SMIS_OUTCOME_PERMFAIL, err);
	}

	/* A MessageId SMIS may not keep as the provider reference. */
	for (size_t i = 0; i < sizeof(bad_ids) / sizeof(bad_ids[0]); i++) {
		snprintf(body, sizeof(body), "{\"ResultCode\":0,\"Messages\":[{\"MessageId\":\"%s\","
			 "\"ResultCode\":0}]}", bad_ids[i]);
		expect_send(st, SMIS_TRANSPORT_OK, 200, body, SMIS_OUTCOME_TEMPFAIL, "upstream_bad_response");
	}

	/* Per-recipient code under a successful request. */
	expect_send(st, SMIS_TRANSPORT_OK, 200,
		    "{\"ResultCode\":0,\"Messages\":[{\"MessageId\":\"\",\"ResultCode\":32,"
		    "\"ResultDescription\":\"Number To Blacklisted\"}]}",
		    SMIS_OUTCOME_PERMFAIL, "ringring_result_32");

	/* A null code says nothing: another casing with a value is the code;
	 * a recipient without one, or with two that disagree, is no success. */
	expect_send(st, SMIS_TRANSPORT_OK, 200,
		    "{\"ResultCode\":0,\"Messages\":[{\"MessageId\":\"x\",\"resultCode\":null,"
		    "\"ResultCode\":9}]}",
		    SMIS_OUTCOME_PERMFAIL, "ringring_result_9");
	expect_send(st, SMIS_TRANSPORT_OK, 400, "{\"resultCode\":null,\"ResultCode\":12}",
		    SMIS_OUTCOME_PERMFAIL, "ringring_result_12");
	expect_send(st, SMIS_TRANSPORT_OK, 200,
		    "{\"ResultCode\":0,\"Messages\":[{\"MessageId\":\"x\",\"ResultCode\":null}]}",
		    SMIS_OUTCOME_TEMPFAIL, "upstream_bad_response");
	expect_send(st, SMIS_TRANSPORT_OK, 200, "{\"ResultCode\":0,\"Messages\":[{\"MessageId\":\"x\"}]}",
		    SMIS_OUTCOME_TEMPFAIL, "upstream_bad_response");
	expect_send(st, SMIS_TRANSPORT_OK, 200,
		    "{\"ResultCode\":0,\"Messages\":[{\"MessageId\":\"x\",\"ResultCode\":0,"
		    "\"resultcode\":32}]}",
		    SMIS_OUTCOME_TEMPFAIL, "upstream_bad_response");
	expect_send(st, SMIS_TRANSPORT_OK, 200, "{\"resultCode\":9,\"ResultCode\":0,\"Messages\":"
		    "[{\"MessageId\":\"x\",\"ResultCode\":0}]}",
		    SMIS_OUTCOME_TEMPFAIL, "upstream_bad_response");

	/* A code no RingRing code can be (a number echoed, say) is not copied. */
	expect_send(st, SMIS_TRANSPORT_OK, 400, "{\"ResultCode\":32470123456}",
		    SMIS_OUTCOME_PERMFAIL, "ringring_result_unknown");
	expect_send(st, SMIS_TRANSPORT_OK, 400, "{\"ResultCode\":-1}", SMIS_OUTCOME_PERMFAIL,
		    "ringring_result_unknown");

	/* Detail is the description, sanitised: no number, no control chars. */
	CU_ASSERT_EQUAL(resume_with(st, SMIS_OP_SEND, &m, SMIS_TRANSPORT_OK, 400,
				    "{\"ResultCode\":9,\"ResultDescription\":"
				    "\"Number To invalid: 32470123456\\n\\u00e9 key "
				    "ABCDEFGHIJKLMNOPQRSTUVWXYZ\"}",
				    &out),
			SMIS_STEP_DONE);
	CU_ASSERT_EQUAL(out.kind, SMIS_OUTCOME_PERMFAIL);
	CU_ASSERT_STRING_EQUAL(out.error, "ringring_result_9");
	CU_ASSERT_STRING_EQUAL(out.detail, "Number To invalid: *** ? key ***");
	/* A number written in groups is still a number, in any of its forms. */
	CU_ASSERT_EQUAL(resume_with(st, SMIS_OP_SEND, &m, SMIS_TRANSPORT_OK, 400,
				    "{\"ResultCode\":9,\"ResultDescription\":"
				    "\"Number To invalid: +32 470 12 34 56, 0470/12.34.56, "
				    "(0470) 12-34-56; code 12 34\"}",
				    &out),
			SMIS_STEP_DONE);
	CU_ASSERT_STRING_EQUAL(out.detail, "Number To invalid: ***, ***, ***; code 12 34");

	/* Garbage and incomplete answers. */
	expect_send(st, SMIS_TRANSPORT_OK, 200, "<html>hi</html>", SMIS_OUTCOME_TEMPFAIL,
		    "upstream_bad_response");
	expect_send(st, SMIS_TRANSPORT_OK, 200, "", SMIS_OUTCOME_TEMPFAIL, "upstream_bad_response");
	expect_send(st, SMIS_TRANSPORT_OK, 200, "{\"ResultCode\":0} trailing",
		    SMIS_OUTCOME_TEMPFAIL, "upstream_bad_response");
	expect_send(st, SMIS_TRANSPORT_OK, 200, "{\"ResultCode\":\"zero\"}",
		    SMIS_OUTCOME_TEMPFAIL, "upstream_bad_response");
	expect_send(st, SMIS_TRANSPORT_OK, 200, "[1,2]", SMIS_OUTCOME_TEMPFAIL,
		    "upstream_bad_response");
	expect_send(st, SMIS_TRANSPORT_OK, 200, "{\"ResultCode\":0}", SMIS_OUTCOME_TEMPFAIL,
		    "upstream_bad_response");
	expect_send(st, SMIS_TRANSPORT_OK, 200, "{\"ResultCode\":0,\"Messages\":[]}",
		    SMIS_OUTCOME_TEMPFAIL, "upstream_bad_response");
	expect_send(st, SMIS_TRANSPORT_OK, 200,
		    "{\"ResultCode\":0,\"Messages\":[{\"ResultCode\":0}]}", SMIS_OUTCOME_TEMPFAIL,
		    "upstream_bad_response");
	expect_send(st, SMIS_TRANSPORT_OK, 400,
		    "{\"ResultCode\":0,\"Messages\":[{\"MessageId\":\"x\"}]}",
		    SMIS_OUTCOME_TEMPFAIL, "upstream_bad_response");
	ops->destroy(st);
}

/* ------------------------------------------------------------------ */
/* STATUS                                                               */
/* ------------------------------------------------------------------ */

static void test_status_request(void)
{
	void *st = basic_instance();
	struct smis_message m = make_msg();
	struct smis_outcome out;
	struct smis_http_request *req = NULL;
	struct json_object *obj;
	void *call = NULL;
	int made = fake_requests_made;

	/* Nothing to ask about. */
	CU_ASSERT_EQUAL(ops->start(st, SMIS_OP_STATUS, &m, &call, &req, &out), SMIS_STEP_DONE);
	CU_ASSERT_EQUAL(out.kind, SMIS_OUTCOME_PERMFAIL);
	CU_ASSERT_STRING_EQUAL(out.error, "no_provider_ref");
	CU_ASSERT_EQUAL(fake_requests_made, made);

	m.provider_ref = "0E1B6C3A-1";
	memset(&out, 0, sizeof(out));
	CU_ASSERT_EQUAL(ops->start(st, SMIS_OP_STATUS, &m, &call, &req, &out), SMIS_STEP_REQUEST);
	CU_ASSERT_PTR_NOT_NULL_FATAL(req);
	CU_ASSERT_STRING_EQUAL(req->method, "POST");
	CU_ASSERT_STRING_EQUAL(req->url, "http://127.0.0.1:18082/sms/v1/statusmessage");
	obj = json_tokener_parse(req->body);
	CU_ASSERT_STRING_EQUAL(jstr(obj, "apiKey"), API_KEY);
	CU_ASSERT_STRING_EQUAL(jstr(obj, "messageId"), "0E1B6C3A-1");
	CU_ASSERT_EQUAL(json_object_object_length(obj), 2);
	json_object_put(obj);
	fake_http_request_free(req);
	ops->destroy(st);
}

static void expect_status(void *st, const char *code_json, enum smis_report_status want)
{
	struct smis_message m = make_msg();
	struct smis_outcome out;
	char body[256];
	char detail[64];
	char digits[16];
	size_t n = 0;

	m.provider_ref = "ref-1";
	snprintf(body, sizeof(body),
		 "{\"MessageId\":\"ref-1\",\"StatusCode\":%s,\"StatusDescription\":\"x\","
		 "\"ResultCode\":0,\"ResultDescription\":\"Success\"}",
		 code_json);
	CU_ASSERT_EQUAL(resume_with(st, SMIS_OP_STATUS, &m, SMIS_TRANSPORT_OK, 200, body, &out),
			SMIS_STEP_DONE);
	CU_ASSERT_EQUAL(out.kind, SMIS_OUTCOME_OK);
	CU_ASSERT_EQUAL_FATAL(out.n_reports, 1);
	/* Reports name the message by SMIS's id (SMIS_CAP_REPORTS_BY_ID); the
	 * outcome keeps RingRing's. */
	CU_ASSERT_STRING_EQUAL(out.reports[0].provider_ref, m.id);
	CU_ASSERT_STRING_EQUAL(out.provider_ref, "ref-1");
	CU_ASSERT_EQUAL(out.reports[0].status, want);
	if (out.reports[0].status != want)
		fprintf(stderr, "\n  StatusCode %s -> %d, want %d\n", code_json,
			out.reports[0].status, want);
	for (const char *p = code_json; *p && n + 1 < sizeof(digits); p++) {
		if (*p >= '0' && *p <= '9')
			digits[n++] = *p;
	}
	digits[n] = '\0';
	if (n >= 5 || code_json[0] == '-')
		snprintf(detail, sizeof(detail), "ringring_status_unknown");
	else
		snprintf(detail, sizeof(detail), "ringring_status_%s", digits);
	CU_ASSERT_STRING_EQUAL(out.reports[0].detail, detail);
}

static void test_status_mapping(void)
{
	void *st = basic_instance();
	struct smis_message m = make_msg();
	struct smis_outcome out;

	expect_status(st, "0", SMIS_REPORT_PENDING);
	expect_status(st, "10", SMIS_REPORT_PENDING);
	expect_status(st, "\"20\"", SMIS_REPORT_PENDING);
	expect_status(st, "100", SMIS_REPORT_PENDING);
	expect_status(st, "199", SMIS_REPORT_PENDING);
	expect_status(st, "200", SMIS_REPORT_DELIVERED);
	expect_status(st, "\"201\"", SMIS_REPORT_DELIVERED);
	expect_status(st, "202", SMIS_REPORT_PENDING);
	expect_status(st, "300", SMIS_REPORT_FAILED);
	expect_status(st, "399", SMIS_REPORT_FAILED);
	expect_status(st, "400", SMIS_REPORT_FAILED);
	expect_status(st, "499", SMIS_REPORT_FAILED);
	expect_status(st, "500", SMIS_REPORT_PENDING);
	expect_status(st, "800", SMIS_REPORT_FAILED);
	expect_status(st, "899", SMIS_REPORT_FAILED);
	expect_status(st, "900", SMIS_REPORT_PENDING);
	expect_status(st, "999", SMIS_REPORT_PENDING);
	/* Not a RingRing code: pending, and not copied into the detail. */
	expect_status(st, "32470123456", SMIS_REPORT_PENDING);
	expect_status(st, "-200", SMIS_REPORT_PENDING);

	m.provider_ref = "ref-1";
	/* Not found upstream. */
	CU_ASSERT_EQUAL(resume_with(st, SMIS_OP_STATUS, &m, SMIS_TRANSPORT_OK, 400,
				    "{\"ResultCode\":29,\"ResultDescription\":\"MessageId not found\"}",
				    &out),
			SMIS_STEP_DONE);
	CU_ASSERT_EQUAL(out.kind, SMIS_OUTCOME_PERMFAIL);
	CU_ASSERT_STRING_EQUAL(out.error, "ringring_result_29");
	CU_ASSERT_EQUAL(out.n_reports, 0);
	/* No StatusCode. */
	CU_ASSERT_EQUAL(resume_with(st, SMIS_OP_STATUS, &m, SMIS_TRANSPORT_OK, 200,
				    "{\"ResultCode\":0,\"MessageId\":\"ref-1\"}", &out),
			SMIS_STEP_DONE);
	CU_ASSERT_EQUAL(out.kind, SMIS_OUTCOME_TEMPFAIL);
	CU_ASSERT_STRING_EQUAL(out.error, "upstream_bad_response");
	CU_ASSERT_EQUAL(out.n_reports, 0);
	/* MessageId absent in the answer: the message we asked about. */
	CU_ASSERT_EQUAL(resume_with(st, SMIS_OP_STATUS, &m, SMIS_TRANSPORT_OK, 200,
				    "{\"resultCode\":0,\"statusCode\":\"300\"}", &out),
			SMIS_STEP_DONE);
	CU_ASSERT_EQUAL(out.kind, SMIS_OUTCOME_OK);
	CU_ASSERT_EQUAL(out.n_reports, 1);
	CU_ASSERT_STRING_EQUAL(out.reports[0].provider_ref, m.id);
	CU_ASSERT_STRING_EQUAL(out.provider_ref, "ref-1");
	CU_ASSERT_EQUAL(out.reports[0].status, SMIS_REPORT_FAILED);
	/* Transport failures as for SEND. */
	CU_ASSERT_EQUAL(resume_with(st, SMIS_OP_STATUS, &m, SMIS_TRANSPORT_TIMEOUT, 0, NULL, &out),
			SMIS_STEP_DONE);
	CU_ASSERT_STRING_EQUAL(out.error, "upstream_timeout");
	CU_ASSERT_EQUAL(resume_with(st, SMIS_OP_STATUS, &m, SMIS_TRANSPORT_OK, 502, "", &out),
			SMIS_STEP_DONE);
	CU_ASSERT_STRING_EQUAL(out.error, "upstream_5xx");
	CU_ASSERT_EQUAL(resume_with(st, SMIS_OP_STATUS, &m, SMIS_TRANSPORT_OK, 200, "nope", &out),
			SMIS_STEP_DONE);
	CU_ASSERT_STRING_EQUAL(out.error, "upstream_bad_response");
	ops->destroy(st);
}

/* A status answer about another message (a mixed-up answer, a proxy's
 * cache) moves nothing: no report, a TEMPFAIL, a warning without ids. An
 * answer that names the polled message, or leaves the ids out, counts. */
static void test_status_other_message(void)
{
	static const char *const other[] = {
		"{\"ResultCode\":0,\"MessageId\":\"ref-OTHER\",\"StatusCode\":200}",
		"{\"ResultCode\":0,\"MessageId\":\"ref-1\",\"Reference\":\"msg_OTHER\",\"StatusCode\":200}",
		"{\"ResultCode\":0,\"MessageId\":\"ref-1\",\"messageId\":\"ref-OTHER\",\"StatusCode\":200}",
		"{\"ResultCode\":0,\"MessageId\":12,\"StatusCode\":200}",
		"{\"ResultCode\":0,\"reference\":[\"msg_01HZZZZZZZZZZZZZZZZZZZZZZZ\"],\"StatusCode\":200}",
	};
	static const char *const ours[] = {
		"{\"ResultCode\":0,\"MessageId\":\"ref-1\",\"Reference\":\"msg_01HZZZZZZZZZZZZZZZZZZZZZZZ\",\"StatusCode\":200}",
		"{\"ResultCode\":0,\"MessageId\":null,\"Reference\":null,\"StatusCode\":200}",
	};
	void *st = basic_instance();
	struct smis_message m = make_msg();
	struct smis_outcome out;

	m.provider_ref = "ref-1";
	for (size_t i = 0; i < sizeof(other) / sizeof(other[0]); i++) {
		int warns = g_warnings;

		CU_ASSERT_EQUAL(resume_with(st, SMIS_OP_STATUS, &m, SMIS_TRANSPORT_OK, 200, other[i], &out),
				SMIS_STEP_DONE);
		CU_ASSERT_EQUAL(out.kind, SMIS_OUTCOME_TEMPFAIL);
		CU_ASSERT_STRING_EQUAL(out.error, "upstream_bad_response");
		CU_ASSERT_EQUAL(out.n_reports, 0);
		CU_ASSERT_EQUAL(g_warnings, warns + 1);
	}
	CU_ASSERT_PTR_NULL(strstr(g_log, "OTHER"));
	for (size_t i = 0; i < sizeof(ours) / sizeof(ours[0]); i++) {
		CU_ASSERT_EQUAL(resume_with(st, SMIS_OP_STATUS, &m, SMIS_TRANSPORT_OK, 200, ours[i], &out),
				SMIS_STEP_DONE);
		CU_ASSERT_EQUAL(out.kind, SMIS_OUTCOME_OK);
		CU_ASSERT_EQUAL(out.n_reports, 1);
		CU_ASSERT_EQUAL(out.reports[0].status, SMIS_REPORT_DELIVERED);
	}
	ops->destroy(st);
}

/* ------------------------------------------------------------------ */
/* Inbound webhook                                                      */
/* ------------------------------------------------------------------ */

static const char *g_q_id;
static const char *g_q_code;

static const char *fake_query(const struct smis_inbound *in, const char *name)
{
	if (strcmp(name, "Reference") == 0)
		return g_q_id;
	if (strcmp(name, "StatusCode") == 0)
		return g_q_code;
	return NULL;
}

static const char *fake_header(const struct smis_inbound *in, const char *name)
{
	return NULL;
}

/* R5's example, for a message SMIS sent: its Reference is SMIS's id. */
static const char *g_dlr =
	"{\"MessageId\":\"UNIQUE-MESSAGE-ID\",\"Reference\":\"msg_01HZY3K4N5P6Q7R8S9T0V1W2X3\",\"StatusCode\":\"200\","
	"\"StatusDescription\":\"Delivered\",\"TimeScheduled\":\"2018-05-04 14:20:56\","
	"\"TimeSubmitted\":\"2018-05-04 14:20:57\",\"DeliveryTime\":\"2018-05-04 14:20:58\","
	"\"Country\":\"BE\",\"ResultCode\":0,\"ResultDescription\":\"Success\",\"From\":\"8686\","
	"\"To\":\"32485123456\",\"Message\":\"Incoming message test\",\"MessageEncoding\":\"TEXT\","
	"\"NumberOfParts\":1,\"NumberOfChars\":21}";

static int inbound(void *st, const char *method, const char *path, const char *addr,
		   const char *body, struct smis_report *reps, size_t max, size_t *n)
{
	struct smis_inbound in = {
		.size = sizeof(in),
		.method = method,
		.path_rest = path,
		.remote_addr = addr,
		.body = body,
		.body_len = strlen(body),
		.header = fake_header,
		.query = fake_query,
	};

	*n = 99;
	return ops->inbound(st, &in, reps, max, n);
}

static void *webhook_instance(const char *allow)
{
	struct fake_setting set[] = {
		S("api_key", API_KEY),
		S("status_url", "http://127.0.0.1:8080/v1/callbacks/rr/" TOKEN),
		S("callback_token", TOKEN),
		S("callback_allow", allow),
	};
	struct smis_config cfg;
	void *st = NULL;

	CU_ASSERT_EQUAL_FATAL(make_instance(&st, &cfg, set, allow ? 4 : 3), 0);
	return st;
}

static void test_inbound_auth(void)
{
	void *st = webhook_instance("127.0.0.1, 10.1.0.0/16, 2001:db8::/32");
	struct smis_report reps[8];
	size_t n;

	CU_ASSERT_EQUAL(inbound(st, "POST", "/" TOKEN, "127.0.0.1", g_dlr, reps, 8, &n), 0);
	CU_ASSERT_EQUAL_FATAL(n, 1);
	CU_ASSERT_STRING_EQUAL(reps[0].provider_ref, "msg_01HZY3K4N5P6Q7R8S9T0V1W2X3");
	CU_ASSERT_EQUAL(reps[0].status, SMIS_REPORT_DELIVERED);
	CU_ASSERT_STRING_EQUAL(reps[0].detail, "ringring_status_200");
	CU_ASSERT_STRING_EQUAL(reps[0].device, "");

	/* Other allowed addresses. */
	CU_ASSERT_EQUAL(inbound(st, "POST", "/" TOKEN, "10.1.200.3", g_dlr, reps, 8, &n), 0);
	CU_ASSERT_EQUAL(inbound(st, "POST", "/" TOKEN, "::ffff:127.0.0.1", g_dlr, reps, 8, &n), 0);
	CU_ASSERT_EQUAL(inbound(st, "POST", "/" TOKEN, "2001:db8:1::5", g_dlr, reps, 8, &n), 0);

	/* Wrong token: same length, longer, shorter, missing, NULL. */
	CU_ASSERT_EQUAL(inbound(st, "POST", "/tok_ABCDEFGHIJKLMNOQ", "127.0.0.1", g_dlr, reps, 8,
				&n),
			-EACCES);
	CU_ASSERT_EQUAL(n, 0);
	CU_ASSERT_EQUAL(inbound(st, "POST", "/" TOKEN "x", "127.0.0.1", g_dlr, reps, 8, &n),
			-EACCES);
	CU_ASSERT_EQUAL(inbound(st, "POST", "/" TOKEN "/", "127.0.0.1", g_dlr, reps, 8, &n),
			-EACCES);
	CU_ASSERT_EQUAL(inbound(st, "POST", TOKEN, "127.0.0.1", g_dlr, reps, 8, &n), -EACCES);
	CU_ASSERT_EQUAL(inbound(st, "POST", "", "127.0.0.1", g_dlr, reps, 8, &n), -EACCES);
	CU_ASSERT_EQUAL(inbound(st, "POST", NULL, "127.0.0.1", g_dlr, reps, 8, &n), -EACCES);

	/* Wrong addresses. */
	CU_ASSERT_EQUAL(inbound(st, "POST", "/" TOKEN, "127.0.0.2", g_dlr, reps, 8, &n), -EACCES);
	CU_ASSERT_EQUAL(inbound(st, "POST", "/" TOKEN, "10.2.0.1", g_dlr, reps, 8, &n), -EACCES);
	CU_ASSERT_EQUAL(inbound(st, "POST", "/" TOKEN, "2001:db9::1", g_dlr, reps, 8, &n),
			-EACCES);
	CU_ASSERT_EQUAL(inbound(st, "POST", "/" TOKEN, "::1", g_dlr, reps, 8, &n), -EACCES);
	CU_ASSERT_EQUAL(inbound(st, "POST", "/" TOKEN, "garbage", g_dlr, reps, 8, &n), -EACCES);
	CU_ASSERT_EQUAL(inbound(st, "POST", "/" TOKEN, NULL, g_dlr, reps, 8, &n), -EACCES);
	/* Authentication comes before parsing: garbage from a stranger is 401. */
	CU_ASSERT_EQUAL(inbound(st, "POST", "/wrong", "127.0.0.1", "{", reps, 8, &n), -EACCES);
	ops->destroy(st);

	/* Token only: any address. */
	st = webhook_instance(NULL);
	CU_ASSERT_EQUAL(inbound(st, "POST", "/" TOKEN, "203.0.113.9", g_dlr, reps, 8, &n), 0);
	CU_ASSERT_EQUAL(n, 1);
	CU_ASSERT_EQUAL(inbound(st, "POST", "/nottoken_ABCDEFG", "203.0.113.9", g_dlr, reps, 8,
				&n),
			-EACCES);
	ops->destroy(st);
}

static void test_inbound_no_auth_configured(void)
{
	void *st = basic_instance();
	struct smis_report reps[8];
	size_t n;

	CU_ASSERT_EQUAL(inbound(st, "POST", "", "127.0.0.1", g_dlr, reps, 8, &n), -EACCES);
	CU_ASSERT_EQUAL(inbound(st, "POST", "/anything", "127.0.0.1", g_dlr, reps, 8, &n),
			-EACCES);
	ops->destroy(st);

	/* Allow list only. */
	{
		struct fake_setting set[] = { S("api_key", API_KEY),
					      S("callback_allow", "194.78.45.194") };
		struct smis_config cfg;
		CU_ASSERT_EQUAL_FATAL(make_instance(&st, &cfg, set, NSET(set)), 0);
		CU_ASSERT_EQUAL(inbound(st, "POST", "", "194.78.45.194", g_dlr, reps, 8, &n), 0);
		CU_ASSERT_EQUAL(n, 1);
		CU_ASSERT_EQUAL(inbound(st, "POST", "", "194.78.45.195", g_dlr, reps, 8, &n),
				-EACCES);
		ops->destroy(st);
	}
}

static void test_inbound_parse(void)
{
	void *st = webhook_instance(NULL);
	struct smis_report reps[8];
	size_t n;
	const char *path = "/" TOKEN;

	/* Malformed. */
	CU_ASSERT_EQUAL(inbound(st, "POST", path, "127.0.0.1", "", reps, 8, &n), -EINVAL);
	CU_ASSERT_EQUAL(n, 0);
	CU_ASSERT_EQUAL(inbound(st, "POST", path, "127.0.0.1", "{\"MessageId\":\"x\"", reps, 8, &n),
			-EINVAL);
	CU_ASSERT_EQUAL(inbound(st, "POST", path, "127.0.0.1", "{\"MessageId\":\"x\"}", reps, 8,
				&n),
			-EINVAL);
	CU_ASSERT_EQUAL(inbound(st, "POST", path, "127.0.0.1", "{\"StatusCode\":200}", reps, 8, &n),
			-EINVAL);
	CU_ASSERT_EQUAL(inbound(st, "POST", path, "127.0.0.1",
				"{\"MessageId\":\"x\",\"StatusCode\":\"abc\"}", reps, 8, &n),
			-EINVAL);
	CU_ASSERT_EQUAL(inbound(st, "POST", path, "127.0.0.1",
				"{\"MessageId\":12,\"StatusCode\":200}", reps, 8, &n),
			-EINVAL);
	CU_ASSERT_EQUAL(inbound(st, "POST", path, "127.0.0.1", "\"text\"", reps, 8, &n), -EINVAL);
	CU_ASSERT_EQUAL(inbound(st, "POST", path, "127.0.0.1", "[]", reps, 8, &n), -EINVAL);
	/* More reports than the core takes at once: refused whole, never
	 * answered as taken with the tail dropped. */
	{
		char batch[1024] = "[";

		for (int i = 0; i < 9; i++)
			snprintf(batch + strlen(batch), sizeof(batch) - strlen(batch),
				 "%s{\"Reference\":\"m-%d\",\"StatusCode\":\"200\"}", i ? "," : "", i);
		strcat(batch, "]");
		CU_ASSERT_EQUAL(inbound(st, "POST", path, "127.0.0.1", batch, reps, 8, &n), -EINVAL);
		CU_ASSERT_EQUAL(n, 0);
	}
	/* Incoming-SMS webhook is not a DLR. */
	CU_ASSERT_EQUAL(inbound(st, "POST", path, "127.0.0.1",
				"{\"MessageId\":\"m\",\"From\":\"32470\",\"Message\":\"hi\"}", reps,
				8, &n),
			-EINVAL);

	/* R5's example as printed: Reference null, a message not sent by
	 * SMIS (or sent without its id): nothing to match it with. */
	CU_ASSERT_EQUAL(inbound(st, "POST", path, "127.0.0.1",
				"{\"MessageId\":\"UNIQUE-MESSAGE-ID\",\"Reference\":null,\"StatusCode\":\"200\"}",
				reps, 8, &n),
			-EINVAL);
	CU_ASSERT_EQUAL(inbound(st, "POST", path, "127.0.0.1",
				"{\"MessageId\":\"UNIQUE-MESSAGE-ID\",\"StatusCode\":\"200\"}", reps, 8, &n),
			-EINVAL);

	/* A null Reference gives way to another casing's; two that disagree
	 * name no message. */
	CU_ASSERT_EQUAL(inbound(st, "POST", path, "127.0.0.1",
				"{\"Reference\":null,\"reference\":\"m-0\",\"StatusCode\":\"200\"}",
				reps, 8, &n),
			0);
	CU_ASSERT_EQUAL_FATAL(n, 1);
	CU_ASSERT_STRING_EQUAL(reps[0].provider_ref, "m-0");
	CU_ASSERT_EQUAL(inbound(st, "POST", path, "127.0.0.1",
				"{\"Reference\":\"m-0\",\"reference\":\"m-9\",\"StatusCode\":\"200\"}",
				reps, 8, &n),
			-EINVAL);

	/* A Reference outside docs/ringring-channel.md's ids names no
	 * message of SMIS; the longest one inside does. */
	for (size_t i = 0; i < sizeof(bad_ids) / sizeof(bad_ids[0]); i++) {
		char body[512];

		snprintf(body, sizeof(body), "{\"Reference\":\"%s\",\"StatusCode\":\"200\"}", bad_ids[i]);
		CU_ASSERT_EQUAL(inbound(st, "POST", path, "127.0.0.1", body, reps, 8, &n), -EINVAL);
		CU_ASSERT_EQUAL(n, 0);
	}
	CU_ASSERT_EQUAL(inbound(st, "POST", path, "127.0.0.1",
				"{\"Reference\":\"" ID_JSON_127 "\",\"StatusCode\":\"200\"}", reps, 8, &n),
			0);
	CU_ASSERT_EQUAL_FATAL(n, 1);
	CU_ASSERT_STRING_EQUAL(reps[0].provider_ref, ID_127);

	/* Numeric StatusCode, camelCase keys, failure. */
	CU_ASSERT_EQUAL(inbound(st, "POST", path, "127.0.0.1",
				"{\"messageId\":\"x\",\"reference\":\"m-1\",\"statusCode\":301}", reps, 8, &n),
			0);
	CU_ASSERT_EQUAL_FATAL(n, 1);
	CU_ASSERT_STRING_EQUAL(reps[0].provider_ref, "m-1");
	CU_ASSERT_EQUAL(reps[0].status, SMIS_REPORT_FAILED);
	CU_ASSERT_STRING_EQUAL(reps[0].detail, "ringring_status_301");

	/* A batch of exactly max_reports (a longer one is refused whole:
	 * above). */
	CU_ASSERT_EQUAL(inbound(st, "POST", path, "127.0.0.1",
				"[{\"Reference\":\"a\",\"StatusCode\":\"100\"},"
				"{\"Reference\":\"b\",\"StatusCode\":\"201\"},"
				"{\"Reference\":\"c\",\"StatusCode\":\"801\"}]",
				reps, 3, &n),
			0);
	CU_ASSERT_EQUAL_FATAL(n, 3);
	CU_ASSERT_EQUAL(reps[0].status, SMIS_REPORT_PENDING);
	CU_ASSERT_STRING_EQUAL(reps[1].provider_ref, "b");
	CU_ASSERT_EQUAL(reps[1].status, SMIS_REPORT_DELIVERED);
	CU_ASSERT_EQUAL(reps[2].status, SMIS_REPORT_FAILED);

	/* statusMethod GET: query arguments. */
	g_q_id = "q-1";
	g_q_code = "300";
	CU_ASSERT_EQUAL(inbound(st, "GET", path, "127.0.0.1", "", reps, 8, &n), 0);
	CU_ASSERT_EQUAL_FATAL(n, 1);
	CU_ASSERT_STRING_EQUAL(reps[0].provider_ref, "q-1");
	CU_ASSERT_EQUAL(reps[0].status, SMIS_REPORT_FAILED);
	/* A query argument is no JSON: the raw bytes count. */
	g_q_id = "q\x1b[2J";
	CU_ASSERT_EQUAL(inbound(st, "GET", path, "127.0.0.1", "", reps, 8, &n), -EINVAL);
	g_q_id = "q\xc2\x9b" "2J";
	CU_ASSERT_EQUAL(inbound(st, "GET", path, "127.0.0.1", "", reps, 8, &n), -EINVAL);
	g_q_id = "q-1";
	g_q_code = NULL;
	CU_ASSERT_EQUAL(inbound(st, "GET", path, "127.0.0.1", "", reps, 8, &n), -EINVAL);
	g_q_id = NULL;
	ops->destroy(st);
}

int main(void)
{
	CU_pSuite s;
	unsigned failures;

	if (CU_initialize_registry() != CUE_SUCCESS)
		return 2;
	s = CU_add_suite("ringring_plugin", suite_init, suite_clean);
	if (!s)
		goto fail;
	if (!CU_add_test(s, "descriptor", test_descriptor) ||
	    !CU_add_test(s, "config", test_config) ||
	    !CU_add_test(s, "config_warns_unauthenticated_webhook",
			 test_config_warns_unauthenticated_webhook) ||
	    !CU_add_test(s, "config_status_url_token", test_config_status_url_token) ||
	    !CU_add_test(s, "send_request", test_send_request) ||
	    !CU_add_test(s, "send_status_url", test_send_status_url) ||
	    !CU_add_test(s, "send_sender", test_send_sender) ||
	    !CU_add_test(s, "send_recipient", test_send_recipient) ||
	    !CU_add_test(s, "send_language", test_send_language) ||
	    !CU_add_test(s, "send_text", test_send_text) ||
	    !CU_add_test(s, "send_unicode_mode", test_send_unicode_mode) ||
	    !CU_add_test(s, "send_counts_kept", test_send_counts_kept) ||
	    !CU_add_test(s, "send_text_mode_ucs2", test_send_text_mode_ucs2) ||
	    !CU_add_test(s, "send_length", test_send_length) ||
	    !CU_add_test(s, "map_send_success", test_map_send_success) ||
	    !CU_add_test(s, "map_send_failures", test_map_send_failures) ||
	    !CU_add_test(s, "status_request", test_status_request) ||
	    !CU_add_test(s, "status_mapping", test_status_mapping) ||
	    !CU_add_test(s, "status_other_message", test_status_other_message) ||
	    !CU_add_test(s, "inbound_auth", test_inbound_auth) ||
	    !CU_add_test(s, "inbound_no_auth_configured", test_inbound_no_auth_configured) ||
	    !CU_add_test(s, "inbound_parse", test_inbound_parse) ||
	    !CU_add_test(s, "cut_answer_leaves_nothing", test_cut_answer_leaves_nothing) ||
	    !CU_add_test(s, "nul_after_answer_refused", test_nul_after_answer_refused))
		goto fail;
	CU_basic_set_mode(CU_BRM_VERBOSE);
	CU_basic_run_tests();
	failures = CU_get_number_of_failures() + CU_get_number_of_suites_failed();
	CU_cleanup_registry();
	return failures ? 1 : 0;

fail:
	CU_cleanup_registry();
	return 2;
}
