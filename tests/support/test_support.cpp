#include "test_support.h"

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

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

namespace {

std::shared_ptr<Component> Build(Kind kind, const std::string& toml, const DatasetInfo* info,
                                 torch::Device device) {
  host::CNode table = ValueOrThrow(host::ParseToml(toml, "<test>"));
  ThrowIfError(host::ValidateComponent(table, kind, SharedHost().registry(), "component"));
  Options options = host::MakeOptions(std::move(table), "component");
  BuildContext ctx = BuildContext(SharedHost().registry(), device).WithDatasetInfo(info);
  return ctx.BuildComponent(kind, options);
}

}  // namespace

std::shared_ptr<Component> MakeComponent(Kind kind, const std::string& toml, torch::Device device) {
  return Build(kind, toml, nullptr, device);
}

std::shared_ptr<Component> MakeComponent(Kind kind, const std::string& toml,
                                         const DatasetInfo& info, torch::Device device) {
  return Build(kind, toml, &info, device);
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

int Spawn(const std::string& command, const std::filesystem::path& log, bool append) {
  const std::string shell_command = "exec " + command;  // no allocation after fork
  const std::string log_path = log.string();
  const pid_t pid = fork();
  if (pid == 0) {
    const int fd =
        ::open(log_path.c_str(), O_WRONLY | O_CREAT | (append ? O_APPEND : O_TRUNC), 0644);
    if (fd >= 0) {
      ::dup2(fd, 1);
      ::dup2(fd, 2);
    }
    ::execl("/bin/sh", "sh", "-c", shell_command.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  if (pid < 0) throw Error(absl::InternalError("fork failed"));
  return pid;
}

std::filesystem::path StageDir(const std::filesystem::path& work_dir, const std::string& stage) {
  std::error_code ec;
  for (std::filesystem::directory_iterator it(work_dir, ec), end; !ec && it != end;
       it.increment(ec)) {
    if (it->is_directory() && it->path().filename().string().rfind(stage + "-", 0) == 0)
      return it->path();
  }
  return {};
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
