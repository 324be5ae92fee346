/* test_synth.c: the GGUF writer and the synthetic model generator, checked by reading their output
 * back with the GGUF reader. */
#include <criterion/criterion.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gguf.h"
#include "gguf_writer.h"
#include "quant.h"
#include "synth.h"

static const synth_spec TINY = {
    .dim = 64, .layers = 2, .heads = 4, .kv_heads = 2, .ffn = 96, .vocab = 300, .context = 128,
    .type = GGML_TYPE_Q8_0, .seed = 7,
};

/* A fresh temporary path (the file exists, empty, until the test overwrites it). */
static void temp_path(char path[64]) {
    snprintf(path, 64, "/tmp/ramp-test-synth-XXXXXX");
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0, "mkstemp failed");
    close(fd);
}

static bool file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

/* Writes spec to a temp file and opens it. */
static void synth_and_open(const synth_spec *spec, gguf_file *file, char path[64]) {
    ramp_error err = {{0}};
    temp_path(path);
    cr_assert_eq(synth_write(spec, path, &err), 0, "synth_write: %s", err.message);
    cr_assert_eq(gguf_open(file, path, &err), 0, "gguf_open: %s", err.message);
}

static uint32_t get_u32(const gguf_file *file, const char *key) {
    ramp_error err = {{0}};
    uint32_t value = 0;
    cr_assert_eq(gguf_get_u32(file, key, &value, &err), 0, "%s", err.message);
    return value;
}

static gguf_string get_string(const gguf_file *file, const char *key) {
    ramp_error err = {{0}};
    gguf_string value = {0};
    cr_assert_eq(gguf_get_string(file, key, &value, &err), 0, "%s", err.message);
    return value;
}

static float get_f32(const gguf_file *file, const char *key) {
    ramp_error err = {{0}};
    float value = 0;
    cr_assert_eq(gguf_get_f32(file, key, &value, &err), 0, "%s", err.message);
    return value;
}

static void expect_tensor(const gguf_file *file, const char *name, uint64_t d0, uint64_t d1, ggml_type type) {
    const gguf_tensor *t = gguf_find_tensor(file, name);
    cr_assert_not_null(t, "tensor %s missing", name);
    cr_expect_eq(t->n_dims, d1 == 1 ? 1u : 2u, "%s n_dims", name);
    cr_expect_eq(t->dims[0], d0, "%s dims[0] = %llu", name, (unsigned long long)t->dims[0]);
    cr_expect_eq(t->dims[1], d1, "%s dims[1] = %llu", name, (unsigned long long)t->dims[1]);
    cr_expect_eq(t->type, type, "%s is %s, expected %s", name, ggml_type_name(t->type), ggml_type_name(type));
}

/* Largest |stored - generated| over a whole tensor. */
static double max_error(const gguf_file *file, const synth_spec *spec, const char *name) {
    const gguf_tensor *t = gguf_find_tensor(file, name);
    cr_assert_not_null(t, "tensor %s missing", name);
    float *stored = malloc(t->n_elements * sizeof *stored), *generated = malloc(t->n_elements * sizeof *generated);
    ramp_error err = {{0}};
    cr_assert_eq(dequantize(t->type, t->data, stored, t->n_elements), 0);
    cr_assert_eq(synth_tensor_values(spec, name, generated, t->n_elements, &err), 0, "%s", err.message);
    double worst = 0;
    for (uint64_t i = 0; i < t->n_elements; i++) worst = fmax(worst, fabs((double)stored[i] - generated[i]));
    free(stored);
    free(generated);
    return worst;
}

Test(synth, tiny_q8_0_model_has_llama_keys) {
    gguf_file f;
    char path[64];
    synth_and_open(&TINY, &f, path);
    cr_expect(gguf_string_equals(get_string(&f, "general.architecture"), "llama"));
    cr_expect_eq(f.version, 3);
    cr_expect_eq(f.alignment, 32);
    cr_expect_eq(get_u32(&f, "llama.block_count"), 2);
    cr_expect_eq(get_u32(&f, "llama.embedding_length"), 64);
    cr_expect_eq(get_u32(&f, "llama.feed_forward_length"), 96);
    cr_expect_eq(get_u32(&f, "llama.attention.head_count"), 4);
    cr_expect_eq(get_u32(&f, "llama.attention.head_count_kv"), 2);
    cr_expect_eq(get_u32(&f, "llama.rope.dimension_count"), 16);
    cr_expect_eq(get_u32(&f, "llama.context_length"), 128);
    cr_expect_float_eq(get_f32(&f, "llama.rope.freq_base"), 10000.0f, 1e-3f);
    cr_expect_float_eq(get_f32(&f, "llama.attention.layer_norm_rms_epsilon"), 1e-5f, 1e-9f);
    cr_expect_eq(get_u32(&f, "tokenizer.ggml.bos_token_id"), 1);
    cr_expect_eq(get_u32(&f, "tokenizer.ggml.eos_token_id"), 2);
    gguf_close(&f);
    unlink(path);
}

/* --arch qwen2: qwen2.* keys, and each layer's query, key and value biases as fp32 vectors after its
 * weights, with random values (not ones, as norms have). */
Test(synth, qwen2_keys_and_biases) {
    synth_spec spec = TINY;
    spec.arch = SYNTH_QWEN2;
    gguf_file f;
    char path[64];
    synth_and_open(&spec, &f, path);
    cr_expect(gguf_string_equals(get_string(&f, "general.architecture"), "qwen2"));
    cr_expect_eq(get_u32(&f, "qwen2.block_count"), 2);
    cr_expect_eq(get_u32(&f, "qwen2.attention.head_count_kv"), 2);
    cr_expect_float_eq(get_f32(&f, "qwen2.rope.freq_base"), 1e6f, 1.0f);
    cr_expect_null(gguf_find(&f, "llama.block_count"));
    cr_expect_eq(f.n_tensors, 3 + 2 * 12);
    for (int l = 0; l < 2; l++) {
        char name[64];
        snprintf(name, sizeof name, "blk.%d.attn_q.bias", l);
        expect_tensor(&f, name, 64, 1, GGML_TYPE_F32);
        snprintf(name, sizeof name, "blk.%d.attn_k.bias", l);
        expect_tensor(&f, name, 32, 1, GGML_TYPE_F32);
        snprintf(name, sizeof name, "blk.%d.attn_v.bias", l);
        expect_tensor(&f, name, 32, 1, GGML_TYPE_F32);
        const float *v = gguf_find_tensor(&f, name)->data;
        float lo = v[0], hi = v[0];
        for (int i = 0; i < 32; i++) lo = fminf(lo, v[i]), hi = fmaxf(hi, v[i]);
        cr_expect(lo >= -0.5f && hi <= 0.5f && hi - lo > 0.25f, "%s spans %g..%g, expected random values in +-0.5", name,
                  lo, hi);
        snprintf(name, sizeof name, "blk.%d.attn_q.weight", l);
        expect_tensor(&f, name, 64, 64, GGML_TYPE_Q8_0);
    }
    gguf_close(&f);
    unlink(path);
}

Test(synth, vocabulary_is_sentencepiece_style) {
    gguf_file f;
    char path[64];
    synth_and_open(&TINY, &f, path);
    ramp_error err = {{0}};
    gguf_string model;
    cr_assert_eq(gguf_get_string(&f, "tokenizer.ggml.model", &model, &err), 0, "%s", err.message);
    cr_expect(gguf_string_equals(model, "llama"));
    const gguf_kv *tokens = gguf_find(&f, "tokenizer.ggml.tokens");
    const gguf_kv *scores = gguf_find(&f, "tokenizer.ggml.scores");
    const gguf_kv *types = gguf_find(&f, "tokenizer.ggml.token_type");
    cr_assert(tokens && scores && types);
    cr_assert_eq(tokens->array_length, 300);
    cr_expect_eq(scores->array_length, 300);
    cr_expect_eq(types->array_length, 300);
    cr_expect(gguf_string_equals(tokens->array_strings[0], "<unk>"));
    cr_expect(gguf_string_equals(tokens->array_strings[1], "<s>"));
    cr_expect(gguf_string_equals(tokens->array_strings[2], "</s>"));
    cr_expect(gguf_string_equals(tokens->array_strings[3], "<0x00>"));
    cr_expect(gguf_string_equals(tokens->array_strings[3 + 0x41], "<0x41>"));
    cr_expect(gguf_string_equals(tokens->array_strings[258], "<0xFF>"));
    cr_expect(gguf_string_equals(tokens->array_strings[259], "\xe2\x96\x81" "a"));
    cr_expect(gguf_string_equals(tokens->array_strings[260], "a"));
    for (uint64_t i = 3; i < 259; i++) cr_expect_eq(gguf_array_i64(types, i), 6, "token %llu", (unsigned long long)i);
    for (uint64_t i = 259; i < 300; i++) cr_expect_eq(gguf_array_i64(types, i), 1);
    for (uint64_t i = 260; i < 300; i++) cr_expect_lt(gguf_array_f32(scores, i), gguf_array_f32(scores, i - 1));
    for (uint64_t i = 0; i < 300; i++)
        for (uint64_t j = i + 1; j < 300; j++) {
            gguf_string a = tokens->array_strings[i], b = tokens->array_strings[j];
            cr_assert(a.length != b.length || memcmp(a.data, b.data, a.length) != 0, "tokens %llu and %llu equal",
                      (unsigned long long)i, (unsigned long long)j);
        }
    gguf_close(&f);
    unlink(path);
}

Test(synth, tensor_names_shapes_and_types) {
    gguf_file f;
    char path[64];
    synth_and_open(&TINY, &f, path);
    cr_expect_eq(f.n_tensors, 3 + 9 * 2);
    expect_tensor(&f, "token_embd.weight", 64, 300, GGML_TYPE_Q8_0);
    expect_tensor(&f, "output_norm.weight", 64, 1, GGML_TYPE_F32);
    expect_tensor(&f, "output.weight", 64, 300, GGML_TYPE_Q8_0);
    for (int layer = 0; layer < 2; layer++) {
        char name[64];
#define EXPECT_LAYER(suffix, d0, d1, type)                                  \
    snprintf(name, sizeof name, "blk.%d." suffix ".weight", layer);         \
    expect_tensor(&f, name, d0, d1, type)
        EXPECT_LAYER("attn_norm", 64, 1, GGML_TYPE_F32);
        EXPECT_LAYER("attn_q", 64, 64, GGML_TYPE_Q8_0);
        EXPECT_LAYER("attn_k", 64, 32, GGML_TYPE_Q8_0);
        EXPECT_LAYER("attn_v", 64, 32, GGML_TYPE_Q8_0);
        EXPECT_LAYER("attn_output", 64, 64, GGML_TYPE_Q8_0);
        EXPECT_LAYER("ffn_norm", 64, 1, GGML_TYPE_F32);
        EXPECT_LAYER("ffn_gate", 64, 96, GGML_TYPE_Q8_0);
        EXPECT_LAYER("ffn_up", 64, 96, GGML_TYPE_Q8_0);
        EXPECT_LAYER("ffn_down", 96, 64, GGML_TYPE_Q8_0);
#undef EXPECT_LAYER
    }
    const gguf_tensor *norm = gguf_find_tensor(&f, "blk.1.ffn_norm.weight");
    const float *ones = norm->data;
    for (int i = 0; i < 64; i++) cr_expect_eq(ones[i], 1.0f);
    gguf_close(&f);
    unlink(path);
}

Test(synth, q8_0_round_trip_is_close) {
    gguf_file f;
    char path[64];
    synth_and_open(&TINY, &f, path);
    /* Q8_0 rounds to half a step of max|x| / 127 per block (plus the fp16 rounding of the step);
     * values are at most 1/sqrt(row length). */
    cr_expect_leq(max_error(&f, &TINY, "blk.1.ffn_down.weight"), 0.6 / sqrt(96.0) / 127);
    cr_expect_leq(max_error(&f, &TINY, "blk.0.attn_k.weight"), 0.6 / sqrt(64.0) / 127);
    cr_expect_leq(max_error(&f, &TINY, "token_embd.weight"), 0.6 / sqrt(64.0) / 127);
    cr_expect_eq(max_error(&f, &TINY, "output_norm.weight"), 0.0);

    float values[64 * 64];
    ramp_error err = {{0}};
    cr_assert_eq(synth_tensor_values(&TINY, "blk.0.attn_q.weight", values, 64 * 64, &err), 0, "%s", err.message);
    double sum_abs = 0, bound = 1.0 / sqrt(64.0);
    for (int i = 0; i < 64 * 64; i++) {
        cr_assert_leq(fabs(values[i]), bound);
        sum_abs += fabs(values[i]);
    }
    cr_expect(fabs(sum_abs / (64 * 64) - bound / 2) < bound * 0.05, "uniform in +-%g: mean |x| %g", bound,
              sum_abs / (64 * 64));
    gguf_close(&f);
    unlink(path);
}

Test(synth, f32_f16_and_q4_0_store_the_generated_values) {
    synth_spec spec = TINY;
    spec.type = GGML_TYPE_F32;
    gguf_file f;
    char path[64];
    synth_and_open(&spec, &f, path);
    cr_expect_eq(gguf_find_tensor(&f, "blk.0.ffn_up.weight")->type, GGML_TYPE_F32);
    cr_expect_eq(max_error(&f, &spec, "blk.0.ffn_up.weight"), 0.0);
    gguf_close(&f);
    unlink(path);

    spec.type = GGML_TYPE_F16;
    synth_and_open(&spec, &f, path);
    cr_expect_eq(gguf_find_tensor(&f, "output.weight")->type, GGML_TYPE_F16);
    cr_expect_leq(max_error(&f, &spec, "output.weight"), 1e-4);
    gguf_close(&f);
    unlink(path);

    spec.type = GGML_TYPE_Q4_0; /* 16 levels: steps of max|x| / 8 */
    synth_and_open(&spec, &f, path);
    cr_expect_eq(gguf_find_tensor(&f, "blk.1.attn_v.weight")->type, GGML_TYPE_Q4_0);
    cr_expect_leq(max_error(&f, &spec, "blk.1.attn_v.weight"), 1.0 / sqrt(64.0) / 8);
    gguf_close(&f);
    unlink(path);
}

/* token_embd here has more than 2^20 elements, so it is written in several chunks. */
Test(synth, chunked_tensors_and_seeds_are_deterministic) {
    synth_spec spec = {.dim = 128, .layers = 1, .heads = 4, .kv_heads = 4, .ffn = 256, .vocab = 8500,
                       .context = 64, .type = GGML_TYPE_F32, .seed = 1};
    gguf_file a, b;
    char path_a[64], path_b[64];
    synth_and_open(&spec, &a, path_a);
    cr_expect_eq(max_error(&a, &spec, "token_embd.weight"), 0.0);
    synth_and_open(&spec, &b, path_b);
    cr_assert_eq(a.map_size, b.map_size);
    cr_expect_eq(memcmp(a.map, b.map, a.map_size), 0, "same spec, same bytes");
    gguf_close(&b);
    unlink(path_b);

    spec.seed = 2;
    synth_and_open(&spec, &b, path_b);
    const gguf_tensor *ta = gguf_find_tensor(&a, "blk.0.attn_q.weight");
    const gguf_tensor *tb = gguf_find_tensor(&b, "blk.0.attn_q.weight");
    cr_expect_neq(memcmp(ta->data, tb->data, ta->n_bytes), 0, "another seed, other weights");
    gguf_close(&a);
    gguf_close(&b);
    unlink(path_a);
    unlink(path_b);
}

static void expect_invalid(synth_spec spec, const char *fragment) {
    ramp_error err = {{0}};
    char path[64];
    temp_path(path);
    unlink(path);
    cr_expect_eq(synth_write(&spec, path, &err), -1, "spec accepted; expected \"%s\"", fragment);
    cr_expect(strstr(err.message, fragment) != NULL, "message \"%s\" lacks \"%s\"", err.message, fragment);
    cr_expect(!file_exists(path), "no file is left behind");
}

Test(synth, invalid_specs_are_rejected) {
    synth_spec s = TINY;
    s.dim = 62;
    expect_invalid(s, "dim 62 is not a multiple of heads 4");
    s = TINY, s.kv_heads = 3;
    expect_invalid(s, "heads 4 is not a multiple of kv_heads 3");
    s = TINY, s.dim = 40, s.heads = 8, s.type = GGML_TYPE_F32;
    expect_invalid(s, "head size 5");
    s = TINY, s.dim = 48; /* head size 12 is fine, but Q8_0 rows need multiples of 32 */
    expect_invalid(s, "dim 48 and ffn 96 must be multiples of 32 for q8_0");
    s = TINY, s.ffn = 100;
    expect_invalid(s, "ffn 100 must be multiples of 32");
    s = TINY, s.vocab = 258;
    expect_invalid(s, "vocab 258 is too small");
    s = TINY, s.layers = 0;
    expect_invalid(s, "layers is 0, expected a positive number");
    s = TINY, s.context = -1;
    expect_invalid(s, "context is -1");
    s = TINY, s.type = GGML_TYPE_BF16;
    expect_invalid(s, "weight type bf16");
}

Test(synth, unwritable_path_and_bad_lookups_fail) {
    ramp_error err = {{0}};
    cr_expect_eq(synth_write(&TINY, "/nonexistent-dir/model.gguf", &err), -1);
    cr_expect(strstr(err.message, "/nonexistent-dir/model.gguf") && strstr(err.message, "cannot create"), "%s",
              err.message);
    float x[4];
    cr_expect_eq(synth_tensor_values(&TINY, "blk.9.attn_q.weight", x, 4, &err), -1);
    cr_expect(strstr(err.message, "no tensor named blk.9.attn_q.weight"), "%s", err.message);
    cr_expect_eq(synth_tensor_values(&TINY, "output_norm.weight", x, 4, &err), -1);
    cr_expect(strstr(err.message, "has 64 elements"), "%s", err.message);
}

/* ---- the writer on its own ---------------------------------------------------------------------- */

Test(gguf_writer, streams_tensors_in_any_chunking) {
    char path[64];
    temp_path(path);
    ramp_error err = {{0}};
    gguf_writer *w;
    cr_assert_eq(gguf_writer_create(&w, path, &err), 0, "%s", err.message);
    uint64_t a_dims[2] = {3, 2}, b_dims[1] = {32};
    const char *words[] = {"x", "", "yz"};
    int32_t ints[2] = {-5, 7};
    cr_assert_eq(gguf_writer_add_string_array(w, "words", words, 3, &err), 0, "%s", err.message);
    cr_assert_eq(gguf_writer_add_i32_array(w, "ints", ints, 2, &err), 0, "%s", err.message);
    cr_assert_eq(gguf_writer_add_tensor(w, "a", 2, a_dims, GGML_TYPE_F32, &err), 0, "%s", err.message);
    cr_assert_eq(gguf_writer_add_tensor(w, "b", 1, b_dims, GGML_TYPE_Q8_0, &err), 0, "%s", err.message);
    cr_expect_eq(gguf_writer_write_data(w, "x", 1, &err), -1, "data before begin_data");
    cr_expect(strstr(err.message, "before gguf_writer_begin_data"), "%s", err.message);
    cr_assert_eq(gguf_writer_begin_data(w, &err), 0, "%s", err.message);
    cr_expect_eq(gguf_writer_add_u32(w, "late", 1, &err), -1, "metadata after begin_data");

    unsigned char bytes[24 + 34];
    for (size_t i = 0; i < sizeof bytes; i++) bytes[i] = (unsigned char)i;
    /* 5 + 30 + 23 bytes: the middle write finishes a and starts b. */
    cr_assert_eq(gguf_writer_write_data(w, bytes, 5, &err), 0, "%s", err.message);
    cr_assert_eq(gguf_writer_write_data(w, bytes + 5, 30, &err), 0, "%s", err.message);
    cr_assert_eq(gguf_writer_write_data(w, bytes + 35, 23, &err), 0, "%s", err.message);
    cr_assert_eq(gguf_writer_finish(w, &err), 0, "%s", err.message);
    gguf_writer_free(w);

    gguf_file f;
    cr_assert_eq(gguf_open(&f, path, &err), 0, "%s", err.message);
    const gguf_kv *kv = gguf_find(&f, "words");
    cr_assert_not_null(kv);
    cr_expect_eq(kv->array_length, 3);
    cr_expect(gguf_string_equals(kv->array_strings[1], ""));
    cr_expect(gguf_string_equals(kv->array_strings[2], "yz"));
    cr_expect_eq(gguf_array_i64(gguf_find(&f, "ints"), 0), -5);
    const gguf_tensor *a = gguf_find_tensor(&f, "a"), *b = gguf_find_tensor(&f, "b");
    cr_assert(a && b);
    cr_expect_eq(memcmp(a->data, bytes, 24), 0);
    cr_expect_eq(memcmp(b->data, bytes + 24, 34), 0);
    cr_expect_eq(b->offset, 32, "a's 24 bytes padded to 32");
    gguf_close(&f);
    unlink(path);
}

Test(gguf_writer, mistakes_are_reported_and_leave_no_file) {
    char path[64];
    temp_path(path);
    ramp_error err = {{0}};
    gguf_writer *w;
    cr_assert_eq(gguf_writer_create(&w, path, &err), 0, "%s", err.message);
    uint64_t dims[1] = {33};
    cr_assert_eq(gguf_writer_add_u32(w, "k", 1, &err), 0);
    cr_expect_eq(gguf_writer_add_u32(w, "k", 2, &err), -1);
    cr_expect(strstr(err.message, "duplicate metadata key k"), "%s", err.message);
    cr_expect_eq(gguf_writer_add_tensor(w, "q", 1, dims, GGML_TYPE_Q8_0, &err), -1);
    cr_expect(strstr(err.message, "row length 33"), "%s", err.message);
    cr_expect_eq(gguf_writer_add_tensor(w, "t", 0, dims, GGML_TYPE_F32, &err), -1);
    cr_expect(strstr(err.message, "0 dimensions"), "%s", err.message);
    cr_assert_eq(gguf_writer_add_tensor(w, "t", 1, dims, GGML_TYPE_F32, &err), 0, "%s", err.message);
    cr_expect_eq(gguf_writer_add_tensor(w, "t", 1, dims, GGML_TYPE_F32, &err), -1);
    cr_expect(strstr(err.message, "duplicate tensor t"), "%s", err.message);
    cr_assert_eq(gguf_writer_begin_data(w, &err), 0, "%s", err.message);
    unsigned char data[200] = {0};
    cr_assert_eq(gguf_writer_write_data(w, data, 100, &err), 0, "%s", err.message);
    cr_expect_eq(gguf_writer_finish(w, &err), -1);
    cr_expect(strstr(err.message, "tensor t has 100 of its 132 bytes"), "%s", err.message);
    cr_expect_eq(gguf_writer_write_data(w, data, 32, &err), -1, "refuses after a failure");
    gguf_writer_free(w);
    cr_expect(!file_exists(path), "an unfinished file is deleted");

    cr_assert_eq(gguf_writer_create(&w, path, &err), 0, "%s", err.message);
    cr_assert_eq(gguf_writer_add_tensor(w, "t", 1, dims, GGML_TYPE_F32, &err), 0, "%s", err.message);
    cr_assert_eq(gguf_writer_begin_data(w, &err), 0, "%s", err.message);
    cr_expect_eq(gguf_writer_write_data(w, data, 133, &err), -1);
    cr_expect(strstr(err.message, "more tensor data"), "%s", err.message);
    gguf_writer_free(w);
    cr_expect(!file_exists(path));
}
