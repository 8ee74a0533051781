// Finds and loads plugins (libkd_<name>.so) with Boost.DLL. Each plugin's ABI stamp is checked
// before its register function runs; a plugin that fails anywhere is reported and leaves nothing
// behind in the registry, and the host carries on.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "kd/registry.h"

namespace kd::host {

// <directory of libkdcore>/../<plugin install dir>: where the build and the install tree both keep
// the project's plugins, whichever program (kdhost, a test, a program of one's own) loads them.
std::filesystem::path DefaultPluginDir();

// Search order: --plugin-path entries, then KD_PLUGIN_PATH (':'-separated), then the config's
// plugin_dirs, then DefaultPluginDir(). Missing directories are kept (and reported when searched).
std::vector<std::filesystem::path> PluginSearchPath(
    const std::vector<std::string>& cli_paths,
    const std::vector<std::filesystem::path>& config_dirs);

struct PluginProblem {
  std::string path;
  std::string message;
};

class PluginLoader {
 public:
  explicit PluginLoader(Registry& registry) : registry_(registry) {}

  // Loads one plugin file. The plugin name is the part of the file name after "libkd_".
  absl::Status LoadFile(const std::filesystem::path& file);

  // Loads every plugin found in `dirs`; a name found again in a later directory is shadowed.
  // Failures are collected in problems() and loading goes on.
  void LoadAll(const std::vector<std::filesystem::path>& dirs);

  // Loads the plugins `names`, each from the first directory that has it. Stops at the first
  // plugin that cannot be found or loaded.
  absl::Status LoadNamed(const std::vector<std::string>& names,
                         const std::vector<std::filesystem::path>& dirs);

  const std::vector<PluginProblem>& problems() const { return problems_; }

 private:
  Registry& registry_;
  std::vector<PluginProblem> problems_;
};

}  // namespace kd::host
