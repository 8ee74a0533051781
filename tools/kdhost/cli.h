// kdhost's command line: the commands and their flags, the parsed arguments, usage and error
// messages, and what several commands share (resolving a config, choosing a stage).
#pragma once

#include <cstdio>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "host/host.h"
#include "host/pipeline.h"

namespace kdhost {

using kd::host::Host;

// Exit codes: 0 success, 1 a run failed, 2 bad usage or bad input (config, plugin, file), 128 + N
// stopped by signal N (SIGTERM, SIGINT) after writing a resumable state (host/stop_signal.h).
constexpr int kOk = 0;
constexpr int kFailed = 1;
constexpr int kUsage = 2;
// --no-wait found a stage another process is training (sysexits.h's EX_TEMPFAIL).
constexpr int kBusy = 75;

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

// The flags of every command that reads a config.
inline const std::vector<Flag> kConfigFlags = {
    {"--set", "KEY.PATH=VALUE", "override a config value (TOML value; repeatable)", true},
    {"--plugin-path", "DIR", "also look for plugins in DIR (repeatable, ':'-separated)", true},
};

// The commands, in the order `kdhost --help` lists them.
std::vector<Command> Commands();
void PrintUsage(std::FILE* out);

struct Args {
  std::string positional;
  std::vector<std::string> more_positionals;  // after the first, for "A [B]" commands
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

// Prints the usage error `message` for `c`; returns kUsage.
int Usage(const Command& c, const std::string& message);
// Prints `status` as kdhost's error; returns kUsage for bad input, else kFailed.
int Fail(const absl::Status& status);
// "rank N: " in the messages of a data-parallel process.
extern std::string g_rank_prefix;
// The command line kdhost was started with.
extern std::vector<std::string> g_argv;
// The command that resumes this one, quoted for a POSIX shell: the command line without
// --stop-after N and --fresh.
std::string ResumeCommand();

// Parses argv for command `c`; returns nullopt after printing help or an error (code in *exit).
std::optional<Args> Parse(const Command& c, int argc, char** argv, int* exit);
// Reads the positive integer `flag` into *out when given; false when it is not one.
bool IntFlag(const Args& args, const std::string& flag, int64_t* out);
// Where --set overrides do not reach (host/config.h OverrideScopeNotes), for `file`.
std::vector<std::string> OverrideScope(const std::filesystem::path& file,
                                       const std::vector<std::string>& overrides);
// `status` with the notes appended (unchanged when ok or without notes).
absl::Status WithScopeNotes(const absl::Status& status, const std::vector<std::string>& notes);
// Prints each note as a warning on stderr.
void WarnScope(const std::vector<std::string>& notes);
// The config named by the positional argument, with --set and --plugin-path applied; the --set
// scope notes are warnings, or part of the error.
absl::StatusOr<kd::host::ResolvedConfig> Resolve(Host& host, const Args& args);
// The stage named by --stage, else the last.
absl::StatusOr<const kd::host::StageConfig*> SelectStage(const kd::host::ResolvedConfig& config,
                                                         const Args& args);

// The commands (commands.cpp).
int RunOrTrain(const Command& c, const Args& args);
int Eval(const Command& c, const Args& args);
int Predict(const Command& c, const Args& args);
int Config(const Command& c, const Args& args);
int Produce(const Command& c, const Args& args);
int Ablate(const Command& c, const Args& args);
int Plugins(const Command& c, const Args& args);
int Describe(const Command& c, const Args& args);

}  // namespace kdhost
