/* read-bandwidth.c: the machine's memory read (or copy) bandwidth with T threads, for
 * bench-quant.sh's decode roofline.
 *
 *   cc -O2 -fopenmp scripts/read-bandwidth.c -o read-bandwidth && ./read-bandwidth THREADS [MIB] [copy]
 *
 * Sums a buffer of MIB mebibytes (default 1024, far beyond any cache) with THREADS OpenMP threads,
 * each reading its own contiguous share, and prints the best of 7 passes in GB/s (1e9 bytes/s).
 * With "copy": memcpy of MIB mebibytes into a second buffer, each thread its own share, counted as
 * STREAM's Copy counts it (bytes read + bytes written). The buffers sit in 2 MiB pages where the
 * kernel gives them (MADV_HUGEPAGE), as ramp's weights do (model/weight_pages.h): through 4 KiB
 * pages the same passes run up to a third slower here, and the roofline is the machine's best. */
#define _GNU_SOURCE
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* bytes in 2 MiB pages when the kernel has them */
static void *huge_buffer(size_t bytes) {
    const size_t huge = 2u << 20;
    void *p = aligned_alloc(huge, (bytes + huge - 1) / huge * huge);
    if (p) (void)madvise(p, (bytes + huge - 1) / huge * huge, MADV_HUGEPAGE);
    return p;
}

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 1;
    size_t mib = argc > 2 ? (size_t)atol(argv[2]) : 1024;
    size_t n = mib * 1024 * 1024 / sizeof(uint64_t);
    uint64_t *buffer = huge_buffer(n * sizeof *buffer);
    if (!buffer || threads < 1) {
        fprintf(stderr, "read-bandwidth: cannot allocate %zu MiB or bad thread count\n", mib);
        return 1;
    }
    omp_set_num_threads(threads);
    if (argc > 3 && strcmp(argv[3], "copy") == 0) {
        uint64_t *copy = huge_buffer(n * sizeof *copy);
        if (!copy) {
            fprintf(stderr, "read-bandwidth: cannot allocate %zu MiB\n", mib);
            return 1;
        }
#pragma omp parallel for schedule(static)
        for (size_t i = 0; i < n; i++) buffer[i] = copy[i] = i;
        double best = 0.0;
        for (int pass = 0; pass < 7; pass++) {
            double t0 = now();
#pragma omp parallel
            {
                const size_t share = n / (size_t)omp_get_num_threads(), from = share * (size_t)omp_get_thread_num();
                const size_t count = omp_get_thread_num() == omp_get_num_threads() - 1 ? n - from : share;
                memcpy(copy + from, buffer + from, count * sizeof *buffer);
            }
            double gbs = 2.0 * (double)(n * sizeof *buffer) / (now() - t0) / 1e9;
            if (gbs > best) best = gbs;
        }
        printf("%.1f\n", best);
        fprintf(stderr, "(checksum %llu)\n", (unsigned long long)copy[n / 2]);
        free(copy);
        free(buffer);
        return 0;
    }
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) buffer[i] = i; /* pages touched by the thread that reads them */
    double best = 0.0;
    uint64_t total = 0;
    for (int pass = 0; pass < 7; pass++) {
        double t0 = now();
        uint64_t sum = 0;
#pragma omp parallel for schedule(static) reduction(+ : sum)
        for (size_t i = 0; i < n; i++) sum += buffer[i];
        double seconds = now() - t0;
        total += sum;
        double gbs = (double)(n * sizeof *buffer) / seconds / 1e9;
        if (gbs > best) best = gbs;
    }
    printf("%.1f\n", best);
    fprintf(stderr, "(checksum %llu)\n", (unsigned long long)total);
    free(buffer);
    return 0;
}
