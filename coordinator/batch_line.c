#include "batch_line.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static batch_line_status not_a_request(char *message, size_t capacity, const char *format, const char *detail) {
    snprintf(message, capacity, format, detail);
    return BATCH_LINE_NOT_A_REQUEST;
}

batch_line_status batch_line_parse(const char *text, size_t length, batch_line *line, char *message,
                                   size_t capacity) {
    memset(line, 0, sizeof *line);
    json_error_t json_error;
    json_t *root = json_loadb(text, length, JSON_REJECT_DUPLICATES, &json_error);
    if (!root) return not_a_request(message, capacity, "the line is not valid JSON: %s", json_error.text);
    batch_line_status status = BATCH_LINE_OK;
    json_t *id = json_object_get(root, "custom_id");
    if (!json_is_object(root)) {
        status = not_a_request(message, capacity, "the line is %s, expected a JSON object", "not an object");
    } else if (!json_is_string(id) || json_string_length(id) == 0) {
        status = not_a_request(message, capacity, "%s", "the line has no custom_id (a non-empty string)");
    } else if (!(line->custom_id = strdup(json_string_value(id)))) {
        status = not_a_request(message, capacity, "%s", "out of memory");
    } else if (json_object_get(root, "body") || json_object_get(root, "url")) {
        json_t *url = json_object_get(root, "url"), *method = json_object_get(root, "method");
        json_t *body = json_object_get(root, "body");
        if (method && (!json_is_string(method) || strcmp(json_string_value(method), "POST")))
            status = not_a_request(message, capacity, "%s", "method must be \"POST\"");
        else if (!json_is_string(url))
            status = not_a_request(message, capacity, "%s", "url must be \"/v1/completions\" or \"/v1/chat/completions\"");
        else if (!strcmp(json_string_value(url), "/v1/completions"))
            line->endpoint = OPENAI_COMPLETIONS;
        else if (!strcmp(json_string_value(url), "/v1/chat/completions"))
            line->endpoint = OPENAI_CHAT;
        else
            status = not_a_request(message, capacity, "unknown url \"%.200s\" (expected /v1/completions or "
                                                      "/v1/chat/completions)", json_string_value(url));
        if (status == BATCH_LINE_OK && !json_is_object(body))
            status = not_a_request(message, capacity, "%s", "body must be a JSON object");
        if (status == BATCH_LINE_OK) line->body = json_incref(body);
    } else { /* shorthand: the line is a completions body with its custom_id */
        line->endpoint = json_object_get(root, "messages") ? OPENAI_CHAT : OPENAI_COMPLETIONS;
        line->body = json_deep_copy(root);
        if (line->body) json_object_del(line->body, "custom_id");
        else status = not_a_request(message, capacity, "%s", "out of memory");
    }
    json_decref(root);
    return status;
}

void batch_line_free(batch_line *line) {
    free(line->custom_id);
    json_decref(line->body);
    memset(line, 0, sizeof *line);
}

static char *dump(json_t *line) {
    char *text = line ? json_dumps(line, JSON_COMPACT) : NULL;
    json_decref(line);
    return text;
}

char *batch_output_response(const char *custom_id, const char *request_id, int status, json_t *body) {
    char id[160];
    snprintf(id, sizeof id, "batch_req_%s", request_id);
    return dump(json_pack("{s:s, s:s, s:{s:i, s:s, s:o}, s:n}", "id", id, "custom_id", custom_id, "response",
                          "status_code", status, "request_id", request_id, "body", body ? body : json_object(),
                          "error"));
}

char *batch_output_error(const char *custom_id, long line_number, const char *code, const char *message) {
    char id[64];
    snprintf(id, sizeof id, "batch_req_line_%ld", line_number);
    return dump(json_pack("{s:s, s:o, s:n, s:{s:s, s:s}, s:{s:I}}", "id", id, "custom_id",
                          custom_id ? json_string(custom_id) : json_null(), "response", "error", "code", code,
                          "message", message, "ramp", "line", (json_int_t)line_number));
}

bool batch_output_parse(const char *text, size_t length, batch_done_line *done) {
    memset(done, 0, sizeof *done);
    done->line_number = -1;
    /* generated text may hold a NUL, which the answer wrote as "\u0000" */
    json_t *root = json_loadb(text, length, JSON_ALLOW_NUL, NULL);
    if (!json_is_object(root) || !json_object_get(root, "response") || !json_object_get(root, "error")) {
        json_decref(root);
        return false;
    }
    json_t *id = json_object_get(root, "custom_id");
    if (json_is_string(id)) done->custom_id = strdup(json_string_value(id));
    json_t *error = json_object_get(root, "error");
    if (json_is_object(error)) {
        json_t *line = json_object_get(json_object_get(root, "ramp"), "line");
        json_t *code = json_object_get(error, "code");
        done->duplicate = json_is_string(code) && !strcmp(json_string_value(code), "duplicate_custom_id");
        if (json_is_integer(line)) done->line_number = (long)json_integer_value(line);
    }
    json_decref(root);
    return true;
}
