/* exit_commands.c: the early-exit jobs: `ramp eval`, `ramp exit-train`, `ramp exit-calibrate`.
 *
 * All three run a labelled task (or, for exit-calibrate, prompts to continue) through the same
 * pipeline as `generate`, on one process or many ranks:
 *  - eval runs the data at full depth and then with the exit policy, in one invocation, and
 *    reports accuracy, agreement, pruning and time for both;
 *  - exit-train records the exit features at every exit point on a full-depth run and trains the
 *    AdaInfer SVM (threshold chosen on a held-out part);
 *  - exit-calibrate does the same for LITE's per-exit-point confidence thresholds.
 */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "cli.h"
#include "commands.h"
#include "exit_policy.h"
#include "exit_profile.h"
#include "pipeline.h"
#include "task.h"

typedef struct {
    pipeline_options pipeline;
    const char *task, *data, *exit_spec, *json, *output, *prompts, *features_csv;
    const char *exit_head; /* "labels" or "full" */
    const char *full_from; /* eval: a stored full-depth result (eval --json) instead of a full run */
    bool no_full;          /* eval: no full-depth run */
    int limit, skip, n_new, sweep;
    int rounds;            /* eval: timed runs of each kind, alternating */
    double target, heldout_fraction;
} exit_job_options;

static void exit_job_usage(FILE *out, const char *command) {
    if (!strcmp(command, "eval"))
        fprintf(out, "usage: ramp eval -m MODEL --task sst2|trec|agnews|rte --data FILE [--exit none|svm:FILE|conf:FILE]\n"
                     "                 [--json OUT] [--limit N] [--sweep N] [--no-full [--full-from EVAL.json]] [--rounds N]\n\n"
                     "Runs a labelled data set at full depth and then with the exit policy; reports accuracy with and\n"
                     "without exit, agreement with the full model, mean layers, pruning ratio, exit histogram, time.\n"
                     "--no-full skips the full-depth run: agreement and full accuracy come from --full-from (the --json\n"
                     "of an earlier eval of the same data, which records each example's full-depth answer) or are left\n"
                     "out. --json also records the exit profile (share of rows reaching each layer) for --split.\n"
                     "--sweep N replaces the exit run: the full-depth run records the exit features and the policy is\n"
                     "replayed on them at N thresholds across its useful range (svm: the decision threshold moved;\n"
                     "conf: every point's threshold scaled), plus its own; a table on stderr, \"sweep\" in --json.\n"
                     "--rounds N runs the full-depth and the exit run N times each, alternating, on one loaded pipeline:\n"
                     "seconds_full and seconds_exit are then medians, saving_median the median of the rounds' savings\n"
                     "(1 - exit / full of each pair), and every round must give the same answers.\n\n");
    else if (!strcmp(command, "exit-train"))
        fprintf(out, "usage: ramp exit-train -m MODEL --task TASK --data FILE -o CLASSIFIER [--target-agreement 0.99]\n"
                     "                       [--heldout 0.25] [--limit N]\n\n"
                     "Records exit features on a full-depth run, trains the AdaInfer SVM (libsvm) and picks its threshold\n"
                     "on the held-out part. Writes CLASSIFIER (libsvm model) and CLASSIFIER.json (with the exit profile\n"
                     "on the held-out part, for --split exit-aware); use with --exit svm:FILE.\n\n");
    else
        fprintf(out, "usage: ramp exit-calibrate -m MODEL (--task TASK --data FILE | -f PROMPTS -n N) -o FILE\n"
                     "                           [--target-agreement 0.99] [--limit N]\n\n"
                     "Sets LITE's per-exit-point confidence thresholds from a full-depth run: the lowest top-1 probability\n"
                     "at which an exit point already agrees with the final layer at the target rate, chosen on the first\n"
                     "part of the data; agreement and pruning are reported on the held-out rest (--heldout), which the\n"
                     "thresholds never saw. Writes FILE (JSON); use with --exit conf:FILE (generate: token-level exits;\n"
                     "eval: request-level).\n\n");
    fprintf(out, "  -m, --model FILE          GGUF file or llama2.c checkpoint (--tokenizer FILE for the latter)\n"
                 "      --task T --data FILE  a labelled set as found in ../shared/data (sst2 stsa.binary.*, glue_dev.tsv;\n"
                 "                            trec train/test.txt; agnews CSV; rte jsonl)\n"
                 "      --limit N / --skip N  use N examples / skip the first N\n"
                 "      --exit-layers L,...   exit points as layer counts (default: the policy's, else stage boundaries);\n"
                 "                            every:K puts one after every K layers (fewer exit heads: cheaper)\n"
                 "      --exit-head labels|full  LM head at exit points over the task's label tokens (cheap, default\n"
                 "                            for tasks) or the whole vocabulary (AdaInfer's features)\n"
                 "      --target-agreement A  agreement with the full model to keep (default 0.99)\n"
                 "      --heldout F           share of the data held out (default 0.25): exit-train chooses its threshold\n"
                 "                            there; exit-calibrate only reports on it\n"
                 "      --kv-fill recompute|copy|omit  (generation) KV of skipped layers\n"
                 "      --json OUT            write the results as JSON\n"
                 "      --sweep N             (eval) agreement, accuracy and pruning at N thresholds (see above)\n"
                 "      --no-full             (eval) no full-depth run; --full-from EVAL.json reads its answers instead\n"
                 "      --rounds N            (eval) time each run N times, alternating (default 1; see above)\n"
                 "      --features-csv OUT    (exit-train, exit-calibrate) also write the recorded features, one row\n"
                 "                            per example and exit point\n\n%s",
            pipeline_flags_help);
}

static int parse_exit_job(int argc, char **argv, const char *command, exit_job_options *o) {
    memset(o, 0, sizeof *o);
    pipeline_options_default(&o->pipeline);
    o->pipeline.exits = true;
    o->heldout_fraction = 0.25;
    /* exit-calibrate's default was 0.9; scripts/token-curve.sh (lite16, 40 unseen prompts x 48 tokens)
     * found 0.99 with --kv-fill recompute the best operating point: 24.6% of layer evaluations saved
     * on the tokens' path at token agreement 0.972, where 0.9 saved 51.5% at 0.393 and 0.97 31.9% at 0.699. */
    o->target = 0.99;
    o->n_new = 32;
    o->rounds = 1;
    ramp_error err;
    enum { TOKENIZER = 1000, TASK, DATA, EXIT, JSON, LIMIT, SKIP, TARGET, HELDOUT, EXIT_LAYERS, EXIT_HEAD, KV_FILL,
           FEATURES_CSV, SWEEP, NO_FULL, FULL_FROM, ROUNDS, PIPELINE_FLAG };
    static const struct option long_options[] = {
        {"model", required_argument, 0, 'm'}, {"tokenizer", required_argument, 0, TOKENIZER},
        {"task", required_argument, 0, TASK}, {"data", required_argument, 0, DATA},
        {"exit", required_argument, 0, EXIT}, {"json", required_argument, 0, JSON},
        {"limit", required_argument, 0, LIMIT}, {"skip", required_argument, 0, SKIP},
        {"target-agreement", required_argument, 0, TARGET}, {"heldout", required_argument, 0, HELDOUT},
        {"exit-layers", required_argument, 0, EXIT_LAYERS}, {"exit-head", required_argument, 0, EXIT_HEAD},
        {"kv-fill", required_argument, 0, KV_FILL}, {"output", required_argument, 0, 'o'},
        {"features-csv", required_argument, 0, FEATURES_CSV}, {"sweep", required_argument, 0, SWEEP},
        {"no-full", no_argument, 0, NO_FULL}, {"full-from", required_argument, 0, FULL_FROM},
        {"rounds", required_argument, 0, ROUNDS},
        {"file", required_argument, 0, 'f'}, {"tokens", required_argument, 0, 'n'},
        {"help", no_argument, 0, 'h'}, CLI_PIPELINE_OPTIONS(PIPELINE_FLAG), {0, 0, 0, 0},
    };
    int c, option_index;
    float number;
    optind = 1;
    while ((c = getopt_long(argc, argv, "m:o:f:n:h", long_options, &option_index)) != -1) {
        int bad = 0;
        switch (c) {
        case 'm': o->pipeline.model_path = optarg; break;
        case TOKENIZER: o->pipeline.tokenizer_path = optarg; break;
        case TASK: o->task = optarg; break;
        case DATA: o->data = optarg; break;
        case EXIT: o->exit_spec = optarg; break;
        case JSON: o->json = optarg; break;
        case 'o': o->output = optarg; break;
        case FEATURES_CSV: o->features_csv = optarg; break;
        case 'f': o->prompts = optarg; break;
        case 'n': bad = cli_parse_int("-n", optarg, 1, 1 << 20, &o->n_new, &err); break;
        case LIMIT: bad = cli_parse_int("--limit", optarg, 1, 1 << 30, &o->limit, &err); break;
        case SKIP: bad = cli_parse_int("--skip", optarg, 0, 1 << 30, &o->skip, &err); break;
        case SWEEP: bad = cli_parse_int("--sweep", optarg, 2, 10000, &o->sweep, &err); break;
        case ROUNDS: bad = cli_parse_int("--rounds", optarg, 1, 1000, &o->rounds, &err); break;
        case NO_FULL: o->no_full = true; break;
        case FULL_FROM: o->full_from = optarg, o->no_full = true; break;
        case TARGET:
            bad = cli_parse_float("--target-agreement", optarg, &number, &err);
            if (!bad && !(number > 0 && number <= 1)) bad = -1, cli_error(&err, "--target-agreement must be in (0, 1]");
            o->target = number;
            break;
        case HELDOUT:
            bad = cli_parse_float("--heldout", optarg, &number, &err);
            if (!bad && !(number > 0 && number < 1)) bad = -1, cli_error(&err, "--heldout must be in (0, 1)");
            o->heldout_fraction = number;
            break;
        case EXIT_LAYERS: o->pipeline.exit_layers = optarg; break;
        case EXIT_HEAD:
            if (strcmp(optarg, "labels") && strcmp(optarg, "full"))
                bad = -1, cli_error(&err, "--exit-head expects labels or full, got '%s'", optarg);
            o->exit_head = optarg;
            break;
        case KV_FILL:
            if (!strcmp(optarg, "recompute")) o->pipeline.kv_fill = KV_FILL_RECOMPUTE;
            else if (!strcmp(optarg, "copy")) o->pipeline.kv_fill = KV_FILL_COPY;
            else if (!strcmp(optarg, "omit")) o->pipeline.kv_fill = KV_FILL_OMIT;
            else bad = -1, cli_error(&err, "--kv-fill expects recompute, copy or omit, got '%s'", optarg);
            break;
        case PIPELINE_FLAG: bad = pipeline_parse_flag(&o->pipeline, long_options[option_index].name, optarg, &err) < 0; break;
        case 'h': exit_job_usage(stdout, command); exit(0);
        default: exit_job_usage(stderr, command); return 2;
        }
        if (bad) return cli_usage_error(command, &err);
    }
    if (optind < argc) return cli_usage_error(command, cli_error(&err, "unexpected argument '%s'", argv[optind]));
    if (!o->pipeline.model_path) return cli_usage_error(command, cli_error(&err, "-m MODEL is required"));
    bool generation = !strcmp(command, "exit-calibrate") && o->prompts;
    if (!generation && (!o->task || !o->data))
        return cli_usage_error(command, cli_error(&err, "--task and --data are required"));
    if (strcmp(command, "eval") && !o->output) return cli_usage_error(command, cli_error(&err, "-o FILE is required"));
    if (o->sweep && (strcmp(command, "eval") || !o->exit_spec || !strcmp(o->exit_spec, "none")))
        return cli_usage_error(command, cli_error(&err, "--sweep is for eval with --exit svm:FILE or conf:FILE"));
    if (o->no_full && (strcmp(command, "eval") || !o->exit_spec || !strcmp(o->exit_spec, "none")))
        return cli_usage_error(command, cli_error(&err, "--no-full and --full-from are for eval with --exit svm:FILE or "
                                                        "conf:FILE (without exits the full-depth run is the run)"));
    if (o->rounds > 1 && (strcmp(command, "eval") || o->sweep))
        return cli_usage_error(command, cli_error(&err, "--rounds times eval's full-depth and exit runs: it is for "
                                                        "eval without --sweep (a sweep replays one recorded run)"));
    if (o->no_full && o->sweep)
        return cli_usage_error(command, cli_error(&err, "--sweep replays features recorded at full depth: it cannot "
                                                        "go with --no-full"));
    return 0;
}

/* Everything a task job needs on every rank before the pipeline starts: the data and the label
 * tokens (the stages' exit heads use them). */
typedef struct {
    tokenizer *tokenizer;
    task_dataset task;
    exit_policy policy;
    char exit_layers_text[512];
    char split_text[4096];
} exit_job;

static int exit_job_prepare(exit_job *job, exit_job_options *o, ramp_error *err) {
    memset(job, 0, sizeof *job);
    model m;
    model_slice none = {0, 0, false, false};
    if (model_load(&m, o->pipeline.model_path, &none, true, o->pipeline.tokenizer_path, err)) return -1;
    job->tokenizer = m.tokenizer;
    m.tokenizer = NULL; /* keep it; the rest of the (weightless) model goes */
    exit_policy_use use = {.n_layers = m.config.n_layers, .vocab_size = m.config.vocab_size, .task = o->task};
    model_free(&m);
    if (o->task) {
        if (task_load(&job->task, o->task, o->data, job->tokenizer, o->skip, o->limit, err)) return -1;
        if (!o->exit_head || !strcmp(o->exit_head, "labels")) {
            o->pipeline.candidates = job->task.label_tokens;
            o->pipeline.n_candidates = job->task.n_labels;
            o->pipeline.answers_from_candidates = true; /* a task's answer is one of its labels */
        }
    }
    if (o->exit_spec && strcmp(o->exit_spec, "none")) {
        if (exit_policy_load(&job->policy, o->exit_spec, err)) return -1;
        use.label_tokens = job->task.label_tokens;
        use.n_labels = job->task.n_labels;
        if (exit_policy_check_use(&job->policy, o->exit_spec, &use, err)) return -1;
        if (!o->pipeline.exit_layers) {
            format_exit_layers(job->policy.exit_layers, job->policy.n_exits, job->exit_layers_text,
                               sizeof job->exit_layers_text);
            o->pipeline.exit_layers = job->exit_layers_text;
        }
        pipeline_split_from_policy(&o->pipeline, o->exit_spec, job->split_text, sizeof job->split_text);
    }
    return 0;
}

static void exit_job_free(exit_job *job) {
    task_free(&job->task);
    exit_policy_free(&job->policy);
    if (job->tokenizer) tokenizer_free(job->tokenizer);
}

static int submit_task(pipeline *p, const task_dataset *task, ramp_error *err) {
    sampling_params greedy = {.temperature = 0.0f, .top_p = 1.0f};
    for (int i = 0; i < task->n_examples; i++) {
        int index;
        if (pipeline_submit_text(p, task->examples[i].prompt, task->examples[i].prompt_length, 1, &greedy, &index, err))
            return ramp_fail_prefix(err, "example %d: ", i + 1);
    }
    return 0;
}

static int label_of_token(const task_dataset *task, int token) {
    for (int l = 0; l < task->n_labels; l++)
        if (task->label_tokens[l] == token) return l;
    return -1;
}

/* The label a request answered: its exit token, or the token it generated at full depth. */
static int answered_label(const pipeline *p, const task_dataset *task, int index) {
    const request *r = &p->scheduler.requests[index];
    int token = r->finished == FINISH_EXIT ? r->exit_token : (r->generated > 0 ? r->tokens[r->n_prompt] : -1);
    return label_of_token(task, token);
}

static int run_task(pipeline *p, const task_dataset *task, exit_mode mode, const exit_policy *policy, int *labels,
                    double *seconds, ramp_error *err) {
    if (pipeline_reset_requests(p, err) || pipeline_set_exits(p, mode, false, policy, err)) return -1;
    double start = clock_seconds();
    if (submit_task(p, task, err) || pipeline_run(p, err)) return -1;
    *seconds = clock_seconds() - start;
    for (int i = 0; i < task->n_examples && labels; i++) labels[i] = answered_label(p, task, i);
    return 0;
}

static int write_eval_json(const char *path, json_t *root, ramp_error *err) {
    int status = json_dump_file(root, path, JSON_INDENT(2));
    if (status) return ramp_fail(err, "%s: cannot write the results", path);
    return 0;
}

/* ---- eval --sweep: the exit policy at many thresholds, replayed from recorded features ----
 *
 * A request-level exit is decided at each exit point from that point's features alone (top-1
 * probability, gap, entropy, depth, the previous point's top-1 and confidence), and those come
 * from hidden states that do not depend on whether the row leaves later: up to the point where it
 * leaves, a row of an exit run computes exactly what it computes at full depth. So replaying the
 * observations a full-depth run recorded with another threshold gives that threshold's exits,
 * agreement, accuracy and pruning without running the model again. tests/e2e/plots.sh checks
 * this: at the policy's own threshold the replay equals a real exit run (same agreement, accuracy,
 * pruning and exit histogram, on one process and on 3 stages).
 */
typedef struct {
    double threshold; /* svm: the decision threshold; conf: the factor on every point's threshold */
    double agreement, accuracy, pruning_ratio, mean_layers;
    long histogram[EXIT_MAX_POINTS + 1];
} sweep_point;

typedef struct {
    const exit_policy *own;
    const exit_observation *observations; /* [example * n_exits + point], in request order */
    const exit_run *run;
    const task_dataset *task;
    const int *full; /* each example's label at full depth */
} sweep_data;

/* The policy moved along its one knob, x: svm threshold = own + x; conf thresholds = own * x. */
static void replay(const sweep_data *d, double x, sweep_point *out, int *labels, int *depths) {
    exit_policy policy = *d->own; /* shares the classifier: not freed */
    bool svm = policy.kind == EXIT_POLICY_SVM;
    if (svm) policy.threshold += x;
    for (int i = 0; !svm && i < policy.n_exits; i++) policy.thresholds[i] *= x;
    const int n = d->task->n_examples, n_exits = d->run->n_exits;
    memset(out, 0, sizeof *out);
    out->threshold = svm ? policy.threshold : x;
    long agree = 0, correct = 0, layers = 0;
    for (int e = 0; e < n; e++) {
        const exit_observation *row = d->observations + (size_t)e * n_exits;
        int at = 0;
        while (at < n_exits && !exit_policy_should_exit(&policy, at, row[at].features, row[at].top_token)) at++;
        int label = at < n_exits ? label_of_token(d->task, row[at].top_token) : d->full[e];
        out->histogram[at]++;
        layers += at < n_exits ? d->run->exit_layers[at] : d->run->total_layers;
        agree += label == d->full[e];
        correct += label == d->task->examples[e].label;
        if (labels) labels[e] = label;
        if (depths) depths[e] = at < n_exits ? d->run->exit_layers[at] : d->run->total_layers;
    }
    out->agreement = (double)agree / n;
    out->accuracy = (double)correct / n;
    out->mean_layers = (double)layers / n;
    out->pruning_ratio = 1.0 - out->mean_layers / d->run->total_layers;
}

static int by_value(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Whether every example leaves at the first exit point (low) or none leaves (high) at x. */
static bool at_edge(const sweep_data *d, double x, bool high) {
    sweep_point s;
    replay(d, x, &s, NULL, NULL);
    return s.histogram[high ? d->run->n_exits : 0] == d->task->n_examples;
}

/* The smallest x at which at_edge(high) holds (high), or the largest (low), between inside and
 * outside (where it does not and does hold); the predicate is monotone in x. */
static double bisect_edge(const sweep_data *d, double inside, double outside, bool high) {
    for (int k = 0; k < 30; k++) { /* to a billionth of the bracket */
        double middle = 0.5 * (inside + outside);
        if (at_edge(d, middle, high)) outside = middle;
        else inside = middle;
    }
    return outside;
}

/* n_points thresholds evenly spaced over the useful range, from where every example leaves at the
 * first exit point to where none leaves, plus the policy's own, in increasing order. Fills
 * labels/depths/own_point with the policy's own replay (what an exit run answers) and *table. */
static int sweep_thresholds(pipeline *p, const exit_job *job, const int *full, int n_points, int *labels,
                            int *depths, sweep_point *own_point, json_t **table, ramp_error *err) {
    bool same = job->policy.n_exits == p->exits.n_exits;
    for (int i = 0; same && i < p->exits.n_exits; i++) same = job->policy.exit_layers[i] == p->exits.exit_layers[i];
    if (!same) return ramp_fail(err, "the exit policy was made for other exit points than this run's");
    int n_examples;
    exit_observation *observations = exit_run_dataset(&p->exits, &n_examples);
    double *xs = malloc(((size_t)n_points + 1) * sizeof *xs);
    if (!observations || !xs || n_examples != job->task.n_examples) {
        free(observations);
        free(xs);
        return observations && xs ? ramp_fail(err, "--sweep: features at every exit point for only %d of %d examples",
                                              n_examples, job->task.n_examples)
                                  : ramp_fail(err, "out of memory collecting exit features");
    }
    sweep_data d = {&job->policy, observations, &p->exits, &job->task, full};
    bool svm = job->policy.kind == EXIT_POLICY_SVM;
    double own = svm ? 0.0 : 1.0, low = svm ? -1.0 : 0.0, high = 1.0;
    while (!at_edge(&d, low, false) && low > -1e12) low *= 2;
    while (!at_edge(&d, high, true) && high < 1e12) high *= 2;
    double first = bisect_edge(&d, high, low, false), last = bisect_edge(&d, low, high, true);
    replay(&d, own, own_point, labels, depths);
    *table = json_array();
    fprintf(stderr, "ramp eval: %s over %d points, replayed from the features of the full-depth run (* the policy's own)\n"
            "  %10s  %9s  %8s  %7s\n", svm ? "svm decision threshold" : "confidence thresholds scaled by a factor",
            n_points + 1, svm ? "threshold" : "factor", "agreement", "accuracy", "pruning");
    for (int k = 0; k < n_points; k++) xs[k] = first + (last - first) * k / (n_points - 1);
    xs[n_points] = own;
    qsort(xs, (size_t)n_points + 1, sizeof *xs, by_value);
    for (int k = 0; k <= n_points; k++) {
        if (k > 0 && xs[k] == xs[k - 1]) continue;
        sweep_point s;
        replay(&d, xs[k], &s, NULL, NULL);
        fprintf(stderr, "%s %10.4f  %9.3f  %8.3f  %6.1f%%\n", xs[k] == own ? "*" : " ", s.threshold, s.agreement,
                s.accuracy, 100.0 * s.pruning_ratio);
        json_array_append_new(*table, json_pack("{s:f, s:f, s:f, s:f, s:b}", "threshold", s.threshold, "agreement",
                                                s.agreement, "accuracy", s.accuracy, "pruning_ratio",
                                                s.pruning_ratio, "policy", xs[k] == own));
    }
    free(xs);
    free(observations);
    return 0;
}

/* The answers of a stored full-depth run: the --json of an earlier eval of the same data. */
static int read_full_result(const char *path, const exit_job_options *o, const task_dataset *task, int *full,
                            ramp_error *err) {
    json_error_t error;
    json_t *root = json_load_file(path, 0, &error);
    if (!root) return ramp_fail(err, "--full-from %s: not valid JSON (line %d: %s)", path, error.line, error.text);
    json_t *labels = json_object_get(root, "labels_full");
    const char *stored_task = json_string_value(json_object_get(root, "task"));
    json_int_t examples = json_integer_value(json_object_get(root, "examples"));
    const char *stored_data = json_string_value(json_object_get(root, "data"));
    json_t *skip = json_object_get(root, "skip");
    const char *data = strrchr(o->data, '/') ? strrchr(o->data, '/') + 1 : o->data;
    int status = 0;
    if (!json_is_array(labels))
        status = ramp_fail(err, "--full-from %s: expected \"labels_full\", each example's full-depth answer (written "
                                "by eval --json), found none", path);
    else if (!stored_task || strcmp(stored_task, task->name) || examples != task->n_examples ||
             (stored_data && strcmp(stored_data, data)) || (json_is_integer(skip) && json_integer_value(skip) != o->skip) ||
             json_array_size(labels) != (size_t)task->n_examples)
        status = ramp_fail(err, "--full-from %s: a full-depth result for task '%s', %lld examples of %s from #%lld; this "
                                "run has task '%s', %d examples of %s from #%d", path, stored_task ? stored_task : "?",
                           (long long)examples, stored_data ? stored_data : "?",
                           json_is_integer(skip) ? (long long)json_integer_value(skip) : 0LL, task->name,
                           task->n_examples, data, o->skip);
    for (int i = 0; !status && i < task->n_examples; i++) {
        json_t *label = json_array_get(labels, (size_t)i);
        if (!json_is_integer(label) || json_integer_value(label) < -1 || json_integer_value(label) >= task->n_labels)
            status = ramp_fail(err, "--full-from %s: labels_full[%d]: expected a label index in -1..%d", path, i,
                               task->n_labels - 1);
        else full[i] = (int)json_integer_value(label);
    }
    json_decref(root);
    return status;
}

static json_t *labels_json(const int *labels, int n) {
    json_t *array = json_array();
    for (int i = 0; array && i < n; i++) json_array_append_new(array, json_integer(labels[i]));
    return array;
}

/* The exit profile of the requests of the last run: each ran its prompt's rows through depths[i]. */
static int run_profile(const pipeline *p, const int *depths, const char *source, exit_profile *profile,
                       ramp_error *err) {
    int n = p->scheduler.n_requests;
    long *rows = malloc((size_t)(n ? n : 1) * sizeof *rows);
    if (!rows) return ramp_fail(err, "out of memory");
    for (int i = 0; i < n; i++) rows[i] = p->scheduler.requests[i].n_prompt;
    int status = exit_profile_from_depths(profile, p->model.config.n_layers, rows, depths, n, source, err);
    free(rows);
    return status;
}

/* eval's timed runs, `rounds` of each, full depth and exit alternating so that a busy host's drift
 * falls on both alike; the exit run comes last, so the requests left in the scheduler are an exit
 * run's. Each round's seconds go to seconds_full[k] / seconds_exit[k]. A round that answers
 * differently from the first is an error: ramp's answers do not depend on timing. */
static int timed_rounds(pipeline *p, const exit_job *job, int rounds, bool run_full, bool run_exit, int *full,
                        int *exited, double *seconds_full, double *seconds_exit, ramp_error *err) {
    const task_dataset *task = &job->task;
    const size_t n = (size_t)task->n_examples;
    int *again = malloc((n ? n : 1) * sizeof *again);
    if (!again) return ramp_fail(err, "out of memory");
    int status = 0;
    for (int k = 0; !status && k < rounds; k++) {
        if (run_full && !(status = run_task(p, task, EXIT_MODE_NONE, NULL, k ? again : full, &seconds_full[k], err)) &&
            k && memcmp(again, full, n * sizeof *full))
            status = ramp_fail(err, "eval: round %d of the full-depth run answered differently from round 1", k + 1);
        if (!status && run_exit &&
            !(status = run_task(p, task, EXIT_MODE_DECIDE, &job->policy, k ? again : exited, &seconds_exit[k], err)) &&
            k && memcmp(again, exited, n * sizeof *exited))
            status = ramp_fail(err, "eval: round %d of the exit run answered differently from round 1", k + 1);
    }
    free(again);
    return status;
}

typedef struct {
    double least, median, most;
} spread;

/* n >= 1 values: their least, median and most (one sort). */
static spread spread_of(const double *values, int n) {
    double sorted[n];
    memcpy(sorted, values, (size_t)n * sizeof *sorted);
    qsort(sorted, (size_t)n, sizeof *sorted, by_value);
    return (spread){sorted[0], n % 2 ? sorted[n / 2] : 0.5 * (sorted[n / 2 - 1] + sorted[n / 2]), sorted[n - 1]};
}

static json_t *seconds_json(const double *values, int n) {
    json_t *array = json_array();
    for (int i = 0; array && i < n; i++) json_array_append_new(array, json_real(values[i]));
    return array;
}

/* What eval found: each example's answer at full depth and with exits, the runs' times, the exit figures. */
typedef struct {
    bool run_full, have_full, with_exit, sweep;
    int *full, *exited, *depths;           /* [examples] */
    double *round_full, *round_exit;       /* [rounds] seconds; one entry for a sweep's recording run */
    double seconds_full, seconds_exit;     /* medians over the rounds */
    spread saving;                         /* of the rounds' savings, 1 - exit / full of each pair */
    int correct_full, correct_exit, agree;
    double mean_layers;
    const long *exits_at;                  /* outputs per exit point, then at full depth */
    sweep_point own;                       /* a sweep: the policy's own threshold, replayed */
    json_t *sweep_table;
    exit_profile profile;
} eval_result;

static void eval_result_free(eval_result *r) {
    free(r->full);
    free(r->exited);
    free(r->depths);
    free(r->round_full);
    free(r->round_exit);
    json_decref(r->sweep_table);
    exit_profile_free(&r->profile);
}

/* Runs what eval asks (or reads the stored full-depth answers) and fills r. */
static int eval_run(pipeline *p, exit_job *job, const exit_job_options *o, eval_result *r, ramp_error *err) {
    const task_dataset *task = &job->task;
    const int n = task->n_examples, L = p->model.config.n_layers, rounds = o->rounds;
    r->with_exit = job->policy.kind != EXIT_POLICY_NONE;
    r->sweep = r->with_exit && o->sweep;
    r->run_full = !o->no_full;
    r->have_full = r->run_full || o->full_from;
    r->full = malloc((size_t)n * sizeof *r->full);
    r->exited = malloc((size_t)n * sizeof *r->exited);
    r->depths = malloc((size_t)n * sizeof *r->depths);
    r->round_full = calloc((size_t)rounds, sizeof *r->round_full);
    r->round_exit = calloc((size_t)rounds, sizeof *r->round_exit);
    if (!r->full || !r->exited || !r->depths || !r->round_full || !r->round_exit)
        return ramp_fail(err, "out of memory");
    /* A sweep records the exit features at full depth and replays them instead of an exit run. */
    int status = r->sweep ? run_task(p, task, EXIT_MODE_RECORD, NULL, r->full, &r->round_full[0], err)
                 : !r->run_full && o->full_from ? read_full_result(o->full_from, o, task, r->full, err)
                                                 : 0;
    if (!status && !r->sweep)
        status = timed_rounds(p, job, rounds, r->run_full, r->with_exit, r->full, r->exited, r->round_full,
                              r->round_exit, err);
    if (!status && r->sweep)
        status = sweep_thresholds(p, job, r->full, o->sweep, r->exited, r->depths, &r->own, &r->sweep_table, err);
    if (!status && r->with_exit && !r->sweep)
        for (int i = 0; i < n; i++) r->depths[i] = (int)p->scheduler.requests[i].layers_executed;
    if (!status && r->with_exit)
        status = run_profile(p, r->depths, r->sweep ? "eval: sweep replay at the policy's threshold" : "eval: exit run",
                             &r->profile, err);
    if (status) return -1;
    double savings[rounds];
    for (int k = 0; k < rounds; k++) savings[k] = r->round_full[k] > 0 ? 1.0 - r->round_exit[k] / r->round_full[k] : 0.0;
    r->saving = spread_of(savings, rounds);
    r->seconds_full = spread_of(r->round_full, rounds).median;
    /* without exits, or in a sweep (no exit run to time: dropped from the results), the exit time is the full one */
    r->seconds_exit = !r->with_exit || r->sweep ? r->seconds_full : spread_of(r->round_exit, rounds).median;
    if (!r->with_exit) memcpy(r->exited, r->full, (size_t)n * sizeof *r->full);
    for (int i = 0; i < n; i++) {
        r->correct_full += r->have_full && r->full[i] == task->examples[i].label;
        r->correct_exit += r->exited[i] == task->examples[i].label;
        r->agree += r->have_full && r->full[i] == r->exited[i];
    }
    const exit_run *run = &p->exits;
    r->exits_at = r->sweep ? r->own.histogram : run->histogram;
    r->mean_layers = r->sweep                        ? r->own.mean_layers
                     : r->with_exit && run->outputs ? (double)run->layers_executed / run->outputs
                                                     : L;
    return 0;
}

static const char *file_name_of(const char *path) { return strrchr(path, '/') ? strrchr(path, '/') + 1 : path; }

/* eval's results as JSON (the --json file; stdout shows it without the per-example arrays). */
static json_t *eval_json(const pipeline *p, const exit_job *job, const exit_job_options *o, eval_result *r) {
    const task_dataset *task = &job->task;
    const int n = task->n_examples, L = p->model.config.n_layers, rounds = o->rounds;
    const exit_run *run = &p->exits;
    json_t *histogram = json_object();
    for (int i = 0; r->with_exit && i <= run->n_exits; i++) {
        char key[16];
        snprintf(key, sizeof key, "%d", i < run->n_exits ? run->exit_layers[i] : L);
        json_object_set_new(histogram, key, json_integer(r->exits_at[i]));
    }
    if (!r->with_exit) {
        char key[16];
        snprintf(key, sizeof key, "%d", L);
        json_object_set_new(histogram, key, json_integer(n));
    }
    json_t *root = json_pack("{s:s, s:s, s:s, s:s, s:i, s:i, s:i, s:f, s:f, s:f, s:f, s:f, s:o, s:f, s:f, s:f, s:f}",
                             "task", task->name, "model", file_name_of(o->pipeline.model_path), "data",
                             file_name_of(o->data), "exit", o->exit_spec ? o->exit_spec : "none", "examples", n, "skip",
                             o->skip, "stages", p->n_stages, "accuracy_full", (double)r->correct_full / n,
                             "accuracy_exit", (double)r->correct_exit / n, "agreement", (double)r->agree / n,
                             "pruning_ratio", 1.0 - r->mean_layers / L, "mean_layers", r->mean_layers,
                             "exit_histogram", histogram, "seconds_full", r->seconds_full, "seconds_exit",
                             r->seconds_exit, "rows_per_second_full", r->run_full ? n / r->seconds_full : 0.0,
                             "rows_per_second_exit", n / r->seconds_exit);
    if (!root) return NULL;
    json_object_set_new(root, "full", json_string(r->run_full ? "run" : o->full_from ? "stored" : "none"));
    if (o->full_from) json_object_set_new(root, "full_from", json_string(o->full_from));
    if (!r->run_full) { /* nothing was timed at full depth */
        json_object_del(root, "seconds_full");
        json_object_del(root, "rows_per_second_full");
    }
    if (!r->have_full) { /* nothing to agree with */
        json_object_del(root, "accuracy_full");
        json_object_del(root, "agreement");
    }
    if (r->have_full) json_object_set_new(root, "labels_full", labels_json(r->full, n));
    json_object_set_new(root, "labels_exit", labels_json(r->exited, n));
    if (r->with_exit) json_object_set_new(root, "exit_profile", exit_profile_json(&r->profile));
    json_object_set_new(root, "rounds", json_integer(rounds));
    if (rounds > 1 && r->run_full) json_object_set_new(root, "round_seconds_full", seconds_json(r->round_full, rounds));
    if (rounds > 1 && r->with_exit && !r->sweep)
        json_object_set_new(root, "round_seconds_exit", seconds_json(r->round_exit, rounds));
    if (r->run_full && r->with_exit && !r->sweep)
        json_object_set_new(root, "saving_median", json_real(r->saving.median));
    if (r->sweep) { /* the exit figures are the replay's at the policy's own threshold; no exit run to time */
        json_object_del(root, "seconds_exit");
        json_object_del(root, "rows_per_second_exit");
        json_object_set_new(root, "sweep", r->sweep_table);
        r->sweep_table = NULL; /* the root owns it now */
    }
    return root;
}

/* The one-line summary on stderr. */
static void eval_print_summary(const pipeline *p, const exit_job *job, const exit_job_options *o,
                               const eval_result *r) {
    const int n = job->task.n_examples, L = p->model.config.n_layers, rounds = o->rounds;
    fprintf(stderr, "ramp eval: %s, %d examples, %d stage%s: ", job->task.name, n, p->n_stages,
            p->n_stages == 1 ? "" : "s");
    if (r->have_full)
        fprintf(stderr, "accuracy full %.3f%s, exit %.3f; agreement %.3f; ", (double)r->correct_full / n,
                r->run_full ? "" : " (stored)", (double)r->correct_exit / n, (double)r->agree / n);
    else
        fprintf(stderr, "accuracy exit %.3f (no full-depth result: agreement not known); ", (double)r->correct_exit / n);
    fprintf(stderr, "mean layers %.2f of %d (pruning %.1f%%)", r->mean_layers, L, 100.0 * (1.0 - r->mean_layers / L));
    if (r->run_full) fprintf(stderr, "; %.1f rows/s full", n / r->seconds_full);
    if (r->sweep) {
        fprintf(stderr, " (recording exit features); exit figures replayed at the policy's threshold\n");
        return;
    }
    if (r->run_full) fprintf(stderr, ", %.1f rows/s exit (x%.2f)", n / r->seconds_exit, r->seconds_full / r->seconds_exit);
    else fprintf(stderr, "; %.1f rows/s exit", n / r->seconds_exit);
    if (rounds > 1) fprintf(stderr, "; medians of %d rounds", rounds);
    if (rounds > 1 && r->run_full && r->with_exit)
        fprintf(stderr, ", wall-time saving %.1f%% (rounds %.1f%%..%.1f%%)", 100.0 * r->saving.median,
                100.0 * r->saving.least, 100.0 * r->saving.most);
    fputc('\n', stderr);
}

static int eval_job(pipeline *p, exit_job *job, const exit_job_options *o, ramp_error *err) {
    eval_result r = {0};
    json_t *root = NULL;
    int status = eval_run(p, job, o, &r, err);
    if (!status && !(root = eval_json(p, job, o, &r))) status = ramp_fail(err, "out of memory");
    if (!status) {
        /* stdout gets the figures without the per-example arrays (the --json file has them) */
        json_t *shown = json_deep_copy(root);
        json_object_del(shown, "labels_full");
        json_object_del(shown, "labels_exit");
        char *text = json_dumps(shown, JSON_INDENT(2));
        json_decref(shown);
        printf("%s\n", text ? text : "{}");
        free(text);
        /* The results are the job's output: a full disk or a closed pipe is a failure, not exit 0. */
        if (fflush(stdout) != 0 || ferror(stdout))
            status = ramp_fail(err, "stdout: cannot write the results: %s", strerror(errno));
    }
    if (!status) eval_print_summary(p, job, o, &r);
    if (!status && o->json) status = write_eval_json(o->json, root, err);
    json_decref(root);
    eval_result_free(&r);
    return status;
}

/* One CSV row per example and exit point, for studying the features outside ramp. */
static int write_features_csv(const char *path, const exit_observation *observations, int n_examples,
                              const exit_run *run, ramp_error *err) {
    FILE *out = fopen(path, "w");
    if (!out) return ramp_fail(err, "%s: cannot open for writing", path);
    fprintf(out, "example,exit_layer,top_prob,gap,entropy,agrees_previous,depth,previous_top_prob,previous_gap,"
                 "top_token,agrees_final,stays\n");
    for (int e = 0; e < n_examples; e++)
        for (int i = 0; i < run->n_exits; i++) {
            const exit_observation *o = &observations[(size_t)e * run->n_exits + i];
            fprintf(out, "%d,%d", e, run->exit_layers[i]);
            for (int j = 0; j < EXIT_FEATURE_COUNT; j++) fprintf(out, ",%.9g", o->features[j]);
            fprintf(out, ",%d,%d,%d\n", o->top_token, o->agrees_final, o->stays);
        }
    if (fclose(out)) return ramp_fail(err, "%s: write failed", path);
    return 0;
}

/* Where the held-out examples' rows would stop under the policy (requests[e]: example e's request). */
static int heldout_profile(const pipeline *p, const exit_policy *policy, const exit_dataset *heldout,
                           const int *requests, exit_profile *profile, ramp_error *err) {
    int n = heldout->n_examples;
    long *rows = malloc((size_t)n * sizeof *rows);
    int *depths = malloc((size_t)n * sizeof *depths);
    if (!rows || !depths) {
        free(rows);
        free(depths);
        return ramp_fail(err, "out of memory");
    }
    for (int e = 0; e < n; e++) {
        const exit_observation *row = heldout->observations + (size_t)e * heldout->n_exits;
        int at = 0;
        while (at < heldout->n_exits && !exit_policy_should_exit(policy, at, row[at].features, row[at].top_token)) at++;
        depths[e] = at < heldout->n_exits ? heldout->exit_layers[at] : heldout->total_layers;
        rows[e] = p->scheduler.requests[requests[e]].n_prompt;
    }
    int status = exit_profile_from_depths(profile, heldout->total_layers, rows, depths, n,
                                          "policy simulated on the held-out part", err);
    free(rows);
    free(depths);
    return status;
}

/* exit-train and exit-calibrate: a full-depth run that records the features, then fit. */
static int fit_job(pipeline *p, exit_job *job, const exit_job_options *o, bool svm, ramp_error *err) {
    double seconds;
    if (o->task) {
        if (run_task(p, &job->task, EXIT_MODE_RECORD, NULL, NULL, &seconds, err)) return -1;
    } else {
        prompt_list prompts = {0};
        int status = prompt_list_read(&prompts, o->prompts, err);
        sampling_params greedy = {.temperature = 0.0f, .top_p = 1.0f};
        if (!status) status = pipeline_reset_requests(p, err) || pipeline_set_exits(p, EXIT_MODE_RECORD, true, NULL, err);
        for (int i = 0; !status && i < prompts.count; i++) {
            int index;
            status = pipeline_submit_text(p, prompts.texts[i], prompts.lengths[i], o->n_new, &greedy, &index, err);
        }
        if (!status) status = pipeline_run(p, err);
        prompt_list_free(&prompts);
        if (status) return -1;
    }
    int n_examples;
    int *requests = malloc((size_t)(p->exits.n_records ? p->exits.n_records : 1) * sizeof *requests);
    exit_observation *observations = requests ? exit_run_dataset_of(&p->exits, &n_examples, requests) : NULL;
    if (!observations) {
        free(requests);
        return ramp_fail(err, "out of memory collecting exit features");
    }
    if (o->features_csv && write_features_csv(o->features_csv, observations, n_examples, &p->exits, err)) {
        free(observations);
        free(requests);
        return -1;
    }
    int n_heldout = (int)(n_examples * o->heldout_fraction);
    int n_train = n_examples - n_heldout;
    /* Generated tokens of one prompt depend on each other: the held-out part starts at a prompt's first. */
    while (n_train > 0 && n_train < n_examples && requests[n_train] == requests[n_train - 1]) n_train++;
    n_heldout = n_examples - n_train;
    if (n_train < 10 || n_heldout < 10) {
        free(observations);
        free(requests);
        return ramp_fail(err, "only %d examples with features at every exit point (%d to fit, %d held out): need at "
                              "least 10 in each part", n_examples, n_train, n_heldout);
    }
    const exit_run *run = &p->exits;
    const int *labels = o->task ? job->task.label_tokens : NULL;
    int n_labels = o->task ? job->task.n_labels : 0;
    exit_dataset train = {observations, n_train, run->n_exits, run->exit_layers, run->total_layers, labels, n_labels};
    exit_dataset heldout = {observations + (size_t)n_train * run->n_exits, n_heldout, run->n_exits, run->exit_layers,
                            run->total_layers, labels, n_labels};
    exit_policy policy = {0};
    /* exit-train fits on the first part and sets its threshold on the held-out part; exit-calibrate sets
     * its thresholds on the first part, so that the held-out part tells how they do on data they never saw */
    int status = svm ? exit_policy_train_svm(&policy, &train, &heldout, o->target, err)
                     : exit_policy_calibrate_confidence(&policy, &train, o->target, err);
    exit_profile profile = {0};
    bool profiled = false;
    if (!status) {
        const char *slash = strrchr(o->pipeline.model_path, '/');
        snprintf(policy.model_name, sizeof policy.model_name, "%s", slash ? slash + 1 : o->pipeline.model_path);
        snprintf(policy.task, sizeof policy.task, "%s", o->task ? o->task : "generation");
        exit_simulation sim;
        exit_policy_simulate(&policy, &heldout, &sim);
        fprintf(stderr,
                "ramp %s: %d examples (%d %s, %d held out), exit points", svm ? "exit-train" : "exit-calibrate",
                n_examples, n_train, svm ? "train" : "to set thresholds", n_heldout);
        for (int i = 0; i < run->n_exits; i++) fprintf(stderr, "%s%d", i ? "," : " ", run->exit_layers[i]);
        fprintf(stderr, "; held out%s: agreement %.3f, pruning %.1f%%, mean layers %.2f of %d\n",
                svm ? " (where the threshold was set)" : " (not used to set thresholds)", sim.agreement,
                100.0 * sim.pruning_ratio, sim.mean_layers, run->total_layers);
        if (o->task) { /* request-level exits: where the held-out requests' rows would stop */
            status = heldout_profile(p, &policy, &heldout, requests + n_train, &profile, err);
            profiled = !status;
        }
    }
    if (!status) status = exit_policy_save(&policy, o->output, err);
    if (!status && profiled) {
        char sidecar[4096];
        snprintf(sidecar, sizeof sidecar, svm ? "%s.json" : "%s", o->output);
        status = exit_profile_attach(sidecar, &profile, err);
    }
    if (!status) fprintf(stderr, "ramp: wrote %s%s\n", o->output, svm ? " and its .json sidecar" : "");
    exit_profile_free(&profile);
    exit_policy_free(&policy);
    free(observations);
    free(requests);
    return status;
}

static int run_exit_job(int argc, char **argv, transport *mpi, const char *command) {
    exit_job_options o;
    int status = parse_exit_job(argc, argv, command, &o);
    if (status) return status;
    ramp_error err;
    exit_job job;
    if (exit_job_prepare(&job, &o, &err)) {
        fprintf(stderr, "ramp %s: %s\n", command, err.message);
        exit_job_free(&job);
        return 1;
    }
    pipeline p;
    o.pipeline.mpi = mpi;
    if (pipeline_open(&p, &o.pipeline, &err)) {
        status = pipeline_fail(&p, command, &err);
    } else {
        if (!strcmp(command, "eval")) status = eval_job(&p, &job, &o, &err);
        else status = fit_job(&p, &job, &o, !strcmp(command, "exit-train"), &err);
        if (status || pipeline_finish(&p, &err)) status = pipeline_fail(&p, command, &err);
    }
    pipeline_close(&p);
    exit_job_free(&job);
    return status;
}

int command_eval(int argc, char **argv, transport *mpi) { return run_exit_job(argc, argv, mpi, "eval"); }
int command_exit_train(int argc, char **argv, transport *mpi) { return run_exit_job(argc, argv, mpi, "exit-train"); }
int command_exit_calibrate(int argc, char **argv, transport *mpi) {
    return run_exit_job(argc, argv, mpi, "exit-calibrate");
}
