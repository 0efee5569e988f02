/* Shape ops: cat, stack, split, repeat, flip, arange, linspace. Copies go
 * through lc_tensor_copy_ into views of the output, so strided inputs and
 * dtype conversion come for free. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ops.h"

/* the common dtype of a list: the widest float, else the widest integer */
static lc_dtype list_dtype(lc_tensor *const *ts, int n)
{
    lc_dtype r = ts[0]->dtype;
    for (int i = 1; i < n; i++) {
        lc_dtype d = ts[i]->dtype;
        if (d == r)
            continue;
        int fr = lc_dtype_is_float(r), fd = lc_dtype_is_float(d);
        if (fr != fd) {
            if (fd)
                r = d;
        } else if (fr) {
            r = (r == LC_F64 || d == LC_F64) ? LC_F64 : LC_F32;
        } else {
            r = (r == LC_I64 || d == LC_I64) ? LC_I64 : LC_I32;
        }
    }
    return r;
}

lc_tensor *lc_cat(lc_tensor *const *ts, int n, int dim)
{
    if (n < 1) {
        lc_err("cat: needs at least one tensor");
        return NULL;
    }
    const lc_tensor *t0 = ts[0];
    int nd = t0->ndim;
    int d = dim < 0 ? dim + nd : dim;
    if (nd == 0 || d < 0 || d >= nd) {
        lc_err("cat: dimension %d out of range for the %d-d tensor %s", dim, nd, LC_SHAPE_STR(t0));
        return NULL;
    }
    int64_t shape[LC_MAXDIM];
    memcpy(shape, t0->shape, sizeof(int64_t) * (size_t)nd);
    shape[d] = 0;
    for (int i = 0; i < n; i++) {
        const lc_tensor *t = ts[i];
        int ok = t->ndim == nd;
        for (int j = 0; ok && j < nd; j++)
            ok = j == d || t->shape[j] == t0->shape[j];
        if (!ok) {
            lc_err("cat: tensor %d has shape %s, which does not match %s outside the joined "
                   "dimension", i + 1, LC_SHAPE_STR(t), LC_SHAPE_STR(t0));
            return NULL;
        }
        shape[d] += t->shape[d];
    }
    lc_tensor *out = lc_tensor_new(list_dtype(ts, n), nd, shape);
    if (!out)
        return NULL;
    int64_t at = 0;
    for (int i = 0; i < n; i++) {
        lc_tensor *v = lc_tensor_narrow(out, d, at, ts[i]->shape[d]);
        int rc = v ? lc_tensor_copy_(v, ts[i]) : LC_ERR;
        lc_tensor_free(v);
        if (rc != LC_OK) {
            lc_tensor_free(out);
            lc_err_prefix("cat: ");
            return NULL;
        }
        at += ts[i]->shape[d];
    }
    return out;
}

lc_tensor *lc_stack(lc_tensor *const *ts, int n, int dim)
{
    if (n < 1) {
        lc_err("stack: needs at least one tensor");
        return NULL;
    }
    int nd = ts[0]->ndim;
    int d = dim < 0 ? dim + nd + 1 : dim;
    if (d < 0 || d > nd || nd + 1 > LC_MAXDIM) {
        lc_err("stack: dimension %d out of range for stacking %d-d tensors %s", dim, nd,
               LC_SHAPE_STR(ts[0]));
        return NULL;
    }
    for (int i = 1; i < n; i++)
        if (!lc_tensor_same_shape(ts[i], ts[0])) {
            lc_err("stack: tensor %d has shape %s but tensor 1 has %s", i + 1, LC_SHAPE_STR(ts[i]),
                   LC_SHAPE_STR(ts[0]));
            return NULL;
        }
    lc_tensor **us = lc_calloc((size_t)n, sizeof *us, "stack list");
    if (!us)
        return NULL;
    lc_tensor *out = NULL;
    int i;
    for (i = 0; i < n; i++)
        if (!(us[i] = lc_tensor_unsqueeze(ts[i], d)))
            break;
    if (i == n)
        out = lc_cat(us, n, d);
    for (int j = 0; j < n; j++)
        lc_tensor_free(us[j]);
    free(us);
    if (!out)
        lc_err_prefix("stack: ");
    return out;
}

lc_tensor **lc_split(lc_tensor *t, int64_t size, int dim, int *n_out)
{
    int d = dim < 0 ? dim + t->ndim : dim;
    if (d < 0 || d >= t->ndim) {
        lc_err("split: dimension %d out of range for the %d-d tensor %s", dim, t->ndim,
               LC_SHAPE_STR(t));
        return NULL;
    }
    if (size <= 0) {
        lc_err("split: piece size must be positive, got %lld", (long long)size);
        return NULL;
    }
    int64_t len = t->shape[d];
    int64_t n = len == 0 ? 1 : (len + size - 1) / size;
    if (n > INT32_MAX) {
        lc_err("split: %lld pieces is too many", (long long)n);
        return NULL;
    }
    lc_tensor **out = lc_calloc((size_t)n, sizeof *out, "split list");
    if (!out)
        return NULL;
    for (int64_t i = 0; i < n; i++) {
        int64_t start = i * size, l = len - start < size ? len - start : size;
        out[i] = lc_tensor_narrow(t, d, start, l);
        if (!out[i]) {
            for (int64_t j = 0; j < i; j++)
                lc_tensor_free(out[j]);
            free(out);
            return NULL;
        }
    }
    *n_out = (int)n;
    return out;
}

lc_tensor *lc_repeat(const lc_tensor *t, int ndim, const int64_t *reps)
{
    if (ndim < t->ndim || ndim > LC_MAXDIM) {
        lc_err("repeat: %d repeat counts for the %d-d tensor %s (need %d to %d)", ndim, t->ndim,
               LC_SHAPE_STR(t), t->ndim, LC_MAXDIM);
        return NULL;
    }
    int64_t src_shape[LC_MAXDIM], shape[LC_MAXDIM], combos = 1;
    int off = ndim - t->ndim;
    for (int i = 0; i < ndim; i++) {
        if (reps[i] < 0) {
            lc_err("repeat: negative repeat count %lld", (long long)reps[i]);
            return NULL;
        }
        src_shape[i] = i < off ? 1 : t->shape[i - off];
        shape[i] = src_shape[i] * reps[i];
        combos *= reps[i];
    }
    lc_tensor *src = lc_tensor_view((lc_tensor *)t, ndim, src_shape);
    lc_tensor *out = src ? lc_tensor_new(t->dtype, ndim, shape) : NULL;
    if (!out) {
        lc_tensor_free(src);
        return NULL;
    }
    /* one copy of the source per combination of repeat indices */
    int64_t idx[LC_MAXDIM] = {0};
    for (int64_t c = 0; c < combos && lc_tensor_numel(src) > 0; c++) {
        lc_tensor *v = out;
        lc_tensor_retain(v);
        for (int i = 0; i < ndim && v; i++) {
            lc_tensor *w = lc_tensor_narrow(v, i, idx[i] * src_shape[i], src_shape[i]);
            lc_tensor_free(v);
            v = w;
        }
        int rc = v ? lc_tensor_copy_(v, src) : LC_ERR;
        lc_tensor_free(v);
        if (rc != LC_OK) {
            lc_tensor_free(src);
            lc_tensor_free(out);
            return NULL;
        }
        for (int i = ndim - 1; i >= 0; i--) {
            if (++idx[i] < reps[i])
                break;
            idx[i] = 0;
        }
    }
    lc_tensor_free(src);
    return out;
}

lc_tensor *lc_flip(const lc_tensor *t, int dim)
{
    int d = dim < 0 ? dim + t->ndim : dim;
    if (d < 0 || d >= t->ndim) {
        lc_err("flip: dimension %d out of range for the %d-d tensor %s", dim, t->ndim,
               LC_SHAPE_STR(t));
        return NULL;
    }
    /* a reversed view (negative stride) copied into a fresh tensor */
    lc_tensor *v = lc_tensor_narrow((lc_tensor *)t, d, 0, t->shape[d]);
    if (!v)
        return NULL;
    if (t->shape[d] > 0) {
        v->offset += (t->shape[d] - 1) * t->stride[d];
        v->stride[d] = -t->stride[d];
    }
    lc_tensor *out = lc_tensor_clone(v);
    lc_tensor_free(v);
    return out;
}

lc_tensor *lc_arange(double start, double end, double step, lc_dtype dt)
{
    if (step == 0 || !isfinite(step) || !isfinite(start) || !isfinite(end)) {
        lc_err("arange: start %g, end %g and step %g must be finite with a nonzero step", start,
               end, step);
        return NULL;
    }
    double count = ceil((end - start) / step);
    if (count < 0)
        count = 0;
    if (count > 1e12) {
        lc_err("arange: %g elements is too many", count);
        return NULL;
    }
    int64_t n = (int64_t)count;
    lc_tensor *t = lc_tensor_new(dt, 1, &n);
    if (!t)
        return NULL;
    for (int64_t i = 0; i < n; i++)
        lc_tensor_set(t, i, start + (double)i * step);
    return t;
}

/* torch's linspace: the first half counts up from start, the second down
 * from end, so both end points are exact */
lc_tensor *lc_linspace(double start, double end, int64_t n, lc_dtype dt)
{
    if (n < 0) {
        lc_err("linspace: number of points must be non-negative, got %lld", (long long)n);
        return NULL;
    }
    lc_tensor *t = lc_tensor_new(dt, 1, &n);
    if (!t)
        return NULL;
    if (n == 1) {
        lc_tensor_set(t, 0, start);
        return t;
    }
    int64_t half = n / 2;
    if (dt == LC_F32) {
        /* f32 output computes in float, as torch does, for the same bits */
        float fs = (float)start, fe = (float)end, step = (fe - fs) / (float)(n - 1);
        float *p = lc_tensor_data(t);
        for (int64_t i = 0; i < n; i++)
            p[i] = i < half ? fs + step * (float)i : fe - step * (float)(n - 1 - i);
        return t;
    }
    double step = (end - start) / (double)(n - 1);
    for (int64_t i = 0; i < n; i++)
        lc_tensor_set(t, i, i < half ? start + step * (double)i : end - step * (double)(n - 1 - i));
    return t;
}
