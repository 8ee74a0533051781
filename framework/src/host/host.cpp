#include "host/host.h"

#include "absl/strings/str_cat.h"
#include "host/builtins.h"
#include "kd/error.h"

namespace kd::host {

namespace fs = std::filesystem;

Host::Host() : loader_(registry_) { ThrowIfError(RegisterBuiltins(registry_)); }

absl::Status Host::LoadPluginsFor(const CNode& root, const fs::path& config_file,
                                  const std::vector<std::string>& cli_paths) {
  std::vector<std::string> names;
  std::vector<fs::path> config_dirs;
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
        names.push_back(item.as_string());
      } else {
        config_dirs.push_back(config_file.parent_path() / item.as_string());
      }
    }
  }
  const std::vector<fs::path> dirs = PluginSearchPath(cli_paths, config_dirs);
  if (names.empty()) {
    loader_.LoadAll(dirs);
    return absl::OkStatus();
  }
  absl::Status status = loader_.LoadNamed(names, dirs);
  if (!status.ok()) {
    const CNode* list = root.Get("plugins");
    return absl::Status(status.code(),
                        absl::StrCat(list->loc().ToString(), ": plugins: ", status.message()));
  }
  return absl::OkStatus();
}

}  // namespace kd::host
