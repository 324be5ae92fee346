#include "pipeline.h"

#include <cblas.h>
#include <jansson.h>
#include <omp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "wire.h"

/* The one piece of process-wide mutable state: set by SIGINT/SIGTERM, read by the loops. */
static volatile int stop_requested;

static void on_stop_signal(int signal_number) {
    (void)signal_number;
    stop_requested = 1;
}

const char pipeline_flags_help[] =
    "pipeline (the same flags under mpirun; rank 0 coordinates, ranks 1..P are stages):\n"
    "      --layers SPLIT     layers per stage, e.g. 0-3,4-9,10-15 (default: balanced by compute)\n"
    "      --stages P         pipeline stages when running in one process (default 1)\n"
    "      --threads N        threads per rank (default: cores / ranks on the node)\n"
    "      --max-sequences N  sequences in flight at once, i.e. KV-cache slots (default 32)\n"
    "      --batch-tokens N   most tokens in one micro-batch (default 256)\n"
    "      --micro-batches M  micro-batches in flight (default 8)\n"
    "      --ctx N            most positions per sequence (default: the model's context length)\n"
    "      --timeout S        seconds of silence from the pipeline before the job fails (default 60)\n"
    "      --metrics-json F   write per-stage and per-run metrics as JSON to F\n";

void pipeline_options_default(pipeline_options *o) {
    memset(o, 0, sizeof *o);
    o->local_stages = 1;
    o->max_sequences = 32;
    o->batch_tokens = 256;
    o->lanes = 8;
    o->timeout_seconds = 60.0;
}

static int parse_positive(const char *flag, const char *value, int *out, ramp_error *err) {
    char *end;
    long v = strtol(value, &end, 10);
    if (!*value || *end || v < 1 || v > 1 << 24)
        return ramp_fail(err, "--%s expects a positive integer, got '%s'", flag, value);
    *out = (int)v;
    return 0;
}

int pipeline_parse_flag(pipeline_options *o, const char *flag, const char *value, ramp_error *err) {
    struct { const char *name; int *field; } integers[] = {
        {"stages", &o->local_stages},       {"threads", &o->threads},       {"max-sequences", &o->max_sequences},
        {"batch-tokens", &o->batch_tokens}, {"micro-batches", &o->lanes}, {"ctx", &o->context},
    };
    for (size_t i = 0; i < sizeof integers / sizeof integers[0]; i++)
        if (!strcmp(flag, integers[i].name)) return parse_positive(flag, value, integers[i].field, err) ? -1 : 1;
    if (!strcmp(flag, "layers")) {
        o->layers = value;
        return 1;
    }
    if (!strcmp(flag, "metrics-json")) {
        o->metrics_json = value;
        return 1;
    }
    if (!strcmp(flag, "timeout")) {
        char *end;
        o->timeout_seconds = strtod(value, &end);
        if (!*value || *end || !(o->timeout_seconds > 0))
            return ramp_fail(err, "--timeout expects a positive number of seconds, got '%s'", value);
        return 1;
    }
    return 0;
}

/* Threads per rank: the node's cores shared by the ranks that compute on it. */
static int choose_threads(const pipeline_options *o, bool local, int world_size) {
    if (o->threads > 0) return o->threads;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    if (cores < 1) cores = 1;
    if (local) return (int)cores;
    const char *local_size_text = getenv("OMPI_COMM_WORLD_LOCAL_SIZE");
    int local_size = local_size_text ? atoi(local_size_text) : world_size;
    if (local_size < 1) local_size = 1;
    int computing = local_size == world_size && local_size > 1 ? local_size - 1 : local_size; /* rank 0 mostly waits */
    int threads = (int)(cores / computing);
    return threads < 1 ? 1 : threads;
}

static void set_threads(int threads) {
    openblas_set_num_threads(1); /* ramp's own threads share each product's tiles (model/forward.c) */
    omp_set_num_threads(threads);
}

static stage_config stage_config_for(const pipeline *p, int stage_index, int context) {
    const pipeline_options *o = &p->options;
    stage_config c = {
        .model_path = o->model_path,
        .stage_index = stage_index,
        .n_stages = p->n_stages,
        .first_layer = p->ranges[stage_index - 1].first_layer,
        .end_layer = p->ranges[stage_index - 1].end_layer,
        .max_rows = o->batch_tokens,
        .max_sequences = o->max_sequences,
        .context = context,
        .next_rank = stage_index == p->n_stages ? 0 : stage_index + 1,
        .max_parked = o->lanes,
        .n_exits = p->n_exits,
        .exit_candidates = o->candidates,
        .n_exit_candidates = o->n_candidates,
        .kv_fill = o->kv_fill,
    };
    memcpy(c.exit_layers, p->exit_layers, sizeof c.exit_layers);
    return c;
}

/* A worker rank: load the slice, then serve frames until shutdown. Returns the exit status. */
static int serve_stage(pipeline *p, int context) {
    int rank = transport_rank(p->transport);
    stage_config config = stage_config_for(p, rank, context);
    stage s;
    ramp_error err;
    if (stage_open(&s, &config, rank, p->transport, &err) || stage_send_hello(&s, &err)) {
        send_failure(p->transport, rank, err.message);
        /* Rank 0 reports it and aborts the job; wait for that, but never forever. */
        int source;
        uint8_t *frame;
        size_t length;
        transport_receive(p->transport, p->options.timeout_seconds, NULL, &source, &frame, &length, &err);
        transport_abort(p->transport, 1);
    }
    int status = 0;
    double stop_deadline = -1;
    while (!s.finished) {
        int source;
        uint8_t *frame;
        size_t length;
        double wait = stop_deadline < 0 ? -1.0 : stop_deadline - clock_seconds();
        int got = transport_receive(p->transport, wait, stop_deadline < 0 ? &stop_requested : NULL, &source, &frame,
                                    &length, &err);
        if (got < 0) {
            send_failure(p->transport, rank, err.message);
            status = 1;
            break;
        }
        if (got == 0) {
            if (stop_deadline < 0) { /* interrupted: give the coordinator time to shut us down */
                stop_deadline = clock_seconds() + 10.0;
                continue;
            }
            fprintf(stderr, "ramp: rank %d: interrupted and no shutdown from the coordinator; exiting\n", rank);
            transport_abort(p->transport, 1);
        }
        int handled = stage_handle_frame(&s, source, frame, length, &err);
        free(frame);
        if (handled) {
            send_failure(p->transport, rank, err.message);
            status = 1;
            /* Wait for the coordinator's abort (bounded), so the message gets out first. */
            transport_receive(p->transport, p->options.timeout_seconds, NULL, &source, &frame, &length, &err);
            transport_abort(p->transport, 1);
        }
    }
    stage_close(&s);
    return status;
}

static int handle_failure_or_unexpected(pipeline *p, const Ramp__Envelope *e, int source, ramp_error *err) {
    if (e->body_case == RAMP__ENVELOPE__BODY_FAILURE)
        return ramp_fail(err, "rank %u failed: %s", e->failure->rank, e->failure->message);
    return ramp_fail(err, "coordinator: unexpected message %d from rank %d", (int)e->body_case, source);
}

/* A Control message to one stage: rank 1 for those that travel down the chain, any rank for PING. */
static int send_control(pipeline *p, int rank, Ramp__Control__Kind kind, uint32_t *slots, size_t n_slots,
                        ramp_error *err) {
    Ramp__Control c = RAMP__CONTROL__INIT;
    c.kind = kind;
    c.n_slots = n_slots;
    c.slots = slots;
    Ramp__Envelope e = RAMP__ENVELOPE__INIT;
    e.body_case = RAMP__ENVELOPE__BODY_CONTROL;
    e.control = &c;
    return send_envelope(p->transport, rank, &e, NULL, 0, err);
}

/* After a silence, asks every stage directly whether it is alive, so that the error names the
 * one that is not: a stopped or hung rank answers nothing, a live one answers at once. Writes the
 * finding to `text`; returns -1 with `err` set when a stage reports a failure meanwhile. */
static int find_silent_stages(pipeline *p, char *text, size_t capacity, ramp_error *err) {
    int P = p->n_stages;
    bool answered[P + 1];
    memset(answered, 0, sizeof answered);
    for (int rank = 1; rank <= P; rank++) {
        ramp_error ignored; /* a rank that cannot be reached is named below all the same */
        send_control(p, rank, RAMP__CONTROL__KIND__PING, NULL, 0, &ignored);
    }
    double wait = p->options.timeout_seconds < 2.0 ? p->options.timeout_seconds : 2.0;
    double deadline = clock_seconds() + wait;
    int n_answered = 0;
    while (n_answered < P) {
        double left = deadline - clock_seconds();
        int source;
        uint8_t *frame;
        size_t length;
        ramp_error receive_err;
        if (left <= 0 || transport_receive(p->transport, left, &stop_requested, &source, &frame, &length, &receive_err) != 1)
            break;
        Ramp__Envelope *e;
        const float *payload;
        size_t n_payload;
        int status = 0;
        if (wire_unpack(frame, length, &e, &payload, &n_payload, &receive_err) == 0) {
            if (e->body_case == RAMP__ENVELOPE__BODY_FAILURE) {
                status = handle_failure_or_unexpected(p, e, source, err);
            } else if (e->body_case == RAMP__ENVELOPE__BODY_HELLO && source >= 1 && source <= P && !answered[source]) {
                answered[source] = true;
                n_answered++;
            }
            wire_envelope_free(e);
        }
        free(frame);
        if (status) return -1;
    }
    if (n_answered == P) {
        snprintf(text, capacity, "every stage answers a ping, yet the work in flight never came back");
        return 0;
    }
    size_t used = 0;
    for (int rank = 1; rank <= P && used < capacity; rank++)
        if (!answered[rank])
            used += (size_t)snprintf(text + used, capacity - used, "%sstage %d (rank %d, layers %d-%d)",
                                     used ? ", " : "", rank, rank, p->ranges[rank - 1].first_layer,
                                     p->ranges[rank - 1].end_layer - 1);
    if (used < capacity)
        snprintf(text + used, capacity - used, " did not answer a ping within %.0f s: hung, stopped or dead", wait);
    return 0;
}

/* Waits for one frame to the coordinator and unpacks it. 0 = got one, -1 = error/timeout. */
static int coordinator_receive(pipeline *p, const char *waiting_for, Ramp__Envelope **e, const float **payload,
                               size_t *n_payload, int *source, uint8_t **frame, ramp_error *err) {
    size_t length;
    int got = transport_receive(p->transport, p->options.timeout_seconds, &stop_requested, source, frame, &length, err);
    if (got < 0) return -1;
    if (got == 0) {
        if (stop_requested) return ramp_fail(err, "interrupted while waiting for %s", waiting_for);
        if (transport_is_local(p->transport))
            return ramp_fail(err, "in-process pipeline went quiet while waiting for %s", waiting_for);
        char silent[256];
        if (find_silent_stages(p, silent, sizeof silent, err)) return -1;
        return ramp_fail(err, "no message from the pipeline for %.0f s while waiting for %s: %s",
                         p->options.timeout_seconds, waiting_for, silent);
    }
    if (wire_unpack(*frame, length, e, payload, n_payload, err)) {
        free(*frame);
        return ramp_fail_prefix(err, "coordinator: frame from rank %d: ", *source);
    }
    return 0;
}

/* Waits for one message of kind `expected` (Hello or StageReport) from every stage. The rank is
 * read from the message: in-process stages say hello before any dispatch gives them a source. */
static int await_every_stage(pipeline *p, Ramp__Envelope__BodyCase expected, const char *waiting_for,
                             ramp_error *err) {
    for (int received = 0; received < p->n_stages;) {
        Ramp__Envelope *e;
        const float *payload;
        size_t n_payload;
        int source;
        uint8_t *frame;
        if (coordinator_receive(p, waiting_for, &e, &payload, &n_payload, &source, &frame, err)) return -1;
        int rank = -1, status = 0;
        if (e->body_case == expected)
            rank = (int)(expected == RAMP__ENVELOPE__BODY_HELLO ? e->hello->rank : e->report->rank);
        if (rank >= 1 && rank <= p->n_stages) {
            stage_status *s = &p->stages[rank - 1];
            if (expected == RAMP__ENVELOPE__BODY_HELLO) {
                s->weight_bytes = e->hello->weight_bytes;
            } else {
                s->report = *e->report;
                s->report.base = (ProtobufCMessage)PROTOBUF_C_MESSAGE_INIT(&ramp__stage_report__descriptor);
                s->reported = true;
            }
            received++;
        } else {
            status = handle_failure_or_unexpected(p, e, source, err);
        }
        wire_envelope_free(e);
        free(frame);
        if (status) return -1;
    }
    return 0;
}

int pipeline_open(pipeline *p, const pipeline_options *o, int *argc, char ***argv, int *worker_status,
                  ramp_error *err) {
    memset(p, 0, sizeof *p);
    p->options = *o;
    p->started_at = clock_seconds();
    signal(SIGINT, on_stop_signal);
    signal(SIGTERM, on_stop_signal);
    bool mpi = transport_launched_by_mpi();
    if (mpi) {
        if (transport_open_mpi(&p->transport, argc, argv, err)) return -1;
        if (transport_size(p->transport) == 1) { /* mpirun -np 1: the in-process pipeline */
            transport_close(p->transport);
            p->transport = NULL;
            mpi = false;
        }
    }
    if (!mpi && transport_open_local(&p->transport, o->local_stages + 1, err)) return -1;
    p->n_stages = transport_size(p->transport) - 1;
    p->threads = choose_threads(o, !mpi, transport_size(p->transport));
    set_threads(transport_rank(p->transport) == 0 && mpi ? 1 : p->threads);

    model_config config;
    if (model_read_config(o->model_path, &config, err)) return -1;
    int context = o->context > 0 ? o->context : config.context_length;
    p->options.context = context;
    if (transport_rank(p->transport) == 0 && config.context_length > 0 && context > config.context_length)
        fprintf(stderr, "ramp: warning: --ctx %d exceeds the context length %s declares (%d); positions beyond it "
                        "may decode poorly\n", context, o->model_path, config.context_length);
    p->ranges = calloc((size_t)p->n_stages, sizeof *p->ranges);
    p->stages = calloc((size_t)p->n_stages, sizeof *p->stages);
    if (!p->ranges || !p->stages) return ramp_fail(err, "out of memory");
    if (o->layers ? split_parse(o->layers, config.n_layers, p->n_stages, p->ranges, err)
                  : split_balanced(&config, p->n_stages, false, p->ranges, err))
        return -1;
    if (o->batch_tokens > 1 << 16) return ramp_fail(err, "--batch-tokens %d is too large", o->batch_tokens);
    if (o->exit_layers) {
        if (parse_exit_layers(o->exit_layers, config.n_layers, p->exit_layers, &p->n_exits, err)) return -1;
    } else if (o->exits) { /* exit heads cost memory and time: only when a job asks for exits */
        for (int s = 0; s + 1 < p->n_stages; s++) p->exit_layers[p->n_exits++] = p->ranges[s].end_layer;
    }

    if (transport_rank(p->transport) != 0) {
        *worker_status = serve_stage(p, context);
        return 1;
    }
    for (int s = 0; s < p->n_stages; s++) p->stages[s].rank = s + 1;
    model_slice none = {0, 0, false, false};
    if (model_load(&p->model, o->model_path, &none, true, o->tokenizer_path, err)) return -1;
    if (!mpi) {
        p->local = calloc((size_t)p->n_stages, sizeof *p->local);
        if (!p->local) return ramp_fail(err, "out of memory");
        for (int s = 1; s <= p->n_stages; s++) {
            stage_config c = stage_config_for(p, s, context);
            if (stage_open(&p->local[s - 1], &c, s, p->transport, err)) return -1;
            transport_set_handler(p->transport, s, stage_handle_frame, &p->local[s - 1]);
            if (stage_send_hello(&p->local[s - 1], err)) return -1;
        }
    }
    if (await_every_stage(p, RAMP__ENVELOPE__BODY_HELLO, "the stages to load", err)) return -1;
    if (p->options.lanes > p->options.max_sequences) p->options.lanes = p->options.max_sequences; /* a lane needs a slot */
    exit_run_init(&p->exits, EXIT_MODE_NONE, false, NULL, p->n_exits, p->exit_layers, config.n_layers);
    scheduler_config sc = {
        .lanes = p->options.lanes,
        .max_sequences = o->max_sequences,
        .batch_tokens = o->batch_tokens,
        .context = context,
        .eos_token = tokenizer_eos(p->model.tokenizer),
        .vocab_size = config.vocab_size,
    };
    return scheduler_init(&p->scheduler, &sc, err);
}

int pipeline_submit_text(pipeline *p, const char *text, size_t length, int max_new, const sampling_params *sampling,
                         int *index, ramp_error *err) {
    size_t capacity = 4 * length + 8, n_tokens; /* byte fallback: up to one token per byte of "▁" + text */
    int *tokens = malloc(capacity * sizeof *tokens);
    if (!tokens) return ramp_fail(err, "out of memory tokenizing a prompt of %zu bytes", length);
    int status = tokenizer_encode(p->model.tokenizer, text, length, true, tokens, capacity, &n_tokens, err);
    if (!status)
        status = scheduler_submit(&p->scheduler, tokens, (int)n_tokens, max_new, sampling, clock_seconds(), index, err);
    free(tokens);
    return status;
}

static int send_released(pipeline *p, ramp_error *err) {
    const int *slots;
    int n = scheduler_take_released(&p->scheduler, &slots);
    if (n == 0) return 0;
    uint32_t released[n];
    for (int i = 0; i < n; i++) released[i] = (uint32_t)slots[i];
    return send_control(p, 1, RAMP__CONTROL__KIND__RELEASE, released, (size_t)n, err);
}

static int send_batch(pipeline *p, const micro_batch *b, ramp_error *err) {
    Ramp__Row rows[b->n_rows];
    Ramp__Row *row_pointers[b->n_rows];
    for (int i = 0; i < b->n_rows; i++) {
        const batch_row *r = &b->rows[i];
        ramp__row__init(&rows[i]);
        rows[i].request_id = r->request_id;
        rows[i].slot = (uint32_t)r->slot;
        rows[i].position = (uint32_t)r->position;
        rows[i].token = r->token;
        rows[i].wants_output = r->wants_output;
        rows[i].slot_capacity = (uint32_t)r->slot_capacity;
        row_pointers[i] = &rows[i];
    }
    Ramp__Work w = RAMP__WORK__INIT;
    w.batch_id = b->batch_id;
    w.n_rows = (size_t)b->n_rows;
    w.rows = row_pointers;
    w.exit_mode = (uint32_t)p->exits.mode;
    Ramp__Envelope e = RAMP__ENVELOPE__INIT;
    e.body_case = RAMP__ENVELOPE__BODY_WORK;
    e.work = &w;
    p->micro_batches++;
    return send_envelope(p->transport, 1, &e, NULL, 0, err);
}

void format_exit_layers(const int *layers, int n, char *buffer, size_t capacity) {
    size_t used = 0;
    buffer[0] = '\0';
    for (int i = 0; i < n && used < capacity; i++)
        used += (size_t)snprintf(buffer + used, capacity - used, "%s%d", i ? "," : "", layers[i]);
}

/* "every:K": exit points after K, 2K, ... layers, the cheap setting (fewer LM heads per row). */
static int parse_exit_every(const char *text, int n_layers, int *layers, int *n, ramp_error *err) {
    char *end;
    long every = strtol(text + strlen("every:"), &end, 10);
    if (end == text + strlen("every:") || *end || every < 1 || every >= n_layers)
        return ramp_fail(err, "--exit-layers '%s': expected every:K with K in 1..%d", text, n_layers - 1);
    for (long layer = every; layer < n_layers && *n < EXIT_MAX_POINTS; layer += every) layers[(*n)++] = (int)layer;
    return 0;
}

int parse_exit_layers(const char *text, int n_layers, int *layers, int *n, ramp_error *err) {
    *n = 0;
    if (!strncmp(text, "every:", strlen("every:"))) return parse_exit_every(text, n_layers, layers, n, err);
    const char *cursor = text;
    while (*cursor) {
        char *end;
        long layer = strtol(cursor, &end, 10);
        if (end == cursor || layer < 1 || layer >= n_layers)
            return ramp_fail(err, "--exit-layers '%s': exit points are layer counts in 1..%d, found '%s'", text,
                             n_layers - 1, cursor);
        if (*n > 0 && layer <= layers[*n - 1])
            return ramp_fail(err, "--exit-layers '%s': exit points must increase", text);
        if (*n == EXIT_MAX_POINTS) return ramp_fail(err, "--exit-layers '%s': at most %d exit points", text, EXIT_MAX_POINTS);
        layers[(*n)++] = (int)layer;
        cursor = *end == ',' ? end + 1 : end;
        if (*end && *end != ',') return ramp_fail(err, "--exit-layers '%s': unexpected '%c'", text, *end);
    }
    return 0;
}

int pipeline_set_exits(pipeline *p, exit_mode mode, bool token_level, const exit_policy *policy, ramp_error *err) {
    if (mode != EXIT_MODE_NONE && p->n_exits == 0)
        return ramp_fail(err, "no exit points: pass --exit-layers (or run more than one stage)");
    if (mode == EXIT_MODE_DECIDE) {
        if (!policy || policy->kind == EXIT_POLICY_NONE) return ramp_fail(err, "deciding exits needs a policy");
        bool same = policy->n_exits == p->n_exits;
        for (int i = 0; same && i < p->n_exits; i++) same = policy->exit_layers[i] == p->exit_layers[i];
        if (!same) return ramp_fail(err, "the exit policy was made for other exit points than this run's");
    }
    exit_run_init(&p->exits, mode, token_level, policy, p->n_exits, p->exit_layers, p->model.config.n_layers);
    return 0;
}

int pipeline_reset_requests(pipeline *p, ramp_error *err) {
    if (!scheduler_finished(&p->scheduler)) return ramp_fail(err, "requests are still running");
    scheduler_config config = p->scheduler.config;
    scheduler_free(&p->scheduler);
    p->run_started_at = p->run_finished_at = 0;
    return scheduler_init(&p->scheduler, &config, err);
}

/* The answer of a row of final logits: restricted to the candidates when there are any. */
static int choose_token(pipeline *p, int index, const float *logits) {
    if (!p->options.candidates) return scheduler_sample(&p->scheduler, index, logits);
    int best = p->options.candidates[0];
    for (int c = 1; c < p->options.n_candidates; c++)
        if (logits[p->options.candidates[c]] > logits[best]) best = p->options.candidates[c];
    return best;
}

static int request_index(const pipeline *p, uint64_t request_id, ramp_error *err) {
    if (request_id >= (uint64_t)p->scheduler.n_requests)
        return ramp_fail(err, "output names request %llu, which does not exist", (unsigned long long)request_id);
    return (int)request_id;
}

/* Marks the rows of leaving requests; returns true when nothing of the batch is left in flight. */
static bool mark_left(micro_batch *b, const uint64_t *ids, int n_ids) {
    bool all_left = true;
    for (int r = 0; r < b->n_rows; r++) {
        for (int i = 0; i < n_ids; i++)
            if (b->rows[r].request_id == ids[i]) b->row_left[r] = true;
        all_left = all_left && b->row_left[r];
    }
    return all_left;
}

static int handle_exit_features(pipeline *p, const Ramp__Output *o, ramp_error *err) {
    micro_batch *b = scheduler_find_batch(&p->scheduler, o->batch_id);
    int exit_index = exit_run_point(&p->exits, (int)o->exit_layer);
    if (!b || exit_index < 0)
        return ramp_fail(err, "exit features for micro-batch %llu at layer %u, which is not expected",
                         (unsigned long long)o->batch_id, o->exit_layer);
    uint64_t leaving[o->n_features + 1];
    int n_leaving = 0;
    double now = clock_seconds();
    for (size_t i = 0; i < o->n_features; i++) {
        const Ramp__ExitFeatures *f = o->features[i];
        int index = request_index(p, f->request_id, err);
        if (index < 0) return -1;
        request *r = &p->scheduler.requests[index];
        bool leaves;
        if (exit_run_observe(&p->exits, r, index, exit_index, f, &leaves, err)) return -1;
        if (!leaves) continue;
        leaving[n_leaving++] = f->request_id;
        exit_run_settle(&p->exits, r, f->top_token, exit_index);
        if (p->exits.token_level) scheduler_accept_token(&p->scheduler, index, f->top_token, now);
        else scheduler_exit_request(&p->scheduler, index, f->top_token, now);
    }
    if (p->exits.mode != EXIT_MODE_DECIDE) return 0;
    Ramp__Decision d = RAMP__DECISION__INIT;
    d.batch_id = o->batch_id;
    d.n_exited_request_ids = (size_t)n_leaving;
    d.exited_request_ids = leaving;
    d.token_level = p->exits.token_level;
    Ramp__Envelope e = RAMP__ENVELOPE__INIT;
    e.body_case = RAMP__ENVELOPE__BODY_DECISION;
    e.decision = &d;
    if (send_envelope(p->transport, (int)o->stage, &e, NULL, 0, err)) return -1;
    if (mark_left(b, leaving, n_leaving)) return scheduler_batch_done(&p->scheduler, o->batch_id, err);
    return 0;
}

static int handle_output(pipeline *p, const Ramp__Output *o, const float *payload, size_t n_payload, ramp_error *err) {
    if (!o->final) return handle_exit_features(p, o, err);
    size_t vocab = (size_t)p->model.config.vocab_size;
    if (o->vocab_size != vocab || n_payload != o->n_output_request_ids * vocab)
        return ramp_fail(err, "micro-batch %llu: %zu logits for %zu rows of vocabulary %u, expected vocabulary %zu",
                         (unsigned long long)o->batch_id, n_payload, o->n_output_request_ids, o->vocab_size, vocab);
    double now = clock_seconds();
    for (size_t i = 0; i < o->n_output_request_ids; i++) {
        int index = request_index(p, o->output_request_ids[i], err);
        if (index < 0) return -1;
        request *r = &p->scheduler.requests[index];
        int token = choose_token(p, index, payload + i * vocab);
        exit_run_settle(&p->exits, r, token, p->exits.n_exits);
        scheduler_accept_token(&p->scheduler, index, token, now);
    }
    return scheduler_batch_done(&p->scheduler, o->batch_id, err);
}

int pipeline_run(pipeline *p, ramp_error *err) {
    if (!p->run_started_at) p->run_started_at = clock_seconds();
    while (!scheduler_finished(&p->scheduler)) {
        if (stop_requested) return ramp_fail(err, "interrupted");
        if (send_released(p, err)) return -1;
        const micro_batch *b;
        while ((b = scheduler_next_batch(&p->scheduler)))
            if (send_batch(p, b, err)) return -1;
        if (scheduler_idle(&p->scheduler)) return ramp_fail(err, "scheduler: requests wait but nothing is in flight");
        Ramp__Envelope *e;
        const float *payload;
        size_t n_payload;
        int source;
        uint8_t *frame;
        if (coordinator_receive(p, "micro-batch results", &e, &payload, &n_payload, &source, &frame, err)) return -1;
        int status = e->body_case == RAMP__ENVELOPE__BODY_OUTPUT ? handle_output(p, e->output, payload, n_payload, err)
                                                                   : handle_failure_or_unexpected(p, e, source, err);
        wire_envelope_free(e);
        free(frame);
        if (status) return -1;
    }
    p->run_finished_at = clock_seconds();
    return send_released(p, err);
}

char *pipeline_continuation(const pipeline *p, int index, size_t *length) {
    const request *r = &p->scheduler.requests[index];
    size_t capacity = 64, used = 0;
    char *text = malloc(capacity);
    if (!text) return NULL;
    for (int i = r->n_prompt; i < r->n_tokens; i++) {
        char piece[512];
        size_t n = tokenizer_decode(p->model.tokenizer, r->tokens[i - 1], r->tokens[i], piece, sizeof piece);
        if (used + n + 1 > capacity) {
            while (used + n + 1 > capacity) capacity *= 2;
            char *grown = realloc(text, capacity);
            if (!grown) {
                free(text);
                return NULL;
            }
            text = grown;
        }
        memcpy(text + used, piece, n);
        used += n;
    }
    text[used] = '\0';
    if (length) *length = used;
    return text;
}

static int collect_reports(pipeline *p, ramp_error *err) {
    if (send_control(p, 1, RAMP__CONTROL__KIND__SHUTDOWN, NULL, 0, err)) return -1;
    return await_every_stage(p, RAMP__ENVELOPE__BODY_REPORT, "the stages' final reports", err);
}

static double run_seconds(const pipeline *p) {
    double end = p->run_finished_at ? p->run_finished_at : clock_seconds();
    return p->run_started_at ? end - p->run_started_at : 0.0;
}

static double mean_time_to_first_token(const pipeline *p) {
    double total = 0;
    int n = 0;
    for (int i = 0; i < p->scheduler.n_requests; i++) {
        const request *r = &p->scheduler.requests[i];
        if (r->first_token_at > 0) {
            total += r->first_token_at - r->submitted_at;
            n++;
        }
    }
    return n ? total / n : 0.0;
}

static double stage_idle_fraction(const Ramp__StageReport *r) {
    double total = r->busy_seconds + r->idle_seconds;
    return total > 0 ? r->idle_seconds / total : 0.0;
}

static void print_summary(const pipeline *p) {
    char split[256];
    split_format(p->ranges, p->n_stages, split, sizeof split);
    double seconds = run_seconds(p);
    const scheduler *s = &p->scheduler;
    fprintf(stderr, "ramp: %d stage%s (layers %s), %d request%s: %llu prompt + %llu generated tokens in %.3f s, "
            "%.1f generated tokens/s, time to first token %.3f s\n",
            p->n_stages, p->n_stages == 1 ? "" : "s", split, s->n_requests, s->n_requests == 1 ? "" : "s",
            (unsigned long long)s->prompt_tokens, (unsigned long long)s->tokens_generated, seconds,
            seconds > 0 ? (double)s->tokens_generated / seconds : 0.0, mean_time_to_first_token(p));
    double idle_sum = 0;
    for (int i = 0; i < p->n_stages; i++) {
        const Ramp__StageReport *r = &p->stages[i].report;
        idle_sum += stage_idle_fraction(r);
        fprintf(stderr,
                "ramp:   stage %d (rank %u, layers %u-%u): busy %.3f s, idle %.3f s (%.0f%%), %llu micro-batches, "
                "%llu rows, sent %.2f MB, received %.2f MB, KV peak %.2f MB, weights %.2f MB, exit heads %.3f s\n",
                i + 1, r->rank, r->first_layer, r->end_layer - 1, r->busy_seconds, r->idle_seconds,
                100.0 * stage_idle_fraction(r), (unsigned long long)r->batches, (unsigned long long)r->rows,
                r->bytes_sent / 1e6, r->bytes_received / 1e6, r->kv_bytes_peak / 1e6, r->weight_bytes / 1e6,
                r->exit_head_seconds);
    }
    if (p->exits.mode == EXIT_MODE_DECIDE && p->exits.outputs > 0) {
        double saved = 1.0 - (double)p->exits.layers_executed / ((double)p->exits.outputs * p->exits.total_layers);
        fprintf(stderr, "ramp:   early exit: %ld outputs, mean %.2f of %d layers, %.1f%% of layer evaluations skipped; "
                "exit histogram", p->exits.outputs, (double)p->exits.layers_executed / p->exits.outputs,
                p->exits.total_layers, 100.0 * saved);
        for (int i = 0; i <= p->exits.n_exits; i++)
            fprintf(stderr, " %d:%ld", i < p->exits.n_exits ? p->exits.exit_layers[i] : p->exits.total_layers,
                    p->exits.histogram[i]);
        fprintf(stderr, "; exit policy %.3f s on rank 0\n", p->exits.policy_seconds);
    }
    int P = p->n_stages, M = p->options.lanes;
    fprintf(stderr, "ramp:   pipeline idle fraction %.2f (bound (P-1)/(M+P-1) = %.2f for P=%d, M=%d)\n",
            P ? idle_sum / P : 0.0, (double)(P - 1) / (M + P - 1), P, M);
}

static int write_metrics_json(const pipeline *p, ramp_error *err) {
    const scheduler *s = &p->scheduler;
    json_t *stages = json_array();
    double idle_sum = 0;
    for (int i = 0; i < p->n_stages; i++) {
        const Ramp__StageReport *r = &p->stages[i].report;
        idle_sum += stage_idle_fraction(r);
        json_array_append_new(
            stages, json_pack("{s:i, s:i, s:i, s:i, s:f, s:f, s:f, s:f, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "stage", i + 1,
                              "rank", (int)r->rank, "first_layer", (int)r->first_layer, "end_layer",
                              (int)r->end_layer, "busy_seconds", r->busy_seconds, "idle_seconds", r->idle_seconds,
                              "idle_fraction", stage_idle_fraction(r), "exit_head_seconds", r->exit_head_seconds, "micro_batches", (json_int_t)r->batches,
                              "rows", (json_int_t)r->rows, "bytes_sent", (json_int_t)r->bytes_sent,
                              "bytes_received", (json_int_t)r->bytes_received, "kv_bytes_peak",
                              (json_int_t)r->kv_bytes_peak, "weight_bytes", (json_int_t)r->weight_bytes,
                              "peak_resident_bytes", (json_int_t)r->peak_resident_bytes));
    }
    double seconds = run_seconds(p);
    int P = p->n_stages, M = p->options.lanes;
    json_t *root = json_pack(
        "{s:i, s:i, s:i, s:i, s:I, s:I, s:I, s:f, s:f, s:f, s:f, s:f, s:f, s:o}", "stages_count", P, "micro_batches_in_flight",
        M, "threads_per_rank", p->threads, "requests", s->n_requests, "prompt_tokens", (json_int_t)s->prompt_tokens,
        "generated_tokens", (json_int_t)s->tokens_generated, "micro_batches", (json_int_t)p->micro_batches, "seconds",
        seconds, "tokens_per_second", seconds > 0 ? (double)s->tokens_generated / seconds : 0.0,
        "time_to_first_token_seconds", mean_time_to_first_token(p), "pipeline_idle_fraction", P ? idle_sum / P : 0.0,
        "idle_bound", (double)(P - 1) / (M + P - 1), "exit_policy_seconds", p->exits.policy_seconds, "stages", stages);
    if (!root) return ramp_fail(err, "metrics: could not build the JSON document");
    int status = json_dump_file(root, p->options.metrics_json, JSON_INDENT(2));
    json_decref(root);
    if (status) return ramp_fail(err, "%s: cannot write the metrics", p->options.metrics_json);
    return 0;
}

int pipeline_finish(pipeline *p, ramp_error *err) {
    if (collect_reports(p, err)) return -1;
    print_summary(p);
    if (p->options.metrics_json && write_metrics_json(p, err)) return -1;
    return 0;
}

void pipeline_close(pipeline *p) {
    if (p->local)
        for (int s = 0; s < p->n_stages; s++) stage_close(&p->local[s]);
    free(p->local);
    scheduler_free(&p->scheduler);
    exit_run_free(&p->exits);
    model_free(&p->model);
    free(p->ranges);
    free(p->stages);
    if (p->transport) transport_close(p->transport);
    memset(p, 0, sizeof *p);
}

int pipeline_fail(pipeline *p, const char *command, const ramp_error *err) {
    fflush(stdout);
    if (p->transport && !transport_is_local(p->transport)) {
        int rank = transport_rank(p->transport);
        fprintf(stderr, "ramp %s: rank %d%s: %s\n", command, rank, rank == 0 ? " (coordinator)" : "", err->message);
    } else {
        fprintf(stderr, "ramp %s: %s\n", command, err->message);
    }
    if (p->transport && !transport_is_local(p->transport)) transport_abort(p->transport, 1);
    return 1;
}
