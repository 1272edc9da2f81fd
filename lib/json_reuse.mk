# A json-c tokener kept from one parse to the next and dropped after one that
# did not end cleanly (lib/json_reuse.h), shared by smisd's request bodies,
# the RingRing and GovApp channel plugins and both simulators. A PIC convenience library:
# link it with `..._LIBADD = lib/libsmisjsonreuse.la $(JSONC_LIBS)` (plugins)
# or `..._LDADD` (programs).
noinst_LTLIBRARIES += lib/libsmisjsonreuse.la
lib_libsmisjsonreuse_la_SOURCES = lib/json_reuse.c lib/json_reuse.h
lib_libsmisjsonreuse_la_CFLAGS = $(AM_CFLAGS) $(JSONC_CFLAGS)
lib_libsmisjsonreuse_la_LIBADD = $(JSONC_LIBS)

check_PROGRAMS += tests/unit/test_json_reuse
TESTS += tests/unit/test_json_reuse
tests_unit_test_json_reuse_SOURCES = tests/unit/test_json_reuse.c
tests_unit_test_json_reuse_CFLAGS = $(AM_CFLAGS) $(CUNIT_CFLAGS) $(JSONC_CFLAGS)
tests_unit_test_json_reuse_LDADD = lib/libsmisjsonreuse.la $(CUNIT_LIBS) $(JSONC_LIBS)
