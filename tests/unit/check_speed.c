/* The speed paths against the plain ones: fused GroupNorm+SiLU against
 * group_norm then SiLU, 1 vs 2 threads; f16 weights kept half-size give
 * the values of weights widened at load; the F16C widening against the
 * scalar conversion for every half; reused big buffers; the op profile's
 * FLOP counts from the shapes. */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/pool.h"
#include "core/tensor.h"
#include "models/weights.h"
#include "ops/ops.h"
#include "ops/prof.h"
#include "testutil.h"

static lc_tensor *rand_f32(int nd, const int64_t *shape, uint32_t seed, float scale, float off)
{
    lc_tensor *t = lc_tensor_new(LC_F32, nd, shape);
    ck_assert_ptr_nonnull(t);
    float *p = lc_tensor_data(t);
    for (int64_t i = 0; i < lc_tensor_numel(t); i++) {
        seed = seed * 1664525u + 1013904223u;
        p[i] = off + scale * ((float)(seed >> 8) / (float)(1 << 24) - 0.5f);
    }
    return t;
}

static int same_bits(const lc_tensor *a, const lc_tensor *b)
{
    return lc_tensor_nbytes(a) == lc_tensor_nbytes(b) &&
           memcmp(lc_tensor_data(a), lc_tensor_data(b), lc_tensor_nbytes(a)) == 0;
}

START_TEST(group_norm_silu_matches_unfused)
{
    /* odd spatial size (tails of the 4-way sums), a large mean */
    static const int64_t shapes[][4] = {{2, 64, 13, 11}, {1, 32, 64, 64}, {3, 6, 1, 5}};
    static const int groups[] = {32, 8, 3};
    for (int c = 0; c < 3; c++) {
        const int64_t *s = shapes[c];
        lc_tensor *x = rand_f32(4, s, 11 + c, 8.f, 3.f);
        lc_tensor *g = rand_f32(1, &s[1], 5 + c, 0.5f, 1.f), *b = rand_f32(1, &s[1], 7, 1.f, 0);
        lc_tensor *ref = lc_group_norm(x, groups[c], g, b, 1e-6);
        ck_assert_ptr_nonnull(ref);
        ck_assert_int_eq(lc_unary_(LC_SILU, ref), LC_OK);
        lc_pool_init(1);
        lc_tensor *f1 = lc_group_norm_silu(x, groups[c], g, b, 1e-6);
        lc_pool_init(2);
        lc_tensor *f2 = lc_group_norm_silu(x, groups[c], g, b, 1e-6);
        ck_assert_ptr_nonnull(f1);
        ck_assert_ptr_nonnull(f2);
        ck_assert_msg(same_bits(f1, f2), "case %d: 1 and 2 threads differ", c);
        double d = lt_max_abs_diff(f1, ref);
        ck_assert_msg(d <= 1e-6 * (1 + lt_max_abs(ref)), "case %d: fused vs unfused %g", c, d);
        /* and no gamma/beta */
        lc_tensor *r2 = lc_group_norm(x, groups[c], NULL, NULL, 1e-5);
        lc_unary_(LC_SILU, r2);
        lc_tensor *f3 = lc_group_norm_silu(x, groups[c], NULL, NULL, 1e-5);
        ck_assert(lt_max_abs_diff(f3, r2) <= 1e-6 * (1 + lt_max_abs(r2)));
        lc_tensor_free(x), lc_tensor_free(g), lc_tensor_free(b), lc_tensor_free(ref);
        lc_tensor_free(f1), lc_tensor_free(f2), lc_tensor_free(r2), lc_tensor_free(f3);
    }
    /* errors are the group norm's */
    lc_tensor *x = rand_f32(4, (int64_t[]){1, 6, 2, 2}, 1, 1, 0);
    ck_assert_ptr_null(lc_group_norm_silu(x, 4, NULL, NULL, 1e-5));
    ck_assert_str_eq(lc_errmsg(), "group_norm: input [1,6,2,2] has 6 channels, not divisible "
                                  "into 4 groups");
    lc_tensor_free(x);
}
END_TEST

/* every half, contiguous (the F16C path) and strided (scalar path) */
START_TEST(f16_widening_all_halves)
{
    lc_tensor *h = lc_tensor_new(LC_F16, 1, (int64_t[]){65536});
    uint16_t *p = lc_tensor_data(h);
    for (int i = 0; i < 65536; i++)
        p[i] = (uint16_t)i;
    lc_tensor *f = lc_tensor_to(h, LC_F32);
    ck_assert_ptr_nonnull(f);
    const float *q = lc_tensor_data(f);
    for (int i = 0; i < 65536; i++) {
        float want = lc_f16_to_f32((uint16_t)i);
        if (isnan(want))
            ck_assert_msg(isnan(q[i]), "half %04x", i);
        else
            ck_assert_msg(memcmp(&want, &q[i], 4) == 0, "half %04x: %g vs %g", i, q[i], want);
    }
    lc_tensor_free(f);
    lc_tensor_free(h);
}
END_TEST

/* big f16 matrices stay f16 in lc_weights; conv and linear on them equal
 * the same ops on weights widened beforehand */
START_TEST(half_weights_same_results)
{
    lc_tensor *w32 = rand_f32(4, (int64_t[]){64, 128, 3, 3}, 3, 0.2f, 0);
    lc_tensor *l32 = rand_f32(2, (int64_t[]){320, 256}, 4, 0.2f, 0);
    lc_tensor *small = rand_f32(2, (int64_t[]){8, 8}, 5, 1, 0);
    lc_weights *w = lc_weights_new();
    ck_assert_int_eq(lc_weights_put(w, "conv", lc_tensor_to(w32, LC_F16)), LC_OK);
    ck_assert_int_eq(lc_weights_put(w, "lin", lc_tensor_to(l32, LC_BF16)), LC_OK);
    ck_assert_int_eq(lc_weights_put(w, "small", lc_tensor_to(small, LC_F16)), LC_OK);
    lc_tensor *wc = lc_weights_get(w, "conv"), *wl = lc_weights_get(w, "lin");
    ck_assert_int_eq(wc->dtype, LC_F16);
    ck_assert_int_eq(wl->dtype, LC_BF16);
    ck_assert_int_eq(lc_weights_get(w, "small")->dtype, LC_F32); /* small: widened once */
    lc_tensor *wc32 = lc_tensor_to(wc, LC_F32), *wl32 = lc_tensor_to(wl, LC_F32);
    lc_tensor *x = rand_f32(4, (int64_t[]){2, 128, 9, 10}, 6, 2, 0);
    lc_conv2d_params p = {{1, 1}, {1, 1}, {1, 1}, 1};
    lc_tensor *a = lc_conv2d(x, wc, NULL, &p), *b = lc_conv2d(x, wc32, NULL, &p);
    ck_assert(a && b && same_bits(a, b));
    lc_tensor *xl = rand_f32(2, (int64_t[]){7, 256}, 8, 2, 0);
    lc_tensor *c = lc_linear(xl, wl, NULL), *d = lc_linear(xl, wl32, NULL);
    ck_assert(c && d && same_bits(c, d));
    lc_tensor_free(a), lc_tensor_free(b), lc_tensor_free(c), lc_tensor_free(d);
    lc_tensor_free(x), lc_tensor_free(xl), lc_tensor_free(wc32), lc_tensor_free(wl32);
    lc_tensor_free(w32), lc_tensor_free(l32), lc_tensor_free(small);
    lc_weights_free(w);
}
END_TEST

/* freed big buffers come back for the next request of that size; the
 * data is the new tensor's own */
START_TEST(big_buffers_reused)
{
    int64_t n = 3 << 20; /* 12 MB */
    lc_tensor *a = lc_tensor_new(LC_F32, 1, &n);
    ck_assert_ptr_nonnull(a);
    ck_assert_int_eq((uintptr_t)lc_tensor_data(a) % 64, 0);
    void *pa = lc_tensor_data(a);
    lc_tensor_fill_(a, 1.5);
    lc_tensor_free(a);
    lc_tensor *b = lc_tensor_zeros(LC_F32, 1, &n);
    ck_assert_ptr_eq(lc_tensor_data(b), pa);
    ck_assert(lt_max_abs(b) == 0);
    /* a different size does not get a buffer far too big */
    int64_t m = 1 << 20;
    lc_tensor *c = lc_tensor_new(LC_F32, 1, &n), *d = NULL;
    lc_tensor_free(b);
    d = lc_tensor_new(LC_F32, 1, &m);
    ck_assert_ptr_ne(lc_tensor_data(d), pa);
    lc_tensor_free(c), lc_tensor_free(d);
    lc_tensor_cache_trim();
}
END_TEST

/* attention with many query blocks per head (K and V packed once per
 * group of blocks): against a double-precision softmax(q k^T * scale) v,
 * the same bits on 1 and 2 threads, and lc_attention_heads equal to
 * lc_sdpa on the split heads */
START_TEST(attention_packed_heads)
{
    int64_t B = 2, H = 2, Lq = 600, Lk = 333, D = 24, Dv = 16;
    lc_tensor *q = rand_f32(4, (int64_t[]){B, H, Lq, D}, 21, 2, 0);
    lc_tensor *k = rand_f32(4, (int64_t[]){B, H, Lk, D}, 22, 2, 0);
    lc_tensor *v = rand_f32(4, (int64_t[]){B, H, Lk, Dv}, 23, 2, 0);
    lc_pool_init(1);
    lc_tensor *o1 = lc_sdpa(q, k, v, NULL, 0, 0);
    lc_pool_init(2);
    lc_tensor *o2 = lc_sdpa(q, k, v, NULL, 0, 0);
    ck_assert(o1 && o2 && same_bits(o1, o2));
    const float *pq = lc_tensor_data(q), *pk = lc_tensor_data(k), *pv = lc_tensor_data(v);
    const float *po = lc_tensor_data(o2);
    double sc = 1.0 / sqrt((double)D), worst = 0;
    double *sr = malloc((size_t)Lk * sizeof(double));
    for (int64_t bh = 0; bh < B * H; bh++)
        for (int64_t i = 0; i < Lq; i += 7) {
            double mx = -1e300, sum = 0;
            for (int64_t j = 0; j < Lk; j++) {
                double d = 0;
                for (int64_t c = 0; c < D; c++)
                    d += (double)pq[(bh * Lq + i) * D + c] * pk[(bh * Lk + j) * D + c];
                sr[j] = d * sc;
                mx = sr[j] > mx ? sr[j] : mx;
            }
            for (int64_t j = 0; j < Lk; j++)
                sum += (sr[j] = exp(sr[j] - mx));
            for (int64_t c = 0; c < Dv; c++) {
                double o = 0;
                for (int64_t j = 0; j < Lk; j++)
                    o += sr[j] / sum * pv[(bh * Lk + j) * Dv + c];
                double e = fabs(o - po[(bh * Lq + i) * Dv + c]);
                worst = e > worst ? e : worst;
            }
        }
    free(sr);
    ck_assert_msg(worst < 2e-5, "sdpa vs double: %g", worst);
    /* the same through [B,L,H*D] with heads as column slices */
    lc_tensor *qt = lc_tensor_permute(q, (int[]){0, 2, 1, 3});
    lc_tensor *kt = lc_tensor_permute(k, (int[]){0, 2, 1, 3});
    lc_tensor *vt = lc_tensor_permute(v, (int[]){0, 2, 1, 3});
    lc_tensor *q3 = lc_tensor_view(qt, 3, (int64_t[]){B, Lq, H * D});
    lc_tensor *k3 = lc_tensor_view(kt, 3, (int64_t[]){B, Lk, H * D});
    lc_tensor *v3 = lc_tensor_view(vt, 3, (int64_t[]){B, Lk, H * Dv});
    lc_tensor *a = lc_attention_heads(q3, k3, v3, (int)H, NULL, 0);
    ck_assert_ptr_nonnull(a);
    lc_tensor *ot = lc_tensor_permute(o2, (int[]){0, 2, 1, 3});
    lc_tensor *o3 = lc_tensor_view(ot, 3, (int64_t[]){B, Lq, H * Dv});
    ck_assert(lt_max_abs_diff(a, o3) == 0);
    lc_tensor_free(qt), lc_tensor_free(kt), lc_tensor_free(vt), lc_tensor_free(ot);
    lc_tensor_free(q3), lc_tensor_free(k3), lc_tensor_free(v3), lc_tensor_free(o3);
    lc_tensor_free(a), lc_tensor_free(o1), lc_tensor_free(o2);
    lc_tensor_free(q), lc_tensor_free(k), lc_tensor_free(v);
}
END_TEST

/* double-precision softmax(q k^T * scale + mask) v for one row of one head;
 * keep[j] == 0 drops key j; returns 0 if every key is dropped */
static int ref_row(const float *q, const float *k, const float *v, int64_t Lk, int64_t D,
                   int64_t Dv, const unsigned char *keep, double *out)
{
    double mx = -INFINITY, sum = 0, sc = 1.0 / sqrt((double)D);
    double *sr = malloc((size_t)Lk * sizeof(double));
    for (int64_t j = 0; j < Lk; j++) {
        double d = 0;
        for (int64_t c = 0; c < D; c++)
            d += (double)q[c] * k[j * D + c];
        sr[j] = keep[j] ? d * sc : -INFINITY;
        mx = sr[j] > mx ? sr[j] : mx;
    }
    for (int64_t c = 0; c < Dv; c++)
        out[c] = 0;
    if (mx == -INFINITY) {
        free(sr);
        return 0;
    }
    for (int64_t j = 0; j < Lk; j++)
        sum += (sr[j] = exp(sr[j] - mx));
    for (int64_t j = 0; j < Lk; j++)
        for (int64_t c = 0; c < Dv; c++)
            out[c] += sr[j] / sum * v[j * Dv + c];
    free(sr);
    return 1;
}

/* a boolean mask (broadcast over heads, some rows with every key masked)
 * and the causal cut: against the double reference, masked rows exactly
 * zero, the same bits on 1 and 2 threads (the packed path for the mask,
 * the per-block one for causal) */
START_TEST(attention_masked_causal)
{
    int64_t B = 2, H = 3, Lq = 200, Lk = 150, D = 40, Dv = 24;
    lc_tensor *q = rand_f32(4, (int64_t[]){B, H, Lq, D}, 31, 4, 0);
    lc_tensor *k = rand_f32(4, (int64_t[]){B, H, Lk, D}, 32, 4, 0);
    lc_tensor *v = rand_f32(4, (int64_t[]){B, H, Lk, Dv}, 33, 2, 0.5f);
    lc_tensor *mask = lc_tensor_new(LC_U8, 4, (int64_t[]){B, 1, Lq, Lk});
    ck_assert_ptr_nonnull(mask);
    unsigned char *mk = lc_tensor_data(mask);
    for (int64_t b = 0; b < B; b++)
        for (int64_t i = 0; i < Lq; i++)
            for (int64_t j = 0; j < Lk; j++)
                mk[(b * Lq + i) * Lk + j] = i % 37 != 5 && (i * 7 + j * 3 + b) % 5 != 0;
    const float *pq = lc_tensor_data(q), *pk = lc_tensor_data(k), *pv = lc_tensor_data(v);
    unsigned char *causal = malloc((size_t)Lk);
    double out[64];
    for (int c = 0; c < 2; c++) {
        lc_pool_init(1);
        lc_tensor *o1 = c ? lc_sdpa(q, k, v, NULL, 0, 1) : lc_sdpa(q, k, v, mask, 0, 0);
        lc_pool_init(2);
        lc_tensor *o2 = c ? lc_sdpa(q, k, v, NULL, 0, 1) : lc_sdpa(q, k, v, mask, 0, 0);
        ck_assert(o1 && o2);
        ck_assert_msg(same_bits(o1, o2), "%s: 1 and 2 threads differ", c ? "causal" : "mask");
        const float *po = lc_tensor_data(o2);
        double worst = 0;
        for (int64_t bh = 0; bh < B * H; bh++)
            for (int64_t i = 0; i < Lq; i++) {
                const unsigned char *keep = mk + ((bh / H) * Lq + i) * Lk;
                if (c) {
                    for (int64_t j = 0; j < Lk; j++)
                        causal[j] = j <= i;
                    keep = causal;
                }
                int any = ref_row(pq + (bh * Lq + i) * D, pk + bh * Lk * D, pv + bh * Lk * Dv,
                                  Lk, D, Dv, keep, out);
                for (int64_t d = 0; d < Dv; d++) {
                    float got = po[(bh * Lq + i) * Dv + d];
                    if (!any)
                        ck_assert_msg(got == 0.f, "masked row %ld: %g", (long)i, got);
                    double e = fabs(got - out[d]);
                    worst = e > worst ? e : worst;
                }
            }
        ck_assert_msg(worst < 2e-5, "%s sdpa vs double: %g", c ? "causal" : "mask", worst);
        lc_tensor_free(o1), lc_tensor_free(o2);
    }
    free(causal);
    lc_tensor_free(q), lc_tensor_free(k), lc_tensor_free(v), lc_tensor_free(mask);
}
END_TEST

/* the profile counts top-level calls and their FLOPs from the shapes */
START_TEST(profile_counts)
{
    lc_tensor *x = rand_f32(4, (int64_t[]){1, 4, 8, 8}, 1, 1, 0);
    lc_tensor *w = rand_f32(4, (int64_t[]){6, 4, 3, 3}, 2, 1, 0);
    lc_tensor *q = rand_f32(3, (int64_t[]){2, 10, 16}, 3, 1, 0);
    lc_tensor *k = rand_f32(3, (int64_t[]){2, 7, 16}, 4, 1, 0);
    lc_prof_reset();
    lc_prof_enable(1);
    lc_conv2d_params p = {{1, 1}, {1, 1}, {1, 1}, 1};
    lc_tensor *y = lc_conv2d(x, w, NULL, &p);
    lc_tensor *a = lc_attention_heads(q, k, k, 2, NULL, 0);
    lc_prof_enable(0);
    lc_tensor *y2 = lc_conv2d(x, w, NULL, &p); /* off: not counted */
    lc_prof_stat s;
    lc_prof_get(LC_PROF_CONV, &s);
    ck_assert_int_eq(s.calls, 1);
    ck_assert(s.flops == 2.0 * 6 * 64 * 4 * 9);
    lc_prof_get(LC_PROF_ATTN, &s);
    ck_assert_int_eq(s.calls, 1); /* its inner ops are not counted again */
    ck_assert(s.flops == 2.0 * 2 * 10 * 7 * (16 + 16));
    lc_prof_get(LC_PROF_ELEM, &s);
    ck_assert_int_eq(s.calls, 0);
    lc_tensor_free(x), lc_tensor_free(w), lc_tensor_free(q), lc_tensor_free(k);
    lc_tensor_free(y), lc_tensor_free(y2), lc_tensor_free(a);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("speed");
    TCase *tc = tcase_create("speed");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, group_norm_silu_matches_unfused);
    tcase_add_test(tc, f16_widening_all_halves);
    tcase_add_test(tc, half_weights_same_results);
    tcase_add_test(tc, big_buffers_reused);
    tcase_add_test(tc, attention_packed_heads);
    tcase_add_test(tc, attention_masked_causal);
    tcase_add_test(tc, profile_counts);
    suite_add_tcase(s, tc);
    return lt_run(s);
}
