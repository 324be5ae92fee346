/* split.h: which layers each pipeline stage owns.
 *
 * A split is one contiguous, non-empty range of layers per stage, together covering every layer
 * exactly once, in order. split_parse reads "0-3,4-9,10-15" (inclusive ranges; "7" alone is one
 * layer). split_balanced picks the split that minimises the most expensive stage, counting each
 * layer's matrix work and the LM head on the last stage (and on any stage with exit points).
 *
 * split_exit_aware does the same with each layer's work weighted by the share of rows that reach
 * it (an exit profile, exit_profile.h): with early exits the first stages see every row and the
 * last ones few, so a split balanced by compute leaves the deep stages idle. Among the splits
 * whose most expensive stage is as cheap as possible it picks the one whose stage costs are the
 * most equal (least sum of squares), so every stage's expected busy time is as close to the others'
 * as contiguous ranges allow.
 * Both keep layer-parallel pairs (pairs, NULL for none) whole: no stage starts inside a pair.
 */
#ifndef RAMP_SPLIT_H
#define RAMP_SPLIT_H

#include <stdbool.h>

#include "error.h"
#include "forward.h" /* forward_pairs */
#include "model.h"

typedef struct {
    int first_layer; /* inclusive */
    int end_layer;   /* exclusive */
} layer_range;

int split_parse(const char *text, int n_layers, int n_stages, layer_range *ranges, ramp_error *err);
int split_balanced(const model_config *c, int n_stages, bool head_on_every_stage, const forward_pairs *pairs,
                   layer_range *ranges, ramp_error *err);
/* reach[l] (l < n_layers): share of rows that run layer l, in [0, 1], reach[0] > 0, never
 * increasing (a row that runs layer l+1 ran layer l). Fails naming the first value that is not. */
int split_exit_aware(const model_config *c, int n_stages, const double *reach, int n_reach,
                     const forward_pairs *pairs, layer_range *ranges, ramp_error *err);
/* Fails when a range of the split starts inside a pair, naming both. */
int split_check_pairs(const layer_range *ranges, int n_stages, const forward_pairs *pairs, ramp_error *err);
/* Checks a reach profile as split_exit_aware does (n_reach must equal n_layers). */
int split_check_reach(const double *reach, int n_reach, int n_layers, ramp_error *err);
/* Expected cost of each stage of a split, as the splitters count it (multiply-adds per row that
 * enters the pipeline), with reach NULL meaning every row reaches every layer. */
void split_stage_costs(const model_config *c, const layer_range *ranges, int n_stages, const double *reach,
                       double *costs);
/* "0-3,4-9,10-15" into buffer. */
void split_format(const layer_range *ranges, int n_stages, char *buffer, int capacity);

#endif
