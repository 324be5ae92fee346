#include "error.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

/* Length of the well-formed UTF-8 sequence at s (at most n bytes) that is safe to show, or 0:
 * overlong forms, surrogates and values past U+10FFFF are not well-formed; C1 controls
 * (U+0080..U+009F: e.g. U+009B is a terminal's CSI), the line and paragraph separators and the
 * bidirectional overrides and isolates (which reorder what a terminal shows) are not safe. */
static size_t safe_utf8_length(const unsigned char *s, size_t n) {
    size_t length;
    unsigned value;
    if (s[0] >= 0xc2 && s[0] <= 0xdf) length = 2, value = s[0] & 0x1fu;
    else if (s[0] >= 0xe0 && s[0] <= 0xef) length = 3, value = s[0] & 0x0fu;
    else if (s[0] >= 0xf0 && s[0] <= 0xf4) length = 4, value = s[0] & 0x07u;
    else return 0;
    if (n < length) return 0;
    for (size_t i = 1; i < length; i++) {
        if ((s[i] & 0xc0) != 0x80) return 0;
        value = value << 6 | (s[i] & 0x3fu);
    }
    static const unsigned smallest[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (value < smallest[length] || value > 0x10ffff || (value >= 0xd800 && value <= 0xdfff)) return 0;
    if (value <= 0x9f || value == 0x2028 || value == 0x2029 || (value >= 0x202a && value <= 0x202e) ||
        (value >= 0x2066 && value <= 0x2069))
        return 0;
    return length;
}

/* Copies text into out (capacity bytes, NUL-terminated) with every byte that could act on a
 * terminal written as \xNN: control characters, DEL, and bytes outside safe UTF-8. Messages often
 * quote bytes read from files; they must stay one printable line. Stops before an escape that
 * would not fit. */
static void escape_into(const char *text, char *out, size_t capacity) {
    const unsigned char *s = (const unsigned char *)text;
    size_t n = strlen(text), used = 0;
    for (size_t i = 0; i < n;) {
        size_t keep = s[i] >= 0x20 && s[i] < 0x7f ? 1 : s[i] >= 0x80 ? safe_utf8_length(s + i, n - i) : 0;
        if (keep > 0) {
            if (used + keep >= capacity) break;
            memcpy(out + used, s + i, keep);
            used += keep;
            i += keep;
        } else {
            if (used + 4 >= capacity) break;
            snprintf(out + used, 5, "\\x%02x", s[i]);
            used += 4;
            i++;
        }
    }
    out[used] = '\0';
}

static void format_escaped(ramp_error *err, const char *format, va_list args) {
    char raw[sizeof err->message];
    vsnprintf(raw, sizeof raw, format, args);
    escape_into(raw, err->message, sizeof err->message);
}

int ramp_failv(ramp_error *err, const char *format, va_list args) {
    if (err == NULL) return -1;
    format_escaped(err, format, args);
    return -1;
}

int ramp_fail(ramp_error *err, const char *format, ...) {
    if (err == NULL) return -1;
    va_list args;
    va_start(args, format);
    format_escaped(err, format, args);
    va_end(args);
    return -1;
}

int ramp_fail_prefix(ramp_error *err, const char *format, ...) {
    if (err == NULL) return -1;
    char raw[sizeof err->message], prefix[sizeof err->message];
    va_list args;
    va_start(args, format);
    vsnprintf(raw, sizeof raw, format, args);
    va_end(args);
    escape_into(raw, prefix, sizeof prefix);
    size_t prefix_length = strlen(prefix), old_length = strnlen(err->message, sizeof err->message - 1);
    if (prefix_length > sizeof err->message - 1) prefix_length = sizeof err->message - 1;
    if (prefix_length + old_length > sizeof err->message - 1) old_length = sizeof err->message - 1 - prefix_length;
    memmove(err->message + prefix_length, err->message, old_length);
    memcpy(err->message, prefix, prefix_length);
    err->message[prefix_length + old_length] = '\0';
    return -1;
}
