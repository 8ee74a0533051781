#include "host/host.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "host/builtins.h"
#include "kd/error.h"

namespace kd::host {

namespace fs = std::filesystem;

Host::Host() : loader_(registry_) { ThrowIfError(RegisterBuiltins(registry_)); }

namespace {

// The plugins and plugin directories a config names, and those of the configs its stages are
// imported from (stages.<name>.from_config, loaded under from_config._config).
absl::Status CollectPlugins(const CNode& root, const fs::path& config_file,
                            std::vector<std::string>& names, std::vector<fs::path>& config_dirs,
                            std::vector<const CNode*>& plugin_lists) {
  for (const char* key : {"plugins", "plugin_dirs"}) {
    const CNode* list = root.Get(key);
    if (list == nullptr) continue;
    if (!list->is_array()) {
      return absl::InvalidArgumentError(
          absl::StrCat(list->loc().ToString(), ": ", key, ": expected a list of strings"));
    }
    for (const CNode& item : list->array()) {
      if (!item.is_string()) {
        return absl::InvalidArgumentError(
            absl::StrCat(item.loc().ToString(), ": ", key, ": expected a list of strings"));
      }
      if (absl::string_view(key) == "plugins") {
        if (std::find(names.begin(), names.end(), item.as_string()) == names.end()) {
          names.push_back(item.as_string());
        }
      } else {
        config_dirs.push_back(config_file.parent_path() / item.as_string());
      }
    }
    if (absl::string_view(key) == "plugins") plugin_lists.push_back(list);
  }
  if (const CNode* stages = root.Get("stages"); stages != nullptr && stages->is_table()) {
    for (const auto& [name, table] : stages->table()) {
      const CNode* from = table.is_table() ? table.Get("from_config") : nullptr;
      const CNode* imported = from != nullptr && from->is_table() ? from->Get("_config") : nullptr;
      const CNode* file = imported != nullptr ? from->Get("_file") : nullptr;
      if (file == nullptr || !file->is_string()) continue;
      KD_RETURN_IF_ERROR(
          CollectPlugins(*imported, file->as_string(), names, config_dirs, plugin_lists));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status Host::LoadPluginsFor(const CNode& root, const fs::path& config_file,
                                  const std::vector<std::string>& cli_paths) {
  std::vector<std::string> names;
  std::vector<fs::path> config_dirs;
  std::vector<const CNode*> plugin_lists;
  KD_RETURN_IF_ERROR(CollectPlugins(root, config_file, names, config_dirs, plugin_lists));
  const std::vector<fs::path> dirs = PluginSearchPath(cli_paths, config_dirs);
  if (names.empty() || root.Get("plugins") == nullptr) {
    loader_.LoadAll(dirs);
    return absl::OkStatus();
  }
  absl::Status status = loader_.LoadNamed(names, dirs);
  if (!status.ok()) {
    const CNode* list = plugin_lists.front();
    return absl::Status(status.code(),
                        absl::StrCat(list->loc().ToString(), ": plugins: ", status.message()));
  }
  return absl::OkStatus();
}

}  // namespace kd::host
