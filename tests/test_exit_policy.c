/* test_exit_policy.c: exit policies trained, calibrated, simulated, saved and loaded on synthetic
 * full-depth runs where top_prob really tells whether a row's answer has settled. */
#include <criterion/criterion.h>
#include <criterion/redirect.h>

#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "exit_policy.h"

#define N_EXITS 4
#define TOTAL_LAYERS 10
#define FINAL_TOKEN 100
static const int EXIT_LAYERS[N_EXITS] = {2, 4, 6, 8};
/* The task's label tokens: the final answer is one of them; early rows may answer another token. */
#define N_LABELS 2
static const int LABEL_TOKENS[N_LABELS] = {FINAL_TOKEN, 7};

/* ---- a seeded generator (splitmix64) ---- */

typedef struct {
    uint64_t state;
} rng;

static uint64_t rng_next(rng *r) {
    uint64_t z = (r->state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static double rng_uniform(rng *r) {
    return (double)(rng_next(r) >> 11) * 0x1.0p-53;
}

/* ---- synthetic full-depth runs ---- */

typedef struct {
    exit_observation *observations;
    exit_dataset data;
} synthetic;

/* Each example settles on the final answer at a random exit point (or only at full depth). Rows
 * that have settled are usually confident, rows that have not usually are not; `noise` is the
 * share of rows where confidence lies. Unsettled rows sometimes hit the final token by chance. */
static void synthetic_make(synthetic *s, int n_examples, uint64_t seed, double noise) {
    rng r = {seed};
    s->observations = calloc((size_t)n_examples * N_EXITS, sizeof *s->observations);
    cr_assert_not_null(s->observations);
    for (int e = 0; e < n_examples; e++) {
        exit_observation *row = s->observations + (size_t)e * N_EXITS;
        int settles = (int)(rng_next(&r) % (N_EXITS + 1));
        for (int i = 0; i < N_EXITS; i++) {
            bool settled = i >= settles;
            row[i].top_token = settled || rng_uniform(&r) < 0.3 ? FINAL_TOKEN : (int)(rng_next(&r) % FINAL_TOKEN);
            row[i].agrees_final = row[i].top_token == FINAL_TOKEN;
            bool confident = settled != (rng_uniform(&r) < noise);
            float top = confident ? (float)(0.55 + 0.45 * rng_uniform(&r)) : (float)(0.1 + 0.5 * rng_uniform(&r));
            row[i].features[EXIT_FEATURE_TOP_PROB] = top;
            row[i].features[EXIT_FEATURE_GAP] = top * (float)(0.3 + 0.5 * rng_uniform(&r));
            row[i].features[EXIT_FEATURE_ENTROPY] = (1 - top) * (float)(2.4 + 1.2 * rng_uniform(&r));
            row[i].features[EXIT_FEATURE_AGREES_PREVIOUS] = i > 0 && row[i].top_token == row[i - 1].top_token;
            row[i].features[EXIT_FEATURE_DEPTH] = (float)EXIT_LAYERS[i] / TOTAL_LAYERS;
            row[i].features[EXIT_FEATURE_PREVIOUS_TOP_PROB] = i > 0 ? row[i - 1].features[EXIT_FEATURE_TOP_PROB] : 0;
            row[i].features[EXIT_FEATURE_PREVIOUS_GAP] = i > 0 ? row[i - 1].features[EXIT_FEATURE_GAP] : 0;
        }
        bool stays = true;
        for (int i = N_EXITS - 1; i >= 0; i--) {
            stays = stays && row[i].agrees_final;
            row[i].stays = stays;
        }
    }
    s->data = (exit_dataset){s->observations, n_examples, N_EXITS, EXIT_LAYERS, TOTAL_LAYERS, LABEL_TOKENS, N_LABELS};
}

static void synthetic_free(synthetic *s) {
    free(s->observations);
}

static void random_features(rng *r, float *features) {
    float top = (float)rng_uniform(r);
    features[EXIT_FEATURE_TOP_PROB] = top;
    features[EXIT_FEATURE_GAP] = top * (float)rng_uniform(r);
    features[EXIT_FEATURE_ENTROPY] = (float)(3 * rng_uniform(r));
    features[EXIT_FEATURE_AGREES_PREVIOUS] = rng_uniform(r) < 0.5f;
    features[EXIT_FEATURE_DEPTH] = (float)rng_uniform(r);
    features[EXIT_FEATURE_PREVIOUS_TOP_PROB] = (float)rng_uniform(r);
    features[EXIT_FEATURE_PREVIOUS_GAP] = (float)rng_uniform(r) * features[EXIT_FEATURE_PREVIOUS_TOP_PROB];
}

/* A label token, or (one time in three) a token that is no label. */
static int random_token(rng *r) {
    int k = (int)(rng_next(r) % 3);
    return k < N_LABELS ? LABEL_TOKENS[k] : 3;
}

static void train_svm(exit_policy *policy, int n, uint64_t seed, double target) {
    synthetic train, heldout;
    synthetic_make(&train, n, seed, 0.1);
    synthetic_make(&heldout, n, seed + 1000, 0.1);
    ramp_error err = {{0}};
    cr_assert_eq(exit_policy_train_svm(policy, &train.data, &heldout.data, target, &err), 0, "%s", err.message);
    snprintf(policy->task, sizeof policy->task, "sst2"); /* a task of N_LABELS labels: files name one */
    synthetic_free(&train);
    synthetic_free(&heldout);
}

/* ---- temporary files ---- */

typedef struct {
    char path[64];
    char sidecar[80];
} temp_files;

static void temp_files_make(temp_files *t) {
    snprintf(t->path, sizeof t->path, "/tmp/ramp-test-exit-policy-XXXXXX");
    int fd = mkstemp(t->path);
    cr_assert_geq(fd, 0, "mkstemp failed");
    close(fd);
    snprintf(t->sidecar, sizeof t->sidecar, "%s.json", t->path);
}

static void temp_files_remove(const temp_files *t) {
    unlink(t->path);
    unlink(t->sidecar);
}

static void write_text(const char *path, const char *text) {
    FILE *file = fopen(path, "w");
    cr_assert_not_null(file);
    fputs(text, file);
    fclose(file);
}

/* ---- training ---- */

Test(exit_policy, svm_meets_target_on_heldout_and_prunes) {
    synthetic train, heldout;
    synthetic_make(&train, 400, 1, 0.1);
    synthetic_make(&heldout, 400, 2, 0.1);
    exit_policy policy;
    ramp_error err = {{0}};
    cr_assert_eq(exit_policy_train_svm(&policy, &train.data, &heldout.data, 0.9, &err), 0, "%s", err.message);
    cr_assert_eq(policy.kind, EXIT_POLICY_SVM);
    cr_assert_not_null(policy.svm);
    cr_assert_eq(policy.n_exits, N_EXITS);
    cr_assert_eq(policy.total_layers, TOTAL_LAYERS);
    cr_assert_eq(policy.exit_layers[3], 8);
    cr_assert_float_eq(policy.target_agreement, 0.9, 1e-12);
    cr_assert(isfinite(policy.threshold), "a learnable signal should give a finite threshold");
    cr_assert_float_eq(policy.scale_max[EXIT_FEATURE_DEPTH], 0.8, 1e-6);
    cr_assert_float_eq(policy.scale_min[EXIT_FEATURE_DEPTH], 0.2, 1e-6);

    exit_simulation sim;
    exit_policy_simulate(&policy, &heldout.data, &sim);
    cr_assert_geq(sim.agreement, 0.9);
    cr_assert_gt(sim.pruning_ratio, 0.1, "pruning %g", sim.pruning_ratio);
    int sum = 0;
    for (int i = 0; i <= N_EXITS; i++) sum += sim.histogram[i];
    cr_assert_eq(sum, 400);
    cr_assert_float_eq(sim.mean_layers, TOTAL_LAYERS * (1 - sim.pruning_ratio), 1e-9);

    /* The signal is real, so it carries over to examples neither set has seen. */
    synthetic fresh;
    synthetic_make(&fresh, 400, 3, 0.1);
    exit_policy_simulate(&policy, &fresh.data, &sim);
    cr_assert_geq(sim.agreement, 0.8, "agreement on fresh data %g", sim.agreement);
    cr_assert_gt(sim.pruning_ratio, 0.05);

    exit_policy_free(&policy);
    cr_assert_null(policy.svm);
    cr_assert_eq(policy.kind, EXIT_POLICY_NONE);
    synthetic_free(&train);
    synthetic_free(&heldout);
    synthetic_free(&fresh);
}

Test(exit_policy, svm_threshold_is_the_lowest_meeting_target) {
    synthetic train, heldout;
    synthetic_make(&train, 300, 11, 0.1);
    synthetic_make(&heldout, 300, 12, 0.1);
    exit_policy policy;
    ramp_error err = {{0}};
    cr_assert_eq(exit_policy_train_svm(&policy, &train.data, &heldout.data, 0.9, &err), 0, "%s", err.message);
    cr_assert(isfinite(policy.threshold));
    exit_simulation at, below;
    exit_policy_simulate(&policy, &heldout.data, &at);
    cr_assert_geq(at.agreement, 0.9);
    /* The chosen threshold is a held-out score; a lower threshold either still sits above the
     * next lower score (and changes nothing) or exits more rows and misses the target. */
    double chosen = policy.threshold;
    double below_values[] = {nextafter(chosen, -INFINITY), chosen - 1e-4, chosen - 0.01, chosen - 0.1, chosen - 0.5,
                             chosen - 5};
    int changed = 0;
    for (size_t k = 0; k < sizeof below_values / sizeof *below_values; k++) {
        policy.threshold = below_values[k];
        exit_policy_simulate(&policy, &heldout.data, &below);
        bool same = memcmp(below.histogram, at.histogram, sizeof at.histogram) == 0;
        cr_assert(same || below.agreement < 0.9, "threshold %.17g (chosen %.17g) reaches %g", below_values[k], chosen,
                  below.agreement);
        cr_assert_geq(below.pruning_ratio, at.pruning_ratio);
        changed += !same;
    }
    cr_assert_gt(changed, 0, "far lower thresholds should exit more rows");
    exit_policy_free(&policy);
    synthetic_free(&train);
    synthetic_free(&heldout);
}

Test(exit_policy, impossible_target_prunes_less) {
    exit_policy relaxed, strict;
    train_svm(&relaxed, 300, 21, 0.9);
    train_svm(&strict, 300, 21, 1.0);
    synthetic heldout;
    synthetic_make(&heldout, 300, 21 + 1000, 0.1);
    exit_simulation relaxed_sim, strict_sim;
    exit_policy_simulate(&relaxed, &heldout.data, &relaxed_sim);
    exit_policy_simulate(&strict, &heldout.data, &strict_sim);
    cr_assert_float_eq(strict_sim.agreement, 1.0, 1e-12);
    cr_assert_lt(strict_sim.pruning_ratio, relaxed_sim.pruning_ratio, "strict %g, relaxed %g",
                 strict_sim.pruning_ratio, relaxed_sim.pruning_ratio);
    cr_assert_gt(strict.threshold, relaxed.threshold);
    exit_policy_free(&relaxed);
    exit_policy_free(&strict);
    synthetic_free(&heldout);
}

Test(exit_policy, training_rejects_bad_input) {
    synthetic train, heldout;
    synthetic_make(&train, 50, 31, 0.1);
    synthetic_make(&heldout, 50, 32, 0.1);
    exit_policy policy;
    ramp_error err = {{0}};

    cr_assert_eq(exit_policy_train_svm(&policy, &train.data, &heldout.data, 1.5, &err), -1);
    cr_assert_not_null(strstr(err.message, "target"), "%s", err.message);
    cr_assert_eq(policy.kind, EXIT_POLICY_NONE);

    int other_layers[N_EXITS] = {2, 4, 6, 9};
    exit_dataset mismatched = heldout.data;
    mismatched.exit_layers = other_layers;
    cr_assert_eq(exit_policy_train_svm(&policy, &train.data, &mismatched, 0.9, &err), -1);
    cr_assert_not_null(strstr(err.message, "held-out"), "%s", err.message);

    int decreasing[N_EXITS] = {2, 6, 4, 8};
    exit_dataset unordered = train.data;
    unordered.exit_layers = decreasing;
    cr_assert_eq(exit_policy_calibrate_confidence(&policy, &unordered, 0.9, &err), -1);
    cr_assert_not_null(strstr(err.message, "increasing"), "%s", err.message);

    /* Every row staying leaves nothing to separate. */
    for (int r = 0; r < 50 * N_EXITS; r++) train.observations[r].stays = train.observations[r].agrees_final = true;
    cr_assert_eq(exit_policy_train_svm(&policy, &train.data, &heldout.data, 0.9, &err), -1);
    cr_assert_not_null(strstr(err.message, "training set"), "%s", err.message);
    cr_assert_null(policy.svm);
    exit_policy_free(&policy);
    synthetic_free(&train);
    synthetic_free(&heldout);
}

/* ---- confidence calibration ---- */

/* The rows that reach exit point i under policy (no earlier point took them) and exit there, and
 * how many of those agree with the final layer. */
static void count_exiting(const exit_policy *policy, const exit_dataset *data, int i, int *rows, int *agreeing) {
    *rows = *agreeing = 0;
    for (int e = 0; e < data->n_examples; e++) {
        const exit_observation *row = &data->observations[(size_t)e * data->n_exits];
        int at = 0;
        while (at < data->n_exits && !exit_policy_should_exit(policy, at, row[at].features, row[at].top_token)) at++;
        if (at != i) continue;
        (*rows)++;
        *agreeing += row[i].agrees_final;
    }
}

Test(exit_policy, confidence_thresholds_meet_target_on_the_rows_each_point_takes) {
    synthetic heldout;
    synthetic_make(&heldout, 1000, 41, 0.1);
    exit_policy loose, tight;
    ramp_error err = {{0}};
    cr_assert_eq(exit_policy_calibrate_confidence(&loose, &heldout.data, 0.85, &err), 0, "%s", err.message);
    cr_assert_eq(exit_policy_calibrate_confidence(&tight, &heldout.data, 0.97, &err), 0, "%s", err.message);
    cr_assert_eq(loose.kind, EXIT_POLICY_CONFIDENCE);
    cr_assert_eq(loose.n_exits, N_EXITS);
    cr_assert_eq(loose.total_layers, TOTAL_LAYERS);
    int finite = 0;
    for (int i = 0; i < N_EXITS; i++) {
        cr_assert(loose.thresholds[i] >= 0 && loose.thresholds[i] <= 1.01);
        if (loose.thresholds[i] > 1) continue;
        finite++;
        int rows, agreeing;
        count_exiting(&loose, &heldout.data, i, &rows, &agreeing);
        if (rows > 0) cr_assert_geq((double)agreeing / rows, 0.85, "point %d: %d of %d", i, agreeing, rows);
    }
    cr_assert_geq(finite, 2, "later exit points should be calibratable");
    /* Each point keeps the target on what it takes, so the whole chain does. */
    exit_simulation loose_sim, tight_sim;
    exit_policy_simulate(&loose, &heldout.data, &loose_sim);
    exit_policy_simulate(&tight, &heldout.data, &tight_sim);
    cr_assert_geq(loose_sim.agreement, 0.85);
    cr_assert_geq(tight_sim.agreement, 0.97);
    cr_assert_gt(loose_sim.pruning_ratio, 0);
    cr_assert_geq(loose_sim.pruning_ratio, tight_sim.pruning_ratio);
    synthetic_free(&heldout);
}

/* Twenty rows at one exit point with top_prob 0.05 .. 1.0; rows from 0.45 up agree except 0.55. */
static void tiny_calibration_set(exit_observation rows[20], exit_dataset *data) {
    static const int one_exit[1] = {3};
    memset(rows, 0, 20 * sizeof *rows);
    for (int k = 0; k < 20; k++) {
        rows[k].features[EXIT_FEATURE_TOP_PROB] = (float)(k + 1) / 20.0f;
        rows[k].agrees_final = rows[k].stays = k >= 8 && k != 10;
    }
    *data = (exit_dataset){rows, 20, 1, one_exit, 4, NULL, 0};
}

Test(exit_policy, confidence_threshold_exact_on_tiny_set) {
    exit_observation rows[20];
    exit_dataset data;
    tiny_calibration_set(rows, &data);
    exit_policy policy;
    ramp_error err = {{0}};
    /* Going down: 9 of 9 agree, then 9/10, 10/11, 11/12 (at 0.45), then 11/13 < 0.9. */
    cr_assert_eq(exit_policy_calibrate_confidence(&policy, &data, 0.9, &err), 0, "%s", err.message);
    cr_assert_eq(policy.thresholds[0], (double)((float)9 / 20.0f));
    /* 0.95 is never reached once ten rows are in; nine perfect rows are too few to trust. */
    cr_assert_eq(exit_policy_calibrate_confidence(&policy, &data, 0.95, &err), 0, "%s", err.message);
    cr_assert_gt(policy.thresholds[0], 1.0);
    cr_assert_eq(exit_policy_calibrate_confidence(&policy, &data, 1.0, &err), 0, "%s", err.message);
    cr_assert_gt(policy.thresholds[0], 1.0);
    /* Everything agrees at target 0.5 down to the bottom... */
    cr_assert_eq(exit_policy_calibrate_confidence(&policy, &data, 0.5, &err), 0, "%s", err.message);
    cr_assert_eq(policy.thresholds[0], (double)((float)1 / 20.0f));
}

/* ---- simulation ---- */

Test(exit_policy, simulate_exact_on_hand_made_runs) {
    static const int layers[3] = {1, 2, 3};
    /* Four examples, three exit points after 1, 2, 3 of 4 layers; thresholds 0.9, 0.7, 0.5. */
    static const float probs[4][3] = {{0.95f, 0.1f, 0.1f}, {0.5f, 0.8f, 0.9f}, {0.1f, 0.2f, 0.6f}, {0.1f, 0.2f, 0.3f}};
    static const bool agrees[4][3] = {{1, 0, 0}, {0, 0, 1}, {0, 0, 1}, {0, 0, 0}};
    exit_observation rows[12] = {0};
    for (int e = 0; e < 4; e++)
        for (int i = 0; i < 3; i++) {
            rows[e * 3 + i].features[EXIT_FEATURE_TOP_PROB] = probs[e][i];
            rows[e * 3 + i].agrees_final = agrees[e][i];
        }
    exit_dataset data = {rows, 4, 3, layers, 4, NULL, 0};
    exit_policy policy = {.kind = EXIT_POLICY_CONFIDENCE, .n_exits = 3, .exit_layers = {1, 2, 3},
                          .total_layers = 4, .thresholds = {0.9, 0.7, 0.5}};
    exit_simulation sim;
    exit_policy_simulate(&policy, &data, &sim);
    /* Exits at 0 (agrees), 1 (disagrees), 2 (agrees), full depth: 1+2+3+4 = 10 of 16 layers. */
    cr_assert_eq(sim.histogram[0], 1);
    cr_assert_eq(sim.histogram[1], 1);
    cr_assert_eq(sim.histogram[2], 1);
    cr_assert_eq(sim.histogram[3], 1);
    cr_assert_float_eq(sim.agreement, 0.75, 1e-12);
    cr_assert_float_eq(sim.pruning_ratio, 1.0 - 10.0 / 16.0, 1e-12);
    cr_assert_float_eq(sim.mean_layers, 2.5, 1e-12);

    exit_policy none = {.kind = EXIT_POLICY_NONE, .n_exits = 3};
    exit_policy_simulate(&none, &data, &sim);
    cr_assert_eq(sim.histogram[3], 4);
    cr_assert_eq(sim.histogram[0], 0);
    cr_assert_float_eq(sim.agreement, 1.0, 1e-12);
    cr_assert_float_eq(sim.pruning_ratio, 0.0, 1e-12);
    cr_assert_float_eq(sim.mean_layers, 4.0, 1e-12);
}

Test(exit_policy, should_exit_edges_and_nan_features) {
    exit_policy conf = {.kind = EXIT_POLICY_CONFIDENCE, .n_exits = 2, .exit_layers = {1, 2}, .total_layers = 3,
                        .thresholds = {0.5, 0.0}};
    float features[EXIT_FEATURE_COUNT] = {0.6f, 0.1f, 1.0f, 0, 0.5f};
    cr_assert(exit_policy_should_exit(&conf, 0, features, 5));
    cr_assert_not(exit_policy_should_exit(&conf, 2, features, 5), "no exit point 2");
    cr_assert_not(exit_policy_should_exit(&conf, -1, features, 5));
    features[EXIT_FEATURE_TOP_PROB] = NAN;
    cr_assert_not(exit_policy_should_exit(&conf, 0, features, 5), "NaN reads as 0");
    cr_assert(exit_policy_should_exit(&conf, 1, features, 5), "NaN reads as 0, which reaches 0");
    exit_policy none = {.kind = EXIT_POLICY_NONE, .n_exits = 2};
    features[EXIT_FEATURE_TOP_PROB] = 1.0f;
    cr_assert_not(exit_policy_should_exit(&none, 0, features, 5));

    exit_policy svm;
    train_svm(&svm, 200, 51, 0.9);
    rng r = {52};
    for (int k = 0; k < 200; k++) {
        float clean[EXIT_FEATURE_COUNT], dirty[EXIT_FEATURE_COUNT];
        random_features(&r, clean);
        memcpy(dirty, clean, sizeof dirty);
        int j = (int)(rng_next(&r) % EXIT_FEATURE_COUNT);
        clean[j] = 0;
        dirty[j] = NAN;
        int token = random_token(&r);
        for (int i = 0; i < N_EXITS; i++)
            cr_assert_eq(exit_policy_should_exit(&svm, i, dirty, token), exit_policy_should_exit(&svm, i, clean, token));
    }
    exit_policy_free(&svm);
}

/* ---- saving and loading ---- */

/* Same decisions at every exit point for many random rows and for every held-out row (which
 * includes the row whose score is the threshold itself). Returns how many were exits. */
static int assert_same_decisions(const exit_policy *a, const exit_policy *b, const exit_dataset *rows) {
    rng r = {61};
    int exits = 0;
    for (int k = 0; k < 3000; k++) {
        float features[EXIT_FEATURE_COUNT];
        random_features(&r, features);
        int token = random_token(&r);
        for (int i = 0; i < N_EXITS; i++) {
            bool decision = exit_policy_should_exit(a, i, features, token);
            cr_assert_eq(decision, exit_policy_should_exit(b, i, features, token), "vector %d at point %d", k, i);
            exits += decision;
        }
    }
    for (int e = 0; e < rows->n_examples; e++)
        for (int i = 0; i < N_EXITS; i++) {
            const exit_observation *row = &rows->observations[(size_t)e * N_EXITS + i];
            cr_assert_eq(exit_policy_should_exit(a, i, row->features, row->top_token),
                         exit_policy_should_exit(b, i, row->features, row->top_token),
                         "held-out row %d at point %d", e, i);
        }
    return exits;
}

static void assert_same_header(const exit_policy *a, const exit_policy *b) {
    cr_assert_eq(a->kind, b->kind);
    cr_assert_eq(a->n_exits, b->n_exits);
    cr_assert_eq(a->total_layers, b->total_layers);
    cr_assert_arr_eq(a->exit_layers, b->exit_layers, (size_t)a->n_exits * sizeof *a->exit_layers);
    cr_assert_eq(a->target_agreement, b->target_agreement);
    cr_assert_str_eq(a->model_name, b->model_name);
    cr_assert_str_eq(a->task, b->task);
}

Test(exit_policy, svm_round_trip_keeps_every_decision) {
    synthetic train, heldout;
    synthetic_make(&train, 300, 71, 0.1);
    synthetic_make(&heldout, 300, 72, 0.1);
    exit_policy trained, loaded;
    ramp_error err = {{0}};
    cr_assert_eq(exit_policy_train_svm(&trained, &train.data, &heldout.data, 0.9, &err), 0, "%s", err.message);
    snprintf(trained.model_name, sizeof trained.model_name, "stories260K.bin");
    snprintf(trained.task, sizeof trained.task, "sst2");
    temp_files t;
    temp_files_make(&t);
    cr_assert_eq(exit_policy_save(&trained, t.path, &err), 0, "%s", err.message);
    cr_assert_eq(access(t.sidecar, F_OK), 0, "sidecar written");

    char spec[96];
    snprintf(spec, sizeof spec, "svm:%s", t.path);
    const char *specs[] = {spec, t.path, t.sidecar};
    for (int s = 0; s < 3; s++) {
        cr_assert_eq(exit_policy_load(&loaded, specs[s], &err), 0, "%s: %s", specs[s], err.message);
        assert_same_header(&trained, &loaded);
        cr_assert_eq(loaded.threshold, trained.threshold);
        cr_assert_arr_eq(loaded.scale_min, trained.scale_min, sizeof trained.scale_min);
        cr_assert_arr_eq(loaded.scale_max, trained.scale_max, sizeof trained.scale_max);
        cr_assert_eq(loaded.n_labels, N_LABELS);
        cr_assert_arr_eq(loaded.label_tokens, LABEL_TOKENS, sizeof LABEL_TOKENS);
        int exits = assert_same_decisions(&trained, &loaded, &heldout.data);
        cr_assert(exits > 0 && exits < 3000 * N_EXITS, "decisions should vary: %d exits", exits);
        exit_simulation a, b;
        exit_policy_simulate(&trained, &heldout.data, &a);
        exit_policy_simulate(&loaded, &heldout.data, &b);
        cr_assert_arr_eq(a.histogram, b.histogram, sizeof a.histogram);
        exit_policy_free(&loaded);
    }
    temp_files_remove(&t);
    exit_policy_free(&trained);
    synthetic_free(&train);
    synthetic_free(&heldout);
}

Test(exit_policy, never_exiting_svm_round_trips_as_null_threshold) {
    exit_policy trained, loaded;
    train_svm(&trained, 100, 81, 0.9);
    trained.threshold = INFINITY;
    temp_files t;
    temp_files_make(&t);
    ramp_error err = {{0}};
    cr_assert_eq(exit_policy_save(&trained, t.path, &err), 0, "%s", err.message);
    cr_assert_eq(exit_policy_load(&loaded, t.path, &err), 0, "%s", err.message);
    cr_assert(isinf(loaded.threshold) && loaded.threshold > 0);
    float features[EXIT_FEATURE_COUNT] = {1, 1, 0, 1, 1};
    cr_assert_not(exit_policy_should_exit(&loaded, 0, features, FINAL_TOKEN));
    temp_files_remove(&t);
    exit_policy_free(&trained);
    exit_policy_free(&loaded);
}

Test(exit_policy, confidence_round_trip_keeps_every_decision) {
    synthetic heldout;
    synthetic_make(&heldout, 500, 91, 0.1);
    exit_policy calibrated, loaded;
    ramp_error err = {{0}};
    cr_assert_eq(exit_policy_calibrate_confidence(&calibrated, &heldout.data, 0.9, &err), 0, "%s", err.message);
    snprintf(calibrated.task, sizeof calibrated.task, "trec");
    temp_files t;
    temp_files_make(&t);
    cr_assert_eq(exit_policy_save(&calibrated, t.path, &err), 0, "%s", err.message);
    char spec[96];
    snprintf(spec, sizeof spec, "conf:%s", t.path);
    const char *specs[] = {spec, t.path};
    for (int s = 0; s < 2; s++) {
        cr_assert_eq(exit_policy_load(&loaded, specs[s], &err), 0, "%s: %s", specs[s], err.message);
        assert_same_header(&calibrated, &loaded);
        cr_assert_arr_eq(loaded.thresholds, calibrated.thresholds, N_EXITS * sizeof *loaded.thresholds);
        int exits = assert_same_decisions(&calibrated, &loaded, &heldout.data);
        cr_assert_gt(exits, 0);
        exit_policy_free(&loaded);
    }
    temp_files_remove(&t);
    synthetic_free(&heldout);
}

/* ---- corrupted files ---- */

/* Loads spec, expecting failure with a message naming `file` and containing `word`. */
static void assert_load_fails(const char *spec, const char *file, const char *word) {
    exit_policy policy;
    ramp_error err = {{0}};
    cr_assert_eq(exit_policy_load(&policy, spec, &err), -1, "%s should not load", spec);
    cr_assert_not_null(strstr(err.message, file), "message should name %s: %s", file, err.message);
    cr_assert_not_null(strstr(err.message, word), "message should mention %s: %s", word, err.message);
    cr_assert_eq(policy.kind, EXIT_POLICY_NONE);
    cr_assert_null(policy.svm);
    exit_policy_free(&policy);
}

/* Rewrites the JSON file at path after `edit` changed it. */
static void edit_json(const char *path, const char *original, void (*edit)(json_t *root)) {
    json_t *root = json_loads(original, 0, NULL);
    cr_assert_not_null(root);
    edit(root);
    cr_assert_eq(json_dump_file(root, path, 0), 0);
    json_decref(root);
}

static void drop_threshold(json_t *root) {
    json_object_del(root, "threshold");
}
static void short_scale(json_t *root) {
    json_array_remove(json_object_get(root, "scale_min"), 0);
}
static void unordered_layers(json_t *root) {
    json_array_set_new(json_object_get(root, "exit_layers"), 1, json_integer(1));
}
static void renamed_feature(json_t *root) {
    json_array_set_new(json_object_get(root, "features"), 2, json_string("perplexity"));
}
static void text_threshold(json_t *root) {
    json_object_set_new(root, "threshold", json_string("high"));
}
static void future_version(json_t *root) {
    json_object_set_new(root, "format_version", json_integer(3));
}
static void text_label_token(json_t *root) {
    json_array_set_new(json_object_get(root, "label_tokens"), 0, json_string("positive"));
}
static void short_thresholds(json_t *root) {
    json_array_remove(json_object_get(root, "thresholds"), 0);
}
static void text_in_thresholds(json_t *root) {
    json_array_set_new(json_object_get(root, "thresholds"), 0, json_string("0.5"));
}

static char *read_text(const char *path) {
    FILE *file = fopen(path, "r");
    cr_assert_not_null(file);
    static char text[1 << 16];
    size_t n = fread(text, 1, sizeof text - 1, file);
    fclose(file);
    text[n] = '\0';
    return strdup(text);
}

/* libsvm reports a bad model file on stderr as well; keep the test output clean. */
Test(exit_policy, corrupted_svm_files_fail_naming_file_and_key, .init = cr_redirect_stderr) {
    exit_policy trained;
    train_svm(&trained, 100, 101, 0.9);
    temp_files t;
    temp_files_make(&t);
    ramp_error err = {{0}};
    cr_assert_eq(exit_policy_save(&trained, t.path, &err), 0, "%s", err.message);
    char *sidecar = read_text(t.sidecar);
    char *model = read_text(t.path);

    edit_json(t.sidecar, sidecar, drop_threshold);
    assert_load_fails(t.path, t.sidecar, "threshold");
    edit_json(t.sidecar, sidecar, short_scale);
    assert_load_fails(t.path, t.sidecar, "scale_min");
    edit_json(t.sidecar, sidecar, unordered_layers);
    assert_load_fails(t.path, t.sidecar, "exit_layers");
    edit_json(t.sidecar, sidecar, renamed_feature);
    assert_load_fails(t.path, t.sidecar, "features");
    edit_json(t.sidecar, sidecar, text_threshold);
    assert_load_fails(t.path, t.sidecar, "threshold");
    edit_json(t.sidecar, sidecar, future_version);
    assert_load_fails(t.path, t.sidecar, "format_version");
    edit_json(t.sidecar, sidecar, text_label_token);
    assert_load_fails(t.path, t.sidecar, "label_tokens");
    write_text(t.sidecar, "{\"kind\": \"svm\", ");
    assert_load_fails(t.path, t.sidecar, "JSON");

    /* A sound sidecar next to a broken libsvm file. */
    write_text(t.sidecar, sidecar);
    write_text(t.path, "svm_type nonsense\n");
    assert_load_fails(t.path, t.path, "libsvm");
    write_text(t.path, model);
    exit_policy loaded;
    cr_assert_eq(exit_policy_load(&loaded, t.path, &err), 0, "restored files load again: %s", err.message);
    exit_policy_free(&loaded);

    /* The wrong kind for the spec. */
    char spec[96];
    snprintf(spec, sizeof spec, "conf:%s", t.sidecar);
    assert_load_fails(spec, t.sidecar, "kind");

    temp_files_remove(&t);
    assert_load_fails(t.path, t.path, "no such");
    free(sidecar);
    free(model);
    exit_policy_free(&trained);
}

Test(exit_policy, corrupted_confidence_files_fail_naming_file_and_key) {
    synthetic heldout;
    synthetic_make(&heldout, 200, 111, 0.1);
    exit_policy calibrated;
    ramp_error err = {{0}};
    cr_assert_eq(exit_policy_calibrate_confidence(&calibrated, &heldout.data, 0.9, &err), 0, "%s", err.message);
    temp_files t;
    temp_files_make(&t);
    cr_assert_eq(exit_policy_save(&calibrated, t.path, &err), 0, "%s", err.message);
    char *original = read_text(t.path);

    edit_json(t.path, original, short_thresholds);
    assert_load_fails(t.path, t.path, "thresholds");
    edit_json(t.path, original, text_in_thresholds);
    assert_load_fails(t.path, t.path, "thresholds");
    edit_json(t.path, original, unordered_layers);
    assert_load_fails(t.path, t.path, "exit_layers");
    write_text(t.path, "[1, 2]");
    assert_load_fails(t.path, t.path, "object");
    write_text(t.path, "not json");
    assert_load_fails(t.path, t.path, "JSON");

    /* svm: wants a sidecar that is not there. */
    write_text(t.path, original);
    char spec[96];
    snprintf(spec, sizeof spec, "svm:%s", t.path);
    assert_load_fails(spec, t.sidecar, "JSON");

    exit_policy none = {.kind = EXIT_POLICY_NONE};
    cr_assert_eq(exit_policy_save(&none, t.path, &err), -1);
    cr_assert_not_null(strstr(err.message, t.path), "%s", err.message);
    temp_files_remove(&t);
    free(original);
    synthetic_free(&heldout);
}
