# HPKE (RFC 9180) + GovApp end-to-end envelope + base64url: a PIC convenience
# library for the govapp channel, the simulator and tools, and its tests.
noinst_LTLIBRARIES += lib/libsmishpke.la
lib_libsmishpke_la_SOURCES = \
	lib/hpke.c lib/hpke.h \
	lib/e2e.c lib/e2e.h \
	lib/b64url.c lib/b64url.h
lib_libsmishpke_la_CFLAGS = $(AM_CFLAGS) $(OPENSSL_CFLAGS)
lib_libsmishpke_la_LIBADD = $(OPENSSL_LIBS)

# test_hpke compiles hpke.c itself with SMIS_UNITTEST, which exposes the
# key-schedule values the RFC 9180 vectors are checked against.
check_PROGRAMS += tests/unit/test_hpke tests/unit/test_e2e
TESTS += tests/unit/test_hpke tests/unit/test_e2e
tests_unit_test_hpke_SOURCES = tests/unit/test_hpke.c lib/hpke.c lib/hpke.h
tests_unit_test_hpke_CPPFLAGS = $(AM_CPPFLAGS) -DSMIS_UNITTEST \
	-DSMIS_TEST_DATADIR='"$(abs_top_srcdir)/tests/data"'
tests_unit_test_hpke_CFLAGS = $(AM_CFLAGS) $(OPENSSL_CFLAGS) $(JSONC_CFLAGS) $(CUNIT_CFLAGS)
tests_unit_test_hpke_LDADD = $(OPENSSL_LIBS) $(JSONC_LIBS) $(CUNIT_LIBS)

tests_unit_test_e2e_SOURCES = tests/unit/test_e2e.c
tests_unit_test_e2e_CFLAGS = $(AM_CFLAGS) $(OPENSSL_CFLAGS) $(CUNIT_CFLAGS)
tests_unit_test_e2e_LDADD = lib/libsmishpke.la $(OPENSSL_LIBS) $(CUNIT_LIBS)

# RFC 9180 test vectors (public data), read by test_hpke at run time.
EXTRA_DIST += tests/data/hpke-rfc9180-vectors.json
