#include "pipeline.h"

#include <jansson.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "exit_profile.h"
#include "file_identity.h"
#include "metrics.h"
#include "interrupt.h"
#include "wire.h"
#include "worker.h"

/* Loading a multi-GB slice takes long; it has its own bound, apart from --timeout. */
#define LOAD_TIMEOUT_SECONDS 900.0

const char pipeline_flags_help[] =
    "pipeline (the same flags under mpirun; rank 0 coordinates, ranks 1..P are stages):\n"
    "      --layers SPLIT     layers per stage, e.g. 0-3,4-9,10-15 (default: balanced by compute)\n"
    "      --parallel-layers A-B  layers A..B in parallel pairs (A,A+1), (A+2,A+3), ...: each pair reads one\n"
    "                         input and adds both layers' attention, then both MLPs (arXiv 2502.02790)\n"
    "      --pair-ranks on|off  with --parallel-layers under MPI: each stage gets a partner rank that\n"
    "                         computes the second layer of its pairs at the same time (1 + 2P ranks)\n"
    "      --run-ahead auto|on|off  while an exit Decision is pending, a stage with nothing else to do\n"
    "                         runs the parked micro-batch's next segment (auto, the default: where the\n"
    "                         node has more cores than computing ranks; off: it waits idle)\n"
    "      --split HOW        compute (default): stages balanced by compute; exit-aware[:FILE]: balanced by\n"
    "                         the work left once exits are taken, from the exit profile in FILE (eval --json,\n"
    "                         a classifier's sidecar, a thresholds file; default: the --exit policy's file)\n"
    "      --stages P         pipeline stages when running in one process (default 1)\n"
    "      --threads N        threads per rank (default: cores / ranks on the node)\n"
    "      --max-sequences N  sequences in flight at once, i.e. KV-cache slots (default 32)\n"
    "      --batch-tokens N   most tokens in one micro-batch (default 256)\n"
    "      --micro-batches M  micro-batches in flight (default 1 in one stage, 8 across several)\n"
    "      --ctx N            most positions per sequence (default: the model's context length)\n"
    "      --kv-type T        f32 (default) or f16: KV-cache elements; f16 (llama.cpp's default) holds\n"
    "                         twice the positions in the same memory and reads half the bytes per token\n"
    "      --huge-pages M     on (default): weights read through 2 MiB pages where the page cache holds\n"
    "                         the file in 2 MiB folios (as it reads a file not read since boot); reread: a\n"
    "                         slice cached in small pages is also dropped from the page cache and read\n"
    "                         again at load (while storage delivers 250 MB/s); off: the kernel's default\n"
    "                         pages, as a plain mmap\n"
    "      --timeout S        seconds of silence from the pipeline before the job fails (default 60)\n"
    "      --grace S          after SIGTERM, seconds to finish requests in flight (default 30)\n"
    "      --metrics-json F   write per-stage and per-run metrics as JSON to F\n";

void pipeline_options_default(pipeline_options *o) {
    memset(o, 0, sizeof *o);
    o->local_stages = 1;
    o->max_sequences = 32;
    o->batch_tokens = 256;
    o->lanes = 0; /* automatic: see pipeline_open */
    o->timeout_seconds = 60.0;
    o->grace_seconds = 30.0;
}

/* An integer flag of at least `least`; why_least (or NULL) says why a value below it cannot work. */
static int parse_integer(const char *flag, const char *value, int least, const char *why_least, int *out,
                         ramp_error *err) {
    char *end;
    long v = strtol(value, &end, 10);
    if (!*value || *end || v < 1 || v > 1 << 24)
        return ramp_fail(err, "--%s expects a positive integer, got '%s'", flag, value);
    if (v < least) return ramp_fail(err, "--%s expects at least %d %s, got '%s'", flag, least, why_least, value);
    *out = (int)v;
    return 0;
}

int pipeline_parse_kv_fill(const char *text, kv_fill_policy *out, ramp_error *err) {
    static const char *const names[] = {"recompute", "copy", "omit"};
    for (int i = 0; i < 3; i++)
        if (!strcmp(text, names[i])) {
            *out = (kv_fill_policy)i;
            return 0;
        }
    return ramp_fail(err, "--kv-fill expects recompute, copy or omit, got '%s'", text);
}

int pipeline_parse_flag(pipeline_options *o, const char *flag, const char *value, ramp_error *err) {
    struct {
        const char *name;
        int *field;
        int least;
        const char *why_least;
    } integers[] = {
        {"stages", &o->local_stages, 1, NULL},       {"threads", &o->threads, 1, NULL},
        {"max-sequences", &o->max_sequences, 1, NULL}, {"batch-tokens", &o->batch_tokens, 1, NULL},
        {"micro-batches", &o->lanes, 1, NULL},
        {"ctx", &o->context, 2, "positions (a prompt token and a generated one)"},
    };
    for (size_t i = 0; i < sizeof integers / sizeof integers[0]; i++)
        if (!strcmp(flag, integers[i].name))
            return parse_integer(flag, value, integers[i].least, integers[i].why_least, integers[i].field, err) ? -1 : 1;
    if (!strcmp(flag, "layers")) {
        o->layers = value;
        return 1;
    }
    if (!strcmp(flag, "parallel-layers")) {
        forward_pairs pairs;
        if (pipeline_parse_pairs(value, 1 << 20, &pairs, err)) return -1;
        o->parallel_layers = value;
        return 1;
    }
    if (!strcmp(flag, "pair-ranks")) {
        if (strcmp(value, "on") && strcmp(value, "off"))
            return ramp_fail(err, "--pair-ranks expects on or off, got '%s'", value);
        o->pair_ranks = !strcmp(value, "on");
        return 1;
    }
    if (!strcmp(flag, "run-ahead")) {
        if (!strcmp(value, "auto")) o->run_ahead = STAGE_RUN_AHEAD_AUTO;
        else if (!strcmp(value, "on")) o->run_ahead = STAGE_RUN_AHEAD_ON;
        else if (!strcmp(value, "off")) o->run_ahead = STAGE_RUN_AHEAD_OFF;
        else return ramp_fail(err, "--run-ahead expects auto, on or off, got '%s'", value);
        return 1;
    }
    if (!strcmp(flag, "split")) {
        if (strcmp(value, "compute") && strcmp(value, "exit-aware") && strncmp(value, "exit-aware:", 11))
            return ramp_fail(err, "--split expects compute, exit-aware or exit-aware:FILE, got '%s'", value);
        o->split = value;
        return 1;
    }
    if (!strcmp(flag, "kv-type")) return kv_type_parse(value, &o->kv_type, err) ? -1 : 1;
    if (!strcmp(flag, "huge-pages")) return weight_pages_parse(value, &o->huge_pages, err) ? -1 : 1;
    if (!strcmp(flag, "metrics-json")) {
        o->metrics_json = value;
        return 1;
    }
    if (!strcmp(flag, "timeout") || !strcmp(flag, "grace")) {
        char *end;
        double seconds = strtod(value, &end);
        if (!*value || *end || !(seconds > 0) || seconds > 1e6)
            return ramp_fail(err, "--%s expects a positive number of seconds, got '%s'", flag, value);
        *(!strcmp(flag, "timeout") ? &o->timeout_seconds : &o->grace_seconds) = seconds;
        return 1;
    }
    return 0;
}

int pipeline_parse_pairs(const char *text, int n_layers, forward_pairs *pairs, ramp_error *err) {
    int first, last, used = 0;
    if (sscanf(text, "%d-%d%n", &first, &last, &used) != 2 || text[used] || first < 0 || last <= first ||
        (last - first + 1) % 2)
        return ramp_fail(err, "--parallel-layers expects A-B with an even number of layers from A to B (e.g. 4-11), "
                              "got '%s'", text);
    if (last >= n_layers)
        return ramp_fail(err, "--parallel-layers %s: the model has layers 0-%d", text, n_layers - 1);
    *pairs = (forward_pairs){.first = first, .end = last + 1};
    return 0;
}

void pipeline_split_from_policy(pipeline_options *o, const char *exit_spec, char *buffer, size_t capacity) {
    if (!o->split || strcmp(o->split, "exit-aware") || !exit_spec) return;
    const char *colon = strchr(exit_spec, ':');
    snprintf(buffer, capacity, "exit-aware:%s", colon ? colon + 1 : exit_spec);
    o->split = buffer;
}

/* The stages' layers: --layers as given, else balanced by compute or by the exit profile. */
static int choose_split(pipeline *p, const model_config *config, ramp_error *err) {
    const pipeline_options *o = &p->options;
    bool exit_aware = o->split && strcmp(o->split, "compute");
    if (o->layers && o->split)
        return ramp_fail(err, "--layers %s and --split %s both choose the stages' layers: give one", o->layers,
                         o->split);
    const forward_pairs *pairs = p->pairs.first < p->pairs.end ? &p->pairs : NULL;
    if (o->layers) {
        if (split_parse(o->layers, config->n_layers, p->n_stages, p->ranges, err)) return -1; /* its message names --layers */
        if (split_check_pairs(p->ranges, p->n_stages, pairs, err)) return ramp_fail_prefix(err, "--layers %s: ", o->layers);
        return 0;
    }
    if (!exit_aware) return split_balanced(config, p->n_stages, false, pairs, p->ranges, err);
    if (strncmp(o->split, "exit-aware:", 11))
        return ramp_fail(err, "--split exit-aware: expected a profile (exit-aware:FILE, or an --exit policy whose "
                              "file records one), found none");
    const char *path = o->split + 11;
    exit_profile profile;
    if (exit_profile_read(&profile, path, config->n_layers, err)) return ramp_fail_prefix(err, "--split: ");
    int status = split_exit_aware(config, p->n_stages, profile.reach, profile.n_layers, pairs, p->ranges, err);
    if (!status) {
        layer_range balanced[p->n_stages];
        double aware_costs[p->n_stages], balanced_costs[p->n_stages];
        split_balanced(config, p->n_stages, false, pairs, balanced, err);
        split_stage_costs(config, p->ranges, p->n_stages, profile.reach, aware_costs);
        split_stage_costs(config, balanced, p->n_stages, profile.reach, balanced_costs);
        char aware_text[256], balanced_text[256];
        split_format(p->ranges, p->n_stages, aware_text, sizeof aware_text);
        split_format(balanced, p->n_stages, balanced_text, sizeof balanced_text);
        double aware_total = 0, balanced_total = 0;
        for (int s = 0; s < p->n_stages; s++) aware_total += aware_costs[s], balanced_total += balanced_costs[s];
        fprintf(stderr, "ramp: exit-aware split %s from %s (%s); expected share of the work per stage:", aware_text,
                path, profile.source);
        for (int s = 0; s < p->n_stages; s++) fprintf(stderr, " %.3f", aware_costs[s] / aware_total);
        fprintf(stderr, " (compute-balanced %s:", balanced_text);
        for (int s = 0; s < p->n_stages; s++) fprintf(stderr, " %.3f", balanced_costs[s] / balanced_total);
        fprintf(stderr, ")\n");
    }
    exit_profile_free(&profile);
    return status;
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
        .kv_type = o->kv_type,
        .pairs = p->pairs,
        .run_ahead_mode = o->run_ahead,
    };
    /* a partner rank only where the stage holds a pair; the others' partners are released */
    for (int l = c.first_layer; o->pair_ranks && l < c.end_layer; l++)
        if (forward_pair_starts(&p->pairs, l)) c.partner_rank = p->n_stages + stage_index;
    memcpy(c.exit_layers, p->exit_layers, sizeof c.exit_layers);
    return c;
}

int pipeline_unexpected(pipeline *p, const Ramp__Envelope *e, int source, ramp_error *err) {
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

long long pipeline_layer_rows(const pipeline *p) {
    if (!p->local) return -1;
    long long total = 0;
    for (int s = 0; s < p->n_stages; s++) total += (long long)p->local[s].layer_rows;
    return total;
}

int pipeline_send_ping(pipeline *p, int rank, ramp_error *err) {
    return send_control(p, rank, RAMP__CONTROL__KIND__PING, NULL, 0, err);
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
        if (left <= 0 || transport_receive(p->transport, left, NULL, &source, &frame, &length, &receive_err) != 1)
            break;
        Ramp__Envelope *e;
        const float *payload;
        size_t n_payload;
        int status = 0;
        if (wire_unpack(frame, length, &e, &payload, &n_payload, &receive_err) == 0) {
            if (e->body_case == RAMP__ENVELOPE__BODY_FAILURE) {
                status = pipeline_unexpected(p, e, source, err);
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

int pipeline_silence_error(pipeline *p, const char *waiting_for, ramp_error *err) {
    if (transport_is_local(p->transport))
        return ramp_fail(err, "in-process pipeline went quiet while waiting for %s", waiting_for);
    char silent[256];
    if (find_silent_stages(p, silent, sizeof silent, err)) return -1;
    return ramp_fail(err, "no message from the pipeline for %.0f s while waiting for %s: %s",
                     p->options.timeout_seconds, waiting_for, silent);
}

/* Waits for one frame to the coordinator and unpacks it. 0 = got one, -1 = error/timeout. */
static int coordinator_receive(pipeline *p, double timeout, bool interruptible, const char *waiting_for, Ramp__Envelope **e,
                               const float **payload, size_t *n_payload, int *source, uint8_t **frame,
                               ramp_error *err) {
    size_t length;
    /* Loading can be interrupted; the final reports after a drain (SIGTERM) must still come in. */
    const volatile int *stop = interruptible ? interrupt_flag() : NULL;
    int got = transport_receive(p->transport, timeout, stop, source, frame, &length, err);
    if (got < 0) return -1;
    if (got == 0) {
        if (stop && interrupt_requested()) return ramp_fail(err, "interrupted while waiting for %s", waiting_for);
        return pipeline_silence_error(p, waiting_for, err);
    }
    if (wire_unpack(*frame, length, e, payload, n_payload, err)) {
        free(*frame);
        return ramp_fail_prefix(err, "coordinator: frame from rank %d: ", *source);
    }
    return 0;
}

/* A stage must have loaded the slice it was given from the same file as rank 0. */
static int check_hello(const pipeline *p, const Ramp__Hello *h, ramp_error *err) {
    const layer_range *range = &p->ranges[h->rank - 1];
    if ((int)h->first_layer != range->first_layer || (int)h->end_layer != range->end_layer)
        return ramp_fail(err, "rank %u holds layers %u-%u, the split gives it %d-%d", h->rank, h->first_layer,
                         h->end_layer - 1, range->first_layer, range->end_layer - 1);
    const model_config *c = &p->model.config;
    if (h->model_file_bytes != p->identity.bytes || h->model_checksum != p->identity.checksum ||
        (int)h->n_layers != c->n_layers || (int)h->dim != c->dim || (int)h->vocab_size != c->vocab_size)
        return ramp_fail(err,
                         "rank %u loaded a different model from %s than rank 0: %llu bytes, checksum %016llx, %u "
                         "layers, dim %u, vocabulary %u; rank 0 has %llu bytes, checksum %016llx, %d layers, dim %d, "
                         "vocabulary %d (a stale or different file on that node?)",
                         h->rank, p->options.model_path, (unsigned long long)h->model_file_bytes,
                         (unsigned long long)h->model_checksum, h->n_layers, h->dim, h->vocab_size,
                         (unsigned long long)p->identity.bytes, (unsigned long long)p->identity.checksum, c->n_layers,
                         c->dim, c->vocab_size);
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
        double timeout = expected == RAMP__ENVELOPE__BODY_HELLO ? LOAD_TIMEOUT_SECONDS : p->options.timeout_seconds;
        bool loading = expected == RAMP__ENVELOPE__BODY_HELLO;
        if (coordinator_receive(p, timeout, loading, waiting_for, &e, &payload, &n_payload, &source, &frame, err))
            return -1;
        int rank = -1, status = 0;
        if (e->body_case == expected)
            rank = (int)(expected == RAMP__ENVELOPE__BODY_HELLO ? e->hello->rank : e->report->rank);
        if (rank >= 1 && rank <= p->n_stages) {
            stage_status *s = &p->stages[rank - 1];
            if (expected == RAMP__ENVELOPE__BODY_HELLO) {
                s->weight_bytes = e->hello->weight_bytes;
                status = check_hello(p, e->hello, err);
            } else {
                s->report = *e->report;
                s->report.base = (ProtobufCMessage)PROTOBUF_C_MESSAGE_INIT(&ramp__stage_report__descriptor);
                s->reported = true;
            }
            received++;
        } else if (e->body_case != RAMP__ENVELOPE__BODY_HELLO) { /* a late answer to a poll is no news */
            status = pipeline_unexpected(p, e, source, err);
        }
        wire_envelope_free(e);
        free(frame);
        if (status) return -1;
    }
    return 0;
}

/* Sends stage `index` its Setup: everything of the job a stage needs, so no rank reads argv. */
static int send_setup(pipeline *p, int index, ramp_error *err) {
    stage_config c = stage_config_for(p, index, p->options.context);
    uint32_t exit_layers[EXIT_MAX_POINTS];
    for (int i = 0; i < c.n_exits; i++) exit_layers[i] = (uint32_t)c.exit_layers[i];
    Ramp__Setup m = RAMP__SETUP__INIT;
    m.model_path = (char *)c.model_path;
    m.stage_index = (uint32_t)index;
    m.n_stages = (uint32_t)c.n_stages;
    m.first_layer = (uint32_t)c.first_layer;
    m.end_layer = (uint32_t)c.end_layer;
    m.max_rows = (uint32_t)c.max_rows;
    m.max_sequences = (uint32_t)c.max_sequences;
    m.context = (uint32_t)c.context;
    m.max_parked = (uint32_t)c.max_parked;
    m.n_exit_layers = (size_t)c.n_exits;
    m.exit_layers = exit_layers;
    m.n_exit_candidates = c.exit_candidates ? (size_t)c.n_exit_candidates : 0;
    m.exit_candidates = (int32_t *)c.exit_candidates;
    m.kv_fill = (uint32_t)c.kv_fill;
    m.kv_type = (uint32_t)c.kv_type;
    m.huge_pages = (uint32_t)p->options.huge_pages;
    m.threads = (uint32_t)p->options.threads;
    m.shutdown_grace_seconds = p->options.grace_seconds + p->options.timeout_seconds;
    m.parallel_first = (uint32_t)c.pairs.first;
    m.parallel_end = (uint32_t)c.pairs.end;
    m.run_ahead = (uint32_t)c.run_ahead_mode;
    m.partner_rank = (uint32_t)c.partner_rank;
    Ramp__Envelope e = RAMP__ENVELOPE__INIT;
    e.body_case = RAMP__ENVELOPE__BODY_SETUP;
    e.setup = &m;
    if (send_envelope(p->transport, index, &e, NULL, 0, err)) return -1;
    if (!p->options.pair_ranks) return 0;
    if (!c.partner_rank) { /* this stage holds no pair: its partner has nothing to do */
        Ramp__Control stop = RAMP__CONTROL__INIT;
        stop.kind = RAMP__CONTROL__KIND__SHUTDOWN;
        Ramp__Envelope s = RAMP__ENVELOPE__INIT;
        s.body_case = RAMP__ENVELOPE__BODY_CONTROL;
        s.control = &stop;
        return send_envelope(p->transport, p->n_stages + index, &s, NULL, 0, err);
    }
    m.partner_rank = 0;
    m.partner_of = (uint32_t)index;
    return send_envelope(p->transport, c.partner_rank, &e, NULL, 0, err);
}

void pipeline_release_workers(transport *mpi) {
    if (!mpi || transport_rank(mpi) != 0 || transport_pipeline_started(mpi)) return;
    for (int rank = 1; rank < transport_size(mpi); rank++) {
        Ramp__Control c = RAMP__CONTROL__INIT;
        c.kind = RAMP__CONTROL__KIND__SHUTDOWN;
        Ramp__Envelope e = RAMP__ENVELOPE__INIT;
        e.body_case = RAMP__ENVELOPE__BODY_CONTROL;
        e.control = &c;
        ramp_error ignored; /* a worker that is gone needs no release */
        send_envelope(mpi, rank, &e, NULL, 0, &ignored);
    }
}

int pipeline_open(pipeline *p, const pipeline_options *o, ramp_error *err) {
    memset(p, 0, sizeof *p);
    p->options = *o;
    p->started_at = clock_seconds();
    pthread_mutex_init(&p->inbox.lock, NULL);
    pthread_cond_init(&p->inbox.changed, NULL);
    bool mpi = o->mpi && transport_size(o->mpi) > 1;
    if (mpi) {
        p->transport = o->mpi;
        transport_mark_pipeline_started(o->mpi);
    } else if (transport_open_local(&p->transport, o->local_stages + 1, err)) {
        return -1;
    }
    p->n_stages = transport_size(p->transport) - 1;
    if (o->pair_ranks) { /* ranks 1..P are the stages, P+1..2P their partners */
        if (!mpi) return ramp_fail(err, "--pair-ranks on needs an MPI job (mpirun -np 1+2P); in one process the "
                                        "pairs' two layers run fused");
        if (!o->parallel_layers) return ramp_fail(err, "--pair-ranks on needs --parallel-layers A-B");
        if (p->n_stages % 2)
            return ramp_fail(err, "--pair-ranks on needs 1 + 2P ranks (P stages and their partners), found %d ranks",
                             p->n_stages + 1);
        p->n_stages /= 2;
    }
    p->threads = threads_per_rank(o->threads, !mpi, transport_size(p->transport));
    threads_apply(mpi ? 1 : p->threads);
    weight_pages_set_mode(o->huge_pages);

    model_config config;
    if (file_identity_read(o->model_path, &p->identity, err) || model_read_config(o->model_path, &config, err))
        return -1;
    int context = o->context > 0 ? o->context : config.context_length;
    p->options.context = context;
    if (config.context_length > 0 && context > config.context_length)
        fprintf(stderr, "ramp: warning: --ctx %d exceeds the context length %s declares (%d); positions beyond it "
                        "may decode poorly\n", context, o->model_path, config.context_length);
    if (o->parallel_layers && pipeline_parse_pairs(o->parallel_layers, config.n_layers, &p->pairs, err)) return -1;
    p->ranges = calloc((size_t)p->n_stages, sizeof *p->ranges);
    p->stages = calloc((size_t)p->n_stages, sizeof *p->stages);
    if (!p->ranges || !p->stages) return ramp_fail(err, "out of memory");
    if (choose_split(p, &config, err)) return -1;
    if (o->batch_tokens > 1 << 16) return ramp_fail(err, "--batch-tokens %d is too large", o->batch_tokens);
    if (o->exit_layers) {
        if (parse_exit_layers(o->exit_layers, config.n_layers, p->exit_layers, &p->n_exits, err)) return -1;
    } else if (o->exits) { /* exit heads cost memory and time: only when a job asks for exits */
        for (int s = 0; s + 1 < p->n_stages; s++) p->exit_layers[p->n_exits++] = p->ranges[s].end_layer;
    }
    for (int i = 0; i < p->n_exits; i++) /* a pair computes its two layers at once: no state between them */
        if (forward_pair_starts(&p->pairs, p->exit_layers[i] - 1))
            return ramp_fail(err, "exit point after %d layers falls inside the parallel pair %d,%d: exit points must "
                                  "fall on pair boundaries", p->exit_layers[i], p->exit_layers[i] - 1,
                             p->exit_layers[i]);
    /* One stage computes one micro-batch at a time: one lane keeps every request's row in the same
     * product (measured: 16 streaming clients on lite16, 993 vs 419 tokens/s with 8 lanes). Several
     * stages need micro-batches in flight to keep each other busy. */
    if (p->options.lanes == 0) p->options.lanes = p->n_stages == 1 ? 1 : 8;
    if (p->options.lanes > p->options.max_sequences) p->options.lanes = p->options.max_sequences; /* a lane needs a slot */
    for (int s = 0; s < p->n_stages; s++) p->stages[s].rank = s + 1;
    if (mpi) /* the stages load while rank 0 reads its tokenizer */
        for (int s = 1; s <= p->n_stages; s++)
            if (send_setup(p, s, err)) return -1;
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
    exit_run_init(&p->exits, EXIT_MODE_NONE, false, NULL, p->n_exits, p->exit_layers, config.n_layers);
    p->kv_bytes_per_position = 2ull * (uint64_t)config.n_layers * (uint64_t)config.kv_dim * kv_type_bytes(o->kv_type);
    scheduler_config sc = {
        .lanes = p->options.lanes,
        .max_sequences = o->max_sequences,
        .batch_tokens = o->batch_tokens,
        .context = context,
        .eos_token = tokenizer_eos(p->model.tokenizer),
        .eot_token = tokenizer_eot(p->model.tokenizer),
        .vocab_size = config.vocab_size,
    };
    return scheduler_init(&p->scheduler, &sc, err);
}

int pipeline_tokenize(const pipeline *p, const char *text, size_t length, int **tokens, int *n_tokens,
                      ramp_error *err) {
    size_t capacity = 4 * length + 8, n; /* byte fallback: up to one token per byte of "▁" + text */
    *tokens = malloc(capacity * sizeof **tokens);
    if (!*tokens) return ramp_fail(err, "out of memory tokenizing a prompt of %zu bytes", length);
    if (tokenizer_encode(p->model.tokenizer, text, length, true, *tokens, capacity, &n, err)) {
        free(*tokens);
        *tokens = NULL;
        return -1;
    }
    *n_tokens = (int)n;
    return 0;
}

int pipeline_submit_text(pipeline *p, const char *text, size_t length, int max_new, const sampling_params *sampling,
                         int *index, ramp_error *err) {
    int *tokens, n_tokens = 0;
    if (pipeline_tokenize(p, text, length, &tokens, &n_tokens, err)) return -1;
    engine_request r = {.prompt = tokens, .n_prompt = n_tokens, .max_tokens = max_new, .sampling = *sampling,
                        .exit = (exit_mode)p->default_exit.mode, .policy = p->default_exit.policy,
                        .token_level = p->default_exit.token_level};
    uint64_t id;
    int status = engine_submit(p, &r, NULL, NULL, &id, err);
    free(tokens);
    *index = (int)id; /* requests get ids in submission order: the id is the scheduler index */
    return status;
}

int pipeline_send_released(pipeline *p, ramp_error *err) {
    const int *slots;
    int n = scheduler_take_released(&p->scheduler, &slots);
    if (n == 0) return 0;
    uint32_t released[n];
    for (int i = 0; i < n; i++) released[i] = (uint32_t)slots[i];
    return send_control(p, 1, RAMP__CONTROL__KIND__RELEASE, released, (size_t)n, err);
}

int pipeline_send_batch(pipeline *p, const micro_batch *b, ramp_error *err) {
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
        rows[i].exit_mode = (uint32_t)p->scheduler.requests[r->request_id].exit.mode;
        row_pointers[i] = &rows[i];
    }
    Ramp__Work w = RAMP__WORK__INIT;
    w.batch_id = b->batch_id;
    w.n_rows = (size_t)b->n_rows;
    w.rows = row_pointers;
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
    p->exits.keep_records = true; /* the jobs that set exits read every observation afterwards */
    p->default_exit = (request_exit){.mode = mode, .token_level = token_level, .policy = policy};
    return 0;
}

int pipeline_reset_requests(pipeline *p, ramp_error *err) {
    if (!scheduler_finished(&p->scheduler)) return ramp_fail(err, "requests are still running");
    scheduler_config config = p->scheduler.config;
    engine_forget_requests(p);
    scheduler_free(&p->scheduler);
    p->run_started_at = p->run_finished_at = 0;
    return scheduler_init(&p->scheduler, &config, err);
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

int pipeline_finish(pipeline *p, ramp_error *err) {
    if (collect_reports(p, err)) return -1;
    metrics_print_summary(p, stderr);
    if (p->options.metrics_json && metrics_write_json(p, p->options.metrics_json, err)) return -1;
    return 0;
}

void pipeline_close(pipeline *p) {
    if (p->local)
        for (int s = 0; s < p->n_stages; s++) stage_close(&p->local[s]);
    free(p->local);
    engine_forget_requests(p);
    free(p->states);
    free(p->inbox.items);
    free(p->inbox.cancels);
    pthread_mutex_destroy(&p->inbox.lock);
    pthread_cond_destroy(&p->inbox.changed);
    scheduler_free(&p->scheduler);
    exit_run_free(&p->exits);
    model_free(&p->model);
    free(p->ranges);
    free(p->stages);
    if (p->transport && p->transport != p->options.mpi) transport_close(p->transport); /* main owns MPI */
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
