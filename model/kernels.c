/* kernels.c: activation conversion and the choice of kernel implementation (contract in
 * kernels.h). */
#include "kernels.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <cpuid.h>
#endif

#include <float.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "kernels_internal.h"

act_kind act_kind_of(ggml_type type) {
    switch (type) {
    case GGML_TYPE_Q4_0: case GGML_TYPE_Q4_1: case GGML_TYPE_Q5_0: case GGML_TYPE_Q5_1: case GGML_TYPE_Q8_0:
    case GGML_TYPE_IQ4_NL:
        return ACT_Q8_32;
    case GGML_TYPE_Q2_K: case GGML_TYPE_Q3_K: case GGML_TYPE_Q4_K: case GGML_TYPE_Q5_K: case GGML_TYPE_Q6_K:
    case GGML_TYPE_IQ4_XS:
        return ACT_Q8_256;
    default:
        return ACT_F32;
    }
}

static size_t round64(size_t bytes) { return (bytes + 63) / 64 * 64; }

size_t act_row_bytes(act_kind kind, int n) {
    switch (kind) {
    case ACT_Q8_32: return round64((size_t)act_blocks16(n) * (32 + 4 + 4 + 4));
    case ACT_Q8_256: return round64((size_t)n + 4 * (size_t)(n / 256) + 2 * (size_t)(n / 16));
    default: return round64((size_t)act_pad16(n) * sizeof(float));
    }
}

/* Scale and quants of one block of count values: d = amax / 127 and q = round(x * 127 / amax),
 * ties to even. A block too small for 127 / amax to be finite is computed in double; a value
 * that is not finite becomes 0 (the conversion to int would otherwise be undefined). */
float quantize_block_portable(const float *x, int count, int8_t *q) {
    float amax = 0.0f;
    for (int i = 0; i < count; i++) { /* a comparison, not fmaxf: inlined (fmaxf was a libm call) */
        const float a = fabsf(x[i]);
        amax = a > amax ? a : amax;
    }
    if (!(amax > 0.0f) || !(amax <= FLT_MAX)) {
        memset(q, 0, (size_t)count);
        return 0.0f;
    }
    const float inverse = 127.0f / amax;
    if (inverse <= FLT_MAX) {
        for (int i = 0; i < count; i++) {
            float v = x[i] * inverse;
            v = v > 127.0f ? 127.0f : v < -127.0f ? -127.0f : v;
            q[i] = (int8_t)(v == v ? (int)nearbyintf(v) : 0);
        }
    } else {
        for (int i = 0; i < count; i++) {
            double v = (double)x[i] * 127.0 / (double)amax;
            v = v > 127.0 ? 127.0 : v < -127.0 ? -127.0 : v;
            q[i] = (int8_t)(v == v ? (int)nearbyint(v) : 0);
        }
    }
    return amax / 127.0f;
}

static void act_quantize_with(block_quantizer quantize_block, act_kind kind, const float *x, int n, void *dst) {
    char *p = dst;
    switch (kind) {
    case ACT_Q8_32: {
        const int nb = n / 32, nb16 = act_blocks16(n);
        int8_t *q = (int8_t *)p;
        float *d = (float *)(p + 32 * nb16), *dsum = (float *)(p + 36 * nb16);
        int32_t *sum = (int32_t *)(p + 40 * nb16);
        memset(q + 32 * nb, 0, (size_t)(32 * (nb16 - nb))); /* the padding blocks */
        for (int b = 0; b < nb; b++) {
            int8_t *block = q + act_q8_32_index(b, 0); /* natural order: the block's 32 bytes in a row */
            d[b] = quantize_block(x + 32 * b, 32, block);
            int s = 0;
            for (int i = 0; i < 32; i++) s += block[i];
            sum[b] = s;
            dsum[b] = d[b] * (float)s;
        }
        for (int b = nb; b < nb16; b++) d[b] = dsum[b] = 0.0f, sum[b] = 0;
        break;
    }
    case ACT_Q8_256: {
        const int ns = n / 256;
        int8_t *q = (int8_t *)p;
        float *d = (float *)(p + n);
        int16_t *bsum = (int16_t *)(p + n + 4 * ns);
        for (int s = 0; s < ns; s++) d[s] = quantize_block(x + 256 * s, 256, q + 256 * s);
        for (int g = 0; g < n / 16; g++) {
            int s = 0;
            for (int i = 0; i < 16; i++) s += q[16 * g + i];
            bsum[g] = (int16_t)s;
        }
        break;
    }
    default: {
        float *out = (float *)p;
        memcpy(out, x, (size_t)n * sizeof(float));
        for (int i = n; i < act_pad16(n); i++) out[i] = 0.0f;
        break;
    }
    }
}

/* ---- dispatch ------------------------------------------------------------------------------------ */

static block_quantizer quantizer_for(kernel_level level) {
    block_quantizer fast = level >= KERNELS_AVX512 ? kernels_avx512_quantizer() : NULL;
    return fast ? fast : quantize_block_portable;
}

void act_quantize(act_kind kind, const float *x, int n, void *dst) {
    act_quantize_with(quantizer_for(kernels_level()), kind, x, n, dst);
}

bool act_quantize_at(kernel_level level, act_kind kind, const float *x, int n, void *dst) {
    if (!kernel_level_available(level)) return false;
    act_quantize_with(quantizer_for(level), kind, x, n, dst);
    return true;
}

static const char *const LEVEL_NAMES[KERNEL_LEVELS] = {"portable", "avx2", "avx512", "avx512-vbmi2"};

const char *kernel_level_name(kernel_level level) {
    return level >= 0 && level < KERNEL_LEVELS ? LEVEL_NAMES[level] : "unknown";
}

/* What the CPU offers. The AVX-512 kernels use 512-bit integer and float instructions (F, BW, VL,
 * DQ) with VNNI (vpdpbusd); the AVX2 ones need FMA and F16C too. A build for another architecture
 * has only the portable kernels. */
#if defined(__x86_64__) && defined(__GNUC__)
/* F16C from CPUID leaf 1 (ECX bit 29): clang 14's __builtin_cpu_supports does not know "f16c". */
static bool cpu_has_f16c(void) {
    unsigned int eax, ebx, ecx, edx;
    return __get_cpuid(1, &eax, &ebx, &ecx, &edx) && (ecx & (1u << 29));
}
#endif

static bool cpu_offers(kernel_level level) {
    switch (level) {
    case KERNELS_PORTABLE: return true;
#if defined(__x86_64__) && defined(__GNUC__)
    case KERNELS_AVX2:
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && cpu_has_f16c();
    case KERNELS_AVX512:
        __builtin_cpu_init();
        return cpu_offers(KERNELS_AVX2) && __builtin_cpu_supports("avx512f") &&
               __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
               __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vnni");
    case KERNELS_AVX512_VBMI2:
        __builtin_cpu_init();
        return cpu_offers(KERNELS_AVX512) && __builtin_cpu_supports("avx512vbmi2");
#endif
    default: return false;
    }
}

/* Process configuration, set once: what the CPU offers (CPUID traps to the hypervisor in a
 * virtual machine, microseconds a call) and the chosen level. */
static bool offered[KERNEL_LEVELS];
static kernel_level chosen_level;
static pthread_once_t choose_once = PTHREAD_ONCE_INIT;

static void choose_level(void) {
    for (int level = 0; level < KERNEL_LEVELS; level++) offered[level] = cpu_offers((kernel_level)level);
    kernel_level best = KERNELS_PORTABLE;
    for (int level = KERNEL_LEVELS - 1; level > 0; level--)
        if (offered[level]) {
            best = (kernel_level)level;
            break;
        }
    const char *wanted = getenv("RAMP_KERNELS");
    if (wanted && *wanted)
        for (int level = 0; level < (int)best; level++)
            if (strcmp(wanted, LEVEL_NAMES[level]) == 0) best = (kernel_level)level;
    chosen_level = best;
}

kernel_level kernels_level(void) {
    pthread_once(&choose_once, choose_level);
    return chosen_level;
}

bool kernel_level_available(kernel_level level) {
    pthread_once(&choose_once, choose_level);
    return level >= 0 && level < KERNEL_LEVELS && offered[level];
}

static dot_fn kernel_for(kernel_level level, ggml_type type) {
    dot_fn fn = NULL;
    if (level >= KERNELS_AVX512) fn = kernels_avx512_for(type, level == KERNELS_AVX512_VBMI2);
    if (!fn && level >= KERNELS_AVX2) fn = kernels_avx2_for(type);
    if (!fn) fn = kernels_portable_for(type);
    return fn;
}

/* One tile at a level: a wide kernel takes more than KERNEL_NARROW_A activation rows at once, the
 * others get them KERNEL_NARROW_A at a time (the numbers are the same either way). */
static void dot_at(kernel_level level, dot_fn fn, ggml_type type, int n, const void *w_rows, size_t w_stride, int nw,
                   const void *act, size_t act_stride, int na, float *out, size_t out_stride) {
    if (na > KERNEL_NARROW_A && level >= KERNELS_AVX512) {
        dot_fn wide = kernels_avx512_wide_for(type);
        if (wide) {
            wide(n, w_rows, w_stride, nw, act, act_stride, na, out, out_stride);
            return;
        }
    }
    for (int a = 0; a < na; a += KERNEL_NARROW_A)
        fn(n, w_rows, w_stride, nw, (const char *)act + (size_t)a * act_stride, act_stride,
           na - a < KERNEL_NARROW_A ? na - a : KERNEL_NARROW_A, out + (size_t)a * out_stride, out_stride);
}

bool kernel_dot_at(kernel_level level, ggml_type type, int n, const void *w_rows, size_t w_stride, int nw,
                   const void *act, size_t act_stride, int na, float *out, size_t out_stride) {
    if (!kernel_level_available(level)) return false;
    dot_fn fn = kernel_for(level, type);
    if (!fn) return false;
    dot_at(level, fn, type, n, w_rows, w_stride, nw, act, act_stride, na, out, out_stride);
    return true;
}

void kernel_dot(ggml_type type, int n, const void *w_rows, size_t w_stride, int nw, const void *act,
                size_t act_stride, int na, float *out, size_t out_stride) {
    const kernel_level level = kernels_level();
    dot_at(level, kernel_for(level, type), type, n, w_rows, w_stride, nw, act, act_stride, na, out, out_stride);
}
