# SMS encoding choice and segment counting (GSM 03.38 / TS 23.040), shared by
# the RingRing channel plugin, the RingRing simulator and smisd so they all
# count parts the same way. A PIC convenience library: link it with
# `..._LIBADD = lib/libsmisgsm7.la` (plugins) or `..._LDADD` (programs).
noinst_LTLIBRARIES += lib/libsmisgsm7.la
lib_libsmisgsm7_la_SOURCES = lib/gsm7.c lib/gsm7.h
lib_libsmisgsm7_la_LIBADD = lib/libsmisutf8.la

check_PROGRAMS += tests/unit/test_gsm7
TESTS += tests/unit/test_gsm7
tests_unit_test_gsm7_SOURCES = tests/unit/test_gsm7.c
tests_unit_test_gsm7_CFLAGS = $(AM_CFLAGS) $(CUNIT_CFLAGS)
tests_unit_test_gsm7_LDADD = lib/libsmisgsm7.la $(CUNIT_LIBS)
