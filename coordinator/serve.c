/* serve.c: `ramp serve`: an OpenAI-compatible HTTP endpoint on the pipeline.
 *
 * libmicrohttpd runs one thread per connection; each turns its request into an engine request
 * (engine.h) and waits for that request's events, which the engine loop (this process's main
 * thread, the only one that talks to the other ranks) delivers into the connection's `http_job`.
 * Streaming answers are Server-Sent Events written as the tokens come; a client that goes away
 * cancels its request, which frees its KV slot on every rank.
 *
 * Routes: POST /v1/completions, POST /v1/chat/completions, GET /v1/models, GET /health (503
 * while loading or stopping, 200 when ready), GET /metrics (Prometheus text).
 */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <microhttpd.h>
#include <arpa/inet.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "chat_template.h"
#include "cli.h"
#include "clock.h"
#include "commands.h"
#include "engine.h"
#include "gguf.h"
#include "interrupt.h"
#include "metrics.h"
#include "openai.h"
#include "openai_engine.h"
#include "pipeline.h"

#define DEFAULT_MAX_BODY (1 << 20)
#define DEFAULT_MAX_QUEUE 64

/* HTTP statuses counted for /metrics. */
static const int counted_statuses[] = {200, 400, 401, 404, 405, 413, 429, 500, 503};
#define N_COUNTED (sizeof counted_statuses / sizeof counted_statuses[0])

typedef struct {
    const char *host;
    int port;
    const char *api_key;
    const char *model_name;
    const char *exit_default; /* none, svm or conf */
    int max_queue;
    size_t max_body;
} serve_options;

/* The server: what every connection thread reads. Fixed once ready, apart from the counters. */
typedef struct {
    serve_options options;
    pipeline *pipeline;
    atomic_bool ready;         /* the pipeline is open and the engine runs */
    atomic_bool stopping;
    openai_front front;        /* what serve shares with batch: prompt rendering, exits, answers */
    char model_id[256];
    pthread_mutex_t counters_lock;
    uint64_t responses[N_COUNTED + 1]; /* per counted status, then "other" */
    atomic_ullong next_request_number;
    atomic_int open_requests;  /* received and not yet completely sent (MHD's completion callback) */
} server;

/* ---- one request's life: filled by the engine thread, read by the connection thread ---------- */

typedef struct {
    pthread_mutex_t lock;
    pthread_cond_t changed;
    int references;           /* the connection and, until its finish event, the engine */
    openai_request request;
    char id[64];
    uint64_t engine_id;
    struct MHD_Connection *connection; /* streams: to notice a client that went away */
    openai_collector collected; /* the events so far */
    const char *exit_policy;
    int streamed;             /* tokens already written as SSE chunks */
    bool stream_closed;       /* final chunk and [DONE] written */
    char *pending;            /* SSE bytes formatted but not yet handed to MHD */
    size_t pending_length, pending_offset;
    server *server;
} http_job;

static void job_release(http_job *job) {
    pthread_mutex_lock(&job->lock);
    bool last = --job->references == 0;
    pthread_mutex_unlock(&job->lock);
    if (!last) return;
    openai_collector_free(&job->collected);
    free(job->pending);
    openai_request_free(&job->request);
    pthread_mutex_destroy(&job->lock);
    pthread_cond_destroy(&job->changed);
    free(job);
}

/* engine_handler, on the engine's thread: record the event, wake the connection. */
static void job_on_event(void *context, const engine_event *e) {
    http_job *job = context;
    pthread_mutex_lock(&job->lock);
    if (openai_collector_add(&job->collected, e) && e->kind == ENGINE_FINISH) {
        job->collected.finish = ENGINE_FINISH_ERROR; /* out of memory: say so rather than cut the text */
        snprintf(job->collected.error, sizeof job->collected.error, "out of memory collecting the answer");
    }
    pthread_cond_broadcast(&job->changed);
    pthread_mutex_unlock(&job->lock);
    if (e->kind == ENGINE_FINISH) job_release(job); /* the engine's reference */
}

/* ---- HTTP plumbing ------------------------------------------------------------------------------ */

typedef struct {
    char *body;
    size_t length, capacity;
    bool too_large;
    bool routed;
} connection_state;

static void count_response(server *s, int status) {
    size_t i = 0;
    while (i < N_COUNTED && counted_statuses[i] != status) i++;
    pthread_mutex_lock(&s->counters_lock);
    s->responses[i]++;
    pthread_mutex_unlock(&s->counters_lock);
}

static enum MHD_Result queue_text(server *s, struct MHD_Connection *c, int status, const char *content_type,
                                  char *text, size_t length, const char *retry_after) {
    struct MHD_Response *r = MHD_create_response_from_buffer(length, text, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(text);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", content_type);
    if (retry_after) MHD_add_response_header(r, "Retry-After", retry_after);
    enum MHD_Result result = MHD_queue_response(c, (unsigned)status, r);
    MHD_destroy_response(r);
    count_response(s, status);
    return result;
}

static enum MHD_Result queue_json(server *s, struct MHD_Connection *c, int status, json_t *body,
                                  const char *retry_after) {
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    if (!text) text = strdup("{\"error\":{\"message\":\"out of memory\",\"type\":\"server_error\",\"param\":null,\"code\":null}}");
    return queue_text(s, c, status, "application/json", text, strlen(text), retry_after);
}

static enum MHD_Result queue_error(server *s, struct MHD_Connection *c, const openai_error *e) {
    return queue_json(s, c, e->status, openai_error_json(e), e->status == 429 ? "1" : NULL);
}

static enum MHD_Result fail_with(server *s, struct MHD_Connection *c, int status, const char *type, const char *param,
                                 const char *code, const char *message) {
    openai_error e;
    openai_fail(&e, status, type, param, code, "%s", message);
    return queue_error(s, c, &e);
}

/* Constant-time comparison of the presented key with the configured one. */
static bool key_matches(const char *presented, const char *expected) {
    size_t n = strlen(expected), m = presented ? strlen(presented) : 0;
    unsigned char difference = (unsigned char)(n != m);
    for (size_t i = 0; i < n; i++) difference |= (unsigned char)(expected[i] ^ (i < m ? presented[i] : 0));
    return difference == 0;
}

static bool authorized(server *s, struct MHD_Connection *c) {
    if (!s->options.api_key) return true;
    const char *header = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    const char *key = header && !strncasecmp(header, "Bearer ", 7) ? header + 7 : NULL;
    return key_matches(key ? key : "", s->options.api_key) && key;
}

/* A client that closed its end while we wait: its request is cancelled. */
static bool client_gone(struct MHD_Connection *c) {
    const union MHD_ConnectionInfo *info = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (!info) return false;
    struct pollfd pfd = {.fd = info->connect_fd, .events = POLLIN};
    if (poll(&pfd, 1, 0) <= 0) return false;
    if (pfd.revents & (POLLHUP | POLLERR | POLLNVAL)) return true;
    char byte;
    ssize_t n = recv(info->connect_fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    return n == 0;
}

/* Parses, checks limits and submits. On success the job holds two references. */
static int start_job(server *s, openai_endpoint endpoint, const connection_state *cs, http_job **out,
                     openai_error *e) {
    pipeline *p = s->pipeline;
    http_job *job = calloc(1, sizeof *job);
    if (!job) return openai_fail(e, 500, "server_error", NULL, NULL, "out of memory");
    pthread_mutex_init(&job->lock, NULL);
    pthread_cond_init(&job->changed, NULL);
    job->references = 1;
    job->server = s;
    if (openai_parse_request(endpoint, cs->body ? cs->body : "", cs->length, p->model.config.vocab_size, &job->request,
                             e)) {
        job_release(job);
        return -1;
    }
    engine_request er;
    int *tokens = NULL;
    if (openai_front_prepare(&s->front, &job->request, &er, &tokens, &job->exit_policy, e)) {
        job_release(job);
        return -1;
    }
    if (engine_load_figures(p).queued >= s->options.max_queue) {
        free(tokens);
        job_release(job);
        return openai_fail(e, 429, "rate_limit_error", NULL, "queue_full",
                           "the server's queue is full (%d requests wait); retry shortly", s->options.max_queue);
    }
    snprintf(job->id, sizeof job->id, "%s-%llu-%llx", endpoint == OPENAI_CHAT ? "chatcmpl" : "cmpl",
             (unsigned long long)atomic_fetch_add(&s->next_request_number, 1), (unsigned long long)s->front.created);
    job->references = 2; /* the engine's is released by its finish event */
    ramp_error err;
    int status = engine_submit(p, &er, job_on_event, job, &job->engine_id, &err);
    free(tokens);
    if (status) {
        job->references = 1;
        job_release(job);
        return openai_fail(e, 503, "server_error", NULL, NULL, "%s", err.message);
    }
    *out = job;
    return 0;
}

/* Waits (bounded slices) until the job finishes; cancels it when the client goes away. */
static void wait_finished(http_job *job, struct MHD_Connection *c) {
    bool cancelled = false;
    pthread_mutex_lock(&job->lock);
    while (!job->collected.finished) {
        struct timespec until = clock_realtime_after(0.2);
        pthread_cond_timedwait(&job->changed, &job->lock, &until);
        if (!job->collected.finished && !cancelled && client_gone(c)) {
            engine_cancel(job->server->pipeline, job->engine_id);
            cancelled = true;
        }
    }
    pthread_mutex_unlock(&job->lock);
}

static enum MHD_Result answer_whole(server *s, struct MHD_Connection *c, http_job *job) {
    wait_finished(job, c);
    int status;
    json_t *body = openai_collector_response(&job->collected, &job->request, job->id, &s->front, job->exit_policy,
                                             &status);
    job_release(job);
    return queue_json(s, c, status, body, NULL);
}

/* Appends one SSE event ("data: JSON\n\n") to the job's pending bytes. */
static void pending_append(http_job *job, const char *text, size_t n) {
    size_t needed = job->pending_length + n;
    char *grown = realloc(job->pending, needed + 1);
    if (!grown) return;
    job->pending = grown;
    memcpy(job->pending + job->pending_length, text, n);
    job->pending_length = needed;
}

static void pending_event(http_job *job, json_t *chunk) {
    char *json = chunk ? json_dumps(chunk, JSON_COMPACT) : NULL;
    json_decref(chunk);
    if (!json) return;
    pending_append(job, "data: ", 6);
    pending_append(job, json, strlen(json));
    pending_append(job, "\n\n", 2);
    free(json);
}

/* Formats what arrived since the last call (lock held). */
static void format_stream(http_job *job) {
    const openai_collector *c = &job->collected;
    server *s = job->server;
    openai_result r = {.id = job->id, .model = s->front.model_id, .created = s->front.created,
                       .exit_policy = job->exit_policy};
    openai_token token;
    for (; job->streamed < c->n_tokens; job->streamed++) {
        const collected_token *t = &c->tokens[job->streamed];
        token = (openai_token){t->token, t->text, t->text_length, t->logprob, t->exit_layer};
        pending_event(job, openai_stream_chunk_json(&job->request, &r, &token, job->streamed == 0, false));
    }
    if (!c->finished || job->stream_closed) return;
    if (c->finish == ENGINE_FINISH_ERROR) {
        openai_error e;
        openai_fail(&e, 500, "server_error", NULL, NULL, "%s", c->error[0] ? c->error : "the pipeline failed");
        pending_event(job, openai_error_json(&e));
    } else {
        if (c->tail_length) { /* text held back until the end (an unfinished stop-string prefix) */
            token = (openai_token){-1, c->tail_text, c->tail_length, 0.0f, c->total_layers};
            pending_event(job, openai_stream_chunk_json(&job->request, &r, &token, c->n_tokens == 0, false));
        }
        r.finish_reason = engine_finish_name(c->finish);
        r.prompt_tokens = c->prompt_tokens;
        r.completion_tokens = c->completion_tokens;
        r.total_layers = c->total_layers;
        r.layers_executed = c->layers_executed;
        r.n_tokens = c->n_tokens;
        pending_event(job, openai_stream_chunk_json(&job->request, &r, NULL, c->n_tokens == 0 && !c->tail_length, true));
    }
    pending_append(job, "data: [DONE]\n\n", 14);
    job->stream_closed = true;
}

/* MHD content reader: blocks (in the connection's own thread) until bytes are ready. */
static ssize_t stream_reader(void *context, uint64_t position, char *buffer, size_t max) {
    (void)position;
    http_job *job = context;
    pthread_mutex_lock(&job->lock);
    for (;;) {
        format_stream(job);
        if (job->pending_offset < job->pending_length) break;
        if (job->stream_closed) {
            pthread_mutex_unlock(&job->lock);
            return MHD_CONTENT_READER_END_OF_STREAM;
        }
        struct timespec until = clock_realtime_after(0.2);
        pthread_cond_timedwait(&job->changed, &job->lock, &until);
        if (!job->collected.finished && job->connection && client_gone(job->connection)) {
            pthread_mutex_unlock(&job->lock);
            engine_cancel(job->server->pipeline, job->engine_id); /* stop generating for nobody */
            return MHD_CONTENT_READER_END_WITH_ERROR;
        }
    }
    size_t n = job->pending_length - job->pending_offset;
    if (n > max) n = max;
    memcpy(buffer, job->pending + job->pending_offset, n);
    job->pending_offset += n;
    if (job->pending_offset == job->pending_length) job->pending_offset = job->pending_length = 0;
    pthread_mutex_unlock(&job->lock);
    return (ssize_t)n;
}

/* MHD frees the stream: the response ended or the client went away (then cancel). */
static void stream_free(void *context) {
    http_job *job = context;
    pthread_mutex_lock(&job->lock);
    bool open = !job->collected.finished;
    pthread_mutex_unlock(&job->lock);
    if (open) engine_cancel(job->server->pipeline, job->engine_id);
    job_release(job);
}

static enum MHD_Result answer_stream(server *s, struct MHD_Connection *c, http_job *job) {
    job->connection = c;
    struct MHD_Response *r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, stream_reader, job, stream_free);
    if (!r) {
        engine_cancel(s->pipeline, job->engine_id);
        job_release(job);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", "text/event-stream");
    MHD_add_response_header(r, "Cache-Control", "no-cache");
    enum MHD_Result result = MHD_queue_response(c, MHD_HTTP_OK, r);
    MHD_destroy_response(r);
    count_response(s, 200);
    return result;
}

static enum MHD_Result completion(server *s, struct MHD_Connection *c, openai_endpoint endpoint,
                                  const connection_state *cs) {
    if (!atomic_load(&s->ready) || atomic_load(&s->stopping))
        return fail_with(s, c, 503, "server_error", NULL, NULL,
                         atomic_load(&s->stopping) ? "the server is shutting down" : "the model is still loading");
    if (!authorized(s, c))
        return fail_with(s, c, 401, "authentication_error", NULL, "invalid_api_key",
                         "Incorrect or missing API key: send it as 'Authorization: Bearer KEY'");
    if (cs->too_large) {
        char message[128];
        snprintf(message, sizeof message, "the request body exceeds the limit of %zu bytes", s->options.max_body);
        return fail_with(s, c, 413, "invalid_request_error", NULL, "request_too_large", message);
    }
    http_job *job = NULL;
    openai_error e;
    if (start_job(s, endpoint, cs, &job, &e)) return queue_error(s, c, &e);
    return job->request.stream ? answer_stream(s, c, job) : answer_whole(s, c, job);
}

/* ---- GET routes ------------------------------------------------------------------------------- */

static enum MHD_Result health(server *s, struct MHD_Connection *c) {
    bool ready = atomic_load(&s->ready) && !atomic_load(&s->stopping);
    const char *state = ready ? "ok" : atomic_load(&s->stopping) ? "stopping" : "loading";
    return queue_json(s, c, ready ? 200 : 503, json_pack("{s:s}", "status", state), NULL);
}

static enum MHD_Result models(server *s, struct MHD_Connection *c) {
    if (!authorized(s, c))
        return fail_with(s, c, 401, "authentication_error", NULL, "invalid_api_key", "Incorrect or missing API key");
    if (!atomic_load(&s->ready)) return fail_with(s, c, 503, "server_error", NULL, NULL, "the model is still loading");
    pipeline *p = s->pipeline;
    json_t *exits = json_array();
    json_array_append_new(exits, json_string("none"));
    if (s->front.svm) json_array_append_new(exits, json_string("svm"));
    if (s->front.conf) json_array_append_new(exits, json_string("conf"));
    json_t *model = json_pack("{s:s, s:s, s:I, s:s, s:{s:s, s:i, s:i, s:i, s:o}}", "id", s->model_id, "object", "model",
                              "created", (json_int_t)s->front.created, "owned_by", "ramp", "ramp", "chat_template",
                              chat_template_name(s->front.chat_template), "context_length", p->options.context, "layers",
                              p->model.config.n_layers, "stages", p->n_stages, "exit_policies", exits);
    return queue_json(s, c, 200, json_pack("{s:s, s:[o]}", "object", "list", "data", model), NULL);
}

static enum MHD_Result prometheus(server *s, struct MHD_Connection *c) {
    char *text = NULL;
    size_t length = 0, capacity = 0;
    int status = metrics_appendf(&text, &length, &capacity,
                                 "# HELP ramp_http_responses_total HTTP responses by status.\n"
                                 "# TYPE ramp_http_responses_total counter\n");
    pthread_mutex_lock(&s->counters_lock);
    uint64_t responses[N_COUNTED + 1];
    memcpy(responses, s->responses, sizeof responses);
    pthread_mutex_unlock(&s->counters_lock);
    for (size_t i = 0; i <= N_COUNTED && !status; i++) {
        char code[16];
        if (i < N_COUNTED) snprintf(code, sizeof code, "%d", counted_statuses[i]);
        else snprintf(code, sizeof code, "other");
        status = metrics_appendf(&text, &length, &capacity, "ramp_http_responses_total{code=\"%s\"} %llu\n", code,
                                 (unsigned long long)responses[i]);
    }
    if (!status && atomic_load(&s->ready)) status = metrics_prometheus(s->pipeline, &text, &length, &capacity);
    if (status) {
        free(text);
        return fail_with(s, c, 500, "server_error", NULL, NULL, "out of memory");
    }
    return queue_text(s, c, 200, "text/plain; version=0.0.4", text, length, NULL);
}

/* ---- the MHD access handler ---------------------------------------------------------------- */

static enum MHD_Result on_request(void *context, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_data_size,
                                  void **connection_context) {
    (void)version;
    server *s = context;
    connection_state *cs = *connection_context;
    if (!cs) { /* first call: headers only */
        cs = calloc(1, sizeof *cs);
        if (!cs) return MHD_NO;
        *connection_context = cs;
        atomic_fetch_add(&s->open_requests, 1);
        const char *length = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
        if (length && strtoull(length, NULL, 10) > s->options.max_body) cs->too_large = true;
        return MHD_YES;
    }
    if (*upload_data_size > 0) { /* a piece of the body */
        if (!cs->too_large && cs->length + *upload_data_size > s->options.max_body) cs->too_large = true;
        if (!cs->too_large) {
            if (cs->length + *upload_data_size + 1 > cs->capacity) {
                size_t capacity = cs->capacity ? 2 * cs->capacity : 4096;
                while (capacity < cs->length + *upload_data_size + 1) capacity *= 2;
                char *grown = realloc(cs->body, capacity);
                if (!grown) return MHD_NO;
                cs->body = grown;
                cs->capacity = capacity;
            }
            memcpy(cs->body + cs->length, upload_data, *upload_data_size);
            cs->length += *upload_data_size;
        }
        *upload_data_size = 0;
        return MHD_YES;
    }
    bool post = !strcmp(method, "POST"), get = !strcmp(method, "GET") || !strcmp(method, "HEAD");
    if (!strcmp(url, "/v1/completions") || !strcmp(url, "/v1/chat/completions")) {
        if (!post) return fail_with(s, c, 405, "invalid_request_error", NULL, NULL, "use POST on this route");
        return completion(s, c, !strcmp(url, "/v1/completions") ? OPENAI_COMPLETIONS : OPENAI_CHAT, cs);
    }
    if (!strcmp(url, "/health") || !strcmp(url, "/v1/models") || !strcmp(url, "/metrics")) {
        if (!get) return fail_with(s, c, 405, "invalid_request_error", NULL, NULL, "use GET on this route");
        if (!strcmp(url, "/health")) return health(s, c);
        if (!strcmp(url, "/metrics")) return prometheus(s, c);
        return models(s, c);
    }
    char message[512];
    snprintf(message, sizeof message, "no route %.200s %.16s (routes: POST /v1/completions, POST /v1/chat/completions, "
                                      "GET /v1/models, /health, /metrics)", url, method);
    return fail_with(s, c, 404, "invalid_request_error", NULL, "not_found", message);
}

static void on_completed(void *context, struct MHD_Connection *c, void **connection_context,
                         enum MHD_RequestTerminationCode code) {
    (void)c;
    (void)code;
    server *s = context;
    connection_state *cs = *connection_context;
    if (cs) {
        free(cs->body);
        free(cs);
        *connection_context = NULL;
        atomic_fetch_sub(&s->open_requests, 1);
    }
}

/* After the engine drained: the answers it finished may still be on their way to the clients. */
static void wait_for_responses(server *s, double seconds) {
    double deadline = clock_seconds() + seconds;
    while (atomic_load(&s->open_requests) > 0 && clock_seconds() < deadline) {
        struct timespec pause = {0, 20 * 1000000L};
        nanosleep(&pause, NULL);
    }
}

/* ---- the command -------------------------------------------------------------------------- */

static void serve_usage(FILE *out) {
    fprintf(out,
            "usage: ramp serve -m MODEL [--host 127.0.0.1] [--port 8080] [--api-key KEY] [--exit svm:FILE]\n"
            "                  [--exit conf:FILE] [--exit-default none|svm|conf] [--max-queue N] [--max-body BYTES]\n"
            "       mpirun -np N ramp serve ...   (rank 0 listens; ranks 1..N-1 are pipeline stages)\n\n"
            "An OpenAI-compatible HTTP server: POST /v1/completions, POST /v1/chat/completions (stream: true\n"
            "for Server-Sent Events), GET /v1/models, GET /health, GET /metrics (Prometheus). Requests join and\n"
            "leave the running pipeline at any time; an answer never depends on what else is in flight.\n"
            "Per request, \"ramp\": {\"exit\": \"none\"|\"svm\"|\"conf\"} selects an exit policy loaded at start.\n\n"
            "  -m, --model FILE       GGUF file or llama2.c checkpoint (--tokenizer FILE for the latter)\n"
            "      --host ADDR        address to listen on (default 127.0.0.1; others warn without an API key)\n"
            "      --port N           TCP port (default 8080; 0 picks a free one and prints it)\n"
            "      --api-key KEY      require 'Authorization: Bearer KEY' (or set RAMP_API_KEY)\n"
            "      --model-name NAME  the model id reported to clients (default: the file name)\n"
            "      --exit svm:FILE    load an AdaInfer classifier (request-level exit: one-token answers)\n"
            "      --exit conf:FILE   load LITE thresholds (token-level exit during generation)\n"
            "      --exit-default P   the policy of requests that name none (default none)\n"
            "      --exit-layers L,.. exit points (default: the policies')\n"
            "      --kv-fill P        recompute (default), copy or omit: KV of layers an exited token skipped\n"
            "      --max-queue N      requests waiting for a KV slot before 429 (default %d)\n"
            "      --max-body BYTES   largest request body before 413 (default %d)\n"
            "  -h, --help             this text\n\n"
            "On SIGTERM or SIGINT the server stops accepting, finishes what is in flight within --grace\n"
            "seconds and exits 0.\n\n%s",
            DEFAULT_MAX_QUEUE, DEFAULT_MAX_BODY, pipeline_flags_help);
}

static bool loopback(const char *host) {
    return !strcmp(host, "127.0.0.1") || !strcmp(host, "localhost") || !strcmp(host, "::1");
}

static struct MHD_Daemon *start_http(server *s, ramp_error *err) {
    struct sockaddr_storage address;
    memset(&address, 0, sizeof address);
    struct sockaddr_in *v4 = (struct sockaddr_in *)&address;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&address;
    const char *host = !strcmp(s->options.host, "localhost") ? "127.0.0.1" : s->options.host;
    unsigned int flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG;
    if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)s->options.port);
    } else if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((uint16_t)s->options.port);
        flags |= MHD_USE_IPv6;
    } else {
        ramp_fail(err, "--host '%s' is not an IPv4 or IPv6 address", s->options.host);
        return NULL;
    }
    struct MHD_Daemon *d = MHD_start_daemon(
        flags, (uint16_t)s->options.port, NULL, NULL, on_request, s, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&address,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, s, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)120,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned int)1024, MHD_OPTION_END);
    if (!d) ramp_fail(err, "cannot listen on %s port %d: %s", s->options.host, s->options.port, strerror(errno));
    return d;
}

int command_serve(int argc, char **argv, transport *mpi) {
    pipeline_options options;
    pipeline_options_default(&options);
    serve_options so = {.host = "127.0.0.1", .port = 8080, .exit_default = "none", .max_queue = DEFAULT_MAX_QUEUE,
                        .max_body = DEFAULT_MAX_BODY, .api_key = getenv("RAMP_API_KEY")};
    const char *exit_specs[2];
    int n_exit_specs = 0;
    ramp_error err;
    enum { TOKENIZER = 1000, HOST, PORT, API_KEY, MODEL_NAME, EXIT, EXIT_DEFAULT, EXIT_LAYERS, KV_FILL, MAX_QUEUE,
           MAX_BODY, PIPELINE_FLAG };
    static const struct option long_options[] = {
        {"model", required_argument, 0, 'm'},         {"tokenizer", required_argument, 0, TOKENIZER},
        {"host", required_argument, 0, HOST},          {"port", required_argument, 0, PORT},
        {"api-key", required_argument, 0, API_KEY},    {"model-name", required_argument, 0, MODEL_NAME},
        {"exit", required_argument, 0, EXIT},          {"exit-default", required_argument, 0, EXIT_DEFAULT},
        {"exit-layers", required_argument, 0, EXIT_LAYERS}, {"kv-fill", required_argument, 0, KV_FILL},
        {"max-queue", required_argument, 0, MAX_QUEUE}, {"max-body", required_argument, 0, MAX_BODY},
        {"grace", required_argument, 0, PIPELINE_FLAG}, {"help", no_argument, 0, 'h'},
        CLI_PIPELINE_OPTIONS(PIPELINE_FLAG),           {0, 0, 0, 0},
    };
    int c, option_index, max_body = DEFAULT_MAX_BODY;
    optind = 1;
    while ((c = getopt_long(argc, argv, "m:h", long_options, &option_index)) != -1) {
        int bad = 0;
        switch (c) {
        case 'm': options.model_path = optarg; break;
        case TOKENIZER: options.tokenizer_path = optarg; break;
        case HOST: so.host = optarg; break;
        case PORT: bad = cli_parse_int("--port", optarg, 0, 65535, &so.port, &err); break;
        case API_KEY: so.api_key = optarg; break;
        case MODEL_NAME: so.model_name = optarg; break;
        case EXIT:
            if (n_exit_specs == 2) bad = -1, cli_error(&err, "at most two --exit (one svm:FILE, one conf:FILE)");
            else exit_specs[n_exit_specs++] = optarg;
            break;
        case EXIT_DEFAULT:
            so.exit_default = optarg;
            if (strcmp(optarg, "none") && strcmp(optarg, "svm") && strcmp(optarg, "conf"))
                bad = -1, cli_error(&err, "--exit-default expects none, svm or conf, got '%s'", optarg);
            break;
        case EXIT_LAYERS: options.exit_layers = optarg; break;
        case KV_FILL: bad = pipeline_parse_kv_fill(optarg, &options.kv_fill, &err); break;
        case MAX_QUEUE: bad = cli_parse_int("--max-queue", optarg, 1, 1 << 20, &so.max_queue, &err); break;
        case MAX_BODY: bad = cli_parse_int("--max-body", optarg, 64, 1 << 30, &max_body, &err); break;
        case PIPELINE_FLAG:
            bad = pipeline_parse_flag(&options, long_options[option_index].name, optarg, &err) < 0;
            break;
        case 'h': serve_usage(stdout); return 0;
        default: serve_usage(stderr); return 2;
        }
        if (bad) return cli_usage_error("serve", &err);
    }
    so.max_body = (size_t)max_body;
    if (optind < argc) return cli_usage_error("serve", cli_error(&err, "unexpected argument '%s'", argv[optind]));
    if (!options.model_path) return cli_usage_error("serve", cli_error(&err, "-m MODEL is required (see --help)"));
    if (so.api_key && !*so.api_key) so.api_key = NULL;
    if (!loopback(so.host) && !so.api_key)
        fprintf(stderr, "ramp serve: warning: listening on %s without an API key: anyone who can reach it can use "
                        "the model (set --api-key or RAMP_API_KEY)\n", so.host);

    server s = {.options = so};
    s.front.created = (long)time(NULL);
    s.front.model_id = s.model_id;
    pthread_mutex_init(&s.counters_lock, NULL);
    const char *base = strrchr(options.model_path, '/');
    snprintf(s.model_id, sizeof s.model_id, "%s", so.model_name ? so.model_name : base ? base + 1 : options.model_path);
    s.front.exit_default = !strcmp(so.exit_default, "svm")    ? OPENAI_EXIT_SVM
                     : !strcmp(so.exit_default, "conf") ? OPENAI_EXIT_CONF
                                                        : OPENAI_EXIT_NONE;
    exit_policy svm = {0}, conf = {0};
    char exit_layers_text[512];
    pipeline p;
    memset(&p, 0, sizeof p);
    s.pipeline = &p;
    s.front.pipeline = &p;
    int status = 0;
    struct MHD_Daemon *daemon = NULL;
    if (openai_load_exit_policies(exit_specs, n_exit_specs, &svm, &conf, &options, exit_layers_text, sizeof exit_layers_text,
                           &err)) {
        fprintf(stderr, "ramp serve: %s\n", err.message);
        status = 1;
        goto done;
    }
    s.front.svm = svm.kind ? &svm : NULL;
    s.front.conf = conf.kind ? &conf : NULL;
    if ((s.front.exit_default == OPENAI_EXIT_SVM && !s.front.svm) ||
        (s.front.exit_default == OPENAI_EXIT_CONF && !s.front.conf)) {
        fprintf(stderr, "ramp serve: --exit-default %s needs --exit %s:FILE\n", so.exit_default, so.exit_default);
        status = 2;
        goto done;
    }
    s.front.chat_template = openai_model_chat_template(options.model_path);
    /* Listen first: /health answers 503 while the stages load. */
    if (!(daemon = start_http(&s, &err))) {
        fprintf(stderr, "ramp serve: %s\n", err.message);
        status = 1;
        goto done;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(daemon, MHD_DAEMON_INFO_BIND_PORT);
    int port = info ? (int)info->port : so.port;
    options.mpi = mpi;
    if (pipeline_open(&p, &options, &err) ||
        openai_front_check_policies(&s.front, exit_specs, n_exit_specs, &err)) {
        MHD_stop_daemon(daemon);
        daemon = NULL;
        status = pipeline_fail(&p, "serve", &err);
        goto done;
    }
    atomic_store(&s.ready, true);
    fprintf(stderr, "ramp serve: %s ready on http://%s:%d (%d stage%s, chat template %s, exit policies:%s%s%s)\n",
            s.model_id, so.host, port, p.n_stages, p.n_stages == 1 ? "" : "s",
            chat_template_name(s.front.chat_template), " none", s.front.svm ? " svm" : "", s.front.conf ? " conf" : "");
    if (engine_run(&p, ENGINE_UNTIL_STOPPED, &err)) {
        atomic_store(&s.stopping, true);
        wait_for_responses(&s, 5.0); /* clients in flight get their 500 first */
        MHD_stop_daemon(daemon);
        daemon = NULL;
        status = pipeline_fail(&p, "serve", &err);
        goto done;
    }
    atomic_store(&s.stopping, true);
    wait_for_responses(&s, 10.0);
    fprintf(stderr, "ramp serve: stopping (signal %d): requests in flight finished and sent\n", interrupt_signal());
    MHD_stop_daemon(daemon);
    daemon = NULL;
    if (pipeline_finish(&p, &err)) status = pipeline_fail(&p, "serve", &err);
done:
    if (daemon) MHD_stop_daemon(daemon);
    pipeline_close(&p);
    exit_policy_free(&svm);
    exit_policy_free(&conf);
    pthread_mutex_destroy(&s.counters_lock);
    return status;
}
