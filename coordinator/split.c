#include "split.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int parse_layer(const char **cursor, int *out) {
    char *end;
    long value = strtol(*cursor, &end, 10);
    if (end == *cursor || value < 0 || value > 1 << 20) return -1;
    *out = (int)value;
    *cursor = end;
    return 0;
}

int split_parse(const char *text, int n_layers, int n_stages, layer_range *ranges, ramp_error *err) {
    const char *cursor = text;
    int stage = 0, expected_first = 0;
    while (*cursor) {
        int first, last;
        if (parse_layer(&cursor, &first))
            return ramp_fail(err, "--layers '%s': expected a layer number at '%s'", text, cursor);
        last = first;
        if (*cursor == '-') {
            cursor++;
            if (parse_layer(&cursor, &last))
                return ramp_fail(err, "--layers '%s': expected a layer number at '%s'", text, cursor);
        }
        if (*cursor == ',') cursor++;
        else if (*cursor) return ramp_fail(err, "--layers '%s': unexpected '%c'", text, *cursor);
        if (last < first) return ramp_fail(err, "--layers '%s': range %d-%d is backwards", text, first, last);
        if (first != expected_first)
            return ramp_fail(err, "--layers '%s': stage %d starts at layer %d, expected %d (%s)", text, stage + 1, first,
                             expected_first, first > expected_first ? "a gap" : "an overlap");
        if (stage >= n_stages)
            return ramp_fail(err, "--layers '%s' names more ranges than the %d pipeline stages", text, n_stages);
        ranges[stage++] = (layer_range){first, last + 1};
        expected_first = last + 1;
    }
    if (stage != n_stages)
        return ramp_fail(err, "--layers '%s' names %d ranges, the job has %d pipeline stages", text, stage, n_stages);
    if (expected_first != n_layers)
        return ramp_fail(err, "--layers '%s' covers layers 0-%d, the model has %d layers (0-%d)", text,
                         expected_first - 1, n_layers, n_layers - 1);
    return 0;
}

int split_balanced(const model_config *c, int n_stages, bool head_on_every_stage, layer_range *ranges,
                   ramp_error *err) {
    const int L = c->n_layers;
    if (n_stages < 1 || n_stages > L)
        return ramp_fail(err, "cannot split %d layers into %d pipeline stages (need 1..%d stages)", L, n_stages, L);
    /* Cost in multiply-adds per token: a layer's matrices; the LM head is vocab x dim. */
    const double layer = 2.0 * c->dim * c->dim + 2.0 * c->kv_dim * c->dim + 3.0 * c->ffn_dim * c->dim;
    const double head = (double)c->vocab_size * c->dim;
    /* best[s][l]: least possible maximum stage cost placing layers 0..l-1 on stages 0..s-1. */
    double *best = malloc(sizeof(double) * (size_t)(n_stages + 1) * (size_t)(L + 1));
    int *cut = malloc(sizeof(int) * (size_t)(n_stages + 1) * (size_t)(L + 1));
    if (!best || !cut) {
        free(best);
        free(cut);
        return ramp_fail(err, "split: out of memory");
    }
#define AT(a, s, l) a[(size_t)(s) * (L + 1) + (l)]
    for (int s = 0; s <= n_stages; s++)
        for (int l = 0; l <= L; l++) AT(best, s, l) = 1e300;
    AT(best, 0, 0) = 0.0;
    for (int s = 1; s <= n_stages; s++) {
        bool last = s == n_stages;
        for (int l = s; l <= L; l++) {
            for (int k = s - 1; k < l; k++) { /* this stage takes layers k..l-1 */
                double cost = (l - k) * layer + ((last || head_on_every_stage) ? head : 0.0);
                double worst = AT(best, s - 1, k) > cost ? AT(best, s - 1, k) : cost;
                if (worst < AT(best, s, l)) {
                    AT(best, s, l) = worst;
                    AT(cut, s, l) = k;
                }
            }
        }
    }
    for (int s = n_stages, l = L; s >= 1; s--) {
        int k = AT(cut, s, l);
        ranges[s - 1] = (layer_range){k, l};
        l = k;
    }
#undef AT
    free(best);
    free(cut);
    return 0;
}

void split_format(const layer_range *ranges, int n_stages, char *buffer, int capacity) {
    int used = 0;
    buffer[0] = '\0';
    for (int s = 0; s < n_stages && used < capacity; s++)
        used += snprintf(buffer + used, (size_t)(capacity - used), "%s%d-%d", s ? "," : "", ranges[s].first_layer,
                         ranges[s].end_layer - 1);
}
