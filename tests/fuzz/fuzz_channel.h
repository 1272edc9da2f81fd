/*
 * fuzz_channel.h - what fuzz_ringring and fuzz_govapp share: a fake core
 * API (configuration from a table, a fixed clock, HTTP requests captured by
 * tests/unit/fake_core.c and never performed), the loading of a channel
 * module as smisd loads it, the two shapes of untrusted input they cut their
 * bytes into (a webhook request, a series of upstream answers), and the
 * checks on what a plugin returns that smis-plugin.h promises for every
 * channel.
 */
#ifndef SMIS_FUZZ_CHANNEL_H
#define SMIS_FUZZ_CHANNEL_H

#include <stddef.h>
#include <stdint.h>

#include <smis/smis-plugin.h>

#include "fake_config.h" /* struct fake_kv: the instance's settings */

/* The fake core's wall clock (epoch ms) and monotonic clock: fixed, so that
 * a run is reproducible and a LOOKUP is always fresh for the SEND after it. */
#define FUZZ_NOW_MS 1714566938000LL
#define FUZZ_MONOTONIC_MS 1000000LL


/* The content of the targets' message: an HTML body in nl, text in fr. */
#define FUZZ_N_CONTENT 2
extern const struct smis_content fuzz_content[FUZZ_N_CONTENT];

/* dlopen()s the module at `path` and creates one instance from `kv`; exits
 * the process when that fails (a harness that tests nothing must not pass). */
const struct smis_channel_ops *fuzz_channel_load(const char *path, const struct fake_kv *kv,
						 size_t n, void **state);

/*
 * A webhook request cut from untrusted bytes, HTTP-like:
 *   METHOD PATH_REST REMOTE_ADDR\n      (missing words are "", as the core
 *                                        passes them)
 *   Name: value\n                       a header (looked up case-insensitively)
 *   ?name=value\n                       a query argument (case-sensitive)
 *   \n
 *   body                                the rest, any bytes
 * `in` is ready for ops->inbound; a harness may override its fields.
 */
#define FUZZ_MAX_FIELDS 16
struct fuzz_inbound {
	struct smis_inbound in;
	char *buf; /* the NUL-separated copy that every string points into */
	char *body;
	const char *names[FUZZ_MAX_FIELDS], *values[FUZZ_MAX_FIELDS];
	bool is_query[FUZZ_MAX_FIELDS];
	size_t n_fields;
	/* When set, the value of every header of this name (the harness's
	 * own credential, which wins over the input's). */
	const char *forced_name, *forced_value;
};

int fuzz_inbound_parse(struct fuzz_inbound *f, const uint8_t *data, size_t size);
void fuzz_inbound_free(struct fuzz_inbound *f);

/* Checks one report a plugin filled (from a webhook or a STATUS poll). */
void fuzz_check_report(const struct smis_report *r);

/*
 * Upstream answers, separated by FUZZ_RESPONSE_SEP. Each is a first line
 * then the body (the rest, any bytes). The first line is the HTTP status in
 * up to three digits, optionally followed by a space and a Content-Type; or
 * a transport failure: 'T' timeout, 'C' connect, anything else another
 * failure, the rest of the line being the core's error text.
 */
#define FUZZ_RESPONSE_SEP "\n--\n"
#define FUZZ_MAX_RESPONSES 6
struct fuzz_responses {
	struct smis_http_response resp[FUZZ_MAX_RESPONSES];
	char *bufs[FUZZ_MAX_RESPONSES];
	size_t n, next;
};

void fuzz_responses_parse(struct fuzz_responses *r, const uint8_t *data, size_t size);
void fuzz_responses_free(struct fuzz_responses *r);

/*
 * Runs `op` for `msg`: start, then resume with the next answer for as long
 * as the plugin asks for a request and answers remain. Every request handed
 * back is freed as the core frees it. Checks each return value (DONE,
 * REQUEST with a request, or a negative errno) and, on DONE, the outcome
 * (fuzz_check_outcome). Returns the last return value; out->devices_json is
 * the caller's to free.
 */
int fuzz_channel_run(const struct smis_channel_ops *ops, void *state, enum smis_op op,
		     const struct smis_message *msg, void **call, struct fuzz_responses *r,
		     struct smis_outcome *out);

/* Checks a filled outcome against what smis-plugin.h says of its fields. */
void fuzz_check_outcome(const struct smis_outcome *out);

/* Checks that every request a plugin made was freed (once per input). */
void fuzz_check_requests_freed(void);

#endif
