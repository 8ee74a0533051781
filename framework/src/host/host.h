// The host: the registry with the built-in components, and the plugin loader that fills it.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "host/config.h"
#include "host/plugin_loader.h"
#include "kd/registry.h"

namespace kd::host {

class Host {
 public:
  Host();
  Host(const Host&) = delete;
  Host& operator=(const Host&) = delete;

  Registry& registry() { return registry_; }
  const Registry& registry() const { return registry_; }
  PluginLoader& loader() { return loader_; }

  // Loads the plugins a config names in `plugins` (every plugin found when it names none), looking
  // in `cli_paths`, KD_PLUGIN_PATH, the config's `plugin_dirs` and the default directory.
  absl::Status LoadPluginsFor(const CNode& root, const std::filesystem::path& config_file,
                              const std::vector<std::string>& cli_paths);

 private:
  Registry registry_;
  PluginLoader loader_;
};

}  // namespace kd::host
