/* test_tokenizer.c: the tokenizers against llama.cpp's reference vectors, llama2.c's tokenizer.bin
 * against the same vocabulary in GGUF, round trips, hostile input and broken files.
 *
 * Shared data comes from $RAMP_SHARED (default ../shared). The reference vectors are llama.cpp's
 * test-tokenizer-0 files: <vocab>.inp holds the inputs, each followed by "\n__ggml_vocab_test__\n",
 * and <vocab>.out one line of expected ids per input (tokenized without BOS).
 */
#include <criterion/criterion.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gguf.h"
#include "gguf_writer.h"
#include "tokenizer.h"

#define VOCAB_SEPARATOR "\n__ggml_vocab_test__\n"

/* ---- helpers -------------------------------------------------------------------------------- */

static void shared_path(char *out, size_t size, const char *name) {
    const char *dir = getenv("RAMP_SHARED");
    snprintf(out, size, "%s/%s", dir != NULL && dir[0] != '\0' ? dir : "../shared", name);
}

/* The whole file, NUL-terminated (the NUL is not counted in *size). */
static char *read_file(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "cannot open %s (set RAMP_SHARED to the shared folder)", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    cr_assert_geq(n, 0, "cannot size %s", path);
    char *data = malloc((size_t)n + 1);
    cr_assert_not_null(data);
    cr_assert_eq(fread(data, 1, (size_t)n, f), (size_t)n, "short read on %s", path);
    fclose(f);
    data[n] = '\0';
    *size = (size_t)n;
    return data;
}

static void write_file(const char *path, const void *data, size_t size) {
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f, "cannot create %s", path);
    cr_assert_eq(fwrite(data, 1, size, f), size);
    cr_assert_eq(fclose(f), 0);
}

static tokenizer *load_gguf_tokenizer(const char *name) {
    char path[4096];
    shared_path(path, sizeof path, name);
    gguf_file file;
    ramp_error err = {0};
    cr_assert_eq(gguf_open(&file, path, &err), 0, "gguf_open: %s", err.message);
    tokenizer *tok = NULL;
    int rc = tokenizer_from_gguf(&tok, &file, &err);
    gguf_close(&file); /* the tokenizer owns copies: it must outlive the file */
    cr_assert_eq(rc, 0, "tokenizer_from_gguf: %s", err.message);
    cr_assert_not_null(tok);
    return tok;
}

static tokenizer *load_tok512(void) {
    char path[4096];
    shared_path(path, sizeof path, "models/stories260K/tok512.bin");
    tokenizer *tok = NULL;
    ramp_error err = {0};
    cr_assert_eq(tokenizer_from_llama2c(&tok, path, 512, &err), 0, "tokenizer_from_llama2c: %s", err.message);
    return tok;
}

/* Encodes into ids (room for capacity), asserting success; returns the count. */
static size_t encode(const tokenizer *tok, const char *text, size_t len, bool add_bos, int *ids, size_t capacity) {
    size_t n = 0;
    ramp_error err = {0};
    int rc = tokenizer_encode(tok, text, len, add_bos, ids, capacity, &n, &err);
    cr_assert_eq(rc, 0, "tokenizer_encode(\"%.*s\"): %s", (int)len, text, err.message);
    cr_assert_leq(n, capacity);
    for (size_t i = 0; i < n; i++)
        cr_assert(ids[i] >= 0 && ids[i] < tokenizer_vocab_size(tok), "id %d out of range", ids[i]);
    return n;
}

/* Concatenated decode of ids into out (NUL-terminated); returns the byte count. */
static size_t decode_all(const tokenizer *tok, const int *ids, size_t n, char *out, size_t capacity) {
    size_t used = 0;
    int prev = -1;
    for (size_t i = 0; i < n; i++) {
        char piece[256];
        size_t got = tokenizer_decode(tok, prev, ids[i], piece, sizeof piece);
        cr_assert_lt(got, sizeof piece);
        cr_assert_eq(piece[got], '\0', "decode must NUL-terminate");
        cr_assert_lt(used + got, capacity, "decoded text does not fit in %zu bytes", capacity);
        memcpy(out + used, piece, got);
        used += got;
        prev = ids[i];
    }
    out[used] = '\0';
    return used;
}

static void format_ids(char *out, size_t size, const int *ids, size_t n) {
    size_t used = 0;
    out[0] = '\0';
    for (size_t i = 0; i < n && used + 16 < size; i++) used += (size_t)snprintf(out + used, size - used, " %d", ids[i]);
}

/* ---- llama.cpp reference vectors ------------------------------------------------------------ */

/* Runs every vector of a vocabulary; each input must give exactly the ids of its .out line, and
 * decoding those ids must give the input back (after the SPM space prefix). */
static void check_vocab_vectors(const char *vocab, bool spm) {
    char path[256], out_path[256];
    snprintf(path, sizeof path, "reference/vocab/%s.inp", vocab);
    snprintf(out_path, sizeof out_path, "reference/vocab/%s.out", vocab);
    char full[4096];
    size_t inp_size, out_size;
    shared_path(full, sizeof full, path);
    char *inp = read_file(full, &inp_size);
    shared_path(full, sizeof full, out_path);
    char *expected = read_file(full, &out_size);
    snprintf(path, sizeof path, "reference/vocab/%s", vocab);
    tokenizer *tok = load_gguf_tokenizer(path);

    size_t capacity = 4 * inp_size + 16;
    int *ids = malloc(capacity * sizeof *ids);
    char *decoded = malloc(4 * inp_size + 16);
    char *want = malloc(inp_size + 2);
    cr_assert(ids != NULL && decoded != NULL && want != NULL);
    int total = 0, passed = 0, round_trips = 0;
    char *line = expected;
    for (char *input = inp;;) {
        char *sep = strstr(input, VOCAB_SEPARATOR);
        if (sep == NULL) break;
        size_t len = (size_t)(sep - input);
        char *eol = strchr(line, '\n');
        cr_assert_not_null(eol, "%s.out has fewer lines than %s.inp has inputs (%d)", vocab, vocab, total + 1);
        *eol = '\0';

        int want_ids[1024];
        size_t n_want = 0;
        for (char *p = line, *end; n_want < 1024; p = end) {
            long id = strtol(p, &end, 10);
            if (end == p) break;
            want_ids[n_want++] = (int)id;
        }
        size_t n = encode(tok, input, len, false, ids, capacity);
        bool same = n == n_want && memcmp(ids, want_ids, n * sizeof *ids) == 0;
        char got_text[8192];
        format_ids(got_text, sizeof got_text, ids, n);
        cr_expect(same, "%s vector %d \"%.*s\": expected%s, got%s", vocab, total, (int)len, input, line, got_text);
        passed += same;

        size_t prefix = spm && len > 0 ? 1 : 0; /* SPM decodes its U+2581 prefix as a space */
        want[0] = ' ';
        memcpy(want + prefix, input, len);
        size_t got = decode_all(tok, ids, n, decoded, 4 * inp_size + 16);
        bool round_trip = got == len + prefix && memcmp(decoded, want, got) == 0;
        cr_expect(round_trip, "%s vector %d \"%.*s\" decodes to \"%s\"", vocab, total, (int)len, input, decoded);
        round_trips += round_trip;

        total++;
        line = eol + 1;
        input = sep + strlen(VOCAB_SEPARATOR);
    }
    cr_assert_eq(*line, '\0', "%s.out has more lines than %s.inp has inputs (%d)", vocab, vocab, total);
    cr_assert_gt(total, 40, "%s: only %d vectors parsed", vocab, total);
    cr_log_info("%s: %d/%d vectors match llama.cpp, %d/%d round-trip", vocab, passed, total, round_trips, total);
    cr_assert_eq(passed, total, "%s: %d of %d vectors match", vocab, passed, total);
    cr_assert_eq(round_trips, total);
    tokenizer_free(tok);
    free(want);
    free(decoded);
    free(ids);
    free(expected);
    free(inp);
}

Test(tokenizer_vectors, llama_spm_matches_llama_cpp) { check_vocab_vectors("ggml-vocab-llama-spm.gguf", true); }

Test(tokenizer_vectors, gpt2_matches_llama_cpp) { check_vocab_vectors("ggml-vocab-gpt-2.gguf", false); }

/* ---- metadata ------------------------------------------------------------------------------- */

Test(tokenizer_gguf, llama_spm_metadata) {
    tokenizer *tok = load_gguf_tokenizer("reference/vocab/ggml-vocab-llama-spm.gguf");
    cr_assert_eq(tokenizer_get_kind(tok), TOKENIZER_SPM);
    cr_assert_eq(tokenizer_vocab_size(tok), 32000);
    cr_assert_eq(tokenizer_bos(tok), 1);
    cr_assert_eq(tokenizer_eos(tok), 2);
    cr_assert_str_eq(tokenizer_piece(tok, 1), "<s>");
    cr_assert_str_eq(tokenizer_piece(tok, 15043), "\xe2\x96\x81Hello");
    cr_assert_str_eq(tokenizer_piece(tok, -1), "");
    cr_assert_str_eq(tokenizer_piece(tok, 32000), "");
    tokenizer_free(tok);
}

Test(tokenizer_gguf, gpt2_metadata) {
    tokenizer *tok = load_gguf_tokenizer("reference/vocab/ggml-vocab-gpt-2.gguf");
    cr_assert_eq(tokenizer_get_kind(tok), TOKENIZER_GPT2);
    cr_assert_eq(tokenizer_vocab_size(tok), 50257);
    cr_assert_eq(tokenizer_bos(tok), 50256);
    cr_assert_eq(tokenizer_eos(tok), 50256);
    cr_assert_str_eq(tokenizer_piece(tok, 50256), "<|endoftext|>");
    tokenizer_free(tok);
}

/* ---- llama2.c's tokenizer.bin --------------------------------------------------------------- */

Test(tokenizer_llama2c, tok512_matches_stories260k_gguf) {
    tokenizer *bin = load_tok512();
    tokenizer *gguf = load_gguf_tokenizer("models/stories260K/stories260K-f32.gguf");
    cr_assert_eq(tokenizer_vocab_size(bin), 512);
    cr_assert_eq(tokenizer_vocab_size(gguf), 512);
    const char *texts[] = {
        "Once upon a time",
        "Once upon a time, there was a little girl named Lily. She loved to play outside.",
        "Tom and Sam went to the park. They saw a big, red ball!",
        "  two leading spaces and a trailing one ",
        "tabs\tand\nnew lines\n\n",
        "numbers 12345 and symbols #@%&*()",
        "caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x98\x80",
        "",
    };
    for (size_t t = 0; t < sizeof texts / sizeof texts[0]; t++) {
        int a[512], b[512];
        size_t na = encode(bin, texts[t], strlen(texts[t]), true, a, 512);
        size_t nb = encode(gguf, texts[t], strlen(texts[t]), true, b, 512);
        char got_a[4096], got_b[4096];
        format_ids(got_a, sizeof got_a, a, na);
        format_ids(got_b, sizeof got_b, b, nb);
        cr_assert(na == nb && memcmp(a, b, na * sizeof a[0]) == 0, "\"%s\": tok512.bin gives%s, GGUF gives%s", texts[t],
                  got_a, got_b);
        cr_assert_geq(na, 1);
        cr_assert_eq(a[0], 1, "BOS first");
    }
    tokenizer_free(gguf);
    tokenizer_free(bin);
}

Test(tokenizer_llama2c, once_upon_a_time) {
    tokenizer *tok = load_tok512();
    cr_assert_eq(tokenizer_get_kind(tok), TOKENIZER_SPM);
    cr_assert_eq(tokenizer_bos(tok), 1);
    cr_assert_eq(tokenizer_eos(tok), 2);
    /* the exporter's spaces are stored as U+2581, like SentencePiece's own pieces */
    cr_assert_null(strchr(tokenizer_piece(tok, 300), ' '));
    int ids[64];
    const char *text = "Once upon a time";
    size_t n = encode(tok, text, strlen(text), true, ids, 64);
    cr_assert_gt(n, 2);
    cr_assert_lt(n, strlen(text), "merges should make fewer tokens than bytes");
    cr_assert_eq(ids[0], 1);
    char decoded[256];
    decode_all(tok, ids, n, decoded, sizeof decoded);
    cr_assert_str_eq(decoded, " Once upon a time");
    tokenizer_free(tok);
}

static char *temp_path(char *out, size_t size) {
    snprintf(out, size, "/tmp/ramp_test_tok_XXXXXX");
    int fd = mkstemp(out);
    cr_assert_geq(fd, 0, "mkstemp");
    close(fd);
    return out;
}

Test(tokenizer_llama2c, truncated_file_fails_with_a_message) {
    char path[4096], tmp[64];
    size_t size;
    shared_path(path, sizeof path, "models/stories260K/tok512.bin");
    char *data = read_file(path, &size);
    temp_path(tmp, sizeof tmp);
    size_t cuts[] = {0, 2, 4, 7, 11, 100, size / 2, size - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        write_file(tmp, data, cuts[i]);
        tokenizer *tok = (tokenizer *)1;
        ramp_error err = {0};
        cr_assert_eq(tokenizer_from_llama2c(&tok, tmp, 512, &err), -1, "a %zu-byte prefix must not load", cuts[i]);
        cr_assert_null(tok);
        cr_assert_not_null(strstr(err.message, tmp), "message names the file: %s", err.message);
    }
    /* the whole file loads, but not with more tokens than it holds */
    write_file(tmp, data, size);
    tokenizer *tok = NULL;
    ramp_error err = {0};
    cr_assert_eq(tokenizer_from_llama2c(&tok, tmp, 513, &err), -1);
    cr_assert_not_null(strstr(err.message, "truncated"), "%s", err.message);
    cr_assert_eq(tokenizer_from_llama2c(&tok, tmp, 512, &err), 0, "%s", err.message);
    tokenizer_free(tok);
    unlink(tmp);
    free(data);
}

Test(tokenizer_llama2c, corrupt_length_and_missing_file_fail) {
    char path[4096], tmp[64];
    size_t size;
    shared_path(path, sizeof path, "models/stories260K/tok512.bin");
    char *data = read_file(path, &size);
    temp_path(tmp, sizeof tmp);
    const int32_t lengths[] = {-1, 0x7fffffff};
    for (size_t i = 0; i < 2; i++) {
        memcpy(data + 4 + 4, &lengths[i], 4); /* the first token's length */
        write_file(tmp, data, size);
        tokenizer *tok = NULL;
        ramp_error err = {0};
        cr_assert_eq(tokenizer_from_llama2c(&tok, tmp, 512, &err), -1);
        cr_assert_not_null(strstr(err.message, "length"), "%s", err.message);
    }
    tokenizer *tok = NULL;
    ramp_error err = {0};
    cr_assert_eq(tokenizer_from_llama2c(&tok, "/nonexistent/tok.bin", 512, &err), -1);
    cr_assert_not_null(strstr(err.message, "/nonexistent/tok.bin"), "%s", err.message);
    cr_assert_eq(tokenizer_from_llama2c(&tok, path, 0, &err), -1);
    unlink(tmp);
    free(data);
}

/* ---- round trips and hostile input ---------------------------------------------------------- */

static tokenizer *load_by_index(int which) {
    switch (which) {
    case 0: return load_tok512();
    case 1: return load_gguf_tokenizer("reference/vocab/ggml-vocab-llama-spm.gguf");
    default: return load_gguf_tokenizer("reference/vocab/ggml-vocab-gpt-2.gguf");
    }
}

Test(tokenizer_roundtrip, ascii_text_decodes_to_itself) {
    uint32_t state = 12345;
    for (int which = 0; which < 3; which++) {
        tokenizer *tok = load_by_index(which);
        bool spm = tokenizer_get_kind(tok) == TOKENIZER_SPM;
        for (int trial = 0; trial < 50; trial++) {
            char text[200];
            size_t len = 1 + trial * 3;
            for (size_t i = 0; i < len; i++) {
                state = state * 1664525u + 1013904223u;
                text[i] = (char)(' ' + (state >> 24) % 95); /* printable ASCII */
            }
            if (trial % 5 == 0) text[len / 2] = '\n';
            int ids[256];
            size_t n = encode(tok, text, len, true, ids, 256);
            char decoded[512];
            size_t got = decode_all(tok, ids, n, decoded, sizeof decoded);
            size_t prefix = spm ? 1 : 0;
            cr_assert_eq(got, len + prefix, "tokenizer %d: \"%.*s\" decodes to \"%s\"", which, (int)len, text, decoded);
            cr_assert(!spm || decoded[0] == ' ');
            cr_assert_eq(memcmp(decoded + prefix, text, len), 0, "tokenizer %d: \"%.*s\" decodes to \"%s\"", which,
                         (int)len, text, decoded);
        }
        tokenizer_free(tok);
    }
}

Test(tokenizer_roundtrip, invalid_utf8_and_empty_input) {
    static const struct {
        const char *bytes;
        size_t len;
    } inputs[] = {
        {"\xff", 1},
        {"\xc3", 1},
        {"a\xe2\x96", 3},
        {"\xf0\x9f\x98", 3},
        {"\x80\x80x", 3},
        {"\xc0\xaf", 2},
        {"a\0b", 3},
        {"\xed\xa0\x80 \xf4\x90\x80\x80", 9},
        {"ok \xfe\xfe done", 10},
    };
    for (int which = 0; which < 3; which++) {
        tokenizer *tok = load_by_index(which);
        bool spm = tokenizer_get_kind(tok) == TOKENIZER_SPM;
        for (size_t t = 0; t < sizeof inputs / sizeof inputs[0]; t++) {
            int ids[64];
            size_t n = encode(tok, inputs[t].bytes, inputs[t].len, false, ids, 64);
            cr_assert_gt(n, 0);
            /* byte fallback (SPM) and byte-level BPE (GPT-2) both keep every byte */
            char decoded[128], want[32] = " ";
            size_t prefix = spm ? 1 : 0;
            memcpy(want + prefix, inputs[t].bytes, inputs[t].len);
            size_t got = decode_all(tok, ids, n, decoded, sizeof decoded);
            cr_assert(got == inputs[t].len + prefix && memcmp(decoded, want, got) == 0,
                      "tokenizer %d: input %zu does not round-trip", which, t);
        }
        int ids[4];
        cr_assert_eq(encode(tok, "", 0, false, ids, 4), 0);
        cr_assert_eq(encode(tok, NULL, 0, false, ids, 4), 0);
        /* BOS alone, where the vocabulary wants one (GPT-2's pre-tokenizer asks for none) */
        size_t n = encode(tok, "", 0, true, ids, 4);
        cr_assert_eq(n, spm ? 1 : 0, "tokenizer %d: %zu tokens for an empty text", which, n);
        if (spm) cr_assert_eq(ids[0], tokenizer_bos(tok));
        tokenizer_free(tok);
    }
}

Test(tokenizer_roundtrip, spm_byte_fallback_uses_byte_tokens) {
    tokenizer *tok = load_gguf_tokenizer("reference/vocab/ggml-vocab-llama-spm.gguf");
    int ids[8];
    size_t n = encode(tok, "\xff", 1, false, ids, 8);
    cr_assert_eq(n, 2);
    cr_assert_eq(ids[0], 29871);    /* "▁" */
    cr_assert_eq(ids[1], 3 + 0xff); /* "<0xFF>" */
    tokenizer_free(tok);
}

/* ---- encode and decode contracts ------------------------------------------------------------ */

Test(tokenizer_contract, small_capacity_fails_and_reports_the_need) {
    tokenizer *tok = load_tok512();
    const char *text = "Once upon a time";
    int all[64];
    size_t needed = encode(tok, text, strlen(text), true, all, 64);
    int ids[2];
    size_t n = 0;
    ramp_error err = {0};
    cr_assert_eq(tokenizer_encode(tok, text, strlen(text), true, ids, 2, &n, &err), -1);
    cr_assert_eq(n, needed, "reports the room it needs");
    cr_assert_neq(err.message[0], '\0');
    cr_assert_eq(ids[0], all[0]);
    cr_assert_eq(ids[1], all[1]);
    cr_assert_eq(tokenizer_encode(tok, text, strlen(text), true, NULL, 0, &n, &err), -1);
    cr_assert_eq(n, needed);
    tokenizer_free(tok);
}

Test(tokenizer_contract, decode_specials_bytes_and_truncation) {
    tokenizer *tok = load_gguf_tokenizer("reference/vocab/ggml-vocab-llama-spm.gguf");
    char buf[64];
    cr_assert_eq(tokenizer_decode(tok, -1, 1, buf, sizeof buf), 0); /* BOS */
    cr_assert_str_eq(buf, "");
    cr_assert_eq(tokenizer_decode(tok, 1, 2, buf, sizeof buf), 0); /* EOS */
    cr_assert_eq(tokenizer_decode(tok, 1, 0, buf, sizeof buf), 0); /* <unk> */
    cr_assert_eq(tokenizer_decode(tok, 1, 3 + 'A', buf, sizeof buf), 1);
    cr_assert_str_eq(buf, "A");
    cr_assert_eq(tokenizer_decode(tok, 1, 15043, buf, sizeof buf), 6); /* not stripped after BOS */
    cr_assert_str_eq(buf, " Hello");
    cr_assert_eq(tokenizer_decode(tok, 1, 15043, buf, 3), 2);
    cr_assert_str_eq(buf, " H");
    buf[0] = 'x';
    cr_assert_eq(tokenizer_decode(tok, 1, 15043, buf, 0), 0);
    cr_assert_eq(buf[0], 'x', "capacity 0 writes nothing");
    cr_assert_eq(tokenizer_decode(tok, 1, -5, buf, sizeof buf), 0);
    cr_assert_eq(tokenizer_decode(tok, 1, 999999, buf, sizeof buf), 0);
    tokenizer_free(tok);

    tok = load_gguf_tokenizer("reference/vocab/ggml-vocab-gpt-2.gguf");
    cr_assert_eq(tokenizer_decode(tok, -1, 50256, buf, sizeof buf), 0);
    int ids[8];
    size_t n = encode(tok, " world", 6, false, ids, 8);
    cr_assert_eq(n, 1);
    cr_assert_eq(tokenizer_decode(tok, -1, ids[0], buf, sizeof buf), 6);
    cr_assert_str_eq(buf, " world");
    tokenizer_free(tok);
}

/* A long prompt must not be quadratic: ~300 KB of mixed text in well under the timeout. */
Test(tokenizer_contract, long_prompts_are_fast, .timeout = 60) {
    const char *chunk =
        "Once upon a time, in a land far away, there lived a curious fox named Zoë who loved numbers like 3141 "
        "and words like \xe6\x97\xa5\xe6\x9c\xac. ";
    size_t chunk_len = strlen(chunk), repeats = 2500, len = chunk_len * repeats;
    char *text = malloc(len);
    cr_assert_not_null(text);
    for (size_t i = 0; i < repeats; i++) memcpy(text + i * chunk_len, chunk, chunk_len);
    size_t capacity = len + 1;
    int *ids = malloc(capacity * sizeof *ids);
    cr_assert_not_null(ids);
    for (int which = 0; which < 3; which++) {
        tokenizer *tok = load_by_index(which);
        int one[256];
        size_t per_chunk = encode(tok, chunk, chunk_len, false, one, 256);
        size_t n = encode(tok, text, len, false, ids, capacity);
        cr_assert_gt(n, repeats * (per_chunk - 2), "tokenizer %d: %zu tokens", which, n);
        cr_assert_lt(n, repeats * (per_chunk + 2), "tokenizer %d: %zu tokens", which, n);
        tokenizer_free(tok);
    }
    /* one 200 KB "word" with no spaces: GPT-2's BPE sees it whole */
    memset(text, 'a', len);
    tokenizer *tok = load_by_index(2);
    cr_assert_gt(encode(tok, text, 200000, false, ids, capacity), 0);
    tokenizer_free(tok);
    free(ids);
    free(text);
}

/* ---- hand-made vocabularies ------------------------------------------------------------------- */

typedef struct {
    const char *model;
    const char *const *tokens;
    size_t n_tokens;
    const float *scores;
    size_t n_scores;
    const int32_t *types;
    size_t n_types;
    const char *const *merges;
    size_t n_merges;
    int64_t bos;     /* < 0: no key */
    const char *pre; /* tokenizer.ggml.pre, or NULL: no key */
    int add_bos;     /* tokenizer.ggml.add_bos_token: 0 no key, 1 false, 2 true */
} vocab_spec;

/* Writes spec as a GGUF to a temp file and tries to load it. */
static int load_spec(const vocab_spec *spec, tokenizer **tok, ramp_error *err) {
    char tmp[64];
    temp_path(tmp, sizeof tmp);
    gguf_writer *w = NULL;
    ramp_error werr = {0};
    cr_assert_eq(gguf_writer_create(&w, tmp, &werr), 0, "%s", werr.message);
    cr_assert_eq(gguf_writer_add_string(w, "tokenizer.ggml.model", spec->model, &werr), 0, "%s", werr.message);
    cr_assert_eq(gguf_writer_add_string_array(w, "tokenizer.ggml.tokens", spec->tokens, spec->n_tokens, &werr), 0, "%s",
                 werr.message);
    if (spec->scores != NULL)
        cr_assert_eq(gguf_writer_add_f32_array(w, "tokenizer.ggml.scores", spec->scores, spec->n_scores, &werr), 0,
                     "%s", werr.message);
    if (spec->types != NULL)
        cr_assert_eq(gguf_writer_add_i32_array(w, "tokenizer.ggml.token_type", spec->types, spec->n_types, &werr), 0,
                     "%s", werr.message);
    if (spec->merges != NULL)
        cr_assert_eq(gguf_writer_add_string_array(w, "tokenizer.ggml.merges", spec->merges, spec->n_merges, &werr), 0,
                     "%s", werr.message);
    if (spec->bos >= 0)
        cr_assert_eq(gguf_writer_add_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)spec->bos, &werr), 0, "%s",
                     werr.message);
    if (spec->pre != NULL)
        cr_assert_eq(gguf_writer_add_string(w, "tokenizer.ggml.pre", spec->pre, &werr), 0, "%s", werr.message);
    if (spec->add_bos != 0)
        cr_assert_eq(gguf_writer_add_bool(w, "tokenizer.ggml.add_bos_token", spec->add_bos == 2, &werr), 0, "%s",
                     werr.message);
    cr_assert_eq(gguf_writer_begin_data(w, &werr), 0, "%s", werr.message);
    cr_assert_eq(gguf_writer_finish(w, &werr), 0, "%s", werr.message);
    gguf_writer_free(w);
    gguf_file file;
    cr_assert_eq(gguf_open(&file, tmp, &werr), 0, "%s", werr.message);
    *tok = NULL;
    int rc = tokenizer_from_gguf(tok, &file, err);
    gguf_close(&file);
    unlink(tmp);
    return rc;
}

static const char *const TINY_TOKENS[] = {"<unk>",
                                          "<s>",
                                          "</s>",
                                          "\xe2\x96\x81",
                                          "a",
                                          "aa",
                                          "<",
                                          "s",
                                          ">",
                                          "<s",
                                          "b",
                                          "\xe2\x96\x81"
                                          "b"};
static const float TINY_SCORES[] = {0, 0, 0, -5, -1, -2, -1, -1, -1, 0, -1, -3};
static const int32_t TINY_TYPES[] = {2, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1};

static vocab_spec tiny_spm(void) {
    return (vocab_spec){.model = "llama",
                        .tokens = TINY_TOKENS,
                        .n_tokens = 12,
                        .scores = TINY_SCORES,
                        .n_scores = 12,
                        .types = TINY_TYPES,
                        .n_types = 12,
                        .bos = -1};
}

Test(tokenizer_handmade, spm_merges_by_score_leftmost_first) {
    vocab_spec spec = tiny_spm();
    tokenizer *tok;
    ramp_error err = {0};
    cr_assert_eq(load_spec(&spec, &tok, &err), 0, "%s", err.message);
    cr_assert_eq(tokenizer_bos(tok), 1, "bos defaults to 1 for llama vocabularies");
    int ids[16];
    /* "▁aaa": "aa" ties at both positions, the leftmost wins; "▁a" is no piece */
    size_t n = encode(tok, "aaa", 3, false, ids, 16);
    cr_assert_eq(n, 3);
    cr_assert_eq(ids[0], 3);
    cr_assert_eq(ids[1], 5);
    cr_assert_eq(ids[2], 4);
    /* "▁b" (score -3) is a piece: the prefix merges into it */
    n = encode(tok, "b", 1, false, ids, 16);
    cr_assert_eq(n, 1);
    cr_assert_eq(ids[0], 11);
    /* "<s>" typed by a user never becomes the control token BOS */
    n = encode(tok, "<s>", 3, false, ids, 16);
    for (size_t i = 0; i < n; i++) cr_assert_neq(ids[i], 1);
    /* no byte tokens in this vocabulary: unknown characters become <unk> */
    n = encode(tok, "z", 1, false, ids, 16);
    cr_assert_eq(n, 2);
    cr_assert_eq(ids[1], 0);
    tokenizer_free(tok);
}

Test(tokenizer_handmade, bad_metadata_fails_with_a_message) {
    tokenizer *tok;
    ramp_error err = {0};

    vocab_spec spec = tiny_spm();
    spec.n_scores = 11;
    cr_assert_eq(load_spec(&spec, &tok, &err), -1);
    cr_assert_null(tok);
    cr_assert_not_null(strstr(err.message, "tokenizer.ggml.scores"), "%s", err.message);

    spec = tiny_spm();
    spec.n_types = 5;
    cr_assert_eq(load_spec(&spec, &tok, &err), -1);
    cr_assert_not_null(strstr(err.message, "tokenizer.ggml.token_type"), "%s", err.message);

    spec = tiny_spm();
    spec.bos = 12;
    cr_assert_eq(load_spec(&spec, &tok, &err), -1);
    cr_assert_not_null(strstr(err.message, "bos_token_id"), "%s", err.message);

    spec = tiny_spm();
    spec.model = "bert";
    cr_assert_eq(load_spec(&spec, &tok, &err), -1);
    cr_assert_not_null(strstr(err.message, "bert"), "%s", err.message);

    spec = tiny_spm();
    spec.model = "gpt2"; /* a gpt2 vocabulary needs merges */
    cr_assert_eq(load_spec(&spec, &tok, &err), -1);
    cr_assert_not_null(strstr(err.message, "merges"), "%s", err.message);

    spec = tiny_spm();
    spec.bos = 0xffffffffu; /* llama.cpp's "no token" */
    cr_assert_eq(load_spec(&spec, &tok, &err), 0, "%s", err.message);
    cr_assert_eq(tokenizer_bos(tok), -1);
    tokenizer_free(tok);
}

/* tokenizer.ggml.add_bos_token decides whether a prompt starts with BOS (Qwen2 files name a BOS but
 * say false, as llama.cpp reads them); without the key a vocabulary with a BOS gets it. */
Test(tokenizer_handmade, add_bos_token_is_honoured) {
    int ids[16];
    ramp_error err = {0};
    for (int flag = 0; flag <= 2; flag++) { /* no key, false, true */
        vocab_spec spec = tiny_spm();
        spec.bos = 1;
        spec.add_bos = flag;
        tokenizer *tok;
        cr_assert_eq(load_spec(&spec, &tok, &err), 0, "%s", err.message);
        size_t with = encode(tok, "a", 1, true, ids, 16);
        const bool bos_first = ids[0] == 1;
        size_t without = encode(tok, "a", 1, false, ids, 16);
        cr_expect_eq(bos_first, flag != 1, "add_bos_token case %d: BOS first is %d", flag, bos_first);
        cr_expect_eq(with, without + (flag != 1 ? 1 : 0), "add_bos_token case %d: %zu and %zu tokens", flag, with,
                     without);
        tokenizer_free(tok);
    }
}

/* A chat turn's end: a control token with one of the usual texts (<|im_end|> here), not a normal
 * token of that text, and none when it is the eos token itself. */
Test(tokenizer_handmade, end_of_turn_is_found_by_its_control_token) {
    static const char *const tokens[] = {"<unk>", "<s>", "</s>", "a", "<|im_end|>"};
    static const float scores[] = {0, 0, 0, -1, 0};
    static const int32_t control[] = {2, 3, 3, 1, 3}, normal[] = {2, 3, 3, 1, 1};
    vocab_spec spec = {.model = "llama", .tokens = tokens, .n_tokens = 5, .scores = scores, .n_scores = 5,
                       .types = control, .n_types = 5, .bos = 1};
    tokenizer *tok;
    ramp_error err = {0};
    cr_assert_eq(load_spec(&spec, &tok, &err), 0, "%s", err.message);
    cr_expect_eq(tokenizer_eot(tok), 4);
    cr_expect_eq(tokenizer_eos(tok), 2);
    tokenizer_free(tok);
    spec.types = normal;
    cr_assert_eq(load_spec(&spec, &tok, &err), 0, "%s", err.message);
    cr_expect_eq(tokenizer_eot(tok), -1, "a normal token that reads <|im_end|> is text");
    tokenizer_free(tok);
}

Test(tokenizer_handmade, gpt2_merges_by_rank) {
    /* bytes 'a'..'d' map to themselves; 'Ġ' (U+0120) is the space */
    static const char *const tokens[] = {"a",
                                         "b",
                                         "c",
                                         "d",
                                         "\xc4\xa0",
                                         "ab",
                                         "bc",
                                         "abc",
                                         "\xc4\xa0"
                                         "a"};
    static const char *const merges[] = {"b c", "a b", "a bc", "\xc4\xa0 a", "not a-rule-with-pieces"};
    vocab_spec spec = {.model = "gpt2", .tokens = tokens, .n_tokens = 9, .merges = merges, .n_merges = 5, .bos = -1};
    tokenizer *tok;
    ramp_error err = {0};
    cr_assert_eq(load_spec(&spec, &tok, &err), 0, "%s", err.message);
    cr_assert_eq(tokenizer_bos(tok), -1, "gpt2 vocabularies have no default BOS");
    int ids[16];
    /* "abc": "b c" (rank 0) beats "a b" (rank 1), then "a bc" */
    size_t n = encode(tok, "abc", 3, false, ids, 16);
    cr_assert_eq(n, 1);
    cr_assert_eq(ids[0], 7);
    /* "ab" and " a" + "d": the pre-tokenizer splits at the space */
    n = encode(tok, "ab ad", 5, true, ids, 16);
    cr_assert_eq(n, 3, "no BOS to add");
    cr_assert_eq(ids[0], 5);
    cr_assert_eq(ids[1], 8);
    cr_assert_eq(ids[2], 3);
    tokenizer_free(tok);

    static const char *const bad[] = {"abc"};
    spec.merges = bad;
    spec.n_merges = 1;
    cr_assert_eq(load_spec(&spec, &tok, &err), -1);
    cr_assert_not_null(strstr(err.message, "merge rule 0"), "%s", err.message);
}

/* ---- pre-tokenizers (tokenizer.ggml.pre) ---------------------------------------------------------- */

/* Digits and a few pieces, with merges that would join "12345" whole: what the pre-tokenizer cuts
 * shows in the tokens. */
static const char *const PRE_TOKENS[] = {"1", "2", "3", "4", "5", "12", "123", "1234", "12345", "x", "y", "z",
                                         "xyz", "'", "S", "'S", "a", "\xc4\xa0", "\xc4\xa0" "a", "aS"};
enum { T1, T2, T3, T4, T5, T12, T123, T1234, T12345, TX, TY, TZ, TXYZ, TQUOTE, TS, TQS, TA, TSPACE, TSPACE_A, TAS };
static const char *const PRE_MERGES[] = {"1 2", "12 3", "123 4", "1234 5", "' S", "\xc4\xa0 a", "a S"};

static tokenizer *pre_tokenizer(const char *pre) {
    vocab_spec spec = {.model = "gpt2", .tokens = PRE_TOKENS, .n_tokens = sizeof PRE_TOKENS / sizeof PRE_TOKENS[0],
                       .merges = PRE_MERGES, .n_merges = sizeof PRE_MERGES / sizeof PRE_MERGES[0], .bos = -1,
                       .pre = pre};
    tokenizer *tok = NULL;
    ramp_error err = {0};
    cr_assert_eq(load_spec(&spec, &tok, &err), 0, "pre %s: %s", pre ? pre : "(none)", err.message);
    return tok;
}

static void expect_ids(const char *pre, const char *text, const int *expected, size_t n_expected) {
    tokenizer *tok = pre_tokenizer(pre);
    int ids[32];
    size_t n = encode(tok, text, strlen(text), false, ids, 32);
    char got[256], want[256];
    format_ids(got, sizeof got, ids, n);
    format_ids(want, sizeof want, expected, n_expected);
    cr_assert(n == n_expected && memcmp(ids, expected, n * sizeof(int)) == 0, "pre %s, \"%s\": got %s, expected %s",
              pre ? pre : "(none)", text, got, want);
    tokenizer_free(tok);
}

#define EXPECT_IDS(pre, text, ...)                                                                          \
    do {                                                                                                    \
        const int expected[] = {__VA_ARGS__};                                                              \
        expect_ids(pre, text, expected, sizeof expected / sizeof expected[0]);                              \
    } while (0)

Test(tokenizer_pre, digits_are_grouped_as_each_pre_tokenizer_says) {
    EXPECT_IDS("gpt-2", "12345", T12345);          /* \p{N}+: one word */
    EXPECT_IDS("llama-bpe", "12345", T123, T4, T5); /* \p{N}{1,3} */
    EXPECT_IDS("llama3", "12345", T123, T4, T5);
    EXPECT_IDS("qwen2", "12345", T1, T2, T3, T4, T5);  /* one digit per word */
    EXPECT_IDS("smollm", "12345", T1, T2, T3, T4, T5); /* \p{N} first */
    EXPECT_IDS("default", "12345", T123, T4, T5);      /* ..., \p{N}+, then [0-9]{3} */
    EXPECT_IDS(NULL, "12345", T123, T4, T5);           /* no key: llama.cpp's default */
}

Test(tokenizer_pre, llama3_takes_whole_words_from_the_vocabulary_and_any_case_contractions) {
    EXPECT_IDS("gpt-2", "xyz", TX, TY, TZ); /* no merge makes "xyz" */
    EXPECT_IDS("llama-bpe", "xyz", TXYZ);   /* but the word is a token: Llama 3 ignores the merges */
    EXPECT_IDS("qwen2", "xyz", TX, TY, TZ);
    EXPECT_IDS("llama-bpe", "'S", TQS); /* (?i:'s): a contraction, merged */
    EXPECT_IDS("gpt-2", "'S", TQUOTE, TS); /* GPT-2's contractions are lower case: "'" and "S" split */
    EXPECT_IDS("gpt-2", " a", TSPACE_A);
    EXPECT_IDS("llama-bpe", " a", TSPACE_A);
}

/* Mistral's Tekken: digits one by one, whole words from the vocabulary, and a word ends where a
 * lower-case run meets an upper-case letter. */
Test(tokenizer_pre, tekken_splits_at_case_changes) {
    EXPECT_IDS("tekken", "12345", T1, T2, T3, T4, T5);
    EXPECT_IDS("tekken", "xyz", TXYZ);
    EXPECT_IDS("tekken", "aS", TA, TS);     /* "a" | "S" */
    EXPECT_IDS("gpt-2", "aS", TAS);         /* one word, merged */
    EXPECT_IDS("llama-bpe", "aS", TAS);     /* one word, a token as a whole */
    EXPECT_IDS("tekken", "Sa", TS, TA);     /* "Sa" stays one word (no merge joins it) */
    EXPECT_IDS("tekken", " a", TSPACE_A);
}

/* A GPT-2-style vocabulary puts BOS in front of a prompt only where its pre-tokenizer says so (Llama
 * 3's and Tekken's), as llama.cpp does, unless tokenizer.ggml.add_bos_token decides. */
Test(tokenizer_pre, bos_comes_first_where_the_pre_tokenizer_says_so) {
    static const struct {
        const char *pre;
        int add_bos; /* the key: 0 none, 1 false, 2 true */
        bool bos_first;
    } cases[] = {{"llama-bpe", 0, true}, {"tekken", 0, true},    {"gpt-2", 0, false},    {"qwen2", 0, false},
                 {"dbrx", 0, false},     {"default", 0, false},  {NULL, 0, false},       {"llama-bpe", 1, false},
                 {"gpt-2", 2, true},     {"deepseek-llm", 0, false}, {"gpt-4o", 0, false}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        vocab_spec spec = {.model = "gpt2", .tokens = PRE_TOKENS, .n_tokens = sizeof PRE_TOKENS / sizeof PRE_TOKENS[0],
                           .merges = PRE_MERGES, .n_merges = sizeof PRE_MERGES / sizeof PRE_MERGES[0], .bos = TZ,
                           .pre = cases[i].pre, .add_bos = cases[i].add_bos};
        tokenizer *tok = NULL;
        ramp_error err = {0};
        cr_assert_eq(load_spec(&spec, &tok, &err), 0, "%s", err.message);
        int ids[8];
        size_t n = encode(tok, "x", 1, true, ids, 8);
        const bool bos_first = n == 2 && ids[0] == TZ;
        cr_expect(bos_first == cases[i].bos_first && n == (cases[i].bos_first ? 2u : 1u),
                  "pre %s, add_bos_token case %d: %zu tokens, BOS first %d, expected %d", cases[i].pre ? cases[i].pre : "(none)",
                  cases[i].add_bos, n, bos_first, cases[i].bos_first);
        tokenizer_free(tok);
    }
}

/* DeepSeek's two: LLM keeps digit runs whole, Coder cuts them one by one; a letter run takes the
 * space before it. */
Test(tokenizer_pre, deepseek_cuts_digits_and_words) {
    EXPECT_IDS("deepseek-llm", "12345", T12345);               /* \p{N}+ */
    EXPECT_IDS("deepseek-coder", "12345", T1, T2, T3, T4, T5); /* \p{N} */
    EXPECT_IDS("deepseek-llm", "x a", TX, TSPACE_A);
    EXPECT_IDS("deepseek-coder", "x a", TX, TSPACE_A);
}

Test(tokenizer_pre, an_unknown_pre_tokenizer_is_refused_by_name) {
    vocab_spec spec = {.model = "gpt2", .tokens = PRE_TOKENS, .n_tokens = sizeof PRE_TOKENS / sizeof PRE_TOKENS[0],
                       .merges = PRE_MERGES, .n_merges = sizeof PRE_MERGES / sizeof PRE_MERGES[0], .bos = -1,
                       .pre = "tekken-9"};
    tokenizer *tok = NULL;
    ramp_error err = {0};
    cr_assert_eq(load_spec(&spec, &tok, &err), -1);
    cr_assert_not_null(strstr(err.message, "tokenizer.ggml.pre is \"tekken-9\""), "%s", err.message);
}
