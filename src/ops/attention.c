/* Scaled dot-product attention, torch's F.scaled_dot_product_attention.
 *
 * Memory-lean: work is cut into blocks of QB query rows per (batch, head).
 * A block computes its scores into a per-thread [QB, Lk] scratch, applies
 * the mask, a max-subtracted softmax per query, then Out_b = P V. So a
 * 4096x4096 score matrix never exists, only nthreads * QB * Lk floats. Each
 * block is owned by one task (its products run serially inside it), so
 * results are the same bits for any thread count.
 *
 * Without a causal mask the scores are kept keys x queries: S^T = s K Qb^T
 * and Out_b^T = V^T P^T are products with QB = 64 columns, four full
 * AVX-512 vectors, that read K and V in place (lk_sgemm_thin: no packing;
 * ~208 and ~200 GFLOP/s per core at head size 40, against ~178 for both
 * the other way round), the first handing over each query's maximum, and
 * the softmax runs down columns with its sums in lanes. The causal path
 * keeps queries x keys, its blocks needing a growing number of keys.
 *
 * Differences from torch, on purpose: a row whose keys are all masked out
 * gives zeros, not NaN. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "core/pool.h"
#include "kernels.h"
#include "ops.h"
#include "ops/prof.h"

#define QB 64

/* a [B,H,L,D]-like operand: strides of batch, head and row; unit last dim */
typedef struct {
    const float *p;
    int64_t sb, sh, sl;
} amat;

typedef struct {
    amat q, k, v;
    float *out;
    int64_t ob, oh, ol;
    int64_t B, H, Lq, Lk, D, Dv, nblk;
    float scale;
    int causal;
    const float *mask; /* f32, read with broadcast strides, or NULL */
    int mask_bool;     /* nonzero = keep, else additive */
    int64_t mb, mh, mq, mk;
    float *scratch; /* nthreads * per */
    int64_t per;    /* scratch floats per thread */
    const float *kscale; /* Lk copies of scale (keys x queries path) */
} sdpa_job;

/* The softmax is the hot loop besides the products (Lq * Lk exponentials
 * per head): lk_softmax_exp (rows) and lk_softmax_exp_cols, SIMD per level,
 * leave P unnormalised and return each query's sum; the output rows are
 * divided instead (Dv values a query rather than Lk). */

/* row sums -> their reciprocals; an all-masked row (sum 0) is zeros */
static void invert_sums(float *sum, int64_t m)
{
    for (int64_t r = 0; r < m; r++)
        sum[r] = sum[r] > 0.f ? 1.f / sum[r] : 0.f;
}

static void block_rows(const sdpa_job *j, float *S, int64_t b, int64_t h, int64_t i0, int64_t m,
                       int64_t nk, float *sum);

/* one block keys x queries (no causal cut): S^T [Lk, m], the softmax down
 * its columns, Out^T [Dv, m] = V^T P^T, transposed into the output with
 * each query's 1 / sum */
static void sdpa_tblocks(void *ctx, int64_t t0, int64_t t1)
{
    const sdpa_job *j = ctx;
    float *S = j->scratch + (int64_t)lc_pool_thread_index() * j->per;
    float *qt = S + QB * j->Lk, *ot = qt + QB * j->D, sum[QB], mx[QB];
    for (int64_t t = t0; t < t1; t++) {
        int64_t bh = t / j->nblk, blk = t % j->nblk;
        int64_t b = bh / j->H, h = bh % j->H;
        int64_t i0 = blk * QB, m = i0 + QB < j->Lq ? QB : j->Lq - i0;
        const float *q = j->q.p + b * j->q.sb + h * j->q.sh + i0 * j->q.sl;
        const float *k = j->k.p + b * j->k.sb + h * j->k.sh;
        const float *v = j->v.p + b * j->v.sb + h * j->v.sh;
        float *o = j->out + b * j->ob + h * j->oh + i0 * j->ol;
        /* the block's q rows are far apart (heads interleaved) and often
         * not in cache: ask for all of them before the first is used */
        for (int64_t r = 0; r < m; r++)
            for (int64_t d = 0; d < j->D; d += 16)
                __builtin_prefetch(q + r * j->q.sl + d);
        for (int64_t r = 0; r < m; r++)
            for (int64_t d = 0; d < j->D; d++)
                qt[d * m + r] = q[r * j->q.sl + d];
        /* the scale multiplies the products, not q (torch's rounding); the
         * queries' maxima come with the product unless a mask follows */
        float *cmax = j->mask ? NULL : mx;
        lk_sgemm_thin(0, j->Lk, m, j->D, k, j->k.sl, qt, m, j->kscale, S, m, cmax);
        if (j->mask) {
            for (int64_t r = 0; r < m; r++) {
                const float *mr = j->mask + b * j->mb + h * j->mh + (i0 + r) * j->mq;
                for (int64_t c = 0; c < j->Lk; c++) {
                    if (!j->mask_bool)
                        S[c * m + r] += mr[c * j->mk];
                    else if (mr[c * j->mk] == 0.f)
                        S[c * m + r] = -INFINITY;
                }
            }
        }
        lk_softmax_exp_cols(S, j->Lk, m, m, cmax, sum);
        invert_sums(sum, m);
        lk_sgemm_thin(1, j->Dv, m, j->Lk, v, j->v.sl, S, m, NULL, ot, m, NULL);
        for (int64_t r = 0; r < m; r++)
            for (int64_t d = 0; d < j->Dv; d++)
                o[r * j->ol + d] = ot[d * m + r] * sum[r];
    }
}

/* mask, causal cut and unnormalised softmax of a block's score rows; the
 * row sums go to sum[0:m] */
static void block_rows(const sdpa_job *j, float *S, int64_t b, int64_t h, int64_t i0, int64_t m,
                       int64_t nk, float *sum)
{
    for (int64_t r = 0; r < m; r++) {
        float *s = S + r * nk;
        int64_t i = i0 + r;
        if (j->mask) {
            const float *mr = j->mask + b * j->mb + h * j->mh + i * j->mq;
            if (j->mask_bool) {
                for (int64_t c = 0; c < nk; c++)
                    if (mr[c * j->mk] == 0.f)
                        s[c] = -INFINITY;
            } else {
                for (int64_t c = 0; c < nk; c++)
                    s[c] += mr[c * j->mk];
            }
        }
        if (j->causal)
            for (int64_t c = i + 1; c < nk; c++)
                s[c] = -INFINITY;
        sum[r] = lk_softmax_exp(s, nk);
    }
}

static void sdpa_blocks(void *ctx, int64_t t0, int64_t t1)
{
    const sdpa_job *j = ctx;
    float *S = j->scratch + (int64_t)lc_pool_thread_index() * j->per, sum[QB];
    for (int64_t t = t0; t < t1; t++) {
        int64_t bh = t / j->nblk, blk = t % j->nblk;
        int64_t b = bh / j->H, h = bh % j->H;
        int64_t i0 = blk * QB, i1 = i0 + QB < j->Lq ? i0 + QB : j->Lq, m = i1 - i0;
        /* causal (top-left aligned, as torch): row i sees keys 0..i, so the
         * block needs no key past its last row */
        int64_t nk = j->causal ? (i1 < j->Lk ? i1 : j->Lk) : j->Lk;
        const float *q = j->q.p + b * j->q.sb + h * j->q.sh + i0 * j->q.sl;
        const float *k = j->k.p + b * j->k.sb + h * j->k.sh;
        const float *v = j->v.p + b * j->v.sb + h * j->v.sh;
        float *o = j->out + b * j->ob + h * j->oh + i0 * j->ol;
        if (nk > 0)
            lk_sgemm(0, 1, m, nk, j->D, j->scale, q, j->q.sl, k, j->k.sl, 0.f, S, nk);
        block_rows(j, S, b, h, i0, m, nk, sum);
        if (nk > 0) {
            invert_sums(sum, m);
            lk_sgemm_thin(0, m, j->Dv, nk, S, nk, v, j->v.sl, sum, o, j->ol, NULL);
        } else {
            for (int64_t r = 0; r < m; r++)
                for (int64_t d = 0; d < j->Dv; d++)
                    o[r * j->ol + d] = 0.f;
        }
    }
}

/* Converts the mask to f32 and works out its broadcast strides against
 * [B,H,Lq,Lk]. *mf is NULL when there is no mask. */
static int prep_mask(const char *op, const lc_tensor *mask, const int64_t tgt[4],
                     lc_tensor **mf, int *is_bool, int64_t st[4])
{
    *mf = NULL;
    *is_bool = 0;
    for (int i = 0; i < 4; i++)
        st[i] = 0;
    if (!mask)
        return LC_OK;
    if (mask->ndim > 4)
        return lc_err("%s: mask %s has more than 4 dimensions", op, LC_SHAPE_STR(mask));
    int off = 4 - mask->ndim;
    int64_t s = 1;
    for (int i = mask->ndim - 1; i >= 0; i--) {
        int64_t n = mask->shape[i];
        if (n != 1 && n != tgt[off + i])
            return lc_err("%s: mask %s does not broadcast to [%lld,%lld,%lld,%lld] "
                          "(batch, heads, queries, keys)",
                          op, LC_SHAPE_STR(mask), (long long)tgt[0], (long long)tgt[1],
                          (long long)tgt[2], (long long)tgt[3]);
        st[off + i] = n == 1 ? 0 : s;
        s *= n;
    }
    *is_bool = !lc_dtype_is_float(mask->dtype);
    *mf = lc_tensor_f32((lc_tensor *)mask);
    return *mf ? LC_OK : LC_ERR;
}

static int sdpa_run(sdpa_job *j, const lc_tensor *mask, const char *op)
{
    int64_t tgt[4] = {j->B, j->H, j->Lq, j->Lk}, st[4];
    lc_tensor *mf = NULL;
    if (prep_mask(op, mask, tgt, &mf, &j->mask_bool, st) != LC_OK)
        return LC_ERR;
    j->mask = mf ? lc_tensor_data(mf) : NULL;
    j->mb = st[0];
    j->mh = st[1];
    j->mq = st[2];
    j->mk = st[3];
    j->nblk = (j->Lq + QB - 1) / QB;
    /* scores, and for the keys x queries path Q^T and Out^T of a block */
    j->per = QB * ((j->Lk > 0 ? j->Lk : 1) + j->D + j->Dv);
    int nt = lc_pool_threads();
    /* a tensor, so the scratch comes from the reused big-buffer cache */
    int64_t ns = j->per * nt;
    lc_tensor *scr = lc_tensor_new(LC_F32, 1, &ns);
    j->scratch = scr ? lc_tensor_data(scr) : NULL;
    int rc = LC_ERR;
    int keys_rows = !j->causal && j->Lk > 0;
    /* S^T's per-row scale: the same for every key */
    float *ks = keys_rows ? lc_calloc((size_t)j->Lk, sizeof *ks, "attention scales") : NULL;
    for (int64_t c = 0; ks && c < j->Lk; c++)
        ks[c] = j->scale;
    j->kscale = ks;
    if (j->scratch && (ks || !keys_rows))
        rc = lc_parallel_for(j->B * j->H * j->nblk, 1, keys_rows ? sdpa_tblocks : sdpa_blocks, j);
    free(ks);
    /* a lone block runs inline and its GEMMs may have skipped work */
    if (rc == LC_OK && lc_interrupted())
        rc = lc_err("interrupted");
    lc_tensor_free(scr);
    lc_tensor_free(mf);
    return rc;
}

static float pick_scale(double scale, int64_t D)
{
    return scale > 0 ? (float)scale : (float)(1.0 / sqrt((double)(D > 0 ? D : 1)));
}

static lc_tensor *sdpa_impl(const lc_tensor *q, const lc_tensor *k, const lc_tensor *v,
                            const lc_tensor *mask, double scale, int causal)
{
    if (q->ndim != 4 || k->ndim != 4 || v->ndim != 4) {
        lc_err("sdpa: q %s, k %s, v %s must all be 4-d [B,H,L,D]", LC_SHAPE_STR(q),
               LC_SHAPE_STR(k), LC_SHAPE_STR(v));
        return NULL;
    }
    if (k->shape[0] != q->shape[0] || v->shape[0] != q->shape[0] || k->shape[1] != q->shape[1] ||
        v->shape[1] != q->shape[1]) {
        lc_err("sdpa: q %s, k %s, v %s: batch and head counts differ", LC_SHAPE_STR(q),
               LC_SHAPE_STR(k), LC_SHAPE_STR(v));
        return NULL;
    }
    if (k->shape[3] != q->shape[3]) {
        lc_err("sdpa: q %s and k %s: head sizes %lld and %lld differ", LC_SHAPE_STR(q),
               LC_SHAPE_STR(k), (long long)q->shape[3], (long long)k->shape[3]);
        return NULL;
    }
    if (v->shape[2] != k->shape[2]) {
        lc_err("sdpa: k %s and v %s: key counts %lld and %lld differ", LC_SHAPE_STR(k),
               LC_SHAPE_STR(v), (long long)k->shape[2], (long long)v->shape[2]);
        return NULL;
    }
    int64_t B = q->shape[0], H = q->shape[1], Lq = q->shape[2], D = q->shape[3];
    int64_t Lk = k->shape[2], Dv = v->shape[3];
    lc_tensor *qf = lc_tensor_f32((lc_tensor *)q), *kf = NULL, *vf = NULL, *out = NULL;
    if (!qf || !(kf = lc_tensor_f32((lc_tensor *)k)) || !(vf = lc_tensor_f32((lc_tensor *)v)))
        goto done;
    int64_t shape[4] = {B, H, Lq, Dv};
    if (!(out = lc_tensor_new(LC_F32, 4, shape)))
        goto done;
    sdpa_job j = {
        .q = {lc_tensor_data(qf), H * Lq * D, Lq * D, D},
        .k = {lc_tensor_data(kf), H * Lk * D, Lk * D, D},
        .v = {lc_tensor_data(vf), H * Lk * Dv, Lk * Dv, Dv},
        .out = lc_tensor_data(out),
        .ob = H * Lq * Dv, .oh = Lq * Dv, .ol = Dv,
        .B = B, .H = H, .Lq = Lq, .Lk = Lk, .D = D, .Dv = Dv,
        .scale = pick_scale(scale, D), .causal = causal,
    };
    if (sdpa_run(&j, mask, "sdpa") != LC_OK) {
        lc_tensor_free(out);
        out = NULL;
    }
done:
    lc_tensor_free(qf);
    lc_tensor_free(kf);
    lc_tensor_free(vf);
    return out;
}

static lc_tensor *attention_heads_impl(const lc_tensor *q, const lc_tensor *k, const lc_tensor *v,
                                       int heads, const lc_tensor *mask, double scale)
{
    if (q->ndim != 3 || k->ndim != 3 || v->ndim != 3) {
        lc_err("attention: q %s, k %s, v %s must all be 3-d [B,L,heads*D]", LC_SHAPE_STR(q),
               LC_SHAPE_STR(k), LC_SHAPE_STR(v));
        return NULL;
    }
    if (heads < 1 || q->shape[2] % heads != 0 || v->shape[2] % heads != 0) {
        lc_err("attention: q %s and v %s: channel counts must divide into %d heads",
               LC_SHAPE_STR(q), LC_SHAPE_STR(v), heads);
        return NULL;
    }
    if (k->shape[0] != q->shape[0] || v->shape[0] != q->shape[0]) {
        lc_err("attention: q %s, k %s, v %s: batch sizes differ", LC_SHAPE_STR(q),
               LC_SHAPE_STR(k), LC_SHAPE_STR(v));
        return NULL;
    }
    if (k->shape[2] != q->shape[2]) {
        lc_err("attention: q %s and k %s: channel counts %lld and %lld differ", LC_SHAPE_STR(q),
               LC_SHAPE_STR(k), (long long)q->shape[2], (long long)k->shape[2]);
        return NULL;
    }
    if (v->shape[1] != k->shape[1]) {
        lc_err("attention: k %s and v %s: key counts %lld and %lld differ", LC_SHAPE_STR(k),
               LC_SHAPE_STR(v), (long long)k->shape[1], (long long)v->shape[1]);
        return NULL;
    }
    int64_t B = q->shape[0], H = heads, Lq = q->shape[1], Lk = k->shape[1];
    int64_t D = q->shape[2] / H, Dv = v->shape[2] / H, C = q->shape[2], Cv = v->shape[2];
    lc_tensor *qf = lc_tensor_f32((lc_tensor *)q), *kf = NULL, *vf = NULL, *out = NULL;
    if (!qf || !(kf = lc_tensor_f32((lc_tensor *)k)) || !(vf = lc_tensor_f32((lc_tensor *)v)))
        goto done;
    int64_t shape[3] = {B, Lq, Cv};
    if (!(out = lc_tensor_new(LC_F32, 3, shape)))
        goto done;
    /* heads are column slices: no split/merge copies, just strides */
    sdpa_job j = {
        .q = {lc_tensor_data(qf), Lq * C, D, C},
        .k = {lc_tensor_data(kf), Lk * C, D, C},
        .v = {lc_tensor_data(vf), Lk * Cv, Dv, Cv},
        .out = lc_tensor_data(out),
        .ob = Lq * Cv, .oh = Dv, .ol = Cv,
        .B = B, .H = H, .Lq = Lq, .Lk = Lk, .D = D, .Dv = Dv,
        .scale = pick_scale(scale, D), .causal = 0,
    };
    if (sdpa_run(&j, mask, "attention") != LC_OK) {
        lc_tensor_free(out);
        out = NULL;
    }
done:
    lc_tensor_free(qf);
    lc_tensor_free(kf);
    lc_tensor_free(vf);
    return out;
}

lc_tensor *lc_sdpa(const lc_tensor *q, const lc_tensor *k, const lc_tensor *v,
                   const lc_tensor *mask, double scale, int causal)
{
    LC_PROF_BEGIN();
    lc_tensor *y = sdpa_impl(q, k, v, mask, scale, causal);
    /* q k^T and p v: 2 * B*H*Lq*Lk * (D + Dv) */
    LC_PROF_END(LC_PROF_ATTN, y ? 2.0 * (double)q->shape[0] * (double)q->shape[1] *
                                      (double)q->shape[2] * (double)k->shape[2] *
                                      (double)(q->shape[3] + v->shape[3])
                                : 0);
    return y;
}

lc_tensor *lc_attention_heads(const lc_tensor *q, const lc_tensor *k, const lc_tensor *v,
                              int heads, const lc_tensor *mask, double scale)
{
    LC_PROF_BEGIN();
    lc_tensor *y = attention_heads_impl(q, k, v, heads, mask, scale);
    /* per head 2 * Lq*Lk * (D + Dv); summed over heads the channel counts */
    LC_PROF_END(LC_PROF_ATTN, y ? 2.0 * (double)q->shape[0] * (double)q->shape[1] *
                                      (double)k->shape[1] * (double)(q->shape[2] + v->shape[2])
                                : 0);
    return y;
}
