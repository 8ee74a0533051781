// kdhost: the command-line front end. Subcommands: run, train, eval, config, plugins, describe.
// Exit codes: 0 success, 1 a run failed, 2 bad usage or bad input (config, plugin, file).
#include <torch/torch.h>

#include <boost/dll/runtime_symbol_info.hpp>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "host/ablation.h"
#include "host/files.h"
#include "host/host.h"
#include "host/names.h"
#include "host/pipeline.h"
#include "host/reference.h"
#include "host/root_schema.h"
#include "host/sanitizer_defaults.h"
#include "host/teacher.h"
#include "host/trainer.h"
#include "host/validate.h"
#include "kd/abi.h"
#include "kd/partitioner.h"

namespace {

namespace fs = std::filesystem;
using kd::host::Host;

constexpr int kOk = 0;
constexpr int kFailed = 1;
constexpr int kUsage = 2;

struct Flag {
  std::string name;   // "--set"
  std::string value;  // placeholder for the value; empty: a switch
  std::string help;
  bool repeatable = false;
};

struct Command {
  std::string name;
  std::string positional;  // "CONFIG", "NAME" or ""
  std::string summary;
  std::vector<Flag> flags;
};

const std::vector<Flag> kConfigFlags = {
    {"--set", "KEY.PATH=VALUE", "override a config value (TOML value; repeatable)", true},
    {"--plugin-path", "DIR", "also look for plugins in DIR (repeatable, ':'-separated)", true},
};

std::vector<Command> Commands() {
  std::vector<Flag> run_flags = kConfigFlags;
  run_flags.push_back({"--stage", "NAME", "run only this stage (and the stages it needs)", true});
  run_flags.push_back({"--fresh", "", "ignore resumable states; start unfinished stages over"});
  run_flags.push_back({"--stop-after", "N", "stop each stage after N optimizer steps, resumable"});
  run_flags.push_back({"--quiet", "", "no progress output"});
  const Flag launcher = {"--launcher", "auto|env|slurm",
                         "data-parallel launch: torchrun's or RANK/WORLD_SIZE variables (auto, "
                         "env) or Slurm's (slurm); see docs/distributed.md"};
  run_flags.push_back(launcher);
  std::vector<Flag> train_flags = kConfigFlags;
  train_flags.push_back({"--stage", "NAME", "the stage to train (default: the last one)"});
  train_flags.push_back({"--bench", "N",
                         "time N steps (data, forward, backward, optimizer) and "
                         "print a breakdown; writes nothing"});
  train_flags.push_back({"--fresh", "", "ignore a resumable state; start the stage over"});
  train_flags.push_back({"--stop-after", "N", "stop after N optimizer steps, resumable"});
  train_flags.push_back({"--quiet", "", "no progress output"});
  train_flags.push_back(launcher);
  std::vector<Flag> eval_flags = kConfigFlags;
  eval_flags.push_back(
      {"--stage", "NAME", "the stage whose model to evaluate (default: the last)"});
  eval_flags.push_back(
      {"--checkpoint", "FILE", "evaluate this model export instead of the stage's"});
  eval_flags.push_back({"--artifact", "best|last", "which export of the stage (default: best)"});
  std::vector<Flag> partition_flags = kConfigFlags;
  partition_flags.push_back({"--stage", "NAME", "only this partition stage (repeatable)", true});
  partition_flags.push_back({"--quiet", "", "no progress output"});
  std::vector<Flag> ablate_flags = kConfigFlags;
  ablate_flags.push_back({"--grid", "KEY=V1,V2,...",
                          "vary KEY of the ablated stage over the values (repeatable; a component "
                          "name for a component key swaps the component)",
                          true});
  ablate_flags.push_back(
      {"--seeds", "N|S1,S2,...", "seeds 0..N-1, or a list (default: [ablation] seeds)"});
  ablate_flags.push_back({"--stage", "NAME", "the stage to ablate (default: the last)"});
  ablate_flags.push_back(
      {"--baseline", "VARIANT", "the variant to compare with (default: the first)"});
  ablate_flags.push_back({"--metric", "NAME", "the main metric (default: the stage's first)"});
  ablate_flags.push_back({"--out", "DIR", "results directory (default: <work_dir>/ablation)"});
  ablate_flags.push_back(
      {"--dry-run", "", "print the runs and which stages would be reused; train nothing"});
  ablate_flags.push_back(
      {"--stop-after", "N", "stop every run after N optimizer steps, resumable"});
  ablate_flags.push_back({"--python", "PATH",
                          "Python with matplotlib for the plots (default: "
                          "$KD_PYTHON, else the project's .venv)"});
  ablate_flags.push_back({"--quiet", "", "no progress output"});
  std::vector<Flag> config_flags = kConfigFlags;
  config_flags.push_back({"--stage", "NAME", "print only this stage's config"});
  return {
      {"run", "CONFIG", "run every stage of a config, reusing finished ones", run_flags},
      {"train", "CONFIG", "train one stage (and the unfinished stages it needs)", train_flags},
      {"eval", "CONFIG", "evaluate a stage's exported model on data.val", eval_flags},
      {"ablate", "CONFIG",
       "run a stage over a grid of settings and seeds; write results.csv, results.md and plots",
       ablate_flags},
      {"config", "CONFIG", "print the resolved config: inheritance, overrides, defaults applied",
       config_flags},
      {"partition", "CONFIG",
       "compute (or reuse) a config's label partitions and print their groups", partition_flags},
      {"plugins",
       "",
       "list the plugins found with their versions and components",
       {{"--plugin-path", "DIR", "also look for plugins in DIR (repeatable)", true}}},
      {"describe",
       "NAME",
       "print the options of a component or config section",
       {{"--all", "", "describe every component and section"},
        {"--markdown", "", "with --all: the config reference in Markdown"},
        {"--plugin-path", "DIR", "also look for plugins in DIR (repeatable)", true}}},
  };
}

void PrintUsage(std::FILE* out) {
  std::fprintf(out,
               "usage: kdhost <command> [options]\n\n"
               "kdhost trains and distils models from TOML configs whose components come from "
               "plugins.\n\ncommands:\n");
  for (const Command& c : Commands()) {
    std::fprintf(out, "  %-9s %s\n", c.name.c_str(), c.summary.c_str());
  }
  std::fprintf(out, "\n`kdhost <command> --help` describes a command's options.\n");
}

void PrintCommandHelp(const Command& c) {
  std::printf("usage: kdhost %s%s [options]\n\n%s\n\noptions:\n", c.name.c_str(),
              c.positional.empty() ? "" : (" " + c.positional).c_str(), c.summary.c_str());
  for (const Flag& f : c.flags) {
    const std::string left = f.value.empty() ? f.name : f.name + " " + f.value;
    std::printf("  %-28s %s\n", left.c_str(), f.help.c_str());
  }
  std::printf("  %-28s %s\n", "-h, --help", "show this help");
}

struct Args {
  std::string positional;
  std::map<std::string, std::vector<std::string>> values;
  bool Has(const std::string& flag) const { return values.count(flag) > 0; }
  std::string Get(const std::string& flag, const std::string& fallback = "") const {
    auto it = values.find(flag);
    return it == values.end() || it->second.empty() ? fallback : it->second.back();
  }
  std::vector<std::string> All(const std::string& flag) const {
    auto it = values.find(flag);
    return it == values.end() ? std::vector<std::string>{} : it->second;
  }
};

int Usage(const Command& c, const std::string& message) {
  std::fprintf(stderr, "kdhost %s: %s\n(see `kdhost %s --help`)\n", c.name.c_str(), message.c_str(),
               c.name.c_str());
  return kUsage;
}

// "rank N: " in the messages of a data-parallel process.
std::string g_rank_prefix;

int Fail(const absl::Status& status) {
  std::fprintf(stderr, "kdhost: %serror: %s\n", g_rank_prefix.c_str(),
               std::string(status.message()).c_str());
  const bool input = status.code() == absl::StatusCode::kInvalidArgument ||
                     status.code() == absl::StatusCode::kNotFound ||
                     status.code() == absl::StatusCode::kAlreadyExists;
  return input ? kUsage : kFailed;
}

// Parses argv for command `c`; returns nullopt after printing help or an error (code in *exit).
std::optional<Args> Parse(const Command& c, int argc, char** argv, int* exit) {
  Args args;
  for (int i = 0; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "-h" || arg == "--help") {
      PrintCommandHelp(c);
      *exit = kOk;
      return std::nullopt;
    }
    if (arg.rfind("--", 0) == 0) {
      std::string value;
      bool inline_value = false;
      if (size_t eq = arg.find('='); eq != std::string::npos) {
        value = arg.substr(eq + 1);
        arg = arg.substr(0, eq);
        inline_value = true;
      }
      auto flag = std::find_if(c.flags.begin(), c.flags.end(),
                               [&](const Flag& f) { return f.name == arg; });
      if (flag == c.flags.end()) {
        *exit = Usage(c, absl::StrCat("unknown option ", arg));
        return std::nullopt;
      }
      if (flag->value.empty()) {
        if (inline_value) {
          *exit = Usage(c, absl::StrCat(arg, " takes no value"));
          return std::nullopt;
        }
      } else if (!inline_value) {
        if (i + 1 >= argc) {
          *exit = Usage(c, absl::StrCat(arg, " needs a value (", flag->value, ")"));
          return std::nullopt;
        }
        value = argv[++i];
      }
      if (!flag->repeatable && args.Has(arg)) {
        *exit = Usage(c, absl::StrCat(arg, " given twice"));
        return std::nullopt;
      }
      args.values[arg].push_back(value);
      continue;
    }
    if (c.positional.empty() || !args.positional.empty()) {
      *exit = Usage(c, absl::StrCat("unexpected argument '", arg, "'"));
      return std::nullopt;
    }
    args.positional = arg;
  }
  if (!c.positional.empty() && args.positional.empty() && !args.Has("--all")) {
    *exit = Usage(c, absl::StrCat("missing ", c.positional));
    return std::nullopt;
  }
  return args;
}

bool IntFlag(const Args& args, const std::string& flag, int64_t* out) {
  if (!args.Has(flag)) return true;
  return absl::SimpleAtoi(args.Get(flag), out) && *out > 0;
}

absl::StatusOr<kd::host::ResolvedConfig> Resolve(Host& host, const Args& args) {
  const fs::path file = args.positional;
  std::error_code ec;
  if (!fs::is_regular_file(file, ec)) {
    return absl::NotFoundError(absl::StrCat("config file '", file.string(), "' does not exist"));
  }
  return kd::host::ResolveConfig(host, file, args.All("--set"), args.All("--plugin-path"));
}

absl::StatusOr<const kd::host::StageConfig*> SelectStage(const kd::host::ResolvedConfig& config,
                                                         const Args& args) {
  if (!args.Has("--stage")) return &config.stages.back();
  const kd::host::StageConfig* stage = config.FindStage(args.Get("--stage"));
  if (stage == nullptr) {
    std::vector<std::string> names;
    for (const auto& s : config.stages) names.push_back(s.name);
    return absl::InvalidArgumentError(absl::StrCat("--stage: no stage named '", args.Get("--stage"),
                                                   "' (stages: ", absl::StrJoin(names, ", "), ")"));
  }
  return stage;
}

int RunOrTrain(const Command& c, const Args& args) {
  int64_t stop_after = 0, bench = 0;
  if (!IntFlag(args, "--stop-after", &stop_after))
    return Usage(c, "--stop-after needs a positive integer");
  if (!IntFlag(args, "--bench", &bench)) return Usage(c, "--bench needs a positive integer");
  auto launch = kd::host::ReadLaunchEnv(args.Has("--launcher") ? args.Get("--launcher") : "auto",
                                        [](const char* name) { return std::getenv(name); });
  if (!launch.ok()) return Fail(launch.status());
  if (launch->distributed()) g_rank_prefix = absl::StrCat("rank ", launch->rank, ": ");
  Host host;
  auto config = Resolve(host, args);
  if (!config.ok()) return Fail(config.status());
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
      auto outcome =
          kd::host::TrainStage(host.registry(), &access,
                               {(*stage)->name, (*stage)->dir, (*stage)->config}, train_options);
      if (!outcome.ok()) return Fail(outcome.status());
      if (dist) dist->Shutdown();
      if (dist && !dist->is_main()) return kOk;
      std::printf("%s", outcome->bench_report.c_str());
      return kOk;
    }
  }
  auto results = kd::host::RunPipeline(host, *config, options);
  if (!results.ok()) return Fail(results.status());
  if (dist) dist->Shutdown();
  if (dist && !dist->is_main()) return kOk;  // rank 0 reports
  std::printf("\n%s", kd::host::FormatSummary(*results).c_str());
  std::printf("run directory: %s\n", config->work_dir.string().c_str());
  for (const auto& r : *results) {
    if (r.status == "interrupted") {
      std::printf("stage '%s' stopped after %lld steps; run the same command again to resume\n",
                  r.name.c_str(), static_cast<long long>(r.steps));
    }
  }
  return kOk;
}

int Eval(const Command&, const Args& args) {
  Host host;
  auto config = Resolve(host, args);
  if (!config.ok()) return Fail(config.status());
  auto stage = SelectStage(*config, args);
  if (!stage.ok()) return Fail(stage.status());
  const std::string artifact = args.Get("--artifact", "best");
  if (artifact != "best" && artifact != "last") {
    return Fail(absl::InvalidArgumentError("--artifact must be best or last"));
  }
  const fs::path path = args.Has("--checkpoint")
                            ? fs::path(args.Get("--checkpoint"))
                            : (*stage)->dir / "export" / absl::StrCat(artifact, ".pt");
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) {
    return Fail(absl::NotFoundError(absl::StrCat("no model export at ", path.string(),
                                                 "; train the stage first (kdhost run ",
                                                 args.positional, ") or pass --checkpoint FILE")));
  }
  const kd::host::PipelineAccess access(&*config, *stage);
  auto metrics = kd::host::EvaluateExport(
      host.registry(), &access, {(*stage)->name, (*stage)->dir, (*stage)->config}, path, true);
  if (!metrics.ok()) return Fail(metrics.status());
  std::printf("%s (stage %s)\n", path.string().c_str(), (*stage)->name.c_str());
  for (const kd::MetricValue& m : *metrics) std::printf("  %-12s %.4f\n", m.name.c_str(), m.value);
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

int Partition(const Command&, const Args& args) {
  Host host;
  auto config = Resolve(host, args);
  if (!config.ok()) return Fail(config.status());
  std::vector<const kd::host::StageConfig*> stages;
  for (const auto& stage : config->stages) {
    const std::vector<std::string> only = args.All("--stage");
    const bool named = std::find(only.begin(), only.end(), stage.name) != only.end();
    if (named && !stage.IsPartitionStage()) {
      return Fail(absl::InvalidArgumentError(absl::StrCat(
          "--stage: '", stage.name, "' is not a partition stage (it has no `partitions`)")));
    }
    if (stage.IsPartitionStage() && (only.empty() || named)) stages.push_back(&stage);
  }
  if (stages.empty()) {
    return Fail(absl::InvalidArgumentError(absl::StrCat(
        args.positional, " has no partition stage (a stage with `partitions = [...]`)")));
  }
  kd::host::RunOptions options;
  options.progress = !args.Has("--quiet");
  for (const auto* stage : stages) options.only.push_back(stage->name);
  auto results = kd::host::RunPipeline(host, *config, options);
  if (!results.ok()) return Fail(results.status());
  for (const auto* stage : stages) {
    auto names_text = kd::host::ReadFile(stage->dir / "partition" / "class_names.txt");
    if (!names_text.ok()) return Fail(names_text.status());
    const std::vector<std::string> names = absl::StrSplit(*names_text, '\n', absl::SkipEmpty());
    const kd::host::CNode* entries = stage->config->Get("partitions");
    for (const kd::host::CNode& entry : entries->array()) {
      const std::string name = entry.Get("name")->as_string();
      const fs::path file = stage->dir / "partition" / (name + ".json");
      auto text = kd::host::ReadFile(file);
      if (!text.ok()) return Fail(text.status());
      auto partition = kd::PartitionFromJson(*text, file.string());
      if (!partition.ok()) return Fail(partition.status());
      std::printf("stage %s, partition %s: %zu groups (%s)\n%s", stage->name.c_str(), name.c_str(),
                  partition->groups.size(), file.string().c_str(),
                  kd::host::FormatPartition(*partition, names).c_str());
    }
  }
  return kOk;
}

// The plotting script: installed next to kdhost, or in the source tree it was built from.
fs::path PlotScript() {
  std::error_code ec;
  const fs::path installed =
      fs::path(boost::dll::program_location(ec)).parent_path().parent_path() / "share" / "kdhost" /
      "ablation_plots.py";
  if (!ec && fs::exists(installed, ec)) return installed;
  return KD_SOURCE_PLOT_SCRIPT;
}

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
  auto plan = kd::host::PlanAblation(host, file, args.All("--set"), args.All("--plugin-path"), cli);
  if (!plan.ok()) return Fail(plan.status());
  std::printf("%s", kd::host::DescribePlan(*plan).c_str());
  if (args.Has("--dry-run")) return kOk;
  const char* env_python = std::getenv("KD_PYTHON");
  const std::string python = args.Has("--python") ? args.Get("--python")
                             : env_python         ? env_python
                                                  : KD_DEFAULT_PYTHON;
  auto outcome =
      kd::host::RunAblation(host, *plan, !args.Has("--quiet"), stop_after, python, PlotScript());
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
  return outcome->failed > 0 || !outcome->plot_error.empty() ? kFailed : kOk;
}

void LoadAllPlugins(Host& host, const Args& args) {
  host.loader().LoadAll(kd::host::PluginSearchPath(args.All("--plugin-path"), {}));
}

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
    std::printf("%s\n", kd::host::DescribeComponent(*info).c_str());
  }
  return kOk;
}

int Main(int argc, char** argv) {
  if (argc < 2) {
    PrintUsage(stderr);
    return kUsage;
  }
  const std::string name = argv[1];
  if (name == "-h" || name == "--help" || name == "help") {
    PrintUsage(stdout);
    return kOk;
  }
  if (name == "--version") {
    std::printf("kdhost %s (%s)\n", KD_VERSION_STRING,
                kd::FormatAbiStamp(kd::HostAbiStamp()).c_str());
    return kOk;
  }
  for (const Command& c : Commands()) {
    if (c.name != name) continue;
    int exit = kOk;
    std::optional<Args> args = Parse(c, argc - 2, argv + 2, &exit);
    if (!args) return exit;
    if (c.name == "run" || c.name == "train") return RunOrTrain(c, *args);
    if (auto launch = kd::host::ReadLaunchEnv("auto", [](const char* v) { return std::getenv(v); });
        launch.ok() && launch->distributed()) {
      return Usage(c, absl::StrCat("only `kdhost run` and `kdhost train` run data-parallel; this "
                                   "process was started as rank ",
                                   launch->rank, " of ", launch->world_size,
                                   " (RANK/WORLD_SIZE are set). Start it as a single process"));
    }
    if (c.name == "eval") return Eval(c, *args);
    if (c.name == "config") return Config(c, *args);
    if (c.name == "partition") return Partition(c, *args);
    if (c.name == "ablate") return Ablate(c, *args);
    if (c.name == "plugins") return Plugins(c, *args);
    return Describe(c, *args);
  }
  std::fprintf(stderr, "kdhost: unknown command '%s'\n\n", name.c_str());
  PrintUsage(stderr);
  return kUsage;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return Main(argc, argv);
  } catch (const kd::Error& e) {
    return Fail(e.status());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "kdhost: internal error: %s\n", e.what());
    return kFailed;
  }
}
