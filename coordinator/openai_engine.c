#include "openai_engine.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "gguf.h"
#include "pipeline.h"

#define DEFAULT_COMPLETION_TOKENS 16 /* OpenAI's default max_tokens for /v1/completions */

/* Prompt tokens for the request: rendered chat, a text prompt (with BOS), or the ids as sent. */
static int request_prompt(const openai_front *f, const openai_request *r, int **tokens, int *n_tokens,
                          openai_error *e) {
    ramp_error err;
    if (r->endpoint == OPENAI_CHAT) {
        char *text;
        size_t length;
        if (chat_template_render(f->chat_template, r->messages, r->n_messages, &text, &length, &err))
            return openai_fail(e, 400, "invalid_request_error", "messages", NULL, "%s", err.message);
        int status = pipeline_tokenize(f->pipeline, text, length, tokens, n_tokens, &err);
        free(text);
        if (status) return openai_fail(e, 500, "server_error", NULL, NULL, "%s", err.message);
        return 0;
    }
    if (r->prompt) {
        if (pipeline_tokenize(f->pipeline, r->prompt, r->prompt_length, tokens, n_tokens, &err))
            return openai_fail(e, 500, "server_error", NULL, NULL, "%s", err.message);
        return 0;
    }
    *tokens = malloc((size_t)(r->n_prompt_tokens > 0 ? r->n_prompt_tokens : 1) * sizeof(int));
    if (!*tokens) return openai_fail(e, 500, "server_error", NULL, NULL, "out of memory");
    memcpy(*tokens, r->prompt_tokens, (size_t)r->n_prompt_tokens * sizeof(int));
    *n_tokens = r->n_prompt_tokens;
    return 0;
}

/* Which exit policy the request runs with. */
static int choose_exit(const openai_front *f, const openai_request *r, engine_request *out, const char **name,
                       openai_error *e) {
    openai_exit which = r->exit == OPENAI_EXIT_DEFAULT ? f->exit_default : r->exit;
    *name = "none";
    if (which == OPENAI_EXIT_NONE || which == OPENAI_EXIT_DEFAULT) return 0;
    const char *wanted = which == OPENAI_EXIT_SVM ? "svm" : "conf";
    const exit_policy *policy = which == OPENAI_EXIT_SVM ? f->svm : f->conf;
    if (!policy)
        return openai_fail(e, 400, "invalid_request_error", "ramp.exit", NULL,
                           "exit policy '%s' is not loaded here (start ramp with --exit %s:FILE)", wanted, wanted);
    out->exit = EXIT_MODE_DECIDE;
    out->policy = policy;
    out->token_level = which == OPENAI_EXIT_CONF; /* svm (AdaInfer) answers the whole request at once */
    *name = wanted;
    return 0;
}

int openai_front_prepare(const openai_front *f, const openai_request *r, engine_request *out, int **tokens,
                         const char **exit_name, openai_error *e) {
    int n_tokens = 0;
    *tokens = NULL;
    if (request_prompt(f, r, tokens, &n_tokens, e)) return -1;
    int context = f->pipeline->options.context;
    int max_tokens = r->max_tokens >= 0                ? r->max_tokens
                     : r->endpoint == OPENAI_COMPLETIONS ? DEFAULT_COMPLETION_TOKENS
                                                         : context - n_tokens;
    if (max_tokens < 0) max_tokens = 0;
    if (n_tokens + max_tokens > context || n_tokens >= context) {
        free(*tokens);
        *tokens = NULL;
        return openai_fail(e, 400, "invalid_request_error", r->max_tokens >= 0 ? "max_tokens" : "messages",
                           "context_length_exceeded",
                           "This model's maximum context length is %d tokens. However, you requested %d tokens "
                           "(%d in the prompt, %d for the completion). Please reduce the prompt or the completion.",
                           context, n_tokens + max_tokens, n_tokens, max_tokens);
    }
    memset(out, 0, sizeof *out);
    out->prompt = *tokens;
    out->n_prompt = n_tokens;
    out->max_tokens = max_tokens;
    /* without a seed, each request draws its own (greedy requests do not use it) */
    out->sampling = (sampling_params){.temperature = r->temperature, .top_p = r->top_p, .top_k = r->top_k,
                                      .seed = r->seed_given ? r->seed
                                                            : (uint64_t)time(NULL) ^ (uint64_t)(clock_seconds() * 1e9)};
    for (int i = 0; i < r->n_stop && i < ENGINE_MAX_STOP; i++) out->stop[out->n_stop++] = r->stop[i];
    out->logprobs = r->logprobs >= 0;
    if (choose_exit(f, r, out, exit_name, e)) {
        free(*tokens);
        *tokens = NULL;
        return -1;
    }
    return 0;
}

static char *copy_bytes(const char *bytes, size_t n) {
    char *copy = malloc(n + 1);
    if (copy) {
        memcpy(copy, bytes, n);
        copy[n] = '\0';
    }
    return copy;
}

chat_template_family openai_model_chat_template(const char *path) {
    gguf_file file;
    ramp_error err;
    if (gguf_open(&file, path, &err)) return CHAT_TEMPLATE_FALLBACK; /* a llama2.c checkpoint has none */
    gguf_string text;
    chat_template_family family = CHAT_TEMPLATE_FALLBACK;
    if (gguf_get_string(&file, "tokenizer.chat_template", &text, &err) == 0) {
        char *copy = copy_bytes(text.data, (size_t)text.length);
        if (copy) family = chat_template_detect(copy);
        free(copy);
    }
    gguf_close(&file);
    return family;
}

int openai_load_exit_policies(const char *const *specs, int n_specs, exit_policy *svm, exit_policy *conf,
                              pipeline_options *o, char *exit_layers_text, size_t capacity, ramp_error *err) {
    for (int i = 0; i < n_specs; i++) {
        exit_policy loaded = {0};
        if (exit_policy_load(&loaded, specs[i], err)) return -1;
        exit_policy *slot = loaded.kind == EXIT_POLICY_SVM ? svm : conf;
        if (slot->kind != EXIT_POLICY_NONE) {
            exit_policy_free(&loaded);
            return ramp_fail(err, "--exit %s: a %s policy is already loaded", specs[i],
                             loaded.kind == EXIT_POLICY_SVM ? "svm" : "conf");
        }
        *slot = loaded;
    }
    const exit_policy *first = svm->kind ? svm : conf->kind ? conf : NULL;
    if (!first) return 0;
    if (svm->kind && conf->kind) {
        bool same = svm->n_exits == conf->n_exits;
        for (int i = 0; same && i < svm->n_exits; i++) same = svm->exit_layers[i] == conf->exit_layers[i];
        if (!same) return ramp_fail(err, "the svm and conf policies were made for different exit points");
        if (svm->n_labels > 0)
            return ramp_fail(err, "the svm policy reads the label head of task %s, the conf policy the whole "
                                  "vocabulary; one pipeline cannot compute both at its exit points", svm->task);
    }
    if (svm->kind && svm->n_labels > 0) { /* the exit head scores the task's labels, as in training */
        o->candidates = svm->label_tokens;
        o->n_candidates = svm->n_labels;
    }
    o->exits = true;
    if (!o->exit_layers) {
        format_exit_layers(first->exit_layers, first->n_exits, exit_layers_text, capacity);
        o->exit_layers = exit_layers_text;
    }
    return 0;
}

int openai_front_check_policies(const openai_front *f, const char *const *specs, int n_specs, ramp_error *err) {
    const model_config *c = &f->pipeline->model.config;
    for (int i = 0; i < n_specs; i++) {
        const exit_policy *policy = !strncmp(specs[i], "svm:", 4) ? f->svm : f->conf;
        if (!policy) continue;
        exit_policy_use use = {.n_layers = c->n_layers, .vocab_size = c->vocab_size};
        if (policy->kind == EXIT_POLICY_SVM && policy->n_labels > 0) { /* its own task's label head */
            use.task = policy->task;
            use.label_tokens = policy->label_tokens;
            use.n_labels = policy->n_labels;
        }
        if (exit_policy_check_use(policy, specs[i], &use, err)) return -1;
    }
    return 0;
}

int openai_collector_add(openai_collector *c, const engine_event *e) {
    if (e->kind == ENGINE_FINISH) {
        c->finished = true;
        c->finish = e->finish;
        c->tail_text = copy_bytes(e->text, e->text_length);
        c->tail_length = c->tail_text ? e->text_length : 0;
        c->prompt_tokens = e->prompt_tokens;
        c->completion_tokens = e->generated_tokens;
        c->layers_executed = e->layers_executed;
        c->total_layers = e->total_layers;
        if (e->message) snprintf(c->error, sizeof c->error, "%s", e->message);
        return c->tail_text ? 0 : -1;
    }
    if (c->n_tokens == c->capacity) {
        int capacity = c->capacity ? 2 * c->capacity : 32;
        collected_token *grown = realloc(c->tokens, (size_t)capacity * sizeof *grown);
        if (!grown) return -1;
        c->tokens = grown;
        c->capacity = capacity;
    }
    collected_token *t = &c->tokens[c->n_tokens];
    if (!(t->text = copy_bytes(e->text, e->text_length))) return -1;
    t->token = e->token;
    t->text_length = e->text_length;
    t->logprob = e->logprob;
    t->exit_layer = e->exit_layer;
    c->n_tokens++;
    return 0;
}

void openai_collector_free(openai_collector *c) {
    for (int i = 0; i < c->n_tokens; i++) free(c->tokens[i].text);
    free(c->tokens);
    free(c->tail_text);
    memset(c, 0, sizeof *c);
}

void openai_collector_result(const openai_collector *c, const char *id, const openai_front *front,
                             const char *exit_name, openai_token *tokens, char **text, openai_result *r) {
    size_t total = c->tail_length;
    for (int i = 0; i < c->n_tokens; i++) total += c->tokens[i].text_length;
    *text = malloc(total + 1);
    size_t used = 0;
    for (int i = 0; i < c->n_tokens; i++) {
        if (*text) memcpy(*text + used, c->tokens[i].text, c->tokens[i].text_length);
        tokens[i] = (openai_token){c->tokens[i].token, c->tokens[i].text, c->tokens[i].text_length,
                                   c->tokens[i].logprob, c->tokens[i].exit_layer};
        used += c->tokens[i].text_length;
    }
    if (*text) {
        if (c->tail_length) memcpy(*text + used, c->tail_text, c->tail_length);
        (*text)[total] = '\0';
        /* text held back until the end (an unfinished character or stop-string prefix) belongs to
         * the last token */
        if (c->n_tokens > 0 && c->tail_length) {
            openai_token *last = &tokens[c->n_tokens - 1];
            last->text = *text + (used - last->text_length);
            last->text_length += c->tail_length;
        }
    }
    *r = (openai_result){
        .id = id,
        .model = front->model_id,
        .created = front->created,
        .text = *text ? *text : "",
        .text_length = *text ? total : 0,
        .finish_reason = engine_finish_name(c->finish),
        .prompt_tokens = c->prompt_tokens,
        .completion_tokens = c->completion_tokens,
        .tokens = tokens,
        .n_tokens = c->n_tokens,
        .total_layers = c->total_layers,
        .layers_executed = c->layers_executed,
        .exit_policy = exit_name,
    };
}

json_t *openai_collector_response(const openai_collector *c, const openai_request *request, const char *id,
                                  const openai_front *front, const char *exit_name, int *status) {
    if (c->finish == ENGINE_FINISH_ERROR) {
        openai_error e;
        openai_fail(&e, 500, "server_error", NULL, NULL, "%s", c->error[0] ? c->error : "the pipeline failed");
        *status = 500;
        return openai_error_json(&e);
    }
    openai_token *tokens = malloc((size_t)(c->n_tokens > 0 ? c->n_tokens : 1) * sizeof *tokens);
    char *text = NULL;
    openai_result r;
    json_t *body = NULL;
    if (tokens) {
        openai_collector_result(c, id, front, exit_name, tokens, &text, &r);
        body = openai_response_json(request, &r);
    }
    free(tokens);
    free(text);
    *status = body ? 200 : 500;
    return body;
}
