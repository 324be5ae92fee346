#include "transport.h"

#include <mpi.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "doorbell.h"

enum { FRAME_TAG = 7, EXCHANGE_TAG = 8, URGENT_TAG = 9 };

/* Empty polls before an idle receiver sleeps (where it spins at all: spin_polls_for); the longest
 * sleep when every frame rings a doorbell. */
enum { SPIN_POLLS = 200 };
#define DOORBELL_SLEEP_SECONDS 0.05

typedef struct {
    int source, destination;
    uint8_t *frame;
    size_t length;
} queued_frame;

typedef struct {
    MPI_Request request;
    uint8_t *frame;
    int destination;
} pending_send;

struct transport {
    int rank, size;
    bool local;
    bool pipeline_started; /* rank 0 sent the stages their Setup */
    uint64_t bytes_sent, bytes_received;
    /* MPI */
    doorbells *doorbells; /* NULL: no shared memory, receivers poll */
    int spin_polls;       /* empty polls before an idle receiver sleeps */
    pending_send *pending;
    int n_pending, pending_capacity;
    /* in-process */
    queued_frame *queue;
    size_t queue_head, queue_tail, queue_capacity;
    transport_handler *handlers;
    void **contexts;
};

/* Spinning before a sleep only pays where every rank of the node has a core of its own. Where ranks
 * outnumber cores, Open MPI yields the core at every empty poll: a context switch that a computing
 * rank pays for, two hundred times per wait, while the sender's doorbell wakes a sleeper anyway
 * (SST-2, lite16-tasks, 3 stages on 2 cores, exit runs: rank 0's CPU samples 18% lower, stage 3's
 * per row-layer 2% lower, 3 interleaved pairs under perf). */
static int spin_polls_for(const doorbells *d) {
    const long cores = sysconf(_SC_NPROCESSORS_ONLN);
    return d && cores > 0 && doorbells_node_ranks(d) > cores ? 0 : SPIN_POLLS;
}

bool transport_launched_by_mpi(void) {
    const char *variables[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "SLURM_STEP_NUM_TASKS"};
    for (size_t i = 0; i < sizeof variables / sizeof variables[0]; i++)
        if (getenv(variables[i])) return true;
    return false;
}

int transport_open_mpi(transport **out, int *argc, char ***argv, ramp_error *err) {
    transport *t = calloc(1, sizeof *t);
    if (!t) return ramp_fail(err, "transport: out of memory");
    int provided;
    if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) {
        free(t);
        return ramp_fail(err, "transport: MPI_Init failed");
    }
    /* Errors come back as values: we report them with the rank and end the job ourselves. */
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &t->rank);
    MPI_Comm_size(MPI_COMM_WORLD, &t->size);
    const char *doorbells_setting = getenv("RAMP_DOORBELLS"); /* 0: poll, as across nodes */
    if (!(doorbells_setting && strcmp(doorbells_setting, "0") == 0)) doorbells_open(&t->doorbells);
    t->spin_polls = spin_polls_for(t->doorbells);
    *out = t;
    return 0;
}

int transport_open_local(transport **out, int size, ramp_error *err) {
    transport *t = calloc(1, sizeof *t);
    if (!t || size < 1) {
        free(t);
        return ramp_fail(err, "transport: cannot create an in-process transport of %d ranks", size);
    }
    t->local = true;
    t->size = size;
    t->handlers = calloc((size_t)size, sizeof *t->handlers);
    t->contexts = calloc((size_t)size, sizeof *t->contexts);
    if (!t->handlers || !t->contexts) {
        transport_close(t);
        return ramp_fail(err, "transport: out of memory");
    }
    *out = t;
    return 0;
}

void transport_mark_pipeline_started(transport *t) { t->pipeline_started = true; }
bool transport_pipeline_started(const transport *t) { return t->pipeline_started; }

void transport_set_handler(transport *t, int rank, transport_handler handler, void *context) {
    if (rank >= 0 && rank < t->size && t->local) {
        t->handlers[rank] = handler;
        t->contexts[rank] = context;
    }
}

static void reap_sends(transport *t, bool wait) {
    for (int i = 0; i < t->n_pending;) {
        int done = 0;
        if (wait) {
            MPI_Wait(&t->pending[i].request, MPI_STATUS_IGNORE);
            done = 1;
        } else {
            MPI_Test(&t->pending[i].request, &done, MPI_STATUS_IGNORE);
        }
        if (done) {
            /* A send MPI could not post at once was posted since: ring again (spurious otherwise). */
            if (!wait) doorbells_ring(t->doorbells, t->pending[i].destination);
            free(t->pending[i].frame);
            t->pending[i] = t->pending[--t->n_pending];
        } else {
            i++;
        }
    }
}

void transport_close(transport *t) {
    if (!t) return;
    if (t->local) {
        for (size_t i = t->queue_head; i < t->queue_tail; i++) free(t->queue[i].frame);
        free(t->queue);
        free(t->handlers);
        free(t->contexts);
    } else {
        reap_sends(t, true);
        free(t->pending);
        doorbells_close(t->doorbells);
        MPI_Finalize();
    }
    free(t);
}

void transport_abort(transport *t, int status) {
    if (t && !t->local) MPI_Abort(MPI_COMM_WORLD, status);
    exit(status);
}

int transport_rank(const transport *t) { return t->rank; }
int transport_size(const transport *t) { return t->size; }
bool transport_is_local(const transport *t) { return t->local; }
uint64_t transport_bytes_sent(const transport *t) { return t->bytes_sent; }
uint64_t transport_bytes_received(const transport *t) { return t->bytes_received; }

static int local_enqueue(transport *t, int destination, uint8_t *frame, size_t length, ramp_error *err) {
    if (t->queue_tail == t->queue_capacity) {
        if (t->queue_head > 0) { /* slide the live entries to the front before growing */
            memmove(t->queue, t->queue + t->queue_head, (t->queue_tail - t->queue_head) * sizeof *t->queue);
            t->queue_tail -= t->queue_head;
            t->queue_head = 0;
        }
        if (t->queue_tail == t->queue_capacity) {
            size_t capacity = t->queue_capacity ? 2 * t->queue_capacity : 64;
            queued_frame *grown = realloc(t->queue, capacity * sizeof *grown);
            if (!grown) {
                free(frame);
                return ramp_fail(err, "transport: out of memory queueing a frame");
            }
            t->queue = grown;
            t->queue_capacity = capacity;
        }
    }
    t->queue[t->queue_tail++] = (queued_frame){t->rank, destination, frame, length};
    return 0;
}

static int send_tagged(transport *t, int destination, uint8_t *frame, size_t length, int tag, ramp_error *err) {
    if (destination < 0 || destination >= t->size) {
        free(frame);
        return ramp_fail(err, "transport: no rank %d in a job of %d", destination, t->size);
    }
    t->bytes_sent += length;
    if (t->local) return local_enqueue(t, destination, frame, length, err);
    if (length > INT32_MAX) {
        free(frame);
        return ramp_fail(err, "transport: frame of %zu bytes exceeds MPI's count limit", length);
    }
    if (t->n_pending == t->pending_capacity) {
        int capacity = t->pending_capacity ? 2 * t->pending_capacity : 16;
        pending_send *grown = realloc(t->pending, (size_t)capacity * sizeof *grown);
        if (!grown) {
            free(frame);
            return ramp_fail(err, "transport: out of memory");
        }
        t->pending = grown;
        t->pending_capacity = capacity;
    }
    pending_send *p = &t->pending[t->n_pending];
    if (MPI_Isend(frame, (int)length, MPI_BYTE, destination, tag, MPI_COMM_WORLD, &p->request) != MPI_SUCCESS) {
        free(frame);
        return ramp_fail(err, "transport: rank %d could not send %zu bytes to rank %d", t->rank, length, destination);
    }
    p->frame = frame;
    p->destination = destination;
    t->n_pending++;
    doorbells_ring(t->doorbells, destination);
    return 0;
}

int transport_send(transport *t, int destination, uint8_t *frame, size_t length, ramp_error *err) {
    return send_tagged(t, destination, frame, length, FRAME_TAG, err);
}

int transport_send_urgent(transport *t, int destination, uint8_t *frame, size_t length, ramp_error *err) {
    return send_tagged(t, destination, frame, length, URGENT_TAG, err);
}

int transport_exchange(transport *t, int peer, const void *send, void *receive, size_t bytes, ramp_error *err) {
    if (t->local) return ramp_fail(err, "transport: swapping with rank %d needs an MPI job", peer);
    if (bytes > INT32_MAX) return ramp_fail(err, "transport: %zu bytes exceed MPI's count limit", bytes);
    if (MPI_Sendrecv(send, (int)bytes, MPI_BYTE, peer, EXCHANGE_TAG, receive, (int)bytes, MPI_BYTE, peer, EXCHANGE_TAG,
                     MPI_COMM_WORLD, MPI_STATUS_IGNORE) != MPI_SUCCESS)
        return ramp_fail(err, "transport: rank %d could not swap %zu bytes with rank %d", t->rank, bytes, peer);
    t->bytes_sent += bytes;
    t->bytes_received += bytes;
    return 0;
}

/* In-process: hand queued frames to their ranks' handlers until one is addressed to rank 0. */
static int local_receive(transport *t, int *source, uint8_t **frame, size_t *length, ramp_error *err) {
    while (t->queue_head < t->queue_tail) {
        queued_frame q = t->queue[t->queue_head++];
        if (q.destination == t->rank) {
            *source = q.source;
            *frame = q.frame;
            *length = q.length;
            t->bytes_received += q.length;
            return 1;
        }
        if (!t->handlers[q.destination]) {
            free(q.frame);
            return ramp_fail(err, "transport: no in-process handler for rank %d", q.destination);
        }
        int saved_rank = t->rank;
        t->rank = q.destination; /* frames the handler sends come from its rank */
        int status = t->handlers[q.destination](t->contexts[q.destination], q.source, q.frame, q.length, err);
        t->rank = saved_rank;
        free(q.frame);
        if (status) return -1;
    }
    return 0; /* nothing left anywhere: nothing will ever arrive */
}

/* How long an idle receiver sleeps before it looks again. When every rank of the job is on this
 * node, every frame rings this rank's doorbell, so the sleep only bounds the wait; a frame from
 * another node rings nothing, and a send of ours may need MPI's progress here to finish, so then
 * the sleeps stay short. */
static double idle_pause(const transport *t, long idle_polls) {
    if (doorbells_cover_job(t->doorbells) && t->n_pending == 0) return DOORBELL_SLEEP_SECONDS;
    return idle_polls > 5000 ? 200e-6 : 20e-6;
}

/* One look for a frame of one kind (tag): 1 with it received, 0 without, -1 on error. */
static int probe_tag(transport *t, int tag, int *source, uint8_t **frame, size_t *length, ramp_error *err) {
    int flag = 0;
    MPI_Status status;
    if (MPI_Iprobe(MPI_ANY_SOURCE, tag, MPI_COMM_WORLD, &flag, &status) != MPI_SUCCESS)
        return ramp_fail(err, "transport: rank %d: MPI_Iprobe failed", t->rank);
    if (!flag) return 0;
    int count;
    MPI_Get_count(&status, MPI_BYTE, &count);
    uint8_t *buffer = malloc(count > 0 ? (size_t)count : 1);
    if (!buffer) return ramp_fail(err, "transport: out of memory receiving %d bytes", count);
    if (MPI_Recv(buffer, count, MPI_BYTE, status.MPI_SOURCE, tag, MPI_COMM_WORLD, MPI_STATUS_IGNORE) !=
        MPI_SUCCESS) {
        free(buffer);
        return ramp_fail(err, "transport: rank %d: receive from rank %d failed", t->rank, status.MPI_SOURCE);
    }
    *source = status.MPI_SOURCE;
    *frame = buffer;
    *length = (size_t)count;
    t->bytes_received += (size_t)count;
    return 1;
}

/* One look for a frame, urgent ones first. */
static int probe_once(transport *t, int *source, uint8_t **frame, size_t *length, ramp_error *err) {
    int got = probe_tag(t, URGENT_TAG, source, frame, length, err);
    return got ? got : probe_tag(t, FRAME_TAG, source, frame, length, err);
}

int transport_poll_urgent(transport *t, int *source, uint8_t **frame, size_t *length, ramp_error *err) {
    if (t->local) return 0;
    return probe_tag(t, URGENT_TAG, source, frame, length, err);
}

int transport_receive(transport *t, double timeout_seconds, const volatile int *stop, int *source, uint8_t **frame,
                      size_t *length, ramp_error *err) {
    if (t->local) return local_receive(t, source, frame, length, err);
    double deadline = timeout_seconds < 0 ? -1.0 : clock_seconds() + timeout_seconds;
    long idle_polls = 0;
    for (;;) {
        reap_sends(t, false);
        uint32_t rings = t->doorbells ? doorbells_count(t->doorbells) : 0; /* before looking: no ring is missed */
        int got = probe_once(t, source, frame, length, err);
        if (got) return got;
        if (stop && *stop) return 0;
        double now = clock_seconds();
        if (deadline >= 0 && now >= deadline) return 0;
        if (++idle_polls <= t->spin_polls) continue;
        /* MPI_Iprobe looks for a match before it moves arrived fragments into MPI's queue: a frame
         * that rang before `rings` was read may have been queued only by the look just made. */
        if ((got = probe_once(t, source, frame, length, err))) return got;
        double pause = idle_pause(t, idle_polls);
        if (deadline >= 0 && deadline - now < pause) pause = deadline - now;
        if (t->doorbells) {
            doorbells_wait(t->doorbells, rings, pause);
        } else {
            struct timespec sleep_for = {0, (long)(pause * 1e9)};
            nanosleep(&sleep_for, NULL);
        }
    }
}

void transport_wake(transport *t) {
    if (!t->local) doorbells_ring(t->doorbells, t->rank);
}
