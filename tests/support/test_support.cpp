#include "test_support.h"

#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <fstream>

#include "host/options_impl.h"
#include "host/validate.h"
#include "kd/error.h"

namespace kd::test {

namespace fs = std::filesystem;

host::Host& SharedHost() {
  static host::Host* shared = [] {
    auto* h = new host::Host();
    h->loader().LoadAll({host::DefaultPluginDir()});
    for (const auto& problem : h->loader().problems()) {
      std::fprintf(stderr, "test host: plugin problem: %s: %s\n", problem.path.c_str(),
                   problem.message.c_str());
    }
    return h;
  }();
  return *shared;
}

std::shared_ptr<Component> MakeComponent(Kind kind, const std::string& toml, torch::Device device) {
  host::CNode table = ValueOrThrow(host::ParseToml(toml, "<test>"));
  ThrowIfError(host::ValidateComponent(table, kind, SharedHost().registry(), "component"));
  Options options = host::MakeOptions(std::move(table), "component");
  BuildContext ctx(SharedHost().registry(), device);
  return ctx.BuildComponent(kind, options);
}

// The build configures these; the environment variables override them.
fs::path SourceDir() {
  const char* dir = std::getenv("KD_SOURCE_DIR");
  return dir ? fs::path(dir) : fs::path(KD_TEST_SOURCE_DIR);
}

fs::path BuildDir() {
  const char* dir = std::getenv("KD_BUILD_DIR");
  return dir ? fs::path(dir) : fs::path(KD_TEST_BUILD_DIR);
}

std::string PythonPath() {
  const char* python = std::getenv("KD_PYTHON");
  return python ? python : KD_TEST_PYTHON;
}

fs::path KdhostPath() { return BuildDir() / "bin" / "kdhost"; }

fs::path ScratchDir(const std::string& name) {
  const fs::path dir = BuildDir() / "test-scratch" / name;
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

CommandResult RunCommand(const std::string& command) {
  CommandResult result;
  FILE* pipe = popen((command + " 2>&1").c_str(), "r");
  if (pipe == nullptr) return result;
  std::array<char, 4096> buffer;
  size_t n;
  while ((n = std::fread(buffer.data(), 1, buffer.size(), pipe)) > 0)
    result.output.append(buffer.data(), n);
  const int status = pclose(pipe);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return result;
}

void WriteText(const fs::path& path, const std::string& text) {
  if (path.has_parent_path()) fs::create_directories(path.parent_path());
  std::ofstream out(path, std::ios::binary);
  out << text;
}

}  // namespace kd::test
