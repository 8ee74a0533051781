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

namespace kd::host {

// The config an export is evaluated with: `base` (a stage's resolved config; null: the one stored
// in the export) with `overrides` applied, less what only training uses (distiller, hooks,
// artifacts), and with the export's own model_config as its model. Validated.
absl::StatusOr<std::shared_ptr<const CNode>> ExportEvalConfig(
    const Registry& registry, const ModelExport& data, const std::filesystem::path& export_path,
    const CNode* base, const std::vector<std::string>& overrides);

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
