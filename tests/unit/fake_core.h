/*
 * fake_core.h - the parts of a fake smis_core_api that the channel plugin
 * tests share: HTTP requests are captured (never performed) in a struct the
 * test can read, allocation is calloc, and no other channel exists. Each
 * test keeps its own configuration table, clock and log, which differ.
 */
#ifndef SMIS_TEST_FAKE_CORE_H
#define SMIS_TEST_FAKE_CORE_H

#include <stddef.h>
#include <stdlib.h> /* free, in FAKE_CORE_API */

#include <smis/smis-plugin.h>

#define FAKE_MAX_HEADERS 16

/* The core's opaque request type, made concrete for the tests. */
struct smis_http_request {
	char *method;
	char *url;
	char *headers[FAKE_MAX_HEADERS]; /* "Name: value" */
	size_t n_headers;
	char *body;
	size_t body_len;
};

/* Requests made and freed so far: a plugin must free every one it made. */
extern int fake_requests_made, fake_requests_freed;

struct smis_http_request *fake_http_request_new(const char *method, const char *url);
int fake_http_request_header(struct smis_http_request *r, const char *name, const char *value);
int fake_http_request_body(struct smis_http_request *r, const char *body, size_t len);
void fake_http_request_free(struct smis_http_request *r);

/* The value of header `name` (case-insensitive), or NULL. */
const char *fake_http_header(const struct smis_http_request *r, const char *name);

int fake_channel_caps(struct smis_instance *self, const char *name, unsigned *caps);
void *fake_alloc(size_t n);

/* The core API table a test hands its plugin: the fakes above, the
 * configuration accessors fake_config_string/_int/_bool in scope (those of
 * fake_config.h, or the test's own of the same names), and the test's own
 * log, config_error and clocks, which differ from test to test. */
#define FAKE_CORE_API(log_fn, config_error_fn, now_fn, monotonic_fn)                \
	{                                                                          \
		.size = sizeof(struct smis_core_api),                              \
		.abi_version = SMIS_PLUGIN_ABI_VERSION,                            \
		.log = (log_fn),                                                   \
		.config_string = fake_config_string,                               \
		.config_int = fake_config_int,                                     \
		.config_bool = fake_config_bool,                                   \
		.config_error = (config_error_fn),                                 \
		.channel_caps = fake_channel_caps,                                 \
		.http_request_new = fake_http_request_new,                         \
		.http_request_header = fake_http_request_header,                   \
		.http_request_body = fake_http_request_body,                       \
		.http_request_free = fake_http_request_free,                       \
		.now_ms = (now_fn),                                                \
		.monotonic_ms = (monotonic_fn),                                    \
		.alloc = fake_alloc,                                               \
		.free = free,                                                      \
	}

#endif
