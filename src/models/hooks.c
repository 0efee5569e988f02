/* Hook registry: patterns, kinds, per-site masks. See hooks.h. */
#include <stdlib.h>
#include <string.h>

#include "hooks.h"
#include "models/unet_blocks.h"

typedef struct {
    int id;
    lc_hook_kind kind;
    char *pattern;
    lc_hook_fn fn;
    void *ud;
    void (*release)(void *);
} hook;

struct lc_hooks {
    hook *v;
    int n, cap;
    int next_id;
};

static const char *kind_names[LC_HOOK_NKINDS] = {"attn_probs", "kv_extend"};

const char *lc_hook_kind_name(lc_hook_kind k)
{
    return (k >= 0 && k < LC_HOOK_NKINDS) ? kind_names[k] : "?";
}

int lc_hook_kind_from_name(const char *name, lc_hook_kind *out)
{
    for (int k = 0; k < LC_HOOK_NKINDS; k++)
        if (strcmp(name, kind_names[k]) == 0) {
            *out = (lc_hook_kind)k;
            return LC_OK;
        }
    return lc_err("unknown hook kind '%s' (expected attn_probs or kv_extend)", name);
}

int lc_glob_match(const char *p, const char *s)
{
    /* iterative matcher with one backtrack point: linear enough for
     * module paths and never recursive */
    const char *star = NULL, *resume = NULL;
    while (*s) {
        if (*p == '*') {
            star = p++;
            resume = s;
        } else if (*p == '?' || *p == *s) {
            p++;
            s++;
        } else if (star) {
            p = star + 1;
            s = ++resume;
        } else {
            return 0;
        }
    }
    while (*p == '*')
        p++;
    return *p == 0;
}

lc_hooks *lc_hooks_new(void)
{
    lc_hooks *h = lc_calloc(1, sizeof *h, "hook registry");
    if (h)
        h->next_id = 1;
    return h;
}

static void hook_release(hook *k)
{
    if (k->release)
        k->release(k->ud);
    free(k->pattern);
}

void lc_hooks_free(lc_hooks *h)
{
    if (!h)
        return;
    for (int i = 0; i < h->n; i++)
        hook_release(&h->v[i]);
    free(h->v);
    free(h);
}

int lc_hooks_count(const lc_hooks *h)
{
    return h ? h->n : 0;
}

static int accepts(const lc_hook_site *s, lc_hook_kind kind)
{
    return kind != LC_HOOK_KV_EXTEND || s->is_self;
}

void lc_hooks_refresh(const lc_hooks *h, lc_hook_site *const *sites, int nsites)
{
    for (int i = 0; i < nsites; i++) {
        sites[i]->mask = 0;
        for (int j = 0; h && j < h->n; j++)
            if (accepts(sites[i], h->v[j].kind) && lc_glob_match(h->v[j].pattern, sites[i]->name))
                sites[i]->mask |= 1u << h->v[j].kind;
    }
}

int lc_hooks_add(lc_hooks *h, lc_hook_site *const *sites, int nsites, const char *pattern,
                 lc_hook_kind kind, lc_hook_fn fn, void *ud, void (*release)(void *))
{
    if (kind < 0 || kind >= LC_HOOK_NKINDS)
        return lc_err("hook: unknown kind %d", (int)kind);
    int matched = 0;
    for (int i = 0; i < nsites; i++)
        if (accepts(sites[i], kind) && lc_glob_match(pattern, sites[i]->name))
            matched++;
    if (!matched) {
        const char *eg = nsites ? sites[0]->name : "(model has no attention sites)";
        for (int i = 0; i < nsites; i++)
            if (accepts(sites[i], kind)) {
                eg = sites[i]->name;
                break;
            }
        return lc_err("hook: pattern '%s' matches no %s site (sites look like '%s')", pattern,
                      kind == LC_HOOK_KV_EXTEND ? "self-attention" : "attention", eg);
    }
    if (h->n == h->cap) {
        int cap = h->cap ? 2 * h->cap : 8;
        hook *v = realloc(h->v, (size_t)cap * sizeof *v);
        if (!v)
            return lc_err("hook: out of memory");
        h->v = v;
        h->cap = cap;
    }
    char *pat = strdup(pattern);
    if (!pat)
        return lc_err("hook: out of memory");
    hook *k = &h->v[h->n++];
    k->id = h->next_id++;
    k->kind = kind;
    k->pattern = pat;
    k->fn = fn;
    k->ud = ud;
    k->release = release;
    lc_hooks_refresh(h, sites, nsites);
    return k->id;
}

int lc_hooks_remove(lc_hooks *h, lc_hook_site *const *sites, int nsites, int id)
{
    for (int i = 0; i < h->n; i++)
        if (h->v[i].id == id) {
            hook_release(&h->v[i]);
            memmove(&h->v[i], &h->v[i + 1], (size_t)(h->n - i - 1) * sizeof *h->v);
            h->n--;
            lc_hooks_refresh(h, sites, nsites);
            return LC_OK;
        }
    return lc_err("hook: no hook with id %d (already removed?)", id);
}

int lc_hooks_run_probs(const lc_hooks *h, const lc_hook_site *site, lc_tensor **probs)
{
    for (int i = 0; i < h->n; i++) {
        const hook *k = &h->v[i];
        if (k->kind != LC_HOOK_ATTN_PROBS || !lc_glob_match(k->pattern, site->name))
            continue;
        lc_tensor *rep = NULL;
        if (k->fn(k->ud, site->name, LC_HOOK_ATTN_PROBS, *probs, &rep) != LC_OK) {
            lc_tensor_free(rep);
            return LC_ERR;
        }
        if (rep) {
            if (!lc_tensor_same_shape(rep, *probs)) {
                lc_err("hook at %s: replacement probabilities %s, expected %s", site->name,
                       LC_SHAPE_STR(rep), LC_SHAPE_STR(*probs));
                lc_tensor_free(rep);
                return LC_ERR;
            }
            lc_tensor *c = lc_tensor_f32(rep);
            lc_tensor_free(rep);
            if (!c)
                return LC_ERR;
            lc_tensor_free(*probs);
            *probs = c;
        }
    }
    return LC_OK;
}

int lc_hooks_run_kv(const lc_hooks *h, const lc_hook_site *site, lc_tensor *hidden,
                    lc_tensor **extra)
{
    *extra = NULL;
    for (int i = 0; i < h->n; i++) {
        const hook *k = &h->v[i];
        if (k->kind != LC_HOOK_KV_EXTEND || !lc_glob_match(k->pattern, site->name))
            continue;
        lc_tensor *x = NULL;
        if (k->fn(k->ud, site->name, LC_HOOK_KV_EXTEND, hidden, &x) != LC_OK) {
            lc_tensor_free(x);
            goto fail;
        }
        if (!x)
            continue;
        if (x->ndim != 3 || x->shape[0] != hidden->shape[0] || x->shape[2] != hidden->shape[2]) {
            lc_err("hook at %s: extra key/value tokens %s, expected [%lld,L,%lld]", site->name,
                   LC_SHAPE_STR(x), (long long)hidden->shape[0], (long long)hidden->shape[2]);
            lc_tensor_free(x);
            goto fail;
        }
        if (!*extra) {
            *extra = x;
        } else {
            lc_tensor *c = lc_ucat1(*extra, x);
            lc_tensor_free(x);
            if (!c)
                goto fail;
            lc_tensor_free(*extra);
            *extra = c;
        }
    }
    return LC_OK;
fail:
    lc_tensor_free(*extra);
    *extra = NULL;
    return LC_ERR;
}
