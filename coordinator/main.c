/* main.c: the `ramp` command: one binary, one subcommand per job.
 *
 * Under mpirun/srun every rank runs this binary; ranks 1..P become pipeline stages whatever the
 * command line says (they take the job from rank 0's Setup), and rank 0 runs the command. */
#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "interrupt.h"
#include "pipeline.h"
#include "worker.h"

static const struct {
    const char *name;
    int (*run)(int argc, char **argv, transport *mpi);
    const char *summary;
} commands[] = {
    {"generate", command_generate, "continue prompts with a model (one process or an MPI pipeline)"},
    {"serve", command_serve, "an OpenAI-compatible HTTP server on the pipeline (continuous batching)"},
    {"batch", command_batch, "a JSONL file of OpenAI requests through the pipeline (resumable; Slurm-friendly)"},
    {"eval", command_eval, "accuracy, agreement and layers saved on a labelled set, with and without exit"},
    {"exit-train", command_exit_train, "train the AdaInfer SVM exit classifier (libsvm) on a labelled set"},
    {"exit-calibrate", command_exit_calibrate, "set LITE confidence thresholds per exit point"},
    {"nll", command_nll, "negative log-likelihood per token of held-out documents (layer-math changes)"},
    {"tokenize", command_tokenize, "the token ids of a text under a model's vocabulary (as llama-tokenize)"},
    {"synth", command_synth, "write a synthetic GGUF model with random weights (for benchmarks)"},
};

static void usage(FILE *out) {
    fprintf(out, "usage: ramp COMMAND [options]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(out, "  %-14s %s\n", commands[i].name, commands[i].summary);
    fprintf(out, "\n`ramp COMMAND --help` describes a command's options.\n");
}

static int run_command(int argc, char **argv, transport *mpi) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].run(argc - 1, argv + 1, mpi);
    fprintf(stderr, "ramp: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}

int main(int argc, char **argv) {
    interrupt_install();
    transport *mpi = NULL;
    if (transport_launched_by_mpi()) {
        ramp_error err;
        if (transport_open_mpi(&mpi, &argc, &argv, &err)) {
            fprintf(stderr, "ramp: %s\n", err.message);
            return 1;
        }
        if (transport_rank(mpi) != 0) {
            int status = worker_main(mpi);
            transport_close(mpi);
            return status;
        }
    }
    int status = run_command(argc, argv, mpi);
    if (mpi) {
        pipeline_release_workers(mpi); /* a command that set up no pipeline still ends the workers */
        transport_close(mpi);
    }
    return status;
}
