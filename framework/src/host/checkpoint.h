// Checkpoint files. Both kinds are dictionaries pickled by torch::pickle_save, so Python's
// torch.load reads them too, and both are written atomically.
//
//  - A model export (the default artefact): the model's parameters and buffers by name, the model's
//    config as TOML (so the file alone rebuilds the model), and the metrics it was exported with.
//  - A training state (resumable): model, distiller and EMA weights, the optimizer's state, the
//    loop position, the RNG states and the resolved config.
#pragma once

#include <torch/nn/module.h>

#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "host/archive_check.h"
#include "kd/metric.h"

namespace kd::host {

using StateDict = std::map<std::string, torch::Tensor>;

// Parameters and buffers of `module` by name (tensors detached and on the CPU).
StateDict ModuleState(torch::nn::Module& module);

struct LoadReport {
  std::vector<std::string> missing;     // in the module, not in the file
  std::vector<std::string> unexpected;  // in the file, not in the module
  std::vector<std::string> reshaped;    // in both with different shapes (skipped when allowed)
  size_t loaded = 0;
  std::string Summary() const;  // "" when everything matched
};

enum class LoadMode {
  kStrict,      // every key must match, with the same shape
  kLenient,     // missing and unexpected keys are reported; shape mismatches are errors
  kInitialise,  // also skips tensors whose shapes differ (e.g. a classifier for other classes)
};

// Copies `state` into `module` as `mode` allows; the report says what did not match.
absl::StatusOr<LoadReport> LoadModuleState(torch::nn::Module& module, const StateDict& state,
                                           LoadMode mode, const std::string& source);

struct ModelExport {
  std::string model_config;              // TOML of the model table
  std::vector<std::string> class_names;  // of the split it was trained on (rebuilds its head)
  // The other label spaces of that split by name (DatasetInfo::vocabularies), likewise.
  std::map<std::string, std::vector<std::string>> vocabularies;
  StateDict state;
  std::vector<MetricValue> metrics;
  std::string stage;
  int64_t step = 0;
  // The resolved config of the stage that wrote it (TOML) and its hash: `kdhost eval` evaluates
  // the export with its data.val and metrics. Empty in exports written before they were stored.
  std::string stage_config;
  std::string stage_hash;
};

absl::Status SaveModelExport(const std::filesystem::path& path, const ModelExport& data);
absl::StatusOr<ModelExport> LoadModelExport(const std::filesystem::path& path);

struct BestEntry {
  double value = 0;
  int64_t step = 0;
  std::string path;
};

struct TrainState {
  int64_t step = 0;            // optimizer steps done
  int64_t epoch = 0;           // epoch in progress
  int64_t batch_in_epoch = 0;  // batches of that epoch already consumed
  // Samples in one of those batches over all processes (batch_size x processes); 0 in states
  // written before it was recorded. Resuming with another number of processes converts the
  // position through it.
  int64_t global_batch = 0;
  int64_t world_size = 1;  // processes that trained it
  StateDict model, distiller, ema;
  std::string optimizer;  // torch::serialize archive bytes
  torch::Tensor cpu_rng;
  torch::Tensor cuda_rng;     // undefined when not on CUDA
  torch::Tensor grad_scaler;  // [scale, growth_tracker] for fp16, undefined otherwise
  std::string config;         // resolved stage config (TOML)
  std::vector<BestEntry> best;
  double seconds = 0;  // training time so far
};

absl::Status SaveTrainState(const std::filesystem::path& path, const TrainState& state);
absl::StatusOr<TrainState> LoadTrainState(const std::filesystem::path& path);

}  // namespace kd::host
