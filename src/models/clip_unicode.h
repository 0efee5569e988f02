/* Unicode support for the CLIP tokenizer, from tables generated out of
 * Python's unicodedata (clip_unicode_tables.h, scripts/gen_clip_unicode.py)
 * so that classes, lower-casing and NFC agree with what transformers sees. */
#ifndef LC_CLIP_UNICODE_H
#define LC_CLIP_UNICODE_H

#include <stddef.h>
#include <stdint.h>

/* character classes (lc_cu_class) */
enum {
    LC_CU_OTHER,
    LC_CU_LETTER,        /* \p{L} */
    LC_CU_NUMBER,        /* \p{N} */
    LC_CU_SPACE,         /* str.isspace(), not a control character */
    LC_CU_CONTROL,       /* category C* (Cc, Cf, Cn, Co, Cs) */
    LC_CU_CONTROL_SPACE, /* both: \t \n \r \v \f, U+001C..U+001F, U+0085 */
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

int lc_cu_class(uint32_t cp);
int lc_cu_is_cjk(uint32_t cp); /* BasicTokenizer._is_chinese_char */
/* str.lower() of in[0..n) appended to out */
int lc_cu_lower(const uint32_t *in, size_t n, lc_u32vec *out);
/* unicodedata.normalize("NFC", ...) of in[0..n) appended to out */
int lc_cu_nfc(const uint32_t *in, size_t n, lc_u32vec *out);
/* html.unescape for numeric references and amp, lt, gt, quot, apos, nbsp;
 * malloc'd result */
char *lc_html_unescape(const char *s);

#endif
