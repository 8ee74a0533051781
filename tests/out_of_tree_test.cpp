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
  // The plugin's own test, written with the installed kd/testing.h.
  REQUIRE(fs::exists(prefix / "include" / "kd" / "testing.h"));
  auto tested = Run("ctest --test-dir " + build.string() + " -V");
  REQUIRE_THAT(tested.output, Contains("subset_accuracy_test: all checks passed") &&
                                  Contains("100% tests passed, 0 tests failed out of 1"));

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

TEST_CASE("a program of one's own builds against the installed kdhost and uses its components") {
  // examples/embedding: loads the installed plugins, builds mlic_heads::mAP and mlic_heads::BCE
  // from TOML and evaluates them on tensors whose values it documents.
  const fs::path dir = kd::test::ScratchDir("embedding");
  const fs::path prefix = dir / "prefix";
  const fs::path build = dir / "build";
  Run("cmake --install " + kd::test::BuildDir().string() + " --prefix " + prefix.string());
  Run("cmake -S " + (kd::test::SourceDir() / "examples" / "embedding").string() + " -B " +
      build.string() + " -G Ninja -DCMAKE_PREFIX_PATH=" + prefix.string() +
      " -DTorch_DIR=" + KD_TEST_TORCH_DIR + " -DCMAKE_CXX_COMPILER_LAUNCHER=ccache");
  Run("cmake --build " + build.string());
  // Only the installed plugins: no plugin path from the environment.
  auto run = Run("env -u KD_PLUGIN_PATH " + (build / "embed_metrics").string());
  REQUIRE_THAT(
      run.output,
      Contains("mAP = 91.666667") && Contains("loss.bce = 0.693147") &&
          Contains("refused: <toml>:2:10: component.weigth: unknown option for mlic_heads::BCE"));
}
