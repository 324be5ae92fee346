/* main.c: the `ramp` command: one binary, one subcommand per job. */
#include <stdio.h>
#include <string.h>

#include "commands.h"

static const struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} commands[] = {
    {"generate", command_generate, "continue prompts with a model (one process or an MPI pipeline)"},
    {"eval", command_eval, "accuracy, agreement and layers saved on a labelled set, with and without exit"},
    {"exit-train", command_exit_train, "train the AdaInfer SVM exit classifier (libsvm) on a labelled set"},
    {"exit-calibrate", command_exit_calibrate, "set LITE confidence thresholds per exit point"},
    {"synth", command_synth, "write a synthetic GGUF model with random weights (for benchmarks)"},
};

static void usage(FILE *out) {
    fprintf(out, "usage: ramp COMMAND [options]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(out, "\n`ramp COMMAND --help` describes a command's options.\n");
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "ramp: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
