// tools/export_torchvision.py against kdhost: torchvision ResNet-18, ResNet-101 and ResNeXt-50
// (32x4d), exported with random weights (and random batch-norm statistics), rebuilt by kdhost from
// the export alone, give torchvision's logits for the same input.
#include <torch/serialize.h>
#include <torch/torch.h>
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
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

kd::test::CommandResult Export(const std::string& arguments) {
  const fs::path script = kd::test::SourceDir() / "tools" / "export_torchvision.py";
  return kd::test::RunCommand(kd::test::PythonPath() + " " + script.string() + " " + arguments);
}

// The {input, logits} dictionary written by --save-io.
c10::impl::GenericDict ReadPickle(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  const std::vector<char> bytes((std::istreambuf_iterator<char>(in)),
                                std::istreambuf_iterator<char>());
  return torch::pickle_load(bytes).toGenericDict();
}

// Exports `arch` with 10 classes, rebuilds it from the export and returns
// max |kdhost logits - torchvision logits| on a 2 x 3 x 64 x 64 input.
double MaxLogitDifference(const std::string& arch) {
  const fs::path dir = kd::test::ScratchDir("torchvision_import_" + arch);
  const kd::test::CommandResult exported =
      Export("--arch " + arch + " --random-seed 0 --perturb-norm --num-classes 10 --out " +
             (dir / "export.pt").string() + " --save-io " + (dir / "io.pt").string() +
             " --input-size 64 --batch-size 2");
  INFO(exported.output);
  REQUIRE(exported.exit_code == 0);

  const kd::BuildContext ctx(kd::test::SharedHost().registry(), torch::kCPU);
  // The export alone rebuilds the model (its model_config) and loads every weight strictly.
  auto model = kd::host::ModelFromExport(dir / "export.pt", ctx, nullptr);
  INFO(model.status().ToString());
  REQUIRE(model.ok());
  (*model)->eval();

  const c10::impl::GenericDict io = ReadPickle(dir / "io.pt");
  const torch::Tensor input = io.at("input").toTensor();
  const torch::Tensor expected = io.at("logits").toTensor();
  REQUIRE(expected.sizes() == torch::IntArrayRef({2, 10}));
  torch::NoGradGuard no_grad;
  const torch::Tensor logits = (*model)->Forward({{"image", input}}).at("logits");
  REQUIRE(logits.sizes() == expected.sizes());
  // The logits differ between the two images, so the comparison is not of a constant.
  REQUIRE((expected[0] - expected[1]).abs().max().item<double>() > 1e-3);
  return (logits - expected).abs().max().item<double>();
}

}  // namespace

TEST_CASE("torchvision ResNet-18 exported by the tool gives the same logits in kdhost") {
  if (!HaveTorchvision()) {
    WARN("the tests' Python has no torchvision; run tools/setup.sh");
    return;
  }
  const double difference = MaxLogitDifference("resnet18");
  INFO("max |logit difference| = " << difference);
  CHECK(difference <= 1e-4);
}

TEST_CASE("torchvision ResNet-101 exported by the tool gives the same logits in kdhost") {
  if (!HaveTorchvision()) {
    WARN("the tests' Python has no torchvision; run tools/setup.sh");
    return;
  }
  const double difference = MaxLogitDifference("resnet101");
  INFO("max |logit difference| = " << difference);
  CHECK(difference <= 1e-4);
}

TEST_CASE("torchvision ResNeXt-50 (32x4d) exported by the tool gives the same logits in kdhost") {
  if (!HaveTorchvision()) {
    WARN("the tests' Python has no torchvision; run tools/setup.sh");
    return;
  }
  const double difference = MaxLogitDifference("resnext50_32x4d");
  INFO("max |logit difference| = " << difference);
  CHECK(difference <= 1e-4);
}

TEST_CASE("a torchvision export carries kdhost's export fields and the model config") {
  if (!HaveTorchvision()) {
    WARN("the tests' Python has no torchvision; run tools/setup.sh");
    return;
  }
  const fs::path dir = kd::test::ScratchDir("torchvision_export_fields");
  kd::test::WriteText(dir / "names.txt", "cat\ndog\nperson\n");
  const kd::test::CommandResult exported =
      Export("--arch resnext50_32x4d --num-classes 3 --class-names " +
             (dir / "names.txt").string() + " --out " + (dir / "export.pt").string());
  INFO(exported.output);
  REQUIRE(exported.exit_code == 0);
  auto data = kd::host::LoadModelExport(dir / "export.pt");
  INFO(data.status().ToString());
  REQUIRE(data.ok());
  CHECK(data->stage == "torchvision");
  CHECK(data->step == 0);
  CHECK(data->metrics.empty());
  CHECK(data->class_names == std::vector<std::string>{"cat", "dog", "person"});
  CHECK_THAT(data->model_config,
             Catch::Contains("type = \"core::BackboneHead\"") &&
                 Catch::Contains("type = \"resnet::ResNet\"") && Catch::Contains("depth = 50") &&
                 Catch::Contains("groups = 32") && Catch::Contains("width_per_group = 4") &&
                 Catch::Contains("type = \"mlic_heads::GapLinear\"") &&
                 Catch::Contains("num_classes = 3"));
  // torchvision's fc is the head's fc; everything else is under backbone.
  CHECK(data->state.at("head.fc.weight").sizes() == torch::IntArrayRef({3, 2048}));
  CHECK(data->state.at("backbone.layer1.0.conv2.weight").sizes() ==
        torch::IntArrayRef({128, 4, 3, 3}));
  CHECK(data->state.count("backbone.bn1.num_batches_tracked") == 1);
  CHECK(data->state.count("fc.weight") == 0);
  CHECK(data->state.size() == 320);
}

TEST_CASE("a backbone-only torchvision export leaves the classifier to the model") {
  if (!HaveTorchvision()) {
    WARN("the tests' Python has no torchvision; run tools/setup.sh");
    return;
  }
  const fs::path dir = kd::test::ScratchDir("torchvision_backbone_only");
  const kd::test::CommandResult exported = Export(
      "--arch resnet18 --backbone-only --num-classes 5 --out " + (dir / "export.pt").string());
  INFO(exported.output);
  REQUIRE(exported.exit_code == 0);
  auto data = kd::host::LoadModelExport(dir / "export.pt");
  REQUIRE(data.ok());
  CHECK(data->state.size() == 120);
  CHECK(data->state.count("head.fc.weight") == 0);
  // A model of the export's config takes every backbone weight; only the head is left.
  auto model = kd::test::Make<kd::Model>(kd::Kind::kModel, data->model_config);
  auto report =
      kd::host::LoadModuleState(*model, data->state, kd::host::LoadMode::kLenient, "export");
  REQUIRE(report.ok());
  CHECK(report->missing == std::vector<std::string>{"head.fc.bias", "head.fc.weight"});
  CHECK(report->unexpected.empty());
  // As a teacher (strict), such a file is refused with the missing keys named.
  const kd::BuildContext ctx(kd::test::SharedHost().registry(), torch::kCPU);
  auto teacher = kd::host::ModelFromExport(dir / "export.pt", ctx, nullptr);
  REQUIRE_FALSE(teacher.ok());
  CHECK_THAT(std::string(teacher.status().message()), Catch::Contains("head.fc.weight"));
}

TEST_CASE("the exporter names torchvision's weights when asked for ones that do not exist") {
  if (!HaveTorchvision()) {
    WARN("the tests' Python has no torchvision; run tools/setup.sh");
    return;
  }
  const fs::path dir = kd::test::ScratchDir("torchvision_bad_weights");
  const kd::test::CommandResult exported =
      Export("--arch resnet50 --weights IMAGENET9K --out " + (dir / "export.pt").string());
  CHECK(exported.exit_code == 2);
  CHECK_THAT(exported.output,
             Catch::Contains("IMAGENET9K") && Catch::Contains("IMAGENET1K_V1, IMAGENET1K_V2"));
  CHECK_FALSE(fs::exists(dir / "export.pt"));
}
