/*
 * fake_config.h - a channel's configuration block for tests that drive a
 * plugin behind a fake core: a table of settings, each a string or an
 * integer, read through the core API's config_string / config_int /
 * config_bool (booleans are never set: they read as absent). Shared by the
 * GovApp plugin's unit test and the channel fuzz targets; each keeps its own
 * config_error, which differs (one records, one reports).
 */
#ifndef SMIS_TEST_FAKE_CONFIG_H
#define SMIS_TEST_FAKE_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

#include <smis/smis-plugin.h>

struct fake_kv {
	const char *key;
	const char *str; /* string value, or NULL for an integer */
	long long num;
};

/* The ABI's opaque configuration type, made concrete for the tests. */
struct smis_config {
	const struct fake_kv *kv;
	size_t n;
	int errors;              /* config_error calls */
	char last_error_key[64]; /* the key of the last one, "" for the block */
};

/* A setting whose str is this reads as a string the core had no memory
 * to copy: config_string answers -ENOMEM. */
extern const char FAKE_NO_MEMORY[];

int fake_config_string(struct smis_config *cfg, const char *key, char **out);
int fake_config_int(struct smis_config *cfg, const char *key, long long *out);
int fake_config_bool(struct smis_config *cfg, const char *key, bool *out);

#endif
