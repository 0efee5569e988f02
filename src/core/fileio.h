/* Small file helpers shared by the file formats (safetensors, images,
 * audio): atomic writes and bounded whole-file reads.
 *
 * Atomic write: the data goes to a temporary file in the destination's
 * directory (so rename() cannot cross file systems), is fsync'd, then
 * renamed over the destination. On any failure the temporary file is
 * removed: a reader never sees a partial file. */
#ifndef LC_FILEIO_H
#define LC_FILEIO_H

#include <stddef.h>
#include <stdio.h>

typedef struct {
    char *path; /* final name */
    char *tmp;  /* temporary name, NULL once committed or aborted */
    int fd;     /* open descriptor of tmp, -1 when closed */
    FILE *fp;   /* set by lc_atomic_stream; owns fd then */
} lc_atomic_file;

/* Creates the temporary file. On failure nothing is left on disk. */
int lc_atomic_open(lc_atomic_file *af, const char *path);
/* A stdio stream over the temporary file (owned by af). */
FILE *lc_atomic_stream(lc_atomic_file *af);
/* write(2) all of buf, retrying short writes */
int lc_atomic_write(lc_atomic_file *af, const void *buf, size_t n);
/* flush, fsync, close, rename; on failure removes the temporary file */
int lc_atomic_commit(lc_atomic_file *af);
/* close and remove the temporary file (keeps the current error message) */
void lc_atomic_abort(lc_atomic_file *af);

/* Reads a whole regular file into a malloc'd buffer (free() it). Files
 * larger than max_bytes are refused with a message naming the file. */
int lc_read_file(const char *path, size_t max_bytes, unsigned char **buf, size_t *len);

/* Lower-case extension of path without the dot ("png"), "" if none. */
const char *lc_path_ext(const char *path, char *buf, size_t n);

#endif
