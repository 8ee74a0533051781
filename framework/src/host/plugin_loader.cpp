#include "host/plugin_loader.h"

#include <boost/dll/runtime_symbol_info.hpp>
#include <boost/dll/shared_library.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <map>
#include <optional>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "kd/plugin.h"

namespace kd::host {

namespace fs = std::filesystem;

namespace {

const std::string kPrefix = "libkd_";
const std::string kSuffix = ".so";

// Plugins stay loaded for the life of the process: objects they created point into their code.
// The list is leaked on purpose so that no library is closed during static destruction either.
std::vector<boost::dll::shared_library>& LoadedLibraries() {
  static auto* libraries = new std::vector<boost::dll::shared_library>();
  return *libraries;
}

std::optional<std::string> PluginNameOf(const fs::path& file) {
  const std::string name = file.filename().string();
  if (name.size() <= kPrefix.size() + kSuffix.size() || name.rfind(kPrefix, 0) != 0 ||
      name.compare(name.size() - kSuffix.size(), kSuffix.size(), kSuffix) != 0) {
    return std::nullopt;
  }
  return name.substr(kPrefix.size(), name.size() - kPrefix.size() - kSuffix.size());
}

std::vector<fs::path> PluginFilesIn(const fs::path& dir) {
  std::vector<fs::path> files;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    if (entry.is_regular_file(ec) && PluginNameOf(entry.path())) files.push_back(entry.path());
  }
  std::sort(files.begin(), files.end());
  return files;
}

}  // namespace

fs::path DefaultPluginDir() {
  // libkdcore lives in <prefix>/lib (the build tree's lib/ likewise), whichever program loaded it.
  std::error_code ec;
  const fs::path library = boost::dll::this_line_location(ec);
  if (ec) return fs::path(KD_PLUGIN_INSTALL_SUBDIR);
  return (library.parent_path().parent_path() / KD_PLUGIN_INSTALL_SUBDIR).lexically_normal();
}

std::vector<fs::path> PluginSearchPath(const std::vector<std::string>& cli_paths,
                                       const std::vector<fs::path>& config_dirs) {
  std::vector<fs::path> dirs;
  auto add_list = [&](absl::string_view list) {
    for (absl::string_view part : absl::StrSplit(list, ':', absl::SkipEmpty())) {
      dirs.emplace_back(std::string(part));
    }
  };
  for (const std::string& entry : cli_paths) add_list(entry);
  if (const char* env = std::getenv("KD_PLUGIN_PATH")) add_list(env);
  for (const fs::path& dir : config_dirs) dirs.push_back(dir);
  dirs.push_back(DefaultPluginDir());
  std::vector<fs::path> unique;
  for (const fs::path& dir : dirs) {
    if (std::find(unique.begin(), unique.end(), dir) == unique.end()) unique.push_back(dir);
  }
  return unique;
}

absl::Status PluginLoader::LoadFile(const fs::path& file) {
  const std::string path = file.string();
  const std::optional<std::string> file_name = PluginNameOf(file);
  if (!file_name) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": not a plugin file name; plugins are named libkd_<name>.so"));
  }
  if (const PluginRecord* existing = registry_.FindPlugin(*file_name)) {
    return absl::AlreadyExistsError(absl::StrCat("plugin '", *file_name, "' from ", path,
                                                 " is refused: a plugin of that name is already "
                                                 "loaded from ",
                                                 existing->path,
                                                 "; remove one of them from the plugin path"));
  }
  boost::dll::shared_library library;
  try {
    library.load(file, boost::dll::load_mode::rtld_now | boost::dll::load_mode::rtld_local);
  } catch (const std::exception& e) {
    return absl::FailedPreconditionError(
        absl::StrCat(path, ": cannot load the library: ", e.what(),
                     " (was it built against this kdhost and LibTorch?)"));
  }
  LoadedLibraries().push_back(library);
  if (!library.has(kPluginEntrySymbol)) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": not a kdhost plugin: it exports no '", kPluginEntrySymbol,
        "' entry; declare the plugin with KD_PLUGIN(...) and build it with kd_add_plugin()"));
  }
  const PluginManifest* manifest = nullptr;
  try {
    manifest = library.get_alias<const PluginManifest*()>(kPluginEntrySymbol)();
  } catch (...) {
    return absl::InternalError(absl::StrCat(path, ": the plugin's entry function failed"));
  }
  constexpr size_t kStampEnd = offsetof(PluginManifest, abi) + sizeof(AbiStamp);
  if (manifest == nullptr || manifest->manifest_size < kStampEnd) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": the plugin's manifest is missing or truncated; rebuild the plugin"));
  }
  if (absl::Status abi = CheckAbiCompatible(HostAbiStamp(), manifest->abi); !abi.ok()) {
    return absl::FailedPreconditionError(absl::StrCat(path, ": plugin refused: ", abi.message()));
  }
  if (manifest->manifest_size != sizeof(PluginManifest) || manifest->name == nullptr ||
      manifest->register_components == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": the plugin's manifest is malformed; rebuild the plugin"));
  }
  if (*file_name != manifest->name) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": the file is named for plugin '", *file_name, "' but the plugin calls itself '",
        manifest->name, "'; build it with kd_add_plugin(", manifest->name,
        " ...) or rename the file"));
  }
  Registrar registrar(manifest->name);
  const std::string context =
      absl::StrCat(path, ": plugin '", manifest->name, "' failed in its register function");
  const std::string rollback = "; none of its components were registered";
  try {
    manifest->register_components(registrar);
  } catch (const Error& e) {
    return absl::Status(e.status().code(),
                        absl::StrCat(context, ": ", e.status().message(), rollback));
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat(context, ": ", e.what(), rollback));
  } catch (...) {
    return absl::InternalError(absl::StrCat(context, ": a non-standard exception", rollback));
  }
  PluginRecord record{manifest->name, manifest->version ? manifest->version : "?",
                      manifest->description ? manifest->description : "", path,
                      FormatAbiStamp(manifest->abi)};
  return registry_.Commit(std::move(record), registrar.TakeComponents());
}

void PluginLoader::LoadAll(const std::vector<fs::path>& dirs) {
  std::map<std::string, std::string> seen;
  for (const fs::path& dir : dirs) {
    for (const fs::path& file : PluginFilesIn(dir)) {
      const std::string name = *PluginNameOf(file);
      if (auto it = seen.find(name); it != seen.end()) {
        problems_.push_back(
            {file.string(), absl::StrCat("shadowed by ", it->second,
                                         " (earlier in the plugin path); not loaded")});
        continue;
      }
      seen.emplace(name, file.string());
      if (absl::Status status = LoadFile(file); !status.ok()) {
        problems_.push_back({file.string(), std::string(status.message())});
      }
    }
  }
}

absl::Status PluginLoader::LoadNamed(const std::vector<std::string>& names,
                                     const std::vector<fs::path>& dirs) {
  for (const std::string& name : names) {
    if (registry_.FindPlugin(name) != nullptr) continue;
    const std::string file_name = absl::StrCat(kPrefix, name, kSuffix);
    std::optional<fs::path> found;
    for (const fs::path& dir : dirs) {
      std::error_code ec;
      if (fs::is_regular_file(dir / file_name, ec)) {
        found = dir / file_name;
        break;
      }
    }
    if (!found) {
      std::vector<std::string> searched;
      for (const fs::path& dir : dirs) searched.push_back(dir.string());
      std::set<std::string> available;
      for (const fs::path& dir : dirs) {
        for (const fs::path& file : PluginFilesIn(dir)) available.insert(*PluginNameOf(file));
      }
      return absl::NotFoundError(absl::StrCat(
          "plugin '", name, "' not found (no ", file_name, " in: ", absl::StrJoin(searched, ", "),
          "); available: ", available.empty() ? "none" : absl::StrJoin(available, ", "),
          ". Add its directory with --plugin-path, KD_PLUGIN_PATH or plugin_dirs"));
    }
    KD_RETURN_IF_ERROR(LoadFile(*found));
  }
  return absl::OkStatus();
}

}  // namespace kd::host
