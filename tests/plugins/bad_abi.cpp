// A plugin whose ABI stamp claims a future kd API major version. The host must refuse it before
// calling its register function (which would throw if it ran).
#include <stdexcept>

#include "kd/plugin.h"

namespace {

void Register(kd::Registrar&) { throw std::runtime_error("register must not run for a bad ABI"); }

const kd::PluginManifest* Manifest() {
  static const kd::PluginManifest manifest{
      sizeof(kd::PluginManifest),
      kd::AbiStamp{KD_API_MAJOR + 1, 0, TORCH_VERSION, KD_COMPILER_ID, KD_CXX11_ABI},
      KD_PLUGIN_NAME,
      "0.1.0",
      "plugin with a wrong ABI stamp",
      &Register};
  return &manifest;
}

}  // namespace

namespace kd_bad_abi {
const kd::PluginManifest* Entry() { return Manifest(); }
}  // namespace kd_bad_abi

BOOST_DLL_ALIAS(kd_bad_abi::Entry, kd_plugin_manifest)
