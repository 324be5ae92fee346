/* test_model_load.c: model_load on the shared models (GGUF and llama2.c, full and sliced,
 * F32/F16/Q8_0/Q4_0 and every type of synth256) and the forward building blocks rmsnorm and softmax.
 *
 * Shared models come from $RAMP_SHARED (default ../shared); tests that need them are skipped
 * when the folder is missing. */
#include <criterion/criterion.h>

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "forward.h"
#include "model.h"
#include "synth.h"
#include "quant.h"
#include "shared_files.h"

/* ---- helpers ------------------------------------------------------------------------------------ */

static void load_or_die(model *m, const char *path, const model_slice *slice) {
    ramp_error err = {{0}};
    int status = model_load(m, path, slice, false, NULL, &err);
    cr_assert_eq(status, 0, "model_load(%s): %s", path, err.message);
}

/* Floats of one layer's weights: two norms, wq and wo, wk and wv, gate, up and down. */
static size_t layer_floats(const model_config *c) {
    size_t dim = (size_t)c->dim, kv = (size_t)c->kv_dim, ffn = (size_t)c->ffn_dim;
    return 2 * dim + 2 * dim * dim + 2 * kv * dim + 3 * ffn * dim;
}

static bool layer_all_null(const layer_weights *w) {
    return !w->attn_norm && !w->wq.data && !w->wk.data && !w->wv.data && !w->wo.data && !w->ffn_norm &&
           !w->w_gate.data && !w->w_up.data && !w->w_down.data;
}

static bool layer_all_set(const layer_weights *w) {
    return w->attn_norm && w->wq.data && w->wk.data && w->wv.data && w->wo.data && w->ffn_norm && w->w_gate.data &&
           w->w_up.data && w->w_down.data;
}

/* The values of a stored matrix as fp32 (malloc'd; the caller frees). */
static float *matrix_values(const weight_matrix *w) {
    cr_assert_not_null(w->data);
    float *values = malloc((size_t)w->rows * w->cols * sizeof(float));
    cr_assert_not_null(values);
    cr_assert_eq(dequantize(w->type, w->data, values, (size_t)w->rows * w->cols), 0, "type %s",
                 ggml_type_name(w->type));
    return values;
}

/* Largest |a - b| over two stored matrices of the same shape, any types. */
static float matrix_diff(const weight_matrix *a, const weight_matrix *b) {
    cr_assert_eq(a->rows, b->rows);
    cr_assert_eq(a->cols, b->cols);
    float *va = matrix_values(a), *vb = matrix_values(b);
    float worst = 0.0f;
    for (size_t i = 0; i < (size_t)a->rows * a->cols; i++) {
        float d = fabsf(va[i] - vb[i]);
        if (!(d <= worst)) worst = d;
    }
    free(va);
    free(vb);
    return worst;
}

static float max_abs_diff(const float *a, const float *b, size_t n) {
    float worst = 0.0f;
    for (size_t i = 0; i < n; i++) {
        float d = fabsf(a[i] - b[i]);
        if (!(d <= worst)) worst = d; /* also catches NaN */
    }
    return worst;
}

static void assert_same_config(const model_config *a, const model_config *b, bool same_context, const char *what) {
    cr_assert_eq(a->dim, b->dim, "%s: dim %d vs %d", what, a->dim, b->dim);
    cr_assert_eq(a->n_layers, b->n_layers, "%s: layers %d vs %d", what, a->n_layers, b->n_layers);
    cr_assert_eq(a->n_heads, b->n_heads, "%s: heads %d vs %d", what, a->n_heads, b->n_heads);
    cr_assert_eq(a->n_kv_heads, b->n_kv_heads, "%s: kv heads %d vs %d", what, a->n_kv_heads, b->n_kv_heads);
    cr_assert_eq(a->head_dim, b->head_dim, "%s: head_dim %d vs %d", what, a->head_dim, b->head_dim);
    cr_assert_eq(a->kv_dim, b->kv_dim, "%s: kv_dim %d vs %d", what, a->kv_dim, b->kv_dim);
    cr_assert_eq(a->ffn_dim, b->ffn_dim, "%s: ffn %d vs %d", what, a->ffn_dim, b->ffn_dim);
    cr_assert_eq(a->vocab_size, b->vocab_size, "%s: vocab %d vs %d", what, a->vocab_size, b->vocab_size);
    if (same_context)
        cr_assert_eq(a->context_length, b->context_length, "%s: context %d vs %d", what, a->context_length,
                     b->context_length);
    cr_assert_eq(a->rope_dim, b->rope_dim, "%s: rope_dim %d vs %d", what, a->rope_dim, b->rope_dim);
    cr_assert_float_eq(a->rope_base, b->rope_base, 1e-3, "%s: rope base %g vs %g", what, a->rope_base,
                       b->rope_base);
    cr_assert_float_eq(a->rms_eps, b->rms_eps, 1e-9, "%s: rms eps %g vs %g", what, a->rms_eps, b->rms_eps);
}

/* ---- GGUF and llama2.c agree -------------------------------------------------------------------- */

Test(model_load, stories260K_gguf_and_bin_have_identical_config) {
    char gguf_path[4096], bin_path[4096];
    shared_file(gguf_path, sizeof gguf_path, "models/stories260K/stories260K-f32.gguf");
    shared_file(bin_path, sizeof bin_path, "models/stories260K/stories260K.bin");
    model g, b;
    load_or_die(&g, gguf_path, NULL);
    load_or_die(&b, bin_path, NULL);
    cr_assert_eq(g.format, MODEL_FORMAT_GGUF);
    cr_assert_eq(b.format, MODEL_FORMAT_LLAMA2C);
    /* The files disagree on one field: llama.cpp's converter wrote llama.context_length = 128, the
     * llama2.c header says seq_len 512. Everything else must match. */
    assert_same_config(&g.config, &b.config, false, "stories260K gguf vs bin");
    cr_assert_eq(g.config.context_length, 128, "GGUF llama.context_length is 128, got %d", g.config.context_length);
    cr_assert_eq(b.config.context_length, 512, "llama2.c seq_len is 512, got %d", b.config.context_length);
    /* The published shape of stories260K. */
    cr_assert_eq(g.config.dim, 64);
    cr_assert_eq(g.config.n_layers, 5);
    cr_assert_eq(g.config.n_heads, 8);
    cr_assert_eq(g.config.n_kv_heads, 4);
    cr_assert_eq(g.config.ffn_dim, 172);
    cr_assert_eq(g.config.vocab_size, 512);
    cr_assert_str_eq(g.weight_type, "f32");
    cr_assert_str_eq(b.weight_type, "f32");
    /* Same weights too: both are fp32 straight from the same checkpoint. */
    const model_config *c = &g.config;
    for (int l = 0; l < c->n_layers; l++) {
        cr_assert(layer_all_set(&g.layers[l]) && layer_all_set(&b.layers[l]), "layer %d not loaded", l);
        cr_assert_eq(matrix_diff(&g.layers[l].wq, &b.layers[l].wq), 0.0f, "layer %d wq", l);
        cr_assert_eq(matrix_diff(&g.layers[l].w_down, &b.layers[l].w_down), 0.0f, "layer %d w_down", l);
    }
    cr_assert_eq(matrix_diff(&g.token_embedding, &b.token_embedding), 0.0f);
    cr_assert_eq(max_abs_diff(g.output_norm, b.output_norm, (size_t)c->dim), 0.0f);
    cr_assert_eq(g.weight_bytes, b.weight_bytes, "weight bytes %zu vs %zu", g.weight_bytes, b.weight_bytes);
    size_t expected = (c->n_layers * layer_floats(c) + 2 * (size_t)c->vocab_size * c->dim + c->dim) * sizeof(float);
    cr_assert_eq(g.weight_bytes, expected, "full model weight bytes %zu, expected %zu", g.weight_bytes, expected);
    model_free(&g);
    model_free(&b);
}

Test(model_load, read_config_matches_load) {
    const char *files[] = {"models/stories260K/stories260K-f32.gguf", "models/stories260K/stories260K.bin",
                           "models/lite16/model-f32.gguf", "models/base16/model-q4_0.gguf"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char path[4096];
        shared_file(path, sizeof path, files[i]);
        model_config config;
        ramp_error err = {{0}};
        cr_assert_eq(model_read_config(path, &config, &err), 0, "model_read_config(%s): %s", path, err.message);
        model m;
        model_slice none = {0, 0, false, false};
        load_or_die(&m, path, &none);
        assert_same_config(&config, &m.config, true, files[i]);
        cr_assert_eq(m.weight_bytes, 0, "%s: an empty slice references %zu bytes", files[i], m.weight_bytes);
        model_free(&m);
    }
}

/* ---- slices ------------------------------------------------------------------------------------- */

static void check_middle_slice(const char *relative) {
    char path[4096];
    shared_file(path, sizeof path, relative);
    model m;
    model_slice slice = {.first_layer = 2, .end_layer = 4, .embedding = false, .head = false};
    load_or_die(&m, path, &slice);
    const model_config *c = &m.config;
    cr_assert_eq(c->n_layers, 16, "%s has %d layers", relative, c->n_layers);
    cr_assert_eq(m.slice.first_layer, 2);
    cr_assert_eq(m.slice.end_layer, 4);
    for (int l = 0; l < c->n_layers; l++) {
        if (l == 2 || l == 3) {
            cr_assert(layer_all_set(&m.layers[l]), "%s: layer %d of the slice has NULL weights", relative, l);
        } else {
            cr_assert_null(m.layers[l].wq.data, "%s: layer %d outside the slice has wq", relative, l);
            cr_assert(layer_all_null(&m.layers[l]), "%s: layer %d outside the slice has weights", relative, l);
        }
    }
    cr_assert_null(m.token_embedding.data, "%s: the slice did not ask for the embedding", relative);
    cr_assert_null(m.output.data, "%s: the slice did not ask for the head", relative);
    cr_assert_null(m.output_norm, "%s: the slice did not ask for the head", relative);
    size_t expected = 2 * layer_floats(c) * sizeof(float);
    cr_assert_eq(m.weight_bytes, expected, "%s: slice 2-3 references %zu bytes, expected 2 x %zu", relative,
                 m.weight_bytes, layer_floats(c) * sizeof(float));
    /* The slice is the same whether loaded alone or with the whole model. */
    model full;
    load_or_die(&full, path, NULL);
    cr_assert_eq(matrix_diff(&m.layers[3].wq, &full.layers[3].wq), 0.0f);
    cr_assert_eq(matrix_diff(&m.layers[2].w_up, &full.layers[2].w_up), 0.0f);
    cr_assert_gt(full.weight_bytes, m.weight_bytes);
    model_free(&full);
    model_free(&m);
}

Test(model_load, lite16_gguf_middle_slice) { check_middle_slice("models/lite16/model-f32.gguf"); }

Test(model_load, lite16_bin_middle_slice) { check_middle_slice("models/lite16/model.bin"); }

Test(model_load, first_and_last_slices_add_up_to_the_model) {
    char path[4096];
    shared_file(path, sizeof path, "models/lite16/model-f32.gguf");
    model first, last, full;
    model_slice a = {0, 7, true, false}, b = {7, -1, false, true};
    load_or_die(&first, path, &a);
    load_or_die(&last, path, &b);
    load_or_die(&full, path, NULL);
    const model_config *c = &full.config;
    cr_assert_eq(last.slice.end_layer, c->n_layers, "end_layer -1 means the last layer");
    cr_assert_not_null(first.token_embedding.data);
    cr_assert_null(first.output.data);
    cr_assert_not_null(last.output.data);
    cr_assert_not_null(last.output_norm);
    size_t embedding = (size_t)c->vocab_size * c->dim * sizeof(float);
    size_t head = ((size_t)c->vocab_size * c->dim + c->dim) * sizeof(float);
    size_t layer = layer_floats(c) * sizeof(float);
    cr_assert_eq(first.weight_bytes, 7 * layer + embedding);
    cr_assert_eq(last.weight_bytes, 9 * layer + head);
    cr_assert_eq(first.weight_bytes + last.weight_bytes, full.weight_bytes);
    model_free(&first);
    model_free(&last);
    model_free(&full);
}

Test(model_load, slice_out_of_range_fails_with_message) {
    char path[4096];
    shared_file(path, sizeof path, "models/stories260K/stories260K-f32.gguf");
    model m;
    ramp_error err = {{0}};
    model_slice slice = {3, 9, false, false};
    cr_assert_eq(model_load(&m, path, &slice, false, NULL, &err), -1);
    cr_assert_not_null(strstr(err.message, path), "message '%s' does not name the file", err.message);
    cr_assert_not_null(strstr(err.message, "layer"), "message '%s' does not mention layers", err.message);
}

/* ---- quantized files ---------------------------------------------------------------------------- */

/* Bytes of every tensor in the file: what a full load holds when the model uses them all. */
static size_t file_tensor_bytes(const gguf_file *f) {
    size_t total = 0;
    for (uint64_t i = 0; i < f->n_tensors; i++) total += f->tensors[i].n_bytes;
    return total;
}

/* The matrix lies in the file mapping, stored as the file stores it: nothing was expanded. */
static void assert_in_place(const model *m, const weight_matrix *w, const char *name) {
    const gguf_tensor *t = gguf_find_tensor(&m->gguf, name);
    cr_assert_not_null(t, "%s missing", name);
    cr_assert_eq(w->data, t->data, "%s: not read in place from the mapping", name);
    cr_assert_eq(w->type, t->type, "%s: held as %s, stored as %s", name, ggml_type_name(w->type),
                 ggml_type_name(t->type));
    cr_assert_eq(w->row_bytes * (size_t)w->rows, t->n_bytes, "%s: row bytes %zu", name, w->row_bytes);
}

static void check_quantized(const char *relative, const char *reference, const char *type, float tolerance) {
    char path[4096], f32_path[4096];
    shared_file(path, sizeof path, relative);
    shared_file(f32_path, sizeof f32_path, reference);
    model q, f;
    load_or_die(&q, path, NULL);
    load_or_die(&f, f32_path, NULL);
    assert_same_config(&q.config, &f.config, true, relative);
    cr_assert_eq(q.weight_bytes, file_tensor_bytes(&q.gguf), "%s: weight bytes %zu, the file's tensors %zu", relative,
                 q.weight_bytes, file_tensor_bytes(&q.gguf));
    cr_assert_lt(q.weight_bytes, f.weight_bytes, "%s: holds %zu bytes, no fewer than F32's %zu", relative,
                 q.weight_bytes, f.weight_bytes);
    assert_in_place(&q, &q.layers[0].wq, "blk.0.attn_q.weight");
    assert_in_place(&q, &q.layers[1].w_down, "blk.1.ffn_down.weight");
    assert_in_place(&q, &q.output, gguf_find_tensor(&q.gguf, "output.weight") ? "output.weight" : "token_embd.weight");
    const model_config *c = &f.config;
    float diff = matrix_diff(&q.layers[0].wq, &f.layers[0].wq);
    cr_assert_lt(diff, tolerance, "%s: layer-0 wq differs from F32 by up to %g (tolerance %g)", relative, diff,
                 tolerance);
    if (strcmp(type, "f16") != 0) cr_assert_gt(diff, 0.0f, "%s: identical to F32, not quantized?", relative);
    int last = c->n_layers - 1;
    float diff_last = matrix_diff(&q.layers[last].w_down, &f.layers[last].w_down);
    cr_assert_lt(diff_last, 4 * tolerance, "%s: last layer w_down differs by up to %g", relative, diff_last);
    /* The LM head: llama.cpp stores it as q8_0 in base16's Q4_0 file, q6_K in most of synth256's. */
    float diff_head = matrix_diff(&q.output, &f.output);
    cr_assert_lt(diff_head, 4 * tolerance, "%s: output head differs by up to %g", relative, diff_head);
    model_free(&q);
    model_free(&f);

    /* The layers alone (what a middle pipeline stage loads) are stored in the file's type. */
    model layers_only;
    model_slice slice = {0, -1, false, false};
    load_or_die(&layers_only, path, &slice);
    cr_assert_str_eq(layers_only.weight_type, type, "%s: layers' weight type %s, expected %s", relative,
                     layers_only.weight_type, type);
    model_free(&layers_only);
}

#define BASE16_F32 "models/base16/model-f32.gguf"
#define SYNTH_F32 "models/synth256/synth256-f32.gguf"
Test(model_load, base16_f16_close_to_f32) { check_quantized("models/base16/model-f16.gguf", BASE16_F32, "f16", 1e-3f); }
Test(model_load, base16_q8_0_close_to_f32) { check_quantized("models/base16/model-q8_0.gguf", BASE16_F32, "q8_0", 0.01f); }
Test(model_load, base16_q4_0_close_to_f32) { check_quantized("models/base16/model-q4_0.gguf", BASE16_F32, "q4_0", 0.05f); }
/* synth256 weights are uniform in +-1/16: the tolerances are a little over one quantization step
 * (a type-0 block saturates one side at 7/8 or 15/16 of its range); a bit in the wrong place would
 * be off by a good part of 1/16. */
Test(model_load, synth256_q8_0) { check_quantized("models/synth256/synth256-q8_0.gguf", SYNTH_F32, "q8_0", 0.001f); }
Test(model_load, synth256_q4_0) { check_quantized("models/synth256/synth256-q4_0.gguf", SYNTH_F32, "q4_0", 0.0085f); }
Test(model_load, synth256_q4_1) { check_quantized("models/synth256/synth256-q4_1.gguf", SYNTH_F32, "q4_1", 0.006f); }
Test(model_load, synth256_q5_0) { check_quantized("models/synth256/synth256-q5_0.gguf", SYNTH_F32, "q5_0", 0.0042f); }
Test(model_load, synth256_q5_1) { check_quantized("models/synth256/synth256-q5_1.gguf", SYNTH_F32, "q5_1", 0.003f); }
Test(model_load, synth256_q2_k) { check_quantized("models/synth256/synth256-q2_k.gguf", SYNTH_F32, "q2_K", 0.04f); }
Test(model_load, synth256_q3_k_m) { check_quantized("models/synth256/synth256-q3_k_m.gguf", SYNTH_F32, "q3_K", 0.02f); }
Test(model_load, synth256_q4_k_m) { check_quantized("models/synth256/synth256-q4_k_m.gguf", SYNTH_F32, "q4_K", 0.006f); }
Test(model_load, synth256_q5_k_m) { check_quantized("models/synth256/synth256-q5_k_m.gguf", SYNTH_F32, "q5_K", 0.0042f); }
Test(model_load, synth256_q6_k) { check_quantized("models/synth256/synth256-q6_k.gguf", SYNTH_F32, "q6_K", 0.0015f); }

/* ---- errors ------------------------------------------------------------------------------------- */

/* A copy of synth256-q4_0.gguf whose output.weight claims type iq2_xxs (its q6_K bytes are more
 * than an iq2_xxs tensor needs, so the file stays valid). Written to a temporary file. */
static void write_file_with_iq_head(char *out_path, size_t size) {
    char path[4096];
    shared_file(path, sizeof path, "models/synth256/synth256-q4_0.gguf");
    FILE *in = fopen(path, "rb");
    cr_assert_not_null(in);
    fseek(in, 0, SEEK_END);
    long length = ftell(in);
    fseek(in, 0, SEEK_SET);
    unsigned char *bytes = malloc((size_t)length);
    cr_assert_eq(fread(bytes, 1, (size_t)length, in), (size_t)length);
    fclose(in);
    /* directory entry: u64 name length | "output.weight" | u32 n_dims (2) | u64 dims[2] | u32 type */
    const char name[] = "output.weight";
    unsigned char *entry = NULL;
    for (long i = 8; i + (long)sizeof name < length && !entry; i++)
        if (memcmp(bytes + i, name, sizeof name - 1) == 0 && bytes[i - 8] == sizeof name - 1) entry = bytes + i;
    cr_assert_not_null(entry, "output.weight not found in %s", path);
    unsigned char *type = entry + (sizeof name - 1) + 4 + 16;
    cr_assert_eq(type[0], GGML_TYPE_Q6_K, "output.weight of %s is not q6_K", path);
    type[0] = GGML_TYPE_IQ2_XXS;
    snprintf(out_path, size, "%s/ramp-iq-head-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    int fd = mkstemp(out_path);
    cr_assert_geq(fd, 0);
    cr_assert_eq(write(fd, bytes, (size_t)length), length);
    close(fd);
    free(bytes);
}

Test(model_load, unsupported_type_fails_only_when_needed_and_names_it) {
    char path[4096];
    write_file_with_iq_head(path, sizeof path);
    model m;
    ramp_error err = {{0}};
    model_slice layers_only = {0, -1, true, false};
    int status = model_load(&m, path, &layers_only, false, NULL, &err);
    cr_expect_eq(status, 0, "a slice without the head should load: %s", err.message);
    if (status == 0) model_free(&m);
    status = model_load(&m, path, NULL, false, NULL, &err);
    unlink(path);
    cr_assert_eq(status, -1, "the head is iq2_xxs: loading it must fail");
    cr_assert_not_null(strstr(err.message, "tensor output.weight has type iq2_xxs"), "message: %s", err.message);
}

Test(model_load, missing_file_fails_with_path) {
    const char *path = "/nonexistent/ramp-test/model.gguf";
    model m;
    ramp_error err = {{0}};
    cr_assert_eq(model_load(&m, path, NULL, false, NULL, &err), -1);
    cr_assert_not_null(strstr(err.message, path), "message '%s' does not name the file", err.message);
    model_config config;
    ramp_error err2 = {{0}};
    cr_assert_eq(model_read_config(path, &config, &err2), -1);
    cr_assert_not_null(strstr(err2.message, path), "message '%s' does not name the file", err2.message);
}

Test(model_load, llama2c_without_tokenizer_path_fails_clearly) {
    char path[4096];
    shared_file(path, sizeof path, "models/stories260K/stories260K.bin");
    model m;
    ramp_error err = {{0}};
    cr_assert_eq(model_load(&m, path, NULL, true, NULL, &err), -1);
    cr_assert_not_null(strstr(err.message, "tokenizer"), "message '%s' does not mention the tokenizer", err.message);
}

Test(model_load, llama2c_with_tokenizer_and_gguf_tokenizer_agree_on_size) {
    char bin_path[4096], tok_path[4096], gguf_path[4096];
    shared_file(bin_path, sizeof bin_path, "models/stories260K/stories260K.bin");
    shared_file(tok_path, sizeof tok_path, "models/stories260K/tok512.bin");
    shared_file(gguf_path, sizeof gguf_path, "models/stories260K/stories260K-f32.gguf");
    model b, g;
    ramp_error err = {{0}};
    model_slice none = {0, 0, false, false};
    cr_assert_eq(model_load(&b, bin_path, &none, true, tok_path, &err), 0, "%s", err.message);
    cr_assert_eq(model_load(&g, gguf_path, &none, true, NULL, &err), 0, "%s", err.message);
    cr_assert_not_null(b.tokenizer);
    cr_assert_not_null(g.tokenizer);
    cr_assert_eq(tokenizer_vocab_size(b.tokenizer), 512);
    cr_assert_eq(tokenizer_vocab_size(g.tokenizer), 512);
    model_free(&b);
    model_free(&g);
}

/* ---- forward math ------------------------------------------------------------------------------- */

Test(forward_math, rmsnorm_of_a_known_vector) {
    const float x[4] = {1.0f, 2.0f, 3.0f, 4.0f};
    const float w[4] = {1.0f, 0.5f, 2.0f, -1.0f};
    float out[4];
    rmsnorm(out, x, w, 4, 0.0f);
    double scale = 1.0 / sqrt((1.0 + 4.0 + 9.0 + 16.0) / 4.0); /* 1 / sqrt(7.5) */
    for (int i = 0; i < 4; i++)
        cr_assert_float_eq(out[i], w[i] * x[i] * scale, 1e-6, "out[%d] = %g, expected %g", i, out[i],
                           w[i] * x[i] * scale);
    /* Epsilon is added to the mean square. */
    const float ones[4] = {1, 1, 1, 1};
    const float zero[4] = {0, 0, 0, 0};
    rmsnorm(out, zero, ones, 4, 1e-5f);
    for (int i = 0; i < 4; i++) cr_assert_eq(out[i], 0.0f);
    const float same[2] = {3.0f, 3.0f};
    rmsnorm(out, same, ones, 2, 7.0f); /* 3 / sqrt(9 + 7) = 0.75 */
    cr_assert_float_eq(out[0], 0.75f, 1e-6);
    cr_assert_float_eq(out[1], 0.75f, 1e-6);
}

Test(forward_math, rmsnorm_in_place) {
    float x[3] = {2.0f, -2.0f, 2.0f};
    const float w[3] = {1.0f, 1.0f, 1.0f};
    rmsnorm(x, x, w, 3, 0.0f);
    cr_assert_float_eq(x[0], 1.0f, 1e-6);
    cr_assert_float_eq(x[1], -1.0f, 1e-6);
    cr_assert_float_eq(x[2], 1.0f, 1e-6);
}

Test(forward_math, softmax_sums_to_one) {
    float x[7] = {0.5f, -3.0f, 2.0f, 0.0f, 1.0f, -0.25f, 4.0f};
    float copy[7];
    memcpy(copy, x, sizeof x);
    softmax(x, 7);
    double sum = 0.0;
    for (int i = 0; i < 7; i++) {
        cr_assert(x[i] > 0.0f && x[i] < 1.0f, "x[%d] = %g", i, x[i]);
        sum += x[i];
    }
    cr_assert_float_eq(sum, 1.0, 1e-6, "softmax sums to %g", sum);
    for (int i = 0; i < 7; i++)
        for (int j = 0; j < 7; j++)
            if (copy[i] < copy[j]) cr_assert_lt(x[i], x[j], "softmax is not monotonic");
    /* Known values: {0, ln 2} -> {1/3, 2/3}. */
    float pair[2] = {0.0f, logf(2.0f)};
    softmax(pair, 2);
    cr_assert_float_eq(pair[0], 1.0f / 3.0f, 1e-6);
    cr_assert_float_eq(pair[1], 2.0f / 3.0f, 1e-6);
}

Test(forward_math, softmax_is_stable_for_large_logits) {
    float x[3] = {1000.0f, 1001.0f, 1000.0f};
    softmax(x, 3);
    double e = exp(1.0);
    cr_assert_float_eq(x[1], e / (e + 2.0), 1e-6, "x[1] = %g", x[1]);
    cr_assert_float_eq(x[0], 1.0 / (e + 2.0), 1e-6);
    cr_assert_float_eq(x[0] + x[1] + x[2], 1.0f, 1e-6);
    float single[1] = {-50.0f};
    softmax(single, 1);
    cr_assert_float_eq(single[0], 1.0f, 1e-7);
}

Test(forward_math, matmul_matches_naive) {
    /* 2 rows x 3 inputs against a 4x3 weight: sgemm path; then 1 row: sgemv path. */
    const float x[6] = {1, 2, 3, -1, 0.5f, 2};
    const float w[12] = {1, 0, 0, 0, 1, 0, 0, 0, 1, 1, 1, 1};
    float out[8];
    matmul(out, x, w, 2, 3, 4);
    const float expected[8] = {1, 2, 3, 6, -1, 0.5f, 2, 1.5f};
    for (int i = 0; i < 8; i++) cr_assert_float_eq(out[i], expected[i], 1e-6, "out[%d] = %g", i, out[i]);
    matmul(out, x + 3, w, 1, 3, 4);
    for (int i = 0; i < 4; i++) cr_assert_float_eq(out[i], expected[4 + i], 1e-6, "row out[%d] = %g", i, out[i]);
}

/* Several tiles each way (300 rows: three row tiles; 1000 features: eight feature tiles, the last
 * narrower): the tiling covers every output once, the values match a double-precision product,
 * and they are bit-identical with 1, 2 and 3 threads. */
Test(forward_math, tiled_matmul_is_exact_and_independent_of_threads) {
    enum { ROWS = 300, IN = 96, OUT = 1000 };
    float *x = malloc(sizeof(float) * ROWS * IN), *w = malloc(sizeof(float) * OUT * IN);
    float *out[3];
    cr_assert(x && w);
    unsigned state = 12345;
    for (int i = 0; i < ROWS * IN; i++) x[i] = (float)((state = state * 1103515245u + 12345u) >> 16) / 65536.0f - 0.5f;
    for (int i = 0; i < OUT * IN; i++) w[i] = (float)((state = state * 1103515245u + 12345u) >> 16) / 65536.0f - 0.5f;
    for (int threads = 1; threads <= 3; threads++) {
        out[threads - 1] = malloc(sizeof(float) * ROWS * OUT);
        cr_assert(out[threads - 1]);
        for (int i = 0; i < ROWS * OUT; i++) out[threads - 1][i] = NAN; /* every element must be written */
        omp_set_num_threads(threads);
        matmul(out[threads - 1], x, w, ROWS, IN, OUT);
    }
    omp_set_num_threads(omp_get_num_procs());
    for (int r = 0; r < ROWS; r++)
        for (int o = 0; o < OUT; o++) {
            double expected = 0.0;
            for (int i = 0; i < IN; i++) expected += (double)x[r * IN + i] * w[o * IN + i];
            cr_assert_float_eq(out[0][r * OUT + o], expected, 1e-4, "row %d feature %d: %g, expected %g", r, o,
                               out[0][r * OUT + o], expected);
        }
    cr_assert_eq(memcmp(out[0], out[1], sizeof(float) * ROWS * OUT), 0, "2 threads round differently from 1");
    cr_assert_eq(memcmp(out[0], out[2], sizeof(float) * ROWS * OUT), 0, "3 threads round differently from 1");
    for (int i = 0; i < 3; i++) free(out[i]);
    free(x);
    free(w);
}

/* A qwen2 file (ramp synth --arch qwen2) loads with its own keys, RoPE over head halves and the
 * query, key and value biases as written; a llama file of the same shape has no biases. */
Test(model_load, qwen2_keys_rope_halves_and_biases) {
    synth_spec spec = {.dim = 64, .layers = 2, .heads = 4, .kv_heads = 2, .ffn = 96, .vocab = 300,
                       .context = 128, .type = GGML_TYPE_Q8_0, .seed = 3, .arch = SYNTH_QWEN2};
    char path[] = "/tmp/ramp-test-qwen2-XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    close(fd);
    ramp_error err = {{0}};
    cr_assert_eq(synth_write(&spec, path, &err), 0, "%s", err.message);
    model m;
    int status = model_load(&m, path, NULL, false, NULL, &err);
    cr_assert_eq(status, 0, "%s", err.message);
    cr_expect(m.config.rope_halves);
    cr_expect_float_eq(m.config.rope_base, 1e6f, 1.0f);
    cr_expect_float_eq(m.config.rms_eps, 1e-6f, 1e-12f);
    cr_expect_eq(m.config.n_kv_heads, 2);
    const int kv_dim = m.config.kv_dim;
    for (int l = 0; l < spec.layers; l++) {
        const struct { const char *suffix; int n; const float *loaded; } biases[] = {
            {"attn_q", spec.dim, m.layers[l].q_bias}, {"attn_k", kv_dim, m.layers[l].k_bias},
            {"attn_v", kv_dim, m.layers[l].v_bias}};
        for (int i = 0; i < 3; i++) {
            char name[64];
            snprintf(name, sizeof name, "blk.%d.%s.bias", l, biases[i].suffix);
            cr_assert_not_null(biases[i].loaded, "%s not loaded", name);
            float expected[64];
            cr_assert_eq(synth_tensor_values(&spec, name, expected, (size_t)biases[i].n, &err), 0, "%s", err.message);
            for (int j = 0; j < biases[i].n; j++)
                cr_assert_eq(biases[i].loaded[j], expected[j], "%s[%d] = %g, expected %g", name, j, biases[i].loaded[j],
                             expected[j]);
        }
    }
    model_free(&m);

    spec.arch = SYNTH_LLAMA;
    cr_assert_eq(synth_write(&spec, path, &err), 0, "%s", err.message);
    status = model_load(&m, path, NULL, false, NULL, &err);
    unlink(path);
    cr_assert_eq(status, 0, "%s", err.message);
    cr_expect(!m.config.rope_halves);
    cr_expect_null(m.layers[0].q_bias);
    cr_expect_null(m.layers[1].v_bias);
    model_free(&m);
}

/* Writes spec to a fresh temporary file (its name into path) and loads the whole model from it. */
static void synth_and_load(const synth_spec *spec, char path[64], model *m) {
    snprintf(path, 64, "/tmp/ramp-test-synth-XXXXXX");
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    close(fd);
    ramp_error err = {{0}};
    cr_assert_eq(synth_write(spec, path, &err), 0, "%s", err.message);
    cr_assert_eq(model_load(m, path, NULL, false, NULL, &err), 0, "%s", err.message);
}

/* A qwen3 file (ramp synth --arch qwen3) with heads wider than dim / heads, as Qwen3-0.6B has:
 * RoPE over head halves, no biases, and each layer's query and key head-norm weights as written. */
Test(model_load, qwen3_head_norms_and_own_head_size) {
    synth_spec spec = {.dim = 64, .layers = 2, .heads = 4, .kv_heads = 2, .ffn = 96, .vocab = 300,
                       .context = 128, .type = GGML_TYPE_Q8_0, .seed = 5, .arch = SYNTH_QWEN3, .head_size = 32};
    char path[64];
    model m;
    synth_and_load(&spec, path, &m);
    unlink(path);
    ramp_error err = {{0}};
    cr_expect(m.config.rope_halves);
    cr_expect(m.config.head_norms);
    cr_expect_eq(m.config.head_dim, 32);
    cr_expect_eq(m.config.q_dim, 128, "4 heads of 32 over an embedding of 64");
    cr_expect_eq(m.layers[1].wq.rows, 128);
    cr_expect_eq(m.layers[1].wo.cols, 128);
    for (int l = 0; l < spec.layers; l++) {
        cr_expect_null(m.layers[l].q_bias);
        const struct { const char *suffix; const float *loaded; } norms[] = {
            {"attn_q_norm", m.layers[l].q_norm}, {"attn_k_norm", m.layers[l].k_norm}};
        for (int i = 0; i < 2; i++) {
            char name[64];
            snprintf(name, sizeof name, "blk.%d.%s.weight", l, norms[i].suffix);
            cr_assert_not_null(norms[i].loaded, "%s not loaded", name);
            float expected[32];
            cr_assert_eq(synth_tensor_values(&spec, name, expected, 32, &err), 0, "%s", err.message);
            for (int j = 0; j < 32; j++)
                cr_assert_eq(norms[i].loaded[j], expected[j], "%s[%d] = %g, expected %g", name, j, norms[i].loaded[j],
                             expected[j]);
            cr_expect(expected[0] >= 0.5f && expected[0] < 1.5f, "head-norm weights around 1: %g", expected[0]);
        }
    }
    model_free(&m);
}

/* A phi3 file (ramp synth --arch phi3): the fused attn_qkv and ffn_up load in place, cut into the
 * query, key and value rows and the gate and up rows, and the weights figure counts each byte once. */
Test(model_load, phi3_fused_matrices_are_row_ranges_in_place) {
    synth_spec spec = {.dim = 64, .layers = 2, .heads = 4, .kv_heads = 2, .ffn = 96, .vocab = 300,
                       .context = 128, .type = GGML_TYPE_Q8_0, .seed = 5, .arch = SYNTH_PHI3};
    char path[64];
    model m;
    synth_and_load(&spec, path, &m);
    cr_expect(m.config.rope_halves);
    cr_expect(m.config.fused_gate_up);
    for (int l = 0; l < spec.layers; l++) {
        const layer_weights *w = &m.layers[l];
        const gguf_tensor *qkv = NULL, *up = NULL;
        char name[64];
        snprintf(name, sizeof name, "blk.%d.attn_qkv.weight", l);
        qkv = gguf_find_tensor(&m.gguf, name);
        snprintf(name, sizeof name, "blk.%d.ffn_up.weight", l);
        up = gguf_find_tensor(&m.gguf, name);
        cr_assert_not_null(qkv);
        cr_assert_not_null(up);
        const char *q = qkv->data, *g = up->data;
        cr_expect_eq((const char *)w->wq.data, q);
        cr_expect_eq((const char *)w->wk.data, q + (size_t)m.config.q_dim * w->wq.row_bytes);
        cr_expect_eq((const char *)w->wv.data, q + (size_t)(m.config.q_dim + m.config.kv_dim) * w->wq.row_bytes);
        cr_expect_eq(w->wq.rows, m.config.q_dim);
        cr_expect_eq(w->wk.rows, m.config.kv_dim);
        cr_expect_eq((const char *)w->w_gate.data, g, "the gate's rows come first");
        cr_expect_eq((const char *)w->w_up.data, g + (size_t)spec.ffn * w->w_gate.row_bytes);
        cr_expect_eq(w->w_up.rows, spec.ffn);
    }
    struct stat st;
    cr_assert_eq(stat(path, &st), 0);
    cr_expect_leq(m.weight_bytes, (size_t)st.st_size, "each fused matrix is counted once");
    unlink(path);
    model_free(&m);
}

/* The logits of token 5 at position 0, through the whole model. */
static void logits_of_one_token(const model *m, float *out) {
    ramp_error err = {{0}};
    const model_config *c = &m->config;
    kv_cache kv;
    cr_assert_eq(kv_cache_init(&kv, c->n_layers, c->n_kv_heads, c->head_dim, KV_F32, 1, &err), 0, "%s", err.message);
    cr_assert_eq(kv_slot_reserve(&kv, 0, 8, &err), 0, "%s", err.message);
    forward_workspace ws;
    cr_assert_eq(forward_workspace_init(&ws, c, 8, 8, &err), 0, "%s", err.message);
    int token = 5, slot = 0, position = 0;
    float *hidden = calloc((size_t)c->dim, sizeof(float));
    cr_assert_eq(forward_embed(m, &token, 1, hidden, &err), 0, "%s", err.message);
    forward_rows rows = {1, &slot, &position, NULL};
    cr_assert_eq(forward_layers(m, 0, c->n_layers, &kv, &rows, hidden, &ws, &err), 0, "%s", err.message);
    forward_logits(m, hidden, 1, out, &ws);
    free(hidden);
    forward_workspace_free(&ws);
    kv_cache_free(&kv);
}

/* A granite file's multipliers load as written, and its logits are those of the same file with
 * granite.logit_scale set to 1, divided by the scale (8: a power of two, so exactly). */
Test(model_load, granite_multipliers_and_logit_scale) {
    synth_spec spec = {.dim = 64, .layers = 2, .heads = 4, .kv_heads = 2, .ffn = 96, .vocab = 300,
                       .context = 128, .type = GGML_TYPE_F32, .seed = 5, .arch = SYNTH_GRANITE};
    char path[64], unscaled_path[80];
    model m, unscaled;
    synth_and_load(&spec, path, &m);
    cr_expect_float_eq(m.config.embedding_scale, 12.0f, 0.0f);
    cr_expect_float_eq(m.config.attention_scale, 0.0625f, 0.0f);
    cr_expect_float_eq(m.config.residual_scale, 0.22f, 0.0f);
    cr_expect_float_eq(m.config.logit_scale, 8.0f, 0.0f);
    /* the same bytes with the logit scale's value (after its key and 4-byte type) set to 1 */
    FILE *in = fopen(path, "rb");
    cr_assert_not_null(in);
    static unsigned char bytes[1 << 20];
    size_t n = fread(bytes, 1, sizeof bytes, in);
    fclose(in);
    cr_assert(n > 0 && n < sizeof bytes, "the file fits the buffer");
    const char key[] = "granite.logit_scale";
    unsigned char *at = memmem(bytes, n, key, sizeof key - 1);
    cr_assert_not_null(at);
    const float one = 1.0f;
    memcpy(at + sizeof key - 1 + 4, &one, sizeof one);
    snprintf(unscaled_path, sizeof unscaled_path, "%s-unscaled", path);
    FILE *out = fopen(unscaled_path, "wb");
    cr_assert_not_null(out);
    cr_assert_eq(fwrite(bytes, 1, n, out), n);
    fclose(out);
    ramp_error err = {{0}};
    cr_assert_eq(model_load(&unscaled, unscaled_path, NULL, false, NULL, &err), 0, "%s", err.message);
    cr_assert_float_eq(unscaled.config.logit_scale, 1.0f, 0.0f);
    float scaled_logits[300], plain_logits[300];
    logits_of_one_token(&m, scaled_logits);
    logits_of_one_token(&unscaled, plain_logits);
    for (int i = 0; i < 300; i++)
        cr_assert_eq(scaled_logits[i], plain_logits[i] * 0.125f, "logit %d: %g, expected %g / 8", i, scaled_logits[i],
                     plain_logits[i]);
    model_free(&m);
    model_free(&unscaled);
    unlink(path);
    unlink(unscaled_path);
}

/* A gemma3 file (ramp synth --arch gemma3): its sliding window and pattern (five local layers, then a
 * global one), the embedding scale sqrt(dim), the GELU gate and the norms after each block. */
Test(model_load, gemma3_window_pattern_and_norms) {
    synth_spec spec = {.dim = 64, .layers = 7, .heads = 4, .kv_heads = 2, .ffn = 96, .vocab = 300,
                       .context = 128, .type = GGML_TYPE_Q8_0, .seed = 5, .arch = SYNTH_GEMMA3};
    char path[64];
    model m;
    synth_and_load(&spec, path, &m);
    unlink(path);
    cr_expect_eq(m.config.sliding_window, 6);
    cr_expect(m.config.gelu && m.config.head_norms && m.config.rope_halves);
    cr_expect_float_eq(m.config.embedding_scale, 8.0f, 0.0f, "sqrt(64)");
    for (int l = 0; l < 7; l++) {
        cr_expect_eq(model_layer_window(&m.config, l), l == 5 ? 0 : 6, "layer %d", l);
        cr_expect_not_null(m.layers[l].attn_post_norm);
        cr_expect_not_null(m.layers[l].ffn_post_norm);
        cr_expect_not_null(m.layers[l].q_norm);
    }
    model_free(&m);
}

/* A gemma2 file (ramp synth --arch gemma2): every other layer local, no output matrix (the embedding
 * serves), its soft caps as written, and logits capped: within (-3, 3) and not all alike. */
Test(model_load, gemma2_pattern_caps_and_capped_logits) {
    synth_spec spec = {.dim = 64, .layers = 4, .heads = 4, .kv_heads = 2, .ffn = 96, .vocab = 300,
                       .context = 128, .type = GGML_TYPE_F32, .seed = 5, .arch = SYNTH_GEMMA2};
    char path[64];
    model m;
    synth_and_load(&spec, path, &m);
    unlink(path);
    cr_expect_float_eq(m.config.attention_softcap, 1.0f, 0.0f);
    cr_expect_float_eq(m.config.logit_softcap, 3.0f, 0.0f);
    for (int l = 0; l < 4; l++) cr_expect_eq(model_layer_window(&m.config, l), l % 2 == 0 ? 6 : 0, "layer %d", l);
    cr_expect_eq(m.output.data, m.token_embedding.data, "the embedding is the output matrix");
    float logits[300];
    logits_of_one_token(&m, logits);
    float lowest = logits[0], highest = logits[0];
    for (int i = 0; i < 300; i++) {
        cr_assert(logits[i] > -3.0f && logits[i] < 3.0f, "logit %d = %g, outside the cap of 3", i, logits[i]);
        lowest = fminf(lowest, logits[i]);
        highest = fmaxf(highest, logits[i]);
    }
    cr_expect_gt(highest - lowest, 0.01f);
    model_free(&m);
}
