/* Matrix products: torch.matmul and F.linear.
 *
 * f32 work goes to lk_sgemm one 2-d slice at a time. A slice whose last two
 * dims are row-major or column-major (a transposed view) is passed as is
 * with the transpose flag, so `q:matmul(k:transpose(3, 4))` copies nothing;
 * anything else is made contiguous first. When the right operand is shared
 * by every batch entry and the left one is contiguous, the batch folds into
 * the rows of one big GEMM. f64 operands take a plain double loop. */
#include <stdint.h>
#include <string.h>

#include "core/pool.h"
#include "kernels.h"
#include "ops.h"
#include "ops/prof.h"

/* how lk_sgemm can read a [rows, cols] slice with strides (s0, s1) */
typedef struct {
    int trans;
    int64_t ld;
} layout;

static int slice_layout(int64_t rows, int64_t cols, int64_t s0, int64_t s1, layout *l)
{
    if ((s1 == 1 || cols == 1) && (s0 >= cols || rows == 1)) {
        l->trans = 0;
        l->ld = rows == 1 ? cols : s0;
        if (l->ld < cols)
            l->ld = cols;
        return 1;
    }
    if ((s0 == 1 || rows == 1) && (s1 >= rows || cols == 1)) {
        l->trans = 1;
        l->ld = cols == 1 ? rows : s1;
        if (l->ld < rows)
            l->ld = rows;
        return 1;
    }
    return 0;
}

/* f32 operand usable in place (aligned, readable layout), else a copy */
static lc_tensor *gemm_operand(const lc_tensor *t, layout *l)
{
    int nd = t->ndim;
    if (t->dtype == LC_F32 && ((uintptr_t)lc_tensor_data(t) % sizeof(float)) == 0 &&
        slice_layout(t->shape[nd - 2], t->shape[nd - 1], t->stride[nd - 2], t->stride[nd - 1], l)) {
        lc_tensor_retain((lc_tensor *)t);
        return (lc_tensor *)t;
    }
    lc_tensor *c = lc_tensor_to(t, LC_F32);
    if (c) {
        l->trans = 0;
        l->ld = t->shape[nd - 1];
    }
    return c;
}

static lc_dtype result_dtype(lc_dtype a, lc_dtype b)
{
    int fa = lc_dtype_is_float(a), fb = lc_dtype_is_float(b);
    if (!fa && !fb)
        return LC_F32;
    if (fa != fb)
        return fa ? a : b;
    if (a == b)
        return a;
    if (a == LC_F64 || b == LC_F64)
        return LC_F64;
    return LC_F32;
}

/* ---- f64: a plain loop, parallel over output rows ---- */

typedef struct {
    const lc_tensor *a, *b; /* expanded to [batch..., m, k] and [batch..., k, n] */
    double *c;
    int nb; /* batch dims */
    int64_t m, n, k;
} f64_job;

/* element (i, j) of the slice at `off` of an f64 tensor */
static double at(const lc_tensor *t, int64_t off, int64_t i, int64_t j)
{
    int nd = t->ndim;
    const char *p = lc_tensor_data(t);
    int64_t e = off + i * t->stride[nd - 2] + j * t->stride[nd - 1];
    return ((const double *)p)[e];
}

static int64_t batch_offset(const lc_tensor *t, int nb, const int64_t *shape, int64_t flat)
{
    int64_t off = 0;
    for (int d = nb - 1; d >= 0; d--) {
        off += (flat % shape[d]) * t->stride[d];
        flat /= shape[d];
    }
    return off;
}

static void f64_rows(void *ctx, int64_t rb, int64_t re)
{
    f64_job *j = ctx;
    for (int64_t r = rb; r < re; r++) {
        int64_t bi = r / j->m, i = r % j->m;
        int64_t oa = batch_offset(j->a, j->nb, j->a->shape, bi);
        int64_t ob = batch_offset(j->b, j->nb, j->b->shape, bi);
        double *c = j->c + r * j->n;
        for (int64_t q = 0; q < j->n; q++) {
            double s = 0;
            for (int64_t p = 0; p < j->k; p++)
                s += at(j->a, oa, i, p) * at(j->b, ob, p, q);
            c[q] = s;
        }
    }
}

/* ---- f32 batches: one lk_sgemm per 2-d slice ---- */

typedef struct {
    const lc_tensor *ga, *gb;
    int nb;
    const int64_t *shape;
    layout la, lb;
    int64_t m, n, k;
    const float *pa, *pb;
    float *pc;
} slice_job;

static void slice_range(void *ctx, int64_t b0, int64_t b1)
{
    const slice_job *j = ctx;
    for (int64_t bi = b0; bi < b1; bi++) {
        int64_t oa = batch_offset(j->ga, j->nb, j->shape, bi);
        int64_t ob = batch_offset(j->gb, j->nb, j->shape, bi);
        lk_sgemm(j->la.trans, j->lb.trans, j->m, j->n, j->k, 1.0f, j->pa + oa, j->la.ld,
                 j->pb + ob, j->lb.ld, 0.0f, j->pc + bi * j->m * j->n, j->n);
    }
}

/* ---- lc_matmul ---- */

static lc_tensor *matmul_impl(const lc_tensor *a0, const lc_tensor *b0)
{
    char sa[96], sb[96];
    lc_shape_str(sa, sizeof sa, a0->ndim, a0->shape);
    lc_shape_str(sb, sizeof sb, b0->ndim, b0->shape);
    if (a0->ndim == 0 || b0->ndim == 0) {
        lc_err("matmul: %s @ %s: both operands need at least 1 dimension", sa, sb);
        return NULL;
    }
    /* 1-d operands become [1,k] / [k,1]; the extra dim is dropped at the end */
    lc_tensor *a = a0->ndim == 1 ? lc_tensor_unsqueeze((lc_tensor *)a0, 0)
                                 : (lc_tensor_retain((lc_tensor *)a0), (lc_tensor *)a0);
    lc_tensor *b = b0->ndim == 1 ? lc_tensor_unsqueeze((lc_tensor *)b0, 1)
                                 : (lc_tensor_retain((lc_tensor *)b0), (lc_tensor *)b0);
    lc_tensor *ea = NULL, *eb = NULL, *ga = NULL, *gb = NULL, *c = NULL, *out = NULL;
    if (!a || !b)
        goto done;
    int64_t m = a->shape[a->ndim - 2], k = a->shape[a->ndim - 1];
    int64_t k2 = b->shape[b->ndim - 2], n = b->shape[b->ndim - 1];
    if (k != k2) {
        lc_err("matmul: %s @ %s: inner sizes %lld and %lld differ", sa, sb, (long long)k,
               (long long)k2);
        goto done;
    }
    /* broadcast the batch dims */
    int nba = a->ndim - 2, nbb = b->ndim - 2, nb = nba > nbb ? nba : nbb;
    if (nb + 2 > LC_MAXDIM) {
        lc_err("matmul: %s @ %s: too many dimensions", sa, sb);
        goto done;
    }
    int64_t shape[LC_MAXDIM], batch = 1;
    for (int i = 0; i < nb; i++) {
        int ia = i - (nb - nba), ib = i - (nb - nbb);
        int64_t x = ia >= 0 ? a->shape[ia] : 1, y = ib >= 0 ? b->shape[ib] : 1;
        if (x != y && x != 1 && y != 1) {
            lc_err("matmul: %s @ %s: batch dimensions %s and %s cannot broadcast", sa, sb,
                   lc_shape_str((char[96]){0}, 96, nba, a->shape),
                   lc_shape_str((char[96]){0}, 96, nbb, b->shape));
            goto done;
        }
        shape[i] = x == 1 ? y : x;
        batch *= shape[i];
    }
    lc_dtype rdt = result_dtype(a->dtype, b->dtype);
    int64_t fshape[LC_MAXDIM];
    int fnd = 0;
    for (int i = 0; i < nb; i++)
        fshape[fnd++] = shape[i];
    if (a0->ndim > 1)
        fshape[fnd++] = m;
    if (b0->ndim > 1)
        fshape[fnd++] = n;

    shape[nb] = m;
    shape[nb + 1] = k;
    ea = lc_tensor_expand(a, nb + 2, shape);
    shape[nb] = k;
    shape[nb + 1] = n;
    eb = lc_tensor_expand(b, nb + 2, shape);
    if (!ea || !eb)
        goto done;

    if (rdt == LC_F64) {
        /* only f64 data reaches the loop */
        lc_tensor *ta = ea->dtype == LC_F64 ? (lc_tensor_retain(ea), ea) : lc_tensor_to(ea, LC_F64);
        lc_tensor *tb = eb->dtype == LC_F64 ? (lc_tensor_retain(eb), eb) : lc_tensor_to(eb, LC_F64);
        shape[nb] = m;
        c = ta && tb ? lc_tensor_new(LC_F64, nb + 2, shape) : NULL;
        if (c) {
            f64_job j = {ta, tb, lc_tensor_data(c), nb, m, n, k};
            if (lc_parallel_for(batch * m, lc_grain_for(batch * m, 1), f64_rows, &j) != LC_OK)
                lc_tensor_free(c), c = NULL;
        }
        lc_tensor_free(ta);
        lc_tensor_free(tb);
        if (c)
            out = lc_tensor_view(c, fnd, fshape);
        goto done;
    }

    layout la, lb;
    ga = gemm_operand(ea, &la);
    gb = gemm_operand(eb, &lb);
    shape[nb] = m;
    shape[nb + 1] = n;
    c = ga && gb ? lc_tensor_new(LC_F32, nb + 2, shape) : NULL;
    if (!c)
        goto done;
    float *pc = lc_tensor_data(c);
    const float *pa = lc_tensor_data(ga), *pb = lc_tensor_data(gb);
    int rc = LC_OK;
    if (k == 0) {
        memset(pc, 0, lc_tensor_nbytes(c));
    } else {
        int b_shared = 1;
        for (int i = 0; i < nb; i++)
            if (gb->stride[i] != 0 && shape[i] != 1)
                b_shared = 0;
        if (b_shared && !la.trans && la.ld == k && lc_tensor_is_contiguous(ga)) {
            lk_sgemm(0, lb.trans, batch * m, n, k, 1.0f, pa, k, pb, lb.ld, 0.0f, pc, n);
        } else {
            slice_job sj = {ga, gb, nb, shape, la, lb, m, n, k, pa, pb, pc};
            /* small slices (attention heads) go one per task, their GEMMs
             * running inline; big ones one after the other, each GEMM using
             * the whole pool. lk_sgemm gives the same bits either way. */
            if (batch > 1 && (double)m * (double)n * (double)k <= (double)(1 << 21))
                rc = lc_parallel_for(batch, 1, slice_range, &sj);
            else
                slice_range(&sj, 0, batch);
        }
    }
    if (rc != LC_OK) {
        lc_err_prefix("matmul: ");
        goto done;
    }
    out = lc_tensor_view(c, fnd, fshape);
    if (out && rdt != LC_F32) {
        lc_tensor *o2 = lc_tensor_to(out, rdt);
        lc_tensor_free(out);
        out = o2;
    }
done:
    lc_tensor_free(a);
    lc_tensor_free(b);
    lc_tensor_free(ea);
    lc_tensor_free(eb);
    lc_tensor_free(ga);
    lc_tensor_free(gb);
    lc_tensor_free(c);
    return out;
}

/* ---- lc_linear ---- */

/* c [rows, out] = x w^T + bias + beta c, in f32 (x any float dtype; w as
 * stored when f32/f16/bf16 in a layout the GEMM reads, else widened) */
static int linear_into(const lc_tensor *x, const lc_tensor *w, const lc_tensor *bias,
                       int64_t rows, float *c, float beta)
{
    int64_t nout = w->shape[0], nin = w->shape[1];
    lc_tensor *xc = lc_tensor_f32((lc_tensor *)x);
    layout lw;
    /* w [out, in] is op(B) transposed: row-major w means transb = 1 */
    lc_tensor *wc = NULL;
    lk_elt wt = LK_F32;
    if (w->dtype == LC_F32 && ((uintptr_t)lc_tensor_data(w) % sizeof(float)) == 0 &&
        slice_layout(nout, nin, w->stride[0], w->stride[1], &lw)) {
        lc_tensor_retain((lc_tensor *)w);
        wc = (lc_tensor *)w;
    } else if ((w->dtype == LC_F16 || w->dtype == LC_BF16) &&
               ((uintptr_t)lc_tensor_data(w) % sizeof(uint16_t)) == 0 &&
               slice_layout(nout, nin, w->stride[0], w->stride[1], &lw)) {
        /* half-size weights are widened while the GEMM packs them */
        lc_tensor_retain((lc_tensor *)w);
        wc = (lc_tensor *)w;
        wt = w->dtype == LC_F16 ? LK_F16 : LK_BF16;
    } else {
        wc = lc_tensor_to(w, LC_F32);
        lw.trans = 0;
        lw.ld = nin;
    }
    /* the bias is added as the GEMM stores each tile (no pass of its own) */
    lc_tensor *bf = bias && xc && wc ? lc_tensor_f32((lc_tensor *)bias) : NULL;
    int rc = xc && wc && (bf || !bias) ? LC_OK : LC_ERR;
    if (rc == LC_OK && rows > 0 && nout > 0)
        /* lw.trans == 0: w row-major [out, in], which is B^T: transb = 1 */
        lk_sgemm_typed(0, !lw.trans, rows, nout, nin, 1.0f, lc_tensor_data(xc), nin,
                       lc_tensor_data(wc), wt, lw.ld, beta, c, nout,
                       bf ? lc_tensor_data(bf) : NULL);
    lc_tensor_free(xc);
    lc_tensor_free(wc);
    lc_tensor_free(bf);
    return rc;
}

static lc_tensor *linear_impl(const lc_tensor *x, const lc_tensor *w, const lc_tensor *bias)
{
    if (w->ndim != 2) {
        lc_err("linear: weight %s must be 2-d [out, in]", LC_SHAPE_STR(w));
        return NULL;
    }
    int64_t nout = w->shape[0], nin = w->shape[1];
    if (x->ndim < 1 || x->shape[x->ndim - 1] != nin) {
        lc_err("linear: input %s has %lld features but weight %s expects %lld", LC_SHAPE_STR(x),
               (long long)(x->ndim ? x->shape[x->ndim - 1] : 0), LC_SHAPE_STR(w), (long long)nin);
        return NULL;
    }
    if (bias && (bias->ndim != 1 || bias->shape[0] != nout)) {
        lc_err("linear: bias %s does not match weight %s (expected [%lld])", LC_SHAPE_STR(bias),
               LC_SHAPE_STR(w), (long long)nout);
        return NULL;
    }
    lc_dtype rdt = result_dtype(x->dtype, w->dtype);
    if (bias)
        rdt = result_dtype(rdt, bias->dtype);
    int64_t oshape[LC_MAXDIM];
    for (int i = 0; i < x->ndim - 1; i++)
        oshape[i] = x->shape[i];
    oshape[x->ndim - 1] = nout;
    int64_t rows = 1;
    for (int i = 0; i < x->ndim - 1; i++)
        rows *= x->shape[i];

    if (rdt == LC_F64) {
        /* x @ w^T through the f64 matmul, then the bias */
        lc_tensor *wt = lc_tensor_transpose((lc_tensor *)w, 0, 1);
        lc_tensor *y = wt ? lc_matmul(x, wt) : NULL;
        lc_tensor_free(wt);
        if (y && bias && lc_binary_(LC_ADD, y, bias) != LC_OK) {
            lc_tensor_free(y);
            return NULL;
        }
        return y;
    }

    lc_tensor *y = lc_tensor_new(LC_F32, x->ndim, oshape);
    if (!y || linear_into(x, w, bias, rows, lc_tensor_data(y), 0.f) != LC_OK) {
        lc_tensor_free(y);
        return NULL;
    }
    if (rdt != LC_F32) {
        lc_tensor *o2 = lc_tensor_to(y, rdt);
        lc_tensor_free(y);
        return o2;
    }
    return y;
}

lc_tensor *lc_matmul(const lc_tensor *a, const lc_tensor *b)
{
    LC_PROF_BEGIN();
    lc_tensor *y = matmul_impl(a, b);
    LC_PROF_END(LC_PROF_LINEAR, y && a->ndim ? 2.0 * (double)lc_tensor_numel(y) *
                                                   (double)a->shape[a->ndim - 1]
                                             : 0);
    return y;
}

lc_tensor *lc_linear(const lc_tensor *x, const lc_tensor *w, const lc_tensor *bias)
{
    LC_PROF_BEGIN();
    lc_tensor *y = linear_impl(x, w, bias);
    LC_PROF_END(LC_PROF_LINEAR, y && w->ndim == 2 ? 2.0 * (double)lc_tensor_numel(y) *
                                                        (double)w->shape[1]
                                                  : 0);
    return y;
}

/* lc_linear_add_ once its operands are checked: the shapes lc_linear
 * checks, y the contiguous f32 [..., out] lc_linear would return, and y
 * apart from x (the GEMM reads x while it stores y) */
static int linear_add_impl(lc_tensor *y, const lc_tensor *x, const lc_tensor *w,
                           const lc_tensor *bias)
{
    if (w->ndim != 2 || x->ndim < 1 || x->shape[x->ndim - 1] != w->shape[1])
        return lc_err("linear_add: input %s and weight %s do not match (weight [out, in])",
                      LC_SHAPE_STR(x), LC_SHAPE_STR(w));
    if (bias && (bias->ndim != 1 || bias->shape[0] != w->shape[0]))
        return lc_err("linear_add: bias %s does not match weight %s", LC_SHAPE_STR(bias),
                      LC_SHAPE_STR(w));
    if (!lc_dtype_is_float(x->dtype) || x->dtype == LC_F64 || w->dtype == LC_F64)
        return lc_err("linear_add: f32, f16 or bf16 operands only (input %s, weight %s)",
                      lc_dtype_name(x->dtype), lc_dtype_name(w->dtype));
    int ok = y->dtype == LC_F32 && lc_tensor_is_contiguous(y) && y->ndim == x->ndim;
    for (int i = 0; ok && i < x->ndim; i++)
        ok = y->shape[i] == (i == x->ndim - 1 ? w->shape[0] : x->shape[i]);
    if (!ok)
        return lc_err("linear_add: output %s must be contiguous f32 shaped as input %s with "
                      "%lld features",
                      LC_SHAPE_STR(y), LC_SHAPE_STR(x), (long long)w->shape[0]);
    if (y->storage == x->storage)
        return lc_err("linear_add: output %s shares its storage with input %s",
                      LC_SHAPE_STR(y), LC_SHAPE_STR(x));
    int64_t rows = 1;
    for (int i = 0; i < x->ndim - 1; i++)
        rows *= x->shape[i];
    return linear_into(x, w, bias, rows, lc_tensor_data(y), 1.f);
}

int lc_linear_add_(lc_tensor *y, const lc_tensor *x, const lc_tensor *w, const lc_tensor *bias)
{
    LC_PROF_BEGIN();
    int rc = linear_add_impl(y, x, w, bias);
    LC_PROF_END(LC_PROF_LINEAR,
                rc == LC_OK ? 2.0 * (double)lc_tensor_numel(y) * (double)w->shape[1] : 0);
    return rc;
}
