/* UNet2DModel (diffusers 0.29): the unconditional UNet of audio diffusion
 * and DDPM image models. Built from unet/config.json; DownBlock2D,
 * AttnDownBlock2D, UpBlock2D, AttnUpBlock2D, UNetMidBlock2D (with or
 * without attention), positional time embedding. Reuses the resnets of
 * unet_blocks.c; its attention is diffusers' Attention with a group norm
 * and a residual connection (the deprecated attention block). */
#ifndef LC_UNET2D_H
#define LC_UNET2D_H

#include "core/tensor.h"
#include "models/weights.h"

#define LC_UNET2D_MAXBLOCKS 8

typedef struct {
    int in_channels, out_channels;
    int sample_h, sample_w;
    int nblocks;
    int block_out_channels[LC_UNET2D_MAXBLOCKS];
    int down_attn[LC_UNET2D_MAXBLOCKS]; /* 1: AttnDownBlock2D */
    int up_attn[LC_UNET2D_MAXBLOCKS];   /* up order; 1: AttnUpBlock2D */
    int layers_per_block;
    int add_attention;                  /* mid-block attention */
    int attention_head_dim;             /* 0: one head of all channels */
    int norm_num_groups, attn_norm_num_groups; /* 0: = norm_num_groups */
    double norm_eps;
    int flip_sin_to_cos;
    double freq_shift;
    int downsample_padding;
    double mid_block_scale_factor;
    int center_input_sample;
} lc_unet2d_config;

/* Parses unet/config.json (UNet2DModel); unsupported options (fourier
 * time embedding, class embeddings, scale_shift, skip/resnet sampling
 * blocks, other activations) are errors naming them. */
int lc_unet2d_config_parse(lc_unet2d_config *c, const char *json, const char *what);

typedef struct lc_unet2d lc_unet2d;

/* Takes (retains) its tensors from w by diffusers names; missing,
 * mis-shaped or unused tensors are errors naming them. */
lc_unet2d *lc_unet2d_new(const lc_unet2d_config *c, lc_weights *w);
void lc_unet2d_free(lc_unet2d *u);
const lc_unet2d_config *lc_unet2d_get_config(const lc_unet2d *u);

/* x [N, in_channels, H, W] (H, W divisible by 2^(nblocks-1)); timesteps a
 * 0-d/1-element tensor or N values. Returns [N, out_channels, H, W] f32. */
lc_tensor *lc_unet2d_forward(lc_unet2d *u, const lc_tensor *x, const lc_tensor *timesteps);

#endif
