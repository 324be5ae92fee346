/* test_gguf.c: the GGUF reader on the shared models, on crafted bad files, and on real files
 * truncated and overwritten at many offsets (run under `make test SANITIZE=1` too: the corrupt
 * buffers are allocated at their exact size so any read past the end is caught). */
#include <criterion/criterion.h>

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gguf.h"
#include "quant.h"

/* ---- helpers -------------------------------------------------------------------------------------- */

static const char *shared_dir(void) {
    const char *dir = getenv("RAMP_SHARED");
    return dir && *dir ? dir : "../shared";
}

static void shared_path(char *buf, size_t size, const char *relative) {
    snprintf(buf, size, "%s/%s", shared_dir(), relative);
}

/* Opens a shared model, skipping the test when it is not there. */
static void open_shared(gguf_file *file, const char *relative) {
    char path[4096];
    shared_path(path, sizeof path, relative);
    if (access(path, R_OK) != 0) cr_skip_test("%s not found (set RAMP_SHARED)", path);
    ramp_error err = {{0}};
    cr_assert_eq(gguf_open(file, path, &err), 0, "gguf_open(%s): %s", path, err.message);
}

/* Reads a shared file into a malloc'd buffer of exactly its size; skips when missing. */
static unsigned char *load_shared(const char *relative, size_t *size) {
    char path[4096];
    shared_path(path, sizeof path, relative);
    FILE *fp = fopen(path, "rb");
    if (fp == NULL) cr_skip_test("%s not found (set RAMP_SHARED)", path);
    fseek(fp, 0, SEEK_END);
    *size = (size_t)ftell(fp);
    fseek(fp, 0, SEEK_SET);
    unsigned char *data = malloc(*size);
    cr_assert_not_null(data);
    cr_assert_eq(fread(data, 1, *size, fp), *size, "short read of %s", path);
    fclose(fp);
    return data;
}

static uint32_t get_u32(const gguf_file *file, const char *key) {
    ramp_error err = {{0}};
    uint32_t value = 0;
    cr_assert_eq(gguf_get_u32(file, key, &value, &err), 0, "%s", err.message);
    return value;
}

static const gguf_tensor *find_tensor(const gguf_file *file, const char *name) {
    const gguf_tensor *t = gguf_find_tensor(file, name);
    cr_assert_not_null(t, "tensor %s missing", name);
    return t;
}

/* Reads every byte range a successful open promises is valid (first and last byte of each string,
 * array and tensor); under ASan any lie shows up as a crash. */
static unsigned touch_everything(const gguf_file *f) {
    unsigned sum = 0;
    for (uint64_t i = 0; i < f->n_kvs; i++) {
        const gguf_kv *kv = &f->kvs[i];
        if (kv->type == GGUF_VALUE_STRING && kv->value.s.length > 0)
            sum += (unsigned char)kv->value.s.data[0] + (unsigned char)kv->value.s.data[kv->value.s.length - 1];
        if (kv->type == GGUF_VALUE_ARRAY && kv->array_strings != NULL) {
            for (uint64_t j = 0; j < kv->array_length; j++) {
                gguf_string s = kv->array_strings[j];
                if (s.length > 0) sum += (unsigned char)s.data[0] + (unsigned char)s.data[s.length - 1];
            }
        } else if (kv->type == GGUF_VALUE_ARRAY && kv->array_length > 0) {
            sum += (unsigned)gguf_array_i64(kv, 0) + (unsigned)gguf_array_i64(kv, kv->array_length - 1);
        }
    }
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        const unsigned char *data = f->tensors[i].data;
        sum += data[0] + data[f->tensors[i].n_bytes - 1];
    }
    return sum;
}

/* ---- the shared models ------------------------------------------------------------------------------ */

Test(gguf, stories260K_f32) {
    gguf_file f;
    open_shared(&f, "models/stories260K/stories260K-f32.gguf");
    cr_expect_eq(f.version, 3);
    cr_expect_eq(f.alignment, 32);
    cr_expect_eq(f.data_offset % 32, 0);
    cr_expect_eq(f.n_tensors, 48);
    cr_expect_eq(get_u32(&f, "llama.block_count"), 5);
    cr_expect_eq(get_u32(&f, "llama.embedding_length"), 64);
    cr_expect_eq(get_u32(&f, "llama.attention.head_count"), 8);
    cr_expect_eq(get_u32(&f, "llama.attention.head_count_kv"), 4);

    ramp_error err = {{0}};
    gguf_string arch;
    cr_assert_eq(gguf_get_string(&f, "general.architecture", &arch, &err), 0, "%s", err.message);
    cr_expect(gguf_string_equals(arch, "llama"));
    float eps = 0;
    cr_assert_eq(gguf_get_f32(&f, "llama.attention.layer_norm_rms_epsilon", &eps, &err), 0, "%s", err.message);
    cr_expect_float_eq(eps, 1e-5f, 1e-9f);

    const gguf_tensor *embd = find_tensor(&f, "token_embd.weight");
    cr_expect_eq(embd->n_dims, 2);
    cr_expect_eq(embd->dims[0], 64);
    cr_expect_eq(embd->dims[1], 512);
    cr_expect_eq(embd->type, GGML_TYPE_F32);
    cr_expect_eq(embd->n_bytes, 64 * 512 * 4);
    cr_expect_eq((const unsigned char *)embd->data, (const unsigned char *)f.map + f.data_offset + embd->offset);
    cr_expect_not_null(gguf_find_tensor(&f, "output.weight"));
    cr_expect_null(gguf_find_tensor(&f, "no.such.tensor"));

    const gguf_kv *tokens = gguf_find(&f, "tokenizer.ggml.tokens");
    cr_assert_not_null(tokens);
    cr_expect_eq(tokens->array_type, GGUF_VALUE_STRING);
    cr_expect_eq(tokens->array_length, 512);
    cr_expect(gguf_string_equals(tokens->array_strings[0], "<unk>"));
    cr_expect(gguf_string_equals(tokens->array_strings[1], "<s>"));
    const gguf_kv *types = gguf_find(&f, "tokenizer.ggml.token_type");
    cr_assert_not_null(types);
    cr_expect_eq(gguf_array_i64(types, 3), 6, "token 3 (<0x00>) is a byte token");
    cr_expect_eq(gguf_array_i64(types, types->array_length), 0, "out of range reads as 0");
    cr_expect_eq(touch_everything(&f) > 0, 1);
    gguf_close(&f);
    cr_expect_null(f.map);
}

Test(gguf, getters_report_missing_and_mistyped_keys) {
    gguf_file f;
    open_shared(&f, "models/stories260K/stories260K-f32.gguf");
    ramp_error err = {{0}};
    uint32_t u;
    float x;
    gguf_string s;
    cr_expect_eq(gguf_get_u32(&f, "llama.nope", &u, &err), -1);
    cr_expect(strstr(err.message, "llama.nope") && strstr(err.message, "missing"), "%s", err.message);
    cr_expect_eq(gguf_get_u32(&f, "general.architecture", &u, &err), -1);
    cr_expect(strstr(err.message, "expected an integer"), "%s", err.message);
    cr_expect_eq(gguf_get_f32(&f, "llama.block_count", &x, &err), -1);
    cr_expect(strstr(err.message, "expected float32"), "%s", err.message);
    cr_expect_eq(gguf_get_string(&f, "llama.block_count", &s, &err), -1);
    cr_expect(strstr(err.message, "stories260K-f32.gguf"), "message names the file: %s", err.message);
    /* padding_token_id is stored as 0xffffffff: still a valid u32 */
    cr_expect_eq(get_u32(&f, "tokenizer.ggml.padding_token_id"), UINT32_MAX);
    gguf_close(&f);
}

Test(gguf, base16_quantized_types) {
    struct { const char *file; ggml_type matrix; } cases[] = {
        {"models/base16/model-q4_0.gguf", GGML_TYPE_Q4_0},
        {"models/base16/model-q8_0.gguf", GGML_TYPE_Q8_0},
        {"models/base16/model-f16.gguf", GGML_TYPE_F16},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        gguf_file f;
        open_shared(&f, cases[i].file);
        cr_expect_eq(f.n_tensors, 147, "%s", cases[i].file);
        cr_expect_eq(get_u32(&f, "llama.block_count"), 16);
        const gguf_tensor *q = find_tensor(&f, "blk.0.attn_q.weight");
        cr_expect_eq(q->type, cases[i].matrix, "%s: attn_q is %s", cases[i].file, ggml_type_name(q->type));
        cr_expect_eq(q->dims[0], 128);
        cr_expect_eq(q->n_bytes, 128 * 128 / ggml_type_block_elements(q->type) * ggml_type_block_bytes(q->type));
        const gguf_tensor *down = find_tensor(&f, "blk.15.ffn_down.weight");
        cr_expect_eq(down->type, cases[i].matrix);
        cr_expect_eq(down->dims[0], 384);
        cr_expect_eq(down->dims[1], 128);
        cr_expect_eq(find_tensor(&f, "output_norm.weight")->type, GGML_TYPE_F32);
        gguf_close(&f);
    }
}

Test(gguf, q8_0_weights_match_f32_weights) {
    gguf_file q8, f32;
    open_shared(&q8, "models/base16/model-q8_0.gguf");
    open_shared(&f32, "models/base16/model-f32.gguf");
    const gguf_tensor *a = find_tensor(&q8, "blk.3.ffn_up.weight"), *b = find_tensor(&f32, "blk.3.ffn_up.weight");
    cr_assert_eq(a->n_elements, b->n_elements);
    float *values = malloc(a->n_elements * sizeof *values);
    cr_assert_eq(dequantize(a->type, a->data, values, a->n_elements), 0);
    const float *reference = b->data;
    double max_error = 0, max_value = 0;
    for (uint64_t i = 0; i < a->n_elements; i++) {
        max_error = fmax(max_error, fabs(values[i] - reference[i]));
        max_value = fmax(max_value, fabs(reference[i]));
    }
    cr_expect_lt(max_error, max_value / 100, "q8_0 error %g for values up to %g", max_error, max_value);
    free(values);
    gguf_close(&q8);
    gguf_close(&f32);
}

Test(gguf, gpt2_vocab_merges) {
    gguf_file f;
    open_shared(&f, "reference/vocab/ggml-vocab-gpt-2.gguf");
    const gguf_kv *merges = gguf_find(&f, "tokenizer.ggml.merges");
    cr_assert_not_null(merges);
    cr_expect_eq(merges->type, GGUF_VALUE_ARRAY);
    cr_expect_eq(merges->array_type, GGUF_VALUE_STRING);
    cr_expect_eq(merges->array_length, 50000);
    cr_assert_not_null(merges->array_strings);
    cr_expect_gt(merges->array_strings[49999].length, 0);
    cr_expect_eq(gguf_find(&f, "tokenizer.ggml.tokens")->array_length, 50257);
    cr_expect_eq(f.n_tensors, 0);
    gguf_close(&f);
}

/* ---- opening files ------------------------------------------------------------------------------------ */

Test(gguf, open_reports_missing_directory_and_empty_files) {
    gguf_file f;
    ramp_error err = {{0}};
    cr_expect_eq(gguf_open(&f, "/nonexistent/model.gguf", &err), -1);
    cr_expect(strstr(err.message, "/nonexistent/model.gguf") && strstr(err.message, "No such file"), "%s",
              err.message);
    cr_expect_eq(gguf_open(&f, "/tmp", &err), -1);
    cr_expect(strstr(err.message, "directory"), "%s", err.message);

    char path[] = "/tmp/ramp-test-gguf-XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    close(fd);
    cr_expect_eq(gguf_open(&f, path, &err), -1);
    cr_expect(strstr(err.message, "empty"), "%s", err.message);
    cr_expect_null(f.kvs);
    unlink(path);
}

Test(gguf, open_rejects_truncated_file_on_disk) {
    size_t size;
    unsigned char *data = load_shared("models/stories260K/stories260K-f32.gguf", &size);
    char path[] = "/tmp/ramp-test-gguf-XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    cr_assert_eq(write(fd, data, size - 100), (ssize_t)(size - 100));
    close(fd);
    gguf_file f;
    ramp_error err = {{0}};
    cr_expect_eq(gguf_open(&f, path, &err), -1);
    cr_expect(strstr(err.message, path) && strstr(err.message, "needs"), "%s", err.message);
    unlink(path);
    free(data);
}

/* ---- corruption of a real file ---------------------------------------------------------------------- */

/* Parses size bytes copied into a buffer of exactly that size; returns the result. */
static int open_copy(const unsigned char *data, size_t size, ramp_error *err) {
    unsigned char *copy = malloc(size ? size : 1);
    cr_assert_not_null(copy);
    memcpy(copy, data, size);
    gguf_file f;
    int rc = gguf_open_buffer(&f, copy, size, "cut.gguf", err);
    if (rc == 0) {
        touch_everything(&f);
        gguf_close(&f);
    } else {
        cr_assert_null(f.kvs, "failed open leaves the file closed");
    }
    free(copy);
    return rc;
}

static uint64_t end_of_last_tensor(const unsigned char *data, size_t size) {
    gguf_file f;
    ramp_error err = {{0}};
    cr_assert_eq(gguf_open_buffer(&f, data, size, "whole.gguf", &err), 0, "%s", err.message);
    uint64_t end = 0;
    for (uint64_t i = 0; i < f.n_tensors; i++)
        if (f.data_offset + f.tensors[i].offset + f.tensors[i].n_bytes > end)
            end = f.data_offset + f.tensors[i].offset + f.tensors[i].n_bytes;
    gguf_close(&f);
    return end;
}

Test(gguf_corrupt, truncation_always_fails_cleanly) {
    size_t size;
    unsigned char *data = load_shared("models/stories260K/stories260K-f32.gguf", &size);
    uint64_t end = end_of_last_tensor(data, size);
    gguf_file whole;
    ramp_error err = {{0}};
    cr_assert_eq(gguf_open_buffer(&whole, data, size, "whole.gguf", &err), 0);
    uint64_t data_offset = whole.data_offset;
    gguf_close(&whole);

    /* Every cut inside header, metadata and directory, then a spread across the tensor data. */
    size_t data_step = (end - data_offset) / 97 + 1;
    for (size_t cut = 0; cut < end; cut += cut < data_offset ? 1 : data_step) {
        err.message[0] = '\0';
        cr_assert_eq(open_copy(data, cut, &err), -1, "truncated at %zu of %zu bytes but opened", cut, size);
        cr_assert_neq(err.message[0], '\0', "no message for a cut at %zu", cut);
    }
    cr_expect_eq(open_copy(data, end - 1, &err), -1);
    cr_expect(strstr(err.message, "output.weight") || strstr(err.message, "token_embd.weight") ||
                  strstr(err.message, "blk."), "names a tensor: %s", err.message);
    free(data);
}

/* Overwrites n bytes at offset with a pattern, parses, restores. Success is allowed (the bytes
 * may be weights or a harmless number); a crash or a silent failure is not. */
static void overwrite_and_open(unsigned char *data, size_t size, size_t offset, size_t n, int pattern) {
    unsigned char saved[8];
    if (n > size - offset) n = size - offset;
    memcpy(saved, data + offset, n);
    for (size_t i = 0; i < n; i++) data[offset + i] = pattern >= 0 ? (unsigned char)pattern : data[offset + i] ^ 0x80;
    gguf_file f;
    ramp_error err = {{0}};
    if (gguf_open_buffer(&f, data, size, "flipped.gguf", &err) == 0) {
        touch_everything(&f);
        gguf_close(&f);
    } else {
        cr_assert_neq(err.message[0], '\0', "no message after overwriting byte %zu", offset);
    }
    memcpy(data + offset, saved, n);
}

Test(gguf_corrupt, overwritten_bytes_never_crash) {
    size_t size;
    unsigned char *data = load_shared("models/stories260K/stories260K-f32.gguf", &size);
    gguf_file whole;
    ramp_error err = {{0}};
    cr_assert_eq(gguf_open_buffer(&whole, data, size, "whole.gguf", &err), 0);
    size_t data_offset = whole.data_offset;
    gguf_close(&whole);

    for (size_t offset = 0; offset < data_offset; offset++) {
        overwrite_and_open(data, size, offset, 8, 0xff);
        overwrite_and_open(data, size, offset, 8, 0x00);
        overwrite_and_open(data, size, offset, 1, -1); /* flip the top bit */
    }
    for (size_t offset = data_offset; offset < size; offset += (size - data_offset) / 50)
        overwrite_and_open(data, size, offset, 8, 0xff);
    /* A few thousand random single-byte values in the metadata and directory. */
    uint64_t state = 42;
    for (int i = 0; i < 3000; i++) {
        state = state * 6364136223846793005ull + 1442695040888963407ull;
        overwrite_and_open(data, size, (size_t)(state >> 33) % data_offset, 1, (int)((state >> 20) & 0xff));
    }
    /* The buffer was restored each time: the file still opens. */
    cr_expect_eq(gguf_open_buffer(&whole, data, size, "whole.gguf", &err), 0, "%s", err.message);
    gguf_close(&whole);
    free(data);
}

/* ---- crafted files ----------------------------------------------------------------------------------- */

typedef struct {
    unsigned char data[1024];
    size_t length;
} bytes;

static void put_le(bytes *b, uint64_t value, size_t n) {
    cr_assert_leq(b->length + n, sizeof b->data);
    for (size_t i = 0; i < n; i++) b->data[b->length++] = (unsigned char)(value >> (8 * i));
}
static void put_u32(bytes *b, uint32_t v) { put_le(b, v, 4); }
static void put_u64(bytes *b, uint64_t v) { put_le(b, v, 8); }
static void put_str(bytes *b, const char *s) {
    put_u64(b, strlen(s));
    for (const char *c = s; *c; c++) put_le(b, (unsigned char)*c, 1);
}
static void put_header(bytes *b, uint32_t version, uint64_t n_tensors, uint64_t n_kvs) {
    memcpy(b->data, "GGUF", 4);
    b->length = 4;
    put_u32(b, version);
    put_u64(b, n_tensors);
    put_u64(b, n_kvs);
}
static void put_kv_u32(bytes *b, const char *key, uint32_t value) {
    put_str(b, key);
    put_u32(b, GGUF_VALUE_UINT32);
    put_u32(b, value);
}
static void put_tensor(bytes *b, const char *name, uint32_t n_dims, const uint64_t *dims, uint32_t type,
                       uint64_t offset) {
    put_str(b, name);
    put_u32(b, n_dims);
    for (uint32_t d = 0; d < n_dims; d++) put_u64(b, dims[d]);
    put_u32(b, type);
    put_u64(b, offset);
}
/* Pads to the alignment and appends n bytes of tensor data. */
static void put_data(bytes *b, size_t alignment, size_t n) {
    while (b->length % alignment) put_le(b, 0, 1);
    for (size_t i = 0; i < n; i++) put_le(b, i & 0xff, 1);
}

/* A file with one F32 tensor of 8 elements; returns its builder for tests to vary. */
static void one_tensor_file(bytes *b, uint32_t n_dims, const uint64_t *dims, uint32_t type, uint64_t offset,
                            size_t data_bytes) {
    put_header(b, 3, 1, 1);
    put_kv_u32(b, "llama.block_count", 1);
    put_tensor(b, "w", n_dims, dims, type, offset);
    put_data(b, 32, data_bytes);
}

static void expect_failure(const bytes *b, const char *fragment) {
    ramp_error err = {{0}};
    cr_expect_eq(open_copy(b->data, b->length, &err), -1, "expected failure containing \"%s\"", fragment);
    cr_expect(strstr(err.message, fragment) != NULL, "message \"%s\" lacks \"%s\"", err.message, fragment);
    cr_expect(strstr(err.message, "cut.gguf") != NULL, "message names the file: %s", err.message);
}

Test(gguf_crafted, valid_minimal_file_opens) {
    bytes b = {0};
    put_header(&b, 2, 2, 2);
    put_kv_u32(&b, "general.alignment", 64);
    put_str(&b, "greeting");
    put_u32(&b, GGUF_VALUE_STRING);
    put_str(&b, "hi");
    uint64_t dims_a[2] = {4, 2}, dims_b[1] = {32};
    put_tensor(&b, "a", 2, dims_a, GGML_TYPE_F32, 0);
    put_tensor(&b, "b", 1, dims_b, GGML_TYPE_Q8_0, 64);
    put_data(&b, 64, 64 + 34);
    gguf_file f;
    ramp_error err = {{0}};
    cr_assert_eq(gguf_open_buffer(&f, b.data, b.length, "mini.gguf", &err), 0, "%s", err.message);
    cr_expect_eq(f.version, 2);
    cr_expect_eq(f.alignment, 64);
    cr_expect_eq(f.data_offset % 64, 0);
    cr_expect_eq(f.tensors[0].n_elements, 8);
    cr_expect_eq(f.tensors[0].n_bytes, 32);
    cr_expect_eq(f.tensors[1].n_bytes, 34);
    cr_expect_eq(f.tensors[1].dims[1], 1, "unused dims are 1");
    cr_expect_eq(((const unsigned char *)f.tensors[1].data)[1], 65, "data byte 64 + 1");
    gguf_string s;
    cr_expect_eq(gguf_get_string(&f, "greeting", &s, &err), 0);
    cr_expect(gguf_string_equals(s, "hi"));
    gguf_close(&f);
}

Test(gguf_crafted, header_problems) {
    bytes b = {0};
    expect_failure(&b, "truncated at byte 0");
    put_header(&b, 3, 0, 0);
    memcpy(b.data, "GGML", 4);
    expect_failure(&b, "not a GGUF file");
    put_header(&b, 1, 0, 0);
    expect_failure(&b, "version 1 is not supported");
    put_header(&b, 0x03000000, 0, 0);
    expect_failure(&b, "big-endian");
    put_header(&b, 7, 0, 0);
    expect_failure(&b, "unsupported GGUF version 7");
    put_header(&b, 3, 0, (uint64_t)1 << 60);
    expect_failure(&b, "1152921504606846976 metadata entries");
    put_header(&b, 3, (uint64_t)1 << 60, 0);
    expect_failure(&b, "1152921504606846976 tensors");
}

Test(gguf_crafted, metadata_problems) {
    bytes b = {0};
    put_header(&b, 3, 0, 1);
    put_u64(&b, (uint64_t)1 << 60); /* key length */
    put_u64(&b, 0);
    expect_failure(&b, "the key of metadata entry 0 claims 1152921504606846976 bytes");

    put_header(&b, 3, 0, 1);
    put_str(&b, "numbers");
    put_u32(&b, GGUF_VALUE_ARRAY);
    put_u32(&b, GGUF_VALUE_UINT32);
    put_u64(&b, (uint64_t)1 << 60);
    put_u64(&b, 0);
    expect_failure(&b, "numbers claims 1152921504606846976 uint32 elements");

    put_header(&b, 3, 0, 1);
    put_str(&b, "words");
    put_u32(&b, GGUF_VALUE_ARRAY);
    put_u32(&b, GGUF_VALUE_STRING);
    put_u64(&b, (uint64_t)1 << 60);
    put_u64(&b, 0);
    expect_failure(&b, "words claims 1152921504606846976 strings");

    put_header(&b, 3, 0, 1);
    put_str(&b, "words");
    put_u32(&b, GGUF_VALUE_ARRAY);
    put_u32(&b, GGUF_VALUE_STRING);
    put_u64(&b, 2);
    put_str(&b, "one");
    put_u64(&b, 1000); /* second string runs past the end */
    expect_failure(&b, "the value of metadata key words (element 1) claims 1000 bytes");

    put_header(&b, 3, 0, 1);
    put_str(&b, "nested");
    put_u32(&b, GGUF_VALUE_ARRAY);
    put_u32(&b, GGUF_VALUE_ARRAY);
    put_u64(&b, 1);
    expect_failure(&b, "array of arrays");

    put_header(&b, 3, 0, 1);
    put_str(&b, "odd");
    put_u32(&b, 13);
    put_u64(&b, 0);
    expect_failure(&b, "odd has unknown value type 13");

    put_header(&b, 3, 0, 2);
    put_kv_u32(&b, "twice", 1);
    put_kv_u32(&b, "twice", 2);
    expect_failure(&b, "duplicate metadata key twice");

    put_header(&b, 3, 0, 1);
    put_u64(&b, 3);
    put_le(&b, 'a', 1), put_le(&b, 0, 1), put_le(&b, 'b', 1);
    put_u32(&b, GGUF_VALUE_UINT8);
    put_le(&b, 0, 1);
    expect_failure(&b, "NUL byte");

    put_header(&b, 3, 0, 1);
    put_kv_u32(&b, "general.alignment", 48);
    expect_failure(&b, "general.alignment is 48, expected a power of two");

    put_header(&b, 3, 0, 1);
    put_str(&b, "general.alignment");
    put_u32(&b, GGUF_VALUE_STRING);
    put_str(&b, "32");
    expect_failure(&b, "general.alignment has type string, expected an integer");

    put_header(&b, 3, 0, 1);
    put_str(&b, "cut");
    put_u32(&b, GGUF_VALUE_UINT64);
    put_u32(&b, 0); /* only 4 of 8 bytes */
    expect_failure(&b, "while reading the value of metadata key cut");
}

Test(gguf_crafted, tensor_problems) {
    uint64_t dims[5] = {8, 1, 1, 1, 1};
    bytes b = {0};
    one_tensor_file(&b, 0, dims, GGML_TYPE_F32, 0, 32);
    expect_failure(&b, "tensor w has 0 dimensions, expected 1 to 4");
    b.length = 0;
    one_tensor_file(&b, 5, dims, GGML_TYPE_F32, 0, 32);
    expect_failure(&b, "tensor w has 5 dimensions");
    b.length = 0;
    one_tensor_file(&b, 1, dims, 57 /* no ggml type has this number */, 0, 32);
    expect_failure(&b, "tensor w has unknown type 57");
    b.length = 0;
    one_tensor_file(&b, 1, dims, GGML_TYPE_F32, 4, 64);
    expect_failure(&b, "data offset 4, expected a multiple of the alignment 32");
    b.length = 0;
    one_tensor_file(&b, 1, dims, GGML_TYPE_F32, 0, 31);
    expect_failure(&b, "tensor w needs 32 bytes at data offset 0");
    b.length = 0;
    one_tensor_file(&b, 1, dims, GGML_TYPE_F32, (uint64_t)1 << 62, 32);
    expect_failure(&b, "tensor w needs 32 bytes at data offset 4611686018427387904");

    uint64_t q8_dims[1] = {33};
    b.length = 0;
    one_tensor_file(&b, 1, q8_dims, GGML_TYPE_Q8_0, 0, 64);
    expect_failure(&b, "row length 33, expected a multiple of the q8_0 block size 32");
    uint64_t zero_dims[2] = {8, 0};
    b.length = 0;
    one_tensor_file(&b, 2, zero_dims, GGML_TYPE_F32, 0, 32);
    expect_failure(&b, "shape 8x0, expected every dimension >= 1");
    uint64_t huge_dims[3] = {(uint64_t)1 << 32, (uint64_t)1 << 32, 4};
    b.length = 0;
    one_tensor_file(&b, 3, huge_dims, GGML_TYPE_F32, 0, 32);
    expect_failure(&b, "element count overflows");
    uint64_t big_dims[2] = {(uint64_t)1 << 31, (uint64_t)1 << 31};
    b.length = 0;
    one_tensor_file(&b, 2, big_dims, GGML_TYPE_F32, 0, 32);
    expect_failure(&b, "byte size overflows");

    b.length = 0;
    put_header(&b, 3, 2, 0);
    put_tensor(&b, "w", 1, dims, GGML_TYPE_F32, 0);
    put_tensor(&b, "w", 1, dims, GGML_TYPE_F32, 32);
    put_data(&b, 32, 64);
    expect_failure(&b, "duplicate tensor name w");

    b.length = 0;
    put_header(&b, 3, 1, 0);
    put_tensor(&b, "a.long.name", 2, dims, GGML_TYPE_F32, 0);
    b.length -= 10; /* cut inside the type field */
    expect_failure(&b, "while reading the type of tensor a.long.name");
}
