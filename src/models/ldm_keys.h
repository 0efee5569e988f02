/* CompVis/ldm single-file checkpoints -> diffusers names, for the VAE
 * (first_stage_model.*) and the text encoder (cond_stage_model.transformer.*
 * for SD 1.x's OpenAI CLIP; cond_stage_model.model.* for SD 2.x's OpenCLIP
 * text tower). The UNet's map lives with the UNet. */
#ifndef LC_LDM_KEYS_H
#define LC_LDM_KEYS_H

#include "weights.h"

/* What a safetensors file holds, by key prefix (counts of tensors). */
typedef struct {
    int unet;        /* model.diffusion_model.* */
    int vae;         /* first_stage_model.* */
    int clip;        /* cond_stage_model.transformer.* */
    int openclip;    /* cond_stage_model.model.* */
    int sdxl;        /* conditioner.embedders.* */
    int diffusers_unet, diffusers_vae, diffusers_clip, ldm_vae_only, taesd;
    int controlnet; /* controlnet_* (diffusers) or control_model.* (ldm) */
    int lora;       /* lora_unet_*, lora_te_*, *.lora_down.* / *.lora_A.* */
    int total;
} lc_ldm_probe;

int lc_ldm_probe_file(const char *path, lc_ldm_probe *p);
/* LC_OK for a single-file SD 1.x/2.x checkpoint; otherwise an error
 * "PATH: not a Stable Diffusion checkpoint: no model.diffusion_model.*
 * tensors (it looks like ...)" naming what the file seems to be. */
int lc_ldm_check_sd(const char *path, const lc_ldm_probe *p);

/* first_stage_model.* of a single file -> AutoencoderKL names */
int lc_ldm_load_vae(lc_weights *w, const char *path);
/* a diffusers vae folder file, accepting the legacy attention names
 * (query/key/value/proj_attn) and 1x1-conv-shaped attention weights */
int lc_vae_load_diffusers(lc_weights *w, const char *path);
/* cond_stage_model.* of a single file -> CLIPTextModel names. *openclip is
 * set for SD 2.x's OpenCLIP tower (GELU; its last layer is dropped, as
 * diffusers does, since SD 2.x conditions on the penultimate layer). */
int lc_ldm_load_clip(lc_weights *w, const char *path, int *openclip);
/* a diffusers text_encoder folder file (drops the position_ids buffer) */
int lc_clip_load_diffusers(lc_weights *w, const char *path);

/* the VAE name translation alone (exposed for tests): `name` without the
 * first_stage_model. prefix; n_up = number of decoder up blocks.
 * Returns 0 to skip, 1 with out written. */
int lc_ldm_vae_key(const char *name, int n_up, char *out, size_t outlen);

/* The inverse: a diffusers AutoencoderKL name -> its ldm name under
 * first_stage_model. (for messages about single-file checkpoints). */
int lc_ldm_vae_name(const char *dname, int n_up, char *out, size_t outlen);
/* number of decoder up blocks of a single file's VAE (0 if none) */
int lc_ldm_vae_levels(const char *path);

#endif
