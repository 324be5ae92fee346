/* model_validate.h: checks on a model file's declared configuration that come before anything is
 * derived from it or loaded by it. Each is called from one line of model.c.
 *
 *  - llama2c_header_check: the seven int32 fields of a llama2.c header, each in its plausible
 *    range, before head size, KV width or any byte count is computed from them (a KV head count
 *    of 2^31 - 1 overflowed `int` in the derivation before the old checks ran).
 *  - model_shape_check: the same for a GGUF's llama.* sizes (embedding length, head counts,
 *    block count, feed-forward length), before the head size and KV width are derived.
 *  - model_norm_check: RMSNorm epsilon and RoPE base finite and positive (an infinite epsilon
 *    loaded fine and made every hidden state zero: empty output with statistics claiming tokens).
 *  - gguf_blocks_check: the blk.N.* tensors agree with llama.block_count: no tensor for a block
 *    at or past the count (a file declaring fewer blocks than it holds ran a truncated model), and
 *    every declared block has tensors (a stage loading another slice would not notice the gap).
 * Every message names the file and the field, and says what was expected and what was found.
 */
#ifndef RAMP_MODEL_VALIDATE_H
#define RAMP_MODEL_VALIDATE_H

#include <stdint.h>

#include "error.h"
#include "gguf.h"
#include "model.h"

/* The limits on sizes the engine accepts (config_validate's "implausible" bounds). */
#define MODEL_MAX_DIM (1 << 16)
#define MODEL_MAX_FFN (1 << 18)
#define MODEL_MAX_LAYERS 1024
#define MODEL_MAX_VOCAB (1 << 22)
#define MODEL_MAX_CONTEXT (1 << 20)

/* h: dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size (negative: separate classifier),
 * seq_len, as read from the file. */
int llama2c_header_check(const char *path, const int32_t h[7], ramp_error *err);
/* c->dim, n_heads, n_kv_heads, n_layers, ffn_dim as read (nothing derived yet). */
int model_shape_check(const char *path, const model_config *c, ramp_error *err);
int model_norm_check(const char *path, const model_config *c, ramp_error *err);
int gguf_blocks_check(const gguf_file *f, int n_layers, ramp_error *err);

#endif
