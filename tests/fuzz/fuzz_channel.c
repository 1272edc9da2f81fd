/*
 * fuzz_channel.c - the fake core and input shapes of the channel plugin
 * fuzz targets (see fuzz_channel.h).
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
#include <strings.h>

#include <json-c/json.h>

#include "fake_config.h"
#include "fake_core.h"
#include "fuzz_channel.h"
#include "fuzz_common.h"

/* ------------------------------------------------------------------ */
/* Fake core                                                           */
/* ------------------------------------------------------------------ */

struct smis_instance {
	int unused;
};

/* Logs are formatted, so that a bad argument (a string without its NUL,
 * say) is caught, then dropped: a run logs on every input. */
static void SMIS_PRINTF(3, 4) fake_log(struct smis_instance *self, enum smis_log_level level,
				       const char *fmt, ...)
{
	char line[1024];
	va_list ap;

	(void)self;
	(void)level;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
}

static void SMIS_PRINTF(3, 4) fake_config_error(struct smis_config *cfg, const char *key,
						const char *fmt, ...)
{
	va_list ap;

	cfg->errors++;
	fprintf(stderr, "fuzz: configuration error at %s: ", key ? key : "(block)");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static int64_t fake_now_ms(void)
{
	return FUZZ_NOW_MS;
}

static int64_t fake_monotonic_ms(void)
{
	return FUZZ_MONOTONIC_MS;
}

static const struct smis_core_api fake_api = FAKE_CORE_API(fake_log, fake_config_error, fake_now_ms, fake_monotonic_ms);

static struct smis_instance self;

const struct smis_content fuzz_content[FUZZ_N_CONTENT] = {
	{ .lang = "nl", .title = "Uw afspraak", .body = "<p>Morgen om 10 uur</p>",
	  .body_text = "Morgen om 10 uur", .body_is_html = true },
	{ .lang = "fr", .title = "Votre rendez-vous", .body = "Demain à 10 h",
	  .body_text = "Demain à 10 h" },
};

const struct smis_channel_ops *fuzz_channel_load(const char *path, const struct fake_kv *kv,
						 size_t n, void **state)
{
	struct smis_config cfg = { .kv = kv, .n = n };
	/* Never closed: libFuzzer's coverage and leak reports need the
	 * module's code mapped until the end. */
	void *dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	const struct smis_plugin_descriptor *desc = dl ? dlsym(dl, SMIS_PLUGIN_SYMBOL) : NULL;
	const struct smis_channel_ops *ops = desc ? desc->channel : NULL;

	if (!ops || !ops->create || !ops->start || !ops->resume || !ops->inbound) {
		fprintf(stderr, "fuzz: cannot load the channel plugin %s: %s\n", path,
			dl ? "no usable descriptor" : dlerror());
		exit(1);
	}
	*state = NULL;
	if (ops->create(&fake_api, &self, &cfg, state) != 0 || !*state || cfg.errors) {
		fprintf(stderr, "fuzz: %s refused the harness's configuration\n", path);
		exit(1);
	}
	return ops;
}

/* ------------------------------------------------------------------ */
/* Webhook requests                                                    */
/* ------------------------------------------------------------------ */

static const char *inbound_lookup(const struct smis_inbound *in, const char *name, bool query)
{
	const struct fuzz_inbound *f = in->core_private;

	if (!query && f->forced_name && strcasecmp(name, f->forced_name) == 0)
		return f->forced_value;
	for (size_t i = 0; i < f->n_fields; i++) {
		if (f->is_query[i] != query)
			continue;
		if (query ? strcmp(f->names[i], name) == 0 : strcasecmp(f->names[i], name) == 0)
			return f->values[i];
	}
	return NULL;
}

static const char *inbound_header(const struct smis_inbound *in, const char *name)
{
	return inbound_lookup(in, name, false);
}

static const char *inbound_query(const struct smis_inbound *in, const char *name)
{
	return inbound_lookup(in, name, true);
}

/* Cuts the line at *p (up to end) and moves *p past it; NULL at the end. */
static char *next_line(char **p, char *end)
{
	char *line = *p, *nl;

	if (line >= end)
		return NULL;
	nl = memchr(line, '\n', (size_t)(end - line));
	if (nl) {
		*nl = '\0';
		*p = nl + 1;
	} else {
		*p = end;
	}
	return line;
}

/* Splits off the first word of *s at a space; returns it. */
static char *next_word(char **s)
{
	char *w = *s, *sp = strchr(w, ' ');

	if (sp) {
		*sp = '\0';
		*s = sp + 1;
	} else {
		*s = w + strlen(w);
	}
	return w;
}

int fuzz_inbound_parse(struct fuzz_inbound *f, const uint8_t *data, size_t size)
{
	char *p, *end, *line, *rest;
	size_t body_len;

	memset(f, 0, sizeof(*f));
	f->buf = fuzz_cstr(data, size);
	if (!f->buf)
		return -ENOMEM;
	p = f->buf;
	end = f->buf + size;
	rest = next_line(&p, end);
	if (!rest)
		rest = end; /* "" */
	f->in.method = next_word(&rest);
	f->in.path_rest = next_word(&rest);
	f->in.remote_addr = rest;
	while ((line = next_line(&p, end)) != NULL && *line) {
		char *sep;

		if (f->n_fields == FUZZ_MAX_FIELDS)
			continue;
		f->is_query[f->n_fields] = *line == '?';
		if (*line == '?')
			line++;
		sep = strchr(line, f->is_query[f->n_fields] ? '=' : ':');
		f->names[f->n_fields] = line;
		f->values[f->n_fields] = "";
		if (sep) {
			*sep++ = '\0';
			while (!f->is_query[f->n_fields] && *sep == ' ')
				sep++;
			f->values[f->n_fields] = sep;
		}
		f->n_fields++;
	}
	/* The body in a buffer of its own exact size, so that reading past
	 * its NUL is caught as under the core. */
	body_len = (size_t)(end - p);
	f->body = fuzz_cstr((const uint8_t *)p, body_len);
	if (!f->body) {
		fuzz_inbound_free(f);
		return -ENOMEM;
	}
	f->in.size = sizeof(f->in);
	f->in.body = f->body;
	f->in.body_len = body_len;
	f->in.header = inbound_header;
	f->in.query = inbound_query;
	f->in.core_private = f;
	return 0;
}

void fuzz_inbound_free(struct fuzz_inbound *f)
{
	free(f->buf);
	free(f->body);
	f->buf = f->body = NULL;
}

/* ------------------------------------------------------------------ */
/* Upstream answers                                                    */
/* ------------------------------------------------------------------ */

static void response_parse(struct smis_http_response *resp, char **bufp, const uint8_t *data,
			   size_t size)
{
	char *buf = fuzz_cstr(data, size), *p, *line;

	*bufp = buf;
	memset(resp, 0, sizeof(*resp));
	resp->size = sizeof(*resp);
	resp->elapsed_ms = 12;
	resp->body = "";
	if (!buf) {
		resp->transport = SMIS_TRANSPORT_ERROR;
		return;
	}
	p = buf;
	line = next_line(&p, buf + size);
	if (line && *line >= '0' && *line <= '9') {
		int digits = 0;

		resp->transport = SMIS_TRANSPORT_OK;
		for (; digits < 3 && *line >= '0' && *line <= '9'; digits++, line++)
			resp->status = resp->status * 10 + (*line - '0');
		if (*line == ' ' && line[1])
			resp->content_type = line + 1;
		resp->body = p;
		resp->body_len = (size_t)(buf + size - p);
	} else {
		/* As the core reports a failed transfer: no status, no body. */
		const char *text = line && *line ? line + 1 : "";

		resp->transport = !line ? SMIS_TRANSPORT_ERROR :
				  *line == 'T' ? SMIS_TRANSPORT_TIMEOUT :
				  *line == 'C' ? SMIS_TRANSPORT_CONNECT : SMIS_TRANSPORT_ERROR;
		resp->error = *text ? text : NULL;
	}
}

void fuzz_responses_parse(struct fuzz_responses *r, const uint8_t *data, size_t size)
{
	const size_t seplen = strlen(FUZZ_RESPONSE_SEP);
	const uint8_t *p = data, *end = data + size;

	memset(r, 0, sizeof(*r));
	while (r->n < FUZZ_MAX_RESPONSES) {
		const uint8_t *sep = memmem(p, (size_t)(end - p), FUZZ_RESPONSE_SEP, seplen);
		const uint8_t *stop = sep ? sep : end;

		response_parse(&r->resp[r->n], &r->bufs[r->n], p, (size_t)(stop - p));
		r->n++;
		if (!sep)
			break;
		p = sep + seplen;
	}
}

void fuzz_responses_free(struct fuzz_responses *r)
{
	for (size_t i = 0; i < r->n; i++)
		free(r->bufs[i]);
	r->n = r->next = 0;
}

/* ------------------------------------------------------------------ */
/* Running operations and checking their results                       */
/* ------------------------------------------------------------------ */

#define TERMINATED(field) (memchr((field), '\0', sizeof(field)) != NULL)

void fuzz_check_report(const struct smis_report *r)
{
	FUZZ_CHECK(TERMINATED(r->provider_ref) && r->provider_ref[0] != '\0');
	FUZZ_CHECK(TERMINATED(r->device));
	FUZZ_CHECK(TERMINATED(r->detail));
	FUZZ_CHECK(r->status >= SMIS_REPORT_PENDING && r->status <= SMIS_REPORT_FAILED);
}

/* devices_json: "a JSON array [{"device_id","public_key","key_alg"}]". */
static void check_devices_json(const char *text)
{
	struct json_object *a = json_tokener_parse(text), *v;

	FUZZ_CHECK(json_object_is_type(a, json_type_array));
	for (size_t i = 0; i < json_object_array_length(a); i++) {
		struct json_object *d = json_object_array_get_idx(a, i);
		static const char *const keys[] = { "device_id", "public_key", "key_alg" };

		for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++)
			FUZZ_CHECK(json_object_object_get_ex(d, keys[k], &v) &&
				   json_object_is_type(v, json_type_string));
	}
	json_object_put(a);
}

void fuzz_check_outcome(const struct smis_outcome *out)
{
	FUZZ_CHECK(out->kind == SMIS_OUTCOME_OK || out->kind == SMIS_OUTCOME_TEMPFAIL ||
		   out->kind == SMIS_OUTCOME_PERMFAIL);
	FUZZ_CHECK(TERMINATED(out->error) && TERMINATED(out->detail) &&
		   TERMINATED(out->provider_ref) && TERMINATED(out->language) &&
		   TERMINATED(out->sms_encoding));
	/* "Stable machine-readable reason when kind is a failure". */
	if (out->kind != SMIS_OUTCOME_OK)
		FUZZ_CHECK(out->error[0] != '\0');
	FUZZ_CHECK(out->reach >= SMIS_REACH_UNKNOWN && out->reach <= SMIS_REACH_NOTIFICATIONS_OFF);
	FUZZ_CHECK(out->n_reports <= sizeof(out->reports) / sizeof(out->reports[0]));
	for (size_t i = 0; i < out->n_reports; i++)
		fuzz_check_report(&out->reports[i]);
	if (out->devices_json)
		check_devices_json(out->devices_json);
}

int fuzz_channel_run(const struct smis_channel_ops *ops, void *state, enum smis_op op,
		     const struct smis_message *msg, void **call, struct fuzz_responses *r,
		     struct smis_outcome *out)
{
	struct smis_http_request *req = NULL;
	int rc;

	memset(out, 0, sizeof(*out));
	rc = ops->start(state, op, msg, call, &req, out);
	for (;;) {
		FUZZ_CHECK(rc == SMIS_STEP_DONE || (rc == SMIS_STEP_REQUEST && req != NULL) ||
			   (rc < 0 && rc >= -4095));
		if (rc != SMIS_STEP_REQUEST)
			break;
		/* The core owns a request once it is handed back. */
		fake_http_request_free(req);
		req = NULL;
		if (r->next == r->n)
			break;
		rc = ops->resume(state, op, msg, call, &r->resp[r->next++], &req, out);
	}
	if (rc == SMIS_STEP_DONE)
		fuzz_check_outcome(out);
	return rc;
}

void fuzz_check_requests_freed(void)
{
	/* A request the plugin made and did not hand back is lost. */
	FUZZ_CHECK(fake_requests_made == fake_requests_freed);
}
