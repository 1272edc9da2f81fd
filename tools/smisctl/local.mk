# smisctl: the operators' and integrators' command line (smisctl(1)). It
# uses only SMIS's public surface (HTTP API, smisd --check-config, the
# plugin ABI header, the pid file), never daemon internals; its HTTP client
# is tools/common's, shared with smis-encrypt. SMIS_SBINDIR lets
# `check-config` find an installed smisd. smisd_text_shown (daemon/utf8.c,
# which libsmisapiclient carries) shows the names a configuration or a
# plugin folder gives as smisd --check-config shows them.
bin_PROGRAMS += tools/smisctl/smisctl
tools_smisctl_smisctl_SOURCES = tools/smisctl/smisctl.c
tools_smisctl_smisctl_CPPFLAGS = $(AM_CPPFLAGS) -I$(top_srcdir)/tools/common \
	-DSMIS_SBINDIR='"$(sbindir)"'
tools_smisctl_smisctl_CFLAGS = $(AM_CFLAGS) $(CURL_CFLAGS) $(JSONC_CFLAGS) $(OPENSSL_CFLAGS) \
	$(LIBCONFIG_CFLAGS)
tools_smisctl_smisctl_LDADD = tools/common/libsmisapiclient.la lib/libsmisconfincl.la $(CURL_LIBS) $(JSONC_LIBS) $(OPENSSL_LIBS) $(LIBCONFIG_LIBS) $(LIBS)

