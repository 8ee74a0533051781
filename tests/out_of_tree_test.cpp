// The plugin author's path, end to end: install kdhost, build examples/out_of_tree_plugin against
// the installed package, load it into the installed kdhost and use its component from a config.
#include <catch2/catch.hpp>

#include "test_support.h"

using Catch::Matchers::Contains;
namespace fs = std::filesystem;

namespace {

kd::test::CommandResult Run(const std::string& command) {
  auto result = kd::test::RunCommand(command);
  INFO(command << "\n" << result.output);
  REQUIRE(result.exit_code == 0);
  return result;
}

}  // namespace

TEST_CASE("an out-of-tree plugin builds against the installed kdhost and runs from a config") {
  const fs::path dir = kd::test::ScratchDir("out_of_tree");
  const fs::path prefix = dir / "prefix";
  const fs::path build = dir / "build";
  const fs::path source = kd::test::SourceDir() / "examples" / "out_of_tree_plugin";
  Run("cmake --install " + kd::test::BuildDir().string() + " --prefix " + prefix.string());
  REQUIRE(fs::exists(prefix / "lib" / "cmake" / "kdhost" / "kdhostConfig.cmake"));
  REQUIRE(fs::exists(prefix / "include" / "kd" / "plugin.h"));

  Run("cmake -S " + source.string() + " -B " + build.string() + " -G Ninja" +
      " -DCMAKE_PREFIX_PATH=" + prefix.string() + " -DTorch_DIR=" + KD_TEST_TORCH_DIR +
      " -DCMAKE_CXX_COMPILER_LAUNCHER=ccache");
  Run("cmake --build " + build.string());
  REQUIRE(fs::exists(build / "libkd_example_metrics.so"));

  const std::string kdhost = (prefix / "bin" / "kdhost").string();
  auto plugins = Run(kdhost + " plugins --plugin-path " + build.string());
  REQUIRE_THAT(plugins.output, Contains("example_metrics 1.0.0") &&
                                   Contains("metric:      SubsetAccuracy") &&
                                   Contains(prefix.string() + "/lib/kdhost/plugins"));

  auto run = Run(kdhost + " run " + (source / "subset_accuracy.toml").string() + " --plugin-path " +
                 build.string() +
                 " --set data.train.num_samples=128 --set data.val.num_samples=64"
                 " --set train.max_epochs=1 --set run.work_dir=" +
                 (dir / "runs").string());
  REQUIRE_THAT(run.output, Contains("subset_acc"));

  // Installed next to the host's own plugins, it needs no --plugin-path.
  Run("cmake --install " + build.string() + " --prefix " + prefix.string());
  auto describe = Run(kdhost + " describe SubsetAccuracy");
  REQUIRE_THAT(describe.output,
               Contains("example_metrics::SubsetAccuracy  (metric, plugin example_metrics)"));
}
