# libsmisapiclient: what the command-line tools (smisctl, smis-encrypt) share
# to talk to SMIS's HTTP API: options, API key, libcurl requests, problems
# and exit codes (tools/common/apiclient.h). A PIC convenience library for
# the tools only; link it with `..._LDADD` and add -I$(top_srcdir)/tools/common.
# Of the daemon it carries daemon/utf8.c (with libsmisutf8), for
# smisd_text_shown: what a server, a plugin or a configuration says reaches
# the operator's terminal as smisd --check-config shows it; and
# daemon/json_writer.c, for the JSON escape of the C1 controls, which the
# answers it prints get as smisd's log lines do. smisd_utf8_valid and
# daemon/request.h's field limits check a send's texts as smisd would, and
# daemon/jwt_auth.c's smisd_jwt_looks_like (with libsmishpke's base64url)
# the API key or gateway token as daemon/auth.c reads it.
noinst_LTLIBRARIES += tools/common/libsmisapiclient.la
tools_common_libsmisapiclient_la_SOURCES = tools/common/apiclient.c tools/common/apiclient.h \
	daemon/utf8.c daemon/utf8.h daemon/json_writer.c daemon/json_writer.h \
	daemon/jwt_auth.c daemon/jwt_auth.h
tools_common_libsmisapiclient_la_CFLAGS = $(AM_CFLAGS) $(CURL_CFLAGS) $(JSONC_CFLAGS) $(OPENSSL_CFLAGS)
tools_common_libsmisapiclient_la_LIBADD = lib/libsmisutf8.la lib/libsmishpke.la $(CURL_LIBS) $(JSONC_LIBS) \
	$(OPENSSL_LIBS)

# simbuf.c/.h (the simulators' growing text buffer: request bodies, written
# answers) is compiled into ringring-sim and govapp-sim, which list it among
# their sources; it has no dependency of its own.
