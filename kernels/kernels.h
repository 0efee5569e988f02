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

/* Element types a GEMM operand may be stored in: weights stay half-size in
 * memory and are widened to f32 while packing (exactly: every f16 and
 * bf16 value is an f32), so the result has the same bits as lk_sgemm on
 * the widened operand. */
typedef enum { LK_F32 = 0, LK_F16, LK_BF16 } lk_elt;

/* lk_sgemm with B stored as bt (f32, IEEE half or bfloat16), and bias[j]
 * (n floats, or NULL) added to every row of C as the product is stored:
 * C = alpha op(A) op(B) + beta C + bias, rounded as fma(alpha, AB, beta C +
 * bias), so with beta 0 the same bits as lk_sgemm with beta 1 on a C
 * filled with the bias, without that extra pass over C. */
void lk_sgemm_typed(int transa, int transb, int64_t m, int64_t n, int64_t k, float alpha,
                    const float *a, int64_t lda, const void *b, lk_elt bt, int64_t ldb,
                    float beta, float *c, int64_t ldc, const float *bias);

/* One image-group of a 2-d convolution, as torch's F.conv2d: x is [C, H,
 * W] contiguous, the output OH x OW. Its column matrix col[k, p] has a row
 * per (channel, kernel row, kernel column), k = (c*kh + ki)*kw + kj, and a
 * column per output pixel p = (n*OH + oy)*OW + ox: x[n, c, oy*sh - ph +
 * ki*dh, ox*sw - pw + kj*dw], 0 outside x. */
typedef struct {
    const float *x;
    int64_t C, H, W, OH, OW;
    int64_t kh, kw, sh, sw, ph, pw, dh, dw;
    /* images side by side: col gets N * OH * OW columns, image n's read
     * from x + n * xstride (N 0 or 1: one image) */
    int64_t N, xstride;
} lk_im2col;

/* out[o*ldo + p] = alpha * sum_k w[o*ldw + k] col[k, p] + beta * out[o*ldo
 * + p] for o < cout, all p: a convolution without its column matrix ever
 * being stored (the GEMM packs its pieces straight from x). w is stored as
 * wt; bias[o] (or NULL) is added to output row o as lk_sgemm_typed adds
 * its bias. On the pool; the same bits for any thread count, and the same as
 * lk_sgemm(0, 0, cout, P, K, alpha, w, ldw, col, P, beta, out, ldo) on the
 * materialised col (and f32 w). */
void lk_sconv(const lk_im2col *g, int64_t cout, const void *w, lk_elt wt, int64_t ldw,
              float alpha, float beta, float *out, int64_t ldo, const float *bias);

/* out [N, cout, H, W] = the 3x3 convolution (stride 1, padding 1, one
 * group) of x [N, C, H, W] by w [cout, C, 3, 3] stored as wt, + bias[o]
 * (or NULL), by Winograd's F(2x2, 3x3) where the level has it and the
 * shape pays (fewer multiplications, results within ~1e-6 relative of
 * the direct sum; decided from the shape only, so the same bits for any
 * thread count). Returns -1, out untouched or to be overwritten, when it
 * does not apply or ran out of memory: the caller convolves directly. */
int lk_conv3x3(const float *x, int64_t N, int64_t C, int64_t H, int64_t W, const void *w,
               lk_elt wt, int64_t cout, const float *bias, float *out);

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
