/* 2-d convolution as torch's F.conv2d: one lk_sconv per image and group (a
 * batch of small images in one).
 *
 * out[n, g*Og + o, p] = sum_k W_g[o, k] * col[k, p] + bias, where k runs over
 * (input channel of the group, kernel row, kernel column) and p over output
 * pixels. The column matrix is never stored: the GEMM gathers its pieces
 * from the input as it packs them, and f16/bf16 weights are widened as they
 * are packed, so a checkpoint's weights stay half-size in memory. The same
 * bits for any thread count. */
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

/* Small images (a UNet's deepest levels: 4x4 to 16x16 at 256x256) give
 * the GEMM few columns per image, a fraction of its 32-wide tile: the batch
 * then goes through as one product, its columns image after image, into a
 * scratch [Cout, N*P] that is then spread to [N, Cout, P]. Each column's
 * sums are the same as image by image, so are the bits. */
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
    if (N > 1 && G == 1 && P < FOLD_MAX_PIXELS)
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

/* kernel taps of the 3x3 that phase d's 2x2 tap t gathers: [first, last] */
static const int up2_taps[2][2][2] = {{{0, 0}, {1, 2}}, {{0, 1}, {2, 2}}};

typedef struct {
    const float *y; /* one phase: [N*Cout, H+1, W+1] */
    float *out;     /* [N*Cout, 2H, 2W] */
    int64_t H, W;
    int dy, dx;
} up2_job;

static void up2_scatter(void *ctx, int64_t r0, int64_t r1)
{
    const up2_job *j = ctx;
    int64_t H = j->H, W = j->W;
    for (int64_t r = r0; r < r1; r++) {
        const float *y = j->y + r * (H + 1) * (W + 1);
        float *o = j->out + r * 4 * H * W;
        for (int64_t yy = 0; yy < H; yy++) {
            const float *src = y + (yy + j->dy) * (W + 1) + j->dx;
            float *dst = o + (2 * yy + j->dy) * 2 * W + j->dx;
            for (int64_t xx = 0; xx < W; xx++)
                dst[2 * xx] = src[xx];
        }
    }
}

/* the four phases' 2x2 weights [4][Cout*C][2][2], in one pass over the
 * 3x3 ones (widened to f32 for it; both are freed after the call) */
typedef struct {
    const float *w9;
    float *w4;
    int64_t n; /* Cout * C */
} up2_wjob;

static void up2_weights(void *ctx, int64_t oc0, int64_t oc1)
{
    const up2_wjob *j = ctx;
    for (int64_t oc = oc0; oc < oc1; oc++) {
        const float *w9 = j->w9 + oc * 9;
        for (int ph = 0; ph < 4; ph++) {
            int dy = ph >> 1, dx = ph & 1;
            float *w4 = j->w4 + (ph * j->n + oc) * 4;
            for (int a = 0; a < 2; a++)
                for (int b = 0; b < 2; b++) {
                    float sum = 0.f;
                    for (int ki = up2_taps[dy][a][0]; ki <= up2_taps[dy][a][1]; ki++)
                        for (int kj = up2_taps[dx][b][0]; kj <= up2_taps[dx][b][1]; kj++)
                            sum += w9[ki * 3 + kj];
                    w4[a * 2 + b] = sum;
                }
        }
    }
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
    lc_tensor *wf = lc_tensor_f32((lc_tensor *)w), *w4 = NULL, *out = NULL;
    int64_t w4s[5] = {4, Cout, C, 2, 2}, os[4] = {N, Cout, 2 * H, 2 * W};
    if (!wf || !(w4 = lc_tensor_new(LC_F32, 5, w4s)) || !(out = lc_tensor_new(LC_F32, 4, os)))
        goto fail;
    up2_wjob wj = {lc_tensor_data(wf), lc_tensor_data(w4), Cout * C};
    if (lc_parallel_for(Cout * C, lc_grain_for(Cout * C, 64), up2_weights, &wj) != LC_OK)
        goto fail;
    lc_tensor_free(wf);
    wf = NULL;
    lc_conv2d_params p = {{1, 1}, {1, 1}, {1, 1}, 1};
    for (int ph = 0; ph < 4; ph++) {
        lc_tensor *wp = lc_tensor_narrow(w4, 0, ph, 1), *wv = NULL, *y = NULL;
        if (wp)
            wv = lc_tensor_view(wp, 4, (const int64_t[]){Cout, C, 2, 2});
        if (wv)
            y = lc_conv2d(x, wv, bias, &p);
        lc_tensor_free(wp);
        lc_tensor_free(wv);
        if (!y)
            goto fail;
        up2_job j = {lc_tensor_data(y), lc_tensor_data(out), H, W, ph >> 1, ph & 1};
        int rc = lc_parallel_for(N * Cout, lc_grain_for(N * Cout, 1), up2_scatter, &j);
        lc_tensor_free(y);
        if (rc != LC_OK)
            goto fail;
    }
    lc_tensor_free(w4);
    return out;
fail:
    lc_tensor_free(wf);
    lc_tensor_free(w4);
    lc_tensor_free(out);
    return NULL;
}

lc_tensor *lc_conv2d_up2(const lc_tensor *x, const lc_tensor *w, const lc_tensor *bias)
{
    LC_PROF_BEGIN();
    lc_tensor *y = conv2d_up2_impl(x, w, bias);
    /* the work done: four 2x2 convs on (H+1) x (W+1) */
    LC_PROF_END(LC_PROF_CONV, y ? 2.0 * 4 * (double)x->shape[0] * (double)w->shape[0] *
                                      (double)w->shape[1] * 4 * (double)(x->shape[2] + 1) *
                                      (double)(x->shape[3] + 1)
                                : 0);
    return y;
}
