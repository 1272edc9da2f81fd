/*
 * json_reuse.c - a json-c tokener kept from one parse to the next, and thrown
 * away after a parse that did not end cleanly (json_reuse.h says why).
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

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
