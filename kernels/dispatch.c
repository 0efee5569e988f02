/* Runtime CPU dispatch: one table of kernel pointers, filled once from the
 * CPU's features.
 *
 * sgemm runs on lucid's own blocked driver (gemm_blocked.c), not BLIS.
 * Measured with bench/bench_gemm on this machine (Zen 5, 2 cores; FMA probe
 * 224 GFLOP/s on 1 thread, 448 on 2), GFLOP/s for 1 / 2 threads:
 *
 *   shape (m x n x k)                 lucid avx512   BLIS 0.9.0   BLIS + our ukr
 *   conv W@col   320 x 2912 x 2880      155 / 299     29 / 57       132 / 264
 *   conv im2col 4096 x  320 x 2880      189 / 352     30 / 60       165 / 349
 *   GEGLU (B^T) 4096 x 2560 x  320      191 / 355     29 / 58       155 / 309
 *   QK^T        4096 x 4096 x   40      104 / 210     26 / 51       102 / 215
 *   P@V         4096 x   40 x 4096      114 / 219     21 / 44        77 / 156
 *   CLIP mlp      77 x 3072 x  768      174 / 279     33 / 58        93 / 207
 *   square      1024 x 1024 x 1024      189 / 345     30 / 62       174 / 354
 *
 * Debian's BLIS reports the "generic" configuration here; with our AVX-512
 * micro-kernel registered in a copy of its context (bench_gemm does that) it
 * is close to lucid's driver on large products and well behind on thin
 * ones, threads with OpenMP rather than the pool, and does not promise the
 * same bits for any thread count. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "core/error.h"
#include "gemm_blocked.h"
#include "kernels.h"
#include "ref/ref.h"
#if defined(LUCID_X86)
#include "x86/x86.h"
#endif

/* One entry per kernel; NULL means the portable reference. */
static struct {
    int ready;
    lk_arch arch;
    int direct_conv; /* LUCID_WINOGRAD=0: 3x3 convolutions the direct way */
    const lk_gemm_ukr *gemm; /* micro-kernel for the blocked sgemm */
    float (*softmax_exp)(float *s, int64_t n);
    void (*softmax_exp_cols)(float *s, int64_t rows, int64_t cols, int64_t ld, const float *max,
                             float *sum);
    void (*sgemm_thin)(int transa, int64_t m, int64_t n, int64_t k, const float *a, int64_t lda,
                       const float *b, int64_t ldb, const float *scale, float *c, int64_t ldc,
                       float *cmax);
} table;

static void sgemm_thin_generic(int transa, int64_t m, int64_t n, int64_t k, const float *a,
                               int64_t lda, const float *b, int64_t ldb, const float *scale,
                               float *c, int64_t ldc, float *cmax)
{
    lk_sgemm(transa, 0, m, n, k, 1.f, a, lda, b, ldb, 0.f, c, ldc);
    for (int64_t i = 0; scale && i < m; i++)
        for (int64_t j = 0; j < n; j++)
            c[i * ldc + j] *= scale[i];
    for (int64_t j = 0; cmax && j < n; j++) {
        float mx = -INFINITY;
        for (int64_t i = 0; i < m; i++)
            mx = c[i * ldc + j] > mx ? c[i * ldc + j] : mx; /* NaN never wins */
        cmax[j] = mx;
    }
}

static lk_arch cpu_best(void)
{
#if defined(LUCID_X86) && defined(__GNUC__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq"))
        return LK_ARCH_AVX512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return LK_ARCH_AVX2;
#endif
    return LK_ARCH_REF;
}

const char *lk_arch_name(lk_arch a)
{
    switch (a) {
    case LK_ARCH_AVX512: return "avx512";
    case LK_ARCH_AVX2: return "avx2";
    default: return "ref";
    }
}

lk_arch lk_set_arch(lk_arch want)
{
    lk_arch best = cpu_best();
    if (want > best)
        want = best;
    table.arch = want;
    const char *wino = getenv("LUCID_WINOGRAD");
    table.direct_conv = wino && !strcmp(wino, "0");
    table.gemm = NULL;
    table.softmax_exp = lk_softmax_exp_ref;
    table.softmax_exp_cols = lk_softmax_exp_cols_ref;
    table.sgemm_thin = sgemm_thin_generic;
#if defined(LUCID_X86)
    if (want == LK_ARCH_AVX512) {
        table.gemm = &lk_gemm_ukr_avx512;
        table.softmax_exp = lk_softmax_exp_avx512;
        table.softmax_exp_cols = lk_softmax_exp_cols_avx512;
        table.sgemm_thin = lk_sgemm_thin_avx512;
    } else if (want == LK_ARCH_AVX2) {
        table.gemm = &lk_gemm_ukr_avx2;
        table.softmax_exp = lk_softmax_exp_avx2;
        table.softmax_exp_cols = lk_softmax_exp_cols_avx2;
        table.sgemm_thin = lk_sgemm_thin_avx2;
    }
#endif
    table.ready = 1;
    return want;
}

void lk_init(void)
{
    if (table.ready)
        return;
    lk_arch want = cpu_best();
    const char *force = getenv("LUCID_ARCH");
    if (force && *force) {
        if (!strcmp(force, "ref") || !strcmp(force, "portable"))
            want = LK_ARCH_REF;
        else if (!strcmp(force, "avx2"))
            want = LK_ARCH_AVX2;
        else if (!strcmp(force, "avx512"))
            want = LK_ARCH_AVX512;
    }
    lk_arch got = lk_set_arch(want);
    if (getenv("LUCID_ARCH_DEBUG"))
        fprintf(stderr, "lucid: kernels: %s (cpu supports %s), sgemm: %s\n", lk_arch_name(got),
                lk_arch_name(cpu_best()), table.gemm ? table.gemm->name : "ref");
}

lk_arch lk_current_arch(void)
{
    lk_init();
    return table.arch;
}

void lk_sgemm(int transa, int transb, int64_t m, int64_t n, int64_t k, float alpha,
              const float *a, int64_t lda, const float *b, int64_t ldb, float beta, float *c,
              int64_t ldc)
{
    lk_sgemm_typed(transa, transb, m, n, k, alpha, a, lda, b, LK_F32, ldb, beta, c, ldc, NULL);
}

const char *lk_sgemm_name(void)
{
    lk_init();
    return table.gemm ? table.gemm->name : "ref";
}

/* op(X) stored as t (rows x cols of it, or its transpose) widened into a
 * row-major f32 copy, for the reference */
static float *widen(const void *x, lk_elt t, int trans, int64_t rows, int64_t cols, int64_t ld)
{
    size_t count = (size_t)(rows > 0 ? rows : 1) * (size_t)(cols > 0 ? cols : 1);
    float *f = malloc(count * sizeof(float));
    if (!f) {
        lc_err("sgemm: out of memory widening a %ldx%ld operand", (long)rows, (long)cols);
        return NULL;
    }
    for (int64_t r = 0; r < rows; r++)
        for (int64_t col = 0; col < cols; col++)
            f[r * cols + col] = lk_elt_get(x, t, trans ? col * ld + r : r * ld + col);
    return f;
}

/* The reference has no bias: C becomes beta C + bias first, then beta 1 */
static void fold_bias(float *c, int64_t ldc, int64_t m, int64_t n, float *beta,
                      const float *bias, int rows)
{
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            float *cp = c + i * ldc + j;
            *cp = (*beta == 0.f ? 0.f : *beta * *cp) + bias[rows ? i : j];
        }
    *beta = 1.f;
}

void lk_sgemm_typed(int transa, int transb, int64_t m, int64_t n, int64_t k, float alpha,
                    const float *a, int64_t lda, const void *b, lk_elt bt, int64_t ldb,
                    float beta, float *c, int64_t ldc, const float *bias)
{
    if (!table.ready)
        lk_init();
    if (m <= 0 || n <= 0)
        return;
    if (table.gemm) {
        lk_gemm_args g = {.transa = transa, .transb = transb, .m = m, .n = n, .k = k,
                          .alpha = alpha, .beta = beta, .a = a, .b = b, .at = LK_F32, .bt = bt,
                          .lda = lda, .ldb = ldb, .ldc = ldc, .c = c, .bias = bias};
        if (lk_gemm_blocked(table.gemm, &g) == 0)
            return;
    }
    /* no SIMD level, or no memory for the packed operand (C is untouched) */
    float *bf = bt == LK_F32 ? NULL : widen(b, bt, transb, k, n, ldb);
    if (bt != LK_F32 && !bf)
        return; /* out of memory: the error is set, C untouched */
    if (bias)
        fold_bias(c, ldc, m, n, &beta, bias, 0);
    if (bf)
        lk_sgemm_ref(transa, 0, m, n, k, alpha, a, lda, bf, n, beta, c, ldc);
    else
        lk_sgemm_ref(transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    free(bf);
}

/* The reference has no panels: col is cut in chunks of this many pixels,
 * each a row-major K x chunk block */
#define CONV_REF_COLS 256

void lk_sconv(const lk_im2col *g, int64_t cout, const void *w, lk_elt wt, int64_t ldw,
              float alpha, float beta, float *out, int64_t ldo, const float *bias)
{
    if (!table.ready)
        lk_init();
    int64_t P = g->OH * g->OW * (g->N > 1 ? g->N : 1), K = g->C * g->kh * g->kw;
    if (cout <= 0 || P <= 0)
        return;
    if (table.gemm) {
        /* out = W col: the weights are A, the column matrix B, whose panels
         * are cut from x. Measured against out^T = col^T W^T (pixels as
         * rows, C stored transposed): 316 vs 257 GFLOP/s for a 640-channel
         * 3x3 conv at 32x32, 2 threads; the transposed stores cost more
         * than the smaller packing saves. */
        lk_gemm_args a = {.m = cout, .n = P, .k = K, .alpha = alpha, .beta = beta, .a = w,
                          .at = wt, .lda = ldw, .ldc = ldo, .c = out, .im2col = g,
                          .bias = bias, .bias_rows = 1};
        if (lk_gemm_blocked(table.gemm, &a) == 0)
            return;
    }
    float *wf = wt == LK_F32 ? NULL : widen(w, wt, 0, cout, K, ldw);
    int64_t chunk = P < CONV_REF_COLS ? P : CONV_REF_COLS;
    float *col = malloc((size_t)K * (size_t)chunk * sizeof(float));
    if (col && (wt == LK_F32 || wf)) {
        if (bias)
            fold_bias(out, ldo, cout, P, &beta, bias, 1);
        for (int64_t p0 = 0; p0 < P; p0 += chunk) {
            int64_t cols = P - p0 < chunk ? P - p0 : chunk;
            lk_im2col_pack_ref(g, p0, (int)cols, 0, K, (int)cols, col);
            const float *wa = wf ? wf : (const float *)w;
            lk_sgemm_ref(0, 0, cout, cols, K, alpha, wa, wf ? K : ldw, col, cols, beta, out + p0,
                         ldo);
        }
    } else if (!col) {
        lc_err("conv: out of memory for %ldx%ld columns", (long)K, (long)chunk);
    }
    free(col);
    free(wf);
}

int lk_conv3x3(const float *x, int64_t N, int64_t C, int64_t H, int64_t W, const void *w,
               lk_elt wt, int64_t cout, const float *bias, float *out)
{
    if (!table.ready)
        lk_init();
#if defined(LUCID_X86)
    if (table.arch == LK_ARCH_AVX512 && !table.direct_conv &&
        lk_wino3x3_pays_avx512(N, C, H, W, cout))
        return lk_wino3x3_avx512(x, N, C, H, W, w, wt, cout, bias, out);
#endif
    return -1;
}

float lk_softmax_exp(float *s, int64_t n)
{
    if (!table.ready)
        lk_init();
    return table.softmax_exp(s, n);
}

void lk_softmax_exp_cols(float *s, int64_t rows, int64_t cols, int64_t ld, const float *max,
                         float *sum)
{
    if (!table.ready)
        lk_init();
    table.softmax_exp_cols(s, rows, cols, ld, max, sum);
}

void lk_sgemm_thin(int transa, int64_t m, int64_t n, int64_t k, const float *a, int64_t lda,
                   const float *b, int64_t ldb, const float *scale, float *c, int64_t ldc,
                   float *cmax)
{
    if (!table.ready)
        lk_init();
    table.sgemm_thin(transa, m, n, k, a, lda, b, ldb, scale, c, ldc, cmax);
}

const char *lk_softmax_name(void)
{
    lk_init();
    return table.softmax_exp == lk_softmax_exp_ref ? "ref" : lk_arch_name(table.arch);
}
