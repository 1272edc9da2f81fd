/*
 * fakechan - a channel plugin for the core's unit tests: its capabilities
 * come from its configuration ("caps"), and it answers every operation
 * from configured outcomes without any HTTP, so strategy chains can be run
 * through the real dispatcher logic deterministically.
 */
#include <errno.h>
#include <string.h>

#include <smis/smis-plugin.h>

struct state {
	const struct smis_core_api *api;
	long long reach;        /* enum smis_reach returned by LOOKUP */
	long long send_outcome; /* enum smis_outcome_kind returned by SEND */
	char language[8];       /* returned by LOOKUP, as the plugin gives it */
};

static int create(const struct smis_core_api *api, struct smis_instance *self,
		  struct smis_config *cfg, void **out)
{
	struct state *st = api->alloc(sizeof(*st));
	char *caps = NULL, *language = NULL;
	if (!st)
		return -ENOMEM;
	st->api = api;
	st->reach = SMIS_REACH_YES;
	st->send_outcome = SMIS_OUTCOME_OK;
	api->config_int(cfg, "reach", &st->reach);
	api->config_int(cfg, "send_outcome", &st->send_outcome);
	if (api->config_string(cfg, "caps", &caps) == 0) /* read so it is "known" */
		api->free(caps);
	/* Any bytes, as a third-party plugin may give them. */
	SMIS_OUTCOME_SET(st->language, "fr");
	if (api->config_string(cfg, "language", &language) == 0) {
		SMIS_OUTCOME_SET(st->language, language);
		api->free(language);
	}
	*out = st;
	return 0;
}

static void destroy(void *p)
{
	struct state *st = p;
	if (st)
		st->api->free(st);
}

static int start(void *p, enum smis_op op, const struct smis_message *msg, void **call,
		 struct smis_http_request **req, struct smis_outcome *out)
{
	struct state *st = p;
	(void)msg;
	(void)call;
	(void)req;
	if (op == SMIS_OP_LOOKUP) {
		out->kind = SMIS_OUTCOME_OK;
		out->reach = (enum smis_reach)st->reach;
		SMIS_OUTCOME_SET(out->language, st->language);
	} else {
		out->kind = (enum smis_outcome_kind)st->send_outcome;
		if (out->kind == SMIS_OUTCOME_OK)
			SMIS_OUTCOME_SET(out->provider_ref, "fake-1");
		else
			SMIS_OUTCOME_SET(out->error, "fake_failure");
	}
	return SMIS_STEP_DONE;
}

static int resume(void *p, enum smis_op op, const struct smis_message *msg, void **call,
		  const struct smis_http_response *resp, struct smis_http_request **req,
		  struct smis_outcome *out)
{
	(void)p; (void)op; (void)msg; (void)call; (void)resp; (void)req;
	out->kind = SMIS_OUTCOME_TEMPFAIL;
	return SMIS_STEP_DONE;
}

static const struct smis_channel_ops ops = {
	.size = sizeof(struct smis_channel_ops),
	.create = create,
	.destroy = destroy,
	.start = start,
	.resume = resume,
};

SMIS_PLUGIN_EXPORT const struct smis_plugin_descriptor smis_plugin_descriptor = {
	.abi_version = SMIS_PLUGIN_ABI_VERSION,
	.size = sizeof(struct smis_plugin_descriptor),
	.kind = SMIS_PLUGIN_CHANNEL,
	.name = "fakechan",
	.version = "test",
	.description = "deterministic channel for unit tests",
	.caps = SMIS_CAP_LOOKUP | SMIS_CAP_SEND | SMIS_CAP_APP,
	.channel = &ops,
};
