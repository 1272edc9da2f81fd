# The strict UTF-8 decoder (lib/utf8_decode.h), one copy for everything that
# decodes: libsmishtml and libsmisgsm7 carry it, so link either of those.
noinst_LTLIBRARIES += lib/libsmisutf8.la
lib_libsmisutf8_la_SOURCES = lib/utf8_decode.c lib/utf8_decode.h
