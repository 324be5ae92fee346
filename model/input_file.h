/* input_file.h: reading a whole file that comes from outside, within stated limits.
 *
 * A path given by a user (a prompts file, a task's data, an exit policy) may name anything: a
 * directory, /dev/zero, a FIFO, a file whose read fails halfway (EIO), a multi-gigabyte mistake.
 * input_file_read reads it with read(2) into a buffer grown up to a limit, so pipes and devices
 * work (nothing asks for a size or seeks), and fails, naming the file and what was expected, when:
 *  - it cannot be opened, or is a directory;
 *  - a read fails (the system's reason and the byte offset are given: never taken for an end);
 *  - it holds more than max_bytes;
 *  - a line (bytes before '\n', '\r' included) is longer than max_line, when max_line > 0: checked
 *    while reading, so an endless stream without newlines fails after max_line bytes;
 *  - it holds a NUL byte, unless allow_nul (text is later handled as C strings).
 * On success *data is malloc'ed (the caller frees it) and NUL-terminated; *size excludes the NUL.
 * On failure *data is NULL.
 */
#ifndef RAMP_INPUT_FILE_H
#define RAMP_INPUT_FILE_H

#include <stdbool.h>
#include <stddef.h>

#include "error.h"

typedef struct {
    const char *what; /* what the file is, for messages, e.g. "prompts file" */
    size_t max_bytes;
    size_t max_line; /* 0: lines are not limited */
    bool allow_nul;
} input_limits;

int input_file_read(const char *path, const input_limits *limits, char **data, size_t *size, ramp_error *err);

/* "64 MiB", "1 KiB", "300 bytes": a limit as messages state it. Returns out. */
const char *input_format_size(size_t bytes, char *out, size_t capacity);

#endif
