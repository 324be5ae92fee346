/* model.h: a Llama-architecture model's configuration and weights, or a slice of them.
 *
 * model_load reads a GGUF file or a llama2.c checkpoint (chosen by the file's first bytes) and
 * exposes every weight as a row-major fp32 matrix [rows = output features][cols = input features].
 * F32 weights point straight into the file mapping (pages are only read when used, so a pipeline
 * stage that loads layers 8..15 never touches the pages of layers 0..7); F16/BF16/Q8_0/Q4_0
 * weights are dequantized into buffers the model owns.
 *
 * A slice names the layers to load, [first_layer, end_layer) in global numbering, and whether the
 * token embedding and the output head (final norm + LM head) are needed. Layers outside the slice
 * have NULL weights; model_layer() takes global layer numbers.
 */
#ifndef RAMP_MODEL_H
#define RAMP_MODEL_H

#include <stdbool.h>
#include <stddef.h>

#include "error.h"
#include "gguf.h"
#include "tokenizer.h"

typedef struct {
    int dim;            /* embedding length */
    int n_layers;
    int n_heads;
    int n_kv_heads;     /* grouped-query attention: n_heads is a multiple of it */
    int head_dim;       /* dim / n_heads */
    int kv_dim;         /* n_kv_heads * head_dim */
    int ffn_dim;
    int vocab_size;
    int context_length;
    int rope_dim;       /* dimensions rotated per head (<= head_dim) */
    float rope_base;
    float rms_eps;
} model_config;

typedef struct {
    const float *attn_norm; /* [dim] */
    const float *wq;        /* [dim][dim] */
    const float *wk;        /* [kv_dim][dim] */
    const float *wv;        /* [kv_dim][dim] */
    const float *wo;        /* [dim][dim] */
    const float *ffn_norm;  /* [dim] */
    const float *w_gate;    /* [ffn_dim][dim] */
    const float *w_up;      /* [ffn_dim][dim] */
    const float *w_down;    /* [dim][ffn_dim] */
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
    char weight_type[16]; /* stored type of the matrices, e.g. "F32", "Q8_0" */
    model_config config;
    model_slice slice;
    layer_weights *layers;        /* config.n_layers entries; zeroed outside the slice */
    const float *token_embedding; /* [vocab_size][dim] or NULL */
    const float *output_norm;     /* [dim] or NULL */
    const float *output;          /* [vocab_size][dim] or NULL (may alias token_embedding) */
    tokenizer *tokenizer;         /* owned; NULL when not requested */
    size_t weight_bytes;          /* bytes of weights this slice references (fp32 after dequant) */

    /* Ownership of the storage behind the pointers above. */
    gguf_file gguf;
    void *checkpoint_map;
    size_t checkpoint_size;
    float **owned_buffers;
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
