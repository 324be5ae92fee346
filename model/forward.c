#include "forward.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#if defined(__F16C__)
#include <immintrin.h>
#endif

#include "exp8.h"
#include "parallel.h"
#include "quant.h"

void rmsnorm(float *out, const float *x, const float *weight, int size, float eps) {
    float sum_squares = 0.0f;
    for (int i = 0; i < size; i++) sum_squares += x[i] * x[i];
    float scale = 1.0f / sqrtf(sum_squares / (float)size + eps);
    for (int i = 0; i < size; i++) out[i] = weight[i] * (scale * x[i]);
}

/* Each of the n rows of hidden RMS-normalized with weight into normed, and act set to read them:
 * the input of a layer's (or the head's) products. */
static void norm_rows(act_buffer *act, float *normed, const float *hidden, const float *weight, int n, int dim,
                      float eps) {
    for (int r = 0; r < n; r++) rmsnorm(normed + (size_t)r * dim, hidden + (size_t)r * dim, weight, dim, eps);
    act_buffer_set(act, normed, n, dim);
}

void softmax(float *x, int size) {
    /* the largest value: per lane, then across the lanes (the same value in any order; a NaN
     * never wins a comparison, as in one pass over the values) */
    float8 top = float8_splat(x[0]);
    for (int i = 0; i < size; i += 8) {
        const float8 v = float8_load_partial(x + i, size - i < 8 ? size - i : 8, x[0]);
        top = float8_select(v > top, v, top);
    }
    float lane[8];
    memcpy(lane, &top, sizeof lane);
    float max = lane[0];
    for (int k = 1; k < 8; k++)
        if (lane[k] > max) max = lane[k];
    /* the exponentials summed in eight lanes (value i in lane i % 8, zeros past the end), the lanes
     * then added in a fixed tree: the same sum for a row however it is batched. One running sum
     * waited on the previous addition for every value (softmax was 17% of a 1,711-token prompt). */
    const float8 lane_index = {0, 1, 2, 3, 4, 5, 6, 7};
    float8 sums = float8_splat(0.0f);
    for (int i = 0; i < size; i += 8) {
        const int count = size - i < 8 ? size - i : 8;
        float8 e = exp8(float8_load_partial(x + i, count, max) - float8_splat(max));
        if (count < 8) e = float8_select(lane_index < float8_splat((float)count), e, float8_splat(0.0f));
        float8_store_partial(x + i, e, count);
        sums += e;
    }
    memcpy(lane, &sums, sizeof lane);
    const float sum = ((lane[0] + lane[4]) + (lane[2] + lane[6])) + ((lane[1] + lane[5]) + (lane[3] + lane[7]));
    for (int i = 0; i < size; i++) x[i] /= sum;
}

/* SwiGLU: gate[i] = silu(gate[i]) * up[i] = gate[i] / (1 + e^-gate[i]) * up[i]. */
static void silu_times_range(float *gate, const float *up, long from, long to) {
    for (long i = from; i < to; i += 8) {
        const int count = to - i < 8 ? (int)(to - i) : 8;
        const float8 g = float8_load_partial(gate + i, count, 0.0f), u = float8_load_partial(up + i, count, 0.0f);
        const float8 out = g / (float8_splat(1.0f) + exp8(-g)) * u;
        float8_store_partial(gate + i, out, count);
    }
}

/* A batch's SwiGLU is shared out between the threads in chunks of this many values: on one thread
 * it took 9-11% of lite16's layer time in a 2-thread eval (its products are small: dim 128), while
 * the other thread waited for the down projection. Each value is computed alone, so the chunks
 * change no bit. */
enum { SILU_CHUNK = 8192 };

typedef struct {
    float *gate;
    const float *up;
    long elements;
} silu_job;

static void silu_task(void *ctx, int task, int worker) {
    (void)worker;
    const silu_job *j = ctx;
    const long from = (long)task * SILU_CHUNK, to = from + SILU_CHUNK < j->elements ? from + SILU_CHUNK : j->elements;
    silu_times_range(j->gate, j->up, from, to);
}

static void silu_times(float *gate, const float *up, long elements) {
    if (elements < 2 * SILU_CHUNK) { /* a decoded row (7B: 11,008 values): not worth waking a thread */
        silu_times_range(gate, up, 0, elements);
        return;
    }
    silu_job j = {gate, up, elements};
    parallel_run((int)((elements + SILU_CHUNK - 1) / SILU_CHUNK), silu_task, &j);
}

/* Prompt rows attend in blocks of up to QUERY_BLOCK consecutive rows of one sequence: a block reads
 * each key and value from L2 once and its other rows reuse them from L1 (every row alone read all
 * of them: attention was 13% of a 768x12 Q4_0 prompt's time for 1.4% of its multiply-adds). Each
 * row's scores and sums are the operations, in the order, it does alone. */
enum { QUERY_BLOCK = 4, VALUE_CHUNK = 32 /* positions whose values a block sums before the next */ };

int forward_workspace_init(forward_workspace *ws, const model_config *c, int max_rows, int max_context,
                           ramp_error *err) {
    memset(ws, 0, sizeof *ws);
    if (max_rows <= 0 || max_context <= 0)
        return ramp_fail(err, "workspace: rows %d and context %d must be positive", max_rows, max_context);
    ws->max_rows = max_rows;
    ws->max_context = max_context;
    size_t rows = (size_t)max_rows;
    float **buffers[] = {&ws->normed, &ws->q, &ws->attention, &ws->projection, &ws->k, &ws->v,
                         &ws->gate, &ws->up, &ws->rope_cos, &ws->rope_sin, &ws->scores, &ws->rope_frequency};
    ws->score_buffers = parallel_threads();
    size_t sizes[] = {rows * c->dim, rows * c->dim, rows * c->dim, rows * c->dim, rows * c->kv_dim,
                      rows * c->kv_dim, rows * c->ffn_dim, rows * c->ffn_dim, rows * (c->rope_dim / 2),
                      rows * (c->rope_dim / 2), (size_t)ws->score_buffers * QUERY_BLOCK * max_context,
                      (size_t)(c->rope_dim / 2)};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        *buffers[i] = malloc((sizes[i] ? sizes[i] : 1) * sizeof(float));
        if (!*buffers[i]) {
            forward_workspace_free(ws);
            return ramp_fail(err, "workspace: out of memory for %d rows", max_rows);
        }
    }
    for (int i = 0; i < c->rope_dim / 2; i++) /* once, not for every row of every batch */
        ws->rope_frequency[i] = 1.0f / powf(c->rope_base, (float)(2 * i) / (float)c->rope_dim);
    if (act_buffer_init(&ws->act, max_rows, c->ffn_dim > c->dim ? c->ffn_dim : c->dim, err)) {
        forward_workspace_free(ws);
        return -1;
    }
    return 0;
}

static void pair_buffers_free(forward_pair_buffers *b) {
    if (!b) return;
    float *buffers[] = {b->normed, b->q, b->k, b->v, b->attention, b->projection, b->gate, b->up};
    for (size_t i = 0; i < sizeof buffers / sizeof buffers[0]; i++) free(buffers[i]);
    act_buffer_free(&b->act);
    free(b);
}

int forward_workspace_enable_pairs(forward_workspace *ws, const model_config *c, ramp_error *err) {
    if (ws->pair) return 0;
    forward_pair_buffers *b = calloc(1, sizeof *b);
    if (!b) return ramp_fail(err, "workspace: out of memory for a layer pair");
    size_t rows = (size_t)ws->max_rows;
    float **buffers[] = {&b->normed, &b->q, &b->attention, &b->projection, &b->k, &b->v, &b->gate, &b->up};
    size_t sizes[] = {rows * c->dim,    rows * c->dim,    rows * c->dim,     rows * c->dim,
                      rows * c->kv_dim, rows * c->kv_dim, rows * c->ffn_dim, rows * c->ffn_dim};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
        if (!(*buffers[i] = malloc((sizes[i] ? sizes[i] : 1) * sizeof(float)))) {
            pair_buffers_free(b);
            return ramp_fail(err, "workspace: out of memory for a layer pair of %d rows", ws->max_rows);
        }
    if (act_buffer_init(&b->act, ws->max_rows, c->ffn_dim > c->dim ? c->ffn_dim : c->dim, err)) {
        pair_buffers_free(b);
        return -1;
    }
    ws->pair = b;
    return 0;
}

void forward_workspace_free(forward_workspace *ws) {
    pair_buffers_free(ws->pair);
    free(ws->normed);
    free(ws->q);
    free(ws->attention);
    free(ws->projection);
    free(ws->k);
    free(ws->v);
    free(ws->gate);
    free(ws->up);
    free(ws->rope_cos);
    free(ws->rope_sin);
    free(ws->rope_frequency);
    free(ws->scores);
    act_buffer_free(&ws->act);
    memset(ws, 0, sizeof *ws);
}

int forward_embed(const model *m, const int *tokens, int n, float *hidden, ramp_error *err) {
    const int dim = m->config.dim;
    const weight_matrix *e = &m->token_embedding;
    if (!e->data) return ramp_fail(err, "%s: this slice did not load the token embedding", m->path);
    for (int i = 0; i < n; i++) {
        if (tokens[i] < 0 || tokens[i] >= m->config.vocab_size)
            return ramp_fail(err, "token id %d out of range (vocabulary of %d)", tokens[i], m->config.vocab_size);
        dequantize(e->type, (const char *)e->data + (size_t)tokens[i] * e->row_bytes, hidden + (size_t)i * dim,
                   (size_t)dim);
    }
    return 0;
}

/* The rotation angles depend only on the position, so compute them once per batch. Linear
 * scaling multiplies the position; Llama 3.1's rope_freqs divide each frequency. */
static void rope_prepare(const model *m, const forward_rows *rows, forward_workspace *ws) {
    const model_config *c = &m->config;
    const int pairs = c->rope_dim / 2;
    for (int r = 0; r < rows->n_rows; r++) {
        for (int i = 0; i < pairs; i++) {
            float frequency = ws->rope_frequency[i];
            if (m->rope_freqs) frequency /= m->rope_freqs[i];
            float angle = (float)rows->positions[r] * c->rope_freq_scale * frequency;
            ws->rope_cos[r * pairs + i] = cosf(angle);
            ws->rope_sin[r * pairs + i] = sinf(angle);
        }
    }
}

/* Pair i of each head rotates by angle i: Llama's pairs are (x[2i], x[2i+1]); with `halves`
 * (Qwen2) they are (x[i], x[i + rope_dim / 2]), as llama.cpp's NEOX RoPE takes them. */
static void rope_apply(float *vector, int n_heads, int head_dim, int rope_dim, bool halves, const float *cos_row,
                       const float *sin_row) {
    const int pairs = rope_dim / 2, step = halves ? 1 : 2, partner = halves ? pairs : 1;
    for (int h = 0; h < n_heads; h++) {
        float *head = vector + h * head_dim;
        for (int i = 0; i < pairs; i++) {
            float *first = head + step * i, *second = first + partner;
            float x0 = *first, x1 = *second;
            *first = x0 * cos_row[i] - x1 * sin_row[i];
            *second = x0 * sin_row[i] + x1 * cos_row[i];
        }
    }
}

/* x[r] += bias for each of n rows of length len (no-op without a bias). */
static void add_bias(float *x, const float *bias, int n, int len) {
    if (!bias) return;
    for (int r = 0; r < n; r++)
        for (int i = 0; i < len; i++) x[(size_t)r * len + i] += bias[i];
}

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
    const forward_rows *rows;
    forward_workspace *ws;
    const float *q;      /* [rows][dim] queries */
    float *out;          /* [rows][dim] attention output */
    const int *blocks;   /* query block b is rows blocks[b] .. blocks[b + 1] - 1 (query_blocks) */
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

/* One (query block, head): computed whole by one thread, so the sums do not depend on the thread
 * count. */
static ALWAYS_INLINE void attend(void *ctx, int task, int worker, bool half) {
    const attention_job *j = ctx;
    const model_config *c = j->c;
    forward_workspace *ws = j->ws;
    const int heads_per_kv = c->n_heads / c->n_kv_heads;
    const float scale = 1.0f / sqrtf((float)c->head_dim);
    const int b = task / c->n_heads, h = task % c->n_heads;
    const int r0 = j->blocks[b], n_queries = j->blocks[b + 1] - r0;
    if (j->rows->kv_only && j->rows->kv_only[r0]) return;
    const int slot = j->rows->slots[r0], first_length = j->rows->positions[r0] + 1;
    const int last_length = first_length + n_queries - 1; /* query q sees first_length + q positions */
    const unsigned char *filled = kv_filled(j->kv, slot, j->local_layer, 0);
    const void *keys = kv_head_keys(j->kv, slot, j->local_layer, h / heads_per_kv);
    const void *values = kv_head_values(j->kv, slot, j->local_layer, h / heads_per_kv);
    const size_t stride = (size_t)c->head_dim; /* elements from one position to the next */
    const bool decode = n_queries == 1; /* a block of prompt rows uses each line for several queries */
    const float *query[QUERY_BLOCK];
    float *scores[QUERY_BLOCK], *out[QUERY_BLOCK];
    for (int q = 0; q < n_queries; q++) {
        query[q] = j->q + (size_t)(r0 + q) * c->dim + h * c->head_dim;
        out[q] = j->out + (size_t)(r0 + q) * c->dim + h * c->head_dim;
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
    /* Scores, eight keys at a time for every query of the block (dot_lanes8 gives each key the bits
     * dot_lanes gives it). */
    for (int t = 0; t < last_length; t += 8) {
        if (decode) prefetch_kv_ahead(kv_at(keys, (size_t)t * stride, half), 8 * stride * kv_element_bytes(half));
        for (int q = 0; q < n_queries; q++) {
            const int length = first_length + q;
            if (c->head_dim % 8 == 0 && t + 8 <= length)
                dot_lanes8(query[q], kv_at(keys, (size_t)t * stride, half), stride, c->head_dim, scores[q] + t, half);
            else
                for (int u = t; u < length && u < t + 8; u++)
                    scores[q][u] = dot_lanes(query[q], kv_at(keys, (size_t)u * stride, half), c->head_dim, half);
        }
    }
    for (int q = 0; q < n_queries; q++) {
        const int length = first_length + q;
        for (int t = 0; t < length; t++) scores[q][t] = filled[t] ? scores[q][t] * scale : -INFINITY;
        softmax(scores[q], length);
    }
    /* out[i] = sum over t (in order) of scores[t] * value_t[i]: positions are the outer loop and up
     * to 64 values (eight vectors) are summed at once, so each position's check and score are read
     * once per 64 values; a block takes VALUE_CHUNK positions for each of its queries in turn. Every
     * value's sum is the same sequence of operations. */
    const int whole = c->head_dim / 8 * 8; /* values in whole vectors; the rest one at a time below */
    const int chunk = n_queries == 1 ? last_length : VALUE_CHUNK;
    for (int i0 = 0; i0 < whole; i0 += 64) {
        const int vectors = (whole - i0) / 8 < 8 ? (whole - i0) / 8 : 8;
        const void *v = kv_at(values, (size_t)i0, half);
        float8 sums[QUERY_BLOCK][8];
        for (int from = 0; from < last_length; from += chunk)
            for (int q = 0; q < n_queries; q++) {
                const int length = first_length + q, to = from + chunk < length ? from + chunk : length;
                if (from >= to) continue;
                switch (vectors) { /* constant counts keep the sums in registers */
                case 8: weighted_values(8, scores[q], filled, from, to, v, stride, sums[q], half, decode); break;
                case 4: weighted_values(4, scores[q], filled, from, to, v, stride, sums[q], half, decode); break;
                case 2: weighted_values(2, scores[q], filled, from, to, v, stride, sums[q], half, decode); break;
                default:
                    for (int k = 0; k < vectors; k++)
                        weighted_values(1, scores[q], filled, from, to, kv_at(v, 8 * (size_t)k, half), stride,
                                        &sums[q][k], half, decode);
                    break;
                }
            }
        for (int q = 0; q < n_queries; q++) memcpy(out[q] + i0, sums[q], (size_t)vectors * sizeof(float8));
    }
    for (int q = 0; q < n_queries; q++)
        for (int i0 = whole; i0 < c->head_dim; i0++) {
            float sum = 0.0f;
            for (int t = 0; t < first_length + q; t++)
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
        work += (long)(rows->positions[r] + 1) * c->dim;
    return work;
}

/* j->blocks must hold query_blocks(rows) and tasks be their count times the heads. */
static void run_attention(attention_job *j, int tasks, const model_config *c, const forward_rows *rows,
                          forward_workspace *ws) {
    /* parallel only when there is enough to share: a few long rows, or many rows */
    long work = attention_work(c, rows);
    if (work >= ATTENTION_PARALLEL_WORK) {
        parallel_run_capped(tasks, ws->score_buffers, attention_task, j);
    } else {
        for (int task = 0; task < tasks; task++) attention_task(j, task, 0);
    }
}

/* out = attention of queries q ([rows][dim]) over layer local_layer's keys and values. */
static void attention(const model_config *c, const kv_cache *kv, int local_layer, const forward_rows *rows,
                      const float *q, float *out, forward_workspace *ws) {
    int blocks[rows->n_rows + 1];
    const int n_blocks = query_blocks(rows, blocks);
    attention_job j = {c, kv, local_layer, rows, ws, q, out, blocks};
    run_attention(&j, n_blocks * c->n_heads, c, rows, ws);
}

/* hidden += update, except for rows that only fill keys/values (their state stays as it was). */
static void add_residual(float *hidden, const float *update, const forward_rows *rows, int dim) {
    for (int r = 0; r < rows->n_rows; r++) {
        if (rows->kv_only && rows->kv_only[r]) continue;
        float *h = hidden + (size_t)r * dim;
        const float *u = update + (size_t)r * dim;
        for (int i = 0; i < dim; i++) h[i] += u[i];
    }
}

/* The layer's biases (if any) and RoPE on the rows' queries and keys, then their keys and values
 * into the cache of local_layer. */
static void rope_and_store(const model_config *c, const layer_weights *w, kv_cache *kv, int local_layer,
                           const forward_rows *rows, float *q, float *k, float *v, const forward_workspace *ws) {
    const int dim = c->dim, kv_dim = c->kv_dim, pairs = c->rope_dim / 2;
    add_bias(q, w->q_bias, rows->n_rows, dim);
    add_bias(k, w->k_bias, rows->n_rows, kv_dim);
    add_bias(v, w->v_bias, rows->n_rows, kv_dim);
    for (int r = 0; r < rows->n_rows; r++) {
        const float *cos_row = ws->rope_cos + r * pairs, *sin_row = ws->rope_sin + r * pairs;
        kv_prepare(kv, rows->slots[r], local_layer, rows->positions[r]);
        rope_apply(q + (size_t)r * dim, c->n_heads, c->head_dim, c->rope_dim, c->rope_halves, cos_row, sin_row);
        rope_apply(k + (size_t)r * kv_dim, c->n_kv_heads, c->head_dim, c->rope_dim, c->rope_halves, cos_row, sin_row);
        kv_store(kv, rows->slots[r], local_layer, rows->positions[r], k + (size_t)r * kv_dim, v + (size_t)r * kv_dim);
    }
}

static void layer_forward(const model *m, int layer, kv_cache *kv, const forward_rows *rows, float *hidden,
                          forward_workspace *ws) {
    const model_config *c = &m->config;
    const layer_weights *w = &m->layers[layer];
    const int n = rows->n_rows, dim = c->dim, ffn = c->ffn_dim;
    const int local_layer = layer - m->slice.first_layer;

    norm_rows(&ws->act, ws->normed, hidden, w->attn_norm, n, dim, c->rms_eps);
    {
        const matmul_product qkv[] = {{ws->q, &ws->act, &w->wq}, {ws->k, &ws->act, &w->wk}, {ws->v, &ws->act, &w->wv}};
        matmul_weights_many(qkv, 3);
    }
    rope_and_store(c, w, kv, local_layer, rows, ws->q, ws->k, ws->v, ws);
    attention(c, kv, local_layer, rows, ws->q, ws->attention, ws);
    act_buffer_set(&ws->act, ws->attention, n, dim);
    matmul_weights(ws->projection, &ws->act, &w->wo);
    add_residual(hidden, ws->projection, rows, dim);

    norm_rows(&ws->act, ws->normed, hidden, w->ffn_norm, n, dim, c->rms_eps);
    {
        const matmul_product gate_up[] = {{ws->gate, &ws->act, &w->w_gate}, {ws->up, &ws->act, &w->w_up}};
        matmul_weights_many(gate_up, 2);
    }
    silu_times(ws->gate, ws->up, (long)n * ffn);
    act_buffer_set(&ws->act, ws->gate, n, ffn);
    matmul_weights(ws->projection, &ws->act, &w->w_down);
    add_residual(hidden, ws->projection, rows, dim);
}

/* ---- layer-parallel pairs (forward.h) --------------------------------------------------------- */

bool forward_pair_starts(const forward_pairs *pairs, int layer) {
    return pairs && layer >= pairs->first && layer + 1 < pairs->end && (layer - pairs->first) % 2 == 0;
}

/* One member's buffers: the first member uses the workspace's own, the second the pair's. */
typedef struct {
    const layer_weights *w;
    int local_layer;
    float *normed, *q, *k, *v, *attention, *projection, *gate, *up;
    act_buffer *act;
} pair_member;


typedef struct {
    attention_job members[2];
    int tasks; /* per member */
} pair_attention_job;

static void pair_attention_task(void *ctx, int task, int worker) {
    const pair_attention_job *j = ctx;
    int member = task >= j->tasks;
    attention_task((void *)&j->members[member], task - member * j->tasks, worker);
}

/* Both members' attention, all (member, row, head) tasks shared out together. */
static void pair_attention(const model_config *c, const kv_cache *kv, const forward_rows *rows, pair_member *x,
                           forward_workspace *ws) {
    int blocks[rows->n_rows + 1];
    const int n_blocks = query_blocks(rows, blocks);
    pair_attention_job j = {{{c, kv, x[0].local_layer, rows, ws, x[0].q, x[0].attention, blocks},
                             {c, kv, x[1].local_layer, rows, ws, x[1].q, x[1].attention, blocks}},
                            n_blocks * c->n_heads};
    if (2 * attention_work(c, rows) >= ATTENTION_PARALLEL_WORK) {
        parallel_run_capped(2 * j.tasks, ws->score_buffers, pair_attention_task, &j);
    } else {
        for (int task = 0; task < 2 * j.tasks; task++) pair_attention_task(&j, task, 0);
    }
}

/* Swaps the computed member's contribution (in x[mine].projection) for the other's, when the
 * other member is computed by a partner process. */
static int swap_contributions(const forward_partner *partner, pair_member *x, int n, int dim, ramp_error *err) {
    if (!partner) return 0;
    int mine = partner->member, theirs = 1 - mine;
    return partner->exchange(partner->context, x[mine].projection, x[theirs].projection, (size_t)n * dim, err);
}

static int pair_forward(const model *m, int layer, kv_cache *kv, const forward_rows *rows, float *hidden,
                        const forward_partner *partner, forward_workspace *ws, ramp_error *err) {
    const model_config *c = &m->config;
    const int n = rows->n_rows, dim = c->dim, ffn = c->ffn_dim;
    forward_pair_buffers *b = ws->pair;
    /* the members computed here: both (fused), or the partner's counterpart */
    const int from = partner ? partner->member : 0, to = partner ? partner->member + 1 : 2;
    pair_member x[2] = {
        {&m->layers[layer], layer - m->slice.first_layer, ws->normed, ws->q, ws->k, ws->v, ws->attention,
         ws->projection, ws->gate, ws->up, &ws->act},
        {&m->layers[layer + 1], layer + 1 - m->slice.first_layer, b->normed, b->q, b->k, b->v, b->attention,
         b->projection, b->gate, b->up, &b->act},
    };
    /* attention: both members read h */
    matmul_product products[6] = {{0}};
    int n_products = 0;
    for (int i = from; i < to; i++) {
        norm_rows(x[i].act, x[i].normed, hidden, x[i].w->attn_norm, n, dim, c->rms_eps);
        products[n_products++] = (matmul_product){x[i].q, x[i].act, &x[i].w->wq};
        products[n_products++] = (matmul_product){x[i].k, x[i].act, &x[i].w->wk};
        products[n_products++] = (matmul_product){x[i].v, x[i].act, &x[i].w->wv};
    }
    matmul_weights_many(products, n_products);
    for (int i = from; i < to; i++) rope_and_store(c, x[i].w, kv, x[i].local_layer, rows, x[i].q, x[i].k, x[i].v, ws);
    if (partner) {
        attention(c, kv, x[from].local_layer, rows, x[from].q, x[from].attention, ws);
    } else {
        pair_attention(c, kv, rows, x, ws);
    }
    n_products = 0;
    for (int i = from; i < to; i++) {
        act_buffer_set(x[i].act, x[i].attention, n, dim);
        products[n_products++] = (matmul_product){x[i].projection, x[i].act, &x[i].w->wo};
    }
    matmul_weights_many(products, n_products);
    if (swap_contributions(partner, x, n, dim, err)) return -1;
    for (int i = 0; i < 2; i++) add_residual(hidden, x[i].projection, rows, dim); /* h + a, then + b */

    /* MLP: both members read h' */
    n_products = 0;
    for (int i = from; i < to; i++) {
        norm_rows(x[i].act, x[i].normed, hidden, x[i].w->ffn_norm, n, dim, c->rms_eps);
        products[n_products++] = (matmul_product){x[i].gate, x[i].act, &x[i].w->w_gate};
        products[n_products++] = (matmul_product){x[i].up, x[i].act, &x[i].w->w_up};
    }
    matmul_weights_many(products, n_products);
    n_products = 0;
    for (int i = from; i < to; i++) {
        silu_times(x[i].gate, x[i].up, (long)n * ffn);
        act_buffer_set(x[i].act, x[i].gate, n, ffn);
        products[n_products++] = (matmul_product){x[i].projection, x[i].act, &x[i].w->w_down};
    }
    matmul_weights_many(products, n_products);
    if (swap_contributions(partner, x, n, dim, err)) return -1;
    for (int i = 0; i < 2; i++) add_residual(hidden, x[i].projection, rows, dim);
    return 0;
}

int forward_layers(const model *m, int first_layer, int end_layer, kv_cache *kv, const forward_rows *rows,
                   float *hidden, forward_workspace *ws, ramp_error *err) {
    return forward_layers_paired(m, first_layer, end_layer, NULL, kv, rows, hidden, ws, err);
}

int forward_layers_paired(const model *m, int first_layer, int end_layer, const forward_pairs *pairs, kv_cache *kv,
                          const forward_rows *rows, float *hidden, forward_workspace *ws, ramp_error *err) {
    return forward_layers_pausing(m, first_layer, end_layer, pairs, kv, rows, hidden, ws, NULL, err);
}

int forward_layers_pausing(const model *m, int first_layer, int end_layer, const forward_pairs *pairs, kv_cache *kv,
                           const forward_rows *rows, float *hidden, forward_workspace *ws, const forward_pause *pause,
                           ramp_error *err) {
    if (pairs && pairs->first < pairs->end) {
        if ((pairs->end - pairs->first) % 2)
            return ramp_fail(err, "parallel layers %d-%d: expected an even number of layers to pair, found %d",
                             pairs->first, pairs->end - 1, pairs->end - pairs->first);
        for (int layer = first_layer; layer < end_layer && !ws->pair; layer++)
            if (forward_pair_starts(pairs, layer))
                return ramp_fail(err, "parallel layers: the workspace has no buffers for pairs");
        if (forward_pair_starts(pairs, first_layer - 1) || forward_pair_starts(pairs, end_layer - 1))
            return ramp_fail(err, "layers %d-%d cut a parallel pair (pairs start at %d, every 2 layers to %d)",
                             first_layer, end_layer - 1, pairs->first, pairs->end - 1);
    }
    if (first_layer < m->slice.first_layer || end_layer > m->slice.end_layer || first_layer > end_layer)
        return ramp_fail(err, "layers %d-%d are not all loaded (this process holds %d-%d)", first_layer,
                         end_layer - 1, m->slice.first_layer, m->slice.end_layer - 1);
    if (rows->n_rows > ws->max_rows)
        return ramp_fail(err, "batch of %d rows exceeds the workspace's %d", rows->n_rows, ws->max_rows);
    for (int r = 0; r < rows->n_rows; r++) {
        int slot = rows->slots[r], position = rows->positions[r];
        if (slot < 0 || slot >= kv->n_slots)
            return ramp_fail(err, "row %d: KV slot %d out of range (0..%d)", r, slot, kv->n_slots - 1);
        if (position < 0 || position >= kv->slots[slot].capacity || position >= ws->max_context)
            return ramp_fail(err, "row %d: position %d outside the %d positions reserved for slot %d", r, position,
                             kv->slots[slot].capacity, slot);
    }
    rope_prepare(m, rows, ws);
    const forward_partner *partner = pairs ? pairs->partner : NULL;
    if (partner) pause = NULL; /* the partner follows this process's runs of pairs step by step */
    for (int layer = first_layer; layer < end_layer; layer++) {
        if (pause && layer > first_layer) {
            int ran = pause->run(pause->context, err);
            if (ran < 0) return -1;
            if (ran) rope_prepare(m, rows, ws);
        }
        if (!forward_pair_starts(pairs, layer)) {
            if (partner && partner->member == 1)
                return ramp_fail(err, "layer %d is no parallel pair's: the second member's process runs pairs only",
                                 layer);
            layer_forward(m, layer, kv, rows, hidden, ws);
            continue;
        }
        if (partner && partner->member == 0 && (layer == first_layer || !forward_pair_starts(pairs, layer - 2))) {
            /* a run of pairs starts (or this call starts inside one): the partner reads the states here */
            int end = layer;
            while (end < end_layer && forward_pair_starts(pairs, end)) end += 2;
            if (partner->begin(partner->context, layer, end, rows, hidden, err)) return -1;
        }
        if (pair_forward(m, layer++, kv, rows, hidden, partner, ws, err)) return -1;
    }
    return 0;
}

void forward_logits(const model *m, const float *hidden, int n, float *logits, forward_workspace *ws) {
    norm_rows(&ws->act, ws->normed, hidden, m->output_norm, n, m->config.dim, m->config.rms_eps);
    matmul_weights(logits, &ws->act, &m->output);
}

void forward_logits_of(const model *m, const float *hidden, int n, const int *tokens, int n_tokens, float *out,
                       forward_workspace *ws) {
    norm_rows(&ws->act, ws->normed, hidden, m->output_norm, n, m->config.dim, m->config.rms_eps);
    matmul_weight_rows(out, &ws->act, &m->output, tokens, n_tokens);
}
