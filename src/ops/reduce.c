/* Reductions: sum, mean, max, min, var, std, argmax, argmin, norm.
 *
 * Determinism: a full reduction cuts the flat element order into fixed
 * chunks of CHUNK elements (a constant, never derived from the thread
 * count); each chunk is reduced in order into its own slot in double, and
 * the slots are combined in order. A reduction over one dimension gives
 * each output element to exactly one task, which walks the reduced
 * dimension in order. Either way the result is the same bits for any
 * number of threads.
 *
 * Inputs are read as contiguous f32 (f32, f16, bf16) or f64 (f64 and the
 * integers, exact up to 2^53), converting first when needed. VAR/STD are
 * two-pass (mean, then squared deviations) for accuracy. NaN propagates
 * through max/min, and argmax/argmin point at the first NaN, as torch. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/pool.h"
#include "ops.h"

#define CHUNK 65536 /* elements per partial sum of a full reduction */
#define IB 256      /* outputs per task when the reduced dim is not innermost */

static const char *redop_names[] = {"sum", "mean", "max", "min", "var", "std", "argmax",
                                    "argmin", "norm"};

static const char *op_name(lc_redop op)
{
    return (unsigned)op <= LC_RNORM ? redop_names[op] : "reduce";
}

static int is_extreme(lc_redop op)
{
    return op == LC_RMAX || op == LC_RMIN || op == LC_RARGMAX || op == LC_RARGMIN;
}

static int wants_max(lc_redop op)
{
    return op == LC_RMAX || op == LC_RARGMAX;
}

/* Does v replace best? Strictly better, or the first NaN. */
static inline int better(double v, double best, int max)
{
    if (best != best)
        return 0;
    if (v != v)
        return 1;
    return max ? v > best : v < best;
}

/* Contiguous f32 or f64 data for reading; *owned gets a new reference. */
static lc_tensor *readable(const lc_tensor *a)
{
    if ((a->dtype == LC_F32 || a->dtype == LC_F64) && lc_tensor_is_contiguous(a)) {
        lc_tensor_retain((lc_tensor *)a);
        return (lc_tensor *)a;
    }
    lc_dtype dt = a->dtype == LC_F16 || a->dtype == LC_BF16 || a->dtype == LC_F32 ? LC_F32 : LC_F64;
    return lc_tensor_to(a, dt);
}

/* element i of a contiguous f32/f64 buffer */
#define ELEM(p, is64, i) ((is64) ? ((const double *)(p))[i] : (double)((const float *)(p))[i])

/* ---- full reductions ---- */

typedef struct {
    const void *p;
    int is64;
    int64_t n;
    int mode; /* 0 sum, 1 sum of squares, 2 squared deviation from mean, 3 extreme */
    int max;
    double mean;
    double *val;
    int64_t *idx;
} all_job;

#define SUMLOOP(expr)                                                                         \
    {                                                                                         \
        int64_t i = b;                                                                        \
        for (; i + 4 <= e; i += 4)                                                            \
            for (int k = 0; k < 4; k++) {                                                     \
                double v = f[i + k];                                                          \
                s[k] += expr;                                                                 \
            }                                                                                 \
        for (; i < e; i++) {                                                                  \
            double v = f[i];                                                                  \
            s[0] += expr;                                                                     \
        }                                                                                     \
    }

/* Sum over [b, e) of v, v*v or (v-mean)^2 with four interleaved
 * accumulators combined in a fixed order. */
static double sum_run(const void *p, int is64, int64_t b, int64_t e, int mode, double m)
{
    double s[4] = {0, 0, 0, 0};
    if (is64) {
        const double *f = p;
        switch (mode) {
        case 0: SUMLOOP(v) break;
        case 1: SUMLOOP(v * v) break;
        default: SUMLOOP((v - m) * (v - m)) break;
        }
    } else {
        const float *f = p;
        switch (mode) {
        case 0: SUMLOOP(v) break;
        case 1: SUMLOOP(v * v) break;
        default: SUMLOOP((v - m) * (v - m)) break;
        }
    }
    return (s[0] + s[1]) + (s[2] + s[3]);
}

/* first index of the extreme over [b, e) */
static int64_t extreme_run(const void *p, int is64, int64_t b, int64_t e, int max, double *best_out)
{
    double best = ELEM(p, is64, b);
    int64_t bi = b;
    for (int64_t i = b + 1; i < e; i++) {
        double v = ELEM(p, is64, i);
        if (better(v, best, max)) {
            best = v;
            bi = i;
        }
    }
    *best_out = best;
    return bi;
}

static void all_chunk(void *ctx, int64_t cb, int64_t ce)
{
    all_job *j = ctx;
    for (int64_t c = cb; c < ce; c++) {
        int64_t b = c * CHUNK, e = b + CHUNK < j->n ? b + CHUNK : j->n;
        if (j->mode == 3)
            j->idx[c] = extreme_run(j->p, j->is64, b, e, j->max, &j->val[c]);
        else
            j->val[c] = sum_run(j->p, j->is64, b, e, j->mode, j->mean);
    }
}

/* Runs one pass; sums come back in *sum, extremes in *sum and *index. */
static int all_pass(all_job *j, double *sum, int64_t *index)
{
    int64_t nchunks = (j->n + CHUNK - 1) / CHUNK;
    j->val = lc_malloc(sizeof(double) * (size_t)nchunks, "reduction partials");
    j->idx = lc_malloc(sizeof(int64_t) * (size_t)nchunks, "reduction partials");
    if (!j->val || !j->idx) {
        free(j->val);
        free(j->idx);
        return LC_ERR;
    }
    int rc = lc_parallel_for(nchunks, 1, all_chunk, j);
    if (rc == LC_OK) {
        if (j->mode == 3) {
            double best = j->val[0];
            int64_t bi = j->idx[0];
            for (int64_t c = 1; c < nchunks; c++)
                if (better(j->val[c], best, j->max)) {
                    best = j->val[c];
                    bi = j->idx[c];
                }
            *sum = best;
            *index = bi;
        } else {
            double s = 0;
            for (int64_t c = 0; c < nchunks; c++)
                s += j->val[c];
            *sum = s;
        }
    }
    free(j->val);
    free(j->idx);
    return rc;
}

/* value (and flat index for extremes) of a full reduction */
static int reduce_all(lc_redop op, const lc_tensor *a, int unbiased, double *out, int64_t *index)
{
    if ((unsigned)op > LC_RNORM)
        return lc_err("reduce: invalid op %d", (int)op);
    int64_t n = lc_tensor_numel(a);
    if (n == 0) {
        if (is_extreme(op))
            return lc_err("%s: cannot reduce the empty tensor %s", op_name(op), LC_SHAPE_STR(a));
        *out = op == LC_RSUM || op == LC_RNORM ? 0.0 : NAN;
        return LC_OK;
    }
    lc_tensor *r = readable(a);
    if (!r)
        return lc_err_prefix("%s: ", op_name(op));
    all_job j = {.p = lc_tensor_data(r), .is64 = r->dtype == LC_F64, .n = n};
    double s = 0;
    int64_t idx = 0;
    int rc;
    if (is_extreme(op)) {
        j.mode = 3;
        j.max = wants_max(op);
        rc = all_pass(&j, &s, &idx);
    } else if (op == LC_RNORM) {
        j.mode = 1;
        rc = all_pass(&j, &s, &idx);
        s = sqrt(s);
    } else {
        rc = all_pass(&j, &s, &idx);
        if (rc == LC_OK && op != LC_RSUM)
            s /= (double)n;
        if (rc == LC_OK && (op == LC_RVAR || op == LC_RSTD)) {
            j.mode = 2;
            j.mean = s;
            rc = all_pass(&j, &s, &idx);
            int64_t den = unbiased ? n - 1 : n;
            s = den > 0 ? s / (double)den : NAN;
            if (op == LC_RSTD)
                s = sqrt(s);
        }
    }
    lc_tensor_free(r);
    if (rc != LC_OK)
        return lc_err_prefix("%s: ", op_name(op));
    *out = s;
    if (index)
        *index = idx;
    return LC_OK;
}

lc_tensor *lc_reduce_all(lc_redop op, const lc_tensor *a, int unbiased)
{
    double v;
    int64_t idx = 0;
    if (reduce_all(op, a, unbiased, &v, &idx) != LC_OK)
        return NULL;
    lc_dtype dt = op == LC_RARGMAX || op == LC_RARGMIN ? LC_I64
                  : op == LC_RMAX || op == LC_RMIN    ? a->dtype
                                                      : LC_F64;
    lc_tensor *t = lc_tensor_new(dt, 0, NULL);
    if (!t)
        return NULL;
    if (dt == LC_I64)
        *(int64_t *)lc_tensor_data(t) = idx;
    else if (dt == LC_F64)
        *(double *)lc_tensor_data(t) = v;
    else
        lc_tensor_set(t, 0, v);
    return t;
}

int lc_reduce_all_value(lc_redop op, const lc_tensor *a, double *out)
{
    int64_t idx;
    if (reduce_all(op, a, 1, out, &idx) != LC_OK)
        return LC_ERR;
    if (op == LC_RARGMAX || op == LC_RARGMIN)
        *out = (double)idx;
    return LC_OK;
}

/* ---- reductions over one dimension ---- */

/* input viewed as [outer, R, inner]; output [outer, inner] in double */
typedef struct {
    const void *p;
    int is64;
    int64_t outer, R, inner, nblk;
    lc_redop op;
    int unbiased;
    double *out;
} dim_job;

static void load_row(double *dst, const void *p, int is64, int64_t off, int64_t w)
{
    if (is64) {
        memcpy(dst, (const double *)p + off, sizeof(double) * (size_t)w);
    } else {
        const float *f = (const float *)p + off;
        for (int64_t k = 0; k < w; k++)
            dst[k] = f[k];
    }
}

static void dim_chunk(void *ctx, int64_t tb, int64_t te)
{
    dim_job *j = ctx;
    double acc[IB], aux[IB];
    if (j->inner == 1) {
        /* each output reduces one contiguous row */
        lc_redop op = j->op;
        for (int64_t t = tb; t < te; t++) {
            int64_t b = t * j->R, e = b + j->R;
            double v, best;
            if (is_extreme(op)) {
                int64_t bi = extreme_run(j->p, j->is64, b, e, wants_max(op), &best);
                v = op == LC_RARGMAX || op == LC_RARGMIN ? (double)(bi - b) : best;
            } else if (op == LC_RNORM) {
                v = sqrt(sum_run(j->p, j->is64, b, e, 1, 0));
            } else {
                v = sum_run(j->p, j->is64, b, e, 0, 0);
                if (op != LC_RSUM)
                    v = j->R ? v / (double)j->R : NAN;
                if (op == LC_RVAR || op == LC_RSTD) {
                    int64_t den = j->unbiased ? j->R - 1 : j->R;
                    double ss = sum_run(j->p, j->is64, b, e, 2, v);
                    v = den > 0 ? ss / (double)den : NAN;
                    if (op == LC_RSTD)
                        v = sqrt(v);
                }
            }
            j->out[t] = v;
        }
        return;
    }
    double row[IB];
    for (int64_t t = tb; t < te; t++) {
        int64_t o = t / j->nblk, i0 = (t % j->nblk) * IB;
        int64_t w = j->inner - i0 < IB ? j->inner - i0 : IB;
        int64_t base = o * j->R * j->inner + i0;
        lc_redop op = j->op;
        if (is_extreme(op)) {
            int max = wants_max(op);
            load_row(acc, j->p, j->is64, base, w);
            for (int64_t k = 0; k < w; k++)
                aux[k] = 0;
            for (int64_t r = 1; r < j->R; r++) {
                load_row(row, j->p, j->is64, base + r * j->inner, w);
                for (int64_t k = 0; k < w; k++)
                    if (better(row[k], acc[k], max)) {
                        acc[k] = row[k];
                        aux[k] = (double)r;
                    }
            }
            if (op == LC_RARGMAX || op == LC_RARGMIN)
                memcpy(acc, aux, sizeof(double) * (size_t)w);
        } else {
            for (int64_t k = 0; k < w; k++)
                acc[k] = 0;
            for (int64_t r = 0; r < j->R; r++) {
                load_row(row, j->p, j->is64, base + r * j->inner, w);
                if (op == LC_RNORM)
                    for (int64_t k = 0; k < w; k++)
                        acc[k] += row[k] * row[k];
                else
                    for (int64_t k = 0; k < w; k++)
                        acc[k] += row[k];
            }
            if (op == LC_RNORM)
                for (int64_t k = 0; k < w; k++)
                    acc[k] = sqrt(acc[k]);
            if (op == LC_RMEAN || op == LC_RVAR || op == LC_RSTD)
                for (int64_t k = 0; k < w; k++)
                    acc[k] = j->R ? acc[k] / (double)j->R : NAN;
            if (op == LC_RVAR || op == LC_RSTD) {
                for (int64_t k = 0; k < w; k++)
                    aux[k] = 0;
                for (int64_t r = 0; r < j->R; r++) {
                    load_row(row, j->p, j->is64, base + r * j->inner, w);
                    for (int64_t k = 0; k < w; k++)
                        aux[k] += (row[k] - acc[k]) * (row[k] - acc[k]);
                }
                int64_t den = j->unbiased ? j->R - 1 : j->R;
                for (int64_t k = 0; k < w; k++) {
                    double v = den > 0 ? aux[k] / (double)den : NAN;
                    acc[k] = op == LC_RSTD ? sqrt(v) : v;
                }
            }
        }
        memcpy(j->out + o * j->inner + i0, acc, sizeof(double) * (size_t)w);
    }
}

/* dtype of a reduction over a dimension: floats keep theirs, as torch */
static lc_dtype dim_dtype(lc_redop op, lc_dtype in)
{
    if (op == LC_RARGMAX || op == LC_RARGMIN)
        return LC_I64;
    if (op == LC_RMAX || op == LC_RMIN || lc_dtype_is_float(in))
        return in;
    return op == LC_RSUM ? LC_I64 : LC_F32;
}

lc_tensor *lc_reduce_dim(lc_redop op, const lc_tensor *a, int dim, int keepdim, int unbiased)
{
    if ((unsigned)op > LC_RNORM) {
        lc_err("reduce: invalid op %d", (int)op);
        return NULL;
    }
    int d = dim < 0 ? dim + a->ndim : dim;
    if (d < 0 || d >= a->ndim) {
        lc_err("%s: dimension %d out of range for the %d-d tensor %s", op_name(op), dim,
               a->ndim, LC_SHAPE_STR(a));
        return NULL;
    }
    int64_t R = a->shape[d], outer = 1, inner = 1;
    for (int i = 0; i < d; i++)
        outer *= a->shape[i];
    for (int i = d + 1; i < a->ndim; i++)
        inner *= a->shape[i];
    if (R == 0 && is_extreme(op) && outer * inner > 0) {
        lc_err("%s: cannot reduce dimension %d of size 0 in %s", op_name(op), d, LC_SHAPE_STR(a));
        return NULL;
    }
    int64_t oshape[LC_MAXDIM];
    int ond = 0;
    for (int i = 0; i < a->ndim; i++) {
        if (i != d)
            oshape[ond++] = a->shape[i];
        else if (keepdim)
            oshape[ond++] = 1;
    }
    lc_tensor *res = lc_tensor_new(LC_F64, ond, oshape);
    lc_tensor *r = res ? readable(a) : NULL;
    if (!r) {
        lc_tensor_free(res);
        return NULL;
    }
    int rc = LC_OK;
    if (outer * inner > 0) {
        dim_job j = {.p = lc_tensor_data(r), .is64 = r->dtype == LC_F64, .outer = outer, .R = R,
                     .inner = inner, .nblk = (inner + IB - 1) / IB, .op = op,
                     .unbiased = unbiased, .out = lc_tensor_data(res)};
        int64_t tasks = outer * j.nblk;
        /* a task costs about R * IB element reads */
        int64_t per = R * (inner < IB ? inner : IB);
        int64_t grain = per > 0 ? (32768 + per - 1) / per : tasks;
        rc = lc_parallel_for(tasks, grain, dim_chunk, &j);
    }
    lc_tensor_free(r);
    lc_dtype odt = dim_dtype(op, a->dtype);
    if (rc != LC_OK) {
        lc_tensor_free(res);
        lc_err_prefix("%s: ", op_name(op));
        return NULL;
    }
    if (odt == LC_F64)
        return res;
    lc_tensor *out = lc_tensor_to(res, odt);
    lc_tensor_free(res);
    return out;
}
