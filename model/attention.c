/* attention.c: causal self-attention of a batch's rows over the KV cache (attention.h). */
#include "attention.h"

#include <math.h>
#include <stdint.h>
#include <string.h>
#if defined(__F16C__)
#include <immintrin.h>
#endif

#include "exp8.h"
#include "parallel.h"
#include "quant.h"

/* Prompt rows attend in blocks of up to QUERY_BLOCK consecutive rows of one sequence: a block reads
 * each key and value from L2 once and its other rows reuse them from L1 (every row alone read all
 * of them: attention was 13% of a 768x12 Q4_0 prompt's time for 1.4% of its multiply-adds). Each
 * row's scores and sums are the operations, in the order, it does alone. */
enum { QUERY_BLOCK = 4, VALUE_CHUNK = 32 /* positions whose values a block sums before the next */ };

size_t attention_scratch_floats(int max_context) { return (size_t)QUERY_BLOCK * (size_t)max_context; }

/* float8 (exp8.h): eight floats as one value; GCC/Clang compile its arithmetic to SIMD where the
 * target has it, lane by lane, without reassociating anything. */
static float8 load8(const float *p) {
    float8 v;
    memcpy(&v, p, sizeof v);
    return v;
}

#define ALWAYS_INLINE inline __attribute__((always_inline))

/* Keys and values are read from the cache in its element type (kv_cache.h): fp32, or fp16 when
 * `half`. The attention functions below take `half` as a constant, so each is compiled once per
 * type with the conversion inside its loads. */
static ALWAYS_INLINE float8 load8_kv(const void *base, size_t index, bool half) {
    if (!half) return load8((const float *)base + index);
    const uint16_t *h = (const uint16_t *)base + index;
#if defined(__F16C__)
    const __m256 v = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)h));
    float8 out;
    memcpy(&out, &v, sizeof out);
    return out;
#else
    return (float8){fp16_to_fp32(h[0]), fp16_to_fp32(h[1]), fp16_to_fp32(h[2]), fp16_to_fp32(h[3]),
                    fp16_to_fp32(h[4]), fp16_to_fp32(h[5]), fp16_to_fp32(h[6]), fp16_to_fp32(h[7])};
#endif
}

static ALWAYS_INLINE size_t kv_element_bytes(bool half) { return half ? sizeof(uint16_t) : sizeof(float); }

/* The element `index` elements past base. */
static ALWAYS_INLINE const void *kv_at(const void *base, size_t index, bool half) {
    return (const unsigned char *)base + index * kv_element_bytes(half);
}

static ALWAYS_INLINE float load1_kv(const void *base, size_t index, bool half) {
    return half ? fp16_to_fp32(((const uint16_t *)base)[index]) : ((const float *)base)[index];
}

/* A decoded row's attention reads a head's keys, then its values, front to back: one stream per
 * thread, which the hardware prefetchers alone followed at about 16 GB/s on 2 threads where the
 * weight products (which prefetch) reach 26. So decode asks for the bytes this far ahead into L2.
 * Decode after a 1,680-token prompt, 2 threads, fp32 KV, interleaved rounds, tok/s against none:
 * 768x12 Q4_K_M x1.21-1.27 (2 KiB ahead 1.06-1.28, 8 KiB 1.11-1.25, 16 KiB 0.99-1.25), 768x12
 * Q4_0 x1.18-1.38, 7B-layer Q4_K_M x1.14-1.21; fp16 KV x1.02-1.16. */
enum { KV_PREFETCH_AHEAD = 4096 };

/* [at, at + bytes) into L2 (a prefetch never faults, past the cache's end too). */
static ALWAYS_INLINE void prefetch_kv(const void *at, size_t bytes) {
    for (size_t offset = 0; offset < bytes; offset += 64) __builtin_prefetch((const char *)at + offset, 0, 2);
}

static ALWAYS_INLINE void prefetch_kv_ahead(const void *at, size_t bytes) {
    prefetch_kv((const char *)at + KV_PREFETCH_AHEAD, bytes);
}

/* a . b with eight partial sums (lane i % 8) added in a fixed order at the end. */
static ALWAYS_INLINE float dot_lanes(const float *a, const void *b, int n, bool half) {
    float8 acc = {0};
    int i = 0;
    for (; i + 8 <= n; i += 8) acc += load8(a + i) * load8_kv(b, (size_t)i, half);
    float lane[8];
    memcpy(lane, &acc, sizeof lane);
    for (; i < n; i++) lane[i % 8] += a[i] * load1_kv(b, (size_t)i, half);
    return ((lane[0] + lane[4]) + (lane[2] + lane[6])) + ((lane[1] + lane[5]) + (lane[3] + lane[7]));
}

/* dot_lanes of a with eight rows b, b + stride, ..., b + 7 * stride (n a multiple of 8): the same
 * eight partial sums per row, then the same tree of additions, done for all eight rows at once on
 * the transposed partial sums (lane j of row p becomes lane p of part[j]). */
static ALWAYS_INLINE void dot_lanes8(const float *a, const void *b, size_t stride, int n, float out[8], bool half) {
    float8 acc[8] = {{0}};
    for (int i = 0; i < n; i += 8) {
        const float8 x = load8(a + i);
        for (int p = 0; p < 8; p++) acc[p] += x * load8_kv(b, (size_t)p * stride + (size_t)i, half);
    }
    /* __builtin_shufflevector: GCC 12 and clang both have it (GCC's __builtin_shuffle is GCC's own) */
    float8 t[8], u[8], part[8];
    for (int p = 0; p < 8; p += 2) {
        t[p] = __builtin_shufflevector(acc[p], acc[p + 1], 0, 8, 1, 9, 4, 12, 5, 13);
        t[p + 1] = __builtin_shufflevector(acc[p], acc[p + 1], 2, 10, 3, 11, 6, 14, 7, 15);
    }
    for (int p = 0; p < 8; p += 4)
        for (int k = 0; k < 2; k++) {
            u[p + 2 * k] = __builtin_shufflevector(t[p + k], t[p + 2 + k], 0, 1, 8, 9, 4, 5, 12, 13);
            u[p + 2 * k + 1] = __builtin_shufflevector(t[p + k], t[p + 2 + k], 2, 3, 10, 11, 6, 7, 14, 15);
        }
    for (int j = 0; j < 4; j++) {
        part[j] = __builtin_shufflevector(u[j], u[j + 4], 0, 1, 2, 3, 8, 9, 10, 11);
        part[j + 4] = __builtin_shufflevector(u[j], u[j + 4], 4, 5, 6, 7, 12, 13, 14, 15);
    }
    const float8 sum = ((part[0] + part[4]) + (part[2] + part[6])) + ((part[1] + part[5]) + (part[3] + part[7]));
    memcpy(out, &sum, sizeof sum);
}

/* sums[k] += scores[t] * values[t][8k .. 8k+7] over filled positions t in [from, to), in order, for
 * k < VECTORS (sums start at zero when from is 0): one pass over the positions for all of them. */
static ALWAYS_INLINE void weighted_values(int vectors, const float *scores, const unsigned char *filled, int from,
                                          int to, const void *values, size_t stride, float8 *sums, bool half,
                                          bool prefetch) {
    float8 sum[8] = {{0}};
    if (from > 0) memcpy(sum, sums, (size_t)vectors * sizeof sum[0]);
    const size_t row_bytes = (size_t)vectors * 8 * kv_element_bytes(half);
    for (int t = from; t < to; t++) {
        if (prefetch) prefetch_kv_ahead(kv_at(values, (size_t)t * stride, half), row_bytes);
        if (!filled[t]) continue;
        const float s = scores[t];
        for (int k = 0; k < vectors; k++) sum[k] += s * load8_kv(values, (size_t)t * stride + 8 * (size_t)k, half);
    }
    memcpy(sums, sum, (size_t)vectors * sizeof sum[0]);
}

typedef struct {
    const model_config *c;
    const kv_cache *kv;
    int local_layer;
    int window; /* positions seen, counted back from the query's own; 0: all */
    const forward_rows *rows;
    forward_workspace *ws;
    const float *q;      /* [rows][dim] queries */
    float *out;          /* [rows][dim] attention output */
    const int *blocks;     /* query block b is rows blocks[b] .. blocks[b + 1] - 1 (query_blocks) */
    const int *first_task; /* block b's tasks are first_task[b] .. first_task[b + 1] - 1 (block_tasks) */
    int n_blocks;
} attention_job;

/* Fills blocks[0..n] (n returned, blocks[n] = n_rows): rows of a block share the slot, have
 * consecutive positions and all attend (no row that only fills keys and values). */
static int query_blocks(const forward_rows *rows, int *blocks) {
    int n = 0;
    for (int r = 0; r < rows->n_rows;) {
        int end = r + 1;
        const bool attends = !(rows->kv_only && rows->kv_only[r]);
        while (attends && end < rows->n_rows && end - r < QUERY_BLOCK && rows->slots[end] == rows->slots[r] &&
               rows->positions[end] == rows->positions[end - 1] + 1 && !(rows->kv_only && rows->kv_only[end]))
            end++;
        blocks[n++] = r;
        r = end;
    }
    blocks[n] = rows->n_rows;
    return n;
}

/* The queries that read a KV head together: a block's rows for one head, or for a one-row block the
 * query heads that share a KV head (grouped-query attention), up to QUERY_BLOCK at a time. */
static int head_groups_per_kv(const model_config *c) {
    return (c->n_heads / c->n_kv_heads + QUERY_BLOCK - 1) / QUERY_BLOCK;
}

/* Fills first_task[0..n_blocks] and returns the task count: a block of prompt rows has a task per
 * head, one row a task per group of its query heads, a row that only fills keys and values none. */
static int block_tasks(const model_config *c, const forward_rows *rows, const int *blocks, int n_blocks,
                       int *first_task) {
    first_task[0] = 0;
    for (int b = 0; b < n_blocks; b++) {
        const int r0 = blocks[b], n_rows = blocks[b + 1] - r0;
        const int tasks = rows->kv_only && rows->kv_only[r0] ? 0
                          : n_rows == 1                      ? c->n_kv_heads * head_groups_per_kv(c)
                                                             : c->n_heads;
        first_task[b + 1] = first_task[b] + tasks;
    }
    return first_task[n_blocks];
}

/* The block whose tasks include task: the last b with first_task[b] <= task. */
static int block_of_task(const int *first_task, int n_blocks, int task) {
    int low = 0, high = n_blocks - 1;
    while (low < high) {
        const int mid = (low + high + 1) / 2;
        if (first_task[mid] <= task) low = mid;
        else high = mid - 1;
    }
    return low;
}

/* One task (block_tasks): computed whole by one thread, so the sums do not depend on the thread
 * count. */
static ALWAYS_INLINE void attend(void *ctx, int task, int worker, bool half) {
    const attention_job *j = ctx;
    const model_config *c = j->c;
    forward_workspace *ws = j->ws;
    const int heads_per_kv = c->n_heads / c->n_kv_heads;
    const float scale = c->attention_scale;
    const int b = block_of_task(j->first_task, j->n_blocks, task), unit = task - j->first_task[b];
    const int r0 = j->blocks[b], n_rows = j->blocks[b + 1] - r0;
    const bool decode = n_rows == 1; /* a block of prompt rows uses each line for several queries */
    const int groups = head_groups_per_kv(c);
    /* the first query head of the task: of group unit % groups of KV head unit / groups, or head unit */
    const int h = decode ? unit / groups * heads_per_kv + unit % groups * QUERY_BLOCK : unit;
    const int slot = j->rows->slots[r0], first_length = j->rows->positions[r0] + 1;
    const unsigned char *filled = kv_filled(j->kv, slot, j->local_layer, 0);
    const void *keys = kv_head_keys(j->kv, slot, j->local_layer, h / heads_per_kv);
    const void *values = kv_head_values(j->kv, slot, j->local_layer, h / heads_per_kv);
    const size_t stride = (size_t)c->head_dim; /* elements from one position to the next */
    /* The queries that read these keys and values together (head_groups_per_kv); query i sees
     * lengths[i] positions. */
    int n_queries, lengths[QUERY_BLOCK], heads[QUERY_BLOCK], query_rows[QUERY_BLOCK];
    if (decode) {
        const int in_group = h % heads_per_kv;
        n_queries = heads_per_kv - in_group < QUERY_BLOCK ? heads_per_kv - in_group : QUERY_BLOCK;
        for (int q = 0; q < n_queries; q++) heads[q] = h + q, query_rows[q] = r0, lengths[q] = first_length;
    } else {
        n_queries = n_rows;
        for (int q = 0; q < n_queries; q++) heads[q] = h, query_rows[q] = r0 + q, lengths[q] = first_length + q;
    }
    const int last_length = first_length + n_rows - 1; /* the longest: the block's last row */
    const float *query[QUERY_BLOCK];
    float *scores[QUERY_BLOCK], *out[QUERY_BLOCK];
    for (int q = 0; q < n_queries; q++) {
        query[q] = j->q + (size_t)query_rows[q] * c->q_dim + heads[q] * c->head_dim;
        out[q] = j->out + (size_t)query_rows[q] * c->q_dim + heads[q] * c->head_dim;
        scores[q] = ws->scores + ((size_t)worker * QUERY_BLOCK + (size_t)q) * ws->max_context;
    }
    /* Decode: the starts of both runs at once, as the loops prefetch only from KV_PREFETCH_AHEAD on
     * (768x12 Q4_K_M, 5-token prompt, 64 tokens: 18.3-23.1 -> 15.5-20.4 us per layer's attention). */
    if (decode) {
        const size_t head_bytes = (size_t)last_length * stride * kv_element_bytes(half);
        const size_t first = head_bytes < KV_PREFETCH_AHEAD ? head_bytes : KV_PREFETCH_AHEAD;
        prefetch_kv(keys, first);
        prefetch_kv(values, first);
    }
    /* Scores, eight keys at a time for every query (dot_lanes8 gives each key the bits dot_lanes
     * gives it). */
    for (int t = 0; t < last_length; t += 8) {
        if (decode) prefetch_kv_ahead(kv_at(keys, (size_t)t * stride, half), 8 * stride * kv_element_bytes(half));
        for (int q = 0; q < n_queries; q++) {
            const int length = lengths[q];
            if (c->head_dim % 8 == 0 && t + 8 <= length)
                dot_lanes8(query[q], kv_at(keys, (size_t)t * stride, half), stride, c->head_dim, scores[q] + t, half);
            else
                for (int u = t; u < length && u < t + 8; u++)
                    scores[q][u] = dot_lanes(query[q], kv_at(keys, (size_t)u * stride, half), c->head_dim, half);
        }
    }
    for (int q = 0; q < n_queries; q++) {
        /* a sliding window masks the positions before it as an unfilled one is masked: exp(-inf) = 0,
         * and adding 0 leaves the softmax's and the values' sums as they were */
        const int seen_from = j->window > 0 && lengths[q] > j->window ? lengths[q] - j->window : 0;
        for (int t = 0; t < lengths[q]; t++)
            scores[q][t] = filled[t] && t >= seen_from ? scores[q][t] * scale : -INFINITY;
        if (c->attention_softcap > 0.0f) /* Gemma 2: cap x tanh(score / cap), as llama.cpp computes it */
            for (int t = seen_from; t < lengths[q]; t++)
                if (filled[t]) scores[q][t] = tanhf(scores[q][t] * (1.0f / c->attention_softcap)) * c->attention_softcap;
        softmax(scores[q], lengths[q]);
    }
    /* out[i] = sum over t (in order) of scores[t] * value_t[i]: positions are the outer loop and up
     * to 64 values (eight vectors) are summed at once, so each position's check and score are read
     * once per 64 values; several queries take VALUE_CHUNK positions each in turn. Every value's sum
     * is the same sequence of operations however it is chunked. */
    const int whole = c->head_dim / 8 * 8; /* values in whole vectors; the rest one at a time below */
    const int chunk = n_queries == 1 ? last_length : VALUE_CHUNK;
    /* the other queries read the chunk after the first, from cache: only the first prefetches */
    for (int i0 = 0; i0 < whole; i0 += 64) {
        const int vectors = (whole - i0) / 8 < 8 ? (whole - i0) / 8 : 8;
        const void *v = kv_at(values, (size_t)i0, half);
        float8 sums[QUERY_BLOCK][8];
        for (int from = 0; from < last_length; from += chunk)
            for (int q = 0; q < n_queries; q++) {
                const int to = from + chunk < lengths[q] ? from + chunk : lengths[q];
                if (from >= to) continue;
                const bool ahead = decode && q == 0;
                switch (vectors) { /* constant counts keep the sums in registers */
                case 8: weighted_values(8, scores[q], filled, from, to, v, stride, sums[q], half, ahead); break;
                case 4: weighted_values(4, scores[q], filled, from, to, v, stride, sums[q], half, ahead); break;
                case 2: weighted_values(2, scores[q], filled, from, to, v, stride, sums[q], half, ahead); break;
                default:
                    for (int k = 0; k < vectors; k++)
                        weighted_values(1, scores[q], filled, from, to, kv_at(v, 8 * (size_t)k, half), stride,
                                        &sums[q][k], half, ahead);
                    break;
                }
            }
        for (int q = 0; q < n_queries; q++) memcpy(out[q] + i0, sums[q], (size_t)vectors * sizeof(float8));
    }
    for (int q = 0; q < n_queries; q++)
        for (int i0 = whole; i0 < c->head_dim; i0++) {
            float sum = 0.0f;
            for (int t = 0; t < lengths[q]; t++)
                if (filled[t]) sum += scores[q][t] * load1_kv(values, (size_t)t * stride + (size_t)i0, half);
            out[q][i0] = sum;
        }
}

/* attend, compiled once for each element type of the KV cache. */
static void attention_task(void *ctx, int task, int worker) {
    const attention_job *j = ctx;
    if (j->kv->type == KV_F16) attend(ctx, task, worker, true);
    else attend(ctx, task, worker, false);
}

/* Attention is shared out between the threads from this much work (positions attended times dim)
 * on. A decoded row of a dim-768 model reaches it at position 11: its attention took 12-14% of
 * the layers' time on one thread while the other waited for the next product. Threshold 2^16
 * (position 85) -> 2^13: 768x12 Q4_0 decode (generate -n 65 --threads 2), medians of the rounds'
 * ratios 1.07 (6 rounds) and 1.03 (8 rounds; 2^14: 1.00). */
#define ATTENTION_PARALLEL_WORK (1L << 13)

/* Attention work of a batch, counted up to the point where it is worth sharing out. */
static long attention_work(const model_config *c, const forward_rows *rows) {
    long work = 0;
    for (int r = 0; r < rows->n_rows && work < ATTENTION_PARALLEL_WORK; r++)
        work += (long)(rows->positions[r] + 1) * c->q_dim;
    return work;
}

/* The tasks on the threads when the work is worth sharing out (a few long rows, or many rows),
 * else on this thread. */
static void run_tasks(int tasks, long work, parallel_fn fn, void *job, const forward_workspace *ws) {
    if (work >= ATTENTION_PARALLEL_WORK) {
        parallel_run_capped(tasks, ws->score_buffers, fn, job);
    } else {
        for (int task = 0; task < tasks; task++) fn(job, task, 0);
    }
}

void attention_of_rows(const model_config *c, const kv_cache *kv, int local_layer, int window, const forward_rows *rows,
                       const float *q, float *out, forward_workspace *ws) {
    int blocks[rows->n_rows + 1], first_task[rows->n_rows + 1];
    const int n_blocks = query_blocks(rows, blocks), tasks = block_tasks(c, rows, blocks, n_blocks, first_task);
    attention_job j = {c, kv, local_layer, window, rows, ws, q, out, blocks, first_task, n_blocks};
    run_tasks(tasks, attention_work(c, rows), attention_task, &j, ws);
}

typedef struct {
    attention_job members[2];
    int tasks; /* per member */
} pair_attention_job;

static void pair_attention_task(void *ctx, int task, int worker) {
    const pair_attention_job *j = ctx;
    int member = task >= j->tasks;
    attention_task((void *)&j->members[member], task - member * j->tasks, worker);
}

void attention_of_pair(const model_config *c, const kv_cache *kv, const forward_rows *rows, const int local_layers[2],
                       const float *const q[2], float *const out[2], forward_workspace *ws) {
    int blocks[rows->n_rows + 1], first_task[rows->n_rows + 1];
    const int n_blocks = query_blocks(rows, blocks), tasks = block_tasks(c, rows, blocks, n_blocks, first_task);
    pair_attention_job j = {{{c, kv, local_layers[0], 0, rows, ws, q[0], out[0], blocks, first_task, n_blocks},
                             {c, kv, local_layers[1], 0, rows, ws, q[1], out[1], blocks, first_task, n_blocks}},
                            tasks};
    run_tasks(2 * j.tasks, 2 * attention_work(c, rows), pair_attention_task, &j, ws);
}
