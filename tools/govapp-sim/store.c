/*
 * store.c - govapp-sim's state: the citizen registry, the notifications
 * and what each device read, the request and callback records, the fault
 * and the counters, with the API and control operations on them.
 *
 * Everything here is reached from libmicrohttpd's pool threads, so every
 * access to struct sim goes through s->lock; the costly part of a send (one
 * HPKE open per envelope) runs outside it. Nothing touches the disk after
 * the seed file has been read.
 */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include <openssl/crypto.h>

#include "b64url.h"
#include "e2e.h"
#include "hpke.h"
#include "json_reuse.h"
#include "sim.h"

/* ------------------------------------------------------------------ */
/* Hash table                                                          */
/* ------------------------------------------------------------------ */

struct sim_map_entry {
	struct sim_map_entry *next;
	uint64_t hash;
	void *value;
	char key[]; /* NUL-terminated */
};

/* FNV-1a: short keys (phone numbers, ids), no adversary on loopback. */
static uint64_t sim_hash(const char *k)
{
	uint64_t h = 1469598103934665603ULL;

	for (; *k; k++) {
		h ^= (unsigned char)*k;
		h *= 1099511628211ULL;
	}
	return h;
}

int sim_map_init(struct sim_map *m, size_t n_buckets)
{
	size_t n = 16;

	while (n < n_buckets)
		n <<= 1;
	m->buckets = calloc(n, sizeof(*m->buckets));
	m->n_buckets = m->buckets ? n : 0;
	m->count = 0;
	return m->buckets ? 0 : -ENOMEM;
}

void sim_map_fini(struct sim_map *m, void (*free_value)(void *))
{
	for (size_t i = 0; i < m->n_buckets; i++) {
		struct sim_map_entry *e = m->buckets[i], *next;

		for (; e; e = next) {
			next = e->next;
			if (free_value)
				free_value(e->value);
			free(e);
		}
	}
	free(m->buckets);
	m->buckets = NULL;
	m->n_buckets = 0;
	m->count = 0;
}

static struct sim_map_entry **sim_map_slot(const struct sim_map *m, const char *key, uint64_t h)
{
	struct sim_map_entry **p = &m->buckets[h & (m->n_buckets - 1)];

	while (*p && ((*p)->hash != h || strcmp((*p)->key, key) != 0))
		p = &(*p)->next;
	return p;
}

void *sim_map_get(const struct sim_map *m, const char *key)
{
	struct sim_map_entry **p = sim_map_slot(m, key, sim_hash(key));

	return *p ? (*p)->value : NULL;
}

static void sim_map_grow(struct sim_map *m)
{
	size_t n = m->n_buckets * 2;
	struct sim_map_entry **b = calloc(n, sizeof(*b));

	/* Out of memory: keep the longer chains rather than fail the put. */
	if (!b)
		return;
	for (size_t i = 0; i < m->n_buckets; i++) {
		struct sim_map_entry *e = m->buckets[i], *next;

		for (; e; e = next) {
			next = e->next;
			e->next = b[e->hash & (n - 1)];
			b[e->hash & (n - 1)] = e;
		}
	}
	free(m->buckets);
	m->buckets = b;
	m->n_buckets = n;
}

int sim_map_put(struct sim_map *m, const char *key, void *value, void **old)
{
	uint64_t h = sim_hash(key);
	struct sim_map_entry **p = sim_map_slot(m, key, h), *e;
	size_t kl;

	if (old)
		*old = NULL;
	if (*p) {
		if (old)
			*old = (*p)->value;
		(*p)->value = value;
		return 0;
	}
	kl = strlen(key) + 1;
	e = malloc(sizeof(*e) + kl);
	if (!e)
		return -ENOMEM;
	e->hash = h;
	e->value = value;
	memcpy(e->key, key, kl);
	e->next = NULL;
	*p = e;
	if (++m->count > m->n_buckets)
		sim_map_grow(m);
	return 0;
}

void *sim_map_del(struct sim_map *m, const char *key)
{
	struct sim_map_entry **p = sim_map_slot(m, key, sim_hash(key)), *e = *p;
	void *v = NULL;

	if (e) {
		*p = e->next;
		v = e->value;
		free(e);
		m->count--;
	}
	return v;
}

/* ------------------------------------------------------------------ */
/* Helpers                                                             */
/* ------------------------------------------------------------------ */

int64_t sim_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void sim_format_time(int64_t ms, char *buf, size_t cap)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;

	gmtime_r(&t, &tm);
	snprintf(buf, cap, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
		 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ms % 1000));
}

void sim_log(const struct sim *s, const char *fmt, ...)
{
	va_list ap;
	char when[40];

	if (s && s->quiet)
		return;
	sim_format_time(sim_now_ms(), when, sizeof(when));
	va_start(ap, fmt);
	flockfile(stderr);
	fprintf(stderr, "%s govapp-sim: ", when);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	funlockfile(stderr);
	va_end(ap);
}

char *sim_json_dup(struct json_object *o)
{
	return strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
							  JSON_C_TO_STRING_NOSLASHESCAPE));
}

/* One tokener per thread (HTTP pool threads, the callback thread), reset
 * before each parse as ringring-sim's: only one whose last parse ended
 * cleanly is kept (lib/json_reuse.h says why). json-c's default depth, as
 * json_tokener_new() had. */
static struct smis_json_thread_tokener parse_tokener =
	SMIS_JSON_THREAD_TOKENER(JSON_TOKENER_DEFAULT_DEPTH, 0);

/*
 * The one JSON value in buf[0..len), NULL if there is none or anything but
 * JSON's whitespace follows it: json-c reads the whitespace after a value
 * (space, tab, CR, LF; RFC 8259) and stops at any other byte, a NUL too.
 */
struct json_object *sim_json_parse(const char *buf, size_t len)
{
	return len > SIM_BODY_MAX ? NULL : smis_json_thread_parse(&parse_tokener, buf, len);
}

char *sim_error_json(const char *code)
{
	size_t n = strlen(code) + 16;
	char *s = malloc(n);

	if (s)
		snprintf(s, n, "{\"error\":\"%s\"}", code);
	return s;
}

static const char *jstr(struct json_object *o, const char *key)
{
	struct json_object *v;

	if (!o || !json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string))
		return NULL;
	return json_object_get_string(v);
}

/* 1/0 for a boolean member, def when absent, -1 when of another type. */
static int jbool(struct json_object *o, const char *key, int def)
{
	struct json_object *v;

	if (!json_object_object_get_ex(o, key, &v) || json_object_is_type(v, json_type_null))
		return def;
	if (!json_object_is_type(v, json_type_boolean))
		return -1;
	return json_object_get_boolean(v);
}

static void set_result(int *status, char **resp, int st, char *body)
{
	*status = st;
	*resp = body;
}

static void set_error(int *status, char **resp, int st, const char *code)
{
	set_result(status, resp, st, sim_error_json(code));
}

static struct json_object *time_or_null(int64_t ms)
{
	char buf[40];

	if (!ms)
		return NULL;
	sim_format_time(ms, buf, sizeof(buf));
	return json_object_new_string(buf);
}

static const char *status_name(enum sim_dev_status st)
{
	static const char *names[] = { "accepted", "delivered", "read", "failed" };

	return names[st];
}

/* ------------------------------------------------------------------ */
/* Lifecycle                                                           */
/* ------------------------------------------------------------------ */

static void sim_notification_free(void *p)
{
	struct sim_notification *n = p;

	if (!n)
		return;
	for (size_t i = 0; i < n->n_dev; i++) {
		free(n->dev[i].device_id);
		if (n->dev[i].plaintext)
			OPENSSL_cleanse(n->dev[i].plaintext, strlen(n->dev[i].plaintext));
		free(n->dev[i].plaintext);
	}
	free(n->dev);
	free(n->message_id);
	free(n->phone);
	free(n->sender);
	free(n->reference);
	free(n->title_json);
	free(n->languages_json);
	free(n);
}

void sim_citizen_free(struct sim_citizen *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < c->n_devices; i++) {
		free(c->devices[i].id);
		free(c->devices[i].platform);
		free(c->devices[i].public_key);
		free(c->devices[i].key_alg_json);
	}
	if (c->devices)
		OPENSSL_cleanse(c->devices, c->n_devices * sizeof(*c->devices));
	free(c->devices);
	free(c->phone);
	free(c->lookup_json);
	free(c);
}

static void citizen_free_v(void *p)
{
	sim_citizen_free(p);
}

static void records_clear(struct sim *s)
{
	for (size_t i = 0; i < s->rec_cap; i++) {
		free(s->records[i].path);
		free(s->records[i].body);
		memset(&s->records[i], 0, sizeof(s->records[i]));
	}
	s->rec_seq = 0;
	for (size_t i = 0; i < s->cb_cap; i++) {
		free(s->cbs[i].notification_id);
		free(s->cbs[i].device_id);
		free(s->cbs[i].error);
		memset(&s->cbs[i], 0, sizeof(s->cbs[i]));
	}
	s->cb_seq = 0;
}

/* With s->lock held. */
static int notifications_reset(struct sim *s)
{
	for (size_t i = 0; i < s->ring_len; i++)
		sim_notification_free(s->ring[(s->ring_head + i) % s->ring_cap]);
	s->ring_head = 0;
	s->ring_len = 0;
	sim_map_fini(&s->notifs, NULL);
	sim_map_fini(&s->by_message, NULL);
	if (sim_map_init(&s->notifs, 1024) < 0 || sim_map_init(&s->by_message, 1024) < 0)
		return -ENOMEM;
	return 0;
}

int sim_init(struct sim *s, size_t max_notifications, size_t max_records)
{
	uint64_t seed = 0;

	memset(s, 0, sizeof(*s));
	pthread_mutex_init(&s->lock, NULL);
	s->ring_cap = max_notifications ? max_notifications : 1;
	s->rec_cap = max_records;
	s->cb_cap = 1000;
	s->ring = calloc(s->ring_cap, sizeof(*s->ring));
	s->records = s->rec_cap ? calloc(s->rec_cap, sizeof(*s->records)) : NULL;
	s->cbs = calloc(s->cb_cap, sizeof(*s->cbs));
	if (getrandom(&seed, sizeof(seed), 0) != (ssize_t)sizeof(seed))
		seed = (uint64_t)sim_now_ms();
	atomic_init(&s->id_counter, seed);
	if (!s->ring || (s->rec_cap && !s->records) || !s->cbs || sim_map_init(&s->citizens, 1024) < 0 ||
	    sim_map_init(&s->notifs, 1024) < 0 || sim_map_init(&s->by_message, 1024) < 0)
		return -ENOMEM;
	return 0;
}

void sim_fini(struct sim *s)
{
	if (s->ring)
		notifications_reset(s);
	sim_map_fini(&s->notifs, NULL);
	sim_map_fini(&s->by_message, NULL);
	sim_map_fini(&s->citizens, citizen_free_v);
	if (s->records || s->cbs)
		records_clear(s);
	free(s->records);
	free(s->cbs);
	free(s->ring);
	free(s->token);
	free(s->callback_url);
	if (s->callback_secret)
		OPENSSL_cleanse(s->callback_secret, strlen(s->callback_secret));
	free(s->callback_secret);
	pthread_mutex_destroy(&s->lock);
}

/* ------------------------------------------------------------------ */
/* Registry                                                            */
/* ------------------------------------------------------------------ */

static bool valid_phone(const char *p)
{
	size_t n = p ? strlen(p) : 0;

	if (n < 8 || n > 16 || p[0] != '+' || p[1] < '1' || p[1] > '9')
		return false;
	return strspn(p + 1, "0123456789") == n - 1;
}

/* A device's key_alg in the lookup answer: "X25519" unless the seed gave
 * another value, of any JSON type (null too), for tests of malformed
 * device entries. */
static struct json_object *device_key_alg(const struct sim_device *dev)
{
	if (!dev->key_alg_json)
		return json_object_new_string("X25519");
	return json_tokener_parse(dev->key_alg_json);
}

static char *citizen_lookup_json(const struct sim_citizen *c)
{
	struct json_object *o = json_object_new_object(), *devs;
	char *text;

	json_object_object_add(o, "registered", json_object_new_boolean(c->installed));
	if (c->installed) {
		json_object_object_add(o, "notifications_enabled", json_object_new_boolean(c->notifications));
		json_object_object_add(o, "language", json_object_new_string(c->language));
		devs = json_object_new_array();
		json_object_object_add(o, "devices", devs);
		for (size_t i = 0; i < c->n_devices; i++) {
			struct json_object *d = json_object_new_object();

			json_object_object_add(d, "device_id", json_object_new_string(c->devices[i].id));
			json_object_object_add(d, "platform", json_object_new_string(c->devices[i].platform));
			json_object_object_add(d, "public_key", json_object_new_string(c->devices[i].public_key));
			json_object_object_add(d, "key_alg", device_key_alg(&c->devices[i]));
			json_object_array_add(devs, d);
		}
	}
	text = sim_json_dup(o);
	json_object_put(o);
	return text;
}

/* Give dev a key: the seeded private key, the seeded public key, or a new pair. */
static int device_keys(struct sim_device *dev, struct json_object *d, char *err, size_t cap)
{
	const char *pk = jstr(d, "public_key"), *sk = jstr(d, "private_key");
	char *sk_b64 = NULL, *pk_b64 = NULL;
	unsigned char raw_pk[32];
	int rc = -EINVAL;

	if (pk && sk) {
		snprintf(err, cap, "device %s: give public_key or private_key, not both", dev->id);
		goto out;
	}
	if (pk) {
		/* Deliberately unchecked: an invalid key is what such a seed
		 * is for. The device has no private key and reads nothing. */
		dev->public_key = strdup(pk);
		rc = dev->public_key ? 0 : -ENOMEM;
		goto out;
	}
	if (sk) {
		if (smis_b64url_decode_fixed(sk, dev->sk, 32) < 0 || smis_hpke_public_key(dev->sk, raw_pk) < 0 ||
		    smis_b64url_encode(raw_pk, 32, &dev->public_key) < 0) {
			snprintf(err, cap, "device %s: private_key is not a base64url X25519 key", dev->id);
			goto out;
		}
		dev->has_sk = true;
		rc = 0;
		goto out;
	}
	rc = smis_e2e_keygen_b64url(&sk_b64, &pk_b64);
	if (rc < 0 || smis_b64url_decode_fixed(sk_b64, dev->sk, 32) < 0) {
		snprintf(err, cap, "device %s: key generation failed", dev->id);
		rc = rc < 0 ? rc : -EIO;
		goto out;
	}
	dev->public_key = pk_b64;
	pk_b64 = NULL;
	dev->has_sk = true;
	rc = 0;
out:
	if (sk_b64)
		OPENSSL_cleanse(sk_b64, strlen(sk_b64));
	free(sk_b64);
	free(pk_b64);
	return rc;
}

/* Keep the seed's key_alg as it was written, whatever its type. */
static int device_seed_key_alg(struct sim_device *dev, struct json_object *d)
{
	struct json_object *v;

	if (!json_object_object_get_ex(d, "key_alg", &v))
		return 0;
	dev->key_alg_json = strdup(json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN));
	return dev->key_alg_json ? 0 : -ENOMEM;
}

/* Printable ASCII without space, as a device_id must be. */
static bool printable_ascii(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x21 || (unsigned char)*s > 0x7e)
			return false;
	return true;
}

int sim_citizen_from_json(struct json_object *o, struct sim_citizen **out, char *err, size_t cap)
{
	struct sim_citizen *c = calloc(1, sizeof(*c));
	struct json_object *devs = NULL;
	const char *phone = jstr(o, "phone"), *lang = jstr(o, "language");
	int inst = jbool(o, "installed", 1), notif = jbool(o, "notifications", 1);
	size_t n = 0;
	int rc = -EINVAL;

	*out = NULL;
	if (!c) {
		rc = -ENOMEM;
		goto out;
	}
	if (!json_object_is_type(o, json_type_object) || !valid_phone(phone)) {
		snprintf(err, cap, "a citizen needs \"phone\" in E.164 form (+ and 7 to 15 digits)");
		goto out;
	}
	if (inst < 0 || notif < 0) {
		snprintf(err, cap, "%s: \"installed\" and \"notifications\" are booleans", phone);
		goto out;
	}
	if (lang && (strlen(lang) < 2 || strlen(lang) >= sizeof(c->language))) {
		snprintf(err, cap, "%s: bad \"language\"", phone);
		goto out;
	}
	c->installed = inst;
	c->notifications = notif;
	snprintf(c->language, sizeof(c->language), "%s", lang ? lang : "nl");
	c->phone = strdup(phone);
	if (json_object_object_get_ex(o, "devices", &devs)) {
		if (!json_object_is_type(devs, json_type_array)) {
			snprintf(err, cap, "%s: \"devices\" must be an array", phone);
			goto out;
		}
		n = json_object_array_length(devs);
	}
	c->devices = calloc(n ? n : 1, sizeof(*c->devices));
	if (!c->phone || !c->devices) {
		rc = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		struct json_object *d = json_object_array_get_idx(devs, i);
		const char *id = jstr(d, "device_id"), *platform = jstr(d, "platform");
		struct sim_device *dev = &c->devices[c->n_devices];

		/* docs/govapp-protocol.md section 1: what SMIS takes. */
		if (!id || !id[0] || strlen(id) > 63 || !printable_ascii(id)) {
			snprintf(err, cap, "%s: every device needs a \"device_id\" of 1 to 63 printable ASCII characters",
				 phone);
			goto out;
		}
		for (size_t j = 0; j < c->n_devices; j++)
			if (strcmp(c->devices[j].id, id) == 0) {
				snprintf(err, cap, "%s: device %s appears twice", phone, id);
				goto out;
			}
		dev->id = strdup(id);
		dev->platform = strdup(platform ? platform : "android");
		c->n_devices++;
		if (!dev->id || !dev->platform) {
			rc = -ENOMEM;
			goto out;
		}
		rc = device_keys(dev, d, err, cap);
		if (rc < 0)
			goto out;
		rc = device_seed_key_alg(dev, d);
		if (rc < 0)
			goto out;
	}
	c->lookup_json = citizen_lookup_json(c);
	if (!c->lookup_json) {
		rc = -ENOMEM;
		goto out;
	}
	*out = c;
	c = NULL;
	rc = 0;
out:
	if (rc == -ENOMEM)
		snprintf(err, cap, "out of memory");
	sim_citizen_free(c);
	return rc;
}

int sim_citizen_put(struct sim *s, struct sim_citizen *c)
{
	void *old = NULL;
	int rc;

	pthread_mutex_lock(&s->lock);
	rc = sim_map_put(&s->citizens, c->phone, c, &old);
	pthread_mutex_unlock(&s->lock);
	if (rc < 0)
		sim_citizen_free(c);
	sim_citizen_free(old);
	return rc;
}

int sim_load_seed(struct sim *s, const char *path, char *err, size_t cap)
{
	struct json_object *o = json_object_from_file(path), *list;
	size_t n;
	int rc = -EINVAL;

	if (!o) {
		snprintf(err, cap, "%s: not readable JSON (%s)", path, json_util_get_last_err());
		goto out;
	}
	if (!json_object_object_get_ex(o, "citizens", &list) || !json_object_is_type(list, json_type_array)) {
		snprintf(err, cap, "%s: expected {\"citizens\":[...]}", path);
		goto out;
	}
	n = json_object_array_length(list);
	for (size_t i = 0; i < n; i++) {
		struct sim_citizen *c;
		char why[200];

		rc = sim_citizen_from_json(json_object_array_get_idx(list, i), &c, why, sizeof(why));
		if (rc < 0) {
			snprintf(err, cap, "%s: citizen #%zu: %s", path, i + 1, why);
			goto out;
		}
		rc = sim_citizen_put(s, c);
		if (rc < 0) {
			snprintf(err, cap, "out of memory");
			goto out;
		}
	}
	rc = (int)n;
out:
	json_object_put(o);
	return rc;
}

/* ------------------------------------------------------------------ */
/* API                                                                 */
/* ------------------------------------------------------------------ */

void sim_api_lookup(struct sim *s, const char *body, size_t len, int *status, char **resp)
{
	struct json_object *o = sim_json_parse(body, len);
	const char *phone = jstr(o, "phone");
	struct sim_citizen *c;

	atomic_fetch_add(&s->stats.lookups, 1);
	if (!o || !json_object_is_type(o, json_type_object)) {
		set_error(status, resp, 400, "bad_json");
		goto out;
	}
	if (!phone) {
		set_error(status, resp, 422, "invalid_request");
		goto out;
	}
	pthread_mutex_lock(&s->lock);
	c = sim_map_get(&s->citizens, phone);
	set_result(status, resp, 200, strdup(c ? c->lookup_json : "{\"registered\":false}"));
	pthread_mutex_unlock(&s->lock);
out:
	json_object_put(o);
}

/* A notification id like the plugin's message ids: prefix + 26 characters. */
static void new_notification_id(struct sim *s, char *buf, size_t cap)
{
	static const char b32[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
	uint64_t t = (uint64_t)sim_now_ms();
	uint64_t c = atomic_fetch_add(&s->id_counter, 1);
	uint64_t x = c * 0x9E3779B97F4A7C15ULL;
	char id[27];

	x ^= x >> 31;
	for (int i = 9; i >= 0; i--, t >>= 5)
		id[i] = b32[t & 31];
	for (int i = 10; i < 23; i++, x >>= 5)
		id[i] = b32[x & 31];
	for (int i = 25; i >= 23; i--, c >>= 5)
		id[i] = b32[c & 31];
	id[26] = '\0';
	snprintf(buf, cap, "gn_%s", id);
}

/* The 202 body (also the answer to a repeated message_id). */
static char *accepted_json(const struct sim_notification *n)
{
	struct json_object *o = json_object_new_object(), *devs = json_object_new_array();
	char *text;

	json_object_object_add(o, "notification_id", json_object_new_string(n->id));
	json_object_object_add(o, "message_id", json_object_new_string(n->message_id));
	json_object_object_add(o, "devices", devs);
	for (size_t i = 0; i < n->n_dev; i++) {
		struct json_object *d = json_object_new_object();

		json_object_object_add(d, "device_id", json_object_new_string(n->dev[i].device_id));
		json_object_object_add(d, "status", json_object_new_string(status_name(n->dev[i].status)));
		json_object_array_add(devs, d);
	}
	text = sim_json_dup(o);
	json_object_put(o);
	return text;
}

/* With s->lock held: store n, evicting the oldest notification when full. */
static int store_notification(struct sim *s, struct sim_notification *n)
{
	if (s->ring_len == s->ring_cap) {
		struct sim_notification *old = s->ring[s->ring_head];

		sim_map_del(&s->notifs, old->id);
		if (sim_map_get(&s->by_message, old->message_id) == old)
			sim_map_del(&s->by_message, old->message_id);
		sim_notification_free(old);
		s->ring_head = (s->ring_head + 1) % s->ring_cap;
		s->ring_len--;
	}
	if (sim_map_put(&s->notifs, n->id, n, NULL) < 0)
		return -ENOMEM;
	if (sim_map_put(&s->by_message, n->message_id, n, NULL) < 0) {
		sim_map_del(&s->notifs, n->id);
		return -ENOMEM;
	}
	s->ring[(s->ring_head + s->ring_len) % s->ring_cap] = n;
	s->ring_len++;
	return 0;
}

struct envelope_work {
	const char *device_id;
	const char *enc;
	const char *ct;
	unsigned char sk[32];
	bool has_sk;
};

/* Open one envelope as the device would, and check what it holds. */
static void open_envelope(const char *message_id, struct envelope_work *w, struct sim_delivery *d)
{
	unsigned char *pt = NULL;
	size_t pt_len = 0;
	struct json_object *o = NULL, *v, *content;
	int r;

	d->decrypt_ok = false;
	if (!w->has_sk) {
		d->reason = "no_private_key";
		goto out;
	}
	r = smis_e2e_open(message_id, w->device_id, w->sk, w->enc, w->ct, &pt, &pt_len);
	if (r < 0) {
		d->reason = r == -EBADMSG ? "authentication_failed" : "malformed_envelope";
		goto out;
	}
	o = sim_json_parse((const char *)pt, pt_len);
	/* `v` is the number 1 (docs/e2e-format.md): an app refuses "1", 1.0
	 * or true, which json_object_get_int() would all read as 1. */
	if (!o || !json_object_object_get_ex(o, "v", &v) || !json_object_is_type(v, json_type_int) ||
	    json_object_get_int64(v) != 1 ||
	    !jstr(o, "message_id") || strcmp(jstr(o, "message_id"), message_id) != 0 ||
	    !json_object_object_get_ex(o, "content", &content) ||
	    !json_object_is_type(content, json_type_object)) {
		d->reason = "bad_plaintext";
		goto out;
	}
	d->plaintext = strdup((const char *)pt);
	d->decrypt_ok = d->plaintext != NULL;
	d->reason = d->plaintext ? NULL : "out_of_memory";
out:
	if (pt) {
		OPENSSL_cleanse(pt, pt_len);
		free(pt);
	}
	json_object_put(o);
}

/* Check the shape of a send; returns the error code or NULL. */
static const char *check_send(struct json_object *o, struct json_object **title,
			      struct json_object **langs, struct json_object **envs)
{
	struct json_object *ref;
	size_t n;

	if (!jstr(o, "message_id") || !jstr(o, "message_id")[0] || strlen(jstr(o, "message_id")) > 256 ||
	    !jstr(o, "phone") || !jstr(o, "sender") ||
	    !json_object_object_get_ex(o, "title", title) || !json_object_is_type(*title, json_type_object) ||
	    !json_object_object_get_ex(o, "languages", langs) ||
	    !json_object_is_type(*langs, json_type_array) || json_object_array_length(*langs) == 0)
		return "invalid_request";
	if (json_object_object_get_ex(o, "reference", &ref) && ref &&
	    !json_object_is_type(ref, json_type_string))
		return "invalid_request";
	n = json_object_array_length(*langs);
	for (size_t i = 0; i < n; i++) {
		struct json_object *l = json_object_array_get_idx(*langs, i);

		if (!json_object_is_type(l, json_type_string) || !jstr(*title, json_object_get_string(l)))
			return "invalid_title";
	}
	if (!jstr(o, "encryption") || strcmp(jstr(o, "encryption"), SMIS_E2E_SUITE) != 0)
		return "unsupported_encryption";
	if (!json_object_object_get_ex(o, "envelopes", envs) || !json_object_is_type(*envs, json_type_array) ||
	    json_object_array_length(*envs) == 0)
		return "invalid_envelope";
	n = json_object_array_length(*envs);
	for (size_t i = 0; i < n; i++) {
		struct json_object *e = json_object_array_get_idx(*envs, i);

		if (!jstr(e, "device_id") || !jstr(e, "enc") || !jstr(e, "ciphertext"))
			return "invalid_envelope";
		for (size_t j = 0; j < i; j++)
			if (strcmp(jstr(json_object_array_get_idx(*envs, j), "device_id"), jstr(e, "device_id")) == 0)
				return "duplicate_device";
	}
	return NULL;
}

void sim_api_send(struct sim *s, const char *body, size_t len, int *status, char **resp)
{
	struct json_object *o = sim_json_parse(body, len), *title = NULL, *langs = NULL, *envs = NULL;
	struct envelope_work *w = NULL;
	struct sim_notification *n = NULL, *prev;
	struct sim_citizen *c;
	const char *why, *message_id, *phone;
	size_t n_env = 0, ok = 0;

	atomic_fetch_add(&s->stats.sends, 1);
	*resp = NULL;
	if (!o || !json_object_is_type(o, json_type_object)) {
		set_error(status, resp, 400, "bad_json");
		goto out;
	}
	why = check_send(o, &title, &langs, &envs);
	if (why) {
		set_error(status, resp, 422, why);
		goto out;
	}
	message_id = jstr(o, "message_id");
	phone = jstr(o, "phone");
	n_env = json_object_array_length(envs);
	w = calloc(n_env, sizeof(*w));
	if (!w) {
		set_error(status, resp, 500, "out_of_memory");
		goto out;
	}

	/* Under the lock: who the citizen is and which keys the envelopes need. */
	pthread_mutex_lock(&s->lock);
	c = sim_map_get(&s->citizens, phone);
	prev = sim_map_get(&s->by_message, message_id);
	if (!c || !c->installed) {
		set_error(status, resp, 404, "not_registered");
	} else if (!c->notifications) {
		set_error(status, resp, 409, "notifications_disabled");
	} else if (prev && strcmp(prev->phone, phone) != 0) {
		set_error(status, resp, 422, "duplicate_message_id");
	} else if (prev) {
		/* Idempotent on message_id: a retry after a lost answer must
		 * not notify the citizen twice. */
		atomic_fetch_add(&s->stats.duplicates, 1);
		set_result(status, resp, 202, accepted_json(prev));
	} else {
		for (size_t i = 0; i < n_env && !*resp; i++) {
			struct json_object *e = json_object_array_get_idx(envs, i);
			size_t j;

			w[i].device_id = jstr(e, "device_id");
			w[i].enc = jstr(e, "enc");
			w[i].ct = jstr(e, "ciphertext");
			for (j = 0; j < c->n_devices && strcmp(c->devices[j].id, w[i].device_id) != 0; j++)
				;
			if (j == c->n_devices) {
				set_error(status, resp, 422, "unknown_device");
				break;
			}
			w[i].has_sk = c->devices[j].has_sk;
			memcpy(w[i].sk, c->devices[j].sk, 32);
		}
	}
	pthread_mutex_unlock(&s->lock);
	if (*resp)
		goto out;

	/* Outside the lock: the devices open their envelopes. */
	n = calloc(1, sizeof(*n));
	if (!n || !(n->dev = calloc(n_env, sizeof(*n->dev))))
		goto out_nomem;
	n->n_dev = n_env;
	n->message_id = strdup(message_id);
	n->phone = strdup(phone);
	n->sender = strdup(jstr(o, "sender"));
	n->reference = jstr(o, "reference") ? strdup(jstr(o, "reference")) : NULL;
	n->title_json = sim_json_dup(title);
	n->languages_json = sim_json_dup(langs);
	n->created_at = sim_now_ms();
	if (!n->message_id || !n->phone || !n->sender || !n->title_json || !n->languages_json)
		goto out_nomem;
	for (size_t i = 0; i < n_env; i++) {
		struct sim_delivery *d = &n->dev[i];

		d->device_id = strdup(w[i].device_id);
		if (!d->device_id)
			goto out_nomem;
		open_envelope(message_id, &w[i], d);
		if (d->decrypt_ok) {
			ok++;
		} else {
			d->status = SIM_FAILED;
			d->failed_at = n->created_at;
		}
	}
	atomic_fetch_add(&s->stats.envelopes, n_env);
	atomic_fetch_add(&s->stats.decrypt_ok, ok);
	atomic_fetch_add(&s->stats.decrypt_failed, n_env - ok);

	pthread_mutex_lock(&s->lock);
	prev = sim_map_get(&s->by_message, message_id);
	if (prev) {
		/* The same message_id won a race with this request. */
		atomic_fetch_add(&s->stats.duplicates, 1);
		set_result(status, resp, 202, accepted_json(prev));
	} else {
		new_notification_id(s, n->id, sizeof(n->id));
		if (store_notification(s, n) == 0) {
			atomic_fetch_add(&s->stats.sent, 1);
			set_result(status, resp, 202, accepted_json(n));
			n = NULL;
		} else {
			set_error(status, resp, 500, "out_of_memory");
		}
	}
	pthread_mutex_unlock(&s->lock);
	goto out;
out_nomem:
	set_error(status, resp, 500, "out_of_memory");
out:
	if (w) {
		OPENSSL_cleanse(w, n_env * sizeof(*w));
		free(w);
	}
	sim_notification_free(n);
	json_object_put(o);
}

void sim_api_status(struct sim *s, const char *id, int *status, char **resp)
{
	struct sim_notification *n;
	struct json_object *o, *devs;

	atomic_fetch_add(&s->stats.status_polls, 1);
	pthread_mutex_lock(&s->lock);
	n = sim_map_get(&s->notifs, id);
	if (!n) {
		pthread_mutex_unlock(&s->lock);
		set_error(status, resp, 404, "not_found");
		return;
	}
	o = json_object_new_object();
	devs = json_object_new_array();
	json_object_object_add(o, "notification_id", json_object_new_string(n->id));
	json_object_object_add(o, "message_id", json_object_new_string(n->message_id));
	json_object_object_add(o, "devices", devs);
	for (size_t i = 0; i < n->n_dev; i++) {
		struct sim_delivery *d = &n->dev[i];
		struct json_object *j = json_object_new_object();

		json_object_object_add(j, "device_id", json_object_new_string(d->device_id));
		json_object_object_add(j, "status", json_object_new_string(status_name(d->status)));
		json_object_object_add(j, "delivered_at", time_or_null(d->delivered_at));
		json_object_object_add(j, "read_at", time_or_null(d->read_at));
		if (d->status == SIM_FAILED) {
			json_object_object_add(j, "failed_at", time_or_null(d->failed_at));
			json_object_object_add(j, "reason", json_object_new_string("undecryptable"));
		}
		json_object_array_add(devs, j);
	}
	pthread_mutex_unlock(&s->lock);
	set_result(status, resp, 200, sim_json_dup(o));
	json_object_put(o);
}

/* ------------------------------------------------------------------ */
/* Records and faults                                                  */
/* ------------------------------------------------------------------ */

void sim_record(struct sim *s, const char *method, const char *path, int status, const char *body,
		size_t len)
{
	struct sim_record *r;
	char *p, *b = NULL;

	if (!s->rec_cap)
		return;
	p = strdup(path);
	if (len) {
		b = malloc(len + 1);
		if (b) {
			memcpy(b, body, len);
			b[len] = '\0';
		}
	}
	pthread_mutex_lock(&s->lock);
	r = &s->records[s->rec_seq % s->rec_cap]; /* seq q lives at (q - 1) % cap */
	free(r->path);
	free(r->body);
	r->seq = ++s->rec_seq;
	r->at = sim_now_ms();
	snprintf(r->method, sizeof(r->method), "%s", method);
	r->path = p;
	r->status = status;
	r->body = b;
	pthread_mutex_unlock(&s->lock);
}

bool sim_fault_take(struct sim *s, enum sim_endpoint ep, struct sim_fault *f)
{
	bool hit = false;
	const char *p;

	if (!atomic_load_explicit(&s->fault_active, memory_order_relaxed))
		return false;
	pthread_mutex_lock(&s->lock);
	p = s->fault.path;
	if (s->fault.active &&
	    (!p[0] || (strcmp(p, "lookup") == 0 && ep == SIM_EP_LOOKUP) ||
	     (strcmp(p, "notifications") == 0 && (ep == SIM_EP_SEND || ep == SIM_EP_STATUS)) ||
	     (strcmp(p, "send") == 0 && ep == SIM_EP_SEND) ||
	     (strcmp(p, "status") == 0 && ep == SIM_EP_STATUS))) {
		hit = true;
		*f = s->fault;
		if (s->fault.count > 0 && --s->fault.count == 0) {
			s->fault.active = false;
			atomic_store(&s->fault_active, false);
		}
	}
	pthread_mutex_unlock(&s->lock);
	if (hit)
		atomic_fetch_add(&s->stats.faulted, 1);
	return hit;
}

static struct json_object *fault_json(const struct sim_fault *f)
{
	struct json_object *o = json_object_new_object();

	json_object_object_add(o, "active", json_object_new_boolean(f->active));
	json_object_object_add(o, "latency_ms", json_object_new_int64(f->latency_ms));
	json_object_object_add(o, "http_status", json_object_new_int64(f->http_status));
	json_object_object_add(o, "timeout", json_object_new_boolean(f->timeout));
	json_object_object_add(o, "timeout_ms", json_object_new_int64(f->timeout_ms));
	json_object_object_add(o, "garbage", json_object_new_boolean(f->garbage));
	json_object_object_add(o, "count", f->count < 0 ? NULL : json_object_new_int64(f->count));
	json_object_object_add(o, "path", f->path[0] ? json_object_new_string(f->path) : NULL);
	return o;
}

/* Read an optional integer member within [min, max]; false if invalid. */
static bool jint(struct json_object *o, const char *key, long min, long max, long *v)
{
	struct json_object *x;
	int64_t i;

	if (!json_object_object_get_ex(o, key, &x) || json_object_is_type(x, json_type_null))
		return true;
	if (!json_object_is_type(x, json_type_int))
		return false;
	i = json_object_get_int64(x);
	if (i < min || i > max)
		return false;
	*v = (long)i;
	return true;
}

void sim_ctl_faults_set(struct sim *s, const char *body, size_t len, int *status, char **resp)
{
	static const char *const keys[] = { "latency_ms", "http_status", "timeout", "timeout_ms",
					     "garbage", "count", "path", NULL };
	struct json_object *o = len ? sim_json_parse(body, len) : json_object_new_object();
	struct sim_fault f = { .count = -1, .timeout_ms = s->timeout_hold_ms };
	const char *path = jstr(o, "path");
	struct json_object *pv, *out;
	int timeout, garbage;

	if (!o || !json_object_is_type(o, json_type_object)) {
		set_error(status, resp, 400, "bad_json");
		goto out;
	}
	/* A misspelt key would silently set no fault: refuse it. */
	json_object_object_foreach(o, key, val) {
		size_t i;

		(void)val;
		for (i = 0; keys[i] && strcmp(keys[i], key) != 0; i++)
			;
		if (!keys[i]) {
			set_error(status, resp, 400, "unknown_key");
			goto out;
		}
	}
	timeout = jbool(o, "timeout", 0);
	garbage = jbool(o, "garbage", 0);
	if (timeout < 0 || garbage < 0 || !jint(o, "latency_ms", 0, 600000, &f.latency_ms) ||
	    !jint(o, "http_status", 0, 599, &f.http_status) || (f.http_status && f.http_status < 100) ||
	    !jint(o, "timeout_ms", 0, 600000, &f.timeout_ms) || !jint(o, "count", 1, 1000000000, &f.count) ||
	    (json_object_object_get_ex(o, "path", &pv) && pv && !path) ||
	    (path && strcmp(path, "lookup") != 0 && strcmp(path, "notifications") != 0 &&
	     strcmp(path, "send") != 0 && strcmp(path, "status") != 0)) {
		set_error(status, resp, 422, "invalid_fault");
		goto out;
	}
	f.timeout = timeout;
	f.garbage = garbage;
	snprintf(f.path, sizeof(f.path), "%s", path ? path : "");
	f.active = f.latency_ms > 0 || f.http_status > 0 || f.timeout || f.garbage;
	if (!f.active)
		f.count = -1;
	pthread_mutex_lock(&s->lock);
	s->fault = f;
	atomic_store(&s->fault_active, f.active);
	pthread_mutex_unlock(&s->lock);
	out = fault_json(&f);
	set_result(status, resp, 200, sim_json_dup(out));
	json_object_put(out);
	sim_log(s, "fault %s: latency_ms=%ld http_status=%ld timeout=%d garbage=%d count=%ld path=%s",
		f.active ? "set" : "cleared", f.latency_ms, f.http_status, f.timeout, f.garbage, f.count,
		f.path[0] ? f.path : "*");
out:
	json_object_put(o);
}

void sim_ctl_faults_get(struct sim *s, int *status, char **resp)
{
	struct sim_fault f;
	struct json_object *o;

	pthread_mutex_lock(&s->lock);
	f = s->fault;
	pthread_mutex_unlock(&s->lock);
	o = fault_json(&f);
	set_result(status, resp, 200, sim_json_dup(o));
	json_object_put(o);
}

/* ------------------------------------------------------------------ */
/* Control                                                             */
/* ------------------------------------------------------------------ */

void sim_ctl_reset(struct sim *s, const char *body, size_t len, int *status, char **resp)
{
	struct json_object *o = len ? sim_json_parse(body, len) : json_object_new_object();
	int registry = o ? jbool(o, "registry", 0) : -1;
	int rc;

	if (!o || registry < 0) {
		set_error(status, resp, 400, "bad_json");
		goto out;
	}
	pthread_mutex_lock(&s->lock);
	rc = notifications_reset(s);
	records_clear(s);
	memset(&s->fault, 0, sizeof(s->fault));
	atomic_store(&s->fault_active, false);
	if (registry) {
		sim_map_fini(&s->citizens, citizen_free_v);
		if (sim_map_init(&s->citizens, 1024) < 0)
			rc = -ENOMEM;
	}
	atomic_store(&s->stats.requests, 0);
	atomic_store(&s->stats.sent, 0);
	atomic_store(&s->stats.lookups, 0);
	atomic_store(&s->stats.sends, 0);
	atomic_store(&s->stats.status_polls, 0);
	atomic_store(&s->stats.unauthorized, 0);
	atomic_store(&s->stats.rejected, 0);
	atomic_store(&s->stats.duplicates, 0);
	atomic_store(&s->stats.faulted, 0);
	atomic_store(&s->stats.envelopes, 0);
	atomic_store(&s->stats.decrypt_ok, 0);
	atomic_store(&s->stats.decrypt_failed, 0);
	atomic_store(&s->stats.callbacks_ok, 0);
	atomic_store(&s->stats.callbacks_failed, 0);
	pthread_mutex_unlock(&s->lock);
	if (rc < 0)
		set_error(status, resp, 500, "out_of_memory");
	else
		set_result(status, resp, 200, strdup(registry ? "{\"ok\":true,\"registry\":true}" :
						     "{\"ok\":true,\"registry\":false}"));
	sim_log(s, "reset%s", registry ? " (registry too)" : "");
out:
	json_object_put(o);
}

void sim_ctl_citizen(struct sim *s, const char *body, size_t len, int *status, char **resp)
{
	struct json_object *o = sim_json_parse(body, len), *out = NULL, *devs;
	struct sim_citizen *c = NULL;
	char why[200];

	if (!o) {
		set_error(status, resp, 400, "bad_json");
		goto out;
	}
	if (sim_citizen_from_json(o, &c, why, sizeof(why)) < 0) {
		out = json_object_new_object();
		json_object_object_add(out, "error", json_object_new_string("invalid_citizen"));
		json_object_object_add(out, "detail", json_object_new_string(why));
		set_result(status, resp, 422, sim_json_dup(out));
		goto out;
	}
	/* Answer with the public keys: tests may want them. */
	out = json_object_new_object();
	json_object_object_add(out, "phone", json_object_new_string(c->phone));
	json_object_object_add(out, "installed", json_object_new_boolean(c->installed));
	json_object_object_add(out, "notifications", json_object_new_boolean(c->notifications));
	json_object_object_add(out, "language", json_object_new_string(c->language));
	devs = json_object_new_array();
	json_object_object_add(out, "devices", devs);
	for (size_t i = 0; i < c->n_devices; i++) {
		struct json_object *d = json_object_new_object();

		json_object_object_add(d, "device_id", json_object_new_string(c->devices[i].id));
		json_object_object_add(d, "platform", json_object_new_string(c->devices[i].platform));
		json_object_object_add(d, "public_key", json_object_new_string(c->devices[i].public_key));
		json_object_object_add(d, "has_private_key", json_object_new_boolean(c->devices[i].has_sk));
		json_object_array_add(devs, d);
	}
	if (sim_citizen_put(s, c) < 0)
		set_error(status, resp, 500, "out_of_memory");
	else
		set_result(status, resp, 200, sim_json_dup(out));
out:
	json_object_put(out);
	json_object_put(o);
}

/* First seq to list: the newest `limit` of those after `since` still kept. */
static uint64_t first_seq(uint64_t last, size_t cap, size_t limit, uint64_t since)
{
	uint64_t first = last > cap ? last - cap + 1 : 1;

	if (since + 1 > first)
		first = since + 1;
	if (limit && last >= limit && last - limit + 1 > first)
		first = last - limit + 1;
	return first;
}

void sim_ctl_requests(struct sim *s, size_t limit, uint64_t since, int *status, char **resp)
{
	struct json_object *list = json_object_new_array();

	pthread_mutex_lock(&s->lock);
	for (uint64_t q = first_seq(s->rec_seq, s->rec_cap, limit, since); s->rec_cap && q <= s->rec_seq; q++) {
		const struct sim_record *r = &s->records[(q - 1) % s->rec_cap];
		struct json_object *e = json_object_new_object(), *b = NULL;

		json_object_object_add(e, "seq", json_object_new_int64((int64_t)r->seq));
		json_object_object_add(e, "at_ms", json_object_new_int64(r->at));
		json_object_object_add(e, "method", json_object_new_string(r->method));
		json_object_object_add(e, "path", json_object_new_string(r->path ? r->path : ""));
		json_object_object_add(e, "status", json_object_new_int(r->status));
		/* The body exactly as it came: JSON when it parses, else text. */
		if (r->body) {
			b = sim_json_parse(r->body, strlen(r->body));
			if (!b)
				b = json_object_new_string(r->body);
		}
		json_object_object_add(e, "body", b);
		json_object_array_add(list, e);
	}
	pthread_mutex_unlock(&s->lock);
	set_result(status, resp, 200, sim_json_dup(list));
	json_object_put(list);
}

void sim_ctl_inbox(struct sim *s, const char *phone, int *status, char **resp)
{
	struct json_object *o, *list;

	if (!phone || !phone[0]) {
		set_error(status, resp, 400, "phone_required");
		return;
	}
	o = json_object_new_object();
	list = json_object_new_array();
	json_object_object_add(o, "phone", json_object_new_string(phone));
	pthread_mutex_lock(&s->lock);
	{
		struct sim_citizen *c = sim_map_get(&s->citizens, phone);

		json_object_object_add(o, "registered", json_object_new_boolean(c && c->installed));
	}
	json_object_object_add(o, "messages", list);
	for (size_t i = 0; i < s->ring_len; i++) {
		const struct sim_notification *n = s->ring[(s->ring_head + i) % s->ring_cap];

		if (strcmp(n->phone, phone) != 0)
			continue;
		for (size_t k = 0; k < n->n_dev; k++) {
			const struct sim_delivery *d = &n->dev[k];
			struct json_object *e = json_object_new_object();
			struct json_object *content = NULL, *pt;
			char when[40];

			sim_format_time(n->created_at, when, sizeof(when));
			json_object_object_add(e, "notification_id", json_object_new_string(n->id));
			json_object_object_add(e, "message_id", json_object_new_string(n->message_id));
			json_object_object_add(e, "device_id", json_object_new_string(d->device_id));
			json_object_object_add(e, "sender", json_object_new_string(n->sender));
			json_object_object_add(e, "reference", n->reference ? json_object_new_string(n->reference) : NULL);
			json_object_object_add(e, "received_at", json_object_new_string(when));
			json_object_object_add(e, "title", json_tokener_parse(n->title_json));
			json_object_object_add(e, "languages", json_tokener_parse(n->languages_json));
			json_object_object_add(e, "status", json_object_new_string(status_name(d->status)));
			json_object_object_add(e, "delivered_at", time_or_null(d->delivered_at));
			json_object_object_add(e, "read_at", time_or_null(d->read_at));
			json_object_object_add(e, "decrypt_ok", json_object_new_boolean(d->decrypt_ok));
			json_object_object_add(e, "decrypt_error", d->reason ? json_object_new_string(d->reason) : NULL);
			pt = d->plaintext ? json_tokener_parse(d->plaintext) : NULL;
			if (pt && json_object_object_get_ex(pt, "content", &content))
				json_object_get(content);
			json_object_put(pt);
			json_object_object_add(e, "content", content);
			json_object_array_add(list, e);
		}
	}
	pthread_mutex_unlock(&s->lock);
	set_result(status, resp, 200, sim_json_dup(o));
	json_object_put(o);
}

void sim_ctl_mark(struct sim *s, const char *body, size_t len, int *status, char **resp)
{
	struct json_object *o = sim_json_parse(body, len), *cb = NULL, *out = NULL;
	const char *nid = jstr(o, "notification_id"), *dev = jstr(o, "device_id"), *st = jstr(o, "status");
	struct sim_notification *n;
	struct sim_delivery *d = NULL;
	char *cb_body = NULL, when[40];
	int64_t now = sim_now_ms();
	bool read;

	if (!o || !json_object_is_type(o, json_type_object)) {
		set_error(status, resp, 400, "bad_json");
		goto out;
	}
	if (!nid || !dev || !st || (strcmp(st, "delivered") != 0 && strcmp(st, "read") != 0)) {
		set_error(status, resp, 422, "invalid_mark");
		goto out;
	}
	read = strcmp(st, "read") == 0;
	sim_format_time(now, when, sizeof(when));
	pthread_mutex_lock(&s->lock);
	n = sim_map_get(&s->notifs, nid);
	for (size_t i = 0; n && i < n->n_dev && !d; i++)
		if (strcmp(n->dev[i].device_id, dev) == 0)
			d = &n->dev[i];
	if (!n || !d) {
		set_error(status, resp, 404, n ? "unknown_device" : "not_found");
	} else if (d->status == SIM_FAILED) {
		/* A device that could not open the message cannot show it. */
		set_error(status, resp, 409, "undecryptable");
	} else {
		/* Statuses only move forward: "delivered" on a device that read
		 * it changes nothing, and a callback for it would tell SMIS the
		 * message went back to merely delivered. */
		enum sim_dev_status to = read ? SIM_READ : SIM_DELIVERED;

		if (d->status < to) {
			if (!d->delivered_at)
				d->delivered_at = now;
			if (read)
				d->read_at = now;
			d->status = to;
			cb = json_object_new_object();
			json_object_object_add(cb, "notification_id", json_object_new_string(n->id));
			json_object_object_add(cb, "message_id", json_object_new_string(n->message_id));
			json_object_object_add(cb, "device_id", json_object_new_string(d->device_id));
			json_object_object_add(cb, "status", json_object_new_string(st));
			json_object_object_add(cb, "at", json_object_new_string(when));
		}
		out = json_object_new_object();
		json_object_object_add(out, "ok", json_object_new_boolean(1));
		json_object_object_add(out, "notification_id", json_object_new_string(n->id));
		json_object_object_add(out, "device_id", json_object_new_string(d->device_id));
		json_object_object_add(out, "status", json_object_new_string(status_name(d->status)));
		json_object_object_add(out, "callback",
				       json_object_new_string(s->callback_url && cb ? "queued" : "none"));
	}
	pthread_mutex_unlock(&s->lock);
	if (!out)
		goto out;
	set_result(status, resp, 200, sim_json_dup(out));
	if (s->callback_url && cb) {
		cb_body = sim_json_dup(cb);
		if (cb_body)
			sim_callback_enqueue(s, nid, dev, st, cb_body);
	}
out:
	json_object_put(cb);
	json_object_put(out);
	json_object_put(o);
}

void sim_callback_record(struct sim *s, const char *notification_id, const char *device_id,
			 const char *status, long http_status, const char *error)
{
	struct sim_callback_rec *r;

	pthread_mutex_lock(&s->lock);
	r = &s->cbs[s->cb_seq % s->cb_cap];
	free(r->notification_id);
	free(r->device_id);
	free(r->error);
	r->seq = ++s->cb_seq;
	r->at = sim_now_ms();
	r->notification_id = strdup(notification_id);
	r->device_id = strdup(device_id);
	snprintf(r->status, sizeof(r->status), "%s", status);
	r->http_status = http_status;
	r->error = error ? strdup(error) : NULL;
	pthread_mutex_unlock(&s->lock);
	atomic_fetch_add(http_status >= 200 && http_status <= 299 ? &s->stats.callbacks_ok :
								     &s->stats.callbacks_failed, 1);
}

void sim_ctl_callbacks(struct sim *s, size_t limit, uint64_t since, int *status, char **resp)
{
	struct json_object *list = json_object_new_array();

	pthread_mutex_lock(&s->lock);
	for (uint64_t q = first_seq(s->cb_seq, s->cb_cap, limit, since); q <= s->cb_seq; q++) {
		const struct sim_callback_rec *r = &s->cbs[(q - 1) % s->cb_cap];
		struct json_object *e = json_object_new_object();

		json_object_object_add(e, "seq", json_object_new_int64((int64_t)r->seq));
		json_object_object_add(e, "at_ms", json_object_new_int64(r->at));
		json_object_object_add(e, "url", json_object_new_string(s->callback_url ? s->callback_url : ""));
		json_object_object_add(e, "notification_id", json_object_new_string(r->notification_id ? r->notification_id : ""));
		json_object_object_add(e, "device_id", json_object_new_string(r->device_id ? r->device_id : ""));
		json_object_object_add(e, "status", json_object_new_string(r->status));
		json_object_object_add(e, "http_status", json_object_new_int64(r->http_status));
		json_object_object_add(e, "ok", json_object_new_boolean(r->http_status >= 200 && r->http_status <= 299));
		json_object_object_add(e, "error", r->error ? json_object_new_string(r->error) : NULL);
		json_object_array_add(list, e);
	}
	pthread_mutex_unlock(&s->lock);
	set_result(status, resp, 200, sim_json_dup(list));
	json_object_put(list);
}

void sim_ctl_stats(struct sim *s, int *status, char **resp)
{
	struct json_object *o = json_object_new_object();
	size_t citizens, stored;

	pthread_mutex_lock(&s->lock);
	citizens = s->citizens.count;
	stored = s->ring_len;
	pthread_mutex_unlock(&s->lock);
#define STAT(name) json_object_object_add(o, #name, json_object_new_int64((int64_t)atomic_load(&s->stats.name)))
	STAT(requests);
	STAT(sent);
	STAT(held);
	STAT(lookups);
	STAT(sends);
	STAT(status_polls);
	STAT(unauthorized);
	STAT(rejected);
	STAT(duplicates);
	STAT(faulted);
	STAT(envelopes);
	STAT(decrypt_ok);
	STAT(decrypt_failed);
	STAT(callbacks_ok);
	STAT(callbacks_failed);
#undef STAT
	json_object_object_add(o, "citizens", json_object_new_int64((int64_t)citizens));
	json_object_object_add(o, "notifications_stored", json_object_new_int64((int64_t)stored));
	set_result(status, resp, 200, sim_json_dup(o));
	json_object_put(o);
}
