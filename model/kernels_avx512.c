/* kernels_avx512.c: the x86 kernels with AVX-512 VNNI integer products (vpdpbusd, vpdpwssd on
 * 256-bit vectors; kernels_x86.inc; arithmetic in kernels.h), and for 32-value blocks 512-bit
 * kernels with sixteen weight rows per vector. Compiled for that target whatever the build flags,
 * and only called when the CPU has it (kernels.c). */
#include "kernels_internal.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#include <math.h>
#include <stdbool.h>
#include <string.h>

#include "quant.h"

#pragma GCC push_options
/* Optimized even in the -O1 sanitizer build: at -O1 the accumulator arrays of the tiles live on
 * the stack, and the kernels run several times slower (the end-to-end tests then time out). */
#pragma GCC optimize("O3")
#pragma GCC target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")
#define KX(name) name##_avx512
#define KX_VNNI 1
#include "kernels_x86.inc"

/* ---- 32-value blocks, sixteen weight rows per 512-bit vector ---------------------------------------
 * As small_lanes in kernels_x86.inc, with a row in each of sixteen 32-bit lanes: the transpose of
 * four 512-bit loads (four rows' 16 quant bytes each) leaves row ROW16[L] in lane L. */

static const int ROW16[16] = {0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15};

/* [dword k of row ROW16[L]] for k = 0..3, from 16 bytes at byte `at` of the 16 rows p + i * stride
 * (or, when rows is not NULL, at rows[i] + at). */
INLINE void transpose16x(const unsigned char *p, size_t stride, const unsigned char *const *rows, size_t at,
                         __m512i t[4]) {
    __m512i a[4];
#define ROW_AT(i) ((const __m128i *)((rows ? rows[i] : p + (i) * stride) + at))
    UNROLL
    for (int q = 0; q < 4; q++) { /* 128-bit lane j of a[q]: row 4q + j */
        __m512i v = _mm512_castsi128_si512(_mm_loadu_si128(ROW_AT(4 * q)));
        v = _mm512_inserti32x4(v, _mm_loadu_si128(ROW_AT(4 * q + 1)), 1);
        v = _mm512_inserti32x4(v, _mm_loadu_si128(ROW_AT(4 * q + 2)), 2);
        a[q] = _mm512_inserti32x4(v, _mm_loadu_si128(ROW_AT(4 * q + 3)), 3);
    }
#undef ROW_AT
    const __m512i t0 = _mm512_unpacklo_epi32(a[0], a[1]), t1 = _mm512_unpackhi_epi32(a[0], a[1]);
    const __m512i t2 = _mm512_unpacklo_epi32(a[2], a[3]), t3 = _mm512_unpackhi_epi32(a[2], a[3]);
    t[0] = _mm512_unpacklo_epi64(t0, t2);
    t[1] = _mm512_unpackhi_epi64(t0, t2);
    t[2] = _mm512_unpacklo_epi64(t1, t3);
    t[3] = _mm512_unpackhi_epi64(t1, t3);
}

/* 0x10 in byte m of each lane where bit m of (bits >> shift) & 15 is set: a 16-entry table. */
INLINE __m512i fifth_bits16(__m512i bits, int shift) {
    static const int table[16] = {0x00000000, 0x00000010, 0x00001000, 0x00001010, 0x00100000, 0x00100010,
                                  0x00101000, 0x00101010, 0x10000000, 0x10000010, 0x10001000, 0x10001010,
                                  0x10100000, 0x10100010, 0x10101000, 0x10101010};
    return _mm512_permutexvar_epi32(_mm512_srli_epi32(bits, (unsigned)shift), _mm512_loadu_si512(table));
}

INLINE __m512 lane_scales16(const unsigned char *w, size_t block_offset, int at, __m512i index) {
    const __m512i g = _mm512_i32gather_epi32(index, (const void *)(w + block_offset + at), 1);
    return _mm512_cvtph_ps(_mm512_cvtepi32_epi16(g)); /* the low 16 bits of each lane */
}

/* Rows 0 .. nw-1 (nw <= 16) of w against NA activation rows. */
INLINE void small_lanes16(ggml_type type, int NA, int n, const unsigned char *w, size_t w_stride, int nw,
                          const act_q8_32_view *a, float *out, size_t out_stride) {
    const size_t block_bytes = type == GGML_TYPE_Q8_0 ? 34 : type == GGML_TYPE_Q4_0 ? 18 : type == GGML_TYPE_Q4_1 ? 20
                               : type == GGML_TYPE_Q5_0 ? 22 : 24;
    const bool has_min = type == GGML_TYPE_Q4_1 || type == GGML_TYPE_Q5_1;
    const bool five = type == GGML_TYPE_Q5_0 || type == GGML_TYPE_Q5_1;
    const int bias = block_bias(type), nb = n / 32;
    const int at = type == GGML_TYPE_Q4_0 ? 2 : type == GGML_TYPE_Q4_1 ? 4 : type == GGML_TYPE_Q5_0 ? 6 : 8;
    /* With fewer than 16 rows the missing lanes repeat the last row (read, computed, never
     * stored) through a table of row pointers; 16 rows are addressed as w + i * stride. */
    const unsigned char *row_table[16];
    int offsets[16];
    UNROLL
    for (int i = 0; i < 16; i++) row_table[i] = w + (size_t)(i < nw ? i : nw - 1) * w_stride;
    UNROLL
    for (int L = 0; L < 16; L++) offsets[L] = (ROW16[L] < nw ? ROW16[L] : nw - 1) * (int)w_stride;
    const bool full = nw == 16;
    const __m512i index = _mm512_loadu_si512(offsets);
    const __m512i mask = _mm512_set1_epi8(0x0f);
    __m512 acc[KERNEL_MAX_A];
    UNROLL
    for (int r = 0; r < NA; r++) acc[r] = _mm512_setzero_ps();
    for (int b = 0; b < nb; b++) {
        const size_t off = (size_t)b * block_bytes;
        const unsigned char *const *rows = full ? NULL : row_table;
        __m512i W[8], t[4];
        if (type == GGML_TYPE_Q8_0) {
            const __m512i flip = _mm512_set1_epi8((char)0x80); /* biased by 128 to make them unsigned */
            transpose16x(w, w_stride, rows, off + 2, t);
            UNROLL
            for (int k = 0; k < 4; k++) W[k] = _mm512_xor_si512(t[k], flip);
            transpose16x(w, w_stride, rows, off + 18, t);
            UNROLL
            for (int k = 0; k < 4; k++) W[k + 4] = _mm512_xor_si512(t[k], flip);
        } else {
            transpose16x(w, w_stride, rows, off + (size_t)at, t);
            UNROLL
            for (int k = 0; k < 4; k++) {
                W[k] = _mm512_and_si512(t[k], mask);
                W[k + 4] = _mm512_and_si512(_mm512_srli_epi16(t[k], 4), mask);
            }
            if (five) {
                const __m512i qh = _mm512_i32gather_epi32(index, (const void *)(w + off + at - 4), 1);
                UNROLL
                for (int k = 0; k < 8; k++) W[k] = _mm512_or_si512(W[k], fifth_bits16(qh, 4 * k));
            }
        }
        const __m512 wd = lane_scales16(w, off, 0, index);
        const __m512 wm = has_min ? lane_scales16(w, off, 2, index) : _mm512_setzero_ps();
        UNROLL
        for (int r = 0; r < NA; r++) {
            const int8_t *x = a[r].q + 32 * b;
            __m512i sums = _mm512_setzero_si512();
            UNROLL
            for (int k = 0; k < 8; k++)
                sums = _mm512_dpbusd_epi32(sums, W[k], _mm512_set1_epi32((int)quant_load_u32(x + 4 * k)));
            if (bias) sums = _mm512_sub_epi32(sums, _mm512_set1_epi32(bias * a[r].sum[b]));
            acc[r] = _mm512_fmadd_ps(_mm512_mul_ps(wd, _mm512_set1_ps(a[r].d[b])), _mm512_cvtepi32_ps(sums), acc[r]);
            if (has_min) acc[r] = _mm512_fmadd_ps(wm, _mm512_set1_ps(a[r].dsum[b]), acc[r]);
        }
    }
    /* back to row order (ROW16 is its own inverse) and store the nw lanes that are rows */
    const __m512i order = _mm512_loadu_si512(ROW16);
    const __mmask16 live = (__mmask16)((1u << nw) - 1);
    UNROLL
    for (int r = 0; r < NA; r++)
        _mm512_mask_storeu_ps(out + (size_t)r * out_stride, live, _mm512_permutexvar_ps(order, acc[r]));
}

INLINE void small_tile16(ggml_type type, int n, const void *w, size_t ws, int nw, const void *act, size_t as, int na,
                         float *o, size_t os) {
    act_q8_32_view a[KERNEL_MAX_A];
    for (int r = 0; r < na; r++) a[r] = act_q8_32_at((const char *)act + (size_t)r * as, n);
    for (int f = 0; f < nw; f += 16) {
        const unsigned char *rows = (const unsigned char *)w + (size_t)f * ws;
        const int count = nw - f < 16 ? nw - f : 16;
        switch (na) {
        case 1: small_lanes16(type, 1, n, rows, ws, count, a, o + f, os); break;
        case 2: small_lanes16(type, 2, n, rows, ws, count, a, o + f, os); break;
        case 3: small_lanes16(type, 3, n, rows, ws, count, a, o + f, os); break;
        case 4: small_lanes16(type, 4, n, rows, ws, count, a, o + f, os); break;
        case 5: small_lanes16(type, 5, n, rows, ws, count, a, o + f, os); break;
        case 6: small_lanes16(type, 6, n, rows, ws, count, a, o + f, os); break;
        case 7: small_lanes16(type, 7, n, rows, ws, count, a, o + f, os); break;
        default: small_lanes16(type, 8, n, rows, ws, count, a, o + f, os); break;
        }
    }
}

#define SMALL_TILE16(name, type)                                                                               \
    static NO_ASAN void name(int n, const void *w, size_t ws, int nw, const void *act, size_t as, int na,       \
                             float *o, size_t os) {                                                            \
        small_tile16(type, n, w, ws, nw, act, as, na, o, os);                                                  \
    }

SMALL_TILE16(tile16_q8_0, GGML_TYPE_Q8_0)
SMALL_TILE16(tile16_q4_0, GGML_TYPE_Q4_0)
SMALL_TILE16(tile16_q4_1, GGML_TYPE_Q4_1)
SMALL_TILE16(tile16_q5_0, GGML_TYPE_Q5_0)
SMALL_TILE16(tile16_q5_1, GGML_TYPE_Q5_1)
#pragma GCC pop_options

dot_fn kernels_avx512_for(ggml_type type) {
    switch (type) {
    case GGML_TYPE_Q8_0: return tile16_q8_0;
    case GGML_TYPE_Q4_0: return tile16_q4_0;
    case GGML_TYPE_Q4_1: return tile16_q4_1;
    case GGML_TYPE_Q5_0: return tile16_q5_0;
    case GGML_TYPE_Q5_1: return tile16_q5_1;
    default: return kernel_table_avx512(type);
    }
}
#else
dot_fn kernels_avx512_for(ggml_type type) {
    (void)type;
    return NULL;
}
#endif
