// The training loop of one stage. Layout of a stage directory:
//   config.toml              the resolved stage config
//   state/train_state.pt     resumable training state (atomic; the last good one)
//   export/best.pt, last.pt  student-only model exports (the artefacts later stages use)
//   checkpoints/             the best-k exports
//   metrics.jsonl, tb/       JSON-lines log and TensorBoard events
//   summary.toml             written last: the stage is complete
#pragma once

#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "host/config.h"
#include "host/distributed.h"
#include "kd/metric.h"
#include "kd/registry.h"
#include "kd/tensor_dict.h"

namespace kd::host {

struct StageRun {
  std::string name;
  std::filesystem::path dir;
  std::shared_ptr<const CNode> config;  // validated stage config
  std::string hash;                     // the stage hash (stored in its exports)
};

struct TrainOptions {
  int64_t stop_after_steps = 0;  // 0: run to the end
  bool fresh = false;            // ignore an existing resumable state
  bool progress = true;
  int64_t bench_steps = 0;  // > 0: time this many steps, write nothing
  // Data-parallel training: this process's place in the group (null: one process). Every rank
  // trains on its share of each batch; only rank 0 writes files.
  Distributed* dist = nullptr;
};

struct TrainOutcome {
  bool completed = false;
  int64_t steps = 0;
  double seconds = 0;
  std::vector<MetricValue> metrics;  // of the final evaluation
  // The values a summary shows: the first value of each metric, and its EMA twin when both the
  // raw and the EMA weights are evaluated.
  std::vector<std::string> headline;
  std::string bench_report;  // with bench_steps
  std::string bench_json;    // the same figures as JSON (BenchTimer::Json)
};

absl::StatusOr<TrainOutcome> TrainStage(const Registry& registry, const StageAccess* stages,
                                        const StageRun& stage, const TrainOptions& options);

// Whether the stage's model, task loss and metrics fit each other and the data, checked on two
// samples with an untrained model (StageTrainer::CheckFit), on the CPU.
absl::Status CheckStageFit(const Registry& registry, const StageAccess* stages,
                           const StageRun& stage);

// The outputs of a model export on the stage's `data.val`, batch by batch: `sink` gets each
// batch's outputs and the batch (CPU tensors) and the dataset indices of its samples.
absl::Status PredictExport(
    const Registry& registry, const StageAccess* stages, const StageRun& stage,
    const std::filesystem::path& export_path,
    const std::function<void(const TensorDict& outputs, const TensorDict& batch,
                             const torch::Tensor& index)>& sink,
    bool progress);

// Evaluates a model export on the stage's `data.val`.
absl::StatusOr<std::vector<MetricValue>> EvaluateExport(const Registry& registry,
                                                        const StageAccess* stages,
                                                        const StageRun& stage,
                                                        const std::filesystem::path& export_path,
                                                        bool progress);

// "auto" | "cpu" | "cuda" | "cuda:N" -> device; errors name the key and what is available.
absl::StatusOr<torch::Device> ResolveDevice(const std::string& spec);

}  // namespace kd::host
