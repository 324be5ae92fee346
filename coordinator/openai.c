/* openai.c: OpenAI request parsing (jansson) and response / stream chunk building. See openai.h.
 *
 * Parsing never trusts the body: every field is read with a type check, a missing or JSON null
 * optional field takes its default, and the first defect found is the 400 returned (fields are
 * checked in a fixed order, so the same body always gives the same error). Building never fails
 * on bad bytes: any text that is not valid UTF-8 has each maximal invalid subpart replaced by
 * U+FFFD (Unicode's recommended practice) before it becomes a JSON string.
 */
#include "openai.h"

#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define INVALID_REQUEST "invalid_request_error"

/* ---- UTF-8 ------------------------------------------------------------------------------------ */

/* The sequence at s[0..n): returns its length and sets *valid when it is one well-formed UTF-8
 * scalar value (no overlongs, surrogates or values above U+10FFFF); otherwise returns the length
 * of the maximal subpart that could have begun one (at least 1) and clears *valid. */
static size_t utf8_scan(const unsigned char *s, size_t n, bool *valid) {
    unsigned char c = s[0];
    if (c < 0x80) {
        *valid = true;
        return 1;
    }
    size_t need;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) {
        need = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        need = 3;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 4;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else {
        *valid = false;
        return 1;
    }
    for (size_t i = 1; i < need; i++) {
        if (i >= n) {
            *valid = false;
            return i;
        }
        unsigned char b = s[i];
        bool ok = i == 1 ? b >= lo && b <= hi : b >= 0x80 && b <= 0xBF;
        if (!ok) {
            *valid = false;
            return i;
        }
    }
    *valid = true;
    return need;
}

static bool utf8_valid(const char *text, size_t length) {
    const unsigned char *s = (const unsigned char *)text;
    size_t i = 0;
    while (i < length) {
        bool valid;
        i += utf8_scan(s + i, length - i, &valid);
        if (!valid) return false;
    }
    return true;
}

/* A copy of text with each maximal invalid subpart replaced by U+FFFD (malloc'ed, NUL-terminated). */
static char *utf8_lossy(const char *text, size_t length, size_t *out_length) {
    if (length > (SIZE_MAX - 1) / 3) return NULL;
    char *out = malloc(length * 3 + 1); /* each replaced byte becomes at most 3 */
    if (out == NULL) return NULL;
    const unsigned char *s = (const unsigned char *)text;
    size_t i = 0, o = 0;
    while (i < length) {
        bool valid;
        size_t step = utf8_scan(s + i, length - i, &valid);
        if (valid) {
            memcpy(out + o, s + i, step);
            o += step;
        } else {
            memcpy(out + o, "\xEF\xBF\xBD", 3);
            o += 3;
        }
        i += step;
    }
    out[o] = '\0';
    *out_length = o;
    return out;
}

/* Unicode scalar values in valid UTF-8 (bytes that are not continuation bytes). */
static long utf8_count(const char *text, size_t length) {
    long count = 0;
    for (size_t i = 0; i < length; i++)
        if (((unsigned char)text[i] & 0xC0) != 0x80) count++;
    return count;
}

/* Cuts a trailing sequence that vsnprintf's truncation left incomplete. */
static void utf8_trim_tail(char *text) {
    size_t length = strlen(text), start = length;
    while (start > 0 && length - start < 3 && ((unsigned char)text[start - 1] & 0xC0) == 0x80) start--;
    if (start == 0) return;
    bool valid;
    size_t lead = start - 1;
    size_t step = utf8_scan((const unsigned char *)text + lead, length - lead, &valid);
    if (!valid && lead + step == length) text[lead] = '\0';
}

/* A short excerpt of a client's string for an error message: at most 40 bytes, cut between
 * characters, U+FFFD for invalid bytes. */
static void excerpt(char out[48], const char *text, size_t length) {
    size_t at = 0, i = 0;
    const unsigned char *s = (const unsigned char *)text;
    while (i < length) {
        bool valid;
        size_t step = utf8_scan(s + i, length - i, &valid);
        size_t size = valid ? step : 3;
        if (at + size > 40) {
            memcpy(out + at, "...", 3);
            at += 3;
            break;
        }
        memcpy(out + at, valid ? text + i : "\xEF\xBF\xBD", size);
        at += size;
        i += step;
    }
    out[at] = '\0';
}

/* A JSON string of text (NULL: ""), U+FFFD where the bytes are not UTF-8. */
static json_t *json_text(const char *text, size_t length) {
    if (text == NULL) return json_string("");
    if (utf8_valid(text, length)) return json_stringn_nocheck(text, length);
    size_t clean_length;
    char *clean = utf8_lossy(text, length, &clean_length);
    if (clean == NULL) return NULL;
    json_t *value = json_stringn_nocheck(clean, clean_length);
    free(clean);
    return value;
}

static json_t *json_cstr(const char *text) { return json_text(text, text != NULL ? strlen(text) : 0); }

/* ---- errors ----------------------------------------------------------------------------------- */

static const char *type_for_status(int status) {
    if (status == 401) return "authentication_error";
    if (status == 429) return "rate_limit_error";
    if (status >= 500) return "server_error";
    return INVALID_REQUEST;
}

int openai_fail(openai_error *error, int status, const char *type, const char *param, const char *code,
                const char *format, ...) {
    if (error == NULL) return -1;
    error->status = status;
    error->type = type != NULL ? type : type_for_status(status);
    error->param = param;
    error->code = code;
    va_list args;
    va_start(args, format);
    int written = vsnprintf(error->message, sizeof error->message, format, args);
    va_end(args);
    if (written < 0) error->message[0] = '\0';
    else if ((size_t)written >= sizeof error->message) utf8_trim_tail(error->message);
    return -1;
}

json_t *openai_error_json(const openai_error *error) {
    if (error == NULL) return NULL;
    json_t *inner = json_object();
    json_t *outer = json_object();
    if (inner == NULL || outer == NULL) {
        json_decref(inner);
        json_decref(outer);
        return NULL;
    }
    size_t length = strnlen(error->message, sizeof error->message);
    const char *type = error->type != NULL ? error->type : type_for_status(error->status);
    int failed = json_object_set_new(inner, "message", json_text(error->message, length));
    failed |= json_object_set_new(inner, "type", json_cstr(type));
    failed |= json_object_set_new(inner, "param", error->param != NULL ? json_cstr(error->param) : json_null());
    failed |= json_object_set_new(inner, "code", error->code != NULL ? json_cstr(error->code) : json_null());
    failed |= json_object_set_new(outer, "error", inner);
    if (failed) {
        json_decref(outer);
        return NULL;
    }
    return outer;
}

static const char *type_phrase(const json_t *value) {
    switch (json_typeof(value)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a decimal number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    case JSON_NULL: return "null";
    }
    return "an unknown value";
}

static int fail_type(openai_error *error, const char *param, const char *expected, const json_t *value) {
    return openai_fail(error, 400, INVALID_REQUEST, param, "invalid_type",
                       "Invalid type for '%s': expected %s, but got %s instead.", param, expected,
                       type_phrase(value));
}

#define fail_value(error, param, ...) openai_fail(error, 400, INVALID_REQUEST, param, "invalid_value", __VA_ARGS__)
#define fail_unsupported(error, param, ...) \
    openai_fail(error, 400, INVALID_REQUEST, param, "unsupported_value", __VA_ARGS__)

/* ---- typed field readers ---------------------------------------------------------------------- */

/* The field's value, or NULL when it is absent or JSON null (both mean "use the default"). */
static json_t *field(json_t *body, const char *key) {
    json_t *value = json_object_get(body, key);
    return value != NULL && !json_is_null(value) ? value : NULL;
}

/* Copies a JSON string (NUL-terminated copy). Strings decoded by openai_parse_request are valid
 * UTF-8 without NUL already; openai_parse_object's caller may have built them otherwise. */
static int copy_string(const json_t *value, const char *param, const char *what, char **out, size_t *out_length,
                       openai_error *error) {
    const char *text = json_string_value(value);
    size_t length = json_string_length(value);
    if (!utf8_valid(text, length)) return fail_value(error, param, "%s is not valid UTF-8.", what);
    if (memchr(text, '\0', length) != NULL) return fail_value(error, param, "%s contains a NUL character.", what);
    char *copy = malloc(length + 1);
    if (copy == NULL) return openai_fail(error, 500, "server_error", NULL, NULL, "out of memory reading '%s'", param);
    memcpy(copy, text, length);
    copy[length] = '\0';
    *out = copy;
    if (out_length != NULL) *out_length = length;
    return 0;
}

static bool string_is(const json_t *value, const char *literal) {
    size_t length = strlen(literal);
    return json_string_length(value) == length && memcmp(json_string_value(value), literal, length) == 0;
}

static int read_integer(json_t *body, const char *key, json_int_t *out, bool *given, openai_error *error) {
    json_t *value = field(body, key);
    *given = value != NULL;
    if (value == NULL) return 0;
    if (!json_is_integer(value)) return fail_type(error, key, "an integer", value);
    *out = json_integer_value(value);
    return 0;
}

static int read_number(json_t *body, const char *key, double *out, bool *given, openai_error *error) {
    json_t *value = field(body, key);
    *given = value != NULL;
    if (value == NULL) return 0;
    if (!json_is_number(value)) return fail_type(error, key, "a number", value);
    *out = json_number_value(value);
    return 0;
}

static int read_bool(json_t *body, const char *key, bool *out, bool *given, openai_error *error) {
    json_t *value = field(body, key);
    *given = value != NULL;
    if (value == NULL) return 0;
    if (!json_is_boolean(value)) return fail_type(error, key, "a boolean", value);
    *out = json_is_true(value);
    return 0;
}

static int clamp_int(json_int_t value) { return value > INT_MAX ? INT_MAX : (int)value; }

/* ---- prompt and messages ---------------------------------------------------------------------- */

static int parse_prompt(json_t *body, int vocab_size, openai_request *request, openai_error *error) {
    json_t *prompt = field(body, "prompt");
    if (prompt == NULL)
        return openai_fail(error, 400, INVALID_REQUEST, "prompt", "missing_required_parameter",
                           "Missing required parameter: 'prompt' (a string or an array of token ids; chat "
                           "messages go to /v1/chat/completions).");
    /* A one-element batch (["text"] or [[ids]], as some clients always send) is that prompt. */
    if (json_is_array(prompt) && json_array_size(prompt) == 1) {
        json_t *only = json_array_get(prompt, 0);
        if (json_is_string(only) || json_is_array(only)) prompt = only;
    }
    if (json_is_string(prompt)) {
        if (json_string_length(prompt) == 0) return fail_value(error, "prompt", "'prompt' must not be empty.");
        return copy_string(prompt, "prompt", "'prompt'", &request->prompt, &request->prompt_length, error);
    }
    if (!json_is_array(prompt)) return fail_type(error, "prompt", "a string or an array of token ids", prompt);
    size_t n = json_array_size(prompt);
    if (n == 0) return fail_value(error, "prompt", "'prompt' must not be an empty array of token ids.");
    if (n > INT_MAX) return fail_value(error, "prompt", "'prompt' has too many token ids.");
    for (size_t i = 0; i < n; i++) {
        json_t *item = json_array_get(prompt, i);
        if (json_is_string(item) || json_is_array(item))
            return fail_unsupported(error, "prompt",
                                    "ramp accepts only one prompt per request; this 'prompt' is a batch of %zu "
                                    "prompts (send them as separate requests).",
                                    n);
        if (!json_is_integer(item))
            return fail_type(error, "prompt", "a string or an array of token ids (integers)", item);
        json_int_t id = json_integer_value(item);
        if (id < 0 || id >= vocab_size)
            return fail_value(error, "prompt", "Token id %lld at prompt[%zu] is outside the vocabulary [0, %d).",
                              (long long)id, i, vocab_size);
    }
    request->prompt_tokens = malloc(n * sizeof *request->prompt_tokens);
    if (request->prompt_tokens == NULL)
        return openai_fail(error, 500, "server_error", NULL, NULL, "out of memory reading 'prompt'");
    for (size_t i = 0; i < n; i++) request->prompt_tokens[i] = (int)json_integer_value(json_array_get(prompt, i));
    request->n_prompt_tokens = (int)n;
    return 0;
}

/* Text parts are joined with "\n" between them. */
static int parse_content_parts(json_t *parts, size_t index, char **out, size_t *out_length, openai_error *error) {
    size_t n = json_array_size(parts);
    if (n == 0) return fail_value(error, "messages", "messages[%zu].content must not be an empty array.", index);
    size_t total = 0;
    for (size_t j = 0; j < n; j++) {
        json_t *part = json_array_get(parts, j);
        if (!json_is_object(part))
            return fail_value(error, "messages",
                              "messages[%zu].content[%zu] must be an object {\"type\": \"text\", \"text\": ...}, "
                              "not %s.",
                              index, j, type_phrase(part));
        json_t *type = json_object_get(part, "type");
        if (type == NULL || !json_is_string(type))
            return fail_value(error, "messages", "messages[%zu].content[%zu] has no string 'type'.", index, j);
        if (!string_is(type, "text")) {
            char shown[48];
            excerpt(shown, json_string_value(type), json_string_length(type));
            return fail_unsupported(error, "messages",
                                    "messages[%zu].content[%zu] is a '%s' part; ramp supports only text parts.", index,
                                    j, shown);
        }
        json_t *text = json_object_get(part, "text");
        if (text == NULL || !json_is_string(text))
            return fail_value(error, "messages", "messages[%zu].content[%zu] has no string 'text'.", index, j);
        total += json_string_length(text) + (j > 0);
    }
    char *joined = malloc(total + 1);
    if (joined == NULL) return openai_fail(error, 500, "server_error", NULL, NULL, "out of memory reading messages");
    size_t at = 0;
    for (size_t j = 0; j < n; j++) {
        json_t *text = json_object_get(json_array_get(parts, j), "text");
        if (j > 0) joined[at++] = '\n';
        memcpy(joined + at, json_string_value(text), json_string_length(text));
        at += json_string_length(text);
    }
    joined[at] = '\0';
    char what[64];
    snprintf(what, sizeof what, "messages[%zu].content", index);
    if (!utf8_valid(joined, at) || memchr(joined, '\0', at) != NULL) {
        free(joined);
        return fail_value(error, "messages", "%s is not valid UTF-8 text without NUL characters.", what);
    }
    *out = joined;
    *out_length = at;
    return 0;
}

static int parse_messages(json_t *body, openai_request *request, openai_error *error) {
    json_t *messages = field(body, "messages");
    if (messages == NULL)
        return openai_fail(error, 400, INVALID_REQUEST, "messages", "missing_required_parameter",
                           "Missing required parameter: 'messages' (prompts without roles go to /v1/completions).");
    if (!json_is_array(messages)) return fail_type(error, "messages", "an array of messages", messages);
    size_t n = json_array_size(messages);
    if (n == 0) return fail_value(error, "messages", "'messages' must not be empty.");
    if (n > INT_MAX) return fail_value(error, "messages", "'messages' has too many messages.");
    request->messages = calloc(n, sizeof *request->messages);
    if (request->messages == NULL)
        return openai_fail(error, 500, "server_error", NULL, NULL, "out of memory reading messages");
    static const char *const roles[] = {"system", "user", "assistant"};
    for (size_t i = 0; i < n; i++) {
        json_t *message = json_array_get(messages, i);
        if (!json_is_object(message))
            return fail_value(error, "messages", "messages[%zu] must be an object with 'role' and 'content', not %s.",
                              i, type_phrase(message));
        json_t *role = field(message, "role");
        if (role == NULL) return fail_value(error, "messages", "messages[%zu] has no 'role'.", i);
        if (!json_is_string(role)) return fail_value(error, "messages", "messages[%zu].role must be a string.", i);
        const char *role_name = NULL;
        for (size_t r = 0; r < sizeof roles / sizeof roles[0]; r++)
            if (string_is(role, roles[r])) role_name = roles[r];
        if (role_name == NULL) {
            char shown[48];
            excerpt(shown, json_string_value(role), json_string_length(role));
            return fail_unsupported(error, "messages",
                                    "messages[%zu].role is '%s'; ramp accepts 'system', 'user' and 'assistant'.", i,
                                    shown);
        }
        json_t *content = field(message, "content");
        if (content == NULL) return fail_value(error, "messages", "messages[%zu] has no 'content'.", i);
        char *text = NULL;
        size_t length = 0;
        if (json_is_string(content)) {
            char what[64];
            snprintf(what, sizeof what, "messages[%zu].content", i);
            if (copy_string(content, "messages", what, &text, &length, error) != 0) return -1;
        } else if (json_is_array(content)) {
            if (parse_content_parts(content, i, &text, &length, error) != 0) return -1;
        } else {
            return fail_value(error, "messages", "messages[%zu].content must be a string or an array of text parts, not %s.",
                              i, type_phrase(content));
        }
        request->messages[i].role = role_name;
        request->messages[i].content = text;
        request->messages[i].content_length = length;
        request->n_messages = (int)i + 1;
    }
    return 0;
}

/* ---- the other fields ------------------------------------------------------------------------- */

static int parse_stop(json_t *body, openai_request *request, openai_error *error) {
    json_t *stop = field(body, "stop");
    if (stop == NULL) return 0;
    if (json_is_string(stop)) {
        if (json_string_length(stop) == 0) return fail_value(error, "stop", "'stop' must not be an empty string.");
        if (copy_string(stop, "stop", "'stop'", &request->stop[0], NULL, error) != 0) return -1;
        request->n_stop = 1;
        return 0;
    }
    if (!json_is_array(stop)) return fail_type(error, "stop", "a string or an array of strings", stop);
    size_t n = json_array_size(stop);
    if (n > OPENAI_MAX_STOP)
        return fail_value(error, "stop", "'stop' has %zu sequences; at most %d are allowed.", n, OPENAI_MAX_STOP);
    for (size_t i = 0; i < n; i++) {
        json_t *item = json_array_get(stop, i);
        if (!json_is_string(item)) return fail_type(error, "stop", "an array of strings", item);
        if (json_string_length(item) == 0) return fail_value(error, "stop", "stop[%zu] must not be empty.", i);
        if (copy_string(item, "stop", "a stop sequence", &request->stop[i], NULL, error) != 0) return -1;
        request->n_stop = (int)i + 1;
    }
    return 0;
}

static int parse_logprobs(openai_endpoint endpoint, json_t *body, openai_request *request, openai_error *error) {
    if (endpoint == OPENAI_COMPLETIONS) {
        json_int_t logprobs = 0;
        bool given;
        if (read_integer(body, "logprobs", &logprobs, &given, error) != 0) return -1;
        if (!given) return 0;
        if (logprobs < 0 || logprobs > 5)
            return fail_value(error, "logprobs", "'logprobs' must be between 0 and 5, but got %lld.", (long long)logprobs);
        request->logprobs = (int)logprobs;
        return 0;
    }
    bool logprobs = false, given, top_given;
    json_int_t top = 0;
    if (read_bool(body, "logprobs", &logprobs, &given, error) != 0) return -1;
    if (read_integer(body, "top_logprobs", &top, &top_given, error) != 0) return -1;
    if (top_given && (top < 0 || top > 20))
        return fail_value(error, "top_logprobs", "'top_logprobs' must be between 0 and 20, but got %lld.", (long long)top);
    if (top_given && !logprobs)
        return fail_value(error, "top_logprobs", "'top_logprobs' needs 'logprobs': true.");
    if (logprobs) request->logprobs = (int)top;
    return 0;
}

/* Fields ramp does not act on: a wrong JSON type is still a 400 naming them. */
static int check_ignored(json_t *body, openai_error *error) {
    static const struct {
        const char *key;
        const char *expected;
        unsigned types; /* bit per json_type */
    } fields[] = {
        {"presence_penalty", "a number", 1u << JSON_INTEGER | 1u << JSON_REAL},
        {"frequency_penalty", "a number", 1u << JSON_INTEGER | 1u << JSON_REAL},
        {"best_of", "an integer", 1u << JSON_INTEGER},
        {"logit_bias", "an object", 1u << JSON_OBJECT},
        {"response_format", "an object", 1u << JSON_OBJECT},
        {"metadata", "an object", 1u << JSON_OBJECT},
        {"tools", "an array", 1u << JSON_ARRAY},
        {"functions", "an array", 1u << JSON_ARRAY},
        {"tool_choice", "a string or an object", 1u << JSON_STRING | 1u << JSON_OBJECT},
        {"function_call", "a string or an object", 1u << JSON_STRING | 1u << JSON_OBJECT},
        {"parallel_tool_calls", "a boolean", 1u << JSON_TRUE | 1u << JSON_FALSE},
        {"store", "a boolean", 1u << JSON_TRUE | 1u << JSON_FALSE},
        {"suffix", "a string", 1u << JSON_STRING},
        {"service_tier", "a string", 1u << JSON_STRING},
    };
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        json_t *value = field(body, fields[i].key);
        if (value != NULL && !(fields[i].types & 1u << json_typeof(value)))
            return fail_type(error, fields[i].key, fields[i].expected, value);
    }
    return 0;
}

static int parse_fields(openai_endpoint endpoint, json_t *body, int vocab_size, openai_request *request,
                        openai_error *error) {
    json_t *value;
    if ((value = field(body, "model")) != NULL) {
        if (!json_is_string(value)) return fail_type(error, "model", "a string", value);
        if (copy_string(value, "model", "'model'", &request->model, NULL, error) != 0) return -1;
    }

    if (endpoint == OPENAI_COMPLETIONS ? parse_prompt(body, vocab_size, request, error) != 0
                                       : parse_messages(body, request, error) != 0)
        return -1;

    json_int_t integer = 0;
    double number = 0;
    bool flag = false, given;
    static const char *const max_keys[] = {"max_tokens", "max_completion_tokens"}; /* the later one wins */
    for (int k = 0; k < 2; k++) {
        if (read_integer(body, max_keys[k], &integer, &given, error) != 0) return -1;
        if (!given) continue;
        if (integer < 0)
            return fail_value(error, max_keys[k], "'%s' must be at least 0, but got %lld.", max_keys[k], (long long)integer);
        request->max_tokens = clamp_int(integer);
    }

    if (read_number(body, "temperature", &number, &given, error) != 0) return -1;
    if (given) {
        if (!(number >= 0 && number <= 2))
            return fail_value(error, "temperature", "'temperature' must be between 0 and 2, but got %g.", number);
        request->temperature = (float)number;
    }
    if (read_number(body, "top_p", &number, &given, error) != 0) return -1;
    if (given) {
        if (!(number > 0 && number <= 1))
            return fail_value(error, "top_p", "'top_p' must be greater than 0 and at most 1, but got %g.", number);
        request->top_p = (float)number;
        if (request->top_p <= 0.0f) request->top_p = FLT_MIN; /* a positive double below float's range */
    }
    if (read_integer(body, "top_k", &integer, &given, error) != 0) return -1;
    if (given) {
        if (integer < 0) return fail_value(error, "top_k", "'top_k' must be at least 0, but got %lld.", (long long)integer);
        request->top_k = clamp_int(integer);
    }
    if (read_integer(body, "seed", &integer, &given, error) != 0) return -1;
    if (given) {
        request->seed = (uint64_t)integer;
        request->seed_given = true;
    }

    if (parse_stop(body, request, error) != 0) return -1;
    if (parse_logprobs(endpoint, body, request, error) != 0) return -1;

    if (read_bool(body, "stream", &flag, &given, error) != 0) return -1;
    request->stream = given && flag;
    if ((value = field(body, "stream_options")) != NULL) {
        if (!json_is_object(value)) return fail_type(error, "stream_options", "an object", value);
        json_t *usage = field(value, "include_usage");
        if (usage != NULL && !json_is_boolean(usage))
            return fail_type(error, "stream_options", "an object whose 'include_usage' is a boolean", usage);
        request->include_usage = usage != NULL && json_is_true(usage);
    }

    if ((value = field(body, "user")) != NULL) {
        if (!json_is_string(value)) return fail_type(error, "user", "a string", value);
        if (copy_string(value, "user", "'user'", &request->user, NULL, error) != 0) return -1;
    }
    if (read_integer(body, "n", &integer, &given, error) != 0) return -1;
    if (given && integer != 1)
        return fail_unsupported(error, "n", "ramp returns one choice per request: 'n' must be 1, but got %lld.",
                                (long long)integer);
    if (endpoint == OPENAI_COMPLETIONS) {
        if (read_bool(body, "echo", &flag, &given, error) != 0) return -1;
        if (given && flag)
            return fail_unsupported(error, "echo", "'echo': true is not supported by ramp (the prompt is not returned).");
    }
    if (check_ignored(body, error) != 0) return -1;

    if ((value = field(body, "ramp")) != NULL) {
        if (!json_is_object(value)) return fail_type(error, "ramp", "an object", value);
        json_t *exit = field(value, "exit");
        if (exit != NULL) {
            if (!json_is_string(exit)) return fail_type(error, "ramp.exit", "a string", exit);
            if (string_is(exit, "none")) request->exit = OPENAI_EXIT_NONE;
            else if (string_is(exit, "svm")) request->exit = OPENAI_EXIT_SVM;
            else if (string_is(exit, "conf")) request->exit = OPENAI_EXIT_CONF;
            else return fail_value(error, "ramp.exit", "'ramp.exit' must be \"none\", \"svm\" or \"conf\".");
        }
    }
    return 0;
}

int openai_parse_object(openai_endpoint endpoint, json_t *body, int vocab_size, openai_request *request,
                        openai_error *error) {
    openai_error scratch;
    if (error == NULL) error = &scratch;
    if (request == NULL) return openai_fail(error, 500, "server_error", NULL, NULL, "no request to fill");
    memset(request, 0, sizeof *request);
    if (endpoint != OPENAI_COMPLETIONS && endpoint != OPENAI_CHAT)
        return openai_fail(error, 404, INVALID_REQUEST, NULL, NULL, "unknown endpoint %d", (int)endpoint);
    if (body == NULL || !json_is_object(body))
        return openai_fail(error, 400, INVALID_REQUEST, NULL, NULL, "The request body must be a JSON object, not %s.",
                           body != NULL ? type_phrase(body) : "nothing");
    request->endpoint = endpoint;
    request->max_tokens = -1;
    request->temperature = 1.0f;
    request->top_p = 1.0f;
    request->logprobs = -1;
    request->exit = OPENAI_EXIT_DEFAULT;
    if (parse_fields(endpoint, body, vocab_size, request, error) != 0) {
        openai_request_free(request);
        return -1;
    }
    return 0;
}

int openai_parse_request(openai_endpoint endpoint, const char *body, size_t length, int vocab_size,
                         openai_request *request, openai_error *error) {
    openai_error scratch;
    if (error == NULL) error = &scratch;
    if (request != NULL) memset(request, 0, sizeof *request);
    if (body == NULL || length == 0)
        return openai_fail(error, 400, INVALID_REQUEST, NULL, NULL,
                           "The request body is empty; expected a JSON object.");
    json_error_t json_error;
    json_t *root = json_loadb(body, length, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &json_error);
    if (root == NULL) {
        switch (json_error_code(&json_error)) {
        case json_error_invalid_utf8:
            return openai_fail(error, 400, INVALID_REQUEST, NULL, NULL,
                               "The request body is not valid UTF-8 JSON (%s, at byte %d).", json_error.text,
                               json_error.position);
        case json_error_out_of_memory:
            return openai_fail(error, 500, "server_error", NULL, NULL, "out of memory parsing the request");
        case json_error_stack_overflow:
            return openai_fail(error, 400, INVALID_REQUEST, NULL, NULL,
                               "The request body nests JSON too deeply (%s).", json_error.text);
        case json_error_duplicate_key:
            return openai_fail(error, 400, INVALID_REQUEST, NULL, NULL,
                               "The request body repeats an object key (%s, line %d column %d).", json_error.text,
                               json_error.line, json_error.column);
        default:
            return openai_fail(error, 400, INVALID_REQUEST, NULL, NULL,
                               "We could not parse the JSON body of your request (%s, line %d column %d).",
                               json_error.text, json_error.line, json_error.column);
        }
    }
    int status = openai_parse_object(endpoint, root, vocab_size, request, error);
    json_decref(root);
    return status;
}

void openai_request_free(openai_request *request) {
    if (request == NULL) return;
    free(request->model);
    free(request->prompt);
    free(request->prompt_tokens);
    if (request->messages != NULL)
        for (int i = 0; i < request->n_messages; i++) free((void *)request->messages[i].content); /* roles are static */
    free(request->messages);
    for (int i = 0; i < OPENAI_MAX_STOP; i++) free(request->stop[i]);
    free(request->user);
    memset(request, 0, sizeof *request);
}

/* ---- building --------------------------------------------------------------------------------- */

/* Sets key to value (stolen); remembers a failed allocation in *ok. */
static void put(json_t *object, const char *key, json_t *value, bool *ok) {
    if (object == NULL || value == NULL || json_object_set_new(object, key, value) != 0) {
        json_decref(value);
        *ok = false;
    }
}

static void push(json_t *array, json_t *value, bool *ok) {
    if (array == NULL || value == NULL || json_array_append_new(array, value) != 0) {
        json_decref(value);
        *ok = false;
    }
}

/* JSON has no infinities: -inf (a token the model gave no chance) is -9999, as other servers
 * report it; NaN is null. */
static json_t *json_logprob(float logprob) {
    if (isnan(logprob)) return json_null();
    if (isinf(logprob)) return json_real(logprob < 0 ? -9999.0 : 0.0);
    return json_real(logprob);
}

static bool wants_logprobs(const openai_request *request) { return request != NULL && request->logprobs >= 0; }
static bool is_chat(const openai_request *request) { return request != NULL && request->endpoint == OPENAI_CHAT; }

static json_t *token_text(const openai_token *token) {
    return json_text(token->text, token->text != NULL ? token->text_length : 0);
}

/* A token's text as an object key: as token_text, with U+FFFD for each NUL byte. JSON allows a NUL
 * in a key ("\u0000"), but jansson cannot read one back (and with it ramp batch's resume, which
 * reads its own output lines); the token's exact text is in the response's "tokens" list. */
static json_t *token_key(const openai_token *token) {
    json_t *text = token_text(token);
    const char *value = json_string_value(text);
    const size_t length = json_string_length(text);
    if (value == NULL || memchr(value, '\0', length) == NULL) return text;
    char *clean = malloc(3 * length + 1);
    json_t *key = NULL;
    if (clean != NULL) {
        size_t at = 0;
        for (size_t i = 0; i < length; i++) {
            if (value[i] != '\0') {
                clean[at++] = value[i];
            } else {
                memcpy(clean + at, "\xef\xbf\xbd", 3);
                at += 3;
            }
        }
        key = json_stringn_nocheck(clean, at);
        free(clean);
    }
    json_decref(text);
    return key;
}

static int token_count(const openai_result *result) {
    return result->tokens != NULL && result->n_tokens > 0 ? result->n_tokens : 0;
}

static json_t *usage_json(const openai_result *result, bool *ok) {
    json_t *usage = json_object();
    put(usage, "prompt_tokens", json_integer(result->prompt_tokens), ok);
    put(usage, "completion_tokens", json_integer(result->completion_tokens), ok);
    put(usage, "total_tokens", json_integer((json_int_t)result->prompt_tokens + result->completion_tokens), ok);
    return usage;
}

/* Adds the result's exit summary to an existing "ramp" object. */
static void ramp_summary(json_t *ramp, const openai_result *result, bool *ok) {
    put(ramp, "exit", json_cstr(result->exit_policy != NULL ? result->exit_policy : "none"), ok);
    json_t *layers = json_array();
    for (int i = 0; i < token_count(result); i++) push(layers, json_integer(result->tokens[i].exit_layer), ok);
    put(ramp, "exit_layers", layers, ok);
    put(ramp, "layers_executed", json_integer(result->layers_executed), ok);
    long long n_tokens = result->n_tokens > 0 ? result->n_tokens : 0;
    long long total = result->total_layers > 0 ? result->total_layers : 0;
    long long skipped = n_tokens * total - (long long)result->layers_executed;
    put(ramp, "layers_skipped", json_integer(skipped > 0 ? skipped : 0), ok);
    put(ramp, "total_layers", json_integer(result->total_layers), ok);
}

/* Completions: {"tokens", "token_logprobs", "top_logprobs", "text_offset"} for tokens[0..n).
 * ramp knows only the chosen token's logprob; OpenAI's top_logprobs always include the chosen
 * token, so with logprobs > 0 each entry is {chosen text: its logprob}; with 0 it is null. */
static json_t *completion_logprobs(const openai_request *request, const openai_token *tokens, int n, long offset,
                                   bool *ok) {
    json_t *object = json_object();
    json_t *texts = json_array(), *logprobs = json_array(), *offsets = json_array();
    json_t *top = request->logprobs > 0 ? json_array() : json_null();
    for (int i = 0; i < n; i++) {
        push(texts, token_text(&tokens[i]), ok);
        push(logprobs, json_logprob(tokens[i].logprob), ok);
        if (request->logprobs > 0) {
            json_t *entry = json_object();
            json_t *key = token_key(&tokens[i]);
            if (entry == NULL || key == NULL ||
                json_object_setn_new_nocheck(entry, json_string_value(key), json_string_length(key),
                                             json_logprob(tokens[i].logprob)) != 0)
                *ok = false;
            json_decref(key);
            push(top, entry, ok);
        }
        push(offsets, json_integer(offset), ok);
        if (tokens[i].text != NULL) offset += utf8_count(tokens[i].text, tokens[i].text_length);
    }
    put(object, "tokens", texts, ok);
    put(object, "token_logprobs", logprobs, ok);
    put(object, "top_logprobs", top, ok);
    put(object, "text_offset", offsets, ok);
    return object;
}

/* Chat: {"content": [{"token", "logprob", "bytes", "top_logprobs": []}], "refusal": null}. ramp
 * has no alternatives to list, so top_logprobs is empty (OpenAI allows fewer than asked). */
static json_t *chat_logprobs(const openai_token *tokens, int n, bool *ok) {
    json_t *object = json_object();
    json_t *content = json_array();
    for (int i = 0; i < n; i++) {
        json_t *entry = json_object();
        put(entry, "token", token_text(&tokens[i]), ok);
        put(entry, "logprob", json_logprob(tokens[i].logprob), ok);
        json_t *bytes = json_array();
        size_t length = tokens[i].text != NULL ? tokens[i].text_length : 0;
        for (size_t b = 0; b < length; b++) push(bytes, json_integer((unsigned char)tokens[i].text[b]), ok);
        put(entry, "bytes", bytes, ok);
        put(entry, "top_logprobs", json_array(), ok);
        push(content, entry, ok);
    }
    put(object, "content", content, ok);
    put(object, "refusal", json_null(), ok);
    return object;
}

static json_t *envelope(const openai_request *request, const openai_result *result, const char *object, bool *ok) {
    json_t *root = json_object();
    const char *model = result->model != NULL ? result->model : request != NULL ? request->model : NULL;
    put(root, "id", json_cstr(result->id), ok);
    put(root, "object", json_string(object), ok);
    put(root, "created", json_integer(result->created), ok);
    put(root, "model", json_cstr(model), ok);
    return root;
}

static json_t *finish(json_t *root, bool ok) {
    if (!ok) {
        json_decref(root);
        return NULL;
    }
    return root;
}

json_t *openai_response_json(const openai_request *request, const openai_result *result) {
    if (result == NULL) return NULL;
    bool ok = true, chat = is_chat(request);
    json_t *root = envelope(request, result, chat ? "chat.completion" : "text_completion", &ok);
    json_t *choice = json_object();
    json_t *text = json_text(result->text, result->text != NULL ? result->text_length : 0);
    if (chat) {
        put(choice, "index", json_integer(0), &ok);
        json_t *message = json_object();
        put(message, "role", json_string("assistant"), &ok);
        put(message, "content", text, &ok);
        put(message, "refusal", json_null(), &ok);
        put(choice, "message", message, &ok);
    } else {
        put(choice, "text", text, &ok);
        put(choice, "index", json_integer(0), &ok);
    }
    json_t *logprobs = json_null();
    if (wants_logprobs(request)) {
        json_decref(logprobs);
        logprobs = chat ? chat_logprobs(result->tokens, token_count(result), &ok)
                        : completion_logprobs(request, result->tokens, token_count(result), 0, &ok);
    }
    put(choice, "logprobs", logprobs, &ok);
    put(choice, "finish_reason", result->finish_reason != NULL ? json_cstr(result->finish_reason) : json_null(), &ok);
    json_t *choices = json_array();
    push(choices, choice, &ok);
    put(root, "choices", choices, &ok);
    put(root, "usage", usage_json(result, &ok), &ok);
    json_t *ramp = json_object();
    ramp_summary(ramp, result, &ok);
    put(root, "ramp", ramp, &ok);
    return finish(root, ok);
}

/* The text_offset of a streamed token: the code points of the tokens before it when it points
 * into result->tokens, else 0. */
static long stream_offset(const openai_result *result, const openai_token *token) {
    int n = token_count(result);
    uintptr_t at = (uintptr_t)token, begin = (uintptr_t)result->tokens, end = (uintptr_t)(result->tokens + n);
    if (n == 0 || at < begin || at >= end) return 0;
    long offset = 0;
    for (const openai_token *t = result->tokens; t < token; t++)
        if (t->text != NULL) offset += utf8_count(t->text, t->text_length);
    return offset;
}

json_t *openai_stream_chunk_json(const openai_request *request, const openai_result *result, const openai_token *token,
                                 bool first, bool last) {
    if (result == NULL) return NULL;
    bool ok = true, chat = is_chat(request);
    json_t *root = envelope(request, result, chat ? "chat.completion.chunk" : "text_completion", &ok);
    json_t *choice = json_object();
    put(choice, "index", json_integer(0), &ok);
    if (chat) {
        json_t *delta = json_object();
        if (first) put(delta, "role", json_string("assistant"), &ok);
        if (token != NULL) put(delta, "content", token_text(token), &ok);
        else if (first) put(delta, "content", json_string(""), &ok);
        put(choice, "delta", delta, &ok);
    } else {
        put(choice, "text", token != NULL ? token_text(token) : json_string(""), &ok);
    }
    json_t *logprobs = json_null();
    if (token != NULL && wants_logprobs(request)) {
        json_decref(logprobs);
        logprobs = chat ? chat_logprobs(token, 1, &ok)
                        : completion_logprobs(request, token, 1, stream_offset(result, token), &ok);
    }
    put(choice, "logprobs", logprobs, &ok);
    put(choice, "finish_reason",
        last && result->finish_reason != NULL ? json_cstr(result->finish_reason) : json_null(), &ok);
    json_t *choices = json_array();
    push(choices, choice, &ok);
    put(root, "choices", choices, &ok);
    if (request != NULL && request->include_usage) put(root, "usage", last ? usage_json(result, &ok) : json_null(), &ok);
    if (token != NULL || last) {
        json_t *ramp = json_object();
        if (token != NULL) put(ramp, "exit_layer", json_integer(token->exit_layer), &ok);
        if (last) ramp_summary(ramp, result, &ok);
        put(root, "ramp", ramp, &ok);
    }
    return finish(root, ok);
}
