// The stage's `run` and `train` settings, read once from the validated config.
#pragma once

#include <cstdint>
#include <string>

#include <c10/core/ScalarType.h>

#include "kd/options.h"

namespace kd::host {

// `run`: where and how the process trains.
struct RunSettings {
  std::string device = "auto";
  int64_t threads = 0;  // 0: torch's default
  bool deterministic = false;
  uint64_t seed = 0;
  // Data parallelism.
  int64_t bucket_bytes = 25 << 20;  // dist_bucket_mb
  bool overlap = true;              // dist_overlap: all-reduce during the backward pass
  bool check_state = true;          // dist_check_state
  bool grad_sum = false;            // dist_grad_reduce = "sum"
  bool sync_batchnorm = false;

  static RunSettings Read(const Options& run);
};

// `train`: the loop's length, the optimisation step, evaluation and exports.
struct TrainSettings {
  int64_t max_epochs = 0, max_iters = 0;  // exactly one is > 0 (checked by CheckLength)
  int64_t accumulate = 1;
  double clip_grad_norm = 0;
  double ema_decay = 0;
  std::string ema_eval = "ema";  // "ema" | "raw" | "both"
  std::string amp = "off";       // "off" | "bf16" | "fp16"
  bool channels_last = false;    // NHWC memory format (memory_format.h)
  int64_t val_interval = 1, checkpoint_interval = 1, log_interval = 20, keep_best = 1;
  std::string best_metric;  // "" = the first metric value
  std::string init_checkpoint;
  std::string init_from_stage;  // an earlier stage's export instead of a file
  std::string init_artifact;    // "best" or "last"
  std::string init_prefix;      // only tensors whose names start with it ("" all)

  static TrainSettings Read(const Options& train);
  bool by_epoch() const { return max_epochs > 0; }
  // Autocast on `device`: only on CUDA, and only with amp != "off".
  bool autocast(bool cuda) const { return cuda && amp != "off"; }
  at::ScalarType autocast_dtype() const { return amp == "fp16" ? at::kHalf : at::kBFloat16; }
  // Fails on `train` unless exactly one of max_epochs and max_iters is set.
  void CheckLength(const Options& train) const;
};

}  // namespace kd::host
