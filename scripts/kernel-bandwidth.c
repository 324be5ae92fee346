/* kernel-bandwidth.c: how fast ramp's one-row (decode) kernels take in weight bytes, for
 * bench-quant.sh's decode roofline. Decode reads every weight once per token, so its speed is the
 * slower of two ceilings, and this tool measures both per weight type and row length:
 *
 *   in L2        the kernel over a matrix small enough to stay in each core's L2 (half of it per
 *                thread), many passes: what the arithmetic alone allows.
 *   from memory  the kernel over a matrix far larger than any cache, each pass followed by a plain
 *                read loop over the same bytes (AVX-512 loads, prefetch 4 KB ahead): what the
 *                memory gives in those same seconds. This machine's bandwidth swings by 2x from
 *                one minute to the next, so only pairs measured back to back are compared.
 *
 *   cc -O2 -march=native -fopenmp -Imodel scripts/kernel-bandwidth.c build/release/libramp.a -lm \
 *       -o kernel-bandwidth && ./kernel-bandwidth [--copy GBS] THREADS [MIB] [TYPE:N ...]
 *
 * With --copy (a copy bandwidth measured on this machine, GB/s, bytes read + written as STREAM
 * counts them), each line also gives the L2 figure as a share of it: a decode can only reach a
 * share of the copy bandwidth that its kernels' arithmetic allows.
 * Threads split the rows in contiguous halves (thirds, ...) and walk them sixteen rows at a time
 * with kernel_dot, as a decode's tasks do. Weights are random bytes with finite scales (speed does
 * not depend on the values). Figures are GB/s (1e9 bytes/s) of weight bytes; "from memory" and
 * "read" are medians over the pairs, "kernel/read" the median of the pairs' ratios. */
#include <immintrin.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <time.h>

#include "clock.h"
#include "gguf.h"
#include "kernels.h"
#include "quant.h"

enum { PAIRS = 7, L2_BYTES_PER_THREAD = 512 * 1024, L2_PASSES = 400 };

/* Byte offsets of the fp16 scale fields in one block (quant.h's layouts), -1 ended. */
static const int *scale_fields(ggml_type type) {
    static const int first[] = {0, -1}, first_two[] = {0, 2, -1}, q2k[] = {80, 82, -1}, q3k[] = {108, -1},
                     q6k[] = {208, -1}, none[] = {-1};
    switch (type) {
    case GGML_TYPE_Q4_0: case GGML_TYPE_Q5_0: case GGML_TYPE_Q8_0: case GGML_TYPE_IQ4_NL: case GGML_TYPE_IQ4_XS:
        return first;
    case GGML_TYPE_Q4_1: case GGML_TYPE_Q5_1: case GGML_TYPE_Q4_K: case GGML_TYPE_Q5_K: return first_two;
    case GGML_TYPE_Q2_K: return q2k;
    case GGML_TYPE_Q3_K: return q3k;
    case GGML_TYPE_Q6_K: return q6k;
    default: return none;
    }
}

/* Random weights of `type` in [bytes): float types as values in [-1, 1), block types as random
 * bytes with every fp16 scale set to a small finite value. */
static void fill_weights(ggml_type type, unsigned char *w, size_t bytes, unsigned seed) {
    uint64_t state = 0x9e3779b97f4a7c15ull * (seed + 1);
    const size_t block = ggml_type_block_bytes(type);
    for (size_t i = 0; i < bytes; i++) {
        state = state * 6364136223846793005ull + 1442695040888963407ull;
        w[i] = (unsigned char)(state >> 56);
    }
    if (type == GGML_TYPE_F32)
        for (size_t i = 0; i + 4 <= bytes; i += 4) {
            float v = (float)w[i] / 128.0f - 1.0f;
            memcpy(w + i, &v, 4);
        }
    else if (type == GGML_TYPE_F16 || type == GGML_TYPE_BF16)
        for (size_t i = 0; i + 2 <= bytes; i += 2) {
            float v = (float)w[i] / 128.0f - 1.0f;
            uint32_t bits;
            memcpy(&bits, &v, 4);
            uint16_t h = type == GGML_TYPE_F16 ? fp32_to_fp16(v) : (uint16_t)(bits >> 16);
            memcpy(w + i, &h, 2);
        }
    else {
        const uint16_t scale = fp32_to_fp16(0.01f);
        for (size_t at = 0; at + block <= bytes; at += block)
            for (const int *f = scale_fields(type); *f >= 0; f++) memcpy(w + at + *f, &scale, 2);
    }
}

typedef struct {
    ggml_type type;
    int n, rows;
    size_t row_bytes;
    const unsigned char *w;
    const void *act;
    float *out;
} product;

/* One pass of out = W . x over every row, the threads taking contiguous shares; GB/s. */
static double kernel_pass(const product *p) {
    const double t0 = clock_seconds();
#pragma omp parallel
    {
        const int threads = omp_get_num_threads(), t = omp_get_thread_num();
        const int groups = (p->rows + 15) / 16, first = groups * t / threads * 16, end = groups * (t + 1) / threads * 16;
        for (int r = first; r < end && r < p->rows; r += 16) {
            const int nw = p->rows - r < 16 ? p->rows - r : 16;
            kernel_dot(p->type, p->n, p->w + (size_t)r * p->row_bytes, p->row_bytes, nw, p->act, 0, 1, p->out + r, 0);
        }
    }
    return (double)p->rows * (double)p->row_bytes / (clock_seconds() - t0) / 1e9;
}

/* One pass of a plain read loop over [w, w + bytes), the threads taking contiguous shares; GB/s. */
__attribute__((target("avx512f"))) static double read_pass(const unsigned char *w, size_t bytes, uint64_t *checksum) {
    const double t0 = clock_seconds();
    uint64_t total = 0;
#pragma omp parallel reduction(+ : total)
    {
        const size_t share = bytes / (size_t)omp_get_num_threads() / 128 * 128;
        const unsigned char *p = w + share * (size_t)omp_get_thread_num();
        __m512i a = _mm512_setzero_si512(), b = a;
        for (size_t i = 0; i < share; i += 128) {
            _mm_prefetch((const char *)p + i + 4096, _MM_HINT_T1);
            _mm_prefetch((const char *)p + i + 4096 + 64, _MM_HINT_T1);
            a = _mm512_add_epi64(a, _mm512_loadu_si512(p + i));
            b = _mm512_add_epi64(b, _mm512_loadu_si512(p + i + 64));
        }
        total += (uint64_t)_mm512_reduce_add_epi64(_mm512_add_epi64(a, b));
    }
    *checksum += total;
    return (double)bytes / (clock_seconds() - t0) / 1e9;
}

static int by_value(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, by_value);
    return v[n / 2];
}

/* A matrix of about `bytes` bytes (whole groups of 16 rows per thread) of type with rows of n. */
static int make_product(product *p, ggml_type type, int n, size_t bytes, int threads, const void *act) {
    const size_t row_bytes = quant_row_bytes(type, (size_t)n);
    int rows = (int)(bytes / row_bytes) / (16 * threads) * (16 * threads);
    if (rows < 16 * threads) rows = 16 * threads;
    const size_t total = (size_t)rows * row_bytes, aligned = (total + (2u << 20) - 1) / (2u << 20) * (2u << 20);
    unsigned char *w = aligned_alloc(2u << 20, aligned);
    float *out = malloc((size_t)rows * sizeof *out);
    if (!w || !out) {
        free(w);
        free(out);
        return -1;
    }
    (void)madvise(w, aligned, MADV_HUGEPAGE); /* as the file mapping's pages, which are 2 MiB when they can be */
    fill_weights(type, w, total, (unsigned)n);
    *p = (product){type, n, rows, row_bytes, w, act, out};
    return 0;
}

static void free_product(product *p) {
    free((void *)p->w);
    free(p->out);
}

static int measure(ggml_type type, int n, int threads, size_t memory_bytes, double copy_gbs, uint64_t *checksum) {
    if (!ggml_type_is_supported(type) || n % (int)ggml_type_block_elements(type) != 0) {
        fprintf(stderr, "kernel-bandwidth: ramp's kernels do not compute %s rows of %d values\n", ggml_type_name(type), n);
        return -1;
    }
    float *x = malloc((size_t)n * sizeof *x);
    const act_kind kind = act_kind_of(type);
    void *act = aligned_alloc(64, act_row_bytes(kind, n));
    product small, large;
    if (!x || !act || make_product(&small, type, n, (size_t)L2_BYTES_PER_THREAD * (size_t)threads, threads, act)) {
        fprintf(stderr, "kernel-bandwidth: out of memory for %s rows of %d values\n", ggml_type_name(type), n);
        free(act);
        free(x);
        return -1;
    }
    for (int i = 0; i < n; i++) x[i] = (float)((i * 7919) % 2001 - 1000) / 1000.0f;
    act_quantize(kind, x, n, act);

    (void)kernel_pass(&small); /* into the caches */
    double in_l2 = 0.0;
    for (int pass = 0; pass < L2_PASSES; pass++) {
        const double gbs = kernel_pass(&small);
        if (gbs > in_l2) in_l2 = gbs;
    }
    free_product(&small);

    if (make_product(&large, type, n, memory_bytes, threads, act)) {
        fprintf(stderr, "kernel-bandwidth: out of memory for %zu MiB of %s\n", memory_bytes >> 20, ggml_type_name(type));
        free(act);
        free(x);
        return -1;
    }
    double kernel[PAIRS], read[PAIRS], ratio[PAIRS];
    for (int pair = 0; pair < PAIRS; pair++) {
        kernel[pair] = kernel_pass(&large);
        read[pair] = read_pass(large.w, (size_t)large.rows * large.row_bytes, checksum);
        ratio[pair] = kernel[pair] / read[pair];
    }
    *checksum += (uint64_t)large.out[0];
    const double kernel_median = median(kernel, PAIRS), read_median = median(read, PAIRS);
    const double ratio_median = median(ratio, PAIRS); /* sorted now: [0] is the least, [PAIRS - 1] the most */
    printf("%-5s %6d  in L2 %5.1f GB/s", ggml_type_name(type), n, in_l2);
    if (copy_gbs > 0) printf(" (%.2f of copy)", in_l2 / copy_gbs);
    printf("   from memory %5.1f GB/s   read loop %5.1f GB/s   kernel/read %.2f (%.2f..%.2f)\n", kernel_median,
           read_median, ratio_median, ratio[0], ratio[PAIRS - 1]);
    free_product(&large);
    free(act);
    free(x);
    return 0;
}

static ggml_type type_named(const char *name) {
    for (int t = 0; t < 64; t++)
        if (strcasecmp(ggml_type_name((ggml_type)t), name) == 0) return (ggml_type)t;
    return (ggml_type)-1;
}

int main(int argc, char **argv) {
    double copy_gbs = 0.0;
    if (argc > 2 && strcmp(argv[1], "--copy") == 0) {
        copy_gbs = atof(argv[2]);
        argv += 2;
        argc -= 2;
    }
    const int threads = argc > 1 ? atoi(argv[1]) : 2;
    const size_t mib = argc > 2 ? (size_t)atol(argv[2]) : 512;
    if (threads < 1 || mib < 64) { /* MIB: well beyond the last-level cache (32 MiB here) */
        fprintf(stderr, "usage: kernel-bandwidth [--copy GBS] THREADS [MIB >= 64] [TYPE:N ...]\n");
        return 2;
    }
    omp_set_num_threads(threads);
    static const char *defaults[] = {"f32:768", "q8_0:768", "q4_0:768", "q4_K:768", "q6_K:768",
                                     "q4_0:4096", "q4_K:4096", "q6_K:4096", "q4_0:11008", "q4_K:11008"};
    const int n_default = (int)(sizeof defaults / sizeof defaults[0]);
    const int count = argc > 3 ? argc - 3 : n_default;
    printf("one-row kernels (%s), %d threads, %zu MiB from memory, %d pairs\n", kernel_level_name(kernels_level()), threads,
           mib, PAIRS);
    uint64_t checksum = 0;
    int status = 0;
    for (int i = 0; i < count; i++) {
        char name[32];
        snprintf(name, sizeof name, "%s", argc > 3 ? argv[3 + i] : defaults[i]);
        char *colon = strchr(name, ':');
        const int n = colon ? atoi(colon + 1) : 0;
        if (colon) *colon = '\0';
        const ggml_type type = type_named(name);
        if ((int)type < 0 || n <= 0) {
            fprintf(stderr, "kernel-bandwidth: %s: expected TYPE:N such as q4_K:4096\n", argc > 3 ? argv[3 + i] : defaults[i]);
            status = 2;
            continue;
        }
        if (measure(type, n, threads, mib << 20, copy_gbs, &checksum)) status = 1;
    }
    fprintf(stderr, "(checksum %llu)\n", (unsigned long long)checksum);
    return status;
}
