/* libFuzzer target: the CLIP tokenizer (text cleanup, Unicode tables,
 * the pre-tokenizer, BPE) on arbitrary bytes, and decoding its ids. */
#include "fuzz_util.h"

#include "models/clip_tokenizer.h"

static lc_clip_tokenizer *tok[2];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!tok[0]) {
        for (int m = 0; m < 2; m++) {
            tok[m] = lc_clip_tokenizer_load(LUCID_SRCDIR "/data/clip");
            if (!tok[m]) {
                fprintf(stderr, "fuzz: %s\n", lc_errmsg());
                abort();
            }
        }
        lc_clip_tokenizer_set_clean(tok[1], LC_CLIP_CLEAN_OPENAI);
    }
    /* the first byte picks the cleanup, the rest is the text */
    if (size == 0)
        return 0;
    lc_clip_tokenizer *t = tok[data[0] & 1];
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    int32_t *ids;
    int n;
    if (lc_clip_encode(t, text, len, &ids, &n) != LC_OK)
        abort(); /* any bytes are accepted */
    lc_clip_info info = lc_clip_tokenizer_info(t);
    for (int i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= info.vocab_size)
            abort();
    char *back = lc_clip_decode(t, ids, n, 1);
    if (!back)
        abort(); /* ids from the encoder decode */
    free(back);
    free(ids);
    const char **toks;
    if (lc_clip_tokens(t, text, len, &toks, &n) == LC_OK)
        free((void *)toks);
    lc_tensor *p = lc_clip_encode_padded(t, text, len, 0);
    if (!p)
        abort();
    lc_tensor_free(p);
    lc_err_clear();
    return 0;
}
