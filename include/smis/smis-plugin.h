/*
 * smis-plugin.h - the whole contract between smisd and its plugins.
 *
 * A plugin is a shared object that exports exactly one symbol,
 * `smis_plugin_descriptor`, describing either a CHANNEL (a way to reach a
 * citizen: GovApp, an SMS provider, ...) or a STRATEGY step (a pure decision
 * function that says which channel to use next).
 *
 * Plugins never link against the daemon. Everything they need from the core
 * (logging, configuration, HTTP request building, clock) reaches them as a
 * const function table, `struct smis_core_api`, handed to `create`.
 *
 * ABI rules (SQLite / Redis style):
 *  - the core loads a plugin only if `abi_version == SMIS_PLUGIN_ABI_VERSION`;
 *  - structs that carry a `size` member only ever grow at their end; a reader
 *    treats a member that lies beyond the writer's `size` as absent (NULL/0).
 *
 * Lifecycle, written once:
 *  1. dlopen(RTLD_NOW | RTLD_LOCAL), descriptor checked (ABI, size, kind,
 *     mandatory ops). The core calls curl_global_init() itself, once.
 *  2. For every configuration block naming the plugin: `create` one instance
 *     (a plugin is a type, a config block is an instance).
 *  3. Serve: channel `start`/`resume` and strategy `decide` are called from the
 *     core's event-loop threads, one call at a time per daemon (the core
 *     serialises them: keep no thread-local state between calls). They MUST
 *     NOT block: no sockets, no sleeping, no disk. The core performs the HTTP
 *     requests a channel asks for on its event loops.
 *  4. On reload a new generation of instances is created beside the old one;
 *     the old instances are destroyed once their last in-flight message is
 *     done. `destroy` may therefore run on any thread, but never concurrently
 *     with another call on the same instance.
 *
 * Ownership words used below: "borrowed" (valid for the duration of the call
 * only, do not free), "takes ownership" (the callee frees), "caller frees
 * with X".
 */
#ifndef SMIS_PLUGIN_H
#define SMIS_PLUGIN_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SMIS_PLUGIN_ABI_VERSION 1u

#if defined(__GNUC__)
#define SMIS_PLUGIN_EXPORT __attribute__((visibility("default")))
#define SMIS_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define SMIS_PLUGIN_EXPORT
#define SMIS_PRINTF(f, a)
#endif

/* ------------------------------------------------------------------ */
/* Opaque handles owned by the core                                    */
/* ------------------------------------------------------------------ */

/* One plugin instance as the core knows it (used to prefix log lines and to
 * resolve names in the same configuration generation). */
struct smis_instance;
/* A configuration block (a libconfig group) handed to `create`. */
struct smis_config;
/* An upstream HTTP request under construction. */
struct smis_http_request;

enum smis_log_level {
	SMIS_LOG_DEBUG = 0,
	SMIS_LOG_INFO = 1,
	SMIS_LOG_WARN = 2,
	SMIS_LOG_ERROR = 3,
};

/* ------------------------------------------------------------------ */
/* Messages as plugins see them (all borrowed, read-only)              */
/* ------------------------------------------------------------------ */

/* Languages SMIS accepts. */
#define SMIS_LANG_MAX 4

struct smis_content {
	const char *lang;      /* "nl", "fr", "de" or "en" */
	const char *title;     /* plain text, never NULL */
	const char *body;      /* sanitised HTML when body_is_html, else text */
	const char *body_text; /* plain-text rendering of body, never NULL */
	bool body_is_html;
	const char *sms_text;  /* explicit SMS text from the institution or NULL */
};

struct smis_message {
	size_t size;              /* sizeof(struct smis_message) in the core */
	const char *id;           /* SMIS message id, e.g. "msg_01H..." */
	const char *institution;  /* institution name from the configuration */
	const char *recipient;    /* E.164 with '+', e.g. "+32470123456" */
	const char *reference;    /* institution's reference or NULL */
	const char *language;     /* preferred language from the request or NULL */
	const char *sender;       /* institution's SMS sender id/number or NULL */
	const struct smis_content *content; /* in the institution's language order */
	size_t n_content;         /* 1..SMIS_LANG_MAX */
	/* Citizen's preferred language learnt by a LOOKUP on any channel of
	 * this message, or NULL. */
	const char *citizen_language;
	/* For SMIS_OP_STATUS: the provider_ref this channel returned on SEND. */
	const char *provider_ref;
	/* Passthrough: content the institution encrypted itself, as the JSON
	 * text {"encryption":"...","envelopes":[{"device_id","enc","ciphertext"}]}
	 * bound to `id`; NULL otherwise. App channels send it as is; the
	 * content[].body is then empty. */
	const char *encrypted_json;
	/* The institution's cap on SMS segments per message (0 = none): an SMS
	 * channel refuses a longer text with PERMFAIL "sms_too_many_segments"
	 * rather than truncating it. */
	int max_sms_parts;
};

/* ------------------------------------------------------------------ */
/* HTTP as the core performs it                                         */
/* ------------------------------------------------------------------ */

enum smis_transport {
	SMIS_TRANSPORT_OK = 0,      /* a full HTTP response was received */
	SMIS_TRANSPORT_TIMEOUT = 1, /* request or connect timeout */
	SMIS_TRANSPORT_CONNECT = 2, /* connection refused / DNS / TLS failure */
	SMIS_TRANSPORT_ERROR = 3,   /* any other transport failure */
};

struct smis_http_response {
	size_t size;
	enum smis_transport transport;
	long status;               /* HTTP status, 0 unless transport == OK */
	const char *body;          /* borrowed, NUL-terminated, may be "" */
	size_t body_len;
	const char *content_type;  /* borrowed or NULL */
	long elapsed_ms;
	const char *error;         /* borrowed transport error text or NULL */
};

/* ------------------------------------------------------------------ */
/* Outcomes                                                            */
/* ------------------------------------------------------------------ */

/* What a channel operation is asked to do. */
enum smis_op {
	SMIS_OP_LOOKUP = 1, /* is the citizen reachable on this channel? */
	SMIS_OP_SEND = 2,   /* deliver the message */
	SMIS_OP_STATUS = 3, /* poll the delivery status of msg->provider_ref;
			     * answer with out->reports[0..n_reports) */
};

/* Fixed vocabulary (Kannel): TEMPFAIL may succeed on retry and lets a
 * strategy fall back; PERMFAIL will not succeed on this channel. */
enum smis_outcome_kind {
	SMIS_OUTCOME_NONE = 0,
	SMIS_OUTCOME_OK = 1,       /* lookup answered / message accepted upstream */
	SMIS_OUTCOME_TEMPFAIL = 2,
	SMIS_OUTCOME_PERMFAIL = 3,
};

enum smis_reach {
	SMIS_REACH_UNKNOWN = 0,
	SMIS_REACH_YES = 1,               /* installed, notifications on */
	SMIS_REACH_NOT_INSTALLED = 2,
	SMIS_REACH_NOTIFICATIONS_OFF = 3,
};

/* Delivery/reception reports, from an inbound webhook or a STATUS poll. */
enum smis_report_status {
	SMIS_REPORT_NONE = 0,
	SMIS_REPORT_PENDING = 1,   /* still on its way */
	SMIS_REPORT_DELIVERED = 2, /* on the handset / device */
	SMIS_REPORT_READ = 3,      /* opened by the citizen (apps only) */
	SMIS_REPORT_FAILED = 4,    /* will not be delivered */
};

struct smis_report {
	/* As returned in smis_outcome.provider_ref; for a channel with
	 * SMIS_CAP_REPORTS_BY_ID, SMIS's message id (smis_message.id) instead. */
	char provider_ref[128];
	char device[64];         /* device id for apps, "" for SMS */
	enum smis_report_status status;
	int64_t at_ms;           /* when it happened upstream (epoch ms), 0 = now */
	char detail[128];        /* e.g. "ringring_status_200"; no personal data */
};

struct smis_outcome {
	enum smis_outcome_kind kind;
	/* Stable machine-readable reason when kind is a failure, e.g.
	 * "upstream_timeout", "upstream_5xx", "ringring_result_9". */
	char error[64];
	/* Human text, MUST NOT contain phone numbers or message content. */
	char detail[256];
	/* Upstream's id for the message (SEND) when known. */
	char provider_ref[128];
	/* LOOKUP results. */
	enum smis_reach reach;
	char language[8];          /* citizen's preferred language or "" */
	int devices;
	/* SEND extras for SMS channels (0/"" when not applicable). */
	int sms_parts;
	int sms_chars;
	char sms_encoding[16];     /* "GSM-7" or "UCS-2" */
	/* STATUS results: reports[0..n_reports). */
	struct smis_report reports[8];
	size_t n_reports;
	/* LOOKUP on app channels: the citizen's devices and public keys as a
	 * JSON array [{"device_id","public_key","key_alg"}], allocated with
	 * api->alloc; the core takes ownership (frees it with api->free). Lets
	 * institutions encrypt end to end themselves. NULL when unknown. */
	char *devices_json;
};

/* An HTTP request that an upstream sent to SMIS (a status webhook), routed
 * by the core from POST/GET /v1/callbacks/<instance>[/<rest>]. */
struct smis_inbound {
	size_t size;
	const char *method;
	const char *path_rest;   /* what follows "/v1/callbacks/<instance>", may be "" */
	const char *remote_addr; /* textual peer address */
	const char *body;        /* NUL-terminated */
	size_t body_len;
	/* Header lookup, case-insensitive; returns borrowed value or NULL,
	 * without the spaces and tabs after it (not part of it, RFC 9110
	 * 5.5), valid until inbound returns. */
	const char *(*header)(const struct smis_inbound *in, const char *name);
	/* Query-string argument lookup; returns borrowed value or NULL. */
	const char *(*query)(const struct smis_inbound *in, const char *name);
	void *core_private;      /* for the core's accessors, do not touch */
};

/* Return values of channel start/resume. */
#define SMIS_STEP_DONE 0    /* *out is filled; the operation is over */
#define SMIS_STEP_REQUEST 1 /* *req is set; call resume with its response */

/* ------------------------------------------------------------------ */
/* The core API table                                                   */
/* ------------------------------------------------------------------ */

struct smis_core_api {
	size_t size;          /* sizeof(struct smis_core_api) in the core */
	unsigned abi_version; /* SMIS_PLUGIN_ABI_VERSION of the core */

	/* Log a line; the core prefixes plugin, instance and message id.
	 * Never pass secrets, message content or full phone numbers. */
	void (*log)(struct smis_instance *self, enum smis_log_level level,
		    const char *fmt, ...) SMIS_PRINTF(3, 4);

	/* Configuration accessors, valid during `create` only. Each returns 0
	 * when found, -ENOENT when absent, -EINVAL when of the wrong type;
	 * config_string also -ENOMEM when its copy could not be made (a
	 * failure to report, not an absent setting). Strings are copies:
	 * caller frees with api->free. A setting in the
	 * block that the plugin never reads is reported by the core as an
	 * "unknown setting" error with file:line. */
	int (*config_string)(struct smis_config *cfg, const char *key, char **out);
	int (*config_int)(struct smis_config *cfg, const char *key, long long *out);
	int (*config_bool)(struct smis_config *cfg, const char *key, bool *out);
	/* Report a configuration error about `key` (or the block when key is
	 * NULL); the core prints it as "file:line: ..." and fails the load. */
	void (*config_error)(struct smis_config *cfg, const char *key,
			     const char *fmt, ...) SMIS_PRINTF(3, 4);

	/* Resolve a channel instance of the same configuration generation by
	 * name (for strategies). Returns 0 and its capability bits, or -ENOENT.
	 * -ENOENT too for a channel whose own block failed to load: the core
	 * then does not show the config_error quoting its name that follows
	 * (the block's error says it), but still fails the load.
	 * Valid during `create` only. */
	int (*channel_caps)(struct smis_instance *self, const char *name,
			    unsigned *caps);

	/* HTTP requests the core will perform for a channel. The core applies
	 * the instance's `http` settings (timeouts, TLS, connection limits).
	 * The request is freed by the core once handed back through
	 * start/resume; free one you abandon with http_request_free. */
	struct smis_http_request *(*http_request_new)(const char *method,
						      const char *url);
	int (*http_request_header)(struct smis_http_request *req,
				   const char *name, const char *value);
	/* Copies `len` bytes of body. */
	int (*http_request_body)(struct smis_http_request *req,
				 const char *body, size_t len);
	void (*http_request_free)(struct smis_http_request *req);

	/* Clock: wall time in ms since the epoch, monotonic ms. */
	int64_t (*now_ms)(void);
	int64_t (*monotonic_ms)(void);

	void *(*alloc)(size_t n); /* zeroed; NULL on failure */
	void (*free)(void *p);

	/* New entries go here, at the end only. */
};

/* ------------------------------------------------------------------ */
/* Channel plugins                                                      */
/* ------------------------------------------------------------------ */

/* Capability bits of a channel. */
#define SMIS_CAP_LOOKUP (1u << 0) /* implements SMIS_OP_LOOKUP */
#define SMIS_CAP_SEND (1u << 1)   /* implements SMIS_OP_SEND */
#define SMIS_CAP_APP (1u << 2)    /* reaches an app (rich, encrypted) */
#define SMIS_CAP_SMS (1u << 3)    /* reaches a phone by SMS */
#define SMIS_CAP_STATUS (1u << 4) /* implements SMIS_OP_STATUS polling */
/* Its reports name the message by SMIS's own id (smis_message.id, which the
 * provider echoes back, e.g. RingRing's "Reference") in smis_report's
 * provider_ref, not by the provider's id. The core then finds the message
 * by its primary key and need not index providers' ids, which are random:
 * one more random page to write per message. A report whose id is not a
 * message of SMIS's is refused or kept as an orphan, as for other channels. */
#define SMIS_CAP_REPORTS_BY_ID (1u << 5)

struct smis_channel_ops {
	size_t size; /* sizeof(struct smis_channel_ops) the plugin was built with */

	/* Create an instance from its configuration block. `api` and `self`
	 * outlive the instance. Returns 0 and sets *state, or a negative errno
	 * after reporting the reason with api->config_error. Mandatory. */
	int (*create)(const struct smis_core_api *api, struct smis_instance *self,
		      struct smis_config *cfg, void **state);
	/* Free the instance. Accepts NULL. Mandatory. */
	void (*destroy)(void *state);

	/* Begin operation `op` for `msg`. `*call` is a per (message, instance)
	 * slot: NULL on the first operation of a message on this instance and
	 * kept across its later operations (a LOOKUP then a SEND), so the plugin
	 * may remember what the lookup learnt (device keys, language). Returns
	 * SMIS_STEP_REQUEST with *req set (the core takes ownership), or
	 * SMIS_STEP_DONE with *out filled, or a negative errno (treated as a
	 * TEMPFAIL "plugin_error"). MUST NOT block. Mandatory. */
	int (*start)(void *state, enum smis_op op, const struct smis_message *msg,
		     void **call, struct smis_http_request **req,
		     struct smis_outcome *out);
	/* Continue with the response to the last request; same returns as
	 * start. `resp` is borrowed. MUST NOT block. Mandatory. */
	int (*resume)(void *state, enum smis_op op, const struct smis_message *msg,
		      void **call, const struct smis_http_response *resp,
		      struct smis_http_request **req, struct smis_outcome *out);
	/* Free a per-message slot when the message is done. Called on
	 * whichever core thread lets go of the message last (an event loop or
	 * the store writer), outside the serialisation of start/resume/decide:
	 * free `call` only and treat `state` as read-only. Optional. */
	void (*call_free)(void *state, void *call);
	/* Authenticate and parse a status webhook. Returns 0 and fills
	 * reports[0..*n_reports) (at most max_reports), or -EACCES when the
	 * request is not authentic (the core answers 401), -EINVAL when it is
	 * malformed (400). Called from a loop thread: MUST NOT block, and
	 * MUST be safe to call concurrently (treat state as read-only).
	 * Optional; absent means the channel takes no webhooks. */
	int (*inbound)(void *state, const struct smis_inbound *in,
		       struct smis_report *reports, size_t max_reports,
		       size_t *n_reports);
	/* CPU-heavy preparation of a SEND (end-to-end sealing, say), which the
	 * core runs on one of its worker threads right before start(SMIS_OP_SEND)
	 * for the same message, so the event loops go on serving other
	 * messages' I/O meanwhile. It may read `msg` and `state` (read-only:
	 * other workers and the loops use the instance at the same time)
	 * and write `*call` (exclusively its own until start runs); of the core
	 * API it may call log, alloc, free, now_ms and monotonic_ms only. It
	 * returns nothing: start runs next whatever happened and decides, so
	 * start MUST also work on a call that was not prepared (a core may run
	 * prepare inline, or not at all). Optional. */
	void (*prepare_send)(void *state, const struct smis_message *msg, void **call);
};

/* ------------------------------------------------------------------ */
/* Strategy plugins                                                     */
/* ------------------------------------------------------------------ */

/* One operation already performed for the message, as strategies see it. */
struct smis_attempt_view {
	const char *channel;      /* channel instance name */
	unsigned channel_caps;
	enum smis_op op;
	const struct smis_outcome *outcome;
};

struct smis_job_view {
	size_t size;
	const struct smis_message *msg;
	const struct smis_attempt_view *attempts; /* oldest first */
	size_t n_attempts;
	/* Index of the first attempt made while this step was current: a step
	 * reasons about attempts[step_first_attempt..n_attempts). */
	size_t step_first_attempt;
};

/* decide() verdicts. */
enum smis_verdict {
	SMIS_VERDICT_ACT = 1,  /* perform *action, then call decide again */
	SMIS_VERDICT_NEXT = 2, /* this step is done without delivering: go on
				* with the next step of the chain (or end) */
	SMIS_VERDICT_STOP = 3, /* the chain ends here */
};

struct smis_action {
	enum smis_op op;
	const char *channel; /* borrowed from the strategy's state */
};

struct smis_strategy_ops {
	size_t size;
	/* As for channels; use api->channel_caps to check channel names. */
	int (*create)(const struct smis_core_api *api, struct smis_instance *self,
		      struct smis_config *cfg, void **state);
	void (*destroy)(void *state);
	/* A pure function of `job` (and the configuration in `state`): returns
	 * a verdict and fills *action for SMIS_VERDICT_ACT. MUST NOT block.
	 * A negative errno (or any other value) ends the chain: the message
	 * then fails with error "strategy_error" unless a send succeeded. */
	int (*decide)(void *state, const struct smis_job_view *job,
		      struct smis_action *action);
};

/* ------------------------------------------------------------------ */
/* The one exported symbol                                              */
/* ------------------------------------------------------------------ */

enum smis_plugin_kind {
	SMIS_PLUGIN_CHANNEL = 1,
	SMIS_PLUGIN_STRATEGY = 2,
};

struct smis_plugin_descriptor {
	unsigned abi_version;   /* SMIS_PLUGIN_ABI_VERSION */
	size_t size;            /* sizeof(struct smis_plugin_descriptor) */
	enum smis_plugin_kind kind;
	const char *name;       /* same word as the file: "ringring" */
	const char *version;    /* plugin's own version string */
	const char *description;
	unsigned caps;          /* SMIS_CAP_* for channels */
	const struct smis_channel_ops *channel;   /* kind == CHANNEL */
	const struct smis_strategy_ops *strategy; /* kind == STRATEGY */
};

#define SMIS_PLUGIN_SYMBOL "smis_plugin_descriptor"

/* Helper for plugin authors: copy a string into a fixed outcome field. */
static inline void smis_outcome_set(char *dst, size_t dstlen, const char *src)
{
	size_t i = 0;
	if (dstlen == 0)
		return;
	for (; src && src[i] && i + 1 < dstlen; i++)
		dst[i] = src[i];
	dst[i] = '\0';
}
#define SMIS_OUTCOME_SET(field, src) smis_outcome_set((field), sizeof(field), (src))

/* Helper for plugin authors, the ABI rule above: whether `member` of *ptr,
 * a `type` that starts with `size`, lies within what its writer filled in.
 * A member a core older than the plugin's header did not have is absent:
 *     const char *ref = SMIS_HAS_MEMBER(struct smis_message, msg, provider_ref)
 *                       ? msg->provider_ref : NULL; */
#define SMIS_HAS_MEMBER(type, ptr, member) \
	((ptr)->size >= offsetof(type, member) + sizeof(((type *)0)->member))

#ifdef __cplusplus
}
#endif
#endif /* SMIS_PLUGIN_H */
