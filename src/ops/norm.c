/* Group and layer normalisation with torch's semantics: biased variance,
 * eps inside the square root, statistics accumulated in double (one pass
 * over values shifted by a sample of them, see moments). Each task owns whole groups or rows, so the
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

/* mean and 1/sqrt(var + eps) of n contiguous floats, in one pass (a VAE
 * group at 512x512 holds 1M values and a pass over them is memory-bound):
 * sums of d = x - x[0] and of d^2 in double, eight partial sums each,
 * always combined in the same order. Shifting by a sample keeps
 * sum(d^2) - sum(d)^2/n free of the cancellation that sum(x^2) - n*mean^2
 * suffers when the mean is large against the spread. */
/* The loops over a group get an AVX2+FMA clone as elementwise.c's do (the
 * fused SiLU's exp is what costs: 4x wider than the baseline); results may
 * differ in the last bit between CPUs with and without FMA. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define NORM_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define NORM_CLONES
#endif

NORM_CLONES
static void moments(const float *x, int64_t n, double eps, double *mean, double *rstd)
{
    if (n <= 0) {
        *mean = 0;
        *rstd = 1.0 / sqrt(eps);
        return;
    }
    double shift = x[0], s[8] = {0}, q[8] = {0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int l = 0; l < 8; l++) {
            double d = (double)x[i + l] - shift;
            s[l] += d;
            q[l] += d * d;
        }
    for (; i < n; i++) {
        double d = (double)x[i] - shift;
        s[0] += d;
        q[0] += d * d;
    }
    double ss = ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
    double qq = ((q[0] + q[1]) + (q[2] + q[3])) + ((q[4] + q[5]) + (q[6] + q[7]));
    double dm = ss / (double)n, v = qq / (double)n - dm * dm;
    *mean = shift + dm;
    *rstd = 1.0 / sqrt((v > 0 ? v : 0) + eps);
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

NORM_CLONES
static void gn_apply(const float *x, float *y, int64_t n, float a, float b, int silu)
{
    if (silu) {
        for (int64_t s = 0; s < n; s++) {
            float v = x[s] * a + b;
            y[s] = v / (1.0f + gn_expf(-v));
        }
    } else {
        for (int64_t s = 0; s < n; s++)
            y[s] = x[s] * a + b;
    }
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
            gn_apply(x + c * j->S, y + c * j->S, j->S, a, bb, j->silu);
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
