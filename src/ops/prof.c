/* Op-family profile (see prof.h). Nesting depth is per thread so an op
 * that calls other ops is timed once; stats are shared under a lock,
 * taken only while profiling. */
#include <pthread.h>
#include <time.h>

#include "ops/prof.h"

int lc_prof_enabled;

static _Thread_local int depth;
static lc_prof_stat stats[LC_PROF_NFAM];
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

void lc_prof_enable(int on)
{
    lc_prof_enabled = on != 0;
}

void lc_prof_reset(void)
{
    pthread_mutex_lock(&lock);
    for (int i = 0; i < LC_PROF_NFAM; i++)
        stats[i] = (lc_prof_stat){0, 0, 0};
    pthread_mutex_unlock(&lock);
}

void lc_prof_get(lc_prof_family f, lc_prof_stat *out)
{
    pthread_mutex_lock(&lock);
    *out = stats[f];
    pthread_mutex_unlock(&lock);
}

const char *lc_prof_name(lc_prof_family f)
{
    static const char *names[LC_PROF_NFAM] = {"conv", "linear", "attention", "norm",
                                              "elementwise"};
    return (unsigned)f < LC_PROF_NFAM ? names[f] : "?";
}

double lc_prof_begin(void)
{
    if (depth++ > 0)
        return -1; /* nested: the outer call is timed */
    return now();
}

void lc_prof_end(lc_prof_family f, double t0, double flops)
{
    if (--depth > 0 || t0 <= 0)
        return;
    double dt = now() - t0;
    pthread_mutex_lock(&lock);
    stats[f].seconds += dt;
    stats[f].flops += flops;
    stats[f].calls++;
    pthread_mutex_unlock(&lock);
}
