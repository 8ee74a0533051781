// The live progress line on stderr: rewritten in place on a terminal, one line per update
// otherwise (logs, CI).
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace kd::host {

class Progress {
 public:
  Progress(std::string stage, int64_t total_steps, bool enabled);

  void Update(int64_t step, int64_t epoch, int64_t total_epochs,
              const std::vector<std::pair<std::string, double>>& terms, double lr,
              double samples_per_second, double eta_seconds);
  // Prints a whole line (ending any live line first).
  void Line(const std::string& text);
  void Finish();

  static std::string FormatDuration(double seconds);

 private:
  std::string stage_;
  int64_t total_steps_;
  bool enabled_;
  bool tty_;
  bool live_ = false;
};

}  // namespace kd::host
