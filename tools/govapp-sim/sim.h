/*
 * sim.h - internals of govapp-sim, the GovApp backend simulator
 * (docs/govapp-protocol.md, "Simulator").
 *
 * The simulator plays both the GovApp backend (the /v1 API SMIS talks to)
 * and the citizens' devices: it holds an X25519 key pair per seeded device,
 * opens every envelope it receives, and keeps what it read in an inbox that
 * tests and people can inspect through the /_sim control API.
 *
 * Threads: libmicrohttpd's pool threads run the handlers; one timer thread
 * resumes connections held back by a latency or timeout fault; one callback
 * thread posts signed status callbacks. All shared state sits in struct sim
 * behind one mutex, except the counters, which are atomics.
 */
#ifndef GOVAPP_SIM_H
#define GOVAPP_SIM_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>

#define SIM_BODY_MAX (1024 * 1024)

/* ------------------------------------------------------------------ */
/* String-keyed hash table (chained, power-of-two buckets, grows x2)   */
/* ------------------------------------------------------------------ */

struct sim_map_entry;

struct sim_map {
	struct sim_map_entry **buckets;
	size_t n_buckets;
	size_t count;
};

int sim_map_init(struct sim_map *m, size_t n_buckets);
/* Frees the table; free_value (may be NULL) is called on every value. */
void sim_map_fini(struct sim_map *m, void (*free_value)(void *));
void *sim_map_get(const struct sim_map *m, const char *key);
/* Insert or replace; the key is copied. *old receives a replaced value. */
int sim_map_put(struct sim_map *m, const char *key, void *value, void **old);
/* Remove and return the value, or NULL. */
void *sim_map_del(struct sim_map *m, const char *key);

/* ------------------------------------------------------------------ */
/* State                                                               */
/* ------------------------------------------------------------------ */

struct sim_device {
	char *id;
	char *platform;
	char *public_key;      /* base64url X25519 */
	char *key_alg_json;    /* the seed's key_alg as JSON text, any type; NULL: "X25519" */
	unsigned char sk[32];  /* the device's secret key, when the sim made it */
	bool has_sk;
};

struct sim_citizen {
	char *phone;
	bool installed;
	bool notifications;
	char language[8];
	struct sim_device *devices;
	size_t n_devices;
	char *lookup_json; /* the lookup answer, made once: lookups are hot */
};

enum sim_dev_status {
	SIM_ACCEPTED = 0,
	SIM_DELIVERED = 1,
	SIM_READ = 2,
	SIM_FAILED = 3, /* the device could not open its envelope */
};

struct sim_delivery {
	char *device_id;
	enum sim_dev_status status;
	int64_t delivered_at; /* epoch ms, 0 = not yet */
	int64_t read_at;
	int64_t failed_at;
	bool decrypt_ok;
	const char *reason;   /* static text when !decrypt_ok */
	char *plaintext;      /* what the device read (JSON), NULL if unreadable */
};

struct sim_notification {
	char id[40];
	char *message_id;
	char *phone;
	char *sender;
	char *reference;      /* NULL when absent */
	char *title_json;     /* the clear "title" object, serialised */
	char *languages_json; /* the "languages" array, serialised */
	int64_t created_at;
	struct sim_delivery *dev;
	size_t n_dev;
};

enum sim_endpoint {
	SIM_EP_NONE = 0,
	SIM_EP_LOOKUP,
	SIM_EP_SEND,
	SIM_EP_STATUS,
};

/* A fault as set by POST /_sim/faults. */
struct sim_fault {
	bool active;
	long latency_ms;
	long http_status; /* 0: none */
	bool timeout;
	long timeout_ms;  /* how long a timeout holds the connection */
	bool garbage;     /* answer an HTML page instead of JSON */
	long count;       /* requests left; < 0: until reset */
	/* "lookup", "notifications" (send and status), "send", "status" or
	 * NULL (every API request). */
	char path[16];
};

struct sim_record {
	uint64_t seq;
	int64_t at;
	char method[8];
	char *path;
	int status;
	char *body;
};

struct sim_callback_rec {
	uint64_t seq;
	int64_t at;
	char *notification_id;
	char *device_id;
	char status[16];
	long http_status;  /* 0 when no HTTP answer came */
	char *error;       /* curl's error text or NULL */
};

struct sim_stats {
	atomic_ullong requests;
	atomic_ullong sent;       /* notifications accepted (new ones) */
	atomic_ullong held;       /* connections waiting on a fault now */
	atomic_ullong lookups;
	atomic_ullong sends;
	atomic_ullong status_polls;
	atomic_ullong unauthorized;
	atomic_ullong rejected;
	atomic_ullong duplicates;
	atomic_ullong faulted;
	atomic_ullong envelopes;
	atomic_ullong decrypt_ok;
	atomic_ullong decrypt_failed;
	atomic_ullong callbacks_ok;
	atomic_ullong callbacks_failed;
};

struct sim_cb_queue;

struct sim {
	pthread_mutex_t lock;
	struct sim_map citizens;   /* phone -> struct sim_citizen */
	struct sim_map notifs;     /* notification id -> notification */
	struct sim_map by_message; /* message_id -> notification */
	struct sim_notification **ring; /* oldest evicted first */
	size_t ring_cap, ring_head, ring_len;
	struct sim_record *records;
	size_t rec_cap;
	uint64_t rec_seq;
	struct sim_callback_rec *cbs;
	size_t cb_cap;
	uint64_t cb_seq;
	struct sim_fault fault;
	atomic_bool fault_active; /* lock-free fast path when no fault is set */
	struct sim_stats stats;
	atomic_ullong id_counter;

	char *token;
	char *callback_url;
	char *callback_secret;
	long timeout_hold_ms; /* default timeout_ms of a timeout fault */
	bool quiet;
	struct sim_cb_queue *cbq;
};

int64_t sim_now_ms(void);
/* "2024-05-01T12:34:56.789Z" into buf (at least 32 bytes). */
void sim_format_time(int64_t ms, char *buf, size_t cap);
void sim_log(const struct sim *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* JSON text of o without '/' escaping; caller frees with free(). */
char *sim_json_dup(struct json_object *o);
/* Parse exactly buf[0..len) as one JSON value (JSON's whitespace may
 * follow it), or NULL. */
struct json_object *sim_json_parse(const char *buf, size_t len);
/* {"error":"<code>"}, caller frees with free(). */
char *sim_error_json(const char *code);

int sim_init(struct sim *s, size_t max_notifications, size_t max_records);
void sim_fini(struct sim *s);

/* Build a citizen from a seed entry; generates missing device keys. On
 * error returns -EINVAL with a reason in err. */
int sim_citizen_from_json(struct json_object *o, struct sim_citizen **out, char *err, size_t cap);
void sim_citizen_free(struct sim_citizen *c);
/* Add or replace (takes ownership). */
int sim_citizen_put(struct sim *s, struct sim_citizen *c);
/* {"citizens":[...]} from a file. */
int sim_load_seed(struct sim *s, const char *path, char *err, size_t cap);

/* API operations: set *status and *resp (caller frees with free()). */
void sim_api_lookup(struct sim *s, const char *body, size_t len, int *status, char **resp);
void sim_api_send(struct sim *s, const char *body, size_t len, int *status, char **resp);
void sim_api_status(struct sim *s, const char *id, int *status, char **resp);

/* Control operations, same conventions. */
void sim_ctl_reset(struct sim *s, const char *body, size_t len, int *status, char **resp);
void sim_ctl_citizen(struct sim *s, const char *body, size_t len, int *status, char **resp);
void sim_ctl_faults_set(struct sim *s, const char *body, size_t len, int *status, char **resp);
void sim_ctl_faults_get(struct sim *s, int *status, char **resp);
/* Records oldest first: the newest `limit` (0 = all) of those after seq `since`. */
void sim_ctl_requests(struct sim *s, size_t limit, uint64_t since, int *status, char **resp);
void sim_ctl_inbox(struct sim *s, const char *phone, int *status, char **resp);
void sim_ctl_mark(struct sim *s, const char *body, size_t len, int *status, char **resp);
void sim_ctl_callbacks(struct sim *s, size_t limit, uint64_t since, int *status, char **resp);
void sim_ctl_stats(struct sim *s, int *status, char **resp);

/* Remember an API request for GET /_sim/requests (body as received). */
void sim_record(struct sim *s, const char *method, const char *path, int status, const char *body,
		size_t len);

/*
 * Consume one use of the active fault when it applies to endpoint ep;
 * returns true and a copy in *f. Lock-free when no fault is set.
 */
bool sim_fault_take(struct sim *s, enum sim_endpoint ep, struct sim_fault *f);

/* Status callbacks (callback.c). */
int sim_callback_start(struct sim *s);
void sim_callback_stop(struct sim *s);
/* Queue a signed POST of body to the callback URL; takes ownership of body. */
void sim_callback_enqueue(struct sim *s, const char *notification_id, const char *device_id,
			  const char *status, char *body);
void sim_callback_record(struct sim *s, const char *notification_id, const char *device_id,
			 const char *status, long http_status, const char *error);
/* "t=<t>,v1=<hex>" for body at time t (seconds); caller frees with free(). */
char *sim_sign(const char *secret, int64_t t, const char *body, size_t len);

/* HTTP server (server.c). */
struct sim_server;
int sim_server_start(struct sim *s, const char *host, unsigned port, unsigned threads,
		     struct sim_server **out, unsigned *bound_port);
void sim_server_stop(struct sim_server *srv);

#endif /* GOVAPP_SIM_H */
