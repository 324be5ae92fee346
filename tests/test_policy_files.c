/* test_policy_files.c: exit policy files from outside are checked before use (issue 12).
 *
 * Each case of the hostile-input probe is reproduced on a classifier trained here on
 * synthetic runs and saved as exit-train saves it, then damaged the way the probe damaged it: every
 * one used to crash the coordinator (SIGSEGV, ASan allocation-size-too-big, UBSan) or be accepted
 * and make silently different decisions; every one must now fail to load with a message naming the
 * file and the field. Then the strict libsvm reader on its own (on exactly-sized buffers, so an
 * over-read is an ASan report), the dense scorer on models built by hand, and the check of a
 * policy against the model and task of a run. */
#include <criterion/criterion.h>

#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <svm.h>
#include <unistd.h>

#include "exit_policy.h"
#include "svm_dense.h"
#include "svm_model_file.h"

#define N_EXITS 4
#define TOTAL_LAYERS 10
#define FINAL_TOKEN 100
static const int EXIT_LAYERS[N_EXITS] = {2, 4, 6, 8};
#define N_LABELS 2
static const int LABEL_TOKENS[N_LABELS] = {FINAL_TOKEN, 7};
/* Classifier inputs: 7 features, 4 exit-point one-hots (8..11), 2 label one-hots (12..13). */
#define DIM (EXIT_FEATURE_COUNT + N_EXITS + N_LABELS)

/* ---- a trained classifier, saved ---- */

static uint64_t next_random(uint64_t *state) {
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static double uniform(uint64_t *state) {
    return (double)(next_random(state) >> 11) * 0x1.0p-53;
}

/* Full-depth runs where a row that has settled on the final answer is usually confident. */
static exit_observation *make_runs(int n, uint64_t seed, exit_dataset *data) {
    exit_observation *obs = calloc((size_t)n * N_EXITS, sizeof *obs);
    cr_assert_not_null(obs);
    for (int e = 0; e < n; e++) {
        exit_observation *row = obs + (size_t)e * N_EXITS;
        int settles = (int)(next_random(&seed) % (N_EXITS + 1));
        for (int i = 0; i < N_EXITS; i++) {
            bool settled = i >= settles;
            row[i].top_token = settled ? FINAL_TOKEN : LABEL_TOKENS[1];
            row[i].agrees_final = settled;
            bool confident = settled != (uniform(&seed) < 0.1);
            float top = confident ? (float)(0.55 + 0.45 * uniform(&seed)) : (float)(0.1 + 0.5 * uniform(&seed));
            row[i].features[EXIT_FEATURE_TOP_PROB] = top;
            row[i].features[EXIT_FEATURE_GAP] = top * (float)(0.3 + 0.5 * uniform(&seed));
            row[i].features[EXIT_FEATURE_ENTROPY] = (1 - top) * 2.4f;
            row[i].features[EXIT_FEATURE_AGREES_PREVIOUS] = i > 0 && row[i].top_token == row[i - 1].top_token;
            row[i].features[EXIT_FEATURE_DEPTH] = (float)EXIT_LAYERS[i] / (float)TOTAL_LAYERS;
            row[i].features[EXIT_FEATURE_PREVIOUS_TOP_PROB] = i > 0 ? row[i - 1].features[EXIT_FEATURE_TOP_PROB] : 0;
            row[i].features[EXIT_FEATURE_PREVIOUS_GAP] = i > 0 ? row[i - 1].features[EXIT_FEATURE_GAP] : 0;
        }
        bool stays = true;
        for (int i = N_EXITS - 1; i >= 0; i--) {
            stays = stays && row[i].agrees_final;
            row[i].stays = stays;
        }
    }
    *data = (exit_dataset){obs, n, N_EXITS, EXIT_LAYERS, TOTAL_LAYERS, LABEL_TOKENS, N_LABELS};
    return obs;
}

typedef struct {
    char path[64], sidecar[80];
    char *model_text, *sidecar_text; /* as exit_policy_save wrote them */
} saved_policy;

static char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "%s", path);
    static char buffer[1 << 20];
    size_t n = fread(buffer, 1, sizeof buffer - 1, f);
    fclose(f);
    buffer[n] = '\0';
    return strdup(buffer);
}

static void spit(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f, "%s", path);
    fputs(text, f);
    fclose(f);
}

static void save_trained_svm(saved_policy *s) {
    exit_dataset train, heldout;
    exit_observation *a = make_runs(150, 1, &train), *b = make_runs(150, 2, &heldout);
    exit_policy policy;
    ramp_error err = {{0}};
    cr_assert_eq(exit_policy_train_svm(&policy, &train, &heldout, 0.9, &err), 0, "%s", err.message);
    snprintf(policy.task, sizeof policy.task, "sst2");
    snprintf(policy.model_name, sizeof policy.model_name, "synthetic");
    snprintf(s->path, sizeof s->path, "/tmp/ramp-test-policy-XXXXXX");
    int fd = mkstemp(s->path);
    cr_assert_geq(fd, 0);
    close(fd);
    snprintf(s->sidecar, sizeof s->sidecar, "%s.json", s->path);
    cr_assert_eq(exit_policy_save(&policy, s->path, &err), 0, "%s", err.message);
    exit_policy_free(&policy);
    free(a);
    free(b);
    s->model_text = slurp(s->path);
    s->sidecar_text = slurp(s->sidecar);
}

static void restore(const saved_policy *s) {
    spit(s->path, s->model_text);
    spit(s->sidecar, s->sidecar_text);
}

static void remove_saved(saved_policy *s) {
    unlink(s->path);
    unlink(s->sidecar);
    free(s->model_text);
    free(s->sidecar_text);
}

/* Loading fails, the policy is left empty, and the message names `file` and contains `field`. */
static void assert_refused(const char *spec, const char *file, const char *field) {
    exit_policy policy;
    ramp_error err = {{0}};
    cr_assert_eq(exit_policy_load(&policy, spec, &err), -1, "%s should be refused (expected '%s')", spec, field);
    cr_assert_not_null(strstr(err.message, file), "the message names %s: %s", file, err.message);
    cr_assert_not_null(strstr(err.message, field), "the message names '%s': %s", field, err.message);
    cr_assert_eq(policy.kind, EXIT_POLICY_NONE);
    cr_assert_null(policy.svm);
    exit_policy_free(&policy);
}

static void assert_loads(const char *spec) {
    exit_policy policy;
    ramp_error err = {{0}};
    cr_assert_eq(exit_policy_load(&policy, spec, &err), 0, "%s: %s", spec, err.message);
    exit_policy_free(&policy);
}

/* text with the line starting with `prefix` replaced by `line` (NULL: dropped). */
static char *edit_line(const char *text, const char *prefix, const char *line) {
    const char *at = text;
    size_t n = strlen(prefix);
    while (strncmp(at, prefix, n) != 0) {
        at = strchr(at, '\n');
        cr_assert_not_null(at, "no line starting with '%s'", prefix);
        at++;
    }
    const char *after = strchr(at, '\n');
    after = after ? after + 1 : at + strlen(at);
    size_t size = strlen(text) + (line ? strlen(line) : 0) + 2;
    char *out = malloc(size);
    snprintf(out, size, "%.*s%s%s%s", (int)(at - text), text, line ? line : "", line ? "\n" : "", after);
    return out;
}

/* Writes the libsvm file with one line edited, checks it is refused naming `field`. */
static void refuse_model_edit(const saved_policy *s, const char *prefix, const char *line, const char *field) {
    char *edited = edit_line(s->model_text, prefix, line);
    spit(s->path, edited);
    assert_refused(s->path, s->path, field);
    free(edited);
    restore(s);
}

/* The first support vector line, replaced. */
static void refuse_vector(const saved_policy *s, const char *vector, const char *field) {
    const char *first = strstr(s->model_text, "\nSV\n");
    cr_assert_not_null(first);
    first += 4;
    const char *after = strchr(first, '\n') + 1;
    size_t size = strlen(s->model_text) + strlen(vector) + 2;
    char *edited = malloc(size);
    snprintf(edited, size, "%.*s%s\n%s", (int)(first - s->model_text), s->model_text, vector, after);
    spit(s->path, edited);
    assert_refused(s->path, s->path, field);
    free(edited);
    restore(s);
}

static void refuse_sidecar_edit(const saved_policy *s, void (*edit)(json_t *), const char *field) {
    json_t *root = json_loads(s->sidecar_text, 0, NULL);
    cr_assert_not_null(root);
    edit(root);
    cr_assert_eq(json_dump_file(root, s->sidecar, 0), 0);
    json_decref(root);
    assert_refused(s->path, s->sidecar, field);
    restore(s);
}

/* ---- the libsvm files ---- */

Test(policy_files, saved_classifier_loads) {
    saved_policy s;
    save_trained_svm(&s);
    assert_loads(s.path);
    remove_saved(&s);
}

Test(policy_files, libsvm_header_damage_is_refused) {
    saved_policy s;
    save_trained_svm(&s);
    refuse_model_edit(&s, "rho ", NULL, "'rho'");                           /* was SIGSEGV in svm_dense_build */
    refuse_model_edit(&s, "total_sv ", "total_sv 2147483647", "total_sv"); /* was SIGSEGV in libsvm */
    refuse_model_edit(&s, "total_sv ", "total_sv -1", "total_sv");         /* was allocation-size-too-big */
    refuse_model_edit(&s, "total_sv ", "total_sv 0", "total_sv");
    refuse_model_edit(&s, "nr_class ", "nr_class 2147483647", "nr_class"); /* was allocation-size-too-big */
    refuse_model_edit(&s, "nr_class ", "nr_class 1000000000", "nr_class");
    refuse_model_edit(&s, "nr_class ", "nr_class 3", "nr_class");
    refuse_model_edit(&s, "label ", NULL, "'label'"); /* was uninitialised labels */
    refuse_model_edit(&s, "label ", "label 1 1", "label");
    refuse_model_edit(&s, "label ", "label 1 -1 2", "label");
    refuse_model_edit(&s, "gamma ", "gamma nan", "gamma"); /* was an undefined shift, then never firing */
    refuse_model_edit(&s, "gamma ", "gamma inf", "gamma");
    refuse_model_edit(&s, "gamma ", "gamma -0.5", "gamma");
    refuse_model_edit(&s, "gamma ", "gamma 0", "gamma");
    refuse_model_edit(&s, "gamma ", "gamma 1e300", "gamma");
    refuse_model_edit(&s, "rho ", "rho nan", "rho");
    refuse_model_edit(&s, "rho ", "rho 1e308", "rho");
    refuse_model_edit(&s, "nr_sv ", "nr_sv 1 1", "nr_sv");
    refuse_model_edit(&s, "nr_sv ", "nr_sv 0 2", "nr_sv");
    refuse_model_edit(&s, "nr_sv ", NULL, "nr_sv");
    refuse_model_edit(&s, "svm_type ", "svm_type nu_svc", "svm_type");
    refuse_model_edit(&s, "kernel_type ", "kernel_type linear", "kernel_type");
    refuse_model_edit(&s, "svm_type ", "probA 0.5", "probA");
    refuse_model_edit(&s, "kernel_type ", "svm_type c_svc", "twice");
    refuse_model_edit(&s, "SV", "SV extra", "SV");
    refuse_model_edit(&s, "SV", NULL, "SV");
    remove_saved(&s);
}

Test(policy_files, libsvm_vector_damage_is_refused) {
    saved_policy s;
    save_trained_svm(&s);
    /* A valid first vector (exit point 0: depth input 0) with one thing wrong each time. */
    const char *ok = "0.5 1:0.5 2:0.5 3:0.5 4:0 5:0 6:0 7:0 8:1 12:1";
    char *edited = malloc(strlen(s.model_text) + 100);
    const char *first = strstr(s.model_text, "\nSV\n") + 4;
    sprintf(edited, "%.*s%s\n%s", (int)(first - s.model_text), s.model_text, ok, strchr(first, '\n') + 1);
    spit(s.path, edited);
    assert_loads(s.path);
    free(edited);
    restore(&s);
    refuse_vector(&s, "-0.5 1:0.5 5:0 8:1", "coefficient");  /* the first class's coefficients are positive */
    refuse_vector(&s, "nan 1:0.5 5:0 8:1", "coefficient");
    refuse_vector(&s, "1e9 1:0.5 5:0 8:1", "coefficient");
    refuse_vector(&s, "0.5 1:0.5 5:0 14:1 8:1", "index");     /* past the 13 inputs */
    refuse_vector(&s, "0.5 2:0.5 1:0.5 5:0 8:1", "index");    /* not increasing */
    refuse_vector(&s, "0.5 0:0.5 5:0 8:1", "index");
    refuse_vector(&s, "0.5 1:nan 5:0 8:1", "input 1");
    refuse_vector(&s, "0.5 1:0.5 5:0 8:1 junk", "INDEX:VALUE");
    refuse_vector(&s, "0.5 1:0.5 5:0 8:1:2", "input 8");
    refuse_vector(&s, "", "blank");
    refuse_vector(&s, "0.5 1:7 5:0 8:1", "top_prob");         /* scaled inputs lie in 0..1 */
    refuse_vector(&s, "0.5 1:0.5 5:0", "exit-point one-hot"); /* none */
    refuse_vector(&s, "0.5 1:0.5 5:0 8:1 9:1", "one-hot");    /* two */
    refuse_vector(&s, "0.5 1:0.5 5:0 8:0.5", "one-hot");
    refuse_vector(&s, "0.5 1:0.5 5:0 8:1 12:1 13:1", "label one-hot");
    refuse_vector(&s, "0.5 1:0.5 5:0.5 8:1", "depth");        /* exit point 0 is at depth 0 */
    remove_saved(&s);
}

Test(policy_files, cut_or_extended_files_are_refused) {
    saved_policy s;
    save_trained_svm(&s);
    size_t size = strlen(s.model_text);
    /* Every strict prefix (a file cut short anywhere) fails; the probe's cut at 17,824 bytes of a
     * 45 KB classifier was accepted and "pruned" 75%. */
    for (size_t cut = 0; cut < size; cut += cut < 200 ? 7 : 97) {
        char *prefix = strndup(s.model_text, cut);
        spit(s.path, prefix);
        exit_policy policy;
        ramp_error err = {{0}};
        cr_assert_eq(exit_policy_load(&policy, s.path, &err), -1, "cut at %zu of %zu bytes was accepted", cut, size);
        cr_assert_not_null(strstr(err.message, s.path), "%s", err.message);
        free(prefix);
    }
    char *prefix = strndup(s.model_text, size - 1); /* the last newline only */
    spit(s.path, prefix);
    assert_refused(s.path, s.path, "cut short");
    free(prefix);
    size_t longer_size = size + 64;
    char *longer = malloc(longer_size);
    snprintf(longer, longer_size, "%s0.5 1:0.5 5:0 8:1\n", s.model_text);
    spit(s.path, longer);
    assert_refused(s.path, s.path, "found more");
    snprintf(longer, longer_size, "%s\n  \n", s.model_text); /* trailing blank lines are harmless */
    spit(s.path, longer);
    assert_loads(s.path);
    free(longer);
    restore(&s);
    remove_saved(&s);
}

/* ---- the sidecars ---- */

static void total_layers_24(json_t *root) {
    json_object_set_new(root, "total_layers", json_integer(24));
}
static void unknown_task(json_t *root) {
    json_object_set_new(root, "task", json_string("nonsense"));
}
static void flat_top_prob(json_t *root) {
    json_array_set(json_object_get(root, "scale_max"), 0, json_array_get(json_object_get(root, "scale_min"), 0));
}
static void flat_gap(json_t *root) {
    json_array_set(json_object_get(root, "scale_max"), 1, json_array_get(json_object_get(root, "scale_min"), 1));
}
static void shifted_exit_layers(json_t *root) {
    json_t *layers = json_object_get(root, "exit_layers");
    for (size_t i = 0; i < json_array_size(layers); i++)
        json_array_set_new(layers, i, json_integer(json_integer_value(json_array_get(layers, i)) + 1));
}
static void moved_middle_exit(json_t *root) {
    json_array_set_new(json_object_get(root, "exit_layers"), 1, json_integer(5));
}
static void exit_at_last_layer(json_t *root) {
    json_array_set_new(json_object_get(root, "exit_layers"), 3, json_integer(TOTAL_LAYERS));
}
static void three_labels(json_t *root) {
    json_array_append_new(json_object_get(root, "label_tokens"), json_integer(9));
}
static void same_labels(json_t *root) {
    json_array_set_new(json_object_get(root, "label_tokens"), 1, json_integer(FINAL_TOKEN));
}
static void top_prob_above_one(json_t *root) {
    json_array_set_new(json_object_get(root, "scale_max"), 0, json_real(1.5));
}
static void negative_entropy(json_t *root) {
    json_array_set_new(json_object_get(root, "scale_min"), 2, json_real(-3));
}
static void min_above_max(json_t *root) {
    json_array_set_new(json_object_get(root, "scale_min"), 1, json_real(0.99));
    json_array_set_new(json_object_get(root, "scale_max"), 1, json_real(0.5));
}
static void huge_total_layers(json_t *root) {
    json_object_set_new(root, "total_layers", json_integer(1000000));
}

Test(policy_files, sidecar_damage_is_refused) {
    saved_policy s;
    save_trained_svm(&s);
    refuse_sidecar_edit(&s, total_layers_24, "total_layers");
    refuse_sidecar_edit(&s, unknown_task, "task");
    refuse_sidecar_edit(&s, flat_top_prob, "top_prob");
    refuse_sidecar_edit(&s, shifted_exit_layers, "exit_layers");
    refuse_sidecar_edit(&s, exit_at_last_layer, "exit_layers");
    refuse_sidecar_edit(&s, three_labels, "label_tokens");
    refuse_sidecar_edit(&s, same_labels, "label_tokens");
    refuse_sidecar_edit(&s, top_prob_above_one, "top_prob");
    refuse_sidecar_edit(&s, negative_entropy, "entropy");
    refuse_sidecar_edit(&s, min_above_max, "gap");
    refuse_sidecar_edit(&s, huge_total_layers, "total_layers");
    remove_saved(&s);
}

/* Edits that keep the sidecar consistent in itself are caught by the support vectors. */
static void refuse_sidecar_edit_in_model(const saved_policy *s, void (*edit)(json_t *), const char *field) {
    json_t *root = json_loads(s->sidecar_text, 0, NULL);
    edit(root);
    cr_assert_eq(json_dump_file(root, s->sidecar, 0), 0);
    json_decref(root);
    assert_refused(s->path, s->path, field);
    restore(s);
}

Test(policy_files, sidecar_that_disagrees_with_its_vectors_is_refused) {
    saved_policy s;
    save_trained_svm(&s);
    refuse_sidecar_edit_in_model(&s, flat_gap, "gap");        /* vectors hold gap values the scale says never varied */
    refuse_sidecar_edit_in_model(&s, moved_middle_exit, "depth"); /* vectors at exit point 1 sit at the old depth */
    remove_saved(&s);
}

Test(policy_files, files_that_are_not_files) {
    assert_refused("svm:/tmp", "/tmp.json", "JSON policy file");
    assert_refused("conf:/tmp", "/tmp", "is a directory");
    assert_refused("conf:/dev/zero", "/dev/zero", "NUL byte");
    saved_policy s;
    save_trained_svm(&s);
    spit(s.path, "");
    assert_refused(s.path, s.path, "SV");
    unlink(s.path);
    assert_refused(s.path, s.path, "cannot open");
    remove_saved(&s);
}

/* ---- confidence thresholds ---- */

static void write_confidence(const char *path, const char *thresholds, const char *task, int total_layers) {
    char text[1024];
    snprintf(text, sizeof text,
             "{\"kind\": \"confidence\", \"format_version\": 2, \"exit_layers\": [2, 4, 6, 8], \"total_layers\": %d, "
             "\"target_agreement\": 0.9, \"model\": \"m.gguf\", \"task\": \"%s\", \"thresholds\": [%s]}",
             total_layers, task, thresholds);
    spit(path, text);
}

Test(policy_files, confidence_thresholds_are_checked) {
    char path[] = "/tmp/ramp-test-conf-XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    close(fd);
    char spec[64];
    snprintf(spec, sizeof spec, "conf:%s", path);
    write_confidence(path, "0.5, 0.9, 1, 1.01", "generation", 10);
    assert_loads(spec);
    write_confidence(path, "0.5, 0.9, 1, 0", "trec", 10);
    assert_loads(spec);
    write_confidence(path, "-0.5, 0.9, 1, 1", "generation", 10);
    assert_refused(spec, path, "thresholds");
    write_confidence(path, "0.5, 1.5, 1, 1", "generation", 10);
    assert_refused(spec, path, "thresholds");
    write_confidence(path, "0.5, 0.9, 1, 1e308", "generation", 10);
    assert_refused(spec, path, "thresholds");
    write_confidence(path, "0.5, 0.9, 1, 1", "nonsense", 10);
    assert_refused(spec, path, "task");
    write_confidence(path, "0.5, 0.9, 1, 1", "generation", 8);
    assert_refused(spec, path, "exit_layers");
    write_confidence(path, "0.5, 0.9, 1, 1", "generation", 0);
    assert_refused(spec, path, "total_layers");
    write_confidence(path, "0.5, 0.9, 1, 1", "generation", 5000);
    assert_refused(spec, path, "total_layers");
    unlink(path);
}

/* ---- a policy against the run that would use it ---- */

Test(policy_files, policy_must_fit_the_model_and_task_of_the_run) {
    saved_policy s;
    save_trained_svm(&s);
    exit_policy policy;
    ramp_error err = {{0}};
    cr_assert_eq(exit_policy_load(&policy, s.path, &err), 0, "%s", err.message);
    exit_policy_use use = {.n_layers = TOTAL_LAYERS, .vocab_size = 512, .task = "sst2", .label_tokens = LABEL_TOKENS,
                           .n_labels = N_LABELS};
    cr_assert_eq(exit_policy_check_use(&policy, "clf", &use, &err), 0, "%s", err.message);
    use.n_layers = 16; /* a classifier of a 10-layer model on a 16-layer one */
    cr_assert_eq(exit_policy_check_use(&policy, "clf", &use, &err), -1);
    cr_assert_not_null(strstr(err.message, "10 layers"), "%s", err.message);
    use.n_layers = TOTAL_LAYERS;
    use.vocab_size = 50;
    cr_assert_eq(exit_policy_check_use(&policy, "clf", &use, &err), -1);
    cr_assert_not_null(strstr(err.message, "vocabulary"), "%s", err.message);
    use.vocab_size = 512;
    use.task = "rte"; /* two labels too, but another task */
    cr_assert_eq(exit_policy_check_use(&policy, "clf", &use, &err), -1);
    cr_assert_not_null(strstr(err.message, "'sst2'"), "%s", err.message);
    const int other_tokens[N_LABELS] = {5, 6};
    use.task = "sst2";
    use.label_tokens = other_tokens; /* another tokenizer's label tokens */
    cr_assert_eq(exit_policy_check_use(&policy, "clf", &use, &err), -1);
    use.task = NULL; /* generation: no task to compare */
    cr_assert_eq(exit_policy_check_use(&policy, "clf", &use, &err), 0, "%s", err.message);
    exit_policy_free(&policy);
    remove_saved(&s);
}

/* ---- the libsvm reader on its own ---- */

static const char GOOD[] = "svm_type c_svc\nkernel_type rbf\ngamma 0.5\nnr_class 2\ntotal_sv 2\nrho 0.1\n"
                           "label -1 1\nnr_sv 1 1\nSV\n0.25 1:0.5 3:1 \n-0.25 2:1\n";
static const svm_file_limits LIMITS = {.max_index = 3, .max_vectors = 10, .max_coefficient = 1};

/* Parses exactly n bytes from a buffer of exactly n bytes: reading one more is an ASan report. */
static int parse_exact(const char *text, size_t n, struct svm_model **model, ramp_error *err) {
    char *copy = malloc(n ? n : 1);
    memcpy(copy, text, n);
    int status = svm_model_parse(copy, n, "m.svm", &LIMITS, model, err);
    free(copy);
    return status;
}

Test(svm_model_file, good_file_builds_the_model_libsvm_would) {
    struct svm_model *model;
    ramp_error err = {{0}};
    cr_assert_eq(parse_exact(GOOD, sizeof GOOD - 1, &model, &err), 0, "%s", err.message);
    cr_assert_eq(model->l, 2);
    cr_assert_eq(model->param.gamma, 0.5);
    cr_assert_eq(model->rho[0], 0.1);
    cr_assert_eq(model->label[0], -1);
    cr_assert_eq(model->nSV[1], 1);
    cr_assert_eq(model->sv_coef[0][1], -0.25);
    cr_assert_eq(model->SV[0][1].index, 3);
    cr_assert_eq(model->SV[0][2].index, -1);
    cr_assert_eq(model->SV[1][0].value, 1.0);
    struct svm_node x[] = {{1, 0.5}, {3, 1}, {-1, 0}};
    double decision;
    svm_predict_values(model, x, &decision);
    cr_assert_float_eq(decision, 0.25 - 0.25 * exp(-0.5 * 2.25) - 0.1, 1e-12);
    svm_free_and_destroy_model(&model);
    cr_assert_null(model);
}

Test(svm_model_file, every_prefix_and_every_single_byte_change_is_safe) {
    size_t n = sizeof GOOD - 1;
    for (size_t cut = 0; cut < n; cut++) {
        struct svm_model *model = (struct svm_model *)1;
        ramp_error err = {{0}};
        cr_assert_eq(parse_exact(GOOD, cut, &model, &err), -1, "prefix of %zu bytes accepted", cut);
        cr_assert_null(model);
        cr_assert_not_null(strstr(err.message, "m.svm"), "%s", err.message);
    }
    /* Every byte replaced by a few troublesome ones: never a crash or a sanitizer report. */
    static const char replacements[] = {'\0', '\n', ' ', '-', '9', ':', 'e', 'x'};
    char text[sizeof GOOD];
    for (size_t i = 0; i < n; i++)
        for (size_t r = 0; r < sizeof replacements; r++) {
            memcpy(text, GOOD, sizeof GOOD);
            text[i] = replacements[r];
            struct svm_model *model = NULL;
            ramp_error err = {{0}};
            if (parse_exact(text, n, &model, &err) == 0) svm_free_and_destroy_model(&model);
        }
}

/* ---- the dense scorer on hand-built models ---- */

Test(svm_dense, refuses_models_it_cannot_score) {
    struct svm_node sv0[] = {{1, 0.5}, {-1, 0}}, sv1[] = {{2, 1}, {-1, 0}};
    struct svm_node *svs[] = {sv0, sv1};
    double coefficients[] = {1, -1}, *coef_rows[] = {coefficients}, rho = 0;
    int labels[] = {1, -1};
    struct svm_model model = {.param = {.svm_type = C_SVC, .kernel_type = RBF, .gamma = NAN},
                              .nr_class = 2, .l = 2, .SV = svs, .sv_coef = coef_rows, .rho = &rho, .label = labels};
    svm_dense dense;
    ramp_error err = {{0}};
    cr_assert_eq(svm_dense_build(&dense, &model, 3, &err), -1, "gamma NaN");
    cr_assert_not_null(strstr(err.message, "gamma"), "%s", err.message);
    model.param.gamma = 0.5;
    model.rho = NULL; /* libsvm's loader left this NULL when the rho line was missing */
    cr_assert_eq(svm_dense_build(&dense, &model, 3, &err), -1, "rho NULL");
    model.rho = &rho;
    coefficients[1] = INFINITY;
    cr_assert_eq(svm_dense_build(&dense, &model, 3, &err), -1, "coefficient inf");
    coefficients[1] = -1;
    sv1[0].value = NAN;
    cr_assert_eq(svm_dense_build(&dense, &model, 3, &err), -1, "value NaN");
    sv1[0].value = 1;
    cr_assert_eq(svm_dense_build(&dense, &model, 3, &err), 0, "%s", err.message);
    /* Inputs far outside the scaled range (a feature whose range was tiny) or not finite give a
     * finite score: the exp's argument is clamped, NaN included, before its exponent bits are made. */
    double huge[3] = {1e30, -1e30, 0}, nan_input[3] = {NAN, 0, 0};
    cr_assert(isfinite(svm_dense_decision(&dense, huge)));
    cr_assert(isfinite(svm_dense_decision(&dense, nan_input)));
    svm_dense_free(&dense);
}
