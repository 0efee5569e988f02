/* The Goto/BLIS-style GEMM driver shared by every SIMD level: cache
 * blocking, packing buffers and threading live here, once; each ISA file
 * supplies only a micro-kernel and its packing routines. */
#ifndef LK_GEMM_BLOCKED_H
#define LK_GEMM_BLOCKED_H

#include <stddef.h>
#include <stdint.h>

#include "kernels.h"

typedef struct lk_gemm_ukr {
    const char *name;
    int mr, nr; /* micro-tile */
    int kc;     /* k block: fixes the summation order, so never tuned per call */
    int mc, nc; /* largest m and n block per task (mc a multiple of mr, nc of nr) */
    /* C[0:mr_eff, 0:nr_eff] = alpha * Ap @ Bp + beta * C, Ap an mr x kc panel
     * (column by column), Bp kc rows of nr. beta == 0 never reads C. With
     * bias, fma(alpha, acc, beta * C + bias) where bias[i] runs down the
     * rows (brows) or bias[j] along the columns: with beta 0, the bits of
     * beta 1 on a C filled with the bias. */
    void (*kernel)(int64_t kc, const float *ap, const float *bp, float *c, int64_t ldc,
                   float alpha, float beta, int mr_eff, int nr_eff, const float *bias,
                   int brows);
    /* the same with the tile stored transposed: element (i, j) at c[j*ldc + i]
     * (the driver computes C^T = op(B)^T op(A)^T when that packs less) */
    void (*kernel_ct)(int64_t kc, const float *ap, const float *bp, float *c, int64_t ldc,
                      float alpha, float beta, int mr_eff, int nr_eff, const float *bias,
                      int brows);
    /* op(A)[i0:i0+mr_eff, p0:p0+kc] into dst[kc][mr], rows past mr_eff
     * zero; A's elements stored as t */
    void (*pack_a)(int trans, const void *a, lk_elt t, int64_t lda, int64_t i0, int mr_eff,
                   int64_t p0, int64_t kc, float *dst);
    /* op(B)[0:k, j0:j0+ncols] into ceil(ncols/nr) panels dst[panel][k][nr],
     * columns past ncols zero (several panels at once: B's rows are then
     * read in longer runs); B's elements stored as t */
    void (*pack_b)(int trans, const void *b, lk_elt t, int64_t ldb, int64_t k, int64_t j0,
                   int64_t ncols, float *dst);
    /* rows [k0, k0+kc) of a convolution's column matrix col (k x pixels),
     * cut from its input, as pack_b packs kc rows (NULL:
     * lk_im2col_pack_ref panel by panel) */
    void (*pack_b_im2col)(const lk_im2col *g, int64_t k0, int64_t kc, int64_t j0, int64_t ncols,
                          float *dst);
} lk_gemm_ukr;

/* One product for the driver: C = alpha op(A) op(B) + beta C, A and B
 * stored as at and bt. With im2col set, op(B) is that convolution's column
 * matrix (k x n output pixels), packed straight from its input (b, bt,
 * transb unused). */
typedef struct {
    int transa, transb;
    int64_t m, n, k;
    float alpha, beta;
    const void *a, *b;
    lk_elt at, bt;
    int64_t lda, ldb, ldc;
    float *c;
    const lk_im2col *im2col;
    /* added to C once (see the kernels): bias[i] per row of C (bias_rows)
     * or bias[j] per column; NULL for none */
    const float *bias;
    int bias_rows;
} lk_gemm_args;

/* lk_sgemm's contract, on the pool. Returns 0, or -1 if a packing buffer
 * could not be allocated (C untouched; the caller falls back). */
int lk_gemm_blocked(const lk_gemm_ukr *u, const lk_gemm_args *g);

/* A thread's grow-only scratch of at least need floats, 64-byte aligned
 * (fresh pages cost a fault each: never shrunk). NULL if out of memory. */
float *lk_grow_scratch(float **buf, size_t *cap, size_t need);

#endif
