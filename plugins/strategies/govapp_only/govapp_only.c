/*
 * govapp_only - deliver through the app channel when the citizen has it
 * installed with notifications on; otherwise hand over to the next step
 * of the chain (or end the chain undelivered).
 *
 * Settings: channel = "govapp" (a channel with lookup + send).
 */
#include <stdlib.h>

#include "../strategy_common.h"

struct state {
	const struct smis_core_api *api;
	char *channel;
};

static int create(const struct smis_core_api *api, struct smis_instance *self,
		  struct smis_config *cfg, void **out)
{
	struct state *st = api->alloc(sizeof(*st));
	if (!st)
		return -ENOMEM;
	st->api = api;
	if (strategy_channel_setting(api, self, cfg, "channel", "govapp",
				     SMIS_CAP_LOOKUP | SMIS_CAP_SEND, &st->channel) != 0) {
		api->free(st->channel);
		api->free(st);
		return -EINVAL;
	}
	*out = st;
	return 0;
}

static void destroy(void *p)
{
	struct state *st = p;
	if (!st)
		return;
	st->api->free(st->channel);
	st->api->free(st);
}

static int decide(void *p, const struct smis_job_view *job, struct smis_action *act)
{
	struct state *st = p;
	const struct smis_attempt_view *lookup = strategy_find(job, st->channel, SMIS_OP_LOOKUP);
	const struct smis_attempt_view *send = strategy_find(job, st->channel, SMIS_OP_SEND);

	if (!lookup) {
		act->op = SMIS_OP_LOOKUP;
		act->channel = st->channel;
		return SMIS_VERDICT_ACT;
	}
	if (!strategy_ok(lookup) || lookup->outcome->reach != SMIS_REACH_YES)
		return SMIS_VERDICT_NEXT;
	if (!send) {
		act->op = SMIS_OP_SEND;
		act->channel = st->channel;
		return SMIS_VERDICT_ACT;
	}
	return strategy_ok(send) ? SMIS_VERDICT_STOP : SMIS_VERDICT_NEXT;
}

static const struct smis_strategy_ops ops = {
	.size = sizeof(struct smis_strategy_ops),
	.create = create,
	.destroy = destroy,
	.decide = decide,
};

SMIS_PLUGIN_EXPORT const struct smis_plugin_descriptor smis_plugin_descriptor = {
	.abi_version = SMIS_PLUGIN_ABI_VERSION,
	.size = sizeof(struct smis_plugin_descriptor),
	.kind = SMIS_PLUGIN_STRATEGY,
	.name = "govapp_only",
	.version = "1.0",
	.description = "App channel only, when the citizen is reachable there",
	.strategy = &ops,
};
