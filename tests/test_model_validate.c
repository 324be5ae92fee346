/* test_model_validate.c: a model's declared configuration is checked before it is used (issue 12):
 * an infinite or NaN RMSNorm epsilon, a llama.block_count that disagrees with the blk.* tensors
 * present, and llama2.c header fields that overflowed `int` while sizes were derived (UBSan in
 * config_derive). Models are synthesized here (model/synth.h) and patched byte by byte, so the
 * tests need nothing from the shared folder. */
#include <criterion/criterion.h>

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "model.h"
#include "synth.h"

static const synth_spec TINY = {
    .dim = 64, .layers = 3, .heads = 4, .kv_heads = 2, .ffn = 96, .vocab = 300, .context = 128,
    .type = GGML_TYPE_F32, .seed = 3,
};

typedef struct {
    char path[64];
    unsigned char *bytes;
    size_t size;
} model_file;

static void synth_file(model_file *m, const synth_spec *spec) {
    snprintf(m->path, sizeof m->path, "/tmp/ramp-test-validate-XXXXXX");
    int fd = mkstemp(m->path);
    cr_assert_geq(fd, 0);
    close(fd);
    ramp_error err = {{0}};
    cr_assert_eq(synth_write(spec, m->path, &err), 0, "%s", err.message);
    FILE *f = fopen(m->path, "rb");
    fseek(f, 0, SEEK_END);
    m->size = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    m->bytes = malloc(m->size);
    cr_assert_eq(fread(m->bytes, 1, m->size, f), m->size);
    fclose(f);
}

static void write_bytes(const model_file *m, const void *bytes, size_t size) {
    FILE *f = fopen(m->path, "wb");
    cr_assert_eq(fwrite(bytes, 1, size, f), size);
    fclose(f);
}

/* The offset of the value of metadata key `key`: the key's bytes, then its 4-byte type. */
static size_t value_offset(const model_file *m, const char *key) {
    size_t n = strlen(key);
    for (size_t i = 0; i + n + 4 <= m->size; i++)
        if (memcmp(m->bytes + i, key, n) == 0 && m->bytes[i + n] < 16 && m->bytes[i + n + 1] == 0)
            return i + n + 4;
    cr_assert_fail("key %s not found", key);
    return 0;
}

/* The file with 4 bytes at the key's value replaced; loading must fail naming the file and `word`. */
static void assert_patch_refused(const model_file *m, const char *key, const void *value, const char *word) {
    unsigned char *copy = malloc(m->size);
    memcpy(copy, m->bytes, m->size);
    memcpy(copy + value_offset(m, key), value, 4);
    write_bytes(m, copy, m->size);
    free(copy);
    model mdl;
    ramp_error err = {{0}};
    cr_assert_eq(model_load(&mdl, m->path, NULL, true, NULL, &err), -1, "%s = patched should be refused", key);
    cr_assert_not_null(strstr(err.message, m->path), "%s", err.message);
    cr_assert_not_null(strstr(err.message, word), "expected '%s' in: %s", word, err.message);
    model_config config;
    cr_assert_eq(model_read_config(m->path, &config, &err), -1, "model_read_config accepts what model_load refuses");
    write_bytes(m, m->bytes, m->size);
}

static void remove_file(model_file *m) {
    unlink(m->path);
    free(m->bytes);
}

Test(model_validate, synthesized_model_loads) {
    model_file m;
    synth_file(&m, &TINY);
    model mdl;
    ramp_error err = {{0}};
    cr_assert_eq(model_load(&mdl, m.path, NULL, true, NULL, &err), 0, "%s", err.message);
    cr_assert_eq(mdl.config.n_layers, 3);
    model_free(&mdl);
    remove_file(&m);
}

Test(model_validate, norm_epsilon_must_be_finite_and_positive) {
    model_file m;
    synth_file(&m, &TINY);
    const char *key = "llama.attention.layer_norm_rms_epsilon";
    const float bad[] = {INFINITY, NAN, -1e-5f, 0.0f, 1e30f};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) assert_patch_refused(&m, key, &bad[i], "epsilon");
    const float inf = INFINITY;
    assert_patch_refused(&m, "llama.rope.freq_base", &inf, "RoPE base");
    remove_file(&m);
}

Test(model_validate, block_count_must_match_the_blocks_present) {
    model_file m;
    synth_file(&m, &TINY);
    const uint32_t fewer = 2, more = 4, none = 0, huge = 0x7fffffff;
    assert_patch_refused(&m, "llama.block_count", &fewer, "blk.2"); /* the file holds blocks 0..2 */
    assert_patch_refused(&m, "llama.block_count", &more, "block 3 has no tensors");
    assert_patch_refused(&m, "llama.block_count", &none, "block_count");
    assert_patch_refused(&m, "llama.block_count", &huge, "block_count");
    remove_file(&m);
}

Test(model_validate, head_counts_are_checked_before_sizes_are_derived) {
    model_file m;
    synth_file(&m, &TINY);
    /* head_count_kv 2^31 - 1 made head_dim * n_kv_heads overflow int. */
    const uint32_t huge = 0x7fffffff, zero = 0, beyond = 0x80000000u;
    assert_patch_refused(&m, "llama.attention.head_count_kv", &huge, "head_count_kv");
    assert_patch_refused(&m, "llama.attention.head_count_kv", &beyond, "head_count_kv");
    assert_patch_refused(&m, "llama.attention.head_count", &zero, "head_count");
    assert_patch_refused(&m, "llama.attention.head_count", &huge, "head_count");
    assert_patch_refused(&m, "llama.embedding_length", &huge, "embedding_length");
    assert_patch_refused(&m, "llama.feed_forward_length", &huge, "feed_forward_length");
    remove_file(&m);
}

/* ---- llama2.c headers ---- */

/* A llama2.c header alone: every field must be checked before any size is computed from it, so
 * the missing weights are never reached. */
static void assert_header_refused(int32_t header[7], const char *field) {
    char path[] = "/tmp/ramp-test-llama2c-XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    cr_assert_eq(write(fd, header, 7 * sizeof *header), (ssize_t)(7 * sizeof *header));
    close(fd);
    model mdl;
    ramp_error err = {{0}};
    cr_assert_eq(model_load(&mdl, path, NULL, false, NULL, &err), -1, "header with bad %s accepted", field);
    cr_assert_not_null(strstr(err.message, field), "expected '%s' in: %s", field, err.message);
    cr_assert_not_null(strstr(err.message, path), "%s", err.message);
    unlink(path);
}

Test(model_validate, llama2c_header_fields_are_checked_before_sizes_are_derived) {
    /* stories260K's header: dim 64, hidden 172, 5 layers, 8 heads, 4 KV heads, vocab 512, seq 512. */
    const int32_t good[7] = {64, 172, 5, 8, 4, 512, 512};
    static const struct {
        int field;
        int32_t value;
        const char *name;
    } cases[] = {
        {4, INT32_MAX, "n_kv_heads"}, /* was: signed overflow in config_derive (UBSan) */
        {4, INT32_MIN, "n_kv_heads"}, {4, 0, "n_kv_heads"},      {4, 16, "n_kv_heads"},
        {3, -1, "n_heads"},           {3, 0, "n_heads"},         {3, INT32_MAX, "n_heads"},
        {0, INT32_MIN, "dim"},        {0, INT32_MAX, "dim"},     {0, 0, "dim"},
        {1, INT32_MAX, "hidden_dim"}, {1, -172, "hidden_dim"},   {2, INT32_MAX, "n_layers"},
        {2, 0, "n_layers"},           {5, INT32_MIN, "vocab_size"}, {5, 0, "vocab_size"},
        {6, INT32_MAX, "seq_len"},    {6, -1, "seq_len"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int32_t header[7];
        memcpy(header, good, sizeof header);
        header[cases[i].field] = cases[i].value;
        assert_header_refused(header, cases[i].name);
    }
    /* A sound header over missing weights fails on the size, not on a field. */
    int32_t header[7];
    memcpy(header, good, sizeof header);
    assert_header_refused(header, "expected");
}
