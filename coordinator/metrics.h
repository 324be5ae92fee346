/* metrics.h: a run's figures in the three shapes people read them: the summary on stderr, the
 * --metrics-json document, and Prometheus text for a server's GET /metrics. One place, so the
 * names agree everywhere.
 */
#ifndef RAMP_METRICS_H
#define RAMP_METRICS_H

#include <stdio.h>

#include "error.h"
#include "metrics_stats.h"

typedef struct pipeline pipeline;

void metrics_print_summary(const pipeline *p, FILE *out);
int metrics_write_json(const pipeline *p, const char *path, ramp_error *err);
/* Appends the engine's metrics in Prometheus text format to a growing buffer (*text malloc'ed,
 * *length bytes). Safe to call from any thread while the engine runs. Returns 0 or -1 (memory). */
int metrics_prometheus(pipeline *p, char **text, size_t *length, size_t *capacity);
/* printf into a growing buffer (the helper the front ends use for their own lines). */
int metrics_appendf(char **text, size_t *length, size_t *capacity, const char *format, ...)
    __attribute__((format(printf, 4, 5)));

#endif
