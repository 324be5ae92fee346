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

/* Multiply-adds per row: a layer's matrices, and the LM head (vocab x dim). */
static double layer_cost(const model_config *c) {
    return 2.0 * c->q_dim * c->dim + 2.0 * c->kv_dim * c->dim + 3.0 * c->ffn_dim * c->dim;
}
static double head_cost(const model_config *c) { return (double)c->vocab_size * c->dim; }

/* What the dynamic programmes below need: layer l costs weight[l] * layer, the last stage also
 * pays head_weight * head (and every stage does when heads sit on every stage). */
typedef struct {
    int L, n_stages;
    double layer, head, head_weight;
    bool head_on_every_stage;
    const double *prefix; /* [L + 1]: sum of the weights of layers 0..l-1 */
    const forward_pairs *pairs;
} split_costs;

/* A stage may start at layer j unless j is the second layer of a pair. */
static bool may_start(const split_costs *k, int j) { return !forward_pair_starts(k->pairs, j - 1); }

static double range_cost(const split_costs *k, int first, int end, bool last) {
    double cost = (k->prefix[end] - k->prefix[first]) * k->layer;
    return cost + ((last || k->head_on_every_stage) ? k->head_weight * k->head : 0.0);
}

#define AT(a, s, l) a[(size_t)(s) * (k->L + 1) + (l)]

/* What a split minimises: the cost of its most expensive stage, or (with no stage above a cap) the
 * sum of squared stage costs, i.e. the most even of the splits whose most expensive stage costs cap. */
typedef enum { LEAST_MAXIMUM, MOST_EVEN_UNDER_CAP } split_goal;

/* best[s][l]: the goal's least value placing layers 0..l-1 on stages 0..s-1; cut[s][l] where its
 * last stage starts. Among equal values the first cut found wins. cap is read for MOST_EVEN_UNDER_CAP. */
static void best_splits(const split_costs *k, split_goal goal, double cap, double *best, int *cut) {
    for (int s = 0; s <= k->n_stages; s++)
        for (int l = 0; l <= k->L; l++) AT(best, s, l) = 1e300;
    AT(best, 0, 0) = 0.0;
    for (int s = 1; s <= k->n_stages; s++) {
        bool last = s == k->n_stages;
        for (int l = s; l <= k->L; l++) {
            for (int j = s - 1; j < l; j++) { /* this stage takes layers j..l-1 */
                if (!may_start(k, j) || (l < k->L && !may_start(k, l))) continue;
                const double before = AT(best, s - 1, j), cost = range_cost(k, j, l, last);
                if (before >= 1e300) continue; /* layers 0..j-1 cannot be placed on s-1 stages */
                double value;
                if (goal == LEAST_MAXIMUM) {
                    value = before > cost ? before : cost;
                } else {
                    if (cost > cap) continue;
                    value = before + cost * cost;
                }
                if (value < AT(best, s, l)) {
                    AT(best, s, l) = value;
                    AT(cut, s, l) = j;
                }
            }
        }
    }
}

static int split_weighted(const model_config *c, int n_stages, const double *weight, double head_weight,
                          bool head_on_every_stage, bool most_even, const forward_pairs *pairs, layer_range *ranges,
                          ramp_error *err) {
    const int L = c->n_layers;
    if (n_stages < 1 || n_stages > L)
        return ramp_fail(err, "cannot split %d layers into %d pipeline stages (need 1..%d stages)", L, n_stages, L);
    size_t cells = (size_t)(n_stages + 1) * (size_t)(L + 1);
    double *best = malloc(sizeof(double) * cells), *prefix = malloc(sizeof(double) * (size_t)(L + 1));
    int *cut = malloc(sizeof(int) * cells);
    if (!best || !cut || !prefix) {
        free(best);
        free(cut);
        free(prefix);
        return ramp_fail(err, "split: out of memory");
    }
    prefix[0] = 0.0;
    for (int l = 0; l < L; l++) prefix[l + 1] = prefix[l] + (weight ? weight[l] : 1.0);
    split_costs costs = {L, n_stages, layer_cost(c), head_cost(c), head_weight, head_on_every_stage, prefix, pairs};
    const split_costs *k = &costs;
    best_splits(k, LEAST_MAXIMUM, 0.0, best, cut);
    if (AT(best, n_stages, L) >= 1e300) { /* pairs leave too few places to cut */
        free(best);
        free(cut);
        free(prefix);
        return ramp_fail(err, "cannot split %d layers into %d pipeline stages without cutting a parallel pair "
                              "(pairs in layers %d-%d)", L, n_stages, pairs->first, pairs->end - 1);
    }
    if (most_even) {
        double cap = AT(best, n_stages, L);
        best_splits(k, MOST_EVEN_UNDER_CAP, cap * (1.0 + 1e-12), best, cut); /* the cap itself is always feasible */
    }
    for (int s = n_stages, l = L; s >= 1; s--) {
        int j = AT(cut, s, l);
        ranges[s - 1] = (layer_range){j, l};
        l = j;
    }
    free(best);
    free(cut);
    free(prefix);
    return 0;
}
#undef AT

int split_balanced(const model_config *c, int n_stages, bool head_on_every_stage, const forward_pairs *pairs,
                   layer_range *ranges, ramp_error *err) {
    return split_weighted(c, n_stages, NULL, 1.0, head_on_every_stage, false, pairs, ranges, err);
}

int split_check_pairs(const layer_range *ranges, int n_stages, const forward_pairs *pairs, ramp_error *err) {
    for (int s = 1; s < n_stages; s++)
        if (forward_pair_starts(pairs, ranges[s].first_layer - 1))
            return ramp_fail(err, "stage %d starts at layer %d, inside the parallel pair %d,%d (pairs in layers %d-%d)",
                             s + 1, ranges[s].first_layer, ranges[s].first_layer - 1, ranges[s].first_layer,
                             pairs->first, pairs->end - 1);
    return 0;
}

int split_check_reach(const double *reach, int n_reach, int n_layers, ramp_error *err) {
    if (n_reach != n_layers)
        return ramp_fail(err, "exit profile: expected the share of rows reaching each of the model's %d layers, "
                              "found %d values", n_layers, n_reach);
    for (int l = 0; l < n_reach; l++) {
        if (!(reach[l] >= 0.0 && reach[l] <= 1.0)) /* also refuses NaN */
            return ramp_fail(err, "exit profile: layer %d: expected a share of rows in [0, 1], found %g", l, reach[l]);
        if (l > 0 && reach[l] > reach[l - 1])
            return ramp_fail(err, "exit profile: layer %d is reached by more rows (%g) than layer %d (%g); a row "
                                  "that runs a layer ran every layer before it", l, reach[l], l - 1, reach[l - 1]);
    }
    if (n_reach > 0 && !(reach[0] > 0.0))
        return ramp_fail(err, "exit profile: expected rows at layer 0, found a share of %g", reach[0]);
    return 0;
}

int split_exit_aware(const model_config *c, int n_stages, const double *reach, int n_reach,
                     const forward_pairs *pairs, layer_range *ranges, ramp_error *err) {
    if (split_check_reach(reach, n_reach, c->n_layers, err)) return -1;
    /* the LM head runs for the rows that reach the end */
    return split_weighted(c, n_stages, reach, reach[c->n_layers - 1], false, true, pairs, ranges, err);
}

void split_stage_costs(const model_config *c, const layer_range *ranges, int n_stages, const double *reach,
                       double *costs) {
    for (int s = 0; s < n_stages; s++) {
        double cost = 0.0;
        for (int l = ranges[s].first_layer; l < ranges[s].end_layer; l++) cost += reach ? reach[l] : 1.0;
        cost *= layer_cost(c);
        if (s == n_stages - 1) cost += (reach ? reach[c->n_layers - 1] : 1.0) * head_cost(c);
        costs[s] = cost;
    }
}

void split_format(const layer_range *ranges, int n_stages, char *buffer, int capacity) {
    int used = 0;
    buffer[0] = '\0';
    for (int s = 0; s < n_stages && used < capacity; s++)
        used += snprintf(buffer + used, (size_t)(capacity - used), "%s%d-%d", s ? "," : "", ranges[s].first_layer,
                         ranges[s].end_layer - 1);
}
