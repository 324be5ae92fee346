/* kernels_avx512.c: the x86 kernels with AVX-512 VNNI integer products (vpdpbusd, vpdpwssd on
 * 256-bit vectors; kernels_x86.inc; arithmetic in kernels.h), and for 32-value blocks 512-bit
 * kernels with sixteen weight rows per vector. Compiled for that target whatever the build flags,
 * and only called when the CPU has it (kernels.c). */
#include "kernels_internal.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <float.h>
#include <immintrin.h>
#include <math.h>
#include <stdbool.h>
#include <string.h>

#include "quant.h"

#pragma GCC push_options
/* Optimized even in the -O1 sanitizer build: at -O1 the accumulator arrays of the tiles live on
 * the stack, and the kernels run several times slower (the end-to-end tests then time out). */
#pragma GCC optimize("O3")
#pragma GCC target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512dq,avx512vnni")
#ifdef __clang__ /* clang ignores GCC's target pragma (the fuzz build uses clang) */
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512dq,avx512vnni"))), apply_to = function)
#endif
#define KX(name) name##_avx512
#define KX_VNNI 1
#include "kernels_x86.inc"

/* ---- 32-value blocks, sixteen weight rows per 512-bit vector ---------------------------------------
 * As small_lanes in kernels_x86.inc, with a row in each of sixteen 32-bit lanes: the transpose of
 * four 512-bit loads (four rows' 16 quant bytes each) leaves row ROW16[L] in lane L. */

/* Loops over up to sixteen activation rows unrolled whole, so that each row's accumulator stays in a
 * register (UNROLL's eight left them in memory: Q4_0 4096x4096 x 128 rows, one thread, 224 -> 264
 * GMAC/s; the K kernels, unrolled so, measured the same or 20% slower and keep UNROLL). */
#define UNROLL_ROWS _Pragma("GCC unroll 16")

static const int ROW16[16] = {0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15};

/* out[r * out_stride + i] = row i's lane of acc[r], for i < nw and r < NA: back to row order
 * (ROW16 is its own inverse), the lanes beyond nw (repeated rows) not stored. */
INLINE void store_lanes16(int NA, const __m512 *acc, int nw, float *out, size_t out_stride) {
    const __m512i order = _mm512_loadu_si512(ROW16);
    const __mmask16 live = (__mmask16)((1u << nw) - 1);
    UNROLL_ROWS
    for (int r = 0; r < NA; r++)
        _mm512_mask_storeu_ps(out + (size_t)r * out_stride, live, _mm512_permutexvar_ps(order, acc[r]));
}

/* acc + the four-byte products of w with the four bytes at p broadcast to every lane, the
 * broadcast folded into vpdpbusd's memory operand (GCC 12 emits a separate vpbroadcastd, and the
 * extra registers made the K kernels spill). */
INLINE __m512i dpbusd_bcast(__m512i acc, __m512i w, const void *p) {
    __asm__("vpdpbusd %2%{1to16%}, %1, %0" : "+v"(acc) : "v"(w), "m"(*(const int32_t *)p));
    return acc;
}

/* How far ahead the 32-value one-row kernel (lanes16_one_row) and the Q4_K/Q5_K sixteen-row kernel
 * (k45_lanes16, any number of activation rows) prefetch at least: sixteen 768-value Q4_0 or Q4_K
 * rows are 6.9 KB, which arrived too late from memory. scripts/kernel-bandwidth.c, 2 threads,
 * alternating runs, kernel against a read loop of the same bytes: q4_0:768 0.69-0.85 -> 0.94-0.96,
 * q5_0:768 0.78 -> 0.91-0.94, q4_1:768 0.80 -> 0.87-0.90 (at 16 KB; 16 and 32 KB measured as 12 for
 * Q4_0); Q8_0's 13 KB tiles keep the next one (at 16 KB: 0.90-0.91 -> 0.87-0.90). The K kernel
 * gained only with its slice of the tile asked for in four parts, one per pair of sub-blocks
 * (asked for at once per super-block, 16 KB ahead lost: q4_K:768 0.80 -> 0.71-0.74): q4_K:768
 * 0.76-0.82 -> 0.84-0.88 (the next tile in four parts: 0.79-0.80; 4,096-value rows 0.87-0.91
 * either way), and 768x12 Q4_K_M decode x1.04-1.11 in one process alternating the two token by
 * token (control runs give 1.00-1.03), the 7B-layer shape x1.01-1.03. */
enum { TILE_AHEAD_MIN = 12288 };

/* [dword k of row ROW16[L]] for k = 0..3, from 16 bytes at byte `at` of the 16 rows p + i * stride
 * (or, when rows is not NULL, at rows[i] + at). */
INLINE void transpose16x(const unsigned char *p, size_t stride, const unsigned char *const *rows, size_t at,
                         __m512i t[4]) {
    __m512i a[4];
#define ROW_AT(i) ((const __m128i *)((rows ? rows[i] : p + (i) * stride) + at))
    UNROLL
    for (int q = 0; q < 4; q++) { /* 128-bit lane j of a[q]: row 4q + j */
        /* two 256-bit inserts and one 512-bit: a 512-bit shuffle takes both halves of a 256-bit
         * shuffle unit on Zen 4, so three 128-bit inserts into the 512-bit vector cost 6 unit
         * slots and this 4 (kernel-bandwidth in L2, 2 threads, two alternating runs: q8_0:768
         * 76.4/77.0 -> 82.5/82.8 GB/s, q4_0:768 55.9/55.8 -> 59.6/60.8, q4_K:768 59.5/56.7 ->
         * 62.3/62.6; 128-bit broadcasts blended in at 512 bits: 64.7/67.2, at 256 bits: 79.5/79.1) */
        const __m256i low = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128(ROW_AT(4 * q))),
                                                    _mm_loadu_si128(ROW_AT(4 * q + 1)), 1);
        const __m256i high = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128(ROW_AT(4 * q + 2))),
                                                     _mm_loadu_si128(ROW_AT(4 * q + 3)), 1);
        a[q] = _mm512_inserti64x4(_mm512_castsi256_si512(low), high, 1);
    }
#undef ROW_AT
    const __m512i t0 = _mm512_unpacklo_epi32(a[0], a[1]), t1 = _mm512_unpackhi_epi32(a[0], a[1]);
    const __m512i t2 = _mm512_unpacklo_epi32(a[2], a[3]), t3 = _mm512_unpackhi_epi32(a[2], a[3]);
    t[0] = _mm512_unpacklo_epi64(t0, t2);
    t[1] = _mm512_unpackhi_epi64(t0, t2);
    t[2] = _mm512_unpacklo_epi64(t1, t3);
    t[3] = _mm512_unpackhi_epi64(t1, t3);
}

/* Fills row_table with the sixteen lanes' rows (past nw the last row again: read, computed, never
 * stored) and returns it, or NULL when all sixteen are rows (then transpose16x addresses them as
 * w + i * w_stride). */
INLINE const unsigned char *const *lanes16_rows(const unsigned char *w, size_t w_stride, int nw,
                                                const unsigned char *row_table[16]) {
    UNROLL
    for (int i = 0; i < 16; i++) row_table[i] = w + (size_t)(i < nw ? i : nw - 1) * w_stride;
    return nw == 16 ? NULL : row_table;
}

/* 0x10 in byte m of each lane where bit m of (bits >> shift) & 15 is set: a 16-entry table. */
INLINE __m512i fifth_bits16(__m512i bits, int shift) {
    static const int table[16] = {0x00000000, 0x00000010, 0x00001000, 0x00001010, 0x00100000, 0x00100010,
                                  0x00101000, 0x00101010, 0x10000000, 0x10000010, 0x10001000, 0x10001010,
                                  0x10100000, 0x10100010, 0x10101000, 0x10101010};
    return _mm512_permutexvar_epi32(_mm512_srli_epi32(bits, (unsigned)shift), _mm512_loadu_si512(table));
}

/* The 32-bit word (lane_words16) or the fp16 scale as fp32 (lane_scales16) at byte `at` of each
 * lane's row (lane L: row_table[ROW16[L]]), by sixteen scalar loads: vpgatherdd took a third of
 * the Q4_0 one-row kernel's time on the AMD EPYC with AVX-512 here, and sixteen 16-bit loads and
 * inserts measured 12% faster overall. */
INLINE __m512i lane_words16(const unsigned char *const row_table[16], size_t at) {
#define WORD(L) (int)quant_load_u32(row_table[ROW16[L]] + at)
    return _mm512_set_epi32(WORD(15), WORD(14), WORD(13), WORD(12), WORD(11), WORD(10), WORD(9), WORD(8), WORD(7),
                            WORD(6), WORD(5), WORD(4), WORD(3), WORD(2), WORD(1), WORD(0));
#undef WORD
}

INLINE __m512 lane_scales16(const unsigned char *const row_table[16], size_t at) {
#define HALF(L) (short)quant_load_u16(row_table[ROW16[L]] + at)
    return _mm512_cvtph_ps(_mm256_set_epi16(HALF(15), HALF(14), HALF(13), HALF(12), HALF(11), HALF(10), HALF(9), HALF(8),
                                            HALF(7), HALF(6), HALF(5), HALF(4), HALF(3), HALF(2), HALF(1), HALF(0)));
#undef HALF
}

/* Q4_0 and Q4_1 keep each high nibble where it is, as 16 x its value: an AND instead of a shift
 * and an AND per quant vector; lanes16_block divides their products' sum by 16 again, exactly
 * (Q4_0 768-value rows, one thread, weights in L2: 24.6 -> 25.6 GB/s). Q5_0 and Q5_1 put their
 * fifth bit above the nibble, where a high nibble in place leaves no room. */
INLINE bool nibbles_in_place(ggml_type type) { return type == GGML_TYPE_Q4_0 || type == GGML_TYPE_Q4_1; }

/* A block's quants for every lane (row) from its transposed words q[k] (quant bytes 4k .. 4k+3;
 * Q8_0: k < 8, the others k < 4, with qh the fifth bits): W[k] meets activation bytes 4k .. 4k+3. */
INLINE void lanes16_quants(ggml_type type, const __m512i q[8], __m512i qh, __m512i W[8]) {
    if (type == GGML_TYPE_Q8_0) {
        const __m512i flip = _mm512_set1_epi8((char)0x80); /* biased by 128 to make them unsigned */
        UNROLL
        for (int k = 0; k < 8; k++) W[k] = _mm512_xor_si512(q[k], flip);
        return;
    }
    const __m512i mask = _mm512_set1_epi8(0x0f);
    if (type == GGML_TYPE_IQ4_NL) { /* each nibble through the table (vpshufb), biased unsigned */
        const __m512i table = _mm512_broadcast_i32x4(_mm256_castsi256_si128(iq4_table()));
        UNROLL
        for (int k = 0; k < 4; k++) {
            W[k] = _mm512_shuffle_epi8(table, _mm512_and_si512(q[k], mask));
            W[k + 4] = _mm512_shuffle_epi8(table, _mm512_and_si512(_mm512_srli_epi16(q[k], 4), mask));
        }
        return;
    }
    if (nibbles_in_place(type)) {
        UNROLL
        for (int k = 0; k < 4; k++) {
            W[k] = _mm512_and_si512(q[k], mask);
            W[k + 4] = _mm512_andnot_si512(mask, q[k]); /* 16 x the high nibble */
        }
        return;
    }
    UNROLL
    for (int k = 0; k < 4; k++) {
        W[k] = _mm512_and_si512(q[k], mask);
        W[k + 4] = _mm512_and_si512(_mm512_srli_epi16(q[k], 4), mask);
    }
    if (type == GGML_TYPE_Q5_0 || type == GGML_TYPE_Q5_1)
        UNROLL
        for (int k = 0; k < 8; k++) W[k] = _mm512_or_si512(W[k], fifth_bits16(qh, 4 * k));
}

/* acc[r] += block b's products of the sixteen lanes' weights (W, scale wd, min wm) with
 * activation row r, for r < NA: kernels.h's arithmetic. */
INLINE void lanes16_block(ggml_type type, int NA, int b, const __m512i W[8], __m512 wd, __m512 wm,
                          const act_q8_32_view *a, __m512 *acc) {
    const int bias = block_bias(type);
    UNROLL_ROWS
    for (int r = 0; r < NA; r++) {
        const int8_t *x = a[r].q + 32 * b;
        /* two chains of four vpdpbusd instead of one of eight (integer sums: the same value),
         * so that more of them run at once: Q4_0 4096x4096, 16 rows, one thread 2.52 -> 2.36 ms */
        /* the offset's share (bias x the activation block's sum) starts the first chain */
        const __m512i start = bias ? _mm512_set1_epi32(-bias * a[r].sum[b]) : _mm512_setzero_si512();
        __m512i sums;
        if (nibbles_in_place(type)) {
            /* the high nibbles' products sum to 16 x theirs: a multiple of 16, which the arithmetic
             * shift divides exactly */
            __m512i low = start, high = _mm512_setzero_si512();
            UNROLL
            for (int k = 0; k < 4; k++) {
                low = dpbusd_bcast(low, W[k], x + 4 * k);
                high = dpbusd_bcast(high, W[k + 4], x + 4 * k + 16);
            }
            sums = _mm512_add_epi32(low, _mm512_srai_epi32(high, 4));
        } else {
            __m512i even = start, odd = _mm512_setzero_si512();
            UNROLL
            for (int k = 0; k < 8; k += 2) {
                even = dpbusd_bcast(even, W[k], x + 4 * k);
                odd = dpbusd_bcast(odd, W[k + 1], x + 4 * k + 4);
            }
            sums = _mm512_add_epi32(even, odd);
        }
        acc[r] = _mm512_fmadd_ps(_mm512_mul_ps(wd, _mm512_set1_ps(a[r].d[b])), _mm512_cvtepi32_ps(sums), acc[r]);
        if (type == GGML_TYPE_Q4_1 || type == GGML_TYPE_Q5_1)
            acc[r] = _mm512_fmadd_ps(wm, _mm512_set1_ps(a[r].dsum[b]), acc[r]);
    }
}

/* Block b of the sixteen lanes, transposed on its own: its quant bytes (and fifth bits) by
 * transpose16x, its scales by sixteen scalar loads. */
INLINE void lanes16_load_block(ggml_type type, const unsigned char *w, size_t w_stride,
                               const unsigned char *const row_table[16], bool full, int b, __m512i W[8], __m512 *wd,
                               __m512 *wm) {
    const size_t off = (size_t)b * block_bytes_of(type);
    const int at = quants_at(type);
    const unsigned char *const *rows = full ? NULL : row_table;
    __m512i q[8];
    transpose16x(w, w_stride, rows, off + (size_t)at, q);
    if (type == GGML_TYPE_Q8_0) transpose16x(w, w_stride, rows, off + (size_t)at + 16, q + 4);
    const __m512i qh = type == GGML_TYPE_Q5_0 || type == GGML_TYPE_Q5_1 ? lane_words16(row_table, off + at - 4)
                                                                        : _mm512_setzero_si512();
    lanes16_quants(type, q, qh, W);
    *wd = lane_scales16(row_table, off);
    *wm = type == GGML_TYPE_Q4_1 || type == GGML_TYPE_Q5_1 ? lane_scales16(row_table, off + 2) : _mm512_setzero_ps();
}

/* ---- one activation row: eight blocks transposed at once ---------------------------------------------
 * Eight blocks of a row are 8 x 18 (Q4_0) to 8 x 34 (Q8_0) bytes, a whole number of 16-byte
 * chunks. Transposed chunk by chunk (16 rows each), they leave every field of every block in the
 * lanes, the scales included: a field at a byte offset of 2 mod 4 is two words' halves. That
 * replaces the sixteen scalar loads per block for the scales (a quarter of the Q4_0 one-row kernel's
 * time on the AMD EPYC here) with shifts. A decoded row has one activation row, and nothing to
 * share the per-block transposes with. */

enum { GROUP_BLOCKS = 8, GROUP_CHUNK_MAX = GROUP_BLOCKS * 34 / 16 };

/* The 32 bits at byte o (even) of each lane's group, from its transposed words D (word i: bytes
 * 4i .. 4i+3); half16_at: the 16 bits at o, in the low half of the lane. */
INLINE __m512i word32_at(const __m512i *D, int o, bool vbmi2) {
    if (o % 4 == 0) return D[o / 4];
    if (vbmi2) { /* vpshrdd: both halves in one instruction (AVX512-VBMI2), where the CPU has it */
        __m512i word;
        __asm__("vpshrdd $16, %2, %1, %0" : "=v"(word) : "v"(D[o / 4]), "v"(D[o / 4 + 1]));
        return word;
    }
    return _mm512_or_si512(_mm512_srli_epi32(D[o / 4], 16), _mm512_slli_epi32(D[o / 4 + 1], 16));
}
INLINE __m512i half16_at(const __m512i *D, int o) { return o % 4 == 0 ? D[o / 4] : _mm512_srli_epi32(D[o / 4], 16); }
INLINE __m512 fp16_lanes_at(const __m512i *D, int o) { return _mm512_cvtph_ps(_mm512_cvtepi32_epi16(half16_at(D, o))); }

/* The 16-byte chunks of a group to transpose before its block at byte s (bb bytes, quants at `at`)
 * can be read: those up to the block's last byte, and the word after it when the quants end at a
 * half word (never past the group: its last block starts at 2 mod 4, its quants at 0). */
INLINE int chunks_through_block(int s, int bb, int at) {
    const int end = s + bb + ((s + at) % 4 ? 4 : 0), group_chunks = GROUP_BLOCKS * bb / 16;
    return (end + 15) / 16 < group_chunks ? (end + 15) / 16 : group_chunks;
}

INLINE void lanes16_one_row(ggml_type type, int n, const unsigned char *w, size_t w_stride, int nw,
                            const act_q8_32_view *a, float *out, bool vbmi2) {
    const int bb = (int)block_bytes_of(type), at = quants_at(type), nb = n / 32;
    const bool five = type == GGML_TYPE_Q5_0 || type == GGML_TYPE_Q5_1;
    const bool has_min = type == GGML_TYPE_Q4_1 || type == GGML_TYPE_Q5_1;
    const int quant_words = type == GGML_TYPE_Q8_0 ? 8 : 4;
    const unsigned char *row_table[16];
    const unsigned char *const *rows = lanes16_rows(w, w_stride, nw, row_table);
    const bool full = rows == NULL;
    __m512 acc = _mm512_setzero_ps();
    int b = 0;
    for (; b + GROUP_BLOCKS <= nb; b += GROUP_BLOCKS) {
        const size_t group = (size_t)b * bb;
        __m512i D[4 * GROUP_CHUNK_MAX];
        int chunks = 0;
        _Pragma("GCC unroll 8")
        for (int j = 0; j < GROUP_BLOCKS; j++) {
            prefetch_rows_ahead(w, w_stride, 16, b + j, nb, TILE_AHEAD_MIN);
            const int s = j * bb;
            const int need = chunks_through_block(s, bb, at);
            _Pragma("GCC unroll 17")
            for (; chunks < need; chunks++) transpose16x(w, w_stride, rows, group + 16 * (size_t)chunks, D + 4 * chunks);
            __m512i q[8], W[8];
            _Pragma("GCC unroll 8")
            for (int k = 0; k < quant_words; k++) q[k] = word32_at(D, s + at + 4 * k, vbmi2);
            lanes16_quants(type, q, five ? word32_at(D, s + at - 4, vbmi2) : _mm512_setzero_si512(), W);
            const __m512 wd = fp16_lanes_at(D, s), wm = has_min ? fp16_lanes_at(D, s + 2) : _mm512_setzero_ps();
            lanes16_block(type, 1, b + j, W, wd, wm, a, &acc);
        }
    }
    for (; b < nb; b++) {
        prefetch_rows_ahead(w, w_stride, 16, b, nb, TILE_AHEAD_MIN);
        __m512i W[8];
        __m512 wd, wm;
        lanes16_load_block(type, w, w_stride, row_table, full, b, W, &wd, &wm);
        lanes16_block(type, 1, b, W, wd, wm, a, &acc);
    }
    store_lanes16(1, &acc, nw, out, 0);
}

/* ---- one activation row, eight weight rows per 256-bit vector --------------------------------- */
/* Q4_0 and Q8_0 decode: lanes16_one_row's arithmetic and group-of-eight-blocks transposes, a row
 * in each of eight 32-bit lanes (kernels_x86.inc's transpose16, lanes in its order ROW8). Eight
 * rows instead of sixteen for the order the bytes are asked for: a transpose reads 16 bytes of
 * every row of the tile before the next 16, and over sixteen 768-value rows the memory delivers
 * that order at 0.70-0.77 of a plain read's speed in its fast minutes, over eight at 0.89-0.99
 * (scripts/read-order.c 512 tile-columns:16:432:144 tile-columns:8:432:144, and the same with
 * 816:272). On Zen 4 a 512-bit operation takes both halves of a 256-bit unit, so the arithmetic
 * costs about the same: in L2, 2 threads, q4_0:768 58.1 -> 56.1 GB/s, q8_0:768 82.3 -> 81.4.
 * 768x12 Q8_0 decode x1.04-1.29 (6 alternating rounds), Q4_0 0.93-1.05. Rows of 4,096 values and
 * more keep sixteen: there the order costs little (tile-columns:16:2304:144 0.92-0.96 of a plain
 * read) and eight rows cost 6% of the arithmetic (q4_0:4096 in L2 68.2 -> 63.8; 7B-layer Q4_0
 * decode 0.97-1.09, one round 1.38). So do Q4_1, Q5_0, Q5_1 and IQ4_NL, and the K types: Q4_K at
 * eight rows (k45_lanes16's arithmetic) lost 10-14% in L2 (q4_K:768 62-63 -> 56.5 GB/s,
 * q4_K:4096 71 -> 61-64) and gained nothing measurable from memory. The integer part is
 * kernels_x86.inc's lanes_products, kept inline here as lanes16_one_row keeps it: the high nibbles
 * stay in place (one shift per block instead of four) and the broadcast folds into vpdpbusd. */
enum { LANES8_BELOW = 4096 };

INLINE __m256i word32_at8(const __m256i *D, int o, bool vbmi2) {
    if (o % 4 == 0) return D[o / 4];
    if (vbmi2) {
        __m256i word;
        __asm__("vpshrdd $16, %2, %1, %0" : "=v"(word) : "v"(D[o / 4]), "v"(D[o / 4 + 1]));
        return word;
    }
    return _mm256_or_si256(_mm256_srli_epi32(D[o / 4], 16), _mm256_slli_epi32(D[o / 4 + 1], 16));
}
INLINE __m256 fp16_lanes_at8(const __m256i *D, int o) {
    const __m256i half = o % 4 == 0 ? D[o / 4] : _mm256_srli_epi32(D[o / 4], 16);
    return _mm256_cvtph_ps(_mm256_cvtepi32_epi16(half));
}

INLINE __m256i dpbusd_bcast8(__m256i acc, __m256i w, const void *p) {
    __asm__("vpdpbusd %2%{1to8%}, %1, %0" : "+v"(acc) : "v"(w), "m"(*(const int32_t *)p));
    return acc;
}

INLINE void lanes8_one_row(ggml_type type, int n, const unsigned char *w, size_t w_stride, int nw,
                           const act_q8_32_view *a, float *out, bool vbmi2) {
    const int bb = (int)block_bytes_of(type), at = quants_at(type), nb = n / 32, bias = block_bias(type);
    const unsigned char *rows[8]; /* lanes in kernels_x86.inc's order ROW8 (transpose16) */
    (void)lanes_rows(w, w_stride, nw, rows);
    __m256 acc = _mm256_setzero_ps();
    for (int b = 0; b < nb; b += GROUP_BLOCKS) {
        const size_t group = (size_t)b * bb;
        __m256i D[4 * GROUP_CHUNK_MAX];
        int chunks = 0;
        _Pragma("GCC unroll 8")
        for (int j = 0; j < GROUP_BLOCKS; j++) {
            prefetch_rows_ahead(w, w_stride, 8, b + j, nb, TILE_AHEAD_MIN);
            const int s = j * bb;
            const int need = chunks_through_block(s, bb, at);
            _Pragma("GCC unroll 17")
            for (; chunks < need; chunks++) transpose16(rows, group + 16 * (size_t)chunks, D + 4 * chunks);
            const int8_t *x = a->q + 32 * (b + j);
            const __m256i start = _mm256_set1_epi32(-bias * a->sum[b + j]);
            __m256i sums;
            if (type == GGML_TYPE_Q4_0) {
                const __m256i mask = _mm256_set1_epi8(0x0f);
                __m256i low = start, high = _mm256_setzero_si256();
                UNROLL
                for (int k = 0; k < 4; k++) {
                    const __m256i q = word32_at8(D, s + at + 4 * k, vbmi2);
                    low = dpbusd_bcast8(low, _mm256_and_si256(q, mask), x + 4 * k);
                    high = dpbusd_bcast8(high, _mm256_andnot_si256(mask, q), x + 4 * k + 16);
                }
                sums = _mm256_add_epi32(low, _mm256_srai_epi32(high, 4));
            } else { /* Q8_0 */
                const __m256i flip = _mm256_set1_epi8((char)0x80);
                __m256i even = start, odd = _mm256_setzero_si256();
                UNROLL
                for (int k = 0; k < 8; k += 2) {
                    even = dpbusd_bcast8(even, _mm256_xor_si256(word32_at8(D, s + at + 4 * k, vbmi2), flip), x + 4 * k);
                    odd = dpbusd_bcast8(odd, _mm256_xor_si256(word32_at8(D, s + at + 4 * k + 4, vbmi2), flip),
                                        x + 4 * k + 4);
                }
                sums = _mm256_add_epi32(even, odd);
            }
            const __m256 wd = fp16_lanes_at8(D, s);
            acc = _mm256_fmadd_ps(_mm256_mul_ps(wd, _mm256_set1_ps(a->d[b + j])), _mm256_cvtepi32_ps(sums), acc);
        }
    }
    store_in_row_order(acc, nw, out);
}

/* Rows 0 .. nw-1 (nw <= 16) of w against NA activation rows. */
INLINE void small_lanes16(ggml_type type, int NA, int n, const unsigned char *w, size_t w_stride, int nw,
                          const act_q8_32_view *a, float *out, size_t out_stride) {
    /* With fewer than 16 rows the missing lanes repeat the last row (read, computed, never
     * stored) through a table of row pointers; 16 rows are addressed as w + i * stride. */
    const unsigned char *row_table[16];
    const bool full = lanes16_rows(w, w_stride, nw, row_table) == NULL;
    __m512 acc[KERNEL_MAX_A];
    UNROLL_ROWS
    for (int r = 0; r < NA; r++) acc[r] = _mm512_setzero_ps();
    for (int b = 0; b < n / 32; b++) {
        prefetch_rows_ahead(w, w_stride, 16, b, n / 32, 0);
        __m512i W[8];
        __m512 wd, wm;
        lanes16_load_block(type, w, w_stride, row_table, full, b, W, &wd, &wm);
        lanes16_block(type, NA, b, W, wd, wm, a, acc);
    }
    store_lanes16(NA, acc, nw, out, out_stride);
}

INLINE void small_tile16(ggml_type type, int n, const void *w, size_t ws, int nw, const void *act, size_t as, int na,
                         float *o, size_t os, bool vbmi2) {
    act_q8_32_view a[KERNEL_MAX_A];
    for (int r = 0; r < na; r++) a[r] = act_q8_32_at((const char *)act + (size_t)r * as, n);
    const bool eight_rows = type == GGML_TYPE_Q4_0 || type == GGML_TYPE_Q8_0;
    if (na == 1 && eight_rows && n < LANES8_BELOW && (n / 32) % GROUP_BLOCKS == 0) {
        for (int f = 0; f < nw; f += 8)
            lanes8_one_row(type, n, (const unsigned char *)w + (size_t)f * ws, ws, nw - f < 8 ? nw - f : 8, a, o + f,
                           vbmi2);
        return;
    }
    for (int f = 0; f < nw; f += 16) {
        const unsigned char *rows = (const unsigned char *)w + (size_t)f * ws;
        const int count = nw - f < 16 ? nw - f : 16;
        switch (na) {
        case 1: lanes16_one_row(type, n, rows, ws, count, a, o + f, vbmi2); break;
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

/* Each 32-value type's tile twice: with vpshrdd for the words at a half-word offset (Q4_0's
 * 18-byte and Q8_0's 34-byte blocks put every other block's quants there), for CPUs with
 * AVX512-VBMI2 (KERNELS_AVX512_VBMI2), and without. Q4_0 768-value rows, one thread, weights in L2:
 * 25.6 -> 27.5 GB/s. */
#define SMALL_TILE16(name, type)                                                                               \
    static NO_ASAN void name(int n, const void *w, size_t ws, int nw, const void *act, size_t as, int na,       \
                             float *o, size_t os) {                                                            \
        small_tile16(type, n, w, ws, nw, act, as, na, o, os, false);                                           \
    }                                                                                                          \
    static NO_ASAN void name##_vbmi2(int n, const void *w, size_t ws, int nw, const void *act, size_t as,      \
                                     int na, float *o, size_t os) {                                            \
        small_tile16(type, n, w, ws, nw, act, as, na, o, os, true);                                            \
    }

SMALL_TILE16(tile16_q8_0, GGML_TYPE_Q8_0)
SMALL_TILE16(tile16_q4_0, GGML_TYPE_Q4_0)
SMALL_TILE16(tile16_q4_1, GGML_TYPE_Q4_1)
SMALL_TILE16(tile16_q5_0, GGML_TYPE_Q5_0)
SMALL_TILE16(tile16_q5_1, GGML_TYPE_Q5_1)
SMALL_TILE16(tile16_iq4_nl, GGML_TYPE_IQ4_NL)

/* 9 to 16 activation rows: sixteen at once when there are sixteen (each weight block transposed
 * once for all of them: the transposes and scale loads are a third of the work at eight rows),
 * otherwise eight and the rest. Every row's arithmetic is the same as alone. */
INLINE void small_tile16_wide(ggml_type type, int n, const void *w, size_t ws, int nw, const void *act, size_t as,
                              int na, float *o, size_t os) {
    if (na < 16) {
        small_tile16(type, n, w, ws, nw, act, as, 8, o, os, false);
        small_tile16(type, n, w, ws, nw, (const char *)act + 8 * as, as, na - 8, o + 8 * os, os, false);
        return;
    }
    act_q8_32_view a[16];
    for (int r = 0; r < 16; r++) a[r] = act_q8_32_at((const char *)act + (size_t)r * as, n);
    for (int f = 0; f < nw; f += 16)
        small_lanes16(type, 16, n, (const unsigned char *)w + (size_t)f * ws, ws, nw - f < 16 ? nw - f : 16, a, o + f,
                      os);
}

#define SMALL_TILE16_WIDE(name, type)                                                                          \
    static NO_ASAN void name(int n, const void *w, size_t ws, int nw, const void *act, size_t as, int na,       \
                             float *o, size_t os) {                                                            \
        small_tile16_wide(type, n, w, ws, nw, act, as, na, o, os);                                             \
    }

SMALL_TILE16_WIDE(wide16_q8_0, GGML_TYPE_Q8_0)
SMALL_TILE16_WIDE(wide16_q4_0, GGML_TYPE_Q4_0)
SMALL_TILE16_WIDE(wide16_q4_1, GGML_TYPE_Q4_1)
SMALL_TILE16_WIDE(wide16_q5_0, GGML_TYPE_Q5_0)
SMALL_TILE16_WIDE(wide16_q5_1, GGML_TYPE_Q5_1)
SMALL_TILE16_WIDE(wide16_iq4_nl, GGML_TYPE_IQ4_NL)

/* Sixteen vectors folded into one whose lane L is the sum of vector L's lanes: pairs of vectors are
 * combined a level at a time (32-bit pairs, 64-bit pairs, 128-bit lanes, then 256-bit halves), in
 * the order q6k_one_row16 and q6k_row_stream apply them. */
INLINE __m512i fold_pairs32(__m512i a, __m512i b) {
    return _mm512_add_epi32(_mm512_unpacklo_epi32(a, b), _mm512_unpackhi_epi32(a, b));
}
INLINE __m512i fold_pairs64(__m512i a, __m512i b) {
    return _mm512_add_epi32(_mm512_unpacklo_epi64(a, b), _mm512_unpackhi_epi64(a, b));
}
INLINE __m512i fold_lanes128(__m512i a, __m512i b) {
    return _mm512_add_epi32(_mm512_shuffle_i32x4(a, b, 0x88), _mm512_shuffle_i32x4(a, b, 0xdd));
}
/* The sixteen vectors LEAF(0) .. LEAF(15) folded so: lane k of the result sums LEAF(k)'s lanes. */
#define FOLD_PAIR(LEAF, i) fold_pairs32(LEAF(i), LEAF((i) + 1))
#define FOLD_QUAD(LEAF, i) fold_pairs64(FOLD_PAIR(LEAF, i), FOLD_PAIR(LEAF, (i) + 2))
#define FOLD_OCTET(LEAF, i) fold_lanes128(FOLD_QUAD(LEAF, i), FOLD_QUAD(LEAF, (i) + 4))
#define FOLD16(LEAF) fold_lanes128(FOLD_OCTET(LEAF, 0), FOLD_OCTET(LEAF, 8))

/* How far the one-row Q6_K stream (q6k_row_stream) prefetches, in groups of sixteen super-blocks.
 * The hardware prefetcher alone left one stream per thread short: one-row Q6_K from memory, 2
 * threads, medians of 8 interleaved rounds, 32000x4096 33.0 -> 39.7 GB/s, 4096x11008 24.4 -> 39.3
 * (one group ahead: 35.9 and 34.2; four: 39.6 and 35.2). */
enum { ROW_STREAM_AHEAD = 2 };

/* Super-blocks for a row-stream kernel: rows of 4,096 values or more against one activation row.
 * Shorter rows fill too few of its sixteen lanes (768 values: three). 0: use the sixteen-row
 * kernel. */
INLINE int row_stream_blocks(int n, int na) { return na == 1 && n >= 16 * 256 ? n / 256 : 0; }

/* Prefetches super-block s + 16 x ROW_STREAM_AHEAD of a row (in the next rows at a row's end: a
 * matrix's rows are contiguous) into L2, the lines it starts in, as each super-block is computed.
 * T1 rather than T0: 7B-layer Q4_K_M decode ran at 0.63 of llama.cpp on a day the host was slow, and
 * T1 made it x1.60 (1.47..1.69, 4 alternating rounds). One super-block's lines at a time rather
 * than a whole group's 53 at the start of the group: the kernel's own loads no longer wait behind
 * a burst of prefetches. scripts/kernel-bandwidth.c, 2 threads, 3 alternating runs of each build,
 * kernel against the read loop of the same bytes: 4096-value rows 0.85-0.87 -> 0.93-0.96,
 * 11008-value rows 0.84-0.85 -> 0.93-0.95; in L2 unchanged (about 60 GB/s). */
INLINE void prefetch_stream_block(const unsigned char *row, size_t block_bytes, int s) {
    const uintptr_t ahead = (uintptr_t)(row + (size_t)(s + 16 * ROW_STREAM_AHEAD) * block_bytes);
    for (uintptr_t at = ahead & ~(uintptr_t)63; at < ahead + block_bytes; at += 64) _mm_prefetch((const char *)at, _MM_HINT_T1);
}

/* acc + scale[k] x total[k] for k = 0 .. count - 1, one after the other: a row's float sum over its
 * super-blocks in order, as a sixteen-row tile's lane takes them. */
INLINE float sum_in_order(float acc, __m512 scale, __m512 total, int count) {
    float scales[16], totals[16];
    _mm512_storeu_ps(scales, scale);
    _mm512_storeu_ps(totals, total);
    for (int k = 0; k < count; k++) acc = fmaf(scales[k], totals[k], acc);
    return acc;
}

/* ---- K blocks, sixteen weight rows per 512-bit vector -----------------------------------------------
 * As for 32-value blocks: each K block of 16 rows is transposed so that a lane holds one row's
 * four quants of a value group, vpdpbusd takes every row's sub-block sum at once, and the scales
 * are unpacked across lanes. The block is unpacked once for every activation row of the tile. */

/* A K block's transposed head (transpose16x of its first 16 bytes, one block per lane): the
 * scales (sc_lo: 0-3, sc_hi: 4-7, one byte each per lane word, quant_scale_min_k4's packing) and the
 * mins as int16 pairs for vpdpwssd: (0, 2), (1, 3), (4, 6), (5, 7). */
INLINE void k4_scales_mins(const __m512i head[4], __m512i *sc_lo, __m512i *sc_hi, __m512i mn_pair[4]) {
    const __m512i low6 = _mm512_set1_epi32(0x3f3f3f3f), top2 = _mm512_set1_epi32(0x30303030);
    const __m512i low4 = _mm512_set1_epi32(0x0f0f0f0f), bytes02 = _mm512_set1_epi32(0x00ff00ff);
    const __m512i a0 = head[1], a1 = head[2], a2 = head[3];
    const __m512i mn_lo = _mm512_and_si512(a1, low6);
    const __m512i mn_hi = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi32(a2, 4), low4),
                                          _mm512_and_si512(_mm512_srli_epi32(a1, 2), top2));
    *sc_lo = _mm512_and_si512(a0, low6);
    *sc_hi = _mm512_or_si512(_mm512_and_si512(a2, low4), _mm512_and_si512(_mm512_srli_epi32(a0, 2), top2));
    mn_pair[0] = _mm512_and_si512(mn_lo, bytes02);
    mn_pair[1] = _mm512_and_si512(_mm512_srli_epi32(mn_lo, 8), bytes02);
    mn_pair[2] = _mm512_and_si512(mn_hi, bytes02);
    mn_pair[3] = _mm512_and_si512(_mm512_srli_epi32(mn_hi, 8), bytes02);
}

/* Q4_K and Q5_K: rows 0 .. nw-1 (nw <= 16) against NA activation rows. */
INLINE void k45_lanes16(bool five, int NA, int n, const unsigned char *w, size_t w_stride, int nw,
                        const act_q8_256_view *a, float *out, size_t out_stride) {
    const size_t block_bytes = five ? 176 : 144;
    const unsigned char *row_table[16];
    const unsigned char *const *rows = lanes16_rows(w, w_stride, nw, row_table);
    const __m512i nibble = _mm512_set1_epi8(0x0f), one_bits = _mm512_set1_epi32(0x01010101);
    __m512 acc[KERNEL_MAX_A], acc_min[KERNEL_MAX_A];
    UNROLL
    for (int r = 0; r < NA; r++) acc[r] = acc_min[r] = _mm512_setzero_ps();
    for (int s = 0; s < n / 256; s++) {
        const size_t off = (size_t)s * block_bytes;
        /* d and dmin (dword 0), then scales and mins, four 6-bit values per lane word
         * (quant_scale_min_k4's packing): the block's first 16 bytes of the 16 rows, transposed
         * (one transpose costs less than the four gathers it replaces) */
        __m512i head[4];
        transpose16x(w, w_stride, rows, off, head);
        const __m512i dm = head[0];
        __m512i sc_lo, sc_hi, mn_pair[4];
        k4_scales_mins(head, &sc_lo, &sc_hi, mn_pair);
        const __m512 wd = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(dm));
        const __m512 wdmin = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(dm, 16)));
        __m512i h[8];
        if (five) {
            transpose16x(w, w_stride, rows, off + 16, h);
            transpose16x(w, w_stride, rows, off + 32, h + 4);
        }
        const size_t qs = off + (five ? 48 : 16);
        __m512i A[KERNEL_MAX_A];
        UNROLL
        for (int r = 0; r < NA; r++) A[r] = _mm512_setzero_si512();
        UNROLL
        for (int c = 0; c < 4; c++) { /* sub-blocks 2c (low nibbles) and 2c + 1 (high nibbles) */
            prefetch_rows_ahead(w, w_stride, 16, 4 * s + c, 4 * (n / 256), TILE_AHEAD_MIN);
            __m512i t[8], lo[8], hi[8];
            transpose16x(w, w_stride, rows, qs + 32 * c, t);
            transpose16x(w, w_stride, rows, qs + 32 * c + 16, t + 4);
            UNROLL
            for (int m = 0; m < 8; m++) {
                lo[m] = _mm512_and_si512(t[m], nibble);
                /* Q4_K: the high nibbles stay in place, 16 x their value (as Q4_0's, lanes16_quants) */
                hi[m] = five ? _mm512_and_si512(_mm512_srli_epi16(t[m], 4), nibble) : _mm512_andnot_si512(nibble, t[m]);
                if (five) { /* bit 2c of qh for the low nibbles, bit 2c + 1 for the high ones */
                    lo[m] = _mm512_or_si512(lo[m], _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(h[m], 2 * c), one_bits), 4));
                    hi[m] = _mm512_or_si512(hi[m],
                                            _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(h[m], 2 * c + 1), one_bits), 4));
                }
            }
            __m512i sc_a = _mm512_and_si512(_mm512_srli_epi32(c < 2 ? sc_lo : sc_hi, 16 * (c % 2)), _mm512_set1_epi32(0xff));
            /* Q4_K: with its high nibbles at 16 x (above), A sums 16 x every product, the low ones'
             * through 16 x their scale; divided by 16 once per super-block (at most 8 x 63 x 32 x
             * 240 x 128 < 2^31, so exact) */
            if (!five) sc_a = _mm512_slli_epi32(sc_a, 4);
            const __m512i sc_b = _mm512_and_si512(_mm512_srli_epi32(c < 2 ? sc_lo : sc_hi, 16 * (c % 2) + 8), _mm512_set1_epi32(0xff));
            UNROLL
            for (int r = 0; r < NA; r++) {
                const int8_t *x = a[r].q + 256 * s + 64 * c;
                __m512i slo = _mm512_setzero_si512(), shi = _mm512_setzero_si512();
                UNROLL
                for (int m = 0; m < 8; m++) {
                    slo = dpbusd_bcast(slo, lo[m], x + 4 * m);
                    shi = dpbusd_bcast(shi, hi[m], x + 32 + 4 * m);
                }
                A[r] = _mm512_add_epi32(A[r], _mm512_add_epi32(_mm512_mullo_epi32(slo, sc_a), _mm512_mullo_epi32(shi, sc_b)));
            }
        }
        UNROLL
        for (int r = 0; r < NA; r++) {
            if (!five) A[r] = _mm512_srai_epi32(A[r], 4);
            /* B = sum of min_j * (activation sum of sub-block j), as four int16 pair products */
            const int16_t *bs = a[r].bsum + 16 * s;
            int x32[8];
            for (int j = 0; j < 8; j++) x32[j] = bs[2 * j] + bs[2 * j + 1];
            __m512i B = _mm512_setzero_si512();
            static const int first[4] = {0, 1, 4, 5};
            UNROLL
            for (int p = 0; p < 4; p++) {
                const int j = first[p];
                const int packed = (int)((uint32_t)(uint16_t)x32[j] | (uint32_t)(uint16_t)x32[j + 2] << 16);
                B = _mm512_dpwssd_epi32(B, mn_pair[p], _mm512_set1_epi32(packed));
            }
            const __m512 dx = _mm512_set1_ps(a[r].d[s]);
            acc[r] = _mm512_fmadd_ps(_mm512_mul_ps(wd, dx), _mm512_cvtepi32_ps(A[r]), acc[r]);
            acc_min[r] = _mm512_fmadd_ps(_mm512_mul_ps(wdmin, dx), _mm512_cvtepi32_ps(B), acc_min[r]);
        }
    }
    UNROLL
    for (int r = 0; r < NA; r++) acc[r] = _mm512_sub_ps(acc[r], acc_min[r]);
    store_lanes16(NA, acc, nw, out, out_stride);
}

INLINE void iq4xs_lanes16(int NA, int n, const unsigned char *w, size_t w_stride, int nw, const act_q8_256_view *a,
                          float *out, size_t out_stride);

/* Q4_K, Q5_K or IQ4_XS: sixteen weight rows at a time against na <= 8 activation rows. */
INLINE void k_lanes16(ggml_type type, int NA, int n, const unsigned char *w, size_t w_stride, int nw,
                      const act_q8_256_view *a, float *out, size_t out_stride) {
    if (type == GGML_TYPE_IQ4_XS) iq4xs_lanes16(NA, n, w, w_stride, nw, a, out, out_stride);
    else k45_lanes16(type == GGML_TYPE_Q5_K, NA, n, w, w_stride, nw, a, out, out_stride);
}

INLINE void k_tile16(ggml_type type, int n, const void *w, size_t ws, int nw, const void *act, size_t as, int na,
                     float *o, size_t os) {
    act_q8_256_view a[KERNEL_MAX_A];
    for (int r = 0; r < na; r++) a[r] = act_q8_256_at((const char *)act + (size_t)r * as, n);
    for (int f = 0; f < nw; f += 16) {
        const unsigned char *rows = (const unsigned char *)w + (size_t)f * ws;
        const int count = nw - f < 16 ? nw - f : 16;
        switch (na) {
        case 1: k_lanes16(type, 1, n, rows, ws, count, a, o + f, os); break;
        case 2: k_lanes16(type, 2, n, rows, ws, count, a, o + f, os); break;
        case 3: k_lanes16(type, 3, n, rows, ws, count, a, o + f, os); break;
        case 4: k_lanes16(type, 4, n, rows, ws, count, a, o + f, os); break;
        case 5: k_lanes16(type, 5, n, rows, ws, count, a, o + f, os); break;
        case 6: k_lanes16(type, 6, n, rows, ws, count, a, o + f, os); break;
        case 7: k_lanes16(type, 7, n, rows, ws, count, a, o + f, os); break;
        default: k_lanes16(type, 8, n, rows, ws, count, a, o + f, os); break;
        }
    }
}

/* Q4_K and Q5_K take sixteen weight rows at a time for one activation row too. A one-row stream
 * like Q6_K's (each row read front to back) was faster in cache but slower from memory, and it went:
 * 4096x2 Q4_K_M decode with the sixteen-row tile, against that stream, medians of the rounds'
 * ratios 1.12 (0.91..1.24) over 6 rounds, 1.03 (1.01..1.14) over 4 and 1.15 (1.03..1.49) over 8, all
 * Q4_K 1.26 and 1.22; the same for Q5_K, every Q5_K matrix of a 4096x2 Q5_K_M file from memory, 2
 * threads: 25.5-28.3 GB/s against 22.7-23.2. Two more one-row designs measured no better
 * (scripts/kernel-bandwidth.c, 2 threads, alternating runs, kernel against the read loop): that
 * stream again with Q6_K's prefetch per super-block, 0.70-0.81 against the tile's 0.88-0.93; and
 * this tile's own arithmetic with sixteen super-blocks of one row in the lanes (the activation
 * rearranged into lane order once per row, the row read front to back): in L2 46-51 GB/s against
 * 62-64, from memory about 0.9 at best (0.87-0.91 at 32-64 KB ahead; 0.35 without prefetches),
 * as the tile. Nor did gathering the tile's quants with one 64-byte load per row and vshufi64x2
 * instead of vinserti32x4 (in L2 within the noise), or loads that touch the lines prefetched a
 * step before (0.26-0.48: they wait for memory). */
static NO_ASAN void tile16_q4_k(int n, const void *w, size_t ws, int nw, const void *act, size_t as, int na, float *o,
                                size_t os) {
    k_tile16(GGML_TYPE_Q4_K, n, w, ws, nw, act, as, na, o, os);
}
static NO_ASAN void tile16_q5_k(int n, const void *w, size_t ws, int nw, const void *act, size_t as, int na, float *o,
                                size_t os) {
    k_tile16(GGML_TYPE_Q5_K, n, w, ws, nw, act, as, na, o, os);
}

/* Q6_K: rows 0 .. nw-1 (nw <= 16) against NA activation rows. Values 128h + 32g + 4m .. +3 are the
 * low (g = 0, 1) or high (g = 2, 3) nibbles of ql dword m (g even) or 8 + m (g odd) of half h,
 * with bits 2g, 2g + 1 of qh dword m on top; sub-blocks of 16 have signed 8-bit scales. */
INLINE void q6k_lanes16(int NA, int n, const unsigned char *w, size_t w_stride, int nw, const act_q8_256_view *a,
                        float *out, size_t out_stride) {
    const size_t block_bytes = 210;
    const unsigned char *row_table[16];
    const unsigned char *const *rows = lanes16_rows(w, w_stride, nw, row_table);
    const __m512i nibble = _mm512_set1_epi8(0x0f), bits45 = _mm512_set1_epi8(0x30);
    __m512 acc[KERNEL_MAX_A];
    UNROLL
    for (int r = 0; r < NA; r++) acc[r] = _mm512_setzero_ps();
    for (int s = 0; s < n / 256; s++) {
        prefetch_rows_ahead(w, w_stride, 16, s, n / 256, 0);
        const size_t off = (size_t)s * block_bytes;
        __m512i scales[4]; /* signed bytes: scale j in byte j % 4 of scales[j / 4] (one transpose, not four gathers) */
        transpose16x(w, w_stride, rows, off + 192, scales);
        const __m512 wd = lane_scales16(row_table, off + 208);
        __m512i A[KERNEL_MAX_A];
        UNROLL
        for (int r = 0; r < NA; r++) A[r] = _mm512_setzero_si512();
        UNROLL
        for (int h = 0; h < 2; h++) {
            __m512i qh[8];
            transpose16x(w, w_stride, rows, off + 128 + 32 * h, qh);
            transpose16x(w, w_stride, rows, off + 128 + 32 * h + 16, qh + 4);
            UNROLL
            for (int odd = 0; odd < 2; odd++) { /* ql bytes 32 * odd .. +32 of the half: groups g = odd, odd + 2 */
                __m512i ql[8];
                transpose16x(w, w_stride, rows, off + 64 * h + 32 * odd, ql);
                transpose16x(w, w_stride, rows, off + 64 * h + 32 * odd + 16, ql + 4);
                UNROLL
                for (int high = 0; high < 2; high++) {
                    const int g = odd + 2 * high;
                    __m512i u[8];
                    UNROLL
                    for (int m = 0; m < 8; m++) {
                        const __m512i nib = _mm512_and_si512(high ? _mm512_srli_epi16(ql[m], 4) : ql[m], nibble);
                        /* bits 2g, 2g + 1 of qh to bits 4, 5 */
                        const __m512i top = 2 * g <= 4 ? _mm512_slli_epi16(qh[m], (unsigned)(4 - 2 * g))
                                                       : _mm512_srli_epi16(qh[m], (unsigned)(2 * g - 4));
                        u[m] = _mm512_or_si512(nib, _mm512_and_si512(top, bits45));
                    }
                    const int j = 8 * h + 2 * g; /* sub-blocks j (m = 0..3) and j + 1 (m = 4..7) */
                    const __m512i sc_a = _mm512_srai_epi32(_mm512_slli_epi32(scales[j / 4], 24 - 8 * (j % 4)), 24);
                    const __m512i sc_b =
                        _mm512_srai_epi32(_mm512_slli_epi32(scales[(j + 1) / 4], 24 - 8 * ((j + 1) % 4)), 24);
                    UNROLL
                    for (int r = 0; r < NA; r++) {
                        const int8_t *x = a[r].q + 256 * s + 128 * h + 32 * g;
                        const int16_t *bs = a[r].bsum + 16 * s;
                        /* the stored quants are +32: take 32 x the activation sum off each sub-block */
                        __m512i sa = _mm512_set1_epi32(-32 * bs[j]), sb = _mm512_set1_epi32(-32 * bs[j + 1]);
                        UNROLL
                        for (int m = 0; m < 4; m++) {
                            sa = dpbusd_bcast(sa, u[m], x + 4 * m);
                            sb = dpbusd_bcast(sb, u[m + 4], x + 16 + 4 * m);
                        }
                        A[r] = _mm512_add_epi32(A[r], _mm512_add_epi32(_mm512_mullo_epi32(sa, sc_a), _mm512_mullo_epi32(sb, sc_b)));
                    }
                }
            }
        }
        UNROLL
        for (int r = 0; r < NA; r++)
            acc[r] = _mm512_fmadd_ps(_mm512_mul_ps(wd, _mm512_set1_ps(a[r].d[s])), _mm512_cvtepi32_ps(A[r]), acc[r]);
    }
    store_lanes16(NA, acc, nw, out, out_stride);
}

/* Q6_K against one activation row, each weight row read in its natural byte order: a row's
 * super-block is three wide loads unpacked in place, where the sixteen-lane tile needed thirteen
 * 16x4 transposes (a third of its instructions on the shuffle units). Lane k of a product vector
 * holds values 4k .. 4k + 3 of a 64-value chunk, so sub-block 4c + k / 4; the -32 offset of the
 * stored quants enters as a starting value shared by all rows. The super-block sums are the same
 * integers as q6k_lanes16's, accumulated in the same float order. */
INLINE __m512i q6k_row_sum(const unsigned char *block, const __m512i x[4], const __m512i *offset, const int16_t *bsum) {
    /* 16-bit word i of 128-bit lane L: the scale of sub-block 8h + L (words 0-3, which meet the low
     * 64 values' sums) or 8h + 4 + L (words 4-7, the high ones'), for h = 0, 1 */
    static const short scale_word[2][32] = {
        {0, 0, 0, 0, 4, 4, 4, 4, 1, 1, 1, 1, 5, 5, 5, 5, 2, 2, 2, 2, 6, 6, 6, 6, 3, 3, 3, 3, 7, 7, 7, 7},
        {8, 8, 8, 8, 12, 12, 12, 12, 9, 9, 9, 9, 13, 13, 13, 13, 10, 10, 10, 10, 14, 14, 14, 14, 11, 11, 11, 11, 15, 15, 15, 15}};
    const __m512i nibble = _mm512_set1_epi8(0x0f), bits45 = _mm512_set1_epi8(0x30);
    const __m512i upper_by_two = _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi16(2), 1); /* word shifts */
    const __m256i scales16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(block + 192)));
    const __m512i scales = _mm512_castsi256_si512(scales16);
    /* the stored quants are q + 32. With offset, each four values' sum starts at its -32 x their
     * activation sum (offset[c], shared by every row of a sixteen-row tile); without, the super-block's
     * sum starts at -32 x (sub-block scale x activation sum) summed over its sub-blocks, from bsum:
     * one vpmaddwd instead of four vector loads for each row (the one-row stream, 4096x4096 in cache,
     * one thread: 1,922-1,942 -> 1,813-1,828 ns per sixteen rows). The integers are the same. */
    __m512i sum = _mm512_setzero_si512();
    if (!offset) {
        const __m256i sums = _mm256_madd_epi16(scales16, _mm256_loadu_si256((const __m256i *)bsum));
        sum = _mm512_zextsi256_si512(_mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(sums, 5)));
    }
    UNROLL
    for (int h = 0; h < 2; h++) {
        /* values 128h + 0..63 take the low nibbles of ql (64 bytes) with qh bits 0-1 (first 32)
         * and 2-3 (next 32); values 128h + 64..127 the high nibbles with bits 4-5 and 6-7 */
        const __m512i ql = _mm512_loadu_si512(block + 64 * h);
        /* qh in both halves (a broadcast load), the upper one shifted right by 2 per 16-bit word:
         * no shuffle, where inserting the shifted copy was one (768-value rows in L2, 2 threads, two
         * alternating runs: 61.6/61.4 -> 65.6/65.4 GB/s; 4,096: 61.8/62.1 -> 62.5/62.3) */
        const __m256i qh = _mm256_loadu_si256((const __m256i *)(block + 128 + 32 * h));
        const __m512i qh2 = _mm512_srlv_epi16(_mm512_broadcast_i64x4(qh), upper_by_two);
        const __m512i low = _mm512_or_si512(_mm512_and_si512(ql, nibble), _mm512_and_si512(_mm512_slli_epi16(qh2, 4), bits45));
        const __m512i high =
            _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(ql, 4), nibble), _mm512_and_si512(qh2, bits45));
        /* four values' sums of (q - 32) x, so at most 4 x 32 x 127 in size: exact as 16 bits, and
         * vpdpwssd multiplies them by their sub-block's scale (a multiply-add of pairs where two
         * vpmulld and two additions were: 142-170 -> 123-155 ns per sixteen 768-value rows, one thread,
         * cache-resident, 4 interleaved runs) */
        const __m512i d_low = _mm512_dpbusd_epi32(offset ? offset[2 * h] : _mm512_setzero_si512(), low, x[2 * h]);
        const __m512i d_high = _mm512_dpbusd_epi32(offset ? offset[2 * h + 1] : _mm512_setzero_si512(), high, x[2 * h + 1]);
        sum = _mm512_dpwssd_epi32(sum, _mm512_packs_epi32(d_low, d_high),
                                  _mm512_permutexvar_epi16(_mm512_loadu_si512(scale_word[h]), scales));
    }
    return sum;
}

/* The block sixteen rows below `block` (the same block of the next tile's row) into L2, beside this
 * row's work: a tile of short rows spreads its prefetches over its rows instead of issuing one
 * step's share of the next tile at once (for 768-value Q6_K rows, 53 lines per super-block, a loop
 * where a fifth of the kernel's samples fell). 768-value rows from memory, one thread, 7
 * interleaved runs: 182-216 -> 131-190 ns per sixteen-row super-block. Splitting Q4_K's step share
 * in four the same way was slower from memory (143-167 -> 151-169 ns). */
INLINE void prefetch_block_below(const unsigned char *block, size_t w_stride, size_t block_bytes) {
    const unsigned char *below = block + 16 * w_stride;
    for (size_t at = 0; at < block_bytes; at += 64) _mm_prefetch((const char *)(below + at), _MM_HINT_T1);
    _mm_prefetch((const char *)(below + block_bytes - 1), _MM_HINT_T1);
}

INLINE void q6k_one_row16(int n, const unsigned char *w, size_t w_stride, int nw, const act_q8_256_view *a, float *out) {
    const size_t block_bytes = 210;
    const unsigned char *row_table[16], *lane_table[16];
    (void)lanes16_rows(w, w_stride, nw, row_table); /* every lane addressed through the table */
    UNROLL
    for (int i = 0; i < 16; i++) lane_table[i] = row_table[ROW16[i]]; /* lane_scales16 then reads row L into lane L */
    const __m512i thirty_two = _mm512_set1_epi8(32);
    __m512 acc = _mm512_setzero_ps();
    for (int s = 0; s < n / 256; s++) {
        const size_t off = (size_t)s * block_bytes;
        __m512i x[4], offset[4];
        UNROLL
        for (int c = 0; c < 4; c++) {
            x[c] = _mm512_loadu_si512(a->q + 256 * s + 64 * c);
            offset[c] = _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_dpbusd_epi32(_mm512_setzero_si512(), thirty_two, x[c]));
        }
#define ROW_SUM(i) (prefetch_block_below(row_table[i] + off, w_stride, block_bytes), q6k_row_sum(row_table[i] + off, x, offset, NULL))
        const __m512i sums = FOLD16(ROW_SUM);
#undef ROW_SUM
        const __m512 wd = lane_scales16(lane_table, off + 208);
        acc = _mm512_fmadd_ps(_mm512_mul_ps(wd, _mm512_set1_ps(a->d[s])), _mm512_cvtepi32_ps(sums), acc);
    }
    _mm512_mask_storeu_ps(out, (__mmask16)((1u << nw) - 1), acc);
}

enum { Q6K_BLOCK_BYTES = 210 };

/* The fp16 scales of sixteen consecutive super-blocks of a row (lane k: super-block k, 0 where
 * `live` has no bit), as fp32: one vpgatherdd of the 32-bit words that end with them. Sixteen
 * 16-bit loads and inserts (lane_scales16) were about an eighth of the one-row Q6_K kernel's time:
 * in a copy of the kernel on its own, 4096x4096 in cache, one thread, 1,822-1,843 -> 1,646-1,680 ns
 * per sixteen rows. (The gather is once per sixteen super-blocks here; once per 32-value block it
 * was slower: lane_scales16.) */
INLINE __m512 q6k_group_scales(const unsigned char *first_block, __mmask16 live) {
    /* lane k: byte 210k + 206 of the group, the word whose top half is super-block k's d (bytes 208-209) */
    const __m512i lane = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
    const __m512i word_at = _mm512_add_epi32(_mm512_mullo_epi32(lane, _mm512_set1_epi32(Q6K_BLOCK_BYTES)),
                                             _mm512_set1_epi32(Q6K_BLOCK_BYTES - 4));
    const __m512i words = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), live, word_at, first_block, 1);
    return _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(words, 16)));
}

/* Super-block s of a row against the activation's: q6k_row_sum's sixteen partial sums. */
INLINE __m512i q6k_stream_block(const unsigned char *row, int s, const act_q8_256_view *a) {
    prefetch_stream_block(row, Q6K_BLOCK_BYTES, s);
    __m512i x[4];
    UNROLL
    for (int c = 0; c < 4; c++) x[c] = _mm512_loadu_si512(a->q + 256 * s + 64 * c);
    return q6k_row_sum(row + (size_t)s * Q6K_BLOCK_BYTES, x, NULL, a->bsum + 16 * s);
}

/* Super-blocks first .. first + count - 1 (count <= 16) of a row: acc + their float terms, in order. */
INLINE float q6k_stream_group(const unsigned char *row, int first, int count, const act_q8_256_view *a, float acc) {
#define LANE_VECTOR(k) ((k) < count ? q6k_stream_block(row, first + (k), a) : _mm512_setzero_si512())
    const __m512i sums = FOLD16(LANE_VECTOR); /* lane k: super-block first + k */
#undef LANE_VECTOR
    const __mmask16 live = (__mmask16)((1u << count) - 1);
    const __m512 weight_scale = q6k_group_scales(row + (size_t)first * Q6K_BLOCK_BYTES, live);
    const __m512 scale = _mm512_mul_ps(weight_scale, _mm512_maskz_loadu_ps(live, a->d + first));
    return sum_in_order(acc, scale, _mm512_cvtepi32_ps(sums), count);
}

/* A row's last, partial group, out of line (q6k_row_stream). */
static __attribute__((noinline)) NO_ASAN float q6k_stream_tail(const unsigned char *row, int first, int count,
                                                                const act_q8_256_view *a, float acc) {
    return q6k_stream_group(row, first, count, a, acc);
}

/* Q6_K, one weight row against one activation row, the row read front to back: one memory stream
 * per thread. Sixteen super-blocks of the row take the sixteen lanes (q6k_lanes16 gives them
 * sixteen rows), and the row's float sum then runs over them in order: the same integers, products
 * and order as that row's lane in a sixteen-row tile, so the same bits. q6k_one_row16, a super-block
 * of each of sixteen rows in turn (sixteen memory streams), measured 7-20% slower from memory on two
 * threads (32000x4096 and 4096x11008); it stays for rows of fewer than sixteen super-blocks.
 * Whole groups go with a constant count, so that GCC unrolls the group whole and keeps
 * sum_in_order's steps in registers, and the last, partial group apart, so that its code does not
 * crowd the whole groups' loop (a variable count left the sixteen partial sums and the float steps
 * on the stack). With q6k_group_scales, in cache, one thread, ns per sixteen rows: 4096x4096
 * 1,828-1,877 -> 1,720-1,738; 4096x11008 5,108-5,183 -> 4,772-4,793. */
INLINE float q6k_row_stream(int n, const unsigned char *row, const act_q8_256_view *a) {
    const int blocks = n / 256;
    float acc = 0.0f;
    int first = 0;
    for (; first + 16 <= blocks; first += 16) acc = q6k_stream_group(row, first, 16, a, acc);
    return first < blocks ? q6k_stream_tail(row, first, blocks - first, a, acc) : acc;
}

static NO_ASAN void tile16_q6_k(int n, const void *w, size_t ws, int nw, const void *act, size_t as, int na, float *o,
                                size_t os) {
    act_q8_256_view a[KERNEL_MAX_A];
    for (int r = 0; r < na; r++) a[r] = act_q8_256_at((const char *)act + (size_t)r * as, n);
    const int blocks = row_stream_blocks(n, na);
    for (int f = 0; f < nw; f += 16) {
        const unsigned char *rows = (const unsigned char *)w + (size_t)f * ws;
        const int count = nw - f < 16 ? nw - f : 16;
        switch (na) {
        case 1:
            if (blocks == 0) {
                q6k_one_row16(n, rows, ws, count, a, o + f);
                break;
            }
            for (int r = 0; r < count; r++) o[f + r] = q6k_row_stream(n, rows + (size_t)r * ws, a);
            break;
        case 2: q6k_lanes16(2, n, rows, ws, count, a, o + f, os); break;
        case 3: q6k_lanes16(3, n, rows, ws, count, a, o + f, os); break;
        case 4: q6k_lanes16(4, n, rows, ws, count, a, o + f, os); break;
        case 5: q6k_lanes16(5, n, rows, ws, count, a, o + f, os); break;
        case 6: q6k_lanes16(6, n, rows, ws, count, a, o + f, os); break;
        case 7: q6k_lanes16(7, n, rows, ws, count, a, o + f, os); break;
        default: q6k_lanes16(8, n, rows, ws, count, a, o + f, os); break;
        }
    }
}

/* IQ4_XS: rows 0 .. nw-1 (nw <= 16) against NA activation rows, as k45_lanes16: each sub-block of
 * 32 values of the sixteen rows is transposed (lane L: row ROW16[L]), its nibbles go through the
 * value table (vpshufb, biased by 128 to be unsigned), and vpdpbusd adds the products of every
 * row at once; the sub-block's sum times its scale ls - 32 joins A. The same integers as the
 * portable kernel's, in the same float order. */
INLINE void iq4xs_lanes16(int NA, int n, const unsigned char *w, size_t w_stride, int nw, const act_q8_256_view *a,
                          float *out, size_t out_stride) {
    const size_t block_bytes = 136;
    const unsigned char *row_table[16];
    const unsigned char *const *rows = lanes16_rows(w, w_stride, nw, row_table);
    const __m512i nibble = _mm512_set1_epi8(0x0f), table = _mm512_broadcast_i32x4(_mm256_castsi256_si128(iq4_table()));
    __m512 acc[KERNEL_MAX_A];
    UNROLL
    for (int r = 0; r < NA; r++) acc[r] = _mm512_setzero_ps();
    for (int s = 0; s < n / 256; s++) {
        const size_t off = (size_t)s * block_bytes;
        /* dword 0: d and scales_h; dword 1: scales_l (sub-block j's low four bits at bit 4j) */
        __m512i head[4];
        transpose16x(w, w_stride, rows, off, head);
        const __m512 wd = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(head[0]));
        const __m512i scales_h = _mm512_srli_epi32(head[0], 16), scales_l = head[1];
        __m512i A[KERNEL_MAX_A];
        UNROLL
        for (int r = 0; r < NA; r++) A[r] = _mm512_setzero_si512();
        UNROLL
        for (int j = 0; j < 8; j++) {
            prefetch_rows_ahead(w, w_stride, 16, 8 * s + j, 8 * (n / 256), TILE_AHEAD_MIN);
            const __m512i low4 = _mm512_and_si512(_mm512_srli_epi32(scales_l, (unsigned)(4 * j)), _mm512_set1_epi32(15));
            const __m512i top2 = _mm512_and_si512(_mm512_srli_epi32(scales_h, (unsigned)(2 * j)), _mm512_set1_epi32(3));
            const __m512i scale = _mm512_sub_epi32(_mm512_or_si512(low4, _mm512_slli_epi32(top2, 4)), _mm512_set1_epi32(32));
            __m512i t[4], lo[4], hi[4];
            transpose16x(w, w_stride, rows, off + 8 + 16 * (size_t)j, t);
            UNROLL
            for (int k = 0; k < 4; k++) {
                lo[k] = _mm512_shuffle_epi8(table, _mm512_and_si512(t[k], nibble));
                hi[k] = _mm512_shuffle_epi8(table, _mm512_and_si512(_mm512_srli_epi16(t[k], 4), nibble));
            }
            UNROLL
            for (int r = 0; r < NA; r++) {
                const int8_t *x = a[r].q + 256 * s + 32 * j;
                const int16_t *bs = a[r].bsum + 16 * s + 2 * j;
                /* the values are biased by 128: take 128 x the activation sum off first */
                __m512i sum = _mm512_set1_epi32(-128 * (bs[0] + bs[1])), other = _mm512_setzero_si512();
                UNROLL
                for (int k = 0; k < 4; k++) {
                    sum = dpbusd_bcast(sum, lo[k], x + 4 * k);
                    other = dpbusd_bcast(other, hi[k], x + 16 + 4 * k);
                }
                A[r] = _mm512_add_epi32(A[r], _mm512_mullo_epi32(_mm512_add_epi32(sum, other), scale));
            }
        }
        UNROLL
        for (int r = 0; r < NA; r++)
            acc[r] = _mm512_fmadd_ps(_mm512_mul_ps(wd, _mm512_set1_ps(a[r].d[s])), _mm512_cvtepi32_ps(A[r]), acc[r]);
    }
    store_lanes16(NA, acc, nw, out, out_stride);
}

static NO_ASAN void tile16_iq4_xs(int n, const void *w, size_t ws, int nw, const void *act, size_t as, int na, float *o,
                                  size_t os) {
    k_tile16(GGML_TYPE_IQ4_XS, n, w, ws, nw, act, as, na, o, os);
}

/* K blocks, 9 to 16 activation rows: sixteen at once when there are sixteen (each super-block
 * transposed once for all of them), otherwise eight and the rest with the type's 8-row tile. */
INLINE void wide16_k(ggml_type type, int n, const void *w, size_t ws, int nw, const void *act, size_t as, int na,
                     float *o, size_t os) {
    if (na < 16) {
        for (int first = 0; first < na; first += 8) {
            const void *rows = (const char *)act + (size_t)first * as;
            const int count = na - first < 8 ? na - first : 8;
            float *out = o + (size_t)first * os;
            if (type == GGML_TYPE_Q6_K) tile16_q6_k(n, w, ws, nw, rows, as, count, out, os);
            else k_tile16(type, n, w, ws, nw, rows, as, count, out, os);
        }
        return;
    }
    act_q8_256_view a[16];
    for (int r = 0; r < 16; r++) a[r] = act_q8_256_at((const char *)act + (size_t)r * as, n);
    for (int f = 0; f < nw; f += 16) {
        const unsigned char *rows = (const unsigned char *)w + (size_t)f * ws;
        const int count = nw - f < 16 ? nw - f : 16;
        if (type == GGML_TYPE_Q6_K) q6k_lanes16(16, n, rows, ws, count, a, o + f, os);
        else k_lanes16(type, 16, n, rows, ws, count, a, o + f, os);
    }
}

static NO_ASAN void wide16_q4_k(int n, const void *w, size_t ws, int nw, const void *act, size_t as, int na, float *o,
                                size_t os) {
    wide16_k(GGML_TYPE_Q4_K, n, w, ws, nw, act, as, na, o, os);
}
static NO_ASAN void wide16_q5_k(int n, const void *w, size_t ws, int nw, const void *act, size_t as, int na, float *o,
                                size_t os) {
    wide16_k(GGML_TYPE_Q5_K, n, w, ws, nw, act, as, na, o, os);
}
static NO_ASAN void wide16_q6_k(int n, const void *w, size_t ws, int nw, const void *act, size_t as, int na, float *o,
                                size_t os) {
    wide16_k(GGML_TYPE_Q6_K, n, w, ws, nw, act, as, na, o, os);
}
static NO_ASAN void wide16_iq4_xs(int n, const void *w, size_t ws, int nw, const void *act, size_t as, int na,
                                  float *o, size_t os) {
    wide16_k(GGML_TYPE_IQ4_XS, n, w, ws, nw, act, as, na, o, os);
}

/* ---- float weights on 512-bit vectors --------------------------------------------------------------
 * kernels.h's 16 lanes are one register: NW weight rows by NA activation rows, NW * NA <= 16
 * accumulators. */

INLINE __m512 load16(ggml_type type, const unsigned char *w, int i) {
    if (type == GGML_TYPE_F16) return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(w + 2 * (size_t)i)));
    if (type == GGML_TYPE_BF16)
        return _mm512_castsi512_ps(
            _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(w + 2 * (size_t)i))), 16));
    return _mm512_loadu_ps((const float *)w + i);
}

/* The last n % 16 weights (from `from`), zeros beyond n: masked loads never touch the bytes past
 * the row. */
INLINE __m512 load16_tail(ggml_type type, const unsigned char *w, int from, int n) {
    const __mmask16 live = (__mmask16)((1u << (n - from)) - 1);
    if (type == GGML_TYPE_F16)
        return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(live, w + 2 * (size_t)from));
    if (type == GGML_TYPE_BF16)
        return _mm512_castsi512_ps(
            _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(live, w + 2 * (size_t)from)), 16));
    return _mm512_maskz_loadu_ps(live, (const float *)w + from);
}

INLINE float hsum16x(__m512 acc) {
    return hsum16(_mm512_castps512_ps256(acc), _mm512_extractf32x8_ps(acc, 1));
}

/* Values [from, to) of the products of NW weight rows with NA activation rows (n values each).
 * The accumulators start at zero when from is 0 and otherwise come from carry[f * NA + r]; they go
 * back there unless to is n, when the sums are stored in out. A lane's sum thus runs over i in
 * order however the row is cut. ahead: bytes to prefetch beyond each load, 0 for none
 * (HALF_ROW_AHEAD, kernels_x86.inc). */
INLINE void float_tile16x(ggml_type type, int NW, int NA, int from, int to, int n, const unsigned char *w,
                          size_t w_stride, const float *x, size_t x_stride, __m512 *carry, float *out,
                          size_t out_stride, size_t ahead) {
    __m512 acc[8][8];
    UNROLL
    for (int f = 0; f < NW; f++)
        UNROLL
        for (int r = 0; r < NA; r++) acc[f][r] = from == 0 ? _mm512_setzero_ps() : carry[f * NA + r];
    const int full = to / 16 * 16;
    for (int i = from; i < full; i += 16) {
        /* each weight and activation vector loaded once (NW + NA loads for NW * NA fmas) */
        __m512 xv[8];
        UNROLL
        for (int r = 0; r < NA; r++) {
            xv[r] = _mm512_load_ps(x + (size_t)r * x_stride + i);
            __asm__("" : "+v"(xv[r])); /* in a register: GCC would fold a load into every fma */
        }
        if (ahead) _mm_prefetch((const char *)w + (type == GGML_TYPE_F32 ? 4 : 2) * (size_t)i + ahead, _MM_HINT_T1);
        UNROLL
        for (int f = 0; f < NW; f++) {
            __m512 wv = load16(type, w + (size_t)f * w_stride, i);
            __asm__("" : "+v"(wv));
            UNROLL
            for (int r = 0; r < NA; r++) acc[f][r] = _mm512_fmadd_ps(wv, xv[r], acc[f][r]);
        }
    }
    if (full < to) { /* only at the row's end: spans are whole vectors */
        UNROLL
        for (int f = 0; f < NW; f++) {
            const __m512 wv = load16_tail(type, w + (size_t)f * w_stride, full, n);
            UNROLL
            for (int r = 0; r < NA; r++) acc[f][r] = _mm512_fmadd_ps(wv, _mm512_load_ps(x + (size_t)r * x_stride + full), acc[f][r]);
        }
    }
    UNROLL
    for (int f = 0; f < NW; f++)
        UNROLL
        for (int r = 0; r < NA; r++) {
            if (to == n) out[(size_t)r * out_stride + f] = hsum16x(acc[f][r]);
            else carry[f * NA + r] = acc[f][r];
        }
}

/* Many activation rows take the weight rows in spans (float_span_end, kernels_x86.inc). A tile of four by
 * four rows of 2048 values (8 KB each) reads 64 KB, more than the 48 KB L1 data cache here, so the
 * four activation rows that the next tile reuses were gone and every load came from L2 (768x2048,
 * 16 x 16 rows, one thread: 68 GMAC/s, against 107-110 when either side is one row that stays in L1). */

INLINE void float_kernel16(ggml_type type, int n, const void *w, size_t w_stride, int nw, const void *act,
                           size_t act_stride, int na, float *out, size_t out_stride) {
    const unsigned char *wb = w;
    const float *x = act;
    const size_t xs = act_stride / sizeof(float);
    if (na == 1) {
        /* One row after the other: the weights are then read in file order, one stream per
         * thread. Four rows at once (four streams a row apart) measured 10-20% slower in 768x12
         * F32 decode on two threads (8 interleaved rounds); a row's bits are the same either way. */
        for (int f = 0; f < nw; f++)
            float_tile16x(type, 1, 1, 0, n, n, wb + f * w_stride, w_stride, x, xs, NULL, out + f, out_stride,
                          type == GGML_TYPE_F32 ? 0 : HALF_ROW_AHEAD);
        return;
    }
    __m512 carry[KERNEL_MAX_W][16]; /* [first weight row of a group of four][its 4 x 4 accumulators] */
    for (int r = 0; r < na; r += 4) {
        const int rows = na - r < 4 ? na - r : 4;
        const float *xr = x + r * xs;
        for (int from = 0, to = 0; to < n; from = to) {
            to = float_span_end(from, n);
            for (int f = 0; f < nw; f += 4) {
                const int cols = nw - f < 4 ? nw - f : 4;
                const unsigned char *wf = wb + f * w_stride;
                float *o = out + r * out_stride + f;
                if (rows == 4 && cols == 4) float_tile16x(type, 4, 4, from, to, n, wf, w_stride, xr, xs, carry[f], o, out_stride, 0);
                else
                    for (int rr = 0; rr < rows; rr++)
                        for (int ff = 0; ff < cols; ff++)
                            float_tile16x(type, 1, 1, from, to, n, wf + ff * w_stride, w_stride, xr + rr * xs, xs,
                                          &carry[f + ff][rr], o + rr * out_stride + ff, out_stride, 0);
            }
        }
    }
}

static NO_ASAN void tile16_f32(int n, const void *w, size_t ws, int nw, const void *a, size_t as, int na, float *o, size_t os) {
    float_kernel16(GGML_TYPE_F32, n, w, ws, nw, a, as, na, o, os);
}
static NO_ASAN void tile16_f16(int n, const void *w, size_t ws, int nw, const void *a, size_t as, int na, float *o, size_t os) {
    float_kernel16(GGML_TYPE_F16, n, w, ws, nw, a, as, na, o, os);
}
static NO_ASAN void tile16_bf16(int n, const void *w, size_t ws, int nw, const void *a, size_t as, int na, float *o, size_t os) {
    float_kernel16(GGML_TYPE_BF16, n, w, ws, nw, a, as, na, o, os);
}
/* quantize_block_portable's rules, sixteen values at a time: the same IEEE operations (one
 * multiply by the same 127 / amax, the same clamp, rounding to nearest even), so the same bytes.
 * max_ps returns its second operand when either is NaN, so a NaN value never becomes amax, as in
 * the scalar comparison; NaN products become 0 through the ordered mask. */
static NO_ASAN float quantize_block16(const float *x, int count, int8_t *q) {
    const __m512 magnitude = _mm512_castsi512_ps(_mm512_set1_epi32(0x7fffffff));
    __m512 top = _mm512_setzero_ps();
    for (int i = 0; i < count; i += 16) top = _mm512_max_ps(_mm512_and_ps(_mm512_loadu_ps(x + i), magnitude), top);
    const float amax = _mm512_reduce_max_ps(top);
    if (!(amax > 0.0f) || !(amax <= FLT_MAX) || !(127.0f / amax <= FLT_MAX))
        return quantize_block_portable(x, count, q); /* zero, infinite or tiny blocks: rare */
    const __m512 inverse = _mm512_set1_ps(127.0f / amax), high = _mm512_set1_ps(127.0f), low = _mm512_set1_ps(-127.0f);
    for (int i = 0; i < count; i += 16) {
        const __m512 v = _mm512_mul_ps(_mm512_loadu_ps(x + i), inverse);
        const __mmask16 number = _mm512_cmp_ps_mask(v, v, _CMP_ORD_Q);
        const __m512 clamped = _mm512_min_ps(_mm512_max_ps(v, low), high);
        const __m512i rounded = _mm512_maskz_cvt_roundps_epi32(number, clamped, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        _mm_storeu_si128((__m128i *)(q + i), _mm512_cvtepi32_epi8(rounded));
    }
    return amax / 127.0f;
}

#ifdef __clang__
#pragma clang attribute pop
#endif
#pragma GCC pop_options

block_quantizer kernels_avx512_quantizer(void) { return quantize_block16; }

dot_fn kernels_avx512_for(ggml_type type, bool vbmi2) {
    switch (type) {
    case GGML_TYPE_F32: return tile16_f32;
    case GGML_TYPE_F16: return tile16_f16;
    case GGML_TYPE_BF16: return tile16_bf16;
    case GGML_TYPE_Q8_0: return vbmi2 ? tile16_q8_0_vbmi2 : tile16_q8_0;
    case GGML_TYPE_Q4_0: return vbmi2 ? tile16_q4_0_vbmi2 : tile16_q4_0;
    case GGML_TYPE_Q4_1: return vbmi2 ? tile16_q4_1_vbmi2 : tile16_q4_1;
    case GGML_TYPE_Q5_0: return vbmi2 ? tile16_q5_0_vbmi2 : tile16_q5_0;
    case GGML_TYPE_Q5_1: return vbmi2 ? tile16_q5_1_vbmi2 : tile16_q5_1;
    case GGML_TYPE_IQ4_NL: return vbmi2 ? tile16_iq4_nl_vbmi2 : tile16_iq4_nl;
    case GGML_TYPE_Q4_K: return tile16_q4_k;
    case GGML_TYPE_Q5_K: return tile16_q5_k;
    case GGML_TYPE_Q6_K: return tile16_q6_k;
    case GGML_TYPE_IQ4_XS: return tile16_iq4_xs;
    default: return kernel_table_avx512(type);
    }
}

dot_fn kernels_avx512_wide_for(ggml_type type) {
    switch (type) {
    case GGML_TYPE_Q8_0: return wide16_q8_0;
    case GGML_TYPE_Q4_0: return wide16_q4_0;
    case GGML_TYPE_Q4_1: return wide16_q4_1;
    case GGML_TYPE_Q5_0: return wide16_q5_0;
    case GGML_TYPE_Q5_1: return wide16_q5_1;
    case GGML_TYPE_IQ4_NL: return wide16_iq4_nl;
    case GGML_TYPE_Q4_K: return wide16_q4_k;
    case GGML_TYPE_Q5_K: return wide16_q5_k;
    case GGML_TYPE_Q6_K: return wide16_q6_k;
    case GGML_TYPE_IQ4_XS: return wide16_iq4_xs;
    default: return NULL;
    }
}
#else
block_quantizer kernels_avx512_quantizer(void) { return NULL; }
dot_fn kernels_avx512_for(ggml_type type, bool vbmi2) {
    (void)type;
    (void)vbmi2;
    return NULL;
}
dot_fn kernels_avx512_wide_for(ggml_type type) {
    (void)type;
    return NULL;
}
#endif
