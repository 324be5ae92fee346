/* stage.h: one pipeline stage: a contiguous slice of layers and the KV cache of that slice.
 *
 * A stage is passive: it is handed frames (stage_handle_frame, a transport_handler) and answers
 * by sending frames. Work arrives from the previous rank (or the coordinator, for stage 1) and
 * runs through the slice's layers in segments cut at the exit points the stage owns. At an exit
 * point the stage sends the exit features of the rows that want output to the coordinator and,
 * when the coordinator decides exits, parks the micro-batch until the Decision arrives (working
 * on other micro-batches meanwhile); rows that leave never go further. The last stage sends the
 * logits of the rows that want output to the coordinator. Control frames (release KV slots,
 * shut down) travel down the same chain so they stay ordered with the work.
 *
 * Tokens that exit early during generation leave holes in the KV cache of the layers they
 * skipped; --kv-fill says how they are filled: recompute (the stage keeps the exited hidden state
 * and sends it on, as a normal row, with the sequence's next token that goes deeper: exact),
 * copy (the same, but the row only fills keys/values from the exit state: CALM), omit (nothing;
 * attention skips the holes).
 *
 * A stage never sits idle while a Decision is pending: when no frame is waiting (stage_idle, called
 * by the worker between frames), it runs a parked micro-batch's next segment for all its rows,
 * keeping their states at the exit point. When the Decision comes, the rows that left are dropped
 * (for token-level exits their kept state is the one at the exit point, and with --kv-fill copy or
 * omit the keys/values they wrote beyond it are marked unfilled again), and the others go on from
 * where the speculation got them. Each row's numbers do not depend on the other rows of its batch,
 * so the result is the same bits; only rows that leave cost work that was not needed, so a batch
 * runs ahead only from exit points where so far at most half of the rows left.
 * The stage owns its model slice, KV cache, workspace, micro-batch buffers and kept states.
 */
#ifndef RAMP_STAGE_H
#define RAMP_STAGE_H

#include <stdbool.h>
#include <stdint.h>

#include "error.h"
#include "exit_policy.h"
#include "file_identity.h"
#include "forward.h"
#include "kv_cache.h"
#include "model.h"
#include "ramp.pb-c.h"
#include "transport.h"

/* Most exited tokens a sequence may have waiting for their skipped layers; the coordinator sends
 * a token to full depth before a sequence reaches it. */
#define STAGE_MAX_DEFERRED 8

typedef enum { KV_FILL_RECOMPUTE, KV_FILL_COPY, KV_FILL_OMIT } kv_fill_policy;
/* --run-ahead: auto runs ahead where the node has more cores than computing ranks: there a stage's
 * idle time is a core's idle time; where ranks share cores it is another rank's time. */
enum { STAGE_RUN_AHEAD_AUTO = 0, STAGE_RUN_AHEAD_ON = 1, STAGE_RUN_AHEAD_OFF = 2 };
/* Per micro-batch (Work.exit_mode): what happens at exit points. */
typedef enum { EXIT_MODE_NONE = 0, EXIT_MODE_RECORD = 1, EXIT_MODE_DECIDE = 2 } exit_mode;

typedef struct {
    const char *model_path;
    int stage_index; /* 1..n_stages */
    int n_stages;
    int first_layer, end_layer;
    int max_rows;      /* most rows the coordinator puts in one micro-batch */
    int max_sequences; /* KV slots */
    int context;       /* most positions per sequence */
    int next_rank;     /* rank of the next stage; the last stage sends to the coordinator (0) */
    int max_parked;    /* micro-batches that may wait for a decision at once (the lanes) */
    int n_exits;                       /* exit points of the whole model, as layer counts */
    int exit_layers[EXIT_MAX_POINTS];
    const int *exit_candidates;        /* candidate tokens of the exit head, or NULL = vocabulary */
    int n_exit_candidates;
    kv_fill_policy kv_fill;
    kv_type kv_type; /* the KV cache's element type */
    forward_pairs pairs;               /* layer-parallel pairs (none when first == end); none cut the slice */
    bool run_ahead;                    /* the worker calls stage_idle between frames */
    int run_ahead_mode;                /* what --run-ahead asked (the worker decides run_ahead from it) */
    int partner_rank;                  /* --pair-ranks: computes the second layer of each pair here (0: none) */
} stage_config;

typedef struct {
    uint64_t request_id;
    int slot, position, token, slot_capacity;
    bool wants_output, kv_only;
    exit_mode exit; /* its request's setting: features at exit points, and whether to wait */
} stage_row;

typedef struct {
    bool in_use;
    uint64_t batch_id;
    exit_mode mode; /* the deepest setting among its rows: NONE runs straight through */
    int n_rows;
    int layers_done; /* global index of the next layer to run */
    int speculated_to; /* > layers_done: parked, and its rows already ran up to this layer */
    bool running;      /* its layers are running (a Decision taken between them is for another batch) */
    stage_row *rows; /* [row_capacity] */
    float *hidden;   /* [row_capacity][dim] */
    float *parked_hidden; /* [row_capacity][dim]: the states at the exit point, kept while speculating */
} stage_batch;

typedef struct {
    int count;
    uint64_t request_id; /* whose states these are: a slot may pass to another request before a late
                          * Decision defers the old one's last token (see defer_row) */
    int exit_layer[STAGE_MAX_DEFERRED];
    int position[STAGE_MAX_DEFERRED];
    bool kv_only[STAGE_MAX_DEFERRED];
    float *hidden; /* [STAGE_MAX_DEFERRED][dim] */
} deferred_rows;

/* A frame received before it may run (see stage.c: waits_for_decision); owned copy. */
typedef struct {
    uint8_t *frame;
    size_t length;
    int source;
} held_frame;

typedef struct {
    stage_config config;
    int rank;
    transport *transport;
    model model;
    file_identity identity; /* of the model file, reported in Hello */
    kv_cache kv;
    forward_workspace workspace;
    forward_partner partner; /* the partner rank's side of the pairs, when there is one */
    forward_pairs pairs;     /* config.pairs, with the partner when there is one */
    int row_capacity;       /* max_rows plus room for deferred rows joining */
    stage_batch *batches;   /* [max_parked + 1] */
    deferred_rows *deferred; /* [max_sequences] */
    uint64_t *slot_owner;    /* [max_sequences]: the request whose KV the slot holds; SLOT_FREE once released */
    int *exit_candidates;   /* owned copy */
    /* per-batch scratch */
    float *head_logits;     /* [row_capacity][vocab or candidates] */
    int *slots, *positions;
    bool *kv_only;
    uint64_t *request_ids;
    held_frame *held; /* work (and the controls behind it) waiting for a Decision, in order */
    int n_held, held_capacity;
    bool finished;
    bool taking_decisions;  /* inside take_decisions: the batches it runs do not pause again */
    /* counters */
    double opened_at, busy_seconds, exit_head_seconds;
    double compute_seconds;       /* in forward_layers */
    double paused_seconds;        /* taking Decisions between layers (their batches' layers counted apart) */
    double decision_wait_seconds; /* idle with a micro-batch parked here, waiting for its Decision */
    double last_frame_done;       /* clock_seconds when the last frame was handled */
    uint64_t batches_run, rows;
    uint64_t layer_rows, layer_batches; /* rows x layers and micro-batches x layers computed */
    uint64_t speculated_layer_rows, wasted_layer_rows; /* run while a Decision was pending; of which
                                                          for rows that then left */
    uint64_t rows_decided[EXIT_MAX_POINTS], rows_left[EXIT_MAX_POINTS]; /* per exit point, so far */
    size_t kv_bytes_peak;
} stage;

/* Rows a stage's micro-batch may hold: max_rows plus room for kept rows of exited tokens joining. */
int stage_row_capacity(int max_rows, int max_sequences);
int stage_open(stage *s, const stage_config *config, int rank, transport *t, ramp_error *err);
void stage_close(stage *s);
/* transport_handler: context is the stage. */
int stage_handle_frame(void *context, int source, const uint8_t *frame, size_t length, ramp_error *err);
/* Nothing arrived: advances a parked micro-batch speculatively (see above). Returns 1 when it did
 * some work, 0 when there was none to do, -1 on error. */
int stage_idle(stage *s, ramp_error *err);
/* Tells the coordinator this stage is ready (Hello) or that it failed (Failure). */
int stage_send_hello(stage *s, ramp_error *err);
int send_failure(transport *t, int rank, const char *message);
/* Packs an envelope (setting its version) and sends it. */
int send_envelope(transport *t, int destination, Ramp__Envelope *e, const float *payload, size_t n, ramp_error *err);
/* The same for an urgent frame without payload (an exit Decision: see transport.h). */
int send_urgent_envelope(transport *t, int destination, Ramp__Envelope *e, ramp_error *err);

#endif
