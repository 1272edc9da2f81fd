/*
 * ratelimit.c - small in-memory tables behind one mutex each. Entries for
 * recipients are dropped once their window is empty, so memory follows
 * the number of recipients seen within one window; entries for
 * institutions are dropped by the reload that removes them.
 */
#include "config.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "ratelimit.h"

#define RCPT_BUCKETS 65536
#define RCPT_SLOTS 64 /* largest per-recipient max honoured exactly */

struct inst_state {
	char *name; /* whole: names that share a prefix are different institutions */
	double tokens;
	int64_t last_ms;
	int64_t day;
	long used_today;
};

/* One recipient of one institution. Kept small: there is one per
 * recipient seen within the window. */
struct rcpt_entry {
	struct rcpt_entry *next;
	uint64_t inst;             /* FNV-1a of the institution's name */
	unsigned char rcpt[32];    /* the recipient's pseudonym (HMAC), binary */
	uint16_t head, count, cap; /* ring of send times */
	int64_t times[];           /* ms, cap entries */
};

/* One entry per institution name seen since the last reload that kept it
 * (smisd_ratelimit_retain): no fixed number, so that a new institution
 * always gets its limits. */
static pthread_mutex_t inst_lock = PTHREAD_MUTEX_INITIALIZER;
static struct inst_state *insts;
static size_t n_insts, cap_insts;
static bool inst_oom_logged;
static pthread_mutex_t rcpt_lock = PTHREAD_MUTEX_INITIALIZER;
static struct rcpt_entry *rcpt_table[RCPT_BUCKETS];
static bool rcpt_oom_logged; /* under rcpt_lock */

/* Caller holds inst_lock. */
static struct inst_state *inst_find(const char *name)
{
	for (size_t i = 0; i < n_insts; i++)
		if (strcmp(insts[i].name, name) == 0)
			return &insts[i];
	return NULL;
}

/* The institution's entry, made on first use; NULL only without memory.
 * Caller holds inst_lock. */
static struct inst_state *inst_get(const char *name)
{
	struct inst_state *s = inst_find(name);
	char *copy;

	if (s)
		return s;
	if (n_insts == cap_insts) {
		size_t cap = cap_insts ? cap_insts * 2 : 16;
		struct inst_state *grown = realloc(insts, cap * sizeof(*insts));
		if (!grown)
			return NULL;
		insts = grown;
		cap_insts = cap;
	}
	if (!(copy = strdup(name)))
		return NULL;
	s = &insts[n_insts++];
	memset(s, 0, sizeof(*s));
	s->name = copy;
	s->tokens = -1; /* full on first use */
	inst_oom_logged = false;
	return s;
}

/* Without memory for a limit's entry the request is refused (a second's
 * wait), not let through without that limit. Logged once (`*logged`, under
 * the table's lock) until an entry can be made again; the institution's
 * name only, never the recipient. */
static int refuse_without_memory(bool *logged, const char *limits, const char *institution)
{
	if (!*logged)
		smisd_log(SMIS_LOG_ERROR, "ratelimit", NULL,
			  "no memory for the %s of institution '%s': its requests are refused", limits, institution);
	*logged = true;
	return 1;
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
	} else {
		wait = refuse_without_memory(&inst_oom_logged, "limits", institution);
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
	} else {
		wait = refuse_without_memory(&inst_oom_logged, "limits", institution);
	}
	pthread_mutex_unlock(&inst_lock);
	return wait;
}

void smisd_ratelimit_unquota(const char *institution, int64_t now_ms)
{
	struct inst_state *s;
	pthread_mutex_lock(&inst_lock);
	s = inst_find(institution);
	if (s && s->day == now_ms / 86400000 && s->used_today > 0)
		s->used_today--;
	pthread_mutex_unlock(&inst_lock);
}

static uint64_t fnv64(const char *s)
{
	uint64_t h = 14695981039346656037ull;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ull;
	return h;
}

static int hexval(char c)
{
	return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 :
	       c >= 'A' && c <= 'F' ? c - 'A' + 10 : 0;
}

/* The 64-hex-digit pseudonym as 32 bytes (shorter input is zero-padded). */
static void rcpt_bin(const char *hex, unsigned char out[32])
{
	memset(out, 0, 32);
	for (size_t i = 0; i < 32 && hex[2 * i] && hex[2 * i + 1]; i++)
		out[i] = (unsigned char)(hexval(hex[2 * i]) << 4 | hexval(hex[2 * i + 1]));
}

static unsigned bucket_of(uint64_t inst, const unsigned char rcpt[32])
{
	uint64_t h = inst;
	for (int i = 0; i < 8; i++)
		h = (h ^ rcpt[i]) * 1099511628211ull;
	return (unsigned)(h % RCPT_BUCKETS);
}

int smisd_ratelimit_recipient(const char *institution, const char *recipient_hash, int max,
			      int window_s, int64_t now_ms)
{
	uint64_t inst = fnv64(institution);
	unsigned char rcpt[32];
	unsigned h;
	struct rcpt_entry **pp, *e = NULL;
	int64_t horizon = now_ms - (int64_t)window_s * 1000;
	int wait = 0;

	if (max <= 0)
		return 0;
	if (max > RCPT_SLOTS)
		max = RCPT_SLOTS;
	rcpt_bin(recipient_hash, rcpt);
	h = bucket_of(inst, rcpt);
	pthread_mutex_lock(&rcpt_lock);
	/* Walk the bucket: drop entries whose window has emptied, find ours. */
	for (pp = &rcpt_table[h]; *pp;) {
		struct rcpt_entry *cur = *pp;
		while (cur->count > 0) {
			int oldest = (cur->head - cur->count + cur->cap) % cur->cap;
			if (cur->times[oldest] > horizon)
				break;
			cur->count--;
		}
		if (cur->inst == inst && memcmp(cur->rcpt, rcpt, 32) == 0) {
			e = cur;
		} else if (cur->count == 0) {
			*pp = cur->next;
			free(cur);
			continue;
		}
		pp = &cur->next;
	}
	if (e && e->cap < max) {
		/* The configured maximum grew (reload): start this one afresh. */
		struct rcpt_entry **q;
		for (q = &rcpt_table[h]; *q != e; q = &(*q)->next)
			;
		*q = e->next;
		free(e);
		e = NULL;
	}
	if (!e) {
		e = calloc(1, sizeof(*e) + (size_t)max * sizeof(e->times[0]));
		if (!e) {
			/* Closed, as the institution's limits: letting it
			 * through would lift the limit against SMS pumping
			 * exactly when the process is under pressure. */
			wait = refuse_without_memory(&rcpt_oom_logged, "recipient limits", institution);
			pthread_mutex_unlock(&rcpt_lock);
			return wait;
		}
		rcpt_oom_logged = false;
		e->inst = inst;
		memcpy(e->rcpt, rcpt, 32);
		e->cap = (uint16_t)max;
		e->next = rcpt_table[h];
		rcpt_table[h] = e;
	}
	if (e->count >= max) {
		int oldest = (e->head - e->count + e->cap) % e->cap;
		wait = (int)((e->times[oldest] - horizon) / 1000) + 1;
	} else {
		e->times[e->head] = now_ms;
		e->head = (uint16_t)((e->head + 1) % e->cap);
		e->count++;
	}
	pthread_mutex_unlock(&rcpt_lock);
	return wait;
}

void smisd_ratelimit_unrecipient(const char *institution, const char *recipient_hash)
{
	uint64_t inst = fnv64(institution);
	unsigned char rcpt[32];
	rcpt_bin(recipient_hash, rcpt);
	pthread_mutex_lock(&rcpt_lock);
	for (struct rcpt_entry *e = rcpt_table[bucket_of(inst, rcpt)]; e; e = e->next)
		if (e->inst == inst && memcmp(e->rcpt, rcpt, 32) == 0 && e->count > 0) {
			e->head = (uint16_t)((e->head - 1 + e->cap) % e->cap);
			e->count--;
			break;
		}
	pthread_mutex_unlock(&rcpt_lock);
}

void smisd_ratelimit_retain(bool (*configured)(const char *institution, const void *arg), const void *arg)
{
	size_t kept = 0;

	pthread_mutex_lock(&inst_lock);
	for (size_t i = 0; i < n_insts; i++) {
		if (configured(insts[i].name, arg))
			insts[kept++] = insts[i];
		else
			free(insts[i].name);
	}
	n_insts = kept;
	pthread_mutex_unlock(&inst_lock);
}

void smisd_ratelimit_reset(void)
{
	pthread_mutex_lock(&rcpt_lock);
	for (int i = 0; i < RCPT_BUCKETS; i++)
		while (rcpt_table[i]) {
			struct rcpt_entry *n = rcpt_table[i]->next;
			free(rcpt_table[i]);
			rcpt_table[i] = n;
		}
	pthread_mutex_unlock(&rcpt_lock);
	pthread_mutex_lock(&inst_lock);
	while (n_insts > 0)
		free(insts[--n_insts].name);
	free(insts);
	insts = NULL;
	cap_insts = 0;
	pthread_mutex_unlock(&inst_lock);
}
