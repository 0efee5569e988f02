/* Runtime CPU dispatch: one table of kernel pointers, filled once from the
 * CPU's features. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "gemm_blocked.h"
#include "kernels.h"
#include "ref/ref.h"
#if defined(LUCID_X86)
#include "x86/x86.h"
#endif

/* One entry per kernel; NULL means the portable reference. */
static struct {
    int ready;
    lk_arch arch;
    const lk_gemm_ukr *gemm; /* micro-kernel for the blocked sgemm */
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
    table.gemm = NULL;
#if defined(LUCID_X86)
    if (want == LK_ARCH_AVX512)
        table.gemm = &lk_gemm_ukr_avx512;
    else if (want == LK_ARCH_AVX2)
        table.gemm = &lk_gemm_ukr_avx2;
#endif
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
        fprintf(stderr, "lucid: kernels: %s (cpu supports %s), sgemm: %s\n", lk_arch_name(got),
                lk_arch_name(cpu_best()), table.gemm ? table.gemm->name : "ref");
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
    if (table.gemm && lk_gemm_blocked(table.gemm, transa, transb, m, n, k, alpha, a, lda, b, ldb,
                                      beta, c, ldc) == 0)
        return;
    /* no SIMD level, or no memory for the packed operand (C is untouched) */
    lk_sgemm_ref(transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

const char *lk_sgemm_name(void)
{
    lk_init();
    return table.gemm ? table.gemm->name : "ref";
}
