/*
 * problem.h - API errors as RFC 9457 problem details. Every failure the
 * API can answer has one stable `code`; docs/openapi.yaml lists them all.
 */
#ifndef SMISD_PROBLEM_H
#define SMISD_PROBLEM_H

#include <stddef.h>

struct smisd_problem {
	int status;         /* HTTP status */
	const char *code;   /* stable machine-readable code, e.g. "invalid_number" */
	char detail[256];   /* human text; never message content or full numbers */
	char field[64];     /* JSON pointer of the offending field or "" */
	int retry_after_s;  /* > 0 adds a Retry-After header */
};

void smisd_problem_set(struct smisd_problem *p, int status, const char *code,
		       const char *field, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));

/* Serialise as application/problem+json; caller frees with free(). NULL
 * when out of memory. */
char *smisd_problem_json(const struct smisd_problem *p, const char *request_id);

/* A constant body for `code` (type, title and code; no detail): what is
 * sent when smisd_problem_json() fails, so that a refusal never goes out
 * without its code. Not to be freed. */
const char *smisd_problem_static_json(const char *code);

/* Title for a code (the short, constant summary). */
const char *smisd_problem_title(const char *code);

#endif
