#include <algorithm>
#include <cctype>
#include <chrono>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "host/evaluate_export.h"
#include "host/files.h"
#include "host/options_impl.h"
#include "host/pipeline.h"
#include "host/progress.h"
#include "host/stage_lock.h"
#include "host/stop_signal.h"
#include "host/teacher.h"
#include "host/trainer.h"
#include "kd/producer.h"

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
  CArray headline;
  for (const std::string& name : outcome.headline) headline.emplace_back(name);
  root.emplace("headline", CNode(std::move(headline)));
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
  if (const CNode* headline = root.Get("headline"); headline != nullptr && headline->is_array()) {
    for (const CNode& name : headline->array()) result.headline.push_back(name.as_string());
  }
  return result;
}

// A finished stage directory is reused only if it holds this stage's outputs: the hash in its
// summary and the hash of the config it was trained with must both be this stage's hash.
absl::Status VerifyStageDir(const StageConfig& stage, const ResolvedConfig& config,
                            const fs::path& summary) {
  const std::string fix =
      "; the directory was copied, renamed or edited. Move it away (or delete it) and run "
      "again to retrain the stage";
  KD_ASSIGN_OR_RETURN(CNode root, ParseTomlFile(summary));
  const CNode* hash = root.Get("hash");
  if (hash == nullptr || !hash->is_string() || hash->as_string() != stage.hash) {
    return absl::FailedPreconditionError(absl::StrCat(
        "stage '", stage.name, "': ", summary.string(), " belongs to a stage with hash ",
        hash != nullptr && hash->is_string() ? hash->as_string() : std::string("(none)"), ", not ",
        stage.hash, fix));
  }
  const fs::path trained_with = stage.dir / "config.toml";
  std::error_code ec;
  if (fs::exists(trained_with, ec)) {
    KD_ASSIGN_OR_RETURN(CNode saved, ParseTomlFile(trained_with));
    const std::string saved_hash = HashStage(saved, stage.deps, config.stages);
    if (saved_hash != stage.hash) {
      return absl::FailedPreconditionError(
          absl::StrCat("stage '", stage.name, "': ", trained_with.string(),
                       " is not this stage's config (it hashes to ", saved_hash, ", the stage to ",
                       stage.hash, ")", fix));
    }
  }
  return absl::OkStatus();
}

bool IsFileName(absl::string_view name) {
  return !name.empty() && std::all_of(name.begin(), name.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-';
  });
}

// Makes one artefact: the producer writes into a fresh <name>.partial/ directory, which becomes
// artifacts/<name>/ only once it returned.
void ProduceArtifact(const Options& entry, const BuildContext& ctx, const ProducerInput& input,
                     const StageConfig& stage, Progress& progress) {
  const std::string name = entry.String("name");
  if (!IsFileName(name)) entry.Fail("name", "use letters, digits, '_' and '-' (it names a folder)");
  const Options spec = entry.Sub("producer");
  auto producer = ctx.Build<Producer>(Kind::kProducer, spec);
  const fs::path final_dir = ArtifactPath(stage, name);
  const fs::path partial = final_dir.parent_path() / (name + ".partial");
  std::error_code ec;
  fs::remove_all(partial, ec);
  ThrowIfError(EnsureDir(partial));
  try {
    producer->Produce(input, partial);
  } catch (const Error& e) {
    fs::remove_all(partial, ec);
    throw Error(absl::Status(e.status().code(),
                             absl::StrCat(e.status().message(), " (while making artefact '", name,
                                          "' with ", spec.Type(), ")")));
  } catch (const std::exception& e) {
    fs::remove_all(partial, ec);
    spec.Fail("", absl::StrCat(spec.Type(), " failed: ", e.what()));
  }
  fs::remove_all(final_dir, ec);
  fs::rename(partial, final_dir, ec);
  if (ec) {
    throw Error(absl::InternalError(absl::StrCat("cannot move ", partial.string(), " to ",
                                                 final_dir.string(), ": ", ec.message())));
  }
  progress.Line(
      absl::StrCat("[", stage.name, "] artefact ", name, ": ", producer->Describe(final_dir)));
}

// An artefact stage: each entry of `artifacts` runs its producer once.
absl::StatusOr<TrainOutcome> RunArtifactStage(const Registry& registry, const StageConfig& stage,
                                              const StageAccess& access, Progress& progress) {
  const auto started = std::chrono::steady_clock::now();
  try {
    const Options root = MakeOptions(stage.config, stage.config.get(), "");
    const BuildContext ctx =
        BuildContext(registry, torch::kCPU).WithStageAccess(&access).WithStageConfig(&root);
    std::shared_ptr<Dataset> train;
    ProducerInput input;
    input.train_set = [&] {
      if (!train) {
        const Options data = root.Sub("data");
        if (!data.Has("train")) data.Fail("train", "this stage's producers need a training split");
        train = ctx.Build<Dataset>(Kind::kDataset, data.Sub("train"));
      }
      return train;
    };
    for (const Options& entry : root.SubList("artifacts")) {
      ProduceArtifact(entry, ctx, input, stage, progress);
    }
  } catch (const Error& e) {
    return Annotate(e.status(), absl::StrCat("stage '", stage.name, "'"));
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("stage '", stage.name, "': ", e.what()));
  }
  TrainOutcome outcome;
  outcome.completed = true;
  outcome.seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  return outcome;
}

// Runs a collective, returning its kd::Error as a status.
template <typename F>
absl::Status CatchDistributed(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.status();
  }
  return absl::OkStatus();
}

absl::StatusOr<bool> AgreeOnRank0(Distributed& dist, bool mine, const std::string& what) {
  bool answer = false;
  KD_RETURN_IF_ERROR(CatchDistributed([&] { answer = dist.Rank0Decides(mine, what); }));
  return answer;
}

// Rank 0 writes every file and the others read the stages' outputs (teachers, partitions, resumable
// states): the run directory must be one directory for all of them.
absl::Status CheckSharedWorkDir(Distributed& dist, const fs::path& work_dir) {
  const std::string token =
      absl::StrCat(std::chrono::steady_clock::now().time_since_epoch().count());
  const fs::path probe = work_dir / ".shared_probe";
  if (dist.is_main()) KD_RETURN_IF_ERROR(WriteFileAtomic(probe, token));
  std::string expected;
  KD_RETURN_IF_ERROR(
      CatchDistributed([&] { expected = dist.BroadcastBytes(token, "work_dir check"); }));
  auto seen = ReadFile(probe);
  const bool ok = seen.ok() && *seen == expected;
  std::vector<std::string> answers;
  KD_RETURN_IF_ERROR(
      CatchDistributed([&] { answers = dist.AllGatherBytes(ok ? "1" : "0", "work_dir check"); }));
  std::vector<std::string> missing;
  for (size_t r = 0; r < answers.size(); ++r) {
    if (answers[r] != "1") missing.push_back(absl::StrCat(r));
  }
  if (dist.is_main()) {
    std::error_code ec;
    fs::remove(probe, ec);
  }
  if (!missing.empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "run.work_dir ", work_dir.string(), " is not shared: rank(s) ",
        absl::StrJoin(missing, ", "),
        " do not see rank 0's files there. Rank 0 writes the checkpoints and the other ranks read "
        "them, so put run.work_dir on a filesystem every machine mounts"));
  }
  return absl::OkStatus();
}

}  // namespace

LockTiming StageLockTiming(const StageConfig& stage) {
  LockTiming timing;
  timing.heartbeat_s = FindPath(*stage.config, "run.lock_heartbeat_s")->as_float();
  timing.stale_after_s = FindPath(*stage.config, "run.lock_stale_s")->as_float();
  return timing;
}

fs::path StageLockPath(const StageConfig& stage) { return stage.dir / "lock"; }

fs::path ArtifactPath(const StageConfig& stage, const std::string& name) {
  return stage.dir / "artifacts" / name;
}

absl::StatusOr<std::string> DescribeArtifacts(const Registry& registry, const StageConfig& stage) {
  std::string out;
  try {
    const Options root = MakeOptions(stage.config, stage.config.get(), "");
    const BuildContext ctx = BuildContext(registry, torch::kCPU).WithStageConfig(&root);
    for (const Options& entry : root.SubList("artifacts")) {
      const std::string name = entry.String("name");
      const fs::path dir = ArtifactPath(stage, name);
      auto producer = ctx.Build<Producer>(Kind::kProducer, entry.Sub("producer"));
      absl::StrAppend(&out, "stage ", stage.name, ", artefact ", name, " (", dir.string(),
                      "): ", producer->Describe(dir));
    }
  } catch (const Error& e) {
    return Annotate(e.status(), absl::StrCat("stage '", stage.name, "'"));
  }
  return out;
}

namespace {

// The stages `options.only` names and every stage they depend on; empty when it names none.
absl::StatusOr<std::set<std::string>> WantedStages(const ResolvedConfig& config,
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
  return wanted;
}

// Runs an artefact stage: rank 0 makes the artefacts, the others wait for its files.
absl::StatusOr<TrainOutcome> ProduceStage(Host& host, const StageConfig& stage,
                                          const PipelineAccess& access, Distributed* dist,
                                          Progress& progress) {
  const bool main = dist == nullptr || dist->is_main();
  progress.Line(absl::StrFormat("[%s] producing artefacts in %s", stage.name, stage.dir.string()));
  absl::StatusOr<TrainOutcome> produced = TrainOutcome{};
  if (main) produced = RunArtifactStage(host.registry(), stage, access, progress);
  if (dist) {
    KD_ASSIGN_OR_RETURN(bool ok, AgreeOnRank0(*dist, produced.ok(), "artefact stage"));
    if (!ok && !main) {
      return absl::AbortedError(
          absl::StrCat("stage '", stage.name, "': rank 0 failed to make the artefacts"));
    }
  }
  KD_ASSIGN_OR_RETURN(TrainOutcome outcome, std::move(produced));
  outcome.completed = true;
  return outcome;
}

// The stage's lock, as rank 0 got it (the other ranks follow its answers): `lock` (rank 0) or
// `acquired` (every rank) once held; `busy_with` when another process holds it and the options say
// not to wait; `stopped` when a stop signal came while waiting.
struct StageLock {
  std::unique_ptr<FileLock> lock;
  bool acquired = false;
  bool stopped = false;
  std::string busy_with;
};

// Takes the stage's lock; while another process holds it, waits (with a line saying who holds it
// every 30 s) or, without RunOptions::wait_for_locks, reports it busy.
absl::StatusOr<StageLock> LockStage(const StageConfig& stage, const RunOptions& options,
                                    Progress& progress) {
  Distributed* dist = options.dist;
  const bool main = dist == nullptr || dist->is_main();
  const LockTiming timing = StageLockTiming(stage);
  const fs::path path = StageLockPath(stage);
  const auto poll = std::chrono::duration<double>(std::clamp(timing.stale_after_s / 10, 0.05, 1.0));
  const auto started = std::chrono::steady_clock::now();
  auto reported = started - std::chrono::hours(1);
  StageLock out;
  while (true) {
    absl::StatusOr<LockAttempt> attempt = LockAttempt{};
    if (main) attempt = TryLock(path, timing);
    bool failed = !attempt.ok();
    if (dist) {
      KD_ASSIGN_OR_RETURN(failed, AgreeOnRank0(*dist, failed, "stage lock"));
    }
    if (failed) {
      if (!main)
        return absl::AbortedError(
            absl::StrCat("stage '", stage.name, "': rank 0 failed to lock it"));
      return Annotate(attempt.status(),
                      absl::StrCat("stage '", stage.name, "': cannot lock ", path.string()));
    }
    out.acquired = main && attempt->lock != nullptr;
    if (dist) {
      KD_ASSIGN_OR_RETURN(out.acquired, AgreeOnRank0(*dist, out.acquired, "stage lock"));
    }
    if (out.acquired) {
      if (main && !attempt->note.empty()) {
        progress.Line(absl::StrCat("[", stage.name, "] ", attempt->note));
      }
      if (main) out.lock = std::move(attempt->lock);
      return out;
    }
    const std::string holder =
        main ? absl::StrCat(attempt->busy->Describe(), " (lock ", path.string(), ")") : "";
    if (!options.wait_for_locks) {
      out.busy_with = holder;
      return out;
    }
    out.stopped = StopSignal() != 0;
    if (dist) {
      KD_ASSIGN_OR_RETURN(out.stopped, AgreeOnRank0(*dist, out.stopped, "stop decision"));
    }
    if (out.stopped) return out;
    const auto now = std::chrono::steady_clock::now();
    if (main && now - reported >= std::chrono::seconds(30)) {
      progress.Line(absl::StrFormat(
          "[%s] waiting: another process is training it: %s; waited %s", stage.name, holder,
          Progress::FormatDuration(std::chrono::duration<double>(now - started).count())));
      reported = now;
    }
    std::this_thread::sleep_for(poll);
  }
}

// Whether the stage's summary exists (rank 0's answer).
absl::StatusOr<bool> StageComplete(const StageConfig& stage, Distributed* dist) {
  std::error_code ec;
  bool complete = fs::exists(stage.dir / "summary.toml", ec);
  if (dist) {
    KD_ASSIGN_OR_RETURN(complete, AgreeOnRank0(*dist, complete, "stage reuse decision"));
  }
  return complete;
}

absl::StatusOr<StageResult> ReuseStage(const ResolvedConfig& config, const StageConfig& stage,
                                       Progress& progress, absl::string_view how) {
  const fs::path summary = stage.dir / "summary.toml";
  KD_RETURN_IF_ERROR(VerifyStageDir(stage, config, summary));
  KD_ASSIGN_OR_RETURN(StageResult reused, ReadSummary(stage, summary));
  progress.Line(
      absl::StrFormat("[%s] complete in %s%s; reusing it", stage.name, stage.dir.string(), how));
  return reused;
}

// Trains or produces a stage whose lock this process holds.
absl::StatusOr<StageResult> MakeStage(Host& host, const ResolvedConfig& config,
                                      const StageConfig& stage, const RunOptions& options,
                                      Progress& progress) {
  Distributed* dist = options.dist;
  const bool main = dist == nullptr || dist->is_main();
  if (main) KD_RETURN_IF_ERROR(WriteFileAtomic(stage.dir / "config.toml", ToToml(*stage.config)));
  const PipelineAccess access(&config, &stage);
  TrainOutcome outcome;
  if (stage.IsArtifactStage()) {
    KD_ASSIGN_OR_RETURN(outcome, ProduceStage(host, stage, access, dist, progress));
  } else {
    progress.Line(absl::StrFormat("[%s] training in %s", stage.name, stage.dir.string()));
    TrainOptions train_options;
    train_options.stop_after_steps = options.stop_after_steps;
    train_options.fresh = options.fresh;
    train_options.progress = options.progress;
    train_options.dist = dist;
    KD_ASSIGN_OR_RETURN(
        outcome, TrainStage(host.registry(), &access,
                            {stage.name, stage.dir, stage.config, stage.hash}, train_options));
  }
  StageResult result;
  result.name = stage.name;
  result.dir = stage.dir;
  result.steps = outcome.steps;
  result.seconds = outcome.seconds;
  result.metrics = outcome.metrics;
  result.headline = outcome.headline;
  if (!outcome.completed) {
    result.status = "interrupted";
    return result;
  }
  if (main && !stage.IsArtifactStage()) {
    // The same JSON as `kdhost eval --json`, for the final evaluation (export/last.pt).
    ResultIdentity identity{stage.name, stage.hash, outcome.steps, stage.dir / "export" / "last.pt",
                            (stage.dir / "config.toml").string()};
    KD_RETURN_IF_ERROR(
        WriteFileAtomic(stage.dir / "summary.json", ResultJson(identity, outcome.metrics)));
  }
  // Written last: it marks the stage complete.
  if (main) {
    KD_RETURN_IF_ERROR(WriteFileAtomic(stage.dir / "summary.toml", SummaryToml(stage, outcome)));
  }
  if (dist) {
    KD_RETURN_IF_ERROR(CatchDistributed([&] { dist->Barrier("end of stage " + stage.name); }));
  }
  result.status = stage.IsArtifactStage() ? "produced" : "trained";
  return result;
}

// Trains, produces or reuses one stage (status "interrupted" or "busy" ends the run). The stage is
// made under its lock; a stage another process completed while this one waited is reused.
absl::StatusOr<StageResult> RunStage(Host& host, const ResolvedConfig& config,
                                     const StageConfig& stage, const RunOptions& options,
                                     Progress& progress) {
  KD_ASSIGN_OR_RETURN(bool complete, StageComplete(stage, options.dist));
  if (complete) return ReuseStage(config, stage, progress, "");
  KD_ASSIGN_OR_RETURN(StageLock locked, LockStage(stage, options, progress));
  if (!locked.acquired) {
    StageResult result;
    result.name = stage.name;
    result.dir = stage.dir;
    result.status = locked.stopped ? "interrupted" : "busy";
    result.busy_with = locked.busy_with;
    if (!locked.stopped) result.busy_lock = StageLockPath(stage);
    return result;
  }
  KD_ASSIGN_OR_RETURN(complete, StageComplete(stage, options.dist));
  if (complete) return ReuseStage(config, stage, progress, " (made by another process meanwhile)");
  return MakeStage(host, config, stage, options, progress);
}

}  // namespace

absl::Status CheckPipelineFits(const Host& host, const ResolvedConfig& config,
                               const std::vector<std::string>& only,
                               std::set<std::string>* checked) {
  RunOptions select;
  select.only = only;
  KD_ASSIGN_OR_RETURN(const std::set<std::string> wanted, WantedStages(config, select));
  for (const StageConfig& stage : config.stages) {
    if (!only.empty() && !wanted.count(stage.name)) continue;
    if (stage.IsArtifactStage()) continue;
    if (checked != nullptr && !checked->insert(stage.hash).second) continue;
    std::error_code ec;
    if (fs::exists(stage.dir / "summary.toml", ec)) continue;  // reused, not trained
    PipelineAccess access(&config, &stage);
    std::string unfinished;
    access.NoteUnfinished(&unfinished);
    absl::Status fit =
        CheckStageFit(host.registry(), &access, {stage.name, stage.dir, stage.config, stage.hash});
    // A stage built from an earlier stage's outputs (artefacts, a model) is checked when it starts.
    if (!fit.ok() && unfinished.empty()) return fit;
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<StageResult>> RunPipeline(Host& host, const ResolvedConfig& config,
                                                     const RunOptions& options) {
  KD_ASSIGN_OR_RETURN(const std::set<std::string> wanted, WantedStages(config, options));
  if (options.check_fit) KD_RETURN_IF_ERROR(CheckPipelineFits(host, config, options.only, nullptr));
  Distributed* dist = options.dist;
  const bool main = dist == nullptr || dist->is_main();
  if (main) {
    KD_RETURN_IF_ERROR(EnsureDir(config.work_dir));
    KD_RETURN_IF_ERROR(WriteFileAtomic(config.work_dir / "config.toml", ToToml(config.root)));
  }
  if (dist) KD_RETURN_IF_ERROR(CheckSharedWorkDir(*dist, config.work_dir));
  Progress progress("", 0, options.progress && main);
  std::vector<StageResult> results;
  for (const StageConfig& stage : config.stages) {
    if (!options.only.empty() && !wanted.count(stage.name)) continue;
    // Asked to stop (kd/host/stop_signal.h) between stages: no further stage starts.
    bool stop = StopSignal() != 0;
    if (dist) {
      KD_ASSIGN_OR_RETURN(stop, AgreeOnRank0(*dist, stop, "stop decision"));
    }
    if (stop) break;
    KD_ASSIGN_OR_RETURN(StageResult result, RunStage(host, config, stage, options, progress));
    results.push_back(std::move(result));
    if (results.back().status == "interrupted" || results.back().status == "busy") break;
  }
  return results;
}

std::string FormatSummary(const std::vector<StageResult>& results) {
  std::vector<std::string> columns;
  for (const StageResult& r : results) {
    std::vector<std::string> names = r.headline;
    if (names.empty()) {
      for (const MetricValue& m : r.metrics) names.push_back(m.name);
    }
    for (const std::string& name : names) {
      if (std::find(columns.begin(), columns.end(), name) == columns.end()) columns.push_back(name);
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
