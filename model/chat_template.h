/* chat_template.h: turning chat messages into one prompt text, the way the model was tuned.
 *
 * A GGUF may carry `tokenizer.chat_template` (a Jinja template). ramp does not run Jinja: it
 * recognises the common families by marker text anywhere in the whole template, in this order:
 *   ChatML ("<|im_start|>"); "[INST]": Llama-2 with "<<SYS>>", Mistral without it; Llama-3
 *   ("<|start_header_id|>"); Gemma ("<start_of_turn>"); Phi-3 ("<|user|>" and "<|end|>"); Zephyr
 *   ("<|user|>" alone). A family's own name ("chatml", ...) is accepted as well.
 * It renders them itself, as the real template does with add_generation_prompt=true:
 *   llama2   [INST] <<SYS>>\n{system}\n<</SYS>>\n\n{user} [/INST] {assistant} </s><s>[INST] {user} [/INST]
 *            (Llama-2-chat; user and assistant text stripped as the template's .strip() does)
 *   mistral  [INST] {system}\n\n{user} [/INST]{assistant}</s>[INST] {user} [/INST]
 *            (Mistral-7B-Instruct-v0.2's and Mixtral-8x7B-Instruct's template, which refuse a system
 *            message; ramp prepends it to the user's text as llama.cpp does. Later Mistral
 *            templates differ in spaces around [INST]/[/INST].)
 *   gemma    <start_of_turn>user\n{system}\n\n{user}<end_of_turn>\n<start_of_turn>model\n{assistant}
 *            <end_of_turn>\n ... <start_of_turn>model\n    (user/assistant text trimmed)
 *   chatml   <|im_start|>{role}\n{content}<|im_end|>\n ... <|im_start|>assistant\n
 *            (no default system prompt is added, unlike Qwen2's own template)
 *   llama3   <|start_header_id|>{role}<|end_header_id|>\n\n{content, trimmed}<|eot_id|> ...
 *            <|start_header_id|>assistant<|end_header_id|>\n\n   (the 3.0 format, no date preamble)
 *   zephyr   <|{role}|>\n{content}</s>\n ... <|assistant|>\n   (EOS written as "</s>")
 *   phi3     <|{role}|>\n{content}<|end|>\n ... <|assistant|>\n   (Phi-3 and Phi-3.5 instruct)
 * Trimming is Python's str.strip() (Unicode whitespace); other content is copied byte for byte.
 * Llama-2, Mistral and Gemma have no system turn: each system message is held and written at the
 * start of the next user turn (an empty user turn when none follows). Llama-2 and Mistral open
 * the reply with the user's "[/INST]", so their text ends there when the last message is a user's.
 * A model without a template (or with one not recognised) uses the documented fallback:
 *   "System: {content}\n" / "User: {content}\n" / "Assistant: {content}\n" per message, then
 *   "Assistant:" to open the reply.
 * The rendered text never starts with the BOS token's text: ramp's tokenizer adds BOS itself.
 * Rendering always ends with the opening of the assistant's turn (add_generation_prompt).
 */
#ifndef RAMP_CHAT_TEMPLATE_H
#define RAMP_CHAT_TEMPLATE_H

#include <stddef.h>

#include "error.h"

typedef enum {
    CHAT_TEMPLATE_FALLBACK,
    CHAT_TEMPLATE_LLAMA2,
    CHAT_TEMPLATE_LLAMA3,
    CHAT_TEMPLATE_CHATML,
    CHAT_TEMPLATE_ZEPHYR,
    CHAT_TEMPLATE_MISTRAL,
    CHAT_TEMPLATE_GEMMA,
    CHAT_TEMPLATE_PHI3,
} chat_template_family;

/* One message; role is "system", "user" or "assistant" (others are refused by render). Content
 * need not be NUL-terminated. Nothing is owned. */
typedef struct {
    const char *role;
    const char *content;
    size_t content_length;
} chat_message;

/* The family of a template text (NULL or unrecognised: CHAT_TEMPLATE_FALLBACK). */
chat_template_family chat_template_detect(const char *template_text);
/* "llama2", "llama3", "chatml", "zephyr", "mistral", "gemma", "fallback" ("unknown" out of range). */
const char *chat_template_name(chat_template_family family);
/* Renders the messages into *text (malloc'ed, NUL-terminated; caller frees) of *length bytes
 * (content may hold any bytes, NUL included, so use *length). Fails, with *text NULL, on an
 * unknown role (the message names messages[i] and the role), no messages, or an unknown family. */
int chat_template_render(chat_template_family family, const chat_message *messages, int n_messages, char **text,
                         size_t *length, ramp_error *err);

#endif
