/* exp8.h: e^x for eight floats at once, for the softmax and SwiGLU of forward.c (attention.c uses its float8).
 *
 * glibc's expf is a call per value (a softmax over a row's positions and SwiGLU's sigmoid took
 * about 8% of a small model's evaluation, serially on the calling thread). This computes eight
 * lanes with plain float operations in GCC/clang vector extensions: SIMD wherever the target has
 * it, and the same bits on every x86-64 machine and at every lane (buffers' tails go through the
 * same eight-lane code), so results stay independent of threads, batches and pipeline splits.
 *
 * Accuracy (tests/test_exp8.c): within 2 units in the last place of the exact value for x in
 * [-86.6, 88.72]. Below -86.6 the result is 0 (a weight under 2^-125 changes no softmax or
 * sigmoid), above 88.72 it is +inf, and NaN stays NaN.
 *
 * Method: x = n ln2 + r with n = round(x / ln2) and |r| <= ln2 / 2, ln2 split in two so that
 * n * ln2_high is exact; e^r by its Taylor series to r^7 (truncation below 1e-8 relative);
 * 2^n put together in the exponent bits. No multiply and add may be fused (contraction off),
 * or a target with FMA would round differently from one without. */
#ifndef RAMP_EXP8_H
#define RAMP_EXP8_H

#include <string.h>

#ifdef __clang__
#pragma clang fp contract(off)
#endif /* GCC: -std=c11 already keeps every multiply and add apart */

typedef float float8 __attribute__((vector_size(32)));
typedef int int8_lanes __attribute__((vector_size(32)));

static inline float8 float8_splat(float v) { return (float8){v, v, v, v, v, v, v, v}; }

/* mask ? a : b, lane by lane (mask lanes all ones or all zeros, as comparisons give) */
static inline float8 float8_select(int8_lanes mask, float8 a, float8 b) {
    int8_lanes ia, ib;
    memcpy(&ia, &a, sizeof ia);
    memcpy(&ib, &b, sizeof ib);
    const int8_lanes bits = (mask & ia) | (~mask & ib);
    float8 out;
    memcpy(&out, &bits, sizeof out);
    return out;
}

static inline float8 exp8(float8 x) {
    const float low = -86.6f, high = 88.72283f;
    const int8_lanes below = x < float8_splat(low), above = x > float8_splat(high), nan = x != x;
    /* in range (and not NaN) for the arithmetic, so that the integer conversion is defined */
    const float8 xr = float8_select(below | above | nan, float8_splat(0.0f), x);
    const float8 shifter = float8_splat(12582912.0f); /* 1.5 * 2^23: adding it rounds to an integer */
    const float8 n = (xr * float8_splat(1.44269504088896341f) + shifter) - shifter;
    /* ln2 = 0.693359375 (9 significant bits: n * it is exact) - 2.12194440e-4 */
    const float8 r = (xr - n * float8_splat(0.693359375f)) - n * float8_splat(-2.12194440e-4f);
    float8 p = float8_splat(1.0f / 5040.0f);
    p = p * r + float8_splat(1.0f / 720.0f);
    p = p * r + float8_splat(1.0f / 120.0f);
    p = p * r + float8_splat(1.0f / 24.0f);
    p = p * r + float8_splat(1.0f / 6.0f);
    p = p * r + float8_splat(0.5f);
    p = p * r + float8_splat(1.0f);
    p = p * r + float8_splat(1.0f);
    /* 2^(n - 1) is a normal float for n in [-125, 128]; the last doubling may overflow to inf */
    const int8_lanes exponent = (__builtin_convertvector(n, int8_lanes) + 126) << 23;
    float8 half_scale;
    memcpy(&half_scale, &exponent, sizeof half_scale);
    const float8 y = p * half_scale * float8_splat(2.0f);
    return float8_select(nan, x, float8_select(below, float8_splat(0.0f), float8_select(above, float8_splat(__builtin_inff()), y)));
}

/* Up to eight values from p (count 1..8) into a vector, the missing lanes set to fill. Eight is
 * one vector load; fewer go through memory (a variable-length copy into the vector, then a load
 * that waits for it: eight values a call, that made the softmax's loops several times slower). */
static inline float8 float8_load_partial(const float *p, int count, float fill) {
    float8 v;
    if (count == 8) {
        memcpy(&v, p, sizeof v);
        return v;
    }
    v = float8_splat(fill);
    memcpy(&v, p, (size_t)count * sizeof(float));
    return v;
}

/* The first count lanes of v (1..8) to p: eight is one vector store (a variable length was copied
 * float by float). */
static inline void float8_store_partial(float *p, float8 v, int count) {
    if (count == 8) memcpy(p, &v, sizeof v);
    else memcpy(p, &v, (size_t)count * sizeof(float));
}

#endif
