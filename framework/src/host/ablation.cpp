#include "host/ablation.h"

#include <algorithm>
#include <chrono>
#include <map>
#include <set>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "host/ablation_results.h"
#include "host/ablation_spec.h"
#include "host/files.h"
#include "host/progress.h"
#include "host/stage_lock.h"
#include "host/stop_signal.h"
#include "host/validate.h"

namespace kd::host {

namespace fs = std::filesystem;

namespace {

// The stage to ablate: `wanted`, or the pipeline's last stage ("main" for a single-stage config).
absl::StatusOr<std::string> AblatedStage(const CNode& root, const fs::path& file,
                                         const std::string& wanted) {
  const CNode* pipeline = root.Get("pipeline");
  if (pipeline == nullptr) {
    if (!wanted.empty() && wanted != "main") {
      return absl::InvalidArgumentError(
          absl::StrCat(file.string(), " is a single stage (\"main\"), so there is no stage '",
                       wanted, "' to ablate"));
    }
    return std::string("main");
  }
  std::vector<std::string> names;
  if (pipeline->is_array()) {
    for (const CNode& name : pipeline->array()) {
      if (name.is_string()) names.push_back(name.as_string());
    }
  }
  std::string stage = wanted;
  if (stage.empty() && !names.empty()) stage = names.back();
  if (std::find(names.begin(), names.end(), stage) == names.end()) {
    return absl::InvalidArgumentError(absl::StrCat("no stage '", stage, "' to ablate in ",
                                                   file.string(),
                                                   " (stages: ", absl::StrJoin(names, ", "), ")"));
  }
  return stage;
}

// Every combination of the axes' values, the first axis varying slowest.
std::vector<std::vector<const CNode*>> Combinations(const std::vector<GridAxis>& axes) {
  std::vector<std::vector<const CNode*>> combinations = {{}};
  for (const GridAxis& axis : axes) {
    std::vector<std::vector<const CNode*>> next;
    for (const auto& partial : combinations) {
      for (const CNode& value : axis.values) {
        auto extended = partial;
        extended.push_back(&value);
        next.push_back(std::move(extended));
      }
    }
    combinations = std::move(next);
  }
  return combinations;
}

// The ablated stage and its dependencies, transitively.
std::vector<const StageConfig*> StagesOfRun(const AblationRun& run) {
  std::vector<const StageConfig*> out;
  std::vector<std::string> pending = {run.target};
  std::set<std::string> seen;
  while (!pending.empty()) {
    const std::string name = pending.back();
    pending.pop_back();
    if (!seen.insert(name).second) continue;
    const StageConfig* stage = run.config.FindStage(name);
    if (stage == nullptr) continue;
    out.push_back(stage);
    pending.insert(pending.end(), stage->deps.begin(), stage->deps.end());
  }
  return out;
}

}  // namespace

absl::StatusOr<AblationPlan> PlanAblation(Host& host, const fs::path& file,
                                          const std::vector<std::string>& overrides,
                                          const std::vector<std::string>& plugin_paths,
                                          const AblationCli& cli) {
  KD_ASSIGN_OR_RETURN(CNode root, LoadConfig(file, overrides));
  KD_RETURN_IF_ERROR(host.LoadPluginsFor(root, file, plugin_paths));
  CNode ablation(CTable{}, root.loc());
  if (const CNode* table = root.Get("ablation")) {
    if (!table->is_table()) return AblationError(table->loc(), "ablation", "expected a table");
    ablation = *table;
  }
  AblationPlan plan;
  KD_ASSIGN_OR_RETURN(plan.spec, ReadSpec(std::move(ablation), host.registry(), cli));
  root.table().erase("ablation");

  const bool single_stage = root.Get("pipeline") == nullptr;
  KD_ASSIGN_OR_RETURN(const std::string stage, AblatedStage(root, file, plan.spec.stage));
  plan.spec.stage = stage;
  // The rows: every named variant (or the config as it stands) crossed with the grid; a variant
  // of another stage (`_stage`) is one row as it is, in every table.
  std::vector<const NamedVariant*> named;
  for (const NamedVariant& v : plan.spec.variants) named.push_back(&v);
  if (named.empty()) named.push_back(nullptr);
  int index = 0;
  for (const NamedVariant* v : named) {
    const std::string target = v != nullptr && !v->stage.empty() ? v->stage : stage;
    if (target != stage) {
      auto found = AblatedStage(root, file, target);
      if (!found.ok()) {
        return AblationError(v->settings.loc(),
                             JoinKey(JoinKey("ablation.variants", v->name), "_stage"),
                             found.status().message());
      }
    }
    std::vector<std::string> settings;
    if (v != nullptr) {
      if (target != stage) settings.push_back(absl::StrCat("stage `", target, "`"));
      if (!v->settings.table().empty()) DescribeSettings(v->settings, "", settings);
      if (v->settings.table().empty() && target == stage) settings.push_back("the config as is");
    }
    const auto combinations =
        target == stage ? Combinations(plan.spec.axes) : std::vector<std::vector<const CNode*>>{{}};
    for (const auto& combination : combinations) {
      std::vector<std::string> parts;
      if (v != nullptr) parts.push_back(v->name);
      for (size_t a = 0; a < combination.size(); ++a) {
        parts.push_back(absl::StrCat(plan.spec.axes[a].key, "=", ValueText(*combination[a])));
      }
      const std::string variant =
          parts.empty() ? std::string("(config)") : absl::StrJoin(parts, ", ");
      if (std::find(plan.variants.begin(), plan.variants.end(), variant) != plan.variants.end()) {
        return absl::InvalidArgumentError(
            absl::StrCat("ablation: two variants are both '", variant, "'"));
      }
      plan.variants.push_back(variant);
      std::vector<std::string> description = settings;
      for (size_t a = 0; a < combination.size(); ++a)
        description.push_back(parts[a + (v != nullptr)]);
      plan.descriptions.push_back(absl::StrJoin(description, "; "));
      for (int64_t seed : plan.spec.seeds) {
        CNode variant_root = root;
        if (v != nullptr) {
          for (const auto& [key, value] : v->settings.table()) {
            KD_RETURN_IF_ERROR(
                ApplySetting(variant_root, single_stage, target, key, value, host.registry()));
          }
        }
        for (size_t a = 0; a < combination.size(); ++a) {
          KD_RETURN_IF_ERROR(ApplySetting(variant_root, single_stage, target, plan.spec.axes[a].key,
                                          *combination[a], host.registry()));
        }
        const std::string seed_path = plan.spec.seed_pipeline || single_stage
                                          ? "run.seed"
                                          : absl::StrCat("stages.", target, ".run.seed");
        SetAtPath(variant_root, seed_path,
                  CNode(seed, SourceLoc{std::make_shared<const std::string>("--seeds"), 0, 0}));
        KD_RETURN_IF_ERROR(StripReplaceMarkers(variant_root));
        auto config = ResolveLoadedConfig(host, std::move(variant_root), file);
        if (!config.ok()) {
          return Annotate(config.status(),
                          absl::StrCat("ablation variant '", variant, "' (seed ", seed, ")"));
        }
        AblationRun run;
        run.index = ++index;
        run.variant = variant;
        run.name = v != nullptr ? v->name : "";
        run.seed = seed;
        run.target = target;
        run.config = *std::move(config);
        plan.runs.push_back(std::move(run));
      }
    }
  }
  if (!plan.spec.baseline.empty() && std::find(plan.variants.begin(), plan.variants.end(),
                                               plan.spec.baseline) == plan.variants.end()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "baseline '", plan.spec.baseline, "' is not a variant of this ablation (they are: ",
        absl::StrJoin(plan.variants, "; "), ")"));
  }
  plan.out = plan.spec.out.empty() ? plan.runs.front().config.work_dir / "ablation" : plan.spec.out;
  for (AblationRun& run : plan.runs) {
    run.record =
        plan.out / "runs" /
        (run.name.empty() ? absl::StrFormat("%03d-seed%d", run.index, run.seed)
                          : absl::StrFormat("%03d-%s-seed%d", run.index, run.name, run.seed));
  }
  return plan;
}

std::string DescribePlan(const AblationPlan& plan) {
  std::string out = absl::StrFormat(
      "ablation of stage '%s': %d variant(s) x %d seed(s) = %d runs; results in %s\n",
      plan.spec.stage, plan.variants.size(), plan.spec.seeds.size(), plan.runs.size(),
      plan.out.string());
  std::map<fs::path, std::vector<int>> users;
  std::map<fs::path, std::string> names;
  for (const AblationRun& run : plan.runs) {
    const StageConfig* target = run.config.FindStage(run.target);
    absl::StrAppendFormat(&out, "  run %03d  seed %-3d %-40s -> %s\n", run.index, run.seed,
                          run.variant, target->dir.string());
    for (const StageConfig* stage : StagesOfRun(run)) {
      users[stage->dir].push_back(run.index);
      names[stage->dir] = stage->name;
    }
  }
  absl::StrAppend(&out, "stages:\n");
  for (const auto& [dir, runs] : users) {
    std::error_code ec;
    const bool done = fs::exists(dir / "summary.toml", ec);
    const bool started = fs::exists(dir / "state" / "train_state.pt", ec);
    absl::StrAppendFormat(&out, "  %-16s %-50s %s, used by %d run(s)%s\n", names[dir], dir.string(),
                          done      ? "finished: reused"
                          : started ? "unfinished: resumed"
                                    : "to run",
                          runs.size(), runs.size() > 1 ? " (computed once)" : "");
  }
  return out;
}

namespace {

// Adds `variant` to the stage directory's `variants` file (one label per line), so that a stage
// directory says which ablation variants it holds.
absl::Status NoteVariant(const fs::path& stage_dir, const std::string& variant) {
  const fs::path file = stage_dir / "variants";
  std::string text;
  std::error_code ec;
  if (fs::exists(file, ec)) {
    KD_ASSIGN_OR_RETURN(text, ReadFile(file));
  }
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (line == variant) return absl::OkStatus();
  }
  return WriteFileAtomic(file, absl::StrCat(text, variant, "\n"));
}

// Runs one run of the ablation; status "busy" when a stage it needs is another process's (the
// lock named by `busy_lock`), which the caller retries later.
absl::StatusOr<AblationRow> RunOne(Host& host, const AblationRun& run,
                                   const AblationRunOptions& options, Progress& printer,
                                   StageUse& use, fs::path& busy_lock) {
  AblationRow row;
  row.run = &run;
  const StageConfig* target = run.config.FindStage(run.target);
  row.stage_dir = target->dir;
  KD_RETURN_IF_ERROR(WriteFileAtomic(run.record / "config.toml", ToToml(*target->config)));
  RunOptions run_options;
  run_options.only = {run.target};
  run_options.progress = options.progress;
  run_options.stop_after_steps = options.stop_after_steps;
  run_options.wait_for_locks = false;
  run_options.check_fit = false;  // checked for every run before the first (RunAblation)
  const auto started = std::chrono::steady_clock::now();
  auto results = RunPipeline(host, run.config, run_options);
  row.wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  if (!results.ok()) {
    row.status = "failed";
    row.error = std::string(results.status().message());
    printer.Line(absl::StrCat("run ", run.index, " failed: ", row.error));
    return row;
  }
  // A dependency interrupted before the ablated stage leaves the run interrupted too.
  row.status = "interrupted";
  StageUse mine;
  for (const StageResult& r : *results) {
    if (r.status == "reused") ++mine.reused[r.dir.string()];
    if (r.status == "trained" || r.status == "produced") ++mine.made[r.dir.string()];
    if (r.status == "busy") {
      row.status = "busy";
      row.error = absl::StrCat("stage '", r.name, "' is being trained by ", r.busy_with);
      busy_lock = r.busy_lock;
    }
    if (r.name != run.target || r.status == "busy") continue;
    row.status = r.status == "interrupted" ? "interrupted" : "done";
    row.seconds = r.seconds;
    row.metrics = r.metrics;
    row.headline = r.headline;
  }
  if (row.status == "done") KD_RETURN_IF_ERROR(NoteVariant(row.stage_dir, run.variant));
  // A run put off is counted when it runs.
  for (const auto& [dir, n] : mine.made) use.made[dir] += n;
  if (row.status != "busy") {
    for (const auto& [dir, n] : mine.reused) use.reused[dir] += n;
  }
  return row;
}

absl::Status WriteRecord(const AblationRow& row) {
  CTable record;
  record.emplace("variant", CNode(row.run->variant));
  record.emplace("seed", CNode(row.run->seed));
  record.emplace("status", CNode(row.status));
  record.emplace("error", CNode(row.error));
  record.emplace("stage_dir", CNode(row.stage_dir.string()));
  return WriteFileAtomic(row.run->record / "result.toml", ToToml(CNode(std::move(record))));
}

// Whether the lock that kept a run waiting is free now (or stale).
bool LockFreed(const fs::path& lock, const AblationRun& run) {
  return LockAvailable(lock, StageLockTiming(*run.config.FindStage(run.target)));
}

}  // namespace

absl::Status CheckAblationFits(const Host& host, const AblationPlan& plan) {
  std::set<std::string> checked;
  for (const AblationRun& run : plan.runs) {
    absl::Status fit = CheckPipelineFits(host, run.config, {run.target}, &checked);
    if (!fit.ok()) {
      return Annotate(fit,
                      absl::StrCat("ablation variant '", run.variant, "' (seed ", run.seed, ")"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<AblationOutcome> RunAblation(Host& host, const AblationPlan& plan,
                                            const AblationRunOptions& options) {
  KD_RETURN_IF_ERROR(CheckAblationFits(host, plan));
  KD_RETURN_IF_ERROR(EnsureDir(plan.out));
  KD_RETURN_IF_ERROR(WriteFileAtomic(plan.out / "plan.txt", DescribePlan(plan)));
  Progress printer("", 0, options.progress);
  std::map<int, AblationRow> rows;
  StageUse use;
  // Runs another process holds are put off while there are others to do (so ablations launched
  // twice share the work), then waited for (or, without waiting, left to their holders).
  std::map<int, fs::path> held;
  std::vector<const AblationRun*> pending;
  for (const AblationRun& run : plan.runs) pending.push_back(&run);
  // Since when nothing could be done but wait for the others (unset while runs progress).
  bool waiting = false;
  auto waiting_since = std::chrono::steady_clock::now();
  auto reported = std::chrono::steady_clock::now() - std::chrono::hours(1);
  while (!pending.empty() && StopSignal() == 0) {
    std::vector<const AblationRun*> later;
    bool progressed = false;
    for (const AblationRun* run : pending) {
      if (StopSignal() != 0) {
        later.push_back(run);
        continue;
      }
      if (auto it = held.find(run->index); it != held.end() && !LockFreed(it->second, *run)) {
        later.push_back(run);
        continue;
      }
      printer.Line(absl::StrFormat("== ablation run %03d/%03d: %s, seed %d", run->index,
                                   plan.runs.size(), run->variant, run->seed));
      fs::path busy_lock;
      KD_ASSIGN_OR_RETURN(AblationRow row, RunOne(host, *run, options, printer, use, busy_lock));
      if (row.status == "busy") {
        printer.Line(
            absl::StrFormat("run %03d: %s; doing other runs first", run->index, row.error));
        held[run->index] = busy_lock;
        later.push_back(run);
        continue;
      }
      progressed = true;
      held.erase(run->index);
      KD_RETURN_IF_ERROR(WriteRecord(row));
      rows[run->index] = std::move(row);
    }
    pending = std::move(later);
    if (pending.empty() || progressed) {
      waiting = false;
      continue;
    }
    if (!options.wait_for_others) break;
    const auto now = std::chrono::steady_clock::now();
    if (!waiting) waiting_since = now;
    waiting = true;
    if (now - reported >= std::chrono::seconds(30)) {
      std::vector<std::string> names;
      for (const AblationRun* run : pending) names.push_back(absl::StrFormat("%03d", run->index));
      printer.Line(absl::StrFormat(
          "== waiting for run(s) %s, which other processes are doing; "
          "waited %s",
          absl::StrJoin(names, ", "),
          Progress::FormatDuration(std::chrono::duration<double>(now - waiting_since).count())));
      reported = now;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  std::vector<AblationRow> ordered;
  for (const AblationRun& run : plan.runs) {
    if (auto it = rows.find(run.index); it != rows.end()) {
      ordered.push_back(std::move(it->second));
      continue;
    }
    AblationRow row;
    row.run = &run;
    row.stage_dir = run.config.FindStage(run.target)->dir;
    // Left to another process (--no-wait), or not started before a stop signal.
    row.status = held.count(run.index) ? "held" : "not run";
    ordered.push_back(std::move(row));
  }
  KD_ASSIGN_OR_RETURN(
      AblationOutcome outcome,
      WriteAblationResults(plan, ordered, use, options.python, options.plot_script));
  for (const AblationRow& row : ordered) outcome.held += row.status == "held";
  return outcome;
}

}  // namespace kd::host
