/* AVX-512 GEMM micro-kernel and packing for the blocked driver
 * (kernels/gemm_blocked.c).
 *
 * 14x32 tile: 28 zmm accumulators, two B vectors and a broadcast; per k step
 * 28 FMAs against 2 loads + 14 broadcasts, which keeps both of Zen 5's 512-bit
 * FMA pipes busy. Measured on this machine (Zen 5, packed operands in cache,
 * kc = 256): 14x32 217, 6x64 217, 12x32 215, 8x48 214, 7x64 203 GFLOP/s per
 * core; the FMA peak probe gives ~225. 14x32 wins on the L1 footprint: its B
 * micro-panel (kc x 32) is 32 KB of the 48 KB L1 at kc = 256, where 6x64
 * would need 64 KB. */
#include <immintrin.h>
#include <stdint.h>

#include "../gemm_blocked.h"
#include "../ref/ref.h"
#include "avx512.h"
#include "x86.h"

#define MR 14
#define NR 32
#define KC 256
#define MC 168 /* 12 tiles: a 168 x 256 A block is 168 KB, half the 1 MB L2 */
#define NC 1024

/* In-register transpose of a 16x16 block: r[i] row i in, column i out.
 * Every loop is unrolled so the arrays stay in registers (rolled, GCC keeps
 * them on the stack and the packing runs at a third of the speed). */
static inline __attribute__((always_inline)) void transpose16(__m512 r[16])
{
    __m512 t[16];
#pragma GCC unroll 8
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    /* r[4g + c], 128-bit lane L: rows 4g..4g+3 of column 4L + c */
#pragma GCC unroll 4
    for (int g = 0; g < 4; g++) {
        r[4 * g] = _mm512_shuffle_ps(t[4 * g], t[4 * g + 2], _MM_SHUFFLE(1, 0, 1, 0));
        r[4 * g + 1] = _mm512_shuffle_ps(t[4 * g], t[4 * g + 2], _MM_SHUFFLE(3, 2, 3, 2));
        r[4 * g + 2] = _mm512_shuffle_ps(t[4 * g + 1], t[4 * g + 3], _MM_SHUFFLE(1, 0, 1, 0));
        r[4 * g + 3] = _mm512_shuffle_ps(t[4 * g + 1], t[4 * g + 3], _MM_SHUFFLE(3, 2, 3, 2));
    }
#pragma GCC unroll 4
    for (int cc = 0; cc < 4; cc++) {
        __m512 u0 = _mm512_shuffle_f32x4(r[cc], r[4 + cc], 0x88);
        __m512 u1 = _mm512_shuffle_f32x4(r[cc], r[4 + cc], 0xDD);
        __m512 u2 = _mm512_shuffle_f32x4(r[8 + cc], r[12 + cc], 0x88);
        __m512 u3 = _mm512_shuffle_f32x4(r[8 + cc], r[12 + cc], 0xDD);
        t[cc] = _mm512_shuffle_f32x4(u0, u2, 0x88);
        t[8 + cc] = _mm512_shuffle_f32x4(u0, u2, 0xDD);
        t[4 + cc] = _mm512_shuffle_f32x4(u1, u3, 0x88);
        t[12 + cc] = _mm512_shuffle_f32x4(u1, u3, 0xDD);
    }
#pragma GCC unroll 16
    for (int i = 0; i < 16; i++)
        r[i] = t[i];
}

/* nv = 1 or 2 vectors of 16 columns; inlined into two fixed-width kernels so
 * the accumulators stay in registers */
static inline __attribute__((always_inline)) void
tile(int nv, int ct, int64_t kc, const float *restrict a, const float *restrict b,
     float *restrict c, int64_t ldc, float alpha, float beta, int mr_eff, int nr_eff,
     const float *bias, int brows)
{
    __m512 acc[MR][2];
#pragma GCC unroll 14
    for (int i = 0; i < MR; i++) {
        acc[i][0] = _mm512_setzero_ps();
        acc[i][1] = _mm512_setzero_ps();
    }
    if (!ct) {
        /* C's rows are far apart: ask for them now, they are needed only
         * after the kc steps below */
        for (int i = 0; i < mr_eff; i++) {
            _mm_prefetch((const char *)(c + i * ldc), _MM_HINT_T0);
            if (nv > 1)
                _mm_prefetch((const char *)(c + i * ldc + 16), _MM_HINT_T0);
        }
    }
    for (int64_t p = 0; p < kc; p++) {
        __m512 b0 = _mm512_load_ps(b), b1 = nv > 1 ? _mm512_load_ps(b + 16) : b0;
#pragma GCC unroll 14
        for (int i = 0; i < MR; i++) {
            __m512 av = _mm512_set1_ps(a[i]);
            acc[i][0] = _mm512_fmadd_ps(av, b0, acc[i][0]);
            if (nv > 1)
                acc[i][1] = _mm512_fmadd_ps(av, b1, acc[i][1]);
        }
        a += MR;
        b += NR;
    }
    __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
    if (ct) {
        /* C^T: transpose the tile 16 columns at a time; row j of C^T gets
         * the tile's column j, mr_eff long */
        _Alignas(64) float t[16 * NR];
#pragma GCC unroll 14
        for (int i = 0; i < MR; i++) {
            _mm512_store_ps(t + i * NR, acc[i][0]);
            _mm512_store_ps(t + i * NR + 16, acc[i][1]);
        }
        for (int i = MR; i < 16; i++) {
            _mm512_store_ps(t + i * NR, _mm512_setzero_ps());
            _mm512_store_ps(t + i * NR + 16, _mm512_setzero_ps());
        }
        __mmask16 mm = lanes(mr_eff);
        /* a stored row l holds the tile's column l: a row bias runs along it */
        __m512 brow = bias && brows ? _mm512_maskz_loadu_ps(mm, bias) : _mm512_setzero_ps();
        for (int h = 0; h < nv; h++) {
            __m512 v[16];
#pragma GCC unroll 16
            for (int q = 0; q < 16; q++)
                v[q] = _mm512_load_ps(t + q * NR + 16 * h);
            transpose16(v);
#pragma GCC unroll 16
            for (int l = 0; l < 16; l++) {
                if (16 * h + l >= nr_eff)
                    break;
                float *cp = c + (16 * h + l) * ldc;
                __m512 add = bias ? (brows ? brow : _mm512_set1_ps(bias[16 * h + l]))
                                  : _mm512_setzero_ps();
                __m512 r;
                if (beta == 0.f)
                    r = bias ? _mm512_fmadd_ps(va, v[l], add) : _mm512_mul_ps(va, v[l]);
                else
                    r = _mm512_fmadd_ps(va, v[l],
                                        _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(mm, cp), add));
                _mm512_mask_storeu_ps(cp, mm, r);
            }
        }
        return;
    }
    __mmask16 m0 = lanes(nr_eff), m1 = lanes(nr_eff - 16);
    if (bias) {
        /* C = alpha acc + (beta C + bias): with beta 0, the bits of a C
         * filled with the bias beforehand and beta 1 */
        __m512 bc0 = brows ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(m0, bias);
        __m512 bc1 = brows || nv < 2 ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(m1, bias + 16);
#pragma GCC unroll 14
        for (int i = 0; i < MR; i++) {
            if (i >= mr_eff)
                break;
            float *cp = c + i * ldc;
            __m512 a0 = brows ? _mm512_set1_ps(bias[i]) : bc0;
            __m512 a1 = brows ? a0 : bc1;
            if (beta != 0.f) {
                a0 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m0, cp), a0);
                if (nv > 1)
                    a1 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m1, cp + 16), a1);
            }
            _mm512_mask_storeu_ps(cp, m0, _mm512_fmadd_ps(va, acc[i][0], a0));
            if (nv > 1)
                _mm512_mask_storeu_ps(cp + 16, m1, _mm512_fmadd_ps(va, acc[i][1], a1));
        }
        return;
    }
#pragma GCC unroll 14
    for (int i = 0; i < MR; i++) {
        if (i >= mr_eff)
            break;
        float *cp = c + i * ldc;
        if (beta == 0.f) {
            _mm512_mask_storeu_ps(cp, m0, _mm512_mul_ps(va, acc[i][0]));
            if (nv > 1)
                _mm512_mask_storeu_ps(cp + 16, m1, _mm512_mul_ps(va, acc[i][1]));
        } else {
            __m512 c0 = _mm512_mul_ps(vb, _mm512_maskz_loadu_ps(m0, cp));
            _mm512_mask_storeu_ps(cp, m0, _mm512_fmadd_ps(va, acc[i][0], c0));
            if (nv > 1) {
                __m512 c1 = _mm512_mul_ps(vb, _mm512_maskz_loadu_ps(m1, cp + 16));
                _mm512_mask_storeu_ps(cp + 16, m1, _mm512_fmadd_ps(va, acc[i][1], c1));
            }
        }
    }
}

static void kernel_14x32(int64_t kc, const float *ap, const float *bp, float *c, int64_t ldc,
                         float alpha, float beta, int mr_eff, int nr_eff, const float *bias,
                         int brows)
{
    if (nr_eff > 16)
        tile(2, 0, kc, ap, bp, c, ldc, alpha, beta, mr_eff, nr_eff, bias, brows);
    else
        tile(1, 0, kc, ap, bp, c, ldc, alpha, beta, mr_eff, nr_eff, bias, brows);
}

static void kernel_14x32_ct(int64_t kc, const float *ap, const float *bp, float *c, int64_t ldc,
                            float alpha, float beta, int mr_eff, int nr_eff, const float *bias,
                            int brows)
{
    if (nr_eff > 16)
        tile(2, 1, kc, ap, bp, c, ldc, alpha, beta, mr_eff, nr_eff, bias, brows);
    else
        tile(1, 1, kc, ap, bp, c, ldc, alpha, beta, mr_eff, nr_eff, bias, brows);
}

static inline __attribute__((always_inline)) void prefetch(const void *src, int64_t off, lk_elt t)
{
    size_t sz = t == LK_F32 ? 4 : 2;
    _mm_prefetch((const char *)src + (off + 64) * (int64_t)sz, _MM_HINT_T0);
}

/* dst[p*w + r] = src[r*ld + p] for r < rows, zero for rows <= r < w
 * (w <= 32, a multiple of 16 or below it): the transposing case of both
 * packers. */
static inline __attribute__((always_inline)) void
pack_strided_t(const void *src, lk_elt t, int64_t ld, int rows, int64_t kc, int w, float *dst)
{
    for (int r0 = 0; r0 < w; r0 += 16) {
        __mmask16 smask = lanes(w - r0);
        for (int64_t p0 = 0; p0 < kc; p0 += 16) {
            int pn = (int)(kc - p0 < 16 ? kc - p0 : 16);
            __mmask16 lmask = lanes(pn);
            __m512 v[16];
#pragma GCC unroll 16
            for (int q = 0; q < 16; q++) {
                if (r0 + q < rows) {
                    int64_t off = (r0 + q) * ld + p0;
                    /* the rows are far apart (often 4 KB multiples): fetch
                     * ahead rather than wait on each row's stream */
                    prefetch(src, off, t);
                    v[q] = load16(src, off, t, lmask);
                } else {
                    v[q] = _mm512_setzero_ps();
                }
            }
            transpose16(v);
#pragma GCC unroll 16
            for (int q = 0; q < 16; q++) /* fixed trip count: v stays in registers */
                if (q < pn)
                    _mm512_mask_storeu_ps(dst + (p0 + q) * w + r0, smask, v[q]);
        }
    }
}

static void pack_strided(const void *src, lk_elt t, int64_t ld, int rows, int64_t kc, int w,
                         float *dst)
{
    if (t == LK_F16)
        pack_strided_t(src, LK_F16, ld, rows, kc, w, dst);
    else if (t == LK_BF16)
        pack_strided_t(src, LK_BF16, ld, rows, kc, w, dst);
    else
        pack_strided_t(src, LK_F32, ld, rows, kc, w, dst);
}

/* dst[p*w + j] = src[p*ld + j] for j < cols, zero for cols <= j < w */
static void pack_contig(const void *src, lk_elt t, int64_t ld, int cols, int64_t kc, int w,
                        float *dst)
{
    for (int64_t p = 0; p < kc; p++)
        for (int j0 = 0; j0 < w; j0 += 16)
            _mm512_mask_storeu_ps(dst + p * w + j0, lanes(w - j0),
                                  load16(src, p * ld + j0, t, lanes(cols - j0)));
}

static inline const void *elt_at(const void *p, lk_elt t, int64_t off)
{
    return (const char *)p + off * (t == LK_F32 ? 4 : 2);
}

static void pack_a(int trans, const void *a, lk_elt t, int64_t lda, int64_t i0, int mr_eff,
                   int64_t p0, int64_t kc, float *dst)
{
    if (trans)
        pack_contig(elt_at(a, t, p0 * lda + i0), t, lda, mr_eff, kc, MR, dst);
    else
        pack_strided(elt_at(a, t, i0 * lda + p0), t, lda, mr_eff, kc, MR, dst);
}

/* B's rows in order across all the panels: read in long runs, not 128-byte
 * pieces a whole row apart (a new page each) */
static inline __attribute__((always_inline)) void
pack_b_rows(const void *b, lk_elt t, int64_t ldb, int64_t k, int64_t npan, int64_t ncols,
            float *dst)
{
    for (int64_t p = 0; p < k; p++) {
        prefetch(b, p * ldb + 8 * ldb - 64, t);
        for (int64_t q = 0; q < npan; q++) {
            int64_t c = ncols - q * NR;
            float *d = dst + q * k * NR + p * NR;
            _mm512_store_ps(d, load16(b, p * ldb + q * NR, t, lanes((int)(c < 16 ? c : 16))));
            _mm512_store_ps(d + 16, load16(b, p * ldb + q * NR + 16, t,
                                           lanes((int)(c - 16 < 16 ? c - 16 : 16))));
        }
    }
}

static void pack_b(int trans, const void *b, lk_elt t, int64_t ldb, int64_t k, int64_t j0,
                   int64_t ncols, float *dst)
{
    int64_t npan = (ncols + NR - 1) / NR;
    if (trans) {
        for (int64_t q = 0; q < npan; q++) {
            int nre = (int)(ncols - q * NR < NR ? ncols - q * NR : NR);
            pack_strided(elt_at(b, t, (j0 + q * NR) * ldb), t, ldb, nre, k, NR, dst + q * k * NR);
        }
        return;
    }
    b = elt_at(b, t, j0);
    if (t == LK_F16)
        pack_b_rows(b, LK_F16, ldb, k, npan, ncols, dst);
    else if (t == LK_BF16)
        pack_b_rows(b, LK_BF16, ldb, k, npan, ncols, dst);
    else
        pack_b_rows(b, LK_F32, ldb, k, npan, ncols, dst);
}

/* Pixels [p0, p0+rows) (rows <= 16) of a convolution's column matrix, k
 * rows from k0, as dst[q*ld + r], lanes past rows zero: half an nr-wide
 * panel. The pixels fall in a few runs along output rows ("segments"); for
 * one kernel tap (ki, kj) every segment reads a fixed offset of each input
 * channel, so offsets and lane masks are worked out once per tap and each
 * k row then costs a masked load per segment (a gather when the stride is
 * not 1). */
#define TAP_MAX 64 /* taps planned per strip; larger kernels use the reference */
#define PREFETCH_CH 16 /* input channels read ahead */
typedef struct {
    int nseg;
    __mmask16 mask[16];
    int64_t off[16]; /* element offset inside a channel of lane 0 (unit stride) */
} tap_plan;

static void im2col_strip(const lk_im2col *g, int64_t p0, int rows, int64_t k0, int64_t kc,
                         int64_t ld, float *dst)
{
    int64_t khw = g->kh * g->kw, P1 = g->OH * g->OW;
    int unit = g->sw == 1;
    int nseg = 0, seg_r0[16], seg_r1[16];
    int64_t seg_oy[16], seg_ox[16], seg_img[16];
    for (int r = 0; r < rows;) {
        /* a run ends with its output row, so within one image */
        int64_t p = p0 + r, oy = p % P1 / g->OW, ox = p % g->OW;
        int n = (int)(g->OW - ox < rows - r ? g->OW - ox : rows - r);
        seg_r0[nseg] = r, seg_r1[nseg] = r + n, seg_oy[nseg] = oy, seg_ox[nseg] = ox;
        seg_img[nseg] = p / P1 * g->xstride;
        nseg++;
        r += n;
    }
    tap_plan plan[TAP_MAX];
    __m512i gidx[TAP_MAX];
    __mmask16 gmask[TAP_MAX];
    int64_t first = k0 % khw, ntaps = kc < khw ? kc : khw;
    for (int64_t tq = 0; tq < ntaps; tq++) {
        int64_t tap = (first + tq) % khw, ki = tap / g->kw, kj = tap % g->kw;
        tap_plan *pl = &plan[tap];
        pl->nseg = 0;
        _Alignas(64) int32_t idx[16] = {0};
        __mmask16 gm = 0;
        for (int s = 0; s < nseg; s++) {
            int64_t iy = seg_oy[s] * g->sh - g->ph + ki * g->dh;
            if (iy < 0 || iy >= g->H)
                continue;
            if (unit) {
                /* lane r reads column ix0 + r */
                int64_t ix0 = seg_ox[s] - g->pw + kj * g->dw - seg_r0[s];
                int64_t lo = -ix0 > seg_r0[s] ? -ix0 : seg_r0[s];
                int64_t hi = g->W - ix0 < seg_r1[s] ? g->W - ix0 : seg_r1[s];
                if (lo >= hi)
                    continue;
                pl->mask[pl->nseg] = (__mmask16)(lanes((int)hi) & ~lanes((int)lo));
                pl->off[pl->nseg] = seg_img[s] + iy * g->W + ix0;
                pl->nseg++;
            } else {
                for (int r = seg_r0[s]; r < seg_r1[s]; r++) {
                    int64_t ix = (seg_ox[s] + r - seg_r0[s]) * g->sw - g->pw + kj * g->dw;
                    if (ix >= 0 && ix < g->W) {
                        idx[r] = (int32_t)(seg_img[s] + iy * g->W + ix);
                        gm |= (__mmask16)(1u << r);
                    }
                }
            }
        }
        gidx[tap] = _mm512_load_si512(idx);
        gmask[tap] = gm;
    }
    int64_t c = k0 / khw, tap = first, HW = g->H * g->W;
    for (int64_t q = 0; q < kc; q++) {
        const float *xc = g->x + c * HW;
        __m512 v = _mm512_setzero_ps();
        if (unit) {
            const tap_plan *pl = &plan[tap];
            for (int s = 0; s < pl->nseg; s++) {
                /* channels are a whole plane apart: too many streams for
                 * the hardware prefetcher once x outgrows the caches */
                _mm_prefetch((const char *)(xc + PREFETCH_CH * HW + pl->off[s]), _MM_HINT_T0);
                v = _mm512_mask_loadu_ps(v, pl->mask[s], xc + pl->off[s]);
            }
        } else if (gmask[tap]) {
            v = _mm512_mask_i32gather_ps(v, gmask[tap], gidx[tap], xc, 4);
        }
        _mm512_storeu_ps(dst + q * ld, v);
        if (++tap == khw)
            tap = 0, c++;
    }
}

static void pack_b_im2col(const lk_im2col *g, int64_t k0, int64_t k, int64_t j0, int64_t ncols,
                          float *dst)
{
    /* gather offsets are 32-bit: past that (or with huge kernels) the
     * reference */
    int64_t images = g->N > 1 ? g->N : 1;
    int small = (images - 1) * g->xstride + g->C * g->H * g->W < ((int64_t)1 << 31);
    for (int64_t q = 0; q * NR < ncols; q++) {
        float *d = dst + q * k * NR;
        int64_t p0 = j0 + q * NR, left = ncols - q * NR;
        int cols = (int)(left < NR ? left : NR);
        if (g->kh * g->kw > TAP_MAX || (!small && g->sw != 1)) {
            lk_im2col_pack_ref(g, p0, cols, k0, k, NR, d);
            continue;
        }
        for (int h = 0; h < NR; h += 16)
            im2col_strip(g, p0 + h, cols - h < 0 ? 0 : cols - h > 16 ? 16 : cols - h, k0, k, NR,
                         d + h);
    }
}

const lk_gemm_ukr lk_gemm_ukr_avx512 = {
    .name = "avx512 14x32",
    .mr = MR, .nr = NR, .kc = KC, .mc = MC, .nc = NC,
    .kernel = kernel_14x32,
    .kernel_ct = kernel_14x32_ct,
    .pack_a = pack_a,
    .pack_b = pack_b,
    .pack_b_im2col = pack_b_im2col,
};
