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

  // What the live line shows of the steps since the last update.
  struct Window {
    std::vector<std::pair<std::string, double>> terms;  // loss first, then each term
    double lr = 0;
    double samples_per_second = 0;
    double data_fraction = -1;  // share of the time spent waiting for batches; < 0: not shown
    int64_t memory_bytes = 0;   // resident memory (CPU) or peak allocated (CUDA); 0: not shown
    double eta_seconds = 0;
  };
  void Update(int64_t step, int64_t epoch, int64_t total_epochs, const Window& window);
  // The line Update shows: "[student] epoch 1/6 step 10/372 loss 0.2 loss.bce 0.2 lr 0.002
  // 950 samples/s data 4% mem 412 MiB ETA 0:21".
  static std::string Format(const std::string& stage, int64_t step, int64_t total_steps,
                            int64_t epoch, int64_t total_epochs, const Window& window);
  // Prints a whole line (ending any live line first).
  void Line(const std::string& text);
  void Finish();

  static std::string FormatDuration(double seconds);
  // "812 MiB", "1.5 GiB".
  static std::string FormatBytes(int64_t bytes);

 private:
  std::string stage_;
  int64_t total_steps_;
  bool enabled_;
  bool tty_;
  bool live_ = false;
};

}  // namespace kd::host
