/* UNet building blocks (diffusers 0.29): ResnetBlock2D, Transformer2DModel,
 * attention with hook sites, down/mid/up blocks, timestep embedding. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/unet_blocks.h"
#include "core/pool.h"
#include "ops/ops.h"

#define S1(a) ((const int64_t[]){(a)})
#define S2(a, b) ((const int64_t[]){(a), (b)})
#define S4(a, b, c, d) ((const int64_t[]){(a), (b), (c), (d)})

/* ---- building ---- */

static uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

typedef struct {
    float *p;
    int64_t n;
    uint64_t seed;
    float a, b; /* value = a * z + b */
} fill_job;

/* Approximately standard normal values, cheap enough for the ~860M of a
 * full-size UNet: the sum of four 16-bit uniforms of one splitmix64 draw,
 * centred and scaled to unit variance (Irwin-Hall, n = 4). Each chunk
 * seeds from (tensor seed, chunk index), so the values do not depend on the
 * thread count. */
static void fill_range(void *ctx, int64_t b, int64_t e)
{
    const fill_job *j = ctx;
    const int64_t chunk = 1 << 16;
    for (int64_t c0 = b; c0 < e; c0 += chunk) {
        uint64_t st = j->seed ^ (0xD1B54A32D192ED03ull * (uint64_t)(c0 / chunk + 1));
        int64_t c1 = c0 + chunk < e ? c0 + chunk : e;
        for (int64_t i = c0; i < c1; i++) {
            uint64_t r = splitmix(&st);
            float u = (float)(r & 0xFFFF) + (float)((r >> 16) & 0xFFFF) +
                      (float)((r >> 32) & 0xFFFF) + (float)(r >> 48);
            float z = (u * (1.0f / 65536.0f) - 2.0f) * 1.7320508f;
            j->p[i] = j->a * z + j->b;
        }
    }
}

static lc_tensor *random_tensor(uint64_t *s, char kind, int ndim, const int64_t *shape)
{
    lc_tensor *t = lc_tensor_new(LC_F32, ndim, shape);
    if (!t)
        return NULL;
    double fan_in = 1;
    for (int i = 1; i < ndim; i++)
        fan_in *= (double)shape[i];
    fill_job j = {lc_tensor_data(t), lc_tensor_numel(t), splitmix(s), 0.05f, 0.0f};
    if (kind == 'w')
        j.a = (float)(1.0 / sqrt(fan_in));
    else if (kind == 'n')
        j.a = 0.1f, j.b = 1.0f;
    if (lc_parallel_for(j.n, 1 << 16, fill_range, &j) != LC_OK) {
        lc_tensor_free(t);
        return NULL;
    }
    return t;
}

typedef struct {
    void *p;
    lc_dtype dt;
    uint64_t seed;
    float a, b;
} fill_dt_job;

/* fill_range's values, stored straight in f32, f16 or bf16 (a full-size
 * checkpoint is ~1e9 values: no f32 copy, no separate conversion pass) */
static void fill_dt_range(void *ctx, int64_t b, int64_t e)
{
    const fill_dt_job *j = ctx;
    const int64_t chunk = 1 << 16;
    for (int64_t c0 = b; c0 < e; c0 += chunk) {
        uint64_t st = j->seed ^ (0xD1B54A32D192ED03ull * (uint64_t)(c0 / chunk + 1));
        int64_t c1 = c0 + chunk < e ? c0 + chunk : e;
        for (int64_t i = c0; i < c1; i++) {
            uint64_t r = splitmix(&st);
            float u = (float)(r & 0xFFFF) + (float)((r >> 16) & 0xFFFF) +
                      (float)((r >> 32) & 0xFFFF) + (float)(r >> 48);
            float v = j->a * ((u * (1.0f / 65536.0f) - 2.0f) * 1.7320508f) + j->b;
            if (j->dt == LC_F32)
                ((float *)j->p)[i] = v;
            else if (j->dt == LC_F16)
                ((uint16_t *)j->p)[i] = lc_f32_to_f16(v);
            else
                ((uint16_t *)j->p)[i] = lc_f32_to_bf16(v);
        }
    }
}

lc_tensor *lc_random_weights(uint64_t seed, float scale, float shift, lc_dtype dt, int ndim,
                             const int64_t *shape)
{
    if (dt != LC_F32 && dt != LC_F16 && dt != LC_BF16) {
        lc_err("random weights: dtype %s is not f32, f16 or bf16", lc_dtype_name(dt));
        return NULL;
    }
    lc_tensor *t = lc_tensor_new(dt, ndim, shape);
    if (!t)
        return NULL;
    uint64_t s = seed;
    fill_dt_job j = {lc_tensor_data(t), dt, splitmix(&s), scale, shift};
    if (lc_parallel_for(lc_tensor_numel(t), 1 << 16, fill_dt_range, &j) != LC_OK) {
        lc_tensor_free(t);
        return NULL;
    }
    return t;
}

lc_tensor *lc_ubuild_take(lc_ubuild *b, char kind, int ndim, const int64_t *shape,
                          const char *fmt, ...)
{
    if (b->failed)
        return NULL;
    char name[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    lc_tensor *t;
    if (b->random) {
        t = random_tensor(&b->state, kind, ndim, shape);
        if (!t || lc_weights_put(b->w, name, t) != LC_OK) {
            b->failed = 1;
            return NULL;
        }
        t = lc_weights_need(b->w, name, ndim, shape);
    } else {
        t = lc_weights_need(b->w, name, ndim, shape);
    }
    if (!t) {
        b->failed = 1;
        return NULL;
    }
    lc_tensor_retain(t);
    return t;
}

static void lin_free(lc_ulinear *l)
{
    lc_tensor_free(l->w);
    lc_tensor_free(l->b);
    l->w = l->b = NULL;
}

/* weight + bias of a Linear, Conv2d or norm under `prefix` */
static void take_wb(lc_ubuild *b, lc_ulinear *l, char wkind, int ndim, const int64_t *wshape,
                    int bias, const char *prefix)
{
    l->w = lc_ubuild_take(b, wkind, ndim, wshape, "%s.weight", prefix);
    l->b = bias ? lc_ubuild_take(b, 'b', 1, wshape, "%s.bias", prefix) : NULL;
}

static void take_norm(lc_ubuild *b, lc_ulinear *l, int64_t c, const char *prefix)
{
    l->w = lc_ubuild_take(b, 'n', 1, S1(c), "%s.weight", prefix);
    l->b = lc_ubuild_take(b, 'b', 1, S1(c), "%s.bias", prefix);
}

int lc_resnet_build(lc_ubuild *b, lc_resnet *r, const char *p, int cin, int cout, int temb_dim,
                    int groups, double eps, double out_scale)
{
    char n[256];
    memset(r, 0, sizeof *r);
    snprintf(r->name, sizeof r->name, "%s", p);
    r->cin = cin;
    r->cout = cout;
    r->groups = groups;
    r->eps = eps;
    r->out_scale = out_scale;
    if (cin % groups || cout % groups)
        return lc_err("%s: channels %d/%d not divisible by %d groups", p, cin, cout, groups);
    snprintf(n, sizeof n, "%s.norm1", p);
    take_norm(b, &r->norm1, cin, n);
    snprintf(n, sizeof n, "%s.conv1", p);
    take_wb(b, &r->conv1, 'w', 4, S4(cout, cin, 3, 3), 1, n);
    snprintf(n, sizeof n, "%s.time_emb_proj", p);
    take_wb(b, &r->temb, 'w', 2, S2(cout, temb_dim), 1, n);
    snprintf(n, sizeof n, "%s.norm2", p);
    take_norm(b, &r->norm2, cout, n);
    snprintf(n, sizeof n, "%s.conv2", p);
    take_wb(b, &r->conv2, 'w', 4, S4(cout, cout, 3, 3), 1, n);
    if (cin != cout) {
        snprintf(n, sizeof n, "%s.conv_shortcut", p);
        take_wb(b, &r->shortcut, 'w', 4, S4(cout, cin, 1, 1), 1, n);
    }
    return b->failed ? LC_ERR : LC_OK;
}

static void resnet_free(lc_resnet *r)
{
    lin_free(&r->norm1);
    lin_free(&r->conv1);
    lin_free(&r->temb);
    lin_free(&r->norm2);
    lin_free(&r->conv2);
    lin_free(&r->shortcut);
}

static void attn_build(lc_ubuild *b, lc_attn *a, const char *p, int inner, int heads, int kv_dim,
                       int is_self)
{
    char n[256];
    snprintf(a->site.name, sizeof a->site.name, "%s", p);
    a->site.is_self = is_self;
    a->site.mask = 0;
    a->heads = heads;
    a->dim_head = inner / heads;
    a->inner = inner;
    snprintf(n, sizeof n, "%s.to_q", p);
    take_wb(b, &a->q, 'w', 2, S2(inner, inner), 0, n);
    snprintf(n, sizeof n, "%s.to_k", p);
    take_wb(b, &a->k, 'w', 2, S2(inner, kv_dim), 0, n);
    snprintf(n, sizeof n, "%s.to_v", p);
    take_wb(b, &a->v, 'w', 2, S2(inner, kv_dim), 0, n);
    snprintf(n, sizeof n, "%s.to_out.0", p);
    take_wb(b, &a->out, 'w', 2, S2(inner, inner), 1, n);
}

static void attn_free(lc_attn *a)
{
    lin_free(&a->q);
    lin_free(&a->k);
    lin_free(&a->v);
    lin_free(&a->out);
}

/* a [cout, cin, 1, 1] conv weight as the [cout, cin] Linear weight it is */
static void squeeze_1x1(lc_ubuild *b, lc_ulinear *l)
{
    if (b->failed || l->w->ndim != 4)
        return;
    lc_tensor *v = lc_tensor_view(l->w, 2, S2(l->w->shape[0], l->w->shape[1]));
    if (!v) {
        b->failed = 1;
        return;
    }
    lc_tensor_free(l->w);
    l->w = v;
}

int lc_transformer_build(lc_ubuild *b, lc_transformer *t, const char *p, int channels, int heads,
                         int layers, int context_dim, int linear, int groups)
{
    char n[256];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", p);
    if (heads <= 0 || channels % heads)
        return lc_err("%s: %d channels do not split into %d attention heads", p, channels, heads);
    if (channels % groups)
        return lc_err("%s: %d channels not divisible by %d groups", p, channels, groups);
    int inner = channels; /* heads * (channels / heads) */
    t->channels = channels;
    t->inner = inner;
    t->linear = linear;
    t->groups = groups;
    snprintf(n, sizeof n, "%s.norm", p);
    take_norm(b, &t->norm, channels, n);
    snprintf(n, sizeof n, "%s.proj_in", p);
    if (linear)
        take_wb(b, &t->proj_in, 'w', 2, S2(inner, channels), 1, n);
    else
        take_wb(b, &t->proj_in, 'w', 4, S4(inner, channels, 1, 1), 1, n);
    t->tb = lc_calloc((size_t)layers, sizeof *t->tb, "transformer blocks");
    if (!t->tb)
        return LC_ERR;
    t->ntb = layers;
    for (int k = 0; k < layers; k++) {
        lc_tblock *tb = &t->tb[k];
        char q[200];
        snprintf(q, sizeof q, "%s.transformer_blocks.%d", p, k);
        snprintf(n, sizeof n, "%s.norm1", q);
        take_norm(b, &tb->norm1, inner, n);
        snprintf(n, sizeof n, "%s.attn1", q);
        attn_build(b, &tb->attn1, n, inner, heads, inner, 1);
        snprintf(n, sizeof n, "%s.norm2", q);
        take_norm(b, &tb->norm2, inner, n);
        snprintf(n, sizeof n, "%s.attn2", q);
        attn_build(b, &tb->attn2, n, inner, heads, context_dim, 0);
        snprintf(n, sizeof n, "%s.norm3", q);
        take_norm(b, &tb->norm3, inner, n);
        snprintf(n, sizeof n, "%s.ff.net.0.proj", q);
        take_wb(b, &tb->ff_in, 'w', 2, S2(8 * inner, inner), 1, n);
        snprintf(n, sizeof n, "%s.ff.net.2", q);
        take_wb(b, &tb->ff_out, 'w', 2, S2(inner, 4 * inner), 1, n);
    }
    snprintf(n, sizeof n, "%s.proj_out", p);
    if (linear)
        take_wb(b, &t->proj_out, 'w', 2, S2(channels, inner), 1, n);
    else
        take_wb(b, &t->proj_out, 'w', 4, S4(channels, inner, 1, 1), 1, n);
    squeeze_1x1(b, &t->proj_in);
    squeeze_1x1(b, &t->proj_out);
    return b->failed ? LC_ERR : LC_OK;
}

static void transformer_free(lc_transformer *t)
{
    lin_free(&t->norm);
    lin_free(&t->proj_in);
    lin_free(&t->proj_out);
    for (int k = 0; k < t->ntb; k++) {
        lc_tblock *tb = &t->tb[k];
        lin_free(&tb->norm1);
        lin_free(&tb->norm2);
        lin_free(&tb->norm3);
        lin_free(&tb->ff_in);
        lin_free(&tb->ff_out);
        attn_free(&tb->attn1);
        attn_free(&tb->attn2);
    }
    free(t->tb);
    t->tb = NULL;
    t->ntb = 0;
}

void lc_ublock_free(lc_ublock *blk)
{
    for (int j = 0; j < blk->nres; j++) {
        resnet_free(&blk->res[j]);
        if (blk->attn)
            transformer_free(&blk->attn[j]);
    }
    free(blk->res);
    free(blk->attn);
    lin_free(&blk->sampler);
    memset(blk, 0, sizeof *blk);
}

static int block_alloc(lc_ublock *blk, int nres, int cross)
{
    memset(blk, 0, sizeof *blk);
    blk->res = lc_calloc((size_t)nres, sizeof *blk->res, "UNet block");
    if (!blk->res)
        return LC_ERR;
    blk->nres = nres;
    if (cross) {
        blk->attn = lc_calloc((size_t)nres, sizeof *blk->attn, "UNet block");
        if (!blk->attn)
            return LC_ERR;
    }
    return LC_OK;
}

int lc_down_block_build(lc_ubuild *b, lc_ublock *blk, const lc_unet_config *c, int i)
{
    char p[128];
    int cout = c->block_out_channels[i];
    int cin = i == 0 ? c->block_out_channels[0] : c->block_out_channels[i - 1];
    if (block_alloc(blk, c->layers_per_block[i], c->down_cross[i]) != LC_OK)
        return LC_ERR;
    for (int j = 0; j < blk->nres; j++) {
        snprintf(p, sizeof p, "down_blocks.%d.resnets.%d", i, j);
        if (lc_resnet_build(b, &blk->res[j], p, j == 0 ? cin : cout, cout, c->time_embed_dim,
                            c->norm_num_groups, c->norm_eps, 1.0) != LC_OK)
            return LC_ERR;
        if (blk->attn) {
            snprintf(p, sizeof p, "down_blocks.%d.attentions.%d", i, j);
            if (lc_transformer_build(b, &blk->attn[j], p, cout, c->heads[i],
                                     c->transformer_layers[i], c->cross_attention_dim,
                                     c->use_linear_projection, c->norm_num_groups) != LC_OK)
                return LC_ERR;
        }
    }
    if (i < c->nblocks - 1) {
        blk->has_sampler = 1;
        blk->down_padding = c->downsample_padding;
        snprintf(p, sizeof p, "down_blocks.%d.downsamplers.0.conv", i);
        take_wb(b, &blk->sampler, 'w', 4, S4(cout, cout, 3, 3), 1, p);
    }
    return b->failed ? LC_ERR : LC_OK;
}

int lc_mid_block_build(lc_ubuild *b, lc_ublock *blk, const lc_unet_config *c)
{
    int last = c->nblocks - 1, ch = c->block_out_channels[last];
    if (block_alloc(blk, 2, 1) != LC_OK)
        return LC_ERR;
    for (int j = 0; j < 2; j++) {
        char p[64];
        snprintf(p, sizeof p, "mid_block.resnets.%d", j);
        if (lc_resnet_build(b, &blk->res[j], p, ch, ch, c->time_embed_dim, c->norm_num_groups,
                            c->norm_eps, c->mid_block_scale_factor) != LC_OK)
            return LC_ERR;
    }
    /* one attention between the two resnets: kept in attn[0]; attn[1]
     * stays empty (ntb 0) */
    return lc_transformer_build(b, &blk->attn[0], "mid_block.attentions.0", ch, c->heads[last],
                                c->transformer_layers[last], c->cross_attention_dim,
                                c->use_linear_projection, c->norm_num_groups);
}

int lc_up_block_build(lc_ubuild *b, lc_ublock *blk, const lc_unet_config *c, int i)
{
    int n = c->nblocks;
    int out = c->block_out_channels[n - 1 - i];
    int prev = i == 0 ? c->block_out_channels[n - 1] : c->block_out_channels[n - i];
    int in = c->block_out_channels[n - 1 - (i + 1 < n ? i + 1 : n - 1)];
    int nres = c->layers_per_block[n - 1 - i] + 1;
    if (block_alloc(blk, nres, c->up_cross[i]) != LC_OK)
        return LC_ERR;
    for (int j = 0; j < nres; j++) {
        char p[128];
        int skip = j == nres - 1 ? in : out;
        int rin = j == 0 ? prev : out;
        snprintf(p, sizeof p, "up_blocks.%d.resnets.%d", i, j);
        if (lc_resnet_build(b, &blk->res[j], p, rin + skip, out, c->time_embed_dim,
                            c->norm_num_groups, c->norm_eps, 1.0) != LC_OK)
            return LC_ERR;
        if (blk->attn) {
            snprintf(p, sizeof p, "up_blocks.%d.attentions.%d", i, j);
            if (lc_transformer_build(b, &blk->attn[j], p, out, c->heads[n - 1 - i],
                                     c->up_transformer_layers[i], c->cross_attention_dim,
                                     c->use_linear_projection, c->norm_num_groups) != LC_OK)
                return LC_ERR;
        }
    }
    if (i < n - 1) {
        char p[64];
        blk->has_sampler = 1;
        snprintf(p, sizeof p, "up_blocks.%d.upsamplers.0.conv", i);
        take_wb(b, &blk->sampler, 'w', 4, S4(out, out, 3, 3), 1, p);
    }
    return b->failed ? LC_ERR : LC_OK;
}

int lc_ublock_sites(lc_ublock *blk, lc_hook_site **sites)
{
    int n = 0;
    for (int j = 0; blk->attn && j < blk->nres; j++)
        for (int k = 0; k < blk->attn[j].ntb; k++) {
            if (sites) {
                sites[n] = &blk->attn[j].tb[k].attn1.site;
                sites[n + 1] = &blk->attn[j].tb[k].attn2.site;
            }
            n += 2;
        }
    return n;
}

/* a and b concatenated along dim 1 (equal other dims), f32 contiguous:
 * the skip-connection and key/value joins, one memcpy per batch row */
lc_tensor *lc_ucat1(const lc_tensor *a, const lc_tensor *b)
{
    if (a->ndim != b->ndim || a->ndim < 2 || a->shape[0] != b->shape[0])
        return (lc_err("cat: %s and %s differ outside dimension 1", LC_SHAPE_STR(a), LC_SHAPE_STR(b)), NULL);
    for (int d = 2; d < a->ndim; d++)
        if (a->shape[d] != b->shape[d])
            return (lc_err("cat: %s and %s differ outside dimension 1", LC_SHAPE_STR(a), LC_SHAPE_STR(b)), NULL);
    lc_tensor *ac = lc_tensor_f32((lc_tensor *)a), *bc = ac ? lc_tensor_f32((lc_tensor *)b) : NULL;
    int64_t shape[LC_MAXDIM];
    memcpy(shape, a->shape, sizeof shape);
    shape[1] = a->shape[1] + b->shape[1];
    lc_tensor *r = bc ? lc_tensor_new(LC_F32, a->ndim, shape) : NULL;
    if (r) {
        int64_t na = lc_tensor_numel(a) / a->shape[0], nb = lc_tensor_numel(b) / b->shape[0];
        const float *pa = lc_tensor_data(ac), *pb = lc_tensor_data(bc);
        float *pr = lc_tensor_data(r);
        for (int64_t i = 0; i < a->shape[0]; i++) {
            memcpy(pr + i * (na + nb), pa + i * na, (size_t)na * sizeof *pr);
            memcpy(pr + i * (na + nb) + na, pb + i * nb, (size_t)nb * sizeof *pr);
        }
    }
    lc_tensor_free(ac);
    lc_tensor_free(bc);
    return r;
}

/* ---- forward ---- */

/* replaces *a by r (freeing the old one); NULL r keeps the error */
static int swap(lc_tensor **a, lc_tensor *r)
{
    lc_tensor_free(*a);
    *a = r;
    return r ? LC_OK : LC_ERR;
}

static lc_tensor *conv(const lc_tensor *x, const lc_ulinear *l, int stride, int pad)
{
    lc_conv2d_params p = {{stride, stride}, {pad, pad}, {1, 1}, 1};
    return lc_conv2d(x, l->w, l->b, &p);
}

static lc_tensor *norm_silu(const lc_tensor *x, const lc_ulinear *n, int groups, double eps)
{
    return lc_group_norm_silu(x, groups, n->w, n->b, eps); /* one pass */
}

lc_tensor *lc_resnet_forward(const lc_ufwd *f, const lc_resnet *r, const lc_tensor *x)
{
    lc_tensor *h = norm_silu(x, &r->norm1, r->groups, r->eps), *t = NULL, *s = NULL;
    if (!h || swap(&h, conv(h, &r->conv1, 1, 1)) != LC_OK)
        goto fail;
    t = lc_linear(f->temb_act, r->temb.w, r->temb.b); /* [N, cout] */
    if (!t || swap(&t, lc_tensor_view(t, 4, S4(t->shape[0], t->shape[1], 1, 1))) != LC_OK)
        goto fail;
    if (lc_binary_(LC_ADD, h, t) != LC_OK)
        goto fail;
    if (swap(&h, norm_silu(h, &r->norm2, r->groups, r->eps)) != LC_OK)
        goto fail;
    if (swap(&h, conv(h, &r->conv2, 1, 1)) != LC_OK)
        goto fail;
    if (r->shortcut.w) {
        s = conv(x, &r->shortcut, 1, 0);
        if (!s || lc_binary_(LC_ADD, h, s) != LC_OK)
            goto fail;
    } else if (lc_binary_(LC_ADD, h, x) != LC_OK) {
        goto fail;
    }
    if (r->out_scale != 1.0 && lc_binary_scalar_(LC_DIV, h, r->out_scale) != LC_OK)
        goto fail;
    lc_tensor_free(t);
    lc_tensor_free(s);
    return h;
fail:
    lc_err_prefix("%s: ", r->name);
    lc_tensor_free(h);
    lc_tensor_free(t);
    lc_tensor_free(s);
    return NULL;
}

/* q [B,Lq,H*D], k/v [B,Lk,H*D] -> [B,Lq,H*D], materialising the
 * probabilities [B,H,Lq,Lk] for the hooks */
static lc_tensor *attend_probs(const lc_ufwd *f, const lc_attn *a, lc_tensor *q, lc_tensor *k,
                               lc_tensor *v)
{
    int64_t B = q->shape[0], Lq = q->shape[1], Lk = k->shape[1], H = a->heads, D = a->dim_head;
    lc_tensor *qv = NULL, *kv = NULL, *vv = NULL, *qh = NULL, *kt = NULL, *vh = NULL;
    lc_tensor *s = NULL, *o = NULL, *r = NULL;
    qv = lc_tensor_view(q, 4, S4(B, Lq, H, D));
    kv = lc_tensor_view(k, 4, S4(B, Lk, H, D));
    vv = lc_tensor_view(v, 4, S4(B, Lk, H, D));
    if (!qv || !kv || !vv)
        goto done;
    qh = lc_tensor_permute(qv, (const int[]){0, 2, 1, 3});
    kt = lc_tensor_permute(kv, (const int[]){0, 2, 3, 1});
    vh = lc_tensor_permute(vv, (const int[]){0, 2, 1, 3});
    if (!qh || !kt || !vh)
        goto done;
    s = lc_matmul(qh, kt);
    if (!s || lc_binary_scalar_(LC_MUL, s, 1.0 / sqrt((double)D)) != LC_OK)
        goto done;
    if (swap(&s, lc_softmax(s, -1)) != LC_OK)
        goto done;
    if (lc_hooks_run_probs(f->hooks, &a->site, &s) != LC_OK)
        goto done;
    o = lc_matmul(s, vh); /* [B,H,Lq,D] */
    if (!o || swap(&o, lc_tensor_permute(o, (const int[]){0, 2, 1, 3})) != LC_OK)
        goto done;
    if (swap(&o, lc_tensor_contiguous(o)) != LC_OK)
        goto done;
    r = lc_tensor_view(o, 3, (const int64_t[]){B, Lq, H * D});
done:
    lc_tensor_free(qv);
    lc_tensor_free(kv);
    lc_tensor_free(vv);
    lc_tensor_free(qh);
    lc_tensor_free(kt);
    lc_tensor_free(vh);
    lc_tensor_free(s);
    lc_tensor_free(o);
    return r;
}

/* resid += attention(x): x the normed hidden states [B,L,C], ctx the
 * cross-attention context or NULL; the output projection adds into resid
 * as it stores */
static int attn_add(const lc_ufwd *f, const lc_attn *a, lc_tensor *x, const lc_tensor *ctx,
                    lc_tensor *resid)
{
    const lc_tensor *kvin = ctx ? ctx : x;
    lc_tensor *extra = NULL, *cat = NULL, *q = NULL, *k = NULL, *v = NULL, *o = NULL;
    if (f->hooks && (a->site.mask & (1u << LC_HOOK_KV_EXTEND))) {
        if (lc_hooks_run_kv(f->hooks, &a->site, x, &extra) != LC_OK)
            goto fail;
        if (extra) {
            cat = lc_ucat1(x, extra);
            if (!cat)
                goto fail;
            kvin = cat;
        }
    }
    q = lc_linear(x, a->q.w, NULL);
    if (!q)
        goto fail;
    /* a cross-attention's k and v depend on the context only */
    lc_kv_cache *kvc = ctx && !extra ? f->kv : NULL;
    if (!kvc || !lc_kv_cache_get(kvc, a, &k, &v)) {
        k = lc_linear(kvin, a->k.w, NULL);
        v = k ? lc_linear(kvin, a->v.w, NULL) : NULL;
        if (!v)
            goto fail;
        if (kvc)
            lc_kv_cache_put(kvc, a, k, v);
    }
    if (f->hooks && (a->site.mask & (1u << LC_HOOK_ATTN_PROBS)))
        o = attend_probs(f, a, q, k, v);
    else
        o = lc_attention_heads(q, k, v, a->heads, NULL, 1.0 / sqrt((double)a->dim_head));
    if (!o || lc_linear_add_(resid, o, a->out.w, a->out.b) != LC_OK)
        goto fail;
    lc_tensor_free(extra);
    lc_tensor_free(cat);
    lc_tensor_free(q);
    lc_tensor_free(k);
    lc_tensor_free(v);
    lc_tensor_free(o);
    return LC_OK;
fail:
    if (!strstr(lc_errmsg(), a->site.name))
        lc_err_prefix("%s: ", a->site.name);
    lc_tensor_free(extra);
    lc_tensor_free(cat);
    lc_tensor_free(q);
    lc_tensor_free(k);
    lc_tensor_free(v);
    lc_tensor_free(o);
    return LC_ERR;
}

/* x += sublayer(norm(x)) for the three sublayers of a BasicTransformerBlock */
static int tblock_forward(const lc_ufwd *f, const lc_tblock *tb, lc_tensor *x)
{
    lc_tensor *n = NULL, *h = NULL, *g = NULL, *hid = NULL, *gate = NULL;
    int rc = LC_ERR;
    n = lc_layer_norm(x, tb->norm1.w, tb->norm1.b, 1e-5);
    if (!n || attn_add(f, &tb->attn1, n, NULL, x) != LC_OK)
        goto done;
    if (swap(&n, lc_layer_norm(x, tb->norm2.w, tb->norm2.b, 1e-5)) != LC_OK)
        goto done;
    if (attn_add(f, &tb->attn2, n, f->context, x) != LC_OK)
        goto done;
    if (swap(&n, lc_layer_norm(x, tb->norm3.w, tb->norm3.b, 1e-5)) != LC_OK)
        goto done;
    /* GEGLU: proj to 2*inner, hidden * gelu(gate) with the gate the second
     * half, exact (erf) GELU */
    h = lc_linear(n, tb->ff_in.w, tb->ff_in.b);
    if (!h)
        goto done;
    int64_t half = h->shape[2] / 2;
    hid = lc_tensor_narrow(h, 2, 0, half);
    gate = lc_tensor_narrow(h, 2, half, half);
    if (!hid || !gate || !(g = lc_unary(LC_GELU, gate)))
        goto done;
    if (lc_binary_(LC_MUL, g, hid) != LC_OK)
        goto done;
    rc = lc_linear_add_(x, g, tb->ff_out.w, tb->ff_out.b);
done:
    lc_tensor_free(n);
    lc_tensor_free(h);
    lc_tensor_free(g);
    lc_tensor_free(hid);
    lc_tensor_free(gate);
    return rc;
}

lc_tensor *lc_transformer_forward(const lc_ufwd *f, const lc_transformer *t, const lc_tensor *x)
{
    int64_t B = x->shape[0], C = x->shape[1], H = x->shape[2], W = x->shape[3];
    lc_tensor *h = lc_group_norm(x, t->groups, t->norm.w, t->norm.b, 1e-6);
    /* tokens [B, HW, C]; proj_in as a Linear whether the checkpoint stores
     * it as a 1x1 conv or not (the same product) */
    if (!h || swap(&h, lc_tensor_permute(h, (const int[]){0, 2, 3, 1})) != LC_OK)
        goto fail;
    if (swap(&h, lc_tensor_contiguous(h)) != LC_OK ||
        swap(&h, lc_tensor_view(h, 3, (const int64_t[]){B, H * W, C})) != LC_OK)
        goto fail;
    if (swap(&h, lc_linear(h, t->proj_in.w, t->proj_in.b)) != LC_OK)
        goto fail;
    for (int k = 0; k < t->ntb; k++)
        if (tblock_forward(f, &t->tb[k], h) != LC_OK)
            goto fail;
    if (swap(&h, lc_linear(h, t->proj_out.w, t->proj_out.b)) != LC_OK)
        goto fail;
    if (swap(&h, lc_tensor_view(h, 4, S4(B, H, W, C))) != LC_OK ||
        swap(&h, lc_tensor_permute(h, (const int[]){0, 3, 1, 2})) != LC_OK ||
        swap(&h, lc_tensor_contiguous(h)) != LC_OK)
        goto fail;
    if (lc_binary_(LC_ADD, h, x) != LC_OK)
        goto fail;
    return h;
fail:
    /* attention failures already name their site */
    if (!strstr(lc_errmsg(), t->name))
        lc_err_prefix("%s: ", t->name);
    lc_tensor_free(h);
    return NULL;
}

static int push_skip(lc_tensor **skips, int *nskips, lc_tensor *x)
{
    lc_tensor_retain(x);
    skips[(*nskips)++] = x;
    return LC_OK;
}

lc_tensor *lc_down_block_forward(const lc_ufwd *f, const lc_ublock *blk, lc_tensor *x,
                                 lc_tensor **skips, int *nskips)
{
    lc_tensor *h = x;
    lc_tensor_retain(h);
    for (int j = 0; j < blk->nres; j++) {
        if (swap(&h, lc_resnet_forward(f, &blk->res[j], h)) != LC_OK)
            return NULL;
        if (blk->attn && swap(&h, lc_transformer_forward(f, &blk->attn[j], h)) != LC_OK)
            return NULL;
        push_skip(skips, nskips, h);
    }
    if (blk->has_sampler) {
        if (blk->down_padding == 0) {
            /* diffusers pads right/bottom by one, then convolves unpadded */
            if (swap(&h, lc_pad2d(h, (const int64_t[]){0, 1, 0, 1}, LC_PADK_CONSTANT, 0)) != LC_OK)
                return NULL;
        }
        if (swap(&h, conv(h, &blk->sampler, 2, blk->down_padding)) != LC_OK)
            return NULL;
        push_skip(skips, nskips, h);
    }
    return h;
}

lc_tensor *lc_mid_block_forward(const lc_ufwd *f, const lc_ublock *blk, lc_tensor *x)
{
    lc_tensor *h = lc_resnet_forward(f, &blk->res[0], x);
    if (!h || swap(&h, lc_transformer_forward(f, &blk->attn[0], h)) != LC_OK)
        goto fail;
    if (swap(&h, lc_resnet_forward(f, &blk->res[1], h)) != LC_OK)
        goto fail;
    return h;
fail:
    lc_tensor_free(h);
    return NULL;
}

lc_tensor *lc_up_block_forward(const lc_ufwd *f, const lc_ublock *blk, lc_tensor *x,
                               lc_tensor **skips, int *nskips, int64_t out_h, int64_t out_w)
{
    lc_tensor *h = x;
    lc_tensor_retain(h);
    for (int j = 0; j < blk->nres; j++) {
        if (*nskips <= 0) {
            lc_err("up block: ran out of skip connections");
            goto fail;
        }
        lc_tensor *res = skips[--*nskips];
        skips[*nskips] = NULL;
        lc_tensor *c = lc_ucat1(h, res);
        lc_tensor_free(res);
        if (swap(&h, c) != LC_OK)
            goto fail;
        if (swap(&h, lc_resnet_forward(f, &blk->res[j], h)) != LC_OK)
            goto fail;
        if (blk->attn && swap(&h, lc_transformer_forward(f, &blk->attn[j], h)) != LC_OK)
            goto fail;
    }
    if (blk->has_sampler) {
        int64_t oh = out_h > 0 ? out_h : 2 * h->shape[2];
        int64_t ow = out_w > 0 ? out_w : 2 * h->shape[3];
        if (oh == 2 * h->shape[2] && ow == 2 * h->shape[3] && blk->sampler.w->ndim == 4 &&
            blk->sampler.w->shape[2] == 3 && blk->sampler.w->shape[3] == 3) {
            /* nearest 2x and the 3x3 conv in one op, 4/9 of the work */
            if (swap(&h, lc_conv2d_up2(h, blk->sampler.w, blk->sampler.b)) != LC_OK)
                goto fail;
        } else {
            if (swap(&h, lc_resize(h, oh, ow, LC_RESIZE_NEAREST, 0)) != LC_OK)
                goto fail;
            if (swap(&h, conv(h, &blk->sampler, 1, 1)) != LC_OK)
                goto fail;
        }
    }
    return h;
fail:
    lc_tensor_free(h);
    return NULL;
}

lc_tensor *lc_timesteps_for_batch(const lc_tensor *t, int64_t n)
{
    int64_t m = t ? lc_tensor_numel(t) : 0;
    if (!t || t->ndim > 1 || (m != 1 && m != n))
        return (lc_err("timesteps: expected one value or %lld (one per sample), got %s",
                       (long long)n, t ? LC_SHAPE_STR(t) : "nothing"),
                NULL);
    lc_tensor *r = lc_tensor_new(LC_F32, 1, S1(n));
    if (!r)
        return NULL;
    float *p = lc_tensor_data(r);
    for (int64_t i = 0; i < n; i++) {
        double v = lc_tensor_get(t, m == 1 ? 0 : i);
        if (!isfinite(v)) {
            lc_tensor_free(r);
            return (lc_err("timesteps: value %g is not finite", v), NULL);
        }
        p[i] = (float)v;
    }
    return r;
}

lc_tensor *lc_timestep_embedding(const lc_tensor *t, int dim, int flip, double shift)
{
    int64_t n = t->shape[0];
    int half = dim / 2;
    if (half <= 0 || half - shift == 0)
        return (lc_err("timestep embedding: bad dimension %d / shift %g", dim, shift), NULL);
    lc_tensor *e = lc_tensor_zeros(LC_F32, 2, S2(n, dim));
    float *freq = lc_malloc((size_t)half * sizeof *freq, "timestep embedding");
    if (!e || !freq) {
        lc_tensor_free(e);
        free(freq);
        return NULL;
    }
    /* float32 steps in torch's order: (-log(10000) * i) / (half - shift),
     * exp, times t */
    float nl = (float)-log(10000.0), den = (float)(half - shift);
    for (int i = 0; i < half; i++)
        freq[i] = expf((nl * (float)i) / den);
    float *p = lc_tensor_data(e);
    const float *tv = lc_tensor_data(t);
    for (int64_t b = 0; b < n; b++)
        for (int i = 0; i < half; i++) {
            float a = tv[b] * freq[i];
            float s = (float)sin((double)a), c = (float)cos((double)a);
            p[b * dim + i] = flip ? c : s;
            p[b * dim + half + i] = flip ? s : c;
        }
    free(freq);
    return e;
}

lc_tensor *lc_time_embedding_act(const lc_tensor *timesteps, int64_t n, const lc_unet_config *c,
                                 const lc_ulinear *l1, const lc_ulinear *l2)
{
    lc_tensor *t = lc_timesteps_for_batch(timesteps, n), *e = NULL;
    if (!t)
        return NULL;
    e = lc_timestep_embedding(t, c->block_out_channels[0], c->flip_sin_to_cos, c->freq_shift);
    lc_tensor_free(t);
    if (!e || swap(&e, lc_linear(e, l1->w, l1->b)) != LC_OK || lc_unary_(LC_SILU, e) != LC_OK)
        goto fail;
    if (swap(&e, lc_linear(e, l2->w, l2->b)) != LC_OK || lc_unary_(LC_SILU, e) != LC_OK)
        goto fail;
    return e;
fail:
    lc_tensor_free(e);
    return NULL;
}
