/*
 * strategy_common.h - small static helpers shared by the bundled strategy
 * plugins (header-only: each plugin stays a self-contained .so).
 */
#ifndef SMIS_STRATEGY_COMMON_H
#define SMIS_STRATEGY_COMMON_H

#include <errno.h>
#include <string.h>

#include <smis/smis-plugin.h>

/* The latest attempt of `op` on `channel` made during the current step. */
static inline const struct smis_attempt_view *
strategy_find(const struct smis_job_view *job, const char *channel, enum smis_op op)
{
	const struct smis_attempt_view *found = NULL;
	for (size_t i = job->step_first_attempt; i < job->n_attempts; i++)
		if (job->attempts[i].op == op && strcmp(job->attempts[i].channel, channel) == 0)
			found = &job->attempts[i];
	return found;
}

static inline int strategy_ok(const struct smis_attempt_view *a)
{
	return a && a->outcome->kind == SMIS_OUTCOME_OK;
}

/* Read channel setting `key` (default `dflt`) and check that the channel
 * exists with the capabilities `need`. Returns 0 or -EINVAL after having
 * reported the error. */
static inline int strategy_channel_setting(const struct smis_core_api *api,
					   struct smis_instance *self, struct smis_config *cfg,
					   const char *key, const char *dflt, unsigned need,
					   char **out)
{
	unsigned caps = 0;
	int rc = api->config_string(cfg, key, out);
	if (rc == -ENOENT) {
		size_t n = strlen(dflt) + 1;
		*out = api->alloc(n);
		if (!*out)
			return -ENOMEM;
		memcpy(*out, dflt, n);
	} else if (rc == -ENOMEM) {
		api->config_error(cfg, key, "out of memory reading '%s'", key);
		return -ENOMEM;
	} else if (rc != 0) {
		api->config_error(cfg, key, "'%s' must be a channel name (string)", key);
		return -EINVAL;
	}
	if (api->channel_caps(self, *out, &caps) != 0) {
		api->config_error(cfg, key, "'%s': no channel named '%s'", key, *out);
		return -EINVAL;
	}
	if ((caps & need) != need) {
		api->config_error(cfg, key, "'%s': channel '%s' cannot %s", key, *out,
				  (need & SMIS_CAP_LOOKUP) && !(caps & SMIS_CAP_LOOKUP)
					  ? "look citizens up" : "send messages");
		return -EINVAL;
	}
	return 0;
}

#endif
