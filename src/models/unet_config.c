/* UNet configuration: diffusers config.json, inference from tensor shapes,
 * and the CompVis/ldm -> diffusers key translation of single files. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/safetensors.h"
#include "models/unet.h"

/* ---- config.json ---- */

static void defaults(lc_unet_config *c)
{
    memset(c, 0, sizeof *c);
    c->in_channels = 4;
    c->out_channels = 4;
    c->sample_size = 64;
    c->mid_cross = 1;
    c->cross_attention_dim = 1280;
    c->flip_sin_to_cos = 1;
    c->norm_num_groups = 32;
    c->norm_eps = 1e-5;
    c->downsample_padding = 1;
    c->mid_block_scale_factor = 1.0;
    c->conv_in_kernel = 3;
    c->conv_out_kernel = 3;
}

void lc_unet_config_sd15(lc_unet_config *c)
{
    defaults(c);
    c->nblocks = 4;
    static const int boc[4] = {320, 640, 1280, 1280};
    for (int i = 0; i < 4; i++) {
        c->block_out_channels[i] = boc[i];
        c->down_cross[i] = i < 3;
        c->up_cross[i] = i > 0;
        c->layers_per_block[i] = 2;
        c->heads[i] = 8;
        c->transformer_layers[i] = 1;
        c->up_transformer_layers[i] = 1;
    }
    c->cross_attention_dim = 768;
    c->time_embed_dim = 4 * 320;
}

typedef struct {
    const cJSON *root;
    const char *what;
} jctx;

static const cJSON *jget(const jctx *j, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j->root, key);
    return (v && !cJSON_IsNull(v)) ? v : NULL;
}

static int jint(const jctx *j, const char *key, int *out)
{
    const cJSON *v = jget(j, key);
    if (!v)
        return LC_OK;
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || fabs(v->valuedouble) > 1e9)
        return lc_err("%s: %s should be an integer", j->what, key);
    *out = (int)v->valuedouble;
    return LC_OK;
}

static int jnum(const jctx *j, const char *key, double *out)
{
    const cJSON *v = jget(j, key);
    if (!v)
        return LC_OK;
    if (!cJSON_IsNumber(v))
        return lc_err("%s: %s should be a number", j->what, key);
    *out = v->valuedouble;
    return LC_OK;
}

static int jbool(const jctx *j, const char *key, int *out)
{
    const cJSON *v = jget(j, key);
    if (!v)
        return LC_OK;
    if (!cJSON_IsBool(v))
        return lc_err("%s: %s should be true or false", j->what, key);
    *out = cJSON_IsTrue(v);
    return LC_OK;
}

/* an int or a list of n ints into out[n]; *given = 0 when absent */
static int jints(const jctx *j, const char *key, int n, int *out, int *given)
{
    const cJSON *v = jget(j, key);
    if (given)
        *given = v != NULL;
    if (!v)
        return LC_OK;
    if (cJSON_IsNumber(v)) {
        int x;
        if (jint(j, key, &x) != LC_OK)
            return LC_ERR;
        for (int i = 0; i < n; i++)
            out[i] = x;
        return LC_OK;
    }
    if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) != n)
        return lc_err("%s: %s should be an integer or a list of %d", j->what, key, n);
    for (int i = 0; i < n; i++) {
        const cJSON *e = cJSON_GetArrayItem(v, i);
        if (!cJSON_IsNumber(e) || e->valuedouble != floor(e->valuedouble) || e->valuedouble < 0 ||
            e->valuedouble > 1e6)
            return lc_err("%s: %s[%d] should be a non-negative integer", j->what, key, i);
        out[i] = (int)e->valuedouble;
    }
    return LC_OK;
}

/* `key` must be absent/null (or equal `allowed` if that is non-NULL) */
static int junsupported(const jctx *j, const char *key, const char *allowed)
{
    const cJSON *v = jget(j, key);
    if (!v)
        return LC_OK;
    if (allowed && cJSON_IsString(v) && strcmp(v->valuestring, allowed) == 0)
        return LC_OK;
    if (cJSON_IsFalse(v))
        return LC_OK;
    char *s = cJSON_PrintUnformatted(v);
    lc_err("%s: %s = %s is not supported (SD 1.x/2.x UNets only)", j->what, key, s ? s : "?");
    free(s);
    return LC_ERR;
}

static int block_types(const jctx *j, const char *key, int n, const char *cross,
                       const char *plain, int *out)
{
    const cJSON *v = jget(j, key);
    if (!v)
        return LC_OK; /* defaults set by the caller */
    if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) != n)
        return lc_err("%s: %s should list %d block types (one per block_out_channels entry)",
                      j->what, key, n);
    for (int i = 0; i < n; i++) {
        const cJSON *e = cJSON_GetArrayItem(v, i);
        if (cJSON_IsString(e) && strcmp(e->valuestring, cross) == 0)
            out[i] = 1;
        else if (cJSON_IsString(e) && strcmp(e->valuestring, plain) == 0)
            out[i] = 0;
        else
            return lc_err("%s: %s[%d] = %s is not supported (expected %s or %s)", j->what, key, i,
                          cJSON_IsString(e) ? e->valuestring : "?", cross, plain);
    }
    return LC_OK;
}

static int parse(lc_unet_config *c, const jctx *j)
{
    const cJSON *boc = jget(j, "block_out_channels");
    int n = 4;
    if (boc) {
        if (!cJSON_IsArray(boc) || cJSON_GetArraySize(boc) < 1 ||
            cJSON_GetArraySize(boc) > LC_UNET_MAXBLOCKS)
            return lc_err("%s: block_out_channels should be a list of 1..%d integers", j->what,
                          LC_UNET_MAXBLOCKS);
        n = cJSON_GetArraySize(boc);
        if (jints(j, "block_out_channels", n, c->block_out_channels, NULL) != LC_OK)
            return LC_ERR;
    } else {
        static const int d[4] = {320, 640, 1280, 1280};
        memcpy(c->block_out_channels, d, sizeof d);
    }
    c->nblocks = n;
    for (int i = 0; i < n; i++) {
        c->down_cross[i] = i < n - 1; /* diffusers' defaults */
        c->up_cross[i] = i > 0;
        c->layers_per_block[i] = 2;
        c->heads[i] = 8;
        c->transformer_layers[i] = 1;
    }
    if (block_types(j, "down_block_types", n, "CrossAttnDownBlock2D", "DownBlock2D",
                    c->down_cross) != LC_OK ||
        block_types(j, "up_block_types", n, "CrossAttnUpBlock2D", "UpBlock2D", c->up_cross) != LC_OK)
        return LC_ERR;
    const cJSON *mid = cJSON_GetObjectItemCaseSensitive(j->root, "mid_block_type");
    if (mid && cJSON_IsNull(mid))
        c->mid_cross = 0;
    else if (mid && !(cJSON_IsString(mid) && strcmp(mid->valuestring, "UNetMidBlock2DCrossAttn") == 0))
        return lc_err("%s: mid_block_type %s is not supported (expected UNetMidBlock2DCrossAttn)",
                      j->what, cJSON_IsString(mid) ? mid->valuestring : "?");
    if (jint(j, "in_channels", &c->in_channels) || jint(j, "out_channels", &c->out_channels) ||
        jints(j, "layers_per_block", n, c->layers_per_block, NULL) ||
        jint(j, "downsample_padding", &c->downsample_padding) ||
        jnum(j, "mid_block_scale_factor", &c->mid_block_scale_factor) ||
        jint(j, "norm_num_groups", &c->norm_num_groups) || jnum(j, "norm_eps", &c->norm_eps) ||
        jbool(j, "use_linear_projection", &c->use_linear_projection) ||
        jbool(j, "upcast_attention", &c->upcast_attention) ||
        jbool(j, "flip_sin_to_cos", &c->flip_sin_to_cos) || jnum(j, "freq_shift", &c->freq_shift) ||
        jbool(j, "center_input_sample", &c->center_input_sample) ||
        jint(j, "conv_in_kernel", &c->conv_in_kernel) ||
        jint(j, "conv_out_kernel", &c->conv_out_kernel))
        return LC_ERR;
    const cJSON *ss = jget(j, "sample_size");
    if (ss && cJSON_IsArray(ss) && cJSON_GetArraySize(ss) > 0 &&
        cJSON_IsNumber(cJSON_GetArrayItem(ss, 0)))
        c->sample_size = (int)cJSON_GetArrayItem(ss, 0)->valuedouble;
    else if (jint(j, "sample_size", &c->sample_size) != LC_OK)
        return LC_ERR;
    const cJSON *cad = jget(j, "cross_attention_dim");
    if (cad && !cJSON_IsNumber(cad))
        return lc_err("%s: per-block cross_attention_dim is not supported", j->what);
    if (jint(j, "cross_attention_dim", &c->cross_attention_dim) != LC_OK)
        return LC_ERR;
    /* diffusers' quirk: attention_head_dim is the number of heads when
     * num_attention_heads is null */
    int given = 0;
    if (jints(j, "num_attention_heads", n, c->heads, &given) != LC_OK)
        return LC_ERR;
    if (!given && jints(j, "attention_head_dim", n, c->heads, NULL) != LC_OK)
        return LC_ERR;
    if (jints(j, "transformer_layers_per_block", n, c->transformer_layers, NULL) != LC_OK)
        return LC_ERR;
    for (int i = 0; i < n; i++)
        c->up_transformer_layers[i] = c->transformer_layers[n - 1 - i];
    if (jints(j, "reverse_transformer_layers_per_block", n, c->up_transformer_layers, NULL) != LC_OK)
        return LC_ERR;
    int ted = 0;
    if (jint(j, "time_embedding_dim", &ted) != LC_OK)
        return LC_ERR;
    c->time_embed_dim = ted > 0 ? ted : 4 * c->block_out_channels[0];

    static const char *none[] = {"class_embed_type", "addition_embed_type", "encoder_hid_dim",
                                 "encoder_hid_dim_type", "time_cond_proj_dim", "timestep_post_act",
                                 "time_embedding_act_fn", "num_class_embeds", "cross_attention_norm",
                                 "dual_cross_attention", "only_cross_attention",
                                 "resnet_skip_time_act", "class_embeddings_concat",
                                 "mid_block_only_cross_attention", "addition_time_embed_dim",
                                 "projection_class_embeddings_input_dim"};
    for (size_t i = 0; i < sizeof none / sizeof *none; i++)
        if (junsupported(j, none[i], NULL) != LC_OK)
            return LC_ERR;
    if (junsupported(j, "act_fn", "silu") || junsupported(j, "resnet_time_scale_shift", "default") ||
        junsupported(j, "time_embedding_type", "positional") ||
        junsupported(j, "attention_type", "default"))
        return LC_ERR;
    double ros = 1.0;
    if (jnum(j, "resnet_out_scale_factor", &ros) != LC_OK)
        return LC_ERR;
    if (ros != 1.0)
        return lc_err("%s: resnet_out_scale_factor %g is not supported", j->what, ros);
    const cJSON *cls = jget(j, "_class_name");
    if (cls && cJSON_IsString(cls) && strcmp(cls->valuestring, "UNet2DConditionModel") != 0)
        return lc_err("%s: _class_name is %s, not UNet2DConditionModel", j->what, cls->valuestring);
    return LC_OK;
}

int lc_unet_config_parse(lc_unet_config *c, const char *json, const char *what)
{
    defaults(c);
    if (!what)
        what = "unet config";
    cJSON *root = cJSON_Parse(json);
    if (!root || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return lc_err("%s: not a JSON object", what);
    }
    jctx j = {root, what};
    int rc = parse(c, &j);
    cJSON_Delete(root);
    return rc;
}

/* ---- inference from shapes (diffusers names) ---- */

typedef int (*shape_fn)(void *src, const char *name, int *ndim, int64_t *shape);

static int has(shape_fn f, void *src, const char *fmt, ...) LC_PRINTF(3, 4);
static int has(shape_fn f, void *src, const char *fmt, ...)
{
    char name[256];
    int nd;
    int64_t sh[LC_MAXDIM];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    return f(src, name, &nd, sh);
}

static int shape_of(shape_fn f, void *src, int want_ndim, int64_t *sh, const char *fmt, ...)
    LC_PRINTF(5, 6);
static int shape_of(shape_fn f, void *src, int want_ndim, int64_t *sh, const char *fmt, ...)
{
    char name[256];
    int nd;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    if (!f(src, name, &nd, sh))
        return lc_err("missing tensor %s", name);
    if (want_ndim > 0 && nd != want_ndim)
        return lc_err("%s: %d dimensions, expected %d", name, nd, want_ndim);
    return LC_OK;
}

static int count_tblocks(shape_fn f, void *src, const char *prefix)
{
    int k = 0;
    while (k < 64 && has(f, src, "%s.transformer_blocks.%d.attn1.to_q.weight", prefix, k))
        k++;
    return k;
}

static int infer(lc_unet_config *c, shape_fn f, void *src)
{
    int64_t sh[LC_MAXDIM];
    defaults(c);
    if (shape_of(f, src, 4, sh, "conv_in.weight") != LC_OK)
        return LC_ERR;
    c->in_channels = (int)sh[1];
    c->conv_in_kernel = (int)sh[2];
    if (shape_of(f, src, 4, sh, "conv_out.weight") != LC_OK)
        return LC_ERR;
    c->out_channels = (int)sh[0];
    c->conv_out_kernel = (int)sh[2];
    if (shape_of(f, src, 2, sh, "time_embedding.linear_1.weight") != LC_OK)
        return LC_ERR;
    c->time_embed_dim = (int)sh[0];
    int n = 0;
    while (n < LC_UNET_MAXBLOCKS && has(f, src, "down_blocks.%d.resnets.0.conv1.weight", n))
        n++;
    if (n == 0)
        return lc_err("no down_blocks.0.resnets.0 tensors: not a UNet");
    c->nblocks = n;
    int ctx = 0, lin = -1;
    for (int i = 0; i < n; i++) {
        if (shape_of(f, src, 4, sh, "down_blocks.%d.resnets.0.conv1.weight", i) != LC_OK)
            return LC_ERR;
        c->block_out_channels[i] = (int)sh[0];
        int l = 0;
        while (l < 32 && has(f, src, "down_blocks.%d.resnets.%d.conv1.weight", i, l))
            l++;
        c->layers_per_block[i] = l;
        char p[64];
        snprintf(p, sizeof p, "down_blocks.%d.attentions.0", i);
        c->down_cross[i] = has(f, src, "%s.proj_in.weight", p);
        c->transformer_layers[i] = c->down_cross[i] ? count_tblocks(f, src, p) : 1;
        snprintf(p, sizeof p, "up_blocks.%d.attentions.0", i);
        c->up_cross[i] = has(f, src, "%s.proj_in.weight", p);
        c->up_transformer_layers[i] = c->up_cross[i] ? count_tblocks(f, src, p) : 1;
    }
    c->mid_cross = has(f, src, "mid_block.attentions.0.proj_in.weight");
    if (!c->mid_cross && has(f, src, "mid_block.resnets.0.conv1.weight"))
        return lc_err("mid block without attention is not supported");
    if (c->mid_cross) {
        int k = count_tblocks(f, src, "mid_block.attentions.0");
        if (c->down_cross[n - 1] && k != c->transformer_layers[n - 1])
            return lc_err("mid block has %d transformer layers, last down block %d: not supported",
                          k, c->transformer_layers[n - 1]);
        c->transformer_layers[n - 1] = k;
    }
    /* context width and projection kind from the first attention found */
    const char *where[3] = {"down_blocks.%d.attentions.0", "up_blocks.%d.attentions.0", "mid_block.attentions.0"};
    for (int w = 0; w < 3 && !ctx; w++)
        for (int i = 0; i < (w == 2 ? 1 : n) && !ctx; i++) {
            char p[64];
            snprintf(p, sizeof p, where[w], i);
            if (shape_of(f, src, 2, sh, "%s.transformer_blocks.0.attn2.to_k.weight", p) == LC_OK) {
                ctx = (int)sh[1];
                int nd;
                int64_t s2[LC_MAXDIM];
                char name[96];
                snprintf(name, sizeof name, "%s.proj_in.weight", p);
                if (f(src, name, &nd, s2))
                    lin = nd == 2;
            }
        }
    lc_err_clear();
    if (!ctx)
        return lc_err("no cross-attention layer found (attn2.to_k): not a text-conditioned UNet");
    c->cross_attention_dim = ctx;
    c->use_linear_projection = lin == 1;
    for (int i = 0; i < n; i++)
        c->heads[i] = ctx == 1024 ? c->block_out_channels[i] / 64 : 8;
    return LC_OK;
}

static int weights_shape(void *src, const char *name, int *ndim, int64_t *shape)
{
    lc_tensor *t = lc_weights_get(src, name);
    if (!t)
        return 0;
    *ndim = t->ndim;
    memcpy(shape, t->shape, sizeof t->shape);
    return 1;
}

int lc_unet_config_infer(lc_unet_config *c, lc_weights *w)
{
    if (infer(c, weights_shape, w) != LC_OK)
        return lc_err_prefix("unet: inferring the config from weight shapes: ");
    return LC_OK;
}

/* ---- CompVis/ldm names ---- */

static const char *resnet_part(const char *rest, char *buf, size_t n)
{
    static const char *from[] = {"in_layers.0.", "in_layers.2.", "out_layers.0.", "out_layers.3.",
                                 "emb_layers.1.", "skip_connection."};
    static const char *to[] = {"norm1.", "conv1.", "norm2.", "conv2.", "time_emb_proj.",
                               "conv_shortcut."};
    for (size_t i = 0; i < sizeof from / sizeof *from; i++) {
        size_t l = strlen(from[i]);
        if (strncmp(rest, from[i], l) == 0) {
            snprintf(buf, n, "%s%s", to[i], rest + l);
            return buf;
        }
    }
    return NULL;
}

/* "I.J.rest" -> I, J, rest */
static int split_ij(const char *s, int *i, int *j, const char **rest)
{
    char *e;
    long a = strtol(s, &e, 10);
    if (e == s || *e != '.' || a < 0 || a > 100000)
        return 0;
    s = e + 1;
    long b = strtol(s, &e, 10);
    if (e == s || *e != '.' || b < 0 || b > 100)
        return 0;
    *i = (int)a;
    *j = (int)b;
    *rest = e + 1;
    return 1;
}

static int put(char *out, size_t n, const char *fmt, ...) LC_PRINTF(3, 4);
static int put(char *out, size_t n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(out, n, fmt, ap);
    va_end(ap);
    return k >= 0 && (size_t)k < n;
}

int lc_unet_ldm_name(const lc_unet_ldm_map *m, const char *name, char *out, size_t outlen)
{
    int L = m->layers_per_block, I, J;
    const char *rest;
    char rb[256];
    if (strncmp(name, "time_embed.0.", 13) == 0)
        return put(out, outlen, "time_embedding.linear_1.%s", name + 13);
    if (strncmp(name, "time_embed.2.", 13) == 0)
        return put(out, outlen, "time_embedding.linear_2.%s", name + 13);
    if (strncmp(name, "out.0.", 6) == 0)
        return put(out, outlen, "conv_norm_out.%s", name + 6);
    if (strncmp(name, "out.2.", 6) == 0)
        return put(out, outlen, "conv_out.%s", name + 6);
    if (strncmp(name, "input_blocks.", 13) == 0 && split_ij(name + 13, &I, &J, &rest)) {
        if (I == 0)
            return J == 0 && put(out, outlen, "conv_in.%s", rest);
        int blk = (I - 1) / (L + 1), layer = (I - 1) % (L + 1);
        if (layer < L && J == 0 && resnet_part(rest, rb, sizeof rb))
            return put(out, outlen, "down_blocks.%d.resnets.%d.%s", blk, layer, rb);
        if (layer < L && J == 1)
            return put(out, outlen, "down_blocks.%d.attentions.%d.%s", blk, layer, rest);
        if (layer == L && J == 0 && strncmp(rest, "op.", 3) == 0)
            return put(out, outlen, "down_blocks.%d.downsamplers.0.conv.%s", blk, rest + 3);
        return 0;
    }
    if (strncmp(name, "middle_block.", 13) == 0) {
        char *e;
        long k = strtol(name + 13, &e, 10);
        if (e == name + 13 || *e != '.')
            return 0;
        rest = e + 1;
        if ((k == 0 || k == 2) && resnet_part(rest, rb, sizeof rb))
            return put(out, outlen, "mid_block.resnets.%d.%s", k == 0 ? 0 : 1, rb);
        if (k == 1)
            return put(out, outlen, "mid_block.attentions.0.%s", rest);
        return 0;
    }
    if (strncmp(name, "output_blocks.", 14) == 0 && split_ij(name + 14, &I, &J, &rest)) {
        int blk = I / (L + 1), layer = I % (L + 1);
        if (J == 0 && resnet_part(rest, rb, sizeof rb))
            return put(out, outlen, "up_blocks.%d.resnets.%d.%s", blk, layer, rb);
        /* the upsampler is the block's last module: .1 without attention,
         * .2 with it; attentions never have a direct "conv." child */
        if ((J == 1 || J == 2) && strncmp(rest, "conv.", 5) == 0)
            return put(out, outlen, "up_blocks.%d.upsamplers.0.conv.%s", blk, rest + 5);
        if (J == 1)
            return put(out, outlen, "up_blocks.%d.attentions.%d.%s", blk, layer, rest);
        return 0;
    }
    return 0;
}

int lc_unet_ldm_key_map(const char *name, char *out, size_t outlen, void *ctx)
{
    if (lc_unet_ldm_name(ctx, name, out, outlen))
        return 1;
    /* unknown keys keep their name, so the model reports them as
     * unexpected instead of silently dropping them */
    return put(out, outlen, "%s", name);
}

static int ldm_layers(lc_st_file *f, const char *prefix, int *L)
{
    size_t pl = strlen(prefix);
    int first_op = -1, max_in = -1;
    for (int i = 0; i < lc_st_count(f); i++) {
        const char *nm = lc_st_name(f, i);
        if (strncmp(nm, prefix, pl) != 0 || strncmp(nm + pl, "input_blocks.", 13) != 0)
            continue;
        int I, J;
        const char *rest;
        if (!split_ij(nm + pl + 13, &I, &J, &rest))
            continue;
        if (I > max_in)
            max_in = I;
        if (J == 0 && strncmp(rest, "op.", 3) == 0 && (first_op < 0 || I < first_op))
            first_op = I;
    }
    if (max_in < 1)
        return lc_err("%s: no %sinput_blocks tensors: not a CompVis/ldm UNet checkpoint",
                      lc_st_path(f), prefix);
    *L = first_op > 0 ? first_op - 1 : max_in;
    if (*L < 1)
        return lc_err("%s: cannot tell layers per block from %sinput_blocks", lc_st_path(f), prefix);
    return LC_OK;
}

int lc_unet_ldm_map_init(lc_unet_ldm_map *m, const char *path, const char *prefix)
{
    lc_st_file *f = lc_st_open(path);
    if (!f)
        return LC_ERR;
    int rc = ldm_layers(f, prefix ? prefix : "model.diffusion_model.", &m->layers_per_block);
    lc_st_close(f);
    return rc;
}

/* shapes of a single file under diffusers names */
typedef struct {
    lc_st_file *f;
    const char *prefix;
    lc_unet_ldm_map m;
    char **names; /* translated name per tensor index (NULL if not ours) */
} ldm_src;

static int ldm_shape(void *src, const char *name, int *ndim, int64_t *shape)
{
    ldm_src *s = src;
    for (int i = 0; i < lc_st_count(s->f); i++)
        if (s->names[i] && strcmp(s->names[i], name) == 0) {
            lc_dtype dt;
            return lc_st_info(s->f, i, &dt, ndim, shape) == LC_OK;
        }
    return 0;
}

int lc_unet_config_from_ldm(lc_unet_config *c, const char *path, const char *prefix)
{
    ldm_src s = {0};
    s.prefix = prefix ? prefix : "model.diffusion_model.";
    s.f = lc_st_open(path);
    if (!s.f)
        return LC_ERR;
    int rc = LC_ERR, n = lc_st_count(s.f);
    size_t pl = strlen(s.prefix);
    if (ldm_layers(s.f, s.prefix, &s.m.layers_per_block) != LC_OK)
        goto done;
    s.names = lc_calloc((size_t)n + 1, sizeof *s.names, "ldm names");
    if (!s.names)
        goto done;
    for (int i = 0; i < n; i++) {
        const char *nm = lc_st_name(s.f, i);
        char buf[256];
        if (strncmp(nm, s.prefix, pl) == 0 && lc_unet_ldm_name(&s.m, nm + pl, buf, sizeof buf))
            s.names[i] = strdup(buf);
    }
    rc = infer(c, ldm_shape, &s);
    if (rc != LC_OK)
        lc_err_prefix("%s: inferring the UNet config: ", path);
    else
        for (int i = 0; i < c->nblocks; i++)
            if (c->layers_per_block[i] != s.m.layers_per_block) {
                rc = lc_err("%s: UNet blocks have different layer counts", path);
                break;
            }
done:
    for (int i = 0; s.names && i < n; i++)
        free(s.names[i]);
    free(s.names);
    lc_st_close(s.f);
    return rc;
}
