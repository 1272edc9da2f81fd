/*
 * store.h - the embedded status store (SQLite, WAL).
 *
 * Writes go through one writer thread that batches them into a single
 * transaction (group commit); a job's completion callback runs only once
 * its rows are committed. A job answered before that (job->answered_first)
 * is found by the reads below from the moment it is submitted (unstored.h),
 * so either way a GET right after the POST's answer finds the message. Message bodies are never stored; recipients are stored as
 * HMAC-SHA256(phone_hash_key, E.164).
 */
#ifndef SMISD_STORE_H
#define SMISD_STORE_H

#include <stdbool.h>
#include <stddef.h>

#include <smis/smis-plugin.h>

#include "job.h"

/* batch_max: jobs per transaction at most; commit_delay_ms: how long the
 * writer gathers jobs that were answered already before it commits them
 * (0: commit what is queued at once). */
int smisd_store_open(const char *path, int batch_max, int commit_delay_ms);
void smisd_store_close(void);

/* Queue a finished job's rows; job->done(job) runs on the writer after the
 * commit. A job answered first must be concluded already. */
void smisd_store_submit(struct smisd_job *job);

/* Queue `n` delivery/reception reports for the messages whose attempt on
 * `channel` returned `r[i].provider_ref`, or, with `by_id` (the channel has
 * SMIS_CAP_REPORTS_BY_ID), for the messages whose id it is: all of them,
 * or none and -EBUSY when the queue would pass its bound (while the store
 * cannot write; see smisd_store_set_report_bound), -ESHUTDOWN when the
 * store is closing, or -ENOMEM. */
int smisd_store_submit_reports(const char *channel, bool by_id, const struct smis_report *r, size_t n);

/* How many reports may wait for the writer; set once, before the first. */
void smisd_store_set_report_bound(size_t bound);

/* Reads (any thread). Return 0 and a JSON text the caller frees with
 * free(), -ENOENT when absent (or owned by another institution), -EIO
 * (logged) when the store cannot be read, or -ENOMEM. */
int smisd_store_get_message(const char *institution, const char *id, char **json);

/* Whether a send on `channel` returned `provider_ref` (with `by_id`: was
 * made for message `provider_ref`); reports for unknown messages are
 * refused. 1 when it did, 0 when not, -EIO (logged) when that cannot be told. */
int smisd_store_provider_ref_known(const char *channel, bool by_id, const char *provider_ref);

/* Whether a message id is taken (passthrough ids come from the client): 1
 * when it is, 0 when not, -EIO (logged) when that cannot be told. */
int smisd_store_message_exists(const char *id);

/* Idempotency: 0 and the stored request hash + answer when the key was
 * used before by this institution, -ENOENT when it was not; -ENOMEM or
 * -EIO (logged) when that cannot be told. */
int smisd_store_find_idempotent(const char *institution, const char *key,
				char request_hash[SMISD_REQUEST_HASH_SIZE], char **response_json);

/* HMAC-SHA256(key, e164) as 64 hex characters: 0, or -1 when it could not
 * be computed (out of memory). */
int smisd_store_phone_hash(const unsigned char *key, size_t keylen, const char *e164, char out[65]);

/* What a request body is known by for idempotency: "h1:" and
 * HMAC-SHA256(key, body) in hex, with the phone hash key. Not a plain
 * digest: a body holds the recipient's number in clear, and with a known
 * text the number space is small enough to search against a digest. */
int smisd_store_request_hash(const unsigned char *key, size_t keylen, const void *body, size_t len,
			     char out[SMISD_REQUEST_HASH_SIZE]); /* 0, or -1 as above */

/* Whether `stored` (from smisd_store_find_idempotent) is the hash of the
 * body whose smisd_store_request_hash is `request_hash`. A hash without
 * "h1:" was written by an older smisd as the body's plain SHA-256 and is
 * compared as such, so that a retry across the upgrade still replays. */
bool smisd_store_same_request(const char *stored, const char *request_hash, const void *body, size_t len);

/* Whether SQLite's code `rc` says nothing about the rows (the database
 * locked, full, read-only, failing to read or write): what failed is
 * tried again, whole, later; any other failure refuses the rows. */
bool smisd_store_transient_error(int rc);

/* Pending messages in the store writer's queue (for metrics/shutdown). */
int smisd_store_pending(void);

#endif
