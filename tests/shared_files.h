/* shared_files.h: files of the shared folder for the unit tests: $RAMP_SHARED, else ../shared.
 * A test whose file is missing is skipped, not failed: the folder is not part of the repository. */
#ifndef RAMP_TESTS_SHARED_FILES_H
#define RAMP_TESTS_SHARED_FILES_H

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/* Writes $RAMP_SHARED/relative into buf and returns it; skips the test when it cannot be read. */
static inline const char *shared_file(char *buf, size_t size, const char *relative) {
    const char *dir = getenv("RAMP_SHARED");
    snprintf(buf, size, "%s/%s", dir && *dir ? dir : "../shared", relative);
    if (access(buf, R_OK) != 0) cr_skip_test("%s not found (set RAMP_SHARED to the shared folder)", buf);
    return buf;
}

#endif
