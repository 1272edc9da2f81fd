/*
 * test_webhook.c - the webhook plugin against a fake core API table: no
 * daemon, no network. It dlopens the built webhook.so exactly as smisd
 * does (RTLD_NOW | RTLD_LOCAL, one descriptor symbol), fills in the
 * `struct smis_core_api` itself, captures the HTTP request the plugin
 * builds and hands it canned responses.
 *
 *   ./test_webhook ./webhook.so        (make check)
 *
 * The opaque core types (smis_config, smis_instance, smis_http_request)
 * are defined here as the test likes: the plugin only ever holds pointers.
 */
#include <dlfcn.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <smis/smis-plugin.h>

/* ---- the fake core ----------------------------------------------------- */

struct smis_config {
	const char *const *kv; /* key, value, key, value, ..., NULL */
	int errors;
};

struct smis_instance {
	int unused;
};

struct smis_http_request {
	char method[8];
	char url[256];
	char headers[4][256];
	int n_headers;
	char *body;
};

static void fake_log(struct smis_instance *self, enum smis_log_level level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static int fake_config_string(struct smis_config *cfg, const char *key, char **out)
{
	for (const char *const *p = cfg->kv; *p; p += 2)
		if (strcmp(p[0], key) == 0)
			return (*out = strdup(p[1])) ? 0 : -ENOMEM;
	return -ENOENT;
}

static int fake_config_int(struct smis_config *cfg, const char *key, long long *out)
{
	return -ENOENT;
}

static int fake_config_bool(struct smis_config *cfg, const char *key, bool *out)
{
	return -ENOENT;
}

static void fake_config_error(struct smis_config *cfg, const char *key, const char *fmt, ...)
{
	cfg->errors++;
}

static int fake_channel_caps(struct smis_instance *self, const char *name, unsigned *caps)
{
	return -ENOENT;
}

static struct smis_http_request *fake_request_new(const char *method, const char *url)
{
	struct smis_http_request *r = calloc(1, sizeof(*r));

	if (r) {
		snprintf(r->method, sizeof(r->method), "%s", method);
		snprintf(r->url, sizeof(r->url), "%s", url);
	}
	return r;
}

static int fake_request_header(struct smis_http_request *r, const char *name, const char *value)
{
	if (r->n_headers == 4)
		return -E2BIG;
	snprintf(r->headers[r->n_headers++], sizeof(r->headers[0]), "%s: %s", name, value);
	return 0;
}

static int fake_request_body(struct smis_http_request *r, const char *body, size_t len)
{
	free(r->body);
	r->body = strndup(body, len);
	return r->body ? 0 : -ENOMEM;
}

static void fake_request_free(struct smis_http_request *r)
{
	if (r)
		free(r->body);
	free(r);
}

static int64_t fake_now(void)
{
	return 1700000000000;
}

static void *fake_alloc(size_t n)
{
	return calloc(1, n ? n : 1);
}

static const struct smis_core_api api = {
	.size = sizeof(struct smis_core_api),
	.abi_version = SMIS_PLUGIN_ABI_VERSION,
	.log = fake_log,
	.config_string = fake_config_string,
	.config_int = fake_config_int,
	.config_bool = fake_config_bool,
	.config_error = fake_config_error,
	.channel_caps = fake_channel_caps,
	.http_request_new = fake_request_new,
	.http_request_header = fake_request_header,
	.http_request_body = fake_request_body,
	.http_request_free = fake_request_free,
	.now_ms = fake_now,
	.monotonic_ms = fake_now,
	.alloc = fake_alloc,
	.free = free,
};

/* ---- checks -------------------------------------------------------------- */

static int failures;

#define CHECK(cond)                                                                   \
	do {                                                                          \
		if (!(cond)) {                                                        \
			fprintf(stderr, "%s:%d: FAILED: %s\n", __FILE__, __LINE__, #cond); \
			failures++;                                                   \
		}                                                                     \
	} while (0)

static const struct smis_content content[] = {
	{ .lang = "nl", .title = "Uw \"document\"", .body = "<p>Klaar</p>", .body_text = "Klaar\nnu",
	  .body_is_html = true },
	{ .lang = "fr", .title = "Votre document", .body = "Prêt", .body_text = "Prêt" },
};

static const struct smis_message msg = {
	.size = sizeof(struct smis_message),
	.id = "msg_01TEST",
	.institution = "inst",
	.recipient = "+32470123456",
	.language = "fr",
	.content = content,
	.n_content = 2,
};

/* Create an instance from key/value settings; returns its state or NULL. */
static void *create(const struct smis_plugin_descriptor *d, const char *const *kv, int *errors)
{
	struct smis_config cfg = { kv, 0 };
	struct smis_instance self = { 0 };
	void *state = NULL;
	int rc = d->channel->create(&api, &self, &cfg, &state);

	*errors = cfg.errors;
	if (rc != 0) {
		CHECK(state == NULL);
		return NULL;
	}
	return state;
}

/* Run SEND against a canned answer and return the outcome. */
static struct smis_outcome send_with(const struct smis_plugin_descriptor *d, void *state,
				     enum smis_transport transport, long status, const char *answer)
{
	struct smis_http_request *req = NULL;
	struct smis_outcome out;
	void *call = NULL;
	struct smis_http_response resp = {
		.size = sizeof(resp),
		.transport = transport,
		.status = status,
		.body = answer,
		.body_len = strlen(answer),
	};

	memset(&out, 0, sizeof(out));
	CHECK(d->channel->start(state, SMIS_OP_SEND, &msg, &call, &req, &out) == SMIS_STEP_REQUEST);
	CHECK(req != NULL);
	CHECK(d->channel->resume(state, SMIS_OP_SEND, &msg, &call, &resp, &req, &out) == SMIS_STEP_DONE);
	fake_request_free(req);
	return out;
}

int main(int argc, char **argv)
{
	static const char *const good[] = { "url", "http://127.0.0.1:9/hook", "bearer", "tok", NULL };
	static const char *const no_url[] = { "bearer", "has space", NULL };
	const struct smis_plugin_descriptor *d;
	struct smis_http_request *req = NULL;
	struct smis_outcome out;
	void *h, *state, *call = NULL;
	int errors;

	h = dlopen(argc > 1 ? argv[1] : "./webhook.so", RTLD_NOW | RTLD_LOCAL);
	if (!h) {
		fprintf(stderr, "%s\n", dlerror());
		return 1;
	}
	d = dlsym(h, SMIS_PLUGIN_SYMBOL);
	CHECK(d && d->abi_version == SMIS_PLUGIN_ABI_VERSION && d->kind == SMIS_PLUGIN_CHANNEL);
	if (!d)
		return 1;
	CHECK(strcmp(d->name, "webhook") == 0 && d->caps == SMIS_CAP_SEND);

	/* A bad block: both mistakes reported, no instance. */
	CHECK(create(d, no_url, &errors) == NULL);
	CHECK(errors == 2);

	state = create(d, good, &errors);
	CHECK(state != NULL && errors == 0);
	if (!state)
		return 1;

	/* The request: URL, headers, JSON in the requested language. */
	memset(&out, 0, sizeof(out));
	CHECK(d->channel->start(state, SMIS_OP_SEND, &msg, &call, &req, &out) == SMIS_STEP_REQUEST);
	CHECK(req && strcmp(req->method, "POST") == 0 && strcmp(req->url, "http://127.0.0.1:9/hook") == 0);
	CHECK(req && strcmp(req->headers[0], "Content-Type: application/json") == 0);
	CHECK(req && strcmp(req->headers[1], "Authorization: Bearer tok") == 0);
	CHECK(req && req->body && strcmp(req->body, "{\"message_id\":\"msg_01TEST\",\"to\":\"+32470123456\","
			   "\"title\":\"Votre document\",\"body\":\"Prêt\",\"lang\":\"fr\"}") == 0);
	fake_request_free(req);

	/* Outcomes. */
	out = send_with(d, state, SMIS_TRANSPORT_OK, 200, "{\"ok\":true,\"nested\":{\"id\":\"no\"},\"id\":\"wh-42\"}");
	CHECK(out.kind == SMIS_OUTCOME_OK && strcmp(out.provider_ref, "wh-42") == 0);
	out = send_with(d, state, SMIS_TRANSPORT_OK, 202, "accepted");
	CHECK(out.kind == SMIS_OUTCOME_OK && out.provider_ref[0] == '\0');
	out = send_with(d, state, SMIS_TRANSPORT_OK, 503, "");
	CHECK(out.kind == SMIS_OUTCOME_TEMPFAIL && strcmp(out.error, "upstream_5xx") == 0);
	out = send_with(d, state, SMIS_TRANSPORT_OK, 429, "");
	CHECK(out.kind == SMIS_OUTCOME_TEMPFAIL);
	out = send_with(d, state, SMIS_TRANSPORT_OK, 404, "{\"id\":\"x\"}");
	CHECK(out.kind == SMIS_OUTCOME_PERMFAIL && strcmp(out.error, "upstream_4xx") == 0);
	out = send_with(d, state, SMIS_TRANSPORT_TIMEOUT, 0, "");
	CHECK(out.kind == SMIS_OUTCOME_TEMPFAIL && strcmp(out.error, "upstream_timeout") == 0);

	/* An operation outside our caps is answered with an outcome, no request. */
	req = NULL;
	memset(&out, 0, sizeof(out));
	CHECK(d->channel->start(state, SMIS_OP_LOOKUP, &msg, &call, &req, &out) == SMIS_STEP_DONE);
	CHECK(req == NULL && out.kind == SMIS_OUTCOME_PERMFAIL);

	/* Content the institution encrypted itself cannot be forwarded. */
	{
		struct smis_message sealed = msg;
		sealed.encrypted_json = "{\"encryption\":\"x\",\"envelopes\":[]}";
		req = NULL;
		memset(&out, 0, sizeof(out));
		CHECK(d->channel->start(state, SMIS_OP_SEND, &sealed, &call, &req, &out) == SMIS_STEP_DONE);
		CHECK(req == NULL && out.kind == SMIS_OUTCOME_PERMFAIL &&
		      strcmp(out.error, "encrypted_content_unsupported") == 0);
		/* A core built before encrypted_json existed: the member lies
		 * beyond its size and must read as absent. */
		sealed.size = offsetof(struct smis_message, encrypted_json);
		out = (struct smis_outcome){ 0 };
		CHECK(d->channel->start(state, SMIS_OP_SEND, &sealed, &call, &req, &out) == SMIS_STEP_REQUEST);
		fake_request_free(req);
	}

	d->channel->destroy(state);
	d->channel->destroy(NULL);
	dlclose(h);
	if (failures)
		fprintf(stderr, "%d check(s) failed\n", failures);
	else
		printf("test_webhook: all checks passed\n");
	return failures ? 1 : 0;
}
