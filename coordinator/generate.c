/* generate.c: `ramp generate`: continue one prompt or a file of prompts, in one process or as
 * the coordinator of an MPI pipeline. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "commands.h"
#include "pipeline.h"

static void generate_usage(FILE *out) {
    fprintf(out,
            "usage: ramp generate -m MODEL (-p PROMPT | -f FILE) [options]\n"
            "       mpirun -np N ramp generate ...   (rank 0 coordinates, ranks 1..N-1 are stages)\n\n"
            "Prints each prompt followed by its continuation and a newline on stdout, in input order;\n"
            "statistics go to stderr.\n\n"
            "  -m, --model FILE       GGUF file or llama2.c checkpoint\n"
            "      --tokenizer FILE   llama2.c tokenizer.bin (needed for llama2.c checkpoints)\n"
            "  -p, --prompt TEXT      a prompt\n"
            "  -f, --file FILE        prompts, one per line (\\n in a line stands for a newline)\n"
            "  -n, --tokens N         new tokens per prompt (default 64)\n"
            "      --temp T           sampling temperature; 0 = greedy (default 0)\n"
            "      --top-p P          nucleus sampling mass in (0,1] (default 1 = off)\n"
            "      --top-k K          keep only the K most likely tokens (default 0 = off)\n"
            "      --seed S           random seed; prompt i uses S + i (default 42)\n"
            "      --stop TEXT        end a continuation before TEXT (up to 4; the text is not printed)\n"
            "      --exit conf:FILE   token-level early exit (LITE thresholds from exit-calibrate); the text is\n"
            "                         also generated at full depth to report token agreement and layers saved\n"
            "      --exit-layers L,.. exit points (default: the policy's); every:K = after every K layers\n"
            "      --kv-fill P        KV of the layers an exited token skipped: recompute (exact, default),\n"
            "                         copy (CALM: the exit state fills them), omit (attention skips them)\n"
            "  -h, --help             this text\n\n%s",
            pipeline_flags_help);
}

/* What the engine reported for one prompt: its text, and each token with the layers it ran. */
typedef struct {
    char *text;
    size_t length, capacity;
    int *tokens, *exit_layers;
    int n_tokens, tokens_capacity;
    bool failed;
} prompt_output;

typedef struct {
    prompt_output *outputs; /* [prompts] */
    int count;
} generate_outputs;

static int append_bytes(prompt_output *o, const char *bytes, size_t n) {
    if (o->length + n + 1 > o->capacity) {
        size_t capacity = o->capacity ? 2 * o->capacity : 256;
        while (capacity < o->length + n + 1) capacity *= 2;
        char *grown = realloc(o->text, capacity);
        if (!grown) return -1;
        o->text = grown;
        o->capacity = capacity;
    }
    memcpy(o->text + o->length, bytes, n);
    o->length += n;
    o->text[o->length] = '\0';
    return 0;
}

static int append_token(prompt_output *o, int token, int exit_layer) {
    if (o->n_tokens == o->tokens_capacity) {
        int capacity = o->tokens_capacity ? 2 * o->tokens_capacity : 64;
        int *tokens = realloc(o->tokens, (size_t)capacity * sizeof *tokens);
        if (!tokens) return -1;
        o->tokens = tokens;
        int *layers = realloc(o->exit_layers, (size_t)capacity * sizeof *layers);
        if (!layers) return -1;
        o->exit_layers = layers;
        o->tokens_capacity = capacity;
    }
    o->tokens[o->n_tokens] = token;
    o->exit_layers[o->n_tokens++] = exit_layer;
    return 0;
}

/* engine_handler: the context is the prompt's output record. */
static void collect_event(void *context, const engine_event *e) {
    prompt_output *o = context;
    if (e->text_length && append_bytes(o, e->text, e->text_length)) o->failed = true;
    if (e->kind == ENGINE_TOKEN && append_token(o, e->token, e->exit_layer)) o->failed = true;
}

static void outputs_free(generate_outputs *g) {
    for (int i = 0; i < g->count && g->outputs; i++) {
        free(g->outputs[i].text);
        free(g->outputs[i].tokens);
        free(g->outputs[i].exit_layers);
    }
    free(g->outputs);
    memset(g, 0, sizeof *g);
}

/* Submits every prompt as an engine request and runs them all (continuous batching). */
static int generate_all(pipeline *p, const prompt_list *prompts, const engine_request *settings,
                        generate_outputs *g, ramp_error *err) {
    g->count = prompts->count;
    g->outputs = calloc((size_t)(prompts->count ? prompts->count : 1), sizeof *g->outputs);
    if (!g->outputs) return ramp_fail(err, "out of memory");
    for (int i = 0; i < prompts->count; i++) {
        int *tokens, n_tokens;
        if (pipeline_tokenize(p, prompts->texts[i], prompts->lengths[i], &tokens, &n_tokens, err))
            return ramp_fail_prefix(err, "prompt %d: ", i + 1);
        if (n_tokens + settings->max_tokens > p->options.context && n_tokens < p->options.context)
            fprintf(stderr, "ramp generate: warning: prompt %d is %d tokens and -n %d needs %d positions, the context "
                            "holds %d (--ctx): its continuation stops after %d tokens\n",
                    i + 1, n_tokens, settings->max_tokens, n_tokens + settings->max_tokens, p->options.context,
                    p->options.context - n_tokens);
        engine_request r = *settings;
        r.prompt = tokens;
        r.n_prompt = n_tokens;
        r.sampling.seed = settings->sampling.seed + (uint64_t)i;
        uint64_t id;
        int status = engine_submit(p, &r, collect_event, &g->outputs[i], &id, err);
        free(tokens);
        if (status) return ramp_fail_prefix(err, "prompt %d: ", i + 1);
    }
    if (engine_run(p, ENGINE_UNTIL_IDLE, err)) return -1;
    for (int i = 0; i < g->count; i++)
        if (g->outputs[i].failed) return ramp_fail(err, "out of memory collecting the output of prompt %d", i + 1);
    return 0;
}

/* Token agreement: the share of positions where the early-exit text has the full-depth token,
 * counted up to the first difference (after it the two texts continue from different prefixes). */
static void report_token_agreement(const generate_outputs *full, const generate_outputs *early, const pipeline *p,
                                   long long rows_full, long long rows_early) {
    long same_prefix = 0, compared = 0, full_depth_differences = 0;
    int depth = p->model.config.n_layers;
    for (int i = 0; i < full->count; i++) {
        const prompt_output *a = &full->outputs[i], *b = &early->outputs[i];
        int n = a->n_tokens > b->n_tokens ? a->n_tokens : b->n_tokens, k = 0;
        while (k < a->n_tokens && k < b->n_tokens && a->tokens[k] == b->tokens[k]) k++;
        same_prefix += k;
        compared += n;
        /* With exact KV (recompute) a token that went full depth after an identical prefix must be
         * the full-depth run's token: texts can first differ only at a token that left early. */
        if (k < a->n_tokens && k < b->n_tokens && b->exit_layers[k] == depth) full_depth_differences++;
    }
    const exit_run *run = &p->exits;
    double saved = run->outputs ? 1.0 - (double)run->layers_executed / ((double)run->outputs * run->total_layers) : 0;
    fprintf(stderr, "ramp generate: early exit: %.1f%% of layer evaluations saved on the tokens' path; token agreement "
            "with the full-depth text %.3f (%ld of %ld tokens before the first difference); first differences at "
            "full-depth tokens: %ld\n",
            100.0 * saved, compared ? (double)same_prefix / compared : 1.0, same_prefix, compared, full_depth_differences);
    /* The path is not the work: --kv-fill recompute runs the skipped layers later, with the next token. */
    if (rows_full > 0 && rows_early >= 0)
        fprintf(stderr, "ramp generate: early exit: %.1f%% of the full run's row-layers not computed (%lld of %lld "
                "computed, recomputed and copied rows included)\n", 100.0 * (1.0 - (double)rows_early / rows_full),
                rows_early, rows_full);
}

/* Prompt then continuation, one line each, in input order. A closed or full stdout is an error. */
static int print_outputs(const prompt_list *prompts, const generate_outputs *g, ramp_error *err) {
    for (int i = 0; i < prompts->count; i++) {
        fwrite(prompts->texts[i], 1, prompts->lengths[i], stdout);
        if (g->outputs[i].length) fwrite(g->outputs[i].text, 1, g->outputs[i].length, stdout);
        fputc('\n', stdout);
        if (ferror(stdout)) break;
    }
    if (fflush(stdout) || ferror(stdout))
        return ramp_fail(err, "cannot write the output to stdout: %s", strerror(errno));
    return 0;
}

int command_generate(int argc, char **argv, transport *mpi) {
    pipeline_options options;
    pipeline_options_default(&options);
    sampling_params sampling = {.temperature = 0.0f, .top_p = 1.0f, .top_k = 0, .seed = 42};
    const char *prompt = NULL, *prompt_file = NULL;
    int n_new = 64;
    ramp_error err;
    const char *exit_spec = NULL;
    const char *stops[ENGINE_MAX_STOP];
    int n_stop = 0;
    enum { TOKENIZER = 1000, TEMP, TOP_P, TOP_K, SEED, EXIT, EXIT_LAYERS, KV_FILL, STOP, PIPELINE_FLAG };
    static const struct option long_options[] = {
        {"model", required_argument, 0, 'm'},  {"tokenizer", required_argument, 0, TOKENIZER},
        {"prompt", required_argument, 0, 'p'}, {"file", required_argument, 0, 'f'},
        {"tokens", required_argument, 0, 'n'}, {"temp", required_argument, 0, TEMP},
        {"top-p", required_argument, 0, TOP_P}, {"top-k", required_argument, 0, TOP_K},
        {"seed", required_argument, 0, SEED},  {"help", no_argument, 0, 'h'},
        {"exit", required_argument, 0, EXIT},  {"exit-layers", required_argument, 0, EXIT_LAYERS},
        {"kv-fill", required_argument, 0, KV_FILL}, {"stop", required_argument, 0, STOP},
        CLI_PIPELINE_OPTIONS(PIPELINE_FLAG),   {0, 0, 0, 0},
    };
    int c, option_index;
    optind = 1;
    while ((c = getopt_long(argc, argv, "m:p:f:n:h", long_options, &option_index)) != -1) {
        int bad = 0;
        switch (c) {
        case 'm': options.model_path = optarg; break;
        case TOKENIZER: options.tokenizer_path = optarg; break;
        case 'p': prompt = optarg; break;
        case 'f': prompt_file = optarg; break;
        case 'n': bad = cli_parse_int("-n", optarg, 0, 1 << 20, &n_new, &err); break;
        case TEMP: bad = cli_parse_float("--temp", optarg, &sampling.temperature, &err); break;
        case TOP_P: bad = cli_parse_float("--top-p", optarg, &sampling.top_p, &err); break;
        case TOP_K: bad = cli_parse_int("--top-k", optarg, 0, 1 << 24, &sampling.top_k, &err); break;
        case SEED: bad = cli_parse_u64("--seed", optarg, &sampling.seed, &err); break;
        case EXIT: exit_spec = optarg; options.exits = true; break;
        case EXIT_LAYERS: options.exit_layers = optarg; break;
        case STOP:
            if (n_stop == ENGINE_MAX_STOP) bad = -1, cli_error(&err, "at most %d --stop strings", ENGINE_MAX_STOP);
            else if (!*optarg) bad = -1, cli_error(&err, "--stop needs a non-empty string");
            else stops[n_stop++] = optarg;
            break;
        case KV_FILL: bad = pipeline_parse_kv_fill(optarg, &options.kv_fill, &err); break;
        case PIPELINE_FLAG:
            bad = pipeline_parse_flag(&options, long_options[option_index].name, optarg, &err) < 0;
            break;
        case 'h': generate_usage(stdout); return 0;
        default: generate_usage(stderr); return 2;
        }
        if (bad) return cli_usage_error("generate", &err);
    }
    if (optind < argc) return cli_usage_error("generate", cli_error(&err, "unexpected argument '%s'", argv[optind]));
    if (!options.model_path || (!prompt && !prompt_file))
        return cli_usage_error("generate", cli_error(&err, "-m MODEL and -p PROMPT (or -f FILE) are required (see --help)"));
    if (sampling_params_validate(&sampling, &err)) return cli_usage_error("generate", &err);

    prompt_list prompts = {0};
    if (prompt && prompt_list_add(&prompts, prompt, strlen(prompt), &err)) return cli_usage_error("generate", &err);
    if (prompt_file && prompt_list_read(&prompts, prompt_file, &err)) return cli_usage_error("generate", &err);

    exit_policy policy = {0};
    char exit_layers_text[512], split_text[4096];
    if (exit_spec && strcmp(exit_spec, "none")) {
        if (exit_policy_load(&policy, exit_spec, &err)) {
            prompt_list_free(&prompts);
            fprintf(stderr, "ramp generate: %s\n", err.message);
            return 1;
        }
        if (!options.exit_layers) {
            format_exit_layers(policy.exit_layers, policy.n_exits, exit_layers_text, sizeof exit_layers_text);
            options.exit_layers = exit_layers_text;
        }
        pipeline_split_from_policy(&options, exit_spec, split_text, sizeof split_text);
    }
    options.mpi = mpi;
    pipeline p;
    generate_outputs full = {0}, early = {0};
    int status = 0;
    engine_request settings = {.max_tokens = n_new, .sampling = sampling, .n_stop = n_stop};
    for (int i = 0; i < n_stop; i++) settings.stop[i] = stops[i];
    exit_policy_use use = {0};
    if (pipeline_open(&p, &options, &err) ||
        (policy.kind != EXIT_POLICY_NONE &&
         (use = (exit_policy_use){.n_layers = p.model.config.n_layers, .vocab_size = p.model.config.vocab_size},
          exit_policy_check_use(&policy, exit_spec, &use, &err))) ||
        generate_all(&p, &prompts, &settings, &full, &err)) {
        status = pipeline_fail(&p, "generate", &err);
        goto done;
    }
    long long rows_full = pipeline_layer_rows(&p);
    if (policy.kind != EXIT_POLICY_NONE) { /* the same prompts again, now leaving early */
        if (pipeline_set_exits(&p, EXIT_MODE_DECIDE, true, &policy, &err)) {
            status = pipeline_fail(&p, "generate", &err);
            goto done;
        }
        settings.exit = EXIT_MODE_DECIDE;
        settings.policy = &policy;
        settings.token_level = true;
        if (pipeline_reset_requests(&p, &err) || generate_all(&p, &prompts, &settings, &early, &err)) {
            status = pipeline_fail(&p, "generate", &err);
            goto done;
        }
        long long rows_now = pipeline_layer_rows(&p);
        report_token_agreement(&full, &early, &p, rows_full, rows_now < 0 ? -1 : rows_now - rows_full);
    }
    if (pipeline_finish(&p, &err)) {
        status = pipeline_fail(&p, "generate", &err);
        goto done;
    }
    if (print_outputs(&prompts, early.count ? &early : &full, &err)) {
        fprintf(stderr, "ramp generate: %s\n", err.message);
        status = 1;
    }
done:
    outputs_free(&full);
    outputs_free(&early);
    prompt_list_free(&prompts);
    exit_policy_free(&policy);
    pipeline_close(&p);
    return status;
}
