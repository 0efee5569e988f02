/* CLIP text transformer (see clip_text.h). Shapes in comments: B batch,
 * L tokens, C hidden, H heads, D = C / H. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "clip_text.h"
#include "ops/ops.h"

typedef struct {
    lc_tensor *ln1_w, *ln1_b, *ln2_w, *ln2_b;
    lc_tensor *q_w, *q_b, *k_w, *k_b, *v_w, *v_b, *o_w, *o_b;
    lc_tensor *fc1_w, *fc1_b, *fc2_w, *fc2_b;
} clip_layer;

struct lc_clip_text {
    lc_clip_config c;
    lc_tensor *tok_emb, *pos_emb, *lnf_w, *lnf_b;
    clip_layer *layer;
};

static int json_int(const cJSON *j, const char *key, int def)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    return cJSON_IsNumber(v) ? v->valueint : def;
}

int lc_clip_config_parse(lc_clip_config *c, const char *json_text)
{
    cJSON *j = cJSON_Parse(json_text);
    if (!j || !cJSON_IsObject(j)) {
        cJSON_Delete(j);
        return lc_err("text encoder config: not a JSON object");
    }
    /* a full CLIPConfig nests the text tower under text_config */
    const cJSON *tc = cJSON_GetObjectItemCaseSensitive(j, "text_config");
    const cJSON *src = cJSON_IsObject(tc) ? tc : j;
    c->vocab_size = json_int(src, "vocab_size", 49408);
    c->hidden = json_int(src, "hidden_size", 768);
    c->intermediate = json_int(src, "intermediate_size", 3072);
    c->layers = json_int(src, "num_hidden_layers", 12);
    c->heads = json_int(src, "num_attention_heads", 12);
    c->max_pos = json_int(src, "max_position_embeddings", 77);
    c->eos_token_id = json_int(src, "eos_token_id", 2);
    const cJSON *eps = cJSON_GetObjectItemCaseSensitive(src, "layer_norm_eps");
    c->eps = cJSON_IsNumber(eps) ? eps->valuedouble : 1e-5;
    const cJSON *act = cJSON_GetObjectItemCaseSensitive(src, "hidden_act");
    int rc = LC_OK;
    c->act = LC_ACT_QUICK_GELU;
    if (cJSON_IsString(act)) {
        if (strcmp(act->valuestring, "gelu") == 0)
            c->act = LC_ACT_GELU;
        else if (strcmp(act->valuestring, "quick_gelu") != 0)
            rc = lc_err("text encoder config: hidden_act \"%s\" not supported (quick_gelu, gelu)",
                        act->valuestring);
    }
    cJSON_Delete(j);
    if (rc == LC_OK && (c->hidden <= 0 || c->heads <= 0 || c->hidden % c->heads || c->layers <= 0 ||
                        c->intermediate <= 0 || c->max_pos <= 0 || c->vocab_size <= 0))
        rc = lc_err("text encoder config: hidden_size %d, num_attention_heads %d, "
                    "num_hidden_layers %d: inconsistent",
                    c->hidden, c->heads, c->layers);
    return rc;
}

int lc_clip_config_infer(lc_clip_config *c, lc_weights *w, lc_clip_act act)
{
    lc_tensor *tok = lc_weights_get(w, "text_model.embeddings.token_embedding.weight");
    lc_tensor *pos = lc_weights_get(w, "text_model.embeddings.position_embedding.weight");
    lc_tensor *fc1 = lc_weights_get(w, "text_model.encoder.layers.0.mlp.fc1.weight");
    if (!tok || tok->ndim != 2)
        return lc_err("text encoder: missing tensor text_model.embeddings.token_embedding.weight "
                      "(expected [vocab,hidden])");
    if (!pos || pos->ndim != 2)
        return lc_err("text encoder: missing tensor "
                      "text_model.embeddings.position_embedding.weight (expected [77,%lld])",
                      (long long)tok->shape[1]);
    if (!fc1 || fc1->ndim != 2)
        return lc_err("text encoder: missing tensor text_model.encoder.layers.0.mlp.fc1.weight");
    memset(c, 0, sizeof *c);
    c->vocab_size = (int)tok->shape[0];
    c->hidden = (int)tok->shape[1];
    c->max_pos = (int)pos->shape[0];
    c->intermediate = (int)fc1->shape[0];
    /* every CLIP text tower in the SD family uses 64-wide heads; other
     * widths leave the head count unknowable from shapes */
    if (c->hidden % 64)
        return lc_err("text encoder: cannot infer the attention head count of a %d-wide text "
                      "encoder from tensor shapes (SD's are 768 or 1024 wide with 64-wide "
                      "heads); give its config.json",
                      c->hidden);
    c->heads = c->hidden / 64;
    char name[128];
    for (c->layers = 0;; c->layers++) {
        snprintf(name, sizeof name, "text_model.encoder.layers.%d.layer_norm1.weight", c->layers);
        if (!lc_weights_get(w, name))
            break;
    }
    c->eps = 1e-5;
    c->act = act;
    /* the legacy value: pool at argmax(ids), which is the EOS for the CLIP
     * vocabulary (49407 is its largest id) */
    c->eos_token_id = 2;
    return LC_OK;
}

static lc_tensor *take(lc_weights *w, const char *name, int ndim, int64_t a, int64_t b)
{
    int64_t shape[2] = {a, b};
    lc_tensor *t = lc_weights_need(w, name, ndim, shape);
    if (t)
        lc_tensor_retain(t);
    return t;
}

void lc_clip_text_free(lc_clip_text *m)
{
    if (!m)
        return;
    lc_tensor_free(m->tok_emb);
    lc_tensor_free(m->pos_emb);
    lc_tensor_free(m->lnf_w);
    lc_tensor_free(m->lnf_b);
    if (m->layer) {
        for (int i = 0; i < m->c.layers; i++) {
            lc_tensor **p = (lc_tensor **)&m->layer[i];
            for (size_t k = 0; k < sizeof(clip_layer) / sizeof(lc_tensor *); k++)
                lc_tensor_free(p[k]);
        }
        free(m->layer);
    }
    free(m);
}

lc_clip_text *lc_clip_text_new(const lc_clip_config *c, lc_weights *w)
{
    lc_clip_text *m = lc_calloc(1, sizeof *m, "text encoder");
    if (!m)
        return NULL;
    m->c = *c;
    m->layer = lc_calloc((size_t)c->layers, sizeof(clip_layer), "text encoder layers");
    if (!m->layer) {
        free(m);
        return NULL;
    }
    int64_t C = c->hidden, I = c->intermediate;
    int ok = (m->tok_emb = take(w, "text_model.embeddings.token_embedding.weight", 2,
                                c->vocab_size, C)) &&
             (m->pos_emb = take(w, "text_model.embeddings.position_embedding.weight", 2,
                                c->max_pos, C)) &&
             (m->lnf_w = take(w, "text_model.final_layer_norm.weight", 1, C, 0)) &&
             (m->lnf_b = take(w, "text_model.final_layer_norm.bias", 1, C, 0));
    char n[160];
#define T(field, suffix, nd, a, b)                                                    \
    (snprintf(n, sizeof n, "text_model.encoder.layers.%d.%s", i, suffix),              \
     (L->field = take(w, n, nd, a, b)) != NULL)
    for (int i = 0; ok && i < c->layers; i++) {
        clip_layer *L = &m->layer[i];
        ok = T(ln1_w, "layer_norm1.weight", 1, C, 0) && T(ln1_b, "layer_norm1.bias", 1, C, 0) &&
             T(ln2_w, "layer_norm2.weight", 1, C, 0) && T(ln2_b, "layer_norm2.bias", 1, C, 0) &&
             T(q_w, "self_attn.q_proj.weight", 2, C, C) && T(q_b, "self_attn.q_proj.bias", 1, C, 0) &&
             T(k_w, "self_attn.k_proj.weight", 2, C, C) && T(k_b, "self_attn.k_proj.bias", 1, C, 0) &&
             T(v_w, "self_attn.v_proj.weight", 2, C, C) && T(v_b, "self_attn.v_proj.bias", 1, C, 0) &&
             T(o_w, "self_attn.out_proj.weight", 2, C, C) &&
             T(o_b, "self_attn.out_proj.bias", 1, C, 0) && T(fc1_w, "mlp.fc1.weight", 2, I, C) &&
             T(fc1_b, "mlp.fc1.bias", 1, I, 0) && T(fc2_w, "mlp.fc2.weight", 2, C, I) &&
             T(fc2_b, "mlp.fc2.bias", 1, C, 0);
    }
#undef T
    if (!ok)
        lc_err_prefix("text encoder: ");
    else
        ok = lc_weights_check_unused(w, "text encoder") == LC_OK;
    if (!ok) {
        lc_clip_text_free(m);
        return NULL;
    }
    return m;
}

const lc_clip_config *lc_clip_text_config(const lc_clip_text *m)
{
    return &m->c;
}

/* [B,L,C] -> [B,H,L,D] view */
static lc_tensor *split_heads(lc_tensor *x, int heads)
{
    int64_t shape[4] = {x->shape[0], x->shape[1], heads, x->shape[2] / heads};
    lc_tensor *v = lc_tensor_view(x, 4, shape);
    if (!v)
        return NULL;
    static const int perm[4] = {0, 2, 1, 3};
    lc_tensor *p = lc_tensor_permute(v, perm);
    lc_tensor_free(v);
    return p;
}

/* x [B,L,C] -> x + out_proj(attn(ln1(x))), in place */
static int attention_block(const lc_clip_text *m, const clip_layer *L, lc_tensor *x)
{
    int64_t B = x->shape[0], Lt = x->shape[1], C = x->shape[2];
    lc_tensor *h = lc_layer_norm(x, L->ln1_w, L->ln1_b, m->c.eps);
    lc_tensor *q = h ? lc_linear(h, L->q_w, L->q_b) : NULL;
    lc_tensor *k = q ? lc_linear(h, L->k_w, L->k_b) : NULL;
    lc_tensor *v = k ? lc_linear(h, L->v_w, L->v_b) : NULL;
    lc_tensor_free(h);
    lc_tensor *qh = v ? split_heads(q, m->c.heads) : NULL;
    lc_tensor *kh = qh ? split_heads(k, m->c.heads) : NULL;
    lc_tensor *vh = kh ? split_heads(v, m->c.heads) : NULL;
    lc_tensor *a = vh ? lc_sdpa(qh, kh, vh, NULL, 0, 1) : NULL; /* [B,H,L,D] */
    lc_tensor_free(q), lc_tensor_free(k), lc_tensor_free(v);
    lc_tensor_free(qh), lc_tensor_free(kh), lc_tensor_free(vh);
    if (!a)
        return LC_ERR;
    static const int perm[4] = {0, 2, 1, 3};
    lc_tensor *ap = lc_tensor_permute(a, perm);
    lc_tensor_free(a);
    lc_tensor *ac = ap ? lc_tensor_contiguous(ap) : NULL;
    lc_tensor_free(ap);
    int64_t shape[3] = {B, Lt, C};
    lc_tensor *merged = ac ? lc_tensor_view(ac, 3, shape) : NULL;
    lc_tensor_free(ac);
    lc_tensor *o = merged ? lc_linear(merged, L->o_w, L->o_b) : NULL;
    lc_tensor_free(merged);
    int rc = o ? lc_binary_(LC_ADD, x, o) : LC_ERR;
    lc_tensor_free(o);
    return rc;
}

/* x -> x + fc2(act(fc1(ln2(x)))), in place */
static int mlp_block(const lc_clip_text *m, const clip_layer *L, lc_tensor *x)
{
    lc_tensor *h = lc_layer_norm(x, L->ln2_w, L->ln2_b, m->c.eps);
    lc_tensor *f = h ? lc_linear(h, L->fc1_w, L->fc1_b) : NULL;
    lc_tensor_free(h);
    if (!f || lc_unary_(m->c.act == LC_ACT_GELU ? LC_GELU : LC_QUICK_GELU, f) != LC_OK) {
        lc_tensor_free(f);
        return LC_ERR;
    }
    lc_tensor *o = lc_linear(f, L->fc2_w, L->fc2_b);
    lc_tensor_free(f);
    int rc = o ? lc_binary_(LC_ADD, x, o) : LC_ERR;
    lc_tensor_free(o);
    return rc;
}

/* token + position embeddings: [B,L] ids -> [B,L,C] */
/* row r of an embedding table as f32: the table itself when f32, else
 * widened into buf (big tables stay f16/bf16 in memory, see weights.h) */
static const float *emb_row(const lc_tensor *t, int64_t r, int64_t C, float *buf)
{
    if (t->dtype == LC_F32)
        return (const float *)lc_tensor_data(t) + r * C;
    const uint16_t *h = (const uint16_t *)lc_tensor_data(t) + r * C;
    for (int64_t c = 0; c < C; c++)
        buf[c] = t->dtype == LC_F16 ? lc_f16_to_f32(h[c]) : lc_bf16_to_f32(h[c]);
    return buf;
}

static lc_tensor *embed(const lc_clip_text *m, const lc_tensor *ids)
{
    int64_t B = ids->shape[0], L = ids->shape[1], C = m->c.hidden;
    int64_t shape[3] = {B, L, C};
    lc_tensor *x = lc_tensor_new(LC_F32, 3, shape);
    if (!x)
        return NULL;
    float *out = lc_tensor_data(x);
    float *rows = malloc(2 * (size_t)C * sizeof(float));
    if (!rows) {
        lc_tensor_free(x);
        lc_err("text encoder: out of memory");
        return NULL;
    }
    for (int64_t b = 0; b < B; b++)
        for (int64_t i = 0; i < L; i++) {
            double idv = lc_tensor_get(ids, b * L + i);
            if (!(idv >= 0 && idv < m->c.vocab_size)) {
                lc_tensor_free(x);
                free(rows);
                lc_err("text encoder: token id %.0f at position %lld is outside the "
                       "vocabulary [0,%d)",
                       idv, (long long)i + 1, m->c.vocab_size);
                return NULL;
            }
            const float *te = emb_row(m->tok_emb, (int64_t)idv, C, rows);
            const float *pe = emb_row(m->pos_emb, i, C, rows + C);
            float *o = out + (b * L + i) * C;
            for (int64_t c = 0; c < C; c++)
                o[c] = te[c] + pe[c];
        }
    free(rows);
    return x;
}

/* row b's pooling position: see lc_clip_config.eos_token_id */
static int64_t eos_position(const lc_clip_text *m, const lc_tensor *ids, int64_t b)
{
    int64_t L = ids->shape[1], best = 0;
    double bestv = -1;
    for (int64_t i = 0; i < L; i++) {
        double v = lc_tensor_get(ids, b * L + i);
        if (m->c.eos_token_id == 2) {
            if (v > bestv) /* first occurrence of the maximum, as torch.argmax */
                bestv = v, best = i;
        } else if (v == m->c.eos_token_id) {
            return i;
        }
    }
    return best;
}

int lc_clip_text_forward(lc_clip_text *m, const lc_tensor *ids, int clip_skip,
                         lc_tensor **hidden, lc_tensor **pooled)
{
    *hidden = NULL;
    if (pooled)
        *pooled = NULL;
    if (ids->ndim != 2 || ids->shape[1] < 1 || ids->shape[1] > m->c.max_pos || ids->shape[0] < 1)
        return lc_err("text encoder: input ids %s, expected [batch, 1..%d]", LC_SHAPE_STR(ids),
                      m->c.max_pos);
    if (clip_skip < 0 || clip_skip >= m->c.layers)
        return lc_err("text encoder: clip_skip %d out of range [0,%d] for %d layers", clip_skip,
                      m->c.layers - 1, m->c.layers);
    lc_tensor *x = embed(m, ids);
    if (!x)
        return LC_ERR;
    for (int i = 0; i < m->c.layers - clip_skip; i++) {
        if (lc_interrupted()) {
            lc_tensor_free(x);
            return lc_err("interrupted");
        }
        if (attention_block(m, &m->layer[i], x) != LC_OK ||
            mlp_block(m, &m->layer[i], x) != LC_OK) {
            lc_tensor_free(x);
            return lc_err_prefix("text encoder layer %d: ", i);
        }
    }
    lc_tensor *y = lc_layer_norm(x, m->lnf_w, m->lnf_b, m->c.eps);
    lc_tensor_free(x);
    if (!y)
        return LC_ERR;
    if (pooled) {
        int64_t B = ids->shape[0], L = ids->shape[1], C = m->c.hidden;
        int64_t shape[2] = {B, C};
        lc_tensor *p = lc_tensor_new(LC_F32, 2, shape);
        if (!p) {
            lc_tensor_free(y);
            return LC_ERR;
        }
        for (int64_t b = 0; b < B; b++)
            memcpy((float *)lc_tensor_data(p) + b * C,
                   (const float *)lc_tensor_data(y) + (b * L + eos_position(m, ids, b)) * C,
                   (size_t)C * sizeof(float));
        *pooled = p;
    }
    *hidden = y;
    return LC_OK;
}
