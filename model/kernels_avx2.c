/* kernels_avx2.c: AVX2 + FMA + F16C kernels (arithmetic in kernels.h). None yet: the portable
 * kernels serve. */
#include "kernels_internal.h"

dot_fn kernels_avx2_for(ggml_type type) {
    (void)type;
    return NULL;
}
