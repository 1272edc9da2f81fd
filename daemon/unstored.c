/*
 * unstored.c - the messages answered but not yet committed (unstored.h).
 *
 * Two chained hash tables over the same jobs, by message id and by
 * (institution, Idempotency-Key), under one mutex. Their size is the
 * writer's backlog: at steady state the jobs of one commit delay (a few
 * dozen), at most limits.max_in_flight when the disk stalls, since a job
 * holds its in-flight slot until it is committed.
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "unstored.h"

#define BUCKETS 1024u

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct smisd_job *by_id[BUCKETS], *by_key[BUCKETS];
static int count;

/* FNV-1a over up to two strings, a separator between them. */
static unsigned hash2(const char *a, const char *b)
{
	uint32_t h = 2166136261u;
	for (; *a; a++)
		h = (h ^ (unsigned char)*a) * 16777619u;
	if (b) {
		h = (h ^ 0xffu) * 16777619u;
		for (; *b; b++)
			h = (h ^ (unsigned char)*b) * 16777619u;
	}
	return h % BUCKETS;
}

void smisd_unstored_add(struct smisd_job *job)
{
	unsigned i = hash2(job->id, NULL);
	pthread_mutex_lock(&lock);
	job->unstored_by_id = by_id[i];
	by_id[i] = job;
	if (job->idem_key) {
		unsigned k = hash2(job->inst->name, job->idem_key);
		job->unstored_by_key = by_key[k];
		by_key[k] = job;
	}
	count++;
	pthread_mutex_unlock(&lock);
}

void smisd_unstored_remove(struct smisd_job *job)
{
	struct smisd_job **pp;
	pthread_mutex_lock(&lock);
	for (pp = &by_id[hash2(job->id, NULL)]; *pp && *pp != job; pp = &(*pp)->unstored_by_id)
		;
	/* Counted only if it was here: a count below the jobs held would
	 * read 0 with one left, and the lookups skip the tables at 0. */
	if (*pp) {
		*pp = job->unstored_by_id;
		count--;
	}
	if (job->idem_key) {
		for (pp = &by_key[hash2(job->inst->name, job->idem_key)]; *pp && *pp != job;
		     pp = &(*pp)->unstored_by_key)
			;
		if (*pp)
			*pp = job->unstored_by_key;
	}
	pthread_mutex_unlock(&lock);
}

static struct smisd_job *find_id(const char *id)
{
	struct smisd_job *j = by_id[hash2(id, NULL)];
	while (j && strcmp(j->id, id) != 0)
		j = j->unstored_by_id;
	return j;
}

int smisd_unstored_get(const char *institution, const char *id, char **response_json,
		       const char **status, int64_t *updated_ms)
{
	int rc = -ENOENT;
	pthread_mutex_lock(&lock);
	struct smisd_job *j = count ? find_id(id) : NULL;
	if (j && strcmp(j->inst->name, institution) == 0) {
		*response_json = strdup(j->response_json ? j->response_json : "{}");
		*status = j->status;
		*updated_ms = j->concluded_ms;
		rc = *response_json ? 0 : -ENOMEM;
	}
	pthread_mutex_unlock(&lock);
	return rc;
}

int smisd_unstored_find_idempotent(const char *institution, const char *key,
				   char request_hash[SMISD_REQUEST_HASH_SIZE], char **response_json)
{
	int rc = -ENOENT;
	pthread_mutex_lock(&lock);
	struct smisd_job *j = count ? by_key[hash2(institution, key)] : NULL;
	while (j && (strcmp(j->idem_key, key) != 0 || strcmp(j->inst->name, institution) != 0))
		j = j->unstored_by_key;
	if (j) {
		memcpy(request_hash, j->request_hash, SMISD_REQUEST_HASH_SIZE);
		*response_json = strdup(j->response_json ? j->response_json : "{}");
		rc = *response_json ? 0 : -ENOMEM;
	}
	pthread_mutex_unlock(&lock);
	return rc;
}

bool smisd_unstored_exists(const char *id)
{
	pthread_mutex_lock(&lock);
	bool found = count && find_id(id);
	pthread_mutex_unlock(&lock);
	return found;
}
