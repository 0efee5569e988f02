/* Goto/BLIS-style blocked GEMM on the lucid pool.
 *
 * Per pass over a range of C's columns and of k: that part of op(B) is
 * packed once into nr-wide panels shared by all threads, then C is cut
 * into blocks of at most mc x nc, one pool task each; a task packs its rows
 * of op(A) kc columns at a time into a per-thread buffer and runs the
 * micro-kernel over its block.
 * Wide convolutions run as column tasks instead (see cols_pays). Operands
 * stored f16 or bf16 are widened as they are packed, and a convolution's
 * column matrix (lk_sconv) is gathered from its input as op(B) is packed:
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

/* packed op(B) per pass, in floats: bounds the shared buffer (48 MB).
 * Every pass packs A again, and a short last pass runs few tasks: a
 * 640 x 17280 x 512 product (a UNet up block's conv at 256x256) ran as
 * three passes with 16 MB, in 41 ms, and as one in 38. */
#define BPACK_CAP (12 << 20)
/* A pass packs at most this many floats of op(B) (8 MB) when that takes
 * no fewer than KPASS_MIN of its rows: a deep B is packed and used a range
 * of k at a time instead of whole, and stays in the L3 cache this machine
 * shares with its neighbours. Unlike narrower column passes, k ranges cost
 * no extra A packing (A is packed a kc block at a time either way). A UNet
 * step at 256x256 (a 640 x 512 x 17280 conv's B is 35 MB): 1.5-2 % faster
 * in 8 interleaved steps; 4 or 16 MB measured the same as 8. */
#define KPASS_FLOATS (2 << 20)
#define KPASS_MIN 1024
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
    const float *bias;       /* added with the first k block (lk_gemm_args) */
    int brows;
    /* the current pass: rows [k0, k0 + kw) of op(B) into columns [j0, j0
     * + nw) of C */
    int64_t k0, kw, j0, nw;
    float *bp;
    int64_t mblocks, nblocks; /* the pass's tasks: mblocks x nblocks blocks of C */
    int ct; /* computing C^T: element (i, j) of this job lives at c[j*ldc + i] */
} gemm_job;

float *lk_grow_scratch(float **buf, size_t *cap, size_t need)
{
    if (*cap < need) {
        free(*buf);
        *buf = aligned_alloc(64, (need * sizeof(float) + 63) / 64 * 64);
        *cap = *buf ? need : 0;
    }
    return *buf;
}

static int64_t min64(int64_t x, int64_t y)
{
    return x < y ? x : y;
}

static int64_t cdiv(int64_t x, int64_t y)
{
    return (x + y - 1) / y;
}

/* op(B)[k0:k0+kc, col:col+ncols] as panels dst[panel][kc][nr] */
static void pack_b_range(const gemm_job *j, int64_t k0, int64_t kc, int64_t col, int64_t ncols,
                         float *dst)
{
    const lk_gemm_ukr *u = j->u;
    int nr = u->nr;
    if (!j->im2col) {
        size_t esz = j->bt == LK_F32 ? sizeof(float) : sizeof(uint16_t);
        const char *b = (const char *)j->b + (size_t)(j->transb ? k0 : k0 * j->ldb) * esz;
        u->pack_b(j->transb, b, j->bt, j->ldb, kc, col, ncols, dst);
    } else if (u->pack_b_im2col) {
        u->pack_b_im2col(j->im2col, k0, kc, col, ncols, dst);
    } else {
        for (int64_t q = 0; q * nr < ncols; q++)
            lk_im2col_pack_ref(j->im2col, col + q * nr, (int)min64(nr, ncols - q * nr), k0, kc,
                               nr, dst + q * kc * nr);
    }
}

static void pack_b_panels(void *ctx, int64_t q0, int64_t q1)
{
    const gemm_job *j = ctx;
    int nr = j->u->nr;
    int64_t col = j->j0 + q0 * nr, ncols = min64(q1 * nr, j->nw) - q0 * nr;
    pack_b_range(j, j->k0, j->kw, col, ncols, j->bp + q0 * j->kw * nr);
}

/* The micro-kernel over an mw x jw block of C at (i0, col) for one kc
 * block: ap the block's packed rows of A (strip after strip, kcb x mr
 * each), bp its first B panel, bstride floats from one panel to the next. */
static void macro_kernel(const gemm_job *j, int64_t kcb, const float *ap, int64_t i0, int64_t mw,
                         const float *bp, int64_t bstride, int64_t col, int64_t jw, int first)
{
    const lk_gemm_ukr *u = j->u;
    int mr = u->mr, nr = u->nr;
    float beta = first ? j->beta : 1.f;
    const float *bias = first ? j->bias : NULL;
    for (int64_t jr = 0; jr < jw; jr += nr, bp += bstride) {
        int nre = (int)min64(nr, jw - jr);
        for (int64_t ir = 0; ir < mw; ir += mr) {
            const float *a = ap + (ir / mr) * kcb * mr;
            int mre = (int)min64(mr, mw - ir);
            const float *bs = !bias ? NULL : j->brows ? bias + i0 + ir : bias + col + jr;
            if (j->ct)
                u->kernel_ct(kcb, a, bp, j->c + (col + jr) * j->ldc + i0 + ir, j->ldc, j->alpha,
                             beta, mre, nre, bs, j->brows);
            else
                u->kernel(kcb, a, bp, j->c + (i0 + ir) * j->ldc + col + jr, j->ldc, j->alpha,
                          beta, mre, nre, bs, j->brows);
        }
    }
}

static void run_block(const gemm_job *j, int64_t i0, int64_t mw, int64_t jj0, int64_t jw)
{
    const lk_gemm_ukr *u = j->u;
    int mr = u->mr, nr = u->nr;
    int64_t kend = j->k0 + j->kw;
    for (int64_t pc = j->k0; pc < kend; pc += u->kc) {
        int64_t kcb = min64(u->kc, kend - pc);
        for (int64_t ir = 0; ir < mw; ir += mr)
            u->pack_a(j->transa, j->a, j->at, j->lda, i0 + ir, (int)min64(mr, mw - ir), pc, kcb,
                      apack + (ir / mr) * kcb * mr);
        const float *bpan = j->bp + (jj0 / nr) * j->kw * nr + (pc - j->k0) * nr;
        macro_kernel(j, kcb, apack, i0, mw, bpan, j->kw * nr, j->j0 + jj0, jw, pc == 0);
    }
}

static void compute_blocks(void *ctx, int64_t t0, int64_t t1)
{
    const gemm_job *j = ctx;
    for (int64_t t = t0; t < t1; t++) {
        int64_t ib = t / j->nblocks, jb = t % j->nblocks;
        /* block boundaries on whole micro-tiles, as even as they can be */
        int64_t strips = cdiv(j->m, j->u->mr), panels = cdiv(j->nw, j->u->nr);
        int64_t i0 = ib * strips / j->mblocks * j->u->mr;
        int64_t i1 = min64((ib + 1) * strips / j->mblocks * j->u->mr, j->m);
        int64_t jj0 = jb * panels / j->nblocks * j->u->nr;
        int64_t jj1 = min64((jb + 1) * panels / j->nblocks * j->u->nr, j->nw);
        run_block(j, i0, i1 - i0, jj0, jj1 - jj0);
    }
}

/* C = beta * C (+ bias), the whole product when k == 0 */
static void scale_c(const lk_gemm_args *g)
{
    for (int64_t i = 0; i < g->m; i++)
        for (int64_t jj = 0; jj < g->n; jj++) {
            float *c = g->c + i * g->ldc + jj;
            float v = g->beta == 0.f ? 0.f : g->beta * *c;
            *c = g->bias ? v + g->bias[g->bias_rows ? i : jj] : v;
        }
}

/* How C is cut into tasks: blocks of at most u->mc x u->nc, and at least
 * MIN_TASKS of them, rounded up to a multiple of the thread count, so the
 * threads finish together. Rows are split first (down to 8 micro-tiles a
 * block): packed B is shared, while every column block packs its rows of
 * A again. The cut never changes a result (see the top), so it may follow
 * the thread count. */
static void choose_blocks(gemm_job *j)
{
    const lk_gemm_ukr *u = j->u;
    int64_t strips = cdiv(j->m, u->mr), panels = cdiv(j->nw, u->nr);
    int64_t mb = cdiv(strips, u->mc / u->mr), nb = cdiv(panels, u->nc / u->nr);
    int64_t threads = lc_pool_threads() > 0 ? lc_pool_threads() : 1;
    int64_t want = cdiv(mb * nb > MIN_TASKS ? mb * nb : MIN_TASKS, threads) * threads;
    if (mb * nb < want) {
        int64_t most = strips / 8 > 1 ? strips / 8 : 1;
        mb = min64(most, cdiv(want, nb)) > mb ? min64(most, cdiv(want, nb)) : mb;
    }
    if (mb * nb < want)
        nb = min64(panels, cdiv(want, mb));
    j->mblocks = mb;
    j->nblocks = nb;
}

/* Packs op(B)[k0:k0+kw, j0:j0+nw] into j->bp. */
static int pack_pass(gemm_job *j)
{
    int64_t npanels = cdiv(j->nw, j->u->nr);
    return lc_parallel_for(npanels, cdiv(npanels, 16), pack_b_panels, j);
}

/* C[:, j0:j0+nw] += the pass's k range, from the packed panels at j->bp */
static int compute_pass(gemm_job *j)
{
    choose_blocks(j);
    return lc_parallel_for(j->mblocks * j->nblocks, 1, compute_blocks, j);
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

/* ---- column tasks, for a wide product with a small A (a convolution's
 * weights against its many output pixels): A is packed once, whole, and
 * shared; each task takes a range of C's columns and packs B a kc block at
 * a time into its own buffer, sized to stay in L2, right before using it.
 * No B pass goes out to memory and back, and no barrier separates packing
 * from computing. ---- */

#define COLS_BFLOATS (64 * 1024) /* a task's packed B block: 256 KB */
#define COLS_AFLOATS (4 << 20)   /* packed A, whole: at most 16 MB */

typedef struct {
    const gemm_job *j;
    float *apk;  /* A packed: kc block pc at apk + pc*strips*mr, strip s at + s*kcb*mr */
    float *bbuf; /* one B block per pool thread */
    int64_t strips, panels, ntasks, bfloats;
} cols_job;

static _Thread_local float *cols_buf;
static _Thread_local size_t cols_cap;

static void cols_pack_a(void *ctx, int64_t s0, int64_t s1)
{
    const cols_job *cj = ctx;
    const gemm_job *j = cj->j;
    const lk_gemm_ukr *u = j->u;
    int mr = u->mr;
    for (int64_t st = s0; st < s1; st++)
        for (int64_t pc = 0; pc < j->k; pc += u->kc) {
            int64_t kcb = min64(u->kc, j->k - pc);
            u->pack_a(j->transa, j->a, j->at, j->lda, st * mr, (int)min64(mr, j->m - st * mr), pc,
                      kcb, cj->apk + pc * cj->strips * mr + st * kcb * mr);
        }
}

static void cols_compute(void *ctx, int64_t t0, int64_t t1)
{
    const cols_job *cj = ctx;
    const gemm_job *j = cj->j;
    const lk_gemm_ukr *u = j->u;
    int mr = u->mr, nr = u->nr;
    float *bb = cj->bbuf + (int64_t)lc_pool_thread_index() * cj->bfloats;
    for (int64_t t = t0; t < t1; t++) {
        int64_t c0 = t * cj->panels / cj->ntasks * nr;
        int64_t c1 = min64((t + 1) * cj->panels / cj->ntasks * nr, j->n);
        for (int64_t pc = 0; pc < j->k; pc += u->kc) {
            int64_t kcb = min64(u->kc, j->k - pc);
            pack_b_range(j, pc, kcb, c0, c1 - c0, bb);
            const float *ablk = cj->apk + pc * cj->strips * mr;
            for (int64_t ic = 0; ic < j->m; ic += u->mc)
                macro_kernel(j, kcb, ablk + (ic / mr) * kcb * mr, ic, min64(u->mc, j->m - ic), bb,
                             kcb * nr, c0, c1 - c0, pc == 0);
        }
    }
}

/* Whether a convolution suits column tasks (from the shape only): A small
 * enough to pack whole, and enough columns for MIN_TASKS full-width B
 * blocks. Measured, 3x3 convs on 2 threads (GFLOP/s, passes -> column
 * tasks): 128 channels at 512x512 215 -> 284, 256 at 256x256 265 -> 315,
 * 320 at 64x64 295 -> 330; but 640 at 32x32, whose tasks would get half
 * a block, 334 -> 300. */
static int cols_pays(const lk_gemm_ukr *u, const gemm_job *j)
{
    int64_t width = COLS_BFLOATS / u->kc / u->nr * u->nr;
    return j->im2col && !j->ct && cdiv(j->m, u->mr) * u->mr * j->k <= COLS_AFLOATS &&
           j->n >= MIN_TASKS * width;
}

/* Returns -1 if its buffer could not be allocated (nothing done) */
static int gemm_cols(gemm_job *j)
{
    const lk_gemm_ukr *u = j->u;
    int64_t threads = lc_pool_threads() > 0 ? lc_pool_threads() : 1;
    int64_t width = COLS_BFLOATS / u->kc / u->nr * u->nr;
    cols_job cj = {.j = j, .strips = cdiv(j->m, u->mr), .panels = cdiv(j->n, u->nr)};
    /* at least MIN_TASKS, a multiple of the thread count, each at most
     * width columns */
    cj.ntasks = cdiv(j->n, width) > MIN_TASKS ? cdiv(j->n, width) : MIN_TASKS;
    cj.ntasks = min64(cdiv(cj.ntasks, threads) * threads, cj.panels);
    cj.bfloats = cdiv(cj.panels, cj.ntasks) * u->nr * u->kc;
    size_t afloats = (size_t)(cj.strips * u->mr * j->k + 15) / 16 * 16; /* B blocks aligned */
    size_t need = afloats + (size_t)(threads * cj.bfloats);
    if (!lk_grow_scratch(&cols_buf, &cols_cap, need))
        return -1;
    cj.apk = cols_buf;
    cj.bbuf = cols_buf + afloats;
    /* interrupted: the error is set, C is partial */
    if (lc_parallel_for(cj.strips, cdiv(cj.strips, 16), cols_pack_a, &cj) != 0)
        return 0;
    lc_parallel_for(cj.ntasks, 1, cols_compute, &cj);
    return 0;
}

int lk_gemm_blocked(const lk_gemm_ukr *u, const lk_gemm_args *g)
{
    if (g->m <= 0 || g->n <= 0)
        return 0;
    if ((int64_t)u->mc * u->kc > APACK_FLOATS)
        return -1;
    if (g->k <= 0) {
        scale_c(g);
        return 0;
    }
    gemm_job j = {.u = u, .transa = g->transa, .transb = g->transb, .m = g->m, .n = g->n,
                  .k = g->k, .lda = g->lda, .ldb = g->ldb, .ldc = g->ldc, .alpha = g->alpha,
                  .beta = g->beta, .a = g->a, .b = g->b, .at = g->at, .bt = g->bt, .c = g->c,
                  .im2col = g->im2col, .bias = g->bias, .brows = g->bias_rows};
    if (!g->im2col && swap_pays(u, j.m, j.n, j.k)) {
        /* C^T = op(B)^T op(A)^T: the wide operand becomes A, packed block by
         * block as it is used, instead of in a pass of its own. Each
         * element's products and sums are the same, so are its bits. */
        j.transa = !g->transb, j.transb = !g->transa;
        j.m = g->n, j.n = g->m;
        j.lda = g->ldb, j.ldb = g->lda;
        j.a = g->b, j.b = g->a;
        j.at = g->bt, j.bt = g->at;
        j.brows = !g->bias_rows;
        j.ct = 1;
    }
    if (cols_pays(u, &j) && gemm_cols(&j) == 0)
        return 0;
    int64_t n = j.n, k = j.k, kp = k;
    int64_t width = cdiv(n, u->nr) * u->nr;
    if (width * k > KPASS_FLOATS) {
        kp = KPASS_FLOATS / width / u->kc * u->kc;
        kp = kp < KPASS_MIN ? KPASS_MIN : kp > k ? k : kp;
    }
    int64_t panels_per_pass = BPACK_CAP / (kp * u->nr);
    if (panels_per_pass < 1)
        panels_per_pass = 1;
    int64_t pass_w = panels_per_pass * u->nr;
    size_t need = (size_t)min64(cdiv(n, u->nr), panels_per_pass) * (size_t)(kp * u->nr);
    if (!lk_grow_scratch(&bpack, &bpack_cap, need))
        return -1;
    j.bp = bpack;
    for (j.j0 = 0; j.j0 < n; j.j0 += pass_w) {
        j.nw = min64(pass_w, n - j.j0);
        for (j.k0 = 0; j.k0 < k; j.k0 += kp) {
            j.kw = min64(kp, k - j.k0);
            /* interrupted: the error is set, C is partial */
            if (pack_pass(&j) != 0 || compute_pass(&j) != 0)
                return 0;
        }
    }
    return 0;
}
