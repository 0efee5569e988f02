#include "testutil.h"

START_TEST(test_placeholder_rng)
{
    ck_assert_int_eq(1, 1);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("rng");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_placeholder_rng);
    suite_add_tcase(s, tc);
    return lt_run(s);
}
