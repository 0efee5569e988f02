/* Control-image preprocessors: OpenCV's cv2.cvtColor(RGB2GRAY) and
 * cv2.Canny on 8-bit images, an optional Gaussian blur, and inversion.
 * Tensor images are [N,C,H,W] (C = 1 or 3) in [0,1]; they are quantized to
 * 8 bits (round(255 x)) first, as the images OpenCV sees, so an image
 * loaded from a PNG goes through exactly the integer arithmetic OpenCV
 * does. */
#ifndef LC_IMAGE_OPS_H
#define LC_IMAGE_OPS_H

#include <stdint.h>

#include "core/tensor.h"

/* planar 8-bit RGB -> gray with OpenCV's fixed-point weights
 * (R 4899, G 9617, B 1868) / 2^14, rounded */
void lc_gray_u8(uint8_t *dst, const uint8_t *r, const uint8_t *g, const uint8_t *b, int64_t n);

/* cv2.GaussianBlur(src, (0,0), sigma) on 8 bits: kernel size
 * round(6 sigma + 1) | 1, reflect-101 borders; computed in double and
 * rounded (OpenCV's fixed-point path may differ by one level) */
int lc_gaussian_blur_u8(uint8_t *dst, const uint8_t *src, int h, int w, double sigma);

/* cv2.Canny(src, low, high) (aperture 3, L1 gradient): 3x3 Sobel with
 * replicated borders, |dx| + |dy|, non-maximum suppression with OpenCV's
 * fixed-point tangent sectors, hysteresis over 8-connected neighbours.
 * dst: 255 on edges, 0 elsewhere. Thresholds are swapped when low > high.
 * mag (may be NULL) receives the gradient magnitude per pixel. */
int lc_canny_u8(uint8_t *dst, const uint8_t *src, int h, int w, double low, double high,
                int32_t *mag);

/* PIL's Image.resize((ow, oh), Image.LANCZOS) on one 8-bit plane:
 * Lanczos-3 widened by the downscale factor, 22-bit fixed-point weights,
 * horizontal pass then vertical, each rounded and clipped to 8 bits */
int lc_resize_lanczos_u8(uint8_t *dst, const uint8_t *src, int h, int w, int oh, int ow);

/* tensor versions; all return [N,3,H,W] f32 in [0,1] */
/* [N,C,H,W] -> [N,C,oh,ow], each plane quantized to 8 bits and resized as
 * PIL's LANCZOS (diffusers' control-image preprocessing) */
lc_tensor *lc_image_resize_lanczos(const lc_tensor *img, int64_t oh, int64_t ow);
/* edges (1) of each image's gray version; blur_sigma > 0 blurs first */
lc_tensor *lc_image_canny(const lc_tensor *img, double low, double high, double blur_sigma);
/* the 8-bit gray image repeated over 3 channels */
lc_tensor *lc_image_gray(const lc_tensor *img);
/* 1 - x (a 1-channel image is repeated over 3 channels) */
lc_tensor *lc_image_invert(const lc_tensor *img);

#endif
