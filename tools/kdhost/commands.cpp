// The commands of kdhost: run and train, eval, config, produce, ablate, plugins, describe.
#include <torch/torch.h>

#include <boost/dll/runtime_symbol_info.hpp>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "cli.h"
#include "host/ablation.h"
#include "host/evaluate_export.h"
#include "host/files.h"
#include "host/host.h"
#include "host/names.h"
#include "host/options_impl.h"
#include "host/pipeline.h"
#include "host/reference.h"
#include "host/root_schema.h"
#include "host/sanitizer_defaults.h"
#include "host/stop_signal.h"
#include "host/teacher.h"
#include "host/trainer.h"
#include "host/validate.h"
#include "kd/abi.h"

namespace kdhost {

namespace fs = std::filesystem;

namespace {

// With --no-wait, a stage another process is training ends the run: says so and returns kBusy.
int ReportBusy(const std::vector<kd::host::StageResult>& results) {
  for (const auto& r : results) {
    if (r.status != "busy") continue;
    std::fprintf(stderr,
                 "kdhost: error: stage '%s' is being trained by another process: %s. --no-wait "
                 "does not wait for it: run again once it is done (it will be reused), or "
                 "without --no-wait to wait\n",
                 r.name.c_str(), r.busy_with.c_str());
    return kBusy;
  }
  return kOk;
}

}  // namespace

int RunOrTrain(const Command& c, const Args& args) {
  int64_t stop_after = 0, bench = 0;
  if (!IntFlag(args, "--stop-after", &stop_after))
    return Usage(c, "--stop-after needs a positive integer");
  if (!IntFlag(args, "--bench", &bench)) return Usage(c, "--bench needs a positive integer");
  if (args.Has("--json") && bench <= 0) return Usage(c, "--json goes with --bench N");
  auto launch = kd::host::ReadLaunchEnv(args.Has("--launcher") ? args.Get("--launcher") : "auto",
                                        [](const char* name) { return std::getenv(name); });
  if (!launch.ok()) return Fail(launch.status());
  if (launch->distributed()) g_rank_prefix = absl::StrCat("rank ", launch->rank, ": ");
  Host host;
  auto config = Resolve(host, args);
  if (!config.ok()) return Fail(config.status());
  kd::host::HashWorldSize(*config, launch->world_size);
  if (args.Has("--dry-run")) {
    const std::vector<std::string> only =
        c.name == "run" ? args.All("--stage") : std::vector<std::string>();
    if (absl::Status fit = kd::host::CheckPipelineFits(host, *config, only, nullptr); !fit.ok()) {
      return Fail(fit);
    }
    std::printf("%s", kd::host::DescribePipeline(*config, args.All("--stage")).c_str());
    return kOk;
  }
  std::unique_ptr<kd::host::Distributed> dist;
  if (launch->distributed()) {
    double timeout_s = 600;
    if (const auto* run = config->stages.front().config->Get("run")) {
      if (const auto* t = run->Get("dist_timeout_s")) timeout_s = t->as_float();
    }
    auto connected = kd::host::Distributed::Connect(
        *launch, std::chrono::milliseconds(static_cast<int64_t>(timeout_s * 1000)));
    if (!connected.ok()) return Fail(connected.status());
    dist = std::move(*connected);
  }
  kd::host::RunOptions options;
  options.dist = dist.get();
  options.stop_after_steps = stop_after;
  options.fresh = args.Has("--fresh");
  options.progress = !args.Has("--quiet");
  options.wait_for_locks = !args.Has("--no-wait");
  if (c.name == "run") {
    options.only = args.All("--stage");
  } else {
    auto stage = SelectStage(*config, args);
    if (!stage.ok()) return Fail(stage.status());
    options.only = {(*stage)->name};
    if (bench > 0) {
      const kd::host::PipelineAccess access(&*config, *stage);
      kd::host::TrainOptions train_options;
      train_options.bench_steps = bench;
      train_options.dist = dist.get();
      train_options.progress = options.progress;
      auto outcome = kd::host::TrainStage(
          host.registry(), &access,
          {(*stage)->name, (*stage)->dir, (*stage)->config, (*stage)->hash}, train_options);
      if (!outcome.ok()) return Fail(outcome.status());
      if (dist) dist->Shutdown();
      if (dist && !dist->is_main()) return kOk;
      std::printf("%s", outcome->bench_report.c_str());
      if (args.Has("--json")) {
        const absl::Status written =
            kd::host::WriteFileAtomic(args.Get("--json"), outcome->bench_json);
        if (!written.ok()) return Fail(written);
      }
      return kOk;
    }
  }
  // SIGTERM / SIGINT: the current step is finished and its state written; exit 128 + signal.
  const kd::host::StopSignalGuard stop_on_signal;
  auto results = kd::host::RunPipeline(host, *config, options);
  if (!results.ok()) return Fail(results.status());
  if (dist) dist->Shutdown();
  const int signal = kd::host::StopSignal();
  if (dist && !dist->is_main()) {
    if (signal != 0) return kd::host::StopExitCode(signal);
    const bool busy =
        std::any_of(results->begin(), results->end(),
                    [](const kd::host::StageResult& r) { return r.status == "busy"; });
    return busy ? kBusy : kOk;
  }
  std::printf("\n%s", kd::host::FormatSummary(*results).c_str());
  std::printf("run directory: %s\n", config->work_dir.string().c_str());
  for (const auto& r : *results) {
    if (r.status == "interrupted") {
      std::printf(
          "stage '%s' stopped after %lld steps; to resume, run the same command again:\n"
          "  %s\n",
          r.name.c_str(), static_cast<long long>(r.steps), ResumeCommand().c_str());
    }
  }
  if (const int busy = ReportBusy(*results); busy != kOk) return busy;
  if (signal != 0) {
    std::printf("stopped by %s; exit status %d; to resume, run the same command again:\n  %s\n",
                kd::host::StopSignalName(signal), kd::host::StopExitCode(signal),
                ResumeCommand().c_str());
    return kd::host::StopExitCode(signal);
  }
  return kOk;
}

namespace {

// What `kdhost eval` evaluates: the export, and the config whose data.val and metrics it is
// evaluated with (null: the one stored in the export).
struct EvalTarget {
  fs::path export_path;
  std::optional<kd::host::ResolvedConfig> config;
  const kd::host::StageConfig* stage = nullptr;
  std::string config_source = "stored in the export";
};

absl::StatusOr<EvalTarget> FindEvalTarget(Host& host, const Args& args) {
  EvalTarget target;
  const fs::path first = args.positional;
  const bool config_first = first.extension() == ".toml";
  if (!config_first) target.export_path = first;
  if (config_first || !args.more_positionals.empty()) {
    const fs::path file = config_first ? first : fs::path(args.more_positionals.front());
    std::error_code ec;
    if (!fs::is_regular_file(file, ec)) {
      return absl::NotFoundError(absl::StrCat("config file '", file.string(), "' does not exist"));
    }
    KD_ASSIGN_OR_RETURN(target.config, kd::host::ResolveConfig(host, file, args.All("--set"),
                                                               args.All("--plugin-path")));
    int64_t world_size = 1;
    if (!IntFlag(args, "--world-size", &world_size)) {
      return absl::InvalidArgumentError("--world-size needs a positive integer");
    }
    kd::host::HashWorldSize(*target.config, static_cast<int>(world_size));
    KD_ASSIGN_OR_RETURN(target.stage, SelectStage(*target.config, args));
    target.config_source = file.string();
  }
  if (config_first) {
    const std::string artifact = args.Get("--artifact", "best");
    if (artifact != "best" && artifact != "last") {
      return absl::InvalidArgumentError("--artifact must be best or last");
    }
    target.export_path = args.Has("--checkpoint")
                             ? fs::path(args.Get("--checkpoint"))
                             : target.stage->dir / "export" / absl::StrCat(artifact, ".pt");
  }
  std::error_code ec;
  if (!fs::is_regular_file(target.export_path, ec)) {
    return absl::NotFoundError(absl::StrCat(
        "no model export at ", target.export_path.string(),
        config_first ? absl::StrCat("; train the stage first (kdhost run ", first.string(),
                                    ") or pass --checkpoint FILE; a stage trained by N "
                                    "data-parallel processes is found with --world-size N")
                     : std::string()));
  }
  return target;
}

// An export ready to evaluate: the export, its evaluation config and the stage it runs as.
struct EvalSetup {
  EvalTarget target;
  kd::host::ModelExport data;
  std::shared_ptr<const kd::host::CNode> config;
  std::optional<kd::host::PipelineAccess> access;
  std::string stage_name;

  kd::host::StageRun Run() const {
    return {stage_name, target.export_path.parent_path(), config, data.stage_hash};
  }
  const kd::StageAccess* Access() const { return access ? &*access : nullptr; }
  kd::host::ResultIdentity Identity() const {
    return {stage_name, data.stage_hash, data.step, fs::absolute(target.export_path),
            target.config_source};
  }
};

absl::Status PrepareEval(Host& host, const Args& args, EvalSetup& setup) {
  KD_ASSIGN_OR_RETURN(setup.target, FindEvalTarget(host, args));
  KD_ASSIGN_OR_RETURN(setup.data, kd::host::LoadModelExport(setup.target.export_path));
  std::vector<std::string> stored_overrides;
  if (!setup.target.stage) {
    // The stored config names the plugins it needs.
    auto stored = kd::host::ParseToml(setup.data.stage_config, setup.target.export_path.string());
    if (stored.ok()) {
      for (const std::string& assignment : args.All("--set")) {
        KD_RETURN_IF_ERROR(kd::host::ApplyOverride(*stored, assignment));
      }
      KD_RETURN_IF_ERROR(
          host.LoadPluginsFor(*stored, setup.target.export_path, args.All("--plugin-path")));
    }
    stored_overrides = args.All("--set");
  }
  KD_ASSIGN_OR_RETURN(
      setup.config,
      kd::host::ExportEvalConfig(host.registry(), setup.data, setup.target.export_path,
                                 setup.target.stage ? setup.target.stage->config.get() : nullptr,
                                 stored_overrides));
  if (setup.target.stage) setup.access.emplace(&*setup.target.config, setup.target.stage);
  setup.stage_name = !setup.data.stage.empty() ? setup.data.stage : "eval";
  return absl::OkStatus();
}

}  // namespace

int Eval(const Command&, const Args& args) {
  Host host;
  EvalSetup setup;
  if (absl::Status ready = PrepareEval(host, args, setup); !ready.ok()) return Fail(ready);
  // An output that cannot be written is found before the evaluation runs.
  if (const fs::path json = args.Get("--json"); !json.empty() && json.has_parent_path()) {
    if (absl::Status dir = kd::host::EnsureDir(json.parent_path()); !dir.ok()) {
      return Fail(
          absl::Status(dir.code(), absl::StrCat("--json ", json.string(), ": ", dir.message())));
    }
  }
  auto metrics = kd::host::EvaluateExport(host.registry(), setup.Access(), setup.Run(),
                                          setup.target.export_path, !args.Has("--quiet"));
  if (!metrics.ok()) return Fail(metrics.status());
  std::printf("%s (stage %s, step %lld%s)\n", setup.target.export_path.string().c_str(),
              setup.stage_name.c_str(), static_cast<long long>(setup.data.step),
              setup.data.stage_hash.empty() ? "" : (", hash " + setup.data.stage_hash).c_str());
  for (const kd::MetricValue& m : *metrics) std::printf("  %-12s %.6f\n", m.name.c_str(), m.value);
  if (args.Has("--json")) {
    const fs::path json = args.Get("--json");
    absl::Status written =
        kd::host::WriteFileAtomic(json, kd::host::ResultJson(setup.Identity(), *metrics));
    if (!written.ok()) return Fail(written);
    std::printf("wrote %s\n", json.string().c_str());
  }
  return kOk;
}

int Predict(const Command& c, const Args& args) {
  if (!args.Has("--out")) return Usage(c, "--out DIR is required");
  if (!args.more_positionals.empty() && fs::path(args.positional).extension() == ".toml") {
    return Usage(c, "the first argument is the model export (EXPORT.pt), then the config");
  }
  Host host;
  EvalSetup setup;
  if (absl::Status ready = PrepareEval(host, args, setup); !ready.ok()) return Fail(ready);
  std::vector<std::string> keys, inputs;
  if (args.Has("--outputs")) keys = absl::StrSplit(args.Get("--outputs"), ',', absl::SkipEmpty());
  if (args.Has("--inputs")) inputs = absl::StrSplit(args.Get("--inputs"), ',', absl::SkipEmpty());
  kd::host::PredictionWriter writer(args.Get("--out"), keys, inputs);
  if (absl::Status ready = writer.Prepare(); !ready.ok()) return Fail(ready);
  absl::Status predicted = kd::host::PredictExport(
      host.registry(), setup.Access(), setup.Run(), setup.target.export_path,
      [&](const kd::TensorDict& outputs, const kd::TensorDict& batch, const torch::Tensor& index) {
        writer.Add(outputs, batch, index);
      },
      !args.Has("--quiet"));
  if (!predicted.ok()) return Fail(predicted);
  absl::Status finished = writer.Finish(kd::host::ResultJson(setup.Identity(), {}), setup.data);
  if (!finished.ok()) return Fail(finished);
  std::printf("wrote %s (meta.json, index.npy and one .npy per output)\n",
              args.Get("--out").c_str());
  return kOk;
}

int Config(const Command&, const Args& args) {
  Host host;
  auto config = Resolve(host, args);
  if (!config.ok()) return Fail(config.status());
  if (args.Has("--stage")) {
    auto stage = SelectStage(*config, args);
    if (!stage.ok()) return Fail(stage.status());
    std::printf("%s", kd::host::ToToml(*(*stage)->config).c_str());
    return kOk;
  }
  for (const auto& stage : config->stages) {
    if (!config->single_stage) {
      std::printf("# ---- stage %s (hash %s, directory %s)\n", stage.name.c_str(),
                  stage.hash.c_str(), stage.dir.string().c_str());
    }
    std::printf("%s\n", kd::host::ToToml(*stage.config).c_str());
  }
  return kOk;
}

int Produce(const Command&, const Args& args) {
  Host host;
  auto config = Resolve(host, args);
  if (!config.ok()) return Fail(config.status());
  std::vector<const kd::host::StageConfig*> stages;
  const std::vector<std::string> only = args.All("--stage");
  for (const auto& stage : config->stages) {
    const bool named = std::find(only.begin(), only.end(), stage.name) != only.end();
    if (named && !stage.IsArtifactStage()) {
      return Fail(absl::InvalidArgumentError(absl::StrCat(
          "--stage: '", stage.name, "' is not an artefact stage (it has no `artifacts`)")));
    }
    if (stage.IsArtifactStage() && (only.empty() || named)) stages.push_back(&stage);
  }
  if (stages.empty()) {
    return Fail(absl::InvalidArgumentError(absl::StrCat(
        args.positional, " has no artefact stage (a stage with `artifacts = [...]`)")));
  }
  kd::host::RunOptions options;
  options.progress = !args.Has("--quiet");
  options.wait_for_locks = !args.Has("--no-wait");
  for (const auto* stage : stages) options.only.push_back(stage->name);
  auto results = kd::host::RunPipeline(host, *config, options);
  if (!results.ok()) return Fail(results.status());
  if (const int busy = ReportBusy(*results); busy != kOk) return busy;
  for (const auto* stage : stages) {
    auto text = kd::host::DescribeArtifacts(host.registry(), *stage);
    if (!text.ok()) return Fail(text.status());
    std::printf("%s", text->c_str());
  }
  return kOk;
}

namespace {

// The plotting script: installed next to kdhost, or in the source tree it was built from.
fs::path PlotScript() {
  std::error_code ec;
  const fs::path installed =
      fs::path(boost::dll::program_location(ec)).parent_path().parent_path() / "share" / "kdhost" /
      "ablation_plots.py";
  if (!ec && fs::exists(installed, ec)) return installed;
  return KD_SOURCE_PLOT_SCRIPT;
}

}  // namespace

int Ablate(const Command& c, const Args& args) {
  int64_t stop_after = 0;
  if (!IntFlag(args, "--stop-after", &stop_after))
    return Usage(c, "--stop-after needs a positive integer");
  const fs::path file = args.positional;
  std::error_code ec;
  if (!fs::is_regular_file(file, ec)) {
    return Fail(
        absl::NotFoundError(absl::StrCat("config file '", file.string(), "' does not exist")));
  }
  kd::host::AblationCli cli;
  cli.grid = args.All("--grid");
  cli.seeds = args.Get("--seeds");
  cli.stage = args.Get("--stage");
  cli.baseline = args.Get("--baseline");
  cli.metric = args.Get("--metric");
  cli.out = args.Get("--out");
  Host host;
  const std::vector<std::string> notes = OverrideScope(file, args.All("--set"));
  auto plan = kd::host::PlanAblation(host, file, args.All("--set"), args.All("--plugin-path"), cli);
  if (!plan.ok()) return Fail(WithScopeNotes(plan.status(), notes));
  WarnScope(notes);
  std::printf("%s", kd::host::DescribePlan(*plan).c_str());
  if (args.Has("--dry-run")) {
    const absl::Status fit = kd::host::CheckAblationFits(host, *plan);
    return fit.ok() ? kOk : Fail(fit);
  }
  const char* env_python = std::getenv("KD_PYTHON");
  kd::host::AblationRunOptions options;
  options.python = args.Has("--python") ? args.Get("--python")
                   : env_python         ? env_python
                                        : KD_DEFAULT_PYTHON;
  options.plot_script = PlotScript();
  options.progress = !args.Has("--quiet");
  options.stop_after_steps = stop_after;
  options.wait_for_others = !args.Has("--no-wait");
  // SIGTERM / SIGINT: the current run stops as `kdhost run` does and no further run starts.
  const kd::host::StopSignalGuard stop_on_signal;
  auto outcome = kd::host::RunAblation(host, *plan, options);
  if (!outcome.ok()) return Fail(outcome.status());
  std::printf("\n%s\nresults:\n", outcome->summary.c_str());
  for (const fs::path& path : outcome->files) std::printf("  %s\n", path.string().c_str());
  if (!outcome->plot_error.empty()) {
    std::fprintf(stderr, "kdhost: error: no plots: %s\n", outcome->plot_error.c_str());
  }
  if (outcome->failed > 0) {
    std::fprintf(stderr, "kdhost: error: %d run(s) failed (see results.md); rerun to retry them\n",
                 outcome->failed);
  }
  if (const int signal = kd::host::StopSignal(); signal != 0) {
    std::printf(
        "stopped by %s; exit status %d; run the same command again to continue (finished "
        "runs and stages are reused, the interrupted one resumes):\n  %s\n",
        kd::host::StopSignalName(signal), kd::host::StopExitCode(signal), ResumeCommand().c_str());
    return kd::host::StopExitCode(signal);
  }
  if (outcome->held > 0) {
    std::fprintf(stderr,
                 "kdhost: error: %d run(s) are being done by other processes and --no-wait does "
                 "not wait for them (status \"held\" in results.md); run again once they are "
                 "done\n",
                 outcome->held);
    return kBusy;
  }
  return outcome->failed > 0 || !outcome->plot_error.empty() ? kFailed : kOk;
}

namespace {

void LoadAllPlugins(Host& host, const Args& args) {
  host.loader().LoadAll(kd::host::PluginSearchPath(args.All("--plugin-path"), {}));
}

}  // namespace

int Plugins(const Command&, const Args& args) {
  Host host;
  LoadAllPlugins(host, args);
  std::printf("host: kdhost %s (%s)\nplugin search path:\n", KD_VERSION_STRING,
              kd::FormatAbiStamp(kd::HostAbiStamp()).c_str());
  for (const fs::path& dir : kd::host::PluginSearchPath(args.All("--plugin-path"), {})) {
    std::error_code ec;
    std::printf("  %s%s\n", dir.string().c_str(), fs::is_directory(dir, ec) ? "" : "  (missing)");
  }
  std::printf("plugins:\n");
  for (const kd::PluginRecord& p : host.registry().plugins()) {
    std::printf("  %s %s  %s\n    %s\n", p.name.c_str(), p.version.c_str(), p.path.c_str(),
                p.description.c_str());
    for (kd::Kind kind : kd::kAllKinds) {
      std::vector<std::string> names;
      for (const kd::ComponentInfo* c : host.registry().List(kind)) {
        if (c->plugin == p.name) names.push_back(c->name);
      }
      if (!names.empty()) {
        std::printf("    %-12s %s\n", absl::StrCat(kd::KindName(kind), ":").c_str(),
                    absl::StrJoin(names, ", ").c_str());
      }
    }
  }
  if (!host.loader().problems().empty()) {
    std::fprintf(stderr, "plugins not loaded:\n");
    for (const auto& problem : host.loader().problems()) {
      std::fprintf(stderr, "  %s\n", problem.message.c_str());
    }
  }
  return kOk;
}

// A backbone's or model's feature taps, built with its default options on the CPU; empty for other
// kinds, for components that need options or a dataset to be built, and for those without taps.
std::string DescribeTaps(const kd::Registry& registry, const kd::ComponentInfo& info) {
  if (info.kind != kd::Kind::kBackbone && info.kind != kd::Kind::kModel) return {};
  try {
    absl::StatusOr<kd::host::CNode> table =
        kd::host::ParseToml(absl::StrCat("type = \"", info.QualifiedName(), "\"\n"), "<defaults>");
    if (!table.ok() ||
        !kd::host::ValidateComponent(*table, info.kind, registry, "component").ok()) {
      return {};
    }
    const kd::Options options = kd::host::MakeOptions(std::move(*table), "component");
    const kd::BuildContext ctx(registry, torch::kCPU);
    std::vector<std::string> names;
    std::function<int64_t(const std::string&)> channels;
    std::shared_ptr<kd::Component> built = ctx.BuildComponent(info.kind, options);
    if (auto* backbone = dynamic_cast<kd::Backbone*>(built.get())) {
      names = backbone->TapNames();
      channels = [backbone](const std::string& n) { return backbone->TapChannels(n); };
    } else if (auto* model = dynamic_cast<kd::Model*>(built.get())) {
      names = model->TapNames();
      channels = [model](const std::string& n) { return model->TapChannels(n); };
    }
    if (names.empty()) return {};
    std::vector<std::string> lines;
    for (const std::string& name : names) {
      lines.push_back(absl::StrCat(name, " (", channels(name), " ch)"));
    }
    return absl::StrCat(
        "feature taps with the default options (a distiller names them; the model then also "
        "returns \"tap.<name>\"):\n  ",
        absl::StrJoin(lines, ", "), "\n");
  } catch (const std::exception&) {
    return {};  // needs options or a dataset to be built: no taps to show without a config
  }
}

int Describe(const Command& c, const Args& args) {
  Host host;
  LoadAllPlugins(host, args);
  if (args.Has("--all")) {
    if (args.Has("--markdown")) {
      std::printf("%s", kd::host::ConfigReferenceMarkdown(host.registry()).c_str());
      return kOk;
    }
    for (const auto& section : kd::host::ConfigSections()) {
      std::printf("%s\n",
                  kd::host::DescribeSection(section.name, section.doc, section.schema).c_str());
    }
    for (const kd::ComponentInfo* info : host.registry().All()) {
      std::printf("%s\n", kd::host::DescribeComponent(*info).c_str());
    }
    return kOk;
  }
  if (args.Has("--markdown")) return Usage(c, "--markdown goes with --all");
  const std::string& name = args.positional;
  for (const auto& section : kd::host::ConfigSections()) {
    if (section.name == name) {
      std::printf("%s",
                  kd::host::DescribeSection(section.name, section.doc, section.schema).c_str());
      return kOk;
    }
  }
  std::vector<const kd::ComponentInfo*> found = host.registry().FindAnyKind(name);
  if (found.empty()) {
    std::vector<std::string> candidates;
    for (const auto& section : kd::host::ConfigSections()) candidates.push_back(section.name);
    for (const kd::ComponentInfo* info : host.registry().All()) {
      candidates.push_back(info->name);
      candidates.push_back(info->QualifiedName());
    }
    std::string message = absl::StrCat("no component or config section named '", name, "'");
    std::vector<std::string> near = kd::host::NearestNames(name, candidates);
    if (!near.empty()) absl::StrAppend(&message, "; did you mean ", near.front(), "?");
    absl::StrAppend(&message, " (`kdhost plugins` lists every component)");
    return Fail(absl::NotFoundError(message));
  }
  for (const kd::ComponentInfo* info : found) {
    std::printf("%s%s\n", kd::host::DescribeComponent(*info).c_str(),
                DescribeTaps(host.registry(), *info).c_str());
  }
  return kOk;
}

}  // namespace kdhost
