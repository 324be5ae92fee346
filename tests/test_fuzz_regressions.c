/* test_fuzz_regressions.c: the libFuzzer harnesses of tests/fuzz/, replayed under `make test`.
 *
 * Every input that once made a harness fail is kept in tests/fuzz/regressions/HARNESS/ (inputs
 * derived from the shared model files are rebuilt here instead: those files are never copied into
 * the repository) and is run through the same harness function, compiled here with gcc (and under
 * ASan + UBSan with SANITIZE=1). A harness aborts when a property fails, so a finding that comes
 * back fails this test. The harness files are included whole; FUZZ_REPLAY leaves out their
 * libFuzzer entry points. */
#include <criterion/criterion.h>

#define FUZZ_REPLAY
#include "fuzz/fuzz_batch_line.c"
#include "fuzz/fuzz_chat_template.c"
#include "fuzz/fuzz_encode.c"
#include "fuzz/fuzz_exit_policy.c"
#include "fuzz/fuzz_gguf.c"
#include "fuzz/fuzz_llama2c.c"
#include "fuzz/fuzz_openai.c"
#include "fuzz/fuzz_text_files.c"
#include "fuzz/fuzz_tokenizer_bin.c"

typedef int (*harness)(const uint8_t *data, size_t size);

static uint8_t *read_all(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *data = malloc(n > 0 ? (size_t)n : 1);
    *size = fread(data, 1, (size_t)(n > 0 ? n : 0), f);
    fclose(f);
    return data;
}

/* Runs every file of tests/fuzz/regressions/NAME through the harness; returns how many. */
static int replay_directory(const char *name, harness run) {
    char dir[256];
    snprintf(dir, sizeof dir, "tests/fuzz/regressions/%s", name);
    DIR *d = opendir(dir);
    if (!d) return 0;
    int count = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        if (e->d_name[0] == '.') continue;
        char path[512];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        size_t size = 0;
        uint8_t *data = read_all(path, &size);
        cr_assert_not_null(data, "%s", path);
        cr_assert_eq(run(data, size), 0, "%s", path);
        free(data);
        count++;
    }
    closedir(d);
    return count;
}

/* prefix + the shared file (or nothing when it is missing). */
static uint8_t *shared_with_prefix(const char *relative, const uint8_t *prefix, size_t prefix_size, size_t *size) {
    char path[4096];
    fuzz_shared_path(relative, path, sizeof path);
    size_t file_size;
    uint8_t *file = read_all(path, &file_size);
    if (!file) return NULL;
    uint8_t *data = malloc(prefix_size + file_size);
    if (prefix_size > 0) memcpy(data, prefix, prefix_size);
    memcpy(data + prefix_size, file, file_size);
    free(file);
    *size = prefix_size + file_size;
    return data;
}

Test(fuzz_regressions, encode) {
    /* gpt2-long-tokens: "=" x 72 ":" with GPT-2 encodes to a few long tokens; the harness's decode
     * buffer (16 bytes a token) cut them short and took it for a round-trip failure. */
    replay_directory("encode", fuzz_encode);
    /* U+2581 inside the text: SentencePiece decodes its space mark as a space (was taken for a
     * round-trip failure by the harness). */
    const uint8_t marks[] = {0, 0xe2, 0x96, 0x81, 0xe2, 0x96, 0x81, 'x'};
    for (uint8_t vocab = 0; vocab < 3; vocab++) {
        uint8_t input[sizeof marks];
        memcpy(input, marks, sizeof marks);
        input[0] = vocab;
        cr_assert_eq(fuzz_encode(input, sizeof input), 0, "vocabulary %d", vocab);
    }
}

Test(fuzz_regressions, tokenizer_bin) {
    replay_directory("tokenizer_bin", fuzz_tokenizer_bin);
    /* tok512.bin read as a vocabulary of 256: spaces fall back to the three bytes of U+2581, so a
     * text needs up to 3 tokens per byte (the harness had assumed one). */
    const uint8_t vocab256[] = {0xff, 0x00};
    size_t size;
    uint8_t *data = shared_with_prefix("models/stories260K/tok512.bin", vocab256, sizeof vocab256, &size);
    if (!data) cr_skip_test("the shared tok512.bin is missing (set RAMP_SHARED)");
    cr_assert_eq(fuzz_tokenizer_bin(data, size), 0);
    free(data);
}

Test(fuzz_regressions, gguf) {
    replay_directory("gguf", fuzz_gguf);
    /* A real model: arrays of floats with negative elements (the harness converted one to unsigned). */
    size_t size;
    uint8_t *data = shared_with_prefix("models/stories260K/stories260K-f32.gguf", NULL, 0, &size);
    if (!data) cr_skip_test("the shared stories260K-f32.gguf is missing (set RAMP_SHARED)");
    cr_assert_eq(fuzz_gguf(data, size), 0);
    free(data);
}

/* A string literal as a harness's input (without its terminating NUL): each harness's own input,
 * where no finding is kept yet, on which the harness checks its properties. */
#define TEXT_INPUT(text) (const uint8_t *)(text), sizeof(text) - 1

Test(fuzz_regressions, llama2c) {
    replay_directory("llama2c", fuzz_llama2c);
    /* a header (dim 8, hidden 16, 2 layers, 2 heads, 1 KV head, vocab 8, seq_len 4) and no weights */
    cr_assert_eq(fuzz_llama2c(TEXT_INPUT("\x08\0\0\0\x10\0\0\0\x02\0\0\0\x02\0\0\0\x01\0\0\0\x08\0\0\0\x04\0\0\0")), 0);
}

Test(fuzz_regressions, exit_policy) {
    replay_directory("exit_policy", fuzz_exit_policy);
    cr_assert_eq(fuzz_exit_policy(TEXT_INPUT("c{\"thresholds\": [0.9, 0.8], \"exit_layers\": [4, 8]}")), 0);
}

Test(fuzz_regressions, text_files) {
    replay_directory("text_files", fuzz_text_files);
    cr_assert_eq(fuzz_text_files(TEXT_INPUT("\0first\\nprompt\r\n\n\\\\ second\n")), 0);
}

Test(fuzz_regressions, openai) {
    /* nul-in-top-logprobs-key: a token text with a NUL byte became a top_logprobs key, which jansson
     * (and ramp batch's resume) cannot read back. */
    cr_assert_geq(replay_directory("openai", fuzz_openai), 1, "tests/fuzz/regressions/openai is missing");
}

Test(fuzz_regressions, batch_line) {
    replay_directory("batch_line", fuzz_batch_line);
    /* an answered line whose text holds a NUL ("\u0000"), as resume reads it */
    cr_assert_eq(fuzz_batch_line(TEXT_INPUT("{\"id\":\"batch_req_1\",\"custom_id\":\"a\",\"response\":{\"status_code\":200,"
                                                   "\"body\":{\"choices\":[{\"text\":\"a\\u0000b\"}]}},\"error\":null}")), 0);
}

Test(fuzz_regressions, chat_template) {
    replay_directory("chat_template", fuzz_chat_template);
    /* a lone user message with Unicode whitespace at both ends, through Llama-2 and Llama-3's trims */
    cr_assert_eq(fuzz_chat_template(TEXT_INPUT("\x01\x01 \xc2\xa0hello\xe2\x80\x80")), 0);
    cr_assert_eq(fuzz_chat_template(TEXT_INPUT("\x02\x01\xe3\x80\x80 hello \xc2\x85")), 0);
}
