/*
 * http_url.c - see http_url.h. The URL is parsed with libcurl's URL API
 * (curl_url), the same parser that later takes the request URLs built on
 * it, rather than by hand: what it refuses here it would refuse there.
 */
#include <errno.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>

#include "http_url.h"

/* 0 when `part` of `h` is absent, 1 when present, -1 on failure. */
static int has_part(CURLU *h, CURLUPart part, CURLUcode absent)
{
	char *v = NULL;
	CURLUcode rc = curl_url_get(h, part, &v, 0);

	curl_free(v);
	if (rc == CURLUE_OK)
		return 1;
	return rc == absent ? 0 : -1;
}

int smis_http_base_url(char *url, const char **why)
{
	CURLU *h = NULL;
	char *scheme = NULL;
	size_t n;
	int rc = -EINVAL;

	*why = NULL;
	if (!url || !url[0]) {
		*why = "is empty: an http:// or https:// URL is needed";
		return -EINVAL;
	}
	n = strlen(url);
	if (n > SMIS_HTTP_URL_MAX) {
		*why = "is too long (at most 512 bytes)";
		return -EINVAL;
	}
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)url[i] <= 0x20 || (unsigned char)url[i] == 0x7f) {
			*why = "holds a space or a control character";
			return -EINVAL;
		}
	/* "host/path" without a scheme would be guessed as http:// by curl's
	 * command line, never by the library: say so before it fails. */
	if (strncasecmp(url, "http://", 7) != 0 && strncasecmp(url, "https://", 8) != 0) {
		*why = "must start with http:// or https://";
		return -EINVAL;
	}
	/* libcurl reads "http:///x" as host "x": a slash too many is a typo. */
	if (strstr(url, "://")[3] == '/') {
		*why = "has no host";
		return -EINVAL;
	}
	h = curl_url();
	if (!h) {
		*why = "could not be checked (out of memory)";
		return -ENOMEM;
	}
	if (curl_url_set(h, CURLUPART_URL, url, 0) != CURLUE_OK) {
		*why = "is not a valid URL";
		goto out;
	}
	if (curl_url_get(h, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
	    (strcmp(scheme, "http") != 0 && strcmp(scheme, "https") != 0)) {
		*why = "must start with http:// or https://";
		goto out;
	}
	if (has_part(h, CURLUPART_HOST, CURLUE_NO_HOST) != 1) {
		*why = "has no host";
		goto out;
	}
	if (has_part(h, CURLUPART_USER, CURLUE_NO_USER) != 0 ||
	    has_part(h, CURLUPART_PASSWORD, CURLUE_NO_PASSWORD) != 0) {
		*why = "holds a user name or password: credentials have their own settings";
		goto out;
	}
	if (has_part(h, CURLUPART_QUERY, CURLUE_NO_QUERY) != 0 || strchr(url, '?')) {
		*why = "has a query string: paths are appended to it";
		goto out;
	}
	if (has_part(h, CURLUPART_FRAGMENT, CURLUE_NO_FRAGMENT) != 0 || strchr(url, '#')) {
		*why = "has a fragment ('#')";
		goto out;
	}
	while (n > 0 && url[n - 1] == '/')
		url[--n] = '\0';
	rc = 0;
out:
	curl_free(scheme);
	curl_url_cleanup(h);
	return rc;
}
