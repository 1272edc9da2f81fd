/*
 * http_url.h - the check of a configured upstream base URL ("base_url" of a
 * channel), shared by the channel plugins so that they all refuse the same
 * mistakes at load, with the same words, instead of failing every request.
 */
#ifndef SMIS_HTTP_URL_H
#define SMIS_HTTP_URL_H

/* Longest base URL accepted, in bytes. */
#define SMIS_HTTP_URL_MAX 512

/*
 * Check that `url` is an absolute http:// or https:// URL with a host, and
 * without user name or password (credentials have their own settings, and
 * a URL ends up in error messages), query, fragment, spaces or control
 * characters; parsed by libcurl's URL API, the parser that will use it.
 * On success, trailing '/' are removed in place (callers append paths that
 * start with '/') and 0 is returned. Otherwise `url` is left as it is,
 * -EINVAL (or -ENOMEM) is returned and *why says what is wrong, as a phrase
 * to follow the setting's name ("has a query string").
 */
int smis_http_base_url(char *url, const char **why);

#endif
