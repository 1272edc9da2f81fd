/*
 * test_core.c - configuration loading (file:line errors), plugin loading
 * (ABI mismatch, missing ops, not a plugin) and strategy decisions run
 * through the dispatcher's real chain logic with deterministic channels.
 */
#define _GNU_SOURCE /* RTLD_NEXT */
#include <CUnit/Basic.h>
#include <json-c/json.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core_api.h"
#include "dispatcher.h"
#include "generation.h"
#include "job.h"
#include "metrics.h"
#include "plugin_loader.h"
#include "ratelimit.h"
#include "retention.h"
#include "store.h"
#include "unstored.h"

/* malloc(size), calloc(n, size) and realloc(p, size) of the linked daemon
 * code (-Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc) return NULL, as
 * without memory, once: for the call of `fn` after `skip` calls of it with
 * the same arguments (calloc: these n and size, size 0 matching any;
 * malloc and realloc: n 1 and this size), so that each allocation can be
 * made to fail in turn; fn NULL: none. The test's own calls are counted
 * too: arm it just before the call under test. */
static struct {
	const char *fn;
	size_t n, size;
	int skip;
} alloc_fail;
void *__real_malloc(size_t size);
void *__wrap_malloc(size_t size);
void *__real_calloc(size_t n, size_t size);
void *__wrap_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t size);
void *__wrap_realloc(void *p, size_t size);

static bool alloc_fails(const char *fn, size_t n, size_t size)
{
	if (!alloc_fail.fn || strcmp(alloc_fail.fn, fn) != 0 || n != alloc_fail.n ||
	    (alloc_fail.size != 0 && size != alloc_fail.size) || alloc_fail.skip-- > 0)
		return false;
	alloc_fail.fn = NULL;
	return true;
}

void *__wrap_malloc(size_t size)
{
	return alloc_fails("malloc", 1, size) ? NULL : __real_malloc(size);
}

void *__wrap_calloc(size_t n, size_t size)
{
	return alloc_fails("calloc", n, size) ? NULL : __real_calloc(n, size);
}

void *__wrap_realloc(void *p, size_t size)
{
	return alloc_fails("realloc", 1, size) ? NULL : __real_realloc(p, size);
}

static void fail_alloc(const char *fn, size_t n, size_t size, int skip)
{
	alloc_fail.fn = fn;
	alloc_fail.n = n;
	alloc_fail.size = size;
	alloc_fail.skip = skip;
}

/* strdup(s) of the linked daemon code (-Wl,--wrap=strdup) returns NULL,
 * once, for a copy of this string after strdup_fail_skip copies of it,
 * as without memory; NULL: never. */
static const char *strdup_fail_s;
static int strdup_fail_skip;
char *__real_strdup(const char *s);
char *__wrap_strdup(const char *s);

char *__wrap_strdup(const char *s)
{
	if (strdup_fail_s && strcmp(s, strdup_fail_s) == 0 && strdup_fail_skip-- == 0) {
		strdup_fail_s = NULL;
		strdup_fail_skip = 0;
		return NULL;
	}
	return __real_strdup(s);
}

static char dir[256];       /* temp folder: plugins/ and config files */
static char plugdir[300];

static void link_plugin(const char *from_dir, const char *name)
{
	char src[512], dst[512];
	snprintf(src, sizeof(src), "%s/%s/%s.so", SMIS_TEST_BUILDDIR, from_dir, name);
	snprintf(dst, sizeof(dst), "%s/%s.so", plugdir, name);
	if (symlink(src, dst) != 0)
		perror(dst);
}

static int setup(void)
{
	snprintf(dir, sizeof(dir), "/tmp/smis-test-core-XXXXXX");
	if (!mkdtemp(dir))
		return -1;
	snprintf(plugdir, sizeof(plugdir), "%s/plugins", dir);
	mkdir(plugdir, 0700);
	link_plugin("tests/plugins/.libs", "fakechan");
	link_plugin("tests/plugins/.libs", "badabi");
	link_plugin("tests/plugins/.libs", "missingop");
	link_plugin("tests/plugins/.libs", "nodesc");
	link_plugin("tests/plugins/.libs", "badstep");
	link_plugin("plugin-dir", "govapp_only");
	link_plugin("plugin-dir", "govapp_first");
	link_plugin("plugin-dir", "sms_only");
	link_plugin("plugin-dir", "govapp_and_sms");
	smisd_config_report_plain(1);
	return 0;
}

static int teardown(void)
{
	char cmd[600];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

/* ---- plugin loading -------------------------------------------------- */

static void expect_load_error(const char *name, enum smis_plugin_kind kind, const char *needle)
{
	char err[1024] = "";
	struct smisd_plugin *p = smisd_plugin_load(plugdir, name, kind, err, sizeof(err));
	CU_ASSERT_PTR_NULL(p);
	smisd_plugin_free(p);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, needle));
	CU_ASSERT_PTR_NOT_NULL(strstr(err, name)); /* names the file */
	if (!strstr(err, needle))
		fprintf(stderr, "\n  %s: '%s' lacks '%s'\n", name, err, needle);
}

static void test_loader(void)
{
	char err[1024] = "";
	struct smisd_plugin *p = smisd_plugin_load(plugdir, "fakechan", SMIS_PLUGIN_CHANNEL, err, sizeof(err));
	CU_ASSERT_PTR_NOT_NULL_FATAL(p);
	CU_ASSERT_STRING_EQUAL(p->desc->name, "fakechan");
	smisd_plugin_free(p);

	expect_load_error("badabi", SMIS_PLUGIN_STRATEGY, "ABI version");
	expect_load_error("missingop", SMIS_PLUGIN_CHANNEL, "missing mandatory op 'resume'");
	expect_load_error("nodesc", SMIS_PLUGIN_CHANNEL, "no 'smis_plugin_descriptor'");
	expect_load_error("absent", SMIS_PLUGIN_CHANNEL, "cannot load");
	expect_load_error("fakechan", SMIS_PLUGIN_STRATEGY, "is a channel plugin");
	expect_load_error("../etc", SMIS_PLUGIN_CHANNEL, "invalid plugin name");
}

static void test_descriptor_checks(void)
{
	struct smis_plugin_descriptor d;
	char err[256];
	struct smis_strategy_ops so;
	memset(&so, 0, sizeof(so));
	so.size = sizeof(so);
	memset(&d, 0, sizeof(d));
	d.abi_version = SMIS_PLUGIN_ABI_VERSION;
	d.size = 8; /* a descriptor from a truncated build */
	d.kind = SMIS_PLUGIN_STRATEGY;
	d.name = "x";
	d.strategy = &so;
	CU_ASSERT_NOT_EQUAL(smisd_plugin_check_descriptor(&d, "x", SMIS_PLUGIN_STRATEGY, err, sizeof(err)), 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "too small"));
	d.size = sizeof(d);
	CU_ASSERT_NOT_EQUAL(smisd_plugin_check_descriptor(&d, "x", SMIS_PLUGIN_STRATEGY, err, sizeof(err)), 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "'create'"));
	d.name = "y";
	CU_ASSERT_NOT_EQUAL(smisd_plugin_check_descriptor(&d, "x", SMIS_PLUGIN_STRATEGY, err, sizeof(err)), 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "differs"));
}

/* ---- configuration --------------------------------------------------- */

static const char *base_conf =
	"plugin_dir = \"plugins\";\n"
	"store = { path = \"x.db\"; phone_hash_key = \"00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\"; };\n"
	"channels = (\n"
	"  { name = \"app_yes\"; plugin = \"fakechan\"; reach = 1; send_outcome = 1; },\n"
	"  { name = \"app_noinst\"; plugin = \"fakechan\"; reach = 2; },\n"
	"  { name = \"app_off\"; plugin = \"fakechan\"; reach = 3; },\n"
	"  { name = \"app_fail\"; plugin = \"fakechan\"; reach = 1; send_outcome = 2; },\n"
	"  { name = \"sms_ok\"; plugin = \"fakechan\"; },\n"
	"  { name = \"sms_fail\"; plugin = \"fakechan\"; send_outcome = 3; }\n"
	");\n"
	"strategies = (\n"
	"  { name = \"first_yes\"; steps = ( { plugin = \"govapp_first\"; app = \"app_yes\"; sms = \"sms_ok\"; } ); },\n"
	"  { name = \"first_noinst\"; steps = ( { plugin = \"govapp_first\"; app = \"app_noinst\"; sms = \"sms_ok\"; } ); },\n"
	"  { name = \"first_off\"; steps = ( { plugin = \"govapp_first\"; app = \"app_off\"; sms = \"sms_ok\"; } ); },\n"
	"  { name = \"first_fail\"; steps = ( { plugin = \"govapp_first\"; app = \"app_fail\"; sms = \"sms_ok\"; } ); },\n"
	"  { name = \"first_fail_nofb\"; steps = ( { plugin = \"govapp_first\"; app = \"app_fail\"; sms = \"sms_ok\"; fallback_on_app_failure = false; } ); },\n"
	"  { name = \"first_allfail\"; steps = ( { plugin = \"govapp_first\"; app = \"app_fail\"; sms = \"sms_fail\"; } ); },\n"
	"  { name = \"only_yes\"; steps = ( { plugin = \"govapp_only\"; channel = \"app_yes\"; } ); },\n"
	"  { name = \"only_noinst\"; steps = ( { plugin = \"govapp_only\"; channel = \"app_noinst\"; } ); },\n"
	"  { name = \"sms\"; steps = ( { plugin = \"sms_only\"; channel = \"sms_ok\"; } ); },\n"
	"  { name = \"sms_bad\"; steps = ( { plugin = \"sms_only\"; channel = \"sms_fail\"; } ); },\n"
	"  { name = \"both_yes\"; steps = ( { plugin = \"govapp_and_sms\"; app = \"app_yes\"; sms = \"sms_ok\"; } ); },\n"
	"  { name = \"both_off\"; steps = ( { plugin = \"govapp_and_sms\"; app = \"app_off\"; sms = \"sms_ok\"; } ); },\n"
	"  { name = \"chain_noinst\"; steps = ( { plugin = \"govapp_only\"; channel = \"app_noinst\"; },\n"
	"                                      { plugin = \"sms_only\"; channel = \"sms_ok\"; } ); },\n"
	"  { name = \"chain_yes\"; steps = ( { plugin = \"govapp_only\"; channel = \"app_yes\"; },\n"
	"                                   { plugin = \"sms_only\"; channel = \"sms_ok\"; } ); },\n"
	"  { name = \"bad_verdict\"; steps = ( { plugin = \"badstep\"; mode = \"verdict\"; } ); },\n"
	"  { name = \"bad_channel\"; steps = ( { plugin = \"badstep\"; mode = \"channel\"; } ); },\n"
	"  { name = \"bad_late\"; steps = ( { plugin = \"badstep\"; mode = \"late\"; channel = \"sms_ok\"; } ); }\n"
	");\n"
	"institutions = ( { name = \"inst\"; api_keys = [ \"sha256:0000000000000000000000000000000000000000000000000000000000000000\" ];\n"
	"  strategies = [ \"first_yes\", \"first_noinst\", \"first_off\", \"first_fail\", \"first_fail_nofb\", \"first_allfail\",\n"
	"                 \"only_yes\", \"only_noinst\", \"sms\", \"sms_bad\", \"both_yes\", \"both_off\", \"chain_noinst\", \"chain_yes\" ];\n"
	"  default_strategy = \"first_yes\"; } );\n";

static char *write_conf(const char *name, const char *text)
{
	static char path[400];
	FILE *f;
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "w");
	fputs(text, f);
	fclose(f);
	return path;
}

/* What the daemon code logs between these two calls (its log goes to
 * stderr), into `logged`. */
static int stderr_saved = -1;

static void capture_stderr(void)
{
	char path[300];
	int fd;

	snprintf(path, sizeof(path), "%s/stderr.log", dir);
	fflush(stderr);
	stderr_saved = dup(2);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	dup2(fd, 2);
	close(fd);
}

static void captured_stderr(char *logged, size_t size)
{
	char path[300];
	FILE *f;

	snprintf(path, sizeof(path), "%s/stderr.log", dir);
	fflush(stderr);
	dup2(stderr_saved, 2);
	close(stderr_saved);
	logged[0] = '\0';
	f = fopen(path, "r");
	if (f) {
		logged[fread(logged, 1, size - 1, f)] = '\0';
		fclose(f);
	}
}

/* Whether `logged` has `needle`; said on stderr when not. */
static bool logged_has(const char *logged, const char *needle)
{
	if (strstr(logged, needle))
		return true;
	fprintf(stderr, "\n  '%s' not logged: %s\n", needle, logged);
	return false;
}

/* Load `text`; expect failure with `needle` in what was reported. */
static void expect_config_error(const char *text, const char *needle)
{
	char buf[8192];
	char *path = write_conf("bad.conf", text);
	struct smisd_generation *g;

	capture_stderr();
	g = smisd_generation_load(path);
	captured_stderr(buf, sizeof(buf));
	CU_ASSERT_PTR_NULL(g);
	smisd_generation_unref(g);
	CU_ASSERT_TRUE(logged_has(buf, needle));
}

static char *replace(const char *text, const char *from, const char *to)
{
	const char *at = strstr(text, from);
	size_t n = strlen(text) - strlen(from) + strlen(to) + 1;
	char *out = malloc(n);
	if (!at)
		return strdup(text);
	snprintf(out, n, "%.*s%s%s", (int)(at - text), text, to, at + strlen(from));
	return out;
}

/* The base configuration with `from` replaced by `to`; expect `needle`. */
static void expect_edit_error(const char *from, const char *to, const char *needle)
{
	char *t = replace(base_conf, from, to);
	expect_config_error(t, needle);
	free(t);
}

/* The base configuration with `setting` added to its institution (line 36). */
static void expect_institution_error(const char *setting, const char *needle)
{
	char to[256], want[256];
	char *t;

	snprintf(to, sizeof(to), "default_strategy = \"first_yes\";\n  %s }", setting);
	snprintf(want, sizeof(want), "bad.conf:36: %s", needle);
	t = replace(base_conf, "default_strategy = \"first_yes\"; }", to);
	expect_config_error(t, want);
	free(t);
}

static void test_config_valid(void)
{
	struct smisd_generation *g = smisd_generation_load(write_conf("good.conf", base_conf));
	CU_ASSERT_PTR_NOT_NULL_FATAL(g);
	CU_ASSERT_EQUAL(g->n_channels, 6);
	CU_ASSERT_EQUAL(g->n_strategies, 17);
	CU_ASSERT_EQUAL(g->n_institutions, 1);
	CU_ASSERT_EQUAL(g->settings.listen_port, 8080); /* default */
	CU_ASSERT_PTR_NOT_NULL(strstr(g->settings.store_path, "/x.db"));
	CU_ASSERT_STRING_EQUAL(g->institutions[0].languages[0], "nl");
	CU_ASSERT_FALSE(g->settings.store_commit_before_answer); /* answer first */
	CU_ASSERT_EQUAL(g->settings.store_commit_delay_ms, 2);
	CU_ASSERT_EQUAL(g->settings.store_retention_s, 90LL * 86400); /* default: 90 days */
	smisd_generation_unref(g);
	{
		char *t = replace(base_conf, "phone_hash_key = \"00",
				  "commit_before_answer = true; commit_delay_ms = 7; retention_s = 0; phone_hash_key = \"00");
		g = smisd_generation_load(write_conf("good2.conf", t));
		free(t);
		CU_ASSERT_PTR_NOT_NULL_FATAL(g);
		CU_ASSERT_TRUE(g->settings.store_commit_before_answer);
		CU_ASSERT_EQUAL(g->settings.store_commit_delay_ms, 7);
		CU_ASSERT_EQUAL(g->settings.store_retention_s, 0); /* kept for ever */
		smisd_generation_unref(g);
	}
	{
		char *t = replace(base_conf, "{ name = \"sms_ok\"; plugin = \"fakechan\"; }",
				  "{ name = \"sms_ok\"; plugin = \"fakechan\"; http = { ca_file = \"ca.pem\"; }; }");
		char want[512];
		const struct smisd_channel *ch;

		write_conf("ca.pem", "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n");
		g = smisd_generation_load(write_conf("good3.conf", t));
		free(t);
		CU_ASSERT_PTR_NOT_NULL_FATAL(g);
		ch = smisd_generation_channel(g, "sms_ok");
		CU_ASSERT_PTR_NOT_NULL_FATAL(ch);
		snprintf(want, sizeof(want), "%s/ca.pem", dir); /* resolved against the file's folder */
		CU_ASSERT_STRING_EQUAL(ch->http.ca_file ? ch->http.ca_file : "", want);
		smisd_generation_unref(g);
	}
	{
		static const char *const numeric[] = { "::", "0.0.0.0", "::1", "127.0.0.2" };
		for (size_t i = 0; i < sizeof(numeric) / sizeof(numeric[0]); i++) {
			char set[96];
			char *t;
			snprintf(set, sizeof(set), "listen = { address = \"%s\"; };\nplugin_dir", numeric[i]);
			t = replace(base_conf, "plugin_dir", set);
			g = smisd_generation_load(write_conf("good4.conf", t));
			free(t);
			CU_ASSERT_PTR_NOT_NULL_FATAL(g);
			CU_ASSERT_STRING_EQUAL(g->settings.listen_address, numeric[i]);
			smisd_generation_unref(g);
		}
	}
}

static void test_config_errors(void)
{
	char *t;
	expect_config_error("listen = { port = 80 }\nstore = ;", "bad.conf:2: syntax error");
	t = replace(base_conf, "plugin_dir", "colour = 1;\nplugin_dir");
	expect_config_error(t, "bad.conf:1: unknown setting 'colour' in the top level");
	free(t);
	t = replace(base_conf, "reach = 2;", "reach = 2; colour = \"red\";");
	expect_config_error(t, "bad.conf:5: unknown setting 'colour' in channel 'app_noinst'");
	free(t);
	t = replace(base_conf, "phone_hash_key = \"00", "phone_hash_key = \"zz");
	expect_config_error(t, "bad.conf:2: store: 'phone_hash_key' must be 64 hex digits");
	free(t);
	t = replace(base_conf, "sha256:0000", "md5:0000");
	expect_config_error(t, "api_keys[0] must be \"sha256:\"");
	free(t);
	t = replace(base_conf, "default_strategy = \"first_yes\"", "default_strategy = \"nope\"");
	expect_config_error(t, "default_strategy 'nope' must be one of its 'strategies'");
	free(t);
	t = replace(base_conf, "plugin = \"govapp_first\"; app = \"app_yes\"", "plugin = \"govapp_first\"; app = \"ghost\"");
	expect_config_error(t, "bad.conf:12: 'app': no channel named 'ghost'");
	free(t);
	t = replace(base_conf, "plugin = \"sms_only\"; channel = \"sms_ok\"; } ); },", "plugin = \"badabi\"; } ); },");
	expect_config_error(t, "refused: ABI version");
	free(t);
	t = replace(base_conf, "name = \"sms_ok\"; plugin = \"fakechan\"", "name = \"sms_ok\"; plugin = \"missingop\"");
	expect_config_error(t, "bad.conf:8:");
	free(t);
	t = replace(base_conf, "phone_hash_key = \"00", "commit_delay_ms = 5000; phone_hash_key = \"00");
	expect_config_error(t, "bad.conf:2: store: 'commit_delay_ms' must be between 0 and 1000");
	free(t);
	/* ca_file is read at load (relative to the file), not at the first request. */
	t = replace(base_conf, "{ name = \"sms_ok\"; plugin = \"fakechan\"; }",
		    "{ name = \"sms_ok\"; plugin = \"fakechan\"; http = { ca_file = \"nope.pem\"; }; }");
	expect_config_error(t, "nope.pem: No such file or directory");
	expect_config_error(t, "bad.conf:8: channel 'sms_ok': 'ca_file' /");
	free(t);
	t = replace(base_conf, "{ name = \"sms_ok\"; plugin = \"fakechan\"; }",
		    "{ name = \"sms_ok\"; plugin = \"fakechan\"; http = { ca_file = \".\"; }; }");
	expect_config_error(t, "'ca_file' ");
	expect_config_error(t, ": not a regular file");
	free(t);
	/* An institution without a name before a named one: the duplicate
	 * check compared the named one with NULL (SIGSEGV; found by fuzz_config). */
	t = replace(base_conf, "institutions = ( { name = \"inst\";",
		    "institutions = ( { label = \"x\"; }, { name = \"inst\";");
	expect_config_error(t, "institution: missing required setting 'name'");
	free(t);
	/* A step refused for a stray key, then a step whose plugin refuses its
	 * channel: the second create() failed before setting its state, and the
	 * loader destroyed the first step's state a second time (heap
	 * use-after-free on a reload with that typo; found by fuzz_config). */
	t = replace(base_conf, "  { name = \"sms\"; steps",
		    "  { name = \"typo_chain\"; steps = ( { plugin = \"govapp_only\"; channel = \"app_yes\"; colour = 1; },\n"
		    "                                    { plugin = \"sms_only\"; channel = \"ghost\"; } ); },\n"
		    "  { name = \"sms\"; steps");
	expect_config_error(t, "unknown setting 'colour'");
	free(t);
	/* libconfig exit()s when it cannot read an included file: refused first. */
	t = replace(base_conf, "plugin_dir", "@include \".\"\nplugin_dir");
	expect_config_error(t, "bad.conf:1: @include \".\": not a regular file");
	free(t);
	t = replace(base_conf, "plugin_dir", "  @include \"\"\nplugin_dir");
	expect_config_error(t, "bad.conf:1: @include \"\": not a regular file (an empty name");
	free(t);
	t = replace(base_conf, "plugin_dir", "@include \"x.conf\nplugin_dir");
	expect_config_error(t, "bad.conf:1: @include: the file name must end on its line");
	free(t);
	t = replace(base_conf, "phone_hash_key = \"00", "retention_s = -1; phone_hash_key = \"00");
	expect_config_error(t, "bad.conf:2: store: 'retention_s' must be between 0 and 316224000");
	free(t);
	t = replace(base_conf, "phone_hash_key = \"00", "commit_before_answer = 1; phone_hash_key = \"00");
	expect_config_error(t, "bad.conf:2: store: 'commit_before_answer' must be true or false");
	free(t);
	/* A scalar top-level list read as a list of nothing: no institution at
	 * all, and the configuration was "OK". */
	{
		size_t cut = (size_t)(strstr(base_conf, "institutions = (") - base_conf);
		static const char *const not_lists[] = { "\"inst\"", "[ \"inst\" ]", "{ name = \"inst\"; }" };
		for (size_t i = 0; i < sizeof(not_lists) / sizeof(not_lists[0]); i++) {
			size_t n = cut + strlen(not_lists[i]) + 32;
			t = malloc(n);
			snprintf(t, n, "%.*sinstitutions = %s;\n", (int)cut, base_conf, not_lists[i]);
			expect_config_error(t, "bad.conf:32: 'institutions' must be a list ( { ... }, ... )");
			free(t);
		}
	}
	/* A repeated language took the place of another, whose texts were then
	 * dropped: an "en"-only message went out empty. A scalar has no elements,
	 * and was read as an empty list. */
	expect_institution_error("languages = [ \"nl\", \"nl\" ];", "institution 'inst': language 'nl' is listed twice");
	expect_institution_error("languages = [ \"nl\", \"es\" ];", "institution 'inst': unknown language 'es'");
	expect_institution_error("languages = \"nl\";", "institution 'inst': 'languages' must be an array");
	expect_institution_error("allowed_countries = \"31\";", "institution 'inst': 'allowed_countries' must be an array");
	expect_institution_error("allowed_countries = [ \"+31\" ];", "institution 'inst': allowed_countries entries are calling codes");
	expect_institution_error("client_ids = [ \"\" ];", "institution 'inst': client_ids[0] must be a non-empty string");
	expect_institution_error("client_ids = \"cbe-1\";", "institution 'inst': 'client_ids' must be an array of strings");
	/* A host name was accepted here and failed only when smisd bound. */
	expect_edit_error("plugin_dir", "listen = { address = \"localhost\"; };\nplugin_dir",
			  "bad.conf:1: listen: 'address' 'localhost' must be a numeric IPv4 or IPv6 address");
	expect_edit_error("plugin_dir", "listen = { address = \"abc\"; };\nplugin_dir",
			  "bad.conf:1: listen: 'address' 'abc' must be a numeric");
	/* A group written as a scalar has no members: its settings were
	 * silently left at their defaults. */
	expect_edit_error("plugin_dir", "limits = 5;\nplugin_dir", "bad.conf:1: 'limits' must be a group { ... }");
	expect_edit_error("plugin_dir", "listen = \"127.0.0.1\";\nplugin_dir",
			  "bad.conf:1: 'listen' must be a group { ... }");
	expect_edit_error("plugin_dir", "log = [ \"debug\" ];\nplugin_dir", "bad.conf:1: 'log' must be a group { ... }");
	expect_edit_error("plugin_dir", "status_poll = ( { after_s = 0; } );\nplugin_dir",
			  "bad.conf:1: 'status_poll' must be a group { ... }");
	expect_edit_error("store = { path = \"x.db\"; phone_hash_key = \"00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\"; };",
			  "store = \"x.db\";", "bad.conf:2: 'store' must be a group { ... }");
	expect_edit_error("{ name = \"sms_ok\"; plugin = \"fakechan\"; }",
			  "{ name = \"sms_ok\"; plugin = \"fakechan\"; http = 3; }",
			  "bad.conf:8: channel 'sms_ok': 'http' must be a group { ... }");
	/* A key of two institutions authenticated as the last one listed. */
	expect_edit_error("default_strategy = \"first_yes\"; } );",
			  "default_strategy = \"first_yes\"; },\n"
			  "  { name = \"other\"; strategies = [ \"sms\" ]; default_strategy = \"sms\";\n"
			  "    api_keys = [ \"sha256:1111111111111111111111111111111111111111111111111111111111111111\",\n"
			  "                 \"sha256:0000000000000000000000000000000000000000000000000000000000000000\" ]; } );",
			  "bad.conf:37: institution 'other': api_keys[1] is a key of institution 'inst' already");
	expect_config_error("store = { path = \"x\"; phone_hash_key = \"00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\"; };",
			    "missing required list 'channels'");
}

/* Ids sort by creation time: the retention deletes the ids below the bound
 * of its cut-off time, and reads a passthrough id's age back from it. */
static void test_id_time(void)
{
	char id[40], lo[40], hi[40];
	int64_t now = smisd_now_ms();

	smisd_new_id("msg_", id, sizeof(id));
	CU_ASSERT_EQUAL(strlen(id), 30);
	CU_ASSERT(llabs(smisd_id_time_ms(id, 4) - now) < 5000);
	smisd_id_time_bound("msg_", now - 1000, lo, sizeof(lo));
	smisd_id_time_bound("msg_", now + 60000, hi, sizeof(hi));
	CU_ASSERT_EQUAL(strlen(lo), 14);
	CU_ASSERT(strcmp(lo, id) < 0);
	CU_ASSERT(strcmp(id, hi) < 0);
	CU_ASSERT_EQUAL(smisd_id_time_ms(lo, 4), now - 1000);
	CU_ASSERT_EQUAL(smisd_id_time_ms("msg_0000000001ZZZZ", 4), 1);
	CU_ASSERT_EQUAL(smisd_id_time_ms("msg_000000000", 4), -1);  /* too short */
	CU_ASSERT_EQUAL(smisd_id_time_ms("msg_00000000U0", 4), -1); /* not Crockford base32 */
}

/* whole into buf as snprintf(buf, len, "%s", whole) writes it: formatting
 * into buf with a literal len would draw -Wformat-truncation. */
static void cut_like_snprintf(char *buf, size_t len, const char *whole)
{
	size_t n;

	if (len == 0)
		return;
	n = strlen(whole) < len - 1 ? strlen(whole) : len - 1;
	memcpy(buf, whole, n);
	buf[n] = '\0';
}

/* smisd_iso8601 as it was before it kept each thread's last second: what
 * the shortcut must write, byte for byte. */
static void iso8601_reference(int64_t ms, char *buf, size_t len)
{
	time_t s = (time_t)(ms / 1000);
	struct tm tm;
	char whole[128];

	gmtime_r(&s, &tm);
	snprintf(whole, sizeof(whole), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
		 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ms % 1000));
	cut_like_snprintf(buf, len, whole);
}

static void iso8601_same(int64_t ms, size_t len)
{
	char got[40], want[40];

	memset(got, 'x', sizeof(got));
	memset(want, 'x', sizeof(want));
	smisd_iso8601(ms, got, len);
	iso8601_reference(ms, want, len);
	CU_ASSERT_EQUAL(memcmp(got, want, sizeof(got)), 0);
	if (memcmp(got, want, sizeof(got)) != 0)
		fprintf(stderr, "iso8601(%lld, %zu): \"%.*s\", not \"%.*s\"\n", (long long)ms, len,
			(int)len, got, (int)len, want);
}

/* Timestamps of one second, of the next and back again, at the edges of
 * seconds, days and years, before 1970, past 9999 and into short buffers. */
static void test_iso8601(void)
{
	static const int64_t bases[] = { 0, 1000, 86399999, 1764000000000, 1798761599999, 1798761600000,
					 951782400000, 253402300799999, 253402300800000 };
	static const int64_t steps[] = { 0, 1, 998, 999, 1000, 1001, -1, -999, -1000, -1001, 3600000 };
	char buf[40];

	for (size_t b = 0; b < sizeof(bases) / sizeof(bases[0]); b++)
		for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++)
			iso8601_same(bases[b] + steps[i], 40);
	for (int64_t ms = 1764000000000 - 2500; ms < 1764000000000 + 2500; ms += 7)
		iso8601_same(ms, 40);
	for (size_t len = 0; len <= 26; len++) {
		iso8601_same(1764000000123, len);
		iso8601_same(1764000000123, 40);
	}
	iso8601_same(-1, 40);
	iso8601_same(-86400001, 40);
	smisd_iso8601(1764000000007, buf, sizeof(buf));
	CU_ASSERT_STRING_EQUAL(buf, "2025-11-24T16:00:00.007Z");
}

/* smisd_concat writes and returns what snprintf of "%s%s%s" would, at
 * every buffer length, also for empty pieces. */
static void test_concat(void)
{
	static const char *const sets[][3] = { { "channel=\"", "ringring", "\"" }, { "", "", "" },
					       { "msg_", "", "01ABC" }, { "a", "bc", "" } };

	for (size_t k = 0; k < sizeof(sets) / sizeof(sets[0]); k++) {
		for (size_t len = 0; len <= 20; len++) {
			char got[24], want[24], whole[64];
			size_t n;

			memset(got, 'x', sizeof(got));
			memset(want, 'x', sizeof(want));
			n = smisd_concat(got, len, sets[k][0], sets[k][1], sets[k][2], NULL);
			snprintf(whole, sizeof(whole), "%s%s%s", sets[k][0], sets[k][1], sets[k][2]);
			cut_like_snprintf(want, len, whole);
			CU_ASSERT_EQUAL(n, strlen(whole));
			CU_ASSERT_EQUAL(memcmp(got, want, sizeof(got)), 0);
		}
	}
}

/* OpenSSL's RAND_bytes, failing while rand_fails is set: the daemon's
 * objects are linked into this program, so their calls come here first. */
static int rand_fails;

int RAND_bytes(unsigned char *buf, int num)
{
	static int (*real)(unsigned char *, int);

	if (rand_fails)
		return 0;
	if (!real) {
		void *sym = dlsym(RTLD_NEXT, "RAND_bytes");
		memcpy(&real, &sym, sizeof(sym));
	}
	return real(buf, num);
}

/* No random bytes, no id: nothing weaker (zeros) stands in for them. */
static void test_id_without_random(void)
{
	char id[40];
	int failed = 0;

	rand_fails = 1;
	/* Bytes drawn before may still be pooled: use them up. */
	for (int i = 0; i < 300 && !failed; i++)
		failed = smisd_new_id("msg_", id, sizeof(id)) != 0;
	CU_ASSERT(failed);
	CU_ASSERT_STRING_EQUAL(id, "");
	CU_ASSERT_NOT_EQUAL(smisd_new_id("req_", id, sizeof(id)), 0);
	/* The stand-in that names the refused request needs none. */
	{
		char a[40], b[40];
		smisd_fallback_id("req_", a, sizeof(a));
		smisd_fallback_id("req_", b, sizeof(b));
		CU_ASSERT(smisd_id_well_formed("req_", a));
		CU_ASSERT(smisd_id_well_formed("req_", b));
		CU_ASSERT_STRING_NOT_EQUAL(a, b);
		CU_ASSERT(llabs(smisd_id_time_ms(a, 4) - smisd_now_ms()) < 5000);
	}
	rand_fails = 0;
	CU_ASSERT_EQUAL(smisd_new_id("msg_", id, sizeof(id)), 0);
	CU_ASSERT(smisd_id_well_formed("msg_", id));
}

/* ---- strategy decisions ---------------------------------------------- */

static struct smisd_generation *gen;

static struct smisd_job *run(const char *strategy)
{
	struct smisd_job *job = calloc(1, sizeof(*job));
	job->gen = smisd_generation_ref(gen);
	job->inst = &gen->institutions[0];
	job->strategy = smisd_generation_strategy(gen, strategy);
	CU_ASSERT_PTR_NOT_NULL_FATAL(job->strategy);
	job->calls = calloc(gen->n_channels, sizeof(void *));
	snprintf(job->id, sizeof(job->id), "msg_test");
	snprintf(job->req.recipient, sizeof(job->req.recipient), "+32470123456");
	job->deadline_mono = smisd_monotonic_ms() + 60000;
	smisd_job_bind_message(job);
	CU_ASSERT_EQUAL(smisd_dispatcher_advance_for_test(job), 0); /* no HTTP: ends at once */
	smisd_job_conclude(job);
	return job;
}

/* Check the attempts as "op:channel:outcome" joined by spaces. */
static void expect_run(const char *strategy, const char *attempts, const char *status,
		       const char *channel)
{
	struct smisd_job *job = run(strategy);
	char got[512] = "";
	size_t pos = 0;
	for (size_t i = 0; i < job->n_attempts; i++)
		pos += (size_t)snprintf(got + pos, sizeof(got) - pos, "%s%s:%s:%s", i ? " " : "",
					smisd_op_name(job->attempts[i].op), job->attempts[i].ch->name,
					smisd_outcome_name(job->attempts[i].out.kind, job->attempts[i].op));
	CU_ASSERT_STRING_EQUAL(got, attempts);
	CU_ASSERT_STRING_EQUAL(job->status, status);
	if (strcmp(got, attempts) != 0 || strcmp(job->status, status) != 0)
		fprintf(stderr, "\n  %s: got [%s] %s, want [%s] %s\n", strategy, got, job->status, attempts, status);
	if (channel) {
		CU_ASSERT_STRING_EQUAL(job->channel, channel);
	} else {
		CU_ASSERT_PTR_NULL(job->channel);
	}
	smisd_job_free(job);
}

static void test_strategies(void)
{
	gen = smisd_generation_load(write_conf("good.conf", base_conf));
	CU_ASSERT_PTR_NOT_NULL_FATAL(gen);
	expect_run("first_yes", "lookup:app_yes:ok send:app_yes:sent", "sent", "app_yes");
	expect_run("first_noinst", "lookup:app_noinst:ok send:sms_ok:sent", "sent", "sms_ok");
	expect_run("first_off", "lookup:app_off:ok send:sms_ok:sent", "sent", "sms_ok");
	expect_run("first_fail", "lookup:app_fail:ok send:app_fail:temporary_failure send:sms_ok:sent", "sent", "sms_ok");
	expect_run("first_fail_nofb", "lookup:app_fail:ok send:app_fail:temporary_failure", "failed", NULL);
	expect_run("first_allfail",
		   "lookup:app_fail:ok send:app_fail:temporary_failure send:sms_fail:permanent_failure", "failed", NULL);
	expect_run("only_yes", "lookup:app_yes:ok send:app_yes:sent", "sent", "app_yes");
	expect_run("only_noinst", "lookup:app_noinst:ok", "failed", NULL);
	expect_run("sms", "send:sms_ok:sent", "sent", "sms_ok");
	expect_run("sms_bad", "send:sms_fail:permanent_failure", "failed", NULL);
	expect_run("both_yes", "lookup:app_yes:ok send:app_yes:sent send:sms_ok:sent", "sent", "app_yes");
	expect_run("both_off", "lookup:app_off:ok send:sms_ok:sent", "sent", "sms_ok");
	expect_run("chain_noinst", "lookup:app_noinst:ok send:sms_ok:sent", "sent", "sms_ok");
	expect_run("chain_yes", "lookup:app_yes:ok send:app_yes:sent", "sent", "app_yes");
	/* A step that answers a verdict that does not exist, or names a
	 * channel that does not exist, ends the chain with strategy_error,
	 * which reaches the answer; after a send it does not undo the send. */
	expect_run("bad_verdict", "", "failed", NULL);
	expect_run("bad_channel", "", "failed", NULL);
	expect_run("bad_late", "send:sms_ok:sent", "sent", "sms_ok");
	{
		static const char *const bad[] = { "bad_verdict", "bad_channel" };
		for (size_t i = 0; i < 2; i++) {
			struct smisd_job *job = run(bad[i]);
			CU_ASSERT_STRING_EQUAL(job->error, "strategy_error");
			CU_ASSERT_PTR_NOT_NULL(strstr(job->response_json, "\"error\":\"strategy_error\""));
			smisd_job_free(job);
		}
	}
	{
		struct smisd_job *job = run("bad_late");
		CU_ASSERT_PTR_NULL(strstr(job->response_json, "\"error\""));
		smisd_job_free(job);
	}
	{
		struct smisd_job *job = run("only_noinst");
		CU_ASSERT_STRING_EQUAL(job->error, "recipient_not_reachable");
		/* The lookup's language reached the message view. */
		CU_ASSERT_STRING_EQUAL(job->msg.citizen_language, "fr");
		smisd_job_free(job);
	}
	smisd_generation_unref(gen);
}

/* The answer of a run, as a client parses it: every field, and a
 * reference with characters JSON must escape coming back unchanged. */
static void test_answer_json(void)
{
	static const char reference[] = "ref \"quoted\" back\\slash\nnew\x01line caf\xc3\xa9";
	struct smisd_job *job;
	json_object *o, *v, *atts, *a;

	gen = smisd_generation_load(write_conf("good.conf", base_conf));
	CU_ASSERT_PTR_NOT_NULL_FATAL(gen);
	job = run("both_yes");
	job->req.reference = strdup(reference);
	job->created_ms = 1700000000123LL;
	smisd_job_conclude(job);
	o = json_tokener_parse(job->response_json);
	CU_ASSERT_PTR_NOT_NULL_FATAL(o);
	CU_ASSERT(json_object_object_get_ex(o, "id", &v) && strcmp(json_object_get_string(v), "msg_test") == 0);
	CU_ASSERT(json_object_object_get_ex(o, "status", &v) && strcmp(json_object_get_string(v), "sent") == 0);
	CU_ASSERT(json_object_object_get_ex(o, "channel", &v) && strcmp(json_object_get_string(v), "app_yes") == 0);
	CU_ASSERT(json_object_object_get_ex(o, "channels", &v) && json_object_array_length(v) == 2 &&
		  strcmp(json_object_get_string(json_object_array_get_idx(v, 1)), "sms_ok") == 0);
	CU_ASSERT(!json_object_object_get_ex(o, "error", &v));
	CU_ASSERT(json_object_object_get_ex(o, "strategy", &v) && strcmp(json_object_get_string(v), "both_yes") == 0);
	CU_ASSERT(json_object_object_get_ex(o, "reference", &v) && strcmp(json_object_get_string(v), reference) == 0);
	CU_ASSERT(json_object_object_get_ex(o, "created_at", &v) &&
		  strcmp(json_object_get_string(v), "2023-11-14T22:13:20.123Z") == 0);
	CU_ASSERT_FATAL(json_object_object_get_ex(o, "attempts", &atts) && json_object_array_length(atts) == 3);
	a = json_object_array_get_idx(atts, 0);
	CU_ASSERT(json_object_object_get_ex(a, "operation", &v) && strcmp(json_object_get_string(v), "lookup") == 0);
	CU_ASSERT(json_object_object_get_ex(a, "reachability", &v) &&
		  strcmp(json_object_get_string(v), "reachable") == 0);
	CU_ASSERT(json_object_object_get_ex(a, "devices", &v) && json_object_is_type(v, json_type_int));
	CU_ASSERT(json_object_object_get_ex(a, "duration_ms", &v) && json_object_is_type(v, json_type_int));
	a = json_object_array_get_idx(atts, 2);
	CU_ASSERT(json_object_object_get_ex(a, "channel", &v) && strcmp(json_object_get_string(v), "sms_ok") == 0);
	CU_ASSERT(json_object_object_get_ex(a, "outcome", &v) && strcmp(json_object_get_string(v), "sent") == 0);
	json_object_put(o);
	smisd_job_free(job);

	/* A failed run names its error; channel is null, channels empty. */
	job = run("only_noinst");
	o = json_tokener_parse(job->response_json);
	CU_ASSERT_PTR_NOT_NULL_FATAL(o);
	CU_ASSERT(json_object_object_get_ex(o, "channel", &v) && v == NULL);
	CU_ASSERT(json_object_object_get_ex(o, "channels", &v) && json_object_array_length(v) == 0);
	CU_ASSERT(json_object_object_get_ex(o, "error", &v) &&
		  strcmp(json_object_get_string(v), "recipient_not_reachable") == 0);
	json_object_put(o);
	smisd_job_free(job);
	smisd_generation_unref(gen);
}

/* Institution names are label values of /metrics: a quote, a backslash or
 * a newline in one forged series or broke the exposition. */
static void test_institution_names(void)
{
	static const char *const bad[] = { "\"\"", "\"a\\\"b\"", "\"a\\\\b\"", "\"a\\nb\"", "\"a\\x01\"",
					   "\"\\xff\"" };
	char name[80], set[96], labels[300], want[400];
	struct smisd_generation *g;
	char *t, *text;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(set, sizeof(set), "name = %s;", bad[i]);
		expect_edit_error("name = \"inst\";", set, "bad.conf:32: institution name must be 1-64 bytes of UTF-8");
	}
	memset(name, 'n', 65);
	name[65] = '\0';
	snprintf(set, sizeof(set), "name = \"%s\";", name);
	expect_edit_error("name = \"inst\";", set, "bad.conf:32: institution name must be 1-64 bytes");
	/* The longest name loads, and its longest label set renders whole. */
	name[64] = '\0';
	snprintf(set, sizeof(set), "name = \"%s\";", name);
	t = replace(base_conf, "name = \"inst\";", set);
	g = smisd_generation_load(write_conf("good5.conf", t));
	free(t);
	CU_ASSERT_PTR_NOT_NULL_FATAL(g);
	CU_ASSERT_STRING_EQUAL(g->institutions[0].name, name);
	smisd_generation_unref(g);
	snprintf(labels, sizeof(labels), "institution=\"%s\",strategy=\"%.48s\",status=\"failed\",channel=\"%.48s\"",
		 name, name, name);
	smisd_metric_add("smis_messages_total", labels, 1);
	text = smisd_metrics_render();
	snprintf(want, sizeof(want), "\nsmis_messages_total{%s} 1\n", labels);
	CU_ASSERT_TRUE(text && strstr(text, want));
	free(text);
	smisd_metrics_reset();
}

/* Each institution has its own limits, whatever its name: names of 64
 * bytes (the longest allowed) that differ only in the last one were cut to
 * the same 63 and shared one bucket and one quota. */
static void test_ratelimit_names(void)
{
	char a[65], b[65];
	int64_t now = 1700000000000;

	memset(a, 'x', 64);
	a[64] = '\0';
	memcpy(b, a, sizeof(b));
	b[63] = 'y';
	CU_ASSERT_EQUAL(smisd_ratelimit_quota(a, 1, now), 0);
	CU_ASSERT_NOT_EQUAL(smisd_ratelimit_quota(a, 1, now), 0); /* a's quota is spent */
	CU_ASSERT_EQUAL(smisd_ratelimit_quota(b, 1, now), 0);     /* b's is not */
	CU_ASSERT_EQUAL(smisd_ratelimit_take(a, 1, 1, now), 0);
	CU_ASSERT_NOT_EQUAL(smisd_ratelimit_take(a, 1, 1, now), 0);
	CU_ASSERT_EQUAL(smisd_ratelimit_take(b, 1, 1, now), 0);
	smisd_ratelimit_reset();
}

/* Out of memory for an institution's API keys: it loaded with none and no
 * error, and could not be called. The load fails now, and says why. */
static void test_config_out_of_memory(void)
{
	static const char *const keys =
		"api_keys = [ \"sha256:0000000000000000000000000000000000000000000000000000000000000001\",\n"
		"  \"sha256:0000000000000000000000000000000000000000000000000000000000000002\",\n"
		"  \"sha256:0000000000000000000000000000000000000000000000000000000000000003\" ];";
	char *t = replace(base_conf,
			  "api_keys = [ \"sha256:0000000000000000000000000000000000000000000000000000000000000000\" ];",
			  keys);
	struct smisd_generation *g;

	fail_alloc("calloc", 3, 32, 0);
	expect_config_error(t, "bad.conf:32: out of memory");
	CU_ASSERT_PTR_NULL(alloc_fail.fn); /* it was that calloc */
	alloc_fail.fn = NULL;
	g = smisd_generation_load(write_conf("good6.conf", t));
	free(t);
	CU_ASSERT_PTR_NOT_NULL_FATAL(g);
	CU_ASSERT_EQUAL(g->institutions[0].n_keys, 3);
	smisd_generation_unref(g);
}

/* Out of memory for a copy of a gateway identity or a calling code: the
 * list ended there, short of what was configured, and the load went on.
 * It fails now, at the setting's line. */
static void test_config_strdup_out_of_memory(void)
{
	static const char *const from = "default_strategy = \"first_yes\"; }";
	char *t = replace(base_conf, from,
			  "default_strategy = \"first_yes\";\n"
			  "  client_ids = [ \"gw-first\", \"gw-second\" ];\n"
			  "  allowed_countries = [ \"32\", \"352\" ]; }");

	strdup_fail_s = "gw-second";
	expect_config_error(t, "bad.conf:36: out of memory");
	CU_ASSERT_PTR_NULL(strdup_fail_s); /* it was that copy */
	strdup_fail_s = "352";
	expect_config_error(t, "bad.conf:37: out of memory");
	CU_ASSERT_PTR_NULL(strdup_fail_s);
	strdup_fail_s = NULL;
	free(t);
}

/* Out of memory for the copy of a setting's string: the load failed and
 * said nothing. For the path made of the store's: the store had none, and
 * the load went on. Both fail now, at the setting's line. */
static void test_config_setting_out_of_memory(void)
{
	char path[300], from_to[400];
	char *t;

	strdup_fail_s = "first_noinst";
	expect_config_error(base_conf, "bad.conf:13: out of memory");
	CU_ASSERT_PTR_NULL(strdup_fail_s); /* it was that copy */
	/* An absolute path is copied as it is, after the value's copy. */
	snprintf(path, sizeof(path), "%s/x.db", dir);
	snprintf(from_to, sizeof(from_to), "path = \"%s\";", path);
	t = replace(base_conf, "path = \"x.db\";", from_to);
	strdup_fail_s = path;
	strdup_fail_skip = 1;
	expect_config_error(t, "bad.conf:2: out of memory");
	CU_ASSERT_PTR_NULL(strdup_fail_s);
	/* A strategy step's channel name, copied for the plugin after the
	 * channel's own name: it read as "must be a channel name (string)". */
	strdup_fail_s = "app_noinst";
	strdup_fail_skip = 1;
	expect_config_error(base_conf, "bad.conf:13: out of memory reading 'app'");
	CU_ASSERT_PTR_NULL(strdup_fail_s);
	strdup_fail_s = NULL;
	free(t);
}

/* Load `text` with the call of `fn` (n, size) after `skip` such calls
 * failing, as without memory: the load fails and says `needle`, and the
 * call failed was made (the leaks of the way back are valgrind's and
 * ASan's to find: the unit tests run under both). */
static void expect_alloc_failure(const char *text, const char *fn, size_t n, size_t size, int skip,
				 const char *needle)
{
	fail_alloc(fn, n, size, skip);
	expect_config_error(text, needle);
	if (alloc_fail.fn)
		fprintf(stderr, "\n  %s(%zu, %zu) after %d was not called\n", fn, n, size, skip);
	CU_ASSERT_PTR_NULL(alloc_fail.fn);
	alloc_fail.fn = NULL;
}

/* Each calloc and realloc of generation.c without memory: the load fails
 * and says so at the setting it was reading (file:line), or with the
 * file's name for the generation itself, which said nothing. */
static void test_config_alloc_out_of_memory(void)
{
	const size_t ptr = sizeof(void *);
	char path[300];
	char *ids = replace(base_conf, "default_strategy = \"first_yes\"; }",
			    "default_strategy = \"first_yes\";\n"
			    "  client_ids = [ \"gw-first\", \"gw-second\" ];\n"
			    "  allowed_countries = [ \"32\", \"352\", \"33\" ]; }");
	char *issuers = replace(base_conf, "default_strategy = \"first_yes\"; } );\n",
				"default_strategy = \"first_yes\"; } );\n"
				"token_issuers = ( { issuer = \"i\"; audience = \"a\"; key_file = \"k.pem\"; } );\n");
	char *unloaded = replace(base_conf, "name = \"sms_fail\"; plugin = \"fakechan\";",
				 "name = \"sms_fail\"; plugin = \"nosuchplugin\";");

	expect_alloc_failure(base_conf, "calloc", 1, sizeof(struct smisd_generation), 0,
			     "bad.conf: out of memory");
	/* And its copy of the file's name, as silent. */
	snprintf(path, sizeof(path), "%s/bad.conf", dir);
	strdup_fail_s = path;
	expect_config_error(base_conf, "bad.conf: out of memory");
	CU_ASSERT_PTR_NULL(strdup_fail_s);
	strdup_fail_s = NULL;
	expect_alloc_failure(base_conf, "calloc", 7, sizeof(struct smisd_channel), 0,
			     "bad.conf:3: out of memory");
	/* g->plugins for the third plugin loaded (govapp_only, in only_yes). */
	expect_alloc_failure(base_conf, "realloc", 1, 3 * ptr, 0, "bad.conf:18: out of memory");
	expect_alloc_failure(base_conf, "calloc", 18, sizeof(struct smisd_strategy), 0,
			     "bad.conf:11: out of memory");
	/* The steps of chain_noinst, the first strategy of two. */
	expect_alloc_failure(base_conf, "calloc", 2, sizeof(struct smisd_step), 0,
			     "bad.conf:24: out of memory");
	expect_alloc_failure(base_conf, "calloc", 2, sizeof(struct smisd_institution), 0,
			     "bad.conf:32: out of memory");
	expect_alloc_failure(base_conf, "calloc", 14, ptr, 0, "bad.conf:33: out of memory");
	expect_alloc_failure(ids, "calloc", 3, ptr, 0, "bad.conf:36: out of memory");
	expect_alloc_failure(ids, "calloc", 4, ptr, 0, "bad.conf:37: out of memory");
	expect_alloc_failure(issuers, "calloc", 2, ptr, 0, "bad.conf:36: out of memory");
	/* The names of channels that did not load (the second realloc to one
	 * place, after g->plugins'): only to keep their steps from saying it
	 * again (line 9 said why), which they do without it. */
	expect_alloc_failure(unloaded, "realloc", 1, ptr, 1, "bad.conf:21: 'channel': no channel named 'sms_fail'");
	free(ids);
	free(issuers);
	free(unloaded);
}

/* Out of memory for a setting's path made relative to the configuration
 * file's folder (resolve_path's malloc, of the folder, '/', the path and
 * its NUL): the load fails at the setting's line, as for its copy. */
static void test_config_path_out_of_memory(void)
{
	char *ca = replace(base_conf, "{ name = \"sms_ok\"; plugin = \"fakechan\"; }",
			   "{ name = \"sms_ok\"; plugin = \"fakechan\"; http = { ca_file = \"ca.pem\"; }; }");
	char *issuers = replace(base_conf, "default_strategy = \"first_yes\"; } );\n",
				"default_strategy = \"first_yes\"; } );\n"
				"token_issuers = ( { issuer = \"i\"; audience = \"a\"; key_file = \"k.pem\"; } );\n");

	expect_alloc_failure(base_conf, "malloc", 1, strlen(dir) + strlen("/plugins") + 1, 0,
			     "bad.conf:1: out of memory");
	expect_alloc_failure(base_conf, "malloc", 1, strlen(dir) + strlen("/x.db") + 1, 0,
			     "bad.conf:2: out of memory");
	expect_alloc_failure(ca, "malloc", 1, strlen(dir) + strlen("/ca.pem") + 1, 0, "bad.conf:8: out of memory");
	expect_alloc_failure(issuers, "malloc", 1, strlen(dir) + strlen("/k.pem") + 1, 0,
			     "bad.conf:36: out of memory");
	free(ca);
	free(issuers);
}

/* Without memory for a recipient's entry the message went through with
 * no per-recipient limit ("availability first"), while the institution's
 * limits refuse. Refused too now (a second's wait), logged once until an
 * entry can be made again, and without the recipient. */
static void test_ratelimit_recipient_out_of_memory(void)
{
	static const char r1[] = "0101010101010101010101010101010101010101010101010101010101010101";
	static const char r2[] = "0202020202020202020202020202020202020202020202020202020202020202";
	static const char said[] = "no memory for the recipient limits of institution 'a': its requests are refused";
	int64_t now = 1700000000000;
	char logged[2048];
	const char *first;

	smisd_ratelimit_reset();
	capture_stderr();
	fail_alloc("calloc", 1, 0, 0); /* r1's entry */
	CU_ASSERT_EQUAL(smisd_ratelimit_recipient("a", r1, 2, 60, now), 1);
	CU_ASSERT_PTR_NULL(alloc_fail.fn);
	fail_alloc("calloc", 1, 0, 0); /* r2's */
	CU_ASSERT_EQUAL(smisd_ratelimit_recipient("a", r2, 2, 60, now), 1);
	CU_ASSERT_PTR_NULL(alloc_fail.fn);
	captured_stderr(logged, sizeof(logged));
	CU_ASSERT_TRUE(logged_has(logged, said));
	first = strstr(logged, said);
	CU_ASSERT_PTR_NULL(first ? strstr(first + 1, said) : NULL); /* once */
	CU_ASSERT_PTR_NULL(strstr(logged, "0101"));
	/* With memory again: counted from there, and limited. */
	CU_ASSERT_EQUAL(smisd_ratelimit_recipient("a", r1, 2, 60, now), 0);
	CU_ASSERT_EQUAL(smisd_ratelimit_recipient("a", r1, 2, 60, now), 0);
	CU_ASSERT_NOT_EQUAL(smisd_ratelimit_recipient("a", r1, 2, 60, now), 0);
	smisd_ratelimit_reset();
}

static bool only_a(const char *institution, const void *arg)
{
	(void)arg;
	return strcmp(institution, "a") == 0;
}

/* Institution state had 1024 places for the process's life: past 1024
 * names (renames over reloads) a new institution had no request rate and
 * no quota at all. Any number get their limits, and a reload drops the
 * names it no longer has. */
static void test_ratelimit_many_names(void)
{
	int64_t now = 1700000000000;
	int unlimited = 0;

	for (int i = 0; i < 1500; i++) {
		char name[16];
		snprintf(name, sizeof(name), "inst-%d", i);
		if (smisd_ratelimit_quota(name, 1, now) != 0 || smisd_ratelimit_quota(name, 1, now) == 0 ||
		    smisd_ratelimit_take(name, 1, 1, now) != 0 || smisd_ratelimit_take(name, 1, 1, now) == 0)
			unlimited++;
	}
	CU_ASSERT_EQUAL(unlimited, 0);
	smisd_ratelimit_reset();

	CU_ASSERT_EQUAL(smisd_ratelimit_quota("a", 1, now), 0);
	CU_ASSERT_EQUAL(smisd_ratelimit_quota("b", 1, now), 0);
	smisd_ratelimit_retain(only_a, NULL);
	CU_ASSERT_NOT_EQUAL(smisd_ratelimit_quota("a", 1, now), 0); /* kept: still spent */
	CU_ASSERT_EQUAL(smisd_ratelimit_quota("b", 1, now), 0);     /* dropped: afresh */
	smisd_ratelimit_reset();
}

/* Past the series table's 4096 places an update was lost without a
 * trace: it is counted now, in a family that needs no place. */
static void test_metrics_dropped_series(void)
{
	char labels[64], *text;

	smisd_metrics_reset();
	for (int i = 0; i < 4096; i++) {
		snprintf(labels, sizeof(labels), "route=\"r%d\",status=\"200\"", i);
		smisd_metric_add("smis_http_requests_total", labels, 1);
	}
	text = smisd_metrics_render();
	CU_ASSERT_TRUE(text && strstr(text, "\nsmis_metrics_series_dropped_total 0\n"));
	free(text);
	smisd_metric_add("smis_http_requests_total", "route=\"r0\",status=\"200\"", 1); /* has its place */
	smisd_metric_add("smis_http_requests_total", "route=\"new\",status=\"200\"", 1);
	smisd_metric_observe("smis_upstream_duration_seconds", "channel=\"x\",operation=\"send\"", 0.1);
	text = smisd_metrics_render();
	CU_ASSERT_TRUE(text && strstr(text, "\nsmis_http_requests_total{route=\"r0\",status=\"200\"} 2\n"));
	CU_ASSERT_TRUE(text && strstr(text, "\nsmis_metrics_series_dropped_total 2\n"));
	CU_ASSERT_FALSE(text && strstr(text, "route=\"new\""));
	free(text);
	smisd_metrics_reset();
}

/* A store's tables, enough for the retention, with one message of now. */
static sqlite3 *retention_db(const char *path)
{
	sqlite3 *db = NULL;
	char id[40], sql[200];

	unlink(path);
	CU_ASSERT_EQUAL_FATAL(sqlite3_open(path, &db), SQLITE_OK);
	smisd_new_id("msg_", id, sizeof(id));
	snprintf(sql, sizeof(sql),
		 "CREATE TABLE messages (id TEXT PRIMARY KEY); CREATE TABLE attempts (message_id TEXT);"
		 " CREATE TABLE reports (message_id TEXT); INSERT INTO messages VALUES ('%s');", id);
	CU_ASSERT_EQUAL(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
	return db;
}

/* retention_db() at `name` in the test folder (into `path`), then `sql`. */
static sqlite3 *retention_db_then(char *path, size_t size, const char *name, const char *sql)
{
	sqlite3 *db;

	snprintf(path, size, "%s/%s", dir, name);
	db = retention_db(path);
	CU_ASSERT_EQUAL(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
	return db;
}

/* `times` purges of db that delete nothing, each failing as the one before
 * it did: neither logged nor counted. */
static void retention_fails_quietly(sqlite3 *db, pthread_mutex_t *gate, struct smisd_retention *r, int times)
{
	char logged[4096];
	bool more;
	int failed;

	for (int i = 0; i < times; i++) {
		capture_stderr();
		CU_ASSERT_EQUAL(smisd_retention_purge(db, gate, r, smisd_now_ms() + 60000, &more, &failed), 0);
		CU_ASSERT_EQUAL(failed, 0);
		captured_stderr(logged, sizeof(logged));
		CU_ASSERT_STRING_EQUAL(logged, "");
	}
}

/* A purge of db that deletes nothing and fails anew: logged (`said`) and
 * counted once, then `quietly` more that fail as it did. */
static void retention_fails(sqlite3 *db, pthread_mutex_t *gate, struct smisd_retention *r, const char *said,
			    int quietly)
{
	char logged[4096];
	bool more;
	int failed;

	capture_stderr();
	CU_ASSERT_EQUAL(smisd_retention_purge(db, gate, r, smisd_now_ms() + 60000, &more, &failed), 0);
	CU_ASSERT_EQUAL(failed, 1);
	captured_stderr(logged, sizeof(logged));
	CU_ASSERT_TRUE(logged_has(logged, said));
	retention_fails_quietly(db, gate, r, quietly);
}

/* The failure of `step` over (3 tries failed): the purge deletes
 * retention_db's message, and says once that the step works again. */
static void retention_works_again(sqlite3 *db, pthread_mutex_t *gate, struct smisd_retention *r, const char *step)
{
	char logged[4096], said[100];
	const char *end;
	bool more;
	int failed;

	capture_stderr();
	CU_ASSERT_EQUAL(smisd_retention_purge(db, gate, r, smisd_now_ms() + 60000, &more, &failed), 1);
	CU_ASSERT_FALSE(failed);
	CU_ASSERT_EQUAL(smisd_retention_purge(db, gate, r, smisd_now_ms() + 60000, &more, &failed), 0);
	CU_ASSERT_FALSE(failed);
	captured_stderr(logged, sizeof(logged));
	snprintf(said, sizeof(said), "retention: %s works again, after 3 failed tries in ", step);
	CU_ASSERT_TRUE(logged_has(logged, said));
	snprintf(said, sizeof(said), "retention: %s failed", step);
	CU_ASSERT_PTR_NULL(strstr(logged, said));
	end = strstr(logged, "works again");
	CU_ASSERT_PTR_NULL(end ? strstr(end + 1, "works again") : NULL); /* once */
}

/* A read that fails (the database locked by another connection: an
 * operator's shell in a transaction) is an error, logged and counted by
 * the store, not "nothing to delete". While it lasts it is logged and
 * counted once, not at each purge (once a second), and its end is logged
 * once, with how many tries failed. */
static void test_retention_read_fails(void)
{
	static pthread_mutex_t gate = PTHREAD_MUTEX_INITIALIZER;
	char path[300];
	sqlite3 *db, *other = NULL;
	struct smisd_retention r = { 0 };

	snprintf(path, sizeof(path), "%s/retention.db", dir);
	db = retention_db(path);
	CU_ASSERT_EQUAL_FATAL(sqlite3_open(path, &other), SQLITE_OK);
	CU_ASSERT_EQUAL(sqlite3_exec(other, "BEGIN EXCLUSIVE", NULL, NULL, NULL), SQLITE_OK);
	retention_fails(db, &gate, &r, "retention: read failed: database is locked", 2);
	CU_ASSERT_TRUE(sqlite3_get_autocommit(db)); /* no transaction left open */
	CU_ASSERT_EQUAL(sqlite3_exec(other, "ROLLBACK", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(other);
	/* The lock gone, the message goes, and the end is said once. */
	retention_works_again(db, &gate, &r, "read");
	sqlite3_close(db);
	unlink(path);
}

/* A purge statement that cannot be prepared (a schema without the column
 * it names) is logged and counted once while it lasts, as a lock is, not
 * once a second, and its end once. Another statement failing next, with
 * the same code and message, is another failure: logged and counted. */
static void test_retention_prepare_fails(void)
{
	static pthread_mutex_t gate = PTHREAD_MUTEX_INITIALIZER;
	struct smisd_retention r = { 0 };
	char path[300];
	sqlite3 *db = retention_db_then(path, sizeof(path), "retention-prepare.db",
					"DROP TABLE attempts; CREATE TABLE attempts (x);");

	retention_fails(db, &gate, &r, "retention: prepare delete attempts failed: no such column: message_id", 2);
	CU_ASSERT_EQUAL(sqlite3_exec(db, "DROP TABLE attempts; CREATE TABLE attempts (message_id TEXT);"
					 " DROP TABLE reports; CREATE TABLE reports (x);", NULL, NULL, NULL),
			SQLITE_OK);
	retention_fails(db, &gate, &r, "retention: prepare delete reports failed: no such column: message_id", 2);
	CU_ASSERT_EQUAL(sqlite3_exec(db, "DROP TABLE reports; CREATE TABLE reports (message_id TEXT);", NULL, NULL, NULL),
			SQLITE_OK);
	retention_works_again(db, &gate, &r, "prepare delete reports");
	sqlite3_close(db);
	unlink(path);
}

/* A BEGIN that fails (here: a transaction already open) is logged as
 * such, not as a failed delete. */
static void test_retention_begin_fails(void)
{
	static pthread_mutex_t gate = PTHREAD_MUTEX_INITIALIZER;
	char path[300];
	sqlite3 *db;
	struct smisd_retention r = { 0 };

	db = retention_db_then(path, sizeof(path), "retention-begin.db", "BEGIN");
	retention_fails(db, &gate, &r, "retention: begin failed: cannot start a transaction within a transaction", 0);
	CU_ASSERT_TRUE(sqlite3_get_autocommit(db));
	sqlite3_close(db);
	unlink(path);
}

/* Pages 2 and 3 of the file at `path` (the messages table and its
 * index in retention_db's) into `saved` and overwritten with a page type
 * that is none, or written back from `saved`. */
static void retention_damage(const char *path, unsigned char *saved, size_t size, bool repair)
{
	unsigned char junk[8192];
	FILE *f = fopen(path, "r+b");

	CU_ASSERT_FATAL(f != NULL && size == sizeof(junk));
	memset(junk, 0xff, sizeof(junk));
	CU_ASSERT_EQUAL(fseek(f, 4096, SEEK_SET), 0);
	if (!repair)
		CU_ASSERT_EQUAL(fread(saved, 1, size, f), size);
	CU_ASSERT_EQUAL(fseek(f, 4096, SEEK_SET), 0);
	CU_ASSERT_EQUAL(fwrite(repair ? saved : junk, 1, size, f), size);
	fclose(f);
}

/* A read that fails for good (a damaged page) is logged and counted once,
 * not at each purge (once a second), yet tried again at each: once the
 * operator repaired the page, the purge goes on, and a new failure is
 * logged again. */
static void test_retention_read_fails_for_good(void)
{
	static pthread_mutex_t gate = PTHREAD_MUTEX_INITIALIZER;
	char path[300], logged[4096];
	unsigned char saved[8192];
	sqlite3 *db;
	struct smisd_retention r = { 0 };
	bool more;
	int failed;

	snprintf(path, sizeof(path), "%s/retention-damaged.db", dir);
	sqlite3_close(retention_db(path));
	retention_damage(path, saved, sizeof(saved), false);
	CU_ASSERT_EQUAL_FATAL(sqlite3_open(path, &db), SQLITE_OK);
	capture_stderr();
	CU_ASSERT_EQUAL(smisd_retention_purge(db, &gate, &r, smisd_now_ms() + 60000, &more, &failed), 0);
	CU_ASSERT_EQUAL(failed, 1);
	captured_stderr(logged, sizeof(logged));
	CU_ASSERT_TRUE(logged_has(logged, "retention: read failed: database disk image is malformed"));
	retention_fails_quietly(db, &gate, &r, 3);
	sqlite3_close(db);
	retention_damage(path, saved, sizeof(saved), true);
	CU_ASSERT_EQUAL_FATAL(sqlite3_open(path, &db), SQLITE_OK);
	CU_ASSERT_EQUAL(smisd_retention_purge(db, &gate, &r, smisd_now_ms() + 60000, &more, &failed), 1);
	CU_ASSERT_EQUAL(failed, 0);
	sqlite3_close(db);
	retention_damage(path, saved, sizeof(saved), false);
	CU_ASSERT_EQUAL_FATAL(sqlite3_open(path, &db), SQLITE_OK);
	CU_ASSERT_EQUAL(smisd_retention_purge(db, &gate, &r, smisd_now_ms() + 60000, &more, &failed), 0);
	CU_ASSERT_EQUAL(failed, 1); /* failing anew after a read that did not */
	sqlite3_close(db);
	unlink(path);
}

/* `n` messages a minute old on top of retention_db's, each with an
 * attempt and a report; the id of the `nth` (from 1, in id order) into
 * `nth_id`. */
static void retention_fill(sqlite3 *db, int n, int nth, char *nth_id, size_t size)
{
	char old[32], sql[400];
	sqlite3_stmt *st = NULL;

	smisd_id_time_bound("msg_", smisd_now_ms() - 60000, old, sizeof(old));
	snprintf(sql, sizeof(sql),
		 "WITH RECURSIVE k(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM k WHERE i < %d),"
		 " ids(id) AS (SELECT '%s' || printf('%%06d', i) FROM k)"
		 " INSERT INTO messages SELECT id FROM ids;"
		 " INSERT INTO attempts SELECT id FROM messages WHERE id < '%s~';"
		 " INSERT INTO reports SELECT id FROM messages WHERE id < '%s~';",
		 n, old, old, old);
	CU_ASSERT_EQUAL(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
	CU_ASSERT_EQUAL_FATAL(sqlite3_prepare_v2(db, "SELECT id FROM messages ORDER BY id LIMIT 1 OFFSET ?", -1,
						 &st, NULL), SQLITE_OK);
	sqlite3_bind_int(st, 1, nth - 1);
	CU_ASSERT_EQUAL(sqlite3_step(st), SQLITE_ROW);
	snprintf(nth_id, size, "%s", (const char *)sqlite3_column_text(st, 0));
	sqlite3_finalize(st);
}

/* Rows left in `table`. */
static int retention_rows(sqlite3 *db, const char *table)
{
	char sql[100];
	sqlite3_stmt *st = NULL;
	int n = -1;

	snprintf(sql, sizeof(sql), "SELECT count(*) FROM %s", table);
	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
		n = sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	return n;
}

/* An SQL function that interrupts its connection, as sqlite3_interrupt()
 * from another thread would. */
static void interrupt_fn(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
	(void)argc;
	(void)argv;
	sqlite3_interrupt(sqlite3_context_db_handle(ctx));
	sqlite3_result_null(ctx);
}

/* A purge refused in its second transaction by a refusal that ends the
 * transaction (`action`, run by a trigger on the delete of the 1,200th old
 * message): the first 1,000 messages, committed, are deleted and counted;
 * the refused one is found, logged and counted once, and left with its
 * attempt and report; the others are deleted all the same, and the purges
 * after leave it alone (until 2026-12 it was tried, logged and counted
 * again once a second, and no younger message was ever deleted). A new
 * start (a new state) tries it again: the refusal gone, it goes. */
static void retention_refused_midway(const char *action, const char *logged_reason)
{
	static pthread_mutex_t gate = PTHREAD_MUTEX_INITIALIZER;
	char path[300], nth[64], sql[300], logged[4096];
	sqlite3 *db;
	struct smisd_retention r = { 0 }, restarted = { 0 };
	bool more = true;
	int errors = 0, failed = 0;
	long purged = 0;

	snprintf(path, sizeof(path), "%s/retention-refused.db", dir);
	db = retention_db(path);
	CU_ASSERT_EQUAL(sqlite3_create_function(db, "interrupt", 0, SQLITE_UTF8, NULL, interrupt_fn, NULL, NULL),
			SQLITE_OK);
	retention_fill(db, 1500, 1200, nth, sizeof(nth));
	snprintf(sql, sizeof(sql), "CREATE TEMP TRIGGER refuse BEFORE DELETE ON main.messages WHEN OLD.id = '%s'"
		 " BEGIN SELECT %s; END", nth, action);
	CU_ASSERT_EQUAL(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
	capture_stderr();
	/* Calls end after 50 ms (slow under valgrind): again while more is left. */
	do {
		purged += smisd_retention_purge(db, &gate, &r, smisd_now_ms() - 30000, &more, &failed);
		errors += failed;
	} while (more);
	captured_stderr(logged, sizeof(logged));
	CU_ASSERT_EQUAL(purged, 1499);
	CU_ASSERT_EQUAL(errors, 1);
	CU_ASSERT_TRUE(logged_has(logged, logged_reason));
	CU_ASSERT_TRUE(logged_has(logged, nth));
	CU_ASSERT_TRUE(sqlite3_get_autocommit(db));
	CU_ASSERT_EQUAL(retention_rows(db, "messages"), 2); /* retention_db's young one too */
	CU_ASSERT_EQUAL(retention_rows(db, "attempts"), 1);
	CU_ASSERT_EQUAL(retention_rows(db, "reports"), 1);
	/* Left: not tried again. */
	CU_ASSERT_EQUAL(smisd_retention_purge(db, &gate, &r, smisd_now_ms() - 30000, &more, &failed), 0);
	CU_ASSERT_EQUAL(failed, 0);
	CU_ASSERT_FALSE(more);
	/* Younger ones still go. */
	retention_fill(db, 10, 1, sql, sizeof(sql));
	CU_ASSERT_EQUAL(smisd_retention_purge(db, &gate, &r, smisd_now_ms() - 30000, &more, &failed), 10);
	CU_ASSERT_EQUAL(failed, 0);
	CU_ASSERT_EQUAL(sqlite3_exec(db, "DROP TRIGGER refuse", NULL, NULL, NULL), SQLITE_OK);
	CU_ASSERT_EQUAL(smisd_retention_purge(db, &gate, &restarted, smisd_now_ms() - 30000, &more, &failed), 1);
	CU_ASSERT_EQUAL(failed, 0);
	CU_ASSERT_EQUAL(retention_rows(db, "messages"), 1);
	CU_ASSERT_EQUAL(retention_rows(db, "attempts") + retention_rows(db, "reports"), 0);
	sqlite3_close(db);
	unlink(path);
}

/* The purge's metric counted nothing of a call whose later transaction
 * failed: up to 15,000 messages deleted went uncounted. */
static void test_retention_rolled_back_by_refusal(void)
{
	retention_refused_midway("RAISE(ROLLBACK, 'delete refused by the test')",
				 "retention: message left for good: delete refused: delete refused by the test");
}

static void test_retention_interrupted(void)
{
	retention_refused_midway("interrupt()", "retention: message left for good: delete refused: interrupted");
}

/* Removing a job that is not in the index leaves the others findable. */
static void test_unstored_remove_absent(void)
{
	struct smisd_institution inst = { .name = (char *)"inst-a" };
	struct smisd_job kept = { .inst = &inst, .status = "sent" }, never = { .inst = &inst };
	char *answer = NULL;
	const char *status = NULL;
	int64_t updated_ms;

	snprintf(kept.id, sizeof(kept.id), "msg_kept");
	snprintf(never.id, sizeof(never.id), "msg_never_added");
	smisd_unstored_remove(&never);
	smisd_unstored_add(&kept);
	CU_ASSERT_TRUE(smisd_unstored_exists("msg_kept"));
	CU_ASSERT_EQUAL(smisd_unstored_get("inst-a", "msg_kept", &answer, &status, &updated_ms), 0);
	CU_ASSERT_STRING_EQUAL(status ? status : "", "sent");
	free(answer);
	smisd_unstored_remove(&kept);
	CU_ASSERT_FALSE(smisd_unstored_exists("msg_kept"));
}

/* After a reload the loops run requests of both generations: the newest
 * one's per-host cap holds, an old request does not set its own back. */
static void test_host_cap_follows_the_newest_generation(void)
{
	struct smisd_channel old_ch[2] = { { .http.max_connections = 4 }, { .http.max_connections = 0 } };
	struct smisd_channel new_ch[1] = { { .http.max_connections = 9 } };
	struct smisd_generation old_gen = { .id = 7, .channels = old_ch, .n_channels = 2 };
	struct smisd_generation new_gen = { .id = 8, .channels = new_ch, .n_channels = 1 };
	unsigned long applied = 0;

	CU_ASSERT_EQUAL(smisd_dispatcher_host_cap(&applied, &old_gen, 2), 2); /* 4 shared by 2 loops */
	CU_ASSERT_EQUAL(smisd_dispatcher_host_cap(&applied, &old_gen, 2), -1);
	CU_ASSERT_EQUAL(smisd_dispatcher_host_cap(&applied, &new_gen, 2), 5); /* rounded up */
	CU_ASSERT_EQUAL(smisd_dispatcher_host_cap(&applied, &old_gen, 2), -1);
	CU_ASSERT_EQUAL(smisd_dispatcher_host_cap(&applied, &new_gen, 2), -1);
	CU_ASSERT_EQUAL(applied, 8);
	/* Without a cap in the newest generation, curl's default (0) again. */
	new_ch[0].http.max_connections = 0;
	new_gen.id = 9;
	CU_ASSERT_EQUAL(smisd_dispatcher_host_cap(&applied, &new_gen, 1), 0);
}

/* A store of its own in the test folder, open. */
static void open_store(const char *name)
{
	char path[300];

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	unlink(path);
	CU_ASSERT_EQUAL_FATAL(smisd_store_open(path, 16, 0), 0);
}

/* Reports that come once the store is closing were taken (0) and dropped:
 * the caller is told, and answers 503 shutting_down. */
static void test_store_reports_while_closing(void)
{
	struct smis_report r = { .provider_ref = "ref-1", .status = SMIS_REPORT_DELIVERED };

	open_store("closing.db");
	smisd_store_close();
	CU_ASSERT_EQUAL(smisd_store_submit_reports("ringring", false, &r, 1), -ESHUTDOWN);
}

/* A message answered and not yet committed whose copy fails for lack of
 * memory: the read fails (500), it does not go on to the database and
 * answer 404 for a message just answered. */
static void test_store_get_unstored_out_of_memory(void)
{
	struct smisd_institution inst = { .name = (char *)"inst-a" };
	struct smisd_job job = { .inst = &inst, .status = "sent",
				 .response_json = (char *)"{\"id\":\"msg_oom\"}" };
	char *json = NULL;

	snprintf(job.id, sizeof(job.id), "msg_oom");
	open_store("unstored.db");
	smisd_unstored_add(&job);
	strdup_fail_s = job.response_json;
	CU_ASSERT_EQUAL(smisd_store_get_message("inst-a", "msg_oom", &json), -ENOMEM);
	CU_ASSERT_PTR_NULL(strdup_fail_s); /* it was that copy */
	CU_ASSERT_PTR_NULL(json);
	strdup_fail_s = NULL;
	CU_ASSERT_EQUAL(smisd_store_get_message("inst-a", "msg_oom", &json), 0);
	CU_ASSERT_TRUE(json && strstr(json, "\"msg_oom\""));
	free(json);
	smisd_unstored_remove(&job);
	smisd_store_close();
}

/* A store whose schema cannot be read at start (here `attempts` is a view
 * of a table that is gone): the start fails with the reason, not with
 * what adding attempts.lookup_ref, taken for missing, would say. */
static void test_store_schema_unreadable(void)
{
	char path[300], logged[4096];
	sqlite3 *db = NULL;

	snprintf(path, sizeof(path), "%s/unreadable.db", dir);
	unlink(path);
	CU_ASSERT_EQUAL_FATAL(sqlite3_open(path, &db), SQLITE_OK);
	CU_ASSERT_EQUAL(sqlite3_exec(db, "CREATE TABLE gone (x); CREATE VIEW attempts AS SELECT * FROM gone;"
					 " DROP TABLE gone;", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
	capture_stderr();
	CU_ASSERT_EQUAL(smisd_store_open(path, 16, 0), -1);
	captured_stderr(logged, sizeof(logged));
	CU_ASSERT_TRUE(logged_has(logged, "cannot read the schema of"));
	CU_ASSERT_TRUE(logged_has(logged, "no such table: main.gone"));
}

/* How many status polls' reports were dropped, as /metrics says. */
static int poll_reports_dropped(void)
{
	static const char series[] = "\nsmis_store_errors_total{operation=\"poll_reports\"} ";
	char *text = smisd_metrics_render();
	const char *at = text ? strstr(text, series) : NULL;
	int n = at ? atoi(at + strlen(series)) : 0;

	free(text);
	return n;
}

/* A status poll's reports that the store does not take are dropped (the
 * next poll asks again), and that is counted whatever the cause: before,
 * only a full queue was even logged. */
static void test_poll_reports_dropped(void)
{
	struct smisd_channel ch = { .name = (char *)"sms" };
	struct smis_report r = { .provider_ref = "ref-1", .status = SMIS_REPORT_DELIVERED };
	struct smisd_attempt a = { .ch = &ch, .op = SMIS_OP_STATUS,
				   .out = { .kind = SMIS_OUTCOME_OK, .reports = &r, .n_reports = 1 } };
	struct smisd_job job = { .poll_channel = &ch, .single_op = SMIS_OP_STATUS, .attempts = &a, .n_attempts = 1 };

	snprintf(job.id, sizeof(job.id), "msg_polled");
	smisd_metrics_reset();
	open_store("polls.db");
	fail_alloc("calloc", 1, 0, 0); /* the report's place in the queue */
	smisd_dispatcher_store_poll_reports_for_test(&job);
	CU_ASSERT_PTR_NULL(alloc_fail.fn);
	CU_ASSERT_EQUAL(poll_reports_dropped(), 1);
	smisd_dispatcher_store_poll_reports_for_test(&job); /* taken */
	CU_ASSERT_EQUAL(poll_reports_dropped(), 1);
	smisd_store_close();
	smisd_dispatcher_store_poll_reports_for_test(&job); /* closing */
	CU_ASSERT_EQUAL(poll_reports_dropped(), 2);
	smisd_metrics_reset();
}

/* Reports the attempt cannot keep (no memory to copy them out of the
 * plugin's outcome) are dropped like those the store does not take: said
 * and counted. Before, they vanished silently. */
static void test_poll_reports_not_kept(void)
{
	struct smisd_channel ch = { .name = (char *)"sms" };
	struct smis_outcome out = { .kind = SMIS_OUTCOME_OK, .n_reports = 2 };
	struct smisd_attempt a = { .ch = &ch, .op = SMIS_OP_STATUS };
	struct smisd_job job = { .poll_channel = &ch, .single_op = SMIS_OP_STATUS, .attempts = &a, .n_attempts = 1 };
	char logged[1024];

	snprintf(job.id, sizeof(job.id), "msg_polled");
	snprintf(out.reports[0].provider_ref, sizeof(out.reports[0].provider_ref), "ref-1");
	snprintf(out.reports[1].provider_ref, sizeof(out.reports[1].provider_ref), "ref-2");
	smisd_metrics_reset();
	open_store("polls-kept.db");
	fail_alloc("calloc", 2, sizeof(struct smis_report), 0); /* the kept copy of the two reports */
	smisd_outcome_keep(&a.out, &out);
	CU_ASSERT_PTR_NULL(alloc_fail.fn);
	CU_ASSERT_PTR_NULL(a.out.reports);
	CU_ASSERT_EQUAL(a.out.n_reports, 0);
	capture_stderr();
	smisd_dispatcher_store_poll_reports_for_test(&job);
	captured_stderr(logged, sizeof(logged));
	CU_ASSERT_TRUE(logged_has(logged, "a status poll's 2 report(s) dropped: out of memory"));
	CU_ASSERT_PTR_NULL(strstr(logged, "ref-1"));
	CU_ASSERT_EQUAL(poll_reports_dropped(), 1);
	smisd_outcome_keep(&a.out, &out); /* kept, and taken */
	CU_ASSERT_EQUAL(a.out.n_reports, 2);
	smisd_dispatcher_store_poll_reports_for_test(&job);
	CU_ASSERT_EQUAL(poll_reports_dropped(), 1);
	free(a.out.reports);
	smisd_store_close();
	smisd_metrics_reset();
}

int main(void)
{
	CU_pSuite s;
	unsigned failed;
	if (CU_initialize_registry() != CUE_SUCCESS)
		return 2;
	s = CU_add_suite("core", setup, teardown);
	CU_add_test(s, "plugin loader", test_loader);
	CU_add_test(s, "descriptor checks", test_descriptor_checks);
	CU_add_test(s, "valid configuration", test_config_valid);
	CU_add_test(s, "configuration errors name file:line", test_config_errors);
	CU_add_test(s, "a setting without memory is said", test_config_setting_out_of_memory);
	CU_add_test(s, "configuration out of memory", test_config_out_of_memory);
	CU_add_test(s, "configuration out of memory for a copied value", test_config_strdup_out_of_memory);
	CU_add_test(s, "strategy decisions", test_strategies);
	CU_add_test(s, "message ids carry their time", test_id_time);
	CU_add_test(s, "no id without random bytes", test_id_without_random);
	CU_add_test(s, "answer JSON", test_answer_json);
	CU_add_test(s, "rate limits per institution, whole names", test_ratelimit_names);
	CU_add_test(s, "rate limit per recipient without memory refuses", test_ratelimit_recipient_out_of_memory);
	CU_add_test(s, "rate limits for any number of institutions", test_ratelimit_many_names);
	CU_add_test(s, "institution names are label values", test_institution_names);
	CU_add_test(s, "metric updates past the series table are counted", test_metrics_dropped_series);
	CU_add_test(s, "config: each calloc and realloc without memory is reported", test_config_alloc_out_of_memory);
	CU_add_test(s, "config: a path without memory is reported", test_config_path_out_of_memory);
	CU_add_test(s, "retention: a failed read is an error, logged once while it lasts", test_retention_read_fails);
	CU_add_test(s, "retention: a failed prepare is logged once while it lasts", test_retention_prepare_fails);
	CU_add_test(s, "retention: a failed BEGIN is logged as such", test_retention_begin_fails);
	CU_add_test(s, "retention: a read failing for good is logged and counted once",
		    test_retention_read_fails_for_good);
	CU_add_test(s, "retention: a transaction rolled back by a refusal", test_retention_rolled_back_by_refusal);
	CU_add_test(s, "retention: a transaction interrupted", test_retention_interrupted);
	CU_add_test(s, "unstored: removing an absent job", test_unstored_remove_absent);
	CU_add_test(s, "host cap follows the newest generation", test_host_cap_follows_the_newest_generation);
	CU_add_test(s, "store: reports while closing are refused", test_store_reports_while_closing);
	CU_add_test(s, "store: a message in memory that cannot be copied", test_store_get_unstored_out_of_memory);
	CU_add_test(s, "dispatcher: a status poll's reports dropped are counted", test_poll_reports_dropped);
	CU_add_test(s, "dispatcher: a status poll's reports not kept are counted", test_poll_reports_not_kept);
	CU_add_test(s, "store: a schema that cannot be read fails the start", test_store_schema_unreadable);
	CU_add_test(s, "job: timestamps as gmtime_r and snprintf write them", test_iso8601);
	CU_add_test(s, "core: smisd_concat writes and counts as snprintf", test_concat);
	CU_basic_set_mode(CU_BRM_VERBOSE);
	CU_basic_run_tests();
	failed = CU_get_number_of_failures();
	CU_cleanup_registry();
	return failed ? 1 : 0;
}
