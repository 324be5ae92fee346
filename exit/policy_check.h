/* policy_check.h: what a loaded exit policy must satisfy before anything scores with it (used by
 * exit_policy.c's loader; the check against a run is exit_policy_check_use in exit_policy.h).
 *
 * The JSON getters check each field's type and shape; these check values and how they fit
 * together, so that a damaged or hand-edited file fails with a message naming the file and the
 * field instead of making silently different decisions:
 *  - both kinds: total_layers 1..EXIT_MAX_TOTAL_LAYERS, exit layers increasing in 1..total - 1,
 *    a known task (confidence policies may also say "generation");
 *  - svm sidecar: as many distinct label tokens as the task has labels; every scale bound finite,
 *    min <= max, inside the feature's possible range; top_prob must have varied in training; the
 *    depth bounds must be the first and last exit point's depth (exit layer / total_layers), which
 *    ties exit_layers and total_layers to what the classifier was trained on;
 *  - svm vectors against the sidecar: features scaled into [0, 1] (exactly 0 for a feature that
 *    never varied), exactly one exit-point one-hot and at most one label one-hot, each 1, and the
 *    depth input equal to the scaled depth of that exit point;
 *  - confidence thresholds: each in 0..1, or EXIT_CONF_NEVER (never exit).
 */
#ifndef RAMP_POLICY_CHECK_H
#define RAMP_POLICY_CHECK_H

#include "exit_policy.h"

/* Both kinds; path is the JSON file (sidecar or confidence policy). */
int policy_check_common(const exit_policy *policy, const char *path, ramp_error *err);
int policy_check_svm_sidecar(const exit_policy *policy, const char *path, ramp_error *err);
/* policy->svm as read from model_path against the sidecar already checked. */
int policy_check_svm_vectors(const exit_policy *policy, const char *model_path, ramp_error *err);
int policy_check_confidence(const exit_policy *policy, const char *path, ramp_error *err);

#endif
