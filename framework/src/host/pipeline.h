// Configs as pipelines of stages. A config with `pipeline = ["a", "b"]` runs its stages in order;
// each stage is the config with `stages.<name>` deep-merged on top. Each stage's outputs live in
// <work_dir>/<name>-<hash>, the hash covering the stage's resolved config and the hashes of the
// stages it takes teachers from, so a rerun reuses every finished stage whose inputs did not
// change.
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "host/config.h"
#include "host/host.h"
#include "kd/metric.h"

namespace kd::host {

struct StageConfig {
  std::string name;
  std::shared_ptr<const CNode> config;  // validated, defaults filled in
  std::vector<std::string> deps;        // stages it reads artefacts from (from_stage)
  std::string hash;
  std::filesystem::path dir;
};

struct ResolvedConfig {
  std::filesystem::path file;
  CNode root;  // merged, overridden and interpolated; stages not yet applied
  std::vector<StageConfig> stages;
  std::filesystem::path work_dir;
  bool single_stage = true;

  const StageConfig* FindStage(absl::string_view name) const;
};

// Loads `file` with `overrides`, loads the plugins it needs into `host`, and expands and
// validates every stage.
absl::StatusOr<ResolvedConfig> ResolveConfig(Host& host, const std::filesystem::path& file,
                                             const std::vector<std::string>& overrides,
                                             const std::vector<std::string>& plugin_paths);

struct RunOptions {
  // Stages to run (with the stages they depend on); empty: all.
  std::vector<std::string> only;
  // Stop a stage after this many optimizer steps, leaving a resumable state (0: never).
  int64_t stop_after_steps = 0;
  // Start stages from scratch even when a resumable state exists.
  bool fresh = false;
  // Progress output on stderr.
  bool progress = true;
};

struct StageResult {
  std::string name;
  std::string status;  // "trained", "reused", "interrupted"
  std::vector<MetricValue> metrics;
  double seconds = 0;
  int64_t steps = 0;
  std::filesystem::path dir;
};

absl::StatusOr<std::vector<StageResult>> RunPipeline(Host& host, const ResolvedConfig& config,
                                                     const RunOptions& options);

// The final summary table: one row per stage, one column per metric.
std::string FormatSummary(const std::vector<StageResult>& results);

}  // namespace kd::host
