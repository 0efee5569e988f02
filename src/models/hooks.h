/* Hook registry for model sites. A model names each attention layer by its
 * diffusers module path ("down_blocks.1.attentions.0.transformer_blocks.0.
 * attn1") and keeps one lc_hook_site per layer; hooks are registered with
 * glob patterns ("*attn1", "down_blocks.1.*") and the registry marks the
 * sites they match, so an unhooked site costs one bit test per forward.
 *
 * Kinds:
 *  - LC_HOOK_ATTN_PROBS: after the softmax, `in` is the probabilities
 *    [B, heads, Lq, Lk]; the hook may observe them, or set *out to a
 *    replacement of the same shape (prompt-to-prompt style edits).
 *  - LC_HOOK_KV_EXTEND: self-attention sites only; `in` is the layer's
 *    normed input hidden states [B, L, C]; the hook sets *out to extra
 *    tokens [B, L_extra, C] appended to the key/value input before the
 *    to_k/to_v projections (reference-only, VideoMaker), or leaves NULL.
 * A hook returns LC_OK, or LC_ERR with a message, which fails the forward. */
#ifndef LC_HOOKS_H
#define LC_HOOKS_H

#include "core/tensor.h"

typedef enum { LC_HOOK_ATTN_PROBS = 0, LC_HOOK_KV_EXTEND = 1, LC_HOOK_NKINDS } lc_hook_kind;

/* `in` is borrowed for the duration of the call; *out (NULL on entry) is a
 * new reference the caller takes over. */
typedef int (*lc_hook_fn)(void *ud, const char *site, lc_hook_kind kind, lc_tensor *in,
                          lc_tensor **out);

/* one hookable place in a model */
typedef struct {
    char name[160];
    int is_self;   /* self-attention (KV_EXTEND allowed) */
    unsigned mask; /* bit k set: some hook of kind k matches this site */
} lc_hook_site;

typedef struct lc_hooks lc_hooks;

lc_hooks *lc_hooks_new(void);
/* releases every hook's user data */
void lc_hooks_free(lc_hooks *h);

/* Registers fn for the sites matching `pattern`; returns an id > 0, or
 * LC_ERR when the pattern matches no site that accepts this kind (the
 * message lists example site names). `release` (may be NULL) is called on
 * ud when the hook is removed or the registry freed. Site masks are
 * refreshed. */
int lc_hooks_add(lc_hooks *h, lc_hook_site *const *sites, int nsites, const char *pattern,
                 lc_hook_kind kind, lc_hook_fn fn, void *ud, void (*release)(void *));
/* Removes hook `id` and refreshes the masks; LC_ERR if unknown. */
int lc_hooks_remove(lc_hooks *h, lc_hook_site *const *sites, int nsites, int id);
int lc_hooks_count(const lc_hooks *h);
/* Recomputes every site's mask from the registered hooks. */
void lc_hooks_refresh(const lc_hooks *h, lc_hook_site *const *sites, int nsites);

/* Runs the hooks of `kind` matching `site` in registration order. For
 * ATTN_PROBS, *probs may be replaced (the old reference is freed). For
 * KV_EXTEND, *extra receives the extra tokens of every hook concatenated
 * along dim 1 (NULL when none gave any). */
int lc_hooks_run_probs(const lc_hooks *h, const lc_hook_site *site, lc_tensor **probs);
int lc_hooks_run_kv(const lc_hooks *h, const lc_hook_site *site, lc_tensor *hidden,
                    lc_tensor **extra);

/* Glob match: '*' any run of characters (dots included), '?' one
 * character; everything else literal. A pattern without wildcards must
 * equal the name. */
int lc_glob_match(const char *pattern, const char *name);

const char *lc_hook_kind_name(lc_hook_kind k);
int lc_hook_kind_from_name(const char *name, lc_hook_kind *out);

#endif
