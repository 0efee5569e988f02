/* A model's weights: diffusers-style names -> f32 contiguous tensors.
 * Loaders fill it from a diffusers folder or a single-file checkpoint (after
 * translating CompVis/ldm names); models take what they need by name with
 * the expected shape, so every missing or mis-shaped tensor is reported by
 * name, and whatever is left unused is reported as unexpected. */
#ifndef LC_WEIGHTS_H
#define LC_WEIGHTS_H

#include "core/tensor.h"

typedef struct lc_weights lc_weights;

lc_weights *lc_weights_new(void);
void lc_weights_free(lc_weights *w);
/* takes over the caller's reference; f16/bf16 are converted to f32 here,
 * except matrices and conv kernels of 65536 elements or more, which stay
 * f16/bf16 (half the memory; ops widen them per call, with the same
 * values). LUCID_F32_WEIGHTS=1 converts everything. */
int lc_weights_put(lc_weights *w, const char *name, lc_tensor *t);
int lc_weights_count(const lc_weights *w);
const char *lc_weights_name(const lc_weights *w, int i);
/* borrowed reference or NULL (no error set) */
lc_tensor *lc_weights_get(lc_weights *w, const char *name);
/* borrowed reference; error "missing tensor NAME (expected [..])" or "NAME:
 * shape [..], expected [..]" otherwise. ndim = -1 skips the shape check.
 * Marks the tensor used. */
lc_tensor *lc_weights_need(lc_weights *w, const char *name, int ndim, const int64_t *shape);
int lc_weights_has_prefix(const lc_weights *w, const char *prefix);
/* LC_ERR listing (up to a few) tensors never taken by lc_weights_need */
int lc_weights_check_unused(const lc_weights *w, const char *what);

/* Adds every tensor of a safetensors file whose name starts with
 * `prefix` (prefix stripped; NULL = all), optionally renamed by `map`
 * (returns 0 to skip the tensor; writes the new name otherwise). */
typedef int (*lc_key_map_fn)(const char *name, char *out, size_t outlen, void *ctx);
int lc_weights_load(lc_weights *w, const char *path, const char *prefix, lc_key_map_fn map,
                    void *ctx);

#endif
