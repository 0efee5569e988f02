/* File formats: safetensors (round trips, golden file, a corrupt-file
 * suite), images (PNG/JPEG/PPM, text chunks, corrupt input, atomic
 * saves) and audio (WAV/FLAC/OGG, resampling, metadata, corrupt input). */
#include <dirent.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/audio.h"
#include "core/image.h"
#include "core/safetensors.h"
#include "testutil.h"

/* ---- helpers ---- */

static char tmpdir[256];

static void make_tmpdir(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/lucid-check-files-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void remove_tmpdir(void)
{
    DIR *d = opendir(tmpdir);
    if (!d)
        return;
    struct dirent *e;
    char p[512];
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
            snprintf(p, sizeof p, "%s/%s", tmpdir, e->d_name);
            unlink(p);
        }
    closedir(d);
    rmdir(tmpdir);
}

static const char *tmp(const char *name)
{
    static char buf[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", tmpdir, name);
    return buf[k];
}

/* number of entries in the temporary directory (leftover temp files show) */
static int tmp_entries(void)
{
    DIR *d = opendir(tmpdir);
    ck_assert_ptr_nonnull(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
    closedir(d);
    return n;
}

static void write_bytes(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(p, 1, n, f), n);
    fclose(f);
}

static unsigned char *read_bytes(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *p = malloc(*n + 1);
    ck_assert_uint_eq(fread(p, 1, *n, f), *n);
    fclose(f);
    return p;
}

static void assert_err(const char *a, const char *b)
{
    const char *m = lc_errmsg();
    ck_assert_msg(strstr(m, a) != NULL, "error '%s' lacks '%s'", m, a);
    if (b)
        ck_assert_msg(strstr(m, b) != NULL, "error '%s' lacks '%s'", m, b);
}

static uint32_t lcg_state = 12345;
static uint32_t lcg(void)
{
    lcg_state = lcg_state * 1664525u + 1013904223u;
    return lcg_state >> 8;
}

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

/* ---- images ---- */

static uint32_t crc32_png(const unsigned char *p, size_t n)
{
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++)
            c = c & 1 ? 0xedb88320u ^ (c >> 1) : c >> 1;
    }
    return c ^ 0xffffffffu;
}

static void put32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24), p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8), p[3] = (unsigned char)v;
}

static void chunk(FILE *f, const char *type, const unsigned char *data, uint32_t n)
{
    unsigned char *b = malloc(n + 8);
    put32(b, n);
    memcpy(b + 4, type, 4);
    if (n)
        memcpy(b + 8, data, n);
    unsigned char crc[4];
    put32(crc, crc32_png(b + 4, n + 4));
    fwrite(b, 1, n + 8, f);
    fwrite(crc, 1, 4, f);
    free(b);
}

/* A PNG written by hand (zlib stream of stored blocks, filter 0 rows), so
 * decoder tests do not depend on our own encoder. */
static void write_png_raw(const char *path, uint32_t w, uint32_t h, int depth, int ctype,
                          const unsigned char *rows, size_t rowbytes, const unsigned char *plte,
                          int nplte)
{
    FILE *f = fopen(path, "wb");
    fwrite("\x89PNG\r\n\x1a\n", 1, 8, f);
    unsigned char ihdr[13] = {0};
    put32(ihdr, w);
    put32(ihdr + 4, h);
    ihdr[8] = (unsigned char)depth;
    ihdr[9] = (unsigned char)ctype;
    chunk(f, "IHDR", ihdr, 13);
    if (plte)
        chunk(f, "PLTE", plte, (uint32_t)nplte * 3);
    size_t raw_n = h * (rowbytes + 1);
    unsigned char *raw = malloc(raw_n);
    for (uint32_t y = 0; y < h; y++) {
        raw[y * (rowbytes + 1)] = 0;
        memcpy(raw + y * (rowbytes + 1) + 1, rows + y * rowbytes, rowbytes);
    }
    ck_assert_uint_lt(raw_n, 65536); /* one stored block */
    unsigned char *z = malloc(raw_n + 11);
    z[0] = 0x78, z[1] = 0x01, z[2] = 1;
    z[3] = (unsigned char)raw_n, z[4] = (unsigned char)(raw_n >> 8);
    z[5] = (unsigned char)~z[3], z[6] = (unsigned char)~z[4];
    memcpy(z + 7, raw, raw_n);
    uint32_t s1 = 1, s2 = 0;
    for (size_t i = 0; i < raw_n; i++) {
        s1 = (s1 + raw[i]) % 65521;
        s2 = (s2 + s1) % 65521;
    }
    put32(z + 7 + raw_n, s2 << 16 | s1);
    chunk(f, "IDAT", z, (uint32_t)(raw_n + 11));
    chunk(f, "IEND", NULL, 0);
    fclose(f);
    free(raw);
    free(z);
}

static int px(const lc_tensor *t, int c, int y, int x) /* u8 [H,W,3] */
{
    return ((const unsigned char *)lc_tensor_data(t))[(y * t->shape[1] + x) * 3 + c];
}

static void img_expect_fail(const char *path, const char *a)
{
    lc_err_clear();
    lc_tensor *t = lc_image_load(path);
    ck_assert_msg(t == NULL, "%s loaded but should not", path);
    assert_err(path, a);
}

START_TEST(test_image_real_files)
{
    /* astronaut.ppm is an independent lossless copy of astronaut.png */
    lc_tensor *a = lc_image_load_u8(lt_data("test_images/astronaut.png"));
    lc_tensor *b = lc_image_load_u8(lt_data("test_images/astronaut.ppm"));
    ck_assert_msg(a && b, "%s", lc_errmsg());
    ck_assert_int_eq(a->shape[0], 512);
    ck_assert_int_eq(a->shape[1], 512);
    ck_assert_int_eq(a->shape[2], 3);
    ck_assert(lt_max_abs_diff(a, b) == 0);
    lc_tensor *f = lc_image_load(lt_data("test_images/chelsea.png"));
    lc_tensor *g = lc_image_load_u8(lt_data("test_images/chelsea.ppm"));
    ck_assert_int_eq(f->ndim, 4);
    ck_assert_int_eq(f->shape[1], 3);
    ck_assert_int_eq(f->shape[2], 300);
    ck_assert_int_eq(f->shape[3], 451);
    const float *fp = lc_tensor_data(f);
    for (int c = 0; c < 3; c++) /* pixel (y=123, x=321) */
        ck_assert_float_eq(fp[(c * 300 + 123) * 451 + 321], (float)px(g, c, 123, 321) / 255.0f);
    lc_tensor *cam = lc_image_load_u8(lt_data("test_images/camera.png")); /* gray */
    for (int i = 0; i < 1000; i++) {
        int y = (int)(lcg() % 512), x = (int)(lcg() % 512);
        ck_assert_int_eq(px(cam, 0, y, x), px(cam, 1, y, x));
        ck_assert_int_eq(px(cam, 0, y, x), px(cam, 2, y, x));
    }
    lc_tensor *j = lc_image_load(lt_data("test_images/rocket.jpg"));
    ck_assert_msg(j != NULL, "%s", lc_errmsg());
    ck_assert_int_eq(j->shape[2], 427);
    ck_assert_int_eq(j->shape[3], 640);
    char **k, **v;
    int n;
    ck_assert_int_eq(lc_image_read_text(lt_data("test_images/rocket.jpg"), &k, &v, &n), LC_OK);
    ck_assert_int_eq(n, 1);
    ck_assert_str_eq(k[0], "comment");
    ck_assert_str_eq(v[0], "cmp3.10.3.2Lq3 0x756ffbf7");
    lc_image_text_free(k, v, n);
    lc_tensor_free(a), lc_tensor_free(b), lc_tensor_free(f), lc_tensor_free(g);
    lc_tensor_free(cam), lc_tensor_free(j);
}
END_TEST

START_TEST(test_image_png_variants)
{
    make_tmpdir();
    /* RGBA 8-bit: alpha dropped */
    unsigned char rgba[2 * 2 * 4] = {10, 20, 30, 0, 40, 50, 60, 128,
                                     70, 80, 90, 255, 1, 2, 3, 4};
    write_png_raw(tmp("rgba.png"), 2, 2, 8, 6, rgba, 8, NULL, 0);
    lc_tensor *t = lc_image_load_u8(tmp("rgba.png"));
    ck_assert_msg(t != NULL, "%s", lc_errmsg());
    for (int i = 0; i < 4; i++)
        for (int c = 0; c < 3; c++)
            ck_assert_int_eq(px(t, c, i / 2, i % 2), rgba[i * 4 + c]);
    lc_tensor_free(t);
    /* 16-bit RGB: k * 257 scales to exactly k */
    unsigned char rgb16[3 * 3 * 2];
    int ks[9] = {0, 255, 128, 1, 254, 77, 200, 3, 99};
    for (int i = 0; i < 9; i++)
        rgb16[2 * i] = (unsigned char)((ks[i] * 257) >> 8), rgb16[2 * i + 1] = (unsigned char)(ks[i] * 257);
    write_png_raw(tmp("rgb16.png"), 3, 1, 16, 2, rgb16, 18, NULL, 0);
    t = lc_image_load_u8(tmp("rgb16.png"));
    ck_assert_msg(t != NULL, "%s", lc_errmsg());
    for (int i = 0; i < 9; i++)
        ck_assert_int_eq(px(t, i % 3, 0, i / 3), ks[i]);
    lc_tensor_free(t);
    /* palette, 2-bit indices */
    unsigned char plte[9] = {255, 0, 0, 0, 255, 0, 9, 8, 7};
    unsigned char idx[1] = {0x24}; /* 00 10 01 00 -> indices 0, 2, 1, 0 */
    write_png_raw(tmp("pal.png"), 4, 1, 2, 3, idx, 1, plte, 3);
    t = lc_image_load_u8(tmp("pal.png"));
    ck_assert_msg(t != NULL, "%s", lc_errmsg());
    int want[4] = {0, 2, 1, 0};
    for (int x = 0; x < 4; x++)
        for (int c = 0; c < 3; c++)
            ck_assert_int_eq(px(t, c, 0, x), plte[want[x] * 3 + c]);
    lc_tensor_free(t);
    /* 1-bit gray: 0 -> 0, 1 -> 255 */
    unsigned char bits[1] = {0xa0}; /* 1 0 1 */
    write_png_raw(tmp("bw.png"), 3, 1, 1, 0, bits, 1, NULL, 0);
    t = lc_image_load_u8(tmp("bw.png"));
    ck_assert_int_eq(px(t, 1, 0, 0), 255);
    ck_assert_int_eq(px(t, 1, 0, 1), 0);
    ck_assert_int_eq(px(t, 2, 0, 2), 255);
    lc_tensor_free(t);
    /* absurd sizes are refused before allocating */
    unsigned char one[3] = {0};
    write_png_raw(tmp("wide.png"), 40000, 1, 8, 2, one, 0, NULL, 0);
    img_expect_fail(tmp("wide.png"), "limit");
    write_png_raw(tmp("huge.png"), 20000, 20000, 8, 2, one, 0, NULL, 0);
    img_expect_fail(tmp("huge.png"), "larger than the limit");
    /* allowed size, but far too little data to be real: refused up front */
    write_png_raw(tmp("hollow.png"), 10000, 10000, 8, 2, one, 0, NULL, 0);
    img_expect_fail(tmp("hollow.png"), "cannot hold a 10000x10000 image");
    write_bytes(tmp("huge.ppm"), "P6 30000 30000 255\n", 19);
    img_expect_fail(tmp("huge.ppm"), "larger than the limit");
    write_bytes(tmp("short.ppm"), "P6 4 4 255\nabc", 14);
    img_expect_fail(tmp("short.ppm"), "truncated");
    remove_tmpdir();
}
END_TEST

START_TEST(test_image_png_roundtrip)
{
    make_tmpdir();
    int64_t s[4] = {1, 3, 7, 5};
    lc_tensor *t = lc_tensor_new(LC_F32, 4, s);
    unsigned char ks[105];
    for (int i = 0; i < 105; i++) {
        ks[i] = (unsigned char)(i == 0 ? 0 : i == 1 ? 255 : lcg());
        ((float *)lc_tensor_data(t))[i] = (float)ks[i] / 255.0f;
    }
    ck_assert_int_eq(lc_image_save(t, tmp("a.png"), NULL, NULL, 0), LC_OK);
    ck_assert_int_eq(tmp_entries(), 1);
    lc_tensor *r = lc_image_load(tmp("a.png"));
    ck_assert_msg(r != NULL, "%s", lc_errmsg());
    ck_assert(lc_tensor_same_shape(r, t));
    ck_assert(lt_max_abs_diff(r, t) == 0); /* u8 values survive exactly */
    lc_tensor_free(r);
    /* strided [3,H,W] view, u8 input, and clamping / rounding rules */
    lc_tensor *v = lc_tensor_select(t, 0, 0);
    lc_tensor *tr = lc_tensor_transpose(v, 1, 2); /* [3,5,7] */
    ck_assert_int_eq(lc_image_save(tr, tmp("t.png"), NULL, NULL, 0), LC_OK);
    r = lc_image_load_u8(tmp("t.png"));
    ck_assert_int_eq(r->shape[0], 5);
    ck_assert_int_eq(px(r, 2, 4, 6), ks[2 * 35 + 6 * 5 + 4]);
    lc_tensor_free(r);
    int64_t g[2] = {1, 6};
    lc_tensor *gray = lc_tensor_new(LC_F32, 2, g);
    float gv[6] = {0.5f, -1.0f, 2.0f, NAN, 0.2f, 1.0f};
    int want[6] = {128, 0, 255, 0, 51, 255}; /* (uint8)(clamp(x)*255 + 0.5) */
    memcpy(lc_tensor_data(gray), gv, sizeof gv);
    ck_assert_int_eq(lc_image_save(gray, tmp("g.png"), NULL, NULL, 0), LC_OK);
    r = lc_image_load_u8(tmp("g.png"));
    for (int i = 0; i < 6; i++)
        for (int c = 0; c < 3; c++)
            ck_assert_int_eq(px(r, c, 0, i), want[i]);
    lc_tensor_free(r);
    lc_tensor *u = lc_tensor_new(LC_U8, 2, g);
    for (int i = 0; i < 6; i++)
        lc_tensor_set(u, i, 40 * i + 3);
    ck_assert_int_eq(lc_image_save(u, tmp("u.png"), NULL, NULL, 0), LC_OK);
    r = lc_image_load_u8(tmp("u.png"));
    ck_assert_int_eq(px(r, 1, 0, 5), 203);
    lc_tensor_free(r);
    lc_tensor_free(u), lc_tensor_free(gray), lc_tensor_free(tr), lc_tensor_free(v);
    lc_tensor_free(t);
    remove_tmpdir();
}
END_TEST

START_TEST(test_image_text)
{
    make_tmpdir();
    int64_t s[3] = {3, 2, 2};
    lc_tensor *t = lc_tensor_zeros(LC_F32, 3, s);
    const char *k[4] = {"parameters", "lucid", "Title", "empty"};
    const char *v[4] = {"a cat\nSteps: 20, Sampler: Euler a, Seed: 1",
                        "{\"recipe\":\"txt2img\"}",
                        "h\xc3\xa9llo \xe4\xb8\x96\xe7\x95\x8c \xf0\x9f\x8e\xa8", ""};
    const char *exts[2] = {"p.png", "p.jpg"};
    for (int e = 0; e < 2; e++) {
        const char *path = tmp(exts[e]);
        ck_assert_msg(lc_image_save(t, path, k, v, 4) == LC_OK, "%s", lc_errmsg());
        char **rk, **rv;
        int n;
        ck_assert_int_eq(lc_image_read_text(path, &rk, &rv, &n), LC_OK);
        ck_assert_int_eq(n, 4);
        for (int i = 0; i < 4; i++) {
            ck_assert_str_eq(rk[i], k[i]);
            ck_assert_str_eq(rv[i], v[i]);
        }
        lc_image_text_free(rk, rv, n);
    }
    size_t n;
    unsigned char *raw = read_bytes(tmp("p.png"), &n);
    ck_assert_ptr_nonnull(memmem(raw, n, "tEXtparameters", 14));
    ck_assert_ptr_nonnull(memmem(raw, n, "iTXtTitle", 9));
    free(raw);
    /* a Latin-1 tEXt chunk (written by hand) reads back as UTF-8 */
    FILE *f = fopen(tmp("l1.png"), "wb");
    raw = read_bytes(tmp("p.png"), &n);
    fwrite(raw, 1, 33, f); /* signature + IHDR */
    chunk(f, "tEXt", (const unsigned char *)"Author\0caf\xe9", 11);
    fwrite(raw + 33, 1, n - 33, f);
    fclose(f);
    free(raw);
    char **rk, **rv;
    int m;
    ck_assert_int_eq(lc_image_read_text(tmp("l1.png"), &rk, &rv, &m), LC_OK);
    ck_assert_int_eq(m, 5);
    ck_assert_str_eq(rk[0], "Author");
    ck_assert_str_eq(rv[0], "caf\xc3\xa9");
    lc_image_text_free(rk, rv, m);
    /* bad keys and values are refused before anything is written */
    const char *bk[1] = {"bad\nkey"}, *bv[1] = {"x"};
    ck_assert_int_eq(lc_image_save(t, tmp("k.png"), bk, bv, 1), LC_ERR);
    assert_err("printable ASCII", NULL);
    const char *ok[1] = {"key"}, *badutf[1] = {"\xff\xfe"};
    ck_assert_int_eq(lc_image_save(t, tmp("k.png"), ok, badutf, 1), LC_ERR);
    assert_err("not valid UTF-8", NULL);
    ck_assert_int_eq(tmp_entries(), 3);
    lc_tensor_free(t);
    remove_tmpdir();
}
END_TEST

START_TEST(test_image_jpeg)
{
    make_tmpdir();
    int64_t s[4] = {1, 3, 32, 48};
    lc_tensor *t = lc_tensor_new(LC_F32, 4, s);
    float *d = lc_tensor_data(t);
    for (int c = 0; c < 3; c++) /* smooth gradients: JPEG keeps them closely */
        for (int y = 0; y < 32; y++)
            for (int x = 0; x < 48; x++)
                d[(c * 32 + y) * 48 + x] = 0.1f + 0.8f * (float)(c == 0 ? x / 47.0 : c == 1 ? y / 31.0 : (x + y) / 78.0);
    ck_assert_int_eq(lc_image_save(t, tmp("a.jpeg"), NULL, NULL, 0), LC_OK);
    lc_tensor *r = lc_image_load(tmp("a.jpeg"));
    ck_assert_msg(r != NULL, "%s", lc_errmsg());
    ck_assert(lc_tensor_same_shape(r, t));
    double md = lt_max_abs_diff(r, t);
    ck_assert_msg(md < 0.04, "JPEG q95 max error %g", md);
    /* a JPEG named .png loads by its magic bytes */
    size_t n;
    unsigned char *raw = read_bytes(lt_data("test_images/rocket.jpg"), &n);
    write_bytes(tmp("rocket.png"), raw, n);
    lc_tensor *a = lc_image_load(tmp("rocket.png"));
    lc_tensor *b = lc_image_load(lt_data("test_images/rocket.jpg"));
    ck_assert_msg(a != NULL, "%s", lc_errmsg());
    ck_assert(lt_max_abs_diff(a, b) == 0);
    /* truncated JPEG */
    write_bytes(tmp("cut.jpg"), raw, n * 6 / 10);
    img_expect_fail(tmp("cut.jpg"), "corrupt JPEG");
    write_bytes(tmp("head.jpg"), raw, 300);
    img_expect_fail(tmp("head.jpg"), "corrupt JPEG");
    free(raw);
    lc_tensor_free(a), lc_tensor_free(b), lc_tensor_free(r), lc_tensor_free(t);
    remove_tmpdir();
}
END_TEST

START_TEST(test_image_corrupt)
{
    make_tmpdir();
    size_t n;
    unsigned char *raw = read_bytes(lt_data("test_images/chelsea.png"), &n);
    write_bytes(tmp("half.png"), raw, n / 2);
    img_expect_fail(tmp("half.png"), "truncated");
    write_bytes(tmp("sig.png"), raw, 20);
    img_expect_fail(tmp("sig.png"), "corrupt PNG");
    raw[n / 2] ^= 0x55; /* inside IDAT: the CRC no longer matches */
    write_bytes(tmp("flip.png"), raw, n);
    img_expect_fail(tmp("flip.png"), "corrupt PNG");
    free(raw);
    write_bytes(tmp("text.png"), "hello, I am not an image\n", 25);
    img_expect_fail(tmp("text.png"), "not a PNG or JPEG file");
    write_bytes(tmp("empty.png"), "", 0);
    img_expect_fail(tmp("empty.png"), "empty file");
    img_expect_fail(tmp("missing.png"), "cannot open");
    char **k, **v;
    int m;
    ck_assert_int_eq(lc_image_read_text(tmp("text.png"), &k, &v, &m), LC_ERR);
    /* random damage to a small PNG: errors, never crashes */
    int64_t s[3] = {3, 9, 11};
    lc_tensor *t = lc_tensor_zeros(LC_F32, 3, s);
    const char *key[1] = {"k"}, *val[1] = {"some text"};
    ck_assert_int_eq(lc_image_save(t, tmp("src.png"), key, val, 1), LC_OK);
    raw = read_bytes(tmp("src.png"), &n);
    unsigned char *buf = malloc(n);
    for (int it = 0; it < 300; it++) {
        memcpy(buf, raw, n);
        for (int f = 0; f < 3; f++)
            buf[8 + lcg() % (n - 8)] = (unsigned char)lcg();
        write_bytes(tmp("fz.png"), buf, it % 5 ? n : lcg() % n);
        lc_tensor *r = lc_image_load(tmp("fz.png"));
        lc_tensor_free(r);
        if (lc_image_read_text(tmp("fz.png"), &k, &v, &m) == LC_OK)
            lc_image_text_free(k, v, m);
    }
    free(buf);
    free(raw);
    lc_tensor_free(t);
    remove_tmpdir();
}
END_TEST

START_TEST(test_image_save_errors)
{
    make_tmpdir();
    int64_t s4[4] = {2, 3, 4, 4}, s3[3] = {3, 4, 4};
    lc_tensor *batch = lc_tensor_zeros(LC_F32, 4, s4);
    lc_tensor *ok = lc_tensor_zeros(LC_F32, 3, s3);
    lc_tensor *ints = lc_tensor_zeros(LC_I32, 3, s3);
    ck_assert_int_eq(lc_image_save(batch, tmp("b.png"), NULL, NULL, 0), LC_ERR);
    assert_err("[2,3,4,4]", "one image of the batch");
    ck_assert_int_eq(lc_image_save(ints, tmp("i.png"), NULL, NULL, 0), LC_ERR);
    assert_err("i32", NULL);
    ck_assert_int_eq(lc_image_save(ok, tmp("x.bmp"), NULL, NULL, 0), LC_ERR);
    assert_err("unsupported image extension 'bmp'", NULL);
    ck_assert_int_eq(lc_image_save(ok, tmp("nodir/x.png"), NULL, NULL, 0), LC_ERR);
    assert_err("nodir", NULL);
    ck_assert_int_eq(tmp_entries(), 0);
    /* a failed save over an existing image leaves it intact */
    ck_assert_int_eq(lc_image_save(ok, tmp("keep.png"), NULL, NULL, 0), LC_OK);
    ck_assert_int_eq(lc_image_save(batch, tmp("keep.png"), NULL, NULL, 0), LC_ERR);
    lc_tensor *r = lc_image_load(tmp("keep.png"));
    ck_assert_ptr_nonnull(r);
    ck_assert_int_eq(r->shape[2], 4);
    ck_assert_int_eq(tmp_entries(), 1);
    lc_tensor_free(r), lc_tensor_free(batch), lc_tensor_free(ok), lc_tensor_free(ints);
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
    TCase *im = tcase_create("image");
    tcase_set_timeout(im, 60);
    tcase_add_test(im, test_image_real_files);
    tcase_add_test(im, test_image_png_variants);
    tcase_add_test(im, test_image_png_roundtrip);
    tcase_add_test(im, test_image_text);
    tcase_add_test(im, test_image_jpeg);
    tcase_add_test(im, test_image_corrupt);
    tcase_add_test(im, test_image_save_errors);
    suite_add_tcase(s, im);
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
