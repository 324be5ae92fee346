/* batch.c: `ramp batch`: a JSONL file of OpenAI requests through the pipeline, resumable.
 *
 * A reader thread turns input lines into engine requests (at most a few times the KV slots in
 * flight, so a file of millions of lines needs no memory for them); the engine loop (main thread)
 * runs them with continuous batching, and each finished request is written as one whole output
 * line at once, in completion order, by the engine's thread. Rerunning the same command skips
 * every line the output already answers, so a job killed at any moment loses at most the
 * requests in flight. SIGTERM or SIGUSR1 (Slurm's --signal) stop the reading, let the requests in
 * flight finish within --grace, and exit with status BATCH_EXIT_PREEMPTED, which the sbatch script
 * turns into a requeue.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "batch_line.h"
#include "cli.h"
#include "clock.h"
#include "commands.h"
#include "engine.h"
#include "interrupt.h"
#include "metrics.h"
#include "openai_engine.h"
#include "pipeline.h"

/* Exit status of a job stopped before its end (EX_TEMPFAIL: "try again"): requeue and rerun. */
#define BATCH_EXIT_PREEMPTED 75
#define SAMPLE_SECONDS 1.0

/* ---- a set of strings and of line numbers (what the output already holds) ----------------------- */

typedef struct {
    char **keys;
    size_t capacity, count;
} string_set;

static uint64_t hash_text(const char *s) {
    uint64_t h = 14695981039346656037ull;
    while (*s) h = (h ^ (unsigned char)*s++) * 1099511628211ull;
    return h;
}

static bool set_contains(const string_set *set, const char *key) {
    if (!set->capacity) return false;
    for (size_t i = hash_text(key) & (set->capacity - 1);; i = (i + 1) & (set->capacity - 1)) {
        if (!set->keys[i]) return false;
        if (!strcmp(set->keys[i], key)) return true;
    }
}

/* Adds a copy of key; returns 1 when added, 0 when present, -1 out of memory. */
static int set_add(string_set *set, const char *key) {
    if (set_contains(set, key)) return 0;
    if (2 * (set->count + 1) > set->capacity) {
        size_t capacity = set->capacity ? 2 * set->capacity : 1024;
        char **keys = calloc(capacity, sizeof *keys);
        if (!keys) return -1;
        for (size_t i = 0; i < set->capacity; i++) {
            if (!set->keys[i]) continue;
            size_t j = hash_text(set->keys[i]) & (capacity - 1);
            while (keys[j]) j = (j + 1) & (capacity - 1);
            keys[j] = set->keys[i];
        }
        free(set->keys);
        set->keys = keys;
        set->capacity = capacity;
    }
    size_t i = hash_text(key) & (set->capacity - 1);
    while (set->keys[i]) i = (i + 1) & (set->capacity - 1);
    if (!(set->keys[i] = strdup(key))) return -1;
    set->count++;
    return 1;
}

static void set_free(string_set *set) {
    for (size_t i = 0; i < set->capacity; i++) free(set->keys[i]);
    free(set->keys);
    memset(set, 0, sizeof *set);
}

static void line_key(long line_number, char *key, size_t capacity) { snprintf(key, capacity, "#line %ld", line_number); }

/* ---- the job ---------------------------------------------------------------------------------- */

typedef struct {
    const char *input, *output, *metrics_json;
    double progress_seconds; /* between progress lines when stderr is not a terminal */
    int max_in_flight;
} batch_options;

typedef struct {
    double t;
    long done;
    uint64_t generated_tokens;
    long layers_executed, layer_evaluations_possible;
    double busy[64];
} batch_sample;

typedef struct batch_job {
    batch_options options;
    pipeline *pipeline;
    openai_front front;
    int output_fd;
    pthread_mutex_t lock; /* output writes and the counters below */
    pthread_cond_t changed;
    string_set done_ids, done_lines; /* from the output of earlier runs */
    long total_lines, skipped, answered, refused, not_requests, failed_writes, in_flight, cancelled;
    uint64_t generated_tokens;
    bool input_complete; /* every input line was handled (none left for a rerun) */
    bool reader_failed;
    char reader_error[512];
    double started_at;
    batch_sample *samples;
    int n_samples, samples_capacity;
    char write_error[256];
} batch_job;

typedef struct {
    batch_job *job;
    char *custom_id;
    char request_id[64];
    openai_request request;
    openai_collector collected;
    const char *exit_name;
} batch_item;

/* Writes one whole line (with its newline) in one write(2): a kill never leaves half of it. */
static void write_line(batch_job *job, char *text) {
    if (!text) {
        job->failed_writes++;
        return;
    }
    size_t n = strlen(text);
    text[n] = '\0';
    char *line = realloc(text, n + 2);
    if (!line) {
        free(text);
        job->failed_writes++;
        return;
    }
    line[n] = '\n';
    size_t written = 0;
    while (written < n + 1) {
        ssize_t w = write(job->output_fd, line + written, n + 1 - written);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            snprintf(job->write_error, sizeof job->write_error, "%s: write failed: %s", job->options.output,
                     strerror(errno));
            job->failed_writes++;
            break;
        }
        written += (size_t)w;
    }
    free(line);
}

static void item_free(batch_item *item) {
    free(item->custom_id);
    openai_request_free(&item->request);
    openai_collector_free(&item->collected);
    free(item);
}

/* engine_handler (engine thread): a finished request becomes its output line at once. */
static void item_on_event(void *context, const engine_event *e) {
    batch_item *item = context;
    batch_job *job = item->job;
    bool lost = openai_collector_add(&item->collected, e) != 0;
    if (e->kind != ENGINE_FINISH) return;
    pthread_mutex_lock(&job->lock);
    /* A cancelled request (preemption) or one the failed pipeline dropped is not written: the next
     * run does it again. */
    if (e->finish != ENGINE_FINISH_CANCELLED && e->finish != ENGINE_FINISH_ERROR) {
        int status;
        json_t *body = lost ? NULL
                            : openai_collector_response(&item->collected, &item->request, item->request_id,
                                                        &job->front, item->exit_name, &status);
        if (!body) {
            openai_error error;
            openai_fail(&error, 500, "server_error", NULL, NULL, "out of memory building the answer");
            body = openai_error_json(&error);
            status = 500;
        }
        write_line(job, batch_output_response(item->custom_id, item->request_id, status, body));
        job->answered++;
        job->generated_tokens += (uint64_t)e->generated_tokens;
    } else {
        job->cancelled++;
    }
    job->in_flight--;
    pthread_cond_broadcast(&job->changed);
    pthread_mutex_unlock(&job->lock);
    item_free(item);
}

/* A line that is no request, or a request the server would refuse: its line now. */
static void write_refusal(batch_job *job, const char *custom_id, const char *request_id, const openai_error *e) {
    pthread_mutex_lock(&job->lock);
    write_line(job, batch_output_response(custom_id, request_id, e->status, openai_error_json(e)));
    job->refused++;
    pthread_mutex_unlock(&job->lock);
}

static void write_not_request(batch_job *job, const char *custom_id, long line_number, const char *code,
                              const char *message) {
    pthread_mutex_lock(&job->lock);
    write_line(job, batch_output_error(custom_id, line_number, code, message));
    job->not_requests++;
    pthread_mutex_unlock(&job->lock);
}

/* Waits until fewer than max_in_flight requests run (or the job stops). */
static bool wait_for_room(batch_job *job) {
    pthread_mutex_lock(&job->lock);
    while (job->in_flight >= job->options.max_in_flight && !interrupt_requested()) {
        struct timespec until = clock_realtime_after(0.1);
        pthread_cond_timedwait(&job->changed, &job->lock, &until);
    }
    pthread_mutex_unlock(&job->lock);
    return !interrupt_requested();
}

/* One input line: skip it (done before), refuse it, or submit it. Returns -1 when the engine
 * takes no more requests (stopping). */
static int handle_line(batch_job *job, const char *text, size_t length, long line_number, string_set *seen) {
    char key[64];
    line_key(line_number, key, sizeof key);
    batch_line line;
    char message[512];
    int vocab = job->pipeline->model.config.vocab_size;
    if (batch_line_parse(text, length, &line, message, sizeof message) != BATCH_LINE_OK) {
        if (!set_contains(&job->done_lines, key)) write_not_request(job, line.custom_id, line_number, "invalid_line", message);
        else job->skipped++;
        batch_line_free(&line);
        return 0;
    }
    if (set_add(seen, line.custom_id) == 0) { /* the first line with an id owns it */
        if (!set_contains(&job->done_lines, key)) {
            snprintf(message, sizeof message, "custom_id \"%.200s\" was used by an earlier line", line.custom_id);
            write_not_request(job, line.custom_id, line_number, "duplicate_custom_id", message);
        } else {
            job->skipped++;
        }
        batch_line_free(&line);
        return 0;
    }
    if (set_contains(&job->done_ids, line.custom_id)) {
        job->skipped++;
        batch_line_free(&line);
        return 0;
    }
    batch_item *item = calloc(1, sizeof *item);
    if (!item) {
        batch_line_free(&line);
        return -1;
    }
    item->job = job;
    item->custom_id = line.custom_id;
    line.custom_id = NULL;
    snprintf(item->request_id, sizeof item->request_id, "%s-%ld", line.endpoint == OPENAI_CHAT ? "chatcmpl" : "cmpl",
             line_number);
    openai_error e;
    engine_request request;
    int *tokens = NULL;
    if (openai_parse_object(line.endpoint, line.body, vocab, &item->request, &e) ||
        openai_front_prepare(&job->front, &item->request, &request, &tokens, &item->exit_name, &e)) {
        write_refusal(job, item->custom_id, item->request_id, &e);
        batch_line_free(&line);
        item_free(item);
        return 0;
    }
    batch_line_free(&line);
    if (item->request.stream) item->request.stream = false; /* a batch answer is one body */
    if (!wait_for_room(job)) {
        free(tokens);
        item_free(item);
        return -1;
    }
    pthread_mutex_lock(&job->lock);
    job->in_flight++;
    pthread_mutex_unlock(&job->lock);
    uint64_t id;
    ramp_error err;
    int status = engine_submit(job->pipeline, &request, item_on_event, item, &id, &err);
    free(tokens);
    if (status) {
        pthread_mutex_lock(&job->lock);
        job->in_flight--;
        pthread_mutex_unlock(&job->lock);
        item_free(item);
        return -1; /* stopping or failed: the rest waits for the next run */
    }
    return 0;
}

static void *reader_main(void *context) {
    batch_job *job = context;
    FILE *in = fopen(job->options.input, "rb");
    string_set seen = {0};
    char *line = NULL;
    size_t capacity = 0;
    ssize_t length;
    long number = 0;
    bool stopped = false;
    if (!in) {
        snprintf(job->reader_error, sizeof job->reader_error, "%s: cannot open: %s", job->options.input, strerror(errno));
        job->reader_failed = true;
    }
    while (in && (length = getline(&line, &capacity, in)) >= 0) {
        number++;
        while (length > 0 && (line[length - 1] == '\n' || line[length - 1] == '\r')) length--;
        if (length == 0) continue;
        if ((size_t)length > BATCH_MAX_LINE) {
            char message[128];
            snprintf(message, sizeof message, "the line is %zd bytes, longer than the %u a request may take", length,
                     BATCH_MAX_LINE);
            char key[64];
            line_key(number, key, sizeof key);
            if (!set_contains(&job->done_lines, key)) write_not_request(job, NULL, number, "line_too_long", message);
            continue;
        }
        if (handle_line(job, line, (size_t)length, number, &seen)) {
            stopped = true;
            break;
        }
    }
    if (in && ferror(in)) {
        snprintf(job->reader_error, sizeof job->reader_error, "%s: read error: %s", job->options.input, strerror(errno));
        job->reader_failed = true;
    }
    free(line);
    if (in) fclose(in);
    set_free(&seen);
    /* wait for the last answers, then let the engine loop end */
    pthread_mutex_lock(&job->lock);
    while (job->in_flight > 0 && !interrupt_requested()) {
        struct timespec until = clock_realtime_after(1.0);
        pthread_cond_timedwait(&job->changed, &job->lock, &until);
    }
    job->input_complete = in && !stopped && !job->reader_failed;
    bool interrupted = interrupt_requested();
    pthread_mutex_unlock(&job->lock);
    /* After a signal the engine drains within --grace on its own; otherwise it is done. */
    if (!interrupted) engine_stop(job->pipeline, 0.0);
    return NULL;
}

/* ---- resume: what the output already holds ----------------------------------------------------- */

/* Reads the output of earlier runs: the ids and lines answered. A last line without its newline
 * (a crash in the middle of a write, by an older version or another tool) is cut off. */
static int scan_output(batch_job *job, ramp_error *err) {
    FILE *f = fopen(job->options.output, "rb");
    if (!f) {
        if (errno == ENOENT) return 0;
        return ramp_fail(err, "%s: cannot open: %s", job->options.output, strerror(errno));
    }
    char *line = NULL;
    size_t capacity = 0;
    ssize_t length;
    long good_end = 0, number = 0, torn = 0;
    while ((length = getline(&line, &capacity, f)) >= 0) {
        number++;
        bool complete = length > 0 && line[length - 1] == '\n';
        batch_done_line done;
        if (!complete || !batch_output_parse(line, (size_t)length - (complete ? 1 : 0), &done)) {
            if (!complete) {
                torn = number;
                break;
            }
            fprintf(stderr, "ramp batch: warning: %s line %ld is not an output line; ignored\n", job->options.output,
                    number);
            good_end += length;
            continue;
        }
        char key[64];
        int added = 0;
        if (done.line_number >= 0) {
            line_key(done.line_number, key, sizeof key);
            added = set_add(&job->done_lines, key);
        } else if (done.custom_id) {
            added = set_add(&job->done_ids, done.custom_id);
        }
        free(done.custom_id);
        if (added < 0) {
            free(line);
            fclose(f);
            return ramp_fail(err, "out of memory reading %s", job->options.output);
        }
        good_end += length;
    }
    bool read_error = ferror(f);
    free(line);
    fclose(f);
    if (read_error) return ramp_fail(err, "%s: read error", job->options.output);
    if (torn) {
        if (truncate(job->options.output, good_end))
            return ramp_fail(err, "%s: cannot cut the torn line %ld: %s", job->options.output, torn, strerror(errno));
        fprintf(stderr, "ramp batch: %s: line %ld was torn by an earlier crash; dropped, its request runs again\n",
                job->options.output, torn);
    }
    return 0;
}

/* Lines with something on them (blank lines are no requests), for the progress total. */
static long count_lines(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    long lines = 0;
    bool filled = false;
    int c;
    while ((c = getc(f)) != EOF) {
        if (c == '\n') {
            lines += filled;
            filled = false;
        } else if (c != '\r' && c != ' ' && c != '\t') {
            filled = true;
        }
    }
    lines += filled;
    fclose(f);
    return lines;
}

/* ---- progress and the time series --------------------------------------------------------------- */

static void take_sample(batch_job *job) {
    pipeline *p = job->pipeline;
    if (job->n_samples == job->samples_capacity) {
        int capacity = job->samples_capacity ? 2 * job->samples_capacity : 256;
        batch_sample *grown = realloc(job->samples, (size_t)capacity * sizeof *grown);
        if (!grown) return;
        job->samples = grown;
        job->samples_capacity = capacity;
    }
    batch_sample *s = &job->samples[job->n_samples++];
    memset(s, 0, sizeof *s);
    s->t = clock_seconds() - job->started_at;
    pthread_mutex_lock(&job->lock);
    s->done = job->answered + job->refused + job->not_requests;
    s->generated_tokens = job->generated_tokens;
    pthread_mutex_unlock(&job->lock);
    pthread_mutex_lock(&p->inbox.lock);
    s->layers_executed = p->stats.layers_executed;
    s->layer_evaluations_possible = p->stats.layer_evaluations_possible;
    for (int i = 0; i < p->n_stages && i < 64; i++) s->busy[i] = p->stages[i].busy_seconds;
    pthread_mutex_unlock(&p->inbox.lock);
}

static void print_progress(batch_job *job, bool terminal, bool last) {
    if (!job->n_samples) return;
    const batch_sample *s = &job->samples[job->n_samples - 1];
    long todo = job->total_lines - job->skipped;
    double rate = s->t > 0 ? s->done / s->t : 0, tokens = s->t > 0 ? s->generated_tokens / s->t : 0;
    double eta = rate > 0 && todo > s->done ? (todo - s->done) / rate : 0;
    double skipped = s->layer_evaluations_possible
                         ? 100.0 * (1.0 - (double)s->layers_executed / (double)s->layer_evaluations_possible)
                         : 0.0;
    char bar[32];
    int filled = todo > 0 ? (int)(20.0 * s->done / todo) : 20;
    if (filled > 20) filled = 20;
    for (int i = 0; i < 20; i++) bar[i] = i < filled ? '#' : '.';
    bar[20] = '\0';
    fprintf(stderr, "%sramp batch: [%s] %ld/%ld requests, %.1f req/s, %.0f tokens/s, ETA %.0f s, layers skipped %.1f%%%s",
            terminal ? "\r" : "", bar, s->done, todo, rate, tokens, eta, skipped, terminal && !last ? "" : "\n");
    fflush(stderr);
}

typedef struct {
    batch_job *job;
    bool stop;
    pthread_mutex_t lock;
    pthread_cond_t changed;
} progress_thread;

static void *progress_main(void *context) {
    progress_thread *t = context;
    batch_job *job = t->job;
    bool terminal = isatty(STDERR_FILENO);
    double interval = terminal ? 0.5 : job->options.progress_seconds;
    double next_print = clock_seconds() + interval;
    pthread_mutex_lock(&t->lock);
    while (!t->stop) {
        struct timespec until = clock_realtime_after(SAMPLE_SECONDS);
        pthread_cond_timedwait(&t->changed, &t->lock, &until);
        if (t->stop) break;
        take_sample(job);
        if (clock_seconds() >= next_print) {
            print_progress(job, terminal, false);
            next_print = clock_seconds() + interval;
        }
    }
    pthread_mutex_unlock(&t->lock);
    take_sample(job);
    print_progress(job, terminal, true);
    return NULL;
}

/* The run's time series for --metrics-json: per interval, requests done, tokens, per-stage busy
 * and idle seconds, layer evaluations skipped. */
static json_t *time_series(const batch_job *job) {
    json_t *series = json_array();
    const int P = job->pipeline->n_stages;
    for (int i = 0; i < job->n_samples; i++) {
        const batch_sample *s = &job->samples[i], *previous = i ? &job->samples[i - 1] : NULL;
        double dt = previous ? s->t - previous->t : s->t;
        json_t *busy = json_array(), *idle = json_array();
        for (int k = 0; k < P && k < 64; k++) {
            double b = s->busy[k] - (previous ? previous->busy[k] : 0);
            if (b < 0) b = 0;
            json_array_append_new(busy, json_real(b));
            json_array_append_new(idle, json_real(dt > b ? dt - b : 0));
        }
        json_array_append_new(series, json_pack("{s:f, s:I, s:I, s:I, s:I, s:o, s:o}", "t", s->t, "requests_done",
                                                (json_int_t)s->done, "generated_tokens", (json_int_t)s->generated_tokens,
                                                "layer_evaluations", (json_int_t)s->layers_executed,
                                                "layer_evaluations_skipped",
                                                (json_int_t)(s->layer_evaluations_possible - s->layers_executed),
                                                "stage_busy_seconds", busy, "stage_idle_seconds", idle));
    }
    return series;
}

/* ---- the command ------------------------------------------------------------------------------- */

static void batch_usage(FILE *out) {
    fprintf(out,
            "usage: ramp batch -m MODEL -i REQUESTS.jsonl -o RESULTS.jsonl [--exit svm:FILE|conf:FILE]\n"
            "                  [--exit-default none|svm|conf] [--metrics-json FILE] [--progress-seconds S]\n"
            "       mpirun -np N ramp batch ... / srun --mpi=pmix ramp batch ...   (rank 0 reads and writes)\n\n"
            "Runs every request of REQUESTS.jsonl (OpenAI Batch API lines: {\"custom_id\", \"method\": \"POST\",\n"
            "\"url\": \"/v1/completions\" | \"/v1/chat/completions\", \"body\": {...}}, or the shorthand\n"
            "{\"custom_id\", \"prompt\", ...}) with continuous batching and appends one line per request to\n"
            "RESULTS.jsonl as it completes: {\"id\", \"custom_id\", \"response\": {\"status_code\", \"request_id\",\n"
            "\"body\"}, \"error\"}, the body exactly what `ramp serve` answers. Bad lines get an error line; the\n"
            "job goes on. Rerunning the same command resumes: every custom_id already in RESULTS.jsonl is\n"
            "skipped. SIGTERM/SIGUSR1 stop reading, finish the requests in flight within --grace seconds and\n"
            "exit %d (requeue me); an interrupted request runs again on resume.\n\n"
            "  -m, --model FILE         GGUF file or llama2.c checkpoint (--tokenizer FILE for the latter)\n"
            "  -i, --input FILE         requests, one JSON object per line\n"
            "  -o, --output FILE        results (appended; created when missing)\n"
            "      --exit svm:FILE      load an AdaInfer classifier; --exit conf:FILE LITE thresholds\n"
            "      --exit-default P     the exit policy of requests that name none (default none)\n"
            "      --exit-layers L,..   exit points (default: the policies')\n"
            "      --progress-seconds S between progress lines when stderr is not a terminal (default 5)\n"
            "      --max-in-flight N    requests submitted at once (default 4 x --max-sequences)\n"
            "      --metrics-json FILE  figures and a time series of the run\n"
            "  -h, --help               this text\n\n%s",
            BATCH_EXIT_PREEMPTED, pipeline_flags_help);
}

static int open_output(batch_job *job, ramp_error *err) {
    job->output_fd = open(job->options.output, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (job->output_fd < 0) return ramp_fail(err, "%s: cannot open for writing: %s", job->options.output, strerror(errno));
    return 0;
}

int command_batch(int argc, char **argv, transport *mpi) {
    pipeline_options options;
    pipeline_options_default(&options);
    batch_options bo = {.progress_seconds = 5.0};
    const char *exit_specs[2], *exit_default = "none";
    int n_exit_specs = 0, max_in_flight = 0;
    ramp_error err;
    enum { TOKENIZER = 1000, EXIT, EXIT_DEFAULT, EXIT_LAYERS, PROGRESS, MAX_IN_FLIGHT, PIPELINE_FLAG };
    static const struct option long_options[] = {
        {"model", required_argument, 0, 'm'},           {"tokenizer", required_argument, 0, TOKENIZER},
        {"input", required_argument, 0, 'i'},           {"output", required_argument, 0, 'o'},
        {"exit", required_argument, 0, EXIT},           {"exit-default", required_argument, 0, EXIT_DEFAULT},
        {"exit-layers", required_argument, 0, EXIT_LAYERS}, {"progress-seconds", required_argument, 0, PROGRESS},
        {"max-in-flight", required_argument, 0, MAX_IN_FLIGHT}, {"grace", required_argument, 0, PIPELINE_FLAG},
        {"help", no_argument, 0, 'h'},                  CLI_PIPELINE_OPTIONS(PIPELINE_FLAG),
        {0, 0, 0, 0},
    };
    int c, option_index;
    optind = 1;
    while ((c = getopt_long(argc, argv, "m:i:o:h", long_options, &option_index)) != -1) {
        int bad = 0;
        float seconds;
        switch (c) {
        case 'm': options.model_path = optarg; break;
        case TOKENIZER: options.tokenizer_path = optarg; break;
        case 'i': bo.input = optarg; break;
        case 'o': bo.output = optarg; break;
        case EXIT:
            if (n_exit_specs == 2) bad = -1, cli_error(&err, "at most two --exit (one svm:FILE, one conf:FILE)");
            else exit_specs[n_exit_specs++] = optarg;
            break;
        case EXIT_DEFAULT:
            exit_default = optarg;
            if (strcmp(optarg, "none") && strcmp(optarg, "svm") && strcmp(optarg, "conf"))
                bad = -1, cli_error(&err, "--exit-default expects none, svm or conf, got '%s'", optarg);
            break;
        case EXIT_LAYERS: options.exit_layers = optarg; break;
        case PROGRESS:
            bad = cli_parse_float("--progress-seconds", optarg, &seconds, &err);
            if (!bad && !(seconds > 0)) bad = -1, cli_error(&err, "--progress-seconds must be > 0");
            bo.progress_seconds = seconds;
            break;
        case MAX_IN_FLIGHT: bad = cli_parse_int("--max-in-flight", optarg, 1, 1 << 20, &max_in_flight, &err); break;
        case PIPELINE_FLAG:
            bad = pipeline_parse_flag(&options, long_options[option_index].name, optarg, &err) < 0;
            break;
        case 'h': batch_usage(stdout); return 0;
        default: batch_usage(stderr); return 2;
        }
        if (bad) return cli_usage_error("batch", &err);
    }
    if (optind < argc) return cli_usage_error("batch", cli_error(&err, "unexpected argument '%s'", argv[optind]));
    if (!options.model_path || !bo.input || !bo.output)
        return cli_usage_error("batch", cli_error(&err, "-m MODEL, -i REQUESTS.jsonl and -o RESULTS.jsonl are required"));
    bo.metrics_json = options.metrics_json;
    options.metrics_json = NULL; /* written here, with the time series */
    bo.max_in_flight = max_in_flight ? max_in_flight : 4 * options.max_sequences;

    batch_job job = {.options = bo, .output_fd = -1};
    pthread_mutex_init(&job.lock, NULL);
    pthread_cond_init(&job.changed, NULL);
    exit_policy svm = {0}, conf = {0};
    char exit_layers_text[512];
    pipeline p;
    memset(&p, 0, sizeof p);
    job.pipeline = &p;
    int status = 0;
    struct stat st;
    errno = 0;
    if (stat(bo.input, &st) || !S_ISREG(st.st_mode) || access(bo.input, R_OK)) {
        fprintf(stderr, "ramp batch: %s: %s\n", bo.input,
                errno                     ? strerror(errno)
                : S_ISDIR(st.st_mode)     ? "is a directory, expected a JSONL file of requests"
                                          : "not a regular file (expected a JSONL file of requests)");
        status = 1;
        goto done;
    }
    job.total_lines = count_lines(bo.input);
    if (scan_output(&job, &err) || open_output(&job, &err) ||
        openai_load_exit_policies(exit_specs, n_exit_specs, &svm, &conf, &options, exit_layers_text,
                                  sizeof exit_layers_text, &err)) {
        fprintf(stderr, "ramp batch: %s\n", err.message);
        status = 1;
        goto done;
    }
    job.front = (openai_front){.pipeline = &p, .svm = svm.kind ? &svm : NULL, .conf = conf.kind ? &conf : NULL,
                               .created = (long)time(NULL)};
    job.front.exit_default = !strcmp(exit_default, "svm")    ? OPENAI_EXIT_SVM
                             : !strcmp(exit_default, "conf") ? OPENAI_EXIT_CONF
                                                             : OPENAI_EXIT_NONE;
    if ((job.front.exit_default == OPENAI_EXIT_SVM && !job.front.svm) ||
        (job.front.exit_default == OPENAI_EXIT_CONF && !job.front.conf)) {
        fprintf(stderr, "ramp batch: --exit-default %s needs --exit %s:FILE\n", exit_default, exit_default);
        status = 2;
        goto done;
    }
    const char *base = strrchr(options.model_path, '/');
    job.front.model_id = base ? base + 1 : options.model_path;
    job.front.chat_template = openai_model_chat_template(options.model_path);
    options.mpi = mpi;
    if (pipeline_open(&p, &options, &err) ||
        openai_front_check_policies(&job.front, exit_specs, n_exit_specs, &err)) {
        status = pipeline_fail(&p, "batch", &err);
        goto done;
    }
    if (job.done_ids.count || job.done_lines.count)
        fprintf(stderr, "ramp batch: resuming: %s already answers %zu requests and %zu bad lines\n", bo.output,
                job.done_ids.count, job.done_lines.count);
    job.started_at = clock_seconds();
    progress_thread progress = {.job = &job};
    pthread_mutex_init(&progress.lock, NULL);
    pthread_cond_init(&progress.changed, NULL);
    pthread_t reader, progress_id;
    pthread_create(&progress_id, NULL, progress_main, &progress);
    pthread_create(&reader, NULL, reader_main, &job);
    int run = engine_run(&p, ENGINE_UNTIL_STOPPED, &err);
    if (run) engine_stop(&p, 0.0); /* the reader sees the engine refuse and ends */
    pthread_join(reader, NULL);
    pthread_mutex_lock(&progress.lock);
    progress.stop = true;
    pthread_cond_broadcast(&progress.changed);
    pthread_mutex_unlock(&progress.lock);
    pthread_join(progress_id, NULL);
    pthread_mutex_destroy(&progress.lock);
    pthread_cond_destroy(&progress.changed);
    if (run) {
        status = pipeline_fail(&p, "batch", &err);
        goto done;
    }
    if (fsync(job.output_fd) && errno != EINVAL) snprintf(job.write_error, sizeof job.write_error, "%s: %s", bo.output, strerror(errno));
    bool preempted = !job.input_complete || job.cancelled > 0;
    double seconds = clock_seconds() - job.started_at;
    fprintf(stderr,
            "ramp batch: %ld lines: %ld answered, %ld refused (bad request), %ld not requests, %ld already in %s; "
            "%llu generated tokens in %.1f s%s\n",
            job.total_lines, job.answered, job.refused, job.not_requests, job.skipped, bo.output,
            (unsigned long long)job.generated_tokens, seconds,
            preempted ? "; stopped early: rerun the same command to resume" : "");
    if (pipeline_finish(&p, &err)) {
        status = pipeline_fail(&p, "batch", &err);
        goto done;
    }
    if (bo.metrics_json) {
        json_t *extra = json_pack("{s:I, s:I, s:I, s:I, s:I, s:f, s:b, s:o}", "lines", (json_int_t)job.total_lines,
                                  "answered", (json_int_t)job.answered, "refused", (json_int_t)job.refused,
                                  "not_requests", (json_int_t)job.not_requests, "skipped", (json_int_t)job.skipped,
                                  "seconds", seconds, "preempted", preempted, "time_series", time_series(&job));
        p.metrics_extra = extra;
        if (metrics_write_json(&p, bo.metrics_json, &err)) {
            fprintf(stderr, "ramp batch: %s\n", err.message);
            status = 1;
        }
        p.metrics_extra = NULL;
        json_decref(extra);
    }
    if (job.reader_failed) {
        fprintf(stderr, "ramp batch: %s\n", job.reader_error);
        status = 1;
    } else if (job.failed_writes) {
        fprintf(stderr, "ramp batch: %ld output lines could not be written: %s\n", job.failed_writes,
                job.write_error[0] ? job.write_error : "out of memory");
        status = 1;
    } else if (preempted) {
        status = BATCH_EXIT_PREEMPTED;
    }
done:
    if (job.output_fd >= 0) close(job.output_fd);
    pipeline_close(&p);
    exit_policy_free(&svm);
    exit_policy_free(&conf);
    set_free(&job.done_ids);
    set_free(&job.done_lines);
    free(job.samples);
    pthread_mutex_destroy(&job.lock);
    pthread_cond_destroy(&job.changed);
    return status;
}
