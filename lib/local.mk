include lib/hpke.mk
include lib/utf8.mk
include lib/gsm7.mk
include lib/html.mk
include lib/config_includes.mk
include lib/http_url.mk
include lib/json_reuse.mk
