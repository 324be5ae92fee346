#include "cli.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "input_file.h"

int cli_parse_int(const char *flag, const char *text, long min, long max, int *out, ramp_error *err) {
    char *end;
    errno = 0;
    long value = strtol(text, &end, 10);
    if (!*text || *end || errno || value < min || value > max)
        return ramp_fail(err, "%s expects an integer in %ld..%ld, got '%s'", flag, min, max, text);
    *out = (int)value;
    return 0;
}

int cli_parse_float(const char *flag, const char *text, float *out, ramp_error *err) {
    char *end;
    float value = strtof(text, &end);
    if (!*text || *end || !isfinite(value)) return ramp_fail(err, "%s expects a number, got '%s'", flag, text);
    *out = value;
    return 0;
}

int cli_parse_u64(const char *flag, const char *text, uint64_t *out, ramp_error *err) {
    char *end;
    errno = 0;
    unsigned long long value = strtoull(text, &end, 10);
    if (!*text || *end || errno || text[0] == '-')
        return ramp_fail(err, "%s expects a non-negative integer, got '%s'", flag, text);
    *out = value;
    return 0;
}

ramp_error *cli_error(ramp_error *err, const char *format, ...) {
    va_list args;
    va_start(args, format);
    ramp_failv(err, format, args);
    va_end(args);
    return err;
}

int cli_usage_error(const char *command, const ramp_error *err) {
    fprintf(stderr, "ramp %s: %s\n", command, err->message);
    return 2;
}

int prompt_list_add(prompt_list *list, const char *text, size_t length, ramp_error *err) {
    if (list->count == list->capacity) {
        int capacity = list->capacity ? 2 * list->capacity : 8;
        char **texts = realloc(list->texts, (size_t)capacity * sizeof *texts);
        if (texts) list->texts = texts;
        size_t *lengths = realloc(list->lengths, (size_t)capacity * sizeof *lengths);
        if (lengths) list->lengths = lengths;
        if (!texts || !lengths) return ramp_fail(err, "out of memory reading prompts");
        list->capacity = capacity;
    }
    char *copy = malloc(length + 1);
    if (!copy) return ramp_fail(err, "out of memory reading prompts");
    memcpy(copy, text, length);
    copy[length] = '\0';
    list->texts[list->count] = copy;
    list->lengths[list->count++] = length;
    return 0;
}

/* In place: "\n" -> newline, "\\" -> backslash. Returns the new length. */
static size_t unescape(char *text, size_t length) {
    size_t out = 0;
    for (size_t i = 0; i < length; i++) {
        if (text[i] == '\\' && i + 1 < length && (text[i + 1] == 'n' || text[i + 1] == '\\')) {
            text[out++] = text[i + 1] == 'n' ? '\n' : '\\';
            i++;
        } else {
            text[out++] = text[i];
        }
    }
    return out;
}

int prompt_list_read(prompt_list *list, const char *path, ramp_error *err) {
    const input_limits limits = {.what = "prompts file", .max_bytes = PROMPT_FILE_MAX_BYTES,
                                 .max_line = PROMPT_MAX_LINE, .allow_nul = false};
    char *data;
    size_t size;
    if (input_file_read(path, &limits, &data, &size, err)) return -1;
    int status = 0, line_number = 0;
    for (char *line = data; !status && line < data + size;) {
        char *newline = memchr(line, '\n', (size_t)(data + size - line));
        char *end = newline ? newline : data + size;
        line_number++;
        size_t length = (size_t)(end - line);
        while (length > 0 && line[length - 1] == '\r') length--;
        if (length > 0 && list->count == PROMPT_MAX_COUNT)
            status = ramp_fail(err, "%s: line %d: more than %d prompts, the limit for one prompts file", path,
                               line_number, PROMPT_MAX_COUNT);
        else if (length > 0)
            status = prompt_list_add(list, line, unescape(line, length), err);
        line = end + 1;
    }
    free(data);
    if (!status && list->count == 0) return ramp_fail(err, "%s: no prompts (one per line expected)", path);
    return status;
}

void prompt_list_free(prompt_list *list) {
    for (int i = 0; i < list->count; i++) free(list->texts[i]);
    free(list->texts);
    free(list->lengths);
    memset(list, 0, sizeof *list);
}
