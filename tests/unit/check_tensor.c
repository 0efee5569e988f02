/* The tensor core: dtypes and their conversions, views sharing storage,
 * copies between strided tensors, errors, and the thread pool. */
#include "testutil.h"

#include <stdint.h>
#include <unistd.h>

static lc_tensor *iota(int ndim, const int64_t *shape)
{
    lc_tensor *t = lc_tensor_new(LC_F32, ndim, shape);
    ck_assert_ptr_nonnull(t);
    float *p = lc_tensor_data(t);
    for (int64_t i = 0; i < lc_tensor_numel(t); i++)
        p[i] = (float)i;
    return t;
}

START_TEST(test_dtype_table)
{
    ck_assert_int_eq(lc_dtype_size(LC_F32), 4);
    ck_assert_int_eq(lc_dtype_size(LC_F16), 2);
    ck_assert_int_eq(lc_dtype_size(LC_BF16), 2);
    ck_assert_int_eq(lc_dtype_size(LC_I64), 8);
    ck_assert_int_eq(lc_dtype_size(LC_U8), 1);
    ck_assert_int_eq(lc_dtype_size(LC_F64), 8);
    lc_dtype d;
    ck_assert_int_eq(lc_dtype_from_name("float16", &d), LC_OK);
    ck_assert_int_eq(d, LC_F16);
    ck_assert_int_eq(lc_dtype_from_name("bf16", &d), LC_OK);
    ck_assert_int_eq(d, LC_BF16);
    ck_assert_int_eq(lc_dtype_from_name("f128", &d), LC_ERR);
    ck_assert_ptr_nonnull(strstr(lc_errmsg(), "unknown dtype 'f128'"));
}
END_TEST

START_TEST(test_f16_exact_values)
{
    /* bit patterns from IEEE 754 binary16 */
    ck_assert_uint_eq(lc_f32_to_f16(1.0f), 0x3c00);
    ck_assert_uint_eq(lc_f32_to_f16(-2.0f), 0xc000);
    ck_assert_uint_eq(lc_f32_to_f16(65504.0f), 0x7bff);         /* largest finite */
    ck_assert_uint_eq(lc_f32_to_f16(65520.0f), 0x7c00);         /* rounds to inf */
    ck_assert_uint_eq(lc_f32_to_f16(5.9604645e-8f), 0x0001);    /* smallest subnormal */
    ck_assert_uint_eq(lc_f32_to_f16(2.9802322e-8f), 0x0000);    /* half of it: ties to even (0) */
    ck_assert_uint_eq(lc_f32_to_f16(1.0f + 1.0f / 2048), 0x3c00); /* tie below: even */
    ck_assert_uint_eq(lc_f32_to_f16(1.0f + 3.0f / 2048), 0x3c02); /* tie above: even */
    ck_assert_uint_eq(lc_f32_to_f16(INFINITY), 0x7c00);
    ck_assert(isnan(lc_f16_to_f32(lc_f32_to_f16(NAN))));
    ck_assert(lc_f16_to_f32(0x0001) == 5.9604645e-8f);
    ck_assert(lc_f16_to_f32(0x03ff) == 6.0975552e-5f); /* largest subnormal */
    ck_assert(lc_f16_to_f32(0x7bff) == 65504.0f);
    /* every finite half survives f16 -> f32 -> f16 */
    for (uint32_t h = 0; h < 0x10000; h++) {
        if ((h & 0x7c00) == 0x7c00)
            continue;
        ck_assert_uint_eq(lc_f32_to_f16(lc_f16_to_f32((uint16_t)h)), h);
    }
}
END_TEST

START_TEST(test_bf16_rounding)
{
    ck_assert_uint_eq(lc_f32_to_bf16(1.0f), 0x3f80);
    float x;
    uint32_t bits = 0x3f808000; /* exactly between 0x3f80 and 0x3f81: even */
    memcpy(&x, &bits, 4);
    ck_assert_uint_eq(lc_f32_to_bf16(x), 0x3f80);
    bits = 0x3f818000; /* between 0x3f81 and 0x3f82: even is 0x3f82 */
    memcpy(&x, &bits, 4);
    ck_assert_uint_eq(lc_f32_to_bf16(x), 0x3f82);
    ck_assert(lc_bf16_to_f32(0x3f80) == 1.0f);
    ck_assert(isnan(lc_bf16_to_f32(lc_f32_to_bf16(NAN))));
}
END_TEST

START_TEST(test_views_share_storage)
{
    int64_t shape[3] = {2, 3, 4};
    lc_tensor *t = iota(3, shape);
    /* narrow: rows 1..2 of dim 1 */
    lc_tensor *n = lc_tensor_narrow(t, 1, 1, 2);
    ck_assert_ptr_nonnull(n);
    ck_assert_ptr_eq(n->storage, t->storage);
    ck_assert_int_eq(n->shape[1], 2);
    ck_assert(lc_tensor_get(n, 0) == 4.0);  /* [0,1,0] */
    ck_assert(lc_tensor_get(n, 8) == 16.0); /* [1,1,0] */
    ck_assert(!lc_tensor_is_contiguous(n));
    /* writes through a view are seen by the base */
    lc_tensor_set(n, 0, -1.0);
    ck_assert(((float *)lc_tensor_data(t))[4] == -1.0f);
    /* permute: [4,2,3] with element [k,i,j] = t[i,j,k] */
    int perm[3] = {2, 0, 1};
    lc_tensor *p = lc_tensor_permute(t, perm);
    ck_assert_int_eq(p->shape[0], 4);
    ck_assert(lc_tensor_get(p, 1 * 6 + 1 * 3 + 2) == 1 * 12 + 2 * 4 + 1);
    /* contiguous copy of the permuted view */
    lc_tensor *c = lc_tensor_contiguous(p);
    ck_assert(lc_tensor_is_contiguous(c));
    ck_assert_ptr_ne(c->storage, t->storage);
    for (int64_t i = 0; i < 24; i++)
        ck_assert(lc_tensor_get(c, i) == lc_tensor_get(p, i));
    /* select drops the dimension */
    lc_tensor *s = lc_tensor_select(t, 2, 3);
    ck_assert_int_eq(s->ndim, 2);
    ck_assert(lc_tensor_get(s, 5) == 1 * 12 + 2 * 4 + 3);
    lc_tensor_free(s);
    lc_tensor_free(c);
    lc_tensor_free(p);
    lc_tensor_free(n);
    lc_tensor_free(t);
}
END_TEST

START_TEST(test_view_expand_squeeze)
{
    int64_t shape[2] = {3, 4};
    lc_tensor *t = iota(2, shape);
    int64_t vs[3] = {2, -1, 2};
    lc_tensor *v = lc_tensor_view(t, 3, vs);
    ck_assert_ptr_nonnull(v);
    ck_assert_int_eq(v->shape[1], 3);
    ck_assert_ptr_eq(v->storage, t->storage);
    int64_t bad[2] = {5, -1};
    ck_assert_ptr_null(lc_tensor_view(t, 2, bad));
    ck_assert_ptr_nonnull(strstr(lc_errmsg(), "cannot infer"));
    int64_t bad2[2] = {5, 5};
    ck_assert_ptr_null(lc_tensor_view(t, 2, bad2));
    ck_assert_ptr_nonnull(strstr(lc_errmsg(), "has 25 elements but the tensor [3,4] has 12"));
    /* expand a [3,1] column to [2,3,5] with stride 0 */
    lc_tensor *col = lc_tensor_narrow(t, 1, 2, 1);
    int64_t es[3] = {2, 3, 5};
    lc_tensor *e = lc_tensor_expand(col, 3, es);
    ck_assert_ptr_nonnull(e);
    ck_assert_int_eq(e->stride[0], 0);
    ck_assert_int_eq(e->stride[2], 0);
    ck_assert(lc_tensor_get(e, 1 * 15 + 2 * 5 + 4) == 2 * 4 + 2);
    int64_t es_bad[2] = {3, 7};
    ck_assert_ptr_null(lc_tensor_expand(t, 2, es_bad));
    lc_tensor *u = lc_tensor_unsqueeze(t, 0);
    ck_assert_int_eq(u->ndim, 3);
    ck_assert_int_eq(u->shape[0], 1);
    lc_tensor *sq = lc_tensor_squeeze(u, -100);
    ck_assert_int_eq(sq->ndim, 2);
    lc_tensor_free(sq);
    lc_tensor_free(u);
    lc_tensor_free(e);
    lc_tensor_free(col);
    lc_tensor_free(v);
    lc_tensor_free(t);
}
END_TEST

START_TEST(test_conversions_and_copy)
{
    int64_t shape[2] = {2, 3};
    float vals[6] = {-1.5f, 0.0f, 2.25f, 300.0f, -0.0001f, 1e-8f};
    lc_tensor *t = lt_tensor(2, shape, vals);
    lc_tensor *h = lc_tensor_to(t, LC_F16);
    lc_tensor *b = lc_tensor_to(t, LC_BF16);
    lc_tensor *i = lc_tensor_to(t, LC_I32);
    lc_tensor *u = lc_tensor_to(t, LC_U8);
    lc_tensor *d = lc_tensor_to(t, LC_F64);
    ck_assert(lc_tensor_get(h, 2) == 2.25);
    ck_assert(lc_tensor_get(h, 3) == 300.0);
    ck_assert(lc_tensor_get(b, 0) == -1.5);
    ck_assert(lc_tensor_get(i, 0) == -1.0); /* truncation toward zero, as torch */
    ck_assert(lc_tensor_get(i, 3) == 300.0);
    ck_assert(lc_tensor_get(u, 0) == 0.0);   /* saturates */
    ck_assert(lc_tensor_get(u, 3) == 255.0);
    ck_assert(lc_tensor_get(d, 2) == 2.25);
    /* copy into a transposed destination converts and scatters */
    int64_t ts[2] = {3, 2};
    lc_tensor *dst = lc_tensor_zeros(LC_F64, 2, ts);
    lc_tensor *dt = lc_tensor_transpose(dst, 0, 1);
    ck_assert_int_eq(lc_tensor_copy_(dt, t), LC_OK);
    ck_assert(lc_tensor_get(dst, 2 * 2 + 1) == lc_tensor_get(t, 1 * 3 + 2)); /* dst[2][1] = t[1][2] */
    /* broadcasting copy of a scalar and a shape mismatch */
    lc_tensor *one = lc_tensor_scalar_f32(7.0f);
    ck_assert_int_eq(lc_tensor_copy_(t, one), LC_OK);
    ck_assert(lc_tensor_get(t, 5) == 7.0);
    int64_t s4[1] = {4};
    lc_tensor *four = lc_tensor_zeros(LC_F32, 1, s4);
    ck_assert_int_eq(lc_tensor_copy_(t, four), LC_ERR);
    ck_assert_ptr_nonnull(strstr(lc_errmsg(), "copy: expand: [4] cannot expand to [2,3]"));
    lc_tensor *to[] = {four, one, dt, dst, d, u, i, b, h, t};
    for (size_t k = 0; k < sizeof to / sizeof *to; k++)
        lc_tensor_free(to[k]);
}
END_TEST

START_TEST(test_bad_shapes)
{
    int64_t neg[2] = {2, -3};
    ck_assert_ptr_null(lc_tensor_new(LC_F32, 2, neg));
    ck_assert_ptr_nonnull(strstr(lc_errmsg(), "negative size"));
    int64_t huge[3] = {INT64_C(1) << 40, INT64_C(1) << 40, 4};
    ck_assert_ptr_null(lc_tensor_new(LC_F32, 3, huge));
    int64_t seven[7] = {1, 1, 1, 1, 1, 1, 1};
    ck_assert_ptr_null(lc_tensor_new(LC_F32, 7, seven));
    ck_assert_ptr_nonnull(strstr(lc_errmsg(), "at most 6"));
    int64_t s[2] = {2, 3};
    lc_tensor *t = lc_tensor_zeros(LC_F32, 2, s);
    ck_assert_ptr_null(lc_tensor_narrow(t, 1, 2, 2));
    ck_assert_ptr_nonnull(strstr(lc_errmsg(), "narrow: [2, 4) outside dimension 2 of size 3"));
    ck_assert_ptr_null(lc_tensor_select(t, 5, 0));
    int perm[2] = {0, 0};
    ck_assert_ptr_null(lc_tensor_permute(t, perm));
    lc_tensor_free(t);
}
END_TEST

START_TEST(test_live_bytes_accounting)
{
    size_t before = lc_tensor_live_bytes();
    int64_t s[1] = {1000};
    lc_tensor *t = lc_tensor_new(LC_F64, 1, s);
    ck_assert_uint_eq(lc_tensor_live_bytes(), before + 8000);
    lc_tensor *v = lc_tensor_narrow(t, 0, 10, 10); /* views allocate no storage */
    ck_assert_uint_eq(lc_tensor_live_bytes(), before + 8000);
    lc_tensor_free(t);
    ck_assert_uint_eq(lc_tensor_live_bytes(), before + 8000); /* the view keeps it */
    lc_tensor_free(v);
    ck_assert_uint_eq(lc_tensor_live_bytes(), before);
}
END_TEST

/* each chunk writes its own slot: the pool must cover [0, n) exactly once */
static void mark(void *ctx, int64_t b, int64_t e)
{
    int *hits = ctx;
    for (int64_t i = b; i < e; i++)
        __atomic_add_fetch(&hits[i], 1, __ATOMIC_RELAXED);
}

/* Big buffers are recycled: freed ones are handed out again whole, split,
 * or moved together into a larger one. Whatever the cache does, a live
 * tensor's contents never change and a new one is fully writable. */
static void fill_pattern(lc_tensor *t, float seed)
{
    float *p = lc_tensor_data(t);
    for (int64_t i = 0; i < lc_tensor_numel(t); i++)
        p[i] = seed + (float)(i % 1000);
}

static int has_pattern(const lc_tensor *t, float seed)
{
    const float *p = lc_tensor_data((lc_tensor *)t);
    for (int64_t i = 0; i < lc_tensor_numel(t); i++)
        if (p[i] != seed + (float)(i % 1000))
            return 0;
    return 1;
}

START_TEST(test_big_buffer_recycling)
{
    lc_tensor_cache_trim();
    /* sizes in floats: 1.5, 3, 5 and 9 MB worth, kept alive in turns */
    const int64_t sizes[] = {393216, 786432, 1310720, 2359296, 600000, 5000000};
    lc_tensor *keep = NULL;
    for (int round = 0; round < 4; round++) {
        lc_tensor *t[6];
        for (int i = 0; i < 6; i++) {
            int64_t n = sizes[(i + round) % 6];
            t[i] = lc_tensor_new(LC_F32, 1, &n);
            ck_assert_ptr_nonnull(t[i]);
            fill_pattern(t[i], (float)(round * 10 + i));
        }
        if (keep)
            ck_assert_msg(has_pattern(keep, 99.f), "a live tensor changed (round %d)", round);
        /* free all but one, then ask for more than any single freed block */
        for (int i = 0; i < 6; i++) {
            ck_assert(has_pattern(t[i], (float)(round * 10 + i)));
            if (i != round % 6)
                lc_tensor_free(t[i]);
        }
        int64_t big = 8000000 + round * 1000000;
        lc_tensor *b = lc_tensor_new(LC_F32, 1, &big);
        ck_assert_ptr_nonnull(b);
        fill_pattern(b, 7.f);
        ck_assert(has_pattern(t[round % 6], (float)(round * 10 + round % 6)));
        ck_assert(has_pattern(b, 7.f));
        if (keep)
            ck_assert_msg(has_pattern(keep, 99.f), "a live tensor changed (round %d)", round);
        lc_tensor_free(t[round % 6]);
        lc_tensor_free(keep);
        keep = b;
        fill_pattern(keep, 99.f);
    }
    lc_tensor_free(keep);
    lc_tensor_cache_trim();
}
END_TEST

/* Permuted views made contiguous (the transposing fast path for 4-byte
 * elements, and the general one) against indexing by hand, for all 24
 * orders of a 4-d tensor with odd sizes */
START_TEST(test_permute_copies)
{
    lc_pool_init(2);
    const int64_t shape[4] = {3, 5, 37, 41}; /* the unit-stride dim past a 32-tile */
    lc_tensor *t = lc_tensor_new(LC_F32, 4, shape);
    ck_assert_ptr_nonnull(t);
    float *tp = lc_tensor_data(t);
    for (int64_t i = 0; i < lc_tensor_numel(t); i++)
        tp[i] = (float)i;
    int perms = 0;
    for (int p0 = 0; p0 < 4; p0++)
        for (int p1 = 0; p1 < 4; p1++)
            for (int p2 = 0; p2 < 4; p2++) {
                int p3 = 6 - p0 - p1 - p2;
                if (p0 == p1 || p0 == p2 || p1 == p2 || p3 < 0 || p3 > 3 || p3 == p0 ||
                    p3 == p1 || p3 == p2)
                    continue;
                const int perm[4] = {p0, p1, p2, p3};
                lc_tensor *v = lc_tensor_permute(t, perm);
                lc_tensor *c = v ? lc_tensor_contiguous(v) : NULL;
                ck_assert_ptr_nonnull(c);
                const float *cp = lc_tensor_data(c);
                int64_t idx[4], n = 0;
                for (idx[0] = 0; idx[0] < shape[p0]; idx[0]++)
                    for (idx[1] = 0; idx[1] < shape[p1]; idx[1]++)
                        for (idx[2] = 0; idx[2] < shape[p2]; idx[2]++)
                            for (idx[3] = 0; idx[3] < shape[p3]; idx[3]++) {
                                int64_t src[4];
                                for (int d = 0; d < 4; d++)
                                    src[perm[d]] = idx[d];
                                float want = (float)(((src[0] * shape[1] + src[1]) * shape[2] +
                                                      src[2]) * shape[3] + src[3]);
                                ck_assert_msg(cp[n] == want, "perm %d%d%d%d element %ld: %g, want %g",
                                              p0, p1, p2, p3, (long)n, cp[n], want);
                                n++;
                            }
                lc_tensor_free(v);
                lc_tensor_free(c);
                perms++;
            }
    ck_assert_int_eq(perms, 24);
    lc_tensor_free(t);
}
END_TEST

START_TEST(test_pool_covers_range)
{
    for (int threads = 1; threads <= 3; threads++) {
        ck_assert_int_eq(lc_pool_init(threads), LC_OK);
        ck_assert_int_eq(lc_pool_threads(), threads);
        for (int64_t n = 1; n < 300; n += 37) {
            int hits[300] = {0};
            ck_assert_int_eq(lc_parallel_for(n, 7, mark, hits), LC_OK);
            for (int64_t i = 0; i < n; i++)
                ck_assert_int_eq(hits[i], 1);
            ck_assert_int_eq(hits[n], 0);
        }
    }
    /* jobs back to back (the workers still spinning) and after a pause
     * long enough that they block: both hand-offs run every chunk once */
    ck_assert_int_eq(lc_pool_init(2), LC_OK);
    for (int rep = 0; rep < 2000; rep++) {
        int hits[64] = {0};
        ck_assert_int_eq(lc_parallel_for(64, 1, mark, hits), LC_OK);
        for (int i = 0; i < 64; i++)
            ck_assert_int_eq(hits[i], 1);
        if (rep % 500 == 499)
            usleep(5000);
    }
    /* an interrupt request stops the work and reports it */
    lc_interrupt_request();
    int hits[10] = {0};
    ck_assert_int_eq(lc_parallel_for(10, 1, mark, hits), LC_ERR);
    ck_assert_str_eq(lc_errmsg(), "interrupted");
    lc_interrupt_clear();
    ck_assert_int_eq(lc_parallel_for(10, 1, mark, hits), LC_OK);
}
END_TEST

START_TEST(test_error_prefix)
{
    lc_err("tensor 'x': shape [2], expected [3]");
    lc_err_prefix("loading %s: ", "m.safetensors");
    ck_assert_str_eq(lc_errmsg(), "loading m.safetensors: tensor 'x': shape [2], expected [3]");
}
END_TEST

int main(void)
{
    Suite *s = suite_create("tensor");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_dtype_table);
    tcase_add_test(tc, test_f16_exact_values);
    tcase_add_test(tc, test_bf16_rounding);
    tcase_add_test(tc, test_views_share_storage);
    tcase_add_test(tc, test_view_expand_squeeze);
    tcase_add_test(tc, test_conversions_and_copy);
    tcase_add_test(tc, test_bad_shapes);
    tcase_add_test(tc, test_live_bytes_accounting);
    tcase_add_test(tc, test_big_buffer_recycling);
    tcase_add_test(tc, test_permute_copies);
    tcase_add_test(tc, test_pool_covers_range);
    tcase_add_test(tc, test_error_prefix);
    suite_add_tcase(s, tc);
    return lt_run(s);
}
