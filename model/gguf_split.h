/* gguf_split.h: models split over several GGUF files, the way llama.cpp's gguf-split writes them
 * and large models are published: PREFIX-00001-of-00003.gguf, PREFIX-00002-of-00003.gguf, ...
 *
 * Every part is a whole GGUF file of its own with the keys split.no (its index from 0, uint16),
 * split.count (uint16) and split.tensors.count (the tensors of all parts, int32); the first part
 * also holds all of the model's other metadata. A model is opened by its first part's path:
 * gguf_open finds the other parts by name, and gguf_split_open_parts checks that they belong
 * together before their tensors join the first part's table. Every part stays memory-mapped where
 * it is; nothing is copied.
 */
#ifndef RAMP_GGUF_SPLIT_H
#define RAMP_GGUF_SPLIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "gguf.h"

/* What a part's file name says: "<prefix>-<part>-of-<count>.gguf", both numbers five digits and
 * part counted from 1, as in the name. */
typedef struct {
    size_t prefix_length; /* bytes of the path before "-NNNNN-of-NNNNN.gguf" */
    uint32_t part, count;
} gguf_split_name;

/* True when path ends in such a name, with 1 <= part <= count. */
bool gguf_split_name_parse(const char *path, gguf_split_name *out);

/* The path of part `part` (from 1) of `count`: the first prefix_length bytes of prefix, then
 * "-%05u-of-%05u.gguf". The caller frees it; NULL when out of memory. */
char *gguf_split_part_path(const char *prefix, size_t prefix_length, uint32_t part, uint32_t count);

/* For gguf_open: when first (opened on its own) is the first part of a split model, opens and
 * checks the other parts, keeps them in first->other_parts and moves their tensors into
 * first->tensors. Nothing to do for a model in one file. Fails when first is a later part (the
 * message names the first one), when a part is missing, unreadable or from another model, or when
 * the parts do not hold split.tensors.count distinct tensors; the caller then closes first. */
int gguf_split_open_parts(gguf_file *first, ramp_error *err);

#endif
