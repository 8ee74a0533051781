#include "kd/abi.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace kd {

AbiStamp HostAbiStamp() { return KD_CURRENT_ABI_STAMP; }

std::string FormatAbiStamp(const AbiStamp& s) {
  return absl::StrFormat("kd API %d.%d, torch %s, %s, _GLIBCXX_USE_CXX11_ABI=%d", s.api_major,
                         s.api_minor, s.torch_version ? s.torch_version : "?",
                         s.compiler ? s.compiler : "?", s.cxx11_abi);
}

absl::Status CheckAbiCompatible(const AbiStamp& host, const AbiStamp& plugin) {
  std::string why;
  if (plugin.api_major != host.api_major) {
    why = absl::StrCat("kd API major version ", plugin.api_major, " != host's ", host.api_major);
  } else if (plugin.api_minor > host.api_minor) {
    why = absl::StrCat("plugin needs kd API ", plugin.api_major, ".", plugin.api_minor,
                       " but the host provides ", host.api_major, ".", host.api_minor);
  } else if (plugin.torch_version == nullptr ||
             std::strcmp(plugin.torch_version, host.torch_version) != 0) {
    why = absl::StrCat("torch ", plugin.torch_version ? plugin.torch_version : "?",
                       " != host's torch ", host.torch_version);
  } else if (plugin.cxx11_abi != host.cxx11_abi) {
    why = absl::StrCat("_GLIBCXX_USE_CXX11_ABI=", plugin.cxx11_abi, " != host's ", host.cxx11_abi);
  }
  if (why.empty()) return absl::OkStatus();
  return absl::FailedPreconditionError(
      absl::StrCat("incompatible ABI stamp (", why, ")\n    plugin: ", FormatAbiStamp(plugin),
                   "\n    host:   ", FormatAbiStamp(host),
                   "\n    fix: rebuild the plugin against this kdhost (find_package(kdhost) of the "
                   "installed host, with the same LibTorch)"));
}

}  // namespace kd
