/* UNet2DConditionModel: assembly of the blocks, the forward pass with
 * ControlNet residuals and per-sample timesteps, and the hook sites. */
#include <stdlib.h>
#include <string.h>

#include "models/unet.h"
#include "models/unet_blocks.h"
#include "ops/ops.h"

#define MAXSKIPS (1 + LC_UNET_MAXBLOCKS * 64)

struct lc_unet {
    lc_unet_config c;
    lc_ulinear conv_in, time1, time2, norm_out, conv_out;
    lc_ublock down[LC_UNET_MAXBLOCKS], up[LC_UNET_MAXBLOCKS], mid;
    int has_mid;
    int nskips;
    lc_hook_site **sites;
    int nsites;
    lc_hooks *hooks;
    lc_kv_cache *kv; /* made at the first forward */
};

static void ulin_free(lc_ulinear *l)
{
    lc_tensor_free(l->w);
    lc_tensor_free(l->b);
}

void lc_unet_free(lc_unet *u)
{
    if (!u)
        return;
    ulin_free(&u->conv_in);
    ulin_free(&u->time1);
    ulin_free(&u->time2);
    ulin_free(&u->norm_out);
    ulin_free(&u->conv_out);
    for (int i = 0; i < LC_UNET_MAXBLOCKS; i++) {
        lc_ublock_free(&u->down[i]);
        lc_ublock_free(&u->up[i]);
    }
    lc_ublock_free(&u->mid);
    lc_hooks_free(u->hooks);
    lc_kv_cache_free(u->kv);
    free(u->sites);
    free(u);
}

static int check_config(const lc_unet_config *c)
{
    if (c->nblocks < 1 || c->nblocks > LC_UNET_MAXBLOCKS)
        return lc_err("unet config: %d blocks (1..%d supported)", c->nblocks, LC_UNET_MAXBLOCKS);
    if (c->in_channels < 1 || c->out_channels < 1)
        return lc_err("unet config: in_channels %d / out_channels %d", c->in_channels,
                      c->out_channels);
    if (c->norm_num_groups < 1)
        return lc_err("unet config: norm_num_groups %d", c->norm_num_groups);
    if (c->downsample_padding < 0 || c->downsample_padding > 1)
        return lc_err("unet config: downsample_padding %d (0 or 1 supported)",
                      c->downsample_padding);
    if (!(c->mid_block_scale_factor > 0) || !(c->norm_eps > 0) || c->time_embed_dim < 1)
        return lc_err("unet config: mid_block_scale_factor %g, norm_eps %g, time embedding %d",
                      c->mid_block_scale_factor, c->norm_eps, c->time_embed_dim);
    if (c->conv_in_kernel < 1 || c->conv_out_kernel < 1 || c->conv_in_kernel % 2 == 0 ||
        c->conv_out_kernel % 2 == 0)
        return lc_err("unet config: conv kernels must be odd (%d, %d)", c->conv_in_kernel,
                      c->conv_out_kernel);
    for (int i = 0; i < c->nblocks; i++) {
        if (c->block_out_channels[i] < 1 || c->layers_per_block[i] < 1 ||
            c->layers_per_block[i] > 32)
            return lc_err("unet config: block %d: %d channels, %d layers", i,
                          c->block_out_channels[i], c->layers_per_block[i]);
        if ((c->down_cross[i] || c->up_cross[c->nblocks - 1 - i] || c->mid_cross) &&
            (c->heads[i] < 1 || c->transformer_layers[i] < 1 || c->transformer_layers[i] > 64 ||
             c->up_transformer_layers[c->nblocks - 1 - i] < 1 ||
             c->up_transformer_layers[c->nblocks - 1 - i] > 64))
            return lc_err("unet config: block %d: %d heads, %d/%d transformer layers (down/up)", i,
                          c->heads[i], c->transformer_layers[i],
                          c->up_transformer_layers[c->nblocks - 1 - i]);
    }
    if (c->cross_attention_dim < 1)
        return lc_err("unet config: cross_attention_dim %d", c->cross_attention_dim);
    return LC_OK;
}

/* builds every module from b (taking or creating tensors) */
static lc_unet *build(const lc_unet_config *c, lc_ubuild *b)
{
    if (check_config(c) != LC_OK)
        return NULL;
    lc_unet *u = lc_calloc(1, sizeof *u, "unet");
    if (!u)
        return NULL;
    u->c = *c;
    int c0 = c->block_out_channels[0], T = c->time_embed_dim, n = c->nblocks;
    int k = c->conv_in_kernel, ko = c->conv_out_kernel;
    u->conv_in.w = lc_ubuild_take(b, 'w', 4, (const int64_t[]){c0, c->in_channels, k, k},
                                  "conv_in.weight");
    u->conv_in.b = lc_ubuild_take(b, 'b', 1, (const int64_t[]){c0}, "conv_in.bias");
    u->time1.w = lc_ubuild_take(b, 'w', 2, (const int64_t[]){T, c0}, "time_embedding.linear_1.weight");
    u->time1.b = lc_ubuild_take(b, 'b', 1, (const int64_t[]){T}, "time_embedding.linear_1.bias");
    u->time2.w = lc_ubuild_take(b, 'w', 2, (const int64_t[]){T, T}, "time_embedding.linear_2.weight");
    u->time2.b = lc_ubuild_take(b, 'b', 1, (const int64_t[]){T}, "time_embedding.linear_2.bias");
    if (b->failed)
        goto fail;
    u->nskips = 1;
    for (int i = 0; i < n; i++) {
        if (lc_down_block_build(b, &u->down[i], c, i) != LC_OK)
            goto fail;
        u->nskips += u->down[i].nres + u->down[i].has_sampler;
    }
    if (c->mid_cross) {
        if (lc_mid_block_build(b, &u->mid, c) != LC_OK)
            goto fail;
        u->has_mid = 1;
    }
    for (int i = 0; i < n; i++)
        if (lc_up_block_build(b, &u->up[i], c, i) != LC_OK)
            goto fail;
    u->norm_out.w = lc_ubuild_take(b, 'n', 1, (const int64_t[]){c0}, "conv_norm_out.weight");
    u->norm_out.b = lc_ubuild_take(b, 'b', 1, (const int64_t[]){c0}, "conv_norm_out.bias");
    u->conv_out.w = lc_ubuild_take(b, 'w', 4, (const int64_t[]){c->out_channels, c0, ko, ko},
                                   "conv_out.weight");
    u->conv_out.b = lc_ubuild_take(b, 'b', 1, (const int64_t[]){c->out_channels}, "conv_out.bias");
    if (b->failed)
        goto fail;
    int ns = 0;
    for (int i = 0; i < n; i++)
        ns += lc_ublock_sites(&u->down[i], NULL) + lc_ublock_sites(&u->up[i], NULL);
    if (u->has_mid)
        ns += lc_ublock_sites(&u->mid, NULL);
    u->sites = lc_calloc((size_t)ns + 1, sizeof *u->sites, "unet hook sites");
    u->hooks = lc_hooks_new();
    if (!u->sites || !u->hooks)
        goto fail;
    for (int i = 0; i < n; i++)
        u->nsites += lc_ublock_sites(&u->down[i], u->sites + u->nsites);
    if (u->has_mid)
        u->nsites += lc_ublock_sites(&u->mid, u->sites + u->nsites);
    for (int i = 0; i < n; i++)
        u->nsites += lc_ublock_sites(&u->up[i], u->sites + u->nsites);
    return u;
fail:
    lc_unet_free(u);
    return NULL;
}

lc_unet *lc_unet_new(const lc_unet_config *c, lc_weights *w)
{
    lc_ubuild b = {.w = w};
    lc_unet *u = build(c, &b);
    if (!u) {
        lc_err_prefix("unet: ");
        return NULL;
    }
    if (lc_weights_check_unused(w, "unet") != LC_OK) {
        lc_unet_free(u);
        return NULL;
    }
    return u;
}

lc_weights *lc_unet_random_weights(const lc_unet_config *c, uint64_t seed)
{
    lc_weights *w = lc_weights_new();
    if (!w)
        return NULL;
    lc_ubuild b = {.w = w, .random = 1, .state = seed};
    lc_unet *u = build(c, &b);
    if (!u) {
        lc_err_prefix("unet random weights: ");
        lc_weights_free(w);
        return NULL;
    }
    lc_unet_free(u);
    return w;
}

const lc_unet_config *lc_unet_get_config(const lc_unet *u)
{
    return &u->c;
}

int lc_unet_num_skips(const lc_unet *u)
{
    return u->nskips;
}

int lc_unet_num_sites(const lc_unet *u)
{
    return u->nsites;
}

const lc_hook_site *lc_unet_site(const lc_unet *u, int i)
{
    return (i >= 0 && i < u->nsites) ? u->sites[i] : NULL;
}

int lc_unet_hook_add(lc_unet *u, const char *pattern, lc_hook_kind kind, lc_hook_fn fn, void *ud,
                     void (*release)(void *))
{
    return lc_hooks_add(u->hooks, u->sites, u->nsites, pattern, kind, fn, ud, release);
}

int lc_unet_hook_remove(lc_unet *u, int id)
{
    return lc_hooks_remove(u->hooks, u->sites, u->nsites, id);
}

static int check_inputs(const lc_unet *u, const lc_tensor *x, const lc_tensor *ctx,
                        const lc_unet_opts *o)
{
    const lc_unet_config *c = &u->c;
    if (x->ndim != 4 || x->shape[1] != c->in_channels || x->shape[0] < 1)
        return lc_err("unet: sample %s, expected [N,%d,H,W]", LC_SHAPE_STR(x), c->in_channels);
    if (x->shape[2] < 1 || x->shape[3] < 1)
        return lc_err("unet: sample %s is empty", LC_SHAPE_STR(x));
    if (!ctx || ctx->ndim != 3 || ctx->shape[2] != c->cross_attention_dim ||
        (ctx->shape[0] != x->shape[0] && ctx->shape[0] != 1) || ctx->shape[1] < 1)
        return lc_err("unet: context %s, expected [%lld,L,%d]", ctx ? LC_SHAPE_STR(ctx) : "missing",
                      (long long)x->shape[0], c->cross_attention_dim);
    if (o && o->down_residuals && o->n_down_residuals != u->nskips)
        return lc_err("unet: %d down residuals, expected %d (one per skip connection)",
                      o->n_down_residuals, u->nskips);
    if (o && o->mid_residual && !u->has_mid)
        return lc_err("unet: mid residual given but the model has no mid block");
    return LC_OK;
}

/* skips[i] += r, r with exactly the skip's shape */
static int add_residual(lc_tensor **skip, const lc_tensor *r, const char *what, int i)
{
    if (!r)
        return lc_err("unet: %s %d is missing", what, i);
    if (!lc_tensor_same_shape(*skip, r))
        return lc_err("unet: %s %d has shape %s, expected %s", what, i, LC_SHAPE_STR(r),
                      LC_SHAPE_STR(*skip));
    lc_tensor *s = lc_binary(LC_ADD, *skip, r);
    if (!s)
        return LC_ERR;
    lc_tensor_free(*skip);
    *skip = s;
    return LC_OK;
}

lc_tensor *lc_unet_forward(lc_unet *u, const lc_tensor *x, const lc_tensor *timesteps,
                           const lc_tensor *context, const lc_unet_opts *opts)
{
    const lc_unet_config *c = &u->c;
    if (check_inputs(u, x, context, opts) != LC_OK)
        return NULL;
    int64_t N = x->shape[0];
    lc_tensor *skips[MAXSKIPS] = {0};
    int nskips = 0;
    lc_tensor *emb = NULL, *ctx = NULL, *h = NULL, *xin = NULL;
    lc_tensor *out = NULL;

    /* one upsampler per level but the last: sizes that do not halve
     * evenly need the skip's size passed to the upsampler */
    int64_t fac = (int64_t)1 << (c->nblocks - 1);
    int fwd_size = (x->shape[2] % fac) != 0 || (x->shape[3] % fac) != 0;

    if (c->center_input_sample) {
        xin = lc_binary_scalar(LC_MUL, x, 2.0, 0);
        if (!xin || lc_binary_scalar_(LC_SUB, xin, 1.0) != LC_OK)
            goto done;
    } else {
        xin = lc_tensor_f32((lc_tensor *)x);
        if (!xin)
            goto done;
    }
    /* every resnet applies SiLU to the embedding before its projection */
    emb = lc_time_embedding_act(timesteps, N, c, &u->time1, &u->time2);
    if (!emb)
        goto done;
    if (context->shape[0] != N) {
        ctx = lc_tensor_expand((lc_tensor *)context, 3,
                               (const int64_t[]){N, context->shape[1], context->shape[2]});
    } else {
        ctx = (lc_tensor *)context;
        lc_tensor_retain(ctx);
    }
    if (!ctx)
        goto done;
    lc_ufwd f = {.temb_act = emb, .context = ctx,
                 .hooks = lc_hooks_count(u->hooks) ? u->hooks : NULL,
                 .kv = lc_kv_cache_begin(&u->kv, ctx)};

    lc_conv2d_params pin = {{1, 1}, {c->conv_in_kernel / 2, c->conv_in_kernel / 2}, {1, 1}, 1};
    h = lc_conv2d(xin, u->conv_in.w, u->conv_in.b, &pin);
    if (!h)
        goto done;
    lc_tensor_retain(h);
    skips[nskips++] = h;
    for (int i = 0; i < c->nblocks; i++) {
        lc_tensor *r = lc_down_block_forward(&f, &u->down[i], h, skips, &nskips);
        lc_tensor_free(h);
        h = r;
        if (!h)
            goto done;
    }
    if (opts && opts->down_residuals)
        for (int i = 0; i < nskips; i++)
            if (add_residual(&skips[i], opts->down_residuals[i], "down residual", i + 1) != LC_OK)
                goto done;
    if (u->has_mid) {
        lc_tensor *r = lc_mid_block_forward(&f, &u->mid, h);
        lc_tensor_free(h);
        h = r;
        if (!h)
            goto done;
    }
    if (opts && opts->mid_residual && add_residual(&h, opts->mid_residual, "mid residual", 1) != LC_OK)
        goto done;
    for (int i = 0; i < c->nblocks; i++) {
        int64_t oh = 0, ow = 0;
        int rest = nskips - u->up[i].nres;
        if (i < c->nblocks - 1 && fwd_size && rest > 0) {
            oh = skips[rest - 1]->shape[2];
            ow = skips[rest - 1]->shape[3];
        }
        lc_tensor *r = lc_up_block_forward(&f, &u->up[i], h, skips, &nskips, oh, ow);
        lc_tensor_free(h);
        h = r;
        if (!h)
            goto done;
    }
    lc_tensor *g = lc_group_norm_silu(h, c->norm_num_groups, u->norm_out.w, u->norm_out.b,
                                      c->norm_eps);
    if (!g)
        goto done;
    lc_conv2d_params pout = {{1, 1}, {c->conv_out_kernel / 2, c->conv_out_kernel / 2}, {1, 1}, 1};
    out = lc_conv2d(g, u->conv_out.w, u->conv_out.b, &pout);
    lc_tensor_free(g);
done:
    for (int i = 0; i < nskips; i++)
        lc_tensor_free(skips[i]);
    lc_tensor_free(emb);
    lc_tensor_free(ctx);
    lc_tensor_free(h);
    lc_tensor_free(xin);
    return out;
}
