/* fuzz_tokenizer_bin.c: llama2.c tokenizer.bin files from outside. The first two bytes of the
 * input are the vocabulary size the checkpoint would claim (little-endian, 1..65536), the rest is
 * the file. Properties: a loaded tokenizer encodes any text within the promised capacity and
 * decodes every id it produced; failures carry a clean one-line message.
 * Seeds: tok512.bin behind its true size, and behind sizes that disagree with it. */
#include "fuzz.h"
#include "tokenizer.h"

static int fuzz_tokenizer_bin(const uint8_t *data, size_t size) {
    if (size < 2) return 0;
    int vocab = (data[0] | data[1] << 8) + 1;
    char path[128];
    fuzz_scratch_path("tokenizer.bin", path, sizeof path);
    fuzz_write_file(path, data + 2, size - 2);
    tokenizer *tok = NULL;
    ramp_error err = {{0}};
    if (tokenizer_from_llama2c(&tok, path, vocab, &err) != 0) {
        fuzz_require_clean_message(&err);
        return 0;
    }
    fuzz_require(tokenizer_vocab_size(tok) == vocab, "vocabulary of %d, expected %d", tokenizer_vocab_size(tok), vocab);
    /* Text from the file's own bytes (its last 64) and a fixed one. */
    const char *texts[] = {"Once upon a time, caf\xc3\xa9 \xff", (const char *)data + 2 + (size - 2 > 64 ? size - 66 : 0)};
    size_t lengths[] = {strlen(texts[0]), size - 2 > 64 ? 64 : size - 2};
    int ids[3 * 64 + 8];
    char piece[64];
    for (int t = 0; t < 2; t++) {
        size_t n = 0;
        /* The bound tokenizer.h promises: 3 per byte (a space falls back to U+2581's 3 bytes), the
         * prefix and BOS. */
        int rc = tokenizer_encode(tok, texts[t], lengths[t], true, ids, 3 * lengths[t] + 4, &n, &err);
        fuzz_require(rc == 0, "tokenizer_encode failed: %s", err.message);
        for (size_t i = 0; i < n; i++) {
            fuzz_require(ids[i] >= 0 && ids[i] < vocab, "token %d outside the vocabulary of %d", ids[i], vocab);
            tokenizer_decode(tok, i ? ids[i - 1] : -1, ids[i], piece, sizeof piece);
            (void)tokenizer_piece(tok, ids[i]);
        }
    }
    tokenizer_free(tok);
    return 0;
}

FUZZ_ENTRY(fuzz_tokenizer_bin)
