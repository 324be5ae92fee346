#include "chat_template.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ---- detection ---------------------------------------------------------------------------------- */

static const char *const FAMILY_NAMES[] = {
    [CHAT_TEMPLATE_FALLBACK] = "fallback", [CHAT_TEMPLATE_LLAMA2] = "llama2",   [CHAT_TEMPLATE_LLAMA3] = "llama3",
    [CHAT_TEMPLATE_CHATML] = "chatml",     [CHAT_TEMPLATE_ZEPHYR] = "zephyr",   [CHAT_TEMPLATE_MISTRAL] = "mistral",
    [CHAT_TEMPLATE_GEMMA] = "gemma",       [CHAT_TEMPLATE_PHI3] = "phi3",
};
enum { N_FAMILIES = (int)(sizeof FAMILY_NAMES / sizeof FAMILY_NAMES[0]) };

const char *chat_template_name(chat_template_family family) {
    if ((int)family < 0 || (int)family >= N_FAMILIES) return "unknown";
    return FAMILY_NAMES[family];
}

chat_template_family chat_template_detect(const char *template_text) {
    if (template_text == NULL || template_text[0] == '\0') return CHAT_TEMPLATE_FALLBACK;
    for (int f = 0; f < N_FAMILIES; f++) /* a family's own name, as a user would pass it */
        if (strcmp(template_text, FAMILY_NAMES[f]) == 0) return (chat_template_family)f;
    /* The order matters where a template carries several markers: ChatML first (as llama.cpp does),
     * then [INST] (Llama-2 when it folds a system prompt into <<SYS>>, Mistral otherwise). */
    if (strstr(template_text, "<|im_start|>")) return CHAT_TEMPLATE_CHATML;
    if (strstr(template_text, "[INST]"))
        return strstr(template_text, "<<SYS>>") ? CHAT_TEMPLATE_LLAMA2 : CHAT_TEMPLATE_MISTRAL;
    if (strstr(template_text, "<|start_header_id|>")) return CHAT_TEMPLATE_LLAMA3;
    if (strstr(template_text, "<start_of_turn>")) return CHAT_TEMPLATE_GEMMA;
    /* Phi-3 writes <|user|> as Zephyr does, but ends turns with <|end|> where Zephyr writes EOS. */
    if (strstr(template_text, "<|user|>"))
        return strstr(template_text, "<|end|>") ? CHAT_TEMPLATE_PHI3 : CHAT_TEMPLATE_ZEPHYR;
    return CHAT_TEMPLATE_FALLBACK;
}

/* ---- a growing output buffer -------------------------------------------------------------------- */

typedef struct {
    char *data;
    size_t length, capacity;
} text_buffer;

static int put(text_buffer *b, const char *bytes, size_t n, ramp_error *err) {
    if (n > SIZE_MAX - 1 - b->length) return ramp_fail(err, "chat template: rendered text exceeds the address space");
    size_t need = b->length + n + 1; /* + NUL */
    if (need > b->capacity) {
        size_t capacity = b->capacity ? b->capacity : 256;
        while (capacity < need) capacity = capacity > SIZE_MAX / 2 ? need : capacity * 2;
        char *grown = realloc(b->data, capacity);
        if (grown == NULL) return ramp_fail(err, "chat template: out of memory for %zu bytes of prompt text", capacity);
        b->data = grown;
        b->capacity = capacity;
    }
    if (n > 0) memcpy(b->data + b->length, bytes, n);
    b->length += n;
    b->data[b->length] = '\0';
    return 0;
}

static int put_str(text_buffer *b, const char *s, ramp_error *err) { return put(b, s, strlen(s), err); }

/* ---- Jinja's trim / Python's str.strip(): Unicode whitespace at both ends --------------------- */

typedef struct {
    const char *data;
    size_t length;
} span;

/* Length of the whitespace character (as Python's str.isspace sees it) that starts at p, else 0. */
static size_t space_starting(const unsigned char *p, size_t n) {
    if (n >= 1 && ((p[0] >= 0x09 && p[0] <= 0x0d) || (p[0] >= 0x1c && p[0] <= 0x20))) return 1;
    if (n >= 2 && p[0] == 0xc2 && (p[1] == 0x85 || p[1] == 0xa0)) return 2; /* U+0085, U+00A0 */
    if (n >= 3) {
        if (p[0] == 0xe1 && p[1] == 0x9a && p[2] == 0x80) return 3; /* U+1680 */
        unsigned c = p[2];
        if (p[0] == 0xe2 && p[1] == 0x80 && ((c >= 0x80 && c <= 0x8a) || c == 0xa8 || c == 0xa9 || c == 0xaf))
            return 3; /* U+2000..200A, U+2028, U+2029, U+202F */
        if (p[0] == 0xe2 && p[1] == 0x81 && p[2] == 0x9f) return 3; /* U+205F */
        if (p[0] == 0xe3 && p[1] == 0x80 && p[2] == 0x80) return 3; /* U+3000 */
    }
    return 0;
}

/* Length of the whitespace character that ends at p + n, else 0. A lead byte cannot be a
 * continuation byte, so a match here is a whole character. */
static size_t space_ending(const unsigned char *p, size_t n) {
    if (n >= 1 && space_starting(p + n - 1, 1) == 1) return 1;
    if (n >= 2 && space_starting(p + n - 2, 2) == 2) return 2;
    if (n >= 3 && space_starting(p + n - 3, 3) == 3) return 3;
    return 0;
}

static span strip(span s) {
    const unsigned char *p = (const unsigned char *)s.data;
    size_t begin = 0, end = s.length, k;
    while (begin < end && (k = space_starting(p + begin, end - begin)) > 0) begin += k;
    while (end > begin && (k = space_ending(p + begin, end - begin)) > 0) end -= k;
    return (span){s.data + begin, end - begin};
}

/* ---- messages ----------------------------------------------------------------------------------- */

typedef enum { ROLE_SYSTEM, ROLE_USER, ROLE_ASSISTANT } chat_role;

static int parse_role(const chat_message *m, int index, chat_role *role, ramp_error *err) {
    if (m->role == NULL)
        return ramp_fail(err, "chat messages[%d]: no role (expected system, user or assistant)", index);
    if (strcmp(m->role, "system") == 0)
        *role = ROLE_SYSTEM;
    else if (strcmp(m->role, "user") == 0)
        *role = ROLE_USER;
    else if (strcmp(m->role, "assistant") == 0)
        *role = ROLE_ASSISTANT;
    else
        return ramp_fail(err, "chat messages[%d]: unknown role \"%.64s\" (expected system, user or assistant)", index,
                         m->role);
    if (m->content == NULL && m->content_length > 0)
        return ramp_fail(err, "chat messages[%d] (%s): content is NULL but content_length is %zu", index, m->role,
                         m->content_length);
    return 0;
}

static span content_of(const chat_message *m) { return (span){m->content ? m->content : "", m->content_length}; }

static int put_span(text_buffer *b, span s, ramp_error *err) { return put(b, s.data, s.length, err); }

/* ---- families with a turn per message: ChatML, Llama-3, Zephyr, the fallback --------------------- */

typedef struct {
    const char *before_role;
    const char *role_names[3]; /* by chat_role */
    const char *after_role, *after_content;
    bool trim; /* the template applies `| trim` to the content */
    const char *generation_prompt;
} turn_format;

static const turn_format CHATML_FORMAT = {
    "<|im_start|>", {"system", "user", "assistant"}, "\n", "<|im_end|>\n", false, "<|im_start|>assistant\n"};
static const turn_format LLAMA3_FORMAT = {"<|start_header_id|>",
                                          {"system", "user", "assistant"},
                                          "<|end_header_id|>\n\n",
                                          "<|eot_id|>",
                                          true,
                                          "<|start_header_id|>assistant<|end_header_id|>\n\n"};
static const turn_format ZEPHYR_FORMAT = {
    "<|", {"system", "user", "assistant"}, "|>\n", "</s>\n", false, "<|assistant|>\n"};
static const turn_format PHI3_FORMAT = {
    "<|", {"system", "user", "assistant"}, "|>\n", "<|end|>\n", false, "<|assistant|>\n"};
static const turn_format FALLBACK_FORMAT = {"", {"System", "User", "Assistant"}, ": ", "\n", false, "Assistant:"};

static int render_turns(const turn_format *f, const chat_message *messages, const chat_role *roles, int n,
                        text_buffer *out, ramp_error *err) {
    for (int i = 0; i < n; i++) {
        span content = content_of(&messages[i]);
        if (f->trim) content = strip(content);
        if (put_str(out, f->before_role, err) || put_str(out, f->role_names[roles[i]], err) ||
            put_str(out, f->after_role, err) || put_span(out, content, err) || put_str(out, f->after_content, err))
            return -1;
    }
    return put_str(out, f->generation_prompt, err);
}

/* ---- families without a system turn: Llama-2, Mistral, Gemma ------------------------------------ */

/* System messages are held and written at the start of the next user turn (Llama-2 inside
 * <<SYS>>, Mistral and Gemma as "{system}\n\n"); with no user message to carry them they open a
 * user turn of their own with empty content. */
static int put_user_turn(chat_template_family family, const text_buffer *prefix, span content, text_buffer *scratch,
                         text_buffer *out, ramp_error *err) {
    span held = {prefix->data ? prefix->data : "", prefix->length};
    if (family == CHAT_TEMPLATE_LLAMA2) { /* bos_token + '[INST] ' + (system + content).strip() + ' [/INST]' */
        scratch->length = 0;
        if (put_span(scratch, held, err) || put_span(scratch, content, err)) return -1;
        /* The template writes BOS before every user turn; the first one is the tokenizer's. */
        if (out->length > 0 && put_str(out, "<s>", err)) return -1;
        span text = strip((span){scratch->data, scratch->length});
        if (put_str(out, "[INST] ", err) || put_span(out, text, err)) return -1;
        return put_str(out, " [/INST]", err);
    }
    if (family == CHAT_TEMPLATE_MISTRAL) { /* '[INST] ' + content + ' [/INST]' */
        if (put_str(out, "[INST] ", err) || put_span(out, held, err) || put_span(out, content, err)) return -1;
        return put_str(out, " [/INST]", err);
    }
    /* Gemma: '<start_of_turn>user\n' + prefix + content | trim + '<end_of_turn>\n' */
    if (put_str(out, "<start_of_turn>user\n", err) || put_span(out, held, err) || put_span(out, strip(content), err))
        return -1;
    return put_str(out, "<end_of_turn>\n", err);
}

static int put_assistant_turn(chat_template_family family, span content, text_buffer *out, ramp_error *err) {
    if (family == CHAT_TEMPLATE_LLAMA2) { /* ' ' + content.strip() + ' ' + eos_token */
        if (put_str(out, " ", err) || put_span(out, strip(content), err)) return -1;
        return put_str(out, " </s>", err);
    }
    if (family == CHAT_TEMPLATE_MISTRAL) { /* content + eos_token */
        if (put_span(out, content, err)) return -1;
        return put_str(out, "</s>", err);
    }
    /* Gemma: '<start_of_turn>model\n' + content | trim + '<end_of_turn>\n' */
    if (put_str(out, "<start_of_turn>model\n", err) || put_span(out, strip(content), err)) return -1;
    return put_str(out, "<end_of_turn>\n", err);
}

static int render_folded(chat_template_family family, const chat_message *messages, const chat_role *roles, int n,
                         text_buffer *out, ramp_error *err) {
    text_buffer held = {0}, scratch = {0};
    bool holding = false;
    int rc = 0;
    for (int i = 0; i < n && rc == 0; i++) {
        span content = content_of(&messages[i]);
        if (roles[i] == ROLE_SYSTEM) {
            if (family == CHAT_TEMPLATE_LLAMA2)
                rc = put_str(&held, "<<SYS>>\n", err) || put_span(&held, content, err) ||
                     put_str(&held, "\n<</SYS>>\n\n", err);
            else
                rc = put_span(&held, content, err) || put_str(&held, "\n\n", err);
            holding = true;
        } else if (roles[i] == ROLE_USER) {
            rc = put_user_turn(family, &held, content, &scratch, out, err);
            held.length = 0;
            holding = false;
        } else {
            if (holding) rc = put_user_turn(family, &held, (span){"", 0}, &scratch, out, err);
            held.length = 0;
            holding = false;
            if (rc == 0) rc = put_assistant_turn(family, content, out, err);
        }
    }
    if (rc == 0 && holding) rc = put_user_turn(family, &held, (span){"", 0}, &scratch, out, err);
    /* Llama-2 and Mistral open the reply with the user turn's [/INST]; Gemma opens a model turn. */
    if (rc == 0 && family == CHAT_TEMPLATE_GEMMA) rc = put_str(out, "<start_of_turn>model\n", err);
    free(held.data);
    free(scratch.data);
    return rc ? -1 : 0;
}

/* ---- entry point -------------------------------------------------------------------------------- */

int chat_template_render(chat_template_family family, const chat_message *messages, int n_messages, char **text,
                         size_t *length, ramp_error *err) {
    if (text == NULL || length == NULL) return ramp_fail(err, "chat template: no place to put the rendered text");
    *text = NULL;
    *length = 0;
    if ((int)family < 0 || (int)family >= N_FAMILIES)
        return ramp_fail(err, "chat template: unknown template family %d", (int)family);
    if (n_messages <= 0) return ramp_fail(err, "chat template: no messages to render (got %d)", n_messages);
    if (messages == NULL) return ramp_fail(err, "chat template: %d messages but the array is NULL", n_messages);

    chat_role *roles = malloc((size_t)n_messages * sizeof *roles);
    if (roles == NULL) return ramp_fail(err, "chat template: out of memory for %d messages", n_messages);
    for (int i = 0; i < n_messages; i++)
        if (parse_role(&messages[i], i, &roles[i], err)) {
            free(roles);
            return -1;
        }

    text_buffer out = {0};
    int rc;
    switch (family) {
    case CHAT_TEMPLATE_CHATML: rc = render_turns(&CHATML_FORMAT, messages, roles, n_messages, &out, err); break;
    case CHAT_TEMPLATE_LLAMA3: rc = render_turns(&LLAMA3_FORMAT, messages, roles, n_messages, &out, err); break;
    case CHAT_TEMPLATE_ZEPHYR: rc = render_turns(&ZEPHYR_FORMAT, messages, roles, n_messages, &out, err); break;
    case CHAT_TEMPLATE_PHI3: rc = render_turns(&PHI3_FORMAT, messages, roles, n_messages, &out, err); break;
    case CHAT_TEMPLATE_LLAMA2:
    case CHAT_TEMPLATE_MISTRAL:
    case CHAT_TEMPLATE_GEMMA: rc = render_folded(family, messages, roles, n_messages, &out, err); break;
    default: rc = render_turns(&FALLBACK_FORMAT, messages, roles, n_messages, &out, err); break;
    }
    free(roles);
    if (rc == 0 && out.data == NULL) rc = put(&out, "", 0, err); /* always a NUL-terminated string */
    if (rc != 0) {
        free(out.data);
        return -1;
    }
    *text = out.data;
    *length = out.length;
    return 0;
}
