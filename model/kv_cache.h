/* kv_cache.h: keys and values of the layers one process owns, per sequence slot.
 *
 * A slot holds one sequence (one request). Its storage is reserved when the sequence starts, for
 * `capacity` positions, and freed when the sequence ends, so memory follows the live requests.
 * Layout of a slot: keys[local_layer][kv_head][position][head_dim], values the same; local_layer
 * counts from the first layer this process owns. Head-major, so that attention reads each head's
 * keys and values as one contiguous run: with positions outermost a head's 64 values sat 3 KB apart
 * (dim 768), a new page almost every position, which the hardware prefetchers do not follow (12
 * layers x 2,000 positions x 12 heads read by 2 threads: 13.6-17.1 GB/s position-major, 32.6-44.7
 * head-major). Elements are fp32, or fp16 with KV_F16 (--kv-type f16, llama.cpp's default: half the
 * memory, and half the bytes a long context's attention reads per token); fp16 keys and values are
 * rounded to nearest even once, when stored.
 * `filled` records which positions hold keys/values in each layer: a token that left the pipeline
 * early has none in the layers it skipped until they are filled (or never, with --kv-fill omit),
 * and attention skips what is not filled.
 */
#ifndef RAMP_KV_CACHE_H
#define RAMP_KV_CACHE_H

#include <stddef.h>

#include "error.h"

typedef enum { KV_F32, KV_F16 } kv_type;

static inline size_t kv_type_bytes(kv_type type) { return type == KV_F16 ? 2 : 4; }

typedef struct {
    int capacity; /* positions reserved; 0 when the slot is free */
    int *resident; /* [local_layer]: positions [0, resident) of that layer have their memory mapped in */
    unsigned char *keys; /* elements of the cache's type */
    unsigned char *values;
    unsigned char *filled; /* [local_layer][position]: 1 once that position's keys/values exist */
} kv_slot;

typedef struct {
    int n_layers; /* layers owned by this process */
    int n_kv_heads, head_dim;
    int kv_dim; /* n_kv_heads * head_dim */
    kv_type type;
    int n_slots;
    kv_slot *slots;
    size_t bytes_in_use;
} kv_cache;

int kv_cache_init(kv_cache *kv, int n_layers, int n_kv_heads, int head_dim, kv_type type, int n_slots,
                  ramp_error *err);
/* "f32" or "f16" (--kv-type) */
int kv_type_parse(const char *text, kv_type *out, ramp_error *err);
const char *kv_type_name(kv_type type);
void kv_cache_free(kv_cache *kv);

/* Reserves slot for capacity positions (zeroed). Fails when the slot is out of range or taken. */
int kv_slot_reserve(kv_cache *kv, int slot, int capacity, ramp_error *err);
void kv_slot_release(kv_cache *kv, int slot);

/* Bytes from a slot's array start to position 0 of one KV head in a layer (keys and values alike). */
static inline size_t kv_head_offset(const kv_cache *kv, int slot, int local_layer, int kv_head) {
    return ((size_t)local_layer * (size_t)kv->n_kv_heads + (size_t)kv_head) * (size_t)kv->slots[slot].capacity *
           (size_t)kv->head_dim * kv_type_bytes(kv->type);
}

/* Position 0 of one KV head's keys (values) in a layer, as elements of kv->type; position p's
 * head_dim elements follow at p * head_dim. */
static inline void *kv_head_keys(const kv_cache *kv, int slot, int local_layer, int kv_head) {
    return kv->slots[slot].keys + kv_head_offset(kv, slot, local_layer, kv_head);
}

static inline void *kv_head_values(const kv_cache *kv, int slot, int local_layer, int kv_head) {
    return kv->slots[slot].values + kv_head_offset(kv, slot, local_layer, kv_head);
}

static inline unsigned char *kv_filled(const kv_cache *kv, int slot, int local_layer, int position) {
    const kv_slot *s = &kv->slots[slot];
    return s->filled + (size_t)local_layer * (size_t)s->capacity + (size_t)position;
}

/* Stores one position's keys and values (kv_dim floats each, head h at [h * head_dim]; rounded
 * to fp16 with KV_F16) and marks the position filled. Call kv_prepare for it first. */
void kv_store(kv_cache *kv, int slot, int local_layer, int position, const float *keys, const float *values);

/* The reverse: one position's keys and values as floats (either pointer may be NULL). */
void kv_read(const kv_cache *kv, int slot, int local_layer, int position, float *keys, float *values);

/* A slot's memory comes from the OS untouched, and a decode step writes each layer's keys and
 * values of a new position: without help every other step takes page faults in every layer (5 us
 * of a 768-dim layer's 130 us here). Before writing a position of a layer, call kv_prepare: when
 * the position is past that layer's resident ones, the pages of its next KV_RESIDENT_AHEAD
 * positions are mapped in by one madvise per head and array, a few times cheaper than faulting them
 * one by one. Memory still follows use, layer by layer (a request that leaves early maps nothing in the
 * layers it skips): at most KV_RESIDENT_AHEAD positions ahead of it. */
#define KV_RESIDENT_AHEAD 64
void kv_slot_make_resident(kv_cache *kv, int slot, int local_layer, int position);

static inline void kv_prepare(kv_cache *kv, int slot, int local_layer, int position) {
    if (position >= kv->slots[slot].resident[local_layer]) kv_slot_make_resident(kv, slot, local_layer, position);
}

#endif
