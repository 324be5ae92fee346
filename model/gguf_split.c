/* gguf_split.c: models split over several GGUF files (contract in gguf_split.h). */
#include "gguf_split.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* "-00001-of-00003.gguf": a dash, five digits, "-of-", five digits, ".gguf". */
enum { SUFFIX_LENGTH = 20 };

static bool five_digits(const char *s, uint32_t *out) {
    uint32_t value = 0;
    for (int i = 0; i < 5; i++) {
        if (s[i] < '0' || s[i] > '9') return false;
        value = value * 10 + (uint32_t)(s[i] - '0');
    }
    *out = value;
    return true;
}

bool gguf_split_name_parse(const char *path, gguf_split_name *out) {
    size_t length = strlen(path);
    if (length < SUFFIX_LENGTH) return false;
    const char *suffix = path + length - SUFFIX_LENGTH;
    uint32_t part, count;
    if (suffix[0] != '-' || memcmp(suffix + 6, "-of-", 4) != 0 || memcmp(suffix + 15, ".gguf", 5) != 0 ||
        !five_digits(suffix + 1, &part) || !five_digits(suffix + 10, &count) || part < 1 || part > count)
        return false;
    *out = (gguf_split_name){.prefix_length = length - SUFFIX_LENGTH, .part = part, .count = count};
    return true;
}

char *gguf_split_part_path(const char *prefix, size_t prefix_length, uint32_t part, uint32_t count) {
    size_t size = prefix_length + SUFFIX_LENGTH + 16; /* room for numbers beyond five digits */
    char *path = malloc(size);
    if (path != NULL)
        snprintf(path, size, "%.*s-%05" PRIu32 "-of-%05" PRIu32 ".gguf", (int)prefix_length, prefix, part, count);
    return path;
}

/* A file's split.no and split.count; 0 and 1 for a file without them. */
static int read_split_keys(const gguf_file *f, uint32_t *no, uint32_t *count, ramp_error *err) {
    *no = 0;
    *count = 1;
    if (gguf_find(f, "split.count") && gguf_get_u32(f, "split.count", count, err)) return -1;
    if (gguf_find(f, "split.no") && gguf_get_u32(f, "split.no", no, err)) return -1;
    if (*count == 0) return ramp_fail(err, "%s: split.count is 0, expected 1 or more", f->path);
    if (*no >= *count)
        return ramp_fail(err, "%s: split.no is %" PRIu32 ", expected less than split.count %" PRIu32, f->path, *no,
                         *count);
    return 0;
}

static int refuse_later_part(const gguf_file *f, uint32_t no, uint32_t count, ramp_error *err) {
    gguf_split_name name;
    char *first = gguf_split_name_parse(f->path, &name) ? gguf_split_part_path(f->path, name.prefix_length, 1, count)
                                                        : NULL;
    if (first != NULL) {
        ramp_fail(err, "%s: is part %" PRIu32 " of %" PRIu32 " of a split model; open its first part, %s", f->path,
                  no + 1, count, first);
        free(first);
        return -1;
    }
    return ramp_fail(err, "%s: is part %" PRIu32 " of %" PRIu32 " of a split model; open its first part (split.no 0)",
                     f->path, no + 1, count);
}

/* Opens part `index` (from 0) of `count` whose path starts with first's prefix, and checks that
 * it says it is that part. */
static int open_part(const gguf_file *first, const gguf_split_name *name, uint32_t index, uint32_t count,
                     gguf_file *part, ramp_error *err) {
    char *path = gguf_split_part_path(first->path, name->prefix_length, index + 1, count);
    if (path == NULL) return ramp_fail(err, "%s: out of memory", first->path);
    ramp_error why;
    int rc = 0;
    uint32_t no, its_count;
    if (gguf_open_single(part, path, &why) || read_split_keys(part, &no, &its_count, &why))
        rc = ramp_fail(err, "%s: part %" PRIu32 " of %" PRIu32 " of this split model: %s", first->path, index + 1,
                       count, why.message);
    else if (no != index || its_count != count)
        rc = ramp_fail(err, "%s: says it is part %" PRIu32 " of %" PRIu32 " (split.no %" PRIu32 ", split.count %" PRIu32
                            "), but it is named as part %" PRIu32 " of %" PRIu32 " of %s",
                       path, no + 1, its_count, no, its_count, index + 1, count, first->path);
    free(path);
    return rc;
}

/* Moves every part's tensors to the end of first's table (the names and data stay where they are). */
static int adopt_tensors(gguf_file *first, gguf_file *parts, uint32_t n_parts, uint64_t total, ramp_error *err) {
    if (total == first->n_tensors) return 0;
    gguf_tensor *all = realloc(first->tensors, total * sizeof *all);
    if (all == NULL) return ramp_fail(err, "%s: out of memory for %" PRIu64 " tensors", first->path, total);
    first->tensors = all;
    for (uint32_t i = 0; i < n_parts; i++) {
        memcpy(all + first->n_tensors, parts[i].tensors, parts[i].n_tensors * sizeof *all);
        first->n_tensors += parts[i].n_tensors;
        free(parts[i].tensors);
        parts[i].tensors = NULL;
        parts[i].n_tensors = 0;
    }
    return 0;
}

int gguf_split_open_parts(gguf_file *first, ramp_error *err) {
    uint32_t no, count;
    if (read_split_keys(first, &no, &count, err)) return -1;
    if (no != 0) return refuse_later_part(first, no, count, err);
    if (count == 1) return 0;
    gguf_split_name name;
    if (!gguf_split_name_parse(first->path, &name) || name.part != 1 || name.count != count)
        return ramp_fail(err, "%s: is the first of %" PRIu32 " parts of a split model, but its name does not end in "
                              "-00001-of-%05" PRIu32 ".gguf, which is how ramp (like llama.cpp) finds the other parts: "
                              "keep the names gguf-split gave them",
                         first->path, count, count);
    gguf_file *parts = calloc(count - 1, sizeof *parts);
    if (parts == NULL) return ramp_fail(err, "%s: out of memory for %" PRIu32 " parts", first->path, count);
    /* From here on the parts belong to first: gguf_close closes them, opened or not (zeroed). */
    first->other_parts = parts;
    first->n_other_parts = count - 1;
    uint64_t total = first->n_tensors;
    for (uint32_t i = 1; i < count; i++) {
        if (open_part(first, &name, i, count, &parts[i - 1], err)) return -1;
        total += parts[i - 1].n_tensors;
    }
    if (gguf_find(first, "split.tensors.count")) {
        uint32_t expected;
        if (gguf_get_u32(first, "split.tensors.count", &expected, err)) return -1;
        if (expected != total)
            return ramp_fail(err, "%s: split.tensors.count is %" PRIu32 ", but its %" PRIu32 " parts hold %" PRIu64
                                  " tensors",
                             first->path, expected, count, total);
    }
    if (adopt_tensors(first, parts, count - 1, total, err)) return -1;
    return gguf_reject_duplicate_tensors(first, err);
}
