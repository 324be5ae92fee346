/* commands.h: the subcommands of `ramp`. Each takes (argc, argv) with argv[0] = its own name and
 * returns the process exit status (0 success, 1 failure, 2 bad usage). */
#ifndef RAMP_COMMANDS_H
#define RAMP_COMMANDS_H

int command_generate(int argc, char **argv);
int command_synth(int argc, char **argv);
int command_eval(int argc, char **argv);
int command_exit_train(int argc, char **argv);
int command_exit_calibrate(int argc, char **argv);

#endif
