/* transport.h: moving frames (see wire.h) between the ranks of a job.
 *
 * Two implementations behind one interface:
 *  - MPI: one rank per process. Sends are non-blocking (MPI_Isend; the transport owns the frame
 *    until the send completes) so that a ring of ranks that all send at once cannot deadlock.
 *    Receives poll with MPI_Iprobe, then sleep when idle, so an idle rank does not steal a core
 *    from a busy one when ranks outnumber cores; when the whole job is on one node, a sender's
 *    doorbell (doorbell.h) wakes the receiver as its frame is sent, so the sleeps can be long.
 *  - in-process: every rank lives in this process. Rank 0 (the coordinator) calls
 *    transport_receive; frames addressed to other ranks are handed to their registered handler
 *    (a pipeline stage) one at a time, in send order, until a frame for rank 0 turns up.
 * transport_send always takes ownership of the frame (malloc'ed), also on failure.
 *
 * Urgent frames (exit Decisions) travel apart from the others: a receiver takes them first, and a
 * busy rank can pick them out between two layers (transport_poll_urgent) without taking the
 * frames queued before them. Frames of one kind keep their order per sender; an urgent frame may
 * overtake an ordinary one sent before it.
 */
#ifndef RAMP_TRANSPORT_H
#define RAMP_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"

typedef struct transport transport;

/* Handles one frame for a local rank; returns 0 or -1 with err set. Frame ownership stays with
 * the transport. */
typedef int (*transport_handler)(void *context, int source, const uint8_t *frame, size_t length, ramp_error *err);

/* True when this process was started by mpirun/srun with more than one rank. */
bool transport_launched_by_mpi(void);

int transport_open_mpi(transport **out, int *argc, char ***argv, ramp_error *err);
int transport_open_local(transport **out, int size, ramp_error *err);
void transport_set_handler(transport *t, int rank, transport_handler handler, void *context);
/* Rank 0 records that it set up a pipeline on the workers (else they are released at exit). */
void transport_mark_pipeline_started(transport *t);
bool transport_pipeline_started(const transport *t);
/* Waits for pending sends (MPI), finalizes MPI, frees. */
void transport_close(transport *t);
/* Ends every rank of the job at once with this exit status (MPI_Abort). */
void transport_abort(transport *t, int status) __attribute__((noreturn));

int transport_rank(const transport *t);
int transport_size(const transport *t);
bool transport_is_local(const transport *t);
uint64_t transport_bytes_sent(const transport *t);
uint64_t transport_bytes_received(const transport *t);

int transport_send(transport *t, int destination, uint8_t *frame, size_t length, ramp_error *err);
int transport_send_urgent(transport *t, int destination, uint8_t *frame, size_t length, ramp_error *err);
/* An urgent frame that has arrived, without waiting: 1 with it (caller frees), 0 when there is
 * none (always in-process, where frames run in send order anyway), -1 on error. */
int transport_poll_urgent(transport *t, int *source, uint8_t **frame, size_t *length, ramp_error *err);
/* Sends `bytes` bytes to peer and receives as many from it, at once, apart from the frames (MPI
 * only: the two processes of a layer-parallel pair swap their contributions; both call it). */
int transport_exchange(transport *t, int peer, const void *send, void *receive, size_t bytes, ramp_error *err);
/* Waits up to timeout_seconds (< 0: forever) for the next frame to this rank. Returns 1 with a
 * frame (caller frees), 0 on timeout, -1 on error. stop, when not NULL, is polled: a non-zero
 * value ends the wait early (returns 0). */
int transport_receive(transport *t, double timeout_seconds, const volatile int *stop, int *source, uint8_t **frame,
                      size_t *length, ramp_error *err);
/* Ends this rank's wait in transport_receive early (another thread changed its stop flag). */
void transport_wake(transport *t);

#endif
