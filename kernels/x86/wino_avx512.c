/* 3x3 convolutions (stride 1, padding 1) by Winograd's F(2x2, 3x3), for
 * AVX-512.
 *
 * Each 2x2 block of output pixels ("tile") is Y = A^T [sum over input
 * channels of (G g G^T) . (B^T d B)] A, with g a 3x3 kernel and d the 4x4
 * input patch around the tile: per tile and channel pair 16 products
 * instead of 36. Per t of the 16 transformed positions that sum is a GEMM,
 * U_t [cout x C] times V_t [C x tiles], run on the blocked driver; the
 * transforms around it are adds (and halves for U), 16 tiles or 16
 * channels to a vector. Measured on this machine (Zen 5, 2 threads, f16
 * weights), direct (im2col GEMM) -> Winograd: batch 2, 320 channels at
 * 32x32 12.5 -> 7.9 ms, 640 at 16x16 12.8 -> 9.0, 960 -> 320 at 32x32
 * 37.6 -> 23.6; batch 1, 512 at 128x128 247 -> 131, 128 at 512x512 275 ->
 * 222. At 8x8 and below (under 64 tiles) the direct GEMM is as fast, and U
 * would be worked out for few products: those shapes are not taken.
 *
 * Accuracy: the transforms' additions round differently from the direct
 * sum, ~1e-6 relative on SD-sized layers. U is worked out per call from
 * the weights (kept whole it would be 16/9 of the weights in f32), and in
 * f32: an f16 U was measured 1000 times less accurate. The same bits for
 * any thread count: the GEMMs promise it, and the transforms are per
 * element.
 *
 * Memory: grow-only scratch for U (at most U_FLOATS: larger layers go the
 * direct way), V and M (the products) for a chunk of tile rows within
 * V_FLOATS and M_FLOATS (at least one row). */
#include <immintrin.h>
#include <stdint.h>
#include <stdlib.h>

#include "core/error.h"
#include "core/pool.h"
#include "../gemm_blocked.h"
#include "avx512.h"
#include "x86.h"

#define U_FLOATS (20 << 20) /* 80 MB: up to 1920 -> 640 channels */
#define V_FLOATS (6 << 20) /* 24 MB */
#define M_FLOATS (4 << 20) /* 16 MB */

typedef struct {
    const float *x;
    int64_t N, C, H, W, th, tw; /* tiles: th x tw per image */
    const void *w;
    lk_elt wt;
    int64_t cout;
    const float *bias;
    float *out;
    int64_t r0, nr; /* the tile rows (n * th + ty) of this chunk */
    float *u, *v, *m;
    float *rows; /* a widened weight row per pool thread, rowf floats apart */
    int64_t rowf;
} wino_job;

static _Thread_local float *scratch;
static _Thread_local size_t scratch_cap;

/* ---- U = G g G^T, G = [1 0 0; .5 .5 .5; .5 -.5 .5; 0 0 1], stored
 * u[t][o][c] ---- */

/* w's row o (C x 9 values) as f32: the row itself, or widened into the
 * pool thread's row buffer */
static const float *weight_row(const wino_job *j, int64_t o)
{
    int64_t n = j->C * 9;
    if (j->wt == LK_F32)
        return (const float *)j->w + o * n;
    float *r = j->rows + lc_pool_thread_index() * j->rowf;
    const uint16_t *s = (const uint16_t *)j->w + o * n;
    for (int64_t i = 0; i < n; i += 16) {
        __mmask16 m = lanes(n - i);
        __m512 f = j->wt == LK_F16 ? load16(s, i, LK_F16, m) : load16(s, i, LK_BF16, m);
        _mm512_mask_storeu_ps(r + i, m, f);
    }
    return r;
}

static void weights_task(void *ctx, int64_t o0, int64_t o1)
{
    const wino_job *j = ctx;
    const __m512 half = _mm512_set1_ps(.5f);
    const __m512i step = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10,
                                                              11, 12, 13, 14, 15),
                                            _mm512_set1_epi32(9));
    for (int64_t o = o0; o < o1; o++) {
        const float *g = weight_row(j, o);
        for (int64_t c0 = 0; c0 < j->C; c0 += 16) {
            __mmask16 mk = lanes(j->C - c0);
            __m512 k[3][3];
            #pragma GCC unroll 16
            for (int a = 0; a < 3; a++)
                #pragma GCC unroll 16
                for (int b = 0; b < 3; b++)
                    k[a][b] = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), mk, step,
                                                       g + c0 * 9 + a * 3 + b, 4);
            __m512 r[4][3]; /* G g */
            #pragma GCC unroll 16
            for (int b = 0; b < 3; b++) {
                __m512 s = _mm512_add_ps(k[0][b], k[2][b]);
                r[0][b] = k[0][b];
                r[1][b] = _mm512_mul_ps(half, _mm512_add_ps(s, k[1][b]));
                r[2][b] = _mm512_mul_ps(half, _mm512_sub_ps(s, k[1][b]));
                r[3][b] = k[2][b];
            }
            #pragma GCC unroll 16
            for (int a = 0; a < 4; a++) {
                __m512 s = _mm512_add_ps(r[a][0], r[a][2]);
                __m512 u[4] = {r[a][0], _mm512_mul_ps(half, _mm512_add_ps(s, r[a][1])),
                               _mm512_mul_ps(half, _mm512_sub_ps(s, r[a][1])), r[a][2]};
                #pragma GCC unroll 16
                for (int b = 0; b < 4; b++)
                    _mm512_mask_storeu_ps(j->u + ((a * 4 + b) * j->cout + o) * j->C + c0, mk, u[b]);
            }
        }
    }
}

/* ---- V = B^T d B, B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1], stored
 * v[t][c][tile of the chunk] ---- */

/* xr[s .. s+16), zeros outside [0, W) and for a missing row */
static inline __m512 load_row(const float *xr, int64_t s, int64_t W)
{
    if (!xr)
        return _mm512_setzero_ps();
    return _mm512_maskz_loadu_ps(lanes(W - s) & ~lanes(-s), xr + s);
}

static void input_task(void *ctx, int64_t q0, int64_t q1)
{
    const wino_job *j = ctx;
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28,
                                           30);
    const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
    int64_t tc = j->nr * j->tw;
    for (int64_t q = q0; q < q1; q++) {
        int64_t c = q / j->nr, rr = q % j->nr, row = j->r0 + rr;
        int64_t n = row / j->th, ty = row % j->th;
        const float *xc = j->x + (n * j->C + c) * j->H * j->W;
        for (int64_t tx0 = 0; tx0 < j->tw; tx0 += 16) {
            __m512 d[4][4];
            #pragma GCC unroll 16
            for (int a = 0; a < 4; a++) {
                int64_t iy = 2 * ty - 1 + a;
                const float *xr = iy >= 0 && iy < j->H ? xc + iy * j->W : NULL;
                /* lane l's columns 2(tx0 + l) - 1 + e: evens and odds of two
                 * 32-wide runs */
                int64_t s = 2 * tx0 - 1;
                __m512 l0 = load_row(xr, s, j->W), l1 = load_row(xr, s + 16, j->W);
                __m512 h0 = load_row(xr, s + 2, j->W), h1 = load_row(xr, s + 18, j->W);
                d[a][0] = _mm512_permutex2var_ps(l0, even, l1);
                d[a][1] = _mm512_permutex2var_ps(l0, odd, l1);
                d[a][2] = _mm512_permutex2var_ps(h0, even, h1);
                d[a][3] = _mm512_permutex2var_ps(h0, odd, h1);
            }
            __m512 e[4][4];
            #pragma GCC unroll 16
            for (int b = 0; b < 4; b++) {
                e[0][b] = _mm512_sub_ps(d[0][b], d[2][b]);
                e[1][b] = _mm512_add_ps(d[1][b], d[2][b]);
                e[2][b] = _mm512_sub_ps(d[2][b], d[1][b]);
                e[3][b] = _mm512_sub_ps(d[1][b], d[3][b]);
            }
            __mmask16 mk = lanes(j->tw - tx0);
            float *dst = j->v + c * tc + rr * j->tw + tx0;
            #pragma GCC unroll 16
            for (int a = 0; a < 4; a++) {
                __m512 f[4] = {_mm512_sub_ps(e[a][0], e[a][2]), _mm512_add_ps(e[a][1], e[a][2]),
                               _mm512_sub_ps(e[a][2], e[a][1]), _mm512_sub_ps(e[a][1], e[a][3])};
                #pragma GCC unroll 16
                for (int b = 0; b < 4; b++)
                    _mm512_mask_storeu_ps(dst + (a * 4 + b) * j->C * tc, mk, f[b]);
            }
        }
    }
}

/* ---- Y = A^T M A + bias, A^T = [1 1 1 0; 0 1 -1 -1], into out ---- */

static void output_task(void *ctx, int64_t q0, int64_t q1)
{
    const wino_job *j = ctx;
    const __m512i lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const __m512i hi = _mm512_add_epi32(lo, _mm512_set1_epi32(8));
    int64_t tc = j->nr * j->tw;
    for (int64_t q = q0; q < q1; q++) {
        int64_t o = q / j->nr, rr = q % j->nr, row = j->r0 + rr;
        int64_t n = row / j->th, ty = row % j->th;
        float *oc = j->out + (n * j->cout + o) * j->H * j->W;
        __m512 bias = _mm512_set1_ps(j->bias ? j->bias[o] : 0.f);
        for (int64_t tx0 = 0; tx0 < j->tw; tx0 += 16) {
            __mmask16 mk = lanes(j->tw - tx0);
            const float *src = j->m + o * tc + rr * j->tw + tx0;
            __m512 mm[4][4];
            #pragma GCC unroll 16
            for (int t = 0; t < 16; t++)
                mm[t / 4][t % 4] = _mm512_maskz_loadu_ps(mk, src + t * j->cout * tc);
            __m512 s[2][4];
            #pragma GCC unroll 16
            for (int b = 0; b < 4; b++) {
                s[0][b] = _mm512_add_ps(_mm512_add_ps(mm[0][b], mm[1][b]), mm[2][b]);
                s[1][b] = _mm512_sub_ps(_mm512_sub_ps(mm[1][b], mm[2][b]), mm[3][b]);
            }
            #pragma GCC unroll 16
            for (int a = 0; a < 2; a++) {
                int64_t oy = 2 * ty + a;
                if (oy >= j->H)
                    break;
                __m512 y0 = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(s[a][0], s[a][1]), s[a][2]),
                                          bias);
                __m512 y1 = _mm512_add_ps(_mm512_sub_ps(_mm512_sub_ps(s[a][1], s[a][2]), s[a][3]),
                                          bias);
                int64_t ox = 2 * tx0;
                float *orow = oc + oy * j->W + ox;
                _mm512_mask_storeu_ps(orow, lanes(j->W - ox), _mm512_permutex2var_ps(y0, lo, y1));
                _mm512_mask_storeu_ps(orow + 16, lanes(j->W - ox - 16),
                                      _mm512_permutex2var_ps(y0, hi, y1));
            }
        }
    }
}

/* the 16 products M_t = U_t V_t of the current chunk; -1 if
 * the GEMM could not allocate its buffers */
static int products(const wino_job *j)
{
    int64_t tc = j->nr * j->tw;
    for (int t = 0; t < 16 && !lc_interrupted(); t++) {
        lk_gemm_args g = {.m = j->cout, .n = tc, .k = j->C, .alpha = 1.f, .beta = 0.f,
                          .a = j->u + t * j->cout * j->C, .b = j->v + t * j->C * tc,
                          .at = LK_F32, .bt = LK_F32, .lda = j->C, .ldb = tc, .ldc = tc,
                          .c = j->m + t * j->cout * tc};
        if (lk_gemm_blocked(&lk_gemm_ukr_avx512, &g) != 0)
            return -1;
    }
    return 0;
}

int lk_wino3x3_pays_avx512(int64_t N, int64_t C, int64_t H, int64_t W, int64_t cout)
{
    int64_t tiles = N * ((H + 1) / 2) * ((W + 1) / 2);
    return C >= 16 && cout >= 16 && tiles >= 64 && 16 * C * cout <= U_FLOATS;
}

int lk_wino3x3_avx512(const float *x, int64_t N, int64_t C, int64_t H, int64_t W, const void *w,
                      lk_elt wt, int64_t cout, const float *bias, float *out)
{
    wino_job j = {.x = x, .N = N, .C = C, .H = H, .W = W, .th = (H + 1) / 2, .tw = (W + 1) / 2,
                  .w = w, .wt = wt, .cout = cout, .bias = bias, .out = out};
    int64_t rows = N * j.th;
    /* tile rows per chunk: V and M within their budgets, at least one */
    int64_t nr = V_FLOATS / (16 * C * j.tw), nm = M_FLOATS / (16 * cout * j.tw);
    nr = nr < nm ? nr : nm;
    nr = nr < 1 ? 1 : nr > rows ? rows : nr;
    size_t uf = (size_t)(16 * cout * C), vf = (size_t)(16 * C * nr * j.tw);
    size_t mf = (size_t)(16 * cout * nr * j.tw);
    int64_t threads = lc_pool_threads() > 0 ? lc_pool_threads() : 1;
    j.rowf = wt == LK_F32 ? 0 : (C * 9 + 15) / 16 * 16;
    size_t need = uf + vf + mf + (size_t)(threads * j.rowf);
    float *buf = lk_grow_scratch(&scratch, &scratch_cap, need);
    if (!buf)
        return -1;
    j.u = buf, j.v = buf + uf, j.m = buf + uf + vf, j.rows = buf + uf + vf + mf;
    /* interrupted: the error is set, out is partial */
    if (lc_parallel_for(cout, lc_grain_for(cout, 1), weights_task, &j) != 0)
        return 0;
    for (j.r0 = 0; j.r0 < rows; j.r0 += nr) {
        j.nr = rows - j.r0 < nr ? rows - j.r0 : nr;
        if (lc_parallel_for(C * j.nr, lc_grain_for(C * j.nr, 1), input_task, &j) != 0)
            return 0;
        if (products(&j) != 0)
            return -1;
        if (lc_interrupted() ||
            lc_parallel_for(cout * j.nr, lc_grain_for(cout * j.nr, 1), output_task, &j) != 0)
            return 0;
    }
    return 0;
}
