/*
 * passthrough.h - institution-side encryption of a GovApp message
 * ("passthrough", docs/passthrough.md).
 *
 * An institution that does not want SMIS to see a message body asks SMIS
 * for the citizen's device keys (POST /v1/recipients/keys), seals the
 * plaintext of docs/e2e-format.md section 7 to every device itself, and
 * sends the envelopes with POST /v1/messages (`encrypted` + `message_id`).
 * This is the sealing step, as a C function an institution can link (the
 * smis-encrypt tool is built on it). It does no I/O.
 *
 * Thread context: no global state, safe from any thread, never blocks on
 * I/O; it costs two X25519 operations per device.
 */
#ifndef SMIS_PASSTHROUGH_H
#define SMIS_PASSTHROUGH_H

/* SMIS takes at most this many envelopes per message (openapi.yaml). */
#define SMIS_PASSTHROUGH_MAX_ENVELOPES 16

/*
 * Seal plaintext_json to every device listed in keys_json.
 *
 * keys_json (borrowed for the call): the body of a 200 answer to
 *   POST /v1/recipients/keys, {"message_id","encryption","devices":[{
 *   "device_id","public_key","key_alg"}],...}. `encryption` must be
 *   SMIS_E2E_SUITE. Devices whose `key_alg` is not "X25519" (absent means
 *   X25519; null or a number is malformed, not absent) or whose key is not
 *   a usable X25519 public key are skipped, as SMIS itself does; a device
 *   id seen twice is sealed once, with its first usable key.
 * plaintext_json (borrowed for the call): a JSON object, the envelope
 *   plaintext of docs/e2e-format.md section 7: {"v":1,"message_id":...,
 *   "content":{"<lang>":{"title","body","body_text","format"}}}. `v` and
 *   `message_id` are filled in when absent and must be 1 and the keys'
 *   message id when present; `content` must hold at least one language,
 *   each with string `title` and `body`; `format` defaults to "text",
 *   `body_text` to `body` for text (an "html" entry must carry its own
 *   `body_text`: this function does not render HTML). The object is sealed
 *   as compact JSON. Nothing is sanitised: HTML goes to the app as given.
 *
 * On success returns 0 and stores, caller frees each with free():
 *   *encrypted_json: {"encryption":"<suite>","envelopes":[{"device_id",
 *     "enc","ciphertext"},...]}, the value of `encrypted` in POST
 *     /v1/messages;
 *   *message_id: the id the envelopes are bound to, to send as
 *     `message_id` with them.
 * Errors (both outputs set to NULL when the pointers are not NULL):
 *   -EINVAL  a NULL argument, keys_json not such an answer (not JSON in
 *            UTF-8, no valid message_id, another suite, no devices array),
 *            or plaintext_json not such an object (or not UTF-8);
 *   -ENODEV  no device has a usable key (nothing can be sent to the app);
 *   -E2BIG   more than SMIS_PASSTHROUGH_MAX_ENVELOPES usable devices, or a
 *            plaintext over SMIS_E2E_MAX_PT_LEN;
 *   -ENOMEM, -EIO (unexpected OpenSSL failure).
 */
int smis_passthrough_seal(const char *keys_json, const char *plaintext_json, char **encrypted_json,
			  char **message_id);

struct json_object;

/*
 * Releases o (json_object_put) after wiping json-c's copies of the clear
 * text it holds: every string of its tree, and the compact text json-c
 * last made of o (JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE,
 * as smis_passthrough_seal and smis-encrypt make it). Not wiped: what
 * json-c freed before (a tokener's scratch, a printbuf it outgrew).
 */
void smis_passthrough_json_put_cleansed(struct json_object *o);

#endif /* SMIS_PASSTHROUGH_H */
