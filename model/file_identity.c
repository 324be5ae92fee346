#include "file_identity.h"

#include "gguf_split.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

enum { SAMPLE_BYTES = 1 << 20 };

static uint64_t fnv1a(uint64_t hash, const unsigned char *bytes, size_t n) {
    for (size_t i = 0; i < n; i++) hash = (hash ^ bytes[i]) * 1099511628211ull;
    return hash;
}

/* Hashes n bytes from offset into hash; returns -1 on a read error. */
static int hash_range(FILE *f, long offset, size_t n, unsigned char *buffer, uint64_t *hash) {
    if (fseek(f, offset, SEEK_SET)) return -1;
    if (fread(buffer, 1, n, f) != n) return -1;
    *hash = fnv1a(*hash, buffer, n);
    return 0;
}

/* Adds one file's size and the hash of its first and last MiB to *out. */
static int add_file(const char *path, file_identity *out, ramp_error *err) {
    struct stat st;
    if (stat(path, &st)) return ramp_fail(err, "%s: %s", path, strerror(errno));
    if (S_ISDIR(st.st_mode)) return ramp_fail(err, "%s: is a directory, expected a model file", path);
    FILE *f = fopen(path, "rb");
    if (!f) return ramp_fail(err, "%s: %s", path, strerror(errno));
    unsigned char *buffer = malloc(SAMPLE_BYTES);
    if (!buffer) {
        fclose(f);
        return ramp_fail(err, "out of memory");
    }
    uint64_t size = (uint64_t)st.st_size, hash = out->checksum;
    size_t head = size < SAMPLE_BYTES ? (size_t)size : SAMPLE_BYTES;
    int status = hash_range(f, 0, head, buffer, &hash);
    if (!status && size > SAMPLE_BYTES)
        status = hash_range(f, (long)(size - (size - head < SAMPLE_BYTES ? size - head : SAMPLE_BYTES)),
                            size - head < SAMPLE_BYTES ? (size_t)(size - head) : SAMPLE_BYTES, buffer, &hash);
    free(buffer);
    fclose(f);
    if (status) return ramp_fail(err, "%s: read error while fingerprinting the file", path);
    out->bytes += size;
    out->checksum = hash;
    return 0;
}

int file_identity_read(const char *path, file_identity *out, ramp_error *err) {
    *out = (file_identity){.bytes = 0, .checksum = 14695981039346656037ull};
    if (add_file(path, out, err)) return -1;
    /* The first part of a split model stands for all of them: the others are read by name. */
    gguf_split_name name;
    if (!gguf_split_name_parse(path, &name) || name.part != 1) return 0;
    for (uint32_t part = 2; part <= name.count; part++) {
        char *other = gguf_split_part_path(path, name.prefix_length, part, name.count);
        if (other == NULL) return ramp_fail(err, "%s: out of memory", path);
        int rc = add_file(other, out, err);
        free(other);
        if (rc) return ramp_fail_prefix(err, "%s: part %u of %u of this split model: ", path, part, name.count);
    }
    return 0;
}
