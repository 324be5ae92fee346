#include "kv_cache.h"

#include "quant.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int kv_type_parse(const char *text, kv_type *out, ramp_error *err) {
    if (!strcmp(text, "f32")) *out = KV_F32;
    else if (!strcmp(text, "f16")) *out = KV_F16;
    else return ramp_fail(err, "--kv-type expects f32 or f16, got '%s'", text);
    return 0;
}

const char *kv_type_name(kv_type type) { return type == KV_F16 ? "f16" : "f32"; }

int kv_cache_init(kv_cache *kv, int n_layers, int n_kv_heads, int head_dim, kv_type type, int n_slots,
                  ramp_error *err) {
    memset(kv, 0, sizeof *kv);
    if (type != KV_F32 && type != KV_F16) return ramp_fail(err, "KV cache: unknown element type %d", (int)type);
    if (n_layers < 0 || n_kv_heads <= 0 || head_dim <= 0 || n_slots <= 0)
        return ramp_fail(err, "KV cache: invalid shape (%d layers, %d heads of %d, %d slots)", n_layers, n_kv_heads,
                         head_dim, n_slots);
    kv->slots = calloc((size_t)n_slots, sizeof *kv->slots);
    if (!kv->slots) return ramp_fail(err, "KV cache: out of memory for %d slots", n_slots);
    kv->n_layers = n_layers;
    kv->n_kv_heads = n_kv_heads;
    kv->head_dim = head_dim;
    kv->kv_dim = n_kv_heads * head_dim;
    kv->type = type;
    kv->n_slots = n_slots;
    return 0;
}

void kv_cache_free(kv_cache *kv) {
    for (int s = 0; s < kv->n_slots; s++) kv_slot_release(kv, s);
    free(kv->slots);
    memset(kv, 0, sizeof *kv);
}

/* Elements in each of a slot's key and value arrays, and bytes of its filled flags. */
static size_t slot_elements(const kv_cache *kv, int capacity) {
    size_t n = (size_t)kv->n_layers * (size_t)capacity * (size_t)kv->kv_dim;
    return n ? n : 1; /* a process that owns no layers still tracks the slot */
}
static size_t slot_flags(const kv_cache *kv, int capacity) { return (size_t)kv->n_layers * (size_t)capacity + 1; }

/* Bytes a slot of that capacity holds (bytes_in_use). */
static size_t slot_bytes(const kv_cache *kv, int capacity) {
    return 2 * slot_elements(kv, capacity) * kv_type_bytes(kv->type) + slot_flags(kv, capacity);
}

int kv_slot_reserve(kv_cache *kv, int slot, int capacity, ramp_error *err) {
    if (slot < 0 || slot >= kv->n_slots)
        return ramp_fail(err, "KV cache: slot %d out of range (0..%d)", slot, kv->n_slots - 1);
    if (kv->slots[slot].capacity != 0) return ramp_fail(err, "KV cache: slot %d is already in use", slot);
    if (capacity <= 0) return ramp_fail(err, "KV cache: capacity %d must be positive", capacity);
    const size_t n = slot_elements(kv, capacity), n_flags = slot_flags(kv, capacity);
    const size_t element_bytes = kv_type_bytes(kv->type);
    unsigned char *keys = calloc(n, element_bytes), *values = calloc(n, element_bytes);
    unsigned char *filled = calloc(n_flags, 1);
    int *resident = calloc((size_t)kv->n_layers + 1, sizeof *resident);
    if (!keys || !values || !filled || !resident) {
        free(keys);
        free(values);
        free(filled);
        free(resident);
        return ramp_fail(err, "KV cache: out of memory reserving %zu bytes for slot %d", slot_bytes(kv, capacity), slot);
    }
    kv->slots[slot] =
        (kv_slot){.capacity = capacity, .resident = resident, .keys = keys, .values = values, .filled = filled};
    kv->bytes_in_use += slot_bytes(kv, capacity);
    return 0;
}

void kv_slot_release(kv_cache *kv, int slot) {
    if (slot < 0 || slot >= kv->n_slots || kv->slots[slot].capacity == 0) return;
    kv->bytes_in_use -= slot_bytes(kv, kv->slots[slot].capacity);
    free(kv->slots[slot].keys);
    free(kv->slots[slot].values);
    free(kv->slots[slot].filled);
    free(kv->slots[slot].resident);
    kv->slots[slot] = (kv_slot){0};
}

/* MADV_POPULATE_WRITE faults the pages in without writing them. Ranges are widened to whole pages:
 * the neighbours' bytes are not touched, only mapped. A kernel without it (before Linux 5.14)
 * refuses, and the pages fault in on first write as before. */
static void map_in(const unsigned char *first, const unsigned char *end) {
#ifdef MADV_POPULATE_WRITE
    const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t from = (uintptr_t)first & ~(page - 1), to = ((uintptr_t)end + page - 1) & ~(page - 1);
    if (to > from) (void)madvise((void *)from, to - from, MADV_POPULATE_WRITE);
#else
    (void)first, (void)end;
#endif
}

/* The row of `position` in a head's keys or values (kv_head_keys, kv_head_values). */
static unsigned char *row_at(const kv_cache *kv, void *head, int position) {
    return (unsigned char *)head + (size_t)position * (size_t)kv->head_dim * kv_type_bytes(kv->type);
}

void kv_slot_make_resident(kv_cache *kv, int slot, int local_layer, int position) {
    kv_slot *s = &kv->slots[slot];
    int *resident = &s->resident[local_layer];
    if (position < *resident || position >= s->capacity) return;
    int end = position + KV_RESIDENT_AHEAD < s->capacity ? position + KV_RESIDENT_AHEAD : s->capacity;
    for (int h = 0; h < kv->n_kv_heads; h++) {
        void *keys = kv_head_keys(kv, slot, local_layer, h), *values = kv_head_values(kv, slot, local_layer, h);
        map_in(row_at(kv, keys, *resident), row_at(kv, keys, end));
        map_in(row_at(kv, values, *resident), row_at(kv, values, end));
    }
    *resident = end;
}

/* One head's row of one position: head_dim elements of the cache's type <-> floats. */
static void store_row(const kv_cache *kv, void *to, const float *from) {
    if (kv->type == KV_F16) quantize_f16(from, to, (size_t)kv->head_dim);
    else memcpy(to, from, (size_t)kv->head_dim * sizeof(float));
}

static void read_row(const kv_cache *kv, float *to, const void *from) {
    (void)dequantize(kv->type == KV_F16 ? GGML_TYPE_F16 : GGML_TYPE_F32, from, to, (size_t)kv->head_dim);
}

void kv_store(kv_cache *kv, int slot, int local_layer, int position, const float *keys, const float *values) {
    for (int h = 0; h < kv->n_kv_heads; h++) {
        const size_t first = (size_t)h * (size_t)kv->head_dim;
        store_row(kv, row_at(kv, kv_head_keys(kv, slot, local_layer, h), position), keys + first);
        store_row(kv, row_at(kv, kv_head_values(kv, slot, local_layer, h), position), values + first);
    }
    *kv_filled(kv, slot, local_layer, position) = 1;
}

void kv_read(const kv_cache *kv, int slot, int local_layer, int position, float *keys, float *values) {
    for (int h = 0; h < kv->n_kv_heads; h++) {
        const size_t first = (size_t)h * (size_t)kv->head_dim;
        if (keys) read_row(kv, keys + first, row_at(kv, kv_head_keys(kv, slot, local_layer, h), position));
        if (values) read_row(kv, values + first, row_at(kv, kv_head_values(kv, slot, local_layer, h), position));
    }
}
