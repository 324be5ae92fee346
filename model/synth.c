/* synth.c: synthetic llama GGUF models (see synth.h).
 *
 * The tensor list is computed, not stored: describe_tensor(spec, i) gives the name and shape of
 * tensor i, and the writer, the declarations and synth_tensor_values all walk the same list. Each
 * tensor's random stream is seeded from (seed, name), so its values do not depend on the order
 * tensors are written in or on how they are chunked.
 */
#include "synth.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf_split.h"
#include "gguf_writer.h"
#include "quant.h"

#define N_SPECIAL_TOKENS 3 /* <unk>, <s>, </s> */
#define FIRST_FILLER_TOKEN (N_SPECIAL_TOKENS + 256)
#define PIECE_BYTES 16             /* longest piece: U+2581 (3 bytes) + 7 letters + NUL */
#define CHUNK_ELEMENTS (1u << 20) /* values generated per write; bounds memory for any model size */

/* Token types as llama.cpp numbers them. */
enum { TOKEN_NORMAL = 1, TOKEN_UNKNOWN = 2, TOKEN_CONTROL = 3, TOKEN_BYTE = 6 };

static const char *const LAYER_TENSORS[] = {"attn_norm", "attn_q",   "attn_k", "attn_v",  "attn_output",
                                            "ffn_norm",  "ffn_gate", "ffn_up", "ffn_down"};
#define WEIGHTS_PER_LAYER (sizeof LAYER_TENSORS / sizeof LAYER_TENSORS[0])
static const char *const LAYER_BIASES[] = {"attn_q", "attn_k", "attn_v"}; /* Qwen2 */
#define BIASES_PER_LAYER (sizeof LAYER_BIASES / sizeof LAYER_BIASES[0])
static const char *const LAYER_HEAD_NORMS[] = {"attn_q_norm", "attn_k_norm"}; /* Qwen3 */
#define HEAD_NORMS_PER_LAYER (sizeof LAYER_HEAD_NORMS / sizeof LAYER_HEAD_NORMS[0])
/* Gemma 3: the head norms, then the norms after attention and after the feed-forward */
static const char *const GEMMA3_LAYER_NORMS[] = {"attn_q_norm", "attn_k_norm", "post_attention_norm", "post_ffw_norm"};
#define GEMMA3_NORMS_PER_LAYER (sizeof GEMMA3_LAYER_NORMS / sizeof GEMMA3_LAYER_NORMS[0])
/* Gemma 2: Gemma 3's without the head norms */
#define GEMMA2_NORMS_PER_LAYER (GEMMA3_NORMS_PER_LAYER - 2)
enum { GEMMA3_SLIDING_WINDOW = 6 }; /* short, so that short prompts reach past it */
/* Phi-3: the query, key and value matrices in one, and the gate and up matrices in another */
static const char *const PHI3_LAYER_TENSORS[] = {"attn_norm", "attn_qkv", "attn_output", "ffn_norm", "ffn_up", "ffn_down"};
#define PHI3_TENSORS_PER_LAYER (sizeof PHI3_LAYER_TENSORS / sizeof PHI3_LAYER_TENSORS[0])

typedef struct {
    char name[64];
    uint32_t n_dims;
    uint64_t dims[2]; /* dims[0] = row length (input size), dims[1] = rows (output size) */
    bool is_norm, is_bias, is_head_norm;
} tensor_desc;

/* A layer's tensors after its weights: Qwen2's biases, or Qwen3's head norms. */
static size_t extras_per_layer(const synth_spec *s) {
    return s->arch == SYNTH_QWEN2   ? BIASES_PER_LAYER
           : s->arch == SYNTH_QWEN3  ? HEAD_NORMS_PER_LAYER
           : s->arch == SYNTH_GEMMA3 ? GEMMA3_NORMS_PER_LAYER
           : s->arch == SYNTH_GEMMA2 ? GEMMA2_NORMS_PER_LAYER
                                     : 0;
}
static size_t tensors_per_layer(const synth_spec *s) {
    return s->arch == SYNTH_PHI3 ? PHI3_TENSORS_PER_LAYER : WEIGHTS_PER_LAYER + extras_per_layer(s);
}

static size_t tensor_count(const synth_spec *s);
static int head_size(const synth_spec *s);

static const char *const ARCH_NAMES[SYNTH_ARCHS] = {"llama",  "qwen2",  "qwen3", "phi3", "granite",
                                                     "gemma3", "gemma2", "gemma"};

const char *synth_arch_name(synth_arch arch) { return (unsigned)arch < SYNTH_ARCHS ? ARCH_NAMES[arch] : "unknown"; }

int synth_arch_named(const char *name) {
    for (int a = 0; a < SYNTH_ARCHS; a++)
        if (strcmp(name, ARCH_NAMES[a]) == 0) return a;
    return -1;
}

int synth_validate(const synth_spec *s, ramp_error *err) {
    const struct { const char *name; int value; } sizes[] = {
        {"dim", s->dim}, {"layers", s->layers}, {"heads", s->heads}, {"kv_heads", s->kv_heads},
        {"ffn", s->ffn}, {"vocab", s->vocab},   {"context", s->context},
    };
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
        if (sizes[i].value <= 0)
            return ramp_fail(err, "synthetic model: %s is %d, expected a positive number", sizes[i].name,
                             sizes[i].value);
    if ((unsigned)s->arch >= SYNTH_ARCHS) return ramp_fail(err, "synthetic model: architecture %d is unknown", (int)s->arch);
    if (s->head_size == 0 && s->dim % s->heads != 0)
        return ramp_fail(err, "synthetic model: dim %d is not a multiple of heads %d", s->dim, s->heads);
    if (s->head_size < 0 || s->head_size > 4096 || (long)s->head_size * s->heads > (1L << 16))
        return ramp_fail(err, "synthetic model: head size %d for %d heads, expected 0 (dim / heads) or up to 4096 "
                              "and 65536 in all", s->head_size, s->heads);
    if (s->heads % s->kv_heads != 0)
        return ramp_fail(err, "synthetic model: heads %d is not a multiple of kv_heads %d", s->heads, s->kv_heads);
    if (head_size(s) % 2 != 0)
        return ramp_fail(err, "synthetic model: head size %d is odd, expected even for RoPE", head_size(s));
    if (s->vocab < FIRST_FILLER_TOKEN)
        return ramp_fail(err, "synthetic model: vocab %d is too small, expected at least %d (3 special tokens and "
                              "256 byte tokens)", s->vocab, FIRST_FILLER_TOKEN);
    if (s->type != GGML_TYPE_F32 && s->type != GGML_TYPE_F16 && s->type != GGML_TYPE_Q8_0 && s->type != GGML_TYPE_Q4_0)
        return ramp_fail(err, "synthetic model: weight type %s is not supported, expected f32, f16, q8_0 or q4_0",
                         ggml_type_name(s->type));
    int block = (int)ggml_type_block_elements(s->type);
    if (s->dim % block != 0 || s->ffn % block != 0)
        return ramp_fail(err, "synthetic model: dim %d and ffn %d must be multiples of %d for %s weights", s->dim,
                         s->ffn, block, ggml_type_name(s->type));
    if (s->parts < 0 || (size_t)s->parts > tensor_count(s) || s->parts > UINT16_MAX)
        return ramp_fail(err, "synthetic model: %d parts for %zu tensors, expected 1 to %zu", s->parts,
                         tensor_count(s), tensor_count(s) < UINT16_MAX ? tensor_count(s) : (size_t)UINT16_MAX);
    return 0;
}

/* ---- the tensor list ----------------------------------------------------------------------------- */

/* token_embd, output_norm and output; Gemma and Gemma 2 have no output (llama.cpp reads the embedding for it,
 * and refuses a file with one more tensor than it reads). */
static size_t model_tensors(const synth_spec *s) { return s->arch == SYNTH_GEMMA2 || s->arch == SYNTH_GEMMA ? 2 : 3; }

static size_t tensor_count(const synth_spec *s) { return model_tensors(s) + (size_t)s->layers * tensors_per_layer(s); }

static int head_size(const synth_spec *s) { return s->head_size > 0 ? s->head_size : s->dim / s->heads; }

static void set_shape(tensor_desc *t, uint64_t row_length, uint64_t rows) {
    t->n_dims = rows == 1 ? 1 : 2;
    t->dims[0] = row_length;
    t->dims[1] = rows;
    t->is_norm = rows == 1;
}

/* Tensor i in file order: token_embd, output_norm, output, then blk.0.* .. blk.(layers-1).*. */
static void describe_tensor(const synth_spec *s, size_t index, tensor_desc *t) {
    uint64_t dim = (uint64_t)s->dim, ffn = (uint64_t)s->ffn, vocab = (uint64_t)s->vocab;
    uint64_t head = (uint64_t)head_size(s), q_dim = head * (uint64_t)s->heads, kv_dim = head * (uint64_t)s->kv_heads;
    memset(t, 0, sizeof *t);
    if (index < model_tensors(s)) {
        static const char *const names[] = {"token_embd.weight", "output_norm.weight", "output.weight"};
        snprintf(t->name, sizeof t->name, "%s", names[index]);
        set_shape(t, dim, index == 1 ? 1 : vocab);
        return;
    }
    const size_t in_layers = index - model_tensors(s);
    size_t layer = in_layers / tensors_per_layer(s), kind = in_layers % tensors_per_layer(s);
    if (s->arch == SYNTH_PHI3) {
        snprintf(t->name, sizeof t->name, "blk.%zu.%s.weight", layer, PHI3_LAYER_TENSORS[kind]);
        switch (kind) {
        case 0: case 3: set_shape(t, dim, 1); break;                 /* attn_norm, ffn_norm */
        case 1: set_shape(t, dim, q_dim + 2 * kv_dim); break;        /* attn_qkv: query, key, value rows */
        case 2: set_shape(t, q_dim, dim); break;                     /* attn_output */
        case 4: set_shape(t, dim, 2 * ffn); break;                   /* ffn_up: gate rows, then up rows */
        default: set_shape(t, ffn, dim); break;                      /* ffn_down */
        }
        return;
    }
    if (kind >= WEIGHTS_PER_LAYER && (s->arch == SYNTH_QWEN3 || s->arch == SYNTH_GEMMA3 || s->arch == SYNTH_GEMMA2)) {
        /* head norms [head size]; Gemma's norms after attention and feed-forward [dim] */
        const size_t extra = kind - WEIGHTS_PER_LAYER + (s->arch == SYNTH_GEMMA2 ? 2 : 0);
        snprintf(t->name, sizeof t->name, "blk.%zu.%s.weight", layer,
                 s->arch == SYNTH_QWEN3 ? LAYER_HEAD_NORMS[extra] : GEMMA3_LAYER_NORMS[extra]);
        set_shape(t, extra < 2 ? head : dim, 1);
        t->is_norm = false;
        t->is_head_norm = true;
        return;
    }
    if (kind >= WEIGHTS_PER_LAYER) { /* Qwen2's biases: [q_dim] for the query, [kv_dim] for key and value */
        snprintf(t->name, sizeof t->name, "blk.%zu.%s.bias", layer, LAYER_BIASES[kind - WEIGHTS_PER_LAYER]);
        set_shape(t, kind == WEIGHTS_PER_LAYER ? q_dim : kv_dim, 1);
        t->is_norm = false;
        t->is_bias = true;
        return;
    }
    snprintf(t->name, sizeof t->name, "blk.%zu.%s.weight", layer, LAYER_TENSORS[kind]);
    switch (kind) {
    case 0: case 5: set_shape(t, dim, 1); break;          /* attn_norm, ffn_norm */
    case 1: set_shape(t, dim, q_dim); break;              /* attn_q */
    case 4: set_shape(t, q_dim, dim); break;              /* attn_output */
    case 2: case 3: set_shape(t, dim, kv_dim); break;     /* attn_k, attn_v */
    case 6: case 7: set_shape(t, dim, ffn); break;        /* ffn_gate, ffn_up */
    default: set_shape(t, ffn, dim); break;               /* ffn_down */
    }
}

static ggml_type storage_type(const synth_spec *s, const tensor_desc *t) {
    return t->n_dims == 1 ? GGML_TYPE_F32 : s->type;
}

/* ---- random values --------------------------------------------------------------------------------- */

typedef struct {
    uint64_t state; /* xorshift64*, never 0 */
    float scale, offset; /* values: offset + uniform in +-scale */
    bool ones;      /* norm weights are all 1 */
} value_stream;

static uint64_t splitmix64(uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static value_stream stream_for(const synth_spec *s, const tensor_desc *t) {
    uint64_t hash = 0xcbf29ce484222325ull; /* FNV-1a of the name */
    for (const char *c = t->name; *c; c++) hash = (hash ^ (unsigned char)*c) * 0x100000001b3ull;
    value_stream v = {.state = splitmix64(s->seed ^ hash), .ones = t->is_norm};
    v.scale = t->is_bias || t->is_head_norm ? 0.5f : 1.0f / sqrtf((float)t->dims[0]);
    v.offset = t->is_head_norm ? 1.0f : 0.0f; /* weights in [0.5, 1.5): a reader that skipped them differs */
    if (v.state == 0) v.state = 1;
    return v;
}

static void fill_values(value_stream *v, float *out, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (v->ones) {
            out[i] = 1.0f;
            continue;
        }
        v->state ^= v->state >> 12;
        v->state ^= v->state << 25;
        v->state ^= v->state >> 27;
        uint64_t r = v->state * 0x2545f4914f6cdd1dull;
        float unit = (float)(r >> 40) / 16777216.0f; /* 24 random bits -> [0, 1) */
        out[i] = v->offset + (2.0f * unit - 1.0f) * v->scale;
    }
}

int synth_tensor_values(const synth_spec *spec, const char *name, float *out, size_t n, ramp_error *err) {
    if (synth_validate(spec, err)) return -1;
    for (size_t i = 0; i < tensor_count(spec); i++) {
        tensor_desc t;
        describe_tensor(spec, i, &t);
        if (strcmp(t.name, name) != 0) continue;
        uint64_t elements = t.dims[0] * t.dims[1];
        if (n != elements)
            return ramp_fail(err, "synthetic model: tensor %s has %llu elements, caller asked for %zu", name,
                             (unsigned long long)elements, n);
        value_stream v = stream_for(spec, &t);
        fill_values(&v, out, n);
        return 0;
    }
    return ramp_fail(err, "synthetic model: no tensor named %s", name);
}

/* ---- writing ------------------------------------------------------------------------------------------ */

static void convert(ggml_type type, const float *src, void *dst, size_t n) {
    switch (type) {
    case GGML_TYPE_F16: quantize_f16(src, dst, n); break;
    case GGML_TYPE_Q8_0: quantize_q8_0(src, dst, n); break;
    case GGML_TYPE_Q4_0: quantize_q4_0(src, dst, n); break;
    default: memcpy(dst, src, n * sizeof(float)); break; /* F32 (validated) */
    }
}

/* Generates, converts and writes one tensor a chunk of rows at a time. */
static int write_tensor(gguf_writer *w, const synth_spec *s, const tensor_desc *t, ramp_error *err) {
    ggml_type type = storage_type(s, t);
    uint64_t row = t->dims[0], rows = t->dims[1];
    uint64_t row_bytes = row / ggml_type_block_elements(type) * ggml_type_block_bytes(type);
    uint64_t chunk_rows = CHUNK_ELEMENTS / row ? CHUNK_ELEMENTS / row : 1;
    if (chunk_rows > rows) chunk_rows = rows;
    float *values = malloc(chunk_rows * row * sizeof *values);
    void *bytes = malloc(chunk_rows * row_bytes);
    int rc = 0;
    if (values == NULL || bytes == NULL) rc = ramp_fail(err, "synthetic model: out of memory writing %s", t->name);
    value_stream v = stream_for(s, t);
    for (uint64_t done = 0; rc == 0 && done < rows; done += chunk_rows) {
        uint64_t n_rows = rows - done < chunk_rows ? rows - done : chunk_rows;
        fill_values(&v, values, n_rows * row);
        convert(type, values, bytes, n_rows * row);
        rc = gguf_writer_write_data(w, bytes, n_rows * row_bytes, err);
    }
    free(values);
    free(bytes);
    return rc;
}

/* Tensors [from, to) of the model, in the order they are declared and written. */
static int declare_tensors(gguf_writer *w, const synth_spec *s, size_t from, size_t to, ramp_error *err) {
    for (size_t i = from; i < to; i++) {
        tensor_desc t;
        describe_tensor(s, i, &t);
        if (gguf_writer_add_tensor(w, t.name, t.n_dims, t.dims, storage_type(s, &t), err)) return -1;
    }
    return 0;
}

static int write_tensors(gguf_writer *w, const synth_spec *s, size_t from, size_t to, ramp_error *err) {
    for (size_t i = from; i < to; i++) {
        tensor_desc t;
        describe_tensor(s, i, &t);
        if (write_tensor(w, s, &t, err)) return -1;
    }
    return 0;
}

/* llama.cpp's general.file_type numbers: ALL_F32 0, MOSTLY_F16 1, MOSTLY_Q4_0 2, MOSTLY_Q8_0 7. */
static uint32_t file_type(ggml_type type) {
    switch (type) {
    case GGML_TYPE_F16: return 1;
    case GGML_TYPE_Q4_0: return 2;
    case GGML_TYPE_Q8_0: return 7;
    default: return 0;
    }
}

static int add_hyperparameters(gguf_writer *w, const synth_spec *s, ramp_error *err) {
    const char *arch = synth_arch_name(s->arch);
    const bool gemma = s->arch == SYNTH_GEMMA2 || s->arch == SYNTH_GEMMA3; /* the windowed ones */
    const bool qwen = s->arch == SYNTH_QWEN2 || s->arch == SYNTH_QWEN3 || gemma || s->arch == SYNTH_GEMMA;
    char key[64];
#define KEY(suffix) (snprintf(key, sizeof key, "%s.%s", arch, suffix), key)
    int failed = gguf_writer_add_string(w, "general.architecture", arch, err) ||
           gguf_writer_add_string(w, "general.name", "synthetic", err) ||
           gguf_writer_add_u32(w, "general.file_type", file_type(s->type), err) ||
           gguf_writer_add_u32(w, KEY("block_count"), (uint32_t)s->layers, err) ||
           gguf_writer_add_u32(w, KEY("context_length"), (uint32_t)s->context, err) ||
           gguf_writer_add_u32(w, KEY("embedding_length"), (uint32_t)s->dim, err) ||
           gguf_writer_add_u32(w, KEY("feed_forward_length"), (uint32_t)s->ffn, err) ||
           gguf_writer_add_u32(w, KEY("attention.head_count"), (uint32_t)s->heads, err) ||
           gguf_writer_add_u32(w, KEY("attention.head_count_kv"), (uint32_t)s->kv_heads, err) ||
           gguf_writer_add_u32(w, KEY("rope.dimension_count"), (uint32_t)head_size(s), err) ||
           (s->head_size > 0 && (gguf_writer_add_u32(w, KEY("attention.key_length"), (uint32_t)s->head_size, err) ||
                                 gguf_writer_add_u32(w, KEY("attention.value_length"), (uint32_t)s->head_size, err))) ||
           /* Qwen2's own base, so that a reader that ignored the key would rotate visibly differently */
           gguf_writer_add_f32(w, KEY("rope.freq_base"), qwen ? 1000000.0f : 10000.0f, err) ||
           gguf_writer_add_f32(w, KEY("attention.layer_norm_rms_epsilon"), qwen ? 1e-6f : 1e-5f, err) ||
           /* Granite 3.0 2B's multipliers, but the attention's, which stands apart from 1 / sqrt(head size) */
           (gemma && gguf_writer_add_u32(w, KEY("attention.sliding_window"), GEMMA3_SLIDING_WINDOW, err)) ||
           /* soft caps low enough to change the attention (Gemma 2 2B's are 50 and 30) */
           (s->arch == SYNTH_GEMMA2 && (gguf_writer_add_f32(w, KEY("attn_logit_softcapping"), 1.0f, err) ||
                                        gguf_writer_add_f32(w, KEY("final_logit_softcapping"), 3.0f, err))) ||
           (s->arch == SYNTH_GRANITE && (gguf_writer_add_f32(w, KEY("embedding_scale"), 12.0f, err) ||
                           gguf_writer_add_f32(w, KEY("attention.scale"), 0.0625f, err) ||
                           gguf_writer_add_f32(w, KEY("residual_scale"), 0.22f, err) ||
                           gguf_writer_add_f32(w, KEY("logit_scale"), 8.0f, err)));
#undef KEY
    return failed ? -1 : 0;
}

/* Filler piece k: even k start with the word marker U+2581; the letters count a, b, .., z, aa, ab, ..
 * (bijective base 26) in k / 2, so every piece is distinct. */
static void filler_piece(size_t k, char out[PIECE_BYTES]) {
    char letters[8];
    size_t n_letters = 0, pos = 0;
    for (size_t n = k / 2 + 1; n > 0; n /= 26) {
        n--; /* bijective: digits run 1..26, stored as 'a'..'z' */
        letters[n_letters++] = (char)('a' + n % 26);
    }
    if (k % 2 == 0) {
        memcpy(out, "\xe2\x96\x81", 3);
        pos = 3;
    }
    while (n_letters > 0) out[pos++] = letters[--n_letters];
    out[pos] = '\0';
}

static int32_t token_type(size_t i) {
    if (i == 0) return TOKEN_UNKNOWN;
    if (i < N_SPECIAL_TOKENS) return TOKEN_CONTROL;
    return i < FIRST_FILLER_TOKEN ? TOKEN_BYTE : TOKEN_NORMAL;
}

static int add_vocabulary(gguf_writer *w, const synth_spec *s, ramp_error *err) {
    size_t n = (size_t)s->vocab;
    char (*pieces)[PIECE_BYTES] = malloc(n * sizeof *pieces);
    const char **texts = malloc(n * sizeof *texts);
    float *scores = malloc(n * sizeof *scores);
    int32_t *types = malloc(n * sizeof *types);
    int rc = -1;
    if (pieces == NULL || texts == NULL || scores == NULL || types == NULL) {
        ramp_fail(err, "synthetic model: out of memory for a vocabulary of %zu tokens", n);
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        static const char *const specials[] = {"<unk>", "<s>", "</s>"};
        if (i < N_SPECIAL_TOKENS) snprintf(pieces[i], PIECE_BYTES, "%s", specials[i]);
        else if (i < FIRST_FILLER_TOKEN) snprintf(pieces[i], PIECE_BYTES, "<0x%02X>", (unsigned)(i - 3));
        else filler_piece(i - FIRST_FILLER_TOKEN, pieces[i]);
        texts[i] = pieces[i];
        types[i] = token_type(i);
        /* Earlier filler pieces score higher, so a SentencePiece tokenizer merges them first. */
        scores[i] = i < FIRST_FILLER_TOKEN ? 0.0f : -(float)(i - FIRST_FILLER_TOKEN);
    }
    int failed = gguf_writer_add_string(w, "tokenizer.ggml.model", "llama", err) ||
                 gguf_writer_add_string_array(w, "tokenizer.ggml.tokens", texts, n, err) ||
                 gguf_writer_add_f32_array(w, "tokenizer.ggml.scores", scores, n, err) ||
                 gguf_writer_add_i32_array(w, "tokenizer.ggml.token_type", types, n, err) ||
                 gguf_writer_add_u32(w, "tokenizer.ggml.unknown_token_id", 0, err) ||
                 gguf_writer_add_u32(w, "tokenizer.ggml.bos_token_id", 1, err) ||
                 gguf_writer_add_u32(w, "tokenizer.ggml.eos_token_id", 2, err) ||
                 /* as Qwen2's converter writes it: no BOS in front of a prompt */
                 ((s->arch == SYNTH_QWEN2 || s->arch == SYNTH_QWEN3) &&
                  gguf_writer_add_bool(w, "tokenizer.ggml.add_bos_token", false, err));
    rc = failed ? -1 : 0;
done:
    free(pieces);
    free(texts);
    free(scores);
    free(types);
    return rc;
}

/* The keys gguf-split gives every part, with its types (llama.cpp checks them). */
static int add_split_keys(gguf_writer *w, const synth_spec *s, int part, ramp_error *err) {
    int failed = gguf_writer_add_u16(w, "split.no", (uint16_t)part, err) ||
                 gguf_writer_add_u16(w, "split.count", (uint16_t)s->parts, err) ||
                 gguf_writer_add_i32(w, "split.tensors.count", (int32_t)tensor_count(s), err);
    return failed ? -1 : 0;
}

/* One file: tensors [from, to) of the model, with its metadata when it is the first (or only) file
 * and the split keys when the model is split. */
static int write_file(const synth_spec *s, const char *path, int part, size_t from, size_t to, ramp_error *err) {
    gguf_writer *w;
    if (gguf_writer_create(&w, path, err)) return -1;
    int failed = (part == 0 && (add_hyperparameters(w, s, err) || add_vocabulary(w, s, err))) ||
                 (s->parts > 1 && add_split_keys(w, s, part, err)) || declare_tensors(w, s, from, to, err) ||
                 gguf_writer_begin_data(w, err) || write_tensors(w, s, from, to, err) || gguf_writer_finish(w, err);
    gguf_writer_free(w); /* deletes the file unless finish succeeded */
    return failed ? -1 : 0;
}

int synth_write(const synth_spec *spec, const char *path, ramp_error *err) {
    if (synth_validate(spec, err)) return -1;
    const size_t n = tensor_count(spec);
    if (spec->parts <= 1) return write_file(spec, path, 0, 0, n, err);
    const size_t parts = (size_t)spec->parts;
    for (size_t i = 0; i < parts; i++) {
        char *part = gguf_split_part_path(path, strlen(path), (uint32_t)(i + 1), (uint32_t)parts);
        int rc = part ? write_file(spec, part, (int)i, n * i / parts, n * (i + 1) / parts, err)
                      : ramp_fail(err, "%s: out of memory", path);
        free(part);
        if (rc == 0) continue;
        for (size_t done = 0; done < i; done++) { /* no half-written model left behind */
            char *written = gguf_split_part_path(path, strlen(path), (uint32_t)(done + 1), (uint32_t)parts);
            if (written) remove(written);
            free(written);
        }
        return -1;
    }
    return 0;
}
