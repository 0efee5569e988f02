#include "pool.h"

#include <pthread.h>
#include <sys/types.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "error.h"

#define LC_MAX_THREADS 256

static struct {
    pthread_mutex_t mu;
    pthread_cond_t work_cv, done_cv;
    pthread_t threads[LC_MAX_THREADS];
    int nthreads; /* including the caller */
    int shutting_down;
    /* the current job */
    uint64_t generation;
    /* the generation when the workers were started: a worker that first
     * runs after a job was posted must still see that job as new */
    uint64_t spawn_generation;
    /* threads do not survive fork(): a child (Check's fork mode, a batch
     * worker) sees a pool whose workers are gone and restarts it */
    pid_t owner;
    lc_range_fn fn;
    void *ctx;
    int64_t n, grain, nchunks;
    int64_t next_chunk; /* atomically claimed */
    int active;         /* workers still inside the current job (atomic) */
    int started;        /* workers that reached their wait (lc_pool_init waits for all) */
    int sleepers;       /* workers blocked on work_cv (under mu) */
} pool = {.mu = PTHREAD_MUTEX_INITIALIZER,
          .work_cv = PTHREAD_COND_INITIALIZER,
          .done_cv = PTHREAD_COND_INITIALIZER,
          .nthreads = 1};

static _Thread_local int thread_index;
static _Thread_local int in_task;

static void run_chunks(void)
{
    for (;;) {
        int64_t c = __atomic_fetch_add(&pool.next_chunk, 1, __ATOMIC_RELAXED);
        if (c >= pool.nchunks)
            break;
        if (lc_interrupted())
            continue; /* drain the remaining chunks without doing them */
        int64_t b = c * pool.grain, e = b + pool.grain;
        if (e > pool.n)
            e = pool.n;
        pool.fn(pool.ctx, b, e);
    }
}

/* Handing a job to a blocked worker and back cost ~25 us per parallel op
 * here (measured: an empty 2-chunk lc_parallel_for on 2 threads; a VM's
 * idle vCPU is slow to wake), and a UNet step runs ~1000 of them. So both
 * sides first spin a short while (1.5 us per op then), and block only when
 * nothing came: SPIN_NS bounds what an idle pool burns. */
#define SPIN_NS 200000

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static uint64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

/* More threads than CPUs: a spinning thread would hold the CPU another
 * one needs, so nobody spins (set by lc_pool_init) */
static int spin_off;

/* Spins until ready(arg) (returns 1) or SPIN_NS pass (returns 0). */
static inline int spin_until(int (*ready)(const void *), const void *arg)
{
    if (spin_off)
        return ready(arg);
    uint64_t t0 = 0;
    for (int i = 1;; i++) {
        if (ready(arg))
            return 1;
        cpu_relax();
        if (i % 256 == 0) {
            uint64_t t = now_ns();
            if (!t0)
                t0 = t;
            else if (t - t0 > SPIN_NS)
                return 0;
        }
    }
}

/* a job after generation *seen was posted */
static int job_posted(const void *seen)
{
    return __atomic_load_n(&pool.generation, __ATOMIC_ACQUIRE) != *(const uint64_t *)seen;
}

static int workers_done(const void *unused)
{
    (void)unused;
    return __atomic_load_n(&pool.active, __ATOMIC_ACQUIRE) <= 0;
}

static void *worker(void *arg)
{
    thread_index = (int)(intptr_t)arg;
    in_task = 1;
    pthread_mutex_lock(&pool.mu);
    uint64_t seen = pool.spawn_generation;
    if (++pool.started == pool.nthreads - 1)
        pthread_cond_signal(&pool.done_cv);
    pthread_mutex_unlock(&pool.mu);
    for (;;) {
        if (!spin_until(job_posted, &seen)) {
            pthread_mutex_lock(&pool.mu);
            pool.sleepers++;
            while (!pool.shutting_down && pool.generation == seen)
                pthread_cond_wait(&pool.work_cv, &pool.mu);
            pool.sleepers--;
            pthread_mutex_unlock(&pool.mu);
        }
        /* shutting_down is set with a generation change (see shutdown) */
        if (__atomic_load_n(&pool.shutting_down, __ATOMIC_ACQUIRE))
            break;
        seen = __atomic_load_n(&pool.generation, __ATOMIC_ACQUIRE);
        run_chunks();
        if (__atomic_sub_fetch(&pool.active, 1, __ATOMIC_ACQ_REL) == 0) {
            /* the poster may be blocked (checked under mu: no lost wake-up) */
            pthread_mutex_lock(&pool.mu);
            pthread_cond_signal(&pool.done_cv);
            pthread_mutex_unlock(&pool.mu);
        }
    }
    return NULL;
}

void lc_pool_shutdown(void)
{
    pthread_mutex_lock(&pool.mu);
    __atomic_store_n(&pool.shutting_down, 1, __ATOMIC_RELEASE);
    __atomic_store_n(&pool.generation, pool.generation + 1, __ATOMIC_RELEASE);
    pthread_cond_broadcast(&pool.work_cv);
    pthread_mutex_unlock(&pool.mu);
    for (int i = 1; i < pool.nthreads; i++)
        pthread_join(pool.threads[i], NULL);
    pool.shutting_down = 0;
    pool.nthreads = 1;
}

int lc_pool_init(int n)
{
    if (n <= 0) {
        const char *env = getenv("LUCID_THREADS");
        n = env && atoi(env) > 0 ? atoi(env) : (int)sysconf(_SC_NPROCESSORS_ONLN);
    }
    if (n < 1)
        n = 1;
    if (n > LC_MAX_THREADS)
        n = LC_MAX_THREADS;
    if (pool.nthreads > 1 && pool.owner == getpid())
        lc_pool_shutdown();
    if (pool.owner != getpid()) {
        /* inherited from a parent process: its workers are not ours; start
         * from fresh synchronisation state */
        pthread_mutex_init(&pool.mu, NULL);
        pthread_cond_init(&pool.work_cv, NULL);
        pthread_cond_init(&pool.done_cv, NULL);
        pool.shutting_down = 0;
        pool.sleepers = 0;
        pool.nthreads = 1;
    }
    pool.owner = getpid();
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    spin_off = cpus > 0 && n > cpus;
    pool.spawn_generation = pool.generation;
    pthread_mutex_lock(&pool.mu);
    pool.started = 0;
    pool.nthreads = n; /* the count the workers wait for */
    int i = 1;
    for (; i < n; i++)
        if (pthread_create(&pool.threads[i], NULL, worker, (void *)(intptr_t)i) != 0)
            break;
    pool.nthreads = i;
    /* Return only once every worker sits in its wait: a fork() right after
     * (Check's fork mode) must not catch one still starting up inside the
     * allocator (its lock would stay taken in the child: seen with ASan). */
    while (pool.started < pool.nthreads - 1)
        pthread_cond_wait(&pool.done_cv, &pool.mu);
    pthread_mutex_unlock(&pool.mu);
    if (i < n) {
        lc_pool_shutdown();
        return lc_err("thread pool: cannot start thread %d of %d", i + 1, n);
    }
    return LC_OK;
}

int lc_pool_threads(void)
{
    return pool.nthreads;
}

int lc_pool_thread_index(void)
{
    return thread_index;
}

int64_t lc_grain_for(int64_t n, int64_t min_grain)
{
    /* 64 chunks whatever the pool size: enough for load balance on small
     * machines, and independent of the thread count */
    int64_t g = (n + 63) / 64;
    if (g < min_grain)
        g = min_grain;
    return g < 1 ? 1 : g;
}

int lc_parallel_for(int64_t n, int64_t grain, lc_range_fn fn, void *ctx)
{
    if (n <= 0)
        return LC_OK;
    if (grain < 1)
        grain = 1;
    int64_t nchunks = (n + grain - 1) / grain;
    if (pool.nthreads > 1 && pool.owner != getpid() && lc_pool_init(pool.nthreads) != LC_OK)
        return LC_ERR;
    if (pool.nthreads == 1 || nchunks == 1 || in_task) {
        for (int64_t c = 0; c < nchunks; c++) {
            if (lc_interrupted())
                return lc_err("interrupted");
            int64_t b = c * grain, e = b + grain < n ? b + grain : n;
            fn(ctx, b, e);
        }
        return LC_OK;
    }
    pthread_mutex_lock(&pool.mu);
    pool.fn = fn;
    pool.ctx = ctx;
    pool.n = n;
    pool.grain = grain;
    pool.nchunks = nchunks;
    pool.next_chunk = 0;
    pool.active = pool.nthreads - 1;
    /* spinning workers see the job through this release */
    __atomic_store_n(&pool.generation, pool.generation + 1, __ATOMIC_RELEASE);
    if (pool.sleepers)
        pthread_cond_broadcast(&pool.work_cv);
    pthread_mutex_unlock(&pool.mu);

    in_task = 1;
    run_chunks();
    in_task = 0;

    if (!spin_until(workers_done, NULL)) {
        pthread_mutex_lock(&pool.mu);
        while (__atomic_load_n(&pool.active, __ATOMIC_ACQUIRE) > 0)
            pthread_cond_wait(&pool.done_cv, &pool.mu);
        pthread_mutex_unlock(&pool.mu);
    }
    return lc_interrupted() ? lc_err("interrupted") : LC_OK;
}
