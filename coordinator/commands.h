/* commands.h: the subcommands of `ramp`. Each takes (argc, argv) with argv[0] = its own name, and
 * the MPI transport when launched by mpirun/srun (rank 0 only; NULL otherwise), and returns the
 * process exit status (0 success, 1 failure, 2 bad usage). */
#ifndef RAMP_COMMANDS_H
#define RAMP_COMMANDS_H

#include "transport.h"

int command_generate(int argc, char **argv, transport *mpi);
int command_synth(int argc, char **argv, transport *mpi);
int command_tokenize(int argc, char **argv, transport *mpi);
int command_eval(int argc, char **argv, transport *mpi);
int command_exit_train(int argc, char **argv, transport *mpi);
int command_exit_calibrate(int argc, char **argv, transport *mpi);
int command_serve(int argc, char **argv, transport *mpi);
int command_batch(int argc, char **argv, transport *mpi);
int command_nll(int argc, char **argv, transport *mpi);

#endif
