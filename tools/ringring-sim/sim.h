/*
 * sim.h - internals of ringring-sim, a loopback stand-in for RingRing's
 * Message API (POST /v1/message, /v1/statusmessage, DLR webhooks) with a
 * JSON control API under /_sim/ to inject latency and faults.
 *
 * Threads: libmicrohttpd's pool answers requests; a delay thread resumes
 * connections suspended for simulated latency; a DLR thread posts delivery
 * reports with libcurl. Shared state is the store (one mutex), the fault
 * set (one mutex) and atomic counters.
 */
#ifndef RINGRING_SIM_H
#define RINGRING_SIM_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>

#include "simbuf.h" /* tools/common: request bodies, the send's answer */

struct MHD_Connection;

#define SIM_MAX_CHARS 758u
#define SIM_MAX_RECIPIENTS 1000u
#define SIM_REFERENCE_MAX 100u
#define SIM_ID_LEN 36 /* 8-4-4-4-12 hex, as a GUID */

/* How an answer goes out (shape.c): as it is, or misbehaving at the HTTP
 * level, for the tests of SMIS's upstream handling. */
enum sim_shape {
	SIM_SHAPE_PLAIN = 0,
	SIM_SHAPE_GZIP,     /* Content-Encoding: gzip, though not asked for */
	SIM_SHAPE_HUGE,     /* padded to 8 MiB */
	SIM_SHAPE_DRIP,     /* one byte every 200 ms */
	SIM_SHAPE_RESET,    /* half the body, then a TCP reset */
	SIM_SHAPE_HTTP10,   /* HTTP/1.0, no Content-Length: ends with the connection */
	SIM_SHAPE_REDIRECT, /* 307 to the same path, the request not processed */
};

/* What the next API requests suffer; set through POST /_sim/faults. */
struct sim_faults {
	bool active;
	long latency_ms;    /* 0 = none */
	int http_status;    /* 0 = none */
	int result_code;    /* -1 = none */
	bool timeout;       /* hold the connection, then drop it */
	long hold_ms;       /* how long a timeout holds */
	bool garbage;       /* answer a non-JSON body */
	long dlr_delay_ms;  /* -1 = the --dlr-delay-ms default */
	char dlr_status[8]; /* "" = "200" */
	long count;         /* requests left to affect, -1 = until reset */
	enum sim_shape shape; /* "answer" */
};

struct sim_stats {
	atomic_ullong requests;        /* RingRing API requests, any outcome */
	atomic_ullong sent;            /* messages accepted */
	atomic_ullong rejected;        /* API requests answered ResultCode != 0 */
	atomic_ullong status_requests; /* /statusmessage requests */
	atomic_ullong faulted;         /* API requests a fault applied to */
	atomic_ullong dlr_sent;        /* DLR posts answered 2xx */
	atomic_ullong dlr_failed;      /* DLR posts failed or answered non-2xx */
};

/* One accepted message (one recipient of a send request). */
struct sim_msg {
	uint64_t seq;
	char message_id[SIM_ID_LEN + 1];
	char to[16];
	char *message;
	char *reference;   /* or NULL */
	char *sender_id;   /* or NULL */
	char *from;        /* or NULL */
	char *encoding_in; /* messageEncoding as sent, or NULL */
	char *status_url;  /* or NULL */
	const char *encoding; /* "TEXT" or "UNICODE" */
	int parts;
	int chars;
	bool sandbox;
	int64_t submitted_ms;  /* wall clock */
	int64_t delivered_ms;  /* wall clock when the final status applies */
	char dlr_status[8];
};

/* One DLR attempt. */
struct sim_dlr_result {
	uint64_t seq;
	char message_id[SIM_ID_LEN + 1];
	char *reference;
	char *url;
	char status_code[8];
	long http_status; /* 0 when no HTTP answer */
	bool ok;
	char error[128];
	int64_t at_ms;
};

struct sim_store;
struct sim_delay;
struct sim_dlr;

struct sim {
	/* Configuration, read-only once serving. */
	char *api_key;
	long dlr_delay_ms;
	long hold_ms;
	size_t max_records;
	bool quiet;
	uint32_t nonce;

	pthread_mutex_t faults_lock;
	struct sim_faults faults;

	struct sim_store *store;
	struct sim_delay *delay;
	struct sim_dlr *dlr;
	struct sim_stats stats;
};

/* An answer to send back; body is malloc'd (MHD frees it). */
struct sim_reply {
	unsigned status;
	char *body;
	size_t len;
	const char *content_type;
	long latency_ms; /* delay before answering */
	bool drop;       /* never answer: hold for latency_ms, then close */
	enum sim_shape shape;
	const char *location; /* SIM_SHAPE_REDIRECT: the request's own path */
};

/* util.c */
int64_t sim_now_ms(void);
int64_t sim_mono_ms(void);
struct json_object *sim_json_parse(const char *body, size_t len);
struct json_object *sim_json_get(struct json_object *obj, const char *key);
bool sim_json_int(struct json_object *v, long long *out);
const char *sim_json_str(struct json_object *v);
void sim_format_time(int64_t ms, char *buf, size_t len);
void sim_mask_number(const char *num, char *buf, size_t len);
int sim_reply_json(struct sim_reply *r, unsigned status, struct json_object *obj);
int sim_reply_text(struct sim_reply *r, unsigned status, const char *ctype, const char *text);

/* `s` as a JSON string, quoted and escaped byte for byte as json-c does
 * (JSON_C_TO_STRING_NOSLASHESCAPE): '"', '\\' and control characters only. */
void sim_buf_json_string(struct sim_buf *b, const char *s);
/* A JSON answer with `status`, taking b->s over; -ENOMEM if `b` failed
 * or is empty. */
int sim_reply_buf(struct sim_reply *r, unsigned status, struct sim_buf *b);
bool sim_parse_long(const char *s, long min, long max, long *out);
const char *sim_result_description(long long code);
const char *sim_status_description(long code);

/* faults (control.c) */
void sim_faults_default(const struct sim *sim, struct sim_faults *f);
/* Snapshot the active faults for one API request, consuming one `count`. */
void sim_faults_take(struct sim *sim, struct sim_faults *snap);
/* /_sim/... ; returns 0 and fills *r, or -ENOENT for an unknown path. */
int sim_control(struct sim *sim, const char *method, const char *path,
		struct MHD_Connection *conn, const char *body, size_t len, struct sim_reply *r);

/* api.c: RingRing's Message API. `get_arg` reads query arguments (may be
 * NULL). */
typedef const char *(*sim_arg_fn)(void *ctx, const char *name);
int sim_api(struct sim *sim, const char *method, const char *path, const char *body,
	    size_t len, sim_arg_fn get_arg, void *arg_ctx, struct sim_reply *r);

/* store.c */
struct sim_store *sim_store_new(size_t cap, uint32_t nonce);
void sim_store_free(struct sim_store *st);
/* Give `m` its seq and MessageId (the caller still owns it). */
void sim_store_assign_id(struct sim_store *st, struct sim_msg *m);
/* Record `m` (with its id assigned); takes ownership. */
void sim_store_add_msg(struct sim_store *st, struct sim_msg *m);
/* Copies the message with this id into *out (caller frees with
 * sim_msg_free_fields); -ENOENT when unknown or evicted. */
int sim_store_get_msg(struct sim_store *st, const char *id, struct sim_msg *out);
void sim_msg_free_fields(struct sim_msg *m);
void sim_store_add_dlr(struct sim_store *st, struct sim_dlr_result *d);
struct json_object *sim_store_requests_json(struct sim_store *st, size_t limit, uint64_t since);
struct json_object *sim_store_dlrs_json(struct sim_store *st, size_t limit, uint64_t since);
void sim_store_reset(struct sim_store *st);

/* delay.c */
struct sim_delay *sim_delay_new(void);
/* Resume `conn` (already suspended) at monotonic `due_ms`. Returns false
 * when shutting down: the caller resumes it at once. */
bool sim_delay_add(struct sim_delay *d, int64_t due_ms, struct MHD_Connection *conn);
size_t sim_delay_count(struct sim_delay *d);
/* Resume everything still held and stop the thread; later adds fail.
 * Idempotent; accepts NULL. */
void sim_delay_stop(struct sim_delay *d);
/* Stops (if needed) and frees; accepts NULL. Only once nobody adds. */
void sim_delay_free(struct sim_delay *d);

/* dlr.c */
struct sim_dlr *sim_dlr_new(struct sim *sim);
/* Schedule the delivery report of `m` (borrowed) at monotonic `due_ms`. */
int sim_dlr_schedule(struct sim_dlr *d, const struct sim_msg *m, const char *method,
		     int64_t due_ms);
/* Forget pending reports; reports in flight are no longer recorded. */
void sim_dlr_reset(struct sim_dlr *d);
size_t sim_dlr_pending(struct sim_dlr *d);
void sim_dlr_free(struct sim_dlr *d);

/* shape.c */
bool sim_shape_parse(const char *name, enum sim_shape *out);
const char *sim_shape_name(enum sim_shape s);
/* The response for `r` in its shape (r->shape not PLAIN); takes r->body
 * over on success. NULL when out of memory. */
struct MHD_Response *sim_shape_response(struct sim *sim, struct MHD_Connection *conn, struct sim_reply *r);

/* server.c */
struct MHD_Daemon;
struct MHD_Daemon *sim_server_start(struct sim *sim, const char *host, unsigned port,
				    unsigned threads, unsigned *bound_port);
void sim_server_stop(struct sim *sim, struct MHD_Daemon *daemon);

#endif
