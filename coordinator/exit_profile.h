/* exit_profile.h: where a run's rows stop: the share of rows that reach each layer.
 *
 * With request-level exits a request's rows (its prompt tokens) all stop at the layer where the
 * request leaves, so layer l is run by the rows of the requests that leave after it. The profile
 * counts rows, not requests: a stage's busy time follows the rows it runs. exit-train and
 * exit-calibrate record one (from the policy simulated on their held-out part) in the files they
 * write, eval in its --json (from its exit run, or the sweep's replay at the policy's threshold),
 * all as
 *     "exit_profile": {"layers": L, "rows": N, "reach": [r_0, ..., r_{L-1}], "source": "..."}
 * and `--split exit-aware:FILE` reads it (split.h: split_exit_aware). reach[0] is 1 for a
 * profile made here; a profile read from a file is checked with split_check_reach.
 */
#ifndef RAMP_EXIT_PROFILE_H
#define RAMP_EXIT_PROFILE_H

#include <jansson.h>

#include "error.h"

typedef struct {
    int n_layers;
    double *reach; /* [n_layers], owned */
    long rows;     /* rows it was measured on */
    char source[64];
} exit_profile;

/* From n requests: request i ran rows[i] rows through depths[i] layers (1..n_layers). */
int exit_profile_from_depths(exit_profile *profile, int n_layers, const long *rows, const int *depths, int n,
                             const char *source, ramp_error *err);
/* The "exit_profile" object (new reference). */
json_t *exit_profile_json(const exit_profile *profile);
/* Reads the "exit_profile" of a JSON file (PATH, or PATH.json when PATH is not JSON: a classifier's
 * sidecar) and checks it against a model of n_layers layers. */
int exit_profile_read(exit_profile *profile, const char *path, int n_layers, ramp_error *err);
/* Adds (or replaces) the "exit_profile" key of the JSON object in the file at path. */
int exit_profile_attach(const char *path, const exit_profile *profile, ramp_error *err);
void exit_profile_free(exit_profile *profile);

#endif
