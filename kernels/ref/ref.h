/* The portable kernels, callable directly (tests compare SIMD paths with
 * them). */
#ifndef LK_REF_H
#define LK_REF_H

#include <stdint.h>

void lk_sgemm_ref(int transa, int transb, int64_t m, int64_t n, int64_t k, float alpha,
                  const float *a, int64_t lda, const float *b, int64_t ldb, float beta, float *c,
                  int64_t ldc);
float lk_softmax_exp_ref(float *s, int64_t n);
void lk_softmax_exp_cols_ref(float *s, int64_t rows, int64_t cols, int64_t ld, const float *max,
                             float *sum);

#endif
