/* Audio I/O: libsndfile for the containers and codecs, libsoxr for sample
 * rate conversion. PCM conversion on write is done here (k = round(x *
 * 32768), clamped) rather than by libsndfile, whose float->short scale
 * (32767) does not invert its short->float scale (1/32768): with ours a
 * value k/32768 survives a round trip exactly. */
#include "audio.h"

#include <math.h>
#include <sndfile.h>
#include <soxr.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fileio.h"

#define CHUNK_FRAMES 65536

static const struct {
    const char *name;
    int id;
} str_ids[] = {
    {"title", SF_STR_TITLE},     {"comment", SF_STR_COMMENT},
    {"software", SF_STR_SOFTWARE}, {"artist", SF_STR_ARTIST},
    {"copyright", SF_STR_COPYRIGHT}, {"date", SF_STR_DATE},
    {"album", SF_STR_ALBUM},     {"license", SF_STR_LICENSE},
    {"tracknumber", SF_STR_TRACKNUMBER}, {"genre", SF_STR_GENRE},
};
#define NSTR ((int)(sizeof str_ids / sizeof str_ids[0]))

static const struct {
    int major;
    const char *name;
} major_names[] = {
    {SF_FORMAT_WAV, "WAV"},   {SF_FORMAT_FLAC, "FLAC"}, {SF_FORMAT_OGG, "OGG"},
    {SF_FORMAT_AIFF, "AIFF"}, {SF_FORMAT_AU, "AU"},     {SF_FORMAT_W64, "W64"},
    {SF_FORMAT_RF64, "RF64"}, {SF_FORMAT_CAF, "CAF"},   {SF_FORMAT_WAVEX, "WAVEX"},
};

static int validate_info(const char *path, const SF_INFO *si)
{
    if (si->frames <= 0)
        return lc_err("%s: no audio frames (empty file)", path);
    if (si->samplerate < 1 || si->samplerate > LC_AUDIO_MAX_RATE)
        return lc_err("%s: sample rate %d Hz is out of range (1 to %d)", path, si->samplerate,
                      LC_AUDIO_MAX_RATE);
    if (si->channels < 1 || si->channels > LC_AUDIO_MAX_CHANNELS)
        return lc_err("%s: %d channels (1 to %d supported)", path, si->channels,
                      LC_AUDIO_MAX_CHANNELS);
    if (si->frames > LC_AUDIO_MAX_SAMPLES / si->channels)
        return lc_err("%s: %lld frames x %d channels is too long (limit %lld samples)", path,
                      (long long)si->frames, si->channels, (long long)LC_AUDIO_MAX_SAMPLES);
    return LC_OK;
}

static SNDFILE *open_read(const char *path, SF_INFO *si)
{
    memset(si, 0, sizeof *si);
    SNDFILE *sf = sf_open(path, SFM_READ, si);
    if (!sf) {
        lc_err("%s: cannot read audio: %s", path, sf_strerror(NULL));
        return NULL;
    }
    if (validate_info(path, si) != LC_OK) {
        sf_close(sf);
        return NULL;
    }
    return sf;
}

void lc_audio_info_clear(lc_audio_info *info)
{
    for (int i = 0; i < info->nmeta; i++)
        free(info->meta_val[i]);
    memset(info, 0, sizeof *info);
}

int lc_audio_info_read(const char *path, lc_audio_info *info)
{
    memset(info, 0, sizeof *info);
    SF_INFO si;
    SNDFILE *sf = open_read(path, &si);
    if (!sf)
        return LC_ERR;
    info->frames = si.frames;
    info->sample_rate = si.samplerate;
    info->channels = si.channels;
    SF_FORMAT_INFO fi = {.format = si.format & SF_FORMAT_TYPEMASK};
    snprintf(info->format, sizeof info->format, "%s",
             sf_command(NULL, SFC_GET_FORMAT_INFO, &fi, sizeof fi) == 0 ? fi.name : "unknown");
    for (size_t i = 0; i < sizeof major_names / sizeof major_names[0]; i++)
        if (major_names[i].major == (si.format & SF_FORMAT_TYPEMASK))
            snprintf(info->format, sizeof info->format, "%s", major_names[i].name);
    SF_FORMAT_INFO sub = {.format = si.format & SF_FORMAT_SUBMASK};
    snprintf(info->subtype, sizeof info->subtype, "%s",
             sf_command(NULL, SFC_GET_FORMAT_INFO, &sub, sizeof sub) == 0 ? sub.name
                                                                            : "unknown");
    for (int i = 0; i < NSTR; i++) {
        const char *s = sf_get_string(sf, str_ids[i].id);
        if (!s || info->nmeta >= LC_AUDIO_MAXMETA)
            continue;
        char *v = strdup(s);
        if (!v) {
            sf_close(sf);
            lc_audio_info_clear(info);
            return lc_err("%s: out of memory", path);
        }
        snprintf(info->meta_key[info->nmeta], sizeof info->meta_key[0], "%s", str_ids[i].name);
        info->meta_val[info->nmeta++] = v;
    }
    sf_close(sf);
    return LC_OK;
}

lc_tensor *lc_audio_resample(lc_tensor *t, int from, int to)
{
    if (from < 1 || from > LC_AUDIO_MAX_RATE || to < 1 || to > LC_AUDIO_MAX_RATE) {
        lc_err("resample: rates %d -> %d Hz out of range (1 to %d)", from, to,
               LC_AUDIO_MAX_RATE);
        return NULL;
    }
    if (t->ndim != 1 && t->ndim != 2) {
        lc_err("resample: expected [channels, samples] or [samples], got %s", LC_SHAPE_STR(t));
        return NULL;
    }
    if (!lc_dtype_is_float(t->dtype)) {
        lc_err("resample: expected a float tensor, got %s", lc_dtype_name(t->dtype));
        return NULL;
    }
    int64_t ch = t->ndim == 2 ? t->shape[0] : 1;
    int64_t n = t->shape[t->ndim - 1];
    double olen_d = floor((double)n * to / from + 0.5);
    if (olen_d * (double)ch > (double)LC_AUDIO_MAX_SAMPLES) {
        lc_err("resample: %lld samples at %d Hz would make %.0f at %d Hz, too long",
               (long long)n, from, olen_d, to);
        return NULL;
    }
    int64_t olen = (int64_t)olen_d;
    lc_tensor *src = lc_tensor_to(t, LC_F32);
    if (!src)
        return NULL;
    int64_t shape[2] = {ch, olen};
    lc_tensor *out = t->ndim == 2 ? lc_tensor_zeros(LC_F32, 2, shape)
                                  : lc_tensor_zeros(LC_F32, 1, &shape[1]);
    if (!out) {
        lc_tensor_free(src);
        return NULL;
    }
    if (from == to) {
        memcpy(lc_tensor_data(out), lc_tensor_data(src), lc_tensor_nbytes(src));
        lc_tensor_free(src);
        return out;
    }
    soxr_quality_spec_t q = soxr_quality_spec(SOXR_HQ, 0);
    soxr_io_spec_t io = soxr_io_spec(SOXR_FLOAT32_I, SOXR_FLOAT32_I);
    /* one channel at a time: soxr never splits work across threads then,
     * so the result cannot depend on a thread count */
    for (int64_t c = 0; c < ch; c++) {
        const float *in = (const float *)lc_tensor_data(src) + c * n;
        float *o = (float *)lc_tensor_data(out) + c * olen;
        size_t odone = 0;
        soxr_error_t err = soxr_oneshot(from, to, 1, in, (size_t)n, NULL, o, (size_t)olen,
                                        &odone, &io, &q, NULL);
        if (err) {
            lc_err("resample %d -> %d Hz: %s", from, to, soxr_strerror(err));
            lc_tensor_free(src);
            lc_tensor_free(out);
            return NULL;
        }
        if (lc_interrupted()) {
            lc_err("interrupted");
            lc_tensor_free(src);
            lc_tensor_free(out);
            return NULL;
        }
    }
    lc_tensor_free(src);
    return out;
}

lc_tensor *lc_audio_load(const char *path, int target_rate, int mono, int *rate_out)
{
    if (target_rate < 0 || target_rate > LC_AUDIO_MAX_RATE) {
        lc_err("%s: requested sample rate %d Hz is out of range (1 to %d, or 0 to keep the "
               "file's)",
               path, target_rate, LC_AUDIO_MAX_RATE);
        return NULL;
    }
    SF_INFO si;
    SNDFILE *sf = open_read(path, &si);
    if (!sf)
        return NULL;
    int ch = si.channels;
    int64_t frames = si.frames;
    /* The frame count of a compressed file is only a header's claim, so
     * the tensor grows as samples actually arrive instead of trusting it */
    float *buf = malloc((size_t)CHUNK_FRAMES * (size_t)ch * sizeof *buf);
    int64_t cap = frames < ((int64_t)1 << 20) ? frames : ((int64_t)1 << 20);
    int64_t shape[2] = {ch, cap};
    lc_tensor *t = buf ? lc_tensor_new(LC_F32, 2, shape) : NULL;
    if (!t) {
        if (!buf)
            lc_err("%s: out of memory", path);
        free(buf);
        sf_close(sf);
        return NULL;
    }
    int64_t got = 0;
    while (got < frames) {
        if (got == cap) {
            shape[1] = cap * 2 < frames ? cap * 2 : frames;
            lc_tensor *bigger = lc_tensor_new(LC_F32, 2, shape);
            if (!bigger) {
                got = -1;
                break;
            }
            for (int c = 0; c < ch; c++)
                memcpy((float *)lc_tensor_data(bigger) + c * shape[1],
                       (float *)lc_tensor_data(t) + c * cap, (size_t)cap * sizeof(float));
            lc_tensor_free(t);
            t = bigger;
            cap = shape[1];
        }
        sf_count_t want = cap - got < CHUNK_FRAMES ? cap - got : CHUNK_FRAMES;
        sf_count_t r = sf_readf_float(sf, buf, want);
        if (r <= 0)
            break;
        float *out = lc_tensor_data(t);
        for (sf_count_t i = 0; i < r; i++)
            for (int c = 0; c < ch; c++)
                out[c * cap + got + i] = buf[i * ch + c];
        got += r;
        if (lc_interrupted()) {
            lc_err("interrupted");
            got = -1;
            break;
        }
    }
    int sferr = sf_error(sf);
    char sfmsg[256];
    snprintf(sfmsg, sizeof sfmsg, "%s", sf_strerror(sf));
    free(buf);
    sf_close(sf);
    if (got <= 0) {
        if (got == 0)
            lc_err("%s: no audio frames could be read (%s)", path,
                   sferr ? sfmsg : "file truncated?");
        lc_tensor_free(t);
        return NULL;
    }
    if (got < cap) {
        /* a header that promises more frames than the file holds (a
         * recording cut short): keep what is there, like other readers */
        lc_tensor *n = lc_tensor_narrow(t, 1, 0, got);
        lc_tensor *c = n ? lc_tensor_clone(n) : NULL;
        lc_tensor_free(n);
        lc_tensor_free(t);
        if (!c)
            return NULL;
        t = c;
        frames = got;
    }
    if (mono && ch > 1) {
        int64_t ms[2] = {1, frames};
        lc_tensor *m = lc_tensor_new(LC_F32, 2, ms);
        if (!m) {
            lc_tensor_free(t);
            return NULL;
        }
        const float *src = lc_tensor_data(t);
        float *dst = lc_tensor_data(m);
        for (int64_t i = 0; i < frames; i++) {
            float s = 0;
            for (int c = 0; c < ch; c++)
                s += src[c * frames + i];
            dst[i] = s / (float)ch;
        }
        lc_tensor_free(t);
        t = m;
    }
    int rate = si.samplerate;
    if (target_rate > 0 && target_rate != rate) {
        lc_tensor *r = lc_audio_resample(t, rate, target_rate);
        lc_tensor_free(t);
        if (!r) {
            lc_err_prefix("%s: ", path);
            return NULL;
        }
        t = r;
        rate = target_rate;
    }
    if (rate_out)
        *rate_out = rate;
    return t;
}

/* ---- saving ---- */

static int str_id(const char *key)
{
    for (int i = 0; i < NSTR; i++)
        if (!strcmp(str_ids[i].name, key))
            return str_ids[i].id;
    return -1;
}

static int pick_format(const char *path, lc_audio_encoding enc, int *format)
{
    char ext[16];
    lc_path_ext(path, ext, sizeof ext);
    int pcm = enc == LC_AUDIO_PCM24 ? SF_FORMAT_PCM_24 : SF_FORMAT_PCM_16;
    if (!strcmp(ext, "wav")) {
        *format = SF_FORMAT_WAV | (enc == LC_AUDIO_FLOAT ? SF_FORMAT_FLOAT : pcm);
    } else if (!strcmp(ext, "flac")) {
        if (enc == LC_AUDIO_FLOAT)
            return lc_err("%s: FLAC stores integer samples only (use 16- or 24-bit PCM)", path);
        *format = SF_FORMAT_FLAC | pcm;
    } else if (!strcmp(ext, "ogg") || !strcmp(ext, "oga")) {
        *format = SF_FORMAT_OGG | SF_FORMAT_VORBIS;
    } else {
        return lc_err("%s: unsupported audio extension '%s' (use .wav, .flac or .ogg)", path,
                      ext);
    }
    return LC_OK;
}

static float clean(float x)
{
    if (isnan(x))
        return 0.0f;
    return x < -1.0f ? -1.0f : x > 1.0f ? 1.0f : x;
}

/* writes interleaved chunks converted for the file's sample format */
static int write_samples(SNDFILE *sf, const char *path, const float *src, int ch, int64_t n,
                         int format)
{
    int sub = format & SF_FORMAT_SUBMASK;
    size_t cap = (size_t)CHUNK_FRAMES * (size_t)ch;
    void *buf = malloc(cap * (sub == SF_FORMAT_PCM_16 ? sizeof(short) : sizeof(float)));
    if (!buf)
        return lc_err("%s: out of memory", path);
    int rc = LC_OK;
    for (int64_t f0 = 0; f0 < n && rc == LC_OK; f0 += CHUNK_FRAMES) {
        int64_t m = n - f0 < CHUNK_FRAMES ? n - f0 : CHUNK_FRAMES;
        sf_count_t w;
        if (sub == SF_FORMAT_PCM_16) {
            short *s = buf;
            for (int64_t i = 0; i < m; i++)
                for (int c = 0; c < ch; c++) {
                    double v = nearbyint((double)clean(src[c * n + f0 + i]) * 32768.0);
                    s[i * ch + c] = (short)(v > 32767 ? 32767 : v);
                }
            w = sf_writef_short(sf, s, m);
        } else if (sub == SF_FORMAT_PCM_24) {
            int *s = buf;
            for (int64_t i = 0; i < m; i++)
                for (int c = 0; c < ch; c++) {
                    double v = nearbyint((double)clean(src[c * n + f0 + i]) * 8388608.0);
                    /* libsndfile's int is full-scale 32-bit: 24-bit is the top bits */
                    s[i * ch + c] = (int)(v > 8388607 ? 8388607 : v) * 256;
                }
            w = sf_writef_int(sf, s, m);
        } else {
            float *s = buf;
            int vorbis = sub == SF_FORMAT_VORBIS;
            for (int64_t i = 0; i < m; i++)
                for (int c = 0; c < ch; c++) {
                    float x = src[c * n + f0 + i];
                    s[i * ch + c] = vorbis ? clean(x) : (isnan(x) ? 0.0f : x);
                }
            w = sf_writef_float(sf, s, m);
        }
        if (w != m)
            rc = lc_err("%s: writing audio failed: %s", path, sf_strerror(sf));
        else if (lc_interrupted())
            rc = lc_err("interrupted");
    }
    free(buf);
    return rc;
}

int lc_audio_save(lc_tensor *t, const char *path, int sample_rate, lc_audio_encoding enc,
                  int nmeta, const char *const *meta_keys, const char *const *meta_vals)
{
    if (t->ndim != 1 && t->ndim != 2)
        return lc_err("%s: cannot save a tensor of shape %s as audio (expected [channels, "
                      "samples] or [samples])",
                      path, LC_SHAPE_STR(t));
    if (!lc_dtype_is_float(t->dtype))
        return lc_err("%s: audio samples must be a float tensor, got %s", path,
                      lc_dtype_name(t->dtype));
    int64_t ch = t->ndim == 2 ? t->shape[0] : 1;
    int64_t n = t->shape[t->ndim - 1];
    if (ch < 1 || ch > LC_AUDIO_MAX_CHANNELS)
        return lc_err("%s: %lld channels (1 to %d supported; shape %s)", path, (long long)ch,
                      LC_AUDIO_MAX_CHANNELS, LC_SHAPE_STR(t));
    if (n < 1)
        return lc_err("%s: no samples to save", path);
    if (sample_rate < 1 || sample_rate > LC_AUDIO_MAX_RATE)
        return lc_err("%s: sample rate %d Hz is out of range (1 to %d)", path, sample_rate,
                      LC_AUDIO_MAX_RATE);
    int format = 0;
    if (pick_format(path, enc, &format) != LC_OK)
        return LC_ERR;
    for (int i = 0; i < nmeta; i++) {
        if (!meta_keys[i] || !meta_vals[i] || str_id(meta_keys[i]) < 0)
            return lc_err("%s: unknown audio metadata key '%s' (use title, comment, software, "
                          "artist, copyright, date, album, license, tracknumber or genre)",
                          path, meta_keys[i] ? meta_keys[i] : "(null)");
    }
    SF_INFO si = {.samplerate = sample_rate, .channels = (int)ch, .format = format};
    if (!sf_format_check(&si))
        return lc_err("%s: libsndfile cannot write this format with %lld channels at %d Hz",
                      path, (long long)ch, sample_rate);
    lc_tensor *src = lc_tensor_to(t, LC_F32);
    if (!src)
        return LC_ERR;
    lc_atomic_file af;
    if (lc_atomic_open(&af, path) != LC_OK) {
        lc_tensor_free(src);
        return LC_ERR;
    }
    int rc = LC_OK;
    SNDFILE *sf = sf_open_fd(af.fd, SFM_WRITE, &si, SF_FALSE);
    if (!sf)
        rc = lc_err("%s: cannot write audio: %s", path, sf_strerror(NULL));
    /* strings go in before the samples: FLAC and Vorbis write them first */
    for (int i = 0; i < nmeta && rc == LC_OK; i++)
        if (sf_set_string(sf, str_id(meta_keys[i]), meta_vals[i]) != 0)
            rc = lc_err("%s: cannot store metadata '%s': %s", path, meta_keys[i],
                        sf_strerror(sf));
    if (rc == LC_OK)
        rc = write_samples(sf, path, lc_tensor_data(src), (int)ch, n, format);
    if (sf && sf_close(sf) != 0 && rc == LC_OK)
        rc = lc_err("%s: finishing the audio file failed", path);
    lc_tensor_free(src);
    if (rc == LC_OK)
        return lc_atomic_commit(&af);
    lc_atomic_abort(&af);
    return LC_ERR;
}
