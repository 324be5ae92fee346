/* exit_policy.h: deciding, from the exit features of a row at an exit point, whether it leaves.
 *
 * Two kinds of policy:
 *  - svm (AdaInfer): one libsvm classifier (RBF kernel) for all exit points; a row exits at the
 *    first exit point whose decision value reaches `threshold`. Its input is the row's features,
 *    min-max scaled, followed by two one-hot groups: which exit point this is, and which of the
 *    task's label tokens is the top-1 (none when the top-1 is not a label). Trained on full-depth runs:
 *    a sample (one row at one exit point) is positive when that exit point's top-1 prediction
 *    equals the final layer's and stays equal at every later exit point. The threshold is then
 *    chosen on held-out examples as the lowest that keeps agreement with the full model at or
 *    above a target (default 0.99). Files: PATH is libsvm's own model file, PATH.json the sidecar
 *    (kind, feature scaling, exit layers, threshold, model and task it was trained for).
 *  - confidence (LITE): a threshold per exit point on top_prob; a row exits at the first exit
 *    point whose top_prob reaches that point's threshold. Calibrated on held-out data point by
 *    point, in order, on the rows earlier points did not take: the lowest threshold at which the
 *    rows above it agree with the final layer at least at the target rate. File: PATH as JSON.
 * Exit points are given as layer counts (exit after `exit_layers[i]` layers), increasing.
 * An exit_policy owns its libsvm model and the dense copy it scores with.
 */
#ifndef RAMP_EXIT_POLICY_H
#define RAMP_EXIT_POLICY_H

#include <stdbool.h>

#include "error.h"
#include "svm_dense.h"

enum {
    EXIT_FEATURE_TOP_PROB,       /* probability of the top-1 candidate */
    EXIT_FEATURE_GAP,            /* top-1 minus top-2 probability */
    EXIT_FEATURE_ENTROPY,        /* entropy of the candidate distribution, nats */
    EXIT_FEATURE_AGREES_PREVIOUS,/* 1 when the top-1 equals the previous exit point's top-1, else 0 */
    EXIT_FEATURE_DEPTH,          /* layers executed / total layers */
    EXIT_FEATURE_PREVIOUS_TOP_PROB, /* top_prob at the previous exit point (0 at the first) */
    EXIT_FEATURE_PREVIOUS_GAP,   /* gap at the previous exit point (0 at the first) */
    EXIT_FEATURE_COUNT
};

#define EXIT_MAX_POINTS 64
#define EXIT_MAX_LABELS 16
#define EXIT_MAX_TOTAL_LAYERS 1024 /* as many layers as a model may have */
#define EXIT_CONF_NEVER 1.01       /* a confidence threshold above any probability: never exit */

/* The feature's name as policy files spell it ("top_prob", ...). */
const char *exit_feature_name(int j);

typedef enum { EXIT_POLICY_NONE, EXIT_POLICY_SVM, EXIT_POLICY_CONFIDENCE } exit_policy_kind;

typedef struct {
    exit_policy_kind kind;
    int n_exits;
    int exit_layers[EXIT_MAX_POINTS];
    int total_layers;
    char model_name[256]; /* file name of the model it was trained for (informational) */
    char task[32];
    int n_labels;                        /* the task's label tokens (svm input), 0 for none */
    int label_tokens[EXIT_MAX_LABELS];
    double target_agreement;
    /* svm */
    struct svm_model *svm;
    svm_dense dense; /* svm's decision function as a matrix: what scoring uses */
    double scale_min[EXIT_FEATURE_COUNT], scale_max[EXIT_FEATURE_COUNT];
    double threshold;
    /* confidence */
    double thresholds[EXIT_MAX_POINTS];
} exit_policy;

/* One row (example or generated token) observed at one exit point during a full-depth run. */
typedef struct {
    float features[EXIT_FEATURE_COUNT];
    int top_token;     /* this exit point's top-1 */
    bool agrees_final; /* top_token equals the final layer's top-1 */
    bool stays;        /* agrees_final here and at every later exit point */
} exit_observation;

/* Observations are grouped per example: obs[example * n_exits + exit_index]. */
typedef struct {
    const exit_observation *observations;
    int n_examples;
    int n_exits;
    const int *exit_layers; /* [n_exits] */
    int total_layers;
    const int *label_tokens; /* [n_labels]: the task's label tokens, NULL/0 for none */
    int n_labels;
} exit_dataset;

int exit_policy_train_svm(exit_policy *policy, const exit_dataset *train, const exit_dataset *heldout,
                          double target_agreement, ramp_error *err);
int exit_policy_calibrate_confidence(exit_policy *policy, const exit_dataset *heldout, double target_agreement,
                                     ramp_error *err);

/* True when a row with these features and this top-1 token leaves at exit point exit_index. */
bool exit_policy_should_exit(const exit_policy *policy, int exit_index, const float *features, int top_token);
/* The same for n rows at once (leaves[n]): an svm reads its support vectors once for all of them
 * and shares the work between ramp's threads; every row gets the answer it would get alone. */
int exit_policy_should_exit_many(const exit_policy *policy, int n, const int *exit_index, const float *const *features,
                                 const int *top_token, bool *leaves);

typedef struct {
    double agreement;     /* share of examples whose exit prediction equals the final one */
    double pruning_ratio; /* share of layer evaluations skipped */
    double mean_layers;
    int histogram[EXIT_MAX_POINTS + 1]; /* examples exiting at each exit point; last = full depth */
} exit_simulation;

/* What the policy would do on a full-depth dataset (for threshold choice and reports). */
void exit_policy_simulate(const exit_policy *policy, const exit_dataset *data, exit_simulation *out);

int exit_policy_save(const exit_policy *policy, const char *path, ramp_error *err);
/* spec is "svm:PATH" or "conf:PATH" (or a bare PATH: kind read from PATH.json / PATH).
 * Files are untrusted: every field is checked, and checked against the others, before use (see
 * policy_check.h and svm_model_file.h); a bad one fails with a message naming the file and field. */
int exit_policy_load(exit_policy *policy, const char *spec, ramp_error *err);

/* What a run that wants to use a policy offers it. */
typedef struct {
    int n_layers;     /* the model's */
    int vocab_size;   /* the model's */
    const char *task; /* the run's task, NULL for generation */
    const int *label_tokens; /* [n_labels]: the run's task's label tokens (with task) */
    int n_labels;
} exit_policy_use;

/* The policy was made for this model and task: the same layer count, label tokens inside the
 * vocabulary and, for an svm policy on a task, the same task and label tokens. spec names the
 * policy in messages. (Exit layers are compared when the pipeline sets its exits.) */
int exit_policy_check_use(const exit_policy *policy, const char *spec, const exit_policy_use *use, ramp_error *err);
void exit_policy_free(exit_policy *policy);

#endif
