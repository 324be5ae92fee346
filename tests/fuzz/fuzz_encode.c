/* fuzz_encode.c: the tokenizer's encode on arbitrary bytes, with the real vocabularies of the
 * shared models: tok512.bin (SentencePiece, 512 tokens: stories260K, base16, lite16) and
 * llama.cpp's reference vocabularies (Llama SentencePiece 32k, GPT-2 byte-level BPE 50k). The
 * first input byte picks the vocabulary, the rest is the text. Skipped when the shared folder is
 * missing.
 * Properties (tokenizer.h): encode never fails on arbitrary bytes given enough room (one token
 * per byte, the space prefix and BOS); every id is inside the vocabulary; a buffer one token too
 * small fails cleanly, reporting the count needed; decoding the ids gives back the text exactly
 * (GPT-2, byte-level) or the text behind a space (SentencePiece with byte fallback, which adds the
 * space prefix; U+2581 in the text is SentencePiece's own mark for a space and decodes as one). */
#include <stdbool.h>

#include "fuzz.h"
#include "gguf.h"
#include "tokenizer.h"

enum { ENCODE_FUZZ_VOCABS = 3 };

typedef struct {
    tokenizer *tokenizers[ENCODE_FUZZ_VOCABS];
    int count;
    bool loaded;
} encode_fuzz_state;

static tokenizer *encode_fuzz_from_gguf(const char *relative) {
    char path[4096];
    fuzz_shared_path(relative, path, sizeof path);
    gguf_file f;
    ramp_error err = {{0}};
    tokenizer *tok = NULL;
    if (gguf_open(&f, path, &err) != 0) return NULL;
    if (tokenizer_from_gguf(&tok, &f, &err) != 0) tok = NULL;
    gguf_close(&f);
    return tok;
}

/* Loaded once per process; the harness has no other state. */
static encode_fuzz_state *encode_fuzz_vocabularies(void) {
    static encode_fuzz_state state;
    if (state.loaded) return &state;
    state.loaded = true;
    char path[4096];
    fuzz_shared_path("models/stories260K/tok512.bin", path, sizeof path);
    ramp_error err = {{0}};
    tokenizer *tok = NULL;
    if (tokenizer_from_llama2c(&tok, path, 512, &err) == 0) state.tokenizers[state.count++] = tok;
    if ((tok = encode_fuzz_from_gguf("reference/vocab/ggml-vocab-llama-spm.gguf"))) state.tokenizers[state.count++] = tok;
    if ((tok = encode_fuzz_from_gguf("reference/vocab/ggml-vocab-gpt-2.gguf"))) state.tokenizers[state.count++] = tok;
    if (state.count == 0) fprintf(stderr, "fuzz_encode: no shared vocabularies found (set RAMP_SHARED)\n");
    return &state;
}

static int fuzz_encode(const uint8_t *data, size_t size) {
    encode_fuzz_state *state = encode_fuzz_vocabularies();
    if (size < 1 || state->count == 0) return 0;
    const tokenizer *tok = state->tokenizers[data[0] % state->count];
    const char *text = (const char *)data + 1;
    size_t length = size - 1;
    size_t capacity = 3 * length + 4; /* tokenizer.h's bound */
    int *ids = malloc(capacity * sizeof *ids);
    size_t n = 0;
    ramp_error err = {{0}};
    bool bos = data[0] & 0x80;
    int rc = tokenizer_encode(tok, text, length, bos, ids, capacity, &n, &err);
    fuzz_require(rc == 0, "encode failed on %zu bytes: %s", length, err.message);
    int vocab = tokenizer_vocab_size(tok);
    /* Room for the text and its space prefix, and some to show a decoding that runs longer. */
    size_t decoded_capacity = length + 16, decoded_length = 0;
    char *decoded = malloc(decoded_capacity);
    for (size_t i = 0; i < n; i++) {
        fuzz_require(ids[i] >= 0 && ids[i] < vocab, "token %d outside the vocabulary of %d", ids[i], vocab);
        decoded_length += tokenizer_decode(tok, i ? ids[i - 1] : -1, ids[i], decoded + decoded_length,
                                           decoded_capacity - decoded_length);
    }
    if (tokenizer_get_kind(tok) == TOKENIZER_GPT2) {
        fuzz_require(decoded_length == length && memcmp(decoded, text, length) == 0,
                     "GPT-2 decode(encode(x)) differs from x (%zu bytes, %zu decoded)", length, decoded_length);
    } else if (length > 0) {
        char *expected = malloc(length + 2);
        size_t expected_length = 0;
        expected[expected_length++] = ' ';
        for (size_t i = 0; i < length; i++) {
            if (i + 3 <= length && memcmp(text + i, "\xe2\x96\x81", 3) == 0) {
                expected[expected_length++] = ' ';
                i += 2;
            } else {
                expected[expected_length++] = text[i];
            }
        }
        fuzz_require(decoded_length == expected_length && memcmp(decoded, expected, expected_length) == 0,
                     "SentencePiece decode(encode(x)) differs from ' ' + x (%zu bytes, %zu decoded)", length,
                     decoded_length);
        free(expected);
    }
    if (n > 0) { /* one slot short: a clean failure that says how many were needed */
        size_t needed = 0;
        rc = tokenizer_encode(tok, text, length, bos, ids, n - 1, &needed, &err);
        fuzz_require(rc == -1 && needed == n, "a buffer of %zu for %zu tokens was accepted", n - 1, n);
        fuzz_require_clean_message(&err);
    }
    free(decoded);
    free(ids);
    return 0;
}

FUZZ_ENTRY(fuzz_encode)
