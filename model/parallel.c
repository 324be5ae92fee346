/* parallel.c: the task pool of parallel.h.
 *
 * Protocol. A caller publishes a job (on its own stack) through pool.job and works on it like any
 * helper; when the job's counter runs out it withdraws the job (pool.job = NULL) and waits until
 * pool.inside is 0. A helper increments pool.inside before it looks at pool.job and decrements it
 * when it is done with the job it saw, so once the caller has withdrawn the job and seen inside
 * == 0, no helper holds a pointer to it. All atomics are sequentially consistent: simple to reason
 * about, and their cost is nothing next to a task.
 */
#include "parallel.h"

#include <omp.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

enum {
    MAX_THREADS = 256,
    SPIN_NS = 200000, /* an idle helper polls this long before it sleeps */
};
/* Late helpers: after a job where the caller waited longer than LATE_FACTOR times the time it
 * worked, helpers sit out for `backoff` (doubling from BACKOFF_MIN to BACKOFF_MAX). */
#define LATE_FACTOR 0.5
#define BACKOFF_MIN_NS 2000000LL
#define BACKOFF_MAX_NS 500000000LL
/* Only a wait a woken helper cannot explain counts as late: waking a sleeping helper takes tens of
 * microseconds, while a helper whose core another job holds is descheduled for a time slice
 * (milliseconds). With a floor of 20 us, wake-ups alone set off the back-off on an idle node, and
 * sitting out let the helpers fall asleep, so the next job was late again (measured: 192-247 back-offs in one
 * SST-2 eval on one process with the old floor of 20 us, 19-21 with 1 ms). */
#define LATE_FLOOR_NS 1000000LL

typedef struct {
    parallel_fn fn;
    void *ctx;
    int n_tasks, max_workers;
    atomic_int next;   /* next task to claim */
    atomic_int joined; /* helpers that took a worker index */
} job;

static struct {
    pthread_mutex_t lock;
    pthread_cond_t wake;
    _Atomic(job *) job;
    atomic_int inside;     /* helpers between "look at job" and "done with it" */
    atomic_int sleepers;   /* helpers waiting on wake */
    atomic_bool owned;     /* a caller is running a job */
    atomic_uint published; /* jobs published so far (helpers use it to tell a new job from an old one) */
    int n_helpers;         /* created so far (under lock) */
    /* Back-off state, touched only by the caller that owns the pool. */
    int64_t sit_out_until_ns, backoff_ns;
} pool = {.lock = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER};

static int64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000LL + t.tv_nsec;
}

int parallel_threads(void) {
    int n = omp_get_max_threads();
    return n < 1 ? 1 : n > MAX_THREADS ? MAX_THREADS : n;
}

static void work_on(job *j, int worker) {
    int task;
    while ((task = atomic_fetch_add(&j->next, 1)) < j->n_tasks) j->fn(j->ctx, task, worker);
}

static void *helper_main(void *unused) {
    (void)unused;
    unsigned seen = atomic_load(&pool.published);
    for (;;) {
        /* wait for a job published after the last one this helper saw */
        int64_t spin_until = now_ns() + SPIN_NS;
        while (atomic_load(&pool.published) == seen) {
            if (now_ns() < spin_until) {
                sched_yield();
                continue;
            }
            pthread_mutex_lock(&pool.lock);
            atomic_fetch_add(&pool.sleepers, 1);
            while (atomic_load(&pool.published) == seen) pthread_cond_wait(&pool.wake, &pool.lock);
            atomic_fetch_sub(&pool.sleepers, 1);
            pthread_mutex_unlock(&pool.lock);
        }
        seen = atomic_load(&pool.published);
        atomic_fetch_add(&pool.inside, 1);
        job *j = atomic_load(&pool.job);
        if (j) {
            const int worker = 1 + atomic_fetch_add(&j->joined, 1);
            if (worker < j->max_workers) work_on(j, worker);
        }
        atomic_fetch_sub(&pool.inside, 1);
    }
    return NULL;
}

/* Makes sure `helpers` helper threads exist; returns how many do. */
static int ensure_helpers(int helpers) {
    if (helpers <= pool.n_helpers) return helpers;
    pthread_mutex_lock(&pool.lock);
    while (pool.n_helpers < helpers) {
        pthread_t thread;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        int failed = pthread_create(&thread, &attr, helper_main, NULL);
        pthread_attr_destroy(&attr);
        if (failed) break; /* run with the helpers there are */
        pool.n_helpers++;
    }
    int have = pool.n_helpers < helpers ? pool.n_helpers : helpers;
    pthread_mutex_unlock(&pool.lock);
    return have;
}

static void run_alone(int n_tasks, parallel_fn fn, void *ctx) {
    for (int task = 0; task < n_tasks; task++) fn(ctx, task, 0);
}

void parallel_run(int n_tasks, parallel_fn fn, void *ctx) { parallel_run_capped(n_tasks, MAX_THREADS, fn, ctx); }

void parallel_run_capped(int n_tasks, int max_threads, parallel_fn fn, void *ctx) {
    const int threads = parallel_threads() < max_threads ? parallel_threads() : max_threads;
    bool expected = false;
    if (n_tasks <= 1 || threads <= 1 || !atomic_compare_exchange_strong(&pool.owned, &expected, true)) {
        run_alone(n_tasks, fn, ctx);
        return;
    }
    const int64_t start = now_ns();
    if (start < pool.sit_out_until_ns) {
        run_alone(n_tasks, fn, ctx);
        atomic_store(&pool.owned, false);
        return;
    }
    const int helpers = ensure_helpers(threads - 1);
    job j = {fn, ctx, n_tasks, 1 + helpers, 0, 0};
    atomic_store(&pool.job, &j);
    atomic_fetch_add(&pool.published, 1);
    if (atomic_load(&pool.sleepers) > 0) {
        pthread_mutex_lock(&pool.lock);
        pthread_cond_broadcast(&pool.wake);
        pthread_mutex_unlock(&pool.lock);
    }
    work_on(&j, 0);
    atomic_store(&pool.job, NULL);
    const int64_t worked = now_ns();
    while (atomic_load(&pool.inside) > 0) sched_yield();
    const int64_t end = now_ns();

    /* Did waiting for the helpers cost more than they can have saved? */
    if ((double)(end - worked) > LATE_FACTOR * (double)(worked - start) && end - worked > LATE_FLOOR_NS) {
        pool.backoff_ns = pool.backoff_ns ? pool.backoff_ns * 2 : BACKOFF_MIN_NS;
        if (pool.backoff_ns > BACKOFF_MAX_NS) pool.backoff_ns = BACKOFF_MAX_NS;
        pool.sit_out_until_ns = end + pool.backoff_ns;
    } else if (pool.backoff_ns) {
        pool.backoff_ns /= 2;
        if (pool.backoff_ns < BACKOFF_MIN_NS) pool.backoff_ns = 0;
    }
    atomic_store(&pool.owned, false);
}
