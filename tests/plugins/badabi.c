/* A plugin built against a future ABI: the loader must refuse it. */
#include <smis/smis-plugin.h>

static int create(const struct smis_core_api *a, struct smis_instance *s, struct smis_config *c, void **o)
{ (void)a; (void)s; (void)c; *o = 0; return 0; }
static void destroy(void *p) { (void)p; }
static int decide(void *p, const struct smis_job_view *j, struct smis_action *a)
{ (void)p; (void)j; (void)a; return SMIS_VERDICT_STOP; }
static const struct smis_strategy_ops ops = { sizeof(ops), create, destroy, decide };
SMIS_PLUGIN_EXPORT const struct smis_plugin_descriptor smis_plugin_descriptor = {
	.abi_version = SMIS_PLUGIN_ABI_VERSION + 1,
	.size = sizeof(struct smis_plugin_descriptor),
	.kind = SMIS_PLUGIN_STRATEGY,
	.name = "badabi",
	.strategy = &ops,
};
