/* kernels_avx512.c: AVX-512 VNNI kernels (arithmetic in kernels.h). None yet: the portable
 * kernels serve. */
#include "kernels_internal.h"

dot_fn kernels_avx512_for(ggml_type type) {
    (void)type;
    return NULL;
}
