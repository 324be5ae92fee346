/* test_kv_cache.c: a slot's storage, and the pages kv_prepare maps in ahead of the positions
 * written (kv_cache.h): what a slot holds never changes, only when its memory is faulted in. */
#include <criterion/criterion.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "kv_cache.h"
#include "quant.h"

enum { LAYERS = 3, KV_HEADS = 3, HEAD_DIM = 32, KV_DIM = KV_HEADS * HEAD_DIM, CAPACITY = 200 };

/* True when every page of [first, end) is resident (mincore). */
static bool resident(const float *first, const float *end) {
    const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t from = (uintptr_t)first & ~(page - 1), to = ((uintptr_t)end + page - 1) & ~(page - 1);
    size_t n = (to - from) / page;
    unsigned char *in_core = malloc(n ? n : 1);
    cr_assert_not_null(in_core);
    cr_assert_eq(mincore((void *)from, to - from, in_core), 0);
    bool all = true;
    for (size_t i = 0; i < n; i++) all = all && (in_core[i] & 1);
    free(in_core);
    return all;
}

/* Whether this kernel maps pages in on request (Linux 5.14+); without it kv_prepare only counts. */
static bool kernel_populates(void) {
#ifdef MADV_POPULATE_WRITE
    const size_t page = (size_t)sysconf(_SC_PAGESIZE);
    void *probe = mmap(NULL, page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    bool ok = probe != MAP_FAILED && madvise(probe, page, MADV_POPULATE_WRITE) == 0;
    if (probe != MAP_FAILED) munmap(probe, page);
    return ok;
#else
    return false;
#endif
}

Test(kv_cache, prepare_maps_a_layers_positions_ahead_up_to_the_capacity) {
    kv_cache kv;
    ramp_error err;
    cr_assert_eq(kv_cache_init(&kv, LAYERS, KV_HEADS, HEAD_DIM, KV_F32, 2, &err), 0, "%s", err.message);
    cr_assert_eq(kv_slot_reserve(&kv, 1, CAPACITY, &err), 0, "%s", err.message);
    for (int layer = 0; layer < LAYERS; layer++) cr_assert_eq(kv.slots[1].resident[layer], 0);
    /* layer 2's keys from their second page on (each layer is 75 KB): fresh from the OS unless the
     * allocator handed back memory it had used before */
    const float *layer2 = (const float *)kv_head_keys(&kv, 1, 2, 0) + 4096 / sizeof(float);
    const float *layer2_end = (const float *)kv_head_keys(&kv, 1, 2, KV_HEADS - 1) + CAPACITY * HEAD_DIM;
    const bool layer2_fresh = !resident(layer2, layer2_end);
    kv_prepare(&kv, 1, 1, 0);
    cr_assert_eq(kv.slots[1].resident[1], KV_RESIDENT_AHEAD);
    cr_assert_eq(kv.slots[1].resident[0], 0, "other layers are left alone");
    cr_assert_eq(kv.slots[1].resident[2], 0, "other layers are left alone");
    kv_prepare(&kv, 1, 1, KV_RESIDENT_AHEAD - 1); /* already resident: nothing to do */
    cr_assert_eq(kv.slots[1].resident[1], KV_RESIDENT_AHEAD);
    kv_prepare(&kv, 1, 1, 130);
    cr_assert_eq(kv.slots[1].resident[1], 130 + KV_RESIDENT_AHEAD);
    kv_prepare(&kv, 1, 1, CAPACITY - 1);
    cr_assert_eq(kv.slots[1].resident[1], CAPACITY, "never past the capacity");
    if (kernel_populates()) {
        for (int h = 0; h < KV_HEADS; h++) {
            const float *keys = kv_head_keys(&kv, 1, 1, h), *values = kv_head_values(&kv, 1, 1, h);
            cr_assert(resident(keys, keys + CAPACITY * HEAD_DIM), "keys of layer 1, head %d", h);
            cr_assert(resident(values, values + CAPACITY * HEAD_DIM), "values of layer 1, head %d", h);
        }
        /* nothing wrote or prepared layer 2: a request that leaves before a layer maps none of its memory */
        if (layer2_fresh) cr_assert(!resident(layer2, layer2_end), "keys of layer 2, never prepared");
    }
    kv_slot_release(&kv, 1);
    cr_assert_null(kv.slots[1].resident, "a released slot starts over");
    kv_cache_free(&kv);
}

/* Every third position stored as the forward pass stores it (kv_prepare, then kv_store of a whole
 * position); each head then reads its own values back in one run per head, position after position,
 * zero where nothing was stored. */
Test(kv_cache, stored_positions_read_back_by_head_and_the_rest_read_zero) {
    kv_cache kv;
    ramp_error err;
    cr_assert_eq(kv_cache_init(&kv, LAYERS, KV_HEADS, HEAD_DIM, KV_F32, 1, &err), 0, "%s", err.message);
    cr_assert_eq(kv.kv_dim, KV_DIM);
    cr_assert_eq(kv_slot_reserve(&kv, 0, CAPACITY, &err), 0, "%s", err.message);
    float keys[KV_DIM], values[KV_DIM];
    for (int position = 0; position < CAPACITY; position += 3) {
        for (int layer = 0; layer < LAYERS; layer++) {
            kv_prepare(&kv, 0, layer, position);
            for (int i = 0; i < KV_DIM; i++) {
                keys[i] = (float)(position * 1000 + layer * 100 + i);
                values[i] = -keys[i];
            }
            kv_store(&kv, 0, layer, position, keys, values);
        }
    }
    for (int layer = 0; layer < LAYERS; layer++)
        for (int h = 0; h < KV_HEADS; h++) {
            const float *head_keys = kv_head_keys(&kv, 0, layer, h), *head_values = kv_head_values(&kv, 0, layer, h);
            for (int position = 0; position < CAPACITY; position++) {
                cr_assert_eq(*kv_filled(&kv, 0, layer, position), position % 3 == 0, "filled flag at %d", position);
                for (int i = 0; i < HEAD_DIM; i++) {
                    float want = position % 3 ? 0.0f : (float)(position * 1000 + layer * 100 + h * HEAD_DIM + i);
                    cr_assert_eq(head_keys[position * HEAD_DIM + i], want, "key %d of head %d, layer %d at %d", i, h,
                                 layer, position);
                    cr_assert_eq(head_values[position * HEAD_DIM + i], -want, "value %d of head %d, layer %d at %d", i,
                                 h, layer, position);
                }
            }
        }
    kv_cache_free(&kv);
}

Test(kv_cache, refuses_a_shape_without_heads) {
    kv_cache kv;
    ramp_error err;
    cr_assert_neq(kv_cache_init(&kv, LAYERS, 0, HEAD_DIM, KV_F32, 1, &err), 0);
    cr_assert(strstr(err.message, "0 heads of 32"), "%s", err.message);
    cr_assert_neq(kv_cache_init(&kv, LAYERS, KV_HEADS, 0, KV_F32, 1, &err), 0);
    cr_assert_neq(kv_cache_init(&kv, LAYERS, KV_HEADS, HEAD_DIM, (kv_type)7, 1, &err), 0);
    cr_assert(strstr(err.message, "unknown element type 7"), "%s", err.message);
}

Test(kv_cache, kv_type_names_parse_back_and_others_are_refused) {
    kv_type t;
    ramp_error err;
    cr_assert_eq(kv_type_parse("f16", &t, &err), 0);
    cr_assert_eq(t, KV_F16);
    cr_assert_str_eq(kv_type_name(t), "f16");
    cr_assert_eq(kv_type_parse("f32", &t, &err), 0);
    cr_assert_eq(t, KV_F32);
    cr_assert_neq(kv_type_parse("F16", &t, &err), 0);
    cr_assert(strstr(err.message, "expects f32 or f16, got 'F16'"), "%s", err.message);
}

/* An fp16 cache holds each value as fp32_to_fp16 rounds it (nearest, ties to even), whether the
 * build converts with F16C or in C, and takes half the memory of an fp32 one. The values include
 * ties, the largest finite half, subnormals, zero signs and a value past the half range. */
Test(kv_cache, an_fp16_cache_stores_values_rounded_to_nearest_even_in_half_the_bytes) {
    kv_cache f16, f32;
    ramp_error err;
    cr_assert_eq(kv_cache_init(&f16, LAYERS, KV_HEADS, HEAD_DIM, KV_F16, 1, &err), 0, "%s", err.message);
    cr_assert_eq(kv_cache_init(&f32, LAYERS, KV_HEADS, HEAD_DIM, KV_F32, 1, &err), 0, "%s", err.message);
    cr_assert_eq(kv_slot_reserve(&f16, 0, CAPACITY, &err), 0, "%s", err.message);
    cr_assert_eq(kv_slot_reserve(&f32, 0, CAPACITY, &err), 0, "%s", err.message);
    const size_t flags = (size_t)LAYERS * CAPACITY + 1;
    cr_assert_eq(2 * (f16.bytes_in_use - flags), f32.bytes_in_use - flags, "%zu against %zu bytes", f16.bytes_in_use,
                 f32.bytes_in_use);
    const float special[] = {1.0f + 1.0f / 2048,        /* a tie: rounds down to even 1.0 */
                             1.0f + 3.0f / 2048,        /* a tie: rounds up to even */
                             65504.0f, -65504.0f, 1e-7f, -3e-8f, 6.0e-5f, 0.0f, -0.0f, 70000.0f, 0.33333334f};
    const int n_special = (int)(sizeof special / sizeof special[0]);
    float keys[KV_DIM], values[KV_DIM], got_keys[KV_DIM], got_values[KV_DIM];
    unsigned seed = 12345;
    for (int position = 0; position < 40; position++) {
        for (int i = 0; i < KV_DIM; i++) {
            seed = seed * 1103515245u + 12345u;
            const float random = ((float)(seed >> 8) / (float)(1u << 24) - 0.5f) * (float)(1 << (position % 12));
            keys[i] = i < n_special && position == 0 ? special[i] : random;
            values[i] = -keys[i] * 0.75f;
        }
        kv_prepare(&f16, 0, 1, position);
        kv_store(&f16, 0, 1, position, keys, values);
        kv_read(&f16, 0, 1, position, got_keys, got_values);
        for (int i = 0; i < KV_DIM; i++) {
            const float want_key = fp16_to_fp32(fp32_to_fp16(keys[i])), want_value = fp16_to_fp32(fp32_to_fp16(values[i]));
            cr_assert(memcmp(&got_keys[i], &want_key, sizeof want_key) == 0, "key %d at %d: %a stored as %a, want %a", i,
                      position, (double)keys[i], (double)got_keys[i], (double)want_key);
            cr_assert(memcmp(&got_values[i], &want_value, sizeof want_value) == 0, "value %d at %d: %a stored as %a",
                      i, position, (double)values[i], (double)got_values[i]);
        }
    }
    kv_read(&f16, 0, 1, 0, got_keys, NULL);
    cr_assert_eq(got_keys[0], 1.0f, "a tie rounds to the even half");
    cr_assert_eq(got_keys[1], 1.0f + 4.0f / 2048);
    cr_assert_eq(got_keys[2], 65504.0f);
    kv_cache_free(&f16);
    kv_cache_free(&f32);
}
