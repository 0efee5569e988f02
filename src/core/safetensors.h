/* safetensors: read (mmap, header validated) and write (atomic: temporary
 * name, fsync, rename).
 *
 * Validation on open: file >= 8 bytes; header length fits the file and is
 * sane (<= 100 MB); header is a JSON object; every entry has a known dtype,
 * a shape of at most LC_MAXDIM non-negative ints, data_offsets [b, e] with
 * b <= e, inside the data area, e - b == numel * dtype size; no two
 * tensors overlap. Errors name the file and the tensor. */
#ifndef LC_SAFETENSORS_H
#define LC_SAFETENSORS_H

#include "tensor.h"

typedef struct lc_st_file lc_st_file;

lc_st_file *lc_st_open(const char *path);
void lc_st_close(lc_st_file *f); /* tensors obtained stay valid (they hold the mapping) */
const char *lc_st_path(const lc_st_file *f);
int lc_st_count(const lc_st_file *f);
const char *lc_st_name(const lc_st_file *f, int i); /* in file order */
int lc_st_find(const lc_st_file *f, const char *name); /* index or -1 */
/* dtype/shape without touching data */
int lc_st_info(const lc_st_file *f, int i, lc_dtype *dt, int *ndim, int64_t *shape);
/* zero-copy tensor over the mapping (new ref); NULL + error if missing */
lc_tensor *lc_st_get(lc_st_file *f, const char *name);
lc_tensor *lc_st_get_index(lc_st_file *f, int i);
/* __metadata__ entries (string values); NULL if absent */
int lc_st_metadata_count(const lc_st_file *f);
const char *lc_st_metadata_key(const lc_st_file *f, int i);
const char *lc_st_metadata(const lc_st_file *f, const char *key);

/* Writes tensors (any dtype, any strides) and optional string metadata. */
int lc_st_save(const char *path, int n, const char *const *names, lc_tensor *const *tensors,
               int nmeta, const char *const *meta_keys, const char *const *meta_values);

#endif
