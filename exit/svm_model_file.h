/* svm_model_file.h: a two-class RBF C-SVC model in libsvm's text format, read strictly.
 *
 * libsvm's svm_load_model trusts its input: a missing rho line leaves a NULL pointer that scoring
 * dereferences, a huge or negative total_sv or nr_class goes straight to malloc, a missing label
 * line leaves the labels uninitialised, and a file cut short is accepted with the vectors it has.
 * This reader parses the text itself and builds the svm_model only when the file is, line for
 * line, what svm_save_model writes for the models exit-train makes:
 *
 *   svm_type c_svc          kernel_type rbf          gamma G (finite, in (0, SVM_FILE_MAX_GAMMA])
 *   nr_class 2              total_sv N (2..limits->max_vectors)
 *   rho R (finite, |R| <= SVM_FILE_MAX_MAGNITUDE)
 *   label A B (1 and -1, either order)      nr_sv P Q (each >= 1, P + Q = N)
 *   SV
 *   N lines "COEF I:V I:V ...": COEF finite and non-zero, positive for the P vectors of label A
 *   and negative for the Q of label B (libsvm's y_i alpha_i), |COEF| <= limits->max_coefficient;
 *   indices strictly increasing in 1..limits->max_index; values finite, |V| <= SVM_FILE_MAX_MAGNITUDE.
 *
 * Every line ends in a newline, as libsvm writes them (a last line without one was cut short).
 * Each header key appears once, in any order; any other key (probA, degree, ...) is refused, as is
 * anything but blank lines after the N-th vector. Every message names the file, the line and the
 * field, and says what was expected and what was found.
 *
 * The model is laid out as svm_load_model lays it out (the vectors in one block, free_sv = 1), so
 * svm_free_and_destroy_model releases it and svm_save_model writes it back.
 */
#ifndef RAMP_SVM_MODEL_FILE_H
#define RAMP_SVM_MODEL_FILE_H

#include <stddef.h>

#include "error.h"

struct svm_model;

#define SVM_FILE_MAX_BYTES ((size_t)128 << 20)
#define SVM_FILE_MAX_GAMMA 1e4
#define SVM_FILE_MAX_MAGNITUDE 1e9

typedef struct {
    int max_index;          /* input dimensions: feature indices are 1..max_index */
    int max_vectors;        /* support vectors at most (no more than training samples) */
    double max_coefficient; /* |y_i alpha_i| at most (C times the largest class weight) */
} svm_file_limits;

/* Parses text[0..size) (need not be NUL-terminated); path is used in messages only.
 * On success *out owns a new model; on failure *out is NULL. */
int svm_model_parse(const char *text, size_t size, const char *path, const svm_file_limits *limits,
                    struct svm_model **out, ramp_error *err);

/* Reads path (at most SVM_FILE_MAX_BYTES, read errors reported) and parses it. */
int svm_model_read(const char *path, const svm_file_limits *limits, struct svm_model **out, ramp_error *err);

#endif
