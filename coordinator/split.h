/* split.h: which layers each pipeline stage owns.
 *
 * A split is one contiguous, non-empty range of layers per stage, together covering every layer
 * exactly once, in order. split_parse reads "0-3,4-9,10-15" (inclusive ranges; "7" alone is one
 * layer). split_balanced picks the split that minimises the most expensive stage, counting each
 * layer's matrix work and the LM head on the last stage (and on any stage with exit points).
 */
#ifndef RAMP_SPLIT_H
#define RAMP_SPLIT_H

#include <stdbool.h>

#include "error.h"
#include "model.h"

typedef struct {
    int first_layer; /* inclusive */
    int end_layer;   /* exclusive */
} layer_range;

int split_parse(const char *text, int n_layers, int n_stages, layer_range *ranges, ramp_error *err);
int split_balanced(const model_config *c, int n_stages, bool head_on_every_stage, layer_range *ranges,
                   ramp_error *err);
/* "0-3,4-9,10-15" into buffer. */
void split_format(const layer_range *ranges, int n_stages, char *buffer, int capacity);

#endif
