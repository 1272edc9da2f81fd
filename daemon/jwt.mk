# JWT bearer tokens from the eHealth API gateway (daemon/jwt_auth.c): its unit
# test. The lead adds daemon/jwt_auth.c to daemon/libsmisd.la himself; the test
# compiles the module directly so that it needs nothing else from the daemon
# but utf8.c (smisd_text_shown, for the names a key file gives).
check_PROGRAMS += tests/unit/test_jwt_auth
TESTS += tests/unit/test_jwt_auth
tests_unit_test_jwt_auth_SOURCES = tests/unit/test_jwt_auth.c daemon/jwt_auth.c daemon/jwt_auth.h \
	daemon/utf8.c daemon/utf8.h
tests_unit_test_jwt_auth_CPPFLAGS = $(AM_CPPFLAGS) \
	-DSMIS_TEST_DATADIR='"$(abs_top_srcdir)/tests/data"'
tests_unit_test_jwt_auth_CFLAGS = $(AM_CFLAGS) $(OPENSSL_CFLAGS) $(JSONC_CFLAGS) $(CUNIT_CFLAGS)
tests_unit_test_jwt_auth_LDADD = lib/libsmishpke.la lib/libsmisutf8.la $(OPENSSL_LIBS) $(JSONC_LIBS) $(CUNIT_LIBS)

# TEST-ONLY keys, JWKS and the script that made them (tests/data/jwt/gen.sh).
EXTRA_DIST += tests/data/jwt
