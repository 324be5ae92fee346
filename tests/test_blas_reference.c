/* test_blas_reference.c: ramp's matrix products against OpenBLAS, an implementation we did not write.
 *
 * ramp computes every product with its own kernels (matmul.h), because OpenBLAS's sgemm sums in an
 * order that depends on the shape of the batch and the thread count, and ramp promises that a row
 * gets the same bits alone or in a batch. OpenBLAS stays the independent check of the values: for
 * weights in F32, F16, Q8_0 and Q4_0, out = x . W^T from matmul_weights must match cblas_sgemm on
 * the same weights dequantized to fp32, within the error both sides may make:
 *  - fp32 rounding of a sum of n products, in any order: n * 2^-23 * sum |w_i x_i| per side;
 *  - for the 8-bit types, the activation row is quantized to blocks of 32 with scale d = max|x| / 127,
 *    so each activation may move by d / 2: sum |w_i| * d_block(i) / 2.
 * Shapes are a layer's (768 inputs, 37 rows, 2,304 outputs), on random data with a few large values.
 */
#include <cblas.h>
#include <criterion/criterion.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "matmul.h"
#include "quant.h"

enum { ROWS = 37, IN = 768, OUT = 2304 };

static uint64_t rng_state = 7;
static float uniform(void) { /* [-1, 1) */
    rng_state = rng_state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)(uint32_t)(rng_state >> 33) / 2147483648.0f - 1.0f;
}
static float value(void) { return uniform() * (uniform() > 0.98f ? 40.0f : 1.0f); }

/* Stores the fp32 weights w [OUT][IN] as type; returns the stored bytes (caller frees). */
static void *store(ggml_type type, const float *w, size_t *row_bytes) {
    *row_bytes = quant_row_bytes(type, IN);
    void *data = malloc(*row_bytes * OUT);
    cr_assert_not_null(data);
    for (int o = 0; o < OUT; o++) {
        const float *src = w + (size_t)o * IN;
        void *dst = (char *)data + *row_bytes * o;
        switch (type) {
        case GGML_TYPE_F32: memcpy(dst, src, sizeof(float) * IN); break;
        case GGML_TYPE_F16: quantize_f16(src, dst, IN); break;
        case GGML_TYPE_Q8_0: quantize_q8_0(src, dst, IN); break;
        case GGML_TYPE_Q4_0: quantize_q4_0(src, dst, IN); break;
        default: cr_assert_fail("no writer for %s", ggml_type_name(type));
        }
    }
    return data;
}

static void check_against_openblas(ggml_type type) {
    float *x = malloc(sizeof(float) * ROWS * IN), *w = malloc(sizeof(float) * OUT * IN);
    float *stored_as_fp32 = malloc(sizeof(float) * OUT * IN);
    float *ramp = malloc(sizeof(float) * ROWS * OUT), *blas = malloc(sizeof(float) * ROWS * OUT);
    cr_assert(x && w && stored_as_fp32 && ramp && blas);
    for (size_t i = 0; i < (size_t)ROWS * IN; i++) x[i] = value();
    for (size_t i = 0; i < (size_t)OUT * IN; i++) w[i] = value() * 0.05f;

    size_t row_bytes;
    void *data = store(type, w, &row_bytes);
    cr_assert_eq(dequantize(type, data, stored_as_fp32, (size_t)OUT * IN), 0);

    act_buffer a;
    cr_assert_eq(act_buffer_init(&a, ROWS, IN, NULL), 0);
    act_buffer_set(&a, x, ROWS, IN);
    const weight_matrix m = {type, OUT, IN, row_bytes, data};
    matmul_weights(ramp, &a, &m);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, ROWS, OUT, IN, 1.0f, x, IN, stored_as_fp32, IN, 0.0f, blas,
                OUT);

    const bool quantized_activations = type == GGML_TYPE_Q8_0 || type == GGML_TYPE_Q4_0;
    double worst = 0.0;
    for (int r = 0; r < ROWS; r++) {
        const float *xr = x + (size_t)r * IN;
        for (int o = 0; o < OUT; o++) {
            const float *wr = stored_as_fp32 + (size_t)o * IN;
            double magnitude = 0.0, activation_error = 0.0;
            for (int b = 0; b < IN; b += 32) {
                float amax = 0.0f;
                for (int i = b; i < b + 32; i++) amax = fmaxf(amax, fabsf(xr[i]));
                const double half_step = quantized_activations ? amax / 127.0 / 2.0 : 0.0;
                for (int i = b; i < b + 32; i++) {
                    magnitude += fabs((double)wr[i] * xr[i]) + fabs(wr[i]) * half_step;
                    activation_error += fabs(wr[i]) * half_step;
                }
            }
            const double bound = activation_error + 2.0 * IN * ldexp(1.0, -23) * magnitude + 1e-30;
            const double diff = fabs((double)ramp[(size_t)r * OUT + o] - blas[(size_t)r * OUT + o]);
            cr_assert(diff <= bound, "%s: row %d output %d: ramp %.9g, OpenBLAS %.9g, differ by %.3g > bound %.3g",
                      ggml_type_name(type), r, o, ramp[(size_t)r * OUT + o], blas[(size_t)r * OUT + o], diff, bound);
            if (diff / bound > worst) worst = diff / bound;
        }
    }
    cr_log_info("%s: largest difference %.1f%% of the bound", ggml_type_name(type), 100.0 * worst);
    act_buffer_free(&a);
    free(data);
    free(x);
    free(w);
    free(stored_as_fp32);
    free(ramp);
    free(blas);
}

Test(blas_reference, f32_products_match_openblas) { check_against_openblas(GGML_TYPE_F32); }
Test(blas_reference, f16_products_match_openblas) { check_against_openblas(GGML_TYPE_F16); }
Test(blas_reference, q8_0_products_match_openblas) { check_against_openblas(GGML_TYPE_Q8_0); }
Test(blas_reference, q4_0_products_match_openblas) { check_against_openblas(GGML_TYPE_Q4_0); }
