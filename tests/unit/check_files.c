/* File formats: safetensors (round trips, golden file, a corrupt-file
 * suite, fuzzing) and audio (WAV/FLAC/OGG, resampling, metadata, corrupt
 * input). Images are in check_image.c. */
#include "core/audio.h"
#include "core/image.h"
#include "core/safetensors.h"
#include "files_util.h"

/* ---- safetensors ---- */

static void st_raw(const char *path, uint64_t hlen_field, const char *json, const void *data,
                   size_t ndata)
{
    size_t jn = strlen(json);
    unsigned char *b = malloc(8 + jn + ndata + 1);
    for (int i = 0; i < 8; i++)
        b[i] = (unsigned char)(hlen_field >> (8 * i));
    memcpy(b + 8, json, jn);
    if (ndata)
        memcpy(b + 8 + jn, data, ndata);
    write_bytes(path, b, 8 + jn + ndata);
    free(b);
}

/* header length taken from the JSON itself */
static void st_json(const char *path, const char *json, size_t ndata)
{
    unsigned char *zeros = calloc(1, ndata + 1);
    st_raw(path, strlen(json), json, zeros, ndata);
    free(zeros);
}

static void st_expect_fail(const char *path, const char *a, const char *b)
{
    lc_err_clear();
    lc_st_file *f = lc_st_open(path);
    ck_assert_msg(f == NULL, "%s opened but should not", path);
    assert_err(path, NULL);
    assert_err(a, b);
}

START_TEST(test_st_roundtrip)
{
    make_tmpdir();
    int64_t s23[2] = {2, 3};
    const lc_dtype dts[7] = {LC_F32, LC_F16, LC_BF16, LC_I32, LC_I64, LC_U8, LC_F64};
    const char *names[10] = {"f32", "f16", "bf16", "i32", "i64", "u8", "f64",
                             "strided", "scalar", "empty"};
    lc_tensor *ts[10];
    for (int d = 0; d < 7; d++) {
        ts[d] = lc_tensor_new(dts[d], 2, s23);
        /* small integers and halves are exact in every dtype */
        for (int i = 0; i < 6; i++)
            lc_tensor_set(ts[d], i, dts[d] == LC_U8 ? 250 - i : (i - 2) * (lc_dtype_is_float(dts[d]) ? 0.5 : 7));
    }
    int64_t s34[2] = {3, 4};
    lc_tensor *base = lc_tensor_new(LC_F32, 2, s34);
    for (int i = 0; i < 12; i++)
        lc_tensor_set(base, i, i * 1.25 - 3);
    ts[7] = lc_tensor_transpose(base, 0, 1); /* [4,3], strides (1,4) */
    ck_assert(!lc_tensor_is_contiguous(ts[7]));
    ts[8] = lc_tensor_scalar_f32(3.5f);
    int64_t s03[2] = {0, 3};
    ts[9] = lc_tensor_new(LC_I64, 2, s03);
    const char *mk[2] = {"format", "note"};
    const char *mv[2] = {"pt", "h\xc3\xa9llo \"quoted\"\n\ttab \\ end"};
    const char *path = tmp("all.safetensors");
    ck_assert_int_eq(lc_st_save(path, 10, names, ts, 2, mk, mv), LC_OK);
    ck_assert_int_eq(tmp_entries(), 1); /* no temporary file left */

    size_t n;
    unsigned char *raw = read_bytes(path, &n);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = hlen << 8 | raw[i];
    ck_assert_uint_eq((8 + hlen) % 8, 0);
    free(raw);

    lc_st_file *f = lc_st_open(path);
    ck_assert_msg(f != NULL, "%s", lc_errmsg());
    ck_assert_int_eq(lc_st_count(f), 10);
    for (int k = 0; k < 10; k++) {
        lc_tensor *t = lc_st_get(f, names[k]);
        ck_assert_msg(t != NULL, "%s", lc_errmsg());
        ck_assert_int_eq(t->dtype, ts[k]->dtype);
        ck_assert(lc_tensor_same_shape(t, ts[k]));
        ck_assert(lt_max_abs_diff(t, ts[k]) == 0);
        /* the writer aligns every tensor, so all are mapped in place */
        ck_assert_int_eq(t->storage->kind, LC_STORAGE_MMAP);
        ck_assert_uint_eq((uintptr_t)lc_tensor_data(t) % lc_dtype_size(t->dtype), 0);
        /* the file starts on a huge page: large weights can be mapped on
         * 2 MB pages */
        ck_assert_uint_eq((uintptr_t)lc_mapping_data(t->storage->mapping) % (2u << 20), 0);
        lc_dtype dt;
        int nd;
        int64_t sh[LC_MAXDIM];
        ck_assert_int_eq(lc_st_info(f, lc_st_find(f, names[k]), &dt, &nd, sh), LC_OK);
        ck_assert_int_eq(nd, ts[k]->ndim);
        lc_tensor_free(t);
    }
    ck_assert_int_eq(lc_st_metadata_count(f), 2);
    ck_assert_str_eq(lc_st_metadata(f, "format"), "pt");
    ck_assert_str_eq(lc_st_metadata(f, "note"), mv[1]);
    ck_assert_ptr_null(lc_st_metadata(f, "missing"));
    ck_assert_int_eq(lc_st_find(f, "nope"), -1);
    ck_assert_ptr_null(lc_st_get(f, "nope"));
    assert_err("no tensor named 'nope'", path);
    /* tensors outlive the file handle: they hold the mapping */
    lc_tensor *keep = lc_st_get(f, "strided");
    lc_st_close(f);
    ck_assert_double_eq(lc_tensor_get(keep, 1), 2.0); /* element [0,1] = base[1,0] = 4*1.25-3 */
    lc_tensor_free(keep);
    for (int k = 0; k < 10; k++)
        lc_tensor_free(ts[k]);
    lc_tensor_free(base);
    remove_tmpdir();
}
END_TEST

START_TEST(test_st_save_errors)
{
    make_tmpdir();
    int64_t s2[1] = {2};
    lc_tensor *a = lc_tensor_zeros(LC_F32, 1, s2);
    lc_tensor *ts[2] = {a, a};
    const char *dup[2] = {"x", "x"};
    ck_assert_int_eq(lc_st_save(tmp("d.safetensors"), 2, dup, ts, 0, NULL, NULL), LC_ERR);
    assert_err("'x' given twice", NULL);
    const char *meta[1] = {"__metadata__"};
    ck_assert_int_eq(lc_st_save(tmp("m.safetensors"), 1, meta, ts, 0, NULL, NULL), LC_ERR);
    const char *ok[1] = {"a"};
    ck_assert_int_eq(lc_st_save(tmp("missing/x.safetensors"), 1, ok, ts, 0, NULL, NULL), LC_ERR);
    assert_err("missing", NULL);
    ck_assert_int_eq(tmp_entries(), 0);
    /* a failed save leaves an existing file untouched */
    ck_assert_int_eq(lc_st_save(tmp("keep.safetensors"), 1, ok, ts, 0, NULL, NULL), LC_OK);
    ck_assert_int_eq(lc_st_save(tmp("keep.safetensors"), 2, dup, ts, 0, NULL, NULL), LC_ERR);
    lc_st_file *f = lc_st_open(tmp("keep.safetensors"));
    ck_assert_ptr_nonnull(f);
    ck_assert_str_eq(lc_st_name(f, 0), "a");
    lc_st_close(f);
    ck_assert_int_eq(tmp_entries(), 1);
    lc_tensor_free(a);
    remove_tmpdir();
}
END_TEST

START_TEST(test_st_golden)
{
    /* names, dtypes and shapes as written by tools/ref/make_golden.py */
    lc_st_file *f = lc_st_open(lt_data("golden/tiny-a/golden.safetensors"));
    ck_assert_msg(f != NULL, "%s", lc_errmsg());
    ck_assert_int_eq(lc_st_count(f), 153);
    ck_assert_str_eq(lc_st_metadata(f, "config"), "tiny-a");
    ck_assert_str_eq(lc_st_metadata(f, "seed"), "1");
    lc_tensor *t = lc_st_get(f, "mel/default/log_S");
    ck_assert_ptr_nonnull(t);
    ck_assert_int_eq(t->dtype, LC_F64);
    ck_assert_int_eq(t->ndim, 2);
    ck_assert_int_eq(t->shape[0], 256);
    ck_assert_int_eq(t->shape[1], 256);
    lc_tensor_free(t);
    t = lc_st_get(f, "audio_diffusion/gl_angles_init_real");
    ck_assert_int_eq(t->shape[0], 257);
    ck_assert_int_eq(t->shape[1], 32);
    lc_tensor_free(t);
    lc_st_close(f);
}
END_TEST

START_TEST(test_st_unaligned)
{
    make_tmpdir();
    /* valid file whose f32 tensor starts at an odd offset: copied, not mapped */
    const char *h = "{\"b\":{\"dtype\":\"U8\",\"shape\":[3],\"data_offsets\":[0,3]},"
                    "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[3,11]}}";
    unsigned char data[11] = {7, 8, 9};
    float v[2] = {1.5f, -2.25f};
    memcpy(data + 3, v, 8);
    char json[256];
    snprintf(json, sizeof json, "%-*s", (int)((strlen(h) + 8 + 7) / 8 * 8 - 8), h);
    st_raw(tmp("u.safetensors"), strlen(json), json, data, sizeof data);
    lc_st_file *f = lc_st_open(tmp("u.safetensors"));
    ck_assert_msg(f != NULL, "%s", lc_errmsg());
    ck_assert_str_eq(lc_st_name(f, 0), "b"); /* header order */
    lc_tensor *a = lc_st_get(f, "a");
    ck_assert_ptr_nonnull(a);
    ck_assert_int_eq(a->storage->kind, LC_STORAGE_MALLOC);
    ck_assert_float_eq(((float *)lc_tensor_data(a))[0], 1.5f);
    ck_assert_float_eq(((float *)lc_tensor_data(a))[1], -2.25f);
    lc_tensor *b = lc_st_get(f, "b");
    ck_assert_int_eq(((unsigned char *)lc_tensor_data(b))[2], 9);
    lc_tensor_free(a);
    lc_tensor_free(b);
    lc_st_close(f);
    remove_tmpdir();
}
END_TEST

START_TEST(test_st_corrupt)
{
    make_tmpdir();
    const char *p = tmp("x.safetensors");
    write_bytes(p, "", 0);
    st_expect_fail(p, "0 bytes", "too small");
    write_bytes(p, "\x10\0\0\0\0\0\0", 7);
    st_expect_fail(p, "7 bytes", "too small");
    st_raw(p, 1000, "{}", NULL, 0);
    st_expect_fail(p, "header length 1000", "larger than the rest");
    st_raw(p, UINT64_MAX, "{}", NULL, 0);
    st_expect_fail(p, "absurd", NULL);
    st_json(p, "{\"a\": nonsense}", 0);
    st_expect_fail(p, "not valid JSON", NULL);
    st_json(p, "[1, 2, 3]", 0);
    st_expect_fail(p, "header is an array", "expected a JSON object");
    st_json(p, "{\"w\":{\"dtype\":\"F99\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4);
    st_expect_fail(p, "tensor 'w'", "unknown dtype \"F99\"");
    st_json(p, "{\"w\":{\"dtype\":\"BOOL\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1);
    st_expect_fail(p, "tensor 'w'", "unsupported dtype BOOL");
    st_json(p, "{\"a.weight\":{\"dtype\":\"F32\",\"shape\":[5,6],\"data_offsets\":[0,100]}}", 100);
    st_expect_fail(p, "tensor 'a.weight': data_offsets [0, 100] hold 100 bytes but F32 [5,6] "
                      "needs 120",
                   NULL);
    st_json(p, "{\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 8);
    st_expect_fail(p, "tensor 'w'", "past the end of the 8-byte data area");
    st_json(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
               "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}", 16);
    st_expect_fail(p, "overlap", "'a'");
    st_json(p, "{\"w\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,0]}}", 0);
    st_expect_fail(p, "tensor 'w'", "-1 is not a non-negative integer");
    st_json(p, "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0.5,4.5]}}", 8);
    st_expect_fail(p, "tensor 'w'", "data_offsets must be non-negative integers");
    st_json(p, "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[\"0\",\"4\"]}}", 4);
    st_expect_fail(p, "tensor 'w'", "data_offsets must be non-negative integers");
    st_json(p, "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,0]}}", 4);
    st_expect_fail(p, "tensor 'w'", "end before they begin");
    st_json(p, "{\"w\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4);
    st_expect_fail(p, "tensor 'w'", "7 dimensions");
    st_json(p, "{\"w\":{\"dtype\":\"F32\",\"shape\":\"4\",\"data_offsets\":[0,16]}}", 16);
    st_expect_fail(p, "tensor 'w'", "shape is a string");
    st_json(p, "{\"w\":{\"dtype\":\"F32\",\"shape\":[4]}}", 16);
    st_expect_fail(p, "tensor 'w'", "missing \"data_offsets\"");
    st_json(p, "{\"w\":[1,2]}", 0);
    st_expect_fail(p, "tensor 'w'", "expected an object");
    st_json(p, "{\"w\":{\"dtype\":\"F32\",\"shape\":[4000000000,4000000000,4000000000],"
               "\"data_offsets\":[0,16]}}", 16);
    st_expect_fail(p, "tensor 'w'", "too large");
    st_json(p, "{\"__metadata__\":{\"k\":1}}", 0);
    st_expect_fail(p, "__metadata__ entry 'k'", "expected a string");
    st_json(p, "{\"__metadata__\":[]}", 0);
    st_expect_fail(p, "__metadata__ is an array", NULL);
    st_json(p, "{\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
               "\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}", 2);
    st_expect_fail(p, "'w' appears twice", NULL);
    st_json(p, "{} garbage", 0);
    st_expect_fail(p, "unexpected bytes after the JSON header", NULL);
    /* padding spaces after the JSON are fine; so is an empty file of tensors */
    st_json(p, "{}      ", 0);
    lc_st_file *f = lc_st_open(p);
    ck_assert_msg(f != NULL, "%s", lc_errmsg());
    ck_assert_int_eq(lc_st_count(f), 0);
    lc_st_close(f);
    /* a directory and a missing file */
    st_expect_fail(tmpdir, "not a regular file", NULL);
    st_expect_fail(tmp("none.safetensors"), "cannot open", NULL);
    remove_tmpdir();
}
END_TEST

/* Random byte flips in a valid file: every outcome must be an error or a
 * consistent file, never a crash (the ASan build checks the reads). */
START_TEST(test_st_fuzz)
{
    make_tmpdir();
    int64_t s[2] = {3, 5};
    lc_tensor *a = lc_tensor_zeros(LC_F32, 2, s), *b = lc_tensor_zeros(LC_F16, 1, s);
    lc_tensor *ts[2] = {a, b};
    const char *names[2] = {"layer.weight", "layer.bias"};
    const char *mk[1] = {"k"}, *mv[1] = {"v"};
    const char *src = tmp("src.safetensors"), *dst = tmp("fuzz.safetensors");
    ck_assert_int_eq(lc_st_save(src, 2, names, ts, 1, mk, mv), LC_OK);
    size_t n;
    unsigned char *orig = read_bytes(src, &n);
    unsigned char *buf = malloc(n);
    int opened = 0;
    for (int it = 0; it < 400; it++) {
        memcpy(buf, orig, n);
        int flips = 1 + (int)(lcg() % 4);
        for (int k = 0; k < flips; k++) {
            size_t pos = lcg() % (it < 50 ? 8 : n); /* first runs hit the length */
            buf[pos] = (unsigned char)lcg();
        }
        size_t len = it % 7 == 0 ? lcg() % (n + 1) : n; /* some truncated */
        write_bytes(dst, buf, len);
        lc_st_file *f = lc_st_open(dst);
        if (f) {
            opened++;
            for (int i = 0; i < lc_st_count(f); i++) {
                lc_tensor *t = lc_st_get_index(f, i);
                ck_assert_ptr_nonnull(t);
                volatile double sum = 0;
                for (int64_t j = 0; j < lc_tensor_numel(t); j++)
                    sum += lc_tensor_get(t, j);
                lc_tensor_free(t);
            }
            lc_st_close(f);
        } else {
            ck_assert(strlen(lc_errmsg()) > 10);
        }
    }
    ck_assert_int_gt(opened, 0); /* flips in tensor data leave valid files */
    free(buf);
    free(orig);
    lc_tensor_free(a);
    lc_tensor_free(b);
    remove_tmpdir();
}
END_TEST

/* ---- audio ---- */

static lc_tensor *sine(int ch, int64_t n, double freq, int rate, double amp)
{
    int64_t s[2] = {ch, n};
    lc_tensor *t = lc_tensor_new(LC_F32, 2, s);
    float *d = lc_tensor_data(t);
    for (int c = 0; c < ch; c++)
        for (int64_t i = 0; i < n; i++)
            d[c * n + i] = (float)(amp * sin(2 * M_PI * freq * (double)i / rate + c));
    return t;
}

/* |DFT| at one frequency over samples [a, b) */
static double dft_mag(const float *x, int64_t a, int64_t b, double freq, int rate)
{
    double re = 0, im = 0;
    for (int64_t i = a; i < b; i++) {
        re += x[i] * cos(2 * M_PI * freq * (double)i / rate);
        im -= x[i] * sin(2 * M_PI * freq * (double)i / rate);
    }
    return 2 * sqrt(re * re + im * im) / (double)(b - a);
}

START_TEST(test_audio_real_file)
{
    const char *p = lt_data("test_audio/jfk_16k_mono_s16.wav");
    int rate = 0;
    lc_tensor *t = lc_audio_load(p, 0, 0, &rate);
    ck_assert_msg(t != NULL, "%s", lc_errmsg());
    ck_assert_int_eq(rate, 16000);
    ck_assert_int_eq(t->ndim, 2);
    ck_assert_int_eq(t->shape[0], 1);
    ck_assert_int_eq(t->shape[1], 176000); /* (352044 - 44) / 2 bytes */
    /* samples are the file's s16 values over 32768, read here by hand */
    size_t n;
    unsigned char *raw = read_bytes(p, &n);
    const float *d = lc_tensor_data(t);
    for (int64_t i = 0; i < 176000; i += 7) {
        int16_t k = (int16_t)(raw[44 + 2 * i] | raw[45 + 2 * i] << 8);
        ck_assert_float_eq(d[i], (float)k / 32768.0f);
    }
    free(raw);
    lc_audio_info info;
    ck_assert_int_eq(lc_audio_info_read(p, &info), LC_OK);
    ck_assert_int_eq(info.frames, 176000);
    ck_assert_int_eq(info.channels, 1);
    ck_assert_str_eq(info.format, "WAV");
    lc_audio_info_clear(&info);
    /* the 24-bit stereo FLAC original, mixed to mono and resampled to 16
     * kHz with soxr, is close to sox's (dithered, 16-bit) conversion */
    lc_tensor *r = lc_audio_load(lt_data("test_audio/jfk.flac"), 16000, 1, &rate);
    ck_assert_msg(r != NULL, "%s", lc_errmsg());
    ck_assert_int_eq(rate, 16000);
    ck_assert_int_eq(r->shape[0], 1);
    ck_assert_int_eq(r->shape[1], 176000);
    double err = 0, sig = 0;
    const float *q = lc_tensor_data(r);
    for (int64_t i = 0; i < 176000; i++) {
        err += (q[i] - d[i]) * (q[i] - d[i]);
        sig += d[i] * d[i];
    }
    ck_assert_msg(sqrt(err / sig) < 0.01, "relative RMS difference %g", sqrt(err / sig));
    lc_tensor *st = lc_audio_load(lt_data("test_audio/jfk_44k1_stereo_s16.wav"), 0, 0, NULL);
    ck_assert_int_eq(st->shape[0], 2);
    ck_assert_int_eq(st->shape[1], 485100);
    lc_tensor_free(st), lc_tensor_free(r), lc_tensor_free(t);
}
END_TEST

START_TEST(test_audio_roundtrip)
{
    make_tmpdir();
    int64_t s[2] = {2, 3000};
    lc_tensor *t16 = lc_tensor_new(LC_F32, 2, s), *t24 = lc_tensor_new(LC_F32, 2, s);
    lc_tensor *tf = lc_tensor_new(LC_F32, 2, s);
    for (int i = 0; i < 6000; i++) {
        int k = (int)(lcg() % 65536) - 32768;
        ((float *)lc_tensor_data(t16))[i] = (float)k / 32768.0f;
        int k24 = (int)(lcg() % 16777216) - 8388608;
        ((float *)lc_tensor_data(t24))[i] = (float)k24 / 8388608.0f;
        ((float *)lc_tensor_data(tf))[i] = (float)(lcg() % 100000) / 31337.0f - 1.5f;
    }
    struct {
        const char *name;
        lc_tensor *t;
        lc_audio_encoding enc;
    } cases[] = {{"a.wav", t16, LC_AUDIO_PCM16}, {"b.flac", t16, LC_AUDIO_PCM16},
                 {"c.wav", t24, LC_AUDIO_PCM24}, {"d.flac", t24, LC_AUDIO_PCM24},
                 {"e.wav", tf, LC_AUDIO_FLOAT}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const char *p = tmp(cases[c].name);
        ck_assert_msg(lc_audio_save(cases[c].t, p, 22050, cases[c].enc, 0, NULL, NULL) == LC_OK,
                      "%s", lc_errmsg());
        int rate;
        lc_tensor *r = lc_audio_load(p, 0, 0, &rate);
        ck_assert_msg(r != NULL, "%s", lc_errmsg());
        ck_assert_int_eq(rate, 22050);
        ck_assert_msg(lt_max_abs_diff(r, cases[c].t) == 0, "%s not exact", cases[c].name);
        lc_tensor_free(r);
    }
    ck_assert_int_eq(tmp_entries(), 5);
    /* longer than the first read buffer (2^20 frames): the tensor grows */
    lc_tensor *lng = sine(1, 1100000, 100, 44100, 0.5);
    ck_assert_int_eq(lc_audio_save(lng, tmp("long.wav"), 44100, LC_AUDIO_FLOAT, 0, NULL, NULL), LC_OK);
    lc_tensor *lr = lc_audio_load(tmp("long.wav"), 0, 0, NULL);
    ck_assert_int_eq(lr->shape[1], 1100000);
    ck_assert(lt_max_abs_diff(lr, lng) == 0);
    lc_tensor_free(lr), lc_tensor_free(lng);
    unlink(tmp("long.wav"));
    /* PCM clamps; NaN becomes silence */
    int64_t s1[1] = {4};
    lc_tensor *x = lc_tensor_new(LC_F32, 1, s1);
    float xv[4] = {2.0f, -3.0f, NAN, 0.25f};
    memcpy(lc_tensor_data(x), xv, sizeof xv);
    ck_assert_int_eq(lc_audio_save(x, tmp("clip.wav"), 8000, LC_AUDIO_PCM16, 0, NULL, NULL), LC_OK);
    lc_tensor *r = lc_audio_load(tmp("clip.wav"), 0, 0, NULL);
    ck_assert_int_eq(r->ndim, 2);
    ck_assert_float_eq(lc_tensor_get(r, 0), 32767.0f / 32768.0f);
    ck_assert_float_eq(lc_tensor_get(r, 1), -1.0f);
    ck_assert_float_eq(lc_tensor_get(r, 2), 0.0f);
    ck_assert_float_eq(lc_tensor_get(r, 3), 0.25f);
    lc_tensor_free(r), lc_tensor_free(x);
    /* Vorbis is lossy: a sine comes back close */
    lc_tensor *sn = sine(1, 44100, 440, 44100, 0.5);
    ck_assert_msg(lc_audio_save(sn, tmp("s.ogg"), 44100, LC_AUDIO_PCM16, 0, NULL, NULL) == LC_OK,
                  "%s", lc_errmsg());
    r = lc_audio_load(tmp("s.ogg"), 0, 0, NULL);
    ck_assert_msg(r != NULL, "%s", lc_errmsg());
    ck_assert_int_eq(r->shape[1], 44100);
    double err = 0;
    for (int64_t i = 0; i < 44100; i++)
        err += pow(lc_tensor_get(r, i) - lc_tensor_get(sn, i), 2);
    ck_assert_msg(sqrt(err / 44100) < 0.01, "Vorbis RMS error %g", sqrt(err / 44100));
    lc_tensor_free(r), lc_tensor_free(sn);
    lc_tensor_free(t16), lc_tensor_free(t24), lc_tensor_free(tf);
    remove_tmpdir();
}
END_TEST

START_TEST(test_audio_resample)
{
    make_tmpdir();
    const int n = 22050; /* one second */
    lc_tensor *t = sine(2, n, 1000, 22050, 0.5);
    ck_assert_int_eq(lc_audio_save(t, tmp("s.wav"), 22050, LC_AUDIO_FLOAT, 0, NULL, NULL), LC_OK);
    int rate;
    lc_tensor *r = lc_audio_load(tmp("s.wav"), 44100, 0, &rate);
    ck_assert_msg(r != NULL, "%s", lc_errmsg());
    ck_assert_int_eq(rate, 44100);
    ck_assert_int_eq(r->shape[0], 2);
    ck_assert_int_eq(r->shape[1], 2 * n);
    const float *d = lc_tensor_data(r);
    /* away from the edges: a 0.5-amplitude 1 kHz tone and nothing else */
    ck_assert_msg(fabs(dft_mag(d, 4410, 39690, 1000, 44100) - 0.5) < 0.005, "amplitude %g",
                  dft_mag(d, 4410, 39690, 1000, 44100));
    ck_assert(dft_mag(d, 4410, 39690, 2000, 44100) < 0.005);
    ck_assert(dft_mag(d, 4410, 39690, 500, 44100) < 0.005);
    int crossings = 0;
    for (int i = 4411; i < 39690; i++)
        crossings += (d[i - 1] < 0) != (d[i] < 0);
    ck_assert_int_eq(crossings, 1600); /* 0.8 s x 1000 Hz x 2 */
    /* sample-accurate against the analytic sine in the middle */
    for (int i = 10000; i < 30000; i += 97)
        ck_assert_msg(fabs(d[i] - 0.5 * sin(2 * M_PI * 1000.0 * i / 44100)) < 2e-3, "sample %d", i);
    lc_tensor *m = lc_audio_load(tmp("s.wav"), 0, 1, NULL);
    ck_assert_int_eq(m->shape[0], 1);
    ck_assert_float_eq_tol(lc_tensor_get(m, 100),
                           (lc_tensor_get(t, 100) + lc_tensor_get(t, n + 100)) / 2, 1e-7);
    lc_tensor *down = lc_audio_resample(t, 22050, 16000);
    ck_assert_int_eq(down->shape[1], 16000);
    lc_tensor_free(down), lc_tensor_free(m), lc_tensor_free(r), lc_tensor_free(t);
    remove_tmpdir();
}
END_TEST

START_TEST(test_audio_metadata)
{
    make_tmpdir();
    lc_tensor *t = sine(1, 4000, 300, 16000, 0.3);
    const char *k[3] = {"title", "comment", "software"};
    const char *v[3] = {"lucid test tone", "{\"recipe\":\"audio\",\"seed\":42}", "lucid 0.1"};
    const char *names[3] = {"m.wav", "m.flac", "m.ogg"};
    for (int f = 0; f < 3; f++) {
        const char *p = tmp(names[f]);
        ck_assert_msg(lc_audio_save(t, p, 16000, LC_AUDIO_PCM16, 3, k, v) == LC_OK, "%s: %s",
                      names[f], lc_errmsg());
        lc_audio_info info;
        ck_assert_int_eq(lc_audio_info_read(p, &info), LC_OK);
        ck_assert_int_eq(info.sample_rate, 16000);
        int found = 0;
        for (int i = 0; i < info.nmeta; i++) {
            for (int j = 0; j < 3; j++) {
                if (strcmp(info.meta_key[i], k[j]))
                    continue;
                found++;
                /* libsndfile appends its own name to the software string */
                if (j == 2)
                    ck_assert_msg(!strncmp(info.meta_val[i], v[j], strlen(v[j])), "%s",
                                  info.meta_val[i]);
                else
                    ck_assert_str_eq(info.meta_val[i], v[j]);
            }
        }
        ck_assert_msg(found == 3, "%s: %d of 3 strings", names[f], found);
        lc_audio_info_clear(&info);
    }
    lc_tensor_free(t);
    remove_tmpdir();
}
END_TEST

START_TEST(test_audio_errors)
{
    make_tmpdir();
    lc_tensor *t = sine(1, 100, 300, 16000, 0.3);
    write_bytes(tmp("empty.wav"), "", 0);
    ck_assert_ptr_null(lc_audio_load(tmp("empty.wav"), 0, 0, NULL));
    assert_err("empty.wav", "cannot read audio");
    write_bytes(tmp("text.wav"), "this is not audio at all, just some text\n", 41);
    ck_assert_ptr_null(lc_audio_load(tmp("text.wav"), 0, 0, NULL));
    assert_err("text.wav", "cannot read audio");
    ck_assert_ptr_null(lc_audio_load(tmp("missing.wav"), 0, 0, NULL));
    assert_err("missing.wav", NULL);
    /* a valid WAV header with zero frames, and one with an absurd rate */
    unsigned char wav[48] = "RIFF\x24\0\0\0WAVEfmt \x10\0\0\0\x01\0\x01\0\x80\x3e\0\0\0\x7d\0\0\x02\0\x10\0data\0\0\0\0";
    write_bytes(tmp("zero.wav"), wav, 44);
    ck_assert_ptr_null(lc_audio_load(tmp("zero.wav"), 0, 0, NULL));
    assert_err("zero.wav", "no audio frames");
    lc_audio_info info;
    ck_assert_int_eq(lc_audio_info_read(tmp("zero.wav"), &info), LC_ERR);
    wav[4] = 0x28, wav[40] = 4; /* 2 frames */
    wav[24] = 0x40, wav[25] = 0x42, wav[26] = 0x0f; /* 1 000 000 Hz */
    write_bytes(tmp("fast.wav"), wav, 48);
    ck_assert_ptr_null(lc_audio_load(tmp("fast.wav"), 0, 0, NULL));
    assert_err("fast.wav", "out of range");
    ck_assert_ptr_null(lc_audio_load(lt_data("test_audio/jfk_16k_mono_s16.wav"), 900000, 0, NULL));
    assert_err("out of range", NULL);
    /* a header promising 2^30 + 64 frames, over a sparse file so nothing
     * is really stored: refused before any sample buffer is allocated */
    uint32_t big = 0x80000080u;
    memcpy(wav, "RIFF\0\0\0\0WAVEfmt \x10\0\0\0\x01\0\x01\0\x80\x3e\0\0\0\x7d\0\0\x02\0\x10\0data", 40);
    for (int i = 0; i < 4; i++)
        wav[40 + i] = (unsigned char)(big >> (8 * i)), wav[4 + i] = (unsigned char)((big + 36) >> (8 * i));
    write_bytes(tmp("long.wav"), wav, 44);
    ck_assert_int_eq(truncate(tmp("long.wav"), (off_t)44 + big), 0);
    ck_assert_ptr_null(lc_audio_load(tmp("long.wav"), 0, 0, NULL));
    assert_err("long.wav", "too long");
    unlink(tmp("long.wav"));
    /* a recording cut short (header says 1000 frames, 10 are there)
     * loads what is there */
    unsigned char cut[64];
    memcpy(cut, "RIFF\x04\x08\0\0WAVEfmt \x10\0\0\0\x01\0\x01\0\x80\x3e\0\0\0\x7d\0\0\x02\0\x10\0data\xd0\x07\0\0", 44);
    for (int i = 0; i < 10; i++)
        cut[44 + 2 * i] = 0, cut[45 + 2 * i] = (unsigned char)(i * 8); /* (i * 2048) / 32768 */
    write_bytes(tmp("cut.wav"), cut, 64);
    lc_tensor *c10 = lc_audio_load(tmp("cut.wav"), 0, 0, NULL);
    ck_assert_msg(c10 != NULL, "%s", lc_errmsg());
    ck_assert_int_eq(c10->shape[1], 10);
    ck_assert_float_eq(lc_tensor_get(c10, 9), 9 * 2048 / 32768.0f);
    lc_tensor_free(c10);
    unlink(tmp("cut.wav"));
    /* save errors leave nothing behind */
    int64_t s3[3] = {1, 2, 3};
    lc_tensor *bad = lc_tensor_zeros(LC_F32, 3, s3);
    ck_assert_int_eq(lc_audio_save(bad, tmp("b.wav"), 16000, LC_AUDIO_PCM16, 0, NULL, NULL), LC_ERR);
    assert_err("[1,2,3]", NULL);
    ck_assert_int_eq(lc_audio_save(t, tmp("b.mp4"), 16000, LC_AUDIO_PCM16, 0, NULL, NULL), LC_ERR);
    assert_err("unsupported audio extension 'mp4'", NULL);
    ck_assert_int_eq(lc_audio_save(t, tmp("b.wav"), 0, LC_AUDIO_PCM16, 0, NULL, NULL), LC_ERR);
    assert_err("sample rate 0", NULL);
    ck_assert_int_eq(lc_audio_save(t, tmp("b.flac"), 16000, LC_AUDIO_FLOAT, 0, NULL, NULL), LC_ERR);
    const char *k[1] = {"mood"}, *v[1] = {"x"};
    ck_assert_int_eq(lc_audio_save(t, tmp("b.wav"), 16000, LC_AUDIO_PCM16, 1, k, v), LC_ERR);
    assert_err("unknown audio metadata key 'mood'", NULL);
    ck_assert_int_eq(lc_audio_save(t, tmp("no/b.wav"), 16000, LC_AUDIO_PCM16, 0, NULL, NULL), LC_ERR);
    ck_assert_int_eq(tmp_entries(), 4);
    lc_tensor_free(bad), lc_tensor_free(t);
    remove_tmpdir();
}
END_TEST

/* random damage to small WAV, FLAC and JPEG files: errors or data, never a
 * crash (the ASan build checks the decoders' reads and our buffers) */
START_TEST(test_fuzz_audio_jpeg)
{
    make_tmpdir();
    lc_tensor *t = sine(2, 3000, 440, 8000, 0.5);
    ck_assert_int_eq(lc_audio_save(t, tmp("s.wav"), 8000, LC_AUDIO_PCM16, 0, NULL, NULL), LC_OK);
    ck_assert_int_eq(lc_audio_save(t, tmp("s.flac"), 8000, LC_AUDIO_PCM16, 0, NULL, NULL), LC_OK);
    int64_t s[3] = {3, 16, 24};
    lc_tensor *img = lc_tensor_zeros(LC_F32, 3, s);
    ck_assert_int_eq(lc_image_save(img, tmp("s.jpg"), NULL, NULL, 0), LC_OK);
    const char *src[3] = {"s.wav", "s.flac", "s.jpg"}, *dst[3] = {"f.wav", "f.flac", "f.jpg"};
    for (int k = 0; k < 3; k++) {
        size_t n;
        unsigned char *raw = read_bytes(tmp(src[k]), &n);
        unsigned char *buf = malloc(n);
        for (int it = 0; it < 150; it++) {
            memcpy(buf, raw, n);
            size_t span = it < 75 ? (n < 200 ? n : 200) : n; /* headers first */
            for (int f = 0; f < 1 + it % 4; f++)
                buf[lcg() % span] = (unsigned char)lcg();
            write_bytes(tmp(dst[k]), buf, it % 6 ? n : lcg() % n);
            lc_tensor *r = k < 2 ? lc_audio_load(tmp(dst[k]), it % 3 ? 0 : 11025, it % 2, NULL)
                                 : lc_image_load(tmp(dst[k]));
            if (!r)
                ck_assert(strlen(lc_errmsg()) > 10);
            lc_tensor_free(r);
        }
        free(buf);
        free(raw);
    }
    lc_tensor_free(img);
    lc_tensor_free(t);
    remove_tmpdir();
}
END_TEST

int main(void)
{
    Suite *s = suite_create("files");
    TCase *st = tcase_create("safetensors");
    tcase_add_test(st, test_st_roundtrip);
    tcase_add_test(st, test_st_save_errors);
    tcase_add_test(st, test_st_golden);
    tcase_add_test(st, test_st_unaligned);
    tcase_add_test(st, test_st_corrupt);
    tcase_add_test(st, test_st_fuzz);
    suite_add_tcase(s, st);
    TCase *au = tcase_create("audio");
    tcase_set_timeout(au, 60);
    tcase_add_test(au, test_audio_real_file);
    tcase_add_test(au, test_audio_roundtrip);
    tcase_add_test(au, test_audio_resample);
    tcase_add_test(au, test_audio_metadata);
    tcase_add_test(au, test_audio_errors);
    tcase_add_test(au, test_fuzz_audio_jpeg);
    suite_add_tcase(s, au);
    return lt_run(s);
}
