/* metrics_stats.h: the engine's running counters: requests by how they ended, tokens, and latency
 * histograms (Prometheus style: cumulative buckets with fixed bounds, in seconds).
 * Updated by the engine loop, read by /metrics; both hold the lock passed in.
 */
#ifndef RAMP_METRICS_STATS_H
#define RAMP_METRICS_STATS_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#define METRICS_BUCKETS 16
#define METRICS_FINISH_KINDS 5 /* engine_finish values */

typedef struct {
    uint64_t counts[METRICS_BUCKETS + 1]; /* per bound, then +Inf; not cumulative */
    uint64_t count;
    double sum;
} metrics_histogram;

typedef struct {
    uint64_t finished[METRICS_FINISH_KINDS];
    uint64_t prompt_tokens, generated_tokens;
    metrics_histogram time_to_first_token;
    metrics_histogram time_per_output_token; /* between consecutive tokens of a request */
    metrics_histogram request_seconds;
    /* copied from the exit bookkeeping by the engine loop (exit_run is the loop's own) */
    long exit_histogram[65]; /* per exit point, then full depth (EXIT_MAX_POINTS + 1) */
    long layers_executed, layer_evaluations_possible;
} engine_stats;

extern const double metrics_bucket_bounds[METRICS_BUCKETS];

void metrics_note_token(engine_stats *s, pthread_mutex_t *lock, double seconds, bool first);
void metrics_note_finish(engine_stats *s, pthread_mutex_t *lock, int finish, int prompt_tokens, int generated_tokens,
                         double seconds);

#endif
