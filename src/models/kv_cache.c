/* Cross-attention k/v cache (see kv_cache.h). */
#include "models/kv_cache.h"

#include <stdlib.h>
#include <string.h>

#include "core/error.h"

typedef struct {
    const void *key;
    lc_tensor *k, *v;
} kv_entry;

struct lc_kv_cache {
    lc_tensor *context; /* our own f32 copy of the last context, or NULL */
    kv_entry *e;
    int n, cap;
    int enabled;
};


static void drop_entries(lc_kv_cache *c)
{
    for (int i = 0; i < c->n; i++) {
        lc_tensor_free(c->e[i].k);
        lc_tensor_free(c->e[i].v);
    }
    c->n = 0;
}

void lc_kv_cache_free(lc_kv_cache *c)
{
    if (!c)
        return;
    drop_entries(c);
    free(c->e);
    lc_tensor_free(c->context);
    free(c);
}

static int same_values(const lc_tensor *saved, const lc_tensor *t)
{
    if (!saved || saved->ndim != t->ndim)
        return 0;
    for (int i = 0; i < t->ndim; i++)
        if (saved->shape[i] != t->shape[i])
            return 0;
    lc_tensor *tf = lc_tensor_f32((lc_tensor *)t); /* a reference when already f32 contiguous */
    if (!tf)
        return 0;
    int same = memcmp(lc_tensor_data(saved), lc_tensor_data(tf),
                      (size_t)lc_tensor_numel(t) * sizeof(float)) == 0;
    lc_tensor_free(tf);
    return same;
}

lc_kv_cache *lc_kv_cache_begin(lc_kv_cache **cp, const lc_tensor *context)
{
    if (!*cp)
        *cp = lc_calloc(1, sizeof(lc_kv_cache), "k/v cache");
    lc_kv_cache *c = *cp;
    if (!c)
        return NULL;
    if (same_values(c->context, context)) {
        c->enabled = 1;
        return c;
    }
    drop_entries(c);
    lc_tensor_free(c->context);
    /* a copy: the caller may change its tensor in place before the next step */
    c->context = lc_tensor_to(context, LC_F32);
    c->enabled = c->context != NULL;
    return c;
}

int lc_kv_cache_get(lc_kv_cache *c, const void *key, lc_tensor **k, lc_tensor **v)
{
    if (!c->enabled)
        return 0;
    for (int i = 0; i < c->n; i++)
        if (c->e[i].key == key) {
            lc_tensor_retain(c->e[i].k);
            lc_tensor_retain(c->e[i].v);
            *k = c->e[i].k;
            *v = c->e[i].v;
            return 1;
        }
    return 0;
}

void lc_kv_cache_put(lc_kv_cache *c, const void *key, lc_tensor *k, lc_tensor *v)
{
    if (!c->enabled)
        return;
    if (c->n == c->cap) {
        int cap = c->cap ? 2 * c->cap : 16;
        kv_entry *e = realloc(c->e, (size_t)cap * sizeof *e);
        if (!e)
            return; /* not kept: computed again next time */
        c->e = e;
        c->cap = cap;
    }
    lc_tensor_retain(k);
    lc_tensor_retain(v);
    c->e[c->n++] = (kv_entry){key, k, v};
}
