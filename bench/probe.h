/* Shared by the benchmarks: clocks and the FMA peak probe. */
#ifndef LUCID_BENCH_PROBE_H
#define LUCID_BENCH_PROBE_H

double bench_now(void);     /* monotonic wall seconds */
double bench_cpu_now(void); /* process CPU seconds */

/* Peak fp32 GFLOP/s of the machine with `threads` pool threads each
 * running independent FMA chains at the widest width the CPU has (512-bit
 * with AVX-512, else 256-bit with AVX2+FMA; 0 elsewhere): the best of 3
 * wall-clock runs. *per_core: the same per CPU-second. Re-initialises the
 * pool to `threads`. *what names the width used. */
double bench_probe_peak(int threads, double *per_core, const char **what);

#endif
