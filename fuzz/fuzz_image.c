/* libFuzzer target: image decoding (PNG through libpng, JPEG through
 * libjpeg-turbo, binary PPM/PGM) and the text chunks. */
#include "fuzz_util.h"

#include "core/image.h"
#include "core/tensor.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fuzz_file(data, size, ".img");
    /* u8 first: 3 bytes a pixel keeps the largest allowed image under
     * libFuzzer's memory limit; the f32 path only for small ones */
    lc_tensor *t = lc_image_load_u8(path);
    if (t) {
        if (t->ndim != 3 || t->shape[2] != 3)
            abort();
        int64_t px = t->shape[0] * t->shape[1];
        lc_tensor_free(t);
        if (px <= (1 << 20)) {
            lc_tensor *f = lc_image_load(path);
            if (!f)
                abort(); /* decoded once, must decode again */
            lc_tensor_free(f);
        }
    }
    lc_err_clear();
    char **keys, **vals;
    int n;
    if (lc_image_read_text(path, &keys, &vals, &n) == LC_OK)
        lc_image_text_free(keys, vals, n);
    lc_err_clear();
    return 0;
}
