/* kernels.h: dot products of stored weight rows (any supported type, read in place from the
 * file mapping) with activation rows, the arithmetic they promise, and the CPU dispatch.
 *
 * Activations. A matrix product first converts each activation row once into the form its
 * weight type multiplies with (act_kind_of):
 *   ACT_F32     F32, F16, BF16 weights: the fp32 row itself.
 *   ACT_Q8_32   Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, IQ4_NL: per block b of 32 values a scale d[b] = amax/127
 *               (fp32) and int8 q = round-to-nearest-even(x / d), plus sum[b] = sum of the block's
 *               q and dsum[b] = d[b] * (float)sum[b].
 *   ACT_Q8_256  the K types and IQ4_XS: the same with blocks of 256 values, plus bsum[i] = sum of q over each
 *               16 values (int16).
 * Each kind lays a row out in act_row_bytes(kind, n) bytes (a multiple of 64); act_quantize
 * fills one. The row layout is private to kernels*.c.
 *
 * The arithmetic (the same in every implementation, so results do not depend on the CPU level,
 * the thread count, the tile a value was computed in, or which other rows share the batch):
 * the integer part of every block product is exact (int32), and the floating-point part is
 * fixed as follows; "fma" is fmaf, every other operation is one IEEE fp32 operation.
 *   float types   acc[i % 16] = fma(w[i], x[i], acc[i % 16]) for i = 0, 1, ..., n-1 in order.
 *                 result = hsum16(acc), acc starting at +0, where hsum16: s[l] = acc[l] +
 *                 acc[l+8] (l < 8), then s[l] += s[l+4] (l < 4), s[l] += s[l+2] (l < 2),
 *                 result = s[0] + s[1].
 *   Q8_0, Q4_0, Q5_0, IQ4_NL   one accumulator over blocks b in order: i = sum over the block
 *                 of (w_q - offset) * x_q (offset 0, 8, 16; IQ4_NL: w_q is the nibble's value
 *                 from quant_iq4_values, offset 0); acc = fma(wd * d[b], (float)i, acc).
 *   Q4_1, Q5_1    i = sum of w_q * x_q; acc = fma(wd * d[b], (float)i, acc); then
 *                 acc = fma(wm, dsum[b], acc). result = acc (starting at +0).
 *                 (One accumulator per output lets SIMD kernels keep one weight row per lane.)
 *   K types       over super-blocks s in order, with exact integers
 *                 A = sum over sub-blocks j of scale_j * (sum of w_q * x_q over sub-block j) and
 *                 B = sum over sub-blocks j of min_j * (sum of x_q over sub-block j):
 *                 acc = fma(d[s] * wd, (float)A, acc), and for Q4_K, Q5_K, Q2_K
 *                 acc_min = fma(d[s] * wdmin, (float)B, acc_min); result = acc - acc_min
 *                 (both start at +0; Q3_K, Q6_K and IQ4_XS have signed quants and no B;
 *                 IQ4_XS's sub-blocks are 32 values, its scale_j = ls_j - 32 and w_q the
 *                 nibble's value).
 * where wd, wm, wdmin are the block's fp16 scales converted exactly to fp32. This is what the
 * portable C kernels compute literally and what the SIMD kernels reproduce bit for bit (tests
 * check both, on random blocks with extreme scales). It needs ISO C floating point: no
 * contraction of a*b+c into fma (the Makefile's -std=c11 gives that).
 *
 * Every function here is safe to call from several threads at once.
 */
#ifndef RAMP_KERNELS_H
#define RAMP_KERNELS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gguf.h"

/* A stored matrix [rows][cols] of one type, rows contiguous (row r starts at data + r*row_bytes).
 * data points into the file mapping (or a buffer the model owns); this struct owns nothing. */
typedef struct {
    ggml_type type;
    int rows, cols;
    size_t row_bytes;
    const void *data;
} weight_matrix;

typedef enum { ACT_F32, ACT_Q8_32, ACT_Q8_256, ACT_KINDS } act_kind;

/* KERNELS_AVX512_VBMI2: the AVX-512 kernels, with one more instruction (vpshrdd) where the CPU has
 * it (Ice Lake and later, AMD Zen 4; Cascade Lake has VNNI without it). */
typedef enum { KERNELS_PORTABLE, KERNELS_AVX2, KERNELS_AVX512, KERNELS_AVX512_VBMI2, KERNEL_LEVELS } kernel_level;

act_kind act_kind_of(ggml_type type);
/* Bytes of one converted row of n values (n a multiple of the kind's block; any n for ACT_F32). */
size_t act_row_bytes(act_kind kind, int n);
/* Converts x[n] into dst (act_row_bytes(kind, n) bytes, 64-byte aligned). For ACT_F32 it copies. */
void act_quantize(act_kind kind, const float *x, int n, void *dst);
/* The same with an explicit implementation (the same bytes at every level), for tests; false when
 * this CPU or build lacks that level. */
bool act_quantize_at(kernel_level level, act_kind kind, const float *x, int n, void *dst);

/* The widest tile one kernel call computes: KERNEL_MAX_W weight rows by KERNEL_MAX_A activation
 * rows. */
enum { KERNEL_MAX_W = 16, KERNEL_MAX_A = 16 };

/* out[a * out_stride + w] = dot(weight row w, activation row a) for w < nw, a < na, with the
 * arithmetic above. w_rows points at weight row 0 (w_stride bytes apart), act at activation row 0
 * (act_stride bytes apart, converted for act_kind_of(type)); n is the row length. 1 <= nw <=
 * KERNEL_MAX_W, 1 <= na <= KERNEL_MAX_A. type must be supported. */
void kernel_dot(ggml_type type, int n, const void *w_rows, size_t w_stride, int nw, const void *act,
                size_t act_stride, int na, float *out, size_t out_stride);

/* The same with an explicit implementation, for tests and benchmarks. Returns false (and does
 * nothing) when this CPU or build lacks that level. */
bool kernel_dot_at(kernel_level level, ggml_type type, int n, const void *w_rows, size_t w_stride, int nw,
                   const void *act, size_t act_stride, int na, float *out, size_t out_stride);

/* The level kernel_dot uses: the best this CPU supports, chosen once (thread-safe), unless the
 * environment variable RAMP_KERNELS names a lower one (portable, avx2, avx512, avx512-vbmi2). */
kernel_level kernels_level(void);
const char *kernel_level_name(kernel_level level);
bool kernel_level_available(kernel_level level);

#endif
