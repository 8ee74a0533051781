#include "host/stop_signal.h"

#include <signal.h>
#include <unistd.h>

#include <atomic>

namespace kd::host {

namespace {

std::atomic<int> g_stop_signal{0};
struct sigaction g_previous_term, g_previous_int;

void OnStopSignal(int signal) {
  int expected = 0;
  if (g_stop_signal.compare_exchange_strong(expected, signal)) {
    static const char kMessage[] =
        "\nkdhost: stopping after the current step (a second signal stops at once)\n";
    (void)!::write(STDERR_FILENO, kMessage, sizeof(kMessage) - 1);
    return;
  }
  // The second signal: the default action (the process ends), now.
  ::signal(signal, SIG_DFL);
  ::raise(signal);
}

}  // namespace

StopSignalGuard::StopSignalGuard() {
  g_stop_signal = 0;
  struct sigaction action = {};
  action.sa_handler = OnStopSignal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;
  ::sigaction(SIGTERM, &action, &g_previous_term);
  ::sigaction(SIGINT, &action, &g_previous_int);
}

StopSignalGuard::~StopSignalGuard() {
  ::sigaction(SIGTERM, &g_previous_term, nullptr);
  ::sigaction(SIGINT, &g_previous_int, nullptr);
}

int StopSignal() { return g_stop_signal.load(); }

void NoteStopSignal(int signal) {
  int expected = 0;
  g_stop_signal.compare_exchange_strong(expected, signal);
}

const char* StopSignalName(int signal) {
  switch (signal) {
    case SIGTERM:
      return "SIGTERM";
    case SIGINT:
      return "SIGINT";
    default:
      return "a signal";
  }
}

}  // namespace kd::host
