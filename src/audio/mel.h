/* Mel spectrogram images as teticio's audio-diffusion Mel class (diffusers
 * pipelines/deprecated/audio_diffusion/mel.py) with librosa 0.10 semantics:
 * audio slices of x_res*hop_length - 1 samples -> centred STFT (periodic
 * Hann, zero padding) -> power -> Slaney mel filterbank -> power_to_db
 * relative to the maximum with top_db -> 8-bit image (rows = mel bins from
 * low to high, columns = frames); and back: image -> dB -> power -> mel
 * pseudo-inverse by non-negative least squares (librosa's mel_to_stft) ->
 * Griffin-Lim (librosa's, momentum 0.99).
 *
 * FFTs are FFTW's single-precision transforms; everything around them is
 * computed in double. */
#ifndef LC_MEL_H
#define LC_MEL_H

#include "core/rng.h"
#include "core/tensor.h"

typedef struct {
    int x_res, y_res;  /* image width (frames) and height (mel bins) */
    int sample_rate;
    int n_fft, hop_length;
    double top_db;
    int n_iter;        /* Griffin-Lim iterations */
} lc_mel_config;

/* teticio's defaults: 256x256, 22050 Hz, n_fft 2048, hop 512, top_db 80,
 * 32 iterations */
void lc_mel_config_default(lc_mel_config *c);
/* rejects sizes the transforms cannot take, naming the field */
int lc_mel_config_check(const lc_mel_config *c);
/* samples in one slice: x_res * hop_length - 1 */
int64_t lc_mel_slice_size(const lc_mel_config *c);

/* Slaney mel scale (librosa hz_to_mel / mel_to_hz with htk=False) */
double lc_mel_from_hz(double hz);
double lc_mel_to_hz(double mel);

/* librosa.filters.mel(sr, n_fft, n_mels, fmin, fmax, htk=False,
 * norm='slaney') as f32 [n_mels, 1 + n_fft/2] (f32 rounding where librosa
 * rounds: the triangle, then the normalised weight) */
lc_tensor *lc_mel_filterbank(int sample_rate, int n_fft, int n_mels, double fmin, double fmax);

/* power mel spectrogram of a 1-D slice (any length; frames = 1 +
 * len/hop): f32 [y_res, frames] */
lc_tensor *lc_mel_power(const lc_mel_config *c, const lc_tensor *slice);
/* power_to_db(S, ref=max, amin=1e-10, top_db): f32 like S */
lc_tensor *lc_mel_power_to_db(const lc_tensor *S, double top_db);
/* u8 image of a dB spectrogram: ((log_S + top_db) * 255 / top_db)
 * clipped to [0, 255], + 0.5, truncated */
lc_tensor *lc_mel_db_to_image(const lc_tensor *log_S, double top_db);
/* the three above: slice -> u8 [y_res, frames] */
lc_tensor *lc_mel_image(const lc_mel_config *c, const lc_tensor *slice);

/* u8 (or float 0..255) image [y_res, W] -> power f64 [y_res, W]:
 * 10^((u8 * top_db / 255 - top_db) / 10) */
lc_tensor *lc_mel_image_to_power(const lc_mel_config *c, const lc_tensor *image);

/* librosa.feature.inverse.mel_to_stft(power=2): sqrt of the non-negative
 * least-squares solution of filterbank @ X = S, from librosa's start
 * (pinv(filterbank) @ S clipped at 0), by accelerated projected gradient.
 * Returns f64 [1 + n_fft/2, W]. The problem is underdetermined: from the
 * same start a gradient method stays in the same affine set, so it lands
 * near librosa's L-BFGS-B minimiser, not necessarily on it. */
lc_tensor *lc_mel_to_stft_mag(const lc_mel_config *c, const lc_tensor *S);

typedef enum {
    LC_GL_RANDOM, /* phases 2*pi*U[0,1) from a generator (torch.rand order) */
    LC_GL_ZERO,   /* all phases 0 (librosa init=None) */
    LC_GL_GIVEN,  /* unit phasors given as real/imag tensors [F, W] */
} lc_gl_init;

/* librosa.griffinlim(mag, n_iter, hop, window='hann', center=True,
 * momentum=0.99, pad_mode='constant', length=None): mag [1 + n_fft/2, W]
 * -> f32 audio [hop * (W - 1)]. g for LC_GL_RANDOM; re/im for LC_GL_GIVEN. */
lc_tensor *lc_griffin_lim(const lc_mel_config *c, const lc_tensor *mag, int n_iter,
                          lc_gl_init init, lc_generator *g, const lc_tensor *re,
                          const lc_tensor *im);

/* whole inverse: image -> power -> magnitudes -> Griffin-Lim (c->n_iter) */
lc_tensor *lc_mel_image_to_audio(const lc_mel_config *c, const lc_tensor *image,
                                 lc_gl_init init, lc_generator *g, const lc_tensor *re,
                                 const lc_tensor *im);

#endif
