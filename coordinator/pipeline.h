/* pipeline.h: rank 0's side of a ramp job: opening the stages, shutting them down, and the state
 * the engine (engine.h: requests in, events out) drives.
 *
 * Under mpirun/srun, ranks 1..P run worker_main (worker/worker.h) whatever the command; rank 0
 * calls pipeline_open, which sends every stage a Setup (model, slice, exit points, sizes), waits
 * for their Hellos and checks that each loaded the same model file as rank 0 and the slice it was
 * given. Without mpirun the same code runs with `local_stages` stages inside this process,
 * through the in-process transport.
 *
 * Failures anywhere end the whole job: a stage that fails sends its message to rank 0, which
 * prints it (naming the rank) and aborts every rank with a non-zero status.
 */
#ifndef RAMP_PIPELINE_H
#define RAMP_PIPELINE_H

#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "engine.h"
#include "error.h"
#include "file_identity.h"
#include "metrics_stats.h"
#include "model.h"
#include "text_stream.h"
#include "ramp.pb-c.h"
#include "scheduler.h"
#include "split.h"
#include "stage.h"
#include "exit_run.h"
#include "transport.h"
#include "weight_pages.h"

typedef struct {
    transport *mpi;          /* the MPI transport when launched by mpirun/srun (borrowed), else NULL */
    const char *model_path;
    const char *tokenizer_path;
    const char *layers;      /* explicit split "0-3,4-9,..." or NULL for a balanced one */
    const char *split;       /* NULL or "compute": balanced by compute; "exit-aware:FILE": balanced by
                              * the expected work once exits are taken (FILE's exit profile) */
    const char *parallel_layers; /* "A-B": layers A..B evaluated in parallel pairs (forward.h), or NULL */
    int run_ahead;           /* --run-ahead: STAGE_RUN_AHEAD_AUTO, _ON or _OFF (stage.h) */
    bool pair_ranks;         /* --pair-ranks on: two ranks per stage, the second computing the second
                              * layer of each of its pairs (MPI: 1 + 2P ranks for P stages) */
    int local_stages;        /* stages when running in one process (default 1) */
    int threads;             /* per rank; 0 = cores / ranks on this node */
    int max_sequences;       /* concurrent sequences (KV slots) */
    int batch_tokens;        /* most rows per micro-batch */
    int lanes;               /* micro-batches in flight */
    int context;             /* most positions per sequence; 0 = the model's context length */
    double timeout_seconds;  /* longest silence from the pipeline before the job is declared dead */
    double grace_seconds;    /* after SIGTERM: time to finish what is in flight (default 30) */
    const char *metrics_json;
    /* early exit */
    bool exits;               /* the job uses exit points (else none unless exit_layers is set) */
    const char *exit_layers;  /* "4,6,8" (layer counts); NULL: the policy's, else every stage boundary */
    const int *candidates;    /* exit head candidates and the only allowed answers (a task's labels) */
    int n_candidates;
    bool answers_from_candidates; /* final answers restricted to the candidates too (tasks) */
    kv_fill_policy kv_fill;
    kv_type kv_type; /* --kv-type: the KV cache's element type (default f32) */
    weight_pages_mode huge_pages; /* --huge-pages: the pages the weights are read through (default on) */
} pipeline_options;

/* Defaults for the fields above; parse command-line flags on top. */
void pipeline_options_default(pipeline_options *o);
/* Parses one of the shared pipeline flags, named without its dashes (layers, stages, threads,
 * max-sequences, batch-tokens, micro-batches, ctx, timeout, metrics-json). Returns 1 if it was
 * one, 0 if not, -1 on a bad value (message in err). */
int pipeline_parse_flag(pipeline_options *o, const char *flag, const char *value, ramp_error *err);
extern const char pipeline_flags_help[];
/* "A-B" (--parallel-layers) into pairs, checked against a model of n_layers layers. */
int pipeline_parse_pairs(const char *text, int n_layers, forward_pairs *pairs, ramp_error *err);
/* --split exit-aware without a file takes the profile recorded with the run's exit policy (spec
 * "svm:FILE" or "conf:FILE"): writes "exit-aware:FILE" into buffer and points o->split at it. */
void pipeline_split_from_policy(pipeline_options *o, const char *exit_spec, char *buffer, size_t capacity);
/* "recompute", "copy" or "omit" (--kv-fill). */
int pipeline_parse_kv_fill(const char *text, kv_fill_policy *out, ramp_error *err);

typedef struct {
    int rank;
    Ramp__StageReport report;
    uint64_t weight_bytes;
    bool reported;
    /* live counters from the stage's answers to polls (engine.c), read under inbox.lock */
    uint64_t hellos;
    double busy_seconds;
    uint64_t live_rows, live_batches;
} stage_status;

/* A request queued by engine_submit (any thread) until the engine loop admits it. */
typedef struct {
    uint64_t id;
    int *prompt;
    int n_prompt, max_tokens;
    sampling_params sampling;
    char *stop[ENGINE_MAX_STOP];
    int n_stop;
    request_exit exit;
    bool logprobs;
    engine_handler handler;
    void *context;
    double submitted_at;
} engine_submission;

/* The engine's view of one request beside the scheduler's: who hears its events, its text. */
typedef struct {
    engine_handler handler;
    void *context;
    text_stream text;
    bool logprobs; /* its tokens' events carry their logprob */
    bool finish_sent;
    double last_token_at;
} engine_request_state;

/* Where other threads hand work to the engine loop. */
typedef struct {
    pthread_mutex_t lock;
    pthread_cond_t changed;
    engine_submission *items;
    int n_items, capacity;
    uint64_t *cancels;
    int n_cancels, cancels_capacity;
    uint64_t next_id;
    bool stopping;
    double stop_deadline;  /* in-flight requests are cancelled after this (clock_seconds) */
    volatile int wake;     /* set with the lock held; polled by transport_receive */
    engine_load load;      /* published by the loop for other threads */
} engine_inbox;

struct pipeline {
    pipeline_options options;
    transport *transport;
    int n_stages;
    layer_range *ranges;
    model model; /* configuration and tokenizer only: the coordinator holds no layers */
    stage *local;       /* in-process stages, or NULL under MPI */
    stage_status *stages;
    scheduler scheduler;
    int threads;
    double started_at, run_started_at, run_finished_at;
    uint64_t micro_batches;
    int n_exits;
    int exit_layers[EXIT_MAX_POINTS];
    forward_pairs pairs; /* --parallel-layers, none when pairs.first == pairs.end */
    exit_run exits;
    request_exit default_exit; /* what pipeline_submit_text requests use (set by pipeline_set_exits) */
    /* the engine (engine.c) */
    engine_inbox inbox;
    engine_request_state *states; /* [states_capacity], by request index */
    int states_capacity;
    uint64_t kv_bytes_per_position; /* over every stage */
    engine_stats stats;              /* counters and histograms for metrics (under inbox.lock) */
    file_identity identity;          /* of the model file rank 0 opened; stages must match it */
    double last_heard;               /* clock_seconds of the last frame from the pipeline */
    json_t *metrics_extra;           /* a front end's own figures for --metrics-json (borrowed), or NULL */
    bool failed;
};

/* 0 once every stage has loaded its slice (rank 0 only; workers never call it). */
int pipeline_open(pipeline *p, const pipeline_options *o, ramp_error *err);
/* Forgets the finished requests so that another run can start (same stages, same KV slots). */
int pipeline_reset_requests(pipeline *p, ramp_error *err);
/* Tokenizes text (with BOS) and queues it as an engine request with the pipeline's default exit
 * setting and no handler (jobs read the result from p->scheduler afterwards). */
int pipeline_submit_text(pipeline *p, const char *text, size_t length, int max_new, const sampling_params *sampling,
                         int *index, ramp_error *err);
/* Tokenizes text with BOS into *tokens (malloc'ed; caller frees). */
int pipeline_tokenize(const pipeline *p, const char *text, size_t length, int **tokens, int *n_tokens, ramp_error *err);
/* How the next run treats exit points: EXIT_MODE_NONE, RECORD (features only) or DECIDE (with
 * policy). token_level: tokens leave (generation) rather than whole requests (classification).
 * Resets the exit tallies and records. The policy must have the pipeline's exit points. */
int pipeline_set_exits(pipeline *p, exit_mode mode, bool token_level, const exit_policy *policy, ramp_error *err);
/* "4,6,8" from exit points (the inverse of parse_exit_layers). */
void format_exit_layers(const int *layers, int n, char *buffer, size_t capacity);
/* Exit points from "--exit-layers" text, validated against the model. */
int parse_exit_layers(const char *text, int n_layers, int *layers, int *n, ramp_error *err);
/* Drives micro-batches until every submitted request has finished (engine_run, ENGINE_UNTIL_IDLE). */
int pipeline_run(pipeline *p, ramp_error *err);
/* Coordinator side of the wire, used by the engine: send the released KV slots / a micro-batch,
 * wait for the next frame (timeouts name the silent stage). */
int pipeline_send_released(pipeline *p, ramp_error *err);
int pipeline_send_batch(pipeline *p, const micro_batch *b, ramp_error *err);
int pipeline_silence_error(pipeline *p, const char *waiting_for, ramp_error *err);
int pipeline_unexpected(pipeline *p, const Ramp__Envelope *e, int source, ramp_error *err);
/* The continuation of request index as text (malloc'ed, NUL-terminated; caller frees). */
char *pipeline_continuation(const pipeline *p, int index, size_t *length);
/* Shuts the stages down, collects their counters, prints the summary on stderr and writes
 * --metrics-json. */
int pipeline_finish(pipeline *p, ramp_error *err);
/* Rows x layers the stages have computed since they opened: the layer evaluations really run,
 * recomputed rows included. In-process stages only (-1 under MPI, whose stages report at the end). */
long long pipeline_layer_rows(const pipeline *p);
/* Asks stage `rank` for its live counters (answered by a Hello). */
int pipeline_send_ping(pipeline *p, int rank, ramp_error *err);
/* The engine's bookkeeping of requests (engine.c), dropped when a job resets its requests. */
void engine_forget_requests(pipeline *p);
/* Under MPI, tells idle worker ranks that no pipeline will be set up (a command that needs none). */
void pipeline_release_workers(transport *mpi);
void pipeline_close(pipeline *p);
/* Under MPI: print err and end every rank with status 1. In-process: print and return 1. */
int pipeline_fail(pipeline *p, const char *command, const ramp_error *err);

#endif
