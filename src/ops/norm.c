/* Group and layer normalisation with torch's semantics: biased variance,
 * eps inside the square root, statistics accumulated in double (two passes:
 * the mean, then the squared deviations, which stays accurate when the mean
 * is large against the spread). Each task owns whole groups or rows, so the
 * sums never depend on the thread count. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/pool.h"
#include "ops.h"
#include "ops/prof.h"

/* let GCC vectorize the branch-free SiLU loop (changes no value) */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("vect-cost-model=dynamic", "no-trapping-math")
#endif

/* mean and 1/sqrt(var + eps) of n contiguous floats; four partial sums
 * per pass so the adds pipeline (a group of a VAE at 512x512 holds 1M
 * values), always combined in the same order */
static void moments(const float *x, int64_t n, double eps, double *mean, double *rstd)
{
    double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        s0 += x[i];
        s1 += x[i + 1];
        s2 += x[i + 2];
        s3 += x[i + 3];
    }
    for (; i < n; i++)
        s0 += x[i];
    double m = n > 0 ? ((s0 + s1) + (s2 + s3)) / (double)n : 0;
    double v0 = 0, v1 = 0, v2 = 0, v3 = 0;
    for (i = 0; i + 4 <= n; i += 4) {
        double d0 = x[i] - m, d1 = x[i + 1] - m, d2 = x[i + 2] - m, d3 = x[i + 3] - m;
        v0 += d0 * d0;
        v1 += d1 * d1;
        v2 += d2 * d2;
        v3 += d3 * d3;
    }
    for (; i < n; i++) {
        double d = x[i] - m;
        v0 += d * d;
    }
    double v = n > 0 ? ((v0 + v1) + (v2 + v3)) / (double)n : 0;
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
    int silu; /* apply SiLU to the result in the same pass */
} gn_job;

/* expf as elementwise.c's vexpf (Cephes, branch free so loops vectorize),
 * so the fused SiLU gives the values of lc_unary(LC_SILU) */
static inline float gn_expf(float x)
{
    const float hi = 88.3762626647949f, lo = -87.3365447505531f;
    float xc = x < hi ? x : hi;
    xc = xc > lo ? xc : lo;
    float n = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    float r = xc - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    float e = p * r * r + r + 1.0f;
    uint32_t bits = (uint32_t)((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    float y = e * scale;
    y = x > hi ? INFINITY : y;
    y = x < lo ? 0.0f : y;
    return x != x ? x : y;
}

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
            if (j->silu) {
                for (int64_t s = 0; s < j->S; s++) {
                    float v = xc[s] * a + bb;
                    yc[s] = v / (1.0f + gn_expf(-v));
                }
            } else {
                for (int64_t s = 0; s < j->S; s++)
                    yc[s] = xc[s] * a + bb;
            }
        }
    }
}

static lc_tensor *group_norm_impl(const lc_tensor *x, int groups, const lc_tensor *gamma,
                                  const lc_tensor *beta, double eps, int silu)
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
                bf ? lc_tensor_data(bf) : NULL, lc_tensor_data(y), groups, C / groups, S, eps,
                silu};
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
    lc_tensor *y = group_norm_impl(x, groups, gamma, beta, eps, 0);
    LC_PROF_END(LC_PROF_NORM, 0);
    return y;
}

lc_tensor *lc_group_norm_silu(const lc_tensor *x, int groups, const lc_tensor *gamma,
                              const lc_tensor *beta, double eps)
{
    LC_PROF_BEGIN();
    lc_tensor *y = group_norm_impl(x, groups, gamma, beta, eps, 1);
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
