/* matmul.c: tiled products of activation rows with stored weight matrices (see matmul.h). */
#include "matmul.h"

#include "parallel.h"

#include <stdlib.h>
#include <string.h>

/* A task is up to TILE_FEATURES weight rows by TILE_ROWS activation rows. Within it the kernel
 * walks groups of KERNEL_MAX_W weight rows and, for each, every group of KERNEL_MAX_A activation
 * rows, so a group of weight rows is read from memory once and reused from cache by every row of
 * the tile. The sizes only decide which thread computes what, never a value. */
enum { TILE_FEATURES = 64, TILE_ROWS = 64 };
/* A product of one activation row (decode) gives each task twice as many weight rows. Every task
 * costs a claim and a kernel start; one row times 64 rows of a 768-wide Q4_K matrix is only 27 KB
 * of weights, so that cost shows. Measured when tasks were claimed from a shared counter (whose
 * cache line moved between the cores), in one process, alternating the two sizes token by token
 * (2 threads, 100-150 tokens each, 2-4 runs per file, each against a control run whose two halves
 * were the same):
 * decode tok/s +2% to +9% on 768x12 Q4_K_M, +2% on Q8_0, -1% to +2% on Q4_0, +-1% on F32, +1% to
 * +4% on the 7B layer shape in Q4_K_M. 16- and 32-row tasks lost 3% to 12%; 96 to 384 rows
 * measured about as 128 did, within the noise. */
enum { ONE_ROW_TILE_FEATURES = 128 };
/* A tile of float weights with 2 to this many activation rows prefetches the next group of weight
 * rows into L2 while it works on the current one. So few rows do too little work per weight to
 * hide a read from memory, which is where a small micro-batch finds the weights after other work
 * has used the cache (lite16 layers 14-15, F32, one thread, a 64 MB buffer written before each
 * pass: 8 rows 16.6-20.4 -> 13.1-13.5 us per row-layer, 16 rows 10.6-13.4 -> 8.9-10.6; warm, the
 * same). The float kernels prefetch only for one activation row; the quantized sixteen-lane ones
 * prefetch their next rows themselves. */
enum { SMALL_BATCH_ROWS = 32 };

/* Weight rows [first, first + KERNEL_MAX_W) into L2, as far as the matrix goes. */
static void prefetch_weight_rows(const weight_matrix *w, int first) {
    const int count = w->rows - first < KERNEL_MAX_W ? w->rows - first : KERNEL_MAX_W;
    const char *from = (const char *)w->data + (size_t)first * w->row_bytes;
    for (size_t at = 0; count > 0 && at < (size_t)count * w->row_bytes; at += 64) __builtin_prefetch(from + at, 0, 2);
}

/* Below this many multiply-adds a product runs on the calling thread alone: waking the other
 * threads and waiting for them costs more than the work (and much more when another job keeps
 * one of the cores busy). */
#define PARALLEL_MIN_MACS (1 << 18)

/* Warm-ups (matmul_warm_up): for products of up to this many activation rows, and at most this many
 * bytes per helper, half its L2. */
enum { WARM_UP_MAX_ROWS = 8 };
#define WARM_UP_MAX_BYTES ((size_t)512 * 1024)

int act_buffer_init(act_buffer *a, int max_rows, int max_cols, ramp_error *err) {
    memset(a, 0, sizeof *a);
    if (max_rows <= 0 || max_cols <= 0)
        return ramp_fail(err, "activation buffer: rows %d and columns %d must be positive", max_rows, max_cols);
    a->max_rows = max_rows;
    a->max_cols = max_cols;
    for (int kind = 0; kind < ACT_KINDS; kind++) {
        /* Quantized kinds need whole blocks; a shorter block-aligned row fits in the same stride. */
        int cols = kind == ACT_Q8_32 ? max_cols / 32 * 32 : kind == ACT_Q8_256 ? max_cols / 256 * 256 : max_cols;
        a->stride[kind] = cols > 0 ? act_row_bytes((act_kind)kind, cols) : 64;
        a->rows_of[kind] = aligned_alloc(64, a->stride[kind] * (size_t)max_rows);
        if (!a->rows_of[kind]) {
            act_buffer_free(a);
            return ramp_fail(err, "activation buffer: out of memory for %d rows of %d values", max_rows, max_cols);
        }
    }
    return 0;
}

void act_buffer_free(act_buffer *a) {
    for (int kind = 0; kind < ACT_KINDS; kind++) free(a->rows_of[kind]);
    memset(a, 0, sizeof *a);
}

void act_buffer_set(act_buffer *a, const float *x, int rows, int cols) {
    a->x = x;
    a->n_rows = rows;
    a->n_cols = cols;
    for (int kind = 0; kind < ACT_KINDS; kind++) a->ready[kind] = false;
}

typedef struct {
    act_buffer *a;
    act_kind kind;
} convert_job;

static void convert_row(void *ctx, int r, int worker) {
    (void)worker;
    const convert_job *job = ctx;
    act_buffer *a = job->a;
    act_quantize(job->kind, a->x + (size_t)r * a->n_cols, a->n_cols, a->rows_of[job->kind] + (size_t)r * a->stride[job->kind]);
}

static const unsigned char *converted(act_buffer *a, act_kind kind) {
    if (!a->ready[kind]) {
        convert_job job = {a, kind};
        if (a->n_rows >= 16) parallel_run(a->n_rows, convert_row, &job);
        else
            for (int r = 0; r < a->n_rows; r++) convert_row(&job, r, 0);
        a->ready[kind] = true;
    }
    return a->rows_of[kind];
}

/* Weight rows [f0, f1) by activation rows [r0, r1). */
static void tile(float *out, const weight_matrix *w, const unsigned char *act, size_t act_stride, int cols, int f0,
                 int f1, int r0, int r1) {
    const unsigned char *weights = w->data;
    const bool prefetch = r1 - r0 > 1 && r1 - r0 <= SMALL_BATCH_ROWS && act_kind_of(w->type) == ACT_F32;
    for (int f = f0; f < f1; f += KERNEL_MAX_W) {
        const int nw = f1 - f < KERNEL_MAX_W ? f1 - f : KERNEL_MAX_W;
        if (prefetch) prefetch_weight_rows(w, f + KERNEL_MAX_W);
        for (int r = r0; r < r1; r += KERNEL_MAX_A) {
            const int na = r1 - r < KERNEL_MAX_A ? r1 - r : KERNEL_MAX_A;
            kernel_dot(w->type, cols, weights + (size_t)f * w->row_bytes, w->row_bytes, nw,
                       act + (size_t)r * act_stride, act_stride, na, out + (size_t)r * w->rows + f, (size_t)w->rows);
        }
    }
}

enum { MATMUL_MANY_MAX = 8 };

typedef struct {
    float *out;
    const weight_matrix *w;
    const unsigned char *act;
    size_t act_stride;
    int rows, cols, tile_features, feature_tiles;
} product_job;

/* Weight rows per task of a product with act_rows activation rows. */
static int tile_features_for(int act_rows) { return act_rows == 1 ? ONE_ROW_TILE_FEATURES : TILE_FEATURES; }

/* The weight rows of task `task` of a product with feature_tiles tiles of tile_features rows. */
static void task_weight_rows(const weight_matrix *w, int tile_features, int feature_tiles, int task, int *first,
                             int *end) {
    *first = task % feature_tiles * tile_features;
    *end = *first + tile_features < w->rows ? *first + tile_features : w->rows;
}

static void product_task(void *ctx, int task, int worker) {
    (void)worker;
    const product_job *j = ctx;
    int f0, f1;
    task_weight_rows(j->w, j->tile_features, j->feature_tiles, task, &f0, &f1);
    const int r0 = task / j->feature_tiles * TILE_ROWS;
    const int r1 = r0 + TILE_ROWS < j->rows ? r0 + TILE_ROWS : j->rows;
    tile(j->out, j->w, j->act, j->act_stride, j->cols, f0, f1, r0, r1);
}

/* The products of matmul_weights_many, their tasks numbered one after the other, and within a
 * product in memory order (feature tiles first): the contiguous share of tasks each thread takes
 * (parallel.h) is then a run of consecutive weight rows, and the rows its kernels prefetch ahead
 * are rows it computes next. Before, threads claimed tasks one by one from a shared counter, and a
 * quarter of the time a thread's next task was not the one after its last (it is 1% now). Decode,
 * measured in one process with the two schemes alternating job by job, 129 tokens, 3 runs per
 * file, time in the products old / new: 768x12 Q4_0 1.05-1.06, Q4_K_M 1.03-1.04, Q8_0 1.02-1.03,
 * F32 1.00; 7B-layer Q4_0 1.02-1.06, Q4_K_M 1.03-1.05. */
typedef struct {
    product_job jobs[MATMUL_MANY_MAX];
    int first_task[MATMUL_MANY_MAX + 1];
    int n;
} many_job;

static void many_task(void *ctx, int task, int worker) {
    const many_job *m = ctx;
    int i = 0;
    while (task >= m->first_task[i + 1]) i++;
    product_task((void *)&m->jobs[i], task - m->first_task[i], worker);
}

void matmul_warm_up(const weight_matrix *const *w, int n, int act_rows) {
    const int threads = parallel_threads();
    if (act_rows < 1 || act_rows > WARM_UP_MAX_ROWS || threads < 2 || n > MATMUL_MANY_MAX) return;
    /* the tasks as matmul_weights_many numbers them (one row tile each: act_rows <= TILE_ROWS), and
     * each worker's share as parallel_run cuts it */
    _Static_assert((int)WARM_UP_MAX_ROWS <= (int)TILE_ROWS, "a warmed product has one tile of activation rows");
    int first_task[MATMUL_MANY_MAX + 1] = {0}, tile_features = tile_features_for(act_rows);
    double macs = 0;
    for (int i = 0; i < n; i++) {
        first_task[i + 1] = first_task[i] + (w[i]->rows + tile_features - 1) / tile_features;
        macs += (double)act_rows * w[i]->cols * w[i]->rows;
    }
    if (macs < PARALLEL_MIN_MACS) return;
    const int tasks = first_task[n];
    for (int worker = 1; worker < threads; worker++) {
        int from, to;
        parallel_share(tasks, threads, worker, &from, &to);
        parallel_range ranges[MATMUL_MANY_MAX];
        int n_ranges = 0;
        size_t budget = WARM_UP_MAX_BYTES;
        for (int i = 0; i < n && budget > 0; i++) {
            const int a = from > first_task[i] ? from : first_task[i], b = to < first_task[i + 1] ? to : first_task[i + 1];
            if (a >= b) continue;
            const int feature_tiles = first_task[i + 1] - first_task[i];
            int row0, row1, unused;
            task_weight_rows(w[i], tile_features, feature_tiles, a - first_task[i], &row0, &unused);
            task_weight_rows(w[i], tile_features, feature_tiles, b - 1 - first_task[i], &unused, &row1);
            size_t bytes = (size_t)(row1 - row0) * w[i]->row_bytes;
            if (bytes > budget) bytes = budget;
            ranges[n_ranges++] = (parallel_range){(const char *)w[i]->data + (size_t)row0 * w[i]->row_bytes, bytes};
            budget -= bytes;
        }
        parallel_warm_up(worker, ranges, n_ranges);
    }
}

void matmul_weights_many(const matmul_product *products, int n) {
    for (int start = 0; start < n; start += MATMUL_MANY_MAX) { /* a few at a time: the job lives on the stack */
        many_job m = {.n = n - start < MATMUL_MANY_MAX ? n - start : MATMUL_MANY_MAX};
        double macs = 0;
        for (int i = 0; i < m.n; i++) {
            const matmul_product *p = &products[start + i];
            const act_kind kind = act_kind_of(p->w->type);
            const int tile_features = tile_features_for(p->a->n_rows);
            const int feature_tiles = (p->w->rows + tile_features - 1) / tile_features;
            m.jobs[i] = (product_job){p->out, p->w, converted(p->a, kind), p->a->stride[kind], p->a->n_rows,
                                      p->a->n_cols, tile_features, feature_tiles};
            m.first_task[i + 1] = m.first_task[i] + feature_tiles * ((p->a->n_rows + TILE_ROWS - 1) / TILE_ROWS);
            macs += (double)p->a->n_rows * p->a->n_cols * p->w->rows;
        }
        if (macs >= PARALLEL_MIN_MACS) {
            parallel_run(m.first_task[m.n], many_task, &m);
        } else {
            for (int task = 0; task < m.first_task[m.n]; task++) many_task(&m, task, 0);
        }
    }
}
void matmul_weights(float *out, act_buffer *a, const weight_matrix *w) {
    const matmul_product one = {out, a, w};
    matmul_weights_many(&one, 1);
}

void matmul_weight_rows(float *out, act_buffer *a, const weight_matrix *w, const int *rows_wanted, int n_wanted) {
    const act_kind kind = act_kind_of(w->type);
    const unsigned char *act = converted(a, kind);
    const size_t act_stride = a->stride[kind];
    const unsigned char *weights = w->data;
    for (int c = 0; c < n_wanted; c++)
        for (int r = 0; r < a->n_rows; r += KERNEL_MAX_A) {
            const int na = a->n_rows - r < KERNEL_MAX_A ? a->n_rows - r : KERNEL_MAX_A;
            kernel_dot(w->type, a->n_cols, weights + (size_t)rows_wanted[c] * w->row_bytes, w->row_bytes, 1,
                       act + (size_t)r * act_stride, act_stride, na, out + (size_t)r * n_wanted + c, (size_t)n_wanted);
        }
}

void matmul(float *out, const float *x, const float *w, int n_rows, int in_features, int out_features) {
    act_buffer a;
    if (act_buffer_init(&a, n_rows, in_features, NULL)) abort(); /* test helper: no way to report */
    act_buffer_set(&a, x, n_rows, in_features);
    weight_matrix m = {GGML_TYPE_F32, out_features, in_features, (size_t)in_features * sizeof(float), w};
    matmul_weights(out, &a, &m);
    act_buffer_free(&a);
}
