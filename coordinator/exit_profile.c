#include "exit_profile.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "split.h"

int exit_profile_from_depths(exit_profile *profile, int n_layers, const long *rows, const int *depths, int n,
                             const char *source, ramp_error *err) {
    memset(profile, 0, sizeof *profile);
    if (n_layers < 1) return ramp_fail(err, "exit profile: a model of %d layers", n_layers);
    long *stopping = calloc((size_t)n_layers + 1, sizeof *stopping); /* rows whose last layer is d - 1 */
    profile->reach = calloc((size_t)n_layers, sizeof *profile->reach);
    if (!stopping || !profile->reach) {
        free(stopping);
        exit_profile_free(profile);
        return ramp_fail(err, "exit profile: out of memory");
    }
    long total = 0;
    for (int i = 0; i < n; i++) {
        if (depths[i] < 1 || depths[i] > n_layers || rows[i] < 0) {
            free(stopping);
            exit_profile_free(profile);
            return ramp_fail(err, "exit profile: request %d ran %ld rows through %d layers, expected 1..%d layers", i,
                             rows[i], depths[i], n_layers);
        }
        stopping[depths[i]] += rows[i];
        total += rows[i];
    }
    if (total == 0) {
        free(stopping);
        exit_profile_free(profile);
        return ramp_fail(err, "exit profile: no rows to measure");
    }
    long reaching = total; /* rows that run layer l: those whose depth is above l */
    for (int l = 0; l < n_layers; l++) {
        reaching -= stopping[l];
        profile->reach[l] = (double)reaching / (double)total;
    }
    free(stopping);
    profile->n_layers = n_layers;
    profile->rows = total;
    snprintf(profile->source, sizeof profile->source, "%s", source ? source : "");
    return 0;
}

json_t *exit_profile_json(const exit_profile *profile) {
    json_t *reach = json_array();
    for (int l = 0; reach && l < profile->n_layers; l++) json_array_append_new(reach, json_real(profile->reach[l]));
    return json_pack("{s:i, s:I, s:o, s:s}", "layers", profile->n_layers, "rows", (json_int_t)profile->rows, "reach",
                     reach, "source", profile->source);
}

static bool is_json_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return false;
    int c;
    while ((c = fgetc(f)) == ' ' || c == '\n' || c == '\r' || c == '\t') {
    }
    fclose(f);
    return c == '{';
}

/* What stands at path when it is not a JSON object, for the error message. */
static const char *describe_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return access(path, F_OK) == 0 ? "cannot be read" : "does not exist";
    fclose(f);
    return "is not a JSON object";
}

int exit_profile_read(exit_profile *profile, const char *path, int n_layers, ramp_error *err) {
    memset(profile, 0, sizeof *profile);
    char sidecar[4096];
    const char *file = path;
    if (!is_json_file(path)) { /* a classifier: its profile is in the sidecar */
        snprintf(sidecar, sizeof sidecar, "%s.json", path);
        if (!is_json_file(sidecar))
            return ramp_fail(err, "%s: expected a JSON file with an exit profile (an eval --json result, a "
                                  "classifier's .json sidecar or a thresholds file), but it %s and %s %s",
                             path, describe_file(path), sidecar, describe_file(sidecar));
        file = sidecar;
    }
    json_error_t error;
    json_t *root = json_load_file(file, 0, &error);
    if (!root) return ramp_fail(err, "%s: not valid JSON (line %d: %s)", file, error.line, error.text);
    json_t *object = json_object_get(root, "exit_profile");
    json_t *reach = object ? json_object_get(object, "reach") : NULL;
    int status = 0;
    if (!json_is_object(object)) {
        status = ramp_fail(err, "%s: expected an \"exit_profile\" object (written by eval --json, exit-train and "
                                "exit-calibrate on a task), found %s", file, object ? "another type" : "none");
    } else if (!json_is_array(reach)) {
        status = ramp_fail(err, "%s: exit_profile: expected \"reach\", an array of shares per layer, found %s", file,
                           reach ? "another type" : "none");
    } else {
        int n = (int)json_array_size(reach);
        profile->reach = calloc((size_t)(n ? n : 1), sizeof *profile->reach);
        if (!profile->reach) status = ramp_fail(err, "exit profile: out of memory");
        for (int l = 0; !status && l < n; l++) {
            json_t *value = json_array_get(reach, (size_t)l);
            if (!json_is_number(value))
                status = ramp_fail(err, "%s: exit_profile.reach[%d]: expected a number, found another type", file, l);
            else profile->reach[l] = json_number_value(value);
        }
        profile->n_layers = n;
        json_t *rows = json_object_get(object, "rows");
        profile->rows = json_is_integer(rows) ? (long)json_integer_value(rows) : 0;
        json_t *source = json_object_get(object, "source");
        snprintf(profile->source, sizeof profile->source, "%s", json_is_string(source) ? json_string_value(source) : "");
        if (!status && split_check_reach(profile->reach, n, n_layers, err)) status = ramp_fail_prefix(err, "%s: ", file);
    }
    json_decref(root);
    if (status) exit_profile_free(profile);
    return status;
}

int exit_profile_attach(const char *path, const exit_profile *profile, ramp_error *err) {
    json_error_t error;
    json_t *root = json_load_file(path, 0, &error);
    if (!json_is_object(root)) {
        json_decref(root);
        return ramp_fail(err, "%s: expected a JSON object to add the exit profile to", path);
    }
    json_object_set_new(root, "exit_profile", exit_profile_json(profile));
    int status = json_dump_file(root, path, JSON_INDENT(2)) ? ramp_fail(err, "%s: cannot write", path) : 0;
    json_decref(root);
    return status;
}

void exit_profile_free(exit_profile *profile) {
    free(profile->reach);
    memset(profile, 0, sizeof *profile);
}
