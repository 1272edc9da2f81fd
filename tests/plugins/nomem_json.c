/*
 * nomem_json.c - LD_PRELOAD for smisctl or smis-encrypt in an integration
 * test: json-c fails as without memory where a request is built.
 * json_object_new_string() of a string that begins "nomem-" returns NULL,
 * and json_object_object_add() of a string value that begins "nomem-add-"
 * returns -1 (the value left to the caller, as json-c leaves it); every
 * other call is json-c's own. A tool given "--reference nomem-1" must fail,
 * not send its request without the reference.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include <json-c/json.h>

#define FAIL_NEW "nomem-"
#define FAIL_ADD "nomem-add-"

static bool begins(const char *s, const char *prefix)
{
	return s && strncmp(s, prefix, strlen(prefix)) == 0;
}

json_object *json_object_new_string(const char *s)
{
	json_object *(*real)(const char *) = (json_object * (*)(const char *)) dlsym(RTLD_NEXT, __func__);

	if (begins(s, FAIL_NEW) && !begins(s, FAIL_ADD)) {
		errno = ENOMEM;
		return NULL;
	}
	return real(s);
}

int json_object_object_add(json_object *o, const char *key, json_object *v)
{
	int (*real)(json_object *, const char *, json_object *) =
		(int (*)(json_object *, const char *, json_object *))dlsym(RTLD_NEXT, __func__);

	if (json_object_is_type(v, json_type_string) && begins(json_object_get_string(v), FAIL_ADD)) {
		errno = ENOMEM;
		return -1;
	}
	return real(o, key, v);
}
