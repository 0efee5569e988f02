/* torch F.grid_sample for 4-d inputs: grid [N,Ho,Wo,2] holds (x, y) in
 * [-1, 1] (x across the width); bilinear or nearest; zeros, border or
 * reflection padding; both align_corners conventions. Coordinates follow
 * aten/src/ATen/native/GridSampler.h step by step, in float as torch does
 * for f32. */
#include <limits.h>
#include <math.h>

#include "core/pool.h"
#include "ops.h"

static float unnormalize(float c, int64_t size, int align_corners)
{
    if (align_corners)
        return (c + 1.f) / 2.f * (float)(size - 1);
    return ((c + 1.f) * (float)size - 1.f) / 2.f;
}

static float clip(float c, int64_t size)
{
    float hi = (float)(size - 1);
    return fminf(hi, fmaxf(c, 0.f));
}

/* reflect c into [twice_low/2, twice_high/2] */
static float reflect(float c, int64_t twice_low, int64_t twice_high)
{
    if (twice_low == twice_high)
        return 0.f;
    float lo = (float)twice_low / 2.f, span = (float)(twice_high - twice_low) / 2.f;
    c = fabsf(c - lo);
    float extra = fmodf(c, span);
    int64_t flips = (int64_t)floorf(c / span);
    return flips % 2 == 0 ? extra + lo : span - extra + lo;
}

static float source_coord(float c, int64_t size, lc_pad_mode pad, int align_corners)
{
    c = unnormalize(c, size, align_corners);
    if (pad == LC_PAD_BORDER) {
        c = clip(c, size);
    } else if (pad == LC_PAD_REFLECTION) {
        c = align_corners ? reflect(c, 0, 2 * (size - 1)) : reflect(c, -1, 2 * size - 1);
        c = clip(c, size);
    }
    /* NaN, inf or huge: out of range, as torch's safe_downgrade_to_int_range */
    if (!isfinite(c) || c > (float)(INT_MAX - 1) || c < (float)INT_MIN)
        return -100.f;
    return c;
}

typedef struct {
    const float *x, *grid;
    float *y;
    int64_t C, H, W, Ho, Wo;
    lc_sample_mode mode;
    lc_pad_mode pad;
    int align;
} gs_job;

static inline int inside(int64_t ix, int64_t iy, int64_t W, int64_t H)
{
    return ix >= 0 && ix < W && iy >= 0 && iy < H;
}

static void gs_rows(void *ctx, int64_t b, int64_t e)
{
    const gs_job *j = ctx;
    int64_t HW = j->H * j->W, oHW = j->Ho * j->Wo;
    for (int64_t r = b; r < e; r++) {
        int64_t n = r / j->Ho, oy = r % j->Ho;
        const float *g = j->grid + r * j->Wo * 2;
        const float *xn = j->x + n * j->C * HW;
        float *yn = j->y + n * j->C * oHW + oy * j->Wo;
        for (int64_t ox = 0; ox < j->Wo; ox++) {
            float ix = source_coord(g[2 * ox], j->W, j->pad, j->align);
            float iy = source_coord(g[2 * ox + 1], j->H, j->pad, j->align);
            if (j->mode == LC_SAMPLE_NEAREST) {
                int64_t sx = (int64_t)nearbyintf(ix), sy = (int64_t)nearbyintf(iy);
                int ok = inside(sx, sy, j->W, j->H);
                for (int64_t c = 0; c < j->C; c++)
                    yn[c * oHW + ox] = ok ? xn[c * HW + sy * j->W + sx] : 0.f;
                continue;
            }
            float fx = floorf(ix), fy = floorf(iy);
            int64_t x0 = (int64_t)fx, y0 = (int64_t)fy, x1 = x0 + 1, y1 = y0 + 1;
            float wnw = (fx + 1.f - ix) * (fy + 1.f - iy);
            float wne = (ix - fx) * (fy + 1.f - iy);
            float wsw = (fx + 1.f - ix) * (iy - fy);
            float wse = (ix - fx) * (iy - fy);
            int nw = inside(x0, y0, j->W, j->H), ne = inside(x1, y0, j->W, j->H);
            int sw = inside(x0, y1, j->W, j->H), se = inside(x1, y1, j->W, j->H);
            for (int64_t c = 0; c < j->C; c++) {
                const float *xc = j->x + (n * j->C + c) * HW;
                float v = 0.f;
                if (nw)
                    v += xc[y0 * j->W + x0] * wnw;
                if (ne)
                    v += xc[y0 * j->W + x1] * wne;
                if (sw)
                    v += xc[y1 * j->W + x0] * wsw;
                if (se)
                    v += xc[y1 * j->W + x1] * wse;
                yn[c * oHW + ox] = v;
            }
        }
    }
}

lc_tensor *lc_grid_sample(const lc_tensor *x, const lc_tensor *grid, lc_sample_mode mode,
                          lc_pad_mode pad, int align_corners)
{
    if (x->ndim != 4 || grid->ndim != 4 || grid->shape[3] != 2) {
        lc_err("grid_sample: input %s must be [N,C,H,W] and grid %s [N,Ho,Wo,2]",
               LC_SHAPE_STR(x), LC_SHAPE_STR(grid));
        return NULL;
    }
    if (grid->shape[0] != x->shape[0]) {
        lc_err("grid_sample: input %s and grid %s: batch sizes %lld and %lld differ",
               LC_SHAPE_STR(x), LC_SHAPE_STR(grid), (long long)x->shape[0],
               (long long)grid->shape[0]);
        return NULL;
    }
    if (x->shape[2] < 1 || x->shape[3] < 1) {
        lc_err("grid_sample: input %s is empty", LC_SHAPE_STR(x));
        return NULL;
    }
    if ((mode != LC_SAMPLE_BILINEAR && mode != LC_SAMPLE_NEAREST) ||
        (pad != LC_PAD_ZEROS && pad != LC_PAD_BORDER && pad != LC_PAD_REFLECTION)) {
        lc_err("grid_sample: unknown mode %d or padding mode %d", (int)mode, (int)pad);
        return NULL;
    }
    int64_t N = x->shape[0], C = x->shape[1], Ho = grid->shape[1], Wo = grid->shape[2];
    lc_tensor *xf = lc_tensor_f32((lc_tensor *)x), *gf = NULL, *y = NULL;
    if (!xf || !(gf = lc_tensor_f32((lc_tensor *)grid)))
        goto done;
    int64_t shape[4] = {N, C, Ho, Wo};
    if (!(y = lc_tensor_new(LC_F32, 4, shape)))
        goto done;
    gs_job j = {lc_tensor_data(xf), lc_tensor_data(gf), lc_tensor_data(y), C, x->shape[2],
                x->shape[3], Ho, Wo, mode, pad, align_corners};
    int64_t rows = N * Ho, per = Wo * (C > 0 ? C : 1), grain = 16384 / (per > 0 ? per : 1);
    if (lc_parallel_for(rows, lc_grain_for(rows, grain < 1 ? 1 : grain), gs_rows, &j) != LC_OK) {
        lc_tensor_free(y);
        y = NULL;
    }
done:
    lc_tensor_free(xf);
    lc_tensor_free(gf);
    return y;
}
