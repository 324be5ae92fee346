/* exit_features.h: what an exit point reports about a row: how sure the model already is.
 *
 * At an exit point the stage applies the final RMSNorm and the LM head to the row's hidden state
 * (the "logit lens") and summarises the softmax over the candidates: the probability of the top-1
 * token, its gap to the second, the entropy, and the top-1 token id. Candidates are the whole
 * vocabulary, or only a few tokens (e.g. a classification task's label words), which makes the
 * head cost n_candidates x dim instead of vocab x dim per row.
 */
#ifndef RAMP_EXIT_FEATURES_H
#define RAMP_EXIT_FEATURES_H

#include "forward.h"
#include "model.h"

typedef struct {
    float top_prob;
    float gap;     /* top_prob - second probability */
    float entropy; /* nats */
    int top_token;
} exit_features;

/* Summarises logits over n candidates; tokens[i] is candidate i's id (NULL: candidate i is token i).
 * logits is overwritten with probabilities. */
void exit_features_compute(float *logits, int n, const int *tokens, exit_features *out);

/* out[r][c] = LM head row tokens[c] . RMSNorm(hidden[r]) for n_rows rows (n_rows <= ws->max_rows);
 * tokens NULL means the whole vocabulary (n_tokens = vocab size). */
void exit_head_logits(const model *m, const float *hidden, int n_rows, const int *tokens, int n_tokens, float *out,
                      forward_workspace *ws);

#endif
