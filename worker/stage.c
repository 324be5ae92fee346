#include "stage.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "wire.h"

static double now_seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static bool is_last(const stage *s) { return s->config.stage_index == s->config.n_stages; }
static bool is_first(const stage *s) { return s->config.stage_index == 1; }

int stage_open(stage *s, const stage_config *config, int rank, transport *t, ramp_error *err) {
    memset(s, 0, sizeof *s);
    s->config = *config;
    s->rank = rank;
    s->transport = t;
    s->opened_at = now_seconds();
    model_slice slice = {config->first_layer, config->end_layer, is_first(s), is_last(s)};
    if (model_load(&s->model, config->model_path, &slice, false, NULL, err))
        return ramp_fail_prefix(err, "rank %d (stage %d, layers %d-%d): ", rank, config->stage_index,
                                config->first_layer, config->end_layer - 1);
    const model_config *c = &s->model.config;
    size_t rows = (size_t)config->max_rows;
    s->hidden = malloc(rows * c->dim * sizeof(float));
    s->logits = is_last(s) ? malloc(rows * c->vocab_size * sizeof(float)) : NULL;
    s->tokens = malloc(rows * sizeof(int));
    s->slots = malloc(rows * sizeof(int));
    s->positions = malloc(rows * sizeof(int));
    s->output_rows = malloc(rows * sizeof(uint32_t));
    if (!s->hidden || (is_last(s) && !s->logits) || !s->tokens || !s->slots || !s->positions || !s->output_rows) {
        stage_close(s);
        return ramp_fail(err, "rank %d: out of memory for micro-batches of %d rows", rank, config->max_rows);
    }
    if (kv_cache_init(&s->kv, config->end_layer - config->first_layer, c->kv_dim, config->max_sequences, err) ||
        forward_workspace_init(&s->workspace, c, config->max_rows, config->context, err)) {
        stage_close(s);
        return ramp_fail_prefix(err, "rank %d: ", rank);
    }
    return 0;
}

void stage_close(stage *s) {
    if (s->kv.slots) kv_cache_free(&s->kv);
    forward_workspace_free(&s->workspace);
    free(s->hidden);
    free(s->logits);
    free(s->tokens);
    free(s->slots);
    free(s->positions);
    free(s->output_rows);
    model_free(&s->model);
    memset(s, 0, sizeof *s);
}

static int send_envelope(transport *t, int destination, Ramp__Envelope *e, const float *payload, size_t n,
                         ramp_error *err) {
    uint8_t *frame;
    size_t length;
    e->version = WIRE_PROTOCOL_VERSION;
    if (wire_pack(e, payload, n, &frame, &length, err)) return -1;
    return transport_send(t, destination, frame, length, err);
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
    e.body_case = RAMP__ENVELOPE__BODY_HELLO;
    e.hello = &h;
    return send_envelope(s->transport, 0, &e, NULL, 0, err);
}

static int stage_run_work(stage *s, Ramp__Work *work, const float *payload, size_t n_payload, ramp_error *err) {
    const model_config *c = &s->model.config;
    const int n = (int)work->n_rows;
    if (n <= 0 || n > s->config.max_rows)
        return ramp_fail(err, "micro-batch %llu has %d rows, this stage takes 1..%d",
                         (unsigned long long)work->batch_id, n, s->config.max_rows);
    for (int r = 0; r < n; r++) {
        const Ramp__Row *row = work->rows[r];
        if (row->slot_capacity > 0) {
            if (row->slot_capacity > (uint32_t)s->config.context)
                return ramp_fail(err, "sequence asks for %u positions, the context is %d", row->slot_capacity,
                                 s->config.context);
            if (kv_slot_reserve(&s->kv, (int)row->slot, (int)row->slot_capacity, err)) return -1;
        }
        s->tokens[r] = row->token;
        s->slots[r] = (int)row->slot;
        s->positions[r] = (int)row->position;
    }
    if (s->kv.bytes_in_use > s->kv_bytes_peak) s->kv_bytes_peak = s->kv.bytes_in_use;
    if (is_first(s)) {
        if (forward_embed(&s->model, s->tokens, n, s->hidden, err)) return -1;
    } else {
        if (!work->has_hidden || n_payload != (size_t)n * c->dim)
            return ramp_fail(err, "micro-batch %llu carries %zu floats of hidden state, expected %d x %d",
                             (unsigned long long)work->batch_id, n_payload, n, c->dim);
        memcpy(s->hidden, payload, n_payload * sizeof(float));
    }
    forward_rows rows = {n, s->slots, s->positions};
    if (forward_layers(&s->model, s->config.first_layer, s->config.end_layer, &s->kv, &rows, s->hidden,
                       &s->workspace, err))
        return -1;
    s->batches++;
    s->rows += (uint64_t)n;

    Ramp__Envelope e = RAMP__ENVELOPE__INIT;
    if (!is_last(s)) {
        work->has_hidden = true;
        work->hidden_dim = (uint32_t)c->dim;
        e.body_case = RAMP__ENVELOPE__BODY_WORK;
        e.work = work;
        return send_envelope(s->transport, s->config.next_rank, &e, s->hidden, (size_t)n * c->dim, err);
    }
    /* Last stage: logits of the rows whose next token is wanted, gathered contiguously. */
    int n_out = 0;
    for (int r = 0; r < n; r++) {
        if (!work->rows[r]->wants_output) continue;
        if (n_out != r) memcpy(s->hidden + (size_t)n_out * c->dim, s->hidden + (size_t)r * c->dim, c->dim * sizeof(float));
        s->output_rows[n_out++] = (uint32_t)r;
    }
    if (n_out) forward_logits(&s->model, s->hidden, n_out, s->logits, &s->workspace);
    Ramp__Output o = RAMP__OUTPUT__INIT;
    o.batch_id = work->batch_id;
    o.stage = (uint32_t)s->config.stage_index;
    o.n_output_rows = (size_t)n_out;
    o.output_rows = s->output_rows;
    o.vocab_size = (uint32_t)c->vocab_size;
    o.final = true;
    e.body_case = RAMP__ENVELOPE__BODY_OUTPUT;
    e.output = &o;
    return send_envelope(s->transport, 0, &e, s->logits, (size_t)n_out * c->vocab_size, err);
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
    r.idle_seconds = now_seconds() - s->opened_at - s->busy_seconds;
    r.batches = s->batches;
    r.rows = s->rows;
    r.bytes_sent = transport_bytes_sent(s->transport);
    r.bytes_received = transport_bytes_received(s->transport);
    r.kv_bytes_peak = s->kv_bytes_peak;
    r.weight_bytes = s->model.weight_bytes;
    r.peak_resident_bytes = (uint64_t)usage.ru_maxrss * 1024;
    e.body_case = RAMP__ENVELOPE__BODY_REPORT;
    e.report = &r;
    return send_envelope(s->transport, 0, &e, NULL, 0, err);
}

static int stage_run_control(stage *s, Ramp__Control *control, ramp_error *err) {
    if (control->kind == RAMP__CONTROL__KIND__RELEASE)
        for (size_t i = 0; i < control->n_slots; i++) kv_slot_release(&s->kv, (int)control->slots[i]);
    if (!is_last(s)) { /* pass it down the chain */
        Ramp__Envelope e = RAMP__ENVELOPE__INIT;
        e.body_case = RAMP__ENVELOPE__BODY_CONTROL;
        e.control = control;
        if (send_envelope(s->transport, s->config.next_rank, &e, NULL, 0, err)) return -1;
    }
    if (control->kind == RAMP__CONTROL__KIND__SHUTDOWN) {
        s->finished = true;
        return stage_send_report(s, err);
    }
    return 0;
}

int stage_handle_frame(void *context, int source, const uint8_t *frame, size_t length, ramp_error *err) {
    stage *s = context;
    double start = now_seconds();
    Ramp__Envelope *e;
    const float *payload;
    size_t n_payload;
    if (wire_unpack(frame, length, &e, &payload, &n_payload, err))
        return ramp_fail_prefix(err, "rank %d: frame from rank %d: ", s->rank, source);
    int status;
    switch (e->body_case) {
    case RAMP__ENVELOPE__BODY_WORK: status = stage_run_work(s, e->work, payload, n_payload, err); break;
    case RAMP__ENVELOPE__BODY_CONTROL: status = stage_run_control(s, e->control, err); break;
    default: status = ramp_fail(err, "unexpected message %d from rank %d", (int)e->body_case, source); break;
    }
    wire_envelope_free(e);
    s->busy_seconds += now_seconds() - start;
    if (status) return ramp_fail_prefix(err, "rank %d (stage %d): ", s->rank, s->config.stage_index);
    return 0;
}
