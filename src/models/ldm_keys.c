/* CompVis/ldm -> diffusers key translation for the VAE and the CLIP text
 * encoder, following the module layouts of ldm's Encoder/Decoder and of
 * open_clip's text transformer (see ldm_keys.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/safetensors.h"
#include "ldm_keys.h"

static int starts(const char *s, const char *p)
{
    return strncmp(s, p, strlen(p)) == 0;
}

int lc_ldm_probe_file(const char *path, lc_ldm_probe *p)
{
    memset(p, 0, sizeof *p);
    lc_st_file *f = lc_st_open(path);
    if (!f)
        return LC_ERR;
    int n = lc_st_count(f);
    p->total = n;
    for (int i = 0; i < n; i++) {
        const char *k = lc_st_name(f, i);
        p->unet += starts(k, "model.diffusion_model.");
        p->vae += starts(k, "first_stage_model.");
        p->clip += starts(k, "cond_stage_model.transformer.");
        p->openclip += starts(k, "cond_stage_model.model.");
        p->sdxl += starts(k, "conditioner.embedders.");
        p->diffusers_unet += starts(k, "down_blocks.") || starts(k, "mid_block.");
        p->diffusers_vae += starts(k, "encoder.down_blocks.") || starts(k, "decoder.up_blocks.");
        p->ldm_vae_only += starts(k, "encoder.down.") || starts(k, "decoder.up.");
        p->diffusers_clip += starts(k, "text_model.");
        p->taesd += strstr(k, ".conv.4.weight") != NULL && k[0] >= '0' && k[0] <= '9';
        p->controlnet += starts(k, "controlnet_") || starts(k, "control_model.");
        p->lora += starts(k, "lora_") || strstr(k, ".lora_down.") || strstr(k, ".lora_A.") ||
                   strstr(k, ".lora_up.") || strstr(k, ".lora_B.");
    }
    lc_st_close(f);
    return LC_OK;
}

int lc_ldm_check_sd(const char *path, const lc_ldm_probe *p)
{
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    if (p->unet && p->vae && (p->clip || p->openclip))
        return LC_OK;
    if (p->unet) {
        return lc_err("%s: incomplete Stable Diffusion checkpoint: has model.diffusion_model.* "
                      "but no %s tensors",
                      base, !p->vae ? "first_stage_model.* (VAE)"
                                    : "cond_stage_model.* (text encoder)");
    }
    const char *what = NULL;
    if (p->sdxl)
        what = "an SDXL checkpoint (conditioner.embedders.*), which is not supported";
    else if (p->lora)
        what = "a LoRA (low-rank weight deltas), not a full model";
    else if (p->controlnet)
        what = "a ControlNet; load it with the pipeline it conditions";
    else if (p->diffusers_unet)
        what = "a diffusers UNet-only file (down_blocks.*); load the model folder instead";
    else if (p->diffusers_vae || p->ldm_vae_only || (p->vae && !p->unet))
        what = "a VAE-only file";
    else if (p->diffusers_clip || p->clip || p->openclip)
        what = "a text-encoder-only file";
    else if (p->taesd)
        what = "a TAESD tiny autoencoder";
    if (what)
        return lc_err("%s: not a Stable Diffusion checkpoint: no model.diffusion_model.* "
                      "tensors (it looks like %s)",
                      base, what);
    return lc_err("%s: not a Stable Diffusion checkpoint: no model.diffusion_model.*, "
                  "first_stage_model.* or cond_stage_model.* tensors among its %d tensors",
                  base, p->total);
}

/* ---- VAE ---- */

/* parses "<int>." at s; returns chars consumed or 0 */
static int num_dot(const char *s, int *v)
{
    char *e;
    long x = strtol(s, &e, 10);
    if (e == s || *e != '.' || x < 0 || x > 1000)
        return 0;
    *v = (int)x;
    return (int)(e - s) + 1;
}

/* resnet inner names: ldm's nin_shortcut is diffusers' conv_shortcut */
static void resnet_key(char *out, size_t outlen, const char *head, const char *rest)
{
    if (starts(rest, "nin_shortcut."))
        snprintf(out, outlen, "%sconv_shortcut.%s", head, rest + strlen("nin_shortcut."));
    else
        snprintf(out, outlen, "%s%s", head, rest);
}

int lc_ldm_vae_key(const char *name, int n_up, char *out, size_t outlen)
{
    int i, j, k;
    if (starts(name, "loss."))
        return 0; /* training-only discriminator/LPIPS weights */
    const char *coder = starts(name, "encoder.") ? "encoder" : starts(name, "decoder.") ? "decoder"
                                                                                         : NULL;
    if (!coder) {
        snprintf(out, outlen, "%s", name);
        return 1;
    }
    const char *r = name + 8;
    if (starts(r, "norm_out.")) {
        snprintf(out, outlen, "%s.conv_norm_out.%s", coder, r + 9);
    } else if (starts(r, "down.") && (k = num_dot(r + 5, &i))) {
        const char *s = r + 5 + k;
        if (starts(s, "block.") && (k = num_dot(s + 6, &j))) {
            char head[96];
            snprintf(head, sizeof head, "%s.down_blocks.%d.resnets.%d.", coder, i, j);
            resnet_key(out, outlen, head, s + 6 + k);
        }
        else if (starts(s, "downsample."))
            snprintf(out, outlen, "%s.down_blocks.%d.downsamplers.0.%s", coder, i, s + 11);
        else
            snprintf(out, outlen, "%s", name);
    } else if (starts(r, "up.") && (k = num_dot(r + 3, &i))) {
        const char *s = r + 3 + k;
        int b = n_up - 1 - i; /* ldm counts up blocks from the lowest resolution */
        if (starts(s, "block.") && (k = num_dot(s + 6, &j))) {
            char head[96];
            snprintf(head, sizeof head, "%s.up_blocks.%d.resnets.%d.", coder, b, j);
            resnet_key(out, outlen, head, s + 6 + k);
        }
        else if (starts(s, "upsample."))
            snprintf(out, outlen, "%s.up_blocks.%d.upsamplers.0.%s", coder, b, s + 9);
        else
            snprintf(out, outlen, "%s", name);
    } else if (starts(r, "mid.block_1.") || starts(r, "mid.block_2.")) {
        char head[96];
        snprintf(head, sizeof head, "%s.mid_block.resnets.%d.", coder, r[10] - '1');
        resnet_key(out, outlen, head, r + 12);
    } else if (starts(r, "mid.attn_1.")) {
        const char *s = r + 11;
        static const char *from[] = {"norm.", "q.", "k.", "v.", "proj_out."};
        static const char *to[] = {"group_norm.", "to_q.", "to_k.", "to_v.", "to_out.0."};
        for (int t = 0; t < 5; t++)
            if (starts(s, from[t])) {
                snprintf(out, outlen, "%s.mid_block.attentions.0.%s%s", coder, to[t],
                         s + strlen(from[t]));
                return 1;
            }
        snprintf(out, outlen, "%s", name);
    } else {
        snprintf(out, outlen, "%s", name);
    }
    return 1;
}

int lc_ldm_vae_name(const char *dname, int n_up, char *out, size_t outlen)
{
    const char *coder = starts(dname, "encoder.") ? "encoder" : starts(dname, "decoder.") ? "decoder"
                                                                                           : NULL;
    int i, j, k;
    char head[96];
    if (!coder)
        return snprintf(out, outlen, "first_stage_model.%s", dname), 1;
    const char *r = dname + 8;
    if (starts(r, "conv_norm_out.")) {
        snprintf(out, outlen, "first_stage_model.%s.norm_out.%s", coder, r + 14);
    } else if ((starts(r, "down_blocks.") && (k = num_dot(r + 12, &i))) ||
               (starts(r, "up_blocks.") && (k = num_dot(r + 10, &i)))) {
        int up = r[0] == 'u';
        const char *s = r + (up ? 10 : 12) + k;
        int level = up ? n_up - 1 - i : i;
        if (starts(s, "resnets.") && (k = num_dot(s + 8, &j))) {
            snprintf(head, sizeof head, "first_stage_model.%s.%s.%d.block.%d.", coder,
                     up ? "up" : "down", level, j);
            const char *rest = s + 8 + k;
            if (starts(rest, "conv_shortcut."))
                snprintf(out, outlen, "%snin_shortcut.%s", head, rest + 14);
            else
                snprintf(out, outlen, "%s%s", head, rest);
        } else if (starts(s, up ? "upsamplers.0." : "downsamplers.0.")) {
            snprintf(out, outlen, "first_stage_model.%s.%s.%d.%s.%s", coder, up ? "up" : "down",
                     level, up ? "upsample" : "downsample", s + (up ? 13 : 15));
        } else {
            snprintf(out, outlen, "first_stage_model.%s", dname);
        }
    } else if (starts(r, "mid_block.resnets.") && (k = num_dot(r + 18, &i))) {
        const char *rest = r + 18 + k;
        snprintf(head, sizeof head, "first_stage_model.%s.mid.block_%d.", coder, i + 1);
        if (starts(rest, "conv_shortcut."))
            snprintf(out, outlen, "%snin_shortcut.%s", head, rest + 14);
        else
            snprintf(out, outlen, "%s%s", head, rest);
    } else if (starts(r, "mid_block.attentions.0.")) {
        const char *s = r + 23;
        static const char *from[] = {"group_norm.", "to_q.", "to_k.", "to_v.", "to_out.0."};
        static const char *to[] = {"norm.", "q.", "k.", "v.", "proj_out."};
        snprintf(out, outlen, "first_stage_model.%s", dname);
        for (int t = 0; t < 5; t++)
            if (starts(s, from[t])) {
                snprintf(out, outlen, "first_stage_model.%s.mid.attn_1.%s%s", coder, to[t],
                         s + strlen(from[t]));
                break;
            }
    } else {
        snprintf(out, outlen, "first_stage_model.%s", dname);
    }
    return 1;
}

int lc_ldm_vae_levels(const char *path)
{
    lc_st_file *f = lc_st_open(path);
    if (!f)
        return 0;
    int n_up = 0, i;
    for (int t = 0; t < lc_st_count(f); t++) {
        const char *k = lc_st_name(f, t);
        if (starts(k, "first_stage_model.decoder.up.") && num_dot(k + 29, &i) && i + 1 > n_up)
            n_up = i + 1;
    }
    lc_st_close(f);
    return n_up;
}

static int vae_map(const char *name, char *out, size_t outlen, void *ctx)
{
    return lc_ldm_vae_key(name, *(const int *)ctx, out, outlen);
}

/* old diffusers attention names (AttentionBlock before 0.14) */
static int vae_legacy_map(const char *name, char *out, size_t outlen, void *ctx)
{
    (void)ctx;
    static const char *from[] = {".attentions.0.query.", ".attentions.0.key.",
                                 ".attentions.0.value.", ".attentions.0.proj_attn."};
    static const char *to[] = {".attentions.0.to_q.", ".attentions.0.to_k.",
                               ".attentions.0.to_v.", ".attentions.0.to_out.0."};
    for (int t = 0; t < 4; t++) {
        const char *p = strstr(name, from[t]);
        if (p) {
            snprintf(out, outlen, "%.*s%s%s", (int)(p - name), name, to[t], p + strlen(from[t]));
            return 1;
        }
    }
    snprintf(out, outlen, "%s", name);
    return 1;
}

/* ldm (and some converted files) store the attention projections as 1x1
 * convs [C,C,1,1]; the model wants linear weights [C,C] */
static int squeeze_attention(lc_weights *w)
{
    static const char *coders[] = {"encoder", "decoder"};
    static const char *proj[] = {"to_q", "to_k", "to_v", "to_out.0"};
    char name[128];
    for (int c = 0; c < 2; c++)
        for (int p = 0; p < 4; p++) {
            snprintf(name, sizeof name, "%s.mid_block.attentions.0.%s.weight", coders[c], proj[p]);
            lc_tensor *t = lc_weights_get(w, name);
            if (t && t->ndim == 4 && t->shape[2] == 1 && t->shape[3] == 1) {
                lc_tensor *v = lc_tensor_view(t, 2, t->shape);
                if (!v || lc_weights_put(w, name, v) != LC_OK)
                    return LC_ERR;
            }
        }
    return LC_OK;
}

int lc_ldm_load_vae(lc_weights *w, const char *path)
{
    int n_up = lc_ldm_vae_levels(path);
    if (lc_weights_load(w, path, "first_stage_model.", vae_map, &n_up) != LC_OK)
        return LC_ERR;
    return squeeze_attention(w);
}

int lc_vae_load_diffusers(lc_weights *w, const char *path)
{
    if (lc_weights_load(w, path, NULL, vae_legacy_map, NULL) != LC_OK)
        return LC_ERR;
    return squeeze_attention(w);
}

/* ---- CLIP ---- */

static int clip_map(const char *name, char *out, size_t outlen, void *ctx)
{
    (void)ctx;
    if (strstr(name, "position_ids"))
        return 0; /* a buffer (0..76), not a weight */
    if (starts(name, "text_model."))
        snprintf(out, outlen, "%s", name);
    else /* transformers before 4.x had no text_model level */
        snprintf(out, outlen, "text_model.%s", name);
    return 1;
}

int lc_clip_load_diffusers(lc_weights *w, const char *path)
{
    return lc_weights_load(w, path, NULL, clip_map, NULL);
}

static int put_named(lc_weights *w, lc_tensor *t, const char *fmt, int layer, const char *what)
{
    char name[160];
    snprintf(name, sizeof name, fmt, layer, what);
    return lc_weights_put(w, name, t);
}

/* open_clip text tower: resblocks.N.{ln_1,attn.in_proj_*,attn.out_proj,
 * ln_2,mlp.c_fc,mlp.c_proj}, token_embedding, positional_embedding,
 * ln_final */
static int load_openclip(lc_weights *w, lc_st_file *f)
{
    const char *P = "cond_stage_model.model.";
    size_t pl = strlen(P);
    int n = lc_st_count(f), nlayers = 0, li;
    for (int t = 0; t < n; t++) {
        const char *k = lc_st_name(f, t);
        if (starts(k, P) && starts(k + pl, "transformer.resblocks.") &&
            num_dot(k + pl + 22, &li) && li + 1 > nlayers)
            nlayers = li + 1;
    }
    for (int t = 0; t < n; t++) {
        const char *full = lc_st_name(f, t);
        if (!starts(full, P))
            continue;
        const char *k = full + pl;
        if (starts(k, "visual.") || starts(k, "text_projection") || starts(k, "logit_scale") ||
            starts(k, "attn_mask"))
            continue;
        lc_tensor *x = lc_st_get_index(f, t);
        if (!x)
            return LC_ERR;
        int rc = LC_OK, used = 1;
        if (strcmp(k, "token_embedding.weight") == 0) {
            rc = lc_weights_put(w, "text_model.embeddings.token_embedding.weight", x);
        } else if (strcmp(k, "positional_embedding") == 0) {
            rc = lc_weights_put(w, "text_model.embeddings.position_embedding.weight", x);
        } else if (starts(k, "ln_final.")) {
            char name[96];
            snprintf(name, sizeof name, "text_model.final_layer_norm.%s", k + 9);
            rc = lc_weights_put(w, name, x);
        } else if (starts(k, "transformer.resblocks.") && num_dot(k + 22, &li)) {
            int c = num_dot(k + 22, &li);
            const char *s = k + 22 + c;
            const char *L = "text_model.encoder.layers.%d.%s";
            if (li == nlayers - 1) {
                /* diffusers drops the last layer: SD 2.x uses the penultimate */
                lc_tensor_free(x);
                continue;
            }
            static const char *from[] = {"ln_1.", "ln_2.", "mlp.c_fc.", "mlp.c_proj.",
                                         "attn.out_proj."};
            static const char *to[] = {"layer_norm1.", "layer_norm2.", "mlp.fc1.", "mlp.fc2.",
                                       "self_attn.out_proj."};
            used = 0;
            for (int m = 0; m < 5 && !used; m++)
                if (starts(s, from[m])) {
                    char what[64];
                    snprintf(what, sizeof what, "%s%s", to[m], s + strlen(from[m]));
                    rc = put_named(w, x, L, li, what);
                    used = 1;
                }
            if (!used && (strcmp(s, "attn.in_proj_weight") == 0 ||
                          strcmp(s, "attn.in_proj_bias") == 0)) {
                /* [3C, ...] = q, k, v stacked */
                int isw = s[13] == 'w';
                if (x->shape[0] % 3) {
                    lc_tensor_free(x);
                    return lc_err("%s: shape %s, expected [3*C,...]", full, LC_SHAPE_STR(x));
                }
                int64_t C = x->shape[0] / 3;
                static const char *qkv[] = {"q", "k", "v"};
                for (int q = 0; q < 3 && rc == LC_OK; q++) {
                    char what[64];
                    snprintf(what, sizeof what, "self_attn.%s_proj.%s", qkv[q],
                             isw ? "weight" : "bias");
                    rc = put_named(w, lc_tensor_narrow(x, 0, q * C, C), L, li, what);
                }
                lc_tensor_free(x);
                used = 1;
            }
            if (!used) /* keep it under its own name: reported as unexpected */
                rc = lc_weights_put(w, full, x);
        } else {
            rc = lc_weights_put(w, full, x);
        }
        if (rc != LC_OK)
            return LC_ERR;
    }
    return LC_OK;
}

int lc_ldm_load_clip(lc_weights *w, const char *path, int *openclip)
{
    lc_st_file *f = lc_st_open(path);
    if (!f)
        return LC_ERR;
    int oc = 0;
    for (int t = 0; t < lc_st_count(f) && !oc; t++)
        oc = starts(lc_st_name(f, t), "cond_stage_model.model.");
    *openclip = oc;
    int rc;
    if (oc) {
        rc = load_openclip(w, f);
        if (rc != LC_OK)
            lc_err_prefix("%s: ", path);
        lc_st_close(f);
    } else {
        lc_st_close(f);
        rc = lc_weights_load(w, path, "cond_stage_model.transformer.", clip_map, NULL);
    }
    return rc;
}
