/* Kernels: the inner loops, on contiguous buffers. kernels/ref/ implements
 * every one in portable C; per-ISA folders override what they speed up. A
 * dispatch table is filled at start-up from the CPU's features
 * (LUCID_ARCH=ref|avx2|avx512 forces a level, LUCID_ARCH_DEBUG=1 logs the
 * choice). */
#ifndef LK_KERNELS_H
#define LK_KERNELS_H

#include <stdint.h>

typedef enum { LK_ARCH_REF = 0, LK_ARCH_AVX2, LK_ARCH_AVX512 } lk_arch;

/* Row-major single-precision GEMM:
 *   C[m,n] = alpha * op(A)[m,k] @ op(B)[k,n] + beta * C
 * op(A) = A (lda >= k) or A^T when transa (A stored [k,m], lda >= m); same
 * for B. Runs on the lucid pool; bit-identical for any thread count (and
 * for every path a level may take: C^T, packed B). beta == 0 never reads C.
 * Called from inside a pool task it runs serially on that thread. */
void lk_sgemm(int transa, int transb, int64_t m, int64_t n, int64_t k, float alpha,
              const float *a, int64_t lda, const float *b, int64_t ldb, float beta, float *c,
              int64_t ldc);

/* op(B) packed once for several products with the same B, e.g. attention's
 * K and V across query blocks: saves packing B on every call. Owns a copy
 * (b may change or go afterwards). NULL when out of memory (lc_err set). */
typedef struct lk_sgemm_bpack lk_sgemm_bpack;
lk_sgemm_bpack *lk_sgemm_pack_b(int transb, int64_t k, int64_t n, const float *b, int64_t ldb);
/* The same into p's storage, grown if needed (p NULL: a new one): one pack
 * per thread reused across heads avoids fresh pages on every call. Returns
 * p (or the new pack), NULL on failure (p is then still valid). */
lk_sgemm_bpack *lk_sgemm_repack_b(lk_sgemm_bpack *p, int transb, int64_t k, int64_t n,
                                  const float *b, int64_t ldb);
void lk_sgemm_bpack_free(lk_sgemm_bpack *p);
/* lk_sgemm with op(B) from p (its k x n): the same bits as lk_sgemm on the
 * original B. */
void lk_sgemm_packed(int transa, int64_t m, float alpha, const float *a, int64_t lda,
                     const lk_sgemm_bpack *p, float beta, float *c, int64_t ldc);

/* lk_sgemm with op(B) written by the caller straight into the packed
 * layout, for a B that is computed rather than stored (conv2d's im2col: no
 * column buffer, no second pass over it). fn writes columns [j0, j0+ncols)
 * of op(B), all k rows, as ceil(ncols/nr) panels dst[q][p][c] =
 * op(B)[p, j0 + q*nr + c] (each panel k*nr floats, 64-byte aligned), zeros
 * for columns past ncols. It is called from pool threads, in parallel, for
 * disjoint column ranges. The same bits as lk_sgemm on the materialised B. */
typedef void (*lk_pack_b_fn)(void *ctx, int64_t j0, int64_t ncols, int nr, float *dst);
void lk_sgemm_bfn(int transa, int64_t m, int64_t n, int64_t k, float alpha, const float *a,
                  int64_t lda, lk_pack_b_fn fn, void *ctx, float beta, float *c, int64_t ldc);

/* One row of attention scores through an unnormalised softmax, in place:
 * s[j] = exp(s[j] - max(s)), returning the sum of the new s[j] (the
 * caller divides, e.g. the P V product's rows rather than P). exp is within
 * ~2 ulp; anything below max + LK_EXP_LO gives an exact 0 (masked keys).
 * A row with no finite or +inf entry (all -inf: every key masked) becomes
 * zeros and returns 0; a NaN stays NaN and makes the sum NaN. The sum is taken in a fixed order:
 * the same bits for the same row on every run of a level. */
#define LK_EXP_LO (-87.0f) /* exp below this is under FLT_MIN */
float lk_softmax_exp(float *s, int64_t n);
/* The same down each column j of s[rows, cols] (row stride ld), the sums
 * to sum[j]: scores stored keys x queries, whose maxima and sums then stay
 * in SIMD lanes. Summed in fixed blocks of rows. max: the columns' maxima
 * if known (lk_sgemm_thin's cmax, saving a pass), else NULL. */
void lk_softmax_exp_cols(float *s, int64_t rows, int64_t cols, int64_t ld, const float *max,
                         float *sum);
/* The level's name for it, e.g. "avx512". */
const char *lk_softmax_name(void);

/* C[m,n] = diag(scale) op(A)[m,k] B[k,n], row-major (scale NULL: none;
 * op(A) = A^T when transa, A stored [k,m]), for a B of few columns:
 * attention's products, n = head size or query block. Runs serially
 * (inside a pool task); the result is fixed for given operands. The SIMD
 * levels have their own kernel (no packing, no padding n to a panel
 * width); the portable one runs lk_sgemm and scales the rows. cmax, if
 * not NULL, gets each column's maximum of C (NaN ignored; -inf if m is 0):
 * attention's score maxima from the product's registers. */
void lk_sgemm_thin(int transa, int64_t m, int64_t n, int64_t k, const float *a, int64_t lda,
                   const float *b, int64_t ldb, const float *scale, float *c, int64_t ldc,
                   float *cmax);

/* The GEMM implementation in use, e.g. "avx512 14x32" (for logs, benches). */
const char *lk_sgemm_name(void);

/* Which level the dispatcher chose, and its name. */
lk_arch lk_current_arch(void);
const char *lk_arch_name(lk_arch a);
/* Re-selects (tests force each level in turn). Returns the level set, which
 * is lower than asked if the CPU lacks it. */
lk_arch lk_set_arch(lk_arch a);
void lk_init(void);

#endif
