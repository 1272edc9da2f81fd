# govapp-sim: the GovApp backend simulator (docs/govapp-protocol.md, "Simulator").
# Built with the tree for tests and benchmarks; not installed: a fake backend
# has no business on a production host.
noinst_PROGRAMS += tools/govapp-sim/govapp-sim
tools_govapp_sim_govapp_sim_SOURCES = tools/govapp-sim/govapp-sim.c tools/govapp-sim/sim.h \
	tools/govapp-sim/store.c tools/govapp-sim/server.c tools/govapp-sim/callback.c \
	tools/common/simbuf.c tools/common/simbuf.h
tools_govapp_sim_govapp_sim_CPPFLAGS = $(AM_CPPFLAGS) -I$(top_srcdir)/tools/common
tools_govapp_sim_govapp_sim_CFLAGS = $(AM_CFLAGS) $(MHD_CFLAGS) $(CURL_CFLAGS) $(JSONC_CFLAGS) \
	$(OPENSSL_CFLAGS)
tools_govapp_sim_govapp_sim_LDADD = lib/libsmishpke.la lib/libsmisjsonreuse.la $(MHD_LIBS) $(CURL_LIBS) $(JSONC_LIBS) \
	$(OPENSSL_LIBS)

# The simulator's state and API operations without its HTTP server: what a
# device makes of an envelope's plaintext.
check_PROGRAMS += tests/unit/test_govapp_sim
TESTS += tests/unit/test_govapp_sim
tests_unit_test_govapp_sim_SOURCES = tests/unit/test_govapp_sim.c tools/govapp-sim/sim.h \
	tools/govapp-sim/store.c tools/govapp-sim/callback.c
tests_unit_test_govapp_sim_CPPFLAGS = $(AM_CPPFLAGS) -I$(top_srcdir)/tools/govapp-sim
tests_unit_test_govapp_sim_CFLAGS = $(AM_CFLAGS) $(CURL_CFLAGS) $(JSONC_CFLAGS) $(OPENSSL_CFLAGS) \
	$(CUNIT_CFLAGS)
tests_unit_test_govapp_sim_LDADD = lib/libsmishpke.la lib/libsmisjsonreuse.la $(CURL_LIBS) $(JSONC_LIBS) $(OPENSSL_LIBS) \
	$(CUNIT_LIBS)
