/*
 * html_sanitize.h - allow-list HTML sanitiser for message bodies.
 *
 * An institution may send a message body as HTML. Before SMIS stores or
 * forwards it, the body is parsed with a real HTML5 parser (gumbo, fragment
 * mode) and written out again from an allow-list, so that what reaches the
 * citizen's app is a small, well-formed subset with no active content. The
 * same pass produces the plain-text rendering used for SMS and previews.
 *
 * The allow-list and what happens to every other element is documented in
 * docs/html-allowlist.md; keep the two in step.
 */
#ifndef SMIS_HTML_SANITIZE_H
#define SMIS_HTML_SANITIZE_H

#include <stddef.h>

/* Largest body accepted, in bytes. */
#define SMIS_HTML_MAX_INPUT (256 * 1024)
/*
 * Largest number of tags accepted: '<' followed by a letter, '/', '!' or
 * '?' (start and end tags, comments, doctypes, processing instructions).
 * HTML tree construction costs time proportional to tags x nesting depth,
 * so this bounds the parse time of a hostile body (about 0.2 s for 4096
 * nested elements). The output never holds more tags than this either.
 */
#define SMIS_HTML_MAX_MARKUP 4096
/*
 * Memory the parser may hold at once. A few hundred bytes of misnested
 * formatting tags make the HTML5 "reconstruct the active formatting
 * elements" step build millions of nodes; past this budget the parse is
 * abandoned.
 */
#define SMIS_HTML_PARSE_MEM_MAX (16 * 1024 * 1024)
/*
 * Nesting depth of the sanitised output. Allowed elements nested deeper
 * than this are unwrapped: their text is kept, their tags are not.
 */
#define SMIS_HTML_MAX_DEPTH 64

/*
 * Sanitise the HTML body `html` (`len` bytes, UTF-8, need not be
 * NUL-terminated; borrowed for the call).
 *
 * On success returns 0 and, for each of `out_html` / `out_text` that is not
 * NULL, stores a NUL-terminated string the caller frees with free():
 *   - `*out_html`: the sanitised HTML fragment; re-sanitising it yields the
 *     same string. It may be empty (e.g. the body was only a <script>).
 *   - `*out_text`: the plain-text rendering (UTF-8, entities decoded,
 *     whitespace collapsed, paragraphs separated by a blank line, trimmed).
 *
 * Errors (both outputs set to NULL):
 *   -EINVAL  html is NULL with len > 0, or the body holds a NUL byte or is
 *            not valid UTF-8;
 *   -E2BIG   the body exceeds SMIS_HTML_MAX_INPUT or SMIS_HTML_MAX_MARKUP,
 *            its parse needs more than SMIS_HTML_PARSE_MEM_MAX, or the
 *            escaped output would exceed SMIS_HTML_MAX_INPUT;
 *   -ENOMEM  out of memory.
 *
 * Thread-safe (no shared state); CPU-bound and bounded by the limits above,
 * it does not block on I/O.
 */
int smis_html_sanitize(const char *html, size_t len, char **out_html,
		       char **out_text);

#endif
