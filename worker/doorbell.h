/* doorbell.h: waking a rank of this node the moment a frame is sent to it.
 *
 * MPI's shared-memory transport has no blocking receive: a rank with nothing to do must poll, and
 * each poll that finds nothing costs a wake-up that takes a core from a rank that computes (ranks
 * outnumber cores on a shared node). The ranks of a node therefore share one counter per rank. A
 * sender adds one to the receiver's counter after its MPI_Isend and wakes it (futex), so a waiting
 * rank sleeps in the kernel and wakes when a frame is there. Ranks on other nodes cannot ring:
 * their frames are still found by polling (the caller's wait is bounded).
 *
 * The shared memory is an MPI window of the node's ranks: doorbells_open and doorbells_close are
 * collective over MPI_COMM_WORLD. A node that cannot share memory gets no doorbells (*out NULL)
 * and its ranks poll as before.
 */
#ifndef RAMP_DOORBELL_H
#define RAMP_DOORBELL_H

#include <stdbool.h>
#include <stdint.h>

typedef struct doorbells doorbells;

/* Sets *out to the node's doorbells, or to NULL when they cannot be had. */
void doorbells_open(doorbells **out);
void doorbells_close(doorbells *d);
/* True when every rank of the job is on this node: every frame rings. */
bool doorbells_cover_job(const doorbells *d);
/* Ranks of this job on this node (0 without doorbells). */
int doorbells_node_ranks(const doorbells *d);
/* This rank's count: read it before looking for frames, and wait on that value. */
uint32_t doorbells_count(const doorbells *d);
/* Rings world_rank's bell when it is on this node (any thread may ring, also its own). */
void doorbells_ring(doorbells *d, int world_rank);
/* Sleeps until this rank's count differs from seen, a signal arrives or seconds pass. */
void doorbells_wait(doorbells *d, uint32_t seen, double seconds);

#endif
