/* Model weights by name. An insertion-ordered array of entries plus an
 * open-addressing hash index over it: models look up hundreds of names
 * (a full SD 1.5 has ~1100 tensors), each once per load.
 *
 * Every tensor is stored as f32 contiguous. f32 tensors from a safetensors
 * mapping stay zero-copy; f16/bf16 are converted to f32 at load, doubling
 * their memory (issue 7 will keep them half-size and let kernels read
 * them directly). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/safetensors.h"
#include "weights.h"

typedef struct {
    char *name;
    lc_tensor *t;
    int used;
} entry;

struct lc_weights {
    entry *e;
    int n, cap;
    int *index; /* hash slots: entry index + 1, 0 = empty */
    int nslots; /* power of two, kept > 2n */
};

static uint32_t hash_str(const char *s)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 16777619u;
    }
    return h;
}

lc_weights *lc_weights_new(void)
{
    return lc_calloc(1, sizeof(lc_weights), "weights");
}

void lc_weights_free(lc_weights *w)
{
    if (!w)
        return;
    for (int i = 0; i < w->n; i++) {
        free(w->e[i].name);
        lc_tensor_free(w->e[i].t);
    }
    free(w->e);
    free(w->index);
    free(w);
}

static int find_slot(const lc_weights *w, const char *name)
{
    if (!w->nslots)
        return -1;
    uint32_t mask = (uint32_t)w->nslots - 1;
    for (uint32_t s = hash_str(name) & mask;; s = (s + 1) & mask) {
        int k = w->index[s];
        if (!k || strcmp(w->e[k - 1].name, name) == 0)
            return (int)s;
    }
}

static int rehash(lc_weights *w, int nslots)
{
    int *idx = lc_calloc((size_t)nslots, sizeof(int), "weights index");
    if (!idx)
        return LC_ERR;
    free(w->index);
    w->index = idx;
    w->nslots = nslots;
    for (int i = 0; i < w->n; i++)
        w->index[find_slot(w, w->e[i].name)] = i + 1;
    return LC_OK;
}

/* Large f16/bf16 matrices and conv kernels stay half-size in memory (an
 * SD 1.5 UNet: 1.6 GB instead of 3.3); the ops widen them to f32 per call,
 * which gives the same values as widening here. Small tensors (norms,
 * biases) are widened once. LUCID_F32_WEIGHTS=1 widens everything. */
#define HALF_MIN_NUMEL 65536

static int keep_half_shape(lc_dtype dt, int ndim, int64_t numel)
{
    static int f32_only = -1;
    if (f32_only < 0) {
        const char *e = getenv("LUCID_F32_WEIGHTS");
        f32_only = e && *e && strcmp(e, "0") != 0;
    }
    return !f32_only && (dt == LC_F16 || dt == LC_BF16) && ndim >= 2 && numel >= HALF_MIN_NUMEL;
}

static int keep_half(const lc_tensor *t)
{
    return keep_half_shape(t->dtype, t->ndim, lc_tensor_numel(t));
}

int lc_weights_put(lc_weights *w, const char *name, lc_tensor *t)
{
    if (!t)
        return LC_ERR;
    lc_tensor *f = NULL;
    if (t->dtype == LC_F32 || keep_half(t))
        f = lc_tensor_contiguous(t);
    else if (lc_dtype_is_float(t->dtype))
        f = lc_tensor_to(t, LC_F32);
    else
        lc_err("%s: dtype %s, expected a float tensor", name, lc_dtype_name(t->dtype));
    lc_tensor_free(t);
    if (!f)
        return LC_ERR;
    if (2 * (w->n + 1) > w->nslots && rehash(w, w->nslots ? 2 * w->nslots : 64) != LC_OK) {
        lc_tensor_free(f);
        return LC_ERR;
    }
    int s = find_slot(w, name);
    if (w->index[s]) { /* same name again: the later tensor wins */
        entry *e = &w->e[w->index[s] - 1];
        lc_tensor_free(e->t);
        e->t = f;
        return LC_OK;
    }
    if (w->n == w->cap) {
        int cap = w->cap ? 2 * w->cap : 64;
        entry *ne = realloc(w->e, (size_t)cap * sizeof(entry));
        if (!ne) {
            lc_tensor_free(f);
            return lc_err("out of memory growing the weights table");
        }
        w->e = ne;
        w->cap = cap;
    }
    char *dup = strdup(name);
    if (!dup) {
        lc_tensor_free(f);
        return lc_err("out of memory");
    }
    w->e[w->n] = (entry){dup, f, 0};
    w->index[s] = ++w->n;
    return LC_OK;
}

int lc_weights_count(const lc_weights *w)
{
    return w->n;
}

const char *lc_weights_name(const lc_weights *w, int i)
{
    return i >= 0 && i < w->n ? w->e[i].name : NULL;
}

lc_tensor *lc_weights_get(lc_weights *w, const char *name)
{
    int s = find_slot(w, name);
    return s >= 0 && w->index[s] ? w->e[w->index[s] - 1].t : NULL;
}

lc_tensor *lc_weights_need(lc_weights *w, const char *name, int ndim, const int64_t *shape)
{
    int s = find_slot(w, name);
    char want[96] = "";
    if (ndim >= 0)
        lc_shape_str(want, sizeof want, ndim, shape);
    if (s < 0 || !w->index[s]) {
        if (ndim >= 0)
            lc_err("missing tensor %s (expected %s)", name, want);
        else
            lc_err("missing tensor %s", name);
        return NULL;
    }
    entry *e = &w->e[w->index[s] - 1];
    if (ndim >= 0) {
        int ok = e->t->ndim == ndim;
        for (int i = 0; ok && i < ndim; i++)
            ok = e->t->shape[i] == shape[i];
        if (!ok) {
            lc_err("%s: shape %s, expected %s", name, LC_SHAPE_STR(e->t), want);
            return NULL;
        }
    }
    e->used = 1;
    return e->t;
}

int lc_weights_has_prefix(const lc_weights *w, const char *prefix)
{
    size_t n = strlen(prefix);
    for (int i = 0; i < w->n; i++)
        if (strncmp(w->e[i].name, prefix, n) == 0)
            return 1;
    return 0;
}

int lc_weights_check_unused(const lc_weights *w, const char *what)
{
    int count = 0;
    char list[1024] = "";
    size_t len = 0;
    for (int i = 0; i < w->n; i++) {
        if (w->e[i].used)
            continue;
        if (count < 5 && len < sizeof list - 1) {
            int k = snprintf(list + len, sizeof list - len, "%s%s %s", count ? ", " : "",
                             w->e[i].name, LC_SHAPE_STR(w->e[i].t));
            if (k > 0)
                len += (size_t)k < sizeof list - len ? (size_t)k : sizeof list - len - 1;
        }
        count++;
    }
    if (!count)
        return LC_OK;
    if (count > 5)
        return lc_err("%s: %d unexpected tensors: %s, ... (%d more)", what, count, list,
                      count - 5);
    return lc_err("%s: unexpected tensor%s %s", what, count > 1 ? "s" : "", list);
}

/* Bytes the machine can still give: MemAvailable + SwapFree from
 * /proc/meminfo, else the available physical pages; 0 when unknown. */
static uint64_t available_memory(void)
{
    uint64_t avail = 0, swap = 0;
    int found = 0;
    FILE *fp = fopen("/proc/meminfo", "r");
    if (fp) {
        char line[256];
        unsigned long long kb;
        while (fgets(line, sizeof line, fp)) {
            if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1) {
                avail = (uint64_t)kb * 1024;
                found = 1;
            } else if (sscanf(line, "SwapFree: %llu kB", &kb) == 1) {
                swap = (uint64_t)kb * 1024;
            }
        }
        fclose(fp);
    }
#if defined(_SC_AVPHYS_PAGES) && defined(_SC_PAGESIZE)
    if (!found) {
        long pages = sysconf(_SC_AVPHYS_PAGES), size = sysconf(_SC_PAGESIZE);
        if (pages > 0 && size > 0)
            avail = (uint64_t)pages * (uint64_t)size;
    }
#endif
    return avail + swap;
}

/* A header can promise terabytes (the data may be a sparse file): refuse,
 * before allocating, a load whose widened f16/bf16 tensors need more
 * memory as f32 than the machine has, rather than die in malloc or
 * thrash. f32 tensors and the half-size ones lc_weights_put keeps stay
 * mapped from the file and allocate nothing.
 * LUCID_NO_MEMORY_CHECK=1 skips the check. */
static int check_memory(lc_st_file *f, const char *prefix, size_t plen)
{
    const char *off = getenv("LUCID_NO_MEMORY_CHECK");
    if (off && *off && strcmp(off, "0") != 0)
        return LC_OK;
    uint64_t need = 0, big = 0;
    int bigi = -1;
    for (int i = 0; i < lc_st_count(f); i++) {
        if (plen && strncmp(lc_st_name(f, i), prefix, plen) != 0)
            continue;
        lc_dtype dt;
        int ndim;
        int64_t shape[LC_MAXDIM];
        if (lc_st_info(f, i, &dt, &ndim, shape) != LC_OK)
            return LC_ERR;
        /* the header was validated against the file size, so numel fits */
        uint64_t numel = 1;
        for (int d = 0; d < ndim; d++)
            numel *= (uint64_t)shape[d];
        if (dt == LC_F32 || !lc_dtype_is_float(dt) || keep_half_shape(dt, ndim, (int64_t)numel))
            continue;
        uint64_t bytes = numel * sizeof(float);
        need += bytes;
        if (bytes > big) {
            big = bytes;
            bigi = i;
        }
    }
    uint64_t avail = available_memory();
    if (avail == 0 || need <= avail)
        return LC_OK;
    return lc_err("%s: loading needs %.2f GB of memory for its f16/bf16 tensors widened to f32 "
                  "(largest: %s, %.2f GB) but this machine has %.2f GB available "
                  "(MemAvailable + SwapFree); set LUCID_NO_MEMORY_CHECK=1 to try anyway",
                  lc_st_path(f), need / 1e9, lc_st_name(f, bigi), big / 1e9, avail / 1e9);
}

/* The map callback returns 0 to skip a tensor, > 0 to keep it under the
 * name it wrote, < 0 for an error it has set. */
int lc_weights_load(lc_weights *w, const char *path, const char *prefix, lc_key_map_fn map,
                    void *ctx)
{
    lc_st_file *f = lc_st_open(path);
    if (!f)
        return LC_ERR;
    size_t plen = prefix ? strlen(prefix) : 0;
    if (check_memory(f, prefix, plen) != LC_OK) {
        lc_st_close(f);
        return LC_ERR;
    }
    int rc = LC_OK;
    int n = lc_st_count(f);
    for (int i = 0; i < n && rc == LC_OK; i++) {
        const char *name = lc_st_name(f, i);
        if (plen && strncmp(name, prefix, plen) != 0)
            continue;
        const char *key = name + plen;
        char mapped[512];
        if (map) {
            int m = map(key, mapped, sizeof mapped, ctx);
            if (m < 0) {
                lc_err_prefix("%s: ", path);
                rc = LC_ERR;
                break;
            }
            if (m == 0)
                continue;
            key = mapped;
        }
        lc_tensor *t = lc_st_get_index(f, i);
        if (!t || lc_weights_put(w, key, t) != LC_OK) {
            lc_err_prefix("%s: ", path);
            rc = LC_ERR;
        }
    }
    lc_st_close(f);
    return rc;
}
