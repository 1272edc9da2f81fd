/*
 * server.c - the HTTP side of ringring-sim (libmicrohttpd).
 *
 * An internal polling thread pool (epoll where available) answers
 * everything; a slow answer never occupies a thread: its connection is
 * suspended and the delay thread resumes it when its time has come, at
 * which point MHD calls the handler again and the prepared reply is queued.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include <microhttpd.h>

#include "sim.h"

#define SIM_BODY_MAX (64 * 1024)

/* Each connection's memory pool (MHD_OPTION_CONNECTION_MEMORY_LIMIT): it
 * holds the request's head and the answer's headers, the body streams
 * through it. MHD 0.9.75 zeroes the whole pool for every request on a
 * kept-alive connection (MHD_pool_reset), so its default 32 KiB cost
 * ringring-sim a measurable share of its CPU per message under the bench.
 * 16 KiB still takes heads of about 15 KiB, more than the 8 to 16 KiB
 * common HTTP servers (nginx, IIS) accept by default; a bigger head gets
 * MHD's own refusal, as before but past 32 KiB. */
#define SIM_CONN_MEMORY ((size_t)16384)

enum req_phase {
	PHASE_RECEIVING = 0,
	PHASE_HELD = 1,
};

struct sim_req {
	enum req_phase phase;
	struct sim_buf body; /* NUL-terminated; s is NULL while empty */
	bool too_big;
	struct sim_reply reply;
};

/* Set while the handler drops a connection on purpose (timeout fault), so
 * that MHD's "internal error" complaint about it is not printed. */
static _Thread_local bool dropping;

struct arg_search {
	const char *name;
	const char *value;
};

static enum MHD_Result arg_iter(void *cls, enum MHD_ValueKind kind, const char *key,
				const char *value)
{
	struct arg_search *s = cls;

	if (key && strcasecmp(key, s->name) == 0) {
		s->value = value;
		return MHD_NO;
	}
	return MHD_YES;
}

/* Query arguments, case-insensitive like the rest of RingRing's API. */
static const char *get_arg(void *ctx, const char *name)
{
	struct arg_search s = { .name = name, .value = NULL };

	MHD_get_connection_values(ctx, MHD_GET_ARGUMENT_KIND, arg_iter, &s);
	return s.value;
}

static enum MHD_Result send_reply(struct sim *sim, struct MHD_Connection *conn, struct sim_req *rq)
{
	struct MHD_Response *resp;
	enum MHD_Result ret;

	if (rq->reply.drop) {
		dropping = true;
		return MHD_NO; /* closes the connection without an answer */
	}
	if (rq->reply.shape != SIM_SHAPE_PLAIN && rq->reply.body) {
		resp = sim_shape_response(sim, conn, &rq->reply);
		if (!resp)
			return MHD_NO;
	} else {
		resp = MHD_create_response_from_buffer(rq->reply.len, rq->reply.body ? rq->reply.body : "",
						       rq->reply.body ? MHD_RESPMEM_MUST_FREE :
									MHD_RESPMEM_PERSISTENT);
		if (!resp)
			return MHD_NO;
		rq->reply.body = NULL; /* MHD frees it with the response */
	}
	if (rq->reply.content_type)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, rq->reply.content_type);
	ret = MHD_queue_response(conn, rq->reply.status, resp);
	MHD_destroy_response(resp);
	return ret;
}

static int dispatch(struct sim *sim, struct MHD_Connection *conn, const char *url,
		    const char *method, struct sim_req *rq)
{
	int rc;

	if (rq->too_big)
		return sim_reply_text(&rq->reply, 413, "application/json",
				      "{\"ResultCode\":13,\"ResultDescription\":\"Request too large\"}");
	if (strncmp(url, "/_sim/", 6) == 0)
		rc = sim_control(sim, method, url, conn, rq->body.s, rq->body.len, &rq->reply);
	else
		rc = sim_api(sim, method, url, rq->body.s, rq->body.len, get_arg, conn, &rq->reply);
	if (rc == -ENOENT) {
		free(rq->reply.body);
		memset(&rq->reply, 0, sizeof(rq->reply));
		rc = sim_reply_text(&rq->reply, 404, "application/json", "{\"error\":\"not found\"}");
	}
	return rc;
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *conn, const char *url,
			       const char *method, const char *version, const char *upload_data,
			       size_t *upload_data_size, void **con_cls)
{
	struct sim *sim = cls;
	struct sim_req *rq = *con_cls;

	if (!rq) {
		rq = calloc(1, sizeof(*rq));
		if (!rq)
			return MHD_NO;
		*con_cls = rq;
		return MHD_YES;
	}
	if (rq->phase == PHASE_HELD)
		return send_reply(sim, conn, rq);
	if (*upload_data_size > 0) {
		size_t n = *upload_data_size;

		*upload_data_size = 0;
		return sim_buf_upload(&rq->body, &rq->too_big, upload_data, n, SIM_BODY_MAX) ? MHD_YES :
											      MHD_NO;
	}

	if (dispatch(sim, conn, url, method, rq) != 0) {
		free(rq->reply.body);
		memset(&rq->reply, 0, sizeof(rq->reply));
		if (sim_reply_text(&rq->reply, 500, "application/json",
				   "{\"ResultCode\":1,\"ResultDescription\":\"Internal error\"}") != 0)
			return MHD_NO;
	}
	if (rq->reply.latency_ms > 0 || rq->reply.drop) {
		rq->phase = PHASE_HELD;
		MHD_suspend_connection(conn);
		if (!sim_delay_add(sim->delay, sim_mono_ms() + rq->reply.latency_ms, conn))
			MHD_resume_connection(conn); /* shutting down: answer now */
		return MHD_YES;
	}
	return send_reply(sim, conn, rq);
}

static void completed(void *cls, struct MHD_Connection *conn, void **con_cls,
		      enum MHD_RequestTerminationCode toe)
{
	struct sim_req *rq = *con_cls;

	dropping = false;
	if (!rq)
		return;
	free(rq->body.s);
	free(rq->reply.body);
	free(rq);
	*con_cls = NULL;
}

static void __attribute__((format(printf, 2, 0))) mhd_log(void *cls, const char *fmt, va_list ap)
{
	/* MHD logs the MHD_NO of a deliberate drop right away, on this
	 * thread ("Application reported internal error"). */
	if (dropping) {
		dropping = false;
		return;
	}
	fputs("ringring-sim: mhd: ", stderr);
	vfprintf(stderr, fmt, ap);
}

struct MHD_Daemon *sim_server_start(struct sim *sim, const char *host, unsigned port,
				    unsigned threads, unsigned *bound_port)
{
	struct sockaddr_in sin;
	struct sockaddr_in6 sin6;
	struct sockaddr *sa;
	unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_ALLOW_SUSPEND_RESUME |
			 MHD_USE_ERROR_LOG;
	struct MHD_Daemon *d;
	const union MHD_DaemonInfo *info;

	memset(&sin, 0, sizeof(sin));
	memset(&sin6, 0, sizeof(sin6));
	if (strcmp(host, "localhost") == 0)
		host = "127.0.0.1";
	if (inet_pton(AF_INET, host, &sin.sin_addr) == 1) {
		sin.sin_family = AF_INET;
		sin.sin_port = htons((uint16_t)port);
		sa = (struct sockaddr *)&sin;
	} else if (inet_pton(AF_INET6, host, &sin6.sin6_addr) == 1) {
		sin6.sin6_family = AF_INET6;
		sin6.sin6_port = htons((uint16_t)port);
		sa = (struct sockaddr *)&sin6;
		flags |= MHD_USE_IPv6;
	} else {
		fprintf(stderr, "ringring-sim: '%s' is not an IP address\n", host);
		return NULL;
	}
	flags |= MHD_is_feature_supported(MHD_FEATURE_EPOLL) == MHD_YES ? MHD_USE_EPOLL :
									 MHD_USE_AUTO;
	d = MHD_start_daemon(flags, (uint16_t)port, NULL, NULL, handler, sim,
			     MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
			     MHD_OPTION_SOCK_ADDR, sa,
			     MHD_OPTION_THREAD_POOL_SIZE, threads,
			     MHD_OPTION_NOTIFY_COMPLETED, completed, sim,
			     MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)120,
			     MHD_OPTION_CONNECTION_LIMIT, (unsigned)8192,
			     MHD_OPTION_CONNECTION_MEMORY_LIMIT, SIM_CONN_MEMORY,
			     MHD_OPTION_LISTEN_BACKLOG_SIZE, (unsigned)1024,
			     MHD_OPTION_END);
	if (!d) {
		fprintf(stderr, "ringring-sim: cannot listen on %s port %u\n", host, port);
		return NULL;
	}
	info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
	*bound_port = info && info->port ? info->port : port;
	return d;
}

void sim_server_stop(struct sim *sim, struct MHD_Daemon *daemon)
{
	/* Resume every held connection first: MHD must not be stopped with
	 * suspended connections. Held requests answer at once (timeouts
	 * close). */
	sim_delay_stop(sim->delay);
	if (daemon)
		MHD_stop_daemon(daemon);
}
