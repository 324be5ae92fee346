/* matmul.h: out = x . W^T for a stored weight matrix W of any supported type, shared by threads.
 *
 * x is [rows][cols] fp32 and lives in an act_buffer, which converts it once per kind its
 * products need (kernels.h: fp32, 8-bit blocks of 32, 8-bit blocks of 256) and keeps the
 * conversions until the next act_buffer_set: so q, k and v (or gate and up) quantize their common
 * input once. The product is cut into tiles (a few weight rows by a few activation rows) whose
 * shape depends only on the matrix; each output value is one kernel_dot value, computed with the
 * arithmetic kernels.h fixes. So every value is the same whatever the thread count, the tiling,
 * and the other rows of the batch: a row gives the same numbers alone or in a batch of 100.
 */
#ifndef RAMP_MATMUL_H
#define RAMP_MATMUL_H

#include <stdbool.h>
#include <stddef.h>

#include "error.h"
#include "kernels.h"

typedef struct {
    int max_rows, max_cols;
    unsigned char *rows_of[ACT_KINDS]; /* owned, 64-byte aligned: [max_rows][stride[kind]] */
    size_t stride[ACT_KINDS];
    const float *x; /* current input, borrowed: [n_rows][n_cols] */
    int n_rows, n_cols;
    bool ready[ACT_KINDS];
} act_buffer;

int act_buffer_init(act_buffer *a, int max_rows, int max_cols, ramp_error *err);
void act_buffer_free(act_buffer *a);

/* Makes x ([rows][cols], rows <= max_rows, cols <= max_cols) the input of the next products. x
 * is read (converted) lazily by matmul_weights, so it must stay unchanged until the next set. */
void act_buffer_set(act_buffer *a, const float *x, int rows, int cols);

/* out[r][o] = sum_i x[r][i] * W[o][i] for r < rows, o < w->rows; w->cols must equal the input's
 * cols and w->type be supported. out is [rows][w->rows], fp32. Uses the OpenMP threads. */
void matmul_weights(float *out, act_buffer *a, const weight_matrix *w);

/* Several products in one parallel pass: products[i].out = x_i . W_i^T, x_i the input of
 * products[i].a, for i < n. The tiles of all of them are shared out together, so small products
 * (the two layers of a layer-parallel pair: forward.h) keep every thread busy with one wait
 * instead of one per product. Each value is the one matmul_weights gives. */
typedef struct {
    float *out;
    act_buffer *a;
    const weight_matrix *w;
} matmul_product;
void matmul_weights_many(const matmul_product *products, int n);

/* Says which products (weights w[0..n-1], with act_rows activation rows) this thread runs after
 * the one it starts next, so that each helper thread, once done with its part of that one, reads the
 * weights of its shares of them into its cache while this thread finishes and works alone
 * (parallel_warm_up). The next call replaces them. Only for a few activation rows, whose products
 * wait on memory; changes no value. */
void matmul_warm_up(const weight_matrix *const *w, int n, int act_rows);

/* out[r][c] = x[r] . W[rows_wanted[c]] for c < n_wanted: selected output features only, with the
 * same values matmul_weights gives for them. */
void matmul_weight_rows(float *out, act_buffer *a, const weight_matrix *w, const int *rows_wanted, int n_wanted);

/* A plain fp32 product out[n_rows][out_features] = x[n_rows][in] . w[out_features][in]^T with the
 * same tiling (for tests; allocates a temporary act_buffer). */
void matmul(float *out, const float *x, const float *w, int n_rows, int in_features, int out_features);

#endif
