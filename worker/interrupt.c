#include "interrupt.h"

#include <signal.h>
#include <string.h>

static volatile int stop_requested;
static volatile sig_atomic_t stop_signal;

static void on_stop_signal(int signal_number) {
    stop_signal = signal_number;
    stop_requested = 1;
}

void interrupt_install(void) {
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = on_stop_signal;
    sigemptyset(&action.sa_mask);
    sigaction(SIGINT, &action, NULL);
    sigaction(SIGTERM, &action, NULL);
    sigaction(SIGUSR1, &action, NULL);
    signal(SIGPIPE, SIG_IGN);
}

const volatile int *interrupt_flag(void) { return &stop_requested; }
bool interrupt_requested(void) { return stop_requested != 0; }
int interrupt_signal(void) { return stop_signal; }
