/* kernels_internal.h: what the kernel implementations (kernels_portable.c, kernels_avx2.c,
 * kernels_avx512.c) share: the layout of converted activation rows and the table type.
 * Not for use outside model/kernels*.c.
 *
 * Activation row layouts (one row; act_row_bytes says how many bytes):
 *   ACT_F32     float x[n16], n16 = n rounded up to 16, the tail zero.
 *   ACT_Q8_32   int8 q[32 * nb16] | float d[nb16] | float dsum[nb16] | int32 sum[nb16], where
 *               nb16 = blocks rounded up to 16; padding blocks are all zero (d = 0), so SIMD code
 *               may read activations in whole groups of 16 blocks. Weights are never padded.
 *               q in natural order (value j of block b at 32 * b + j).
 *   ACT_Q8_256  int8 q[n] | float d[n / 256] | int16 bsum[n / 16].
 */
#ifndef RAMP_KERNELS_INTERNAL_H
#define RAMP_KERNELS_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "kernels.h"

typedef void (*dot_fn)(int n, const void *w, size_t w_stride, int nw, const void *act, size_t act_stride, int na,
                       float *out, size_t out_stride);

static inline int act_blocks16(int n) { return (n / 32 + 15) / 16 * 16; }
static inline int act_pad16(int n) { return (n + 15) / 16 * 16; }

typedef struct {
    const int8_t *q;
    const float *d, *dsum;
    const int32_t *sum;
} act_q8_32_view;

/* Where value j (0..31) of block b sits in an ACT_Q8_32 row's q. */
static inline size_t act_q8_32_index(int b, int j) { return (size_t)32 * b + j; }

static inline act_q8_32_view act_q8_32_at(const void *row, int n) {
    const int nb16 = act_blocks16(n);
    const char *p = row;
    act_q8_32_view v = {(const int8_t *)p, (const float *)(p + 32 * nb16), (const float *)(p + 36 * nb16),
                        (const int32_t *)(p + 40 * nb16)};
    return v;
}

typedef struct {
    const int8_t *q;
    const float *d;
    const int16_t *bsum;
} act_q8_256_view;

static inline act_q8_256_view act_q8_256_at(const void *row, int n) {
    const char *p = row;
    act_q8_256_view v = {(const int8_t *)p, (const float *)(p + n), (const int16_t *)(p + n + 4 * (n / 256))};
    return v;
}

/* Each level's kernel for a type, or NULL where that level has none (the caller then uses the
 * portable one, which computes the same numbers). */
dot_fn kernels_portable_for(ggml_type type);
dot_fn kernels_avx2_for(ggml_type type);
dot_fn kernels_avx512_for(ggml_type type, bool vbmi2); /* vbmi2: the CPU has AVX512-VBMI2 */
/* These take at most KERNEL_NARROW_A activation rows a call (kernels.c splits wider tiles); the
 * AVX-512 kernels for 32-value blocks and Q4_K, Q5_K, Q6_K also come in a form that takes 9 to
 * KERNEL_MAX_A at once (kernels_avx512_wide_for; NULL for other types). */
enum { KERNEL_NARROW_A = 8 };
dot_fn kernels_avx512_wide_for(ggml_type type);

/* One block of an activation row: q[i] = round(x[i] * 127 / amax), ties to even, and the scale
 * amax / 127 returned (kernels.c states the rules). The portable one takes any count; the AVX-512
 * one (NULL where the build has none) takes a multiple of 16 and gives the same bytes. */
typedef float (*block_quantizer)(const float *x, int count, int8_t *q);
float quantize_block_portable(const float *x, int count, int8_t *q);
block_quantizer kernels_avx512_quantizer(void);

#endif
