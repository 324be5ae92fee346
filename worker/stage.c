#include "stage.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "clock.h"
#include "exit_features.h"
#include "file_identity.h"
#include "wire.h"

/* slot_owner of a slot that holds no request's keys/values */
#define SLOT_FREE UINT64_MAX

static int stage_batch_slots(const stage_config *c) { return 2 * c->max_parked + 1; }

static bool is_last(const stage *s) { return s->config.stage_index == s->config.n_stages; }
static bool is_first(const stage *s) { return s->config.stage_index == 1; }

/* Exit points this stage owns: after layer k with first_layer < k <= end_layer, k < n_layers. */
static bool owns_exit_point(const stage *s, int k) {
    if (k <= s->config.first_layer || k > s->config.end_layer || k >= s->model.config.n_layers) return false;
    for (int i = 0; i < s->config.n_exits; i++)
        if (s->config.exit_layers[i] == k) return true;
    return false;
}

static int head_width(const stage *s) {
    return s->exit_candidates ? s->config.n_exit_candidates : s->model.config.vocab_size;
}

int stage_row_capacity(int max_rows, int max_sequences) {
    int sequences_per_batch = max_rows < max_sequences ? max_rows : max_sequences;
    return max_rows + sequences_per_batch * STAGE_MAX_DEFERRED;
}

/* forward_partner.begin: the partner rank gets the rows and their states for a run of pairs. */
static int send_pair_work(void *context, int first, int end, const forward_rows *rows, const float *hidden,
                          ramp_error *err) {
    stage *s = context;
    const int n = rows->n_rows, dim = s->model.config.dim;
    Ramp__Row row_values[n];
    Ramp__Row *pointers[n];
    for (int r = 0; r < n; r++) {
        ramp__row__init(&row_values[r]);
        row_values[r].slot = (uint32_t)rows->slots[r];
        row_values[r].position = (uint32_t)rows->positions[r];
        row_values[r].kv_only = rows->kv_only && rows->kv_only[r];
        row_values[r].slot_capacity = (uint32_t)s->kv.slots[rows->slots[r]].capacity;
        pointers[r] = &row_values[r];
    }
    Ramp__PairWork w = RAMP__PAIR_WORK__INIT;
    w.n_rows = (size_t)n;
    w.rows = pointers;
    w.first_layer = (uint32_t)first;
    w.end_layer = (uint32_t)end;
    w.hidden_dim = (uint32_t)dim;
    Ramp__Envelope e = RAMP__ENVELOPE__INIT;
    e.body_case = RAMP__ENVELOPE__BODY_PAIR_WORK;
    e.pair_work = &w;
    return send_envelope(s->transport, s->config.partner_rank, &e, hidden, (size_t)n * dim, err);
}

/* forward_partner.exchange: this stage's member contribution for the partner's. */
static int swap_with_partner(void *context, const float *mine, float *theirs, size_t n, ramp_error *err) {
    stage *s = context;
    return transport_exchange(s->transport, s->config.partner_rank, mine, theirs, n * sizeof(float), err);
}

int stage_open(stage *s, const stage_config *config, int rank, transport *t, ramp_error *err) {
    memset(s, 0, sizeof *s);
    s->config = *config;
    s->rank = rank;
    s->transport = t;
    bool needs_head = is_last(s);
    for (int i = 0; i < config->n_exits; i++)
        if (config->exit_layers[i] > config->first_layer && config->exit_layers[i] <= config->end_layer) needs_head = true;
    model_slice slice = {config->first_layer, config->end_layer, is_first(s), needs_head};
    if (file_identity_read(config->model_path, &s->identity, err) ||
        model_load(&s->model, config->model_path, &slice, false, NULL, err))
        return ramp_fail_prefix(err, "rank %d (stage %d, layers %d-%d): ", rank, config->stage_index,
                                config->first_layer, config->end_layer - 1);
    const model_config *c = &s->model.config;
    if (config->exit_candidates) {
        s->exit_candidates = malloc((size_t)config->n_exit_candidates * sizeof(int));
        if (!s->exit_candidates) goto out_of_memory;
        for (int i = 0; i < config->n_exit_candidates; i++) {
            if (config->exit_candidates[i] < 0 || config->exit_candidates[i] >= c->vocab_size) {
                stage_close(s);
                return ramp_fail(err, "rank %d: exit candidate token %d outside the vocabulary of %d", rank,
                                 config->exit_candidates[i], c->vocab_size);
            }
            s->exit_candidates[i] = config->exit_candidates[i];
        }
    }
    s->row_capacity = stage_row_capacity(config->max_rows, config->max_sequences);
    size_t rows = (size_t)s->row_capacity;
    /* A lane whose rows all left at an exit point sends its next micro-batch at once; that batch can
     * reach this stage (through the previous one) before the Decision that frees the old one (MPI
     * orders messages per sender only). So each lane may hold two slots here, plus the running one. */
    int n_batches = stage_batch_slots(config);
    s->batches = calloc((size_t)n_batches, sizeof *s->batches);
    s->deferred = calloc((size_t)config->max_sequences, sizeof *s->deferred);
    s->slot_owner = malloc((size_t)config->max_sequences * sizeof *s->slot_owner);
    if (s->slot_owner)
        for (int i = 0; i < config->max_sequences; i++) s->slot_owner[i] = SLOT_FREE;
    /* the exit heads' logits (the last stage computes its own into the frame that carries them) */
    s->head_logits = malloc(rows * (size_t)head_width(s) * sizeof(float));
    s->slots = malloc(rows * sizeof(int));
    s->positions = malloc(rows * sizeof(int));
    s->kv_only = malloc(rows * sizeof(bool));
    s->request_ids = malloc(rows * sizeof(uint64_t));
    if (!s->batches || !s->deferred || !s->slot_owner || !s->head_logits || !s->slots || !s->positions || !s->kv_only ||
        !s->request_ids)
        goto out_of_memory;
    for (int b = 0; b < n_batches; b++) {
        s->batches[b].rows = malloc(rows * sizeof(stage_row));
        s->batches[b].hidden = malloc(rows * (size_t)c->dim * sizeof(float));
        s->batches[b].parked_hidden = malloc(rows * (size_t)c->dim * sizeof(float));
        if (!s->batches[b].rows || !s->batches[b].hidden || !s->batches[b].parked_hidden) goto out_of_memory;
    }
    const forward_pairs *pairs = &config->pairs;
    if (pairs->first < pairs->end &&
        ((pairs->end - pairs->first) % 2 || pairs->end > c->n_layers ||
         forward_pair_starts(pairs, config->first_layer - 1) || forward_pair_starts(pairs, config->end_layer - 1))) {
        stage_close(s);
        return ramp_fail(err, "rank %d: parallel layers %d-%d: expected pairs inside the model and outside or inside "
                              "this stage's layers %d-%d", rank, pairs->first, pairs->end - 1, config->first_layer,
                         config->end_layer - 1);
    }
    bool paired = pairs->first < config->end_layer && pairs->end > config->first_layer && pairs->first < pairs->end;
    if (kv_cache_init(&s->kv, config->end_layer - config->first_layer, c->n_kv_heads, c->head_dim, config->kv_type, config->max_sequences, err) ||
        forward_workspace_init(&s->workspace, c, s->row_capacity, config->context, err) ||
        (paired && forward_workspace_enable_pairs(&s->workspace, c, err))) {
        stage_close(s);
        return ramp_fail_prefix(err, "rank %d: ", rank);
    }
    s->pairs = config->pairs;
    if (config->partner_rank > 0) {
        s->partner = (forward_partner){.member = 0, .begin = send_pair_work, .exchange = swap_with_partner, .context = s};
        s->pairs.partner = &s->partner;
    }
    s->opened_at = clock_seconds();
    return 0;
out_of_memory:
    stage_close(s);
    return ramp_fail(err, "rank %d: out of memory for micro-batches of %d rows", rank, config->max_rows);
}

void stage_close(stage *s) {
    if (s->kv.slots) kv_cache_free(&s->kv);
    forward_workspace_free(&s->workspace);
    if (s->batches)
        for (int b = 0; b < stage_batch_slots(&s->config); b++) {
            free(s->batches[b].rows);
            free(s->batches[b].hidden);
            free(s->batches[b].parked_hidden);
        }
    free(s->batches);
    if (s->deferred)
        for (int i = 0; i < s->config.max_sequences; i++) free(s->deferred[i].hidden);
    free(s->deferred);
    free(s->slot_owner);
    for (int i = 0; i < s->n_held; i++) free(s->held[i].frame);
    free(s->held);
    free(s->exit_candidates);
    free(s->head_logits);
    free(s->slots);
    free(s->positions);
    free(s->kv_only);
    free(s->request_ids);
    model_free(&s->model);
    memset(s, 0, sizeof *s);
}

/* A frame of e (stamped with this build's protocol version) with room for n payload floats. */
static int pack_room(Ramp__Envelope *e, size_t n, uint8_t **frame, size_t *length, float **payload, ramp_error *err) {
    e->version = WIRE_PROTOCOL_VERSION;
    return wire_pack_room(e, n, frame, length, payload, err);
}

static int pack_and_send(transport *t, int destination, Ramp__Envelope *e, const float *payload, size_t n, bool urgent,
                         ramp_error *err) {
    uint8_t *frame;
    size_t length;
    float *room;
    if (pack_room(e, n, &frame, &length, &room, err)) return -1;
    if (n) memcpy(room, payload, n * sizeof(float));
    return urgent ? transport_send_urgent(t, destination, frame, length, err)
                  : transport_send(t, destination, frame, length, err);
}

int send_envelope(transport *t, int destination, Ramp__Envelope *e, const float *payload, size_t n, ramp_error *err) {
    return pack_and_send(t, destination, e, payload, n, false, err);
}

int send_urgent_envelope(transport *t, int destination, Ramp__Envelope *e, ramp_error *err) {
    return pack_and_send(t, destination, e, NULL, 0, true, err);
}

int send_failure(transport *t, int rank, const char *message) {
    Ramp__Envelope e = RAMP__ENVELOPE__INIT;
    Ramp__Failure f = RAMP__FAILURE__INIT;
    f.rank = (uint32_t)rank;
    f.message = (char *)message;
    e.body_case = RAMP__ENVELOPE__BODY_FAILURE;
    e.failure = &f;
    ramp_error ignored;
    return send_envelope(t, 0, &e, NULL, 0, &ignored);
}

int stage_send_hello(stage *s, ramp_error *err) {
    Ramp__Envelope e = RAMP__ENVELOPE__INIT;
    Ramp__Hello h = RAMP__HELLO__INIT;
    h.rank = (uint32_t)s->rank;
    h.first_layer = (uint32_t)s->config.first_layer;
    h.end_layer = (uint32_t)s->config.end_layer;
    h.weight_bytes = s->model.weight_bytes;
    h.model_file_bytes = s->identity.bytes;
    h.model_checksum = s->identity.checksum;
    h.n_layers = (uint32_t)s->model.config.n_layers;
    h.dim = (uint32_t)s->model.config.dim;
    h.vocab_size = (uint32_t)s->model.config.vocab_size;
    h.busy_seconds = s->busy_seconds;
    h.batches = s->batches_run;
    h.rows = s->rows;
    e.body_case = RAMP__ENVELOPE__BODY_HELLO;
    e.hello = &h;
    return send_envelope(s->transport, 0, &e, NULL, 0, err);
}

/* ---- kept states of exited tokens ----------------------------------------------------------- */

static int defer_row(stage *s, const stage_row *row, const float *hidden, int exit_layer, bool kv_only,
                     ramp_error *err) {
    deferred_rows *d = &s->deferred[row->slot];
    const int dim = s->model.config.dim;
    /* A RELEASE of the slot (from the previous stage) can overtake the Decision (from rank 0):
     * states of a request other than the slot's current one are stale, never joined. */
    if (d->count > 0 && d->request_id != row->request_id) d->count = 0;
    d->request_id = row->request_id;
    if (!d->hidden) {
        d->hidden = malloc((size_t)STAGE_MAX_DEFERRED * dim * sizeof(float));
        if (!d->hidden) return ramp_fail(err, "out of memory keeping an exited token's state");
    }
    if (d->count == STAGE_MAX_DEFERRED)
        return ramp_fail(err, "slot %d already keeps %d exited tokens", row->slot, STAGE_MAX_DEFERRED);
    d->exit_layer[d->count] = exit_layer;
    d->position[d->count] = row->position;
    d->kv_only[d->count] = kv_only;
    memcpy(d->hidden + (size_t)d->count * dim, hidden, (size_t)dim * sizeof(float));
    d->count++;
    return 0;
}

/* Rows of exited tokens that stopped at `layer` join the batch when their sequence goes deeper. */
static void append_deferred(stage *s, stage_batch *b, int layer) {
    const int dim = s->model.config.dim, n_live = b->n_rows;
    for (int r = 0; r < n_live; r++) {
        if (r > 0 && b->rows[r - 1].slot == b->rows[r].slot) continue; /* once per sequence */
        deferred_rows *d = &s->deferred[b->rows[r].slot];
        if (d->request_id != b->rows[r].request_id) continue; /* another request's: stale */
        for (int i = 0; i < d->count;) {
            if (d->exit_layer[i] != layer || b->n_rows == s->row_capacity) {
                i++;
                continue;
            }
            stage_row *row = &b->rows[b->n_rows];
            *row = (stage_row){.request_id = b->rows[r].request_id, .slot = b->rows[r].slot,
                               .position = d->position[i], .kv_only = d->kv_only[i]};
            memcpy(b->hidden + (size_t)b->n_rows * dim, d->hidden + (size_t)i * dim, (size_t)dim * sizeof(float));
            b->n_rows++;
            /* remove entry i by moving the last one into its place */
            d->count--;
            d->exit_layer[i] = d->exit_layer[d->count];
            d->position[i] = d->position[d->count];
            d->kv_only[i] = d->kv_only[d->count];
            memcpy(d->hidden + (size_t)i * dim, d->hidden + (size_t)d->count * dim, (size_t)dim * sizeof(float));
        }
    }
}

/* ---- running micro-batches ------------------------------------------------------------------ */

static int send_exit_features(stage *s, stage_batch *b, bool parks, ramp_error *err);
static int finish_batch(stage *s, stage_batch *b, ramp_error *err);
static int take_decisions(void *context, ramp_error *err);

/* What take_decisions needs: the stage, and the batch whose layers it interrupts. */
typedef struct {
    stage *s;
    stage_batch *b;
} pause_context;

static void fill_rows(stage *s, const stage_batch *b) {
    for (int r = 0; r < b->n_rows; r++) {
        s->slots[r] = b->rows[r].slot;
        s->positions[r] = b->rows[r].position;
        s->kv_only[r] = b->rows[r].kv_only;
    }
}

/* Runs the batch's layers up to end_layer. Unless it runs ahead of a Decision (speculative), it
 * takes the Decisions that arrive meanwhile between its layers (take_decisions). */
static int run_layers(stage *s, stage_batch *b, int end_layer, bool speculative, ramp_error *err) {
    fill_rows(s, b);
    forward_rows rows = {b->n_rows, s->slots, s->positions, s->kv_only};
    pause_context context = {s, b};
    forward_pause pause = {take_decisions, &context};
    const bool pauses = !speculative && !s->taking_decisions;
    b->running = true;
    double start = clock_seconds(), paused_before = s->paused_seconds;
    int status = forward_layers_pausing(&s->model, b->layers_done, end_layer, &s->pairs, &s->kv, &rows, b->hidden,
                                        &s->workspace, pauses ? &pause : NULL, err);
    b->running = false;
    /* the Decisions' batches count their own layers */
    s->compute_seconds += clock_seconds() - start - (s->paused_seconds - paused_before);
    s->layer_rows += (uint64_t)b->n_rows * (uint64_t)(end_layer - b->layers_done);
    s->layer_batches += (uint64_t)(end_layer - b->layers_done);
    b->layers_done = end_layer;
    return status;
}

/* Rows whose request wants exit features at this point: they want output and use exits. */
static bool reports_features(const stage_row *row) {
    return row->wants_output && !row->kv_only && row->exit != EXIT_MODE_NONE;
}

static bool has_reporting_rows(const stage_batch *b) {
    for (int r = 0; r < b->n_rows; r++)
        if (reports_features(&b->rows[r])) return true;
    return false;
}

/* A decision is awaited when any reporting row's request lets the coordinator decide. */
static bool awaits_decision(const stage_batch *b) {
    for (int r = 0; r < b->n_rows; r++)
        if (reports_features(&b->rows[r]) && b->rows[r].exit == EXIT_MODE_DECIDE) return true;
    return false;
}

/* Where the batch's next segment ends: the next exit point this stage owns, or its last layer. */
static int segment_end_of(const stage *s, const stage_batch *b) {
    for (int k = b->layers_done + 1; k < s->config.end_layer && b->mode != EXIT_MODE_NONE; k++)
        if (owns_exit_point(s, k)) return k;
    return s->config.end_layer;
}

/* The batch has run up to the end of a segment: at an exit point its features go to the
 * coordinator; returns 1 when it parks there for a Decision, 0 when it goes on, -1 on error. */
static int at_segment_end(stage *s, stage_batch *b, ramp_error *err) {
    if (b->mode != EXIT_MODE_NONE && owns_exit_point(s, b->layers_done) && has_reporting_rows(b)) {
        bool parks = awaits_decision(b);
        if (send_exit_features(s, b, parks, err)) return -1;
        if (parks) return 1;
    }
    append_deferred(s, b, b->layers_done);
    return 0;
}

/* Runs a batch from where it stands until it parks at an exit point or leaves the stage. */
static int advance_batch(stage *s, stage_batch *b, ramp_error *err) {
    while (b->layers_done < s->config.end_layer) {
        if (run_layers(s, b, segment_end_of(s, b), false, err)) return -1;
        int parked = at_segment_end(s, b, err);
        if (parked) return parked < 0 ? -1 : 0; /* parked until the decision */
    }
    return finish_batch(s, b, err);
}

/* Index of the exit point after `layer` layers in the job's list, or -1. */
static int exit_point_index(const stage *s, int layer) {
    for (int i = 0; i < s->config.n_exits; i++)
        if (s->config.exit_layers[i] == layer) return i;
    return -1;
}

/* Running ahead costs the work of the rows that then leave: only from exit points where so far at
 * most half of the rows left (a quarter assumed before any Decision). */
#define RUN_AHEAD_MAX_LEAVING 0.5

/* A parked batch may run ahead unless rows kept at this exit point would join it here once the
 * Decision comes (append_deferred): they must start from this layer with the others. */
static bool may_speculate(const stage *s, const stage_batch *b) {
    if (!b->in_use || b->speculated_to > b->layers_done || b->layers_done >= s->config.end_layer) return false;
    int point = exit_point_index(s, b->layers_done);
    if (point < 0) return false;
    double leaving = (s->rows_left[point] + 1.0) / (s->rows_decided[point] + 4.0);
    if (leaving > RUN_AHEAD_MAX_LEAVING) return false;
    for (int r = 0; r < b->n_rows; r++) {
        const deferred_rows *d = &s->deferred[b->rows[r].slot];
        for (int i = 0; i < d->count; i++)
            if (d->exit_layer[i] == b->layers_done) return false;
    }
    return true;
}

int stage_idle(stage *s, ramp_error *err) {
    for (int i = 0; i < stage_batch_slots(&s->config); i++) {
        stage_batch *b = &s->batches[i];
        if (!may_speculate(s, b)) continue;
        double start = clock_seconds();
        if (s->last_frame_done > 0) s->decision_wait_seconds += start - s->last_frame_done; /* it was parked */
        const int parked_at = b->layers_done, end = segment_end_of(s, b);
        memcpy(b->parked_hidden, b->hidden, (size_t)b->n_rows * s->model.config.dim * sizeof(float));
        int status = run_layers(s, b, end, true, err);
        s->speculated_layer_rows += (uint64_t)b->n_rows * (uint64_t)(end - parked_at);
        b->speculated_to = end;
        b->layers_done = parked_at; /* still parked at the exit point until its Decision */
        s->last_frame_done = clock_seconds();
        s->busy_seconds += s->last_frame_done - start;
        return status ? ramp_fail_prefix(err, "rank %d (stage %d): ", s->rank, s->config.stage_index) : 1;
    }
    return 0;
}

/* Rows that left after their batch ran ahead: their keys/values beyond the exit point must read as
 * they would without the speculation. recompute fills them later with the same values (the same
 * inputs, row by row); copy and omit never had them. */
static void unfill_speculated(stage *s, const stage_row *row, int from_layer, int to_layer) {
    if (s->config.kv_fill == KV_FILL_RECOMPUTE) return;
    /* The Decision comes from rank 0, the slot's RELEASE through the previous stage: the release
     * may be here first, and then the slot has no keys/values of this request left to unfill. */
    if (s->slot_owner[row->slot] != row->request_id) return;
    for (int layer = from_layer; layer < to_layer; layer++)
        *kv_filled(&s->kv, row->slot, layer - s->config.first_layer, row->position) = 0;
}

/* Features of the rows that want output, at the exit point the batch stands at. */
static int send_exit_features(stage *s, stage_batch *b, bool parks, ramp_error *err) {
    const int dim = s->model.config.dim, width = head_width(s);
    double start = clock_seconds();
    int n_out = 0;
    for (int r = 0; r < b->n_rows; r++) {
        if (!reports_features(&b->rows[r])) continue;
        /* gather the reporting rows' states into the workspace's projection buffer, contiguous */
        memcpy(s->workspace.projection + (size_t)n_out * dim, b->hidden + (size_t)r * dim, (size_t)dim * sizeof(float));
        s->request_ids[n_out++] = b->rows[r].request_id;
    }
    exit_head_logits(&s->model, s->workspace.projection, n_out, s->exit_candidates, width, s->head_logits,
                     &s->workspace);
    Ramp__ExitFeatures features[n_out];
    Ramp__ExitFeatures *pointers[n_out];
    for (int i = 0; i < n_out; i++) {
        exit_features f;
        exit_features_compute(s->head_logits + (size_t)i * width, width, s->exit_candidates, &f);
        ramp__exit_features__init(&features[i]);
        features[i].request_id = s->request_ids[i];
        features[i].layer = (uint32_t)b->layers_done;
        features[i].top_prob = f.top_prob;
        features[i].gap = f.gap;
        features[i].top_token = f.top_token;
        features[i].entropy = f.entropy;
        pointers[i] = &features[i];
    }
    s->exit_head_seconds += clock_seconds() - start;
    Ramp__Output o = RAMP__OUTPUT__INIT;
    o.batch_id = b->batch_id;
    o.stage = (uint32_t)s->config.stage_index;
    o.n_features = (size_t)n_out;
    o.features = pointers;
    o.exit_layer = (uint32_t)b->layers_done;
    o.final = false;
    o.awaits_decision = parks;
    Ramp__Envelope e = RAMP__ENVELOPE__INIT;
    e.body_case = RAMP__ENVELOPE__BODY_OUTPUT;
    e.output = &o;
    return send_envelope(s->transport, 0, &e, NULL, 0, err);
}

static int forward_batch(stage *s, stage_batch *b, ramp_error *err) {
    const int dim = s->model.config.dim;
    Ramp__Row rows[b->n_rows];
    Ramp__Row *pointers[b->n_rows];
    for (int r = 0; r < b->n_rows; r++) {
        const stage_row *x = &b->rows[r];
        ramp__row__init(&rows[r]);
        rows[r].request_id = x->request_id;
        rows[r].slot = (uint32_t)x->slot;
        rows[r].position = (uint32_t)x->position;
        rows[r].token = x->token;
        rows[r].wants_output = x->wants_output;
        rows[r].slot_capacity = (uint32_t)x->slot_capacity;
        rows[r].kv_only = x->kv_only;
        rows[r].exit_mode = (uint32_t)x->exit;
        pointers[r] = &rows[r];
    }
    Ramp__Work w = RAMP__WORK__INIT;
    w.batch_id = b->batch_id;
    w.n_rows = (size_t)b->n_rows;
    w.rows = pointers;
    w.has_hidden = true;
    w.hidden_dim = (uint32_t)dim;
    Ramp__Envelope e = RAMP__ENVELOPE__INIT;
    e.body_case = RAMP__ENVELOPE__BODY_WORK;
    e.work = &w;
    return send_envelope(s->transport, s->config.next_rank, &e, b->hidden, (size_t)b->n_rows * dim, err);
}

/* The batch has run all of this stage's layers: pass it on, or (last stage) return logits. */
static int finish_batch(stage *s, stage_batch *b, ramp_error *err) {
    s->batches_run++;
    int status;
    if (!is_last(s)) {
        status = forward_batch(s, b, err);
    } else {
        const int dim = s->model.config.dim, vocab = s->model.config.vocab_size;
        int n_out = 0;
        for (int r = 0; r < b->n_rows; r++) {
            if (!b->rows[r].wants_output || b->rows[r].kv_only) continue;
            memcpy(s->workspace.projection + (size_t)n_out * dim, b->hidden + (size_t)r * dim, (size_t)dim * sizeof(float));
            s->request_ids[n_out++] = b->rows[r].request_id;
        }
        Ramp__Output o = RAMP__OUTPUT__INIT;
        o.batch_id = b->batch_id;
        o.stage = (uint32_t)s->config.stage_index;
        o.n_output_request_ids = (size_t)n_out;
        o.output_request_ids = s->request_ids;
        o.vocab_size = (uint32_t)vocab;
        o.final = true;
        o.exit_layer = (uint32_t)s->model.config.n_layers;
        Ramp__Envelope e = RAMP__ENVELOPE__INIT;
        e.body_case = RAMP__ENVELOPE__BODY_OUTPUT;
        e.output = &o;
        /* the logits are computed into the frame that carries them */
        uint8_t *frame;
        size_t length;
        float *logits;
        status = pack_room(&e, (size_t)n_out * vocab, &frame, &length, &logits, err);
        if (!status) {
            if (n_out) forward_logits(&s->model, s->workspace.projection, n_out, logits, &s->workspace);
            status = transport_send(s->transport, 0, frame, length, err);
        }
    }
    b->in_use = false;
    return status;
}

static stage_batch *free_batch(stage *s) {
    for (int i = 0; i < stage_batch_slots(&s->config); i++)
        if (!s->batches[i].in_use) return &s->batches[i];
    return NULL;
}

static int stage_accept_work(stage *s, const Ramp__Work *work, const float *payload, size_t n_payload,
                             ramp_error *err) {
    const model_config *c = &s->model.config;
    const int n = (int)work->n_rows;
    if (n <= 0 || n > s->row_capacity)
        return ramp_fail(err, "micro-batch %llu has %d rows, this stage takes 1..%d", (unsigned long long)work->batch_id,
                         n, s->row_capacity);
    stage_batch *b = free_batch(s);
    if (!b)
        return ramp_fail(err, "more than %d micro-batches wait for exit decisions here (%d lanes)",
                         stage_batch_slots(&s->config) - 1, s->config.max_parked);
    exit_mode deepest = EXIT_MODE_NONE;
    for (int r = 0; r < n; r++) {
        const Ramp__Row *row = work->rows[r];
        if (row->exit_mode > EXIT_MODE_DECIDE) return ramp_fail(err, "row %d has unknown exit mode %u", r, row->exit_mode);
        if ((exit_mode)row->exit_mode > deepest) deepest = (exit_mode)row->exit_mode;
        if (row->slot >= (uint32_t)s->config.max_sequences)
            return ramp_fail(err, "row %d names KV slot %u, this stage has %d", r, row->slot, s->config.max_sequences);
        if (row->slot_capacity > 0) {
            if (row->slot_capacity > (uint32_t)s->config.context)
                return ramp_fail(err, "sequence asks for %u positions, the context is %d", row->slot_capacity,
                                 s->config.context);
            if (kv_slot_reserve(&s->kv, (int)row->slot, (int)row->slot_capacity, err)) return -1;
            s->slot_owner[row->slot] = row->request_id;
            if (s->deferred[row->slot].request_id != row->request_id) s->deferred[row->slot].count = 0;
        }
        b->rows[r] = (stage_row){row->request_id, (int)row->slot, (int)row->position, row->token,
                                 (int)row->slot_capacity, row->wants_output, row->kv_only, (exit_mode)row->exit_mode};
    }
    if (s->kv.bytes_in_use > s->kv_bytes_peak) s->kv_bytes_peak = s->kv.bytes_in_use;
    if (is_first(s)) {
        int tokens[n];
        for (int r = 0; r < n; r++) tokens[r] = b->rows[r].token;
        if (forward_embed(&s->model, tokens, n, b->hidden, err)) return -1;
    } else {
        if (!work->has_hidden || n_payload != (size_t)n * c->dim)
            return ramp_fail(err, "micro-batch %llu carries %zu floats of hidden state, expected %d x %d",
                             (unsigned long long)work->batch_id, n_payload, n, c->dim);
        memcpy(b->hidden, payload, n_payload * sizeof(float));
    }
    s->rows += (uint64_t)n; /* rows received: exited work never counts on later stages */
    b->in_use = true;
    b->mode = deepest;
    b->batch_id = work->batch_id;
    b->n_rows = n;
    b->layers_done = s->config.first_layer;
    return advance_batch(s, b, err);
}

static int stage_accept_decision(stage *s, const Ramp__Decision *d, ramp_error *err) {
    stage_batch *b = NULL;
    for (int i = 0; i < stage_batch_slots(&s->config); i++)
        if (s->batches[i].in_use && s->batches[i].batch_id == d->batch_id) b = &s->batches[i];
    if (!b || b->running)
        return ramp_fail(err, "decision for micro-batch %llu, which is not parked here", (unsigned long long)d->batch_id);
    const int dim = s->model.config.dim;
    bool keep_states = d->token_level && s->config.kv_fill != KV_FILL_OMIT;
    bool ahead = b->speculated_to > b->layers_done;
    const float *exit_states = ahead ? b->parked_hidden : b->hidden; /* the states at the exit point */
    const int point = exit_point_index(s, b->layers_done), decided = b->n_rows;
    int kept = 0;
    for (int r = 0; r < b->n_rows; r++) {
        bool exits = false;
        for (size_t i = 0; i < d->n_exited_request_ids; i++)
            if (d->exited_request_ids[i] == b->rows[r].request_id) exits = true;
        if (exits) {
            if (keep_states) {
                bool kv_only = b->rows[r].kv_only || s->config.kv_fill == KV_FILL_COPY;
                if (defer_row(s, &b->rows[r], exit_states + (size_t)r * dim, b->layers_done, kv_only, err)) return -1;
            }
            if (ahead) {
                if (d->token_level) unfill_speculated(s, &b->rows[r], b->layers_done, b->speculated_to);
                s->wasted_layer_rows += (uint64_t)(b->speculated_to - b->layers_done);
            }
            continue;
        }
        if (kept != r) {
            b->rows[kept] = b->rows[r];
            memcpy(b->hidden + (size_t)kept * dim, b->hidden + (size_t)r * dim, (size_t)dim * sizeof(float));
        }
        kept++;
    }
    b->n_rows = kept;
    if (point >= 0) {
        s->rows_decided[point] += (uint64_t)decided;
        s->rows_left[point] += (uint64_t)(decided - kept);
    }
    if (kept == 0) {
        b->in_use = false; /* everything left: later ranks never see this micro-batch */
        b->speculated_to = 0;
        return 0;
    }
    if (ahead) { /* the kept rows already stand at the end of the next segment */
        b->layers_done = b->speculated_to;
        b->speculated_to = 0;
        int parked = at_segment_end(s, b, err);
        if (parked) return parked < 0 ? -1 : 0;
        return advance_batch(s, b, err);
    }
    append_deferred(s, b, b->layers_done);
    return advance_batch(s, b, err);
}

static int stage_send_report(stage *s, ramp_error *err) {
    Ramp__Envelope e = RAMP__ENVELOPE__INIT;
    Ramp__StageReport r = RAMP__STAGE_REPORT__INIT;
    struct rusage usage;
    getrusage(RUSAGE_SELF, &usage);
    r.rank = (uint32_t)s->rank;
    r.first_layer = (uint32_t)s->config.first_layer;
    r.end_layer = (uint32_t)s->config.end_layer;
    r.busy_seconds = s->busy_seconds;
    r.idle_seconds = clock_seconds() - s->opened_at - s->busy_seconds;
    r.batches = s->batches_run;
    r.rows = s->rows;
    r.bytes_sent = transport_bytes_sent(s->transport);
    r.bytes_received = transport_bytes_received(s->transport);
    r.kv_bytes_peak = s->kv_bytes_peak;
    r.weight_bytes = s->model.weight_bytes;
    r.weight_bytes_huge = s->model.weight_bytes_huge;
    r.exit_head_seconds = s->exit_head_seconds;
    r.compute_seconds = s->compute_seconds;
    r.layer_rows = s->layer_rows;
    r.layer_batches = s->layer_batches;
    r.decision_wait_seconds = s->decision_wait_seconds;
    r.speculated_layer_rows = s->speculated_layer_rows;
    r.wasted_layer_rows = s->wasted_layer_rows;
    r.peak_resident_bytes = (uint64_t)usage.ru_maxrss * 1024;
    r.cpu_seconds = clock_process_cpu_seconds();
    e.body_case = RAMP__ENVELOPE__BODY_REPORT;
    e.report = &r;
    return send_envelope(s->transport, 0, &e, NULL, 0, err);
}

static int stage_run_control(stage *s, Ramp__Control *control, ramp_error *err) {
    if (control->kind == RAMP__CONTROL__KIND__PING) return stage_send_hello(s, err);
    if (control->kind == RAMP__CONTROL__KIND__RELEASE)
        for (size_t i = 0; i < control->n_slots; i++) {
            int slot = (int)control->slots[i];
            kv_slot_release(&s->kv, slot);
            if (slot >= 0 && slot < s->config.max_sequences) {
                s->deferred[slot].count = 0;
                s->slot_owner[slot] = SLOT_FREE;
            }
        }
    if (!is_last(s)) { /* pass it down the chain */
        Ramp__Envelope e = RAMP__ENVELOPE__INIT;
        e.body_case = RAMP__ENVELOPE__BODY_CONTROL;
        e.control = control;
        if (send_envelope(s->transport, s->config.next_rank, &e, NULL, 0, err)) return -1;
    }
    if (s->config.partner_rank > 0 && control->kind != RAMP__CONTROL__KIND__PING) { /* its KV slots, its end */
        Ramp__Envelope e = RAMP__ENVELOPE__INIT;
        e.body_case = RAMP__ENVELOPE__BODY_CONTROL;
        e.control = control;
        if (send_envelope(s->transport, s->config.partner_rank, &e, NULL, 0, err)) return -1;
    }
    if (control->kind == RAMP__CONTROL__KIND__SHUTDOWN) {
        s->finished = true;
        return stage_send_report(s, err);
    }
    return 0;
}

/* ---- frames that must wait ----------------------------------------------------------------------- */

/* Work is held back while a parked micro-batch (one waiting here for its Decision) holds one of its
 * sequences: MPI orders messages per sender only, so the next micro-batch of a lane, sent by rank 0
 * after it decided, can arrive through the previous stage before the Decision itself. Its rows
 * must see the KV (and kept states) the Decision settles, as they would in one process. */
static bool waits_for_decision(const stage *s, const Ramp__Work *work) {
    for (int i = 0; i < stage_batch_slots(&s->config); i++) {
        const stage_batch *b = &s->batches[i];
        if (!b->in_use) continue;
        for (int r = 0; r < b->n_rows; r++)
            for (size_t w = 0; w < work->n_rows; w++)
                if ((int)work->rows[w]->slot == b->rows[r].slot) return true;
    }
    return false;
}

static int hold_frame(stage *s, int source, const uint8_t *frame, size_t length, ramp_error *err) {
    if (s->n_held == s->held_capacity) {
        int capacity = s->held_capacity ? 2 * s->held_capacity : 8;
        held_frame *grown = realloc(s->held, (size_t)capacity * sizeof *grown);
        if (!grown) return ramp_fail(err, "out of memory holding a micro-batch back");
        s->held = grown;
        s->held_capacity = capacity;
    }
    uint8_t *copy = malloc(length ? length : 1);
    if (!copy) return ramp_fail(err, "out of memory holding a micro-batch back");
    memcpy(copy, frame, length);
    s->held[s->n_held++] = (held_frame){copy, length, source};
    return 0;
}

static int handle_envelope(stage *s, int source, Ramp__Envelope *e, const float *payload, size_t n_payload,
                           ramp_error *err) {
    switch (e->body_case) {
    case RAMP__ENVELOPE__BODY_WORK: return stage_accept_work(s, e->work, payload, n_payload, err);
    case RAMP__ENVELOPE__BODY_DECISION: return stage_accept_decision(s, e->decision, err);
    case RAMP__ENVELOPE__BODY_CONTROL: return stage_run_control(s, e->control, err);
    default: return ramp_fail(err, "unexpected message %d from rank %d", (int)e->body_case, source);
    }
}

/* Work and controls keep their order behind a held frame; Decisions and pings never wait. */
static bool keeps_chain_order(const Ramp__Envelope *e) {
    return e->body_case == RAMP__ENVELOPE__BODY_WORK ||
           (e->body_case == RAMP__ENVELOPE__BODY_CONTROL && e->control->kind != RAMP__CONTROL__KIND__PING);
}

/* After a Decision: the held frames that may go now, in arrival order. */
static int release_held(stage *s, ramp_error *err) {
    while (s->n_held > 0) {
        held_frame head = s->held[0];
        Ramp__Envelope *e;
        const float *payload;
        size_t n_payload;
        if (wire_unpack(head.frame, head.length, &e, &payload, &n_payload, err)) return -1;
        if (e->body_case == RAMP__ENVELOPE__BODY_WORK && waits_for_decision(s, e->work)) {
            wire_envelope_free(e);
            return 0;
        }
        memmove(s->held, s->held + 1, (size_t)(s->n_held - 1) * sizeof *s->held);
        s->n_held--;
        int status = handle_envelope(s, head.source, e, payload, n_payload, err);
        wire_envelope_free(e);
        free(head.frame);
        if (status) return -1;
    }
    return 0;
}

/* A frame runs now, or is held back until a Decision lets it (Work behind a parked batch). */
static int dispatch_frame(stage *s, int source, Ramp__Envelope *e, const uint8_t *frame, size_t length,
                          const float *payload, size_t n_payload, ramp_error *err) {
    if (keeps_chain_order(e) &&
        (s->n_held > 0 || (e->body_case == RAMP__ENVELOPE__BODY_WORK && waits_for_decision(s, e->work))))
        return hold_frame(s, source, frame, length, err);
    int status = handle_envelope(s, source, e, payload, n_payload, err);
    if (!status && e->body_case == RAMP__ENVELOPE__BODY_DECISION) status = release_held(s, err);
    return status;
}

/* forward_pause.run, between two layers of a running batch: Decisions that arrived meanwhile are
 * taken now. Each frees a parked batch to go on, and the next stage gets it one layer later at
 * most, not after this batch's segment: a stage that held a decided batch while the next stages
 * had nothing to do was most of the idle time of exit runs (SST-2, 3 stages on 2 cores). */
static int take_decisions(void *context, ramp_error *err) {
    pause_context *p = context;
    stage *s = p->s;
    double start = clock_seconds();
    int taken = 0;
    s->taking_decisions = true;
    for (;;) {
        int source;
        uint8_t *frame;
        size_t length;
        int got = transport_poll_urgent(s->transport, &source, &frame, &length, err);
        if (got <= 0) {
            if (got < 0) taken = -1;
            break;
        }
        Ramp__Envelope *e;
        const float *payload;
        size_t n_payload;
        int status = wire_unpack(frame, length, &e, &payload, &n_payload, err);
        if (!status) {
            status = dispatch_frame(s, source, e, frame, length, payload, n_payload, err);
            wire_envelope_free(e);
        }
        free(frame);
        if (status) {
            taken = -1;
            break;
        }
        taken = 1;
    }
    s->taking_decisions = false;
    if (taken > 0) fill_rows(s, p->b); /* the Decisions' batches used the row arrays */
    s->paused_seconds += clock_seconds() - start;
    return taken;
}

int stage_handle_frame(void *context, int source, const uint8_t *frame, size_t length, ramp_error *err) {
    stage *s = context;
    double start = clock_seconds();
    /* A micro-batch still in use between frames is parked at an exit point: the time since the last
     * frame was spent waiting for the coordinator's Decision (and for nothing else to do). */
    if (s->last_frame_done > 0)
        for (int i = 0; i < stage_batch_slots(&s->config); i++)
            if (s->batches[i].in_use) {
                s->decision_wait_seconds += start - s->last_frame_done;
                break;
            }
    Ramp__Envelope *e;
    const float *payload;
    size_t n_payload;
    if (wire_unpack(frame, length, &e, &payload, &n_payload, err))
        return ramp_fail_prefix(err, "rank %d: frame from rank %d: ", s->rank, source);
    int status = dispatch_frame(s, source, e, frame, length, payload, n_payload, err);
    wire_envelope_free(e);
    s->last_frame_done = clock_seconds();
    s->busy_seconds += s->last_frame_done - start;
    if (status) return ramp_fail_prefix(err, "rank %d (stage %d): ", s->rank, s->config.stage_index);
    return 0;
}
