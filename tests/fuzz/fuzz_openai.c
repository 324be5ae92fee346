/* Build: clang -g -O1 -fsanitize=fuzzer,address,undefined -Imodel -Icoordinator -o /tmp/fuzz_openai tests/fuzz/fuzz_openai.c coordinator/openai.c -ljansson
 * Run:   mkdir -p /tmp/fuzz_openai_corpus && /tmp/fuzz_openai -max_total_time=60 /tmp/fuzz_openai_corpus  (from the repository root;
 *        seed the corpus directory with a few request bodies to start deeper; a crash leaves crash-<sha1> to replay with /tmp/fuzz_openai crash-<sha1>) */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "openai.h"

enum { VOCAB = 32000, MAX_TOKENS = 8 };

static void check(int condition, const char *what) {
    if (!condition) {
        fprintf(stderr, "fuzz_openai: invariant broken: %s\n", what);
        abort();
    }
}

/* Whatever a builder returns must dump to JSON that parses again. */
static void emit(json_t *value) {
    check(value != NULL, "a builder returned NULL");
    char *text = json_dumps(value, JSON_COMPACT);
    check(text != NULL, "json_dumps failed");
    json_error_t error;
    json_t *back = json_loads(text, JSON_ALLOW_NUL, &error);
    check(back != NULL, "built JSON does not parse again");
    check(json_equal(value, back), "built JSON changed through a dump");
    json_decref(back);
    free(text);
    json_decref(value);
}

static void check_error(const openai_error *error) {
    check(error->status == 400 || error->status == 500, "error status is not 400/500");
    check(error->type != NULL, "error without type");
    check(memchr(error->message, '\0', sizeof error->message) != NULL && error->message[0] != '\0',
          "error message empty or unterminated");
    emit(openai_error_json(error));
}

static void check_request(openai_endpoint endpoint, const openai_request *r) {
    check(r->endpoint == endpoint, "endpoint");
    if (endpoint == OPENAI_COMPLETIONS) {
        check((r->prompt != NULL) != (r->prompt_tokens != NULL), "exactly one of prompt / prompt_tokens");
        if (r->prompt != NULL) check(r->prompt_length > 0 && r->prompt[r->prompt_length] == '\0', "prompt text");
        for (int i = 0; i < r->n_prompt_tokens; i++)
            check(r->prompt_tokens[i] >= 0 && r->prompt_tokens[i] < VOCAB, "token id in range");
        check(r->messages == NULL && r->logprobs >= -1 && r->logprobs <= 5, "completions fields");
    } else {
        check(r->n_messages > 0 && r->messages != NULL && r->prompt == NULL, "chat messages");
        for (int i = 0; i < r->n_messages; i++) {
            const char *role = r->messages[i].role;
            check(role != NULL && (!strcmp(role, "system") || !strcmp(role, "user") || !strcmp(role, "assistant")),
                  "message role");
            check(r->messages[i].content != NULL, "message content");
        }
        check(r->logprobs >= -1 && r->logprobs <= 20, "chat logprobs");
    }
    check(r->max_tokens >= -1, "max_tokens");
    check(r->temperature >= 0.0f && r->temperature <= 2.0f, "temperature");
    check(r->top_p > 0.0f && r->top_p <= 1.0f, "top_p");
    check(r->top_k >= 0, "top_k");
    check(r->n_stop >= 0 && r->n_stop <= OPENAI_MAX_STOP, "n_stop");
    for (int i = 0; i < r->n_stop; i++) check(r->stop[i] != NULL && r->stop[i][0] != '\0', "stop string");
}

/* Builds every response shape from what parsed, with the input bytes (any bytes at all) as the
 * generated text and tokens, so the builders see invalid UTF-8 too. */
static void build(const openai_request *request, const uint8_t *data, size_t size) {
    openai_token tokens[MAX_TOKENS];
    int n = 0;
    size_t piece = size / MAX_TOKENS + 1;
    for (size_t at = 0; at < size && n < MAX_TOKENS; at += piece, n++) {
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
    emit(openai_response_json(request, &result));
    emit(openai_stream_chunk_json(request, &result, NULL, true, false));
    for (int i = 0; i < n; i++) emit(openai_stream_chunk_json(request, &result, &tokens[i], i == 0, i == n - 1));
    emit(openai_stream_chunk_json(request, &result, NULL, false, true));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static const openai_endpoint endpoints[] = {OPENAI_COMPLETIONS, OPENAI_CHAT};
    for (int e = 0; e < 2; e++) {
        openai_request request;
        openai_error error;
        if (openai_parse_request(endpoints[e], (const char *)data, size, VOCAB, &request, &error) == 0) {
            check_request(endpoints[e], &request);
            build(&request, data, size);
            openai_request_free(&request);
        } else {
            check_error(&error);
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
            if (openai_parse_object(endpoints[e], root, VOCAB, &request, &error) == 0) {
                check_request(endpoints[e], &request);
                build(&request, data, size);
                openai_request_free(&request);
            } else {
                check_error(&error);
            }
        }
        json_decref(root);
    }
    return 0;
}
