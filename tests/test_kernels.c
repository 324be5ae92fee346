/* test_kernels.c: the dot-product kernels of every supported weight type (kernels.h).
 *
 * On random rows, including blocks with extreme scales (fp16 65504, subnormal, zero, negative)
 * and activation blocks of extreme magnitude (1e-30 .. 1e20, all zero, one spike):
 *  - the portable kernel is within a stated bound of a straightforward reference: the weights
 *    dequantized to fp32 (quant.c) dotted with the original fp32 activations in double. The bound
 *    is the activation quantization (each 8-bit activation is within half a step, d/2, of the
 *    true value) plus fp32 rounding: sum |w_i| * d_i / 2 + (blocks + 24) * 2^-23 * sum |w_i| * (|x_i| + d_i).
 *    Float types: (n / 16 + 24) * 2^-23 * sum |w_i x_i|.
 *  - every SIMD level this CPU has gives the same bits as the portable kernel, for every tile
 *    shape (1..4 weight rows by 1..4 activation rows).
 *  - matmul_weights gives each row the same bits alone as in a batch of 37 rows, and the same
 *    bits with 1, 2 and 3 threads.
 *  - no kernel reads outside its rows: weights and activations are placed against inaccessible
 *    guard pages (the SIMD kernels are not instrumented by AddressSanitizer, so this is their
 *    bounds check in every build).
 */
#include <criterion/criterion.h>

#include <float.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "kernels.h"
#include "kernels_internal.h" /* the activation row layout */
#include "matmul.h"
#include "quant.h"

static const ggml_type TYPES[] = {GGML_TYPE_F32,  GGML_TYPE_F16,  GGML_TYPE_BF16, GGML_TYPE_Q8_0, GGML_TYPE_Q4_0,
                                  GGML_TYPE_Q4_1, GGML_TYPE_Q5_0, GGML_TYPE_Q5_1, GGML_TYPE_Q2_K, GGML_TYPE_Q3_K,
                                  GGML_TYPE_Q4_K, GGML_TYPE_Q5_K, GGML_TYPE_Q6_K, GGML_TYPE_IQ4_NL, GGML_TYPE_IQ4_XS};
#define N_TYPES (sizeof TYPES / sizeof TYPES[0])

/* ---- random data ---------------------------------------------------------------------------------- */

static uint64_t rng_state;
static uint32_t rng(void) {
    rng_state = rng_state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (uint32_t)(rng_state >> 33);
}
static float uniform(void) { return (float)rng() / 2147483648.0f - 1.0f; } /* [-1, 1) */

/* A block scale: mostly ordinary, sometimes extreme. */
static float scale_value(void) {
    switch (rng() % 10) {
    case 0: return 65504.0f;              /* the largest fp16 */
    case 1: return 5.96e-8f;              /* the smallest fp16 subnormal */
    case 2: return 0.0f;
    case 3: return -0.0123f;              /* negative scales happen (Q4_0 stores max / -8) */
    default: return ldexpf(1.0f + uniform() * 0.5f, -(int)(rng() % 12)); /* 2^-11 .. 1.5 */
    }
}

/* Byte offsets of the fp16 scales in a block of each type. */
static void scale_offsets(ggml_type type, int offsets[2], int *count) {
    *count = 1;
    switch (type) {
    case GGML_TYPE_Q4_1: case GGML_TYPE_Q5_1: case GGML_TYPE_Q4_K: case GGML_TYPE_Q5_K:
        offsets[0] = 0, offsets[1] = 2, *count = 2;
        break;
    case GGML_TYPE_Q2_K: offsets[0] = 80, offsets[1] = 82, *count = 2; break;
    case GGML_TYPE_Q3_K: offsets[0] = 108; break;
    case GGML_TYPE_Q6_K: offsets[0] = 208; break;
    default: offsets[0] = 0; break;
    }
}

/* rows x n values of type: random bytes with finite, sometimes extreme, scales. */
static void *random_rows(ggml_type type, int rows, int n, size_t *row_bytes) {
    *row_bytes = quant_row_bytes(type, (size_t)n);
    unsigned char *data = malloc(*row_bytes * (size_t)rows);
    cr_assert_not_null(data);
    if (type == GGML_TYPE_F32 || type == GGML_TYPE_F16 || type == GGML_TYPE_BF16) {
        for (size_t i = 0; i < (size_t)rows * n; i++) {
            float v = uniform() * (rng() % 50 == 0 ? 1000.0f : 1.0f);
            if (type == GGML_TYPE_F32) memcpy(data + 4 * i, &v, 4);
            else if (type == GGML_TYPE_F16) {
                uint16_t h = fp32_to_fp16(v);
                memcpy(data + 2 * i, &h, 2);
            } else {
                uint32_t bits;
                memcpy(&bits, &v, 4);
                uint16_t h = (uint16_t)(bits >> 16);
                memcpy(data + 2 * i, &h, 2);
            }
        }
        return data;
    }
    for (size_t i = 0; i < *row_bytes * (size_t)rows; i++) data[i] = (unsigned char)rng();
    const size_t block_bytes = (size_t)ggml_type_block_bytes(type);
    const size_t blocks = *row_bytes * (size_t)rows / block_bytes;
    int offsets[2], count;
    scale_offsets(type, offsets, &count);
    for (size_t b = 0; b < blocks; b++)
        for (int k = 0; k < count; k++) {
            uint16_t h = fp32_to_fp16(scale_value());
            memcpy(data + b * block_bytes + offsets[k], &h, 2);
        }
    return data;
}

/* rows x n activations; each 32-value block has its own magnitude, some extreme. */
static float *random_activations(int rows, int n) {
    float *x = malloc(sizeof(float) * (size_t)rows * n);
    cr_assert_not_null(x);
    for (int r = 0; r < rows; r++)
        for (int b = 0; b < (n + 31) / 32; b++) {
            float magnitude;
            switch (rng() % 8) {
            case 0: magnitude = 1e-30f; break;
            case 1: magnitude = 1e20f; break;
            case 2: magnitude = 0.0f; break;
            default: magnitude = ldexpf(1.0f, (int)(rng() % 8) - 4); break;
            }
            bool spike = rng() % 5 == 0;
            for (int i = 32 * b; i < 32 * b + 32 && i < n; i++)
                x[(size_t)r * n + i] = spike ? (i == 32 * b + 3 ? magnitude * 100.0f : 0.001f * magnitude * uniform())
                                             : magnitude * uniform();
        }
    return x;
}

static int row_length(ggml_type type, int which) {
    /* 4352: 136 blocks of 32 or seventeen super-blocks: full groups and a part of one for the one-row
     * kernels that read a row front to back sixteen blocks at a time (rows of 4,096 values or more) */
    static const int small[] = {32, 64, 96, 288, 768, 4352};
    static const int k[] = {256, 512, 768, 1024, 2816, 4352};
    static const int flt[] = {5, 16, 40, 288, 1000, 2100}; /* 1000, 2100: spans of many-row products */
    size_t block = (size_t)ggml_type_block_elements(type);
    return block == 256 ? k[which] : block == 32 ? small[which] : flt[which];
}

/* ---- the reference -------------------------------------------------------------------------------- */

/* The activation scale of element i of a converted row (what the kernel multiplies with). */
static double activation_step(ggml_type type, const float *x, int n, int i) {
    act_kind kind = act_kind_of(type);
    if (kind == ACT_F32) return 0.0;
    int block = kind == ACT_Q8_32 ? 32 : 256, first = i / block * block;
    float amax = 0.0f;
    for (int k = first; k < first + block && k < n; k++) amax = fmaxf(amax, fabsf(x[k]));
    return amax / 127.0;
}

static void check_against_reference(ggml_type type, int n) {
    size_t row_bytes;
    void *w = random_rows(type, 1, n, &row_bytes);
    float *x = random_activations(1, n);
    float *wf = malloc(sizeof(float) * (size_t)n);
    cr_assert_eq(dequantize(type, w, wf, (size_t)n), 0);
    act_kind kind = act_kind_of(type);
    void *act = aligned_alloc(64, act_row_bytes(kind, n));
    act_quantize(kind, x, n, act);
    float got = NAN;
    kernel_dot_at(KERNELS_PORTABLE, type, n, w, row_bytes, 1, act, act_row_bytes(kind, n), 1, &got, 1);

    double exact = 0.0, quantization = 0.0, magnitude = 0.0;
    const int blocks = n / (int)ggml_type_block_elements(type);
    for (int i = 0; i < n; i++) {
        double step = activation_step(type, x, n, i);
        exact += (double)wf[i] * x[i];
        quantization += fabs(wf[i]) * step / 2.0;
        magnitude += fabs(wf[i]) * (fabs(x[i]) + step);
    }
    double rounding = kind == ACT_F32 ? (n / 16.0 + 24) * ldexp(1.0, -23) * magnitude
                                      : (blocks + 24) * ldexp(1.0, -23) * magnitude;
    double bound = quantization + rounding + 1e-37;
    cr_assert(fabs((double)got - exact) <= bound, "%s n=%d: kernel %.9g, reference %.9g, |difference| %.3g > bound %.3g",
              ggml_type_name(type), n, got, exact, fabs((double)got - exact), bound);
    free(w);
    free(x);
    free(wf);
    free(act);
}

Test(kernels, portable_matches_dequantize_then_dot) {
    rng_state = 1;
    for (size_t t = 0; t < N_TYPES; t++)
        for (int which = 0; which < 6; which++)
            for (int trial = 0; trial < 40; trial++) check_against_reference(TYPES[t], row_length(TYPES[t], which));
}

/* ---- SIMD == portable ----------------------------------------------------------------------------- */

static void check_levels_agree(ggml_type type, int n) {
    enum { W = KERNEL_MAX_W, A = KERNEL_MAX_A };
    size_t row_bytes;
    void *w = random_rows(type, W, n, &row_bytes);
    float *x = random_activations(A, n);
    act_kind kind = act_kind_of(type);
    size_t stride = act_row_bytes(kind, n);
    unsigned char *act = aligned_alloc(64, stride * A);
    for (int r = 0; r < A; r++) act_quantize(kind, x + (size_t)r * n, n, act + r * stride);
    float expected[A][W], got[A][W];
    kernel_dot_at(KERNELS_PORTABLE, type, n, w, row_bytes, W, act, stride, A, &expected[0][0], W);
    for (int level = KERNELS_AVX2; level < KERNEL_LEVELS; level++) {
        if (!kernel_level_available((kernel_level)level)) continue;
        for (int nw = 1; nw <= W; nw++)
            for (int na = 1; na <= A; na++) {
                memset(got, 0xff, sizeof got);
                cr_assert(kernel_dot_at((kernel_level)level, type, n, w, row_bytes, nw, act, stride, na, &got[0][0], W));
                for (int r = 0; r < na; r++)
                    for (int f = 0; f < nw; f++)
                        cr_assert(memcmp(&got[r][f], &expected[r][f], sizeof(float)) == 0,
                                  "%s n=%d level %s tile %dx%d: row %d feature %d is %.9g, portable %.9g",
                                  ggml_type_name(type), n, kernel_level_name((kernel_level)level), nw, na, r, f,
                                  got[r][f], expected[r][f]);
            }
    }
    free(w);
    free(x);
    free(act);
}

Test(kernels, simd_levels_match_portable_bit_for_bit) {
    rng_state = 2;
    if (!kernel_level_available(KERNELS_AVX2)) cr_log_warn("no AVX2 on this CPU: only the portable kernels run");
    for (size_t t = 0; t < N_TYPES; t++)
        for (int which = 0; which < 6; which++)
            for (int trial = 0; trial < 10; trial++) check_levels_agree(TYPES[t], row_length(TYPES[t], which));
}

/* Activation rows come out byte for byte the same at every level: random blocks of every
 * magnitude (random_activations), plus blocks with NaN and infinite values, exact ties (x * 127 /
 * amax landing on k + 0.5), and magnitudes so small that 127 / amax overflows. */
Test(kernels, activation_rows_are_the_same_bytes_at_every_level) {
    rng_state = 5;
    static const int lengths[] = {256, 768, 1024, 4096};
    for (int kind = ACT_Q8_32; kind <= ACT_Q8_256; kind++)
        for (size_t l = 0; l < sizeof lengths / sizeof lengths[0]; l++)
            for (int trial = 0; trial < 20; trial++) {
                const int n = lengths[l];
                float *x = random_activations(1, n);
                for (int b = 0; b < n / 32; b++) {
                    float *block = x + 32 * b;
                    switch (rng() % 6) {
                    case 0: block[rng() % 32] = NAN; break;
                    case 1: block[rng() % 32] = (rng() % 2 ? 1 : -1) * INFINITY; break;
                    case 2: /* amax 127: every product exact, halves are ties */
                        for (int i = 0; i < 32; i++) block[i] = (float)((int)(rng() % 254) - 127) + (rng() % 2 ? 0.5f : 0.0f);
                        block[0] = 127.0f;
                        break;
                    case 3: for (int i = 0; i < 32; i++) block[i] = 1e-40f * uniform(); break;
                    default: break;
                    }
                }
                const size_t bytes = act_row_bytes((act_kind)kind, n);
                unsigned char *expected = aligned_alloc(64, bytes), *got = aligned_alloc(64, bytes);
                cr_assert(expected && got);
                memset(expected, 0xab, bytes);
                cr_assert(act_quantize_at(KERNELS_PORTABLE, (act_kind)kind, x, n, expected));
                for (int level = KERNELS_AVX2; level < KERNEL_LEVELS; level++) {
                    memset(got, 0xab, bytes); /* bytes past the layout (alignment) are never written */
                    if (!act_quantize_at((kernel_level)level, (act_kind)kind, x, n, got)) continue;
                    size_t at = 0;
                    while (at < bytes && got[at] == expected[at]) at++;
                    cr_assert(at == bytes, "%s n=%d level %s: byte %zu of %zu differs (%d, portable %d)",
                              kind == ACT_Q8_32 ? "q8_32" : "q8_256", n, kernel_level_name((kernel_level)level), at,
                              bytes, at < bytes ? got[at] : 0, at < bytes ? expected[at] : 0);
                }
                free(expected);
                free(got);
                free(x);
            }
}

/* ---- batch and thread invariance ------------------------------------------------------------------ */

Test(kernels, a_row_gets_the_same_bits_alone_or_in_a_batch_and_with_any_thread_count) {
    rng_state = 3;
    enum { ROWS = 37, OUT = 200 };
    for (size_t t = 0; t < N_TYPES; t++) {
        const ggml_type type = TYPES[t];
        const int n = row_length(type, 2);
        size_t row_bytes;
        void *data = random_rows(type, OUT, n, &row_bytes);
        weight_matrix w = {type, OUT, n, row_bytes, data};
        float *x = random_activations(ROWS, n);
        float *batch = malloc(sizeof(float) * ROWS * OUT), *alone = malloc(sizeof(float) * OUT);
        act_buffer a;
        cr_assert_eq(act_buffer_init(&a, ROWS, n, NULL), 0);
        omp_set_num_threads(2);
        act_buffer_set(&a, x, ROWS, n);
        matmul_weights(batch, &a, &w);
        for (int r = 0; r < ROWS; r++) {
            act_buffer_set(&a, x + (size_t)r * n, 1, n);
            matmul_weights(alone, &a, &w);
            cr_assert(memcmp(alone, batch + (size_t)r * OUT, sizeof(float) * OUT) == 0,
                      "%s: row %d alone differs from the same row in a batch of %d", ggml_type_name(type), r, ROWS);
        }
        /* a sub-batch starting elsewhere */
        act_buffer_set(&a, x + 5 * (size_t)n, 7, n);
        float sub[7 * OUT];
        matmul_weights(sub, &a, &w);
        cr_assert(memcmp(sub, batch + 5 * OUT, sizeof sub) == 0, "%s: rows 5..11 as a batch of 7 differ",
                  ggml_type_name(type));
        for (int threads = 1; threads <= 3; threads++) {
            omp_set_num_threads(threads);
            float *again = malloc(sizeof(float) * ROWS * OUT);
            act_buffer_set(&a, x, ROWS, n);
            matmul_weights(again, &a, &w);
            cr_assert(memcmp(again, batch, sizeof(float) * ROWS * OUT) == 0, "%s: %d threads differ from 2",
                      ggml_type_name(type), threads);
            free(again);
        }
        omp_set_num_threads(omp_get_num_procs());
        act_buffer_free(&a);
        free(batch);
        free(alone);
        free(x);
        free(data);
    }
}

/* ---- activation conversion ----------------------------------------------------------------------- */

Test(kernels, activation_blocks_hold_scale_quants_and_sums) {
    enum { N = 512 };
    float x[N];
    rng_state = 4;
    for (int i = 0; i < N; i++) x[i] = uniform() * (i < 32 ? 0.0f : i < 64 ? 1e-38f : 3.0f);
    x[100] = -7.0f; /* the block's largest magnitude, negative */
    unsigned char *row = aligned_alloc(64, act_row_bytes(ACT_Q8_32, N));
    act_quantize(ACT_Q8_32, x, N, row);
    const int8_t *q = (const int8_t *)row;
    const float *d = (const float *)(row + 32 * 16);
#define Q(i) q[act_q8_32_index((i) / 32, (i) % 32)]
    cr_assert_eq(d[0], 0.0f, "an all-zero block has scale 0");
    for (int i = 0; i < 32; i++) cr_assert_eq(Q(i), 0);
    cr_assert_float_eq(d[3], 7.0f / 127.0f, 1e-9);
    cr_assert_eq(Q(100), -127);
    for (int i = 64; i < N; i++) {
        int b = i / 32;
        cr_assert(fabsf(Q(i) * d[b] - x[i]) <= d[b] / 2 * 1.0001f + 1e-30f, "element %d: %d * %g vs %g", i, Q(i),
                  d[b], x[i]);
    }
    /* A block of subnormal values still quantizes (in double), to within half a step. */
    cr_assert_gt(d[1], 0.0f);
    for (int i = 32; i < 64; i++) cr_assert(fabs(Q(i) * (double)d[1] - x[i]) <= d[1] * 0.5001 + 1e-45);
#undef Q
    free(row);
}

/* ---- bounds -------------------------------------------------------------------------------------- */

/* size bytes ending (at_end) or starting at a page boundary, next to an inaccessible page. */
typedef struct {
    unsigned char *region, *data;
    size_t length;
} guarded;

static guarded guarded_alloc(size_t size, bool at_end) {
    const size_t page = (size_t)sysconf(_SC_PAGESIZE), span = (size + page - 1) / page * page;
    guarded g;
    g.length = span + 2 * page;
    g.region = mmap(NULL, g.length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    cr_assert_neq(g.region, MAP_FAILED);
    cr_assert_eq(mprotect(g.region, page, PROT_NONE), 0);
    cr_assert_eq(mprotect(g.region + page + span, page, PROT_NONE), 0);
    g.data = at_end ? g.region + page + span - size : g.region + page;
    return g;
}

static void guarded_free(guarded g) { munmap(g.region, g.length); }

static void check_bounds(ggml_type type, int n, bool weights_at_end) {
    enum { W = KERNEL_MAX_W, A = KERNEL_MAX_A };
    size_t row_bytes;
    void *w = random_rows(type, W, n, &row_bytes);
    guarded gw = guarded_alloc(row_bytes * W, weights_at_end);
    memcpy(gw.data, w, row_bytes * W);
    float *x = random_activations(A, n);
    act_kind kind = act_kind_of(type);
    size_t stride = act_row_bytes(kind, n);
    guarded ga = guarded_alloc(stride * A, true);
    for (int r = 0; r < A; r++) act_quantize(kind, x + (size_t)r * n, n, ga.data + r * stride);
    float expected[A][W], got[A][W];
    kernel_dot_at(KERNELS_PORTABLE, type, n, gw.data, row_bytes, W, ga.data, stride, A, &expected[0][0], W);
    for (int level = KERNELS_AVX2; level < KERNEL_LEVELS; level++) {
        if (!kernel_level_available((kernel_level)level)) continue;
        /* the last weight row alone and the last activation row alone touch the guard pages */
        for (int nw = 1; nw <= W; nw++)
            for (int na = 1; na <= A; na++) {
                cr_assert(kernel_dot_at((kernel_level)level, type, n, gw.data + (W - nw) * row_bytes, row_bytes, nw,
                                        ga.data + (A - na) * stride, stride, na, &got[0][0], W));
                for (int r = 0; r < na; r++)
                    for (int f = 0; f < nw; f++)
                        cr_assert(memcmp(&got[r][f], &expected[A - na + r][W - nw + f], sizeof(float)) == 0,
                                  "%s n=%d level %s", ggml_type_name(type), n, kernel_level_name((kernel_level)level));
            }
    }
    guarded_free(gw);
    guarded_free(ga);
    free(w);
    free(x);
}

Test(kernels, no_kernel_reads_outside_its_rows) {
    rng_state = 5;
    for (size_t t = 0; t < N_TYPES; t++)
        for (int which = 0; which < 6; which++) {
            check_bounds(TYPES[t], row_length(TYPES[t], which), true);
            check_bounds(TYPES[t], row_length(TYPES[t], which), false);
        }
}
