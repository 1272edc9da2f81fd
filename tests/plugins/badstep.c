/*
 * A strategy that misbehaves on purpose, for the dispatcher's
 * strategy_error path. Setting `mode`: "verdict" answers a verdict that
 * does not exist; "channel" asks to send on a channel that does not exist;
 * "late" first sends on `channel`, then answers a bad verdict (the message
 * was sent: the error must not turn it into a failure).
 */
#include <errno.h>
#include <string.h>

#include <smis/smis-plugin.h>

struct state {
	const struct smis_core_api *api;
	char *mode, *channel;
};

static int create(const struct smis_core_api *api, struct smis_instance *self, struct smis_config *cfg,
		  void **out)
{
	struct state *st = api->alloc(sizeof(*st));
	(void)self;
	if (!st)
		return -ENOMEM;
	st->api = api;
	if (api->config_string(cfg, "mode", &st->mode) != 0 ||
	    (api->config_string(cfg, "channel", &st->channel) != 0 && strcmp(st->mode, "late") == 0)) {
		api->free(st->mode);
		api->free(st);
		return -EINVAL;
	}
	*out = st;
	return 0;
}

static void destroy(void *p)
{
	struct state *st = p;
	st->api->free(st->mode);
	st->api->free(st->channel);
	st->api->free(st);
}

static int decide(void *p, const struct smis_job_view *job, struct smis_action *act)
{
	struct state *st = p;
	if (strcmp(st->mode, "channel") == 0) {
		act->op = SMIS_OP_SEND;
		act->channel = "nowhere";
		return SMIS_VERDICT_ACT;
	}
	if (strcmp(st->mode, "late") == 0 && job->n_attempts == 0) {
		act->op = SMIS_OP_SEND;
		act->channel = st->channel;
		return SMIS_VERDICT_ACT;
	}
	return 7; /* no such verdict */
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
	.name = "badstep",
	.version = "1.0",
	.description = "test: invalid verdicts and unknown channels",
	.strategy = &ops,
};
