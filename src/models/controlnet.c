/* ControlNetModel: config, original-name translation, assembly from the
 * UNet's blocks and the forward pass producing the UNet's residuals. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/safetensors.h"
#include "models/controlnet.h"
#include "models/unet_blocks.h"
#include "ops/ops.h"

#define MAXSKIPS (1 + LC_UNET_MAXBLOCKS * 64)

struct lc_controlnet {
    lc_controlnet_config c;
    lc_ulinear conv_in, time1, time2;
    lc_ulinear hint_in, hint_out, hint[2 * LC_CONTROLNET_MAXCOND];
    lc_ublock down[LC_UNET_MAXBLOCKS], mid;
    lc_ulinear zero[MAXSKIPS], zero_mid;
    int nskips;
    lc_kv_cache *kv; /* cross-attention k/v across forwards (models/kv_cache.h) */
};

/* ---- config ---- */

static int cond_defaults(lc_controlnet_config *c)
{
    static const int d[4] = {16, 32, 96, 256}; /* diffusers' defaults */
    c->conditioning_channels = 3;
    c->ncond = 4;
    memcpy(c->cond_channels, d, sizeof d);
    c->bgr = 0;
    c->global_pool = 0;
    return LC_OK;
}

int lc_controlnet_config_parse(lc_controlnet_config *c, const char *json, const char *what)
{
    memset(c, 0, sizeof *c);
    cond_defaults(c);
    if (!what)
        what = "controlnet config";
    cJSON *root = cJSON_Parse(json);
    if (!root || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return lc_err("%s: not a JSON object", what);
    }
    int rc = LC_ERR;
    const cJSON *cls = cJSON_GetObjectItemCaseSensitive(root, "_class_name");
    if (cls && cJSON_IsString(cls) && strcmp(cls->valuestring, "ControlNetModel") != 0) {
        lc_err("not a ControlNet: %s: _class_name is %s, expected ControlNetModel", what,
               cls->valuestring);
        goto done;
    }
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, "conditioning_channels");
    if (v && !cJSON_IsNull(v)) {
        if (!cJSON_IsNumber(v) || v->valuedouble < 1 || v->valuedouble > 64) {
            lc_err("%s: conditioning_channels should be an integer 1..64", what);
            goto done;
        }
        c->conditioning_channels = (int)v->valuedouble;
    }
    v = cJSON_GetObjectItemCaseSensitive(root, "conditioning_embedding_out_channels");
    if (v && !cJSON_IsNull(v)) {
        int n = cJSON_IsArray(v) ? cJSON_GetArraySize(v) : 0;
        if (n < 1 || n > LC_CONTROLNET_MAXCOND) {
            lc_err("%s: conditioning_embedding_out_channels should list 1..%d integers", what,
                   LC_CONTROLNET_MAXCOND);
            goto done;
        }
        c->ncond = n;
        for (int i = 0; i < n; i++) {
            const cJSON *e = cJSON_GetArrayItem(v, i);
            if (!cJSON_IsNumber(e) || e->valuedouble < 1 || e->valuedouble > 65536) {
                lc_err("%s: conditioning_embedding_out_channels[%d] should be a positive integer",
                       what, i);
                goto done;
            }
            c->cond_channels[i] = (int)e->valuedouble;
        }
    }
    v = cJSON_GetObjectItemCaseSensitive(root, "controlnet_conditioning_channel_order");
    if (v && !cJSON_IsNull(v)) {
        if (!cJSON_IsString(v) ||
            (strcmp(v->valuestring, "rgb") != 0 && strcmp(v->valuestring, "bgr") != 0)) {
            lc_err("%s: controlnet_conditioning_channel_order should be \"rgb\" or \"bgr\"", what);
            goto done;
        }
        c->bgr = strcmp(v->valuestring, "bgr") == 0;
    }
    v = cJSON_GetObjectItemCaseSensitive(root, "global_pool_conditions");
    c->global_pool = v && cJSON_IsTrue(v);
    /* the rest is a UNet2DConditionModel config: let its parser check it */
    static const char *ours[] = {"_class_name", "conditioning_channels",
                                 "conditioning_embedding_out_channels",
                                 "controlnet_conditioning_channel_order",
                                 "global_pool_conditions", "addition_embed_type_num_heads"};
    for (size_t i = 0; i < sizeof ours / sizeof *ours; i++)
        cJSON_DeleteItemFromObjectCaseSensitive(root, ours[i]);
    char *rest = cJSON_PrintUnformatted(root);
    if (!rest) {
        lc_err("%s: out of memory", what);
        goto done;
    }
    rc = lc_unet_config_parse(&c->unet, rest, what);
    free(rest);
done:
    cJSON_Delete(root);
    return rc;
}

static int wshape(lc_weights *w, const char *name, int ndim, int64_t *sh)
{
    lc_tensor *t = lc_weights_get(w, name);
    if (!t || t->ndim != ndim)
        return 0;
    memcpy(sh, t->shape, sizeof(int64_t) * (size_t)ndim);
    return 1;
}

static int count_tb(lc_weights *w, const char *prefix)
{
    char n[256];
    int k = 0;
    for (; k < 64; k++) {
        snprintf(n, sizeof n, "%s.transformer_blocks.%d.attn1.to_q.weight", prefix, k);
        if (!lc_weights_get(w, n))
            break;
    }
    return k;
}

int lc_controlnet_config_infer(lc_controlnet_config *c, lc_weights *w)
{
    memset(c, 0, sizeof *c);
    cond_defaults(c);
    lc_unet_config *u = &c->unet;
    if (lc_unet_config_parse(u, "{}", "controlnet") != LC_OK) /* the UNet defaults */
        return LC_ERR;
    int64_t sh[4];
    char n[160];
    if (!wshape(w, "controlnet_cond_embedding.conv_in.weight", 4, sh))
        return lc_err("not a ControlNet: no controlnet_cond_embedding.conv_in.weight");
    c->conditioning_channels = (int)sh[1];
    c->cond_channels[0] = (int)sh[0];
    int nb = 0;
    for (;; nb++) {
        snprintf(n, sizeof n, "controlnet_cond_embedding.blocks.%d.weight", nb);
        if (!lc_weights_get(w, n))
            break;
    }
    if (nb % 2 || nb / 2 + 1 > LC_CONTROLNET_MAXCOND)
        return lc_err("controlnet: %d conditioning embedding blocks (expected pairs, at most %d)",
                      nb, 2 * (LC_CONTROLNET_MAXCOND - 1));
    c->ncond = nb / 2 + 1;
    for (int i = 1; i < c->ncond; i++) {
        snprintf(n, sizeof n, "controlnet_cond_embedding.blocks.%d.weight", 2 * i - 1);
        if (!wshape(w, n, 4, sh))
            return lc_err("controlnet: %s should have 4 dimensions", n);
        c->cond_channels[i] = (int)sh[0];
    }
    if (!wshape(w, "conv_in.weight", 4, sh))
        return lc_err("controlnet: missing tensor conv_in.weight (4 dimensions)");
    u->in_channels = (int)sh[1];
    u->conv_in_kernel = (int)sh[2];
    if (!wshape(w, "time_embedding.linear_1.weight", 2, sh))
        return lc_err("controlnet: missing tensor time_embedding.linear_1.weight");
    u->time_embed_dim = (int)sh[0];
    int nbl = 0;
    while (nbl < LC_UNET_MAXBLOCKS) {
        snprintf(n, sizeof n, "down_blocks.%d.resnets.0.conv1.weight", nbl);
        if (!wshape(w, n, 4, sh))
            break;
        u->block_out_channels[nbl] = (int)sh[0];
        int l = 0;
        for (; l < 32; l++) {
            snprintf(n, sizeof n, "down_blocks.%d.resnets.%d.conv1.weight", nbl, l);
            if (!lc_weights_get(w, n))
                break;
        }
        u->layers_per_block[nbl] = l;
        snprintf(n, sizeof n, "down_blocks.%d.attentions.0", nbl);
        u->transformer_layers[nbl] = count_tb(w, n);
        u->down_cross[nbl] = u->transformer_layers[nbl] > 0;
        if (!u->down_cross[nbl])
            u->transformer_layers[nbl] = 1;
        nbl++;
    }
    if (nbl == 0)
        return lc_err("controlnet: no down_blocks.0.resnets.0 tensors");
    u->nblocks = nbl;
    int k = count_tb(w, "mid_block.attentions.0");
    u->mid_cross = k > 0;
    if (k > 0)
        u->transformer_layers[nbl - 1] = k;
    int ctx = 0, lin = 0;
    for (int i = 0; i <= nbl && !ctx; i++) {
        char p[64];
        if (i < nbl)
            snprintf(p, sizeof p, "down_blocks.%d.attentions.0", i);
        else
            snprintf(p, sizeof p, "mid_block.attentions.0");
        snprintf(n, sizeof n, "%s.transformer_blocks.0.attn2.to_k.weight", p);
        if (wshape(w, n, 2, sh)) {
            ctx = (int)sh[1];
            snprintf(n, sizeof n, "%s.proj_in.weight", p);
            lin = wshape(w, n, 2, sh);
        }
    }
    if (!ctx)
        return lc_err("controlnet: no cross-attention layer found (attn2.to_k)");
    u->cross_attention_dim = ctx;
    u->use_linear_projection = lin;
    for (int i = 0; i < nbl; i++) {
        u->heads[i] = ctx == 1024 ? u->block_out_channels[i] / 64 : 8;
        u->up_cross[i] = 0;
        u->up_transformer_layers[i] = 1;
    }
    return LC_OK;
}

/* ---- original names ---- */

static int put(char *out, size_t n, const char *pre, long idx, const char *rest)
{
    int k = idx >= 0 ? snprintf(out, n, "%s%ld.%s", pre, idx, rest) : snprintf(out, n, "%s%s", pre, rest);
    return k >= 0 && (size_t)k < n;
}

int lc_controlnet_ldm_name(const lc_controlnet_ldm_map *m, const char *name, char *out,
                           size_t outlen)
{
    char *e;
    if (strncmp(name, "input_hint_block.", 17) == 0) {
        long k = strtol(name + 17, &e, 10);
        if (e == name + 17 || *e != '.' || k < 0 || k % 2)
            return 0;
        if (k == 0)
            return put(out, outlen, "controlnet_cond_embedding.conv_in.", -1, e + 1);
        if (k == m->hint_last)
            return put(out, outlen, "controlnet_cond_embedding.conv_out.", -1, e + 1);
        return put(out, outlen, "controlnet_cond_embedding.blocks.", k / 2 - 1, e + 1);
    }
    if (strncmp(name, "zero_convs.", 11) == 0) {
        long k = strtol(name + 11, &e, 10);
        if (e == name + 11 || strncmp(e, ".0.", 3) != 0 || k < 0)
            return 0;
        return put(out, outlen, "controlnet_down_blocks.", k, e + 3);
    }
    if (strncmp(name, "middle_block_out.0.", 19) == 0)
        return put(out, outlen, "controlnet_mid_block.", -1, name + 19);
    return lc_unet_ldm_name(&m->unet, name, out, outlen);
}

static int ldm_map(const char *name, char *out, size_t outlen, void *ctx)
{
    if (lc_controlnet_ldm_name(ctx, name, out, outlen))
        return 1;
    /* kept, so the model reports it as unexpected */
    return put(out, outlen, "", -1, name);
}

/* ---- assembly ---- */

static void lin_free(lc_ulinear *l)
{
    lc_tensor_free(l->w);
    lc_tensor_free(l->b);
    l->w = l->b = NULL;
}

void lc_controlnet_free(lc_controlnet *cn)
{
    if (!cn)
        return;
    lin_free(&cn->conv_in);
    lin_free(&cn->time1);
    lin_free(&cn->time2);
    lin_free(&cn->hint_in);
    lin_free(&cn->hint_out);
    for (int i = 0; i < 2 * LC_CONTROLNET_MAXCOND; i++)
        lin_free(&cn->hint[i]);
    for (int i = 0; i < LC_UNET_MAXBLOCKS; i++)
        lc_ublock_free(&cn->down[i]);
    lc_ublock_free(&cn->mid);
    for (int i = 0; i < MAXSKIPS; i++)
        lin_free(&cn->zero[i]);
    lin_free(&cn->zero_mid);
    lc_kv_cache_free(cn->kv);
    free(cn);
}

static void take_conv(lc_ubuild *b, lc_ulinear *l, int64_t cout, int64_t cin, int64_t k,
                      const char *name)
{
    l->w = lc_ubuild_take(b, 'w', 4, (const int64_t[]){cout, cin, k, k}, "%s.weight", name);
    l->b = lc_ubuild_take(b, 'b', 1, (const int64_t[]){cout}, "%s.bias", name);
}

lc_controlnet *lc_controlnet_new(const lc_controlnet_config *c, lc_weights *w)
{
    const lc_unet_config *u = &c->unet;
    if (u->nblocks < 1 || u->nblocks > LC_UNET_MAXBLOCKS || c->ncond < 1 ||
        c->ncond > LC_CONTROLNET_MAXCOND || c->conditioning_channels < 1) {
        lc_err("controlnet config: %d blocks, %d conditioning embedding channels", u->nblocks,
               c->ncond);
        return NULL;
    }
    if (!u->mid_cross) {
        lc_err("controlnet config: a mid block (UNetMidBlock2DCrossAttn) is required");
        return NULL;
    }
    lc_controlnet *cn = lc_calloc(1, sizeof *cn, "controlnet");
    if (!cn)
        return NULL;
    cn->c = *c;
    lc_ubuild b = {.w = w};
    int c0 = u->block_out_channels[0], T = u->time_embed_dim;
    take_conv(&b, &cn->conv_in, c0, u->in_channels, u->conv_in_kernel, "conv_in");
    cn->time1.w = lc_ubuild_take(&b, 'w', 2, (const int64_t[]){T, c0}, "time_embedding.linear_1.weight");
    cn->time1.b = lc_ubuild_take(&b, 'b', 1, (const int64_t[]){T}, "time_embedding.linear_1.bias");
    cn->time2.w = lc_ubuild_take(&b, 'w', 2, (const int64_t[]){T, T}, "time_embedding.linear_2.weight");
    cn->time2.b = lc_ubuild_take(&b, 'b', 1, (const int64_t[]){T}, "time_embedding.linear_2.bias");
    /* conditioning embedding: conv_in, then per level a 3x3 conv and a
     * stride-2 conv to the next width, conv_out to the UNet's width */
    const int *ch = c->cond_channels;
    take_conv(&b, &cn->hint_in, ch[0], c->conditioning_channels, 3,
              "controlnet_cond_embedding.conv_in");
    for (int i = 0; i + 1 < c->ncond; i++) {
        char n[96];
        snprintf(n, sizeof n, "controlnet_cond_embedding.blocks.%d", 2 * i);
        take_conv(&b, &cn->hint[2 * i], ch[i], ch[i], 3, n);
        snprintf(n, sizeof n, "controlnet_cond_embedding.blocks.%d", 2 * i + 1);
        take_conv(&b, &cn->hint[2 * i + 1], ch[i + 1], ch[i], 3, n);
    }
    take_conv(&b, &cn->hint_out, c0, ch[c->ncond - 1], 3, "controlnet_cond_embedding.conv_out");
    if (b.failed)
        goto fail;
    /* zero convolutions, one per skip: conv_in's, then each block's
     * resnets and downsampler */
    int k = 0;
    take_conv(&b, &cn->zero[k++], c0, c0, 1, "controlnet_down_blocks.0");
    for (int i = 0; i < u->nblocks && !b.failed; i++) {
        if (lc_down_block_build(&b, &cn->down[i], u, i) != LC_OK)
            goto fail;
        int nz = cn->down[i].nres + cn->down[i].has_sampler;
        for (int j = 0; j < nz && k < MAXSKIPS; j++, k++) {
            char n[64];
            snprintf(n, sizeof n, "controlnet_down_blocks.%d", k);
            int co = u->block_out_channels[i];
            take_conv(&b, &cn->zero[k], co, co, 1, n);
        }
    }
    cn->nskips = k;
    if (b.failed || lc_mid_block_build(&b, &cn->mid, u) != LC_OK)
        goto fail;
    int cl = u->block_out_channels[u->nblocks - 1];
    take_conv(&b, &cn->zero_mid, cl, cl, 1, "controlnet_mid_block");
    if (b.failed)
        goto fail;
    if (lc_weights_check_unused(w, "controlnet") != LC_OK)
        goto fail;
    return cn;
fail:
    lc_err_prefix("controlnet: ");
    lc_controlnet_free(cn);
    return NULL;
}

const lc_controlnet_config *lc_controlnet_get_config(const lc_controlnet *cn)
{
    return &cn->c;
}

int lc_controlnet_num_skips(const lc_controlnet *cn)
{
    return cn->nskips;
}

/* name ends with suffix: the prefix length, else -1 */
static int prefix_of(const char *name, const char *suffix)
{
    size_t n = strlen(name), s = strlen(suffix);
    if (n < s || strcmp(name + n - s, suffix) != 0)
        return -1;
    return (int)(n - s);
}

lc_controlnet *lc_controlnet_load_file(const char *path, const char *config_json)
{
    /* the config first: a folder's config.json names its class */
    lc_controlnet_config c;
    if (config_json && lc_controlnet_config_parse(&c, config_json, path) != LC_OK)
        return NULL;
    lc_st_file *f = lc_st_open(path);
    if (!f)
        return NULL;
    char prefix[256] = "";
    int ldm = -1, hint_last = -1, unet_like = 0;
    for (int i = 0; i < lc_st_count(f); i++) {
        const char *nm = lc_st_name(f, i);
        int p;
        if (ldm < 0 && (p = prefix_of(nm, "controlnet_cond_embedding.conv_in.weight")) >= 0 &&
            p < (int)sizeof prefix) {
            ldm = 0;
            snprintf(prefix, sizeof prefix, "%.*s", p, nm);
        } else if (ldm < 0 && (p = prefix_of(nm, "input_hint_block.0.weight")) >= 0 &&
                   p < (int)sizeof prefix) {
            ldm = 1;
            snprintf(prefix, sizeof prefix, "%.*s", p, nm);
        }
        if (strstr(nm, "up_blocks.") || strstr(nm, "output_blocks."))
            unet_like = 1;
    }
    if (ldm == 1) {
        /* the hint block's last conv is its highest index */
        size_t pl = strlen(prefix);
        for (int i = 0; i < lc_st_count(f); i++) {
            const char *nm = lc_st_name(f, i);
            if (strncmp(nm, prefix, pl) == 0 && strncmp(nm + pl, "input_hint_block.", 17) == 0) {
                int k = atoi(nm + pl + 17);
                if (k > hint_last)
                    hint_last = k;
            }
        }
    }
    lc_st_close(f);
    if (ldm < 0) {
        lc_err("not a ControlNet: %s has no controlnet_cond_embedding.* or "
               "control_model.input_hint_block.* tensors%s", path,
               unet_like ? " (it looks like a UNet or a full Stable Diffusion checkpoint)" : "");
        return NULL;
    }
    lc_weights *w = lc_weights_new();
    if (!w)
        return NULL;
    int rc;
    if (ldm) {
        lc_controlnet_ldm_map m = {.hint_last = hint_last};
        rc = lc_unet_ldm_map_init(&m.unet, path, prefix);
        if (rc == LC_OK)
            rc = lc_weights_load(w, path, prefix, ldm_map, &m);
    } else {
        rc = lc_weights_load(w, path, prefix[0] ? prefix : NULL, NULL, NULL);
    }
    if (rc == LC_OK && !config_json && lc_controlnet_config_infer(&c, w) != LC_OK) {
        lc_err_prefix("%s: inferring the ControlNet config: ", path);
        rc = LC_ERR;
    }
    lc_controlnet *cn = NULL;
    if (rc == LC_OK) {
        cn = lc_controlnet_new(&c, w);
        if (!cn)
            lc_err_prefix("%s: ", path);
    }
    lc_weights_free(w);
    return cn;
}

/* ---- forward ---- */

static lc_tensor *conv(const lc_tensor *x, const lc_ulinear *l, int stride)
{
    int k = (int)l->w->shape[2];
    lc_conv2d_params p = {{stride, stride}, {k / 2, k / 2}, {1, 1}, 1};
    return lc_conv2d(x, l->w, l->b, &p);
}

static lc_tensor *conv_silu(lc_tensor *x, const lc_ulinear *l, int stride)
{
    lc_tensor *y = conv(x, l, stride);
    lc_tensor_free(x);
    if (y && lc_unary_(LC_SILU, y) != LC_OK) {
        lc_tensor_free(y);
        return NULL;
    }
    return y;
}

/* ControlNetConditioningEmbedding on the control image in [0,1] */
static lc_tensor *cond_embed(const lc_controlnet *cn, const lc_tensor *cond)
{
    lc_tensor *x = lc_tensor_f32((lc_tensor *)cond);
    if (x && cn->c.bgr) {
        lc_tensor *f = lc_flip(x, 1);
        lc_tensor_free(x);
        x = f;
    }
    if (!x)
        return NULL;
    lc_tensor *h = conv(x, &cn->hint_in, 1);
    lc_tensor_free(x);
    if (h && lc_unary_(LC_SILU, h) != LC_OK) {
        lc_tensor_free(h);
        return NULL;
    }
    for (int i = 0; h && i < 2 * (cn->c.ncond - 1); i++)
        h = conv_silu(h, &cn->hint[i], i % 2 ? 2 : 1);
    if (!h)
        return NULL;
    lc_tensor *e = conv(h, &cn->hint_out, 1);
    lc_tensor_free(h);
    return e;
}

/* diffusers: mean over H and W, broadcast back by the UNet's addition */
static lc_tensor *pooled(lc_tensor *r)
{
    lc_tensor *a = lc_reduce_dim(LC_RMEAN, r, 3, 1, 0);
    lc_tensor *m = a ? lc_reduce_dim(LC_RMEAN, a, 2, 1, 0) : NULL;
    lc_tensor *e = m ? lc_tensor_expand(m, 4, r->shape) : NULL;
    lc_tensor *o = e ? lc_tensor_contiguous(e) : NULL;
    lc_tensor_free(a);
    lc_tensor_free(m);
    lc_tensor_free(e);
    lc_tensor_free(r);
    return o;
}

static lc_tensor *zero_out(const lc_controlnet *cn, const lc_tensor *x, const lc_ulinear *l,
                           double s)
{
    lc_tensor *r = conv(x, l, 1);
    if (r && lc_binary_scalar_(LC_MUL, r, s) != LC_OK) {
        lc_tensor_free(r);
        return NULL;
    }
    return (r && cn->c.global_pool) ? pooled(r) : r;
}

int lc_controlnet_forward(lc_controlnet *cn, const lc_tensor *x, const lc_tensor *timesteps,
                          const lc_tensor *context, const lc_tensor *cond, double scale,
                          int guess_mode, lc_tensor **down, lc_tensor **mid)
{
    const lc_unet_config *u = &cn->c.unet;
    int nz = cn->nskips;
    for (int i = 0; i < nz; i++)
        down[i] = NULL;
    *mid = NULL;
    if (x->ndim != 4 || x->shape[1] != u->in_channels || x->shape[0] < 1 || x->shape[2] < 1 ||
        x->shape[3] < 1)
        return lc_err("controlnet: sample %s, expected [N,%d,H,W]", LC_SHAPE_STR(x),
                      u->in_channels);
    int64_t N = x->shape[0], f = (int64_t)1 << (cn->c.ncond - 1);
    if (!context || context->ndim != 3 || context->shape[2] != u->cross_attention_dim ||
        (context->shape[0] != N && context->shape[0] != 1))
        return lc_err("controlnet: context %s, expected [%lld,L,%d]",
                      context ? LC_SHAPE_STR(context) : "missing", (long long)N,
                      u->cross_attention_dim);
    if (!cond || cond->ndim != 4 || cond->shape[1] != cn->c.conditioning_channels ||
        (cond->shape[0] != N && cond->shape[0] != 1) || cond->shape[2] != x->shape[2] * f ||
        cond->shape[3] != x->shape[3] * f)
        return lc_err("controlnet: control image %s, expected [%lld,%d,%lld,%lld] (%lldx the "
                      "latent size, values in [0,1])",
                      cond ? LC_SHAPE_STR(cond) : "missing", (long long)N,
                      cn->c.conditioning_channels, (long long)(x->shape[2] * f),
                      (long long)(x->shape[3] * f), (long long)f);
    lc_tensor *skips[MAXSKIPS] = {0};
    int nskips = 0, rc = LC_ERR;
    lc_tensor *emb = NULL, *ctx = NULL, *h = NULL, *xin = NULL, *e = NULL;
    xin = lc_tensor_f32((lc_tensor *)x);
    emb = xin ? lc_time_embedding_act(timesteps, N, u, &cn->time1, &cn->time2) : NULL;
    if (!emb)
        goto done;
    if (context->shape[0] != N)
        ctx = lc_tensor_expand((lc_tensor *)context, 3,
                               (const int64_t[]){N, context->shape[1], context->shape[2]});
    else {
        ctx = (lc_tensor *)context;
        lc_tensor_retain(ctx);
    }
    if (!ctx)
        goto done;
    lc_ufwd fw = {.temb_act = emb, .context = ctx, .hooks = NULL,
                  .kv = lc_kv_cache_begin(&cn->kv, ctx)};
    h = conv(xin, &cn->conv_in, 1);
    e = h ? cond_embed(cn, cond) : NULL;
    if (!e || lc_binary_(LC_ADD, h, e) != LC_OK)
        goto done;
    lc_tensor_retain(h);
    skips[nskips++] = h;
    for (int i = 0; i < u->nblocks; i++) {
        lc_tensor *r = lc_down_block_forward(&fw, &cn->down[i], h, skips, &nskips);
        lc_tensor_free(h);
        h = r;
        if (!h)
            goto done;
    }
    lc_tensor *r = lc_mid_block_forward(&fw, &cn->mid, h);
    lc_tensor_free(h);
    h = r;
    if (!h)
        goto done;
    if (nskips != nz) {
        lc_err("controlnet: %d skip connections, %d zero convolutions", nskips, nz);
        goto done;
    }
    for (int i = 0; i <= nz; i++) {
        double s = scale;
        if (guess_mode) {
            /* torch.logspace(-1, 0, nz + 1) in f32, times the scale */
            float lin = (float)(-1.0 + (double)i / nz);
            s = (double)((float)pow(10.0, lin) * (float)scale);
        }
        lc_tensor *o = zero_out(cn, i < nz ? skips[i] : h, i < nz ? &cn->zero[i] : &cn->zero_mid, s);
        if (!o)
            goto done;
        if (i < nz)
            down[i] = o;
        else
            *mid = o;
    }
    rc = LC_OK;
done:
    if (rc != LC_OK)
        for (int i = 0; i < nz; i++) {
            lc_tensor_free(down[i]);
            down[i] = NULL;
        }
    for (int i = 0; i < nskips; i++)
        lc_tensor_free(skips[i]);
    lc_tensor_free(emb);
    lc_tensor_free(ctx);
    lc_tensor_free(h);
    lc_tensor_free(xin);
    lc_tensor_free(e);
    return rc;
}
