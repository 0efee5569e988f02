/* Building blocks of the diffusers UNets, shared by UNet2DConditionModel
 * and ControlNetModel (which reuses the time embedding, conv_in, the down
 * blocks and the mid block): ResnetBlock2D, Transformer2DModel with
 * BasicTransformerBlocks, Downsample2D, Upsample2D, the down/mid/up blocks
 * and the timestep embedding. Each module keeps its diffusers path. */
#ifndef LC_UNET_BLOCKS_H
#define LC_UNET_BLOCKS_H

#include "models/hooks.h"
#include "models/kv_cache.h"
#include "models/unet.h"
#include "models/weights.h"

/* ---- building: takes tensors by name from a weights object, or (random
 * mode) creates them into one ---- */

typedef struct {
    lc_weights *w;
    int random;     /* create the tensors instead of taking them */
    uint64_t state; /* generator for random mode */
    int failed;     /* first error kept in lc_errmsg() */
} lc_ubuild;

/* Returns a retained tensor (caller frees) or NULL with b->failed set.
 * kind: 'w' weight (scaled by 1/sqrt(fan_in)), 'b' bias, 'n' norm scale,
 * used only in random mode. */
lc_tensor *lc_ubuild_take(lc_ubuild *b, char kind, int ndim, const int64_t *shape,
                          const char *fmt, ...) LC_PRINTF(5, 6);

/* scale * z + shift with z approximately standard normal (the generator of
 * random mode), stored in dt (f32, f16, bf16); same values for any thread
 * count. For synthetic checkpoints (tools/make_checkpoint.lua). */
lc_tensor *lc_random_weights(uint64_t seed, float scale, float shift, lc_dtype dt, int ndim,
                             const int64_t *shape);

/* ---- modules ---- */

typedef struct {
    lc_tensor *w, *b; /* b may be NULL */
} lc_ulinear;

typedef struct {
    char name[96]; /* diffusers module path, for messages */
    int cin, cout, groups;
    double eps, out_scale;
    lc_ulinear norm1, conv1, temb, norm2, conv2, shortcut; /* shortcut.w NULL if none */
} lc_resnet;

typedef struct {
    lc_hook_site site; /* name = module path, e.g. "...transformer_blocks.0.attn1" */
    int heads, dim_head, inner;
    lc_ulinear q, k, v, out;
} lc_attn;

typedef struct {
    lc_ulinear norm1, norm2, norm3, ff_in, ff_out;
    lc_attn attn1, attn2;
} lc_tblock;

typedef struct {
    char name[96];
    int channels, inner, linear, groups, ntb;
    lc_ulinear norm, proj_in, proj_out;
    lc_tblock *tb;
} lc_transformer;

typedef struct {
    int nres;
    lc_resnet *res;
    lc_transformer *attn; /* NULL or nres entries */
    int has_sampler;      /* downsampler / upsampler */
    lc_ulinear sampler;
    int down_padding;
} lc_ublock;

/* the state one forward threads through the blocks */
typedef struct {
    const lc_tensor *temb_act; /* SiLU(time embedding) [N, T] */
    const lc_tensor *context;  /* [N, L, D] (may be an expanded view) */
    const lc_hooks *hooks;     /* NULL when no hook is registered */
    lc_kv_cache *kv;           /* cross-attention k/v across forwards, or NULL */
} lc_ufwd;

/* ---- build (prefix = diffusers path of the module) ---- */
int lc_resnet_build(lc_ubuild *b, lc_resnet *r, const char *prefix, int cin, int cout,
                    int temb_dim, int groups, double eps, double out_scale);
int lc_transformer_build(lc_ubuild *b, lc_transformer *t, const char *prefix, int channels,
                         int heads, int layers, int context_dim, int linear, int groups);
int lc_down_block_build(lc_ubuild *b, lc_ublock *blk, const lc_unet_config *c, int i);
int lc_mid_block_build(lc_ubuild *b, lc_ublock *blk, const lc_unet_config *c);
int lc_up_block_build(lc_ubuild *b, lc_ublock *blk, const lc_unet_config *c, int i);
void lc_ublock_free(lc_ublock *blk);

/* appends pointers to the block's attention sites to sites (NULL: count) */
int lc_ublock_sites(lc_ublock *blk, lc_hook_site **sites);

/* ---- forward ---- */
lc_tensor *lc_resnet_forward(const lc_ufwd *f, const lc_resnet *r, const lc_tensor *x);
lc_tensor *lc_transformer_forward(const lc_ufwd *f, const lc_transformer *t, const lc_tensor *x);
/* Down block: appends its skip outputs (new refs) to skips[*nskips...]. */
lc_tensor *lc_down_block_forward(const lc_ufwd *f, const lc_ublock *blk, lc_tensor *x,
                                 lc_tensor **skips, int *nskips);
lc_tensor *lc_mid_block_forward(const lc_ufwd *f, const lc_ublock *blk, lc_tensor *x);
/* Up block: consumes (frees) the last nres skips; out_h/out_w > 0 gives the
 * upsampler an explicit size. */
lc_tensor *lc_up_block_forward(const lc_ufwd *f, const lc_ublock *blk, lc_tensor *x,
                               lc_tensor **skips, int *nskips, int64_t out_h, int64_t out_w);

/* Sinusoidal timestep embedding as diffusers' get_timestep_embedding
 * (max_period 10000, scale 1): t [N] -> [N, dim], computed in f32. */
lc_tensor *lc_timestep_embedding(const lc_tensor *t, int dim, int flip_sin_to_cos,
                                 double freq_shift);
/* SiLU(linear_2(SiLU(linear_1(sinusoidal(t))))) [n, T]: the time embedding
 * as every resnet consumes it (timesteps as lc_timesteps_for_batch takes
 * them; sinusoid width block_out_channels[0]) */
lc_tensor *lc_time_embedding_act(const lc_tensor *timesteps, int64_t n, const lc_unet_config *c,
                                 const lc_ulinear *linear_1, const lc_ulinear *linear_2);
/* concatenation along dim 1 of two tensors equal elsewhere (f32 out) */
lc_tensor *lc_ucat1(const lc_tensor *a, const lc_tensor *b);
/* timesteps (0-d, [1] or [n]) as an f32 tensor [n] */
lc_tensor *lc_timesteps_for_batch(const lc_tensor *t, int64_t n);

#endif
