# Core tests: CUnit unit tests, test plugins, and the integration suite
# that runs smisd and both simulators on loopback.

# Test plugins are real modules (-rpath makes libtool build a .so).
TEST_PLUGIN_LDFLAGS = -module -avoid-version -shared -no-undefined -rpath /nowhere $(SAN_CFLAGS)
check_LTLIBRARIES += tests/plugins/fakechan.la tests/plugins/badabi.la \
	tests/plugins/missingop.la tests/plugins/nodesc.la tests/plugins/badstep.la \
	tests/plugins/nomem_claim.la tests/plugins/norandom.la tests/plugins/slowresume.la \
	tests/plugins/loopquiesce.la tests/plugins/nobufs.la tests/plugins/nomem_json.la \
	tests/plugins/diskfull.la tests/plugins/walsync.la
tests_plugins_fakechan_la_SOURCES = tests/plugins/fakechan.c
tests_plugins_fakechan_la_LDFLAGS = $(TEST_PLUGIN_LDFLAGS)
tests_plugins_badabi_la_SOURCES = tests/plugins/badabi.c
tests_plugins_badabi_la_LDFLAGS = $(TEST_PLUGIN_LDFLAGS)
tests_plugins_missingop_la_SOURCES = tests/plugins/missingop.c
tests_plugins_missingop_la_LDFLAGS = $(TEST_PLUGIN_LDFLAGS)
tests_plugins_nodesc_la_SOURCES = tests/plugins/nodesc.c
tests_plugins_nodesc_la_LDFLAGS = $(TEST_PLUGIN_LDFLAGS)
tests_plugins_badstep_la_SOURCES = tests/plugins/badstep.c
tests_plugins_badstep_la_LDFLAGS = $(TEST_PLUGIN_LDFLAGS)
# Not a plugin: preloaded into smisd by test_core_api.py (ClaimWithoutMemory).
tests_plugins_nomem_claim_la_SOURCES = tests/plugins/nomem_claim.c
tests_plugins_nomem_claim_la_LDFLAGS = $(TEST_PLUGIN_LDFLAGS)
# Not a plugin either: preloaded by test_core_api.py (RequestIdWithoutRandom).
tests_plugins_norandom_la_SOURCES = tests/plugins/norandom.c
tests_plugins_norandom_la_LDFLAGS = $(TEST_PLUGIN_LDFLAGS)
# Nor this: preloaded by test_operations.py (GracefulStop).
tests_plugins_slowresume_la_SOURCES = tests/plugins/slowresume.c
tests_plugins_slowresume_la_LDFLAGS = $(TEST_PLUGIN_LDFLAGS)
# Nor this: preloaded by test_core_api.py (Draining).
tests_plugins_loopquiesce_la_SOURCES = tests/plugins/loopquiesce.c
tests_plugins_loopquiesce_la_LDFLAGS = $(TEST_PLUGIN_LDFLAGS)
# Nor this: preloaded by test_robustness.py (NoSocketMemory).
tests_plugins_nobufs_la_SOURCES = tests/plugins/nobufs.c
tests_plugins_nobufs_la_LDFLAGS = $(TEST_PLUGIN_LDFLAGS)
# Nor this: preloaded by test_durability.py (DiskFull).
tests_plugins_diskfull_la_SOURCES = tests/plugins/diskfull.c tests/plugins/preload.h
tests_plugins_diskfull_la_LDFLAGS = $(TEST_PLUGIN_LDFLAGS)
# Nor this: preloaded by test_durability.py (CommitFirstFlushesTheWal).
tests_plugins_walsync_la_SOURCES = tests/plugins/walsync.c tests/plugins/preload.h
tests_plugins_walsync_la_LDFLAGS = $(TEST_PLUGIN_LDFLAGS)
# Nor this: preloaded into smis-encrypt and smisctl by test_govapp_full.py
# and test_smisctl.py (json-c out of memory while a request is built).
tests_plugins_nomem_json_la_SOURCES = tests/plugins/nomem_json.c
tests_plugins_nomem_json_la_CFLAGS = $(AM_CFLAGS) $(JSONC_CFLAGS)
tests_plugins_nomem_json_la_LDFLAGS = $(TEST_PLUGIN_LDFLAGS)
tests_plugins_nomem_json_la_LIBADD = $(JSONC_LIBS)

CORE_TEST_CFLAGS = $(AM_CFLAGS) $(CUNIT_CFLAGS) $(CURL_CFLAGS) $(JSONC_CFLAGS) $(LIBCONFIG_CFLAGS) \
	-DSMIS_TEST_BUILDDIR='"$(abs_top_builddir)"'
CORE_TEST_LDADD = daemon/libsmisd.la $(CUNIT_LIBS)

check_PROGRAMS += tests/unit/test_phone tests/unit/test_request tests/unit/test_core \
	tests/unit/test_json_writer
TESTS += tests/unit/test_phone tests/unit/test_request tests/unit/test_core tests/unit/test_json_writer
tests_unit_test_phone_SOURCES = tests/unit/test_phone.c
tests_unit_test_phone_CFLAGS = $(CORE_TEST_CFLAGS)
tests_unit_test_phone_LDADD = $(CORE_TEST_LDADD)
tests_unit_test_request_SOURCES = tests/unit/test_request.c
tests_unit_test_request_CFLAGS = $(CORE_TEST_CFLAGS)
tests_unit_test_request_LDADD = $(CORE_TEST_LDADD)
# realloc() of the daemon's code goes through the test's __wrap_realloc.
tests_unit_test_request_LDFLAGS = -Wl,--wrap=realloc
tests_unit_test_core_SOURCES = tests/unit/test_core.c
tests_unit_test_core_CFLAGS = $(CORE_TEST_CFLAGS) $(SQLITE_CFLAGS)
tests_unit_test_core_LDADD = $(CORE_TEST_LDADD) $(SQLITE_LIBS)
# malloc(), calloc(), realloc() and strdup() of the daemon's code go through the
# test's __wrap_malloc, __wrap_calloc, __wrap_realloc and __wrap_strdup, which can fail
# them as without memory (valgrind's allocator cannot be made to).
tests_unit_test_core_LDFLAGS = -Wl,--wrap=malloc -Wl,--wrap=calloc -Wl,--wrap=realloc -Wl,--wrap=strdup
tests_unit_test_json_writer_SOURCES = tests/unit/test_json_writer.c
tests_unit_test_json_writer_CFLAGS = $(CORE_TEST_CFLAGS)
tests_unit_test_json_writer_LDADD = $(CORE_TEST_LDADD)

# test_core dlopens the built strategy plugins (plugin-dir, made by
# all-local before any check) and the test plugins (check_LTLIBRARIES).

# Unit tests run under valgrind when it is installed (SMIS_NO_VALGRIND=1
# skips it); integration tests are Python (standard library, and PyYAML
# for test_openapi.py's YAML checks, skipped without it; PyYAML and
# jsonschema for conformance.py's check of every answer of smisd against
# docs/openapi.yaml, which test_conformance.py fails without).
LOG_COMPILER = $(SHELL) $(top_srcdir)/tests/run-unit.sh
PY_LOG_COMPILER = python3
EXTRA_DIST += tests/run-unit.sh tests/integration tests/valgrind.supp

# Integration: smisd + simulators on loopback, over real HTTP.
TESTS += tests/integration/test_core_api.py
EXTRA_DIST += tests/integration/harness.py tests/integration/conformance.py
TESTS += tests/integration/test_operations.py tests/integration/test_answer_first.py
TESTS += tests/integration/test_openapi.py tests/integration/test_conformance.py
TESTS += tests/integration/test_docs.py
TESTS += tests/integration/test_gateway_tokens.py
TESTS += tests/integration/test_smisctl.py tests/integration/test_install.py
TESTS += tests/integration/test_sms_full.py
TESTS += tests/integration/test_govapp_full.py
TESTS += tests/integration/test_robustness.py
TESTS += tests/integration/test_tls.py
TESTS += tests/integration/test_privacy.py
TESTS += tests/integration/test_durability.py
