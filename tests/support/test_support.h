// Helpers for tests: a host with the project's plugins loaded, components built from TOML text,
// fresh scratch directories, and running kdhost as a child process.
#pragma once

#include <filesystem>
#include <memory>
#include <string>

#include "host/host.h"
#include "kd/registry.h"

namespace kd::test {

// A host with every plugin of the build tree loaded (once per test process).
host::Host& SharedHost();

// Builds a component of `kind` from the text of its TOML table, e.g.
//   Make<Metric>(Kind::kMetric, R"(type = "mlic_heads::mAP")")
// The table is validated (defaults filled) as it would be in a config.
std::shared_ptr<Component> MakeComponent(Kind kind, const std::string& toml,
                                         torch::Device device = torch::kCPU);
// The same with `info` as the training split's description (class names, statistics).
std::shared_ptr<Component> MakeComponent(Kind kind, const std::string& toml,
                                         const DatasetInfo& info,
                                         torch::Device device = torch::kCPU);
template <typename T>
std::shared_ptr<T> Make(Kind kind, const std::string& toml, torch::Device device = torch::kCPU) {
  auto component = std::dynamic_pointer_cast<T>(MakeComponent(kind, toml, device));
  if (!component) throw Error("component does not implement the requested interface");
  return component;
}
template <typename T>
std::shared_ptr<T> Make(Kind kind, const std::string& toml, const DatasetInfo& info,
                        torch::Device device = torch::kCPU) {
  auto component = std::dynamic_pointer_cast<T>(MakeComponent(kind, toml, info, device));
  if (!component) throw Error("component does not implement the requested interface");
  return component;
}

// An empty directory <build>/test-scratch/<name>, created fresh.
std::filesystem::path ScratchDir(const std::string& name);

std::filesystem::path SourceDir();   // the project root
std::filesystem::path BuildDir();    // the build tree
std::filesystem::path KdhostPath();  // <build>/bin/kdhost
std::string PythonPath();            // the Python with the test tools (tensorboard)

struct CommandResult {
  int exit_code = -1;
  std::string output;  // stdout and stderr together
};
// Runs a shell command, capturing its output.
CommandResult RunCommand(const std::string& command);

// Starts `command` through /bin/sh (`exec`, so the child is the command itself) with stdout and
// stderr going to `log` (appended, or the file truncated first); returns the child's pid.
int Spawn(const std::string& command, const std::filesystem::path& log, bool append);

// The directory of stage `stage` under a run's `work_dir` (<stage>-<hash>); empty until the run
// creates it.
std::filesystem::path StageDir(const std::filesystem::path& work_dir, const std::string& stage);

// Writes `text` to `path` (creating directories).
void WriteText(const std::filesystem::path& path, const std::string& text);

}  // namespace kd::test
