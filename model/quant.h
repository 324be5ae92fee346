/* quant.h: conversions between fp32 and the stored tensor types F16, BF16, Q8_0 and Q4_0.
 *
 * Block layouts follow ggml: Q8_0 is 32 values as {fp16 scale d; int8 q[32]} (value = d*q);
 * Q4_0 is 32 values as {fp16 scale d; uint8 nibbles[16]} where element j < 16 is the low nibble
 * of byte j and element j + 16 its high nibble (value = d * (nibble - 8)).
 * Counts are in elements; for block types n must be a multiple of 32.
 */
#ifndef RAMP_QUANT_H
#define RAMP_QUANT_H

#include <stddef.h>
#include <stdint.h>

#include "gguf.h"

#define QUANT_BLOCK 32

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

/* Converts n elements of type from src (raw file bytes, any alignment) into dst. Returns 0, or -1
 * for a type it does not know or an n that is not a whole number of blocks. */
int dequantize(ggml_type type, const void *src, float *dst, size_t n);

/* The reverse, for writing files (synthetic models) and for tests. */
void quantize_f16(const float *src, uint16_t *dst, size_t n);
void quantize_q8_0(const float *src, block_q8_0 *dst, size_t n);
void quantize_q4_0(const float *src, block_q4_0 *dst, size_t n);

#endif
