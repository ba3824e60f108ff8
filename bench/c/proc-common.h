// Process set-up every bench helper repeats: the open-file limit raised to its hard maximum, and a
// stop flag that SIGINT/SIGTERM (and, where asked, the --max-seconds alarm) set for the main loop.
#ifndef APNS_PROXY_BENCH_PROC_COMMON_H
#define APNS_PROXY_BENCH_PROC_COMMON_H

#include <signal.h>
#include <sys/resource.h>

static volatile sig_atomic_t stop;

static void on_signal(int sig) { (void)sig; stop = 1; }

// Raises the soft open-file limit to the hard one; returns the limit now in force.
static rlim_t raise_nofile(void) {
  struct rlimit rl;
  getrlimit(RLIMIT_NOFILE, &rl);
  rl.rlim_cur = rl.rlim_max;
  setrlimit(RLIMIT_NOFILE, &rl);
  return rl.rlim_cur;
}

// SIGINT/SIGTERM set `stop`; so does SIGALRM when alarm_stops (else the alarm kills: a hard bound).
// SIGPIPE is ignored: a peer that went away is an error to count, not a reason to die.
static void stop_on_signals(int alarm_stops) {
  struct sigaction sa = {.sa_handler = on_signal};
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  if (alarm_stops) sigaction(SIGALRM, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);
}

#endif
