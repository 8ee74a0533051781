// The plugin contract. A plugin is a module library libkd_<name>.so built with kd_add_plugin(),
// whose sources contain exactly one
//
//   KD_PLUGIN("1.0.0", "one-line description", RegisterMyComponents);
//
// with `void RegisterMyComponents(kd::Registrar&)`. The macro exports one entry symbol
// (BOOST_DLL_ALIAS) returning a manifest; the host checks the manifest's ABI stamp before it calls
// the register function, and plugins are never unloaded.
#pragma once

#include <boost/dll/alias.hpp>

#include <cstdint>

#include "kd/abi.h"
#include "kd/dataset.h"
#include "kd/distiller.h"
#include "kd/hook.h"
#include "kd/loss.h"
#include "kd/metric.h"
#include "kd/model.h"
#include "kd/optim.h"
#include "kd/registry.h"

namespace kd {

// Plain data so that the host can read it whatever the plugin was compiled with. `manifest_size`
// and `abi` stay first in every API version.
struct PluginManifest {
  uint32_t manifest_size;
  AbiStamp abi;
  const char* name;
  const char* version;
  const char* description;
  void (*register_components)(Registrar& registrar);
};

inline constexpr const char* kPluginEntrySymbol = "kd_plugin_manifest";

}  // namespace kd

#define KD_PLUGIN_MANIFEST_DEFINE_(NAME, VERSION, DESCRIPTION, REGISTER_FN)  \
  namespace kd_plugin_entry {                                                \
  static const ::kd::PluginManifest* Manifest() {                            \
    static const ::kd::PluginManifest manifest{sizeof(::kd::PluginManifest), \
                                               KD_CURRENT_ABI_STAMP,         \
                                               NAME,                         \
                                               VERSION,                      \
                                               DESCRIPTION,                  \
                                               &REGISTER_FN};                \
    return &manifest;                                                        \
  }                                                                          \
  }                                                                          \
  BOOST_DLL_ALIAS(kd_plugin_entry::Manifest, kd_plugin_manifest)

#ifdef KD_PLUGIN_NAME
#define KD_PLUGIN(VERSION, DESCRIPTION, REGISTER_FN) \
  KD_PLUGIN_MANIFEST_DEFINE_(KD_PLUGIN_NAME, VERSION, DESCRIPTION, REGISTER_FN)
#else
#define KD_PLUGIN(VERSION, DESCRIPTION, REGISTER_FN) \
  static_assert(false, "build kdhost plugins with kd_add_plugin(), which defines KD_PLUGIN_NAME")
#endif
