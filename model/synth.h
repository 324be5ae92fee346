/* synth.h: synthetic llama models with random weights, written as GGUF.
 *
 * They exist so that loaders, the pipeline and benchmarks can run on any shape (up to 7B-sized
 * layers) without downloading anything. The file looks like what llama.cpp's converter writes:
 * llama.* hyperparameters, a SentencePiece-style vocabulary (<unk>, <s>, </s>, the 256 byte
 * tokens <0x00>..<0xFF>, then made-up pieces) and the usual tensor names and shapes:
 *
 *   token_embd.weight [dim, vocab]    output_norm.weight [dim]    output.weight [dim, vocab]
 *   blk.N.attn_norm.weight [dim]      blk.N.attn_q.weight [dim, dim]
 *   blk.N.attn_k/attn_v.weight [dim, kv_dim]  (kv_dim = dim / heads * kv_heads; see head_size)
 *   blk.N.attn_output.weight [dim, dim]       blk.N.ffn_norm.weight [dim]
 *   blk.N.ffn_gate/ffn_up.weight [dim, ffn]   blk.N.ffn_down.weight [ffn, dim]
 *
 * Matrices hold uniform random values in +-1/sqrt(row length), so activations keep a sane scale;
 * norm weights are 1; Qwen2's biases are uniform in +-0.5, as large as the products they are added
 * to, so that a reader that dropped them would compute visibly different text. Values depend only on the seed and the tensor name, and are stored as
 * spec.type (F32, F16, Q8_0 or Q4_0); norms are always F32. Weights are generated and written a
 * few rows at a time, so memory use stays small whatever the model size.
 */
#ifndef RAMP_SYNTH_H
#define RAMP_SYNTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "gguf.h"

/* The architectures synth writes, each as llama.cpp's converter lays it out:
 *   SYNTH_LLAMA    llama.* keys, the tensors above;
 *   SYNTH_QWEN2    qwen2.* keys and blk.N.attn_q/attn_k/attn_v.bias (random, fp32) after each
 *                  layer's weights;
 *   SYNTH_QWEN3    qwen3.* keys and blk.N.attn_q_norm/attn_k_norm.weight ([head size], fp32, random
 *                  in [0.5, 1.5)) after each layer's weights;
 *   SYNTH_PHI3     phi3.* keys, blk.N.attn_qkv.weight [dim, q + 2 kv rows] for the three attention
 *                  inputs and blk.N.ffn_up.weight [dim, 2 ffn] for the gate then the up rows (no
 *                  ffn_gate);
 *   SYNTH_GRANITE  granite.* keys with Granite 3.0 2B's embedding (12), residual (0.22) and logit (8)
 *                  multipliers and an attention scale of 1/16;
 *   SYNTH_GEMMA3   gemma3.* keys with a sliding window of 6 positions, and after each layer's weights
 *                  its attn_q_norm, attn_k_norm ([head size]), post_attention_norm and post_ffw_norm
 *                  ([dim]) weights, random in [0.5, 1.5);
 *   SYNTH_GEMMA2   gemma2.* keys with the same window, soft caps of 1 on the attention scores and 3 on
 *                  the logits, and Gemma 3's norms after each block (no head norms), and no output
 *                  matrix (llama.cpp reads the embedding for it and refuses a file with one);
 *   SYNTH_GEMMA    gemma.* keys, Llama's tensors without the output matrix (as Gemma 2). */
typedef enum {
    SYNTH_LLAMA, SYNTH_QWEN2, SYNTH_QWEN3, SYNTH_PHI3, SYNTH_GRANITE, SYNTH_GEMMA3, SYNTH_GEMMA2, SYNTH_GEMMA,
    SYNTH_ARCHS
} synth_arch;

/* general.architecture of an architecture ("llama", ...); synth_arch_named: the reverse, -1 for
 * a name synth does not write. */
const char *synth_arch_name(synth_arch arch);
int synth_arch_named(const char *name);

typedef struct {
    int dim, layers, heads, kv_heads, ffn, vocab, context;
    ggml_type type; /* storage type of the matrices */
    uint64_t seed;
    synth_arch arch; /* the network and general.architecture (synth_arch) */
    int head_size;  /* 0: dim / heads. Else the heads' own size, written as attention.key_length and
                       value_length (as Mistral NeMo's files have it): attn_q is [dim, heads x head_size],
                       attn_output [heads x head_size, dim], attn_k and attn_v [dim, kv_heads x head_size] */
    int parts;      /* 0 or 1: one file. More: that many files, as llama.cpp's gguf-split writes a
                       model (gguf_split.h), the tensors shared out in order; synth_write's path is
                       then their prefix: PATH-00001-of-0000N.gguf, ... */
} synth_spec;

/* Checks the spec (positive sizes, dim % heads, heads % kv_heads, an even head size, room for the
 * 259 special and byte tokens, block-aligned rows for quantized types). */
int synth_validate(const synth_spec *spec, ramp_error *err);

/* Writes the model to path (or, with spec->parts > 1, to the parts named after it). On failure no
 * file is left behind. */
int synth_write(const synth_spec *spec, const char *path, ramp_error *err);

/* The fp32 values synth_write generates for the named tensor (before conversion to spec->type),
 * so tests can compare what a loader reads with what was meant. n must be its element count. */
int synth_tensor_values(const synth_spec *spec, const char *name, float *out, size_t n, ramp_error *err);

#endif
