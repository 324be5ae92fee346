#include "scheduler.h"

#include "stage.h" /* exit_mode */

#include <stdlib.h>
#include <string.h>

int scheduler_init(scheduler *s, const scheduler_config *config, ramp_error *err) {
    memset(s, 0, sizeof *s);
    if (config->lanes < 1 || config->max_sequences < config->lanes || config->batch_tokens < 1 || config->context < 2)
        return ramp_fail(err,
                         "scheduler: need lanes >= 1, sequences >= lanes, batch tokens >= 1, context >= 2 "
                         "(got %d lanes, %d sequences, %d batch tokens, context %d)",
                         config->lanes, config->max_sequences, config->batch_tokens, config->context);
    s->config = *config;
    s->in_flight = calloc((size_t)config->lanes, sizeof *s->in_flight);
    s->lane_busy = calloc((size_t)config->lanes, sizeof *s->lane_busy);
    s->slot_used = calloc((size_t)config->max_sequences, sizeof *s->slot_used);
    s->released = calloc((size_t)config->max_sequences, sizeof *s->released);
    s->release_pending = calloc((size_t)config->max_sequences, sizeof *s->release_pending);
    s->sampling_logits = malloc((size_t)config->vocab_size * sizeof(float));
    s->lane_scan_from = calloc((size_t)config->lanes, sizeof *s->lane_scan_from);
    if (!s->in_flight || !s->lane_busy || !s->slot_used || !s->released || !s->release_pending || !s->sampling_logits || !s->lane_scan_from) {
        scheduler_free(s);
        return ramp_fail(err, "scheduler: out of memory");
    }
    for (int l = 0; l < config->lanes; l++) {
        s->lane_scan_from[l] = l; /* lane l holds requests l, l + lanes, ... */
        s->in_flight[l].rows = calloc((size_t)config->batch_tokens, sizeof(batch_row));
        s->in_flight[l].outputs = calloc((size_t)config->batch_tokens, sizeof(output_slot));
        s->in_flight[l].row_left = calloc((size_t)config->batch_tokens, sizeof(bool));
        if (!s->in_flight[l].rows || !s->in_flight[l].outputs || !s->in_flight[l].row_left) {
            scheduler_free(s);
            return ramp_fail(err, "scheduler: out of memory");
        }
    }
    return 0;
}

void scheduler_free(scheduler *s) {
    for (int i = 0; i < s->n_requests; i++) scheduler_forget(s, i);
    free(s->requests);
    free(s->finished_list);
    free(s->lane_scan_from);
    if (s->in_flight)
        for (int l = 0; l < s->config.lanes; l++) {
            free(s->in_flight[l].rows);
            free(s->in_flight[l].outputs);
            free(s->in_flight[l].row_left);
        }
    free(s->in_flight);
    free(s->lane_busy);
    free(s->slot_used);
    free(s->released);
    free(s->release_pending);
    free(s->sampling_logits);
    memset(s, 0, sizeof *s);
}

void scheduler_forget(scheduler *s, int index) {
    request *r = &s->requests[index];
    free(r->tokens);
    free(r->exit_points);
    free(r->exit_scratch);
    sampler_free(&r->sampler);
    r->tokens = NULL;
    r->exit_points = NULL;
    r->exit_scratch = NULL;
}

/* Every request finishes once, so a finished list as long as the request list never overflows. */
static int reserve_finished_list(scheduler *s, int needed) {
    if (needed <= s->finished_list_capacity) return 0;
    int capacity = s->finished_list_capacity ? 2 * s->finished_list_capacity : 64;
    while (capacity < needed) capacity *= 2;
    int *grown = realloc(s->finished_list, (size_t)capacity * sizeof *grown);
    if (!grown) return -1;
    s->finished_list = grown;
    s->finished_list_capacity = capacity;
    return 0;
}

static void note_finished(scheduler *s, int index) { s->finished_list[s->n_finished_list++] = index; }

int scheduler_submit(scheduler *s, const int *prompt, int n_prompt, int max_new, const sampling_params *sampling,
                     const request_exit *exit, double now, int *index, ramp_error *err) {
    if (n_prompt < 1) return ramp_fail(err, "a prompt needs at least one token");
    if (n_prompt >= s->config.context)
        return ramp_fail(err, "prompt is %d tokens, the context holds %d (raise it with --ctx)", n_prompt, s->config.context);
    if (max_new < 0) return ramp_fail(err, "token budget %d must be >= 0", max_new);
    if (reserve_finished_list(s, s->n_requests + 1)) return ramp_fail(err, "scheduler: out of memory");
    if (s->n_requests == s->requests_capacity) {
        int capacity = s->requests_capacity ? 2 * s->requests_capacity : 16;
        request *grown = realloc(s->requests, (size_t)capacity * sizeof *grown);
        if (!grown) return ramp_fail(err, "scheduler: out of memory");
        s->requests = grown;
        s->requests_capacity = capacity;
    }
    request *r = &s->requests[s->n_requests];
    memset(r, 0, sizeof *r);
    r->capacity = n_prompt + max_new < s->config.context ? n_prompt + max_new : s->config.context;
    r->tokens = malloc((size_t)(r->capacity + 1) * sizeof(int));
    r->exit_points = calloc((size_t)(r->capacity + 1), 1);
    if (!r->tokens || !r->exit_points) {
        free(r->tokens);
        free(r->exit_points);
        return ramp_fail(err, "scheduler: out of memory");
    }
    if (sampler_init(&r->sampler, sampling, s->config.vocab_size, err)) {
        free(r->tokens);
        free(r->exit_points);
        return -1;
    }
    memcpy(r->tokens, prompt, (size_t)n_prompt * sizeof(int));
    r->id = (uint64_t)s->n_requests;
    r->lane = s->n_requests % s->config.lanes;
    r->slot = -1;
    r->exit_token = -1;
    r->record = -1;
    r->n_prompt = r->n_tokens = n_prompt;
    r->max_new = max_new;
    r->submitted_at = now;
    if (exit) r->exit = *exit;
    s->prompt_tokens += (uint64_t)n_prompt;
    *index = s->n_requests++;
    if (max_new == 0) {
        r->finished = FINISH_LENGTH;
        r->finished_at = now;
        note_finished(s, *index);
    } else {
        s->n_unfinished++;
        s->n_waiting++;
    }
    return 0;
}

/* Slots of lane l are l, l + lanes, l + 2*lanes, ... */
static int lane_free_slot(scheduler *s, int lane) {
    for (int slot = lane; slot < s->config.max_sequences; slot += s->config.lanes)
        if (!s->slot_used[slot] && !s->release_pending[slot]) return slot;
    return -1;
}

/* A request that may leave at an exit point (request-level exit) leaves with the rows of its last
 * prompt chunk only: a chunk sent in an earlier micro-batch, which asks for no output, runs every
 * layer whatever the exit decides. So its prompt is not cut across micro-batches when it fits in one. */
static bool leaves_whole(const request *r) { return r->exit.mode == EXIT_MODE_DECIDE && !r->exit.token_level; }

static void add_rows(scheduler *s, micro_batch *b, int index, int count) {
    request *r = &s->requests[index];
    for (int k = 0; k < count; k++) {
        batch_row *row = &b->rows[b->n_rows];
        row->token = r->tokens[r->n_fed];
        row->position = r->n_fed;
        row->slot = r->slot;
        row->request_id = r->id;
        row->slot_capacity = r->needs_reservation ? r->capacity : 0;
        r->needs_reservation = false;
        r->n_fed++;
        row->wants_output = r->n_fed == r->n_tokens;
        if (row->wants_output) b->outputs[b->n_outputs++] = (output_slot){index, b->n_rows};
        b->n_rows++;
    }
}

static bool lane_form_batch(scheduler *s, int lane) {
    micro_batch *b = &s->in_flight[lane];
    b->n_rows = b->n_outputs = 0;
    /* Skip the lane's finished prefix: a server's request list only grows. */
    int from = s->lane_scan_from[lane];
    while (from < s->n_requests && s->requests[from].finished) from += s->config.lanes;
    s->lane_scan_from[lane] = from;
    /* Admit waiting requests of this lane, in submission order, while it has free slots. */
    for (int i = from; i < s->n_requests; i += s->config.lanes) {
        request *r = &s->requests[i];
        if (r->slot >= 0 || r->finished) continue;
        int slot = lane_free_slot(s, lane);
        if (slot < 0) break;
        s->slot_used[slot] = true;
        r->slot = slot;
        r->needs_reservation = true;
        s->n_waiting--;
        s->n_running++;
        s->positions_reserved += (uint64_t)r->capacity;
    }
    /* Decode rows first (one token each keeps latency low), then prompt chunks. */
    for (int pass = 0; pass < 2; pass++) {
        for (int i = from; i < s->n_requests && b->n_rows < s->config.batch_tokens; i += s->config.lanes) {
            request *r = &s->requests[i];
            if (r->slot < 0 || r->finished || r->n_fed >= r->n_tokens) continue;
            bool decoding = r->n_fed >= r->n_prompt;
            if (decoding != (pass == 0)) continue;
            int remaining = r->n_tokens - r->n_fed, room = s->config.batch_tokens - b->n_rows;
            if (remaining > room && remaining <= s->config.batch_tokens && leaves_whole(r))
                continue; /* the next micro-batch takes it whole */
            add_rows(s, b, i, remaining < room ? remaining : room);
        }
    }
    if (b->n_rows == 0) return false;
    memset(b->row_left, 0, (size_t)b->n_rows * sizeof(bool));
    b->lane = lane;
    b->batch_id = s->next_batch_id++;
    s->lane_busy[lane] = true;
    return true;
}

const micro_batch *scheduler_next_batch(scheduler *s) {
    for (int lane = 0; lane < s->config.lanes; lane++)
        if (!s->lane_busy[lane] && lane_form_batch(s, lane)) return &s->in_flight[lane];
    return NULL;
}

static void request_finish(scheduler *s, request *r, finish_reason why, double now) {
    r->finished = why;
    r->finished_at = now;
    s->n_unfinished--;
    if (r->slot >= 0) {
        s->slot_used[r->slot] = false;
        s->release_pending[r->slot] = true; /* not reused before the stages hear of the release */
        s->released[s->n_released++] = r->slot;
        r->slot = -1;
        s->n_running--;
        s->positions_reserved -= (uint64_t)r->capacity;
    } else {
        s->n_waiting--;
    }
    note_finished(s, (int)(r - s->requests));
}

/* True when a row of request r travels in its lane's micro-batch right now. */
static bool rows_in_flight(const scheduler *s, const request *r) {
    if (!s->lane_busy[r->lane]) return false;
    const micro_batch *b = &s->in_flight[r->lane];
    for (int i = 0; i < b->n_rows; i++)
        if (b->rows[i].request_id == r->id && !b->row_left[i]) return true;
    return false;
}

void scheduler_finish(scheduler *s, int index, finish_reason why, double now) {
    request *r = &s->requests[index];
    if (r->finished) return;
    if (rows_in_flight(s, r)) {
        if (!r->pending_finish) r->pending_finish = why;
        return;
    }
    request_finish(s, r, why, now);
}

void scheduler_finish_now(scheduler *s, int index, finish_reason why, double now) {
    request *r = &s->requests[index];
    if (!r->finished) request_finish(s, r, why, now);
}

void scheduler_cancel(scheduler *s, int index, double now) { scheduler_finish(s, index, FINISH_CANCELLED, now); }

int scheduler_take_finished(scheduler *s, const int **indices) {
    int n = s->n_finished_list;
    *indices = s->finished_list;
    s->n_finished_list = 0;
    return n;
}

micro_batch *scheduler_find_batch(scheduler *s, uint64_t batch_id) {
    for (int lane = 0; lane < s->config.lanes; lane++)
        if (s->lane_busy[lane] && s->in_flight[lane].batch_id == batch_id) return &s->in_flight[lane];
    return NULL;
}

int scheduler_sample(scheduler *s, int index, const float *logits) {
    sampler *chooser = &s->requests[index].sampler;
    /* greedy only reads the row: no copy of it (128 KB per token of a 32,000-token vocabulary) */
    if (sampler_is_greedy(chooser)) return argmax(logits, s->config.vocab_size);
    memcpy(s->sampling_logits, logits, (size_t)s->config.vocab_size * sizeof(float));
    return sampler_sample(chooser, s->sampling_logits);
}

void scheduler_accept_token(scheduler *s, int index, int token, double now) {
    request *r = &s->requests[index];
    if (r->finished || r->pending_finish) return;
    if (r->generated == 0) r->first_token_at = now;
    if (token == s->config.eos_token || token == s->config.eot_token) {
        request_finish(s, r, FINISH_EOS, now);
        return;
    }
    r->tokens[r->n_tokens++] = token;
    r->generated++;
    s->tokens_generated++;
    if (r->generated >= r->max_new) request_finish(s, r, FINISH_LENGTH, now);
    else if (r->n_tokens >= r->capacity) request_finish(s, r, FINISH_CONTEXT, now);
}

void scheduler_exit_request(scheduler *s, int index, int token, double now) {
    request *r = &s->requests[index];
    if (r->finished || r->pending_finish) return;
    if (r->generated == 0) r->first_token_at = now;
    r->exit_token = token;
    request_finish(s, r, FINISH_EXIT, now);
}

int scheduler_batch_done(scheduler *s, uint64_t batch_id, double now, ramp_error *err) {
    micro_batch *b = scheduler_find_batch(s, batch_id);
    if (!b) return ramp_fail(err, "micro-batch %llu is not in flight", (unsigned long long)batch_id);
    s->lane_busy[b->lane] = false;
    /* Requests stopped while their rows travelled end now that nothing of theirs is in flight. */
    for (int i = 0; i < b->n_rows; i++) {
        request *r = &s->requests[b->rows[i].request_id];
        if (r->pending_finish && !r->finished) request_finish(s, r, r->pending_finish, now);
    }
    b->n_rows = b->n_outputs = 0;
    return 0;
}

int scheduler_take_released(scheduler *s, const int **slots) {
    int n = s->n_released;
    *slots = s->released;
    for (int i = 0; i < n; i++) s->release_pending[s->released[i]] = false;
    s->n_released = 0;
    return n;
}

bool scheduler_idle(const scheduler *s) {
    for (int lane = 0; lane < s->config.lanes; lane++)
        if (s->lane_busy[lane]) return false;
    return true;
}

bool scheduler_finished(const scheduler *s) { return s->n_unfinished == 0 && scheduler_idle(s); }
