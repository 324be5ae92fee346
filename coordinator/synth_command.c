/* synth_command.c: `ramp synth` (placeholder until model/synth.c lands). */
#include <stdio.h>
#include "commands.h"
int command_synth(int argc, char **argv) { fprintf(stderr, "ramp synth: not built yet\n"); return 1; }
