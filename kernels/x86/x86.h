/* The x86 micro-kernels, each built with its own ISA flags (Makefile.am)
 * and only called after the dispatcher has checked the CPU. */
#ifndef LK_X86_H
#define LK_X86_H

#include <stdint.h>

#include "../gemm_blocked.h"

extern const lk_gemm_ukr lk_gemm_ukr_avx512;
extern const lk_gemm_ukr lk_gemm_ukr_avx2;

float lk_softmax_exp_avx512(float *s, int64_t n);
float lk_softmax_exp_avx2(float *s, int64_t n);
void lk_softmax_exp_cols_avx512(float *s, int64_t rows, int64_t cols, int64_t ld,
                                const float *max, float *sum);
void lk_softmax_exp_cols_avx2(float *s, int64_t rows, int64_t cols, int64_t ld, const float *max,
                              float *sum);
void lk_sgemm_thin_avx512(int transa, int64_t m, int64_t n, int64_t k, const float *a,
                          int64_t lda, const float *b, int64_t ldb, const float *scale, float *c,
                          int64_t ldc, float *cmax);
void lk_sgemm_thin_avx2(int transa, int64_t m, int64_t n, int64_t k, const float *a, int64_t lda,
                        const float *b, int64_t ldb, const float *scale, float *c, int64_t ldc,
                        float *cmax);

/* kernels.h's lk_conv3x3 on AVX-512, and whether it pays for a shape */
int lk_wino3x3_avx512(const float *x, int64_t N, int64_t C, int64_t H, int64_t W, const void *w,
                      lk_elt wt, int64_t cout, const float *bias, float *out);
int lk_wino3x3_pays_avx512(int64_t N, int64_t C, int64_t H, int64_t W, int64_t cout);

#endif
