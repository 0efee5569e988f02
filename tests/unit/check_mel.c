/* Mel spectrogram images and Griffin-Lim against the golden Mel cases of
 * tiny-a (numpy re-implementation of teticio's Mel with librosa 0.10
 * semantics), plus analytic checks: the Slaney mel scale and a sine
 * sweep whose peak follows the expected mel bin. */
#include "testutil.h"

#include "audio/mel.h"
#include "core/rng.h"
#include "core/safetensors.h"

#define GOLD "golden/tiny-a/golden.safetensors"

static lc_st_file *golden(void)
{
    lc_st_file *g = lc_st_open(lt_data(GOLD));
    ck_assert_msg(g != NULL, "%s", lc_errmsg());
    return g;
}

static lc_tensor *gget(lc_st_file *g, const char *name)
{
    lc_tensor *t = lc_st_get(g, name);
    ck_assert_msg(t != NULL, "golden %s: %s", name, lc_errmsg());
    return t;
}

static lc_mel_config small_config(void)
{
    return (lc_mel_config){32, 32, 22050, 512, 128, 80, 32};
}

/* sum |a-b|^2 / sum |b|^2, square-rooted (spectral convergence when a, b
 * are magnitudes) */
static double rel_l2(const lc_tensor *a, const lc_tensor *b)
{
    ck_assert_int_eq(lc_tensor_numel(a), lc_tensor_numel(b));
    double num = 0, den = 0;
    for (int64_t i = 0; i < lc_tensor_numel(a); i++) {
        double x = lc_tensor_get(a, i), y = lc_tensor_get(b, i);
        num += (x - y) * (x - y);
        den += y * y;
    }
    return sqrt(num / den);
}

START_TEST(mel_scale)
{
    /* Slaney: linear 200/3 Hz per mel below 1 kHz, log above (27 mels per
     * factor 6.4) */
    ck_assert(fabs(lc_mel_from_hz(1000) - 15) < 1e-12);
    ck_assert(fabs(lc_mel_from_hz(500) - 7.5) < 1e-12);
    ck_assert(fabs(lc_mel_from_hz(6400) - 42) < 1e-12);
    for (double hz = 10; hz < 20000; hz *= 1.37)
        ck_assert(fabs(lc_mel_to_hz(lc_mel_from_hz(hz)) - hz) < 1e-9 * hz);
}
END_TEST

START_TEST(filterbank_golden)
{
    lc_st_file *g = golden();
    lc_tensor *ref = gget(g, "mel/small/mel_filterbank");
    lc_tensor *fb = lc_mel_filterbank(22050, 512, 32, 0, 11025);
    ck_assert_msg(fb != NULL, "%s", lc_errmsg());
    double d = lt_max_abs_diff(fb, ref), m = lt_max_abs(ref);
    ck_assert_msg(d <= 1e-6 * m, "filterbank max diff %g (max %g)", d, m);
    lc_tensor_free(fb);
    lc_tensor_free(ref);
    lc_st_close(g);
}
END_TEST

/* image bytes: exact, or off by one on at most 1% (log10 in f32 vs f64
 * can move a value sitting on a rounding boundary) */
static void check_image(const lc_tensor *img, const lc_tensor *ref, const char *what)
{
    ck_assert(lc_tensor_same_shape(img, ref));
    int64_t n = lc_tensor_numel(ref), off = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs(lc_tensor_get(img, i) - lc_tensor_get(ref, i));
        ck_assert_msg(d <= 1, "%s: byte %lld differs by %g", what, (long long)i, d);
        off += d > 0;
    }
    fprintf(stderr, "%s: %lld of %lld bytes off by one\n", what, (long long)off, (long long)n);
    ck_assert_msg(off <= n / 100, "%s: %lld bytes off by one", what, (long long)off);
}

START_TEST(small_golden)
{
    lc_st_file *g = golden();
    lc_mel_config c = small_config();
    lc_tensor *slice = gget(g, "mel/small/audio_slice");
    ck_assert_int_eq(lc_tensor_numel(slice), lc_mel_slice_size(&c));
    lc_tensor *P = lc_mel_power(&c, slice);
    ck_assert_msg(P != NULL, "%s", lc_errmsg());
    lc_tensor *Pref = gget(g, "mel/small/mel_power");
    double d = lt_max_abs_diff(P, Pref), m = lt_max_abs(Pref);
    fprintf(stderr, "small mel power: max diff %g of max %g\n", d, m);
    ck_assert_msg(d <= 1e-5 * m, "mel power diff %g (max %g)", d, m);
    lc_tensor *db = lc_mel_power_to_db(P, c.top_db);
    lc_tensor *dbref = gget(g, "mel/small/log_S");
    d = lt_max_abs_diff(db, dbref);
    ck_assert_msg(d <= 1e-3, "log_S diff %g dB", d);
    lc_tensor *img = lc_mel_image(&c, slice), *iref = gget(g, "mel/small/image_u8");
    check_image(img, iref, "mel/small");
    lc_tensor_free(slice), lc_tensor_free(P), lc_tensor_free(Pref), lc_tensor_free(db);
    lc_tensor_free(dbref), lc_tensor_free(img), lc_tensor_free(iref);
    lc_st_close(g);
}
END_TEST

START_TEST(default_golden)
{
    lc_st_file *g = golden();
    lc_mel_config c;
    lc_mel_config_default(&c);
    lc_tensor *audio = gget(g, "mel/default/audio");
    /* load_audio zero-pads to x_res*hop; slice 0 is the first size-1 */
    int64_t n = lc_mel_slice_size(&c), have = lc_tensor_numel(audio);
    lc_tensor *slice = lc_tensor_zeros(LC_F32, 1, (int64_t[]){n});
    float *s = lc_tensor_data(slice);
    for (int64_t i = 0; i < have && i < n; i++)
        s[i] = (float)lc_tensor_get(audio, i);
    lc_tensor *P = lc_mel_power(&c, slice);
    ck_assert_msg(P != NULL, "%s", lc_errmsg());
    lc_tensor *db = lc_mel_power_to_db(P, c.top_db), *dbref = gget(g, "mel/default/log_S");
    double d = lt_max_abs_diff(db, dbref);
    fprintf(stderr, "default log_S: max diff %g dB\n", d);
    ck_assert_msg(d <= 2e-3, "log_S diff %g dB", d);
    lc_tensor *img = lc_mel_db_to_image(db, c.top_db), *iref = gget(g, "mel/default/image_u8");
    check_image(img, iref, "mel/default");
    lc_tensor_free(audio), lc_tensor_free(slice), lc_tensor_free(P), lc_tensor_free(db);
    lc_tensor_free(dbref), lc_tensor_free(img), lc_tensor_free(iref);
    lc_st_close(g);
}
END_TEST

START_TEST(griffin_lim_golden)
{
    lc_st_file *g = golden();
    lc_mel_config c = small_config();
    lc_tensor *re = gget(g, "mel/small/gl_angles_init_real");
    lc_tensor *im = gget(g, "mel/small/gl_angles_init_imag");
    lc_tensor *mref = gget(g, "mel/small/gl_stft_mag"), *aref = gget(g, "mel/small/gl_audio");
    /* Griffin-Lim alone, from the reference magnitudes: only FFT rounding
     * (f32 here) separates the two */
    lc_tensor *y = lc_griffin_lim(&c, mref, c.n_iter, LC_GL_GIVEN, NULL, re, im);
    ck_assert_msg(y != NULL, "%s", lc_errmsg());
    double e = rel_l2(y, aref);
    fprintf(stderr, "Griffin-Lim from reference magnitudes: relative L2 error %g\n", e);
    ck_assert_msg(e < 1e-3, "Griffin-Lim relative error %g", e);
    lc_tensor_free(y);
    /* mel pseudo-inverse: an underdetermined NNLS whose answer depends on
     * the solver; started where librosa starts and stopped by L-BFGS-B's
     * tests, it lands on librosa's answer */
    lc_tensor *img = gget(g, "mel/small/image_u8");
    lc_tensor *S = lc_mel_image_to_power(&c, img);
    lc_tensor *mag = lc_mel_to_stft_mag(&c, S);
    ck_assert_msg(mag != NULL, "%s", lc_errmsg());
    e = rel_l2(mag, mref);
    fprintf(stderr, "mel_to_stft magnitudes: relative L2 error %g\n", e);
    ck_assert_msg(e < 1e-6, "mel_to_stft relative error %g", e);
    /* whole inverse against the reference audio */
    y = lc_mel_image_to_audio(&c, img, LC_GL_GIVEN, NULL, re, im);
    ck_assert_msg(y != NULL, "%s", lc_errmsg());
    ck_assert_int_eq(lc_tensor_numel(y), 31 * 128);
    e = rel_l2(y, aref);
    fprintf(stderr, "image_to_audio vs golden audio: relative L2 error %g\n", e);
    ck_assert_msg(e < 1e-3, "image_to_audio relative error %g", e);
    lc_tensor_free(y), lc_tensor_free(img), lc_tensor_free(S), lc_tensor_free(mag);
    lc_tensor_free(re), lc_tensor_free(im), lc_tensor_free(mref), lc_tensor_free(aref);
    lc_st_close(g);
}
END_TEST

/* a linear sweep 200 Hz -> 8 kHz: in every frame the brightest mel bin is
 * the filter whose centre is nearest the instantaneous frequency (Slaney
 * scale: centre i is mel_to_hz((i + 1) * mel(sr/2) / (n + 1))) */
START_TEST(sine_sweep)
{
    lc_mel_config c = small_config();
    int64_t n = lc_mel_slice_size(&c);
    double f0 = 200, f1 = 8000, dur = (double)n / c.sample_rate;
    lc_tensor *y = lc_tensor_new(LC_F32, 1, (int64_t[]){n});
    float *p = lc_tensor_data(y);
    for (int64_t i = 0; i < n; i++) {
        double t = (double)i / c.sample_rate;
        p[i] = (float)(0.5 * sin(2 * M_PI * (f0 * t + (f1 - f0) * t * t / (2 * dur))));
    }
    lc_tensor *P = lc_mel_power(&c, y);
    ck_assert_msg(P != NULL, "%s", lc_errmsg());
    const float *pp = lc_tensor_data(P);
    double mmax = lc_mel_from_hz(c.sample_rate / 2.0);
    int last = -1;
    /* skip the edge frames, whose window is half zero padding */
    for (int t = 2; t < c.x_res - 2; t++) {
        double f = f0 + (f1 - f0) * (t * (double)c.hop_length / c.sample_rate) / dur;
        int expect = (int)lround(lc_mel_from_hz(f) / mmax * (c.y_res + 1)) - 1;
        int best = 0;
        for (int m = 1; m < c.y_res; m++)
            if (pp[m * c.x_res + t] > pp[best * c.x_res + t])
                best = m;
        ck_assert_msg(abs(best - expect) <= 1, "frame %d (%.0f Hz): peak bin %d, expected %d", t,
                      f, best, expect);
        ck_assert_msg(best >= last, "frame %d: peak moved down (%d after %d)", t, best, last);
        last = best;
    }
    lc_tensor_free(P);
    lc_tensor_free(y);
}
END_TEST

START_TEST(bad_input)
{
    lc_mel_config c = small_config();
    c.n_fft = 511;
    ck_assert_int_eq(lc_mel_config_check(&c), LC_ERR);
    ck_assert_ptr_nonnull(strstr(lc_errmsg(), "n_fft"));
    c = small_config();
    c.y_res = 300;
    ck_assert_int_eq(lc_mel_config_check(&c), LC_ERR);
    ck_assert_ptr_nonnull(strstr(lc_errmsg(), "y_res"));
    c = small_config();
    lc_tensor *img = lc_tensor_zeros(LC_U8, 2, (int64_t[]){16, 32});
    ck_assert_ptr_null(lc_mel_image_to_power(&c, img));
    ck_assert_ptr_nonnull(strstr(lc_errmsg(), "y_res"));
    lc_tensor *mag = lc_tensor_zeros(LC_F64, 2, (int64_t[]){100, 8});
    ck_assert_ptr_null(lc_griffin_lim(&c, mag, 2, LC_GL_ZERO, NULL, NULL, NULL));
    ck_assert_ptr_nonnull(strstr(lc_errmsg(), "257"));
    ck_assert_ptr_null(lc_mel_filterbank(22050, 511, 32, 0, 11025));
    lc_tensor_free(img);
    lc_tensor_free(mag);
}
END_TEST

/* zero-phase and seeded random starts are deterministic and differ */
START_TEST(phase_inits)
{
    lc_mel_config c = small_config();
    c.n_iter = 4;
    lc_tensor *mag = lc_tensor_new(LC_F64, 2, (int64_t[]){257, 32});
    double *m = lc_tensor_data(mag);
    for (int i = 0; i < 257 * 32; i++)
        m[i] = 1.0 / (1 + i % 257);
    lc_generator *g1 = lc_generator_new(5, LC_RNG_CPU), *g2 = lc_generator_new(5, LC_RNG_CPU);
    lc_tensor *a = lc_griffin_lim(&c, mag, 4, LC_GL_RANDOM, g1, NULL, NULL);
    lc_tensor *b = lc_griffin_lim(&c, mag, 4, LC_GL_RANDOM, g2, NULL, NULL);
    lc_tensor *z = lc_griffin_lim(&c, mag, 4, LC_GL_ZERO, NULL, NULL, NULL);
    ck_assert(a && b && z);
    ck_assert(lt_max_abs_diff(a, b) == 0);
    ck_assert(lt_max_abs_diff(a, z) > 1e-3);
    ck_assert_ptr_null(lc_griffin_lim(&c, mag, 4, LC_GL_RANDOM, NULL, NULL, NULL));
    lc_tensor_free(a), lc_tensor_free(b), lc_tensor_free(z), lc_tensor_free(mag);
    lc_generator_free(g1), lc_generator_free(g2);
}
END_TEST

/* n_fft 64 with 32 mel bins: filters narrower than an FFT bin, some empty,
 * some on the same bins, so the mel pseudo-inverse takes the eigen route
 * (the Cholesky one needs independent filters). The answer must still be
 * finite, non-negative and fit the spectrogram as well as the
 * conflicting rows allow. */
START_TEST(degenerate_filterbank)
{
    lc_mel_config c = {32, 32, 22050, 64, 16, 80, 4};
    lc_tensor *fb = lc_mel_filterbank(22050, 64, 32, 0, 11025);
    const float *f = lc_tensor_data(fb);
    int empty = 0;
    for (int i = 0; i < 32; i++) {
        double sum = 0;
        for (int k = 0; k < 33; k++)
            sum += f[i * 33 + k];
        empty += sum == 0;
    }
    ck_assert_msg(empty > 0, "expected empty filters at n_fft 64");
    lc_tensor *y = lc_tensor_new(LC_F32, 1, (int64_t[]){lc_mel_slice_size(&c)});
    float *p = lc_tensor_data(y);
    for (int64_t i = 0; i < lc_tensor_numel(y); i++)
        p[i] = (float)sin(0.3 * i) * (float)(1 + (i % 7));
    lc_tensor *img = lc_mel_image(&c, y);
    lc_tensor *S = lc_mel_image_to_power(&c, img);
    lc_tensor *mag = lc_mel_to_stft_mag(&c, S);
    ck_assert_msg(mag != NULL, "%s", lc_errmsg());
    const double *m = lc_tensor_data(mag), *sp = lc_tensor_data(S);
    double num = 0, den = 0;
    for (int i = 0; i < 32; i++)
        for (int t = 0; t < 32; t++) {
            double acc = 0;
            for (int k = 0; k < 33; k++) {
                double v = m[k * 32 + t];
                ck_assert(isfinite(v) && v >= 0);
                acc += f[i * 33 + k] * v * v;
            }
            num += (acc - sp[i * 32 + t]) * (acc - sp[i * 32 + t]);
            den += sp[i * 32 + t] * sp[i * 32 + t];
        }
    fprintf(stderr, "degenerate filterbank: relative residual %g (%d empty filters)\n",
            sqrt(num / den), empty);
    ck_assert_msg(sqrt(num / den) < 0.05, "residual %g", sqrt(num / den));
    lc_tensor_free(fb), lc_tensor_free(y), lc_tensor_free(img), lc_tensor_free(S);
    lc_tensor_free(mag);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("mel");
    TCase *tc = tcase_create("mel");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, mel_scale);
    tcase_add_test(tc, filterbank_golden);
    tcase_add_test(tc, small_golden);
    tcase_add_test(tc, default_golden);
    tcase_add_test(tc, griffin_lim_golden);
    tcase_add_test(tc, sine_sweep);
    tcase_add_test(tc, bad_input);
    tcase_add_test(tc, phase_inits);
    tcase_add_test(tc, degenerate_filterbank);
    suite_add_tcase(s, tc);
    return lt_run(s);
}
