/* Image decoding and encoding. Decoders read the whole file into memory
 * first (images are small next to the tensors made from them), so the
 * format can be sniffed and truncation is detected exactly. libpng and
 * libjpeg report errors by longjmp: everything allocated inside the
 * protected region hangs off a context struct so it can be freed after. */
#include "image.h"

#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h> /* needs stdio.h first */
#include <jerror.h>
#include <png.h>

#include "fileio.h"

#define MAX_FILE_BYTES ((size_t)1 << 30)

typedef enum { FMT_UNKNOWN, FMT_PNG, FMT_JPEG, FMT_PNM } img_format;

typedef struct {
    const char *path;
    const unsigned char *buf;
    size_t len, pos;
    int want_pixels;
    lc_tensor *t;        /* u8 [H,W,3] */
    unsigned char *row;  /* scratch row when only text is wanted */
    png_bytep *rows;
    char **keys, **vals; /* UTF-8 text pairs */
    int ntext, cap;
    jmp_buf jb;
    char msg[JMSG_LENGTH_MAX + 256];
} decode_ctx;

static img_format sniff(const unsigned char *b, size_t n)
{
    static const unsigned char png_sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    if (n >= 8 && !memcmp(b, png_sig, 8))
        return FMT_PNG;
    if (n >= 3 && b[0] == 0xff && b[1] == 0xd8 && b[2] == 0xff)
        return FMT_JPEG;
    if (n >= 3 && b[0] == 'P' && (b[1] == '5' || b[1] == '6') &&
        (b[2] == ' ' || b[2] == '\n' || b[2] == '\r' || b[2] == '\t'))
        return FMT_PNM;
    return FMT_UNKNOWN;
}

static int check_dims(const char *path, int64_t w, int64_t h)
{
    if (w <= 0 || h <= 0)
        return lc_err("%s: image has size %lldx%lld", path, (long long)w, (long long)h);
    if (w > LC_IMAGE_MAX_SIDE || h > LC_IMAGE_MAX_SIDE || w * h > LC_IMAGE_MAX_PIXELS)
        return lc_err("%s: image is %lldx%lld, larger than the limit (%d per side, %lld "
                      "pixels)",
                      path, (long long)w, (long long)h, LC_IMAGE_MAX_SIDE,
                      (long long)LC_IMAGE_MAX_PIXELS);
    return LC_OK;
}

static lc_tensor *alloc_pixels(const char *path, int64_t w, int64_t h)
{
    int64_t shape[3] = {h, w, 3};
    lc_tensor *t = lc_tensor_new(LC_U8, 3, shape);
    if (!t)
        lc_err_prefix("%s: ", path);
    return t;
}

static void ctx_free(decode_ctx *c)
{
    lc_tensor_free(c->t);
    free(c->row);
    free(c->rows);
    lc_image_text_free(c->keys, c->vals, c->ntext);
    memset(c, 0, sizeof *c);
}

/* ---- text helpers ---- */

static int utf8_valid(const unsigned char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        unsigned c = s[i];
        size_t len;
        unsigned min;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xe0) == 0xc0) {
            len = 2, min = 0x80, c &= 0x1f;
        } else if ((c & 0xf0) == 0xe0) {
            len = 3, min = 0x800, c &= 0x0f;
        } else if ((c & 0xf8) == 0xf0) {
            len = 4, min = 0x10000, c &= 0x07;
        } else {
            return 0;
        }
        if (i + len > n)
            return 0;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return 0;
            c = (c << 6) | (s[i + k] & 0x3f);
        }
        if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
            return 0;
        i += len;
    }
    return 1;
}

/* tEXt is Latin-1 by the spec, but some writers store UTF-8 there: keep
 * valid UTF-8 as it is and convert anything else from Latin-1. */
static char *text_to_utf8(const char *s, size_t n, int latin1)
{
    if (!latin1 || utf8_valid((const unsigned char *)s, n)) {
        char *r = malloc(n + 1);
        if (r) {
            memcpy(r, s, n);
            r[n] = 0;
        }
        return r;
    }
    char *r = malloc(2 * n + 1), *o = r;
    if (!r)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x80) {
            *o++ = (char)c;
        } else {
            *o++ = (char)(0xc0 | (c >> 6));
            *o++ = (char)(0x80 | (c & 0x3f));
        }
    }
    *o = 0;
    return r;
}

static int add_text(decode_ctx *c, const char *k, size_t kn, const char *v, size_t vn, int latin1)
{
    if (c->ntext == c->cap) {
        int cap = c->cap ? 2 * c->cap : 8;
        char **nk = realloc(c->keys, (size_t)cap * sizeof *nk);
        if (!nk)
            return LC_ERR;
        c->keys = nk;
        char **nv = realloc(c->vals, (size_t)cap * sizeof *nv);
        if (!nv)
            return LC_ERR;
        c->vals = nv;
        c->cap = cap;
    }
    char *ks = text_to_utf8(k, kn, 1);
    char *vs = text_to_utf8(v, vn, latin1);
    if (!ks || !vs) {
        free(ks);
        free(vs);
        return LC_ERR;
    }
    c->keys[c->ntext] = ks;
    c->vals[c->ntext] = vs;
    c->ntext++;
    return LC_OK;
}

void lc_image_text_free(char **keys, char **vals, int n)
{
    for (int i = 0; i < n; i++) {
        if (keys)
            free(keys[i]);
        if (vals)
            free(vals[i]);
    }
    free(keys);
    free(vals);
}

/* ---- PNG ---- */

static void png_on_error(png_structp png, png_const_charp msg)
{
    decode_ctx *c = png_get_error_ptr(png);
    snprintf(c->msg, sizeof c->msg, "%s", msg);
    png_longjmp(png, 1);
}

static void png_on_warning(png_structp png, png_const_charp msg)
{
    (void)png;
    (void)msg; /* benign (bad gamma, unknown chunks...): decode anyway */
}

static void png_read_mem(png_structp png, png_bytep out, size_t n)
{
    decode_ctx *c = png_get_io_ptr(png);
    if (n > c->len - c->pos)
        png_error(png, "file is truncated");
    memcpy(out, c->buf + c->pos, n);
    c->pos += n;
}

/* libpng allocates (and clears) a chunk's buffer from its length field
 * before it can find the chunk truncated, so a damaged length in a 1 KB
 * file would cost gigabytes: walk the chunk list first. */
static int png_prescan(decode_ctx *c)
{
    size_t pos = 8;
    uint64_t w = 0, ht = 0, bpp = 0, idat = 0;
    while (c->len - pos >= 8) {
        const unsigned char *h = c->buf + pos;
        uint32_t n = (uint32_t)h[0] << 24 | (uint32_t)h[1] << 16 | (uint32_t)h[2] << 8 | h[3];
        char type[5] = "?";
        if (memchr(h + 4, 0, 4) == NULL) {
            memcpy(type, h + 4, 4);
            for (int i = 0; i < 4; i++)
                if (!((type[i] >= 'a' && type[i] <= 'z') || (type[i] >= 'A' && type[i] <= 'Z')))
                    type[0] = '?', type[1] = 0;
            type[4] = 0;
        }
        if (n > 0x7fffffffu || (size_t)n + 12 > c->len - pos)
            return lc_err("%s: corrupt PNG: chunk '%s' at byte %zu claims %lu bytes, past the "
                          "end of the %zu-byte file (truncated?)",
                          c->path, type, pos, (unsigned long)n, c->len);
        if (!memcmp(h + 4, "IHDR", 4) && n >= 13) {
            const unsigned char *d = h + 8;
            w = (uint64_t)d[0] << 24 | (uint64_t)d[1] << 16 | (uint64_t)d[2] << 8 | d[3];
            ht = (uint64_t)d[4] << 24 | (uint64_t)d[5] << 16 | (uint64_t)d[6] << 8 | d[7];
            static const int ch[7] = {1, 0, 3, 1, 2, 0, 4};
            bpp = (uint64_t)d[8] * (d[9] < 7 ? (uint64_t)ch[d[9]] : 0);
        }
        if (!memcmp(h + 4, "IDAT", 4))
            idat += n;
        if (!memcmp(h + 4, "IEND", 4))
            break;
        pos += (size_t)n + 12;
    }
    /* deflate expands at most ~1032:1, so too little image data for the
     * claimed size means a damaged or hostile file: refuse it before
     * allocating the pixels */
    if (w <= LC_IMAGE_MAX_SIDE && ht <= LC_IMAGE_MAX_SIDE &&
        (int64_t)(w * ht) <= LC_IMAGE_MAX_PIXELS && bpp &&
        idat * 1032 + 4096 < w * ht * bpp / 8)
        return lc_err("%s: corrupt PNG: %llu bytes of image data cannot hold a %llux%llu "
                      "image (truncated?)",
                      c->path, (unsigned long long)idat, (unsigned long long)w,
                      (unsigned long long)ht);
    return LC_OK;
}

static int decode_png(decode_ctx *c)
{
    if (png_prescan(c) != LC_OK)
        return LC_ERR;
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, c, png_on_error,
                                             png_on_warning);
    if (!png)
        return lc_err("%s: out of memory creating the PNG decoder", c->path);
    png_infop info = png_create_info_struct(png);
    if (!info) {
        png_destroy_read_struct(&png, NULL, NULL);
        return lc_err("%s: out of memory creating the PNG decoder", c->path);
    }
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_read_struct(&png, &info, NULL);
        if (!c->msg[0])
            return LC_ERR; /* lc_err already set (our own failure) */
        return lc_err("%s: corrupt PNG: %s", c->path, c->msg);
    }
    png_set_read_fn(png, c, png_read_mem);
    png_read_info(png, info);
    png_uint_32 w, h;
    int depth, ctype, interlace;
    png_get_IHDR(png, info, &w, &h, &depth, &ctype, &interlace, NULL, NULL);
    if (check_dims(c->path, w, h) != LC_OK)
        png_longjmp(png, 1);
    if (ctype == PNG_COLOR_TYPE_PALETTE)
        png_set_palette_to_rgb(png);
    if (ctype == PNG_COLOR_TYPE_GRAY && depth < 8)
        png_set_expand_gray_1_2_4_to_8(png);
    if (depth == 16)
        png_set_scale_16(png);
    if (ctype == PNG_COLOR_TYPE_GRAY || ctype == PNG_COLOR_TYPE_GRAY_ALPHA)
        png_set_gray_to_rgb(png);
    if (ctype & PNG_COLOR_MASK_ALPHA)
        png_set_strip_alpha(png);
    int passes = png_set_interlace_handling(png);
    png_read_update_info(png, info);
    if (png_get_rowbytes(png, info) != (size_t)w * 3) {
        snprintf(c->msg, sizeof c->msg, "unexpected row size after conversion to RGB");
        png_longjmp(png, 1);
    }
    if (c->want_pixels) {
        c->t = alloc_pixels(c->path, w, h);
        c->rows = malloc(h * sizeof *c->rows);
        if (!c->t || !c->rows) {
            if (c->t)
                lc_err("%s: out of memory", c->path);
            png_longjmp(png, 1);
        }
        unsigned char *px = lc_tensor_data(c->t);
        for (png_uint_32 y = 0; y < h; y++)
            c->rows[y] = px + (size_t)y * w * 3;
        png_read_image(png, c->rows);
    } else {
        /* text after the image data is only reached by decoding the rows */
        c->row = malloc((size_t)w * 3);
        if (!c->row) {
            lc_err("%s: out of memory", c->path);
            png_longjmp(png, 1);
        }
        for (int p = 0; p < passes; p++)
            for (png_uint_32 y = 0; y < h; y++)
                png_read_row(png, c->row, NULL);
    }
    png_read_end(png, info);
    png_textp text;
    int ntext = 0;
    png_get_text(png, info, &text, &ntext);
    for (int i = 0; i < ntext && !c->want_pixels; i++) {
        size_t n = text[i].compression >= PNG_ITXT_COMPRESSION_NONE ? text[i].itxt_length
                                                                     : text[i].text_length;
        if (add_text(c, text[i].key, strlen(text[i].key), text[i].text ? text[i].text : "",
                     text[i].text ? n : 0, text[i].compression < PNG_ITXT_COMPRESSION_NONE) !=
            LC_OK) {
            lc_err("%s: out of memory reading text", c->path);
            png_longjmp(png, 1);
        }
    }
    png_destroy_read_struct(&png, &info, NULL);
    return LC_OK;
}

/* ---- JPEG ---- */

typedef struct {
    struct jpeg_error_mgr pub;
    decode_ctx *c;
} jpeg_err;

static void jpeg_on_error(j_common_ptr cinfo)
{
    jpeg_err *e = (jpeg_err *)cinfo->err;
    char buf[JMSG_LENGTH_MAX];
    cinfo->err->format_message(cinfo, buf);
    snprintf(e->c->msg, sizeof e->c->msg, "%s", buf);
    longjmp(e->c->jb, 1);
}

static void jpeg_on_message(j_common_ptr cinfo, int level)
{
    /* libjpeg pads a truncated file with gray and only warns: that would
     * silently hand back a damaged image, so it is an error here */
    if (level == -1 && cinfo->err->msg_code == JWRN_JPEG_EOF)
        jpeg_on_error(cinfo);
}

static int decode_jpeg(decode_ctx *c)
{
    struct jpeg_decompress_struct cinfo;
    jpeg_err err;
    memset(&cinfo, 0, sizeof cinfo);
    cinfo.err = jpeg_std_error(&err.pub);
    err.pub.error_exit = jpeg_on_error;
    err.pub.emit_message = jpeg_on_message;
    err.c = c;
    if (setjmp(c->jb)) {
        jpeg_destroy_decompress(&cinfo);
        if (!c->msg[0])
            return LC_ERR;
        return lc_err("%s: corrupt JPEG: %s", c->path, c->msg);
    }
    jpeg_create_decompress(&cinfo);
    jpeg_mem_src(&cinfo, c->buf, (unsigned long)c->len);
    if (!c->want_pixels)
        jpeg_save_markers(&cinfo, JPEG_COM, 0xffff);
    jpeg_read_header(&cinfo, TRUE);
    if (!c->want_pixels) {
        for (jpeg_saved_marker_ptr m = cinfo.marker_list; m; m = m->next) {
            const char *s = (const char *)m->data;
            size_t n = m->data_length;
            const char *sep = memchr(s, ':', n);
            int ok = sep && sep + 1 < s + n && sep[1] == ' ' && sep > s;
            for (const char *q = s; ok && q < sep; q++)
                ok = *q >= 0x20 && *q < 0x7f;
            int rc = ok ? add_text(c, s, (size_t)(sep - s), sep + 2, n - (size_t)(sep + 2 - s), 0)
                        : add_text(c, "comment", 7, s, n, 1);
            if (rc != LC_OK) {
                lc_err("%s: out of memory reading text", c->path);
                longjmp(c->jb, 1);
            }
        }
        jpeg_destroy_decompress(&cinfo);
        return LC_OK;
    }
    if (check_dims(c->path, cinfo.image_width, cinfo.image_height) != LC_OK)
        longjmp(c->jb, 1);
    cinfo.out_color_space = JCS_RGB;
    jpeg_start_decompress(&cinfo);
    if (cinfo.output_components != 3) {
        snprintf(c->msg, sizeof c->msg, "cannot convert to RGB");
        longjmp(c->jb, 1);
    }
    c->t = alloc_pixels(c->path, cinfo.output_width, cinfo.output_height);
    if (!c->t)
        longjmp(c->jb, 1);
    unsigned char *px = lc_tensor_data(c->t);
    size_t stride = (size_t)cinfo.output_width * 3;
    while (cinfo.output_scanline < cinfo.output_height) {
        JSAMPROW row = px + cinfo.output_scanline * stride;
        jpeg_read_scanlines(&cinfo, &row, 1);
    }
    jpeg_finish_decompress(&cinfo);
    jpeg_destroy_decompress(&cinfo);
    return LC_OK;
}

/* ---- binary PPM / PGM ---- */

static int pnm_int(decode_ctx *c, long *out)
{
    for (;;) {
        while (c->pos < c->len && strchr(" \t\r\n", c->buf[c->pos]) && c->buf[c->pos])
            c->pos++;
        if (c->pos < c->len && c->buf[c->pos] == '#') {
            while (c->pos < c->len && c->buf[c->pos] != '\n')
                c->pos++;
            continue;
        }
        break;
    }
    long v = 0;
    int digits = 0;
    while (c->pos < c->len && c->buf[c->pos] >= '0' && c->buf[c->pos] <= '9' && digits < 9) {
        v = v * 10 + (c->buf[c->pos++] - '0');
        digits++;
    }
    if (!digits)
        return lc_err("%s: bad PPM/PGM header", c->path);
    *out = v;
    return LC_OK;
}

static int decode_pnm(decode_ctx *c)
{
    int channels = c->buf[1] == '6' ? 3 : 1;
    long w, h, maxval;
    c->pos = 2;
    if (pnm_int(c, &w) || pnm_int(c, &h) || pnm_int(c, &maxval))
        return LC_ERR;
    if (maxval < 1 || maxval > 65535)
        return lc_err("%s: PPM/PGM maxval %ld out of range 1..65535", c->path, maxval);
    if (check_dims(c->path, w, h) != LC_OK)
        return LC_ERR;
    c->pos++; /* the single whitespace byte before the samples */
    size_t bps = maxval > 255 ? 2 : 1;
    size_t need = (size_t)w * (size_t)h * (size_t)channels * bps;
    if (c->pos > c->len || c->len - c->pos < need)
        return lc_err("%s: PPM/PGM file is truncated (%zu bytes of samples, %zu needed)",
                      c->path, c->pos > c->len ? 0 : c->len - c->pos, need);
    if (!c->want_pixels)
        return LC_OK;
    c->t = alloc_pixels(c->path, w, h);
    if (!c->t)
        return LC_ERR;
    unsigned char *px = lc_tensor_data(c->t);
    const unsigned char *s = c->buf + c->pos;
    size_t n = (size_t)w * (size_t)h;
    for (size_t i = 0; i < n; i++) {
        for (int ch = 0; ch < 3; ch++) {
            size_t k = i * (size_t)channels + (channels == 3 ? (size_t)ch : 0);
            unsigned long v = bps == 2 ? ((unsigned long)s[2 * k] << 8 | s[2 * k + 1]) : s[k];
            if (v > (unsigned long)maxval)
                v = (unsigned long)maxval;
            px[3 * i + ch] = (unsigned char)((v * 255 + (unsigned long)maxval / 2) / (unsigned long)maxval);
        }
    }
    return LC_OK;
}

/* ---- loading ---- */

static int decode_file(decode_ctx *c, const char *path, int want_pixels, unsigned char **buf)
{
    size_t len;
    memset(c, 0, sizeof *c);
    c->path = path;
    c->want_pixels = want_pixels;
    if (lc_read_file(path, MAX_FILE_BYTES, buf, &len) != LC_OK)
        return LC_ERR;
    c->buf = *buf;
    c->len = len;
    if (len == 0)
        return lc_err("%s: empty file (0 bytes), not an image", path);
    switch (sniff(*buf, len)) {
    case FMT_PNG:
        return decode_png(c);
    case FMT_JPEG:
        return decode_jpeg(c);
    case FMT_PNM:
        return decode_pnm(c);
    default:
        return lc_err("%s: not a PNG or JPEG file", path);
    }
}

lc_tensor *lc_image_load_u8(const char *path)
{
    decode_ctx c;
    unsigned char *buf = NULL;
    int rc = decode_file(&c, path, 1, &buf);
    free(buf);
    lc_tensor *t = NULL;
    if (rc == LC_OK) {
        t = c.t;
        c.t = NULL;
    }
    ctx_free(&c);
    return t;
}

lc_tensor *lc_image_load(const char *path)
{
    lc_tensor *u = lc_image_load_u8(path);
    if (!u)
        return NULL;
    int64_t h = u->shape[0], w = u->shape[1];
    int64_t shape[4] = {1, 3, h, w};
    lc_tensor *t = lc_tensor_new(LC_F32, 4, shape);
    if (!t) {
        lc_tensor_free(u);
        return NULL;
    }
    const unsigned char *px = lc_tensor_data(u);
    float *out = lc_tensor_data(t);
    size_t plane = (size_t)(h * w);
    /* k / 255 as torchvision's to_tensor computes it */
    for (size_t i = 0; i < plane; i++)
        for (int ch = 0; ch < 3; ch++)
            out[ch * plane + i] = (float)px[3 * i + ch] / 255.0f;
    lc_tensor_free(u);
    return t;
}

int lc_image_read_text(const char *path, char ***keys, char ***vals, int *n)
{
    decode_ctx c;
    unsigned char *buf = NULL;
    *keys = *vals = NULL;
    *n = 0;
    int rc = decode_file(&c, path, 0, &buf);
    free(buf);
    if (rc == LC_OK) {
        *keys = c.keys;
        *vals = c.vals;
        *n = c.ntext;
        c.keys = c.vals = NULL;
        c.ntext = 0;
    }
    ctx_free(&c);
    return rc;
}

/* ---- saving ---- */

static int check_text(const char *path, int jpeg, const char *const *keys,
                      const char *const *vals, int n)
{
    for (int i = 0; i < n; i++) {
        const char *k = keys[i], *v = vals[i];
        if (!k || !v)
            return lc_err("%s: text entry %d has no key or value", path, i + 1);
        size_t kn = strlen(k);
        if (kn < 1 || kn > 79)
            return lc_err("%s: text key '%.100s' must be 1 to 79 characters long", path, k);
        for (size_t j = 0; j < kn; j++)
            if (k[j] < 0x20 || k[j] > 0x7e || (jpeg && k[j] == ':'))
                return lc_err("%s: text key '%.100s' must be printable ASCII%s", path, k,
                              jpeg ? " without ':'" : "");
        /* PNG keywords may not have leading, trailing or double spaces */
        if (k[0] == ' ' || k[kn - 1] == ' ' || strstr(k, "  "))
            return lc_err("%s: text key '%s' has leading, trailing or repeated spaces", path,
                          k);
        if (!utf8_valid((const unsigned char *)v, strlen(v)))
            return lc_err("%s: text value for key '%s' is not valid UTF-8", path, k);
        if (jpeg && kn + 2 + strlen(v) > 65533)
            return lc_err("%s: text for key '%s' is too long for a JPEG comment (64 KB)", path,
                          k);
    }
    return LC_OK;
}

static int is_ascii(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s >= 0x80)
            return 0;
    return 1;
}

typedef struct {
    jmp_buf jb;
    char msg[JMSG_LENGTH_MAX + 64];
    png_textp text;
} encode_ctx;

static void png_on_write_error(png_structp png, png_const_charp msg)
{
    encode_ctx *e = png_get_error_ptr(png);
    snprintf(e->msg, sizeof e->msg, "%s", msg);
    png_longjmp(png, 1);
}

static int write_png(FILE *fp, const char *path, const unsigned char *px, int w, int h,
                     const char *const *keys, const char *const *vals, int ntext)
{
    encode_ctx e = {0};
    png_textp *text = &e.text; /* in the struct: survives the longjmp */
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &e, png_on_write_error,
                                              png_on_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!info) {
        png_destroy_write_struct(&png, NULL);
        return lc_err("%s: out of memory creating the PNG encoder", path);
    }
    if (ntext > 0) {
        *text = calloc((size_t)ntext, sizeof **text);
        if (!*text) {
            png_destroy_write_struct(&png, &info);
            return lc_err("%s: out of memory", path);
        }
    }
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        free(*text);
        return lc_err("%s: writing PNG: %s", path, e.msg);
    }
    png_init_io(png, fp);
    png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, 8, PNG_COLOR_TYPE_RGB,
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    for (int i = 0; i < ntext; i++) {
        /* libpng does not modify the strings it is given */
        (*text)[i].key = (char *)keys[i];
        (*text)[i].text = (char *)vals[i];
        if (is_ascii(vals[i])) {
            (*text)[i].compression = PNG_TEXT_COMPRESSION_NONE;
            (*text)[i].text_length = strlen(vals[i]);
        } else {
            (*text)[i].compression = PNG_ITXT_COMPRESSION_NONE;
            (*text)[i].itxt_length = strlen(vals[i]);
            (*text)[i].lang = (char *)"";
            (*text)[i].lang_key = (char *)"";
        }
    }
    if (ntext > 0)
        png_set_text(png, info, *text, ntext);
    png_write_info(png, info); /* text goes before the image data */
    for (int y = 0; y < h; y++)
        png_write_row(png, px + (size_t)y * (size_t)w * 3);
    png_write_end(png, info);
    png_destroy_write_struct(&png, &info);
    free(*text);
    return LC_OK;
}

typedef struct {
    struct jpeg_error_mgr pub;
    encode_ctx *e;
} jpeg_werr;

static void jpeg_on_write_error(j_common_ptr cinfo)
{
    jpeg_werr *w = (jpeg_werr *)cinfo->err;
    char buf[JMSG_LENGTH_MAX];
    cinfo->err->format_message(cinfo, buf);
    snprintf(w->e->msg, sizeof w->e->msg, "%s", buf);
    longjmp(w->e->jb, 1);
}

static int write_jpeg(FILE *fp, const char *path, const unsigned char *px, int w, int h,
                      const char *const *keys, const char *const *vals, int ntext)
{
    struct jpeg_compress_struct cinfo;
    jpeg_werr err;
    encode_ctx e = {0};
    char *com = NULL;
    memset(&cinfo, 0, sizeof cinfo);
    cinfo.err = jpeg_std_error(&err.pub);
    err.pub.error_exit = jpeg_on_write_error;
    err.e = &e;
    if (setjmp(e.jb)) {
        jpeg_destroy_compress(&cinfo);
        free(com);
        return lc_err("%s: writing JPEG: %s", path, e.msg);
    }
    jpeg_create_compress(&cinfo);
    jpeg_stdio_dest(&cinfo, fp);
    cinfo.image_width = (JDIMENSION)w;
    cinfo.image_height = (JDIMENSION)h;
    cinfo.input_components = 3;
    cinfo.in_color_space = JCS_RGB;
    jpeg_set_defaults(&cinfo);
    jpeg_set_quality(&cinfo, 95, TRUE);
    jpeg_start_compress(&cinfo, TRUE);
    for (int i = 0; i < ntext; i++) {
        size_t kn = strlen(keys[i]), vn = strlen(vals[i]);
        com = malloc(kn + vn + 3);
        if (!com) {
            snprintf(e.msg, sizeof e.msg, "out of memory");
            longjmp(e.jb, 1);
        }
        snprintf(com, kn + vn + 3, "%s: %s", keys[i], vals[i]);
        jpeg_write_marker(&cinfo, JPEG_COM, (const JOCTET *)com, (unsigned)(kn + vn + 2));
        free(com);
        com = NULL;
    }
    while (cinfo.next_scanline < cinfo.image_height) {
        JSAMPROW row = (JSAMPROW)(px + (size_t)cinfo.next_scanline * (size_t)w * 3);
        jpeg_write_scanlines(&cinfo, &row, 1);
    }
    jpeg_finish_compress(&cinfo);
    jpeg_destroy_compress(&cinfo);
    return LC_OK;
}

/* [1,3,H,W] and friends -> interleaved 8-bit RGB */
static lc_tensor *to_rgb8(lc_tensor *t, const char *path)
{
    int64_t c, h, w;
    int nd = t->ndim;
    char sb[96];
    if (nd == 4 && t->shape[0] == 1 && (t->shape[1] == 3 || t->shape[1] == 1))
        c = t->shape[1], h = t->shape[2], w = t->shape[3];
    else if (nd == 3 && (t->shape[0] == 3 || t->shape[0] == 1))
        c = t->shape[0], h = t->shape[1], w = t->shape[2];
    else if (nd == 2)
        c = 1, h = t->shape[0], w = t->shape[1];
    else {
        lc_err("%s: cannot save a tensor of shape %s as an image (expected [1,3,H,W], "
               "[3,H,W] or [H,W]%s)",
               path, lc_shape_str(sb, sizeof sb, nd, t->shape),
               nd == 4 && t->shape[0] > 1 ? "; save one image of the batch at a time" : "");
        return NULL;
    }
    if (check_dims(path, w, h) != LC_OK)
        return NULL;
    int raw = t->dtype == LC_U8;
    if (!raw && !lc_dtype_is_float(t->dtype)) {
        lc_err("%s: cannot save a %s tensor as an image (use float values in [0,1] or u8)",
               path, lc_dtype_name(t->dtype));
        return NULL;
    }
    lc_tensor *src = raw ? lc_tensor_contiguous(t) : lc_tensor_to(t, LC_F32);
    lc_tensor *out = src ? alloc_pixels(path, w, h) : NULL;
    if (!out) {
        lc_tensor_free(src);
        return NULL;
    }
    unsigned char *px = lc_tensor_data(out);
    size_t plane = (size_t)(h * w);
    for (size_t i = 0; i < plane; i++) {
        for (int ch = 0; ch < 3; ch++) {
            size_t k = (c == 3 ? (size_t)ch * plane : 0) + i;
            if (raw) {
                px[3 * i + ch] = ((const unsigned char *)lc_tensor_data(src))[k];
            } else {
                float x = ((const float *)lc_tensor_data(src))[k];
                if (!(x > 0.0f)) /* also NaN */
                    x = 0.0f;
                if (x > 1.0f)
                    x = 1.0f;
                px[3 * i + ch] = (unsigned char)(x * 255.0f + 0.5f);
            }
        }
    }
    lc_tensor_free(src);
    return out;
}

int lc_image_save(lc_tensor *t, const char *path, const char *const *text_keys,
                  const char *const *text_vals, int ntext)
{
    char ext[16];
    lc_path_ext(path, ext, sizeof ext);
    int jpeg = !strcmp(ext, "jpg") || !strcmp(ext, "jpeg");
    if (!jpeg && strcmp(ext, "png"))
        return lc_err("%s: unsupported image extension '%s' (use .png, .jpg or .jpeg)", path,
                      ext);
    if (ntext < 0 || check_text(path, jpeg, text_keys, text_vals, ntext) != LC_OK)
        return ntext < 0 ? lc_err("%s: negative text count", path) : LC_ERR;
    lc_tensor *rgb = to_rgb8(t, path);
    if (!rgb)
        return LC_ERR;
    int w = (int)rgb->shape[1], h = (int)rgb->shape[0];
    lc_atomic_file af;
    if (lc_atomic_open(&af, path) != LC_OK) {
        lc_tensor_free(rgb);
        return LC_ERR;
    }
    FILE *fp = lc_atomic_stream(&af);
    int rc = fp ? LC_OK : LC_ERR;
    if (rc == LC_OK)
        rc = jpeg ? write_jpeg(fp, path, lc_tensor_data(rgb), w, h, text_keys, text_vals, ntext)
                  : write_png(fp, path, lc_tensor_data(rgb), w, h, text_keys, text_vals, ntext);
    lc_tensor_free(rgb);
    if (rc == LC_OK)
        return lc_atomic_commit(&af);
    lc_atomic_abort(&af);
    return LC_ERR;
}
