/* worker.h: the life of a pipeline stage's process (ranks 1..P under mpirun/srun).
 *
 * A worker reads nothing of the job from its command line: it waits for rank 0's Setup (the
 * model path, its slice of layers, the exit points, the sizes), loads its slice, answers Hello,
 * then receives, computes and forwards until rank 0 says SHUTDOWN. Any failure is sent to rank 0
 * (which names the rank and ends the job); a worker never waits forever: without rank 0's Setup
 * or, after SIGTERM/SIGINT, without its shutdown within the grace, it aborts the job itself.
 */
#ifndef RAMP_WORKER_H
#define RAMP_WORKER_H

#include <stdbool.h>

#include "transport.h"

/* Runs the stage on this rank; returns the process exit status. */
int worker_main(transport *t);

/* Threads for one rank: `requested` if > 0, else SLURM_CPUS_PER_TASK when set, else the node's
 * cores shared by the ranks that compute on it (rank 0 mostly waits). */
int threads_per_rank(int requested, bool in_process, int world_size);
/* The number of threads that share each product's tiles (model/parallel.c; results do not
 * depend on it). */
void threads_apply(int threads);
/* --run-ahead auto: true where this node has more cores than the job's computing ranks on it. */
bool run_ahead_pays(int world_size);

#endif
