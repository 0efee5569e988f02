/* Core tensor ops: elementwise, reductions, matmul, shape ops. Expected
 * values are exact or computed independently (naive loops, libm). */
#include "ops/ops.h"
#include "testutil.h"

#define SHAPE(...) ((const int64_t[]){__VA_ARGS__})

static lc_tensor *seq(lc_dtype dt, int nd, const int64_t *shape, double start, double step)
{
    lc_tensor *t = lc_tensor_new(dt, nd, shape);
    ck_assert_ptr_nonnull(t);
    for (int64_t i = 0; i < lc_tensor_numel(t); i++)
        lc_tensor_set(t, i, start + step * (double)i);
    return t;
}

/* deterministic pseudo-random values in [-1, 1) */
static lc_tensor *noise(lc_dtype dt, int nd, const int64_t *shape, uint32_t seed)
{
    lc_tensor *t = lc_tensor_new(dt, nd, shape);
    ck_assert_ptr_nonnull(t);
    uint32_t s = seed;
    for (int64_t i = 0; i < lc_tensor_numel(t); i++) {
        s = s * 1664525u + 1013904223u;
        lc_tensor_set(t, i, (double)(s >> 8) / (double)(1 << 23) - 1.0);
    }
    return t;
}

static void assert_shape(const lc_tensor *t, int nd, const int64_t *shape)
{
    ck_assert_int_eq(t->ndim, nd);
    for (int i = 0; i < nd; i++)
        ck_assert_int_eq(t->shape[i], shape[i]);
}

static void assert_err(const char *want)
{
    ck_assert_msg(strcmp(lc_errmsg(), want) == 0, "error '%s', expected '%s'", lc_errmsg(), want);
}

/* ---- elementwise ---- */

START_TEST(test_broadcast_add)
{
    /* a[i,0,k] = 10i + k, b[j,0] = 100j: out[i,j,k] = 10i + k + 100j */
    lc_tensor *a = seq(LC_F32, 3, SHAPE(2, 1, 3), 0, 1);
    for (int i = 0; i < 2; i++)
        for (int k = 0; k < 3; k++)
            lc_tensor_set(a, i * 3 + k, 10 * i + k);
    lc_tensor *b = seq(LC_F32, 2, SHAPE(4, 1), 0, 100);
    lc_tensor *c = lc_binary(LC_ADD, a, b);
    ck_assert_ptr_nonnull(c);
    assert_shape(c, 3, SHAPE(2, 4, 3));
    ck_assert(c->dtype == LC_F32);
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 4; j++)
            for (int k = 0; k < 3; k++)
                ck_assert_double_eq(lc_tensor_get(c, (i * 4 + j) * 3 + k), 10 * i + k + 100 * j);
    /* the other order gives the same, and sub is ordered */
    lc_tensor *d = lc_binary(LC_SUB, b, a);
    assert_shape(d, 3, SHAPE(2, 4, 3));
    ck_assert_double_eq(lc_tensor_get(d, (1 * 4 + 3) * 3 + 2), 300 - 12);
    lc_tensor_free(a);
    lc_tensor_free(b);
    lc_tensor_free(c);
    lc_tensor_free(d);
}
END_TEST

START_TEST(test_broadcast_error)
{
    lc_tensor *a = lc_tensor_zeros(LC_F32, 2, SHAPE(2, 3));
    lc_tensor *b = lc_tensor_zeros(LC_F32, 1, SHAPE(4));
    ck_assert_ptr_null(lc_binary(LC_ADD, a, b));
    assert_err("add: shapes [2,3] and [4] cannot broadcast");
    ck_assert_ptr_null(lc_binary(LC_MUL, b, a));
    assert_err("mul: shapes [4] and [2,3] cannot broadcast");
    ck_assert_int_eq(lc_binary_(LC_ADD, a, b), LC_ERR);
    assert_err("add_: shape [4] cannot broadcast to [2,3]");
    /* in place may not grow the destination */
    lc_tensor *r = lc_tensor_zeros(LC_F32, 1, SHAPE(3));
    ck_assert_int_eq(lc_binary_(LC_ADD, r, a), LC_ERR);
    lc_tensor *cond = lc_tensor_zeros(LC_U8, 1, SHAPE(5));
    ck_assert_ptr_null(lc_where(cond, a, r));
    assert_err("where: shapes [5], [2,3] and [3] cannot broadcast");
    lc_tensor_free(a);
    lc_tensor_free(b);
    lc_tensor_free(r);
    lc_tensor_free(cond);
}
END_TEST

START_TEST(test_strided_inputs)
{
    /* x [2,3] = 0..5; x^T [3,2] + y [3,2] where y = 100..105 */
    lc_tensor *x = seq(LC_F32, 2, SHAPE(2, 3), 0, 1);
    lc_tensor *xt = lc_tensor_transpose(x, 0, 1);
    lc_tensor *y = seq(LC_F32, 2, SHAPE(3, 2), 100, 1);
    lc_tensor *z = lc_binary(LC_ADD, xt, y);
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 2; j++)
            ck_assert_double_eq(lc_tensor_get(z, i * 2 + j), (j * 3 + i) + 100 + i * 2 + j);
    /* a narrowed (non-unit outer stride) f16 input, and a strided output */
    lc_tensor *col = lc_tensor_narrow(y, 1, 1, 1); /* 101, 103, 105 */
    lc_tensor *h = lc_tensor_to(col, LC_F16);
    lc_tensor *e = lc_unary(LC_NEG, h);
    ck_assert(e->dtype == LC_F16);
    ck_assert_double_eq(lc_tensor_get(e, 2), -105);
    ck_assert_int_eq(lc_binary_scalar_(LC_MUL, col, 2.0), LC_OK);
    ck_assert_double_eq(lc_tensor_get(y, 0), 100);
    ck_assert_double_eq(lc_tensor_get(y, 1), 202);
    ck_assert_double_eq(lc_tensor_get(y, 5), 210);
    /* negative strides (a flipped view) */
    lc_tensor *fv = lc_tensor_narrow(x, 1, 0, 3);
    fv->offset += 2;
    fv->stride[1] = -1;
    lc_tensor *fz = lc_binary_scalar(LC_ADD, fv, 0.5, 0);
    ck_assert_double_eq(lc_tensor_get(fz, 0), 2.5);
    ck_assert_double_eq(lc_tensor_get(fz, 5), 3.5);
    lc_tensor *objs[] = {x, xt, y, z, col, h, e, fv, fz};
    for (size_t i = 0; i < sizeof objs / sizeof *objs; i++)
        lc_tensor_free(objs[i]);
}
END_TEST

static lc_dtype result_of(lc_binop op, lc_dtype a, int na, lc_dtype b, int nb)
{
    lc_tensor *x = lc_tensor_zeros(a, na, SHAPE(3));
    lc_tensor *y = lc_tensor_zeros(b, nb, SHAPE(3));
    lc_tensor *z = lc_binary(op, x, y);
    ck_assert_ptr_nonnull(z);
    lc_dtype d = z->dtype;
    lc_tensor_free(x);
    lc_tensor_free(y);
    lc_tensor_free(z);
    return d;
}

START_TEST(test_dtype_promotion)
{
    ck_assert(result_of(LC_ADD, LC_F32, 1, LC_F64, 1) == LC_F64);
    ck_assert(result_of(LC_ADD, LC_F16, 1, LC_BF16, 1) == LC_F32);
    ck_assert(result_of(LC_ADD, LC_F16, 1, LC_F16, 1) == LC_F16);
    ck_assert(result_of(LC_MUL, LC_BF16, 1, LC_F32, 1) == LC_F32);
    ck_assert(result_of(LC_ADD, LC_I32, 1, LC_I64, 1) == LC_I64);
    ck_assert(result_of(LC_ADD, LC_U8, 1, LC_I32, 1) == LC_I32);
    ck_assert(result_of(LC_ADD, LC_I32, 1, LC_F16, 1) == LC_F16);
    ck_assert(result_of(LC_DIV, LC_I32, 1, LC_I32, 1) == LC_F32);
    ck_assert(result_of(LC_POW, LC_I64, 1, LC_I64, 1) == LC_F32);
    ck_assert(result_of(LC_LT, LC_F32, 1, LC_F64, 1) == LC_U8);
    /* a 0-d operand does not widen a dimensioned one of its category */
    ck_assert(result_of(LC_MUL, LC_F32, 1, LC_F64, 0) == LC_F32);
    ck_assert(result_of(LC_MUL, LC_F64, 0, LC_F16, 1) == LC_F16);
    ck_assert(result_of(LC_MUL, LC_I32, 1, LC_F64, 0) == LC_F64);
    /* f16 sums compute in f32 and round once */
    lc_tensor *a = lc_tensor_new(LC_F16, 1, SHAPE(1)), *b = lc_tensor_new(LC_F16, 1, SHAPE(1));
    lc_tensor_set(a, 0, 2048);
    lc_tensor_set(b, 0, 1);
    lc_tensor *c = lc_binary(LC_ADD, a, b); /* 2049 is not an f16: ties to even 2048 */
    ck_assert_double_eq(lc_tensor_get(c, 0), 2048);
    lc_tensor_free(a);
    lc_tensor_free(b);
    lc_tensor_free(c);
}
END_TEST

START_TEST(test_integer_ops)
{
    /* i64 arithmetic is exact beyond 2^53 */
    lc_tensor *a = lc_tensor_new(LC_I64, 1, SHAPE(2));
    int64_t *pa = lc_tensor_data(a);
    pa[0] = (INT64_C(1) << 53) + 1;
    pa[1] = -7;
    lc_tensor *b = lc_binary_scalar(LC_ADD, a, 1, 0);
    ck_assert(b->dtype == LC_I64);
    ck_assert_int_eq(((int64_t *)lc_tensor_data(b))[0], (INT64_C(1) << 53) + 2);
    ck_assert_int_eq(((int64_t *)lc_tensor_data(b))[1], -6);
    lc_tensor *m = lc_binary(LC_MUL, a, a);
    ck_assert_int_eq(((int64_t *)lc_tensor_data(m))[1], 49);
    /* integer / integer is true division in f32 */
    lc_tensor *x = seq(LC_I32, 1, SHAPE(3), 7, 1); /* 7 8 9 */
    lc_tensor *q = lc_binary_scalar(LC_DIV, x, 2, 0);
    ck_assert(q->dtype == LC_F32);
    ck_assert_double_eq(lc_tensor_get(q, 0), 3.5);
    /* int * 0.5 becomes float; int * 3 stays int; scalar first */
    lc_tensor *h = lc_binary_scalar(LC_MUL, x, 0.5, 0);
    ck_assert(h->dtype == LC_F32);
    ck_assert_double_eq(lc_tensor_get(h, 1), 4.0);
    lc_tensor *t = lc_binary_scalar(LC_SUB, x, 10, 1); /* 10 - x */
    ck_assert(t->dtype == LC_I32);
    ck_assert_double_eq(lc_tensor_get(t, 2), 1);
    lc_tensor *ab = lc_unary(LC_ABS, b);
    ck_assert(ab->dtype == LC_I64);
    ck_assert_int_eq(((int64_t *)lc_tensor_data(ab))[1], 6);
    lc_tensor *ex = lc_unary(LC_EXP, x);
    ck_assert(ex->dtype == LC_F32);
    ck_assert_double_eq_tol(lc_tensor_get(ex, 0), exp(7.0), 1e-2);
    lc_tensor *u = seq(LC_U8, 1, SHAPE(3), 250, 2); /* 250 252 254 */
    lc_tensor *mx = lc_binary_scalar(LC_MAXIMUM, u, 251, 0);
    ck_assert(mx->dtype == LC_U8);
    ck_assert_double_eq(lc_tensor_get(mx, 0), 251);
    ck_assert_double_eq(lc_tensor_get(mx, 2), 254);
    lc_tensor *objs[] = {a, b, m, x, q, h, t, ab, ex, u, mx};
    for (size_t i = 0; i < sizeof objs / sizeof *objs; i++)
        lc_tensor_free(objs[i]);
}
END_TEST

START_TEST(test_comparisons)
{
    lc_tensor *a = seq(LC_F32, 1, SHAPE(5), -2, 1);  /* -2 -1 0 1 2 */
    lc_tensor *b = seq(LC_F64, 1, SHAPE(5), 2, -1);  /*  2  1 0 -1 -2 */
    const struct {
        lc_binop op;
        int want[5];
    } cases[] = {{LC_EQ, {0, 0, 1, 0, 0}}, {LC_NE, {1, 1, 0, 1, 1}}, {LC_LT, {1, 1, 0, 0, 0}},
                 {LC_LE, {1, 1, 1, 0, 0}}, {LC_GT, {0, 0, 0, 1, 1}}, {LC_GE, {0, 0, 1, 1, 1}}};
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        lc_tensor *r = lc_binary(cases[c].op, a, b);
        ck_assert(r->dtype == LC_U8);
        for (int i = 0; i < 5; i++)
            ck_assert_int_eq(((uint8_t *)lc_tensor_data(r))[i], cases[c].want[i]);
        lc_tensor_free(r);
    }
    /* integer tensor against a fractional scalar compares exactly */
    lc_tensor *n = seq(LC_I64, 1, SHAPE(3), 1, 1);
    lc_tensor *r = lc_binary_scalar(LC_GT, n, 1.5, 0);
    ck_assert_int_eq(((uint8_t *)lc_tensor_data(r))[0], 0);
    ck_assert_int_eq(((uint8_t *)lc_tensor_data(r))[1], 1);
    lc_tensor_free(r);
    lc_tensor_free(n);
    lc_tensor_free(a);
    lc_tensor_free(b);
}
END_TEST

START_TEST(test_unary_values)
{
    float v[] = {-2.5f, -1.5f, -0.5f, 0.0f, 0.5f, 1.0f, 1.5f, 2.5f, 3.0f};
    int n = 9;
    lc_tensor *x = lt_tensor(1, SHAPE(9), v);
    for (int op = LC_NEG; op <= LC_RECIPROCAL; op++) {
        lc_tensor *y = lc_unary((lc_unop)op, x);
        ck_assert_ptr_nonnull(y);
        for (int i = 0; i < n; i++) {
            double a = v[i], want;
            switch (op) {
            case LC_NEG: want = -a; break;
            case LC_ABS: want = fabs(a); break;
            case LC_EXP: want = exp(a); break;
            case LC_LOG: want = log(a); break;
            case LC_SQRT: want = sqrt(a); break;
            case LC_RSQRT: want = 1 / sqrt(a); break;
            case LC_SIN: want = sin(a); break;
            case LC_COS: want = cos(a); break;
            case LC_TANH: want = tanh(a); break;
            case LC_SIGMOID: want = 1 / (1 + exp(-a)); break;
            case LC_SILU: want = a / (1 + exp(-a)); break;
            case LC_GELU: want = 0.5 * a * (1 + erf(a / sqrt(2.0))); break;
            case LC_GELU_TANH:
                want = 0.5 * a * (1 + tanh(sqrt(2 / M_PI) * (a + 0.044715 * a * a * a)));
                break;
            case LC_QUICK_GELU: want = a / (1 + exp(-1.702 * a)); break;
            case LC_RELU: want = a > 0 ? a : 0; break;
            case LC_FLOOR: want = floor(a); break;
            case LC_CEIL: want = ceil(a); break;
            case LC_ROUND: /* half to even, written out */
                want = (a == -2.5) ? -2 : (a == -1.5) ? -2 : (a == -0.5) ? 0 : (a == 0.5) ? 0
                     : (a == 1.5) ? 2 : (a == 2.5) ? 2 : a;
                break;
            case LC_SQUARE: want = a * a; break;
            case LC_SIGN: want = (a > 0) - (a < 0); break;
            default: want = 1 / a; break;
            }
            double got = lc_tensor_get(y, i);
            if (isnan(want))
                ck_assert_msg(isnan(got), "op %d x=%g: got %g, want NaN", op, a, got);
            else if (isinf(want))
                ck_assert_msg(got == want, "op %d x=%g: got %g, want %g", op, a, got, want);
            else
                ck_assert_msg(fabs(got - want) <= 2e-6 * (1 + fabs(want)),
                              "op %d x=%g: got %.9g, want %.9g", op, a, got, want);
        }
        lc_tensor_free(y);
    }
    /* known constants */
    lc_tensor *g = lc_unary(LC_GELU, x);
    ck_assert_double_eq_tol(lc_tensor_get(g, 5), 0.8413447460685429, 1e-6);
    lc_tensor *s = lc_unary(LC_SIGMOID, x);
    ck_assert_double_eq(lc_tensor_get(s, 3), 0.5);
    /* in place, f64 */
    lc_tensor *d = lc_tensor_to(x, LC_F64);
    ck_assert_int_eq(lc_unary_(LC_SQUARE, d), LC_OK);
    ck_assert_double_eq(lc_tensor_get(d, 0), 6.25);
    lc_tensor_free(x);
    lc_tensor_free(g);
    lc_tensor_free(s);
    lc_tensor_free(d);
}
END_TEST

/* exp, sigmoid, silu and gelu use branch-free vectorizable forms: check
 * them against double-precision libm over a sweep and at the edges */
START_TEST(test_unary_accuracy)
{
    int64_t n = 200001;
    lc_tensor *x = seq(LC_F32, 1, &n, -20, 40.0 / (double)(n - 1));
    lc_tensor *e = lc_unary(LC_EXP, x), *sg = lc_unary(LC_SIGMOID, x);
    lc_tensor *si = lc_unary(LC_SILU, x), *g = lc_unary(LC_GELU, x);
    lc_tensor *q = lc_unary(LC_QUICK_GELU, x);
    const float *px = lc_tensor_data(x), *pe = lc_tensor_data(e), *ps = lc_tensor_data(sg),
                *pi = lc_tensor_data(si), *pg = lc_tensor_data(g), *pq = lc_tensor_data(q);
    for (int64_t i = 0; i < n; i++) {
        double v = px[i], ex = exp(v), sig = 1 / (1 + exp(-v));
        ck_assert_msg(fabs(pe[i] - ex) <= 2.5e-7 * ex, "exp(%g) = %.9g, want %.9g", v, pe[i], ex);
        ck_assert_msg(fabs(ps[i] - sig) <= 3e-7 * sig, "sigmoid(%g) = %.9g", v, ps[i]);
        ck_assert_msg(fabs(pi[i] - v * sig) <= 5e-7 * fabs(v * sig) + 1e-30, "silu(%g)", v);
        double gv = 0.5 * v * erfc(-v / sqrt(2.0));
        ck_assert_msg(fabs(pg[i] - gv) <= 4e-7 + 2e-7 * fabs(gv), "gelu(%g) = %.9g, want %.9g", v,
                      pg[i], gv);
        /* the f32 constant 1.702f, as torch computes it */
        double qv = v / (1 + exp((double)(-1.702f * px[i])));
        ck_assert_msg(fabs(pq[i] - qv) <= 5e-7 * fabs(qv) + 1e-30, "quick_gelu(%g)", v);
    }
    float sv[] = {NAN, INFINITY, -INFINITY, 100, -100, 0, 88, -87};
    lc_tensor *sp = lt_tensor(1, SHAPE(8), sv);
    lc_tensor *se = lc_unary(LC_EXP, sp), *ss = lc_unary(LC_SIGMOID, sp);
    ck_assert(isnan(lc_tensor_get(se, 0)));
    ck_assert(lc_tensor_get(se, 1) == INFINITY && lc_tensor_get(se, 3) == INFINITY);
    ck_assert(lc_tensor_get(se, 2) == 0 && lc_tensor_get(se, 4) == 0);
    ck_assert(lc_tensor_get(se, 5) == 1);
    ck_assert_double_eq_tol(lc_tensor_get(se, 6) / exp(88.0), 1, 3e-7);
    ck_assert_double_eq_tol(lc_tensor_get(se, 7) / exp(-87.0), 1, 3e-7);
    ck_assert(lc_tensor_get(ss, 3) == 1 && lc_tensor_get(ss, 4) == 0);
    lc_tensor *objs[] = {x, e, sg, si, g, q, sp, se, ss};
    for (size_t i = 0; i < sizeof objs / sizeof *objs; i++)
        lc_tensor_free(objs[i]);
}
END_TEST

START_TEST(test_binary_values)
{
    float av[] = {1, -2, 3, NAN}, bv[] = {2, 5, -1, 0};
    lc_tensor *a = lt_tensor(1, SHAPE(4), av), *b = lt_tensor(1, SHAPE(4), bv);
    lc_tensor *p = lc_binary(LC_POW, a, b);
    ck_assert_double_eq(lc_tensor_get(p, 0), 1);
    ck_assert_double_eq(lc_tensor_get(p, 1), -32);
    ck_assert_double_eq_tol(lc_tensor_get(p, 2), 1.0 / 3, 1e-7);
    lc_tensor *mx = lc_binary(LC_MAXIMUM, a, b), *mn = lc_binary(LC_MINIMUM, b, a);
    ck_assert_double_eq(lc_tensor_get(mx, 1), 5);
    ck_assert_double_eq(lc_tensor_get(mn, 1), -2);
    ck_assert(isnan(lc_tensor_get(mx, 3)) && isnan(lc_tensor_get(mn, 3))); /* NaN propagates */
    lc_tensor *dv = lc_binary_scalar(LC_DIV, a, 4, 1);                    /* 4 / a */
    ck_assert_double_eq(lc_tensor_get(dv, 1), -2);
    /* add_scaled, binary_ with broadcasting, scalar in place */
    lc_tensor *m = seq(LC_F32, 2, SHAPE(2, 4), 0, 1);
    ck_assert_int_eq(lc_add_scaled_(m, b, -0.5), LC_OK);
    ck_assert_double_eq(lc_tensor_get(m, 5), 5 - 2.5);
    ck_assert_int_eq(lc_binary_(LC_MUL, m, b), LC_OK);
    ck_assert_double_eq(lc_tensor_get(m, 4), (4 - 1) * 2);
    ck_assert_int_eq(lc_binary_scalar_(LC_SUB, m, 1), LC_OK);
    ck_assert_double_eq(lc_tensor_get(m, 4), 5);
    /* where, lerp, clamp */
    lc_tensor *cond = lc_binary_scalar(LC_GT, b, 1, 0); /* 1 1 0 0 */
    lc_tensor *w = lc_where(cond, a, b);
    ck_assert_double_eq(lc_tensor_get(w, 0), 1);
    ck_assert_double_eq(lc_tensor_get(w, 1), -2);
    ck_assert_double_eq(lc_tensor_get(w, 2), -1);
    lc_tensor *l = lc_lerp(a, b, 0.25), *l1 = lc_lerp(a, b, 1.0);
    ck_assert_double_eq(lc_tensor_get(l, 1), -2 + 0.25 * 7);
    ck_assert_double_eq(lc_tensor_get(l1, 2), -1); /* the end point is exact */
    lc_tensor *c = lc_clamp(a, -1, 2);
    ck_assert_double_eq(lc_tensor_get(c, 1), -1);
    ck_assert_double_eq(lc_tensor_get(c, 2), 2);
    ck_assert(isnan(lc_tensor_get(c, 3)));
    lc_tensor *objs[] = {a, b, p, mx, mn, dv, m, cond, w, l, l1, c};
    for (size_t i = 0; i < sizeof objs / sizeof *objs; i++)
        lc_tensor_free(objs[i]);
}
END_TEST

START_TEST(test_large_elementwise)
{
    /* large enough to run on several chunks; odd size for the tails */
    int64_t n = 1000003;
    lc_tensor *a = noise(LC_F32, 1, &n, 1), *b = noise(LC_F32, 1, &n, 2);
    lc_tensor *c = lc_binary(LC_MUL, a, b);
    lc_tensor *s = lc_unary(LC_SILU, a);
    const float *pa = lc_tensor_data(a), *pb = lc_tensor_data(b), *pc = lc_tensor_data(c),
                *ps = lc_tensor_data(s);
    for (int64_t i = 0; i < n; i++) {
        ck_assert(pc[i] == pa[i] * pb[i]);
        ck_assert(fabsf(ps[i] - pa[i] / (1 + expf(-pa[i]))) <= 1e-6f);
    }
    /* broadcast a row over a big matrix */
    lc_tensor *m = noise(LC_F32, 2, SHAPE(1000, 257), 3), *row = noise(LC_F32, 1, SHAPE(257), 4);
    lc_tensor *r = lc_binary(LC_SUB, m, row);
    for (int64_t i = 0; i < 1000 * 257; i += 101)
        ck_assert(lc_tensor_get(r, i) == (float)(lc_tensor_get(m, i) - lc_tensor_get(row, i % 257)));
    lc_tensor *objs[] = {a, b, c, s, m, row, r};
    for (size_t i = 0; i < sizeof objs / sizeof *objs; i++)
        lc_tensor_free(objs[i]);
}
END_TEST

/* ---- reductions ---- */

static double all_value(lc_redop op, const lc_tensor *t, int unbiased)
{
    lc_tensor *r = lc_reduce_all(op, t, unbiased);
    ck_assert_ptr_nonnull(r);
    ck_assert_int_eq(r->ndim, 0);
    double v = lc_tensor_get(r, 0);
    lc_tensor_free(r);
    return v;
}

START_TEST(test_reduce_all_values)
{
    lc_tensor *t = seq(LC_F32, 2, SHAPE(2, 2), 1, 1); /* 1 2 3 4 */
    ck_assert_double_eq(all_value(LC_RSUM, t, 1), 10);
    ck_assert_double_eq(all_value(LC_RMEAN, t, 1), 2.5);
    ck_assert_double_eq_tol(all_value(LC_RVAR, t, 1), 5.0 / 3.0, 1e-15);
    ck_assert_double_eq(all_value(LC_RVAR, t, 0), 1.25);
    ck_assert_double_eq_tol(all_value(LC_RSTD, t, 1), sqrt(5.0 / 3.0), 1e-15);
    ck_assert_double_eq(all_value(LC_RMAX, t, 1), 4);
    ck_assert_double_eq(all_value(LC_RMIN, t, 1), 1);
    ck_assert_double_eq_tol(all_value(LC_RNORM, t, 1), sqrt(30.0), 1e-15);
    lc_tensor *r = lc_reduce_all(LC_RSUM, t, 1);
    ck_assert(r->dtype == LC_F64);
    lc_tensor_free(r);
    r = lc_reduce_all(LC_RARGMAX, t, 1);
    ck_assert(r->dtype == LC_I64);
    ck_assert_int_eq(*(int64_t *)lc_tensor_data(r), 3);
    lc_tensor_free(r);
    /* first occurrence wins; NaN propagates */
    float v[] = {3, 7, -1, 7, -1};
    lc_tensor *u = lt_tensor(1, SHAPE(5), v);
    ck_assert_double_eq(all_value(LC_RARGMAX, u, 1), 1);
    ck_assert_double_eq(all_value(LC_RARGMIN, u, 1), 2);
    lc_tensor_set(u, 3, NAN);
    ck_assert(isnan(all_value(LC_RMAX, u, 1)));
    ck_assert(isnan(all_value(LC_RMIN, u, 1)));
    ck_assert_double_eq(all_value(LC_RARGMAX, u, 1), 3);
    double val;
    ck_assert_int_eq(lc_reduce_all_value(LC_RARGMIN, u, &val), LC_OK);
    ck_assert_double_eq(val, 3);
    /* single element: unbiased variance is NaN, as torch */
    lc_tensor *one = seq(LC_F32, 1, SHAPE(1), 5, 0);
    ck_assert(isnan(all_value(LC_RVAR, one, 1)));
    ck_assert_double_eq(all_value(LC_RVAR, one, 0), 0);
    /* strided input, integer input */
    lc_tensor *m = seq(LC_I32, 2, SHAPE(3, 4), 0, 1);
    lc_tensor *col = lc_tensor_narrow(m, 1, 1, 1); /* 1 5 9 */
    ck_assert_double_eq(all_value(LC_RSUM, col, 1), 15);
    ck_assert_double_eq(all_value(LC_RMAX, col, 1), 9);
    lc_tensor *empty = lc_tensor_zeros(LC_F32, 1, SHAPE(0));
    ck_assert_double_eq(all_value(LC_RSUM, empty, 1), 0);
    ck_assert_ptr_null(lc_reduce_all(LC_RMAX, empty, 1));
    assert_err("max: cannot reduce the empty tensor [0]");
    lc_tensor *objs[] = {t, u, one, m, col, empty};
    for (size_t i = 0; i < sizeof objs / sizeof *objs; i++)
        lc_tensor_free(objs[i]);
}
END_TEST

START_TEST(test_reduce_deterministic)
{
    int64_t n = 1000000;
    lc_tensor *x = noise(LC_F32, 1, &n, 7);
    /* exact sum of integers: 0 + 1 + ... + (n-1) */
    lc_tensor *ints = seq(LC_F32, 1, &n, 0, 1);
    lc_redop ops[] = {LC_RSUM, LC_RMEAN, LC_RVAR, LC_RSTD, LC_RNORM, LC_RMAX, LC_RARGMIN};
    double one[7], two[7];
    lc_pool_init(1);
    for (int i = 0; i < 7; i++)
        one[i] = all_value(ops[i], x, 1);
    ck_assert_double_eq(all_value(LC_RSUM, ints, 1), (double)n * (n - 1) / 2);
    lc_tensor *d1 = lc_reduce_dim(LC_RSUM, x, 0, 0, 1);
    lc_pool_init(2);
    for (int i = 0; i < 7; i++)
        two[i] = all_value(ops[i], x, 1);
    lc_tensor *d2 = lc_reduce_dim(LC_RSUM, x, 0, 0, 1);
    ck_assert(memcmp(one, two, sizeof one) == 0);
    ck_assert(lc_tensor_get(d1, 0) == lc_tensor_get(d2, 0));
    /* and agrees with a plain double sum to rounding */
    double s = 0, s2 = 0;
    const float *p = lc_tensor_data(x);
    for (int64_t i = 0; i < n; i++)
        s += p[i];
    double mean = s / n;
    for (int64_t i = 0; i < n; i++)
        s2 += (p[i] - mean) * (p[i] - mean);
    ck_assert_double_eq_tol(one[0], s, 1e-9);
    ck_assert_double_eq_tol(one[2], s2 / (n - 1), 1e-12);
    lc_tensor_free(x);
    lc_tensor_free(ints);
    lc_tensor_free(d1);
    lc_tensor_free(d2);
}
END_TEST

START_TEST(test_reduce_dim)
{
    lc_tensor *t = seq(LC_F32, 2, SHAPE(2, 3), 1, 1); /* [[1 2 3] [4 5 6]] */
    lc_tensor *s0 = lc_reduce_dim(LC_RSUM, t, 0, 0, 1);
    assert_shape(s0, 1, SHAPE(3));
    ck_assert(s0->dtype == LC_F32);
    ck_assert_double_eq(lc_tensor_get(s0, 0), 5);
    ck_assert_double_eq(lc_tensor_get(s0, 2), 9);
    lc_tensor *s1 = lc_reduce_dim(LC_RMEAN, t, -1, 1, 1);
    assert_shape(s1, 2, SHAPE(2, 1));
    ck_assert_double_eq(lc_tensor_get(s1, 0), 2);
    ck_assert_double_eq(lc_tensor_get(s1, 1), 5);
    lc_tensor *v = lc_reduce_dim(LC_RVAR, t, 0, 0, 1); /* pairs 3 apart: var 4.5 */
    ck_assert_double_eq(lc_tensor_get(v, 1), 4.5);
    lc_tensor *sd = lc_reduce_dim(LC_RSTD, t, 1, 0, 0); /* {1,2,3}: biased var 2/3 */
    ck_assert_double_eq_tol(lc_tensor_get(sd, 0), sqrt(2.0 / 3.0), 1e-7);
    lc_tensor *am = lc_reduce_dim(LC_RARGMAX, t, 1, 0, 1);
    ck_assert(am->dtype == LC_I64);
    ck_assert_double_eq(lc_tensor_get(am, 1), 2);
    lc_tensor *mn = lc_reduce_dim(LC_RMIN, t, 0, 0, 1);
    ck_assert_double_eq(lc_tensor_get(mn, 2), 3);
    /* transposed input: reduce over what is now dim 0 */
    lc_tensor *tt = lc_tensor_transpose(t, 0, 1); /* [3,2] */
    lc_tensor *st = lc_reduce_dim(LC_RSUM, tt, 0, 0, 1);
    assert_shape(st, 1, SHAPE(2));
    ck_assert_double_eq(lc_tensor_get(st, 0), 6);
    ck_assert_double_eq(lc_tensor_get(st, 1), 15);
    lc_tensor *n34 = seq(LC_F32, 1, SHAPE(2), 3, 1); /* 3 4 */
    lc_tensor *nr = lc_reduce_dim(LC_RNORM, n34, 0, 0, 1);
    ck_assert_double_eq(lc_tensor_get(nr, 0), 5);
    /* a middle dim of a 3-d tensor against a loop */
    lc_tensor *x = noise(LC_F32, 3, SHAPE(5, 7, 300), 9);
    lc_tensor *mx = lc_reduce_dim(LC_RMAX, x, 1, 0, 1);
    lc_tensor *sm = lc_reduce_dim(LC_RSUM, x, 1, 0, 1);
    for (int a = 0; a < 5; a++)
        for (int c = 0; c < 300; c++) {
            double m = -INFINITY, s = 0;
            for (int b = 0; b < 7; b++) {
                double e = lc_tensor_get(x, (a * 7 + b) * 300 + c);
                m = e > m ? e : m;
                s += e;
            }
            ck_assert(lc_tensor_get(mx, a * 300 + c) == m);
            ck_assert(lc_tensor_get(sm, a * 300 + c) == (float)s);
        }
    lc_tensor *i32 = seq(LC_I32, 1, SHAPE(4), 1, 1);
    lc_tensor *is = lc_reduce_dim(LC_RSUM, i32, 0, 0, 1);
    ck_assert(is->dtype == LC_I64);
    ck_assert_double_eq(lc_tensor_get(is, 0), 10);
    ck_assert_ptr_null(lc_reduce_dim(LC_RSUM, t, 2, 0, 1));
    assert_err("sum: dimension 2 out of range for the 2-d tensor [2,3]");
    lc_tensor *objs[] = {t, s0, s1, v, sd, am, mn, tt, st, n34, nr, x, mx, sm, i32, is};
    for (size_t i = 0; i < sizeof objs / sizeof *objs; i++)
        lc_tensor_free(objs[i]);
}
END_TEST

/* ---- matmul ---- */

/* a contiguous copy of the transpose of a 2-d tensor */
static lc_tensor *transposed_copy(lc_tensor *t)
{
    lc_tensor *v = lc_tensor_transpose(t, 0, 1);
    lc_tensor *c = lc_tensor_clone(v);
    lc_tensor_free(v);
    return c;
}

/* element (i, j) of batch entry batch_a of a [.., m, k] (or 1-d [k]) times
 * entry batch_b of b [.., k, n], by a plain loop over lc_tensor_get */
static double naive_at(const lc_tensor *a, const lc_tensor *b, int64_t batch_a, int64_t batch_b,
                       int64_t i, int64_t j)
{
    int64_t m = a->ndim > 1 ? a->shape[a->ndim - 2] : 1, k = a->shape[a->ndim - 1];
    int64_t n = b->shape[b->ndim - 1];
    double s = 0;
    for (int64_t p = 0; p < k; p++)
        s += lc_tensor_get(a, (batch_a * m + i) * k + p) * lc_tensor_get(b, (batch_b * k + p) * n + j);
    return s;
}

START_TEST(test_matmul_small)
{
    float av[] = {1, 2, 3, 4, 5, 6}, bv[] = {7, 8, 9, 10, 11, 12};
    lc_tensor *a = lt_tensor(2, SHAPE(2, 3), av), *b = lt_tensor(2, SHAPE(3, 2), bv);
    lc_tensor *c = lc_matmul(a, b);
    assert_shape(c, 2, SHAPE(2, 2));
    /* [1 2 3; 4 5 6] @ [7 8; 9 10; 11 12] = [58 64; 139 154] */
    ck_assert_double_eq(lc_tensor_get(c, 0), 58);
    ck_assert_double_eq(lc_tensor_get(c, 1), 64);
    ck_assert_double_eq(lc_tensor_get(c, 2), 139);
    ck_assert_double_eq(lc_tensor_get(c, 3), 154);
    /* 1-d operands */
    lc_tensor *v3 = seq(LC_F32, 1, SHAPE(3), 1, 1); /* 1 2 3 */
    lc_tensor *dot = lc_matmul(v3, v3);
    ck_assert_int_eq(dot->ndim, 0);
    ck_assert_double_eq(lc_tensor_get(dot, 0), 14);
    lc_tensor *vm = lc_matmul(v3, b); /* [3] @ [3,2] -> [2] */
    assert_shape(vm, 1, SHAPE(2));
    ck_assert_double_eq(lc_tensor_get(vm, 0), 7 + 18 + 33);
    lc_tensor *mv = lc_matmul(a, v3); /* [2,3] @ [3] -> [2] */
    assert_shape(mv, 1, SHAPE(2));
    ck_assert_double_eq(lc_tensor_get(mv, 1), 4 + 10 + 18);
    lc_tensor *a3 = lc_tensor_unsqueeze(a, 0);
    lc_tensor *e3 = lc_tensor_expand(a3, 3, SHAPE(4, 2, 3));
    lc_tensor *bmv = lc_matmul(e3, v3); /* [4,2,3] @ [3] -> [4,2] */
    assert_shape(bmv, 2, SHAPE(4, 2));
    ck_assert_double_eq(lc_tensor_get(bmv, 7), 32);
    /* transposed operand: a^T [3,2] @ a [2,3] */
    lc_tensor *at = lc_tensor_transpose(a, 0, 1);
    lc_tensor *g = lc_matmul(at, a);
    assert_shape(g, 2, SHAPE(3, 3));
    ck_assert_double_eq(lc_tensor_get(g, 0), 1 + 16);
    ck_assert_double_eq(lc_tensor_get(g, 5), 2 * 3 + 5 * 6);
    /* f64 computes in f64 */
    lc_tensor *a64 = lc_tensor_to(a, LC_F64), *b64 = lc_tensor_to(b, LC_F64);
    lc_tensor *c64 = lc_matmul(a64, b);
    ck_assert(c64->dtype == LC_F64);
    ck_assert_double_eq(lc_tensor_get(c64, 3), 154);
    lc_tensor_free(c64);
    lc_tensor *b64t = lc_tensor_transpose(b64, 0, 1);
    c64 = lc_matmul(b64t, at); /* [2,3] @ [3,2], both strided */
    ck_assert_double_eq(lc_tensor_get(c64, 0), 7 + 18 + 33);
    ck_assert_double_eq(lc_tensor_get(c64, 3), 8 * 4 + 10 * 5 + 12 * 6);
    lc_tensor_free(b64t);
    lc_tensor *h = lc_tensor_to(a, LC_F16), *hb = lc_tensor_to(b, LC_F16);
    lc_tensor *ch = lc_matmul(h, hb);
    ck_assert(ch->dtype == LC_F16);
    ck_assert_double_eq(lc_tensor_get(ch, 3), 154);
    lc_tensor *objs[] = {a, b, c, v3, dot, vm, mv, a3, e3, bmv, at, g, a64, b64, c64, h, hb, ch};
    for (size_t i = 0; i < sizeof objs / sizeof *objs; i++)
        lc_tensor_free(objs[i]);
}
END_TEST

START_TEST(test_matmul_odd_sizes)
{
    lc_tensor *a = noise(LC_F32, 2, SHAPE(37, 53), 11), *b = noise(LC_F32, 2, SHAPE(53, 29), 12);
    lc_tensor *c = lc_matmul(a, b);
    assert_shape(c, 2, SHAPE(37, 29));
    for (int i = 0; i < 37; i++)
        for (int j = 0; j < 29; j++)
            ck_assert_double_eq_tol(lc_tensor_get(c, i * 29 + j), naive_at(a, b, 0, 0, i, j), 1e-4);
    /* both operands as transposed views of [53,37] and [29,53] copies */
    lc_tensor *at = transposed_copy(a);
    lc_tensor *bt = transposed_copy(b);
    lc_tensor *atv = lc_tensor_transpose(at, 0, 1), *btv = lc_tensor_transpose(bt, 0, 1);
    lc_tensor *c2 = lc_matmul(atv, btv);
    ck_assert_double_le(lt_max_abs_diff(c, c2), 1e-4);
    /* a narrowed operand (row stride larger than its width) */
    lc_tensor *an = lc_tensor_narrow(a, 1, 3, 40), *bn = lc_tensor_narrow(b, 0, 3, 40);
    lc_tensor *c3 = lc_matmul(an, bn);
    for (int i = 0; i < 37; i += 5)
        for (int j = 0; j < 29; j += 3) {
            double s = 0;
            for (int p = 0; p < 40; p++)
                s += lc_tensor_get(a, i * 53 + p + 3) * lc_tensor_get(b, (p + 3) * 29 + j);
            ck_assert_double_eq_tol(lc_tensor_get(c3, i * 29 + j), s, 1e-4);
        }
    lc_tensor *objs[] = {a, b, c, at, bt, atv, btv, c2, an, bn, c3};
    for (size_t i = 0; i < sizeof objs / sizeof *objs; i++)
        lc_tensor_free(objs[i]);
}
END_TEST

START_TEST(test_matmul_batched)
{
    /* [2,1,4,5] @ [3,5,6] -> [2,3,4,6] */
    lc_tensor *a = noise(LC_F32, 4, SHAPE(2, 1, 4, 5), 21), *b = noise(LC_F32, 3, SHAPE(3, 5, 6), 22);
    lc_tensor *c = lc_matmul(a, b);
    ck_assert_ptr_nonnull(c);
    assert_shape(c, 4, SHAPE(2, 3, 4, 6));
    for (int x = 0; x < 2; x++)
        for (int y = 0; y < 3; y++)
            for (int i = 0; i < 4; i++)
                for (int j = 0; j < 6; j++)
                    ck_assert_double_eq_tol(lc_tensor_get(c, ((x * 3 + y) * 4 + i) * 6 + j),
                                            naive_at(a, b, x, y, i, j), 1e-5);
    /* a shared right operand folds the batch: [3,7,5] @ [5,6] */
    lc_tensor *a2 = noise(LC_F32, 3, SHAPE(3, 7, 5), 23), *w = noise(LC_F32, 2, SHAPE(5, 6), 24);
    lc_tensor *c2 = lc_matmul(a2, w);
    assert_shape(c2, 3, SHAPE(3, 7, 6));
    for (int x = 0; x < 3; x++)
        for (int i = 0; i < 7; i++)
            for (int j = 0; j < 6; j++)
                ck_assert_double_eq_tol(lc_tensor_get(c2, (x * 7 + i) * 6 + j),
                                        naive_at(a2, w, x, 0, i, j), 1e-5);
    /* [5] @ [3,5,6] -> [3,6] */
    lc_tensor *v = noise(LC_F32, 1, SHAPE(5), 25);
    lc_tensor *c3 = lc_matmul(v, b);
    assert_shape(c3, 2, SHAPE(3, 6));
    ck_assert_double_eq_tol(lc_tensor_get(c3, 6 + 2), naive_at(v, b, 0, 1, 0, 2), 1e-5);
    /* f64 batched against the f32 result */
    lc_tensor *a64 = lc_tensor_to(a, LC_F64);
    lc_tensor *c64 = lc_matmul(a64, b);
    assert_shape(c64, 4, SHAPE(2, 3, 4, 6));
    ck_assert_double_le(lt_max_abs_diff(c64, c), 1e-5);
    /* many small slices run one per task: same bits for 1 and 2 threads */
    lc_tensor *q = noise(LC_F32, 3, SHAPE(8, 16, 32), 26), *kk = noise(LC_F32, 3, SHAPE(8, 32, 17), 27);
    lc_pool_init(1);
    lc_tensor *s1 = lc_matmul(q, kk);
    lc_pool_init(2);
    lc_tensor *s2 = lc_matmul(q, kk);
    ck_assert(memcmp(lc_tensor_data(s1), lc_tensor_data(s2), lc_tensor_nbytes(s1)) == 0);
    ck_assert_double_eq_tol(lc_tensor_get(s2, (5 * 16 + 3) * 17 + 11), naive_at(q, kk, 5, 5, 3, 11), 1e-5);
    lc_tensor *objs[] = {a, b, c, a2, w, c2, v, c3, a64, c64, q, kk, s1, s2};
    for (size_t i = 0; i < sizeof objs / sizeof *objs; i++)
        lc_tensor_free(objs[i]);
}
END_TEST

START_TEST(test_matmul_errors)
{
    lc_tensor *a = lc_tensor_zeros(LC_F32, 2, SHAPE(2, 3)), *b = lc_tensor_zeros(LC_F32, 2, SHAPE(4, 5));
    ck_assert_ptr_null(lc_matmul(a, b));
    assert_err("matmul: [2,3] @ [4,5]: inner sizes 3 and 4 differ");
    lc_tensor *x = lc_tensor_zeros(LC_F32, 3, SHAPE(2, 3, 4)), *y = lc_tensor_zeros(LC_F32, 3, SHAPE(5, 4, 6));
    ck_assert_ptr_null(lc_matmul(x, y));
    assert_err("matmul: [2,3,4] @ [5,4,6]: batch dimensions [2] and [5] cannot broadcast");
    lc_tensor *s = lc_tensor_scalar_f32(1);
    ck_assert_ptr_null(lc_matmul(s, a));
    lc_tensor *v = lc_tensor_zeros(LC_F32, 1, SHAPE(4));
    ck_assert_ptr_null(lc_matmul(a, v));
    assert_err("matmul: [2,3] @ [4]: inner sizes 3 and 4 differ");
    /* linear */
    ck_assert_ptr_null(lc_linear(a, b, NULL));
    assert_err("linear: input [2,3] has 3 features but weight [4,5] expects 5");
    lc_tensor *w = lc_tensor_zeros(LC_F32, 2, SHAPE(4, 3)), *b5 = lc_tensor_zeros(LC_F32, 1, SHAPE(5));
    ck_assert_ptr_null(lc_linear(a, w, b5));
    assert_err("linear: bias [5] does not match weight [4,3] (expected [4])");
    lc_tensor *objs[] = {a, b, x, y, s, v, w, b5};
    for (size_t i = 0; i < sizeof objs / sizeof *objs; i++)
        lc_tensor_free(objs[i]);
}
END_TEST

START_TEST(test_linear)
{
    lc_tensor *x = noise(LC_F32, 3, SHAPE(2, 5, 11), 31), *w = noise(LC_F32, 2, SHAPE(7, 11), 32);
    lc_tensor *bias = noise(LC_F32, 1, SHAPE(7), 33);
    lc_tensor *y = lc_linear(x, w, bias), *y0 = lc_linear(x, w, NULL);
    assert_shape(y, 3, SHAPE(2, 5, 7));
    for (int r = 0; r < 10; r++)
        for (int o = 0; o < 7; o++) {
            double s = 0;
            for (int i = 0; i < 11; i++)
                s += lc_tensor_get(x, r * 11 + i) * lc_tensor_get(w, o * 11 + i);
            ck_assert_double_eq_tol(lc_tensor_get(y0, r * 7 + o), s, 1e-5);
            ck_assert_double_eq_tol(lc_tensor_get(y, r * 7 + o), s + lc_tensor_get(bias, o), 1e-5);
        }
    /* a transposed weight view and an f16 weight give the same */
    lc_tensor *wt = transposed_copy(w); /* [11,7] */
    lc_tensor *wv = lc_tensor_transpose(wt, 0, 1);
    lc_tensor *y2 = lc_linear(x, wv, bias);
    ck_assert_double_le(lt_max_abs_diff(y, y2), 1e-5);
    lc_tensor *wh = lc_tensor_to(w, LC_F16);
    lc_tensor *y3 = lc_linear(x, wh, bias);
    ck_assert(y3->dtype == LC_F32);
    ck_assert_double_le(lt_max_abs_diff(y, y3), 1e-2);
    lc_tensor *x64 = lc_tensor_to(x, LC_F64);
    lc_tensor *y4 = lc_linear(x64, w, bias);
    ck_assert(y4->dtype == LC_F64);
    ck_assert_double_le(lt_max_abs_diff(y, y4), 1e-5);
    /* 1-d input */
    lc_tensor *x1 = lc_tensor_select(x, 0, 1), *x11 = lc_tensor_select(x1, 0, 2);
    lc_tensor *y5 = lc_linear(x11, w, NULL);
    assert_shape(y5, 1, SHAPE(7));
    ck_assert_double_eq(lc_tensor_get(y5, 3), lc_tensor_get(y0, (5 + 2) * 7 + 3));
    lc_tensor *objs[] = {x, w, bias, y, y0, wt, wv, y2, wh, y3, x64, y4, x1, x11, y5};
    for (size_t i = 0; i < sizeof objs / sizeof *objs; i++)
        lc_tensor_free(objs[i]);
}
END_TEST

/* y += x w^T + b in place, against y + lc_linear (the same products, the
 * residual added in another order), for f32 and f16 weights and a size
 * past one k block; the same bits on 1 and 2 threads; bad outputs refused */
START_TEST(test_linear_add)
{
    const int64_t dims[][3] = {{2, 5, 11}, {3, 70, 300}};
    for (int c = 0; c < 2; c++) {
        const int64_t *d = dims[c];
        int64_t nout = 7 + 30 * c;
        lc_tensor *x = noise(LC_F32, 3, d, 41), *w32 = noise(LC_F32, 2, SHAPE(nout, d[2]), 42);
        lc_tensor *bias = noise(LC_F32, 1, SHAPE(nout), 43);
        lc_tensor *r = noise(LC_F32, 3, SHAPE(d[0], d[1], nout), 44);
        for (int half = 0; half < 2; half++) {
            lc_tensor *w = half ? lc_tensor_to(w32, LC_F16) : lc_tensor_clone(w32);
            lc_tensor *want = lc_linear(x, w, c ? bias : NULL);
            ck_assert_int_eq(lc_binary_(LC_ADD, want, r), LC_OK);
            lc_tensor *y1 = lc_tensor_clone(r), *y2 = lc_tensor_clone(r);
            lc_pool_init(1);
            ck_assert_int_eq(lc_linear_add_(y1, x, w, c ? bias : NULL), LC_OK);
            lc_pool_init(2);
            ck_assert_int_eq(lc_linear_add_(y2, x, w, c ? bias : NULL), LC_OK);
            ck_assert_double_le(lt_max_abs_diff(y1, want), 1e-5 * (double)d[2]);
            ck_assert_double_eq(lt_max_abs_diff(y1, y2), 0);
            lc_tensor_free(w), lc_tensor_free(want), lc_tensor_free(y1), lc_tensor_free(y2);
        }
        lc_tensor_free(x), lc_tensor_free(w32), lc_tensor_free(bias), lc_tensor_free(r);
    }
    lc_tensor *x = noise(LC_F32, 2, SHAPE(4, 6), 45), *w = noise(LC_F32, 2, SHAPE(3, 6), 46);
    lc_tensor *yt = lc_tensor_zeros(LC_F32, 2, SHAPE(3, 4)), *yv = lc_tensor_transpose(yt, 0, 1);
    ck_assert_int_eq(lc_linear_add_(yv, x, w, NULL), LC_ERR);
    assert_err("linear_add: output [4,3] must be contiguous f32 shaped as input [4,6] with 3 "
               "features");
    lc_tensor *y5 = lc_tensor_zeros(LC_F32, 2, SHAPE(4, 5));
    ck_assert_int_eq(lc_linear_add_(y5, x, w, NULL), LC_ERR);
    lc_tensor *w7 = noise(LC_F32, 2, SHAPE(3, 7), 47);
    ck_assert_int_eq(lc_linear_add_(yt, x, w7, NULL), LC_ERR);
    assert_err("linear_add: input [4,6] and weight [3,7] do not match (weight [out, in])");
    /* x += x w^T would read x while writing it */
    lc_tensor *sq = noise(LC_F32, 2, SHAPE(4, 6), 48), *w6 = noise(LC_F32, 2, SHAPE(6, 6), 49);
    ck_assert_int_eq(lc_linear_add_(sq, sq, w6, NULL), LC_ERR);
    assert_err("linear_add: output [4,6] shares its storage with input [4,6]");
    lc_tensor *objs[] = {x, w, yt, yv, y5, w7, sq, w6};
    for (size_t i = 0; i < sizeof objs / sizeof *objs; i++)
        lc_tensor_free(objs[i]);
}
END_TEST

/* ---- shape ops ---- */

START_TEST(test_cat_stack_split)
{
    lc_tensor *a = seq(LC_F32, 2, SHAPE(2, 2), 0, 1), *b = seq(LC_F32, 2, SHAPE(2, 3), 10, 1);
    lc_tensor *ab[] = {a, b};
    lc_tensor *c = lc_cat(ab, 2, 1);
    assert_shape(c, 2, SHAPE(2, 5));
    float want[] = {0, 1, 10, 11, 12, 2, 3, 13, 14, 15};
    for (int i = 0; i < 10; i++)
        ck_assert_double_eq(lc_tensor_get(c, i), want[i]);
    ck_assert_ptr_null(lc_cat(ab, 2, 0));
    assert_err("cat: tensor 2 has shape [2,3], which does not match [2,2] outside the joined "
               "dimension");
    lc_tensor *bt = lc_tensor_transpose(b, 0, 1); /* [3,2], strided */
    lc_tensor *d64 = lc_tensor_to(a, LC_F64);
    lc_tensor *l2[] = {d64, bt};
    lc_tensor *c0 = lc_cat(l2, 2, 0);
    assert_shape(c0, 2, SHAPE(5, 2));
    ck_assert(c0->dtype == LC_F64);
    ck_assert_double_eq(lc_tensor_get(c0, 4), 10);
    ck_assert_double_eq(lc_tensor_get(c0, 5), 13);
    lc_tensor *aa[] = {a, a, a};
    lc_tensor *s = lc_stack(aa, 3, 1);
    assert_shape(s, 3, SHAPE(2, 3, 2));
    ck_assert_double_eq(lc_tensor_get(s, 2 * 3 + 2 * 2 + 1), 3);
    lc_tensor *s2 = lc_stack(aa, 3, -1);
    assert_shape(s2, 3, SHAPE(2, 2, 3));
    int n = 0;
    lc_tensor **parts = lc_split(c, 2, 1, &n);
    ck_assert_int_eq(n, 3);
    assert_shape(parts[2], 2, SHAPE(2, 1));
    ck_assert_double_eq(lc_tensor_get(parts[1], 1), 11);
    ck_assert_double_eq(lc_tensor_get(parts[2], 1), 15);
    for (int i = 0; i < n; i++)
        lc_tensor_free(parts[i]);
    free(parts);
    ck_assert_ptr_null(lc_split(c, 0, 1, &n));
    lc_tensor *objs[] = {a, b, c, bt, d64, c0, s, s2};
    for (size_t i = 0; i < sizeof objs / sizeof *objs; i++)
        lc_tensor_free(objs[i]);
}
END_TEST

START_TEST(test_repeat_flip_ranges)
{
    lc_tensor *a = seq(LC_F32, 2, SHAPE(2, 2), 1, 1); /* [[1 2] [3 4]] */
    lc_tensor *r = lc_repeat(a, 3, SHAPE(2, 1, 2));
    assert_shape(r, 3, SHAPE(2, 2, 4));
    float want[] = {1, 2, 1, 2, 3, 4, 3, 4};
    for (int i = 0; i < 16; i++)
        ck_assert_double_eq(lc_tensor_get(r, i), want[i % 8]);
    ck_assert_ptr_null(lc_repeat(a, 1, SHAPE(2)));
    lc_tensor *f = lc_flip(a, 1);
    ck_assert_double_eq(lc_tensor_get(f, 0), 2);
    ck_assert_double_eq(lc_tensor_get(f, 3), 3);
    lc_tensor *f0 = lc_flip(a, -2);
    ck_assert_double_eq(lc_tensor_get(f0, 0), 3);
    lc_tensor *ar = lc_arange(0, 10, 3, LC_I64);
    assert_shape(ar, 1, SHAPE(4));
    ck_assert_double_eq(lc_tensor_get(ar, 3), 9);
    lc_tensor *ad = lc_arange(1, 0, -0.25, LC_F32);
    assert_shape(ad, 1, SHAPE(4));
    ck_assert_double_eq(lc_tensor_get(ad, 3), 0.25);
    ck_assert_ptr_null(lc_arange(0, 1, 0, LC_F32));
    lc_tensor *ls = lc_linspace(0, 1, 5, LC_F32);
    for (int i = 0; i < 5; i++)
        ck_assert_double_eq(lc_tensor_get(ls, i), i * 0.25);
    lc_tensor *l1 = lc_linspace(3, 7, 1, LC_F64);
    ck_assert_double_eq(lc_tensor_get(l1, 0), 3);
    lc_tensor *lt = lc_linspace(0, 999, 7, LC_F64); /* both ends exact */
    ck_assert_double_eq(lc_tensor_get(lt, 6), 999);
    ck_assert_double_eq(lc_tensor_get(lt, 3), 499.5);
    lc_tensor *objs[] = {a, r, f, f0, ar, ad, ls, l1, lt};
    for (size_t i = 0; i < sizeof objs / sizeof *objs; i++)
        lc_tensor_free(objs[i]);
}
END_TEST

/* Threads do not survive the fork into each test, so the pool starts in
 * the test's process (a checked fixture) and never in the parent, whose
 * workers the child could neither use nor join. */
static void pool_setup(void)
{
    lc_pool_init(2);
}

static int run_suite(Suite *s)
{
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

int main(void)
{
    Suite *s = suite_create("ops");
    TCase *tc = tcase_create("elementwise");
    tcase_add_test(tc, test_broadcast_add);
    tcase_add_test(tc, test_broadcast_error);
    tcase_add_test(tc, test_strided_inputs);
    tcase_add_test(tc, test_dtype_promotion);
    tcase_add_test(tc, test_integer_ops);
    tcase_add_test(tc, test_comparisons);
    tcase_add_test(tc, test_unary_values);
    tcase_add_test(tc, test_unary_accuracy);
    tcase_add_test(tc, test_binary_values);
    tcase_add_test(tc, test_large_elementwise);
    tcase_set_timeout(tc, 60);
    tcase_add_checked_fixture(tc, pool_setup, NULL);
    suite_add_tcase(s, tc);
    tc = tcase_create("reduce");
    tcase_add_test(tc, test_reduce_all_values);
    tcase_add_test(tc, test_reduce_deterministic);
    tcase_add_test(tc, test_reduce_dim);
    tcase_set_timeout(tc, 60);
    tcase_add_checked_fixture(tc, pool_setup, NULL);
    suite_add_tcase(s, tc);
    tc = tcase_create("matmul");
    tcase_add_test(tc, test_matmul_small);
    tcase_add_test(tc, test_matmul_odd_sizes);
    tcase_add_test(tc, test_matmul_batched);
    tcase_add_test(tc, test_matmul_errors);
    tcase_add_test(tc, test_linear);
    tcase_add_test(tc, test_linear_add);
    tcase_add_checked_fixture(tc, pool_setup, NULL);
    suite_add_tcase(s, tc);
    tc = tcase_create("shape");
    tcase_add_test(tc, test_cat_stack_split);
    tcase_add_test(tc, test_repeat_flip_ranges);
    tcase_add_checked_fixture(tc, pool_setup, NULL);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
