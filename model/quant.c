#include "quant.h"

#include <math.h>
#include <string.h>
#if defined(__F16C__)
#include <immintrin.h>
#endif

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

/* ---- K blocks: which stored bits make element e ---------------------------------------------- */

void quant_scale_min_k4(int j, const uint8_t *packed, uint8_t *scale, uint8_t *min) {
    if (j < 4) { /* sub-blocks 0..3: six bits each in bytes 0..3 (scales) and 4..7 (mins) */
        *scale = packed[j] & 63;
        *min = packed[j + 4] & 63;
    } else { /* 4..7: low four bits in bytes 8..11, top two bits in the spare bits of bytes 0..7 */
        *scale = (uint8_t)((packed[j + 4] & 0x0f) | ((packed[j - 4] >> 6) << 4));
        *min = (uint8_t)((packed[j + 4] >> 4) | ((packed[j] >> 6) << 4));
    }
}

void quant_scales_q3_k(const uint8_t *packed, int8_t scales[16]) {
    for (int j = 0; j < 16; j++) {
        int low = j < 8 ? packed[j] & 0x0f : packed[j - 8] >> 4;
        int high = (packed[8 + j % 4] >> (2 * (j / 4))) & 3;
        scales[j] = (int8_t)((low | (high << 4)) - 32);
    }
}

const int8_t quant_iq4_values[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

void quant_iq4_nibbles(const uint8_t qs[16], int8_t values[32]) {
    for (int l = 0; l < 16; l++) {
        values[l] = quant_iq4_values[qs[l] & 0x0f];
        values[l + 16] = quant_iq4_values[qs[l] >> 4];
    }
}

int quant_iq4_xs_scale(const uint8_t *block, int j) {
    const int low = (block[4 + j / 2] >> (4 * (j % 2))) & 0x0f, high = (quant_load_u16(block + 2) >> (2 * j)) & 3;
    return (low | high << 4) - 32;
}

void quant_k_block_quants(ggml_type type, const uint8_t *block, int8_t q[QUANT_SUPER]) {
    switch (type) {
    case GGML_TYPE_IQ4_XS: /* eight sub-blocks of 32 */
        for (int j = 0; j < 8; j++) quant_iq4_nibbles(block + 8 + 16 * j, q + 32 * j);
        break;
    case GGML_TYPE_Q2_K: { /* two halves of 128; in each, four 2-bit planes of the same 32 bytes */
        const uint8_t *qs = block + 16;
        for (int h = 0; h < 2; h++)
            for (int g = 0; g < 4; g++)
                for (int l = 0; l < 32; l++) q[128 * h + 32 * g + l] = (int8_t)((qs[32 * h + l] >> (2 * g)) & 3);
        break;
    }
    case GGML_TYPE_Q3_K: { /* as Q2_K, plus one high bit per element from hmask (clear means -4) */
        const uint8_t *hmask = block, *qs = block + 32;
        for (int h = 0; h < 2; h++)
            for (int g = 0; g < 4; g++)
                for (int l = 0; l < 32; l++) {
                    int low = (qs[32 * h + l] >> (2 * g)) & 3;
                    int high = (hmask[l] >> (4 * h + g)) & 1;
                    q[128 * h + 32 * g + l] = (int8_t)(low - (high ? 0 : 4));
                }
        break;
    }
    case GGML_TYPE_Q4_K: { /* four chunks of 64: low nibbles of 32 bytes, then their high nibbles */
        const uint8_t *qs = block + 16;
        for (int c = 0; c < 4; c++)
            for (int l = 0; l < 32; l++) {
                q[64 * c + l] = (int8_t)(qs[32 * c + l] & 0x0f);
                q[64 * c + 32 + l] = (int8_t)(qs[32 * c + l] >> 4);
            }
        break;
    }
    case GGML_TYPE_Q5_K: { /* as Q4_K; the fifth bit of chunk c comes from bits 2c and 2c+1 of qh */
        const uint8_t *qh = block + 16, *qs = block + 48;
        for (int c = 0; c < 4; c++)
            for (int l = 0; l < 32; l++) {
                q[64 * c + l] = (int8_t)((qs[32 * c + l] & 0x0f) | (((qh[l] >> (2 * c)) & 1) << 4));
                q[64 * c + 32 + l] = (int8_t)((qs[32 * c + l] >> 4) | (((qh[l] >> (2 * c + 1)) & 1) << 4));
            }
        break;
    }
    case GGML_TYPE_Q6_K: { /* two halves of 128: nibbles from 64 bytes of ql, two top bits from 32 of qh */
        const uint8_t *ql = block, *qh = block + 128;
        for (int h = 0; h < 2; h++)
            for (int l = 0; l < 32; l++) {
                const uint8_t *lo = ql + 64 * h, *hi = qh + 32 * h;
                q[128 * h + l] = (int8_t)(((lo[l] & 0x0f) | (((hi[l] >> 0) & 3) << 4)) - 32);
                q[128 * h + 32 + l] = (int8_t)(((lo[l + 32] & 0x0f) | (((hi[l] >> 2) & 3) << 4)) - 32);
                q[128 * h + 64 + l] = (int8_t)(((lo[l] >> 4) | (((hi[l] >> 4) & 3) << 4)) - 32);
                q[128 * h + 96 + l] = (int8_t)(((lo[l + 32] >> 4) | (((hi[l] >> 6) & 3) << 4)) - 32);
            }
        break;
    }
    default:
        memset(q, 0, QUANT_SUPER);
        break;
    }
}

/* ---- dequantization ------------------------------------------------------------------------------ */

/* One 32-value block of the small types into out[32]. */
static void dequantize_small_block(ggml_type type, const unsigned char *b, float *out) {
    switch (type) {
    case GGML_TYPE_Q8_0: {
        float d = quant_load_fp16(b);
        for (int j = 0; j < 32; j++) out[j] = d * (float)(int8_t)b[2 + j];
        break;
    }
    case GGML_TYPE_Q4_0: {
        float d = quant_load_fp16(b);
        for (int j = 0; j < 16; j++) {
            out[j] = d * (float)((b[2 + j] & 0x0f) - 8);
            out[j + 16] = d * (float)((b[2 + j] >> 4) - 8);
        }
        break;
    }
    case GGML_TYPE_IQ4_NL: {
        float d = quant_load_fp16(b);
        int8_t values[32];
        quant_iq4_nibbles(b + 2, values);
        for (int j = 0; j < 32; j++) out[j] = d * (float)values[j];
        break;
    }
    case GGML_TYPE_Q4_1: {
        float d = quant_load_fp16(b), m = quant_load_fp16(b + 2);
        for (int j = 0; j < 16; j++) {
            out[j] = d * (float)(b[4 + j] & 0x0f) + m;
            out[j + 16] = d * (float)(b[4 + j] >> 4) + m;
        }
        break;
    }
    case GGML_TYPE_Q5_0: {
        float d = quant_load_fp16(b);
        uint32_t qh = quant_load_u32(b + 2);
        for (int j = 0; j < 16; j++) {
            int low = (b[6 + j] & 0x0f) | (int)(((qh >> j) & 1) << 4);
            int high = (b[6 + j] >> 4) | (int)(((qh >> (j + 16)) & 1) << 4);
            out[j] = d * (float)(low - 16);
            out[j + 16] = d * (float)(high - 16);
        }
        break;
    }
    case GGML_TYPE_Q5_1: {
        float d = quant_load_fp16(b), m = quant_load_fp16(b + 2);
        uint32_t qh = quant_load_u32(b + 4);
        for (int j = 0; j < 16; j++) {
            int low = (b[8 + j] & 0x0f) | (int)(((qh >> j) & 1) << 4);
            int high = (b[8 + j] >> 4) | (int)(((qh >> (j + 16)) & 1) << 4);
            out[j] = d * (float)low + m;
            out[j + 16] = d * (float)high + m;
        }
        break;
    }
    default:
        break;
    }
}

/* One 256-value K block into out[256]. */
static void dequantize_k_block(ggml_type type, const unsigned char *b, float *out) {
    int8_t q[QUANT_SUPER];
    quant_k_block_quants(type, b, q);
    switch (type) {
    case GGML_TYPE_Q2_K: {
        float d = quant_load_fp16(b + 80), dmin = quant_load_fp16(b + 82);
        for (int e = 0; e < QUANT_SUPER; e++) {
            uint8_t sc = b[e / 16];
            out[e] = d * (float)(sc & 0x0f) * (float)q[e] - dmin * (float)(sc >> 4);
        }
        break;
    }
    case GGML_TYPE_Q3_K: {
        int8_t scales[16];
        quant_scales_q3_k(b + 96, scales);
        float d = quant_load_fp16(b + 108);
        for (int e = 0; e < QUANT_SUPER; e++) out[e] = d * (float)scales[e / 16] * (float)q[e];
        break;
    }
    case GGML_TYPE_Q4_K:
    case GGML_TYPE_Q5_K: {
        float d = quant_load_fp16(b), dmin = quant_load_fp16(b + 2);
        for (int j = 0; j < 8; j++) {
            uint8_t sc, mn;
            quant_scale_min_k4(j, b + 4, &sc, &mn);
            for (int l = 0; l < 32; l++) out[32 * j + l] = d * (float)sc * (float)q[32 * j + l] - dmin * (float)mn;
        }
        break;
    }
    case GGML_TYPE_Q6_K: {
        float d = quant_load_fp16(b + 208);
        const int8_t *scales = (const int8_t *)(b + 192);
        for (int e = 0; e < QUANT_SUPER; e++) out[e] = d * (float)scales[e / 16] * (float)q[e];
        break;
    }
    case GGML_TYPE_IQ4_XS: {
        float d = quant_load_fp16(b);
        for (int j = 0; j < 8; j++) {
            const float scale = (float)quant_iq4_xs_scale(b, j);
            for (int e = 32 * j; e < 32 * j + 32; e++) out[e] = d * scale * (float)q[e];
        }
        break;
    }
    default:
        break;
    }
}

size_t quant_row_bytes(ggml_type type, size_t n) {
    uint64_t block = ggml_type_block_elements(type);
    return block ? (size_t)(n / block * ggml_type_block_bytes(type)) : 0;
}

int dequantize(ggml_type type, const void *src, float *dst, size_t n) {
    const unsigned char *bytes = src;
    if (!ggml_type_is_supported(type)) return -1;
    const size_t block = (size_t)ggml_type_block_elements(type), block_bytes = (size_t)ggml_type_block_bytes(type);
    if (n % block) return -1;
    switch (type) {
    case GGML_TYPE_F32:
        memcpy(dst, src, n * sizeof(float));
        return 0;
    case GGML_TYPE_F16:
        for (size_t i = 0; i < n; i++) dst[i] = fp16_to_fp32(quant_load_u16(bytes + 2 * i));
        return 0;
    case GGML_TYPE_BF16:
        for (size_t i = 0; i < n; i++) dst[i] = bf16_to_fp32(quant_load_u16(bytes + 2 * i));
        return 0;
    case GGML_TYPE_Q8_0: case GGML_TYPE_Q4_0: case GGML_TYPE_Q4_1: case GGML_TYPE_Q5_0: case GGML_TYPE_Q5_1:
    case GGML_TYPE_IQ4_NL:
        for (size_t b = 0; b < n / block; b++) dequantize_small_block(type, bytes + b * block_bytes, dst + b * block);
        return 0;
    default:
        for (size_t b = 0; b < n / block; b++) dequantize_k_block(type, bytes + b * block_bytes, dst + b * block);
        return 0;
    }
}

/* F16C where the build has it (the fp16 KV cache stores every new position with this): the same
 * bits as fp32_to_fp16, round to nearest even (test_kv_cache checks). */
void quantize_f16(const float *src, uint16_t *dst, size_t n) {
    size_t i = 0;
#if defined(__F16C__)
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(dst + i), _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT));
#endif
    for (; i < n; i++) dst[i] = fp32_to_fp16(src[i]);
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
