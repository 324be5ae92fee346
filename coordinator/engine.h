/* engine.h: rank 0's engine: requests in, events out. Every front end (generate, eval, serve,
 * batch) talks to the pipeline only through this.
 *
 * A request carries its own settings (prompt tokens, token budget, sampling, stop strings, exit
 * setting). engine_submit queues it and returns its id at once; the engine loop (engine_run, on
 * the thread that opened the pipeline) admits it into the running pipeline as soon as a KV slot
 * is free (continuous batching) and calls the request's handler with its events:
 *   ENGINE_TOKEN   one generated token: id, log-probability, the layers it ran through, and the
 *                  text it adds (valid UTF-8; bytes of an unfinished character or of a possible
 *                  stop string are held back until they are settled);
 *   ENGINE_FINISH  the end, exactly once, with the reason and the counts; after it the handler is
 *                  never called again for that request.
 * Handlers run on the engine's thread and must not block for long.
 * engine_submit, engine_cancel, engine_stop and engine_load_figures may be called from any
 * thread. A cancelled request ends with ENGINE_FINISH_CANCELLED and its KV is freed on every rank.
 * An answer never depends on what else is in flight: each row's arithmetic is the same whatever
 * the micro-batch holds, and sampling uses the request's own seed.
 */
#ifndef RAMP_ENGINE_H
#define RAMP_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "exit_policy.h"
#include "sampler.h"
#include "stage.h" /* exit_mode */

typedef struct pipeline pipeline;

#define ENGINE_MAX_STOP 4

typedef enum {
    ENGINE_FINISH_STOP,      /* end-of-sequence token or a stop string */
    ENGINE_FINISH_LENGTH,    /* token budget or context used up */
    ENGINE_FINISH_EXIT,      /* answered at an exit point (request-level exit) */
    ENGINE_FINISH_CANCELLED,
    ENGINE_FINISH_ERROR,
} engine_finish;

typedef struct {
    const int *prompt; /* token ids, BOS included when wanted; copied */
    int n_prompt;
    int max_tokens;
    sampling_params sampling;
    const char *stop[ENGINE_MAX_STOP]; /* stop strings (copied); the text ends before the first match */
    int n_stop;
    exit_mode exit;              /* EXIT_MODE_NONE, RECORD, or DECIDE with a policy */
    const exit_policy *policy;   /* for DECIDE; must outlive the request */
    bool token_level;            /* DECIDE: tokens leave (LITE) rather than the request (AdaInfer) */
    bool logprobs;               /* each token's event carries its logprob; otherwise NAN: a log-softmax
                                  * over the vocabulary per token is worth skipping (32,000 exps, 0.13
                                  * ms: 6% of a 768x12 Q4_0 model's decode step) */
} engine_request;

typedef enum { ENGINE_TOKEN, ENGINE_FINISH } engine_event_kind;

typedef struct {
    engine_event_kind kind;
    uint64_t id;
    /* ENGINE_TOKEN */
    int token;
    float logprob;       /* natural log of its probability; NAN unless the request asked (logprobs) */
    int exit_layer;      /* layers the token ran through (the model's depth when it did not exit) */
    const char *text;    /* settled text this event adds (may be empty); valid during the call */
    size_t text_length;
    /* ENGINE_FINISH */
    engine_finish finish;
    const char *message; /* ENGINE_FINISH_ERROR: why */
    int prompt_tokens, generated_tokens;
    long layers_executed; /* layer evaluations spent on this request's output tokens */
    int total_layers;
    double queued_seconds, first_token_seconds, total_seconds;
} engine_event;

typedef void (*engine_handler)(void *context, const engine_event *event);

/* What the engine holds right now (for /metrics, /health and 429s). */
typedef struct {
    int queued;        /* submitted, waiting for a KV slot */
    int running;       /* holding a KV slot */
    uint64_t kv_bytes; /* KV reserved on the stages for running requests (all stages) */
    bool stopping;
} engine_load;

/* Queues a request. Fails (nothing queued) on a prompt that does not fit the context with its
 * budget, an empty prompt, or when the engine is stopping. *id identifies it for cancel. */
int engine_submit(pipeline *p, const engine_request *request, engine_handler handler, void *context, uint64_t *id,
                  ramp_error *err);
/* Ends a request early (no-op when it has finished). */
void engine_cancel(pipeline *p, uint64_t id);
/* Asks engine_run to stop taking requests, finish those in flight within grace_seconds (then
 * cancel the rest) and return. Async-signal-unsafe; the engine also polls the process's signals. */
void engine_stop(pipeline *p, double grace_seconds);
engine_load engine_load_figures(pipeline *p);

typedef enum {
    ENGINE_UNTIL_IDLE,    /* return when every submitted request has finished (jobs) */
    ENGINE_UNTIL_STOPPED, /* serve until engine_stop or a signal, then drain (servers) */
} engine_run_mode;

/* Drives the pipeline. Returns 0, or -1 when the pipeline failed (a rank died, hung or reported
 * an error; err names it); every request still open then gets ENGINE_FINISH_ERROR. In
 * ENGINE_UNTIL_IDLE mode a signal ends the run with an "interrupted" error. */
int engine_run(pipeline *p, engine_run_mode mode, ramp_error *err);

/* "stop", "length", "exit", "cancelled", "error". */
const char *engine_finish_name(engine_finish finish);

#endif
