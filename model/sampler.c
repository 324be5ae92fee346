#include "sampler.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "exp8.h"
#include "forward.h"

/* The first index of the largest value, as one pass from the front that moves only on a strictly
 * larger value gives it (a NaN never wins; a NaN at 0 is never beaten). Eight lanes, lane k taking
 * values k, k + 8, ..., each keep their own first maximum; the lanes are merged taking the larger
 * value, or the lower index of two equal ones, and the values past the last whole eight follow one
 * at a time. One value at a time, each comparison waited for the previous one: 32 us of every
 * greedy token of a 32,000-token vocabulary. */
int argmax(const float *x, int n) {
    int best = 0, i = 0;
    if (n >= 16) {
        float8 top = float8_splat(x[0]);
        int8_lanes top_at = {0}, at = {0, 1, 2, 3, 4, 5, 6, 7};
        for (; i + 8 <= n; i += 8, at += 8) {
            float8 v;
            memcpy(&v, x + i, sizeof v);
            const int8_lanes larger = v > top;
            top = float8_select(larger, v, top);
            top_at = (larger & at) | (~larger & top_at);
        }
        float lane_top[8];
        int lane_at[8];
        memcpy(lane_top, &top, sizeof lane_top);
        memcpy(lane_at, &top_at, sizeof lane_at);
        best = lane_at[0];
        for (int k = 1; k < 8; k++)
            if (lane_top[k] > x[best] || (lane_top[k] == x[best] && lane_at[k] < best)) best = lane_at[k];
    }
    for (i = i > 1 ? i : 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

bool sampler_is_greedy(const sampler *s) { return s->params.temperature == 0.0f; }

int sampling_params_validate(const sampling_params *p, ramp_error *err) {
    if (!(p->temperature >= 0.0f) || !isfinite(p->temperature))
        return ramp_fail(err, "temperature must be a number >= 0, got %g", p->temperature);
    if (!(p->top_p > 0.0f && p->top_p <= 1.0f)) return ramp_fail(err, "top-p must be in (0, 1], got %g", p->top_p);
    if (p->top_k < 0) return ramp_fail(err, "top-k must be >= 0, got %d", p->top_k);
    return 0;
}

int sampler_init(sampler *s, const sampling_params *params, int vocab_size, ramp_error *err) {
    memset(s, 0, sizeof *s);
    if (sampling_params_validate(params, err)) return -1;
    s->params = *params;
    s->vocab_size = vocab_size;
    s->rng_state = params->seed ? params->seed : 0x9e3779b97f4a7c15ull; /* xorshift must not start at 0 */
    s->candidates = malloc((size_t)vocab_size * sizeof *s->candidates);
    if (!s->candidates) return ramp_fail(err, "sampler: out of memory for %d candidates", vocab_size);
    return 0;
}

void sampler_free(sampler *s) {
    free(s->candidates);
    memset(s, 0, sizeof *s);
}

static float random_unit(uint64_t *state) { /* xorshift64*, uniform in [0, 1) */
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    return (float)((*state * 0x2545F4914F6CDD1Dull) >> 40) / 16777216.0f;
}

static int by_probability_descending(const void *a, const void *b) {
    const token_probability *x = a, *y = b;
    if (x->probability != y->probability) return x->probability < y->probability ? 1 : -1;
    return x->token - y->token;
}

int sampler_sample(sampler *s, float *logits) {
    const int n = s->vocab_size;
    if (sampler_is_greedy(s)) return argmax(logits, n);
    for (int i = 0; i < n; i++) logits[i] /= s->params.temperature;
    softmax(logits, n);
    int kept = n;
    bool restricted = (s->params.top_k > 0 && s->params.top_k < n) || s->params.top_p < 1.0f;
    if (!restricted) {
        float r = random_unit(&s->rng_state), cumulative = 0.0f;
        for (int i = 0; i < n; i++) {
            cumulative += logits[i];
            if (r < cumulative) return i;
        }
        return n - 1;
    }
    for (int i = 0; i < n; i++) s->candidates[i] = (token_probability){logits[i], i};
    qsort(s->candidates, (size_t)n, sizeof *s->candidates, by_probability_descending);
    if (s->params.top_k > 0 && s->params.top_k < kept) kept = s->params.top_k;
    float mass = 0.0f;
    for (int i = 0; i < kept; i++) {
        mass += s->candidates[i].probability;
        if (mass >= s->params.top_p) {
            kept = i + 1;
            break;
        }
    }
    float r = random_unit(&s->rng_state) * mass, cumulative = 0.0f;
    for (int i = 0; i < kept; i++) {
        cumulative += s->candidates[i].probability;
        if (r < cumulative) return s->candidates[i].token;
    }
    return s->candidates[kept - 1].token;
}
