/* pipeline.h: a ramp job: the coordinator (rank 0) and its pipeline stages (ranks 1..P).
 *
 * Under mpirun/srun every rank calls pipeline_open with the same options; ranks 1..P load their
 * slice of layers, serve micro-batches until shutdown, and pipeline_open returns 1 on them with
 * the process exit status in *worker_status (the caller just returns it). On rank 0 it returns
 * 0 once every stage has loaded its slice. Without mpirun the same code runs with `local_stages`
 * stages inside this process, through the in-process transport.
 *
 * Failures anywhere end the whole job: a stage that fails sends its message to rank 0, which
 * prints it (naming the rank) and aborts every rank with a non-zero status.
 */
#ifndef RAMP_PIPELINE_H
#define RAMP_PIPELINE_H

#include <stdbool.h>
#include <stdint.h>

#include "error.h"
#include "model.h"
#include "ramp.pb-c.h"
#include "scheduler.h"
#include "split.h"
#include "stage.h"
#include "exit_run.h"
#include "transport.h"

typedef struct {
    const char *model_path;
    const char *tokenizer_path;
    const char *layers;      /* explicit split "0-3,4-9,..." or NULL for a balanced one */
    int local_stages;        /* stages when running in one process (default 1) */
    int threads;             /* per rank; 0 = cores / ranks on this node */
    int max_sequences;       /* concurrent sequences (KV slots) */
    int batch_tokens;        /* most rows per micro-batch */
    int lanes;               /* micro-batches in flight */
    int context;             /* most positions per sequence; 0 = the model's context length */
    double timeout_seconds;  /* longest silence from the pipeline before the job is declared dead */
    const char *metrics_json;
    /* early exit */
    bool exits;               /* the job uses exit points (else none unless exit_layers is set) */
    const char *exit_layers;  /* "4,6,8" (layer counts); NULL: the policy's, else every stage boundary */
    const int *candidates;    /* exit head candidates and the only allowed answers (a task's labels) */
    int n_candidates;
    kv_fill_policy kv_fill;
} pipeline_options;

/* Defaults for the fields above; parse command-line flags on top. */
void pipeline_options_default(pipeline_options *o);
/* Parses one of the shared pipeline flags, named without its dashes (layers, stages, threads,
 * max-sequences, batch-tokens, micro-batches, ctx, timeout, metrics-json). Returns 1 if it was
 * one, 0 if not, -1 on a bad value (message in err). */
int pipeline_parse_flag(pipeline_options *o, const char *flag, const char *value, ramp_error *err);
extern const char pipeline_flags_help[];

typedef struct {
    int rank;
    Ramp__StageReport report;
    uint64_t weight_bytes;
    bool reported;
} stage_status;

typedef struct {
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
    exit_run exits;
} pipeline;

int pipeline_open(pipeline *p, const pipeline_options *o, int *argc, char ***argv, int *worker_status,
                  ramp_error *err);
/* Forgets the finished requests so that another run can start (same stages, same KV slots). */
int pipeline_reset_requests(pipeline *p, ramp_error *err);
/* Tokenizes text (with BOS) and queues it. */
int pipeline_submit_text(pipeline *p, const char *text, size_t length, int max_new, const sampling_params *sampling,
                         int *index, ramp_error *err);
/* How the next run treats exit points: EXIT_MODE_NONE, RECORD (features only) or DECIDE (with
 * policy). token_level: tokens leave (generation) rather than whole requests (classification).
 * Resets the exit tallies and records. The policy must have the pipeline's exit points. */
int pipeline_set_exits(pipeline *p, exit_mode mode, bool token_level, const exit_policy *policy, ramp_error *err);
/* "4,6,8" from exit points (the inverse of parse_exit_layers). */
void format_exit_layers(const int *layers, int n, char *buffer, size_t capacity);
/* Exit points from "--exit-layers" text, validated against the model. */
int parse_exit_layers(const char *text, int n_layers, int *layers, int *n, ramp_error *err);
/* Drives micro-batches until every submitted request has finished. */
int pipeline_run(pipeline *p, ramp_error *err);
/* The continuation of request index as text (malloc'ed, NUL-terminated; caller frees). */
char *pipeline_continuation(const pipeline *p, int index, size_t *length);
/* Shuts the stages down, collects their counters, prints the summary on stderr and writes
 * --metrics-json. */
int pipeline_finish(pipeline *p, ramp_error *err);
void pipeline_close(pipeline *p);
/* Under MPI: print err and end every rank with status 1. In-process: print and return 1. */
int pipeline_fail(pipeline *p, const char *command, const ramp_error *err);

#endif
