/* FMA peak probe: 16 independent accumulator chains, enough to cover two
 * FMA pipes x 4-cycle latency twice over, so the loop runs at the
 * throughput limit. */
#include <stdint.h>
#include <time.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "config.h"
#include "core/pool.h"
#include "probe.h"

#define PROBE_ITERS 20000000L

double bench_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

double bench_cpu_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

#if defined(LUCID_X86)
__attribute__((target("avx512f"))) static float probe_avx512(long iters)
{
    __m512 acc[16];
    __m512 x = _mm512_set1_ps(0.999999f), y = _mm512_set1_ps(1e-7f);
    for (int i = 0; i < 16; i++)
        acc[i] = _mm512_set1_ps((float)i);
    for (long it = 0; it < iters; it++) {
#pragma GCC unroll 16
        for (int i = 0; i < 16; i++)
            acc[i] = _mm512_fmadd_ps(acc[i], x, y);
    }
    __m512 s = acc[0];
    for (int i = 1; i < 16; i++)
        s = _mm512_add_ps(s, acc[i]);
    return _mm512_reduce_add_ps(s);
}

__attribute__((target("avx2,fma"))) static float probe_avx2(long iters)
{
    __m256 acc[16];
    __m256 x = _mm256_set1_ps(0.999999f), y = _mm256_set1_ps(1e-7f);
    for (int i = 0; i < 16; i++)
        acc[i] = _mm256_set1_ps((float)i);
    for (long it = 0; it < iters; it++) {
#pragma GCC unroll 16
        for (int i = 0; i < 16; i++)
            acc[i] = _mm256_fmadd_ps(acc[i], x, y);
    }
    __m256 s = acc[0];
    for (int i = 1; i < 16; i++)
        s = _mm256_add_ps(s, acc[i]);
    float v[8];
    _mm256_storeu_ps(v, s);
    return v[0] + v[1] + v[2] + v[3] + v[4] + v[5] + v[6] + v[7];
}
#endif

static volatile float probe_sink;
static int probe_width; /* floats per FMA: 16, 8 or 0 (no probe) */

static void probe_chunk(void *ctx, int64_t b, int64_t e)
{
    (void)ctx;
#if defined(LUCID_X86)
    for (int64_t i = b; i < e; i++)
        probe_sink += probe_width == 16 ? probe_avx512(PROBE_ITERS) : probe_avx2(PROBE_ITERS);
#else
    (void)b, (void)e;
#endif
}

double bench_probe_peak(int threads, double *per_core, const char **what)
{
    *per_core = 0;
    *what = "none";
#if defined(LUCID_X86)
    if (__builtin_cpu_supports("avx512f"))
        probe_width = 16, *what = "512-bit FMA";
    else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        probe_width = 8, *what = "256-bit FMA";
    else
        return 0;
    lc_pool_init(threads);
    probe_chunk(NULL, 0, 1); /* warm up the clocks */
    double best = 0;
    for (int rep = 0; rep < 3; rep++) {
        double t0 = bench_now(), c0 = bench_cpu_now();
        lc_parallel_for(threads, 1, probe_chunk, NULL);
        double flops = (double)threads * PROBE_ITERS * 16 * probe_width * 2;
        double g = flops / (bench_now() - t0) / 1e9, pc = flops / (bench_cpu_now() - c0) / 1e9;
        best = g > best ? g : best;
        *per_core = pc > *per_core ? pc : *per_core;
    }
    return best;
#else
    (void)threads;
    return 0;
#endif
}
