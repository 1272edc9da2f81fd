/*
 * json_reuse.c - a json-c tokener kept from one parse to the next, and thrown
 * away after a parse that did not end cleanly (json_reuse.h says why).
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include <limits.h>

#include <json-c/json_object.h>
#include <json-c/json_tokener.h>

#include "json_reuse.h"

struct json_tokener *smis_json_reuse_get(struct json_tokener **slot, int depth, int flags)
{
	if (*slot) {
		json_tokener_reset(*slot);
		return *slot;
	}
	*slot = json_tokener_new_ex(depth);
	if (*slot)
		json_tokener_set_flags(*slot, flags);
	return *slot;
}

void smis_json_reuse_done(struct json_tokener **slot, bool clean)
{
	if (!clean)
		smis_json_reuse_free(slot);
}

void smis_json_reuse_free(struct json_tokener **slot)
{
	if (*slot)
		json_tokener_free(*slot);
	*slot = NULL;
}

/* The whole of buf[0..len) as one value with `tok`, or NULL. */
static struct json_object *parse_whole(struct json_tokener *tok, const char *buf, size_t len)
{
	struct json_object *obj = json_tokener_parse_ex(tok, buf, (int)len);

	if (obj && (json_tokener_get_error(tok) != json_tokener_success ||
		    json_tokener_get_parse_end(tok) != len)) {
		json_object_put(obj);
		obj = NULL;
	}
	return obj;
}

struct json_object *smis_json_reuse_parse(struct json_tokener **slot, int depth, int flags, const char *buf,
					  size_t len)
{
	struct json_tokener *own = NULL, **use = slot ? slot : &own;
	struct json_object *obj;

	if (!buf || len == 0 || len > INT_MAX || !smis_json_reuse_get(use, depth, flags))
		return NULL;
	obj = parse_whole(*use, buf, len);
	smis_json_reuse_done(use, obj != NULL);
	smis_json_reuse_free(&own);
	return obj;
}

static void key_destructor(void *tok)
{
	json_tokener_free(tok);
}

/* Made on first use, under a lock: pthread_once() could not say which
 * parser's key to make. The flag is read without the lock on every get. */
static bool key_ready(struct smis_json_thread_tokener *t)
{
	static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
	bool made;

	if (atomic_load_explicit(&t->key_made, memory_order_acquire))
		return true;
	pthread_mutex_lock(&lock);
	made = atomic_load_explicit(&t->key_made, memory_order_relaxed) ||
	       pthread_key_create(&t->key, key_destructor) == 0;
	atomic_store_explicit(&t->key_made, made, memory_order_release);
	pthread_mutex_unlock(&lock);
	return made;
}

struct json_tokener *smis_json_thread_get(struct smis_json_thread_tokener *t)
{
	struct json_tokener *kept, *tok;

	if (!key_ready(t))
		return NULL;
	kept = tok = pthread_getspecific(t->key);
	if (!smis_json_reuse_get(&tok, t->depth, t->flags))
		return NULL;
	if (tok != kept && pthread_setspecific(t->key, tok) != 0) {
		json_tokener_free(tok);
		return NULL;
	}
	return tok;
}

void smis_json_thread_done(struct smis_json_thread_tokener *t, bool clean)
{
	if (!clean)
		smis_json_thread_free(t);
}

void smis_json_thread_free(struct smis_json_thread_tokener *t)
{
	struct json_tokener *tok;

	if (!atomic_load_explicit(&t->key_made, memory_order_acquire))
		return;
	tok = pthread_getspecific(t->key);
	smis_json_reuse_free(&tok);
	pthread_setspecific(t->key, NULL);
}

struct json_object *smis_json_thread_parse(struct smis_json_thread_tokener *t, const char *buf, size_t len)
{
	struct json_tokener *tok;
	struct json_object *obj;

	if (!buf || len == 0 || len > INT_MAX || !(tok = smis_json_thread_get(t)))
		return NULL;
	obj = parse_whole(tok, buf, len);
	smis_json_thread_done(t, obj != NULL);
	return obj;
}
