#include "host/train/bench_timer.h"

#include <torch/cuda.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace kd::host {

BenchTimer::BenchTimer(int64_t bench_steps, const torch::Device& device)
    : bench_steps_(bench_steps), device_(device) {}

int64_t BenchTimer::warmup() const { return std::min<int64_t>(2, bench_steps_ / 4); }

void BenchTimer::Start() { marks_[0] = Clock::now(); }

void BenchTimer::Lap(Phase phase) {
  if (enabled() && device_.is_cuda()) torch::cuda::synchronize(device_.index());
  marks_[phase + 1] = Clock::now();
}

void BenchTimer::StepDone(int64_t steps_done, int64_t samples) {
  if (!enabled() || steps_done <= warmup()) return;
  for (int p = 0; p < kPhases; ++p) {
    seconds_[p] += std::chrono::duration<double>(marks_[p + 1] - marks_[p]).count();
  }
  timed_samples_ += samples;
}

std::string BenchTimer::Report(const Shape& shape, int64_t steps_done) const {
  double total = 0;
  for (double s : seconds_) total += s;
  const int64_t timed_steps = std::max<int64_t>(1, steps_done - warmup());
  auto row = [&](const char* name, double t) {
    return absl::StrFormat("  %-10s %9.2f ms/step  %5.1f%%\n", name, 1e3 * t / timed_steps,
                           total > 0 ? 100.0 * t / total : 0.0);
  };
  return absl::StrCat(
      absl::StrFormat(
          "bench: stage '%s' on %s, %d steps timed (after %d warm-up), batch %d x %d%s\n",
          shape.stage, shape.device, timed_steps, steps_done - timed_steps, shape.batch_size,
          shape.accumulate,
          shape.distributed ? absl::StrCat(" per process, ", shape.world_size,
                                           " processes (rank 0's times; throughput over all)")
                            : std::string()),
      row("data", seconds_[kData]), row("forward", seconds_[kForward]),
      row("backward", seconds_[kBackward]), row("optimizer", seconds_[kOptimizer]),
      row("total", total),
      absl::StrFormat(
          "  throughput %.1f samples/s\n",
          total > 0 ? timed_samples_ * (shape.distributed ? shape.world_size : 1) / total : 0.0));
}

}  // namespace kd::host
