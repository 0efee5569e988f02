/* 2-d convolution as torch's F.conv2d: one lk_sconv per image and group (a
 * batch of small images in one).
 *
 * out[n, g*Og + o, p] = sum_k W_g[o, k] * col[k, p] + bias, where k runs over
 * (input channel of the group, kernel row, kernel column) and p over output
 * pixels. The column matrix is never stored: the GEMM gathers its pieces
 * from the input as it packs them, and f16/bf16 weights are widened as they
 * are packed, so a checkpoint's weights stay half-size in memory. 3x3
 * convolutions with stride and padding 1 (most of a UNet's and a VAE's
 * work) go through Winograd's F(2x2, 3x3) where the kernel level has it
 * and the shape pays (lk_conv3x3): 16 products per 2x2 output pixels
 * instead of 36, within ~1e-6 relative of the direct sum (LUCID_WINOGRAD=0
 * turns it off). The same bits for any thread count. */
#include <stdlib.h>
#include <string.h>

#include "core/pool.h"
#include "kernels.h"
#include "ops.h"
#include "ops/prof.h"

static int check_params(const lc_tensor *x, const lc_tensor *w, const lc_tensor *bias,
                        const lc_conv2d_params *p)
{
    if (x->ndim != 4)
        return lc_err("conv2d: input %s must be 4-d [N,C,H,W] (or 3-d [C,H,W])",
                      LC_SHAPE_STR(x));
    if (w->ndim != 4)
        return lc_err("conv2d: weight %s must be 4-d [Cout,Cin/groups,kh,kw]", LC_SHAPE_STR(w));
    for (int i = 0; i < 2; i++) {
        if (p->stride[i] < 1 || p->dilation[i] < 1 || p->padding[i] < 0)
            return lc_err("conv2d: stride {%d,%d} and dilation {%d,%d} must be >= 1 and "
                          "padding {%d,%d} >= 0",
                          p->stride[0], p->stride[1], p->dilation[0], p->dilation[1],
                          p->padding[0], p->padding[1]);
    }
    int g = p->groups;
    if (g < 1)
        return lc_err("conv2d: groups must be >= 1 (got %d)", g);
    if (w->shape[1] * g != x->shape[1])
        return lc_err("conv2d: input %s has %lld channels but weight %s expects %lld (groups %d)",
                      LC_SHAPE_STR(x), (long long)x->shape[1], LC_SHAPE_STR(w),
                      (long long)(w->shape[1] * g), g);
    if (w->shape[0] % g != 0)
        return lc_err("conv2d: weight %s has %lld output channels, not divisible by groups %d",
                      LC_SHAPE_STR(w), (long long)w->shape[0], g);
    if (w->shape[0] == 0 || w->shape[1] == 0 || w->shape[2] == 0 || w->shape[3] == 0)
        return lc_err("conv2d: weight %s is empty", LC_SHAPE_STR(w));
    if (bias && (bias->ndim != 1 || bias->shape[0] != w->shape[0]))
        return lc_err("conv2d: bias %s must be [%lld] to match weight %s", LC_SHAPE_STR(bias),
                      (long long)w->shape[0], LC_SHAPE_STR(w));
    for (int i = 0; i < 2; i++) {
        int64_t in = x->shape[2 + i] + 2 * (int64_t)p->padding[i];
        int64_t span = (int64_t)p->dilation[i] * (w->shape[2 + i] - 1) + 1;
        if (span > in)
            return lc_err("conv2d: kernel %s (dilation {%d,%d}) is larger than input %s "
                          "padded by {%d,%d}",
                          LC_SHAPE_STR(w), p->dilation[0], p->dilation[1], LC_SHAPE_STR(x),
                          p->padding[0], p->padding[1]);
    }
    return LC_OK;
}

/* Small images (a UNet's deep levels: 4x4 to 32x32 at 256x256) give the
 * GEMM few columns per image, a fraction of its 32-wide tile or too few
 * for column tasks: the batch then goes through as one product, its
 * columns image after image, into a scratch [Cout, N*P] that is then
 * spread to [N, Cout, P]. Each column's sums are the same as image by
 * image, so are the bits. */
#define FOLD_MAX_PIXELS 1024

typedef struct {
    const float *tmp;
    float *out;
    int64_t N, Cout, P;
} unfold_job;

static void unfold_rows(void *ctx, int64_t r0, int64_t r1)
{
    const unfold_job *j = ctx;
    for (int64_t r = r0; r < r1; r++) {
        int64_t n = r / j->Cout, o = r % j->Cout;
        memcpy(j->out + r * j->P, j->tmp + (o * j->N + n) * j->P, (size_t)j->P * sizeof(float));
    }
}

static int conv_folded(const float *x, const void *w, lk_elt wt, const float *bias, float *out,
                       int64_t N, int64_t Cin, int64_t H, int64_t W, int64_t Cout, int64_t kh,
                       int64_t kw, int64_t OH, int64_t OW, const lc_conv2d_params *p)
{
    int64_t P = OH * OW;
    float *tmp = malloc((size_t)(Cout * N * P) * sizeof(float));
    if (!tmp)
        return lc_err("conv2d: out of memory for a %lldx%lld product", (long long)Cout,
                      (long long)(N * P));
    lk_im2col geom = {x, Cin, H, W, OH, OW, kh, kw,
                      p->stride[0], p->stride[1], p->padding[0], p->padding[1],
                      p->dilation[0], p->dilation[1], N, Cin * H * W};
    lk_sconv(&geom, Cout, w, wt, Cin * kh * kw, 1.f, 0.f, tmp, N * P, bias);
    int rc = lc_interrupted() ? lc_err("interrupted") : LC_OK;
    unfold_job j = {tmp, out, N, Cout, P};
    if (rc == LC_OK)
        rc = lc_parallel_for(N * Cout, lc_grain_for(N * Cout, 16), unfold_rows, &j);
    free(tmp);
    return rc;
}

static int conv_run(const float *x, const void *w, lk_elt wt, const float *bias, float *out,
                    int64_t N, int64_t Cin, int64_t H, int64_t W, int64_t Cout, int64_t kh,
                    int64_t kw, int64_t OH, int64_t OW, const lc_conv2d_params *p)
{
    int64_t G = p->groups, Cg = Cin / G, Og = Cout / G;
    int64_t K = Cg * kh * kw, P = OH * OW;
    size_t wsize = wt == LK_F32 ? sizeof(float) : sizeof(uint16_t);
    if (G == 1 && kh == 3 && kw == 3 && p->stride[0] == 1 && p->stride[1] == 1 &&
        p->padding[0] == 1 && p->padding[1] == 1 && p->dilation[0] == 1 &&
        p->dilation[1] == 1 && lk_conv3x3(x, N, Cin, H, W, w, wt, Cout, bias, out) == 0)
        return lc_interrupted() ? lc_err("interrupted") : LC_OK;
    if (N > 1 && G == 1 && P <= FOLD_MAX_PIXELS)
        return conv_folded(x, w, wt, bias, out, N, Cin, H, W, Cout, kh, kw, OH, OW, p);
    for (int64_t n = 0; n < N; n++) {
        float *on = out + n * Cout * P;
        for (int64_t g = 0; g < G; g++) {
            lk_im2col geom = {x + (n * Cin + g * Cg) * H * W, Cg, H, W, OH, OW, kh, kw,
                              p->stride[0], p->stride[1], p->padding[0], p->padding[1],
                              p->dilation[0], p->dilation[1], 1, 0};
            lk_sconv(&geom, Og, (const char *)w + (size_t)(g * Og * K) * wsize, wt, K, 1.f, 0.f,
                     on + g * Og * P, P, bias ? bias + g * Og : NULL);
            if (lc_interrupted())
                return lc_err("interrupted");
        }
    }
    return LC_OK;
}

/* The weights as the GEMM reads them: f16 and bf16 stay as they are
 * (contiguous), anything else becomes f32 */
static lc_tensor *conv_weights(const lc_tensor *w, lk_elt *wt)
{
    if ((w->dtype == LC_F16 || w->dtype == LC_BF16) && lc_tensor_is_contiguous(w)) {
        *wt = w->dtype == LC_F16 ? LK_F16 : LK_BF16;
        lc_tensor_retain((lc_tensor *)w);
        return (lc_tensor *)w;
    }
    *wt = LK_F32;
    return lc_tensor_f32((lc_tensor *)w);
}

static lc_tensor *conv2d_impl(const lc_tensor *x, const lc_tensor *w, const lc_tensor *bias,
                              const lc_conv2d_params *params)
{
    lc_conv2d_params p = {{1, 1}, {0, 0}, {1, 1}, 1};
    if (params)
        p = *params;
    /* torch accepts an unbatched [C,H,W] input */
    lc_tensor *x4 = NULL;
    int unbatched = x->ndim == 3;
    if (unbatched) {
        int64_t s[4] = {1, x->shape[0], x->shape[1], x->shape[2]};
        x4 = lc_tensor_view((lc_tensor *)x, 4, s);
        if (!x4)
            return NULL;
    } else {
        lc_tensor_retain((lc_tensor *)x);
        x4 = (lc_tensor *)x;
    }
    lc_tensor *xf = NULL, *wf = NULL, *bf = NULL, *out = NULL;
    if (check_params(x4, w, bias, &p) != LC_OK)
        goto done;
    int64_t N = x4->shape[0], Cin = x4->shape[1], H = x4->shape[2], W = x4->shape[3];
    int64_t Cout = w->shape[0], kh = w->shape[2], kw = w->shape[3];
    int64_t OH = (H + 2 * p.padding[0] - p.dilation[0] * (kh - 1) - 1) / p.stride[0] + 1;
    int64_t OW = (W + 2 * p.padding[1] - p.dilation[1] * (kw - 1) - 1) / p.stride[1] + 1;
    lk_elt wt;
    if (!(xf = lc_tensor_f32(x4)) || !(wf = conv_weights(w, &wt)))
        goto done;
    if (bias && !(bf = lc_tensor_f32((lc_tensor *)bias)))
        goto done;
    int64_t shape[4] = {N, Cout, OH, OW};
    if (!(out = lc_tensor_new(LC_F32, 4, shape)))
        goto done;
    if (N > 0 && OH * OW > 0 &&
        conv_run(lc_tensor_data(xf), lc_tensor_data(wf), wt, bf ? lc_tensor_data(bf) : NULL,
                 lc_tensor_data(out), N, Cin, H, W, Cout, kh, kw, OH, OW, &p) != LC_OK) {
        lc_tensor_free(out);
        out = NULL;
        goto done;
    }
    if (unbatched) {
        lc_tensor *o3 = lc_tensor_view(out, 3, shape + 1);
        lc_tensor_free(out);
        out = o3;
    }
done:
    lc_tensor_free(x4);
    lc_tensor_free(xf);
    lc_tensor_free(wf);
    lc_tensor_free(bf);
    return out;
}

lc_tensor *lc_conv2d(const lc_tensor *x, const lc_tensor *w, const lc_tensor *bias,
                     const lc_conv2d_params *params)
{
    LC_PROF_BEGIN();
    lc_tensor *y = conv2d_impl(x, w, bias, params);
    /* 2 * outputs * (Cin/groups * kh * kw) multiply-adds */
    LC_PROF_END(LC_PROF_CONV, y && w->ndim == 4
                                  ? 2.0 * (double)lc_tensor_numel(y) * (double)w->shape[1] *
                                        (double)w->shape[2] * (double)w->shape[3]
                                  : 0);
    return y;
}

/* ---- 3x3 conv of a nearest-2x upsampled input ----
 *
 * Output row 2y+dy reads upsampled rows 2y+dy-1 .. 2y+dy+1, which are input
 * rows y-1, y, y (dy 0) or y, y, y+1 (dy 1): kernel rows {0}, {1,2} or
 * {0,1}, {2} land on the same input row and their weights add. Likewise for
 * columns. Each phase is thus a 2x2 conv of x; with padding 1 its output
 * row r reads input rows r-1 and r, so phase dy takes rows dy .. dy+H-1. */

/* the four phases' outputs, stacked as channel blocks of one conv:
 * y [N, 4*Cout, H+1, W+1] -> out [N, Cout, 2H, 2W] */
typedef struct {
    const float *y;
    float *out;
    int64_t Cout, H, W;
} up2_job;

static void up2_scatter(void *ctx, int64_t r0, int64_t r1)
{
    const up2_job *j = ctx;
    int64_t H = j->H, W = j->W, Cout = j->Cout, plane = (H + 1) * (W + 1);
    for (int64_t r = r0; r < r1; r++) { /* r = n * Cout + oc */
        int64_t n = r / Cout, oc = r % Cout;
        float *o = j->out + r * 4 * H * W;
        for (int ph = 0; ph < 4; ph++) {
            int dy = ph >> 1, dx = ph & 1;
            const float *y = j->y + ((n * 4 + ph) * Cout + oc) * plane;
            for (int64_t yy = 0; yy < H; yy++) {
                const float *src = y + (yy + dy) * (W + 1) + dx;
                float *dst = o + (2 * yy + dy) * 2 * W + dx;
                for (int64_t xx = 0; xx < W; xx++)
                    dst[2 * xx] = src[xx];
            }
        }
    }
}

/* the phases' 2x2 weights w4 [4*Cout, C, 2, 2] from the 3x3 ones, an
 * output channel at a time (its 3x3 row widened to f32 in scratch: the
 * whole weight never is) */
typedef struct {
    const void *w9;
    lc_dtype wt;
    float *w4;
    int64_t Cout, C;
    int failed; /* set (atomically) if a scratch row could not be allocated */
} up2_wjob;

static void up2_weights(void *ctx, int64_t oc0, int64_t oc1)
{
    up2_wjob *j = ctx;
    int64_t C = j->C;
    float *row = malloc((size_t)C * 9 * sizeof(float));
    if (!row) {
        __atomic_store_n(&j->failed, 1, __ATOMIC_RELAXED);
        return;
    }
    for (int64_t oc = oc0; oc < oc1; oc++) {
        lc_convert_to_f32(row, (const char *)j->w9 + oc * C * 9 * lc_dtype_size(j->wt), j->wt,
                          C * 9);
        float *w4[4];
        for (int ph = 0; ph < 4; ph++)
            w4[ph] = j->w4 + (ph * j->Cout + oc) * C * 4;
        for (int64_t c = 0; c < C; c++) {
            const float *k = row + c * 9;
            /* phase d's 2x2 tap 0 gathers kernel rows {0} (d = 0) or
             * {0, 1} (d = 1), its tap 1 rows {1, 2} or {2}: rows first,
             * r[dy][a][kj], then columns the same way */
            float r[2][2][3];
            for (int kj = 0; kj < 3; kj++) {
                r[0][0][kj] = k[kj];
                r[0][1][kj] = k[3 + kj] + k[6 + kj];
                r[1][0][kj] = k[kj] + k[3 + kj];
                r[1][1][kj] = k[6 + kj];
            }
            for (int dy = 0; dy < 2; dy++)
                for (int a = 0; a < 2; a++) {
                    const float *q = r[dy][a];
                    float *o0 = w4[dy * 2] + c * 4 + a * 2, *o1 = w4[dy * 2 + 1] + c * 4 + a * 2;
                    o0[0] = q[0];
                    o0[1] = q[1] + q[2];
                    o1[0] = q[0] + q[1];
                    o1[1] = q[2];
                }
        }
    }
    free(row);
}

/* Whether the phase form pays. Per input/output channel pair it does 16
 * multiply-adds per (H+1)(W+1) input pixel instead of 36 per input pixel
 * (9 for each of the 4 upsampled ones), but first builds 16 phase weights,
 * which costs about as much as 1000 multiply-adds. Measured, 2 threads,
 * batch 2 (phases / upsample + conv): 1280 channels at 4x4 20 / 12 ms,
 * 8x8 37 / 49, 640 at 16x16 26 / 46. */
static int up2_pays(int64_t N, int64_t H, int64_t W)
{
    double plain = 36.0 * (double)(N * H * W);
    double phases = 16.0 * (double)(N * (H + 1) * (W + 1)) + 1000.0;
    return phases < plain;
}

static lc_tensor *conv2d_up2_impl(const lc_tensor *x, const lc_tensor *w, const lc_tensor *bias)
{
    if (x->ndim != 4 || w->ndim != 4 || w->shape[2] != 3 || w->shape[3] != 3 ||
        w->shape[1] != x->shape[1]) {
        lc_err("conv2d_up2: input %s and weight %s must be [N,C,H,W] and [Cout,C,3,3]",
               LC_SHAPE_STR(x), LC_SHAPE_STR(w));
        return NULL;
    }
    int64_t N = x->shape[0], C = x->shape[1], H = x->shape[2], W = x->shape[3];
    int64_t Cout = w->shape[0];
    if (bias && (bias->ndim != 1 || bias->shape[0] != Cout)) {
        lc_err("conv2d_up2: bias %s must be [%lld] to match weight %s", LC_SHAPE_STR(bias),
               (long long)Cout, LC_SHAPE_STR(w));
        return NULL;
    }
    lc_conv2d_params p = {{1, 1}, {1, 1}, {1, 1}, 1};
    if (!up2_pays(N, H, W)) {
        lc_tensor *u = lc_resize(x, 2 * H, 2 * W, LC_RESIZE_NEAREST, 0);
        lc_tensor *y = u ? lc_conv2d(u, w, bias, &p) : NULL;
        lc_tensor_free(u);
        return y;
    }
    lc_tensor *wc = lc_tensor_contiguous((lc_tensor *)w), *bf = NULL, *b4 = NULL, *w4 = NULL;
    lc_tensor *y = NULL, *out = NULL;
    int64_t w4s[4] = {4 * Cout, C, 2, 2}, os[4] = {N, Cout, 2 * H, 2 * W};
    if (!wc || !(w4 = lc_tensor_new(LC_F32, 4, w4s)))
        goto done;
    up2_wjob wj = {lc_tensor_data(wc), wc->dtype, lc_tensor_data(w4), Cout, C, 0};
    if (lc_parallel_for(Cout, lc_grain_for(Cout, 1), up2_weights, &wj) != LC_OK)
        goto done;
    if (wj.failed) {
        lc_err("conv2d_up2: out of memory widening a weight row");
        goto done;
    }
    lc_tensor_free(wc);
    wc = NULL;
    if (bias) {
        /* every phase block gets the bias */
        int64_t b4s[1] = {4 * Cout};
        if (!(bf = lc_tensor_f32((lc_tensor *)bias)) || !(b4 = lc_tensor_new(LC_F32, 1, b4s)))
            goto done;
        for (int ph = 0; ph < 4; ph++)
            memcpy((float *)lc_tensor_data(b4) + ph * Cout, lc_tensor_data(bf),
                   (size_t)Cout * sizeof(float));
    }
    /* one product for the four phases: the input's columns are packed once */
    if (!(y = lc_conv2d(x, w4, b4, &p)) || !(out = lc_tensor_new(LC_F32, 4, os)))
        goto done;
    up2_job j = {lc_tensor_data(y), lc_tensor_data(out), Cout, H, W};
    if (lc_parallel_for(N * Cout, lc_grain_for(N * Cout, 1), up2_scatter, &j) != LC_OK) {
        lc_tensor_free(out);
        out = NULL;
    }
done:
    lc_tensor_free(wc);
    lc_tensor_free(w4);
    lc_tensor_free(bf);
    lc_tensor_free(b4);
    lc_tensor_free(y);
    return out;
}

lc_tensor *lc_conv2d_up2(const lc_tensor *x, const lc_tensor *w, const lc_tensor *bias)
{
    LC_PROF_BEGIN();
    lc_tensor *y = conv2d_up2_impl(x, w, bias);
    /* the work done: four 2x2 convs on (H+1) x (W+1), or the 3x3 conv of
     * the upsampled input */
    double flops = 0;
    if (y) {
        double pairs = (double)w->shape[0] * (double)w->shape[1];
        int64_t N = x->shape[0], H = x->shape[2], W = x->shape[3];
        flops = up2_pays(N, H, W) ? 2.0 * 16 * pairs * (double)(N * (H + 1) * (W + 1))
                                  : 2.0 * 36 * pairs * (double)(N * H * W);
    }
    LC_PROF_END(LC_PROF_CONV, flops);
    return y;
}
