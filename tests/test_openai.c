/* test_openai.c: OpenAI request parsing and response building (coordinator/openai.h).
 *
 * Every accepted field's happy path and default; a table of malformed bodies, each with its
 * expected status and `param`; the response and stream chunk objects of both endpoints compared
 * field by field (with and without logprobs and include_usage); UTF-8 edge cases on both sides;
 * and a fuzz-ish loop over truncations and random mutations of valid bodies (run it under
 * `make test SANITIZE=1`). Expected values were written from OpenAI's API reference, not from
 * this implementation's output.
 */
#include <criterion/criterion.h>

#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "openai.h"

enum { VOCAB = 32000 };

/* ---- helpers ----------------------------------------------------------------------------------- */

static int parse_n(openai_endpoint endpoint, const char *body, size_t length, openai_request *request,
                   openai_error *error) {
    memset(error, 0, sizeof *error);
    return openai_parse_request(endpoint, body, length, VOCAB, request, error);
}

static void parse_ok(openai_endpoint endpoint, const char *body, openai_request *request) {
    openai_error error;
    int status = parse_n(endpoint, body, strlen(body), request, &error);
    cr_assert_eq(status, 0, "body %s: expected success, got %d %s (param %s)", body, error.status, error.message,
                 error.param != NULL ? error.param : "null");
}

static void parse_fails(openai_endpoint endpoint, const char *body, size_t length, const char *param,
                        const char *message_part) {
    openai_request request;
    openai_error error;
    int status = parse_n(endpoint, body, length, &request, &error);
    cr_assert_eq(status, -1, "body %.*s: expected a 400", (int)length, body);
    cr_assert_eq(error.status, 400, "body %.*s: status %d (%s)", (int)length, body, error.status, error.message);
    cr_assert_str_eq(error.type, "invalid_request_error", "body %.*s", (int)length, body);
    if (param == NULL)
        cr_assert_null(error.param, "body %.*s: param %s, expected null (%s)", (int)length, body,
                       error.param != NULL ? error.param : "", error.message);
    else {
        cr_assert_not_null(error.param, "body %.*s: param null, expected %s (%s)", (int)length, body, param,
                           error.message);
        cr_assert_str_eq(error.param, param, "body %.*s: %s", (int)length, body, error.message);
    }
    cr_assert_gt(strlen(error.message), 0u);
    json_t *utf8 = json_string(error.message); /* NULL when the message is not valid UTF-8 */
    cr_assert_not_null(utf8, "body %.*s: error message is not valid UTF-8", (int)length, body);
    json_decref(utf8);
    if (message_part != NULL)
        cr_assert_not_null(strstr(error.message, message_part), "body %.*s: message \"%s\" lacks \"%s\"", (int)length,
                           body, error.message, message_part);
    /* nothing to free, and the struct is zeroed */
    cr_assert_null(request.prompt);
    cr_assert_null(request.messages);
    cr_assert_null(request.model);
    cr_assert_eq(request.n_stop, 0);
}

static json_t *get(json_t *object, const char *key) {
    cr_assert(json_is_object(object), "not an object looking up '%s'", key);
    json_t *value = json_object_get(object, key);
    cr_assert_not_null(value, "missing key '%s'", key);
    return value;
}

static void expect_string(json_t *object, const char *key, const char *expected) {
    json_t *value = get(object, key);
    cr_assert(json_is_string(value), "'%s' is not a string", key);
    cr_assert_str_eq(json_string_value(value), expected, "'%s'", key);
}

static void expect_integer(json_t *object, const char *key, long long expected) {
    json_t *value = get(object, key);
    cr_assert(json_is_integer(value), "'%s' is not an integer", key);
    cr_assert_eq(json_integer_value(value), expected, "'%s' is %lld, expected %lld", key,
                 (long long)json_integer_value(value), expected);
}

static void expect_real(json_t *value, double expected, const char *what) {
    cr_assert(json_is_real(value), "%s is not a real", what);
    cr_assert_eq(json_real_value(value), expected, "%s is %g, expected %g", what, json_real_value(value), expected);
}

static void expect_null(json_t *object, const char *key) {
    cr_assert(json_is_null(get(object, key)), "'%s' should be null", key);
}

static void expect_keys(json_t *object, const char *const *keys, size_t n) {
    cr_assert(json_is_object(object));
    for (size_t i = 0; i < n; i++) cr_assert_not_null(json_object_get(object, keys[i]), "missing key '%s'", keys[i]);
    cr_assert_eq(json_object_size(object), n, "object has %zu keys, expected %zu", json_object_size(object), n);
}
#define EXPECT_KEYS(object, ...)                                                       \
    do {                                                                               \
        static const char *const keys_[] = {__VA_ARGS__};                              \
        expect_keys(object, keys_, sizeof keys_ / sizeof keys_[0]);                    \
    } while (0)

static void expect_int_array(json_t *array, const long long *expected, size_t n, const char *what) {
    cr_assert(json_is_array(array), "%s is not an array", what);
    cr_assert_eq(json_array_size(array), n, "%s has %zu items, expected %zu", what, json_array_size(array), n);
    for (size_t i = 0; i < n; i++) {
        json_t *item = json_array_get(array, i);
        cr_assert(json_is_integer(item), "%s[%zu] not an integer", what, i);
        cr_assert_eq(json_integer_value(item), expected[i], "%s[%zu]", what, i);
    }
}

static void expect_string_array(json_t *array, const char *const *expected, size_t n, const char *what) {
    cr_assert(json_is_array(array), "%s is not an array", what);
    cr_assert_eq(json_array_size(array), n, "%s size", what);
    for (size_t i = 0; i < n; i++) {
        json_t *item = json_array_get(array, i);
        cr_assert(json_is_string(item), "%s[%zu] not a string", what, i);
        cr_assert_str_eq(json_string_value(item), expected[i], "%s[%zu]", what, i);
    }
}

/* Dumps and re-reads the value: what a client would receive must be valid UTF-8 JSON. */
static json_t *round_trip(json_t *value) {
    cr_assert_not_null(value, "builder returned NULL");
    char *text = json_dumps(value, JSON_COMPACT);
    cr_assert_not_null(text, "json_dumps failed");
    json_error_t error;
    json_t *back = json_loads(text, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &error);
    cr_assert_not_null(back, "response does not re-parse: %s in %s", error.text, text);
    cr_assert(json_equal(value, back));
    free(text);
    json_decref(value);
    return back;
}

/* ---- requests: happy paths and defaults -------------------------------------------------------- */

Test(openai_parse, completions_every_field) {
    const char *body = "{\"model\":\"lite16\",\"prompt\":\"Once upon a time\",\"max_tokens\":32,\"temperature\":0.5,"
                       "\"top_p\":0.25,\"top_k\":40,\"seed\":1234,\"stop\":[\"\\n\",\"THE END\"],\"logprobs\":2,"
                       "\"stream\":true,\"stream_options\":{\"include_usage\":true},\"user\":\"alice\",\"n\":1,"
                       "\"echo\":false,\"presence_penalty\":0.5,\"frequency_penalty\":-1,"
                       "\"logit_bias\":{\"50256\":-100},\"best_of\":1,\"suffix\":\"\",\"ramp\":{\"exit\":\"conf\"},"
                       "\"unknown_field\":[1,{\"x\":null}]}";
    openai_request r;
    parse_ok(OPENAI_COMPLETIONS, body, &r);
    cr_assert_eq(r.endpoint, OPENAI_COMPLETIONS);
    cr_assert_str_eq(r.model, "lite16");
    cr_assert_str_eq(r.prompt, "Once upon a time");
    cr_assert_eq(r.prompt_length, 16u);
    cr_assert_null(r.prompt_tokens);
    cr_assert_eq(r.n_prompt_tokens, 0);
    cr_assert_null(r.messages);
    cr_assert_eq(r.max_tokens, 32);
    cr_assert_eq(r.temperature, 0.5f);
    cr_assert_eq(r.top_p, 0.25f);
    cr_assert_eq(r.top_k, 40);
    cr_assert(r.seed_given);
    cr_assert_eq(r.seed, 1234u);
    cr_assert_eq(r.n_stop, 2);
    cr_assert_str_eq(r.stop[0], "\n");
    cr_assert_str_eq(r.stop[1], "THE END");
    cr_assert_null(r.stop[2]);
    cr_assert_eq(r.logprobs, 2);
    cr_assert(r.stream);
    cr_assert(r.include_usage);
    cr_assert_str_eq(r.user, "alice");
    cr_assert_eq(r.exit, OPENAI_EXIT_CONF);
    openai_request_free(&r);
    cr_assert_null(r.model);
    cr_assert_null(r.prompt);
}

Test(openai_parse, completions_defaults) {
    openai_request r;
    parse_ok(OPENAI_COMPLETIONS, "{\"prompt\":\"hi\"}", &r);
    cr_assert_null(r.model);
    cr_assert_str_eq(r.prompt, "hi");
    cr_assert_eq(r.prompt_length, 2u);
    cr_assert_eq(r.max_tokens, -1);
    cr_assert_eq(r.temperature, 1.0f);
    cr_assert_eq(r.top_p, 1.0f);
    cr_assert_eq(r.top_k, 0);
    cr_assert(!r.seed_given);
    cr_assert_eq(r.seed, 0u);
    cr_assert_eq(r.n_stop, 0);
    cr_assert_eq(r.logprobs, -1);
    cr_assert(!r.stream);
    cr_assert(!r.include_usage);
    cr_assert_null(r.user);
    cr_assert_eq(r.exit, OPENAI_EXIT_DEFAULT);
    openai_request_free(&r);
}

Test(openai_parse, null_fields_take_defaults) {
    const char *body = "{\"prompt\":\"hi\",\"model\":null,\"max_tokens\":null,\"max_completion_tokens\":null,"
                       "\"temperature\":null,\"top_p\":null,\"top_k\":null,\"seed\":null,\"stop\":null,"
                       "\"logprobs\":null,\"stream\":null,\"stream_options\":null,\"user\":null,\"n\":null,"
                       "\"echo\":null,\"presence_penalty\":null,\"logit_bias\":null,\"tools\":null,\"ramp\":null}";
    openai_request r;
    parse_ok(OPENAI_COMPLETIONS, body, &r);
    cr_assert_null(r.model);
    cr_assert_eq(r.max_tokens, -1);
    cr_assert_eq(r.temperature, 1.0f);
    cr_assert_eq(r.top_p, 1.0f);
    cr_assert(!r.seed_given);
    cr_assert_eq(r.n_stop, 0);
    cr_assert_eq(r.logprobs, -1);
    cr_assert(!r.stream);
    cr_assert_eq(r.exit, OPENAI_EXIT_DEFAULT);
    openai_request_free(&r);
}

Test(openai_parse, temperature_zero_is_greedy_and_bounds_are_inclusive) {
    openai_request r;
    parse_ok(OPENAI_COMPLETIONS, "{\"prompt\":\"x\",\"temperature\":0,\"top_p\":1}", &r);
    cr_assert_eq(r.temperature, 0.0f);
    cr_assert_eq(r.top_p, 1.0f);
    openai_request_free(&r);
    parse_ok(OPENAI_COMPLETIONS, "{\"prompt\":\"x\",\"temperature\":2.0,\"top_p\":1e-9}", &r);
    cr_assert_eq(r.temperature, 2.0f);
    cr_assert_gt(r.top_p, 0.0f);
    openai_request_free(&r);
    /* positive but below float's range: still positive after conversion */
    parse_ok(OPENAI_COMPLETIONS, "{\"prompt\":\"x\",\"top_p\":1e-300}", &r);
    cr_assert_gt(r.top_p, 0.0f);
    openai_request_free(&r);
}

Test(openai_parse, max_tokens_zero_huge_and_max_completion_tokens) {
    openai_request r;
    parse_ok(OPENAI_COMPLETIONS, "{\"prompt\":\"x\",\"max_tokens\":0}", &r);
    cr_assert_eq(r.max_tokens, 0);
    openai_request_free(&r);
    parse_ok(OPENAI_COMPLETIONS, "{\"prompt\":\"x\",\"max_tokens\":1000000000000}", &r);
    cr_assert_eq(r.max_tokens, INT_MAX);
    openai_request_free(&r);
    parse_ok(OPENAI_CHAT,
             "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"max_tokens\":10,\"max_completion_tokens\":7}", &r);
    cr_assert_eq(r.max_tokens, 7);
    openai_request_free(&r);
    parse_ok(OPENAI_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"max_completion_tokens\":9}", &r);
    cr_assert_eq(r.max_tokens, 9);
    openai_request_free(&r);
}

Test(openai_parse, seed_and_top_k_values) {
    openai_request r;
    parse_ok(OPENAI_COMPLETIONS, "{\"prompt\":\"x\",\"seed\":-1,\"top_k\":0}", &r);
    cr_assert(r.seed_given);
    cr_assert_eq(r.seed, UINT64_MAX);
    cr_assert_eq(r.top_k, 0);
    openai_request_free(&r);
    parse_ok(OPENAI_COMPLETIONS, "{\"prompt\":\"x\",\"seed\":0,\"top_k\":99999999999}", &r);
    cr_assert(r.seed_given);
    cr_assert_eq(r.seed, 0u);
    cr_assert_eq(r.top_k, INT_MAX);
    openai_request_free(&r);
}

Test(openai_parse, token_prompts) {
    openai_request r;
    parse_ok(OPENAI_COMPLETIONS, "{\"prompt\":[1,0,31999]}", &r);
    cr_assert_null(r.prompt);
    cr_assert_eq(r.n_prompt_tokens, 3);
    cr_assert_eq(r.prompt_tokens[0], 1);
    cr_assert_eq(r.prompt_tokens[1], 0);
    cr_assert_eq(r.prompt_tokens[2], 31999);
    openai_request_free(&r);
    /* a one-element batch is that one prompt */
    parse_ok(OPENAI_COMPLETIONS, "{\"prompt\":[[7,8]]}", &r);
    cr_assert_eq(r.n_prompt_tokens, 2);
    cr_assert_eq(r.prompt_tokens[0], 7);
    cr_assert_eq(r.prompt_tokens[1], 8);
    openai_request_free(&r);
    parse_ok(OPENAI_COMPLETIONS, "{\"prompt\":[\"only one\"]}", &r);
    cr_assert_str_eq(r.prompt, "only one");
    cr_assert_eq(r.prompt_length, 8u);
    cr_assert_null(r.prompt_tokens);
    openai_request_free(&r);
}

Test(openai_parse, vocab_size_bounds_token_ids) {
    openai_request r;
    openai_error e;
    cr_assert_eq(openai_parse_request(OPENAI_COMPLETIONS, "{\"prompt\":[3]}", 14, 4, &r, &e), 0);
    openai_request_free(&r);
    cr_assert_eq(openai_parse_request(OPENAI_COMPLETIONS, "{\"prompt\":[4]}", 14, 4, &r, &e), -1);
    cr_assert_str_eq(e.param, "prompt");
    cr_assert_not_null(strstr(e.message, "[0, 4)"), "%s", e.message);
    cr_assert_eq(openai_parse_request(OPENAI_COMPLETIONS, "{\"prompt\":[0]}", 14, 0, &r, &e), -1);
}

Test(openai_parse, stop_forms) {
    openai_request r;
    parse_ok(OPENAI_COMPLETIONS, "{\"prompt\":\"x\",\"stop\":\"END\"}", &r);
    cr_assert_eq(r.n_stop, 1);
    cr_assert_str_eq(r.stop[0], "END");
    openai_request_free(&r);
    parse_ok(OPENAI_COMPLETIONS, "{\"prompt\":\"x\",\"stop\":[\"a\",\"b\",\"c\",\"d\"]}", &r);
    cr_assert_eq(r.n_stop, 4);
    cr_assert_str_eq(r.stop[3], "d");
    openai_request_free(&r);
    parse_ok(OPENAI_COMPLETIONS, "{\"prompt\":\"x\",\"stop\":[]}", &r);
    cr_assert_eq(r.n_stop, 0);
    openai_request_free(&r);
}

Test(openai_parse, exit_values) {
    static const struct {
        const char *body;
        openai_exit exit;
    } cases[] = {
        {"{\"prompt\":\"x\",\"ramp\":{\"exit\":\"none\"}}", OPENAI_EXIT_NONE},
        {"{\"prompt\":\"x\",\"ramp\":{\"exit\":\"svm\"}}", OPENAI_EXIT_SVM},
        {"{\"prompt\":\"x\",\"ramp\":{\"exit\":\"conf\"}}", OPENAI_EXIT_CONF},
        {"{\"prompt\":\"x\",\"ramp\":{}}", OPENAI_EXIT_DEFAULT},
        {"{\"prompt\":\"x\",\"ramp\":{\"exit\":null,\"other\":5}}", OPENAI_EXIT_DEFAULT},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        openai_request r;
        parse_ok(OPENAI_COMPLETIONS, cases[i].body, &r);
        cr_assert_eq(r.exit, cases[i].exit, "%s", cases[i].body);
        openai_request_free(&r);
    }
}

Test(openai_parse, completions_logprobs_range) {
    openai_request r;
    parse_ok(OPENAI_COMPLETIONS, "{\"prompt\":\"x\",\"logprobs\":0}", &r);
    cr_assert_eq(r.logprobs, 0);
    openai_request_free(&r);
    parse_ok(OPENAI_COMPLETIONS, "{\"prompt\":\"x\",\"logprobs\":5}", &r);
    cr_assert_eq(r.logprobs, 5);
    openai_request_free(&r);
}

Test(openai_parse, chat_every_field) {
    const char *body =
        "{\"model\":\"lite16\",\"messages\":["
        "{\"role\":\"system\",\"content\":\"Be brief.\"},"
        "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"Hello\"},{\"type\":\"text\",\"text\":\"there\"}],"
        "\"name\":\"bob\"},"
        "{\"role\":\"assistant\",\"content\":\"\"},"
        "{\"role\":\"user\",\"content\":\"Again?\"}],"
        "\"max_completion_tokens\":12,\"temperature\":0,\"top_p\":0.5,\"seed\":7,\"stop\":\"\\n\\n\","
        "\"logprobs\":true,\"top_logprobs\":3,\"stream\":true,\"stream_options\":{\"include_usage\":false},"
        "\"user\":\"u1\",\"n\":1,\"response_format\":{\"type\":\"text\"},\"tools\":[],\"tool_choice\":\"none\","
        "\"parallel_tool_calls\":false,\"ramp\":{\"exit\":\"svm\"}}";
    openai_request r;
    parse_ok(OPENAI_CHAT, body, &r);
    cr_assert_eq(r.endpoint, OPENAI_CHAT);
    cr_assert_str_eq(r.model, "lite16");
    cr_assert_null(r.prompt);
    cr_assert_null(r.prompt_tokens);
    cr_assert_eq(r.n_messages, 4);
    cr_assert_str_eq(r.messages[0].role, "system");
    cr_assert_eq(r.messages[0].content_length, 9u);
    cr_assert_eq(memcmp(r.messages[0].content, "Be brief.", 9), 0);
    cr_assert_str_eq(r.messages[1].role, "user");
    cr_assert_eq(r.messages[1].content_length, 11u);
    cr_assert_eq(memcmp(r.messages[1].content, "Hello\nthere", 11), 0);
    cr_assert_str_eq(r.messages[2].role, "assistant");
    cr_assert_eq(r.messages[2].content_length, 0u);
    cr_assert_not_null(r.messages[2].content);
    cr_assert_str_eq(r.messages[3].role, "user");
    cr_assert_eq(r.messages[3].content_length, 6u);
    cr_assert_eq(memcmp(r.messages[3].content, "Again?", 6), 0);
    cr_assert_eq(r.max_tokens, 12);
    cr_assert_eq(r.temperature, 0.0f);
    cr_assert_eq(r.top_p, 0.5f);
    cr_assert(r.seed_given);
    cr_assert_eq(r.seed, 7u);
    cr_assert_eq(r.n_stop, 1);
    cr_assert_str_eq(r.stop[0], "\n\n");
    cr_assert_eq(r.logprobs, 3);
    cr_assert(r.stream);
    cr_assert(!r.include_usage);
    cr_assert_str_eq(r.user, "u1");
    cr_assert_eq(r.exit, OPENAI_EXIT_SVM);
    openai_request_free(&r);
}

Test(openai_parse, chat_defaults_and_logprobs_forms) {
    openai_request r;
    parse_ok(OPENAI_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}", &r);
    cr_assert_eq(r.n_messages, 1);
    cr_assert_eq(r.max_tokens, -1);
    cr_assert_eq(r.temperature, 1.0f);
    cr_assert_eq(r.top_p, 1.0f);
    cr_assert_eq(r.logprobs, -1);
    cr_assert(!r.stream);
    cr_assert_eq(r.exit, OPENAI_EXIT_DEFAULT);
    openai_request_free(&r);
    parse_ok(OPENAI_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"logprobs\":true}", &r);
    cr_assert_eq(r.logprobs, 0);
    openai_request_free(&r);
    parse_ok(OPENAI_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"logprobs\":false}", &r);
    cr_assert_eq(r.logprobs, -1);
    openai_request_free(&r);
    parse_ok(OPENAI_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"logprobs\":true,\"top_logprobs\":20}",
             &r);
    cr_assert_eq(r.logprobs, 20);
    openai_request_free(&r);
    parse_ok(OPENAI_CHAT,
             "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"logprobs\":false,\"top_logprobs\":null}", &r);
    cr_assert_eq(r.logprobs, -1);
    openai_request_free(&r);
}

Test(openai_parse, endpoint_specific_fields_are_ignored_elsewhere) {
    openai_request r;
    /* chat: prompt and echo are not chat fields */
    parse_ok(OPENAI_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"prompt\":5,\"echo\":true}", &r);
    cr_assert_null(r.prompt);
    openai_request_free(&r);
    /* completions: messages and top_logprobs are not completions fields */
    parse_ok(OPENAI_COMPLETIONS, "{\"prompt\":\"x\",\"messages\":5,\"top_logprobs\":\"many\"}", &r);
    cr_assert_null(r.messages);
    cr_assert_eq(r.logprobs, -1);
    openai_request_free(&r);
}

Test(openai_parse, ignored_fields_of_the_right_type) {
    openai_request r;
    parse_ok(OPENAI_CHAT,
             "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"presence_penalty\":2,\"frequency_penalty\":-0.5,"
             "\"logit_bias\":{\"1\":5},\"response_format\":{\"type\":\"json_object\"},\"tools\":[{\"type\":\"function\"}],"
             "\"tool_choice\":{\"type\":\"function\"},\"function_call\":\"auto\",\"functions\":[],\"store\":true,"
             "\"metadata\":{},\"service_tier\":\"auto\",\"x-anything\":{\"deep\":[[[]]]},\"ramp\":{\"future\":1}}",
             &r);
    openai_request_free(&r);
}

/* ---- requests: malformed bodies ---------------------------------------------------------------- */

typedef struct {
    openai_endpoint endpoint;
    const char *body;
    const char *param;        /* NULL: the error's param must be null */
    const char *message_part; /* NULL: any message */
} bad_case;

#define C OPENAI_COMPLETIONS
#define H OPENAI_CHAT
#define MSG_USER "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]"

static const bad_case BAD[] = {
    /* not JSON, not an object */
    {C, "not json", NULL, "parse"},
    {C, "{\"prompt\":\"a\",}", NULL, "parse"},
    {C, "{\"prompt\":\"a\"", NULL, "parse"},
    {C, "{\"prompt\":\"a\"} trailing", NULL, "parse"},
    {C, "[{\"prompt\":\"a\"}]", NULL, "JSON object"},
    {C, "\"a prompt\"", NULL, "JSON object"},
    {C, "42", NULL, "JSON object"},
    {C, "null", NULL, "JSON object"},
    {C, "{\"prompt\":\"a\",\"prompt\":\"b\"}", NULL, "repeats"},
    {C, "{\"prompt\":\"a\\u0000b\"}", NULL, NULL},
    {C, "{\"prompt\":\"\\ud800\"}", NULL, NULL},
    {H, "{\"messages\":[{\"role\":\"user\",\"content\":\"\\q\"}]}", NULL, "parse"},
    /* prompt */
    {C, "{}", "prompt", "Missing"},
    {C, "{\"prompt\":null}", "prompt", "Missing"},
    {C, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}", "prompt", "Missing"},
    {C, "{\"prompt\":\"\"}", "prompt", "empty"},
    {C, "{\"prompt\":[]}", "prompt", "empty"},
    {C, "{\"prompt\":[[]]}", "prompt", "empty"},
    {C, "{\"prompt\":[\"a\",\"b\"]}", "prompt", "only one prompt"},
    {C, "{\"prompt\":[[1],[2]]}", "prompt", "only one prompt"},
    {C, "{\"prompt\":[1,[2]]}", "prompt", "only one prompt"},
    {C, "{\"prompt\":[1,-1]}", "prompt", "outside the vocabulary"},
    {C, "{\"prompt\":[1,32000]}", "prompt", "outside the vocabulary"},
    {C, "{\"prompt\":[1,2.5]}", "prompt", "token ids"},
    {C, "{\"prompt\":[true]}", "prompt", "token ids"},
    {C, "{\"prompt\":5}", "prompt", "Invalid type"},
    {C, "{\"prompt\":{\"text\":\"a\"}}", "prompt", "Invalid type"},
    /* sampling and length */
    {C, "{\"prompt\":\"a\",\"max_tokens\":\"ten\"}", "max_tokens", "expected an integer, but got a string"},
    {C, "{\"prompt\":\"a\",\"max_tokens\":-1}", "max_tokens", NULL},
    {C, "{\"prompt\":\"a\",\"max_tokens\":1.5}", "max_tokens", "Invalid type"},
    {H, "{" MSG_USER ",\"max_completion_tokens\":-5}", "max_completion_tokens", NULL},
    {H, "{" MSG_USER ",\"max_completion_tokens\":true}", "max_completion_tokens", NULL},
    {C, "{\"prompt\":\"a\",\"temperature\":\"hot\"}", "temperature", "expected a number"},
    {C, "{\"prompt\":\"a\",\"temperature\":-0.1}", "temperature", "between 0 and 2"},
    {C, "{\"prompt\":\"a\",\"temperature\":2.5}", "temperature", "between 0 and 2"},
    {C, "{\"prompt\":\"a\",\"top_p\":0}", "top_p", NULL},
    {C, "{\"prompt\":\"a\",\"top_p\":-1}", "top_p", NULL},
    {C, "{\"prompt\":\"a\",\"top_p\":1.5}", "top_p", NULL},
    {C, "{\"prompt\":\"a\",\"top_p\":[1]}", "top_p", "Invalid type"},
    {C, "{\"prompt\":\"a\",\"top_k\":-1}", "top_k", NULL},
    {C, "{\"prompt\":\"a\",\"top_k\":\"3\"}", "top_k", NULL},
    {C, "{\"prompt\":\"a\",\"seed\":1.5}", "seed", NULL},
    {C, "{\"prompt\":\"a\",\"seed\":\"42\"}", "seed", NULL},
    /* stop */
    {C, "{\"prompt\":\"a\",\"stop\":5}", "stop", "Invalid type"},
    {C, "{\"prompt\":\"a\",\"stop\":\"\"}", "stop", "empty"},
    {C, "{\"prompt\":\"a\",\"stop\":[\"a\",\"b\",\"c\",\"d\",\"e\"]}", "stop", "at most 4"},
    {C, "{\"prompt\":\"a\",\"stop\":[\"a\",\"\"]}", "stop", "empty"},
    {C, "{\"prompt\":\"a\",\"stop\":[\"a\",1]}", "stop", NULL},
    {C, "{\"prompt\":\"a\",\"stop\":{\"a\":1}}", "stop", NULL},
    /* logprobs */
    {C, "{\"prompt\":\"a\",\"logprobs\":6}", "logprobs", "between 0 and 5"},
    {C, "{\"prompt\":\"a\",\"logprobs\":-1}", "logprobs", NULL},
    {C, "{\"prompt\":\"a\",\"logprobs\":true}", "logprobs", "Invalid type"},
    {H, "{" MSG_USER ",\"logprobs\":1}", "logprobs", "boolean"},
    {H, "{" MSG_USER ",\"logprobs\":true,\"top_logprobs\":21}", "top_logprobs", "between 0 and 20"},
    {H, "{" MSG_USER ",\"logprobs\":true,\"top_logprobs\":-1}", "top_logprobs", NULL},
    {H, "{" MSG_USER ",\"top_logprobs\":2}", "top_logprobs", "logprobs"},
    {H, "{" MSG_USER ",\"logprobs\":true,\"top_logprobs\":\"2\"}", "top_logprobs", NULL},
    /* stream */
    {C, "{\"prompt\":\"a\",\"stream\":1}", "stream", "expected a boolean"},
    {H, "{" MSG_USER ",\"stream\":\"true\"}", "stream", NULL},
    {C, "{\"prompt\":\"a\",\"stream\":true,\"stream_options\":[]}", "stream_options", NULL},
    {C, "{\"prompt\":\"a\",\"stream\":true,\"stream_options\":{\"include_usage\":1}}", "stream_options", NULL},
    /* n, echo, model, user */
    {C, "{\"prompt\":\"a\",\"n\":2}", "n", "must be 1"},
    {H, "{" MSG_USER ",\"n\":0}", "n", NULL},
    {C, "{\"prompt\":\"a\",\"n\":\"1\"}", "n", "Invalid type"},
    {C, "{\"prompt\":\"a\",\"echo\":true}", "echo", "not supported"},
    {C, "{\"prompt\":\"a\",\"echo\":\"no\"}", "echo", NULL},
    {C, "{\"prompt\":\"a\",\"model\":5}", "model", NULL},
    {H, "{" MSG_USER ",\"model\":[\"m\"]}", "model", NULL},
    {C, "{\"prompt\":\"a\",\"user\":5}", "user", NULL},
    /* fields ramp ignores are still type-checked */
    {C, "{\"prompt\":\"a\",\"presence_penalty\":\"high\"}", "presence_penalty", NULL},
    {C, "{\"prompt\":\"a\",\"frequency_penalty\":[]}", "frequency_penalty", NULL},
    {C, "{\"prompt\":\"a\",\"logit_bias\":[]}", "logit_bias", NULL},
    {C, "{\"prompt\":\"a\",\"best_of\":1.5}", "best_of", NULL},
    {H, "{" MSG_USER ",\"response_format\":\"json\"}", "response_format", NULL},
    {H, "{" MSG_USER ",\"tools\":{}}", "tools", NULL},
    {H, "{" MSG_USER ",\"tool_choice\":3}", "tool_choice", NULL},
    /* the ramp extension */
    {C, "{\"prompt\":\"a\",\"ramp\":\"svm\"}", "ramp", NULL},
    {H, "{" MSG_USER ",\"ramp\":[]}", "ramp", NULL},
    {C, "{\"prompt\":\"a\",\"ramp\":{\"exit\":\"fast\"}}", "ramp.exit", "\"none\", \"svm\" or \"conf\""},
    {C, "{\"prompt\":\"a\",\"ramp\":{\"exit\":\"svm \"}}", "ramp.exit", NULL},
    {C, "{\"prompt\":\"a\",\"ramp\":{\"exit\":1}}", "ramp.exit", NULL},
    /* messages */
    {H, "{}", "messages", "Missing"},
    {H, "{\"prompt\":\"hi\"}", "messages", "Missing"},
    {H, "{\"messages\":{}}", "messages", "Invalid type"},
    {H, "{\"messages\":\"hi\"}", "messages", "Invalid type"},
    {H, "{\"messages\":[]}", "messages", "empty"},
    {H, "{\"messages\":[\"hi\"]}", "messages", "messages[0] must be an object"},
    {H, "{\"messages\":[{\"content\":\"hi\"}]}", "messages", "messages[0] has no 'role'"},
    {H, "{\"messages\":[{\"role\":\"user\",\"content\":\"a\"},{\"role\":\"user\"}]}", "messages",
     "messages[1] has no 'content'"},
    {H, "{\"messages\":[{\"role\":\"user\",\"content\":null}]}", "messages", "has no 'content'"},
    {H, "{\"messages\":[{\"role\":\"tool\",\"content\":\"x\"}]}", "messages", "'tool'"},
    {H, "{\"messages\":[{\"role\":\"User\",\"content\":\"x\"}]}", "messages", "'User'"},
    {H, "{\"messages\":[{\"role\":\"\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9"
        "\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\",\"content\":\"x\"}]}",
     "messages", "'\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
                 "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9...'"},
    {H, "{\"messages\":[{\"role\":5,\"content\":\"x\"}]}", "messages", "role must be a string"},
    {H, "{\"messages\":[{\"role\":\"user\",\"content\":5}]}", "messages", "content must be"},
    {H, "{\"messages\":[{\"role\":\"user\",\"content\":[]}]}", "messages", "empty"},
    {H, "{\"messages\":[{\"role\":\"user\",\"content\":[\"hi\"]}]}", "messages", "content[0] must be an object"},
    {H, "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\",\"image_url\":{\"url\":\"x\"}}]}]}",
     "messages", "only text parts"},
    {H, "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\"}]}]}", "messages", "no string 'text'"},
    {H, "{\"messages\":[{\"role\":\"user\",\"content\":[{\"text\":\"x\"}]}]}", "messages", "no string 'type'"},
};

Test(openai_parse, malformed_bodies_table) {
    size_t n = sizeof BAD / sizeof BAD[0];
    cr_assert_geq(n, 35u);
    for (size_t i = 0; i < n; i++)
        parse_fails(BAD[i].endpoint, BAD[i].body, strlen(BAD[i].body), BAD[i].param, BAD[i].message_part);
}

Test(openai_parse, empty_and_null_bodies) {
    parse_fails(OPENAI_COMPLETIONS, "", 0, NULL, "empty");
    parse_fails(OPENAI_CHAT, NULL, 0, NULL, "empty");
    /* a NUL byte inside the body */
    static const char body[] = "{\"prompt\":\"a\0b\"}";
    parse_fails(OPENAI_COMPLETIONS, body, sizeof body - 1, NULL, NULL);
    /* only part of the buffer is the body: the length is honoured */
    openai_request r;
    openai_error e;
    const char *longer = "{\"prompt\":\"ab\"}GARBAGE";
    cr_assert_eq(parse_n(OPENAI_COMPLETIONS, longer, 15, &r, &e), 0, "%s", e.message);
    cr_assert_str_eq(r.prompt, "ab");
    openai_request_free(&r);
}

Test(openai_parse, deep_nesting_is_a_clean_400) {
    size_t depth = 100000;
    char *body = malloc(depth * 2 + 32);
    size_t at = (size_t)sprintf(body, "{\"prompt\":\"a\",\"x\":");
    for (size_t i = 0; i < depth; i++) body[at++] = '[';
    for (size_t i = 0; i < depth; i++) body[at++] = ']';
    body[at++] = '}';
    parse_fails(OPENAI_COMPLETIONS, body, at, NULL, NULL);
    free(body);
}

/* ---- requests: parse_object with values jansson's decoder would not produce --------------------- */

Test(openai_parse, object_entry_point) {
    openai_request r;
    openai_error e;
    json_t *body = json_pack("{s:s, s:i}", "prompt", "hello", "max_tokens", 3);
    cr_assert_eq(openai_parse_object(OPENAI_COMPLETIONS, body, VOCAB, &r, &e), 0, "%s", e.message);
    cr_assert_str_eq(r.prompt, "hello");
    cr_assert_eq(r.max_tokens, 3);
    openai_request_free(&r);
    json_decref(body);

    cr_assert_eq(openai_parse_object(OPENAI_CHAT, NULL, VOCAB, &r, &e), -1);
    cr_assert_eq(e.status, 400);
    json_t *array = json_array();
    cr_assert_eq(openai_parse_object(OPENAI_CHAT, array, VOCAB, &r, &e), -1);
    cr_assert_eq(e.status, 400);
    cr_assert_null(e.param);
    json_decref(array);

    /* an embedded NUL (possible with JSON_ALLOW_NUL) in a field read as a C string */
    body = json_object();
    json_object_set_new(body, "prompt", json_string("x"));
    json_object_set_new(body, "stop", json_stringn("a\0b", 3));
    cr_assert_eq(openai_parse_object(OPENAI_COMPLETIONS, body, VOCAB, &r, &e), -1);
    cr_assert_str_eq(e.param, "stop");
    cr_assert_not_null(strstr(e.message, "NUL"), "%s", e.message);
    json_decref(body);

    /* invalid UTF-8 smuggled in with json_stringn_nocheck */
    body = json_object();
    json_object_set_new(body, "prompt", json_stringn_nocheck("a\xff", 2));
    cr_assert_eq(openai_parse_object(OPENAI_COMPLETIONS, body, VOCAB, &r, &e), -1);
    cr_assert_str_eq(e.param, "prompt");
    cr_assert_not_null(strstr(e.message, "UTF-8"), "%s", e.message);
    json_decref(body);

    body = json_pack("{s:[{s:s, s:[{s:s, s:o}]}]}", "messages", "role", "user", "content", "type", "text", "text",
                     json_stringn_nocheck("\xc0\xaf", 2));
    cr_assert_not_null(body);
    cr_assert_eq(openai_parse_object(OPENAI_CHAT, body, VOCAB, &r, &e), -1);
    cr_assert_str_eq(e.param, "messages");
    json_decref(body);

    /* a role with a NUL after a valid name is not that role */
    body = json_object();
    json_t *message = json_object();
    json_object_set_new(message, "role", json_stringn("user\0x", 6));
    json_object_set_new(message, "content", json_string("hi"));
    json_t *messages = json_array();
    json_array_append_new(messages, message);
    json_object_set_new(body, "messages", messages);
    cr_assert_eq(openai_parse_object(OPENAI_CHAT, body, VOCAB, &r, &e), -1);
    cr_assert_str_eq(e.param, "messages");
    json_decref(body);
}

Test(openai_parse, request_free_is_safe) {
    openai_request r;
    memset(&r, 0, sizeof r);
    openai_request_free(&r);
    openai_request_free(&r);
    openai_request_free(NULL);
    parse_ok(OPENAI_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"stop\":[\"a\",\"b\"],\"user\":\"u\"}",
             &r);
    openai_request_free(&r);
    openai_request_free(&r); /* zeroed by the first call */
    cr_assert_eq(r.n_messages, 0);
    cr_assert_null(r.messages);
}

/* ---- errors ------------------------------------------------------------------------------------ */

Test(openai_error, fail_and_json_shape) {
    openai_error e;
    cr_assert_eq(openai_fail(&e, 400, "invalid_request_error", "temperature", "invalid_value", "bad %s %d", "x", 3), -1);
    cr_assert_eq(e.status, 400);
    cr_assert_str_eq(e.message, "bad x 3");
    cr_assert_str_eq(e.type, "invalid_request_error");
    cr_assert_str_eq(e.param, "temperature");
    cr_assert_str_eq(e.code, "invalid_value");
    json_t *json = round_trip(openai_error_json(&e));
    EXPECT_KEYS(json, "error");
    json_t *inner = get(json, "error");
    EXPECT_KEYS(inner, "message", "type", "param", "code");
    expect_string(inner, "message", "bad x 3");
    expect_string(inner, "type", "invalid_request_error");
    expect_string(inner, "param", "temperature");
    expect_string(inner, "code", "invalid_value");
    json_decref(json);

    openai_fail(&e, 429, NULL, NULL, NULL, "slow down");
    cr_assert_str_eq(e.type, "rate_limit_error");
    json = round_trip(openai_error_json(&e));
    inner = get(json, "error");
    expect_null(inner, "param");
    expect_null(inner, "code");
    expect_string(inner, "type", "rate_limit_error");
    json_decref(json);

    openai_fail(&e, 401, NULL, NULL, "invalid_api_key", "who are you");
    cr_assert_str_eq(e.type, "authentication_error");
    openai_fail(&e, 503, NULL, NULL, NULL, "busy");
    cr_assert_str_eq(e.type, "server_error");
    openai_fail(&e, 413, NULL, NULL, NULL, "too big");
    cr_assert_str_eq(e.type, "invalid_request_error");
    cr_assert_eq(openai_fail(NULL, 400, NULL, NULL, NULL, "nothing"), -1);
}

Test(openai_error, truncated_message_stays_utf8) {
    char long_text[2000];
    size_t at = 0;
    while (at + 3 < sizeof long_text) {
        memcpy(long_text + at, "\xe2\x82\xac", 3); /* € */
        at += 3;
    }
    long_text[at] = '\0';
    for (int shift = 0; shift < 3; shift++) {
        openai_error e;
        openai_fail(&e, 400, NULL, NULL, NULL, "%.*s%s", shift, "ab", long_text);
        size_t length = strlen(e.message);
        cr_assert_leq(length, sizeof e.message - 1);
        cr_assert_geq(length, sizeof e.message - 4);
        json_t *checked = json_stringn(e.message, length);
        cr_assert_not_null(checked, "shift %d: message is not valid UTF-8 after truncation", shift);
        json_decref(checked);
        json_t *json = round_trip(openai_error_json(&e));
        json_decref(json);
    }
    /* a message carrying invalid bytes still yields valid JSON */
    openai_error e;
    openai_fail(&e, 400, NULL, NULL, NULL, "bad \xff byte");
    json_t *json = round_trip(openai_error_json(&e));
    expect_string(get(json, "error"), "message", "bad \xef\xbf\xbd byte");
    json_decref(json);
}

/* ---- responses --------------------------------------------------------------------------------- */

/* logprobs are exact binary fractions so they compare exactly after float -> double */
static const openai_token TOKENS[] = {
    {450, " The", 4, -0.25f, 16},
    {11203, " cat", 4, -1.5f, 6},
    {29889, ".", 1, -0.125f, 9},
};

static openai_result sample_result(const char *id) {
    openai_result result = {
        .id = id,
        .model = "lite16",
        .created = 1700000000,
        .text = " The cat.",
        .text_length = 9,
        .finish_reason = "stop",
        .prompt_tokens = 5,
        .completion_tokens = 3,
        .tokens = TOKENS,
        .n_tokens = 3,
        .total_layers = 16,
        .layers_executed = 31,
        .exit_policy = "conf",
    };
    return result;
}

/* sample_result with its own text (length bytes, NULs allowed) and tokens. */
static openai_result result_of_tokens(const char *id, const char *text, size_t length, const openai_token *tokens,
                                      int n) {
    openai_result result = sample_result(id);
    result.text = text;
    result.text_length = length;
    result.tokens = tokens;
    result.n_tokens = n;
    return result;
}

static openai_request sample_request(openai_endpoint endpoint, int logprobs, bool include_usage) {
    openai_request request;
    memset(&request, 0, sizeof request);
    request.endpoint = endpoint;
    request.logprobs = logprobs;
    request.stream = true;
    request.include_usage = include_usage;
    request.max_tokens = -1;
    request.temperature = 1.0f;
    request.top_p = 1.0f;
    return request;
}

static void expect_usage(json_t *usage, long long prompt, long long completion) {
    EXPECT_KEYS(usage, "prompt_tokens", "completion_tokens", "total_tokens");
    expect_integer(usage, "prompt_tokens", prompt);
    expect_integer(usage, "completion_tokens", completion);
    expect_integer(usage, "total_tokens", prompt + completion);
}

static void expect_ramp_summary(json_t *ramp) {
    expect_string(ramp, "exit", "conf");
    static const long long layers[] = {16, 6, 9};
    expect_int_array(get(ramp, "exit_layers"), layers, 3, "exit_layers");
    expect_integer(ramp, "layers_executed", 31);
    expect_integer(ramp, "layers_skipped", 3 * 16 - 31);
    expect_integer(ramp, "total_layers", 16);
}

Test(openai_response, completion_without_logprobs) {
    openai_request request = sample_request(OPENAI_COMPLETIONS, -1, false);
    openai_result result = sample_result("cmpl-abc");
    json_t *root = round_trip(openai_response_json(&request, &result));
    EXPECT_KEYS(root, "id", "object", "created", "model", "choices", "usage", "ramp");
    expect_string(root, "id", "cmpl-abc");
    expect_string(root, "object", "text_completion");
    expect_integer(root, "created", 1700000000);
    expect_string(root, "model", "lite16");
    json_t *choices = get(root, "choices");
    cr_assert(json_is_array(choices));
    cr_assert_eq(json_array_size(choices), 1u);
    json_t *choice = json_array_get(choices, 0);
    EXPECT_KEYS(choice, "text", "index", "logprobs", "finish_reason");
    expect_string(choice, "text", " The cat.");
    expect_integer(choice, "index", 0);
    expect_null(choice, "logprobs");
    expect_string(choice, "finish_reason", "stop");
    expect_usage(get(root, "usage"), 5, 3);
    json_t *ramp = get(root, "ramp");
    EXPECT_KEYS(ramp, "exit", "exit_layers", "layers_executed", "layers_skipped", "total_layers");
    expect_ramp_summary(ramp);
    json_decref(root);
}

Test(openai_response, completion_with_logprobs) {
    static const char *const texts[] = {" The", " cat", "."};
    static const long long offsets[] = {0, 4, 8};
    for (int asked = 0; asked <= 5; asked += 5) {
        openai_request request = sample_request(OPENAI_COMPLETIONS, asked, false);
        openai_result result = sample_result("cmpl-abc");
        json_t *root = round_trip(openai_response_json(&request, &result));
        json_t *logprobs = get(json_array_get(get(root, "choices"), 0), "logprobs");
        EXPECT_KEYS(logprobs, "tokens", "token_logprobs", "top_logprobs", "text_offset");
        expect_string_array(get(logprobs, "tokens"), texts, 3, "tokens");
        json_t *values = get(logprobs, "token_logprobs");
        cr_assert_eq(json_array_size(values), 3u);
        expect_real(json_array_get(values, 0), -0.25, "token_logprobs[0]");
        expect_real(json_array_get(values, 1), -1.5, "token_logprobs[1]");
        expect_real(json_array_get(values, 2), -0.125, "token_logprobs[2]");
        expect_int_array(get(logprobs, "text_offset"), offsets, 3, "text_offset");
        json_t *top = get(logprobs, "top_logprobs");
        if (asked == 0) {
            cr_assert(json_is_null(top), "logprobs 0 asks for no alternatives");
        } else {
            cr_assert(json_is_array(top));
            cr_assert_eq(json_array_size(top), 3u);
            for (size_t i = 0; i < 3; i++) {
                json_t *entry = json_array_get(top, i);
                cr_assert_eq(json_object_size(entry), 1u);
                expect_real(get(entry, texts[i]), json_real_value(json_array_get(values, i)), "top_logprobs entry");
            }
        }
        json_decref(root);
    }
}

Test(openai_response, chat_without_logprobs) {
    openai_request request = sample_request(OPENAI_CHAT, -1, false);
    openai_result result = sample_result("chatcmpl-xyz");
    json_t *root = round_trip(openai_response_json(&request, &result));
    EXPECT_KEYS(root, "id", "object", "created", "model", "choices", "usage", "ramp");
    expect_string(root, "id", "chatcmpl-xyz");
    expect_string(root, "object", "chat.completion");
    expect_integer(root, "created", 1700000000);
    expect_string(root, "model", "lite16");
    json_t *choices = get(root, "choices");
    cr_assert_eq(json_array_size(choices), 1u);
    json_t *choice = json_array_get(choices, 0);
    EXPECT_KEYS(choice, "index", "message", "logprobs", "finish_reason");
    expect_integer(choice, "index", 0);
    json_t *message = get(choice, "message");
    EXPECT_KEYS(message, "role", "content", "refusal");
    expect_string(message, "role", "assistant");
    expect_string(message, "content", " The cat.");
    expect_null(message, "refusal");
    expect_null(choice, "logprobs");
    expect_string(choice, "finish_reason", "stop");
    expect_usage(get(root, "usage"), 5, 3);
    expect_ramp_summary(get(root, "ramp"));
    json_decref(root);
}

Test(openai_response, chat_with_logprobs) {
    openai_request request = sample_request(OPENAI_CHAT, 2, false);
    openai_result result = sample_result("chatcmpl-xyz");
    json_t *root = round_trip(openai_response_json(&request, &result));
    json_t *logprobs = get(json_array_get(get(root, "choices"), 0), "logprobs");
    EXPECT_KEYS(logprobs, "content", "refusal");
    expect_null(logprobs, "refusal");
    json_t *content = get(logprobs, "content");
    cr_assert_eq(json_array_size(content), 3u);
    static const char *const texts[] = {" The", " cat", "."};
    static const double values[] = {-0.25, -1.5, -0.125};
    for (size_t i = 0; i < 3; i++) {
        json_t *entry = json_array_get(content, i);
        EXPECT_KEYS(entry, "token", "logprob", "bytes", "top_logprobs");
        expect_string(entry, "token", texts[i]);
        expect_real(get(entry, "logprob"), values[i], "logprob");
        long long bytes[8];
        size_t n = strlen(texts[i]);
        for (size_t b = 0; b < n; b++) bytes[b] = (unsigned char)texts[i][b];
        expect_int_array(get(entry, "bytes"), bytes, n, "bytes");
        json_t *top = get(entry, "top_logprobs");
        cr_assert(json_is_array(top));
        cr_assert_eq(json_array_size(top), 0u);
    }
    json_decref(root);
}

Test(openai_response, layers_skipped_and_missing_fields) {
    openai_request request = sample_request(OPENAI_COMPLETIONS, 1, false);
    request.model = "from-request";
    /* a request-level exit: no tokens yet some layers ran */
    openai_result result = {.id = "cmpl-1", .created = 5, .text = "", .text_length = 0, .finish_reason = "exit",
                            .prompt_tokens = 12, .completion_tokens = 0, .tokens = NULL, .n_tokens = 0,
                            .total_layers = 16, .layers_executed = 7, .exit_policy = "svm"};
    json_t *root = round_trip(openai_response_json(&request, &result));
    expect_string(root, "model", "from-request");
    json_t *ramp = get(root, "ramp");
    expect_string(ramp, "exit", "svm");
    cr_assert_eq(json_array_size(get(ramp, "exit_layers")), 0u);
    expect_integer(ramp, "layers_executed", 7);
    expect_integer(ramp, "layers_skipped", 0);
    expect_integer(ramp, "total_layers", 16);
    json_t *choice = json_array_get(get(root, "choices"), 0);
    expect_string(choice, "finish_reason", "exit");
    expect_string(choice, "text", "");
    json_t *logprobs = get(choice, "logprobs");
    cr_assert_eq(json_array_size(get(logprobs, "tokens")), 0u);
    expect_usage(get(root, "usage"), 12, 0);
    json_decref(root);

    /* no model anywhere, no id, no finish reason, no policy: still a well-formed object */
    request.model = NULL;
    openai_result bare = {0};
    root = round_trip(openai_response_json(&request, &bare));
    expect_string(root, "id", "");
    expect_string(root, "model", "");
    expect_null(json_array_get(get(root, "choices"), 0), "finish_reason");
    expect_string(get(root, "ramp"), "exit", "none");
    json_decref(root);
    cr_assert_null(openai_response_json(&request, NULL));
}

Test(openai_response, non_finite_logprobs) {
    openai_token tokens[] = {{1, "a", 1, -INFINITY, 3}, {2, "b", 1, NAN, 3}};
    openai_request request = sample_request(OPENAI_CHAT, 0, false);
    openai_result result = sample_result("c");
    result.tokens = tokens;
    result.n_tokens = 2;
    json_t *root = round_trip(openai_response_json(&request, &result));
    json_t *content = get(get(json_array_get(get(root, "choices"), 0), "logprobs"), "content");
    expect_real(get(json_array_get(content, 0), "logprob"), -9999.0, "-inf logprob");
    cr_assert(json_is_null(get(json_array_get(content, 1), "logprob")));
    json_decref(root);
}

/* ---- stream chunks ----------------------------------------------------------------------------- */

Test(openai_stream, completion_chunks) {
    openai_request request = sample_request(OPENAI_COMPLETIONS, -1, false);
    openai_result result = sample_result("cmpl-s");
    json_t *chunk = round_trip(openai_stream_chunk_json(&request, &result, &TOKENS[1], false, false));
    EXPECT_KEYS(chunk, "id", "object", "created", "model", "choices", "ramp");
    expect_string(chunk, "id", "cmpl-s");
    expect_string(chunk, "object", "text_completion");
    expect_integer(chunk, "created", 1700000000);
    expect_string(chunk, "model", "lite16");
    cr_assert_eq(json_array_size(get(chunk, "choices")), 1u);
    json_t *choice = json_array_get(get(chunk, "choices"), 0);
    EXPECT_KEYS(choice, "index", "text", "logprobs", "finish_reason");
    expect_string(choice, "text", " cat");
    expect_integer(choice, "index", 0);
    expect_null(choice, "logprobs");
    expect_null(choice, "finish_reason");
    json_t *ramp = get(chunk, "ramp");
    EXPECT_KEYS(ramp, "exit_layer");
    expect_integer(ramp, "exit_layer", 6);
    json_decref(chunk);

    /* the closing chunk without a token */
    chunk = round_trip(openai_stream_chunk_json(&request, &result, NULL, false, true));
    EXPECT_KEYS(chunk, "id", "object", "created", "model", "choices", "ramp");
    choice = json_array_get(get(chunk, "choices"), 0);
    expect_string(choice, "text", "");
    expect_null(choice, "logprobs");
    expect_string(choice, "finish_reason", "stop");
    ramp = get(chunk, "ramp");
    EXPECT_KEYS(ramp, "exit", "exit_layers", "layers_executed", "layers_skipped", "total_layers");
    expect_ramp_summary(ramp);
    json_decref(chunk);

    /* the last token closing the stream itself */
    chunk = round_trip(openai_stream_chunk_json(&request, &result, &TOKENS[2], false, true));
    choice = json_array_get(get(chunk, "choices"), 0);
    expect_string(choice, "text", ".");
    expect_string(choice, "finish_reason", "stop");
    ramp = get(chunk, "ramp");
    EXPECT_KEYS(ramp, "exit_layer", "exit", "exit_layers", "layers_executed", "layers_skipped", "total_layers");
    expect_integer(ramp, "exit_layer", 9);
    json_decref(chunk);
}

Test(openai_stream, completion_chunks_with_logprobs_and_usage) {
    openai_request request = sample_request(OPENAI_COMPLETIONS, 1, true);
    openai_result result = sample_result("cmpl-s");
    json_t *chunk = round_trip(openai_stream_chunk_json(&request, &result, &result.tokens[2], true, false));
    EXPECT_KEYS(chunk, "id", "object", "created", "model", "choices", "usage", "ramp");
    expect_null(chunk, "usage");
    json_t *logprobs = get(json_array_get(get(chunk, "choices"), 0), "logprobs");
    EXPECT_KEYS(logprobs, "tokens", "token_logprobs", "top_logprobs", "text_offset");
    static const char *const text[] = {"."};
    expect_string_array(get(logprobs, "tokens"), text, 1, "tokens");
    expect_real(json_array_get(get(logprobs, "token_logprobs"), 0), -0.125, "token_logprobs[0]");
    static const long long offset[] = {8}; /* " The" + " cat" before it */
    expect_int_array(get(logprobs, "text_offset"), offset, 1, "text_offset");
    json_t *top = get(logprobs, "top_logprobs");
    cr_assert_eq(json_array_size(top), 1u);
    expect_real(get(json_array_get(top, 0), "."), -0.125, "top_logprobs[0]['.']");
    json_decref(chunk);

    /* a token not inside result->tokens: offset 0 */
    openai_token loose = {5, "zz", 2, -0.5f, 2};
    chunk = round_trip(openai_stream_chunk_json(&request, &result, &loose, false, false));
    static const long long zero[] = {0};
    expect_int_array(get(get(json_array_get(get(chunk, "choices"), 0), "logprobs"), "text_offset"), zero, 1,
                     "text_offset");
    json_decref(chunk);

    chunk = round_trip(openai_stream_chunk_json(&request, &result, NULL, false, true));
    EXPECT_KEYS(chunk, "id", "object", "created", "model", "choices", "usage", "ramp");
    expect_usage(get(chunk, "usage"), 5, 3);
    json_t *choice = json_array_get(get(chunk, "choices"), 0);
    expect_null(choice, "logprobs");
    expect_string(choice, "finish_reason", "stop");
    json_decref(chunk);
}

Test(openai_stream, chat_chunks) {
    openai_request request = sample_request(OPENAI_CHAT, -1, false);
    openai_result result = sample_result("chatcmpl-s");

    /* a role-only opening chunk */
    json_t *chunk = round_trip(openai_stream_chunk_json(&request, &result, NULL, true, false));
    EXPECT_KEYS(chunk, "id", "object", "created", "model", "choices");
    expect_string(chunk, "id", "chatcmpl-s");
    expect_string(chunk, "object", "chat.completion.chunk");
    expect_integer(chunk, "created", 1700000000);
    expect_string(chunk, "model", "lite16");
    json_t *choice = json_array_get(get(chunk, "choices"), 0);
    EXPECT_KEYS(choice, "index", "delta", "logprobs", "finish_reason");
    json_t *delta = get(choice, "delta");
    EXPECT_KEYS(delta, "role", "content");
    expect_string(delta, "role", "assistant");
    expect_string(delta, "content", "");
    expect_null(choice, "finish_reason");
    json_decref(chunk);

    /* first chunk carrying a token */
    chunk = round_trip(openai_stream_chunk_json(&request, &result, &TOKENS[0], true, false));
    choice = json_array_get(get(chunk, "choices"), 0);
    delta = get(choice, "delta");
    EXPECT_KEYS(delta, "role", "content");
    expect_string(delta, "role", "assistant");
    expect_string(delta, "content", " The");
    expect_null(choice, "logprobs");
    expect_integer(get(chunk, "ramp"), "exit_layer", 16);
    json_decref(chunk);

    /* a middle chunk: content only */
    chunk = round_trip(openai_stream_chunk_json(&request, &result, &TOKENS[1], false, false));
    EXPECT_KEYS(chunk, "id", "object", "created", "model", "choices", "ramp");
    choice = json_array_get(get(chunk, "choices"), 0);
    delta = get(choice, "delta");
    EXPECT_KEYS(delta, "content");
    expect_string(delta, "content", " cat");
    expect_null(choice, "finish_reason");
    EXPECT_KEYS(get(chunk, "ramp"), "exit_layer");
    expect_integer(get(chunk, "ramp"), "exit_layer", 6);
    json_decref(chunk);

    /* closing: empty delta, finish_reason, summary */
    chunk = round_trip(openai_stream_chunk_json(&request, &result, NULL, false, true));
    EXPECT_KEYS(chunk, "id", "object", "created", "model", "choices", "ramp");
    choice = json_array_get(get(chunk, "choices"), 0);
    cr_assert_eq(json_object_size(get(choice, "delta")), 0u);
    expect_string(choice, "finish_reason", "stop");
    expect_null(choice, "logprobs");
    expect_ramp_summary(get(chunk, "ramp"));
    json_decref(chunk);
}

Test(openai_stream, chat_chunks_with_logprobs_and_usage) {
    openai_request request = sample_request(OPENAI_CHAT, 0, true);
    openai_result result = sample_result("chatcmpl-s");
    json_t *chunk = round_trip(openai_stream_chunk_json(&request, &result, &TOKENS[1], false, false));
    EXPECT_KEYS(chunk, "id", "object", "created", "model", "choices", "usage", "ramp");
    expect_null(chunk, "usage");
    json_t *logprobs = get(json_array_get(get(chunk, "choices"), 0), "logprobs");
    EXPECT_KEYS(logprobs, "content", "refusal");
    json_t *content = get(logprobs, "content");
    cr_assert_eq(json_array_size(content), 1u);
    json_t *entry = json_array_get(content, 0);
    EXPECT_KEYS(entry, "token", "logprob", "bytes", "top_logprobs");
    expect_string(entry, "token", " cat");
    expect_real(get(entry, "logprob"), -1.5, "logprob");
    static const long long bytes[] = {' ', 'c', 'a', 't'};
    expect_int_array(get(entry, "bytes"), bytes, 4, "bytes");
    json_decref(chunk);

    chunk = round_trip(openai_stream_chunk_json(&request, &result, NULL, false, true));
    EXPECT_KEYS(chunk, "id", "object", "created", "model", "choices", "usage", "ramp");
    expect_usage(get(chunk, "usage"), 5, 3);
    json_t *choice = json_array_get(get(chunk, "choices"), 0);
    expect_string(choice, "finish_reason", "stop");
    expect_null(choice, "logprobs");
    json_decref(chunk);
    cr_assert_null(openai_stream_chunk_json(&request, NULL, NULL, false, true));
}

/* ---- UTF-8 ------------------------------------------------------------------------------------- */

Test(openai_utf8, valid_text_passes_through) {
    openai_request r;
    const char *body = "{\"prompt\":\"h\xc3\xa9llo \xe4\xb8\x96\xe7\x95\x8c \xf0\x9f\x98\x80 \\u00e9\\ud83d\\ude00\"}";
    parse_ok(OPENAI_COMPLETIONS, body, &r);
    const char *expected = "h\xc3\xa9llo \xe4\xb8\x96\xe7\x95\x8c \xf0\x9f\x98\x80 \xc3\xa9\xf0\x9f\x98\x80";
    cr_assert_eq(r.prompt_length, strlen(expected));
    cr_assert_str_eq(r.prompt, expected);
    openai_request_free(&r);
    /* U+FFFF and U+10FFFF, the edges of the code space, are valid */
    parse_ok(OPENAI_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"\xef\xbf\xbf\xf4\x8f\xbf\xbf\"}]}", &r);
    cr_assert_eq(r.messages[0].content_length, 7u);
    openai_request_free(&r);
}

Test(openai_utf8, invalid_bodies_are_400) {
    static const char *const bodies[] = {
        "{\"prompt\":\"\xff\"}",                  /* never valid */
        "{\"prompt\":\"a\x80\"}",                 /* lone continuation */
        "{\"prompt\":\"\xe2\x82\"}",              /* truncated sequence */
        "{\"prompt\":\"\xc0\xaf\"}",              /* overlong '/' */
        "{\"prompt\":\"\xe0\x80\xaf\"}",          /* overlong, 3 bytes */
        "{\"prompt\":\"\xed\xa0\x80\"}",          /* UTF-16 surrogate */
        "{\"prompt\":\"\xf4\x90\x80\x80\"}",      /* above U+10FFFF */
        "{\"prompt\":\"ok\",\"stop\":\"\xfe\"}",  /* in another field */
        "{\"prompt\":\"ok\",\"\xff\":1}",         /* in a key */
        "{\"messages\":[{\"role\":\"user\",\"content\":\"\xc3\"}]}",
    };
    for (size_t i = 0; i < sizeof bodies / sizeof bodies[0]; i++) {
        openai_endpoint endpoint = strstr(bodies[i], "messages") != NULL ? OPENAI_CHAT : OPENAI_COMPLETIONS;
        parse_fails(endpoint, bodies[i], strlen(bodies[i]), NULL, "not valid UTF-8 JSON");
    }
}

static void expect_lossy(const char *input, size_t length, const char *expected, size_t expected_length) {
    openai_request request = sample_request(OPENAI_COMPLETIONS, -1, false);
    openai_result result = sample_result("x");
    result.text = input;
    result.text_length = length;
    json_t *root = round_trip(openai_response_json(&request, &result));
    json_t *text = get(json_array_get(get(root, "choices"), 0), "text");
    cr_assert_eq(json_string_length(text), expected_length, "input of %zu bytes", length);
    cr_assert_eq(memcmp(json_string_value(text), expected, expected_length), 0, "input of %zu bytes", length);
    json_decref(root);
}

#define FFFD "\xef\xbf\xbd"
/* literal in, literal out (lengths from sizeof, so NULs count) */
#define LOSSY(input, expected) expect_lossy(input, sizeof input - 1, expected, sizeof expected - 1)

Test(openai_utf8, builders_replace_invalid_bytes) {
    LOSSY("a\xff" "b", "a" FFFD "b");
    LOSSY("\xe2\x82", FFFD);                    /* one maximal subpart */
    LOSSY("\xe2\x82" "a", FFFD "a");
    LOSSY("\xc0\xaf", FFFD FFFD);               /* C0 never starts a sequence */
    LOSSY("\xed\xa0\x80", FFFD FFFD FFFD);      /* surrogate: ED then two strays */
    LOSSY("\xf0\x9f\x98", FFFD);                /* truncated emoji */
    LOSSY("\xf4\x90\x80\x80", FFFD FFFD FFFD FFFD);
    LOSSY("ok \xf0\x9f\x98\x80", "ok \xf0\x9f\x98\x80");
    LOSSY("a\0b", "a\0b");                       /* NUL is valid UTF-8: jansson escapes it */
    LOSSY("\x80\x80", FFFD FFFD);
    LOSSY("", "");
}

/* A token whose text holds a NUL byte (a byte-fallback <0x00>): the text keeps it ("\u0000"), but
 * as a top_logprobs key it becomes U+FFFD, because jansson (and with it ramp batch's resume) cannot
 * read a key with a NUL in it. */
Test(openai_utf8, nul_in_a_token_keeps_the_response_readable) {
    openai_token tokens[] = {{0, "a\0b", 3, -0.5f, 4}, {1, "c", 1, -1.0f, 4}};
    openai_request request = sample_request(OPENAI_COMPLETIONS, 1, false);
    openai_result result = result_of_tokens("n", "a\0bc", 4, tokens, 2);
    json_t *root = round_trip(openai_response_json(&request, &result)); /* loads it back, as jansson reads */
    json_t *logprobs = get(json_array_get(get(root, "choices"), 0), "logprobs");
    json_t *first = json_array_get(get(logprobs, "tokens"), 0);
    cr_assert_eq(json_string_length(first), 3u);
    cr_assert_eq(memcmp(json_string_value(first), "a\0b", 3), 0, "the token's text keeps its NUL");
    json_t *entry = json_array_get(get(logprobs, "top_logprobs"), 0);
    expect_real(get(entry, "a" FFFD "b"), -0.5, "top_logprobs key with U+FFFD for the NUL");
    json_decref(root);
}

Test(openai_utf8, partial_tokens_in_logprobs) {
    /* "世" (E4 B8 96) split over two tokens, as byte-fallback tokenizers do */
    openai_token tokens[] = {{1, "\xe4\xb8", 2, -0.5f, 4}, {2, "\x96", 1, -0.25f, 4}, {3, "x", 1, -1.0f, 4}};
    openai_request request = sample_request(OPENAI_CHAT, 0, false);
    openai_result result = result_of_tokens("c", "\xe4\xb8\x96x", 4, tokens, 3);
    json_t *root = round_trip(openai_response_json(&request, &result));
    json_t *choice = json_array_get(get(root, "choices"), 0);
    expect_string(get(choice, "message"), "content", "\xe4\xb8\x96x");
    json_t *content = get(get(choice, "logprobs"), "content");
    expect_string(json_array_get(content, 0), "token", FFFD);
    static const long long first[] = {0xe4, 0xb8};
    expect_int_array(get(json_array_get(content, 0), "bytes"), first, 2, "bytes[0]");
    expect_string(json_array_get(content, 1), "token", FFFD);
    static const long long second[] = {0x96};
    expect_int_array(get(json_array_get(content, 1), "bytes"), second, 1, "bytes[1]");
    json_decref(root);

    /* completions: text_offset counts characters, not bytes */
    request = sample_request(OPENAI_COMPLETIONS, 1, false);
    root = round_trip(openai_response_json(&request, &result));
    json_t *logprobs = get(json_array_get(get(root, "choices"), 0), "logprobs");
    static const long long offsets[] = {0, 1, 1};
    expect_int_array(get(logprobs, "text_offset"), offsets, 3, "text_offset");
    json_t *top = get(logprobs, "top_logprobs");
    expect_real(get(json_array_get(top, 0), FFFD), -0.5, "top_logprobs[0]");
    json_decref(root);

    /* a stream chunk of a partial token still builds */
    json_t *chunk = round_trip(openai_stream_chunk_json(&request, &result, &tokens[1], false, false));
    expect_string(json_array_get(get(chunk, "choices"), 0), "text", FFFD);
    json_decref(chunk);
}

/* ---- robustness -------------------------------------------------------------------------------- */

static uint64_t rng_state = 0x9e3779b97f4a7c15u;
static uint64_t rng(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

/* Parses; on success builds everything a front end would and frees it. Returns the parse status. */
static int exercise(openai_endpoint endpoint, const char *body, size_t length) {
    openai_request request;
    openai_error error;
    memset(&error, 0x5a, sizeof error);
    int status = openai_parse_request(endpoint, body, length, VOCAB, &request, &error);
    if (status != 0) {
        cr_assert_eq(status, -1);
        cr_assert(error.status == 400 || error.status == 500, "status %d", error.status);
        cr_assert_not_null(error.type);
        cr_assert(memchr(error.message, '\0', sizeof error.message) != NULL, "message not terminated");
        cr_assert_gt(strlen(error.message), 0u);
        cr_assert(error.param == NULL || strlen(error.param) > 0);
        json_t *json = openai_error_json(&error);
        char *text = json_dumps(json, JSON_COMPACT);
        cr_assert_not_null(text);
        free(text);
        json_decref(json);
        return status;
    }
    openai_result result = sample_result("id");
    if (request.prompt != NULL) {
        result.text = request.prompt;
        result.text_length = request.prompt_length;
    }
    json_t *values[4] = {
        openai_response_json(&request, &result),
        openai_stream_chunk_json(&request, &result, NULL, true, false),
        openai_stream_chunk_json(&request, &result, &TOKENS[1], false, false),
        openai_stream_chunk_json(&request, &result, NULL, false, true),
    };
    for (int i = 0; i < 4; i++) {
        cr_assert_not_null(values[i]);
        char *text = json_dumps(values[i], JSON_COMPACT);
        cr_assert_not_null(text);
        free(text);
        json_decref(values[i]);
    }
    openai_request_free(&request);
    return 0;
}

static const char *const SEEDS[] = {
    ("{\"model\":\"m\",\"prompt\":\"Once upon a time \xc3\xa9\xf0\x9f\x98\x80\",\"max_tokens\":16,\"temperature\":0.7,"
     "\"top_p\":0.9,\"stop\":[\"\\n\",\"END\"],\"logprobs\":1,\"stream\":true,\"stream_options\":{\"include_usage\":true},"
     "\"ramp\":{\"exit\":\"conf\"}}"),
    "{\"prompt\":[1,2,3,31999],\"seed\":42,\"n\":1,\"echo\":false,\"logit_bias\":{\"1\":2}}",
    ("{\"messages\":[{\"role\":\"system\",\"content\":\"Be brief.\"},{\"role\":\"user\",\"content\":[{\"type\":\"text\","
     "\"text\":\"Hi \\u00e9\"}]}],\"logprobs\":true,\"top_logprobs\":2,\"max_completion_tokens\":8,\"stream\":true}"),
};

Test(openai_robust, truncations_and_mutations) {
    int parsed = 0, failed = 0;
    for (size_t s = 0; s < sizeof SEEDS / sizeof SEEDS[0]; s++) {
        const char *seed = SEEDS[s];
        size_t length = strlen(seed);
        openai_endpoint endpoint = strstr(seed, "messages") != NULL ? OPENAI_CHAT : OPENAI_COMPLETIONS;
        cr_assert_eq(exercise(endpoint, seed, length), 0, "seed %zu must parse", s);
        /* every proper prefix of a JSON object is invalid JSON: each must fail cleanly */
        for (size_t cut = 0; cut < length; cut++) {
            char *copy = malloc(cut + 1); /* exact size: ASan catches any read past the length */
            memcpy(copy, seed, cut);
            cr_assert_eq(exercise(endpoint, copy, cut), -1, "seed %zu cut at %zu parsed", s, cut);
            free(copy);
        }
        /* random edits: flips, deletions, insertions; either outcome is fine, crashes are not */
        for (int round = 0; round < 3000; round++) {
            size_t n = length;
            char *copy = malloc(length + 8);
            memcpy(copy, seed, length);
            int edits = 1 + (int)(rng() % 4);
            for (int e = 0; e < edits && n > 0; e++) {
                size_t at = rng() % n;
                switch (rng() % 3) {
                case 0: copy[at] = (char)(rng() & 0xff); break;
                case 1: memmove(copy + at, copy + at + 1, n - at - 1); n--; break;
                default:
                    if (n < length + 8) {
                        memmove(copy + at + 1, copy + at, n - at);
                        copy[at] = "{}[]\",:0-9.eE\\ntfu"[rng() % 18];
                        n++;
                    }
                }
            }
            char *exact = malloc(n > 0 ? n : 1);
            memcpy(exact, copy, n);
            free(copy);
            if (exercise((openai_endpoint)(rng() % 2), exact, n) == 0) parsed++;
            else failed++;
            free(exact);
        }
    }
    cr_assert_gt(parsed, 0, "no mutation parsed: the loop only exercised errors");
    cr_assert_gt(failed, 0);
}
