/* fake_config.c - see fake_config.h. */
#include "fake_config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static const struct fake_kv *cfg_find(const struct smis_config *cfg, const char *key)
{
	for (size_t i = 0; i < cfg->n; i++)
		if (strcmp(cfg->kv[i].key, key) == 0)
			return &cfg->kv[i];
	return NULL;
}

const char FAKE_NO_MEMORY[] = "(no memory for the copy)";

int fake_config_string(struct smis_config *cfg, const char *key, char **out)
{
	const struct fake_kv *e = cfg_find(cfg, key);

	*out = NULL;
	if (!e)
		return -ENOENT;
	if (!e->str)
		return -EINVAL;
	if (e->str == FAKE_NO_MEMORY)
		return -ENOMEM;
	*out = strdup(e->str);
	return *out ? 0 : -ENOMEM;
}

int fake_config_int(struct smis_config *cfg, const char *key, long long *out)
{
	const struct fake_kv *e = cfg_find(cfg, key);

	if (!e)
		return -ENOENT;
	if (e->str)
		return -EINVAL;
	*out = e->num;
	return 0;
}

int fake_config_bool(struct smis_config *cfg, const char *key, bool *out)
{
	(void)cfg;
	(void)key;
	(void)out;
	return -ENOENT;
}
