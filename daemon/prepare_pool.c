/*
 * prepare_pool.c - worker threads for the channel plugins' prepare_send.
 *
 * The dispatcher is the one thread every message goes through, so CPU-heavy
 * work on it (sealing a GovApp message for each of the citizen's devices
 * costs two X25519 operations per device) stalls every other message's
 * I/O. A channel that exports prepare_send gets that work done here, on a
 * small pool, and the job goes back to the dispatcher to start the SEND.
 *
 * A job is owned by exactly one thread at a time: the dispatcher hands it
 * over with the SEND recorded as its last attempt (nothing of it is touched
 * there until it comes back), a worker runs that channel's prepare_send and
 * hands it back through the `done` callback.
 */
#include "config.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#include "prepare_pool.h"

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static struct smisd_job_queue queue;
static pthread_t *workers;
static int n_workers;
static bool stopping;
static smisd_prepare_done_fn on_done;

static void *worker_main(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&lock);
	for (;;) {
		struct smisd_job *job;
		const struct smisd_channel *ch;
		while (!queue.head && !stopping)
			pthread_cond_wait(&cond, &lock);
		job = smisd_job_queue_pop(&queue);
		if (!job) /* stopping, and nothing left to prepare */
			break;
		pthread_mutex_unlock(&lock);
		ch = job->attempts[job->n_attempts - 1].ch;
		ch->ops->prepare_send(ch->state, &job->msg, &job->calls[ch->index]);
		on_done(job);
		pthread_mutex_lock(&lock);
	}
	pthread_mutex_unlock(&lock);
	return NULL;
}

int smisd_prepare_pool_start(int threads, smisd_prepare_done_fn done)
{
	on_done = done;
	stopping = false;
	if (threads <= 0)
		return 0;
	workers = calloc((size_t)threads, sizeof(*workers));
	if (!workers)
		return -1;
	for (n_workers = 0; n_workers < threads; n_workers++) {
		char name[16];
		if (pthread_create(&workers[n_workers], NULL, worker_main, NULL) != 0) {
			smisd_prepare_pool_stop();
			return -1;
		}
		snprintf(name, sizeof(name), "smisd-prep%d", n_workers);
		pthread_setname_np(workers[n_workers], name);
	}
	return 0;
}

bool smisd_prepare_pool_submit(struct smisd_job *job)
{
	bool taken;

	pthread_mutex_lock(&lock);
	/* Refused once stopping: a SEND that comes after the drain window
	 * (a straggler's lookup answered late) is prepared inline instead of
	 * waiting for workers that are gone. */
	taken = n_workers > 0 && !stopping;
	if (taken) {
		smisd_job_queue_push(&queue, job);
		pthread_cond_signal(&cond);
	}
	pthread_mutex_unlock(&lock);
	return taken;
}

void smisd_prepare_pool_stop(void)
{
	pthread_mutex_lock(&lock);
	stopping = true;
	pthread_cond_broadcast(&cond);
	pthread_mutex_unlock(&lock);
	/* Workers finish what is queued first: every job comes back. */
	for (int i = 0; i < n_workers; i++)
		pthread_join(workers[i], NULL);
	pthread_mutex_lock(&lock);
	n_workers = 0;
	pthread_mutex_unlock(&lock);
	free(workers);
	workers = NULL;
}
