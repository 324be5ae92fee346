#include "input_file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define FIRST_CAPACITY 4096

const char *input_format_size(size_t bytes, char *out, size_t capacity) {
    if (bytes >= (1u << 20) && bytes % (1u << 20) == 0)
        snprintf(out, capacity, "%zu MiB", bytes >> 20);
    else if (bytes >= 1024 && bytes % 1024 == 0)
        snprintf(out, capacity, "%zu KiB", bytes >> 10);
    else
        snprintf(out, capacity, "%zu bytes", bytes);
    return out;
}

/* What the reader has seen so far of the current line and of the file. */
typedef struct {
    const char *path;
    const input_limits *limits;
    size_t line_length; /* bytes of the current line so far */
    size_t line;        /* 1-based number of the current line */
} scan_state;

/* Checks the bytes just read, in order: NUL bytes and line lengths. */
static int scan(scan_state *s, const char *bytes, size_t n, size_t offset, ramp_error *err) {
    char limit[32];
    for (size_t i = 0; i < n; i++) {
        if (bytes[i] == '\n') {
            s->line++;
            s->line_length = 0;
            continue;
        }
        if (bytes[i] == '\0' && !s->limits->allow_nul)
            return ramp_fail(err, "%s: NUL byte at offset %zu (line %zu), expected a text %s", s->path, offset + i,
                             s->line, s->limits->what);
        if (s->limits->max_line > 0 && ++s->line_length > s->limits->max_line)
            return ramp_fail(err, "%s: line %zu is longer than %s, the limit for a line of a %s", s->path, s->line,
                             input_format_size(s->limits->max_line, limit, sizeof limit), s->limits->what);
    }
    return 0;
}

int input_file_read(const char *path, const input_limits *limits, char **data, size_t *size, ramp_error *err) {
    *data = NULL;
    *size = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return ramp_fail(err, "%s: cannot open the %s: %s", path, limits->what, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
        close(fd);
        return ramp_fail(err, "%s: is a directory, expected a %s", path, limits->what);
    }
    /* A regular file's size is a good first guess (with room for the read that sees its end and
     * for the NUL, so a file read whole is never copied); streams start small and grow. */
    size_t capacity = FIRST_CAPACITY;
    if (S_ISREG(st.st_mode) && st.st_size > 0 && (unsigned long long)st.st_size <= limits->max_bytes)
        capacity = (size_t)st.st_size + 2;
    char *buffer = malloc(capacity);
    if (!buffer) {
        close(fd);
        return ramp_fail(err, "%s: out of memory reading the %s", path, limits->what);
    }
    scan_state state = {.path = path, .limits = limits, .line = 1};
    size_t length = 0;
    char limit[32];
    for (;;) {
        if (length + 1 >= capacity) {
            if (capacity > limits->max_bytes) {
                free(buffer);
                close(fd);
                return ramp_fail(err, "%s: larger than %s, the limit for a %s", path,
                                 input_format_size(limits->max_bytes, limit, sizeof limit), limits->what);
            }
            /* One byte past the limit is room enough to notice that the file is over it. */
            size_t grown = capacity * 2;
            if (grown > limits->max_bytes + 2) grown = limits->max_bytes + 2;
            char *bigger = realloc(buffer, grown);
            if (!bigger) {
                free(buffer);
                close(fd);
                return ramp_fail(err, "%s: out of memory reading the %s (%zu bytes so far)", path, limits->what, length);
            }
            buffer = bigger;
            capacity = grown;
        }
        ssize_t got = read(fd, buffer + length, capacity - 1 - length);
        if (got < 0 && errno == EINTR) continue;
        if (got < 0) {
            int saved = errno;
            free(buffer);
            close(fd);
            return ramp_fail(err, "%s: read error at byte %zu of the %s: %s", path, length, limits->what,
                             strerror(saved));
        }
        if (got == 0) break;
        if (scan(&state, buffer + length, (size_t)got, length, err)) {
            free(buffer);
            close(fd);
            return -1;
        }
        length += (size_t)got;
        if (length > limits->max_bytes) {
            free(buffer);
            close(fd);
            return ramp_fail(err, "%s: larger than %s, the limit for a %s", path,
                             input_format_size(limits->max_bytes, limit, sizeof limit), limits->what);
        }
    }
    close(fd);
    buffer[length] = '\0';
    *data = buffer;
    *size = length;
    return 0;
}
