/* AutoencoderKL (see vae.h). Every GroupNorm in diffusers' VAE uses
 * eps 1e-6; the mid-block attention is one head over all C channels with
 * a residual connection. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "ops/ops.h"
#include "vae.h"

#define VAE_EPS 1e-6

typedef struct {
    int cin, cout;
    lc_tensor *n1w, *n1b, *c1w, *c1b, *n2w, *n2b, *c2w, *c2b, *scw, *scb;
} resnet;

typedef struct {
    lc_tensor *gnw, *gnb, *qw, *qb, *kw, *kb, *vw, *vb, *ow, *ob;
} attn;

typedef struct {
    resnet *res; /* layers_per_block (+1 in the decoder) */
    lc_tensor *sw, *sb; /* down/upsampler conv or NULL */
} block;

typedef struct {
    lc_tensor *conv_in_w, *conv_in_b, *norm_w, *norm_b, *conv_out_w, *conv_out_b;
    block blk[LC_VAE_MAXBLOCKS];
    resnet mid0, mid1;
    attn mid_attn;
} coder;

struct lc_vae {
    lc_vae_config c;
    coder enc, dec;
    lc_tensor *quant_w, *quant_b, *post_w, *post_b;
};

/* ---- config ---- */

static void config_defaults(lc_vae_config *c)
{
    memset(c, 0, sizeof *c);
    c->in_channels = c->out_channels = 3;
    c->latent_channels = 4;
    c->nblocks = 4;
    c->block_out[0] = 128, c->block_out[1] = 256, c->block_out[2] = 512, c->block_out[3] = 512;
    c->layers_per_block = 2;
    c->groups = 32;
    c->use_quant_conv = c->use_post_quant_conv = c->mid_attention = 1;
    c->scaling_factor = 0.18215;
}

static int config_check(const lc_vae_config *c)
{
    if (c->nblocks < 1 || c->nblocks > LC_VAE_MAXBLOCKS)
        return lc_err("vae config: %d blocks (1..%d supported)", c->nblocks, LC_VAE_MAXBLOCKS);
    if (c->layers_per_block < 1 || c->layers_per_block > 16 || c->groups < 1 ||
        c->in_channels < 1 || c->out_channels < 1 || c->latent_channels < 1)
        return lc_err("vae config: layers_per_block %d, norm_num_groups %d, channels %d/%d/%d: "
                      "out of range",
                      c->layers_per_block, c->groups, c->in_channels, c->out_channels,
                      c->latent_channels);
    for (int i = 0; i < c->nblocks; i++)
        if (c->block_out[i] < 1 || c->block_out[i] % c->groups)
            return lc_err("vae config: block_out_channels[%d] = %d is not a multiple of "
                          "norm_num_groups %d",
                          i, c->block_out[i], c->groups);
    return LC_OK;
}

int lc_vae_config_parse(lc_vae_config *c, const char *json_text)
{
    config_defaults(c);
    cJSON *j = cJSON_Parse(json_text);
    if (!j || !cJSON_IsObject(j)) {
        cJSON_Delete(j);
        return lc_err("vae config: not a JSON object");
    }
    const cJSON *v;
#define INT(key, field)                                              \
    if (cJSON_IsNumber(v = cJSON_GetObjectItemCaseSensitive(j, key))) \
        c->field = v->valueint;
    INT("in_channels", in_channels)
    INT("out_channels", out_channels)
    INT("latent_channels", latent_channels)
    INT("layers_per_block", layers_per_block)
    INT("norm_num_groups", groups)
#undef INT
    if (cJSON_IsNumber(v = cJSON_GetObjectItemCaseSensitive(j, "scaling_factor")))
        c->scaling_factor = v->valuedouble;
    if (cJSON_IsNumber(v = cJSON_GetObjectItemCaseSensitive(j, "shift_factor")))
        c->shift_factor = v->valuedouble;
    if (cJSON_IsBool(v = cJSON_GetObjectItemCaseSensitive(j, "use_quant_conv")))
        c->use_quant_conv = cJSON_IsTrue(v);
    if (cJSON_IsBool(v = cJSON_GetObjectItemCaseSensitive(j, "use_post_quant_conv")))
        c->use_post_quant_conv = cJSON_IsTrue(v);
    if (cJSON_IsBool(v = cJSON_GetObjectItemCaseSensitive(j, "mid_block_add_attention")))
        c->mid_attention = cJSON_IsTrue(v);
    int rc = LC_OK;
    v = cJSON_GetObjectItemCaseSensitive(j, "act_fn");
    if (cJSON_IsString(v) && strcmp(v->valuestring, "silu") != 0 &&
        strcmp(v->valuestring, "swish") != 0)
        rc = lc_err("vae config: act_fn \"%s\" not supported (silu)", v->valuestring);
    const cJSON *bo = cJSON_GetObjectItemCaseSensitive(j, "block_out_channels");
    if (rc == LC_OK && cJSON_IsArray(bo)) {
        int n = cJSON_GetArraySize(bo);
        if (n < 1 || n > LC_VAE_MAXBLOCKS)
            rc = lc_err("vae config: %d block_out_channels (1..%d supported)", n,
                        LC_VAE_MAXBLOCKS);
        for (int i = 0; rc == LC_OK && i < n; i++)
            c->block_out[i] = cJSON_GetArrayItem(bo, i)->valueint;
        c->nblocks = n;
    }
    /* only the plain SD block types exist in this VAE */
    const char *lists[2] = {"down_block_types", "up_block_types"};
    const char *want[2] = {"DownEncoderBlock2D", "UpDecoderBlock2D"};
    for (int l = 0; rc == LC_OK && l < 2; l++) {
        const cJSON *a = cJSON_GetObjectItemCaseSensitive(j, lists[l]);
        const cJSON *e;
        cJSON_ArrayForEach(e, a)
        {
            if (!cJSON_IsString(e) || strcmp(e->valuestring, want[l]) != 0) {
                rc = lc_err("vae config: %s entry \"%s\" not supported (only %s)", lists[l],
                            cJSON_IsString(e) ? e->valuestring : "?", want[l]);
                break;
            }
        }
    }
    cJSON_Delete(j);
    return rc == LC_OK ? config_check(c) : rc;
}

int lc_vae_config_infer(lc_vae_config *c, lc_weights *w)
{
    config_defaults(c);
    /* channel counts from the outer convs; when one is missing, keep the
     * SD default so that lc_vae_new reports it with its expected shape */
    lc_tensor *cin = lc_weights_get(w, "encoder.conv_in.weight");
    lc_tensor *dout = lc_weights_get(w, "decoder.conv_out.weight");
    lc_tensor *dcin = lc_weights_get(w, "decoder.conv_in.weight");
    lc_tensor *pq = lc_weights_get(w, "post_quant_conv.weight");
    if (cin && cin->ndim == 4)
        c->in_channels = (int)cin->shape[1];
    if (dout && dout->ndim == 4)
        c->out_channels = (int)dout->shape[0];
    if (dcin && dcin->ndim == 4)
        c->latent_channels = (int)dcin->shape[1];
    else if (pq && pq->ndim == 4)
        c->latent_channels = (int)pq->shape[0];
    char name[128];
    int n = 0;
    for (;; n++) {
        snprintf(name, sizeof name, "encoder.down_blocks.%d.resnets.0.conv1.weight", n);
        lc_tensor *t = lc_weights_get(w, name);
        if (!t || t->ndim != 4)
            break;
        if (n >= LC_VAE_MAXBLOCKS)
            return lc_err("vae: more than %d down blocks", LC_VAE_MAXBLOCKS);
        c->block_out[n] = (int)t->shape[0];
    }
    if (!n)
        return lc_err("vae: missing tensor encoder.down_blocks.0.resnets.0.conv1.weight");
    c->nblocks = n;
    int l = 0;
    for (;; l++) {
        snprintf(name, sizeof name, "encoder.down_blocks.0.resnets.%d.conv1.weight", l);
        if (!lc_weights_get(w, name))
            break;
    }
    c->layers_per_block = l;
    c->use_quant_conv = lc_weights_get(w, "quant_conv.weight") != NULL;
    c->use_post_quant_conv = lc_weights_get(w, "post_quant_conv.weight") != NULL;
    c->mid_attention = lc_weights_has_prefix(w, "encoder.mid_block.attentions.0.");
    /* SD's VAE: 32 groups (not inferable from shapes) */
    return config_check(c);
}

/* ---- weights ---- */

static lc_tensor *take(lc_weights *w, const char *name, int ndim, int64_t a, int64_t b,
                       int64_t k)
{
    int64_t shape[4] = {a, b, k, k};
    lc_tensor *t = lc_weights_need(w, name, ndim, shape);
    if (t)
        lc_tensor_retain(t);
    return t;
}

static void free_tensors(lc_tensor **p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        lc_tensor_free(p[i]);
}

static int take_resnet(lc_weights *w, const char *pre, int cin, int cout, resnet *r)
{
    char n[200];
    r->cin = cin, r->cout = cout;
#define G(field, suffix, nd, a, b, k) \
    (snprintf(n, sizeof n, "%s.%s", pre, suffix), (r->field = take(w, n, nd, a, b, k)) != NULL)
    int ok = G(n1w, "norm1.weight", 1, cin, 0, 0) && G(n1b, "norm1.bias", 1, cin, 0, 0) &&
             G(c1w, "conv1.weight", 4, cout, cin, 3) && G(c1b, "conv1.bias", 1, cout, 0, 0) &&
             G(n2w, "norm2.weight", 1, cout, 0, 0) && G(n2b, "norm2.bias", 1, cout, 0, 0) &&
             G(c2w, "conv2.weight", 4, cout, cout, 3) && G(c2b, "conv2.bias", 1, cout, 0, 0);
    if (ok && cin != cout)
        ok = G(scw, "conv_shortcut.weight", 4, cout, cin, 1) &&
             G(scb, "conv_shortcut.bias", 1, cout, 0, 0);
#undef G
    return ok ? LC_OK : LC_ERR;
}

static int take_attn(lc_weights *w, const char *pre, int C, attn *a)
{
    char n[200];
#define G(field, suffix, nd)                          \
    (snprintf(n, sizeof n, "%s.%s", pre, suffix), \
     (a->field = take(w, n, nd, C, nd == 2 ? C : 0, 0)) != NULL)
    int ok = G(gnw, "group_norm.weight", 1) && G(gnb, "group_norm.bias", 1) &&
             G(qw, "to_q.weight", 2) && G(qb, "to_q.bias", 1) && G(kw, "to_k.weight", 2) &&
             G(kb, "to_k.bias", 1) && G(vw, "to_v.weight", 2) && G(vb, "to_v.bias", 1) &&
             G(ow, "to_out.0.weight", 2) && G(ob, "to_out.0.bias", 1);
#undef G
    return ok ? LC_OK : LC_ERR;
}

static int take_coder(lc_weights *w, const lc_vae_config *c, int decoder, coder *d)
{
    const char *p = decoder ? "decoder" : "encoder";
    char n[256], pre[160];
    int top = c->block_out[c->nblocks - 1];
    int in = decoder ? c->latent_channels : c->in_channels;
    int out = decoder ? c->out_channels : 2 * c->latent_channels;
    int last = decoder ? c->block_out[0] : top;
#define G(dst, suffix, nd, a, b, k) \
    (snprintf(n, sizeof n, "%s.%s", p, suffix), (dst = take(w, n, nd, a, b, k)) != NULL)
    if (!(G(d->conv_in_w, "conv_in.weight", 4, decoder ? top : c->block_out[0], in, 3) &&
          G(d->conv_in_b, "conv_in.bias", 1, decoder ? top : c->block_out[0], 0, 0) &&
          G(d->norm_w, "conv_norm_out.weight", 1, last, 0, 0) &&
          G(d->norm_b, "conv_norm_out.bias", 1, last, 0, 0) &&
          G(d->conv_out_w, "conv_out.weight", 4, out, last, 3) &&
          G(d->conv_out_b, "conv_out.bias", 1, out, 0, 0)))
        return LC_ERR;
    snprintf(pre, sizeof pre, "%s.mid_block.resnets.0", p);
    if (take_resnet(w, pre, top, top, &d->mid0) != LC_OK)
        return LC_ERR;
    snprintf(pre, sizeof pre, "%s.mid_block.resnets.1", p);
    if (take_resnet(w, pre, top, top, &d->mid1) != LC_OK)
        return LC_ERR;
    snprintf(pre, sizeof pre, "%s.mid_block.attentions.0", p);
    if (c->mid_attention && take_attn(w, pre, top, &d->mid_attn) != LC_OK)
        return LC_ERR;
    int nres = decoder ? c->layers_per_block + 1 : c->layers_per_block;
    int prev = decoder ? top : c->block_out[0];
    for (int i = 0; i < c->nblocks; i++) {
        int ch = decoder ? c->block_out[c->nblocks - 1 - i] : c->block_out[i];
        block *b = &d->blk[i];
        b->res = lc_calloc((size_t)nres, sizeof(resnet), "vae block");
        if (!b->res)
            return LC_ERR;
        for (int r = 0; r < nres; r++) {
            snprintf(pre, sizeof pre, "%s.%s.%d.resnets.%d", p, decoder ? "up_blocks" : "down_blocks",
                     i, r);
            if (take_resnet(w, pre, r == 0 ? prev : ch, ch, &b->res[r]) != LC_OK)
                return LC_ERR;
        }
        if (i < c->nblocks - 1) {
            const char *s = decoder ? "upsamplers" : "downsamplers";
            snprintf(pre, sizeof pre, "%s_blocks.%d.%s.0.conv", decoder ? "up" : "down", i, s);
            char wn[200], bn[200]; /* suffixes under "encoder."/"decoder." */
            snprintf(wn, sizeof wn, "%s.weight", pre);
            snprintf(bn, sizeof bn, "%s.bias", pre);
            if (!(G(b->sw, wn, 4, ch, ch, 3) && G(b->sb, bn, 1, ch, 0, 0)))
                return LC_ERR;
        }
        prev = ch;
    }
#undef G
    return LC_OK;
}

static void free_coder(coder *d, int nres, int nblocks)
{
    free_tensors(&d->conv_in_w, 6);
    free_tensors(&d->mid0.n1w, 10);
    free_tensors(&d->mid1.n1w, 10);
    free_tensors(&d->mid_attn.gnw, 10);
    for (int i = 0; i < nblocks; i++) {
        if (d->blk[i].res)
            for (int r = 0; r < nres; r++)
                free_tensors(&d->blk[i].res[r].n1w, 10);
        free(d->blk[i].res);
        lc_tensor_free(d->blk[i].sw);
        lc_tensor_free(d->blk[i].sb);
    }
}

void lc_vae_free(lc_vae *m)
{
    if (!m)
        return;
    free_coder(&m->enc, m->c.layers_per_block, m->c.nblocks);
    free_coder(&m->dec, m->c.layers_per_block + 1, m->c.nblocks);
    free_tensors(&m->quant_w, 4);
    free(m);
}

lc_vae *lc_vae_new(const lc_vae_config *c, lc_weights *w)
{
    if (config_check(c) != LC_OK)
        return NULL;
    lc_vae *m = lc_calloc(1, sizeof *m, "vae");
    if (!m)
        return NULL;
    m->c = *c;
    int L = c->latent_channels;
    int ok = take_coder(w, c, 0, &m->enc) == LC_OK && take_coder(w, c, 1, &m->dec) == LC_OK;
    if (ok && c->use_quant_conv)
        ok = (m->quant_w = take(w, "quant_conv.weight", 4, 2 * L, 2 * L, 1)) &&
             (m->quant_b = take(w, "quant_conv.bias", 1, 2 * L, 0, 0));
    if (ok && c->use_post_quant_conv)
        ok = (m->post_w = take(w, "post_quant_conv.weight", 4, L, L, 1)) &&
             (m->post_b = take(w, "post_quant_conv.bias", 1, L, 0, 0));
    if (ok)
        ok = lc_weights_check_unused(w, "vae") == LC_OK;
    if (!ok) {
        if (strncmp(lc_errmsg(), "vae", 3) != 0)
            lc_err_prefix("vae: ");
        lc_vae_free(m);
        return NULL;
    }
    return m;
}

const lc_vae_config *lc_vae_config_of(const lc_vae *m)
{
    return &m->c;
}

/* ---- forward ---- */

static lc_tensor *conv(const lc_tensor *x, const lc_tensor *w, const lc_tensor *b, int stride,
                       int pad)
{
    lc_conv2d_params p = {{stride, stride}, {pad, pad}, {1, 1}, 1};
    return lc_conv2d(x, w, b, &p);
}

static lc_tensor *gn_silu(const lc_vae *m, const lc_tensor *x, const lc_tensor *g,
                          const lc_tensor *b)
{
    return lc_group_norm_silu(x, m->c.groups, g, b, VAE_EPS); /* one pass */
}

/* consumes x */
static lc_tensor *resnet_fwd(const lc_vae *m, const resnet *r, lc_tensor *x)
{
    lc_tensor *h = gn_silu(m, x, r->n1w, r->n1b);
    lc_tensor *h1 = h ? conv(h, r->c1w, r->c1b, 1, 1) : NULL;
    lc_tensor_free(h);
    h = h1 ? gn_silu(m, h1, r->n2w, r->n2b) : NULL;
    lc_tensor_free(h1);
    lc_tensor *h2 = h ? conv(h, r->c2w, r->c2b, 1, 1) : NULL;
    lc_tensor_free(h);
    lc_tensor *sc = x;
    if (h2 && r->scw) {
        sc = conv(x, r->scw, r->scb, 1, 0);
        lc_tensor_free(x);
    }
    int ok = h2 && sc && lc_binary_(LC_ADD, h2, sc) == LC_OK;
    lc_tensor_free(sc);
    if (!ok) {
        lc_tensor_free(h2);
        return NULL;
    }
    return h2;
}

/* consumes x: x + to_out(attention(group_norm(x))) over the H*W tokens */
static lc_tensor *attn_fwd(const lc_vae *m, const attn *a, lc_tensor *x)
{
    int64_t B = x->shape[0], C = x->shape[1], HW = x->shape[2] * x->shape[3];
    lc_tensor *h = lc_group_norm(x, m->c.groups, a->gnw, a->gnb, VAE_EPS);
    int64_t s3[3] = {B, C, HW};
    lc_tensor *hv = h ? lc_tensor_view(h, 3, s3) : NULL;
    lc_tensor_free(h);
    lc_tensor *tok = hv ? lc_tensor_transpose(hv, 1, 2) : NULL; /* [B,HW,C] */
    lc_tensor_free(hv);
    lc_tensor *q = tok ? lc_linear(tok, a->qw, a->qb) : NULL;
    lc_tensor *k = q ? lc_linear(tok, a->kw, a->kb) : NULL;
    lc_tensor *v = k ? lc_linear(tok, a->vw, a->vb) : NULL;
    lc_tensor_free(tok);
    lc_tensor *o = v ? lc_attention_heads(q, k, v, 1, NULL, 0) : NULL;
    lc_tensor_free(q), lc_tensor_free(k), lc_tensor_free(v);
    lc_tensor *p = o ? lc_linear(o, a->ow, a->ob) : NULL; /* [B,HW,C] */
    lc_tensor_free(o);
    lc_tensor *pt = p ? lc_tensor_transpose(p, 1, 2) : NULL; /* [B,C,HW] */
    lc_tensor_free(p);
    lc_tensor *pv = pt ? lc_tensor_view(pt, 4, x->shape) : NULL; /* copies: not viewable */
    lc_tensor_free(pt);
    int ok = pv && lc_binary_(LC_ADD, x, pv) == LC_OK;
    lc_tensor_free(pv);
    if (!ok) {
        lc_tensor_free(x);
        return NULL;
    }
    return x;
}

static lc_tensor *mid_fwd(const lc_vae *m, const coder *d, lc_tensor *x)
{
    x = resnet_fwd(m, &d->mid0, x);
    if (x && m->c.mid_attention)
        x = attn_fwd(m, &d->mid_attn, x);
    return x ? resnet_fwd(m, &d->mid1, x) : NULL;
}

/* consumes x */
static lc_tensor *out_fwd(const lc_vae *m, const coder *d, lc_tensor *x)
{
    lc_tensor *h = gn_silu(m, x, d->norm_w, d->norm_b);
    lc_tensor_free(x);
    lc_tensor *y = h ? conv(h, d->conv_out_w, d->conv_out_b, 1, 1) : NULL;
    lc_tensor_free(h);
    return y;
}

static lc_tensor *interrupted(lc_tensor *x)
{
    lc_tensor_free(x);
    lc_err("interrupted");
    return NULL;
}

int lc_vae_encode(lc_vae *m, const lc_tensor *x, lc_tensor **mean, lc_tensor **logvar)
{
    *mean = *logvar = NULL;
    int f = 1 << (m->c.nblocks - 1);
    if (x->ndim != 4 || x->shape[1] != m->c.in_channels || x->shape[2] % f || x->shape[3] % f ||
        x->shape[2] < 1 || x->shape[3] < 1)
        return lc_err("vae encode: image %s, expected [N,%d,H,W] with H and W multiples of %d",
                      LC_SHAPE_STR(x), m->c.in_channels, f);
    const coder *d = &m->enc;
    lc_tensor *h = conv(x, d->conv_in_w, d->conv_in_b, 1, 1);
    int nres = m->c.layers_per_block;
    for (int i = 0; h && i < m->c.nblocks; i++) {
        for (int r = 0; h && r < nres; r++)
            h = resnet_fwd(m, &d->blk[i].res[r], h);
        if (h && lc_interrupted()) {
            interrupted(h);
            return LC_ERR;
        }
        if (h && d->blk[i].sw) {
            /* Downsample2D: asymmetric zero pad (right, bottom), stride-2 conv */
            static const int64_t pads[4] = {0, 1, 0, 1};
            lc_tensor *p = lc_pad2d(h, pads, LC_PADK_CONSTANT, 0.0);
            lc_tensor_free(h);
            h = p ? conv(p, d->blk[i].sw, d->blk[i].sb, 2, 0) : NULL;
            lc_tensor_free(p);
        }
    }
    h = h ? mid_fwd(m, d, h) : NULL;
    h = h ? out_fwd(m, d, h) : NULL;
    if (h && m->quant_w) {
        lc_tensor *q = conv(h, m->quant_w, m->quant_b, 1, 0);
        lc_tensor_free(h);
        h = q;
    }
    if (!h)
        return lc_err_prefix("vae encode: ");
    int64_t L = m->c.latent_channels;
    lc_tensor *mv = lc_tensor_narrow(h, 1, 0, L);
    lc_tensor *lv = lc_tensor_narrow(h, 1, L, L);
    lc_tensor_free(h);
    *mean = mv ? lc_tensor_contiguous(mv) : NULL;
    *logvar = lv ? lc_clamp(lv, -30.0, 20.0) : NULL;
    lc_tensor_free(mv);
    lc_tensor_free(lv);
    if (!*mean || !*logvar) {
        lc_tensor_free(*mean), lc_tensor_free(*logvar);
        *mean = *logvar = NULL;
        return LC_ERR;
    }
    return LC_OK;
}

lc_tensor *lc_vae_decode(lc_vae *m, const lc_tensor *z)
{
    if (z->ndim != 4 || z->shape[1] != m->c.latent_channels || z->shape[2] < 1 ||
        z->shape[3] < 1) {
        lc_err("vae decode: latent %s, expected [N,%d,h,w]", LC_SHAPE_STR(z),
               m->c.latent_channels);
        return NULL;
    }
    const coder *d = &m->dec;
    lc_tensor *h;
    if (m->post_w) {
        lc_tensor *p = conv(z, m->post_w, m->post_b, 1, 0);
        h = p ? conv(p, d->conv_in_w, d->conv_in_b, 1, 1) : NULL;
        lc_tensor_free(p);
    } else {
        h = conv(z, d->conv_in_w, d->conv_in_b, 1, 1);
    }
    h = h ? mid_fwd(m, d, h) : NULL;
    int nres = m->c.layers_per_block + 1;
    for (int i = 0; h && i < m->c.nblocks; i++) {
        for (int r = 0; h && r < nres; r++)
            h = resnet_fwd(m, &d->blk[i].res[r], h);
        if (h && lc_interrupted())
            return interrupted(h);
        if (h && d->blk[i].sw) {
            /* nearest 2x then the 3x3 conv, in one op with 4/9 of the work */
            lc_tensor *u = lc_conv2d_up2(h, d->blk[i].sw, d->blk[i].sb);
            lc_tensor_free(h);
            h = u;
        }
    }
    h = h ? out_fwd(m, d, h) : NULL;
    if (!h)
        lc_err_prefix("vae decode: ");
    return h;
}

/* ---- tiled decode ---- */

/* linear ramp weight of pixel i in a tile [0, n) whose low/high side is
 * shared with a neighbour over `ov` pixels */
static float ramp(int64_t i, int64_t n, int64_t ov, int low, int high)
{
    float w = 1.f;
    if (low && i < ov)
        w = fminf(w, (float)(i + 1) / (float)(ov + 1));
    if (high && n - 1 - i < ov)
        w = fminf(w, (float)(n - i) / (float)(ov + 1));
    return w;
}

/* tile starts along one axis: step tile - overlap, last tile flush with the end */
static int tile_starts(int64_t n, int64_t tile, int64_t ov, int64_t *starts, int max)
{
    int k = 0;
    for (int64_t s = 0;; s += tile - ov) {
        if (s + tile >= n) {
            starts[k++] = n > tile ? n - tile : 0;
            break;
        }
        starts[k++] = s;
        if (k == max)
            return -1;
    }
    return k;
}

lc_tensor *lc_vae_decode_tiled(lc_vae *m, const lc_tensor *z, int tile, int overlap)
{
    if (tile <= 0)
        tile = 64;
    if (overlap < 0)
        overlap = tile / 4;
    if (z->ndim != 4 || overlap >= tile) {
        lc_err("vae tiled decode: latent %s, tile %d, overlap %d (need a 4-d latent and "
               "overlap < tile)",
               LC_SHAPE_STR(z), tile, overlap);
        return NULL;
    }
    int64_t h = z->shape[2], w = z->shape[3];
    if (h <= tile && w <= tile)
        return lc_vae_decode(m, z);
    int64_t ys[1024], xs[1024];
    int ny = tile_starts(h, tile, overlap, ys, 1024), nx = tile_starts(w, tile, overlap, xs, 1024);
    if (ny < 0 || nx < 0) {
        lc_err("vae tiled decode: latent %s needs too many tiles of %d", LC_SHAPE_STR(z), tile);
        return NULL;
    }
    int f = 1 << (m->c.nblocks - 1);
    int64_t N = z->shape[0], C = m->c.out_channels, H = h * f, W = w * f;
    int64_t oshape[4] = {N, C, H, W}, wshape[2] = {H, W};
    lc_tensor *acc = lc_tensor_zeros(LC_F32, 4, oshape);
    lc_tensor *wsum = lc_tensor_zeros(LC_F32, 2, wshape);
    lc_tensor *zc = lc_tensor_contiguous((lc_tensor *)z);
    int rc = acc && wsum && zc ? LC_OK : LC_ERR;
    for (int ty = 0; rc == LC_OK && ty < ny; ty++)
        for (int tx = 0; rc == LC_OK && tx < nx; tx++) {
            int64_t y0 = ys[ty], x0 = xs[tx];
            int64_t th = h - y0 < tile ? h - y0 : tile, tw = w - x0 < tile ? w - x0 : tile;
            lc_tensor *a = lc_tensor_narrow(zc, 2, y0, th);
            lc_tensor *b = a ? lc_tensor_narrow(a, 3, x0, tw) : NULL;
            lc_tensor_free(a);
            lc_tensor *img = b ? lc_vae_decode(m, b) : NULL;
            lc_tensor_free(b);
            if (!img) {
                rc = LC_ERR;
                break;
            }
            /* overlap in image pixels with the previous/next tile on each axis */
            int64_t oy_lo = ty > 0 ? (ys[ty - 1] + tile - y0) * f : 0;
            int64_t oy_hi = ty + 1 < ny ? (y0 + th - ys[ty + 1]) * f : 0;
            int64_t ox_lo = tx > 0 ? (xs[tx - 1] + tile - x0) * f : 0;
            int64_t ox_hi = tx + 1 < nx ? (x0 + tw - xs[tx + 1]) * f : 0;
            int64_t IH = th * f, IW = tw * f;
            const float *src = lc_tensor_data(img);
            float *dst = lc_tensor_data(acc), *ws = lc_tensor_data(wsum);
            for (int64_t i = 0; i < IH; i++) {
                float wy = fminf(ramp(i, IH, oy_lo, 1, 0), ramp(i, IH, oy_hi, 0, 1));
                for (int64_t j = 0; j < IW; j++) {
                    float wt = wy * fminf(ramp(j, IW, ox_lo, 1, 0), ramp(j, IW, ox_hi, 0, 1));
                    int64_t Y = y0 * f + i, X = x0 * f + j;
                    ws[Y * W + X] += wt;
                    for (int64_t n = 0; n < N; n++)
                        for (int64_t c = 0; c < C; c++)
                            dst[((n * C + c) * H + Y) * W + X] +=
                                wt * src[((n * C + c) * IH + i) * IW + j];
                }
            }
            lc_tensor_free(img);
        }
    if (rc == LC_OK) {
        float *dst = lc_tensor_data(acc);
        const float *ws = lc_tensor_data(wsum);
        for (int64_t nc = 0; nc < N * C; nc++)
            for (int64_t p = 0; p < H * W; p++)
                dst[nc * H * W + p] /= ws[p];
    }
    lc_tensor_free(wsum);
    lc_tensor_free(zc);
    if (rc != LC_OK) {
        lc_tensor_free(acc);
        return NULL;
    }
    return acc;
}
