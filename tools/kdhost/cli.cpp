#include "cli.h"

#include <algorithm>
#include <filesystem>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "host/config.h"

namespace kdhost {

namespace fs = std::filesystem;

std::vector<Command> Commands() {
  std::vector<Flag> run_flags = kConfigFlags;
  run_flags.push_back({"--stage", "NAME", "run only this stage (and the stages it needs)", true});
  run_flags.push_back({"--fresh", "", "ignore resumable states; start unfinished stages over"});
  run_flags.push_back({"--stop-after", "N", "stop each stage after N optimizer steps, resumable"});
  run_flags.push_back({"--quiet", "", "no progress output"});
  run_flags.push_back({"--dry-run", "",
                       "check every stage's config, print the stages, which are reused and what "
                       "each would train; train nothing"});
  const Flag no_wait = {"--no-wait", "",
                        "refuse (exit 75) instead of waiting when another process is training a "
                        "stage this run needs"};
  run_flags.push_back(no_wait);
  const Flag launcher = {"--launcher", "auto|env|slurm",
                         "data-parallel launch: torchrun's or RANK/WORLD_SIZE variables (auto, "
                         "env) or Slurm's (slurm); see docs/distributed.md"};
  run_flags.push_back(launcher);
  std::vector<Flag> train_flags = kConfigFlags;
  train_flags.push_back({"--stage", "NAME", "the stage to train (default: the last one)"});
  train_flags.push_back({"--bench", "N",
                         "time N steps (data, forward, backward, optimizer) and "
                         "print a breakdown; writes nothing"});
  train_flags.push_back({"--json", "FILE",
                         "with --bench: also write the figures as JSON (ms per phase, samples/s, "
                         "parameters; peak memory and host synchronisations on CUDA)"});
  train_flags.push_back({"--fresh", "", "ignore a resumable state; start the stage over"});
  train_flags.push_back({"--stop-after", "N", "stop after N optimizer steps, resumable"});
  train_flags.push_back({"--quiet", "", "no progress output"});
  train_flags.push_back(no_wait);
  train_flags.push_back(launcher);
  std::vector<Flag> eval_flags = kConfigFlags;
  eval_flags.push_back(
      {"--stage", "NAME", "the stage whose model to evaluate (default: the last)"});
  eval_flags.push_back(
      {"--checkpoint", "FILE", "evaluate this model export instead of the stage's"});
  eval_flags.push_back({"--artifact", "best|last", "which export of the stage (default: best)"});
  eval_flags.push_back({"--world-size", "N",
                        "the stage as N data-parallel processes trained it (its own directory; "
                        "see docs/distributed.md)"});
  eval_flags.push_back({"--json", "FILE",
                        "also write the export's identity and every metric at full precision as "
                        "JSON"});
  eval_flags.push_back({"--quiet", "", "no progress output"});
  std::vector<Flag> predict_flags = kConfigFlags;
  predict_flags.push_back({"--out", "DIR", "the directory to write (required)"});
  predict_flags.push_back(
      {"--outputs", "KEY,KEY", "the model outputs to write (default: every output but features)"});
  predict_flags.push_back({"--inputs", "KEY,KEY",
                           "also write these tensors of the batches (e.g. image,labels) as "
                           "batch.<key>.npy"});
  predict_flags.push_back({"--stage", "NAME", "the stage of CONFIG whose data.val to use"});
  predict_flags.push_back({"--quiet", "", "no progress output"});
  std::vector<Flag> produce_flags = kConfigFlags;
  produce_flags.push_back({"--stage", "NAME", "only this artefact stage (repeatable)", true});
  produce_flags.push_back({"--quiet", "", "no progress output"});
  produce_flags.push_back(no_wait);
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
  ablate_flags.push_back({"--no-wait", "",
                          "do the runs no other process is doing, then stop (exit 75) instead of "
                          "waiting for the runs others hold"});
  std::vector<Flag> config_flags = kConfigFlags;
  config_flags.push_back({"--stage", "NAME", "print only this stage's config"});
  return {
      {"run", "CONFIG", "run every stage of a config, reusing finished ones", run_flags},
      {"train", "CONFIG", "train one stage (and the unfinished stages it needs)", train_flags},
      {"eval", "EXPORT|CONFIG [CONFIG]",
       "evaluate a model export on data.val: EXPORT.pt with the config stored in it or a given "
       "CONFIG, or a CONFIG's stage export",
       eval_flags},
      {"predict", "EXPORT [CONFIG]",
       "write a model export's outputs on data.val as .npy files, one row per sample",
       predict_flags},
      {"ablate", "CONFIG",
       "run a stage over a grid of settings and seeds; write results.csv, results.md and plots",
       ablate_flags},
      {"config", "CONFIG", "print the resolved config: inheritance, overrides, defaults applied",
       config_flags},
      {"produce", "CONFIG",
       "make (or reuse) a config's artefacts (e.g. PSD's label partitions) and print what they "
       "hold",
       produce_flags},
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

namespace {

void PrintCommandHelp(const Command& c) {
  std::printf("usage: kdhost %s%s [options]\n\n%s\n\noptions:\n", c.name.c_str(),
              c.positional.empty() ? "" : (" " + c.positional).c_str(), c.summary.c_str());
  for (const Flag& f : c.flags) {
    const std::string left = f.value.empty() ? f.name : f.name + " " + f.value;
    std::printf("  %-28s %s\n", left.c_str(), f.help.c_str());
  }
  std::printf("  %-28s %s\n", "-h, --help", "show this help");
}

}  // namespace

int Usage(const Command& c, const std::string& message) {
  std::fprintf(stderr, "kdhost %s: %s\n(see `kdhost %s --help`)\n", c.name.c_str(), message.c_str(),
               c.name.c_str());
  return kUsage;
}

std::string g_rank_prefix;
std::vector<std::string> g_argv;

std::string ResumeCommand() {
  std::string out;
  for (size_t i = 0; i < g_argv.size(); ++i) {
    const std::string& arg = g_argv[i];
    if (arg == "--fresh" || arg.rfind("--stop-after=", 0) == 0) continue;
    if (arg == "--stop-after") {
      ++i;  // and its value
      continue;
    }
    if (!out.empty()) out += ' ';
    const bool plain = !arg.empty() && arg.find_first_not_of(
                                           "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                           "0123456789_./=:,@%+-") == std::string::npos;
    if (plain) {
      out += arg;
      continue;
    }
    out += '\'';
    for (char c : arg) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
    out += '\'';
  }
  return out;
}

int Fail(const absl::Status& status) {
  std::fprintf(stderr, "kdhost: %serror: %s\n", g_rank_prefix.c_str(),
               std::string(status.message()).c_str());
  const bool input = status.code() == absl::StatusCode::kInvalidArgument ||
                     status.code() == absl::StatusCode::kNotFound ||
                     status.code() == absl::StatusCode::kAlreadyExists;
  return input ? kUsage : kFailed;
}

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
    // "EXPORT [CONFIG]": one more positional argument per optional one in the usage.
    const size_t optional =
        static_cast<size_t>(std::count(c.positional.begin(), c.positional.end(), '['));
    if (c.positional.empty() ||
        (!args.positional.empty() && args.more_positionals.size() >= optional)) {
      *exit = Usage(c, absl::StrCat("unexpected argument '", arg, "'"));
      return std::nullopt;
    }
    if (args.positional.empty()) {
      args.positional = arg;
    } else {
      args.more_positionals.push_back(arg);
    }
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

std::vector<std::string> OverrideScope(const fs::path& file,
                                       const std::vector<std::string>& overrides) {
  if (overrides.empty()) return {};
  auto root = kd::host::LoadConfig(file);
  return root.ok() ? kd::host::OverrideScopeNotes(*root, overrides) : std::vector<std::string>{};
}

absl::Status WithScopeNotes(const absl::Status& status, const std::vector<std::string>& notes) {
  if (status.ok() || notes.empty()) return status;
  return absl::Status(
      status.code(),
      absl::StrCat(status.message(), "\n  note: ", absl::StrJoin(notes, "\n  note: ")));
}

void WarnScope(const std::vector<std::string>& notes) {
  for (const std::string& note : notes) std::fprintf(stderr, "kdhost: warning: %s\n", note.c_str());
}

absl::StatusOr<kd::host::ResolvedConfig> Resolve(Host& host, const Args& args) {
  const fs::path file = args.positional;
  std::error_code ec;
  if (!fs::is_regular_file(file, ec)) {
    return absl::NotFoundError(absl::StrCat("config file '", file.string(), "' does not exist"));
  }
  const std::vector<std::string> notes = OverrideScope(file, args.All("--set"));
  auto config = kd::host::ResolveConfig(host, file, args.All("--set"), args.All("--plugin-path"));
  if (!config.ok()) return WithScopeNotes(config.status(), notes);
  WarnScope(notes);
  return config;
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

}  // namespace kdhost
