/*
 * callback.c - govapp-sim's status callbacks: signed POSTs to SMIS from one
 * background thread, so that POST /_sim/mark answers at once whatever the
 * receiver does. Each attempt and its HTTP result are recorded for
 * GET /_sim/callbacks. One attempt per event (a real backend would retry;
 * SMIS falls back to polling), which keeps tests deterministic.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "sim.h"

struct cb_job {
	struct cb_job *next;
	char *notification_id;
	char *device_id;
	char status[16];
	char *body;
};

struct sim_cb_queue {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct cb_job *head, *tail;
	bool stopping;
	pthread_t thread;
};

char *sim_sign(const char *secret, int64_t t, const char *body, size_t len)
{
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned int mac_len = 0;
	char ts[24], *buf = NULL, *out = NULL;
	size_t tl, n;

	tl = (size_t)snprintf(ts, sizeof(ts), "%lld", (long long)t);
	buf = malloc(tl + 1 + len);
	if (!buf)
		goto out;
	memcpy(buf, ts, tl);
	buf[tl] = '.';
	memcpy(buf + tl + 1, body, len);
	if (!HMAC(EVP_sha256(), secret, (int)strlen(secret), (unsigned char *)buf, tl + 1 + len, mac, &mac_len))
		goto out;
	n = 2 + tl + 4 + 2 * (size_t)mac_len + 1; /* "t=" ts ",v1=" hex NUL */
	out = malloc(n);
	if (!out)
		goto out;
	{
		size_t w = (size_t)snprintf(out, n, "t=%s,v1=", ts);

		for (unsigned i = 0; i < mac_len; i++)
			w += (size_t)snprintf(out + w, n - w, "%02x", mac[i]);
	}
out:
	free(buf);
	OPENSSL_cleanse(mac, sizeof(mac));
	return out;
}

static void job_free(struct cb_job *j)
{
	if (!j)
		return;
	free(j->notification_id);
	free(j->device_id);
	free(j->body);
	free(j);
}

static size_t discard(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	return size * nmemb;
}

static void deliver(struct sim *s, CURL *curl, struct cb_job *j)
{
	struct curl_slist *h = NULL;
	char *sig = sim_sign(s->callback_secret, sim_now_ms() / 1000, j->body, strlen(j->body));
	char *sig_line = NULL, errbuf[CURL_ERROR_SIZE] = "";
	long code = 0;
	CURLcode rc = CURLE_OUT_OF_MEMORY;

	if (!sig)
		goto out;
	sig_line = malloc(strlen(sig) + 32);
	if (!sig_line)
		goto out;
	snprintf(sig_line, strlen(sig) + 32, "X-GovApp-Signature: %s", sig);
	h = curl_slist_append(h, "Content-Type: application/json");
	h = h ? curl_slist_append(h, sig_line) : NULL;
	if (!h)
		goto out;
	curl_easy_reset(curl);
	curl_easy_setopt(curl, CURLOPT_URL, s->callback_url);
	curl_easy_setopt(curl, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(curl, CURLOPT_POSTFIELDS, j->body);
	curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE, (long)strlen(j->body));
	curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, 5000L);
	curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, 2000L);
	curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, discard);
	rc = curl_easy_perform(curl);
	if (rc == CURLE_OK)
		curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &code);
out:
	sim_callback_record(s, j->notification_id, j->device_id, j->status, code,
			    rc == CURLE_OK ? NULL : (errbuf[0] ? errbuf : curl_easy_strerror(rc)));
	sim_log(s, "callback %s %s %s -> %s%ld", j->notification_id, j->device_id, j->status,
		rc == CURLE_OK ? "HTTP " : "transport error, ", rc == CURLE_OK ? code : (long)rc);
	curl_slist_free_all(h);
	free(sig_line);
	free(sig);
}

static void *cb_main(void *arg)
{
	struct sim *s = arg;
	struct sim_cb_queue *q = s->cbq;
	CURL *curl = curl_easy_init();

	pthread_mutex_lock(&q->lock);
	for (;;) {
		struct cb_job *j;

		while (!q->head && !q->stopping)
			pthread_cond_wait(&q->cond, &q->lock);
		j = q->head;
		if (!j)
			break;
		q->head = j->next;
		if (!q->head)
			q->tail = NULL;
		pthread_mutex_unlock(&q->lock);
		if (curl)
			deliver(s, curl, j);
		else
			sim_callback_record(s, j->notification_id, j->device_id, j->status, 0, "curl_easy_init failed");
		job_free(j);
		pthread_mutex_lock(&q->lock);
	}
	pthread_mutex_unlock(&q->lock);
	curl_easy_cleanup(curl);
	return NULL;
}

int sim_callback_start(struct sim *s)
{
	struct sim_cb_queue *q = calloc(1, sizeof(*q));

	if (!q)
		return -ENOMEM;
	pthread_mutex_init(&q->lock, NULL);
	pthread_cond_init(&q->cond, NULL);
	s->cbq = q;
	if (pthread_create(&q->thread, NULL, cb_main, s) != 0) {
		pthread_cond_destroy(&q->cond);
		pthread_mutex_destroy(&q->lock);
		free(q);
		s->cbq = NULL;
		return -EAGAIN;
	}
	return 0;
}

/* Pending callbacks are still sent: stopping waits for the queue to drain. */
void sim_callback_stop(struct sim *s)
{
	struct sim_cb_queue *q = s->cbq;

	if (!q)
		return;
	pthread_mutex_lock(&q->lock);
	q->stopping = true;
	pthread_cond_signal(&q->cond);
	pthread_mutex_unlock(&q->lock);
	pthread_join(q->thread, NULL);
	pthread_cond_destroy(&q->cond);
	pthread_mutex_destroy(&q->lock);
	free(q);
	s->cbq = NULL;
}

void sim_callback_enqueue(struct sim *s, const char *notification_id, const char *device_id,
			  const char *status, char *body)
{
	struct sim_cb_queue *q = s->cbq;
	struct cb_job *j = calloc(1, sizeof(*j));

	if (!q || !j) {
		free(j);
		free(body);
		return;
	}
	j->notification_id = strdup(notification_id);
	j->device_id = strdup(device_id);
	snprintf(j->status, sizeof(j->status), "%s", status);
	j->body = body;
	if (!j->notification_id || !j->device_id) {
		job_free(j);
		return;
	}
	pthread_mutex_lock(&q->lock);
	if (q->tail)
		q->tail->next = j;
	else
		q->head = j;
	q->tail = j;
	pthread_cond_signal(&q->cond);
	pthread_mutex_unlock(&q->lock);
}
