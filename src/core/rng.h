/* Random number generators that reproduce PyTorch bit for bit.
 *
 * LC_RNG_CPU is torch.Generator("cpu"): mt19937 seeded with the low 32 bits
 * of the 64-bit seed, plus the cached second Box-Muller value that torch's
 * scalar normal path keeps in the generator. lc_randn / lc_rand give the
 * same bits as torch.randn / torch.rand on that generator, and successive
 * calls advance the state exactly as torch does. For f32 tensors of 16 or
 * more elements torch's result depends on its build: lucid reproduces the
 * x86 AVX2 kernel (avx_mathfun polynomials), which is what x86 torch runs
 * and what the golden data holds. LC_RNG_CPU_LIBM ("cpu-libm") is the same
 * stream through torch's generic kernel (libm logf/cosf/sinf), which torch
 * runs on CPUs without AVX2 (ARM) or with ATEN_CPU_CAPABILITY=default;
 * bit-exact where the libm is glibc's.
 *
 * LC_RNG_PHILOX is the "NV" generator of A1111's webui (rng_philox.py,
 * which imitates torch.randn on CUDA): Philox 4x32-10 keyed by the seed,
 * one counter offset per call, Box-Muller in double rounded to float.
 * Bit-exact with that file's numpy code. */
#ifndef LC_RNG_H
#define LC_RNG_H

#include <stdint.h>

#include "tensor.h"

typedef enum {
    LC_RNG_CPU = 0,  /* torch.Generator("cpu") as x86 torch computes it */
    LC_RNG_PHILOX,   /* A1111's NV noise */
    LC_RNG_CPU_LIBM, /* the same stream through torch's generic kernel */
} lc_rng_kind;

typedef struct lc_generator lc_generator;

/* NULL only on out-of-memory or an unknown kind (lc_errmsg() set). */
lc_generator *lc_generator_new(uint64_t seed, lc_rng_kind kind);
void lc_generator_free(lc_generator *g);
lc_generator *lc_generator_clone(const lc_generator *g);

/* torch's manual_seed: restarts the stream and drops the cached normal. */
void lc_generator_manual_seed(lc_generator *g, uint64_t seed);
uint64_t lc_generator_seed(const lc_generator *g); /* torch's initial_seed() */
lc_rng_kind lc_generator_kind(const lc_generator *g);
const char *lc_rng_kind_name(lc_rng_kind kind); /* "cpu", "philox", "cpu-libm" */
int lc_rng_kind_from_name(const char *name, lc_rng_kind *out); /* LC_ERR if unknown */

/* The whole state as a contiguous u8 tensor (new ref), to save with a
 * recipe, and back. set_state checks size, magic and kind ("cpu" and
 * "cpu-libm" states are interchangeable: same engine). */
lc_tensor *lc_generator_get_state(const lc_generator *g);
int lc_generator_set_state(lc_generator *g, const lc_tensor *state);

/* Raw draws (CPU kind: mt19937 outputs; random64 = two draws, first high). */
uint32_t lc_generator_random(lc_generator *g);
uint64_t lc_generator_random64(lc_generator *g);

/* torch.randn(shape, dtype=..., generator=g): dt is LC_F32, LC_F64,
 * LC_F16 or LC_BF16 (each with torch's own arithmetic for that type). */
lc_tensor *lc_randn(lc_generator *g, lc_dtype dt, int ndim, const int64_t *shape);
/* torch.rand: uniform on [0, 1). */
lc_tensor *lc_rand(lc_generator *g, lc_dtype dt, int ndim, const int64_t *shape);
/* Fills a contiguous tensor in place, as tensor.normal_() / uniform_(). */
int lc_randn_(lc_generator *g, lc_tensor *t);
int lc_rand_(lc_generator *g, lc_tensor *t);

#endif
