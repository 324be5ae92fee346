/* batch_line.h: the lines of a batch job, in the OpenAI Batch API format (as vLLM's run-batch
 * reads it).
 *
 * Input, one JSON object per line:
 *   {"custom_id": "a", "method": "POST", "url": "/v1/completions" | "/v1/chat/completions",
 *    "body": {...the request body...}}
 * or the shorthand {"custom_id": "a", "prompt": "...", ...} (a /v1/completions body with the id).
 * Output, one line per request:
 *   {"id": "batch_req_...", "custom_id": "a", "response": {"status_code": 200, "request_id": "...",
 *    "body": {...exactly what ramp serve answers...}}, "error": null}
 * A request the server would refuse (a bad body, a prompt beyond the context) gets its response
 * with the status and error body serve would send. A line that is not a request at all (not JSON,
 * no custom_id, unknown url, a duplicate custom_id) gets "response": null and
 * "error": {"code", "message"}, with "ramp": {"line": N} so that a resumed job knows it was done.
 */
#ifndef RAMP_BATCH_LINE_H
#define RAMP_BATCH_LINE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "openai.h"

/* Longest input line (a request body) ramp reads. */
#define BATCH_MAX_LINE (16u << 20)

typedef struct {
    char *custom_id;          /* owned; NULL when the line has none */
    openai_endpoint endpoint;
    json_t *body;             /* the request body (new reference), parsed by the caller */
} batch_line;

typedef enum {
    BATCH_LINE_OK,
    BATCH_LINE_NOT_A_REQUEST, /* *message says why; custom_id is set when the line had one */
} batch_line_status;

/* Parses one input line (length bytes, no newline). */
batch_line_status batch_line_parse(const char *text, size_t length, batch_line *line, char *message, size_t capacity);
void batch_line_free(batch_line *line);

/* The output line (without the newline; malloc'ed) for a response: status and body (stolen). */
char *batch_output_response(const char *custom_id, const char *request_id, int status, json_t *body);
/* The output line for input line `line_number` that was not a request. */
char *batch_output_error(const char *custom_id, long line_number, const char *code, const char *message);

/* What a line of an earlier output says about the work done (for resume). */
typedef struct {
    char *custom_id;   /* owned, or NULL */
    long line_number;  /* an error line's input line (not a request, or a repeated custom_id), else -1:
                        * a response, known by its custom_id */
    bool duplicate;    /* the error line of a repeated custom_id */
} batch_done_line;

/* Reads one output line; returns false when it is not a complete output object. */
bool batch_output_parse(const char *text, size_t length, batch_done_line *done);

#endif
