// `--bench`: how long each phase of a training step takes (data, forward pass and loss, backward
// pass, optimizer step), synchronised with the device on CUDA so that the times are real. The
// first min(2, steps / 4) steps are warm-up and not timed. On CUDA it also reports the peak memory
// and the host synchronisations per timed step the loop made besides the timer's own
// (cuda_probe.h).
#pragma once

#include <torch/types.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "host/train/cuda_probe.h"

namespace kd::host {

class BenchTimer {
 public:
  enum Phase { kData = 0, kForward, kBackward, kOptimizer, kPhases };

  // Disabled (nothing synchronised, nothing reported) when bench_steps is 0.
  BenchTimer(int64_t bench_steps, const torch::Device& device);
  ~BenchTimer();
  BenchTimer(const BenchTimer&) = delete;
  BenchTimer& operator=(const BenchTimer&) = delete;

  bool enabled() const { return bench_steps_ > 0; }
  // The start of a micro-batch.
  void Start();
  // The end of `phase` of the current micro-batch.
  void Lap(Phase phase);
  // After optimizer step number `steps_done` of this run (1-based) on `samples` samples: adds the
  // last micro-batch's phase times once past the warm-up.
  void StepDone(int64_t steps_done, int64_t samples);

  struct Shape {
    std::string stage, device;
    int64_t batch_size = 0, accumulate = 1;
    bool distributed = false;
    int world_size = 1;                     // with `distributed`: throughput is over all processes
    int64_t parameters = 0, trainable = 0;  // of the model being trained
    std::string amp = "off";                // the autocast in effect: "off", "bf16", "fp16"
    bool channels_last = false;
  };
  // The table `kdhost train --bench` prints, for `steps_done` steps of this run.
  std::string Report(const Shape& shape, int64_t steps_done) const;
  // The same figures as one JSON object (`kdhost train --bench N --json FILE`): ms per step by
  // phase, samples/s, parameters, and on CUDA peak_memory_bytes and host_syncs_per_step (null
  // elsewhere).
  std::string Json(const Shape& shape, int64_t steps_done) const;

 private:
  using Clock = std::chrono::steady_clock;
  int64_t warmup() const;
  int64_t timed_steps(int64_t steps_done) const;

  int64_t bench_steps_;
  torch::Device device_;
  Clock::time_point marks_[kPhases + 1];
  double seconds_[kPhases] = {0, 0, 0, 0};
  int64_t timed_samples_ = 0;
  std::unique_ptr<CudaProbe> probe_;  // enabled on CUDA only
};

}  // namespace kd::host
