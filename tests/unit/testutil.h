/* Shared helpers for the Check unit tests. */
#ifndef LT_TESTUTIL_H
#define LT_TESTUTIL_H

#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/pool.h"
#include "core/tensor.h"

/* path of a file under tests/data (LUCID_TESTDATA, set by make check) */
static inline const char *lt_data(const char *rel)
{
    static char buf[4096];
    const char *root = getenv("LUCID_TESTDATA");
    snprintf(buf, sizeof buf, "%s/%s", root ? root : "tests/data", rel);
    return buf;
}

/* max |a - b| over two same-shaped tensors of any dtype */
static inline double lt_max_abs_diff(const lc_tensor *a, const lc_tensor *b)
{
    ck_assert_msg(lc_tensor_same_shape(a, b), "shape mismatch");
    double m = 0;
    int64_t n = lc_tensor_numel(a);
    for (int64_t i = 0; i < n; i++) {
        double d = fabs(lc_tensor_get(a, i) - lc_tensor_get(b, i));
        if (d > m || isnan(d))
            m = isnan(d) ? INFINITY : d;
    }
    return m;
}

static inline double lt_max_abs(const lc_tensor *a)
{
    double m = 0;
    int64_t n = lc_tensor_numel(a);
    for (int64_t i = 0; i < n; i++)
        if (fabs(lc_tensor_get(a, i)) > m)
            m = fabs(lc_tensor_get(a, i));
    return m;
}

/* f32 tensor from a literal array */
static inline lc_tensor *lt_tensor(int ndim, const int64_t *shape, const float *vals)
{
    lc_tensor *t = lc_tensor_new(LC_F32, ndim, shape);
    ck_assert_ptr_nonnull(t);
    memcpy(lc_tensor_data(t), vals, lc_tensor_nbytes(t));
    return t;
}

/* runs a suite in fork mode with a 2-thread pool; returns the exit status */
static inline int lt_run(Suite *s)
{
    lc_pool_init(2);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

#endif
