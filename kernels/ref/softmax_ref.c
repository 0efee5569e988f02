/* Portable row softmax (unnormalised): the reference the SIMD paths are
 * tested against and the fallback without one.
 *
 * 4-wide GCC vectors (SSE on any x86-64, NEON on arm64) with a Cephes-style
 * expf, about 1 ulp on the range used: no libm call per score, plain C
 * whatever the ISA flags. The row is padded with -inf to whole vectors; the
 * lane sums are combined in a fixed order. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "../kernels.h"
#include "../ref/ref.h"

typedef float v4f __attribute__((vector_size(16)));
typedef int32_t v4i __attribute__((vector_size(16)));

static inline v4f blend(v4i m, v4f a, v4f b)
{
    return (v4f)(((v4i)a & m) | ((v4i)b & ~m));
}

/* x <= 0 (a score minus the row max). Below LK_EXP_LO the result is an
 * exact 0 (masked keys); NaN stays NaN. */
static inline v4f exp4(v4f x)
{
    const v4f lo = {LK_EXP_LO, LK_EXP_LO, LK_EXP_LO, LK_EXP_LO};
    v4i under = x < lo;
    x = blend(under, lo, x);
    /* x = n ln2 + r, n rounded to nearest by the 1.5 * 2^23 trick */
    v4f t = x * 1.44269504088896341f + 12582912.0f;
    v4f n = t - 12582912.0f;
    v4f r = x - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    v4f p = r * 1.9875691500e-4f + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    v4i e = ((v4i)t - 0x4B400000 + 127) << 23; /* 2^n, n in [-126, 0] */
    return (v4f)((v4i)(p * (v4f)e) & ~under);
}

static inline v4f load4(const float *s, int64_t left)
{
    v4f v;
    if (left >= 4) {
        memcpy(&v, s, sizeof v);
    } else {
        for (int i = 0; i < 4; i++)
            v[i] = i < left ? s[i] : -INFINITY;
    }
    return v;
}

static inline void store4(float *s, v4f v, int64_t left)
{
    if (left >= 4)
        memcpy(s, &v, sizeof v);
    else
        for (int i = 0; i < left; i++)
            s[i] = v[i];
}

float lk_softmax_exp_ref(float *s, int64_t n)
{
    if (n <= 0)
        return 0.f;
    v4f mx = load4(s, n);
    for (int64_t j = 4; j < n; j += 4) {
        v4f v = load4(s + j, n - j);
        mx = blend(v > mx, v, mx); /* NaN never wins: it propagates through exp */
    }
    float m = mx[0] > mx[1] ? mx[0] : mx[1];
    m = mx[2] > m ? mx[2] : m;
    m = mx[3] > m ? mx[3] : m;
    if (m == -INFINITY) {
        /* every key masked: attend to nothing (a NaN stays, and is the sum) */
        float z = 0.f;
        for (int64_t j = 0; j < n; j++) {
            z = isnan(s[j]) ? s[j] : z;
            s[j] = isnan(s[j]) ? s[j] : 0.f;
        }
        return z;
    }
    /* two accumulators: shorter dependency chains, same order every run */
    v4f acc0 = {0, 0, 0, 0}, acc1 = {0, 0, 0, 0};
    int64_t j = 0;
    for (; j + 8 <= n; j += 8) {
        v4f e0 = exp4(load4(s + j, 4) - m), e1 = exp4(load4(s + j + 4, 4) - m);
        acc0 += e0;
        acc1 += e1;
        store4(s + j, e0, 4);
        store4(s + j + 4, e1, 4);
    }
    for (; j < n; j += 4) {
        v4f e = exp4(load4(s + j, n - j) - m);
        acc0 += e;
        store4(s + j, e, n - j);
    }
    v4f acc = acc0 + acc1;
    return (acc[0] + acc[1]) + (acc[2] + acc[3]);
}

/* Column version: 4 columns at a time, the maxima and sums in lanes; sums
 * over blocks of SB rows added in order. */
#define SB 64

void lk_softmax_exp_cols_ref(float *s, int64_t rows, int64_t cols, int64_t ld, const float *max,
                             float *sum)
{
    const v4f ninf = {-INFINITY, -INFINITY, -INFINITY, -INFINITY}, zero = {0, 0, 0, 0};
    for (int64_t c0 = 0; c0 < cols; c0 += 4) {
        int64_t w = cols - c0;
        float *base = s + c0;
        v4f m = max ? load4(max + c0, w) : ninf;
        for (int64_t r = 0; !max && r < rows; r++) {
            v4f v = load4(base + r * ld, w);
            m = blend(v > m, v, m); /* NaN never wins */
        }
        m = blend(m == ninf, zero, m); /* a column of -inf: zeros */
        v4f tot = zero;
        for (int64_t r0 = 0; r0 < rows; r0 += SB) {
            int64_t r1 = rows - r0 < SB ? rows : r0 + SB;
            v4f part = zero;
            for (int64_t r = r0; r < r1; r++) {
                v4f e = exp4(load4(base + r * ld, w) - m);
                part += e;
                store4(base + r * ld, e, w);
            }
            tot += part;
        }
        store4(sum + c0, tot, w);
    }
}
