/* test_chat_template.c: chat template detection and rendering.
 *
 * The expected texts were written out by hand from what each family's real Jinja template
 * (Hugging Face tokenizer_config.json, add_generation_prompt=true) renders, with the leading BOS
 * removed; the whitespace cases follow the outputs published by llama.cpp's and mistral.rs's
 * template tests, which were produced with transformers' apply_chat_template.
 */
#include <criterion/criterion.h>

#include <stdlib.h>
#include <string.h>

#include "chat_template.h"

/* ---- the real templates (the text Jinja sees, i.e. JSON-decoded) -------------------------------- */

/* meta-llama/Llama-2-7b-chat-hf: the markers only appear after ~650 characters. */
static const char LLAMA2_CHAT_TEMPLATE[] =
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = "
    "messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif "
    "%}{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ "
    "raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if "
    "loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + "
    "'\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}{% if "
    "message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] "
    "== 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}";

/* meta-llama/Meta-Llama-3-8B-Instruct */
static const char LLAMA3_TEMPLATE[] =
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + "
    "message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 "
    "%}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ "
    "'<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}";

/* Meta-Llama-3.1-8B-Instruct: an abridged passage from the middle (its first 200 characters set up tools). */
static const char LLAMA31_EXCERPT[] =
    "{#- System message #}\n{{- \"<|start_header_id|>system<|end_header_id|>\\n\\n\" }}\n{%- if builtin_tools is "
    "defined or tools is not none %}\n    {{- \"Environment: ipython\\n\" }}\n{%- endif %}\n{{- \"Cutting Knowledge "
    "Date: December 2023\\n\" }}\n{{- \"Today Date: \" + date_string + \"\\n\\n\" }}";

/* Qwen/Qwen2-7B-Instruct */
static const char QWEN2_TEMPLATE[] =
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ "
    "'<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}{{'<|im_start|>' + "
    "message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt "
    "%}{{ '<|im_start|>assistant\\n' }}{% endif %}";

/* teknium/OpenHermes-2.5-Mistral-7B: ChatML on a Mistral model (ChatML must win over the name). */
static const char OPENHERMES_TEMPLATE[] =
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + "
    "'\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

/* HuggingFaceH4/zephyr-7b-beta and TinyLlama/TinyLlama-1.1B-Chat-v1.0 (real newlines between tags) */
static const char ZEPHYR_TEMPLATE[] =
    "{% for message in messages %}\n{% if message['role'] == 'user' %}\n{{ '<|user|>\\n' + message['content'] + "
    "eos_token }}\n{% elif message['role'] == 'system' %}\n{{ '<|system|>\\n' + message['content'] + eos_token "
    "}}\n{% elif message['role'] == 'assistant' %}\n{{ '<|assistant|>\\n'  + message['content'] + eos_token }}\n{% "
    "endif %}\n{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n{% endfor %}";

/* mistralai/Mistral-7B-Instruct-v0.2 (original) and Mixtral-8x7B-Instruct-v0.1 */
static const char MISTRAL_TEMPLATE[] =
    "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ "
    "raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if "
    "message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == "
    "'assistant' %}{{ message['content'] + eos_token}}{% else %}{{ raise_exception('Only user and assistant roles "
    "are supported!') }}{% endif %}{% endfor %}";

/* mistralai/Mistral-7B-Instruct-v0.3: an abridged passage (double-quoted strings, no <<SYS>>). */
static const char MISTRAL_V3_EXCERPT[] =
    "{%- if loop.last and system_message is defined %}\n            {{- \"[INST] \" + system_message + \"\\n\\n\" + "
    "message[\"content\"] + \"[/INST]\" }}\n        {%- else %}\n            {{- \"[INST] \" + message[\"content\"] + "
    "\"[/INST]\" }}\n        {%- endif %}";

/* google/gemma-7b-it */
static const char GEMMA_TEMPLATE[] =
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% "
    "endif %}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ "
    "raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if "
    "(message['role'] == 'assistant') %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}{% endif "
    "%}{{ '<start_of_turn>' + role + '\\n' + message['content'] | trim + '<end_of_turn>\\n' }}{% endfor %}{% if "
    "add_generation_prompt %}{{'<start_of_turn>model\\n'}}{% endif %}";

/* microsoft/Phi-3-mini-4k-instruct: <|user|> like Zephyr, but <|end|> ends turns. */
static const char PHI3_TEMPLATE[] =
    "{% for message in messages %}{% if message['role'] == 'system' %}{{'<|system|>\\n' + message['content'] + "
    "'<|end|>\\n'}}{% elif message['role'] == 'user' %}{{'<|user|>\\n' + message['content'] + '<|end|>\\n'}}{% elif "
    "message['role'] == 'assistant' %}{{'<|assistant|>\\n' + message['content'] + '<|end|>\\n'}}{% endif %}{% endfor "
    "%}{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% else %}{{ eos_token }}{% endif %}";

/* eachadea/vicuna-13b-1.1 (as llama.cpp lists it). Not supported. */
static const char VICUNA_TEMPLATE[] =
    "{%- for message in messages %}{%- if message['role'] == 'system' -%}{{- '' + message['content'] + '\\n\\n' "
    "-}}{%- else -%}{%- if message['role'] == 'user' -%}{{-'USER: ' + message['content'] + '\\n'-}}{%- else "
    "-%}{{-'ASSISTANT: ' + message['content'] + '</s>\\n' -}}{%- endif -%}{%- endif -%}{%- endfor -%}{%- if "
    "add_generation_prompt -%}{{-'ASSISTANT:'-}}{%- endif -%}";

/* ---- helpers ------------------------------------------------------------------------------------ */

/* The first 200 characters of a template. */
static void first_200(char out[201], const char *text) {
    size_t n = strlen(text);
    if (n > 200) n = 200;
    memcpy(out, text, n);
    out[n] = '\0';
}

static chat_message msg(const char *role, const char *content) {
    return (chat_message){role, content, content ? strlen(content) : 0};
}

/* Renders and compares with the exact expected text (which has no NUL bytes). */
static void expect_render(chat_template_family family, const chat_message *messages, int n, const char *expected) {
    char *text = NULL;
    size_t length = 0;
    ramp_error err = {{0}};
    int rc = chat_template_render(family, messages, n, &text, &length, &err);
    cr_assert_eq(rc, 0, "%s: render failed: %s", chat_template_name(family), err.message);
    cr_assert_not_null(text);
    cr_assert_eq(text[length], '\0', "%s: text is not NUL-terminated", chat_template_name(family));
    cr_assert_eq(length, strlen(expected), "%s: length %zu, expected %zu\n got: [%s]\nwant: [%s]",
                 chat_template_name(family), length, strlen(expected), text, expected);
    cr_assert(memcmp(text, expected, length) == 0, "%s:\n got: [%s]\nwant: [%s]", chat_template_name(family), text,
              expected);
    free(text);
}

static void expect_failure(chat_template_family family, const chat_message *messages, int n, const char *needle1,
                           const char *needle2) {
    char *text = (char *)"untouched";
    size_t length = 99;
    ramp_error err = {{0}};
    cr_assert_eq(chat_template_render(family, messages, n, &text, &length, &err), -1, "render should fail");
    cr_assert_null(text, "text must be NULL on failure");
    cr_assert_eq(length, 0);
    cr_assert(strstr(err.message, needle1) != NULL, "error \"%s\" should mention \"%s\"", err.message, needle1);
    if (needle2)
        cr_assert(strstr(err.message, needle2) != NULL, "error \"%s\" should mention \"%s\"", err.message, needle2);
}

/* system, user, assistant, user */
static const chat_message *basic_conversation(void) {
    static chat_message m[4];
    m[0] = msg("system", "You are a helpful assistant.");
    m[1] = msg("user", "Hello");
    m[2] = msg("assistant", "Hi there");
    m[3] = msg("user", "Who are you?");
    return m;
}

/* llama.cpp's test conversation, with an assistant reply padded by spaces. */
static const chat_message *padded_conversation(void) {
    static chat_message m[6];
    m[0] = msg("system", "You are a helpful assistant");
    m[1] = msg("user", "Hello");
    m[2] = msg("assistant", "Hi there");
    m[3] = msg("user", "Who are you");
    m[4] = msg("assistant", "   I am an assistant   ");
    m[5] = msg("user", "Another question");
    return m;
}

/* ---- detection ---------------------------------------------------------------------------------- */

Test(chat_template_detect, real_templates) {
    cr_assert_eq(chat_template_detect(LLAMA2_CHAT_TEMPLATE), CHAT_TEMPLATE_LLAMA2);
    cr_assert_eq(chat_template_detect(LLAMA3_TEMPLATE), CHAT_TEMPLATE_LLAMA3);
    cr_assert_eq(chat_template_detect(LLAMA31_EXCERPT), CHAT_TEMPLATE_LLAMA3);
    cr_assert_eq(chat_template_detect(QWEN2_TEMPLATE), CHAT_TEMPLATE_CHATML);
    cr_assert_eq(chat_template_detect(OPENHERMES_TEMPLATE), CHAT_TEMPLATE_CHATML);
    cr_assert_eq(chat_template_detect(ZEPHYR_TEMPLATE), CHAT_TEMPLATE_ZEPHYR);
    cr_assert_eq(chat_template_detect(MISTRAL_TEMPLATE), CHAT_TEMPLATE_MISTRAL);
    cr_assert_eq(chat_template_detect(MISTRAL_V3_EXCERPT), CHAT_TEMPLATE_MISTRAL);
    cr_assert_eq(chat_template_detect(GEMMA_TEMPLATE), CHAT_TEMPLATE_GEMMA);
    cr_assert_eq(chat_template_detect(PHI3_TEMPLATE), CHAT_TEMPLATE_PHI3);
}

Test(chat_template_detect, first_200_characters) {
    /* Where a family's marker sits in its first 200 characters, that prefix is enough. */
    struct {
        const char *text;
        chat_template_family family;
    } cases[] = {
        {LLAMA3_TEMPLATE, CHAT_TEMPLATE_LLAMA3}, {QWEN2_TEMPLATE, CHAT_TEMPLATE_CHATML},
        {ZEPHYR_TEMPLATE, CHAT_TEMPLATE_ZEPHYR}, {OPENHERMES_TEMPLATE, CHAT_TEMPLATE_CHATML},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char prefix[201];
        first_200(prefix, cases[i].text);
        cr_assert_eq(chat_template_detect(prefix), cases[i].family, "case %zu: got %s", i,
                     chat_template_name(chat_template_detect(prefix)));
    }
    /* Llama-2's first 200 characters have no marker at all: detection needs the whole text. */
    char prefix[201];
    first_200(prefix, LLAMA2_CHAT_TEMPLATE);
    cr_assert_eq(chat_template_detect(prefix), CHAT_TEMPLATE_FALLBACK);
}

Test(chat_template_detect, fallback) {
    cr_assert_eq(chat_template_detect(NULL), CHAT_TEMPLATE_FALLBACK);
    cr_assert_eq(chat_template_detect(""), CHAT_TEMPLATE_FALLBACK);
    cr_assert_eq(chat_template_detect("{{ messages }}"), CHAT_TEMPLATE_FALLBACK);
    cr_assert_eq(chat_template_detect(VICUNA_TEMPLATE), CHAT_TEMPLATE_FALLBACK);
    cr_assert_eq(chat_template_detect("INST SYS im_start"), CHAT_TEMPLATE_FALLBACK);
}

Test(chat_template_detect, marker_order) {
    cr_assert_eq(chat_template_detect("[INST] <|im_start|>"), CHAT_TEMPLATE_CHATML);
    cr_assert_eq(chat_template_detect("<<SYS>> <|start_header_id|> [INST]"), CHAT_TEMPLATE_LLAMA2);
    cr_assert_eq(chat_template_detect("[INST] <start_of_turn>"), CHAT_TEMPLATE_MISTRAL);
    cr_assert_eq(chat_template_detect("<|user|> <|start_header_id|>"), CHAT_TEMPLATE_LLAMA3);
    cr_assert_eq(chat_template_detect("<|user|> <start_of_turn>"), CHAT_TEMPLATE_GEMMA);
    cr_assert_eq(chat_template_detect("<<SYS>> alone"), CHAT_TEMPLATE_FALLBACK);
}

Test(chat_template_detect, names) {
    const char *names[] = {"fallback", "llama2", "llama3", "chatml", "zephyr", "mistral", "gemma", "phi3"};
    chat_template_family families[] = {CHAT_TEMPLATE_FALLBACK, CHAT_TEMPLATE_LLAMA2, CHAT_TEMPLATE_LLAMA3,
                                       CHAT_TEMPLATE_CHATML,   CHAT_TEMPLATE_ZEPHYR, CHAT_TEMPLATE_MISTRAL,
                                       CHAT_TEMPLATE_GEMMA,    CHAT_TEMPLATE_PHI3};
    for (int i = 0; i < 8; i++) {
        cr_assert_str_eq(chat_template_name(families[i]), names[i]);
        cr_assert_eq(chat_template_detect(names[i]), families[i], "name %s", names[i]);
    }
    cr_assert_str_eq(chat_template_name((chat_template_family)42), "unknown");
    cr_assert_eq(chat_template_detect("Llama2"), CHAT_TEMPLATE_FALLBACK); /* names are exact */
}

/* ---- rendering: one conversation per family ------------------------------------------------------ */

Test(chat_template_render, llama2) {
    expect_render(CHAT_TEMPLATE_LLAMA2, basic_conversation(), 4,
                  "[INST] <<SYS>>\nYou are a helpful assistant.\n<</SYS>>\n\nHello [/INST] Hi there </s>"
                  "<s>[INST] Who are you? [/INST]");
}

Test(chat_template_render, llama3) {
    expect_render(CHAT_TEMPLATE_LLAMA3, basic_conversation(), 4,
                  "<|start_header_id|>system<|end_header_id|>\n\nYou are a helpful assistant.<|eot_id|>"
                  "<|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|>"
                  "<|start_header_id|>assistant<|end_header_id|>\n\nHi there<|eot_id|>"
                  "<|start_header_id|>user<|end_header_id|>\n\nWho are you?<|eot_id|>"
                  "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

Test(chat_template_render, chatml) {
    expect_render(CHAT_TEMPLATE_CHATML, basic_conversation(), 4,
                  "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
                  "<|im_start|>user\nHello<|im_end|>\n"
                  "<|im_start|>assistant\nHi there<|im_end|>\n"
                  "<|im_start|>user\nWho are you?<|im_end|>\n"
                  "<|im_start|>assistant\n");
}

/* As Phi-3-mini-4k-instruct's and Phi-3.5-mini-instruct's template writes it. */
Test(chat_template_render, phi3) {
    expect_render(CHAT_TEMPLATE_PHI3, basic_conversation(), 4,
                  "<|system|>\nYou are a helpful assistant.<|end|>\n"
                  "<|user|>\nHello<|end|>\n"
                  "<|assistant|>\nHi there<|end|>\n"
                  "<|user|>\nWho are you?<|end|>\n"
                  "<|assistant|>\n");
}

Test(chat_template_render, zephyr) {
    expect_render(CHAT_TEMPLATE_ZEPHYR, basic_conversation(), 4,
                  "<|system|>\nYou are a helpful assistant.</s>\n"
                  "<|user|>\nHello</s>\n"
                  "<|assistant|>\nHi there</s>\n"
                  "<|user|>\nWho are you?</s>\n"
                  "<|assistant|>\n");
}

Test(chat_template_render, mistral) {
    expect_render(CHAT_TEMPLATE_MISTRAL, basic_conversation(), 4,
                  "[INST] You are a helpful assistant.\n\nHello [/INST]Hi there</s>[INST] Who are you? [/INST]");
}

Test(chat_template_render, gemma) {
    expect_render(CHAT_TEMPLATE_GEMMA, basic_conversation(), 4,
                  "<start_of_turn>user\nYou are a helpful assistant.\n\nHello<end_of_turn>\n"
                  "<start_of_turn>model\nHi there<end_of_turn>\n"
                  "<start_of_turn>user\nWho are you?<end_of_turn>\n"
                  "<start_of_turn>model\n");
}

Test(chat_template_render, fallback) {
    expect_render(CHAT_TEMPLATE_FALLBACK, basic_conversation(), 4,
                  "System: You are a helpful assistant.\nUser: Hello\nAssistant: Hi there\nUser: Who are you?\n"
                  "Assistant:");
}

Test(chat_template_render, never_starts_with_bos) {
    const char *bos[] = {"<s>", "<|begin_of_text|>", "<bos>"};
    for (int f = CHAT_TEMPLATE_FALLBACK; f <= CHAT_TEMPLATE_GEMMA; f++) {
        char *text = NULL;
        size_t length = 0;
        ramp_error err = {{0}};
        cr_assert_eq(chat_template_render((chat_template_family)f, padded_conversation(), 6, &text, &length, &err), 0,
                     "%s", err.message);
        for (int b = 0; b < 3; b++)
            cr_assert(strncmp(text, bos[b], strlen(bos[b])) != 0, "%s starts with %s", chat_template_name(f), bos[b]);
        free(text);
    }
}

/* ---- whitespace: the families whose template trims, and those that copy ------------------------- */

Test(chat_template_render, padded_llama2) {
    /* transformers: "<s>[INST] <<SYS>>\n...Hello [/INST] Hi there </s><s>[INST] Who are you [/INST] I am an
     * assistant </s><s>[INST] Another question [/INST]" */
    expect_render(CHAT_TEMPLATE_LLAMA2, padded_conversation(), 6,
                  "[INST] <<SYS>>\nYou are a helpful assistant\n<</SYS>>\n\nHello [/INST] Hi there </s>"
                  "<s>[INST] Who are you [/INST] I am an assistant </s><s>[INST] Another question [/INST]");
}

Test(chat_template_render, padded_mistral_without_system) {
    /* transformers (Mixtral-8x7B-Instruct-v0.1): "<s>[INST] Hello [/INST]Hi there</s>[INST] Who are you
     * [/INST]   I am an assistant   </s>[INST] Another question [/INST]" */
    expect_render(CHAT_TEMPLATE_MISTRAL, padded_conversation() + 1, 5,
                  "[INST] Hello [/INST]Hi there</s>[INST] Who are you [/INST]   I am an assistant   </s>"
                  "[INST] Another question [/INST]");
}

Test(chat_template_render, padded_gemma_without_system) {
    expect_render(CHAT_TEMPLATE_GEMMA, padded_conversation() + 1, 5,
                  "<start_of_turn>user\nHello<end_of_turn>\n<start_of_turn>model\nHi there<end_of_turn>\n"
                  "<start_of_turn>user\nWho are you<end_of_turn>\n"
                  "<start_of_turn>model\nI am an assistant<end_of_turn>\n"
                  "<start_of_turn>user\nAnother question<end_of_turn>\n<start_of_turn>model\n");
}

Test(chat_template_render, padded_llama3) {
    expect_render(CHAT_TEMPLATE_LLAMA3, padded_conversation(), 6,
                  "<|start_header_id|>system<|end_header_id|>\n\nYou are a helpful assistant<|eot_id|>"
                  "<|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|>"
                  "<|start_header_id|>assistant<|end_header_id|>\n\nHi there<|eot_id|>"
                  "<|start_header_id|>user<|end_header_id|>\n\nWho are you<|eot_id|>"
                  "<|start_header_id|>assistant<|end_header_id|>\n\nI am an assistant<|eot_id|>"
                  "<|start_header_id|>user<|end_header_id|>\n\nAnother question<|eot_id|>"
                  "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

Test(chat_template_render, padded_chatml_and_zephyr_keep_spaces) {
    expect_render(CHAT_TEMPLATE_CHATML, padded_conversation() + 3, 3,
                  "<|im_start|>user\nWho are you<|im_end|>\n<|im_start|>assistant\n   I am an assistant   <|im_end|>\n"
                  "<|im_start|>user\nAnother question<|im_end|>\n<|im_start|>assistant\n");
    expect_render(CHAT_TEMPLATE_ZEPHYR, padded_conversation() + 3, 3,
                  "<|user|>\nWho are you</s>\n<|assistant|>\n   I am an assistant   </s>\n"
                  "<|user|>\nAnother question</s>\n<|assistant|>\n");
}

Test(chat_template_render, unicode_whitespace_is_trimmed_like_python_strip) {
    /* NBSP, ideographic space, tab, narrow NBSP, newline, NEL: all str.isspace() in Python. */
    chat_message m[] = {msg("user", "\xc2\xa0\xe3\x80\x80\tHi\xe2\x80\xaf\n\xc2\x85")};
    expect_render(CHAT_TEMPLATE_LLAMA3, m, 1,
                  "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
                  "<|start_header_id|>assistant<|end_header_id|>\n\n");
    /* Zero-width space (U+200B) and "é" are not whitespace and stay. */
    chat_message z[] = {msg("user", "\xe2\x80\x8b caf\xc3\xa9 ")};
    expect_render(CHAT_TEMPLATE_GEMMA, z, 1,
                  "<start_of_turn>user\n\xe2\x80\x8b caf\xc3\xa9<end_of_turn>\n<start_of_turn>model\n");
    /* All whitespace: nothing left. */
    chat_message w[] = {msg("user", " \n\t ")};
    expect_render(CHAT_TEMPLATE_LLAMA2, w, 1, "[INST]  [/INST]");
}

/* ---- content: newlines, UTF-8, NUL bytes, no terminator, size ----------------------------------- */

Test(chat_template_render, newlines_and_utf8) {
    const char *content = "Première ligne\nzweite Zeile: naïve café — 日本語 🙂\n\n  indented\n";
    chat_message m[] = {msg("user", content)};
    expect_render(CHAT_TEMPLATE_CHATML, m, 1,
                  "<|im_start|>user\nPremière ligne\nzweite Zeile: naïve café — 日本語 🙂\n\n  indented\n<|im_end|>\n"
                  "<|im_start|>assistant\n");
    expect_render(CHAT_TEMPLATE_LLAMA3, m, 1,
                  "<|start_header_id|>user<|end_header_id|>\n\nPremière ligne\nzweite Zeile: naïve café — 日本語 🙂\n\n"
                  "  indented<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n");
    expect_render(CHAT_TEMPLATE_LLAMA2, m, 1,
                  "[INST] Première ligne\nzweite Zeile: naïve café — 日本語 🙂\n\n  indented [/INST]");
    expect_render(CHAT_TEMPLATE_FALLBACK, m, 1,
                  "User: Première ligne\nzweite Zeile: naïve café — 日本語 🙂\n\n  indented\n\nAssistant:");
}

Test(chat_template_render, content_with_nul_bytes) {
    static const char bytes[] = {'a', '\0', 'b', '\n', '\0'};
    chat_message m[] = {{"user", bytes, sizeof bytes}};
    char *text = NULL;
    size_t length = 0;
    ramp_error err = {{0}};
    cr_assert_eq(chat_template_render(CHAT_TEMPLATE_CHATML, m, 1, &text, &length, &err), 0, "%s", err.message);
    static const char expected[] = "<|im_start|>user\na\0b\n\0<|im_end|>\n<|im_start|>assistant\n";
    cr_assert_eq(length, sizeof expected - 1);
    cr_assert(memcmp(text, expected, length) == 0);
    cr_assert_eq(text[length], '\0');
    free(text);
}

Test(chat_template_render, content_is_not_read_past_its_length) {
    chat_message m[] = {{"system", "Be brief.XXXX", 9}, {"user", "HelloWORLD", 5}};
    expect_render(CHAT_TEMPLATE_MISTRAL, m, 2, "[INST] Be brief.\n\nHello [/INST]");
    chat_message empty[] = {{"user", NULL, 0}};
    expect_render(CHAT_TEMPLATE_CHATML, empty, 1, "<|im_start|>user\n<|im_end|>\n<|im_start|>assistant\n");
}

Test(chat_template_render, large_content) {
    const size_t n = (size_t)9 << 20; /* 9 MiB */
    char *big = malloc(n);
    cr_assert_not_null(big);
    for (size_t i = 0; i < n; i++) big[i] = (char)('a' + i % 26);
    big[n - 1] = '!';
    chat_message m[] = {msg("system", "S"), {"user", big, n}};
    char *text = NULL;
    size_t length = 0;
    ramp_error err = {{0}};
    cr_assert_eq(chat_template_render(CHAT_TEMPLATE_LLAMA2, m, 2, &text, &length, &err), 0, "%s", err.message);
    const char *head = "[INST] <<SYS>>\nS\n<</SYS>>\n\n", *tail = " [/INST]";
    cr_assert_eq(length, strlen(head) + n + strlen(tail));
    cr_assert(memcmp(text, head, strlen(head)) == 0);
    cr_assert(memcmp(text + strlen(head), big, n) == 0);
    cr_assert_str_eq(text + strlen(head) + n, tail);
    free(text);
    free(big);
}

/* ---- conversations the real templates refuse: rendered, not refused ----------------------------- */

Test(chat_template_render, system_without_user_opens_an_empty_user_turn) {
    chat_message s[] = {msg("system", "Only a system prompt.")};
    expect_render(CHAT_TEMPLATE_LLAMA2, s, 1, "[INST] <<SYS>>\nOnly a system prompt.\n<</SYS>> [/INST]");
    expect_render(CHAT_TEMPLATE_MISTRAL, s, 1, "[INST] Only a system prompt.\n\n [/INST]");
    expect_render(CHAT_TEMPLATE_GEMMA, s, 1,
                  "<start_of_turn>user\nOnly a system prompt.\n\n<end_of_turn>\n<start_of_turn>model\n");
    expect_render(CHAT_TEMPLATE_CHATML, s, 1,
                  "<|im_start|>system\nOnly a system prompt.<|im_end|>\n<|im_start|>assistant\n");
}

Test(chat_template_render, later_system_messages_join_the_next_user_turn) {
    chat_message m[] = {msg("user", "Hi"), msg("assistant", "Hello"), msg("system", "Answer in French."),
                        msg("system", "Be brief."), msg("user", "Bye")};
    expect_render(CHAT_TEMPLATE_LLAMA2, m, 5,
                  "[INST] Hi [/INST] Hello </s><s>[INST] <<SYS>>\nAnswer in French.\n<</SYS>>\n\n<<SYS>>\nBe brief.\n"
                  "<</SYS>>\n\nBye [/INST]");
    expect_render(CHAT_TEMPLATE_GEMMA, m, 5,
                  "<start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\nHello<end_of_turn>\n"
                  "<start_of_turn>user\nAnswer in French.\n\nBe brief.\n\nBye<end_of_turn>\n<start_of_turn>model\n");
}

Test(chat_template_render, last_message_from_the_assistant) {
    chat_message m[] = {msg("user", "Hi"), msg("assistant", "Hello")};
    expect_render(CHAT_TEMPLATE_MISTRAL, m, 2, "[INST] Hi [/INST]Hello</s>");
    expect_render(CHAT_TEMPLATE_CHATML, m, 2,
                  "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello<|im_end|>\n<|im_start|>assistant\n");
}

/* ---- errors ------------------------------------------------------------------------------------- */

Test(chat_template_render, unknown_role_names_index_and_role) {
    chat_message m[] = {msg("system", "S"), msg("user", "U"), msg("tool", "{\"x\":1}"), msg("user", "U2")};
    for (int f = CHAT_TEMPLATE_FALLBACK; f <= CHAT_TEMPLATE_GEMMA; f++)
        expect_failure((chat_template_family)f, m, 4, "messages[2]", "\"tool\"");
    chat_message upper[] = {msg("User", "U")};
    expect_failure(CHAT_TEMPLATE_CHATML, upper, 1, "messages[0]", "\"User\"");
    chat_message none[] = {msg("user", "U"), {NULL, "x", 1}};
    expect_failure(CHAT_TEMPLATE_LLAMA3, none, 2, "messages[1]", "no role");
}

Test(chat_template_render, no_messages) {
    chat_message m[] = {msg("user", "U")};
    expect_failure(CHAT_TEMPLATE_CHATML, m, 0, "no messages", NULL);
    expect_failure(CHAT_TEMPLATE_CHATML, m, -1, "no messages", NULL);
    expect_failure(CHAT_TEMPLATE_CHATML, NULL, 2, "NULL", NULL);
}

Test(chat_template_render, other_errors) {
    chat_message m[] = {msg("user", "U"), {"assistant", NULL, 4}};
    expect_failure(CHAT_TEMPLATE_ZEPHYR, m, 2, "messages[1]", "content_length");
    chat_message ok[] = {msg("user", "U")};
    expect_failure((chat_template_family)99, ok, 1, "unknown template family", NULL);
    ramp_error err = {{0}};
    cr_assert_eq(chat_template_render(CHAT_TEMPLATE_CHATML, ok, 1, NULL, NULL, &err), -1);
    char *text = NULL;
    size_t length = 0;
    cr_assert_eq(chat_template_render(CHAT_TEMPLATE_CHATML, m, 2, &text, &length, NULL), -1); /* err may be NULL */
    cr_assert_null(text);
}
