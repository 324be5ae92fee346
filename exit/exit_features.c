#include "exit_features.h"

#include <math.h>

void exit_features_compute(float *logits, int n, const int *tokens, exit_features *out) {
    softmax(logits, n);
    int best = 0, second = -1;
    for (int i = 1; i < n; i++) {
        if (logits[i] > logits[best]) {
            second = best;
            best = i;
        } else if (second < 0 || logits[i] > logits[second]) {
            second = i;
        }
    }
    float entropy = 0.0f;
    for (int i = 0; i < n; i++)
        if (logits[i] > 0.0f) entropy -= logits[i] * logf(logits[i]);
    out->top_prob = logits[best];
    out->gap = logits[best] - (second >= 0 ? logits[second] : 0.0f);
    out->entropy = entropy;
    out->top_token = tokens ? tokens[best] : best;
}

void exit_head_logits(const model *m, const float *hidden, int n_rows, const int *tokens, int n_tokens, float *out,
                      forward_workspace *ws) {
    if (!tokens) {
        forward_logits(m, hidden, n_rows, out, ws);
        return;
    }
    forward_logits_of(m, hidden, n_rows, tokens, n_tokens, out, ws);
}
