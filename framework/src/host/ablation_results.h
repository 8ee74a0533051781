// The results of an ablation's runs: results.csv, results.md, the plots and what was shared.
#pragma once

#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "host/ablation.h"

namespace kd::host {

// What one run of an ablation gave.
struct AblationRow {
  const AblationRun* run = nullptr;
  std::string status;  // "done", "interrupted", "failed", "held" (by another process), "not run"
  std::string error;
  double seconds = 0, wall = 0;
  std::vector<MetricValue> metrics;
  std::vector<std::string> headline;
  std::filesystem::path stage_dir;
};

// Per stage directory, how many runs made it (trained or produced) and how many reused it.
struct StageUse {
  std::map<std::string, int> made, reused;
};

// Writes results.csv and results.md into plan.out and draws the plots with `python` running
// `plot_script`; the outcome lists the files, the failed runs and the summary to print.
absl::StatusOr<AblationOutcome> WriteAblationResults(const AblationPlan& plan,
                                                     const std::vector<AblationRow>& rows,
                                                     const StageUse& use, const std::string& python,
                                                     const std::filesystem::path& plot_script);

}  // namespace kd::host
