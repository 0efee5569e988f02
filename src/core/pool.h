/* The one thread pool. Work is cut into chunks whose boundaries depend only
 * on the problem size and the grain, never on the thread count, so every
 * result is the same bits for 1 or N threads. */
#ifndef LC_POOL_H
#define LC_POOL_H

#include <stdint.h>

/* fn processes [begin, end) of the range; chunks run in any order, on any
 * thread, so fn must not accumulate across chunks except into per-chunk
 * slots. */
typedef void (*lc_range_fn)(void *ctx, int64_t begin, int64_t end);

/* Sizes the pool (n <= 0: online cores, or LUCID_THREADS). Can be called
 * again to resize; not while work runs. */
int lc_pool_init(int nthreads);
int lc_pool_threads(void);
void lc_pool_shutdown(void);

/* Runs fn over [0, n) in chunks of `grain` (the last may be short). Runs
 * inline when there is one chunk or one thread, or when called from inside
 * a pool task (nested parallelism runs serially). Returns LC_ERR with
 * "interrupted" if Ctrl-C arrived (the remaining chunks are skipped). */
int lc_parallel_for(int64_t n, int64_t grain, lc_range_fn fn, void *ctx);

/* A grain giving roughly `per_thread` chunks per thread for n items, but
 * computed from n only (deterministic): ceil(n / target_chunks). */
int64_t lc_grain_for(int64_t n, int64_t min_grain);

/* Index of the calling thread in the pool: 0 = the caller, 1..n-1 workers.
 * For per-thread scratch buffers only, never for results. */
int lc_pool_thread_index(void);

#endif
