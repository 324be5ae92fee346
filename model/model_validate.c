#include "model_validate.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *name;
    long long value, min, max;
} field;

/* The first field outside its range, reported as "PATH: FORMAT NAME = V, expected MIN..MAX". */
static int check_fields(const char *path, const char *what, const field *fields, int n, ramp_error *err) {
    for (int i = 0; i < n; i++)
        if (fields[i].value < fields[i].min || fields[i].value > fields[i].max)
            return ramp_fail(err, "%s: %s %s is %lld, expected %lld..%lld", path, what, fields[i].name, fields[i].value,
                             fields[i].min, fields[i].max);
    return 0;
}

int llama2c_header_check(const char *path, const int32_t h[7], ramp_error *err) {
    /* vocab_size is negative when the checkpoint has its own classifier (the head is not shared). */
    long long vocab = h[5] < 0 ? -(long long)h[5] : h[5];
    const field fields[] = {
        {"dim", h[0], 1, MODEL_MAX_DIM},
        {"hidden_dim", h[1], 1, MODEL_MAX_FFN},
        {"n_layers", h[2], 1, MODEL_MAX_LAYERS},
        {"n_heads", h[3], 1, h[0]},
        {"n_kv_heads", h[4], 1, h[3]},
        {"|vocab_size|", vocab, 1, MODEL_MAX_VOCAB},
        {"seq_len", h[6], 1, MODEL_MAX_CONTEXT},
    };
    return check_fields(path, "llama2.c header field", fields, (int)(sizeof fields / sizeof fields[0]), err);
}

int model_shape_check(const char *path, const model_config *c, ramp_error *err) {
    const field fields[] = {
        {"llama.embedding_length", c->dim, 1, MODEL_MAX_DIM},
        {"llama.feed_forward_length", c->ffn_dim, 1, MODEL_MAX_FFN},
        {"llama.block_count", c->n_layers, 1, MODEL_MAX_LAYERS},
        {"llama.attention.head_count", c->n_heads, 1, c->dim},
        {"llama.attention.head_count_kv", c->n_kv_heads, 1, c->n_heads},
    };
    return check_fields(path, "metadata", fields, (int)(sizeof fields / sizeof fields[0]), err);
}

int model_norm_check(const char *path, const model_config *c, ramp_error *err) {
    if (!isfinite(c->rms_eps) || !(c->rms_eps > 0.0f) || c->rms_eps > 1.0f)
        return ramp_fail(err, "%s: RMSNorm epsilon (llama.attention.layer_norm_rms_epsilon) is %g, expected a small "
                              "positive number such as 1e-5",
                         path, c->rms_eps);
    if (!isfinite(c->rope_base) || !(c->rope_base > 0.0f))
        return ramp_fail(err, "%s: RoPE base (llama.rope.freq_base) is %g, expected a finite positive number", path,
                         c->rope_base);
    return 0;
}

/* The block number of a tensor named "blk.N.<rest>", or -1 for other names. Numbers past any
 * plausible block count read as INT32_MAX rather than overflowing. */
static long block_number(const char *name) {
    if (strncmp(name, "blk.", 4) != 0) return -1;
    const char *p = name + 4;
    if (*p < '0' || *p > '9') return -1;
    long number = 0;
    for (; *p >= '0' && *p <= '9'; p++) number = number < INT32_MAX / 10 ? number * 10 + (*p - '0') : INT32_MAX;
    return *p == '.' ? number : -1;
}

int gguf_blocks_check(const gguf_file *f, int n_layers, ramp_error *err) {
    if (n_layers < 1 || n_layers > MODEL_MAX_LAYERS) return 0; /* config_validate reports it */
    bool present[MODEL_MAX_LAYERS] = {false};
    for (uint64_t t = 0; t < f->n_tensors; t++) {
        long block = block_number(f->tensors[t].name);
        if (block < 0) continue;
        if (block >= n_layers)
            return ramp_fail(err, "%s: tensor %s belongs to block %ld, but llama.block_count is %d (expected blocks "
                                  "0..%d only)",
                             f->path, f->tensors[t].name, block, n_layers, n_layers - 1);
        present[block] = true;
    }
    for (int l = 0; l < n_layers; l++)
        if (!present[l])
            return ramp_fail(err, "%s: llama.block_count is %d but block %d has no tensors (no blk.%d.*)", f->path,
                             n_layers, l, l);
    return 0;
}
