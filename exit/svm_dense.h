/* svm_dense.h: a two-class libsvm RBF model's decision function over a dense matrix.
 *
 * libsvm evaluates a model by walking every support vector's sparse node list and calling exp()
 * for each; an exit classifier has thousands of support vectors over about twenty inputs and is
 * consulted for every row at every exit point, on rank 0's critical path. Stored by column in
 * floats, with a vectorizable exp, it is an order of magnitude cheaper. The value is libsvm's
 * decision value to about 1e-6 relative:
 *   sum_i coef_i * exp(-gamma * |x - sv_i|^2) - rho.
 * It is deterministic (same inputs, same value on every rank), which is what exit decisions need:
 * thresholds are chosen with this function too. An svm_dense owns its arrays, not the model.
 */
#ifndef RAMP_SVM_DENSE_H
#define RAMP_SVM_DENSE_H

#include "error.h"

struct svm_model;

typedef struct {
    int n_vectors, dim;
    float *columns;      /* [dim][n_vectors]: input j of every support vector, contiguous */
    float *norms;        /* [n_vectors]: |sv_i|^2 */
    float *coefficients; /* [n_vectors] */
    float gamma;
    double rho;
} svm_dense;

/* dim: input dimensions; a support vector with a feature index above dim is an error. */
int svm_dense_build(svm_dense *dense, const struct svm_model *model, int dim, ramp_error *err);
/* x[dim]; returns libsvm's decision value for its first label. Thread-safe. */
double svm_dense_decision(const svm_dense *dense, const double *x);
/* The decision values of `rows` inputs x[rows][dim] at once into out[rows]: each support vector
 * block is read once for all of them, and the blocks are shared out between ramp's threads
 * (parallel.h). Every row's value is the bits svm_dense_decision gives it alone, whatever the
 * other rows and the threads. Returns -1 when out of memory (nothing written), else 0. */
int svm_dense_decisions(const svm_dense *dense, const double *x, int rows, double *out);
void svm_dense_free(svm_dense *dense);

#endif
