/* SHA-256 (FIPS 180-4), for model hashes (A1111's "Model hash" is the
 * first 10 hex digits of the file's SHA-256) and provenance records. */
#ifndef LC_SHA256_H
#define LC_SHA256_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint32_t h[8];
    uint64_t len;
    uint8_t buf[64];
    size_t nbuf;
} lc_sha256;

void lc_sha256_init(lc_sha256 *s);
void lc_sha256_update(lc_sha256 *s, const void *data, size_t n);
void lc_sha256_final(lc_sha256 *s, uint8_t out[32]);
/* hex digest of a file; LC_ERR with a message if unreadable */
int lc_sha256_file(const char *path, char hex[65]);
void lc_sha256_hex(const uint8_t d[32], char hex[65]);

#endif
