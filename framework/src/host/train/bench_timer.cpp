#include "host/train/bench_timer.h"

#include <torch/cuda.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "host/event_writer.h"

namespace kd::host {

BenchTimer::BenchTimer(int64_t bench_steps, const torch::Device& device)
    : bench_steps_(bench_steps), device_(device) {
  if (enabled() && device_.is_cuda()) probe_ = std::make_unique<CudaProbe>(device_);
}

BenchTimer::~BenchTimer() = default;

int64_t BenchTimer::warmup() const { return std::min<int64_t>(2, bench_steps_ / 4); }

void BenchTimer::Start() { marks_[0] = Clock::now(); }

void BenchTimer::Lap(Phase phase) {
  if (enabled() && device_.is_cuda()) {
    const CudaProbe::Uncounted own_sync(probe_.get());
    torch::cuda::synchronize(device_.index());
  }
  marks_[phase + 1] = Clock::now();
}

void BenchTimer::StepDone(int64_t steps_done, int64_t samples) {
  if (!enabled() || steps_done < warmup()) return;
  if (steps_done == warmup()) {  // the last warm-up step: count the timed steps' syncs only
    if (probe_) probe_->ResetSyncs();
    return;
  }
  for (int p = 0; p < kPhases; ++p) {
    seconds_[p] += std::chrono::duration<double>(marks_[p + 1] - marks_[p]).count();
  }
  timed_samples_ += samples;
}

int64_t BenchTimer::timed_steps(int64_t steps_done) const {
  return std::max<int64_t>(1, steps_done - warmup());
}

std::string BenchTimer::Report(const Shape& shape, int64_t steps_done) const {
  double total = 0;
  for (double s : seconds_) total += s;
  const int64_t timed_steps = this->timed_steps(steps_done);
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
          total > 0 ? timed_samples_ * (shape.distributed ? shape.world_size : 1) / total : 0.0),
      absl::StrFormat("  model      %d parameters (%d trainable), amp %s, channels_last %s\n",
                      shape.parameters, shape.trainable, shape.amp,
                      shape.channels_last ? "on" : "off"),
      probe_
          ? absl::StrFormat("  cuda       peak %.2f GiB allocated, %.2f host "
                            "synchronisations per step besides the timer's\n",
                            static_cast<double>(probe_->peak_bytes()) / (1 << 30),
                            static_cast<double>(probe_->syncs()) / static_cast<double>(timed_steps))
          : std::string());
}

std::string BenchTimer::Json(const Shape& shape, int64_t steps_done) const {
  const int64_t timed_steps = this->timed_steps(steps_done);
  double total = 0;
  for (double s : seconds_) total += s;
  auto ms = [&](double t) { return absl::StrFormat("%.17g", 1e3 * t / timed_steps); };
  return absl::StrCat(
      "{\"stage\": \"", JsonEscape(shape.stage), "\", \"device\": \"", JsonEscape(shape.device),
      "\", \"amp\": \"", shape.amp,
      "\", \"channels_last\": ", shape.channels_last ? "true" : "false",
      ", \"batch\": ", shape.batch_size, ", \"accumulate\": ", shape.accumulate,
      ", \"world_size\": ", shape.distributed ? shape.world_size : 1,
      ", \"steps_timed\": ", timed_steps, ", \"warmup\": ", steps_done - timed_steps,
      ", \"ms\": {\"data\": ", ms(seconds_[kData]), ", \"forward\": ", ms(seconds_[kForward]),
      ", \"backward\": ", ms(seconds_[kBackward]), ", \"optimizer\": ", ms(seconds_[kOptimizer]),
      ", \"total\": ", ms(total), "}, \"samples_per_s\": ",
      absl::StrFormat(
          "%.17g",
          total > 0 ? timed_samples_ * (shape.distributed ? shape.world_size : 1) / total : 0.0),
      ", \"parameters\": {\"student\": ", shape.parameters,
      ", \"student_trainable\": ", shape.trainable,
      "}, \"peak_memory_bytes\": ", probe_ ? absl::StrCat(probe_->peak_bytes()) : "null",
      ", \"host_syncs_per_step\": ",
      probe_ ? absl::StrFormat(
                   "%.17g", static_cast<double>(probe_->syncs()) / static_cast<double>(timed_steps))
             : "null",
      "}\n");
}

}  // namespace kd::host
