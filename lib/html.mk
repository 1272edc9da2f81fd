# HTML sanitiser for message bodies (gumbo HTML5 parser + allow-list), used
# by smisd when an institution sends an HTML body. A PIC convenience library:
# link it with `..._LIBADD = lib/libsmishtml.la` (libraries, plugins) or
# `..._LDADD` (programs). The allow-list is docs/html-allowlist.md.
noinst_LTLIBRARIES += lib/libsmishtml.la
lib_libsmishtml_la_SOURCES = lib/html_sanitize.c lib/html_sanitize.h
lib_libsmishtml_la_CFLAGS = $(AM_CFLAGS) $(GUMBO_CFLAGS)
lib_libsmishtml_la_LIBADD = lib/libsmisutf8.la $(GUMBO_LIBS)

# The test also parses the sanitiser's output with gumbo to check which
# elements and attributes survive; the XSS corpus is read at run time.
check_PROGRAMS += tests/unit/test_html_sanitize
TESTS += tests/unit/test_html_sanitize
tests_unit_test_html_sanitize_SOURCES = tests/unit/test_html_sanitize.c
tests_unit_test_html_sanitize_CPPFLAGS = $(AM_CPPFLAGS) \
	-DSMIS_TEST_DATADIR='"$(abs_top_srcdir)/tests/data"'
tests_unit_test_html_sanitize_CFLAGS = $(AM_CFLAGS) $(GUMBO_CFLAGS) $(CUNIT_CFLAGS)
tests_unit_test_html_sanitize_LDADD = lib/libsmishtml.la $(GUMBO_LIBS) $(CUNIT_LIBS)

EXTRA_DIST += tests/data/xss
