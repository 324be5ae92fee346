/* generate.c: `ramp generate`: continue one prompt or a file of prompts, in one process or as
 * the coordinator of an MPI pipeline. */
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
            "      --exit conf:FILE   token-level early exit (LITE thresholds from exit-calibrate); the text is\n"
            "                         also generated at full depth to report token agreement and layers saved\n"
            "      --exit-layers L,.. exit points (default: the policy's); every:K = after every K layers\n"
            "      --kv-fill P        KV of the layers an exited token skipped: recompute (exact, default),\n"
            "                         copy (CALM: the exit state fills them), omit (attention skips them)\n"
            "  -h, --help             this text\n\n%s",
            pipeline_flags_help);
}

static int submit_all(pipeline *p, const prompt_list *prompts, int n_new, const sampling_params *sampling,
                      ramp_error *err) {
    for (int i = 0; i < prompts->count; i++) {
        sampling_params per_prompt = *sampling;
        per_prompt.seed = sampling->seed + (uint64_t)i;
        int index;
        if (pipeline_submit_text(p, prompts->texts[i], prompts->lengths[i], n_new, &per_prompt, &index, err))
            return ramp_fail_prefix(err, "prompt %d: ", i + 1);
    }
    return 0;
}

/* The generated tokens of a full-depth run, kept to compare the early-exit run with. */
typedef struct {
    int n;
    int **tokens;
    int *counts;
} full_depth_text;

static int full_depth_keep(full_depth_text *full, const pipeline *p, ramp_error *err) {
    full->n = p->scheduler.n_requests;
    full->tokens = calloc((size_t)full->n, sizeof *full->tokens);
    full->counts = calloc((size_t)full->n, sizeof *full->counts);
    if (!full->tokens || !full->counts) return ramp_fail(err, "out of memory");
    for (int i = 0; i < full->n; i++) {
        const request *r = &p->scheduler.requests[i];
        full->counts[i] = r->generated;
        full->tokens[i] = malloc((size_t)(r->generated + 1) * sizeof(int));
        if (!full->tokens[i]) return ramp_fail(err, "out of memory");
        memcpy(full->tokens[i], r->tokens + r->n_prompt, (size_t)r->generated * sizeof(int));
    }
    return 0;
}

static void full_depth_free(full_depth_text *full) {
    for (int i = 0; i < full->n && full->tokens; i++) free(full->tokens[i]);
    free(full->tokens);
    free(full->counts);
}

/* Token agreement: the share of positions where the early-exit text has the full-depth token,
 * counted up to the first difference (after it the two texts continue from different prefixes). */
static void report_token_agreement(const full_depth_text *full, const pipeline *p) {
    long same_prefix = 0, compared = 0, full_depth_differences = 0;
    for (int i = 0; i < full->n; i++) {
        const request *r = &p->scheduler.requests[i];
        int n = full->counts[i] > r->generated ? full->counts[i] : r->generated, k = 0;
        while (k < full->counts[i] && k < r->generated && full->tokens[i][k] == r->tokens[r->n_prompt + k]) k++;
        same_prefix += k;
        compared += n;
        /* With exact KV (recompute) a token that went full depth after an identical prefix must be
         * the full-depth run's token: texts can first differ only at a token that left early. */
        if (k < full->counts[i] && k < r->generated && r->exit_points[k] == p->exits.n_exits) full_depth_differences++;
    }
    const exit_run *run = &p->exits;
    double saved = run->outputs ? 1.0 - (double)run->layers_executed / ((double)run->outputs * run->total_layers) : 0;
    fprintf(stderr, "ramp generate: early exit: %.1f%% of layer evaluations saved on the tokens' path; token agreement "
            "with the full-depth text %.3f (%ld of %ld tokens before the first difference); first differences at "
            "full-depth tokens: %ld\n",
            100.0 * saved, compared ? (double)same_prefix / compared : 1.0, same_prefix, compared, full_depth_differences);
}

int command_generate(int argc, char **argv) {
    pipeline_options options;
    pipeline_options_default(&options);
    sampling_params sampling = {.temperature = 0.0f, .top_p = 1.0f, .top_k = 0, .seed = 42};
    const char *prompt = NULL, *prompt_file = NULL;
    int n_new = 64;
    ramp_error err;
    const char *exit_spec = NULL;
    enum { TOKENIZER = 1000, TEMP, TOP_P, TOP_K, SEED, EXIT, EXIT_LAYERS, KV_FILL, PIPELINE_FLAG };
    static const struct option long_options[] = {
        {"model", required_argument, 0, 'm'},  {"tokenizer", required_argument, 0, TOKENIZER},
        {"prompt", required_argument, 0, 'p'}, {"file", required_argument, 0, 'f'},
        {"tokens", required_argument, 0, 'n'}, {"temp", required_argument, 0, TEMP},
        {"top-p", required_argument, 0, TOP_P}, {"top-k", required_argument, 0, TOP_K},
        {"seed", required_argument, 0, SEED},  {"help", no_argument, 0, 'h'},
        {"exit", required_argument, 0, EXIT},  {"exit-layers", required_argument, 0, EXIT_LAYERS},
        {"kv-fill", required_argument, 0, KV_FILL},
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
        case KV_FILL:
            if (!strcmp(optarg, "recompute")) options.kv_fill = KV_FILL_RECOMPUTE;
            else if (!strcmp(optarg, "copy")) options.kv_fill = KV_FILL_COPY;
            else if (!strcmp(optarg, "omit")) options.kv_fill = KV_FILL_OMIT;
            else bad = -1, cli_error(&err, "--kv-fill expects recompute, copy or omit, got '%s'", optarg);
            break;
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
    char exit_layers_text[512];
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
    }
    pipeline p;
    int worker_status = 0;
    int opened = pipeline_open(&p, &options, &argc, &argv, &worker_status, &err);
    if (opened == 1) {
        prompt_list_free(&prompts);
        exit_policy_free(&policy);
        pipeline_close(&p);
        return worker_status;
    }
    int status = 0;
    if (opened < 0) {
        status = pipeline_fail(&p, "generate", &err);
        goto done;
    }
    bool with_exit = policy.kind != EXIT_POLICY_NONE;
    if (submit_all(&p, &prompts, n_new, &sampling, &err) || pipeline_run(&p, &err)) {
        status = pipeline_fail(&p, "generate", &err);
        goto done;
    }
    if (with_exit) { /* the same prompts again, now leaving early; compare with the full-depth text */
        full_depth_text full = {0};
        if (full_depth_keep(&full, &p, &err) || pipeline_reset_requests(&p, &err) ||
            pipeline_set_exits(&p, EXIT_MODE_DECIDE, true, &policy, &err) ||
            submit_all(&p, &prompts, n_new, &sampling, &err) || pipeline_run(&p, &err)) {
            full_depth_free(&full);
            status = pipeline_fail(&p, "generate", &err);
            goto done;
        }
        report_token_agreement(&full, &p);
        full_depth_free(&full);
    }
    if (pipeline_finish(&p, &err)) {
        status = pipeline_fail(&p, "generate", &err);
        goto done;
    }
    for (int i = 0; i < prompts.count; i++) {
        size_t length;
        char *continuation = pipeline_continuation(&p, i, &length);
        fwrite(prompts.texts[i], 1, prompts.lengths[i], stdout);
        if (continuation) fwrite(continuation, 1, length, stdout);
        fputc('\n', stdout);
        free(continuation);
    }
done:
    prompt_list_free(&prompts);
    exit_policy_free(&policy);
    pipeline_close(&p);
    return status;
}
