/*
 * server.c - govapp-sim's HTTP side: libmicrohttpd with a small pool of
 * epoll threads, routing to the /v1 API and the /_sim control API, and
 * the timer that holds connections back for latency and timeout faults.
 *
 * A held connection is suspended (MHD_suspend_connection) and its answer
 * kept aside; the timer thread resumes it at its deadline, from a min-heap,
 * so that a slow answer never occupies a pool thread. This is what lets a
 * benchmark keep thousands of slow requests in flight on two threads.
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>

#include <microhttpd.h>
#include <openssl/crypto.h>

#include "sim.h"
#include "simbuf.h"

enum req_phase {
	RQ_NEW = 0,
	RQ_HELD,   /* suspended, waiting for the timer */
	RQ_ANSWER, /* resumed: queue the held answer */
	RQ_DROP,   /* resumed: close without answering */
};

/* Each connection's memory pool (MHD_OPTION_CONNECTION_MEMORY_LIMIT) holds
 * the request's head and the answer's headers; bodies stream through it.
 * MHD 0.9.75 zeroes the whole pool for every request on a kept-alive
 * connection, so 16 KiB rather than its default 32 KiB, as ringring-sim:
 * heads of about 15 KiB still get in, far more than smisd sends. */
#define SIM_CONN_MEMORY ((size_t)16384)

/* One HTTP request (MHD's per-request context). */
struct sim_req {
	struct sim_buf body; /* NUL-terminated; s is NULL while empty */
	bool too_large;
	enum req_phase phase;
	enum req_phase after; /* what RQ_HELD becomes at the deadline */
	int status;
	char *resp;
	int64_t due;          /* monotonic ms */
	struct MHD_Connection *conn;
};

struct sim_server {
	struct sim *s;
	struct MHD_Daemon *d;
	pthread_t timer;
	bool timer_started;
	pthread_mutex_t tlock;
	pthread_cond_t tcond;
	struct sim_req **heap; /* min-heap on due */
	size_t n_heap, cap_heap;
	bool stopping;
};

static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ------------------------------------------------------------------ */
/* Timer heap                                                          */
/* ------------------------------------------------------------------ */

static void heap_swap(struct sim_server *srv, size_t a, size_t b)
{
	struct sim_req *t = srv->heap[a];

	srv->heap[a] = srv->heap[b];
	srv->heap[b] = t;
}

static void heap_push(struct sim_server *srv, struct sim_req *r)
{
	size_t i = srv->n_heap++;

	srv->heap[i] = r;
	while (i > 0 && srv->heap[(i - 1) / 2]->due > srv->heap[i]->due) {
		heap_swap(srv, i, (i - 1) / 2);
		i = (i - 1) / 2;
	}
}

static struct sim_req *heap_pop(struct sim_server *srv)
{
	struct sim_req *top = srv->heap[0];
	size_t i = 0;

	srv->heap[0] = srv->heap[--srv->n_heap];
	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, m = i;

		if (l < srv->n_heap && srv->heap[l]->due < srv->heap[m]->due)
			m = l;
		if (r < srv->n_heap && srv->heap[r]->due < srv->heap[m]->due)
			m = r;
		if (m == i)
			break;
		heap_swap(srv, i, m);
		i = m;
	}
	return top;
}

static void release(struct sim_server *srv, struct sim_req *r)
{
	atomic_fetch_sub(&srv->s->stats.held, 1);
	r->phase = r->after;
	MHD_resume_connection(r->conn);
}

static void *timer_main(void *arg)
{
	struct sim_server *srv = arg;

	pthread_mutex_lock(&srv->tlock);
	while (!srv->stopping) {
		int64_t now = mono_ms();

		if (srv->n_heap == 0) {
			pthread_cond_wait(&srv->tcond, &srv->tlock);
		} else if (srv->heap[0]->due <= now) {
			release(srv, heap_pop(srv));
		} else {
			int64_t due = srv->heap[0]->due;
			struct timespec ts = { .tv_sec = due / 1000, .tv_nsec = (due % 1000) * 1000000 };

			pthread_cond_timedwait(&srv->tcond, &srv->tlock, &ts);
		}
	}
	/* MHD refuses to stop with suspended connections: let them all go. */
	while (srv->n_heap)
		release(srv, heap_pop(srv));
	pthread_mutex_unlock(&srv->tlock);
	return NULL;
}

/* ------------------------------------------------------------------ */
/* Answers                                                             */
/* ------------------------------------------------------------------ */

static enum MHD_Result answer_as(struct MHD_Connection *conn, int status, char *body, const char *type)
{
	struct MHD_Response *resp;
	enum MHD_Result ret;

	if (!body) {
		status = 500;
		body = sim_error_json("out_of_memory");
		if (!body)
			return MHD_NO;
	}
	resp = MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
	if (!resp) {
		free(body);
		return MHD_NO;
	}
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
	ret = MHD_queue_response(conn, (unsigned)status, resp);
	MHD_destroy_response(resp);
	return ret;
}

static enum MHD_Result answer(struct MHD_Connection *conn, int status, char *body)
{
	return answer_as(conn, status, body, "application/json");
}

/* What a misconfigured proxy in front of a backend answers. */
#define GARBAGE_BODY "<html><head><title>502 Bad Gateway</title></head><body>Bad Gateway</body></html>"

/* Keep the answer aside and suspend the connection for ms. */
static enum MHD_Result hold(struct sim_server *srv, struct MHD_Connection *conn, struct sim_req *r,
			    long ms, enum req_phase after, int status, char *resp)
{
	enum MHD_Result ret = MHD_YES;

	r->status = status;
	r->resp = resp;
	r->conn = conn;
	r->after = after;
	r->due = mono_ms() + ms;
	pthread_mutex_lock(&srv->tlock);
	if (srv->n_heap == srv->cap_heap) {
		size_t cap = srv->cap_heap ? srv->cap_heap * 2 : 256;
		struct sim_req **h = realloc(srv->heap, cap * sizeof(*h));

		if (h) {
			srv->heap = h;
			srv->cap_heap = cap;
		}
	}
	if (srv->stopping || srv->n_heap == srv->cap_heap) {
		/* Shutting down (or out of memory): answer at once. */
		pthread_mutex_unlock(&srv->tlock);
		r->resp = NULL;
		if (after == RQ_DROP) {
			free(resp);
			return MHD_NO;
		}
		return status < 0 ? answer_as(conn, -status, resp, "text/html") : answer(conn, status, resp);
	}
	r->phase = RQ_HELD;
	atomic_fetch_add(&srv->s->stats.held, 1);
	MHD_suspend_connection(conn);
	heap_push(srv, r);
	pthread_cond_signal(&srv->tcond);
	pthread_mutex_unlock(&srv->tlock);
	return ret;
}

/* ------------------------------------------------------------------ */
/* Routing                                                             */
/* ------------------------------------------------------------------ */

static bool is_loopback(struct MHD_Connection *conn)
{
	const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	const struct sockaddr *sa = ci ? ci->client_addr : NULL;

	if (!sa)
		return false;
	if (sa->sa_family == AF_INET)
		return (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >> 24) == 127;
	if (sa->sa_family == AF_INET6) {
		const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;

		return IN6_IS_ADDR_LOOPBACK(a) || (IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127);
	}
	return false;
}

/* Constant time: the token is the only secret between SMIS and GovApp. */
static bool authorized(struct sim *s, struct MHD_Connection *conn)
{
	const char *h = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
	size_t tl = strlen(s->token);

	if (!h || strncmp(h, "Bearer ", 7) != 0 || strlen(h + 7) != tl)
		return false;
	return CRYPTO_memcmp(h + 7, s->token, tl) == 0;
}

static enum sim_endpoint api_endpoint(const char *method, const char *url, bool *known_path)
{
	bool post = strcmp(method, "POST") == 0, get = strcmp(method, "GET") == 0;

	*known_path = true;
	if (strcmp(url, "/v1/citizens/lookup") == 0)
		return post ? SIM_EP_LOOKUP : SIM_EP_NONE;
	if (strcmp(url, "/v1/notifications") == 0)
		return post ? SIM_EP_SEND : SIM_EP_NONE;
	if (strncmp(url, "/v1/notifications/", 18) == 0 && url[18] && !strchr(url + 18, '/'))
		return get ? SIM_EP_STATUS : SIM_EP_NONE;
	*known_path = false;
	return SIM_EP_NONE;
}

static enum MHD_Result serve_api(struct sim_server *srv, struct MHD_Connection *conn, const char *url,
				 const char *method, struct sim_req *r)
{
	struct sim *s = srv->s;
	struct sim_fault f = { 0 };
	bool known, faulted;
	enum sim_endpoint ep = api_endpoint(method, url, &known);
	int status = 500;
	char *resp = NULL;

	atomic_fetch_add(&s->stats.requests, 1);
	faulted = ep != SIM_EP_NONE && sim_fault_take(s, ep, &f);
	if (faulted && f.timeout) {
		sim_record(s, method, url, 0, r->body.s, r->body.len);
		return hold(srv, conn, r, f.timeout_ms, RQ_DROP, 0, NULL);
	}
	if (faulted && f.garbage) {
		status = f.http_status ? (int)f.http_status : 200;
		sim_record(s, method, url, status, r->body.s, r->body.len);
		if (f.latency_ms > 0)
			return hold(srv, conn, r, f.latency_ms, RQ_ANSWER, -status, strdup(GARBAGE_BODY));
		return answer_as(conn, status, strdup(GARBAGE_BODY), "text/html");
	} else if (faulted && f.http_status) {
		status = (int)f.http_status;
		resp = sim_error_json("injected_fault");
	} else if (!known) {
		status = 404;
		resp = sim_error_json("not_found");
	} else if (ep == SIM_EP_NONE) {
		status = 405;
		resp = sim_error_json("method_not_allowed");
	} else if (!authorized(s, conn)) {
		atomic_fetch_add(&s->stats.unauthorized, 1);
		status = 401;
		resp = sim_error_json("unauthorized");
	} else if (r->too_large) {
		status = 413;
		resp = sim_error_json("too_large");
	} else if (ep == SIM_EP_LOOKUP) {
		sim_api_lookup(s, r->body.s, r->body.len, &status, &resp);
	} else if (ep == SIM_EP_SEND) {
		sim_api_send(s, r->body.s, r->body.len, &status, &resp);
	} else {
		sim_api_status(s, url + 18, &status, &resp);
	}
	if (status >= 400 && status <= 499)
		atomic_fetch_add(&s->stats.rejected, 1);
	sim_record(s, method, url, status, r->body.s, r->body.len);
	if (faulted && f.latency_ms > 0)
		return hold(srv, conn, r, f.latency_ms, RQ_ANSWER, status, resp);
	return answer(conn, status, resp);
}

/* A non-negative integer query argument, 0 when absent or malformed. */
static uint64_t query_size(struct MHD_Connection *conn, const char *name)
{
	const char *v = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, name);
	char *end;
	unsigned long long x;

	if (!v || !*v || *v == '-')
		return 0;
	errno = 0;
	x = strtoull(v, &end, 10);
	return errno || *end ? 0 : (uint64_t)x;
}

static enum MHD_Result serve_control(struct sim_server *srv, struct MHD_Connection *conn,
				     const char *url, const char *method, struct sim_req *r)
{
	struct sim *s = srv->s;
	const char *what = url + 6; /* after "/_sim/" */
	bool post = strcmp(method, "POST") == 0, get = strcmp(method, "GET") == 0;
	int status = 404;
	char *resp = NULL;

	if (!is_loopback(conn)) {
		status = 403;
		resp = sim_error_json("loopback_only");
	} else if (r->too_large) {
		status = 413;
		resp = sim_error_json("too_large");
	} else if (post && strcmp(what, "reset") == 0) {
		sim_ctl_reset(s, r->body.s, r->body.len, &status, &resp);
	} else if (post && strcmp(what, "citizens") == 0) {
		sim_ctl_citizen(s, r->body.s, r->body.len, &status, &resp);
	} else if (post && strcmp(what, "faults") == 0) {
		sim_ctl_faults_set(s, r->body.s, r->body.len, &status, &resp);
	} else if (get && strcmp(what, "faults") == 0) {
		sim_ctl_faults_get(s, &status, &resp);
	} else if (strcmp(method, "DELETE") == 0 && strcmp(what, "faults") == 0) {
		sim_ctl_faults_set(s, NULL, 0, &status, &resp);
	} else if (get && strcmp(what, "requests") == 0) {
		sim_ctl_requests(s, query_size(conn, "limit"), query_size(conn, "since"), &status, &resp);
	} else if (get && strcmp(what, "inbox") == 0) {
		char phone[32];
		const char *p = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "phone");

		/* An unescaped '+' in a query string may arrive as ' '. */
		snprintf(phone, sizeof(phone), "%s", p ? p : "");
		if (phone[0] == ' ')
			phone[0] = '+';
		sim_ctl_inbox(s, phone, &status, &resp);
	} else if (post && strcmp(what, "mark") == 0) {
		sim_ctl_mark(s, r->body.s, r->body.len, &status, &resp);
	} else if (get && strcmp(what, "callbacks") == 0) {
		sim_ctl_callbacks(s, query_size(conn, "limit"), query_size(conn, "since"), &status, &resp);
	} else if (get && strcmp(what, "stats") == 0) {
		sim_ctl_stats(s, &status, &resp);
	} else if (get && strcmp(what, "health") == 0) {
		status = 200;
		resp = strdup("{\"ok\":true}");
	} else {
		resp = sim_error_json("not_found");
	}
	return answer(conn, status, resp);
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *conn, const char *url,
			       const char *method, const char *version, const char *upload_data,
			       size_t *upload_data_size, void **con_cls)
{
	struct sim_server *srv = cls;
	struct sim_req *r = *con_cls;
	char *resp;

	if (!r) {
		r = calloc(1, sizeof(*r));
		if (!r)
			return MHD_NO;
		*con_cls = r;
		return MHD_YES;
	}
	if (*upload_data_size) {
		size_t n = *upload_data_size;

		*upload_data_size = 0;
		return sim_buf_upload(&r->body, &r->too_large, upload_data, n, SIM_BODY_MAX) ? MHD_YES :
											      MHD_NO;
	}
	switch (r->phase) {
	case RQ_ANSWER:
		resp = r->resp;
		r->resp = NULL;
		/* A negative status marks a held garbage (HTML) answer. */
		if (r->status < 0)
			return answer_as(conn, -r->status, resp, "text/html");
		return answer(conn, r->status, resp);
	case RQ_DROP:
		return MHD_NO;
	case RQ_HELD:
		return MHD_YES;
	case RQ_NEW:
		break;
	}
	if (strncmp(url, "/_sim/", 6) == 0)
		return serve_control(srv, conn, url, method, r);
	return serve_api(srv, conn, url, method, r);
}

static void completed(void *cls, struct MHD_Connection *conn, void **con_cls,
		      enum MHD_RequestTerminationCode toe)
{
	struct sim_req *r = *con_cls;

	if (!r)
		return;
	free(r->body.s);
	free(r->resp);
	free(r);
	*con_cls = NULL;
}

/* ------------------------------------------------------------------ */
/* Start and stop                                                      */
/* ------------------------------------------------------------------ */

void sim_server_stop(struct sim_server *srv)
{
	if (!srv)
		return;
	if (srv->timer_started) {
		pthread_mutex_lock(&srv->tlock);
		srv->stopping = true;
		pthread_cond_signal(&srv->tcond);
		pthread_mutex_unlock(&srv->tlock);
		pthread_join(srv->timer, NULL);
	}
	if (srv->d)
		MHD_stop_daemon(srv->d);
	pthread_cond_destroy(&srv->tcond);
	pthread_mutex_destroy(&srv->tlock);
	free(srv->heap);
	free(srv);
}

int sim_server_start(struct sim *s, const char *host, unsigned port, unsigned threads,
		     struct sim_server **out, unsigned *bound_port)
{
	struct sim_server *srv = calloc(1, sizeof(*srv));
	struct sockaddr_in sin = { .sin_family = AF_INET };
	struct sockaddr_in6 sin6 = { .sin6_family = AF_INET6 };
	struct sockaddr *sa;
	unsigned flags = MHD_USE_EPOLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_TURBO;
	unsigned limit = 16384;
	pthread_condattr_t ca;
	struct rlimit rl;
	const union MHD_DaemonInfo *info;
	int rc = -EINVAL;

	*out = NULL;
	if (!srv)
		return -ENOMEM;
	srv->s = s;
	pthread_mutex_init(&srv->tlock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&srv->tcond, &ca);
	pthread_condattr_destroy(&ca);

	if (inet_pton(AF_INET, host, &sin.sin_addr) == 1) {
		sin.sin_port = htons((uint16_t)port);
		sa = (struct sockaddr *)&sin;
	} else if (inet_pton(AF_INET6, host, &sin6.sin6_addr) == 1) {
		sin6.sin6_port = htons((uint16_t)port);
		sa = (struct sockaddr *)&sin6;
		flags |= MHD_USE_IPv6;
	} else {
		fprintf(stderr, "govapp-sim: %s is not a numeric IPv4 or IPv6 address\n", host);
		goto out;
	}
	/* Connections beyond the descriptor limit would fail in accept(). */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < limit + 64)
		limit = rl.rlim_cur > 128 ? (unsigned)rl.rlim_cur - 64 : 64;

	srv->d = MHD_start_daemon(flags, (uint16_t)port, NULL, NULL, handler, srv,
				  MHD_OPTION_SOCK_ADDR, sa,
				  MHD_OPTION_THREAD_POOL_SIZE, threads ? threads : 2u,
				  MHD_OPTION_NOTIFY_COMPLETED, completed, srv,
				  MHD_OPTION_CONNECTION_LIMIT, limit,
				  MHD_OPTION_CONNECTION_TIMEOUT, 120u,
				  MHD_OPTION_CONNECTION_MEMORY_LIMIT, SIM_CONN_MEMORY,
				  MHD_OPTION_LISTEN_BACKLOG_SIZE, 1024u,
				  MHD_OPTION_LISTENING_ADDRESS_REUSE, 1u,
				  MHD_OPTION_END);
	if (!srv->d) {
		fprintf(stderr, "govapp-sim: cannot listen on %s:%u\n", host, port);
		rc = -EADDRINUSE;
		goto out;
	}
	info = MHD_get_daemon_info(srv->d, MHD_DAEMON_INFO_BIND_PORT);
	*bound_port = info ? info->port : port;
	if (pthread_create(&srv->timer, NULL, timer_main, srv) != 0) {
		rc = -EAGAIN;
		goto out;
	}
	srv->timer_started = true;
	*out = srv;
	srv = NULL;
	rc = 0;
out:
	sim_server_stop(srv);
	return rc;
}
