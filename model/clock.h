/* clock.h: seconds on the monotonic clock, for durations (busy time, tokens/s, timeouts). */
#ifndef RAMP_CLOCK_H
#define RAMP_CLOCK_H

#include <time.h>

static inline double clock_seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

#endif
