/* A suite for checking tests/run_tests.sh itself (run_tests.sh --self-test):
 * one test skips, one needs more than its tcase timeout unless the runner's
 * CK_TIMEOUT_MULTIPLIER applies. Not a test_*.c file: make test runs it only
 * through the self-test. */
#include <time.h>

#include "util_test.h"

START_TEST(skips_with_reason) { tfm_test_skip("a reason"); }
END_TEST

START_TEST(outlives_its_timeout) {
    struct timespec t = {1, 500000000}; /* 1.5 s under a 1 s timeout */
    while (nanosleep(&t, &t) != 0) {
    }
    ck_assert_int_eq(1, 1);
}
END_TEST

int main(void) {
    Suite *s = suite_create("runner_selftest");
    TCase *tc = tcase_create("runner");
    tcase_set_timeout(tc, 1);
    tcase_add_test(tc, skips_with_reason);
    tcase_add_test(tc, outlives_its_timeout);
    suite_add_tcase(s, tc);
    return tfm_test_main(s);
}
