/* Image files: PNG (libpng), JPEG (libjpeg-turbo) and binary PPM/PGM in;
 * PNG or JPEG out. The format is detected from the file's first bytes, not
 * its name, so a JPEG called x.png still loads.
 *
 * Loading converts everything to 8-bit RGB the way PIL's convert("RGB")
 * does: gray is replicated, palettes expanded, alpha dropped (not
 * composited), 16-bit samples scaled to 8 bits. Sizes above
 * LC_IMAGE_MAX_SIDE per side or LC_IMAGE_MAX_PIXELS in total are refused
 * before any pixel memory is allocated.
 *
 * Text: PNG tEXt/zTXt/iTXt chunks and JPEG COM markers ("key: value") carry
 * key/value strings, which is where outputs store their provenance. Values
 * are UTF-8 in this API. */
#ifndef LC_IMAGE_H
#define LC_IMAGE_H

#include "tensor.h"

#define LC_IMAGE_MAX_SIDE 32768
#define LC_IMAGE_MAX_PIXELS ((int64_t)1 << 28)

/* f32 [1,3,H,W], values k/255 for 8-bit samples k */
lc_tensor *lc_image_load(const char *path);
/* u8 [H,W,3], the decoder's interleaved RGB */
lc_tensor *lc_image_load_u8(const char *path);

/* Saves [1,3,H,W], [3,H,W], [1,H,W], [1,1,H,W] or [H,W] as 8-bit RGB: PNG
 * for .png, JPEG (quality 95) for .jpg/.jpeg. Float tensors hold [0,1]
 * (clamped, NaN -> 0, byte = (uint8)(x*255 + 0.5)); u8 tensors are stored
 * as they are. Text keys are 1-79 printable ASCII characters; values are
 * UTF-8 (ASCII goes to tEXt chunks, anything else to iTXt). The file is
 * written to a temporary name and renamed: no partial output on error. */
int lc_image_save(lc_tensor *t, const char *path, const char *const *text_keys,
                  const char *const *text_vals, int ntext);

/* Text pairs of an image file in file order. *keys and *vals are malloc'd
 * arrays of malloc'd UTF-8 strings; free with lc_image_text_free. PPM files
 * have none (n = 0). */
int lc_image_read_text(const char *path, char ***keys, char ***vals, int *n);
void lc_image_text_free(char **keys, char **vals, int n);

#endif
