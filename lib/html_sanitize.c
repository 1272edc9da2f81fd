/*
 * html_sanitize.c - allow-list HTML sanitiser and plain-text renderer.
 *
 * The body is parsed by gumbo as an HTML5 fragment (context <div>), so the
 * tree we walk is the one a browser would build, with entities decoded and
 * misnesting resolved. We never look at the markup as text. The walk writes
 * only allow-listed elements (docs/html-allowlist.md) and escapes all text,
 * and it refuses any nesting that an HTML5 parser would rebuild differently
 * (a <p> inside a <p>, an <a> inside an <a>, ...), so the output parses back
 * to exactly the tree it was written from: re-sanitising it is a no-op.
 *
 * Hostile input is bounded three ways: size and '<' count are checked before
 * parsing, gumbo allocates from a budgeted arena that abandons the parse
 * (longjmp) when exceeded, and our own walk uses an explicit stack, so no
 * nesting depth can overflow the C stack.
 */
#include "config.h"

#include <errno.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gumbo.h>

#include "html_sanitize.h"
#include "utf8_decode.h"

/* Longest href kept; longer links are unwrapped (their text stays). */
#define HREF_MAX 2048
/* Plain-text prefixes stop growing past these levels so that deep nesting
 * cannot multiply the size of the text. */
#define TEXT_LIST_INDENT_MAX 4
#define TEXT_QUOTE_MAX 3

/* ------------------------------------------------------------------ */
/* Growable string                                                     */
/* ------------------------------------------------------------------ */

struct sbuf {
	char *p;
	size_t len;
	size_t cap;
	bool oom; /* an append failed; the content is incomplete */
};

static bool sbuf_reserve(struct sbuf *b, size_t more)
{
	size_t want, ncap;
	char *np;

	if (b->oom)
		goto out;
	if (more > SIZE_MAX - b->len - 1)
		goto out_oom;
	want = b->len + more + 1;
	if (want <= b->cap)
		goto out;
	ncap = b->cap ? b->cap : 64;
	while (ncap < want)
		ncap = ncap > SIZE_MAX / 2 ? want : ncap * 2;
	np = realloc(b->p, ncap);
	if (!np)
		goto out_oom;
	b->p = np;
	b->cap = ncap;
	goto out;

out_oom:
	b->oom = true;
out:
	return !b->oom;
}

static void sbuf_add(struct sbuf *b, const char *s, size_t n)
{
	if (!sbuf_reserve(b, n))
		return;
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void sbuf_adds(struct sbuf *b, const char *s)
{
	sbuf_add(b, s, strlen(s));
}

static void sbuf_addc(struct sbuf *b, char c)
{
	sbuf_add(b, &c, 1);
}

static void sbuf_free(struct sbuf *b)
{
	free(b->p);
	b->p = NULL;
	b->len = b->cap = 0;
}

/* Hands the string to the caller (an empty one if nothing was written). */
static char *sbuf_take(struct sbuf *b)
{
	char *s;

	if (!b->p && !b->oom)
		sbuf_reserve(b, 0);
	if (b->oom)
		return NULL;
	b->p[b->len] = '\0';
	s = b->p;
	b->p = NULL;
	b->len = b->cap = 0;
	return s;
}

/* ------------------------------------------------------------------ */
/* Character classes                                                   */
/* ------------------------------------------------------------------ */

/* ASCII whitespace as HTML defines it. */
static bool is_html_space(unsigned char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\f' || c == '\r';
}

static bool is_alpha(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

static unsigned char to_lower(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') ? (unsigned char)(c + 32) : c;
}

/*
 * Length of a control character at s (C0 other than HTML whitespace, DEL,
 * or a UTF-8 encoded C1), else 0. They are dropped from all output: an HTML
 * parser turns some of them into U+FFFD, so keeping them would make the
 * output change on a second pass, and they have no business in a message.
 */
static size_t control_len(const unsigned char *s, size_t n)
{
	if ((s[0] < 0x20 && !is_html_space(s[0])) || s[0] == 0x7f)
		return 1;
	if (s[0] == 0xc2 && n > 1 && s[1] >= 0x80 && s[1] <= 0x9f)
		return 2;
	return 0;
}

/* ------------------------------------------------------------------ */
/* Input checks                                                        */
/* ------------------------------------------------------------------ */

/* Strict UTF-8, no NUL, and within the size limits. */
static int check_input(const unsigned char *s, size_t len)
{
	size_t i = 0, markup = 0, l;

	if (len > SMIS_HTML_MAX_INPUT)
		return -E2BIG;
	while (i < len) {
		if (s[i] == 0)
			return -EINVAL;
		/* Only '<' that the tokenizer treats as markup costs parse
		 * time; "a < b" is plain text. */
		if (s[i] == '<' && i + 1 < len &&
		    (is_alpha(s[i + 1]) || s[i + 1] == '/' || s[i + 1] == '!' || s[i + 1] == '?'))
			markup++;
		l = smis_utf8_char_len((const char *)s + i, len - i);
		if (l == 0)
			return -EINVAL;
		i += l;
	}
	return markup > SMIS_HTML_MAX_MARKUP ? -E2BIG : 0;
}

/*
 * Length of the character at s when the output may keep it as it is: it
 * is well-formed UTF-8 and no noncharacter (U+FDD0 to U+FDEF, U+xFFFE,
 * U+xFFFF). gumbo turns a noncharacter into U+FFFD when it reads one raw,
 * but keeps one a character reference names ("&#1114111;"), so that kept,
 * the output would change on a second pass (found by tests/fuzz/fuzz_html).
 * 0 otherwise.
 */
static size_t kept_char_len(const char *s, size_t n)
{
	uint32_t cp;
	size_t l = smis_utf8_decode(s, n, &cp);

	if (l == 0 || (cp >= 0xfdd0 && cp <= 0xfdef) || (cp & 0xfffe) == 0xfffe)
		return 0;
	return l;
}

/*
 * `s` itself when every character of it is kept as it is (kept_char_len),
 * else a copy in `tmp` with each other one, or each ill-formed byte,
 * replaced by U+FFFD. The input was checked, but gumbo 0.10.1 makes
 * ill-formed UTF-8 out of a hexadecimal character reference too large for
 * its counter ("&#xCCCCCCCC6;" becomes the lone byte 0xC6; the decimal
 * ones become U+FFFD, as HTML5 says): found by tests/fuzz/fuzz_html.
 * Returns NULL when out of memory.
 */
static const char *utf8_repaired(const char *s, struct sbuf *tmp)
{
	size_t n = strlen(s), i = 0, l, start;

	while (i < n && (l = kept_char_len(s + i, n - i)) > 0)
		i += l;
	if (i == n)
		return s;
	tmp->len = 0;
	start = 0;
	while (i < n) {
		l = kept_char_len(s + i, n - i);
		if (l > 0) {
			i += l;
			continue;
		}
		/* A noncharacter is replaced whole, an ill-formed byte alone. */
		l = smis_utf8_char_len(s + i, n - i);
		sbuf_add(tmp, s + start, i - start);
		sbuf_adds(tmp, "\xef\xbf\xbd");
		i += l > 0 ? l : 1;
		start = i;
	}
	sbuf_add(tmp, s + start, n - start);
	return tmp->oom ? NULL : tmp->p;
}

/* ------------------------------------------------------------------ */
/* Foreign content                                                     */
/* ------------------------------------------------------------------ */

/*
 * gumbo 0.10.1 confuses SVG/MathML elements with HTML ones of the same name
 * in some table/select constructions and then aborts on an assertion, e.g.
 * "<table><math><select><mtext><select><tr>" (a hostile body would take the
 * daemon down). Fuzzing finds no such abort once foreign content is out of
 * the picture, and we drop SVG and MathML anyway; so before parsing, every
 * "<svg"/"<math" and "</svg"/"</math" that ends where a tag name ends is
 * renamed to <noscript>, an ordinary element here that we also drop whole.
 * Over-matching (inside a comment or an attribute) only touches text that
 * is dropped, or shown as text; it never lets markup through, since what we
 * write comes from the allow-list.
 */
static const char *const foreign_tags[] = {"svg", "math"};
#define FOREIGN_REPLACEMENT "noscript"

/* Length of a foreign tag name at s (after '<' or '</'), else 0. */
static size_t foreign_name_len(const char *s, size_t n)
{
	size_t i, k, tl;

	for (k = 0; k < sizeof(foreign_tags) / sizeof(foreign_tags[0]); k++) {
		tl = strlen(foreign_tags[k]);
		if (n < tl)
			continue;
		for (i = 0; i < tl; i++)
			if (to_lower((unsigned char)s[i]) != (unsigned char)foreign_tags[k][i])
				break;
		if (i < tl)
			continue;
		/* Where the tokenizer ends a tag name. */
		if (n == tl || is_html_space((unsigned char)s[tl]) || s[tl] == '/' ||
		    s[tl] == '>')
			return tl;
	}
	return 0;
}

/* Copy of the body with foreign tags renamed, or NULL in *out when there
 * are none. */
static int rename_foreign(const char *in, size_t len, char **out, size_t *out_len)
{
	struct sbuf b = {0};
	size_t i = 0, start = 0, name, skip;
	int rc = 0;

	*out = NULL;
	*out_len = 0;
	while (i < len) {
		if (in[i] != '<') {
			i++;
			continue;
		}
		skip = (i + 1 < len && in[i + 1] == '/') ? 2 : 1;
		name = foreign_name_len(in + i + skip, len - i - skip);
		if (name == 0) {
			i++;
			continue;
		}
		sbuf_add(&b, in + start, i + skip - start);
		sbuf_adds(&b, FOREIGN_REPLACEMENT);
		i += skip + name;
		start = i;
	}
	if (b.p || b.oom) {
		sbuf_add(&b, in + start, len - start);
		if (b.oom) {
			rc = -ENOMEM;
			sbuf_free(&b);
		} else {
			*out_len = b.len;
			*out = b.p;
		}
	}
	return rc;
}

/* ------------------------------------------------------------------ */
/* Budgeted arena for gumbo                                            */
/* ------------------------------------------------------------------ */

/*
 * gumbo 0.10.1 does not check for allocation failure, and hostile markup
 * can make it build millions of nodes. Its allocator hook lets us keep every
 * block on a list and count the bytes; when the budget is exceeded (or
 * malloc fails) we longjmp out of the parse and free the whole list. gumbo
 * keeps no global state, so leaving it mid-parse is safe. The tree is also
 * freed through the list rather than gumbo_destroy_output(), which recurses
 * once per nesting level.
 */
union arena_hdr {
	struct {
		union arena_hdr *prev;
		union arena_hdr *next;
		size_t size;
	} h;
	max_align_t align;
};

struct parse_ctx {
	GumboOptions opts;
	jmp_buf abort;
	union arena_hdr *head;
	size_t live;
	int err;
};

static void *arena_alloc(void *userdata, size_t size)
{
	struct parse_ctx *pc = userdata;
	union arena_hdr *h;

	if (size > SMIS_HTML_PARSE_MEM_MAX - pc->live) {
		pc->err = -E2BIG;
		longjmp(pc->abort, 1);
	}
	/* Zeroed: in fragment mode gumbo 0.10.1 never sets the document's
	 * quirks mode and reads it at <table>; zero is "no quirks", what a
	 * fragment of a modern page gets. */
	h = calloc(1, sizeof(*h) + size);
	if (!h) {
		pc->err = -ENOMEM;
		longjmp(pc->abort, 1);
	}
	h->h.size = size;
	h->h.prev = NULL;
	h->h.next = pc->head;
	if (pc->head)
		pc->head->h.prev = h;
	pc->head = h;
	pc->live += size;
	return h + 1;
}

static void arena_dealloc(void *userdata, void *ptr)
{
	struct parse_ctx *pc = userdata;
	union arena_hdr *h;

	if (!ptr)
		return;
	h = (union arena_hdr *)ptr - 1;
	if (h->h.prev)
		h->h.prev->h.next = h->h.next;
	else
		pc->head = h->h.next;
	if (h->h.next)
		h->h.next->h.prev = h->h.prev;
	pc->live -= h->h.size;
	free(h);
}

static void arena_release(struct parse_ctx *pc)
{
	union arena_hdr *h, *next;

	for (h = pc->head; h; h = next) {
		next = h->h.next;
		free(h);
	}
	pc->head = NULL;
	pc->live = 0;
}

static void parse_ctx_init(struct parse_ctx *pc)
{
	memset(pc, 0, sizeof(*pc));
	pc->opts = kGumboDefaultOptions;
	pc->opts.allocator = arena_alloc;
	pc->opts.deallocator = arena_dealloc;
	pc->opts.userdata = pc;
	/* Parse errors are of no use to us and cost memory. */
	pc->opts.max_errors = 0;
	/* A message body sits inside the app's own markup, like a <div>'s
	 * innerHTML: no <html>/<head>/<body> of its own. */
	pc->opts.fragment_context = GUMBO_TAG_DIV;
	pc->opts.fragment_namespace = GUMBO_NAMESPACE_HTML;
}

/* Kept free of locals that change after setjmp, as longjmp requires. */
static int parse_fragment(struct parse_ctx *pc, const char *buf, size_t len,
			  GumboOutput **out)
{
	int rc = 0;

	*out = NULL;
	if (setjmp(pc->abort) == 0)
		*out = gumbo_parse_with_options(&pc->opts, buf, len);
	else
		rc = pc->err;
	return rc;
}

/* ------------------------------------------------------------------ */
/* Allow-list                                                          */
/* ------------------------------------------------------------------ */

/* Elements that may appear in the output. */
enum keep_tag {
	K_NONE = 0,
	K_P,
	K_BR,
	K_STRONG,
	K_B,
	K_EM,
	K_I,
	K_U,
	K_UL,
	K_OL,
	K_LI,
	K_A,
	K_H2,
	K_H3,
	K_BLOCKQUOTE,
};

static const char *const keep_name[] = {
	[K_NONE] = "",	     [K_P] = "p",   [K_BR] = "br",	 [K_STRONG] = "strong",
	[K_B] = "b",	     [K_EM] = "em", [K_I] = "i",	 [K_U] = "u",
	[K_UL] = "ul",	     [K_OL] = "ol", [K_LI] = "li",	 [K_A] = "a",
	[K_H2] = "h2",	     [K_H3] = "h3", [K_BLOCKQUOTE] = "blockquote",
};

enum action {
	ACT_UNWRAP,	  /* drop the tag, keep the children */
	ACT_UNWRAP_BLOCK, /* same, and keep a line break around the content */
	ACT_DROP,	  /* drop the element and everything inside it */
	ACT_KEEP,	  /* write it (if its context allows) */
};

static bool keep_is_block(enum keep_tag k)
{
	return k == K_P || k == K_UL || k == K_OL || k == K_LI || k == K_H2 ||
	       k == K_H3 || k == K_BLOCKQUOTE;
}

static enum action classify(GumboTag tag, enum keep_tag *kt)
{
	enum action act = ACT_KEEP;

	*kt = K_NONE;
	switch (tag) {
	case GUMBO_TAG_P: *kt = K_P; break;
	case GUMBO_TAG_BR: *kt = K_BR; break;
	case GUMBO_TAG_STRONG: *kt = K_STRONG; break;
	case GUMBO_TAG_B: *kt = K_B; break;
	case GUMBO_TAG_EM: *kt = K_EM; break;
	case GUMBO_TAG_I: *kt = K_I; break;
	case GUMBO_TAG_U: *kt = K_U; break;
	case GUMBO_TAG_UL: *kt = K_UL; break;
	case GUMBO_TAG_OL: *kt = K_OL; break;
	case GUMBO_TAG_LI: *kt = K_LI; break;
	case GUMBO_TAG_A: *kt = K_A; break;
	case GUMBO_TAG_BLOCKQUOTE: *kt = K_BLOCKQUOTE; break;
	/* A message has no page title of its own: two heading levels are
	 * enough, and the app styles them. */
	case GUMBO_TAG_H1:
	case GUMBO_TAG_H2: *kt = K_H2; break;
	case GUMBO_TAG_H3:
	case GUMBO_TAG_H4:
	case GUMBO_TAG_H5:
	case GUMBO_TAG_H6: *kt = K_H3; break;

	/* Active content, resources, metadata, forms and foreign content:
	 * their content is code, fallback for it, or raw text we must not
	 * show. */
	case GUMBO_TAG_HEAD:
	case GUMBO_TAG_TITLE:
	case GUMBO_TAG_BASE:
	case GUMBO_TAG_LINK:
	case GUMBO_TAG_META:
	case GUMBO_TAG_STYLE:
	case GUMBO_TAG_SCRIPT:
	case GUMBO_TAG_NOSCRIPT:
	case GUMBO_TAG_TEMPLATE:
	case GUMBO_TAG_IMAGE:
	case GUMBO_TAG_IMG:
	case GUMBO_TAG_IFRAME:
	case GUMBO_TAG_EMBED:
	case GUMBO_TAG_OBJECT:
	case GUMBO_TAG_PARAM:
	case GUMBO_TAG_VIDEO:
	case GUMBO_TAG_AUDIO:
	case GUMBO_TAG_SOURCE:
	case GUMBO_TAG_TRACK:
	case GUMBO_TAG_CANVAS:
	case GUMBO_TAG_MAP:
	case GUMBO_TAG_AREA:
	case GUMBO_TAG_MATH:
	case GUMBO_TAG_SVG:
	case GUMBO_TAG_FORM:
	case GUMBO_TAG_INPUT:
	case GUMBO_TAG_BUTTON:
	case GUMBO_TAG_SELECT:
	case GUMBO_TAG_DATALIST:
	case GUMBO_TAG_OPTGROUP:
	case GUMBO_TAG_OPTION:
	case GUMBO_TAG_TEXTAREA:
	case GUMBO_TAG_KEYGEN:
	case GUMBO_TAG_OUTPUT:
	case GUMBO_TAG_MENUITEM:
	case GUMBO_TAG_APPLET:
	case GUMBO_TAG_BGSOUND:
	case GUMBO_TAG_FRAME:
	case GUMBO_TAG_FRAMESET:
	case GUMBO_TAG_NOFRAMES:
	case GUMBO_TAG_NOEMBED:
	case GUMBO_TAG_ISINDEX:
	case GUMBO_TAG_BASEFONT:
		act = ACT_DROP;
		break;

	/* Block containers we do not keep: their text stays, on its own
	 * line, so that table cells or <div>s do not run together. */
	case GUMBO_TAG_ARTICLE:
	case GUMBO_TAG_SECTION:
	case GUMBO_TAG_NAV:
	case GUMBO_TAG_ASIDE:
	case GUMBO_TAG_HGROUP:
	case GUMBO_TAG_HEADER:
	case GUMBO_TAG_FOOTER:
	case GUMBO_TAG_ADDRESS:
	case GUMBO_TAG_HR:
	case GUMBO_TAG_PRE:
	case GUMBO_TAG_DL:
	case GUMBO_TAG_DT:
	case GUMBO_TAG_DD:
	case GUMBO_TAG_FIGURE:
	case GUMBO_TAG_FIGCAPTION:
	case GUMBO_TAG_MAIN:
	case GUMBO_TAG_DIV:
	case GUMBO_TAG_TABLE:
	case GUMBO_TAG_CAPTION:
	case GUMBO_TAG_TBODY:
	case GUMBO_TAG_THEAD:
	case GUMBO_TAG_TFOOT:
	case GUMBO_TAG_TR:
	case GUMBO_TAG_TD:
	case GUMBO_TAG_TH:
	case GUMBO_TAG_FIELDSET:
	case GUMBO_TAG_LEGEND:
	case GUMBO_TAG_DETAILS:
	case GUMBO_TAG_SUMMARY:
	case GUMBO_TAG_MENU:
	case GUMBO_TAG_DIR:
	case GUMBO_TAG_LISTING:
	case GUMBO_TAG_XMP:
	case GUMBO_TAG_PLAINTEXT:
	case GUMBO_TAG_CENTER:
	case GUMBO_TAG_MULTICOL:
	case GUMBO_TAG_MARQUEE:
		act = ACT_UNWRAP_BLOCK;
		break;

	default: /* span, font, unknown and custom elements, ... */
		act = ACT_UNWRAP;
		break;
	}
	return act;
}

/* ------------------------------------------------------------------ */
/* Links                                                               */
/* ------------------------------------------------------------------ */

static bool mailto_local_char(unsigned char c)
{
	/* RFC 5322 atext without '%' and '?', which would start escapes or
	 * a query (?body=, ?cc=) in a mailto: URL. */
	return is_alpha(c) || is_digit(c) || (c && strchr("!#$&'*+/=^_`{|}~.-", c));
}

static bool check_mailto(const char *s, size_t n)
{
	size_t at = n, i, dots = 0;

	for (i = 0; i < n; i++) {
		if (s[i] == '@') {
			if (at != n)
				return false;
			at = i;
		}
	}
	if (at == 0 || at == n || at > 64 || n - at - 1 > 253 || n - at - 1 == 0)
		return false;
	for (i = 0; i < at; i++)
		if (!mailto_local_char((unsigned char)s[i]))
			return false;
	for (i = at + 1; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '.')
			dots++;
		else if (!is_alpha(c) && !is_digit(c) && c != '-')
			return false;
	}
	return dots > 0 && s[at + 1] != '.' && s[n - 1] != '.';
}

static bool check_tel(const char *s, size_t n)
{
	size_t i, digits = 0;

	if (n > 32)
		return false;
	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (is_digit(c))
			digits++;
		else if (c == '+' && i == 0)
			continue;
		else if (c != ' ' && c != '-' && c != '.' && c != '(' && c != ')')
			return false;
	}
	return digits >= 3 && digits <= 20;
}

static bool check_https(const char *s, size_t n)
{
	size_t i, host_end;

	/* Characters a well-formed URL never holds raw: they would be
	 * percent-encoded, and browsers read '\' as '/'. */
	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c <= 0x20 || c == 0x7f || c == '\\' || c == '"' || c == '<' ||
		    c == '>' || c == '`')
			return false;
		if (control_len((const unsigned char *)s + i, n - i))
			return false;
	}
	if (n < 3 || s[0] != '/' || s[1] != '/')
		return false;
	for (host_end = 2; host_end < n; host_end++)
		if (s[host_end] == '/' || s[host_end] == '?' || s[host_end] == '#')
			break;
	if (host_end == 2 || s[2] == ':')
		return false;
	/* Userinfo ("https://gov.be@evil.example/") only serves to
	 * disguise where a link goes. */
	for (i = 2; i < host_end; i++)
		if (s[i] == '@')
			return false;
	return true;
}

/*
 * Canonical form of an href (already entity-decoded by the parser) in *out,
 * or false when the link must be unwrapped. Trims what URL parsers trim
 * (leading/trailing C0 and space) and drops what they drop (tab, LF, CR), so
 * the scheme we check is the one a browser would use.
 */
static bool href_canonical(const char *raw, struct sbuf *out)
{
	const char *s = raw, *e = raw + strlen(raw), *rest;
	char scheme[8];
	size_t i, n, slen = 0, rlen;
	bool ok = false;

	out->len = 0;
	while (s < e && (unsigned char)*s <= 0x20)
		s++;
	while (e > s && (unsigned char)e[-1] <= 0x20)
		e--;
	if ((size_t)(e - s) > HREF_MAX * 4)
		goto out;
	for (; s < e; s++)
		if (*s != '\t' && *s != '\n' && *s != '\r')
			sbuf_addc(out, *s);
	if (out->oom || out->len == 0 || out->len > HREF_MAX)
		goto out;
	n = out->len;
	if (!is_alpha((unsigned char)out->p[0]))
		goto out;
	for (i = 0; i < n && out->p[i] != ':'; i++) {
		unsigned char c = (unsigned char)out->p[i];

		if (!is_alpha(c) && !is_digit(c) && c != '+' && c != '-' && c != '.')
			goto out; /* relative URL */
		if (slen + 1 >= sizeof(scheme))
			goto out;
		scheme[slen++] = (char)to_lower(c);
	}
	if (i == n)
		goto out; /* no scheme: relative URL */
	scheme[slen] = '\0';
	memcpy(out->p, scheme, slen);
	rest = out->p + slen + 1;
	rlen = n - slen - 1;
	if (strcmp(scheme, "https") == 0)
		ok = check_https(rest, rlen);
	else if (strcmp(scheme, "mailto") == 0)
		ok = check_mailto(rest, rlen);
	else if (strcmp(scheme, "tel") == 0)
		ok = check_tel(rest, rlen);
out:
	return ok && !out->oom;
}

/* What the plain text shows for a link target: the address for mailto:
 * and tel:, the whole URL otherwise. */
static const char *href_display(const char *href)
{
	if (strncmp(href, "mailto:", 7) == 0)
		return href + 7;
	if (strncmp(href, "tel:", 4) == 0)
		return href + 4;
	return href;
}

/* ------------------------------------------------------------------ */
/* Plain-text renderer                                                 */
/* ------------------------------------------------------------------ */

struct text_out {
	struct sbuf b;
	unsigned int pending_nl; /* line breaks owed before the next word */
	bool pending_space;
	bool at_line_start;
	unsigned int nlists;
	bool list_ordered[SMIS_HTML_MAX_DEPTH];
	unsigned long list_count[SMIS_HTML_MAX_DEPTH];
	unsigned int nli;
	unsigned int nquote;
	bool marker_pending;
	char marker[32];
	bool link_open;
	bool link_has_text;
	size_t link_start;
	struct sbuf link_href;
};

static void text_sep(struct text_out *t, unsigned int n)
{
	if (t->b.len > 0 && t->pending_nl < n)
		t->pending_nl = n;
}

static void text_spaces(struct text_out *t, unsigned int n)
{
	while (n-- > 0)
		sbuf_addc(&t->b, ' ');
}

/* Everything that goes before a word: owed line breaks, the line prefix
 * (quote marks, list indent and marker) or a single space. */
static void text_begin_word(struct text_out *t)
{
	unsigned int i, depth;

	if (t->b.len > 0 && t->pending_nl > 0) {
		while (t->b.len > 0 && t->b.p[t->b.len - 1] == ' ')
			t->b.len--;
		for (i = 0; i < t->pending_nl; i++) {
			/* A blank line inside a quote stays part of it. */
			if (i > 0 && t->nquote > 0)
				sbuf_addc(&t->b, '>');
			sbuf_addc(&t->b, '\n');
		}
		t->at_line_start = true;
	}
	t->pending_nl = 0;
	if (t->at_line_start) {
		for (i = 0; i < t->nquote && i < TEXT_QUOTE_MAX; i++)
			sbuf_adds(&t->b, "> ");
		depth = t->nlists < TEXT_LIST_INDENT_MAX ? t->nlists
							  : TEXT_LIST_INDENT_MAX;
		if (depth > 0) {
			text_spaces(t, 2 * (depth - 1));
			if (t->marker_pending)
				sbuf_adds(&t->b, t->marker);
			else if (t->nli > 0)
				text_spaces(t, 2);
		}
		t->marker_pending = false;
		t->at_line_start = false;
	} else if (t->pending_space) {
		sbuf_addc(&t->b, ' ');
	}
	t->pending_space = false;
	if (t->link_open && !t->link_has_text) {
		t->link_has_text = true;
		t->link_start = t->b.len;
	}
}

static void text_put(struct text_out *t, const char *s, size_t n)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t i = 0, start, cl;

	while (i < n) {
		if (is_html_space(u[i])) {
			/* Collapsed: text_begin_word writes at most one. */
			t->pending_space = true;
			i++;
			continue;
		}
		if ((cl = control_len(u + i, n - i)) > 0) {
			i += cl;
			continue;
		}
		text_begin_word(t);
		start = i;
		while (i < n && !is_html_space(u[i]) && control_len(u + i, n - i) == 0)
			i++;
		sbuf_add(&t->b, s + start, i - start);
	}
}

static void text_open(struct text_out *t, enum keep_tag k, const char *href)
{
	unsigned int sep = t->nli > 0 ? 1 : 2;

	switch (k) {
	case K_P:
	case K_H2:
	case K_H3:
		text_sep(t, sep);
		break;
	case K_BLOCKQUOTE:
		text_sep(t, sep);
		t->nquote++;
		break;
	case K_UL:
	case K_OL:
		text_sep(t, sep);
		if (t->nlists < SMIS_HTML_MAX_DEPTH) {
			t->list_ordered[t->nlists] = k == K_OL;
			t->list_count[t->nlists] = 0;
		}
		t->nlists++;
		break;
	case K_LI:
		text_sep(t, 1);
		t->nli++;
		if (t->nlists > 0 && t->nlists <= SMIS_HTML_MAX_DEPTH &&
		    t->list_ordered[t->nlists - 1])
			snprintf(t->marker, sizeof(t->marker), "%lu. ",
				 ++t->list_count[t->nlists - 1]);
		else
			snprintf(t->marker, sizeof(t->marker), "- ");
		t->marker_pending = true;
		break;
	case K_A:
		t->link_open = true;
		t->link_has_text = false;
		t->link_href.len = 0;
		sbuf_adds(&t->link_href, href);
		break;
	default:
		break;
	}
}

static void text_link_close(struct text_out *t)
{
	const char *display, *text;
	size_t tlen;

	t->link_open = false;
	/* Out of memory is reported by the caller. */
	if (t->link_href.oom || !t->link_href.p || t->b.oom)
		goto out;
	display = href_display(t->link_href.p);
	if (!t->link_has_text) {
		/* An empty link (or one around an image) shows its target. */
		text_begin_word(t);
		sbuf_adds(&t->b, display);
		goto out;
	}
	text = t->b.p + t->link_start;
	tlen = t->b.len - t->link_start;
	if ((tlen == strlen(t->link_href.p) && memcmp(text, t->link_href.p, tlen) == 0) ||
	    (tlen == strlen(display) && memcmp(text, display, tlen) == 0))
		goto out;
	sbuf_adds(&t->b, " (");
	sbuf_adds(&t->b, display);
	sbuf_addc(&t->b, ')');
out:
	return;
}

static void text_close(struct text_out *t, enum keep_tag k)
{
	switch (k) {
	case K_P:
	case K_H2:
	case K_H3:
		text_sep(t, t->nli > 0 ? 1 : 2);
		break;
	case K_BLOCKQUOTE:
		t->nquote--;
		text_sep(t, t->nli > 0 ? 1 : 2);
		break;
	case K_UL:
	case K_OL:
		t->nlists--;
		text_sep(t, t->nli > 0 ? 1 : 2);
		break;
	case K_LI:
		t->nli--;
		t->marker_pending = false;
		text_sep(t, 1);
		break;
	case K_A:
		text_link_close(t);
		break;
	default:
		break;
	}
}

static void text_br(struct text_out *t)
{
	/* Two breaks make a blank line; more would only add empty lines. */
	if (t->b.len > 0 && t->pending_nl < 2)
		t->pending_nl++;
	t->pending_space = false;
}

/* Trims the result: no leading or trailing whitespace. */
static char *text_finish(struct text_out *t)
{
	size_t lead = 0;

	while (t->b.len > 0 && is_html_space((unsigned char)t->b.p[t->b.len - 1]))
		t->b.len--;
	while (lead < t->b.len && is_html_space((unsigned char)t->b.p[lead]))
		lead++;
	if (lead > 0 && !t->b.oom) {
		memmove(t->b.p, t->b.p + lead, t->b.len - lead);
		t->b.len -= lead;
	}
	return sbuf_take(&t->b);
}

/* ------------------------------------------------------------------ */
/* HTML writer                                                         */
/* ------------------------------------------------------------------ */

/* Escapes the five characters that matter in text and quoted attribute
 * values; CR is written as a reference because a parser would turn a raw
 * one into LF. Control characters are dropped (see control_len). */
static void html_escape(struct sbuf *b, const char *s, size_t n)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t i = 0, start, cl;

	while (i < n) {
		start = i;
		while (i < n && u[i] != '&' && u[i] != '<' && u[i] != '>' &&
		       u[i] != '"' && u[i] != '\'' && u[i] != '\r' &&
		       control_len(u + i, n - i) == 0)
			i++;
		sbuf_add(b, s + start, i - start);
		if (i >= n)
			break;
		switch (u[i]) {
		case '&': sbuf_adds(b, "&amp;"); break;
		case '<': sbuf_adds(b, "&lt;"); break;
		case '>': sbuf_adds(b, "&gt;"); break;
		case '"': sbuf_adds(b, "&quot;"); break;
		case '\'': sbuf_adds(b, "&#39;"); break;
		case '\r': sbuf_adds(b, "&#13;"); break;
		default:
			cl = control_len(u + i, n - i);
			i += cl - 1;
			break;
		}
		i++;
	}
}

/* ------------------------------------------------------------------ */
/* Tree walk                                                           */
/* ------------------------------------------------------------------ */

struct emitter {
	struct sbuf html;
	struct text_out text;
	struct sbuf href; /* scratch for href_canonical */
	struct sbuf utf8; /* scratch for utf8_repaired */
	enum keep_tag open[SMIS_HTML_MAX_DEPTH];
	unsigned int depth;
	unsigned int in_p;
	unsigned int in_a;
	unsigned int in_heading;
	/* '<' the output may still hold: it is a body we accept as input,
	 * so sanitising it again never hits SMIS_HTML_MAX_MARKUP. */
	unsigned int markup_left;
	/* Text has been written since the last line break... */
	bool line_has_inline;
	/* ...and an unwrapped block boundary was crossed since: the next
	 * inline content starts with a <br>. */
	bool need_br;
};

struct frame {
	const GumboNode *node;
	unsigned int next;  /* next child to visit */
	enum keep_tag kept; /* written for this element, K_NONE if unwrapped */
	bool block;	    /* unwrapped block: line break on the way out */
};

static void emit_br(struct emitter *e)
{
	if (e->markup_left > 0) {
		e->markup_left--;
		sbuf_adds(&e->html, "<br>");
		text_br(&e->text);
		e->line_has_inline = false;
	}
	e->need_br = false;
}

static void flush_br(struct emitter *e)
{
	if (e->need_br)
		emit_br(e);
}

static void block_boundary(struct emitter *e)
{
	if (e->line_has_inline)
		e->need_br = true;
}

static void emit_text(struct emitter *e, const char *s)
{
	size_t n, i;
	bool ink = false;

	s = utf8_repaired(s, &e->utf8);
	if (!s) {
		e->html.oom = true;
		return;
	}
	n = strlen(s);

	for (i = 0; i < n && !ink; i++)
		ink = !is_html_space((unsigned char)s[i]);
	if (ink) {
		flush_br(e);
		e->line_has_inline = true;
	}
	html_escape(&e->html, s, n);
	text_put(&e->text, s, n);
}

/*
 * Whether `k` may be written here. The rules are those under which an
 * HTML5 parser keeps the element where we put it; anything else would be
 * moved or closed early when the output is parsed again.
 */
static bool keep_allowed(const struct emitter *e, enum keep_tag k)
{
	/* An element costs its start and end tag, plus the <br> owed before
	 * inline content (see emit_open). */
	unsigned int cost = 2 + (!keep_is_block(k) && e->need_br ? 1 : 0);
	bool ok = e->depth < SMIS_HTML_MAX_DEPTH && e->markup_left >= cost;

	switch (ok ? k : K_NONE) {
	case K_P:
	case K_UL:
	case K_OL:
	case K_BLOCKQUOTE:
		ok = e->in_p == 0; /* would close the <p> */
		break;
	case K_H2:
	case K_H3:
		ok = e->in_p == 0 && e->in_heading == 0;
		break;
	case K_LI:
		/* Outside a list, <li> closes an open <li> or <p>. */
		ok = e->depth > 0 &&
		     (e->open[e->depth - 1] == K_UL || e->open[e->depth - 1] == K_OL);
		break;
	case K_A:
		ok = e->in_a == 0; /* a nested <a> closes the outer one */
		break;
	default:
		break;
	}
	return ok;
}

static void emit_open(struct emitter *e, enum keep_tag k, const char *href)
{
	if (keep_is_block(k)) {
		e->need_br = false;
		e->line_has_inline = false;
	} else {
		flush_br(e);
	}
	sbuf_addc(&e->html, '<');
	sbuf_adds(&e->html, keep_name[k]);
	if (k == K_A) {
		sbuf_adds(&e->html, " href=\"");
		html_escape(&e->html, href, strlen(href));
		sbuf_adds(&e->html, "\" rel=\"noopener noreferrer\"");
	}
	sbuf_addc(&e->html, '>');
	e->markup_left -= 2;
	e->open[e->depth++] = k;
	if (k == K_P)
		e->in_p++;
	else if (k == K_A)
		e->in_a++;
	else if (k == K_H2 || k == K_H3)
		e->in_heading++;
	text_open(&e->text, k, href);
}

static void emit_close(struct emitter *e, enum keep_tag k)
{
	sbuf_adds(&e->html, "</");
	sbuf_adds(&e->html, keep_name[k]);
	sbuf_addc(&e->html, '>');
	e->depth--;
	if (k == K_P)
		e->in_p--;
	else if (k == K_A)
		e->in_a--;
	else if (k == K_H2 || k == K_H3)
		e->in_heading--;
	if (keep_is_block(k)) {
		e->need_br = false;
		e->line_has_inline = false;
	}
	text_close(&e->text, k);
}

/* Decides what becomes of element `n` and fills the frame to push for it;
 * returns false when the element is dropped with its content. */
static bool enter_element(struct emitter *e, const GumboNode *n, struct frame *f)
{
	const GumboElement *el = &n->v.element;
	const GumboAttribute *attr;
	const char *href = NULL, *value;
	enum keep_tag k = K_NONE;
	enum action act = ACT_DROP;
	bool keep;

	memset(f, 0, sizeof(*f));
	f->node = n;
	/* SVG and MathML (and anything gumbo put in their namespaces, such
	 * as an HTML-looking <p> inside <svg>) go whole. */
	if (el->tag_namespace == GUMBO_NAMESPACE_HTML)
		act = classify(el->tag, &k);
	switch (act) {
	case ACT_DROP:
	case ACT_UNWRAP:
		break;
	case ACT_UNWRAP_BLOCK:
		f->block = true;
		block_boundary(e);
		break;
	case ACT_KEEP:
		if (k == K_BR) {
			emit_br(e); /* void: no children to visit */
			break;
		}
		keep = keep_allowed(e, k);
		if (keep && k == K_A) {
			attr = gumbo_get_attribute(&el->attributes, "href");
			value = attr ? utf8_repaired(attr->value, &e->utf8) : NULL;
			if (attr && !value)
				e->html.oom = true;
			keep = value && href_canonical(value, &e->href);
			href = e->href.p;
		}
		if (keep) {
			f->kept = k;
			emit_open(e, k, href);
		} else if (keep_is_block(k)) {
			f->block = true;
			block_boundary(e);
		}
		break;
	}
	return act != ACT_DROP;
}

static int walk(struct emitter *e, const GumboNode *root)
{
	struct frame *stack = NULL, *f, *grown;
	size_t n = 0, cap = 0;
	const GumboNode *child;
	const GumboVector *children;
	int rc = 0;

	cap = 64;
	stack = malloc(cap * sizeof(*stack));
	if (!stack) {
		rc = -ENOMEM;
		goto out;
	}
	memset(&stack[0], 0, sizeof(stack[0]));
	stack[0].node = root;
	n = 1;
	while (n > 0) {
		/* Formatting-element reconstruction can repeat a long href
		 * thousands of times; the result would be refused anyway. */
		if (e->html.len > SMIS_HTML_MAX_INPUT ||
		    e->text.b.len > 2 * (size_t)SMIS_HTML_MAX_INPUT) {
			rc = -E2BIG;
			goto out_free_stack;
		}
		f = &stack[n - 1];
		children = &f->node->v.element.children;
		if (f->next >= children->length) {
			if (f->kept != K_NONE)
				emit_close(e, f->kept);
			else if (f->block)
				block_boundary(e);
			n--;
			continue;
		}
		child = children->data[f->next++];
		switch (child->type) {
		case GUMBO_NODE_TEXT:
		case GUMBO_NODE_WHITESPACE:
			emit_text(e, child->v.text.text);
			break;
		case GUMBO_NODE_ELEMENT:
			if (n == cap) {
				grown = realloc(stack, 2 * cap * sizeof(*stack));
				if (!grown) {
					rc = -ENOMEM;
					goto out_free_stack;
				}
				stack = grown;
				cap *= 2;
			}
			if (enter_element(e, child, &stack[n]))
				n++;
			break;
		default:
			/* Comments, CDATA and <template> contents are never
			 * shown. */
			break;
		}
	}
	if (e->html.oom || e->text.b.oom || e->href.oom || e->text.link_href.oom)
		rc = -ENOMEM;
out_free_stack:
	free(stack);
out:
	return rc;
}

/* Strips ASCII whitespace at both ends of the HTML output. */
static void html_trim(struct sbuf *b)
{
	size_t lead = 0;

	if (b->oom || !b->p)
		return;
	while (b->len > 0 && is_html_space((unsigned char)b->p[b->len - 1]))
		b->len--;
	while (lead < b->len && is_html_space((unsigned char)b->p[lead]))
		lead++;
	memmove(b->p, b->p + lead, b->len - lead);
	b->len -= lead;
	b->p[b->len] = '\0';
}

int smis_html_sanitize(const char *html, size_t len, char **out_html,
		       char **out_text)
{
	struct parse_ctx *pc = NULL;
	struct emitter *e = NULL;
	GumboOutput *tree = NULL;
	char *h = NULL, *t = NULL, *renamed = NULL;
	size_t renamed_len = 0;
	int rc;

	if (out_html)
		*out_html = NULL;
	if (out_text)
		*out_text = NULL;
	if (!html && len > 0) {
		rc = -EINVAL;
		goto out;
	}
	rc = check_input((const unsigned char *)html, len);
	if (rc < 0)
		goto out;
	rc = rename_foreign(html ? html : "", len, &renamed, &renamed_len);
	if (rc < 0)
		goto out;
	if (renamed) {
		html = renamed;
		len = renamed_len;
	}
	pc = malloc(sizeof(*pc));
	e = calloc(1, sizeof(*e));
	if (!pc || !e) {
		rc = -ENOMEM;
		goto out_free;
	}
	parse_ctx_init(pc);
	e->text.at_line_start = true;
	e->markup_left = SMIS_HTML_MAX_MARKUP;
	rc = parse_fragment(pc, len > 0 ? html : "", len, &tree);
	if (rc < 0)
		goto out_release;
	rc = walk(e, tree->root);
	if (rc < 0)
		goto out_release;
	html_trim(&e->html);
	/* Escaping can make the output longer than the input; it must stay
	 * a body we would accept, so that sanitising is idempotent. */
	if (e->html.len > SMIS_HTML_MAX_INPUT) {
		rc = -E2BIG;
		goto out_release;
	}
	h = sbuf_take(&e->html);
	t = text_finish(&e->text);
	if (!h || !t) {
		free(h);
		free(t);
		rc = -ENOMEM;
		goto out_release;
	}
	if (out_html)
		*out_html = h;
	else
		free(h);
	if (out_text)
		*out_text = t;
	else
		free(t);
out_release:
	arena_release(pc);
out_free:
	if (e) {
		sbuf_free(&e->html);
		sbuf_free(&e->text.b);
		sbuf_free(&e->text.link_href);
		sbuf_free(&e->href);
		sbuf_free(&e->utf8);
	}
	free(e);
	free(pc);
	free(renamed);
out:
	return rc;
}
