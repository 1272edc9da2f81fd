/*
 * sms_only - send by SMS. Delivered: the chain stops; failed: the next
 * step (if any) gets its turn.
 *
 * Settings: channel = "ringring" (a channel that can send).
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
	if (strategy_channel_setting(api, self, cfg, "channel", "ringring", SMIS_CAP_SEND,
				     &st->channel) != 0) {
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
	const struct smis_attempt_view *send = strategy_find(job, st->channel, SMIS_OP_SEND);

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
	.name = "sms_only",
	.version = "1.0",
	.description = "SMS only",
	.strategy = &ops,
};
