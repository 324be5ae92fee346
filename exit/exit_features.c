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
    const int dim = m->config.dim;
    for (int r = 0; r < n_rows; r++) {
        float *normed = ws->normed + (size_t)r * dim;
        rmsnorm(normed, hidden + (size_t)r * dim, m->output_norm, dim, m->config.rms_eps);
        for (int c = 0; c < n_tokens; c++) {
            const float *weights = m->output + (size_t)tokens[c] * dim;
            float dot = 0.0f;
            for (int i = 0; i < dim; i++) dot += weights[i] * normed[i];
            out[(size_t)r * n_tokens + c] = dot;
        }
    }
}
