/* Portable packing pieces every level shares or is tested against: a
 * convolution's column matrix cut straight from its input, and operands
 * stored as f16 / bf16 read as f32. */
#include <string.h>

#include "ref.h"

void lk_im2col_pack_ref(const lk_im2col *g, int64_t p0, int rows, int64_t k0, int64_t kc, int mr,
                        float *dst)
{
    int64_t khw = g->kh * g->kw, P1 = g->OH * g->OW;
    for (int64_t q = 0; q < kc; q++) {
        int64_t k = k0 + q;
        int64_t c = k / khw, ki = (k % khw) / g->kw, kj = k % g->kw;
        const float *xc = g->x + c * g->H * g->W;
        float *d = dst + q * mr;
        for (int r = 0; r < mr; r++) {
            float v = 0.f;
            if (r < rows) {
                int64_t p = p0 + r, n = p / P1, oy = p % P1 / g->OW, ox = p % g->OW;
                int64_t iy = oy * g->sh - g->ph + ki * g->dh;
                int64_t ix = ox * g->sw - g->pw + kj * g->dw;
                if (iy >= 0 && iy < g->H && ix >= 0 && ix < g->W)
                    v = xc[n * g->xstride + iy * g->W + ix];
            }
            d[r] = v;
        }
    }
}

/* IEEE binary16 to binary32, exact for every input (subnormals, inf, NaN
 * payloads) */
static float half_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu, bits;
    if (e == 0x1f) {
        bits = sign | 0x7f800000u | (m << 13);
    } else if (e != 0) {
        bits = sign | ((e + 112) << 23) | (m << 13);
    } else if (m == 0) {
        bits = sign;
    } else {
        /* subnormal: normalise the mantissa */
        e = 113;
        while (!(m & 0x400u)) {
            m <<= 1;
            e--;
        }
        bits = sign | (e << 23) | ((m & 0x3ffu) << 13);
    }
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

float lk_elt_get(const void *p, lk_elt t, int64_t i)
{
    float f;
    uint32_t bits;
    switch (t) {
    case LK_F16:
        return half_to_f32(((const uint16_t *)p)[i]);
    case LK_BF16:
        bits = (uint32_t)((const uint16_t *)p)[i] << 16;
        memcpy(&f, &bits, sizeof f);
        return f;
    default:
        return ((const float *)p)[i];
    }
}
