#include "doorbell.h"

#include <limits.h>
#include <linux/futex.h>
#include <mpi.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* One cache line per bell: a rank's frequent rings must not slow its neighbours' reads. */
typedef struct {
    _Atomic uint32_t count;
    _Atomic uint32_t sleepers; /* waiting in the kernel: only then does a ring need a system call */
    char padding[64 - 2 * sizeof(uint32_t)];
} bell;

struct doorbells {
    MPI_Comm node;
    MPI_Win window;
    bell *bells;       /* node-rank indexed, shared by the node's ranks */
    bell *own;         /* this rank's */
    int *node_rank_of; /* world rank -> node rank, -1 when on another node */
    int world_rank, world_size, node_size;
};

/* Frees what open made, on this rank only (the window and communicator are freed collectively). */
static void release(doorbells *d) {
    if (d->window != MPI_WIN_NULL) MPI_Win_free(&d->window);
    if (d->node != MPI_COMM_NULL) MPI_Comm_free(&d->node);
    free(d->node_rank_of);
}

void doorbells_open(doorbells **out) {
    *out = NULL;
    /* Every rank makes every collective call below, whatever fails on it: a rank that left early
     * would leave the others waiting for it. Failures are pooled at the end. */
    doorbells local = {.node = MPI_COMM_NULL, .window = MPI_WIN_NULL};
    doorbells *d = &local;
    MPI_Comm_rank(MPI_COMM_WORLD, &d->world_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &d->world_size);
    if (MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, d->world_rank, MPI_INFO_NULL, &d->node) !=
        MPI_SUCCESS)
        return; /* a collective call that fails, fails on every rank */
    int node_rank;
    MPI_Comm_rank(d->node, &node_rank);
    MPI_Comm_size(d->node, &d->node_size);
    /* The node's first rank holds every bell, so the bells are one array for all. */
    MPI_Aint bytes = node_rank == 0 ? (MPI_Aint)d->node_size * (MPI_Aint)sizeof(bell) : 0;
    void *base;
    int ok = MPI_Win_allocate_shared(bytes, sizeof(bell), MPI_INFO_NULL, d->node, &base, &d->window) == MPI_SUCCESS;
    MPI_Aint size = 0;
    int unit;
    if (ok) ok = MPI_Win_shared_query(d->window, 0, &size, &unit, &d->bells) == MPI_SUCCESS && d->bells;
    if (ok && node_rank == 0) memset(d->bells, 0, (size_t)bytes);
    d->node_rank_of = malloc((size_t)d->world_size * sizeof *d->node_rank_of);
    int *world_ranks = malloc((size_t)d->world_size * sizeof *world_ranks);
    MPI_Group world_group, node_group;
    MPI_Comm_group(MPI_COMM_WORLD, &world_group);
    MPI_Comm_group(d->node, &node_group);
    ok = ok && d->node_rank_of && world_ranks;
    if (ok) {
        for (int r = 0; r < d->world_size; r++) world_ranks[r] = r;
        ok = MPI_Group_translate_ranks(world_group, d->world_size, world_ranks, node_group, d->node_rank_of) ==
             MPI_SUCCESS;
        for (int r = 0; ok && r < d->world_size; r++)
            if (d->node_rank_of[r] == MPI_UNDEFINED) d->node_rank_of[r] = -1;
    }
    MPI_Group_free(&world_group);
    MPI_Group_free(&node_group);
    free(world_ranks);
    doorbells *kept = malloc(sizeof *kept);
    ok = ok && kept;
    /* All ranks use the bells or none does; the cleared bells are in place before the first ring. */
    int all_ok = 0;
    MPI_Allreduce(&ok, &all_ok, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    if (!all_ok) {
        release(d);
        free(kept);
        return;
    }
    local.own = &local.bells[local.node_rank_of[local.world_rank]];
    *kept = local;
    *out = kept;
}

void doorbells_close(doorbells *d) {
    if (!d) return;
    release(d);
    free(d);
}

bool doorbells_cover_job(const doorbells *d) { return d && d->node_size == d->world_size; }

int doorbells_node_ranks(const doorbells *d) { return d ? d->node_size : 0; }

uint32_t doorbells_count(const doorbells *d) { return atomic_load(&d->own->count); }

/* The count is raised before sleepers is read, and sleepers before the kernel compares the count
 * (both sequentially consistent): a ring either sees the sleeper or changes the count it sleeps on. */
void doorbells_ring(doorbells *d, int world_rank) {
    if (!d || world_rank < 0 || world_rank >= d->world_size || d->node_rank_of[world_rank] < 0) return;
    bell *b = &d->bells[d->node_rank_of[world_rank]];
    atomic_fetch_add(&b->count, 1);
    /* Shared between processes: the futex is keyed by the page, not by this process (no _PRIVATE). */
    if (atomic_load(&b->sleepers)) syscall(SYS_futex, (uint32_t *)&b->count, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}

void doorbells_wait(doorbells *d, uint32_t seen, double seconds) {
    if (seconds <= 0) return;
    struct timespec timeout = {(time_t)seconds, (long)((seconds - (double)(time_t)seconds) * 1e9)};
    atomic_fetch_add(&d->own->sleepers, 1);
    /* Returns at once when the count moved since seen (EAGAIN); EINTR lets a signal end the wait. */
    syscall(SYS_futex, (uint32_t *)&d->own->count, FUTEX_WAIT, seen, &timeout, NULL, 0);
    atomic_fetch_sub(&d->own->sleepers, 1);
}
