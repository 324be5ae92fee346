/* test_pairs.c: layer-parallel pairs (forward.h) against a straightforward reference.
 *
 * The reference computes a pair the plain way, from the weights expanded to fp32 with double sums:
 *   h'  = h  + Attn_a(norm_a(h))  + Attn_b(norm_b(h))
 *   h'' = h' + MLP_a(norm'_a(h')) + MLP_b(norm'_b(h'))
 * on one sequence, with causal attention over its own keys and values. ramp's fused pair must
 * agree with it (to float rounding), fill each member's own KV cache with that member's keys, give a
 * decode row the same state as the same position inside a prompt, give a row the same bits alone as
 * inside a batch, and refuse ranges that cut a pair. Plain layers give a prompt row the same bits
 * whatever block of rows it attends in. Uses lite16 (trained norms that differ from
 * layer to layer, so a member reading the other's norm would show) from $RAMP_SHARED.
 */
#include <criterion/criterion.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "forward.h"
#include "kv_cache.h"
#include "model.h"
#include "quant.h"
#include "shared_files.h"

static void load_lite16(model *m) {
    char path[4096];
    shared_file(path, sizeof path, "models/lite16/model-f32.gguf");
    ramp_error err;
    cr_assert_eq(model_load(m, path, NULL, false, NULL, &err), 0, "%s", err.message);
}

static float *expand(const weight_matrix *w) {
    float *out = malloc((size_t)w->rows * w->cols * sizeof(float));
    for (int r = 0; r < w->rows; r++)
        dequantize(w->type, (const char *)w->data + (size_t)r * w->row_bytes, out + (size_t)r * w->cols, (size_t)w->cols);
    return out;
}

/* y[o] = sum_i x[i] * W[o][i], in double. */
static void product(const float *w, const float *x, int in, int out, float *y) {
    for (int o = 0; o < out; o++) {
        double sum = 0;
        for (int i = 0; i < in; i++) sum += (double)w[(size_t)o * in + i] * x[i];
        y[o] = (float)sum;
    }
}

static void norm(const float *x, const float *weight, int dim, float eps, float *out) {
    double squares = 0;
    for (int i = 0; i < dim; i++) squares += (double)x[i] * x[i];
    double scale = 1.0 / sqrt(squares / dim + eps);
    for (int i = 0; i < dim; i++) out[i] = (float)(weight[i] * scale * x[i]);
}

static void rope(float *v, int heads, const model_config *c, int position) {
    for (int h = 0; h < heads; h++)
        for (int i = 0; i < c->rope_dim / 2; i++) {
            double angle = position / pow(c->rope_base, 2.0 * i / c->rope_dim);
            float *p = v + h * c->head_dim + 2 * i;
            double x0 = p[0], x1 = p[1];
            p[0] = (float)(x0 * cos(angle) - x1 * sin(angle));
            p[1] = (float)(x0 * sin(angle) + x1 * cos(angle));
        }
}

/* Member `layer`'s attention contribution for n positions of one sequence read from x (not normed),
 * with its keys (after RoPE) into keys_out [n][kv_dim]. */
static void reference_attention(const model *m, int layer, const float *x, int n, float *contribution,
                                float *keys_out) {
    const model_config *c = &m->config;
    const layer_weights *w = &m->layers[layer];
    const int dim = c->dim, kv = c->kv_dim;
    float *wq = expand(&w->wq), *wk = expand(&w->wk), *wv = expand(&w->wv), *wo = expand(&w->wo);
    float *q = malloc(sizeof(float) * n * dim), *k = malloc(sizeof(float) * n * kv), *v = malloc(sizeof(float) * n * kv);
    float *normed = malloc(sizeof(float) * dim), *attended = malloc(sizeof(float) * dim);
    for (int t = 0; t < n; t++) {
        norm(x + (size_t)t * dim, w->attn_norm, dim, c->rms_eps, normed);
        product(wq, normed, dim, dim, q + (size_t)t * dim);
        product(wk, normed, dim, kv, k + (size_t)t * kv);
        product(wv, normed, dim, kv, v + (size_t)t * kv);
        rope(q + (size_t)t * dim, c->n_heads, c, t);
        rope(k + (size_t)t * kv, c->n_kv_heads, c, t);
    }
    memcpy(keys_out, k, sizeof(float) * n * kv);
    double *scores = malloc(sizeof(double) * n);
    for (int t = 0; t < n; t++) {
        for (int h = 0; h < c->n_heads; h++) {
            int kv_head = h / (c->n_heads / c->n_kv_heads);
            double max = -INFINITY, total = 0;
            for (int u = 0; u <= t; u++) {
                double dot = 0;
                for (int i = 0; i < c->head_dim; i++)
                    dot += (double)q[(size_t)t * dim + h * c->head_dim + i] * k[(size_t)u * kv + kv_head * c->head_dim + i];
                scores[u] = dot / sqrt((double)c->head_dim);
                if (scores[u] > max) max = scores[u];
            }
            for (int u = 0; u <= t; u++) total += scores[u] = exp(scores[u] - max);
            for (int i = 0; i < c->head_dim; i++) {
                double sum = 0;
                for (int u = 0; u <= t; u++) sum += scores[u] / total * v[(size_t)u * kv + kv_head * c->head_dim + i];
                attended[h * c->head_dim + i] = (float)sum;
            }
        }
        product(wo, attended, dim, dim, contribution + (size_t)t * dim);
    }
    free(scores);
    free(wq), free(wk), free(wv), free(wo), free(q), free(k), free(v), free(normed), free(attended);
}

static void reference_mlp(const model *m, int layer, const float *x, int n, float *contribution) {
    const model_config *c = &m->config;
    const layer_weights *w = &m->layers[layer];
    const int dim = c->dim, ffn = c->ffn_dim;
    float *wg = expand(&w->w_gate), *wu = expand(&w->w_up), *wd = expand(&w->w_down);
    float *normed = malloc(sizeof(float) * dim), *g = malloc(sizeof(float) * ffn), *u = malloc(sizeof(float) * ffn);
    for (int t = 0; t < n; t++) {
        norm(x + (size_t)t * dim, w->ffn_norm, dim, c->rms_eps, normed);
        product(wg, normed, dim, ffn, g);
        product(wu, normed, dim, ffn, u);
        for (int i = 0; i < ffn; i++) g[i] = (float)(g[i] / (1.0 + exp(-(double)g[i])) * u[i]);
        product(wd, g, ffn, dim, contribution + (size_t)t * dim);
    }
    free(wg), free(wu), free(wd), free(normed), free(g), free(u);
}

/* h (n positions of one sequence) through the pair (a, a + 1), the plain way; keys of each member. */
static void reference_pair(const model *m, int a, float *h, int n, float *keys_a, float *keys_b) {
    const int dim = m->config.dim;
    float *ca = malloc(sizeof(float) * n * dim), *cb = malloc(sizeof(float) * n * dim);
    reference_attention(m, a, h, n, ca, keys_a);
    reference_attention(m, a + 1, h, n, cb, keys_b);
    for (int i = 0; i < n * dim; i++) h[i] = h[i] + ca[i] + cb[i];
    reference_mlp(m, a, h, n, ca);
    reference_mlp(m, a + 1, h, n, cb);
    for (int i = 0; i < n * dim; i++) h[i] = h[i] + ca[i] + cb[i];
    free(ca);
    free(cb);
}

/* Largest difference relative to the largest reference value. */
static double relative_difference(const float *got, const float *want, size_t n) {
    double difference = 0, scale = 1e-30;
    for (size_t i = 0; i < n; i++) {
        difference = fmax(difference, fabs((double)got[i] - want[i]));
        scale = fmax(scale, fabs((double)want[i]));
    }
    return difference / scale;
}

typedef struct {
    model m;
    kv_cache kv;
    forward_workspace ws;
} fixture;

static void fixture_open(fixture *f, int n_slots, int rows) {
    load_lite16(&f->m);
    ramp_error err;
    cr_assert_eq(kv_cache_init(&f->kv, f->m.config.n_layers, f->m.config.n_kv_heads, f->m.config.head_dim, KV_F32, n_slots, &err), 0, "%s", err.message);
    for (int s = 0; s < n_slots; s++) cr_assert_eq(kv_slot_reserve(&f->kv, s, 64, &err), 0, "%s", err.message);
    cr_assert_eq(forward_workspace_init(&f->ws, &f->m.config, rows, 64, &err), 0, "%s", err.message);
    cr_assert_eq(forward_workspace_enable_pairs(&f->ws, &f->m.config, &err), 0, "%s", err.message);
}

static void fixture_close(fixture *f) {
    forward_workspace_free(&f->ws);
    kv_cache_free(&f->kv);
    model_free(&f->m);
}

/* Embeddings of a made-up sequence: the hidden state a pair in the middle would read, roughly. */
static void sequence(const model *m, int n, int seed, float *hidden) {
    int tokens[64];
    for (int t = 0; t < n; t++) tokens[t] = 1 + (seed * 131 + t * 37) % (m->config.vocab_size - 1);
    ramp_error err;
    cr_assert_eq(forward_embed(m, tokens, n, hidden, &err), 0, "%s", err.message);
}

Test(pairs, fused_pair_matches_the_reference_and_fills_each_members_cache) {
    fixture f;
    enum { N = 12, A = 6 };
    fixture_open(&f, 1, N);
    const int dim = f.m.config.dim, kv = f.m.config.kv_dim;
    float hidden[N * 128], want[N * 128], keys_a[N * 64], keys_b[N * 64];
    cr_assert_eq(dim, 128);
    sequence(&f.m, N, 1, hidden);
    memcpy(want, hidden, sizeof hidden);
    reference_pair(&f.m, A, want, N, keys_a, keys_b);
    int slots[N], positions[N];
    for (int t = 0; t < N; t++) slots[t] = 0, positions[t] = t;
    forward_rows rows = {N, slots, positions, NULL};
    forward_pairs pairs = {.first = A, .end = A + 2};
    ramp_error err;
    cr_assert_eq(forward_layers_paired(&f.m, A, A + 2, &pairs, &f.kv, &rows, hidden, &f.ws, &err), 0, "%s", err.message);
    double d = relative_difference(hidden, want, (size_t)N * dim);
    cr_assert_lt(d, 2e-5, "pair output differs from the reference by %g (relative)", d);
    float got_a[N * 64], got_b[N * 64];
    for (int t = 0; t < N; t++) {
        kv_read(&f.kv, 0, A, t, got_a + t * kv, NULL);
        kv_read(&f.kv, 0, A + 1, t, got_b + t * kv, NULL);
        cr_assert(*kv_filled(&f.kv, 0, A, t) && *kv_filled(&f.kv, 0, A + 1, t));
    }
    cr_assert_lt(relative_difference(got_a, keys_a, (size_t)N * kv), 2e-5, "layer %d's keys", A);
    cr_assert_lt(relative_difference(got_b, keys_b, (size_t)N * kv), 2e-5, "layer %d's keys", A + 1);
    /* and it is not what two sequential layers give */
    float sequential[N * 128];
    fixture g;
    fixture_open(&g, 1, N);
    sequence(&g.m, N, 1, sequential);
    cr_assert_eq(forward_layers(&g.m, A, A + 2, &g.kv, &rows, sequential, &g.ws, &err), 0, "%s", err.message);
    cr_assert_gt(relative_difference(sequential, want, (size_t)N * dim), 1e-3, "pair and sequential layers agree?");
    fixture_close(&g);
    fixture_close(&f);
}

Test(pairs, several_pairs_and_plain_layers_in_one_call) {
    /* layers 3..8: 3 plain, (4,5) and (6,7) paired, 8 plain; against the reference pair by pair */
    fixture f;
    enum { N = 9 };
    fixture_open(&f, 1, N);
    const int dim = f.m.config.dim;
    float hidden[N * 128], want[N * 128], keys[2][N * 64];
    sequence(&f.m, N, 2, hidden);
    int slots[N], positions[N];
    for (int t = 0; t < N; t++) slots[t] = 0, positions[t] = t;
    forward_rows rows = {N, slots, positions, NULL};
    ramp_error err;
    /* the plain layers come from forward_layers itself (already checked by the reference tests elsewhere) */
    fixture r;
    fixture_open(&r, 1, N);
    memcpy(want, hidden, sizeof hidden);
    cr_assert_eq(forward_layers(&r.m, 3, 4, &r.kv, &rows, want, &r.ws, &err), 0);
    reference_pair(&r.m, 4, want, N, keys[0], keys[1]);
    reference_pair(&r.m, 6, want, N, keys[0], keys[1]);
    fixture_close(&r);
    fixture_open(&r, 1, N);
    float last[N * 128];
    memcpy(last, want, sizeof want);
    cr_assert_eq(forward_layers(&r.m, 8, 9, &r.kv, &rows, last, &r.ws, &err), 0);
    fixture_close(&r);
    forward_pairs pairs = {.first = 4, .end = 8};
    cr_assert_eq(forward_layers_paired(&f.m, 3, 9, &pairs, &f.kv, &rows, hidden, &f.ws, &err), 0, "%s", err.message);
    double d = relative_difference(hidden, last, (size_t)N * dim);
    cr_assert_lt(d, 1e-4, "layers 3-8 with pairs (4,5), (6,7) differ from the reference by %g", d);
    fixture_close(&f);
}

Test(pairs, decode_row_and_batch_neighbours_change_no_bit) {
    enum { N = 10, A = 8 };
    fixture f;
    fixture_open(&f, 2, 2 * N);
    const int dim = f.m.config.dim;
    forward_pairs pairs = {.first = A, .end = A + 2};
    ramp_error err;
    /* sequence 0 alone, whole: the reference bits */
    float alone[N * 128];
    sequence(&f.m, N, 3, alone);
    int slots[2 * N], positions[2 * N];
    for (int t = 0; t < N; t++) slots[t] = 0, positions[t] = t;
    forward_rows rows = {N, slots, positions, NULL};
    cr_assert_eq(forward_layers_paired(&f.m, A, A + 2, &pairs, &f.kv, &rows, alone, &f.ws, &err), 0, "%s", err.message);
    /* sequence 0 again in slot 1 as a prompt of N - 1 rows batched with another sequence in slot 0,
     * then its last position as a decode row */
    fixture g;
    fixture_open(&g, 2, 2 * N);
    float batch[2 * N * 128];
    sequence(&g.m, N - 1, 3, batch);
    sequence(&g.m, N, 4, batch + (size_t)(N - 1) * dim);
    for (int t = 0; t < N - 1; t++) slots[t] = 1, positions[t] = t;
    for (int t = 0; t < N; t++) slots[N - 1 + t] = 0, positions[N - 1 + t] = t;
    forward_rows mixed = {2 * N - 1, slots, positions, NULL};
    cr_assert_eq(forward_layers_paired(&g.m, A, A + 2, &pairs, &g.kv, &mixed, batch, &g.ws, &err), 0, "%s", err.message);
    cr_assert_eq(memcmp(batch, alone, sizeof(float) * (N - 1) * dim), 0, "prompt rows differ inside a batch");
    float decode[128];
    sequence(&g.m, N, 3, alone + 0); /* recompute the input of the last position */
    memcpy(decode, alone + (size_t)(N - 1) * dim, sizeof decode);
    int slot = 1, position = N - 1;
    forward_rows one = {1, &slot, &position, NULL};
    cr_assert_eq(forward_layers_paired(&g.m, A, A + 2, &pairs, &g.kv, &one, decode, &g.ws, &err), 0, "%s", err.message);
    /* the decode row reads the keys the prompt rows left in both members' caches */
    float whole[N * 128];
    sequence(&f.m, N, 3, whole);
    fixture h;
    fixture_open(&h, 1, N);
    for (int t = 0; t < N; t++) slots[t] = 0, positions[t] = t;
    cr_assert_eq(forward_layers_paired(&h.m, A, A + 2, &pairs, &h.kv, &rows, whole, &h.ws, &err), 0);
    cr_assert_eq(memcmp(decode, whole + (size_t)(N - 1) * dim, sizeof decode), 0, "decode row differs from its prompt position");
    fixture_close(&h);
    fixture_close(&g);
    fixture_close(&f);
}

/* Plain layers too: prompt rows attend in blocks of consecutive rows (attention.c), and a row's bits
 * must not depend on the block it fell in. A row fed alone attends with its query heads grouped by
 * the KV head they share (lite16: two per KV head), a prompt block head by head: the same bits.
 * Forty-one prompt rows in one batch (ten blocks of 4, one of 1) give the bits of the same rows fed
 * one at a time and of the same rows in batches of 3 beside another sequence's rows (other block
 * boundaries). */
Test(pairs, plain_layers_give_prompt_rows_the_same_bits_in_any_block) {
    enum { N = 41, L = 16 }; /* more positions than a block sums at once (VALUE_CHUNK) */
    ramp_error err;
    int slots[2 * N], positions[2 * N];
    fixture whole, single, mixed;
    fixture_open(&whole, 2, 2 * N);
    fixture_open(&single, 2, 2 * N);
    fixture_open(&mixed, 2, 2 * N);
    const int dim = whole.m.config.dim;
    float inputs[N * 128], other[N * 128], expected[N * 128], got[2 * N * 128];
    sequence(&whole.m, N, 5, inputs);
    sequence(&whole.m, N, 9, other);
    memcpy(expected, inputs, sizeof expected);
    for (int t = 0; t < N; t++) slots[t] = 0, positions[t] = t;
    forward_rows rows = {N, slots, positions, NULL};
    cr_assert_eq(forward_layers(&whole.m, 0, L, &whole.kv, &rows, expected, &whole.ws, &err), 0, "%s", err.message);
    memcpy(got, inputs, sizeof inputs);
    for (int t = 0; t < N; t++) {
        int slot = 0, position = t;
        forward_rows one = {1, &slot, &position, NULL};
        cr_assert_eq(forward_layers(&single.m, 0, L, &single.kv, &one, got + (size_t)t * dim, &single.ws, &err), 0, "%s",
                     err.message);
    }
    cr_assert_eq(memcmp(got, expected, sizeof expected), 0, "rows fed one at a time differ from one batch");
    /* batches of up to three rows of the sequence (slot 1), each after two rows of another one (slot 0) */
    for (int start = 0, other_at = 0; start < N; start += 3) {
        const int take = N - start < 3 ? N - start : 3;
        int n = 0;
        for (int k = 0; k < 2 && other_at < N; k++, other_at++, n++) {
            slots[n] = 0, positions[n] = other_at;
            memcpy(got + (size_t)n * dim, other + (size_t)other_at * dim, sizeof(float) * dim);
        }
        const int first = n;
        for (int k = 0; k < take; k++, n++) {
            slots[n] = 1, positions[n] = start + k;
            memcpy(got + (size_t)n * dim, inputs + (size_t)(start + k) * dim, sizeof(float) * dim);
        }
        forward_rows batch = {n, slots, positions, NULL};
        cr_assert_eq(forward_layers(&mixed.m, 0, L, &mixed.kv, &batch, got, &mixed.ws, &err), 0, "%s", err.message);
        cr_assert_eq(memcmp(got + (size_t)first * dim, expected + (size_t)start * dim, sizeof(float) * take * dim), 0,
                     "rows %d-%d differ in a batch beside another sequence", start, start + take - 1);
    }
    fixture_close(&mixed);
    fixture_close(&single);
    fixture_close(&whole);
}

Test(pairs, ranges_that_cut_a_pair_are_refused) {
    fixture f;
    fixture_open(&f, 1, 4);
    float hidden[4 * 128];
    sequence(&f.m, 4, 5, hidden);
    int slots[4] = {0}, positions[4] = {0, 1, 2, 3};
    forward_rows rows = {4, slots, positions, NULL};
    forward_pairs pairs = {.first = 4, .end = 8};
    ramp_error err = {{0}};
    cr_assert_eq(forward_layers_paired(&f.m, 5, 9, &pairs, &f.kv, &rows, hidden, &f.ws, &err), -1);
    cr_assert(strstr(err.message, "layers 5-8 cut a parallel pair"), "%s", err.message);
    cr_assert_eq(forward_layers_paired(&f.m, 0, 5, &pairs, &f.kv, &rows, hidden, &f.ws, &err), -1);
    cr_assert(strstr(err.message, "layers 0-4 cut a parallel pair"), "%s", err.message);
    forward_pairs odd = {.first = 4, .end = 7};
    cr_assert_eq(forward_layers_paired(&f.m, 0, 8, &odd, &f.kv, &rows, hidden, &f.ws, &err), -1);
    cr_assert(strstr(err.message, "expected an even number of layers"), "%s", err.message);
    fixture_close(&f);
}

/* ---- the two-rank form, with two threads standing for the two ranks ---------------------------- */

#include <pthread.h>

typedef struct {
    pthread_barrier_t barrier;
    const float *sent[2];
    int begins; /* runs of pairs member 0 announced */
} swap_point;

typedef struct {
    swap_point *point;
    int member;
} swap_side;

static int swap_exchange(void *context, const float *mine, float *theirs, size_t n, ramp_error *err) {
    (void)err;
    swap_side *side = context;
    side->point->sent[side->member] = mine;
    pthread_barrier_wait(&side->point->barrier);
    memcpy(theirs, side->point->sent[1 - side->member], n * sizeof(float));
    pthread_barrier_wait(&side->point->barrier); /* neither overwrites its buffer before the other read it */
    return 0;
}

static int swap_begin(void *context, int first, int end, const forward_rows *rows, const float *hidden,
                      ramp_error *err) {
    (void)first, (void)end, (void)rows, (void)hidden, (void)err;
    ((swap_side *)context)->point->begins++;
    return 0;
}

typedef struct {
    fixture f;
    float hidden[12 * 128];
    forward_partner partner;
    swap_side side;
    int first, end, status;
    char message[1024];
} member_run;

static void *run_member(void *argument) {
    member_run *m = argument;
    int slots[12], positions[12];
    for (int t = 0; t < 12; t++) slots[t] = 0, positions[t] = t;
    forward_rows rows = {12, slots, positions, NULL};
    forward_pairs pairs = {.first = m->first, .end = m->end, .partner = &m->partner};
    ramp_error err = {{0}};
    m->status = forward_layers_paired(&m->f.m, m->first, m->end, &pairs, &m->f.kv, &rows, m->hidden, &m->f.ws, &err);
    memcpy(m->message, err.message, sizeof m->message);
    return NULL;
}

Test(pairs, two_members_in_two_processes_give_the_fused_bits) {
    enum { N = 12, FIRST = 4, END = 12 }; /* four pairs: (4,5) .. (10,11) */
    fixture fused;
    fixture_open(&fused, 1, N);
    const int dim = fused.m.config.dim, kv = fused.m.config.kv_dim;
    float want[N * 128];
    sequence(&fused.m, N, 6, want);
    int slots[N], positions[N];
    for (int t = 0; t < N; t++) slots[t] = 0, positions[t] = t;
    forward_rows rows = {N, slots, positions, NULL};
    forward_pairs pairs = {.first = FIRST, .end = END};
    ramp_error err;
    cr_assert_eq(forward_layers_paired(&fused.m, FIRST, END, &pairs, &fused.kv, &rows, want, &fused.ws, &err), 0, "%s",
                 err.message);

    swap_point point = {.begins = 0};
    pthread_barrier_init(&point.barrier, NULL, 2);
    member_run *runs = calloc(2, sizeof *runs);
    pthread_t threads[2];
    for (int i = 0; i < 2; i++) {
        fixture_open(&runs[i].f, 1, N);
        sequence(&runs[i].f.m, N, 6, runs[i].hidden);
        runs[i].side = (swap_side){&point, i};
        runs[i].partner = (forward_partner){.member = i, .begin = i == 0 ? swap_begin : NULL, .exchange = swap_exchange,
                                            .context = &runs[i].side};
        runs[i].first = FIRST;
        runs[i].end = END;
    }
    for (int i = 0; i < 2; i++) pthread_create(&threads[i], NULL, run_member, &runs[i]);
    for (int i = 0; i < 2; i++) pthread_join(threads[i], NULL);
    for (int i = 0; i < 2; i++) cr_assert_eq(runs[i].status, 0, "member %d: %s", i, runs[i].message);
    cr_assert_eq(point.begins, 1, "member 0 announced %d runs of pairs, expected 1", point.begins);
    cr_assert_eq(memcmp(runs[0].hidden, want, sizeof(float) * N * dim), 0, "member 0's states differ from the fused pair's");
    cr_assert_eq(memcmp(runs[1].hidden, want, sizeof(float) * N * dim), 0, "member 1's states differ from the fused pair's");
    /* and both agree with the straightforward reference, pair by pair */
    float reference[N * 128], keys_a[N * 64], keys_b[N * 64];
    sequence(&fused.m, N, 6, reference);
    for (int a = FIRST; a < END; a += 2) reference_pair(&fused.m, a, reference, N, keys_a, keys_b);
    for (int i = 0; i < 2; i++) {
        double d = relative_difference(runs[i].hidden, reference, (size_t)N * dim);
        cr_assert_lt(d, 1e-4, "member %d's states differ from the reference pairs by %g (relative)", i, d);
    }
    /* each process holds the keys of its own layers, the fused ones' bits */
    for (int layer = FIRST; layer < END; layer++)
        for (int t = 0; t < N; t++) {
            const member_run *owner = &runs[(layer - FIRST) % 2];
            float owned[64], fused_keys[64];
            kv_read(&owner->f.kv, 0, layer, t, owned, NULL);
            kv_read(&fused.kv, 0, layer, t, fused_keys, NULL);
            cr_assert_eq(memcmp(owned, fused_keys, sizeof(float) * kv), 0, "layer %d position %d: keys differ", layer, t);
        }
    /* a plain layer given to the second member's process is refused */
    forward_pairs wrong = {.first = FIRST, .end = END, .partner = &runs[1].partner};
    cr_assert_eq(forward_layers_paired(&runs[1].f.m, FIRST - 1, FIRST, &wrong, &runs[1].f.kv, &rows, runs[1].hidden,
                                       &runs[1].f.ws, &err), -1);
    cr_assert(strstr(err.message, "runs pairs only"), "%s", err.message);
    for (int i = 0; i < 2; i++) fixture_close(&runs[i].f);
    free(runs);
    pthread_barrier_destroy(&point.barrier);
    fixture_close(&fused);
}
