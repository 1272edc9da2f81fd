/*
 * fuzz_jwks.c - a token issuer's key file (daemon/jwt_auth.c,
 * smisd_jwt_issuer_new): the JWKS or PEM text an operator downloads from the
 * gateway's realm and names as `key_file` in token_issuers, read at every
 * start and reload.
 *
 * The input is the file's content, handed over through an anonymous memory
 * file. A refused file gives one line of reason, without control characters
 * (it goes to the log and to `smisd --check-config`). An accepted one holds no
 * private key (no JWK with "d", no PEM block but PUBLIC KEY or CERTIFICATE),
 * and its keys verify or refuse a token signed with the test issuer's EC key
 * (tests/data/jwt/ec.key, kid "ec-1") without harm.
 */
#include "config.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <json-c/json.h>

#include "fuzz_common.h"
#include "jwt_auth.h"

#define ISS "https://api-acpt.ehealth.fgov.be/auth/realms/M2M"
#define NOW 1893456000 /* 2030-01-01, as in fuzz_jwt */

/* ES256, kid "ec-1", iss ISS, aud "smis", exp 2100, client_id "fuzz". */
static const char TOKEN[] =
	"eyJhbGciOiJFUzI1NiIsImtpZCI6ImVjLTEifQ."
	"eyJpc3MiOiJodHRwczovL2FwaS1hY3B0LmVoZWFsdGguZmdvdi5iZS9hdXRoL3JlYWxtcy9NMk0iLCJhdWQiOiJzbWlz"
	"IiwiZXhwIjo0MTAyNDQ0ODAwLCJjbGllbnRfaWQiOiJmdXp6In0."
	"3XaRNg6mgknSGQcgVSrO_O3fw5pcsSoKHb95YBkdDNkOaPPRpb_365jrrKinBBhJrx_CBHtg4KnK6P4r5wNkpw";

static int fd = -1;
static char path[64];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fd = memfd_create("fuzz_jwks", 0);
	if (fd < 0) {
		perror("fuzz_jwks: memfd_create");
		exit(1);
	}
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	return 0;
}

static int load(const uint8_t *data, size_t size)
{
	if (ftruncate(fd, 0) != 0)
		return -1;
	return pwrite(fd, data, size, 0) == (ssize_t)size ? 0 : -1;
}

/* No JWK of an accepted JWKS carries private key material. */
static void check_jwks_public(const char *text)
{
	struct json_object *root = json_tokener_parse(text), *keys;
	FUZZ_CHECK(root && json_object_object_get_ex(root, "keys", &keys));
	for (size_t i = 0; i < json_object_array_length(keys); i++)
		FUZZ_CHECK(!json_object_object_get_ex(json_object_array_get_idx(keys, i), "d", NULL));
	json_object_put(root);
}

/* Every PEM block of an accepted file is a public key or a certificate. */
static void check_pem_public(const char *text)
{
	for (const char *p = strstr(text, "-----BEGIN "); p; p = strstr(p + 1, "-----BEGIN ")) {
		if (p != text && p[-1] != '\n' && p[-1] != '\r')
			continue;
		FUZZ_CHECK(strncmp(p, "-----BEGIN PUBLIC KEY-----", 26) == 0 ||
			   strncmp(p, "-----BEGIN CERTIFICATE-----", 27) == 0);
	}
}

static void check_verify(const struct smisd_jwt_issuer *is)
{
	char client_id[64];
	const char *reason = NULL;
	int rc = smisd_jwt_verify(&is, 1, TOKEN, NOW, client_id, sizeof(client_id), &reason);
	if (rc == 0) {
		FUZZ_CHECK(strcmp(client_id, "fuzz") == 0);
		return;
	}
	FUZZ_CHECK(rc == -EACCES && reason);
	FUZZ_CHECK(strcmp(reason, "unknown_key") == 0 || strcmp(reason, "kid_required") == 0 ||
		   strcmp(reason, "bad_signature") == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[256];
	if (load(data, size) != 0)
		return 0;
	memset(err, 'x', sizeof(err));
	struct smisd_jwt_issuer *is = smisd_jwt_issuer_new(ISS, "smis", path, 30, err, sizeof(err));
	FUZZ_CHECK(memchr(err, '\0', sizeof(err)) != NULL);
	if (!is) {
		FUZZ_CHECK(err[0] != '\0');
		for (const char *c = err; *c; c++) /* one line in the log */
			FUZZ_CHECK((unsigned char)*c >= 0x20 && *c != 0x7f);
		return 0;
	}
	FUZZ_CHECK(err[0] == '\0');
	char *text = fuzz_cstr(data, size);
	if (text) {
		const char *first = text + strspn(text, " \t\r\n");
		if (*first == '{')
			check_jwks_public(text);
		else
			check_pem_public(text);
		free(text);
	}
	check_verify(is);
	smisd_jwt_issuer_free(is);
	return 0;
}
