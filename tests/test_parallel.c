/* test_parallel.c: the task pool (parallel.h) runs every task exactly once, on worker indices
 * below the thread count; a worker takes its tasks in runs of consecutive ones (so a thread walks
 * a weight matrix in memory order); a helper stuck in a task does not keep the others from
 * finishing the rest; and an idle helper reads the ranges it is given to warm its cache, and has
 * stopped reading them when parallel_end_warm_ups returns. */
#include <criterion/criterion.h>

#include <omp.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "parallel.h"

enum { MAX_TASKS = 20000, MAX_WORKERS = 8 };

typedef struct {
    atomic_int runs_of[MAX_TASKS];      /* how often each task ran */
    int order[MAX_WORKERS][MAX_TASKS];  /* tasks in the order each worker ran them */
    int done_by[MAX_WORKERS];           /* tasks each worker ran */
    atomic_int bad_worker;              /* a worker index at or above the thread count */
    int threads;
    int stall_worker, stall_ms;         /* this worker's first task sleeps (stall_ms 0: none) ... */
    int task_us;                        /* ... and every other task takes this long */
} record;

static void sleep_ms(int ms) {
    struct timespec t = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&t, NULL);
}

static void note_task(void *ctx, int task, int worker) {
    record *r = ctx;
    if (worker < 0 || worker >= r->threads || worker >= MAX_WORKERS) {
        atomic_store(&r->bad_worker, 1);
        return;
    }
    if (r->stall_ms && worker == r->stall_worker && r->done_by[worker] == 0) sleep_ms(r->stall_ms);
    else if (r->task_us) {
        struct timespec start, now;
        clock_gettime(CLOCK_MONOTONIC, &start);
        do clock_gettime(CLOCK_MONOTONIC, &now);
        while ((now.tv_sec - start.tv_sec) * 1000000L + (now.tv_nsec - start.tv_nsec) / 1000 < r->task_us);
    }
    atomic_fetch_add(&r->runs_of[task], 1);
    r->order[worker][r->done_by[worker]++] = task; /* only this worker writes its own row */
}

static record *run_recorded(int n_tasks, int threads, int stall_worker, int stall_ms, int task_us) {
    record *r = calloc(1, sizeof *r);
    cr_assert_not_null(r);
    r->threads = threads;
    r->stall_worker = stall_worker;
    r->stall_ms = stall_ms;
    r->task_us = task_us;
    omp_set_num_threads(threads);
    parallel_run(n_tasks, note_task, r);
    return r;
}

/* Maximal runs of consecutive ascending tasks in each worker's order, summed over the workers. */
static int runs_of_consecutive_tasks(const record *r) {
    int runs = 0;
    for (int w = 0; w < MAX_WORKERS; w++)
        for (int i = 0; i < r->done_by[w]; i++) runs += i == 0 || r->order[w][i] != r->order[w][i - 1] + 1;
    return runs;
}

Test(parallel, every_task_runs_exactly_once_on_a_valid_worker) {
    const int sizes[] = {0, 1, 2, 3, 7, 64, 1000, MAX_TASKS};
    for (int threads = 1; threads <= MAX_WORKERS; threads++)
        for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
            record *r = run_recorded(sizes[s], threads, 0, 0, 0);
            cr_expect_eq(atomic_load(&r->bad_worker), 0, "%d threads: a worker index out of range", threads);
            int total = 0;
            for (int w = 0; w < MAX_WORKERS; w++) total += r->done_by[w];
            cr_expect_eq(total, sizes[s], "%d threads, %d tasks: %d ran", threads, sizes[s], total);
            for (int t = 0; t < sizes[s]; t++)
                cr_expect_eq(atomic_load(&r->runs_of[t]), 1, "%d threads, %d tasks: task %d ran %d times", threads,
                             sizes[s], t, atomic_load(&r->runs_of[t]));
            free(r);
        }
}

/* With a shared counter, two threads would each see about n / 2 runs; with contiguous shares, a
 * run starts only at a worker's first task and at each half it takes from another share. Each
 * take halves the largest share, so there are at most about threads x log2(n) of them (15 for
 * n = 20000): the bound leaves twice that, and is still far below n / 2. */
Test(parallel, a_worker_takes_consecutive_tasks) {
    for (int threads = 1; threads <= 4; threads++) {
        record *r = run_recorded(MAX_TASKS, threads, 0, 0, 0);
        const int runs = runs_of_consecutive_tasks(r), bound = threads * 2 * (1 + 15); /* 2^15 > MAX_TASKS */
        cr_expect_leq(runs, bound, "%d threads: %d runs of consecutive tasks, expected at most %d", threads, runs,
                      bound);
        free(r);
    }
    record *r = run_recorded(1000, 1, 0, 0, 0);
    for (int t = 0; t < 1000; t++) cr_expect_eq(r->order[0][t], t, "one thread: task %d came %d-th", r->order[0][t], t);
    free(r);
}

/* A helper that sleeps in its first task (as one whose core another job holds) keeps only that
 * task: the caller takes the rest of its share meanwhile. The caller's tasks take 50 ms in all,
 * time enough for the helper to join. */
Test(parallel, a_stalled_helper_keeps_at_most_the_task_it_is_in) {
    free(run_recorded(200, 2, 0, 0, 0)); /* the helper exists (a new one sits out the job in flight) */
    record *r = run_recorded(200, 2, 1, 300, 250);
    cr_expect_leq(r->done_by[1], 1, "the stalled helper ran %d tasks", r->done_by[1]);
    cr_expect_eq(r->done_by[0] + r->done_by[1], 200);
    free(r);
}

/* Untouched anonymous pages are not resident; the helper's reads map them in (mincore). */
static bool all_resident(const void *start, size_t bytes) {
    const size_t page = (size_t)sysconf(_SC_PAGESIZE), pages = (bytes + page - 1) / page;
    unsigned char *in = malloc(pages);
    cr_assert_not_null(in);
    cr_assert_eq(mincore((void *)start, bytes, in), 0);
    bool all = true;
    for (size_t i = 0; i < pages; i++) all = all && (in[i] & 1);
    free(in);
    return all;
}

Test(parallel, an_idle_helper_reads_the_ranges_it_is_given) {
    free(run_recorded(200, 2, 0, 0, 0)); /* the helper exists */
    const size_t bytes = 256 * 1024;
    char *memory = mmap(NULL, 2 * bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    cr_assert_neq(memory, MAP_FAILED);
    cr_assert(!all_resident(memory, bytes));
    /* two ranges, the second ending inside a page */
    const parallel_range ranges[] = {{memory, bytes / 2}, {memory + bytes / 2, bytes / 2 - 100}};
    bool read = false;
    for (int waited = 0; waited < 5000 && !read; waited += 10) {
        /* posted again each time: a pool that sits out (a loaded machine made the helper late) takes none */
        parallel_warm_up(1, ranges, 2);
        sleep_ms(10);
        read = all_resident(memory, bytes);
    }
    cr_expect(read, "the helper did not read the 256 KB it was given in 5 s");
    cr_expect(!all_resident(memory + bytes, bytes), "the helper read past its ranges");
    parallel_end_warm_ups();
    munmap(memory, 2 * bytes);
}

/* Memory given to a helper is unmapped right after parallel_end_warm_ups, over and over, while the
 * helper reads it and jobs interrupt it: a helper still reading would fault and end the test. */
Test(parallel, no_helper_reads_after_the_warm_ups_end) {
    free(run_recorded(200, 2, 0, 0, 0));
    for (int round = 0; round < 3000; round++) {
        const size_t bytes = 8u << 20; /* more than a helper reads before the end comes */
        char *memory = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        cr_assert_neq(memory, MAP_FAILED);
        const parallel_range range = {memory, bytes};
        parallel_warm_up(1, &range, 1);
        if (round % 2) free(run_recorded(50, 2, 0, 0, 0)); /* a job interrupts the reading */
        struct timespec pause = {0, (round % 5) * 40000L}; /* the end comes 0 to 160 us in */
        nanosleep(&pause, NULL);
        parallel_end_warm_ups();
        munmap(memory, bytes);
    }
}

