#include "forward.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "attention.h"
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

/* GELU in its tanh form, as Gemma's gelu_pytorch_tanh: 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3))),
 * with tanh(y) = 1 - 2 / (e^2y + 1) (e^2y overflowing to infinity gives 1). */
static inline float8 gelu8(float8 x) {
    const float8 y = float8_splat(0.7978845608028654f) * (x + float8_splat(0.044715f) * x * x * x);
    const float8 t = float8_splat(1.0f) - float8_splat(2.0f) / (exp8(float8_splat(2.0f) * y) + float8_splat(1.0f));
    return float8_splat(0.5f) * x * (float8_splat(1.0f) + t);
}

/* gate[i] = act(gate[i]) * up[i]: SwiGLU's silu(g) = g / (1 + e^-g), or (gelu) Gemma's GELU. */
static void gate_times_range(float *gate, const float *up, long from, long to, bool gelu) {
    for (long i = from; i < to; i += 8) {
        const int count = to - i < 8 ? (int)(to - i) : 8;
        const float8 g = float8_load_partial(gate + i, count, 0.0f), u = float8_load_partial(up + i, count, 0.0f);
        const float8 out = gelu ? gelu8(g) * u : g / (float8_splat(1.0f) + exp8(-g)) * u;
        float8_store_partial(gate + i, out, count);
    }
}

/* A batch's gated activation is shared out between the threads in chunks of this many values: on
 * one thread it took 9-11% of lite16's layer time in a 2-thread eval (its products are small: dim 128), while
 * the other thread waited for the down projection. Each value is computed alone, so the chunks
 * change no bit. */
enum { GATE_CHUNK = 8192 };

typedef struct {
    float *gate;
    const float *up;
    long elements;
    bool gelu;
} gate_job;

static void gate_task(void *ctx, int task, int worker) {
    (void)worker;
    const gate_job *j = ctx;
    const long from = (long)task * GATE_CHUNK, to = from + GATE_CHUNK < j->elements ? from + GATE_CHUNK : j->elements;
    gate_times_range(j->gate, j->up, from, to, j->gelu);
}

/* gate = act(gate) * up, act SiLU or (gelu) GELU. */
static void gate_times(float *gate, const float *up, long elements, bool gelu) {
    if (elements < 2 * GATE_CHUNK) { /* a decoded row (7B: 11,008 values): not worth waking a thread */
        gate_times_range(gate, up, 0, elements, gelu);
        return;
    }
    gate_job j = {gate, up, elements, gelu};
    parallel_run((int)((elements + GATE_CHUNK - 1) / GATE_CHUNK), gate_task, &j);
}

/* The widest row a product takes in: the embedding, the attention output or the feed-forward's. */
static int widest_activation(const model_config *c) {
    int widest = c->dim > c->q_dim ? c->dim : c->q_dim;
    return c->ffn_dim > widest ? c->ffn_dim : widest;
}

int forward_workspace_init(forward_workspace *ws, const model_config *c, int max_rows, int max_context,
                           ramp_error *err) {
    memset(ws, 0, sizeof *ws);
    if (max_rows <= 0 || max_context <= 0)
        return ramp_fail(err, "workspace: rows %d and context %d must be positive", max_rows, max_context);
    ws->max_rows = max_rows;
    ws->max_context = max_context;
    size_t rows = (size_t)max_rows;
    float **buffers[] = {&ws->normed,   &ws->q,        &ws->attention, &ws->projection,     &ws->k,
                         &ws->v,        &ws->gate,     &ws->up,        &ws->rope_cos,       &ws->rope_sin,
                         &ws->scores,   &ws->rope_frequency, &ws->rope_cos_local, &ws->rope_sin_local,
                         &ws->rope_frequency_local};
    ws->score_buffers = parallel_threads();
    size_t sizes[] = {rows * c->dim, rows * c->q_dim, rows * c->q_dim, rows * c->dim, rows * c->kv_dim,
                      rows * c->kv_dim, rows * c->ffn_dim, rows * c->ffn_dim, rows * (c->rope_dim / 2),
                      rows * (c->rope_dim / 2), (size_t)ws->score_buffers * attention_scratch_floats(max_context),
                      (size_t)(c->rope_dim / 2), rows * (c->rope_dim / 2), rows * (c->rope_dim / 2),
                      (size_t)(c->rope_dim / 2)};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        *buffers[i] = malloc((sizes[i] ? sizes[i] : 1) * sizeof(float));
        if (!*buffers[i]) {
            forward_workspace_free(ws);
            return ramp_fail(err, "workspace: out of memory for %d rows", max_rows);
        }
    }
    for (int i = 0; i < c->rope_dim / 2; i++) { /* once, not for every row of every batch */
        ws->rope_frequency[i] = 1.0f / powf(c->rope_base, (float)(2 * i) / (float)c->rope_dim);
        if (c->sliding_window > 0)
            ws->rope_frequency_local[i] = 1.0f / powf(c->rope_base_local, (float)(2 * i) / (float)c->rope_dim);
    }
    if (act_buffer_init(&ws->act, max_rows, widest_activation(c), err)) {
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
    size_t sizes[] = {rows * c->dim,    rows * c->q_dim,  rows * c->q_dim,   rows * c->dim,
                      rows * c->kv_dim, rows * c->kv_dim, rows * c->ffn_dim, rows * c->ffn_dim};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
        if (!(*buffers[i] = malloc((sizes[i] ? sizes[i] : 1) * sizeof(float)))) {
            pair_buffers_free(b);
            return ramp_fail(err, "workspace: out of memory for a layer pair of %d rows", ws->max_rows);
        }
    if (act_buffer_init(&b->act, ws->max_rows, widest_activation(c), err)) {
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
    free(ws->rope_cos_local);
    free(ws->rope_sin_local);
    free(ws->rope_frequency_local);
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
        float *row = hidden + (size_t)i * dim;
        dequantize(e->type, (const char *)e->data + (size_t)tokens[i] * e->row_bytes, row, (size_t)dim);
        if (m->config.embedding_scale != 1.0f)
            for (int k = 0; k < dim; k++) row[k] *= m->config.embedding_scale;
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
            if (c->sliding_window > 0) { /* Gemma 3's local layers: their own base, no scaling */
                const float local = (float)rows->positions[r] * ws->rope_frequency_local[i];
                ws->rope_cos_local[r * pairs + i] = cosf(local);
                ws->rope_sin_local[r * pairs + i] = sinf(local);
            }
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

/* hidden += scale x update (Granite's residual multiplier; 1 elsewhere, the plain sum), except for
 * rows that only fill keys/values (their state stays as it was). */
static void add_residual(float *hidden, const float *update, const forward_rows *rows, int dim, float scale) {
    for (int r = 0; r < rows->n_rows; r++) {
        if (rows->kv_only && rows->kv_only[r]) continue;
        float *h = hidden + (size_t)r * dim;
        const float *u = update + (size_t)r * dim;
        if (scale == 1.0f)
            for (int i = 0; i < dim; i++) h[i] += u[i];
        else
            for (int i = 0; i < dim; i++) h[i] += u[i] * scale;
    }
}

/* Gemma 3's norm of a block's output before it joins the residual stream (weight NULL: none). */
static void post_norm(float *rows_out, const float *weight, int n, int dim, float eps) {
    if (!weight) return;
    for (int r = 0; r < n; r++) rmsnorm(rows_out + (size_t)r * dim, rows_out + (size_t)r * dim, weight, dim, eps);
}

/* Granite's logits are divided by its logit scale (as llama.cpp: times its inverse); Gemma 2's are
 * soft-capped: cap x tanh(logit / cap), as llama.cpp computes it. */
static void scale_logits(const model *m, float *logits, size_t n) {
    if (m->config.logit_scale != 1.0f) {
        const float inverse = 1.0f / m->config.logit_scale;
        for (size_t i = 0; i < n; i++) logits[i] *= inverse;
    }
    const float cap = m->config.logit_softcap;
    if (cap > 0.0f)
        for (size_t i = 0; i < n; i++) logits[i] = tanhf(logits[i] * (1.0f / cap)) * cap;
}

/* Each of the n_heads heads of one row RMS-normalized with the same weights (Qwen3). */
static void norm_heads(float *row, int n_heads, int head_dim, const float *weight, float eps) {
    for (int h = 0; h < n_heads; h++) rmsnorm(row + (size_t)h * head_dim, row + (size_t)h * head_dim, weight, head_dim, eps);
}

/* The layer's biases (if any), head norms (if any) and RoPE on the rows' queries and keys, then
 * their keys and values into the cache of local_layer. */
static void rope_and_store(const model_config *c, const layer_weights *w, kv_cache *kv, int local_layer, int window,
                           const forward_rows *rows, float *q, float *k, float *v, const forward_workspace *ws) {
    const float *cos_table = window ? ws->rope_cos_local : ws->rope_cos, *sin_table = window ? ws->rope_sin_local : ws->rope_sin;
    const int q_dim = c->q_dim, kv_dim = c->kv_dim, pairs = c->rope_dim / 2;
    add_bias(q, w->q_bias, rows->n_rows, q_dim);
    add_bias(k, w->k_bias, rows->n_rows, kv_dim);
    add_bias(v, w->v_bias, rows->n_rows, kv_dim);
    for (int r = 0; r < rows->n_rows; r++) {
        const float *cos_row = cos_table + r * pairs, *sin_row = sin_table + r * pairs;
        kv_prepare(kv, rows->slots[r], local_layer, rows->positions[r]);
        if (w->q_norm) norm_heads(q + (size_t)r * q_dim, c->n_heads, c->head_dim, w->q_norm, c->rms_eps);
        if (w->k_norm) norm_heads(k + (size_t)r * kv_dim, c->n_kv_heads, c->head_dim, w->k_norm, c->rms_eps);
        rope_apply(q + (size_t)r * q_dim, c->n_heads, c->head_dim, c->rope_dim, c->rope_halves, cos_row, sin_row);
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
    /* Before each product, the one after it: the helpers read their shares of it into their caches
     * as soon as they are done with this one, while this thread finishes and works alone. */
    matmul_warm_up((const weight_matrix *[]){&w->wo}, 1, n);
    {
        const matmul_product qkv[] = {{ws->q, &ws->act, &w->wq}, {ws->k, &ws->act, &w->wk}, {ws->v, &ws->act, &w->wv}};
        matmul_weights_many(qkv, 3);
    }
    const int window = model_layer_window(c, layer);
    rope_and_store(c, w, kv, local_layer, window, rows, ws->q, ws->k, ws->v, ws);
    attention_of_rows(c, kv, local_layer, window, rows, ws->q, ws->attention, ws);
    act_buffer_set(&ws->act, ws->attention, n, c->q_dim);
    matmul_warm_up((const weight_matrix *[]){&w->w_gate, &w->w_up}, 2, n);
    matmul_weights(ws->projection, &ws->act, &w->wo);
    post_norm(ws->projection, w->attn_post_norm, n, dim, c->rms_eps);
    add_residual(hidden, ws->projection, rows, dim, c->residual_scale);

    norm_rows(&ws->act, ws->normed, hidden, w->ffn_norm, n, dim, c->rms_eps);
    matmul_warm_up((const weight_matrix *[]){&w->w_down}, 1, n);
    {
        const matmul_product gate_up[] = {{ws->gate, &ws->act, &w->w_gate}, {ws->up, &ws->act, &w->w_up}};
        matmul_weights_many(gate_up, 2);
    }
    gate_times(ws->gate, ws->up, (long)n * ffn, c->gelu);
    act_buffer_set(&ws->act, ws->gate, n, ffn);
    if (layer + 1 < m->slice.end_layer) {
        const layer_weights *next = &m->layers[layer + 1];
        matmul_warm_up((const weight_matrix *[]){&next->wq, &next->wk, &next->wv}, 3, n);
    } else if (m->output.data) {
        matmul_warm_up((const weight_matrix *[]){&m->output}, 1, n);
    }
    matmul_weights(ws->projection, &ws->act, &w->w_down);
    post_norm(ws->projection, w->ffn_post_norm, n, dim, c->rms_eps);
    add_residual(hidden, ws->projection, rows, dim, c->residual_scale);
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
    for (int i = from; i < to; i++) rope_and_store(c, x[i].w, kv, x[i].local_layer, 0, rows, x[i].q, x[i].k, x[i].v, ws);
    if (partner) {
        attention_of_rows(c, kv, x[from].local_layer, 0, rows, x[from].q, x[from].attention, ws);
    } else {
        const int local_layers[2] = {x[0].local_layer, x[1].local_layer};
        const float *const q[2] = {x[0].q, x[1].q};
        float *const out[2] = {x[0].attention, x[1].attention};
        attention_of_pair(c, kv, rows, local_layers, q, out, ws);
    }
    n_products = 0;
    for (int i = from; i < to; i++) {
        act_buffer_set(x[i].act, x[i].attention, n, c->q_dim);
        products[n_products++] = (matmul_product){x[i].projection, x[i].act, &x[i].w->wo};
    }
    matmul_weights_many(products, n_products);
    if (swap_contributions(partner, x, n, dim, err)) return -1;
    for (int i = 0; i < 2; i++) add_residual(hidden, x[i].projection, rows, dim, c->residual_scale); /* h + a, then + b */

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
        gate_times(x[i].gate, x[i].up, (long)n * ffn, c->gelu);
        act_buffer_set(x[i].act, x[i].gate, n, ffn);
        products[n_products++] = (matmul_product){x[i].projection, x[i].act, &x[i].w->w_down};
    }
    matmul_weights_many(products, n_products);
    if (swap_contributions(partner, x, n, dim, err)) return -1;
    for (int i = 0; i < 2; i++) add_residual(hidden, x[i].projection, rows, dim, c->residual_scale);
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
        if (m->config.sliding_window > 0 || m->config.block_norms)
            return ramp_fail(err, "parallel layers: %s's layers (sliding windows, norms after each block) cannot be "
                                  "paired yet", m->path);
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
    if (m->slice.first_layer < m->slice.end_layer) { /* the next step starts there, after the sampling */
        const layer_weights *first = &m->layers[m->slice.first_layer];
        matmul_warm_up((const weight_matrix *[]){&first->wq, &first->wk, &first->wv}, 3, n);
    }
    matmul_weights(logits, &ws->act, &m->output);
    scale_logits(m, logits, (size_t)n * (size_t)m->output.rows);
}

void forward_logits_of(const model *m, const float *hidden, int n, const int *tokens, int n_tokens, float *out,
                       forward_workspace *ws) {
    norm_rows(&ws->act, ws->normed, hidden, m->output_norm, n, m->config.dim, m->config.rms_eps);
    matmul_weight_rows(out, &ws->act, &m->output, tokens, n_tokens);
    scale_logits(m, out, (size_t)n * (size_t)n_tokens);
}
