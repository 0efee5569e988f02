/* Goto/BLIS-style blocked GEMM on the lucid pool.
 *
 * Per pass over a range of C's columns: op(B) is packed once into nr-wide
 * panels shared by all threads, then C is cut into mc x nc blocks, one pool
 * task each; a task packs its rows of op(A) kc columns at a time into a
 * per-thread buffer and runs the micro-kernel over its block.
 *
 * Determinism: every element of C is  for each kc block in order:
 * acc = fma chain over the block from 0, then C = alpha*acc + beta*C (beta =
 * 1 after the first block). Only kc (fixed per micro-kernel) shapes that
 * sequence; the block sizes, pass widths and the thread that runs a task do
 * not, so C is the same bits for any thread count. */
#include "gemm_blocked.h"

#include <stdlib.h>
#include <string.h>

#include "core/pool.h"

/* packed op(B) per pass, in floats: bounds the shared buffer (16 MB) */
#define BPACK_CAP (4 << 20)
/* largest mc * kc any micro-kernel may ask for */
#define APACK_FLOATS (256 * 256)
/* fewer tasks than this and the blocks are cut smaller (2-core machine:
 * enough to balance, few enough to keep packing cheap) */
#define MIN_TASKS 8

/* Per-thread scratch. Thread-local rather than indexed by the pool slot:
 * a GEMM called from inside a pool task runs inline on that thread and must
 * not share a buffer with a GEMM on another worker. */
static _Thread_local _Alignas(64) float apack[APACK_FLOATS];
static _Thread_local float *bpack;
static _Thread_local size_t bpack_cap;

typedef struct {
    const lk_gemm_ukr *u;
    int transa, transb;
    int64_t m, n, k, lda, ldb, ldc;
    float alpha, beta;
    const float *a, *b;
    float *c;
    /* the current pass: columns [j0, j0 + nw) of C */
    int64_t j0, nw;
    float *bp;
    int64_t mc, nc, nblocks;
    int ct; /* computing C^T: element (i, j) of this job lives at c[j*ldc + i] */
    lk_gemm_bfn bfn; /* when set, writes the panels of op(B) in place of pack_b */
    void *bctx;
} gemm_job;

static int64_t min64(int64_t x, int64_t y)
{
    return x < y ? x : y;
}

static int64_t cdiv(int64_t x, int64_t y)
{
    return (x + y - 1) / y;
}

static void pack_b_panels(void *ctx, int64_t q0, int64_t q1)
{
    const gemm_job *j = ctx;
    int nr = j->u->nr;
    int64_t col = j->j0 + q0 * nr, ncols = min64(q1 * nr, j->nw) - q0 * nr;
    if (j->bfn)
        j->bfn(j->bctx, col, ncols, nr, j->bp + q0 * j->k * nr);
    else
        j->u->pack_b(j->transb, j->b, j->ldb, j->k, col, ncols, j->bp + q0 * j->k * nr);
}

static void run_block(const gemm_job *j, int64_t i0, int64_t mw, int64_t jj0, int64_t jw)
{
    const lk_gemm_ukr *u = j->u;
    int mr = u->mr, nr = u->nr;
    for (int64_t pc = 0; pc < j->k; pc += u->kc) {
        int64_t kcb = min64(u->kc, j->k - pc);
        for (int64_t ir = 0; ir < mw; ir += mr)
            u->pack_a(j->transa, j->a, j->lda, i0 + ir, (int)min64(mr, mw - ir), pc, kcb,
                      apack + (ir / mr) * kcb * mr);
        float beta = pc == 0 ? j->beta : 1.f;
        for (int64_t jr = 0; jr < jw; jr += nr) {
            const float *bpan = j->bp + ((jj0 + jr) / nr) * j->k * nr + pc * nr;
            int64_t col = j->j0 + jj0 + jr;
            int nre = (int)min64(nr, jw - jr);
            for (int64_t ir = 0; ir < mw; ir += mr) {
                const float *ap = apack + (ir / mr) * kcb * mr;
                int mre = (int)min64(mr, mw - ir);
                if (j->ct)
                    u->kernel_ct(kcb, ap, bpan, j->c + col * j->ldc + i0 + ir, j->ldc, j->alpha,
                                 beta, mre, nre);
                else
                    u->kernel(kcb, ap, bpan, j->c + (i0 + ir) * j->ldc + col, j->ldc, j->alpha,
                              beta, mre, nre);
            }
        }
    }
}

static void compute_blocks(void *ctx, int64_t t0, int64_t t1)
{
    const gemm_job *j = ctx;
    for (int64_t t = t0; t < t1; t++) {
        int64_t ib = t / j->nblocks, jb = t % j->nblocks;
        int64_t i0 = ib * j->mc, jj0 = jb * j->nc;
        run_block(j, i0, min64(j->mc, j->m - i0), jj0, min64(j->nc, j->nw - jj0));
    }
}

/* C = beta * C, the whole product when k == 0 */
static void scale_c(float *c, int64_t ldc, int64_t m, int64_t n, float beta)
{
    for (int64_t i = 0; i < m; i++)
        for (int64_t jj = 0; jj < n; jj++)
            c[i * ldc + jj] = beta == 0.f ? 0.f : beta * c[i * ldc + jj];
}

/* Block sizes from the problem shape only: at most u->mc x u->nc, smaller
 * when that would leave fewer than MIN_TASKS tasks. Rows are split first
 * (down to 8 micro-tiles a block): packed B is shared, while every column
 * block packs its rows of A again. */
static void choose_blocks(gemm_job *j)
{
    const lk_gemm_ukr *u = j->u;
    int64_t mblocks = cdiv(j->m, u->mc), nblocks = cdiv(j->nw, u->nc);
    if (mblocks * nblocks < MIN_TASKS) {
        int64_t most = cdiv(j->m, 8 * (int64_t)u->mr), want = cdiv(MIN_TASKS, nblocks);
        int64_t mb = min64(most, want);
        mblocks = mb > mblocks ? mb : mblocks;
    }
    if (mblocks * nblocks < MIN_TASKS)
        nblocks = min64(cdiv(j->nw, u->nr), cdiv(MIN_TASKS, mblocks));
    j->nc = cdiv(cdiv(j->nw, nblocks), u->nr) * u->nr;
    j->nblocks = cdiv(j->nw, j->nc);
    j->mc = cdiv(cdiv(j->m, mblocks), u->mr) * u->mr;
}

/* Packs op(B)[:, j0:j0+nw] (j->b, j->transb, j->k) into j->bp. */
static int pack_pass(gemm_job *j)
{
    int64_t npanels = cdiv(j->nw, j->u->nr);
    return lc_parallel_for(npanels, cdiv(npanels, 16), pack_b_panels, j);
}

/* C[:, j0:j0+nw] from the packed panels at j->bp. */
static int compute_pass(gemm_job *j)
{
    choose_blocks(j);
    return lc_parallel_for(cdiv(j->m, j->mc) * j->nblocks, 1, compute_blocks, j);
}

/* Memory traffic of the packing, in units of k floats: op(B) is packed in a
 * pass (read + write) and read again by every row block; op(A) is packed
 * once per column block. */
static int64_t pack_traffic(const lk_gemm_ukr *u, int64_t m, int64_t n)
{
    return n * (2 + cdiv(m, u->mc)) + m * cdiv(n, u->nc);
}

/* Whether computing C^T moves clearly less memory (from the shape only).
 * Below one kc block the packing is cheap next to writing C, which the
 * transposed stores make dearer (64x4096x40: 145 -> 135 GFLOP/s), while a
 * thin product with a wide B gains (64x1280x11520: 102 -> 120). */
static int swap_pays(const lk_gemm_ukr *u, int64_t m, int64_t n, int64_t k)
{
    return u->kernel_ct && k >= u->kc && 5 * pack_traffic(u, n, m) < 4 * pack_traffic(u, m, n);
}

static int gemm_run(const lk_gemm_ukr *u, int transa, int transb, int64_t m, int64_t n,
                    int64_t k, float alpha, const float *a, int64_t lda, const float *b,
                    int64_t ldb, lk_gemm_bfn bfn, void *bctx, float beta, float *c,
                    int64_t ldc)
{
    if (m <= 0 || n <= 0)
        return 0;
    if ((int64_t)u->mc * u->kc > APACK_FLOATS)
        return -1;
    if (k <= 0) {
        scale_c(c, ldc, m, n, beta);
        return 0;
    }
    gemm_job j = {.u = u, .transa = transa, .transb = transb, .m = m, .n = n, .k = k,
                  .lda = lda, .ldb = ldb, .ldc = ldc, .alpha = alpha, .beta = beta,
                  .a = a, .b = b, .c = c, .bfn = bfn, .bctx = bctx};
    if (!bfn && swap_pays(u, m, n, k)) {
        /* C^T = op(B)^T op(A)^T: the wide operand becomes A, packed block by
         * block as it is used, instead of in a pass of its own. Each
         * element's products and sums are the same, so are its bits. */
        j = (gemm_job){.u = u, .transa = !transb, .transb = !transa, .m = n, .n = m, .k = k,
                       .lda = ldb, .ldb = lda, .ldc = ldc, .alpha = alpha, .beta = beta,
                       .a = b, .b = a, .c = c, .ct = 1};
        m = j.m;
        n = j.n;
    }
    int64_t panels_per_pass = BPACK_CAP / (k * u->nr);
    if (panels_per_pass < 1)
        panels_per_pass = 1;
    int64_t pass_w = panels_per_pass * u->nr;
    size_t need = (size_t)min64(cdiv(n, u->nr), panels_per_pass) * (size_t)(k * u->nr);
    if (bpack_cap < need) {
        free(bpack);
        bpack = aligned_alloc(64, (need * sizeof(float) + 63) / 64 * 64);
        bpack_cap = bpack ? need : 0;
        if (!bpack)
            return -1;
    }
    j.bp = bpack;
    for (j.j0 = 0; j.j0 < n; j.j0 += pass_w) {
        j.nw = min64(pass_w, n - j.j0);
        /* interrupted: the error is set, C is partial */
        if (pack_pass(&j) != 0 || compute_pass(&j) != 0)
            return 0;
    }
    return 0;
}

int lk_gemm_blocked(const lk_gemm_ukr *u, int transa, int transb, int64_t m, int64_t n,
                    int64_t k, float alpha, const float *a, int64_t lda, const float *b,
                    int64_t ldb, float beta, float *c, int64_t ldc)
{
    return gemm_run(u, transa, transb, m, n, k, alpha, a, lda, b, ldb, NULL, NULL, beta, c, ldc);
}

int lk_gemm_blocked_bfn(const lk_gemm_ukr *u, int transa, int64_t m, int64_t n, int64_t k,
                        float alpha, const float *a, int64_t lda, lk_gemm_bfn bfn, void *bctx,
                        float beta, float *c, int64_t ldc)
{
    return gemm_run(u, transa, 0, m, n, k, alpha, a, lda, NULL, 0, bfn, bctx, beta, c, ldc);
}

size_t lk_gemm_packed_b_floats(const lk_gemm_ukr *u, int64_t k, int64_t n)
{
    return (size_t)cdiv(n, u->nr) * (size_t)k * (size_t)u->nr;
}

int lk_gemm_pack_b(const lk_gemm_ukr *u, int transb, int64_t k, int64_t n, const float *b,
                   int64_t ldb, float *dst)
{
    if (k <= 0 || n <= 0)
        return 0;
    gemm_job j = {.u = u, .transb = transb, .n = n, .k = k, .ldb = ldb, .b = b,
                  .j0 = 0, .nw = n, .bp = dst};
    return pack_pass(&j) != 0 ? -1 : 0;
}

int lk_gemm_blocked_packed(const lk_gemm_ukr *u, int transa, int64_t m, int64_t n, int64_t k,
                           float alpha, const float *a, int64_t lda, const float *bp, float beta,
                           float *c, int64_t ldc)
{
    if (m <= 0 || n <= 0)
        return 0;
    if ((int64_t)u->mc * u->kc > APACK_FLOATS)
        return -1;
    if (k <= 0) {
        scale_c(c, ldc, m, n, beta);
        return 0;
    }
    gemm_job j = {.u = u, .transa = transa, .m = m, .n = n, .k = k, .lda = lda, .ldc = ldc,
                  .alpha = alpha, .beta = beta, .a = a, .c = c,
                  .j0 = 0, .nw = n, .bp = (float *)bp};
    compute_pass(&j);
    return 0;
}
