/* 2-d convolution as torch's F.conv2d: one lk_sconv per image and group.
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

static int conv_run(const float *x, const void *w, lk_elt wt, const float *bias, float *out,
                    int64_t N, int64_t Cin, int64_t H, int64_t W, int64_t Cout, int64_t kh,
                    int64_t kw, int64_t OH, int64_t OW, const lc_conv2d_params *p)
{
    int64_t G = p->groups, Cg = Cin / G, Og = Cout / G;
    int64_t K = Cg * kh * kw, P = OH * OW;
    size_t wsize = wt == LK_F32 ? sizeof(float) : sizeof(uint16_t);
    for (int64_t n = 0; n < N; n++) {
        float *on = out + n * Cout * P;
        for (int64_t g = 0; g < G; g++) {
            lk_im2col geom = {x + (n * Cin + g * Cg) * H * W, Cg, H, W, OH, OW, kh, kw,
                              p->stride[0], p->stride[1], p->padding[0], p->padding[1],
                              p->dilation[0], p->dilation[1]};
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
