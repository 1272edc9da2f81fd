/*
 * govapp_first - the app when the citizen has it (installed, notifications
 * on); SMS otherwise, and SMS when the app lookup or send fails.
 *
 * Settings: app = "govapp", sms = "ringring",
 *           fallback_on_app_failure = true (SMS when the app send fails).
 */
#include <stdbool.h>
#include <stdlib.h>

#include "../strategy_common.h"

struct state {
	const struct smis_core_api *api;
	char *app;
	char *sms;
	bool fallback_on_failure;
};

static void destroy(void *p)
{
	struct state *st = p;
	if (!st)
		return;
	st->api->free(st->app);
	st->api->free(st->sms);
	st->api->free(st);
}

static int create(const struct smis_core_api *api, struct smis_instance *self,
		  struct smis_config *cfg, void **out)
{
	struct state *st = api->alloc(sizeof(*st));
	int rc;
	if (!st)
		return -ENOMEM;
	st->api = api;
	st->fallback_on_failure = true;
	rc = strategy_channel_setting(api, self, cfg, "app", "govapp", SMIS_CAP_LOOKUP | SMIS_CAP_SEND, &st->app);
	if (strategy_channel_setting(api, self, cfg, "sms", "ringring", SMIS_CAP_SEND, &st->sms) != 0)
		rc = -EINVAL;
	int b = api->config_bool(cfg, "fallback_on_app_failure", &st->fallback_on_failure);
	if (b == -EINVAL) {
		api->config_error(cfg, "fallback_on_app_failure", "must be true or false");
		rc = -EINVAL;
	}
	if (rc != 0) {
		destroy(st);
		return -EINVAL;
	}
	*out = st;
	return 0;
}

static int decide(void *p, const struct smis_job_view *job, struct smis_action *act)
{
	struct state *st = p;
	const struct smis_attempt_view *lookup = strategy_find(job, st->app, SMIS_OP_LOOKUP);
	const struct smis_attempt_view *app = strategy_find(job, st->app, SMIS_OP_SEND);
	const struct smis_attempt_view *sms = strategy_find(job, st->sms, SMIS_OP_SEND);

	if (!lookup) {
		act->op = SMIS_OP_LOOKUP;
		act->channel = st->app;
		return SMIS_VERDICT_ACT;
	}
	if (strategy_ok(lookup) && lookup->outcome->reach == SMIS_REACH_YES) {
		if (!app) {
			act->op = SMIS_OP_SEND;
			act->channel = st->app;
			return SMIS_VERDICT_ACT;
		}
		if (strategy_ok(app))
			return SMIS_VERDICT_STOP;
		if (!st->fallback_on_failure)
			return SMIS_VERDICT_NEXT;
	}
	if (!sms) {
		act->op = SMIS_OP_SEND;
		act->channel = st->sms;
		return SMIS_VERDICT_ACT;
	}
	return strategy_ok(sms) ? SMIS_VERDICT_STOP : SMIS_VERDICT_NEXT;
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
	.name = "govapp_first",
	.version = "1.0",
	.description = "App when reachable, SMS otherwise or when the app fails",
	.strategy = &ops,
};
