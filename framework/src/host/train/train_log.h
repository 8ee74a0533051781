// What a training stage reports as it goes: the live progress line, and on the process that writes
// (rank 0, not with --bench) metrics.jsonl and TensorBoard events. Training records carry the mean
// of each loss term over the steps since the last record; evaluation records every metric value.
#pragma once

#include <chrono>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <torch/types.h>

#include "host/event_writer.h"
#include "host/progress.h"
#include "kd/metric.h"
#include "kd/tensor_dict.h"

namespace kd::host {

class TrainLog {
 public:
  // `writes`: whether this process writes <dir>/metrics.jsonl and <dir>/tb/; `processes`
  // multiplies rank 0's sample rate into the job's.
  // `device`: whose memory the live line shows (the process's resident memory on the CPU, the
  // caching allocator's peak on CUDA).
  TrainLog(std::string stage, int64_t total_steps, bool progress, bool writes,
           const std::filesystem::path& dir, int processes, const torch::Device& device);

  // A line of its own (ending any live progress line first).
  void Line(const std::string& text);
  // Starts the clocks of the loop; `start_step` is the step it starts at.
  void StartLoop(int64_t start_step);
  // A micro-batch's loss terms (each counted 1 / accumulate) and samples.
  void AddMicroBatch(const TensorDict& terms, int64_t accumulate, int64_t samples);
  // The same with the terms' values already on the host (the loop copies them in one go).
  void AddMicroBatch(const std::vector<std::pair<std::string, double>>& terms, int64_t accumulate,
                     int64_t samples);
  // Time spent waiting for a batch (the loader and the copy to the device).
  void AddDataWait(double seconds) { window_data_seconds_ += seconds; }
  // After an optimizer step: reports the window when `step` is a multiple of `interval` or the
  // last (`target`).
  void StepDone(int64_t step, int64_t epoch, int64_t total_epochs, int64_t target, int64_t interval,
                double lr);
  // An evaluation's values (at `step`, in `epoch`), all of them recorded, `shown` on the console
  // as of epoch `shown_epoch` (1-based) of `total_epochs`, with `best` ("best mAP 0.3310 at step
  // 8", or "").
  void Evaluation(int64_t step, int64_t epoch, int64_t shown_epoch, int64_t total_epochs,
                  const std::vector<MetricValue>& values, const std::vector<MetricValue>& shown,
                  const std::string& best);
  void Finish();

  // Means over the window: "loss" (their sum) first, then each term.
  std::vector<std::pair<std::string, double>> WindowMeans() const;

 private:
  using Clock = std::chrono::steady_clock;
  void Report(int64_t step, int64_t epoch, int64_t total_epochs, int64_t target, double lr);

  std::string stage_;
  int64_t total_steps_;
  int processes_;
  std::unique_ptr<Progress> progress_;
  std::unique_ptr<MetricsLog> log_;
  std::unique_ptr<TensorBoardWriter> tb_;
  std::map<std::string, double> window_terms_;
  int64_t window_steps_ = 0, window_samples_ = 0, start_step_ = 0;
  double window_data_seconds_ = 0;
  torch::Device device_;
  Clock::time_point window_start_, loop_start_;
};

// The resident memory of this process in bytes (Linux /proc/self/statm; 0 where unknown).
int64_t ResidentBytes();

// Seconds since `since`.
double SecondsSince(std::chrono::steady_clock::time_point since);

// The console line of an evaluation in (1-based) `epoch`: "[student] epoch 2/6 step 16/48: mAP
// 31.9800; best mAP 33.1000 at step 8".
std::string EvaluationLine(const std::string& stage, int64_t step, int64_t total_steps,
                           int64_t epoch, int64_t total_epochs,
                           const std::vector<MetricValue>& shown, const std::string& best);

// "name value, ..." with 4 decimals.
std::string FormatMetrics(const std::vector<MetricValue>& metrics);

}  // namespace kd::host
