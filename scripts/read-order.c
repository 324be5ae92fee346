/* read-order.c: how fast this machine's memory delivers the same bytes read in different orders,
 * for the decode roofline (bench-quant.sh, kernel-bandwidth.c). No arithmetic: every pattern only
 * loads and adds, so a difference between two patterns is the memory's, not a kernel's.
 *
 *   cc -O2 -march=native -fopenmp scripts/read-order.c -o read-order
 *   ./read-order MIB PATTERN...
 *
 * Patterns (2 threads, each its contiguous half of a MIB-mebibyte buffer, as decode's tasks are cut):
 *   linear              one pass, 64-byte loads
 *   linear-prefetch:D   the same with a prefetch (to L2) D bytes ahead of every load
 *   paced:K             the same with K dependent register operations after every load (a kernel's
 *                       arithmetic between its loads, without its order); paced:0 differs from
 *                       linear only in its loop's code
 *   copy                memcpy of the thread's half into a second buffer, counted as STREAM's Copy
 *                       counts it (bytes read + bytes written): the roofline bench-quant.sh names;
 *                       when present, every pattern is also given as a share of it
 *   streams:S:C         the thread's half cut into S parts, read C bytes from each part in turn
 *   tile-columns:N:R:G[:A]  tiles of N rows of R bytes, read G bytes of every row at a time, and
 *                       those 16 bytes by 16 bytes across the N rows (the one-row kernels'
 *                       transposes: R 432, G 144 is 768-value Q4_0; R 816, G 272 is Q8_0), the
 *                       tile A tiles ahead prefetched a slice per group (A by default: at least
 *                       12 KB ahead, as the kernels' TILE_AHEAD_MIN; 0: no prefetch)
 *   tile-rows:N:R:G:K   the same groups, each row's G bytes read in one run, and K tiles (from K
 *                       parts of the thread's half) visited group by group in turn
 *   PATTERN@4k          any of these over the same bytes in 4 KiB pages (the others read a buffer
 *                       in 2 MiB pages where the kernel gives them, as ramp maps its weights)
 * Rounds alternate the patterns (the bandwidth here swings by 2x from one minute to the next); each
 * pattern's line gives its median GB/s (min..max) and its median ratio to the first pattern within
 * the same round. Use MIB >= 256: smaller buffers are served partly from the 32 MiB L3.
 *
 * Measured on this machine (AMD EPYC, Zen 4, 2 cores; 512 MiB, 10 rounds), as a share of linear:
 *                              fast minutes (linear 41-46 GB/s)   slow minutes (linear 35 GB/s)
 *   tile-columns:16:432:144    0.74                               0.84
 *   tile-columns:8:432:144     0.96-0.99                          0.94-0.96
 *   tile-columns:16:816:272    0.69-0.70                          0.79-0.82
 *   tile-columns:8:816:272     0.89-0.91                          0.90-0.91
 *   tile-columns:16:2304:144   0.95-0.96                          0.92-0.94
 * which is why the Q4_0 and Q8_0 one-row kernels take eight rows at a time (kernels_avx512.c).
 * Prefetching further ahead does not close the sixteen-row gap (tile-columns:16:816:272:A, A = 1,
 * 2, 3: 0.78-0.88 alike; A = 0, no prefetch: 0.51-0.54).
 *
 * Against copy (the decode roofline's measure), 512 MiB (one 1024), 10 rounds, twelve runs in one
 * hour; each figure is one run's median over its rounds:
 *   linear                     0.70-0.97 of copy (0.70-0.86 in nine of the twelve runs)
 *   linear-prefetch:4096       x0.99-1.02 of linear (a software prefetch adds nothing to a plain read)
 *   streams:4:1024             x1.05-1.42 of linear, 0.79-1.17 of copy
 *   streams:8:1024             x1.04-1.23 of linear
 *   paced:4                    x1.08-1.13 of linear, 0.84 of copy (two runs, 10 rounds each; paced:0
 *                              x1.03-1.04, paced:8 x0.88-0.95: there the rotations bind)
 * so a plain read stays under 0.8 of the copy figure in most minutes, a loop that does some work
 * between its loads reads faster than one that only loads (the one-row kernels' arithmetic alone
 * runs at 1.7-2x the memory's pace, as paced:4's does), and a few concurrent streams
 * per thread are the fastest way found to read here (the hardware prefetcher following each). */
#define _GNU_SOURCE
#include <immintrin.h>
#include <omp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

enum { THREADS = 2, ROUNDS = 10, MAX_PATTERNS = 16, TILE_AHEAD_MIN = 12288 };

typedef enum { LINEAR, LINEAR_PREFETCH, PACED, STREAMS, TILE_COLUMNS, TILE_ROWS_ORDER, COPY } order;

typedef struct {
    const char *text;
    bool small_pages; /* read from a buffer in 4 KiB pages (the pattern's name ends in @4k) */
    order kind;
    size_t a, b, c; /* LINEAR_PREFETCH: D; PACED: K; STREAMS: S, C; TILE_*: R, G, (K) */
    size_t rows;    /* TILE_*: N */
    long ahead;     /* TILE_COLUMNS: tiles prefetched ahead, -1 for the kernels' rule */
} pattern;

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static __m512i add16(__m512i sum, const unsigned char *p) {
    return _mm512_add_epi64(sum, _mm512_zextsi128_si512(_mm_loadu_si128((const __m128i *)p)));
}

/* n bytes from p in one pass, each load with a prefetch `ahead` bytes further (0: none) */
static __m512i read_linear(const unsigned char *p, size_t n, size_t ahead, __m512i sum) {
    for (size_t i = 0; i + 64 <= n; i += 64) {
        if (ahead) _mm_prefetch((const char *)p + i + ahead, _MM_HINT_T1);
        sum = _mm512_add_epi64(sum, _mm512_loadu_si512(p + i));
    }
    return sum;
}

/* n bytes from p in one pass, `work` dependent rotations of a register after each 64-byte load */
static __m512i read_paced(const unsigned char *p, size_t n, size_t work, __m512i sum) {
    __m512i busy = _mm512_set1_epi64(1);
    for (size_t i = 0; i + 64 <= n; i += 64) {
        sum = _mm512_add_epi64(sum, _mm512_loadu_si512(p + i));
        for (size_t k = 0; k < work; k++) {
            busy = _mm512_ror_epi64(busy, 3);
            __asm__ volatile("" : "+v"(busy)); /* keeps each rotation: GCC would fold them into one */
        }
    }
    return _mm512_add_epi64(sum, busy);
}

static __m512i read_streams(const unsigned char *p, size_t n, size_t parts, size_t visit, __m512i sum) {
    const size_t part = n / parts / visit * visit;
    for (size_t at = 0; at < part; at += visit)
        for (size_t s = 0; s < parts; s++) sum = read_linear(p + s * part + at, visit, 0, sum);
    return sum;
}

/* Prefetch slice `step` of `steps` of the tile `ahead` tiles after the one at tile (the kernels'
 * prefetch_rows_ahead). Always inlined: GCC counts a function that only prefetches as free of side
 * effects and drops its calls (at -O1 and above this pattern then ran with no prefetch at all). */
static inline __attribute__((always_inline)) void prefetch_slice(const unsigned char *tile, size_t tile_bytes,
                                                                 size_t ahead, size_t step, size_t steps) {
    const unsigned char *next = tile + tile_bytes * ahead;
    const size_t from = tile_bytes * step / steps, to = tile_bytes * (step + 1) / steps;
    for (size_t at = from & ~(size_t)63; at < to; at += 64) _mm_prefetch((const char *)next + at, _MM_HINT_T1);
}

/* One group (G bytes of each of the tile's rows at byte `at`): across the rows 16 bytes at a time,
 * or (by_rows) each row's G bytes in one run. */
static __m512i read_group(const unsigned char *t, size_t rows, size_t row, size_t group, size_t at, bool by_rows,
                          __m512i sum) {
    if (by_rows) {
        for (size_t r = 0; r < rows; r++)
            for (size_t c = 0; c < group; c += 16) sum = add16(sum, t + r * row + at + c);
    } else {
        for (size_t c = 0; c < group; c += 16)
            for (size_t r = 0; r < rows; r++) sum = add16(sum, t + r * row + at + c);
    }
    return sum;
}

static __m512i read_tiles(const unsigned char *p, size_t n, size_t rows, size_t row, size_t group,
                          size_t interleave, bool by_rows, long ahead_tiles, __m512i sum) {
    const size_t tile = rows * row, groups = row / group;
    const size_t ahead = ahead_tiles >= 0 ? (size_t)ahead_tiles
                         : by_rows ? 1 : (tile >= TILE_AHEAD_MIN ? 1 : (TILE_AHEAD_MIN + tile - 1) / tile);
    const size_t per_part = n / interleave / tile; /* tiles in each of the interleaved parts */
    for (size_t i = 0; i < per_part; i++)
        for (size_t g = 0; g < groups; g++)
            for (size_t k = 0; k < interleave; k++) {
                const unsigned char *t = p + (k * per_part + i) * tile;
                if (ahead) prefetch_slice(t, tile, ahead, g, groups);
                sum = read_group(t, rows, row, group, g * group, by_rows, sum);
            }
    return sum;
}

static double pass(const pattern *pt, const unsigned char *huge, const unsigned char *small, unsigned char *copy,
                   size_t bytes, uint64_t *checksum) {
    const unsigned char *buffer = pt->small_pages ? small : huge;
    const double t0 = now();
    uint64_t total = 0;
#pragma omp parallel num_threads(THREADS) reduction(+ : total)
    {
        const size_t half = bytes / THREADS;
        const unsigned char *p = buffer + half * (size_t)omp_get_thread_num();
        __m512i sum = _mm512_setzero_si512();
        switch (pt->kind) {
        case LINEAR: sum = read_linear(p, half, 0, sum); break;
        case LINEAR_PREFETCH: sum = read_linear(p, half, pt->a, sum); break;
        case PACED: sum = read_paced(p, half, pt->a, sum); break;
        case COPY: memcpy(copy + (p - buffer), p, half); break;
        case STREAMS: sum = read_streams(p, half, pt->a, pt->b, sum); break;
        case TILE_COLUMNS: sum = read_tiles(p, half, pt->rows, pt->a, pt->b, 1, false, pt->ahead, sum); break;
        case TILE_ROWS_ORDER: sum = read_tiles(p, half, pt->rows, pt->a, pt->b, pt->c, true, -1, sum); break;
        }
        total += (uint64_t)_mm512_reduce_add_epi64(sum);
    }
    *checksum += total;
    return (pt->kind == COPY ? 2.0 : 1.0) * (double)bytes / (now() - t0) / 1e9;
}

static int parse(const char *name, pattern *pt) {
    *pt = (pattern){.text = name, .ahead = -1};
    char text[64];
    size_t length = strlen(name);
    if (length >= sizeof text) length = 0; /* no pattern is that long: the message below */
    memcpy(text, name, length);
    text[length] = '\0';
    if (length > 3 && strcmp(text + length - 3, "@4k") == 0) {
        pt->small_pages = true;
        text[length - 3] = '\0';
    }
    if (strcmp(text, "linear") == 0) return 0;
    if (strcmp(text, "copy") == 0) {
        pt->kind = COPY;
        return 0;
    }
    if (sscanf(text, "linear-prefetch:%zu", &pt->a) == 1 && pt->a <= 512 * 1024) {
        pt->kind = LINEAR_PREFETCH;
        return 0;
    }
    if (sscanf(text, "paced:%zu", &pt->a) == 1 && pt->a <= 64) {
        pt->kind = PACED;
        return 0;
    }
    if (sscanf(text, "streams:%zu:%zu", &pt->a, &pt->b) == 2 && pt->a > 0 && pt->b >= 64 && pt->b % 64 == 0) {
        pt->kind = STREAMS;
        return 0;
    }
    const int fields = sscanf(text, "tile-columns:%zu:%zu:%zu:%ld", &pt->rows, &pt->a, &pt->b, &pt->ahead);
    if (fields >= 3 && pt->rows > 0 && pt->b >= 16 && pt->b % 16 == 0 && pt->a % pt->b == 0 &&
        (fields == 3 || pt->ahead >= 0)) {
        pt->kind = TILE_COLUMNS;
        return 0;
    }
    if (sscanf(text, "tile-rows:%zu:%zu:%zu:%zu", &pt->rows, &pt->a, &pt->b, &pt->c) == 4 && pt->rows > 0 &&
        pt->b >= 16 && pt->b % 16 == 0 && pt->a % pt->b == 0 && pt->c > 0) {
        pt->kind = TILE_ROWS_ORDER;
        return 0;
    }
    fprintf(stderr, "read-order: %s: expected linear, linear-prefetch:D (D <= 524288), paced:K (K <= 64), copy, streams:S:C (C a multiple of 64), tile-columns:N:R:G[:A] or "
                    "tile-rows:N:R:G:K (G a multiple of 16 dividing R), each optionally followed by @4k\n", name);
    return -1;
}

static int by_value(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    const size_t mib = argc > 1 ? (size_t)atol(argv[1]) : 0;
    const int n = argc - 2;
    if (mib < 64 || n < 1 || n > MAX_PATTERNS) {
        fprintf(stderr, "usage: read-order MIB PATTERN... (MIB >= 64, at most %d patterns)\n", MAX_PATTERNS);
        return 2;
    }
    pattern patterns[MAX_PATTERNS];
    int copy_at = -1; /* the copy pattern's index, if one was asked for */
    bool any_small = false;
    for (int i = 0; i < n; i++) {
        if (parse(argv[2 + i], &patterns[i])) return 2;
        if (patterns[i].kind == COPY) copy_at = i;
        any_small |= patterns[i].small_pages;
    }
    const size_t bytes = mib << 20, slack = 1u << 20; /* prefetches run past the end */
    /* in 2 MiB pages where the kernel gives them, as ramp's weights (model/weight_pages.h) */
    unsigned char *buffer = aligned_alloc(2u << 20, bytes + (2u << 20));
    unsigned char *copy = copy_at >= 0 ? aligned_alloc(2u << 20, bytes) : NULL;
    if (buffer) (void)madvise(buffer, bytes + (2u << 20), MADV_HUGEPAGE);
    if (copy) (void)madvise(copy, bytes, MADV_HUGEPAGE);
    /* the same bytes in 4 KiB pages, for the patterns named with @4k */
    unsigned char *small = any_small ? aligned_alloc(2u << 20, bytes + (2u << 20)) : NULL;
    if (small) (void)madvise(small, bytes + (2u << 20), MADV_NOHUGEPAGE);
    if (!buffer || (copy_at >= 0 && !copy) || (any_small && !small)) {
        fprintf(stderr, "read-order: cannot allocate %zu MiB\n", mib);
        return 1;
    }
#pragma omp parallel for num_threads(THREADS) schedule(static)
    for (size_t i = 0; i < bytes + slack; i += 4096) { /* each half's pages touched by its reader */
        memset(buffer + i, (int)(i >> 12), 4096);
        if (small) memset(small + i, (int)(i >> 12), 4096);
        if (copy && i < bytes) memset(copy + i, 0, 4096);
    }
    double gbs[MAX_PATTERNS][ROUNDS], ratio[MAX_PATTERNS][ROUNDS], of_copy[MAX_PATTERNS][ROUNDS];
    uint64_t checksum = 0;
    for (int round = 0; round < ROUNDS; round++)
        for (int i = 0; i < n; i++) gbs[i][round] = pass(&patterns[i], buffer, small, copy, bytes, &checksum);
    printf("%zu MiB, %d threads, %d rounds\n", mib, THREADS, ROUNDS);
    for (int i = 0; i < n; i++)
        for (int round = 0; round < ROUNDS; round++) {
            ratio[i][round] = gbs[i][round] / gbs[0][round];
            if (copy_at >= 0) of_copy[i][round] = gbs[i][round] / gbs[copy_at][round];
        }
    for (int i = 0; i < n; i++) {
        qsort(gbs[i], ROUNDS, sizeof(double), by_value);
        qsort(ratio[i], ROUNDS, sizeof(double), by_value);
        printf("  %-24s %5.1f GB/s (%5.1f..%5.1f)   x%.2f (%.2f..%.2f) of %s", patterns[i].text, gbs[i][ROUNDS / 2],
               gbs[i][0], gbs[i][ROUNDS - 1], ratio[i][ROUNDS / 2], ratio[i][0], ratio[i][ROUNDS - 1], patterns[0].text);
        if (copy_at > 0 && i != copy_at) { /* (copy first: the ratios above are already to it) */
            qsort(of_copy[i], ROUNDS, sizeof(double), by_value);
            printf("   x%.2f (%.2f..%.2f) of copy", of_copy[i][ROUNDS / 2], of_copy[i][0], of_copy[i][ROUNDS - 1]);
        }
        printf("\n");
    }
    fprintf(stderr, "(checksum %llu)\n", (unsigned long long)checksum);
    free(small);
    free(copy);
    free(buffer);
    return 0;
}
