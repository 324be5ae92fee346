/* test_gguf_split.c: models split over several GGUF files (gguf_split.h): part names, opening a
 * model by its first part, the checks that the parts belong together, and the file fingerprint
 * that covers every part. */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "file_identity.h"
#include "gguf.h"
#include "gguf_split.h"
#include "gguf_writer.h"
#include "synth.h"

static const synth_spec SMALL = {
    .dim = 64, .layers = 3, .heads = 4, .kv_heads = 2, .ffn = 96, .vocab = 300, .context = 128,
    .type = GGML_TYPE_Q4_0, .seed = 5,
};

/* A fresh temporary directory; its name is written into dir. */
static void temp_dir(char dir[64]) {
    snprintf(dir, 64, "/tmp/ramp-test-split-XXXXXX");
    cr_assert_not_null(mkdtemp(dir), "mkdtemp failed");
}

static void remove_dir(const char *dir) {
    char command[128];
    snprintf(command, sizeof command, "rm -rf '%s'", dir);
    cr_assert_eq(system(command), 0);
}

Test(gguf_split, part_names_are_read_as_gguf_split_writes_them) {
    gguf_split_name name;
    cr_assert(gguf_split_name_parse("models/llama-70b-q4_k_m-00002-of-00005.gguf", &name));
    cr_expect_eq(name.part, 2);
    cr_expect_eq(name.count, 5);
    cr_expect_eq(name.prefix_length, strlen("models/llama-70b-q4_k_m"));
    char *path = gguf_split_part_path("models/llama-70b-q4_k_m-00002-of-00005.gguf", name.prefix_length, 5, 5);
    cr_assert_not_null(path);
    cr_expect_str_eq(path, "models/llama-70b-q4_k_m-00005-of-00005.gguf");
    free(path);
    static const char *const not_parts[] = {
        "model.gguf",                 "model-00000-of-00003.gguf", "model-00004-of-00003.gguf",
        "model-0001-of-00003.gguf",   "model-00001-of-00003.bin",  "model-00001_of-00003.gguf",
        "model-0000a-of-00003.gguf",  "-of-.gguf",
    };
    for (size_t i = 0; i < sizeof not_parts / sizeof not_parts[0]; i++)
        cr_expect_not(gguf_split_name_parse(not_parts[i], &name), "%s is not a part's name", not_parts[i]);
}

/* The model written whole and in `parts` files into dir: whole.gguf, m-0000k-of-0000N.gguf. */
static void write_both(const char *dir, int parts) {
    ramp_error err = {{0}};
    char path[128];
    snprintf(path, sizeof path, "%s/whole.gguf", dir);
    cr_assert_eq(synth_write(&SMALL, path, &err), 0, "%s", err.message);
    synth_spec split = SMALL;
    split.parts = parts;
    snprintf(path, sizeof path, "%s/m", dir);
    cr_assert_eq(synth_write(&split, path, &err), 0, "%s", err.message);
}

Test(gguf_split, the_first_part_opens_every_tensor_of_the_model_in_place) {
    char dir[64], path[128];
    temp_dir(dir);
    write_both(dir, 3);
    ramp_error err = {{0}};
    gguf_file whole, split;
    snprintf(path, sizeof path, "%s/whole.gguf", dir);
    cr_assert_eq(gguf_open(&whole, path, &err), 0, "%s", err.message);
    snprintf(path, sizeof path, "%s/m-00001-of-00003.gguf", dir);
    cr_assert_eq(gguf_open(&split, path, &err), 0, "%s", err.message);
    cr_expect_eq(split.n_other_parts, 2);
    cr_expect_eq(split.n_tensors, whole.n_tensors);
    gguf_string arch;
    cr_assert_eq(gguf_get_string(&split, "general.architecture", &arch, &err), 0, "%s", err.message);
    cr_expect(gguf_string_equals(arch, "llama"));
    for (uint64_t i = 0; i < whole.n_tensors; i++) {
        const gguf_tensor *a = &whole.tensors[i], *b = gguf_find_tensor(&split, a->name);
        cr_assert_not_null(b, "tensor %s is missing from the parts", a->name);
        cr_expect_eq(a->type, b->type, "%s", a->name);
        cr_expect_eq(a->n_bytes, b->n_bytes, "%s", a->name);
        cr_expect_eq(memcmp(a->dims, b->dims, sizeof a->dims), 0, "%s", a->name);
        cr_expect_eq(memcmp(a->data, b->data, a->n_bytes), 0, "%s: the same bytes", a->name);
    }
    /* the last tensor lives in the last part's mapping, not in a copy */
    const gguf_tensor *last = gguf_find_tensor(&split, whole.tensors[whole.n_tensors - 1].name);
    const gguf_file *third = &split.other_parts[1];
    cr_expect((const char *)last->data >= (const char *)third->map &&
              (const char *)last->data < (const char *)third->map + third->map_size);
    gguf_close(&whole);
    gguf_close(&split);
    remove_dir(dir);
}

Test(gguf_split, a_later_or_missing_part_is_refused_by_name) {
    char dir[64], path[128], other[128];
    temp_dir(dir);
    write_both(dir, 3);
    ramp_error err = {{0}};
    gguf_file f;
    snprintf(path, sizeof path, "%s/m-00003-of-00003.gguf", dir);
    cr_expect_eq(gguf_open(&f, path, &err), -1);
    cr_expect(strstr(err.message, "is part 3 of 3 of a split model; open its first part") != NULL, "%s", err.message);
    cr_expect(strstr(err.message, "m-00001-of-00003.gguf") != NULL, "%s", err.message);
    /* one part on its own opens, with its own tensors only */
    cr_assert_eq(gguf_open_single(&f, path, &err), 0, "%s", err.message);
    cr_expect_eq(f.n_other_parts, 0);
    gguf_close(&f);

    snprintf(other, sizeof other, "%s/m-00002-of-00003.gguf", dir);
    cr_assert_eq(unlink(other), 0);
    snprintf(path, sizeof path, "%s/m-00001-of-00003.gguf", dir);
    cr_expect_eq(gguf_open(&f, path, &err), -1);
    cr_expect(strstr(err.message, "part 2 of 3 of this split model") != NULL, "%s", err.message);
    cr_expect(strstr(err.message, other) != NULL, "the message names %s: %s", other, err.message);
    file_identity identity;
    cr_expect_eq(file_identity_read(path, &identity, &err), -1);
    cr_expect(strstr(err.message, other) != NULL, "%s", err.message);
    remove_dir(dir);
}

/* Writes a one-tensor part (an f32 vector of 4 named `tensor`) with the given split keys. */
static void write_part(const char *path, uint16_t no, uint16_t count, int32_t tensors, const char *tensor) {
    ramp_error err = {{0}};
    gguf_writer *w;
    const uint64_t dims[1] = {4};
    const float values[4] = {1, 2, 3, 4};
    cr_assert_eq(gguf_writer_create(&w, path, &err), 0, "%s", err.message);
    int failed = (no == 0 && gguf_writer_add_string(w, "general.architecture", "llama", &err)) ||
                 gguf_writer_add_u16(w, "split.no", no, &err) || gguf_writer_add_u16(w, "split.count", count, &err) ||
                 gguf_writer_add_i32(w, "split.tensors.count", tensors, &err) ||
                 gguf_writer_add_tensor(w, tensor, 1, dims, GGML_TYPE_F32, &err) || gguf_writer_begin_data(w, &err) ||
                 gguf_writer_write_data(w, values, sizeof values, &err) || gguf_writer_finish(w, &err);
    cr_assert_not(failed, "%s", err.message);
    gguf_writer_free(w);
}

/* Opens dir/p-00001-of-00002.gguf, expecting failure with `expected` in the message. */
static void expect_refused(const char *dir, const char *expected) {
    char path[128];
    snprintf(path, sizeof path, "%s/p-00001-of-00002.gguf", dir);
    ramp_error err = {{0}};
    gguf_file f;
    cr_expect_eq(gguf_open(&f, path, &err), -1);
    cr_expect(strstr(err.message, expected) != NULL, "expected '%s' in: %s", expected, err.message);
}

Test(gguf_split, parts_that_do_not_belong_together_are_refused) {
    char dir[64], first[128], second[128];
    temp_dir(dir);
    snprintf(first, sizeof first, "%s/p-00001-of-00002.gguf", dir);
    snprintf(second, sizeof second, "%s/p-00002-of-00002.gguf", dir);

    write_part(first, 0, 2, 2, "a");
    write_part(second, 1, 2, 2, "a");
    expect_refused(dir, "duplicate tensor name a");

    write_part(second, 1, 2, 2, "b");
    gguf_file f;
    ramp_error err = {{0}};
    cr_assert_eq(gguf_open(&f, first, &err), 0, "a good pair opens: %s", err.message);
    cr_expect_eq(f.n_tensors, 2);
    cr_expect_not_null(gguf_find_tensor(&f, "b"));
    gguf_close(&f);

    write_part(first, 0, 2, 3, "a");
    expect_refused(dir, "split.tensors.count is 3, but its 2 parts hold 2 tensors");

    write_part(first, 0, 2, 2, "a");
    write_part(second, 0, 2, 2, "b");
    expect_refused(dir, "says it is part 1 of 2");
    write_part(second, 1, 3, 2, "b");
    expect_refused(dir, "says it is part 2 of 3");
    remove_dir(dir);
}

Test(gguf_split, the_fingerprint_covers_every_part) {
    char dir[64], path[128], last[128];
    temp_dir(dir);
    write_both(dir, 3);
    ramp_error err = {{0}};
    snprintf(path, sizeof path, "%s/m-00001-of-00003.gguf", dir);
    snprintf(last, sizeof last, "%s/m-00003-of-00003.gguf", dir);
    file_identity before, after, first_alone;
    cr_assert_eq(file_identity_read(path, &before, &err), 0, "%s", err.message);
    gguf_file f;
    cr_assert_eq(gguf_open(&f, path, &err), 0, "%s", err.message);
    uint64_t total = f.map_size + f.other_parts[0].map_size + f.other_parts[1].map_size;
    gguf_close(&f);
    cr_expect_eq(before.bytes, total, "the sizes of all three parts");
    /* the last part's last byte changes: so does the fingerprint of the model */
    FILE *out = fopen(last, "r+b");
    cr_assert_not_null(out);
    cr_assert_eq(fseek(out, -1, SEEK_END), 0);
    int byte = fgetc(out);
    cr_assert_eq(fseek(out, -1, SEEK_END), 0);
    fputc(byte ^ 0x5a, out);
    fclose(out);
    cr_assert_eq(file_identity_read(path, &after, &err), 0, "%s", err.message);
    cr_expect_neq(after.checksum, before.checksum);
    /* a one-file model's fingerprint is its own */
    snprintf(path, sizeof path, "%s/whole.gguf", dir);
    cr_assert_eq(file_identity_read(path, &first_alone, &err), 0, "%s", err.message);
    cr_expect_lt(first_alone.bytes, total);
    remove_dir(dir);
}
