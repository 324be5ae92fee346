/* model.h: a Llama-architecture model's configuration and weights, or a slice of them. Qwen2
 * files (general.architecture qwen2) are the same network with biases on the query, key and value
 * products and RoPE over the two halves of each head; they load too, as do Qwen3 files (qwen3:
 * RoPE over head halves, no biases, and each query and key head RMS-normalized before RoPE) and
 * Phi-3 files (phi3: RoPE over head halves, the query, key and value matrices fused into one, and
 * the gate and up matrices into another; wq, wk, wv, w_gate and w_up are then row ranges of them).
 *
 * model_load reads a GGUF file or a llama2.c checkpoint (chosen by the file's first bytes). Every
 * matrix stays in its stored form, in place in the file mapping: a weight_matrix (kernels.h) of
 * type F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K or Q6_K, [rows =
 * output features][cols = input features]. Nothing is expanded, so memory holds the file's bytes
 * (and pages are read only when used: a stage that loads layers 8..15 never touches the pages of
 * layers 0..7). Norm vectors are fp32 (the rare file that stores them otherwise has them converted
 * into small buffers the model owns). A tensor of another type (IQ2_*, IQ3_*, TQ*, ...) is refused, with
 * its name and type, only when the slice needs it.
 *
 * A slice names the layers to load, [first_layer, end_layer) in global numbering, and whether the
 * token embedding and the output head (final norm + LM head) are needed. Layers outside the slice
 * have zeroed weights (data NULL); layers[] is indexed by global layer number.
 */
#ifndef RAMP_MODEL_H
#define RAMP_MODEL_H

#include <stdbool.h>
#include <stddef.h>

#include "error.h"
#include "gguf.h"
#include "kernels.h"
#include "tokenizer.h"

typedef struct {
    int dim;            /* embedding length */
    int n_layers;
    int n_heads;
    int n_kv_heads;     /* grouped-query attention: n_heads is a multiple of it */
    int head_dim;       /* dim / n_heads, or the file's own head size (attention.key_length) */
    int q_dim;          /* n_heads * head_dim: the queries' and the attention output's width (dim
                           unless the file sets its own head size, as Mistral NeMo and Small do) */
    int kv_dim;         /* n_kv_heads * head_dim */
    int ffn_dim;
    int vocab_size;
    int context_length;
    int rope_dim;       /* dimensions rotated per head (<= head_dim) */
    float rope_base;
    float rope_freq_scale; /* linear RoPE scaling: positions times this (1 = none) */
    bool rope_halves;   /* RoPE rotates (x[i], x[i + rope_dim / 2]) of each head (Qwen2, llama.cpp's
                           "NEOX" order) instead of Llama's (x[2i], x[2i + 1]) */
    bool head_norms;    /* each query and key head is RMS-normalized (with its own weights) before
                           RoPE (Qwen3) */
    /* Granite's multipliers (1 elsewhere; attention_scale 1 / sqrt(head_dim) elsewhere): the
     * embedding rows, the attention scores, each block's output before it joins the residual
     * stream, and the logits (divided by logit_scale). */
    float embedding_scale, attention_scale, residual_scale, logit_scale;
    /* Gemma 3: sliding-window attention on the local layers (layer l is local unless (l + 1) is a
     * multiple of sliding_pattern), which see only the last sliding_window positions and rotate with
     * their own RoPE base and no scaling; 0 where every layer sees every position. */
    int sliding_window, sliding_pattern;
    float rope_base_local;
    bool gelu;          /* the feed-forward gate is GELU (tanh form; Gemma) instead of SiLU */
    bool block_norms;   /* RMS norms after attention and after the feed-forward (Gemma 2 and 3) */
    /* Gemma 2's soft caps, cap x tanh(x / cap), on the attention scores (after their scale) and on
     * the logits; 0: none. */
    float attention_softcap, logit_softcap;
    bool fused_gate_up; /* ffn_up holds the gate's ffn_dim rows, then the up's, and there is no
                           ffn_gate (Phi-3); a fused attn_qkv (query, key then value rows) loads
                           wherever a file has one */
    float rms_eps;
} model_config;

/* The positions layer `layer` attends to, counted back from its own: sliding_window on Gemma 3's
 * local layers (llama.cpp's pattern: every sliding_pattern-th layer is global), 0 (all) elsewhere. */
static inline int model_layer_window(const model_config *c, int layer) {
    return c->sliding_window > 0 && (layer + 1) % c->sliding_pattern != 0 ? c->sliding_window : 0;
}

typedef struct {
    const float *attn_norm; /* [dim] */
    weight_matrix wq;       /* [q_dim][dim] */
    weight_matrix wk;       /* [kv_dim][dim] */
    weight_matrix wv;       /* [kv_dim][dim] */
    const float *q_bias;    /* [q_dim], added to the query; NULL when the file has none (Llama) */
    const float *q_norm;    /* [head_dim]: weights of each query head's RMS norm (head_norms), or NULL */
    const float *k_norm;    /* [head_dim]: the same for each key head, or NULL */
    const float *attn_post_norm; /* [dim]: RMS norm of attention's output before the residual (Gemma 3), or NULL */
    const float *ffn_post_norm;  /* [dim]: the same for the feed-forward's output, or NULL */
    const float *k_bias;    /* [kv_dim] or NULL */
    const float *v_bias;    /* [kv_dim] or NULL */
    weight_matrix wo;       /* [dim][q_dim] */
    const float *ffn_norm;  /* [dim] */
    weight_matrix w_gate;   /* [ffn_dim][dim] */
    weight_matrix w_up;     /* [ffn_dim][dim] */
    weight_matrix w_down;   /* [dim][ffn_dim] */
} layer_weights;

typedef struct {
    int first_layer; /* inclusive */
    int end_layer;   /* exclusive; -1 means "to the last layer" */
    bool embedding;  /* load token_embd */
    bool head;       /* load output_norm + output (LM head) */
} model_slice;

typedef enum { MODEL_FORMAT_GGUF, MODEL_FORMAT_LLAMA2C } model_format;

typedef struct {
    char *path;
    model_format format;
    char weight_type[16]; /* stored type of the layers' matrices as ggml names it, e.g. "f32", "q4_K";
                             the commonest when they differ */
    model_config config;
    model_slice slice;
    layer_weights *layers;        /* config.n_layers entries; zeroed outside the slice */
    weight_matrix token_embedding; /* [vocab_size][dim]; data NULL when not loaded */
    const float *output_norm;      /* [dim] or NULL */
    const float *rope_freqs;       /* [rope_dim / 2] divisors of the RoPE frequencies (Llama 3.1's
                                      rope_freqs.weight), or NULL */
    weight_matrix output;          /* [vocab_size][dim]; data NULL when not loaded (may share
                                      token_embedding's data) */
    tokenizer *tokenizer;          /* owned; NULL when not requested */
    size_t weight_bytes;           /* bytes this slice's weights occupy as held: the stored
                                      (quantized) size, shared data counted once */
    size_t weight_bytes_huge;      /* of those, bytes mapped in 2 MiB pages at load (model/weight_pages.h;
                                      0 when unknown or still on disk) */

    /* Ownership of the storage behind the pointers above. */
    gguf_file gguf;
    void *checkpoint_map;
    size_t checkpoint_size;
    float **owned_buffers; /* converted norm vectors */
    int n_owned_buffers;
} model;

/* Loads path. slice may be NULL (everything). tokenizer_path is for llama2.c checkpoints (their
 * tokenizer lives in a separate tokenizer.bin); with want_tokenizer false no tokenizer is read.
 * On failure nothing needs freeing. */
int model_load(model *m, const char *path, const model_slice *slice, bool want_tokenizer,
               const char *tokenizer_path, ramp_error *err);
void model_free(model *m);

/* Reads only the configuration (cheap: used to plan a split before loading). */
int model_read_config(const char *path, model_config *config, ramp_error *err);

#endif
