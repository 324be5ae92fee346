/* fuzz_openai.c: OpenAI request bodies from outside (`ramp serve`, `ramp batch`), and every response
 * shape built from what parsed. Properties: a body parses or gives a 400/500 error object; a parsed
 * request is within the parser's promises (openai.h); every response and stream chunk built from
 * it, with the input bytes as the generated text, dumps to JSON that parses again and is unchanged.
 * `make fuzz` runs it (seeds: tests/fuzz/seeds.sh; dictionary: tests/fuzz/openai.dict). */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "openai.h"

enum { FUZZ_OPENAI_VOCAB = 32000, FUZZ_OPENAI_TOKENS = 8 };

/* Whatever a builder returns must dump to JSON that parses again. */
static void fuzz_openai_emit(json_t *value) {
    fuzz_require(value != NULL, "a builder returned NULL");
    char *text = json_dumps(value, JSON_COMPACT);
    fuzz_require(text != NULL, "json_dumps failed");
    json_error_t error;
    json_t *back = json_loads(text, JSON_ALLOW_NUL, &error);
    fuzz_require(back != NULL, "built JSON does not parse again: %s in %.300s", error.text, text);
    fuzz_require(json_equal(value, back), "built JSON changed through a dump");
    json_decref(back);
    free(text);
    json_decref(value);
}

static void fuzz_openai_check_error(const openai_error *error) {
    fuzz_require(error->status == 400 || error->status == 500, "error status is not 400/500");
    fuzz_require(error->type != NULL, "error without type");
    fuzz_require(memchr(error->message, '\0', sizeof error->message) != NULL && error->message[0] != '\0',
                 "error message empty or unterminated");
    fuzz_openai_emit(openai_error_json(error));
}

static void fuzz_openai_check_request(openai_endpoint endpoint, const openai_request *r) {
    fuzz_require(r->endpoint == endpoint, "endpoint");
    if (endpoint == OPENAI_COMPLETIONS) {
        fuzz_require((r->prompt != NULL) != (r->prompt_tokens != NULL), "exactly one of prompt / prompt_tokens");
        if (r->prompt != NULL)
            fuzz_require(r->prompt_length > 0 && r->prompt[r->prompt_length] == '\0', "prompt text");
        for (int i = 0; i < r->n_prompt_tokens; i++)
            fuzz_require(r->prompt_tokens[i] >= 0 && r->prompt_tokens[i] < FUZZ_OPENAI_VOCAB, "token id in range");
        fuzz_require(r->messages == NULL && r->logprobs >= -1 && r->logprobs <= 5, "completions fields");
    } else {
        fuzz_require(r->n_messages > 0 && r->messages != NULL && r->prompt == NULL, "chat messages");
        for (int i = 0; i < r->n_messages; i++) {
            const char *role = r->messages[i].role;
            fuzz_require(role != NULL &&
                             (!strcmp(role, "system") || !strcmp(role, "user") || !strcmp(role, "assistant")),
                         "message role");
            fuzz_require(r->messages[i].content != NULL, "message content");
        }
        fuzz_require(r->logprobs >= -1 && r->logprobs <= 20, "chat logprobs");
    }
    fuzz_require(r->max_tokens >= -1, "max_tokens");
    fuzz_require(r->temperature >= 0.0f && r->temperature <= 2.0f, "temperature");
    fuzz_require(r->top_p > 0.0f && r->top_p <= 1.0f, "top_p");
    fuzz_require(r->top_k >= 0, "top_k");
    fuzz_require(r->n_stop >= 0 && r->n_stop <= OPENAI_MAX_STOP, "n_stop");
    for (int i = 0; i < r->n_stop; i++) fuzz_require(r->stop[i] != NULL && r->stop[i][0] != '\0', "stop string");
}

/* Builds every response shape from what parsed, with the input bytes (any bytes at all) as the
 * generated text and tokens, so the builders see invalid UTF-8 too. */
static void fuzz_openai_build(const openai_request *request, const uint8_t *data, size_t size) {
    openai_token tokens[FUZZ_OPENAI_TOKENS];
    int n = 0;
    size_t piece = size / FUZZ_OPENAI_TOKENS + 1;
    for (size_t at = 0; at < size && n < FUZZ_OPENAI_TOKENS; at += piece, n++) {
        size_t length = size - at < piece ? size - at : piece;
        tokens[n] = (openai_token){.token = data[at],
                                   .text = (const char *)data + at,
                                   .text_length = length,
                                   .logprob = data[at] == 0xff ? -1.0f / 0.0f : -(float)data[at] / 16.0f,
                                   .exit_layer = data[at] % 17};
    }
    openai_result result = {
        .id = "cmpl-fuzz",
        .model = request->model,
        .created = 1700000000,
        .text = (const char *)data,
        .text_length = size,
        .finish_reason = size % 2 ? "stop" : "length",
        .prompt_tokens = request->n_prompt_tokens,
        .completion_tokens = n,
        .tokens = tokens,
        .n_tokens = n,
        .total_layers = 16,
        .layers_executed = (long)(size % 300),
        .exit_policy = "conf",
    };
    fuzz_openai_emit(openai_response_json(request, &result));
    fuzz_openai_emit(openai_stream_chunk_json(request, &result, NULL, true, false));
    for (int i = 0; i < n; i++) fuzz_openai_emit(openai_stream_chunk_json(request, &result, &tokens[i], i == 0, i == n - 1));
    fuzz_openai_emit(openai_stream_chunk_json(request, &result, NULL, false, true));
}

int fuzz_openai(const uint8_t *data, size_t size) {
    static const openai_endpoint endpoints[] = {OPENAI_COMPLETIONS, OPENAI_CHAT};
    for (int e = 0; e < 2; e++) {
        openai_request request;
        openai_error error;
        if (openai_parse_request(endpoints[e], (const char *)data, size, FUZZ_OPENAI_VOCAB, &request, &error) == 0) {
            fuzz_openai_check_request(endpoints[e], &request);
            fuzz_openai_build(&request, data, size);
            openai_request_free(&request);
        } else {
            fuzz_openai_check_error(&error);
        }
    }
    /* The same bytes decoded with NULs allowed reach openai_parse_object with values the plain
     * decoder would have refused. */
    json_error_t json_error;
    json_t *root = json_loadb((const char *)data, size, JSON_DECODE_ANY | JSON_ALLOW_NUL, &json_error);
    if (root != NULL) {
        for (int e = 0; e < 2; e++) {
            openai_request request;
            openai_error error;
            if (openai_parse_object(endpoints[e], root, FUZZ_OPENAI_VOCAB, &request, &error) == 0) {
                fuzz_openai_check_request(endpoints[e], &request);
                fuzz_openai_build(&request, data, size);
                openai_request_free(&request);
            } else {
                fuzz_openai_check_error(&error);
            }
        }
        json_decref(root);
    }
    return 0;
}

FUZZ_ENTRY(fuzz_openai)
