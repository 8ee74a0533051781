// kdhost: the command-line front end (cli.h lists the commands and the exit codes).
#include <cstdlib>
#include <exception>

#include "absl/strings/str_cat.h"
#include "cli.h"
#include "host/distributed.h"
#include "kd/abi.h"
#include "kd/error.h"

namespace kdhost {
namespace {

int Main(int argc, char** argv) {
  if (argc < 2) {
    PrintUsage(stderr);
    return kUsage;
  }
  g_argv.assign(argv, argv + argc);
  const std::string name = argv[1];
  if (name == "-h" || name == "--help" || name == "help") {
    PrintUsage(stdout);
    return kOk;
  }
  if (name == "--version") {
    std::printf("kdhost %s (%s)\n", KD_VERSION_STRING,
                kd::FormatAbiStamp(kd::HostAbiStamp()).c_str());
    return kOk;
  }
  for (const Command& c : Commands()) {
    if (c.name != name) continue;
    int exit = kOk;
    std::optional<Args> args = Parse(c, argc - 2, argv + 2, &exit);
    if (!args) return exit;
    if (c.name == "run" || c.name == "train") return RunOrTrain(c, *args);
    if (auto launch = kd::host::ReadLaunchEnv("auto", [](const char* v) { return std::getenv(v); });
        launch.ok() && launch->distributed()) {
      return Usage(c, absl::StrCat("only `kdhost run` and `kdhost train` run data-parallel; this "
                                   "process was started as rank ",
                                   launch->rank, " of ", launch->world_size,
                                   " (RANK/WORLD_SIZE are set). Start it as a single process"));
    }
    if (c.name == "eval") return Eval(c, *args);
    if (c.name == "predict") return Predict(c, *args);
    if (c.name == "config") return Config(c, *args);
    if (c.name == "produce") return Produce(c, *args);
    if (c.name == "ablate") return Ablate(c, *args);
    if (c.name == "plugins") return Plugins(c, *args);
    return Describe(c, *args);
  }
  std::fprintf(stderr, "kdhost: unknown command '%s'\n\n", name.c_str());
  PrintUsage(stderr);
  return kUsage;
}

}  // namespace
}  // namespace kdhost

int main(int argc, char** argv) {
  try {
    return kdhost::Main(argc, argv);
  } catch (const kd::Error& e) {
    return kdhost::Fail(e.status());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "kdhost: internal error: %s\n", e.what());
    return kdhost::kFailed;
  }
}
