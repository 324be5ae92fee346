#include "text_stream.h"

#include <stdlib.h>
#include <string.h>

int text_stream_init(text_stream *t, const char *const *stop, int n_stop, ramp_error *err) {
    memset(t, 0, sizeof *t);
    if (n_stop > TEXT_STREAM_MAX_STOP) return ramp_fail(err, "at most %d stop strings, got %d", TEXT_STREAM_MAX_STOP, n_stop);
    for (int i = 0; i < n_stop; i++) {
        size_t n = strlen(stop[i]);
        if (n == 0) continue; /* an empty stop string would end every text at once */
        t->stop[t->n_stop] = malloc(n + 1);
        if (!t->stop[t->n_stop]) {
            text_stream_free(t);
            return ramp_fail(err, "out of memory");
        }
        memcpy(t->stop[t->n_stop], stop[i], n + 1);
        t->stop_length[t->n_stop++] = n;
    }
    return 0;
}

void text_stream_free(text_stream *t) {
    for (int i = 0; i < t->n_stop; i++) free(t->stop[i]);
    free(t->bytes);
    free(t->out);
    memset(t, 0, sizeof *t);
}

static int grow(char **buffer, size_t *capacity, size_t needed) {
    if (needed <= *capacity) return 0;
    size_t c = *capacity ? *capacity : 64;
    while (c < needed) c *= 2;
    char *grown = realloc(*buffer, c);
    if (!grown) return -1;
    *buffer = grown;
    *capacity = c;
    return 0;
}

int text_stream_append(text_stream *t, const char *bytes, size_t n) {
    if (t->stopped) return 1;
    size_t old = t->length;
    if (grow(&t->bytes, &t->capacity, t->length + n + 1)) return -1;
    memcpy(t->bytes + t->length, bytes, n);
    t->length += n;
    /* The first stop string that now appears, looking only where the new bytes can complete one. */
    size_t cut = t->length + 1;
    for (int i = 0; i < t->n_stop; i++) {
        size_t from = old + 1 > t->stop_length[i] ? old + 1 - t->stop_length[i] : 0;
        if (from < t->settled) from = t->settled; /* settled text was checked before */
        void *hit = t->length >= from + t->stop_length[i]
                        ? memmem(t->bytes + from, t->length - from, t->stop[i], t->stop_length[i])
                        : NULL;
        if (hit && (size_t)((char *)hit - t->bytes) < cut) cut = (size_t)((char *)hit - t->bytes);
    }
    if (cut <= t->length) {
        t->length = cut;
        t->stopped = true;
        return 1;
    }
    return 0;
}

/* Bytes at the end that could still be the beginning of a stop string. */
static size_t stop_prefix_at_end(const text_stream *t) {
    size_t held = 0;
    for (int i = 0; i < t->n_stop; i++) {
        size_t longest = t->stop_length[i] - 1 < t->length ? t->stop_length[i] - 1 : t->length;
        for (size_t k = longest; k > held; k--)
            if (!memcmp(t->bytes + t->length - k, t->stop[i], k)) {
                held = k;
                break;
            }
    }
    return held;
}

const char *text_stream_take(text_stream *t, bool final, size_t *length) {
    size_t end = t->length;
    if (!final && !t->stopped) {
        end -= stop_prefix_at_end(t);
        if (end < t->settled) end = t->settled;
        end = t->settled + utf8_complete_prefix(t->bytes + t->settled, end - t->settled);
    }
    size_t n = end - t->settled;
    if (grow(&t->out, &t->out_capacity, 3 * n + 1)) {
        *length = 0;
        return "";
    }
    *length = utf8_sanitize(t->bytes + t->settled, n, t->out);
    t->out[*length] = '\0';
    t->settled = end;
    return t->out;
}

/* Length of the valid UTF-8 character starting at s (n bytes available): 1..4, 0 when the bytes
 * are invalid, or -(needed) when valid so far but cut short. */
static int utf8_char(const unsigned char *s, size_t n) {
    unsigned char c = s[0];
    int need;
    unsigned char low = 0x80, high = 0xBF;
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) need = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        need = 3;
        if (c == 0xE0) low = 0xA0;
        if (c == 0xED) high = 0x9F; /* no UTF-16 surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 4;
        if (c == 0xF0) low = 0x90;
        if (c == 0xF4) high = 0x8F;
    } else
        return 0;
    for (int k = 1; k < need; k++) {
        if ((size_t)k >= n) return -need;
        unsigned char b = s[k];
        if (b < (k == 1 ? low : 0x80) || b > (k == 1 ? high : 0xBF)) return 0;
    }
    return need;
}

size_t utf8_complete_prefix(const char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        int k = utf8_char((const unsigned char *)s + i, n - i);
        if (k < 0) return i; /* an unfinished character at the end: hold it back */
        i += k ? (size_t)k : 1;
    }
    return n;
}

size_t utf8_sanitize(const char *s, size_t n, char *out) {
    size_t i = 0, o = 0;
    while (i < n) {
        int k = utf8_char((const unsigned char *)s + i, n - i);
        if (k > 0) {
            memcpy(out + o, s + i, (size_t)k);
            o += (size_t)k;
            i += (size_t)k;
        } else {
            memcpy(out + o, "\xEF\xBF\xBD", 3);
            o += 3;
            i += 1;
        }
    }
    return o;
}
