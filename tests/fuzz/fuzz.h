/* fuzz.h: what every libFuzzer harness in tests/fuzz/ shares.
 *
 * A harness is one file defining `int fuzz_NAME(const uint8_t *data, size_t size)` and then
 * FUZZ_ENTRY(fuzz_NAME). Built by `make fuzz` (clang, -fsanitize=fuzzer,address,undefined), the
 * entry is libFuzzer's LLVMFuzzerTestOneInput. Built with FUZZ_REPLAY defined, there is no entry:
 * tests/test_fuzz_regressions.c includes the harness files and replays every input that once
 * crashed one (tests/fuzz/regressions/NAME/) under `make test`, so each finding stays fixed.
 * Helpers here are static and prefixed fuzz_, and each harness prefixes its own, so that several
 * harnesses fit in one translation unit.
 *
 * A harness fails by abort() (fuzz_require) when a property the code promises does not hold;
 * sanitizers report the rest. Files a loader wants by path are written to a per-process scratch
 * directory (/dev/shm when there is one: no disk traffic per input).
 */
#ifndef RAMP_FUZZ_H
#define RAMP_FUZZ_H

#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"
#include "kernels.h"

#ifdef FUZZ_REPLAY
#define FUZZ_ENTRY(function)
#else
#define FUZZ_ENTRY(function)                                                                                        \
    int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);                                                  \
    int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) { return function(data, size); }
#endif

/* Aborts with a message when a promised property does not hold. */
#define fuzz_require(condition, ...)                                                                                \
    do {                                                                                                            \
        if (!(condition)) {                                                                                         \
            fprintf(stderr, "fuzz property failed: %s (%s:%d): ", #condition, __FILE__, __LINE__);                 \
            fprintf(stderr, __VA_ARGS__);                                                                           \
            fputc('\n', stderr);                                                                                    \
            abort();                                                                                                \
        }                                                                                                           \
    } while (0)

/* Error messages are one printable line (error.h): no byte below 0x20 and no DEL, whatever the
 * input quoted into them. */
static inline void fuzz_require_clean_message(const ramp_error *err) {
    fuzz_require(err->message[0] != '\0', "a failure without a message");
    for (const char *p = err->message; *p; p++)
        fuzz_require((unsigned char)*p >= 0x20 && *p != 0x7f, "control byte 0x%02x in: %s", (unsigned char)*p,
                     err->message);
}

static char fuzz_scratch[64];

/* Removes the scratch directory and what the harness wrote there (at exit). */
static inline void fuzz_scratch_remove(void) {
    DIR *d = opendir(fuzz_scratch);
    if (!d) return;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        if (e->d_name[0] == '.') continue;
        char path[512];
        snprintf(path, sizeof path, "%s/%s", fuzz_scratch, e->d_name);
        unlink(path);
    }
    closedir(d);
    rmdir(fuzz_scratch);
}

/* A per-process scratch directory, created on first use and removed at exit. */
static inline const char *fuzz_scratch_dir(void) {
    if (!fuzz_scratch[0]) {
        const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
        snprintf(fuzz_scratch, sizeof fuzz_scratch, "%s/ramp-fuzz-%ld", base, (long)getpid());
        mkdir(fuzz_scratch, 0700);
        atexit(fuzz_scratch_remove);
    }
    return fuzz_scratch;
}

/* path, written with exactly these bytes. */
static inline void fuzz_write_file(const char *path, const uint8_t *data, size_t size) {
    FILE *f = fopen(path, "wb");
    fuzz_require(f != NULL, "cannot write %s", path);
    if (size > 0) fuzz_require(fwrite(data, 1, size, f) == size, "short write to %s", path);
    fclose(f);
}

static inline void fuzz_scratch_path(const char *name, char *out, size_t capacity) {
    snprintf(out, capacity, "%s/%s", fuzz_scratch_dir(), name);
}

/* $RAMP_SHARED/relative (default ../shared/relative). */
static inline void fuzz_shared_path(const char *relative, char *out, size_t capacity) {
    const char *shared = getenv("RAMP_SHARED");
    snprintf(out, capacity, "%s/%s", shared && *shared ? shared : "../shared", relative);
}

/* Reads a stored matrix's first and last bytes: ASan reports it when the weights promised by a
 * loaded model do not lie inside the mapping. */
static inline unsigned char fuzz_touch_matrix(const weight_matrix *w) {
    if (!w->data || w->rows <= 0) return 0;
    const volatile unsigned char *bytes = w->data;
    return (unsigned char)(bytes[0] + bytes[(size_t)w->rows * w->row_bytes - 1]);
}

#endif
