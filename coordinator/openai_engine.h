/* openai_engine.h: what `ramp serve` and `ramp batch` share between an OpenAI request and the
 * engine, so that a batch line's body is exactly what the server would answer.
 *
 *  - openai_front: the front end's fixed settings (pipeline, chat template, exit policies);
 *  - openai_front_prepare: an openai_request -> an engine_request (prompt tokens rendered and
 *    tokenized, token budget, sampling, stop strings, exit policy), or an OpenAI error (context
 *    exceeded: 400 naming both numbers; an exit policy this server did not load: 400);
 *  - openai_collector: the events of one request gathered into tokens and text, then turned
 *    into an openai_result for the response builders of openai.h.
 */
#ifndef RAMP_OPENAI_ENGINE_H
#define RAMP_OPENAI_ENGINE_H

#include "chat_template.h"
#include "engine.h"
#include "openai.h"
#include "pipeline.h"

typedef struct {
    pipeline *pipeline;
    chat_template_family chat_template;
    const exit_policy *svm, *conf;
    openai_exit exit_default;
    const char *model_id;
    long created;
} openai_front;

/* Fills *out (its prompt points to *tokens, malloc'ed: caller frees) and *exit_name ("none",
 * "svm", "conf"). Returns 0, or -1 with *error set. */
int openai_front_prepare(const openai_front *front, const openai_request *request, engine_request *out, int **tokens,
                         const char **exit_name, openai_error *error);

/* The family named by the model file's tokenizer.chat_template (fallback without one). */
chat_template_family openai_model_chat_template(const char *model_path);

/* Loads up to one svm and one conf policy from "svm:FILE" / "conf:FILE" specs and sets the
 * pipeline options they need (exit points, the label head of an svm trained on a task). */
int openai_load_exit_policies(const char *const *specs, int n_specs, exit_policy *svm, exit_policy *conf,
                              pipeline_options *options, char *exit_layers_text, size_t capacity, ramp_error *err);

/* The loaded policies were made for the open pipeline's model (its depth and vocabulary). */
int openai_front_check_policies(const openai_front *front, const char *const *specs, int n_specs, ramp_error *err);

typedef struct {
    int token;
    char *text;
    size_t text_length;
    float logprob;
    int exit_layer;
} collected_token;

/* One request's events (owned; free with openai_collector_free). */
typedef struct {
    collected_token *tokens;
    int n_tokens, capacity;
    char *tail_text; /* text the finish event settled */
    size_t tail_length;
    bool finished;
    engine_finish finish;
    char error[256];
    int prompt_tokens, completion_tokens;
    long layers_executed;
    int total_layers;
} openai_collector;

/* Records one event; returns -1 when out of memory (the event is then lost). */
int openai_collector_add(openai_collector *c, const engine_event *e);
void openai_collector_free(openai_collector *c);
/* The finished request as a result; *text (malloc'ed, caller frees) holds the whole completion
 * and tokens[] (caller-provided, n_tokens entries) points into the collector and *text. */
void openai_collector_result(const openai_collector *c, const char *id, const openai_front *front,
                             const char *exit_name, openai_token *tokens, char **text, openai_result *result);
/* The response a front end answers for a finished request: (status, body) — 200 with the OpenAI
 * object, or 500 with an error object when the pipeline failed. New reference. */
json_t *openai_collector_response(const openai_collector *c, const openai_request *request, const char *id,
                                  const openai_front *front, const char *exit_name, int *status);

#endif
