/* test_input_file.c: files from outside read within limits (input_file.h), the prompts file on top
 * of it (cli.h), and error messages that stay one printable line whatever bytes they quote
 * (error.h). Regressions of issue 12: `-f /dev/zero` grew without bound, a read error counted as
 * the end of the file, a directory said "no prompts", and file bytes reached the terminal raw. */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "input_file.h"

static const input_limits TEXT = {.what = "test file", .max_bytes = 1 << 16, .max_line = 100, .allow_nul = false};

typedef struct {
    char path[64];
} temp_file;

static void temp_write(temp_file *t, const void *bytes, size_t n) {
    snprintf(t->path, sizeof t->path, "/tmp/ramp-test-input-XXXXXX");
    int fd = mkstemp(t->path);
    cr_assert_geq(fd, 0);
    cr_assert_eq(write(fd, bytes, n), (ssize_t)n);
    close(fd);
}

static void assert_fails(const char *path, const input_limits *limits, const char *word) {
    char *data = (char *)1;
    size_t size = 7;
    ramp_error err = {{0}};
    cr_assert_eq(input_file_read(path, limits, &data, &size, &err), -1, "%s should not be read", path);
    cr_assert_null(data);
    cr_assert_not_null(strstr(err.message, path), "message names the file: %s", err.message);
    cr_assert_not_null(strstr(err.message, word), "message says '%s': %s", word, err.message);
}

Test(input_file, reads_a_text_file_whole_and_nul_terminated) {
    temp_file t;
    temp_write(&t, "one\ntwo\r\nthree", 14);
    char *data;
    size_t size;
    ramp_error err = {{0}};
    cr_assert_eq(input_file_read(t.path, &TEXT, &data, &size, &err), 0, "%s", err.message);
    cr_assert_eq(size, 14);
    cr_assert_str_eq(data, "one\ntwo\r\nthree");
    free(data);
    unlink(t.path);
}

Test(input_file, empty_file_is_empty_text) {
    temp_file t;
    temp_write(&t, "", 0);
    char *data;
    size_t size;
    ramp_error err = {{0}};
    cr_assert_eq(input_file_read(t.path, &TEXT, &data, &size, &err), 0, "%s", err.message);
    cr_assert_eq(size, 0);
    cr_assert_str_eq(data, "");
    free(data);
    unlink(t.path);
}

Test(input_file, refuses_what_is_not_a_bounded_text_file) {
    assert_fails("/tmp", &TEXT, "is a directory");
    assert_fails("/nonexistent/ramp-test", &TEXT, "cannot open");
    /* /dev/zero: a NUL at once; with NULs allowed, the size limit (not memory) stops it. */
    assert_fails("/dev/zero", &TEXT, "NUL byte at offset 0");
    input_limits binary = TEXT;
    binary.allow_nul = true;
    binary.max_line = 0;
    assert_fails("/dev/zero", &binary, "larger than 64 KiB");
    /* Reading /proc/self/mem at offset 0 fails with EIO: a read error, never an end of file. */
    if (access("/proc/self/mem", R_OK) == 0) assert_fails("/proc/self/mem", &TEXT, "read error at byte 0");
}

Test(input_file, limits_lines_and_size_exactly) {
    char line[102];
    memset(line, 'a', sizeof line);
    temp_file t;
    temp_write(&t, line, 100); /* exactly the line limit */
    char *data;
    size_t size;
    ramp_error err = {{0}};
    cr_assert_eq(input_file_read(t.path, &TEXT, &data, &size, &err), 0, "%s", err.message);
    free(data);
    unlink(t.path);
    line[101] = '\n';
    temp_write(&t, line, 102); /* 101 bytes, then the newline */
    assert_fails(t.path, &TEXT, "line 1 is longer than 100 bytes");
    unlink(t.path);

    input_limits small = {.what = "test file", .max_bytes = 10, .max_line = 0};
    temp_write(&t, "0123456789", 10);
    cr_assert_eq(input_file_read(t.path, &small, &data, &size, &err), 0, "%s", err.message);
    free(data);
    unlink(t.path);
    temp_write(&t, "0123456789x", 11);
    assert_fails(t.path, &small, "larger than 10 bytes");
    unlink(t.path);
}

Test(input_file, nul_byte_is_located) {
    temp_file t;
    temp_write(&t, "ok\nbad\0line\n", 12);
    assert_fails(t.path, &TEXT, "NUL byte at offset 6 (line 2)");
    unlink(t.path);
}

/* ---- prompts files ---- */

Test(prompts_file, lines_unescaped_blank_lines_skipped) {
    temp_file t;
    const char text[] = "first\\nline\r\n\n\nsecond \\\\ back\n";
    temp_write(&t, text, sizeof text - 1);
    prompt_list list = {0};
    ramp_error err = {{0}};
    cr_assert_eq(prompt_list_read(&list, t.path, &err), 0, "%s", err.message);
    cr_assert_eq(list.count, 2);
    cr_assert_str_eq(list.texts[0], "first\nline");
    cr_assert_eq(list.lengths[0], 10);
    cr_assert_str_eq(list.texts[1], "second \\ back");
    prompt_list_free(&list);
    unlink(t.path);
}

static void assert_prompts_fail(const char *path, const char *word) {
    prompt_list list = {0};
    ramp_error err = {{0}};
    cr_assert_eq(prompt_list_read(&list, path, &err), -1, "%s should fail", path);
    cr_assert_not_null(strstr(err.message, path), "%s", err.message);
    cr_assert_not_null(strstr(err.message, word), "expected '%s' in: %s", word, err.message);
    prompt_list_free(&list);
}

Test(prompts_file, directory_device_and_read_error_are_errors) {
    assert_prompts_fail("/tmp", "is a directory");
    assert_prompts_fail("/dev/zero", "NUL byte");
    if (access("/proc/self/mem", R_OK) == 0) assert_prompts_fail("/proc/self/mem", "read error");
    temp_file t;
    temp_write(&t, "\n\r\n\n", 4);
    assert_prompts_fail(t.path, "no prompts");
    unlink(t.path);
}

Test(prompts_file, a_line_over_the_limit_is_refused) {
    size_t n = PROMPT_MAX_LINE + 1;
    char *long_line = malloc(n);
    cr_assert_not_null(long_line);
    memset(long_line, 'x', n);
    temp_file t;
    temp_write(&t, long_line, n);
    assert_prompts_fail(t.path, "line 1 is longer than 1 MiB");
    unlink(t.path);
    free(long_line);
}

/* ---- messages ---- */

Test(error_message, control_bytes_and_unsafe_utf8_are_escaped) {
    ramp_error err = {{0}};
    /* ESC [ 2 J (clear screen), BEL, a newline, DEL, a C1 CSI in UTF-8, a right-to-left
     * override, an invalid byte; ordinary UTF-8 stays as it is. */
    ramp_fail(&err, "found \"%s\"", "a\x1b[2J\a\nb\x7f\xc2\x9b\xe2\x80\xae\xff caf\xc3\xa9");
    cr_assert_str_eq(err.message, "found \"a\\x1b[2J\\x07\\x0ab\\x7f\\xc2\\x9b\\xe2\\x80\\xae\\xff caf\xc3\xa9\"");
    ramp_fail_prefix(&err, "%s: ", "file\x1b");
    cr_assert_eq(strncmp(err.message, "file\\x1b: found", 15), 0, "%s", err.message);
    /* Escaping never overruns the message: 1000 control bytes become as many escapes as fit. */
    char many[1001];
    memset(many, '\x01', 1000);
    many[1000] = '\0';
    ramp_fail(&err, "%s", many);
    size_t length = strlen(err.message);
    cr_assert(length < sizeof err.message && length % 4 == 0, "length %zu", length);
}

/* ---- tokenizer.bin ---- */

#include "tokenizer.h"

Test(tokenizer_file, directory_and_endless_stream_are_errors) {
    tokenizer *tok = NULL;
    ramp_error err = {{0}};
    /* A directory read as "out of memory for 9223372036854775807 bytes" (ftell on a directory). */
    cr_assert_eq(tokenizer_from_llama2c(&tok, "/tmp", 512, &err), -1);
    cr_assert_not_null(strstr(err.message, "/tmp: is a directory"), "%s", err.message);
    cr_assert_null(tok);
}
