/* scheduler.h: the coordinator's requests and how they are packed into micro-batches.
 *
 * Continuous batching in `lanes`: each request belongs to one lane (submission order, round
 * robin) and each lane has its own share of the KV slots and at most one micro-batch in flight.
 * A lane's next micro-batch is formed as soon as its previous one returns: first one decode row
 * for every generating request, then prompt chunks, up to `batch_tokens` rows; finished requests
 * leave and waiting ones take their slots. With several lanes in flight every stage has work.
 *
 * Why lanes: the rows of a micro-batch depend only on the lane's own history, never on timing,
 * so a job gives the same micro-batches, hence bit-identical results, on 1 process or N ranks.
 *
 * The scheduler does no I/O: the pipeline asks it for batches and hands it the logits back.
 * It owns its requests (token arrays, samplers) until scheduler_free.
 */
#ifndef RAMP_SCHEDULER_H
#define RAMP_SCHEDULER_H

#include <stdbool.h>
#include <stdint.h>

#include "error.h"
#include "sampler.h"

/* Why a request ended. EOS and STOP (a stop string, found by the engine) both read "stop" to a
 * client; CONTEXT (no positions left) reads "length". */
typedef enum {
    FINISH_NONE, FINISH_EOS, FINISH_LENGTH, FINISH_CONTEXT, FINISH_EXIT, FINISH_STOP, FINISH_CANCELLED, FINISH_ERROR
} finish_reason;

/* Per-request exit setting (travels to the stages with each of its rows). */
typedef struct {
    int mode;                   /* exit_mode (stage.h): none, record, decide */
    bool token_level;           /* tokens leave (generation) rather than the whole request */
    const void *policy;         /* const exit_policy *, for decide; owned by the front end */
} request_exit;

typedef struct {
    uint64_t id;
    int lane;
    int slot;        /* -1 until admitted */
    int *tokens;     /* prompt then generated tokens */
    int n_prompt;
    int n_tokens;
    int capacity;    /* positions reserved: n_prompt + max_new, capped at the context */
    int max_new;
    int generated;
    int n_fed;       /* tokens already sent down the pipeline */
    bool needs_reservation;
    finish_reason finished;
    finish_reason pending_finish; /* stopped (cancel, stop string) while its rows travel: ends as
                                   * this once they are back */
    request_exit exit;
    void *exit_scratch;     /* the current token's exit observations when runs keep no records */
    sampler sampler;
    double submitted_at, first_token_at, finished_at;
    double started_at; /* its first prompt row left for the stages (0 before) */
    /* early exit */
    int exit_token;         /* the token it was answered with (request-level exit) */
    int consecutive_exits;  /* tokens in a row that left early (token-level exit) */
    int record;             /* index of the current token's observation record, -1 none */
    long layers_executed;   /* layer evaluations of its output tokens */
    long output_tokens;     /* output tokens decided (each could have run every layer) */
    unsigned char *exit_points; /* [capacity] exit point index each generated token left at */
} request;

typedef struct {
    int request; /* index into the scheduler's requests */
    int row;     /* row index within the micro-batch */
} output_slot;

typedef struct {
    int token, position, slot;
    uint64_t request_id;
    bool wants_output;
    int slot_capacity; /* > 0 on a sequence's first row */
} batch_row;

typedef struct {
    uint64_t batch_id;
    int lane;
    int n_rows;
    batch_row *rows;     /* [batch_tokens] */
    int n_outputs;
    output_slot *outputs; /* [batch_tokens] */
    bool *row_left;       /* [batch_tokens] rows that left at an exit point */
} micro_batch;

typedef struct {
    int lanes;
    int max_sequences; /* total KV slots, shared out between lanes */
    int batch_tokens;  /* most rows per micro-batch */
    int context;       /* most positions per sequence */
    int eos_token;     /* -1: none */
    int eot_token;     /* a chat turn's end, which finishes a sequence as eos does; -1: none */
    int vocab_size;
} scheduler_config;

typedef struct {
    scheduler_config config;
    request *requests;
    int n_requests, requests_capacity;
    micro_batch *in_flight; /* per lane; n_rows == 0 when the lane is idle */
    bool *lane_busy;
    bool *slot_used;        /* [max_sequences] */
    int *released;          /* slots freed since the last scheduler_take_released */
    bool *release_pending;  /* [max_sequences] in `released`: not reused until the stages are told */
    int *finished_list;     /* requests finished since the last scheduler_take_finished */
    int n_finished_list, finished_list_capacity;
    int *lane_scan_from;    /* per lane: every request of the lane before this index has finished */
    int n_waiting;          /* submitted, not finished, no KV slot yet (the queue) */
    int n_running;          /* holding a KV slot */
    uint64_t positions_reserved; /* KV positions reserved by the running requests */
    float *sampling_logits; /* [vocab_size]: a row of logits that sampling may modify */
    int n_released;
    uint64_t next_batch_id;
    int n_unfinished;
    uint64_t tokens_generated, prompt_tokens;
} scheduler;

int scheduler_init(scheduler *s, const scheduler_config *config, ramp_error *err);
void scheduler_free(scheduler *s);

/* Adds a request; its tokens are copied. Returns the request index via *index. */
int scheduler_submit(scheduler *s, const int *prompt, int n_prompt, int max_new, const sampling_params *sampling,
                     const request_exit *exit, double now, int *index, ramp_error *err);
/* Stops request index: at once when none of its rows is in flight, else when they come back
 * (its KV slot is released only then, so no stage ever computes into a reused slot). */
void scheduler_cancel(scheduler *s, int index, double now);
/* Ends request index with `why` (STOP after a stop string, ERROR). Same timing rule as cancel. */
void scheduler_finish(scheduler *s, int index, finish_reason why, double now);
/* Ends request index at once even if rows of it travel (the pipeline failed: nothing comes back). */
void scheduler_finish_now(scheduler *s, int index, finish_reason why, double now);
/* Requests finished since the last call, in finishing order; *indices points into scheduler
 * memory. Each finished request appears exactly once. */
int scheduler_take_finished(scheduler *s, const int **indices);
/* Frees a finished request's buffers (tokens, sampler); its counters stay readable. */
void scheduler_forget(scheduler *s, int index);

/* Forms the next micro-batch of an idle lane that has work. Returns it (owned by the scheduler,
 * valid until its output is delivered), or NULL when no lane can make progress now. */
const micro_batch *scheduler_next_batch(scheduler *s);

/* The micro-batch in flight with this id, or NULL. */
micro_batch *scheduler_find_batch(scheduler *s, uint64_t batch_id);
/* Samples request index's next token from a row of logits [vocab] (not modified). */
int scheduler_sample(scheduler *s, int index, const float *logits);
/* Request index's next token is known: appended, or the request finishes (EOS, budget, context). */
void scheduler_accept_token(scheduler *s, int index, int token, double now);
/* Request index is answered early (request-level exit) with token: it finishes now. */
void scheduler_exit_request(scheduler *s, int index, int token, double now);
/* The micro-batch has left the pipeline: its lane may form the next one. */
int scheduler_batch_done(scheduler *s, uint64_t batch_id, double now, ramp_error *err);

/* Slots of requests that finished since the last call (the pipeline tells the stages to free
 * them, before it sends the next micro-batch). Returns the count; *slots points into scheduler
 * memory. A released slot is not handed to a new request until it has been taken here. */
int scheduler_take_released(scheduler *s, const int **slots);

bool scheduler_idle(const scheduler *s);     /* nothing in flight */
bool scheduler_finished(const scheduler *s); /* every request finished */

#endif
