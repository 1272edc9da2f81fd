/* Recipient normalisation: national and international forms, mobiles only. */
#include <CUnit/Basic.h>
#include <string.h>

#include "phone.h"

static void expect(const char *in, enum smisd_phone_result want, const char *e164,
		   const char *const *cc)
{
	char out[SMISD_E164_MAX];
	enum smisd_phone_result r = smisd_phone_normalise(in, out, cc);
	CU_ASSERT_EQUAL(r, want);
	if (r != want)
		fprintf(stderr, "\n  input '%s': got %d want %d\n", in, r, want);
	if (want == SMISD_PHONE_OK)
		CU_ASSERT_STRING_EQUAL(out, e164);
}

static void test_belgian_forms(void)
{
	expect("+32470123456", SMISD_PHONE_OK, "+32470123456", NULL);
	expect("0470 12 34 56", SMISD_PHONE_OK, "+32470123456", NULL);
	expect("0470/12.34.56", SMISD_PHONE_OK, "+32470123456", NULL);
	expect("0032470123456", SMISD_PHONE_OK, "+32470123456", NULL);
	expect("+32 (0)470 12 34 56", SMISD_PHONE_OK, "+32470123456", NULL);
	expect("+32 499-99-99-99", SMISD_PHONE_OK, "+32499999999", NULL);
	expect("0456123456", SMISD_PHONE_OK, "+32456123456", NULL);
}

static void test_not_mobile(void)
{
	expect("+3221234567", SMISD_PHONE_NOT_MOBILE, NULL, NULL);   /* Brussels landline */
	expect("042123456", SMISD_PHONE_NOT_MOBILE, NULL, NULL);     /* Liège 04 fixed */
	expect("+32441234567", SMISD_PHONE_NOT_MOBILE, NULL, NULL);  /* 44x is not mobile */
	expect("080012345", SMISD_PHONE_NOT_MOBILE, NULL, NULL);     /* toll free */
}

static void test_invalid(void)
{
	expect("", SMISD_PHONE_INVALID, NULL, NULL);
	expect("hello", SMISD_PHONE_INVALID, NULL, NULL);
	expect("+32 470 12 34 5a", SMISD_PHONE_INVALID, NULL, NULL);
	expect("+3247012345678", SMISD_PHONE_INVALID, NULL, NULL);  /* too long for BE */
	expect("+32470", SMISD_PHONE_INVALID, NULL, NULL);
	expect("470123456", SMISD_PHONE_INVALID, NULL, NULL);       /* no prefix at all */
	expect("+1234567890123456", SMISD_PHONE_INVALID, NULL, NULL); /* > 15 digits */
	expect("++32470123456", SMISD_PHONE_INVALID, NULL, NULL);
	/* The most digits kept (31), in national form: "32" + 30 digits + NUL
	 * wrote one byte past the work buffer (AddressSanitizer in the
	 * sanitizer build; found by tests/fuzz/fuzz_phone). One more is refused
	 * before any copy. */
	expect("0123456000123456005243455243456", SMISD_PHONE_INVALID, NULL, NULL);
	expect("01234560001234560052434552434567", SMISD_PHONE_INVALID, NULL, NULL);
}

static void test_countries(void)
{
	static const char *const nl[] = { "31", NULL };
	expect("+31612345678", SMISD_PHONE_COUNTRY, NULL, NULL);
	expect("+31612345678", SMISD_PHONE_OK, "+31612345678", nl);
	expect("+33612345678", SMISD_PHONE_COUNTRY, NULL, nl);
	expect("0031612345678", SMISD_PHONE_OK, "+31612345678", nl);
	CU_ASSERT_STRING_EQUAL(smisd_phone_result_code(SMISD_PHONE_NOT_MOBILE), "not_mobile");
	CU_ASSERT_STRING_EQUAL(smisd_phone_result_code(SMISD_PHONE_COUNTRY), "country_not_allowed");
	CU_ASSERT_STRING_EQUAL(smisd_phone_result_code(SMISD_PHONE_INVALID), "invalid_number");
}

/* "(0)" after any calling code is the national trunk prefix, not dialled
 * from abroad: dropped, as for Belgium, and only there. */
static void test_trunk_zero_in_parentheses(void)
{
	static const char *const cc[] = { "31", "44", "49", "352", NULL };
	expect("+44 (0)7700 900123", SMISD_PHONE_OK, "+447700900123", cc);
	expect("+49 (0)151 2345 6789", SMISD_PHONE_OK, "+4915123456789", cc);
	expect("+31(0)6 1234 5678", SMISD_PHONE_OK, "+31612345678", cc);
	expect("0044 (0)7700 900123", SMISD_PHONE_OK, "+447700900123", cc);
	expect("+352 (0)621 123 456", SMISD_PHONE_OK, "+352621123456", cc);
	expect("0032 (0)470 12 34 56", SMISD_PHONE_OK, "+32470123456", cc);
	expect("+32(0)470123456", SMISD_PHONE_OK, "+32470123456", NULL);
	/* Still a country the institution may not reach. */
	expect("+44 (0)7700 900123", SMISD_PHONE_COUNTRY, NULL, NULL);
	/* Not after a calling code (1-3 digits): the 0 is a digit as before. */
	expect("+44 7700 (0)90012", SMISD_PHONE_OK, "+447700090012", cc);
	/* A national number: its own trunk 0, whatever the parentheses. */
	expect("(0)470 12 34 56", SMISD_PHONE_OK, "+32470123456", NULL);
}

/* Where the 0 is dialled from abroad too, "(0)" is part of the number:
 * +39 06 (Rome) is not +39 6. */
static void test_zero_kept_where_dialled(void)
{
	static const char *const cc[] = { "39", "378", "225", "3", NULL };
	expect("+39 (0)6 1234 5678", SMISD_PHONE_OK, "+390612345678", cc);
	expect("0039 (0)6 1234 5678", SMISD_PHONE_OK, "+390612345678", cc);
	expect("+378 (0)549 123456", SMISD_PHONE_OK, "+3780549123456", cc);
	expect("+225 (0)7 12 34 56 78", SMISD_PHONE_OK, "+2250712345678", cc);
	/* Only those codes: +3 is not +39, and +33 still loses its trunk 0. */
	expect("+33 (0)6 12 34 56 78", SMISD_PHONE_OK, "+33612345678", cc);
}

int main(void)
{
	CU_pSuite s;
	unsigned failed;
	if (CU_initialize_registry() != CUE_SUCCESS)
		return 2;
	s = CU_add_suite("phone", NULL, NULL);
	CU_add_test(s, "belgian forms", test_belgian_forms);
	CU_add_test(s, "not mobile", test_not_mobile);
	CU_add_test(s, "invalid", test_invalid);
	CU_add_test(s, "countries", test_countries);
	CU_add_test(s, "trunk zero in parentheses", test_trunk_zero_in_parentheses);
	CU_add_test(s, "zero kept where dialled", test_zero_kept_where_dialled);
	CU_basic_set_mode(CU_BRM_VERBOSE);
	CU_basic_run_tests();
	failed = CU_get_number_of_failures();
	CU_cleanup_registry();
	return failed ? 1 : 0;
}
