/* The Goto/BLIS-style GEMM driver shared by every SIMD level: cache
 * blocking, packing buffers and threading live here, once; each ISA file
 * supplies only a micro-kernel and its packing routines. */
#ifndef LK_GEMM_BLOCKED_H
#define LK_GEMM_BLOCKED_H

#include <stddef.h>
#include <stdint.h>

/* Writes columns [j0, j0+ncols) of op(B), all k rows, as ceil(ncols/nr)
 * panels dst[panel][k][nr], zero past ncols (the public lk_pack_b_fn). */
typedef void (*lk_gemm_bfn)(void *ctx, int64_t j0, int64_t ncols, int nr, float *dst);

typedef struct lk_gemm_ukr {
    const char *name;
    int mr, nr; /* micro-tile */
    int kc;     /* k block: fixes the summation order, so never tuned per call */
    int mc, nc; /* largest m and n block per task (mc a multiple of mr, nc of nr) */
    /* C[0:mr_eff, 0:nr_eff] = alpha * Ap @ Bp + beta * C, Ap an mr x kc panel
     * (column by column), Bp kc rows of nr. beta == 0 never reads C. */
    void (*kernel)(int64_t kc, const float *ap, const float *bp, float *c, int64_t ldc,
                   float alpha, float beta, int mr_eff, int nr_eff);
    /* the same with the tile stored transposed: element (i, j) at c[j*ldc + i]
     * (the driver computes C^T = op(B)^T op(A)^T when that packs less) */
    void (*kernel_ct)(int64_t kc, const float *ap, const float *bp, float *c, int64_t ldc,
                      float alpha, float beta, int mr_eff, int nr_eff);
    /* op(A)[i0:i0+mr_eff, p0:p0+kc] into dst[kc][mr], rows past mr_eff zero */
    void (*pack_a)(int trans, const float *a, int64_t lda, int64_t i0, int mr_eff, int64_t p0,
                   int64_t kc, float *dst);
    /* op(B)[0:k, j0:j0+ncols] into ceil(ncols/nr) panels dst[panel][k][nr],
     * columns past ncols zero (several panels at once: B's rows are then
     * read in longer runs) */
    void (*pack_b)(int trans, const float *b, int64_t ldb, int64_t k, int64_t j0, int64_t ncols,
                   float *dst);
} lk_gemm_ukr;

/* lk_sgemm's contract, on the pool. Returns 0, or -1 if a packing buffer
 * could not be allocated (C untouched; the caller falls back). */
int lk_gemm_blocked(const lk_gemm_ukr *u, int transa, int transb, int64_t m, int64_t n,
                    int64_t k, float alpha, const float *a, int64_t lda, const float *b,
                    int64_t ldb, float beta, float *c, int64_t ldc);

/* lk_gemm_blocked with op(B)'s panels written by bfn (from pool threads,
 * in parallel) instead of packed from a matrix */
int lk_gemm_blocked_bfn(const lk_gemm_ukr *u, int transa, int64_t m, int64_t n, int64_t k,
                        float alpha, const float *a, int64_t lda, lk_gemm_bfn bfn, void *bctx,
                        float beta, float *c, int64_t ldc);

/* op(B) packed once for several products (lk_sgemm_pack_b): the panels
 * for all of k x n, lk_gemm_packed_b_floats() floats at dst (64-byte
 * aligned). Returns -1 if interrupted. */
size_t lk_gemm_packed_b_floats(const lk_gemm_ukr *u, int64_t k, int64_t n);
int lk_gemm_pack_b(const lk_gemm_ukr *u, int transb, int64_t k, int64_t n, const float *b,
                   int64_t ldb, float *dst);
/* lk_gemm_blocked with op(B) already packed by the same u: the same bits */
int lk_gemm_blocked_packed(const lk_gemm_ukr *u, int transa, int64_t m, int64_t n, int64_t k,
                           float alpha, const float *a, int64_t lda, const float *bp, float beta,
                           float *c, int64_t ldc);

#endif
