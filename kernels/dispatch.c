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
    if (!table.ready)
        lk_init();
    if (m <= 0 || n <= 0)
        return;
    if (table.gemm && lk_gemm_blocked(table.gemm, transa, transb, m, n, k, alpha, a, lda, b, ldb,
                                      beta, c, ldc) == 0)
        return;
    /* no SIMD level, or no memory for the packed operand (C is untouched) */
    lk_sgemm_ref(transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

const char *lk_sgemm_name(void)
{
    lk_init();
    return table.gemm ? table.gemm->name : "ref";
}

struct lk_sgemm_bpack {
    const lk_gemm_ukr *u; /* the micro-kernel that packed it; NULL: a plain copy */
    int64_t k, n;
    float *data; /* panels for u, or op(B) row-major k x n for the reference */
    size_t cap;  /* floats allocated at data */
};

lk_sgemm_bpack *lk_sgemm_repack_b(lk_sgemm_bpack *p, int transb, int64_t k, int64_t n,
                                  const float *b, int64_t ldb)
{
    if (!table.ready)
        lk_init();
    lk_sgemm_bpack *fresh = NULL;
    if (!p && !(p = fresh = calloc(1, sizeof *p))) {
        lc_err("sgemm: out of memory for a packed %ldx%ld operand", (long)k, (long)n);
        return NULL;
    }
    p->u = table.gemm;
    p->k = k > 0 ? k : 0;
    p->n = n > 0 ? n : 0;
    size_t floats = p->u ? lk_gemm_packed_b_floats(p->u, p->k, p->n) : (size_t)(p->k * p->n);
    if (floats > p->cap) {
        /* fresh pages cost a fault each (~10 us here): grow, never shrink */
        free(p->data);
        p->data = aligned_alloc(64, (floats * sizeof(float) + 63) / 64 * 64 + 64);
        p->cap = p->data ? floats : 0;
        if (!p->data) {
            free(fresh);
            lc_err("sgemm: out of memory for a packed %ldx%ld operand", (long)k, (long)n);
            return NULL;
        }
    }
    if (p->u) {
        if (lk_gemm_pack_b(p->u, transb, p->k, p->n, b, ldb, p->data) != 0) {
            lk_sgemm_bpack_free(fresh);
            return NULL; /* interrupted: the error is set */
        }
    } else {
        for (int64_t r = 0; r < p->k; r++)
            for (int64_t col = 0; col < p->n; col++)
                p->data[r * p->n + col] = transb ? b[col * ldb + r] : b[r * ldb + col];
    }
    return p;
}

lk_sgemm_bpack *lk_sgemm_pack_b(int transb, int64_t k, int64_t n, const float *b, int64_t ldb)
{
    return lk_sgemm_repack_b(NULL, transb, k, n, b, ldb);
}

void lk_sgemm_bpack_free(lk_sgemm_bpack *p)
{
    if (!p)
        return;
    free(p->data);
    free(p);
}

void lk_sgemm_packed(int transa, int64_t m, float alpha, const float *a, int64_t lda,
                     const lk_sgemm_bpack *p, float beta, float *c, int64_t ldc)
{
    if (m <= 0 || p->n <= 0)
        return;
    if (p->u && lk_gemm_blocked_packed(p->u, transa, m, p->n, p->k, alpha, a, lda, p->data, beta,
                                       c, ldc) == 0)
        return;
    if (p->u) {
        /* the panels are not a matrix the reference can read: unpack */
        lc_err("sgemm: packed operand unusable (micro-kernel scratch too small)");
        return;
    }
    lk_sgemm_ref(transa, 0, m, p->n, p->k, alpha, a, lda, p->data, p->n, beta, c, ldc);
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

/* The reference has no panels: fn writes column chunks as one panel each
 * (nr = the chunk width, i.e. a row-major k x width block). */
#define BFN_REF_COLS 256

void lk_sgemm_bfn(int transa, int64_t m, int64_t n, int64_t k, float alpha, const float *a,
                  int64_t lda, lk_pack_b_fn fn, void *ctx, float beta, float *c, int64_t ldc)
{
    if (!table.ready)
        lk_init();
    if (m <= 0 || n <= 0)
        return;
    if (table.gemm && lk_gemm_blocked_bfn(table.gemm, transa, m, n, k, alpha, a, lda, fn, ctx,
                                          beta, c, ldc) == 0)
        return;
    int64_t w = n < BFN_REF_COLS ? n : BFN_REF_COLS;
    float *buf = aligned_alloc(64, ((size_t)(k > 0 ? k : 1) * (size_t)w * sizeof(float) + 63) /
                                       64 * 64);
    if (!buf) {
        lc_err("sgemm: out of memory for %ldx%ld columns of B", (long)k, (long)w);
        return;
    }
    for (int64_t j0 = 0; j0 < n; j0 += w) {
        int64_t cols = n - j0 < w ? n - j0 : w;
        if (k > 0)
            fn(ctx, j0, cols, (int)cols, buf);
        lk_sgemm_ref(transa, 0, m, cols, k, alpha, a, lda, buf, cols, beta, c + j0, ldc);
    }
    free(buf);
}
