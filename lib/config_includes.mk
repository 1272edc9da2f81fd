# The check of a configuration's @include targets that smisd and smisctl
# make before libconfig reads the file (lib/config_includes.c says why).
noinst_LTLIBRARIES += lib/libsmisconfincl.la
lib_libsmisconfincl_la_SOURCES = lib/config_includes.c lib/config_includes.h
