/* Helpers shared by the AVX-512 kernels; include only from files built
 * with the AVX-512 flags (Makefile.am). */
#ifndef LK_AVX512_H
#define LK_AVX512_H

#include <immintrin.h>
#include <stdint.h>

#include "../kernels.h"

/* a mask of the first n of 16 lanes (none for n <= 0, all for n >= 16) */
static inline __mmask16 lanes(int64_t n)
{
    return n >= 16 ? (__mmask16)0xFFFF : n <= 0 ? (__mmask16)0 : (__mmask16)((1u << n) - 1);
}

/* 16 elements at src (stored as t), lanes outside m zero, as f32; always
 * inlined with a constant t */
static inline __attribute__((always_inline)) __m512 load16(const void *src, int64_t off, lk_elt t,
                                                             __mmask16 m)
{
    if (t == LK_F16)
        return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, (const uint16_t *)src + off));
    if (t == LK_BF16)
        return _mm512_castsi512_ps(_mm512_slli_epi32(
            _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, (const uint16_t *)src + off)), 16));
    return _mm512_maskz_loadu_ps(m, (const float *)src + off);
}

#endif
