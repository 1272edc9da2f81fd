# Bundled strategy plugins: one folder, one .so, one name each.
EXTRA_DIST += plugins/strategies/strategy_common.h

plugin_LTLIBRARIES += plugins/strategies/govapp_only/govapp_only.la
plugins_strategies_govapp_only_govapp_only_la_SOURCES = plugins/strategies/govapp_only/govapp_only.c
plugins_strategies_govapp_only_govapp_only_la_CFLAGS = $(PLUGIN_CFLAGS)
plugins_strategies_govapp_only_govapp_only_la_LDFLAGS = $(PLUGIN_LDFLAGS)

plugin_LTLIBRARIES += plugins/strategies/sms_only/sms_only.la
plugins_strategies_sms_only_sms_only_la_SOURCES = plugins/strategies/sms_only/sms_only.c
plugins_strategies_sms_only_sms_only_la_CFLAGS = $(PLUGIN_CFLAGS)
plugins_strategies_sms_only_sms_only_la_LDFLAGS = $(PLUGIN_LDFLAGS)

plugin_LTLIBRARIES += plugins/strategies/govapp_first/govapp_first.la
plugins_strategies_govapp_first_govapp_first_la_SOURCES = plugins/strategies/govapp_first/govapp_first.c
plugins_strategies_govapp_first_govapp_first_la_CFLAGS = $(PLUGIN_CFLAGS)
plugins_strategies_govapp_first_govapp_first_la_LDFLAGS = $(PLUGIN_LDFLAGS)

plugin_LTLIBRARIES += plugins/strategies/govapp_and_sms/govapp_and_sms.la
plugins_strategies_govapp_and_sms_govapp_and_sms_la_SOURCES = plugins/strategies/govapp_and_sms/govapp_and_sms.c
plugins_strategies_govapp_and_sms_govapp_and_sms_la_CFLAGS = $(PLUGIN_CFLAGS)
plugins_strategies_govapp_and_sms_govapp_and_sms_la_LDFLAGS = $(PLUGIN_LDFLAGS)
