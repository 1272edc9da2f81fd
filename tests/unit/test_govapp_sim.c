/*
 * test_govapp_sim.c - govapp-sim's state and API operations
 * (tools/govapp-sim/store.c), called directly, without its HTTP server:
 * what a simulated device makes of the envelopes it is sent.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <CUnit/Basic.h>
#include <json-c/json.h>

#include "e2e.h"
#include "sim.h"

#define PHONE "+32470000001"

/* o[key] as a string, "" when absent or null. */
static const char *jstr(struct json_object *o, const char *key)
{
	const char *v = json_object_get_string(json_object_object_get(o, key));

	return v ? v : "";
}

/* A simulator with one citizen and one device d-1; *pk gets its public
 * key (free()). */
static void sim_with_device(struct sim *s, char **pk)
{
	static const char citizen[] = "{\"phone\":\"" PHONE "\",\"devices\":[{\"device_id\":\"d-1\"}]}";
	struct json_object *o, *devs;
	char *resp = NULL;
	int status = 0;

	*pk = NULL;
	CU_ASSERT_EQUAL_FATAL(sim_init(s, 16, 0), 0);
	s->quiet = true;
	sim_ctl_citizen(s, citizen, strlen(citizen), &status, &resp);
	CU_ASSERT_EQUAL_FATAL(status, 200);
	o = json_tokener_parse(resp);
	CU_ASSERT_FATAL(o && json_object_object_get_ex(o, "devices", &devs));
	*pk = strdup(jstr(json_object_array_get_idx(devs, 0), "public_key"));
	json_object_put(o);
	free(resp);
}

/* Send `plaintext` sealed to d-1 as message `mid`; the send is accepted
 * whatever the plaintext holds (the backend cannot read it). */
static void send_sealed(struct sim *s, const char *pk, const char *mid, const char *plaintext)
{
	struct json_object *body = json_object_new_object(), *envs = json_object_new_array(),
			   *env = json_object_new_object(), *title = json_object_new_object(),
			   *langs = json_object_new_array();
	char *enc = NULL, *ct = NULL, *resp = NULL;
	const char *text;
	int status = 0;

	CU_ASSERT_EQUAL_FATAL(smis_e2e_seal(mid, "d-1", pk, (const unsigned char *)plaintext,
					    strlen(plaintext), &enc, &ct), 0);
	json_object_object_add(env, "device_id", json_object_new_string("d-1"));
	json_object_object_add(env, "enc", json_object_new_string(enc));
	json_object_object_add(env, "ciphertext", json_object_new_string(ct));
	json_object_array_add(envs, env);
	json_object_object_add(title, "nl", json_object_new_string("Titel"));
	json_object_array_add(langs, json_object_new_string("nl"));
	json_object_object_add(body, "message_id", json_object_new_string(mid));
	json_object_object_add(body, "phone", json_object_new_string(PHONE));
	json_object_object_add(body, "sender", json_object_new_string("Test"));
	json_object_object_add(body, "title", title);
	json_object_object_add(body, "languages", langs);
	json_object_object_add(body, "encryption", json_object_new_string(SMIS_E2E_SUITE));
	json_object_object_add(body, "envelopes", envs);
	text = json_object_to_json_string(body);
	sim_api_send(s, text, strlen(text), &status, &resp);
	CU_ASSERT_EQUAL(status, 202);
	free(resp);
	free(enc);
	free(ct);
	json_object_put(body);
}

/* The inbox entry of message `mid` (put by the caller), or NULL. */
static struct json_object *inbox_entry(struct sim *s, const char *mid)
{
	struct json_object *o, *msgs, *found = NULL;
	char *resp = NULL;
	int status = 0;

	sim_ctl_inbox(s, PHONE, &status, &resp);
	CU_ASSERT_EQUAL(status, 200);
	o = json_tokener_parse(resp);
	free(resp);
	if (!o || !json_object_object_get_ex(o, "messages", &msgs)) {
		json_object_put(o);
		return NULL;
	}
	for (size_t i = 0; i < json_object_array_length(msgs) && !found; i++) {
		struct json_object *m = json_object_array_get_idx(msgs, i);

		if (strcmp(jstr(m, "message_id"), mid) == 0)
			found = json_object_get(m);
	}
	json_object_put(o);
	return found;
}

/* docs/e2e-format.md: `v` is the number 1, and an app refuses any other
 * version; "1", 1.0 or true are not it, though json-c reads each as 1. */
static void test_plaintext_version(void)
{
	static const struct {
		const char *v;
		bool opens;
	} cases[] = {
		{ "1", true }, { "\"1\"", false }, { "1.0", false }, { "2", false },
		{ "true", false }, { "null", false }, { "[1]", false },
	};
	struct sim s;
	char *pk = NULL;

	sim_with_device(&s, &pk);
	CU_ASSERT_PTR_NOT_NULL_FATAL(pk);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char mid[32], pt[256];
		struct json_object *m;

		snprintf(mid, sizeof(mid), "msg_v%zu", i);
		snprintf(pt, sizeof(pt),
			 "{\"v\":%s,\"message_id\":\"%s\",\"content\":{\"nl\":{\"title\":\"Titel\","
			 "\"body\":\"Tekst\",\"body_text\":\"Tekst\",\"format\":\"text\"}}}",
			 cases[i].v, mid);
		send_sealed(&s, pk, mid, pt);
		m = inbox_entry(&s, mid);
		CU_ASSERT_PTR_NOT_NULL_FATAL(m);
		if (json_object_get_boolean(json_object_object_get(m, "decrypt_ok")) != cases[i].opens)
			fprintf(stderr, "\n  v = %s: decrypt_ok is not %d\n", cases[i].v, cases[i].opens);
		CU_ASSERT_EQUAL(json_object_get_boolean(json_object_object_get(m, "decrypt_ok")), cases[i].opens);
		CU_ASSERT_STRING_EQUAL(jstr(m, "status"), cases[i].opens ? "accepted" : "failed");
		CU_ASSERT_STRING_EQUAL(jstr(m, "decrypt_error"), cases[i].opens ? "" : "bad_plaintext");
		json_object_put(m);
	}
	free(pk);
	sim_fini(&s);
}

int main(void)
{
	CU_pSuite suite;
	int rc = 1;

	if (CU_initialize_registry() != CUE_SUCCESS)
		return 1;
	suite = CU_add_suite("govapp-sim", NULL, NULL);
	if (suite == NULL || !CU_add_test(suite, "plaintext version", test_plaintext_version))
		goto out;
	CU_basic_set_mode(CU_BRM_VERBOSE);
	CU_basic_run_tests();
	rc = CU_get_number_of_failures() == 0 && CU_get_number_of_tests_failed() == 0 &&
			     CU_get_number_of_tests_run() > 0 ?
		     0 :
		     1;
out:
	CU_cleanup_registry();
	return rc;
}
