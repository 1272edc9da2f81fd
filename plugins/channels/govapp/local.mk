# GovApp channel plugin (docs/govapp-protocol.md) and its unit test.
plugin_LTLIBRARIES += plugins/channels/govapp/govapp.la
plugins_channels_govapp_govapp_la_SOURCES = plugins/channels/govapp/govapp.c
plugins_channels_govapp_govapp_la_CFLAGS = $(PLUGIN_CFLAGS) $(CURL_CFLAGS) $(JSONC_CFLAGS) $(OPENSSL_CFLAGS)
plugins_channels_govapp_govapp_la_LDFLAGS = $(PLUGIN_LDFLAGS)
plugins_channels_govapp_govapp_la_LIBADD = lib/libsmishpke.la lib/libsmishttpurl.la lib/libsmisjsonreuse.la $(JSONC_LIBS) $(OPENSSL_LIBS)

# The test dlopens the built module, as smisd does, behind a fake core API.
check_PROGRAMS += tests/unit/test_govapp_plugin
TESTS += tests/unit/test_govapp_plugin
tests_unit_test_govapp_plugin_SOURCES = tests/unit/test_govapp_plugin.c tests/unit/fake_core.c tests/unit/fake_core.h \
	tests/unit/fake_config.c tests/unit/fake_config.h
tests_unit_test_govapp_plugin_CPPFLAGS = $(AM_CPPFLAGS) \
	-DGOVAPP_PLUGIN_PATH='"$(abs_top_builddir)/plugins/channels/govapp/.libs/govapp.so"'
tests_unit_test_govapp_plugin_CFLAGS = $(AM_CFLAGS) $(CUNIT_CFLAGS) $(JSONC_CFLAGS) $(OPENSSL_CFLAGS)
tests_unit_test_govapp_plugin_LDADD = lib/libsmishpke.la $(CUNIT_LIBS) $(JSONC_LIBS) $(OPENSSL_LIBS)
EXTRA_tests_unit_test_govapp_plugin_DEPENDENCIES = plugins/channels/govapp/govapp.la
