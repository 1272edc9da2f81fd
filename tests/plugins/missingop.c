/* A channel plugin without its mandatory `resume` op: refused at load. */
#include <smis/smis-plugin.h>

static int create(const struct smis_core_api *a, struct smis_instance *s, struct smis_config *c, void **o)
{ (void)a; (void)s; (void)c; *o = 0; return 0; }
static void destroy(void *p) { (void)p; }
static int start(void *p, enum smis_op op, const struct smis_message *m, void **c,
		 struct smis_http_request **r, struct smis_outcome *o)
{ (void)p; (void)op; (void)m; (void)c; (void)r; o->kind = SMIS_OUTCOME_OK; return SMIS_STEP_DONE; }
static const struct smis_channel_ops ops = {
	.size = sizeof(struct smis_channel_ops),
	.create = create,
	.destroy = destroy,
	.start = start,
};
SMIS_PLUGIN_EXPORT const struct smis_plugin_descriptor smis_plugin_descriptor = {
	.abi_version = SMIS_PLUGIN_ABI_VERSION,
	.size = sizeof(struct smis_plugin_descriptor),
	.kind = SMIS_PLUGIN_CHANNEL,
	.name = "missingop",
	.caps = SMIS_CAP_SEND,
	.channel = &ops,
};
