/* Goto/BLIS-style blocked GEMM on the lucid pool.
 *
 * Per pass over a range of C's columns: op(B) is packed once into nr-wide
 * panels shared by all threads, then C is cut into mc x nc blocks, one pool
 * task each; a task packs its rows of op(A) kc columns at a time into a
 * per-thread buffer and runs the micro-kernel over its block. Operands
 * stored f16 or bf16 are widened as they are packed, and a convolution's
 * column matrix (lk_sconv) is gathered from its input as op(A) is packed:
 * neither is ever stored whole in f32.
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
#include "ref/ref.h"

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
    const void *a, *b;
    lk_elt at, bt;
    float *c;
    const lk_im2col *im2col; /* op(B) is this convolution's column matrix */
    /* the current pass: columns [j0, j0 + nw) of C */
    int64_t j0, nw;
    float *bp;
    int64_t mc, nc, nblocks;
    int ct; /* computing C^T: element (i, j) of this job lives at c[j*ldc + i] */
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
    float *dst = j->bp + q0 * j->k * nr;
    if (!j->im2col)
        j->u->pack_b(j->transb, j->b, j->bt, j->ldb, j->k, col, ncols, dst);
    else if (j->u->pack_b_im2col)
        j->u->pack_b_im2col(j->im2col, j->k, col, ncols, dst);
    else
        for (int64_t q = 0; q * nr < ncols; q++)
            lk_im2col_pack_ref(j->im2col, col + q * nr, (int)min64(nr, ncols - q * nr), 0, j->k,
                               nr, dst + q * j->k * nr);
}

static void run_block(const gemm_job *j, int64_t i0, int64_t mw, int64_t jj0, int64_t jw)
{
    const lk_gemm_ukr *u = j->u;
    int mr = u->mr, nr = u->nr;
    for (int64_t pc = 0; pc < j->k; pc += u->kc) {
        int64_t kcb = min64(u->kc, j->k - pc);
        for (int64_t ir = 0; ir < mw; ir += mr)
            u->pack_a(j->transa, j->a, j->at, j->lda, i0 + ir, (int)min64(mr, mw - ir), pc, kcb,
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

int lk_gemm_blocked(const lk_gemm_ukr *u, const lk_gemm_args *g)
{
    if (g->m <= 0 || g->n <= 0)
        return 0;
    if ((int64_t)u->mc * u->kc > APACK_FLOATS)
        return -1;
    if (g->k <= 0) {
        scale_c(g->c, g->ldc, g->m, g->n, g->beta);
        return 0;
    }
    gemm_job j = {.u = u, .transa = g->transa, .transb = g->transb, .m = g->m, .n = g->n,
                  .k = g->k, .lda = g->lda, .ldb = g->ldb, .ldc = g->ldc, .alpha = g->alpha,
                  .beta = g->beta, .a = g->a, .b = g->b, .at = g->at, .bt = g->bt, .c = g->c,
                  .im2col = g->im2col};
    if (!g->im2col && swap_pays(u, j.m, j.n, j.k)) {
        /* C^T = op(B)^T op(A)^T: the wide operand becomes A, packed block by
         * block as it is used, instead of in a pass of its own. Each
         * element's products and sums are the same, so are its bits. */
        j.transa = !g->transb, j.transb = !g->transa;
        j.m = g->n, j.n = g->m;
        j.lda = g->ldb, j.ldb = g->lda;
        j.a = g->b, j.b = g->a;
        j.at = g->bt, j.bt = g->at;
        j.ct = 1;
    }
    int64_t n = j.n, k = j.k;
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
