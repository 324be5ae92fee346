/* forward.h: the layer math of a Llama-architecture transformer, written once for every path.
 *
 * Work is a batch of rows: each row is one token of one sequence (a KV-cache slot) at a position.
 * A batch may mix sequences and may hold several consecutive positions of the same sequence (a
 * prompt chunk); every row's keys/values are written to the cache before any row attends, so a
 * row attends causally to the filled positions 0..its own position of its slot.
 * hidden is [n_rows][dim] fp32, updated in place. All scratch lives in a forward_workspace sized
 * once, so decoding allocates nothing per token. Matrix products read the weights in their
 * stored type (matmul.h, kernels.h), in tiles that the OpenMP threads share; attention runs one
 * (row, head) per task. Every value is computed by one thread with fixed arithmetic, so results
 * depend neither on the number of threads nor on the other rows of the batch (a row decoded alone
 * or inside a micro-batch of 64 gets the same bits). The workspace must be created after the
 * thread count is set (omp_set_num_threads).
 */
#ifndef RAMP_FORWARD_H
#define RAMP_FORWARD_H

#include <stdbool.h>

#include "error.h"
#include "kv_cache.h"
#include "matmul.h"
#include "model.h"

typedef struct {
    int n_rows;
    const int *slots;     /* [n_rows] KV-cache slot of each row */
    const int *positions; /* [n_rows] position of each row in its sequence */
    const bool *kv_only;  /* [n_rows] or NULL: rows that only fill their keys/values (their hidden
                             state passes through unchanged: CALM's copy of an exited state) */
} forward_rows;

typedef struct {
    int max_rows;
    int max_context;
    float *normed, *q, *k, *v, *attention, *projection; /* [max_rows][dim or kv_dim] */
    float *gate, *up;                                   /* [max_rows][ffn_dim] */
    float *rope_cos, *rope_sin;                         /* [max_rows][rope_dim / 2] */
    int score_buffers;                                  /* threads that may attend at once */
    float *scores;                                      /* [score_buffers][max_context] attention weights */
    act_buffer act;                                     /* converted inputs of the products */
} forward_workspace;

int forward_workspace_init(forward_workspace *ws, const model_config *c, int max_rows, int max_context,
                           ramp_error *err);
void forward_workspace_free(forward_workspace *ws);

/* hidden[i] = embedding of tokens[i]. Needs the model's embedding; token ids must be in range. */
int forward_embed(const model *m, const int *tokens, int n, float *hidden, ramp_error *err);

/* Runs global layers [first_layer, end_layer) (owned by m's slice) over the rows. The KV cache
 * holds the slice's layers; each row's slot must be reserved with capacity > its position. */
int forward_layers(const model *m, int first_layer, int end_layer, kv_cache *kv, const forward_rows *rows,
                   float *hidden, forward_workspace *ws, ramp_error *err);

/* logits[i] = LM head(final RMSNorm(hidden[i])) for n <= ws->max_rows rows: [n][vocab]. */
void forward_logits(const model *m, const float *hidden, int n, float *logits, forward_workspace *ws);

/* The logits of selected tokens only: out[i][c] = logit of tokens[c] for row i, [n][n_tokens],
 * the same values forward_logits gives for them. Leaves RMSNorm(hidden[i]) in ws->normed. */
void forward_logits_of(const model *m, const float *hidden, int n, const int *tokens, int n_tokens, float *out,
                       forward_workspace *ws);

/* Building blocks, exposed for tests and for exit features. */
void rmsnorm(float *out, const float *x, const float *weight, int size, float eps);
void softmax(float *x, int size);

#endif
