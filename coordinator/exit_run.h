/* exit_run.h: the coordinator's side of early exit for one run of requests.
 *
 * It turns the exit features a stage reports into the classifier's input (adding whether the
 * top-1 agrees with the previous exit point's and how deep the row is), asks the exit policy,
 * and keeps the bookkeeping: an observation record per output token (every exit point's features
 * and top-1, and the final token) for training and calibration, and the tallies behind the
 * reported numbers (exit histogram, layers executed).
 * Records are owned by the exit_run.
 */
#ifndef RAMP_EXIT_RUN_H
#define RAMP_EXIT_RUN_H

#include <stdbool.h>

#include "exit_policy.h"
#include "ramp.pb-c.h"
#include "scheduler.h"
#include "stage.h"

typedef struct {
    int request;     /* request index */
    int final_token; /* the token the request got (full depth: the final layer's) */
    int exit_index;  /* where it left, or n_exits for full depth */
    bool seen[EXIT_MAX_POINTS];
    exit_observation observations[EXIT_MAX_POINTS];
} exit_record;

typedef struct {
    exit_mode mode;             /* the job's default (requests carry their own setting) */
    bool token_level;           /* generation (LITE): tokens leave; else requests leave (AdaInfer) */
    const exit_policy *policy;  /* for EXIT_MODE_DECIDE */
    bool keep_records;          /* jobs that train or report on observations keep every record; a
                                 * server keeps only each request's current token (bounded memory) */
    int n_exits;
    int exit_layers[EXIT_MAX_POINTS];
    int total_layers;
    exit_record *records;
    int n_records, records_capacity;
    long histogram[EXIT_MAX_POINTS + 1];
    long layers_executed; /* over output tokens */
    long outputs;
    double policy_seconds; /* rank 0's time in the exit policy (the SVM costs per support vector) */
} exit_run;

void exit_run_init(exit_run *run, exit_mode mode, bool token_level, const exit_policy *policy, int n_exits,
                   const int *exit_layers, int total_layers);
void exit_run_free(exit_run *run);

/* Index of the exit point at `layer`, or -1. */
int exit_run_point(const exit_run *run, int layer);

/* A stage reported features for request r (index) at exit point i. Records them and returns true
 * when the row leaves here (only when the request's own setting is EXIT_MODE_DECIDE). */
int exit_run_observe(exit_run *run, request *r, int index, int exit_index, const Ramp__ExitFeatures *f, bool *leaves,
                     ramp_error *err);
/* The same in two steps, so that the rows of one report are decided together: records the
 * features and sets *ask when the policy must judge the row (false when it cannot leave here),
 * copying what it judges into *observed; then exit_run_decide judges n such rows (leaves[n]),
 * each as it would be alone. */
int exit_run_record(exit_run *run, request *r, int index, int exit_index, const Ramp__ExitFeatures *f, bool *ask,
                    exit_observation *observed, ramp_error *err);
void exit_run_decide(exit_run *run, int n, request *const *requests, const int *exit_index,
                     const exit_observation *asked, bool *leaves);
/* The request's current output token is settled at exit point exit_index (n_exits: full depth). */
void exit_run_settle(exit_run *run, request *r, int token, int exit_index);

/* Observations of the settled records as a dataset (agrees_final and stays filled in). Only
 * records that saw every exit point are used. The returned array is malloc'ed (caller frees). */
exit_observation *exit_run_dataset(const exit_run *run, int *n_examples);
/* The same, and each example's request index into requests (room for run->n_records), or NULL. */
exit_observation *exit_run_dataset_of(const exit_run *run, int *n_examples, int *requests);

#endif
