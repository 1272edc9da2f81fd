/*
 * unstored.h - the messages answered but not yet committed.
 *
 * With store.commit_before_answer = false (the default) an event loop
 * answers a POST as soon as its strategy ends and hands the job to the
 * store writer, which commits it a few milliseconds later with others.
 * Until that commit the job is kept here, so that whatever follows the
 * answer (a GET of the message, a retry with the same Idempotency-Key, a
 * send reusing a passthrough message_id) finds it as if it were stored.
 * The store's reads consult this index first; the writer removes a job
 * right after its commit, before it lets go of it.
 */
#ifndef SMISD_UNSTORED_H
#define SMISD_UNSTORED_H

#include <stdbool.h>
#include <stdint.h>

#include "job.h"

/* Add a concluded job (its id, answer, status and idempotency key are
 * read from other threads from now on, and must not change); remove it
 * once committed. */
void smisd_unstored_add(struct smisd_job *job);
void smisd_unstored_remove(struct smisd_job *job);

/* The message `id` of `institution`: 0 with copies of its answer (free()
 * it) and status, and its updated_ms; -ENOENT when not here. */
int smisd_unstored_get(const char *institution, const char *id, char **response_json,
		       const char **status, int64_t *updated_ms);

/* The message sent by `institution` with Idempotency-Key `key`: 0 with
 * its request hash and a copy of its answer; -ENOENT when not here. */
int smisd_unstored_find_idempotent(const char *institution, const char *key,
				   char request_hash[SMISD_REQUEST_HASH_SIZE], char **response_json);

bool smisd_unstored_exists(const char *id);

#endif
