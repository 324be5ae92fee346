/* text_stream.h: a request's generated text as it grows token by token.
 *
 * It finds stop strings (the text ends just before the first match, which is never shown) and
 * hands out only settled text: whole UTF-8 characters that can no longer turn into a stop string.
 * Bytes that are not valid UTF-8 (a model can emit any byte sequence) come out as U+FFFD, so
 * every piece handed out is valid UTF-8, as JSON needs. Owns its buffers.
 */
#ifndef RAMP_TEXT_STREAM_H
#define RAMP_TEXT_STREAM_H

#include <stdbool.h>
#include <stddef.h>

#include "error.h"

#define TEXT_STREAM_MAX_STOP 4

typedef struct {
    char *bytes;            /* the raw text so far (cut at a stop string once found) */
    size_t length, capacity;
    size_t settled;         /* bytes of `bytes` already handed out */
    char *stop[TEXT_STREAM_MAX_STOP];
    size_t stop_length[TEXT_STREAM_MAX_STOP];
    int n_stop;
    bool stopped;           /* a stop string was found */
    char *out;              /* the last piece handed out (sanitized) */
    size_t out_capacity;
} text_stream;

int text_stream_init(text_stream *t, const char *const *stop, int n_stop, ramp_error *err);
void text_stream_free(text_stream *t);
/* Appends n bytes. Returns 1 when a stop string now appears (the text is cut before it and
 * nothing more may be appended), 0 otherwise, -1 when out of memory. */
int text_stream_append(text_stream *t, const char *bytes, size_t n);
/* The text settled since the last call (final: everything left), valid UTF-8; points into the
 * stream, valid until the next call. */
const char *text_stream_take(text_stream *t, bool final, size_t *length);

/* Length of the longest prefix of s[0..n) that ends on a character boundary of valid UTF-8 with
 * an incomplete but still valid character after it (0..3 bytes held back). */
size_t utf8_complete_prefix(const char *s, size_t n);
/* Writes s[0..n) to out with invalid sequences replaced by U+FFFD; out needs 3 * n bytes. */
size_t utf8_sanitize(const char *s, size_t n, char *out);

#endif
