#include "exit_run.h"

#include <stdlib.h>
#include <string.h>

#include "clock.h"

void exit_run_init(exit_run *run, exit_mode mode, bool token_level, const exit_policy *policy, int n_exits,
                   const int *exit_layers, int total_layers) {
    exit_run_free(run);
    run->mode = mode;
    run->token_level = token_level;
    run->policy = policy;
    run->n_exits = n_exits;
    memcpy(run->exit_layers, exit_layers, (size_t)n_exits * sizeof(int));
    run->total_layers = total_layers;
}

void exit_run_free(exit_run *run) {
    free(run->records);
    memset(run, 0, sizeof *run);
}

int exit_run_point(const exit_run *run, int layer) {
    for (int i = 0; i < run->n_exits; i++)
        if (run->exit_layers[i] == layer) return i;
    return -1;
}

static exit_record *scratch_record(request *r, int index, ramp_error *err) {
    if (!r->exit_scratch) {
        r->exit_scratch = malloc(sizeof(exit_record));
        if (!r->exit_scratch) {
            ramp_fail(err, "out of memory recording exit features");
            return NULL;
        }
        r->record = -1;
    }
    exit_record *record = r->exit_scratch;
    if (r->record < 0) { /* a new token */
        memset(record, 0, sizeof *record);
        record->request = index;
        record->final_token = -1;
        r->record = 0;
    }
    return record;
}

static int current_record(exit_run *run, request *r, int index, ramp_error *err) {
    if (r->record >= 0) return r->record;
    if (run->n_records == run->records_capacity) {
        int capacity = run->records_capacity ? 2 * run->records_capacity : 256;
        exit_record *grown = realloc(run->records, (size_t)capacity * sizeof *grown);
        if (!grown) return ramp_fail(err, "out of memory recording exit features");
        run->records = grown;
        run->records_capacity = capacity;
    }
    exit_record *record = &run->records[run->n_records];
    memset(record, 0, sizeof *record);
    record->request = index;
    record->final_token = -1;
    record->exit_index = run->n_exits;
    r->record = run->n_records++;
    return r->record;
}

/* The features that look back at the previous exit point, read from the record rather than taken
 * in arrival order: stages report to rank 0 independently, and when no decision holds a batch back
 * (recording for exit-train) a deeper point's report may arrive before a shallower one's. */
static void fill_previous(exit_observation *o, const exit_observation *observations, const bool *seen,
                          int exit_index) {
    const exit_observation *previous = exit_index > 0 && seen[exit_index - 1] ? &observations[exit_index - 1] : NULL;
    o->features[EXIT_FEATURE_AGREES_PREVIOUS] = previous && previous->top_token == o->top_token ? 1.0f : 0.0f;
    o->features[EXIT_FEATURE_PREVIOUS_TOP_PROB] = previous ? previous->features[EXIT_FEATURE_TOP_PROB] : 0.0f;
    o->features[EXIT_FEATURE_PREVIOUS_GAP] = previous ? previous->features[EXIT_FEATURE_GAP] : 0.0f;
}

int exit_run_record(exit_run *run, request *r, int index, int exit_index, const Ramp__ExitFeatures *f, bool *ask,
                    exit_observation *observed, ramp_error *err) {
    *ask = false;
    exit_record *record;
    if (run->keep_records) {
        int record_index = current_record(run, r, index, err);
        if (record_index < 0) return -1;
        record = &run->records[record_index];
    } else if (!(record = scratch_record(r, index, err))) {
        return -1;
    }
    exit_observation *o = &record->observations[exit_index];
    o->features[EXIT_FEATURE_TOP_PROB] = f->top_prob;
    o->features[EXIT_FEATURE_GAP] = f->gap;
    o->features[EXIT_FEATURE_ENTROPY] = f->entropy;
    o->features[EXIT_FEATURE_DEPTH] = (float)f->layer / (float)run->total_layers;
    o->top_token = f->top_token;
    record->seen[exit_index] = true;
    fill_previous(o, record->observations, record->seen, exit_index); /* a decision waits: it is there */
    if (r->exit.mode != EXIT_MODE_DECIDE || !r->exit.policy) return 0;
    /* A sequence may keep only so many exited tokens waiting for their skipped layers. */
    if (r->exit.token_level && (r->consecutive_exits >= STAGE_MAX_DEFERRED - 1 || r->n_fed <= r->n_prompt)) return 0;
    *ask = true;
    *observed = *o; /* a copy: the next row's record may move the records array */
    return 0;
}

void exit_run_decide(exit_run *run, int n, request *const *requests, const int *exit_index,
                     const exit_observation *asked, bool *leaves) {
    double start = clock_seconds();
    const float *features[n > 0 ? n : 1];
    int tokens[n > 0 ? n : 1];
    for (int i = 0; i < n; i++) features[i] = asked[i].features, tokens[i] = asked[i].top_token;
    /* rows of one policy at a time (requests may bring their own) */
    for (int first = 0, end; first < n; first = end) {
        const exit_policy *policy = requests[first]->exit.policy;
        for (end = first + 1; end < n && requests[end]->exit.policy == policy; end++) {}
        exit_policy_should_exit_many(policy, end - first, exit_index + first, features + first, tokens + first,
                                     leaves + first);
    }
    run->policy_seconds += clock_seconds() - start;
}

int exit_run_observe(exit_run *run, request *r, int index, int exit_index, const Ramp__ExitFeatures *f, bool *leaves,
                     ramp_error *err) {
    *leaves = false;
    bool ask;
    exit_observation observed;
    if (exit_run_record(run, r, index, exit_index, f, &ask, &observed, err)) return -1;
    if (ask) exit_run_decide(run, 1, &r, &exit_index, &observed, leaves);
    return 0;
}

void exit_run_settle(exit_run *run, request *r, int token, int exit_index) {
    int layers = exit_index < run->n_exits ? run->exit_layers[exit_index] : run->total_layers;
    run->histogram[exit_index]++;
    run->layers_executed += layers;
    run->outputs++;
    r->layers_executed += layers;
    r->output_tokens++;
    if (r->generated < r->capacity) r->exit_points[r->generated] = (unsigned char)exit_index;
    r->consecutive_exits = exit_index < run->n_exits ? r->consecutive_exits + 1 : 0;
    if (r->record >= 0 && run->keep_records) {
        run->records[r->record].final_token = token;
        run->records[r->record].exit_index = exit_index;
    }
    r->record = -1;
}

static int by_request(const void *a, const void *b) {
    const exit_record *x = *(const exit_record *const *)a, *y = *(const exit_record *const *)b;
    return x->request != y->request ? (x->request < y->request ? -1 : 1) : (x < y ? -1 : x > y);
}

exit_observation *exit_run_dataset(const exit_run *run, int *n_examples) {
    return exit_run_dataset_of(run, n_examples, NULL);
}

exit_observation *exit_run_dataset_of(const exit_run *run, int *n_examples, int *requests) {
    exit_observation *out = malloc((size_t)(run->n_records ? run->n_records : 1) * run->n_exits * sizeof *out);
    const exit_record **order = malloc((size_t)(run->n_records ? run->n_records : 1) * sizeof *order);
    int n = 0;
    if (!out || !order) {
        free(out);
        free(order);
        *n_examples = 0;
        return NULL;
    }
    /* Request order (then arrival order within a request), whatever the timing of the lanes. */
    for (int i = 0; i < run->n_records; i++) order[i] = &run->records[i];
    qsort(order, (size_t)run->n_records, sizeof *order, by_request);
    for (int i = 0; i < run->n_records; i++) {
        const exit_record *record = order[i];
        bool complete = record->final_token >= 0;
        for (int e = 0; e < run->n_exits; e++) complete = complete && record->seen[e];
        if (!complete) continue;
        exit_observation *row = out + (size_t)n * run->n_exits;
        if (requests) requests[n] = record->request;
        bool stays = true;
        for (int e = run->n_exits - 1; e >= 0; e--) { /* backwards: "stays" needs every later point */
            row[e] = record->observations[e];
            fill_previous(&row[e], record->observations, record->seen, e); /* every point has arrived */
            row[e].agrees_final = row[e].top_token == record->final_token;
            stays = stays && row[e].agrees_final;
            row[e].stays = stays;
        }
        n++;
    }
    free(order);
    *n_examples = n;
    return out;
}
