#include <algorithm>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "host/files.h"
#include "host/pipeline.h"
#include "host/progress.h"
#include "host/teacher.h"
#include "host/trainer.h"

namespace kd::host {

namespace fs = std::filesystem;

namespace {

std::string SummaryToml(const StageConfig& stage, const TrainOutcome& outcome) {
  CTable metrics;
  CArray order;
  for (const MetricValue& m : outcome.metrics) {
    metrics.emplace(m.name, CNode(m.value));
    order.emplace_back(m.name);
  }
  CTable root;
  root.emplace("stage", CNode(stage.name));
  root.emplace("hash", CNode(stage.hash));
  root.emplace("status", CNode(std::string("complete")));
  root.emplace("steps", CNode(outcome.steps));
  root.emplace("seconds", CNode(outcome.seconds));
  root.emplace("metric_order", CNode(std::move(order)));
  root.emplace("metrics", CNode(std::move(metrics)));
  return ToToml(CNode(std::move(root)));
}

absl::StatusOr<StageResult> ReadSummary(const StageConfig& stage, const fs::path& path) {
  KD_ASSIGN_OR_RETURN(CNode root, ParseTomlFile(path));
  StageResult result;
  result.name = stage.name;
  result.status = "reused";
  result.dir = stage.dir;
  const CNode* steps = root.Get("steps");
  const CNode* seconds = root.Get("seconds");
  const CNode* order = root.Get("metric_order");
  const CNode* metrics = root.Get("metrics");
  if (!steps || !seconds || !order || !metrics || !order->is_array() || !metrics->is_table()) {
    return absl::DataLossError(absl::StrCat(path.string(),
                                            ": incomplete stage summary; delete it to "
                                            "retrain the stage"));
  }
  result.steps = steps->as_int();
  result.seconds = seconds->as_float();
  for (const CNode& name : order->array()) {
    const CNode* value = metrics->Get(name.as_string());
    if (value != nullptr) result.metrics.push_back({name.as_string(), value->as_float()});
  }
  return result;
}

}  // namespace

absl::StatusOr<std::vector<StageResult>> RunPipeline(Host& host, const ResolvedConfig& config,
                                                     const RunOptions& options) {
  std::set<std::string> wanted;
  std::vector<std::string> pending = options.only;
  while (!pending.empty()) {
    const std::string name = pending.back();
    pending.pop_back();
    const StageConfig* stage = config.FindStage(name);
    if (stage == nullptr) {
      std::vector<std::string> names;
      for (const StageConfig& s : config.stages) names.push_back(s.name);
      return absl::InvalidArgumentError(
          absl::StrCat("no stage named '", name, "' in ", config.file.string(),
                       " (stages: ", absl::StrJoin(names, ", "), ")"));
    }
    if (wanted.insert(name).second) {
      pending.insert(pending.end(), stage->deps.begin(), stage->deps.end());
    }
  }
  KD_RETURN_IF_ERROR(EnsureDir(config.work_dir));
  KD_RETURN_IF_ERROR(WriteFileAtomic(config.work_dir / "config.toml", ToToml(config.root)));
  PipelineTeachers teachers(&config);
  Progress progress("", 0, options.progress);
  std::vector<StageResult> results;
  for (const StageConfig& stage : config.stages) {
    if (!options.only.empty() && !wanted.count(stage.name)) continue;
    const fs::path summary = stage.dir / "summary.toml";
    std::error_code ec;
    if (fs::exists(summary, ec)) {
      KD_ASSIGN_OR_RETURN(StageResult reused, ReadSummary(stage, summary));
      progress.Line(
          absl::StrFormat("[%s] complete in %s; reusing it", stage.name, stage.dir.string()));
      results.push_back(std::move(reused));
      continue;
    }
    KD_RETURN_IF_ERROR(WriteFileAtomic(stage.dir / "config.toml", ToToml(*stage.config)));
    progress.Line(absl::StrFormat("[%s] training in %s", stage.name, stage.dir.string()));
    TrainOptions train_options;
    train_options.stop_after_steps = options.stop_after_steps;
    train_options.fresh = options.fresh;
    train_options.progress = options.progress;
    KD_ASSIGN_OR_RETURN(TrainOutcome outcome,
                        TrainStage(host.registry(), &teachers,
                                   {stage.name, stage.dir, stage.config}, train_options));
    StageResult result;
    result.name = stage.name;
    result.dir = stage.dir;
    result.steps = outcome.steps;
    result.seconds = outcome.seconds;
    result.metrics = outcome.metrics;
    if (!outcome.completed) {
      result.status = "interrupted";
      results.push_back(std::move(result));
      break;
    }
    KD_RETURN_IF_ERROR(WriteFileAtomic(summary, SummaryToml(stage, outcome)));
    result.status = "trained";
    results.push_back(std::move(result));
  }
  return results;
}

std::string FormatSummary(const std::vector<StageResult>& results) {
  std::vector<std::string> columns;
  for (const StageResult& r : results) {
    for (const MetricValue& m : r.metrics) {
      if (std::find(columns.begin(), columns.end(), m.name) == columns.end()) {
        columns.push_back(m.name);
      }
    }
  }
  size_t name_width = 5;
  for (const StageResult& r : results) name_width = std::max(name_width, r.name.size());
  std::string out =
      absl::StrFormat("%-*s  %-11s  %7s  %8s", name_width, "stage", "status", "steps", "time");
  for (const std::string& c : columns) absl::StrAppendFormat(&out, "  %10s", c);
  out += "\n";
  for (const StageResult& r : results) {
    absl::StrAppendFormat(&out, "%-*s  %-11s  %7d  %8s", name_width, r.name, r.status, r.steps,
                          Progress::FormatDuration(r.seconds));
    for (const std::string& c : columns) {
      auto it = std::find_if(r.metrics.begin(), r.metrics.end(),
                             [&](const MetricValue& m) { return m.name == c; });
      if (it == r.metrics.end()) {
        absl::StrAppendFormat(&out, "  %10s", "-");
      } else {
        absl::StrAppendFormat(&out, "  %10.4f", it->value);
      }
    }
    out += "\n";
  }
  return out;
}

}  // namespace kd::host
