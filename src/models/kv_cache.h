/* Cross-attention keys and values kept across UNet forwards.
 *
 * A cross-attention's k and v are linear maps of the text context alone,
 * and a sampler calls the UNet with the same context at every step: they
 * are computed at the first step and reused while the context holds the
 * same values. The cache keeps its own copy of the context and compares it
 * bit for bit at the start of each forward, so a context changed in place
 * or replaced between steps is noticed; reused k and v are the very
 * tensors computed before, so results are the same bits. */
#ifndef LC_KV_CACHE_H
#define LC_KV_CACHE_H

#include "core/tensor.h"

typedef struct lc_kv_cache lc_kv_cache;

void lc_kv_cache_free(lc_kv_cache *c);

/* Starts a forward with this context [N, L, D] (any dtype, strided or
 * expanded), making *c at the first one: keeps the entries if the context
 * holds the values of the last one, else drops them and remembers it.
 * Returns *c, or NULL if it could not be made (k and v are then computed
 * every time). On failure to copy the context (out of memory) the cache is
 * empty and disabled for this forward; the forward can go on. */
lc_kv_cache *lc_kv_cache_begin(lc_kv_cache **c, const lc_tensor *context);

/* The k and v stored for key (an attention module) as new references, or
 * 0 when there are none. */
int lc_kv_cache_get(lc_kv_cache *c, const void *key, lc_tensor **k, lc_tensor **v);

/* Keeps k and v (retained) for key; does nothing while disabled. */
void lc_kv_cache_put(lc_kv_cache *c, const void *key, lc_tensor *k, lc_tensor *v);

#endif
