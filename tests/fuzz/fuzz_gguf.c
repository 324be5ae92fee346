/* fuzz_gguf.c: GGUF files from outside, end to end: the parser on the bytes (gguf_open_buffer),
 * every range it vouches for, the vocabulary, the tokenizer built from it, and model_load on the
 * same bytes as a file (configuration checks, tensor shapes, dequantization).
 * Properties: a successful open keeps every promise of gguf.h (strings, arrays and tensor data
 * inside the buffer); a tokenizer encodes any text; a loaded model's configuration is within the
 * engine's limits; failures carry a clean one-line message. Seeds: tests/fuzz/seeds.sh. */
#include <stdbool.h>

#include "fuzz.h"
#include "gguf.h"
#include "model.h"
#include "model_validate.h"
#include "tokenizer.h"

/* Reads the first and last byte of every range an open file promises. */
static unsigned gguf_fuzz_touch(const gguf_file *f) {
    unsigned sum = 0;
    for (uint64_t i = 0; i < f->n_kvs; i++) {
        const gguf_kv *kv = &f->kvs[i];
        if (kv->type == GGUF_VALUE_STRING && kv->value.s.length > 0)
            sum += (unsigned char)kv->value.s.data[0] + (unsigned char)kv->value.s.data[kv->value.s.length - 1];
        if (kv->type == GGUF_VALUE_ARRAY && kv->array_strings) {
            for (uint64_t j = 0; j < kv->array_length; j++) {
                gguf_string s = kv->array_strings[j];
                if (s.length > 0) sum += (unsigned char)s.data[0] + (unsigned char)s.data[s.length - 1];
            }
        } else if (kv->type == GGUF_VALUE_ARRAY && kv->array_length > 0 && kv->array_type != GGUF_VALUE_ARRAY) {
            sum += (unsigned)gguf_array_i64(kv, 0) + (unsigned)gguf_array_i64(kv, kv->array_length - 1);
            sum += gguf_array_f32(kv, kv->array_length - 1) != 0.0f;
        }
    }
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        const unsigned char *bytes = f->tensors[i].data;
        if (f->tensors[i].n_bytes > 0) sum += bytes[0] + bytes[f->tensors[i].n_bytes - 1];
    }
    return sum;
}

/* Encodes a few texts (byte fallback, spaces, UTF-8, invalid UTF-8) and decodes what came out. */
static void gguf_fuzz_tokenizer(const tokenizer *tok) {
    static const char *const texts[] = {"Once upon a time", " hello  world\n", "caf\xc3\xa9 \xe2\x96\x81 \xff\xfe", ""};
    int ids[256];
    char piece[64];
    for (size_t t = 0; t < sizeof texts / sizeof texts[0]; t++) {
        size_t n = 0;
        ramp_error err = {{0}};
        int rc = tokenizer_encode(tok, texts[t], strlen(texts[t]), true, ids, 3 * strlen(texts[t]) + 4, &n, &err);
        fuzz_require(rc == 0, "tokenizer_encode failed on text %zu: %s", t, err.message);
        for (size_t i = 0; i < n; i++) {
            fuzz_require(ids[i] >= 0 && ids[i] < tokenizer_vocab_size(tok), "token %d outside the vocabulary", ids[i]);
            tokenizer_decode(tok, i > 0 ? ids[i - 1] : -1, ids[i], piece, sizeof piece);
        }
    }
    int vocab = tokenizer_vocab_size(tok);
    for (int id = 0; id < vocab && id < 64; id++) (void)tokenizer_piece(tok, id);
    (void)tokenizer_piece(tok, vocab - 1);
}

static void gguf_fuzz_model(const uint8_t *data, size_t size) {
    char path[128];
    fuzz_scratch_path("model.gguf", path, sizeof path);
    fuzz_write_file(path, data, size);
    model m;
    ramp_error err = {{0}};
    /* The vocabulary was fuzzed above on the same bytes: load the weights alone. */
    if (model_load(&m, path, NULL, false, NULL, &err) != 0) {
        fuzz_require_clean_message(&err);
        return;
    }
    const model_config *c = &m.config;
    fuzz_require(c->dim >= 1 && c->dim <= MODEL_MAX_DIM && c->n_layers >= 1 && c->n_layers <= MODEL_MAX_LAYERS &&
                     c->n_heads >= 1 && c->n_kv_heads >= 1 && c->kv_dim >= 1 && c->head_dim * c->n_heads == c->dim &&
                     c->vocab_size >= 1 && c->vocab_size <= MODEL_MAX_VOCAB,
                 "implausible configuration accepted: dim %d layers %d heads %d/%d vocab %d", c->dim, c->n_layers,
                 c->n_heads, c->n_kv_heads, c->vocab_size);
    /* Every weight the slice promises is readable: first and last element of each. */
    volatile float sink = 0;
    for (int l = 0; l < c->n_layers; l++) {
        const layer_weights *w = &m.layers[l];
        sink += fuzz_touch_matrix(&w->wq) + fuzz_touch_matrix(&w->w_down) + fuzz_touch_matrix(&w->wk);
        sink += w->attn_norm[c->dim - 1] + w->ffn_norm[c->dim - 1];
    }
    sink += fuzz_touch_matrix(&m.token_embedding) + fuzz_touch_matrix(&m.output);
    (void)sink;
    model_free(&m);
}

static int fuzz_gguf(const uint8_t *data, size_t size) {
    gguf_file f;
    ramp_error err = {{0}};
    if (gguf_open_buffer(&f, data, size, "fuzz.gguf", &err) != 0) {
        fuzz_require_clean_message(&err);
        return 0;
    }
    volatile unsigned sum = gguf_fuzz_touch(&f);
    (void)sum;
    tokenizer *tok = NULL;
    if (tokenizer_from_gguf(&tok, &f, &err) == 0) {
        gguf_fuzz_tokenizer(tok);
        tokenizer_free(tok);
    } else {
        fuzz_require_clean_message(&err);
    }
    gguf_close(&f);
    gguf_fuzz_model(data, size);
    return 0;
}

FUZZ_ENTRY(fuzz_gguf)
