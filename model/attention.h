/* attention.h: causal self-attention of a batch's rows over the KV cache, the part of a layer
 * (forward.h) between storing the rows' keys and values and the output projection.
 *
 * q and out are [n_rows][dim] fp32: the rows' queries (biases and RoPE applied) and their
 * attention outputs. Each row attends, head by head (a group of query heads shares its KV head), to
 * the filled positions 0 .. its own position of its slot in layer local_layer's cache; a kv_only
 * row is skipped and its out row left as it was. Scratch is the workspace's score buffers, which
 * hold attention_scratch_floats(max_context) floats per thread. A block of prompt rows for one
 * head, or one row for the query heads that share a KV head, is computed whole by one thread, each
 * (row, head) with the same operations in the same order either way, so no value depends on the
 * thread count or on the other rows of the batch.
 */
#ifndef RAMP_ATTENTION_H
#define RAMP_ATTENTION_H

#include <stddef.h>

#include "forward.h"

size_t attention_scratch_floats(int max_context);

/* window: the positions each query sees, counted back from its own (0: all of them). */
void attention_of_rows(const model_config *c, const kv_cache *kv, int local_layer, int window, const forward_rows *rows,
                       const float *q, float *out, forward_workspace *ws);

/* The two members of a layer-parallel pair (forward.h) at once: every (member, block, head) task
 * shared out together, member m reading layer local_layers[m] with queries q[m] into out[m]. */
void attention_of_pair(const model_config *c, const kv_cache *kv, const forward_rows *rows, const int local_layers[2],
                       const float *const q[2], float *const out[2], forward_workspace *ws);

#endif
