/* Padding of the last two dimensions, torch F.pad with pads (left, right,
 * top, bottom): constant (negative pads crop), reflect (mirror without
 * repeating the edge; each pad must be smaller than the size it pads) and
 * replicate (repeat the edge). */
#include <stdlib.h>

#include "core/pool.h"
#include "ops.h"

typedef struct {
    const float *x;
    float *y;
    int64_t H, W, OH, OW, l, t;
    lc_padk kind;
    float value;
} pad_job;

static int64_t src_index(int64_t o, int64_t before, int64_t n, lc_padk kind)
{
    int64_t i = o - before;
    if (kind == LC_PADK_REFLECT) {
        if (i < 0)
            i = -i;
        if (i >= n)
            i = 2 * (n - 1) - i;
    } else if (kind == LC_PADK_REPLICATE) {
        i = i < 0 ? 0 : (i >= n ? n - 1 : i);
    }
    return i; /* constant: may be out of range, meaning `value` */
}

static void pad_rows(void *ctx, int64_t b, int64_t e)
{
    const pad_job *j = ctx;
    for (int64_t r = b; r < e; r++) {
        int64_t plane = r / j->OH, oy = r % j->OH;
        float *y = j->y + r * j->OW;
        int64_t iy = src_index(oy, j->t, j->H, j->kind);
        if (iy < 0 || iy >= j->H) {
            for (int64_t ox = 0; ox < j->OW; ox++)
                y[ox] = j->value;
            continue;
        }
        const float *row = j->x + (plane * j->H + iy) * j->W;
        for (int64_t ox = 0; ox < j->OW; ox++) {
            int64_t ix = src_index(ox, j->l, j->W, j->kind);
            y[ox] = ix >= 0 && ix < j->W ? row[ix] : j->value;
        }
    }
}

lc_tensor *lc_pad2d(const lc_tensor *x, const int64_t pads[4], lc_padk kind, double value)
{
    static const char *names[] = {"constant", "reflect", "replicate"};
    if (kind != LC_PADK_CONSTANT && kind != LC_PADK_REFLECT && kind != LC_PADK_REPLICATE) {
        lc_err("pad: unknown mode %d", (int)kind);
        return NULL;
    }
    if (x->ndim < 2) {
        lc_err("pad: input %s must have at least 2 dimensions (..., H, W)", LC_SHAPE_STR(x));
        return NULL;
    }
    int nd = x->ndim;
    int64_t H = x->shape[nd - 2], W = x->shape[nd - 1];
    int64_t l = pads[0], r = pads[1], t = pads[2], b = pads[3];
    int64_t OH = H + t + b, OW = W + l + r;
    if (kind != LC_PADK_CONSTANT) {
        if (l < 0 || r < 0 || t < 0 || b < 0) {
            lc_err("pad: %s padding {%lld,%lld,%lld,%lld} of %s must not be negative",
                   names[kind], (long long)l, (long long)r, (long long)t, (long long)b,
                   LC_SHAPE_STR(x));
            return NULL;
        }
        if (H < 1 || W < 1) {
            lc_err("pad: %s padding needs a non-empty input, got %s", names[kind],
                   LC_SHAPE_STR(x));
            return NULL;
        }
    }
    if (kind == LC_PADK_REFLECT && (l >= W || r >= W || t >= H || b >= H)) {
        lc_err("pad: reflect padding {%lld,%lld,%lld,%lld} must be smaller than the input "
               "size %lldx%lld of %s",
               (long long)l, (long long)r, (long long)t, (long long)b, (long long)H,
               (long long)W, LC_SHAPE_STR(x));
        return NULL;
    }
    if (OH < 0 || OW < 0) {
        lc_err("pad: padding {%lld,%lld,%lld,%lld} crops %s below zero size", (long long)l,
               (long long)r, (long long)t, (long long)b, LC_SHAPE_STR(x));
        return NULL;
    }
    int64_t shape[LC_MAXDIM];
    for (int i = 0; i < nd; i++)
        shape[i] = x->shape[i];
    shape[nd - 2] = OH;
    shape[nd - 1] = OW;
    lc_tensor *xf = lc_tensor_f32((lc_tensor *)x), *y = NULL;
    if (!xf || !(y = lc_tensor_new(LC_F32, nd, shape)))
        goto done;
    int64_t planes = 1;
    for (int i = 0; i < nd - 2; i++)
        planes *= x->shape[i];
    pad_job j = {lc_tensor_data(xf), lc_tensor_data(y), H, W, OH, OW, l, t, kind, (float)value};
    int64_t rows = planes * OH, grain = OW > 0 ? 16384 / OW : 1;
    if (lc_parallel_for(rows, lc_grain_for(rows, grain < 1 ? 1 : grain), pad_rows, &j) != LC_OK) {
        lc_tensor_free(y);
        y = NULL;
    }
done:
    lc_tensor_free(xf);
    return y;
}
