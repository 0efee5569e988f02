/* AVX2 + FMA GEMM micro-kernel and packing for the blocked driver
 * (kernels/gemm_blocked.c), for x86 machines without AVX-512.
 *
 * 6x16 tile: 12 ymm accumulators, two B vectors and a broadcast fill 15 of
 * the 16 registers; 12 FMAs per 2 loads + 6 broadcasts per k step. */
#include <immintrin.h>
#include <math.h>
#include <stdint.h>

#include "../gemm_blocked.h"
#include "../ref/ref.h"
#include "x86.h"

#define MR 6
#define NR 16
#define KC 256
#define MC 144 /* 24 tiles: 144 KB of A per block */
#define NC 4096 /* the A block in L2 is reused across NC / NR B panels */

/* C[0:MR, 0:NR] (row stride ldc) = alpha * Ap @ Bp + beta * C; C is not
 * read when beta == 0 or `scratch` (a constant: the edge path's tile) */
static inline __attribute__((always_inline)) void
tile(int64_t kc, const float *restrict a, const float *restrict b, float *restrict c,
     int64_t ldc, float alpha, float beta, int scratch)
{
    /* alpha and beta wait in memory: with them in registers the 12
     * accumulators, 2 B vectors and the broadcast no longer fit in 16 and
     * GCC spills an accumulator inside the loop (half speed) */
    volatile float ab[2] = {alpha, beta};
    __m256 acc[MR][2];
#pragma GCC unroll 6
    for (int i = 0; i < MR; i++) {
        acc[i][0] = _mm256_setzero_ps();
        acc[i][1] = _mm256_setzero_ps();
    }
    for (int64_t p = 0; p < kc; p++) {
        __m256 b0 = _mm256_load_ps(b), b1 = _mm256_load_ps(b + 8);
#pragma GCC unroll 6
        for (int i = 0; i < MR; i++) {
            __m256 av = _mm256_broadcast_ss(a + i);
            acc[i][0] = _mm256_fmadd_ps(av, b0, acc[i][0]);
            acc[i][1] = _mm256_fmadd_ps(av, b1, acc[i][1]);
        }
        a += MR;
        b += NR;
    }
    alpha = ab[0];
    beta = ab[1];
    __m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta);
#pragma GCC unroll 6
    for (int i = 0; i < MR; i++) {
        float *cp = c + i * ldc;
        for (int v = 0; v < 2; v++) {
            __m256 r;
            if (scratch || beta == 0.f)
                r = _mm256_mul_ps(va, acc[i][v]);
            else
                r = _mm256_fmadd_ps(va, acc[i][v], _mm256_mul_ps(vb, _mm256_loadu_ps(cp + 8 * v)));
            _mm256_storeu_ps(cp + 8 * v, r);
        }
    }
}

/* alpha t + beta c (+ bias), rounded as the vector path rounds it */
static inline float combine(float alpha, float t, float beta, float c, const float *bias,
                            int64_t bi)
{
    if (bias)
        return fmaf(alpha, t, beta == 0.f ? bias[bi] : fmaf(beta, c, bias[bi]));
    return beta == 0.f ? alpha * t : fmaf(alpha, t, beta * c);
}

static void kernel_6x16(int64_t kc, const float *ap, const float *bp, float *c, int64_t ldc,
                        float alpha, float beta, int mr_eff, int nr_eff, const float *bias,
                        int brows)
{
    if (mr_eff == MR && nr_eff == NR && !bias) {
        tile(kc, ap, bp, c, ldc, alpha, beta, 0);
        return;
    }
    /* edge tile (or a bias): the full tile into scratch, then the same
     * combine in scalar (fmaf rounds like the vector FMA) */
    _Alignas(32) float t[MR * NR];
    tile(kc, ap, bp, t, NR, 1.f, 0.f, 1);
    for (int i = 0; i < mr_eff; i++)
        for (int j = 0; j < nr_eff; j++) {
            float *cp = c + i * ldc + j;
            *cp = combine(alpha, t[i * NR + j], beta, *cp, bias, brows ? i : j);
        }
}

/* the tile stored transposed: element (i, j) at c[j*ldc + i] */
static void kernel_6x16_ct(int64_t kc, const float *ap, const float *bp, float *c, int64_t ldc,
                           float alpha, float beta, int mr_eff, int nr_eff, const float *bias,
                           int brows)
{
    _Alignas(32) float t[MR * NR];
    tile(kc, ap, bp, t, NR, 1.f, 0.f, 1);
    for (int j = 0; j < nr_eff; j++)
        for (int i = 0; i < mr_eff; i++) {
            float *cp = c + j * ldc + i;
            *cp = combine(alpha, t[i * NR + j], beta, *cp, bias, brows ? i : j);
        }
}

static inline float elt(const void *p, lk_elt t, int64_t i)
{
    if (t == LK_F16)
        return _cvtsh_ss(((const uint16_t *)p)[i]);
    if (t == LK_BF16)
        return lk_elt_get(p, LK_BF16, i);
    return ((const float *)p)[i];
}

/* dst[p*w + r] = op(X)[r, p] for r < rows, zero for rows <= r < w, where
 * op(X)[r, p] = src[off + r*rs + p*ps], stored as t */
static void pack_panel(const void *src, lk_elt t, int64_t off, int64_t rs, int64_t ps, int rows,
                       int64_t kc, int w, float *dst)
{
    for (int64_t p = 0; p < kc; p++) {
        float *d = dst + p * w;
        int r = 0;
        for (; r < rows; r++)
            d[r] = elt(src, t, off + p * ps + r * rs);
        for (; r < w; r++)
            d[r] = 0.f;
    }
}

static void pack_a(int trans, const void *a, lk_elt t, int64_t lda, int64_t i0, int mr_eff,
                   int64_t p0, int64_t kc, float *dst)
{
    if (trans)
        pack_panel(a, t, p0 * lda + i0, 1, lda, mr_eff, kc, MR, dst);
    else
        pack_panel(a, t, i0 * lda + p0, lda, 1, mr_eff, kc, MR, dst);
}

static void pack_b(int trans, const void *b, lk_elt t, int64_t ldb, int64_t k, int64_t j0,
                   int64_t ncols, float *dst)
{
    for (int64_t q = 0; q * NR < ncols; q++) {
        int nre = (int)(ncols - q * NR < NR ? ncols - q * NR : NR);
        if (trans)
            pack_panel(b, t, (j0 + q * NR) * ldb, ldb, 1, nre, k, NR, dst + q * k * NR);
        else
            pack_panel(b, t, j0 + q * NR, 1, ldb, nre, k, NR, dst + q * k * NR);
    }
}

const lk_gemm_ukr lk_gemm_ukr_avx2 = {
    .name = "avx2 6x16",
    .mr = MR, .nr = NR, .kc = KC, .mc = MC, .nc = NC,
    .kernel = kernel_6x16,
    .kernel_ct = kernel_6x16_ct,
    .pack_a = pack_a,
    .pack_b = pack_b,
};
