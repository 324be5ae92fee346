/* clock.h: seconds on the monotonic clock, for durations (busy time, tokens/s, timeouts),
 * realtime deadlines for condition-variable waits, and the process's CPU time. */
#ifndef RAMP_CLOCK_H
#define RAMP_CLOCK_H

#include <time.h>

static inline double clock_seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* The realtime clock `seconds` from now: the deadline pthread_cond_timedwait wants. */
static inline struct timespec clock_realtime_after(double seconds) {
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    long whole = (long)seconds;
    t.tv_sec += whole;
    t.tv_nsec += (long)((seconds - (double)whole) * 1e9);
    if (t.tv_nsec >= 1000000000L) {
        t.tv_sec += 1;
        t.tv_nsec -= 1000000000L;
    }
    return t;
}

/* CPU time (user + system, every thread) this process has used since it started. */
static inline double clock_process_cpu_seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

#endif
