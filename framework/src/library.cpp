#include "kd/library.h"

#include "absl/strings/str_join.h"
#include "host/config.h"
#include "host/host.h"
#include "host/options_impl.h"
#include "host/plugin_loader.h"
#include "host/validate.h"

namespace kd {

namespace {

// The loader's problems since `first`, as one status.
absl::Status Problems(const host::PluginLoader& loader, size_t first) {
  std::vector<std::string> messages;
  for (size_t i = first; i < loader.problems().size(); ++i) {
    const std::string& message = loader.problems()[i].message;
    // A plugin found again later in the search path is not a failure: the first one is loaded.
    if (message.rfind("shadowed by ", 0) != 0) messages.push_back(message);
  }
  if (messages.empty()) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrJoin(messages, "\n"));
}

}  // namespace

Library::Library() : host_(std::make_unique<host::Host>()) {}
Library::~Library() = default;

Registry& Library::registry() { return host_->registry(); }
const Registry& Library::registry() const { return host_->registry(); }

absl::Status Library::LoadInstalledPlugins() {
  const size_t first = host_->loader().problems().size();
  host_->loader().LoadAll(host::PluginSearchPath({}, {}));
  return Problems(host_->loader(), first);
}

absl::Status Library::LoadPlugins(const std::filesystem::path& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {
    const size_t first = host_->loader().problems().size();
    host_->loader().LoadAll({path});
    return Problems(host_->loader(), first);
  }
  return host_->loader().LoadFile(path);
}

absl::StatusOr<Options> Library::ParseComponent(Kind kind, absl::string_view toml,
                                                const std::string& key,
                                                const std::string& source) const {
  KD_ASSIGN_OR_RETURN(host::CNode table, host::ParseToml(std::string(toml), source));
  KD_RETURN_IF_ERROR(host::ValidateComponent(table, kind, registry(), key));
  return host::MakeOptions(std::move(table), key);
}

}  // namespace kd
