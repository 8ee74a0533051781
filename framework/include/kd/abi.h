// The ABI stamp: what a plugin was compiled against. The host compares a plugin's stamp with its
// own before it calls any of the plugin's code (see CheckAbiCompatible for the rule).
#pragma once

#include <torch/version.h>

#include <string>

#include "absl/status/status.h"
#include "kd/version.h"

namespace kd {

struct AbiStamp {
  int api_major;
  int api_minor;
  const char* torch_version;  // e.g. "2.11.0"
  const char* compiler;       // e.g. "gcc 12.2.0"
  int cxx11_abi;              // _GLIBCXX_USE_CXX11_ABI
};

#if defined(__clang__)
#define KD_COMPILER_ID "clang " __clang_version__
#elif defined(__GNUC__)
#define KD_COMPILER_ID "gcc " __VERSION__
#else
#define KD_COMPILER_ID "unknown"
#endif

#ifdef _GLIBCXX_USE_CXX11_ABI
#define KD_CXX11_ABI _GLIBCXX_USE_CXX11_ABI
#else
#define KD_CXX11_ABI -1
#endif

// Evaluated in the including translation unit, so a plugin records its own build settings.
#define KD_CURRENT_ABI_STAMP \
  ::kd::AbiStamp { KD_API_MAJOR, KD_API_MINOR, TORCH_VERSION, KD_COMPILER_ID, KD_CXX11_ABI }

// The stamp libkdcore itself was built with.
AbiStamp HostAbiStamp();

std::string FormatAbiStamp(const AbiStamp& stamp);

// GStreamer-style rule: same API major, plugin minor <= host minor, identical torch version and
// identical C++ standard-library ABI. The compiler only informs the message.
absl::Status CheckAbiCompatible(const AbiStamp& host, const AbiStamp& plugin);

}  // namespace kd
