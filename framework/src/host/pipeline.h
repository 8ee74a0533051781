// Configs as pipelines of stages. A config with `pipeline = ["a", "b"]` runs its stages in order;
// each stage is the config with `stages.<name>` deep-merged on top. Each stage's outputs live in
// <work_dir>/<name>-<hash>, the hash covering the stage's resolved config and the hashes of the
// stages it takes teachers from, so a rerun reuses every finished stage whose inputs did not
// change.
#pragma once

#include <filesystem>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "host/config.h"
#include "host/distributed.h"
#include "host/host.h"
#include "host/stage_lock.h"
#include "kd/metric.h"
#include "kd/registry.h"

namespace kd::host {

struct StageConfig {
  std::string name;           // "<template>.<value>..." for stages expanded from a foreach template
  std::string template_name;  // the foreach template it was expanded from, or ""
  std::map<std::string, std::string> foreach;  // this expansion's foreach values, as text
  std::shared_ptr<const CNode> config;         // validated, defaults filled in
  std::vector<std::string> deps;               // stages it reads artefacts from (from_stage)
  std::string hash;
  std::filesystem::path dir;
  // A stage imported from another config (stages.<name>.from_config): that config's file, and
  // the directory lives in that config's work dir under that config's name of the stage, so
  // every config importing it finds the same directory. Empty for the config's own stages.
  std::filesystem::path imported_from;
  std::string dir_stem;  // the <name> of <work_dir>/<name>-<hash>

  // A stage with `artifacts` runs producers (kd/producer.h) instead of training a model.
  bool IsArtifactStage() const;
};

struct ResolvedConfig {
  std::filesystem::path file;
  CNode root;  // merged, overridden and interpolated; stages not yet applied
  std::vector<StageConfig> stages;
  std::filesystem::path work_dir;
  bool single_stage = true;

  const StageConfig* FindStage(absl::string_view name) const;
  // The stage `name`, or every expansion of the foreach template `name`, in pipeline order.
  std::vector<const StageConfig*> FindStages(absl::string_view name) const;
};

// The hash that keys a stage's directory: its config without the hash-neutral keys, and the
// hashes of the stages in `deps` (looked up in `done`).
std::string HashStage(const CNode& config, const std::vector<std::string>& deps,
                      const std::vector<StageConfig>& done);

// Keys the training stages of `config` by the number of processes that train them (the global
// batch is the per-process batch times the world size): with `world_size` > 1 every training
// stage gets another hash and directory, unless it sets run.elastic; artefact stages, which do
// not depend on it, keep theirs.
void HashWorldSize(ResolvedConfig& config, int world_size);

// "stage  dir  status, what it trains" for every stage `only` needs (all when empty), as
// `kdhost run --dry-run` prints them.
std::string DescribePipeline(const ResolvedConfig& config, const std::vector<std::string>& only);

// Top-level keys that describe the pipeline rather than a stage; stages never see them.
inline constexpr const char* kPipelineKeys[] = {"pipeline", "stages", "ablation"};

// Loads `file` with `overrides`, loads the plugins it needs into `host`, and expands and
// validates every stage.
absl::StatusOr<ResolvedConfig> ResolveConfig(Host& host, const std::filesystem::path& file,
                                             const std::vector<std::string>& overrides,
                                             const std::vector<std::string>& plugin_paths);

// ResolveConfig for a config tree already loaded (and possibly changed, as ablations do), whose
// plugins `host` has loaded; `file` names it in messages and anchors its relative paths.
absl::StatusOr<ResolvedConfig> ResolveLoadedConfig(const Host& host, CNode root,
                                                   const std::filesystem::path& file);

struct RunOptions {
  // Stages to run (with the stages they depend on); empty: all.
  std::vector<std::string> only;
  // Stop a stage after this many optimizer steps, leaving a resumable state (0: never).
  int64_t stop_after_steps = 0;
  // Start stages from scratch even when a resumable state exists.
  bool fresh = false;
  // Progress output on stderr.
  bool progress = true;
  // Data-parallel run: every rank runs every stage; rank 0 decides which stages to reuse and
  // writes every file (null: one process).
  Distributed* dist = nullptr;
  // A stage another process is training (its lock, host/stage_lock.h) is waited for, then reused;
  // false: the stage ends the run with status "busy" instead.
  bool wait_for_locks = true;
  // Check every stage that will train (CheckPipelineFits) before the first one starts.
  bool check_fit = true;
};

struct StageResult {
  std::string name;
  // "trained", "produced" (artefacts), "reused", "interrupted", "busy" (another process holds
  // its lock and RunOptions::wait_for_locks is false)
  std::string status;
  std::string busy_with;            // "busy": who holds the lock, and the lock file
  std::filesystem::path busy_lock;  // "busy": that lock file
  std::vector<MetricValue> metrics;
  std::vector<std::string> headline;  // the metric names a summary shows (all when empty)
  double seconds = 0;
  int64_t steps = 0;
  std::filesystem::path dir;
};

// Before anything trains: every training stage `only` needs (all when empty) that is not finished
// builds its data, model, task loss and metrics and runs them on two samples (CheckStageFit), so
// that a component that does not fit the model or the data fails the run at once, located at its
// config line. A stage that needs an earlier stage's outputs to be built is checked when it
// starts. Stages whose hash is in `checked` are skipped; checked ones are added (null: none).
absl::Status CheckPipelineFits(const Host& host, const ResolvedConfig& config,
                               const std::vector<std::string>& only,
                               std::set<std::string>* checked);

absl::StatusOr<std::vector<StageResult>> RunPipeline(Host& host, const ResolvedConfig& config,
                                                     const RunOptions& options);

// The lock a stage is made under (host/stage_lock.h), and its timing from the stage's run table.
std::filesystem::path StageLockPath(const StageConfig& stage);
LockTiming StageLockTiming(const StageConfig& stage);

// The directory of the artefact `name` of `stage` (made or not).
std::filesystem::path ArtifactPath(const StageConfig& stage, const std::string& name);

// What the artefacts of the finished artefact stage `stage` hold: per entry, a heading line and
// its producer's Describe.
absl::StatusOr<std::string> DescribeArtifacts(const Registry& registry, const StageConfig& stage);

// The final summary table: one row per stage, one column per metric.
std::string FormatSummary(const std::vector<StageResult>& results);

}  // namespace kd::host
