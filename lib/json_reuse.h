/*
 * json_reuse.h - a json-c tokener kept from one parse to the next, for the
 * parsers of hot paths (smisd's request bodies, the RingRing and GovApp
 * plugins' answers, the two simulators' requests): making one costs four
 * allocations and a stack each time.
 *
 * Only a tokener whose parse ended cleanly may be kept: json-c 0.16's
 * json_tokener_reset() leaves a pending high surrogate in place, so after a
 * body cut off at "\ud83d" the next body's first \u escape would come out
 * with a U+FFFD in front of it. Hence the pairs below: get a tokener (reset,
 * ready), parse, then give it back saying whether the parse ended cleanly;
 * one that did not is freed, and the next get makes a new one.
 */
#ifndef SMIS_JSON_REUSE_H
#define SMIS_JSON_REUSE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

struct json_tokener;

/*
 * A tokener owned by the caller, in *slot (NULL until the first get), for
 * one parse at a time. Returns *slot reset, or a new one made with `depth`
 * and json-c's `flags` (JSON_TOKENER_STRICT...) and stored there; NULL if
 * out of memory.
 */
struct json_tokener *smis_json_reuse_get(struct json_tokener **slot, int depth, int flags);

/* After the parse: *slot is kept if it ended cleanly, else freed (NULL). */
void smis_json_reuse_done(struct json_tokener **slot, bool clean);

/* Free *slot (NULL is fine) and set it to NULL. */
void smis_json_reuse_free(struct json_tokener **slot);

/*
 * The one JSON value of buf[0..len), or NULL: not JSON, something but
 * JSON's whitespace after the value (json-c reads that whitespace itself
 * and stops at any other byte, a NUL too), len 0 or past INT_MAX, or no
 * memory. Parsed with *slot's tokener (get, then done as above); with a
 * NULL slot, with one made for this call only.
 */
struct json_object *smis_json_reuse_parse(struct json_tokener **slot, int depth, int flags, const char *buf,
					  size_t len);

/*
 * One tokener per thread, made on a thread's first get and freed when the
 * thread ends (a thread-specific key, not _Thread_local, so that a pool
 * thread's tokener goes with it). Define one per parser, statically:
 *
 *   static struct smis_json_thread_tokener body_tok =
 *           SMIS_JSON_THREAD_TOKENER(16, JSON_TOKENER_STRICT);
 *
 * Not in a plugin: the key's destructor would be code that a reload
 * unloads while the threads holding tokeners go on (and every load would
 * take another key). A plugin keeps its tokener in its instance instead.
 */
struct smis_json_thread_tokener {
	int depth;
	int flags;
	pthread_key_t key;
	atomic_bool key_made;
};
#define SMIS_JSON_THREAD_TOKENER(d, f) { .depth = (d), .flags = (f) }

/* The calling thread's tokener, reset; NULL if out of memory (or keys). */
struct json_tokener *smis_json_thread_get(struct smis_json_thread_tokener *t);

/* After the parse: kept if it ended cleanly, else freed. */
void smis_json_thread_done(struct smis_json_thread_tokener *t, bool clean);

/* smis_json_reuse_parse() with the calling thread's tokener. */
struct json_object *smis_json_thread_parse(struct smis_json_thread_tokener *t, const char *buf, size_t len);

/* Free the calling thread's tokener now: the main thread's (which tests
 * parse on) is never given to the key's destructor. */
void smis_json_thread_free(struct smis_json_thread_tokener *t);

#endif
