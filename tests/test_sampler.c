/* test_sampler.c: greedy choice (argmax) gives the index one pass from the front gives, whatever
 * the length, ties, zeros of either sign, infinities and NaNs; and a greedy sampler leaves the
 * logits as they were. */
#include <criterion/criterion.h>

#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "sampler.h"

/* The definition argmax keeps: move only on a strictly larger value. */
static int first_largest(const float *x, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

static uint64_t next_random(uint64_t *state) {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    return *state;
}

/* Values from a small set, so that ties are common, with special values mixed in. */
static float pick_value(uint64_t *state) {
    static const float specials[] = {0.0f, -0.0f, INFINITY, -INFINITY, NAN, 3.0f, -3.0f, 1e-30f};
    const uint64_t r = next_random(state);
    if (r % 16 == 0) return specials[(r >> 8) % 8];
    return (float)((int)((r >> 16) % 9) - 4);
}

Test(sampler, argmax_matches_one_pass_from_the_front) {
    uint64_t state = 0x1234567;
    float x[200];
    for (int round = 0; round < 20000; round++) {
        const int n = 1 + (int)(next_random(&state) % 200);
        for (int i = 0; i < n; i++) x[i] = pick_value(&state);
        const int want = first_largest(x, n), got = argmax(x, n);
        cr_assert_eq(got, want, "round %d, n %d: argmax %d (%g), one pass %d (%g)", round, n, got, x[got], want,
                     x[want]);
    }
}

Test(sampler, argmax_edges) {
    float x[64];
    for (int i = 0; i < 64; i++) x[i] = 1.0f;
    cr_assert_eq(argmax(x, 64), 0, "all equal: the first");
    x[63] = 2.0f;
    cr_assert_eq(argmax(x, 64), 63, "the last, past the whole eights' lanes");
    x[17] = 2.0f;
    cr_assert_eq(argmax(x, 64), 17, "two equal largest: the lower index");
    x[0] = NAN;
    cr_assert_eq(argmax(x, 64), 0, "a NaN at 0 is never beaten");
    x[0] = -INFINITY;
    x[40] = NAN;
    cr_assert_eq(argmax(x, 64), 17, "a NaN elsewhere never wins");
    for (int i = 0; i < 64; i++) x[i] = -INFINITY;
    cr_assert_eq(argmax(x, 64), 0, "all -inf: the first");
    cr_assert_eq(argmax(x, 1), 0);
}

Test(sampler, greedy_sampling_reads_the_logits_without_changing_them) {
    enum { VOCAB = 1000 };
    sampler s;
    ramp_error err;
    const sampling_params greedy = {.temperature = 0.0f, .top_p = 1.0f, .top_k = 0, .seed = 1};
    cr_assert_eq(sampler_init(&s, &greedy, VOCAB, &err), 0, "%s", err.message);
    cr_assert(sampler_is_greedy(&s));
    float logits[VOCAB], copy[VOCAB];
    for (int i = 0; i < VOCAB; i++) logits[i] = copy[i] = sinf((float)i * 0.37f);
    cr_assert_eq(sampler_sample(&s, logits), first_largest(copy, VOCAB));
    for (int i = 0; i < VOCAB; i++) cr_assert_eq(logits[i], copy[i], "logit %d changed", i);
    sampler_free(&s);

    const sampling_params warm = {.temperature = 0.8f, .top_p = 1.0f, .top_k = 0, .seed = 1};
    cr_assert_eq(sampler_init(&s, &warm, VOCAB, &err), 0, "%s", err.message);
    cr_assert_not(sampler_is_greedy(&s));
    sampler_free(&s);
}
