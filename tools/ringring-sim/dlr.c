/*
 * dlr.c - delivery reports (DLR) posted to a message's statusUrl.
 *
 * RingRing calls the statusUrl of a message once its status is final. The
 * simulator does the same after a delay, from one background thread that
 * drives a libcurl multi handle: many reports can be in flight without a
 * thread each, connections to the receiver are reused, and the HTTP threads
 * never wait for a receiver. Pending reports sit in a min-heap by due time
 * because faults may change the delay between two sends.
 *
 * One attempt per report, no retry (RingRing's retry policy is not public);
 * every attempt is recorded for GET /_sim/dlrs.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>

#include "sim.h"

#define DLR_MAX_IN_FLIGHT 64
#define DLR_TIMEOUT_MS 10000L

struct dlr_job {
	int64_t due;
	uint64_t order;
	uint64_t gen;
	char message_id[SIM_ID_LEN + 1];
	char status_code[8];
	char *reference;
	char *url;
	char *body; /* NULL for GET */
	CURL *easy;
	char errbuf[CURL_ERROR_SIZE];
};

struct sim_dlr {
	struct sim *sim;
	pthread_mutex_t lock;
	pthread_t thread;
	CURLM *multi;
	struct curl_slist *headers;
	bool stopping;
	uint64_t gen;
	uint64_t order;
	struct dlr_job **heap;
	size_t n;
	size_t cap;
	struct dlr_job *flight[DLR_MAX_IN_FLIGHT];
	size_t in_flight;
};

static void job_free(struct dlr_job *j)
{
	if (!j)
		return;
	if (j->easy)
		curl_easy_cleanup(j->easy);
	free(j->reference);
	free(j->url);
	free(j->body);
	free(j);
}

static bool job_before(const struct dlr_job *a, const struct dlr_job *b)
{
	return a->due < b->due || (a->due == b->due && a->order < b->order);
}

static void heap_push(struct sim_dlr *d, struct dlr_job *j)
{
	size_t i = d->n++;

	d->heap[i] = j;
	while (i > 0) {
		size_t p = (i - 1) / 2;
		struct dlr_job *tmp;
		if (!job_before(d->heap[i], d->heap[p]))
			break;
		tmp = d->heap[i];
		d->heap[i] = d->heap[p];
		d->heap[p] = tmp;
		i = p;
	}
}

static struct dlr_job *heap_pop(struct sim_dlr *d)
{
	struct dlr_job *top = d->heap[0];
	size_t i = 0;

	d->heap[0] = d->heap[--d->n];
	for (;;) {
		size_t l = 2 * i + 1;
		size_t r = l + 1;
		size_t m = i;
		struct dlr_job *tmp;
		if (l < d->n && job_before(d->heap[l], d->heap[m]))
			m = l;
		if (r < d->n && job_before(d->heap[r], d->heap[m]))
			m = r;
		if (m == i)
			break;
		tmp = d->heap[i];
		d->heap[i] = d->heap[m];
		d->heap[m] = tmp;
		i = m;
	}
	return top;
}

static size_t discard(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	return size * nmemb;
}

static int job_start(struct sim_dlr *d, struct dlr_job *j)
{
	CURL *e = curl_easy_init();

	if (!e)
		return -ENOMEM;
	j->easy = e;
	curl_easy_setopt(e, CURLOPT_URL, j->url);
	curl_easy_setopt(e, CURLOPT_PRIVATE, j);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, DLR_TIMEOUT_MS);
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, 3000L);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, j->errbuf);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, discard);
	curl_easy_setopt(e, CURLOPT_USERAGENT, "ringring-sim-dlr/1");
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
	if (j->body) {
		curl_easy_setopt(e, CURLOPT_HTTPHEADER, d->headers);
		curl_easy_setopt(e, CURLOPT_POSTFIELDS, j->body);
		curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, (long)strlen(j->body));
	}
	if (curl_multi_add_handle(d->multi, e) != CURLM_OK)
		return -EIO;
	pthread_mutex_lock(&d->lock);
	d->flight[d->in_flight++] = j;
	pthread_mutex_unlock(&d->lock);
	return 0;
}

/* Record a finished (or unstartable) attempt; takes ownership of `j`. */
static void job_done(struct sim_dlr *d, struct dlr_job *j, CURLcode cc)
{
	struct sim_dlr_result *r = calloc(1, sizeof(*r));
	bool current;
	long http = 0;

	pthread_mutex_lock(&d->lock);
	current = j->gen == d->gen;
	pthread_mutex_unlock(&d->lock);
	if (j->easy && cc == CURLE_OK)
		curl_easy_getinfo(j->easy, CURLINFO_RESPONSE_CODE, &http);
	if (r && current) {
		memcpy(r->message_id, j->message_id, sizeof(r->message_id));
		memcpy(r->status_code, j->status_code, sizeof(r->status_code));
		r->reference = j->reference;
		r->url = j->url;
		j->reference = j->url = NULL;
		r->http_status = http;
		r->ok = cc == CURLE_OK && http >= 200 && http <= 299;
		if (cc != CURLE_OK)
			snprintf(r->error, sizeof(r->error), "%.120s",
				 j->errbuf[0] ? j->errbuf : curl_easy_strerror(cc));
		else if (!r->ok)
			snprintf(r->error, sizeof(r->error), "HTTP %ld", http);
		r->at_ms = sim_now_ms();
		if (r->ok)
			atomic_fetch_add(&d->sim->stats.dlr_sent, 1);
		else
			atomic_fetch_add(&d->sim->stats.dlr_failed, 1);
		if (!d->sim->quiet) {
			printf("DLR %s status %s -> %s\n", r->message_id, r->status_code,
			       r->ok ? "ok" : r->error);
			fflush(stdout);
		}
		sim_store_add_dlr(d->sim->store, r);
		r = NULL;
	}
	free(r);
	job_free(j);
}

static void reap(struct sim_dlr *d)
{
	CURLMsg *m;
	int left = 0;

	while ((m = curl_multi_info_read(d->multi, &left))) {
		struct dlr_job *j = NULL;
		if (m->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&j);
		curl_multi_remove_handle(d->multi, m->easy_handle);
		pthread_mutex_lock(&d->lock);
		for (size_t i = 0; i < d->in_flight; i++) {
			if (d->flight[i] == j) {
				d->flight[i] = d->flight[--d->in_flight];
				break;
			}
		}
		pthread_mutex_unlock(&d->lock);
		job_done(d, j, m->data.result);
	}
}

/* How long the thread may sleep in curl_multi_poll (which also wakes on
 * transfer activity and on curl_multi_wakeup). Called with the lock held. */
static int dlr_wait_ms(const struct sim_dlr *d, int64_t now)
{
	int64_t w;

	if (d->n == 0 || d->in_flight >= DLR_MAX_IN_FLIGHT)
		return 1000;
	w = d->heap[0]->due - now;
	return w < 0 ? 0 : (w > 1000 ? 1000 : (int)w);
}

static void *dlr_thread(void *arg)
{
	struct sim_dlr *d = arg;
	int running = 0;

	for (;;) {
		struct dlr_job *start[DLR_MAX_IN_FLIGHT];
		size_t n_start = 0;
		int64_t now = sim_mono_ms();
		int wait;

		pthread_mutex_lock(&d->lock);
		if (d->stopping) {
			pthread_mutex_unlock(&d->lock);
			break;
		}
		while (d->n > 0 && d->heap[0]->due <= now &&
		       d->in_flight + n_start < DLR_MAX_IN_FLIGHT)
			start[n_start++] = heap_pop(d);
		pthread_mutex_unlock(&d->lock);

		for (size_t i = 0; i < n_start; i++) {
			if (job_start(d, start[i]) != 0)
				job_done(d, start[i], CURLE_FAILED_INIT);
		}
		curl_multi_perform(d->multi, &running);
		reap(d);

		/* Decide the sleep only now: transfers on loopback often finish
		 * within the perform above and free their slots. */
		pthread_mutex_lock(&d->lock);
		wait = dlr_wait_ms(d, sim_mono_ms());
		pthread_mutex_unlock(&d->lock);
		curl_multi_poll(d->multi, NULL, 0, wait, NULL);
		curl_multi_perform(d->multi, &running);
		reap(d);
	}
	return NULL;
}

struct sim_dlr *sim_dlr_new(struct sim *sim)
{
	struct sim_dlr *d = calloc(1, sizeof(*d));

	if (!d)
		return NULL;
	d->sim = sim;
	d->cap = 1024;
	d->heap = calloc(d->cap, sizeof(*d->heap));
	d->multi = curl_multi_init();
	d->headers = curl_slist_append(NULL, "Content-Type: application/json; charset=utf-8");
	if (!d->heap || !d->multi || !d->headers)
		goto fail;
	/* Reports go to one receiver (smisd): reuse a few connections. */
	curl_multi_setopt(d->multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)DLR_MAX_IN_FLIGHT);
	pthread_mutex_init(&d->lock, NULL);
	if (pthread_create(&d->thread, NULL, dlr_thread, d) != 0) {
		pthread_mutex_destroy(&d->lock);
		goto fail;
	}
	return d;

fail:
	curl_slist_free_all(d->headers);
	if (d->multi)
		curl_multi_cleanup(d->multi);
	free(d->heap);
	free(d);
	return NULL;
}

static int add_str(struct json_object *o, const char *key, const char *val)
{
	return json_object_object_add(o, key, val ? json_object_new_string(val) : NULL);
}

/* The DLR body of R5, keys verbatim. */
static char *dlr_body(const struct sim_msg *m, const char *status)
{
	struct json_object *o = json_object_new_object();
	char submitted[32];
	char delivered[32];
	long code = 0;
	char *body = NULL;
	const char *country = "";

	if (!o)
		return NULL;
	sim_parse_long(status, -1000000, 1000000, &code);
	sim_format_time(m->submitted_ms, submitted, sizeof(submitted));
	sim_format_time(m->delivered_ms, delivered, sizeof(delivered));
	if (strncmp(m->to, "32", 2) == 0)
		country = "BE";
	else if (strncmp(m->to, "31", 2) == 0)
		country = "NL";
	else if (strncmp(m->to, "33", 2) == 0)
		country = "FR";
	else if (strncmp(m->to, "49", 2) == 0)
		country = "DE";
	add_str(o, "MessageId", m->message_id);
	add_str(o, "Reference", m->reference);
	add_str(o, "StatusCode", status);
	add_str(o, "StatusDescription", sim_status_description(code));
	add_str(o, "TimeScheduled", submitted);
	add_str(o, "TimeSubmitted", submitted);
	add_str(o, "DeliveryTime", delivered);
	add_str(o, "Country", country);
	json_object_object_add(o, "ResultCode", json_object_new_int(0));
	add_str(o, "ResultDescription", "Success");
	add_str(o, "From", m->from ? m->from : (m->sender_id ? m->sender_id : "8686"));
	add_str(o, "To", m->to);
	add_str(o, "Message", m->message);
	add_str(o, "MessageEncoding", m->encoding);
	json_object_object_add(o, "NumberOfParts", json_object_new_int(m->parts));
	json_object_object_add(o, "NumberOfChars", json_object_new_int(m->chars));
	body = strdup(json_object_to_json_string_ext(
		o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
	json_object_put(o);
	return body;
}

/* statusMethod GET: the same fields (without the text) as query args. */
static char *dlr_get_url(const struct sim_msg *m, const char *status)
{
	CURL *e = curl_easy_init();
	char *id = NULL;
	char *ref = NULL;
	char *url = NULL;
	size_t n;

	if (!e)
		return NULL;
	id = curl_easy_escape(e, m->message_id, 0);
	ref = curl_easy_escape(e, m->reference ? m->reference : "", 0);
	if (!id || !ref)
		goto out;
	n = strlen(m->status_url) + strlen(id) + strlen(ref) + 128;
	url = malloc(n);
	if (url)
		snprintf(url, n, "%s%sMessageId=%s&Reference=%s&StatusCode=%s&NumberOfParts=%d",
			 m->status_url, strchr(m->status_url, '?') ? "&" : "?", id, ref, status,
			 m->parts);
out:
	curl_free(id);
	curl_free(ref);
	curl_easy_cleanup(e);
	return url;
}

int sim_dlr_schedule(struct sim_dlr *d, const struct sim_msg *m, const char *method,
		     int64_t due_ms)
{
	struct dlr_job *j = calloc(1, sizeof(*j));
	bool get = method && strcasecmp(method, "GET") == 0;
	int rc = -ENOMEM;

	if (!j)
		return -ENOMEM;
	memcpy(j->message_id, m->message_id, sizeof(j->message_id));
	snprintf(j->status_code, sizeof(j->status_code), "%s", m->dlr_status);
	j->due = due_ms;
	j->reference = m->reference ? strdup(m->reference) : NULL;
	if (get) {
		j->url = dlr_get_url(m, m->dlr_status);
	} else {
		j->url = strdup(m->status_url);
		j->body = dlr_body(m, m->dlr_status);
		if (!j->body)
			goto fail;
	}
	if (!j->url || (m->reference && !j->reference))
		goto fail;

	pthread_mutex_lock(&d->lock);
	if (d->n == d->cap) {
		struct dlr_job **h = realloc(d->heap, 2 * d->cap * sizeof(*h));
		if (!h) {
			pthread_mutex_unlock(&d->lock);
			goto fail;
		}
		d->heap = h;
		d->cap *= 2;
	}
	j->gen = d->gen;
	j->order = d->order++;
	heap_push(d, j);
	/* Only a new earliest report changes how long the thread sleeps. */
	if (d->heap[0] == j)
		curl_multi_wakeup(d->multi);
	pthread_mutex_unlock(&d->lock);
	return 0;

fail:
	job_free(j);
	return rc;
}

void sim_dlr_reset(struct sim_dlr *d)
{
	pthread_mutex_lock(&d->lock);
	while (d->n > 0)
		job_free(d->heap[--d->n]);
	d->gen++;
	pthread_mutex_unlock(&d->lock);
}

size_t sim_dlr_pending(struct sim_dlr *d)
{
	size_t n;

	pthread_mutex_lock(&d->lock);
	n = d->n + d->in_flight;
	pthread_mutex_unlock(&d->lock);
	return n;
}

void sim_dlr_free(struct sim_dlr *d)
{
	if (!d)
		return;
	pthread_mutex_lock(&d->lock);
	d->stopping = true;
	curl_multi_wakeup(d->multi);
	pthread_mutex_unlock(&d->lock);
	pthread_join(d->thread, NULL);
	/* Reports not yet sent are dropped with the simulator. */
	for (size_t i = 0; i < d->in_flight; i++) {
		curl_multi_remove_handle(d->multi, d->flight[i]->easy);
		job_free(d->flight[i]);
	}
	while (d->n > 0)
		job_free(d->heap[--d->n]);
	curl_multi_cleanup(d->multi);
	curl_slist_free_all(d->headers);
	pthread_mutex_destroy(&d->lock);
	free(d->heap);
	free(d);
}
