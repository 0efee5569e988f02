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
#include "x86.h"

static inline __mmask16 lanes(int64_t n)
{
    return n >= 16 ? (__mmask16)0xFFFF : n <= 0 ? (__mmask16)0 : (__mmask16)((1u << n) - 1);
}

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
