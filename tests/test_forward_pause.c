/* test_forward_pause.c: a pause between layers (forward_layers_pausing) changes no bit.
 *
 * A pipeline stage takes exit Decisions between the layers of a running micro-batch, and the
 * batches they free run their own layers through the same workspace before the first one goes on.
 * Here a pause runs another sequence (other slot, other positions, so other rotary tables) through
 * the same layers; both sequences must come out bit for bit as when each runs alone, with and
 * without layer-parallel pairs, and the pause must come between layers only, never inside a pair.
 * Uses lite16 from $RAMP_SHARED.
 */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "forward.h"
#include "kv_cache.h"
#include "model.h"
#include "shared_files.h"

enum { FIRST_LAYER = 2, END_LAYER = 10, ROWS = 9, OTHER_ROWS = 5, CONTEXT = 64 };

typedef struct {
    model m;
    kv_cache kv;
    forward_workspace ws;
} fixture;

static void fixture_open(fixture *f) {
    char path[4096];
    shared_file(path, sizeof path, "models/lite16/model-f32.gguf");
    ramp_error err;
    cr_assert_eq(model_load(&f->m, path, NULL, false, NULL, &err), 0, "%s", err.message);
    cr_assert_eq(kv_cache_init(&f->kv, f->m.config.n_layers, f->m.config.n_kv_heads, f->m.config.head_dim, KV_F32, 2, &err), 0, "%s", err.message);
    for (int s = 0; s < 2; s++) cr_assert_eq(kv_slot_reserve(&f->kv, s, CONTEXT, &err), 0, "%s", err.message);
    cr_assert_eq(forward_workspace_init(&f->ws, &f->m.config, ROWS, CONTEXT, &err), 0, "%s", err.message);
    cr_assert_eq(forward_workspace_enable_pairs(&f->ws, &f->m.config, &err), 0, "%s", err.message);
}

static void fixture_close(fixture *f) {
    forward_workspace_free(&f->ws);
    kv_cache_free(&f->kv);
    model_free(&f->m);
}

/* n rows of one sequence in `slot` from position `start`, as embeddings of made-up tokens. */
typedef struct {
    int n, slots[ROWS], positions[ROWS];
    bool kv_only[ROWS];
    float *hidden;
} sequence;

static void sequence_make(const model *m, sequence *s, int n, int slot, int start, int seed) {
    memset(s, 0, sizeof *s);
    s->n = n;
    int tokens[ROWS];
    for (int r = 0; r < n; r++) {
        s->slots[r] = slot;
        s->positions[r] = start + r;
        tokens[r] = 1 + (seed * 131 + r * 37) % (m->config.vocab_size - 1);
    }
    s->hidden = malloc((size_t)n * m->config.dim * sizeof(float));
    ramp_error err;
    cr_assert_eq(forward_embed(m, tokens, n, s->hidden, &err), 0, "%s", err.message);
}

static forward_rows rows_of(sequence *s) { return (forward_rows){s->n, s->slots, s->positions, s->kv_only}; }

/* The pause: runs the other sequence through the same layers once, at its first call. */
typedef struct {
    fixture *f;
    const forward_pairs *pairs;
    sequence *other;
    int calls, ran_at_call;
} pause_state;

static int run_other(void *context, ramp_error *err) {
    pause_state *p = context;
    p->calls++;
    if (p->ran_at_call) return 0;
    p->ran_at_call = p->calls;
    forward_rows rows = rows_of(p->other);
    if (forward_layers_paired(&p->f->m, FIRST_LAYER, END_LAYER, p->pairs, &p->f->kv, &rows, p->other->hidden,
                              &p->f->ws, err))
        return -1;
    return 1;
}

/* Runs main (slot 0) with the other sequence (slot 1) run inside a pause, then each alone in a
 * fresh cache, and compares the bits; returns the number of pauses. */
static int check_pause(const forward_pairs *pairs) {
    fixture f;
    fixture_open(&f);
    sequence main_run, other_run, main_alone, other_alone;
    sequence_make(&f.m, &main_run, ROWS, 0, 3, 1);
    sequence_make(&f.m, &other_run, OTHER_ROWS, 1, 20, 2);
    sequence_make(&f.m, &main_alone, ROWS, 0, 3, 1);
    sequence_make(&f.m, &other_alone, OTHER_ROWS, 1, 20, 2);
    ramp_error err;
    pause_state state = {&f, pairs, &other_run, 0, 0};
    forward_pause pause = {run_other, &state};
    forward_rows rows = rows_of(&main_run);
    cr_assert_eq(forward_layers_pausing(&f.m, FIRST_LAYER, END_LAYER, pairs, &f.kv, &rows, main_run.hidden, &f.ws,
                                        &pause, &err),
                 0, "%s", err.message);
    cr_assert_eq(state.ran_at_call, 1, "the other sequence ran in the first pause");

    kv_cache_free(&f.kv);
    cr_assert_eq(kv_cache_init(&f.kv, f.m.config.n_layers, f.m.config.n_kv_heads, f.m.config.head_dim, KV_F32, 2, &err), 0, "%s", err.message);
    for (int s = 0; s < 2; s++) cr_assert_eq(kv_slot_reserve(&f.kv, s, CONTEXT, &err), 0, "%s", err.message);
    forward_rows alone = rows_of(&main_alone);
    cr_assert_eq(forward_layers_paired(&f.m, FIRST_LAYER, END_LAYER, pairs, &f.kv, &alone, main_alone.hidden, &f.ws, &err),
                 0, "%s", err.message);
    alone = rows_of(&other_alone);
    cr_assert_eq(forward_layers_paired(&f.m, FIRST_LAYER, END_LAYER, pairs, &f.kv, &alone, other_alone.hidden, &f.ws,
                                       &err),
                 0, "%s", err.message);
    const size_t dim = (size_t)f.m.config.dim;
    cr_assert_eq(memcmp(main_run.hidden, main_alone.hidden, ROWS * dim * sizeof(float)), 0,
                 "the paused sequence's states differ from its run alone");
    cr_assert_eq(memcmp(other_run.hidden, other_alone.hidden, OTHER_ROWS * dim * sizeof(float)), 0,
                 "the sequence run in the pause differs from its run alone");
    free(main_run.hidden), free(other_run.hidden), free(main_alone.hidden), free(other_alone.hidden);
    fixture_close(&f);
    return state.calls;
}

Test(forward_pause, other_rows_between_layers_change_no_bit) {
    int calls = check_pause(NULL);
    cr_assert_eq(calls, END_LAYER - FIRST_LAYER - 1, "a pause between every two layers: expected %d, got %d",
                 END_LAYER - FIRST_LAYER - 1, calls);
}

Test(forward_pause, pauses_fall_between_pairs_only) {
    const forward_pairs pairs = {4, 8, NULL}; /* layers 2, 3, (4 5), (6 7), 8, 9 */
    int calls = check_pause(&pairs);
    cr_assert_eq(calls, 5, "units 2, 3, (4 5), (6 7), 8, 9 have 5 gaps, got %d pauses", calls);
}

static int failing_pause(void *context, ramp_error *err) {
    (void)context;
    return ramp_fail(err, "pause failed");
}

Test(forward_pause, a_failing_pause_stops_the_layers) {
    fixture f;
    fixture_open(&f);
    sequence s;
    sequence_make(&f.m, &s, ROWS, 0, 0, 3);
    forward_rows rows = rows_of(&s);
    forward_pause pause = {failing_pause, NULL};
    ramp_error err = {0};
    cr_assert_eq(forward_layers_pausing(&f.m, FIRST_LAYER, END_LAYER, NULL, &f.kv, &rows, s.hidden, &f.ws, &pause, &err),
                 -1);
    cr_assert(strstr(err.message, "pause failed"), "the pause's message comes back, got '%s'", err.message);
    free(s.hidden);
    fixture_close(&f);
}
