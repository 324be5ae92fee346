/* task.h: labelled classification data sets and how a model is asked about them.
 *
 * A task names a prompt format and label words (see ../shared/models/<model>/MODEL.md): e.g. SST-2
 * asks "Review: {sentence}\nSentiment:" and reads the logits of the first token of " negative"
 * and " positive" at the last position. The label tokens are found with the model's tokenizer.
 * Data files are read as they are in ../shared/data. A task_dataset owns its examples.
 */
#ifndef RAMP_TASK_H
#define RAMP_TASK_H

#include <stddef.h>

#include "error.h"
#include "tokenizer.h"

#define TASK_MAX_LABELS 8
/* Data files come from outside: one larger than this, or with a line longer than TASK_MAX_LINE
 * (the shared sets' longest is a few KiB), is refused with a message rather than read into
 * memory without end. */
#define TASK_FILE_MAX_BYTES ((size_t)256 << 20)
#define TASK_MAX_LINE ((size_t)1 << 20)

typedef struct {
    char *prompt; /* NUL-terminated, without BOS (the tokenizer adds it) */
    size_t prompt_length;
    int label;    /* index into label_words */
} labelled_example;

typedef struct {
    char name[16];
    int n_labels;
    const char *label_words[TASK_MAX_LABELS];
    int label_tokens[TASK_MAX_LABELS]; /* first token of " word" */
    labelled_example *examples;
    int n_examples;
} task_dataset;

/* task_name: sst2 | trec | agnews | rte. limit > 0 keeps only the first `limit` examples.
 * skip > 0 drops the first `skip` examples (for train/held-out splits of one file). */
int task_load(task_dataset *task, const char *task_name, const char *path, const tokenizer *tok, int skip, int limit,
              ramp_error *err);
void task_free(task_dataset *task);
/* The number of label words of a known task, -1 for a name that is no task (exit policies say
 * which task they were made for; an unknown one is refused). */
int task_label_count(const char *task_name);
/* Index of the label whose token has the highest logit; logits is over the full vocabulary. */
int task_predict(const task_dataset *task, const float *logits);

#endif
