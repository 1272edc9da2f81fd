/*
 * dispatcher.h - the one thread that runs strategy chains and performs
 * every upstream HTTP request on a shared libcurl multi handle.
 *
 * Thousands of jobs can wait on upstreams at once without a thread each:
 * a job is a small state machine advanced when its response arrives.
 */
#ifndef SMISD_DISPATCHER_H
#define SMISD_DISPATCHER_H

#include "job.h"

/* Called on a finished job (strategy done): the dispatcher hands it on. */
typedef void (*smisd_dispatch_finished_fn)(struct smisd_job *job);

/* prepare_threads: workers for channels' prepare_send (0: run it inline). */
int smisd_dispatcher_start(smisd_dispatch_finished_fn finished, int prepare_threads);
/* Thread-safe: queue a job and wake the dispatcher. */
void smisd_dispatcher_submit(struct smisd_job *job);
/* Stop the thread. Call after the HTTP side has drained: only status
 * polls can still be running, and they are dropped. */
void smisd_dispatcher_stop(void);

/* Run one strategy step decision chain synchronously for unit tests: the
 * pure part of the dispatcher (no HTTP). Exposed for tests only. */
int smisd_dispatcher_advance_for_test(struct smisd_job *job);

#endif
