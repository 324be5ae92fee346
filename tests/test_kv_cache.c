/* test_kv_cache.c: a slot's storage, and the pages kv_prepare maps in ahead of the positions
 * written (kv_cache.h): what a slot holds never changes, only when its memory is faulted in. */
#include <criterion/criterion.h>

#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "kv_cache.h"

enum { LAYERS = 3, KV_DIM = 96, CAPACITY = 200 };

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
    cr_assert_eq(kv_cache_init(&kv, LAYERS, KV_DIM, 2, &err), 0, "%s", err.message);
    cr_assert_eq(kv_slot_reserve(&kv, 1, CAPACITY, &err), 0, "%s", err.message);
    for (int layer = 0; layer < LAYERS; layer++) cr_assert_eq(kv.slots[1].resident[layer], 0);
    /* layer 2's keys from their second page on (each layer is 75 KB): fresh from the OS unless the
     * allocator handed back memory it had used before */
    const float *layer2 = kv_keys(&kv, 1, 2, 0) + 4096 / sizeof(float), *layer2_end = kv_keys(&kv, 1, 2, CAPACITY);
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
        cr_assert(resident(kv_keys(&kv, 1, 1, 0), kv_keys(&kv, 1, 1, CAPACITY)), "keys of layer 1");
        cr_assert(resident(kv_values(&kv, 1, 1, 0), kv_values(&kv, 1, 1, CAPACITY)), "values of layer 1");
        /* nothing wrote or prepared layer 2: a request that leaves before a layer maps none of its memory */
        if (layer2_fresh) cr_assert(!resident(layer2, layer2_end), "keys of layer 2, never prepared");
    }
    kv_slot_release(&kv, 1);
    cr_assert_null(kv.slots[1].resident, "a released slot starts over");
    kv_cache_free(&kv);
}

Test(kv_cache, prepared_slots_read_zero_and_keep_what_is_written) {
    kv_cache kv;
    ramp_error err;
    cr_assert_eq(kv_cache_init(&kv, LAYERS, KV_DIM, 1, &err), 0, "%s", err.message);
    cr_assert_eq(kv_slot_reserve(&kv, 0, CAPACITY, &err), 0, "%s", err.message);
    /* write every third position, preparing each as the forward pass does */
    for (int position = 0; position < CAPACITY; position += 3) {
        for (int layer = 0; layer < LAYERS; layer++) {
            kv_prepare(&kv, 0, layer, position);
            for (int i = 0; i < KV_DIM; i++) {
                kv_keys(&kv, 0, layer, position)[i] = (float)(position * 1000 + layer * 100 + i);
                kv_values(&kv, 0, layer, position)[i] = -(float)(position * 1000 + layer * 100 + i);
            }
        }
    }
    for (int position = 0; position < CAPACITY; position++)
        for (int layer = 0; layer < LAYERS; layer++)
            for (int i = 0; i < KV_DIM; i++) {
                float want = position % 3 ? 0.0f : (float)(position * 1000 + layer * 100 + i);
                cr_assert_eq(kv_keys(&kv, 0, layer, position)[i], want, "key %d of layer %d at %d", i, layer, position);
                cr_assert_eq(kv_values(&kv, 0, layer, position)[i], -want, "value %d of layer %d at %d", i, layer,
                             position);
            }
    kv_cache_free(&kv);
}
