#include "metrics.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "engine.h"
#include "pipeline.h"

const double metrics_bucket_bounds[METRICS_BUCKETS] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                                       0.5,   1.0,    2.5,   5.0,  10.0,  30.0, 60.0, 300.0};

static void histogram_add(metrics_histogram *h, double seconds) {
    int b = 0;
    while (b < METRICS_BUCKETS && seconds > metrics_bucket_bounds[b]) b++;
    h->counts[b]++;
    h->count++;
    h->sum += seconds;
}

void metrics_note_token(engine_stats *s, pthread_mutex_t *lock, double seconds, bool first) {
    pthread_mutex_lock(lock);
    histogram_add(first ? &s->time_to_first_token : &s->time_per_output_token, seconds);
    pthread_mutex_unlock(lock);
}

void metrics_note_finish(engine_stats *s, pthread_mutex_t *lock, int finish, int prompt_tokens, int generated_tokens,
                         double seconds) {
    pthread_mutex_lock(lock);
    if (finish >= 0 && finish < METRICS_FINISH_KINDS) s->finished[finish]++;
    s->prompt_tokens += (uint64_t)prompt_tokens;
    s->generated_tokens += (uint64_t)generated_tokens;
    histogram_add(&s->request_seconds, seconds);
    pthread_mutex_unlock(lock);
}

int metrics_appendf(char **text, size_t *length, size_t *capacity, const char *format, ...) {
    for (;;) {
        va_list args;
        va_start(args, format);
        size_t room = *capacity - *length;
        int n = *text ? vsnprintf(*text + *length, room, format, args) : -2;
        va_end(args);
        if (n >= 0 && (size_t)n < room) {
            *length += (size_t)n;
            return 0;
        }
        size_t grown_capacity = *capacity ? 2 * *capacity : 4096;
        while (n >= 0 && grown_capacity - *length <= (size_t)n) grown_capacity *= 2;
        char *grown = realloc(*text, grown_capacity);
        if (!grown) return -1;
        *text = grown;
        *capacity = grown_capacity;
    }
}

static int histogram_text(char **t, size_t *n, size_t *c, const char *name, const char *help, const metrics_histogram *h) {
    int status = metrics_appendf(t, n, c, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    uint64_t cumulative = 0;
    for (int b = 0; b < METRICS_BUCKETS && !status; b++) {
        cumulative += h->counts[b];
        status = metrics_appendf(t, n, c, "%s_bucket{le=\"%g\"} %llu\n", name, metrics_bucket_bounds[b],
                                 (unsigned long long)cumulative);
    }
    cumulative += h->counts[METRICS_BUCKETS];
    if (!status)
        status = metrics_appendf(t, n, c, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.6f\n%s_count %llu\n", name,
                                 (unsigned long long)cumulative, name, h->sum, name, (unsigned long long)h->count);
    return status;
}

int metrics_prometheus(pipeline *p, char **t, size_t *n, size_t *c) {
    pthread_mutex_lock(&p->inbox.lock);
    engine_stats s = p->stats;
    engine_load load = p->inbox.load;
    int n_stages = p->n_stages;
    double busy[n_stages > 0 ? n_stages : 1];
    uint64_t rows[n_stages > 0 ? n_stages : 1];
    for (int i = 0; i < n_stages; i++) {
        busy[i] = p->stages[i].busy_seconds;
        rows[i] = p->stages[i].live_rows;
    }
    pthread_mutex_unlock(&p->inbox.lock);
    int status = metrics_appendf(t, n, c, "# HELP ramp_requests_total Requests ended, by how they ended.\n"
                                          "# TYPE ramp_requests_total counter\n");
    for (int f = 0; f < METRICS_FINISH_KINDS && !status; f++)
        status = metrics_appendf(t, n, c, "ramp_requests_total{finish=\"%s\"} %llu\n",
                                 engine_finish_name((engine_finish)f), (unsigned long long)s.finished[f]);
    if (!status)
        status = metrics_appendf(
            t, n, c,
            "# HELP ramp_prompt_tokens_total Prompt tokens of ended requests.\n# TYPE ramp_prompt_tokens_total counter\n"
            "ramp_prompt_tokens_total %llu\n"
            "# HELP ramp_generated_tokens_total Generated tokens of ended requests.\n"
            "# TYPE ramp_generated_tokens_total counter\nramp_generated_tokens_total %llu\n"
            "# HELP ramp_queue_depth Requests waiting for a KV slot.\n# TYPE ramp_queue_depth gauge\nramp_queue_depth %d\n"
            "# HELP ramp_running_requests Requests holding a KV slot.\n# TYPE ramp_running_requests gauge\n"
            "ramp_running_requests %d\n"
            "# HELP ramp_kv_bytes_in_use KV cache reserved by running requests, over every stage.\n"
            "# TYPE ramp_kv_bytes_in_use gauge\nramp_kv_bytes_in_use %llu\n",
            (unsigned long long)s.prompt_tokens, (unsigned long long)s.generated_tokens, load.queued, load.running,
            (unsigned long long)load.kv_bytes);
    if (!status)
        status = histogram_text(t, n, c, "ramp_time_to_first_token_seconds", "Submission to first token.",
                                &s.time_to_first_token);
    if (!status)
        status = histogram_text(t, n, c, "ramp_time_per_output_token_seconds", "Between consecutive tokens.",
                                &s.time_per_output_token);
    if (!status)
        status = histogram_text(t, n, c, "ramp_request_seconds", "Submission to end.", &s.request_seconds);
    if (!status)
        status = metrics_appendf(t, n, c,
                                 "# HELP process_cpu_seconds_total CPU time (user + system) of rank 0's process.\n"
                                 "# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total %.6f\n",
                                 clock_process_cpu_seconds());
    if (!status)
        status = metrics_appendf(t, n, c, "# HELP ramp_stage_busy_seconds Seconds a stage spent computing.\n"
                                          "# TYPE ramp_stage_busy_seconds counter\n");
    for (int i = 0; i < n_stages && !status; i++)
        status = metrics_appendf(t, n, c, "ramp_stage_busy_seconds{stage=\"%d\",layers=\"%d-%d\"} %.6f\n", i + 1,
                                 p->ranges[i].first_layer, p->ranges[i].end_layer - 1, busy[i]);
    if (!status)
        status = metrics_appendf(t, n, c, "# HELP ramp_stage_rows_total Rows a stage received.\n"
                                          "# TYPE ramp_stage_rows_total counter\n");
    for (int i = 0; i < n_stages && !status; i++)
        status = metrics_appendf(t, n, c, "ramp_stage_rows_total{stage=\"%d\"} %llu\n", i + 1,
                                 (unsigned long long)rows[i]);
    if (!status)
        status = metrics_appendf(t, n, c, "# HELP ramp_exit_tokens_total Output tokens by the layer they left at.\n"
                                          "# TYPE ramp_exit_tokens_total counter\n");
    for (int i = 0; i <= p->n_exits && !status; i++)
        status = metrics_appendf(t, n, c, "ramp_exit_tokens_total{layer=\"%d\"} %ld\n",
                                 i < p->n_exits ? p->exit_layers[i] : p->model.config.n_layers, s.exit_histogram[i]);
    if (!status)
        status = metrics_appendf(
            t, n, c,
            "# HELP ramp_layer_evaluations_skipped_total Layer evaluations early exit saved on output tokens.\n"
            "# TYPE ramp_layer_evaluations_skipped_total counter\nramp_layer_evaluations_skipped_total %ld\n"
            "# HELP ramp_layer_evaluations_total Layer evaluations spent on output tokens.\n"
            "# TYPE ramp_layer_evaluations_total counter\nramp_layer_evaluations_total %ld\n",
            s.layer_evaluations_possible - s.layers_executed, s.layers_executed);
    return status;
}

static double run_seconds(const pipeline *p) {
    double end = p->run_finished_at ? p->run_finished_at : clock_seconds();
    return p->run_started_at ? end - p->run_started_at : 0.0;
}

static double mean_time_to_first_token(const pipeline *p) {
    double total = 0;
    int n = 0;
    for (int i = 0; i < p->scheduler.n_requests; i++) {
        const request *r = &p->scheduler.requests[i];
        if (r->first_token_at > 0) {
            total += r->first_token_at - r->submitted_at;
            n++;
        }
    }
    return n ? total / n : 0.0;
}

/* The first METRICS_REQUEST_DETAILS requests one by one (seconds from submission; prompt seconds
 * from the first prompt row sent to the first token, queueing excluded), for latency studies and
 * for benchmarks that time a warm request. */
enum { METRICS_REQUEST_DETAILS = 1000 };

static json_t *request_details(const pipeline *p) {
    json_t *list = json_array();
    const int n = p->scheduler.n_requests < METRICS_REQUEST_DETAILS ? p->scheduler.n_requests : METRICS_REQUEST_DETAILS;
    for (int i = 0; list && i < n; i++) {
        const request *r = &p->scheduler.requests[i];
        const bool answered = r->first_token_at > 0 && r->started_at > 0;
        json_array_append_new(list, json_pack("{s:i, s:i, s:f, s:f, s:f}", "prompt_tokens", r->n_prompt,
                                              "generated_tokens", r->generated, "queued_seconds",
                                              r->started_at > 0 ? r->started_at - r->submitted_at : 0.0,
                                              "prompt_seconds", answered ? r->first_token_at - r->started_at : 0.0,
                                              "seconds", r->finished_at > 0 ? r->finished_at - r->submitted_at : 0.0));
    }
    return list;
}

/* Whether the stages ran as ranks of their own (else in rank 0's process, sharing its CPU time). */
static bool stages_have_own_processes(const pipeline *p) { return p->transport && !transport_is_local(p->transport); }

/* CPU time of rank 0's process and of the whole job: rank 0 plus each stage rank (stages in rank
 * 0's process are counted with it, once). On a node with fewer cores than ranks, wall time follows
 * the job's CPU time rather than any one stage's busy time. */
static void job_cpu_seconds(const pipeline *p, double *rank0, double *job) {
    *rank0 = *job = clock_process_cpu_seconds();
    if (stages_have_own_processes(p))
        for (int i = 0; i < p->n_stages; i++) *job += p->stages[i].report.cpu_seconds;
}

static double stage_idle_fraction(const Ramp__StageReport *r) {
    double total = r->busy_seconds + r->idle_seconds;
    return total > 0 ? r->idle_seconds / total : 0.0;
}

void metrics_print_summary(const pipeline *p, FILE *out) {
    char split[256];
    split_format(p->ranges, p->n_stages, split, sizeof split);
    double seconds = run_seconds(p);
    const scheduler *s = &p->scheduler;
    fprintf(out, "ramp: %d stage%s (layers %s), %d request%s: %llu prompt + %llu generated tokens in %.3f s, "
            "%.1f generated tokens/s, time to first token %.3f s\n",
            p->n_stages, p->n_stages == 1 ? "" : "s", split, s->n_requests, s->n_requests == 1 ? "" : "s",
            (unsigned long long)s->prompt_tokens, (unsigned long long)s->tokens_generated, seconds,
            seconds > 0 ? (double)s->tokens_generated / seconds : 0.0, mean_time_to_first_token(p));
    double idle_sum = 0;
    for (int i = 0; i < p->n_stages; i++) {
        const Ramp__StageReport *r = &p->stages[i].report;
        idle_sum += stage_idle_fraction(r);
        fprintf(out,
                "ramp:   stage %d (rank %u, layers %u-%u): busy %.3f s, idle %.3f s (%.0f%%), %llu micro-batches, "
                "%llu rows, sent %.2f MB, received %.2f MB, KV peak %.2f MB, weights %.2f MB (%.2f MB in 2 MiB pages), exit "
                "heads %.3f s\n",
                i + 1, r->rank, r->first_layer, r->end_layer - 1, r->busy_seconds, r->idle_seconds,
                100.0 * stage_idle_fraction(r), (unsigned long long)r->batches, (unsigned long long)r->rows,
                r->bytes_sent / 1e6, r->bytes_received / 1e6, r->kv_bytes_peak / 1e6, r->weight_bytes / 1e6,
                r->weight_bytes_huge / 1e6, r->exit_head_seconds);
        fprintf(out, "ramp:     layers %.3f s for %llu row-layers (%.1f rows per micro-batch and layer), waiting for "
                "exit decisions %.3f s, run ahead of them %llu row-layers (%llu for rows that left)\n",
                r->compute_seconds, (unsigned long long)r->layer_rows,
                r->layer_batches ? (double)r->layer_rows / (double)r->layer_batches : 0.0, r->decision_wait_seconds,
                (unsigned long long)r->speculated_layer_rows, (unsigned long long)r->wasted_layer_rows);
    }
    if (p->exits.mode == EXIT_MODE_DECIDE && p->exits.outputs > 0) {
        double saved = 1.0 - (double)p->exits.layers_executed / ((double)p->exits.outputs * p->exits.total_layers);
        fprintf(out, "ramp:   early exit: %ld outputs, mean %.2f of %d layers, %.1f%% of layer evaluations skipped; "
                "exit histogram", p->exits.outputs, (double)p->exits.layers_executed / p->exits.outputs,
                p->exits.total_layers, 100.0 * saved);
        for (int i = 0; i <= p->exits.n_exits; i++)
            fprintf(out, " %d:%ld", i < p->exits.n_exits ? p->exits.exit_layers[i] : p->exits.total_layers,
                    p->exits.histogram[i]);
        fprintf(out, "; exit policy %.3f s on rank 0\n", p->exits.policy_seconds);
    }
    int P = p->n_stages, M = p->options.lanes;
    fprintf(out, "ramp:   pipeline idle fraction %.2f (bound (P-1)/(M+P-1) = %.2f for P=%d, M=%d)\n",
            P ? idle_sum / P : 0.0, (double)(P - 1) / (M + P - 1), P, M);
    double rank0_cpu, job_cpu;
    job_cpu_seconds(p, &rank0_cpu, &job_cpu);
    if (stages_have_own_processes(p)) {
        fprintf(out, "ramp:   CPU time %.3f s: rank 0 %.3f s", job_cpu, rank0_cpu);
        for (int i = 0; i < p->n_stages; i++) fprintf(out, ", stage %d %.3f s", i + 1, p->stages[i].report.cpu_seconds);
        fprintf(out, "\n");
    } else {
        fprintf(out, "ramp:   CPU time %.3f s\n", job_cpu);
    }
}

int metrics_write_json(const pipeline *p, const char *path, ramp_error *err) {
    const scheduler *s = &p->scheduler;
    json_t *stages = json_array();
    double idle_sum = 0;
    for (int i = 0; i < p->n_stages; i++) {
        const Ramp__StageReport *r = &p->stages[i].report;
        idle_sum += stage_idle_fraction(r);
        json_array_append_new(
            stages, json_pack("{s:i, s:i, s:i, s:i, s:f, s:f, s:f, s:f, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "stage", i + 1,
                              "rank", (int)r->rank, "first_layer", (int)r->first_layer, "end_layer",
                              (int)r->end_layer, "busy_seconds", r->busy_seconds, "idle_seconds", r->idle_seconds,
                              "idle_fraction", stage_idle_fraction(r), "exit_head_seconds", r->exit_head_seconds, "micro_batches", (json_int_t)r->batches,
                              "rows", (json_int_t)r->rows, "bytes_sent", (json_int_t)r->bytes_sent,
                              "bytes_received", (json_int_t)r->bytes_received, "kv_bytes_peak",
                              (json_int_t)r->kv_bytes_peak, "weight_bytes", (json_int_t)r->weight_bytes,
                              "peak_resident_bytes", (json_int_t)r->peak_resident_bytes));
        json_t *stage = json_array_get(stages, json_array_size(stages) - 1);
        json_object_set_new(stage, "compute_seconds", json_real(r->compute_seconds));
        json_object_set_new(stage, "weight_bytes_huge", json_integer((json_int_t)r->weight_bytes_huge));
        json_object_set_new(stage, "layer_rows", json_integer((json_int_t)r->layer_rows));
        json_object_set_new(stage, "layer_batches", json_integer((json_int_t)r->layer_batches));
        json_object_set_new(stage, "decision_wait_seconds", json_real(r->decision_wait_seconds));
        json_object_set_new(stage, "run_ahead_layer_rows", json_integer((json_int_t)r->speculated_layer_rows));
        json_object_set_new(stage, "run_ahead_wasted_layer_rows", json_integer((json_int_t)r->wasted_layer_rows));
        json_object_set_new(stage, "cpu_seconds", json_real(r->cpu_seconds));
    }
    double seconds = run_seconds(p);
    int P = p->n_stages, M = p->options.lanes;
    json_t *root = json_pack(
        "{s:i, s:i, s:i, s:i, s:I, s:I, s:I, s:f, s:f, s:f, s:f, s:f, s:f, s:o}", "stages_count", P, "micro_batches_in_flight",
        M, "threads_per_rank", p->threads, "requests", s->n_requests, "prompt_tokens", (json_int_t)s->prompt_tokens,
        "generated_tokens", (json_int_t)s->tokens_generated, "micro_batches", (json_int_t)p->micro_batches, "seconds",
        seconds, "tokens_per_second", seconds > 0 ? (double)s->tokens_generated / seconds : 0.0,
        "time_to_first_token_seconds", mean_time_to_first_token(p), "pipeline_idle_fraction", P ? idle_sum / P : 0.0,
        "idle_bound", (double)(P - 1) / (M + P - 1), "exit_policy_seconds", p->exits.policy_seconds, "stages", stages);
    if (!root) return ramp_fail(err, "metrics: could not build the JSON document");
    if (p->metrics_extra) json_object_set(root, "job", p->metrics_extra);
    json_t *exit_histogram = json_array();
    for (int i = 0; i <= p->exits.n_exits; i++)
        json_array_append_new(exit_histogram,
                              json_pack("{s:i, s:I}", "layer", i < p->exits.n_exits ? p->exits.exit_layers[i]
                                                                                    : p->exits.total_layers,
                                        "outputs", (json_int_t)p->exits.histogram[i]));
    json_object_set_new(root, "exit_histogram", exit_histogram);
    json_object_set_new(root, "kv_type", json_string(kv_type_name(p->options.kv_type)));
    double rank0_cpu, job_cpu;
    job_cpu_seconds(p, &rank0_cpu, &job_cpu);
    json_object_set_new(root, "rank0_cpu_seconds", json_real(rank0_cpu));
    json_object_set_new(root, "cpu_seconds", json_real(job_cpu));
    json_object_set_new(root, "request_details", request_details(p));
    json_object_set_new(root, "layer_evaluations", json_integer(p->exits.layers_executed));
    json_object_set_new(root, "layer_evaluations_possible",
                        json_integer((json_int_t)p->exits.outputs * p->exits.total_layers));
    int status = json_dump_file(root, path, JSON_INDENT(2));
    json_decref(root);
    if (status) return ramp_fail(err, "%s: cannot write the metrics", path);
    return 0;
}

