/* Control-image preprocessors with OpenCV's integer semantics: RGB to gray,
 * Gaussian blur and Canny (see image_ops.h). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "ops/image_ops.h"
#include "ops/ops.h"

void lc_gray_u8(uint8_t *dst, const uint8_t *r, const uint8_t *g, const uint8_t *b, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        dst[i] = (uint8_t)((r[i] * 4899 + g[i] * 9617 + b[i] * 1868 + (1 << 13)) >> 14);
}

static int reflect101(int p, int n)
{
    if (n == 1)
        return 0;
    while (p < 0 || p >= n)
        p = p < 0 ? -p : 2 * (n - 1) - p;
    return p;
}

int lc_gaussian_blur_u8(uint8_t *dst, const uint8_t *src, int h, int w, double sigma)
{
    if (!(sigma > 0) || sigma > 100)
        return lc_err("gaussian blur: sigma %g, expected 0 < sigma <= 100", sigma);
    int k = ((int)lround(sigma * 6 + 1)) | 1, r = k / 2;
    double *ker = malloc(sizeof *ker * (size_t)k);
    double *tmp = malloc(sizeof *tmp * (size_t)h * (size_t)w);
    if (!ker || !tmp) {
        free(ker);
        free(tmp);
        return lc_err("gaussian blur: out of memory (%dx%d)", h, w);
    }
    double sum = 0;
    for (int i = 0; i < k; i++) {
        double x = i - r;
        ker[i] = exp(-x * x / (2 * sigma * sigma));
        sum += ker[i];
    }
    for (int i = 0; i < k; i++)
        ker[i] /= sum;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            double s = 0;
            for (int i = 0; i < k; i++)
                s += ker[i] * src[(size_t)y * w + reflect101(x + i - r, w)];
            tmp[(size_t)y * w + x] = s;
        }
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            double s = 0;
            for (int i = 0; i < k; i++)
                s += ker[i] * tmp[(size_t)reflect101(y + i - r, h) * w + x];
            long v = lround(s);
            dst[(size_t)y * w + x] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
        }
    free(ker);
    free(tmp);
    return LC_OK;
}

#define CANNY_SHIFT 15
/* tan(22.5 degrees) in CANNY_SHIFT fixed point, as OpenCV */
#define TG22 ((int64_t)(0.4142135623730950488016887242097 * (1 << CANNY_SHIFT) + 0.5))

static int clampi(int v, int lo, int hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

int lc_canny_u8(uint8_t *dst, const uint8_t *src, int h, int w, double low_t, double high_t,
                int32_t *mag_out)
{
    if (h < 1 || w < 1)
        return lc_err("canny: empty image (%dx%d)", h, w);
    if (!(low_t >= 0) || !(high_t >= 0))
        return lc_err("canny: thresholds must be >= 0 (low %g, high %g)", low_t, high_t);
    if (low_t > high_t) {
        double t = low_t;
        low_t = high_t;
        high_t = t;
    }
    int low = (int)floor(low_t), high = (int)floor(high_t);
    size_t W = (size_t)w + 2, H = (size_t)h + 2;
    int32_t *dx = malloc(sizeof *dx * (size_t)h * (size_t)w);
    int32_t *dy = malloc(sizeof *dy * (size_t)h * (size_t)w);
    int32_t *mag = calloc(W * H, sizeof *mag); /* zero frame around the image */
    uint8_t *map = malloc(W * H);
    size_t *stack = malloc(sizeof *stack * W * H);
    if (!dx || !dy || !mag || !map || !stack) {
        free(dx);
        free(dy);
        free(mag);
        free(map);
        free(stack);
        return lc_err("canny: out of memory (%dx%d)", h, w);
    }
    /* 3x3 Sobel, replicated borders */
    for (int y = 0; y < h; y++) {
        const uint8_t *rp = src + (size_t)clampi(y - 1, 0, h - 1) * w;
        const uint8_t *rc = src + (size_t)y * w;
        const uint8_t *rn = src + (size_t)clampi(y + 1, 0, h - 1) * w;
        for (int x = 0; x < w; x++) {
            int xl = clampi(x - 1, 0, w - 1), xr = clampi(x + 1, 0, w - 1);
            int gx = (rp[xr] - rp[xl]) + 2 * (rc[xr] - rc[xl]) + (rn[xr] - rn[xl]);
            int gy = (rn[xl] + 2 * rn[x] + rn[xr]) - (rp[xl] + 2 * rp[x] + rp[xr]);
            size_t i = (size_t)y * w + x;
            dx[i] = gx;
            dy[i] = gy;
            mag[(size_t)(y + 1) * W + x + 1] = abs(gx) + abs(gy);
        }
    }
    /* map: 0 may be an edge, 1 cannot be, 2 is an edge (OpenCV's codes);
     * the frame cannot be */
    memset(map, 1, W * H);
    size_t top = 0;
    for (int y = 0; y < h; y++) {
        const int32_t *mp = mag + (size_t)y * W + 1, *mc = mp + W, *mn = mc + W;
        uint8_t *mrow = map + (size_t)(y + 1) * W + 1;
        int prev_flag = 0;
        for (int x = 0; x < w; x++) {
            int m = mc[x];
            int keep = 0;
            if (m > low) {
                int xs = dx[(size_t)y * w + x], ys = dy[(size_t)y * w + x];
                int64_t ax = abs(xs), ay = (int64_t)abs(ys) << CANNY_SHIFT;
                int64_t tg22x = ax * TG22;
                if (ay < tg22x) {
                    keep = m > mc[x - 1] && m >= mc[x + 1];
                } else {
                    int64_t tg67x = tg22x + (ax << (CANNY_SHIFT + 1));
                    if (ay > tg67x) {
                        keep = m > mp[x] && m >= mn[x];
                    } else {
                        int s = (xs ^ ys) < 0 ? -1 : 1;
                        keep = m > mp[x - s] && m > mn[x + s];
                    }
                }
            }
            if (!keep) {
                prev_flag = 0;
                mrow[x] = 1;
                continue;
            }
            if (!prev_flag && m > high && mrow[x - (ptrdiff_t)W] != 2) {
                mrow[x] = 2;
                stack[top++] = (size_t)(mrow + x - map);
                prev_flag = 1;
            } else {
                mrow[x] = 0;
            }
        }
    }
    /* hysteresis: grow edges into 8-connected candidates */
    ptrdiff_t off[8] = {-(ptrdiff_t)W - 1, -(ptrdiff_t)W, -(ptrdiff_t)W + 1, -1, 1,
                        (ptrdiff_t)W - 1, (ptrdiff_t)W, (ptrdiff_t)W + 1};
    while (top > 0) {
        size_t p = stack[--top];
        for (int k = 0; k < 8; k++) {
            size_t q = (size_t)((ptrdiff_t)p + off[k]);
            if (map[q] == 0) {
                map[q] = 2;
                stack[top++] = q;
            }
        }
    }
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            dst[(size_t)y * w + x] = map[(size_t)(y + 1) * W + x + 1] == 2 ? 255 : 0;
    if (mag_out)
        for (int y = 0; y < h; y++)
            memcpy(mag_out + (size_t)y * w, mag + (size_t)(y + 1) * W + 1, sizeof *mag * (size_t)w);
    free(dx);
    free(dy);
    free(mag);
    free(map);
    free(stack);
    return LC_OK;
}

/* ---- tensor front ends ---- */

static int check_image(const lc_tensor *img, const char *what)
{
    if (!img || img->ndim != 4 || (img->shape[1] != 1 && img->shape[1] != 3) ||
        img->shape[0] < 1 || img->shape[2] < 1 || img->shape[3] < 1)
        return lc_err("%s: image %s, expected [N,3,H,W] or [N,1,H,W] in [0,1]", what,
                      img ? LC_SHAPE_STR(img) : "missing");
    if (img->shape[2] > 65536 || img->shape[3] > 65536)
        return lc_err("%s: image %s is too large", what, LC_SHAPE_STR(img));
    return LC_OK;
}

static uint8_t q8(float v)
{
    float s = v * 255.0f;
    if (!(s > 0))
        return 0;
    if (s >= 255)
        return 255;
    return (uint8_t)lrintf(s);
}

/* the gray 8-bit plane of image n (u8 buffer of h*w) */
static void gray_plane(const lc_tensor *x, int64_t n, uint8_t *out, uint8_t *tmp)
{
    int64_t hw = x->shape[2] * x->shape[3];
    const float *p = (const float *)lc_tensor_data(x) + n * x->shape[1] * hw;
    if (x->shape[1] == 1) {
        for (int64_t i = 0; i < hw; i++)
            out[i] = q8(p[i]);
        return;
    }
    uint8_t *r = tmp, *g = tmp + hw, *b = tmp + 2 * hw;
    for (int64_t i = 0; i < hw; i++) {
        r[i] = q8(p[i]);
        g[i] = q8(p[hw + i]);
        b[i] = q8(p[2 * hw + i]);
    }
    lc_gray_u8(out, r, g, b, hw);
}

/* shared driver: per image, gray plane -> fn -> 3 equal output planes */
static lc_tensor *per_image(const lc_tensor *img, const char *what, double low, double high,
                            double sigma, int canny)
{
    if (check_image(img, what) != LC_OK)
        return NULL;
    lc_tensor *x = lc_tensor_f32((lc_tensor *)img);
    if (!x)
        return NULL;
    int64_t N = x->shape[0], h = x->shape[2], w = x->shape[3], hw = h * w;
    lc_tensor *out = lc_tensor_new(LC_F32, 4, (const int64_t[]){N, 3, h, w});
    uint8_t *buf = malloc((size_t)hw * 5);
    if (!out || !buf) {
        lc_tensor_free(x);
        lc_tensor_free(out);
        free(buf);
        if (out)
            lc_err("%s: out of memory", what);
        return NULL;
    }
    uint8_t *gray = buf, *tmp = buf + hw, *res = buf + 4 * hw;
    int rc = LC_OK;
    for (int64_t n = 0; n < N && rc == LC_OK; n++) {
        gray_plane(x, n, gray, tmp);
        if (canny) {
            if (sigma > 0) {
                rc = lc_gaussian_blur_u8(tmp, gray, (int)h, (int)w, sigma);
                memcpy(gray, tmp, (size_t)hw);
            }
            if (rc == LC_OK)
                rc = lc_canny_u8(res, gray, (int)h, (int)w, low, high, NULL);
        } else {
            memcpy(res, gray, (size_t)hw);
        }
        float *o = (float *)lc_tensor_data(out) + n * 3 * hw;
        for (int64_t i = 0; i < hw; i++)
            o[i] = o[hw + i] = o[2 * hw + i] = res[i] / 255.0f;
    }
    free(buf);
    lc_tensor_free(x);
    if (rc != LC_OK) {
        lc_tensor_free(out);
        lc_err_prefix("%s: ", what);
        return NULL;
    }
    return out;
}

lc_tensor *lc_image_canny(const lc_tensor *img, double low, double high, double blur_sigma)
{
    return per_image(img, "canny", low, high, blur_sigma, 1);
}

lc_tensor *lc_image_gray(const lc_tensor *img)
{
    return per_image(img, "gray", 0, 0, 0, 0);
}

lc_tensor *lc_image_invert(const lc_tensor *img)
{
    if (check_image(img, "invert") != LC_OK)
        return NULL;
    lc_tensor *y = lc_binary_scalar(LC_SUB, img, 1.0, 1);
    if (!y || img->shape[1] == 3)
        return y;
    lc_tensor *r = lc_repeat(y, 4, (const int64_t[]){1, 3, 1, 1});
    lc_tensor_free(y);
    return r;
}

/* ---- PIL's Image.resize(..., LANCZOS) on 8 bits (what diffusers'
 * VaeImageProcessor does to PIL control images) ---- */

#define PIL_PREC 22 /* PIL's PRECISION_BITS for 8-bit images: 32 - 8 - 2 */

static double lanczos3(double x)
{
    if (x <= -3.0 || x >= 3.0)
        return 0.0;
    double a = x == 0 ? 1.0 : sin(M_PI * x) / (M_PI * x);
    double b = x == 0 ? 1.0 : sin(M_PI * x / 3.0) / (M_PI * x / 3.0);
    return a * b;
}

/* PIL's precompute_coeffs + normalize_coeffs_8bpc: per output pixel, the
 * first input index, the count and fixed-point weights (ksize each) */
static int pil_coeffs(int in, int out, int **bounds, int32_t **kk, int *ksize)
{
    double scale = (double)in / out, fscale = scale < 1 ? 1 : scale;
    double support = 3.0 * fscale;
    int ks = (int)ceil(support) * 2 + 1;
    int *b = malloc(sizeof *b * 2 * (size_t)out);
    int32_t *k = calloc((size_t)out * ks, sizeof *k);
    double *w = malloc(sizeof *w * (size_t)ks);
    if (!b || !k || !w) {
        free(b);
        free(k);
        free(w);
        return lc_err("resize: out of memory");
    }
    for (int xx = 0; xx < out; xx++) {
        double center = (xx + 0.5) * scale, ww = 0, ss = 1.0 / fscale;
        int xmin = (int)(center - support + 0.5), xmax = (int)(center + support + 0.5);
        if (xmin < 0)
            xmin = 0;
        if (xmax > in)
            xmax = in;
        xmax -= xmin;
        for (int x = 0; x < xmax; x++) {
            w[x] = lanczos3((x + xmin - center + 0.5) * ss);
            ww += w[x];
        }
        for (int x = 0; x < xmax; x++) {
            double v = ww != 0 ? w[x] / ww : w[x];
            k[(size_t)xx * ks + x] = v < 0 ? (int32_t)(-0.5 + v * (1 << PIL_PREC))
                                           : (int32_t)(0.5 + v * (1 << PIL_PREC));
        }
        b[2 * xx] = xmin;
        b[2 * xx + 1] = xmax;
    }
    free(w);
    *bounds = b;
    *kk = k;
    *ksize = ks;
    return LC_OK;
}

static uint8_t clip8(int64_t v)
{
    v >>= PIL_PREC;
    return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
}

int lc_resize_lanczos_u8(uint8_t *dst, const uint8_t *src, int h, int w, int oh, int ow)
{
    if (h < 1 || w < 1 || oh < 1 || ow < 1)
        return lc_err("resize: %dx%d to %dx%d", h, w, oh, ow);
    /* horizontal pass first, then vertical, each rounded to 8 bits, as
     * PIL; a pass whose size does not change is skipped */
    uint8_t *mid = malloc((size_t)h * ow);
    if (!mid)
        return lc_err("resize: out of memory");
    int *b = NULL, ks;
    int32_t *k = NULL;
    if (ow == w) {
        memcpy(mid, src, (size_t)h * w);
    } else {
        if (pil_coeffs(w, ow, &b, &k, &ks) != LC_OK) {
            free(mid);
            return LC_ERR;
        }
        for (int y = 0; y < h; y++)
            for (int x = 0; x < ow; x++) {
                int64_t s = (int64_t)1 << (PIL_PREC - 1);
                const int32_t *kx = k + (size_t)x * ks;
                for (int i = 0; i < b[2 * x + 1]; i++)
                    s += (int64_t)src[(size_t)y * w + b[2 * x] + i] * kx[i];
                mid[(size_t)y * ow + x] = clip8(s);
            }
        free(b);
        free(k);
    }
    if (oh == h) {
        memcpy(dst, mid, (size_t)h * ow);
    } else {
        if (pil_coeffs(h, oh, &b, &k, &ks) != LC_OK) {
            free(mid);
            return LC_ERR;
        }
        for (int y = 0; y < oh; y++) {
            const int32_t *ky = k + (size_t)y * ks;
            for (int x = 0; x < ow; x++) {
                int64_t s = (int64_t)1 << (PIL_PREC - 1);
                for (int i = 0; i < b[2 * y + 1]; i++)
                    s += (int64_t)mid[(size_t)(b[2 * y] + i) * ow + x] * ky[i];
                dst[(size_t)y * ow + x] = clip8(s);
            }
        }
        free(b);
        free(k);
    }
    free(mid);
    return LC_OK;
}

lc_tensor *lc_image_resize_lanczos(const lc_tensor *img, int64_t oh, int64_t ow)
{
    if (check_image(img, "resize") != LC_OK)
        return NULL;
    if (oh < 1 || ow < 1 || oh > 65536 || ow > 65536) {
        lc_err("resize: output size %lldx%lld", (long long)oh, (long long)ow);
        return NULL;
    }
    lc_tensor *x = lc_tensor_f32((lc_tensor *)img);
    if (!x)
        return NULL;
    int64_t N = x->shape[0], C = x->shape[1], h = x->shape[2], w = x->shape[3];
    lc_tensor *out = lc_tensor_new(LC_F32, 4, (const int64_t[]){N, C, oh, ow});
    uint8_t *a = malloc((size_t)(h * w + oh * ow));
    int rc = out && a ? LC_OK : LC_ERR;
    if (out && !a)
        lc_err("resize: out of memory");
    const float *p = lc_tensor_data(x);
    float *o = out ? lc_tensor_data(out) : NULL;
    for (int64_t n = 0; n < N * C && rc == LC_OK; n++) {
        for (int64_t i = 0; i < h * w; i++)
            a[i] = q8(p[n * h * w + i]);
        rc = lc_resize_lanczos_u8(a + h * w, a, (int)h, (int)w, (int)oh, (int)ow);
        for (int64_t i = 0; rc == LC_OK && i < oh * ow; i++)
            o[n * oh * ow + i] = a[h * w + i] / 255.0f;
    }
    free(a);
    lc_tensor_free(x);
    if (rc != LC_OK) {
        lc_tensor_free(out);
        return NULL;
    }
    return out;
}
