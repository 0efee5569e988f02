/* Unicode support for the CLIP tokenizer, from tables generated out of
 * Python's unicodedata (clip_unicode_tables.h, scripts/gen_clip_unicode.py)
 * so that classes, lower-casing and NFC agree with what transformers sees. */
#ifndef LC_CLIP_UNICODE_H
#define LC_CLIP_UNICODE_H

#include <stddef.h>
#include <stdint.h>

/* Properties of a code point (lc_cu_props): the pre-tokenizer class in the
 * low bits, as the regex module matches the pattern with IGNORECASE, and
 * flags from unicodedata for the text cleanup. */
enum {
    LC_CU_OTHER,  /* [^\s\p{L}\p{N}] */
    LC_CU_LETTER, /* \p{L} */
    LC_CU_NUMBER, /* \p{N} */
    LC_CU_SPACE,  /* \s */
    LC_CU_NONE,   /* matches no alternative (U+0345, whose case variant is a
                     letter), so the pattern skips it */
    LC_CU_CLASS = 7,
    LC_CU_IS_C = 8,     /* category C* (Cc, Cf, Cn, Co, Cs) */
    LC_CU_ISSPACE = 16, /* str.isspace() */
    LC_CU_CASED = 32,   /* Cased and Case_Ignorable, for the final sigma */
    LC_CU_CASE_IGNORABLE = 64,
};

typedef struct {
    uint32_t *v;
    size_t n, cap;
} lc_u32vec;

int lc_u32_push(lc_u32vec *a, uint32_t x); /* LC_ERR on out of memory */

/* UTF-8: put returns the bytes written (at most 4); get decodes one code
 * point, malformed input reading as U+FFFD over one byte */
size_t lc_utf8_put(char *out, uint32_t cp);
uint32_t lc_utf8_get(const unsigned char *s, size_t n, size_t *used);

int lc_cu_props(uint32_t cp);
static inline int lc_cu_class(uint32_t cp)
{
    return lc_cu_props(cp) & LC_CU_CLASS;
}
int lc_cu_is_cjk(uint32_t cp); /* BasicTokenizer._is_chinese_char */
/* str.lower() of in[0..n) appended to out */
int lc_cu_lower(const uint32_t *in, size_t n, lc_u32vec *out);
/* unicodedata.normalize("NFC", ...) of in[0..n) appended to out */
int lc_cu_nfc(const uint32_t *in, size_t n, lc_u32vec *out);
/* html.unescape for numeric references and amp, lt, gt, quot, apos, nbsp
 * over len bytes; malloc'd result of *out_len bytes (NUL-terminated too) */
char *lc_html_unescape(const char *s, size_t len, size_t *out_len);

#endif
