/* Neural-network ops against naive reference code (double accumulation) and
 * values worked out by hand from torch's formulas. */
#include "testutil.h"

#include "ops/ops.h"

/* deterministic test data in [-1, 1) */
static uint64_t rng_state = 88172645463325252ull;
static float frand(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (float)((double)(rng_state >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

static lc_tensor *rand_tensor(int ndim, const int64_t *shape)
{
    lc_tensor *t = lc_tensor_new(LC_F32, ndim, shape);
    ck_assert_ptr_nonnull(t);
    float *p = lc_tensor_data(t);
    for (int64_t i = 0; i < lc_tensor_numel(t); i++)
        p[i] = frand();
    return t;
}

#define T4(a, b, c, d) ((const int64_t[]){a, b, c, d})

static float *fdata(const lc_tensor *t)
{
    return lc_tensor_data(t);
}

static void assert_close(const lc_tensor *got, const lc_tensor *want, double tol, const char *what)
{
    double d = lt_max_abs_diff(got, want);
    ck_assert_msg(d <= tol, "%s: max difference %g (tolerance %g)", what, d, tol);
}

static void assert_vals(const lc_tensor *t, const double *want, int64_t n, double tol,
                        const char *what)
{
    ck_assert_int_eq(lc_tensor_numel(t), n);
    for (int64_t i = 0; i < n; i++)
        ck_assert_msg(fabs(lc_tensor_get(t, i) - want[i]) <= tol, "%s[%lld]: %.9g, want %.9g",
                      what, (long long)i, lc_tensor_get(t, i), want[i]);
}

/* ---- conv2d ---- */

static lc_tensor *naive_conv(const lc_tensor *x, const lc_tensor *w, const lc_tensor *b,
                             const lc_conv2d_params *p)
{
    int64_t N = x->shape[0], Cin = x->shape[1], H = x->shape[2], W = x->shape[3];
    int64_t Cout = w->shape[0], Cg = w->shape[1], kh = w->shape[2], kw = w->shape[3];
    int64_t Og = Cout / p->groups;
    int64_t OH = (H + 2 * p->padding[0] - p->dilation[0] * (kh - 1) - 1) / p->stride[0] + 1;
    int64_t OW = (W + 2 * p->padding[1] - p->dilation[1] * (kw - 1) - 1) / p->stride[1] + 1;
    lc_tensor *y = lc_tensor_zeros(LC_F32, 4, T4(N, Cout, OH, OW));
    const float *xp = fdata(x), *wp = fdata(w);
    float *yp = fdata(y);
    for (int64_t n = 0; n < N; n++)
        for (int64_t o = 0; o < Cout; o++)
            for (int64_t oy = 0; oy < OH; oy++)
                for (int64_t ox = 0; ox < OW; ox++) {
                    double acc = b ? fdata(b)[o] : 0;
                    int64_t g = o / Og;
                    for (int64_t c = 0; c < Cg; c++)
                        for (int64_t i = 0; i < kh; i++)
                            for (int64_t j = 0; j < kw; j++) {
                                int64_t iy = oy * p->stride[0] - p->padding[0] + i * p->dilation[0];
                                int64_t ix = ox * p->stride[1] - p->padding[1] + j * p->dilation[1];
                                if (iy < 0 || iy >= H || ix < 0 || ix >= W)
                                    continue;
                                acc += (double)xp[((n * Cin + g * Cg + c) * H + iy) * W + ix] *
                                       wp[((o * Cg + c) * kh + i) * kw + j];
                            }
                    yp[((n * Cout + o) * OH + oy) * OW + ox] = (float)acc;
                }
    return y;
}

START_TEST(test_conv_hand)
{
    /* x = 1..9 in a 3x3; the kernel adds a pixel and its lower-right
     * neighbour */
    float xv[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9}, wv[4] = {1, 0, 0, 1}, bv[1] = {0.5f};
    lc_tensor *x = lt_tensor(4, T4(1, 1, 3, 3), xv), *w = lt_tensor(4, T4(1, 1, 2, 2), wv);
    lc_tensor *b = lt_tensor(1, (int64_t[]){1}, bv);
    lc_conv2d_params p = {{1, 1}, {0, 0}, {1, 1}, 1};
    lc_tensor *y = lc_conv2d(x, w, b, &p);
    ck_assert_ptr_nonnull(y);
    ck_assert_int_eq(y->shape[2], 2);
    ck_assert_int_eq(y->shape[3], 2);
    assert_vals(y, (double[]){6.5, 8.5, 12.5, 14.5}, 4, 0, "conv 2x2");
    lc_tensor_free(y);
    /* padding 1, stride 2: windows at padded (0,0),(0,2),(2,0),(2,2) */
    lc_conv2d_params p2 = {{2, 2}, {1, 1}, {1, 1}, 1};
    y = lc_conv2d(x, w, NULL, &p2);
    ck_assert_ptr_nonnull(y);
    assert_vals(y, (double[]){1, 3, 7, 14}, 4, 0, "conv stride 2 pad 1");
    lc_tensor_free(y);
    /* unbatched [C,H,W] input gives a [Cout,OH,OW] output */
    lc_tensor *x3 = lc_tensor_view(x, 3, (int64_t[]){1, 3, 3});
    y = lc_conv2d(x3, w, b, NULL);
    ck_assert_ptr_nonnull(y);
    ck_assert_int_eq(y->ndim, 3);
    assert_vals(y, (double[]){6.5, 8.5, 12.5, 14.5}, 4, 0, "conv unbatched");
    lc_tensor_free(y);
    lc_tensor_free(x3);
    lc_tensor_free(x);
    lc_tensor_free(w);
    lc_tensor_free(b);
}
END_TEST

typedef struct {
    int64_t N, Cin, H, W, Cout, kh, kw;
    lc_conv2d_params p;
    int bias;
} conv_case;

static const conv_case conv_cases[] = {
    {2, 3, 7, 9, 4, 3, 3, {{1, 1}, {1, 1}, {1, 1}, 1}, 1},  /* plain 3x3 "same" */
    {1, 4, 11, 10, 6, 3, 3, {{2, 2}, {1, 1}, {1, 1}, 2}, 0}, /* stride 2, groups 2 */
    {1, 5, 9, 13, 5, 3, 3, {{1, 1}, {2, 2}, {2, 2}, 5}, 1}, /* depthwise, dilation 2 */
    {2, 6, 5, 7, 8, 1, 1, {{1, 1}, {0, 0}, {1, 1}, 1}, 1},  /* 1x1: direct GEMM */
    {1, 6, 5, 7, 4, 1, 1, {{1, 1}, {0, 0}, {1, 1}, 2}, 1},  /* 1x1 direct, groups 2 */
    {1, 4, 9, 7, 3, 1, 1, {{2, 2}, {0, 0}, {1, 1}, 1}, 0},  /* 1x1 stride 2 */
    {1, 4, 5, 5, 3, 1, 1, {{1, 1}, {1, 1}, {1, 1}, 1}, 1},  /* 1x1 padded */
    {1, 3, 8, 9, 2, 2, 5, {{2, 1}, {1, 2}, {1, 2}, 1}, 1},  /* non-square, mixed params */
    {2, 2, 6, 4, 3, 4, 1, {{1, 3}, {2, 0}, {2, 1}, 1}, 0},  /* tall kernel */
    {1, 1, 1, 1, 2, 3, 3, {{1, 1}, {1, 1}, {1, 1}, 1}, 1},  /* 1x1 image, all padding */
};

START_TEST(test_conv_vs_naive)
{
    for (size_t i = 0; i < sizeof conv_cases / sizeof *conv_cases; i++) {
        const conv_case *c = &conv_cases[i];
        lc_tensor *x = rand_tensor(4, T4(c->N, c->Cin, c->H, c->W));
        lc_tensor *w = rand_tensor(4, T4(c->Cout, c->Cin / c->p.groups, c->kh, c->kw));
        lc_tensor *b = c->bias ? rand_tensor(1, (int64_t[]){c->Cout}) : NULL;
        lc_tensor *y = lc_conv2d(x, w, b, &c->p), *want = naive_conv(x, w, b, &c->p);
        ck_assert_msg(y != NULL, "case %zu: %s", i, lc_errmsg());
        char what[32];
        snprintf(what, sizeof what, "conv case %zu", i);
        assert_close(y, want, 1e-5, what);
        lc_tensor_free(x);
        lc_tensor_free(w);
        lc_tensor_free(b);
        lc_tensor_free(y);
        lc_tensor_free(want);
    }
}
END_TEST

START_TEST(test_conv_large_and_strided)
{
    /* K * pixels = 144 * 65536 > the column budget: several slabs */
    lc_tensor *x = rand_tensor(4, T4(1, 16, 256, 256)), *w = rand_tensor(4, T4(4, 16, 3, 3));
    lc_conv2d_params p = {{1, 1}, {1, 1}, {1, 1}, 1};
    lc_tensor *y = lc_conv2d(x, w, NULL, &p), *want = naive_conv(x, w, NULL, &p);
    ck_assert_ptr_nonnull(y);
    assert_close(y, want, 1e-4, "conv over several slabs");
    lc_tensor_free(y);
    lc_tensor_free(want);
    /* a strided f16 view as input: converted, same result as its f32 copy */
    lc_tensor *xs = rand_tensor(4, T4(1, 3, 6, 10));
    lc_tensor *v = lc_tensor_narrow(xs, 3, 2, 5), *vh = lc_tensor_to(v, LC_F16);
    lc_tensor *vf = lc_tensor_to(vh, LC_F32);
    lc_tensor *w2 = rand_tensor(4, T4(2, 3, 3, 3));
    y = lc_conv2d(vh, w2, NULL, &p);
    want = naive_conv(vf, w2, NULL, &p);
    ck_assert_ptr_nonnull(y);
    assert_close(y, want, 1e-5, "conv of a converted view");
    lc_tensor_free(y);
    lc_tensor_free(want);
    lc_tensor_free(v);
    lc_tensor_free(vh);
    lc_tensor_free(vf);
    lc_tensor_free(w2);
    lc_tensor_free(xs);
    lc_tensor_free(x);
    lc_tensor_free(w);
}
END_TEST

/* the upsampler's 3x3 conv of a nearest-2x upsampled input against the
 * naive conv of the upsampled tensor (odd sizes; f16 weights, f32 for the
 * fourth and the last): the first four are small enough to go through
 * upsample + conv, the rest by phases (see up2_pays) */
START_TEST(test_conv_up2)
{
    const int64_t dims[][4] = {{2, 3, 5, 7},   {1, 5, 1, 4},   {1, 2, 6, 1},  {1, 3, 4, 4},
                               {1, 17, 9, 11}, {2, 4, 12, 10}, {1, 6, 16, 5}, {2, 3, 11, 13}};
    int ndims = (int)(sizeof dims / sizeof dims[0]);
    for (int c = 0; c < ndims; c++) {
        const int64_t *d = dims[c];
        int64_t cout = c % 4 + 2;
        int half = c != 3 && c != ndims - 1;
        lc_tensor *x = rand_tensor(4, d), *w = rand_tensor(4, T4(cout, d[1], 3, 3));
        lc_tensor *b = rand_tensor(1, (const int64_t[]){cout});
        lc_tensor *wg = half ? lc_tensor_to(w, LC_F16) : lc_tensor_contiguous(w);
        lc_tensor *wgf = lc_tensor_to(wg, LC_F32);
        lc_tensor *u = lc_resize(x, 2 * d[2], 2 * d[3], LC_RESIZE_NEAREST, 0);
        ck_assert(wg && wgf && u);
        lc_conv2d_params p = {{1, 1}, {1, 1}, {1, 1}, 1};
        lc_tensor *want = naive_conv(u, wgf, c % 3 ? b : NULL, &p);
        lc_tensor *got = lc_conv2d_up2(x, wg, c % 3 ? b : NULL);
        ck_assert_ptr_nonnull(got);
        ck_assert_int_eq(got->shape[0], d[0]);
        ck_assert_int_eq(got->shape[1], cout);
        ck_assert_int_eq(got->shape[2], 2 * d[2]);
        ck_assert_int_eq(got->shape[3], 2 * d[3]);
        assert_close(got, want, 1e-4 * (double)d[1], "conv2d_up2");
        lc_tensor_free(x), lc_tensor_free(w), lc_tensor_free(b), lc_tensor_free(wg);
        lc_tensor_free(wgf), lc_tensor_free(u), lc_tensor_free(want), lc_tensor_free(got);
    }
    lc_tensor *x = rand_tensor(4, T4(1, 3, 4, 4)), *w5 = rand_tensor(4, T4(2, 3, 5, 5));
    ck_assert_ptr_null(lc_conv2d_up2(x, w5, NULL));
    /* a bias of the wrong length is refused on both paths (small, phases) */
    lc_tensor *xb = rand_tensor(4, T4(1, 3, 12, 12)), *w3 = rand_tensor(4, T4(4, 3, 3, 3));
    lc_tensor *b3 = rand_tensor(1, (const int64_t[]){3});
    ck_assert_ptr_null(lc_conv2d_up2(x, w3, b3));
    ck_assert_ptr_null(lc_conv2d_up2(xb, w3, b3));
    ck_assert_ptr_nonnull(strstr(lc_errmsg(), "bias [3] must be [4]"));
    lc_tensor_free(x), lc_tensor_free(w5), lc_tensor_free(xb), lc_tensor_free(w3);
    lc_tensor_free(b3);
}
END_TEST

START_TEST(test_conv_errors)
{
    lc_tensor *x = lc_tensor_zeros(LC_F32, 4, T4(1, 3, 8, 8));
    lc_tensor *w = lc_tensor_zeros(LC_F32, 4, T4(16, 4, 3, 3));
    lc_conv2d_params p = {{1, 1}, {0, 0}, {1, 1}, 1};
    ck_assert_ptr_null(lc_conv2d(x, w, NULL, &p));
    ck_assert_str_eq(lc_errmsg(),
                     "conv2d: input [1,3,8,8] has 3 channels but weight [16,4,3,3] expects 4 "
                     "(groups 1)");
    lc_tensor *w3 = lc_tensor_zeros(LC_F32, 4, T4(16, 3, 3, 3));
    lc_tensor *b = lc_tensor_zeros(LC_F32, 1, (int64_t[]){15});
    ck_assert_ptr_null(lc_conv2d(x, w3, b, &p));
    ck_assert_ptr_nonnull(strstr(lc_errmsg(), "bias [15]"));
    lc_conv2d_params big = {{1, 1}, {0, 0}, {5, 5}, 1};
    ck_assert_ptr_null(lc_conv2d(x, w3, NULL, &big));
    ck_assert_ptr_nonnull(strstr(lc_errmsg(), "larger than input"));
    lc_conv2d_params g = {{1, 1}, {0, 0}, {1, 1}, 3};
    lc_tensor *w5 = lc_tensor_zeros(LC_F32, 4, T4(5, 1, 3, 3));
    ck_assert_ptr_null(lc_conv2d(x, w5, NULL, &g));
    ck_assert_ptr_nonnull(strstr(lc_errmsg(), "not divisible by groups 3"));
    lc_conv2d_params s0 = {{0, 1}, {0, 0}, {1, 1}, 1};
    ck_assert_ptr_null(lc_conv2d(x, w3, NULL, &s0));
    ck_assert_ptr_null(lc_conv2d(w3, x, NULL, &p)); /* swapped: channel mismatch */
    lc_tensor *x2 = lc_tensor_zeros(LC_F32, 2, (int64_t[]){8, 8});
    ck_assert_ptr_null(lc_conv2d(x2, w3, NULL, &p));
    ck_assert_ptr_nonnull(strstr(lc_errmsg(), "must be 4-d"));
    lc_tensor_free(x);
    lc_tensor_free(x2);
    lc_tensor_free(w);
    lc_tensor_free(w3);
    lc_tensor_free(w5);
    lc_tensor_free(b);
}
END_TEST

/* ---- normalisation ---- */

START_TEST(test_group_norm_hand)
{
    /* x [1,4,1,2], 2 groups: group 0 = {1,2,3,4} (mean 2.5, biased var
     * 1.25), group 1 = {2,2,2,6} (mean 3, var 3) */
    float xv[8] = {1, 2, 3, 4, 2, 2, 2, 6}, gv[4] = {1, 2, 1, 1}, bv[4] = {0, 0, 1, -1};
    lc_tensor *x = lt_tensor(4, T4(1, 4, 1, 2), xv);
    lc_tensor *g = lt_tensor(1, (int64_t[]){4}, gv), *b = lt_tensor(1, (int64_t[]){4}, bv);
    lc_tensor *y = lc_group_norm(x, 2, g, b, 0.0);
    ck_assert_ptr_nonnull(y);
    double s0 = sqrt(1.25), s1 = sqrt(3.0);
    double want[8] = {-1.5 / s0, -0.5 / s0, 2 * 0.5 / s0, 2 * 1.5 / s0,
                      -1 / s1 + 1, -1 / s1 + 1, -1 / s1 - 1, 3 / s1 - 1};
    assert_vals(y, want, 8, 1e-6, "group_norm affine");
    lc_tensor_free(y);
    /* eps sits inside the square root */
    y = lc_group_norm(x, 2, NULL, NULL, 0.75);
    ck_assert_ptr_nonnull(y);
    ck_assert(fabs(lc_tensor_get(y, 0) - (-1.5 / sqrt(1.25 + 0.75))) < 1e-6);
    lc_tensor_free(y);
    ck_assert_ptr_null(lc_group_norm(x, 3, NULL, NULL, 1e-5));
    ck_assert_ptr_nonnull(strstr(lc_errmsg(), "not divisible into 3 groups"));
    lc_tensor *b8 = lc_tensor_view(x, 1, (int64_t[]){8});
    ck_assert_ptr_null(lc_group_norm(x, 2, b, b8, 1e-5));
    ck_assert_ptr_nonnull(strstr(lc_errmsg(), "group_norm: bias [8] must be [4]"));
    lc_tensor_free(b8);
    lc_tensor_free(x);
    lc_tensor_free(g);
    lc_tensor_free(b);
}
END_TEST

START_TEST(test_group_norm_moments)
{
    lc_tensor *x = rand_tensor(4, T4(2, 6, 5, 3));
    /* a large common offset must not hurt the variance */
    float *p = fdata(x);
    for (int64_t i = 0; i < lc_tensor_numel(x); i++)
        p[i] = p[i] * 3 + 1000;
    lc_tensor *y = lc_group_norm(x, 3, NULL, NULL, 0.0);
    ck_assert_ptr_nonnull(y);
    const float *q = fdata(y);
    for (int ng = 0; ng < 6; ng++) {
        double s = 0, ss = 0;
        for (int i = 0; i < 30; i++)
            s += q[ng * 30 + i];
        for (int i = 0; i < 30; i++)
            ss += (q[ng * 30 + i] - s / 30) * (q[ng * 30 + i] - s / 30);
        ck_assert_msg(fabs(s / 30) < 1e-4, "group %d mean %g", ng, s / 30);
        ck_assert_msg(fabs(ss / 30 - 1) < 1e-3, "group %d variance %g", ng, ss / 30);
    }
    lc_tensor_free(x);
    lc_tensor_free(y);
}
END_TEST

START_TEST(test_layer_norm)
{
    /* {1,2,3}: mean 2, biased var 2/3; {0,0,0}: var 0, so eps matters */
    float xv[6] = {1, 2, 3, 0, 0, 0}, gv[3] = {1, 2, 3}, bv[3] = {0.5f, 0, -1};
    lc_tensor *x = lt_tensor(2, (int64_t[]){2, 3}, xv);
    lc_tensor *g = lt_tensor(1, (int64_t[]){3}, gv), *b = lt_tensor(1, (int64_t[]){3}, bv);
    lc_tensor *y = lc_layer_norm(x, g, b, 1e-5);
    ck_assert_ptr_nonnull(y);
    double r = 1 / sqrt(2.0 / 3 + 1e-5);
    assert_vals(y, (double[]){-r + 0.5, 0, 3 * r - 1, 0.5, 0, -1}, 6, 1e-5, "layer_norm");
    lc_tensor_free(y);
    lc_tensor *xr = rand_tensor(3, (int64_t[]){3, 4, 37});
    y = lc_layer_norm(xr, NULL, NULL, 0.0);
    ck_assert_ptr_nonnull(y);
    for (int row = 0; row < 12; row++) {
        double s = 0, ss = 0;
        for (int i = 0; i < 37; i++)
            s += fdata(y)[row * 37 + i];
        for (int i = 0; i < 37; i++)
            ss += pow(fdata(y)[row * 37 + i] - s / 37, 2);
        ck_assert(fabs(s / 37) < 1e-5);
        ck_assert(fabs(ss / 37 - 1) < 1e-4);
    }
    lc_tensor_free(y);
    lc_tensor *g4 = lc_tensor_zeros(LC_F32, 1, (int64_t[]){4});
    ck_assert_ptr_null(lc_layer_norm(x, g4, NULL, 1e-5));
    ck_assert_ptr_nonnull(strstr(lc_errmsg(), "layer_norm: weight [4] must be [3]"));
    lc_tensor_free(g4);
    lc_tensor_free(xr);
    lc_tensor_free(x);
    lc_tensor_free(g);
    lc_tensor_free(b);
}
END_TEST

/* ---- softmax ---- */

START_TEST(test_softmax)
{
    float xv[3] = {1, 2, 3};
    lc_tensor *x = lt_tensor(1, (int64_t[]){3}, xv);
    lc_tensor *y = lc_softmax(x, -1);
    ck_assert_ptr_nonnull(y);
    double z = exp(1) + exp(2) + exp(3);
    assert_vals(y, (double[]){exp(1) / z, exp(2) / z, exp(3) / z}, 3, 1e-7, "softmax");
    lc_tensor *ly = lc_log_softmax(x, 0);
    assert_vals(ly, (double[]){1 - log(z), 2 - log(z), 3 - log(z)}, 3, 1e-6, "log_softmax");
    lc_tensor_free(y);
    lc_tensor_free(ly);
    /* huge logits do not overflow */
    float bv[2] = {1000, 1001};
    lc_tensor *big = lt_tensor(1, (int64_t[]){2}, bv);
    y = lc_softmax(big, 0);
    double e = exp(1.0);
    assert_vals(y, (double[]){1 / (1 + e), e / (1 + e)}, 2, 1e-7, "softmax of big logits");
    lc_tensor_free(y);
    lc_tensor_free(big);
    /* along a middle dimension: every line sums to 1 */
    lc_tensor *r = rand_tensor(3, (int64_t[]){3, 4, 5});
    y = lc_softmax(r, 1);
    ck_assert_ptr_nonnull(y);
    for (int a = 0; a < 3; a++)
        for (int c = 0; c < 5; c++) {
            double s = 0, sr = 0;
            for (int b = 0; b < 4; b++) {
                s += fdata(y)[(a * 4 + b) * 5 + c];
                sr += exp(fdata(r)[(a * 4 + b) * 5 + c]);
            }
            ck_assert(fabs(s - 1) < 1e-6);
            /* and the first entry is exp(x)/sum exp(x) */
            ck_assert(fabs(fdata(y)[a * 20 + c] - exp(fdata(r)[a * 20 + c]) / sr) < 1e-6);
        }
    lc_tensor_free(y);
    ck_assert_ptr_null(lc_softmax(r, 3));
    ck_assert_ptr_nonnull(strstr(lc_errmsg(), "softmax: dimension 3 out of range"));
    lc_tensor_free(r);
    lc_tensor_free(x);
}
END_TEST

/* ---- attention ---- */

/* mask: NULL, or [B or 1, H or 1, Lq, Lk] read with broadcasting */
static lc_tensor *naive_sdpa(const lc_tensor *q, const lc_tensor *k, const lc_tensor *v,
                             const lc_tensor *mask, int is_bool, double scale, int causal)
{
    int64_t B = q->shape[0], H = q->shape[1], Lq = q->shape[2], D = q->shape[3];
    int64_t Lk = k->shape[2], Dv = v->shape[3];
    if (scale <= 0)
        scale = 1 / sqrt((double)D);
    lc_tensor *o = lc_tensor_zeros(LC_F32, 4, T4(B, H, Lq, Dv));
    double *s = malloc(sizeof(double) * Lk);
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < H; h++)
            for (int64_t i = 0; i < Lq; i++) {
                double mx = -INFINITY, sum = 0;
                for (int64_t j = 0; j < Lk; j++) {
                    double d = 0;
                    for (int64_t c = 0; c < D; c++)
                        d += (double)fdata(q)[((b * H + h) * Lq + i) * D + c] *
                             fdata(k)[((b * H + h) * Lk + j) * D + c];
                    d *= scale;
                    if (mask) {
                        int64_t mb = mask->shape[0] == 1 ? 0 : b;
                        int64_t mh = mask->shape[1] == 1 ? 0 : h;
                        double m = fdata(mask)[((mb * mask->shape[1] + mh) * Lq + i) * Lk + j];
                        if (is_bool)
                            d = m != 0 ? d : -INFINITY;
                        else
                            d += m;
                    }
                    if (causal && j > i)
                        d = -INFINITY;
                    s[j] = d;
                    if (d > mx)
                        mx = d;
                }
                for (int64_t j = 0; j < Lk; j++) {
                    s[j] = mx == -INFINITY ? 0 : exp(s[j] - mx);
                    sum += s[j];
                }
                for (int64_t c = 0; c < Dv; c++) {
                    double acc = 0;
                    for (int64_t j = 0; j < Lk; j++)
                        acc += s[j] * fdata(v)[((b * H + h) * Lk + j) * Dv + c];
                    fdata(o)[((b * H + h) * Lq + i) * Dv + c] = sum > 0 ? (float)(acc / sum) : 0;
                }
            }
    free(s);
    return o;
}

typedef struct {
    int64_t B, H, Lq, Lk, D, Dv;
    int mask; /* 0 none, 1 float [1,1,Lq,Lk], 2 bool [B,1,Lq,Lk] */
    int causal;
    double scale;
} sdpa_case;

static const sdpa_case sdpa_cases[] = {
    {2, 3, 5, 7, 8, 6, 0, 0, 0},     {2, 3, 5, 7, 8, 6, 1, 0, 0},
    {2, 3, 5, 7, 8, 6, 2, 0, 0.3},   {1, 2, 9, 9, 4, 4, 0, 1, 0},
    {1, 2, 6, 10, 4, 5, 2, 1, 0},    {1, 1, 300, 300, 16, 8, 0, 1, 0},
    {2, 1, 130, 70, 12, 20, 1, 0, 0}, {1, 2, 300, 77, 40, 40, 2, 0, 0},
};

START_TEST(test_sdpa_vs_naive)
{
    for (size_t n = 0; n < sizeof sdpa_cases / sizeof *sdpa_cases; n++) {
        const sdpa_case *c = &sdpa_cases[n];
        lc_tensor *q = rand_tensor(4, T4(c->B, c->H, c->Lq, c->D));
        lc_tensor *k = rand_tensor(4, T4(c->B, c->H, c->Lk, c->D));
        lc_tensor *v = rand_tensor(4, T4(c->B, c->H, c->Lk, c->Dv));
        /* spread the scores so the softmax is not nearly uniform */
        for (int64_t i = 0; i < lc_tensor_numel(q); i++)
            fdata(q)[i] *= 3;
        lc_tensor *mask = NULL, *mask_u8 = NULL;
        if (c->mask == 1) {
            mask = rand_tensor(4, T4(1, 1, c->Lq, c->Lk));
        } else if (c->mask == 2) {
            mask = lc_tensor_new(LC_F32, 4, T4(c->B, 1, c->Lq, c->Lk));
            for (int64_t i = 0; i < lc_tensor_numel(mask); i++)
                fdata(mask)[i] = frand() > -0.4f; /* keep ~70% */
            /* query row 1 of batch 0 sees nothing: zeros, not NaN */
            for (int64_t j = 0; j < c->Lk; j++)
                fdata(mask)[c->Lk + j] = 0;
            mask_u8 = lc_tensor_to(mask, LC_U8);
        }
        lc_tensor *got = lc_sdpa(q, k, v, mask_u8 ? mask_u8 : mask, c->scale, c->causal);
        ck_assert_msg(got != NULL, "case %zu: %s", n, lc_errmsg());
        lc_tensor *want = naive_sdpa(q, k, v, mask, c->mask == 2, c->scale, c->causal);
        char what[32];
        snprintf(what, sizeof what, "sdpa case %zu", n);
        assert_close(got, want, 2e-5, what);
        if (c->mask == 2)
            for (int64_t d = 0; d < c->Dv; d++)
                ck_assert(lc_tensor_get(got, c->Dv + d) == 0.0);
        lc_tensor_free(q);
        lc_tensor_free(k);
        lc_tensor_free(v);
        lc_tensor_free(mask);
        lc_tensor_free(mask_u8);
        lc_tensor_free(got);
        lc_tensor_free(want);
    }
}
END_TEST

START_TEST(test_sdpa_hand)
{
    /* one query, two keys: scores (scale 1) 0 and log 3, so weights 1/4
     * and 3/4 over values 4 and 8 */
    float qv[1] = {1}, kv[2] = {0, (float)log(3.0)}, vv[2] = {4, 8};
    lc_tensor *q = lt_tensor(4, T4(1, 1, 1, 1), qv), *k = lt_tensor(4, T4(1, 1, 2, 1), kv);
    lc_tensor *v = lt_tensor(4, T4(1, 1, 2, 1), vv);
    lc_tensor *o = lc_sdpa(q, k, v, NULL, 1.0, 0);
    ck_assert_ptr_nonnull(o);
    ck_assert(fabs(lc_tensor_get(o, 0) - 7.0) < 1e-5);
    lc_tensor_free(o);
    /* the default scale is 1/sqrt(D) = 1 here too; causal keeps only key 0 */
    o = lc_sdpa(q, k, v, NULL, 0, 1);
    ck_assert(fabs(lc_tensor_get(o, 0) - 4.0) < 1e-6);
    lc_tensor_free(o);
    lc_tensor_free(q);
    lc_tensor_free(k);
    lc_tensor_free(v);
}
END_TEST

START_TEST(test_attention_heads)
{
    int64_t B = 2, Lq = 70, Lk = 33, H = 4, D = 6, Dv = 5;
    lc_tensor *q = rand_tensor(3, (int64_t[]){B, Lq, H * D});
    lc_tensor *k = rand_tensor(3, (int64_t[]){B, Lk, H * D});
    lc_tensor *v = rand_tensor(3, (int64_t[]){B, Lk, H * Dv});
    lc_tensor *mask = rand_tensor(4, T4(B, 1, 1, Lk));
    lc_tensor *got = lc_attention_heads(q, k, v, (int)H, mask, 0);
    ck_assert_ptr_nonnull(got);
    ck_assert_int_eq(got->shape[2], H * Dv);
    /* reference: split heads by hand into [B,H,L,D], attend, compare */
    lc_tensor *qh = lc_tensor_new(LC_F32, 4, T4(B, H, Lq, D));
    lc_tensor *kh = lc_tensor_new(LC_F32, 4, T4(B, H, Lk, D));
    lc_tensor *vh = lc_tensor_new(LC_F32, 4, T4(B, H, Lk, Dv));
    lc_tensor *mf = lc_tensor_new(LC_F32, 4, T4(B, 1, Lq, Lk));
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < H; h++) {
            for (int64_t i = 0; i < Lq; i++)
                for (int64_t d = 0; d < D; d++)
                    fdata(qh)[((b * H + h) * Lq + i) * D + d] = fdata(q)[(b * Lq + i) * H * D + h * D + d];
            for (int64_t i = 0; i < Lk; i++) {
                for (int64_t d = 0; d < D; d++)
                    fdata(kh)[((b * H + h) * Lk + i) * D + d] = fdata(k)[(b * Lk + i) * H * D + h * D + d];
                for (int64_t d = 0; d < Dv; d++)
                    fdata(vh)[((b * H + h) * Lk + i) * Dv + d] = fdata(v)[(b * Lk + i) * H * Dv + h * Dv + d];
            }
        }
    for (int64_t b = 0; b < B; b++)
        for (int64_t i = 0; i < Lq; i++)
            for (int64_t j = 0; j < Lk; j++)
                fdata(mf)[(b * Lq + i) * Lk + j] = fdata(mask)[b * Lk + j];
    lc_tensor *want = naive_sdpa(qh, kh, vh, mf, 0, 0, 0);
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < H; h++)
            for (int64_t i = 0; i < Lq; i++)
                for (int64_t d = 0; d < Dv; d++) {
                    double g = fdata(got)[(b * Lq + i) * H * Dv + h * Dv + d];
                    double w = fdata(want)[((b * H + h) * Lq + i) * Dv + d];
                    ck_assert_msg(fabs(g - w) < 2e-5, "attention [%lld,%lld,%lld,%lld]: %g vs %g",
                                  (long long)b, (long long)h, (long long)i, (long long)d, g, w);
                }
    ck_assert_ptr_null(lc_attention_heads(q, k, v, 5, NULL, 0));
    ck_assert_ptr_nonnull(strstr(lc_errmsg(), "5 heads"));
    lc_tensor *tensors[] = {q, k, v, mask, got, qh, kh, vh, mf, want};
    for (size_t i = 0; i < sizeof tensors / sizeof *tensors; i++)
        lc_tensor_free(tensors[i]);
}
END_TEST

START_TEST(test_sdpa_errors)
{
    lc_tensor *q = lc_tensor_zeros(LC_F32, 4, T4(1, 2, 5, 8));
    lc_tensor *k = lc_tensor_zeros(LC_F32, 4, T4(1, 2, 7, 4));
    lc_tensor *k8 = lc_tensor_zeros(LC_F32, 4, T4(1, 2, 7, 8));
    lc_tensor *v = lc_tensor_zeros(LC_F32, 4, T4(1, 2, 6, 8));
    lc_tensor *v7 = lc_tensor_zeros(LC_F32, 4, T4(1, 2, 7, 3));
    ck_assert_ptr_null(lc_sdpa(q, k, v7, NULL, 0, 0));
    ck_assert_str_eq(lc_errmsg(), "sdpa: q [1,2,5,8] and k [1,2,7,4]: head sizes 8 and 4 differ");
    ck_assert_ptr_null(lc_sdpa(q, k8, v, NULL, 0, 0));
    ck_assert_ptr_nonnull(strstr(lc_errmsg(), "key counts 7 and 6 differ"));
    lc_tensor *m = lc_tensor_zeros(LC_U8, 2, (int64_t[]){5, 6});
    ck_assert_ptr_null(lc_sdpa(q, k8, v7, m, 0, 0));
    ck_assert_ptr_nonnull(strstr(lc_errmsg(), "mask [5,6] does not broadcast to [1,2,5,7]"));
    lc_tensor *m2 = lc_tensor_zeros(LC_U8, 2, (int64_t[]){1, 7});
    lc_tensor *o = lc_sdpa(q, k8, v7, m2, 0, 0); /* everything masked: zeros */
    ck_assert_ptr_nonnull(o);
    ck_assert(lt_max_abs(o) == 0);
    lc_tensor *tensors[] = {q, k, k8, v, v7, m, m2, o};
    for (size_t i = 0; i < sizeof tensors / sizeof *tensors; i++)
        lc_tensor_free(tensors[i]);
}
END_TEST

START_TEST(test_thread_invariance)
{
    lc_tensor *x = rand_tensor(4, T4(2, 8, 33, 31)), *w = rand_tensor(4, T4(12, 4, 3, 3));
    lc_tensor *b = rand_tensor(1, (int64_t[]){12});
    lc_tensor *q = rand_tensor(4, T4(2, 3, 200, 24)), *k = rand_tensor(4, T4(2, 3, 150, 24));
    lc_tensor *v = rand_tensor(4, T4(2, 3, 150, 16));
    lc_tensor *w1 = rand_tensor(4, T4(16, 8, 1, 1));
    lc_conv2d_params p = {{1, 1}, {1, 1}, {1, 1}, 2}, p1 = {{1, 1}, {0, 0}, {1, 1}, 1};
    lc_tensor *out[2][4];
    int threads[2] = {1, 2};
    for (int t = 0; t < 2; t++) {
        ck_assert_int_eq(lc_pool_init(threads[t]), LC_OK);
        out[t][0] = lc_conv2d(x, w, b, &p);
        out[t][1] = lc_conv2d(x, w1, NULL, &p1);
        out[t][2] = lc_sdpa(q, k, v, NULL, 0, 1);
        out[t][3] = lc_group_norm(x, 4, NULL, NULL, 1e-5);
        for (int i = 0; i < 4; i++)
            ck_assert_ptr_nonnull(out[t][i]);
    }
    for (int i = 0; i < 4; i++) {
        ck_assert_msg(memcmp(lc_tensor_data(out[0][i]), lc_tensor_data(out[1][i]),
                             lc_tensor_nbytes(out[0][i])) == 0,
                      "output %d differs between 1 and 2 threads", i);
        lc_tensor_free(out[0][i]);
        lc_tensor_free(out[1][i]);
    }
    lc_tensor *tensors[] = {x, w, b, q, k, v, w1};
    for (size_t i = 0; i < sizeof tensors / sizeof *tensors; i++)
        lc_tensor_free(tensors[i]);
}
END_TEST

START_TEST(test_interrupt)
{
    /* a pending Ctrl-C makes the heavy ops fail cleanly, then they work */
    lc_tensor *x = rand_tensor(4, T4(1, 8, 20, 20)), *w = rand_tensor(4, T4(8, 8, 3, 3));
    lc_tensor *w1 = rand_tensor(4, T4(8, 8, 1, 1)), *q = rand_tensor(4, T4(1, 2, 100, 8));
    lc_conv2d_params p = {{1, 1}, {1, 1}, {1, 1}, 1}, p1 = {{1, 1}, {0, 0}, {1, 1}, 1};
    lc_interrupt_request();
    ck_assert_ptr_null(lc_conv2d(x, w, NULL, &p));
    ck_assert_str_eq(lc_errmsg(), "interrupted");
    ck_assert_ptr_null(lc_conv2d(x, w1, NULL, &p1));
    ck_assert_ptr_null(lc_sdpa(q, q, q, NULL, 0, 0));
    ck_assert_str_eq(lc_errmsg(), "interrupted");
    ck_assert_ptr_null(lc_group_norm(x, 2, NULL, NULL, 1e-5));
    lc_interrupt_clear();
    lc_tensor *y = lc_conv2d(x, w, NULL, &p);
    ck_assert_ptr_nonnull(y);
    lc_tensor_free(y);
    lc_tensor *tensors[] = {x, w, w1, q};
    for (size_t i = 0; i < sizeof tensors / sizeof *tensors; i++)
        lc_tensor_free(tensors[i]);
}
END_TEST

/* ---- resize ---- */

/* x [1,1,1,n] resized along the width only */
static lc_tensor *resize_row(const float *v, int64_t n, int64_t out, lc_resize_mode m, int ac)
{
    lc_tensor *x = lt_tensor(4, T4(1, 1, 1, n), v);
    lc_tensor *y = lc_resize(x, 1, out, m, ac);
    ck_assert_msg(y != NULL, "%s", lc_errmsg());
    lc_tensor_free(x);
    return y;
}

static void check_row(const float *v, int64_t n, int64_t out, lc_resize_mode m, int ac,
                      const double *want, const char *what)
{
    lc_tensor *y = resize_row(v, n, out, m, ac);
    assert_vals(y, want, out, 1e-6, what);
    lc_tensor_free(y);
}

START_TEST(test_resize_nearest)
{
    float a[3] = {10, 20, 30}, b[5] = {1, 2, 3, 4, 5};
    /* 'nearest': src = floor(dst * in/out) */
    check_row(a, 3, 5, LC_RESIZE_NEAREST, 0, (double[]){10, 10, 20, 20, 30}, "nearest 3->5");
    check_row(a, 3, 6, LC_RESIZE_NEAREST, 0, (double[]){10, 10, 20, 20, 30, 30}, "nearest 3->6");
    check_row(b, 5, 3, LC_RESIZE_NEAREST, 0, (double[]){1, 2, 4}, "nearest 5->3");
    check_row(b, 5, 5, LC_RESIZE_NEAREST, 0, (double[]){1, 2, 3, 4, 5}, "nearest 5->5");
    /* 'nearest-exact': src = floor((dst + 0.5) * in/out) */
    check_row(a, 3, 5, LC_RESIZE_NEAREST_EXACT, 0, (double[]){10, 10, 20, 30, 30},
              "nearest-exact 3->5");
    check_row(b, 5, 3, LC_RESIZE_NEAREST_EXACT, 0, (double[]){1, 3, 5}, "nearest-exact 5->3");
    /* 2-d: rows and columns independently */
    float c[6] = {1, 2, 3, 4, 5, 6};
    lc_tensor *x = lt_tensor(4, T4(1, 1, 2, 3), c);
    lc_tensor *y = lc_resize(x, 4, 2, LC_RESIZE_NEAREST, 0);
    ck_assert_ptr_nonnull(y);
    /* rows 0,0,1,1; columns floor(0*1.5)=0, floor(1.5)=1 */
    assert_vals(y, (double[]){1, 2, 1, 2, 4, 5, 4, 5}, 8, 0, "nearest 2x3->4x2");
    lc_tensor_free(y);
    ck_assert_ptr_null(lc_resize(x, 0, 2, LC_RESIZE_NEAREST, 0));
    ck_assert_ptr_nonnull(strstr(lc_errmsg(), "resize: output size 0x2"));
    lc_tensor_free(x);
}
END_TEST

START_TEST(test_resize_bilinear)
{
    float a[2] = {1, 3}, b[4] = {1, 2, 4, 8}, c[3] = {0, 3, 9};
    /* align_corners=false: src = max(in/out * (dst + 0.5) - 0.5, 0): for
     * 2->4 that is 0 (clamped from -0.25), 0.25, 0.75, 1.25 (edge) */
    check_row(a, 2, 4, LC_RESIZE_BILINEAR, 0, (double[]){1, 1.5, 2.5, 3}, "bilinear 2->4");
    /* align_corners=true: src = dst * (in-1)/(out-1) = 0, 1/3, 2/3, 1 */
    check_row(a, 2, 4, LC_RESIZE_BILINEAR, 1, (double[]){1, 5.0 / 3, 7.0 / 3, 3},
              "bilinear ac 2->4");
    /* downsampling 4->2: src 0.5 and 2.5 (false), 0 and 3 (true) */
    check_row(b, 4, 2, LC_RESIZE_BILINEAR, 0, (double[]){1.5, 6}, "bilinear 4->2");
    check_row(b, 4, 2, LC_RESIZE_BILINEAR, 1, (double[]){1, 8}, "bilinear ac 4->2");
    /* 3->2: src 0.25 and 1.75 */
    check_row(c, 3, 2, LC_RESIZE_BILINEAR, 0, (double[]){0.75, 7.5}, "bilinear 3->2");
    /* align_corners with one output pixel takes the first input */
    check_row(b, 4, 1, LC_RESIZE_BILINEAR, 1, (double[]){1}, "bilinear ac 4->1");
    /* 2-d, align_corners=true: corners kept, midpoints averaged */
    float d[4] = {1, 2, 3, 4};
    lc_tensor *x = lt_tensor(4, T4(1, 1, 2, 2), d);
    lc_tensor *y = lc_resize(x, 3, 3, LC_RESIZE_BILINEAR, 1);
    ck_assert_ptr_nonnull(y);
    assert_vals(y, (double[]){1, 1.5, 2, 2, 2.5, 3, 3, 3.5, 4}, 9, 1e-6, "bilinear ac 2x2->3x3");
    lc_tensor_free(y);
    lc_tensor_free(x);
}
END_TEST

/* torch's bilinear formulas in double, for an odd-sized general check */
static void ref_taps(int64_t dst, int64_t in, int64_t out, int ac, int64_t *i0, int64_t *i1,
                     double *l1)
{
    double src = ac ? (out > 1 ? (double)(in - 1) / (out - 1) : 0) * dst
                    : fmax((double)in / out * (dst + 0.5) - 0.5, 0);
    *i0 = (int64_t)floor(src);
    if (*i0 > in - 1)
        *i0 = in - 1;
    *i1 = *i0 < in - 1 ? *i0 + 1 : *i0;
    *l1 = fmin(fmax(src - *i0, 0), 1);
}

START_TEST(test_resize_bilinear_general)
{
    int64_t sizes[][4] = {{5, 7, 4, 11}, {6, 3, 13, 2}, {9, 9, 4, 4}};
    for (int s = 0; s < 3; s++)
        for (int ac = 0; ac < 2; ac++) {
            int64_t H = sizes[s][0], W = sizes[s][1], OH = sizes[s][2], OW = sizes[s][3];
            lc_tensor *x = rand_tensor(4, T4(2, 3, H, W));
            lc_tensor *y = lc_resize(x, OH, OW, LC_RESIZE_BILINEAR, ac);
            ck_assert_ptr_nonnull(y);
            for (int64_t p = 0; p < 6; p++)
                for (int64_t oy = 0; oy < OH; oy++)
                    for (int64_t ox = 0; ox < OW; ox++) {
                        int64_t y0, y1, x0, x1;
                        double ly, lx;
                        ref_taps(oy, H, OH, ac, &y0, &y1, &ly);
                        ref_taps(ox, W, OW, ac, &x0, &x1, &lx);
                        const float *xp = fdata(x) + p * H * W;
                        double want = (1 - ly) * ((1 - lx) * xp[y0 * W + x0] + lx * xp[y0 * W + x1]) +
                                      ly * ((1 - lx) * xp[y1 * W + x0] + lx * xp[y1 * W + x1]);
                        double got = fdata(y)[(p * OH + oy) * OW + ox];
                        ck_assert_msg(fabs(got - want) < 1e-5, "%lldx%lld->%lldx%lld ac %d: %g vs %g",
                                      (long long)H, (long long)W, (long long)OH, (long long)OW, ac,
                                      got, want);
                    }
            lc_tensor_free(x);
            lc_tensor_free(y);
        }
}
END_TEST

/* ---- grid_sample ---- */

/* grid [1,1,n,2] with the given x coordinates and y = 0 */
static lc_tensor *sample_row(const float *v, int64_t W, const float *gx, int64_t n,
                             lc_sample_mode m, lc_pad_mode pad, int ac)
{
    lc_tensor *x = lt_tensor(4, T4(1, 1, 1, W), v);
    lc_tensor *g = lc_tensor_zeros(LC_F32, 4, T4(1, 1, n, 2));
    for (int64_t i = 0; i < n; i++)
        fdata(g)[2 * i] = gx[i];
    lc_tensor *y = lc_grid_sample(x, g, m, pad, ac);
    ck_assert_msg(y != NULL, "%s", lc_errmsg());
    lc_tensor_free(x);
    lc_tensor_free(g);
    return y;
}

START_TEST(test_grid_sample_identity_and_shift)
{
    int64_t N = 2, C = 3, H = 4, W = 5;
    lc_tensor *x = rand_tensor(4, T4(N, C, H, W));
    for (int ac = 0; ac < 2; ac++)
        for (int shift = 0; shift < 2; shift++)
            for (int pad = LC_PAD_ZEROS; pad <= LC_PAD_BORDER; pad++) {
                lc_tensor *g = lc_tensor_new(LC_F32, 4, T4(N, H, W, 2));
                for (int64_t n = 0; n < N; n++)
                    for (int64_t i = 0; i < H; i++)
                        for (int64_t j = 0; j < W; j++) {
                            /* pixel centres: j (align_corners) or (2j+1)/W - 1 */
                            float gx = ac ? -1.f + 2.f * j / (W - 1) : (2.f * j + 1) / W - 1;
                            float gy = ac ? -1.f + 2.f * i / (H - 1) : (2.f * i + 1) / H - 1;
                            if (shift)
                                gx += ac ? 2.f / (W - 1) : 2.f / W;
                            fdata(g)[((n * H + i) * W + j) * 2] = gx;
                            fdata(g)[((n * H + i) * W + j) * 2 + 1] = gy;
                        }
                lc_tensor *y = lc_grid_sample(x, g, LC_SAMPLE_BILINEAR, (lc_pad_mode)pad, ac);
                ck_assert_ptr_nonnull(y);
                for (int64_t nc = 0; nc < N * C; nc++)
                    for (int64_t i = 0; i < H; i++)
                        for (int64_t j = 0; j < W; j++) {
                            int64_t sj = j + shift;
                            double want;
                            if (sj < W)
                                want = fdata(x)[(nc * H + i) * W + sj];
                            else
                                want = pad == LC_PAD_BORDER ? fdata(x)[(nc * H + i) * W + W - 1] : 0;
                            double got = fdata(y)[(nc * H + i) * W + j];
                            ck_assert_msg(fabs(got - want) < 1e-5,
                                          "ac %d shift %d pad %d at (%lld,%lld): %g vs %g", ac,
                                          shift, pad, (long long)i, (long long)j, got, want);
                        }
                lc_tensor_free(g);
                lc_tensor_free(y);
            }
    lc_tensor_free(x);
}
END_TEST

START_TEST(test_grid_sample_known)
{
    float v[3] = {10, 20, 40};
    /* align_corners=false: px = ((x + 1) * 3 - 1) / 2; x = 1.5 -> 3.25,
     * outside. Reflection about 2.5 gives 1.75 -> 20*0.25 + 40*0.75. */
    float g1[3] = {1.5f, 0.f, -0.5f};
    lc_tensor *y = sample_row(v, 3, g1, 3, LC_SAMPLE_BILINEAR, LC_PAD_ZEROS, 0);
    assert_vals(y, (double[]){0, 20, 12.5}, 3, 1e-5, "zeros, align false");
    lc_tensor_free(y);
    y = sample_row(v, 3, g1, 3, LC_SAMPLE_BILINEAR, LC_PAD_BORDER, 0);
    assert_vals(y, (double[]){40, 20, 12.5}, 3, 1e-5, "border, align false");
    lc_tensor_free(y);
    y = sample_row(v, 3, g1, 3, LC_SAMPLE_BILINEAR, LC_PAD_REFLECTION, 0);
    assert_vals(y, (double[]){35, 20, 12.5}, 3, 1e-5, "reflection, align false");
    lc_tensor_free(y);
    /* align_corners=true: px = x + 1; 2.5 is half outside (zeros: half of
     * 40), border clamps to 40, reflection about 2 gives 1.5 */
    float g2[2] = {1.5f, -1.f};
    y = sample_row(v, 3, g2, 2, LC_SAMPLE_BILINEAR, LC_PAD_ZEROS, 1);
    assert_vals(y, (double[]){20, 10}, 2, 1e-5, "zeros, align true");
    lc_tensor_free(y);
    y = sample_row(v, 3, g2, 2, LC_SAMPLE_BILINEAR, LC_PAD_BORDER, 1);
    assert_vals(y, (double[]){40, 10}, 2, 1e-5, "border, align true");
    lc_tensor_free(y);
    y = sample_row(v, 3, g2, 2, LC_SAMPLE_BILINEAR, LC_PAD_REFLECTION, 1);
    assert_vals(y, (double[]){30, 10}, 2, 1e-5, "reflection, align true");
    lc_tensor_free(y);
    /* nearest rounds half to even: px 1.2 -> 1, 0.5 -> 0, 1.5 -> 2; 3.5 is
     * outside */
    float g3[4] = {0.2f, -0.5f, 0.5f, 2.5f};
    y = sample_row(v, 3, g3, 4, LC_SAMPLE_NEAREST, LC_PAD_ZEROS, 1);
    assert_vals(y, (double[]){20, 10, 40, 0}, 4, 0, "nearest");
    lc_tensor_free(y);
    y = sample_row(v, 3, g3, 4, LC_SAMPLE_NEAREST, LC_PAD_BORDER, 1);
    assert_vals(y, (double[]){20, 10, 40, 40}, 4, 0, "nearest border");
    lc_tensor_free(y);
    /* NaN coordinates sample nothing */
    float g4[1] = {NAN};
    y = sample_row(v, 3, g4, 1, LC_SAMPLE_BILINEAR, LC_PAD_ZEROS, 0);
    assert_vals(y, (double[]){0}, 1, 0, "nan");
    lc_tensor_free(y);
    lc_tensor *x = lc_tensor_zeros(LC_F32, 4, T4(2, 1, 3, 3));
    lc_tensor *g = lc_tensor_zeros(LC_F32, 4, T4(1, 3, 3, 2));
    ck_assert_ptr_null(lc_grid_sample(x, g, LC_SAMPLE_BILINEAR, LC_PAD_ZEROS, 0));
    ck_assert_ptr_nonnull(strstr(lc_errmsg(), "batch sizes 2 and 1 differ"));
    lc_tensor_free(x);
    lc_tensor_free(g);
}
END_TEST

/* ---- pad ---- */

START_TEST(test_pad)
{
    float v[6] = {1, 2, 3, 4, 5, 6};
    lc_tensor *x = lt_tensor(4, T4(1, 1, 2, 3), v);
    lc_tensor *y = lc_pad2d(x, (int64_t[]){1, 0, 0, 1}, LC_PADK_CONSTANT, 9);
    ck_assert_ptr_nonnull(y);
    ck_assert_int_eq(y->shape[2], 3);
    ck_assert_int_eq(y->shape[3], 4);
    assert_vals(y, (double[]){9, 1, 2, 3, 9, 4, 5, 6, 9, 9, 9, 9}, 12, 0, "constant");
    lc_tensor_free(y);
    y = lc_pad2d(x, (int64_t[]){2, 1, 1, 0}, LC_PADK_REFLECT, 0);
    ck_assert_ptr_nonnull(y);
    assert_vals(y, (double[]){6, 5, 4, 5, 6, 5, 3, 2, 1, 2, 3, 2, 6, 5, 4, 5, 6, 5}, 18, 0,
                "reflect");
    lc_tensor_free(y);
    y = lc_pad2d(x, (int64_t[]){1, 1, 0, 1}, LC_PADK_REPLICATE, 0);
    ck_assert_ptr_nonnull(y);
    assert_vals(y, (double[]){1, 1, 2, 3, 3, 4, 4, 5, 6, 6, 4, 4, 5, 6, 6}, 15, 0, "replicate");
    lc_tensor_free(y);
    y = lc_pad2d(x, (int64_t[]){-1, 0, 0, 0}, LC_PADK_CONSTANT, 0);
    ck_assert_ptr_nonnull(y);
    assert_vals(y, (double[]){2, 3, 5, 6}, 4, 0, "negative pad crops");
    lc_tensor_free(y);
    ck_assert_ptr_null(lc_pad2d(x, (int64_t[]){3, 0, 0, 0}, LC_PADK_REFLECT, 0));
    ck_assert_ptr_nonnull(strstr(lc_errmsg(), "must be smaller than the input size 2x3"));
    ck_assert_ptr_null(lc_pad2d(x, (int64_t[]){0, 0, -1, 0}, LC_PADK_REPLICATE, 0));
    lc_tensor_free(x);
}
END_TEST

/* The pool's threads do not survive Check's fork into each test, so the
 * pool is started in the child (not by lt_run, which starts it before). */
static void pool_setup(void)
{
    lc_pool_init(2);
}

int main(void)
{
    Suite *s = suite_create("nn");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 120);
    tcase_add_checked_fixture(tc, pool_setup, NULL);
    tcase_add_test(tc, test_conv_hand);
    tcase_add_test(tc, test_conv_vs_naive);
    tcase_add_test(tc, test_conv_large_and_strided);
    tcase_add_test(tc, test_conv_up2);
    tcase_add_test(tc, test_conv_errors);
    tcase_add_test(tc, test_group_norm_hand);
    tcase_add_test(tc, test_group_norm_moments);
    tcase_add_test(tc, test_layer_norm);
    tcase_add_test(tc, test_softmax);
    tcase_add_test(tc, test_sdpa_vs_naive);
    tcase_add_test(tc, test_sdpa_hand);
    tcase_add_test(tc, test_attention_heads);
    tcase_add_test(tc, test_sdpa_errors);
    tcase_add_test(tc, test_thread_invariance);
    tcase_add_test(tc, test_interrupt);
    suite_add_tcase(s, tc);
    TCase *tr = tcase_create("resample");
    tcase_add_checked_fixture(tr, pool_setup, NULL);
    tcase_add_test(tr, test_resize_nearest);
    tcase_add_test(tr, test_resize_bilinear);
    tcase_add_test(tr, test_resize_bilinear_general);
    tcase_add_test(tr, test_grid_sample_identity_and_shift);
    tcase_add_test(tr, test_grid_sample_known);
    tcase_add_test(tr, test_pad);
    suite_add_tcase(s, tr);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
