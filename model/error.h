/* error.h: errors are values.
 *
 * Every fallible function returns 0 on success and -1 on failure; on failure it has written a
 * one-line message into the caller's ramp_error that says what was expected and what was found,
 * e.g. "model.gguf: tensor blk.3.attn_q.weight has shape 64x128, expected 128x128".
 * A ramp_error is a plain value owned by the caller (usually on the stack); it allocates nothing.
 * Messages quote bytes from files, so they are kept one printable line: control characters, DEL
 * and bytes that are not safe UTF-8 (C1 controls, bidirectional overrides, invalid sequences) are
 * written as \xNN when the message is formatted.
 */
#ifndef RAMP_ERROR_H
#define RAMP_ERROR_H

#include <stdarg.h>
#include <stddef.h>

typedef struct {
    char message[1024];
} ramp_error;

/* Formats the message into err (when err is not NULL) and returns -1, so callers can write
 * `return ramp_fail(err, "...", ...);`. */
int ramp_fail(ramp_error *err, const char *format, ...) __attribute__((format(printf, 2, 3)));

/* ramp_fail with a va_list. */
int ramp_failv(ramp_error *err, const char *format, va_list args);

/* Prefixes an existing message with more context: "stage 2: " + old message. Returns -1. */
int ramp_fail_prefix(ramp_error *err, const char *format, ...) __attribute__((format(printf, 2, 3)));

#endif
