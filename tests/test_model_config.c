/* test_model_config.c: what model_load makes of a file's architecture and RoPE metadata.
 *
 * Tiny llama GGUF files are written here (dim 32, one layer, random F32 weights): an architecture
 * other than llama and RoPE scaling ramp does not implement (YaRN) are refused with their names;
 * linear scaling and Llama 3.1's rope_freqs tensor are read and change the layer's output exactly
 * as a scaled position would. */
#include <criterion/criterion.h>

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "forward.h"
#include "gguf_writer.h"
#include "kv_cache.h"
#include "model.h"

enum { DIM = 32, HEADS = 2, FFN = 32, VOCAB = 8, PAIRS = DIM / HEADS / 2 };

typedef struct {
    const char *arch;
    const char *scaling_type; /* NULL: no key */
    float scaling_factor;
    const float *rope_freqs; /* [PAIRS] or NULL: no tensor */
    uint32_t key_length;     /* <arch>.attention.key_length, or 0: no key */
    uint32_t value_length;   /* <arch>.attention.value_length, or 0: no key */
    uint32_t expert_count;   /* <arch>.expert_count, or 0: no key */
} tiny_spec;

static uint32_t rng_state;
static float uniform(void) {
    rng_state = rng_state * 1664525u + 1013904223u;
    return (float)(rng_state >> 8) / 16777216.0f - 0.5f;
}

static void add_tensor(gguf_writer *w, const char *name, uint64_t d0, uint64_t d1) {
    ramp_error err = {{0}};
    uint64_t dims[2] = {d0, d1};
    cr_assert_eq(gguf_writer_add_tensor(w, name, d1 == 1 ? 1 : 2, dims, GGML_TYPE_F32, &err), 0, "%s", err.message);
}

static void write_values(gguf_writer *w, size_t n, const float *values) {
    ramp_error err = {{0}};
    for (size_t i = 0; i < n; i++) {
        float v = values ? values[i] : uniform();
        cr_assert_eq(gguf_writer_write_data(w, &v, sizeof v, &err), 0, "%s", err.message);
    }
}

/* Writes the tiny model to a temporary file (path in out). */
static void write_tiny(const tiny_spec *s, char *out, size_t size) {
    snprintf(out, size, "%s/ramp-tiny-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    int fd = mkstemp(out);
    cr_assert_geq(fd, 0);
    close(fd);
    gguf_writer *w;
    ramp_error err = {{0}};
    cr_assert_eq(gguf_writer_create(&w, out, &err), 0, "%s", err.message);
    cr_assert_eq(gguf_writer_add_string(w, "general.architecture", s->arch, &err), 0);
    char key[64];
    const struct { const char *name; uint32_t value; } u32s[] = {
        {"block_count", 1}, {"embedding_length", DIM}, {"feed_forward_length", FFN}, {"attention.head_count", HEADS},
        {"context_length", 64},
    };
    for (size_t i = 0; i < sizeof u32s / sizeof u32s[0]; i++) {
        snprintf(key, sizeof key, "%s.%s", s->arch, u32s[i].name);
        cr_assert_eq(gguf_writer_add_u32(w, key, u32s[i].value, &err), 0, "%s", err.message);
    }
    if (s->expert_count) {
        snprintf(key, sizeof key, "%s.expert_count", s->arch);
        cr_assert_eq(gguf_writer_add_u32(w, key, s->expert_count, &err), 0, "%s", err.message);
    }
    if (s->key_length) {
        snprintf(key, sizeof key, "%s.attention.key_length", s->arch);
        cr_assert_eq(gguf_writer_add_u32(w, key, s->key_length, &err), 0, "%s", err.message);
    }
    if (s->value_length) {
        snprintf(key, sizeof key, "%s.attention.value_length", s->arch);
        cr_assert_eq(gguf_writer_add_u32(w, key, s->value_length, &err), 0, "%s", err.message);
    }
    if (s->scaling_type) {
        cr_assert_eq(gguf_writer_add_string(w, "llama.rope.scaling.type", s->scaling_type, &err), 0);
        cr_assert_eq(gguf_writer_add_f32(w, "llama.rope.scaling.factor", s->scaling_factor, &err), 0);
    }
    add_tensor(w, "token_embd.weight", DIM, VOCAB);
    add_tensor(w, "output_norm.weight", DIM, 1);
    if (s->rope_freqs) add_tensor(w, "rope_freqs.weight", PAIRS, 1);
    const char *layer[] = {"attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_norm", "ffn_gate", "ffn_up",
                           "ffn_down"};
    for (size_t i = 0; i < 9; i++) {
        snprintf(key, sizeof key, "blk.0.%s.weight", layer[i]);
        add_tensor(w, key, DIM, strstr(layer[i], "norm") ? 1 : DIM);
    }
    cr_assert_eq(gguf_writer_begin_data(w, &err), 0, "%s", err.message);
    rng_state = 42; /* the same weights in every file */
    write_values(w, (size_t)DIM * VOCAB, NULL);
    float ones[DIM];
    for (int i = 0; i < DIM; i++) ones[i] = 1.0f;
    write_values(w, DIM, ones);
    if (s->rope_freqs) write_values(w, PAIRS, s->rope_freqs);
    for (size_t i = 0; i < 9; i++) {
        bool norm = strstr(layer[i], "norm") != NULL;
        write_values(w, norm ? DIM : (size_t)DIM * DIM, norm ? ones : NULL);
    }
    cr_assert_eq(gguf_writer_finish(w, &err), 0, "%s", err.message);
    gguf_writer_free(w);
}

/* The layer's output for token 3 at position `position` (earlier positions filled with token 1). */
static void run_layer(const char *path, int position, float out[DIM]) {
    model m;
    ramp_error err = {{0}};
    cr_assert_eq(model_load(&m, path, NULL, false, NULL, &err), 0, "%s", err.message);
    kv_cache kv;
    cr_assert_eq(kv_cache_init(&kv, 1, m.config.n_kv_heads, m.config.head_dim, KV_F32, 1, &err), 0, "%s", err.message);
    cr_assert_eq(kv_slot_reserve(&kv, 0, 64, &err), 0, "%s", err.message);
    forward_workspace ws;
    cr_assert_eq(forward_workspace_init(&ws, &m.config, 64, 64, &err), 0, "%s", err.message);
    int tokens[64], slots[64], positions[64];
    for (int i = 0; i <= position; i++) tokens[i] = i == position ? 3 : 1, slots[i] = 0, positions[i] = i;
    float *hidden = calloc((size_t)(position + 1) * DIM, sizeof(float));
    cr_assert_eq(forward_embed(&m, tokens, position + 1, hidden, &err), 0, "%s", err.message);
    forward_rows rows = {position + 1, slots, positions, NULL};
    cr_assert_eq(forward_layers(&m, 0, 1, &kv, &rows, hidden, &ws, &err), 0, "%s", err.message);
    memcpy(out, hidden + (size_t)position * DIM, sizeof(float) * DIM);
    free(hidden);
    forward_workspace_free(&ws);
    kv_cache_free(&kv);
    model_free(&m);
}

static float max_difference(const float *a, const float *b) {
    float worst = 0.0f;
    for (int i = 0; i < DIM; i++) worst = fmaxf(worst, fabsf(a[i] - b[i]));
    return worst;
}

/* model_read_config of the tiny model s: its status, and the message in err. */
static int read_tiny_config(const tiny_spec *s, ramp_error *err) {
    char path[256];
    write_tiny(s, path, sizeof path);
    model_config c;
    int status = model_read_config(path, &c, err);
    unlink(path);
    return status;
}

Test(model_config, an_architecture_ramp_does_not_run_is_refused_by_name) {
    ramp_error err = {{0}};
    cr_assert_eq(read_tiny_config(&(tiny_spec){.arch = "starcoder2"}, &err), -1);
    cr_assert_not_null(strstr(err.message, "architecture 'starcoder2' is not supported"), "%s", err.message);
}

/* Mixtral-style files (architecture llama, experts instead of one feed-forward) are refused by name. */
Test(model_config, a_mixture_of_experts_is_refused_by_name) {
    ramp_error err = {{0}};
    cr_assert_eq(read_tiny_config(&(tiny_spec){.arch = "llama", .expert_count = 8}, &err), -1);
    cr_assert_not_null(strstr(err.message, "llama.expert_count is 8: a mixture-of-experts model"), "%s", err.message);
}

/* A head size of the file's own (attention.key_length, as Mistral NeMo and Small set it) gives the
 * queries, keys and values their own width; keys and values of different sizes are refused by name. */
Test(model_config, a_head_size_of_the_files_own_sets_the_attention_widths) {
    ramp_error err = {{0}};
    char path[256];
    write_tiny(&(tiny_spec){.arch = "llama", .key_length = 8, .value_length = 8}, path, sizeof path);
    model_config c;
    cr_assert_eq(model_read_config(path, &c, &err), 0, "%s", err.message);
    unlink(path);
    cr_expect_eq(c.head_dim, 8);
    cr_expect_eq(c.q_dim, 8 * HEADS);
    cr_expect_eq(c.kv_dim, 8 * c.n_kv_heads);
    cr_expect_eq(c.rope_dim, 8, "RoPE turns the whole head unless the file says otherwise");
    cr_assert_eq(read_tiny_config(&(tiny_spec){.arch = "llama", .key_length = 8, .value_length = 16}, &err), -1);
    cr_assert_not_null(strstr(err.message, "keys of 8 values per head and values of 16"), "%s", err.message);
    cr_assert_eq(read_tiny_config(&(tiny_spec){.arch = "llama", .key_length = 1u << 20}, &err), -1);
    cr_assert_not_null(strstr(err.message, "llama.attention.key_length is 1048576"), "%s", err.message);
    cr_assert_eq(read_tiny_config(&(tiny_spec){.arch = "llama", .key_length = DIM / HEADS}, &err), 0, "%s",
                 err.message);
}

/* The same weights as qwen2 (its keys, no biases here) rotate the two halves of each head instead of
 * neighbouring pairs: the same output where every angle is 0 (position 0), another one elsewhere. */
Test(model_config, qwen2_rotates_head_halves) {
    char llama[256], qwen2[256];
    tiny_spec s_llama = {.arch = "llama"}, s_qwen2 = {.arch = "qwen2"};
    write_tiny(&s_llama, llama, sizeof llama);
    write_tiny(&s_qwen2, qwen2, sizeof qwen2);
    model_config c;
    ramp_error err = {{0}};
    cr_assert_eq(model_read_config(qwen2, &c, &err), 0, "%s", err.message);
    cr_assert(c.rope_halves);
    cr_assert_eq(model_read_config(llama, &c, &err), 0, "%s", err.message);
    cr_assert(!c.rope_halves);
    float a[DIM], b[DIM];
    run_layer(llama, 0, a);
    run_layer(qwen2, 0, b);
    cr_assert_eq(max_difference(a, b), 0.0f, "at position 0 RoPE is the identity, whatever the pairs");
    run_layer(llama, 8, a);
    run_layer(qwen2, 8, b);
    cr_assert_gt(max_difference(a, b), 1e-4f, "qwen2 rotated the same pairs as llama");
    unlink(llama);
    unlink(qwen2);
}

Test(model_config, yarn_scaling_is_refused_by_name) {
    char path[256];
    tiny_spec s = {.arch = "llama", .scaling_type = "yarn", .scaling_factor = 4.0f};
    write_tiny(&s, path, sizeof path);
    model m;
    ramp_error err = {{0}};
    int status = model_load(&m, path, NULL, false, NULL, &err);
    unlink(path);
    cr_assert_eq(status, -1);
    cr_assert_not_null(strstr(err.message, "RoPE scaling 'yarn'"), "%s", err.message);
}

/* Linear scaling by 4 at position 8 rotates like position 2 unscaled; rope_freqs of 4 everywhere
 * does the same; rope_freqs of 1 change nothing. */
Test(model_config, linear_scaling_and_rope_freqs_act_as_scaled_positions) {
    char plain[256], linear[256], freqs4[256], freqs1[256];
    float fours[PAIRS], ones[PAIRS];
    for (int i = 0; i < PAIRS; i++) fours[i] = 4.0f, ones[i] = 1.0f;
    tiny_spec s_plain = {.arch = "llama"}, s_linear = {.arch = "llama", .scaling_type = "linear", .scaling_factor = 4.0f},
              s_freqs4 = {.arch = "llama", .rope_freqs = fours}, s_freqs1 = {.arch = "llama", .rope_freqs = ones};
    write_tiny(&s_plain, plain, sizeof plain);
    write_tiny(&s_linear, linear, sizeof linear);
    write_tiny(&s_freqs4, freqs4, sizeof freqs4);
    write_tiny(&s_freqs1, freqs1, sizeof freqs1);
    model_config c;
    ramp_error err = {{0}};
    cr_assert_eq(model_read_config(linear, &c, &err), 0, "%s", err.message);
    cr_assert_float_eq(c.rope_freq_scale, 0.25f, 1e-7);

    /* Token 3 at position 8 after eight tokens 1: the angles are position x frequency, so scaling
     * the positions by 1/4 and dividing the frequencies by 4 give the same rotations. */
    float a[DIM], b[DIM], d[DIM], e[DIM];
    run_layer(plain, 8, a);
    run_layer(linear, 8, b);
    run_layer(freqs4, 8, d);
    run_layer(freqs1, 8, e);
    cr_assert_gt(max_difference(a, b), 1e-6f, "linear scaling changed nothing");
    cr_assert_lt(max_difference(b, d), 1e-6f, "scaling positions by 1/4 and dividing frequencies by 4 differ");
    cr_assert_eq(max_difference(a, e), 0.0f, "rope_freqs of 1 changed the output");
    unlink(plain);
    unlink(linear);
    unlink(freqs4);
    unlink(freqs1);
}
