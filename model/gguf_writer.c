/* gguf_writer.c: see gguf_writer.h. Metadata is serialised into a growing byte buffer as it is
 * added; tensor offsets are assigned at declaration, so the directory is known before any tensor
 * byte is written and the data can then stream straight to the file. */
#include "gguf_writer.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    unsigned char *data;
    size_t length, capacity;
} byte_buffer;

typedef struct {
    char *name;
    uint32_t n_dims;
    uint64_t dims[4];
    ggml_type type;
    uint64_t n_bytes, offset;
} tensor_entry;

struct gguf_writer {
    char *path;
    FILE *fp;
    byte_buffer metadata; /* serialised key/value entries */
    char **keys;
    uint64_t n_keys;
    tensor_entry *tensors;
    uint64_t n_tensors;
    uint64_t data_size;   /* total padded bytes of the data section */
    bool data_begun;      /* header written: only tensor bytes from now on */
    uint64_t current;     /* tensor being filled by write_data */
    uint64_t current_written;
    bool failed, finished;
};

static uint64_t padding_for(uint64_t n) {
    return (GGUF_WRITER_ALIGNMENT - n % GGUF_WRITER_ALIGNMENT) % GGUF_WRITER_ALIGNMENT;
}

/* Marks the writer failed so later calls refuse to run on a half-written file. */
static int writer_fail(gguf_writer *w, ramp_error *err, const char *what) {
    w->failed = true;
    return ramp_fail(err, "%s: %s", w->path, what);
}

static int check_usable(gguf_writer *w, bool want_data, ramp_error *err) {
    if (w->failed) return ramp_fail(err, "%s: an earlier write failed", w->path);
    if (w->finished) return ramp_fail(err, "%s: already finished", w->path);
    if (w->data_begun != want_data)
        return ramp_fail(err, "%s: %s", w->path, want_data ? "tensor data written before gguf_writer_begin_data"
                                                           : "metadata or tensor added after gguf_writer_begin_data");
    return 0;
}

/* ---- metadata serialisation ------------------------------------------------------------------- */

static int append(gguf_writer *w, const void *bytes, size_t n, ramp_error *err) {
    byte_buffer *b = &w->metadata;
    if (n > b->capacity - b->length) {
        size_t capacity = b->capacity ? b->capacity : 4096;
        while (n > capacity - b->length) capacity *= 2;
        unsigned char *grown = realloc(b->data, capacity);
        if (grown == NULL) return writer_fail(w, err, "out of memory for metadata");
        b->data = grown;
        b->capacity = capacity;
    }
    memcpy(b->data + b->length, bytes, n);
    b->length += n;
    return 0;
}

static int append_le(gguf_writer *w, uint64_t value, size_t n, ramp_error *err) {
    unsigned char bytes[8];
    for (size_t i = 0; i < n; i++) bytes[i] = (unsigned char)(value >> (8 * i));
    return append(w, bytes, n, err);
}

static int append_string(gguf_writer *w, const char *s, ramp_error *err) {
    size_t n = strlen(s);
    if (append_le(w, n, 8, err)) return -1;
    return append(w, s, n, err);
}

static uint32_t float_bits(float f) {
    uint32_t bits;
    memcpy(&bits, &f, sizeof bits);
    return bits;
}

/* Checks the key is new, remembers it and writes the key and value type. */
static int begin_entry(gguf_writer *w, const char *key, gguf_value_type type, ramp_error *err) {
    if (check_usable(w, false, err)) return -1;
    for (uint64_t i = 0; i < w->n_keys; i++)
        if (strcmp(w->keys[i], key) == 0) return ramp_fail(err, "%s: duplicate metadata key %s", w->path, key);
    char **keys = realloc(w->keys, (w->n_keys + 1) * sizeof *keys);
    if (keys == NULL) return writer_fail(w, err, "out of memory for metadata keys");
    w->keys = keys;
    if ((w->keys[w->n_keys] = strdup(key)) == NULL) return writer_fail(w, err, "out of memory for metadata keys");
    w->n_keys++;
    if (append_string(w, key, err)) return -1;
    return append_le(w, type, 4, err);
}

static int begin_array(gguf_writer *w, const char *key, gguf_value_type type, size_t n, ramp_error *err) {
    if (begin_entry(w, key, GGUF_VALUE_ARRAY, err) || append_le(w, type, 4, err)) return -1;
    return append_le(w, n, 8, err);
}

int gguf_writer_add_string(gguf_writer *w, const char *key, const char *value, ramp_error *err) {
    if (begin_entry(w, key, GGUF_VALUE_STRING, err)) return -1;
    return append_string(w, value, err);
}

int gguf_writer_add_u16(gguf_writer *w, const char *key, uint16_t value, ramp_error *err) {
    if (begin_entry(w, key, GGUF_VALUE_UINT16, err)) return -1;
    return append_le(w, value, 2, err);
}

int gguf_writer_add_i32(gguf_writer *w, const char *key, int32_t value, ramp_error *err) {
    if (begin_entry(w, key, GGUF_VALUE_INT32, err)) return -1;
    return append_le(w, (uint32_t)value, 4, err);
}

int gguf_writer_add_u32(gguf_writer *w, const char *key, uint32_t value, ramp_error *err) {
    if (begin_entry(w, key, GGUF_VALUE_UINT32, err)) return -1;
    return append_le(w, value, 4, err);
}

int gguf_writer_add_bool(gguf_writer *w, const char *key, bool value, ramp_error *err) {
    if (begin_entry(w, key, GGUF_VALUE_BOOL, err)) return -1;
    return append_le(w, value ? 1 : 0, 1, err);
}

int gguf_writer_add_f32(gguf_writer *w, const char *key, float value, ramp_error *err) {
    if (begin_entry(w, key, GGUF_VALUE_FLOAT32, err)) return -1;
    return append_le(w, float_bits(value), 4, err);
}

int gguf_writer_add_string_array(gguf_writer *w, const char *key, const char *const *values, size_t n,
                                 ramp_error *err) {
    if (begin_array(w, key, GGUF_VALUE_STRING, n, err)) return -1;
    for (size_t i = 0; i < n; i++)
        if (append_string(w, values[i], err)) return -1;
    return 0;
}

int gguf_writer_add_f32_array(gguf_writer *w, const char *key, const float *values, size_t n, ramp_error *err) {
    if (begin_array(w, key, GGUF_VALUE_FLOAT32, n, err)) return -1;
    for (size_t i = 0; i < n; i++)
        if (append_le(w, float_bits(values[i]), 4, err)) return -1;
    return 0;
}

int gguf_writer_add_i32_array(gguf_writer *w, const char *key, const int32_t *values, size_t n, ramp_error *err) {
    if (begin_array(w, key, GGUF_VALUE_INT32, n, err)) return -1;
    for (size_t i = 0; i < n; i++)
        if (append_le(w, (uint32_t)values[i], 4, err)) return -1;
    return 0;
}

/* ---- tensors ------------------------------------------------------------------------------------ */

/* Validates a declaration and computes its byte size. */
static int tensor_size(const gguf_writer *w, const char *name, uint32_t n_dims, const uint64_t *dims,
                       ggml_type type, uint64_t *n_bytes, ramp_error *err) {
    uint64_t block = ggml_type_block_elements(type), block_bytes = ggml_type_block_bytes(type);
    if (block == 0) return ramp_fail(err, "%s: tensor %s has unsupported type %d", w->path, name, (int)type);
    if (n_dims < 1 || n_dims > 4)
        return ramp_fail(err, "%s: tensor %s has %u dimensions, expected 1 to 4", w->path, name, n_dims);
    uint64_t n = 1;
    for (uint32_t d = 0; d < n_dims; d++) {
        if (dims[d] == 0 || n > (uint64_t)INT64_MAX / dims[d])
            return ramp_fail(err, "%s: tensor %s dimension %u is %" PRIu64 ", expected >= 1 with a total element "
                                  "count below 2^63", w->path, name, d, dims[d]);
        n *= dims[d];
    }
    if (dims[0] % block != 0)
        return ramp_fail(err, "%s: tensor %s has row length %" PRIu64 ", expected a multiple of the %s block size %"
                              PRIu64, w->path, name, dims[0], ggml_type_name(type), block);
    *n_bytes = n / block * block_bytes;
    return 0;
}

int gguf_writer_add_tensor(gguf_writer *w, const char *name, uint32_t n_dims, const uint64_t *dims, ggml_type type,
                           ramp_error *err) {
    if (check_usable(w, false, err)) return -1;
    uint64_t n_bytes = 0;
    if (tensor_size(w, name, n_dims, dims, type, &n_bytes, err)) return -1;
    for (uint64_t i = 0; i < w->n_tensors; i++)
        if (strcmp(w->tensors[i].name, name) == 0) return ramp_fail(err, "%s: duplicate tensor %s", w->path, name);
    tensor_entry *grown = realloc(w->tensors, (w->n_tensors + 1) * sizeof *grown);
    if (grown == NULL) return writer_fail(w, err, "out of memory for the tensor directory");
    w->tensors = grown;
    tensor_entry *t = &w->tensors[w->n_tensors];
    memset(t, 0, sizeof *t);
    if ((t->name = strdup(name)) == NULL) return writer_fail(w, err, "out of memory for the tensor directory");
    t->n_dims = n_dims;
    for (uint32_t d = 0; d < 4; d++) t->dims[d] = d < n_dims ? dims[d] : 1;
    t->type = type;
    t->n_bytes = n_bytes;
    t->offset = w->data_size;
    w->data_size += n_bytes + padding_for(n_bytes);
    w->n_tensors++;
    return 0;
}

/* ---- the file ------------------------------------------------------------------------------------ */

static int write_bytes(gguf_writer *w, const void *bytes, size_t n, ramp_error *err) {
    if (n > 0 && fwrite(bytes, 1, n, w->fp) != n) {
        w->failed = true;
        return ramp_fail(err, "%s: write failed: %s", w->path, strerror(errno));
    }
    return 0;
}

static int write_zeros(gguf_writer *w, uint64_t n, ramp_error *err) {
    static const unsigned char zeros[GGUF_WRITER_ALIGNMENT];
    return write_bytes(w, zeros, (size_t)n, err); /* n < alignment */
}

int gguf_writer_create(gguf_writer **out, const char *path, ramp_error *err) {
    *out = NULL;
    gguf_writer *w = calloc(1, sizeof *w);
    if (w == NULL || (w->path = strdup(path)) == NULL) {
        free(w);
        return ramp_fail(err, "%s: out of memory", path);
    }
    w->fp = fopen(path, "wb");
    if (w->fp == NULL) {
        int e = errno;
        free(w->path);
        free(w);
        return ramp_fail(err, "%s: cannot create: %s", path, strerror(e));
    }
    *out = w;
    return 0;
}

int gguf_writer_begin_data(gguf_writer *w, ramp_error *err) {
    if (check_usable(w, false, err)) return -1;
    /* The directory goes through the metadata buffer too: one code path for little-endian output. */
    for (uint64_t i = 0; i < w->n_tensors; i++) {
        const tensor_entry *t = &w->tensors[i];
        if (append_string(w, t->name, err) || append_le(w, t->n_dims, 4, err)) return -1;
        for (uint32_t d = 0; d < t->n_dims; d++)
            if (append_le(w, t->dims[d], 8, err)) return -1;
        if (append_le(w, (uint32_t)t->type, 4, err) || append_le(w, t->offset, 8, err)) return -1;
    }
    unsigned char header[24] = {'G', 'G', 'U', 'F'};
    for (int i = 0; i < 4; i++) header[4 + i] = (unsigned char)(3u >> (8 * i));
    for (int i = 0; i < 8; i++) header[8 + i] = (unsigned char)(w->n_tensors >> (8 * i));
    for (int i = 0; i < 8; i++) header[16 + i] = (unsigned char)(w->n_keys >> (8 * i));
    if (write_bytes(w, header, sizeof header, err) || write_bytes(w, w->metadata.data, w->metadata.length, err) ||
        write_zeros(w, padding_for(sizeof header + w->metadata.length), err))
        return -1;
    w->data_begun = true;
    return 0;
}

int gguf_writer_write_data(gguf_writer *w, const void *bytes, size_t n, ramp_error *err) {
    if (check_usable(w, true, err)) return -1;
    const unsigned char *p = bytes;
    while (n > 0) {
        if (w->current >= w->n_tensors)
            return writer_fail(w, err, "more tensor data written than the declared tensors hold");
        tensor_entry *t = &w->tensors[w->current];
        uint64_t left = t->n_bytes - w->current_written;
        size_t take = n < left ? n : (size_t)left;
        if (write_bytes(w, p, take, err)) return -1;
        p += take;
        n -= take;
        w->current_written += take;
        if (w->current_written == t->n_bytes) { /* tensor complete: pad to the next aligned offset */
            if (write_zeros(w, padding_for(t->n_bytes), err)) return -1;
            w->current++;
            w->current_written = 0;
        }
    }
    return 0;
}

int gguf_writer_finish(gguf_writer *w, ramp_error *err) {
    if (check_usable(w, true, err)) return -1;
    if (w->current < w->n_tensors) {
        w->failed = true;
        return ramp_fail(err, "%s: tensor %s has %" PRIu64 " of its %" PRIu64 " bytes (and %" PRIu64 " later "
                              "tensors none); every declared tensor must be written", w->path,
                         w->tensors[w->current].name, w->current_written, w->tensors[w->current].n_bytes,
                         w->n_tensors - w->current - 1);
    }
    FILE *fp = w->fp;
    w->fp = NULL;
    if (fflush(fp) != 0 || ferror(fp)) {
        int e = errno;
        fclose(fp);
        w->failed = true;
        return ramp_fail(err, "%s: write failed: %s", w->path, strerror(e));
    }
    if (fclose(fp) != 0) {
        w->failed = true;
        return ramp_fail(err, "%s: closing failed: %s", w->path, strerror(errno));
    }
    w->finished = true;
    return 0;
}

void gguf_writer_free(gguf_writer *w) {
    if (w == NULL) return;
    if (w->fp != NULL) fclose(w->fp);
    if (!w->finished) remove(w->path); /* never leave a half-written model behind */
    for (uint64_t i = 0; i < w->n_keys; i++) free(w->keys[i]);
    for (uint64_t i = 0; i < w->n_tensors; i++) free(w->tensors[i].name);
    free(w->keys);
    free(w->tensors);
    free(w->metadata.data);
    free(w->path);
    free(w);
}
