/* tokenizer.c: text <-> token ids for SentencePiece-style BPE and GPT-2 byte-level BPE.
 *
 * Both algorithms are one loop with two rule sets. The input is cut into symbols (SPM: the UTF-8
 * characters of the escaped text; GPT-2: the bytes of one pre-tokenized word), every pair of
 * neighbours that may merge goes into a max-heap, and the best pair is merged (and its new pairs
 * pushed) until the heap is empty:
 *  - SPM: a pair may merge when its concatenation is a piece; better = higher vocabulary score.
 *  - GPT-2: a pair may merge when "left right" is a merge rule; better = earlier rule.
 * Ties go to the leftmost pair, as in llama.cpp, whose reference vectors the tests check. The heap
 * keeps a long prompt at O(n log n) instead of llama2.c's rescan of every pair after each merge.
 * What the merges leave that is not a piece falls back to byte tokens.
 */
#include "tokenizer.h"

#include "input_file.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Token types as stored in GGUF's tokenizer.ggml.token_type (llama.cpp's numbering). */
enum {
    TOKEN_UNDEFINED = 0,
    TOKEN_NORMAL = 1,
    TOKEN_UNKNOWN = 2,
    TOKEN_CONTROL = 3,
    TOKEN_USER_DEFINED = 4,
    TOKEN_UNUSED = 5,
    TOKEN_BYTE = 6,
};

/* Pre-tokenizers: the text is cut into words before BPE, by one or more patterns applied in turn
 * (each splits every piece the previous one produced into its matches and the text between them).
 * tokenizer.ggml.pre names the set, with the names and patterns llama.cpp uses (llama-vocab.cpp). */

/* GPT-2's: contractions, then letters, digits or other symbols with an optional leading space,
 * then whitespace runs that leave their last space to the word that follows. */
#define GPT2_PATTERN "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"
/* Llama 3's (and Qwen 2's with single digits): contractions in any case, a letter run with at most
 * one non-letter before it, digit groups, symbol runs with the line breaks after them. */
#define LLAMA3_PATTERN(digits)                                                                             \
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}" digits \
    "| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"

/* Mistral's Tekken (Mistral NeMo, Mistral Small 3, Pixtral): a word is an optional leading
 * non-letter and a run of letters that may start upper case and goes on lower case (or stays upper
 * case); digits one by one. tokenizer.json writes the letter cases as Unicode classes; this is
 * llama.cpp's form of it ([^a-z] and [^A-Z] among letters, by lookahead), so that text outside
 * ASCII splits as llama.cpp splits it. */
#define TEKKEN_PATTERN                                                                                    \
    "[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))*((?=[\\p{L}])([^A-Z]))+|"                               \
    "[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))+((?=[\\p{L}])([^A-Z]))*|\\p{N}|"                      \
    " ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"

/* GPT-4o's (also Llama 4's): Tekken's words with an optional contraction after them, digits in
 * threes. */
#define GPT4O_PATTERN                                                                                     \
    "[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))*((?=[\\p{L}])([^A-Z]))+"                                  \
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|"                                         \
    "[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))+((?=[\\p{L}])([^A-Z]))*"                                  \
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|"                                         \
    "\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"

/* The CJK runs DeepSeek's tokenizers keep together (CJK ideographs, U+0800 on, Hangul). */
#define DEEPSEEK_CJK "[\u4e00-\u9fa5\u0800-\u4e00\uac00-\ud7ff]+"

/* DeepSeek LLM's letters (tokenizer.json's list: the cased letters of Latin, Greek, Cyrillic,
 * Armenian, Georgian, Cherokee and more, as ranges). */
#define DEEPSEEK_LLM_LETTERS                                                                              \
    "\\s?[A-Za-z\u00b5\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u01ba\u01bc-\u01bf\u01c4-\u0293\u0295-\u02af"          \
    "\u0370-\u0373\u0376\u0377\u037b-\u037d\u037f\u0386\u0388-\u038a\u038c\u038e-\u03a1\u03a3-\u03f5"         \
    "\u03f7-\u0481\u048a-\u052f\u0531-\u0556\u10a0-\u10c5\u13a0-\u13f5\u13f8-\u13fd\u1c90-\u1cba"             \
    "\u1cbd-\u1cbf\u1d00-\u1d2b\u1d6b-\u1d77\u1d79-\u1d9a\u1e00-\u1f15\u1f18-\u1f1d\u1f20-\u1f45"             \
    "\u1f48-\u1f4d\u1f50-\u1f57\u1f59\u1f5b\u1f5d\u1f5f-\u1f7d\u1f80-\u1fb4\u1fb6-\u1fbc\u1fbe"              \
    "\u1fc2-\u1fc4\u1fc6-\u1fcc\u1fd0-\u1fd3\u1fd6-\u1fdb\u1fe0-\u1fec\u1ff2-\u1ff4\u1ff6-\u1ffc"             \
    "\u2102\u2107\u210a-\u2113\u2115\u2119-\u211d\u2124\u2126\u2128\u212a-\u212d\u212f-\u2134"              \
    "\u2139\u213c-\u213f\u2145-\u2149\u214e\u2183\u2184\u2c00-\u2c7b\u2c7e-\u2ce4\u2ceb-\u2cee"              \
    "\u2cf2\u2cf3\ua640-\ua66d\ua680-\ua69b\ua722-\ua76f\ua771-\ua787\ua78b-\ua78e\uab70-\uabbf"              \
    "\ufb00-\ufb06\ufb13-\ufb17\uff21-\uff3a\uff41-\uff5a\\x{10400}-\\x{1044f}\\x{104b0}-\\x{104d3}"           \
    "\\x{104d8}-\\x{104fb}\\x{10c80}-\\x{10cb2}\\x{10cc0}-\\x{10cf2}\\x{118a0}-\\x{118df}\\x{1e900}-\\x{1e943}]+"

/* Viking's (also Poro's): a word is anything up to a space or one of these marks. */
#define VIKING_WORDS " ?[^(\\s|.,!?\u2026\u3002\uff0c\u3001\u0964\u06d4\u060c)]+"

enum { MAX_PRETOKENIZERS = 6 };

typedef struct {
    const char *names; /* the tokenizer.ggml.pre values, space-separated */
    bool ignore_merges; /* a word that is a token as a whole becomes that token (Llama 3) */
    bool add_bos;       /* BOS in front of a prompt unless tokenizer.ggml.add_bos_token says otherwise */
    const char *patterns[MAX_PRETOKENIZERS];
} pretokenizer_spec;

/* llama.cpp's names, patterns and BOS defaults (llama-vocab.cpp); each pattern cuts the pieces the
 * one before it left. */
static const pretokenizer_spec PRETOKENIZERS[] = {
    {"default", false, false,
     {"[\\p{P}\\$\\+<=>\\^~\\|]+", GPT2_PATTERN, "\\p{N}+", "[0-9][0-9][0-9]"}},
    {"gpt-2 phi-2 mpt olmo jais trillion granite-docling roberta-bpe gigachat jina-es jina-de jina-v2-es jina-v2-de "
     "jina-v2-code exaone4",
     false, false, {GPT2_PATTERN}},
    {"llama3 llama-v3 llama-bpe falcon3 falcon-h1 pixtral midm-2.0 lfm2", true, true, {LLAMA3_PATTERN("{1,3}")}},
    {"dbrx smaug-bpe", false, false, {LLAMA3_PATTERN("{1,3}")}},
    {"qwen2 deepseek-r1-qwen megrez stablelm2 hunyuan", false, false, {LLAMA3_PATTERN("")}},
    {"smollm starcoder refact command-r codeshell exaone minerva-7b", false, false, {"\\p{N}", GPT2_PATTERN}},
    {"falcon", false, false, {"[\\p{P}\\$\\+<=>\\^~\\|`]+", GPT2_PATTERN, "[0-9][0-9][0-9]"}},
    {"tekken", true, true, {TEKKEN_PATTERN}},
    {"gpt-4o llama4", false, false, {GPT4O_PATTERN}},
    {"deepseek-llm", false, false,
     {"[\\r\\n]", DEEPSEEK_LLM_LETTERS, "\\s?[!-/:-~\uff01-\uff0f\uff1a-\uff5e\u2018-\u201f\u3000-\u3002]+", "\\s+$",
      DEEPSEEK_CJK, "\\p{N}+"}},
    {"deepseek-coder", false, false, {"[\\r\\n]", "\\s?\\p{L}+", "\\s?\\p{P}+", DEEPSEEK_CJK, "\\p{N}"}},
    {"viking", false, false, {VIKING_WORDS, "\\p{N}"}},
    {"seed-coder", false, false,
     {"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}"
      "| ?[^\\s\\p{L}\\p{N}\\r\\n]+|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"}},
};

/* The spec whose names include name (length n), or NULL. */
static const pretokenizer_spec *find_pretokenizer(const char *name, size_t n) {
    for (size_t i = 0; i < sizeof PRETOKENIZERS / sizeof PRETOKENIZERS[0]; i++)
        for (const char *p = PRETOKENIZERS[i].names; *p;) {
            size_t len = strcspn(p, " ");
            if (len == n && memcmp(p, name, n) == 0) return &PRETOKENIZERS[i];
            p += len;
            while (*p == ' ') p++;
        }
    return NULL;
}

static const char SPACE_MARK[] = "\xe2\x96\x81"; /* U+2581, SentencePiece's visible space */
enum { SPACE_MARK_LEN = 3 };

/* Texts longer than this are refused: symbol offsets are 32-bit and the escaped text of SPM can
 * be three times the input. */
enum { MAX_TEXT_BYTES = 1 << 30 };

/* Open addressing with linear probing: piece text -> token id. A slot holds an id, -1 if empty. */
typedef struct {
    int32_t *slots;
    size_t mask;
} piece_index;

/* GPT-2's merge rules, keyed by the ids of the two tokens they join. */
typedef struct {
    uint64_t key; /* pair_key(left, right); 0 marks an empty slot */
    int32_t rank; /* position in tokenizer.ggml.merges: lower merges first */
    int32_t result;
} merge_rule;

typedef struct {
    merge_rule *slots;
    size_t mask;
} merge_index;

struct tokenizer {
    tokenizer_kind kind;
    int n_vocab;
    char *arena;   /* every piece, NUL-terminated, back to back */
    char **pieces; /* pieces[id] points into arena */
    uint32_t *lengths;
    float *scores;
    uint8_t *types;
    int bos, eos, unk; /* -1 when the vocabulary has none */
    int eot;           /* the end of a chat turn where it differs from eos (<|im_end|>, <|eot_id|>), or -1 */
    bool add_bos;      /* prompts start with BOS (tokenizer.ggml.add_bos_token; without the key: SPM yes, BPE as its
                        * pre-tokenizer says) */
    bool add_space_prefix;
    int byte_token[256]; /* the token of a raw byte (SPM: "<0xAB>", GPT-2: its mapped char), or -1 */
    piece_index index;
    /* GPT-2 only. */
    merge_index merges;
    uint16_t byte_to_cp[256]; /* GPT-2's bytes_to_unicode */
    int16_t cp_to_byte[324];  /* its inverse (all mapped code points are below 256 + 68); -1 if none */
    pcre2_code *pretokenizers[MAX_PRETOKENIZERS]; /* read-only once compiled: encoding stays thread-safe */
    int n_pretokenizers;
    bool ignore_merges;
};

/* ---- small helpers ---------------------------------------------------------------------------- */

static uint64_t hash_bytes(const char *s, size_t n) { /* FNV-1a */
    uint64_t h = 14695981039346656037ull;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ull;
    }
    return h;
}

static uint64_t hash_u64(uint64_t x) { /* splitmix64's finalizer: pair keys are far from random */
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* A power of two at least twice n, so probe runs stay short. */
static size_t table_capacity(size_t n) {
    size_t capacity = 16;
    while (capacity < 2 * n) capacity *= 2;
    return capacity;
}

/* Length of the UTF-8 character at s (n > 0 bytes available): 2..4 for a lead byte followed by
 * its continuation bytes, else 1, so that an invalid byte stands alone (and falls back to its byte
 * token) instead of swallowing the valid characters after it. */
static size_t utf8_char_length(const unsigned char *s, size_t n) {
    size_t len = s[0] < 0x80             ? 1
                 : (s[0] & 0xe0) == 0xc0 ? 2
                 : (s[0] & 0xf0) == 0xe0 ? 3
                 : (s[0] & 0xf8) == 0xf0 ? 4
                                         : 1;
    if (len > n) return 1;
    for (size_t i = 1; i < len; i++)
        if ((s[i] & 0xc0) != 0x80) return 1;
    return len;
}

/* SentencePiece names byte tokens "<0xAB>" (upper-case hex). */
static bool parse_byte_piece(const char *s, size_t n, unsigned char *byte) {
    if (n != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>') return false;
    int value = 0;
    for (int i = 3; i < 5; i++) {
        char c = s[i];
        int digit = c >= '0' && c <= '9'   ? c - '0'
                    : c >= 'A' && c <= 'F' ? c - 'A' + 10
                    : c >= 'a' && c <= 'f' ? c - 'a' + 10
                                           : -1;
        if (digit < 0) return false;
        value = value * 16 + digit;
    }
    *byte = (unsigned char)value;
    return true;
}

/* ---- the vocabulary ------------------------------------------------------------------------- */

static int find_piece(const tokenizer *tok, const char *s, size_t n) {
    for (size_t i = hash_bytes(s, n) & tok->index.mask;; i = (i + 1) & tok->index.mask) {
        int32_t id = tok->index.slots[i];
        if (id < 0) return -1;
        if (tok->lengths[id] == n && memcmp(tok->pieces[id], s, n) == 0) return id;
    }
}

/* A piece that text may turn into. Control, unknown and byte tokens have names ("<s>", "<0x41>")
 * that text should never produce by merging: a user typing "<s>" must not get a BOS. */
static int find_text_piece(const tokenizer *tok, const char *s, size_t n) {
    int id = find_piece(tok, s, n);
    if (id < 0) return -1;
    uint8_t type = tok->types[id];
    return type == TOKEN_CONTROL || type == TOKEN_UNKNOWN || type == TOKEN_BYTE ? -1 : id;
}

static int build_piece_index(tokenizer *tok, ramp_error *err) {
    size_t capacity = table_capacity((size_t)tok->n_vocab);
    tok->index.slots = malloc(capacity * sizeof *tok->index.slots);
    if (tok->index.slots == NULL)
        return ramp_fail(err, "tokenizer: out of memory for a %zu-slot piece index", capacity);
    memset(tok->index.slots, 0xff, capacity * sizeof *tok->index.slots); /* all -1 */
    tok->index.mask = capacity - 1;
    for (int id = 0; id < tok->n_vocab; id++) {
        size_t i = hash_bytes(tok->pieces[id], tok->lengths[id]) & tok->index.mask;
        for (;; i = (i + 1) & tok->index.mask) {
            int32_t other = tok->index.slots[i];
            if (other < 0) break;
            if (tok->lengths[other] == tok->lengths[id] &&
                memcmp(tok->pieces[other], tok->pieces[id], tok->lengths[id]) == 0)
                break;
        }
        tok->index.slots[i] = id; /* a duplicated piece maps to its last id, as in llama.cpp */
    }
    return 0;
}

/* Copies the pieces into one arena. llama2.c's exporter wrote spaces where SentencePiece has
 * U+2581; spaces_to_marks turns them back so that one algorithm serves both formats. */
static int copy_pieces(tokenizer *tok, const gguf_string *pieces, const char *path, bool spaces_to_marks,
                       ramp_error *err) {
    int n = tok->n_vocab;
    size_t total = 0;
    for (int id = 0; id < n; id++) {
        if (pieces[id].length > UINT32_MAX / 4)
            return ramp_fail(err, "%s: token %d is %llu bytes long, expected a short piece", path, id,
                             (unsigned long long)pieces[id].length);
        size_t spaces = 0;
        if (spaces_to_marks)
            for (uint64_t i = 0; i < pieces[id].length; i++) spaces += pieces[id].data[i] == ' ';
        total += pieces[id].length + spaces * (SPACE_MARK_LEN - 1) + 1;
    }
    tok->arena = malloc(total);
    tok->pieces = malloc((size_t)n * sizeof *tok->pieces);
    tok->lengths = malloc((size_t)n * sizeof *tok->lengths);
    if (tok->arena == NULL || tok->pieces == NULL || tok->lengths == NULL)
        return ramp_fail(err, "%s: out of memory for %d pieces (%zu bytes)", path, n, total);
    char *p = tok->arena;
    for (int id = 0; id < n; id++) {
        tok->pieces[id] = p;
        for (uint64_t i = 0; i < pieces[id].length; i++) {
            char c = pieces[id].data[i];
            if (spaces_to_marks && c == ' ') {
                memcpy(p, SPACE_MARK, SPACE_MARK_LEN);
                p += SPACE_MARK_LEN;
            } else {
                *p++ = c;
            }
        }
        tok->lengths[id] = (uint32_t)(p - tok->pieces[id]);
        *p++ = '\0';
    }
    return 0;
}

static void find_byte_tokens(tokenizer *tok) {
    for (int b = 0; b < 256; b++) {
        if (tok->kind == TOKENIZER_SPM) {
            char name[8];
            snprintf(name, sizeof name, "<0x%02X>", b);
            tok->byte_token[b] = find_piece(tok, name, 6);
        } else {
            unsigned cp = tok->byte_to_cp[b]; /* below 0x800: one or two UTF-8 bytes */
            char utf8[2];
            size_t n = 1;
            if (cp < 0x80) {
                utf8[0] = (char)cp;
            } else {
                utf8[0] = (char)(0xc0 | (cp >> 6));
                utf8[1] = (char)(0x80 | (cp & 0x3f));
                n = 2;
            }
            tok->byte_token[b] = find_piece(tok, utf8, n);
        }
    }
}

/* ---- GPT-2 specifics ------------------------------------------------------------------------ */

/* GPT-2's bytes_to_unicode: printable Latin-1 bytes stand for themselves, the other 68 (controls,
 * space, DEL, NBSP, soft hyphen) move to U+0100.. in byte order, so every byte of every piece is a
 * visible character: a space is stored as 'Ġ' (U+0120). */
static void build_byte_map(tokenizer *tok) {
    memset(tok->cp_to_byte, 0xff, sizeof tok->cp_to_byte); /* all -1 */
    unsigned next = 256;
    for (unsigned b = 0; b < 256; b++) {
        bool printable = (b >= '!' && b <= '~') || (b >= 0xa1 && b <= 0xac) || b >= 0xae;
        unsigned cp = printable ? b : next++;
        tok->byte_to_cp[b] = (uint16_t)cp;
        tok->cp_to_byte[cp] = (int16_t)b;
    }
}

static uint64_t pair_key(int left, int right) {
    return ((uint64_t)(uint32_t)left + 1) << 32 | ((uint64_t)(uint32_t)right + 1);
}

static const merge_rule *find_merge(const tokenizer *tok, int left, int right) {
    if (left < 0 || right < 0) return NULL;
    uint64_t key = pair_key(left, right);
    for (size_t i = hash_u64(key) & tok->merges.mask;; i = (i + 1) & tok->merges.mask) {
        const merge_rule *rule = &tok->merges.slots[i];
        if (rule->key == key) return rule;
        if (rule->key == 0) return NULL;
    }
}

/* Merge rules are "left right" (split at the first space after the first byte, as llama.cpp does,
 * so a left part may itself start with a space). A rule whose parts or result are not pieces can
 * never fire on token ids and is skipped; a repeated rule keeps its first (best) rank. */
static int load_merges(tokenizer *tok, const gguf_file *file, ramp_error *err) {
    const gguf_kv *kv = gguf_find(file, "tokenizer.ggml.merges");
    if (kv == NULL || kv->type != GGUF_VALUE_ARRAY || kv->array_type != GGUF_VALUE_STRING)
        return ramp_fail(
            err, "%s: tokenizer.ggml.merges is %s, expected an array of \"left right\" strings for a gpt2 tokenizer",
            file->path, kv == NULL ? "missing" : "not a string array");
    if (kv->array_length > INT32_MAX)
        return ramp_fail(err, "%s: tokenizer.ggml.merges has %llu rules, expected at most %d", file->path,
                         (unsigned long long)kv->array_length, INT32_MAX);
    size_t capacity = table_capacity(kv->array_length);
    tok->merges.slots = calloc(capacity, sizeof *tok->merges.slots);
    if (tok->merges.slots == NULL)
        return ramp_fail(err, "%s: out of memory for %llu merge rules", file->path,
                         (unsigned long long)kv->array_length);
    tok->merges.mask = capacity - 1;
    char *joined = NULL;
    size_t joined_capacity = 0;
    for (uint64_t rank = 0; rank < kv->array_length; rank++) {
        gguf_string rule = kv->array_strings[rank];
        const char *space = rule.length > 1 ? memchr(rule.data + 1, ' ', rule.length - 1) : NULL;
        if (space == NULL) {
            free(joined);
            return ramp_fail(err, "%s: merge rule %llu is \"%.*s\", expected \"left right\"", file->path,
                             (unsigned long long)rank, (int)(rule.length < 64 ? rule.length : 64), rule.data);
        }
        size_t left_len = (size_t)(space - rule.data), right_len = rule.length - left_len - 1;
        if (left_len + right_len > joined_capacity) {
            joined_capacity = 2 * (left_len + right_len);
            char *grown = realloc(joined, joined_capacity);
            if (grown == NULL) {
                free(joined);
                return ramp_fail(err, "%s: out of memory while reading merge rules", file->path);
            }
            joined = grown;
        }
        memcpy(joined, rule.data, left_len);
        memcpy(joined + left_len, space + 1, right_len);
        int left = find_piece(tok, rule.data, left_len);
        int right = find_piece(tok, space + 1, right_len);
        int result = find_piece(tok, joined, left_len + right_len);
        if (left < 0 || right < 0 || result < 0) continue;
        uint64_t key = pair_key(left, right);
        size_t i = hash_u64(key) & tok->merges.mask;
        while (tok->merges.slots[i].key != 0 && tok->merges.slots[i].key != key) i = (i + 1) & tok->merges.mask;
        if (tok->merges.slots[i].key == key) continue;
        tok->merges.slots[i] = (merge_rule){.key = key, .rank = (int32_t)rank, .result = result};
    }
    free(joined);
    return 0;
}

/* Reads tokenizer.ggml.pre (absent means "default", as in llama.cpp) and compiles its patterns. */
static int compile_pretokenizers(tokenizer *tok, const gguf_file *file, ramp_error *err) {
    const gguf_kv *pre = gguf_find(file, "tokenizer.ggml.pre");
    gguf_string name = {"default", 7};
    if (pre != NULL) {
        if (pre->type != GGUF_VALUE_STRING)
            return ramp_fail(err, "%s: tokenizer.ggml.pre is not a string", file->path);
        name = pre->value.s;
    }
    const pretokenizer_spec *spec = find_pretokenizer(name.data, name.length);
    if (spec == NULL)
        return ramp_fail(err, "%s: tokenizer.ggml.pre is \"%.*s\", a pre-tokenizer ramp does not know (known: default, "
                              "gpt-2, llama-bpe/llama3, dbrx, qwen2, smollm/starcoder, falcon, tekken, gpt-4o, "
                              "deepseek-llm, deepseek-coder, viking, seed-coder and their aliases)",
                         file->path, (int)(name.length < 64 ? name.length : 64), name.data);
    tok->ignore_merges = spec->ignore_merges;
    tok->add_bos = spec->add_bos; /* until tokenizer.ggml.add_bos_token says otherwise */
    for (int i = 0; i < MAX_PRETOKENIZERS && spec->patterns[i]; i++) {
        int code;
        PCRE2_SIZE offset;
        /* MATCH_INVALID_UTF: arbitrary bytes must not make matching fail; invalid sequences simply
         * match nothing and encode_gpt2 turns the gaps into words of their own. DOLLAR_ENDONLY: $ is
         * the end of the piece, not also the place before its last line break (as in std::regex). */
        tok->pretokenizers[i] = pcre2_compile((PCRE2_SPTR)spec->patterns[i], PCRE2_ZERO_TERMINATED,
                                              PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF | PCRE2_DOLLAR_ENDONLY,
                                              &code, &offset, NULL);
        if (tok->pretokenizers[i] == NULL) {
            PCRE2_UCHAR message[256];
            pcre2_get_error_message(code, message, sizeof message);
            return ramp_fail(err, "%s: cannot compile pre-tokenizer pattern %d of \"%.*s\" at offset %zu: %s", file->path,
                             i, (int)name.length, name.data, (size_t)offset, (char *)message);
        }
        tok->n_pretokenizers = i + 1;
        /* JIT is only a speed-up: where it is unavailable pcre2_match interprets the pattern. */
        pcre2_jit_compile(tok->pretokenizers[i], PCRE2_JIT_COMPLETE);
    }
    return 0;
}

/* ---- loading -------------------------------------------------------------------------------- */

void tokenizer_free(tokenizer *tok) {
    if (tok == NULL) return;
    free(tok->arena);
    free(tok->pieces);
    free(tok->lengths);
    free(tok->scores);
    free(tok->types);
    free(tok->index.slots);
    free(tok->merges.slots);
    for (int i = 0; i < tok->n_pretokenizers; i++) pcre2_code_free(tok->pretokenizers[i]);
    free(tok);
}

static tokenizer *new_tokenizer(tokenizer_kind kind, int n_vocab) {
    tokenizer *tok = calloc(1, sizeof *tok);
    if (tok == NULL) return NULL;
    tok->kind = kind;
    tok->n_vocab = n_vocab;
    tok->eot = -1;
    tok->add_bos = true;
    tok->scores = calloc((size_t)n_vocab, sizeof *tok->scores);
    tok->types = malloc((size_t)n_vocab);
    if (tok->scores == NULL || tok->types == NULL) {
        tokenizer_free(tok);
        return NULL;
    }
    memset(tok->types, TOKEN_NORMAL, (size_t)n_vocab);
    return tok;
}

static bool is_integer_type(gguf_value_type t) {
    return t == GGUF_VALUE_UINT8 || t == GGUF_VALUE_INT8 || t == GGUF_VALUE_UINT16 || t == GGUF_VALUE_INT16 ||
           t == GGUF_VALUE_UINT32 || t == GGUF_VALUE_INT32 || t == GGUF_VALUE_UINT64 || t == GGUF_VALUE_INT64;
}

static bool is_signed_type(gguf_value_type t) {
    return t == GGUF_VALUE_INT8 || t == GGUF_VALUE_INT16 || t == GGUF_VALUE_INT32 || t == GGUF_VALUE_INT64;
}

/* An optional numeric array with one element per token; *out is NULL when the key is absent. */
static int find_token_array(const gguf_file *file, const char *key, int n_vocab, bool integers, const gguf_kv **out,
                            ramp_error *err) {
    const gguf_kv *kv = gguf_find(file, key);
    *out = NULL;
    if (kv == NULL) return 0;
    bool numeric = kv->type == GGUF_VALUE_ARRAY &&
                   (is_integer_type(kv->array_type) ||
                    (!integers && (kv->array_type == GGUF_VALUE_FLOAT32 || kv->array_type == GGUF_VALUE_FLOAT64)));
    if (!numeric)
        return ramp_fail(err, "%s: %s is not an array of %s", file->path, key, integers ? "integers" : "numbers");
    if (kv->array_length != (uint64_t)n_vocab)
        return ramp_fail(err, "%s: %s has %llu elements, expected one per token (%d)", file->path, key,
                         (unsigned long long)kv->array_length, n_vocab);
    *out = kv;
    return 0;
}

/* bos/eos/unknown ids are optional. -1 (or the unsigned all-ones llama.cpp writes) means "none";
 * any other id must name a token. */
static int read_special_id(const gguf_file *file, const char *key, int fallback, int n_vocab, int *out,
                           ramp_error *err) {
    *out = fallback < n_vocab ? fallback : -1;
    const gguf_kv *kv = gguf_find(file, key);
    if (kv == NULL) return 0;
    if (!is_integer_type(kv->type)) return ramp_fail(err, "%s: %s is not an integer", file->path, key);
    if (is_signed_type(kv->type) ? kv->value.i == -1 : kv->value.u == UINT32_MAX || kv->value.u == UINT64_MAX) {
        *out = -1;
        return 0;
    }
    bool in_range =
        is_signed_type(kv->type) ? kv->value.i >= 0 && kv->value.i < n_vocab : kv->value.u < (uint64_t)n_vocab;
    if (!in_range)
        return ramp_fail(err, "%s: %s is %lld, expected a token id below %d", file->path, key,
                         is_signed_type(kv->type) ? (long long)kv->value.i : (long long)kv->value.u, n_vocab);
    *out = is_signed_type(kv->type) ? (int)kv->value.i : (int)kv->value.u;
    return 0;
}

static int load_gguf_arrays(tokenizer *tok, const gguf_file *file, const gguf_kv *tokens, ramp_error *err) {
    if (copy_pieces(tok, tokens->array_strings, file->path, false, err) != 0) return -1;
    const gguf_kv *scores, *types;
    if (find_token_array(file, "tokenizer.ggml.scores", tok->n_vocab, false, &scores, err) != 0) return -1;
    if (find_token_array(file, "tokenizer.ggml.token_type", tok->n_vocab, true, &types, err) != 0) return -1;
    for (int id = 0; id < tok->n_vocab; id++) {
        if (scores != NULL) tok->scores[id] = gguf_array_f32(scores, (uint64_t)id);
        if (types == NULL) continue;
        int64_t type = gguf_array_i64(types, (uint64_t)id);
        if (type < TOKEN_UNDEFINED || type > TOKEN_BYTE)
            return ramp_fail(err, "%s: tokenizer.ggml.token_type of token %d is %lld, expected 0..6", file->path, id,
                             (long long)type);
        tok->types[id] = (uint8_t)type;
    }
    return 0;
}

/* A chat model ends its turn with a token of its own that is not always the file's eos (Llama 3
 * files converted early name <|end_of_text|> as eos and end turns with <|eot_id|>): the file's
 * tokenizer.ggml.eot_token_id, else a control token with one of the usual texts, as llama.cpp
 * finds it. */
static int find_end_of_turn(tokenizer *tok, const gguf_file *file, ramp_error *err) {
    if (read_special_id(file, "tokenizer.ggml.eot_token_id", -1, tok->n_vocab, &tok->eot, err) != 0) return -1;
    static const char *const texts[] = {"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>"};
    for (size_t i = 0; tok->eot < 0 && i < sizeof texts / sizeof texts[0]; i++) {
        int id = find_piece(tok, texts[i], strlen(texts[i]));
        if (id >= 0 && tok->types[id] == TOKEN_CONTROL) tok->eot = id;
    }
    if (tok->eot == tok->eos) tok->eot = -1;
    return 0;
}

/* A boolean key, or fallback when the file has none. */
static int read_flag(const gguf_file *file, const char *key, bool fallback, bool *out, ramp_error *err) {
    const gguf_kv *kv = gguf_find(file, key);
    *out = fallback;
    if (kv == NULL) return 0;
    if (kv->type != GGUF_VALUE_BOOL) return ramp_fail(err, "%s: %s is not a bool", file->path, key);
    *out = kv->value.b;
    return 0;
}

static int load_gguf(tokenizer *tok, const gguf_file *file, const gguf_kv *tokens, ramp_error *err) {
    bool spm = tok->kind == TOKENIZER_SPM;
    if (load_gguf_arrays(tok, file, tokens, err) != 0) return -1;
    if (read_special_id(file, "tokenizer.ggml.bos_token_id", spm ? 1 : -1, tok->n_vocab, &tok->bos, err) != 0)
        return -1;
    if (read_special_id(file, "tokenizer.ggml.eos_token_id", spm ? 2 : -1, tok->n_vocab, &tok->eos, err) != 0)
        return -1;
    if (read_special_id(file, "tokenizer.ggml.unknown_token_id", spm ? 0 : -1, tok->n_vocab, &tok->unk, err) != 0)
        return -1;
    if (read_flag(file, "tokenizer.ggml.add_space_prefix", spm, &tok->add_space_prefix, err) != 0) return -1;
    if (build_piece_index(tok, err) != 0) return -1;
    if (find_end_of_turn(tok, file, err) != 0) return -1;
    if (!spm) {
        build_byte_map(tok);
        if (load_merges(tok, file, err) != 0 || compile_pretokenizers(tok, file, err) != 0) return -1;
    }
    /* BOS in front of a prompt: SentencePiece vocabularies and the pre-tokenizers that say so
     * (Llama 3, Tekken) want one, as in llama.cpp, unless the file says otherwise (Qwen2 files name
     * a BOS token but ask for none) */
    if (read_flag(file, "tokenizer.ggml.add_bos_token", tok->add_bos, &tok->add_bos, err) != 0) return -1;
    find_byte_tokens(tok);
    return 0;
}

int tokenizer_from_gguf(tokenizer **out, const gguf_file *file, ramp_error *err) {
    *out = NULL;
    gguf_string model;
    if (gguf_get_string(file, "tokenizer.ggml.model", &model, err) != 0) return -1;
    tokenizer_kind kind;
    if (gguf_string_equals(model, "llama")) {
        kind = TOKENIZER_SPM;
    } else if (gguf_string_equals(model, "gpt2")) {
        kind = TOKENIZER_GPT2;
    } else {
        return ramp_fail(err, "%s: tokenizer.ggml.model is \"%.*s\", expected \"llama\" or \"gpt2\"", file->path,
                         (int)(model.length < 64 ? model.length : 64), model.data);
    }
    const gguf_kv *tokens = gguf_find(file, "tokenizer.ggml.tokens");
    if (tokens == NULL || tokens->type != GGUF_VALUE_ARRAY || tokens->array_type != GGUF_VALUE_STRING)
        return ramp_fail(err, "%s: tokenizer.ggml.tokens is %s, expected an array of strings", file->path,
                         tokens == NULL ? "missing" : "not a string array");
    if (tokens->array_length == 0 || tokens->array_length > INT32_MAX)
        return ramp_fail(err, "%s: tokenizer.ggml.tokens has %llu tokens, expected 1..%d", file->path,
                         (unsigned long long)tokens->array_length, INT32_MAX);
    tokenizer *tok = new_tokenizer(kind, (int)tokens->array_length);
    if (tok == NULL)
        return ramp_fail(err, "%s: out of memory for %llu tokens", file->path,
                         (unsigned long long)tokens->array_length);
    if (load_gguf(tok, file, tokens, err) != 0) {
        tokenizer_free(tok);
        return -1;
    }
    *out = tok;
    return 0;
}

/* tokenizer.bin for the largest vocabulary a model may have (2^22 tokens) stays far below this. */
#define TOKENIZER_FILE_MAX_BYTES ((size_t)256 << 20)

static int read_whole_file(const char *path, unsigned char **data, size_t *size, ramp_error *err) {
    const input_limits limits = {.what = "llama2.c tokenizer file", .max_bytes = TOKENIZER_FILE_MAX_BYTES,
                                 .allow_nul = true};
    return input_file_read(path, &limits, (char **)data, size, err);
}

static int32_t load_i32(const unsigned char *p) {
    uint32_t u = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
    int32_t v;
    memcpy(&v, &u, sizeof v);
    return v;
}

/* Fills pieces (pointing into data) and tok->scores from the bytes of a tokenizer.bin. */
static int parse_llama2c(tokenizer *tok, const char *path, const unsigned char *data, size_t size, gguf_string *pieces,
                         ramp_error *err) {
    if (size < 4) return ramp_fail(err, "%s: file is %zu bytes, expected at least 4 (max_token_length)", path, size);
    int32_t max_token_length = load_i32(data);
    if (max_token_length <= 0)
        return ramp_fail(err,
                         "%s: max_token_length is %d, expected a positive length (is this a llama2.c tokenizer.bin?)",
                         path, max_token_length);
    size_t pos = 4;
    for (int id = 0; id < tok->n_vocab; id++) {
        if (size - pos < 8)
            return ramp_fail(
                err, "%s: truncated at token %d of %d: expected a score and a length at offset %zu, file is %zu bytes",
                path, id, tok->n_vocab, pos, size);
        uint32_t score_bits = (uint32_t)load_i32(data + pos);
        memcpy(&tok->scores[id], &score_bits, sizeof score_bits);
        int32_t len = load_i32(data + pos + 4);
        pos += 8;
        if (len < 0 || (size_t)len > size - pos)
            return ramp_fail(err, "%s: token %d of %d has length %d at offset %zu, expected 0..%zu (file is %zu bytes)",
                             path, id, tok->n_vocab, len, pos - 4, size - pos, size);
        pieces[id] = (gguf_string){.data = (const char *)data + pos, .length = (uint64_t)len};
        pos += (size_t)len;
    }
    return 0;
}

/* llama2.c's ids are fixed: 0 <unk>, 1 <s> (BOS), 2 </s> (EOS); byte tokens are named "<0xAB>". */
static void set_llama2c_types(tokenizer *tok) {
    for (int id = 0; id < tok->n_vocab; id++) {
        unsigned char byte;
        tok->types[id] = parse_byte_piece(tok->pieces[id], tok->lengths[id], &byte) ? TOKEN_BYTE : TOKEN_NORMAL;
    }
    tok->unk = tok->bos = tok->eos = -1;
    if (tok->n_vocab > 0) tok->types[tok->unk = 0] = TOKEN_UNKNOWN;
    if (tok->n_vocab > 1) tok->types[tok->bos = 1] = TOKEN_CONTROL;
    if (tok->n_vocab > 2) tok->types[tok->eos = 2] = TOKEN_CONTROL;
}

int tokenizer_from_llama2c(tokenizer **out, const char *path, int vocab_size, ramp_error *err) {
    *out = NULL;
    if (vocab_size <= 0)
        return ramp_fail(err, "%s: vocab_size is %d, expected a positive number of tokens", path, vocab_size);
    unsigned char *data;
    size_t size = 0;
    if (read_whole_file(path, &data, &size, err) != 0) return -1;
    tokenizer *tok = new_tokenizer(TOKENIZER_SPM, vocab_size);
    gguf_string *pieces = calloc((size_t)vocab_size, sizeof *pieces);
    int rc = -1;
    if (tok == NULL || pieces == NULL) {
        ramp_fail(err, "%s: out of memory for %d tokens", path, vocab_size);
    } else if (parse_llama2c(tok, path, data, size, pieces, err) == 0 &&
               copy_pieces(tok, pieces, path, true, err) == 0) {
        set_llama2c_types(tok);
        tok->add_space_prefix = true;
        rc = build_piece_index(tok, err);
    }
    free(pieces);
    free(data);
    if (rc != 0) {
        tokenizer_free(tok);
        return -1;
    }
    find_byte_tokens(tok);
    *out = tok;
    return 0;
}

/* ---- the merge loop ------------------------------------------------------------------------- */

typedef struct {
    uint32_t start, len; /* the bytes of the text this symbol covers; len is 0 once merged away */
    int prev, next;      /* neighbours in the list, -1 at the ends */
    int id;              /* the token these bytes form, -1 when they are not a piece */
} symbol;

typedef struct {
    double priority; /* SPM: score of the merged piece; GPT-2: minus the rule's rank */
    int left;        /* the left symbol of the pair */
    uint32_t len;    /* the pair's combined length when pushed: if it differs now, a side changed */
    int id;          /* the token the merge makes */
} candidate;

typedef struct {
    candidate *items;
    size_t count, capacity;
} candidate_heap;

static bool better(const candidate *a, const candidate *b) {
    return a->priority > b->priority || (a->priority == b->priority && a->left < b->left);
}

static int heap_push(candidate_heap *heap, candidate c) {
    if (heap->count == heap->capacity) {
        size_t capacity = heap->capacity ? 2 * heap->capacity : 64;
        candidate *grown = realloc(heap->items, capacity * sizeof *grown);
        if (grown == NULL) return -1;
        heap->items = grown;
        heap->capacity = capacity;
    }
    size_t i = heap->count++;
    while (i > 0 && better(&c, &heap->items[(i - 1) / 2])) {
        heap->items[i] = heap->items[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    heap->items[i] = c;
    return 0;
}

static candidate heap_pop(candidate_heap *heap) {
    candidate top = heap->items[0], last = heap->items[--heap->count];
    size_t i = 0;
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= heap->count) break;
        if (child + 1 < heap->count && better(&heap->items[child + 1], &heap->items[child])) child++;
        if (!better(&heap->items[child], &last)) break;
        heap->items[i] = heap->items[child];
        i = child;
    }
    if (heap->count > 0) heap->items[i] = last;
    return top;
}

/* Pushes the pair (sym[i], its right neighbour) when the rules allow it to merge. */
static int push_pair(const tokenizer *tok, const char *text, const symbol *sym, int i, candidate_heap *heap) {
    const symbol *a = &sym[i], *b = &sym[a->next];
    candidate c = {.left = i, .len = a->len + b->len};
    if (tok->kind == TOKENIZER_SPM) {
        c.id = find_text_piece(tok, text + a->start, c.len); /* neighbours are adjacent in text */
        if (c.id < 0) return 0;
        c.priority = tok->scores[c.id];
    } else {
        const merge_rule *rule = find_merge(tok, a->id, b->id);
        if (rule == NULL) return 0;
        c.id = rule->result;
        c.priority = -(double)rule->rank;
    }
    return heap_push(heap, c);
}

/* Merges the list that starts at sym[0] until no pair may merge. */
static int merge_symbols(const tokenizer *tok, const char *text, symbol *sym, candidate_heap *heap, ramp_error *err) {
    heap->count = 0;
    for (int i = 0; sym[i].next >= 0; i = sym[i].next)
        if (push_pair(tok, text, sym, i, heap) != 0) goto out_of_memory;
    while (heap->count > 0) {
        candidate c = heap_pop(heap);
        symbol *left = &sym[c.left];
        if (left->len == 0 || left->next < 0) continue;
        symbol *right = &sym[left->next];
        if (left->len + right->len != c.len) continue; /* stale: one side has merged since the push */
        left->len += right->len;
        left->id = c.id;
        right->len = 0;
        left->next = right->next;
        if (left->next >= 0) sym[left->next].prev = c.left;
        if (left->prev >= 0 && push_pair(tok, text, sym, left->prev, heap) != 0) goto out_of_memory;
        if (left->next >= 0 && push_pair(tok, text, sym, c.left, heap) != 0) goto out_of_memory;
    }
    return 0;
out_of_memory:
    return ramp_fail(err, "tokenizer: out of memory for %zu merge candidates", heap->count);
}

/* ---- encoding ------------------------------------------------------------------------------- */

/* Collects ids; counts past capacity so the caller learns how much room the text needs. */
typedef struct {
    int *tokens;
    size_t capacity, count;
} token_sink;

static void emit(token_sink *sink, int id) {
    if (sink->count < sink->capacity) sink->tokens[sink->count] = id;
    sink->count++;
}

/* Emits the merged symbols; bytes that never became a piece fall back to byte tokens. */
static void emit_symbols(const tokenizer *tok, const char *text, const symbol *sym, token_sink *sink) {
    for (int i = 0; i >= 0; i = sym[i].next) {
        if (sym[i].id >= 0) {
            emit(sink, sym[i].id);
            continue;
        }
        for (uint32_t k = 0; k < sym[i].len; k++) {
            int id = tok->byte_token[(unsigned char)text[sym[i].start + k]];
            if (id < 0) id = tok->unk;
            if (id >= 0) emit(sink, id);
        }
    }
}

static void link_symbols(symbol *sym, int n) {
    for (int i = 0; i < n; i++) {
        sym[i].prev = i - 1;
        sym[i].next = i + 1 < n ? i + 1 : -1;
    }
}

/* SentencePiece: spaces become U+2581 and one is prefixed, then characters merge by score. */
static int encode_spm(const tokenizer *tok, const char *text, size_t len, token_sink *sink, ramp_error *err) {
    if (len == 0) return 0; /* no lone space prefix for empty text, as llama.cpp */
    char *escaped = malloc(3 * len + SPACE_MARK_LEN);
    symbol *sym = malloc((len + 1) * sizeof *sym);
    candidate_heap heap = {0};
    if (escaped == NULL || sym == NULL) {
        free(escaped);
        free(sym);
        return ramp_fail(err, "tokenizer: out of memory for a %zu-byte text", len);
    }
    size_t n = 0;
    if (tok->add_space_prefix) {
        memcpy(escaped, SPACE_MARK, SPACE_MARK_LEN);
        n = SPACE_MARK_LEN;
    }
    for (size_t i = 0; i < len; i++) {
        if (text[i] == ' ') {
            memcpy(escaped + n, SPACE_MARK, SPACE_MARK_LEN);
            n += SPACE_MARK_LEN;
        } else {
            escaped[n++] = text[i];
        }
    }
    int count = 0;
    for (size_t pos = 0; pos < n;) {
        size_t char_len = utf8_char_length((const unsigned char *)escaped + pos, n - pos);
        sym[count++] = (symbol){
            .start = (uint32_t)pos, .len = (uint32_t)char_len, .id = find_text_piece(tok, escaped + pos, char_len)};
        pos += char_len;
    }
    link_symbols(sym, count);
    int rc = merge_symbols(tok, escaped, sym, &heap, err);
    if (rc == 0) emit_symbols(tok, escaped, sym, sink);
    free(heap.items);
    free(sym);
    free(escaped);
    return rc;
}

/* Byte-level BPE of one pre-tokenized word: each byte starts as the token of its mapped char. */
static int encode_gpt2_word(const tokenizer *tok, const char *word, size_t len, symbol *sym, candidate_heap *heap,
                            token_sink *sink, ramp_error *err) {
    if (tok->ignore_merges && len <= 256) { /* a word that is a token as a whole is that token */
        char mapped[512];
        size_t n = 0;
        for (size_t i = 0; i < len; i++) {
            unsigned cp = tok->byte_to_cp[(unsigned char)word[i]]; /* < 0x800: one or two UTF-8 bytes */
            if (cp < 0x80) mapped[n++] = (char)cp;
            else mapped[n++] = (char)(0xc0 | (cp >> 6)), mapped[n++] = (char)(0x80 | (cp & 0x3f));
        }
        int id = find_text_piece(tok, mapped, n);
        if (id >= 0) {
            emit(sink, id);
            return 0;
        }
    }
    for (size_t i = 0; i < len; i++)
        sym[i] = (symbol){.start = (uint32_t)i, .len = 1, .id = tok->byte_token[(unsigned char)word[i]]};
    link_symbols(sym, (int)len);
    if (merge_symbols(tok, word, sym, heap, err) != 0) return -1;
    for (int i = 0; i >= 0; i = sym[i].next) {
        int id = sym[i].id >= 0 ? sym[i].id : tok->unk; /* only when a vocabulary lacks a byte */
        if (id >= 0) emit(sink, id);
    }
    return 0;
}

typedef struct {
    const tokenizer *tok;
    pcre2_match_data *match[MAX_PRETOKENIZERS];
    symbol *sym;
    candidate_heap heap;
    token_sink *sink;
} gpt2_session;

/* Cuts text[0, len) with pre-tokenizer `level` into its matches and the gaps between them, and
 * hands each piece to the next level (after the last one: to BPE). */
static int split_words(gpt2_session *s, int level, const char *text, size_t len, ramp_error *err) {
    const tokenizer *tok = s->tok;
    if (level >= tok->n_pretokenizers || level >= MAX_PRETOKENIZERS)
        return encode_gpt2_word(tok, text, len, s->sym, &s->heap, s->sink, err);
    int rc = 0;
    for (size_t pos = 0; rc == 0 && pos < len;) {
        int found = pcre2_match(tok->pretokenizers[level], (PCRE2_SPTR)text, len, pos, 0, s->match[level], NULL);
        if (found < 0 && found != PCRE2_ERROR_NOMATCH) {
            PCRE2_UCHAR message[256];
            pcre2_get_error_message(found, message, sizeof message);
            return ramp_fail(err, "tokenizer: pre-tokenizer %d failed at byte %zu: %s", level, pos, (char *)message);
        }
        size_t start = len, end = len;
        if (found >= 0) {
            PCRE2_SIZE *ovector = pcre2_get_ovector_pointer(s->match[level]);
            if (ovector[1] > ovector[0]) start = ovector[0], end = ovector[1];
        }
        /* What the pattern skipped over (text it does not match, or invalid UTF-8) is a piece too. */
        if (start > pos) rc = split_words(s, level + 1, text + pos, start - pos, err);
        if (rc == 0 && end > start) rc = split_words(s, level + 1, text + start, end - start, err);
        pos = end;
    }
    return rc;
}

static int encode_gpt2(const tokenizer *tok, const char *text, size_t len, token_sink *sink, ramp_error *err) {
    if (len == 0) return 0;
    gpt2_session s = {.tok = tok, .sink = sink, .sym = malloc(len * sizeof(symbol))};
    bool ok = s.sym != NULL;
    for (int i = 0; i < tok->n_pretokenizers; i++)
        ok = ok && (s.match[i] = pcre2_match_data_create_from_pattern(tok->pretokenizers[i], NULL)) != NULL;
    int rc = ok ? split_words(&s, 0, text, len, err) : ramp_fail(err, "tokenizer: out of memory for a %zu-byte text", len);
    free(s.heap.items);
    free(s.sym);
    for (int i = 0; i < tok->n_pretokenizers; i++) pcre2_match_data_free(s.match[i]);
    return rc;
}

int tokenizer_encode(const tokenizer *tok, const char *text, size_t len, bool add_bos, int *tokens, size_t capacity,
                     size_t *n_tokens, ramp_error *err) {
    *n_tokens = 0;
    if (text == NULL && len > 0) return ramp_fail(err, "tokenizer: text is NULL but its length is %zu", len);
    if (len > MAX_TEXT_BYTES)
        return ramp_fail(err, "tokenizer: text is %zu bytes, at most %d are supported", len, MAX_TEXT_BYTES);
    token_sink sink = {.tokens = tokens, .capacity = tokens == NULL ? 0 : capacity};
    if (add_bos && tok->add_bos && tok->bos >= 0) emit(&sink, tok->bos);
    int rc =
        tok->kind == TOKENIZER_SPM ? encode_spm(tok, text, len, &sink, err) : encode_gpt2(tok, text, len, &sink, err);
    if (rc != 0) return -1;
    *n_tokens = sink.count;
    if (sink.count > sink.capacity)
        return ramp_fail(err, "tokenizer: the text needs %zu tokens but the buffer holds %zu", sink.count,
                         sink.capacity);
    return 0;
}

/* ---- decoding ------------------------------------------------------------------------------- */

/* Appends into a caller's buffer, dropping what does not fit and keeping room for the NUL. */
typedef struct {
    char *buf;
    size_t capacity, count;
} byte_writer;

static void put(byte_writer *w, const char *bytes, size_t n) {
    for (size_t i = 0; i < n && w->count + 1 < w->capacity; i++) w->buf[w->count++] = bytes[i];
}

static void decode_spm_piece(const char *piece, size_t n, byte_writer *w) {
    for (size_t i = 0; i < n;) {
        if (n - i >= SPACE_MARK_LEN && memcmp(piece + i, SPACE_MARK, SPACE_MARK_LEN) == 0) {
            put(w, " ", 1);
            i += SPACE_MARK_LEN;
        } else {
            put(w, piece + i, 1);
            i++;
        }
    }
}

/* Undoes bytes_to_unicode; a character outside the map (a hand-made piece) is copied as is. */
static void decode_gpt2_piece(const tokenizer *tok, const char *piece, size_t n, byte_writer *w) {
    const unsigned char *s = (const unsigned char *)piece;
    for (size_t i = 0; i < n;) {
        size_t len = utf8_char_length(s + i, n - i);
        unsigned cp = len == 1 ? s[i] : len == 2 ? (unsigned)(s[i] & 0x1f) << 6 | (s[i + 1] & 0x3f) : 0xffff;
        if (cp < sizeof tok->cp_to_byte / sizeof tok->cp_to_byte[0] && tok->cp_to_byte[cp] >= 0) {
            char byte = (char)tok->cp_to_byte[cp];
            put(w, &byte, 1);
        } else {
            put(w, piece + i, len);
        }
        i += len;
    }
}

static void decode_text_piece(const tokenizer *tok, const char *piece, size_t n, byte_writer *w) {
    if (tok->kind == TOKENIZER_SPM)
        decode_spm_piece(piece, n, w);
    else
        decode_gpt2_piece(tok, piece, n, w);
}

/* prev_token is unused: llama2.c drops the space after BOS, but ramp's callers print the prompt
 * themselves and want each piece as it is. */
size_t tokenizer_decode(const tokenizer *tok, int prev_token, int token, char *buf, size_t capacity) {
    (void)prev_token;
    byte_writer w = {.buf = buf, .capacity = capacity};
    if (token >= 0 && token < tok->n_vocab && token != tok->bos && token != tok->eos) {
        const char *piece = tok->pieces[token];
        size_t n = tok->lengths[token];
        unsigned char byte;
        switch (tok->types[token]) {
        case TOKEN_CONTROL:
        case TOKEN_UNKNOWN:
        case TOKEN_UNUSED: break;
        case TOKEN_USER_DEFINED: /* added by hand, stored as plain text */ put(&w, piece, n); break;
        case TOKEN_BYTE:
            if (tok->kind == TOKENIZER_SPM && parse_byte_piece(piece, n, &byte))
                put(&w, (const char *)&byte, 1);
            else
                decode_text_piece(tok, piece, n, &w); /* not named "<0xAB>": take it as text */
            break;
        default: decode_text_piece(tok, piece, n, &w);
        }
    }
    if (capacity > 0) buf[w.count] = '\0';
    return w.count;
}

/* ---- accessors ------------------------------------------------------------------------------ */

tokenizer_kind tokenizer_get_kind(const tokenizer *tok) { return tok->kind; }
int tokenizer_vocab_size(const tokenizer *tok) { return tok->n_vocab; }
int tokenizer_bos(const tokenizer *tok) { return tok->bos; }
int tokenizer_eos(const tokenizer *tok) { return tok->eos; }
int tokenizer_eot(const tokenizer *tok) { return tok->eot; }

const char *tokenizer_piece(const tokenizer *tok, int token) {
    return token >= 0 && token < tok->n_vocab ? tok->pieces[token] : "";
}
