/* synth_command.c: `ramp synth`: write a GGUF model of any shape with seeded random weights. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "commands.h"
#include "synth.h"

static void synth_usage(FILE *out) {
    fprintf(out, "usage: ramp synth -o FILE.gguf --dim D --layers L --heads H --kv-heads K --ffn F --vocab V\n"
                 "                  [--context C] [--type f32|f16|q8_0|q4_0] [--seed S] [--arch llama|qwen2|qwen3|phi3|granite|gemma|gemma2|gemma3]\n"
                 "                  [--head-size S] [--parts N]\n\n"
                 "Writes a valid llama-, qwen2-, qwen3-, phi3-, granite-, gemma-, gemma2- or gemma3-architecture GGUF with\n"
                 "seeded random weights (for benchmarks and tests); qwen2 adds the query, key and value biases, qwen3 the query\n"
                 "and key head norms, phi3 fuses the query, key and value matrices and the gate and up ones,\n"
                 "granite sets Granite's multipliers, gemma writes Gemma's layout, gemma2 and gemma3 Gemma's norms\n"
                 "after each block and a sliding window of 6 (gemma2 with soft caps).\n"
                 "--head-size S gives the heads their own size (attention.key_length) instead of\n"
                 "dim / heads. --parts N writes the model as N files, as llama.cpp's gguf-split does:\n"
                 "FILE-00001-of-0000N.gguf, ... (open the first one).\n"
                 "Defaults: context 2048, type f32, seed 1; kv-heads defaults to heads.\n");
}

int command_synth(int argc, char **argv, transport *mpi) {
    synth_spec spec = {.context = 2048, .type = GGML_TYPE_F32, .seed = 1};
    const char *output = NULL;
    ramp_error err;
    enum { DIM = 1000, LAYERS, HEADS, KV_HEADS, FFN, VOCAB, CONTEXT, TYPE, SEED, ARCH, PARTS, HEAD_SIZE };
    static const struct option long_options[] = {
        {"output", required_argument, 0, 'o'}, {"dim", required_argument, 0, DIM},
        {"layers", required_argument, 0, LAYERS}, {"heads", required_argument, 0, HEADS},
        {"kv-heads", required_argument, 0, KV_HEADS}, {"ffn", required_argument, 0, FFN},
        {"vocab", required_argument, 0, VOCAB}, {"context", required_argument, 0, CONTEXT},
        {"type", required_argument, 0, TYPE}, {"seed", required_argument, 0, SEED},
        {"arch", required_argument, 0, ARCH}, {"parts", required_argument, 0, PARTS},
        {"head-size", required_argument, 0, HEAD_SIZE},
        {"help", no_argument, 0, 'h'}, {0, 0, 0, 0},
    };
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "o:h", long_options, NULL)) != -1) {
        int bad = 0;
        switch (c) {
        case 'o': output = optarg; break;
        case DIM: bad = cli_parse_int("--dim", optarg, 1, 1 << 16, &spec.dim, &err); break;
        case LAYERS: bad = cli_parse_int("--layers", optarg, 1, 1024, &spec.layers, &err); break;
        case HEADS: bad = cli_parse_int("--heads", optarg, 1, 1024, &spec.heads, &err); break;
        case KV_HEADS: bad = cli_parse_int("--kv-heads", optarg, 1, 1024, &spec.kv_heads, &err); break;
        case FFN: bad = cli_parse_int("--ffn", optarg, 1, 1 << 18, &spec.ffn, &err); break;
        case VOCAB: bad = cli_parse_int("--vocab", optarg, 1, 1 << 22, &spec.vocab, &err); break;
        case CONTEXT: bad = cli_parse_int("--context", optarg, 2, 1 << 20, &spec.context, &err); break;
        case SEED: bad = cli_parse_u64("--seed", optarg, &spec.seed, &err); break;
        case PARTS: bad = cli_parse_int("--parts", optarg, 1, 65535, &spec.parts, &err); break;
        case HEAD_SIZE: bad = cli_parse_int("--head-size", optarg, 2, 4096, &spec.head_size, &err); break;
        case TYPE:
            if (!strcmp(optarg, "f32")) spec.type = GGML_TYPE_F32;
            else if (!strcmp(optarg, "f16")) spec.type = GGML_TYPE_F16;
            else if (!strcmp(optarg, "q8_0")) spec.type = GGML_TYPE_Q8_0;
            else if (!strcmp(optarg, "q4_0")) spec.type = GGML_TYPE_Q4_0;
            else bad = -1, cli_error(&err, "--type expects f32, f16, q8_0 or q4_0, got '%s'", optarg);
            break;
        case ARCH:
            if (synth_arch_named(optarg) >= 0) spec.arch = (synth_arch)synth_arch_named(optarg);
            else bad = -1, cli_error(&err, "--arch expects llama, qwen2, qwen3, phi3, granite, gemma, gemma2 or gemma3, got '%s'", optarg);
            break;
        case 'h': synth_usage(stdout); return 0;
        default: synth_usage(stderr); return 2;
        }
        if (bad) return cli_usage_error("synth", &err);
    }
    if (spec.kv_heads == 0) spec.kv_heads = spec.heads;
    if (!output || !spec.dim || !spec.layers || !spec.heads || !spec.ffn || !spec.vocab)
        return cli_usage_error("synth", cli_error(&err, "-o, --dim, --layers, --heads, --ffn and --vocab are required"));
    if (synth_validate(&spec, &err)) return cli_usage_error("synth", &err);
    if (synth_write(&spec, output, &err)) {
        fprintf(stderr, "ramp synth: %s\n", err.message);
        return 1;
    }
    return 0;
}
