/* kernels_portable.c: the kernels in plain C. They state the arithmetic of kernels.h literally,
 * one output at a time, and are the reference the SIMD kernels must match bit for bit. */
#include <math.h>

#include "kernels_internal.h"
#include "quant.h"

static float hsum16(const float acc[16]) {
    float s[8];
    for (int l = 0; l < 8; l++) s[l] = acc[l] + acc[l + 8];
    for (int l = 0; l < 4; l++) s[l] = s[l] + s[l + 4];
    for (int l = 0; l < 2; l++) s[l] = s[l] + s[l + 2];
    return s[0] + s[1];
}

/* ---- float weights ------------------------------------------------------------------------------- */

static float weight_value(ggml_type type, const unsigned char *w, int i) {
    switch (type) {
    case GGML_TYPE_F16: return fp16_to_fp32(quant_load_u16(w + 2 * i));
    case GGML_TYPE_BF16: return bf16_to_fp32(quant_load_u16(w + 2 * i));
    default: {
        float v;
        memcpy(&v, w + 4 * i, sizeof v);
        return v;
    }
    }
}

static float dot_float(ggml_type type, int n, const unsigned char *w, const float *x) {
    float acc[16] = {0};
    for (int i = 0; i < n; i++) acc[i % 16] = fmaf(weight_value(type, w, i), x[i], acc[i % 16]);
    return hsum16(acc);
}

/* ---- 32-value blocks ------------------------------------------------------------------------------ */

/* The block's stored quants without offsets, into u[32]; the scale and the min (0 if none). */
static void small_block(ggml_type type, const unsigned char *b, int u[32], float *d, float *m) {
    *d = quant_load_fp16(b);
    *m = 0.0f;
    switch (type) {
    case GGML_TYPE_Q8_0:
        for (int j = 0; j < 32; j++) u[j] = (int8_t)b[2 + j];
        break;
    case GGML_TYPE_Q4_0:
        for (int j = 0; j < 16; j++) u[j] = b[2 + j] & 0x0f, u[j + 16] = b[2 + j] >> 4;
        break;
    case GGML_TYPE_IQ4_NL: {
        int8_t values[32];
        quant_iq4_nibbles(b + 2, values);
        for (int j = 0; j < 32; j++) u[j] = values[j];
        break;
    }
    case GGML_TYPE_Q4_1:
        *m = quant_load_fp16(b + 2);
        for (int j = 0; j < 16; j++) u[j] = b[4 + j] & 0x0f, u[j + 16] = b[4 + j] >> 4;
        break;
    case GGML_TYPE_Q5_0:
    case GGML_TYPE_Q5_1: {
        const int base = type == GGML_TYPE_Q5_0 ? 2 : 4;
        if (type == GGML_TYPE_Q5_1) *m = quant_load_fp16(b + 2);
        uint32_t qh = quant_load_u32(b + base);
        for (int j = 0; j < 16; j++) {
            u[j] = (b[base + 4 + j] & 0x0f) | (int)(((qh >> j) & 1) << 4);
            u[j + 16] = (b[base + 4 + j] >> 4) | (int)(((qh >> (j + 16)) & 1) << 4);
        }
        break;
    }
    default:
        break;
    }
}

static float dot_small(ggml_type type, int n, const unsigned char *w, const void *act) {
    const act_q8_32_view a = act_q8_32_at(act, n);
    const size_t block_bytes = (size_t)ggml_type_block_bytes(type);
    const int offset = type == GGML_TYPE_Q4_0 ? 8 : type == GGML_TYPE_Q5_0 ? 16 : 0;
    const bool has_min = type == GGML_TYPE_Q4_1 || type == GGML_TYPE_Q5_1;
    float acc = 0.0f;
    for (int b = 0; b < n / 32; b++) {
        int u[32];
        float d, m;
        small_block(type, w + (size_t)b * block_bytes, u, &d, &m);
        int32_t dot = 0;
        for (int j = 0; j < 32; j++) dot += u[j] * a.q[act_q8_32_index(b, j)];
        dot -= offset * a.sum[b];
        acc = fmaf(d * a.d[b], (float)dot, acc);
        if (has_min) acc = fmaf(m, a.dsum[b], acc);
    }
    return acc;
}

/* ---- K blocks ------------------------------------------------------------------------------------- */

static float dot_k(ggml_type type, int n, const unsigned char *w, const void *act) {
    const act_q8_256_view a = act_q8_256_at(act, n);
    const size_t block_bytes = (size_t)ggml_type_block_bytes(type);
    float acc = 0.0f, acc_min = 0.0f;
    for (int s = 0; s < n / 256; s++) {
        const unsigned char *b = w + (size_t)s * block_bytes;
        const int8_t *x = a.q + 256 * s;
        const int16_t *bsum = a.bsum + 16 * s;
        int8_t q[QUANT_SUPER];
        quant_k_block_quants(type, b, q);
        int32_t A = 0, B = 0;
        float wd, wdmin = 0.0f;
        switch (type) {
        case GGML_TYPE_Q4_K:
        case GGML_TYPE_Q5_K:
            wd = quant_load_fp16(b);
            wdmin = quant_load_fp16(b + 2);
            for (int j = 0; j < 8; j++) {
                uint8_t sc, mn;
                quant_scale_min_k4(j, b + 4, &sc, &mn);
                int32_t dot = 0;
                for (int l = 0; l < 32; l++) dot += q[32 * j + l] * x[32 * j + l];
                A += sc * dot;
                B += mn * (bsum[2 * j] + bsum[2 * j + 1]);
            }
            break;
        case GGML_TYPE_Q2_K:
            wd = quant_load_fp16(b + 80);
            wdmin = quant_load_fp16(b + 82);
            for (int j = 0; j < 16; j++) {
                int32_t dot = 0;
                for (int l = 0; l < 16; l++) dot += q[16 * j + l] * x[16 * j + l];
                A += (b[j] & 0x0f) * dot;
                B += (b[j] >> 4) * bsum[j];
            }
            break;
        case GGML_TYPE_IQ4_XS:
            wd = quant_load_fp16(b);
            for (int j = 0; j < 8; j++) {
                int32_t dot = 0;
                for (int l = 0; l < 32; l++) dot += q[32 * j + l] * x[32 * j + l];
                A += quant_iq4_xs_scale(b, j) * dot;
            }
            break;
        case GGML_TYPE_Q3_K:
        case GGML_TYPE_Q6_K: {
            int8_t scales[16];
            if (type == GGML_TYPE_Q3_K) {
                quant_scales_q3_k(b + 96, scales);
                wd = quant_load_fp16(b + 108);
            } else {
                memcpy(scales, b + 192, 16);
                wd = quant_load_fp16(b + 208);
            }
            for (int j = 0; j < 16; j++) {
                int32_t dot = 0;
                for (int l = 0; l < 16; l++) dot += q[16 * j + l] * x[16 * j + l];
                A += scales[j] * dot;
            }
            break;
        }
        default:
            return NAN;
        }
        acc = fmaf(a.d[s] * wd, (float)A, acc);
        if (type == GGML_TYPE_Q4_K || type == GGML_TYPE_Q5_K || type == GGML_TYPE_Q2_K)
            acc_min = fmaf(a.d[s] * wdmin, (float)B, acc_min);
    }
    return acc - acc_min;
}

/* ---- the tile ------------------------------------------------------------------------------------- */

#define TILE_KERNEL(name, body)                                                                             \
    static void name(int n, const void *w, size_t w_stride, int nw, const void *act, size_t act_stride,  \
                     int na, float *out, size_t out_stride) {                                             \
        for (int r = 0; r < na; r++)                                                                       \
            for (int f = 0; f < nw; f++) {                                                                 \
                const unsigned char *wr = (const unsigned char *)w + (size_t)f * w_stride;                 \
                const char *ar = (const char *)act + (size_t)r * act_stride;                               \
                out[(size_t)r * out_stride + f] = body;                                                    \
            }                                                                                              \
    }

TILE_KERNEL(tile_f32, dot_float(GGML_TYPE_F32, n, wr, (const float *)ar))
TILE_KERNEL(tile_f16, dot_float(GGML_TYPE_F16, n, wr, (const float *)ar))
TILE_KERNEL(tile_bf16, dot_float(GGML_TYPE_BF16, n, wr, (const float *)ar))
TILE_KERNEL(tile_q8_0, dot_small(GGML_TYPE_Q8_0, n, wr, ar))
TILE_KERNEL(tile_q4_0, dot_small(GGML_TYPE_Q4_0, n, wr, ar))
TILE_KERNEL(tile_q4_1, dot_small(GGML_TYPE_Q4_1, n, wr, ar))
TILE_KERNEL(tile_q5_0, dot_small(GGML_TYPE_Q5_0, n, wr, ar))
TILE_KERNEL(tile_q5_1, dot_small(GGML_TYPE_Q5_1, n, wr, ar))
TILE_KERNEL(tile_q2_k, dot_k(GGML_TYPE_Q2_K, n, wr, ar))
TILE_KERNEL(tile_q3_k, dot_k(GGML_TYPE_Q3_K, n, wr, ar))
TILE_KERNEL(tile_q4_k, dot_k(GGML_TYPE_Q4_K, n, wr, ar))
TILE_KERNEL(tile_q5_k, dot_k(GGML_TYPE_Q5_K, n, wr, ar))
TILE_KERNEL(tile_q6_k, dot_k(GGML_TYPE_Q6_K, n, wr, ar))
TILE_KERNEL(tile_iq4_nl, dot_small(GGML_TYPE_IQ4_NL, n, wr, ar))
TILE_KERNEL(tile_iq4_xs, dot_k(GGML_TYPE_IQ4_XS, n, wr, ar))

dot_fn kernels_portable_for(ggml_type type) {
    switch (type) {
    case GGML_TYPE_F32: return tile_f32;
    case GGML_TYPE_F16: return tile_f16;
    case GGML_TYPE_BF16: return tile_bf16;
    case GGML_TYPE_Q8_0: return tile_q8_0;
    case GGML_TYPE_Q4_0: return tile_q4_0;
    case GGML_TYPE_Q4_1: return tile_q4_1;
    case GGML_TYPE_Q5_0: return tile_q5_0;
    case GGML_TYPE_Q5_1: return tile_q5_1;
    case GGML_TYPE_Q2_K: return tile_q2_k;
    case GGML_TYPE_Q3_K: return tile_q3_k;
    case GGML_TYPE_Q4_K: return tile_q4_k;
    case GGML_TYPE_Q5_K: return tile_q5_k;
    case GGML_TYPE_Q6_K: return tile_q6_k;
    case GGML_TYPE_IQ4_NL: return tile_iq4_nl;
    case GGML_TYPE_IQ4_XS: return tile_iq4_xs;
    default: return NULL;
    }
}
