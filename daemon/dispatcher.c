/*
 * dispatcher.c - strategy chains on a curl multi handle (see
 * docs/architecture.md). Plugins build requests and read responses; this
 * file owns sockets, TLS, timeouts and connection reuse.
 */
#include "config.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
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

/* Easy handles are kept for the next message: creating one costs
 * allocations and setup that a busy dispatcher should not pay each time. */
#define EASY_POOL_MAX 4096
/* A rest whose fd could not be put back (no memory) is retried after this. */
#define SOURCE_REST_RETRY_MS 100

/*
 * Upstream URLs, parsed once per loop: curl parses a CURLOPT_URL string
 * anew for every transfer (curl_url_set, ~3% of smisd's CPU at full load),
 * while a CURLU handed over with CURLOPT_CURLU is only copied. A channel
 * calls a few URLs, so a few entries do; one is replaced only when no
 * transfer in the multi handle uses it (users), since curl reads it until
 * the transfer is removed.
 */
#define URL_CACHE_MAX 16
struct smisd_url_entry {
	char *url;
	CURLU *uh;
	unsigned users;
};

/*
 * One event loop thread: its own curl multi handle and epoll set, and the
 * event source attached to it (an HTTP daemon), so that a message is
 * received, sent upstream and answered on the one thread that took it.
 * Everything here is touched by that thread only, except the two queues
 * (queue_lock) and the source, attached once before it matters.
 */
struct smisd_loop {
	pthread_t thread;
	bool running;
	CURLM *multi;
	int epfd;
	int wakefd;
	pthread_mutex_t queue_lock;
	struct smisd_job_queue queue;    /* new jobs and single operations */
	struct smisd_job_queue prepared; /* back from the prepare pool (same lock) */
	struct smisd_job *active;        /* jobs with a transfer in the multi handle */
	int64_t timer_deadline;          /* monotonic ms of curl's timer, -1 none */
	unsigned long host_limit_gen;    /* smisd_dispatcher_host_cap(); 0: none yet */
	unsigned char *idle; /* see set_idle() */
	size_t idle_cap;
	atomic_bool has_source;
	atomic_bool source_due; /* run the source this turn (a connection was resumed) */
	int64_t source_rest_until; /* monotonic ms: its fd is out of epfd until then; 0: in it */
	struct smisd_loop_source source;
	size_t easy_pooled;
	CURL *easy_pool[EASY_POOL_MAX];
	struct smisd_url_entry urls[URL_CACHE_MAX];
	size_t url_next; /* where url_acquire() looks first for one to replace */
};

static struct smisd_loop *loops;
static int n_loops;
static atomic_uint next_loop; /* round robin for jobs from other threads */
static atomic_int stopping;   /* set by smisd_dispatcher_stop, read by the loops */
/* Submitters that are not loops (the store thread's status polls) hold it
 * from their check of `loops` and `stopping` to the end of their push; the
 * start holds it while it builds the loops, the stop to set `stopping`. A
 * push then lands in a loop that is whole and whose queue the stop will
 * drain, or sees no loops. Loops push only to themselves, before they are
 * joined, and need not take it. */
static pthread_mutex_t submit_lock = PTHREAD_MUTEX_INITIALIZER;
static smisd_dispatch_finished_fn on_finished;
/* The loop this thread runs, NULL elsewhere. */
static __thread struct smisd_loop *L;
/* Plugins' decide/start/resume/prepare_send run one at a time per daemon
 * (the ABI's promise), whichever loop calls them. */
static pthread_mutex_t plugin_lock = PTHREAD_MUTEX_INITIALIZER;

static void active_add(struct smisd_job *job)
{
	job->active_prev = NULL;
	job->active_next = L->active;
	if (L->active)
		L->active->active_prev = job;
	L->active = job;
}

/* The job's transfer left the multi handle: curl no longer reads its URL. */
static void url_release(struct smisd_job *job)
{
	if (job->url)
		job->url->users--;
	job->url = NULL;
}

static void active_remove(struct smisd_job *job)
{
	url_release(job);
	if (job->active_prev)
		job->active_prev->active_next = job->active_next;
	else if (L->active == job)
		L->active = job->active_next;
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
	smisd_outcome_keep(&a->out, out);
	a->elapsed_ms = (long)(smisd_monotonic_ms() - job->op_started_mono);
	smisd_concat(labels, sizeof(labels), "channel=\"", a->ch->name, "\",operation=\"", smisd_op_name(a->op),
		     "\",outcome=\"", smisd_outcome_name(out->kind, a->op), "\"", NULL);
	smisd_metric_add("smis_upstream_requests_total", labels, 1);
	smisd_concat(labels, sizeof(labels), "channel=\"", a->ch->name, "\",operation=\"", smisd_op_name(a->op),
		     "\"", NULL);
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

static CURL *easy_get(void)
{
	return L->easy_pooled ? L->easy_pool[--L->easy_pooled] : curl_easy_init();
}

static void easy_put(CURL *e)
{
	if (!e)
		return;
	if (L->easy_pooled < EASY_POOL_MAX) {
		curl_easy_reset(e);
		L->easy_pool[L->easy_pooled++] = e;
	} else {
		curl_easy_cleanup(e);
	}
}

static void url_entry_clear(struct smisd_url_entry *u)
{
	free(u->url);
	curl_url_cleanup(u->uh);
	u->url = NULL;
	u->uh = NULL;
}

/*
 * The entry of `url` in this loop, one more user counted; NULL when every
 * entry is in use or curl's parser refuses it: the caller then hands curl
 * the string, and curl says what is wrong with it as it always did.
 */
static struct smisd_url_entry *url_acquire(const char *url)
{
	struct smisd_url_entry *slot = NULL;
	CURLU *uh;
	char *copy;

	for (size_t i = 0; i < URL_CACHE_MAX; i++) {
		struct smisd_url_entry *u = &L->urls[(L->url_next + i) % URL_CACHE_MAX];
		if (u->url && strcmp(u->url, url) == 0) {
			u->users++;
			return u;
		}
		if (u->users == 0 && (!slot || (slot->url && !u->url)))
			slot = u;
	}
	if (!slot)
		return NULL;
	uh = curl_url();
	copy = strdup(url);
	/* The flags curl parses CURLOPT_URL with (url.c, parseurlandfillconn;
	 * smisd sets neither CURLOPT_DISALLOW_USERNAME_IN_URL nor
	 * CURLOPT_PATH_AS_IS). */
	if (!uh || !copy ||
	    curl_url_set(uh, CURLUPART_URL, url, CURLU_GUESS_SCHEME | CURLU_NON_SUPPORT_SCHEME) != CURLUE_OK) {
		curl_url_cleanup(uh);
		free(copy);
		return NULL;
	}
	url_entry_clear(slot);
	slot->url = copy;
	slot->uh = uh;
	slot->users = 1;
	L->url_next = (size_t)(slot - L->urls + 1) % URL_CACHE_MAX;
	return slot;
}

/* curl caps connections per host for the whole multi handle: the largest
 * cap any channel of the generation asks for, shared out between the loops
 * (each has its own multi handle). After a reload, jobs of the old and the
 * new generation run on the same handle: the newest generation a loop has
 * seen sets it, and an old job's request does not set it back (else the cap
 * would flip with each request of either). */
long smisd_dispatcher_host_cap(unsigned long *applied_gen, const struct smisd_generation *g, int n)
{
	long cap = 0;

	if (g->id <= *applied_gen)
		return -1;
	*applied_gen = g->id;
	for (size_t i = 0; i < g->n_channels; i++)
		if (g->channels[i].http.max_connections > cap)
			cap = g->channels[i].http.max_connections;
	if (cap > 0 && n > 1)
		cap = (cap + n - 1) / n;
	return cap;
}

static int perform(struct smisd_job *job, struct smis_http_request *req)
{
	const struct smisd_channel *ch = job->attempts[job->n_attempts - 1].ch;
	long remaining = (long)(job->deadline_mono - smisd_monotonic_ms());
	long timeout = ch->http.timeout_ms < remaining ? ch->http.timeout_ms : remaining;
	int rc = -1;

	if (timeout <= 0)
		goto out;
	{
		long cap = smisd_dispatcher_host_cap(&L->host_limit_gen, job->gen, n_loops);
		if (cap >= 0)
			curl_multi_setopt(L->multi, CURLMOPT_MAX_HOST_CONNECTIONS, cap);
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
	url_release(job);
	job->url = url_acquire(req->url);
	if (job->url)
		curl_easy_setopt(e, CURLOPT_CURLU, job->url->uh);
	else
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
	/* "Accept-Encoding: identity": upstream answers are a few hundred
	 * bytes, and a compressed one would cost a zlib stream (tens of KiB)
	 * per transfer in flight. Without the header a server, or a proxy
	 * before it, may compress all the same (RFC 9110 12.5.3); setting it
	 * also makes curl decode what comes compressed anyway (gzip, deflate),
	 * so a send is not read as unusable, then retried or fallen back from,
	 * although it went out. The 1 MiB limit (on_body) counts the decoded
	 * bytes. */
	curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "identity");
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
	job->upstream_started_us = smisd_monotonic_us();
	rc = curl_multi_add_handle(L->multi, e) == CURLM_OK ? 0 : -1;
	if (rc == 0)
		active_add(job);
	else
		url_release(job);
out:
	smisd_core_api.http_request_free(req);
	return rc;
}

/* A status poll's reports to the store. Those it does not take (its queue
 * full while it cannot write, out of memory, closing), and those the
 * attempt could not even keep (out of memory), are dropped, and the
 * message's next poll asks again: said (the message id and the cause, not
 * the reports) and counted. */
static void store_poll_reports(const struct smisd_job *job)
{
	const struct smisd_attempt *a = job->n_attempts ? &job->attempts[0] : NULL;
	size_t n;
	int rc;

	if (!a || a->out.kind != SMIS_OUTCOME_OK)
		return;
	n = a->out.n_reports + a->out.n_reports_lost;
	if (n == 0)
		return;
	rc = a->out.n_reports_lost ? -ENOMEM
				   : smisd_store_submit_reports(job->poll_channel->name,
								(job->poll_channel->caps & SMIS_CAP_REPORTS_BY_ID) != 0,
								a->out.reports, a->out.n_reports);
	if (rc == 0)
		return;
	smisd_log(SMIS_LOG_WARN, "store", job->id, "a status poll's %zu report(s) dropped: %s", n,
		  rc == -EBUSY ? "report queue full" : rc == -ESHUTDOWN ? "store closing" : "out of memory");
	smisd_metric_add("smis_store_errors_total", "operation=\"poll_reports\"", 1);
}

void smisd_dispatcher_store_poll_reports_for_test(const struct smisd_job *job)
{
	store_poll_reports(job);
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
		store_poll_reports(job);
		smisd_job_free(job);
		return;
	}
	/* The HTTP side answers it: now (and the store commits it after), or
	 * after its commit (store.commit_before_answer), when the store
	 * thread builds the answer (smisd_job_conclude) before it writes. */
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
	pthread_mutex_lock(&plugin_lock);
	rc = ch->ops->start(ch->state, a->op, &job->msg, &job->calls[ch->index], &req, &out);
	pthread_mutex_unlock(&plugin_lock);
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
		pthread_mutex_lock(&plugin_lock);
		ch->ops->prepare_send(ch->state, &job->msg, &job->calls[ch->index]);
		pthread_mutex_unlock(&plugin_lock);
	}
	return start_attempt(job);
}

/* Run the strategy chain until the job waits on upstream or is done.
 * Returns 1 when waiting, 0 when finished (caller concludes). */
static int advance(struct smisd_job *job)
{
	/* The outcomes strategies see, rebuilt from the kept records (one
	 * set per thread: decide() only borrows them during the call). */
	static __thread struct smis_outcome outcomes[SMISD_MAX_ATTEMPTS];

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
		for (size_t i = 0; i < job->n_attempts; i++) {
			smisd_outcome_view(&job->attempts[i].out, &outcomes[i]);
			views[i] = (struct smis_attempt_view){
				.channel = job->attempts[i].ch->name,
				.channel_caps = job->attempts[i].ch->caps,
				.op = job->attempts[i].op,
				.outcome = &outcomes[i],
			};
		}
		view = (struct smis_job_view){
			.size = sizeof(view),
			.msg = &job->msg,
			.attempts = views,
			.n_attempts = job->n_attempts,
			.step_first_attempt = job->step_first_attempt,
		};
		memset(&act, 0, sizeof(act));
		pthread_mutex_lock(&plugin_lock);
		v = step->ops->decide(step->state, &view, &act);
		pthread_mutex_unlock(&plugin_lock);
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

	curl_multi_remove_handle(L->multi, job->easy);
	active_remove(job);
	job->upstream_us += smisd_monotonic_us() - job->upstream_started_us;
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
	pthread_mutex_lock(&plugin_lock);
	rc = ch->ops->resume(ch->state, a->op, &job->msg, &job->calls[ch->index], &resp, &req, &out);
	pthread_mutex_unlock(&plugin_lock);
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

/*
 * A socket curl stops watching (a kept-alive connection back in its cache)
 * stays in the epoll set, marked idle: the next request on it then costs
 * one EPOLL_CTL_MOD instead of a DEL and an ADD. An idle socket that turns
 * readable (the server closed it) is removed then. A socket curl closes
 * leaves the set by itself; its number is cleared when curl reuses it.
 */
static void set_idle(struct smisd_loop *lp, curl_socket_t s, unsigned char v)
{
	if ((size_t)s >= lp->idle_cap) {
		size_t cap = lp->idle_cap ? lp->idle_cap : 1024;
		unsigned char *n;
		while (cap <= (size_t)s)
			cap *= 2;
		n = realloc(lp->idle, cap);
		if (!n) {
			/* no room to remember: remove it for real */
			if (v)
				epoll_ctl(lp->epfd, EPOLL_CTL_DEL, s, NULL);
			return;
		}
		memset(n + lp->idle_cap, 0, cap - lp->idle_cap);
		lp->idle = n;
		lp->idle_cap = cap;
	}
	lp->idle[s] = v;
}

/* curl calls these from the loop's thread, and from the main thread while
 * the loop is torn down: the loop comes as userp, not from L. */
static int on_socket(CURL *e, curl_socket_t s, int what, void *userp, void *socketp)
{
	struct smisd_loop *lp = userp;
	struct epoll_event ev;
	(void)e;
	(void)socketp;
	if (s < 0)
		return 0;
	if (what == CURL_POLL_REMOVE) {
		set_idle(lp, s, 1);
		return 0;
	}
	memset(&ev, 0, sizeof(ev));
	ev.data.fd = s;
	ev.events = (what & CURL_POLL_IN ? EPOLLIN : 0) | (what & CURL_POLL_OUT ? EPOLLOUT : 0);
	if ((size_t)s < lp->idle_cap)
		lp->idle[s] = 0;
	if (epoll_ctl(lp->epfd, EPOLL_CTL_MOD, s, &ev) != 0 && errno == ENOENT)
		epoll_ctl(lp->epfd, EPOLL_CTL_ADD, s, &ev);
	return 0;
}

static int on_timer(CURLM *m, long timeout_ms, void *userp)
{
	struct smisd_loop *lp = userp;
	(void)m;
	lp->timer_deadline = timeout_ms < 0 ? -1 : smisd_monotonic_ms() + timeout_ms;
	return 0;
}

static void drain_done(void)
{
	CURLMsg *m;
	int left;
	while ((m = curl_multi_info_read(L->multi, &left))) {
		struct smisd_job *job = NULL;
		if (m->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&job);
		on_response(job, m->data.result);
	}
}

/* Run the attached source (the HTTP daemon) if it is due: its fd was
 * readable, or its own timer (idle connections, work it left) ran out. */
static void run_source(bool readable)
{
	if (!atomic_load(&L->has_source))
		return;
	if (readable || (L->source.timeout_ms && L->source.timeout_ms(L->source.arg) == 0))
		L->source.run(L->source.arg);
}

/* Put the source's fd in the loop's epoll set. */
static int watch_source(struct smisd_loop *lp)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.fd = lp->source.fd };

	return epoll_ctl(lp->epfd, EPOLL_CTL_ADD, lp->source.fd, &ev);
}

/* The ms left of the source's rest (smisd_dispatcher_source_rest), or -1
 * when it is not resting. A rest that is over puts its fd back and has it
 * run once; one whose fd cannot be put back yet is taken up again. */
static int64_t source_rest_left(int64_t now)
{
	if (!L->source_rest_until)
		return -1;
	if (now < L->source_rest_until)
		return L->source_rest_until - now;
	L->source_rest_until = watch_source(L) == 0 ? 0 : now + SOURCE_REST_RETRY_MS;
	atomic_store(&L->source_due, true);
	return -1;
}

void smisd_dispatcher_source_rest(int64_t ms)
{
	if (L && !L->source_rest_until && epoll_ctl(L->epfd, EPOLL_CTL_DEL, L->source.fd, NULL) == 0)
		L->source_rest_until = smisd_monotonic_ms() + ms;
}

static void *loop_main(void *arg)
{
	struct epoll_event evs[256];
	L = arg;
	while (!stopping) {
		struct smisd_job *batch, *ready;
		int running, n, wait_ms;
		bool source_ready = false;
		int64_t now, src_ms, rest_ms;
		uint64_t junk;

		pthread_mutex_lock(&L->queue_lock);
		batch = smisd_job_queue_take(&L->queue);
		ready = smisd_job_queue_take(&L->prepared);
		pthread_mutex_unlock(&L->queue_lock);
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
		if (L->timer_deadline >= 0 && now >= L->timer_deadline) {
			L->timer_deadline = -1;
			curl_multi_socket_action(L->multi, CURL_SOCKET_TIMEOUT, 0, &running);
			drain_done();
			continue;
		}
		wait_ms = L->timer_deadline < 0 ? 1000 : (int)(L->timer_deadline - now);
		if (wait_ms > 1000)
			wait_ms = 1000;
		src_ms = atomic_load(&L->has_source) && L->source.timeout_ms ? L->source.timeout_ms(L->source.arg)
									   : -1;
		if (src_ms >= 0 && src_ms < wait_ms)
			wait_ms = (int)src_ms;
		rest_ms = source_rest_left(now);
		if (rest_ms >= 0 && rest_ms < wait_ms)
			wait_ms = (int)rest_ms;
		/* A job finished above may have resumed its connection on this
		 * very thread (answer before commit): nothing would wake us. */
		if (atomic_load(&L->source_due))
			wait_ms = 0;
		n = epoll_wait(L->epfd, evs, 256, wait_ms);
		for (int i = 0; i < n; i++) {
			int fd = evs[i].data.fd;
			int mask = 0;
			if (fd == L->wakefd) {
				if (read(L->wakefd, &junk, sizeof(junk)) < 0) {
					/* nothing to drain: another wake-up raced us */
				}
				continue;
			}
			if (atomic_load(&L->has_source) && fd == L->source.fd) {
				source_ready = true;
				continue;
			}
			if ((size_t)fd < L->idle_cap && L->idle[fd]) {
				epoll_ctl(L->epfd, EPOLL_CTL_DEL, fd, NULL);
				L->idle[fd] = 0;
				continue;
			}
			if (evs[i].events & EPOLLIN)
				mask |= CURL_CSELECT_IN;
			if (evs[i].events & EPOLLOUT)
				mask |= CURL_CSELECT_OUT;
			if (evs[i].events & (EPOLLERR | EPOLLHUP))
				mask |= CURL_CSELECT_ERR;
			curl_multi_socket_action(L->multi, fd, mask, &running);
		}
		drain_done();
		/* Last: requests it reads are queued to this loop and started
		 * at the top of the next turn, before any wait. */
		run_source(source_ready || atomic_exchange(&L->source_due, false));
	}
	return NULL;
}

static void wake(struct smisd_loop *lp)
{
	uint64_t one = 1;
	if (write(lp->wakefd, &one, sizeof(one)) < 0) {
		/* the counter is saturated: the loop is awake anyway */
	}
}

/* Hand a job to a loop. Only a push that finds both queues empty wakes
 * it: the loop takes both queues whole, so until it does, that one
 * wake-up covers every later push. Under load this saves an eventfd write
 * and read per message (a wake-up that finds the queues already taken is
 * harmless: the loop finds nothing and waits again). A loop pushing to
 * itself needs no wake-up at all: it takes its queues before it waits. */
static void enqueue(struct smisd_loop *lp, struct smisd_job_queue *q, struct smisd_job *job)
{
	int was_idle;
	pthread_mutex_lock(&lp->queue_lock);
	was_idle = !lp->queue.head && !lp->prepared.head;
	smisd_job_queue_push(q, job);
	pthread_mutex_unlock(&lp->queue_lock);
	if (was_idle && lp != L)
		wake(lp);
}

/* A worker of the prepare pool hands a job back to the loop it came from. */
static void prepared_done(struct smisd_job *job)
{
	enqueue(job->loop, &job->loop->prepared, job);
}

static void loop_free(struct smisd_loop *lp)
{
	if (lp->multi)
		curl_multi_cleanup(lp->multi);
	lp->multi = NULL;
	if (lp->epfd >= 0)
		close(lp->epfd);
	if (lp->wakefd >= 0)
		close(lp->wakefd);
	lp->epfd = lp->wakefd = -1;
	free(lp->idle);
	lp->idle = NULL;
	lp->idle_cap = 0;
	while (lp->easy_pooled)
		curl_easy_cleanup(lp->easy_pool[--lp->easy_pooled]);
	for (size_t i = 0; i < URL_CACHE_MAX; i++)
		url_entry_clear(&lp->urls[i]);
	pthread_mutex_destroy(&lp->queue_lock);
}

static int loop_init(struct smisd_loop *lp)
{
	struct epoll_event ev = { .events = EPOLLIN };

	lp->epfd = lp->wakefd = -1;
	lp->timer_deadline = -1;
	pthread_mutex_init(&lp->queue_lock, NULL);
	lp->multi = curl_multi_init();
	if (!lp->multi)
		return -1;
	/* Keep enough idle connections for a burst of 1000+ calls in flight. */
	curl_multi_setopt(lp->multi, CURLMOPT_MAXCONNECTS, 4096L);
	curl_multi_setopt(lp->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
	curl_multi_setopt(lp->multi, CURLMOPT_SOCKETDATA, lp);
	curl_multi_setopt(lp->multi, CURLMOPT_TIMERFUNCTION, on_timer);
	curl_multi_setopt(lp->multi, CURLMOPT_TIMERDATA, lp);
	lp->epfd = epoll_create1(EPOLL_CLOEXEC);
	lp->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (lp->epfd < 0 || lp->wakefd < 0)
		return -1;
	ev.data.fd = lp->wakefd;
	return epoll_ctl(lp->epfd, EPOLL_CTL_ADD, lp->wakefd, &ev);
}

static void stop_loops(void)
{
	stopping = 1;
	for (int i = 0; i < n_loops; i++)
		if (loops[i].running) {
			wake(&loops[i]);
			pthread_join(loops[i].thread, NULL);
			loops[i].running = false;
		}
}

static int start_loops(smisd_dispatch_finished_fn finished, int prepare_threads, int n)
{
	int inited = 0; /* loops loop_init ran on, even half: only those are freed */

	on_finished = finished;
	if (n < 1)
		n = 1;
	loops = calloc((size_t)n, sizeof(*loops));
	if (!loops)
		return -1;
	n_loops = n;
	stopping = 0;
	while (inited < n)
		if (loop_init(&loops[inited++]) != 0)
			goto fail;
	if (smisd_prepare_pool_start(prepare_threads, prepared_done) != 0)
		goto fail;
	for (int i = 0; i < n; i++) {
		char name[16];
		if (pthread_create(&loops[i].thread, NULL, loop_main, &loops[i]) != 0) {
			stop_loops();
			smisd_prepare_pool_stop();
			goto fail;
		}
		loops[i].running = true;
		/* Named for top -H, ps -L and /proc/PID/task/ (15 characters at most). */
		snprintf(name, sizeof(name), "smisd-loop%u", (unsigned)i % 100u);
		pthread_setname_np(loops[i].thread, name);
	}
	return 0;
fail:
	for (int i = 0; i < inited; i++)
		loop_free(&loops[i]);
	free(loops);
	loops = NULL;
	n_loops = 0;
	return -1;
}

int smisd_dispatcher_start(smisd_dispatch_finished_fn finished, int prepare_threads, int n)
{
	int rc;

	pthread_mutex_lock(&submit_lock);
	rc = start_loops(finished, prepare_threads, n);
	pthread_mutex_unlock(&submit_lock);
	return rc;
}

int smisd_dispatcher_loops(void)
{
	return n_loops;
}

int smisd_dispatcher_attach(int loop, const struct smisd_loop_source *src)
{
	struct smisd_loop *lp;

	if (loop < 0 || loop >= n_loops || atomic_load(&loops[loop].has_source))
		return -1;
	lp = &loops[loop];
	lp->source = *src;
	atomic_store(&lp->has_source, true);
	if (watch_source(lp) != 0) {
		atomic_store(&lp->has_source, false);
		return -1;
	}
	wake(lp); /* to take the source's timer into account */
	return 0;
}

void smisd_dispatcher_source_due(struct smisd_loop *lp)
{
	/* One wake-up until the loop has run it: it runs every resumption. */
	if (!atomic_exchange(&lp->source_due, true) && lp != L)
		wake(lp);
}

bool smisd_dispatcher_on_loop(const struct smisd_loop *lp)
{
	return lp == L;
}

void smisd_dispatcher_source_due_at(int loop)
{
	if (loop >= 0 && loop < n_loops)
		smisd_dispatcher_source_due(&loops[loop]);
}

void smisd_dispatcher_submit(struct smisd_job *job)
{
	struct smisd_loop *lp = L;

	if (!L)
		pthread_mutex_lock(&submit_lock);
	if (stopping || !loops) {
		/* Only status polls can arrive after the stop: drop them. */
		if (job->poll_channel && job->single_op == SMIS_OP_STATUS)
			smisd_job_free(job);
	} else {
		/* A request stays on the loop that read it; work from
		 * elsewhere (status polls) goes round the loops. */
		if (!lp)
			lp = &loops[atomic_fetch_add(&next_loop, 1) % (unsigned)n_loops];
		job->loop = lp;
		enqueue(lp, &lp->queue, job);
	}
	if (!L)
		pthread_mutex_unlock(&submit_lock);
}

void smisd_dispatcher_stop(void)
{
	if (!loops)
		return;
	/* Before the HTTP drain ended, every SEND came back from the pool. */
	smisd_prepare_pool_stop();
	pthread_mutex_lock(&submit_lock);
	stopping = 1;
	pthread_mutex_unlock(&submit_lock);
	stop_loops();
	for (int i = 0; i < n_loops; i++) {
		struct smisd_loop *lp = &loops[i];
		/* The functions below work on the current loop. */
		L = lp;
		/* After the HTTP drain only status polls can be left: drop them. */
		while (lp->active) {
			struct smisd_job *job = lp->active;
			active_remove(job);
			curl_multi_remove_handle(lp->multi, job->easy);
			if (job->poll_channel && job->single_op == SMIS_OP_STATUS)
				smisd_job_free(job);
		}
		pthread_mutex_lock(&lp->queue_lock);
		for (struct smisd_job *job; (job = smisd_job_queue_pop(&lp->queue));)
			if (job->poll_channel && job->single_op == SMIS_OP_STATUS)
				smisd_job_free(job);
		pthread_mutex_unlock(&lp->queue_lock);
		loop_free(lp);
		L = NULL;
	}
	free(loops);
	loops = NULL;
	n_loops = 0;
}
