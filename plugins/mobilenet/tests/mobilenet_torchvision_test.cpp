// mobilenet::MobileNetV2 against torchvision: torchvision's mobilenet_v2 features with random
// weights and batch-norm statistics (tests/export_mobilenet_v2.py, also rewritten into the dilated
// network for output strides 16 and 8) load into kdhost by name, strictly, and give the same
// stage outputs; tools/export_torchvision.py --arch mobilenet_v2 gives the same logits.
#include <torch/serialize.h>
#include <torch/torch.h>
#include <catch2/catch.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "host/checkpoint.h"
#include "host/teacher.h"
#include "kd/model.h"
#include "kd/registry.h"
#include "test_support.h"

namespace {

namespace fs = std::filesystem;

bool HaveTorchvision() {
  return kd::test::RunCommand(kd::test::PythonPath() + " -c 'import torchvision'").exit_code == 0;
}

c10::impl::GenericDict ReadPickle(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  const std::vector<char> bytes((std::istreambuf_iterator<char>(in)),
                                std::istreambuf_iterator<char>());
  return torch::pickle_load(bytes).toGenericDict();
}

// Writes torchvision's features for `arguments` (export_mobilenet_v2.py's), builds
// mobilenet::MobileNetV2 from `toml`, loads the weights strictly and returns the largest
// |difference| over the four features.
double MaxFeatureDifference(const std::string& name, const std::string& arguments,
                            const std::string& toml) {
  const fs::path dir = kd::test::ScratchDir("mobilenet_torchvision_" + name);
  const fs::path script = kd::test::SourceDir() / "plugins/mobilenet/tests/export_mobilenet_v2.py";
  const kd::test::CommandResult exported =
      kd::test::RunCommand(kd::test::PythonPath() + " " + script.string() + " " + arguments +
                           " --out " + (dir / "reference.pt").string());
  INFO(exported.output);
  REQUIRE(exported.exit_code == 0);
  const c10::impl::GenericDict reference = ReadPickle(dir / "reference.pt");

  kd::host::StateDict state;
  for (const auto& entry : reference.at("state").toGenericDict()) {
    state[entry.key().toStringRef()] = entry.value().toTensor();
  }
  auto backbone = kd::test::Make<kd::Backbone>(kd::Kind::kBackbone, toml);
  auto report = kd::host::LoadModuleState(*backbone, state, kd::host::LoadMode::kStrict, name);
  INFO(report.status().ToString());
  REQUIRE(report.ok());
  CHECK(report->loaded == state.size());
  backbone->eval();

  torch::NoGradGuard no_grad;
  const kd::TensorDict features = backbone->Forward(reference.at("input").toTensor());
  double difference = 0;
  for (const std::string& feature : backbone->FeatureNames()) {
    INFO(feature);
    const torch::Tensor expected = reference.at(feature).toTensor();
    REQUIRE(features.at(feature).sizes() == expected.sizes());
    // The two images differ, so the comparison is not of a constant.
    REQUIRE((expected[0] - expected[1]).abs().max().item<double>() > 1e-3);
    difference = std::max(difference, (features.at(feature) - expected).abs().max().item<double>());
  }
  return difference;
}

}  // namespace

TEST_CASE("torchvision mobilenet_v2 features load by name and give the same stage outputs") {
  if (!HaveTorchvision()) {
    WARN("the tests' Python has no torchvision; run tools/setup.sh");
    return;
  }
  const double difference =
      MaxFeatureDifference("os32", "--output-stride 32", R"(type = "mobilenet::MobileNetV2")");
  INFO("max |feature difference| = " << difference);
  CHECK(difference <= 1e-5);
}

TEST_CASE("torchvision mobilenet_v2 features with features.18 give the same 1280-channel output") {
  if (!HaveTorchvision()) {
    WARN("the tests' Python has no torchvision; run tools/setup.sh");
    return;
  }
  const double difference = MaxFeatureDifference("last_conv", "--last-conv", R"(
type = "mobilenet::MobileNetV2"
last_conv = true)");
  INFO("max |feature difference| = " << difference);
  CHECK(difference <= 1e-5);
}

TEST_CASE("torchvision mobilenet_v2 dilated to output stride 16 gives kdhost's outputs") {
  if (!HaveTorchvision()) {
    WARN("the tests' Python has no torchvision; run tools/setup.sh");
    return;
  }
  const double difference = MaxFeatureDifference("os16", "--output-stride 16", R"(
type = "mobilenet::MobileNetV2"
output_stride = 16)");
  INFO("max |feature difference| = " << difference);
  CHECK(difference <= 1e-5);
}

TEST_CASE("torchvision mobilenet_v2 dilated to output stride 8 gives kdhost's outputs") {
  if (!HaveTorchvision()) {
    WARN("the tests' Python has no torchvision; run tools/setup.sh");
    return;
  }
  const double difference = MaxFeatureDifference("os8", "--output-stride 8", R"(
type = "mobilenet::MobileNetV2"
output_stride = 8)");
  INFO("max |feature difference| = " << difference);
  CHECK(difference <= 1e-5);
}

TEST_CASE("torchvision mobilenet_v2 at width 0.5, output stride 8, gives kdhost's outputs") {
  if (!HaveTorchvision()) {
    WARN("the tests' Python has no torchvision; run tools/setup.sh");
    return;
  }
  const double difference =
      MaxFeatureDifference("width_0_5", "--width-mult 0.5 --output-stride 8 --last-conv", R"(
type = "mobilenet::MobileNetV2"
width_mult = 0.5
output_stride = 8
last_conv = true)");
  INFO("max |feature difference| = " << difference);
  CHECK(difference <= 1e-5);
}

TEST_CASE(
    "torchvision mobilenet_v2 exported by tools/export_torchvision.py gives the same logits") {
  if (!HaveTorchvision()) {
    WARN("the tests' Python has no torchvision; run tools/setup.sh");
    return;
  }
  const fs::path dir = kd::test::ScratchDir("mobilenet_torchvision_export");
  const fs::path script = kd::test::SourceDir() / "tools" / "export_torchvision.py";
  const kd::test::CommandResult exported = kd::test::RunCommand(
      kd::test::PythonPath() + " " + script.string() +
      " --arch mobilenet_v2 --random-seed 0 --perturb-norm --num-classes 10 --out " +
      (dir / "export.pt").string() + " --save-io " + (dir / "io.pt").string() +
      " --input-size 64 --batch-size 2");
  INFO(exported.output);
  REQUIRE(exported.exit_code == 0);

  auto data = kd::host::LoadModelExport(dir / "export.pt");
  REQUIRE(data.ok());
  CHECK_THAT(data->model_config, Catch::Contains("type = \"mobilenet::MobileNetV2\"") &&
                                     Catch::Contains("last_conv = true") &&
                                     Catch::Contains("dropout = 0.2"));
  // torchvision's classifier.1 is the head's fc; the 312 features entries are under backbone.
  CHECK(data->state.at("head.fc.weight").sizes() == torch::IntArrayRef({10, 1280}));
  CHECK(data->state.at("backbone.features.18.0.weight").sizes() ==
        torch::IntArrayRef({1280, 320, 1, 1}));
  CHECK(data->state.size() == 314);

  const kd::BuildContext ctx(kd::test::SharedHost().registry(), torch::kCPU);
  // The export alone rebuilds the model and loads every weight strictly.
  auto model = kd::host::ModelFromExport(dir / "export.pt", ctx, nullptr);
  INFO(model.status().ToString());
  REQUIRE(model.ok());
  (*model)->eval();
  const c10::impl::GenericDict io = ReadPickle(dir / "io.pt");
  const torch::Tensor expected = io.at("logits").toTensor();
  torch::NoGradGuard no_grad;
  const torch::Tensor logits =
      (*model)->Forward({{"image", io.at("input").toTensor()}}).at("logits");
  REQUIRE(logits.sizes() == expected.sizes());
  REQUIRE((expected[0] - expected[1]).abs().max().item<double>() > 1e-3);
  const double difference = (logits - expected).abs().max().item<double>();
  INFO("max |logit difference| = " << difference);
  CHECK(difference <= 1e-5);
}
