/* ControlNetModel (diffusers 0.29 semantics) for the SD 1.x / 2.x family:
 * the conditioning embedding of the control image, a copy of the UNet
 * encoder (conv_in, time embedding, down blocks, mid block; built with the
 * UNet's own blocks, unet_blocks.h) and the zero convolutions that turn
 * every skip connection and the mid block output into the residuals the
 * UNet adds (lc_unet_opts). Weights by diffusers names; the original
 * ControlNet releases' single files (control_model.input_hint_block,
 * zero_convs, middle_block_out, input_blocks, middle_block, time_embed)
 * are translated by lc_controlnet_ldm_name. */
#ifndef LC_CONTROLNET_H
#define LC_CONTROLNET_H

#include "core/tensor.h"
#include "models/unet.h"
#include "models/weights.h"

#define LC_CONTROLNET_MAXCOND 8

typedef struct {
    lc_unet_config unet;  /* the encoder (up-block fields unused) */
    int conditioning_channels;                   /* control image channels (3) */
    int ncond;                                   /* len(conditioning_embedding_out_channels) */
    int cond_channels[LC_CONTROLNET_MAXCOND];
    int bgr;                                     /* controlnet_conditioning_channel_order "bgr" */
    int global_pool;                             /* global_pool_conditions */
} lc_controlnet_config;

/* Parses a diffusers controlnet/config.json. A _class_name other than
 * ControlNetModel gives "not a ControlNet: ...". */
int lc_controlnet_config_parse(lc_controlnet_config *c, const char *json, const char *what);
/* Config from diffusers-named weight shapes; heads as lc_unet_config_infer
 * (8 heads, or head dim 64 when the context is 1024 wide). */
int lc_controlnet_config_infer(lc_controlnet_config *c, lc_weights *w);

/* Original ControlNet names (after the prefix, e.g. "control_model.") ->
 * diffusers names. hint_last is the index of the input_hint_block's last
 * conv (14 for the released models). 1 mapped, 0 not a ControlNet key. */
typedef struct {
    lc_unet_ldm_map unet;
    int hint_last;
} lc_controlnet_ldm_map;
int lc_controlnet_ldm_name(const lc_controlnet_ldm_map *m, const char *name, char *out,
                           size_t outlen);

typedef struct lc_controlnet lc_controlnet;

/* Takes the tensors it needs from w (retained; w may be freed). Missing,
 * mis-shaped and unused tensors are errors naming them. */
lc_controlnet *lc_controlnet_new(const lc_controlnet_config *c, lc_weights *w);
/* A diffusers .safetensors or a single file with original names under any
 * prefix (found from its input_hint_block). config_json NULL: inferred
 * from shapes. A file that holds no conditioning embedding is reported as
 * "not a ControlNet: PATH ...". */
lc_controlnet *lc_controlnet_load_file(const char *path, const char *config_json);
void lc_controlnet_free(lc_controlnet *cn);
const lc_controlnet_config *lc_controlnet_get_config(const lc_controlnet *cn);
/* residuals it returns (= the UNet's lc_unet_num_skips) */
int lc_controlnet_num_skips(const lc_controlnet *cn);

/* x [N,C,h,w]; timesteps as lc_unet_forward; context [N or 1, L, D];
 * cond [N or 1, conditioning_channels, h*f, w*f] in [0,1] with f =
 * 2^(ncond-1) (8 for SD). Writes num_skips new tensors to down[] and one
 * to *mid, each multiplied by `scale` (guess_mode: by scale times
 * logspace(-1, 0, num_skips + 1), the last for the mid block, as
 * diffusers). */
int lc_controlnet_forward(lc_controlnet *cn, const lc_tensor *x, const lc_tensor *timesteps,
                          const lc_tensor *context, const lc_tensor *cond, double scale,
                          int guess_mode, lc_tensor **down, lc_tensor **mid);

#endif
