/* task.c: the classification data sets, read as they are in ../shared/data, turned into the
 * zero-shot prompts the 16-layer models were trained on (../shared/models/<model>/MODEL.md).
 *
 * Each task is one row of TASKS: a name, its label words and a reader for its file format. A reader
 * parses records one at a time, builds each prompt into the loader's text buffer and hands it to
 * loader_emit, which keeps it when it falls inside the skip/limit window. Every record is parsed
 * and checked even when it is skipped, so a damaged file fails the same way whatever the window.
 *
 * Files are read whole into one NUL-terminated buffer and parsed in place: lines are cut by
 * writing a NUL over their terminator, and CSV fields are unquoted over their own bytes.
 */
#include "task.h"

#include "input_file.h"

#include <ctype.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- a growing NUL-terminated string ----------------------------------------------------------- */

/* Appends never report failure one by one: `failed` sticks, and the prompt is checked once whole. */
typedef struct {
    char *data;
    size_t length, capacity;
    bool failed;
} text;

static void text_append(text *t, const char *bytes, size_t n) {
    if (t->failed) return;
    if (t->length + n + 1 > t->capacity) {
        size_t capacity = t->capacity ? t->capacity : 256;
        while (capacity < t->length + n + 1) capacity *= 2;
        char *grown = realloc(t->data, capacity);
        if (grown == NULL) {
            t->failed = true;
            return;
        }
        t->data = grown;
        t->capacity = capacity;
    }
    memcpy(t->data + t->length, bytes, n);
    t->length += n;
    t->data[t->length] = '\0';
}

static void text_append_str(text *t, const char *s) { text_append(t, s, strlen(s)); }

/* ---- the loader: where readers put their examples ---------------------------------------------- */

typedef struct {
    task_dataset *task;
    const char *path;
    ramp_error *err;
    int skip, limit;
    int seen;           /* valid examples read so far, kept or not */
    int capacity;       /* allocated length of task->examples */
    text prompt;        /* the prompt being built; its buffer moves into the example that keeps it */
} loader;

static int fail_at(loader *ld, int line, const char *format, ...) __attribute__((format(printf, 3, 4)));

/* "path:line 12: expected ..., found ..." */
static int fail_at(loader *ld, int line, const char *format, ...) {
    char what[sizeof ld->err->message];
    va_list args;
    va_start(args, format);
    vsnprintf(what, sizeof what, format, args);
    va_end(args);
    return ramp_fail(ld->err, "%s:line %d: %s", ld->path, line, what);
}

/* Takes the prompt just built as an example of `label` if it lies in the skip/limit window, and
 * leaves the prompt buffer empty for the next one either way. */
static int loader_emit(loader *ld, int label) {
    if (ld->prompt.failed) return ramp_fail(ld->err, "%s: out of memory building prompts", ld->path);
    task_dataset *task = ld->task;
    int index = ld->seen++;
    bool wanted = index >= ld->skip && (ld->limit <= 0 || task->n_examples < ld->limit);
    if (!wanted) {
        ld->prompt.length = 0;
        return 0;
    }
    if (task->n_examples == ld->capacity) {
        int capacity = ld->capacity ? 2 * ld->capacity : 1024;
        labelled_example *grown = realloc(task->examples, (size_t)capacity * sizeof *grown);
        if (grown == NULL) return ramp_fail(ld->err, "%s: out of memory for %d examples", ld->path, capacity);
        task->examples = grown;
        ld->capacity = capacity;
    }
    task->examples[task->n_examples++] = (labelled_example){
        .prompt = ld->prompt.data,
        .prompt_length = ld->prompt.length,
        .label = label,
    };
    ld->prompt = (text){0};
    return 0;
}

/* ---- lines ------------------------------------------------------------------------------------- */

typedef struct {
    char *pos, *end;
    int number; /* 1-based number of the line last returned */
} line_reader;

/* The next non-blank line, NUL-terminated in place, without its terminator and trailing
 * whitespace (the data files mix LF and CRLF, and GLUE's TSV puts a space before the tab). */
static bool next_line(line_reader *r, char **line, size_t *length) {
    while (r->pos < r->end) {
        char *start = r->pos;
        char *newline = memchr(start, '\n', (size_t)(r->end - start));
        char *stop = newline != NULL ? newline : r->end;
        r->pos = newline != NULL ? newline + 1 : r->end;
        r->number++;
        while (stop > start && isspace((unsigned char)stop[-1])) stop--;
        if (stop == start) continue;
        *stop = '\0';
        *line = start;
        *length = (size_t)(stop - start);
        return true;
    }
    return false;
}

/* ---- SST-2 ------------------------------------------------------------------------------------- */

/* The sentences are Penn Treebank tokens; training wrote -lrb-/-rrb- as brackets and left every
 * other token (spacing, "\/", "n't") as it is, so this is the only rewrite. */
static void append_ptb_sentence(text *t, const char *s, size_t n) {
    size_t start = 0, i = 0;
    while (i + 5 <= n) {
        if (memcmp(s + i, "-lrb-", 5) == 0 || memcmp(s + i, "-rrb-", 5) == 0) {
            text_append(t, s + start, i - start);
            text_append_str(t, s[i + 1] == 'l' ? "(" : ")");
            i += 5;
            start = i;
        } else {
            i++;
        }
    }
    text_append(t, s + start, n - start);
}

static bool is_glue_header(const char *line) {
    return strcmp(line, "text\tlabel") == 0 || strcmp(line, "sentence\tlabel") == 0;
}

/* stsa.binary.*: "<0|1> <sentence>" */
static int split_stsa_line(loader *ld, int number, char *line, size_t length, const char **sentence,
                           size_t *sentence_length, int *label) {
    if (length < 3 || (line[0] != '0' && line[0] != '1') || line[1] != ' ')
        return fail_at(ld, number, "expected \"<0|1> <sentence>\", found \"%.60s\"", line);
    *label = line[0] - '0';
    *sentence = line + 2;
    *sentence_length = length - 2;
    return 0;
}

/* GLUE dev.tsv: "<sentence>\t<0|1>" under a header. The sentence ends in a space before the tab,
 * which stsa's copy of the same sentence does not have: it is dropped so both files agree. */
static int split_glue_line(loader *ld, int number, char *line, size_t length, const char **sentence,
                           size_t *sentence_length, int *label) {
    char *tab = strrchr(line, '\t');
    if (tab == NULL || (strcmp(tab + 1, "0") != 0 && strcmp(tab + 1, "1") != 0))
        return fail_at(ld, number, "expected \"<sentence>\\t<0|1>\", found \"%.60s\"", line);
    *label = tab[1] - '0';
    char *stop = tab;
    while (stop > line && isspace((unsigned char)stop[-1])) stop--;
    if (stop == line) return fail_at(ld, number, "expected a sentence before the tab, found none");
    *sentence = line;
    *sentence_length = (size_t)(stop - line);
    (void)length;
    return 0;
}

/* Reads both layouts; a GLUE header on the first line says which. */
static int read_sst2(loader *ld, char *data, size_t size) {
    line_reader r = {.pos = data, .end = data + size};
    char *line;
    size_t length;
    bool glue = false, first = true;
    while (next_line(&r, &line, &length)) {
        if (first && is_glue_header(line)) {
            glue = true;
            first = false;
            continue;
        }
        first = false;
        const char *sentence = NULL;
        size_t sentence_length = 0;
        int label = 0;
        int rc = glue ? split_glue_line(ld, r.number, line, length, &sentence, &sentence_length, &label)
                      : split_stsa_line(ld, r.number, line, length, &sentence, &sentence_length, &label);
        if (rc != 0) return -1;
        text_append_str(&ld->prompt, "Review: ");
        append_ptb_sentence(&ld->prompt, sentence, sentence_length);
        text_append_str(&ld->prompt, "\nSentiment:");
        if (loader_emit(ld, label) != 0) return -1;
    }
    return 0;
}

/* ---- TREC -------------------------------------------------------------------------------------- */

/* In the order of the task's label words. */
static const char *const TREC_COARSE[] = {"ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM"};
enum { TREC_CLASSES = sizeof TREC_COARSE / sizeof TREC_COARSE[0] };

static int trec_class(const char *name, size_t length) {
    for (int i = 0; i < TREC_CLASSES; i++)
        if (strlen(TREC_COARSE[i]) == length && memcmp(TREC_COARSE[i], name, length) == 0) return i;
    return -1;
}

/* "COARSE:fine question", e.g. "NUM:dist How far is it from Denver to Aspen ?" */
static int read_trec(loader *ld, char *data, size_t size) {
    line_reader r = {.pos = data, .end = data + size};
    char *line;
    size_t length;
    while (next_line(&r, &line, &length)) {
        char *colon = strchr(line, ':');
        char *space = strchr(line, ' ');
        if (colon == NULL || space == NULL || colon > space || colon + 1 == space || space[1] == '\0')
            return fail_at(ld, r.number, "expected \"COARSE:fine question\", found \"%.60s\"", line);
        int label = trec_class(line, (size_t)(colon - line));
        if (label < 0)
            return fail_at(ld, r.number, "expected a coarse class ABBR, DESC, ENTY, HUM, LOC or NUM, found \"%.*s\"",
                           (int)(colon - line), line);
        text_append_str(&ld->prompt, "Question: ");
        text_append(&ld->prompt, space + 1, length - (size_t)(space + 1 - line));
        text_append_str(&ld->prompt, "\nType:");
        if (loader_emit(ld, label) != 0) return -1;
    }
    return 0;
}

/* ---- AG News: CSV ------------------------------------------------------------------------------ */

typedef struct {
    const char *data;
    size_t length;
} csv_field;

typedef struct {
    char *pos, *end;
    int line; /* 1-based line at pos */
} csv_reader;

/* One field at r->pos, quoted or not (RFC 4180: "" inside quotes is one quote, and quoted fields may
 * hold commas and newlines). A quoted field is unescaped in place: it only gets shorter. A quote
 * inside an unquoted field is taken literally, as Python's csv module does. */
static int csv_read_field(loader *ld, csv_reader *r, int record_line, csv_field *field) {
    char *in = r->pos;
    if (in == r->end || *in != '"') {
        while (in < r->end && *in != ',' && *in != '\n' && *in != '\r') in++;
        *field = (csv_field){r->pos, (size_t)(in - r->pos)};
        r->pos = in;
        return 0;
    }
    char *start = in, *out = in;
    in++;
    for (;;) {
        if (in == r->end) return fail_at(ld, record_line, "expected a closing quote, found the end of the file");
        if (*in == '"') {
            if (in + 1 < r->end && in[1] == '"') {
                *out++ = '"';
                in += 2;
                continue;
            }
            in++;
            break;
        }
        if (*in == '\n') r->line++;
        *out++ = *in++;
    }
    if (in < r->end && *in != ',' && *in != '\n' && *in != '\r')
        return fail_at(ld, r->line, "expected a comma or the end of the line after a closing quote, found '%c'", *in);
    *field = (csv_field){start, (size_t)(out - start)};
    r->pos = in;
    return 0;
}

/* Reads one record. Fields beyond `capacity` are counted but not kept, so the caller can say how many
 * there were. Returns 1 with a record, 0 at the end of the data, -1 on error. */
static int csv_read_record(loader *ld, csv_reader *r, csv_field *fields, int capacity, int *count, int *record_line) {
    if (r->pos >= r->end) return 0;
    *record_line = r->line;
    *count = 0;
    for (;;) {
        csv_field field;
        if (csv_read_field(ld, r, *record_line, &field) != 0) return -1;
        if (*count < capacity) fields[*count] = field;
        (*count)++;
        if (r->pos == r->end) return 1;
        char c = *r->pos++;
        if (c == ',') continue;
        if (c == '\r' && r->pos < r->end && *r->pos == '\n') r->pos++;
        r->line++;
        return 1;
    }
}

static bool csv_field_is(const csv_field *field, const char *s) {
    return field->length == strlen(s) && memcmp(field->data, s, field->length) == 0;
}

enum { AGNEWS_FIELDS = 3 };

/* "Class Index,Title,Description" with classes 1-4; the header row is optional. */
static int read_agnews(loader *ld, char *data, size_t size) {
    csv_reader r = {.pos = data, .end = data + size, .line = 1};
    csv_field fields[AGNEWS_FIELDS];
    int count, line;
    bool first = true;
    int rc;
    while ((rc = csv_read_record(ld, &r, fields, AGNEWS_FIELDS, &count, &line)) == 1) {
        if (count == 1 && fields[0].length == 0) continue; /* blank line */
        if (first && count == AGNEWS_FIELDS && csv_field_is(&fields[0], "Class Index")) {
            first = false;
            continue;
        }
        first = false;
        if (count != AGNEWS_FIELDS)
            return fail_at(ld, line, "expected 3 fields (class index, title, description), found %d", count);
        const csv_field *class_index = &fields[0], *title = &fields[1], *description = &fields[2];
        if (class_index->length != 1 || class_index->data[0] < '1' || class_index->data[0] > '4')
            return fail_at(ld, line, "expected a class index 1-4, found \"%.*s\"",
                           (int)(class_index->length < 20 ? class_index->length : 20), class_index->data);
        text_append_str(&ld->prompt, "Article: ");
        text_append(&ld->prompt, title->data, title->length);
        text_append_str(&ld->prompt, ". ");
        text_append(&ld->prompt, description->data, description->length);
        text_append_str(&ld->prompt, "\nTopic:");
        if (loader_emit(ld, class_index->data[0] - '1') != 0) return -1;
    }
    return rc;
}

/* ---- RTE: SuperGLUE jsonl ---------------------------------------------------------------------- */

static int json_text_field(loader *ld, int line, json_t *object, const char *key, const char **value,
                           size_t *length) {
    json_t *field = json_object_get(object, key);
    if (!json_is_string(field) || json_string_length(field) == 0)
        return fail_at(ld, line, "expected a non-empty string \"%s\", found %s", key,
                       field == NULL ? "no such field" : json_is_string(field) ? "an empty string" : "another type");
    *value = json_string_value(field);
    *length = json_string_length(field);
    return 0;
}

static int rte_label(loader *ld, int line, const char *name) {
    if (strcmp(name, "entailment") == 0) return 0;
    if (strcmp(name, "not_entailment") == 0) return 1;
    return fail_at(ld, line, "expected label \"entailment\" or \"not_entailment\", found \"%.40s\"", name);
}

static int rte_example(loader *ld, int line, const char *json, size_t json_length) {
    json_error_t error;
    json_t *root = json_loadb(json, json_length, 0, &error);
    if (root == NULL) return fail_at(ld, line, "expected a JSON object, found invalid JSON (%s)", error.text);
    const char *premise = NULL, *hypothesis = NULL, *label_name = NULL;
    size_t premise_length = 0, hypothesis_length = 0, label_length = 0;
    int rc = -1, label = 0;
    if (!json_is_object(root))
        fail_at(ld, line, "expected a JSON object, found another JSON value");
    else if (json_text_field(ld, line, root, "premise", &premise, &premise_length) == 0 &&
             json_text_field(ld, line, root, "hypothesis", &hypothesis, &hypothesis_length) == 0 &&
             json_text_field(ld, line, root, "label", &label_name, &label_length) == 0 &&
             (label = rte_label(ld, line, label_name)) >= 0) {
        text_append_str(&ld->prompt, "Premise: ");
        text_append(&ld->prompt, premise, premise_length);
        text_append_str(&ld->prompt, "\nHypothesis: ");
        text_append(&ld->prompt, hypothesis, hypothesis_length);
        text_append_str(&ld->prompt, "\nEntailment:");
        rc = loader_emit(ld, label);
    }
    json_decref(root);
    return rc;
}

/* One JSON object per line: premise, hypothesis, label (entailment / not_entailment), idx. */
static int read_rte(loader *ld, char *data, size_t size) {
    line_reader r = {.pos = data, .end = data + size};
    char *line;
    size_t length;
    while (next_line(&r, &line, &length))
        if (rte_example(ld, r.number, line, length) != 0) return -1;
    return 0;
}

/* ---- the tasks --------------------------------------------------------------------------------- */

typedef struct {
    const char *name;
    int (*read)(loader *ld, char *data, size_t size);
    int n_labels;
    const char *label_words[TASK_MAX_LABELS];
} task_spec;

/* The models were not trained on RTE: its yes/no words are this engine's choice, not MODEL.md's. */
static const task_spec TASKS[] = {
    {"sst2", read_sst2, 2, {"negative", "positive"}},
    {"trec", read_trec, TREC_CLASSES, {"abbreviation", "description", "entity", "person", "location", "number"}},
    {"agnews", read_agnews, 4, {"world", "sports", "business", "technology"}},
    {"rte", read_rte, 2, {"yes", "no"}},
};
enum { N_TASKS = sizeof TASKS / sizeof TASKS[0] };

static const task_spec *find_task(const char *name, ramp_error *err) {
    for (int i = 0; i < N_TASKS; i++)
        if (strcmp(TASKS[i].name, name) == 0) return &TASKS[i];
    char known[128] = "";
    for (int i = 0; i < N_TASKS; i++)
        snprintf(known + strlen(known), sizeof known - strlen(known), "%s%s", i ? ", " : "", TASKS[i].name);
    ramp_fail(err, "unknown task \"%.40s\", expected one of: %s", name, known);
    return NULL;
}

/* The prompt ends at the colon and training put a space before the label word, so the label is read
 * as the first token of " word". An SPM tokenizer writes that space itself (its space prefix turns
 * "negative" into "▁ne" + ...); a GPT-2 tokenizer needs it spelled out. */
static int label_first_token(const tokenizer *tok, const char *word, int *token, ramp_error *err) {
    char spaced[64];
    snprintf(spaced, sizeof spaced, "%s%s", tokenizer_get_kind(tok) == TOKENIZER_GPT2 ? " " : "", word);
    int ids[64];
    size_t n = 0;
    if (tokenizer_encode(tok, spaced, strlen(spaced), false, ids, sizeof ids / sizeof ids[0], &n, err) != 0)
        return ramp_fail_prefix(err, "label \"%s\": ", word);
    if (n == 0) return ramp_fail(err, "label \"%s\" encodes to no tokens", word);
    *token = ids[0];
    return 0;
}

/* Prediction compares the labels' first-token logits, so two labels starting with the same token
 * could never be told apart: that is a configuration error, not a tie. */
static int find_label_tokens(task_dataset *task, const tokenizer *tok, ramp_error *err) {
    for (int i = 0; i < task->n_labels; i++) {
        if (label_first_token(tok, task->label_words[i], &task->label_tokens[i], err) != 0)
            return ramp_fail_prefix(err, "task %s: ", task->name);
        for (int j = 0; j < i; j++)
            if (task->label_tokens[j] == task->label_tokens[i])
                return ramp_fail(err,
                                 "task %s: labels \"%s\" and \"%s\" both start with token %d (\"%s\"), expected "
                                 "distinct first tokens",
                                 task->name, task->label_words[j], task->label_words[i], task->label_tokens[i],
                                 tokenizer_piece(tok, task->label_tokens[i]));
    }
    return 0;
}

/* The whole file plus a NUL, so lines can be cut in place. A NUL inside would cut prompts short. */
static int read_text_file(const char *path, char **data, size_t *size, ramp_error *err) {
    const input_limits limits = {.what = "data file", .max_bytes = TASK_FILE_MAX_BYTES,
                                 .max_line = TASK_MAX_LINE, .allow_nul = false};
    return input_file_read(path, &limits, data, size, err);
}

static int read_examples(task_dataset *task, const task_spec *spec, const char *path, int skip, int limit,
                         ramp_error *err) {
    char *data = NULL;
    size_t size = 0;
    if (read_text_file(path, &data, &size, err) != 0) return -1;
    loader ld = {.task = task, .path = path, .err = err, .skip = skip, .limit = limit};
    int rc = spec->read(&ld, data, size);
    free(ld.prompt.data);
    free(data);
    if (rc != 0) return -1;
    if (ld.seen == 0) return ramp_fail(err, "%s: no %s examples in the file", path, spec->name);
    if (task->n_examples == 0)
        return ramp_fail(err, "%s: skip %d leaves none of its %d examples", path, skip, ld.seen);
    return 0;
}

int task_label_count(const char *task_name) {
    for (int i = 0; i < N_TASKS; i++)
        if (strcmp(TASKS[i].name, task_name) == 0) return TASKS[i].n_labels;
    return -1;
}

int task_load(task_dataset *task, const char *task_name, const char *path, const tokenizer *tok, int skip, int limit,
              ramp_error *err) {
    *task = (task_dataset){0};
    const task_spec *spec = find_task(task_name, err);
    if (spec == NULL) return -1;
    if (tok == NULL) return ramp_fail(err, "task %s: a tokenizer is needed to find the label tokens", spec->name);
    snprintf(task->name, sizeof task->name, "%s", spec->name);
    task->n_labels = spec->n_labels;
    for (int i = 0; i < spec->n_labels; i++) task->label_words[i] = spec->label_words[i];
    if (find_label_tokens(task, tok, err) != 0 ||
        read_examples(task, spec, path, skip > 0 ? skip : 0, limit > 0 ? limit : 0, err) != 0) {
        task_free(task);
        return -1;
    }
    return 0;
}

void task_free(task_dataset *task) {
    for (int i = 0; i < task->n_examples; i++) free(task->examples[i].prompt);
    free(task->examples);
    *task = (task_dataset){0};
}

int task_predict(const task_dataset *task, const float *logits) {
    int best = 0;
    for (int i = 1; i < task->n_labels; i++)
        if (logits[task->label_tokens[i]] > logits[task->label_tokens[best]]) best = i;
    return best;
}
