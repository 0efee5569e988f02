/* Tensors: a dtype, a shape and strides (in elements) over a refcounted
 * storage. Views share storage. The core knows nothing of Lua.
 *
 * Ownership: every function returning lc_tensor* returns a new reference the
 * caller must lc_tensor_free(); NULL means failure with lc_errmsg() set.
 * Dimensions are 0-based here; the Lua binding converts. */
#ifndef LC_TENSOR_H
#define LC_TENSOR_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"

#define LC_MAXDIM 6

typedef enum {
    LC_F32 = 0,
    LC_F16,
    LC_BF16,
    LC_I32,
    LC_I64,
    LC_U8,
    LC_F64, /* safetensors files and scheduler tables carry it */
    LC_NDTYPES
} lc_dtype;

typedef enum {
    LC_STORAGE_MALLOC = 0,
    LC_STORAGE_MMAP,     /* data points into an mmap owned by `owner` */
} lc_storage_kind;

typedef struct lc_mapping lc_mapping; /* a refcounted mmap of a file */

typedef struct lc_storage {
    int refcount;
    lc_storage_kind kind;
    void *data;
    size_t nbytes;
    lc_mapping *mapping; /* LC_STORAGE_MMAP: keeps the file mapped */
} lc_storage;

typedef struct lc_tensor {
    int refcount;
    lc_dtype dtype;
    int ndim;
    int64_t shape[LC_MAXDIM];
    int64_t stride[LC_MAXDIM]; /* in elements; may be 0 (expand) */
    int64_t offset;            /* in elements, into storage */
    lc_storage *storage;
} lc_tensor;

/* dtype table */
size_t lc_dtype_size(lc_dtype dt);
const char *lc_dtype_name(lc_dtype dt);           /* "f32", "f16", ... */
int lc_dtype_from_name(const char *name, lc_dtype *out); /* also "float32" */
int lc_dtype_is_float(lc_dtype dt);

/* fp16 / bf16 scalar conversions (round to nearest even) */
float lc_f16_to_f32(uint16_t h);
uint16_t lc_f32_to_f16(float f);
float lc_bf16_to_f32(uint16_t h);
uint16_t lc_f32_to_bf16(float f);
/* n contiguous elements of type sd at src widened to f32 at dst (F16C
 * where the CPU has it: the same bits as lc_f16_to_f32) */
void lc_convert_to_f32(float *dst, const void *src, lc_dtype sd, int64_t n);

/* mappings (used by safetensors) */
lc_mapping *lc_mapping_open(const char *path, size_t *size_out);
void *lc_mapping_data(lc_mapping *m);
void lc_mapping_retain(lc_mapping *m);
void lc_mapping_release(lc_mapping *m);

/* creation: contents of lc_tensor_new are uninitialised; zeros are zero */
lc_tensor *lc_tensor_new(lc_dtype dt, int ndim, const int64_t *shape);
lc_tensor *lc_tensor_zeros(lc_dtype dt, int ndim, const int64_t *shape);
lc_tensor *lc_tensor_like(const lc_tensor *t);                /* same dtype/shape, contiguous */
lc_tensor *lc_tensor_from_mapping(lc_mapping *m, size_t byte_offset, lc_dtype dt,
                                  int ndim, const int64_t *shape);
lc_tensor *lc_tensor_scalar_f32(float v); /* 0-dim */

void lc_tensor_retain(lc_tensor *t);
void lc_tensor_free(lc_tensor *t); /* drops one reference; NULL is fine */

/* queries */
int64_t lc_tensor_numel(const lc_tensor *t);
size_t lc_tensor_nbytes(const lc_tensor *t); /* numel * elsize */
int lc_tensor_is_contiguous(const lc_tensor *t);
void *lc_tensor_data(const lc_tensor *t); /* address of element 0 */
int lc_tensor_same_shape(const lc_tensor *a, const lc_tensor *b);
/* "[2,3,4]" into buf */
const char *lc_shape_str(char *buf, size_t n, int ndim, const int64_t *shape);
#define LC_SHAPE_STR(t) lc_shape_str((char[96]){0}, 96, (t)->ndim, (t)->shape)

/* views (share storage; dims 0-based, negative dims count from the end) */
lc_tensor *lc_tensor_view(lc_tensor *t, int ndim, const int64_t *shape); /* -1 infers one dim; copies if not viewable */
lc_tensor *lc_tensor_narrow(lc_tensor *t, int dim, int64_t start, int64_t len);
lc_tensor *lc_tensor_select(lc_tensor *t, int dim, int64_t index); /* drops dim */
lc_tensor *lc_tensor_permute(lc_tensor *t, const int *perm);
lc_tensor *lc_tensor_transpose(lc_tensor *t, int d0, int d1);
lc_tensor *lc_tensor_expand(lc_tensor *t, int ndim, const int64_t *shape);
lc_tensor *lc_tensor_unsqueeze(lc_tensor *t, int dim);
lc_tensor *lc_tensor_squeeze(lc_tensor *t, int dim); /* dim = -100: all size-1 dims */

/* copies */
lc_tensor *lc_tensor_contiguous(lc_tensor *t); /* new ref to t itself if already contiguous */
lc_tensor *lc_tensor_clone(const lc_tensor *t);
lc_tensor *lc_tensor_to(const lc_tensor *t, lc_dtype dt); /* always a new contiguous tensor */
/* dst and src same shape (src may broadcast to dst); any dtypes, any strides */
int lc_tensor_copy_(lc_tensor *dst, const lc_tensor *src);
int lc_tensor_fill_(lc_tensor *t, double v);

/* element access by flat (row-major logical) index, any dtype, as double */
double lc_tensor_get(const lc_tensor *t, int64_t flat_index);
void lc_tensor_set(lc_tensor *t, int64_t flat_index, double v);

/* f32 contiguous view or copy for kernels: returns new ref (t itself when
 * already contiguous f32) */
lc_tensor *lc_tensor_f32(lc_tensor *t);

/* Live tensor bytes (malloc storage only), for the Lua GC heuristics. */
size_t lc_tensor_live_bytes(void);
/* Unmaps the freed big buffers kept for reuse (tensors of 1 MB and more
 * are cached up to LUCID_TENSOR_CACHE_MB, default 512, after they die). */
void lc_tensor_cache_trim(void);

#endif
