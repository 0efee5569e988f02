/* Runtime CPU dispatch: one table of kernel pointers, filled once from the
 * CPU's features. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "kernels.h"
#include "ref/ref.h"

typedef void (*sgemm_fn)(int, int, int64_t, int64_t, int64_t, float, const float *, int64_t,
                         const float *, int64_t, float, float *, int64_t);

static struct {
    int ready;
    lk_arch arch;
    sgemm_fn sgemm;
} table;

static lk_arch cpu_best(void)
{
#if defined(LUCID_X86) && defined(__GNUC__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq"))
        return LK_ARCH_AVX512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return LK_ARCH_AVX2;
#endif
    return LK_ARCH_REF;
}

const char *lk_arch_name(lk_arch a)
{
    switch (a) {
    case LK_ARCH_AVX512: return "avx512";
    case LK_ARCH_AVX2: return "avx2";
    default: return "ref";
    }
}

lk_arch lk_set_arch(lk_arch want)
{
    lk_arch best = cpu_best();
    if (want > best)
        want = best;
    table.arch = want;
    table.sgemm = lk_sgemm_ref;
    table.ready = 1;
    return want;
}

void lk_init(void)
{
    if (table.ready)
        return;
    lk_arch want = cpu_best();
    const char *force = getenv("LUCID_ARCH");
    if (force && *force) {
        if (!strcmp(force, "ref") || !strcmp(force, "portable"))
            want = LK_ARCH_REF;
        else if (!strcmp(force, "avx2"))
            want = LK_ARCH_AVX2;
        else if (!strcmp(force, "avx512"))
            want = LK_ARCH_AVX512;
    }
    lk_arch got = lk_set_arch(want);
    if (getenv("LUCID_ARCH_DEBUG"))
        fprintf(stderr, "lucid: kernels: %s (cpu supports %s)\n", lk_arch_name(got),
                lk_arch_name(cpu_best()));
}

lk_arch lk_current_arch(void)
{
    lk_init();
    return table.arch;
}

void lk_sgemm(int transa, int transb, int64_t m, int64_t n, int64_t k, float alpha,
              const float *a, int64_t lda, const float *b, int64_t ldb, float beta, float *c,
              int64_t ldc)
{
    if (!table.ready)
        lk_init();
    if (m <= 0 || n <= 0)
        return;
    table.sgemm(transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
