/* cli.h: small helpers shared by the subcommands: strict number parsing, prompt files, and the
 * getopt table entries of the pipeline flags. Parse functions return 0 or -1 with err set. */
#ifndef RAMP_CLI_H
#define RAMP_CLI_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"

int cli_parse_int(const char *flag, const char *text, long min, long max, int *out, ramp_error *err);
int cli_parse_float(const char *flag, const char *text, float *out, ramp_error *err);
int cli_parse_u64(const char *flag, const char *text, uint64_t *out, ramp_error *err);
/* Formats err and returns it (for one-line `return cli_usage_error(cmd, cli_error(&err, ...))`). */
ramp_error *cli_error(ramp_error *err, const char *format, ...) __attribute__((format(printf, 2, 3)));
/* Prints "ramp COMMAND: message" and returns 2 (bad usage). */
int cli_usage_error(const char *command, const ramp_error *err);

/* Prompts owned by the list (each malloc'ed, with its byte length). */
typedef struct {
    char **texts;
    size_t *lengths;
    int count, capacity;
} prompt_list;

int prompt_list_add(prompt_list *list, const char *text, size_t length, ramp_error *err);
/* One prompt per non-empty line; the two characters \n stand for a newline, \\ for a backslash. */
int prompt_list_read(prompt_list *list, const char *path, ramp_error *err);
void prompt_list_free(prompt_list *list);

/* getopt_long entries for the pipeline flags; every one maps to `code` (see pipeline.h). */
#define CLI_PIPELINE_OPTIONS(code)                                                                           \
    {"layers", required_argument, 0, code}, {"stages", required_argument, 0, code},                         \
        {"threads", required_argument, 0, code}, {"max-sequences", required_argument, 0, code},             \
        {"batch-tokens", required_argument, 0, code}, {"micro-batches", required_argument, 0, code},        \
        {"ctx", required_argument, 0, code}, {"timeout", required_argument, 0, code},                       \
        {"metrics-json", required_argument, 0, code}, {"split", required_argument, 0, code}

#endif
