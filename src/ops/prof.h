/* Per-op-family profile for the benchmark: wall time, calls and analytic
 * FLOPs of the top-level op calls (an op called from inside another op is
 * counted in the outer one). Off by default; when off an op pays one
 * load and branch. Enabled by the benchmark only; tests never time. */
#ifndef LC_PROF_H
#define LC_PROF_H

#include <stdint.h>

typedef enum {
    LC_PROF_CONV = 0,  /* conv2d */
    LC_PROF_LINEAR,    /* linear, matmul */
    LC_PROF_ATTN,      /* sdpa, multi-head attention, softmax */
    LC_PROF_NORM,      /* group/layer norm (and fused norm + SiLU) */
    LC_PROF_ELEM,      /* elementwise binary/unary ops */
    LC_PROF_NFAM
} lc_prof_family;

typedef struct {
    double seconds, flops;
    int64_t calls;
} lc_prof_stat;

extern int lc_prof_enabled;

void lc_prof_enable(int on);
void lc_prof_reset(void);
void lc_prof_get(lc_prof_family f, lc_prof_stat *out);
const char *lc_prof_name(lc_prof_family f);

/* begin returns a start time (> 0) for an outermost call, -1 for a nested
 * one; end must follow every begin (both keep the per-thread depth) */
double lc_prof_begin(void);
void lc_prof_end(lc_prof_family f, double t0, double flops);

#define LC_PROF_BEGIN() double lc_prof_t0_ = lc_prof_enabled ? lc_prof_begin() : 0
#define LC_PROF_END(fam, flops)                      \
    do {                                             \
        if (lc_prof_t0_ != 0)                        \
            lc_prof_end((fam), lc_prof_t0_, (flops)); \
    } while (0)

#endif
