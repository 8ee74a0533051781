// Evaluating a model export on its own (`kdhost eval EXPORT.pt [CONFIG]`), and the JSON results
// of evaluations and stages (`--json`, summary.json).
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "host/checkpoint.h"
#include "host/config.h"
#include "kd/metric.h"
#include "kd/registry.h"
#include "kd/tensor_dict.h"

namespace kd::host {

// The config an export is evaluated with: `base` (a stage's resolved config; null: the one stored
// in the export) with `overrides` applied, less what only training uses (distiller, hooks,
// artifacts), and with the export's own model_config as its model. Validated.
absl::StatusOr<std::shared_ptr<const CNode>> ExportEvalConfig(
    const Registry& registry, const ModelExport& data, const std::filesystem::path& export_path,
    const CNode* base, const std::vector<std::string>& overrides);

// Writes `kdhost predict`'s directory: <key>.npy per model output (rows in sample order),
// batch.<key>.npy per batch tensor asked for, index.npy (the dataset index of each row) and
// meta.json; into <out>.partial/, renamed to <out>
// once complete, so a failed or interrupted prediction leaves no partial <out>.
class PredictionWriter {
 public:
  // `keys`: the outputs to keep; empty: every output except features ("feat.*").
  // `inputs`: the batch tensors to keep as well.
  PredictionWriter(std::filesystem::path out, std::vector<std::string> keys,
                   std::vector<std::string> inputs);
  ~PredictionWriter();
  // Refuses an `out` that exists and is not an earlier prediction; makes <out>.partial/.
  absl::Status Prepare();
  // One batch (throws kd::Error naming the output that does not fit).
  void Add(const TensorDict& outputs, const TensorDict& batch, const torch::Tensor& index);
  // Closes the files, writes meta.json and moves the directory into place.
  absl::Status Finish(const std::string& identity_json, const ModelExport& data);

 private:
  struct Output;
  std::filesystem::path out_, partial_;
  std::vector<std::string> keys_, inputs_;
  std::vector<std::unique_ptr<Output>> outputs_, batch_;
  std::unique_ptr<Output> index_;
  bool finished_ = false;
};

// Where a result comes from.
struct ResultIdentity {
  std::string stage;
  std::string hash;  // the stage hash ("" for exports that do not record it)
  int64_t step = 0;
  std::filesystem::path model_export;
  std::string config;  // "stored in the export", or the config file evaluated with
};

// {"stage": ..., "hash": ..., "step": ..., "export": ..., "config": ..., "metric_order": [...],
//  "metrics": {name: value}} with every value at full precision (17 significant digits; a value
// that is not finite as the string "nan", "inf" or "-inf").
std::string ResultJson(const ResultIdentity& identity, const std::vector<MetricValue>& metrics);

}  // namespace kd::host
