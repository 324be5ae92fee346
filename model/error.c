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
    char old[sizeof err->message];
    memcpy(old, err->message, sizeof old);
    snprintf(err->message, sizeof err->message, "%s%s", prefix, old);
    return -1;
}
