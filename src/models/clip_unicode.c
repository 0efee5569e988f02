/* Unicode helpers for the CLIP tokenizer; see clip_unicode.h. */
#include "clip_unicode.h"

#include <stdlib.h>
#include <string.h>

#include "../core/error.h"
#include "clip_unicode_tables.h"

size_t lc_utf8_put(char *out, uint32_t cp)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* One code point from s (n bytes left); malformed sequences, overlongs,
 * surrogates and values past U+10FFFF consume one byte as U+FFFD. */
uint32_t lc_utf8_get(const unsigned char *s, size_t n, size_t *used)
{
    unsigned c = s[0];
    int len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    *used = 1;
    if (len == 1)
        return c;
    if (len == 0 || (size_t)len > n)
        return 0xFFFD;
    uint32_t cp = c & (0x7F >> len);
    for (int i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0xFFFD;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    static const uint32_t min[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < min[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0xFFFD;
    *used = (size_t)len;
    return cp;
}



int lc_cu_props(uint32_t cp)
{
    int lo = 0, hi = (int)(sizeof clip_ucls_start / sizeof *clip_ucls_start) - 1;
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (clip_ucls_start[mid] <= cp)
            lo = mid;
        else
            hi = mid - 1;
    }
    return clip_ucls_class[lo];
}

static uint32_t ulower1(uint32_t cp)
{
    if (cp < 0x80)
        return cp >= 'A' && cp <= 'Z' ? cp + 32 : cp;
    int lo = 0, hi = (int)(sizeof clip_lower_map / sizeof *clip_lower_map) - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (clip_lower_map[mid][0] == cp)
            return clip_lower_map[mid][1];
        if (clip_lower_map[mid][0] < cp)
            lo = mid + 1;
        else
            hi = mid - 1;
    }
    return cp;
}

/* BasicTokenizer._is_chinese_char */
int lc_cu_is_cjk(uint32_t cp)
{
    return (cp >= 0x4E00 && cp <= 0x9FFF) || (cp >= 0x3400 && cp <= 0x4DBF) ||
           (cp >= 0x20000 && cp <= 0x2A6DF) || (cp >= 0x2A700 && cp <= 0x2B73F) ||
           (cp >= 0x2B740 && cp <= 0x2B81F) || (cp >= 0x2B820 && cp <= 0x2CEAF) ||
           (cp >= 0xF900 && cp <= 0xFAFF) || (cp >= 0x2F800 && cp <= 0x2FA1F);
}

int lc_u32_push(lc_u32vec *a, uint32_t x)
{
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 256;
        uint32_t *v = realloc(a->v, cap * sizeof *v);
        if (!v)
            return lc_err("out of memory tokenizing");
        a->v = v;
        a->cap = cap;
    }
    a->v[a->n++] = x;
    return LC_OK;
}

/* Python's Final_Sigma: cased (case-ignorable)* SIGMA, not followed by
 * (case-ignorable)* cased */
static int final_sigma(const uint32_t *in, size_t n, size_t i)
{
    size_t j = i;
    int p = 0;
    while (j > 0 && ((p = lc_cu_props(in[j - 1])) & LC_CU_CASE_IGNORABLE))
        j--;
    if (j == 0 || !(p & LC_CU_CASED))
        return 0;
    for (j = i + 1; j < n; j++) {
        p = lc_cu_props(in[j]);
        if (!(p & LC_CU_CASE_IGNORABLE))
            return !(p & LC_CU_CASED);
    }
    return 1;
}

/* str.lower() over a code point array */
int lc_cu_lower(const uint32_t *in, size_t n, lc_u32vec *out)
{
    for (size_t i = 0; i < n; i++) {
        uint32_t cp = in[i];
        if (cp == 0x3A3) {
            if (lc_u32_push(out, final_sigma(in, n, i) ? 0x3C2 : 0x3C3) != LC_OK)
                return LC_ERR;
            continue;
        }
        int multi = 0;
        for (size_t k = 0; k < sizeof clip_lower_multi / sizeof *clip_lower_multi; k++) {
            if (clip_lower_multi[k][0] == cp) {
                for (int j = 1; j < 4 && clip_lower_multi[k][j]; j++)
                    if (lc_u32_push(out, clip_lower_multi[k][j]) != LC_OK)
                        return LC_ERR;
                multi = 1;
            }
        }
        if (!multi && lc_u32_push(out, ulower1(cp)) != LC_OK)
            return LC_ERR;
    }
    return LC_OK;
}

/* html.unescape for numeric references and the common named ones (amp,
 * lt, gt, quot, apos, nbsp; the legacy ones also without ';'). */
static int hex_digit(int c)
{
    return c >= '0' && c <= '9' ? c - '0' : (c | 32) >= 'a' && (c | 32) <= 'f' ? (c | 32) - 'a' + 10 : -1;
}

char *lc_html_unescape(const char *s, size_t n, size_t *out_len)
{
    /* every reference is at least as long as its UTF-8 (&#1; -> 1 byte) */
    char *out = lc_malloc(n + 1, "tokenizer text");
    if (!out)
        return NULL;
    static const struct {
        const char *name;
        uint32_t cp;
        int legacy; /* also valid without the ';' */
    } named[] = {{"amp", '&', 1},   {"lt", '<', 1},     {"gt", '>', 1},
                 {"quot", '"', 1},  {"apos", '\'', 0}, {"nbsp", 0xA0, 1}};
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        if (s[i] != '&') {
            out[o++] = s[i++];
            continue;
        }
        size_t j = i + 1;
        if (j < n && s[j] == '#') {
            int hex = j + 1 < n && (s[j + 1] == 'x' || s[j + 1] == 'X');
            size_t d = j + 1 + (size_t)hex;
            uint32_t v = 0;
            size_t nd = 0;
            for (; d < n; d++, nd++) {
                int dv = hex ? hex_digit((unsigned char)s[d])
                             : (s[d] >= '0' && s[d] <= '9' ? s[d] - '0' : -1);
                if (dv < 0)
                    break;
                if (v <= 0x10FFFF)
                    v = v * (hex ? 16u : 10u) + (uint32_t)dv;
            }
            if (nd > 0) {
                if (d < n && s[d] == ';')
                    d++;
                if (v == 0 || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF))
                    v = 0xFFFD;
                size_t w = lc_utf8_put(out + o, v);
                if (w <= d - i) { /* always true for the forms above; be safe */
                    o += w;
                    i = d;
                    continue;
                }
            }
        } else {
            int done = 0;
            for (size_t k = 0; k < sizeof named / sizeof *named && !done; k++) {
                size_t len = strlen(named[k].name);
                if (j + len > n || memcmp(s + j, named[k].name, len) != 0)
                    continue;
                int semi = j + len < n && s[j + len] == ';';
                if (semi || named[k].legacy) {
                    o += lc_utf8_put(out + o, named[k].cp);
                    i = j + len + (size_t)semi;
                    done = 1;
                }
            }
            if (done)
                continue;
        }
        out[o++] = s[i++];
    }
    out[o] = 0;
    *out_len = o;
    return out;
}


/* ---- NFC ---- */

#define HANGUL_S 0xAC00u
#define HANGUL_L 0x1100u
#define HANGUL_V 0x1161u
#define HANGUL_T 0x11A7u
#define HANGUL_NV 21u
#define HANGUL_NT 28u
#define HANGUL_N (HANGUL_NV * HANGUL_NT)
#define HANGUL_COUNT (19u * HANGUL_N)

static int ccc(uint32_t cp)
{
    int lo = 0, hi = (int)(sizeof clip_ccc_runs / sizeof *clip_ccc_runs) - 1;
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (clip_ccc_runs[mid][0] <= cp)
            lo = mid;
        else
            hi = mid - 1;
    }
    return (int)clip_ccc_runs[lo][1];
}

static int decompose(uint32_t cp, lc_u32vec *out)
{
    if (cp >= HANGUL_S && cp < HANGUL_S + HANGUL_COUNT) {
        uint32_t s = cp - HANGUL_S;
        int rc = lc_u32_push(out, HANGUL_L + s / HANGUL_N);
        if (rc == LC_OK)
            rc = lc_u32_push(out, HANGUL_V + (s % HANGUL_N) / HANGUL_NT);
        if (rc == LC_OK && s % HANGUL_NT)
            rc = lc_u32_push(out, HANGUL_T + s % HANGUL_NT);
        return rc;
    }
    int lo = 0, hi = (int)(sizeof clip_nfd_index / sizeof *clip_nfd_index) - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (clip_nfd_index[mid][0] == cp) {
            for (uint32_t k = 0; k < clip_nfd_index[mid][2]; k++)
                if (lc_u32_push(out, clip_nfd_data[clip_nfd_index[mid][1] + k]) != LC_OK)
                    return LC_ERR;
            return LC_OK;
        }
        if (clip_nfd_index[mid][0] < cp)
            lo = mid + 1;
        else
            hi = mid - 1;
    }
    return lc_u32_push(out, cp);
}

/* the primary composite of a + b, or 0 */
static uint32_t compose(uint32_t a, uint32_t b)
{
    if (a >= HANGUL_L && a < HANGUL_L + 19 && b >= HANGUL_V && b < HANGUL_V + HANGUL_NV)
        return HANGUL_S + ((a - HANGUL_L) * HANGUL_NV + (b - HANGUL_V)) * HANGUL_NT;
    if (a >= HANGUL_S && a < HANGUL_S + HANGUL_COUNT && (a - HANGUL_S) % HANGUL_NT == 0 &&
        b > HANGUL_T && b < HANGUL_T + HANGUL_NT)
        return a + (b - HANGUL_T);
    int lo = 0, hi = (int)(sizeof clip_nfc_pairs / sizeof *clip_nfc_pairs) - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        const uint32_t *p = clip_nfc_pairs[mid];
        if (p[0] == a && p[1] == b)
            return p[2];
        if (p[0] < a || (p[0] == a && p[1] < b))
            lo = mid + 1;
        else
            hi = mid - 1;
    }
    return 0;
}

int lc_cu_nfc(const uint32_t *in, size_t n, lc_u32vec *out)
{
    /* below U+0300 nothing decomposes into anything that recomposes
     * differently: the common case costs one pass */
    size_t i = 0;
    while (i < n && in[i] < 0x300)
        i++;
    if (i == n) {
        for (size_t k = 0; k < n; k++)
            if (lc_u32_push(out, in[k]) != LC_OK)
                return LC_ERR;
        return LC_OK;
    }
    lc_u32vec d = {0};
    int rc = LC_OK;
    for (size_t k = 0; k < n && rc == LC_OK; k++)
        rc = decompose(in[k], &d);
    /* canonical ordering: stable sort of each run of non-starters */
    for (size_t k = 1; rc == LC_OK && k < d.n; k++) {
        int c = ccc(d.v[k]);
        if (c == 0)
            continue;
        for (size_t j = k; j > 0 && ccc(d.v[j - 1]) > c; j--) {
            uint32_t tmp = d.v[j - 1];
            d.v[j - 1] = d.v[j];
            d.v[j] = tmp;
        }
    }
    /* canonical composition */
    long starter = -1;
    for (size_t k = 0; k < d.n && rc == LC_OK; k++) {
        uint32_t cp = d.v[k];
        int c = ccc(cp);
        if (starter >= 0) {
            size_t last = out->n - 1;
            int blocked = last > (size_t)starter && (ccc(out->v[last]) == 0 || ccc(out->v[last]) >= c);
            uint32_t comp = blocked ? 0 : compose(out->v[starter], cp);
            if (comp) {
                out->v[starter] = comp;
                continue;
            }
        }
        if (c == 0)
            starter = (long)out->n;
        rc = lc_u32_push(out, cp);
    }
    free(d.v);
    return rc;
}
