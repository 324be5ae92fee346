/* tokenizer.h: text <-> token ids, built from the vocabulary stored with the model.
 *
 * Two algorithms, chosen by the vocabulary:
 *  - TOKENIZER_SPM: SentencePiece-style BPE with scores and byte fallback (GGUF
 *    tokenizer.ggml.model = "llama", and llama2.c's tokenizer.bin). Spaces become U+2581 and a
 *    space is prefixed to the text, as llama.cpp and llama2.c do.
 *  - TOKENIZER_GPT2: GPT-2 byte-level BPE with merges (tokenizer.ggml.model = "gpt2"), after the
 *    pre-tokenizer tokenizer.ggml.pre names, with llama.cpp's patterns: "default" (also when the
 *    key is absent), "gpt-2", "llama-bpe"/"llama3" (Llama 3: digits in threes, and a word that is a
 *    token as a whole stays whole), "qwen2" (single digits), "smollm"/"starcoder" (single digits,
 *    then GPT-2's), "falcon", "tekken", "gpt-4o", "deepseek-llm", "deepseek-coder", "viking",
 *    "seed-coder", and llama.cpp's aliases of these. Other names are refused by name.
 * A tokenizer owns copies of everything it needs: the gguf_file may be closed afterwards.
 */
#ifndef RAMP_TOKENIZER_H
#define RAMP_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>

#include "error.h"
#include "gguf.h"

typedef enum { TOKENIZER_SPM, TOKENIZER_GPT2 } tokenizer_kind;

typedef struct tokenizer tokenizer;

int tokenizer_from_gguf(tokenizer **out, const gguf_file *file, ramp_error *err);
/* llama2.c tokenizer.bin: int32 max_token_length, then per token: float score, int32 length,
 * bytes. vocab_size comes from the checkpoint header. */
int tokenizer_from_llama2c(tokenizer **out, const char *path, int vocab_size, ramp_error *err);
void tokenizer_free(tokenizer *tok);

/* Encodes text (len bytes, need not be NUL-terminated). Prepends BOS when add_bos and the
 * vocabulary wants one (a GGUF's tokenizer.ggml.add_bos_token, false in Qwen2 files; without the
 * key: SentencePiece vocabularies, and GPT-2 ones whose pre-tokenizer wants it, Llama 3's and
 * Tekken's, as in llama.cpp).
 * Writes at most capacity ids into tokens and the number needed into *n_tokens; fails with a
 * clear message when capacity is too small. Never fails on arbitrary bytes (byte fallback).
 * 3 * len + 4 ids always suffice: with byte fallback a space can become the three bytes of U+2581,
 * plus the space prefix and BOS. */
int tokenizer_encode(const tokenizer *tok, const char *text, size_t len, bool add_bos, int *tokens,
                     size_t capacity, size_t *n_tokens, ramp_error *err);

/* The bytes a token stands for when it follows prev_token in generated text (SPM: U+2581 becomes
 * a space, byte tokens <0xAB> become the byte; GPT-2: byte-level decoding). Returns the number of
 * bytes written into buf (at most capacity, always NUL-terminated when capacity > 0). Special
 * tokens (BOS, EOS, control) decode to nothing. */
size_t tokenizer_decode(const tokenizer *tok, int prev_token, int token, char *buf, size_t capacity);

tokenizer_kind tokenizer_get_kind(const tokenizer *tok);
int tokenizer_vocab_size(const tokenizer *tok);
int tokenizer_bos(const tokenizer *tok); /* -1 when the vocabulary has none */
int tokenizer_eos(const tokenizer *tok);
/* The token that ends a chat turn where it is not eos (<|im_end|>, <|eot_id|>, ...), or -1: a
 * continuation ends at either. */
int tokenizer_eot(const tokenizer *tok);
/* The stored text of a token (for debugging and label lookups), NUL-terminated. */
const char *tokenizer_piece(const tokenizer *tok, int token);

#endif
