/* interrupt.h: the process's signals, as flags the loops poll.
 *
 * SIGINT and SIGTERM ask the process to stop (front ends drain: finish what is in flight within a
 * grace period, then exit); SIGUSR1 (what Slurm's --signal sends before a time limit) is recorded
 * separately so a batch job can tell preemption from an interrupt. SIGPIPE is ignored: a closed
 * stdout or a client gone away is an error value from write(), never a dead rank 0.
 * These flags are the process's only mutable global state; nothing else reads signals.
 */
#ifndef RAMP_INTERRUPT_H
#define RAMP_INTERRUPT_H

#include <stdbool.h>

/* Installs the handlers (idempotent). */
void interrupt_install(void);
/* Non-zero once SIGINT, SIGTERM or SIGUSR1 arrived; suitable for transport_receive's stop. */
const volatile int *interrupt_flag(void);
bool interrupt_requested(void);
/* The signal that asked to stop (SIGINT, SIGTERM, SIGUSR1), or 0. */
int interrupt_signal(void);

#endif
