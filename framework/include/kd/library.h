// kd::Library: kdhost's components in a program of one's own. It holds a registry with the core
// components, loads plugins (the installed ones, a directory, a file) and builds any component from
// the text of its TOML table, validated and completed with its defaults as a config's table is:
//
//   kd::Library library;
//   if (absl::Status s = library.LoadInstalledPlugins(); !s.ok()) ...
//   auto metric = library.Build<kd::Metric>(kd::Kind::kMetric, R"(type = "mlic_heads::mAP")");
//   if (!metric.ok()) ...  // the message says what is wrong, at <toml>:line:column
//   (*metric)->Update(outputs, batch);
//
// examples/embedding/ is a complete program; kd/testing.h has the helpers for plugins' tests.
#pragma once

#include <torch/types.h>

#include <filesystem>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "kd/error.h"
#include "kd/registry.h"

namespace kd {

namespace host {
class Host;
}  // namespace host

class Library {
 public:
  Library();
  ~Library();
  Library(const Library&) = delete;
  Library& operator=(const Library&) = delete;

  // Loads every plugin of the kdhost this program runs with: those in KD_PLUGIN_PATH
  // (':'-separated directories) and in the plugin directory next to libkdcore
  // (<prefix>/lib/kdhost/plugins). Fails naming every plugin that could not be loaded.
  absl::Status LoadInstalledPlugins();
  // Loads the plugin file `path` (libkd_<name>.so), or every plugin in the directory `path`.
  absl::Status LoadPlugins(const std::filesystem::path& path);

  Registry& registry();
  const Registry& registry() const;

  // The text of a component table of `kind` (e.g. `type = "mlic_heads::mAP"`), validated against
  // the component's schema with its defaults filled in. Messages name `source`:line:column and the
  // table's key path `key`.
  absl::StatusOr<Options> ParseComponent(Kind kind, absl::string_view toml,
                                         const std::string& key = "component",
                                         const std::string& source = "<toml>") const;

  // Builds the component the table `toml` describes, on `device`; `info` describes the training
  // split when the component needs one (a head's class count, a metric's class names).
  template <typename T>
  absl::StatusOr<std::shared_ptr<T>> Build(Kind kind, absl::string_view toml,
                                           const DatasetInfo* info = nullptr,
                                           torch::Device device = torch::kCPU) const {
    absl::StatusOr<Options> options = ParseComponent(kind, toml);
    if (!options.ok()) return options.status();
    try {
      return BuildContext(registry(), device).WithDatasetInfo(info).Build<T>(kind, *options);
    } catch (const Error& e) {
      return e.status();
    } catch (const std::exception& e) {
      return absl::InternalError(absl::StrCat(options->Type(), ": ", e.what()));
    }
  }

 private:
  std::unique_ptr<host::Host> host_;
};

}  // namespace kd
