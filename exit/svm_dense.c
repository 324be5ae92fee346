#include "svm_dense.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <svm.h>

#include "parallel.h"

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

/* out[k] = e^x[k] for x[k] <= 0: 2^(x log2 e) split into 2^n (exponent bits) and 2^f, f in
 * [-1/2, 1/2], by Cephes' exp2f polynomial. Plain arithmetic so that the loop vectorizes. The
 * argument is clamped to [-87, 0] first, NaN included (it reads as -87: e^-87 is as good as 0),
 * so that n always fits the exponent field. */
/* GCC vectorizes floorf only where it need not keep floating-point exception flags exact (no
 * value changes: floor is exact); scalar, this loop was most of a decision's time. */
#if defined(__GNUC__) && !defined(__clang__)
__attribute__((optimize("no-trapping-math")))
#endif
static void exp_nonpositive(float *x, int m) {
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
        int32_t bits = ((int32_t)n + 127) << 23;
        float scale;
        memcpy(&scale, &bits, sizeof scale); /* a bit cast the vectorizer follows (a union array it did not) */
        x[k] = p * scale;
    }
}

/* Row r's sum of coefficient * kernel over support vectors [start, start + m), m <= BLOCK, into
 * partial[r]. The products are summed in eight fixed lanes (vectorizable; one running double sum
 * waited on the previous addition for every support vector), then the lanes in order. */
static void block_sums(const svm_dense *dense, const double *x, const float *x_norms, int rows, int start, int m,
                       double *partial) {
    const int n = dense->n_vectors, dim = dense->dim;
    float terms[BLOCK] = {0};
    for (int r = 0; r < rows; r++) {
        const double *xr = x + (size_t)r * dim;
        for (int k = 0; k < m; k++) terms[k] = x_norms[r] + dense->norms[start + k];
        for (int j = 0; j < dim; j++) {
            if (xr[j] == 0) continue; /* one-hot inputs are mostly zeros */
            const float scale = -2.0f * (float)xr[j];
            const float *column = dense->columns + (size_t)j * n + start;
            for (int k = 0; k < m; k++) terms[k] += scale * column[k];
        }
        for (int k = 0; k < m; k++) terms[k] = -dense->gamma * (terms[k] > 0 ? terms[k] : 0);
        exp_nonpositive(terms, m);
        const float *coefficients = dense->coefficients + start;
        double lanes[8] = {0};
        int k = 0;
        for (; k + 8 <= m; k += 8)
            for (int l = 0; l < 8; l++) lanes[l] += (double)coefficients[k + l] * terms[k + l];
        for (; k < m; k++) lanes[k % 8] += (double)coefficients[k] * terms[k];
        partial[r] = ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3])) + ((lanes[4] + lanes[5]) + (lanes[6] + lanes[7]));
    }
}

typedef struct {
    const svm_dense *dense;
    const double *x;
    const float *x_norms;
    int rows;
    double *partial; /* [blocks][rows] */
} decision_job;

static void decision_task(void *context, int block, int worker) {
    (void)worker;
    const decision_job *job = context;
    const int start = block * BLOCK, left = job->dense->n_vectors - start;
    block_sums(job->dense, job->x, job->x_norms, job->rows, start, left < BLOCK ? left : BLOCK,
               job->partial + (size_t)block * job->rows);
}

int svm_dense_decisions(const svm_dense *dense, const double *x, int rows, double *out) {
    if (rows <= 0) return 0;
    const int n = dense->n_vectors, dim = dense->dim, blocks = (n + BLOCK - 1) / BLOCK;
    double stack_partial[64];
    float stack_norms[8];
    double *partial = (size_t)blocks * rows <= 64 ? stack_partial : malloc((size_t)blocks * rows * sizeof *partial);
    float *x_norms = rows <= 8 ? stack_norms : malloc((size_t)rows * sizeof *x_norms);
    if (!partial || !x_norms) {
        if (partial != stack_partial) free(partial);
        if (x_norms != stack_norms) free(x_norms);
        return -1;
    }
    for (int r = 0; r < rows; r++) {
        float norm = 0;
        for (int j = 0; j < dim; j++) norm += (float)(x[(size_t)r * dim + j] * x[(size_t)r * dim + j]);
        x_norms[r] = norm;
    }
    decision_job job = {dense, x, x_norms, rows, partial};
    /* Blocks are independent and each is summed in a fixed order, so the threads change no bit;
     * below a few blocks' work the helpers cost more than they save. */
    if ((long)n * rows >= 4 * BLOCK * 8 && blocks > 1) parallel_run(blocks, decision_task, &job);
    else
        for (int b = 0; b < blocks; b++) decision_task(&job, b, 0);
    for (int r = 0; r < rows; r++) {
        double sum = 0;
        for (int b = 0; b < blocks; b++) sum += partial[(size_t)b * rows + r];
        out[r] = sum - dense->rho;
    }
    if (partial != stack_partial) free(partial);
    if (x_norms != stack_norms) free(x_norms);
    return 0;
}

double svm_dense_decision(const svm_dense *dense, const double *x) {
    double out = 0;
    if (svm_dense_decisions(dense, x, 1, &out)) {
        /* out of memory for the partial sums of a huge model: one block at a time */
        float norm = 0;
        for (int j = 0; j < dense->dim; j++) norm += (float)(x[j] * x[j]);
        double sum = 0;
        for (int start = 0; start < dense->n_vectors; start += BLOCK) {
            double part;
            int left = dense->n_vectors - start;
            block_sums(dense, x, &norm, 1, start, left < BLOCK ? left : BLOCK, &part);
            sum += part;
        }
        return sum - dense->rho;
    }
    return out;
}

void svm_dense_free(svm_dense *dense) {
    free(dense->columns);
    free(dense->norms);
    free(dense->coefficients);
    memset(dense, 0, sizeof *dense);
}
