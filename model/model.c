#include "model.h"

#include <math.h>

#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "model_validate.h"
#include "parallel.h"
#include "quant.h"
#include "weight_pages.h"

/* ---- shared validation ---------------------------------------------------------------------- */

static int config_validate(const char *path, const model_config *c, ramp_error *err) {
    if (c->dim <= 0 || c->n_layers <= 0 || c->n_heads <= 0 || c->n_kv_heads <= 0 || c->ffn_dim <= 0 ||
        c->vocab_size <= 0 || c->context_length <= 0)
        return ramp_fail(err,
                         "%s: model sizes must be positive, found dim %d, layers %d, heads %d, kv heads %d, "
                         "ffn %d, vocab %d, context %d",
                         path, c->dim, c->n_layers, c->n_heads, c->n_kv_heads, c->ffn_dim, c->vocab_size,
                         c->context_length);
    if (c->dim > (1 << 16) || c->ffn_dim > (1 << 18) || c->n_layers > 1024 || c->vocab_size > (1 << 22))
        return ramp_fail(err, "%s: implausible model sizes (dim %d, ffn %d, layers %d, vocab %d)", path, c->dim,
                         c->ffn_dim, c->n_layers, c->vocab_size);
    /* without a head size of the file's own, the heads share the embedding out evenly */
    if (c->q_dim != c->dim && c->head_dim == c->dim / c->n_heads)
        return ramp_fail(err, "%s: embedding length %d is not a multiple of the head count %d", path, c->dim,
                         c->n_heads);
    if (c->n_heads % c->n_kv_heads != 0)
        return ramp_fail(err, "%s: head count %d is not a multiple of the KV head count %d", path, c->n_heads,
                         c->n_kv_heads);
    if (c->rope_dim <= 0 || c->rope_dim > c->head_dim || c->rope_dim % 2 != 0)
        return ramp_fail(err, "%s: RoPE dimension count %d must be even and at most the head size %d", path,
                         c->rope_dim, c->head_dim);
    if (model_norm_check(path, c, err)) return -1;
    if (!(c->rms_eps > 0.0f) || !(c->rope_base > 0.0f))
        return ramp_fail(err, "%s: RMS epsilon %g and RoPE base %g must be positive", path, c->rms_eps,
                         c->rope_base);
    return 0;
}

/* The head size and widths that follow from the sizes read; head_size 0: dim / n_heads. */
static void config_derive(model_config *c, int head_size) {
    c->head_dim = head_size > 0 ? head_size : c->n_heads > 0 ? c->dim / c->n_heads : 0;
    c->q_dim = c->head_dim * c->n_heads;
    c->kv_dim = c->head_dim * c->n_kv_heads;
    c->attention_scale = c->head_dim > 0 ? 1.0f / sqrtf((float)c->head_dim) : 0.0f;
    c->embedding_scale = c->residual_scale = c->logit_scale = 1.0f;
}

static int slice_resolve(const char *path, const model_config *c, const model_slice *requested,
                         model_slice *out, ramp_error *err) {
    model_slice all = {0, c->n_layers, true, true};
    *out = requested ? *requested : all;
    if (out->end_layer < 0) out->end_layer = c->n_layers;
    if (out->first_layer < 0 || out->first_layer > out->end_layer || out->end_layer > c->n_layers)
        return ramp_fail(err, "%s: layer range %d-%d does not fit a model of %d layers", path, out->first_layer,
                         out->end_layer - 1, c->n_layers);
    return 0;
}

static int model_keep_buffer(model *m, float *buffer) {
    float **grown = realloc(m->owned_buffers, (size_t)(m->n_owned_buffers + 1) * sizeof *grown);
    if (!grown) return -1;
    m->owned_buffers = grown;
    m->owned_buffers[m->n_owned_buffers++] = buffer;
    return 0;
}

/* ---- GGUF ----------------------------------------------------------------------------------- */

/* The architectures ramp runs, by general.architecture: the prefix of their hyperparameter keys
 * and what sets them apart (model.h). */
typedef struct {
    const char *name;
    bool rope_halves, head_norms, fused_gate_up, multipliers;
    int gemma; /* 2 or 3: sliding windows, norms after attention and feed-forward, GELU, sqrt(dim) embedding */
} architecture;

static const architecture ARCHITECTURES[] = {
    {"llama", false, false, false, false, 0}, {"qwen2", true, false, false, false, 0},
    {"qwen3", true, true, false, false, 0},   {"phi3", true, false, true, false, 0},
    {"granite", false, false, false, true, 0}, {"gemma", true, false, false, false, 1},
    {"gemma2", true, false, false, false, 2},
    {"gemma3", true, true, false, false, 3},
};

/* "<architecture>.<suffix>", the name of a hyperparameter key. */
typedef struct {
    char text[96];
} key_name;

static key_name arch_key(const architecture *a, const char *suffix) {
    key_name k;
    snprintf(k.text, sizeof k.text, "%s.%s", a->name, suffix);
    return k;
}

/* RoPE scaling: none, linear (positions divided by the factor), or per-frequency factors in a
 * rope_freqs tensor (Llama 3.1+, read with the weights). YaRN and the rest change attention in ways
 * ramp does not implement: refused rather than run wrong. */
static int gguf_read_rope_scaling(const gguf_file *f, const architecture *a, model_config *c, ramp_error *err) {
    c->rope_freq_scale = 1.0f;
    float factor = 0.0f;
    const key_name type_key = arch_key(a, "rope.scaling.type"), factor_key = arch_key(a, "rope.scaling.factor"),
                   linear_key = arch_key(a, "rope.scale_linear");
    const gguf_kv *type = gguf_find(f, type_key.text);
    if (type) {
        if (type->type != GGUF_VALUE_STRING) return ramp_fail(err, "%s: %s is not a string", f->path, type_key.text);
        if (gguf_string_equals(type->value.s, "none")) return 0;
        if (!gguf_string_equals(type->value.s, "linear"))
            return ramp_fail(err, "%s: RoPE scaling '%.*s' (%s) is not supported: ramp implements none, linear and "
                                  "Llama 3's rope_freqs", f->path,
                             (int)(type->value.s.length < 32 ? type->value.s.length : 32), type->value.s.data,
                             type_key.text);
        if (gguf_get_f32(f, factor_key.text, &factor, err)) return -1;
    } else if (gguf_find(f, linear_key.text)) { /* older files */
        if (gguf_get_f32(f, linear_key.text, &factor, err)) return -1;
    } else {
        return 0;
    }
    if (!(factor > 0.0f) || !(factor < 1e6f))
        return ramp_fail(err, "%s: linear RoPE scaling factor %g must be positive", f->path, factor);
    c->rope_freq_scale = 1.0f / factor;
    return 0;
}

/* Granite's multipliers (model_config): logit_scale is required, as llama.cpp has it; the others
 * keep their defaults when absent. A Granite without RoPE (rope.scaling.finetuned false) is refused. */
static int gguf_read_multipliers(const gguf_file *f, const architecture *a, model_config *c, ramp_error *err) {
    const struct { const char *suffix; float *field; bool required; } keys[] = {
        {"embedding_scale", &c->embedding_scale, false}, {"attention.scale", &c->attention_scale, false},
        {"residual_scale", &c->residual_scale, false},   {"logit_scale", &c->logit_scale, true},
    };
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        key_name key = arch_key(a, keys[i].suffix);
        if (!gguf_find(f, key.text) && !keys[i].required) continue;
        if (gguf_get_f32(f, key.text, keys[i].field, err)) return -1;
        if (!(*keys[i].field > 0.0f) || !isfinite(*keys[i].field))
            return ramp_fail(err, "%s: %s is %g, expected a positive number", f->path, key.text, *keys[i].field);
    }
    const gguf_kv *finetuned = gguf_find(f, arch_key(a, "rope.scaling.finetuned").text);
    if (finetuned && finetuned->type == GGUF_VALUE_BOOL && !finetuned->value.b)
        return ramp_fail(err, "%s: %s.rope.scaling.finetuned is false: a Granite without RoPE, which ramp cannot run",
                         f->path, a->name);
    return 0;
}

/* Gemma, Gemma 2 and 3 as llama.cpp runs them: the embedding times sqrt(dim); a GELU gate; in
 * Gemma 2 and 3 norms after attention and after the feed-forward, and local layers
 * attending to the last attention.sliding_window positions: every other layer in Gemma 2 (window
 * 4096 unless the file says), five of every six in Gemma 3 (whose local layers rotate with RoPE base
 * 10000 and no scaling). The queries are scaled by 1 / sqrt(head size), but by 1 / sqrt(dim / heads)
 * for the 27B models (46 layers in Gemma 2, 62 in Gemma 3: their query_pre_attn_scalar, which the
 * file does not carry). Gemma 2 soft-caps the attention scores (50) and the logits (30) unless the
 * file says otherwise. A Gemma 3 file without a sliding window is refused: llama.cpp then runs
 * another graph. */
static int gguf_read_gemma(const gguf_file *f, const architecture *a, model_config *c, ramp_error *err) {
    c->gelu = true;
    c->embedding_scale = sqrtf((float)c->dim);
    if (a->gemma == 1) return 0; /* Gemma: no windows, no norms after the blocks, no caps */
    c->block_norms = true;
    key_name key = arch_key(a, "attention.sliding_window");
    uint32_t window = a->gemma == 2 ? 4096 : 0;
    if (gguf_find(f, key.text) && gguf_get_u32(f, key.text, &window, err)) return -1;
    if (window == 0 || window > (1u << 20))
        return ramp_fail(err, "%s: %s is %u: a Gemma %d file without a sliding window, which ramp cannot run",
                         f->path, key.text, window, a->gemma);
    c->sliding_window = (int)window;
    c->sliding_pattern = a->gemma == 2 ? 2 : 6;
    c->rope_base_local = a->gemma == 2 ? c->rope_base : 10000.0f;
    if (c->n_layers == (a->gemma == 2 ? 46 : 62)) c->attention_scale = 1.0f / sqrtf((float)(c->dim / c->n_heads));
    if (a->gemma == 2) {
        const struct { const char *suffix; float *field; float fallback; } caps[] = {
            {"attn_logit_softcapping", &c->attention_softcap, 50.0f},
            {"final_logit_softcapping", &c->logit_softcap, 30.0f},
        };
        for (size_t i = 0; i < sizeof caps / sizeof caps[0]; i++) {
            *caps[i].field = caps[i].fallback;
            key = arch_key(a, caps[i].suffix);
            if (gguf_find(f, key.text) && gguf_get_f32(f, key.text, caps[i].field, err)) return -1;
            if (!(*caps[i].field > 0.0f) || !isfinite(*caps[i].field))
                return ramp_fail(err, "%s: %s is %g, expected a positive number", f->path, key.text, *caps[i].field);
        }
    }
    return 0;
}

static int gguf_read_config(const gguf_file *f, model_config *c, ramp_error *err) {
    gguf_string name;
    if (gguf_get_string(f, "general.architecture", &name, err)) return -1;
    const architecture *a = NULL;
    for (size_t i = 0; i < sizeof ARCHITECTURES / sizeof ARCHITECTURES[0]; i++)
        if (gguf_string_equals(name, ARCHITECTURES[i].name)) a = &ARCHITECTURES[i];
    if (!a)
        return ramp_fail(err, "%s: architecture '%.*s' is not supported: ramp runs the llama architecture (Llama 1-3, "
                              "Mistral, TinyLlama, SmolLM and other files whose general.architecture is 'llama'), "
                              "qwen2 (Qwen2, Qwen2.5), qwen3 (Qwen3's dense models), phi3 (Phi-3, Phi-3.5 mini), "
                              "granite (IBM Granite 3's dense models), gemma, gemma2 and gemma3 (Gemma 1 to 3)",
                         f->path, (int)(name.length < 64 ? name.length : 64), name.data);
    uint32_t value;
    const key_name required_keys[] = {arch_key(a, "block_count"), arch_key(a, "embedding_length"),
                                      arch_key(a, "feed_forward_length"), arch_key(a, "attention.head_count")};
    memset(c, 0, sizeof *c);
    int *const required_fields[] = {&c->n_layers, &c->dim, &c->ffn_dim, &c->n_heads};
    for (size_t i = 0; i < sizeof required_keys / sizeof required_keys[0]; i++) {
        if (gguf_get_u32(f, required_keys[i].text, &value, err)) return -1;
        if (value > INT32_MAX) return ramp_fail(err, "%s: %s = %u is too large", f->path, required_keys[i].text, value);
        *required_fields[i] = (int)value;
    }
    c->rope_halves = a->rope_halves;
    c->head_norms = a->head_norms;
    c->fused_gate_up = a->fused_gate_up;
    c->n_kv_heads = c->n_heads;
    key_name key = arch_key(a, "attention.head_count_kv");
    if (gguf_find(f, key.text)) {
        if (gguf_get_u32(f, key.text, &value, err)) return -1;
        c->n_kv_heads = (int)(value > INT32_MAX ? 0 : value);
    }
    if (model_shape_check(f->path, c, err)) return -1;
    /* A head size of the file's own (Mistral NeMo and Small: 128 with dim 5120 and 32 heads) sets the
     * width of the queries, keys and values apart from the embedding's. Keys and values of different
     * sizes are refused by name rather than failing later on a tensor's shape. */
    static const char *const head_sizes[] = {"attention.key_length", "attention.value_length"};
    uint32_t sizes[2] = {0, 0};
    for (size_t i = 0; i < sizeof head_sizes / sizeof head_sizes[0]; i++) {
        key = arch_key(a, head_sizes[i]);
        if (!gguf_find(f, key.text)) continue;
        if (gguf_get_u32(f, key.text, &sizes[i], err)) return -1;
        if (sizes[i] < 2 || sizes[i] > 4096 || (uint64_t)sizes[i] * (uint64_t)c->n_heads > (1u << 16))
            return ramp_fail(err, "%s: %s is %u, expected 2 to 4096 values per head, and at most 65536 over all %d "
                                  "heads", f->path, key.text, sizes[i], c->n_heads);
    }
    if (sizes[0] && sizes[1] && sizes[0] != sizes[1])
        return ramp_fail(err, "%s: keys of %u values per head and values of %u: ramp runs heads whose keys and values "
                              "have the same size", f->path, sizes[0], sizes[1]);
    config_derive(c, (int)(sizes[0] ? sizes[0] : sizes[1]));
    /* Mixtral and the like are general.architecture llama with experts in place of each layer's
     * feed-forward: refused by name rather than as a missing blk.0.ffn_gate.weight. */
    key = arch_key(a, "expert_count");
    if (gguf_find(f, key.text)) {
        if (gguf_get_u32(f, key.text, &value, err)) return -1;
        if (value > 0)
            return ramp_fail(err, "%s: %s is %u: a mixture-of-experts model, which ramp cannot run yet (it runs "
                                  "dense models, one feed-forward per layer)", f->path, key.text, value);
    }
    c->context_length = 2048;
    key = arch_key(a, "context_length");
    if (gguf_find(f, key.text)) {
        if (gguf_get_u32(f, key.text, &value, err)) return -1;
        c->context_length = value > (1u << 20) ? (1 << 20) : (int)value;
    }
    c->rope_dim = c->head_dim;
    key = arch_key(a, "rope.dimension_count");
    if (gguf_find(f, key.text)) {
        if (gguf_get_u32(f, key.text, &value, err)) return -1;
        c->rope_dim = (int)(value > INT32_MAX ? 0 : value);
    }
    c->rope_base = 10000.0f;
    key = arch_key(a, "rope.freq_base");
    if (gguf_find(f, key.text) && gguf_get_f32(f, key.text, &c->rope_base, err)) return -1;
    c->rms_eps = 1e-5f;
    key = arch_key(a, "attention.layer_norm_rms_epsilon");
    if (gguf_find(f, key.text) && gguf_get_f32(f, key.text, &c->rms_eps, err)) return -1;
    if (gguf_read_rope_scaling(f, a, c, err)) return -1;
    if (a->multipliers && gguf_read_multipliers(f, a, c, err)) return -1;
    if (a->gemma && gguf_read_gemma(f, a, c, err)) return -1;
    /* Phi-3's 128k-context models rescale RoPE per frequency and the attention with it (LongRoPE);
     * refused rather than run wrong. Their 4k-context siblings have no such tensors. */
    static const char *const long_rope[] = {"rope_factors_long.weight", "rope_factors_short.weight"};
    for (size_t i = 0; i < sizeof long_rope / sizeof long_rope[0]; i++)
        if (gguf_find_tensor(f, long_rope[i]))
            return ramp_fail(err, "%s: tensor %s: LongRoPE (Phi-3's 128k-context models), which ramp cannot run yet "
                                  "(the 4k-context models load)", f->path, long_rope[i]);
    /* The vocabulary size is the embedding's row count. */
    const gguf_tensor *embedding = gguf_find_tensor(f, "token_embd.weight");
    if (!embedding) return ramp_fail(err, "%s: tensor token_embd.weight is missing", f->path);
    if (embedding->n_dims != 2 || embedding->dims[1] > INT32_MAX)
        return ramp_fail(err, "%s: tensor token_embd.weight must be 2-dimensional", f->path);
    c->vocab_size = (int)embedding->dims[1];
    if (config_validate(f->path, c, err)) return -1;
    return gguf_blocks_check(f, c->n_layers, err);
}

/* Finds a tensor and checks its shape (rows x cols = dims[1] x dims[0]; a vector when rows == 1). */
static int gguf_tensor_shaped(model *m, const char *name, int rows, int cols, const gguf_tensor **out,
                              ramp_error *err) {
    const gguf_tensor *t = gguf_find_tensor(&m->gguf, name);
    if (!t) return ramp_fail(err, "%s: tensor %s is missing", m->path, name);
    bool is_vector = rows == 1;
    bool shape_ok = is_vector ? (t->n_dims == 1 && t->dims[0] == (uint64_t)cols)
                              : (t->n_dims == 2 && t->dims[0] == (uint64_t)cols && t->dims[1] == (uint64_t)rows);
    if (!shape_ok) {
        char found[96];
        int used = 0;
        for (uint32_t d = 0; d < t->n_dims && used < (int)sizeof found; d++)
            used += snprintf(found + used, sizeof found - (size_t)used, "%s%llu", d ? "x" : "",
                             (unsigned long long)t->dims[d]);
        if (is_vector) return ramp_fail(err, "%s: tensor %s has shape %s, expected %d", m->path, name, found, cols);
        return ramp_fail(err, "%s: tensor %s has shape %s, expected %dx%d", m->path, name, found, cols, rows);
    }
    if (!ggml_type_is_supported(t->type))
        return ramp_fail(err, "%s: tensor %s has type %s, which ramp cannot compute with (supported: f32, f16, "
                              "bf16, q4_0, q4_1, q5_0, q5_1, q8_0, q2_K, q3_K, q4_K, q5_K, q6_K, iq4_nl, iq4_xs)",
                         m->path, name, ggml_type_name(t->type));
    *out = t;
    return 0;
}

/* A vector (norm weights, a bias) as fp32: in place when stored so, else converted into a buffer the
 * model owns. */
static int gguf_vector(model *m, const char *name, int n, const float **out, ramp_error *err) {
    const gguf_tensor *t;
    if (gguf_tensor_shaped(m, name, 1, n, &t, err)) return -1;
    if (t->type == GGML_TYPE_F32 && (uintptr_t)t->data % sizeof(float) == 0) {
        *out = t->data;
        m->weight_bytes += t->n_bytes;
        return 0;
    }
    float *buffer = malloc((size_t)n * sizeof(float));
    if (!buffer || model_keep_buffer(m, buffer)) {
        free(buffer);
        return ramp_fail(err, "%s: out of memory converting tensor %s (%d values)", m->path, name, n);
    }
    dequantize(t->type, t->data, buffer, (size_t)n); /* the type is supported: cannot fail */
    *out = buffer;
    m->weight_bytes += (size_t)n * sizeof(float);
    return 0;
}

/* Rows [first, first + rows) of a matrix, in place: a part of a fused one. */
static weight_matrix matrix_rows(const weight_matrix *whole, int first, int rows) {
    weight_matrix part = *whole;
    part.rows = rows;
    part.data = (const char *)whole->data + (size_t)first * whole->row_bytes;
    return part;
}

/* A matrix, in place in the mapping, in its stored type. */
static int gguf_matrix(model *m, const char *name, int rows, int cols, weight_matrix *out, ramp_error *err) {
    const gguf_tensor *t;
    if (gguf_tensor_shaped(m, name, rows, cols, &t, err)) return -1;
    out->type = t->type;
    out->rows = rows;
    out->cols = cols;
    out->row_bytes = quant_row_bytes(t->type, (size_t)cols);
    out->data = t->data;
    m->weight_bytes += t->n_bytes;
    return 0;
}

static int gguf_load_weights(model *m, ramp_error *err) {
    const model_config *c = &m->config;
    char name[96];
    int type_counts[64] = {0};
    for (int l = m->slice.first_layer; l < m->slice.end_layer; l++) {
        layer_weights *w = &m->layers[l];
        /* Fused matrices (Phi-3) load whole and are cut into row ranges; the rest one by one. */
        snprintf(name, sizeof name, "blk.%d.attn_qkv.weight", l);
        const bool fused_qkv = gguf_find_tensor(&m->gguf, name) != NULL;
        if (fused_qkv) {
            weight_matrix qkv;
            if (gguf_matrix(m, name, c->q_dim + 2 * c->kv_dim, c->dim, &qkv, err)) return -1;
            w->wq = matrix_rows(&qkv, 0, c->q_dim);
            w->wk = matrix_rows(&qkv, c->q_dim, c->kv_dim);
            w->wv = matrix_rows(&qkv, c->q_dim + c->kv_dim, c->kv_dim);
            if ((unsigned)qkv.type < 64) type_counts[qkv.type]++;
        }
        if (c->fused_gate_up) {
            weight_matrix gate_up;
            snprintf(name, sizeof name, "blk.%d.ffn_up.weight", l);
            if (gguf_matrix(m, name, 2 * c->ffn_dim, c->dim, &gate_up, err)) return -1;
            w->w_gate = matrix_rows(&gate_up, 0, c->ffn_dim);
            w->w_up = matrix_rows(&gate_up, c->ffn_dim, c->ffn_dim);
            if ((unsigned)gate_up.type < 64) type_counts[gate_up.type]++;
        }
        const struct { const char *suffix; int rows, cols; weight_matrix *field; bool loaded; } matrices[] = {
            {"attn_q", c->q_dim, c->dim, &w->wq, fused_qkv},
            {"attn_k", c->kv_dim, c->dim, &w->wk, fused_qkv},
            {"attn_v", c->kv_dim, c->dim, &w->wv, fused_qkv},
            {"attn_output", c->dim, c->q_dim, &w->wo, false},
            {"ffn_gate", c->ffn_dim, c->dim, &w->w_gate, c->fused_gate_up},
            {"ffn_up", c->ffn_dim, c->dim, &w->w_up, c->fused_gate_up},
            {"ffn_down", c->dim, c->ffn_dim, &w->w_down, false},
        };
        snprintf(name, sizeof name, "blk.%d.attn_norm.weight", l);
        if (gguf_vector(m, name, c->dim, &w->attn_norm, err)) return -1;
        snprintf(name, sizeof name, "blk.%d.ffn_norm.weight", l);
        if (gguf_vector(m, name, c->dim, &w->ffn_norm, err)) return -1;
        for (size_t i = 0; i < sizeof matrices / sizeof matrices[0]; i++) {
            if (matrices[i].loaded) continue;
            snprintf(name, sizeof name, "blk.%d.%s.weight", l, matrices[i].suffix);
            if (gguf_matrix(m, name, matrices[i].rows, matrices[i].cols, matrices[i].field, err)) return -1;
            if ((unsigned)matrices[i].field->type < 64) type_counts[matrices[i].field->type]++;
        }
        /* Query, key and value biases where the file has them (Qwen2 always; llama.cpp applies them
         * to a llama file too). A bias ramp would not apply is refused rather than left out. */
        const struct { const char *suffix; int n; const float **field; } biases[] = {
            {"attn_q", c->q_dim, &w->q_bias}, {"attn_k", c->kv_dim, &w->k_bias}, {"attn_v", c->kv_dim, &w->v_bias}};
        for (size_t i = 0; i < sizeof biases / sizeof biases[0]; i++) {
            snprintf(name, sizeof name, "blk.%d.%s.bias", l, biases[i].suffix);
            if (gguf_find_tensor(&m->gguf, name) && gguf_vector(m, name, biases[i].n, biases[i].field, err)) return -1;
        }
        if (c->block_norms) { /* Gemma 2 and 3's norms after attention and after the feed-forward */
            snprintf(name, sizeof name, "blk.%d.post_attention_norm.weight", l);
            if (gguf_vector(m, name, c->dim, &w->attn_post_norm, err)) return -1;
            snprintf(name, sizeof name, "blk.%d.post_ffw_norm.weight", l);
            if (gguf_vector(m, name, c->dim, &w->ffn_post_norm, err)) return -1;
        }
        if (c->head_norms) {
            snprintf(name, sizeof name, "blk.%d.attn_q_norm.weight", l);
            if (gguf_vector(m, name, c->head_dim, &w->q_norm, err)) return -1;
            snprintf(name, sizeof name, "blk.%d.attn_k_norm.weight", l);
            if (gguf_vector(m, name, c->head_dim, &w->k_norm, err)) return -1;
        }
        static const char *const unsupported_biases[] = {"attn_qkv", "attn_output", "ffn_gate", "ffn_up", "ffn_down"};
        for (size_t i = 0; i < sizeof unsupported_biases / sizeof unsupported_biases[0]; i++) {
            snprintf(name, sizeof name, "blk.%d.%s.bias", l, unsupported_biases[i]);
            if (gguf_find_tensor(&m->gguf, name))
                return ramp_fail(err, "%s: tensor %s is a bias ramp does not apply (it applies the query, key and "
                                      "value biases only)", m->path, name);
        }
    }
    int commonest = -1;
    for (int t = 0; t < 64; t++)
        if (type_counts[t] > 0 && (commonest < 0 || type_counts[t] > type_counts[commonest])) commonest = t;
    if (commonest >= 0) snprintf(m->weight_type, sizeof m->weight_type, "%s", ggml_type_name((ggml_type)commonest));

    if (m->slice.end_layer > m->slice.first_layer && gguf_find_tensor(&m->gguf, "rope_freqs.weight"))
        if (gguf_vector(m, "rope_freqs.weight", c->rope_dim / 2, &m->rope_freqs, err)) return -1;

    bool tied = gguf_find_tensor(&m->gguf, "output.weight") == NULL;
    if (m->slice.embedding || (m->slice.head && tied))
        if (gguf_matrix(m, "token_embd.weight", c->vocab_size, c->dim, &m->token_embedding, err)) return -1;
    if (m->slice.head) {
        if (gguf_vector(m, "output_norm.weight", c->dim, &m->output_norm, err)) return -1;
        if (tied) m->output = m->token_embedding;
        else if (gguf_matrix(m, "output.weight", c->vocab_size, c->dim, &m->output, err)) return -1;
    }
    if (!m->slice.embedding && !tied) memset(&m->token_embedding, 0, sizeof m->token_embedding);
    return 0;
}

/* ---- mapping the slice in ----------------------------------------------------------------------
 * Every matrix of the slice is read whole by the first forward pass. Left to page faults, that pass
 * pays one fault per few pages (measured: 17,790 faults, a quarter of a 128-token prompt's time on a
 * 390 MiB file already in the page cache); mapping the ranges at load costs a fraction of that (31 ms
 * for that file) and moves it out of the first request. weight_pages_bring_in does it, in 2 MiB pages
 * where the page cache allows (model/weight_pages.h). The token embedding is left alone (a
 * stage reads only the rows of the tokens it sees). A slice's matrices usually lie together in the
 * file, layer after layer: they are brought in as one range (what lies between them is norms and
 * biases the slice reads too), unless that range would hold much besides. */

typedef struct {
    weight_file file;
    const char *from, *end; /* the slice's layer matrices in this file: first byte, one past the last */
    size_t bytes;           /* their bytes */
} file_span;

/* The span of the file that holds w's data, or NULL (w not loaded, or in none of them). */
static file_span *span_holding(file_span *spans, int n_spans, const weight_matrix *w) {
    if (!w->data || w->rows <= 0) return NULL;
    const char *data = w->data;
    for (int i = 0; i < n_spans; i++)
        if (data >= spans[i].file.map && data + (size_t)w->rows * w->row_bytes <= spans[i].file.map + spans[i].file.map_size)
            return &spans[i];
    return NULL;
}

static void bring_in(file_span *s, const weight_matrix *w) {
    weight_pages_bring_in(&s->file, w->data, (size_t)w->rows * w->row_bytes);
}

/* Matrix `index` of the slice's layers, SLICE_MATRICES_PER_LAYER a layer in layer order. */
enum { SLICE_MATRICES_PER_LAYER = 7 };
static const weight_matrix *slice_matrix(const model *m, int index) {
    const layer_weights *w = &m->layers[m->slice.first_layer + index / SLICE_MATRICES_PER_LAYER];
    const weight_matrix *matrices[SLICE_MATRICES_PER_LAYER] = {&w->wq, &w->wk, &w->wv, &w->wo, &w->w_gate, &w->w_up, &w->w_down};
    return matrices[index % SLICE_MATRICES_PER_LAYER];
}

static void model_map_in_slice(model *m) {
    const int n_spans = m->format == MODEL_FORMAT_GGUF ? 1 + (int)m->gguf.n_other_parts : 1;
    file_span *spans = calloc((size_t)n_spans, sizeof *spans);
    if (!spans) return; /* best effort: the first pass faults the pages in */
    if (m->format == MODEL_FORMAT_GGUF) {
        spans[0].file = (weight_file){.path = m->gguf.path, .map = m->gguf.map, .map_size = m->gguf.map_size};
        for (uint32_t i = 0; i < m->gguf.n_other_parts; i++) {
            const gguf_file *part = &m->gguf.other_parts[i];
            spans[1 + i].file = (weight_file){.path = part->path, .map = part->map, .map_size = part->map_size};
        }
    } else {
        spans[0].file = (weight_file){.path = m->path, .map = m->checkpoint_map, .map_size = m->checkpoint_size};
    }
    const int n_matrices = (m->slice.end_layer - m->slice.first_layer) * SLICE_MATRICES_PER_LAYER;
    for (int i = 0; i < n_matrices; i++) {
        const weight_matrix *w = slice_matrix(m, i);
        file_span *s = span_holding(spans, n_spans, w);
        if (!s) continue;
        const char *from = w->data, *end = from + (size_t)w->rows * w->row_bytes;
        if (!s->from || from < s->from) s->from = from;
        if (!s->end || end > s->end) s->end = end;
        s->bytes += (size_t)(end - from);
    }
    for (int i = 0; i < n_spans; i++) {
        file_span *s = &spans[i];
        if (!s->from) continue;
        const size_t span = (size_t)(s->end - s->from);
        if (span <= s->bytes + s->bytes / 4 + (4u << 20)) {
            weight_pages_bring_in(&s->file, s->from, span);
            continue;
        }
        for (int j = 0; j < n_matrices; j++) {
            const weight_matrix *w = slice_matrix(m, j);
            if (span_holding(s, 1, w)) bring_in(s, w);
        }
    }
    /* The output head often lies far from the layers (after them, or before them where it is the
     * token embedding): it gets its own range. */
    file_span *head = m->slice.head ? span_holding(spans, n_spans, &m->output) : NULL;
    if (head) bring_in(head, &m->output);
    for (int i = 0; i < n_spans; i++) m->weight_bytes_huge += spans[i].file.huge_bytes;
    free(spans);
}

/* ---- llama2.c checkpoints ------------------------------------------------------------------- */

enum { LLAMA2C_HEADER_INTS = 7 };

static int llama2c_read_header(const char *path, const void *map, size_t size, model_config *c, bool *shared_head,
                               ramp_error *err) {
    if (size < LLAMA2C_HEADER_INTS * sizeof(int32_t))
        return ramp_fail(err, "%s: file is %zu bytes, too short for a llama2.c header (28 bytes)", path, size);
    int32_t h[LLAMA2C_HEADER_INTS];
    memcpy(h, map, sizeof h);
    if (llama2c_header_check(path, h, err)) return -1;
    memset(c, 0, sizeof *c);
    c->dim = h[0];
    c->ffn_dim = h[1];
    c->n_layers = h[2];
    c->n_heads = h[3];
    c->n_kv_heads = h[4];
    *shared_head = h[5] > 0;
    c->vocab_size = h[5] == INT32_MIN ? 0 : abs(h[5]);
    c->context_length = h[6];
    config_derive(c, 0);
    c->rope_dim = c->head_dim;
    c->rope_base = 10000.0f;
    c->rope_freq_scale = 1.0f;
    c->rms_eps = 1e-5f;
    return config_validate(path, c, err);
}

static int llama2c_load_weights(model *m, bool shared_head, ramp_error *err) {
    const model_config *c = &m->config;
    const uint64_t L = (uint64_t)c->n_layers, dim = (uint64_t)c->dim, kv = (uint64_t)c->kv_dim,
                   ffn = (uint64_t)c->ffn_dim, vocab = (uint64_t)c->vocab_size;
    const uint64_t head_size = dim / (uint64_t)c->n_heads;
    /* Sections in file order, in floats. */
    uint64_t sizes[] = {
        vocab * dim,                                   /* token embedding */
        L * dim,         L * dim * dim, L * kv * dim, /* rms_att, wq, wk */
        L * kv * dim,    L * dim * dim,               /* wv, wo */
        L * dim,         L * ffn * dim, L * dim * ffn, /* rms_ffn, w1 (gate), w2 (down) */
        L * ffn * dim,   dim,                         /* w3 (up), rms_final */
        (uint64_t)c->context_length * head_size,      /* legacy RoPE tables (unused) */
        shared_head ? 0 : vocab * dim,                /* classifier */
    };
    uint64_t offsets[sizeof sizes / sizeof sizes[0]];
    uint64_t total = LLAMA2C_HEADER_INTS * sizeof(int32_t);
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        offsets[i] = total;
        total += sizes[i] * sizeof(float);
    }
    if (total != m->checkpoint_size)
        return ramp_fail(err, "%s: llama2.c checkpoint is %zu bytes, expected %llu for dim %d, %d layers, vocab %d",
                         m->path, m->checkpoint_size, (unsigned long long)total, c->dim, c->n_layers, c->vocab_size);
    const char *base = m->checkpoint_map;
#define SECTION(i) ((const float *)(base + offsets[i]))
#define MATRIX(i, index, rows, cols) \
    ((weight_matrix){GGML_TYPE_F32, (int)(rows), (int)(cols), (size_t)(cols) * sizeof(float), \
                     SECTION(i) + (size_t)(index) * (rows) * (cols)})
    for (int l = m->slice.first_layer; l < m->slice.end_layer; l++) {
        layer_weights *w = &m->layers[l];
        w->attn_norm = SECTION(1) + l * dim;
        w->wq = MATRIX(2, l, dim, dim);
        w->wk = MATRIX(3, l, kv, dim);
        w->wv = MATRIX(4, l, kv, dim);
        w->wo = MATRIX(5, l, dim, dim);
        w->ffn_norm = SECTION(6) + l * dim;
        w->w_gate = MATRIX(7, l, ffn, dim);
        w->w_down = MATRIX(8, l, dim, ffn);
        w->w_up = MATRIX(9, l, ffn, dim);
        m->weight_bytes += (2 * dim + 2 * dim * dim + 2 * kv * dim + 3 * ffn * dim) * sizeof(float);
    }
    if (m->slice.embedding || (m->slice.head && shared_head)) m->token_embedding = MATRIX(0, 0, vocab, dim);
    if (m->slice.embedding) m->weight_bytes += vocab * dim * sizeof(float);
    if (m->slice.head) {
        m->output_norm = SECTION(10);
        m->output = shared_head ? MATRIX(0, 0, vocab, dim) : MATRIX(12, 0, vocab, dim);
        m->weight_bytes += (dim + vocab * dim) * sizeof(float);
    }
    if (!m->slice.embedding) memset(&m->token_embedding, 0, sizeof m->token_embedding);
#undef MATRIX
#undef SECTION
    snprintf(m->weight_type, sizeof m->weight_type, "f32");
    return 0;
}

static int map_file(const char *path, void **map, size_t *size, ramp_error *err) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return ramp_fail(err, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return ramp_fail(err, "%s: not a regular file", path);
    }
    if (st.st_size == 0) {
        close(fd);
        return ramp_fail(err, "%s: file is empty", path);
    }
    void *p = weight_pages_map(fd, (size_t)st.st_size);
    close(fd);
    if (p == MAP_FAILED) return ramp_fail(err, "%s: cannot map: %s", path, strerror(errno));
    *map = p;
    *size = (size_t)st.st_size;
    return 0;
}

static bool file_is_gguf(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return false;
    char magic[4] = {0};
    size_t got = fread(magic, 1, 4, f);
    fclose(f);
    return got == 4 && memcmp(magic, "GGUF", 4) == 0;
}

/* ---- public --------------------------------------------------------------------------------- */

int model_read_config(const char *path, model_config *config, ramp_error *err) {
    if (file_is_gguf(path)) {
        gguf_file f;
        if (gguf_open(&f, path, err)) return -1;
        int status = gguf_read_config(&f, config, err);
        gguf_close(&f);
        return status;
    }
    void *map;
    size_t size;
    if (map_file(path, &map, &size, err)) return -1;
    bool shared_head = false;
    int status = llama2c_read_header(path, map, size, config, &shared_head, err);
    munmap(map, size);
    return status;
}

int model_load(model *m, const char *path, const model_slice *slice, bool want_tokenizer,
               const char *tokenizer_path, ramp_error *err) {
    memset(m, 0, sizeof *m);
    m->path = strdup(path);
    if (!m->path) return ramp_fail(err, "out of memory");
    int status = -1;
    if (file_is_gguf(path)) {
        m->format = MODEL_FORMAT_GGUF;
        if (gguf_open(&m->gguf, path, err)) goto done;
        if (gguf_read_config(&m->gguf, &m->config, err)) goto done;
        if (slice_resolve(path, &m->config, slice, &m->slice, err)) goto done;
        m->layers = calloc((size_t)m->config.n_layers, sizeof *m->layers);
        if (!m->layers) { ramp_fail(err, "out of memory"); goto done; }
        if (gguf_load_weights(m, err)) goto done;
        if (want_tokenizer) {
            if (tokenizer_from_gguf(&m->tokenizer, &m->gguf, err)) goto done;
        }
    } else {
        m->format = MODEL_FORMAT_LLAMA2C;
        if (map_file(path, &m->checkpoint_map, &m->checkpoint_size, err)) goto done;
        bool shared_head = false;
        if (llama2c_read_header(path, m->checkpoint_map, m->checkpoint_size, &m->config, &shared_head, err))
            goto done;
        if (slice_resolve(path, &m->config, slice, &m->slice, err)) goto done;
        m->layers = calloc((size_t)m->config.n_layers, sizeof *m->layers);
        if (!m->layers) { ramp_fail(err, "out of memory"); goto done; }
        if (llama2c_load_weights(m, shared_head, err)) goto done;
        if (want_tokenizer) {
            if (!tokenizer_path || !*tokenizer_path) {
                ramp_fail(err, "%s: a llama2.c checkpoint needs its tokenizer: pass --tokenizer tokenizer.bin", path);
                goto done;
            }
            if (tokenizer_from_llama2c(&m->tokenizer, tokenizer_path, m->config.vocab_size, err)) goto done;
        }
    }
    if (m->tokenizer && tokenizer_vocab_size(m->tokenizer) != m->config.vocab_size) {
        ramp_fail(err, "%s: tokenizer has %d tokens, the model's vocabulary has %d", path,
                  tokenizer_vocab_size(m->tokenizer), m->config.vocab_size);
        goto done;
    }
    model_map_in_slice(m);
    status = 0;
done:
    if (status) model_free(m);
    return status;
}

void model_free(model *m) {
    if (!m) return;
    parallel_end_warm_ups(); /* no helper may still read the weights (matmul_warm_up) */
    for (int i = 0; i < m->n_owned_buffers; i++) free(m->owned_buffers[i]);
    free(m->owned_buffers);
    if (m->tokenizer) tokenizer_free(m->tokenizer);
    if (m->format == MODEL_FORMAT_GGUF) gguf_close(&m->gguf);
    if (m->checkpoint_map) munmap(m->checkpoint_map, m->checkpoint_size);
    free(m->layers);
    free(m->path);
    memset(m, 0, sizeof *m);
}
