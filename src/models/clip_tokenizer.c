/* CLIP BPE tokenizer; see clip_tokenizer.h for the pipeline. Symbols
 * (byte characters, merge results, vocabulary entries) are interned once
 * at load, so BPE works on integer ids and a hash of (left, right) pairs. */
#include "clip_tokenizer.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clip_unicode.h"

/* transformers keeps merges [1, 49152 - 256 - 2] of merges.txt */
#define MAX_MERGES (49152 - 256 - 2)
#define DEFAULT_MAX_LENGTH 77

/* ---- string -> int hash (open addressing, FNV-1a) ---- */

typedef struct {
    char **keys;
    int32_t *vals;
    size_t cap, n;
} strmap;

static uint64_t hash_bytes(const char *s, size_t len)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h;
}

static int strmap_init(strmap *m, size_t cap)
{
    m->cap = cap;
    m->n = 0;
    m->keys = lc_calloc(cap, sizeof *m->keys, "tokenizer table");
    m->vals = lc_calloc(cap, sizeof *m->vals, "tokenizer table");
    return m->keys && m->vals ? LC_OK : LC_ERR;
}

static void strmap_free(strmap *m)
{
    free(m->keys);
    free(m->vals);
}

/* slot of key (len bytes) or of the empty slot where it would go */
static size_t strmap_slot(const strmap *m, const char *key, size_t len)
{
    size_t i = hash_bytes(key, len) & (m->cap - 1);
    while (m->keys[i] && (strlen(m->keys[i]) != len || memcmp(m->keys[i], key, len) != 0))
        i = (i + 1) & (m->cap - 1);
    return i;
}

static int32_t strmap_get(const strmap *m, const char *key, size_t len)
{
    size_t i = strmap_slot(m, key, len);
    return m->keys[i] ? m->vals[i] : -1;
}

/* ---- pair -> merge hash ---- */

typedef struct {
    uint64_t *keys; /* (left + 1) << 32 | right; 0 = empty */
    int32_t *rank, *result;
    size_t cap;
} pairmap;

static size_t pair_slot(const pairmap *m, uint64_t key)
{
    size_t i = (size_t)((key * 0x9E3779B97F4A7C15ull) >> 20) & (m->cap - 1);
    while (m->keys[i] && m->keys[i] != key)
        i = (i + 1) & (m->cap - 1);
    return i;
}

static uint64_t pair_key(int32_t a, int32_t b)
{
    return ((uint64_t)(uint32_t)(a + 1) << 32) | (uint32_t)b;
}

/* ---- the tokenizer ---- */

struct lc_clip_tokenizer {
    /* interned symbols: strings, and their vocabulary id or -1 */
    char **sym;
    int32_t *sym_vocab;
    int nsym, capsym;
    strmap symmap;
    /* vocabulary id -> symbol */
    int32_t *vocab_sym;
    int vocab_size;
    pairmap merges;
    int n_merges;
    int32_t byte_sym[256], byte_end_sym[256]; /* "c" and "c</w>" per byte */
    uint32_t byte_char[256];                  /* bytes_to_unicode() */
    int16_t char_byte[324];                   /* and back */
    int32_t bos, eos, pad, unk;
    char *bos_str, *eos_str;
    int max_length;
    int cleanup_spaces; /* clean_up_tokenization_spaces, for decode */
    lc_clip_clean clean;
};

static int32_t intern(lc_clip_tokenizer *t, const char *s, size_t len)
{
    size_t slot = strmap_slot(&t->symmap, s, len);
    if (t->symmap.keys[slot])
        return t->symmap.vals[slot];
    if (t->nsym == t->capsym || t->symmap.n * 2 >= t->symmap.cap)
        return lc_err("tokenizer: symbol table full (%d symbols)", t->nsym), -1;
    char *copy = lc_malloc(len + 1, "tokenizer symbol");
    if (!copy)
        return -1;
    memcpy(copy, s, len);
    copy[len] = 0;
    int32_t id = t->nsym++;
    t->sym[id] = copy;
    t->sym_vocab[id] = -1;
    t->symmap.keys[slot] = copy;
    t->symmap.vals[slot] = id;
    t->symmap.n++;
    return id;
}

/* bytes_to_unicode(): printable Latin-1 bytes map to themselves, the rest
 * to U+0100 onwards in byte order */
static void init_byte_chars(lc_clip_tokenizer *t)
{
    int n = 0;
    for (int b = 0; b < 256; b++) {
        int printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
        t->byte_char[b] = printable ? (uint32_t)b : (uint32_t)(256 + n++);
    }
    for (int i = 0; i < 324; i++)
        t->char_byte[i] = -1;
    for (int b = 0; b < 256; b++)
        t->char_byte[t->byte_char[b]] = (int16_t)b;
}

/* ---- loading ---- */

static char *read_text(const char *dir, const char *name, int required)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    if (!f) {
        if (required)
            lc_err("tokenizer: cannot open %s", path);
        return NULL;
    }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = n >= 0 ? lc_malloc((size_t)n + 1, path) : NULL;
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
        lc_err("tokenizer: cannot read %s", path);
    }
    fclose(f);
    if (buf)
        buf[n] = 0;
    return buf;
}

static int load_vocab(lc_clip_tokenizer *t, const char *dir)
{
    char *text = read_text(dir, "vocab.json", 1);
    if (!text)
        return LC_ERR;
    cJSON *root = cJSON_Parse(text);
    free(text);
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return lc_err("tokenizer: %s/vocab.json is not a JSON object", dir);
    }
    int n = cJSON_GetArraySize(root), maxid = -1;
    cJSON *e;
    cJSON_ArrayForEach(e, root)
    {
        if (!cJSON_IsNumber(e) || e->valuedouble < 0 || e->valuedouble > 1e7 ||
            e->valuedouble != (double)e->valueint) {
            cJSON_Delete(root);
            return lc_err("tokenizer: vocab.json entry '%s' is not a token id", e->string);
        }
        if (e->valueint > maxid)
            maxid = e->valueint;
    }
    size_t cap = 1;
    while (cap < (size_t)(n + MAX_MERGES + 1024) * 2)
        cap <<= 1;
    t->capsym = n + MAX_MERGES + 1024;
    t->sym = lc_calloc((size_t)t->capsym, sizeof *t->sym, "tokenizer symbols");
    t->sym_vocab = lc_calloc((size_t)t->capsym, sizeof *t->sym_vocab, "tokenizer symbols");
    t->vocab_size = maxid + 1;
    t->vocab_sym = lc_malloc(sizeof *t->vocab_sym * (size_t)(maxid + 1), "tokenizer vocabulary");
    if (!t->sym || !t->sym_vocab || !t->vocab_sym || strmap_init(&t->symmap, cap) != LC_OK) {
        cJSON_Delete(root);
        return LC_ERR;
    }
    for (int i = 0; i <= maxid; i++)
        t->vocab_sym[i] = -1;
    cJSON_ArrayForEach(e, root)
    {
        int32_t s = intern(t, e->string, strlen(e->string));
        if (s < 0) {
            cJSON_Delete(root);
            return LC_ERR;
        }
        t->sym_vocab[s] = e->valueint;
        t->vocab_sym[e->valueint] = s;
    }
    cJSON_Delete(root);
    return LC_OK;
}

static int load_merges(lc_clip_tokenizer *t, const char *dir)
{
    char *text = read_text(dir, "merges.txt", 1);
    if (!text)
        return LC_ERR;
    size_t cap = 1;
    while (cap < (size_t)MAX_MERGES * 2)
        cap <<= 1;
    t->merges.cap = cap;
    t->merges.keys = lc_calloc(cap, sizeof *t->merges.keys, "tokenizer merges");
    t->merges.rank = lc_calloc(cap, sizeof *t->merges.rank, "tokenizer merges");
    t->merges.result = lc_calloc(cap, sizeof *t->merges.result, "tokenizer merges");
    if (!t->merges.keys || !t->merges.rank || !t->merges.result) {
        free(text);
        return LC_ERR;
    }
    /* as transformers: strip the file, split on \n, skip the first line */
    char *p = text;
    while (*p == ' ' || *p == '\n' || *p == '\t' || *p == '\r')
        p++;
    char *line = strchr(p, '\n');
    int rank = 0;
    while (line && rank < MAX_MERGES) {
        line++;
        char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        /* merge.split(): exactly two whitespace-separated parts count */
        char *parts[3];
        size_t plen[3];
        int np = 0;
        for (size_t i = 0; i < len && np < 3;) {
            while (i < len && (line[i] == ' ' || line[i] == '\t' || line[i] == '\r'))
                i++;
            if (i >= len)
                break;
            size_t s = i;
            while (i < len && line[i] != ' ' && line[i] != '\t' && line[i] != '\r')
                i++;
            parts[np] = line + s;
            plen[np++] = i - s;
        }
        if (np == 2) {
            char buf[512];
            if (plen[0] + plen[1] >= sizeof buf) {
                free(text);
                return lc_err("tokenizer: merges.txt line %d is too long", rank + 2);
            }
            int32_t a = intern(t, parts[0], plen[0]);
            int32_t b = intern(t, parts[1], plen[1]);
            memcpy(buf, parts[0], plen[0]);
            memcpy(buf + plen[0], parts[1], plen[1]);
            int32_t r = intern(t, buf, plen[0] + plen[1]);
            if (a < 0 || b < 0 || r < 0) {
                free(text);
                return LC_ERR;
            }
            size_t slot = pair_slot(&t->merges, pair_key(a, b));
            if (!t->merges.keys[slot]) { /* a repeated pair keeps its last rank in Python's dict */
                t->merges.keys[slot] = pair_key(a, b);
            }
            t->merges.rank[slot] = rank;
            t->merges.result[slot] = r;
        }
        rank++; /* every line takes a rank, as zip(merges, range(...)) does */
        line = end;
    }
    t->n_merges = rank;
    free(text);
    return LC_OK;
}

/* a special token's content: a string or {"content": ...} */
static const char *token_content(cJSON *v)
{
    if (cJSON_IsString(v))
        return v->valuestring;
    cJSON *c = cJSON_GetObjectItemCaseSensitive(v, "content");
    return cJSON_IsString(c) ? c->valuestring : NULL;
}

static int lookup_special(lc_clip_tokenizer *t, const char *dir, const char *what,
                          const char *s, int32_t *out)
{
    int32_t sym = strmap_get(&t->symmap, s, strlen(s));
    if (sym < 0 || t->sym_vocab[sym] < 0)
        return lc_err("tokenizer %s: %s token '%s' is not in vocab.json", dir, what, s);
    *out = t->sym_vocab[sym];
    return LC_OK;
}

static int load_config(lc_clip_tokenizer *t, const char *dir)
{
    const char *names[4] = {"<|startoftext|>", "<|endoftext|>", "<|endoftext|>", "<|endoftext|>"};
    static const char *keys[4] = {"bos_token", "eos_token", "pad_token", "unk_token"};
    cJSON *docs[2] = {NULL, NULL};
    static const char *files[2] = {"tokenizer_config.json", "special_tokens_map.json"};
    t->max_length = DEFAULT_MAX_LENGTH;
    t->cleanup_spaces = 1; /* transformers' default */
    for (int f = 0; f < 2; f++) {
        char *text = read_text(dir, files[f], 0);
        if (!text)
            continue;
        docs[f] = cJSON_Parse(text);
        free(text);
        if (!cJSON_IsObject(docs[f])) {
            cJSON_Delete(docs[0]);
            cJSON_Delete(docs[1]);
            return lc_err("tokenizer: %s/%s is not a JSON object", dir, files[f]);
        }
        for (int k = 0; k < 4; k++) {
            const char *c = token_content(cJSON_GetObjectItemCaseSensitive(docs[f], keys[k]));
            if (c)
                names[k] = c;
        }
        cJSON *ml = cJSON_GetObjectItemCaseSensitive(docs[f], "model_max_length");
        /* configs without a real limit say 1e30: keep CLIP's 77 then */
        if (cJSON_IsNumber(ml) && ml->valuedouble >= 2 && ml->valuedouble <= 1e6)
            t->max_length = (int)ml->valuedouble;
        cJSON *cu = cJSON_GetObjectItemCaseSensitive(docs[f], "clean_up_tokenization_spaces");
        if (cJSON_IsBool(cu))
            t->cleanup_spaces = cJSON_IsTrue(cu);
    }
    int rc = LC_OK;
    if (lookup_special(t, dir, "bos", names[0], &t->bos) != LC_OK ||
        lookup_special(t, dir, "eos", names[1], &t->eos) != LC_OK ||
        lookup_special(t, dir, "pad", names[2], &t->pad) != LC_OK ||
        lookup_special(t, dir, "unk", names[3], &t->unk) != LC_OK)
        rc = LC_ERR;
    if (rc == LC_OK) {
        t->bos_str = strdup(names[0]);
        t->eos_str = strdup(names[1]);
        if (!t->bos_str || !t->eos_str)
            rc = lc_err("out of memory loading the tokenizer");
    }
    cJSON_Delete(docs[0]);
    cJSON_Delete(docs[1]);
    return rc;
}

lc_clip_tokenizer *lc_clip_tokenizer_load(const char *dir)
{
    lc_clip_tokenizer *t = lc_calloc(1, sizeof *t, "tokenizer");
    if (!t)
        return NULL;
    init_byte_chars(t);
    if (load_vocab(t, dir) != LC_OK || load_merges(t, dir) != LC_OK)
        goto fail;
    for (int b = 0; b < 256; b++) {
        char buf[16];
        size_t len = lc_utf8_put(buf, t->byte_char[b]);
        t->byte_sym[b] = intern(t, buf, len);
        memcpy(buf + len, "</w>", 4);
        t->byte_end_sym[b] = intern(t, buf, len + 4);
        if (t->byte_sym[b] < 0 || t->byte_end_sym[b] < 0)
            goto fail;
    }
    if (load_config(t, dir) != LC_OK)
        goto fail;
    return t;
fail:
    lc_err_prefix("loading the CLIP tokenizer from %s: ", dir);
    lc_clip_tokenizer_free(t);
    return NULL;
}

void lc_clip_tokenizer_free(lc_clip_tokenizer *t)
{
    if (!t)
        return;
    for (int i = 0; i < t->nsym; i++)
        free(t->sym[i]);
    free(t->sym);
    free(t->sym_vocab);
    free(t->vocab_sym);
    strmap_free(&t->symmap);
    free(t->merges.keys);
    free(t->merges.rank);
    free(t->merges.result);
    free(t->bos_str);
    free(t->eos_str);
    free(t);
}

void lc_clip_tokenizer_set_clean(lc_clip_tokenizer *t, lc_clip_clean mode)
{
    t->clean = mode;
}

int lc_clip_tokenizer_set_max_length(lc_clip_tokenizer *t, int max_length)
{
    if (max_length < 2)
        return lc_err("tokenizer: max length %d leaves no room for BOS and EOS", max_length);
    t->max_length = max_length;
    return LC_OK;
}

lc_clip_info lc_clip_tokenizer_info(const lc_clip_tokenizer *t)
{
    lc_clip_info i = {t->bos, t->eos, t->pad, t->unk, t->max_length, t->vocab_size, t->n_merges};
    return i;
}

const char *lc_clip_token_str(const lc_clip_tokenizer *t, int32_t id)
{
    if (id < 0 || id >= t->vocab_size || t->vocab_sym[id] < 0)
        return NULL;
    return t->sym[t->vocab_sym[id]];
}

int32_t lc_clip_token_id(const lc_clip_tokenizer *t, const char *token)
{
    int32_t s = strmap_get(&t->symmap, token, strlen(token));
    return s < 0 ? -1 : t->sym_vocab[s];
}


/* ---- encoding ---- */

typedef struct {
    int32_t *ids, *syms;
    int n, cap;
} outvec;

static int out_push(outvec *o, int32_t id, int32_t sym)
{
    if (o->n == o->cap) {
        int cap = o->cap ? o->cap * 2 : 128;
        int32_t *a = realloc(o->ids, (size_t)cap * sizeof *a);
        if (a)
            o->ids = a;
        int32_t *b = a ? realloc(o->syms, (size_t)cap * sizeof *b) : NULL;
        if (!b)
            return lc_err("out of memory tokenizing");
        o->syms = b;
        o->cap = cap;
    }
    o->ids[o->n] = id;
    o->syms[o->n++] = sym;
    return LC_OK;
}

static void push_special(lc_clip_tokenizer *t, outvec *o, int32_t id, int *rc)
{
    if (*rc == LC_OK)
        *rc = out_push(o, id, t->vocab_sym[id]);
}

/* BPE on one pre-token given as UTF-8 bytes */
static int bpe_word(lc_clip_tokenizer *t, const unsigned char *bytes, size_t len, outvec *o)
{
    int32_t stack_word[64];
    int32_t *w = len <= 64 ? stack_word : lc_malloc(len * sizeof *w, "tokenizer word");
    if (!w)
        return LC_ERR;
    int n = (int)len;
    for (int i = 0; i < n; i++)
        w[i] = i == n - 1 ? t->byte_end_sym[bytes[i]] : t->byte_sym[bytes[i]];
    while (n > 1) {
        int32_t best = INT32_MAX, a = -1, b = -1, res = -1;
        for (int i = 0; i + 1 < n; i++) {
            size_t slot = pair_slot(&t->merges, pair_key(w[i], w[i + 1]));
            if (t->merges.keys[slot] && t->merges.rank[slot] < best) {
                best = t->merges.rank[slot];
                a = w[i];
                b = w[i + 1];
                res = t->merges.result[slot];
            }
        }
        if (a < 0)
            break;
        int j = 0;
        for (int i = 0; i < n;) {
            if (i + 1 < n && w[i] == a && w[i + 1] == b) {
                w[j++] = res;
                i += 2;
            } else {
                w[j++] = w[i++];
            }
        }
        n = j;
    }
    int rc = LC_OK;
    for (int i = 0; i < n && rc == LC_OK; i++) {
        int32_t id = t->sym_vocab[w[i]];
        rc = out_push(o, id >= 0 ? id : t->unk, w[i]);
    }
    if (w != stack_word)
        free(w);
    return rc;
}

/* length of the literal at cp[i] or 0. The pattern is IGNORECASE and the
 * text already lower-cased, so the one remaining case variant is U+017F
 * (long s), which the regex module matches as s ("'\u017f" is a
 * contraction token). */
static int match_ascii(const uint32_t *cp, size_t n, size_t i, const char *lit)
{
    size_t len = strlen(lit);
    if (i + len > n)
        return 0;
    for (size_t k = 0; k < len; k++) {
        uint32_t c = cp[i + k] == 0x17F ? 's' : cp[i + k];
        if (c != (unsigned char)lit[k])
            return 0;
    }
    return (int)len;
}

/* the pre-tokenizer regex over cleaned, lower-cased code points */
static int pretokenize(lc_clip_tokenizer *t, const uint32_t *cp, size_t n, outvec *o)
{
    static const char *const contractions[] = {"'s", "'t", "'re", "'ve", "'m", "'ll", "'d"};
    int32_t sot = lc_clip_token_id(t, "<|startoftext|>");
    int32_t eot = lc_clip_token_id(t, "<|endoftext|>");
    unsigned char *buf = NULL;
    size_t bufcap = 0;
    int rc = LC_OK;
    for (size_t i = 0; i < n && rc == LC_OK;) {
        int c = lc_cu_class(cp[i]);
        if (c == LC_CU_SPACE || c == LC_CU_NONE) { /* no alternative starts here */
            i++;
            continue;
        }
        size_t end = i;
        int len;
        if ((len = match_ascii(cp, n, i, "<|startoftext|>")) != 0) {
            push_special(t, o, sot >= 0 ? sot : t->unk, &rc);
            i += (size_t)len;
            continue;
        }
        if ((len = match_ascii(cp, n, i, "<|endoftext|>")) != 0) {
            push_special(t, o, eot >= 0 ? eot : t->unk, &rc);
            i += (size_t)len;
            continue;
        }
        for (size_t k = 0; k < 7 && end == i; k++)
            if ((len = match_ascii(cp, n, i, contractions[k])) != 0)
                end = i + (size_t)len;
        if (end == i) {
            if (c == LC_CU_LETTER) {
                while (end < n && lc_cu_class(cp[end]) == LC_CU_LETTER)
                    end++;
            } else if (c == LC_CU_NUMBER) {
                end = i + 1;
            } else {
                while (end < n) {
                    if (lc_cu_class(cp[end]) != LC_CU_OTHER)
                        break;
                    end++;
                }
            }
        }
        size_t need = (end - i) * 4;
        if (need > bufcap) {
            unsigned char *nb = realloc(buf, need);
            if (!nb) {
                rc = lc_err("out of memory tokenizing");
                break;
            }
            buf = nb;
            bufcap = need;
        }
        size_t blen = 0;
        for (size_t k = i; k < end; k++)
            blen += lc_utf8_put((char *)buf + blen, cp[k]);
        rc = bpe_word(t, buf, blen, o);
        i = end;
    }
    free(buf);
    return rc;
}

/* cleanup of one piece of text (no special-token strings inside in HF
 * mode), then the pre-tokenizer */
static int encode_piece(lc_clip_tokenizer *t, const char *s, size_t len, outvec *o)
{
    lc_u32vec raw = {0}, nfc = {0}, low = {0};
    int rc = LC_OK;
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < len && rc == LC_OK;) {
        size_t used;
        uint32_t cp = lc_utf8_get(u + i, len - i, &used);
        i += used;
        int props = lc_cu_props(cp);
        if (t->clean == LC_CLIP_CLEAN_HF) {
            /* BasicTokenizer._clean_text (control characters go, whitespace
             * becomes a space; str.split() later splits on any isspace())
             * and _tokenize_chinese_chars */
            if (cp == 0 || cp == 0xFFFD)
                continue;
            if (cp == '\t' || cp == '\n' || cp == '\r') {
                rc = lc_u32_push(&raw, ' ');
            } else if (props & LC_CU_IS_C) {
                continue;
            } else if (props & LC_CU_ISSPACE) {
                rc = lc_u32_push(&raw, ' ');
            } else if (lc_cu_is_cjk(cp)) {
                rc = lc_u32_push(&raw, ' ');
                if (rc == LC_OK)
                    rc = lc_u32_push(&raw, cp);
                if (rc == LC_OK)
                    rc = lc_u32_push(&raw, ' ');
            } else {
                rc = lc_u32_push(&raw, cp);
            }
        } else {
            /* whitespace_clean: the regex module's \s+ becomes one space */
            rc = lc_u32_push(&raw, (props & LC_CU_CLASS) == LC_CU_SPACE ? ' ' : cp);
        }
    }
    /* transformers normalises to NFC after cleaning (OpenAI's ftfy too) */
    if (rc == LC_OK)
        rc = lc_cu_nfc(raw.v, raw.n, &nfc);
    if (rc == LC_OK)
        rc = lc_cu_lower(nfc.v, nfc.n, &low);
    if (rc == LC_OK)
        rc = pretokenize(t, low.v, low.n, o);
    free(raw.v);
    free(nfc.v);
    free(low.v);
    return rc;
}

static int encode_all(lc_clip_tokenizer *t, const char *text, size_t len, outvec *o)
{
    int rc = LC_OK;
    if (t->clean == LC_CLIP_CLEAN_OPENAI) {
        size_t n1, n2;
        char *once = lc_html_unescape(text, len, &n1);
        char *twice = once ? lc_html_unescape(once, n1, &n2) : NULL;
        free(once);
        if (!twice)
            return LC_ERR;
        rc = encode_piece(t, twice, n2, o);
        free(twice);
        return rc;
    }
    /* transformers splits on the special tokens' text before anything else */
    const char *p = text, *end = text + len;
    size_t lb = strlen(t->bos_str), le = strlen(t->eos_str);
    while (rc == LC_OK) {
        const char *b = memmem(p, (size_t)(end - p), t->bos_str, lb);
        const char *e = memmem(p, (size_t)(end - p), t->eos_str, le);
        const char *hit = b && (!e || b <= e) ? b : e;
        rc = encode_piece(t, p, (size_t)((hit ? hit : end) - p), o);
        if (!hit || rc != LC_OK)
            break;
        push_special(t, o, hit == b ? t->bos : t->eos, &rc);
        p = hit + (hit == b ? lb : le);
    }
    return rc;
}

int lc_clip_encode(lc_clip_tokenizer *t, const char *text, size_t len, int32_t **ids, int *n)
{
    outvec o = {0};
    int rc = LC_OK;
    push_special(t, &o, t->bos, &rc);
    if (rc == LC_OK)
        rc = encode_all(t, text, len, &o);
    push_special(t, &o, t->eos, &rc);
    free(o.syms);
    if (rc != LC_OK) {
        free(o.ids);
        return LC_ERR;
    }
    *ids = o.ids;
    *n = o.n;
    return LC_OK;
}

int lc_clip_tokens(lc_clip_tokenizer *t, const char *text, size_t len, const char ***tokens,
                   int *n)
{
    outvec o = {0};
    int rc = encode_all(t, text, len, &o);
    const char **list = rc == LC_OK ? malloc(((size_t)o.n + 1) * sizeof *list) : NULL;
    if (rc == LC_OK && !list)
        rc = lc_err("out of memory tokenizing");
    for (int i = 0; rc == LC_OK && i < o.n; i++)
        list[i] = t->sym[o.syms[i]];
    free(o.ids);
    free(o.syms);
    if (rc != LC_OK) {
        free(list);
        return LC_ERR;
    }
    *tokens = list;
    *n = o.n;
    return LC_OK;
}

lc_tensor *lc_clip_encode_padded(lc_clip_tokenizer *t, const char *text, size_t len, int max_len)
{
    if (max_len <= 0)
        max_len = t->max_length;
    if (max_len < 2) {
        lc_err("tokenizer: max length %d leaves no room for BOS and EOS", max_len);
        return NULL;
    }
    int32_t *ids;
    int n;
    if (lc_clip_encode(t, text, len, &ids, &n) != LC_OK)
        return NULL;
    int64_t shape[2] = {1, max_len};
    lc_tensor *out = lc_tensor_new(LC_I64, 2, shape);
    if (out) {
        int64_t *d = lc_tensor_data(out);
        int keep = n > max_len ? max_len - 1 : n - 1; /* everything but the final EOS */
        for (int i = 0; i < keep; i++)
            d[i] = ids[i];
        d[keep] = t->eos;
        for (int i = keep + 1; i < max_len; i++)
            d[i] = t->pad;
    }
    free(ids);
    return out;
}

/* in place; every replacement is shorter than what it replaces */
static void replace_all(char *s, const char *from, const char *to)
{
    size_t lf = strlen(from), lt = strlen(to);
    char *w = s;
    for (const char *r = s; *r;) {
        if (strncmp(r, from, lf) == 0) {
            memcpy(w, to, lt);
            w += lt;
            r += lf;
        } else {
            *w++ = *r++;
        }
    }
    *w = 0;
}

char *lc_clip_decode(const lc_clip_tokenizer *t, const int32_t *ids, int n, int skip_special)
{
    size_t cap = 16;
    for (int i = 0; i < n; i++) {
        const char *s = lc_clip_token_str(t, ids[i]);
        if (!s) {
            lc_err("decode: token id %d is not in the vocabulary (0..%d)", (int)ids[i],
                   t->vocab_size - 1);
            return NULL;
        }
        cap += strlen(s);
    }
    /* token text -> bytes through the byte map; "</w>" marks word ends */
    unsigned char *bytes = lc_malloc(cap, "decoded text");
    if (!bytes)
        return NULL;
    size_t nb = 0;
    for (int i = 0; i < n; i++) {
        if (skip_special && (ids[i] == t->bos || ids[i] == t->eos || ids[i] == t->pad))
            continue;
        const unsigned char *s = (const unsigned char *)lc_clip_token_str(t, ids[i]);
        size_t len = strlen((const char *)s);
        for (size_t k = 0; k < len;) {
            size_t used;
            uint32_t cp = lc_utf8_get(s + k, len - k, &used);
            k += used;
            bytes[nb++] = cp < 324 && t->char_byte[cp] >= 0 ? (unsigned char)t->char_byte[cp] : '?';
        }
    }
    /* invalid UTF-8 becomes U+FFFD (errors="replace"), "</w>" a space */
    char *out = lc_malloc(nb * 3 + 1, "decoded text");
    if (!out) {
        free(bytes);
        return NULL;
    }
    size_t o = 0;
    for (size_t i = 0; i < nb;) {
        if (nb - i >= 4 && memcmp(bytes + i, "</w>", 4) == 0) {
            out[o++] = ' ';
            i += 4;
            continue;
        }
        size_t used;
        uint32_t cp = lc_utf8_get(bytes + i, nb - i, &used);
        o += lc_utf8_put(out + o, cp);
        i += used;
    }
    free(bytes);
    size_t start = 0;
    while (start < o && out[start] == ' ')
        start++;
    while (o > start && out[o - 1] == ' ')
        o--;
    memmove(out, out + start, o - start);
    out[o - start] = 0;
    if (t->cleanup_spaces) {
        /* transformers' clean_up_tokenization, replacements in its order */
        static const char *const rules[][2] = {
            {" .", "."},    {" ?", "?"},     {" !", "!"},     {" ,", ","},     {" ' ", "'"},
            {" n't", "n't"}, {" 'm", "'m"}, {" 's", "'s"}, {" 've", "'ve"}, {" 're", "'re"},
        };
        for (size_t r = 0; r < sizeof rules / sizeof *rules; r++)
            replace_all(out, rules[r][0], rules[r][1]);
    }
    return out;
}
