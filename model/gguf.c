/* gguf.c: the GGUF reader (contract in gguf.h).
 *
 * Parsing is one forward pass over the bytes with a cursor (`reader`) that refuses to move past
 * the end. Every count read from the file is compared with the bytes that remain before anything
 * is allocated for it, so a corrupt count (say 2^60 entries) fails with a message instead of a
 * huge allocation. Layout of a file:
 *
 *   "GGUF" | u32 version | u64 tensor_count | u64 kv_count
 *   kv_count x   { string key | u32 value type | value }
 *   tensor_count x { string name | u32 n_dims | u64 dims[n_dims] | u32 type | u64 offset }
 *   padding to general.alignment | tensor data (offsets are relative to here)
 *
 * A string is a u64 length and that many bytes; an array value is a u32 element type, a u64 count
 * and the elements. All numbers are little-endian.
 */
#include "gguf.h"
#include "gguf_split.h"
#include "weight_pages.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define DEFAULT_ALIGNMENT 32
/* The smallest possible encodings, used to bound counts before allocating. */
#define MIN_STRING_BYTES 8  /* the length field of an empty string */
#define MIN_KV_BYTES 13     /* empty key (8) + value type (4) + a 1-byte value */
#define MIN_TENSOR_BYTES 32 /* empty name (8) + n_dims (4) + one dim (8) + type (4) + offset (8) */

/* ---- tensor and value types ---------------------------------------------------------------- */

typedef struct {
    uint32_t type;
    const char *name;
    uint64_t block_elements, block_bytes;
    bool supported; /* ramp computes with it */
} type_info;

/* Block sizes as in ggml-common.h: e.g. Q4_K is 256 values in 144 bytes (fp16 d and dmin, 12
 * bytes of 6-bit scales and mins, 128 bytes of nibbles). */
static const type_info TENSOR_TYPES[] = {
    {GGML_TYPE_F32, "f32", 1, 4, true},           {GGML_TYPE_F16, "f16", 1, 2, true},
    {GGML_TYPE_Q4_0, "q4_0", 32, 18, true},       {GGML_TYPE_Q4_1, "q4_1", 32, 20, true},
    {GGML_TYPE_Q5_0, "q5_0", 32, 22, true},       {GGML_TYPE_Q5_1, "q5_1", 32, 24, true},
    {GGML_TYPE_Q8_0, "q8_0", 32, 34, true},       {GGML_TYPE_Q8_1, "q8_1", 32, 36, false},
    {GGML_TYPE_Q2_K, "q2_K", 256, 84, true},      {GGML_TYPE_Q3_K, "q3_K", 256, 110, true},
    {GGML_TYPE_Q4_K, "q4_K", 256, 144, true},     {GGML_TYPE_Q5_K, "q5_K", 256, 176, true},
    {GGML_TYPE_Q6_K, "q6_K", 256, 210, true},     {GGML_TYPE_Q8_K, "q8_K", 256, 292, false},
    {GGML_TYPE_IQ2_XXS, "iq2_xxs", 256, 66, false}, {GGML_TYPE_IQ2_XS, "iq2_xs", 256, 74, false},
    {GGML_TYPE_IQ3_XXS, "iq3_xxs", 256, 98, false}, {GGML_TYPE_IQ1_S, "iq1_s", 256, 50, false},
    {GGML_TYPE_IQ4_NL, "iq4_nl", 32, 18, true},  {GGML_TYPE_IQ3_S, "iq3_s", 256, 110, false},
    {GGML_TYPE_IQ2_S, "iq2_s", 256, 82, false},   {GGML_TYPE_IQ4_XS, "iq4_xs", 256, 136, true},
    {GGML_TYPE_I8, "i8", 1, 1, false},            {GGML_TYPE_I16, "i16", 1, 2, false},
    {GGML_TYPE_I32, "i32", 1, 4, false},          {GGML_TYPE_I64, "i64", 1, 8, false},
    {GGML_TYPE_F64, "f64", 1, 8, false},          {GGML_TYPE_IQ1_M, "iq1_m", 256, 56, false},
    {GGML_TYPE_BF16, "bf16", 1, 2, true},         {GGML_TYPE_TQ1_0, "tq1_0", 256, 54, false},
    {GGML_TYPE_TQ2_0, "tq2_0", 256, 66, false},   {GGML_TYPE_MXFP4, "mxfp4", 32, 17, false},
    {GGML_TYPE_NVFP4, "nvfp4", 64, 36, false},    {GGML_TYPE_Q1_0, "q1_0", 128, 18, false},
};

/* Takes a raw uint32 so unknown numbers from a file never have to pass through the enum. */
static const type_info *find_type(uint32_t type) {
    for (size_t i = 0; i < sizeof TENSOR_TYPES / sizeof TENSOR_TYPES[0]; i++)
        if (TENSOR_TYPES[i].type == type) return &TENSOR_TYPES[i];
    return NULL;
}

uint64_t ggml_type_block_elements(ggml_type type) {
    const type_info *info = find_type(type);
    return info ? info->block_elements : 0;
}

uint64_t ggml_type_block_bytes(ggml_type type) {
    const type_info *info = find_type(type);
    return info ? info->block_bytes : 0;
}

const char *ggml_type_name(ggml_type type) {
    const type_info *info = find_type(type);
    return info ? info->name : "unknown";
}

bool ggml_type_is_supported(ggml_type type) {
    const type_info *info = find_type(type);
    return info && info->supported;
}

static const char *value_type_name(uint32_t type) {
    static const char *const names[] = {"uint8", "int8",   "uint16", "int16", "uint32", "int32",  "float32",
                                        "bool",  "string", "array",  "uint64", "int64", "float64"};
    return type < sizeof names / sizeof names[0] ? names[type] : "unknown";
}

/* Bytes of one scalar value; 0 for strings, arrays and unknown types (no fixed size). */
static size_t value_size(uint32_t type) {
    switch (type) {
    case GGUF_VALUE_UINT8: case GGUF_VALUE_INT8: case GGUF_VALUE_BOOL: return 1;
    case GGUF_VALUE_UINT16: case GGUF_VALUE_INT16: return 2;
    case GGUF_VALUE_UINT32: case GGUF_VALUE_INT32: case GGUF_VALUE_FLOAT32: return 4;
    case GGUF_VALUE_UINT64: case GGUF_VALUE_INT64: case GGUF_VALUE_FLOAT64: return 8;
    default: return 0;
    }
}

static uint64_t load_le(const unsigned char *p, size_t n) {
    uint64_t v = 0;
    for (size_t i = n; i-- > 0;) v = (v << 8) | p[i];
    return v;
}

/* Decodes one scalar of kv->type at p into kv->value. */
static void decode_scalar(gguf_kv *kv, const unsigned char *p) {
    uint64_t raw = load_le(p, value_size(kv->type));
    switch (kv->type) {
    case GGUF_VALUE_UINT8: case GGUF_VALUE_UINT16: case GGUF_VALUE_UINT32: case GGUF_VALUE_UINT64:
        kv->value.u = raw;
        break;
    case GGUF_VALUE_INT8: kv->value.i = (int8_t)raw; break;
    case GGUF_VALUE_INT16: kv->value.i = (int16_t)raw; break;
    case GGUF_VALUE_INT32: kv->value.i = (int32_t)raw; break;
    case GGUF_VALUE_INT64: kv->value.i = (int64_t)raw; break;
    case GGUF_VALUE_FLOAT32: {
        uint32_t bits = (uint32_t)raw;
        float f;
        memcpy(&f, &bits, sizeof f);
        kv->value.f = f;
        break;
    }
    case GGUF_VALUE_FLOAT64: memcpy(&kv->value.f, &raw, sizeof kv->value.f); break;
    case GGUF_VALUE_BOOL: kv->value.b = raw != 0; break;
    default: break;
    }
}

static bool is_unsigned(gguf_value_type t) {
    return t == GGUF_VALUE_UINT8 || t == GGUF_VALUE_UINT16 || t == GGUF_VALUE_UINT32 || t == GGUF_VALUE_UINT64;
}

static bool is_signed(gguf_value_type t) {
    return t == GGUF_VALUE_INT8 || t == GGUF_VALUE_INT16 || t == GGUF_VALUE_INT32 || t == GGUF_VALUE_INT64;
}

/* ---- the cursor ------------------------------------------------------------------------------ */

#define NO_INDEX UINT64_MAX

/* What is being read is recorded as plain fields and only formatted when something fails:
 * formatting it for each of 50000 vocabulary strings would cost more than the parse itself. */
typedef struct {
    const unsigned char *data;
    size_t size, pos;
    const char *path;
    const char *field; /* "the key of metadata entry", "the type of tensor", ... */
    const char *name;  /* the key or tensor name, or NULL */
    uint64_t index;    /* entry number or array element, or NO_INDEX */
} reader;

static void at(reader *r, const char *field, const char *name, uint64_t index) {
    r->field = field;
    r->name = name;
    r->index = index;
}

/* "the value of metadata key K (element 7)", "the name of tensor 3", "the header", ... */
static const char *what(const reader *r, char *buf, size_t size) {
    if (r->name != NULL && r->index != NO_INDEX)
        snprintf(buf, size, "%s %s (element %" PRIu64 ")", r->field, r->name, r->index);
    else if (r->name != NULL)
        snprintf(buf, size, "%s %s", r->field, r->name);
    else if (r->index != NO_INDEX)
        snprintf(buf, size, "%s %" PRIu64, r->field, r->index);
    else
        snprintf(buf, size, "%s", r->field);
    return buf;
}

static size_t remaining(const reader *r) { return r->size - r->pos; }

static int read_uint(reader *r, size_t n, uint64_t *out, ramp_error *err) {
    char buf[512];
    *out = 0; /* defined even on failure (and the compiler cannot see that ramp_fail returns -1) */
    if (n > remaining(r))
        return ramp_fail(err, "%s: truncated at byte %zu while reading %s (file is %zu bytes)", r->path, r->size,
                         what(r, buf, sizeof buf), r->size);
    *out = load_le(r->data + r->pos, n);
    r->pos += n;
    return 0;
}

static int read_u32(reader *r, uint32_t *out, ramp_error *err) {
    uint64_t v;
    if (read_uint(r, 4, &v, err)) return -1;
    *out = (uint32_t)v;
    return 0;
}

static int read_u64(reader *r, uint64_t *out, ramp_error *err) { return read_uint(r, 8, out, err); }

/* A string that stays in the mapping. */
static int read_string(reader *r, gguf_string *out, ramp_error *err) {
    uint64_t length;
    char buf[512];
    *out = (gguf_string){NULL, 0};
    if (read_u64(r, &length, err)) return -1;
    if (length > remaining(r))
        return ramp_fail(err, "%s: %s claims %" PRIu64 " bytes at byte %zu but only %zu remain (file is %zu bytes)",
                         r->path, what(r, buf, sizeof buf), length, r->pos, remaining(r), r->size);
    out->data = (const char *)r->data + r->pos;
    out->length = length;
    r->pos += length;
    return 0;
}

/* A key or tensor name, copied and NUL-terminated. An embedded NUL would make two different names
 * look equal to strcmp, so it is rejected. */
static int read_owned_string(reader *r, char **out, ramp_error *err) {
    gguf_string s;
    char buf[512];
    if (read_string(r, &s, err)) return -1;
    if (memchr(s.data, 0, s.length) != NULL)
        return ramp_fail(err, "%s: %s contains a NUL byte", r->path, what(r, buf, sizeof buf));
    *out = malloc(s.length + 1);
    if (*out == NULL) return ramp_fail(err, "%s: out of memory reading %s", r->path, what(r, buf, sizeof buf));
    memcpy(*out, s.data, s.length);
    (*out)[s.length] = '\0';
    return 0;
}

/* ---- header and metadata --------------------------------------------------------------------- */

static int parse_header(reader *r, gguf_file *f, ramp_error *err) {
    at(r, "the header", NULL, NO_INDEX);
    uint64_t magic;
    if (read_uint(r, 4, &magic, err)) return -1;
    if (memcmp(r->data, "GGUF", 4) != 0)
        return ramp_fail(err, "%s: not a GGUF file (starts with bytes %02x %02x %02x %02x, expected \"GGUF\")",
                         r->path, r->data[0], r->data[1], r->data[2], r->data[3]);
    if (read_u32(r, &f->version, err)) return -1;
    uint32_t swapped = __builtin_bswap32(f->version);
    if (f->version == 1)
        return ramp_fail(err, "%s: GGUF version 1 is not supported (expected version 2 or 3; reconvert the model "
                              "with a current llama.cpp)", r->path);
    if (swapped >= 1 && swapped <= 3)
        return ramp_fail(err, "%s: big-endian GGUF file (version field reads 0x%08x, i.e. version %u byte-swapped); "
                              "only little-endian files are supported", r->path, f->version, swapped);
    if (f->version != 2 && f->version != 3)
        return ramp_fail(err, "%s: unsupported GGUF version %u, expected 2 or 3", r->path, f->version);
    at(r, "the tensor count in the header", NULL, NO_INDEX);
    if (read_u64(r, &f->n_tensors, err)) return -1;
    at(r, "the metadata count in the header", NULL, NO_INDEX);
    return read_u64(r, &f->n_kvs, err);
}

static int parse_string_array(reader *r, gguf_kv *kv, ramp_error *err) {
    if (kv->array_length > remaining(r) / MIN_STRING_BYTES)
        return ramp_fail(err, "%s: metadata key %s claims %" PRIu64 " strings at byte %zu but only %zu bytes remain "
                              "(file is %zu bytes)", r->path, kv->key, kv->array_length, r->pos, remaining(r), r->size);
    kv->array_strings = calloc(kv->array_length ? kv->array_length : 1, sizeof *kv->array_strings);
    if (kv->array_strings == NULL) return ramp_fail(err, "%s: out of memory for metadata key %s", r->path, kv->key);
    for (uint64_t i = 0; i < kv->array_length; i++) {
        at(r, "the value of metadata key", kv->key, i);
        if (read_string(r, &kv->array_strings[i], err)) return -1;
    }
    return 0;
}

static int parse_array(reader *r, gguf_kv *kv, ramp_error *err) {
    uint32_t type;
    if (read_u32(r, &type, err) || read_u64(r, &kv->array_length, err)) return -1;
    if (type == GGUF_VALUE_ARRAY)
        return ramp_fail(err, "%s: metadata key %s is an array of arrays, which is not supported", r->path, kv->key);
    if (type == GGUF_VALUE_STRING) {
        kv->array_type = GGUF_VALUE_STRING;
        return parse_string_array(r, kv, err);
    }
    size_t size = value_size(type);
    if (size == 0)
        return ramp_fail(err, "%s: metadata key %s is an array of unknown element type %u", r->path, kv->key, type);
    kv->array_type = (gguf_value_type)type;
    if (kv->array_length > remaining(r) / size)
        return ramp_fail(err, "%s: metadata key %s claims %" PRIu64 " %s elements at byte %zu but only %zu bytes "
                              "remain (file is %zu bytes)", r->path, kv->key, kv->array_length, value_type_name(type),
                         r->pos, remaining(r), r->size);
    kv->array_data = r->data + r->pos;
    r->pos += kv->array_length * size;
    return 0;
}

static int parse_kv(reader *r, gguf_kv *kv, uint64_t index, ramp_error *err) {
    at(r, "the key of metadata entry", NULL, index);
    if (read_owned_string(r, &kv->key, err)) return -1;
    at(r, "the value of metadata key", kv->key, NO_INDEX);
    uint32_t type;
    if (read_u32(r, &type, err)) return -1;
    if (type == GGUF_VALUE_STRING || type == GGUF_VALUE_ARRAY) {
        kv->type = (gguf_value_type)type;
        return type == GGUF_VALUE_STRING ? read_string(r, &kv->value.s, err) : parse_array(r, kv, err);
    }
    size_t size = value_size(type);
    if (size == 0) return ramp_fail(err, "%s: metadata key %s has unknown value type %u", r->path, kv->key, type);
    kv->type = (gguf_value_type)type;
    const unsigned char *value = r->data + r->pos;
    uint64_t raw;
    if (read_uint(r, size, &raw, err)) return -1; /* bounds check and advance */
    decode_scalar(kv, value);
    return 0;
}

static int parse_metadata(reader *r, gguf_file *f, ramp_error *err) {
    if (f->n_kvs > remaining(r) / MIN_KV_BYTES)
        return ramp_fail(err, "%s: header claims %" PRIu64 " metadata entries but only %zu bytes follow (each needs "
                              "at least %d)", r->path, f->n_kvs, remaining(r), MIN_KV_BYTES);
    f->kvs = calloc(f->n_kvs ? f->n_kvs : 1, sizeof *f->kvs);
    if (f->kvs == NULL) return ramp_fail(err, "%s: out of memory for %" PRIu64 " metadata entries", r->path, f->n_kvs);
    for (uint64_t i = 0; i < f->n_kvs; i++)
        if (parse_kv(r, &f->kvs[i], i, err)) return -1;
    return 0;
}

static int compare_names(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Fails on a name that occurs twice. Sorting a scratch array of borrowed pointers keeps this
 * O(n log n) even for a crafted file with a million entries. */
static int reject_duplicate_names(const gguf_file *f, bool tensors, ramp_error *err) {
    uint64_t n = tensors ? f->n_tensors : f->n_kvs;
    char **names = malloc((n ? n : 1) * sizeof *names);
    if (names == NULL) return ramp_fail(err, "%s: out of memory checking for duplicate names", f->path);
    for (uint64_t i = 0; i < n; i++) names[i] = tensors ? f->tensors[i].name : f->kvs[i].key;
    qsort(names, n, sizeof *names, compare_names);
    int rc = 0;
    for (uint64_t i = 1; i < n && rc == 0; i++)
        if (strcmp(names[i - 1], names[i]) == 0)
            rc = ramp_fail(err, "%s: duplicate %s %s", f->path, tensors ? "tensor name" : "metadata key", names[i]);
    free(names);
    return rc;
}

int gguf_reject_duplicate_tensors(const gguf_file *file, ramp_error *err) {
    return reject_duplicate_names(file, true, err);
}

static int read_alignment(gguf_file *f, ramp_error *err) {
    f->alignment = DEFAULT_ALIGNMENT;
    if (gguf_find(f, "general.alignment") == NULL) return 0;
    uint32_t alignment;
    if (gguf_get_u32(f, "general.alignment", &alignment, err)) return -1;
    if (alignment == 0 || (alignment & (alignment - 1)) != 0)
        return ramp_fail(err, "%s: general.alignment is %u, expected a power of two", f->path, alignment);
    f->alignment = alignment;
    return 0;
}

/* ---- tensor directory ------------------------------------------------------------------------ */

static const char *shape_text(const gguf_tensor *t, char *buf, size_t size) {
    size_t used = 0;
    buf[0] = '\0';
    for (uint32_t d = 0; d < t->n_dims && used < size; d++)
        used += (size_t)snprintf(buf + used, size - used, d ? "x%" PRIu64 : "%" PRIu64, t->dims[d]);
    return buf;
}

/* Checks the type and shape and computes n_elements and n_bytes without overflow. */
static int size_tensor(const char *path, gguf_tensor *t, uint32_t type, ramp_error *err) {
    const type_info *info = find_type(type);
    if (info == NULL)
        return ramp_fail(err, "%s: tensor %s has unknown type %u (not a ggml tensor type this reader knows)", path,
                         t->name, type);
    t->type = (ggml_type)type;
    char shape[128];
    uint64_t n = 1;
    for (uint32_t d = 0; d < t->n_dims; d++) {
        if (t->dims[d] == 0)
            return ramp_fail(err, "%s: tensor %s has shape %s, expected every dimension >= 1", path, t->name,
                             shape_text(t, shape, sizeof shape));
        if (n > (uint64_t)INT64_MAX / t->dims[d])
            return ramp_fail(err, "%s: tensor %s has shape %s, whose element count overflows", path, t->name,
                             shape_text(t, shape, sizeof shape));
        n *= t->dims[d];
    }
    if (t->dims[0] % info->block_elements != 0)
        return ramp_fail(err, "%s: tensor %s has row length %" PRIu64 ", expected a multiple of the %s block size %"
                              PRIu64, path, t->name, t->dims[0], info->name, info->block_elements);
    uint64_t blocks = n / info->block_elements;
    if (blocks > UINT64_MAX / info->block_bytes)
        return ramp_fail(err, "%s: tensor %s has shape %s, whose byte size overflows", path, t->name,
                         shape_text(t, shape, sizeof shape));
    t->n_elements = n;
    t->n_bytes = blocks * info->block_bytes;
    return 0;
}

static int parse_tensor_info(reader *r, gguf_tensor *t, uint64_t index, ramp_error *err) {
    at(r, "the name of tensor", NULL, index);
    if (read_owned_string(r, &t->name, err)) return -1;
    at(r, "the dimension count of tensor", t->name, NO_INDEX);
    if (read_u32(r, &t->n_dims, err)) return -1;
    if (t->n_dims < 1 || t->n_dims > 4)
        return ramp_fail(err, "%s: tensor %s has %u dimensions, expected 1 to 4", r->path, t->name, t->n_dims);
    at(r, "the dimensions of tensor", t->name, NO_INDEX);
    for (uint32_t d = 0; d < 4; d++) t->dims[d] = 1;
    for (uint32_t d = 0; d < t->n_dims; d++)
        if (read_u64(r, &t->dims[d], err)) return -1;
    at(r, "the type of tensor", t->name, NO_INDEX);
    uint32_t type;
    if (read_u32(r, &type, err)) return -1;
    at(r, "the data offset of tensor", t->name, NO_INDEX);
    if (read_u64(r, &t->offset, err)) return -1;
    return size_tensor(r->path, t, type, err);
}

static int parse_tensor_directory(reader *r, gguf_file *f, ramp_error *err) {
    if (f->n_tensors > remaining(r) / MIN_TENSOR_BYTES)
        return ramp_fail(err, "%s: header claims %" PRIu64 " tensors but only %zu bytes remain for the tensor "
                              "directory at byte %zu (each entry needs at least %d)", r->path, f->n_tensors,
                         remaining(r), r->pos, MIN_TENSOR_BYTES);
    f->tensors = calloc(f->n_tensors ? f->n_tensors : 1, sizeof *f->tensors);
    if (f->tensors == NULL) return ramp_fail(err, "%s: out of memory for %" PRIu64 " tensors", r->path, f->n_tensors);
    for (uint64_t i = 0; i < f->n_tensors; i++)
        if (parse_tensor_info(r, &f->tensors[i], i, err)) return -1;
    return 0;
}

/* The data section starts at the end of the directory rounded up to the alignment; every tensor
 * must start on an aligned offset inside it and end inside the file. */
static int locate_tensor_data(const reader *r, gguf_file *f, ramp_error *err) {
    uint64_t pad = (f->alignment - r->pos % f->alignment) % f->alignment;
    f->data_offset = r->pos + pad; /* pos <= size and alignment <= 2^31: no overflow */
    uint64_t available = f->data_offset <= f->map_size ? f->map_size - f->data_offset : 0;
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        gguf_tensor *t = &f->tensors[i];
        if (t->offset % f->alignment != 0)
            return ramp_fail(err, "%s: tensor %s has data offset %" PRIu64 ", expected a multiple of the alignment %"
                                  PRIu64, f->path, t->name, t->offset, f->alignment);
        if (t->offset > available || t->n_bytes > available - t->offset)
            return ramp_fail(err, "%s: tensor %s needs %" PRIu64 " bytes at data offset %" PRIu64 " (data section "
                                  "starts at byte %" PRIu64 ") but the file is only %zu bytes", f->path, t->name,
                             t->n_bytes, t->offset, f->data_offset, f->map_size);
        t->data = (const unsigned char *)f->map + f->data_offset + t->offset;
    }
    return 0;
}

/* ---- open and close -------------------------------------------------------------------------- */

static int parse(gguf_file *f, ramp_error *err) {
    reader r = {.data = f->map, .size = f->map_size, .path = f->path};
    if (parse_header(&r, f, err) || parse_metadata(&r, f, err) || reject_duplicate_names(f, false, err) ||
        read_alignment(f, err) || parse_tensor_directory(&r, f, err) || reject_duplicate_names(f, true, err))
        return -1;
    return locate_tensor_data(&r, f, err);
}

/* Shared tail of both open functions: f->path/map/map_size are set. Cleans up on failure. */
static int parse_or_close(gguf_file *f, ramp_error *err) {
    if (parse(f, err) == 0) return 0;
    gguf_close(f);
    return -1;
}

int gguf_open_buffer(gguf_file *file, const void *data, size_t size, const char *path, ramp_error *err) {
    memset(file, 0, sizeof *file);
    file->path = strdup(path ? path : "<buffer>");
    if (file->path == NULL) return ramp_fail(err, "%s: out of memory", path ? path : "<buffer>");
    if (data == NULL && size > 0) {
        gguf_close(file);
        return ramp_fail(err, "%s: buffer is NULL but its size is %zu", path ? path : "<buffer>", size);
    }
    file->map = (void *)data; /* never written: the parser only reads */
    file->map_size = size;
    return parse_or_close(file, err);
}

int gguf_open(gguf_file *file, const char *path, ramp_error *err) {
    if (gguf_open_single(file, path, err)) return -1;
    if (gguf_split_open_parts(file, err) == 0) return 0;
    gguf_close(file);
    return -1;
}

int gguf_open_single(gguf_file *file, const char *path, ramp_error *err) {
    memset(file, 0, sizeof *file);
    struct stat st;
    /* stat before open: opening a FIFO for reading would block. */
    if (stat(path, &st) != 0) return ramp_fail(err, "%s: cannot open: %s", path, strerror(errno));
    if (S_ISDIR(st.st_mode)) return ramp_fail(err, "%s: is a directory, expected a GGUF file", path);
    if (!S_ISREG(st.st_mode)) return ramp_fail(err, "%s: is not a regular file, expected a GGUF file", path);
    if (st.st_size == 0) return ramp_fail(err, "%s: file is empty (0 bytes), expected a GGUF file", path);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return ramp_fail(err, "%s: cannot open: %s", path, strerror(errno));
    size_t size = (size_t)st.st_size;
    void *map = weight_pages_map(fd, size);
    int map_errno = errno;
    close(fd); /* the mapping keeps the file alive */
    if (map == MAP_FAILED) return ramp_fail(err, "%s: cannot map %zu bytes: %s", path, size, strerror(map_errno));
    file->path = strdup(path);
    file->map = map;
    file->map_size = size;
    file->owns_map = true;
    if (file->path == NULL) {
        gguf_close(file);
        return ramp_fail(err, "%s: out of memory", path);
    }
    return parse_or_close(file, err);
}

void gguf_close(gguf_file *file) {
    for (uint32_t i = 0; i < file->n_other_parts; i++) gguf_close(&file->other_parts[i]);
    free(file->other_parts);
    if (file->kvs != NULL)
        for (uint64_t i = 0; i < file->n_kvs; i++) {
            free(file->kvs[i].key);
            free(file->kvs[i].array_strings);
        }
    if (file->tensors != NULL)
        for (uint64_t i = 0; i < file->n_tensors; i++) free(file->tensors[i].name);
    free(file->kvs);
    free(file->tensors);
    free(file->path);
    if (file->owns_map && file->map != NULL) munmap(file->map, file->map_size);
    memset(file, 0, sizeof *file);
}

/* ---- lookups and getters --------------------------------------------------------------------- */

const gguf_kv *gguf_find(const gguf_file *file, const char *key) {
    for (uint64_t i = 0; i < file->n_kvs; i++)
        if (file->kvs[i].key != NULL && strcmp(file->kvs[i].key, key) == 0) return &file->kvs[i];
    return NULL;
}

const gguf_tensor *gguf_find_tensor(const gguf_file *file, const char *name) {
    for (uint64_t i = 0; i < file->n_tensors; i++)
        if (file->tensors[i].name != NULL && strcmp(file->tensors[i].name, name) == 0) return &file->tensors[i];
    return NULL;
}

static int find_required(const gguf_file *file, const char *key, const gguf_kv **out, ramp_error *err) {
    *out = gguf_find(file, key);
    if (*out == NULL) return ramp_fail(err, "%s: metadata key %s is missing", file->path, key);
    return 0;
}

int gguf_get_u32(const gguf_file *file, const char *key, uint32_t *out, ramp_error *err) {
    const gguf_kv *kv;
    if (find_required(file, key, &kv, err)) return -1;
    if (is_unsigned(kv->type) && kv->value.u <= UINT32_MAX) {
        *out = (uint32_t)kv->value.u;
        return 0;
    }
    if (is_signed(kv->type) && kv->value.i >= 0 && kv->value.i <= (int64_t)UINT32_MAX) {
        *out = (uint32_t)kv->value.i;
        return 0;
    }
    if (is_unsigned(kv->type))
        return ramp_fail(err, "%s: metadata key %s is %" PRIu64 ", expected 0 to 4294967295", file->path, key,
                         kv->value.u);
    if (is_signed(kv->type))
        return ramp_fail(err, "%s: metadata key %s is %" PRId64 ", expected 0 to 4294967295", file->path, key,
                         kv->value.i);
    return ramp_fail(err, "%s: metadata key %s has type %s, expected an integer", file->path, key,
                     value_type_name(kv->type));
}

int gguf_get_f32(const gguf_file *file, const char *key, float *out, ramp_error *err) {
    const gguf_kv *kv;
    if (find_required(file, key, &kv, err)) return -1;
    if (kv->type != GGUF_VALUE_FLOAT32 && kv->type != GGUF_VALUE_FLOAT64)
        return ramp_fail(err, "%s: metadata key %s has type %s, expected float32", file->path, key,
                         value_type_name(kv->type));
    *out = (float)kv->value.f;
    return 0;
}

int gguf_get_string(const gguf_file *file, const char *key, gguf_string *out, ramp_error *err) {
    const gguf_kv *kv;
    if (find_required(file, key, &kv, err)) return -1;
    if (kv->type != GGUF_VALUE_STRING)
        return ramp_fail(err, "%s: metadata key %s has type %s, expected string", file->path, key,
                         value_type_name(kv->type));
    *out = kv->value.s;
    return 0;
}

/* Decodes element i of a numeric array into *element; false when there is none. */
static bool array_element(const gguf_kv *kv, uint64_t i, gguf_kv *element) {
    size_t size = value_size(kv->array_type);
    if (kv->type != GGUF_VALUE_ARRAY || i >= kv->array_length || size == 0 || kv->array_data == NULL) return false;
    element->type = kv->array_type;
    decode_scalar(element, (const unsigned char *)kv->array_data + i * size);
    return true;
}

float gguf_array_f32(const gguf_kv *kv, uint64_t i) {
    gguf_kv e;
    if (!array_element(kv, i, &e)) return 0.0f;
    if (is_unsigned(e.type)) return (float)e.value.u;
    if (is_signed(e.type)) return (float)e.value.i;
    if (e.type == GGUF_VALUE_BOOL) return e.value.b ? 1.0f : 0.0f;
    return (float)e.value.f;
}

int64_t gguf_array_i64(const gguf_kv *kv, uint64_t i) {
    gguf_kv e;
    if (!array_element(kv, i, &e)) return 0;
    if (is_unsigned(e.type)) return e.value.u > INT64_MAX ? INT64_MAX : (int64_t)e.value.u;
    if (is_signed(e.type)) return e.value.i;
    if (e.type == GGUF_VALUE_BOOL) return e.value.b;
    /* Float to integer is undefined out of range (and for NaN), so clamp first. */
    double f = e.value.f;
    if (f != f) return 0;
    if (f >= 9.2e18) return INT64_MAX;
    if (f <= -9.2e18) return INT64_MIN;
    return (int64_t)f;
}

bool gguf_string_equals(gguf_string s, const char *text) {
    size_t n = strlen(text);
    return s.length == n && (n == 0 || memcmp(s.data, text, n) == 0);
}
