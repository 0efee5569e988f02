#include "testutil.h"

START_TEST(test_placeholder_ops)
{
    ck_assert_int_eq(1, 1);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("ops");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_placeholder_ops);
    suite_add_tcase(s, tc);
    return lt_run(s);
}
