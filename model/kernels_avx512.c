/* kernels_avx512.c: the x86 kernels with AVX-512 VNNI integer products (vpdpbusd, vpdpwssd on
 * 256-bit vectors; kernels_x86.inc; arithmetic in kernels.h). Compiled for that target whatever
 * the build flags, and only called when the CPU has it (kernels.c). */
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
#pragma GCC target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")
#define KX(name) name##_avx512
#define KX_VNNI 1
#include "kernels_x86.inc"
#pragma GCC pop_options

dot_fn kernels_avx512_for(ggml_type type) { return kernel_table_avx512(type); }
#else
dot_fn kernels_avx512_for(ggml_type type) {
    (void)type;
    return NULL;
}
#endif
