/* libFuzzer target: the safetensors reader (header validation, tensor
 * views over the mapping, dtype conversion of unaligned data). */
#include "fuzz_util.h"

#include "core/safetensors.h"
#include "core/tensor.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fuzz_file(data, size, ".safetensors");
    lc_st_file *f = lc_st_open(path);
    if (!f) {
        lc_err_clear();
        return 0;
    }
    for (int i = 0; i < lc_st_metadata_count(f); i++) {
        const char *k = lc_st_metadata_key(f, i);
        if (k && !lc_st_metadata(f, k))
            abort(); /* a listed key must be found */
    }
    int n = lc_st_count(f);
    for (int i = 0; i < n; i++) {
        const char *name = lc_st_name(f, i);
        if (lc_st_find(f, name) != i)
            abort(); /* names are unique */
        lc_tensor *t = lc_st_get_index(f, i);
        if (!t) {
            lc_err_clear();
            continue;
        }
        /* every byte the header promises is inside the file */
        const volatile unsigned char *p = lc_tensor_data(t);
        size_t nb = lc_tensor_nbytes(t);
        unsigned sum = 0;
        for (size_t b = 0; b < nb; b++)
            sum += p[b];
        (void)sum;
        if (t->dtype != LC_F32 && lc_dtype_is_float(t->dtype) && lc_tensor_numel(t) <= (1 << 20)) {
            lc_tensor *c = lc_tensor_to(t, LC_F32);
            if (!c)
                lc_err_clear();
            lc_tensor_free(c);
        }
        lc_tensor_free(t);
    }
    lc_st_close(f);
    lc_err_clear();
    return 0;
}
