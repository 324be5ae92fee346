/* parallel.h: run the tasks of a matrix product (or of attention) on several threads, in a way
 * that holds up when other jobs keep some of the cores busy.
 *
 * parallel_run(n, fn, ctx) calls fn(ctx, task, worker) once for every task in [0, n), on the
 * calling thread plus up to parallel_threads() - 1 helper threads, and returns when all are done.
 * Each worker starts with a contiguous share of the tasks and takes them in order, so a thread walks
 * its rows of a weight matrix in memory order and the rows its kernels prefetch are its own next
 * ones. A worker whose share is done takes the back half of the largest share left: a helper that
 * the OS has not scheduled yet ends up with nothing to do, and the caller does not wait for it
 * (OpenMP's fork/join would). The caller only waits for helpers that are inside a task. When
 * helpers keep arriving late (the caller spends longer waiting for them than they save), the pool
 * runs the next products on the calling thread alone for a while, backing off exponentially, so a
 * busy node degrades to single-threaded speed instead of collapsing. Idle helpers spin briefly,
 * then sleep.
 *
 * worker is 0 for the calling thread and 1..parallel_threads()-1 for helpers: an index for
 * per-thread scratch. Results must not depend on which worker runs a task (ramp's tasks write
 * disjoint outputs with fixed arithmetic), so the thread count never changes a value.
 *
 * The thread count is process configuration: omp_set_num_threads (as the coordinator sets it) or
 * OMP_NUM_THREADS, read at each call. The helpers are process-wide and created on first use. When
 * two threads call parallel_run at once, the second runs its tasks alone.
 */
#ifndef RAMP_PARALLEL_H
#define RAMP_PARALLEL_H

#include <stddef.h>

typedef void (*parallel_fn)(void *ctx, int task, int worker);

void parallel_run(int n_tasks, parallel_fn fn, void *ctx);

/* The same with at most max_threads threads (worker < max_threads): for scratch sized earlier. */
void parallel_run_capped(int n_tasks, int max_threads, parallel_fn fn, void *ctx);

/* The most threads (caller included) a parallel_run may use now: the size of per-worker scratch. */
int parallel_threads(void);

/* The tasks [*from, *to) that worker `worker` of `workers` starts a job of n_tasks tasks with: how
 * parallel_run cuts them, for code that prepares a worker's part ahead (matmul_warm_up). */
void parallel_share(int n_tasks, int workers, int worker, int *from, int *to);

/* Helper `worker` (1 .. parallel_threads() - 1; a helper always has the same index) is to read
 * these byte ranges into its cache (L2) while it has nothing else to do: the weights of its share
 * of the product that comes next, fetched while the caller works alone between two products. It
 * replaces what that helper was given before, is given up whenever a job needs the helper (and
 * resumed after it). The helper reads those bytes, so they must stay mapped until
 * parallel_end_warm_ups; no value changes. A no-op when another thread owns the pool, or while the
 * pool sits out (helpers arriving late). */
typedef struct {
    const void *start;
    size_t bytes;
} parallel_range;
enum { PARALLEL_WARM_RANGES = 8 };
void parallel_warm_up(int worker, const parallel_range *ranges, int n_ranges);
/* Ends every helper's warm-up and returns once none reads its ranges any more: call it before the
 * memory they point into is unmapped or freed. */
void parallel_end_warm_ups(void);

#endif
