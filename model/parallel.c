/* parallel.c: the task pool of parallel.h.
 *
 * Protocol. A caller splits the tasks into one contiguous share per worker (pool.shares), publishes
 * a job (on its own stack) through pool.job and works on it like any helper; when no share has a
 * task left it withdraws the job (pool.job = NULL) and waits until pool.inside is 0. A helper
 * increments pool.inside before it looks at pool.job and decrements it when it is done with the
 * job it saw, so once the caller has withdrawn the job and seen inside == 0, no helper holds a
 * pointer to it or touches the shares. All atomics are sequentially consistent: simple to reason
 * about, and their cost is nothing next to a task.
 *
 * Shares. A worker takes the tasks of its own share front to back. One that has none left takes
 * the back half of the largest share (one compare-and-swap on the owner's word) and stores it in
 * its own, empty word, which nobody else writes while it is empty; so a task is always in exactly
 * one share or in the hands of exactly one worker. The packed word is a share's whole state: a
 * compare-and-swap that succeeds takes exactly the tasks it read, whatever happened in between.
 *
 * Warm-ups. Helper i is always worker i, so the ranges posted for a worker (pool.warm, the weights
 * of its share of a product to come) are read by the thread that will compute them; a helper reads
 * them between jobs, in place of spinning.
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
    int max_workers;
} job;

/* The tasks [front, back) a worker has still to do, packed as front | back << 32 so that one
 * compare-and-swap moves either end; on its own cache line, as its owner updates it per task. */
typedef struct {
    _Alignas(64) _Atomic uint64_t tasks;
} share;

/* The ranges a helper is to read into its cache (parallel_warm_up). A seqlock: posted is odd while
 * the poster rewrites the ranges, and a helper takes a copy only when it read the same even count
 * before and after copying. The helper reads real bytes (a loop of prefetches left the lines out of
 * the cache: the core drops prefetches it has no room for), so the ranges must stay mapped while
 * it reads them: it sets `reading` before it looks at posted and checks posted again every page,
 * and parallel_end_warm_ups waits until it has seen `reading` clear after posting. */
typedef struct {
    _Alignas(64) atomic_uint posted;
    atomic_bool reading;
    atomic_int n;
    _Atomic(const char *) start[PARALLEL_WARM_RANGES];
    atomic_size_t bytes[PARALLEL_WARM_RANGES];
} warm_up;

static struct {
    pthread_mutex_t lock;
    pthread_cond_t wake;
    _Atomic(job *) job;
    atomic_int inside;     /* helpers between "look at job" and "done with it" */
    atomic_int sleepers;   /* helpers waiting on wake */
    atomic_bool owned;     /* a caller is running a job */
    atomic_uint published; /* jobs published so far (helpers use it to tell a new job from an old one) */
    share shares[MAX_THREADS]; /* the published job's tasks, one share per worker index */
    warm_up warm[MAX_THREADS]; /* what each helper is to read into its cache while idle */
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

static uint64_t task_range(uint32_t front, uint32_t back) { return (uint64_t)front | (uint64_t)back << 32; }
static uint32_t range_front(uint64_t range) { return (uint32_t)range; }
static uint32_t range_back(uint64_t range) { return (uint32_t)(range >> 32); }
static uint32_t range_size(uint64_t range) {
    return range_front(range) < range_back(range) ? range_back(range) - range_front(range) : 0;
}

/* The next task of the worker's own share, front first; false when the share is empty. */
static bool take_own(int worker, int *task) {
    _Atomic uint64_t *mine = &pool.shares[worker].tasks;
    uint64_t range = atomic_load(mine);
    while (range_size(range) > 0)
        if (atomic_compare_exchange_weak(mine, &range, task_range(range_front(range) + 1, range_back(range)))) {
            *task = (int)range_front(range);
            return true;
        }
    return false;
}

/* Moves the back half (at least one task) of the largest share into the worker's own, empty one;
 * false when every share is empty. */
static bool take_half_of_largest(const job *j, int worker) {
    for (;;) {
        int largest = -1;
        uint64_t range = 0;
        for (int w = 0; w < j->max_workers; w++) {
            const uint64_t r = atomic_load(&pool.shares[w].tasks);
            if (range_size(r) > range_size(range)) largest = w, range = r;
        }
        if (largest < 0) return false;
        const uint32_t front = range_front(range), back = range_back(range), middle = front + (back - front) / 2;
        if (atomic_compare_exchange_strong(&pool.shares[largest].tasks, &range, task_range(front, middle))) {
            atomic_store(&pool.shares[worker].tasks, task_range(middle, back));
            return true;
        }
    }
}

static void work_on(job *j, int worker) {
    int task;
    do {
        while (take_own(worker, &task)) j->fn(j->ctx, task, worker);
    } while (take_half_of_largest(j, worker));
}

/* A helper's copy of its warm-up ranges and how far it got through them. */
typedef struct {
    unsigned posted; /* the count the copy was taken at */
    int n, range;
    const char *start[PARALLEL_WARM_RANGES];
    size_t bytes[PARALLEL_WARM_RANGES], done;
} warm_progress;

/* Takes a consistent copy of the ranges if new ones were posted. */
static void take_new_ranges(const warm_up *source, warm_progress *w) {
    const unsigned before = atomic_load(&source->posted);
    if (before == w->posted || before % 2) return;
    warm_progress copy = {.posted = before, .n = atomic_load(&source->n)};
    for (int i = 0; i < copy.n && i < PARALLEL_WARM_RANGES; i++) {
        copy.start[i] = atomic_load(&source->start[i]);
        copy.bytes[i] = atomic_load(&source->bytes[i]);
    }
    if (atomic_load(&source->posted) == before) *w = copy; /* else rewritten meanwhile: next time */
}

/* Reads one byte per cache line of what is left of the ranges, a page at a time, until they are done,
 * a job other than `seen` is published or other ranges are posted. */
static void read_ranges(const warm_up *source, warm_progress *w, unsigned seen) {
    enum { PAGE = 4096 };
    for (; w->range < w->n; w->range++, w->done = 0)
        for (; w->done < w->bytes[w->range]; w->done += PAGE) {
            if (atomic_load(&pool.published) != seen || atomic_load(&source->posted) != w->posted) return;
            const char *page = w->start[w->range] + w->done;
            const size_t end = w->bytes[w->range] - w->done < PAGE ? w->bytes[w->range] - w->done : PAGE;
            unsigned char sink = 0;
            for (size_t at = 0; at < end; at += 64) sink ^= *(volatile const unsigned char *)(page + at);
            (void)sink;
        }
}

/* One look at the helper's warm-up: reads what is left of its current ranges; true if it read any. */
static bool warm_cache(warm_up *source, warm_progress *w, unsigned seen) {
    atomic_store(&source->reading, true);
    take_new_ranges(source, w);
    const bool work = w->posted == atomic_load(&source->posted) && w->range < w->n;
    if (work) read_ranges(source, w, seen);
    atomic_store(&source->reading, false);
    return work;
}

static void *helper_main(void *index) {
    const int worker = (int)(intptr_t)index;
    unsigned seen = atomic_load(&pool.published);
    warm_up *const warm_source = &pool.warm[worker];
    warm_progress warm = {.posted = atomic_load(&warm_source->posted)};
    for (;;) {
        /* wait for a job published after the last one this helper saw, warming the cache meanwhile */
        int64_t spin_until = now_ns() + SPIN_NS;
        while (atomic_load(&pool.published) == seen) {
            if (warm_cache(warm_source, &warm, seen)) {
                spin_until = now_ns() + SPIN_NS;
                continue;
            }
            if (now_ns() < spin_until) {
                sched_yield();
                continue;
            }
            pthread_mutex_lock(&pool.lock);
            atomic_fetch_add(&pool.sleepers, 1);
            while (atomic_load(&pool.published) == seen && atomic_load(&warm_source->posted) == warm.posted)
                pthread_cond_wait(&pool.wake, &pool.lock);
            atomic_fetch_sub(&pool.sleepers, 1);
            pthread_mutex_unlock(&pool.lock);
        }
        seen = atomic_load(&pool.published);
        atomic_fetch_add(&pool.inside, 1);
        job *j = atomic_load(&pool.job);
        if (j && worker < j->max_workers) work_on(j, worker);
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
        int failed = pthread_create(&thread, &attr, helper_main, (void *)(intptr_t)(pool.n_helpers + 1));
        pthread_attr_destroy(&attr);
        if (failed) break; /* run with the helpers there are */
        pool.n_helpers++;
    }
    int have = pool.n_helpers < helpers ? pool.n_helpers : helpers;
    pthread_mutex_unlock(&pool.lock);
    return have;
}

/* Wakes the helpers that sleep, after a job or a warm-up was posted. */
static void wake_sleepers(void) {
    if (atomic_load(&pool.sleepers) > 0) {
        pthread_mutex_lock(&pool.lock);
        pthread_cond_broadcast(&pool.wake);
        pthread_mutex_unlock(&pool.lock);
    }
}

void parallel_share(int n_tasks, int workers, int worker, int *from, int *to) {
    *from = (int)((int64_t)n_tasks * worker / workers);
    *to = (int)((int64_t)n_tasks * (worker + 1) / workers);
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
    job j = {fn, ctx, 1 + helpers};
    for (int w = 0; w < j.max_workers; w++) {
        int from, to;
        parallel_share(n_tasks, j.max_workers, w, &from, &to);
        atomic_store(&pool.shares[w].tasks, task_range((uint32_t)from, (uint32_t)to));
    }
    atomic_store(&pool.job, &j);
    atomic_fetch_add(&pool.published, 1);
    wake_sleepers();
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

/* Replaces helper `worker`'s ranges (the caller owns the pool). */
static void post_ranges(int worker, const parallel_range *ranges, int n_ranges) {
    warm_up *w = &pool.warm[worker];
    atomic_fetch_add(&w->posted, 1); /* odd: being rewritten */
    const int n = n_ranges < PARALLEL_WARM_RANGES ? n_ranges : PARALLEL_WARM_RANGES;
    for (int i = 0; i < n; i++) {
        atomic_store(&w->start[i], (const char *)ranges[i].start);
        atomic_store(&w->bytes[i], ranges[i].bytes);
    }
    atomic_store(&w->n, n);
    atomic_fetch_add(&w->posted, 1);
}

void parallel_warm_up(int worker, const parallel_range *ranges, int n_ranges) {
    bool expected = false;
    if (worker < 1 || worker >= MAX_THREADS || !atomic_compare_exchange_strong(&pool.owned, &expected, true)) return;
    /* sitting out (helpers arrived late): the caller works alone, and so would the warmed lines */
    if (now_ns() >= pool.sit_out_until_ns) {
        post_ranges(worker, ranges, n_ranges);
        wake_sleepers();
    }
    atomic_store(&pool.owned, false);
}

void parallel_end_warm_ups(void) {
    bool expected = false;
    while (!atomic_compare_exchange_strong(&pool.owned, &expected, true)) {
        expected = false;
        sched_yield();
    }
    for (int worker = 1; worker <= pool.n_helpers; worker++) { /* helpers are made only by the owner */
        post_ranges(worker, NULL, 0);
        while (atomic_load(&pool.warm[worker].reading)) sched_yield();
    }
    atomic_store(&pool.owned, false);
}
