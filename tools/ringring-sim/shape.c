/*
 * shape.c - answers that misbehave at the HTTP level (fault "answer"), for
 * the tests of what SMIS's core does with an upstream that is not only
 * wrong but badly framed: gzip it did not ask for, a body far over its
 * limit, one that drips past its timeout, a reset half-way, an HTTP/1.0
 * answer that ends when the connection does, a redirect.
 *
 * Each is the answer the request would have had otherwise (its status and
 * body), sent in that shape; a redirect replaces it (the request is not
 * processed, as behind a proxy that redirects).
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include <microhttpd.h>

#include "sim.h"

/* Well over any sane client's limit (SMIS takes 1 MiB), padded with JSON
 * whitespace: a client without a limit would read the answer as it is. */
#define HUGE_BYTES (8u * 1024u * 1024u)
/* One byte per DRIP_MS: a 300-byte answer takes a minute. */
#define DRIP_MS 200

static const char *const names[] = {
	[SIM_SHAPE_PLAIN] = "plain", [SIM_SHAPE_GZIP] = "gzip", [SIM_SHAPE_HUGE] = "huge",
	[SIM_SHAPE_DRIP] = "drip", [SIM_SHAPE_RESET] = "reset", [SIM_SHAPE_HTTP10] = "http10",
	[SIM_SHAPE_REDIRECT] = "redirect",
};

bool sim_shape_parse(const char *name, enum sim_shape *out)
{
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strcasecmp(name, names[i]) == 0) {
			*out = (enum sim_shape)i;
			return true;
		}
	return false;
}

const char *sim_shape_name(enum sim_shape s)
{
	return names[s];
}

/* ---- gzip ---------------------------------------------------------------- */

static uint32_t crc32_of(const unsigned char *p, size_t n)
{
	uint32_t c = 0xFFFFFFFFu;

	while (n--) {
		c ^= *p++;
		for (int k = 0; k < 8; k++)
			c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1u)));
	}
	return ~c;
}

static unsigned char *put_le(unsigned char *o, uint32_t v, int bytes)
{
	for (int i = 0; i < bytes; i++)
		*o++ = (unsigned char)(v >> (8 * i));
	return o;
}

/* `len` bytes as a gzip member of stored (uncompressed) deflate blocks,
 * which any inflater reads: no zlib needed to write it. */
static unsigned char *gzip_stored(const char *data, size_t len, size_t *out_len)
{
	static const unsigned char head[10] = { 0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff };
	size_t blocks = len / 65535 + 1;
	unsigned char *out = malloc(sizeof(head) + blocks * 5 + len + 8), *o;
	size_t off = 0;

	if (!out)
		return NULL;
	memcpy(out, head, sizeof(head));
	o = out + sizeof(head);
	do {
		size_t n = len - off > 65535 ? 65535 : len - off;

		*o++ = off + n == len; /* BFINAL on the last, BTYPE 00: stored */
		o = put_le(o, (uint32_t)n, 2);
		o = put_le(o, (uint32_t)(~n & 0xFFFF), 2);
		memcpy(o, data + off, n);
		o += n;
		off += n;
	} while (off < len);
	o = put_le(o, crc32_of((const unsigned char *)data, len), 4);
	o = put_le(o, (uint32_t)len, 4);
	*out_len = (size_t)(o - out);
	return out;
}

/* ---- answers written as they go ------------------------------------------ */

struct shaped {
	enum sim_shape shape;
	struct sim *sim;
	struct MHD_Connection *conn;
	char *body;
	size_t len;
	int64_t due; /* drip: monotonic ms of the next byte */
};

static ssize_t copy_body(const struct shaped *s, uint64_t pos, char *buf, size_t max, size_t upto)
{
	size_t n = pos < upto ? upto - (size_t)pos : 0;

	if (n > max)
		n = max;
	memcpy(buf, s->body + pos, n);
	return (ssize_t)n;
}

static ssize_t drip(struct shaped *s, uint64_t pos, char *buf)
{
	int64_t now = sim_mono_ms();

	if (now >= s->due) {
		buf[0] = s->body[pos];
		s->due = now + DRIP_MS;
		return 1;
	}
	/* Waits on the delay thread, not on this one (MHD's documented way). */
	MHD_suspend_connection(s->conn);
	if (!sim_delay_add(s->sim->delay, s->due, s->conn)) {
		MHD_resume_connection(s->conn); /* shutting down */
		return MHD_CONTENT_READER_END_WITH_ERROR;
	}
	return 0;
}

/* Half the body, then a TCP reset (SO_LINGER 0: close sends RST). */
static ssize_t reset(struct shaped *s, uint64_t pos, char *buf, size_t max)
{
	const union MHD_ConnectionInfo *ci;
	struct linger lg = { 1, 0 };

	if (pos < s->len / 2)
		return copy_body(s, pos, buf, max, s->len / 2);
	ci = MHD_get_connection_info(s->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
	if (ci)
		setsockopt(ci->connect_fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	return MHD_CONTENT_READER_END_WITH_ERROR;
}

static ssize_t reader(void *cls, uint64_t pos, char *buf, size_t max)
{
	struct shaped *s = cls;

	switch (s->shape) {
	case SIM_SHAPE_HUGE:
		if (pos < s->len)
			return copy_body(s, pos, buf, max, s->len);
		if (max > HUGE_BYTES - pos)
			max = HUGE_BYTES - (size_t)pos;
		memset(buf, ' ', max);
		return (ssize_t)max;
	case SIM_SHAPE_DRIP:
		return drip(s, pos, buf);
	case SIM_SHAPE_RESET:
		return reset(s, pos, buf, max);
	default: /* HTTP10: the body, then the end of the connection */
		return pos < s->len ? copy_body(s, pos, buf, max, s->len) : MHD_CONTENT_READER_END_OF_STREAM;
	}
}

static void shaped_free(void *cls)
{
	struct shaped *s = cls;

	free(s->body);
	free(s);
}

static struct MHD_Response *written_as_it_goes(struct sim *sim, struct MHD_Connection *conn,
					       struct sim_reply *r)
{
	struct shaped *s = calloc(1, sizeof(*s));
	struct MHD_Response *resp;
	uint64_t size = r->shape == SIM_SHAPE_HUGE ? HUGE_BYTES :
			r->shape == SIM_SHAPE_HTTP10 ? MHD_SIZE_UNKNOWN : r->len;

	if (!s)
		return NULL;
	*s = (struct shaped){ .shape = r->shape, .sim = sim, .conn = conn, .body = r->body, .len = r->len,
			      .due = sim_mono_ms() };
	resp = MHD_create_response_from_callback(size, 4096, reader, s, shaped_free);
	if (!resp) {
		free(s);
		return NULL;
	}
	r->body = NULL; /* the response's now */
	/* No Content-Length, no chunks: the body ends when the connection does. */
	if (r->shape == SIM_SHAPE_HTTP10)
		MHD_set_response_options(resp, MHD_RF_HTTP_1_0_SERVER, MHD_RO_END);
	return resp;
}

struct MHD_Response *sim_shape_response(struct sim *sim, struct MHD_Connection *conn, struct sim_reply *r)
{
	struct MHD_Response *resp;

	if (r->shape == SIM_SHAPE_GZIP) {
		size_t n;
		unsigned char *gz = gzip_stored(r->body ? r->body : "", r->len, &n);

		resp = gz ? MHD_create_response_from_buffer(n, gz, MHD_RESPMEM_MUST_FREE) : NULL;
		if (!resp)
			free(gz);
		else
			MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_ENCODING, "gzip");
		return resp;
	}
	if (r->shape == SIM_SHAPE_REDIRECT) {
		resp = MHD_create_response_from_buffer(r->len, r->body, MHD_RESPMEM_MUST_FREE);
		if (resp) {
			r->body = NULL;
			MHD_add_response_header(resp, MHD_HTTP_HEADER_LOCATION, r->location);
		}
		return resp;
	}
	return written_as_it_goes(sim, conn, r);
}
