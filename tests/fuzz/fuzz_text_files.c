/* fuzz_text_files.c: prompt and data files from outside. The first input byte picks the reader:
 * 0 the prompts file of generate -f (prompt_list_read), 1..4 the task data of eval and exit-train
 * (task_load: sst2, trec, agnews, rte, with tok512.bin for the label tokens); the rest is the file.
 * Properties: a prompts list holds non-empty prompts with their lengths; examples carry labels of
 * their task and prompts of their stated length; failures say so in one clean line naming the
 * file. Seeds: the first lines of the shared data sets and reference prompts. */
#include "cli.h"
#include "fuzz.h"
#include "task.h"
#include "tokenizer.h"

static const tokenizer *text_fuzz_tokenizer(void) {
    static tokenizer *tok;
    static int tried;
    if (!tried) {
        tried = 1;
        char path[4096];
        fuzz_shared_path("models/stories260K/tok512.bin", path, sizeof path);
        ramp_error err = {{0}};
        if (tokenizer_from_llama2c(&tok, path, 512, &err) != 0) {
            fprintf(stderr, "fuzz_text_files: %s (set RAMP_SHARED); task files are skipped\n", err.message);
            tok = NULL;
        }
    }
    return tok;
}

static void text_fuzz_prompts(const char *path) {
    prompt_list list = {0};
    ramp_error err = {{0}};
    if (prompt_list_read(&list, path, &err) == 0) {
        fuzz_require(list.count > 0, "an empty prompt list was accepted");
        for (int i = 0; i < list.count; i++)
            fuzz_require(list.lengths[i] > 0 && list.texts[i][list.lengths[i]] == '\0', "prompt %d is malformed", i);
    } else {
        fuzz_require_clean_message(&err);
        fuzz_require(strstr(err.message, path) != NULL, "the message does not name the file: %s", err.message);
    }
    prompt_list_free(&list);
}

static void text_fuzz_task(const char *path, int which) {
    static const char *const names[] = {"sst2", "trec", "agnews", "rte"};
    const tokenizer *tok = text_fuzz_tokenizer();
    if (!tok) return;
    task_dataset task;
    ramp_error err = {{0}};
    /* A window that skips the first example and keeps at most 50 of the rest, as exit-train's
     * held-out split does, then the whole file. */
    for (int pass = 0; pass < 2; pass++) {
        if (task_load(&task, names[which], path, tok, pass ? 0 : 1, pass ? 0 : 50, &err) != 0) {
            fuzz_require_clean_message(&err);
            continue;
        }
        fuzz_require(task.n_examples > 0, "a task without examples was accepted");
        for (int i = 0; i < task.n_examples; i++) {
            const labelled_example *e = &task.examples[i];
            fuzz_require(e->label >= 0 && e->label < task.n_labels, "example %d has label %d", i, e->label);
            fuzz_require(strlen(e->prompt) == e->prompt_length, "example %d has a NUL inside its prompt", i);
        }
        task_free(&task);
    }
}

static int fuzz_text_files(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    char path[128];
    fuzz_scratch_path("text-file", path, sizeof path);
    fuzz_write_file(path, data + 1, size - 1);
    int which = data[0] % 5;
    if (which == 0) text_fuzz_prompts(path);
    else text_fuzz_task(path, which - 1);
    return 0;
}

FUZZ_ENTRY(fuzz_text_files)
