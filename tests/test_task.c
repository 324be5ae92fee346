/* test_task.c: the task data sets against the files in $RAMP_SHARED/data (default ../shared), the
 * label tokens against MODEL.md's table, skip/limit windows, every file format's error paths on
 * small hand-written files, and task_predict on crafted logits.
 *
 * The expected counts were taken by reading the data files independently (awk / Python's csv and
 * json modules), not from this loader.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "task.h"
#include "tokenizer.h"

enum { TOK512_VOCAB = 512 };

/* ---- helpers ----------------------------------------------------------------------------------- */

static void shared_path(char *out, size_t size, const char *name) {
    const char *dir = getenv("RAMP_SHARED");
    snprintf(out, size, "%s/%s", dir != NULL && dir[0] != '\0' ? dir : "../shared", name);
}

static void require_shared(const char *path) {
    if (access(path, R_OK) != 0) cr_skip_test("%s is missing (set RAMP_SHARED to the shared folder)", path);
}

static tokenizer *load_tok512(void) {
    char path[4096];
    shared_path(path, sizeof path, "models/stories260K/tok512.bin");
    require_shared(path);
    tokenizer *tok = NULL;
    ramp_error err = {0};
    cr_assert_eq(tokenizer_from_llama2c(&tok, path, TOK512_VOCAB, &err), 0, "tokenizer: %s", err.message);
    return tok;
}

/* Loads data/<file> from the shared folder; the test is skipped when the file is not there. */
static void load_shared(task_dataset *task, const char *name, const char *file, const tokenizer *tok, int skip,
                        int limit) {
    char path[4096];
    shared_path(path, sizeof path, file);
    require_shared(path);
    ramp_error err = {0};
    cr_assert_eq(task_load(task, name, path, tok, skip, limit, &err), 0, "task_load %s %s: %s", name, path,
                 err.message);
}

static void count_labels(const task_dataset *task, int *counts) {
    memset(counts, 0, TASK_MAX_LABELS * sizeof *counts);
    for (int i = 0; i < task->n_examples; i++) {
        int label = task->examples[i].label;
        cr_assert(label >= 0 && label < task->n_labels, "example %d has label %d of %d", i, label, task->n_labels);
        counts[label]++;
    }
}

static void assert_label_tokens(const task_dataset *task, int n, const char *const *words, const int *tokens) {
    cr_assert_eq(task->n_labels, n);
    for (int i = 0; i < n; i++) {
        cr_assert_str_eq(task->label_words[i], words[i]);
        cr_assert_eq(task->label_tokens[i], tokens[i], "%s: label %s has token %d, expected %d", task->name,
                     words[i], task->label_tokens[i], tokens[i]);
    }
}

static void assert_well_formed(const task_dataset *task) {
    for (int i = 0; i < task->n_examples; i++) {
        const labelled_example *e = &task->examples[i];
        cr_assert_not_null(e->prompt);
        cr_assert_eq(strlen(e->prompt), e->prompt_length, "example %d: prompt_length disagrees with strlen", i);
    }
}

/* A temporary file holding `content`; the caller unlinks `path`. */
static void write_temp(char *path, size_t size, const char *content, size_t length) {
    const char *dir = getenv("TMPDIR");
    snprintf(path, size, "%s/test_task_XXXXXX", dir != NULL && dir[0] != '\0' ? dir : "/tmp");
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0, "mkstemp %s: %s", path, strerror(errno));
    FILE *f = fdopen(fd, "wb");
    cr_assert_not_null(f);
    cr_assert_eq(fwrite(content, 1, length, f), length);
    cr_assert_eq(fclose(f), 0);
}

/* Loads `content` as a `name` data file; returns task_load's result with the message in err. */
static int load_text(task_dataset *task, const char *name, const char *content, const tokenizer *tok, int skip,
                     int limit, ramp_error *err) {
    char path[4096];
    write_temp(path, sizeof path, content, strlen(content));
    int rc = task_load(task, name, path, tok, skip, limit, err);
    unlink(path);
    return rc;
}

/* The load must fail with a message that contains every one of the given fragments. */
static void assert_load_fails(const tokenizer *tok, const char *name, const char *content, const char *fragment,
                              const char *fragment2) {
    task_dataset task;
    ramp_error err = {0};
    cr_assert_neq(load_text(&task, name, content, tok, 0, 0, &err), 0, "%s: expected a failure on %s", name, content);
    cr_assert_eq(task.n_examples, 0, "a failed load leaves no examples");
    cr_assert_null(task.examples);
    cr_assert_not_null(strstr(err.message, fragment), "message \"%s\" lacks \"%s\"", err.message, fragment);
    if (fragment2 != NULL)
        cr_assert_not_null(strstr(err.message, fragment2), "message \"%s\" lacks \"%s\"", err.message, fragment2);
}

static int compare_examples(const void *a, const void *b) {
    const labelled_example *x = a, *y = b;
    int c = strcmp(x->prompt, y->prompt);
    return c != 0 ? c : x->label - y->label;
}

/* Rewrites PTB's escaped slash "\/" as "/" in place; returns how many there were. */
static int unescape_slashes(char *s) {
    int n = 0;
    char *out = s;
    for (const char *in = s; *in != '\0'; in++) {
        if (in[0] == '\\' && in[1] == '/') {
            n++;
            continue;
        }
        *out++ = *in;
    }
    *out = '\0';
    return n;
}

static const char *const SST2_WORDS[] = {"negative", "positive"};
static const int SST2_TOKENS[] = {404, 282};
static const char *const TREC_WORDS[] = {"abbreviation", "description", "entity", "person", "location", "number"};
static const int TREC_TOKENS[] = {261, 279, 410, 282, 401, 297};
static const char *const AGNEWS_WORDS[] = {"world", "sports", "business", "technology"};
static const int AGNEWS_TOKENS[] = {263, 262, 268, 259};

/* ---- SST-2 ------------------------------------------------------------------------------------- */

Test(task_sst2, dev_counts_prompt_and_label_tokens) {
    tokenizer *tok = load_tok512();
    task_dataset task;
    load_shared(&task, "sst2", "data/sst2/stsa.binary.dev", tok, 0, 0);
    cr_assert_str_eq(task.name, "sst2");
    cr_assert_eq(task.n_examples, 872);
    int counts[TASK_MAX_LABELS];
    count_labels(&task, counts);
    cr_assert_eq(counts[0], 428);
    cr_assert_eq(counts[1], 444);
    assert_label_tokens(&task, 2, SST2_WORDS, SST2_TOKENS);
    assert_well_formed(&task);
    cr_assert_str_eq(task.examples[0].prompt, "Review: one long string of cliches .\nSentiment:");
    cr_assert_eq(task.examples[0].label, 0);
    /* The last line has -lrb- ... -rrb-. */
    cr_assert_str_eq(task.examples[871].prompt,
                     "Review: an effectively creepy , fear-inducing ( not fear-reducing ) film from japanese director "
                     "hideo nakata , who takes the superstitious curse on chain letters and actually applies it ."
                     "\nSentiment:");
    for (int i = 0; i < task.n_examples; i++)
        cr_assert_null(strstr(task.examples[i].prompt, "-lrb-"), "example %d keeps -lrb-", i);
    task_free(&task);
    cr_assert_eq(task.n_examples, 0);
    cr_assert_null(task.examples);
    tokenizer_free(tok);
}

Test(task_sst2, train_counts) {
    tokenizer *tok = load_tok512();
    task_dataset task;
    load_shared(&task, "sst2", "data/sst2/stsa.binary.train", tok, 0, 0);
    cr_assert_eq(task.n_examples, 6920);
    int counts[TASK_MAX_LABELS];
    count_labels(&task, counts);
    cr_assert_eq(counts[0], 3310);
    cr_assert_eq(counts[1], 3610);
    cr_assert_str_eq(task.examples[0].prompt,
                     "Review: a stirring , funny and finally transporting re-imagining of beauty and the beast and "
                     "1930s horror films\nSentiment:");
    cr_assert_eq(task.examples[0].label, 1);
    task_free(&task);
    tokenizer_free(tok);
}

/* GLUE's dev.tsv holds the same 872 sentences in another order, with brackets already written
 * and no PTB slash escapes: after "\/" -> "/" (8 sentences) both files give the same prompts
 * with the same labels. */
Test(task_sst2, glue_tsv_matches_stsa) {
    tokenizer *tok = load_tok512();
    task_dataset stsa, glue;
    load_shared(&stsa, "sst2", "data/sst2/stsa.binary.dev", tok, 0, 0);
    load_shared(&glue, "sst2", "data/sst2/glue_dev.tsv", tok, 0, 0);
    cr_assert_eq(glue.n_examples, 872);
    assert_well_formed(&glue);
    cr_assert_str_eq(glue.examples[0].prompt, "Review: it 's a charming and often affecting journey .\nSentiment:",
                     "the space GLUE puts before the tab is not part of the sentence");
    cr_assert_eq(glue.examples[0].label, 1);
    int escaped = 0;
    for (int i = 0; i < stsa.n_examples; i++) escaped += unescape_slashes(stsa.examples[i].prompt) > 0;
    cr_assert_eq(escaped, 8, "sentences with \\/ in stsa.binary.dev");
    qsort(stsa.examples, (size_t)stsa.n_examples, sizeof *stsa.examples, compare_examples);
    qsort(glue.examples, (size_t)glue.n_examples, sizeof *glue.examples, compare_examples);
    int bracketed = 0;
    for (int i = 0; i < glue.n_examples; i++) {
        cr_assert_str_eq(stsa.examples[i].prompt, glue.examples[i].prompt);
        cr_assert_eq(stsa.examples[i].label, glue.examples[i].label, "label of %s", glue.examples[i].prompt);
        bracketed += strchr(glue.examples[i].prompt, '(') != NULL;
    }
    cr_assert_eq(bracketed, 42, "dev sentences with -lrb-");
    task_free(&stsa);
    task_free(&glue);
    tokenizer_free(tok);
}

Test(task_sst2, rewrites_brackets_only) {
    tokenizer *tok = load_tok512();
    task_dataset task;
    ramp_error err = {0};
    const char *data = "1 a -lrb- b -rrb- c\\/d -lrb--rrb- n't\n\n0 -rrb-\r\n";
    cr_assert_eq(load_text(&task, "sst2", data, tok, 0, 0, &err), 0, "%s", err.message);
    cr_assert_eq(task.n_examples, 2, "the blank line is skipped");
    cr_assert_str_eq(task.examples[0].prompt, "Review: a ( b ) c\\/d () n't\nSentiment:");
    cr_assert_eq(task.examples[0].label, 1);
    cr_assert_str_eq(task.examples[1].prompt, "Review: )\nSentiment:", "CRLF is not part of the sentence");
    cr_assert_eq(task.examples[1].label, 0);
    task_free(&task);
    tokenizer_free(tok);
}

/* ---- TREC -------------------------------------------------------------------------------------- */

Test(task_trec, test_and_train) {
    tokenizer *tok = load_tok512();
    task_dataset task;
    load_shared(&task, "trec", "data/trec/test.txt", tok, 0, 0);
    cr_assert_eq(task.n_examples, 500, "the last line has no newline and still counts");
    assert_label_tokens(&task, 6, TREC_WORDS, TREC_TOKENS);
    assert_well_formed(&task);
    int counts[TASK_MAX_LABELS];
    count_labels(&task, counts);
    const int test_counts[] = {9, 138, 94, 65, 81, 113};
    for (int i = 0; i < 6; i++) cr_assert_eq(counts[i], test_counts[i], "test %s", TREC_WORDS[i]);
    cr_assert_str_eq(task.examples[0].prompt, "Question: How far is it from Denver to Aspen ?\nType:");
    cr_assert_eq(task.examples[0].label, 5);
    cr_assert_str_eq(task.examples[499].prompt, "Question: What is e-coli ?\nType:");
    task_free(&task);

    load_shared(&task, "trec", "data/trec/train.txt", tok, 0, 0);
    cr_assert_eq(task.n_examples, 5452);
    count_labels(&task, counts);
    const int train_counts[] = {86, 1162, 1250, 1223, 835, 896};
    for (int i = 0; i < 6; i++) cr_assert_eq(counts[i], train_counts[i], "train %s", TREC_WORDS[i]);
    cr_assert_str_eq(task.examples[0].prompt, "Question: How did serfdom develop in and then leave Russia ?\nType:");
    cr_assert_eq(task.examples[0].label, 1);
    task_free(&task);
    tokenizer_free(tok);
}

/* ---- AG News ----------------------------------------------------------------------------------- */

Test(task_agnews, rows_and_quoting) {
    tokenizer *tok = load_tok512();
    task_dataset task;
    load_shared(&task, "agnews", "data/agnews/train6000.csv", tok, 0, 0);
    cr_assert_eq(task.n_examples, 6000, "the header row is not an example");
    assert_label_tokens(&task, 4, AGNEWS_WORDS, AGNEWS_TOKENS);
    assert_well_formed(&task);
    int counts[TASK_MAX_LABELS];
    count_labels(&task, counts);
    const int class_counts[] = {1519, 1493, 1470, 1518};
    for (int i = 0; i < 4; i++) cr_assert_eq(counts[i], class_counts[i], "%s", AGNEWS_WORDS[i]);
    cr_assert_str_eq(task.examples[0].prompt,
                     "Article: Fears for T N pension after talks. Unions representing workers at Turner   Newall say "
                     "they are 'disappointed' after talks with stricken parent firm Federal Mogul.\nTopic:");
    cr_assert_eq(task.examples[0].label, 2);
    /* Row 2's description is quoted for its commas; its backslashes are the data's own. */
    cr_assert_eq(strncmp(task.examples[1].prompt,
                         "Article: The Race is On: Second Private Team Sets Launch Date for Human Spaceflight "
                         "(SPACE.com). SPACE.com - TORONTO, Canada -- A second\\team of rocketeers",
                         150),
                 0, "%s", task.examples[1].prompt);
    cr_assert_eq(task.examples[1].label, 3);
    /* Row 6 has "" escapes: ""Music Manifesto"" is "Music Manifesto". */
    cr_assert_not_null(strstr(task.examples[5].prompt, "launched a \"Music Manifesto\" campaign"), "%s",
                       task.examples[5].prompt);
    for (int i = 0; i < task.n_examples; i++)
        cr_assert_null(strchr(task.examples[i].prompt, '\r'), "example %d keeps a CR", i);
    task_free(&task);
    tokenizer_free(tok);
}

Test(task_agnews, csv_without_header) {
    tokenizer *tok = load_tok512();
    task_dataset task;
    ramp_error err = {0};
    const char *data = "3,\"Title, with comma\",\"He said \"\"hi\"\"\r\nand left\"\r\n"
                       "\r\n"
                       "4,T,\"\"\r\n"
                       "1,a\"b,c";
    cr_assert_eq(load_text(&task, "agnews", data, tok, 0, 0, &err), 0, "%s", err.message);
    cr_assert_eq(task.n_examples, 3);
    cr_assert_str_eq(task.examples[0].prompt, "Article: Title, with comma. He said \"hi\"\r\nand left\nTopic:");
    cr_assert_eq(task.examples[0].label, 2);
    cr_assert_str_eq(task.examples[1].prompt, "Article: T. \nTopic:");
    cr_assert_eq(task.examples[1].label, 3);
    cr_assert_str_eq(task.examples[2].prompt, "Article: a\"b. c\nTopic:", "a stray quote is kept");
    cr_assert_eq(task.examples[2].label, 0);
    task_free(&task);
    /* Line numbers count the newline inside the quoted field. */
    assert_load_fails(tok, "agnews", "3,\"x\ny\",z\n4,a,b\n7,c,d\n", "line 4:", "class index 1-4");
    tokenizer_free(tok);
}

/* ---- RTE --------------------------------------------------------------------------------------- */

Test(task_rte, validation) {
    tokenizer *tok = load_tok512();
    task_dataset task;
    load_shared(&task, "rte", "data/rte/superglue_val.jsonl", tok, 0, 0);
    cr_assert_eq(task.n_examples, 277);
    assert_well_formed(&task);
    int counts[TASK_MAX_LABELS];
    count_labels(&task, counts);
    cr_assert_eq(counts[0], 146, "entailment");
    cr_assert_eq(counts[1], 131, "not_entailment");
    cr_assert_eq(task.n_labels, 2);
    cr_assert_str_eq(task.label_words[0], "yes");
    cr_assert_str_eq(task.label_words[1], "no");
    cr_assert_str_eq(tokenizer_piece(tok, task.label_tokens[0]), "\xe2\x96\x81y");
    cr_assert_str_eq(tokenizer_piece(tok, task.label_tokens[1]), "\xe2\x96\x81n");
    cr_assert_str_eq(task.examples[0].prompt,
                     "Premise: Dana Reeve, the widow of the actor Christopher Reeve, has died of lung cancer at age 44, "
                     "according to the Christopher Reeve Foundation.\nHypothesis: Christopher Reeve had an accident."
                     "\nEntailment:");
    cr_assert_eq(task.examples[0].label, 1);
    task_free(&task);
    tokenizer_free(tok);
}

/* ---- skip and limit ---------------------------------------------------------------------------- */

Test(task_window, skip_and_limit) {
    tokenizer *tok = load_tok512();
    task_dataset all, part;
    load_shared(&all, "trec", "data/trec/test.txt", tok, 0, 0);
    load_shared(&part, "trec", "data/trec/test.txt", tok, 10, 5);
    cr_assert_eq(part.n_examples, 5);
    for (int i = 0; i < 5; i++) {
        cr_assert_str_eq(part.examples[i].prompt, all.examples[10 + i].prompt);
        cr_assert_eq(part.examples[i].label, all.examples[10 + i].label);
    }
    task_free(&part);

    load_shared(&part, "trec", "data/trec/test.txt", tok, 0, 3);
    cr_assert_eq(part.n_examples, 3);
    cr_assert_str_eq(part.examples[2].prompt, all.examples[2].prompt);
    task_free(&part);

    load_shared(&part, "trec", "data/trec/test.txt", tok, 497, 100);
    cr_assert_eq(part.n_examples, 3, "limit beyond the end keeps what is left");
    cr_assert_str_eq(part.examples[2].prompt, all.examples[499].prompt);
    task_free(&part);

    load_shared(&part, "trec", "data/trec/test.txt", tok, -4, -1);
    cr_assert_eq(part.n_examples, 500, "skip and limit <= 0 mean none");
    task_free(&part);

    char path[4096];
    shared_path(path, sizeof path, "data/trec/test.txt");
    ramp_error err = {0};
    cr_assert_neq(task_load(&part, "trec", path, tok, 500, 0, &err), 0, "skipping everything leaves nothing");
    cr_assert_not_null(strstr(err.message, "skip 500"), "%s", err.message);
    cr_assert_not_null(strstr(err.message, "500 examples"), "%s", err.message);
    task_free(&all);
    tokenizer_free(tok);
}

/* A record beyond the window is still checked, so a damaged file fails whatever the window. */
Test(task_window, checks_records_outside_the_window) {
    tokenizer *tok = load_tok512();
    task_dataset task;
    ramp_error err = {0};
    cr_assert_neq(load_text(&task, "sst2", "1 fine\n0 fine too\nx broken\n", tok, 0, 1, &err), 0);
    cr_assert_not_null(strstr(err.message, "line 3:"), "%s", err.message);
    tokenizer_free(tok);
}

/* ---- errors ------------------------------------------------------------------------------------ */

Test(task_errors, malformed_lines_name_file_and_line) {
    tokenizer *tok = load_tok512();
    assert_load_fails(tok, "sst2", "1 good\n0 bad\n2 huh\n", "line 3:", "<0|1> <sentence>");
    assert_load_fails(tok, "sst2", "1\n", "line 1:", "found \"1\"");
    assert_load_fails(tok, "sst2", "text\tlabel\nfine\t1\nbad\tx\n", "line 3:", "\\t<0|1>");
    assert_load_fails(tok, "sst2", "text\tlabel\n \t1\n", "line 2:", "sentence before the tab");
    assert_load_fails(tok, "trec", "NUM:dist How far ?\n\nFOO:bar Why ?\n", "line 3:", "\"FOO\"");
    assert_load_fails(tok, "trec", "NUM:dist\n", "line 1:", "COARSE:fine question");
    assert_load_fails(tok, "trec", "NUM How far ?\n", "line 1:", "COARSE:fine question");
    assert_load_fails(tok, "agnews", "Class Index,Title,Description\n1,a,\"open\n2,b,c\n", "line 2:",
                      "closing quote");
    assert_load_fails(tok, "agnews", "1,a,b\n1,a\n", "line 2:", "found 2");
    assert_load_fails(tok, "agnews", "1,a,b,c\n", "line 1:", "found 4");
    assert_load_fails(tok, "agnews", "0,a,b\n", "line 1:", "class index 1-4");
    assert_load_fails(tok, "agnews", "1,\"a\"x,b\n", "line 1:", "after a closing quote");
    const char *good = "{\"premise\": \"p\", \"hypothesis\": \"h\", \"label\": \"entailment\", \"idx\": 0}\n";
    char data[512];
    snprintf(data, sizeof data, "%s{\"premise\": \"p\",\n", good);
    assert_load_fails(tok, "rte", data, "line 2:", "invalid JSON");
    snprintf(data, sizeof data, "%s%s{\"premise\": \"p\", \"hypothesis\": \"h\", \"label\": \"maybe\"}\n", good, good);
    assert_load_fails(tok, "rte", data, "line 3:", "\"maybe\"");
    assert_load_fails(tok, "rte", "{\"premise\": \"p\", \"label\": \"entailment\"}\n", "line 1:", "\"hypothesis\"");
    assert_load_fails(tok, "rte", "{\"premise\": 3, \"hypothesis\": \"h\", \"label\": \"entailment\"}\n", "line 1:",
                      "\"premise\"");
    assert_load_fails(tok, "rte", "[1, 2]\n", "line 1:", "JSON object");
    tokenizer_free(tok);
}

Test(task_errors, empty_missing_and_unknown) {
    tokenizer *tok = load_tok512();
    assert_load_fails(tok, "sst2", "", "no sst2 examples", NULL);
    assert_load_fails(tok, "trec", "\n  \r\n\n", "no trec examples", NULL);
    assert_load_fails(tok, "agnews", "Class Index,Title,Description\r\n", "no agnews examples", NULL);
    assert_load_fails(tok, "rte", "\n", "no rte examples", NULL);

    task_dataset task;
    ramp_error err = {0};
    cr_assert_neq(task_load(&task, "sst2", "/nonexistent/stsa.binary.dev", tok, 0, 0, &err), 0);
    cr_assert_not_null(strstr(err.message, "/nonexistent/stsa.binary.dev"), "%s", err.message);
    cr_assert_not_null(strstr(err.message, strerror(ENOENT)), "%s", err.message);

    cr_assert_neq(task_load(&task, "imdb", "/nonexistent", tok, 0, 0, &err), 0);
    cr_assert_not_null(strstr(err.message, "\"imdb\""), "%s", err.message);
    cr_assert_not_null(strstr(err.message, "sst2, trec, agnews, rte"), "%s", err.message);

    char path[4096];
    write_temp(path, sizeof path, "1 a\n\0 b\n", 8);
    cr_assert_neq(task_load(&task, "sst2", path, tok, 0, 0, &err), 0);
    unlink(path);
    cr_assert_not_null(strstr(err.message, "NUL byte at offset 4"), "%s", err.message);
    tokenizer_free(tok);
}

/* A vocabulary of nothing but byte tokens spells every word from "\xe2" (the first byte of "▁"),
 * so all labels share their first token: the load must refuse rather than predict label 0. */
Test(task_errors, labels_sharing_a_first_token) {
    char path[4096];
    const char *dir = getenv("TMPDIR");
    snprintf(path, sizeof path, "%s/test_task_tok_XXXXXX", dir != NULL && dir[0] != '\0' ? dir : "/tmp");
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    FILE *f = fdopen(fd, "wb");
    cr_assert_not_null(f);
    int max_length = 8;
    fwrite(&max_length, sizeof max_length, 1, f);
    for (int id = 0; id < 259; id++) {
        char piece[16];
        if (id < 3)
            snprintf(piece, sizeof piece, "%s", id == 0 ? "<unk>" : id == 1 ? "<s>" : "</s>");
        else
            snprintf(piece, sizeof piece, "<0x%02X>", id - 3);
        float score = 0.0f;
        int length = (int)strlen(piece);
        fwrite(&score, sizeof score, 1, f);
        fwrite(&length, sizeof length, 1, f);
        fwrite(piece, 1, (size_t)length, f);
    }
    cr_assert_eq(fclose(f), 0);
    tokenizer *bytes = NULL;
    ramp_error err = {0};
    int rc = tokenizer_from_llama2c(&bytes, path, 259, &err);
    unlink(path);
    cr_assert_eq(rc, 0, "byte tokenizer: %s", err.message);
    task_dataset task;
    cr_assert_neq(load_text(&task, "sst2", "1 fine\n", bytes, 0, 0, &err), 0);
    cr_assert_not_null(strstr(err.message, "\"negative\" and \"positive\" both start with token 229"), "%s",
                       err.message);
    tokenizer_free(bytes);
}

/* ---- prediction -------------------------------------------------------------------------------- */

Test(task_predict, argmax_over_label_tokens) {
    tokenizer *tok = load_tok512();
    task_dataset task;
    ramp_error err = {0};
    cr_assert_eq(load_text(&task, "trec", "NUM:dist How far ?\n", tok, 0, 0, &err), 0, "%s", err.message);
    float logits[TOK512_VOCAB];
    for (int i = 0; i < TOK512_VOCAB; i++) logits[i] = -1.0f;
    logits[0] = 100.0f; /* not a label token: must not matter */
    logits[TREC_TOKENS[3]] = 2.0f;
    cr_assert_eq(task_predict(&task, logits), 3);
    logits[TREC_TOKENS[4]] = 2.5f;
    cr_assert_eq(task_predict(&task, logits), 4);
    logits[TREC_TOKENS[1]] = 2.5f;
    cr_assert_eq(task_predict(&task, logits), 1, "ties go to the lowest label");
    for (int i = 0; i < TOK512_VOCAB; i++) logits[i] = 0.0f;
    cr_assert_eq(task_predict(&task, logits), 0, "all equal: label 0");
    logits[TREC_TOKENS[5]] = -0.5f;
    logits[TREC_TOKENS[0]] = -0.25f;
    logits[TREC_TOKENS[1]] = -3.0f;
    logits[TREC_TOKENS[2]] = -1.0f;
    logits[TREC_TOKENS[3]] = -2.0f;
    logits[TREC_TOKENS[4]] = -0.1f;
    cr_assert_eq(task_predict(&task, logits), 4, "all negative");
    task_free(&task);
    tokenizer_free(tok);
}
