#include "cli.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    vsnprintf(err->message, sizeof err->message, format, args);
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
    FILE *f = fopen(path, "rb");
    if (!f) return ramp_fail(err, "%s: cannot open: %s", path, strerror(errno));
    char *line = NULL;
    size_t capacity = 0;
    ssize_t length;
    int status = 0;
    while ((length = getline(&line, &capacity, f)) >= 0) {
        while (length > 0 && (line[length - 1] == '\n' || line[length - 1] == '\r')) length--;
        if (length == 0) continue;
        if (prompt_list_add(list, line, unescape(line, (size_t)length), err)) {
            status = -1;
            break;
        }
    }
    free(line);
    fclose(f);
    if (!status && list->count == 0) return ramp_fail(err, "%s: no prompts (one per line expected)", path);
    return status;
}

void prompt_list_free(prompt_list *list) {
    for (int i = 0; i < list->count; i++) free(list->texts[i]);
    free(list->texts);
    free(list->lengths);
    memset(list, 0, sizeof *list);
}
