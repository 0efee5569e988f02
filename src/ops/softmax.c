/* Softmax and log-softmax along any dimension, max-subtracted so large
 * logits do not overflow. The tensor is seen as [outer, D, inner]; each
 * task owns whole lines of D values, so sums never depend on the thread
 * count. Sums of exponentials accumulate in double. */
#include <math.h>

#include "core/pool.h"
#include "ops.h"
#include "ops/prof.h"

typedef struct {
    const float *x;
    float *y;
    int64_t D, inner;
    int log;
} sm_job;

static void sm_lines(void *ctx, int64_t b, int64_t e)
{
    const sm_job *j = ctx;
    int64_t D = j->D, in = j->inner;
    for (int64_t l = b; l < e; l++) {
        int64_t base = (l / in) * D * in + l % in;
        const float *x = j->x + base;
        float *y = j->y + base;
        float mx = -INFINITY;
        for (int64_t d = 0; d < D; d++)
            if (x[d * in] > mx)
                mx = x[d * in];
        /* an all -inf line: torch gives NaN too (0/0); keep that */
        double s = 0;
        for (int64_t d = 0; d < D; d++)
            s += expf(x[d * in] - mx);
        if (j->log) {
            float ls = (float)log(s);
            for (int64_t d = 0; d < D; d++)
                y[d * in] = x[d * in] - mx - ls;
        } else {
            float r = (float)(1.0 / s);
            for (int64_t d = 0; d < D; d++)
                y[d * in] = expf(x[d * in] - mx) * r;
        }
    }
}

static lc_tensor *softmax_impl(const lc_tensor *x, int dim, int log, const char *op)
{
    int nd = x->ndim > 0 ? x->ndim : 1; /* a 0-d tensor is one line of one */
    if (dim < -nd || dim >= nd) {
        lc_err("%s: dimension %d out of range for %s", op, dim, LC_SHAPE_STR(x));
        return NULL;
    }
    if (dim < 0)
        dim += nd;
    int64_t D = 1, inner = 1, outer = 1;
    if (x->ndim > 0) {
        D = x->shape[dim];
        for (int i = 0; i < dim; i++)
            outer *= x->shape[i];
        for (int i = dim + 1; i < x->ndim; i++)
            inner *= x->shape[i];
    }
    lc_tensor *xf = lc_tensor_f32((lc_tensor *)x);
    if (!xf)
        return NULL;
    lc_tensor *y = lc_tensor_new(LC_F32, x->ndim, x->shape);
    if (y && D > 0) {
        sm_job j = {lc_tensor_data(xf), lc_tensor_data(y), D, inner, log};
        int64_t lines = outer * inner, grain = 16384 / D;
        if (lc_parallel_for(lines, lc_grain_for(lines, grain < 1 ? 1 : grain), sm_lines, &j) !=
            LC_OK) {
            lc_tensor_free(y);
            y = NULL;
        }
    }
    lc_tensor_free(xf);
    return y;
}

static lc_tensor *softmax_outer_impl(const lc_tensor *x, int dim)
{
    return softmax_impl(x, dim, 0, "softmax");
}

lc_tensor *lc_log_softmax(const lc_tensor *x, int dim)
{
    return softmax_impl(x, dim, 1, "log_softmax");
}

lc_tensor *lc_softmax(const lc_tensor *x, int dim)
{
    LC_PROF_BEGIN();
    lc_tensor *y = softmax_outer_impl(x, dim);
    LC_PROF_END(LC_PROF_ATTN, 0);
    return y;
}
