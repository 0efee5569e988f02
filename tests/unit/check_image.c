/* Images: PNG/JPEG/PPM decoding (checked against hand-written PNGs and an
 * independent PPM copy), text chunks, corrupt input and atomic saves. */
#include <png.h>

#include "core/image.h"
#include "files_util.h"

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

/* Adam7-interlaced RGB written through libpng itself, with a text chunk
 * after the image data: both the pixel and the text-only paths must walk
 * all seven passes. */
START_TEST(test_image_interlaced)
{
    make_tmpdir();
    const int w = 13, h = 11;
    unsigned char pix[11][13 * 3];
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w * 3; x++)
            pix[y][x] = (unsigned char)(lcg() & 0xff);
    FILE *f = fopen(tmp("il.png"), "wb");
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    png_init_io(png, f);
    png_set_IHDR(png, info, w, h, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_ADAM7,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    png_bytep rows[11];
    for (int y = 0; y < h; y++)
        rows[y] = pix[y];
    png_write_image(png, rows);
    png_text txt = {.compression = PNG_TEXT_COMPRESSION_zTXt, .key = "late",
                    .text = "after IDAT, compressed", .text_length = 22};
    png_set_text(png, info, &txt, 1);
    png_write_end(png, info);
    png_destroy_write_struct(&png, &info);
    fclose(f);
    lc_tensor *t = lc_image_load_u8(tmp("il.png"));
    ck_assert_msg(t != NULL, "%s", lc_errmsg());
    ck_assert_int_eq(t->shape[0], h);
    ck_assert_int_eq(t->shape[1], w);
    ck_assert_int_eq(memcmp(lc_tensor_data(t), pix, sizeof pix), 0);
    char **k, **v;
    int n;
    ck_assert_int_eq(lc_image_read_text(tmp("il.png"), &k, &v, &n), LC_OK);
    ck_assert_int_eq(n, 1);
    ck_assert_str_eq(k[0], "late");
    ck_assert_str_eq(v[0], "after IDAT, compressed");
    lc_image_text_free(k, v, n);
    lc_tensor_free(t);
    remove_tmpdir();
}
END_TEST

int main(void)
{
    Suite *s = suite_create("image");
    TCase *im = tcase_create("image");
    tcase_set_timeout(im, 60);
    tcase_add_test(im, test_image_real_files);
    tcase_add_test(im, test_image_png_variants);
    tcase_add_test(im, test_image_interlaced);
    tcase_add_test(im, test_image_png_roundtrip);
    tcase_add_test(im, test_image_text);
    tcase_add_test(im, test_image_jpeg);
    tcase_add_test(im, test_image_corrupt);
    tcase_add_test(im, test_image_save_errors);
    suite_add_tcase(s, im);
    return lt_run(s);
}
