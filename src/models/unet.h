/* UNet2DConditionModel (diffusers 0.29 semantics) for the SD 1.x / 2.x
 * family: configured by unet/config.json or inferred from tensor shapes,
 * weights by diffusers names (lc_weights), CompVis/ldm single-file names
 * translated by lc_unet_ldm_key_map. Every attention layer is a hook site
 * named by its diffusers module path (see hooks.h). */
#ifndef LC_UNET_H
#define LC_UNET_H

#include "core/tensor.h"
#include "models/hooks.h"
#include "models/weights.h"

#define LC_UNET_MAXBLOCKS 8

typedef struct {
    int in_channels, out_channels, sample_size;
    int nblocks;                                 /* len(block_out_channels) */
    int block_out_channels[LC_UNET_MAXBLOCKS];
    int down_cross[LC_UNET_MAXBLOCKS];           /* 1: CrossAttnDownBlock2D, 0: DownBlock2D */
    int up_cross[LC_UNET_MAXBLOCKS];             /* up-block order: 1: CrossAttnUpBlock2D */
    int mid_cross;                               /* 1: UNetMidBlock2DCrossAttn, 0: no mid block */
    int layers_per_block[LC_UNET_MAXBLOCKS];     /* down order */
    int heads[LC_UNET_MAXBLOCKS];                /* attention heads per down block (resolved) */
    int transformer_layers[LC_UNET_MAXBLOCKS];   /* down order; mid uses the last */
    int up_transformer_layers[LC_UNET_MAXBLOCKS]; /* up order */
    int cross_attention_dim;
    int use_linear_projection, upcast_attention;
    int flip_sin_to_cos;
    double freq_shift;
    int norm_num_groups;
    double norm_eps;
    int downsample_padding;
    double mid_block_scale_factor;
    int center_input_sample;
    int conv_in_kernel, conv_out_kernel;
    int time_embed_dim;                          /* 4 * block_out_channels[0] unless set */
} lc_unet_config;

/* Parses a diffusers unet/config.json text; unsupported features
 * (class/addition embeddings, SDXL blocks, ...) give an error naming them.
 * `what` names the source in messages. */
int lc_unet_config_parse(lc_unet_config *c, const char *json, const char *what);
/* SD 1.5's UNet (block_out_channels [320,640,1280,1280], 8 heads, context
 * 768, 2 layers per block) */
void lc_unet_config_sd15(lc_unet_config *c);
/* Config from diffusers-named weight shapes. What shapes cannot tell takes
 * SD defaults: 32 groups, eps 1e-5, flip_sin_to_cos, freq_shift 0,
 * sample_size 64; heads: head dim 64 (SD 2.x) when the context dim is
 * 1024, otherwise 8 heads (SD 1.x). */
int lc_unet_config_infer(lc_unet_config *c, lc_weights *w);
/* Same from a single-file checkpoint with CompVis/ldm names under
 * `prefix` (NULL: "model.diffusion_model."). */
int lc_unet_config_from_ldm(lc_unet_config *c, const char *path, const char *prefix);

/* Key map for lc_weights_load(w, path, "model.diffusion_model.", map, ctx):
 * ctx is an lc_unet_ldm_map filled by lc_unet_ldm_map_init from the same
 * file (the translation needs layers_per_block). */
typedef struct {
    int layers_per_block;
} lc_unet_ldm_map;
int lc_unet_ldm_map_init(lc_unet_ldm_map *m, const char *path, const char *prefix);
int lc_unet_ldm_key_map(const char *name, char *out, size_t outlen, void *ctx);
/* one name, for tests and other loaders: 1 mapped, 0 not a UNet key */
int lc_unet_ldm_name(const lc_unet_ldm_map *m, const char *name, char *out, size_t outlen);

typedef struct lc_unet lc_unet;

/* Takes the tensors it needs from w (retaining them; w may be freed
 * afterwards). Missing or mis-shaped tensors are errors naming them; so are
 * tensors in w the model does not use. */
lc_unet *lc_unet_new(const lc_unet_config *c, lc_weights *w);
void lc_unet_free(lc_unet *u);
const lc_unet_config *lc_unet_get_config(const lc_unet *u);

typedef struct {
    /* ControlNet: one residual per skip connection (conv_in output, then
     * every resnet/attention output and downsampler of the down blocks),
     * added before the up blocks take them; NULL = none */
    lc_tensor *const *down_residuals;
    int n_down_residuals;
    const lc_tensor *mid_residual; /* added to the mid block output */
} lc_unet_opts;

/* x [N,C,H,W]; timesteps: a number as 0-d/1-element tensor (broadcast to
 * the batch) or N values (one per sample), any dtype; context [N or 1, L,
 * cross_attention_dim]. Returns the prediction like x. opts may be NULL. */
lc_tensor *lc_unet_forward(lc_unet *u, const lc_tensor *x, const lc_tensor *timesteps,
                           const lc_tensor *context, const lc_unet_opts *opts);

/* number of skip connections (= expected length of down_residuals) */
int lc_unet_num_skips(const lc_unet *u);

/* hook sites (attention layers) and their registry */
int lc_unet_num_sites(const lc_unet *u);
const lc_hook_site *lc_unet_site(const lc_unet *u, int i);
int lc_unet_hook_add(lc_unet *u, const char *pattern, lc_hook_kind kind, lc_hook_fn fn,
                     void *ud, void (*release)(void *));
int lc_unet_hook_remove(lc_unet *u, int id);

/* Deterministic synthetic weights for a config (tests and benchmarks):
 * diffusers names, norm scales 1 + 0.1 n, biases 0.05 n, weights
 * n / sqrt(fan_in), n of mean 0, variance 1 (Irwin-Hall, 4 terms)
 * from a seeded generator, the same for any thread count. */
lc_weights *lc_unet_random_weights(const lc_unet_config *c, uint64_t seed);

#endif
