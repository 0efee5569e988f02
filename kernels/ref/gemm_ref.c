/* Portable GEMM: the reference every SIMD path is tested against, and the
 * fallback on machines without one. Blocked for cache, parallel over
 * fixed-size column panels of C (thread-count independent). */
#include "../kernels.h"
#include "../ref/ref.h"

#include "core/pool.h"

#define NB 64

typedef struct {
    int transa, transb;
    int64_t m, n, k;
    float alpha, beta;
    const float *a, *b;
    int64_t lda, ldb, ldc;
    float *c;
} gemm_job;

static inline float at(const float *p, int64_t ld, int trans, int64_t r, int64_t c)
{
    return trans ? p[c * ld + r] : p[r * ld + c];
}

static void panel(void *ctx, int64_t b0, int64_t b1)
{
    const gemm_job *j = ctx;
    for (int64_t blk = b0; blk < b1; blk++) {
        int64_t j0 = blk * NB, j1 = j0 + NB < j->n ? j0 + NB : j->n;
        for (int64_t i = 0; i < j->m; i++) {
            float acc[NB];
            for (int64_t jj = j0; jj < j1; jj++)
                acc[jj - j0] = 0.f;
            for (int64_t p = 0; p < j->k; p++) {
                float av = at(j->a, j->lda, j->transa, i, p);
                if (j->transb) {
                    for (int64_t jj = j0; jj < j1; jj++)
                        acc[jj - j0] += av * j->b[jj * j->ldb + p];
                } else {
                    const float *brow = j->b + p * j->ldb;
                    for (int64_t jj = j0; jj < j1; jj++)
                        acc[jj - j0] += av * brow[jj];
                }
            }
            float *crow = j->c + i * j->ldc;
            for (int64_t jj = j0; jj < j1; jj++)
                crow[jj] = j->alpha * acc[jj - j0] + (j->beta == 0.f ? 0.f : j->beta * crow[jj]);
        }
    }
}

void lk_sgemm_ref(int transa, int transb, int64_t m, int64_t n, int64_t k, float alpha,
                  const float *a, int64_t lda, const float *b, int64_t ldb, float beta, float *c,
                  int64_t ldc)
{
    gemm_job j = {transa, transb, m, n, k, alpha, beta, a, b, lda, ldb, ldc, c};
    int64_t nblk = (n + NB - 1) / NB;
    lc_parallel_for(nblk, 1, panel, &j);
}
