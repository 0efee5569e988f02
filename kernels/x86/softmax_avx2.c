/* AVX2 + FMA row softmax (unnormalised), lk_softmax_exp's contract, for x86
 * machines without AVX-512: the reference's expf on 8 lanes with FMA, four
 * vectors per iteration, the tail through a -inf padded copy (no access
 * past n). The partial sums are combined in a fixed order. */
#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "../kernels.h"
#include "x86.h"

/* lanes [0, n) of 8 set */
static inline __m256i lanes8(int n)
{
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* exp(x - m) */
static inline __attribute__((always_inline)) __m256 exp8(__m256 x, __m256 m)
{
    const __m256 lo = _mm256_set1_ps(LK_EXP_LO), magic = _mm256_set1_ps(12582912.0f);
    x = _mm256_sub_ps(x, m);
    /* all ones where x < lo (ordered: NaN is not under and stays NaN) */
    __m256 under = _mm256_cmp_ps(x, lo, _CMP_LT_OQ);
    x = _mm256_max_ps(lo, x); /* second operand on NaN: keeps it */
    __m256 t = _mm256_fmadd_ps(x, _mm256_set1_ps(1.44269504088896341f), magic);
    __m256 n = _mm256_sub_ps(t, magic);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fmadd_ps(n, _mm256_set1_ps(2.12194440e-4f), r);
    __m256 p = _mm256_fmadd_ps(r, _mm256_set1_ps(1.9875691500e-4f),
                               _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), r);
    p = _mm256_add_ps(p, _mm256_set1_ps(1.0f));
    /* 2^n, n in [-126, 0]: the exponent field built from t's low bits */
    __m256i e = _mm256_slli_epi32(
        _mm256_add_epi32(_mm256_castps_si256(t), _mm256_set1_epi32(127 - 0x4B400000)), 23);
    return _mm256_andnot_ps(under, _mm256_mul_ps(p, _mm256_castsi256_ps(e)));
}

float lk_softmax_exp_avx2(float *s, int64_t n)
{
    if (n <= 0)
        return 0.f;
    const __m256 ninf = _mm256_set1_ps(-INFINITY);
    float tail[8];
    int64_t nt = n % 8, nb = n - nt; /* whole vectors, then a padded copy */
    for (int i = 0; i < 8; i++)
        tail[i] = i < nt ? s[nb + i] : -INFINITY;
    /* max: NaN never wins (MAXPS returns the second operand on NaN) */
    __m256 m0 = ninf, m1 = ninf, m2 = ninf, m3 = ninf;
    int64_t j = 0;
    for (; j + 32 <= nb; j += 32) {
        m0 = _mm256_max_ps(_mm256_loadu_ps(s + j), m0);
        m1 = _mm256_max_ps(_mm256_loadu_ps(s + j + 8), m1);
        m2 = _mm256_max_ps(_mm256_loadu_ps(s + j + 16), m2);
        m3 = _mm256_max_ps(_mm256_loadu_ps(s + j + 24), m3);
    }
    for (; j < nb; j += 8)
        m0 = _mm256_max_ps(_mm256_loadu_ps(s + j), m0);
    m0 = _mm256_max_ps(_mm256_loadu_ps(tail), m0);
    __m256 mv = _mm256_max_ps(_mm256_max_ps(m0, m1), _mm256_max_ps(m2, m3));
    __m128 h = _mm_max_ps(_mm256_castps256_ps128(mv), _mm256_extractf128_ps(mv, 1));
    h = _mm_max_ps(h, _mm_movehl_ps(h, h));
    h = _mm_max_ss(h, _mm_movehdup_ps(h));
    float mx = _mm_cvtss_f32(h);
    if (mx == -INFINITY) {
        /* every key masked: attend to nothing (a NaN stays, and is the sum) */
        float z = 0.f;
        for (j = 0; j < n; j++) {
            z = isnan(s[j]) ? s[j] : z;
            s[j] = isnan(s[j]) ? s[j] : 0.f;
        }
        return z;
    }
    __m256 m = _mm256_set1_ps(mx);
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (j = 0; j + 32 <= nb; j += 32) {
        __m256 e0 = exp8(_mm256_loadu_ps(s + j), m);
        __m256 e1 = exp8(_mm256_loadu_ps(s + j + 8), m);
        __m256 e2 = exp8(_mm256_loadu_ps(s + j + 16), m);
        __m256 e3 = exp8(_mm256_loadu_ps(s + j + 24), m);
        a0 = _mm256_add_ps(a0, e0);
        a1 = _mm256_add_ps(a1, e1);
        a2 = _mm256_add_ps(a2, e2);
        a3 = _mm256_add_ps(a3, e3);
        _mm256_storeu_ps(s + j, e0);
        _mm256_storeu_ps(s + j + 8, e1);
        _mm256_storeu_ps(s + j + 16, e2);
        _mm256_storeu_ps(s + j + 24, e3);
    }
    for (; j < nb; j += 8) {
        __m256 e = exp8(_mm256_loadu_ps(s + j), m);
        a0 = _mm256_add_ps(a0, e);
        _mm256_storeu_ps(s + j, e);
    }
    if (nt) {
        /* the padding is -inf: its exp is an exact 0 */
        __m256 e = exp8(_mm256_loadu_ps(tail), m);
        a0 = _mm256_add_ps(a0, e);
        _mm256_storeu_ps(tail, e);
        memcpy(s + nb, tail, (size_t)nt * sizeof(float));
    }
    __m256 a = _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3));
    __m128 q = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    q = _mm_add_ps(q, _mm_movehl_ps(q, q));
    q = _mm_add_ss(q, _mm_movehdup_ps(q));
    return _mm_cvtss_f32(q);
}

/* Column version: each column of s[rows, cols] (row stride ld) through
 * the softmax above, 16 columns (two vectors) at a time, the maxima and sums
 * in lanes. Sums over blocks of SB rows are added in order. */
#define SB 64

static inline __m256 load_pad(const float *p, __m256i mk)
{
    /* masked-off lanes -inf (their exp is an exact 0) */
    return _mm256_blendv_ps(_mm256_set1_ps(-INFINITY), _mm256_maskload_ps(p, mk),
                            _mm256_castsi256_ps(mk));
}

void lk_softmax_exp_cols_avx2(float *s, int64_t rows, int64_t cols, int64_t ld, const float *max,
                              float *sum)
{
    const __m256 ninf = _mm256_set1_ps(-INFINITY), zero = _mm256_setzero_ps();
    for (int64_t c0 = 0; c0 < cols; c0 += 16) {
        int w = (int)(cols - c0 < 16 ? cols - c0 : 16);
        __m256i mk0 = lanes8(w), mk1 = lanes8(w - 8);
        __m256 m0 = ninf, m1 = ninf, t0 = zero, t1 = zero;
        float *base = s + c0;
        if (max) {
            m0 = load_pad(max + c0, mk0);
            if (w > 8)
                m1 = load_pad(max + c0 + 8, mk1);
        }
        for (int64_t r = 0; !max && r < rows; r++) {
            /* NaN never wins: MAXPS returns the second operand */
            m0 = _mm256_max_ps(load_pad(base + r * ld, mk0), m0);
            if (w > 8)
                m1 = _mm256_max_ps(load_pad(base + r * ld + 8, mk1), m1);
        }
        /* a column of -inf (every key masked): subtract 0, giving zeros */
        m0 = _mm256_blendv_ps(m0, zero, _mm256_cmp_ps(m0, ninf, _CMP_EQ_OQ));
        m1 = _mm256_blendv_ps(m1, zero, _mm256_cmp_ps(m1, ninf, _CMP_EQ_OQ));
        for (int64_t r0 = 0; r0 < rows; r0 += SB) {
            int64_t r1 = rows - r0 < SB ? rows : r0 + SB;
            __m256 p0 = zero, p1 = zero;
            for (int64_t r = r0; r < r1; r++) {
                float *row = base + r * ld;
                __m256 e0 = exp8(load_pad(row, mk0), m0);
                p0 = _mm256_add_ps(p0, e0);
                _mm256_maskstore_ps(row, mk0, e0);
                if (w > 8) {
                    __m256 e1 = exp8(load_pad(row + 8, mk1), m1);
                    p1 = _mm256_add_ps(p1, e1);
                    _mm256_maskstore_ps(row + 8, mk1, e1);
                }
            }
            t0 = _mm256_add_ps(t0, p0);
            t1 = _mm256_add_ps(t1, p1);
        }
        _mm256_maskstore_ps(sum + c0, mk0, t0);
        if (w > 8)
            _mm256_maskstore_ps(sum + c0 + 8, mk1, t1);
    }
}

/* ---- lk_sgemm_thin: C = diag(scale) A B for a B of few columns ----
 *
 * As the AVX-512 kernel (kernels/x86/softmax_avx512.c): op(A) read in place,
 * B's rows loaded as 1-3 vectors of 8 (the last masked), broadcast A
 * elements; 16 registers hold 12 accumulators, the B vectors and the
 * broadcast. n = 40 runs as 24 + 16 columns, every lane used. k runs in
 * blocks of TK whose partial sums are added into C in order. */
#define TK 512

static inline __attribute__((always_inline)) void
thin_tile(int nv, int mr, int64_t kc, const float *a, int64_t rs, int64_t ps, int rows,
          const float *b, int64_t ldb, __m256i last, float *c, int64_t ldc, int first,
          const float *scale, float *cmax)
{
    __m256 acc[6][3];
    const float *ar[6];
#pragma GCC unroll 6
    for (int i = 0; i < mr; i++) {
        ar[i] = a + (i < rows ? i : rows - 1) * rs; /* rows past `rows`: discarded */
#pragma GCC unroll 3
        for (int v = 0; v < nv; v++)
            acc[i][v] = _mm256_setzero_ps();
    }
    for (int64_t p = 0, off = 0; p < kc; p++, off += ps) {
        __m256 bv[3];
#pragma GCC unroll 3
        for (int v = 0; v < nv; v++)
            bv[v] = v == nv - 1 ? _mm256_maskload_ps(b + 8 * v, last) : _mm256_loadu_ps(b + 8 * v);
#pragma GCC unroll 6
        for (int i = 0; i < mr; i++) {
            __m256 av = _mm256_broadcast_ss(ar[i] + off);
#pragma GCC unroll 3
            for (int v = 0; v < nv; v++)
                acc[i][v] = _mm256_fmadd_ps(av, bv[v], acc[i][v]);
        }
        b += ldb;
    }
    __m256 cm[3];
#pragma GCC unroll 3
    for (int v = 0; v < nv; v++)
        cm[v] = !cmax ? _mm256_setzero_ps()
                : v == nv - 1 ? _mm256_maskload_ps(cmax + 8 * v, last)
                              : _mm256_loadu_ps(cmax + 8 * v);
#pragma GCC unroll 6
    for (int i = 0; i < mr; i++) {
        if (i >= rows)
            break;
        float *cp = c + i * ldc;
#pragma GCC unroll 3
        for (int v = 0; v < nv; v++) {
            __m256 r = acc[i][v];
            int tail = v == nv - 1;
            if (!first)
                r = _mm256_add_ps(tail ? _mm256_maskload_ps(cp + 8 * v, last)
                                       : _mm256_loadu_ps(cp + 8 * v),
                                  r);
            if (scale)
                r = _mm256_mul_ps(r, _mm256_set1_ps(scale[i]));
            if (tail)
                _mm256_maskstore_ps(cp + 8 * v, last, r);
            else
                _mm256_storeu_ps(cp + 8 * v, r);
            if (cmax) /* NaN never wins: MAXPS returns the second operand */
                cm[v] = _mm256_max_ps(r, cm[v]);
        }
    }
    if (cmax) {
#pragma GCC unroll 3
        for (int v = 0; v < nv; v++) {
            if (v == nv - 1)
                _mm256_maskstore_ps(cmax + 8 * v, last, cm[v]);
            else
                _mm256_storeu_ps(cmax + 8 * v, cm[v]);
        }
    }
}

/* one column chunk of nv vectors, all rows, one k block */
static void thin_chunk(int nv, int64_t m, int64_t kc, const float *a, int64_t rs, int64_t ps,
                       const float *b, int64_t ldb, __m256i last, float *c, int64_t ldc,
                       int first, const float *scale, float *cmax)
{
    int mr = nv == 3 ? 4 : 6;
    for (int64_t i0 = 0; i0 < m; i0 += mr) {
        int r = (int)(m - i0 < mr ? m - i0 : mr);
        const float *ai = a + i0 * rs, *si = scale ? scale + i0 : NULL;
        float *ci = c + i0 * ldc;
        switch (nv) {
        case 3: thin_tile(3, 4, kc, ai, rs, ps, r, b, ldb, last, ci, ldc, first, si, cmax); break;
        case 2: thin_tile(2, 6, kc, ai, rs, ps, r, b, ldb, last, ci, ldc, first, si, cmax); break;
        default: thin_tile(1, 6, kc, ai, rs, ps, r, b, ldb, last, ci, ldc, first, si, cmax); break;
        }
    }
}

void lk_sgemm_thin_avx2(int transa, int64_t m, int64_t n, int64_t k, const float *a, int64_t lda,
                        const float *b, int64_t ldb, const float *scale, float *c, int64_t ldc,
                        float *cmax)
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
    /* column chunks of at most 3 vectors, as even as possible */
    int64_t nvt = (n + 7) / 8, nch = (nvt + 2) / 3;
    for (int64_t k0 = 0; k0 < k; k0 += TK) {
        int64_t kc = k - k0 < TK ? k - k0 : TK;
        int first = k0 == 0;
        int final = k0 + kc >= k;
        const float *sc = final ? scale : NULL;
        int64_t j0 = 0;
        for (int64_t ch = 0; ch < nch; ch++) {
            int nv = (int)(nvt / nch + (ch < nvt % nch));
            int64_t w = n - j0 < 8 * nv ? n - j0 : 8 * nv;
            thin_chunk(nv, m, kc, a + k0 * ps, rs, ps, b + k0 * ldb + j0, ldb,
                       lanes8((int)(w - 8 * (nv - 1))), c + j0, ldc, first, sc,
                       final && cmax ? cmax + j0 : NULL);
            j0 += w;
        }
    }
}
