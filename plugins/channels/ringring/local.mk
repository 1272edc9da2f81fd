# RingRing SMS channel plugin (ringring.so) and its plugin test against a fake
# core API table. The test dlopens the built module, as smisd does, so that a
# missing symbol or a wrong export list fails here first.
plugin_LTLIBRARIES += plugins/channels/ringring/ringring.la
plugins_channels_ringring_ringring_la_SOURCES = plugins/channels/ringring/ringring.c
plugins_channels_ringring_ringring_la_CFLAGS = $(PLUGIN_CFLAGS) $(CURL_CFLAGS) $(JSONC_CFLAGS) $(OPENSSL_CFLAGS)
plugins_channels_ringring_ringring_la_LDFLAGS = $(PLUGIN_LDFLAGS)
plugins_channels_ringring_ringring_la_LIBADD = lib/libsmisgsm7.la lib/libsmishttpurl.la lib/libsmisjsonreuse.la $(JSONC_LIBS) $(OPENSSL_LIBS)

check_PROGRAMS += tests/unit/test_ringring_plugin
TESTS += tests/unit/test_ringring_plugin
tests_unit_test_ringring_plugin_SOURCES = tests/unit/test_ringring_plugin.c tests/unit/fake_core.c tests/unit/fake_core.h
tests_unit_test_ringring_plugin_CPPFLAGS = $(AM_CPPFLAGS) \
	-DRINGRING_SO='"$(abs_top_builddir)/plugins/channels/ringring/.libs/ringring.so"'
tests_unit_test_ringring_plugin_CFLAGS = $(AM_CFLAGS) $(CUNIT_CFLAGS) $(JSONC_CFLAGS)
tests_unit_test_ringring_plugin_LDADD = $(CUNIT_LIBS) $(JSONC_LIBS)
EXTRA_tests_unit_test_ringring_plugin_DEPENDENCIES = plugins/channels/ringring/ringring.la
