# Fuzz targets (tests/fuzz/README.md). Each fuzz_NAME.c defines only
# LLVMFuzzerTestOneInput. With --enable-fuzzing (clang) they link libFuzzer's
# main and are built by `make`; otherwise they link replay.c and `make check`
# runs each over its corpus in tests/fuzz/corpus/NAME (every input a fuzzing
# run found to fail stays there, so the bug stays fixed).
FUZZ_TARGETS = tests/fuzz/fuzz_request tests/fuzz/fuzz_html tests/fuzz/fuzz_sms \
	tests/fuzz/fuzz_phone tests/fuzz/fuzz_jwt tests/fuzz/fuzz_jwks tests/fuzz/fuzz_ringring tests/fuzz/fuzz_govapp \
	tests/fuzz/fuzz_config tests/fuzz/fuzz_json tests/fuzz/fuzz_passthrough tests/fuzz/fuzz_answer
if FUZZING
noinst_PROGRAMS += $(FUZZ_TARGETS)
FUZZ_DRIVER_LINK = -fsanitize=fuzzer
FUZZ_MAIN_LIB =
else
check_PROGRAMS += $(FUZZ_TARGETS)
TESTS += $(FUZZ_TARGETS)
check_LTLIBRARIES += tests/fuzz/libfuzzreplay.la
tests_fuzz_libfuzzreplay_la_SOURCES = tests/fuzz/replay.c
# fuzz_NAME replays FUZZ_CORPUS_ROOT/NAME when given no argument.
tests_fuzz_libfuzzreplay_la_CPPFLAGS = $(AM_CPPFLAGS) \
	-DFUZZ_CORPUS_ROOT='"$(abs_top_srcdir)/tests/fuzz/corpus"'
FUZZ_DRIVER_LINK =
FUZZ_MAIN_LIB = tests/fuzz/libfuzzreplay.la
endif
FUZZ_LDADD = $(FUZZ_MAIN_LIB) daemon/libsmisd.la lib/libsmisgsm7.la $(JSONC_LIBS) $(OPENSSL_LIBS)
EXTRA_DIST += tests/fuzz/README.md tests/fuzz/corpus tests/fuzz/fuzz_common.h \
	tests/fuzz/fuzz_json_parse.h
# The channel plugin targets dlopen the built modules, as smisd does and as
# their unit tests do (plugins/channels/*/local.mk), behind a fake core.
FUZZ_CHANNEL_SOURCES = tests/fuzz/fuzz_channel.c tests/fuzz/fuzz_channel.h \
	tests/unit/fake_core.c tests/unit/fake_core.h tests/unit/fake_config.c tests/unit/fake_config.h
FUZZ_CHANNEL_CPPFLAGS = $(AM_CPPFLAGS) -I$(top_srcdir)/tests/unit \
	-DFUZZ_PLUGIN_DIR='"$(abs_top_builddir)/plugins/channels"'
FUZZ_CHANNEL_LDADD = $(FUZZ_MAIN_LIB) $(JSONC_LIBS) $(OPENSSL_LIBS)

# The test keys fuzz_jwt loads (tests/data/jwt).
tests_fuzz_fuzz_jwt_CPPFLAGS = $(AM_CPPFLAGS) -DFUZZ_DATA='"$(abs_top_srcdir)/tests/data"'

tests_fuzz_fuzz_request_SOURCES = tests/fuzz/fuzz_request.c
tests_fuzz_fuzz_request_LDFLAGS = $(FUZZ_DRIVER_LINK)
tests_fuzz_fuzz_request_LDADD = $(FUZZ_LDADD)

tests_fuzz_fuzz_html_SOURCES = tests/fuzz/fuzz_html.c
tests_fuzz_fuzz_html_LDFLAGS = $(FUZZ_DRIVER_LINK)
tests_fuzz_fuzz_html_LDADD = $(FUZZ_LDADD)

tests_fuzz_fuzz_sms_SOURCES = tests/fuzz/fuzz_sms.c
tests_fuzz_fuzz_sms_LDFLAGS = $(FUZZ_DRIVER_LINK)
tests_fuzz_fuzz_sms_LDADD = $(FUZZ_LDADD)

tests_fuzz_fuzz_phone_SOURCES = tests/fuzz/fuzz_phone.c
tests_fuzz_fuzz_phone_LDFLAGS = $(FUZZ_DRIVER_LINK)
tests_fuzz_fuzz_phone_LDADD = $(FUZZ_LDADD)

tests_fuzz_fuzz_jwt_SOURCES = tests/fuzz/fuzz_jwt.c
tests_fuzz_fuzz_jwt_LDFLAGS = $(FUZZ_DRIVER_LINK)
tests_fuzz_fuzz_jwt_LDADD = $(FUZZ_LDADD)

tests_fuzz_fuzz_jwks_SOURCES = tests/fuzz/fuzz_jwks.c
tests_fuzz_fuzz_jwks_LDFLAGS = $(FUZZ_DRIVER_LINK)
tests_fuzz_fuzz_jwks_LDADD = $(FUZZ_LDADD)

tests_fuzz_fuzz_ringring_SOURCES = tests/fuzz/fuzz_ringring.c $(FUZZ_CHANNEL_SOURCES)
tests_fuzz_fuzz_ringring_LDFLAGS = $(FUZZ_DRIVER_LINK)
tests_fuzz_fuzz_ringring_LDADD = $(FUZZ_CHANNEL_LDADD)
tests_fuzz_fuzz_ringring_CPPFLAGS = $(FUZZ_CHANNEL_CPPFLAGS)
tests_fuzz_fuzz_ringring_CFLAGS = $(AM_CFLAGS) $(JSONC_CFLAGS)
EXTRA_tests_fuzz_fuzz_ringring_DEPENDENCIES = plugins/channels/ringring/ringring.la

tests_fuzz_fuzz_govapp_SOURCES = tests/fuzz/fuzz_govapp.c $(FUZZ_CHANNEL_SOURCES)
tests_fuzz_fuzz_govapp_LDFLAGS = $(FUZZ_DRIVER_LINK)
tests_fuzz_fuzz_govapp_LDADD = $(FUZZ_CHANNEL_LDADD)
tests_fuzz_fuzz_govapp_CPPFLAGS = $(FUZZ_CHANNEL_CPPFLAGS)
tests_fuzz_fuzz_govapp_CFLAGS = $(AM_CFLAGS) $(JSONC_CFLAGS) $(OPENSSL_CFLAGS)
EXTRA_tests_fuzz_fuzz_govapp_DEPENDENCIES = plugins/channels/govapp/govapp.la

# The configuration loader loads this build's plugins, as smisd does.
tests_fuzz_fuzz_config_SOURCES = tests/fuzz/fuzz_config.c
tests_fuzz_fuzz_config_LDFLAGS = $(FUZZ_DRIVER_LINK)
tests_fuzz_fuzz_config_LDADD = $(FUZZ_LDADD)
tests_fuzz_fuzz_config_CPPFLAGS = $(AM_CPPFLAGS) -DFUZZ_PLUGIN_DIR='"$(abs_top_builddir)/plugin-dir"'
EXTRA_tests_fuzz_fuzz_config_DEPENDENCIES = plugin-dir-stamp

tests_fuzz_fuzz_json_SOURCES = tests/fuzz/fuzz_json.c
tests_fuzz_fuzz_json_LDFLAGS = $(FUZZ_DRIVER_LINK)
tests_fuzz_fuzz_json_LDADD = $(FUZZ_LDADD)
tests_fuzz_fuzz_json_CFLAGS = $(AM_CFLAGS) $(JSONC_CFLAGS)

# What smis-encrypt links (tools/smis-encrypt/local.mk), with nothing of smisd.
tests_fuzz_fuzz_passthrough_SOURCES = tests/fuzz/fuzz_passthrough.c
tests_fuzz_fuzz_passthrough_LDFLAGS = $(FUZZ_DRIVER_LINK)
tests_fuzz_fuzz_passthrough_LDADD = $(FUZZ_MAIN_LIB) lib/libsmispassthrough.la lib/libsmishpke.la \
	$(JSONC_LIBS) $(OPENSSL_LIBS)
tests_fuzz_fuzz_passthrough_CFLAGS = $(AM_CFLAGS) $(JSONC_CFLAGS) $(OPENSSL_CFLAGS)

# What smisctl and smis-encrypt show of an answer (tools/common/local.mk).
tests_fuzz_fuzz_answer_SOURCES = tests/fuzz/fuzz_answer.c
tests_fuzz_fuzz_answer_LDFLAGS = $(FUZZ_DRIVER_LINK)
tests_fuzz_fuzz_answer_LDADD = $(FUZZ_MAIN_LIB) tools/common/libsmisapiclient.la \
	$(CURL_LIBS) $(JSONC_LIBS)
tests_fuzz_fuzz_answer_CPPFLAGS = $(AM_CPPFLAGS) -I$(top_srcdir)/tools/common
tests_fuzz_fuzz_answer_CFLAGS = $(AM_CFLAGS) $(CURL_CFLAGS) $(JSONC_CFLAGS)
