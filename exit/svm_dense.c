#include "svm_dense.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <svm.h>

#define BLOCK 256 /* support vectors per pass: distances live on the stack */

int svm_dense_build(svm_dense *dense, const struct svm_model *model, int dim, ramp_error *err) {
    memset(dense, 0, sizeof *dense);
    if (model->param.kernel_type != RBF || model->nr_class != 2)
        return ramp_fail(err, "svm: expected a two-class RBF model, found kernel %d with %d classes",
                         model->param.kernel_type, model->nr_class);
    /* The model may come from anywhere: nothing below may read a NULL or score with a non-finite
     * number (a NaN gamma turned the vectorized exp's exponent bits into undefined shifts). */
    if (!model->SV || !model->sv_coef || !model->sv_coef[0] || !model->rho || model->l < 0)
        return ramp_fail(err, "svm: expected support vectors, coefficients and rho, found a model without them");
    if (!isfinite(model->param.gamma) || !(model->param.gamma > 0) || !isfinite(model->rho[0]))
        return ramp_fail(err, "svm: expected a finite positive gamma and a finite rho, found gamma %g, rho %g",
                         model->param.gamma, model->rho[0]);
    const int n = model->l;
    size_t slots = (size_t)(n > 0 ? n : 1);
    dense->columns = calloc(slots * (size_t)dim, sizeof *dense->columns);
    dense->norms = calloc(slots, sizeof *dense->norms);
    dense->coefficients = malloc(slots * sizeof *dense->coefficients);
    if (!dense->columns || !dense->norms || !dense->coefficients) {
        svm_dense_free(dense);
        return ramp_fail(err, "svm: out of memory for %d support vectors of %d inputs", n, dim);
    }
    for (int i = 0; i < n; i++) {
        double norm = 0;
        for (const struct svm_node *node = model->SV[i]; node->index != -1; node++) {
            if (node->index < 1 || node->index > dim || !isfinite(node->value)) {
                svm_dense_free(dense);
                return ramp_fail(err, "svm: support vector %d has input %d = %g, expected 1..%d with a finite value", i,
                                 node->index, node->value, dim);
            }
            dense->columns[(size_t)(node->index - 1) * n + i] = (float)node->value;
            norm += node->value * node->value;
        }
        if (!isfinite(model->sv_coef[0][i]) || !isfinite((float)norm)) {
            svm_dense_free(dense);
            return ramp_fail(err, "svm: support vector %d has coefficient %g and squared norm %g, expected finite values", i,
                             model->sv_coef[0][i], norm);
        }
        dense->norms[i] = (float)norm;
        dense->coefficients[i] = (float)model->sv_coef[0][i];
    }
    dense->n_vectors = n;
    dense->dim = dim;
    dense->gamma = (float)model->param.gamma;
    dense->rho = model->rho[0];
    return 0;
}

typedef union {
    float f;
    int32_t i;
} float_bits;

/* out[k] = e^x[k] for x[k] <= 0: 2^(x log2 e) split into 2^n (exponent bits) and 2^f, f in
 * [-1/2, 1/2], by Cephes' exp2f polynomial. Plain arithmetic so that the loop vectorizes. The
 * argument is clamped to [-87, 0] first, NaN included (it reads as -87: e^-87 is as good as 0),
 * so that n always fits the exponent field. */
static void exp_nonpositive(const float *x, float *out, int m) {
    float_bits scale[BLOCK];
    for (int k = 0; k < m; k++) {
        float clamped = x[k] >= -87.0f ? x[k] : -87.0f;
        float y = (clamped > 0.0f ? 0.0f : clamped) * 1.44269504088896341f;
        float n = floorf(y + 0.5f);
        float f = y - n;
        float p = 1.535336188319500e-4f;
        p = p * f + 1.339887440266574e-3f;
        p = p * f + 9.618437357674640e-3f;
        p = p * f + 5.550332471162809e-2f;
        p = p * f + 2.402264791363012e-1f;
        p = p * f + 6.931472028550421e-1f;
        p = p * f + 1.0f;
        scale[k].i = ((int32_t)n + 127) << 23;
        out[k] = p * scale[k].f;
    }
}

double svm_dense_decision(const svm_dense *dense, const double *x) {
    const int n = dense->n_vectors, dim = dense->dim;
    float x_norm = 0;
    for (int j = 0; j < dim; j++) x_norm += (float)(x[j] * x[j]);
    double sum = 0;
    float terms[BLOCK];
    for (int start = 0; start < n; start += BLOCK) {
        const int m = n - start < BLOCK ? n - start : BLOCK;
        for (int k = 0; k < m; k++) terms[k] = x_norm + dense->norms[start + k];
        for (int j = 0; j < dim; j++) {
            if (x[j] == 0) continue; /* one-hot inputs are mostly zeros */
            const float scale = -2.0f * (float)x[j];
            const float *column = dense->columns + (size_t)j * n + start;
            for (int k = 0; k < m; k++) terms[k] += scale * column[k];
        }
        for (int k = 0; k < m; k++) terms[k] = -dense->gamma * (terms[k] > 0 ? terms[k] : 0);
        exp_nonpositive(terms, terms, m);
        for (int k = 0; k < m; k++) sum += dense->coefficients[start + k] * terms[k];
    }
    return sum - dense->rho;
}

void svm_dense_free(svm_dense *dense) {
    free(dense->columns);
    free(dense->norms);
    free(dense->coefficients);
    memset(dense, 0, sizeof *dense);
}
