/* Audio files through libsndfile (WAV, FLAC, OGG/Vorbis and whatever else
 * it reads), resampled with libsoxr's high-quality preset.
 *
 * Samples are f32 [channels, frames]. Integer PCM is scaled the way
 * libsndfile, soundfile and torchaudio do it: s16 k -> k / 32768. */
#ifndef LC_AUDIO_H
#define LC_AUDIO_H

#include "tensor.h"

#define LC_AUDIO_MAX_RATE 768000
#define LC_AUDIO_MAX_CHANNELS 64
#define LC_AUDIO_MAX_SAMPLES ((int64_t)1 << 30) /* frames x channels, before and after resampling */
#define LC_AUDIO_MAXMETA 10

typedef struct {
    int64_t frames;
    int sample_rate;
    int channels;
    char format[64];  /* "WAV", "FLAC", "OGG" ... */
    char subtype[64]; /* "Signed 16 bit PCM", "Vorbis" ... */
    /* string metadata present in the file: title, comment, software,
     * artist, copyright, date, album, license, tracknumber, genre */
    int nmeta;
    char meta_key[LC_AUDIO_MAXMETA][16];
    char *meta_val[LC_AUDIO_MAXMETA]; /* malloc'd; lc_audio_info_clear frees */
} lc_audio_info;

int lc_audio_info_read(const char *path, lc_audio_info *info);
void lc_audio_info_clear(lc_audio_info *info);

/* target_rate 0 keeps the file's rate (returned in *rate_out if not NULL);
 * mono averages the channels into one. */
lc_tensor *lc_audio_load(const char *path, int target_rate, int mono, int *rate_out);

/* Resamples f32 [channels, frames] (any float dtype) from one rate to
 * another; a new tensor of round(frames * to / from) frames. */
lc_tensor *lc_audio_resample(lc_tensor *t, int from_rate, int to_rate);

typedef enum {
    LC_AUDIO_PCM16 = 0, /* default for .wav and .flac */
    LC_AUDIO_PCM24,     /* .wav, .flac */
    LC_AUDIO_FLOAT,     /* 32-bit float, .wav only */
} lc_audio_encoding;

/* Saves [channels, frames] or [frames] to .wav, .flac or .ogg (Vorbis; the
 * encoding is ignored) chosen by extension. Samples are clamped to [-1, 1)
 * for PCM. Metadata keys are the names in lc_audio_info (title, comment,
 * software, ...). Written to a temporary name, then renamed. */
int lc_audio_save(lc_tensor *t, const char *path, int sample_rate, lc_audio_encoding enc,
                  int nmeta, const char *const *meta_keys, const char *const *meta_vals);

#endif
