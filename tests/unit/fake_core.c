/*
 * fake_core.c - shared parts of the channel plugin tests' fake core (see
 * fake_core.h).
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "fake_core.h"

int fake_requests_made, fake_requests_freed;

struct smis_http_request *fake_http_request_new(const char *method, const char *url)
{
	struct smis_http_request *r = calloc(1, sizeof(*r));

	if (!r)
		return NULL;
	r->method = strdup(method);
	r->url = strdup(url);
	fake_requests_made++;
	return r;
}

int fake_http_request_header(struct smis_http_request *r, const char *name, const char *value)
{
	size_t n = strlen(name) + strlen(value) + 3;

	if (r->n_headers == FAKE_MAX_HEADERS)
		return -E2BIG;
	r->headers[r->n_headers] = malloc(n);
	if (!r->headers[r->n_headers])
		return -ENOMEM;
	snprintf(r->headers[r->n_headers++], n, "%s: %s", name, value);
	return 0;
}

int fake_http_request_body(struct smis_http_request *r, const char *body, size_t len)
{
	free(r->body);
	r->body = malloc(len + 1);
	if (!r->body)
		return -ENOMEM;
	memcpy(r->body, body, len);
	r->body[len] = '\0';
	r->body_len = len;
	return 0;
}

void fake_http_request_free(struct smis_http_request *r)
{
	if (!r)
		return;
	fake_requests_freed++;
	for (size_t i = 0; i < r->n_headers; i++)
		free(r->headers[i]);
	free(r->method);
	free(r->url);
	free(r->body);
	free(r);
}

const char *fake_http_header(const struct smis_http_request *r, const char *name)
{
	size_t n = strlen(name);

	for (size_t i = 0; i < r->n_headers; i++)
		if (strncasecmp(r->headers[i], name, n) == 0 && r->headers[i][n] == ':')
			return r->headers[i] + n + 2;
	return NULL;
}

int fake_channel_caps(struct smis_instance *self, const char *name, unsigned *caps)
{
	(void)self;
	(void)name;
	(void)caps;
	return -ENOENT;
}

void *fake_alloc(size_t n)
{
	return calloc(1, n ? n : 1);
}
