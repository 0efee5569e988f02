/* UNet2DModel; see unet2d.h. */
#include "models/unet2d.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/unet_blocks.h"
#include "ops/ops.h"

/* ---- config ---- */

static int get_int(const cJSON *root, const char *key, int *out, const char *what)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!v || cJSON_IsNull(v))
        return LC_OK;
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble))
        return lc_err("%s: \"%s\" should be an integer", what, key);
    *out = (int)v->valuedouble;
    return LC_OK;
}

static int get_num(const cJSON *root, const char *key, double *out, const char *what)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!v || cJSON_IsNull(v))
        return LC_OK;
    if (cJSON_IsBool(v)) {
        *out = cJSON_IsTrue(v);
        return LC_OK;
    }
    if (!cJSON_IsNumber(v))
        return lc_err("%s: \"%s\" should be a number", what, key);
    *out = v->valuedouble;
    return LC_OK;
}

static int get_bool(const cJSON *root, const char *key, int *out, const char *what)
{
    double d = *out;
    if (get_num(root, key, &d, what) != LC_OK)
        return LC_ERR;
    *out = d != 0;
    return LC_OK;
}

/* a string option that must be absent, null or one of the allowed values */
static int want_str(const cJSON *root, const char *key, const char *ok1, const char *ok2,
                    const char *what)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!v || cJSON_IsNull(v))
        return LC_OK;
    if (!cJSON_IsString(v) ||
        (strcmp(v->valuestring, ok1) != 0 && (!ok2 || strcmp(v->valuestring, ok2) != 0)))
        return lc_err("%s: %s = %s is not supported (only %s%s%s)", what, key,
                      cJSON_IsString(v) ? v->valuestring : "(not a string)", ok1,
                      ok2 ? " or " : "", ok2 ? ok2 : "");
    return LC_OK;
}

static int block_list(const cJSON *root, const char *key, const char *plain, const char *attn,
                      int *flags, int *n, const char *what)
{
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!a)
        return LC_OK; /* defaults stay */
    if (!cJSON_IsArray(a) || cJSON_GetArraySize(a) < 1 ||
        cJSON_GetArraySize(a) > LC_UNET2D_MAXBLOCKS)
        return lc_err("%s: \"%s\" should be a list of 1 to %d block types", what, key,
                      LC_UNET2D_MAXBLOCKS);
    int i = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, a)
    {
        if (!cJSON_IsString(e))
            return lc_err("%s: %s[%d] is not a string", what, key, i);
        if (strcmp(e->valuestring, plain) == 0)
            flags[i] = 0;
        else if (strcmp(e->valuestring, attn) == 0)
            flags[i] = 1;
        else
            return lc_err("%s: %s[%d] = %s is not supported (only %s and %s)", what, key, i,
                          e->valuestring, plain, attn);
        i++;
    }
    *n = i;
    return LC_OK;
}

int lc_unet2d_config_parse(lc_unet2d_config *c, const char *json, const char *what)
{
    /* diffusers' UNet2DModel defaults */
    memset(c, 0, sizeof *c);
    c->in_channels = c->out_channels = 3;
    c->nblocks = 4;
    int boc[] = {224, 448, 672, 896};
    for (int i = 0; i < 4; i++)
        c->block_out_channels[i] = boc[i];
    c->down_attn[1] = c->down_attn[2] = c->down_attn[3] = 1;
    c->up_attn[0] = c->up_attn[1] = c->up_attn[2] = 1;
    c->layers_per_block = 2;
    c->add_attention = 1;
    c->attention_head_dim = 8;
    c->norm_num_groups = 32;
    c->norm_eps = 1e-5;
    c->flip_sin_to_cos = 1;
    c->downsample_padding = 1;
    c->mid_block_scale_factor = 1;
    cJSON *root = cJSON_Parse(json);
    if (!root || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return lc_err("%s: not a JSON object", what);
    }
    int rc = LC_ERR, nd = 4, nu = 4, nb = -1;
    const cJSON *cls = cJSON_GetObjectItemCaseSensitive(root, "_class_name");
    if (cJSON_IsString(cls) && strcmp(cls->valuestring, "UNet2DModel") != 0) {
        lc_err("%s: _class_name %s is not UNet2DModel", what, cls->valuestring);
        goto done;
    }
    if (get_int(root, "in_channels", &c->in_channels, what) ||
        get_int(root, "out_channels", &c->out_channels, what) ||
        get_int(root, "layers_per_block", &c->layers_per_block, what) ||
        get_bool(root, "add_attention", &c->add_attention, what) ||
        get_int(root, "norm_num_groups", &c->norm_num_groups, what) ||
        get_int(root, "attn_norm_num_groups", &c->attn_norm_num_groups, what) ||
        get_num(root, "norm_eps", &c->norm_eps, what) ||
        get_bool(root, "flip_sin_to_cos", &c->flip_sin_to_cos, what) ||
        get_num(root, "freq_shift", &c->freq_shift, what) ||
        get_int(root, "downsample_padding", &c->downsample_padding, what) ||
        get_num(root, "mid_block_scale_factor", &c->mid_block_scale_factor, what) ||
        get_bool(root, "center_input_sample", &c->center_input_sample, what))
        goto done;
    const cJSON *hd = cJSON_GetObjectItemCaseSensitive(root, "attention_head_dim");
    if (hd && cJSON_IsNull(hd))
        c->attention_head_dim = 0;
    else if (get_int(root, "attention_head_dim", &c->attention_head_dim, what))
        goto done;
    if (want_str(root, "time_embedding_type", "positional", NULL, what) ||
        want_str(root, "resnet_time_scale_shift", "default", NULL, what) ||
        want_str(root, "downsample_type", "conv", NULL, what) ||
        want_str(root, "upsample_type", "conv", NULL, what) ||
        want_str(root, "act_fn", "silu", "swish", what) ||
        want_str(root, "class_embed_type", "(none)", NULL, what))
        goto done;
    const cJSON *nce = cJSON_GetObjectItemCaseSensitive(root, "num_class_embeds");
    if (nce && !cJSON_IsNull(nce)) {
        lc_err("%s: num_class_embeds (class-conditional UNet2DModel) is not supported", what);
        goto done;
    }
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(root, "block_out_channels");
    if (a) {
        if (!cJSON_IsArray(a) || cJSON_GetArraySize(a) < 1 ||
            cJSON_GetArraySize(a) > LC_UNET2D_MAXBLOCKS) {
            lc_err("%s: block_out_channels should be a list of 1 to %d integers", what,
                   LC_UNET2D_MAXBLOCKS);
            goto done;
        }
        nb = 0;
        const cJSON *e;
        cJSON_ArrayForEach(e, a)
        {
            if (!cJSON_IsNumber(e) || e->valuedouble < 1 || e->valuedouble > 65536) {
                lc_err("%s: block_out_channels[%d] is not a positive integer", what, nb);
                goto done;
            }
            c->block_out_channels[nb++] = (int)e->valuedouble;
        }
        c->nblocks = nb;
    }
    if (block_list(root, "down_block_types", "DownBlock2D", "AttnDownBlock2D", c->down_attn, &nd,
                   what) ||
        block_list(root, "up_block_types", "UpBlock2D", "AttnUpBlock2D", c->up_attn, &nu, what))
        goto done;
    if (nd != c->nblocks || nu != c->nblocks) {
        lc_err("%s: %d down and %d up block types for %d block_out_channels", what, nd, nu,
               c->nblocks);
        goto done;
    }
    const cJSON *ss = cJSON_GetObjectItemCaseSensitive(root, "sample_size");
    if (cJSON_IsNumber(ss)) {
        c->sample_h = c->sample_w = (int)ss->valuedouble;
    } else if (cJSON_IsArray(ss) && cJSON_GetArraySize(ss) == 2) {
        c->sample_h = (int)cJSON_GetArrayItem(ss, 0)->valuedouble;
        c->sample_w = (int)cJSON_GetArrayItem(ss, 1)->valuedouble;
    }
    if (c->in_channels < 1 || c->out_channels < 1 || c->layers_per_block < 1 ||
        c->norm_num_groups < 1 || c->attention_head_dim < 0 || c->attn_norm_num_groups < 0) {
        lc_err("%s: channels, layers_per_block, norm_num_groups must be positive", what);
        goto done;
    }
    for (int i = 0; i < c->nblocks; i++)
        if (c->block_out_channels[i] % c->norm_num_groups) {
            lc_err("%s: block_out_channels[%d] = %d is not divisible by norm_num_groups %d",
                   what, i, c->block_out_channels[i], c->norm_num_groups);
            goto done;
        }
    rc = LC_OK;
done:
    cJSON_Delete(root);
    return rc;
}

/* ---- model ---- */

typedef struct {
    char name[96];
    int heads, dim_head, groups;
    double eps, rescale;
    lc_ulinear norm, q, k, v, out;
} attn2d;

struct lc_unet2d {
    lc_unet2d_config c;
    lc_ulinear conv_in, t1, t2, norm_out, conv_out;
    lc_ublock down[LC_UNET2D_MAXBLOCKS], up[LC_UNET2D_MAXBLOCKS], mid;
    attn2d *down_at[LC_UNET2D_MAXBLOCKS], *up_at[LC_UNET2D_MAXBLOCKS], *mid_at;
    int nskips;
};

#define S1(a) ((const int64_t[]){(a)})
#define S2(a, b) ((const int64_t[]){(a), (b)})
#define S4(a, b, c, d) ((const int64_t[]){(a), (b), (c), (d)})

static void take(lc_ubuild *b, lc_ulinear *l, int ndim, const int64_t *shape, const char *p)
{
    l->w = lc_ubuild_take(b, 'w', ndim, shape, "%s.weight", p);
    l->b = lc_ubuild_take(b, 'b', 1, shape, "%s.bias", p);
}

static void lin_free(lc_ulinear *l)
{
    lc_tensor_free(l->w);
    lc_tensor_free(l->b);
}

static void attn_free(attn2d *a, int n)
{
    for (int i = 0; a && i < n; i++) {
        lin_free(&a[i].norm), lin_free(&a[i].q), lin_free(&a[i].k);
        lin_free(&a[i].v), lin_free(&a[i].out);
    }
    free(a);
}

static int attn_build(lc_ubuild *b, attn2d *a, const char *p, int ch, const lc_unet2d_config *c,
                      int groups, double rescale)
{
    char n[160];
    snprintf(a->name, sizeof a->name, "%s", p);
    a->dim_head = c->attention_head_dim ? c->attention_head_dim : ch;
    if (ch % a->dim_head)
        return lc_err("%s: %d channels are not a whole number of %d-wide heads", p, ch,
                      a->dim_head);
    a->heads = ch / a->dim_head;
    a->groups = groups;
    a->eps = c->norm_eps;
    a->rescale = rescale;
    if (ch % groups)
        return lc_err("%s: %d channels not divisible by %d groups", p, ch, groups);
    snprintf(n, sizeof n, "%s.group_norm", p);
    take(b, &a->norm, 1, S1(ch), n);
    snprintf(n, sizeof n, "%s.to_q", p);
    take(b, &a->q, 2, S2(ch, ch), n);
    snprintf(n, sizeof n, "%s.to_k", p);
    take(b, &a->k, 2, S2(ch, ch), n);
    snprintf(n, sizeof n, "%s.to_v", p);
    take(b, &a->v, 2, S2(ch, ch), n);
    snprintf(n, sizeof n, "%s.to_out.0", p);
    take(b, &a->out, 2, S2(ch, ch), n);
    return b->failed ? LC_ERR : LC_OK;
}

static int alloc_blocks(lc_ublock *blk, attn2d **at, int nres, int attn)
{
    memset(blk, 0, sizeof *blk);
    blk->res = lc_calloc((size_t)nres, sizeof *blk->res, "UNet2DModel block");
    if (!blk->res)
        return LC_ERR;
    blk->nres = nres;
    if (attn && !(*at = lc_calloc((size_t)nres, sizeof **at, "UNet2DModel attention")))
        return LC_ERR;
    return LC_OK;
}

static int build(lc_unet2d *u, lc_ubuild *b)
{
    const lc_unet2d_config *c = &u->c;
    int nb = c->nblocks, temb = 4 * c->block_out_channels[0], g = c->norm_num_groups;
    int ag = c->attn_norm_num_groups ? c->attn_norm_num_groups : g;
    char p[128];
    take(b, &u->conv_in, 4, S4(c->block_out_channels[0], c->in_channels, 3, 3), "conv_in");
    take(b, &u->t1, 2, S2(temb, c->block_out_channels[0]), "time_embedding.linear_1");
    take(b, &u->t2, 2, S2(temb, temb), "time_embedding.linear_2");
    if (b->failed)
        return LC_ERR;
    u->nskips = 1;
    for (int i = 0; i < nb; i++) {
        int cout = c->block_out_channels[i], cin = i ? c->block_out_channels[i - 1] : cout;
        lc_ublock *blk = &u->down[i];
        if (alloc_blocks(blk, &u->down_at[i], c->layers_per_block, c->down_attn[i]) != LC_OK)
            return LC_ERR;
        for (int j = 0; j < blk->nres; j++) {
            snprintf(p, sizeof p, "down_blocks.%d.resnets.%d", i, j);
            if (lc_resnet_build(b, &blk->res[j], p, j ? cout : cin, cout, temb, g, c->norm_eps,
                                1.0) != LC_OK)
                return LC_ERR;
            snprintf(p, sizeof p, "down_blocks.%d.attentions.%d", i, j);
            if (u->down_at[i] && attn_build(b, &u->down_at[i][j], p, cout, c, g, 1.0) != LC_OK)
                return LC_ERR;
            u->nskips++;
        }
        if (i < nb - 1) {
            blk->has_sampler = 1;
            blk->down_padding = c->downsample_padding;
            snprintf(p, sizeof p, "down_blocks.%d.downsamplers.0.conv", i);
            take(b, &blk->sampler, 4, S4(cout, cout, 3, 3), p);
            u->nskips++;
        }
    }
    int top = c->block_out_channels[nb - 1];
    if (alloc_blocks(&u->mid, &u->mid_at, 2, 0) != LC_OK)
        return LC_ERR;
    for (int j = 0; j < 2; j++) {
        snprintf(p, sizeof p, "mid_block.resnets.%d", j);
        if (lc_resnet_build(b, &u->mid.res[j], p, top, top, temb, g, c->norm_eps,
                            c->mid_block_scale_factor) != LC_OK)
            return LC_ERR;
    }
    if (c->add_attention) {
        u->mid_at = lc_calloc(1, sizeof *u->mid_at, "UNet2DModel attention");
        if (!u->mid_at ||
            attn_build(b, u->mid_at, "mid_block.attentions.0", top, c, ag,
                       c->mid_block_scale_factor) != LC_OK)
            return LC_ERR;
    }
    for (int i = 0; i < nb; i++) {
        int out = c->block_out_channels[nb - 1 - i];
        int prev = i ? c->block_out_channels[nb - i] : top;
        int in = c->block_out_channels[nb - 1 - (i + 1 < nb ? i + 1 : nb - 1)];
        int nres = c->layers_per_block + 1;
        lc_ublock *blk = &u->up[i];
        if (alloc_blocks(blk, &u->up_at[i], nres, c->up_attn[i]) != LC_OK)
            return LC_ERR;
        for (int j = 0; j < nres; j++) {
            int skip = j == nres - 1 ? in : out, rin = j ? out : prev;
            snprintf(p, sizeof p, "up_blocks.%d.resnets.%d", i, j);
            if (lc_resnet_build(b, &blk->res[j], p, rin + skip, out, temb, g, c->norm_eps,
                                1.0) != LC_OK)
                return LC_ERR;
            snprintf(p, sizeof p, "up_blocks.%d.attentions.%d", i, j);
            if (u->up_at[i] && attn_build(b, &u->up_at[i][j], p, out, c, g, 1.0) != LC_OK)
                return LC_ERR;
        }
        if (i < nb - 1) {
            blk->has_sampler = 1;
            snprintf(p, sizeof p, "up_blocks.%d.upsamplers.0.conv", i);
            take(b, &blk->sampler, 4, S4(out, out, 3, 3), p);
        }
    }
    int b0 = c->block_out_channels[0];
    take(b, &u->norm_out, 1, S1(b0), "conv_norm_out");
    take(b, &u->conv_out, 4, S4(c->out_channels, b0, 3, 3), "conv_out");
    return b->failed ? LC_ERR : LC_OK;
}

void lc_unet2d_free(lc_unet2d *u)
{
    if (!u)
        return;
    lin_free(&u->conv_in), lin_free(&u->t1), lin_free(&u->t2);
    lin_free(&u->norm_out), lin_free(&u->conv_out);
    for (int i = 0; i < LC_UNET2D_MAXBLOCKS; i++) {
        attn_free(u->down_at[i], u->down[i].nres);
        attn_free(u->up_at[i], u->up[i].nres);
        lc_ublock_free(&u->down[i]);
        lc_ublock_free(&u->up[i]);
    }
    attn_free(u->mid_at, 1);
    lc_ublock_free(&u->mid);
    free(u);
}

lc_unet2d *lc_unet2d_new(const lc_unet2d_config *c, lc_weights *w)
{
    lc_unet2d *u = lc_calloc(1, sizeof *u, "UNet2DModel");
    if (!u)
        return NULL;
    u->c = *c;
    lc_ubuild b = {.w = w};
    if (build(u, &b) != LC_OK || lc_weights_check_unused(w, "UNet2DModel") != LC_OK) {
        lc_err_prefix("UNet2DModel: ");
        lc_unet2d_free(u);
        return NULL;
    }
    return u;
}

const lc_unet2d_config *lc_unet2d_get_config(const lc_unet2d *u)
{
    return &u->c;
}

/* ---- forward ---- */

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

/* diffusers Attention with group_norm and residual_connection on
 * [N, C, H, W]: tokens are the H*W positions */
static lc_tensor *attn_forward(const attn2d *a, lc_tensor *x)
{
    int64_t N = x->shape[0], C = x->shape[1], H = x->shape[2], W = x->shape[3];
    lc_tensor *h = lc_group_norm(x, a->groups, a->norm.w, a->norm.b, a->eps);
    lc_tensor *q = NULL, *k = NULL, *v = NULL;
    if (!h || swap(&h, lc_tensor_view(h, 3, (int64_t[]){N, C, H * W})) != LC_OK ||
        swap(&h, lc_tensor_transpose(h, 1, 2)) != LC_OK ||
        swap(&h, lc_tensor_contiguous(h)) != LC_OK)
        goto fail;
    q = lc_linear(h, a->q.w, a->q.b);
    k = q ? lc_linear(h, a->k.w, a->k.b) : NULL;
    v = k ? lc_linear(h, a->v.w, a->v.b) : NULL;
    if (!v || swap(&h, lc_attention_heads(q, k, v, a->heads, NULL,
                                          1.0 / sqrt((double)a->dim_head))) != LC_OK ||
        swap(&h, lc_linear(h, a->out.w, a->out.b)) != LC_OK ||
        swap(&h, lc_tensor_transpose(h, 1, 2)) != LC_OK ||
        swap(&h, lc_tensor_contiguous(h)) != LC_OK ||
        swap(&h, lc_tensor_view(h, 4, (int64_t[]){N, C, H, W})) != LC_OK ||
        lc_binary_(LC_ADD, h, x) != LC_OK)
        goto fail;
    if (a->rescale != 1.0 && lc_binary_scalar_(LC_DIV, h, a->rescale) != LC_OK)
        goto fail;
    lc_tensor_free(q), lc_tensor_free(k), lc_tensor_free(v);
    return h;
fail:
    lc_err_prefix("%s: ", a->name);
    lc_tensor_free(h), lc_tensor_free(q), lc_tensor_free(k), lc_tensor_free(v);
    return NULL;
}

lc_tensor *lc_unet2d_forward(lc_unet2d *u, const lc_tensor *x, const lc_tensor *timesteps)
{
    const lc_unet2d_config *c = &u->c;
    int nb = c->nblocks;
    int64_t div = (int64_t)1 << (nb - 1);
    if (x->ndim != 4 || x->shape[1] != c->in_channels || x->shape[2] % div || x->shape[3] % div) {
        lc_err("UNet2DModel: input should be [N, %d, H, W] with H, W divisible by %lld, got %s",
               c->in_channels, (long long)div, LC_SHAPE_STR(x));
        return NULL;
    }
    int64_t N = x->shape[0];
    lc_tensor **skips = lc_calloc((size_t)u->nskips, sizeof *skips, "UNet2DModel skips");
    lc_tensor *h = NULL, *t = NULL, *emb = NULL;
    int ns = 0;
    if (!skips)
        return NULL;
    t = lc_timesteps_for_batch(timesteps, N);
    emb = t ? lc_timestep_embedding(t, c->block_out_channels[0], c->flip_sin_to_cos,
                                    c->freq_shift)
            : NULL;
    if (!emb || swap(&emb, lc_linear(emb, u->t1.w, u->t1.b)) != LC_OK ||
        lc_unary_(LC_SILU, emb) != LC_OK ||
        swap(&emb, lc_linear(emb, u->t2.w, u->t2.b)) != LC_OK ||
        lc_unary_(LC_SILU, emb) != LC_OK) /* every resnet applies SiLU first */
        goto fail;
    lc_ufwd f = {.temb_act = emb};
    h = lc_tensor_to(x, LC_F32);
    if (!h)
        goto fail;
    if (c->center_input_sample &&
        (lc_binary_scalar_(LC_MUL, h, 2.0) != LC_OK || lc_binary_scalar_(LC_SUB, h, 1.0) != LC_OK))
        goto fail;
    if (swap(&h, conv(h, &u->conv_in, 1, 1)) != LC_OK)
        goto fail;
    lc_tensor_retain(h);
    skips[ns++] = h;
    for (int i = 0; i < nb; i++) {
        const lc_ublock *blk = &u->down[i];
        for (int j = 0; j < blk->nres; j++) {
            if (swap(&h, lc_resnet_forward(&f, &blk->res[j], h)) != LC_OK)
                goto fail;
            if (u->down_at[i] && swap(&h, attn_forward(&u->down_at[i][j], h)) != LC_OK)
                goto fail;
            lc_tensor_retain(h);
            skips[ns++] = h;
        }
        if (blk->has_sampler) {
            if (blk->down_padding == 0 &&
                swap(&h, lc_pad2d(h, (const int64_t[]){0, 1, 0, 1}, LC_PADK_CONSTANT, 0)) !=
                    LC_OK)
                goto fail;
            if (swap(&h, conv(h, &blk->sampler, 2, blk->down_padding)) != LC_OK)
                goto fail;
            lc_tensor_retain(h);
            skips[ns++] = h;
        }
    }
    if (swap(&h, lc_resnet_forward(&f, &u->mid.res[0], h)) != LC_OK ||
        (u->mid_at && swap(&h, attn_forward(u->mid_at, h)) != LC_OK) ||
        swap(&h, lc_resnet_forward(&f, &u->mid.res[1], h)) != LC_OK)
        goto fail;
    for (int i = 0; i < nb; i++) {
        const lc_ublock *blk = &u->up[i];
        for (int j = 0; j < blk->nres; j++) {
            lc_tensor *s = skips[--ns];
            skips[ns] = NULL;
            lc_tensor *cat = lc_ucat1(h, s);
            lc_tensor_free(s);
            if (swap(&h, cat) != LC_OK ||
                swap(&h, lc_resnet_forward(&f, &blk->res[j], h)) != LC_OK)
                goto fail;
            if (u->up_at[i] && swap(&h, attn_forward(&u->up_at[i][j], h)) != LC_OK)
                goto fail;
        }
        if (blk->has_sampler &&
            (swap(&h, lc_resize(h, 2 * h->shape[2], 2 * h->shape[3], LC_RESIZE_NEAREST, 0)) !=
                 LC_OK ||
             swap(&h, conv(h, &blk->sampler, 1, 1)) != LC_OK))
            goto fail;
    }
    if (swap(&h, lc_group_norm(h, c->norm_num_groups, u->norm_out.w, u->norm_out.b,
                               c->norm_eps)) != LC_OK ||
        lc_unary_(LC_SILU, h) != LC_OK || swap(&h, conv(h, &u->conv_out, 1, 1)) != LC_OK)
        goto fail;
    lc_tensor_free(t);
    lc_tensor_free(emb);
    free(skips);
    return h;
fail:
    for (int i = 0; i < ns; i++)
        lc_tensor_free(skips[i]);
    free(skips);
    lc_tensor_free(h);
    lc_tensor_free(t);
    lc_tensor_free(emb);
    return NULL;
}
