/* Resizing of the last two dimensions with torch F.interpolate's exact
 * index arithmetic (aten/src/ATen/native/UpSample.h), in float as torch
 * does for f32, so pixel choices agree even where a coordinate lands on a
 * rounding boundary. The scale is always in/out (torch with an explicit
 * size, or scale_factor with recompute_scale_factor=True). */
#include <math.h>
#include <stdlib.h>

#include "core/pool.h"
#include "ops.h"

static int64_t nearest_src(int64_t dst, int64_t in, int64_t out, int exact)
{
    float scale = (float)in / (float)out;
    int64_t s;
    if (exact) {
        /* torch's (dst + 0.5) is a double, so is the product */
        s = (int64_t)floorf((float)(((double)dst + 0.5) * (double)scale));
    } else {
        if (out == in)
            return dst;
        if (out == 2 * in)
            return dst >> 1;
        s = (int64_t)floorf((float)dst * scale);
    }
    return s < in - 1 ? s : in - 1;
}

/* source indices and weights of one output coordinate */
typedef struct {
    int64_t i0, i1;
    float l0, l1;
} taps;

static taps linear_taps(int64_t dst, int64_t in, int64_t out, int align_corners)
{
    taps t;
    if (in == out) {
        t.i0 = t.i1 = dst;
        t.l0 = 1.f;
        t.l1 = 0.f;
        return t;
    }
    float src;
    if (align_corners) {
        float scale = out > 1 ? (float)(in - 1) / (float)(out - 1) : 0.f;
        src = scale * (float)dst;
    } else {
        float scale = (float)in / (float)out;
        src = scale * ((float)dst + 0.5f) - 0.5f;
        if (src < 0.f)
            src = 0.f; /* torch clamps below, never above */
    }
    int64_t i0 = (int64_t)floorf(src);
    if (i0 > in - 1)
        i0 = in - 1;
    float l1 = src - (float)i0;
    l1 = l1 < 0.f ? 0.f : (l1 > 1.f ? 1.f : l1);
    t.i0 = i0;
    t.i1 = i0 + (i0 < in - 1 ? 1 : 0);
    t.l1 = l1;
    t.l0 = 1.f - l1;
    return t;
}

typedef struct {
    const float *x;
    float *y;
    int64_t H, W, OH, OW;
    lc_resize_mode mode;
    const taps *ty, *tx;     /* bilinear */
    const int64_t *ny, *nx; /* nearest */
} rs_job;

static void rs_rows(void *ctx, int64_t b, int64_t e)
{
    const rs_job *j = ctx;
    for (int64_t r = b; r < e; r++) {
        int64_t plane = r / j->OH, oy = r % j->OH;
        const float *xp = j->x + plane * j->H * j->W;
        float *y = j->y + r * j->OW;
        if (j->mode == LC_RESIZE_BILINEAR) {
            taps ty = j->ty[oy];
            const float *r0 = xp + ty.i0 * j->W, *r1 = xp + ty.i1 * j->W;
            for (int64_t ox = 0; ox < j->OW; ox++) {
                taps tx = j->tx[ox];
                float t0 = r0[tx.i0] * tx.l0 + r0[tx.i1] * tx.l1;
                float t1 = r1[tx.i0] * tx.l0 + r1[tx.i1] * tx.l1;
                y[ox] = t0 * ty.l0 + t1 * ty.l1;
            }
        } else {
            const float *row = xp + j->ny[oy] * j->W;
            for (int64_t ox = 0; ox < j->OW; ox++)
                y[ox] = row[j->nx[ox]];
        }
    }
}

lc_tensor *lc_resize(const lc_tensor *x, int64_t oh, int64_t ow, lc_resize_mode mode,
                     int align_corners)
{
    if (x->ndim < 2) {
        lc_err("resize: input %s must have at least 2 dimensions (..., H, W)", LC_SHAPE_STR(x));
        return NULL;
    }
    int nd = x->ndim;
    int64_t H = x->shape[nd - 2], W = x->shape[nd - 1];
    if (oh < 1 || ow < 1) {
        lc_err("resize: output size %lldx%lld must be at least 1x1 (input %s)", (long long)oh,
               (long long)ow, LC_SHAPE_STR(x));
        return NULL;
    }
    if (H < 1 || W < 1) {
        lc_err("resize: input %s is empty", LC_SHAPE_STR(x));
        return NULL;
    }
    if (mode != LC_RESIZE_NEAREST && mode != LC_RESIZE_BILINEAR &&
        mode != LC_RESIZE_NEAREST_EXACT) {
        lc_err("resize: unknown mode %d", (int)mode);
        return NULL;
    }
    int64_t shape[LC_MAXDIM];
    for (int i = 0; i < nd; i++)
        shape[i] = x->shape[i];
    shape[nd - 2] = oh;
    shape[nd - 1] = ow;
    int64_t planes = lc_tensor_numel(x) / (H * W);
    lc_tensor *xf = lc_tensor_f32((lc_tensor *)x), *y = NULL;
    taps *ty = NULL, *tx = NULL;
    int64_t *ny = NULL, *nx = NULL;
    if (!xf || !(y = lc_tensor_new(LC_F32, nd, shape)))
        goto fail;
    rs_job j = {lc_tensor_data(xf), lc_tensor_data(y), H, W, oh, ow, mode, NULL, NULL, NULL,
                NULL};
    if (mode == LC_RESIZE_BILINEAR) {
        if (!(ty = lc_malloc((size_t)oh * sizeof *ty, "resize taps")) ||
            !(tx = lc_malloc((size_t)ow * sizeof *tx, "resize taps")))
            goto fail;
        for (int64_t i = 0; i < oh; i++)
            ty[i] = linear_taps(i, H, oh, align_corners);
        for (int64_t i = 0; i < ow; i++)
            tx[i] = linear_taps(i, W, ow, align_corners);
    } else {
        int exact = mode == LC_RESIZE_NEAREST_EXACT;
        if (!(ny = lc_malloc((size_t)oh * sizeof *ny, "resize indices")) ||
            !(nx = lc_malloc((size_t)ow * sizeof *nx, "resize indices")))
            goto fail;
        for (int64_t i = 0; i < oh; i++)
            ny[i] = nearest_src(i, H, oh, exact);
        for (int64_t i = 0; i < ow; i++)
            nx[i] = nearest_src(i, W, ow, exact);
    }
    j.ty = ty;
    j.tx = tx;
    j.ny = ny;
    j.nx = nx;
    int64_t rows = planes * oh, grain = 16384 / ow;
    if (lc_parallel_for(rows, lc_grain_for(rows, grain < 1 ? 1 : grain), rs_rows, &j) != LC_OK)
        goto fail;
    goto done;
fail:
    lc_tensor_free(y);
    y = NULL;
done:
    free(ty);
    free(tx);
    free(ny);
    free(nx);
    lc_tensor_free(xf);
    return y;
}
