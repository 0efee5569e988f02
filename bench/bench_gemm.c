/* GEMM benchmark: an FMA peak probe, then lk_sgemm on every SIMD level the
 * CPU has (and BLIS as Debian builds it) for shapes Stable Diffusion 1.5
 * runs, on 1 and 2 threads. Prints a table and one JSON line per figure.
 * Built and run by `make bench`, never by `make check`.
 *
 *   bench_gemm [--quick] [--no-ref] [--no-blis]
 */
#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <blis.h>

#include "config.h"
#include "core/error.h"
#include "core/pool.h"
#include "core/tensor.h"
#include "kernels.h"
#include "ops/ops.h"
#include "probe.h"
#if defined(LUCID_X86)
#include "x86/x86.h"
#endif

#define now bench_now
#define cpu_now bench_cpu_now

/* GFLOP/s of the FMA probe (0 without AVX-512: the %peak columns compare
 * against the 512-bit figure) */
static double probe_peak(int threads, double *per_core)
{
    const char *what;
    double g = bench_probe_peak(threads, per_core, &what);
    if (strcmp(what, "512-bit FMA") != 0)
        *per_core = 0, g = 0;
    return g;
}

/* ---- GEMM ---- */
typedef struct {
    const char *what;
    int ta, tb;
    int64_t m, n, k;
} shape;

/* SD 1.5 at 512x512 (64x64 latent), as plain GEMMs on stored operands.
 * lucid's conv2d multiplies the weights [Cout, Cin*9] by the column matrix
 * (W@col) without storing it (lk_sconv, timed below as "conv2d"); the
 * pixel-major orientation is listed for comparison. */
static const shape shapes[] = {
    {"conv3x3 320ch 64x64 W@col", 0, 0, 320, 2912, 2880},
    {"conv3x3 640ch 32x32 W@col", 0, 0, 640, 1024, 5760},
    {"conv3x3 320ch 64x64 (im2col)", 0, 0, 4096, 320, 2880},
    {"conv3x3 640ch 32x32 (im2col)", 0, 0, 1024, 640, 5760},
    {"conv3x3 1280ch 8x8 (im2col)", 0, 0, 64, 1280, 11520},
    {"attn Q@K^T 4096 tok, d=40", 0, 1, 4096, 4096, 40},
    {"attn P@V 4096 tok, d=40", 0, 0, 4096, 40, 4096},
    {"linear GEGLU 4096x320->2560", 0, 1, 4096, 2560, 320},
    {"linear ff 4096x1280->320", 0, 1, 4096, 320, 1280},
    {"cross-attn K/V 77x768->320", 0, 1, 77, 320, 768},
    {"CLIP mlp 77x768->3072", 0, 1, 77, 3072, 768},
    {"1024^3 square", 0, 0, 1024, 1024, 1024},
};

typedef enum { IMPL_LUCID, IMPL_BLIS, IMPL_BLIS_UKR } impl_kind;

/* ---- BLIS with our AVX-512 micro-kernel registered in a copy of its
 * context (the "register a micro-kernel" route of the design). BLIS packs
 * A as mr x k column panels and B as k x nr row panels, the layout our
 * kernel reads. ---- */
#if defined(LUCID_X86)
static cntx_t blis_ukr_cntx;

static void blis_ukr_wrapper(dim_t m, dim_t n, dim_t k, float *restrict alpha,
                             float *restrict a, float *restrict b, float *restrict beta,
                             float *restrict c, inc_t rs_c, inc_t cs_c, auxinfo_t *restrict data,
                             cntx_t *restrict cntx)
{
    (void)data, (void)cntx;
    const lk_gemm_ukr *u = &lk_gemm_ukr_avx512;
    if (cs_c == 1) {
        u->kernel(k, a, b, c, rs_c, *alpha, *beta, (int)m, (int)n, NULL, 0);
        return;
    }
    /* C stored by columns: through a row-major tile */
    float t[32 * 32];
    for (dim_t i = 0; i < m; i++)
        for (dim_t j = 0; j < n; j++)
            t[i * u->nr + j] = c[i * rs_c + j * cs_c];
    u->kernel(k, a, b, t, u->nr, *alpha, *beta, (int)m, (int)n, NULL, 0);
    for (dim_t i = 0; i < m; i++)
        for (dim_t j = 0; j < n; j++)
            c[i * rs_c + j * cs_c] = t[i * u->nr + j];
}

static int blis_ukr_setup(void)
{
    if (!__builtin_cpu_supports("avx512f"))
        return 0;
    const lk_gemm_ukr *u = &lk_gemm_ukr_avx512;
    blis_ukr_cntx = *bli_gks_query_cntx();
    cntx_t *cx = &blis_ukr_cntx;
    bli_cntx_set_l3_nat_ukrs(1, BLIS_GEMM_UKR, BLIS_FLOAT, (void_fp)blis_ukr_wrapper, TRUE, cx);
    const struct {
        bszid_t id;
        dim_t v;
    } sz[] = {{BLIS_MR, u->mr}, {BLIS_NR, u->nr}, {BLIS_KC, u->kc}, {BLIS_MC, u->mc},
              {BLIS_NC, 4096}};
    for (size_t i = 0; i < sizeof sz / sizeof *sz; i++) {
        blksz_t *b = bli_cntx_get_blksz(sz[i].id, cx);
        bli_blksz_set_def(sz[i].v, BLIS_FLOAT, b);
        bli_blksz_set_max(sz[i].v, BLIS_FLOAT, b);
    }
    /* packed panels as wide as the micro-tile */
    bli_blksz_set_def(u->mr, BLIS_FLOAT, bli_cntx_get_blksz(BLIS_MR, cx));
    return 1;
}
#endif

typedef struct {
    const float *a, *b;
    float *c;
} bufs;

static void run_blis(const shape *s, const bufs *x, int threads, cntx_t *cntx)
{
    rntm_t rntm = BLIS_RNTM_INITIALIZER;
    bli_rntm_set_num_threads(threads, &rntm);
    float alpha = 1.f, beta = 0.f;
    int64_t lda = s->ta ? s->m : s->k, ldb = s->tb ? s->k : s->n;
    bli_sgemm_ex(s->ta ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE,
                 s->tb ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE, s->m, s->n, s->k, &alpha,
                 (float *)x->a, lda, 1, (float *)x->b, ldb, 1, &beta, x->c, s->n, 1, cntx, &rntm);
}

static void run_lucid(const shape *s, const bufs *x)
{
    int64_t lda = s->ta ? s->m : s->k, ldb = s->tb ? s->k : s->n;
    lk_sgemm(s->ta, s->tb, s->m, s->n, s->k, 1.f, x->a, lda, x->b, ldb, 0.f, x->c, s->n);
}

/* Best GFLOP/s over repetitions filling ~min_time seconds (at least 2).
 * *per_core: flops over the CPU time all threads spent, per thread — what a
 * core achieves while it runs, which other load on the machine (time
 * slicing) distorts far less than wall time. */
static double time_gemm(impl_kind kind, const shape *s, const bufs *x, int threads,
                        double min_time, double *per_core)
{
    double flops = 2.0 * (double)s->m * (double)s->n * (double)s->k, best = 1e30, total = 0;
    double best_cpu = 1e30;
    for (int rep = 0; rep < 1000 && (rep < 3 || total < min_time); rep++) {
        double t0 = now(), c0 = cpu_now();
        if (kind == IMPL_BLIS)
            run_blis(s, x, threads, NULL);
#if defined(LUCID_X86)
        else if (kind == IMPL_BLIS_UKR)
            run_blis(s, x, threads, &blis_ukr_cntx);
#endif
        else
            run_lucid(s, x);
        double t = now() - t0, ct = cpu_now() - c0;
        if (rep > 0 || t > min_time) { /* the first run warms caches and pages */
            best = t < best ? t : best;
            best_cpu = ct < best_cpu ? ct : best_cpu;
        }
        total += t;
        if (t > 2 * min_time)
            break;
    }
    *per_core = flops / best_cpu / 1e9;
    return flops / best / 1e9;
}

static float *filled(int64_t n)
{
    float *p = aligned_alloc(64, ((size_t)n * sizeof(float) + 63) / 64 * 64);
    if (!p) {
        fprintf(stderr, "bench_gemm: out of memory\n");
        exit(1);
    }
    uint32_t s = 12345;
    for (int64_t i = 0; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        p[i] = (float)(s >> 8) / (float)(1 << 24) - 0.5f;
    }
    return p;
}

/* ---- 3x3 convolution (stride 1, padding 1) through lucid's conv2d op
 * (lk_sconv: no column buffer), with f32 weights and with the same
 * weights stored f16 as checkpoints keep them (widened while packing:
 * the results must be the same bits). ---- */
static void bench_conv(int64_t cin, int64_t hw, double min_time)
{
    int64_t xs[4] = {1, cin, hw, hw}, ws[4] = {cin, cin, 3, 3};
    lc_tensor *x = lc_tensor_new(LC_F32, 4, xs), *w0 = lc_tensor_new(LC_F32, 4, ws);
    if (!x || !w0) {
        fprintf(stderr, "bench_gemm: out of memory\n");
        exit(1);
    }
    float *xp = filled(cin * hw * hw), *wp = filled(cin * cin * 9);
    memcpy(lc_tensor_data(x), xp, (size_t)(cin * hw * hw) * sizeof(float));
    memcpy(lc_tensor_data(w0), wp, (size_t)(cin * cin * 9) * sizeof(float));
    /* w16 and its exact widening w */
    lc_tensor *w16 = lc_tensor_to(w0, LC_F16), *w = w16 ? lc_tensor_to(w16, LC_F32) : NULL;
    if (!w) {
        fprintf(stderr, "bench_gemm: out of memory\n");
        exit(1);
    }
    float *out = filled(cin * hw * hw);
    lc_conv2d_params p = {{1, 1}, {1, 1}, {1, 1}, 1};
    double flops = 2.0 * (double)cin * (double)cin * 9 * (double)(hw * hw);
    for (int threads = 1; threads <= 2; threads++) {
        lc_pool_init(threads);
        for (int way = 0; way < 2; way++) {
            double best = 1e30, total = 0, maxrel = 0;
            for (int rep = 0; rep < 100 && (rep < 3 || total < min_time); rep++) {
                double t0 = now();
                lc_tensor *y = lc_conv2d(x, way == 0 ? w : w16, NULL, &p);
                if (!y) {
                    fprintf(stderr, "bench_gemm: conv2d: %s\n", lc_errmsg());
                    exit(1);
                }
                memcpy(out, lc_tensor_data(y), (size_t)(cin * hw * hw) * sizeof(float));
                lc_tensor_free(y);
                double t = now() - t0;
                best = rep > 0 && t < best ? t : best;
                total += t;
            }
            if (way == 1) { /* compare with the f32 weights' result */
                lc_tensor *y = lc_conv2d(x, w, NULL, &p);
                const float *yp = lc_tensor_data(y);
                for (int64_t i = 0; i < cin * hw * hw; i++) {
                    double d = fabs((double)out[i] - yp[i]) / (fabs(yp[i]) + 1e-3);
                    maxrel = d > maxrel ? d : maxrel;
                }
                lc_tensor_free(y);
            }
            const char *name = way == 0 ? "conv2d f32 w" : "conv2d f16 w";
            printf("conv3x3 %4ldch %3ldx%-3ld %-15s %3d %8.1f GFLOP/s %8.2f ms %7.2g\n",
                   (long)cin, (long)hw, (long)hw, name, threads, flops / best / 1e9, best * 1e3,
                   maxrel);
            printf("{\"bench\":\"conv3x3\",\"channels\":%ld,\"size\":%ld,\"impl\":\"%s\","
                   "\"threads\":%d,\"gflops\":%.1f,\"ms\":%.3f,\"max_rel_diff\":%.3g}\n",
                   (long)cin, (long)hw, name, threads, flops / best / 1e9, best * 1e3, maxrel);
            fflush(stdout);
        }
    }
    free(xp), free(wp), free(out);
    lc_tensor_free(x), lc_tensor_free(w0), lc_tensor_free(w16), lc_tensor_free(w);
}

int main(int argc, char **argv)
{
    int quick = 0, with_ref = 1, with_blis = 1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick"))
            quick = 1;
        else if (!strcmp(argv[i], "--no-ref"))
            with_ref = 0;
        else if (!strcmp(argv[i], "--no-blis"))
            with_blis = 0;
        else {
            fprintf(stderr, "usage: bench_gemm [--quick] [--no-ref] [--no-blis]\n");
            return 2;
        }
    }
    double min_time = quick ? 0.1 : 0.5;
    double peak[3] = {0}, peak_core[3] = {0};
    for (int t = 1; t <= 2; t++) {
        peak[t] = probe_peak(t, &peak_core[t]);
        printf("FMA peak probe (512-bit FMA), %d thread(s): %.1f GFLOP/s wall, %.1f per core "
               "(CPU time)\n", t, peak[t], peak_core[t]);
        printf("{\"bench\":\"fma_peak\",\"threads\":%d,\"gflops\":%.1f,"
               "\"cpu_gflops_per_core\":%.1f}\n", t, peak[t], peak_core[t]);
    }
    printf("(%%peak: wall GFLOP/s over the wall probe; %%core: CPU-time GFLOP/s per core over\n"
           " the probe's, which other load on the machine disturbs far less)\n");
    printf("BLIS %s, configuration: %s\n", bli_info_get_version_str(),
           bli_arch_string(bli_arch_query_id()));

    lk_init();
    lk_arch best = lk_set_arch(LK_ARCH_AVX512);
    /* implementations: each lucid level up to the best, BLIS as shipped,
     * BLIS with our micro-kernel */
    struct {
        impl_kind kind;
        lk_arch arch;
        const char *name;
    } impls[8];
    int nimpl = 0;
    for (int a = with_ref ? 0 : 1; a <= (int)best; a++) {
        lk_set_arch((lk_arch)a);
        impls[nimpl++] = (__typeof__(impls[0])){IMPL_LUCID, (lk_arch)a, lk_sgemm_name()};
    }
    if (with_blis) {
        impls[nimpl++] = (__typeof__(impls[0])){IMPL_BLIS, best, "blis"};
#if defined(LUCID_X86)
        if (blis_ukr_setup())
            impls[nimpl++] = (__typeof__(impls[0])){IMPL_BLIS_UKR, best, "blis+lucid-ukr"};
#endif
    }
    printf("%-30s %-14s %3s %6s %6s %6s %8s %6s %8s %6s %7s\n", "shape", "impl", "thr", "m",
           "n", "k", "GFLOP/s", "%peak", "cpu/core", "%core", "maxrel");
    for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++) {
        const shape *s = &shapes[si];
        if (quick && si >= 7)
            break;
        bufs x = {filled(s->m * s->k), filled(s->k * s->n), filled(s->m * s->n)};
        /* every result is compared with the best lucid level's */
        float *want = filled(s->m * s->n);
        lk_set_arch(best);
        run_lucid(s, &(bufs){x.a, x.b, want});
        for (int ii = 0; ii < nimpl; ii++) {
            lk_set_arch(impls[ii].arch);
            for (int threads = 1; threads <= 2; threads++) {
                lc_pool_init(threads);
                int slow = impls[ii].kind == IMPL_LUCID && impls[ii].arch == LK_ARCH_REF;
                /* the portable path is slow: one short look is enough */
                double pc;
                double g = time_gemm(impls[ii].kind, s, &x, threads, slow ? 0.05 : min_time, &pc);
                double ratio = peak[threads] > 0 ? g / peak[threads] : 0;
                double maxrel = 0;
                for (int64_t i = 0; i < s->m * s->n; i++) {
                    double d = fabs((double)x.c[i] - want[i]) / (fabs(want[i]) + 1e-3);
                    maxrel = d > maxrel || d != d ? d : maxrel;
                }
                double core_ratio = peak_core[threads] > 0 ? pc / peak_core[threads] : 0;
                printf("%-30s %-14s %3d %6ld %6ld %6ld %8.1f %5.1f%% %8.1f %5.1f%% %7.2g\n",
                       s->what, impls[ii].name, threads, (long)s->m, (long)s->n, (long)s->k, g,
                       100 * ratio, pc, 100 * core_ratio, maxrel);
                printf("{\"bench\":\"sgemm\",\"shape\":\"%s\",\"impl\":\"%s\",\"threads\":%d,"
                       "\"m\":%ld,\"n\":%ld,\"k\":%ld,\"transa\":%d,\"transb\":%d,"
                       "\"gflops\":%.1f,\"peak_ratio\":%.3f,\"cpu_gflops_per_core\":%.1f,"
                       "\"core_peak_ratio\":%.3f,\"max_rel_diff\":%.3g}\n",
                       s->what, impls[ii].name, threads, (long)s->m, (long)s->n, (long)s->k,
                       s->ta, s->tb, g, ratio, pc, core_ratio, maxrel);
                fflush(stdout);
            }
        }
        free((void *)x.a);
        free((void *)x.b);
        free(x.c);
        free(want);
    }
    lk_set_arch(best);
    printf("%-31s %-15s %3s %8s %17s %7s\n", "convolution", "impl", "thr", "GFLOP/s", "time",
           "maxrel");
    bench_conv(320, 64, min_time);
    if (!quick) {
        bench_conv(640, 32, min_time);
        bench_conv(1280, 16, min_time);
    }
    return 0;
}
