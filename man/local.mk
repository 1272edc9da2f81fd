# Operator and integrator files: the man pages and the systemd unit
# (installed), and the out-of-tree plugin examples (distributed only).
# Man pages and unit name installation paths, so they are generated from
# *.in templates with the configured directories (make, not configure,
# expands them fully).
SMIS_SUBST = sed \
	-e 's|@sbindir[@]|$(sbindir)|g' \
	-e 's|@bindir[@]|$(bindir)|g' \
	-e 's|@sysconfdir[@]|$(sysconfdir)|g' \
	-e 's|@localstatedir[@]|$(localstatedir)|g' \
	-e 's|@plugindir[@]|$(plugindir)|g' \
	-e 's|@includedir[@]|$(includedir)|g' \
	-e 's|@libdir[@]|$(libdir)|g' \
	-e 's|@docdir[@]|$(docdir)|g' \
	-e 's|@PACKAGE_VERSION[@]|$(PACKAGE_VERSION)|g'

man_MANS = man/smisd.8 man/smis.conf.5 man/smisctl.1 man/smis-encrypt.1
EXTRA_DIST += man/smisd.8.in man/smis.conf.5.in man/smisctl.1.in man/smis-encrypt.1.in
CLEANFILES += $(man_MANS) conf/smisd.service

# systemd looks in $(prefix)/lib/systemd/system for /usr and /usr/local;
# override with `make install systemdsystemunitdir=...` for other prefixes.
systemdsystemunitdir = $(prefix)/lib/systemd/system
systemdsystemunit_DATA = conf/smisd.service

$(man_MANS) conf/smisd.service: Makefile
	$(AM_V_GEN)$(MKDIR_P) $(@D) && rm -f $@ $@.tmp && \
	$(SMIS_SUBST) $(srcdir)/$@.in > $@.tmp && mv $@.tmp $@

man/smisd.8: $(srcdir)/man/smisd.8.in
man/smis.conf.5: $(srcdir)/man/smis.conf.5.in
man/smisctl.1: $(srcdir)/man/smisctl.1.in
man/smis-encrypt.1: $(srcdir)/man/smis-encrypt.1.in
conf/smisd.service: $(srcdir)/conf/smisd.service.in

# Built by their own Makefiles against an installed SMIS (pkg-config), never
# by this build: tests/integration/test_install.py builds them from the
# install tree.
EXTRA_DIST += \
	examples/webhook-channel/Makefile examples/webhook-channel/README.md \
	examples/webhook-channel/webhook.c examples/webhook-channel/test_webhook.c \
	examples/round-robin-strategy/Makefile examples/round-robin-strategy/README.md \
	examples/round-robin-strategy/round_robin.c examples/round-robin-strategy/test_round_robin.c
