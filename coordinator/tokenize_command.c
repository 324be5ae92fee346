/* tokenize_command.c: `ramp tokenize`: the token ids a model's vocabulary gives a text, as the
 * engine would feed them to the model (for checking a file's tokenizer, and prompt lengths). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "commands.h"
#include "gguf.h"
#include "input_file.h"
#include "tokenizer.h"

static void tokenize_usage(FILE *out) {
    fprintf(out, "usage: ramp tokenize -m MODEL.gguf (-p TEXT | -f FILE) [--ids] [--no-bos]\n\n"
                 "Prints the tokens of TEXT (or of FILE's whole content) under the model's vocabulary and\n"
                 "pre-tokenizer (tokenizer.ggml.pre), one per line as `id -> 'piece'`; --ids prints only the\n"
                 "ids, as a list [1, 2, 3] (the form of llama.cpp's llama-tokenize --ids). BOS comes first\n"
                 "where the vocabulary asks for it, unless --no-bos. Reads only the vocabulary: any GGUF\n"
                 "model (the first file of a split one) or a vocabulary-only file.\n");
}

/* The most text tokenized at once: its ids take up to 12 bytes per text byte. */
static const input_limits TEXT_LIMITS = {.what = "text file", .max_bytes = 64 << 20, .max_line = 0, .allow_nul = true};

static void print_piece(const char *piece) {
    putchar('\'');
    for (const unsigned char *p = (const unsigned char *)piece; *p; p++) {
        if (*p == '\n') fputs("\\n", stdout);
        else if (*p == '\'' || *p == '\\') printf("\\%c", *p);
        else if (*p < 0x20 || *p == 0x7f) printf("\\x%02x", *p);
        else putchar(*p);
    }
    putchar('\'');
}

int command_tokenize(int argc, char **argv, transport *mpi) {
    (void)mpi;
    const char *model_path = NULL, *prompt = NULL, *prompt_file = NULL;
    bool ids_only = false, add_bos = true;
    ramp_error err;
    enum { IDS = 1000, NO_BOS };
    static const struct option long_options[] = {
        {"model", required_argument, 0, 'm'}, {"prompt", required_argument, 0, 'p'},
        {"file", required_argument, 0, 'f'}, {"ids", no_argument, 0, IDS},
        {"no-bos", no_argument, 0, NO_BOS}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0},
    };
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "m:p:f:h", long_options, NULL)) != -1) {
        switch (c) {
        case 'm': model_path = optarg; break;
        case 'p': prompt = optarg; break;
        case 'f': prompt_file = optarg; break;
        case IDS: ids_only = true; break;
        case NO_BOS: add_bos = false; break;
        case 'h': tokenize_usage(stdout); return 0;
        default: tokenize_usage(stderr); return 2;
        }
    }
    if (!model_path || !prompt == !prompt_file)
        return cli_usage_error("tokenize", cli_error(&err, "-m and one of -p or -f are required"));

    size_t len = 0;
    char *text = NULL;
    if (prompt) {
        if ((text = strdup(prompt))) len = strlen(text);
        else cli_error(&err, "out of memory");
    } else {
        input_file_read(prompt_file, &TEXT_LIMITS, &text, &len, &err);
    }
    if (!text) {
        fprintf(stderr, "ramp tokenize: %s\n", err.message);
        return 1;
    }
    gguf_file file;
    tokenizer *tok = NULL;
    int status = 1;
    if (gguf_open_single(&file, model_path, &err) == 0) {
        if (tokenizer_from_gguf(&tok, &file, &err)) tok = NULL;
        gguf_close(&file);
    }
    size_t capacity = 3 * len + 4, n = 0; /* always enough (tokenizer.h) */
    int *tokens = tok ? malloc(capacity * sizeof *tokens) : NULL;
    if (tok && !tokens) cli_error(&err, "out of memory for %zu token ids", capacity);
    if (tokens && tokenizer_encode(tok, text, len, add_bos, tokens, capacity, &n, &err) == 0) {
        if (ids_only) {
            putchar('[');
            for (size_t i = 0; i < n; i++) printf(i ? ", %d" : "%d", tokens[i]);
            puts("]");
        } else {
            for (size_t i = 0; i < n; i++) {
                printf("%6d -> ", tokens[i]);
                print_piece(tokenizer_piece(tok, tokens[i]));
                putchar('\n');
            }
        }
        status = fflush(stdout) == 0 ? 0 : 1;
        if (status) cli_error(&err, "cannot write the tokens to standard output");
    }
    if (status) fprintf(stderr, "ramp tokenize: %s\n", err.message);
    free(tokens);
    tokenizer_free(tok);
    free(text);
    return status;
}
