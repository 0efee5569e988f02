/* lk_sgemm on every SIMD level the CPU has, against a double-precision
 * product computed here, with the error bound of fp32 summation; and the
 * same bits for 1 and 2 threads. lk_softmax_exp on every level against
 * exp in double and the portable kernel: odd lengths, unaligned rows,
 * masked keys, the exact-zero cut, NaN. lk_sgemm_thin against the double
 * product. */
#include <float.h>
#include <stdint.h>

#include "config.h"
#include "kernels.h"
#include "ref/ref.h"
#include "testutil.h"
#if defined(LUCID_X86)
#include "x86/x86.h"
#endif

static const lk_arch all_archs[] = {LK_ARCH_REF, LK_ARCH_AVX2, LK_ARCH_AVX512};

/* deterministic values in [-1, 1) */
static float rnd(uint64_t *s)
{
    *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)((*s >> 40) / (double)(1 << 24) * 2.0 - 1.0);
}

/* An operand stored rows x cols with leading dimension cols + 3, starting
 * one float past a 64-byte boundary, padding holding NaN so a read outside
 * the matrix poisons the result. */
typedef struct {
    float *base, *p;
    int64_t rows, cols, ld;
} mat;

static mat mat_new(int64_t rows, int64_t cols, uint64_t *seed)
{
    mat x = {.rows = rows, .cols = cols, .ld = cols + 3};
    size_t total = (size_t)(rows * x.ld + 1 + 16);
    x.base = aligned_alloc(64, (total * sizeof(float) + 63) / 64 * 64);
    ck_assert_ptr_nonnull(x.base);
    for (size_t i = 0; i < total; i++)
        x.base[i] = NAN;
    x.p = x.base + 1;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++)
            x.p[r * x.ld + c] = rnd(seed);
    return x;
}

static mat mat_copy(const mat *x)
{
    mat y = *x;
    size_t total = (size_t)(x->rows * x->ld + 1 + 16);
    y.base = aligned_alloc(64, (total * sizeof(float) + 63) / 64 * 64);
    ck_assert_ptr_nonnull(y.base);
    memcpy(y.base, x->base, total * sizeof(float));
    y.p = y.base + 1;
    return y;
}

typedef struct {
    int64_t m, n, k;
} shape;

/* Runs lk_sgemm and checks every element against the double product:
 * |got - exact| <= gamma * (|alpha| sum|a||b| + |beta c|), gamma the fp32
 * bound for a length-k sum. Also checks C's padding is untouched. */
static void check_one(int ta, int tb, shape s, float alpha, float beta, int nan_c, uint64_t seed)
{
    mat a = ta ? mat_new(s.k, s.m, &seed) : mat_new(s.m, s.k, &seed);
    mat b = tb ? mat_new(s.n, s.k, &seed) : mat_new(s.k, s.n, &seed);
    mat c0 = mat_new(s.m, s.n, &seed);
    if (nan_c)
        for (int64_t i = 0; i < s.m; i++)
            for (int64_t j = 0; j < s.n; j++)
                c0.p[i * c0.ld + j] = NAN;
    mat c = mat_copy(&c0);
    lk_sgemm(ta, tb, s.m, s.n, s.k, alpha, a.p, a.ld, b.p, b.ld, beta, c.p, c.ld);
    double gamma = 2.0 * (double)(s.k + 3) * FLT_EPSILON;
    for (int64_t i = 0; i < s.m; i++)
        for (int64_t j = 0; j < s.n; j++) {
            double sum = 0, mag = 0;
            for (int64_t p = 0; p < s.k; p++) {
                double av = ta ? a.p[p * a.ld + i] : a.p[i * a.ld + p];
                double bv = tb ? b.p[j * b.ld + p] : b.p[p * b.ld + j];
                sum += av * bv;
                mag += fabs(av * bv);
            }
            double cv = c0.p[i * c0.ld + j];
            double exact = alpha * sum + (beta == 0.f ? 0.0 : beta * cv);
            double cmag = beta == 0.f ? 0.0 : fabs(beta * cv);
            double bound = gamma * (fabs(alpha) * mag + cmag) + 1e-30;
            double got = c.p[i * c.ld + j];
            ck_assert_msg(fabs(got - exact) <= bound,
                          "%s ta=%d tb=%d %ldx%ldx%ld alpha=%g beta=%g: C[%ld,%ld] = %.9g, "
                          "expected %.9g (bound %.3g)",
                          lk_sgemm_name(), ta, tb, (long)s.m, (long)s.n, (long)s.k, alpha, beta,
                          (long)i, (long)j, got, exact, bound);
        }
    /* padding columns and the tail stay NaN */
    for (int64_t i = 0; i < s.m; i++)
        for (int64_t j = s.n; j < c.ld && i * c.ld + j < s.m * c.ld; j++)
            ck_assert_msg(isnan(c.p[i * c.ld + j]), "%s wrote C padding at [%ld,%ld]",
                          lk_sgemm_name(), (long)i, (long)j);
    ck_assert_msg(isnan(c.p[-1]), "%s wrote before C", lk_sgemm_name());
    free(a.base);
    free(b.base);
    free(c0.base);
    free(c.base);
}

static const shape odd_shapes[] = {{1, 1, 1},  {17, 33, 65}, {129, 7, 300}, {1, 50, 40},
                                   {45, 1, 70}, {1, 1, 300},  {15, 17, 1},   {14, 32, 256},
                                   {28, 16, 3}};

START_TEST(test_sgemm_odd_shapes)
{
    lc_pool_init(2);
    lk_arch want = all_archs[_i];
    if (lk_set_arch(want) != want)
        return; /* the CPU lacks this level */
    const float ab[][2] = {{1.f, 0.f}, {0.5f, 0.f}, {1.f, 1.f}, {-2.f, 0.75f}};
    uint64_t seed = 42;
    for (size_t si = 0; si < sizeof odd_shapes / sizeof *odd_shapes; si++)
        for (int t = 0; t < 4; t++)
            for (int v = 0; v < 4; v++)
                check_one(t & 1, t >> 1, odd_shapes[si], ab[v][0], ab[v][1], 0, seed++);
}
END_TEST

/* beta == 0 must not read C: NaN there must not reach the result */
START_TEST(test_sgemm_beta0_ignores_nan)
{
    lc_pool_init(2);
    lk_arch want = all_archs[_i];
    if (lk_set_arch(want) != want)
        return;
    const shape sh[] = {{17, 33, 65}, {3, 70, 300}, {1, 1, 1}};
    for (size_t si = 0; si < 3; si++)
        for (int t = 0; t < 4; t++)
            check_one(t & 1, t >> 1, sh[si], 1.5f, 0.f, 1, 7 + si);
}
END_TEST

/* several blocks, several kc blocks, several tasks */
START_TEST(test_sgemm_large)
{
    lc_pool_init(2);
    lk_arch want = all_archs[_i];
    if (lk_set_arch(want) != want)
        return;
    check_one(0, 0, (shape){300, 200, 520}, 1.f, 0.f, 0, 1);
    check_one(0, 1, (shape){77, 769, 130}, 0.25f, 1.f, 0, 2);
    check_one(1, 0, (shape){200, 45, 600}, -1.f, 0.5f, 0, 3);
    check_one(1, 1, (shape){350, 70, 90}, 1.f, 0.f, 0, 4);
    /* a B too deep to pack whole: k in two passes (beta applied once) */
    check_one(0, 0, (shape){200, 200, 10600}, -1.f, 0.5f, 0, 5);
}
END_TEST

/* k == 0: C = beta * C (and no read of C when beta == 0) */
START_TEST(test_sgemm_k0)
{
    lc_pool_init(2);
    lk_arch want = all_archs[_i];
    if (lk_set_arch(want) != want)
        return;
    float c[6] = {1, 2, 3, 4, 5, 6}, a[1] = {0}, b[1] = {0};
    lk_sgemm(0, 0, 2, 3, 0, 1.f, a, 1, b, 3, 2.f, c, 3);
    for (int i = 0; i < 6; i++)
        ck_assert_float_eq(c[i], 2.f * (float)(i + 1));
    for (int i = 0; i < 6; i++)
        c[i] = NAN;
    lk_sgemm(0, 0, 2, 3, 0, 1.f, a, 1, b, 3, 0.f, c, 3);
    for (int i = 0; i < 6; i++)
        ck_assert_float_eq(c[i], 0.f);
}
END_TEST

/* Exact small case: integers, so every path must give the same numbers. */
START_TEST(test_sgemm_exact)
{
    lc_pool_init(2);
    lk_arch want = all_archs[_i];
    if (lk_set_arch(want) != want)
        return;
    /* A = [[1,2,3],[4,5,6]], B = [[7,8],[9,10],[11,12]]: AB = [[58,64],[139,154]] */
    const float a[] = {1, 2, 3, 4, 5, 6}, b[] = {7, 8, 9, 10, 11, 12};
    const float at[] = {1, 4, 2, 5, 3, 6}, bt[] = {7, 9, 11, 8, 10, 12};
    const float want_c[] = {2 * 58 - 1, 2 * 64 - 2, 2 * 139 - 3, 2 * 154 - 4};
    for (int t = 0; t < 4; t++) {
        float c[4] = {1, 2, 3, 4};
        lk_sgemm(t & 1, t >> 1, 2, 2, 3, 2.f, t & 1 ? at : a, t & 1 ? 2 : 3, t >> 1 ? bt : b,
                 t >> 1 ? 3 : 2, -1.f, c, 2);
        for (int i = 0; i < 4; i++)
            ck_assert_msg(c[i] == want_c[i], "%s trans %d: C[%d] = %g, expected %g",
                          lk_sgemm_name(), t, i, c[i], want_c[i]);
    }
}
END_TEST

/* The SIMD paths agree with the portable reference (same bound). */
START_TEST(test_sgemm_matches_ref)
{
    lc_pool_init(2);
    lk_arch want = all_archs[_i];
    if (lk_set_arch(want) != want)
        return;
    uint64_t seed = 99;
    int64_t m = 61, n = 83, k = 297;
    for (int t = 0; t < 4; t++) {
        int ta = t & 1, tb = t >> 1;
        mat a = ta ? mat_new(k, m, &seed) : mat_new(m, k, &seed);
        mat b = tb ? mat_new(n, k, &seed) : mat_new(k, n, &seed);
        mat c = mat_new(m, n, &seed), r = mat_copy(&c);
        lk_sgemm(ta, tb, m, n, k, 0.75f, a.p, a.ld, b.p, b.ld, 0.5f, c.p, c.ld);
        lk_sgemm_ref(ta, tb, m, n, k, 0.75f, a.p, a.ld, b.p, b.ld, 0.5f, r.p, r.ld);
        double gamma = 2.0 * (double)(k + 3) * FLT_EPSILON;
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < n; j++) {
                double mag = 0;
                for (int64_t p = 0; p < k; p++)
                    mag += fabs((double)(ta ? a.p[p * a.ld + i] : a.p[i * a.ld + p]) *
                                (tb ? b.p[j * b.ld + p] : b.p[p * b.ld + j]));
                /* both within gamma of the exact value */
                double bound = 2 * gamma * (0.75 * mag + 1.0);
                double d = fabs((double)c.p[i * c.ld + j] - r.p[i * r.ld + j]);
                ck_assert_msg(d <= bound, "%s vs ref ta=%d tb=%d: C[%ld,%ld] %.9g vs %.9g",
                              lk_sgemm_name(), ta, tb, (long)i, (long)j, c.p[i * c.ld + j],
                              r.p[i * r.ld + j]);
            }
        free(a.base), free(b.base), free(c.base), free(r.base);
    }
}
END_TEST

/* The same bits for 1 and 2 threads. */
START_TEST(test_sgemm_thread_invariant)
{
    lk_arch want = all_archs[_i];
    if (lk_set_arch(want) != want)
        return;
    /* the last: k in two passes */
    const shape sh[] = {{300, 200, 520}, {77, 768, 300}, {129, 7, 300}, {4, 1000, 600},
                        {200, 200, 10600}};
    uint64_t seed = 5;
    for (size_t si = 0; si < 5; si++)
        for (int t = 0; t < (si < 4 ? 4 : 1); t++) {
            shape s = sh[si];
            int ta = t & 1, tb = t >> 1;
            mat a = ta ? mat_new(s.k, s.m, &seed) : mat_new(s.m, s.k, &seed);
            mat b = tb ? mat_new(s.n, s.k, &seed) : mat_new(s.k, s.n, &seed);
            mat c1 = mat_new(s.m, s.n, &seed), c2 = mat_copy(&c1);
            lc_pool_init(1);
            lk_sgemm(ta, tb, s.m, s.n, s.k, 1.25f, a.p, a.ld, b.p, b.ld, 0.5f, c1.p, c1.ld);
            lc_pool_init(2);
            ck_assert_int_eq(lc_pool_threads(), 2);
            lk_sgemm(ta, tb, s.m, s.n, s.k, 1.25f, a.p, a.ld, b.p, b.ld, 0.5f, c2.p, c2.ld);
            ck_assert_msg(!memcmp(c1.base, c2.base, (size_t)(s.m * c1.ld + 1) * sizeof(float)),
                          "%s: 1 and 2 threads differ, ta=%d tb=%d %ldx%ldx%ld", lk_sgemm_name(),
                          ta, tb, (long)s.m, (long)s.n, (long)s.k);
            free(a.base), free(b.base), free(c1.base), free(c2.base);
        }
}
END_TEST

/* ---- operands stored f16 / bf16 ---- */

/* deterministic f16 / bf16 bits: finite values of every exponent the
 * format has (subnormals and zeros included, no inf or NaN) */
static uint16_t rnd_half(uint64_t *s, lk_elt t)
{
    *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
    uint16_t h = (uint16_t)(*s >> 40);
    if (t == LK_F16) {
        /* exponents 0..30 only; keep values modest so products stay finite */
        uint16_t e = (uint16_t)((h >> 10) & 0x1f);
        e = (uint16_t)(e % 20); /* 2^-14 .. 2^4, and subnormals */
        return (uint16_t)((h & 0x83ffu) | (e << 10));
    }
    /* bf16: exponent byte 100..139 (2^-27 .. 2^12), and zero */
    uint16_t e = (uint16_t)(((h >> 7) & 0xff) % 40 + 100);
    if ((h & 0x1f) == 0)
        return (uint16_t)(h & 0x8000u);
    return (uint16_t)((h & 0x807fu) | (e << 7));
}

/* lk_sgemm_typed on B stored half-size: the same bits as lk_sgemm on B
 * widened (the SIMD levels widen inside their packing; shapes where the
 * driver swaps operands make B the packed-A side) */
START_TEST(test_sgemm_typed)
{
    lc_pool_init(2);
    lk_arch want = all_archs[_i];
    if (lk_set_arch(want) != want)
        return;
    const shape sh[] = {{64, 300, 40}, {20, 700, 300}, {17, 33, 65}, {1, 1, 1},
                        {30, 5, 0},    {16, 2000, 300}, {154, 3072, 768}};
    const lk_elt types[] = {LK_F16, LK_BF16};
    uint64_t seed = 123;
    for (size_t si = 0; si < sizeof sh / sizeof *sh; si++)
        for (int t = 0; t < 8; t++) {
            shape s = sh[si];
            int ta = t & 1, tb = (t >> 1) & 1;
            lk_elt bt = types[t >> 2];
            mat a = ta ? mat_new(s.k, s.m, &seed) : mat_new(s.m, s.k, &seed);
            mat b = tb ? mat_new(s.n, s.k, &seed) : mat_new(s.k, s.n, &seed);
            /* b.p becomes the widened copy of bh, a half matrix with b's ld */
            size_t nb = (size_t)(b.rows * b.ld);
            uint16_t *bh = malloc((nb + 1) * sizeof(uint16_t));
            ck_assert_ptr_nonnull(bh);
            for (size_t i = 0; i < nb; i++) {
                bh[i] = rnd_half(&seed, bt);
                b.p[i] = lk_elt_get(bh, bt, (int64_t)i);
            }
            mat c1 = mat_new(s.m, s.n, &seed), c2 = mat_copy(&c1);
            lk_sgemm(ta, tb, s.m, s.n, s.k, 1.5f, a.p, a.ld, b.p, b.ld, 0.25f, c1.p, c1.ld);
            lk_sgemm_typed(ta, tb, s.m, s.n, s.k, 1.5f, a.p, a.ld, bh, bt, b.ld, 0.25f, c2.p,
                           c2.ld, NULL);
            ck_assert_msg(!memcmp(c1.base, c2.base, (size_t)(s.m * c1.ld + 1) * sizeof(float)),
                          "%s: B stored %s differs from B widened, ta=%d tb=%d %ldx%ldx%ld",
                          lk_sgemm_name(), bt == LK_F16 ? "f16" : "bf16", ta, tb, (long)s.m,
                          (long)s.n, (long)s.k);
            /* a bias added as C is stored: the bits of C filled with the
             * bias and beta 1 (c1 reused as that C) */
            mat bias = mat_new(1, s.n, &seed);
            for (int64_t i = 0; i < s.m; i++)
                for (int64_t j = 0; j < s.n; j++)
                    c1.p[i * c1.ld + j] = bias.p[j];
            lk_sgemm(ta, tb, s.m, s.n, s.k, 1.5f, a.p, a.ld, b.p, b.ld, 1.f, c1.p, c1.ld);
            lk_sgemm_typed(ta, tb, s.m, s.n, s.k, 1.5f, a.p, a.ld, bh, bt, b.ld, 0.f, c2.p, c2.ld,
                           bias.p);
            ck_assert_msg(!memcmp(c1.base, c2.base, (size_t)(s.m * c1.ld + 1) * sizeof(float)),
                          "%s: bias differs from C filled with it, ta=%d tb=%d %ldx%ldx%ld",
                          lk_sgemm_name(), ta, tb, (long)s.m, (long)s.n, (long)s.k);
            free(bias.base);
            free(bh);
            free(a.base), free(b.base), free(c1.base), free(c2.base);
        }
}
END_TEST

START_TEST(test_elt_get)
{
    /* f16: one, largest finite, smallest subnormal, negative zero, inf */
    const uint16_t h[] = {0x3c00, 0x7bff, 0x0001, 0x8000, 0x7c00, 0x03ff, 0xc000};
    const float want[] = {1.f, 65504.f, 5.9604644775390625e-8f, -0.f, INFINITY,
                          6.0975551605224609e-5f, -2.f};
    for (int i = 0; i < 7; i++) {
        float got = lk_elt_get(h, LK_F16, i);
        ck_assert_msg(!memcmp(&got, &want[i], sizeof got), "f16 %04x -> %.9g, expected %.9g",
                      h[i], got, want[i]);
    }
    ck_assert(isnan(lk_elt_get((const uint16_t[]){0x7e00}, LK_F16, 0)));
    const uint16_t b[] = {0x3f80, 0xc0a0, 0x0001};
    ck_assert(lk_elt_get(b, LK_BF16, 0) == 1.f);
    ck_assert(lk_elt_get(b, LK_BF16, 1) == -5.f);
    ck_assert(lk_elt_get(b, LK_BF16, 2) == ldexpf(1.f, -133)); /* subnormal */
}
END_TEST

/* ---- convolution without a column matrix ---- */

typedef struct {
    int64_t C, H, W, kh, kw, sh, sw, ph, pw, dh, dw, cout;
} conv_case;

static const conv_case conv_cases[] = {
    /* C  H   W  kh kw sh sw ph pw dh dw cout */
    {3, 9, 11, 3, 3, 1, 1, 1, 1, 1, 1, 5},      /* OW 11 < the 14-pixel strip */
    {5, 20, 23, 3, 3, 1, 1, 1, 1, 1, 1, 33},    /* strips cross output rows */
    {2, 17, 40, 3, 3, 2, 2, 1, 1, 1, 1, 7},     /* stride 2 (downsampling) */
    {4, 12, 13, 1, 1, 1, 1, 0, 0, 1, 1, 40},    /* 1x1 */
    {3, 10, 19, 2, 3, 1, 3, 0, 2, 2, 1, 9},     /* odd kernel, strides, dilation */
    {1, 5, 3, 3, 3, 1, 1, 2, 2, 1, 1, 2},       /* padding beyond the input's width */
    {6, 14, 14, 5, 5, 1, 1, 2, 2, 2, 2, 3},     /* 25 taps, dilated */
    {33, 8, 8, 3, 3, 1, 1, 1, 1, 1, 1, 70},     /* k = 297 crosses a k block mid-channel */
    {2, 6, 30, 9, 9, 1, 1, 4, 4, 1, 1, 4},      /* 81 taps: past the SIMD plan */
    {1, 1, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1},
    {3, 40, 41, 3, 3, 1, 1, 1, 1, 1, 1, 20},    /* wide enough for column tasks */
    {33, 32, 40, 3, 3, 1, 1, 1, 1, 1, 1, 45},   /* column tasks over two k blocks */
    {256, 32, 32, 3, 3, 1, 1, 1, 1, 1, 1, 16},  /* k (2304) in two passes */
};

static int64_t out_dim(int64_t in, int64_t k, int64_t st, int64_t pad, int64_t dil)
{
    return (in + 2 * pad - dil * (k - 1) - 1) / st + 1;
}

/* col[k, p] written out by definition, row-major K x P */
static float *col_by_definition(const lk_im2col *g)
{
    int64_t K = g->C * g->kh * g->kw, P = g->OH * g->OW;
    float *col = malloc((size_t)(K * P) * sizeof(float));
    ck_assert_ptr_nonnull(col);
    for (int64_t c = 0; c < g->C; c++)
        for (int64_t ki = 0; ki < g->kh; ki++)
            for (int64_t kj = 0; kj < g->kw; kj++)
                for (int64_t oy = 0; oy < g->OH; oy++)
                    for (int64_t ox = 0; ox < g->OW; ox++) {
                        int64_t iy = oy * g->sh - g->ph + ki * g->dh;
                        int64_t ix = ox * g->sw - g->pw + kj * g->dw;
                        float v = 0.f;
                        if (iy >= 0 && iy < g->H && ix >= 0 && ix < g->W)
                            v = g->x[(c * g->H + iy) * g->W + ix];
                        col[((c * g->kh + ki) * g->kw + kj) * P + oy * g->OW + ox] = v;
                    }
    return col;
}

/* lk_sconv equals lk_sgemm on the column matrix written out, bit for bit,
 * for f32 and f16 weights, beta 0 and 1, on 1 and 2 threads; and the output
 * rows' padding is untouched */
START_TEST(test_sconv)
{
    lk_arch want = all_archs[_i];
    if (lk_set_arch(want) != want)
        return;
    uint64_t seed = 99;
    for (size_t ci = 0; ci < sizeof conv_cases / sizeof *conv_cases; ci++) {
        conv_case cc = conv_cases[ci];
        int64_t OH = out_dim(cc.H, cc.kh, cc.sh, cc.ph, cc.dh);
        int64_t OW = out_dim(cc.W, cc.kw, cc.sw, cc.pw, cc.dw);
        ck_assert(OH > 0 && OW > 0);
        int64_t K = cc.C * cc.kh * cc.kw, P = OH * OW;
        mat x = mat_new(1, cc.C * cc.H * cc.W, &seed);
        lk_im2col g = {x.p, cc.C, cc.H, cc.W, OH, OW, cc.kh, cc.kw,
                       cc.sh, cc.sw, cc.ph, cc.pw, cc.dh, cc.dw, 1, 0};
        float *col = col_by_definition(&g);
        mat w = mat_new(cc.cout, K, &seed);
        uint16_t *wh = malloc((size_t)(cc.cout * w.ld) * sizeof(uint16_t));
        ck_assert_ptr_nonnull(wh);
        for (int64_t i = 0; i < cc.cout * w.ld; i++)
            wh[i] = rnd_half(&seed, LK_F16);
        mat wf = mat_copy(&w);
        for (int64_t i = 0; i < cc.cout * w.ld; i++)
            wf.p[i] = lk_elt_get(wh, LK_F16, i);
        for (int v = 0; v < 4; v++) {
            int half = v & 1;
            float beta = (v & 2) ? 1.f : 0.f;
            mat c0 = mat_new(cc.cout, P, &seed);
            mat c1 = mat_copy(&c0), c2 = mat_copy(&c0), c3 = mat_copy(&c0);
            const mat *wm = half ? &wf : &w;
            lc_pool_init(2);
            lk_sgemm(0, 0, cc.cout, P, K, 1.f, wm->p, wm->ld, col, P, beta, c1.p, c1.ld);
            const void *wp = half ? (const void *)wh : (const void *)w.p;
            lk_elt wt = half ? LK_F16 : LK_F32;
            lk_sconv(&g, cc.cout, wp, wt, w.ld, 1.f, beta, c2.p, c2.ld, NULL);
            lc_pool_init(1);
            lk_sconv(&g, cc.cout, wp, wt, w.ld, 1.f, beta, c3.p, c3.ld, NULL);
            size_t bytes = (size_t)(cc.cout * c0.ld + 1) * sizeof(float);
            ck_assert_msg(!memcmp(c1.base, c2.base, bytes),
                          "%s: conv case %zu (%s weights, beta %g) differs from im2col + sgemm",
                          lk_sgemm_name(), ci, half ? "f16" : "f32", beta);
            ck_assert_msg(!memcmp(c2.base, c3.base, bytes),
                          "%s: conv case %zu differs between 1 and 2 threads", lk_sgemm_name(),
                          ci);
            for (int64_t o = 0; o < cc.cout; o++)
                for (int64_t j = P; j < c2.ld && o * c2.ld + j < cc.cout * c2.ld; j++)
                    ck_assert_msg(isnan(c2.p[o * c2.ld + j]), "conv wrote padding of row %ld",
                                  (long)o);
            /* a bias per output channel: the bits of an output filled with
             * it and beta 1 */
            mat bias = mat_new(1, cc.cout, &seed);
            for (int64_t o = 0; o < cc.cout; o++)
                for (int64_t j = 0; j < P; j++)
                    c1.p[o * c1.ld + j] = bias.p[o];
            lk_sgemm(0, 0, cc.cout, P, K, 1.f, wm->p, wm->ld, col, P, 1.f, c1.p, c1.ld);
            lk_sconv(&g, cc.cout, wp, wt, w.ld, 1.f, 0.f, c2.p, c2.ld, bias.p);
            ck_assert_msg(!memcmp(c1.base, c2.base, bytes),
                          "%s: conv case %zu with a bias differs from a C filled with it",
                          lk_sgemm_name(), ci);
            free(bias.base);
            free(c0.base), free(c1.base), free(c2.base), free(c3.base);
        }
        free(col), free(wh), free(x.base), free(w.base), free(wf.base);
    }
}
END_TEST

/* images side by side in one product: each image's columns have the
 * bits of that image convolved alone (odd geometries, a stride between
 * images larger than an image) */
START_TEST(test_sconv_images)
{
    lk_arch want = all_archs[_i];
    if (lk_set_arch(want) != want)
        return;
    lc_pool_init(2);
    uint64_t seed = 5;
    const int images = 3;
    for (size_t ci = 0; ci < sizeof conv_cases / sizeof *conv_cases; ci++) {
        conv_case cc = conv_cases[ci];
        int64_t OH = out_dim(cc.H, cc.kh, cc.sh, cc.ph, cc.dh);
        int64_t OW = out_dim(cc.W, cc.kw, cc.sw, cc.pw, cc.dw);
        int64_t K = cc.C * cc.kh * cc.kw, P = OH * OW, xs = cc.C * cc.H * cc.W + 5;
        mat x = mat_new(1, images * xs, &seed), w = mat_new(cc.cout, K, &seed);
        mat bias = mat_new(1, cc.cout, &seed);
        mat all = mat_new(cc.cout, images * P, &seed), one = mat_new(cc.cout, P, &seed);
        lk_im2col g = {x.p, cc.C, cc.H, cc.W, OH, OW, cc.kh, cc.kw,
                       cc.sh, cc.sw, cc.ph, cc.pw, cc.dh, cc.dw, images, xs};
        lk_sconv(&g, cc.cout, w.p, LK_F32, w.ld, 1.f, 0.f, all.p, all.ld, bias.p);
        for (int n = 0; n < images; n++) {
            lk_im2col g1 = g;
            g1.x = x.p + n * xs, g1.N = 1;
            lk_sconv(&g1, cc.cout, w.p, LK_F32, w.ld, 1.f, 0.f, one.p, one.ld, bias.p);
            for (int64_t o = 0; o < cc.cout; o++)
                ck_assert_msg(!memcmp(all.p + o * all.ld + n * P, one.p + o * one.ld,
                                      (size_t)P * sizeof(float)),
                              "%s: conv case %zu image %d row %ld differs from alone",
                              lk_sgemm_name(), ci, n, (long)o);
        }
        free(x.base), free(w.base), free(bias.base), free(all.base), free(one.base);
    }
}
END_TEST

/* out[n, o, y, x] of a 3x3 convolution, stride 1, padding 1, in double */
static double conv3x3_at(const float *x, const float *w, const float *bias, int64_t C,
                         int64_t H, int64_t W, int64_t n, int64_t o, int64_t y, int64_t xx)
{
    double s = bias ? bias[o] : 0;
    for (int64_t c = 0; c < C; c++)
        for (int64_t i = 0; i < 3; i++)
            for (int64_t j = 0; j < 3; j++) {
                int64_t iy = y - 1 + i, ix = xx - 1 + j;
                if (iy >= 0 && iy < H && ix >= 0 && ix < W)
                    s += (double)x[((n * C + c) * H + iy) * W + ix] * w[((o * C + c) * 3 + i) * 3 + j];
            }
    return s;
}

/* Winograd F(2x2, 3x3) against the convolution in double: odd sizes (a
 * last tile row or column half outside), tile rows longer than a vector,
 * several chunks of tile rows; f32, f16 and bf16 weights, with and without
 * a bias; the same bits on 1 and 2 threads; nothing written past the
 * output. Shapes it does not take, and levels without it, return -1. */
START_TEST(test_conv3x3_wino)
{
    if (lk_set_arch(LK_ARCH_AVX512) != LK_ARCH_AVX512)
        return;
    static const int64_t cases[][6] = {
        /* N, C, H, W, cout, check every step-th output */
        {2, 24, 37, 35, 20, 1}, {1, 16, 16, 16, 16, 1}, {3, 33, 15, 47, 17, 1},
        {1, 16, 127, 125, 300, 13}, /* M's budget: 5 chunks of tile rows */
    };
    uint64_t seed = 17;
    for (size_t ci = 0; ci < sizeof cases / sizeof *cases; ci++) {
        int64_t N = cases[ci][0], C = cases[ci][1], H = cases[ci][2], W = cases[ci][3];
        int64_t cout = cases[ci][4], step = cases[ci][5];
        int64_t xn = N * C * H * W, wn = cout * C * 9, on = N * cout * H * W;
        mat x = mat_new(1, xn, &seed), w = mat_new(1, wn, &seed), bias = mat_new(1, cout, &seed);
        uint16_t *wh = malloc((size_t)wn * sizeof(uint16_t));
        float *wf = malloc((size_t)wn * sizeof(float));
        float *o1 = malloc((size_t)(on + 16) * sizeof(float));
        float *o2 = malloc((size_t)(on + 16) * sizeof(float));
        ck_assert(wh && wf && o1 && o2);
        for (int v = 0; v < 4; v++) {
            lk_elt wt = v == 0 ? LK_F32 : v == 1 ? LK_F16 : LK_BF16;
            const float *bp = v == 3 ? NULL : bias.p;
            const void *wp = w.p;
            if (wt != LK_F32) {
                for (int64_t i = 0; i < wn; i++)
                    wh[i] = rnd_half(&seed, wt);
                for (int64_t i = 0; i < wn; i++)
                    wf[i] = lk_elt_get(wh, wt, i);
                wp = wh;
            } else {
                memcpy(wf, w.p, (size_t)wn * sizeof(float));
            }
            for (int64_t i = 0; i < on + 16; i++)
                o1[i] = o2[i] = NAN;
            lc_pool_init(2);
            ck_assert_int_eq(lk_conv3x3(x.p, N, C, H, W, wp, wt, cout, bp, o1), 0);
            lc_pool_init(1);
            ck_assert_int_eq(lk_conv3x3(x.p, N, C, H, W, wp, wt, cout, bp, o2), 0);
            ck_assert_msg(!memcmp(o1, o2, (size_t)(on + 16) * sizeof(float)),
                          "case %zu: 1 and 2 threads differ", ci);
            for (int64_t i = on; i < on + 16; i++)
                ck_assert_msg(isnan(o1[i]), "case %zu wrote past the output", ci);
            double worst = 0, big = 0;
            for (int64_t i = 0; i < on; i += step) {
                int64_t xx = i % W, y = i / W % H, o = i / (W * H) % cout, n = i / (W * H * cout);
                double r = conv3x3_at(x.p, wf, bp, C, H, W, n, o, y, xx);
                double e = fabs(r - o1[i]);
                worst = !(e <= worst) ? e : worst; /* a NaN (not written) sticks */
                big = fabs(r) > big ? fabs(r) : big;
            }
            ck_assert_msg(worst <= 2e-6 * (1 + big), "case %zu (%d): %g off (outputs up to %g)",
                          ci, v, worst, big);
        }
        free(wh), free(wf), free(o1), free(o2), free(x.base), free(w.base), free(bias.base);
    }
    /* too few tiles (the direct GEMM is faster) or channels: not taken */
    float x[2 * 16 * 8 * 8] = {0}, w[16 * 16 * 9] = {0}, out[2 * 16 * 8 * 8];
    ck_assert_int_eq(lk_conv3x3(x, 2, 16, 8, 8, w, LK_F32, 16, NULL, out), -1);
    ck_assert_int_eq(lk_conv3x3(x, 1, 4, 16, 16, w, LK_F32, 16, NULL, out), -1);
    ck_assert_int_eq(lk_set_arch(LK_ARCH_REF), LK_ARCH_REF);
    ck_assert_int_eq(lk_conv3x3(x, 1, 16, 16, 16, w, LK_F32, 16, NULL, out), -1);
    lk_set_arch(LK_ARCH_AVX512);
}
END_TEST

/* each level's own im2col panels equal the portable packing, panel by
 * panel, for column ranges that start anywhere and end early */
START_TEST(test_im2col_pack)
{
#if defined(LUCID_X86)
    const lk_gemm_ukr *ukrs[] = {&lk_gemm_ukr_avx512, &lk_gemm_ukr_avx2};
    const lk_arch arch[] = {LK_ARCH_AVX512, LK_ARCH_AVX2};
    const lk_gemm_ukr *u = ukrs[_i];
    if (lk_set_arch(arch[_i]) != arch[_i] || !u->pack_b_im2col)
        return;
    uint64_t seed = 7;
    int nr = u->nr;
    for (size_t ci = 0; ci < sizeof conv_cases / sizeof *conv_cases; ci++) {
        conv_case cc = conv_cases[ci];
        int64_t OH = out_dim(cc.H, cc.kh, cc.sh, cc.ph, cc.dh);
        int64_t OW = out_dim(cc.W, cc.kw, cc.sw, cc.pw, cc.dw);
        int64_t K = cc.C * cc.kh * cc.kw, P = OH * OW;
        mat x = mat_new(1, cc.C * cc.H * cc.W, &seed);
        lk_im2col g = {x.p, cc.C, cc.H, cc.W, OH, OW, cc.kh, cc.kw,
                       cc.sh, cc.sw, cc.ph, cc.pw, cc.dh, cc.dw, 1, 0};
        size_t floats = (size_t)(3 * K * nr);
        float *d1 = aligned_alloc(64, floats * sizeof(float));
        float *d2 = aligned_alloc(64, floats * sizeof(float));
        ck_assert(d1 && d2);
        for (int64_t j0 = 0; j0 < P; j0 += 5) {
            int64_t ncols = P - j0 < 3 * nr - 7 ? P - j0 : 3 * nr - 7;
            int64_t npan = (ncols + nr - 1) / nr;
            memset(d1, 0xff, floats * sizeof(float));
            memset(d2, 0xff, floats * sizeof(float));
            for (int64_t q = 0; q < npan; q++) {
                int cols = (int)(ncols - q * nr < nr ? ncols - q * nr : nr);
                lk_im2col_pack_ref(&g, j0 + q * nr, cols, 0, K, nr, d1 + q * K * nr);
            }
            u->pack_b_im2col(&g, 0, K, j0, ncols, d2);
            ck_assert_msg(!memcmp(d1, d2, floats * sizeof(float)),
                          "%s: im2col case %zu columns %ld+%ld differ", u->name, ci, (long)j0,
                          (long)ncols);
            /* a k range starting mid-channel */
            int64_t k0 = K / 3, kc = K - k0 < 50 ? K - k0 : 50;
            memset(d1, 0xff, floats * sizeof(float));
            memset(d2, 0xff, floats * sizeof(float));
            for (int64_t q = 0; q < npan; q++) {
                int cols = (int)(ncols - q * nr < nr ? ncols - q * nr : nr);
                lk_im2col_pack_ref(&g, j0 + q * nr, cols, k0, kc, nr, d1 + q * kc * nr);
            }
            u->pack_b_im2col(&g, k0, kc, j0, ncols, d2);
            ck_assert_msg(!memcmp(d1, d2, floats * sizeof(float)),
                          "%s: im2col case %zu columns %ld+%ld rows %ld+%ld differ", u->name, ci,
                          (long)j0, (long)ncols, (long)k0, (long)kc);
        }
        free(d1), free(d2), free(x.base);
    }
#endif
}
END_TEST

/* ---- lk_softmax_exp ---- */

/* A row of n scores at an odd offset inside guard floats, so a write (or,
 * through NaN results, a read used) outside [0, n) shows. */
#define GUARD 20
static const float guard_val = 12345.f;

static float *row_new(int64_t n, int off)
{
    float *base = aligned_alloc(64, ((size_t)(n + 2 * GUARD) * sizeof(float) + 63) / 64 * 64);
    ck_assert_ptr_nonnull(base);
    for (int64_t i = 0; i < n + 2 * GUARD; i++)
        base[i] = guard_val;
    return base + GUARD - off;
}

static void guards_intact(const float *s, int64_t n, int off, const char *what)
{
    const float *base = s - (GUARD - off);
    for (int64_t i = 0; i < GUARD - off; i++)
        ck_assert_msg(base[i] == guard_val, "%s n=%ld: wrote before the row", what, (long)n);
    for (int64_t i = n; i < n + GUARD + off; i++)
        ck_assert_msg(s[i] == guard_val, "%s n=%ld: wrote past the row at %ld", what, (long)n,
                      (long)i);
}

/* scores in [-30, 30) with some -inf (masked) and far below the max */
static void row_fill(float *s, int64_t n, uint64_t *seed)
{
    for (int64_t i = 0; i < n; i++) {
        float u = rnd(seed);
        s[i] = 30.f * rnd(seed);
        if (u > 0.8f)
            s[i] = -INFINITY;
        else if (u < -0.9f)
            s[i] = -1e30f;
    }
}

/* every element against exp in double of the same float difference
 * (3 ulp), an exact 0 below LK_EXP_LO, the sum against a double sum of the
 * results */
static void check_softmax_row(const float *in, const float *out, int64_t n, float sum,
                              const char *what)
{
    float m = -INFINITY;
    for (int64_t i = 0; i < n; i++)
        m = in[i] > m ? in[i] : m;
    double total = 0;
    for (int64_t i = 0; i < n; i++) {
        float d = in[i] - m;
        if (d < LK_EXP_LO) {
            ck_assert_msg(out[i] == 0.f && !signbit(out[i]),
                          "%s n=%ld: exp(%g) = %g, expected an exact 0", what, (long)n, d, out[i]);
        } else {
            double want = exp((double)d);
            ck_assert_msg(fabs(out[i] - want) <= 3.0 * FLT_EPSILON * want,
                          "%s n=%ld [%ld]: exp(%.9g) = %.9g, expected %.9g", what, (long)n,
                          (long)i, d, out[i], want);
        }
        total += out[i];
    }
    ck_assert_msg(fabs(sum - total) <= (double)(n + 4) * FLT_EPSILON * total,
                  "%s n=%ld: sum %.9g, expected %.9g", what, (long)n, sum, total);
}

static const int64_t softmax_lengths[] = {1,  2,  3,  4,  5,  7,   8,   9,   15,  16,  17,
                                          31, 33, 63, 64, 65, 77,  100, 127, 129, 255, 1000,
                                          4096, 4109};

START_TEST(test_softmax_exp_values)
{
    lk_arch want = all_archs[_i];
    if (lk_set_arch(want) != want)
        return;
    uint64_t seed = 2024;
    for (size_t li = 0; li < sizeof softmax_lengths / sizeof *softmax_lengths; li++)
        for (int off = 0; off < 4; off += 3) {
            int64_t n = softmax_lengths[li];
            float *s = row_new(n, off), *in = malloc((size_t)n * sizeof(float));
            row_fill(s, n, &seed);
            s[(n * 7) / 11] = 2.5f; /* a finite entry, whatever the random draw */
            memcpy(in, s, (size_t)n * sizeof(float));
            float sum = lk_softmax_exp(s, n);
            check_softmax_row(in, s, n, sum, lk_softmax_name());
            guards_intact(s, n, off, lk_softmax_name());
            /* the same row again: the same bits */
            float *s2 = row_new(n, off);
            memcpy(s2, in, (size_t)n * sizeof(float));
            float sum2 = lk_softmax_exp(s2, n);
            ck_assert(!memcmp(&sum, &sum2, sizeof sum));
            ck_assert(!memcmp(s, s2, (size_t)n * sizeof(float)));
            free(s - (GUARD - off)), free(s2 - (GUARD - off)), free(in);
        }
}
END_TEST

/* exact cases: equal scores give exactly 1 each and a sum of n; a single
 * finite key among masked ones gives 1 and zeros; the cut at LK_EXP_LO */
START_TEST(test_softmax_exp_exact)
{
    lk_arch want = all_archs[_i];
    if (lk_set_arch(want) != want)
        return;
    for (size_t li = 0; li < sizeof softmax_lengths / sizeof *softmax_lengths; li++) {
        int64_t n = softmax_lengths[li];
        float *s = row_new(n, 1);
        for (int64_t i = 0; i < n; i++)
            s[i] = -3.75f;
        float sum = lk_softmax_exp(s, n);
        ck_assert_msg(sum == (float)n, "%s n=%ld: sum %g", lk_softmax_name(), (long)n, sum);
        for (int64_t i = 0; i < n; i++)
            ck_assert_msg(s[i] == 1.f, "%s n=%ld [%ld] = %g", lk_softmax_name(), (long)n,
                          (long)i, s[i]);
        for (int64_t i = 0; i < n; i++)
            s[i] = i == n - 1 ? 7.f : i % 2 ? -INFINITY : -1e30f;
        sum = lk_softmax_exp(s, n);
        ck_assert(sum == 1.f);
        for (int64_t i = 0; i < n; i++)
            ck_assert_msg(s[i] == (i == n - 1 ? 1.f : 0.f), "%s n=%ld [%ld] = %g",
                          lk_softmax_name(), (long)n, (long)i, s[i]);
        guards_intact(s, n, 1, lk_softmax_name());
        free(s - (GUARD - 1));
    }
    /* max 10: 10 - 97.5 is below the cut, 10 - 86.5 above it */
    float s[5] = {10.f, -87.5f, -76.5f, -INFINITY, -FLT_MAX};
    float sum = lk_softmax_exp(s, 5);
    ck_assert(s[0] == 1.f && s[1] == 0.f && s[3] == 0.f && s[4] == 0.f);
    ck_assert_msg(fabs(s[2] - exp(-86.5)) <= 3.0 * FLT_EPSILON * exp(-86.5), "%s: exp(-86.5) = %g",
                  lk_softmax_name(), s[2]);
    ck_assert(sum == 1.f);
}
END_TEST

/* every key masked: zeros and a 0 sum; NaN propagates; n == 0 */
START_TEST(test_softmax_exp_special)
{
    lk_arch want = all_archs[_i];
    if (lk_set_arch(want) != want)
        return;
    for (size_t li = 0; li < sizeof softmax_lengths / sizeof *softmax_lengths; li++) {
        int64_t n = softmax_lengths[li];
        float *s = row_new(n, 3);
        for (int64_t i = 0; i < n; i++)
            s[i] = -INFINITY;
        ck_assert(lk_softmax_exp(s, n) == 0.f);
        for (int64_t i = 0; i < n; i++)
            ck_assert_msg(s[i] == 0.f, "%s n=%ld: masked row [%ld] = %g", lk_softmax_name(),
                          (long)n, (long)i, s[i]);
        for (int64_t i = 0; i < n; i++)
            s[i] = (float)(i % 5);
        s[n / 2] = NAN;
        float sum = lk_softmax_exp(s, n);
        ck_assert_msg(isnan(sum) && isnan(s[n / 2]), "%s n=%ld: NaN lost (sum %g)",
                      lk_softmax_name(), (long)n, sum);
        guards_intact(s, n, 3, lk_softmax_name());
        free(s - (GUARD - 3));
    }
    float one = guard_val;
    ck_assert(lk_softmax_exp(&one, 0) == 0.f && one == guard_val);
}
END_TEST

/* the column version: each column against exp in double as a row would
 * be, columns of -inf give zeros and a 0 sum, the padding between rows
 * (ld = cols + 3) untouched, NaN stays in its column */
START_TEST(test_softmax_exp_cols)
{
    lk_arch want = all_archs[_i];
    if (lk_set_arch(want) != want)
        return;
    const int64_t cs[] = {1, 3, 4, 5, 8, 15, 16, 17, 33, 64, 65, 100};
    const int64_t rs[] = {1, 7, 64, 65, 300};
    uint64_t seed = 404;
    for (size_t ci = 0; ci < sizeof cs / sizeof *cs; ci++)
        for (size_t ri = 0; ri < sizeof rs / sizeof *rs; ri++) {
            int64_t cols = cs[ci], rows = rs[ri], ld = cols + 3;
            float *s = row_new(rows * ld, 2), *in = malloc((size_t)(rows * ld) * sizeof(float));
            float *sum = row_new(cols, 1), *cin = malloc((size_t)rows * sizeof(float));
            float *cout = malloc((size_t)rows * sizeof(float));
            row_fill(s, rows * ld, &seed);
            for (int64_t r = 0; r < rows; r++)
                for (int64_t c = cols; c < ld; c++)
                    s[r * ld + c] = guard_val;
            for (int64_t c = 0; c < cols; c++)
                s[((c * 5) % rows) * ld + c] = 2.5f; /* a finite entry in each column */
            for (int64_t r = 0; r < rows; r++) {
                s[r * ld + (cols - 1) / 2] = -INFINITY; /* a fully masked column */
                if (cols > 2)
                    s[r * ld + cols - 1] = 1.5f; /* equal scores: 1 each */
            }
            if (cols > 3)
                s[(rows / 2) * ld + cols - 2] = NAN;
            memcpy(in, s, (size_t)(rows * ld) * sizeof(float));
            /* with the maxima given (NaN ignored): the same bits as without */
            float *s2 = malloc((size_t)(rows * ld) * sizeof(float));
            float *mx = malloc((size_t)cols * sizeof(float)), *sum2 = malloc((size_t)cols * 4);
            memcpy(s2, s, (size_t)(rows * ld) * sizeof(float));
            for (int64_t c = 0; c < cols; c++) {
                mx[c] = -INFINITY;
                for (int64_t r = 0; r < rows; r++)
                    mx[c] = s[r * ld + c] > mx[c] ? s[r * ld + c] : mx[c];
            }
            lk_softmax_exp_cols(s2, rows, cols, ld, mx, sum2);
            lk_softmax_exp_cols(s, rows, cols, ld, NULL, sum);
            ck_assert_msg(!memcmp(s, s2, (size_t)(rows * ld) * sizeof(float)) &&
                              !memcmp(sum, sum2, (size_t)cols * sizeof(float)),
                          "%s cols: given maxima change the result", lk_softmax_name());
            free(s2), free(mx), free(sum2);
            guards_intact(sum, cols, 1, "cols sum");
            guards_intact(s, rows * ld, 2, "cols");
            for (int64_t r = 0; r < rows; r++)
                for (int64_t c = cols; c < ld; c++)
                    ck_assert_msg(s[r * ld + c] == guard_val, "%s cols: wrote row padding",
                                  lk_softmax_name());
            for (int64_t c = 0; c < cols; c++) {
                for (int64_t r = 0; r < rows; r++) {
                    cin[r] = in[r * ld + c];
                    cout[r] = s[r * ld + c];
                }
                if (c == (cols - 1) / 2) {
                    ck_assert_msg(sum[c] == 0.f, "%s cols: masked column sum %g",
                                  lk_softmax_name(), sum[c]);
                    for (int64_t r = 0; r < rows; r++)
                        ck_assert(cout[r] == 0.f);
                } else if (cols > 3 && c == cols - 2) {
                    ck_assert_msg(isnan(sum[c]) && isnan(cout[rows / 2]), "%s cols: NaN lost",
                                  lk_softmax_name());
                } else {
                    check_softmax_row(cin, cout, rows, sum[c], lk_softmax_name());
                    if (cols > 2 && c == cols - 1)
                        ck_assert_msg(sum[c] == (float)rows, "%s cols: equal scores sum %g",
                                      lk_softmax_name(), sum[c]);
                }
            }
            free(s - (GUARD - 2)), free(sum - (GUARD - 1)), free(in), free(cin), free(cout);
        }
}
END_TEST

/* each SIMD level against the portable kernel on the same rows */
START_TEST(test_softmax_exp_matches_ref)
{
    lk_arch want = all_archs[_i];
    if (lk_set_arch(want) != want)
        return;
    uint64_t seed = 7;
    for (size_t li = 0; li < sizeof softmax_lengths / sizeof *softmax_lengths; li++) {
        int64_t n = softmax_lengths[li];
        float *s = row_new(n, 1), *r = row_new(n, 1);
        row_fill(s, n, &seed);
        s[0] = -5.f;
        memcpy(r, s, (size_t)n * sizeof(float));
        float sum = lk_softmax_exp(s, n), rsum = lk_softmax_exp_ref(r, n);
        for (int64_t i = 0; i < n; i++)
            ck_assert_msg(fabs(s[i] - r[i]) <= 4.0 * FLT_EPSILON * r[i],
                          "%s vs ref n=%ld [%ld]: %.9g vs %.9g", lk_softmax_name(), (long)n,
                          (long)i, s[i], r[i]);
        ck_assert_msg(fabs(sum - rsum) <= (double)(n + 4) * FLT_EPSILON * rsum,
                      "%s vs ref n=%ld: sum %.9g vs %.9g", lk_softmax_name(), (long)n, sum, rsum);
        free(s - (GUARD - 1)), free(r - (GUARD - 1));
    }
}
END_TEST

/* ---- lk_sgemm_thin ---- */

/* C = diag(scale) A B against the double product (fp32 summation bound),
 * C's padding untouched; strided operands from mat_new */
static void check_thin(int ta, int64_t m, int64_t n, int64_t k, int with_scale, uint64_t seed)
{
    mat a = ta ? mat_new(k, m, &seed) : mat_new(m, k, &seed);
    mat b = mat_new(k, n, &seed), c = mat_new(m, n, &seed);
    /* C is never read: NaN there; a sentinel in its padding (a NaN there
     * could come from B's NaN padding) */
    for (int64_t i = -1; i < m * c.ld + 16; i++)
        c.p[i] = i >= 0 && i % c.ld < n && i / c.ld < m ? NAN : 777.f;
    float *scale = malloc((size_t)m * sizeof(float));
    for (int64_t i = 0; i < m; i++)
        scale[i] = 0.25f + (float)(i % 5);
    float *cmax = row_new(n, 1);
    lk_sgemm_thin(ta, m, n, k, a.p, a.ld, b.p, b.ld, with_scale ? scale : NULL, c.p, c.ld, cmax);
    guards_intact(cmax, n, 1, "thin cmax");
    for (int64_t j = 0; j < n; j++) {
        float mx = -INFINITY;
        for (int64_t i = 0; i < m; i++)
            mx = c.p[i * c.ld + j] > mx ? c.p[i * c.ld + j] : mx;
        ck_assert_msg(cmax[j] == mx, "%s thin cmax[%ld] = %g, expected %g", lk_sgemm_name(),
                      (long)j, cmax[j], mx);
    }
    free(cmax - (GUARD - 1));
    double gamma = 2.0 * (double)(k + 3) * FLT_EPSILON;
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            double sum = 0, mag = 0;
            for (int64_t p = 0; p < k; p++) {
                double t = (double)(ta ? a.p[p * a.ld + i] : a.p[i * a.ld + p]) *
                           b.p[p * b.ld + j];
                sum += t;
                mag += fabs(t);
            }
            double sc = with_scale ? scale[i] : 1.0;
            double got = c.p[i * c.ld + j], bound = gamma * sc * mag + 1e-30;
            ck_assert_msg(fabs(got - sc * sum) <= bound,
                          "%s thin ta=%d %ldx%ldx%ld scale %d: C[%ld,%ld] = %.9g, expected %.9g",
                          lk_sgemm_name(), ta, (long)m, (long)n, (long)k, with_scale, (long)i,
                          (long)j, got, sc * sum);
        }
    for (int64_t i = -1; i < m * c.ld + 16; i++)
        ck_assert_msg(i >= 0 && i % c.ld < n && i / c.ld < m ? 1 : c.p[i] == 777.f,
                      "%s thin %ldx%ldx%ld wrote C padding at %ld", lk_sgemm_name(), (long)m,
                      (long)n, (long)k, (long)i);
    /* the same operands again: the same bits */
    mat c2 = mat_copy(&c);
    lk_sgemm_thin(ta, m, n, k, a.p, a.ld, b.p, b.ld, with_scale ? scale : NULL, c2.p, c2.ld,
                  NULL);
    ck_assert(!memcmp(c.base, c2.base, (size_t)(m * c.ld + 1) * sizeof(float)));
    free(a.base), free(b.base), free(c.base), free(c2.base), free(scale);
}

START_TEST(test_sgemm_thin)
{
    lc_pool_init(2);
    lk_arch want = all_archs[_i];
    if (lk_set_arch(want) != want)
        return;
    /* n: one vector, a part, 40 = 2.5 vectors, 80 = 3 + 2, 160 = 4 + 3 + 3,
     * odd widths; k: one step, across k blocks; m: tails of every tile */
    const int64_t ns[] = {1, 7, 16, 17, 40, 64, 80, 100, 160, 200};
    const int64_t ks[] = {1, 37, 700, 1100};
    const int64_t ms[] = {1, 5, 13, 64};
    uint64_t seed = 31;
    for (int ta = 0; ta < 2; ta++) {
        for (size_t ni = 0; ni < sizeof ns / sizeof *ns; ni++)
            for (size_t ki = 0; ki < sizeof ks / sizeof *ks; ki++)
                check_thin(ta, ms[(ni + ki + ta) % 4], ns[ni], ks[ki], (int)((ni + ki) & 1),
                           seed++);
        for (size_t mi = 0; mi < sizeof ms / sizeof *ms; mi++)
            check_thin(ta, ms[mi], 40, 520, 1, seed++);
        /* attention's shapes: keys x query block x head size, and back */
        check_thin(ta, 700, 64, 40, 0, seed++);
        check_thin(ta, 40, 64, 700, 0, seed++);
    }
    /* k == 0: zeros, C not read */
    float c[6] = {NAN, NAN, NAN, NAN, NAN, NAN}, a[1] = {1}, b[1] = {1}, mx[3] = {5, 5, 5};
    lk_sgemm_thin(0, 2, 3, 0, a, 1, b, 3, NULL, c, 3, mx);
    for (int i = 0; i < 6; i++)
        ck_assert(c[i] == 0.f);
    for (int i = 0; i < 3; i++)
        ck_assert(mx[i] == 0.f);
    /* no rows: every maximum -inf */
    lk_sgemm_thin(0, 0, 3, 4, a, 1, b, 3, NULL, c, 3, mx);
    for (int i = 0; i < 3; i++)
        ck_assert(mx[i] == -INFINITY);
}
END_TEST

START_TEST(test_arch_select)
{
    ck_assert_int_eq(lk_set_arch(LK_ARCH_REF), LK_ARCH_REF);
    ck_assert_str_eq(lk_sgemm_name(), "ref");
    ck_assert_int_eq(lk_current_arch(), LK_ARCH_REF);
    lk_arch got = lk_set_arch(LK_ARCH_AVX512);
    ck_assert_int_le(got, LK_ARCH_AVX512);
    ck_assert_int_eq(lk_current_arch(), got);
    ck_assert_str_eq(lk_arch_name(got), got == LK_ARCH_AVX512 ? "avx512"
                                         : got == LK_ARCH_AVX2 ? "avx2"
                                                               : "ref");
}
END_TEST

int main(void)
{
    Suite *s = suite_create("kernels");
    TCase *tc = tcase_create("sgemm");
    tcase_set_timeout(tc, 120);
    int na = (int)(sizeof all_archs / sizeof *all_archs);
    tcase_add_loop_test(tc, test_sgemm_odd_shapes, 0, na);
    tcase_add_loop_test(tc, test_sgemm_beta0_ignores_nan, 0, na);
    tcase_add_loop_test(tc, test_sgemm_large, 0, na);
    tcase_add_loop_test(tc, test_sgemm_k0, 0, na);
    tcase_add_loop_test(tc, test_sgemm_exact, 0, na);
    tcase_add_loop_test(tc, test_sgemm_matches_ref, 0, na);
    tcase_add_loop_test(tc, test_sgemm_thread_invariant, 0, na);
    tcase_add_loop_test(tc, test_sgemm_typed, 0, na);
    tcase_add_test(tc, test_elt_get);
    tcase_add_loop_test(tc, test_sconv, 0, na);
    tcase_add_loop_test(tc, test_sconv_images, 0, na);
    tcase_add_loop_test(tc, test_im2col_pack, 0, 2);
    tcase_add_test(tc, test_conv3x3_wino);
    tcase_add_test(tc, test_arch_select);
    suite_add_tcase(s, tc);
    TCase *ts = tcase_create("softmax");
    tcase_set_timeout(ts, 60);
    tcase_add_loop_test(ts, test_softmax_exp_values, 0, na);
    tcase_add_loop_test(ts, test_softmax_exp_exact, 0, na);
    tcase_add_loop_test(ts, test_softmax_exp_special, 0, na);
    tcase_add_loop_test(ts, test_softmax_exp_matches_ref, 0, na);
    tcase_add_loop_test(ts, test_softmax_exp_cols, 0, na);
    tcase_add_loop_test(ts, test_sgemm_thin, 0, na);
    suite_add_tcase(s, ts);
    /* Not lt_run: its pool is started before Check forks each test, and a
     * forked child has no worker threads. Each test starts its own pool. */
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
