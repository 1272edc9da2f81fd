/*
 * fuzz_config.c - the configuration file, as an operator edits it and as
 * smisd rereads it on SIGHUP, while it serves. A refused reload must leave
 * smisd as it was: no crash, no leak, however broken the file.
 *
 * smisd_generation_load() is what `smisd --check-config`, the start and
 * every reload run: libconfig's parser, every group's checks, and the
 * creation of every plugin instance (the channel plugins read their own
 * settings through the core's config accessors). The plugins are this
 * build's: FUZZ_PLUGIN_DIR is appended to every input as `plugin_dir`.
 * Inputs that set plugin_dir themselves or name device, /proc or /sys
 * files are skipped, so that nothing but the built plugins is loaded and
 * no special file is read (a key_file named /dev/stdin would wait for
 * ever, as it would in smisd). @include is fuzzed: smisd refuses any
 * target that is not a regular file (lib/config_includes.c).
 *
 * A configuration that loads must be coherent: names unique, every
 * strategy with steps, every institution's default strategy one it may
 * use, settings within their documented ranges.
 */
#include <dirent.h>
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fuzz_common.h"
#include "generation.h"
#include "log.h"

#ifndef FUZZ_PLUGIN_DIR
#error "FUZZ_PLUGIN_DIR: the build's plugin-dir"
#endif

/* libconfig 1.5 (Debian 12) leaks the string token it drops while it
 * recovers from some syntax errors (fixed upstream in 1.7.3: libconfig
 * issue #142): a few bytes per refused file, not smisd's to free. Only its
 * scanner's allocations are let through; any other leak fails the run. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void)
{
	return "leak:strbuf_append\nleak:libconfig_yylex\n";
}

static char conf_dir[] = "/tmp/smis-fuzz-config-XXXXXX";
static char conf_path[64];

static void cleanup(void)
{
	unlink(conf_path);
	rmdir(conf_dir);
}

/* libFuzzer reads the coverage counters of every instrumented module it
 * saw loaded, for the whole run: a plugin the generation dlclose()s must
 * stay mapped. One more reference to each keeps it (RTLD_NODELETE). */
static void pin_plugins(void)
{
	DIR *d = opendir(FUZZ_PLUGIN_DIR);
	struct dirent *e;
	char path[512];

	while (d && (e = readdir(d))) {
		size_t n = strlen(e->d_name);
		if (n > 3 && strcmp(e->d_name + n - 3, ".so") == 0) {
			snprintf(path, sizeof(path), "%s/%s", FUZZ_PLUGIN_DIR, e->d_name);
			dlopen(path, RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
		}
	}
	if (d)
		closedir(d);
}

static int setup(void)
{
	if (conf_path[0])
		return 0;
	pin_plugins();
	if (!mkdtemp(conf_dir))
		return -1;
	snprintf(conf_path, sizeof(conf_path), "%s/fuzz.conf", conf_dir);
	atexit(cleanup);
	/* Refusals are the common case: keep their log lines out of the run. */
	smisd_log_set_level((enum smis_log_level)(SMIS_LOG_ERROR + 1));
	return 0;
}

static int skipped(const uint8_t *data, size_t size)
{
	static const char *const words[] = { "plugin_dir", "/dev", "/proc", "/sys", NULL };
	for (size_t i = 0; words[i]; i++)
		if (fuzz_holds_ci(data, size, words[i]))
			return 1;
	return 0;
}

static void check_generation(const struct smisd_generation *g)
{
	const struct smisd_settings *st = &g->settings;

	FUZZ_CHECK(strcmp(st->plugin_dir, FUZZ_PLUGIN_DIR) == 0);
	FUZZ_CHECK(st->store_path && st->store_path[0]);
	FUZZ_CHECK(st->phone_hash_key_len == 32);
	FUZZ_CHECK(st->listen_port >= 0 && st->listen_port <= 65535);
	FUZZ_CHECK(st->http_threads >= 1 && st->http_threads <= 64);
	FUZZ_CHECK(st->store_retention_s >= 0);
	FUZZ_CHECK(st->max_body_bytes >= 1024);
	FUZZ_CHECK(st->job_timeout_ms >= 100);
	for (size_t i = 0; i < g->n_channels; i++) {
		FUZZ_CHECK(g->channels[i].name && g->channels[i].ops);
		FUZZ_CHECK(smisd_generation_channel(g, g->channels[i].name) == &g->channels[i]);
	}
	for (size_t i = 0; i < g->n_strategies; i++) {
		const struct smisd_strategy *s = &g->strategies[i];
		FUZZ_CHECK(s->name && s->n_steps >= 1);
		FUZZ_CHECK(smisd_generation_strategy(g, s->name) == s);
		for (size_t k = 0; k < s->n_steps; k++)
			FUZZ_CHECK(s->steps[k].ops && s->steps[k].ops->decide);
	}
	for (size_t i = 0; i < g->n_institutions; i++) {
		const struct smisd_institution *inst = &g->institutions[i];
		FUZZ_CHECK(inst->name && inst->default_strategy);
		FUZZ_CHECK(smisd_institution_may_use(inst, inst->default_strategy));
		FUZZ_CHECK(inst->n_languages >= 1 && inst->n_languages <= SMIS_LANG_MAX);
		for (size_t k = 0; k < i; k++)
			FUZZ_CHECK(strcmp(g->institutions[k].name, inst->name) != 0);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	FILE *f;
	struct smisd_generation *g;

	if (size > 64 * 1024 || skipped(data, size) || setup() != 0)
		return 0;
	f = fopen(conf_path, "w");
	if (!f)
		return 0;
	fwrite(data, 1, size, f);
	fprintf(f, "\nplugin_dir = \"%s\";\n", FUZZ_PLUGIN_DIR);
	fclose(f);
	g = smisd_generation_load(conf_path);
	if (g) {
		check_generation(g);
		smisd_generation_unref(g);
	}
	return 0;
}
