/* test_exit_run.c: the coordinator's exit bookkeeping. Stages report to rank 0 independently, so
 * while recording (no decision holds a batch back) a deeper exit point's features may arrive
 * before a shallower one's; the recorded dataset must not depend on that order.
 */
#include <criterion/criterion.h>

#include <stdlib.h>
#include <string.h>

#include "exit_run.h"

enum { N_EXITS = 3, TOTAL_LAYERS = 8 };
static const int exit_layers[N_EXITS] = {2, 4, 6};

/* What a stage would report at exit point i for the one request: top-1 tokens 7, 7, 9. */
static Ramp__ExitFeatures report(int i) {
    Ramp__ExitFeatures f = RAMP__EXIT_FEATURES__INIT;
    f.request_id = 0;
    f.layer = (uint32_t)exit_layers[i];
    f.top_prob = 0.5f + 0.1f * (float)i;
    f.gap = 0.05f * (float)(i + 1);
    f.entropy = 1.0f - 0.2f * (float)i;
    f.top_token = i < 2 ? 7 : 9;
    return f;
}

/* Records one request whose exit points report in `order`, settles it at full depth with token 9
 * and returns the dataset (one example of N_EXITS observations). */
static exit_observation *record_in_order(const int order[N_EXITS]) {
    exit_run run = {0};
    exit_run_init(&run, EXIT_MODE_RECORD, false, NULL, N_EXITS, exit_layers, TOTAL_LAYERS);
    run.keep_records = true; /* a recording job keeps every record (a server keeps only the current one) */
    request r;
    memset(&r, 0, sizeof r);
    r.record = -1;
    r.capacity = 1;
    unsigned char exit_points[1];
    r.exit_points = exit_points;
    ramp_error err;
    for (int k = 0; k < N_EXITS; k++) {
        Ramp__ExitFeatures f = report(order[k]);
        bool leaves = true;
        cr_assert_eq(exit_run_observe(&run, &r, 0, order[k], &f, &leaves, &err), 0, "%s", err.message);
        cr_assert_not(leaves, "recording never exits a row");
    }
    exit_run_settle(&run, &r, 9, N_EXITS);
    int n = 0;
    exit_observation *rows = exit_run_dataset(&run, &n);
    cr_assert_eq(n, 1);
    exit_run_free(&run);
    return rows;
}

Test(exit_run, previous_point_features_do_not_depend_on_arrival_order) {
    const int in_order[N_EXITS] = {0, 1, 2}, deep_first[N_EXITS] = {0, 2, 1}, reversed[N_EXITS] = {2, 1, 0};
    exit_observation *expected = record_in_order(in_order);
    /* the look-back features, as the classifier sees them */
    cr_assert_float_eq(expected[0].features[EXIT_FEATURE_PREVIOUS_TOP_PROB], 0.0f, 1e-7, "no point before the first");
    cr_assert_float_eq(expected[0].features[EXIT_FEATURE_AGREES_PREVIOUS], 0.0f, 1e-7);
    cr_assert_float_eq(expected[1].features[EXIT_FEATURE_AGREES_PREVIOUS], 1.0f, 1e-7, "7 then 7");
    cr_assert_float_eq(expected[1].features[EXIT_FEATURE_PREVIOUS_TOP_PROB], 0.5f, 1e-6);
    cr_assert_float_eq(expected[2].features[EXIT_FEATURE_AGREES_PREVIOUS], 0.0f, 1e-7, "7 then 9");
    cr_assert_float_eq(expected[2].features[EXIT_FEATURE_PREVIOUS_TOP_PROB], 0.6f, 1e-6);
    cr_assert_float_eq(expected[2].features[EXIT_FEATURE_PREVIOUS_GAP], 0.1f, 1e-6);
    cr_assert(!expected[0].stays && !expected[1].stays && expected[2].stays, "only the last point agrees with 9");
    const int *orders[] = {deep_first, reversed};
    for (int k = 0; k < 2; k++) {
        exit_observation *got = record_in_order(orders[k]);
        for (int e = 0; e < N_EXITS; e++) {
            cr_assert_eq(memcmp(got[e].features, expected[e].features, sizeof got[e].features), 0,
                         "order %d: exit point %d's features differ from in-order arrival", k, e);
            cr_assert_eq(got[e].stays, expected[e].stays);
        }
        free(got);
    }
    free(expected);
}

/* A report of many rows (more requests than the records array first holds, so it grows while they
 * are recorded): deciding them together gives each the answer it gets alone. */
Test(exit_run, rows_of_one_report_decided_together_as_alone) {
    enum { ROWS = 300 };
    exit_policy policy;
    memset(&policy, 0, sizeof policy);
    policy.kind = EXIT_POLICY_CONFIDENCE;
    policy.n_exits = N_EXITS;
    for (int i = 0; i < N_EXITS; i++) policy.exit_layers[i] = exit_layers[i], policy.thresholds[i] = 0.55;
    policy.total_layers = TOTAL_LAYERS;
    exit_run together = {0}, alone = {0};
    exit_run_init(&together, EXIT_MODE_DECIDE, false, &policy, N_EXITS, exit_layers, TOTAL_LAYERS);
    exit_run_init(&alone, EXIT_MODE_DECIDE, false, &policy, N_EXITS, exit_layers, TOTAL_LAYERS);
    together.keep_records = alone.keep_records = true;
    static request a[ROWS], b[ROWS];
    static unsigned char points_a[ROWS], points_b[ROWS];
    static exit_observation asked[ROWS];
    request *asked_requests[ROWS];
    int asked_points[ROWS], n_asked = 0;
    bool leaves[ROWS], leaves_alone[ROWS];
    ramp_error err;
    for (int i = 0; i < ROWS; i++) {
        request *rs[2] = {&a[i], &b[i]};
        unsigned char *ps[2] = {&points_a[i], &points_b[i]};
        for (int k = 0; k < 2; k++) {
            memset(rs[k], 0, sizeof *rs[k]);
            rs[k]->record = -1, rs[k]->capacity = 1, rs[k]->exit_points = ps[k];
            rs[k]->exit = (request_exit){.mode = EXIT_MODE_DECIDE, .policy = &policy};
        }
        Ramp__ExitFeatures f = report(1);
        f.request_id = (uint64_t)i;
        f.top_prob = (float)(i % 10) / 10.0f;
        bool ask;
        cr_assert_eq(exit_run_record(&together, &a[i], i, 1, &f, &ask, &asked[n_asked], &err), 0, "%s", err.message);
        cr_assert(ask);
        asked_requests[n_asked] = &a[i], asked_points[n_asked++] = 1;
        cr_assert_eq(exit_run_observe(&alone, &b[i], i, 1, &f, &leaves_alone[i], &err), 0, "%s", err.message);
    }
    cr_assert_gt(together.records_capacity, 256, "the records array grew while the rows were recorded");
    exit_run_decide(&together, n_asked, asked_requests, asked_points, asked, leaves);
    int left = 0;
    for (int i = 0; i < ROWS; i++) {
        cr_assert_eq(leaves[i], leaves_alone[i], "row %d", i);
        cr_assert_eq(leaves[i], (i % 10) >= 6, "row %d: top_prob %.1f against 0.55", i, (i % 10) / 10.0);
        left += leaves[i];
    }
    cr_assert_eq(left, ROWS * 4 / 10);
    exit_run_free(&together);
    exit_run_free(&alone);
}
