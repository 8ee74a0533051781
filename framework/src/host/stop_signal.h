// Stopping on SIGTERM and SIGINT. A scheduler preempting a job sends SIGTERM (torchrun forwards it
// to every process); the first one asks the trainer to finish its current step, write the training
// state and stop (every process of a data-parallel run after the same step); a second one ends the
// process at once, with the signal's default action, leaving the previous state as it was.
#pragma once

namespace kd::host {

// Installs the handlers for the life of the guard (kdhost's run and train); restores the previous
// ones after.
class StopSignalGuard {
 public:
  StopSignalGuard();
  ~StopSignalGuard();
  StopSignalGuard(const StopSignalGuard&) = delete;
  StopSignalGuard& operator=(const StopSignalGuard&) = delete;
};

// The signal that asked to stop (SIGTERM or SIGINT), or 0.
int StopSignal();
// Records that this process stops because another process of its data-parallel run was asked to
// (the ranks agree on it every micro-batch), unless a signal of its own came first.
void NoteStopSignal(int signal);
// "SIGTERM", "SIGINT" or "signal N".
const char* StopSignalName(int signal);
// The exit status kdhost uses after stopping on `signal`: 128 + signal, as a shell reports a
// process the signal ended (143 for SIGTERM, 130 for SIGINT).
inline int StopExitCode(int signal) { return 128 + signal; }

}  // namespace kd::host
