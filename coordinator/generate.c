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
            "  -h, --help             this text\n\n%s",
            pipeline_flags_help);
}

int command_generate(int argc, char **argv) {
    pipeline_options options;
    pipeline_options_default(&options);
    sampling_params sampling = {.temperature = 0.0f, .top_p = 1.0f, .top_k = 0, .seed = 42};
    const char *prompt = NULL, *prompt_file = NULL;
    int n_new = 64;
    ramp_error err;
    enum { TOKENIZER = 1000, TEMP, TOP_P, TOP_K, SEED, PIPELINE_FLAG };
    static const struct option long_options[] = {
        {"model", required_argument, 0, 'm'},  {"tokenizer", required_argument, 0, TOKENIZER},
        {"prompt", required_argument, 0, 'p'}, {"file", required_argument, 0, 'f'},
        {"tokens", required_argument, 0, 'n'}, {"temp", required_argument, 0, TEMP},
        {"top-p", required_argument, 0, TOP_P}, {"top-k", required_argument, 0, TOP_K},
        {"seed", required_argument, 0, SEED},  {"help", no_argument, 0, 'h'},
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

    pipeline p;
    int worker_status = 0;
    int opened = pipeline_open(&p, &options, &argc, &argv, &worker_status, &err);
    if (opened == 1) {
        prompt_list_free(&prompts);
        pipeline_close(&p);
        return worker_status;
    }
    int status = 0;
    if (opened < 0) {
        status = pipeline_fail(&p, "generate", &err);
        goto done;
    }
    for (int i = 0; i < prompts.count; i++) {
        sampling_params per_prompt = sampling;
        per_prompt.seed = sampling.seed + (uint64_t)i;
        int index;
        if (pipeline_submit_text(&p, prompts.texts[i], prompts.lengths[i], n_new, &per_prompt, &index, &err)) {
            ramp_fail_prefix(&err, "prompt %d: ", i + 1);
            status = pipeline_fail(&p, "generate", &err);
            goto done;
        }
    }
    if (pipeline_run(&p, &err) || pipeline_finish(&p, &err)) {
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
    pipeline_close(&p);
    return status;
}
