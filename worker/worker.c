#include "worker.h"

#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "interrupt.h"
#include "pair_partner.h"
#include "stage.h"
#include "weight_pages.h"
#include "wire.h"

/* Longest wait for rank 0's Setup: rank 0 loads its tokenizer and checks its options first. */
#define SETUP_WAIT_SECONDS 600.0

/* Ranks of this job on this node that compute (rank 0 mostly waits), and the node's cores. */
static void node_load(int world_size, int *computing, long *cores) {
    *cores = sysconf(_SC_NPROCESSORS_ONLN);
    if (*cores < 1) *cores = 1;
    const char *local_size_text = getenv("OMPI_COMM_WORLD_LOCAL_SIZE");
    int local_size = local_size_text ? atoi(local_size_text) : world_size;
    if (local_size < 1) local_size = 1;
    *computing = local_size == world_size && local_size > 1 ? local_size - 1 : local_size;
}

int threads_per_rank(int requested, bool in_process, int world_size) {
    if (requested > 0) return requested;
    const char *slurm = getenv("SLURM_CPUS_PER_TASK");
    if (slurm && atoi(slurm) > 0) return atoi(slurm);
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    if (cores < 1) cores = 1;
    if (in_process) return (int)cores;
    int computing;
    node_load(world_size, &computing, &cores);
    int threads = (int)(cores / computing);
    return threads < 1 ? 1 : threads;
}

bool run_ahead_pays(int world_size) {
    int computing;
    long cores;
    node_load(world_size, &computing, &cores);
    return cores > computing;
}

void threads_apply(int threads) { omp_set_num_threads(threads); }

/* Waits for one frame from rank 0 and unpacks it (caller frees both). A partner rank's Hello
 * (--pair-ranks) may come first: it is noted in *partner_ready and the wait goes on. */
static int receive_from_coordinator(transport *t, double seconds, Ramp__Envelope **e, uint8_t **frame,
                                    int *partner_ready, ramp_error *err) {
    for (;;) {
        int source;
        size_t length;
        const float *payload;
        size_t n_payload;
        int got = transport_receive(t, seconds, NULL, &source, frame, &length, err);
        if (got < 0) return -1;
        if (got == 0) return ramp_fail(err, "no Setup from the coordinator within %.0f s", seconds);
        if (wire_unpack(*frame, length, e, &payload, &n_payload, err)) {
            free(*frame);
            return ramp_fail_prefix(err, "frame from rank %d: ", source);
        }
        if (source == 0 || (*e)->body_case != RAMP__ENVELOPE__BODY_HELLO) return 0;
        *partner_ready = source;
        wire_envelope_free(*e);
        free(*frame);
    }
}

static int config_from_setup(const Ramp__Setup *m, int rank, int world_size, stage_config *c, ramp_error *err) {
    if ((int)m->stage_index != rank || m->n_stages < 1 || m->first_layer >= m->end_layer ||
        m->n_exit_layers > EXIT_MAX_POINTS || m->kv_fill > KV_FILL_OMIT || m->kv_type > KV_F16 || !m->model_path || !*m->model_path)
        return ramp_fail(err, "Setup for stage %u of %u (layers %u-%u, %zu exit points) does not fit rank %d",
                         m->stage_index, m->n_stages, m->first_layer, m->end_layer, m->n_exit_layers, rank);
    memset(c, 0, sizeof *c);
    c->model_path = m->model_path;
    c->stage_index = (int)m->stage_index;
    c->n_stages = (int)m->n_stages;
    c->first_layer = (int)m->first_layer;
    c->end_layer = (int)m->end_layer;
    c->max_rows = (int)m->max_rows;
    c->max_sequences = (int)m->max_sequences;
    c->context = (int)m->context;
    c->next_rank = rank == (int)m->n_stages ? 0 : rank + 1;
    c->max_parked = (int)m->max_parked;
    c->n_exits = (int)m->n_exit_layers;
    for (size_t i = 0; i < m->n_exit_layers; i++) c->exit_layers[i] = (int)m->exit_layers[i];
    c->exit_candidates = m->n_exit_candidates ? m->exit_candidates : NULL;
    c->n_exit_candidates = (int)m->n_exit_candidates;
    c->kv_fill = (kv_fill_policy)m->kv_fill;
    c->kv_type = (kv_type)m->kv_type;
    c->pairs = (forward_pairs){.first = (int)m->parallel_first, .end = (int)m->parallel_end};
    c->run_ahead_mode = (int)m->run_ahead;
    c->run_ahead = c->run_ahead_mode == STAGE_RUN_AHEAD_ON ||
                   (c->run_ahead_mode == STAGE_RUN_AHEAD_AUTO && run_ahead_pays(world_size));
    c->partner_rank = (int)m->partner_rank;
    return 0;
}

/* A stage with a partner rank (--pair-ranks) is ready once its partner is: the partner's Hello. */
static int await_partner(transport *t, int partner, ramp_error *err) {
    int source;
    uint8_t *frame;
    size_t length;
    int got = transport_receive(t, SETUP_WAIT_SECONDS, NULL, &source, &frame, &length, err);
    if (got < 0) return -1;
    if (got == 0) return ramp_fail(err, "no word from partner rank %d within %.0f s", partner, SETUP_WAIT_SECONDS);
    Ramp__Envelope *e;
    const float *payload;
    size_t n_payload;
    int status = wire_unpack(frame, length, &e, &payload, &n_payload, err);
    if (!status) {
        if (e->body_case == RAMP__ENVELOPE__BODY_FAILURE) /* pass it on: rank 0 names the rank */
            status = ramp_fail(err, "partner rank %u failed: %s", e->failure->rank, e->failure->message);
        else if (source != partner || e->body_case != RAMP__ENVELOPE__BODY_HELLO)
            status = ramp_fail(err, "expected partner rank %d's Hello, got message %d from rank %d", partner,
                               (int)e->body_case, source);
        wire_envelope_free(e);
    }
    free(frame);
    return status;
}

/* Reports err to rank 0, gives it a bounded time to end the job, then ends it from here. */
static int fail_and_abort(transport *t, int rank, const ramp_error *err, double wait_seconds) {
    send_failure(t, rank, err->message);
    int source;
    uint8_t *frame;
    size_t length;
    ramp_error ignored;
    transport_receive(t, wait_seconds, NULL, &source, &frame, &length, &ignored);
    transport_abort(t, 1);
}

/* Receive, compute, forward until SHUTDOWN. After a signal the coordinator drains and shuts the
 * stages down; a stage that hears nothing within the grace gives up. */
static int serve(stage *s, transport *t, double grace_seconds, ramp_error *err) {
    double stop_deadline = -1;
    while (!s->finished) {
        int source;
        uint8_t *frame;
        size_t length;
        double wait = stop_deadline < 0 ? -1.0 : stop_deadline - clock_seconds();
        int got = 0;
        if (s->config.run_ahead) { /* nothing waiting: a parked micro-batch runs ahead of its Decision */
            got = transport_receive(t, 0.0, NULL, &source, &frame, &length, err);
            int ran = got == 0 ? stage_idle(s, err) : 0;
            if (got < 0 || ran < 0) return -1;
            if (ran) continue;
        }
        if (got == 0)
            got = transport_receive(t, wait, stop_deadline < 0 ? interrupt_flag() : NULL, &source, &frame, &length, err);
        if (got < 0) return -1;
        if (got == 0) {
            if (stop_deadline < 0) {
                stop_deadline = clock_seconds() + grace_seconds;
                continue;
            }
            fprintf(stderr, "ramp: rank %d: interrupted and no shutdown from the coordinator within %.0f s; exiting\n",
                    s->rank, grace_seconds);
            transport_abort(t, 1);
        }
        int handled = stage_handle_frame(s, source, frame, length, err);
        free(frame);
        if (handled) return -1;
    }
    return 0;
}

int worker_main(transport *t) {
    int rank = transport_rank(t);
    ramp_error err;
    Ramp__Envelope *e = NULL;
    uint8_t *frame = NULL;
    int partner_ready = 0;
    if (receive_from_coordinator(t, SETUP_WAIT_SECONDS, &e, &frame, &partner_ready, &err))
        return fail_and_abort(t, rank, &err, 10.0);
    if (e->body_case == RAMP__ENVELOPE__BODY_CONTROL && e->control->kind == RAMP__CONTROL__KIND__SHUTDOWN) {
        /* rank 0 ran a command that needs no pipeline (help, a usage error, synth) */
        wire_envelope_free(e);
        free(frame);
        return 0;
    }
    if (e->body_case != RAMP__ENVELOPE__BODY_SETUP) {
        ramp_fail(&err, "expected Setup from the coordinator, got message %d", (int)e->body_case);
        return fail_and_abort(t, rank, &err, 10.0);
    }
    const Ramp__Setup *setup = e->setup;
    double grace = setup->shutdown_grace_seconds > 0 ? setup->shutdown_grace_seconds : 30.0;
    threads_apply(threads_per_rank((int)setup->threads, false, transport_size(t)));
    if (setup->huge_pages > WEIGHT_PAGES_OFF) {
        ramp_fail(&err, "Setup asks for huge-pages mode %u, expected 0 (on), 1 (reread) or 2 (off)", setup->huge_pages);
        wire_envelope_free(e);
        free(frame);
        return fail_and_abort(t, rank, &err, 10.0);
    }
    weight_pages_set_mode((weight_pages_mode)setup->huge_pages);
    if (setup->partner_of > 0) { /* this rank computes the second layer of a stage's pairs */
        int status = partner_main(t, setup, &err);
        wire_envelope_free(e);
        free(frame);
        return status ? fail_and_abort(t, rank, &err, 10.0) : 0;
    }
    stage_config config;
    stage s;
    if (config_from_setup(setup, rank, transport_size(t), &config, &err) || stage_open(&s, &config, rank, t, &err)) {
        wire_envelope_free(e);
        free(frame);
        return fail_and_abort(t, rank, &err, 10.0);
    }
    int status = (config.partner_rank > 0 && partner_ready != config.partner_rank &&
                  await_partner(t, config.partner_rank, &err)) ||
                 stage_send_hello(&s, &err) || serve(&s, t, grace, &err);
    stage_close(&s); /* stage_open copied what it keeps (candidates); the model path is not kept */
    wire_envelope_free(e);
    free(frame);
    if (status) return fail_and_abort(t, rank, &err, 10.0);
    return 0;
}
