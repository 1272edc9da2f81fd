/*
 * dispatcher.c - strategy chains on a curl multi handle (see
 * docs/architecture.md). Plugins build requests and read responses; this
 * file owns sockets, TLS, timeouts and connection reuse.
 */
#include "config.h"

#include <errno.h>
#include <stdatomic.h>
#include <pthread.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>

#include "core_api.h"
#include "dispatcher.h"
#include "prepare_pool.h"
#include "log.h"
#include "metrics.h"
#include "store.h"

#define MAX_RESPONSE_BYTES (1024 * 1024)

static CURLM *multi;
static pthread_t thread;
static pthread_mutex_t queue_lock = PTHREAD_MUTEX_INITIALIZER;
static struct smisd_job_queue queue;    /* new jobs and single operations */
static struct smisd_job_queue prepared; /* back from the prepare pool (same lock) */
static atomic_int stopping; /* set by smisd_dispatcher_stop, read by the loop */
static smisd_dispatch_finished_fn on_finished;
static struct smisd_job *active; /* jobs with a transfer in the multi handle */

static void active_add(struct smisd_job *job)
{
	job->active_prev = NULL;
	job->active_next = active;
	if (active)
		active->active_prev = job;
	active = job;
}

static void active_remove(struct smisd_job *job)
{
	if (job->active_prev)
		job->active_prev->active_next = job->active_next;
	else if (active == job)
		active = job->active_next;
	if (job->active_next)
		job->active_next->active_prev = job->active_prev;
	job->active_prev = job->active_next = NULL;
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *arg)
{
	struct smisd_job *job = arg;
	size_t n = size * nmemb;

	if (job->resp_len + n + 1 > job->resp_cap) {
		size_t cap = job->resp_cap ? job->resp_cap * 2 : 1024;
		char *grown;
		while (cap < job->resp_len + n + 1)
			cap *= 2;
		if (cap > MAX_RESPONSE_BYTES) {
			job->resp_overflow = 1;
			return 0; /* aborts the transfer */
		}
		grown = realloc(job->resp_buf, cap);
		if (!grown)
			return 0;
		job->resp_buf = grown;
		job->resp_cap = cap;
	}
	memcpy(job->resp_buf + job->resp_len, data, n);
	job->resp_len += n;
	job->resp_buf[job->resp_len] = '\0';
	return n;
}

static void record_done(struct smisd_job *job, const struct smis_outcome *out)
{
	struct smisd_attempt *a = &job->attempts[job->n_attempts - 1];
	char labels[200];
	a->out = *out;
	a->elapsed_ms = (long)(smisd_monotonic_ms() - job->op_started_mono);
	snprintf(labels, sizeof(labels), "channel=\"%s\",operation=\"%s\",outcome=\"%s\"", a->ch->name,
		 smisd_op_name(a->op), smisd_outcome_name(out->kind, a->op));
	smisd_metric_add("smis_upstream_requests_total", labels, 1);
	snprintf(labels, sizeof(labels), "channel=\"%s\",operation=\"%s\"", a->ch->name, smisd_op_name(a->op));
	smisd_metric_observe("smis_upstream_duration_seconds", labels, a->elapsed_ms / 1000.0);
	if (a->op == SMIS_OP_LOOKUP && out->kind == SMIS_OUTCOME_OK && out->language[0] &&
	    !job->citizen_language[0]) {
		snprintf(job->citizen_language, sizeof(job->citizen_language), "%s", out->language);
		job->msg.citizen_language = job->citizen_language;
	}
}

static void fail_current(struct smisd_job *job, enum smis_outcome_kind kind, const char *error,
			 const char *detail)
{
	struct smis_outcome out;
	memset(&out, 0, sizeof(out));
	out.kind = kind;
	SMIS_OUTCOME_SET(out.error, error);
	SMIS_OUTCOME_SET(out.detail, detail);
	record_done(job, &out);
}

/* Hand a plugin-built request to curl. Takes ownership of req. */
static unsigned long host_limit_gen;

/* Easy handles are kept for the next message: creating one costs
 * allocations and setup that a busy dispatcher should not pay each time. */
#define EASY_POOL_MAX 4096
static CURL *easy_pool[EASY_POOL_MAX];
static size_t easy_pooled;

static CURL *easy_get(void)
{
	return easy_pooled ? easy_pool[--easy_pooled] : curl_easy_init();
}

static void easy_put(CURL *e)
{
	if (!e)
		return;
	if (easy_pooled < EASY_POOL_MAX) {
		curl_easy_reset(e);
		easy_pool[easy_pooled++] = e;
	} else {
		curl_easy_cleanup(e);
	}
}

static int perform(struct smisd_job *job, struct smis_http_request *req)
{
	const struct smisd_channel *ch = job->attempts[job->n_attempts - 1].ch;
	long remaining = (long)(job->deadline_mono - smisd_monotonic_ms());
	long timeout = ch->http.timeout_ms < remaining ? ch->http.timeout_ms : remaining;
	int rc = -1;

	if (timeout <= 0)
		goto out;
	/* curl caps connections per host for the whole multi handle: use the
	 * largest cap any channel of the current generation asks for. */
	if (host_limit_gen != job->gen->id) {
		long cap = 0;
		host_limit_gen = job->gen->id;
		for (size_t i = 0; i < job->gen->n_channels; i++)
			if (job->gen->channels[i].http.max_connections > cap)
				cap = job->gen->channels[i].http.max_connections;
		curl_multi_setopt(multi, CURLMOPT_MAX_HOST_CONNECTIONS, cap);
	}
	if (!job->easy)
		job->easy = easy_get();
	else
		curl_easy_reset(job->easy);
	if (!job->easy)
		goto out;
	curl_slist_free_all(job->easy_headers);
	job->easy_headers = req->headers;
	req->headers = NULL;
	free(job->easy_body);
	job->easy_body = req->body;
	req->body = NULL;
	job->resp_len = 0;
	job->resp_overflow = 0;
	if (job->resp_buf)
		job->resp_buf[0] = '\0';

	CURL *e = job->easy;
	curl_easy_setopt(e, CURLOPT_URL, req->url);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, timeout);
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS,
			 ch->http.connect_timeout_ms < timeout ? ch->http.connect_timeout_ms : timeout);
	curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, ch->http.verify_tls ? 1L : 0L);
	curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, ch->http.verify_tls ? 2L : 0L);
	if (ch->http.ca_file)
		curl_easy_setopt(e, CURLOPT_CAINFO, ch->http.ca_file);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, job->easy_headers);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, job);
	curl_easy_setopt(e, CURLOPT_PRIVATE, job);
	curl_easy_setopt(e, CURLOPT_USERAGENT, "smisd/" PACKAGE_VERSION);
	curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
	/* Upstream answers are small; the default 16 KiB buffer per handle
	 * would cost 16 MiB per thousand messages in flight. */
	curl_easy_setopt(e, CURLOPT_BUFFERSIZE, 4096L);
	if (strcmp(req->method, "GET") == 0) {
		curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
	} else {
		curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, (long)req->body_len);
		/* Not COPYPOSTFIELDS: the job keeps the body until the next
		 * request or its end, so curl need not copy it. */
		curl_easy_setopt(e, CURLOPT_POSTFIELDS, job->easy_body ? job->easy_body : "");
		if (strcmp(req->method, "POST") != 0)
			curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, req->method);
	}
	rc = curl_multi_add_handle(multi, e) == CURLM_OK ? 0 : -1;
	if (rc == 0)
		active_add(job);
out:
	smisd_core_api.http_request_free(req);
	return rc;
}

static void finish(struct smisd_job *job)
{
	easy_put(job->easy);
	job->easy = NULL;
	if (job->poll_channel && job->single_op == SMIS_OP_LOOKUP) {
		job->done(job); /* the keys endpoint answers from attempts[0] */
		return;
	}
	if (job->poll_channel) {
		const struct smisd_attempt *a = job->n_attempts ? &job->attempts[0] : NULL;
		if (a && a->out.kind == SMIS_OUTCOME_OK)
			for (size_t i = 0; i < a->out.n_reports && i < 8; i++)
				smisd_store_submit_report(job->poll_channel->name,
							  (job->poll_channel->caps & SMIS_CAP_REPORTS_BY_ID) != 0,
							  &a->out.reports[i]);
		smisd_job_free(job);
		return;
	}
	/* The answer is built (smisd_job_conclude) by the store thread: the
	 * dispatcher is the one thread every message goes through. */
	on_finished(job);
}

/* Handle what start()/resume() returned. Returns 1 when the job now waits
 * on an upstream request, 0 when the operation is over. */
static int after_step(struct smisd_job *job, int rc, struct smis_http_request *req,
		      struct smis_outcome *out)
{
	if (rc == SMIS_STEP_REQUEST && req) {
		if (perform(job, req) == 0)
			return 1;
		if (job->deadline_mono <= smisd_monotonic_ms())
			fail_current(job, SMIS_OUTCOME_TEMPFAIL, "job_timeout",
				     "the message's deadline passed before this step could run");
		else
			fail_current(job, SMIS_OUTCOME_TEMPFAIL, "internal_error", "could not start the upstream request");
		return 0;
	}
	if (req)
		smisd_core_api.http_request_free(req);
	if (rc == SMIS_STEP_DONE && out->kind != SMIS_OUTCOME_NONE) {
		record_done(job, out);
	} else {
		smisd_log(SMIS_LOG_ERROR, job->attempts[job->n_attempts - 1].ch->self.component, job->id,
			  "plugin returned %d without an outcome", rc);
		fail_current(job, SMIS_OUTCOME_TEMPFAIL, "plugin_error", "the channel plugin failed");
	}
	return 0;
}

static bool has_prepare_send(const struct smisd_channel *ch)
{
	return ch->ops->size > offsetof(struct smis_channel_ops, prepare_send) && ch->ops->prepare_send;
}

/* Call start() for the job's last attempt (recorded by start_op): 1 when
 * the job now waits on an upstream request, 0 when the operation is over. */
static int start_attempt(struct smisd_job *job)
{
	const struct smisd_attempt *a = &job->attempts[job->n_attempts - 1];
	const struct smisd_channel *ch = a->ch;
	struct smis_http_request *req = NULL;
	struct smis_outcome out;
	int rc;

	memset(&out, 0, sizeof(out));
	rc = ch->ops->start(ch->state, a->op, &job->msg, &job->calls[ch->index], &req, &out);
	return after_step(job, rc, req, &out);
}

/* Begin operation `op` on `ch` as a new attempt: 1 when it now waits on an
 * upstream request, 0 when it is already over (done, refused or failed),
 * -1 when no attempt could be recorded. */
static int start_op(struct smisd_job *job, const struct smisd_channel *ch, enum smis_op op)
{
	static const unsigned need[] = { [SMIS_OP_LOOKUP] = SMIS_CAP_LOOKUP,
					 [SMIS_OP_SEND] = SMIS_CAP_SEND,
					 [SMIS_OP_STATUS] = SMIS_CAP_STATUS };
	struct smisd_attempt *a = smisd_job_add_attempt(job);

	if (!a)
		return -1;
	*a = (struct smisd_attempt){ .ch = ch, .op = op, .started_ms = smisd_now_ms() };
	job->op_started_mono = smisd_monotonic_ms();
	/* An op outside the vocabulary (a strategy's mistake) is unsupported. */
	if (op < SMIS_OP_LOOKUP || op > SMIS_OP_STATUS || !(ch->caps & need[op])) {
		fail_current(job, SMIS_OUTCOME_PERMFAIL, "operation_unsupported",
			     "the channel does not support this operation");
		return 0;
	}
	if (job->deadline_mono <= job->op_started_mono) {
		fail_current(job, SMIS_OUTCOME_TEMPFAIL, "job_timeout",
			     "the message's deadline passed before this step could run");
		return 0;
	}
	if (op == SMIS_OP_SEND && has_prepare_send(ch)) {
		/* The job waits on a worker instead of on curl; it comes back
		 * through prepared_done() to start_attempt(). */
		if (smisd_prepare_pool_submit(job))
			return 1;
		ch->ops->prepare_send(ch->state, &job->msg, &job->calls[ch->index]);
	}
	return start_attempt(job);
}

/* Run the strategy chain until the job waits on upstream or is done.
 * Returns 1 when waiting, 0 when finished (caller concludes). */
static int advance(struct smisd_job *job)
{
	for (;;) {
		struct smis_attempt_view views[SMISD_MAX_ATTEMPTS];
		struct smis_job_view view;
		struct smis_action act;
		const struct smisd_step *step;
		const struct smisd_channel *ch;
		int v;

		if (job->poll_channel) {
			/* A single operation (a status poll, a device-keys
			 * lookup) runs no strategy. */
			if (job->n_attempts)
				return 0;
			return start_op(job, job->poll_channel, job->single_op) == 1;
		}
		if (job->step >= job->strategy->n_steps)
			return 0;
		step = &job->strategy->steps[job->step];
		for (size_t i = 0; i < job->n_attempts; i++)
			views[i] = (struct smis_attempt_view){
				.channel = job->attempts[i].ch->name,
				.channel_caps = job->attempts[i].ch->caps,
				.op = job->attempts[i].op,
				.outcome = &job->attempts[i].out,
			};
		view = (struct smis_job_view){
			.size = sizeof(view),
			.msg = &job->msg,
			.attempts = views,
			.n_attempts = job->n_attempts,
			.step_first_attempt = job->step_first_attempt,
		};
		memset(&act, 0, sizeof(act));
		v = step->ops->decide(step->state, &view, &act);
		if (v == SMIS_VERDICT_NEXT) {
			job->step++;
			job->step_first_attempt = job->n_attempts;
			continue;
		}
		if (v != SMIS_VERDICT_ACT) {
			if (v < 0 || v != SMIS_VERDICT_STOP) {
				smisd_log(SMIS_LOG_ERROR, step->self.component, job->id,
					  "strategy step returned %d", v);
				snprintf(job->error, sizeof(job->error), "strategy_error");
			}
			return 0;
		}
		if (job->n_attempts >= SMISD_MAX_ATTEMPTS) {
			smisd_log(SMIS_LOG_WARN, step->self.component, job->id,
				  "attempt limit (%d) reached, ending the chain", SMISD_MAX_ATTEMPTS);
			return 0;
		}
		ch = act.channel ? smisd_generation_channel(job->gen, act.channel) : NULL;
		if (!ch) {
			smisd_log(SMIS_LOG_ERROR, step->self.component, job->id,
				  "strategy asked for unknown channel");
			snprintf(job->error, sizeof(job->error), "strategy_error");
			return 0;
		}
		v = start_op(job, ch, act.op);
		if (v < 0) {
			snprintf(job->error, sizeof(job->error), "internal_error");
			return 0;
		}
		if (v == 1)
			return 1;
	}
}

int smisd_dispatcher_advance_for_test(struct smisd_job *job)
{
	return advance(job);
}

static void on_response(struct smisd_job *job, CURLcode code)
{
	struct smisd_attempt *a = &job->attempts[job->n_attempts - 1];
	const struct smisd_channel *ch = a->ch;
	struct smis_http_response resp;
	struct smis_http_request *req = NULL;
	struct smis_outcome out;
	char *ctype = NULL;
	long status = 0;
	int rc;

	curl_multi_remove_handle(multi, job->easy);
	active_remove(job);
	memset(&resp, 0, sizeof(resp));
	resp.size = sizeof(resp);
	resp.body = job->resp_buf ? job->resp_buf : "";
	resp.body_len = job->resp_len;
	resp.elapsed_ms = (long)(smisd_monotonic_ms() - job->op_started_mono);
	if (code == CURLE_OK) {
		curl_easy_getinfo(job->easy, CURLINFO_RESPONSE_CODE, &status);
		curl_easy_getinfo(job->easy, CURLINFO_CONTENT_TYPE, &ctype);
		resp.transport = SMIS_TRANSPORT_OK;
		resp.status = status;
		resp.content_type = ctype;
	} else {
		resp.error = curl_easy_strerror(code);
		if (code == CURLE_OPERATION_TIMEDOUT)
			resp.transport = SMIS_TRANSPORT_TIMEOUT;
		else if (code == CURLE_COULDNT_CONNECT || code == CURLE_COULDNT_RESOLVE_HOST ||
			 code == CURLE_SSL_CONNECT_ERROR || code == CURLE_PEER_FAILED_VERIFICATION)
			resp.transport = SMIS_TRANSPORT_CONNECT;
		else
			resp.transport = SMIS_TRANSPORT_ERROR;
		if (job->resp_overflow)
			resp.error = "response too large";
		smisd_log(SMIS_LOG_WARN, ch->self.component, job->id, "upstream %s failed: %s",
			  smisd_op_name(a->op), resp.error);
	}
	memset(&out, 0, sizeof(out));
	rc = ch->ops->resume(ch->state, a->op, &job->msg, &job->calls[ch->index], &resp, &req, &out);
	if (after_step(job, rc, req, &out))
		return;
	if (!advance(job))
		finish(job);
}

/*
 * The event loop: curl's socket interface on our own epoll set, so each
 * wake-up costs what is ready, not what is in flight (curl_multi_perform
 * walks every transfer: a thousand waiting messages would be walked on
 * every single answer).
 */
static int epfd = -1;
static int wakefd = -1;
static int64_t timer_deadline = -1; /* monotonic ms of curl's timer, -1 none */

/*
 * A socket curl stops watching (a kept-alive connection back in its cache)
 * stays in the epoll set, marked idle: the next request on it then costs
 * one EPOLL_CTL_MOD instead of a DEL and an ADD. An idle socket that turns
 * readable (the server closed it) is removed then. A socket curl closes
 * leaves the set by itself; its number is cleared when curl reuses it.
 */
static unsigned char *idle;
static size_t idle_cap;

static void set_idle(curl_socket_t s, unsigned char v)
{
	if ((size_t)s >= idle_cap) {
		size_t cap = idle_cap ? idle_cap : 1024;
		unsigned char *n;
		while (cap <= (size_t)s)
			cap *= 2;
		n = realloc(idle, cap);
		if (!n) {
			/* no room to remember: remove it for real */
			if (v)
				epoll_ctl(epfd, EPOLL_CTL_DEL, s, NULL);
			return;
		}
		memset(n + idle_cap, 0, cap - idle_cap);
		idle = n;
		idle_cap = cap;
	}
	idle[s] = v;
}

static int on_socket(CURL *e, curl_socket_t s, int what, void *userp, void *socketp)
{
	struct epoll_event ev;
	(void)e;
	(void)userp;
	(void)socketp;
	if (s < 0)
		return 0;
	if (what == CURL_POLL_REMOVE) {
		set_idle(s, 1);
		return 0;
	}
	memset(&ev, 0, sizeof(ev));
	ev.data.fd = s;
	ev.events = (what & CURL_POLL_IN ? EPOLLIN : 0) | (what & CURL_POLL_OUT ? EPOLLOUT : 0);
	if ((size_t)s < idle_cap)
		idle[s] = 0;
	if (epoll_ctl(epfd, EPOLL_CTL_MOD, s, &ev) != 0 && errno == ENOENT)
		epoll_ctl(epfd, EPOLL_CTL_ADD, s, &ev);
	return 0;
}

static int on_timer(CURLM *m, long timeout_ms, void *userp)
{
	(void)m;
	(void)userp;
	timer_deadline = timeout_ms < 0 ? -1 : smisd_monotonic_ms() + timeout_ms;
	return 0;
}

static void drain_done(void)
{
	CURLMsg *m;
	int left;
	while ((m = curl_multi_info_read(multi, &left))) {
		struct smisd_job *job = NULL;
		if (m->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&job);
		on_response(job, m->data.result);
	}
}

static void *dispatcher_main(void *arg)
{
	struct epoll_event evs[256];
	(void)arg;
	while (!stopping) {
		struct smisd_job *batch, *ready;
		int running, n, wait_ms;
		int64_t now;
		uint64_t junk;

		pthread_mutex_lock(&queue_lock);
		batch = smisd_job_queue_take(&queue);
		ready = smisd_job_queue_take(&prepared);
		pthread_mutex_unlock(&queue_lock);
		while (ready) {
			struct smisd_job *job = ready;
			ready = ready->next;
			job->next = NULL;
			if (!start_attempt(job) && !advance(job))
				finish(job);
		}
		while (batch) {
			struct smisd_job *job = batch;
			batch = batch->next;
			job->next = NULL;
			if (!advance(job))
				finish(job);
		}
		/* curl's timer: new transfers start on it (set to 0 when added),
		 * and timeouts are found by it. It is due whatever else happens. */
		now = smisd_monotonic_ms();
		if (timer_deadline >= 0 && now >= timer_deadline) {
			timer_deadline = -1;
			curl_multi_socket_action(multi, CURL_SOCKET_TIMEOUT, 0, &running);
			drain_done();
			continue;
		}
		wait_ms = timer_deadline < 0 ? 1000 : (int)(timer_deadline - now);
		if (wait_ms > 1000)
			wait_ms = 1000;
		n = epoll_wait(epfd, evs, 256, wait_ms);
		for (int i = 0; i < n; i++) {
			int mask = 0;
			if (evs[i].data.fd == wakefd) {
				if (read(wakefd, &junk, sizeof(junk)) < 0) {
					/* nothing to drain: another wake-up raced us */
				}
				continue;
			}
			if ((size_t)evs[i].data.fd < idle_cap && idle[evs[i].data.fd]) {
				epoll_ctl(epfd, EPOLL_CTL_DEL, evs[i].data.fd, NULL);
				idle[evs[i].data.fd] = 0;
				continue;
			}
			if (evs[i].events & EPOLLIN)
				mask |= CURL_CSELECT_IN;
			if (evs[i].events & EPOLLOUT)
				mask |= CURL_CSELECT_OUT;
			if (evs[i].events & (EPOLLERR | EPOLLHUP))
				mask |= CURL_CSELECT_ERR;
			curl_multi_socket_action(multi, evs[i].data.fd, mask, &running);
		}
		drain_done();
	}
	return NULL;
}

static void wake(void)
{
	uint64_t one = 1;
	if (write(wakefd, &one, sizeof(one)) < 0) {
		/* the counter is saturated: the loop is awake anyway */
	}
}

/* Hand a job to the loop. Only a push that finds both queues empty wakes
 * it: the loop takes both queues whole, so until it does, that one
 * wake-up covers every later push. Under load this saves an eventfd write
 * and read per message (a wake-up that finds the queues already taken is
 * harmless: the loop finds nothing and waits again). */
static void enqueue(struct smisd_job_queue *q, struct smisd_job *job)
{
	int was_idle;
	pthread_mutex_lock(&queue_lock);
	was_idle = !queue.head && !prepared.head;
	smisd_job_queue_push(q, job);
	pthread_mutex_unlock(&queue_lock);
	if (was_idle)
		wake();
}

/* A worker of the prepare pool hands a job back. */
static void prepared_done(struct smisd_job *job)
{
	enqueue(&prepared, job);
}

int smisd_dispatcher_start(smisd_dispatch_finished_fn finished, int prepare_threads)
{
	on_finished = finished;
	multi = curl_multi_init();
	if (!multi)
		return -1;
	/* Keep enough idle connections for a burst of 1000+ calls in flight. */
	curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, 4096L);
	curl_multi_setopt(multi, CURLMOPT_SOCKETFUNCTION, on_socket);
	curl_multi_setopt(multi, CURLMOPT_TIMERFUNCTION, on_timer);
	epfd = epoll_create1(EPOLL_CLOEXEC);
	wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (epfd < 0 || wakefd < 0)
		goto fail;
	{
		struct epoll_event ev = { .events = EPOLLIN, .data.fd = wakefd };
		if (epoll_ctl(epfd, EPOLL_CTL_ADD, wakefd, &ev) != 0)
			goto fail;
	}
	stopping = 0;
	if (smisd_prepare_pool_start(prepare_threads, prepared_done) != 0)
		goto fail;
	if (pthread_create(&thread, NULL, dispatcher_main, NULL) != 0) {
		smisd_prepare_pool_stop();
		goto fail;
	}
	/* Named for top -H, ps -L and /proc/PID/task/ (15 characters at most). */
	pthread_setname_np(thread, "smisd-dispatch");
	return 0;
fail:
	if (epfd >= 0)
		close(epfd);
	if (wakefd >= 0)
		close(wakefd);
	epfd = wakefd = -1;
	curl_multi_cleanup(multi);
	multi = NULL;
	return -1;
}

void smisd_dispatcher_submit(struct smisd_job *job)
{
	if (!multi || stopping) {
		/* Only status polls can arrive after the stop: drop them. */
		if (job->poll_channel && job->single_op == SMIS_OP_STATUS)
			smisd_job_free(job);
		return;
	}
	enqueue(&queue, job);
}

void smisd_dispatcher_stop(void)
{
	if (!multi)
		return;
	/* Before the HTTP drain ended, every SEND came back from the pool. */
	smisd_prepare_pool_stop();
	stopping = 1;
	wake();
	pthread_join(thread, NULL);
	/* After the HTTP drain only status polls can be left: drop them. */
	while (active) {
		struct smisd_job *job = active;
		active_remove(job);
		curl_multi_remove_handle(multi, job->easy);
		if (job->poll_channel && job->single_op == SMIS_OP_STATUS)
			smisd_job_free(job);
	}
	pthread_mutex_lock(&queue_lock);
	for (struct smisd_job *job; (job = smisd_job_queue_pop(&queue));)
		if (job->poll_channel && job->single_op == SMIS_OP_STATUS)
			smisd_job_free(job);
	pthread_mutex_unlock(&queue_lock);
	curl_multi_cleanup(multi);
	multi = NULL;
	close(epfd);
	close(wakefd);
	epfd = wakefd = -1;
	free(idle);
	idle = NULL;
	idle_cap = 0;
	while (easy_pooled)
		curl_easy_cleanup(easy_pool[--easy_pooled]);
}
