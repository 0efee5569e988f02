/* Group and layer normalisation with torch's semantics: biased variance,
 * eps inside the square root, statistics accumulated in double (two passes:
 * the mean, then the squared deviations, which stays accurate when the mean
 * is large against the spread). Each task owns whole groups or rows, so the
 * sums never depend on the thread count. */
#include <math.h>
#include <stdlib.h>

#include "core/pool.h"
#include "ops.h"
#include "ops/prof.h"

/* mean and 1/sqrt(var + eps) of n contiguous floats */
static void moments(const float *x, int64_t n, double eps, double *mean, double *rstd)
{
    double s = 0;
    for (int64_t i = 0; i < n; i++)
        s += x[i];
    double m = n > 0 ? s / (double)n : 0;
    double v = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = x[i] - m;
        v += d * d;
    }
    v = n > 0 ? v / (double)n : 0;
    *mean = m;
    *rstd = 1.0 / sqrt(v + eps);
}

/* optional per-channel parameter as contiguous f32, checked against n */
static int param_f32(const char *op, const char *name, const lc_tensor *t, int64_t n,
                     const lc_tensor *x, lc_tensor **out)
{
    *out = NULL;
    if (!t)
        return LC_OK;
    if (lc_tensor_numel(t) != n || t->ndim != 1)
        return lc_err("%s: %s %s must be [%lld] for input %s", op, name, LC_SHAPE_STR(t),
                      (long long)n, LC_SHAPE_STR(x));
    *out = lc_tensor_f32((lc_tensor *)t);
    return *out ? LC_OK : LC_ERR;
}

/* ---- group norm ---- */

typedef struct {
    const float *x, *gamma, *beta;
    float *y;
    int64_t G, Cg, S; /* groups, channels per group, spatial size */
    double eps;
} gn_job;

static void gn_groups(void *ctx, int64_t b, int64_t e)
{
    const gn_job *j = ctx;
    for (int64_t ng = b; ng < e; ng++) {
        int64_t g = ng % j->G;
        const float *x = j->x + ng * j->Cg * j->S;
        float *y = j->y + ng * j->Cg * j->S;
        double mean, rstd;
        moments(x, j->Cg * j->S, j->eps, &mean, &rstd);
        for (int64_t c = 0; c < j->Cg; c++) {
            int64_t ch = g * j->Cg + c;
            /* y = x * a + b folds the affine step in, as torch's kernel */
            double gm = j->gamma ? j->gamma[ch] : 1.0;
            float a = (float)(rstd * gm);
            float bb = (float)((j->beta ? j->beta[ch] : 0.0) - mean * rstd * gm);
            const float *xc = x + c * j->S;
            float *yc = y + c * j->S;
            for (int64_t s = 0; s < j->S; s++)
                yc[s] = xc[s] * a + bb;
        }
    }
}

static lc_tensor *group_norm_impl(const lc_tensor *x, int groups, const lc_tensor *gamma,
                                  const lc_tensor *beta, double eps)
{
    if (x->ndim < 2) {
        lc_err("group_norm: input %s must have at least 2 dimensions [N,C,...]",
               LC_SHAPE_STR(x));
        return NULL;
    }
    int64_t N = x->shape[0], C = x->shape[1];
    if (groups < 1 || C % groups != 0) {
        lc_err("group_norm: input %s has %lld channels, not divisible into %d groups",
               LC_SHAPE_STR(x), (long long)C, groups);
        return NULL;
    }
    if (!(eps >= 0)) {
        lc_err("group_norm: eps must be >= 0 (got %g)", eps);
        return NULL;
    }
    int64_t S = 1;
    for (int i = 2; i < x->ndim; i++)
        S *= x->shape[i];
    lc_tensor *gf = NULL, *bf = NULL, *xf = NULL, *y = NULL;
    if (param_f32("group_norm", "weight", gamma, C, x, &gf) != LC_OK ||
        param_f32("group_norm", "bias", beta, C, x, &bf) != LC_OK)
        goto done;
    if (!(xf = lc_tensor_f32((lc_tensor *)x)) || !(y = lc_tensor_new(LC_F32, x->ndim, x->shape)))
        goto done;
    gn_job j = {lc_tensor_data(xf), gf ? lc_tensor_data(gf) : NULL,
                bf ? lc_tensor_data(bf) : NULL, lc_tensor_data(y), groups, C / groups, S, eps};
    if (lc_parallel_for(N * groups, 1, gn_groups, &j) != LC_OK) {
        lc_tensor_free(y);
        y = NULL;
    }
done:
    lc_tensor_free(gf);
    lc_tensor_free(bf);
    lc_tensor_free(xf);
    return y;
}

/* ---- layer norm ---- */

typedef struct {
    const float *x, *gamma, *beta;
    float *y;
    int64_t D;
    double eps;
} ln_job;

static void ln_rows(void *ctx, int64_t b, int64_t e)
{
    const ln_job *j = ctx;
    for (int64_t r = b; r < e; r++) {
        const float *x = j->x + r * j->D;
        float *y = j->y + r * j->D;
        double mean, rstd;
        moments(x, j->D, j->eps, &mean, &rstd);
        float m = (float)mean, rs = (float)rstd;
        for (int64_t d = 0; d < j->D; d++) {
            float v = (x[d] - m) * rs;
            if (j->gamma)
                v *= j->gamma[d];
            if (j->beta)
                v += j->beta[d];
            y[d] = v;
        }
    }
}

static lc_tensor *layer_norm_impl(const lc_tensor *x, const lc_tensor *gamma, const lc_tensor *beta,
                                  double eps)
{
    if (x->ndim < 1) {
        lc_err("layer_norm: input %s must have at least 1 dimension", LC_SHAPE_STR(x));
        return NULL;
    }
    if (!(eps >= 0)) {
        lc_err("layer_norm: eps must be >= 0 (got %g)", eps);
        return NULL;
    }
    int64_t D = x->shape[x->ndim - 1];
    int64_t rows = D > 0 ? lc_tensor_numel(x) / D : 0;
    lc_tensor *gf = NULL, *bf = NULL, *xf = NULL, *y = NULL;
    if (param_f32("layer_norm", "weight", gamma, D, x, &gf) != LC_OK ||
        param_f32("layer_norm", "bias", beta, D, x, &bf) != LC_OK)
        goto done;
    if (!(xf = lc_tensor_f32((lc_tensor *)x)) || !(y = lc_tensor_new(LC_F32, x->ndim, x->shape)))
        goto done;
    ln_job j = {lc_tensor_data(xf), gf ? lc_tensor_data(gf) : NULL,
                bf ? lc_tensor_data(bf) : NULL, lc_tensor_data(y), D, eps};
    int64_t grain = D > 0 ? 16384 / D : 1;
    if (lc_parallel_for(rows, lc_grain_for(rows, grain < 1 ? 1 : grain), ln_rows, &j) != LC_OK) {
        lc_tensor_free(y);
        y = NULL;
    }
done:
    lc_tensor_free(gf);
    lc_tensor_free(bf);
    lc_tensor_free(xf);
    return y;
}

lc_tensor *lc_group_norm(const lc_tensor *x, int groups, const lc_tensor *gamma,
                         const lc_tensor *beta, double eps)
{
    LC_PROF_BEGIN();
    lc_tensor *y = group_norm_impl(x, groups, gamma, beta, eps);
    LC_PROF_END(LC_PROF_NORM, 0);
    return y;
}

lc_tensor *lc_layer_norm(const lc_tensor *x, const lc_tensor *gamma, const lc_tensor *beta,
                         double eps)
{
    LC_PROF_BEGIN();
    lc_tensor *y = layer_norm_impl(x, gamma, beta, eps);
    LC_PROF_END(LC_PROF_NORM, 0);
    return y;
}
