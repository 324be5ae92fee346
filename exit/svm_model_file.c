/* svm_model_file.c: see svm_model_file.h. The text is parsed in two steps: the header into a
 * plain struct, every check done, then the vectors straight into the model's own arrays. Numbers
 * are copied into a small NUL-terminated buffer before strtod/strtol, so nothing reads past the
 * text, which need not end in a NUL. */
#include "svm_model_file.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <svm.h>

#include "input_file.h"

#define TOKEN_MAX 64 /* longer than any number libsvm prints (%.17g) */

/* ---- lines and tokens ---- */

typedef struct {
    const char *path;
    const char *pos, *end;
    int line;         /* 1-based number of the line last taken */
    bool terminated;  /* it ended in '\n': libsvm ends every line so, a line without is cut short */
    ramp_error *err;
} cursor;

static int fail_line(const cursor *c, const char *format, ...) __attribute__((format(printf, 2, 3)));

/* "PATH:line N (libsvm model): what" */
static int fail_line(const cursor *c, const char *format, ...) {
    char what[sizeof c->err->message];
    va_list args;
    va_start(args, format);
    vsnprintf(what, sizeof what, format, args);
    va_end(args);
    return ramp_fail(c->err, "%s:line %d (libsvm model): %s", c->path, c->line, what);
}

/* The next line without its '\n' (and a '\r' before it); false at the end of the text. */
static bool take_line(cursor *c, const char **start, const char **stop) {
    if (c->pos >= c->end) return false;
    const char *newline = memchr(c->pos, '\n', (size_t)(c->end - c->pos));
    *start = c->pos;
    *stop = newline ? newline : c->end;
    c->pos = newline ? newline + 1 : c->end;
    c->terminated = newline != NULL;
    if (*stop > *start && (*stop)[-1] == '\r') (*stop)--;
    c->line++;
    return true;
}

static bool is_blank(char ch) {
    return ch == ' ' || ch == '\t';
}

/* The next whitespace-separated token of [*p, stop) into out (NUL-terminated, at most TOKEN_MAX - 1
 * bytes; longer tokens are cut and *cut set). False when the line has no more tokens. */
static bool take_token(const char **p, const char *stop, char out[TOKEN_MAX], bool *cut) {
    while (*p < stop && is_blank(**p)) (*p)++;
    if (*p >= stop) return false;
    size_t n = 0;
    *cut = false;
    for (; *p < stop && !is_blank(**p); (*p)++) {
        if (n < TOKEN_MAX - 1) out[n++] = **p;
        else *cut = true;
    }
    out[n] = '\0';
    return true;
}

/* Whole-token conversions: no sign games, no trailing bytes, no overflow. */
static bool token_to_long(const char *token, long *out) {
    char *end;
    errno = 0;
    long value = strtol(token, &end, 10);
    if (end == token || *end || errno) return false;
    *out = value;
    return true;
}

static bool token_to_finite(const char *token, double *out) {
    char *end;
    errno = 0;
    double value = strtod(token, &end);
    if (end == token || *end || !isfinite(value)) return false;
    *out = value;
    return true;
}

/* ---- the header ---- */

enum { KEY_SVM_TYPE, KEY_KERNEL_TYPE, KEY_GAMMA, KEY_NR_CLASS, KEY_TOTAL_SV, KEY_RHO, KEY_LABEL, KEY_NR_SV, KEY_COUNT };
static const char *const KEYS[KEY_COUNT] = {"svm_type", "kernel_type", "gamma", "nr_class",
                                            "total_sv", "rho",         "label", "nr_sv"};
/* Values each key takes (nr_class is 2, so label and nr_sv take two). */
static const int KEY_VALUES[KEY_COUNT] = {1, 1, 1, 1, 1, 1, 2, 2};

typedef struct {
    bool seen[KEY_COUNT];
    double gamma, rho;
    long total_sv;
    long label[2], nr_sv[2];
} header;

static int key_index(const char *word) {
    for (int k = 0; k < KEY_COUNT; k++)
        if (strcmp(word, KEYS[k]) == 0) return k;
    return -1;
}

/* Checks one value of key k and stores it. */
static int header_value(cursor *c, header *h, int k, int i, const char *token) {
    long number;
    switch (k) {
    case KEY_SVM_TYPE:
        if (strcmp(token, "c_svc") != 0)
            return fail_line(c, "key 'svm_type' expected c_svc (exit classifiers are C-SVC), found '%s'", token);
        return 0;
    case KEY_KERNEL_TYPE:
        if (strcmp(token, "rbf") != 0)
            return fail_line(c, "key 'kernel_type' expected rbf (exit classifiers use the RBF kernel), found '%s'", token);
        return 0;
    case KEY_GAMMA:
        if (!token_to_finite(token, &h->gamma) || !(h->gamma > 0) || h->gamma > SVM_FILE_MAX_GAMMA)
            return fail_line(c, "key 'gamma' expected a finite number in (0, %g], found '%s'", SVM_FILE_MAX_GAMMA, token);
        return 0;
    case KEY_NR_CLASS:
        if (!token_to_long(token, &number) || number != 2)
            return fail_line(c, "key 'nr_class' expected 2 (exit classifiers have two classes), found '%s'", token);
        return 0;
    case KEY_TOTAL_SV:
        return token_to_long(token, &h->total_sv) ? 0 : fail_line(c, "key 'total_sv' expected an integer, found '%s'", token);
    case KEY_RHO:
        if (!token_to_finite(token, &h->rho) || fabs(h->rho) > SVM_FILE_MAX_MAGNITUDE)
            return fail_line(c, "key 'rho' expected a finite number of magnitude at most %g, found '%s'",
                             SVM_FILE_MAX_MAGNITUDE, token);
        return 0;
    case KEY_LABEL:
        if (!token_to_long(token, &h->label[i]) || (h->label[i] != 1 && h->label[i] != -1))
            return fail_line(c, "key 'label' value %d expected 1 or -1, found '%s'", i + 1, token);
        return 0;
    case KEY_NR_SV:
        if (!token_to_long(token, &h->nr_sv[i]) || h->nr_sv[i] < 1)
            return fail_line(c, "key 'nr_sv' value %d expected a count of at least 1 (both classes have support "
                                "vectors), found '%s'", i + 1, token);
        return 0;
    }
    return 0;
}

/* Header lines up to and including "SV". */
static int read_header(cursor *c, header *h, const svm_file_limits *limits) {
    const char *start, *stop;
    char token[TOKEN_MAX];
    bool cut;
    for (;;) {
        if (!take_line(c, &start, &stop) || !c->terminated)
            return fail_line(c, "expected a line 'SV' after the header, found the end of the file");
        const char *p = start;
        if (!take_token(&p, stop, token, &cut)) return fail_line(c, "expected a header line 'key value', found a blank line");
        if (strcmp(token, "SV") == 0) {
            if (take_token(&p, stop, token, &cut)) return fail_line(c, "expected 'SV' alone on its line, found '%s' after it", token);
            break;
        }
        int k = key_index(token);
        if (k < 0)
            return fail_line(c, "unexpected key '%s', expected svm_type, kernel_type, gamma, nr_class, total_sv, rho, label, "
                                "nr_sv or SV (exit classifiers have no probability model)", token);
        if (h->seen[k]) return fail_line(c, "key '%s' appears twice", KEYS[k]);
        h->seen[k] = true;
        for (int i = 0; i < KEY_VALUES[k]; i++) {
            if (!take_token(&p, stop, token, &cut))
                return fail_line(c, "key '%s' expected %d value%s, found %d", KEYS[k], KEY_VALUES[k],
                                 KEY_VALUES[k] > 1 ? "s" : "", i);
            if (cut) return fail_line(c, "key '%s' value %d is longer than %d bytes", KEYS[k], i + 1, TOKEN_MAX - 1);
            if (header_value(c, h, k, i, token)) return -1;
        }
        if (take_token(&p, stop, token, &cut))
            return fail_line(c, "key '%s' expected %d value%s, found more ('%s')", KEYS[k], KEY_VALUES[k],
                             KEY_VALUES[k] > 1 ? "s" : "", token);
    }
    for (int k = 0; k < KEY_COUNT; k++)
        if (!h->seen[k]) return fail_line(c, "missing key '%s' before SV", KEYS[k]);
    if (h->label[0] == h->label[1])
        return fail_line(c, "key 'label' expected the two labels 1 and -1, found %ld twice", h->label[0]);
    if (h->total_sv < 2 || h->total_sv > limits->max_vectors)
        return fail_line(c, "key 'total_sv' expected 2..%d support vectors, found %ld", limits->max_vectors, h->total_sv);
    if (h->nr_sv[0] + h->nr_sv[1] != h->total_sv)
        return fail_line(c, "key 'nr_sv' expected counts adding up to total_sv %ld, found %ld + %ld", h->total_sv,
                         h->nr_sv[0], h->nr_sv[1]);
    return 0;
}

/* ---- the vectors ---- */

/* Parses support vector i's line into nodes (terminated by index -1); returns the nodes used,
 * terminator included, or -1. */
static long read_vector(cursor *c, const header *h, const svm_file_limits *limits, long i, const char *start,
                        const char *stop, double *coefficient, struct svm_node *nodes, long room) {
    char token[TOKEN_MAX];
    bool cut;
    const char *p = start;
    if (!take_token(&p, stop, token, &cut))
        return fail_line(c, "expected support vector %ld of %ld (total_sv), found a blank line", i + 1, h->total_sv);
    /* The first nr_sv[0] vectors belong to label[0], whose side of the decision is positive. */
    bool positive = i < h->nr_sv[0];
    if (cut || !token_to_finite(token, coefficient) || *coefficient == 0 || (*coefficient > 0) != positive ||
        fabs(*coefficient) > limits->max_coefficient)
        return fail_line(c, "support vector %ld: coefficient expected a finite %s number of magnitude at most %g "
                            "(vector of label %ld), found '%s'",
                         i + 1, positive ? "positive" : "negative", limits->max_coefficient,
                         h->label[positive ? 0 : 1], token);
    long used = 0, previous = 0;
    while (take_token(&p, stop, token, &cut)) {
        char *colon = strchr(token, ':');
        long index;
        double value;
        if (cut || !colon) return fail_line(c, "support vector %ld: expected INDEX:VALUE, found '%s'", i + 1, token);
        *colon = '\0';
        if (!token_to_long(token, &index) || index <= previous || index > limits->max_index)
            return fail_line(c, "support vector %ld: index expected %ld..%d (increasing), found '%s'", i + 1,
                             previous + 1, limits->max_index, token);
        if (!token_to_finite(colon + 1, &value) || fabs(value) > SVM_FILE_MAX_MAGNITUDE)
            return fail_line(c, "support vector %ld: input %ld expected a finite value of magnitude at most %g, found '%s'",
                             i + 1, index, SVM_FILE_MAX_MAGNITUDE, colon + 1);
        if (used + 1 >= room) return fail_line(c, "support vector %ld: more inputs than the file's colons", i + 1);
        nodes[used++] = (struct svm_node){(int)index, value};
        previous = index;
    }
    nodes[used++].index = -1;
    return used;
}

static size_t count_byte(const char *p, const char *end, char byte) {
    size_t n = 0;
    for (; (p = memchr(p, byte, (size_t)(end - p))) != NULL; p++) n++;
    return n;
}

/* A model laid out as svm_load_model's: one block of nodes, SV[i] pointing into it. */
static struct svm_model *model_new(const header *h, long nodes) {
    struct svm_model *m = calloc(1, sizeof *m);
    if (!m) return NULL;
    m->param.svm_type = C_SVC;
    m->param.kernel_type = RBF;
    m->param.gamma = h->gamma;
    m->nr_class = 2;
    m->l = (int)h->total_sv;
    m->free_sv = 1;
    m->SV = calloc((size_t)m->l, sizeof *m->SV);
    m->sv_coef = calloc(1, sizeof *m->sv_coef);
    if (m->sv_coef) m->sv_coef[0] = malloc((size_t)m->l * sizeof **m->sv_coef);
    m->rho = malloc(sizeof *m->rho);
    m->label = malloc(2 * sizeof *m->label);
    m->nSV = malloc(2 * sizeof *m->nSV);
    struct svm_node *block = malloc((size_t)nodes * sizeof *block);
    if (m->SV) m->SV[0] = block;
    if (!m->SV || !m->sv_coef || !m->sv_coef[0] || !m->rho || !m->label || !m->nSV || !block) {
        if (!m->SV) free(block);
        svm_free_and_destroy_model(&m);
        return NULL;
    }
    m->rho[0] = h->rho;
    for (int k = 0; k < 2; k++) {
        m->label[k] = (int)h->label[k];
        m->nSV[k] = (int)h->nr_sv[k];
    }
    return m;
}

int svm_model_parse(const char *text, size_t size, const char *path, const svm_file_limits *limits,
                    struct svm_model **out, ramp_error *err) {
    *out = NULL;
    cursor c = {.path = path, .pos = text, .end = text + size, .err = err};
    header h = {0};
    if (read_header(&c, &h, limits)) return -1;
    /* Nodes needed: at most one per colon left, and one terminator per vector. */
    size_t colons = count_byte(c.pos, c.end, ':');
    size_t most = (size_t)h.total_sv * (size_t)limits->max_index;
    long room = (long)((colons < most ? colons : most) + (size_t)h.total_sv);
    struct svm_model *m = model_new(&h, room);
    if (!m) return ramp_fail(err, "%s: out of memory for %ld support vectors", path, h.total_sv);
    struct svm_node *next = m->SV[0];
    for (long i = 0; i < h.total_sv; i++) {
        const char *start, *stop;
        if (!take_line(&c, &start, &stop)) {
            fail_line(&c, "expected %ld support vectors (total_sv), found %ld: the file ends early", h.total_sv, i);
            svm_free_and_destroy_model(&m);
            return -1;
        }
        long used = c.terminated ? read_vector(&c, &h, limits, i, start, stop, &m->sv_coef[0][i], next, room)
                                 : fail_line(&c, "support vector %ld of %ld has no end of line: the file is cut short",
                                             i + 1, h.total_sv);
        if (used < 0) {
            svm_free_and_destroy_model(&m);
            return -1;
        }
        m->SV[i] = next;
        next += used;
        room -= used;
    }
    const char *start, *stop;
    while (take_line(&c, &start, &stop)) {
        for (const char *p = start; p < stop; p++)
            if (!is_blank(*p)) {
                fail_line(&c, "expected the end of the file after %ld support vectors (total_sv), found more", h.total_sv);
                svm_free_and_destroy_model(&m);
                return -1;
            }
    }
    *out = m;
    return 0;
}

int svm_model_read(const char *path, const svm_file_limits *limits, struct svm_model **out, ramp_error *err) {
    *out = NULL;
    const input_limits file = {.what = "libsvm model file", .max_bytes = SVM_FILE_MAX_BYTES, .allow_nul = false};
    char *text;
    size_t size;
    if (input_file_read(path, &file, &text, &size, err)) return -1;
    int status = svm_model_parse(text, size, path, limits, out, err);
    free(text);
    return status;
}
