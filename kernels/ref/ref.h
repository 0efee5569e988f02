/* The portable kernels, callable directly (tests compare SIMD paths with
 * them). */
#ifndef LK_REF_H
#define LK_REF_H

#include <stdint.h>

#include "../kernels.h"

void lk_sgemm_ref(int transa, int transb, int64_t m, int64_t n, int64_t k, float alpha,
                  const float *a, int64_t lda, const float *b, int64_t ldb, float beta, float *c,
                  int64_t ldc);
float lk_softmax_exp_ref(float *s, int64_t n);
void lk_softmax_exp_cols_ref(float *s, int64_t rows, int64_t cols, int64_t ld, const float *max,
                             float *sum);

/* Rows [p0, p0+rows) of col^T (output pixels) and its columns [k0,
 * k0+kc) as dst[kc][mr]: dst[q*mr + r] = col[k0 + q, p0 + r], zero for
 * rows <= r < mr (each SIMD level has its own for its micro-tile). */
void lk_im2col_pack_ref(const lk_im2col *g, int64_t p0, int rows, int64_t k0, int64_t kc, int mr,
                        float *dst);

/* element i of an operand stored as t, widened to f32 (exact) */
float lk_elt_get(const void *p, lk_elt t, int64_t i);

#endif
