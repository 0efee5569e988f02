/* safetensors reader and writer.
 *
 * Format: 8-byte little-endian header length N, N bytes of JSON (an object
 * mapping tensor names to {"dtype", "shape", "data_offsets"}, plus an
 * optional "__metadata__" string map), then the data area; offsets are
 * relative to the start of the data area. */
#include "safetensors.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fileio.h"

#define ST_MAX_HEADER ((uint64_t)100 << 20)
#define ST_MAX_INT 9007199254740992.0 /* 2^53: larger JSON numbers are not exact */

typedef struct {
    char *name;
    lc_dtype dtype;
    int ndim;
    int64_t shape[LC_MAXDIM];
    uint64_t begin, end; /* relative to the data area */
} st_entry;

struct lc_st_file {
    char *path;
    lc_mapping *map;
    size_t size;
    size_t data_start;
    int n;
    st_entry *e;
    int nmeta;
    char **mkeys, **mvals;
};

static const struct {
    const char *name;
    lc_dtype dt;
} st_dtypes[] = {
    {"F32", LC_F32}, {"F16", LC_F16}, {"BF16", LC_BF16}, {"I32", LC_I32},
    {"I64", LC_I64}, {"U8", LC_U8},   {"F64", LC_F64},
};

/* valid in the format but with no lucid dtype to hold them */
static const char *const st_unsupported[] = {"BOOL", "I8", "I16", "U16", "U32", "U64",
                                             "F8_E4M3", "F8_E5M2", "F8_E8M0", "F4",
                                             "F6_E2M3", "F6_E3M2", "C64", NULL};

static const char *st_dtype_name(lc_dtype dt)
{
    for (size_t i = 0; i < sizeof st_dtypes / sizeof st_dtypes[0]; i++)
        if (st_dtypes[i].dt == dt)
            return st_dtypes[i].name;
    return "?";
}

static void file_free(lc_st_file *f)
{
    if (!f)
        return;
    for (int i = 0; i < f->n; i++)
        free(f->e[i].name);
    free(f->e);
    for (int i = 0; i < f->nmeta; i++) {
        free(f->mkeys[i]);
        free(f->mvals[i]);
    }
    free(f->mkeys);
    free(f->mvals);
    if (f->map)
        lc_mapping_release(f->map);
    free(f->path);
    free(f);
}

/* A JSON number that must be a non-negative integer below 2^53. */
static int json_uint(const cJSON *j, uint64_t *out)
{
    if (!cJSON_IsNumber(j))
        return 0;
    double v = j->valuedouble;
    if (!(v >= 0) || v >= ST_MAX_INT || v != floor(v))
        return 0;
    *out = (uint64_t)v;
    return 1;
}

static const char *json_kind(const cJSON *j)
{
    if (cJSON_IsNumber(j))
        return "a number";
    if (cJSON_IsString(j))
        return "a string";
    if (cJSON_IsArray(j))
        return "an array";
    if (cJSON_IsObject(j))
        return "an object";
    if (cJSON_IsBool(j))
        return "a boolean";
    if (cJSON_IsNull(j))
        return "null";
    return "invalid";
}

static int parse_metadata(lc_st_file *f, const cJSON *m)
{
    if (!cJSON_IsObject(m))
        return lc_err("%s: __metadata__ is %s, expected an object of strings", f->path,
                      json_kind(m));
    int n = cJSON_GetArraySize(m);
    f->mkeys = calloc((size_t)n + 1, sizeof *f->mkeys);
    f->mvals = calloc((size_t)n + 1, sizeof *f->mvals);
    if (!f->mkeys || !f->mvals)
        return lc_err("%s: out of memory reading metadata", f->path);
    for (const cJSON *c = m->child; c; c = c->next) {
        if (!cJSON_IsString(c))
            return lc_err("%s: __metadata__ entry '%s' is %s, expected a string", f->path,
                          c->string, json_kind(c));
        f->mkeys[f->nmeta] = strdup(c->string);
        f->mvals[f->nmeta] = strdup(c->valuestring);
        f->nmeta++;
        if (!f->mkeys[f->nmeta - 1] || !f->mvals[f->nmeta - 1])
            return lc_err("%s: out of memory reading metadata", f->path);
    }
    return LC_OK;
}

static int parse_entry(lc_st_file *f, const cJSON *j, st_entry *e, uint64_t data_size)
{
    const char *p = f->path, *nm = j->string;
    if (!cJSON_IsObject(j))
        return lc_err("%s: tensor '%s': entry is %s, expected an object", p, nm, json_kind(j));
    const cJSON *jd = cJSON_GetObjectItemCaseSensitive(j, "dtype");
    const cJSON *js = cJSON_GetObjectItemCaseSensitive(j, "shape");
    const cJSON *jo = cJSON_GetObjectItemCaseSensitive(j, "data_offsets");
    if (!jd || !js || !jo)
        return lc_err("%s: tensor '%s': missing \"%s\"", p, nm,
                      !jd ? "dtype" : !js ? "shape" : "data_offsets");
    if (!cJSON_IsString(jd))
        return lc_err("%s: tensor '%s': dtype is %s, expected a string", p, nm, json_kind(jd));
    int found = 0;
    for (size_t i = 0; i < sizeof st_dtypes / sizeof st_dtypes[0]; i++) {
        if (!strcmp(jd->valuestring, st_dtypes[i].name)) {
            e->dtype = st_dtypes[i].dt;
            found = 1;
        }
    }
    if (!found) {
        for (int i = 0; st_unsupported[i]; i++)
            if (!strcmp(jd->valuestring, st_unsupported[i]))
                return lc_err("%s: tensor '%s': unsupported dtype %s (lucid reads F32, F16, "
                              "BF16, F64, I32, I64 and U8)",
                              p, nm, st_unsupported[i]);
        return lc_err("%s: tensor '%s': unknown dtype \"%.40s\"", p, nm, jd->valuestring);
    }

    if (!cJSON_IsArray(js))
        return lc_err("%s: tensor '%s': shape is %s, expected an array of integers", p, nm,
                      json_kind(js));
    int nd = cJSON_GetArraySize(js);
    if (nd > LC_MAXDIM)
        return lc_err("%s: tensor '%s': shape has %d dimensions (at most %d)", p, nm, nd,
                      LC_MAXDIM);
    e->ndim = 0;
    uint64_t numel = 1;
    int overflow = 0;
    for (const cJSON *c = js->child; c; c = c->next) {
        uint64_t v;
        if (!json_uint(c, &v)) {
            if (cJSON_IsNumber(c))
                return lc_err("%s: tensor '%s': shape entry %g is not a non-negative integer",
                              p, nm, c->valuedouble);
            return lc_err("%s: tensor '%s': shape entry is %s, expected an integer", p, nm,
                          json_kind(c));
        }
        e->shape[e->ndim++] = (int64_t)v;
        if (v && numel > UINT64_MAX / 8 / v)
            overflow = 1;
        else
            numel *= v;
    }
    char sbuf[128];
    lc_shape_str(sbuf, sizeof sbuf, e->ndim, e->shape);
    if (overflow)
        return lc_err("%s: tensor '%s': shape %s is too large", p, nm, sbuf);

    if (!cJSON_IsArray(jo) || cJSON_GetArraySize(jo) != 2)
        return lc_err("%s: tensor '%s': data_offsets must be an array [begin, end]", p, nm);
    if (!json_uint(jo->child, &e->begin) || !json_uint(jo->child->next, &e->end))
        return lc_err("%s: tensor '%s': data_offsets must be non-negative integers", p, nm);
    if (e->begin > e->end)
        return lc_err("%s: tensor '%s': data_offsets [%llu, %llu] end before they begin", p,
                      nm, (unsigned long long)e->begin, (unsigned long long)e->end);
    if (e->end > data_size)
        return lc_err("%s: tensor '%s': data_offsets [%llu, %llu] lie past the end of the "
                      "%llu-byte data area (file truncated?)",
                      p, nm, (unsigned long long)e->begin, (unsigned long long)e->end,
                      (unsigned long long)data_size);
    uint64_t need = numel * lc_dtype_size(e->dtype);
    if (e->end - e->begin != need)
        return lc_err("%s: tensor '%s': data_offsets [%llu, %llu] hold %llu bytes but %s %s "
                      "needs %llu",
                      p, nm, (unsigned long long)e->begin, (unsigned long long)e->end,
                      (unsigned long long)(e->end - e->begin), st_dtype_name(e->dtype), sbuf,
                      (unsigned long long)need);
    e->name = strdup(nm);
    if (!e->name)
        return lc_err("%s: out of memory", p);
    return LC_OK;
}

static int cmp_begin(const void *a, const void *b)
{
    const st_entry *x = *(const st_entry *const *)a, *y = *(const st_entry *const *)b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    return x->end < y->end ? -1 : x->end > y->end;
}

static int cmp_name(const void *a, const void *b)
{
    return strcmp((*(const st_entry *const *)a)->name, (*(const st_entry *const *)b)->name);
}

static int check_layout(lc_st_file *f)
{
    if (f->n < 2)
        return LC_OK;
    st_entry **v = malloc((size_t)f->n * sizeof *v);
    if (!v)
        return lc_err("%s: out of memory", f->path);
    for (int i = 0; i < f->n; i++)
        v[i] = &f->e[i];
    int rc = LC_OK;
    qsort(v, (size_t)f->n, sizeof *v, cmp_name);
    for (int i = 1; i < f->n && rc == LC_OK; i++)
        if (!strcmp(v[i]->name, v[i - 1]->name))
            rc = lc_err("%s: tensor '%s' appears twice in the header", f->path, v[i]->name);
    qsort(v, (size_t)f->n, sizeof *v, cmp_begin);
    /* empty tensors occupy no bytes and cannot overlap anything */
    const st_entry *prev = NULL;
    for (int i = 0; i < f->n && rc == LC_OK; i++) {
        if (v[i]->begin == v[i]->end)
            continue;
        if (prev && v[i]->begin < prev->end)
            rc = lc_err("%s: tensor '%s': data_offsets [%llu, %llu] overlap tensor '%s' at "
                        "[%llu, %llu]",
                        f->path, v[i]->name, (unsigned long long)v[i]->begin,
                        (unsigned long long)v[i]->end, prev->name,
                        (unsigned long long)prev->begin, (unsigned long long)prev->end);
        prev = v[i];
    }
    free(v);
    return rc;
}

static int parse_header(lc_st_file *f, const unsigned char *data)
{
    const char *p = f->path;
    if (f->size < 8)
        return lc_err("%s: file is %zu bytes, too small for a safetensors file (at least 8)", p,
                      f->size);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = (hlen << 8) | data[i];
    if (hlen > ST_MAX_HEADER)
        return lc_err("%s: header length %llu is absurd (limit %llu bytes): not a safetensors "
                      "file?",
                      p, (unsigned long long)hlen, (unsigned long long)ST_MAX_HEADER);
    if (hlen > f->size - 8)
        return lc_err("%s: header length %llu is larger than the rest of the %zu-byte file "
                      "(truncated or not a safetensors file)",
                      p, (unsigned long long)hlen, f->size);
    if (hlen < 2)
        return lc_err("%s: header is %llu bytes, too short for a JSON object", p,
                      (unsigned long long)hlen);
    const char *text = (const char *)data + 8;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, (size_t)hlen, &end, 0);
    if (!root) {
        const char *at = cJSON_GetErrorPtr();
        long off = at && at >= text && at <= text + hlen ? (long)(at - text) : -1;
        return lc_err("%s: header is not valid JSON (error near byte %ld of %llu)", p, off,
                      (unsigned long long)hlen);
    }
    /* the writer may pad the header with spaces (or NULs) to align the data */
    for (const char *q = end; q && q < text + hlen; q++) {
        if (*q != ' ' && *q != '\t' && *q != '\n' && *q != '\r' && *q != 0) {
            cJSON_Delete(root);
            return lc_err("%s: unexpected bytes after the JSON header (at byte %ld)", p,
                          (long)(q - text));
        }
    }
    int rc = LC_OK;
    if (!cJSON_IsObject(root)) {
        rc = lc_err("%s: header is %s, expected a JSON object", p, json_kind(root));
        goto done;
    }
    f->data_start = 8 + (size_t)hlen;
    uint64_t data_size = f->size - f->data_start;
    int n = 0;
    for (const cJSON *c = root->child; c; c = c->next)
        n++;
    f->e = calloc((size_t)n + 1, sizeof *f->e);
    if (!f->e) {
        rc = lc_err("%s: out of memory", p);
        goto done;
    }
    for (const cJSON *c = root->child; c && rc == LC_OK; c = c->next) {
        if (!strcmp(c->string, "__metadata__")) {
            if (f->mkeys)
                rc = lc_err("%s: __metadata__ appears twice", p);
            else
                rc = parse_metadata(f, c);
            continue;
        }
        rc = parse_entry(f, c, &f->e[f->n], data_size);
        if (rc == LC_OK)
            f->n++;
    }
    if (rc == LC_OK)
        rc = check_layout(f);
done:
    cJSON_Delete(root);
    return rc;
}

lc_st_file *lc_st_open(const char *path)
{
    lc_st_file *f = lc_calloc(1, sizeof *f, "safetensors file");
    if (!f)
        return NULL;
    f->path = strdup(path);
    if (!f->path) {
        free(f);
        lc_err("out of memory");
        return NULL;
    }
    f->map = lc_mapping_open(path, &f->size);
    if (!f->map || parse_header(f, lc_mapping_data(f->map)) != LC_OK) {
        file_free(f);
        return NULL;
    }
    return f;
}

void lc_st_close(lc_st_file *f)
{
    file_free(f);
}

const char *lc_st_path(const lc_st_file *f)
{
    return f->path;
}

int lc_st_count(const lc_st_file *f)
{
    return f->n;
}

const char *lc_st_name(const lc_st_file *f, int i)
{
    return i >= 0 && i < f->n ? f->e[i].name : NULL;
}

int lc_st_find(const lc_st_file *f, const char *name)
{
    for (int i = 0; i < f->n; i++)
        if (!strcmp(f->e[i].name, name))
            return i;
    return -1;
}

int lc_st_info(const lc_st_file *f, int i, lc_dtype *dt, int *ndim, int64_t *shape)
{
    if (i < 0 || i >= f->n)
        return lc_err("%s: tensor index %d out of range (%d tensors)", f->path, i, f->n);
    const st_entry *e = &f->e[i];
    if (dt)
        *dt = e->dtype;
    if (ndim)
        *ndim = e->ndim;
    if (shape)
        memcpy(shape, e->shape, (size_t)e->ndim * sizeof *shape);
    return LC_OK;
}

lc_tensor *lc_st_get_index(lc_st_file *f, int i)
{
    if (i < 0 || i >= f->n) {
        lc_err("%s: tensor index %d out of range (%d tensors)", f->path, i, f->n);
        return NULL;
    }
    const st_entry *e = &f->e[i];
    size_t off = f->data_start + (size_t)e->begin;
    size_t esz = lc_dtype_size(e->dtype);
    const char *src = (const char *)lc_mapping_data(f->map) + off;
    /* The format promises no alignment. Kernels read f32 through typed
     * pointers, so a misaligned tensor is copied once instead of mapped. */
    if (((uintptr_t)src & (esz - 1)) == 0) {
        lc_tensor *t = lc_tensor_from_mapping(f->map, off, e->dtype, e->ndim, e->shape);
        if (!t)
            lc_err_prefix("%s: tensor '%s': ", f->path, e->name);
        return t;
    }
    lc_tensor *t = lc_tensor_new(e->dtype, e->ndim, e->shape);
    if (!t) {
        lc_err_prefix("%s: tensor '%s': ", f->path, e->name);
        return NULL;
    }
    memcpy(lc_tensor_data(t), src, (size_t)(e->end - e->begin));
    return t;
}

lc_tensor *lc_st_get(lc_st_file *f, const char *name)
{
    int i = lc_st_find(f, name);
    if (i < 0) {
        lc_err("%s: no tensor named '%s'", f->path, name);
        return NULL;
    }
    return lc_st_get_index(f, i);
}

int lc_st_metadata_count(const lc_st_file *f)
{
    return f->nmeta;
}

const char *lc_st_metadata_key(const lc_st_file *f, int i)
{
    return i >= 0 && i < f->nmeta ? f->mkeys[i] : NULL;
}

const char *lc_st_metadata(const lc_st_file *f, const char *key)
{
    for (int i = 0; i < f->nmeta; i++)
        if (!strcmp(f->mkeys[i], key))
            return f->mvals[i];
    return NULL;
}

/* ---- writing ---- */

typedef struct {
    char *p;
    size_t n, cap;
    int oom;
} strbuf;

static void sb_put(strbuf *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

static void sb_puts(strbuf *b, const char *s)
{
    sb_put(b, s, strlen(s));
}

/* JSON string literal; bytes >= 0x80 pass through (UTF-8 stays UTF-8) */
static void sb_json_str(strbuf *b, const char *s)
{
    sb_put(b, "\"", 1);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        char esc[8];
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            sb_put(b, esc, 2);
        } else if (c < 0x20) {
            snprintf(esc, sizeof esc, "\\u%04x", c);
            sb_put(b, esc, 6);
        } else {
            sb_put(b, (const char *)&c, 1);
        }
    }
    sb_put(b, "\"", 1);
}

typedef struct {
    const char *name;
    lc_tensor *t; /* contiguous, new ref */
    uint64_t begin, end;
} save_item;

/* Larger elements first keeps every tensor aligned to its element size in
 * the data area (which itself starts at a multiple of 8). */
static int cmp_save(const void *a, const void *b)
{
    const save_item *x = a, *y = b;
    size_t sx = lc_dtype_size(x->t->dtype), sy = lc_dtype_size(y->t->dtype);
    if (sx != sy)
        return sx > sy ? -1 : 1;
    return strcmp(x->name, y->name);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

int lc_st_save(const char *path, int n, const char *const *names, lc_tensor *const *tensors,
               int nmeta, const char *const *meta_keys, const char *const *meta_values)
{
    if (n < 0 || nmeta < 0)
        return lc_err("%s: negative tensor or metadata count", path);
    save_item *items = calloc((size_t)n + 1, sizeof *items);
    if (!items)
        return lc_err("%s: out of memory", path);
    int rc = LC_OK;
    strbuf hb = {0};
    for (int i = 0; i < n && rc == LC_OK; i++) {
        if (!names[i] || !names[i][0] || !tensors[i]) {
            rc = lc_err("%s: tensor %d has an empty name or no tensor", path, i + 1);
            break;
        }
        if (!strcmp(names[i], "__metadata__")) {
            rc = lc_err("%s: '__metadata__' cannot be a tensor name", path);
            break;
        }
        items[i].name = names[i];
        items[i].t = lc_tensor_contiguous(tensors[i]);
        if (!items[i].t)
            rc = lc_err_prefix("%s: tensor '%s': ", path, names[i]);
    }
    if (rc != LC_OK)
        goto done;
    if (n > 1) {
        const char **sorted = malloc((size_t)n * sizeof *sorted);
        if (!sorted) {
            rc = lc_err("%s: out of memory", path);
            goto done;
        }
        for (int i = 0; i < n; i++)
            sorted[i] = items[i].name;
        qsort(sorted, (size_t)n, sizeof *sorted, cmp_str);
        for (int i = 1; i < n && rc == LC_OK; i++)
            if (!strcmp(sorted[i], sorted[i - 1]))
                rc = lc_err("%s: tensor name '%s' given twice", path, sorted[i]);
        free(sorted);
        if (rc != LC_OK)
            goto done;
    }
    qsort(items, (size_t)n, sizeof *items, cmp_save);

    sb_puts(&hb, "{");
    int first = 1;
    if (nmeta > 0) {
        sb_puts(&hb, "\"__metadata__\":{");
        for (int i = 0; i < nmeta; i++) {
            if (!meta_keys[i] || !meta_values[i]) {
                rc = lc_err("%s: metadata entry %d is missing its key or value", path, i + 1);
                goto done;
            }
            if (i)
                sb_puts(&hb, ",");
            sb_json_str(&hb, meta_keys[i]);
            sb_puts(&hb, ":");
            sb_json_str(&hb, meta_values[i]);
        }
        sb_puts(&hb, "}");
        first = 0;
    }
    uint64_t off = 0;
    for (int i = 0; i < n; i++) {
        lc_tensor *t = items[i].t;
        char num[64];
        items[i].begin = off;
        off += lc_tensor_nbytes(t);
        items[i].end = off;
        if (!first)
            sb_puts(&hb, ",");
        first = 0;
        sb_json_str(&hb, items[i].name);
        sb_puts(&hb, ":{\"dtype\":\"");
        sb_puts(&hb, st_dtype_name(t->dtype));
        sb_puts(&hb, "\",\"shape\":[");
        for (int d = 0; d < t->ndim; d++) {
            snprintf(num, sizeof num, "%s%lld", d ? "," : "", (long long)t->shape[d]);
            sb_puts(&hb, num);
        }
        snprintf(num, sizeof num, "],\"data_offsets\":[%llu,%llu]}",
                 (unsigned long long)items[i].begin, (unsigned long long)items[i].end);
        sb_puts(&hb, num);
    }
    sb_puts(&hb, "}");
    while (!hb.oom && (8 + hb.n) % 8 != 0)
        sb_puts(&hb, " ");
    if (hb.oom) {
        rc = lc_err("%s: out of memory building the header", path);
        goto done;
    }

    lc_atomic_file af;
    if (lc_atomic_open(&af, path) != LC_OK) {
        rc = LC_ERR;
        goto done;
    }
    unsigned char len8[8];
    for (int i = 0; i < 8; i++)
        len8[i] = (unsigned char)((uint64_t)hb.n >> (8 * i));
    rc = lc_atomic_write(&af, len8, 8);
    if (rc == LC_OK)
        rc = lc_atomic_write(&af, hb.p, hb.n);
    for (int i = 0; i < n && rc == LC_OK; i++)
        rc = lc_atomic_write(&af, lc_tensor_data(items[i].t), lc_tensor_nbytes(items[i].t));
    if (rc == LC_OK)
        rc = lc_atomic_commit(&af);
    else
        lc_atomic_abort(&af);
done:
    for (int i = 0; i < n; i++)
        lc_tensor_free(items[i].t);
    free(items);
    free(hb.p);
    return rc;
}
