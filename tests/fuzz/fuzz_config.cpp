// Fuzz target: the config layer. The input is a config file that may inherit from fixed files
// (base.toml, parts/model.toml) and from itself; lines "#set KEY=VALUE" become --set overrides.
// Parsing, inheritance, interpolation, overrides and schema validation must end in a config or an
// error, never a crash or a hang.
#include <cstddef>
#include <cstdint>
#include <sstream>

#include "fuzz_util.h"
#include "host/host.h"
#include "host/pipeline.h"

namespace {

void WriteText(const std::filesystem::path& path, const std::string& text) {
  std::filesystem::create_directories(path.parent_path());
  std::ofstream(path, std::ios::binary | std::ios::trunc) << text;
}

kd::host::Host& SharedHost() {
  static kd::host::Host* host = [] {
    WriteText(kd_fuzz::ScratchDir() / "base.toml",
              "[run]\ndevice = \"cpu\"\nseed = 1\n[train]\nmax_iters = 4\n"
              "optimizer = { type = \"core::SGD\", lr = 0.1 }\n[loader]\nbatch_size = 2\n");
    WriteText(kd_fuzz::ScratchDir() / "parts" / "model.toml",
              "base = [\"../base.toml\"]\n[model]\ntype = \"core::BackboneHead\"\n");
    return new kd::host::Host();
  }();
  return *host;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  kd::host::Host& host = SharedHost();
  const std::string text(reinterpret_cast<const char*>(data), size);
  std::vector<std::string> overrides;
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind("#set ", 0) == 0) overrides.push_back(line.substr(5));
  }
  const auto path = kd_fuzz::WriteInput("main.toml", data, size);
  (void)kd::host::ResolveConfig(host, path, overrides, {});
  return 0;
}
