# The check of a channel's configured base URL (lib/http_url.h), shared by
# the channel plugins. A PIC convenience library over libcurl's URL API:
# link it with `..._LIBADD = lib/libsmishttpurl.la $(CURL_LIBS)`.
noinst_LTLIBRARIES += lib/libsmishttpurl.la
lib_libsmishttpurl_la_SOURCES = lib/http_url.c lib/http_url.h
lib_libsmishttpurl_la_CFLAGS = $(AM_CFLAGS) $(CURL_CFLAGS)
lib_libsmishttpurl_la_LIBADD = $(CURL_LIBS)

check_PROGRAMS += tests/unit/test_http_url
TESTS += tests/unit/test_http_url
tests_unit_test_http_url_SOURCES = tests/unit/test_http_url.c
tests_unit_test_http_url_CFLAGS = $(AM_CFLAGS) $(CUNIT_CFLAGS)
tests_unit_test_http_url_LDADD = lib/libsmishttpurl.la $(CUNIT_LIBS)
