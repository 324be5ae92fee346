/* engine.c: rank 0's engine loop: admits requests into the running pipeline, sends micro-batches,
 * turns what comes back (logits, exit features) into tokens and events. See engine.h. */
#include "engine.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "interrupt.h"
#include "metrics.h"
#include "pipeline.h"
#include "wire.h"

/* How often a serving engine asks the stages for their counters (and whether they live). */
#define STAGE_POLL_SECONDS 0.5
/* Longest sleep of an idle engine before it looks at signals again. */
#define IDLE_WAIT_SECONDS 0.25

const char *engine_finish_name(engine_finish finish) {
    static const char *const names[] = {"stop", "length", "exit", "cancelled", "error"};
    return finish <= ENGINE_FINISH_ERROR ? names[finish] : "error";
}

static engine_finish finish_from(finish_reason why) {
    switch (why) {
    case FINISH_EOS:
    case FINISH_STOP: return ENGINE_FINISH_STOP;
    case FINISH_LENGTH:
    case FINISH_CONTEXT: return ENGINE_FINISH_LENGTH;
    case FINISH_EXIT: return ENGINE_FINISH_EXIT;
    case FINISH_CANCELLED: return ENGINE_FINISH_CANCELLED;
    default: return ENGINE_FINISH_ERROR;
    }
}

/* ---- the inbox: other threads hand requests to the loop ---------------------------------------- */

static void submission_free(engine_submission *s) {
    free(s->prompt);
    for (int i = 0; i < s->n_stop; i++) free(s->stop[i]);
    memset(s, 0, sizeof *s);
}

static int copy_submission(const pipeline *p, const engine_request *r, engine_handler handler, void *context,
                           engine_submission *s, ramp_error *err) {
    memset(s, 0, sizeof *s);
    const int vocab = p->model.config.vocab_size, context_length = p->options.context;
    if (r->n_prompt < 1) return ramp_fail(err, "the prompt is empty");
    if (r->n_prompt >= context_length)
        return ramp_fail(err, "the prompt is %d tokens and the context holds %d", r->n_prompt, context_length);
    if (r->max_tokens < 0) return ramp_fail(err, "max_tokens %d must be >= 0", r->max_tokens);
    if (r->n_stop < 0 || r->n_stop > ENGINE_MAX_STOP)
        return ramp_fail(err, "at most %d stop strings, got %d", ENGINE_MAX_STOP, r->n_stop);
    if (sampling_params_validate(&r->sampling, err)) return -1;
    if (r->exit == EXIT_MODE_DECIDE && (!r->policy || p->n_exits == 0))
        return ramp_fail(err, "early exit asked for, but this engine was started without exit points or policy");
    for (int i = 0; i < r->n_prompt; i++)
        if (r->prompt[i] < 0 || r->prompt[i] >= vocab)
            return ramp_fail(err, "prompt token %d at position %d is outside the vocabulary (0..%d)", r->prompt[i], i,
                             vocab - 1);
    s->prompt = malloc((size_t)r->n_prompt * sizeof(int));
    if (!s->prompt) return ramp_fail(err, "out of memory");
    memcpy(s->prompt, r->prompt, (size_t)r->n_prompt * sizeof(int));
    s->n_prompt = r->n_prompt;
    for (int i = 0; i < r->n_stop; i++) {
        if (!(s->stop[i] = strdup(r->stop[i]))) {
            submission_free(s);
            return ramp_fail(err, "out of memory");
        }
        s->n_stop++;
    }
    s->max_tokens = r->max_tokens;
    s->sampling = r->sampling;
    s->exit = (request_exit){.mode = r->exit, .token_level = r->token_level, .policy = r->policy};
    s->logprobs = r->logprobs;
    s->handler = handler;
    s->context = context;
    s->submitted_at = clock_seconds();
    return 0;
}

/* The loop sleeps either on the condition (idle) or in transport_receive (work in flight). */
static void wake_locked(pipeline *p) {
    p->inbox.wake = 1;
    pthread_cond_broadcast(&p->inbox.changed);
    if (p->transport) transport_wake(p->transport);
}

int engine_submit(pipeline *p, const engine_request *request, engine_handler handler, void *context, uint64_t *id,
                  ramp_error *err) {
    engine_submission s;
    if (copy_submission(p, request, handler, context, &s, err)) return -1;
    engine_inbox *in = &p->inbox;
    pthread_mutex_lock(&in->lock);
    int status = 0;
    if (in->stopping || p->failed) {
        status = ramp_fail(err, p->failed ? "the pipeline has failed" : "the engine is shutting down");
    } else if (in->n_items == in->capacity) {
        int capacity = in->capacity ? 2 * in->capacity : 16;
        engine_submission *grown = realloc(in->items, (size_t)capacity * sizeof *grown);
        if (grown) {
            in->items = grown;
            in->capacity = capacity;
        } else {
            status = ramp_fail(err, "out of memory");
        }
    }
    if (status == 0) {
        s.id = in->next_id++;
        *id = s.id;
        in->items[in->n_items++] = s;
        in->load.queued++;
        wake_locked(p);
    }
    pthread_mutex_unlock(&in->lock);
    if (status) submission_free(&s);
    return status;
}

void engine_cancel(pipeline *p, uint64_t id) {
    engine_inbox *in = &p->inbox;
    pthread_mutex_lock(&in->lock);
    if (in->n_cancels == in->cancels_capacity) {
        int capacity = in->cancels_capacity ? 2 * in->cancels_capacity : 16;
        uint64_t *grown = realloc(in->cancels, (size_t)capacity * sizeof *grown);
        if (grown) {
            in->cancels = grown;
            in->cancels_capacity = capacity;
        }
    }
    if (in->n_cancels < in->cancels_capacity) in->cancels[in->n_cancels++] = id;
    wake_locked(p);
    pthread_mutex_unlock(&in->lock);
}

void engine_stop(pipeline *p, double grace_seconds) {
    engine_inbox *in = &p->inbox;
    pthread_mutex_lock(&in->lock);
    if (!in->stopping) {
        in->stopping = true;
        in->stop_deadline = clock_seconds() + grace_seconds;
        in->load.stopping = true;
    }
    wake_locked(p);
    pthread_mutex_unlock(&in->lock);
}

engine_load engine_load_figures(pipeline *p) {
    pthread_mutex_lock(&p->inbox.lock);
    engine_load load = p->inbox.load;
    pthread_mutex_unlock(&p->inbox.lock);
    return load;
}

static int grow_states(pipeline *p, int needed, ramp_error *err) {
    if (needed <= p->states_capacity) return 0;
    int capacity = p->states_capacity ? 2 * p->states_capacity : 64;
    while (capacity < needed) capacity *= 2;
    engine_request_state *grown = realloc(p->states, (size_t)capacity * sizeof *grown);
    if (!grown) return ramp_fail(err, "out of memory");
    memset(grown + p->states_capacity, 0, (size_t)(capacity - p->states_capacity) * sizeof *grown);
    p->states = grown;
    p->states_capacity = capacity;
    return 0;
}

/* Moves what other threads queued into the scheduler (submissions first: a cancel may name one). */
static int drain_inbox(pipeline *p, ramp_error *err) {
    engine_inbox *in = &p->inbox;
    pthread_mutex_lock(&in->lock);
    in->wake = 0;
    int n_items = in->n_items, n_cancels = in->n_cancels;
    engine_submission *items = in->items;
    uint64_t *cancels = in->cancels;
    int items_capacity = in->capacity, cancels_capacity = in->cancels_capacity;
    in->items = NULL;
    in->cancels = NULL;
    in->n_items = in->n_cancels = in->capacity = in->cancels_capacity = 0;
    pthread_mutex_unlock(&in->lock);
    (void)items_capacity;
    (void)cancels_capacity;
    int status = 0;
    for (int i = 0; i < n_items; i++) {
        engine_submission *s = &items[i];
        int index = -1;
        if (!status) status = grow_states(p, p->scheduler.n_requests + 1, err);
        if (!status)
            status = scheduler_submit(&p->scheduler, s->prompt, s->n_prompt, s->max_tokens, &s->sampling, &s->exit,
                                      s->submitted_at, &index, err);
        if (!status && (uint64_t)index != s->id)
            status = ramp_fail(err, "engine: request %llu became scheduler entry %d", (unsigned long long)s->id, index);
        if (!status) {
            engine_request_state *state = &p->states[index];
            memset(state, 0, sizeof *state);
            state->handler = s->handler;
            state->context = s->context;
            state->logprobs = s->logprobs;
            state->last_token_at = s->submitted_at;
            status = text_stream_init(&state->text, (const char *const *)s->stop, s->n_stop, err);
        }
        submission_free(s);
    }
    for (int i = 0; i < n_cancels && !status; i++)
        if (cancels[i] < (uint64_t)p->scheduler.n_requests)
            scheduler_cancel(&p->scheduler, (int)cancels[i], clock_seconds());
    free(items);
    free(cancels);
    return status;
}

/* ---- events ------------------------------------------------------------------------------------ */

static void emit(pipeline *p, int index, const engine_event *e) {
    engine_request_state *state = &p->states[index];
    if (state->handler) state->handler(state->context, e);
}

/* Log-probability of token in a row of logits (log-softmax). */
static float logprob_of(const float *logits, int vocab, int token) {
    float max = logits[0];
    for (int i = 1; i < vocab; i++)
        if (logits[i] > max) max = logits[i];
    double sum = 0;
    for (int i = 0; i < vocab; i++) sum += exp((double)(logits[i] - max));
    return (float)((double)(logits[token] - max) - log(sum));
}

/* The request's token is decided: appended (event with its settled text; a stop string ends the
 * request), or the request ends (EOS, budget, context: the finish event comes from the list). */
static void deliver_token(pipeline *p, int index, int token, float logprob, int exit_layer, double now) {
    request *r = &p->scheduler.requests[index];
    int before = r->generated;
    scheduler_accept_token(&p->scheduler, index, token, now);
    if (r->generated == before) return; /* EOS, or the request had already ended */
    engine_request_state *state = &p->states[index];
    char piece[512];
    size_t n = tokenizer_decode(p->model.tokenizer, r->tokens[r->n_tokens - 2], token, piece, sizeof piece);
    int stopped = text_stream_append(&state->text, piece, n);
    engine_event e = {.kind = ENGINE_TOKEN, .id = r->id, .token = token, .logprob = logprob, .exit_layer = exit_layer};
    e.text = text_stream_take(&state->text, false, &e.text_length);
    metrics_note_token(&p->stats, &p->inbox.lock, now - (r->generated == 1 ? r->submitted_at : state->last_token_at),
                       r->generated == 1);
    state->last_token_at = now;
    emit(p, index, &e);
    if (stopped) scheduler_finish(&p->scheduler, index, stopped > 0 ? FINISH_STOP : FINISH_ERROR, now);
}

/* Request-level exit: the request is answered with the exit point's top-1 token. */
static void deliver_exit(pipeline *p, int index, int token, float logprob, int exit_layer, double now) {
    request *r = &p->scheduler.requests[index];
    if (r->finished || r->pending_finish) return;
    scheduler_exit_request(&p->scheduler, index, token, now);
    engine_request_state *state = &p->states[index];
    char piece[512];
    int previous = r->n_tokens > 0 ? r->tokens[r->n_tokens - 1] : -1;
    size_t n = tokenizer_decode(p->model.tokenizer, previous, token, piece, sizeof piece);
    text_stream_append(&state->text, piece, n);
    engine_event e = {.kind = ENGINE_TOKEN, .id = r->id, .token = token, .logprob = logprob, .exit_layer = exit_layer};
    e.text = text_stream_take(&state->text, false, &e.text_length);
    metrics_note_token(&p->stats, &p->inbox.lock, now - r->submitted_at, true);
    emit(p, index, &e);
}

/* Finish events for the requests that ended since the last call. */
static void emit_finished(pipeline *p, const char *error_message) {
    const int *indices;
    int n = scheduler_take_finished(&p->scheduler, &indices);
    for (int i = 0; i < n; i++) {
        int index = indices[i];
        request *r = &p->scheduler.requests[index];
        engine_request_state *state = &p->states[index];
        if (state->finish_sent) continue;
        engine_event e = {.kind = ENGINE_FINISH, .id = r->id, .finish = finish_from(r->finished)};
        e.text = text_stream_take(&state->text, true, &e.text_length);
        e.message = e.finish == ENGINE_FINISH_ERROR ? error_message : NULL;
        e.prompt_tokens = r->n_prompt;
        e.generated_tokens = r->generated + (r->finished == FINISH_EXIT ? 1 : 0);
        e.layers_executed = r->layers_executed;
        e.total_layers = p->model.config.n_layers;
        e.first_token_seconds = r->first_token_at > 0 ? r->first_token_at - r->submitted_at : 0;
        e.total_seconds = r->finished_at - r->submitted_at;
        metrics_note_finish(&p->stats, &p->inbox.lock, e.finish, r->n_prompt, e.generated_tokens, e.total_seconds);
        emit(p, index, &e);
        state->finish_sent = true;
        text_stream_free(&state->text);
        if (state->handler) scheduler_forget(&p->scheduler, index); /* a job without handler reads it later */
    }
}

void engine_forget_requests(pipeline *p) {
    for (int i = 0; i < p->scheduler.n_requests && i < p->states_capacity; i++) text_stream_free(&p->states[i].text);
    /* requests submitted later get ids from 0 again, like the scheduler's indices */
    pthread_mutex_lock(&p->inbox.lock);
    for (int i = 0; i < p->inbox.n_items; i++) submission_free(&p->inbox.items[i]);
    p->inbox.n_items = 0;
    p->inbox.n_cancels = 0;
    p->inbox.next_id = 0;
    p->inbox.load.queued = 0;
    pthread_mutex_unlock(&p->inbox.lock);
}

/* ---- what comes back from the pipeline ------------------------------------------------------------ */

/* The answer of a row of final logits: restricted to the candidates when there are any. */
static int choose_token(pipeline *p, int index, const float *logits) {
    if (!p->options.candidates || !p->options.answers_from_candidates)
        return scheduler_sample(&p->scheduler, index, logits);
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
    /* Record every row's features, then ask the policy about all the rows that may leave at once
     * (an svm reads its support vectors once for the whole report), then answer them in order. */
    const size_t n = o->n_features;
    request *asked_requests[n + 1];
    exit_observation asked[n + 1];
    int asked_points[n + 1], asked_row[n + 1], n_asked = 0;
    bool leaves[n + 1];
    for (size_t i = 0; i < n; i++) {
        const Ramp__ExitFeatures *f = o->features[i];
        int index = request_index(p, f->request_id, err);
        if (index < 0) return -1;
        request *r = &p->scheduler.requests[index];
        bool ask;
        if (exit_run_record(&p->exits, r, index, exit_index, f, &ask, &asked[n_asked], err)) return -1;
        if (!ask) continue;
        asked_requests[n_asked] = r, asked_points[n_asked] = exit_index;
        asked_row[n_asked++] = (int)i;
    }
    exit_run_decide(&p->exits, n_asked, asked_requests, asked_points, asked, leaves);
    for (int k = 0; k < n_asked; k++) {
        if (!leaves[k]) continue;
        const Ramp__ExitFeatures *f = o->features[asked_row[k]];
        request *r = asked_requests[k];
        int index = (int)(r - p->scheduler.requests);
        leaving[n_leaving++] = f->request_id;
        exit_run_settle(&p->exits, r, f->top_token, exit_index);
        float logprob = !p->states[index].logprobs ? NAN : f->top_prob > 0 ? logf(f->top_prob) : -INFINITY;
        if (r->exit.token_level) deliver_token(p, index, f->top_token, logprob, (int)o->exit_layer, now);
        else deliver_exit(p, index, f->top_token, logprob, (int)o->exit_layer, now);
    }
    if (!o->awaits_decision) return 0;
    Ramp__Decision d = RAMP__DECISION__INIT;
    d.batch_id = o->batch_id;
    d.n_exited_request_ids = (size_t)n_leaving;
    d.exited_request_ids = leaving;
    d.token_level = n_leaving > 0 && p->scheduler.requests[leaving[0]].exit.token_level;
    Ramp__Envelope e = RAMP__ENVELOPE__INIT;
    e.body_case = RAMP__ENVELOPE__BODY_DECISION;
    e.decision = &d;
    if (send_urgent_envelope(p->transport, (int)o->stage, &e, err)) return -1;
    if (mark_left(b, leaving, n_leaving)) return scheduler_batch_done(&p->scheduler, o->batch_id, now, err);
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
        if (r->finished || r->pending_finish) continue; /* cancelled while its row travelled */
        const float *logits = payload + i * vocab;
        int token = choose_token(p, index, logits);
        exit_run_settle(&p->exits, r, token, p->exits.n_exits);
        float logprob = p->states[index].logprobs ? logprob_of(logits, (int)vocab, token) : NAN;
        deliver_token(p, index, token, logprob, p->model.config.n_layers, now);
    }
    return scheduler_batch_done(&p->scheduler, o->batch_id, now, err);
}

/* A stage's answer to a poll: its live counters. */
static void note_stage_counters(pipeline *p, const Ramp__Hello *h) {
    if (h->rank < 1 || (int)h->rank > p->n_stages) return;
    pthread_mutex_lock(&p->inbox.lock);
    stage_status *s = &p->stages[h->rank - 1];
    s->busy_seconds = h->busy_seconds;
    s->live_rows = h->rows;
    s->live_batches = h->batches;
    s->hellos++;
    pthread_mutex_unlock(&p->inbox.lock);
}

static void poll_stages(pipeline *p) {
    if (p->local) { /* in-process stages: read their counters directly */
        pthread_mutex_lock(&p->inbox.lock);
        for (int s = 0; s < p->n_stages; s++) {
            p->stages[s].busy_seconds = p->local[s].busy_seconds;
            p->stages[s].live_rows = p->local[s].rows;
            p->stages[s].live_batches = p->local[s].batches_run;
        }
        pthread_mutex_unlock(&p->inbox.lock);
        return;
    }
    for (int rank = 1; rank <= p->n_stages; rank++) {
        ramp_error ignored; /* a stage that cannot be reached shows up as silence */
        pipeline_send_ping(p, rank, &ignored);
    }
}

static int handle_frame(pipeline *p, int source, uint8_t *frame, size_t length, ramp_error *err) {
    Ramp__Envelope *e;
    const float *payload;
    size_t n_payload;
    if (wire_unpack(frame, length, &e, &payload, &n_payload, err))
        return ramp_fail_prefix(err, "coordinator: frame from rank %d: ", source);
    int status = 0;
    if (e->body_case == RAMP__ENVELOPE__BODY_OUTPUT) {
        p->last_heard = clock_seconds(); /* progress; answers to polls are not (a hung stage's peers answer) */
        status = handle_output(p, e->output, payload, n_payload, err);
    }
    else if (e->body_case == RAMP__ENVELOPE__BODY_HELLO) note_stage_counters(p, e->hello);
    else status = pipeline_unexpected(p, e, source, err);
    wire_envelope_free(e);
    return status;
}

/* ---- the loop ---------------------------------------------------------------------------------- */

static void publish_load(pipeline *p) {
    const scheduler *s = &p->scheduler;
    pthread_mutex_lock(&p->inbox.lock);
    p->inbox.load.queued = s->n_waiting + p->inbox.n_items;
    p->inbox.load.running = s->n_running;
    p->inbox.load.kv_bytes = s->positions_reserved * p->kv_bytes_per_position;
    for (int i = 0; i <= p->exits.n_exits; i++) p->stats.exit_histogram[i] = p->exits.histogram[i];
    p->stats.layers_executed = p->exits.layers_executed;
    p->stats.layer_evaluations_possible = p->exits.outputs * (long)p->exits.total_layers;
    pthread_mutex_unlock(&p->inbox.lock);
}

/* Ends every open request (after a failure or at the end of the grace). */
static void finish_all(pipeline *p, finish_reason why) {
    double now = clock_seconds();
    for (int i = 0; i < p->scheduler.n_requests; i++) {
        request *r = &p->scheduler.requests[i];
        if (r->finished) continue;
        if (why == FINISH_ERROR) { /* nothing will come back: end it now, whatever is in flight */
            scheduler_finish_now(&p->scheduler, i, why, now);
        } else {
            scheduler_finish(&p->scheduler, i, why, now);
        }
    }
}

static bool stopping(pipeline *p, double *deadline) {
    pthread_mutex_lock(&p->inbox.lock);
    bool stop = p->inbox.stopping;
    *deadline = p->inbox.stop_deadline;
    pthread_mutex_unlock(&p->inbox.lock);
    return stop;
}

/* Sleeps until another thread hands the engine something, or a short while passes. */
static void wait_for_work(pipeline *p) {
    pthread_mutex_lock(&p->inbox.lock);
    if (!p->inbox.wake) {
        struct timespec until = clock_realtime_after(IDLE_WAIT_SECONDS);
        pthread_cond_timedwait(&p->inbox.changed, &p->inbox.lock, &until);
    }
    pthread_mutex_unlock(&p->inbox.lock);
}

/* When each request's prompt started through the pipeline (queueing excluded from its prompt time). */
static void note_started(pipeline *p, const micro_batch *b) {
    const double now = clock_seconds();
    for (int i = 0; i < b->n_rows; i++) {
        request *r = &p->scheduler.requests[b->rows[i].request_id];
        if (b->rows[i].position == 0 && r->started_at == 0) r->started_at = now;
    }
}

static int run_loop(pipeline *p, engine_run_mode mode, ramp_error *err) {
    p->last_heard = clock_seconds();
    double next_poll = clock_seconds() + STAGE_POLL_SECONDS;
    bool cancelled_at_deadline = false;
    for (;;) {
        if (drain_inbox(p, err)) return -1;
        if (interrupt_requested()) {
            if (mode == ENGINE_UNTIL_IDLE) return ramp_fail(err, "interrupted");
            engine_stop(p, p->options.grace_seconds); /* serving: drain, then stop */
        }
        double deadline;
        bool stop = stopping(p, &deadline);
        if (stop && !cancelled_at_deadline && clock_seconds() > deadline) {
            finish_all(p, FINISH_CANCELLED); /* the grace is over */
            cancelled_at_deadline = true;
        }
        if (pipeline_send_released(p, err)) return -1;
        const micro_batch *b;
        while ((b = scheduler_next_batch(&p->scheduler))) {
            note_started(p, b);
            if (pipeline_send_batch(p, b, err)) return -1;
        }
        emit_finished(p, NULL);
        publish_load(p);
        double now = clock_seconds();
        if (now >= next_poll) {
            poll_stages(p);
            next_poll = now + STAGE_POLL_SECONDS;
        }
        if (scheduler_idle(&p->scheduler)) {
            bool pending;
            pthread_mutex_lock(&p->inbox.lock);
            pending = p->inbox.n_items > 0 || p->inbox.n_cancels > 0;
            pthread_mutex_unlock(&p->inbox.lock);
            if (pending) continue;
            if (!scheduler_finished(&p->scheduler))
                return ramp_fail(err, "scheduler: requests wait but nothing is in flight");
            if (mode == ENGINE_UNTIL_IDLE || stop) return 0;
            wait_for_work(p);
            p->last_heard = clock_seconds(); /* an idle pipeline owes nothing */
            continue;
        }
        int source;
        uint8_t *frame;
        size_t length;
        int got = transport_receive(p->transport, IDLE_WAIT_SECONDS, &p->inbox.wake, &source, &frame, &length, err);
        if (got < 0) return -1;
        if (got == 0) {
            if (clock_seconds() - p->last_heard > p->options.timeout_seconds)
                return pipeline_silence_error(p, "micro-batch results", err);
            continue;
        }
        int status = handle_frame(p, source, frame, length, err);
        free(frame);
        if (status) return -1;
    }
}

int engine_run(pipeline *p, engine_run_mode mode, ramp_error *err) {
    if (!p->run_started_at) p->run_started_at = clock_seconds();
    int status = run_loop(p, mode, err);
    if (status) {
        pthread_mutex_lock(&p->inbox.lock);
        p->failed = true;
        pthread_mutex_unlock(&p->inbox.lock);
        drain_inbox(p, err); /* late submissions get their error event too */
        finish_all(p, FINISH_ERROR);
        emit_finished(p, err->message);
        return -1;
    }
    p->run_finished_at = clock_seconds();
    poll_stages(p); /* the last counters, for figures read after the run */
    emit_finished(p, NULL);
    return pipeline_send_released(p, err);
}

int pipeline_run(pipeline *p, ramp_error *err) { return engine_run(p, ENGINE_UNTIL_IDLE, err); }
