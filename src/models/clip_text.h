/* CLIP text encoder with transformers' CLIPTextModel semantics: token +
 * position embeddings, pre-LayerNorm transformer layers with a causal mask,
 * q/k/v/out projections with bias, an MLP with quick-GELU or GELU, and a
 * final LayerNorm. Weights use the diffusers/transformers names
 * (text_model.encoder.layers.N.self_attn.q_proj.weight, ...). */
#ifndef LC_CLIP_TEXT_H
#define LC_CLIP_TEXT_H

#include "core/tensor.h"
#include "weights.h"

typedef enum { LC_ACT_QUICK_GELU = 0, LC_ACT_GELU } lc_clip_act;

typedef struct {
    int vocab_size, hidden, intermediate, layers, heads, max_pos;
    double eps;
    lc_clip_act act;
    int eos_token_id; /* 2 (the legacy config value) = pool at argmax(ids) */
} lc_clip_config;

/* From a text_encoder/config.json text; missing keys take CLIP ViT-L/14
 * defaults (transformers' CLIPTextConfig defaults are ViT-B; SD uses the
 * values its config file states, so only sanity defaults matter). */
int lc_clip_config_parse(lc_clip_config *c, const char *json_text);
/* From tensor shapes (single-file checkpoints): heads = hidden / 64 (an
 * error when hidden is not a multiple of 64), act given by the caller
 * (quick_gelu for OpenAI CLIP, gelu for OpenCLIP). */
int lc_clip_config_infer(lc_clip_config *c, lc_weights *w, lc_clip_act act);

typedef struct lc_clip_text lc_clip_text;

/* Takes the tensors it needs from w (retaining them; w may be freed after)
 * and reports unexpected ones. */
lc_clip_text *lc_clip_text_new(const lc_clip_config *c, lc_weights *w);
void lc_clip_text_free(lc_clip_text *m);
const lc_clip_config *lc_clip_text_config(const lc_clip_text *m);

/* ids [B,L] integer (L <= max_pos). clip_skip = k uses hidden_states[-(k+1)]
 * (k = 0: the last layer; A1111's "clip skip 2" is k = 1), followed by the
 * final LayerNorm. Outputs: *hidden [B,L,C]; *pooled [B,C] (may be NULL)
 * = hidden at the EOS position of each row. */
int lc_clip_text_forward(lc_clip_text *m, const lc_tensor *ids, int clip_skip,
                         lc_tensor **hidden, lc_tensor **pooled);

#endif
