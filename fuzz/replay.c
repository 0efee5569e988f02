/* Replays inputs through a fuzz target without libFuzzer: the regression
 * inputs of tests/data/fuzz/TARGET/ and the seed corpus fuzz/corpus/TARGET/
 * (make check runs this with no arguments), or the files given. An input
 * passes when the target returns; a crash or sanitizer report fails. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef LUCID_SRCDIR
#define LUCID_SRCDIR "."
#endif
#ifndef FUZZ_TARGET
#error "FUZZ_TARGET must name the target (safetensors, json, ...)"
#endif

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int replay(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        printf("not ok - cannot open %s\n", path);
        return 1;
    }
    size_t cap = 1 << 16, n = 0;
    uint8_t *buf = malloc(cap);
    size_t r;
    while (buf && (r = fread(buf + n, 1, cap - n, f)) > 0) {
        n += r;
        if (n == cap) {
            uint8_t *nb = realloc(buf, cap *= 2);
            if (!nb)
                free(buf);
            buf = nb;
        }
    }
    fclose(f);
    if (!buf) {
        printf("not ok - %s: out of memory\n", path);
        return 1;
    }
    LLVMFuzzerTestOneInput(buf, n);
    free(buf);
    printf("ok - %s\n", path);
    fflush(stdout);
    return 0;
}

static int cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* every regular file of dir, in name order; a missing dir has none */
static int replay_dir(const char *dir, int *count)
{
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    char **names = NULL;
    int n = 0, cap = 0, fail = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            char **nn = realloc(names, (size_t)cap * sizeof *nn);
            if (!nn)
                abort();
            names = nn;
        }
        names[n++] = strdup(e->d_name);
    }
    closedir(d);
    qsort(names, (size_t)n, sizeof *names, cmp);
    for (int i = 0; i < n; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        fail += replay(path);
        free(names[i]);
    }
    free(names);
    *count += n;
    return fail;
}

int main(int argc, char **argv)
{
    int fail = 0, count = 0;
    if (argc > 1) {
        for (int i = 1; i < argc; i++, count++)
            fail += replay(argv[i]);
    } else {
        fail += replay_dir(LUCID_SRCDIR "/tests/data/fuzz/" FUZZ_TARGET, &count);
        fail += replay_dir(LUCID_SRCDIR "/fuzz/corpus/" FUZZ_TARGET, &count);
        if (count == 0) {
            printf("not ok - no inputs for %s\n", FUZZ_TARGET);
            return 1;
        }
    }
    printf("%d inputs replayed through fuzz_%s, %d failed\n", count, FUZZ_TARGET, fail);
    return fail ? 1 : 0;
}
