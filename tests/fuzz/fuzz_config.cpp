// Fuzz target: the config layer. The input is a config file that may inherit from fixed files
// (base.toml, parts/model.toml) and from itself; lines "#set KEY=VALUE" become --set overrides.
// Parsing, inheritance, interpolation, overrides and schema validation must end in a config or an
// error, never a crash or a hang; a resolved config written back as TOML parses to the same text.
#include <cstddef>
#include <cstdint>
#include <sstream>

#include "fuzz_util.h"
#include "host/host.h"
#include "host/pipeline.h"
#include "kd/dataset.h"
#include "kd/error.h"
#include "kd/registry.h"

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
    auto* made = new kd::host::Host();
    // A dataset with a schema (never built: resolving validates, it does not build), so that
    // inputs can resolve completely and reach the round trip.
    kd::Registrar registrar("fuzz");
    registrar.Add(kd::Kind::kDataset, "Data", "schema only",
                  kd::Schema().Int("num_samples", 8, "samples").String("split", "train", "split"),
                  [](const kd::Options&, const kd::BuildContext&) -> std::shared_ptr<kd::Dataset> {
                    throw kd::Error(absl::InternalError("fuzz::Data is never built"));
                  });
    (void)made->registry().Commit({"fuzz", "0", "fuzz target", "<fuzz>", ""},
                                  registrar.TakeComponents());
    return made;
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
  auto config = kd::host::ResolveConfig(host, path, overrides, {});
  if (config.ok()) {
    const std::string text = kd::host::ToToml(config->root);
    auto again = kd::host::ParseToml(text, "round trip");
    KD_FUZZ_CHECK(again.ok());
    KD_FUZZ_CHECK(kd::host::ToToml(*again) == text);
  }
  return 0;
}
