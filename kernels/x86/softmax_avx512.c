/* AVX-512 row softmax (unnormalised), lk_softmax_exp's contract.
 *
 * The reference's Cephes-style expf on 16 lanes with FMA and VSCALEFPS for
 * the 2^n step; four vectors per iteration (four independent exp chains and
 * sums in flight), masked loads and stores for the tail, so no element past
 * n is touched. The partial sums are combined in a fixed order: the same
 * bits for a given row on every run. */
#include <immintrin.h>
#include <math.h>
#include <stdint.h>

#include "../kernels.h"
#include "avx512.h"
#include "x86.h"

/* exp(x - m) */
static inline __attribute__((always_inline)) __m512 exp16(__m512 x, __m512 m)
{
    const __m512 lo = _mm512_set1_ps(LK_EXP_LO), magic = _mm512_set1_ps(12582912.0f);
    x = _mm512_sub_ps(x, m);
    /* unordered compare: NaN is kept and stays NaN below */
    __mmask16 keep = _mm512_cmp_ps_mask(x, lo, _CMP_NLT_UQ);
    x = _mm512_max_ps(lo, x); /* second operand on NaN: keeps it */
    __m512 t = _mm512_fmadd_ps(x, _mm512_set1_ps(1.44269504088896341f), magic);
    __m512 n = _mm512_sub_ps(t, magic);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fmadd_ps(n, _mm512_set1_ps(2.12194440e-4f), r);
    __m512 p = _mm512_fmadd_ps(r, _mm512_set1_ps(1.9875691500e-4f),
                               _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), r);
    p = _mm512_add_ps(p, _mm512_set1_ps(1.0f));
    return _mm512_maskz_scalef_ps(keep, p, n);
}

float lk_softmax_exp_avx512(float *s, int64_t n)
{
    if (n <= 0)
        return 0.f;
    const __m512 ninf = _mm512_set1_ps(-INFINITY);
    /* max: NaN never wins (MAXPS returns the second operand on NaN) */
    __m512 m0 = ninf, m1 = ninf, m2 = ninf, m3 = ninf;
    int64_t j = 0;
    for (; j + 64 <= n; j += 64) {
        m0 = _mm512_max_ps(_mm512_loadu_ps(s + j), m0);
        m1 = _mm512_max_ps(_mm512_loadu_ps(s + j + 16), m1);
        m2 = _mm512_max_ps(_mm512_loadu_ps(s + j + 32), m2);
        m3 = _mm512_max_ps(_mm512_loadu_ps(s + j + 48), m3);
    }
    for (; j < n; j += 16)
        m0 = _mm512_max_ps(_mm512_mask_loadu_ps(ninf, lanes(n - j), s + j), m0);
    float mx = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_max_ps(m0, m1), _mm512_max_ps(m2, m3)));
    if (mx == -INFINITY) {
        /* every key masked: attend to nothing (a NaN stays, and is the sum) */
        float z = 0.f;
        for (j = 0; j < n; j++) {
            z = isnan(s[j]) ? s[j] : z;
            s[j] = isnan(s[j]) ? s[j] : 0.f;
        }
        return z;
    }
    __m512 m = _mm512_set1_ps(mx);
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (j = 0; j + 64 <= n; j += 64) {
        __m512 e0 = exp16(_mm512_loadu_ps(s + j), m);
        __m512 e1 = exp16(_mm512_loadu_ps(s + j + 16), m);
        __m512 e2 = exp16(_mm512_loadu_ps(s + j + 32), m);
        __m512 e3 = exp16(_mm512_loadu_ps(s + j + 48), m);
        a0 = _mm512_add_ps(a0, e0);
        a1 = _mm512_add_ps(a1, e1);
        a2 = _mm512_add_ps(a2, e2);
        a3 = _mm512_add_ps(a3, e3);
        _mm512_storeu_ps(s + j, e0);
        _mm512_storeu_ps(s + j + 16, e1);
        _mm512_storeu_ps(s + j + 32, e2);
        _mm512_storeu_ps(s + j + 48, e3);
    }
    for (; j < n; j += 16) {
        __mmask16 k = lanes(n - j);
        /* -inf in the dead lanes: their exp is an exact 0 */
        __m512 e = exp16(_mm512_mask_loadu_ps(ninf, k, s + j), m);
        a0 = _mm512_add_ps(a0, e);
        _mm512_mask_storeu_ps(s + j, k, e);
    }
    __m512 a = _mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3));
    /* a fixed tree: halves, then quarters, ... */
    __m256 h = _mm256_add_ps(_mm512_castps512_ps256(a), _mm512_extractf32x8_ps(a, 1));
    __m128 q = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
    q = _mm_add_ps(q, _mm_movehl_ps(q, q));
    q = _mm_add_ss(q, _mm_movehdup_ps(q));
    return _mm_cvtss_f32(q);
}

/* Column version: each column of s[rows, cols] (row stride ld) through
 * the softmax above, 64 columns (four vectors) at a time, so the maxima and
 * sums stay in lanes (no horizontal step). Sums over blocks of SB rows are
 * added in order. */
#define SB 64

/* columns [0, 16*nv) of s (the last vector's lanes in `last`): with nv a
 * constant the maxima and sums stay in registers */
static inline __attribute__((always_inline)) void
cols_chunk(int nv, float *s, int64_t rows, int64_t ld, __mmask16 last, const float *max,
           float *sum)
{
    const __m512 ninf = _mm512_set1_ps(-INFINITY), zero = _mm512_setzero_ps();
    __mmask16 mk[4];
    __m512 m[4], tot[4];
#pragma GCC unroll 4
    for (int v = 0; v < nv; v++) {
        mk[v] = v == nv - 1 ? last : (__mmask16)0xFFFF;
        m[v] = ninf;
        tot[v] = zero;
    }
    if (max) {
#pragma GCC unroll 4
        for (int v = 0; v < nv; v++)
            m[v] = _mm512_mask_loadu_ps(ninf, mk[v], max + 16 * v);
    } else {
        for (int64_t r = 0; r < rows; r++)
#pragma GCC unroll 4
            for (int v = 0; v < nv; v++) /* NaN never wins: MAXPS returns the second one */
                m[v] = _mm512_max_ps(_mm512_mask_loadu_ps(ninf, mk[v], s + r * ld + 16 * v),
                                     m[v]);
    }
    /* a column of -inf (every key masked): subtract 0, giving zeros */
#pragma GCC unroll 4
    for (int v = 0; v < nv; v++)
        m[v] = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(m[v], ninf, _CMP_EQ_OQ), m[v], zero);
    for (int64_t r0 = 0; r0 < rows; r0 += SB) {
        int64_t r1 = rows - r0 < SB ? rows : r0 + SB;
        __m512 part[4];
#pragma GCC unroll 4
        for (int v = 0; v < nv; v++)
            part[v] = zero;
        for (int64_t r = r0; r < r1; r++) {
            float *row = s + r * ld;
#pragma GCC unroll 4
            for (int v = 0; v < nv; v++) {
                __m512 e = exp16(_mm512_mask_loadu_ps(ninf, mk[v], row + 16 * v), m[v]);
                part[v] = _mm512_add_ps(part[v], e);
                _mm512_mask_storeu_ps(row + 16 * v, mk[v], e);
            }
        }
#pragma GCC unroll 4
        for (int v = 0; v < nv; v++)
            tot[v] = _mm512_add_ps(tot[v], part[v]);
    }
#pragma GCC unroll 4
    for (int v = 0; v < nv; v++)
        _mm512_mask_storeu_ps(sum + 16 * v, mk[v], tot[v]);
}

void lk_softmax_exp_cols_avx512(float *s, int64_t rows, int64_t cols, int64_t ld,
                                const float *max, float *sum)
{
    for (int64_t c0 = 0; c0 < cols; c0 += 64) {
        int64_t w = cols - c0 < 64 ? cols - c0 : 64;
        int nv = (int)((w + 15) / 16);
        __mmask16 last = lanes(w - 16 * (nv - 1));
        switch (nv) {
        case 4: cols_chunk(4, s + c0, rows, ld, last, max ? max + c0 : NULL, sum + c0); break;
        case 3: cols_chunk(3, s + c0, rows, ld, last, max ? max + c0 : NULL, sum + c0); break;
        case 2: cols_chunk(2, s + c0, rows, ld, last, max ? max + c0 : NULL, sum + c0); break;
        default: cols_chunk(1, s + c0, rows, ld, last, max ? max + c0 : NULL, sum + c0); break;
        }
    }
}

/* ---- lk_sgemm_thin: C = diag(scale) op(A) B for a B of few columns ----
 *
 * Attention's products with 40 .. 160 columns: the blocked sgemm pads n
 * to its 32-wide panels (40 -> 64) and packs A, a (transposing) copy as big
 * as the product's input. Here A is read in place (element (i, p) at
 * a[i*rs + p*ps]), B's rows are loaded as 1-4 vectors (the last masked) and
 * broadcast A elements feed 24 accumulators: n = 40 uses 40 of 48 lanes,
 * n = 64 all. k runs in blocks of TK so a block of B stays in L1/L2 across
 * the row tiles; the blocks' partial sums are added into C in order, so
 * the result is fixed for given operands. */
#define TK 512

/* rows tile: C[0:rows, 0:16*nv) (the last vector masked by `last`) for one
 * k block. Rows past `rows` repeat the last row (in bounds, discarded). */
static inline __attribute__((always_inline)) void
thin_tile(int nv, int mr, int64_t kc, const float *a, int64_t rs, int64_t ps, int rows,
          const float *b, int64_t ldb, __mmask16 last, float *c, int64_t ldc, int first,
          const float *scale, float *cmax)
{
    __m512 acc[12][4];
    const float *ar[12];
#pragma GCC unroll 12
    for (int i = 0; i < mr; i++) {
        ar[i] = a + (i < rows ? i : rows - 1) * rs;
#pragma GCC unroll 4
        for (int v = 0; v < nv; v++)
            acc[i][v] = _mm512_setzero_ps();
    }
    for (int64_t p = 0, off = 0; p < kc; p++, off += ps) {
        __m512 bv[4];
#pragma GCC unroll 4
        for (int v = 0; v < nv; v++)
            bv[v] = v == nv - 1 ? _mm512_maskz_loadu_ps(last, b + 16 * v)
                                : _mm512_loadu_ps(b + 16 * v);
#pragma GCC unroll 12
        for (int i = 0; i < mr; i++) {
            __m512 av = _mm512_set1_ps(ar[i][off]);
#pragma GCC unroll 4
            for (int v = 0; v < nv; v++)
                acc[i][v] = _mm512_fmadd_ps(av, bv[v], acc[i][v]);
        }
        b += ldb;
    }
    __m512 cm[4];
#pragma GCC unroll 4
    for (int v = 0; v < nv; v++)
        cm[v] = cmax ? _mm512_maskz_loadu_ps(v == nv - 1 ? last : (__mmask16)0xFFFF, cmax + 16 * v)
                     : _mm512_setzero_ps();
#pragma GCC unroll 12
    for (int i = 0; i < mr; i++) {
        if (i >= rows)
            break;
        float *cp = c + i * ldc;
#pragma GCC unroll 4
        for (int v = 0; v < nv; v++) {
            __mmask16 mk = v == nv - 1 ? last : (__mmask16)0xFFFF;
            __m512 r = acc[i][v];
            if (!first)
                r = _mm512_add_ps(_mm512_maskz_loadu_ps(mk, cp + 16 * v), r);
            if (scale)
                r = _mm512_mul_ps(r, _mm512_set1_ps(scale[i]));
            _mm512_mask_storeu_ps(cp + 16 * v, mk, r);
            if (cmax) /* NaN never wins: MAXPS returns the second operand */
                cm[v] = _mm512_max_ps(r, cm[v]);
        }
    }
    if (cmax)
#pragma GCC unroll 4
        for (int v = 0; v < nv; v++)
            _mm512_mask_storeu_ps(cmax + 16 * v, v == nv - 1 ? last : (__mmask16)0xFFFF, cm[v]);
}

/* rows per tile for nv vectors of columns: 24 accumulators */
static int thin_mr(int nv)
{
    return nv == 4 ? 6 : nv == 3 ? 8 : 12;
}

/* one column chunk of nv vectors, all rows, one k block */
static void thin_chunk(int nv, int64_t m, int64_t kc, const float *a, int64_t rs, int64_t ps,
                       const float *b, int64_t ldb, __mmask16 last, float *c, int64_t ldc,
                       int first, const float *scale, float *cmax)
{
    int mr = thin_mr(nv);
    for (int64_t i0 = 0; i0 < m; i0 += mr) {
        int r = (int)(m - i0 < mr ? m - i0 : mr);
        const float *ai = a + i0 * rs, *si = scale ? scale + i0 : NULL;
        float *ci = c + i0 * ldc;
        switch (nv) {
        case 4: thin_tile(4, 6, kc, ai, rs, ps, r, b, ldb, last, ci, ldc, first, si, cmax); break;
        case 3: thin_tile(3, 8, kc, ai, rs, ps, r, b, ldb, last, ci, ldc, first, si, cmax); break;
        case 2: thin_tile(2, 12, kc, ai, rs, ps, r, b, ldb, last, ci, ldc, first, si, cmax); break;
        default: thin_tile(1, 12, kc, ai, rs, ps, r, b, ldb, last, ci, ldc, first, si, cmax); break;
        }
    }
}

void lk_sgemm_thin_avx512(int transa, int64_t m, int64_t n, int64_t k, const float *a,
                          int64_t lda, const float *b, int64_t ldb, const float *scale, float *c,
                          int64_t ldc, float *cmax)
{
    for (int64_t j = 0; cmax && j < n; j++)
        cmax[j] = m > 0 && k <= 0 ? 0.f : -INFINITY;
    if (m <= 0 || n <= 0)
        return;
    if (k <= 0) {
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < n; j++)
                c[i * ldc + j] = 0.f;
        return;
    }
    int64_t rs = transa ? 1 : lda, ps = transa ? lda : 1;
    /* column chunks of at most 4 vectors, as even as possible (80 = 3 + 2
     * vectors, 160 = 4 + 3 + 3) */
    int64_t nvt = (n + 15) / 16, nch = (nvt + 3) / 4;
    for (int64_t k0 = 0; k0 < k; k0 += TK) {
        int64_t kc = k - k0 < TK ? k - k0 : TK;
        int first = k0 == 0;
        int final = k0 + kc >= k;
        const float *sc = final ? scale : NULL;
        int64_t j0 = 0;
        for (int64_t ch = 0; ch < nch; ch++) {
            int nv = (int)(nvt / nch + (ch < nvt % nch));
            int64_t w = n - j0 < 16 * nv ? n - j0 : 16 * nv;
            thin_chunk(nv, m, kc, a + k0 * ps, rs, ps, b + k0 * ldb + j0, ldb,
                       lanes(w - 16 * (nv - 1)), c + j0, ldc, first, sc,
                       final && cmax ? cmax + j0 : NULL);
            j0 += w;
        }
    }
}
