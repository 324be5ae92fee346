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
/* A prompts file from outside is bounded: a line (one prompt) of more than PROMPT_MAX_LINE bytes,
 * a file of more than PROMPT_FILE_MAX_BYTES or more than PROMPT_MAX_COUNT prompts is an error, so
 * `-f /dev/zero` fails within a megabyte instead of growing until memory runs out. */
#define PROMPT_MAX_LINE ((size_t)1 << 20)
#define PROMPT_FILE_MAX_BYTES ((size_t)256 << 20)
#define PROMPT_MAX_COUNT (1 << 20)

/* One prompt per non-empty line; the two characters \n stand for a newline, \\ for a backslash.
 * Read errors, a directory, NUL bytes and the limits above fail with a message naming the file. */
int prompt_list_read(prompt_list *list, const char *path, ramp_error *err);
void prompt_list_free(prompt_list *list);

/* getopt_long entries for the pipeline flags; every one maps to `code` (see pipeline.h). */
#define CLI_PIPELINE_OPTIONS(code)                                                                           \
    {"layers", required_argument, 0, code}, {"stages", required_argument, 0, code},                         \
        {"threads", required_argument, 0, code}, {"max-sequences", required_argument, 0, code},             \
        {"batch-tokens", required_argument, 0, code}, {"micro-batches", required_argument, 0, code},        \
        {"ctx", required_argument, 0, code}, {"timeout", required_argument, 0, code},                       \
        {"metrics-json", required_argument, 0, code}, {"split", required_argument, 0, code}, {"parallel-layers", required_argument, 0, code}, {"run-ahead", required_argument, 0, code}, {"pair-ranks", required_argument, 0, code}, {"kv-type", required_argument, 0, code}, {"huge-pages", required_argument, 0, code}

#endif
