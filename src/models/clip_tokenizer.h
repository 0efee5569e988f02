/* The CLIP BPE tokenizer, as transformers' (slow) CLIPTokenizer without
 * ftfy, which is what diffusers pipelines run:
 *
 *   text cleanup (BasicTokenizer: drop control characters, spaces around
 *   CJK ideographs, lower case, collapse whitespace) -> pre-tokenizer regex
 *   <|startoftext|>|<|endoftext|>|'s|'t|'re|'ve|'m|'ll|'d|\p{L}+|\p{N}|[^\s\p{L}\p{N}]+
 *   -> UTF-8 bytes mapped to printable characters -> BPE by merge rank with
 *   "</w>" on the last symbol -> vocabulary ids, framed by BOS ... EOS.
 *
 * LC_CLIP_CLEAN_OPENAI switches the cleanup to OpenAI's simple_tokenizer
 * (html unescape twice, whitespace collapse, lower case; no control
 * character removal, no CJK spacing). Both normalise to NFC. The pattern's
 * classes come from the regex module as transformers matches them
 * (IGNORECASE), cleanup classes, str.lower() (final sigma included) and NFC
 * from Python's unicodedata, all as generated tables (clip_unicode.c).
 * Checked against a transcription of transformers' code on 23000 random
 * strings. Encoding never modifies the tokenizer, so threads may share one. */
#ifndef LC_CLIP_TOKENIZER_H
#define LC_CLIP_TOKENIZER_H

#include <stdint.h>

#include "../core/tensor.h"

typedef struct lc_clip_tokenizer lc_clip_tokenizer;

typedef enum {
    LC_CLIP_CLEAN_HF = 0, /* transformers CLIPTokenizer without ftfy (default) */
    LC_CLIP_CLEAN_OPENAI, /* OpenAI simple_tokenizer.py */
} lc_clip_clean;

/* Loads vocab.json and merges.txt from dir; tokenizer_config.json and
 * special_tokens_map.json (optional) give the special tokens, the padding
 * token (SD 1.x "<|endoftext|>", SD 2.x "!") and model_max_length. */
lc_clip_tokenizer *lc_clip_tokenizer_load(const char *dir);
void lc_clip_tokenizer_free(lc_clip_tokenizer *t);
void lc_clip_tokenizer_set_clean(lc_clip_tokenizer *t, lc_clip_clean mode);
/* Overrides model_max_length (the padded length), e.g. with the text
 * encoder's max_position_embeddings: ComfyUI's copy of the SD 1.x
 * tokenizer says 8192. LC_ERR if below 2. */
int lc_clip_tokenizer_set_max_length(lc_clip_tokenizer *t, int max_length);

/* BOS, the text's ids, EOS; no truncation or padding. text is len bytes
 * (NULs included). *ids is malloc'd (free() it). Returns LC_OK or LC_ERR.
 * Any bytes are accepted: invalid UTF-8 reads as U+FFFD. */
int lc_clip_encode(lc_clip_tokenizer *t, const char *text, size_t len, int32_t **ids, int *n);
/* i64 [1, max_len]: truncated keeping EOS last, padded with the pad id.
 * max_len <= 0 uses the tokenizer's model_max_length. */
lc_tensor *lc_clip_encode_padded(lc_clip_tokenizer *t, const char *text, size_t len, int max_len);
/* The token strings of the text without BOS/EOS ("photo</w>", ...): an
 * array of *n strings owned by the tokenizer's vocabulary; free() only
 * the array. */
int lc_clip_tokens(lc_clip_tokenizer *t, const char *text, size_t len, const char ***tokens,
                   int *n);
/* Ids back to text as transformers' decode: "</w>" becomes a space, ends
 * trimmed, then " ," -> "," and the like when the config's
 * clean_up_tokenization_spaces is true (the default). skip_special drops
 * BOS, EOS and pad. Returns a malloc'd string or NULL (bad id). */
char *lc_clip_decode(const lc_clip_tokenizer *t, const int32_t *ids, int n, int skip_special);

/* the vocabulary: token string of an id (NULL if out of range), id of a
 * string (-1 if absent) */
const char *lc_clip_token_str(const lc_clip_tokenizer *t, int32_t id);
int32_t lc_clip_token_id(const lc_clip_tokenizer *t, const char *token);

typedef struct {
    int32_t bos, eos, pad, unk;
    int max_length;
    int vocab_size;
    int n_merges;
} lc_clip_info;
lc_clip_info lc_clip_tokenizer_info(const lc_clip_tokenizer *t);

#endif
