/*
 * round_robin.c - example SMIS strategy plugin, built out of tree against
 * the installed <smis/smis-plugin.h> only (see README.md and
 * docs/plugin-guide.md).
 *
 * It spreads messages over several equivalent channels (two SMS providers,
 * two webhook receivers, ...): message 1 goes through the first channel,
 * message 2 through the second, and so on. When a send fails, the message
 * tries the following channels in turn (each once) before the step gives
 * up and hands over to the next step of the chain.
 *
 * Settings (a step of a strategy):
 *   channels = "sms-a, sms-b";   required: 1-8 channel names that can send
 *   failover = true;             optional (default true): on failure, try
 *                                the other channels before giving up
 *
 * decide() is the only function that runs while messages flow. The rotation
 * counter is the one piece of state it changes: that needs no lock because
 * the core calls decide() from its dispatcher thread only, one call at a
 * time (smis-plugin.h, lifecycle step 3). Everything else decide() needs it
 * reads from the job view, so each message's own history (which channel it
 * started on, which ones failed) never depends on the counter having moved
 * on since. A reload creates a new instance: the rotation starts again.
 */
#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include <smis/smis-plugin.h>

#define RR_VERSION "1.0.0"
#define RR_MAX_CHANNELS 8

struct round_robin {
	const struct smis_core_api *api;
	char *names[RR_MAX_CHANNELS]; /* channel instance names, owned */
	size_t n;
	bool failover;
	unsigned long next; /* rotation: dispatcher thread only */
};

static void rr_destroy(void *state)
{
	struct round_robin *rr = state;

	if (!rr)
		return;
	for (size_t i = 0; i < rr->n; i++)
		rr->api->free(rr->names[i]);
	rr->api->free(rr);
}

/* Add one trimmed name of the list; reports and returns false when it is
 * not a channel that can send, a duplicate, or one too many. */
static bool rr_add(struct round_robin *rr, struct smis_instance *self, struct smis_config *cfg,
		   const char *name, size_t len)
{
	const struct smis_core_api *api = rr->api;
	unsigned caps = 0;
	char *copy;

	if (len == 0) {
		api->config_error(cfg, "channels", "an empty channel name in the list");
		return false;
	}
	if (rr->n == RR_MAX_CHANNELS) {
		api->config_error(cfg, "channels", "at most %d channels", RR_MAX_CHANNELS);
		return false;
	}
	copy = api->alloc(len + 1);
	if (!copy) {
		api->config_error(cfg, NULL, "out of memory");
		return false;
	}
	memcpy(copy, name, len);
	copy[len] = '\0';
	for (size_t i = 0; i < rr->n; i++)
		if (strcmp(rr->names[i], copy) == 0) {
			api->config_error(cfg, "channels", "channel '%s' is listed twice", copy);
			api->free(copy);
			return false;
		}
	/* Valid during create only: check names now, not when a message
	 * is waiting. */
	if (api->channel_caps(self, copy, &caps) != 0) {
		api->config_error(cfg, "channels", "no channel named '%s'", copy);
		api->free(copy);
		return false;
	}
	if (!(caps & SMIS_CAP_SEND)) {
		api->config_error(cfg, "channels", "channel '%s' cannot send messages", copy);
		api->free(copy);
		return false;
	}
	rr->names[rr->n++] = copy;
	return true;
}

static int rr_create(const struct smis_core_api *api, struct smis_instance *self,
		     struct smis_config *cfg, void **state)
{
	struct round_robin *rr = api->alloc(sizeof(*rr));
	char *list = NULL;
	bool ok = true;
	int r, rc = -EINVAL;

	if (!rr)
		return -ENOMEM;
	rr->api = api;
	rr->failover = true;
	/* The core's accessors know strings, integers and booleans: a list
	 * of names is one comma-separated string. */
	r = api->config_string(cfg, "channels", &list);
	if (r == -ENOENT) {
		api->config_error(cfg, NULL, "'channels' is required, e.g. channels = \"sms-a, sms-b\";");
		ok = false;
	} else if (r != 0) {
		api->config_error(cfg, "channels", "'channels' must be a string of channel names");
		ok = false;
	}
	r = api->config_bool(cfg, "failover", &rr->failover);
	if (r == -EINVAL) {
		api->config_error(cfg, "failover", "'failover' must be true or false");
		ok = false;
	}
	for (const char *p = list; ok && p;) {
		const char *comma = strchr(p, ',');
		const char *a = p, *b = comma ? comma : p + strlen(p);
		while (a < b && (*a == ' ' || *a == '\t'))
			a++;
		while (b > a && (b[-1] == ' ' || b[-1] == '\t'))
			b--;
		ok = rr_add(rr, self, cfg, a, (size_t)(b - a));
		p = comma ? comma + 1 : NULL;
	}
	if (!ok)
		goto out;
	*state = rr;
	rr = NULL;
	rc = 0;
out:
	api->free(list);
	rr_destroy(rr);
	return rc;
}

static size_t rr_index(const struct round_robin *rr, const char *name)
{
	for (size_t i = 0; i < rr->n; i++)
		if (strcmp(rr->names[i], name) == 0)
			return i;
	return 0;
}

static int rr_decide(void *state, const struct smis_job_view *job, struct smis_action *action)
{
	struct round_robin *rr = state;
	const struct smis_attempt_view *last = NULL;
	size_t tried = 0, i;

	/* What this step did for this message so far. */
	for (i = job->step_first_attempt; i < job->n_attempts; i++)
		if (job->attempts[i].op == SMIS_OP_SEND) {
			last = &job->attempts[i];
			tried++;
		}
	if (!last) {
		i = rr->next++ % rr->n;
	} else if (last->outcome->kind == SMIS_OUTCOME_OK) {
		return SMIS_VERDICT_STOP;
	} else if (!rr->failover || tried >= rr->n) {
		return SMIS_VERDICT_NEXT;
	} else {
		/* The channel after the one that failed: starting points
		 * rotate, so n tries reach each channel once. */
		i = (rr_index(rr, last->channel) + 1) % rr->n;
	}
	action->op = SMIS_OP_SEND;
	action->channel = rr->names[i];
	return SMIS_VERDICT_ACT;
}

static const struct smis_strategy_ops rr_ops = {
	.size = sizeof(struct smis_strategy_ops),
	.create = rr_create,
	.destroy = rr_destroy,
	.decide = rr_decide,
};

SMIS_PLUGIN_EXPORT const struct smis_plugin_descriptor smis_plugin_descriptor = {
	.abi_version = SMIS_PLUGIN_ABI_VERSION,
	.size = sizeof(struct smis_plugin_descriptor),
	.kind = SMIS_PLUGIN_STRATEGY,
	.name = "round_robin",
	.version = RR_VERSION,
	.description = "Example: spread messages over channels in turn, failing over to the others",
	.strategy = &rr_ops,
};
