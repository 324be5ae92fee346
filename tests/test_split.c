/* test_split.c: the stage splits: compute-balanced, and exit-aware from an exit profile (the share
 * of rows reaching each layer), on synthetic profiles whose best boundaries were worked out by
 * hand; invalid profiles are refused with a message naming what was expected and what was found;
 * exit profiles are built from request depths and read back from JSON files. */
#include <criterion/criterion.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "exit_profile.h"
#include "split.h"

/* 16 layers whose LM head is negligible (vocabulary of 1): stage costs are the sums of the weights. */
static model_config tiny_head_config(void) {
    model_config c = {0};
    c.dim = 64;
    c.n_layers = 16;
    c.n_heads = 4;
    c.n_kv_heads = 4;
    c.head_dim = 16;
    c.q_dim = 64;
    c.kv_dim = 64;
    c.ffn_dim = 64;
    c.vocab_size = 1;
    return c;
}

static void expect_split(const layer_range *got, const int *firsts, int n, const char *what) {
    char text[128], want[128];
    split_format(got, n, text, sizeof text);
    layer_range expected[16];
    for (int s = 0; s < n; s++) expected[s] = (layer_range){firsts[s], s + 1 < n ? firsts[s + 1] : 16};
    split_format(expected, n, want, sizeof want);
    cr_assert_str_eq(text, want, "%s: split %s, expected %s", what, text, want);
}

/* Layers 0-3 reached by every row, 4-7 by half, 8-15 by a quarter: weights 4 + 2 + 2 = 8. */
static void stepped_profile(double *reach) {
    for (int l = 0; l < 16; l++) reach[l] = l < 4 ? 1.0 : l < 8 ? 0.5 : 0.25;
}

Test(split, exit_aware_two_stages_cut_where_half_the_work_is_done) {
    model_config c = tiny_head_config();
    double reach[16];
    stepped_profile(reach);
    layer_range ranges[2];
    ramp_error err;
    cr_assert_eq(split_exit_aware(&c, 2, reach, 16, NULL, ranges, &err), 0, "%s", err.message);
    expect_split(ranges, (int[]){0, 4}, 2, "exit-aware, 2 stages"); /* 4 | 2 + 2 */
    cr_assert_eq(split_balanced(&c, 2, false, NULL, ranges, &err), 0);
    expect_split(ranges, (int[]){0, 8}, 2, "compute-balanced, 2 stages");
}

Test(split, exit_aware_three_stages_most_even_of_the_least_maximum) {
    /* The least maximum is 3 (layers 0-2): 4 cannot go in one stage and the other two then need 6 > 2 x 2.99.
     * Then layers 3.. with the second stage at most 3: cut at 7 gives 3, 2.5, 2.5 (sum of squares 21.5),
     * at 8 gives 3, 3, 2 (22). */
    model_config c = tiny_head_config();
    double reach[16];
    stepped_profile(reach);
    layer_range ranges[3];
    ramp_error err;
    cr_assert_eq(split_exit_aware(&c, 3, reach, 16, NULL, ranges, &err), 0, "%s", err.message);
    expect_split(ranges, (int[]){0, 3, 7}, 3, "exit-aware, 3 stages");
    double costs[3];
    split_stage_costs(&c, ranges, 3, reach, costs);
    double layer = 7.0 * 64 * 64;
    cr_assert_float_eq(costs[0], 3.0 * layer, 1e-6);
    cr_assert_float_eq(costs[1], 2.5 * layer, 1e-6);
    cr_assert_float_eq(costs[2], 2.5 * layer + 0.25 * 64, 1e-6); /* the head, for the quarter that gets there */
}

Test(split, exit_aware_without_exits_is_as_balanced_as_compute) {
    model_config c = tiny_head_config();
    double flat[16];
    for (int l = 0; l < 16; l++) flat[l] = 1.0;
    for (int stages = 1; stages <= 8; stages++) {
        layer_range aware[8], balanced[8];
        double aware_costs[8], balanced_costs[8];
        ramp_error err;
        cr_assert_eq(split_exit_aware(&c, stages, flat, 16, NULL, aware, &err), 0, "%s", err.message);
        cr_assert_eq(split_balanced(&c, stages, false, NULL, balanced, &err), 0, "%s", err.message);
        split_stage_costs(&c, aware, stages, flat, aware_costs);
        split_stage_costs(&c, balanced, stages, NULL, balanced_costs);
        double worst_aware = 0, worst_balanced = 0;
        for (int s = 0; s < stages; s++) {
            worst_aware = fmax(worst_aware, aware_costs[s]);
            worst_balanced = fmax(worst_balanced, balanced_costs[s]);
        }
        cr_assert_float_eq(worst_aware, worst_balanced, 1e-6, "%d stages", stages);
    }
}

Test(split, exit_aware_puts_more_layers_on_later_stages_of_a_real_shape) {
    /* lite16's shape, rows leaving steadily from layer 4 on: the last stage takes the most layers. */
    model_config c = {.dim = 128, .n_layers = 16, .n_heads = 4, .n_kv_heads = 2, .head_dim = 32, .q_dim = 128, .kv_dim = 64,
                      .ffn_dim = 384, .vocab_size = 512};
    double reach[16];
    for (int l = 0; l < 16; l++) reach[l] = l < 4 ? 1.0 : 1.0 - 0.06 * (l - 3);
    layer_range ranges[3];
    ramp_error err;
    cr_assert_eq(split_exit_aware(&c, 3, reach, 16, NULL, ranges, &err), 0, "%s", err.message);
    int first = ranges[0].end_layer - ranges[0].first_layer, last = ranges[2].end_layer - ranges[2].first_layer;
    cr_assert_lt(first, last, "first stage %d layers, last %d", first, last);
}

static void expect_refused(const double *reach, int n, const char *needle) {
    model_config c = tiny_head_config();
    layer_range ranges[3];
    ramp_error err = {{0}};
    cr_assert_eq(split_exit_aware(&c, 3, reach, n, NULL, ranges, &err), -1, "a bad profile was accepted (%s)", needle);
    cr_assert(strstr(err.message, needle), "message '%s' lacks '%s'", err.message, needle);
}

Test(split, invalid_profiles_are_refused_naming_what_was_expected) {
    double reach[17];
    for (int l = 0; l < 17; l++) reach[l] = 1.0;
    expect_refused(reach, 15, "each of the model's 16 layers, found 15 values");
    expect_refused(reach, 17, "found 17 values");
    reach[5] = 0.5;
    reach[6] = 0.75;
    expect_refused(reach, 16, "layer 6 is reached by more rows (0.75) than layer 5 (0.5)");
    reach[5] = reach[6] = 1.0;
    reach[9] = -0.1;
    expect_refused(reach, 16, "layer 9: expected a share of rows in [0, 1], found -0.1");
    reach[9] = NAN;
    expect_refused(reach, 16, "layer 9: expected a share of rows in [0, 1], found nan");
    reach[9] = 1.5;
    expect_refused(reach, 16, "found 1.5");
    double none[16] = {0};
    expect_refused(none, 16, "expected rows at layer 0");
}

Test(exit_profile, reach_counts_rows_not_requests) {
    /* 10 rows leave after 4 layers, 30 go the whole way: layers 4.. see 30 of 40 rows. */
    exit_profile p;
    ramp_error err;
    cr_assert_eq(exit_profile_from_depths(&p, 16, (long[]){10, 30}, (int[]){4, 16}, 2, "test", &err), 0, "%s",
                 err.message);
    cr_assert_eq(p.rows, 40);
    for (int l = 0; l < 16; l++) cr_assert_float_eq(p.reach[l], l < 4 ? 1.0 : 0.75, 1e-12, "layer %d", l);
    exit_profile_free(&p);
    cr_assert_eq(exit_profile_from_depths(&p, 16, (long[]){10}, (int[]){17}, 1, "test", &err), -1);
    cr_assert(strstr(err.message, "expected 1..16 layers"), "%s", err.message);
}

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    cr_assert(f);
    fputs(text, f);
    fclose(f);
}

Test(exit_profile, read_back_from_json_and_from_a_classifier_sidecar) {
    char dir[] = "/tmp/ramp-test-split.XXXXXX";
    cr_assert(mkdtemp(dir));
    char path[256], sidecar[256], classifier[256];
    snprintf(path, sizeof path, "%s/eval.json", dir);
    exit_profile p;
    ramp_error err;
    cr_assert_eq(exit_profile_from_depths(&p, 16, (long[]){10, 30}, (int[]){4, 16}, 2, "test", &err), 0);
    write_file(path, "{\"task\": \"sst2\"}");
    cr_assert_eq(exit_profile_attach(path, &p, &err), 0, "%s", err.message);
    exit_profile back;
    cr_assert_eq(exit_profile_read(&back, path, 16, &err), 0, "%s", err.message);
    cr_assert_eq(back.n_layers, 16);
    cr_assert_eq(back.rows, 40);
    for (int l = 0; l < 16; l++) cr_assert_float_eq(back.reach[l], p.reach[l], 1e-12);
    exit_profile_free(&back);
    cr_assert_eq(exit_profile_read(&back, path, 12, &err), -1, "a 16-layer profile accepted for 12 layers");
    cr_assert(strstr(err.message, "eval.json") && strstr(err.message, "12 layers, found 16"), "%s", err.message);

    /* a classifier (libsvm text) has its profile in CLASSIFIER.json */
    snprintf(classifier, sizeof classifier, "%s/model.svm", dir);
    snprintf(sidecar, sizeof sidecar, "%s/model.svm.json", dir);
    write_file(classifier, "svm_type c_svc\n");
    write_file(sidecar, "{\"kind\": \"svm\"}");
    cr_assert_eq(exit_profile_read(&back, classifier, 16, &err), -1);
    cr_assert(strstr(err.message, "model.svm.json") && strstr(err.message, "\"exit_profile\""), "%s", err.message);
    cr_assert_eq(exit_profile_attach(sidecar, &p, &err), 0);
    cr_assert_eq(exit_profile_read(&back, classifier, 16, &err), 0, "%s", err.message);
    exit_profile_free(&back);

    write_file(path, "{\"exit_profile\": {\"layers\": 16, \"reach\": [1, 1, \"x\"]}}");
    cr_assert_eq(exit_profile_read(&back, path, 16, &err), -1);
    cr_assert(strstr(err.message, "reach[2]: expected a number"), "%s", err.message);
    write_file(path, "{\"exit_profile\": {\"layers\": 3, \"reach\": [1, 0.5, 0.75]}}");
    cr_assert_eq(exit_profile_read(&back, path, 3, &err), -1);
    cr_assert(strstr(err.message, "eval.json: exit profile: layer 2 is reached by more rows"), "%s", err.message);
    /* neither the file nor a sidecar beside it: the message says what each one is */
    unlink(sidecar);
    cr_assert_eq(exit_profile_read(&back, classifier, 16, &err), -1);
    cr_assert(strstr(err.message, "it is not a JSON object") && strstr(err.message, "model.svm.json does not exist"),
              "%s", err.message);
    exit_profile_free(&p);
    unlink(path);
    unlink(classifier);
    rmdir(dir);
}

Test(split, stages_never_start_inside_a_parallel_pair) {
    model_config c = tiny_head_config();
    forward_pairs pairs = {.first = 3, .end = 13}; /* (3,4), (5,6), ..., (11,12) */
    double reach[16];
    stepped_profile(reach);
    for (int stages = 2; stages <= 8; stages++) {
        layer_range ranges[8];
        ramp_error err;
        cr_assert_eq(split_balanced(&c, stages, false, &pairs, ranges, &err), 0, "%s", err.message);
        cr_assert_eq(split_check_pairs(ranges, stages, &pairs, &err), 0, "balanced, %d stages: %s", stages, err.message);
        cr_assert_eq(split_exit_aware(&c, stages, reach, 16, &pairs, ranges, &err), 0, "%s", err.message);
        cr_assert_eq(split_check_pairs(ranges, stages, &pairs, &err), 0, "exit-aware, %d stages: %s", stages, err.message);
    }
    layer_range cut[2] = {{0, 6}, {6, 16}};
    ramp_error err;
    cr_assert_eq(split_check_pairs(cut, 2, &pairs, &err), -1);
    cr_assert(strstr(err.message, "stage 2 starts at layer 6, inside the parallel pair 5,6"), "%s", err.message);
    /* 16 layers with 7 pairs leave 9 places to start a stage: 10 stages cannot be had */
    forward_pairs wide = {.first = 1, .end = 15};
    layer_range ranges[10];
    cr_assert_eq(split_balanced(&c, 10, false, &wide, ranges, &err), -1);
    cr_assert(strstr(err.message, "without cutting a parallel pair"), "%s", err.message);
}
