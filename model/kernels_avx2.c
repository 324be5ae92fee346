/* kernels_avx2.c: the x86 kernels for AVX2 + FMA + F16C (kernels_x86.inc; arithmetic in
 * kernels.h). Compiled for that target whatever the build flags, and only called when the CPU has
 * it (kernels.c). */
#include "kernels_internal.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#include <math.h>
#include <stdbool.h>
#include <string.h>

#include "quant.h"

#pragma GCC push_options
/* Optimized even in the -O1 sanitizer build: at -O1 the accumulator arrays of the tiles live on
 * the stack, and the kernels run several times slower (the end-to-end tests then time out). */
#pragma GCC optimize("O3")
#pragma GCC target("avx2,fma,f16c")
#ifdef __clang__ /* clang ignores GCC's target pragma (the fuzz build uses clang) */
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c"))), apply_to = function)
#endif
#define KX(name) name##_avx2
#define KX_VNNI 0
#include "kernels_x86.inc"
#ifdef __clang__
#pragma clang attribute pop
#endif
#pragma GCC pop_options

dot_fn kernels_avx2_for(ggml_type type) { return kernel_table_avx2(type); }
#else
dot_fn kernels_avx2_for(ggml_type type) {
    (void)type;
    return NULL;
}
#endif
