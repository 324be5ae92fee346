/* fuzz_llama2c.c: llama2.c checkpoints from outside: the 7-field header and the size it implies,
 * through model_load on the bytes as a file (whole model and a middle slice).
 * Properties: every header field is range-checked before a size is derived (UBSan would report
 * an overflow); a loaded checkpoint's weights lie inside the file; failures carry a clean
 * one-line message. Seeds: the shared checkpoints and their headers over short files. */
#include "fuzz.h"
#include "model.h"
#include "model_validate.h"

static void llama2c_fuzz_load(const char *path, const model_slice *slice) {
    model m;
    ramp_error err = {{0}};
    if (model_load(&m, path, slice, false, NULL, &err) != 0) {
        fuzz_require_clean_message(&err);
        return;
    }
    const model_config *c = &m.config;
    fuzz_require(c->dim <= MODEL_MAX_DIM && c->n_layers <= MODEL_MAX_LAYERS && c->vocab_size <= MODEL_MAX_VOCAB &&
                     c->context_length <= MODEL_MAX_CONTEXT,
                 "implausible configuration accepted");
    volatile float sink = 0;
    for (int l = m.slice.first_layer; l < m.slice.end_layer; l++)
        sink += fuzz_touch_matrix(&m.layers[l].w_up) + fuzz_touch_matrix(&m.layers[l].wv);
    sink += fuzz_touch_matrix(&m.output) + fuzz_touch_matrix(&m.token_embedding);
    if (m.output_norm) sink += m.output_norm[c->dim - 1];
    (void)sink;
    model_free(&m);
}

static int fuzz_llama2c(const uint8_t *data, size_t size) {
    char path[128];
    fuzz_scratch_path("model.bin", path, sizeof path);
    fuzz_write_file(path, data, size);
    llama2c_fuzz_load(path, NULL);
    const model_slice middle = {1, 2, false, true};
    llama2c_fuzz_load(path, &middle);
    model_config config;
    ramp_error err = {{0}};
    if (model_read_config(path, &config, &err) != 0) fuzz_require_clean_message(&err);
    return 0;
}

FUZZ_ENTRY(fuzz_llama2c)
