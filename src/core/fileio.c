#include "fileio.h"

#include <ctype.h>
#include <errno.h>
#include <stdint.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"

/* umask() can only be read by setting it, which races with other threads;
 * Linux reports it in /proc/self/status instead. */
static mode_t current_umask(void)
{
    mode_t mask = 022;
    FILE *f = fopen("/proc/self/status", "r");
    if (!f)
        return mask;
    char line[256];
    while (fgets(line, sizeof line, f)) {
        unsigned m;
        if (sscanf(line, "Umask: %o", &m) == 1) {
            mask = (mode_t)m;
            break;
        }
    }
    fclose(f);
    return mask;
}

int lc_atomic_open(lc_atomic_file *af, const char *path)
{
    memset(af, 0, sizeof *af);
    af->fd = -1;
    size_t n = strlen(path);
    if (n == 0)
        return lc_err("cannot write a file with an empty name");
    char *dup = strdup(path);
    if (!dup)
        return lc_err("out of memory");
    char *dir = dirname(dup);
    struct stat st;
    if (stat(dir, &st) != 0) {
        lc_err("%s: cannot write: directory '%s': %s", path, dir, strerror(errno));
        free(dup);
        return LC_ERR;
    }
    if (!S_ISDIR(st.st_mode)) {
        lc_err("%s: cannot write: '%s' is not a directory", path, dir);
        free(dup);
        return LC_ERR;
    }
    free(dup);
    af->path = strdup(path);
    af->tmp = malloc(n + 16);
    if (!af->path || !af->tmp) {
        free(af->path);
        free(af->tmp);
        af->tmp = af->path = NULL;
        return lc_err("out of memory");
    }
    /* a hidden-ish suffix keeps the extension out of the way of tools that
     * watch the directory for new .png files */
    snprintf(af->tmp, n + 16, "%s.tmp-XXXXXX", path);
    af->fd = mkstemp(af->tmp);
    if (af->fd < 0) {
        lc_err("%s: cannot create temporary file: %s", path, strerror(errno));
        free(af->path);
        free(af->tmp);
        af->tmp = af->path = NULL;
        return LC_ERR;
    }
    /* mkstemp makes 0600; give the file the permissions open() would */
    if (fchmod(af->fd, 0666 & ~current_umask()) != 0) {
        /* harmless: the file is still ours and readable by us */
    }
    return LC_OK;
}

FILE *lc_atomic_stream(lc_atomic_file *af)
{
    if (af->fp)
        return af->fp;
    af->fp = fdopen(af->fd, "wb");
    if (!af->fp)
        lc_err("%s: fdopen: %s", af->path, strerror(errno));
    return af->fp;
}

int lc_atomic_write(lc_atomic_file *af, const void *buf, size_t n)
{
    const char *p = buf;
    while (n > 0) {
        ssize_t w = write(af->fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return lc_err("%s: write failed: %s", af->path, strerror(errno));
        }
        p += w;
        n -= (size_t)w;
    }
    return LC_OK;
}

static void release(lc_atomic_file *af)
{
    free(af->path);
    free(af->tmp);
    af->path = af->tmp = NULL;
    af->fd = -1;
    af->fp = NULL;
}

void lc_atomic_abort(lc_atomic_file *af)
{
    if (af->fp)
        fclose(af->fp);
    else if (af->fd >= 0)
        close(af->fd);
    if (af->tmp)
        unlink(af->tmp);
    release(af);
}

int lc_atomic_commit(lc_atomic_file *af)
{
    if (af->fp && fflush(af->fp) != 0) {
        lc_err("%s: write failed: %s", af->path, strerror(errno));
        lc_atomic_abort(af);
        return LC_ERR;
    }
    if (fsync(af->fd) != 0 && errno != EINVAL) {
        lc_err("%s: fsync failed: %s", af->path, strerror(errno));
        lc_atomic_abort(af);
        return LC_ERR;
    }
    int rc = af->fp ? fclose(af->fp) : close(af->fd);
    af->fp = NULL;
    af->fd = -1;
    if (rc != 0) {
        lc_err("%s: close failed: %s", af->path, strerror(errno));
        lc_atomic_abort(af);
        return LC_ERR;
    }
    if (rename(af->tmp, af->path) != 0) {
        lc_err("%s: cannot rename temporary file into place: %s", af->path, strerror(errno));
        lc_atomic_abort(af);
        return LC_ERR;
    }
    /* make the rename itself durable */
    char *dup = strdup(af->path);
    if (dup) {
        int dfd = open(dirname(dup), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0) {
            (void)fsync(dfd);
            close(dfd);
        }
        free(dup);
    }
    release(af);
    return LC_OK;
}

int lc_read_file(const char *path, size_t max_bytes, unsigned char **buf, size_t *len)
{
    *buf = NULL;
    *len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return lc_err("%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return lc_err("%s: not a regular file", path);
    }
    if ((uint64_t)st.st_size > max_bytes) {
        close(fd);
        return lc_err("%s: file is %lld bytes, more than the %zu-byte limit", path,
                      (long long)st.st_size, max_bytes);
    }
    size_t n = (size_t)st.st_size;
    unsigned char *p = malloc(n ? n : 1);
    if (!p) {
        close(fd);
        return lc_err("%s: out of memory reading %zu bytes", path, n);
    }
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, p + got, n - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            int e = errno;
            free(p);
            close(fd);
            return lc_err("%s: read failed: %s", path, r == 0 ? "file shrank" : strerror(e));
        }
        got += (size_t)r;
    }
    close(fd);
    *buf = p;
    *len = n;
    return LC_OK;
}

const char *lc_path_ext(const char *path, char *buf, size_t n)
{
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    const char *dot = strrchr(base, '.');
    size_t i = 0;
    if (dot && dot != base && n > 0) {
        for (dot++; *dot && i + 1 < n; dot++)
            buf[i++] = (char)tolower((unsigned char)*dot);
    }
    if (n > 0)
        buf[i] = 0;
    return buf;
}
