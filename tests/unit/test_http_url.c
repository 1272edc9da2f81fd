/* The base URL check every channel plugin applies to its base_url. */
#include <CUnit/Basic.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "http_url.h"

static void expect_ok(const char *in, const char *want)
{
	char *url = strdup(in);
	const char *why = NULL;
	int rc = smis_http_base_url(url, &why);

	CU_ASSERT_EQUAL(rc, 0);
	if (rc != 0)
		fprintf(stderr, "\n  refused %s: %s\n", in, why);
	else
		CU_ASSERT_PTR_NULL(why);
	CU_ASSERT_STRING_EQUAL(url, want);
	free(url);
}

static void expect_refused(const char *in, const char *reason)
{
	char *url = in ? strdup(in) : NULL;
	const char *why = NULL;
	int rc = smis_http_base_url(url, &why);

	CU_ASSERT_EQUAL(rc, -EINVAL);
	if (in)
		CU_ASSERT_STRING_EQUAL(url, in); /* left as it is */
	free(url);
	CU_ASSERT_PTR_NOT_NULL_FATAL(why);
	CU_ASSERT_PTR_NOT_NULL(strstr(why, reason));
	if (rc != -EINVAL || !strstr(why, reason))
		fprintf(stderr, "\n  %s: rc %d, '%s', wanted '%s'\n", in ? in : "(null)", rc, why, reason);
}

static void test_accepted(void)
{
	expect_ok("http://127.0.0.1:18082/v1", "http://127.0.0.1:18082/v1");
	expect_ok("https://api.ringring.be/sms/v1/", "https://api.ringring.be/sms/v1"); /* trailing '/' off */
	expect_ok("https://backend.example//", "https://backend.example");
	expect_ok("HTTPS://Backend.Example:8443/api", "HTTPS://Backend.Example:8443/api"); /* kept as written */
	expect_ok("http://[::1]:8080/v1", "http://[::1]:8080/v1");
}

static void test_refused(void)
{
	char long_url[SMIS_HTTP_URL_MAX + 32];

	expect_refused(NULL, "is empty");
	expect_refused("", "is empty");
	expect_refused("127.0.0.1:18082/v1", "must start with http:// or https://");
	expect_refused("ftp://127.0.0.1/v1", "must start with http:// or https://");
	expect_refused("http:///v1", "has no host");
	expect_refused("http://", "");
	expect_refused("http://127.0.0.1:18082/v1?key=x", "has a query string");
	expect_refused("http://127.0.0.1:18082/v1?", "has a query string");
	expect_refused("http://127.0.0.1:18082/v1#top", "has a fragment");
	expect_refused("https://user:secret@api.example/v1", "user name or password");
	expect_refused("https://user@api.example/v1", "user name or password");
	expect_refused("http://127.0.0.1:18082/v 1", "space or a control character");
	expect_refused("http://127.0.0.1:18082/v1\n", "space or a control character");
	expect_refused("http://127.0.0.1:99999/v1", "is not a valid URL");
	memset(long_url, 'a', sizeof(long_url) - 1);
	memcpy(long_url, "https://", 8);
	long_url[sizeof(long_url) - 1] = '\0';
	expect_refused(long_url, "is too long");
}

int main(void)
{
	CU_pSuite s;
	unsigned failed;
	if (CU_initialize_registry() != CUE_SUCCESS)
		return 2;
	s = CU_add_suite("http_url", NULL, NULL);
	CU_add_test(s, "accepted base URLs", test_accepted);
	CU_add_test(s, "refused base URLs", test_refused);
	CU_basic_set_mode(CU_BRM_VERBOSE);
	CU_basic_run_tests();
	failed = CU_get_number_of_failures();
	CU_cleanup_registry();
	return failed ? 1 : 0;
}
