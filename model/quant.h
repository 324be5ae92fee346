/* quant.h: the stored tensor types ramp computes with, their block layouts, and conversions
 * between them and fp32.
 *
 * Layouts follow ggml (ggml-common.h); all numbers little-endian, blocks packed without padding
 * (so a block's fields may sit at any alignment: read them with the load helpers below). A row of
 * n values of a block type is n / block_elements consecutive blocks. In the formulas q is the
 * stored integer, d, m, dmin fp16 scales.
 *
 *   F32, F16, BF16   one value per element
 *   Q8_0   32 values, 34 bytes: fp16 d | int8 q[32]                           v = d*q
 *   Q4_0   32 values, 18 bytes: fp16 d | u8 qs[16]; element j < 16 is the low nibble of qs[j],
 *          element j + 16 its high nibble                                     v = d*(q - 8)
 *   Q4_1   20 bytes: fp16 d | fp16 m | qs[16] as Q4_0                         v = d*q + m
 *   Q5_0   22 bytes: fp16 d | u32 qh | qs[16]; the fifth bit of element j is bit j of qh
 *                                                                            v = d*(q - 16)
 *   Q5_1   24 bytes: fp16 d | fp16 m | u32 qh | qs[16]                        v = d*q + m
 *   Q2_K  256 values, 84 bytes: u8 scales[16] | u8 qs[64] | fp16 d | fp16 dmin. Sub-block j of
 *          16 values has scale d*(scales[j] & 15) and min dmin*(scales[j] >> 4); 2-bit q.
 *                                                                            v = d*sc*q - dmin*mn
 *   Q3_K  110 bytes: u8 hmask[32] | u8 qs[64] | u8 scales[12] | fp16 d; 16 sub-blocks of 16 with
 *          6-bit scales (stored minus 32); q = 2 low bits - (high bit clear ? 4 : 0)   v = d*sc*q
 *   Q4_K  144 bytes: fp16 d | fp16 dmin | u8 scales[12] | u8 qs[128]; 8 sub-blocks of 32 with
 *          6-bit scale sc and min mn (packed as get_scale_min below)     v = d*sc*q - dmin*mn
 *   Q5_K  176 bytes: fp16 d | fp16 dmin | scales[12] | u8 qh[32] | u8 qs[128]; 5-bit q
 *   Q6_K  210 bytes: u8 ql[128] | u8 qh[64] | int8 scales[16] | fp16 d; 16 sub-blocks of 16;
 *          q = 6-bit value - 32                                                v = d*sc*q
 *   IQ4_NL 32 values, 18 bytes: fp16 d | u8 qs[16], nibbles as Q4_0; a nibble picks one of 16
 *          fixed values (quant_iq4_values, -127 .. 113)                       v = d*value
 *   IQ4_XS 256 values, 136 bytes: fp16 d | u16 scales_h | u8 scales_l[4] | u8 qs[128]; 8 sub-blocks
 *          of 32, each 16 bytes of nibbles as IQ4_NL's, with a 6-bit scale ls (low four bits in
 *          scales_l, top two in scales_h; quant_iq4_xs_scale)               v = d*(ls - 32)*value
 *
 * Which element of a K block each stored bit belongs to is spelled out once, in quant.c
 * (k_block_quants), and every kernel follows it.
 */
#ifndef RAMP_QUANT_H
#define RAMP_QUANT_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "gguf.h"

#define QUANT_BLOCK 32 /* values per block of Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 */
#define QUANT_SUPER 256 /* values per block of the K types */

typedef struct {
    uint16_t scale; /* fp16 */
    int8_t values[QUANT_BLOCK];
} block_q8_0;

typedef struct {
    uint16_t scale; /* fp16 */
    uint8_t nibbles[QUANT_BLOCK / 2];
} block_q4_0;

float fp16_to_fp32(uint16_t h);
uint16_t fp32_to_fp16(float f);
float bf16_to_fp32(uint16_t h);

static inline uint16_t quant_load_u16(const void *p) {
    uint16_t v;
    memcpy(&v, p, sizeof v);
    return v;
}
static inline uint32_t quant_load_u32(const void *p) {
    uint32_t v;
    memcpy(&v, p, sizeof v);
    return v;
}
static inline float quant_load_fp16(const void *p) { return fp16_to_fp32(quant_load_u16(p)); }

/* Q4_K / Q5_K: the 6-bit scale and min of sub-block j (0..7) from the 12 packed bytes. */
void quant_scale_min_k4(int j, const uint8_t *packed, uint8_t *scale, uint8_t *min);
/* Q3_K: the 16 signed scales (already minus 32) from the 12 packed bytes. */
void quant_scales_q3_k(const uint8_t *packed, int8_t scales[16]);

/* IQ4_NL and IQ4_XS: the 16 values a nibble stands for (llama.cpp's kvalues_iq4nl). */
extern const int8_t quant_iq4_values[16];
/* IQ4_NL and IQ4_XS: the 32 values of 16 bytes of nibbles (low nibbles first, then high ones). */
void quant_iq4_nibbles(const uint8_t qs[16], int8_t values[32]);
/* IQ4_XS: the signed scale ls - 32 of sub-block j (0..7) of a block. */
int quant_iq4_xs_scale(const uint8_t *block, int j);

/* The integer quants of one K block in element order, before scales: Q2_K 0..3, Q3_K -4..3,
 * Q4_K 0..15, Q5_K 0..31, Q6_K -32..31, IQ4_XS the table's -127..113. Kernels must pair element
 * e with activation element e. */
void quant_k_block_quants(ggml_type type, const uint8_t *block, int8_t q[QUANT_SUPER]);

/* Converts n elements of type from src (raw file bytes, any alignment) into dst. Returns 0, or -1
 * for a type that is not supported (ggml_type_is_supported) or an n that is not a whole number of
 * blocks. */
int dequantize(ggml_type type, const void *src, float *dst, size_t n);

/* Bytes of a row of n elements of type (n a whole number of blocks). */
size_t quant_row_bytes(ggml_type type, size_t n);

/* The reverse, for writing files (synthetic models), the fp16 KV cache and tests. */
void quantize_f16(const float *src, uint16_t *dst, size_t n);
void quantize_q8_0(const float *src, block_q8_0 *dst, size_t n);
void quantize_q4_0(const float *src, block_q4_0 *dst, size_t n);

#endif
