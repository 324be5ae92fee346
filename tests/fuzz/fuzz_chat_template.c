/* fuzz_chat_template.c: chat messages from outside (`ramp serve`'s /v1/chat/completions, `ramp
 * batch`) rendered with every template family, and the template text itself (a GGUF's
 * tokenizer.chat_template) as detect reads it. `make fuzz` runs it (seeds: tests/fuzz/seeds.sh).
 * Input: byte 0 picks the family (0x80 and above: detect the family from the rest, read as the
 * template text); the rest is messages separated by 0x1e, each a role byte (0 system, 1 user,
 * 2 assistant, anything else unknown) and its content (any bytes, NUL included).
 * Properties: render succeeds exactly when every role is known; the text is NUL-terminated at its
 * length; families that copy content copy it whole; and where a family trims (Llama-3), what it
 * keeps of a lone user message is that content with only whitespace cut from each end (Python's
 * str.isspace characters), and nothing more to cut. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "chat_template.h"
#include "fuzz.h"

enum { FUZZ_CHAT_MAX_MESSAGES = 64 };

/* The code point of the well-formed UTF-8 character at p (1-3 bytes, as many as whitespace
 * needs), its length in *size; -1 where the bytes are not one. */
static long fuzz_chat_code_point(const unsigned char *p, size_t n, size_t *size) {
    if (n >= 1 && p[0] < 0x80) return *size = 1, p[0];
    if (n >= 2 && (p[0] & 0xe0) == 0xc0 && (p[1] & 0xc0) == 0x80 && p[0] >= 0xc2)
        return *size = 2, ((long)(p[0] & 0x1f) << 6) | (p[1] & 0x3f);
    if (n >= 3 && (p[0] & 0xf0) == 0xe0 && (p[1] & 0xc0) == 0x80 && (p[2] & 0xc0) == 0x80) {
        long c = ((long)(p[0] & 0x0f) << 12) | ((long)(p[1] & 0x3f) << 6) | (p[2] & 0x3f);
        if (c >= 0x800 && (c < 0xd800 || c > 0xdfff)) return *size = 3, c;
    }
    return -1;
}

/* Python's str.isspace. */
static bool fuzz_chat_is_space(long c) {
    return (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x20) || c == 0x85 || c == 0xa0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 || c == 0x202f || c == 0x205f || c == 0x3000;
}

/* Whether bytes [from, to) of p are whitespace characters and nothing else. */
static bool fuzz_chat_all_space(const unsigned char *p, size_t from, size_t to) {
    size_t size;
    for (size_t at = from; at < to; at += size) {
        long c = fuzz_chat_code_point(p + at, to - at, &size);
        if (c < 0 || !fuzz_chat_is_space(c)) return false;
    }
    return true;
}

/* Whether p[0..n) ends with a whitespace character (the last 1, 2 or 3 bytes form one). */
static bool fuzz_chat_ends_in_space(const unsigned char *p, size_t n) {
    for (size_t k = 1; k <= 3 && k <= n; k++) {
        size_t size;
        long c = fuzz_chat_code_point(p + n - k, k, &size);
        if (c >= 0 && size == k && fuzz_chat_is_space(c)) return true;
    }
    return false;
}

/* A lone user message through Llama-3's trim: the kept span is content[b, e) with whitespace alone
 * cut on each side, and it neither starts nor ends with whitespace. */
static void fuzz_chat_check_trim(const chat_message *user) {
    static const char head[] = "<|start_header_id|>user<|end_header_id|>\n\n", tail[] = "<|eot_id|>";
    char *text = NULL;
    size_t length = 0;
    ramp_error err = {{0}};
    fuzz_require(chat_template_render(CHAT_TEMPLATE_LLAMA3, user, 1, &text, &length, &err) == 0, "%s", err.message);
    const size_t head_length = sizeof head - 1;
    const char *end = NULL;
    for (size_t at = length; at-- > head_length;) /* the last "<|eot_id|>": the content may hold one too */
        if (length - at >= sizeof tail - 1 && memcmp(text + at, tail, sizeof tail - 1) == 0) {
            end = text + at;
            break;
        }
    fuzz_require(memcmp(text, head, head_length) == 0 && end != NULL, "llama3 turn shape");
    const unsigned char *kept = (const unsigned char *)text + head_length;
    const size_t kept_length = (size_t)(end - (const char *)kept);
    const unsigned char *content = (const unsigned char *)user->content;
    bool found = false;
    for (size_t b = 0; !found && b + kept_length <= user->content_length; b++)
        if (memcmp(content + b, kept, kept_length) == 0 && fuzz_chat_all_space(content, 0, b) &&
            fuzz_chat_all_space(content, b + kept_length, user->content_length))
            found = true;
    fuzz_require(found, "trim kept %zu of %zu bytes that are not the content less whitespace at its ends", kept_length,
                 user->content_length);
    size_t first;
    const long c = kept_length ? fuzz_chat_code_point(kept, kept_length, &first) : -1;
    fuzz_require(kept_length == 0 || ((c < 0 || !fuzz_chat_is_space(c)) && !fuzz_chat_ends_in_space(kept, kept_length)),
                 "trim left whitespace at an end of %zu bytes", kept_length);
    free(text);
}

int fuzz_chat_template(const uint8_t *data, size_t size) {
    if (size == 0) return 0;
    chat_template_family family = (chat_template_family)(data[0] % 8);
    if (data[0] >= 0x80) { /* the rest as a template text, NUL-terminated */
        char *template_text = malloc(size);
        memcpy(template_text, data + 1, size - 1);
        template_text[size - 1] = '\0';
        family = chat_template_detect(template_text);
        free(template_text);
        fuzz_require((int)family >= 0 && (int)family < 8 && strcmp(chat_template_name(family), "unknown") != 0,
                     "detect gave family %d", (int)family);
    }
    static const char *const roles[] = {"system", "user", "assistant", "tool"};
    chat_message messages[FUZZ_CHAT_MAX_MESSAGES];
    int n = 0;
    bool known = true;
    for (size_t at = 1; at < size && n < FUZZ_CHAT_MAX_MESSAGES;) {
        const uint8_t *end = memchr(data + at, 0x1e, size - at);
        const size_t stop = end ? (size_t)(end - data) : size;
        const uint8_t role = data[at];
        messages[n++] = (chat_message){.role = roles[role < 3 ? role : 3],
                                       .content = (const char *)data + at + 1,
                                       .content_length = stop - at - 1};
        known = known && role < 3;
        at = stop + 1;
    }
    char *text = NULL;
    size_t length = 0;
    ramp_error err = {{0}};
    const int rc = chat_template_render(family, messages, n, &text, &length, &err);
    fuzz_require((rc == 0) == (n > 0 && known), "render gave %d for %d messages, roles %s: %s", rc, n,
                 known ? "known" : "not all known", err.message);
    if (rc != 0) {
        fuzz_require(text == NULL, "a failed render left text");
        fuzz_require_clean_message(&err);
        return 0;
    }
    fuzz_require(text != NULL && text[length] == '\0', "rendered text not NUL-terminated at its length");
    const bool copies = family == CHAT_TEMPLATE_CHATML || family == CHAT_TEMPLATE_ZEPHYR ||
                        family == CHAT_TEMPLATE_PHI3 || family == CHAT_TEMPLATE_FALLBACK;
    for (int i = 0; copies && i < n; i++)
        fuzz_require(messages[i].content_length == 0 ||
                         memmem(text, length, messages[i].content, messages[i].content_length) != NULL,
                     "%s: message %d's content is not in the text", chat_template_name(family), i);
    free(text);
    if (n == 1 && messages[0].role == roles[1]) fuzz_chat_check_trim(&messages[0]);
    return 0;
}

FUZZ_ENTRY(fuzz_chat_template)
