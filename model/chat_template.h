/* chat_template.h: turning chat messages into one prompt text, the way the model was tuned.
 *
 * A GGUF may carry `tokenizer.chat_template` (a Jinja template). ramp does not run Jinja: it
 * recognises the common families by marker text in the template and renders them itself:
 *   Llama-2 ("[INST]" with "<<SYS>>"), Llama-3 ("<|start_header_id|>"), ChatML ("<|im_start|>"),
 *   Zephyr ("<|user|>"), Mistral ("[INST]" without "<<SYS>>"), Gemma ("<start_of_turn>").
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
/* "llama2", "llama3", "chatml", "zephyr", "mistral", "gemma", "fallback". */
const char *chat_template_name(chat_template_family family);
/* Renders the messages into *text (malloc'ed, NUL-terminated; caller frees) of *length bytes.
 * Fails (clear message naming the message index) on an unknown role or no messages. */
int chat_template_render(chat_template_family family, const chat_message *messages, int n_messages, char **text,
                         size_t *length, ramp_error *err);

#endif
