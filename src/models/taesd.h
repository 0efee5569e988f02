/* TAESD (madebyollin/taesd, MIT): a tiny convolutional autoencoder for SD
 * latents. 64-channel ReLU conv stacks with residual Blocks; the encoder
 * takes RGB in [0,1] and gives *scaled* SD latents (comparable to the
 * AutoencoderKL mean times its scaling factor); the decoder soft-clamps the
 * latent (3 tanh(x/3)) and returns RGB, clamped here to [0,1].
 * Weights keep their nn.Sequential names ("3.conv.0.weight", "7.weight"). */
#ifndef LC_TAESD_H
#define LC_TAESD_H

#include "core/tensor.h"
#include "weights.h"

typedef struct lc_taesd lc_taesd;

/* enc and/or dec may be NULL (that half is then unavailable); tensors are
 * retained, unexpected ones reported. */
lc_taesd *lc_taesd_new(lc_weights *enc, lc_weights *dec);
void lc_taesd_free(lc_taesd *m);
int lc_taesd_latent_channels(const lc_taesd *m);

/* x [N,3,H,W] in [0,1], H and W multiples of 8 -> [N,latent,H/8,W/8] */
lc_tensor *lc_taesd_encode(lc_taesd *m, const lc_tensor *x);
/* z [N,latent,h,w] scaled -> [N,3,8h,8w] in [0,1] */
lc_tensor *lc_taesd_decode(lc_taesd *m, const lc_tensor *z);

#endif
