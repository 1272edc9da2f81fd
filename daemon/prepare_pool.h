/*
 * prepare_pool.h - worker threads that run channel plugins' prepare_send
 * (CPU-heavy work such as end-to-end sealing) off the event-loop threads.
 */
#ifndef SMISD_PREPARE_POOL_H
#define SMISD_PREPARE_POOL_H

#include <stdbool.h>

#include "job.h"

/* Called on a worker thread once prepare_send has run for the channel of
 * the job's last attempt. */
typedef void (*smisd_prepare_done_fn)(struct smisd_job *job);

/* Start `threads` workers (0: none; the caller then prepares inline). */
int smisd_prepare_pool_start(int threads, smisd_prepare_done_fn done);
/* Queue a job whose last attempt is a SEND on a channel with prepare_send;
 * thread-safe. False when there are no workers (none started, or stopping):
 * the caller prepares inline. */
bool smisd_prepare_pool_submit(struct smisd_job *job);
/* Let the workers finish what is queued, then join them. */
void smisd_prepare_pool_stop(void);

#endif
