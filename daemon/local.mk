# The daemon: its logic is a convenience library linked by smisd and the tests.
noinst_LTLIBRARIES += daemon/libsmisd.la
daemon_libsmisd_la_SOURCES = \
	daemon/auth.c daemon/auth.h \
	daemon/core_api.c daemon/core_api.h \
	daemon/dispatcher.c daemon/dispatcher.h \
	daemon/prepare_pool.c daemon/prepare_pool.h \
	daemon/generation.c daemon/generation.h \
	daemon/http_server.c daemon/http_server.h \
	daemon/job.c daemon/job.h \
	daemon/json_writer.c daemon/json_writer.h \
	daemon/jwt_auth.c daemon/jwt_auth.h \
	daemon/log.c daemon/log.h \
	daemon/metrics.c daemon/metrics.h \
	daemon/phone.c daemon/phone.h \
	daemon/plugin_loader.c daemon/plugin_loader.h \
	daemon/problem.c daemon/problem.h \
	daemon/ratelimit.c daemon/ratelimit.h \
	daemon/request.c daemon/request.h \
	daemon/retention.c daemon/retention.h \
	daemon/store.c daemon/store.h \
	daemon/unstored.c daemon/unstored.h \
	daemon/utf8.c daemon/utf8.h
daemon_libsmisd_la_CFLAGS = $(AM_CFLAGS) $(CURL_CFLAGS) $(JSONC_CFLAGS) $(OPENSSL_CFLAGS) \
	$(LIBCONFIG_CFLAGS) $(MHD_CFLAGS) $(SQLITE_CFLAGS) $(GUMBO_CFLAGS)
daemon_libsmisd_la_LIBADD = lib/libsmishtml.la lib/libsmishpke.la lib/libsmisconfincl.la lib/libsmisjsonreuse.la $(CURL_LIBS) $(JSONC_LIBS) $(OPENSSL_LIBS) \
	$(LIBCONFIG_LIBS) $(MHD_LIBS) $(SQLITE_LIBS) $(GUMBO_LIBS) -lpthread

sbin_PROGRAMS += smisd
smisd_SOURCES = daemon/smisd.c
smisd_CFLAGS = $(AM_CFLAGS) $(CURL_CFLAGS) $(LIBCONFIG_CFLAGS) $(SYSTEMD_CFLAGS)
# mimalloc first, so that it is the allocator every malloc() in the process
# binds to (see configure.ac).
smisd_LDADD = $(MIMALLOC_LIBS) daemon/libsmisd.la $(SYSTEMD_LIBS) $(LIBS)
