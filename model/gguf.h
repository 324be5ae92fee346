/* gguf.h: read-only access to a GGUF file (versions 2 and 3), memory-mapped.
 *
 * gguf_open maps the whole file, parses the header, every metadata key/value and the tensor
 * directory, and validates all of it against the file size before returning: every string and
 * array lies inside the mapping, every tensor has a known type, 1..4 dimensions, a byte size that
 * does not overflow, an offset that respects the alignment, and data that ends inside the file.
 * After a successful open nothing here can read past the mapping.
 *
 * Ownership: the gguf_file owns the mapping and every table below; strings of type gguf_string
 * point into the mapping (not NUL-terminated) and live until gguf_close. Keys and tensor names are
 * copied into owned NUL-terminated strings. Numbers in the file are little-endian.
 */
#ifndef RAMP_GGUF_H
#define RAMP_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"

typedef enum {
    GGUF_VALUE_UINT8 = 0,
    GGUF_VALUE_INT8 = 1,
    GGUF_VALUE_UINT16 = 2,
    GGUF_VALUE_INT16 = 3,
    GGUF_VALUE_UINT32 = 4,
    GGUF_VALUE_INT32 = 5,
    GGUF_VALUE_FLOAT32 = 6,
    GGUF_VALUE_BOOL = 7,
    GGUF_VALUE_STRING = 8,
    GGUF_VALUE_ARRAY = 9,
    GGUF_VALUE_UINT64 = 10,
    GGUF_VALUE_INT64 = 11,
    GGUF_VALUE_FLOAT64 = 12,
} gguf_value_type;

/* Tensor element types (numbering from ggml). Every type listed here parses (its block size is
 * known, so sizes and offsets are checked); which of them ramp can compute with is
 * ggml_type_is_supported. Numbers not listed fail at open with "unknown type N". */
typedef enum {
    GGML_TYPE_F32 = 0,
    GGML_TYPE_F16 = 1,
    GGML_TYPE_Q4_0 = 2,
    GGML_TYPE_Q4_1 = 3,
    GGML_TYPE_Q5_0 = 6,
    GGML_TYPE_Q5_1 = 7,
    GGML_TYPE_Q8_0 = 8,
    GGML_TYPE_Q8_1 = 9,
    GGML_TYPE_Q2_K = 10,
    GGML_TYPE_Q3_K = 11,
    GGML_TYPE_Q4_K = 12,
    GGML_TYPE_Q5_K = 13,
    GGML_TYPE_Q6_K = 14,
    GGML_TYPE_Q8_K = 15,
    GGML_TYPE_IQ2_XXS = 16,
    GGML_TYPE_IQ2_XS = 17,
    GGML_TYPE_IQ3_XXS = 18,
    GGML_TYPE_IQ1_S = 19,
    GGML_TYPE_IQ4_NL = 20,
    GGML_TYPE_IQ3_S = 21,
    GGML_TYPE_IQ2_S = 22,
    GGML_TYPE_IQ4_XS = 23,
    GGML_TYPE_I8 = 24,
    GGML_TYPE_I16 = 25,
    GGML_TYPE_I32 = 26,
    GGML_TYPE_I64 = 27,
    GGML_TYPE_F64 = 28,
    GGML_TYPE_IQ1_M = 29,
    GGML_TYPE_BF16 = 30,
    GGML_TYPE_TQ1_0 = 34,
    GGML_TYPE_TQ2_0 = 35,
    GGML_TYPE_MXFP4 = 39,
    GGML_TYPE_NVFP4 = 40,
    GGML_TYPE_Q1_0 = 41,
} ggml_type;

typedef struct {
    const char *data; /* into the mapping; not NUL-terminated */
    uint64_t length;
} gguf_string;

typedef struct {
    char *key; /* owned, NUL-terminated */
    gguf_value_type type;
    union {
        uint64_t u;    /* UINT8..UINT64 */
        int64_t i;     /* INT8..INT64 */
        double f;      /* FLOAT32, FLOAT64 */
        bool b;        /* BOOL */
        gguf_string s; /* STRING */
    } value;
    /* When type == GGUF_VALUE_ARRAY: */
    gguf_value_type array_type;
    uint64_t array_length;
    const void *array_data;      /* raw little-endian elements in the mapping (numeric arrays) */
    gguf_string *array_strings;  /* owned table of array_length strings (string arrays), else NULL */
} gguf_kv;

typedef struct {
    char *name; /* owned, NUL-terminated */
    uint32_t n_dims;
    uint64_t dims[4]; /* dims[0] is the fastest-varying (row length); unused dims are 1 */
    ggml_type type;
    uint64_t offset;     /* relative to the start of the data section */
    uint64_t n_elements;
    uint64_t n_bytes;
    const void *data; /* into the mapping */
} gguf_tensor;

typedef struct gguf_file {
    char *path; /* owned copy, used in messages */
    void *map;
    size_t map_size;
    bool owns_map; /* true when gguf_open mapped the file (gguf_close unmaps it); false for
                      gguf_open_buffer, whose buffer belongs to the caller */
    uint32_t version;
    uint64_t alignment;
    uint64_t n_kvs;
    gguf_kv *kvs;
    uint64_t n_tensors;
    gguf_tensor *tensors;
    uint64_t data_offset; /* file offset of the tensor data section */
    /* A model split over several files (gguf_split.h): this is its first part, which holds every
     * metadata key, and these are the others. Their tensors are in `tensors` above too (each
     * tensor's offset and data belong to the part it is in); they are closed with this file.
     * NULL and 0 for a model in one file. */
    struct gguf_file *other_parts;
    uint32_t n_other_parts;
} gguf_file;

/* Opens and validates path. When path is the first part of a split model, the other parts are
 * opened and validated too (gguf_split.h), and their tensors join this file's. On failure *file is
 * left closed (nothing to free). */
int gguf_open(gguf_file *file, const char *path, ramp_error *err);
/* The same for path on its own: a part of a split model without the others. */
int gguf_open_single(gguf_file *file, const char *path, ramp_error *err);
/* gguf_open_single's checks on a caller-owned buffer (not copied; must outlive the gguf_file).
 * Used by tests and fuzzers. path is only used in messages. */
int gguf_open_buffer(gguf_file *file, const void *data, size_t size, const char *path, ramp_error *err);
void gguf_close(gguf_file *file);

const gguf_kv *gguf_find(const gguf_file *file, const char *key);
/* Fails naming the first tensor name that occurs twice in file->tensors. */
int gguf_reject_duplicate_tensors(const gguf_file *file, ramp_error *err);
const gguf_tensor *gguf_find_tensor(const gguf_file *file, const char *name);

/* Typed getters: fail with a message naming the file and key when the key is missing, has the
 * wrong type, or is out of range. Any integer type is accepted for the integer getters. */
int gguf_get_u32(const gguf_file *file, const char *key, uint32_t *out, ramp_error *err);
int gguf_get_f32(const gguf_file *file, const char *key, float *out, ramp_error *err);
int gguf_get_string(const gguf_file *file, const char *key, gguf_string *out, ramp_error *err);
/* Element i of a numeric array as a float / int64 (converted from the stored type), i < array_length. */
float gguf_array_f32(const gguf_kv *kv, uint64_t i);
int64_t gguf_array_i64(const gguf_kv *kv, uint64_t i);
bool gguf_string_equals(gguf_string s, const char *text);

/* Elements per block and bytes per block of a tensor type; 0 for unknown types. */
uint64_t ggml_type_block_elements(ggml_type type);
uint64_t ggml_type_block_bytes(ggml_type type);
/* ggml's own name of the type ("f32", "q4_0", "q6_K", "iq2_xxs", ...), as llama.cpp's tools print
 * it; "unknown" for numbers not listed above. */
const char *ggml_type_name(ggml_type type);
/* True for the types ramp's kernels compute with: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0,
 * Q2_K, Q3_K, Q4_K, Q5_K, Q6_K. Tensors of other types load only if nothing needs them. */
bool ggml_type_is_supported(ggml_type type);

#endif
