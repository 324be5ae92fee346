#include "quant.h"

#include <math.h>
#include <string.h>

float fp16_to_fp32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exponent = (h >> 10) & 0x1f;
    uint32_t mantissa = h & 0x3ff;
    uint32_t bits;
    if (exponent == 0) {
        if (mantissa == 0) {
            bits = sign;
        } else { /* subnormal: renormalise */
            exponent = 127 - 15 + 1;
            while ((mantissa & 0x400) == 0) {
                mantissa <<= 1;
                exponent--;
            }
            mantissa &= 0x3ff;
            bits = sign | (exponent << 23) | (mantissa << 13);
        }
    } else if (exponent == 0x1f) {
        bits = sign | 0x7f800000u | (mantissa << 13);
    } else {
        bits = sign | ((exponent + 127 - 15) << 23) | (mantissa << 13);
    }
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

uint16_t fp32_to_fp16(float f) {
    uint32_t bits;
    memcpy(&bits, &f, sizeof bits);
    uint16_t sign = (uint16_t)((bits >> 16) & 0x8000);
    int32_t exponent = (int32_t)((bits >> 23) & 0xff) - 127 + 15;
    uint32_t mantissa = bits & 0x7fffff;
    if (((bits >> 23) & 0xff) == 0xff) return sign | 0x7c00 | (mantissa ? 0x200 : 0);
    if (exponent >= 0x1f) return sign | 0x7c00;
    if (exponent <= 0) {
        if (exponent < -10) return sign;
        mantissa |= 0x800000;
        uint32_t shift = (uint32_t)(14 - exponent);
        uint32_t half = mantissa >> shift;
        uint32_t rest = mantissa & ((1u << shift) - 1);
        uint32_t halfway = 1u << (shift - 1);
        if (rest > halfway || (rest == halfway && (half & 1))) half++;
        return sign | (uint16_t)half;
    }
    uint32_t half = ((uint32_t)exponent << 10) | (mantissa >> 13);
    uint32_t rest = mantissa & 0x1fff;
    if (rest > 0x1000 || (rest == 0x1000 && (half & 1))) half++; /* may carry into the exponent: fine */
    return sign | (uint16_t)half;
}

float bf16_to_fp32(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

static uint16_t load_u16(const unsigned char *p) { return (uint16_t)(p[0] | (p[1] << 8)); }

int dequantize(ggml_type type, const void *src, float *dst, size_t n) {
    const unsigned char *bytes = src;
    switch (type) {
    case GGML_TYPE_F32:
        memcpy(dst, src, n * sizeof(float));
        return 0;
    case GGML_TYPE_F16:
        for (size_t i = 0; i < n; i++) dst[i] = fp16_to_fp32(load_u16(bytes + 2 * i));
        return 0;
    case GGML_TYPE_BF16:
        for (size_t i = 0; i < n; i++) dst[i] = bf16_to_fp32(load_u16(bytes + 2 * i));
        return 0;
    case GGML_TYPE_Q8_0:
        if (n % QUANT_BLOCK) return -1;
        for (size_t b = 0; b < n / QUANT_BLOCK; b++) {
            const unsigned char *block = bytes + b * sizeof(block_q8_0);
            float scale = fp16_to_fp32(load_u16(block));
            const int8_t *values = (const int8_t *)(block + 2);
            for (int j = 0; j < QUANT_BLOCK; j++) dst[b * QUANT_BLOCK + j] = scale * values[j];
        }
        return 0;
    case GGML_TYPE_Q4_0:
        if (n % QUANT_BLOCK) return -1;
        for (size_t b = 0; b < n / QUANT_BLOCK; b++) {
            const unsigned char *block = bytes + b * sizeof(block_q4_0);
            float scale = fp16_to_fp32(load_u16(block));
            const unsigned char *nibbles = block + 2;
            for (int j = 0; j < QUANT_BLOCK / 2; j++) {
                dst[b * QUANT_BLOCK + j] = scale * (float)((nibbles[j] & 0x0f) - 8);
                dst[b * QUANT_BLOCK + j + QUANT_BLOCK / 2] = scale * (float)((nibbles[j] >> 4) - 8);
            }
        }
        return 0;
    }
    return -1;
}

void quantize_f16(const float *src, uint16_t *dst, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = fp32_to_fp16(src[i]);
}

void quantize_q8_0(const float *src, block_q8_0 *dst, size_t n) {
    for (size_t b = 0; b < n / QUANT_BLOCK; b++) {
        const float *x = src + b * QUANT_BLOCK;
        float max_abs = 0.0f;
        for (int j = 0; j < QUANT_BLOCK; j++) max_abs = fmaxf(max_abs, fabsf(x[j]));
        float scale = max_abs / 127.0f;
        float inverse = scale != 0.0f ? 1.0f / scale : 0.0f;
        dst[b].scale = fp32_to_fp16(scale);
        for (int j = 0; j < QUANT_BLOCK; j++) dst[b].values[j] = (int8_t)roundf(x[j] * inverse);
    }
}

void quantize_q4_0(const float *src, block_q4_0 *dst, size_t n) {
    for (size_t b = 0; b < n / QUANT_BLOCK; b++) {
        const float *x = src + b * QUANT_BLOCK;
        float extreme = 0.0f; /* the value of largest magnitude, with its sign (as ggml) */
        for (int j = 0; j < QUANT_BLOCK; j++)
            if (fabsf(x[j]) > fabsf(extreme)) extreme = x[j];
        float scale = extreme / -8.0f;
        float inverse = scale != 0.0f ? 1.0f / scale : 0.0f;
        dst[b].scale = fp32_to_fp16(scale);
        for (int j = 0; j < QUANT_BLOCK / 2; j++) {
            int low = (int)(x[j] * inverse + 8.5f), high = (int)(x[j + QUANT_BLOCK / 2] * inverse + 8.5f);
            low = low < 0 ? 0 : low > 15 ? 15 : low;
            high = high < 0 ? 0 : high > 15 ? 15 : high;
            dst[b].nibbles[j] = (uint8_t)(low | (high << 4));
        }
    }
}
