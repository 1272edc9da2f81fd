/*
 * http_server.h - the institution-facing REST API on libmicrohttpd.
 */
#ifndef SMISD_HTTP_SERVER_H
#define SMISD_HTTP_SERVER_H

#include "generation.h"
#include "job.h"

/* Start listening with `g`'s listen settings. Returns the bound port or
 * -1. */
int smisd_http_start(const struct smisd_generation *g);
/* Stop accepting new connections (graceful shutdown, step 1). */
void smisd_http_quiesce(void);
/* Before smisd_dispatcher_stop(): from here on no thread resumes a
 * connection on its loop (a connection left suspended is closed by
 * smisd_http_stop), and none is still doing so. */
void smisd_http_leave_loops(void);
void smisd_http_stop(void);
/* After smisd_store_close(), before the last generation goes: free the jobs
 * smisd_http_stop closed the connection of unanswered. */
void smisd_http_free_abandoned(void);
/* Messages accepted and not yet answered. */
int smisd_http_in_flight(void);

/* Dispatcher -> store -> here: the job's answer is ready. */
void smisd_http_job_finished(struct smisd_job *job);

#endif
