/* nll_command.c: `ramp nll`: mean negative log-likelihood per token of held-out documents.
 *
 * What a change to the layer math costs in modelling quality (layer-parallel pairs: forward.h),
 * measured the way language models are judged: each document (BOS + text, and EOS for a task's
 * documents) runs through the whole model as one prompt, and every position's logits score the
 * next token. A task's documents are written as the models were trained on them (MODEL.md):
 * "Review: {sentence}\nSentiment: {label}\n". It runs in one process (the value does not depend
 * on the split); under mpirun the other ranks are released.
 */
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "clock.h"
#include "commands.h"
#include "forward.h"
#include "kv_cache.h"
#include "model.h"
#include "pipeline.h"
#include "task.h"
#include "worker.h"

static void nll_usage(FILE *out) {
    fprintf(out, "usage: ramp nll -m MODEL (--task sst2|trec|agnews|rte --data FILE | -f TEXTS) [--parallel-layers A-B]\n"
                 "                [--limit N] [--skip N] [--threads N] [--json OUT] [--tokenizer FILE]\n\n"
                 "Mean negative log-likelihood per token (nats) and perplexity of documents the model reads whole:\n"
                 "a task's examples written as training documents (prompt, label word, newline, EOS), or one text\n"
                 "per line of TEXTS. --parallel-layers evaluates layers A..B in parallel pairs (forward.h).\n");
}

typedef struct {
    double nll;  /* summed over scored tokens */
    long tokens; /* scored tokens */
    long rows;   /* positions run */
    double seconds;
} nll_total;

/* One document: rows 0..n-1 through the model, position t's logits score token t + 1. */
static int score_document(const model *m, const forward_pairs *pairs, const int *tokens, int n, kv_cache *kv,
                          forward_workspace *ws, float *hidden, float *logits, nll_total *total, ramp_error *err) {
    const int L = m->config.n_layers, vocab = m->config.vocab_size;
    int slots[n], positions[n];
    for (int t = 0; t < n; t++) slots[t] = 0, positions[t] = t;
    forward_rows rows = {n, slots, positions, NULL};
    if (kv_slot_reserve(kv, 0, n, err)) return -1;
    double start = clock_seconds();
    int status = forward_embed(m, tokens, n, hidden, err) ||
                 forward_layers_paired(m, 0, L, pairs, kv, &rows, hidden, ws, err);
    if (!status) forward_logits(m, hidden, n - 1, logits, ws);
    total->seconds += clock_seconds() - start;
    kv_slot_release(kv, 0);
    if (status) return -1;
    for (int t = 0; t + 1 < n; t++) {
        const float *row = logits + (size_t)t * vocab;
        float max = row[0];
        for (int i = 1; i < vocab; i++) max = row[i] > max ? row[i] : max;
        double sum = 0;
        for (int i = 0; i < vocab; i++) sum += exp((double)row[i] - max);
        total->nll += log(sum) - ((double)row[tokens[t + 1]] - max);
    }
    total->tokens += n - 1;
    total->rows += n;
    return 0;
}

/* The documents as token arrays: a task's examples written as training documents, or texts. */
typedef struct {
    int **tokens;
    int *lengths;
    int count;
} documents;

static void documents_free(documents *d) {
    for (int i = 0; i < d->count; i++) free(d->tokens[i]);
    free(d->tokens);
    free(d->lengths);
    memset(d, 0, sizeof *d);
}

static int add_document(documents *d, const tokenizer *tok, const char *text, size_t length, bool eos,
                        ramp_error *err) {
    size_t capacity = 4 * length + 8, n;
    int *tokens = malloc(capacity * sizeof *tokens);
    int **grown_tokens = realloc(d->tokens, (size_t)(d->count + 1) * sizeof *d->tokens);
    if (grown_tokens) d->tokens = grown_tokens;
    int *grown_lengths = realloc(d->lengths, (size_t)(d->count + 1) * sizeof *d->lengths);
    if (grown_lengths) d->lengths = grown_lengths;
    if (!tokens || !grown_tokens || !grown_lengths) {
        free(tokens);
        return ramp_fail(err, "out of memory reading documents");
    }
    if (tokenizer_encode(tok, text, length, true, tokens, capacity, &n, err)) {
        free(tokens);
        return -1;
    }
    if (eos && tokenizer_eos(tok) >= 0) tokens[n++] = tokenizer_eos(tok);
    d->tokens[d->count] = tokens;
    d->lengths[d->count++] = (int)n;
    return 0;
}

static int read_documents(documents *d, const model *m, const char *task_name, const char *data, const char *texts,
                          int skip, int limit, ramp_error *err) {
    memset(d, 0, sizeof *d);
    if (task_name) {
        task_dataset task;
        if (task_load(&task, task_name, data, m->tokenizer, skip, limit, err)) return -1;
        int status = 0;
        for (int i = 0; !status && i < task.n_examples; i++) {
            const labelled_example *e = &task.examples[i];
            const char *word = task.label_words[e->label];
            size_t length = e->prompt_length + strlen(word) + 3;
            char *text = malloc(length);
            if (!text) {
                status = ramp_fail(err, "out of memory");
                break;
            }
            int n = snprintf(text, length, "%s %s\n", e->prompt, word);
            status = add_document(d, m->tokenizer, text, (size_t)n, true, err);
            free(text);
        }
        task_free(&task);
        return status;
    }
    prompt_list list = {0};
    int status = prompt_list_read(&list, texts, err);
    for (int i = skip; !status && i < list.count && (limit == 0 || d->count < limit); i++)
        status = add_document(d, m->tokenizer, list.texts[i], list.lengths[i], false, err);
    prompt_list_free(&list);
    return status;
}

int command_nll(int argc, char **argv, transport *mpi) {
    const char *model_path = NULL, *tokenizer_path = NULL, *task_name = NULL, *data = NULL, *texts = NULL;
    const char *json_path = NULL, *parallel = NULL;
    int limit = 0, skip = 0, threads = 0;
    ramp_error err;
    enum { TOKENIZER = 1000, TASK, DATA, LIMIT, SKIP, THREADS, JSON, PARALLEL };
    static const struct option long_options[] = {
        {"model", required_argument, 0, 'm'},   {"tokenizer", required_argument, 0, TOKENIZER},
        {"task", required_argument, 0, TASK},   {"data", required_argument, 0, DATA},
        {"file", required_argument, 0, 'f'},    {"limit", required_argument, 0, LIMIT},
        {"skip", required_argument, 0, SKIP},   {"threads", required_argument, 0, THREADS},
        {"json", required_argument, 0, JSON},   {"parallel-layers", required_argument, 0, PARALLEL},
        {"help", no_argument, 0, 'h'},          {0, 0, 0, 0},
    };
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "m:f:h", long_options, NULL)) != -1) {
        int bad = 0;
        switch (c) {
        case 'm': model_path = optarg; break;
        case TOKENIZER: tokenizer_path = optarg; break;
        case TASK: task_name = optarg; break;
        case DATA: data = optarg; break;
        case 'f': texts = optarg; break;
        case LIMIT: bad = cli_parse_int("--limit", optarg, 1, 1 << 30, &limit, &err); break;
        case SKIP: bad = cli_parse_int("--skip", optarg, 0, 1 << 30, &skip, &err); break;
        case THREADS: bad = cli_parse_int("--threads", optarg, 1, 1024, &threads, &err); break;
        case JSON: json_path = optarg; break;
        case PARALLEL: parallel = optarg; break;
        case 'h': nll_usage(stdout); return 0;
        default: nll_usage(stderr); return 2;
        }
        if (bad) return cli_usage_error("nll", &err);
    }
    pipeline_release_workers(mpi); /* one process computes; the value does not depend on the split */
    if (optind < argc) return cli_usage_error("nll", cli_error(&err, "unexpected argument '%s'", argv[optind]));
    if (!model_path) return cli_usage_error("nll", cli_error(&err, "-m MODEL is required"));
    if (!texts == !(task_name && data))
        return cli_usage_error("nll", cli_error(&err, "give either --task T --data FILE or -f TEXTS"));
    threads_apply(threads_per_rank(threads, true, 1));
    model m;
    if (model_load(&m, model_path, NULL, true, tokenizer_path, &err)) {
        fprintf(stderr, "ramp nll: %s\n", err.message);
        return 1;
    }
    forward_pairs pairs = {.first = 0, .end = 0};
    if (parallel && pipeline_parse_pairs(parallel, m.config.n_layers, &pairs, &err)) {
        model_free(&m);
        return cli_usage_error("nll", &err);
    }
    documents docs;
    int status = read_documents(&docs, &m, task_name, data, texts, skip, limit, &err);
    int longest = 2;
    for (int i = 0; !status && i < docs.count; i++) longest = docs.lengths[i] > longest ? docs.lengths[i] : longest;
    kv_cache kv = {0};
    forward_workspace ws = {0};
    float *hidden = NULL, *logits = NULL;
    if (!status)
        status = kv_cache_init(&kv, m.config.n_layers, m.config.n_kv_heads, m.config.head_dim, KV_F32, 1, &err) ||
                 forward_workspace_init(&ws, &m.config, longest, longest, &err) ||
                 forward_workspace_enable_pairs(&ws, &m.config, &err);
    if (!status) {
        hidden = malloc((size_t)longest * m.config.dim * sizeof *hidden);
        logits = malloc((size_t)longest * m.config.vocab_size * sizeof *logits);
        if (!hidden || !logits) status = ramp_fail(&err, "out of memory for documents of %d tokens", longest);
    }
    nll_total total = {0};
    for (int i = 0; !status && i < docs.count; i++)
        if (docs.lengths[i] >= 2)
            status = score_document(&m, &pairs, docs.tokens[i], docs.lengths[i], &kv, &ws, hidden, logits, &total, &err);
    if (!status && total.tokens == 0) status = ramp_fail(&err, "no document has two tokens to score");
    if (!status) {
        double mean = total.nll / total.tokens;
        json_t *root = json_pack("{s:s, s:s, s:i, s:I, s:f, s:f, s:f, s:f}", "model", model_path, "parallel_layers",
                                 parallel ? parallel : "none", "documents", docs.count, "tokens",
                                 (json_int_t)total.tokens, "nll_per_token", mean, "perplexity", exp(mean), "seconds",
                                 total.seconds, "rows_per_second", total.rows / total.seconds);
        char *text = json_dumps(root, JSON_INDENT(2));
        printf("%s\n", text ? text : "{}");
        free(text);
        fprintf(stderr, "ramp nll: %d documents, %ld tokens scored: %.4f nats per token (perplexity %.3f)%s%s; %.0f "
                        "positions/s\n", docs.count, total.tokens, mean, exp(mean), parallel ? ", parallel layers " : "",
                parallel ? parallel : "", total.rows / total.seconds);
        if (json_path && json_dump_file(root, json_path, JSON_INDENT(2)))
            status = ramp_fail(&err, "%s: cannot write the results", json_path);
        json_decref(root);
    }
    if (status) fprintf(stderr, "ramp nll: %s\n", err.message);
    free(hidden);
    free(logits);
    forward_workspace_free(&ws);
    if (kv.slots) kv_cache_free(&kv);
    documents_free(&docs);
    model_free(&m);
    return status ? 1 : 0;
}
