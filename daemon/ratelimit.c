/*
 * ratelimit.c - small in-memory tables behind one mutex each. Entries for
 * recipients are dropped once their window is empty, so memory follows
 * the number of recipients seen within one window.
 */
#include "config.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ratelimit.h"

#define INST_MAX 1024
#define RCPT_BUCKETS 65536
#define RCPT_SLOTS 64 /* largest per-recipient max honoured exactly */

struct inst_state {
	char name[64];
	double tokens;
	int64_t last_ms;
	int64_t day;
	long used_today;
};

struct rcpt_entry {
	char key[160]; /* institution "\n" hash */
	int64_t times[RCPT_SLOTS]; /* ring of send times, ms */
	int head, count;
	struct rcpt_entry *next;
};

static pthread_mutex_t inst_lock = PTHREAD_MUTEX_INITIALIZER;
static struct inst_state insts[INST_MAX];
static int n_insts;
static pthread_mutex_t rcpt_lock = PTHREAD_MUTEX_INITIALIZER;
static struct rcpt_entry *rcpt[RCPT_BUCKETS];

static struct inst_state *inst_get(const char *name)
{
	for (int i = 0; i < n_insts; i++)
		if (strcmp(insts[i].name, name) == 0)
			return &insts[i];
	if (n_insts == INST_MAX)
		return NULL;
	snprintf(insts[n_insts].name, sizeof(insts[n_insts].name), "%s", name);
	insts[n_insts].tokens = -1; /* full on first use */
	return &insts[n_insts++];
}

int smisd_ratelimit_take(const char *institution, double rate, double burst, int64_t now_ms)
{
	int wait = 0;
	struct inst_state *s;
	if (rate <= 0)
		return 0;
	if (burst < 1)
		burst = 1;
	pthread_mutex_lock(&inst_lock);
	s = inst_get(institution);
	if (s) {
		if (s->tokens < 0) {
			s->tokens = burst;
		} else {
			s->tokens += (double)(now_ms - s->last_ms) * rate / 1000.0;
			if (s->tokens > burst)
				s->tokens = burst;
		}
		s->last_ms = now_ms;
		if (s->tokens >= 1) {
			s->tokens -= 1;
		} else {
			wait = (int)((1 - s->tokens) / rate) + 1;
		}
	}
	pthread_mutex_unlock(&inst_lock);
	return wait;
}

int smisd_ratelimit_quota(const char *institution, long quota, int64_t now_ms)
{
	int wait = 0;
	int64_t day = now_ms / 86400000;
	struct inst_state *s;
	if (quota <= 0)
		return 0;
	pthread_mutex_lock(&inst_lock);
	s = inst_get(institution);
	if (s) {
		if (s->day != day) {
			s->day = day;
			s->used_today = 0;
		}
		if (s->used_today >= quota)
			wait = (int)(((day + 1) * 86400000 - now_ms) / 1000) + 1;
		else
			s->used_today++;
	}
	pthread_mutex_unlock(&inst_lock);
	return wait;
}

void smisd_ratelimit_unquota(const char *institution, int64_t now_ms)
{
	struct inst_state *s;
	pthread_mutex_lock(&inst_lock);
	s = inst_get(institution);
	if (s && s->day == now_ms / 86400000 && s->used_today > 0)
		s->used_today--;
	pthread_mutex_unlock(&inst_lock);
}

static unsigned hash_key(const char *s)
{
	unsigned h = 2166136261u;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 16777619u;
	return h % RCPT_BUCKETS;
}

int smisd_ratelimit_recipient(const char *institution, const char *recipient_hash, int max,
			      int window_s, int64_t now_ms)
{
	char key[160];
	unsigned h;
	struct rcpt_entry **pp, *e = NULL;
	int64_t horizon = now_ms - (int64_t)window_s * 1000;
	int wait = 0;

	if (max <= 0)
		return 0;
	if (max > RCPT_SLOTS)
		max = RCPT_SLOTS;
	snprintf(key, sizeof(key), "%s\n%s", institution, recipient_hash);
	h = hash_key(key);
	pthread_mutex_lock(&rcpt_lock);
	/* Walk the bucket: drop entries whose window has emptied, find ours. */
	for (pp = &rcpt[h]; *pp;) {
		struct rcpt_entry *cur = *pp;
		while (cur->count > 0) {
			int oldest = (cur->head - cur->count + RCPT_SLOTS) % RCPT_SLOTS;
			if (cur->times[oldest] > horizon)
				break;
			cur->count--;
		}
		if (strcmp(cur->key, key) == 0) {
			e = cur;
		} else if (cur->count == 0) {
			*pp = cur->next;
			free(cur);
			continue;
		}
		pp = &cur->next;
	}
	if (!e) {
		e = calloc(1, sizeof(*e));
		if (!e) {
			pthread_mutex_unlock(&rcpt_lock);
			return 0; /* fail open on memory exhaustion: availability first */
		}
		memcpy(e->key, key, sizeof(e->key));
		e->next = rcpt[h];
		rcpt[h] = e;
	}
	if (e->count >= max) {
		int oldest = (e->head - e->count + RCPT_SLOTS) % RCPT_SLOTS;
		wait = (int)((e->times[oldest] - horizon) / 1000) + 1;
	} else {
		e->times[e->head] = now_ms;
		e->head = (e->head + 1) % RCPT_SLOTS;
		e->count++;
	}
	pthread_mutex_unlock(&rcpt_lock);
	return wait;
}

void smisd_ratelimit_unrecipient(const char *institution, const char *recipient_hash)
{
	char key[160];
	snprintf(key, sizeof(key), "%s\n%s", institution, recipient_hash);
	pthread_mutex_lock(&rcpt_lock);
	for (struct rcpt_entry *e = rcpt[hash_key(key)]; e; e = e->next)
		if (strcmp(e->key, key) == 0 && e->count > 0) {
			e->head = (e->head - 1 + RCPT_SLOTS) % RCPT_SLOTS;
			e->count--;
			break;
		}
	pthread_mutex_unlock(&rcpt_lock);
}

void smisd_ratelimit_reset(void)
{
	pthread_mutex_lock(&rcpt_lock);
	for (int i = 0; i < RCPT_BUCKETS; i++)
		while (rcpt[i]) {
			struct rcpt_entry *n = rcpt[i]->next;
			free(rcpt[i]);
			rcpt[i] = n;
		}
	pthread_mutex_unlock(&rcpt_lock);
	pthread_mutex_lock(&inst_lock);
	n_insts = 0;
	memset(insts, 0, sizeof(insts));
	pthread_mutex_unlock(&inst_lock);
}
