/* exit_policy.c: training, calibrating, applying, saving and loading exit policies.
 *
 * Train, calibrate and load fill *policy completely: they start by emptying it (kind none), so a
 * policy that held an SVM must be freed first, and on failure it is left empty and safe to free.
 *
 * SVM scores are libsvm decision values oriented so that larger means "exit" (the row's top-1 will
 * not change any more). The threshold is chosen exactly, not from a grid: see choose_svm_threshold.
 */
#include "exit_policy.h"

#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <svm.h>
#include <unistd.h>

#include "input_file.h"
#include "policy_check.h"
#include "svm_model_file.h"

#define FORMAT_VERSION 2 /* 2: previous-point features, exit-point and label one-hots */
/* libsvm's training time grows about quadratically with samples when classes overlap; 36000
 * samples (6000 examples at 6 exit points) train in about a minute. */
#define SVM_MAX_SAMPLES 36000
#define SVM_CACHE_MB 256
/* Scaled training features are rounded to this grid so that libsvm's model file, which prints
 * support vectors with 8 significant digits, reloads them bit for bit: a saved policy then makes
 * exactly the decisions the trained one made, even for a row sitting on the threshold. */
#define SCALE_GRID 1e6
/* A confidence threshold must be backed by at least this many held-out rows and this share of
 * the rows at its exit point; one that would fire more rarely is not worth its noise. */
#define CONF_MIN_ROWS 10
#define CONF_MIN_SHARE 0.01

static const char *const FEATURE_NAMES[EXIT_FEATURE_COUNT] = {
    [EXIT_FEATURE_TOP_PROB] = "top_prob",
    [EXIT_FEATURE_GAP] = "gap",
    [EXIT_FEATURE_ENTROPY] = "entropy",
    [EXIT_FEATURE_AGREES_PREVIOUS] = "agrees_previous",
    [EXIT_FEATURE_DEPTH] = "depth",
    [EXIT_FEATURE_PREVIOUS_TOP_PROB] = "previous_top_prob",
    [EXIT_FEATURE_PREVIOUS_GAP] = "previous_gap",
};

const char *exit_feature_name(int j) {
    return j >= 0 && j < EXIT_FEATURE_COUNT ? FEATURE_NAMES[j] : "unknown";
}

/* Classifier input: the scaled features, then one-hots for the exit point and the top-1 label.
 * Only non-zero one-hot entries are written (libsvm vectors are sparse), so an input has at most
 * EXIT_FEATURE_COUNT + 2 entries plus libsvm's terminator. */
#define SVM_NODES (EXIT_FEATURE_COUNT + 3)

/* ---- features and scores ---- */

/* A NaN (e.g. from a degenerate softmax) reads as 0 rather than poisoning a whole score. */
static double clean_feature(float value) {
    return isfinite(value) ? (double)value : 0.0;
}

/* Min-max scaling from the training set; a feature that never varied carries no information. */
static double scale_feature(const exit_policy *policy, int j, float value) {
    double range = policy->scale_max[j] - policy->scale_min[j];
    if (!(range > 0)) return 0.0;
    return (clean_feature(value) - policy->scale_min[j]) / range;
}

static int label_index(const exit_policy *policy, int token) {
    for (int l = 0; l < policy->n_labels; l++)
        if (policy->label_tokens[l] == token) return l;
    return -1;
}

/* Number of input dimensions, one-hots included. */
static int input_size(const exit_policy *policy) {
    return EXIT_FEATURE_COUNT + policy->n_exits + policy->n_labels;
}

/* Writes the classifier input for one row into nodes[SVM_NODES]; returns the entries written
 * (terminator excluded). */
static int fill_nodes(const exit_policy *policy, int exit_index, const float *features, int top_token,
                      struct svm_node *nodes) {
    int k = 0;
    for (int j = 0; j < EXIT_FEATURE_COUNT; j++, k++) {
        nodes[k].index = j + 1; /* libsvm feature indices start at 1 */
        nodes[k].value = scale_feature(policy, j, features[j]);
    }
    nodes[k++] = (struct svm_node){EXIT_FEATURE_COUNT + 1 + exit_index, 1.0};
    int label = label_index(policy, top_token);
    if (label >= 0) nodes[k++] = (struct svm_node){EXIT_FEATURE_COUNT + policy->n_exits + 1 + label, 1.0};
    nodes[k].index = -1;
    return k;
}

#define SVM_INPUTS (EXIT_FEATURE_COUNT + EXIT_MAX_POINTS + EXIT_MAX_LABELS)

/* The dense classifier input of one row into input[dense.dim] (zeros included). */
static void fill_input(const exit_policy *policy, int exit_index, const float *features, int top_token,
                       double *input) {
    struct svm_node nodes[SVM_NODES];
    fill_nodes(policy, exit_index, features, top_token, nodes);
    for (int j = 0; j < policy->dense.dim; j++) input[j] = 0;
    for (const struct svm_node *node = nodes; node->index != -1; node++)
        if (node->index <= policy->dense.dim) input[node->index - 1] = node->value;
}

static double svm_score(const exit_policy *policy, int exit_index, const float *features, int top_token) {
    double input[SVM_INPUTS] = {0};
    fill_input(policy, exit_index, features, top_token, input);
    double decision = svm_dense_decision(&policy->dense, input);
    /* Positive decision values speak for libsvm's first label, which is whichever class came
     * first in the training data, so orient them explicitly. */
    return policy->svm->label[0] == 1 ? decision : -decision;
}

bool exit_policy_should_exit(const exit_policy *policy, int exit_index, const float *features, int top_token) {
    if (!policy || exit_index < 0 || exit_index >= policy->n_exits) return false;
    switch (policy->kind) {
    case EXIT_POLICY_SVM:
        return policy->svm && svm_score(policy, exit_index, features, top_token) >= policy->threshold;
    case EXIT_POLICY_CONFIDENCE:
        return clean_feature(features[EXIT_FEATURE_TOP_PROB]) >= policy->thresholds[exit_index];
    default:
        return false;
    }
}

int exit_policy_should_exit_many(const exit_policy *policy, int n, const int *exit_index, const float *const *features,
                                 const int *top_token, bool *leaves) {
    if (n <= 0) return 0;
    if (!policy || policy->kind != EXIT_POLICY_SVM || !policy->svm || n == 1) {
        for (int i = 0; i < n; i++) leaves[i] = exit_policy_should_exit(policy, exit_index[i], features[i], top_token[i]);
        return 0;
    }
    const int dim = policy->dense.dim;
    double *inputs = malloc((size_t)n * dim * sizeof *inputs), *decisions = malloc((size_t)n * sizeof *decisions);
    int *asked = malloc((size_t)n * sizeof *asked);
    int m = 0;
    if (inputs && decisions && asked) {
        for (int i = 0; i < n; i++) {
            leaves[i] = false;
            if (exit_index[i] < 0 || exit_index[i] >= policy->n_exits) continue;
            fill_input(policy, exit_index[i], features[i], top_token[i], inputs + (size_t)m * dim);
            asked[m++] = i;
        }
    }
    if (!inputs || !decisions || !asked || svm_dense_decisions(&policy->dense, inputs, m, decisions)) {
        free(inputs), free(decisions), free(asked);
        for (int i = 0; i < n; i++) leaves[i] = exit_policy_should_exit(policy, exit_index[i], features[i], top_token[i]);
        return 0; /* the same answers, one row at a time */
    }
    for (int k = 0; k < m; k++) {
        double score = policy->svm->label[0] == 1 ? decisions[k] : -decisions[k];
        leaves[asked[k]] = score >= policy->threshold;
    }
    free(inputs), free(decisions), free(asked);
    return 0;
}

/* ---- simulation ---- */

/* Index of the exit point where example e leaves, or n_exits when it runs to full depth. */
static int exit_point(const exit_policy *policy, const exit_dataset *data, int e) {
    const exit_observation *row = data->observations + (size_t)e * data->n_exits;
    for (int i = 0; i < data->n_exits; i++)
        if (exit_policy_should_exit(policy, i, row[i].features, row[i].top_token)) return i;
    return data->n_exits;
}

void exit_policy_simulate(const exit_policy *policy, const exit_dataset *data, exit_simulation *out) {
    memset(out, 0, sizeof *out);
    out->agreement = 1.0;
    if (!data || !data->observations || data->n_examples <= 0 || data->n_exits <= 0 ||
        data->n_exits > EXIT_MAX_POINTS || data->total_layers <= 0)
        return;
    long agreeing = 0;
    double layers = 0;
    for (int e = 0; e < data->n_examples; e++) {
        int at = exit_point(policy, data, e);
        out->histogram[at]++;
        if (at == data->n_exits) { /* the full model agrees with itself */
            agreeing++;
            layers += data->total_layers;
        } else {
            agreeing += data->observations[(size_t)e * data->n_exits + at].agrees_final;
            layers += data->exit_layers[at];
        }
    }
    double n = data->n_examples;
    out->agreement = agreeing / n;
    out->mean_layers = layers / n;
    out->pruning_ratio = 1.0 - layers / (n * data->total_layers);
}

/* ---- datasets ---- */

static int check_dataset(const exit_dataset *data, const char *name, ramp_error *err) {
    if (!data || !data->observations || !data->exit_layers)
        return ramp_fail(err, "%s: expected observations and exit layers, found none", name);
    if (data->n_examples <= 0) return ramp_fail(err, "%s: expected examples, found %d", name, data->n_examples);
    if (data->n_exits <= 0 || data->n_exits > EXIT_MAX_POINTS)
        return ramp_fail(err, "%s: expected 1..%d exit points, found %d", name, EXIT_MAX_POINTS, data->n_exits);
    if (data->n_labels < 0 || data->n_labels > EXIT_MAX_LABELS || (data->n_labels > 0 && !data->label_tokens))
        return ramp_fail(err, "%s: expected 0..%d label tokens, found %d", name, EXIT_MAX_LABELS, data->n_labels);
    for (int i = 0; i < data->n_exits; i++) {
        int layer = data->exit_layers[i], previous = i > 0 ? data->exit_layers[i - 1] : 0;
        if (layer <= previous || layer > data->total_layers)
            return ramp_fail(err, "%s: exit point %d after %d layers, expected increasing layer counts in 1..%d", name,
                             i, layer, data->total_layers);
    }
    return 0;
}

static int check_same_points(const exit_dataset *a, const exit_dataset *b, ramp_error *err) {
    bool same = a->n_exits == b->n_exits && a->total_layers == b->total_layers &&
                memcmp(a->exit_layers, b->exit_layers, (size_t)a->n_exits * sizeof *a->exit_layers) == 0;
    if (!same)
        return ramp_fail(err, "held-out set: expected the training set's %d exit points of a %d-layer model, "
                              "found %d exit points of a %d-layer model (or other layers)",
                         a->n_exits, a->total_layers, b->n_exits, b->total_layers);
    return 0;
}

static int check_target(double target, ramp_error *err) {
    if (!(target >= 0 && target <= 1)) return ramp_fail(err, "target agreement: expected 0..1, found %g", target);
    return 0;
}

static void copy_points(exit_policy *policy, const exit_dataset *data) {
    policy->n_labels = data->n_labels;
    if (data->n_labels > 0)
        memcpy(policy->label_tokens, data->label_tokens, (size_t)data->n_labels * sizeof *data->label_tokens);
    policy->n_exits = data->n_exits;
    policy->total_layers = data->total_layers;
    memcpy(policy->exit_layers, data->exit_layers, (size_t)data->n_exits * sizeof *data->exit_layers);
}

/* ---- SVM training ---- */

static void fit_scale(exit_policy *policy, const exit_dataset *train) {
    size_t rows = (size_t)train->n_examples * train->n_exits;
    for (int j = 0; j < EXIT_FEATURE_COUNT; j++) {
        policy->scale_min[j] = INFINITY;
        policy->scale_max[j] = -INFINITY;
    }
    for (size_t r = 0; r < rows; r++)
        for (int j = 0; j < EXIT_FEATURE_COUNT; j++) {
            double value = clean_feature(train->observations[r].features[j]);
            if (value < policy->scale_min[j]) policy->scale_min[j] = value;
            if (value > policy->scale_max[j]) policy->scale_max[j] = value;
        }
}

static int fill_training_nodes(const exit_policy *policy, int exit_index, const exit_observation *row,
                               struct svm_node *nodes) {
    int k = fill_nodes(policy, exit_index, row->features, row->top_token, nodes);
    for (int j = 0; j < EXIT_FEATURE_COUNT; j++) nodes[j].value = round(nodes[j].value * SCALE_GRID) / SCALE_GRID;
    return k;
}

/* RBF width from the data (scikit-learn's "scale"): 1 / (dimensions x variance of all input
 * values, zeros of the one-hots included), so that a typical squared distance is about 1. */
static double kernel_gamma(const exit_policy *policy, struct svm_node *const *x, size_t n) {
    double sum = 0, squares = 0;
    for (size_t k = 0; k < n; k++)
        for (const struct svm_node *node = x[k]; node->index != -1; node++) {
            sum += node->value;
            squares += node->value * node->value;
        }
    double values = (double)n * input_size(policy);
    double variance = squares / values - (sum / values) * (sum / values);
    return variance > 0 ? 1.0 / (input_size(policy) * variance) : 1.0 / input_size(policy);
}

static void quiet(const char *message) {
    (void)message;
}

/* svm_train leaves the support vectors pointing into the caller's problem; copy them into one
 * block laid out the way svm_load_model lays them out, so the model owns them (free_sv = 1) and
 * svm_free_and_destroy_model releases everything, whichever way the model was made. */
static int own_support_vectors(struct svm_model *model) {
    if (model->l == 0) return 0;
    size_t total = 0;
    for (int i = 0; i < model->l; i++) {
        const struct svm_node *node = model->SV[i];
        while (node->index != -1) node++;
        total += (size_t)(node - model->SV[i]) + 1;
    }
    struct svm_node *block = malloc(total * sizeof *block);
    if (!block) return -1;
    struct svm_node *next = block;
    for (int i = 0; i < model->l; i++) {
        const struct svm_node *node = model->SV[i];
        model->SV[i] = next;
        for (;; node++) {
            *next++ = *node;
            if (node->index == -1) break;
        }
    }
    model->free_sv = 1;
    return 0;
}

/* Over the cap, keep whole examples spread evenly over the set (deterministic): every exit point
 * keeps its share, which a stride over observations could alias away. */
static int examples_to_keep(const exit_dataset *train) {
    int cap = SVM_MAX_SAMPLES / train->n_exits;
    if (cap < 1) cap = 1;
    return train->n_examples < cap ? train->n_examples : cap;
}

static const exit_observation *sample(const exit_dataset *train, int kept, size_t k) {
    size_t example = (size_t)((uint64_t)(k / train->n_exits) * train->n_examples / kept);
    return &train->observations[example * train->n_exits + k % train->n_exits];
}

static int sample_exit_index(const exit_dataset *train, size_t k) {
    return (int)(k % (size_t)train->n_exits);
}

static int fit_svm(exit_policy *policy, const exit_dataset *train, ramp_error *err) {
    int kept = examples_to_keep(train);
    size_t n = (size_t)kept * train->n_exits;
    double *y = malloc(n * sizeof *y);
    struct svm_node **x = malloc(n * sizeof *x);
    struct svm_node *nodes = malloc(n * SVM_NODES * sizeof *nodes);
    int status = -1;
    if (!y || !x || !nodes) {
        ramp_fail(err, "svm training: out of memory for %zu samples", n);
        goto done;
    }
    size_t positives = 0;
    for (size_t k = 0; k < n; k++) {
        const exit_observation *row = sample(train, kept, k);
        x[k] = nodes + k * SVM_NODES;
        fill_training_nodes(policy, sample_exit_index(train, k), row, x[k]);
        y[k] = row->stays ? 1 : -1;
        positives += row->stays;
    }
    if (positives == 0 || positives == n) {
        ramp_fail(err, "training set: expected samples that stay and samples that change, found %zu of %zu staying",
                  positives, n);
        goto done;
    }
    /* Most rows change their mind at early exit points: weigh each class by n / (2 n_class) so
     * the classifier cannot win by answering "no" everywhere. */
    int weight_labels[2] = {1, -1};
    double weights[2] = {(double)n / (2.0 * positives), (double)n / (2.0 * (n - positives))};
    struct svm_parameter param = {
        .svm_type = C_SVC, .kernel_type = RBF, .gamma = kernel_gamma(policy, x, n), .C = 1,
        .cache_size = SVM_CACHE_MB, .eps = 1e-3, .shrinking = 1, .probability = 0,
        .nr_weight = 2, .weight_label = weight_labels, .weight = weights,
    };
    struct svm_problem problem = {.l = (int)n, .y = y, .x = x};
    const char *rejected = svm_check_parameter(&problem, &param);
    if (rejected) {
        ramp_fail(err, "svm training: libsvm rejected the parameters: %s", rejected);
        goto done;
    }
    svm_set_print_string_function(quiet);
    struct svm_model *model = svm_train(&problem, &param);
    if (!model) {
        ramp_fail(err, "svm training: libsvm returned no model for %zu samples", n);
        goto done;
    }
    /* The model keeps a copy of param whose weight arrays live on this stack frame. */
    model->param.nr_weight = 0;
    model->param.weight_label = NULL;
    model->param.weight = NULL;
    if (own_support_vectors(model) != 0) {
        svm_free_and_destroy_model(&model);
        ramp_fail(err, "svm training: out of memory copying support vectors");
        goto done;
    }
    policy->svm = model;
    status = 0;
done:
    free(y);
    free(x);
    free(nodes);
    return status;
}

/* ---- SVM threshold ---- */

/* Lowering the threshold past `value` changes how many held-out examples agree by `delta`. */
typedef struct {
    double value;
    int delta;
} threshold_event;

static int compare_events_descending(const void *a, const void *b) {
    double x = ((const threshold_event *)a)->value, y = ((const threshold_event *)b)->value;
    return (x < y) - (x > y);
}

/* An example exits at the first point whose score reaches the threshold, i.e. where its running
 * maximum score does. As the threshold falls from +inf, the exit moves from full depth to the
 * point holding the overall maximum, then to each earlier point that set a new running maximum;
 * those moves change agreement. Every other score is a candidate threshold too, one that changes
 * nothing (delta 0). Writes n_exits events. */
static void example_events(const double *scores, const exit_observation *row, int n_exits, threshold_event *out) {
    bool record[EXIT_MAX_POINTS];
    double best = -INFINITY;
    for (int i = 0; i < n_exits; i++) {
        record[i] = scores[i] > best;
        if (record[i]) best = scores[i];
    }
    int agrees_now = 1; /* at full depth */
    for (int i = n_exits - 1; i >= 0; i--) {
        int delta = 0;
        if (record[i]) {
            delta = row[i].agrees_final - agrees_now;
            agrees_now = row[i].agrees_final;
        }
        out[i] = (threshold_event){scores[i], delta};
    }
}

/* Sweeps the candidates (every held-out score) from high to low and returns the lowest meeting
 * target, +inf (never exit) when none does. Agreement is not monotone in the threshold, pruning
 * is, so the lowest feasible threshold is the one that prunes most. */
static double lowest_feasible_threshold(const threshold_event *events, size_t n_events, int n_examples,
                                        double target) {
    double threshold = INFINITY;
    long agreeing = n_examples;
    for (size_t k = 0; k < n_events;) {
        double value = events[k].value;
        for (; k < n_events && events[k].value == value; k++) agreeing += events[k].delta;
        if ((double)agreeing / n_examples >= target) threshold = value;
    }
    return threshold;
}

static int choose_svm_threshold(exit_policy *policy, const exit_dataset *heldout, double target, ramp_error *err) {
    size_t rows = (size_t)heldout->n_examples * heldout->n_exits;
    double *scores = malloc(rows * sizeof *scores);
    threshold_event *events = malloc(rows * sizeof *events);
    if (!scores || !events) {
        free(scores);
        free(events);
        return ramp_fail(err, "svm threshold: out of memory for %zu held-out rows", rows);
    }
#pragma omp parallel for schedule(static)
    for (size_t r = 0; r < rows; r++)
        scores[r] = svm_score(policy, (int)(r % (size_t)heldout->n_exits), heldout->observations[r].features,
                              heldout->observations[r].top_token);
    for (int e = 0; e < heldout->n_examples; e++) {
        size_t first = (size_t)e * heldout->n_exits;
        example_events(scores + first, heldout->observations + first, heldout->n_exits, events + first);
    }
    qsort(events, rows, sizeof *events, compare_events_descending);
    policy->threshold = lowest_feasible_threshold(events, rows, heldout->n_examples, target);
    free(scores);
    free(events);
    return 0;
}

int exit_policy_train_svm(exit_policy *policy, const exit_dataset *train, const exit_dataset *heldout,
                          double target_agreement, ramp_error *err) {
    memset(policy, 0, sizeof *policy);
    if (check_dataset(train, "training set", err) || check_dataset(heldout, "held-out set", err) ||
        check_same_points(train, heldout, err) || check_target(target_agreement, err))
        return -1;
    exit_policy fresh = {.kind = EXIT_POLICY_SVM, .target_agreement = target_agreement};
    copy_points(&fresh, train);
    fit_scale(&fresh, train);
    if (fit_svm(&fresh, train, err)) return -1;
    if (svm_dense_build(&fresh.dense, fresh.svm, input_size(&fresh), err) ||
        choose_svm_threshold(&fresh, heldout, target_agreement, err)) {
        exit_policy_free(&fresh);
        return -1;
    }
    *policy = fresh;
    return 0;
}

/* ---- confidence calibration ---- */

typedef struct {
    double top_prob;
    bool agrees;
} confidence_row;

static int compare_rows_descending(const void *a, const void *b) {
    double x = ((const confidence_row *)a)->top_prob, y = ((const confidence_row *)b)->top_prob;
    return (x < y) - (x > y);
}

/* rows sorted by top_prob, highest first. The lowest top_prob t such that the rows at or above t
 * agree at the target rate, with enough of them to trust it; EXIT_CONF_NEVER when there is none. */
static double calibrate_point(const confidence_row *rows, int n, double target) {
    int min_support = (int)ceil(CONF_MIN_SHARE * n);
    if (min_support < CONF_MIN_ROWS) min_support = CONF_MIN_ROWS;
    double threshold = EXIT_CONF_NEVER;
    int agreeing = 0;
    for (int k = 0; k < n;) {
        double value = rows[k].top_prob;
        for (; k < n && rows[k].top_prob == value; k++) agreeing += rows[k].agrees;
        if (k >= min_support && (double)agreeing / k >= target) threshold = value;
    }
    return threshold;
}

int exit_policy_calibrate_confidence(exit_policy *policy, const exit_dataset *heldout, double target_agreement,
                                     ramp_error *err) {
    memset(policy, 0, sizeof *policy);
    if (check_dataset(heldout, "held-out set", err) || check_target(target_agreement, err)) return -1;
    int n = heldout->n_examples;
    confidence_row *rows = malloc((size_t)n * sizeof *rows);
    bool *exited = calloc((size_t)n, sizeof *exited);
    if (!rows || !exited) {
        free(rows);
        free(exited);
        return ramp_fail(err, "confidence calibration: out of memory for %d rows", n);
    }
    exit_policy fresh = {.kind = EXIT_POLICY_CONFIDENCE, .target_agreement = target_agreement};
    copy_points(&fresh, heldout);
    /* Exit points in order, each on the rows that earlier points let through: those are the
     * harder rows, and calibrating a point on all rows (as if it were the only one) would let
     * the chain of points exit far below the target. */
    for (int i = 0; i < heldout->n_exits; i++) {
        int m = 0;
        for (int e = 0; e < n; e++) {
            if (exited[e]) continue;
            const exit_observation *row = &heldout->observations[(size_t)e * heldout->n_exits + i];
            rows[m++] = (confidence_row){clean_feature(row->features[EXIT_FEATURE_TOP_PROB]), row->agrees_final};
        }
        qsort(rows, (size_t)m, sizeof *rows, compare_rows_descending);
        fresh.thresholds[i] = m > 0 ? calibrate_point(rows, m, target_agreement) : EXIT_CONF_NEVER;
        for (int e = 0; e < n; e++) {
            const exit_observation *row = &heldout->observations[(size_t)e * heldout->n_exits + i];
            if (clean_feature(row->features[EXIT_FEATURE_TOP_PROB]) >= fresh.thresholds[i]) exited[e] = true;
        }
    }
    free(rows);
    free(exited);
    *policy = fresh;
    return 0;
}

/* ---- saving ---- */

static json_t *int_array(const int *values, int n) {
    json_t *array = json_array();
    for (int i = 0; array && i < n; i++)
        if (json_array_append_new(array, json_integer(values[i])) != 0) {
            json_decref(array);
            return NULL;
        }
    return array;
}

/* NULL when a value is not finite (json_real refuses those). */
static json_t *real_array(const double *values, int n) {
    json_t *array = json_array();
    for (int i = 0; array && i < n; i++)
        if (json_array_append_new(array, json_real(values[i])) != 0) {
            json_decref(array);
            return NULL;
        }
    return array;
}

static json_t *string_array(const char *const *values, int n) {
    json_t *array = json_array();
    for (int i = 0; array && i < n; i++)
        if (json_array_append_new(array, json_string(values[i])) != 0) {
            json_decref(array);
            return NULL;
        }
    return array;
}

/* json_object_set_new releases value on failure; a NULL value (a failed constructor) fails too. */
static int set_key(json_t *object, const char *key, json_t *value) {
    return json_object_set_new(object, key, value) == 0 ? 0 : -1;
}

static json_t *common_json(const exit_policy *policy, const char *kind) {
    json_t *root = json_object();
    if (!root) return NULL;
    int bad = 0;
    bad |= set_key(root, "kind", json_string(kind));
    bad |= set_key(root, "format_version", json_integer(FORMAT_VERSION));
    bad |= set_key(root, "exit_layers", int_array(policy->exit_layers, policy->n_exits));
    bad |= set_key(root, "total_layers", json_integer(policy->total_layers));
    bad |= set_key(root, "target_agreement", json_real(policy->target_agreement));
    bad |= set_key(root, "model", json_string(policy->model_name));
    bad |= set_key(root, "task", json_string(policy->task));
    if (bad) {
        json_decref(root);
        return NULL;
    }
    return root;
}

static json_t *svm_sidecar_json(const exit_policy *policy) {
    json_t *root = common_json(policy, "svm");
    if (!root) return NULL;
    int bad = 0;
    bad |= set_key(root, "features", string_array(FEATURE_NAMES, EXIT_FEATURE_COUNT));
    bad |= set_key(root, "label_tokens", int_array(policy->label_tokens, policy->n_labels));
    bad |= set_key(root, "scale_min", real_array(policy->scale_min, EXIT_FEATURE_COUNT));
    bad |= set_key(root, "scale_max", real_array(policy->scale_max, EXIT_FEATURE_COUNT));
    /* JSON has no infinity: null is "never exit". */
    bad |= set_key(root, "threshold", isfinite(policy->threshold) ? json_real(policy->threshold) : json_null());
    if (bad) {
        json_decref(root);
        return NULL;
    }
    return root;
}

static json_t *confidence_json(const exit_policy *policy) {
    json_t *root = common_json(policy, "confidence");
    if (root && set_key(root, "thresholds", real_array(policy->thresholds, policy->n_exits)) != 0) {
        json_decref(root);
        return NULL;
    }
    return root;
}

static int write_json(json_t *root, const char *path, ramp_error *err) {
    if (!root) return ramp_fail(err, "%s: could not encode the policy (a value is not finite?)", path);
    int status = json_dump_file(root, path, JSON_INDENT(2) | JSON_REAL_PRECISION(17));
    json_decref(root);
    if (status != 0) return ramp_fail(err, "%s: could not write the file", path);
    return 0;
}

/* PATH + ".json" into out; -1 when it does not fit. */
static int sidecar_path(const char *path, char *out, size_t size) {
    int length = snprintf(out, size, "%s.json", path);
    return length >= 0 && (size_t)length < size ? 0 : -1;
}

int exit_policy_save(const exit_policy *policy, const char *path, ramp_error *err) {
    if (policy->kind == EXIT_POLICY_CONFIDENCE) return write_json(confidence_json(policy), path, err);
    if (policy->kind != EXIT_POLICY_SVM || !policy->svm)
        return ramp_fail(err, "%s: expected an svm or confidence policy to save, found none", path);
    char sidecar[4096];
    if (sidecar_path(path, sidecar, sizeof sidecar) != 0) return ramp_fail(err, "%s: path too long", path);
    if (svm_save_model(path, policy->svm) != 0) return ramp_fail(err, "%s: libsvm could not write the model", path);
    return write_json(svm_sidecar_json(policy), sidecar, err);
}

/* ---- loading ---- */

static const char *json_type_name(const json_t *value) {
    switch (json_typeof(value)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    default: return "null";
    }
}

/* Policy files are a few KiB; anything far larger is not one. */
#define POLICY_JSON_MAX_BYTES ((size_t)1 << 20)

static json_t *read_json(const char *path, ramp_error *err) {
    const input_limits limits = {.what = "JSON policy file", .max_bytes = POLICY_JSON_MAX_BYTES};
    char *text;
    size_t size;
    if (input_file_read(path, &limits, &text, &size, err)) return NULL;
    json_error_t error;
    json_t *root = json_loadb(text, size, 0, &error);
    free(text);
    if (!root) {
        ramp_fail(err, "%s: expected JSON, line %d: %s", path, error.line, error.text);
        return NULL;
    }
    if (!json_is_object(root)) {
        ramp_fail(err, "%s: expected a JSON object, found %s", path, json_type_name(root));
        json_decref(root);
        return NULL;
    }
    return root;
}

static json_t *get_key(const char *path, const json_t *root, const char *key, ramp_error *err) {
    json_t *value = json_object_get(root, key);
    if (!value) ramp_fail(err, "%s: missing key '%s'", path, key);
    return value;
}

static int get_number(const char *path, const json_t *root, const char *key, double *out, ramp_error *err) {
    json_t *value = get_key(path, root, key, err);
    if (!value) return -1;
    if (!json_is_number(value))
        return ramp_fail(err, "%s: key '%s' expected a number, found %s", path, key, json_type_name(value));
    *out = json_number_value(value);
    return 0;
}

static int get_int(const char *path, const json_t *root, const char *key, int *out, ramp_error *err) {
    json_t *value = get_key(path, root, key, err);
    if (!value) return -1;
    if (!json_is_integer(value))
        return ramp_fail(err, "%s: key '%s' expected an integer, found %s", path, key, json_type_name(value));
    json_int_t number = json_integer_value(value);
    if (number < -1000000000 || number > 1000000000)
        return ramp_fail(err, "%s: key '%s' is out of range: %lld", path, key, (long long)number);
    *out = (int)number;
    return 0;
}

static int get_string(const char *path, const json_t *root, const char *key, char *out, size_t size,
                      ramp_error *err) {
    json_t *value = get_key(path, root, key, err);
    if (!value) return -1;
    if (!json_is_string(value))
        return ramp_fail(err, "%s: key '%s' expected a string, found %s", path, key, json_type_name(value));
    if (json_string_length(value) >= size)
        return ramp_fail(err, "%s: key '%s' expected at most %zu characters, found %zu", path, key, size - 1,
                         json_string_length(value));
    memcpy(out, json_string_value(value), json_string_length(value) + 1);
    return 0;
}

/* The array under key, with between min_n and max_n elements. */
static json_t *get_array(const char *path, const json_t *root, const char *key, size_t min_n, size_t max_n,
                         ramp_error *err) {
    json_t *value = get_key(path, root, key, err);
    if (!value) return NULL;
    if (!json_is_array(value)) {
        ramp_fail(err, "%s: key '%s' expected an array, found %s", path, key, json_type_name(value));
        return NULL;
    }
    size_t n = json_array_size(value);
    if (n < min_n || n > max_n) {
        if (min_n == max_n)
            ramp_fail(err, "%s: key '%s' expected %zu elements, found %zu", path, key, min_n, n);
        else
            ramp_fail(err, "%s: key '%s' expected %zu..%zu elements, found %zu", path, key, min_n, max_n, n);
        return NULL;
    }
    return value;
}

static int get_number_array(const char *path, const json_t *root, const char *key, double *out, size_t n,
                            ramp_error *err) {
    json_t *array = get_array(path, root, key, n, n, err);
    if (!array) return -1;
    for (size_t i = 0; i < n; i++) {
        json_t *value = json_array_get(array, i);
        if (!json_is_number(value))
            return ramp_fail(err, "%s: key '%s' element %zu expected a number, found %s", path, key, i,
                             json_type_name(value));
        out[i] = json_number_value(value);
    }
    return 0;
}

static int load_exit_layers(const char *path, const json_t *root, exit_policy *policy, ramp_error *err) {
    json_t *array = get_array(path, root, "exit_layers", 1, EXIT_MAX_POINTS, err);
    if (!array) return -1;
    policy->n_exits = (int)json_array_size(array);
    for (int i = 0; i < policy->n_exits; i++) {
        json_t *value = json_array_get(array, (size_t)i);
        if (!json_is_integer(value))
            return ramp_fail(err, "%s: key 'exit_layers' element %d expected an integer, found %s", path, i,
                             json_type_name(value));
        json_int_t layer = json_integer_value(value);
        int previous = i > 0 ? policy->exit_layers[i - 1] : 0;
        if (layer <= previous || layer > policy->total_layers)
            return ramp_fail(err, "%s: key 'exit_layers' element %d is %lld, expected increasing layer counts in 1..%d",
                             path, i, (long long)layer, policy->total_layers);
        policy->exit_layers[i] = (int)layer;
    }
    return 0;
}

/* The keys both kinds share. */
static int load_common(const char *path, const json_t *root, const char *kind, exit_policy *policy,
                       ramp_error *err) {
    char found_kind[32];
    int version = 0;
    if (get_string(path, root, "kind", found_kind, sizeof found_kind, err)) return -1;
    if (strcmp(found_kind, kind) != 0)
        return ramp_fail(err, "%s: key 'kind' expected \"%s\", found \"%s\"", path, kind, found_kind);
    if (get_int(path, root, "format_version", &version, err)) return -1;
    if (version != FORMAT_VERSION)
        return ramp_fail(err, "%s: key 'format_version' expected %d, found %d", path, FORMAT_VERSION, version);
    if (get_int(path, root, "total_layers", &policy->total_layers, err)) return -1;
    if (policy->total_layers <= 0)
        return ramp_fail(err, "%s: key 'total_layers' expected a positive count, found %d", path,
                         policy->total_layers);
    if (load_exit_layers(path, root, policy, err)) return -1;
    if (get_number(path, root, "target_agreement", &policy->target_agreement, err)) return -1;
    if (!(policy->target_agreement >= 0 && policy->target_agreement <= 1))
        return ramp_fail(err, "%s: key 'target_agreement' expected 0..1, found %g", path, policy->target_agreement);
    if (get_string(path, root, "model", policy->model_name, sizeof policy->model_name, err)) return -1;
    return get_string(path, root, "task", policy->task, sizeof policy->task, err);
}

static int load_confidence_json(exit_policy *policy, const char *path, const json_t *root, ramp_error *err) {
    exit_policy fresh = {.kind = EXIT_POLICY_CONFIDENCE};
    if (load_common(path, root, "confidence", &fresh, err) ||
        get_number_array(path, root, "thresholds", fresh.thresholds, (size_t)fresh.n_exits, err) ||
        policy_check_common(&fresh, path, err) || policy_check_confidence(&fresh, path, err))
        return -1;
    *policy = fresh;
    return 0;
}

/* Feature names must match ours exactly: a model scaled for other features would score garbage. */
static int load_feature_names(const char *path, const json_t *root, ramp_error *err) {
    json_t *array = get_array(path, root, "features", EXIT_FEATURE_COUNT, EXIT_FEATURE_COUNT, err);
    if (!array) return -1;
    for (int j = 0; j < EXIT_FEATURE_COUNT; j++) {
        const char *name = json_string_value(json_array_get(array, (size_t)j));
        if (!name || strcmp(name, FEATURE_NAMES[j]) != 0)
            return ramp_fail(err, "%s: key 'features' element %d expected \"%s\", found %s", path, j,
                             FEATURE_NAMES[j], name ? name : "a non-string");
    }
    return 0;
}

static int load_label_tokens(const char *path, const json_t *root, exit_policy *policy, ramp_error *err) {
    json_t *array = get_array(path, root, "label_tokens", 0, EXIT_MAX_LABELS, err);
    if (!array) return -1;
    policy->n_labels = (int)json_array_size(array);
    for (int l = 0; l < policy->n_labels; l++) {
        json_t *value = json_array_get(array, (size_t)l);
        if (!json_is_integer(value) || json_integer_value(value) < 0 || json_integer_value(value) > 100000000)
            return ramp_fail(err, "%s: key 'label_tokens' element %d expected a token id, found %s", path, l,
                             json_type_name(value));
        policy->label_tokens[l] = (int)json_integer_value(value);
    }
    return 0;
}

static int load_threshold(const char *path, const json_t *root, double *threshold, ramp_error *err) {
    json_t *value = get_key(path, root, "threshold", err);
    if (!value) return -1;
    if (json_is_null(value)) {
        *threshold = INFINITY;
        return 0;
    }
    return get_number(path, root, "threshold", threshold, err);
}

static int load_svm_json(exit_policy *policy, const char *model_path, const char *path, const json_t *root,
                         ramp_error *err) {
    exit_policy fresh = {.kind = EXIT_POLICY_SVM};
    if (load_common(path, root, "svm", &fresh, err) || load_feature_names(path, root, err) ||
        load_label_tokens(path, root, &fresh, err) ||
        get_number_array(path, root, "scale_min", fresh.scale_min, EXIT_FEATURE_COUNT, err) ||
        get_number_array(path, root, "scale_max", fresh.scale_max, EXIT_FEATURE_COUNT, err) ||
        load_threshold(path, root, &fresh.threshold, err) || policy_check_common(&fresh, path, err) ||
        policy_check_svm_sidecar(&fresh, path, err))
        return -1;
    /* Read by our own parser, never by libsvm's svm_load_model (see svm_model_file.h); the C-SVC
     * trained here has C = 1 and class weights of at most half the samples. */
    const svm_file_limits limits = {.max_index = input_size(&fresh), .max_vectors = SVM_MAX_SAMPLES,
                                    .max_coefficient = SVM_MAX_SAMPLES};
    if (svm_model_read(model_path, &limits, &fresh.svm, err)) return -1;
    int status = policy_check_svm_vectors(&fresh, model_path, err);
    if (!status && svm_dense_build(&fresh.dense, fresh.svm, input_size(&fresh), err))
        status = ramp_fail_prefix(err, "%s: ", model_path);
    if (status) {
        exit_policy_free(&fresh);
        return -1;
    }
    *policy = fresh;
    return 0;
}

static int load_confidence_file(exit_policy *policy, const char *path, ramp_error *err) {
    json_t *root = read_json(path, err);
    if (!root) return -1;
    int status = load_confidence_json(policy, path, root, err);
    json_decref(root);
    return status;
}

static int load_svm_file(exit_policy *policy, const char *model_path, ramp_error *err) {
    char sidecar[4096];
    if (sidecar_path(model_path, sidecar, sizeof sidecar) != 0)
        return ramp_fail(err, "%s: path too long", model_path);
    json_t *root = read_json(sidecar, err);
    if (!root) return -1;
    int status = load_svm_json(policy, model_path, sidecar, root, err);
    json_decref(root);
    return status;
}

static bool ends_with(const char *text, const char *suffix) {
    size_t n = strlen(text), m = strlen(suffix);
    return n >= m && strcmp(text + n - m, suffix) == 0;
}

/* A bare PATH: an SVM when PATH.json exists; otherwise PATH is a JSON policy, either a confidence
 * policy or an SVM sidecar named as such (then the libsvm file is PATH without ".json"). */
static int load_detected(exit_policy *policy, const char *path, ramp_error *err) {
    char sidecar[4096];
    if (sidecar_path(path, sidecar, sizeof sidecar) != 0) return ramp_fail(err, "%s: path too long", path);
    if (access(sidecar, F_OK) == 0) return load_svm_file(policy, path, err);
    if (access(path, F_OK) != 0) return ramp_fail(err, "%s: no such policy file (nor a sidecar %s)", path, sidecar);
    json_t *root = read_json(path, err);
    if (!root) return ramp_fail_prefix(err, "%s: no sidecar %s, so expected a JSON policy: ", path, sidecar);
    const char *kind = json_string_value(json_object_get(root, "kind"));
    int status;
    if (kind && strcmp(kind, "svm") == 0 && ends_with(path, ".json")) {
        char model_path[4096];
        snprintf(model_path, sizeof model_path, "%.*s", (int)(strlen(path) - strlen(".json")), path);
        status = load_svm_json(policy, model_path, path, root, err);
    } else if (kind && strcmp(kind, "svm") == 0) {
        status = ramp_fail(err, "%s: an svm sidecar, expected to be named MODEL.json next to its libsvm MODEL", path);
    } else {
        status = load_confidence_json(policy, path, root, err);
    }
    json_decref(root);
    return status;
}

int exit_policy_load(exit_policy *policy, const char *spec, ramp_error *err) {
    memset(policy, 0, sizeof *policy);
    if (!spec || !*spec) return ramp_fail(err, "exit policy: expected svm:PATH, conf:PATH or PATH, found nothing");
    if (strncmp(spec, "svm:", 4) == 0) return load_svm_file(policy, spec + 4, err);
    if (strncmp(spec, "conf:", 5) == 0) return load_confidence_file(policy, spec + 5, err);
    return load_detected(policy, spec, err);
}

void exit_policy_free(exit_policy *policy) {
    if (!policy) return;
    if (policy->svm) svm_free_and_destroy_model(&policy->svm);
    svm_dense_free(&policy->dense);
    memset(policy, 0, sizeof *policy);
}
