/*
 * delay.c - simulated latency without blocking an HTTP thread.
 *
 * A delayed answer suspends its connection (MHD_suspend_connection) and
 * lands here with a deadline; one thread resumes connections as their
 * deadlines pass. Faults can change the latency at any time, so deadlines
 * do not arrive in order: they live in a binary min-heap, ties broken by
 * arrival so that equal latencies stay FIFO.
 *
 * MHD forbids stopping a daemon with suspended connections, so
 * sim_delay_stop() resumes everything still held before it returns, and
 * refuses new entries from then on (the caller answers those at once).
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <microhttpd.h>

#include "sim.h"

struct delay_item {
	int64_t due;
	uint64_t order;
	struct MHD_Connection *conn;
};

struct sim_delay {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	pthread_t thread;
	bool stopping;
	uint64_t order;
	struct delay_item *heap;
	size_t n;
	size_t cap;
};

static bool item_before(const struct delay_item *a, const struct delay_item *b)
{
	return a->due < b->due || (a->due == b->due && a->order < b->order);
}

static void heap_up(struct delay_item *h, size_t i)
{
	while (i > 0) {
		size_t parent = (i - 1) / 2;
		struct delay_item tmp;
		if (!item_before(&h[i], &h[parent]))
			break;
		tmp = h[i];
		h[i] = h[parent];
		h[parent] = tmp;
		i = parent;
	}
}

static void heap_down(struct delay_item *h, size_t n, size_t i)
{
	for (;;) {
		size_t l = 2 * i + 1;
		size_t r = l + 1;
		size_t m = i;
		struct delay_item tmp;
		if (l < n && item_before(&h[l], &h[m]))
			m = l;
		if (r < n && item_before(&h[r], &h[m]))
			m = r;
		if (m == i)
			break;
		tmp = h[i];
		h[i] = h[m];
		h[m] = tmp;
		i = m;
	}
}

static struct delay_item heap_pop(struct sim_delay *d)
{
	struct delay_item top = d->heap[0];

	d->heap[0] = d->heap[--d->n];
	heap_down(d->heap, d->n, 0);
	return top;
}

static void *delay_thread(void *arg)
{
	struct sim_delay *d = arg;

	pthread_mutex_lock(&d->lock);
	while (!d->stopping) {
		int64_t now = sim_mono_ms();
		if (d->n == 0) {
			pthread_cond_wait(&d->cond, &d->lock);
		} else if (d->heap[0].due <= now) {
			struct delay_item it = heap_pop(d);
			/* Not under our lock: MHD takes its own inside. */
			pthread_mutex_unlock(&d->lock);
			MHD_resume_connection(it.conn);
			pthread_mutex_lock(&d->lock);
		} else {
			struct timespec ts;
			int64_t due = d->heap[0].due;
			ts.tv_sec = (time_t)(due / 1000);
			ts.tv_nsec = (long)(due % 1000) * 1000000L;
			pthread_cond_timedwait(&d->cond, &d->lock, &ts);
		}
	}
	/* Nothing may stay suspended once the daemon stops. */
	while (d->n > 0) {
		struct delay_item it = heap_pop(d);
		MHD_resume_connection(it.conn);
	}
	pthread_mutex_unlock(&d->lock);
	return NULL;
}

struct sim_delay *sim_delay_new(void)
{
	struct sim_delay *d = calloc(1, sizeof(*d));
	pthread_condattr_t attr;

	if (!d)
		return NULL;
	d->cap = 1024;
	d->heap = calloc(d->cap, sizeof(*d->heap));
	if (!d->heap) {
		free(d);
		return NULL;
	}
	pthread_mutex_init(&d->lock, NULL);
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&d->cond, &attr);
	pthread_condattr_destroy(&attr);
	if (pthread_create(&d->thread, NULL, delay_thread, d) != 0) {
		pthread_cond_destroy(&d->cond);
		pthread_mutex_destroy(&d->lock);
		free(d->heap);
		free(d);
		return NULL;
	}
	return d;
}

bool sim_delay_add(struct sim_delay *d, int64_t due_ms, struct MHD_Connection *conn)
{
	bool ok = false;

	pthread_mutex_lock(&d->lock);
	if (d->stopping)
		goto out;
	if (d->n == d->cap) {
		struct delay_item *h = realloc(d->heap, 2 * d->cap * sizeof(*h));
		if (!h)
			goto out;
		d->heap = h;
		d->cap *= 2;
	}
	d->heap[d->n] = (struct delay_item){ .due = due_ms, .order = d->order++, .conn = conn };
	heap_up(d->heap, d->n);
	d->n++;
	/* Only a new earliest deadline changes what the thread waits for. */
	if (d->heap[0].conn == conn)
		pthread_cond_signal(&d->cond);
	ok = true;
out:
	pthread_mutex_unlock(&d->lock);
	return ok;
}

size_t sim_delay_count(struct sim_delay *d)
{
	size_t n;

	pthread_mutex_lock(&d->lock);
	n = d->n;
	pthread_mutex_unlock(&d->lock);
	return n;
}

void sim_delay_stop(struct sim_delay *d)
{
	bool join;

	if (!d)
		return;
	pthread_mutex_lock(&d->lock);
	join = !d->stopping;
	d->stopping = true;
	pthread_cond_signal(&d->cond);
	pthread_mutex_unlock(&d->lock);
	if (join)
		pthread_join(d->thread, NULL);
}

void sim_delay_free(struct sim_delay *d)
{
	if (!d)
		return;
	sim_delay_stop(d);
	pthread_cond_destroy(&d->cond);
	pthread_mutex_destroy(&d->lock);
	free(d->heap);
	free(d);
}
