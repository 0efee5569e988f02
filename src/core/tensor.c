#include "tensor.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>
#endif

#include "pool.h"

static atomic_size_t live_bytes;

/* ---- dtype table ---- */

static const struct {
    const char *name;
    const char *long_name;
    size_t size;
    int is_float;
} dtypes[LC_NDTYPES] = {
    [LC_F32] = {"f32", "float32", 4, 1},
    [LC_F16] = {"f16", "float16", 2, 1},
    [LC_BF16] = {"bf16", "bfloat16", 2, 1},
    [LC_I32] = {"i32", "int32", 4, 0},
    [LC_I64] = {"i64", "int64", 8, 0},
    [LC_U8] = {"u8", "uint8", 1, 0},
    [LC_F64] = {"f64", "float64", 8, 1},
};

size_t lc_dtype_size(lc_dtype dt)
{
    return (unsigned)dt < LC_NDTYPES ? dtypes[dt].size : 0;
}

const char *lc_dtype_name(lc_dtype dt)
{
    return (unsigned)dt < LC_NDTYPES ? dtypes[dt].name : "?";
}

int lc_dtype_is_float(lc_dtype dt)
{
    return (unsigned)dt < LC_NDTYPES && dtypes[dt].is_float;
}

int lc_dtype_from_name(const char *name, lc_dtype *out)
{
    for (int i = 0; i < LC_NDTYPES; i++) {
        if (!strcmp(name, dtypes[i].name) || !strcmp(name, dtypes[i].long_name)) {
            *out = (lc_dtype)i;
            return LC_OK;
        }
    }
    if (!strcmp(name, "float") || !strcmp(name, "half") || !strcmp(name, "double")) {
        *out = name[0] == 'f' ? LC_F32 : name[0] == 'h' ? LC_F16 : LC_F64;
        return LC_OK;
    }
    return lc_err("unknown dtype '%s' (expected f32, f16, bf16, i32, i64, u8 or f64)", name);
}

/* ---- half conversions ---- */

float lc_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t man = h & 0x3ff;
    uint32_t bits;
    if (exp == 0) {
        if (man == 0) {
            bits = sign;
        } else { /* subnormal: normalise */
            int e = -1;
            do {
                e++;
                man <<= 1;
            } while (!(man & 0x400));
            bits = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3ff) << 13);
        }
    } else if (exp == 0x1f) {
        bits = sign | 0x7f800000u | (man << 13);
    } else {
        bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t lc_f32_to_f16(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000;
    uint32_t absx = x & 0x7fffffff;
    if (absx >= 0x7f800000u) /* inf or nan */
        return (uint16_t)(sign | 0x7c00 | (absx > 0x7f800000u ? 0x200 : 0));
    if (absx >= 0x477ff000u) /* rounds to >= 65520: overflow to inf */
        return (uint16_t)(sign | 0x7c00);
    if (absx < 0x38800000u) { /* below smallest normal half: subnormal */
        if (absx < 0x33000000u) /* < 2^-25 rounds to zero */
            return (uint16_t)sign;
        uint32_t man = (absx & 0x7fffff) | 0x800000;
        int shift = 126 - (int)(absx >> 23); /* 14..24 */
        uint32_t half = man >> shift;
        uint32_t rem = man & ((1u << shift) - 1);
        uint32_t mid = 1u << (shift - 1);
        if (rem > mid || (rem == mid && (half & 1)))
            half++;
        return (uint16_t)(sign | half);
    }
    uint32_t h = ((absx >> 13) - ((127 - 15) << 10));
    uint32_t rem = absx & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (h & 1)))
        h++;
    return (uint16_t)(sign | h);
}

float lc_bf16_to_f32(uint16_t h)
{
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t lc_f32_to_bf16(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    if ((x & 0x7fffffff) > 0x7f800000u)
        return (uint16_t)((x >> 16) | 0x40);
    x += 0x7fff + ((x >> 16) & 1);
    return (uint16_t)(x >> 16);
}

/* ---- mappings ---- */

struct lc_mapping {
    int refcount;
    void *data;
    size_t size;
};

/* The file mapped at a 2 MB boundary with MADV_HUGEPAGE: where the page
 * cache holds the file in 2 MB folios (Linux reads it so through such a
 * mapping; a file just written sits in small ones until evicted), its
 * pages are mapped whole, and the GEMM's weight packing, which reads 14
 * rows of a matrix at once, each on a page of its own, stops missing the
 * TLB. SD 1.5 weights at 256x256: the median UNet step 1.39-1.45 s on 4 KB
 * pages, 1.25-1.27 on huge pages, and the first step 0.5 s shorter (3
 * alternating runs of 9 steps). Returns NULL (errno set) on failure. */
static void *map_file(int fd, size_t size)
{
    size_t huge = (size_t)2 << 20;
    char *r = mmap(NULL, size + huge, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (r == MAP_FAILED)
        return NULL;
    char *a = (char *)(((uintptr_t)r + huge - 1) & ~(uintptr_t)(huge - 1));
    /* private and writable: an in-place op on a weight copies the page
     * instead of faulting, and never writes the file */
    void *p = mmap(a, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED, fd, 0);
    if (p == MAP_FAILED) {
        int e = errno;
        munmap(r, size + huge);
        errno = e;
        return NULL;
    }
    /* the reservation around it */
    if (a > r)
        munmap(r, (size_t)(a - r));
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t mapped = (size + page - 1) & ~(page - 1);
    if (r + size + huge > a + mapped)
        munmap(a + mapped, (size_t)(r + size + huge - (a + mapped)));
#ifdef MADV_HUGEPAGE
    madvise(a, size, MADV_HUGEPAGE);
#endif
    return a;
}

lc_mapping *lc_mapping_open(const char *path, size_t *size_out)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        lc_err("%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        lc_err("%s: not a regular file", path);
        return NULL;
    }
    lc_mapping *m = lc_calloc(1, sizeof *m, "file mapping");
    if (!m) {
        close(fd);
        return NULL;
    }
    m->refcount = 1;
    m->size = (size_t)st.st_size;
    if (m->size > 0) {
        m->data = map_file(fd, m->size);
        if (!m->data) {
            close(fd);
            free(m);
            lc_err("%s: cannot map: %s", path, strerror(errno));
            return NULL;
        }
    }
    close(fd);
    if (size_out)
        *size_out = m->size;
    return m;
}

void *lc_mapping_data(lc_mapping *m)
{
    return m->data;
}

void lc_mapping_retain(lc_mapping *m)
{
    __atomic_add_fetch(&m->refcount, 1, __ATOMIC_RELAXED);
}

void lc_mapping_release(lc_mapping *m)
{
    if (!m || __atomic_sub_fetch(&m->refcount, 1, __ATOMIC_ACQ_REL) != 0)
        return;
    if (m->size)
        munmap(m->data, m->size);
    free(m);
}

/* ---- big buffers ----
 *
 * Fresh pages are expensive here (~10 us per 4 KB fault in the VMs we run
 * on: touching a new 64 MB activation cost ~175 ms), and a diffusion step
 * allocates and frees the same large activations over and over. Buffers
 * of at least BIG_MIN bytes are therefore mapped directly, 2 MB-aligned
 * with MADV_HUGEPAGE (one fault per 2 MB), and kept in a small cache when
 * freed, to be handed out again for a request of about the same size; a
 * request no cached block fits is assembled from the cached pages (moved
 * with mremap). The cache holds at most LUCID_TENSOR_CACHE_MB (default 512)
 * MB, so the footprint follows the live set. */
#define BIG_MIN ((size_t)1 << 20)
#define HUGE_SZ ((size_t)2 << 20)
#define BIG_HDR 64 /* keeps data 64-byte aligned; holds the mapping size */
#define CACHE_SLOTS 64

typedef struct {
    void *base;
    size_t cap;
    uint64_t age;
} big_slot;

static pthread_mutex_t big_lock = PTHREAD_MUTEX_INITIALIZER;
static big_slot big_cache[CACHE_SLOTS];
static int big_n;
static size_t big_cached, big_limit = (size_t)-1;
static uint64_t big_clock;

static size_t cache_limit(void)
{
    if (big_limit == (size_t)-1) {
        const char *e = getenv("LUCID_TENSOR_CACHE_MB");
        long v = e ? atol(e) : 512;
        big_limit = (size_t)(v < 0 ? 0 : v) << 20;
    }
    return big_limit;
}

static void *big_map(size_t cap)
{
    /* over-map by 2 MB and trim so the block starts on a huge page */
    size_t len = cap + HUGE_SZ;
    char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    uintptr_t a = ((uintptr_t)p + HUGE_SZ - 1) & ~(uintptr_t)(HUGE_SZ - 1);
    size_t head = (size_t)(a - (uintptr_t)p);
    if (head)
        munmap(p, head);
    if (len - head > cap)
        munmap((char *)a + cap, len - head - cap);
#ifdef MADV_HUGEPAGE
    madvise((void *)a, cap, MADV_HUGEPAGE);
#endif
    return (void *)a;
}

static void *big_alloc(size_t nbytes)
{
    size_t need = (nbytes + BIG_HDR + HUGE_SZ - 1) & ~(HUGE_SZ - 1);
    pthread_mutex_lock(&big_lock);
    /* best fit, wasting at most a quarter */
    int best = -1;
    for (int i = 0; i < big_n; i++) {
        size_t c = big_cache[i].cap;
        if (c >= need && c - need <= need / 4 && (best < 0 || c < big_cache[best].cap))
            best = i;
    }
    if (best >= 0) {
        void *base = big_cache[best].base;
        size_t cap = big_cache[best].cap;
        big_cached -= cap;
        big_cache[best] = big_cache[--big_n];
        pthread_mutex_unlock(&big_lock);
        *(size_t *)base = cap;
        return (char *)base + BIG_HDR;
    }
    /* Nothing of about the right size: build the block from cached pages
     * instead, moving them (mremap, page tables only) into a fresh range,
     * largest blocks first, the last one split if it is more than needed.
     * Unmapping them and faulting in new pages would zero every page again
     * (a UNet step at 512x512 did ~600 such 2 MB faults). Only what the
     * cache cannot cover comes fresh. */
    big_slot part[CACHE_SLOTS];
    int nparts = 0;
    size_t got = 0;
    while (got < need && big_n > 0) {
        int big = 0;
        for (int i = 1; i < big_n; i++)
            if (big_cache[i].cap > big_cache[big].cap)
                big = i;
        big_slot sl = big_cache[big];
        big_cached -= sl.cap;
        big_cache[big] = big_cache[--big_n];
        if (sl.cap > need - got) {
            /* the tail stays cached */
            size_t take = need - got;
            big_cache[big_n++] = (big_slot){(char *)sl.base + take, sl.cap - take, sl.age};
            big_cached += sl.cap - take;
            sl.cap = take;
        }
        part[nparts++] = sl;
        got += sl.cap;
    }
    pthread_mutex_unlock(&big_lock);
    char *base = big_map(need);
    size_t off = 0;
    for (int i = 0; i < nparts; i++) {
        if (!base || mremap(part[i].base, part[i].cap, part[i].cap,
                            MREMAP_MAYMOVE | MREMAP_FIXED, base + off) == MAP_FAILED)
            munmap(part[i].base, part[i].cap);
        off += part[i].cap;
    }
    if (!base)
        return NULL;
    *(size_t *)base = need;
    return base + BIG_HDR;
}

static void big_free(void *data)
{
    char *base = (char *)data - BIG_HDR;
    size_t cap = *(size_t *)base;
    size_t limit = cache_limit();
    void *drop[CACHE_SLOTS + 1];
    size_t dropcap[CACHE_SLOTS + 1];
    int ndrop = 0;
    pthread_mutex_lock(&big_lock);
    if (cap > limit) {
        drop[ndrop] = base, dropcap[ndrop++] = cap;
    } else {
        /* evict the oldest until it fits */
        while (big_n > 0 && (big_n == CACHE_SLOTS || big_cached + cap > limit)) {
            int old = 0;
            for (int i = 1; i < big_n; i++)
                if (big_cache[i].age < big_cache[old].age)
                    old = i;
            drop[ndrop] = big_cache[old].base, dropcap[ndrop++] = big_cache[old].cap;
            big_cached -= big_cache[old].cap;
            big_cache[old] = big_cache[--big_n];
        }
        big_cache[big_n++] = (big_slot){base, cap, ++big_clock};
        big_cached += cap;
    }
    pthread_mutex_unlock(&big_lock);
    for (int i = 0; i < ndrop; i++)
        munmap(drop[i], dropcap[i]);
}

void lc_tensor_cache_trim(void)
{
    pthread_mutex_lock(&big_lock);
    while (big_n > 0) {
        big_n--;
        munmap(big_cache[big_n].base, big_cache[big_n].cap);
    }
    big_cached = 0;
    pthread_mutex_unlock(&big_lock);
}

/* ---- storage ---- */

static lc_storage *storage_new(size_t nbytes)
{
    lc_storage *s = lc_calloc(1, sizeof *s, "tensor storage");
    if (!s)
        return NULL;
    /* 64-byte alignment suits every SIMD width we dispatch to */
    size_t rounded = (nbytes + 63) & ~(size_t)63;
    if (rounded >= BIG_MIN) {
        s->data = big_alloc(rounded);
    } else if (posix_memalign(&s->data, 64, rounded ? rounded : 64) != 0) {
        s->data = NULL;
    }
    if (!s->data) {
        free(s);
        lc_err("out of memory allocating a %zu-byte tensor", nbytes);
        return NULL;
    }
    s->refcount = 1;
    s->kind = LC_STORAGE_MALLOC;
    s->nbytes = nbytes;
    atomic_fetch_add(&live_bytes, nbytes);
    return s;
}

static void storage_release(lc_storage *s)
{
    if (!s || __atomic_sub_fetch(&s->refcount, 1, __ATOMIC_ACQ_REL) != 0)
        return;
    if (s->kind == LC_STORAGE_MALLOC) {
        atomic_fetch_sub(&live_bytes, s->nbytes);
        if (((s->nbytes + 63) & ~(size_t)63) >= BIG_MIN)
            big_free(s->data);
        else
            free(s->data);
    } else {
        lc_mapping_release(s->mapping);
    }
    free(s);
}

size_t lc_tensor_live_bytes(void)
{
    return atomic_load(&live_bytes);
}

/* ---- tensors ---- */

static void set_contiguous_strides(lc_tensor *t)
{
    int64_t s = 1;
    for (int i = t->ndim - 1; i >= 0; i--) {
        t->stride[i] = s;
        s *= t->shape[i];
    }
}

static int check_shape(int ndim, const int64_t *shape, int64_t *numel)
{
    if (ndim < 0 || ndim > LC_MAXDIM)
        return lc_err("tensor: %d dimensions (at most %d)", ndim, LC_MAXDIM);
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0)
            return lc_err("tensor: negative size %lld in dimension %d", (long long)shape[i], i + 1);
        if (shape[i] && n > INT64_MAX / 16 / shape[i])
            return lc_err("tensor: shape too large");
        n *= shape[i];
    }
    *numel = n;
    return LC_OK;
}

static lc_tensor *tensor_header(lc_dtype dt, int ndim, const int64_t *shape)
{
    lc_tensor *t = lc_calloc(1, sizeof *t, "tensor");
    if (!t)
        return NULL;
    t->refcount = 1;
    t->dtype = dt;
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++)
        t->shape[i] = shape[i];
    set_contiguous_strides(t);
    return t;
}

lc_tensor *lc_tensor_new(lc_dtype dt, int ndim, const int64_t *shape)
{
    int64_t n;
    if ((unsigned)dt >= LC_NDTYPES) {
        lc_err("tensor: invalid dtype %d", (int)dt);
        return NULL;
    }
    if (check_shape(ndim, shape, &n) != LC_OK)
        return NULL;
    lc_tensor *t = tensor_header(dt, ndim, shape);
    if (!t)
        return NULL;
    t->storage = storage_new((size_t)n * lc_dtype_size(dt));
    if (!t->storage) {
        free(t);
        return NULL;
    }
    return t;
}

lc_tensor *lc_tensor_zeros(lc_dtype dt, int ndim, const int64_t *shape)
{
    lc_tensor *t = lc_tensor_new(dt, ndim, shape);
    if (t)
        memset(t->storage->data, 0, t->storage->nbytes);
    return t;
}

lc_tensor *lc_tensor_like(const lc_tensor *t)
{
    return lc_tensor_new(t->dtype, t->ndim, t->shape);
}

lc_tensor *lc_tensor_scalar_f32(float v)
{
    lc_tensor *t = lc_tensor_new(LC_F32, 0, NULL);
    if (t)
        *(float *)t->storage->data = v;
    return t;
}

lc_tensor *lc_tensor_from_mapping(lc_mapping *m, size_t byte_offset, lc_dtype dt, int ndim,
                                  const int64_t *shape)
{
    int64_t n;
    if (check_shape(ndim, shape, &n) != LC_OK)
        return NULL;
    size_t nbytes = (size_t)n * lc_dtype_size(dt);
    if (byte_offset > m->size || nbytes > m->size - byte_offset) {
        lc_err("tensor data [%zu, %zu) lies outside the %zu-byte file", byte_offset,
               byte_offset + nbytes, m->size);
        return NULL;
    }
    lc_tensor *t = tensor_header(dt, ndim, shape);
    if (!t)
        return NULL;
    lc_storage *s = lc_calloc(1, sizeof *s, "tensor storage");
    if (!s) {
        free(t);
        return NULL;
    }
    s->refcount = 1;
    s->kind = LC_STORAGE_MMAP;
    s->data = (char *)m->data + byte_offset;
    s->nbytes = nbytes;
    s->mapping = m;
    lc_mapping_retain(m);
    /* mmap'd data may be unaligned for its dtype (safetensors does not
     * promise alignment): kernels that need alignment copy first */
    t->storage = s;
    return t;
}

void lc_tensor_retain(lc_tensor *t)
{
    if (t)
        __atomic_add_fetch(&t->refcount, 1, __ATOMIC_RELAXED);
}

void lc_tensor_free(lc_tensor *t)
{
    if (!t || __atomic_sub_fetch(&t->refcount, 1, __ATOMIC_ACQ_REL) != 0)
        return;
    storage_release(t->storage);
    free(t);
}

int64_t lc_tensor_numel(const lc_tensor *t)
{
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++)
        n *= t->shape[i];
    return n;
}

size_t lc_tensor_nbytes(const lc_tensor *t)
{
    return (size_t)lc_tensor_numel(t) * lc_dtype_size(t->dtype);
}

int lc_tensor_is_contiguous(const lc_tensor *t)
{
    int64_t s = 1;
    for (int i = t->ndim - 1; i >= 0; i--) {
        if (t->shape[i] != 1 && t->stride[i] != s)
            return 0;
        s *= t->shape[i];
    }
    return 1;
}

void *lc_tensor_data(const lc_tensor *t)
{
    return (char *)t->storage->data + t->offset * (int64_t)lc_dtype_size(t->dtype);
}

int lc_tensor_same_shape(const lc_tensor *a, const lc_tensor *b)
{
    if (a->ndim != b->ndim)
        return 0;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i])
            return 0;
    return 1;
}

const char *lc_shape_str(char *buf, size_t n, int ndim, const int64_t *shape)
{
    size_t pos = 0;
    pos += (size_t)snprintf(buf + pos, n - pos, "[");
    for (int i = 0; i < ndim && pos < n; i++)
        pos += (size_t)snprintf(buf + pos, n - pos, i ? ",%lld" : "%lld", (long long)shape[i]);
    if (pos < n)
        snprintf(buf + pos, n - pos, "]");
    return buf;
}

/* ---- views ---- */

static lc_tensor *view_of(lc_tensor *t)
{
    lc_tensor *v = lc_malloc(sizeof *v, "tensor view");
    if (!v)
        return NULL;
    *v = *t;
    v->refcount = 1;
    __atomic_add_fetch(&t->storage->refcount, 1, __ATOMIC_RELAXED);
    return v;
}

static int norm_dim(int dim, int ndim, const char *op)
{
    int d = dim < 0 ? dim + ndim : dim;
    if (d < 0 || d >= ndim) {
        lc_err("%s: dimension %d out of range for a %d-d tensor", op, dim, ndim);
        return -1;
    }
    return d;
}

lc_tensor *lc_tensor_view(lc_tensor *t, int ndim, const int64_t *shape_in)
{
    int64_t shape[LC_MAXDIM], known = 1, numel = lc_tensor_numel(t);
    int infer = -1;
    if (ndim < 0 || ndim > LC_MAXDIM) {
        lc_err("view: %d dimensions (at most %d)", ndim, LC_MAXDIM);
        return NULL;
    }
    for (int i = 0; i < ndim; i++) {
        shape[i] = shape_in[i];
        if (shape[i] == -1) {
            if (infer >= 0) {
                lc_err("view: only one dimension can be -1");
                return NULL;
            }
            infer = i;
        } else if (shape[i] < 0) {
            lc_err("view: invalid size %lld", (long long)shape[i]);
            return NULL;
        } else {
            known *= shape[i];
        }
    }
    if (infer >= 0) {
        if (known == 0 || numel % known) {
            lc_err("view: cannot infer a size for %lld elements from %s", (long long)numel,
                   lc_shape_str((char[96]){0}, 96, ndim, shape_in));
            return NULL;
        }
        shape[infer] = numel / known;
        known *= shape[infer];
    }
    if (known != numel) {
        lc_err("view: shape %s has %lld elements but the tensor %s has %lld",
               lc_shape_str((char[96]){0}, 96, ndim, shape), (long long)known, LC_SHAPE_STR(t),
               (long long)numel);
        return NULL;
    }
    lc_tensor *src = lc_tensor_contiguous(t);
    if (!src)
        return NULL;
    lc_tensor *v = view_of(src);
    lc_tensor_free(src);
    if (!v)
        return NULL;
    v->ndim = ndim;
    for (int i = 0; i < ndim; i++)
        v->shape[i] = shape[i];
    set_contiguous_strides(v);
    return v;
}

lc_tensor *lc_tensor_narrow(lc_tensor *t, int dim, int64_t start, int64_t len)
{
    int d = norm_dim(dim, t->ndim, "narrow");
    if (d < 0)
        return NULL;
    if (start < 0 || len < 0 || start + len > t->shape[d]) {
        lc_err("narrow: [%lld, %lld) outside dimension %d of size %lld", (long long)start,
               (long long)(start + len), d + 1, (long long)t->shape[d]);
        return NULL;
    }
    lc_tensor *v = view_of(t);
    if (!v)
        return NULL;
    v->offset += start * t->stride[d];
    v->shape[d] = len;
    return v;
}

lc_tensor *lc_tensor_select(lc_tensor *t, int dim, int64_t index)
{
    int d = norm_dim(dim, t->ndim, "select");
    if (d < 0)
        return NULL;
    if (index < 0 || index >= t->shape[d]) {
        lc_err("select: index %lld outside dimension %d of size %lld", (long long)index, d + 1,
               (long long)t->shape[d]);
        return NULL;
    }
    lc_tensor *v = view_of(t);
    if (!v)
        return NULL;
    v->offset += index * t->stride[d];
    for (int i = d; i < t->ndim - 1; i++) {
        v->shape[i] = t->shape[i + 1];
        v->stride[i] = t->stride[i + 1];
    }
    v->ndim--;
    return v;
}

lc_tensor *lc_tensor_permute(lc_tensor *t, const int *perm)
{
    int seen[LC_MAXDIM] = {0};
    for (int i = 0; i < t->ndim; i++) {
        int p = perm[i] < 0 ? perm[i] + t->ndim : perm[i];
        if (p < 0 || p >= t->ndim || seen[p]) {
            lc_err("permute: not a permutation of %d dimensions", t->ndim);
            return NULL;
        }
        seen[p] = 1;
    }
    lc_tensor *v = view_of(t);
    if (!v)
        return NULL;
    for (int i = 0; i < t->ndim; i++) {
        int p = perm[i] < 0 ? perm[i] + t->ndim : perm[i];
        v->shape[i] = t->shape[p];
        v->stride[i] = t->stride[p];
    }
    return v;
}

lc_tensor *lc_tensor_transpose(lc_tensor *t, int d0, int d1)
{
    int a = norm_dim(d0, t->ndim, "transpose"), b = norm_dim(d1, t->ndim, "transpose");
    if (a < 0 || b < 0)
        return NULL;
    int perm[LC_MAXDIM];
    for (int i = 0; i < t->ndim; i++)
        perm[i] = i;
    perm[a] = b;
    perm[b] = a;
    return lc_tensor_permute(t, perm);
}

lc_tensor *lc_tensor_expand(lc_tensor *t, int ndim, const int64_t *shape)
{
    if (ndim < t->ndim || ndim > LC_MAXDIM) {
        lc_err("expand: cannot expand %s to %d dimensions", LC_SHAPE_STR(t), ndim);
        return NULL;
    }
    lc_tensor *v = view_of(t);
    if (!v)
        return NULL;
    int off = ndim - t->ndim;
    for (int i = 0; i < ndim; i++) {
        int64_t want = shape[i];
        if (i < off) {
            v->shape[i] = want;
            v->stride[i] = 0;
            continue;
        }
        int64_t have = t->shape[i - off];
        if (want == -1)
            want = have;
        if (have == want) {
            v->shape[i] = have;
            v->stride[i] = t->stride[i - off];
        } else if (have == 1) {
            v->shape[i] = want;
            v->stride[i] = 0;
        } else {
            lc_tensor_free(v);
            lc_err("expand: %s cannot expand to %s", LC_SHAPE_STR(t),
                   lc_shape_str((char[96]){0}, 96, ndim, shape));
            return NULL;
        }
    }
    v->ndim = ndim;
    return v;
}

lc_tensor *lc_tensor_unsqueeze(lc_tensor *t, int dim)
{
    if (t->ndim >= LC_MAXDIM) {
        lc_err("unsqueeze: already %d dimensions", LC_MAXDIM);
        return NULL;
    }
    int d = dim < 0 ? dim + t->ndim + 1 : dim;
    if (d < 0 || d > t->ndim) {
        lc_err("unsqueeze: dimension %d out of range", dim);
        return NULL;
    }
    lc_tensor *v = view_of(t);
    if (!v)
        return NULL;
    for (int i = t->ndim; i > d; i--) {
        v->shape[i] = t->shape[i - 1];
        v->stride[i] = t->stride[i - 1];
    }
    v->shape[d] = 1;
    v->stride[d] = d + 1 < v->ndim + 1 && d < t->ndim ? t->stride[d] * t->shape[d] : 1;
    v->ndim++;
    return v;
}

lc_tensor *lc_tensor_squeeze(lc_tensor *t, int dim)
{
    lc_tensor *v = view_of(t);
    if (!v)
        return NULL;
    int all = dim == -100, d = all ? -1 : norm_dim(dim, t->ndim, "squeeze");
    if (!all && d < 0) {
        lc_tensor_free(v);
        return NULL;
    }
    int n = 0;
    for (int i = 0; i < t->ndim; i++) {
        if (t->shape[i] == 1 && (all || i == d))
            continue;
        v->shape[n] = t->shape[i];
        v->stride[n] = t->stride[i];
        n++;
    }
    v->ndim = n;
    return v;
}

/* ---- copies ---- */

typedef double (*load_fn)(const void *p);
typedef void (*store_fn)(void *p, double v);

static double ld_f32(const void *p) { return *(const float *)p; }
static double ld_f16(const void *p) { return lc_f16_to_f32(*(const uint16_t *)p); }
static double ld_bf16(const void *p) { return lc_bf16_to_f32(*(const uint16_t *)p); }
static double ld_i32(const void *p) { return *(const int32_t *)p; }
static double ld_i64(const void *p) { return (double)*(const int64_t *)p; }
static double ld_u8(const void *p) { return *(const uint8_t *)p; }
static double ld_f64(const void *p) { return *(const double *)p; }
static void st_f32(void *p, double v) { *(float *)p = (float)v; }
static void st_f16(void *p, double v) { *(uint16_t *)p = lc_f32_to_f16((float)v); }
static void st_bf16(void *p, double v) { *(uint16_t *)p = lc_f32_to_bf16((float)v); }
static void st_i32(void *p, double v) { *(int32_t *)p = (int32_t)v; }
static void st_i64(void *p, double v) { *(int64_t *)p = (int64_t)v; }
static void st_u8(void *p, double v) { *(uint8_t *)p = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v); }
static void st_f64(void *p, double v) { *(double *)p = v; }

static const load_fn loaders[LC_NDTYPES] = {ld_f32, ld_f16, ld_bf16, ld_i32, ld_i64, ld_u8, ld_f64};
static const store_fn storers[LC_NDTYPES] = {st_f32, st_f16, st_bf16, st_i32, st_i64, st_u8, st_f64};

#if defined(__x86_64__)
static int have_f16c(void)
{
    static int known = -1;
    if (known < 0) {
        /* F16C from CPUID itself: clang's __builtin_cpu_supports does not
         * know "f16c" (a compile error with clang 14, so no fuzz or
         * clang build) */
        unsigned a, b, c, d;
        known = __builtin_cpu_supports("avx") && __get_cpuid(1, &a, &b, &c, &d) &&
                (c & bit_F16C) != 0;
    }
    return known;
}

/* f16 weights are widened per layer at run time: F16C converts 8 at a time,
 * exactly (every half is a float), so the same bits as lc_f16_to_f32.
 * Returns how many it did (a multiple of 8). */
__attribute__((target("avx,f16c"))) static int64_t f16_to_f32_f16c(float *o, const uint16_t *s,
                                                                  int64_t n)
{
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(o + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(s + i))));
    return i;
}
#endif

/* Converts a contiguous run. Fast paths for the conversions models use. */
static void convert_run(void *dst, lc_dtype dd, const void *src, lc_dtype sd, int64_t n)
{
    if (dd == sd) {
        memcpy(dst, src, (size_t)n * lc_dtype_size(dd));
        return;
    }
    if (dd == LC_F32 && sd == LC_F16) {
        float *o = dst;
        const uint16_t *s = src;
        int64_t i = 0;
#if defined(__x86_64__)
        if (have_f16c())
            i = f16_to_f32_f16c(o, s, n);
#endif
        for (; i < n; i++)
            o[i] = lc_f16_to_f32(s[i]);
        return;
    }
    if (dd == LC_F32 && sd == LC_BF16) {
        float *o = dst;
        const uint16_t *s = src;
        for (int64_t i = 0; i < n; i++)
            o[i] = lc_bf16_to_f32(s[i]);
        return;
    }
    size_t ds = lc_dtype_size(dd), ss = lc_dtype_size(sd);
    for (int64_t i = 0; i < n; i++)
        storers[dd]((char *)dst + i * ds, loaders[sd]((const char *)src + i * ss));
}

void lc_convert_to_f32(float *dst, const void *src, lc_dtype sd, int64_t n)
{
    convert_run(dst, LC_F32, src, sd, n);
}

/* Iterates the logical elements of dst (contiguous or not) with src
 * broadcast to dst's shape. */
#define COPY_PAR_MIN ((int64_t)1 << 18)

typedef struct {
    char *d;
    const char *s;
    lc_dtype dd, sd;
    size_t dsz, ssz;
} copy_job;

static void copy_chunk(void *ctx, int64_t b, int64_t e)
{
    const copy_job *j = ctx;
    convert_run(j->d + b * (int64_t)j->dsz, j->dd, j->s + b * (int64_t)j->ssz, j->sd, e - b);
}

/* A copy that is a batch of 2-d transposes (a permuted view made
 * contiguous: [B, C, HW] <-> [B, HW, C] around every UNet transformer),
 * 4-byte elements of one dtype: dst contiguous with dims a (its last) and
 * b (src's unit-stride one) swapped in stride order. Tiles of TR x TR keep
 * both sides' accesses in cache lines; element by element, the generic
 * loop below took ~10 ns a value. */
#define TR 32

typedef struct {
    uint32_t *d;
    const uint32_t *s;
    int nd, a, b;
    const int64_t *shape, *dstride, *sstride;
    int64_t rowblocks; /* blocks of TR along dim b */
} tr_job;

static void tr_chunk(void *ctx, int64_t t0, int64_t t1)
{
    const tr_job *j = ctx;
    int64_t na = j->shape[j->a], nb = j->shape[j->b];
    int64_t da = j->dstride[j->a], db = j->dstride[j->b], sa = j->sstride[j->a];
    for (int64_t t = t0; t < t1; t++) {
        /* the outer index (all dims but a and b) and the block of b */
        int64_t outer = t / j->rowblocks, i0 = (t % j->rowblocks) * TR;
        int64_t doff = 0, soff = 0, rest = outer;
        for (int i = j->nd - 1; i >= 0; i--) {
            if (i == j->a || i == j->b)
                continue;
            int64_t ix = rest % j->shape[i];
            rest /= j->shape[i];
            doff += ix * j->dstride[i];
            soff += ix * j->sstride[i];
        }
        int64_t i1 = i0 + TR < nb ? i0 + TR : nb;
        for (int64_t k0 = 0; k0 < na; k0 += TR) {
            int64_t k1 = k0 + TR < na ? k0 + TR : na;
            for (int64_t i = i0; i < i1; i++) {
                uint32_t *d = j->d + doff + i * db;
                const uint32_t *sp = j->s + soff + i;
                for (int64_t k = k0; k < k1; k++)
                    d[k * da] = sp[k * sa];
            }
        }
    }
}

/* 1 when the copy is not such a transpose (nothing written), else
 * lc_parallel_for's result */
static int copy_transposed(lc_tensor *dst, const lc_tensor *s)
{
    int nd = dst->ndim, a = nd - 1, b = -1;
    if (nd < 2 || dst->dtype != s->dtype || lc_dtype_size(dst->dtype) != 4 ||
        !lc_tensor_is_contiguous(dst) || s->stride[a] == 1)
        return 1;
    for (int i = 0; i < nd - 1; i++)
        if (s->stride[i] == 1 && dst->shape[i] > 1)
            b = i;
    if (b < 0)
        return 1;
    int64_t outer = 1;
    for (int i = 0; i < nd; i++)
        if (i != a && i != b)
            outer *= dst->shape[i];
    tr_job j = {lc_tensor_data(dst), lc_tensor_data((lc_tensor *)s), nd, a, b,
                dst->shape, dst->stride, s->stride, (dst->shape[b] + TR - 1) / TR};
    return lc_parallel_for(outer * j.rowblocks, 1, tr_chunk, &j);
}

int lc_tensor_copy_(lc_tensor *dst, const lc_tensor *src)
{
    lc_tensor *s = lc_tensor_expand((lc_tensor *)src, dst->ndim, dst->shape);
    if (!s)
        return lc_err_prefix("copy: ");
    int nd = dst->ndim;
    size_t dsz = lc_dtype_size(dst->dtype), ssz = lc_dtype_size(src->dtype);
    char *dbase = lc_tensor_data(dst);
    const char *sbase = lc_tensor_data(s);
    int64_t numel = lc_tensor_numel(dst);
    if (numel == 0) {
        lc_tensor_free(s);
        return LC_OK;
    }
    if (lc_tensor_is_contiguous(dst) && lc_tensor_is_contiguous(s)) {
        /* big copies (weights widened per layer, activations) on the pool;
         * each element is converted alone, so chunking cannot change bits */
        copy_job j = {dbase, sbase, dst->dtype, src->dtype, dsz, ssz};
        if (numel >= COPY_PAR_MIN && lc_parallel_for(numel, COPY_PAR_MIN / 4, copy_chunk, &j) ==
                                         LC_OK) {
            lc_tensor_free(s);
            return LC_OK;
        }
        convert_run(dbase, dst->dtype, sbase, src->dtype, numel);
        lc_tensor_free(s);
        return LC_OK;
    }
    int tr = numel >= 4096 ? copy_transposed(dst, s) : 1;
    if (tr != 1) {
        lc_tensor_free(s);
        return tr;
    }
    /* innermost dimension as a run when both are unit-stride there */
    int64_t inner = nd ? dst->shape[nd - 1] : 1;
    int runs = nd && dst->stride[nd - 1] == 1 && s->stride[nd - 1] == 1;
    int64_t idx[LC_MAXDIM] = {0};
    int64_t outer = runs ? numel / inner : numel;
    int last = runs ? nd - 1 : nd;
    for (int64_t k = 0; k < outer; k++) {
        int64_t doff = 0, soff = 0;
        for (int i = 0; i < last; i++) {
            doff += idx[i] * dst->stride[i];
            soff += idx[i] * s->stride[i];
        }
        if (runs)
            convert_run(dbase + doff * (int64_t)dsz, dst->dtype, sbase + soff * (int64_t)ssz,
                        src->dtype, inner);
        else
            convert_run(dbase + doff * (int64_t)dsz, dst->dtype, sbase + soff * (int64_t)ssz,
                        src->dtype, 1);
        for (int i = last - 1; i >= 0; i--) {
            if (++idx[i] < dst->shape[i])
                break;
            idx[i] = 0;
        }
    }
    lc_tensor_free(s);
    return LC_OK;
}

lc_tensor *lc_tensor_contiguous(lc_tensor *t)
{
    if (lc_tensor_is_contiguous(t)) {
        lc_tensor_retain(t);
        return t;
    }
    return lc_tensor_to(t, t->dtype);
}

lc_tensor *lc_tensor_clone(const lc_tensor *t)
{
    return lc_tensor_to(t, t->dtype);
}

lc_tensor *lc_tensor_to(const lc_tensor *t, lc_dtype dt)
{
    lc_tensor *o = lc_tensor_new(dt, t->ndim, t->shape);
    if (!o)
        return NULL;
    if (lc_tensor_copy_(o, t) != LC_OK) {
        lc_tensor_free(o);
        return NULL;
    }
    return o;
}

lc_tensor *lc_tensor_f32(lc_tensor *t)
{
    if (t->dtype == LC_F32)
        return lc_tensor_contiguous(t);
    return lc_tensor_to(t, LC_F32);
}

int lc_tensor_fill_(lc_tensor *t, double v)
{
    lc_tensor *s = lc_tensor_new(t->dtype, 0, NULL);
    if (!s)
        return LC_ERR;
    storers[t->dtype](s->storage->data, v);
    int rc = lc_tensor_copy_(t, s);
    lc_tensor_free(s);
    return rc;
}

static int64_t flat_to_offset(const lc_tensor *t, int64_t flat)
{
    int64_t off = 0;
    for (int i = t->ndim - 1; i >= 0; i--) {
        int64_t n = t->shape[i];
        off += (flat % n) * t->stride[i];
        flat /= n;
    }
    return off;
}

double lc_tensor_get(const lc_tensor *t, int64_t flat)
{
    const char *p = lc_tensor_data(t);
    return loaders[t->dtype](p + flat_to_offset(t, flat) * (int64_t)lc_dtype_size(t->dtype));
}

void lc_tensor_set(lc_tensor *t, int64_t flat, double v)
{
    char *p = lc_tensor_data(t);
    storers[t->dtype](p + flat_to_offset(t, flat) * (int64_t)lc_dtype_size(t->dtype), v);
}
