/*
 * test_round_robin.c - the round_robin strategy against a fake core API
 * table: dlopen the built round_robin.so as smisd does, create instances
 * from fake settings, and drive decide() with hand-made job views.
 *
 *   ./test_round_robin ./round_robin.so        (make check)
 */
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <smis/smis-plugin.h>

/* ---- the fake core: only what a strategy uses --------------------------- */

struct smis_config {
	const char *channels; /* NULL: absent */
	int failover;         /* -1: absent */
	int errors;
};

struct smis_instance {
	int unused;
};

static int fake_config_string(struct smis_config *cfg, const char *key, char **out)
{
	if (strcmp(key, "channels") != 0 || !cfg->channels)
		return -ENOENT;
	*out = strdup(cfg->channels);
	return *out ? 0 : -ENOMEM;
}

static int fake_config_bool(struct smis_config *cfg, const char *key, bool *out)
{
	if (strcmp(key, "failover") != 0 || cfg->failover < 0)
		return -ENOENT;
	*out = cfg->failover != 0;
	return 0;
}

static void fake_config_error(struct smis_config *cfg, const char *key, const char *fmt, ...)
{
	cfg->errors++;
}

/* The configuration generation: two channels that send, one that only
 * looks citizens up. */
static int fake_channel_caps(struct smis_instance *self, const char *name, unsigned *caps)
{
	if (strcmp(name, "a") == 0 || strcmp(name, "b") == 0 || strcmp(name, "c") == 0)
		*caps = SMIS_CAP_SEND | SMIS_CAP_SMS;
	else if (strcmp(name, "lookup-only") == 0)
		*caps = SMIS_CAP_LOOKUP;
	else
		return -ENOENT;
	return 0;
}

static void *fake_alloc(size_t n)
{
	return calloc(1, n ? n : 1);
}

static const struct smis_core_api api = {
	.size = sizeof(struct smis_core_api),
	.abi_version = SMIS_PLUGIN_ABI_VERSION,
	.config_string = fake_config_string,
	.config_bool = fake_config_bool,
	.config_error = fake_config_error,
	.channel_caps = fake_channel_caps,
	.alloc = fake_alloc,
	.free = free,
};

static int failures;

#define CHECK(cond)                                                                   \
	do {                                                                          \
		if (!(cond)) {                                                        \
			fprintf(stderr, "%s:%d: FAILED: %s\n", __FILE__, __LINE__, #cond); \
			failures++;                                                   \
		}                                                                     \
	} while (0)

static const struct smis_plugin_descriptor *d;

static void *create(const char *channels, int failover, int *errors)
{
	struct smis_config cfg = { channels, failover, 0 };
	struct smis_instance self = { 0 };
	void *state = NULL;

	if (d->strategy->create(&api, &self, &cfg, &state) != 0)
		state = NULL;
	*errors = cfg.errors;
	return state;
}

/* decide() for a message whose step made the SEND attempts in `outcomes`
 * on `channels` (kind per attempt). Returns the verdict; *to is the
 * channel asked for on ACT. */
static int decide(void *state, size_t n, const char *const *channels,
		  const enum smis_outcome_kind *kinds, const char **to)
{
	struct smis_outcome outs[4];
	struct smis_attempt_view views[4];
	struct smis_job_view job = { .size = sizeof(job), .attempts = views, .n_attempts = n };
	struct smis_action act = { 0, NULL };
	int v;

	for (size_t i = 0; i < n; i++) {
		memset(&outs[i], 0, sizeof(outs[i]));
		outs[i].kind = kinds[i];
		views[i] = (struct smis_attempt_view){ channels[i], SMIS_CAP_SEND, SMIS_OP_SEND, &outs[i] };
	}
	v = d->strategy->decide(state, &job, &act);
	*to = v == SMIS_VERDICT_ACT && act.op == SMIS_OP_SEND ? act.channel : NULL;
	return v;
}

int main(int argc, char **argv)
{
	static const char *const a_b[] = { "a", "b" };
	static const enum smis_outcome_kind fail_fail[] = { SMIS_OUTCOME_TEMPFAIL, SMIS_OUTCOME_PERMFAIL };
	static const enum smis_outcome_kind ok[] = { SMIS_OUTCOME_OK };
	const char *to = NULL;
	void *h, *st;
	int errors;

	h = dlopen(argc > 1 ? argv[1] : "./round_robin.so", RTLD_NOW | RTLD_LOCAL);
	if (!h) {
		fprintf(stderr, "%s\n", dlerror());
		return 1;
	}
	d = dlsym(h, SMIS_PLUGIN_SYMBOL);
	if (!d || d->abi_version != SMIS_PLUGIN_ABI_VERSION || d->kind != SMIS_PLUGIN_STRATEGY) {
		fprintf(stderr, "not an ABI %u strategy plugin\n", SMIS_PLUGIN_ABI_VERSION);
		return 1;
	}

	/* Configuration errors, each reported. */
	CHECK(create(NULL, -1, &errors) == NULL && errors == 1);
	CHECK(create("a, nosuch", -1, &errors) == NULL && errors == 1);
	CHECK(create("a, lookup-only", -1, &errors) == NULL && errors == 1);
	CHECK(create("a, a", -1, &errors) == NULL && errors == 1);
	CHECK(create("a,,b", -1, &errors) == NULL && errors == 1);

	/* Rotation over new messages: a, b, c, a. */
	st = create(" a ,b,c", -1, &errors);
	CHECK(st && errors == 0);
	if (!st)
		return 1;
	CHECK(decide(st, 0, NULL, NULL, &to) == SMIS_VERDICT_ACT && to && strcmp(to, "a") == 0);
	CHECK(decide(st, 0, NULL, NULL, &to) == SMIS_VERDICT_ACT && to && strcmp(to, "b") == 0);
	CHECK(decide(st, 0, NULL, NULL, &to) == SMIS_VERDICT_ACT && to && strcmp(to, "c") == 0);
	CHECK(decide(st, 0, NULL, NULL, &to) == SMIS_VERDICT_ACT && to && strcmp(to, "a") == 0);
	/* Sent: stop. Failed on a then b: c is next; after three, give up. */
	CHECK(decide(st, 1, a_b, ok, &to) == SMIS_VERDICT_STOP);
	CHECK(decide(st, 2, a_b, fail_fail, &to) == SMIS_VERDICT_ACT && to && strcmp(to, "c") == 0);
	{
		static const char *const abc[] = { "b", "c", "a" };
		static const enum smis_outcome_kind fff[] = { SMIS_OUTCOME_TEMPFAIL, SMIS_OUTCOME_TEMPFAIL,
							     SMIS_OUTCOME_TEMPFAIL };
		CHECK(decide(st, 3, abc, fff, &to) == SMIS_VERDICT_NEXT);
	}
	d->strategy->destroy(st);

	/* Without failover, a failure ends the step at once. */
	st = create("a,b", 0, &errors);
	CHECK(st && errors == 0);
	if (st) {
		CHECK(decide(st, 1, a_b, fail_fail, &to) == SMIS_VERDICT_NEXT);
		d->strategy->destroy(st);
	}
	d->strategy->destroy(NULL);
	dlclose(h);
	if (failures)
		fprintf(stderr, "%d check(s) failed\n", failures);
	else
		printf("test_round_robin: all checks passed\n");
	return failures ? 1 : 0;
}
