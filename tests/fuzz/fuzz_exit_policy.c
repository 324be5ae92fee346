/* fuzz_exit_policy.c: exit policy files from outside (exit_policy.h): libsvm classifier files with
 * their JSON sidecars, and confidence threshold files.
 *
 * Input layouts, by the first byte:
 *  'c'        the rest is a confidence policy (JSON), loaded as conf:PATH;
 *  'p'        the rest is a libsvm model file, parsed alone (svm_model_parse, 15 inputs);
 *  otherwise  the input is a libsvm model file, a NUL byte, then its sidecar, loaded as svm:PATH
 *             (no NUL: the whole input is the model file, with no sidecar).
 * Properties: whatever loads is sound: it scores any features (NaN, infinite, out of range) and
 * saves to files that load again with the same decisions; whatever fails says so in one clean line
 * naming the file. Seeds: tests/fuzz/seeds.sh trains a classifier and calibrates thresholds on the
 * shared lite16 model. */
#include <math.h>
#include <svm.h>

#include "exit_policy.h"
#include "fuzz.h"
#include "svm_model_file.h"

/* Rows every loaded policy must score: typical, degenerate and hostile feature values. */
static void exit_fuzz_rows(float rows[4][EXIT_FEATURE_COUNT]) {
    for (int j = 0; j < EXIT_FEATURE_COUNT; j++) {
        rows[0][j] = 0.7f;
        rows[1][j] = NAN;
        rows[2][j] = j % 2 ? INFINITY : -1e30f;
        rows[3][j] = 0.0f;
    }
}

static int exit_fuzz_decisions(const exit_policy *policy, unsigned *bits) {
    float rows[4][EXIT_FEATURE_COUNT];
    exit_fuzz_rows(rows);
    int n = 0;
    *bits = 0;
    for (int r = 0; r < 4; r++)
        for (int i = 0; i < policy->n_exits && n < 32; i++, n++) {
            int token = policy->n_labels > 0 ? policy->label_tokens[r % policy->n_labels] : 0;
            *bits |= (unsigned)exit_policy_should_exit(policy, i, rows[r], token) << n;
        }
    return n;
}

/* A loaded policy saves, and what it saves loads again with the same header and decisions. */
static void exit_fuzz_round_trip(const exit_policy *policy) {
    unsigned before, after;
    exit_fuzz_decisions(policy, &before);
    char path[128];
    fuzz_scratch_path("saved-policy", path, sizeof path);
    ramp_error err = {{0}};
    fuzz_require(exit_policy_save(policy, path, &err) == 0, "a loaded policy does not save: %s", err.message);
    exit_policy again;
    char spec[160];
    snprintf(spec, sizeof spec, "%s:%s", policy->kind == EXIT_POLICY_SVM ? "svm" : "conf", path);
    fuzz_require(exit_policy_load(&again, spec, &err) == 0, "a saved policy does not load again: %s", err.message);
    fuzz_require(again.n_exits == policy->n_exits && again.total_layers == policy->total_layers &&
                     again.threshold == policy->threshold,
                 "the reloaded policy differs");
    exit_fuzz_decisions(&again, &after);
    fuzz_require(before == after, "the reloaded policy decides differently (%x vs %x)", before, after);
    exit_policy_free(&again);
}

static void exit_fuzz_load(const char *spec, const char *path) {
    exit_policy policy;
    ramp_error err = {{0}};
    if (exit_policy_load(&policy, spec, &err) != 0) {
        fuzz_require_clean_message(&err);
        fuzz_require(strstr(err.message, path) != NULL || strstr(err.message, "ramp-fuzz") != NULL,
                     "the message does not name the file: %s", err.message);
        fuzz_require(policy.kind == EXIT_POLICY_NONE && policy.svm == NULL, "a failed load left a policy behind");
        return;
    }
    exit_fuzz_round_trip(&policy);
    exit_policy_free(&policy);
}

static int fuzz_exit_policy(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    char model_path[128], sidecar_path[160], spec[200];
    fuzz_scratch_path("policy", model_path, sizeof model_path);
    snprintf(sidecar_path, sizeof sidecar_path, "%s.json", model_path);
    if (data[0] == 'c') {
        fuzz_write_file(model_path, data + 1, size - 1);
        snprintf(spec, sizeof spec, "conf:%s", model_path);
        exit_fuzz_load(spec, model_path);
        return 0;
    }
    if (data[0] == 'p') {
        const svm_file_limits limits = {.max_index = 15, .max_vectors = 36000, .max_coefficient = 36000};
        struct svm_model *model = NULL;
        ramp_error err = {{0}};
        if (svm_model_parse((const char *)data + 1, size - 1, "fuzz.svm", &limits, &model, &err) == 0) {
            fuzz_require(model->l >= 2 && model->rho && model->label && model->nSV, "an incomplete model was built");
            svm_free_and_destroy_model(&model);
        } else {
            fuzz_require_clean_message(&err);
        }
        return 0;
    }
    const uint8_t *nul = memchr(data, '\0', size);
    size_t model_size = nul ? (size_t)(nul - data) : size;
    fuzz_write_file(model_path, data, model_size);
    if (nul) fuzz_write_file(sidecar_path, nul + 1, size - model_size - 1);
    else unlink(sidecar_path);
    snprintf(spec, sizeof spec, "svm:%s", model_path);
    exit_fuzz_load(spec, model_path);
    return 0;
}

FUZZ_ENTRY(fuzz_exit_policy)
