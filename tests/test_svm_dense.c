/* test_svm_dense.c: the dense decision function agrees with libsvm's own on a trained RBF model. */
#include <criterion/criterion.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <svm.h>

#include "svm_dense.h"

#define DIM 6
#define SAMPLES 400

static void quiet(const char *message) { (void)message; }

/* Points in [0,1]^DIM labelled by a curved boundary with some label noise; every third point
 * leaves input 4 out (a sparse vector, as one-hot inputs are). */
static double point(unsigned *seed, struct svm_node *nodes) {
    int n = 0;
    double x[DIM];
    for (int j = 0; j < DIM; j++) {
        x[j] = rand_r(seed) / (double)RAND_MAX;
        if (j == 4 && rand_r(seed) % 3 == 0) continue;
        nodes[n++] = (struct svm_node){j + 1, x[j]};
    }
    nodes[n].index = -1;
    bool positive = x[0] * x[0] + x[1] > 0.8;
    if (rand_r(seed) % 10 == 0) positive = !positive;
    return positive ? 1 : -1;
}

static void dense_input(const struct svm_node *nodes, double *x) {
    for (int j = 0; j < DIM; j++) x[j] = 0;
    for (; nodes->index != -1; nodes++) x[nodes->index - 1] = nodes->value;
}

Test(svm_dense, equals_libsvm_decision_values) {
    unsigned seed = 7;
    static struct svm_node nodes[SAMPLES][DIM + 1];
    struct svm_node *x[SAMPLES];
    double y[SAMPLES];
    for (int i = 0; i < SAMPLES; i++) {
        y[i] = point(&seed, nodes[i]);
        x[i] = nodes[i];
    }
    struct svm_problem problem = {.l = SAMPLES, .y = y, .x = x};
    struct svm_parameter param = {.svm_type = C_SVC, .kernel_type = RBF, .gamma = 0.7, .C = 2,
                                  .cache_size = 16, .eps = 1e-3, .shrinking = 1};
    svm_set_print_string_function(quiet);
    struct svm_model *model = svm_train(&problem, &param);
    cr_assert_not_null(model);
    cr_assert_gt(model->l, 10, "expected a model with many support vectors, found %d", model->l);

    svm_dense dense;
    ramp_error err = {{0}};
    cr_assert_eq(svm_dense_build(&dense, model, DIM, &err), 0, "%s", err.message);
    cr_assert_eq(dense.n_vectors, model->l);
    int sign_differences = 0;
    for (int k = 0; k < 1000; k++) {
        struct svm_node probe[DIM + 1];
        point(&seed, probe);
        double expected, input[DIM];
        svm_predict_values(model, probe, &expected);
        dense_input(probe, input);
        double found = svm_dense_decision(&dense, input);
        cr_assert(fabs(found - expected) <= 1e-4 * (1 + fabs(expected)), "probe %d: dense %.9f, libsvm %.9f", k,
                  found, expected);
        sign_differences += (found >= 0) != (expected >= 0) && fabs(expected) > 1e-3;
    }
    cr_assert_eq(sign_differences, 0);

    /* Many rows at once: each gets the bits it gets alone, whichever rows share the call. */
    enum { ROWS = 37 };
    double inputs[ROWS][DIM], together[ROWS], reversed[ROWS][DIM], together_reversed[ROWS];
    for (int r = 0; r < ROWS; r++) {
        struct svm_node probe[DIM + 1];
        point(&seed, probe);
        dense_input(probe, inputs[r]);
    }
    for (int r = 0; r < ROWS; r++) memcpy(reversed[ROWS - 1 - r], inputs[r], sizeof inputs[r]);
    cr_assert_eq(svm_dense_decisions(&dense, &inputs[0][0], ROWS, together), 0);
    cr_assert_eq(svm_dense_decisions(&dense, &reversed[0][0], ROWS, together_reversed), 0);
    for (int r = 0; r < ROWS; r++) {
        double alone = svm_dense_decision(&dense, inputs[r]);
        cr_assert(memcmp(&alone, &together[r], sizeof alone) == 0, "row %d: alone %.17g, with others %.17g", r, alone,
                  together[r]);
        cr_assert(memcmp(&alone, &together_reversed[ROWS - 1 - r], sizeof alone) == 0, "row %d in another order", r);
    }
    svm_dense_free(&dense);

    cr_assert_neq(svm_dense_build(&dense, model, 3, &err), 0, "inputs beyond dim are an error");
    cr_assert(strstr(err.message, "expected 1..3") != NULL, "%s", err.message);
    svm_free_and_destroy_model(&model);
}

/* A made-up model of several support vector blocks, scored on ramp's threads: each row still gets
 * the bits it gets alone. */
Test(svm_dense, many_rows_on_threads_equal_each_row_alone) {
    enum { VECTORS = 1500, ROWS = 40 };
    unsigned seed = 11;
    svm_dense dense = {.n_vectors = VECTORS, .dim = DIM, .gamma = 0.5f, .rho = 0.25};
    dense.columns = calloc((size_t)VECTORS * DIM, sizeof(float));
    dense.norms = calloc(VECTORS, sizeof(float));
    dense.coefficients = calloc(VECTORS, sizeof(float));
    for (int i = 0; i < VECTORS; i++) {
        for (int j = 0; j < DIM; j++) {
            float v = rand_r(&seed) / (float)RAND_MAX;
            dense.columns[(size_t)j * VECTORS + i] = v;
            dense.norms[i] += v * v;
        }
        dense.coefficients[i] = (rand_r(&seed) % 2 ? 1.0f : -1.0f) * (rand_r(&seed) / (float)RAND_MAX);
    }
    static double inputs[ROWS][DIM], together[ROWS];
    for (int r = 0; r < ROWS; r++)
        for (int j = 0; j < DIM; j++) inputs[r][j] = j == 4 && r % 3 == 0 ? 0 : rand_r(&seed) / (double)RAND_MAX;
    cr_assert_eq(svm_dense_decisions(&dense, &inputs[0][0], ROWS, together), 0);
    for (int r = 0; r < ROWS; r++) {
        double alone = svm_dense_decision(&dense, inputs[r]), plain = -dense.rho;
        for (int i = 0; i < VECTORS; i++) {
            double distance = 0;
            for (int j = 0; j < DIM; j++) {
                double d = inputs[r][j] - dense.columns[(size_t)j * VECTORS + i];
                distance += d * d;
            }
            plain += dense.coefficients[i] * exp(-dense.gamma * distance);
        }
        cr_assert(memcmp(&alone, &together[r], sizeof alone) == 0, "row %d: alone %.17g, with others %.17g", r, alone,
                  together[r]);
        cr_assert(fabs(alone - plain) <= 1e-4 * (1 + fabs(plain)), "row %d: dense %.9f, plain %.9f", r, alone, plain);
    }
    svm_dense_free(&dense);
}
