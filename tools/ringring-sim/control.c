/*
 * control.c - the simulator's own JSON API under /_sim/, used by tests and
 * benchmarks to inject faults and to see what "RingRing" received.
 *
 *   POST   /_sim/reset     forget messages, DLRs, counters, faults, pending DLRs
 *   POST   /_sim/faults    replace the fault set (see struct sim_faults;
 *                           "answer" names its enum sim_shape)
 *   GET    /_sim/faults    current fault set
 *   DELETE /_sim/faults    clear the fault set
 *   GET    /_sim/requests  accepted messages, oldest first (?limit=N&since=SEQ)
 *   GET    /_sim/dlrs      DLR attempts, oldest first (?limit=N&since=SEQ)
 *   GET    /_sim/stats     counters
 *   GET    /_sim/health    {"ok":true}
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <microhttpd.h>

#include "sim.h"

void sim_faults_default(const struct sim *sim, struct sim_faults *f)
{
	memset(f, 0, sizeof(*f));
	f->result_code = -1;
	f->hold_ms = sim->hold_ms;
	f->dlr_delay_ms = -1;
	f->count = -1;
}

void sim_faults_take(struct sim *sim, struct sim_faults *snap)
{
	pthread_mutex_lock(&sim->faults_lock);
	*snap = sim->faults;
	if (sim->faults.active && sim->faults.count > 0 && --sim->faults.count == 0)
		sim_faults_default(sim, &sim->faults);
	pthread_mutex_unlock(&sim->faults_lock);
}

static struct json_object *faults_json(const struct sim_faults *f)
{
	struct json_object *o = json_object_new_object();

	if (!o)
		return NULL;
	json_object_object_add(o, "active", json_object_new_boolean(f->active));
	json_object_object_add(o, "latency_ms", json_object_new_int64(f->latency_ms));
	json_object_object_add(o, "http_status", json_object_new_int(f->http_status));
	json_object_object_add(o, "result_code",
			       f->result_code >= 0 ? json_object_new_int(f->result_code) : NULL);
	json_object_object_add(o, "timeout", json_object_new_boolean(f->timeout));
	json_object_object_add(o, "timeout_ms", json_object_new_int64(f->hold_ms));
	json_object_object_add(o, "garbage", json_object_new_boolean(f->garbage));
	json_object_object_add(o, "dlr_delay_ms",
			       f->dlr_delay_ms >= 0 ? json_object_new_int64(f->dlr_delay_ms) : NULL);
	json_object_object_add(o, "dlr_status",
			       f->dlr_status[0] ? json_object_new_string(f->dlr_status) : NULL);
	json_object_object_add(o, "count", f->count >= 0 ? json_object_new_int64(f->count) : NULL);
	json_object_object_add(o, "answer", json_object_new_string(sim_shape_name(f->shape)));
	return o;
}

static int reply_error(struct sim_reply *r, unsigned status, const char *msg)
{
	struct json_object *o = json_object_new_object();
	int rc;

	if (!o)
		return -ENOMEM;
	json_object_object_add(o, "error", json_object_new_string(msg));
	rc = sim_reply_json(r, status, o);
	json_object_put(o);
	return rc;
}

static int reply_put(struct sim_reply *r, unsigned status, struct json_object *o)
{
	int rc;

	if (!o)
		return -ENOMEM;
	rc = sim_reply_json(r, status, o);
	json_object_put(o);
	return rc;
}

static bool get_long(struct json_object *v, long min, long max, long *out)
{
	long long n;

	if (!sim_json_int(v, &n) || n < min || n > max)
		return false;
	*out = (long)n;
	return true;
}

/* Parse a fault set; NULL on success, else what is wrong. */
static const char *faults_parse(const struct sim *sim, struct json_object *req, struct sim_faults *f)
{
	long n;

	sim_faults_default(sim, f);
	if (!json_object_is_type(req, json_type_object))
		return "body must be a JSON object";
	json_object_object_foreach(req, key, v) {
		if (strcasecmp(key, "latency_ms") == 0) {
			if (!get_long(v, 0, 600000, &f->latency_ms))
				return "latency_ms must be 0..600000";
		} else if (strcasecmp(key, "http_status") == 0) {
			if (!get_long(v, 0, 599, &n) || (n != 0 && n < 100))
				return "http_status must be 100..599 (0 = none)";
			f->http_status = (int)n;
		} else if (strcasecmp(key, "result_code") == 0) {
			if (json_object_is_type(v, json_type_null))
				continue;
			if (!get_long(v, 0, 999, &n))
				return "result_code must be 0..999";
			f->result_code = (int)n;
		} else if (strcasecmp(key, "timeout") == 0) {
			if (!json_object_is_type(v, json_type_boolean))
				return "timeout must be true or false";
			f->timeout = json_object_get_boolean(v);
		} else if (strcasecmp(key, "timeout_ms") == 0) {
			if (!get_long(v, 0, 600000, &f->hold_ms))
				return "timeout_ms must be 0..600000";
		} else if (strcasecmp(key, "garbage") == 0) {
			if (!json_object_is_type(v, json_type_boolean))
				return "garbage must be true or false";
			f->garbage = json_object_get_boolean(v);
		} else if (strcasecmp(key, "dlr_delay_ms") == 0) {
			if (!get_long(v, 0, 3600000, &f->dlr_delay_ms))
				return "dlr_delay_ms must be 0..3600000";
		} else if (strcasecmp(key, "dlr_status") == 0) {
			if (!get_long(v, 0, 999, &n))
				return "dlr_status must be a StatusCode 0..999";
			snprintf(f->dlr_status, sizeof(f->dlr_status), "%ld", n);
		} else if (strcasecmp(key, "answer") == 0) {
			if (!json_object_is_type(v, json_type_string) ||
			    !sim_shape_parse(json_object_get_string(v), &f->shape))
				return "answer must be plain, gzip, huge, drip, reset, http10 or redirect";
		} else if (strcasecmp(key, "count") == 0) {
			if (json_object_is_type(v, json_type_null))
				continue;
			if (!get_long(v, 1, 1000000000L, &f->count))
				return "count must be >= 1 (absent = until reset)";
		} else {
			/* A typo must not silently inject nothing. */
			return "unknown fault key";
		}
	}
	f->active = true;
	return NULL;
}

static size_t query_size(struct MHD_Connection *conn, const char *name, size_t dflt)
{
	const char *s = conn ? MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, name) : NULL;
	long v;

	return s && sim_parse_long(s, 0, 1000000000L, &v) ? (size_t)v : dflt;
}

static struct json_object *stats_json(struct sim *sim)
{
	struct json_object *o = json_object_new_object();

	if (!o)
		return NULL;
#define STAT(name) \
	json_object_object_add(o, #name, json_object_new_int64((int64_t)atomic_load(&sim->stats.name)))
	STAT(requests);
	STAT(sent);
	STAT(rejected);
	STAT(status_requests);
	STAT(faulted);
	STAT(dlr_sent);
	STAT(dlr_failed);
#undef STAT
	json_object_object_add(o, "dlr_pending",
			       json_object_new_int64((int64_t)sim_dlr_pending(sim->dlr)));
	json_object_object_add(o, "held",
			       json_object_new_int64((int64_t)sim_delay_count(sim->delay)));
	return o;
}

static void stats_reset(struct sim *sim)
{
	atomic_store(&sim->stats.requests, 0);
	atomic_store(&sim->stats.sent, 0);
	atomic_store(&sim->stats.rejected, 0);
	atomic_store(&sim->stats.status_requests, 0);
	atomic_store(&sim->stats.faulted, 0);
	atomic_store(&sim->stats.dlr_sent, 0);
	atomic_store(&sim->stats.dlr_failed, 0);
}

int sim_control(struct sim *sim, const char *method, const char *path,
		struct MHD_Connection *conn, const char *body, size_t len, struct sim_reply *r)
{
	bool get = strcmp(method, "GET") == 0;
	bool post = strcmp(method, "POST") == 0;
	struct sim_faults f;
	struct json_object *req;
	const char *err;

	if (strcmp(path, "/_sim/health") == 0 && get)
		return sim_reply_text(r, 200, "application/json", "{\"ok\":true}");
	if (strcmp(path, "/_sim/stats") == 0 && get)
		return reply_put(r, 200, stats_json(sim));
	if (strcmp(path, "/_sim/requests") == 0 && get)
		return reply_put(r, 200,
				 sim_store_requests_json(sim->store, query_size(conn, "limit", 0),
							 query_size(conn, "since", 0)));
	if (strcmp(path, "/_sim/dlrs") == 0 && get)
		return reply_put(r, 200,
				 sim_store_dlrs_json(sim->store, query_size(conn, "limit", 0),
						     query_size(conn, "since", 0)));
	if (strcmp(path, "/_sim/reset") == 0 && post) {
		pthread_mutex_lock(&sim->faults_lock);
		sim_faults_default(sim, &sim->faults);
		pthread_mutex_unlock(&sim->faults_lock);
		sim_dlr_reset(sim->dlr);
		sim_store_reset(sim->store);
		stats_reset(sim);
		return sim_reply_text(r, 200, "application/json", "{\"ok\":true}");
	}
	if (strcmp(path, "/_sim/faults") == 0) {
		if (post) {
			req = sim_json_parse(body, len);
			err = req ? faults_parse(sim, req, &f) : "body is not JSON";
			json_object_put(req);
			if (err)
				return reply_error(r, 400, err);
			pthread_mutex_lock(&sim->faults_lock);
			sim->faults = f;
			pthread_mutex_unlock(&sim->faults_lock);
		} else if (strcmp(method, "DELETE") == 0) {
			pthread_mutex_lock(&sim->faults_lock);
			sim_faults_default(sim, &sim->faults);
			f = sim->faults;
			pthread_mutex_unlock(&sim->faults_lock);
		} else if (get) {
			pthread_mutex_lock(&sim->faults_lock);
			f = sim->faults;
			pthread_mutex_unlock(&sim->faults_lock);
		} else {
			return reply_error(r, 405, "method not allowed");
		}
		return reply_put(r, 200, faults_json(&f));
	}
	return -ENOENT;
}
