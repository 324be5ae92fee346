#include "error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int ramp_fail(ramp_error *err, const char *format, ...) {
    if (err == NULL) return -1;
    va_list args;
    va_start(args, format);
    vsnprintf(err->message, sizeof err->message, format, args);
    va_end(args);
    return -1;
}

int ramp_fail_prefix(ramp_error *err, const char *format, ...) {
    if (err == NULL) return -1;
    char prefix[sizeof err->message];
    va_list args;
    va_start(args, format);
    vsnprintf(prefix, sizeof prefix, format, args);
    va_end(args);
    size_t prefix_length = strlen(prefix), old_length = strnlen(err->message, sizeof err->message - 1);
    if (prefix_length > sizeof err->message - 1) prefix_length = sizeof err->message - 1;
    if (prefix_length + old_length > sizeof err->message - 1) old_length = sizeof err->message - 1 - prefix_length;
    memmove(err->message + prefix_length, err->message, old_length);
    memcpy(err->message, prefix, prefix_length);
    err->message[prefix_length + old_length] = '\0';
    return -1;
}
