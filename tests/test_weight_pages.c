/* test_weight_pages.c: the pages a model file is read through (model/weight_pages.h). A file the
 * test has just written sits in the page cache in small folios, as a freshly quantized model does:
 * "on" must leave it so, "reread" must bring it to 2 MiB pages where this kernel and file system
 * can, and no mode may change a byte read. And a stage maps in its own slice, nothing it does
 * not read, however the file orders its tensors. */
#include <criterion/criterion.h>

#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "gguf_writer.h"
#include "model.h"
#include "weight_pages.h"

enum { FILE_BYTES = 24 << 20, HUGE = 2 << 20 };

static uint32_t word_at(size_t i) { return (uint32_t)(i * 2654435761u) ^ 0x5bd1e995u; }

/* Writes FILE_BYTES of a known pattern into a new file, 4 KiB per write as a download does (which
 * leaves it in small folios); returns its open descriptor. */
static int write_pattern_file(char *path) {
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0, "mkstemp %s", path);
    uint32_t *words = malloc(FILE_BYTES);
    cr_assert_not_null(words);
    for (size_t i = 0; i < FILE_BYTES / 4; i++) words[i] = word_at(i);
    for (size_t at = 0; at < FILE_BYTES; at += 4096) cr_assert_eq(write(fd, (char *)words + at, 4096), 4096);
    free(words);
    return fd;
}

static bool pattern_intact(const char *map) {
    const uint32_t *words = (const uint32_t *)map;
    for (size_t i = 0; i < FILE_BYTES / 4; i++)
        if (words[i] != word_at(i)) return false;
    return true;
}

/* The 2 MiB pieces whole inside the range brought in below: [map + 1 MiB + 5, end - 3). */
static size_t interior_bytes(void) { return (FILE_BYTES - 3) / HUGE * HUGE - HUGE; }

/* Maps the file in `mode`, brings most of it in, checks every byte; returns the bytes then in 2 MiB
 * pages of the range's whole 2 MiB pieces (-1 when the kernel cannot say). */
static long long bring_in_as(weight_pages_mode mode, const char *path, int fd, weight_file *file) {
    weight_pages_set_mode(mode);
    char *map = weight_pages_map(fd, FILE_BYTES);
    cr_assert_neq(map, MAP_FAILED);
    if (mode != WEIGHT_PAGES_OFF) cr_assert_eq((uintptr_t)map % HUGE, 0, "%s: mapping not 2 MiB-aligned", weight_pages_name(mode));
    *file = (weight_file){.path = path, .map = map, .map_size = FILE_BYTES};
    weight_pages_bring_in(file, map + (1 << 20) + 5, FILE_BYTES - (1 << 20) - 8);
    cr_assert(pattern_intact(map), "%s: the bytes read differ from the file's", weight_pages_name(mode));
    long long huge = weight_pages_count_huge(map + HUGE, interior_bytes());
    munmap(map, FILE_BYTES);
    return huge;
}

Test(weight_pages, modes_parse_by_name_and_bad_ones_are_refused) {
    ramp_error err = {0};
    weight_pages_mode mode;
    const char *names[] = {"on", "reread", "off"};
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(weight_pages_parse(names[i], &mode, &err), 0);
        cr_assert_str_eq(weight_pages_name(mode), names[i]);
    }
    cr_assert_eq(weight_pages_parse("yes", &mode, &err), -1);
    cr_assert(strstr(err.message, "--huge-pages") && strstr(err.message, "'yes'"), "message: %s", err.message);
}

Test(weight_pages, on_keeps_small_pages_and_reread_reads_them_again_into_2_mib_pages) {
    char path[] = "/tmp/ramp-test-weight-pages-XXXXXX";
    int fd = write_pattern_file(path);
    weight_file file;
    long long huge = bring_in_as(WEIGHT_PAGES_OFF, path, fd, &file);
    cr_assert(huge <= 0, "off: %lld bytes in 2 MiB pages", huge);
    huge = bring_in_as(WEIGHT_PAGES_ON, path, fd, &file);
    if (huge < 0) cr_skip_test("this kernel cannot say which pages are huge (PAGEMAP_SCAN, Linux 6.7)");
    cr_assert_eq(huge, 0, "on: a file written in small folios came back in %lld bytes of 2 MiB pages", huge);
    huge = bring_in_as(WEIGHT_PAGES_REREAD, path, fd, &file);
    const bool thp_on = weight_pages_kernel_has_huge_pages();
    const bool checked = thp_on && !file.no_large_folios && !file.storage_too_slow;
    if (checked)
        cr_assert_geq((size_t)huge, interior_bytes() * 9 / 10, "reread: only %lld of %zu bytes in 2 MiB pages", huge,
                      interior_bytes());
    else
        cr_log_info("2 MiB pages not checked: THP %s, large folios %s, storage %s", thp_on ? "on" : "off",
                    file.no_large_folios ? "no" : "yes", file.storage_too_slow ? "slow" : "fast");
    /* mapped again from 2 MiB folios: "on" keeps them */
    if (checked)
        cr_assert_geq((size_t)bring_in_as(WEIGHT_PAGES_ON, path, fd, &file), interior_bytes() * 9 / 10);
    weight_pages_set_mode(WEIGHT_PAGES_ON);
    close(fd);
    unlink(path);
}

Test(weight_pages, a_file_smaller_than_a_huge_page_maps_and_reads_the_same) {
    char path[] = "/tmp/ramp-test-weight-pages-XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    const char text[] = "a GGUF header and little else";
    cr_assert_eq(write(fd, text, sizeof text), (ssize_t)sizeof text);
    const char *map = weight_pages_map(fd, sizeof text);
    cr_assert_neq(map, MAP_FAILED);
    weight_file file = {.path = path, .map = map, .map_size = sizeof text};
    weight_pages_bring_in(&file, map, sizeof text);
    cr_assert_str_eq(map, text);
    cr_assert_eq(file.huge_bytes, 0);
    munmap((void *)map, sizeof text);
    close(fd);
    unlink(path);
}

/* A two-layer llama file (dim 256) whose 16 MiB token embedding lies between layer 0 and layer 1
 * (between_layers), or before them as llama.cpp writes it. */
enum { SLICE_DIM = 256, SLICE_VOCAB = 16384 };
static void write_two_layers(const char *path, bool between_layers) {
    ramp_error err = {0};
    gguf_writer *w;
    cr_assert_eq(gguf_writer_create(&w, path, &err), 0, "%s", err.message);
    cr_assert_eq(gguf_writer_add_string(w, "general.architecture", "llama", &err), 0);
    const struct { const char *key; uint32_t value; } sizes[] = {
        {"llama.block_count", 2}, {"llama.embedding_length", SLICE_DIM}, {"llama.feed_forward_length", SLICE_DIM},
        {"llama.attention.head_count", 4}, {"llama.context_length", 64}};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
        cr_assert_eq(gguf_writer_add_u32(w, sizes[i].key, sizes[i].value, &err), 0, "%s", err.message);
    const char *layer[] = {"attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_norm", "ffn_gate", "ffn_up", "ffn_down"};
    size_t floats = 0;
    for (int part = 0; part < 4; part++) { /* layer 0, embedding, layer 1, output norm (or embedding first) */
        int what = between_layers ? part : (part == 0 ? 1 : part == 1 ? 0 : part);
        if (what == 1) {
            uint64_t dims[2] = {SLICE_DIM, SLICE_VOCAB};
            cr_assert_eq(gguf_writer_add_tensor(w, "token_embd.weight", 2, dims, GGML_TYPE_F32, &err), 0);
            floats += (size_t)SLICE_DIM * SLICE_VOCAB;
        } else if (what == 3) {
            uint64_t dims[1] = {SLICE_DIM};
            cr_assert_eq(gguf_writer_add_tensor(w, "output_norm.weight", 1, dims, GGML_TYPE_F32, &err), 0);
            floats += SLICE_DIM;
        } else {
            for (int i = 0; i < 9; i++) {
                char name[64];
                snprintf(name, sizeof name, "blk.%d.%s.weight", what == 0 ? 0 : 1, layer[i]);
                const bool norm = strstr(layer[i], "norm") != NULL;
                uint64_t dims[2] = {SLICE_DIM, SLICE_DIM};
                cr_assert_eq(gguf_writer_add_tensor(w, name, norm ? 1 : 2, dims, GGML_TYPE_F32, &err), 0, "%s", err.message);
                floats += norm ? SLICE_DIM : (size_t)SLICE_DIM * SLICE_DIM;
            }
        }
    }
    cr_assert_eq(gguf_writer_begin_data(w, &err), 0, "%s", err.message);
    float chunk[1024];
    for (size_t i = 0; i < 1024; i++) chunk[i] = (float)(i % 7) * 0.01f;
    for (size_t done = 0; done < floats; done += 1024) {
        size_t n = floats - done < 1024 ? floats - done : 1024;
        cr_assert_eq(gguf_writer_write_data(w, chunk, n * sizeof(float), &err), 0, "%s", err.message);
    }
    cr_assert_eq(gguf_writer_finish(w, &err), 0, "%s", err.message);
    gguf_writer_free(w);
}

static void check_slice_maps_only_its_layers(bool between_layers) {
    char path[] = "/tmp/ramp-test-weight-pages-XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    close(fd);
    write_two_layers(path, between_layers);
    model m;
    ramp_error err = {0};
    model_slice layers_only = {0, 2, false, false};
    cr_assert_eq(model_load(&m, path, &layers_only, false, NULL, &err), 0, "%s", err.message);
    const gguf_tensor *embedding = gguf_find_tensor(&m.gguf, "token_embd.weight");
    cr_assert_not_null(embedding);
    long long embedding_mapped = weight_pages_count_mapped(embedding->data, embedding->n_bytes);
    long long layer1_mapped = weight_pages_count_mapped(m.layers[1].w_down.data, (size_t)SLICE_DIM * SLICE_DIM * 4);
    model_free(&m);
    unlink(path);
    if (embedding_mapped < 0) cr_skip_test("this kernel cannot say which pages are mapped (PAGEMAP_SCAN, Linux 6.7)");
    cr_assert_geq(layer1_mapped, (long long)SLICE_DIM * SLICE_DIM * 4, "layer 1's ffn_down: %lld bytes mapped at load",
                  layer1_mapped);
    /* Reading the header maps pages beside it (the kernel's fault-around, 64 KiB), and a page may
     * be shared with a neighbour at either end: little of the 16 MiB. */
    cr_assert_leq(embedding_mapped, 128 << 10, "%s: %lld bytes of the embedding mapped for a slice without it",
                  between_layers ? "embedding between the layers" : "embedding first", embedding_mapped);
}

Test(weight_pages, a_slice_maps_in_its_layers_and_not_an_embedding_lying_between_them) {
    check_slice_maps_only_its_layers(true);
}

Test(weight_pages, a_slice_maps_in_its_layers_and_not_the_embedding_before_them) {
    check_slice_maps_only_its_layers(false);
}
