/* Control-image preprocessors (gray, Canny) and the ControlNet key map.
 * The ControlNet forward against diffusers is tested in
 * tests/lua/test_controlnet.lua (golden tiny-a case). */
#include "testutil.h"

#include "core/image.h"
#include "models/controlnet.h"
#include "ops/image_ops.h"

/* OpenCV's cvtColor(RGB2GRAY) of the primaries: 76, 150, 29 */
START_TEST(gray_weights)
{
    uint8_t r[4] = {255, 0, 0, 255}, g[4] = {0, 255, 0, 255}, b[4] = {0, 0, 255, 255}, o[4];
    lc_gray_u8(o, r, g, b, 4);
    ck_assert_int_eq(o[0], 76);
    ck_assert_int_eq(o[1], 150);
    ck_assert_int_eq(o[2], 29);
    ck_assert_int_eq(o[3], 255);
}
END_TEST

/* A 32x32 black image with a white square over rows/cols 8..23. Worked
 * out by hand from the 3x3 Sobel (|dx|+|dy|): the sides have magnitude
 * 1020 on both pixels of the step, and OpenCV's "m > previous, m >= next"
 * rule keeps the first of the two in scan order: row 7 and col 7 (outside
 * the square) on the top and left, row 23 and col 23 (inside) on the
 * bottom and right, cols/rows 9..22 each; at each corner the square's own
 * corner pixel (magnitude 1530, diagonal) is kept and its neighbours on
 * the step lines are suppressed by it. 4 x 14 + 4 = 60 edge pixels. */
#define SQ 32
static void square(uint8_t *img)
{
    memset(img, 0, SQ * SQ);
    for (int y = 8; y <= 23; y++)
        for (int x = 8; x <= 23; x++)
            img[y * SQ + x] = 255;
}

static int expected_edge(int y, int x)
{
    int mid_x = x >= 9 && x <= 22, mid_y = y >= 9 && y <= 22;
    if ((y == 7 || y == 23) && mid_x)
        return 1;
    if ((x == 7 || x == 23) && mid_y)
        return 1;
    return (y == 8 || y == 23) && (x == 8 || x == 23);
}

START_TEST(canny_square)
{
    uint8_t img[SQ * SQ], e[SQ * SQ];
    int32_t mag[SQ * SQ];
    square(img);
    ck_assert_int_eq(lc_canny_u8(e, img, SQ, SQ, 100, 200, mag), LC_OK);
    int n = 0;
    for (int y = 0; y < SQ; y++)
        for (int x = 0; x < SQ; x++) {
            int got = e[y * SQ + x] == 255;
            ck_assert_msg(e[y * SQ + x] == 0 || e[y * SQ + x] == 255, "value %d", e[y * SQ + x]);
            ck_assert_msg(got == expected_edge(y, x), "pixel (%d,%d): edge %d, expected %d", y, x,
                          got, expected_edge(y, x));
            n += got;
        }
    ck_assert_int_eq(n, 60);
    ck_assert_int_eq(mag[8 * SQ + 8], 1530);
    ck_assert_int_eq(mag[7 * SQ + 12], 1020);
    ck_assert_int_eq(mag[12 * SQ + 12], 0);
}
END_TEST

/* thresholds against the two magnitudes (1020 sides, 1530 corners) */
START_TEST(canny_hysteresis)
{
    uint8_t img[SQ * SQ], e[SQ * SQ];
    square(img);
    int n;
    /* corners strong, sides weak but connected to them: all 60 */
    ck_assert_int_eq(lc_canny_u8(e, img, SQ, SQ, 500, 1200, NULL), LC_OK);
    n = 0;
    for (int i = 0; i < SQ * SQ; i++)
        n += e[i] == 255;
    ck_assert_int_eq(n, 60);
    /* sides below low: only the 4 corners */
    ck_assert_int_eq(lc_canny_u8(e, img, SQ, SQ, 1100, 1200, NULL), LC_OK);
    n = 0;
    for (int i = 0; i < SQ * SQ; i++)
        n += e[i] == 255;
    ck_assert_int_eq(n, 4);
    ck_assert_int_eq(e[8 * SQ + 8], 255);
    ck_assert_int_eq(e[23 * SQ + 23], 255);
    /* nothing strong: nothing at all; swapped thresholds as OpenCV */
    ck_assert_int_eq(lc_canny_u8(e, img, SQ, SQ, 100, 1600, NULL), LC_OK);
    n = 0;
    for (int i = 0; i < SQ * SQ; i++)
        n += e[i] == 255;
    ck_assert_int_eq(n, 0);
    ck_assert_int_eq(lc_canny_u8(e, img, SQ, SQ, 1200, 500, NULL), LC_OK);
    n = 0;
    for (int i = 0; i < SQ * SQ; i++)
        n += e[i] == 255;
    ck_assert_int_eq(n, 60);
    ck_assert_int_eq(lc_canny_u8(e, img, SQ, SQ, -1, 5, NULL), LC_ERR);
}
END_TEST

/* ---- an independent textbook Canny: gradient angle from atan2 in
 * degrees, sectors at 22.5/67.5/112.5/157.5, components labelled by a
 * flood fill and kept when they hold a strong pixel ---- */
static int ref_canny(uint8_t *out, const uint8_t *g, int h, int w, int low, int high, int32_t *m)
{
    static const int kx[3][3] = {{-1, 0, 1}, {-2, 0, 2}, {-1, 0, 1}};
    int *gx = calloc((size_t)h * w, sizeof *gx), *gy = calloc((size_t)h * w, sizeof *gy);
    uint8_t *cand = calloc((size_t)h * w, 1);
    int *queue = malloc(sizeof *queue * (size_t)h * w);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            int sx = 0, sy = 0;
            for (int j = -1; j <= 1; j++)
                for (int i = -1; i <= 1; i++) {
                    int yy = y + j < 0 ? 0 : y + j >= h ? h - 1 : y + j;
                    int xx = x + i < 0 ? 0 : x + i >= w ? w - 1 : x + i;
                    sx += kx[j + 1][i + 1] * g[yy * w + xx];
                    sy += kx[i + 1][j + 1] * g[yy * w + xx];
                }
            gx[y * w + x] = sx;
            gy[y * w + x] = sy;
            m[y * w + x] = abs(sx) + abs(sy);
        }
#define M(yy, xx) ((yy) < 0 || (yy) >= h || (xx) < 0 || (xx) >= w ? 0 : m[(yy) * w + (xx)])
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            int v = m[y * w + x];
            if (v <= low)
                continue;
            double a = atan2(gy[y * w + x], gx[y * w + x]) * 180 / M_PI;
            if (a < 0)
                a += 180;
            int keep;
            if (a < 22.5 || a > 157.5)
                keep = v > M(y, x - 1) && v >= M(y, x + 1);
            else if (a > 67.5 && a < 112.5)
                keep = v > M(y - 1, x) && v >= M(y + 1, x);
            else if (a <= 67.5) /* gx, gy of one sign */
                keep = v > M(y - 1, x - 1) && v > M(y + 1, x + 1);
            else
                keep = v > M(y - 1, x + 1) && v > M(y + 1, x - 1);
            cand[y * w + x] = keep;
        }
    memset(out, 0, (size_t)h * w);
    uint8_t *seen = calloc((size_t)h * w, 1);
    for (int s = 0; s < h * w; s++) {
        if (!cand[s] || seen[s])
            continue;
        int qh = 0, qt = 0, strong = 0;
        queue[qt++] = s;
        seen[s] = 1;
        while (qh < qt) {
            int p = queue[qh++], py = p / w, px = p % w;
            strong |= m[p] > high;
            for (int j = -1; j <= 1; j++)
                for (int i = -1; i <= 1; i++) {
                    int yy = py + j, xx = px + i;
                    if (yy < 0 || yy >= h || xx < 0 || xx >= w || !cand[yy * w + xx] ||
                        seen[yy * w + xx])
                        continue;
                    seen[yy * w + xx] = 1;
                    queue[qt++] = yy * w + xx;
                }
        }
        if (strong)
            for (int k = 0; k < qt; k++)
                out[queue[k]] = 255;
    }
#undef M
    int n = 0;
    for (int i = 0; i < h * w; i++)
        n += out[i] == 255;
    free(gx);
    free(gy);
    free(cand);
    free(queue);
    free(seen);
    return n;
}

/* camera.png (512x512 gray): edge count against the textbook reference.
 * The two differ only where the gradient angle falls within rounding of
 * a sector boundary (OpenCV's 15-bit fixed-point tangent vs atan2), which
 * can flip single pixels and, through hysteresis, short chains: the
 * counts must agree within 0.5% and the images in 1% of the edge pixels.
 * Invariants of the result: magnitude above low on every edge pixel, and
 * every 8-connected edge component holds a pixel above high. */
START_TEST(canny_camera)
{
    lc_tensor *img = lc_image_load_u8(lt_data("test_images/camera.png"));
    ck_assert_msg(img != NULL, "%s", lc_errmsg());
    /* interleaved [H,W,3] */
    ck_assert_int_eq(img->ndim, 3);
    int h = (int)img->shape[0], w = (int)img->shape[1];
    uint8_t *g = malloc((size_t)h * w), *e = malloc((size_t)h * w), *r = malloc((size_t)h * w);
    uint8_t *pl = malloc((size_t)h * w * 3);
    int32_t *mag = malloc(sizeof *mag * (size_t)h * w), *rm = malloc(sizeof *rm * (size_t)h * w);
    const uint8_t *p = lc_tensor_data(img);
    for (int i = 0; i < h * w; i++)
        for (int c = 0; c < 3; c++)
            pl[(size_t)c * h * w + i] = p[i * 3 + c];
    lc_gray_u8(g, pl, pl + (size_t)h * w, pl + 2 * (size_t)h * w, (int64_t)h * w);
    free(pl);
    ck_assert_int_eq(lc_canny_u8(e, g, h, w, 100, 200, mag), LC_OK);
    int n = 0, differ = 0;
    for (int i = 0; i < h * w; i++)
        n += e[i] == 255;
    int nr = ref_canny(r, g, h, w, 100, 200, rm);
    for (int i = 0; i < h * w; i++) {
        differ += (e[i] == 255) != (r[i] == 255);
        ck_assert_int_eq(mag[i], rm[i]);
        if (e[i] == 255)
            ck_assert_msg(mag[i] > 100, "edge pixel %d with magnitude %d", i, mag[i]);
    }
    printf("# camera.png: %d edge pixels (reference %d, %d differ)\n", n, nr, differ);
    ck_assert_msg(n > 2000, "only %d edges", n);
    ck_assert_msg(abs(n - nr) <= nr / 200, "count %d vs reference %d", n, nr);
    ck_assert_msg(differ <= nr / 100, "%d pixels differ", differ);
    /* every component of edges contains a strong pixel */
    uint8_t *seen = calloc((size_t)h * w, 1);
    int *q = malloc(sizeof *q * (size_t)h * w);
    for (int s = 0; s < h * w; s++) {
        if (e[s] != 255 || seen[s])
            continue;
        int qh = 0, qt = 0, strong = 0;
        q[qt++] = s;
        seen[s] = 1;
        while (qh < qt) {
            int pp = q[qh++], py = pp / w, px = pp % w;
            strong |= mag[pp] > 200;
            for (int j = -1; j <= 1; j++)
                for (int i = -1; i <= 1; i++) {
                    int yy = py + j, xx = px + i;
                    if (yy < 0 || yy >= h || xx < 0 || xx >= w || e[yy * w + xx] != 255 ||
                        seen[yy * w + xx])
                        continue;
                    seen[yy * w + xx] = 1;
                    q[qt++] = yy * w + xx;
                }
        }
        ck_assert_msg(strong, "edge component at %d without a strong pixel", s);
    }
    free(seen);
    free(q);
    free(g);
    free(e);
    free(r);
    free(mag);
    free(rm);
    lc_tensor_free(img);
}
END_TEST

/* tensor front end: [1,3,H,W] in [0,1] -> 3 equal channels of {0,1};
 * a blur spreads a one-pixel dot, so the dot's edges change */
START_TEST(canny_tensor)
{
    lc_tensor *t = lc_tensor_zeros(LC_F32, 4, (const int64_t[]){1, 3, SQ, SQ});
    float *d = lc_tensor_data(t);
    for (int c = 0; c < 3; c++)
        for (int y = 8; y <= 23; y++)
            for (int x = 8; x <= 23; x++)
                d[(c * SQ + y) * SQ + x] = 1.0f;
    lc_tensor *e = lc_image_canny(t, 100, 200, 0);
    ck_assert_ptr_nonnull(e);
    ck_assert_int_eq(e->shape[1], 3);
    const float *o = lc_tensor_data(e);
    int n = 0;
    for (int i = 0; i < SQ * SQ; i++) {
        ck_assert(o[i] == o[SQ * SQ + i] && o[i] == o[2 * SQ * SQ + i]);
        ck_assert(o[i] == 0.0f || o[i] == 1.0f);
        n += o[i] == 1.0f;
    }
    ck_assert_int_eq(n, 60);
    lc_tensor_free(e);
    lc_tensor *gr = lc_image_gray(t);
    ck_assert_ptr_nonnull(gr);
    ck_assert(((float *)lc_tensor_data(gr))[8 * SQ + 8] == 1.0f);
    lc_tensor_free(gr);
    lc_tensor *inv = lc_image_invert(t);
    ck_assert(((float *)lc_tensor_data(inv))[0] == 1.0f);
    ck_assert(((float *)lc_tensor_data(inv))[8 * SQ + 8] == 0.0f);
    lc_tensor_free(inv);
    lc_tensor *bad = lc_tensor_zeros(LC_F32, 3, (const int64_t[]){3, SQ, SQ});
    ck_assert_ptr_null(lc_image_canny(bad, 100, 200, 0));
    ck_assert_msg(strstr(lc_errmsg(), "expected [N,3,H,W]"), "%s", lc_errmsg());
    lc_tensor_free(bad);
    lc_tensor_free(t);
}
END_TEST

/* blur: a constant image stays constant; sigma <= 0 is an error */
START_TEST(blur)
{
    uint8_t a[64], b[64];
    memset(a, 77, sizeof a);
    ck_assert_int_eq(lc_gaussian_blur_u8(b, a, 8, 8, 1.4), LC_OK);
    for (int i = 0; i < 64; i++)
        ck_assert_int_eq(b[i], 77);
    memset(a, 0, sizeof a);
    a[4 * 8 + 4] = 255;
    ck_assert_int_eq(lc_gaussian_blur_u8(b, a, 8, 8, 1.0), LC_OK);
    ck_assert(b[4 * 8 + 4] < 255 && b[4 * 8 + 4] > 0 && b[4 * 8 + 5] > 0);
    ck_assert_int_eq(b[4 * 8 + 3], b[4 * 8 + 5]);
    ck_assert_int_eq(lc_gaussian_blur_u8(b, a, 8, 8, 0), LC_ERR);
}
END_TEST

/* PIL LANCZOS by hand: halving two pixels weighs them lanczos(-0.25) and
 * lanczos(0.25), i.e. 1/2 each after normalisation, and PIL rounds with a
 * half added before the 22-bit shift: (a + b + 1) / 2 rounded down.
 * [[0,255],[255,255]] -> rows 128 and 255 -> (128 + 255 + 1) / 2 = 192. */
START_TEST(lanczos)
{
    uint8_t src[4] = {0, 255, 255, 255}, out[16];
    ck_assert_int_eq(lc_resize_lanczos_u8(out, src, 2, 2, 1, 1), LC_OK);
    ck_assert_int_eq(out[0], 192);
    ck_assert_int_eq(lc_resize_lanczos_u8(out, src, 2, 2, 2, 1), LC_OK);
    ck_assert_int_eq(out[0], 128);
    ck_assert_int_eq(out[1], 255);
    /* same size: untouched; one pixel upscaled: constant */
    ck_assert_int_eq(lc_resize_lanczos_u8(out, src, 2, 2, 2, 2), LC_OK);
    ck_assert(memcmp(out, src, 4) == 0);
    uint8_t one = 77;
    ck_assert_int_eq(lc_resize_lanczos_u8(out, &one, 1, 1, 4, 4), LC_OK);
    for (int i = 0; i < 16; i++)
        ck_assert_int_eq(out[i], 77);
    ck_assert_int_eq(lc_resize_lanczos_u8(out, src, 2, 2, 0, 1), LC_ERR);
}
END_TEST

/* original ControlNet names -> diffusers (layers_per_block 2, hint conv
 * 14 last, as the released SD 1.5 ControlNets) */
START_TEST(key_map)
{
    lc_controlnet_ldm_map m = {.unet = {.layers_per_block = 2}, .hint_last = 14};
    static const char *pairs[][2] = {
        {"input_hint_block.0.weight", "controlnet_cond_embedding.conv_in.weight"},
        {"input_hint_block.2.bias", "controlnet_cond_embedding.blocks.0.bias"},
        {"input_hint_block.12.weight", "controlnet_cond_embedding.blocks.5.weight"},
        {"input_hint_block.14.weight", "controlnet_cond_embedding.conv_out.weight"},
        {"zero_convs.0.0.weight", "controlnet_down_blocks.0.weight"},
        {"zero_convs.11.0.bias", "controlnet_down_blocks.11.bias"},
        {"middle_block_out.0.weight", "controlnet_mid_block.weight"},
        {"input_blocks.0.0.weight", "conv_in.weight"},
        {"input_blocks.3.0.op.weight", "down_blocks.0.downsamplers.0.conv.weight"},
        {"input_blocks.4.1.proj_in.weight", "down_blocks.1.attentions.0.proj_in.weight"},
        {"middle_block.2.in_layers.0.weight", "mid_block.resnets.1.norm1.weight"},
        {"time_embed.2.bias", "time_embedding.linear_2.bias"},
    };
    char out[256];
    for (size_t i = 0; i < sizeof pairs / sizeof *pairs; i++) {
        ck_assert_msg(lc_controlnet_ldm_name(&m, pairs[i][0], out, sizeof out), "%s", pairs[i][0]);
        ck_assert_str_eq(out, pairs[i][1]);
    }
    ck_assert(!lc_controlnet_ldm_name(&m, "input_hint_block.1.weight", out, sizeof out));
    ck_assert(!lc_controlnet_ldm_name(&m, "zero_convs.1.1.weight", out, sizeof out));
}
END_TEST

START_TEST(config_errors)
{
    lc_controlnet_config c;
    ck_assert_int_eq(lc_controlnet_config_parse(&c, "{\"_class_name\": \"UNet2DConditionModel\"}",
                                                "x/config.json"),
                     LC_ERR);
    ck_assert_msg(strstr(lc_errmsg(), "not a ControlNet"), "%s", lc_errmsg());
    ck_assert_int_eq(lc_controlnet_config_parse(
                         &c, "{\"_class_name\": \"ControlNetModel\", "
                             "\"conditioning_embedding_out_channels\": [8, 16], "
                             "\"block_out_channels\": [32, 64], \"cross_attention_dim\": 32}",
                         "cfg"),
                     LC_OK);
    ck_assert_int_eq(c.ncond, 2);
    ck_assert_int_eq(c.cond_channels[1], 16);
    ck_assert_int_eq(c.unet.nblocks, 2);
    ck_assert_int_eq(lc_controlnet_config_parse(
                         &c, "{\"controlnet_conditioning_channel_order\": \"xyz\"}", "cfg"),
                     LC_ERR);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("controlnet");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, gray_weights);
    tcase_add_test(tc, canny_square);
    tcase_add_test(tc, canny_hysteresis);
    tcase_add_test(tc, canny_camera);
    tcase_add_test(tc, canny_tensor);
    tcase_add_test(tc, blur);
    tcase_add_test(tc, lanczos);
    tcase_add_test(tc, key_map);
    tcase_add_test(tc, config_errors);
    suite_add_tcase(s, tc);
    return lt_run(s);
}
