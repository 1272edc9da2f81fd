# Institution-side encryption ("passthrough", docs/passthrough.md): the
# sealing function as a PIC convenience library an institution's own code
# can reuse, its unit test, and smis-encrypt, the installed command line
# that fetches the device keys through SMIS, seals and sends.
noinst_LTLIBRARIES += lib/libsmispassthrough.la
lib_libsmispassthrough_la_SOURCES = lib/passthrough.c lib/passthrough.h
lib_libsmispassthrough_la_CFLAGS = $(AM_CFLAGS) $(JSONC_CFLAGS) $(OPENSSL_CFLAGS)
lib_libsmispassthrough_la_LIBADD = lib/libsmishpke.la $(JSONC_LIBS) $(OPENSSL_LIBS)

bin_PROGRAMS += tools/smis-encrypt/smis-encrypt
tools_smis_encrypt_smis_encrypt_SOURCES = tools/smis-encrypt/smis-encrypt.c
tools_smis_encrypt_smis_encrypt_CPPFLAGS = $(AM_CPPFLAGS) -I$(top_srcdir)/tools/common
tools_smis_encrypt_smis_encrypt_CFLAGS = $(AM_CFLAGS) $(CURL_CFLAGS) $(JSONC_CFLAGS) $(OPENSSL_CFLAGS) \
	$(GUMBO_CFLAGS)
# libsmishtml: --html bodies are sanitised with SMIS's own allow-list;
# libsmisapiclient: the HTTP client smisctl uses too.
tools_smis_encrypt_smis_encrypt_LDADD = lib/libsmispassthrough.la lib/libsmishtml.la \
	tools/common/libsmisapiclient.la \
	$(CURL_LIBS) $(JSONC_LIBS) $(OPENSSL_LIBS) $(GUMBO_LIBS)

check_PROGRAMS += tests/unit/test_passthrough
TESTS += tests/unit/test_passthrough
tests_unit_test_passthrough_SOURCES = tests/unit/test_passthrough.c
tests_unit_test_passthrough_CFLAGS = $(AM_CFLAGS) $(JSONC_CFLAGS) $(OPENSSL_CFLAGS) $(CUNIT_CFLAGS)
tests_unit_test_passthrough_LDADD = lib/libsmispassthrough.la $(JSONC_LIBS) $(OPENSSL_LIBS) $(CUNIT_LIBS)
