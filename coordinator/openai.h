/* openai.h: the OpenAI request and response shapes, shared by `ramp serve` and `ramp batch`.
 *
 * Parsing turns a request body (JSON text, parsed with jansson) for /v1/completions or
 * /v1/chat/completions into an openai_request the engine can run, or into an openai_error with
 * the HTTP status and OpenAI's error object fields. Building turns a finished result (or one
 * streamed token) into the response JSON. No I/O here: the front ends own sockets and files.
 *
 * Accepted request fields (others are ignored when their type is a JSON value at all; a known
 * field with a wrong type or value is a 400 naming the field in `param`):
 *   model (string), prompt (string, or array of token ids; completions), messages (array of
 *   {role, content}; chat; content a string or an array of {"type":"text","text":...} parts),
 *   max_tokens / max_completion_tokens (integer >= 0), temperature (number 0..2), top_p (number
 *   (0,1]), top_k (integer >= 0; extension), seed (integer), stop (string or array of up to 4
 *   non-empty strings), logprobs (completions: integer 0..5 or null; chat: boolean),
 *   top_logprobs (chat: integer 0..20), stream (boolean), stream_options ({include_usage}),
 *   user (string), n (only 1), echo (completions: false only), presence_penalty,
 *   frequency_penalty (numbers, only 0 is honoured... any number accepted and ignored),
 *   "ramp": {"exit": "none" | "svm" | "conf"} (extension).
 * Strings must be valid UTF-8 (jansson checks); an empty prompt or empty messages is a 400.
 * A field that is JSON null takes its default. A one-element prompt batch (["text"] or [[ids]])
 * is that prompt; longer batches are a 400. Chat text parts are joined with "\n".
 * max_completion_tokens wins over max_tokens. Chat top_logprobs needs "logprobs": true. Other
 * fields OpenAI defines (logit_bias, response_format, tools, suffix, best_of, ...) are
 * type-checked and ignored.
 */
#ifndef RAMP_OPENAI_H
#define RAMP_OPENAI_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "chat_template.h"

typedef enum { OPENAI_COMPLETIONS, OPENAI_CHAT } openai_endpoint;
typedef enum { OPENAI_EXIT_DEFAULT, OPENAI_EXIT_NONE, OPENAI_EXIT_SVM, OPENAI_EXIT_CONF } openai_exit;

#define OPENAI_MAX_STOP 4

typedef struct {
    openai_endpoint endpoint;
    char *model;            /* as sent, or NULL */
    /* completions: exactly one of prompt (text) or prompt_tokens is set */
    char *prompt;
    size_t prompt_length;
    int *prompt_tokens;
    int n_prompt_tokens;
    /* chat: messages (content strings owned by the request and NUL-terminated; role points to a
     * static "system" / "user" / "assistant") */
    chat_message *messages;
    int n_messages;
    int max_tokens;         /* -1 when not given (the front end picks its default) */
    float temperature;      /* default 1.0, as OpenAI */
    float top_p;            /* default 1.0 */
    int top_k;              /* default 0 (off) */
    uint64_t seed;
    bool seed_given;
    char *stop[OPENAI_MAX_STOP];
    int n_stop;
    int logprobs;           /* -1 = not asked; otherwise each token's logprob is reported and this is the
                             * number of alternatives asked: completions "logprobs" 0..5, chat
                             * "top_logprobs" 0..20 when "logprobs" is true */
    bool stream;
    bool include_usage;     /* stream_options.include_usage */
    char *user;
    openai_exit exit;
} openai_request;

typedef struct {
    int status;            /* HTTP status: 400, 401, 404, 413, 429, 500, 503 */
    char message[512];
    const char *type;      /* "invalid_request_error", "authentication_error", "rate_limit_error", "server_error" */
    const char *param;     /* the offending field, or NULL */
    const char *code;      /* e.g. "context_length_exceeded", "invalid_api_key", or NULL */
} openai_error;

/* Sets every field of *error; returns -1 so callers can `return openai_fail(...)`. */
int openai_fail(openai_error *error, int status, const char *type, const char *param, const char *code,
                const char *format, ...) __attribute__((format(printf, 6, 7)));

/* Parses body (length bytes, not NUL-terminated necessarily). 0 on success (free with
 * openai_request_free), -1 with *error filled (nothing to free; *request is zeroed). Token ids
 * must lie in [0, vocab_size) (vocab_size <= 0 refuses every token prompt). */
int openai_parse_request(openai_endpoint endpoint, const char *body, size_t length, int vocab_size,
                         openai_request *request, openai_error *error);
/* Parses an already decoded JSON object (the batch file's "body"). Same contract. */
int openai_parse_object(openai_endpoint endpoint, json_t *body, int vocab_size, openai_request *request,
                        openai_error *error);
void openai_request_free(openai_request *request);

/* {"error": {"message", "type", "param", "code"}} (new reference). */
json_t *openai_error_json(const openai_error *error);

/* One generated token as the front ends collect it. */
typedef struct {
    int token;
    const char *text;   /* the bytes this token added to the visible text (may be empty) */
    size_t text_length;
    float logprob;      /* natural log of the probability the model gave it */
    int exit_layer;     /* layers it ran through before it was decided (the model's depth: no exit) */
} openai_token;

/* A finished request, ready to answer. */
typedef struct {
    const char *id;            /* "cmpl-..." / "chatcmpl-..." */
    const char *model;         /* model name to report */
    long created;              /* unix seconds */
    const char *text;          /* the whole completion (valid UTF-8) */
    size_t text_length;
    const char *finish_reason; /* "stop", "length", "exit", "cancelled", "error" */
    int prompt_tokens, completion_tokens;
    const openai_token *tokens; /* [n_tokens], for logprobs and the ramp extension */
    int n_tokens;
    int total_layers;           /* the model's depth */
    long layers_executed;       /* layer evaluations spent on the output tokens */
    const char *exit_policy;    /* "none", "svm" or "conf" */
} openai_result;

/* The non-streaming response body (new reference): OpenAI's completion / chat.completion object
 * with choices[0], usage, and the extension
 *   "ramp": {"exit": policy, "exit_layers": [per token], "layers_executed", "layers_skipped",
 *            "total_layers"}.
 * logprobs are included as OpenAI shapes them when the request asked for them. ramp knows only the
 * chosen token's logprob: completions' top_logprobs list just that token ({text: logprob}, as OpenAI
 * always includes it; null when 0 alternatives were asked), chat's top_logprobs are []. text_offset
 * counts characters from the start of the completion (echo is not supported). Token texts that are
 * not whole UTF-8 characters show U+FFFD (chat's "bytes" keep the raw bytes); a logprob of -inf is
 * reported as -9999. */
json_t *openai_response_json(const openai_request *request, const openai_result *result);

/* One streaming chunk (new reference): a text_completion / chat.completion.chunk object whose
 * choices[0] carries token's text (chat: delta.content; the first chunk of a chat stream also
 * has delta.role = "assistant"), its logprob when asked, "ramp": {"exit_layer"}; token may be
 * NULL for the closing chunk, which carries finish_reason (and usage when include_usage; the other
 * chunks then have "usage": null) and the full "ramp" summary. A completions chunk's text_offset is
 * counted over the tokens before it when token points into result->tokens, else it is 0. */
json_t *openai_stream_chunk_json(const openai_request *request, const openai_result *result, const openai_token *token,
                                 bool first, bool last);

#endif
