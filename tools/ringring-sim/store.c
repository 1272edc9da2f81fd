/*
 * store.c - what ringring-sim remembers: the last N accepted messages (for
 * /statusmessage and GET /_sim/requests) and the last N DLR attempts.
 *
 * Both are rings indexed by sequence number. A MessageId carries its
 * sequence number in its last group, so /statusmessage finds the slot
 * without a hash table and a recycled slot is told apart by comparing ids.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "sim.h"

struct sim_store {
	pthread_mutex_t lock;
	size_t cap;
	uint32_t nonce;
	uint64_t seq;     /* last message seq handed out (first is 1) */
	uint64_t dlr_seq; /* last DLR seq */
	struct sim_msg **msgs;
	struct sim_dlr_result **dlrs;
};

static void msg_free(struct sim_msg *m)
{
	if (!m)
		return;
	sim_msg_free_fields(m);
	free(m);
}

static void dlr_free(struct sim_dlr_result *d)
{
	if (!d)
		return;
	free(d->reference);
	free(d->url);
	free(d);
}

void sim_msg_free_fields(struct sim_msg *m)
{
	if (!m)
		return;
	free(m->message);
	free(m->reference);
	free(m->sender_id);
	free(m->from);
	free(m->encoding_in);
	free(m->status_url);
	m->message = m->reference = m->sender_id = m->from = NULL;
	m->encoding_in = m->status_url = NULL;
}

struct sim_store *sim_store_new(size_t cap, uint32_t nonce)
{
	struct sim_store *st = calloc(1, sizeof(*st));

	if (!st)
		return NULL;
	st->cap = cap;
	st->nonce = nonce;
	st->msgs = calloc(cap, sizeof(*st->msgs));
	st->dlrs = calloc(cap, sizeof(*st->dlrs));
	if (!st->msgs || !st->dlrs) {
		free(st->msgs);
		free(st->dlrs);
		free(st);
		return NULL;
	}
	pthread_mutex_init(&st->lock, NULL);
	return st;
}

static void store_clear(struct sim_store *st)
{
	for (size_t i = 0; i < st->cap; i++) {
		msg_free(st->msgs[i]);
		st->msgs[i] = NULL;
		dlr_free(st->dlrs[i]);
		st->dlrs[i] = NULL;
	}
}

void sim_store_free(struct sim_store *st)
{
	if (!st)
		return;
	store_clear(st);
	pthread_mutex_destroy(&st->lock);
	free(st->msgs);
	free(st->dlrs);
	free(st);
}

void sim_store_reset(struct sim_store *st)
{
	pthread_mutex_lock(&st->lock);
	store_clear(st);
	pthread_mutex_unlock(&st->lock);
}

/* v's low `digits` nibbles in upper-case hex at p; returns the end. */
static char *put_hex(char *p, uint64_t v, int digits)
{
	static const char hex[] = "0123456789ABCDEF";

	for (int i = digits - 1; i >= 0; i--, v >>= 4)
		p[i] = hex[v & 0xf];
	return p + digits;
}

/* A GUID-looking id: nonce, three groups of hash, then the seq's low 48
 * bits; what "%08X-%04X-%04X-%04X-%012llX" would write, without snprintf's
 * ~3K instructions for every message. */
static void make_id(uint32_t nonce, uint64_t seq, char buf[SIM_ID_LEN + 1])
{
	uint64_t z = seq ^ ((uint64_t)nonce << 17);
	char *p = buf;

	/* splitmix64 */
	z += 0x9e3779b97f4a7c15ULL;
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	z ^= z >> 31;
	p = put_hex(p, nonce, 8);
	*p++ = '-';
	p = put_hex(p, z >> 48, 4);
	*p++ = '-';
	p = put_hex(p, z >> 32, 4);
	*p++ = '-';
	p = put_hex(p, z >> 16, 4);
	*p++ = '-';
	p = put_hex(p, seq, 12);
	*p = '\0';
}

void sim_store_assign_id(struct sim_store *st, struct sim_msg *m)
{
	pthread_mutex_lock(&st->lock);
	m->seq = ++st->seq;
	pthread_mutex_unlock(&st->lock);
	make_id(st->nonce, m->seq, m->message_id);
}

void sim_store_add_msg(struct sim_store *st, struct sim_msg *m)
{
	size_t slot = (size_t)(m->seq % st->cap);

	pthread_mutex_lock(&st->lock);
	/* Another thread may have lapped us in the ring meanwhile. */
	if (st->msgs[slot] && st->msgs[slot]->seq > m->seq) {
		msg_free(m);
	} else {
		msg_free(st->msgs[slot]);
		st->msgs[slot] = m;
	}
	pthread_mutex_unlock(&st->lock);
}

static char *dup_or_null(const char *s)
{
	return s ? strdup(s) : NULL;
}

int sim_store_get_msg(struct sim_store *st, const char *id, struct sim_msg *out)
{
	unsigned long long seq = 0;
	const struct sim_msg *m;
	char *end = NULL;
	int rc = -ENOENT;

	if (!id || strlen(id) != SIM_ID_LEN || id[23] != '-')
		return -ENOENT;
	seq = strtoull(id + 24, &end, 16);
	if (!end || *end)
		return -ENOENT;
	pthread_mutex_lock(&st->lock);
	m = st->msgs[seq % st->cap];
	if (m && m->seq == seq && strcasecmp(m->message_id, id) == 0) {
		*out = *m;
		out->message = dup_or_null(m->message);
		out->reference = dup_or_null(m->reference);
		out->sender_id = dup_or_null(m->sender_id);
		out->from = dup_or_null(m->from);
		out->encoding_in = dup_or_null(m->encoding_in);
		out->status_url = dup_or_null(m->status_url);
		rc = 0;
	}
	pthread_mutex_unlock(&st->lock);
	return rc;
}

void sim_store_add_dlr(struct sim_store *st, struct sim_dlr_result *d)
{
	size_t slot;

	pthread_mutex_lock(&st->lock);
	d->seq = ++st->dlr_seq;
	slot = (size_t)(d->seq % st->cap);
	dlr_free(st->dlrs[slot]);
	st->dlrs[slot] = d;
	pthread_mutex_unlock(&st->lock);
}

static struct json_object *str_or_null(const char *s)
{
	return s ? json_object_new_string(s) : NULL;
}

/* First seq to list: the newest `limit` of those after `since` still in
 * the ring. */
static uint64_t first_seq(uint64_t last, size_t cap, size_t limit, uint64_t since)
{
	uint64_t first = last >= cap ? last - cap + 1 : 1;

	if (limit && last >= limit && last - limit + 1 > first)
		first = last - limit + 1;
	if (since + 1 > first)
		first = since + 1;
	return first;
}

struct json_object *sim_store_requests_json(struct sim_store *st, size_t limit, uint64_t since)
{
	struct json_object *arr = json_object_new_array();

	if (!arr)
		return NULL;
	pthread_mutex_lock(&st->lock);
	for (uint64_t s = first_seq(st->seq, st->cap, limit, since); s <= st->seq; s++) {
		const struct sim_msg *m = st->msgs[s % st->cap];
		struct json_object *o;
		if (!m || m->seq != s)
			continue;
		o = json_object_new_object();
		if (!o)
			break;
		json_object_object_add(o, "seq", json_object_new_int64((int64_t)m->seq));
		json_object_object_add(o, "message_id", json_object_new_string(m->message_id));
		json_object_object_add(o, "to", json_object_new_string(m->to));
		json_object_object_add(o, "message", json_object_new_string(m->message));
		json_object_object_add(o, "reference", str_or_null(m->reference));
		json_object_object_add(o, "senderId", str_or_null(m->sender_id));
		json_object_object_add(o, "from", str_or_null(m->from));
		json_object_object_add(o, "messageEncoding", str_or_null(m->encoding_in));
		json_object_object_add(o, "encoding", json_object_new_string(m->encoding));
		json_object_object_add(o, "parts", json_object_new_int(m->parts));
		json_object_object_add(o, "chars", json_object_new_int(m->chars));
		json_object_object_add(o, "statusUrl", str_or_null(m->status_url));
		json_object_object_add(o, "sandbox", json_object_new_boolean(m->sandbox));
		json_object_object_add(o, "at_ms", json_object_new_int64(m->submitted_ms));
		json_object_array_add(arr, o);
	}
	pthread_mutex_unlock(&st->lock);
	return arr;
}

struct json_object *sim_store_dlrs_json(struct sim_store *st, size_t limit, uint64_t since)
{
	struct json_object *arr = json_object_new_array();

	if (!arr)
		return NULL;
	pthread_mutex_lock(&st->lock);
	for (uint64_t s = first_seq(st->dlr_seq, st->cap, limit, since); s <= st->dlr_seq; s++) {
		const struct sim_dlr_result *d = st->dlrs[s % st->cap];
		struct json_object *o;
		if (!d || d->seq != s)
			continue;
		o = json_object_new_object();
		if (!o)
			break;
		json_object_object_add(o, "seq", json_object_new_int64((int64_t)d->seq));
		json_object_object_add(o, "message_id", json_object_new_string(d->message_id));
		json_object_object_add(o, "reference", str_or_null(d->reference));
		json_object_object_add(o, "url", str_or_null(d->url));
		json_object_object_add(o, "status_code", json_object_new_string(d->status_code));
		json_object_object_add(o, "http_status", json_object_new_int64(d->http_status));
		json_object_object_add(o, "ok", json_object_new_boolean(d->ok));
		json_object_object_add(o, "error", d->error[0] ? json_object_new_string(d->error) : NULL);
		json_object_object_add(o, "at_ms", json_object_new_int64(d->at_ms));
		json_object_array_add(arr, o);
	}
	pthread_mutex_unlock(&st->lock);
	return arr;
}
