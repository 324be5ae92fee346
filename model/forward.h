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

/* The second member's buffers of a layer-parallel pair (the first uses the workspace's own). */
typedef struct {
    float *normed, *q, *k, *v, *attention, *projection; /* [max_rows][dim or kv_dim] */
    float *gate, *up;                                   /* [max_rows][ffn_dim] */
    act_buffer act;
} forward_pair_buffers;

typedef struct {
    int max_rows;
    int max_context;
    float *normed, *q, *k, *v, *attention, *projection; /* [max_rows][dim or kv_dim] */
    float *gate, *up;                                   /* [max_rows][ffn_dim] */
    float *rope_cos, *rope_sin;                         /* [max_rows][rope_dim / 2] */
    float *rope_frequency;                              /* [rope_dim / 2]: 1 / base^(2i / rope_dim) */
    float *rope_cos_local, *rope_sin_local, *rope_frequency_local; /* the same for Gemma 3's local layers */
    int score_buffers;                                  /* threads that may attend at once */
    float *scores; /* [score_buffers][attention_scratch_floats(max_context)] attention weights (attention.h) */
    act_buffer act;                                     /* converted inputs of the products */
    forward_pair_buffers *pair;                         /* NULL until forward_workspace_enable_pairs */
} forward_workspace;

/* Layer-parallel pairs ("Leveraging the true depth of LLMs", arXiv 2502.02790): the layers
 * [first, end) are taken two by two, (first, first + 1), (first + 2, first + 3), ..., and the two
 * layers a, b of a pair are evaluated on the same input:
 *   h'  = h  + Attn_a(norm_a(h))  + Attn_b(norm_b(h))
 *   h'' = h' + MLP_a(norm'_a(h')) + MLP_b(norm'_b(h'))
 * each layer keeping its own KV cache. The contributions are added to h in that order, a's first,
 * in fp32: a computation that gets the two members' contributions from elsewhere (two ranks) and
 * adds them the same way gets the same bits. Fused in one process, the two members' products run
 * as one parallel pass each (matmul_weights_many: both Q/K/V, both output projections, both
 * gate/up, both down projections) and both attentions together: half the waits of two layers.
 * first == end: no pairs. (end - first) is even.
 *
 * Two processes can share each pair instead (partner set): one computes every pair's first layer
 * (member 0), the other its second (member 1), each in its own KV cache; after each attention and
 * each MLP they swap contributions (exchange) and both add them a first, then b: the fused bits.
 * Member 0 calls begin before each run of consecutive pairs so that the other process gets the
 * rows and their states; member 1 is called on such runs only. */
typedef struct forward_partner {
    int member; /* 0: this process computes each pair's first layer; 1: its second */
    /* member 0: the rows and their states at the start of the run of pairs [first, end) */
    int (*begin)(void *context, int first, int end, const forward_rows *rows, const float *hidden, ramp_error *err);
    /* sends this member's contribution (n floats) and receives the other's into theirs */
    int (*exchange)(void *context, const float *mine, float *theirs, size_t n, ramp_error *err);
    void *context;
} forward_partner;

typedef struct {
    int first, end;
    const forward_partner *partner; /* NULL: both members here (fused) */
} forward_pairs;

/* True when layer starts a pair (it and layer + 1 run in parallel). pairs may be NULL. */
bool forward_pair_starts(const forward_pairs *pairs, int layer);
/* Allocates the second member's buffers (once; needed before a paired forward_layers_paired). */
int forward_workspace_enable_pairs(forward_workspace *ws, const model_config *c, ramp_error *err);

int forward_workspace_init(forward_workspace *ws, const model_config *c, int max_rows, int max_context,
                           ramp_error *err);
void forward_workspace_free(forward_workspace *ws);

/* hidden[i] = embedding of tokens[i]. Needs the model's embedding; token ids must be in range. */
int forward_embed(const model *m, const int *tokens, int n, float *hidden, ramp_error *err);

/* Runs global layers [first_layer, end_layer) (owned by m's slice) over the rows. The KV cache
 * holds the slice's layers; each row's slot must be reserved with capacity > its position. */
int forward_layers(const model *m, int first_layer, int end_layer, kv_cache *kv, const forward_rows *rows,
                   float *hidden, forward_workspace *ws, ramp_error *err);
/* The same with the pairs of `pairs` (NULL: none) evaluated as pairs. A pair must lie wholly
 * inside [first_layer, end_layer) or outside it. */
int forward_layers_paired(const model *m, int first_layer, int end_layer, const forward_pairs *pairs, kv_cache *kv,
                          const forward_rows *rows, float *hidden, forward_workspace *ws, ramp_error *err);

/* Between two layers (never inside a pair, and never with a partner process), a pause may run
 * other rows through the same workspace: a pipeline stage takes the exit Decisions that came in
 * meanwhile. run returns 1 when it used the workspace (the rows' rotary tables are then made
 * again; `rows` must read as before), 0 when it did nothing, -1 on error. */
typedef struct {
    int (*run)(void *context, ramp_error *err);
    void *context;
} forward_pause;

/* forward_layers_paired with a pause (NULL: none) between layers. */
int forward_layers_pausing(const model *m, int first_layer, int end_layer, const forward_pairs *pairs, kv_cache *kv,
                           const forward_rows *rows, float *hidden, forward_workspace *ws, const forward_pause *pause,
                           ramp_error *err);

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
