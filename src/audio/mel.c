/* Mel spectrogram images and their inverse; see mel.h. */
#include "audio/mel.h"

#include <fftw3.h>
#include <float.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

void lc_mel_config_default(lc_mel_config *c)
{
    *c = (lc_mel_config){.x_res = 256,
                         .y_res = 256,
                         .sample_rate = 22050,
                         .n_fft = 2048,
                         .hop_length = 512,
                         .top_db = 80,
                         .n_iter = 32};
}

int lc_mel_config_check(const lc_mel_config *c)
{
    if (c->x_res < 1 || c->x_res > 65536)
        return lc_err("mel config: x_res %d out of range [1, 65536]", c->x_res);
    if (c->y_res < 1 || c->y_res > 4096)
        return lc_err("mel config: y_res %d out of range [1, 4096]", c->y_res);
    if (c->sample_rate < 1000 || c->sample_rate > 768000)
        return lc_err("mel config: sample_rate %d out of range [1000, 768000]", c->sample_rate);
    if (c->n_fft < 16 || c->n_fft > 65536 || c->n_fft % 2)
        return lc_err("mel config: n_fft %d should be even, in [16, 65536]", c->n_fft);
    if (c->hop_length < 1 || c->hop_length > c->n_fft)
        return lc_err("mel config: hop_length %d out of range [1, n_fft=%d]", c->hop_length,
                      c->n_fft);
    if (!(c->top_db > 0) || c->top_db > 1000)
        return lc_err("mel config: top_db %g should be in (0, 1000]", c->top_db);
    if (c->n_iter < 0 || c->n_iter > 100000)
        return lc_err("mel config: n_iter %d out of range [0, 100000]", c->n_iter);
    if (c->y_res > c->n_fft / 2 + 1)
        return lc_err("mel config: y_res %d mel bins exceed the %d FFT bins of n_fft %d",
                      c->y_res, c->n_fft / 2 + 1, c->n_fft);
    return LC_OK;
}

int64_t lc_mel_slice_size(const lc_mel_config *c)
{
    return (int64_t)c->x_res * c->hop_length - 1;
}

/* ---- mel scale and filterbank ---- */

#define F_SP (200.0 / 3)
#define MIN_LOG_HZ 1000.0
#define MIN_LOG_MEL (MIN_LOG_HZ / F_SP)

double lc_mel_from_hz(double hz)
{
    if (hz >= MIN_LOG_HZ)
        return MIN_LOG_MEL + log(hz / MIN_LOG_HZ) / (log(6.4) / 27.0);
    return hz / F_SP;
}

double lc_mel_to_hz(double mel)
{
    if (mel >= MIN_LOG_MEL)
        return MIN_LOG_HZ * exp(log(6.4) / 27.0 * (mel - MIN_LOG_MEL));
    return F_SP * mel;
}

/* the filterbank in double, [n_mels][nf], with librosa's f32 roundings */
static double *filterbank(int sr, int n_fft, int n_mels, double f_lo, double f_hi)
{
    int nf = n_fft / 2 + 1;
    double *w = calloc((size_t)n_mels * nf, sizeof *w);
    double *mel_f = malloc((size_t)(n_mels + 2) * sizeof *mel_f);
    double *fft_f = malloc((size_t)nf * sizeof *fft_f);
    if (!w || !mel_f || !fft_f) {
        free(w), free(mel_f), free(fft_f);
        lc_err("mel filterbank: out of memory");
        return NULL;
    }
    /* np.linspace(0, sr/2, nf) and np.linspace(min_mel, max_mel, n+2) */
    double half = sr / 2.0;
    for (int k = 0; k < nf; k++)
        fft_f[k] = k == nf - 1 ? half : k * (half / (nf - 1));
    double m0 = lc_mel_from_hz(f_lo), m1 = lc_mel_from_hz(f_hi);
    double step = (m1 - m0) / (n_mels + 1);
    for (int i = 0; i < n_mels + 2; i++)
        mel_f[i] = lc_mel_to_hz(i == n_mels + 1 ? m1 : m0 + i * step);
    for (int i = 0; i < n_mels; i++) {
        double d0 = mel_f[i + 1] - mel_f[i], d1 = mel_f[i + 2] - mel_f[i + 1];
        double enorm = 2.0 / (mel_f[i + 2] - mel_f[i]);
        for (int k = 0; k < nf; k++) {
            double lower = -(mel_f[i] - fft_f[k]) / d0;
            double upper = (mel_f[i + 2] - fft_f[k]) / d1;
            double v = fmax(0.0, fmin(lower, upper));
            w[(size_t)i * nf + k] = (float)((double)(float)v * enorm);
        }
    }
    free(mel_f);
    free(fft_f);
    return w;
}

lc_tensor *lc_mel_filterbank(int sr, int n_fft, int n_mels, double f_lo, double f_hi)
{
    if (sr < 1 || n_fft < 2 || n_fft % 2 || n_mels < 1 || n_mels > 65536 || f_lo < 0 ||
        !(f_hi > f_lo)) {
        lc_err("mel filterbank: bad parameters (sr %d, n_fft %d, n_mels %d, fmin %g, fmax %g)",
               sr, n_fft, n_mels, f_lo, f_hi);
        return NULL;
    }
    double *w = filterbank(sr, n_fft, n_mels, f_lo, f_hi);
    if (!w)
        return NULL;
    int nf = n_fft / 2 + 1;
    lc_tensor *t = lc_tensor_new(LC_F32, 2, (int64_t[]){n_mels, nf});
    if (t) {
        float *p = lc_tensor_data(t);
        for (size_t i = 0; i < (size_t)n_mels * nf; i++)
            p[i] = (float)w[i];
    }
    free(w);
    return t;
}

/* ---- STFT through FFTW ---- */

/* FFTW's planner is not thread-safe; execution on fresh arrays is */
static pthread_mutex_t plan_lock = PTHREAD_MUTEX_INITIALIZER;

typedef struct {
    int n, nf;
    float *in;
    fftwf_complex *out;
    fftwf_plan fwd, inv;
    double *window; /* periodic Hann */
} stft_ctx;

static void stft_free(stft_ctx *s)
{
    pthread_mutex_lock(&plan_lock);
    if (s->fwd)
        fftwf_destroy_plan(s->fwd);
    if (s->inv)
        fftwf_destroy_plan(s->inv);
    pthread_mutex_unlock(&plan_lock);
    fftwf_free(s->in);
    fftwf_free(s->out);
    free(s->window);
}

static int stft_init(stft_ctx *s, int n)
{
    memset(s, 0, sizeof *s);
    s->n = n;
    s->nf = n / 2 + 1;
    s->in = fftwf_malloc(sizeof(float) * n);
    s->out = fftwf_malloc(sizeof(fftwf_complex) * s->nf);
    s->window = malloc(sizeof(double) * n);
    if (!s->in || !s->out || !s->window) {
        stft_free(s);
        return lc_err("STFT: out of memory (n_fft %d)", n);
    }
    pthread_mutex_lock(&plan_lock);
    s->fwd = fftwf_plan_dft_r2c_1d(n, s->in, s->out, FFTW_ESTIMATE);
    s->inv = fftwf_plan_dft_c2r_1d(n, s->out, s->in, FFTW_ESTIMATE);
    pthread_mutex_unlock(&plan_lock);
    if (!s->fwd || !s->inv) {
        stft_free(s);
        return lc_err("STFT: FFTW could not plan a transform of size %d", n);
    }
    /* scipy get_window('hann', n, fftbins=True) */
    for (int i = 0; i < n; i++)
        s->window[i] = 0.5 - 0.5 * cos(2.0 * M_PI * i / n);
    return LC_OK;
}

/* centred STFT with zero padding: y[len] -> re/im [nf][frames] */
static void stft(stft_ctx *s, const double *y, int64_t len, int hop, int64_t frames, double *re,
                 double *im)
{
    int n = s->n, half = n / 2;
    for (int64_t t = 0; t < frames; t++) {
        int64_t start = t * hop - half;
        for (int i = 0; i < n; i++) {
            int64_t j = start + i;
            s->in[i] = (float)(j >= 0 && j < len ? y[j] * s->window[i] : 0.0);
        }
        fftwf_execute(s->fwd);
        for (int k = 0; k < s->nf; k++) {
            re[(size_t)k * frames + t] = s->out[k][0];
            im[(size_t)k * frames + t] = s->out[k][1];
        }
    }
}

/* librosa.istft(center=True, length=None): re/im [nf][frames] ->
 * y[hop * (frames - 1)] by windowed overlap-add over the window sum of
 * squares */
static void istft(stft_ctx *s, const double *re, const double *im, int hop, int64_t frames,
                  double *y, double *acc, double *wss)
{
    int n = s->n, half = n / 2;
    int64_t full = n + (int64_t)hop * (frames - 1);
    memset(acc, 0, sizeof(double) * full);
    memset(wss, 0, sizeof(double) * full);
    for (int64_t t = 0; t < frames; t++) {
        for (int k = 0; k < s->nf; k++) {
            s->out[k][0] = (float)re[(size_t)k * frames + t];
            s->out[k][1] = (float)im[(size_t)k * frames + t];
        }
        fftwf_execute(s->inv); /* unnormalised: divide by n */
        int64_t off = t * hop;
        for (int i = 0; i < n; i++) {
            double w = s->window[i];
            acc[off + i] += w * s->in[i] / n;
            wss[off + i] += w * w;
        }
    }
    int64_t len = (int64_t)hop * (frames - 1);
    for (int64_t i = 0; i < len; i++) {
        double d = wss[half + i];
        y[i] = d > FLT_MIN ? acc[half + i] / d : acc[half + i];
    }
}

static double *f64_copy(const lc_tensor *t, int64_t *n)
{
    lc_tensor *d = lc_tensor_to(t, LC_F64);
    if (!d)
        return NULL;
    *n = lc_tensor_numel(d);
    double *p = malloc(sizeof(double) * (*n ? *n : 1));
    if (p)
        memcpy(p, lc_tensor_data(d), sizeof(double) * *n);
    else
        lc_err("mel: out of memory");
    lc_tensor_free(d);
    return p;
}

lc_tensor *lc_mel_power(const lc_mel_config *c, const lc_tensor *slice)
{
    if (lc_mel_config_check(c) != LC_OK)
        return NULL;
    if (slice->ndim != 1) {
        lc_err("mel: audio slice should be 1-D samples, got %d dims", slice->ndim);
        return NULL;
    }
    int64_t len;
    double *y = f64_copy(slice, &len);
    if (!y)
        return NULL;
    int64_t frames = 1 + len / c->hop_length;
    int nf = c->n_fft / 2 + 1;
    double *re = malloc(sizeof(double) * nf * frames), *im = malloc(sizeof(double) * nf * frames);
    double *fb = filterbank(c->sample_rate, c->n_fft, c->y_res, 0.0, c->sample_rate / 2.0);
    lc_tensor *out = lc_tensor_new(LC_F32, 2, (int64_t[]){c->y_res, frames});
    stft_ctx s;
    if (!re || !im || !fb || !out || stft_init(&s, c->n_fft) != LC_OK) {
        if (!(re && im))
            lc_err("mel: out of memory");
        lc_tensor_free(out);
        out = NULL;
        goto done;
    }
    stft(&s, y, len, c->hop_length, frames, re, im);
    stft_free(&s);
    /* |X|^2 (librosa keeps it in f32) */
    for (size_t i = 0; i < (size_t)nf * frames; i++)
        re[i] = (float)(re[i] * re[i] + im[i] * im[i]);
    float *o = lc_tensor_data(out);
    for (int m = 0; m < c->y_res; m++) {
        const double *w = fb + (size_t)m * nf;
        for (int64_t t = 0; t < frames; t++) {
            double acc = 0;
            for (int k = 0; k < nf; k++)
                if (w[k] != 0)
                    acc += w[k] * re[(size_t)k * frames + t];
            o[m * frames + t] = (float)acc;
        }
    }
done:
    free(y), free(re), free(im), free(fb);
    return out;
}

lc_tensor *lc_mel_power_to_db(const lc_tensor *S, double top_db)
{
    int64_t n;
    double *p = f64_copy(S, &n);
    if (!p)
        return NULL;
    const double amin = 1e-10;
    double ref = -INFINITY;
    for (int64_t i = 0; i < n; i++)
        ref = fmax(ref, p[i]);
    double ref_db = 10.0 * log10(fmax(amin, ref)), top = -INFINITY;
    for (int64_t i = 0; i < n; i++) {
        p[i] = 10.0 * log10(fmax(amin, p[i])) - ref_db;
        top = fmax(top, p[i]);
    }
    lc_tensor *out = lc_tensor_new(LC_F32, S->ndim, S->shape);
    if (out) {
        float *o = lc_tensor_data(out);
        for (int64_t i = 0; i < n; i++)
            o[i] = (float)(top_db > 0 ? fmax(p[i], top - top_db) : p[i]);
    }
    free(p);
    return out;
}

lc_tensor *lc_mel_db_to_image(const lc_tensor *log_S, double top_db)
{
    if (!(top_db > 0)) {
        lc_err("mel image: top_db %g should be positive", top_db);
        return NULL;
    }
    int64_t n;
    double *p = f64_copy(log_S, &n);
    if (!p)
        return NULL;
    lc_tensor *out = lc_tensor_new(LC_U8, log_S->ndim, log_S->shape);
    if (out) {
        uint8_t *o = lc_tensor_data(out);
        for (int64_t i = 0; i < n; i++) {
            double v = fmin(fmax((p[i] + top_db) * 255.0 / top_db, 0.0), 255.0) + 0.5;
            o[i] = (uint8_t)v;
        }
    }
    free(p);
    return out;
}

lc_tensor *lc_mel_image(const lc_mel_config *c, const lc_tensor *slice)
{
    lc_tensor *S = lc_mel_power(c, slice);
    lc_tensor *db = S ? lc_mel_power_to_db(S, c->top_db) : NULL;
    lc_tensor *img = db ? lc_mel_db_to_image(db, c->top_db) : NULL;
    lc_tensor_free(S);
    lc_tensor_free(db);
    return img;
}

lc_tensor *lc_mel_image_to_power(const lc_mel_config *c, const lc_tensor *image)
{
    if (lc_mel_config_check(c) != LC_OK)
        return NULL;
    if (image->ndim != 2 || image->shape[0] != c->y_res) {
        lc_err("mel: image should be [y_res=%d, width], got %d dims (first %lld)", c->y_res,
               image->ndim, image->ndim ? (long long)image->shape[0] : 0LL);
        return NULL;
    }
    int64_t n;
    double *p = f64_copy(image, &n);
    if (!p)
        return NULL;
    lc_tensor *out = lc_tensor_new(LC_F64, 2, image->shape);
    if (out) {
        double *o = lc_tensor_data(out);
        for (int64_t i = 0; i < n; i++)
            o[i] = pow(10.0, (p[i] * c->top_db / 255.0 - c->top_db) * 0.1);
    }
    free(p);
    return out;
}

/* ---- non-negative least squares ---- */


/* eigen-decomposition of a symmetric n x n matrix by cyclic Jacobi
 * rotations: a is destroyed (its diagonal ends as the eigenvalues), v gets
 * the eigenvectors as columns */
static void jacobi_eig(double *a, double *v, int n)
{
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++)
            v[i * n + j] = i == j;
    for (int sweep = 0; sweep < 60; sweep++) {
        double off = 0, diag = 0;
        for (int i = 0; i < n; i++) {
            diag += a[i * n + i] * a[i * n + i];
            for (int j = i + 1; j < n; j++)
                off += a[i * n + j] * a[i * n + j];
        }
        if (off <= 1e-30 * diag)
            break;
        for (int p = 0; p < n; p++)
            for (int q = p + 1; q < n; q++) {
                double apq = a[p * n + q];
                if (fabs(apq) < 1e-300)
                    continue;
                double theta = (a[q * n + q] - a[p * n + p]) / (2 * apq);
                double t = (theta >= 0 ? 1 : -1) / (fabs(theta) + sqrt(theta * theta + 1));
                double cs = 1 / sqrt(t * t + 1), sn = t * cs;
                for (int k = 0; k < n; k++) {
                    double akp = a[k * n + p], akq = a[k * n + q];
                    a[k * n + p] = cs * akp - sn * akq;
                    a[k * n + q] = sn * akp + cs * akq;
                }
                for (int k = 0; k < n; k++) {
                    double apk = a[p * n + k], aqk = a[q * n + k];
                    a[p * n + k] = cs * apk - sn * aqk;
                    a[q * n + k] = sn * apk + cs * aqk;
                }
                for (int k = 0; k < n; k++) {
                    double vkp = v[k * n + p], vkq = v[k * n + q];
                    v[k * n + p] = cs * vkp - sn * vkq;
                    v[k * n + q] = sn * vkp + cs * vkq;
                }
            }
    }
}

lc_tensor *lc_mel_to_stft_mag(const lc_mel_config *c, const lc_tensor *S)
{
    if (lc_mel_config_check(c) != LC_OK)
        return NULL;
    if (S->ndim != 2 || S->shape[0] != c->y_res) {
        lc_err("mel_to_stft: power should be [y_res=%d, frames]", c->y_res);
        return NULL;
    }
    int m = c->y_res, nf = c->n_fft / 2 + 1;
    int64_t T = S->shape[1], n;
    /* librosa builds this filterbank in the dtype of S (f64): no f32
     * rounding, so recompute it unrounded */
    double *b = f64_copy(S, &n);
    double *A = calloc((size_t)m * nf, sizeof *A);
    double *G = malloc(sizeof(double) * m * m), *V = malloc(sizeof(double) * m * m);
    size_t N = (size_t)nf * T;
    double *x = malloc(sizeof(double) * N), *xp = malloc(sizeof(double) * N);
    double *yk = malloc(sizeof(double) * N), *gk = malloc(sizeof(double) * N);
    double *r = malloc(sizeof(double) * m * T), *u = malloc(sizeof(double) * m);
    int *lo = malloc(sizeof(int) * m), *hi = malloc(sizeof(int) * m);
    lc_tensor *out = lc_tensor_new(LC_F64, 2, (int64_t[]){nf, T});
    if (!b || !A || !G || !V || !x || !xp || !yk || !gk || !r || !u || !lo || !hi || !out) {
        if (b)
            lc_err("mel_to_stft: out of memory");
        lc_tensor_free(out);
        out = NULL;
        goto done;
    }
    {
        double sr = c->sample_rate, half = sr / 2.0;
        double m0 = lc_mel_from_hz(0), m1 = lc_mel_from_hz(half), step = (m1 - m0) / (m + 1);
        for (int i = 0; i < m; i++) {
            double f0 = lc_mel_to_hz(m0 + i * step), f1 = lc_mel_to_hz(m0 + (i + 1) * step);
            double f2 = lc_mel_to_hz(i + 2 == m + 1 ? m1 : m0 + (i + 2) * step);
            for (int k = 0; k < nf; k++) {
                double fk = k == nf - 1 ? half : k * (half / (nf - 1));
                double v = fmax(0.0, fmin((fk - f0) / (f1 - f0), (f2 - fk) / (f2 - f1)));
                A[(size_t)i * nf + k] = v * 2.0 / (f2 - f0);
            }
        }
    }
    /* each filter is one triangle: its nonzero bins are a range, so
     * products with A only walk [lo, hi) */
    for (int j = 0; j < m; j++) {
        lo[j] = nf, hi[j] = 0;
        for (int k = 0; k < nf; k++)
            if (A[(size_t)j * nf + k] != 0) {
                lo[j] = k < lo[j] ? k : lo[j];
                hi[j] = k + 1;
            }
        if (hi[j] < lo[j])
            lo[j] = hi[j] = 0;
    }
    /* pinv(A) = A^T (A A^T)^+ through the eigen-decomposition of A A^T;
     * eigenvalues below rcond relative are dropped as numpy's pinv drops
     * small singular values (empty filters of fine mel grids) */
    for (int i = 0; i < m; i++)
        for (int j = 0; j < m; j++) {
            double acc = 0;
            int k0 = lo[i] > lo[j] ? lo[i] : lo[j], k1 = hi[i] < hi[j] ? hi[i] : hi[j];
            for (int k = k0; k < k1; k++)
                acc += A[(size_t)i * nf + k] * A[(size_t)j * nf + k];
            G[i * m + j] = acc;
        }
    /* When the non-empty filters are independent (the usual case) G
     * restricted to them is positive definite and a Cholesky solve gives
     * the pseudo-inverse exactly, in O(m^3 / 6); otherwise (duplicate
     * filters) the eigen route, dropping null directions. */
    double gmax = 0;
    for (int i = 0; i < m; i++)
        gmax = fmax(gmax, G[i * m + i]);
    memcpy(V, G, sizeof(double) * m * m);
    int chol = 1;
    for (int j = 0; j < m && chol; j++) {
        if (hi[j] == lo[j])
            continue; /* empty filter: row and column of zeros */
        double d = V[j * m + j];
        for (int k = 0; k < j; k++)
            if (hi[k] > lo[k])
                d -= V[j * m + k] * V[j * m + k];
        if (!(d > 1e-10 * gmax)) {
            chol = 0;
            break;
        }
        d = sqrt(d);
        V[j * m + j] = d;
        for (int i = j + 1; i < m; i++) {
            if (hi[i] == lo[i])
                continue;
            double v = V[i * m + j];
            for (int k = 0; k < j; k++)
                if (hi[k] > lo[k])
                    v -= V[i * m + k] * V[j * m + k];
            V[i * m + j] = v / d;
        }
    }
    double lmax = 0;
    if (!chol) {
        jacobi_eig(G, V, m);
        for (int i = 0; i < m; i++)
            lmax = fmax(lmax, G[i * m + i]);
    } else {
        /* largest eigenvalue of G by power iteration (for the step size) */
        for (int i = 0; i < m; i++)
            u[i] = 1;
        for (int it = 0; it < 200; it++) {
            double nrm = 0;
            for (int i = 0; i < m; i++) {
                double acc = 0;
                for (int j = 0; j < m; j++)
                    acc += G[i * m + j] * u[j];
                r[i] = acc;
                nrm += acc * acc;
            }
            nrm = sqrt(nrm);
            if (nrm == 0)
                break;
            for (int i = 0; i < m; i++)
                u[i] = r[i] / nrm;
            lmax = nrm;
        }
        lmax *= 1.01; /* power iteration approaches from below */
    }
    double L = lmax > 0 ? lmax : 1; /* Lipschitz constant of the gradient */
    /* x0 = clip(pinv(A) b, 0), column by column */
    for (int64_t t = 0; t < T; t++) {
        if (chol) {
            for (int i = 0; i < m; i++) { /* forward: L y = b */
                if (hi[i] == lo[i]) {
                    u[i] = 0;
                    continue;
                }
                double acc = b[i * T + t];
                for (int k = 0; k < i; k++)
                    acc -= V[i * m + k] * u[k];
                u[i] = acc / V[i * m + i];
            }
            for (int i = m - 1; i >= 0; i--) { /* back: L^T r = y */
                if (hi[i] == lo[i]) {
                    r[i] = 0;
                    continue;
                }
                double acc = u[i];
                for (int k = i + 1; k < m; k++)
                    acc -= V[k * m + i] * r[k];
                r[i] = acc / V[i * m + i];
            }
        } else {
            for (int i = 0; i < m; i++) {
                double acc = 0;
                for (int j = 0; j < m; j++)
                    acc += V[j * m + i] * b[j * T + t];
                double lam = G[i * m + i];
                u[i] = lam > 1e-12 * lmax ? acc / lam : 0;
            }
            for (int j = 0; j < m; j++) {
                double acc = 0;
                for (int i = 0; i < m; i++)
                    acc += V[j * m + i] * u[i];
                r[j] = acc;
            }
        }
        for (int k = 0; k < nf; k++)
            gk[k] = 0;
        for (int j = 0; j < m; j++)
            for (int k = lo[j]; k < hi[j]; k++)
                gk[k] += A[(size_t)j * nf + k] * r[j];
        for (int k = 0; k < nf; k++)
            x[(size_t)k * T + t] = fmax(gk[k], 0);
    }
    memcpy(xp, x, sizeof(double) * N);
    /* FISTA (restarted when momentum goes uphill) on the whole problem
     * 0.5 |A X - B|^2, X >= 0, stopped by L-BFGS-B's tests with librosa's
     * settings: projected gradient max-norm <= pgtol 1e-5, or a relative
     * objective decrease <= factr 1e7 * machine epsilon, relative to
     * max(|f|, 1). The "1" makes it stop early on the small objectives of
     * spectrograms normalised to a maximum of 1, so librosa's answer is
     * close to its start; stopping where it stops keeps us close too. */
    double tk = 1, fprev = INFINITY;
    for (int it = 0; it < 5000; it++) {
        double tn = (1 + sqrt(1 + 4 * tk * tk)) / 2, beta = (tk - 1) / tn;
        for (size_t i = 0; i < N; i++)
            yk[i] = x[i] + beta * (x[i] - xp[i]);
        double f = 0;
        for (int j = 0; j < m; j++) {
            double *rj = r + (size_t)j * T;
            for (int64_t t = 0; t < T; t++)
                rj[t] = -b[j * T + t];
            for (int k = lo[j]; k < hi[j]; k++) {
                double a = A[(size_t)j * nf + k];
                const double *y = yk + (size_t)k * T;
                for (int64_t t = 0; t < T; t++)
                    rj[t] += a * y[t];
            }
            for (int64_t t = 0; t < T; t++)
                f += 0.5 * rj[t] * rj[t];
        }
        if (fabs(fprev - f) <= 1e7 * DBL_EPSILON * fmax(fmax(fabs(f), fabs(fprev)), 1))
            break;
        fprev = f;
        double pg = 0, dot = 0;
        memset(gk, 0, sizeof(double) * N);
        for (int j = 0; j < m; j++)
            for (int k = lo[j]; k < hi[j]; k++) {
                double a = A[(size_t)j * nf + k];
                double *g = gk + (size_t)k * T;
                const double *rj = r + (size_t)j * T;
                for (int64_t t = 0; t < T; t++)
                    g[t] += a * rj[t];
            }
        for (size_t i = 0; i < N; i++)
            pg = fmax(pg, fabs(yk[i] > 0 ? gk[i] : fmin(gk[i], 0)));
        if (pg <= 1e-5)
            break;
        for (size_t i = 0; i < N; i++) {
            double nx = fmax(yk[i] - gk[i] / L, 0);
            dot += (yk[i] - nx) * (nx - x[i]);
            xp[i] = x[i];
            x[i] = nx;
        }
        tk = dot > 0 ? 1 : tn;
    }
    double *out_p = lc_tensor_data(out);
    for (size_t i = 0; i < N; i++)
        out_p[i] = sqrt(x[i]);
done:
    free(b), free(A), free(G), free(V), free(x), free(xp), free(yk), free(gk), free(r), free(u);
    free(lo), free(hi);
    return out;
}

/* ---- Griffin-Lim ---- */

lc_tensor *lc_griffin_lim(const lc_mel_config *c, const lc_tensor *mag, int n_iter,
                          lc_gl_init init, lc_generator *g, const lc_tensor *re0,
                          const lc_tensor *im0)
{
    if (lc_mel_config_check(c) != LC_OK)
        return NULL;
    int nf = c->n_fft / 2 + 1, hop = c->hop_length;
    if (mag->ndim != 2 || mag->shape[0] != nf || mag->shape[1] < 2) {
        lc_err("griffin_lim: magnitudes should be [1 + n_fft/2 = %d, frames >= 2]", nf);
        return NULL;
    }
    int64_t T = mag->shape[1], n, len = (int64_t)hop * (T - 1);
    size_t N = (size_t)nf * T;
    double *S = f64_copy(mag, &n);
    double *are = malloc(sizeof(double) * N), *aim = malloc(sizeof(double) * N);
    double *rre = malloc(sizeof(double) * N), *rim = malloc(sizeof(double) * N);
    double *pre = calloc(N, sizeof(double)), *pim = calloc(N, sizeof(double));
    int64_t full = c->n_fft + len;
    double *y = malloc(sizeof(double) * len), *acc = malloc(sizeof(double) * full);
    double *wss = malloc(sizeof(double) * full);
    lc_tensor *out = NULL;
    stft_ctx s = {0};
    int have_s = 0;
    if (!S || !are || !aim || !rre || !rim || !pre || !pim || !y || !acc || !wss) {
        if (S)
            lc_err("griffin_lim: out of memory");
        goto done;
    }
    if (init == LC_GL_GIVEN) {
        if (!re0 || !im0 || lc_tensor_numel(re0) != (int64_t)N || lc_tensor_numel(im0) != (int64_t)N) {
            lc_err("griffin_lim: initial phases should be two tensors of [%d, %lld]", nf,
                   (long long)T);
            goto done;
        }
        double *pr = f64_copy(re0, &n), *pi = pr ? f64_copy(im0, &n) : NULL;
        if (!pi) {
            free(pr);
            goto done;
        }
        memcpy(are, pr, sizeof(double) * N);
        memcpy(aim, pi, sizeof(double) * N);
        free(pr), free(pi);
    } else if (init == LC_GL_RANDOM) {
        if (!g) {
            lc_err("griffin_lim: random phases need a generator");
            goto done;
        }
        lc_tensor *u = lc_rand(g, LC_F64, 2, (int64_t[]){nf, T});
        if (!u)
            goto done;
        const double *up = lc_tensor_data(u);
        for (size_t i = 0; i < N; i++) {
            are[i] = cos(2 * M_PI * up[i]);
            aim[i] = sin(2 * M_PI * up[i]);
        }
        lc_tensor_free(u);
    } else {
        for (size_t i = 0; i < N; i++)
            are[i] = 1, aim[i] = 0;
    }
    if (stft_init(&s, c->n_fft) != LC_OK)
        goto done;
    have_s = 1;
    for (size_t i = 0; i < N; i++)
        are[i] *= S[i], aim[i] *= S[i];
    const double mom = 0.99 / (1 + 0.99);
    const double eps = FLT_MIN; /* librosa's util.tiny of complex64 */
    for (int it = 0; it < n_iter; it++) {
        if (lc_interrupted()) {
            lc_err("griffin_lim: interrupted");
            goto done;
        }
        istft(&s, are, aim, hop, T, y, acc, wss);
        stft(&s, y, len, hop, T, rre, rim);
        for (size_t i = 0; i < N; i++) {
            double ar = rre[i], ai = rim[i];
            if (it > 0)
                ar -= mom * pre[i], ai -= mom * pim[i];
            double a = hypot(ar, ai) + eps;
            are[i] = ar / a * S[i];
            aim[i] = ai / a * S[i];
        }
        double *tr = pre, *ti = pim;
        pre = rre, pim = rim, rre = tr, rim = ti;
    }
    istft(&s, are, aim, hop, T, y, acc, wss);
    out = lc_tensor_new(LC_F32, 1, (int64_t[]){len});
    if (out) {
        float *o = lc_tensor_data(out);
        for (int64_t i = 0; i < len; i++)
            o[i] = (float)y[i];
    }
done:
    if (have_s)
        stft_free(&s);
    free(S), free(are), free(aim), free(rre), free(rim), free(pre), free(pim);
    free(y), free(acc), free(wss);
    return out;
}

lc_tensor *lc_mel_image_to_audio(const lc_mel_config *c, const lc_tensor *image,
                                 lc_gl_init init, lc_generator *g, const lc_tensor *re,
                                 const lc_tensor *im)
{
    lc_tensor *S = lc_mel_image_to_power(c, image);
    lc_tensor *mag = S ? lc_mel_to_stft_mag(c, S) : NULL;
    lc_tensor *y = mag ? lc_griffin_lim(c, mag, c->n_iter, init, g, re, im) : NULL;
    lc_tensor_free(S);
    lc_tensor_free(mag);
    return y;
}
