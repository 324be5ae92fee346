#include "policy_check.h"

#include <math.h>
#include <stdbool.h>
#include <string.h>
#include <svm.h>

#include "task.h"

/* Slack for values that went through float arithmetic (softmax can sum to 1 + 1e-7) and, for
 * scaled inputs, through the trainer's 1e-6 grid and libsvm's 8 printed digits. */
#define FEATURE_SLACK 1e-6
#define SCALED_SLACK 2e-6
#define MAX_ENTROPY 16.0 /* nats; ln of the largest vocabulary a model may have (2^22) is 15.2 */
#define MAX_TOKEN (1 << 22)

int policy_check_common(const exit_policy *policy, const char *path, ramp_error *err) {
    if (policy->total_layers < 2 || policy->total_layers > EXIT_MAX_TOTAL_LAYERS)
        return ramp_fail(err, "%s: key 'total_layers' expected 2..%d layers, found %d", path, EXIT_MAX_TOTAL_LAYERS,
                         policy->total_layers);
    for (int i = 0; i < policy->n_exits; i++) {
        int previous = i > 0 ? policy->exit_layers[i - 1] : 0;
        if (policy->exit_layers[i] <= previous || policy->exit_layers[i] >= policy->total_layers)
            return ramp_fail(err, "%s: key 'exit_layers' element %d is %d, expected increasing layer counts in 1..%d "
                                  "(an exit after the last of %d layers is no exit)",
                             path, i, policy->exit_layers[i], policy->total_layers - 1, policy->total_layers);
    }
    bool generation = policy->kind == EXIT_POLICY_CONFIDENCE && strcmp(policy->task, "generation") == 0;
    if (!generation && task_label_count(policy->task) < 0)
        return ramp_fail(err, "%s: key 'task' expected sst2, trec, agnews or rte%s, found \"%s\"", path,
                         policy->kind == EXIT_POLICY_CONFIDENCE ? " (or generation)" : "", policy->task);
    return 0;
}

/* The range a raw feature can take. */
static void feature_range(int j, double *lowest, double *highest) {
    *lowest = 0;
    *highest = 1;
    if (j == EXIT_FEATURE_ENTROPY) *highest = MAX_ENTROPY;
}

static double exit_depth(const exit_policy *policy, int i) {
    /* As exit_run computes the feature: in float. */
    return (double)((float)policy->exit_layers[i] / (float)policy->total_layers);
}

static int check_labels(const exit_policy *policy, const char *path, ramp_error *err) {
    int expected = task_label_count(policy->task);
    if (policy->n_labels != expected)
        return ramp_fail(err, "%s: key 'label_tokens' expected %d tokens (task %s has %d labels), found %d", path,
                         expected, policy->task, expected, policy->n_labels);
    for (int l = 0; l < policy->n_labels; l++) {
        if (policy->label_tokens[l] < 0 || policy->label_tokens[l] >= MAX_TOKEN)
            return ramp_fail(err, "%s: key 'label_tokens' element %d expected a token id in 0..%d, found %d", path, l,
                             MAX_TOKEN - 1, policy->label_tokens[l]);
        for (int k = 0; k < l; k++)
            if (policy->label_tokens[k] == policy->label_tokens[l])
                return ramp_fail(err, "%s: key 'label_tokens' elements %d and %d are both %d, expected distinct tokens",
                                 path, k, l, policy->label_tokens[l]);
    }
    return 0;
}

static int check_scale(const exit_policy *policy, const char *path, ramp_error *err) {
    for (int j = 0; j < EXIT_FEATURE_COUNT; j++) {
        double lowest, highest, min = policy->scale_min[j], max = policy->scale_max[j];
        feature_range(j, &lowest, &highest);
        const char *name = exit_feature_name(j);
        if (!isfinite(min) || !isfinite(max) || min < lowest - FEATURE_SLACK || max > highest + FEATURE_SLACK)
            return ramp_fail(err, "%s: keys 'scale_min'/'scale_max' element %d (%s) expected bounds in %g..%g, found %g..%g",
                             path, j, name, lowest, highest, min, max);
        if (min > max)
            return ramp_fail(err, "%s: keys 'scale_min'/'scale_max' element %d (%s) expected min <= max, found %g > %g",
                             path, j, name, min, max);
    }
    if (!(policy->scale_max[EXIT_FEATURE_TOP_PROB] > policy->scale_min[EXIT_FEATURE_TOP_PROB]))
        return ramp_fail(err, "%s: keys 'scale_min'/'scale_max' element %d (top_prob) expected a range that varied in "
                              "training, found %g..%g",
                         path, EXIT_FEATURE_TOP_PROB, policy->scale_min[EXIT_FEATURE_TOP_PROB],
                         policy->scale_max[EXIT_FEATURE_TOP_PROB]);
    /* Every exit point is in the training data, so depth ran exactly from the first to the last. */
    double first = exit_depth(policy, 0), last = exit_depth(policy, policy->n_exits - 1);
    if (fabs(policy->scale_min[EXIT_FEATURE_DEPTH] - first) > FEATURE_SLACK ||
        fabs(policy->scale_max[EXIT_FEATURE_DEPTH] - last) > FEATURE_SLACK)
        return ramp_fail(err, "%s: keys 'scale_min'/'scale_max' element %d (depth) are %g..%g, expected %g..%g for exit "
                              "layers %d..%d of %d (exit_layers or total_layers differ from the training run)",
                         path, EXIT_FEATURE_DEPTH, policy->scale_min[EXIT_FEATURE_DEPTH],
                         policy->scale_max[EXIT_FEATURE_DEPTH], first, last, policy->exit_layers[0],
                         policy->exit_layers[policy->n_exits - 1], policy->total_layers);
    return 0;
}

int policy_check_svm_sidecar(const exit_policy *policy, const char *path, ramp_error *err) {
    if (!isfinite(policy->threshold) && !(isinf(policy->threshold) && policy->threshold > 0))
        return ramp_fail(err, "%s: key 'threshold' expected a finite number or null (never exit), found %g", path,
                         policy->threshold);
    return check_labels(policy, path, err) || check_scale(policy, path, err) ? -1 : 0;
}

/* Scaled as exit_policy scores: (value - min) / range, 0 when the feature never varied. */
static double scaled(const exit_policy *policy, int j, double value) {
    double range = policy->scale_max[j] - policy->scale_min[j];
    return range > 0 ? (value - policy->scale_min[j]) / range : 0.0;
}

static int check_vector(const exit_policy *policy, const char *path, int v, const struct svm_node *nodes,
                        ramp_error *err) {
    const int first_exit = EXIT_FEATURE_COUNT + 1, first_label = first_exit + policy->n_exits;
    double features[EXIT_FEATURE_COUNT] = {0};
    int exit_index = -1, label = -1;
    for (const struct svm_node *node = nodes; node->index != -1; node++) {
        if (node->index < first_exit) {
            int j = node->index - 1;
            double range = policy->scale_max[j] - policy->scale_min[j];
            bool ok = range > 0 ? node->value >= -SCALED_SLACK && node->value <= 1 + SCALED_SLACK
                                : fabs(node->value) <= SCALED_SLACK;
            if (!ok)
                return ramp_fail(err, "%s: support vector %d: input %d (%s) is %g, expected %s (the sidecar's scaling)",
                                 path, v + 1, node->index, exit_feature_name(j), node->value,
                                 range > 0 ? "a scaled value in 0..1" : "0 (a feature that never varied)");
            features[j] = node->value;
            continue;
        }
        bool is_exit = node->index < first_label;
        if (node->value != 1.0 || (is_exit ? exit_index : label) >= 0)
            return ramp_fail(err, "%s: support vector %d: input %d is %g, expected a single %s one-hot of value 1", path,
                             v + 1, node->index, node->value, is_exit ? "exit-point" : "label");
        if (is_exit) exit_index = node->index - first_exit;
        else label = node->index - first_label;
    }
    if (exit_index < 0)
        return ramp_fail(err, "%s: support vector %d: no exit-point one-hot (inputs %d..%d), expected one", path, v + 1,
                         first_exit, first_label - 1);
    double depth = scaled(policy, EXIT_FEATURE_DEPTH, exit_depth(policy, exit_index));
    if (fabs(features[EXIT_FEATURE_DEPTH] - depth) > SCALED_SLACK)
        return ramp_fail(err, "%s: support vector %d: input %d (depth) is %g, expected %g for exit point %d (after %d of "
                              "%d layers)",
                         path, v + 1, EXIT_FEATURE_DEPTH + 1, features[EXIT_FEATURE_DEPTH], depth, exit_index,
                         policy->exit_layers[exit_index], policy->total_layers);
    return 0;
}

int policy_check_svm_vectors(const exit_policy *policy, const char *model_path, ramp_error *err) {
    const struct svm_model *model = policy->svm;
    for (int v = 0; v < model->l; v++)
        if (check_vector(policy, model_path, v, model->SV[v], err)) return -1;
    return 0;
}

int policy_check_confidence(const exit_policy *policy, const char *path, ramp_error *err) {
    for (int i = 0; i < policy->n_exits; i++) {
        double t = policy->thresholds[i];
        if (!(t >= 0 && t <= 1) && t != EXIT_CONF_NEVER)
            return ramp_fail(err, "%s: key 'thresholds' element %d expected a probability in 0..1 (or %g: never), found %g",
                             path, i, EXIT_CONF_NEVER, t);
    }
    return 0;
}

int exit_policy_check_use(const exit_policy *policy, const char *spec, const exit_policy_use *use, ramp_error *err) {
    if (policy->kind == EXIT_POLICY_NONE) return 0;
    if (policy->total_layers != use->n_layers)
        return ramp_fail(err, "%s: made for a model of %d layers (total_layers), this model has %d", spec,
                         policy->total_layers, use->n_layers);
    for (int l = 0; l < policy->n_labels; l++)
        if (policy->label_tokens[l] >= use->vocab_size)
            return ramp_fail(err, "%s: label token %d is outside this model's vocabulary of %d tokens", spec,
                             policy->label_tokens[l], use->vocab_size);
    /* The SVM reads the top-1 as one of its task's labels: another task's labels would be noise. */
    if (policy->kind == EXIT_POLICY_SVM && use->task &&
        (strcmp(policy->task, use->task) != 0 || policy->n_labels != use->n_labels ||
         memcmp(policy->label_tokens, use->label_tokens, (size_t)use->n_labels * sizeof *use->label_tokens) != 0))
        return ramp_fail(err, "%s: classifier trained for task '%s' (%d label tokens), expected one for '%s' with this "
                              "model's %d label tokens",
                         spec, policy->task, policy->n_labels, use->task, use->n_labels);
    return 0;
}
