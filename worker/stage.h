/* stage.h: one pipeline stage: a contiguous slice of layers and the KV cache of that slice.
 *
 * A stage is passive: it is handed frames (stage_handle_frame, a transport_handler) and answers
 * by sending frames. Work arrives from the previous rank (or the coordinator, for stage 1), runs
 * through the slice's layers, and goes on to the next rank; the last stage sends logits of the
 * rows that want output to the coordinator. Control frames (release KV slots, shut down) travel
 * down the same chain so they stay ordered with the work.
 * The stage owns its model slice, KV cache, workspace and buffers.
 */
#ifndef RAMP_STAGE_H
#define RAMP_STAGE_H

#include <stdbool.h>
#include <stdint.h>

#include "error.h"
#include "forward.h"
#include "kv_cache.h"
#include "model.h"
#include "transport.h"

typedef struct {
    const char *model_path;
    int stage_index; /* 1..n_stages */
    int n_stages;
    int first_layer, end_layer;
    int max_rows;      /* most rows in one micro-batch */
    int max_sequences; /* KV slots */
    int context;       /* most positions per sequence */
    int next_rank;     /* rank of the next stage; the last stage sends to the coordinator (0) */
} stage_config;

typedef struct {
    stage_config config;
    int rank;
    transport *transport;
    model model;
    kv_cache kv;
    forward_workspace workspace;
    float *hidden;  /* [max_rows][dim] */
    float *logits;  /* [max_rows][vocab] (last stage) */
    int *tokens, *slots, *positions;
    uint32_t *output_rows;
    bool finished;
    /* counters */
    double opened_at, busy_seconds;
    uint64_t batches, rows;
    size_t kv_bytes_peak;
} stage;

int stage_open(stage *s, const stage_config *config, int rank, transport *t, ramp_error *err);
void stage_close(stage *s);
/* transport_handler: context is the stage. */
int stage_handle_frame(void *context, int source, const uint8_t *frame, size_t length, ramp_error *err);
/* Tells the coordinator this stage is ready (Hello) or that it failed (Failure). */
int stage_send_hello(stage *s, ramp_error *err);
int send_failure(transport *t, int rank, const char *message);

#endif
