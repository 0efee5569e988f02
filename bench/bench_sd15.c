/* SD 1.5 benchmark: the full-size text encoder, UNet and VAE with random
 * weights from a seed (no download), stored f16 as checkpoints are, timed
 * at 256x256 and 512x512: text encoding (batch 2: prompt + negative), one
 * UNet step with CFG (batch 2), VAE decode (batch 1). Prints per component
 * the achieved GFLOP/s (FLOPs counted analytically from the shapes of
 * every conv, linear and attention call) against the FMA probe's peak in
 * the same run, the peak RSS of each phase, and a per-op-family profile.
 * One JSON line per figure, then a human table. Built and run by `make
 * bench`, never by `make check`.
 *
 *   bench_sd15 [--sizes=256,512] [--threads=N] [--steps=N] [--seed=N] [--no-vae]
 *   (--no-vae: text encoder and UNet only, for quicker comparisons)
 *   (LUCID_BENCH_SIZES sets the default sizes)
 */
#include <malloc.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "config.h"
#include "core/error.h"
#include "core/pool.h"
#include "core/tensor.h"
#include "kernels.h"
#include "models/clip_text.h"
#include "models/unet.h"
#include "models/vae.h"
#include "models/weights.h"
#include "ops/ops.h"
#include "ops/prof.h"
#include "probe.h"

static void die(const char *what)
{
    fprintf(stderr, "bench_sd15: %s: %s\n", what, lc_errmsg());
    exit(1);
}

/* ---- memory ---- */

static long proc_status_kb(const char *key)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (!f)
        return -1;
    char line[256];
    long v = -1;
    size_t n = strlen(key);
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, key, n) && line[n] == ':') {
            v = atol(line + n + 1);
            break;
        }
    fclose(f);
    return v;
}

/* Linux resets VmHWM (peak RSS) to the current RSS on "5"; ru_maxrss
 * cannot be reset, so per-phase peaks come from VmHWM */
static void reset_peak(void)
{
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (f) {
        fputs("5", f);
        fclose(f);
    }
}

static double mb(long kb)
{
    return kb < 0 ? -1 : (double)kb / 1024.0;
}

/* ---- random f16 weights ---- */

static uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* approximately N(0,1): Irwin-Hall of four 16-bit uniforms */
static float gauss(uint64_t *s)
{
    uint64_t r = splitmix(s);
    float u = (float)(r & 0xFFFF) + (float)((r >> 16) & 0xFFFF) + (float)((r >> 32) & 0xFFFF) +
              (float)(r >> 48);
    return (u * (1.0f / 65536.0f) - 2.0f) * 1.7320508f;
}

/* kind: 'w' weight N(0, 1/fan_in), 'n' norm scale 1 + 0.1 N, 'b' bias
 * 0.02 N, 'e' embedding 0.5 N; stored f16 */
static void put_random(lc_weights *w, uint64_t *s, const char *name, char kind, int nd,
                       int64_t a, int64_t b, int64_t k)
{
    int64_t shape[4] = {a, b, k, k};
    lc_tensor *t = lc_tensor_new(LC_F16, nd, shape);
    if (!t)
        die(name);
    int64_t n = lc_tensor_numel(t);
    double fan = n / a;
    float scale = kind == 'w' ? (float)(1.0 / sqrt(fan)) : kind == 'n' ? 0.1f
                                                        : kind == 'e' ? 0.5f
                                                                      : 0.02f;
    float off = kind == 'n' ? 1.0f : 0.0f;
    uint16_t *p = lc_tensor_data(t);
    for (int64_t i = 0; i < n; i++)
        p[i] = lc_f32_to_f16(scale * gauss(s) + off);
    if (lc_weights_put(w, name, t) != LC_OK)
        die(name);
}

/* Linear/conv (k > 0: conv k x k) weight + bias, or a norm (in == 0) */
static void put_wb(lc_weights *w, uint64_t *s, const char *pre, int64_t out, int64_t in, int k)
{
    char n[200];
    snprintf(n, sizeof n, "%s.weight", pre);
    if (in == 0)
        put_random(w, s, n, 'n', 1, out, 0, 0);
    else
        put_random(w, s, n, 'w', k ? 4 : 2, out, in, k);
    snprintf(n, sizeof n, "%s.bias", pre);
    put_random(w, s, n, 'b', 1, out, 0, 0);
}

static void put_resnet(lc_weights *w, uint64_t *s, const char *pre, int64_t cin, int64_t cout)
{
    char n[200];
#define RN(part, o, i, k)                            \
    snprintf(n, sizeof n, "%s.%s", pre, part);       \
    put_wb(w, s, n, o, i, k);
    RN("norm1", cin, 0, 0)
    RN("conv1", cout, cin, 3)
    RN("norm2", cout, 0, 0)
    RN("conv2", cout, cout, 3)
    if (cin != cout) {
        RN("conv_shortcut", cout, cin, 1)
    }
#undef RN
}

/* SD 1.5's AutoencoderKL under diffusers names */
static lc_weights *vae_random(uint64_t seed)
{
    static const int64_t ch[4] = {128, 256, 512, 512};
    lc_weights *w = lc_weights_new();
    uint64_t s = seed;
    char n[200];
    if (!w)
        die("vae weights");
    put_wb(w, &s, "encoder.conv_in", 128, 3, 3);
    int64_t prev = 128;
    for (int i = 0; i < 4; i++) {
        for (int r = 0; r < 2; r++) {
            snprintf(n, sizeof n, "encoder.down_blocks.%d.resnets.%d", i, r);
            put_resnet(w, &s, n, r ? ch[i] : prev, ch[i]);
        }
        if (i < 3) {
            snprintf(n, sizeof n, "encoder.down_blocks.%d.downsamplers.0.conv", i);
            put_wb(w, &s, n, ch[i], ch[i], 3);
        }
        prev = ch[i];
    }
    for (int c = 0; c < 2; c++) {
        const char *cd = c ? "decoder" : "encoder";
        for (int r = 0; r < 2; r++) {
            snprintf(n, sizeof n, "%s.mid_block.resnets.%d", cd, r);
            put_resnet(w, &s, n, 512, 512);
        }
        static const char *proj[] = {"to_q", "to_k", "to_v", "to_out.0"};
        snprintf(n, sizeof n, "%s.mid_block.attentions.0.group_norm", cd);
        put_wb(w, &s, n, 512, 0, 0);
        for (int p = 0; p < 4; p++) {
            snprintf(n, sizeof n, "%s.mid_block.attentions.0.%s", cd, proj[p]);
            put_wb(w, &s, n, 512, 512, 0);
        }
        snprintf(n, sizeof n, "%s.conv_norm_out", cd);
        put_wb(w, &s, n, c ? 128 : 512, 0, 0);
    }
    put_wb(w, &s, "encoder.conv_out", 8, 512, 3);
    put_wb(w, &s, "quant_conv", 8, 8, 1);
    put_wb(w, &s, "post_quant_conv", 4, 4, 1);
    put_wb(w, &s, "decoder.conv_in", 512, 4, 3);
    prev = 512;
    for (int b = 0; b < 4; b++) {
        int64_t c = ch[3 - b];
        for (int r = 0; r < 3; r++) {
            snprintf(n, sizeof n, "decoder.up_blocks.%d.resnets.%d", b, r);
            put_resnet(w, &s, n, r ? c : prev, c);
        }
        if (b < 3) {
            snprintf(n, sizeof n, "decoder.up_blocks.%d.upsamplers.0.conv", b);
            put_wb(w, &s, n, c, c, 3);
        }
        prev = c;
    }
    put_wb(w, &s, "decoder.conv_out", 3, 128, 3);
    return w;
}

/* CLIP ViT-L/14 text model (SD 1.5's text encoder) */
static lc_weights *clip_random(uint64_t seed)
{
    lc_weights *w = lc_weights_new();
    uint64_t s = seed;
    char n[200];
    if (!w)
        die("text encoder weights");
    static const char *proj[] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                 "self_attn.out_proj"};
    for (int i = 0; i < 12; i++) {
        for (int p = 0; p < 4; p++) {
            snprintf(n, sizeof n, "text_model.encoder.layers.%d.%s", i, proj[p]);
            put_wb(w, &s, n, 768, 768, 0);
        }
        snprintf(n, sizeof n, "text_model.encoder.layers.%d.layer_norm1", i);
        put_wb(w, &s, n, 768, 0, 0);
        snprintf(n, sizeof n, "text_model.encoder.layers.%d.layer_norm2", i);
        put_wb(w, &s, n, 768, 0, 0);
        snprintf(n, sizeof n, "text_model.encoder.layers.%d.mlp.fc1", i);
        put_wb(w, &s, n, 3072, 768, 0);
        snprintf(n, sizeof n, "text_model.encoder.layers.%d.mlp.fc2", i);
        put_wb(w, &s, n, 768, 3072, 0);
    }
    put_wb(w, &s, "text_model.final_layer_norm", 768, 0, 0);
    put_random(w, &s, "text_model.embeddings.token_embedding.weight", 'e', 2, 49408, 768, 0);
    put_random(w, &s, "text_model.embeddings.position_embedding.weight", 'e', 2, 77, 768, 0);
    return w;
}

/* the UNet's own deterministic weights, rounded to f16 as a checkpoint
 * stores them (replacing each tensor keeps the peak at one copy) */
static lc_weights *unet_random(const lc_unet_config *c, uint64_t seed)
{
    lc_weights *w = lc_unet_random_weights(c, seed);
    if (!w)
        die("unet weights");
    for (int i = 0; i < lc_weights_count(w); i++) {
        const char *name = lc_weights_name(w, i);
        lc_tensor *h = lc_tensor_to(lc_weights_get(w, name), LC_F16);
        if (!h || lc_weights_put(w, name, h) != LC_OK)
            die(name);
    }
    return w;
}

static size_t weights_bytes(lc_weights *w)
{
    size_t n = 0;
    for (int i = 0; i < lc_weights_count(w); i++)
        n += lc_tensor_nbytes(lc_weights_get(w, lc_weights_name(w, i)));
    return n;
}

static lc_tensor *randn(uint64_t seed, int nd, const int64_t *shape)
{
    lc_tensor *t = lc_tensor_new(LC_F32, nd, shape);
    if (!t)
        die("input");
    float *p = lc_tensor_data(t);
    for (int64_t i = 0; i < lc_tensor_numel(t); i++)
        p[i] = gauss(&seed);
    return t;
}

/* ---- measurement ---- */

typedef struct {
    const char *name;
    double seconds, first_seconds, flops;
    double cpu_seconds; /* process CPU time of the timed run, all threads */
    double peak_mb;
    lc_prof_stat fam[LC_PROF_NFAM];
} result;

static double g_peak;
static int g_size;

static double g_cpu0;

static void prof_start(void)
{
    g_cpu0 = bench_cpu_now();
    lc_prof_reset();
    lc_prof_enable(1);
    reset_peak();
}

/* stops the profile and fills r from it; seconds is the timed run's */
static void prof_stop(result *r, double seconds)
{
    lc_prof_enable(0);
    r->cpu_seconds = bench_cpu_now() - g_cpu0;
    r->seconds = seconds;
    r->peak_mb = mb(proc_status_kb("VmHWM"));
    r->flops = 0;
    for (int f = 0; f < LC_PROF_NFAM; f++) {
        lc_prof_get((lc_prof_family)f, &r->fam[f]);
        r->flops += r->fam[f].flops;
    }
}

static void print_json(const result *r, int threads)
{
    double gf = r->flops / r->seconds / 1e9;
    printf("{\"bench\":\"sd15\",\"size\":%d,\"threads\":%d,\"component\":\"%s\","
           "\"seconds\":%.4f,\"first_seconds\":%.4f,\"gflop\":%.2f,\"gflops\":%.1f,"
           "\"peak_ratio\":%.3f,\"cpu_seconds\":%.4f,\"cpu_gflops_per_core\":%.1f,"
           "\"peak_rss_mb\":%.0f}\n",
           g_size, threads, r->name, r->seconds, r->first_seconds, r->flops / 1e9, gf,
           g_peak > 0 ? gf / g_peak : 0, r->cpu_seconds, r->flops / r->cpu_seconds / 1e9,
           r->peak_mb);
    double timed = 0;
    for (int f = 0; f < LC_PROF_NFAM; f++) {
        const lc_prof_stat *s = &r->fam[f];
        timed += s->seconds;
        printf("{\"bench\":\"sd15_profile\",\"size\":%d,\"component\":\"%s\",\"op\":\"%s\","
               "\"seconds\":%.4f,\"calls\":%lld,\"gflop\":%.2f,\"gflops\":%.1f}\n",
               g_size, r->name, lc_prof_name((lc_prof_family)f), s->seconds,
               (long long)s->calls, s->flops / 1e9,
               s->seconds > 0 ? s->flops / s->seconds / 1e9 : 0);
    }
    printf("{\"bench\":\"sd15_profile\",\"size\":%d,\"component\":\"%s\",\"op\":\"other\","
           "\"seconds\":%.4f}\n",
           g_size, r->name, r->seconds - timed > 0 ? r->seconds - timed : 0);
    fflush(stdout);
}

static void print_table(const result *rs, int n)
{
    printf("\n%-5s %-13s %9s %9s %9s %8s %7s %9s %9s\n", "size", "component", "seconds", "first",
           "GFLOP", "GFLOP/s", "%peak", "GF/cpu-s", "peakRSS");
    for (int i = 0; i < n; i++) {
        const result *r = &rs[i];
        double gf = r->flops / r->seconds / 1e9;
        printf("%-5d %-13s %9.3f %9.3f %9.1f %8.1f %6.1f%% %9.1f %7.0fMB\n", g_size, r->name,
               r->seconds, r->first_seconds, r->flops / 1e9, gf, g_peak > 0 ? 100 * gf / g_peak : 0,
               r->flops / r->cpu_seconds / 1e9, r->peak_mb);
    }
    printf("profile (seconds; GFLOP/s):\n");
    for (int i = 0; i < n; i++) {
        const result *r = &rs[i];
        double timed = 0;
        printf("  %-13s", r->name);
        for (int f = 0; f < LC_PROF_NFAM; f++) {
            const lc_prof_stat *s = &r->fam[f];
            timed += s->seconds;
            if (s->flops > 0)
                printf(" %s %.3f (%.0f)", lc_prof_name((lc_prof_family)f), s->seconds,
                       s->flops / s->seconds / 1e9);
            else
                printf(" %s %.3f", lc_prof_name((lc_prof_family)f), s->seconds);
        }
        printf(" other %.3f\n", r->seconds - timed > 0 ? r->seconds - timed : 0);
    }
    fflush(stdout);
}

int main(int argc, char **argv)
{
    const char *sizes = getenv("LUCID_BENCH_SIZES") ? getenv("LUCID_BENCH_SIZES") : "256,512";
    int threads = 0, steps = 2, with_vae = 1;
    uint64_t seed = 1234;
    for (int i = 1; i < argc; i++) {
        if (!strncmp(argv[i], "--sizes=", 8))
            sizes = argv[i] + 8;
        else if (!strncmp(argv[i], "--threads=", 10))
            threads = atoi(argv[i] + 10);
        else if (!strncmp(argv[i], "--steps=", 8))
            steps = atoi(argv[i] + 8);
        else if (!strncmp(argv[i], "--seed=", 7))
            seed = strtoull(argv[i] + 7, NULL, 10);
        else if (!strcmp(argv[i], "--no-vae"))
            with_vae = 0;
        else {
            fprintf(stderr, "usage: bench_sd15 [--sizes=256,512] [--threads=N] [--steps=N] "
                            "[--seed=N] [--no-vae]\n");
            return 2;
        }
    }
    if (steps < 1)
        steps = 1;
    lk_init();
    if (lc_pool_init(threads) != LC_OK)
        die("pool");
    threads = lc_pool_threads();
    double per_core;
    const char *probe_what;
    double wall_peak = bench_probe_peak(threads, &per_core, &probe_what);
    /* the machine's peak: per CPU-second x threads, which other load on
     * the (shared) machine disturbs far less than the wall figure */
    g_peak = per_core * threads;
    printf("FMA peak probe (%s), %d thread(s): %.1f GFLOP/s wall, %.1f per core (CPU time); "
           "%%peak below is over %.1f; sgemm: %s\n",
           probe_what, threads, wall_peak, per_core, g_peak, lk_sgemm_name());
    printf("{\"bench\":\"fma_peak\",\"threads\":%d,\"gflops\":%.1f,"
           "\"cpu_gflops_per_core\":%.1f}\n",
           threads, wall_peak, per_core);

    /* models with f16 weights, as loaded from a checkpoint */
    double t0 = bench_now();
    lc_unet_config uc;
    lc_unet_config_sd15(&uc);
    lc_weights *w = unet_random(&uc, seed);
    size_t unet_bytes = weights_bytes(w);
    lc_unet *unet = lc_unet_new(&uc, w);
    if (!unet)
        die("unet");
    lc_weights_free(w);
    w = clip_random(seed + 1);
    size_t te_bytes = weights_bytes(w);
    lc_clip_config cc;
    if (lc_clip_config_infer(&cc, w, LC_ACT_QUICK_GELU) != LC_OK)
        die("text encoder config");
    lc_clip_text *te = lc_clip_text_new(&cc, w);
    if (!te)
        die("text encoder");
    lc_weights_free(w);
    size_t vae_bytes = 0;
    lc_vae *vae = NULL;
    if (with_vae) {
        w = vae_random(seed + 2);
        vae_bytes = weights_bytes(w);
        lc_vae_config vc;
        if (lc_vae_config_infer(&vc, w) != LC_OK)
            die("vae config");
        if (!(vae = lc_vae_new(&vc, w)))
            die("vae");
        lc_weights_free(w);
    }
    /* what building left behind (the UNet's f32 random weights) is not
     * part of a pipeline that loads a checkpoint */
    lc_tensor_cache_trim();
    malloc_trim(0);
    long rss_models = proc_status_kb("VmRSS");
    printf("models built in %.1f s; weights in memory: unet %.0f MB, text encoder %.0f MB, "
           "vae %.0f MB; RSS %.0f MB\n",
           bench_now() - t0, unet_bytes / 1048576.0, te_bytes / 1048576.0, vae_bytes / 1048576.0,
           mb(rss_models));
    printf("{\"bench\":\"sd15_weights\",\"unet_mb\":%.1f,\"text_encoder_mb\":%.1f,"
           "\"vae_mb\":%.1f,\"rss_mb\":%.0f}\n",
           unet_bytes / 1048576.0, te_bytes / 1048576.0, vae_bytes / 1048576.0, mb(rss_models));

    /* prompt + negative prompt: BOS, a few tokens, EOS, padding */
    int64_t ids_shape[2] = {2, 77};
    lc_tensor *ids = lc_tensor_new(LC_I64, 2, ids_shape);
    if (!ids)
        die("ids");
    int64_t *idp = lc_tensor_data(ids);
    uint64_t s = seed;
    for (int b = 0; b < 2; b++)
        for (int i = 0; i < 77; i++)
            idp[b * 77 + i] = i == 0 ? 49406 : i <= 8 * (1 - b) ? (int64_t)(splitmix(&s) % 49000)
                                                                 : 49407;

    char *list = strdup(sizes);
    for (char *tok = strtok(list, ","); tok; tok = strtok(NULL, ",")) {
        g_size = atoi(tok);
        if (g_size < 64 || g_size % 64) {
            fprintf(stderr, "bench_sd15: size %s must be a multiple of 64\n", tok);
            return 2;
        }
        int64_t h = g_size / 8;
        result rs[3];
        memset(rs, 0, sizeof rs);

        /* text encoder */
        result *r = &rs[0];
        r->name = "text_encoder";
        lc_tensor *ctx = NULL;
        prof_start();
        double a = bench_now();
        if (lc_clip_text_forward(te, ids, 0, &ctx, NULL) != LC_OK)
            die("text encoder forward");
        prof_stop(r, bench_now() - a);
        r->first_seconds = r->seconds;
        print_json(r, threads);

        /* UNet, one CFG step = batch 2; the first step is reported apart */
        r = &rs[1];
        r->name = "unet_cfg_step";
        int64_t xs[4] = {2, 4, h, h};
        lc_tensor *x = randn(seed + 7, 4, xs);
        lc_tensor *ts = lc_tensor_scalar_f32(500.f);
        double best = 1e30;
        for (int it = 0; it <= steps; it++) {
            prof_start();
            a = bench_now();
            lc_tensor *y = lc_unet_forward(unet, x, ts, ctx, NULL);
            double dt = bench_now() - a;
            if (!y)
                die("unet forward");
            lc_tensor_free(y);
            if (it == 0) {
                lc_prof_enable(0);
                r->first_seconds = dt;
                printf("# unet first step %.3f s\n", dt);
                fflush(stdout);
                if (steps > 0)
                    continue;
            }
            if (dt < best) {
                best = dt;
                prof_stop(r, dt);
            } else {
                lc_prof_enable(0);
            }
        }
        /* peak across all steps, not just the fastest one */
        r->peak_mb = mb(proc_status_kb("VmHWM"));
        print_json(r, threads);
        lc_tensor_free(x);
        lc_tensor_free(ts);
        lc_tensor_free(ctx);

        /* VAE decode of one latent, as a pipeline does it once */
        r = &rs[2];
        r->name = "vae_decode";
        if (vae) {
            int64_t zs[4] = {1, 4, h, h};
            lc_tensor *z = randn(seed + 8, 4, zs);
            prof_start();
            a = bench_now();
            lc_tensor *img = lc_vae_decode(vae, z);
            if (!img)
                die("vae decode");
            prof_stop(r, bench_now() - a);
            r->first_seconds = r->seconds;
            lc_tensor_free(img);
            lc_tensor_free(z);
            print_json(r, threads);
        }

        double overall_peak_mb = 0;
        for (int i = 0; i < 3; i++)
            overall_peak_mb = rs[i].peak_mb > overall_peak_mb ? rs[i].peak_mb : overall_peak_mb;
        if (vae) /* a txt2img includes the decode */
            printf("{\"bench\":\"sd15_rss\",\"size\":%d,\"txt2img_peak_rss_mb\":%.0f}\n",
                   g_size, overall_peak_mb);
        print_table(rs, vae ? 3 : 2);
        if (vae)
            printf("peak RSS of a %dx%d txt2img (models loaded, max over phases): %.0f MB\n",
                   g_size, g_size, overall_peak_mb);
        printf("\n");
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("{\"bench\":\"sd15_maxrss\",\"ru_maxrss_mb\":%.0f}\n", ru.ru_maxrss / 1024.0);
    printf("process ru_maxrss (includes building the random weights): %.0f MB\n",
           ru.ru_maxrss / 1024.0);
    free(list);
    lc_tensor_free(ids);
    lc_unet_free(unet);
    lc_clip_text_free(te);
    lc_vae_free(vae);
    return 0;
}
