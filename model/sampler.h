/* sampler.h: choosing the next token from logits.
 *
 * temperature 0 is greedy (argmax; ties go to the lowest id). Otherwise logits are divided by the
 * temperature, turned into probabilities, restricted to the top_k most likely tokens (0 = no
 * limit) and then to the smallest set whose mass reaches top_p (1 = no limit), and sampled with a
 * seeded xorshift generator: the same seed gives the same text. A sampler belongs to one sequence
 * and owns a scratch array of vocab_size entries, so sampling allocates nothing per token.
 */
#ifndef RAMP_SAMPLER_H
#define RAMP_SAMPLER_H

#include <stdbool.h>
#include <stdint.h>

#include "error.h"

typedef struct {
    float temperature;
    float top_p;
    int top_k;
    uint64_t seed;
} sampling_params;

typedef struct {
    float probability;
    int token;
} token_probability;

typedef struct {
    sampling_params params;
    uint64_t rng_state;
    int vocab_size;
    token_probability *candidates; /* [vocab_size] */
} sampler;

int sampling_params_validate(const sampling_params *p, ramp_error *err);
int sampler_init(sampler *s, const sampling_params *params, int vocab_size, ramp_error *err);
void sampler_free(sampler *s);
/* Picks a token; logits [vocab_size] are modified (scaled, turned into probabilities), except by
 * a greedy sampler (temperature 0), which only reads them. */
int sampler_sample(sampler *s, float *logits);
bool sampler_is_greedy(const sampler *s);
/* The lowest index of the largest of x[0 .. n-1] (n >= 1; a NaN never counts as largest, except
 * at index 0, which nothing then beats). */
int argmax(const float *x, int n);

#endif
