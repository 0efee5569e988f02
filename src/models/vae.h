/* AutoencoderKL as diffusers builds it for Stable Diffusion: an encoder of
 * ResnetBlock2D + Downsample2D blocks, a mid block (resnet, single-head
 * attention, resnet), GroupNorm+SiLU+conv_out giving moments, quant_conv;
 * and the mirror-image decoder with nearest-x2 upsampling. Weights use
 * diffusers names (encoder.down_blocks.0.resnets.0.conv1.weight,
 * encoder.mid_block.attentions.0.to_q.weight, ...). */
#ifndef LC_VAE_H
#define LC_VAE_H

#include "core/tensor.h"
#include "weights.h"

#define LC_VAE_MAXBLOCKS 8

typedef struct {
    int in_channels, out_channels, latent_channels;
    int nblocks, block_out[LC_VAE_MAXBLOCKS];
    int layers_per_block, groups;
    int use_quant_conv, use_post_quant_conv, mid_attention;
    double scaling_factor, shift_factor; /* shift 0 for SD 1.x/2.x */
} lc_vae_config;

/* from vae/config.json text (missing keys: diffusers' AutoencoderKL
 * defaults, with SD's scaling factor 0.18215) */
int lc_vae_config_parse(lc_vae_config *c, const char *json_text);
/* from tensor shapes of diffusers-named weights */
int lc_vae_config_infer(lc_vae_config *c, lc_weights *w);

typedef struct lc_vae lc_vae;

/* Takes the tensors it needs (retained) and reports unexpected ones. */
lc_vae *lc_vae_new(const lc_vae_config *c, lc_weights *w);
void lc_vae_free(lc_vae *m);
const lc_vae_config *lc_vae_config_of(const lc_vae *m);

/* x [N,3,H,W] in [-1,1] (H, W multiples of 2^(nblocks-1)) -> mean and
 * logvar [N,latent,H/f,W/f] (logvar clamped to [-30,20]); unscaled. */
int lc_vae_encode(lc_vae *m, const lc_tensor *x, lc_tensor **mean, lc_tensor **logvar);
/* z [N,latent,h,w], unscaled -> [N,3,h*f,w*f], raw (about [-1,1]) */
lc_tensor *lc_vae_decode(lc_vae *m, const lc_tensor *z);

/* Tiled decode for large latents: tiles of `tile` x `tile` latent pixels
 * (clipped to the latent) overlapping by `overlap`, decoded one by one and
 * blended in image space with weights that ramp linearly across each
 * overlap (1 inside a tile, falling towards the side that another tile
 * covers), then normalised by the summed weights. tile <= 0 picks 64
 * (512 px), overlap < 0 picks tile / 4. A latent that fits one tile is
 * decoded whole, so the result equals lc_vae_decode exactly. */
lc_tensor *lc_vae_decode_tiled(lc_vae *m, const lc_tensor *z, int tile, int overlap);

#endif
