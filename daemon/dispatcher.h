/*
 * dispatcher.h - the event loop threads that run strategy chains and
 * perform upstream HTTP requests, each on its own libcurl multi handle,
 * and each also running one HTTP daemon (its "source"), so that a message
 * is read, sent upstream and answered by one thread.
 *
 * Thousands of jobs can wait on upstreams at once without a thread each:
 * a job is a small state machine advanced when its response arrives.
 */
#ifndef SMISD_DISPATCHER_H
#define SMISD_DISPATCHER_H

#include <stdbool.h>
#include <stdint.h>

#include "job.h"

/* Called on a finished job (strategy done): the dispatcher hands it on. */
typedef void (*smisd_dispatch_finished_fn)(struct smisd_job *job);

/* An event source a loop runs beside curl: `fd` joins the loop's epoll
 * set; `run` is called on the loop's thread when it is readable or when
 * `timeout_ms` (ms until it needs running anyway, -1 never) says so. */
struct smisd_loop_source {
	int fd;
	void (*run)(void *arg);
	int64_t (*timeout_ms)(void *arg);
	void *arg;
};

/* `loops` event loop threads; prepare_threads: workers for channels'
 * prepare_send (0: run it inline). */
int smisd_dispatcher_start(smisd_dispatch_finished_fn finished, int prepare_threads, int loops);
int smisd_dispatcher_loops(void);
/* Give loop `loop` its source (once, before it is used). */
int smisd_dispatcher_attach(int loop, const struct smisd_loop_source *src);
/* Thread-safe: have loop `lp` run its source soon (MHD in external mode
 * must be run after a connection is resumed: nothing else tells it). */
void smisd_dispatcher_source_due(struct smisd_loop *lp);
/* Whether the calling thread is loop `lp`'s own. */
bool smisd_dispatcher_on_loop(const struct smisd_loop *lp);
/* The same for loop number `loop` (0 .. smisd_dispatcher_loops() - 1). */
void smisd_dispatcher_source_due_at(int loop);
/* On a loop's thread, from its source's run: leave the source's fd out of
 * the loop's epoll set for `ms`, then run the source once. For a source
 * whose fd stays readable while it can do nothing about it (a listening
 * socket when no descriptor is left to accept with), which would otherwise
 * be run again at once, for ever. */
void smisd_dispatcher_source_rest(int64_t ms);
/* Thread-safe: queue a job. On a loop thread it stays on that loop (no
 * wake-up needed); from elsewhere it goes to the next loop, woken. */
void smisd_dispatcher_submit(struct smisd_job *job);
/* Stop the loops (their sources are no longer run). Call after the HTTP
 * side has drained: only status polls can still be running, and they are
 * dropped. */
void smisd_dispatcher_stop(void);

/* The per-host connection cap (CURLMOPT_MAX_HOST_CONNECTIONS, 0: curl's
 * default) for a loop's multi handle, of `n` loops, when it runs a request of
 * generation `g`: the cap of `g` when `g` is newer than *applied_gen (which
 * becomes g's id), -1 when the cap in force stays. */
long smisd_dispatcher_host_cap(unsigned long *applied_gen, const struct smisd_generation *g, int n);

/* Run one strategy step decision chain synchronously for unit tests: the
 * pure part of the dispatcher (no HTTP). Exposed for tests only. */
int smisd_dispatcher_advance_for_test(struct smisd_job *job);

/* Hand a finished status poll's reports to the store, as when it ends on
 * its loop (logged and counted when they are dropped). For tests only. */
void smisd_dispatcher_store_poll_reports_for_test(const struct smisd_job *job);

#endif
