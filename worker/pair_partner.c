#include "pair_partner.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "forward.h"
#include "interrupt.h"
#include "kv_cache.h"
#include "model.h"
#include "stage.h"
#include "wire.h"

typedef struct {
    transport *t;
    int rank, stage_rank;
    model model;
    kv_cache kv;
    forward_workspace ws;
    forward_partner partner;
    forward_pairs pairs;
    int row_capacity, context;
    float *hidden;
    int *slots, *positions;
    bool *kv_only;
} partner_state;

static int swap_with_stage(void *context, const float *mine, float *theirs, size_t n, ramp_error *err) {
    partner_state *p = context;
    return transport_exchange(p->t, p->stage_rank, mine, theirs, n * sizeof(float), err);
}

static void partner_close(partner_state *p) {
    forward_workspace_free(&p->ws);
    if (p->kv.slots) kv_cache_free(&p->kv);
    model_free(&p->model);
    free(p->hidden);
    free(p->slots);
    free(p->positions);
    free(p->kv_only);
}

static int partner_open(partner_state *p, transport *t, const Ramp__Setup *m, ramp_error *err) {
    memset(p, 0, sizeof *p);
    p->t = t;
    p->rank = transport_rank(t);
    p->stage_rank = (int)m->partner_of;
    p->context = (int)m->context;
    int first = (int)m->first_layer, end = (int)m->end_layer;
    model_slice slice = {first, end, false, false};
    if (!m->model_path || first >= end || m->max_rows < 1 || m->max_sequences < 1 || m->context < 1)
        return ramp_fail(err, "Setup for the partner of rank %u (layers %u-%u) is incomplete", m->partner_of,
                         m->first_layer, m->end_layer);
    if (model_load(&p->model, m->model_path, &slice, false, NULL, err)) return -1;
    const model_config *c = &p->model.config;
    p->row_capacity = stage_row_capacity((int)m->max_rows, (int)m->max_sequences);
    size_t rows = (size_t)p->row_capacity;
    p->hidden = malloc(rows * (size_t)c->dim * sizeof *p->hidden);
    p->slots = malloc(rows * sizeof *p->slots);
    p->positions = malloc(rows * sizeof *p->positions);
    p->kv_only = malloc(rows * sizeof *p->kv_only);
    if (!p->hidden || !p->slots || !p->positions || !p->kv_only)
        return ramp_fail(err, "out of memory for micro-batches of %zu rows", rows);
    if (kv_cache_init(&p->kv, end - first, c->n_kv_heads, c->head_dim, (kv_type)m->kv_type, (int)m->max_sequences, err) ||
        forward_workspace_init(&p->ws, c, p->row_capacity, p->context, err) ||
        forward_workspace_enable_pairs(&p->ws, c, err))
        return -1;
    p->partner = (forward_partner){.member = 1, .exchange = swap_with_stage, .context = p};
    p->pairs = (forward_pairs){.first = (int)m->parallel_first, .end = (int)m->parallel_end, .partner = &p->partner};
    return 0;
}

static int run_pair_work(partner_state *p, const Ramp__PairWork *w, const float *payload, size_t n_payload,
                         ramp_error *err) {
    const int n = (int)w->n_rows, dim = p->model.config.dim;
    if (n < 1 || n > p->row_capacity || w->hidden_dim != (uint32_t)dim || n_payload != (size_t)n * dim)
        return ramp_fail(err, "pair work of %d rows of %u floats with %zu floats of state, expected 1..%d rows of %d",
                         n, w->hidden_dim, n_payload, p->row_capacity, dim);
    for (int r = 0; r < n; r++) {
        const Ramp__Row *row = w->rows[r];
        if (row->slot >= (uint32_t)p->kv.n_slots || row->slot_capacity < 1 || row->slot_capacity > (uint32_t)p->context)
            return ramp_fail(err, "pair work row %d: slot %u of %u positions (this partner has %d slots of at most %d)", r,
                             row->slot, row->slot_capacity, p->kv.n_slots, p->context);
        /* the stage reserved the slot; the partner follows (RELEASE arrives before the slot's reuse) */
        if (p->kv.slots[row->slot].capacity == 0 &&
            kv_slot_reserve(&p->kv, (int)row->slot, (int)row->slot_capacity, err))
            return -1;
        p->slots[r] = (int)row->slot;
        p->positions[r] = (int)row->position;
        p->kv_only[r] = row->kv_only;
    }
    memcpy(p->hidden, payload, n_payload * sizeof(float));
    forward_rows rows = {n, p->slots, p->positions, p->kv_only};
    return forward_layers_paired(&p->model, (int)w->first_layer, (int)w->end_layer, &p->pairs, &p->kv, &rows, p->hidden,
                                 &p->ws, err);
}

int partner_main(transport *t, const Ramp__Setup *setup, ramp_error *err) {
    partner_state p;
    if (partner_open(&p, t, setup, err)) {
        partner_close(&p);
        return ramp_fail_prefix(err, "rank %d (partner of rank %u): ", transport_rank(t), setup->partner_of);
    }
    /* ready: the stage waits for this before it tells rank 0 it is */
    Ramp__Hello h = RAMP__HELLO__INIT;
    h.rank = (uint32_t)p.rank;
    h.first_layer = setup->first_layer;
    h.end_layer = setup->end_layer;
    Ramp__Envelope hello = RAMP__ENVELOPE__INIT;
    hello.body_case = RAMP__ENVELOPE__BODY_HELLO;
    hello.hello = &h;
    int status = send_envelope(t, p.stage_rank, &hello, NULL, 0, err);
    double grace = setup->shutdown_grace_seconds > 0 ? setup->shutdown_grace_seconds : 30.0, stop_deadline = -1;
    bool finished = false;
    while (!status && !finished) {
        int source;
        uint8_t *frame;
        size_t length;
        double wait = stop_deadline < 0 ? -1.0 : stop_deadline - clock_seconds();
        int got = transport_receive(t, wait, stop_deadline < 0 ? interrupt_flag() : NULL, &source, &frame, &length, err);
        if (got < 0) {
            status = -1;
            break;
        }
        if (got == 0) { /* interrupted: the stage will shut us down within the grace, or we go */
            if (stop_deadline >= 0) transport_abort(t, 1);
            stop_deadline = clock_seconds() + grace;
            continue;
        }
        Ramp__Envelope *e;
        const float *payload;
        size_t n_payload;
        status = wire_unpack(frame, length, &e, &payload, &n_payload, err);
        if (!status) {
            if (source != p.stage_rank) {
                status = ramp_fail(err, "message %d from rank %d, expected only rank %d's", (int)e->body_case, source,
                                   p.stage_rank);
            } else if (e->body_case == RAMP__ENVELOPE__BODY_PAIR_WORK) {
                status = run_pair_work(&p, e->pair_work, payload, n_payload, err);
            } else if (e->body_case == RAMP__ENVELOPE__BODY_CONTROL) {
                const Ramp__Control *c = e->control;
                if (c->kind == RAMP__CONTROL__KIND__SHUTDOWN) finished = true;
                for (size_t i = 0; c->kind == RAMP__CONTROL__KIND__RELEASE && i < c->n_slots; i++)
                    if (c->slots[i] < (uint32_t)p.kv.n_slots) kv_slot_release(&p.kv, (int)c->slots[i]);
            } else {
                status = ramp_fail(err, "unexpected message %d from rank %d", (int)e->body_case, source);
            }
            wire_envelope_free(e);
        }
        free(frame);
    }
    partner_close(&p);
    if (status) return ramp_fail_prefix(err, "rank %d (partner of rank %d): ", transport_rank(t), (int)setup->partner_of);
    return 0;
}
