// Tests of the resnet plugin: torchvision's parameter names, shapes and counts (ResNet, ResNeXt,
// Wide ResNet), the deep stem's names, feature shapes for every stem and output stride,
// initialisation, option errors, and SmallCNN.
#include <torch/torch.h>
#include <catch2/catch.hpp>

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "kd/error.h"
#include "kd/model.h"
#include "test_support.h"

namespace {

std::shared_ptr<kd::Backbone> MakeBackbone(const std::string& toml) {
  return kd::test::Make<kd::Backbone>(kd::Kind::kBackbone, toml);
}

// The shape of the parameter or buffer `name` (as a state dict sees it); {-1} when there is none.
std::vector<int64_t> StateShape(const torch::nn::Module& module, const std::string& name) {
  const auto params = module.named_parameters();
  const auto buffers = module.named_buffers();
  if (const torch::Tensor* p = params.find(name)) return p->sizes().vec();
  if (const torch::Tensor* b = buffers.find(name)) return b->sizes().vec();
  return {-1};
}

bool HasStateWithPrefix(const torch::nn::Module& module, const std::string& prefix) {
  for (const auto& item : module.named_parameters()) {
    if (item.key().rfind(prefix, 0) == 0) return true;
  }
  for (const auto& item : module.named_buffers()) {
    if (item.key().rfind(prefix, 0) == 0) return true;
  }
  return false;
}

int64_t CountParameters(const torch::nn::Module& module) {
  int64_t count = 0;
  for (const torch::Tensor& p : module.parameters()) count += p.numel();
  return count;
}

size_t CountStateEntries(const torch::nn::Module& module) {
  return module.named_parameters().size() + module.named_buffers().size();
}

std::vector<std::vector<int64_t>> FeatureShapes(kd::Backbone& backbone,
                                                const torch::Tensor& image) {
  torch::NoGradGuard no_grad;
  backbone.eval();
  const kd::TensorDict features = backbone.Forward(image);
  REQUIRE(features.Keys() == backbone.FeatureNames());
  std::vector<std::vector<int64_t>> shapes;
  for (const auto& [name, value] : features) shapes.push_back(value.sizes().vec());
  return shapes;
}

using Shapes = std::vector<std::vector<int64_t>>;

int64_t ConvDilation(torch::nn::Module& module, const std::string& name) {
  auto conv = module.named_modules()[name]->as<torch::nn::Conv2d>();
  REQUIRE(conv != nullptr);
  return (*conv->options.dilation())[0];
}

}  // namespace

TEST_CASE("ResNet-18 has torchvision's parameters without fc: 11,176,512 in 120 state entries") {
  auto net = MakeBackbone(R"(type = "resnet::ResNet"
depth = 18)");
  CHECK(CountParameters(*net) == 11176512);
  // torchvision's resnet18 state dict has 122 entries; fc.weight and fc.bias are left out.
  CHECK(CountStateEntries(*net) == 120);
  CHECK_FALSE(HasStateWithPrefix(*net, "fc."));
}

TEST_CASE("ResNet-50 has torchvision's parameters without fc: 23,508,032 in 318 state entries") {
  auto net = MakeBackbone(R"(type = "resnet::ResNet"
depth = 50)");
  CHECK(CountParameters(*net) == 23508032);
  CHECK(CountStateEntries(*net) == 318);
}

TEST_CASE("ResNet-18 parameter and buffer names and shapes equal torchvision's") {
  auto net = MakeBackbone(R"(type = "resnet::ResNet"
depth = 18)");
  CHECK(StateShape(*net, "conv1.weight") == std::vector<int64_t>{64, 3, 7, 7});
  CHECK(StateShape(*net, "bn1.weight") == std::vector<int64_t>{64});
  CHECK(StateShape(*net, "bn1.running_mean") == std::vector<int64_t>{64});
  CHECK(StateShape(*net, "bn1.running_var") == std::vector<int64_t>{64});
  CHECK(StateShape(*net, "bn1.num_batches_tracked") == std::vector<int64_t>{});
  CHECK(StateShape(*net, "layer1.0.conv1.weight") == std::vector<int64_t>{64, 64, 3, 3});
  CHECK(StateShape(*net, "layer1.1.bn2.bias") == std::vector<int64_t>{64});
  // layer1 keeps 64 channels at stride 1: no projection shortcut.
  CHECK_FALSE(HasStateWithPrefix(*net, "layer1.0.downsample"));
  CHECK(StateShape(*net, "layer2.0.conv1.weight") == std::vector<int64_t>{128, 64, 3, 3});
  CHECK(StateShape(*net, "layer2.0.downsample.0.weight") == std::vector<int64_t>{128, 64, 1, 1});
  CHECK(StateShape(*net, "layer2.0.downsample.1.weight") == std::vector<int64_t>{128});
  CHECK(StateShape(*net, "layer2.0.downsample.1.num_batches_tracked") == std::vector<int64_t>{});
  CHECK_FALSE(HasStateWithPrefix(*net, "layer2.1.downsample"));
  CHECK(StateShape(*net, "layer4.1.conv2.weight") == std::vector<int64_t>{512, 512, 3, 3});
  CHECK_FALSE(HasStateWithPrefix(*net, "layer4.2."));
  CHECK_FALSE(HasStateWithPrefix(*net, "layer1.0.conv3"));
}

TEST_CASE("ResNet-50 parameter and buffer names and shapes equal torchvision's") {
  auto net = MakeBackbone(R"(type = "resnet::ResNet"
depth = 50)");
  CHECK(StateShape(*net, "conv1.weight") == std::vector<int64_t>{64, 3, 7, 7});
  // Bottleneck widens 64 -> 256 already in layer1, so its first block has a projection.
  CHECK(StateShape(*net, "layer1.0.downsample.0.weight") == std::vector<int64_t>{256, 64, 1, 1});
  CHECK(StateShape(*net, "layer1.0.downsample.1.num_batches_tracked") == std::vector<int64_t>{});
  CHECK(StateShape(*net, "layer1.0.conv1.weight") == std::vector<int64_t>{64, 64, 1, 1});
  CHECK(StateShape(*net, "layer1.1.conv1.weight") == std::vector<int64_t>{64, 256, 1, 1});
  CHECK(StateShape(*net, "layer2.0.conv2.weight") == std::vector<int64_t>{128, 128, 3, 3});
  CHECK(StateShape(*net, "layer3.5.bn3.running_var") == std::vector<int64_t>{1024});
  CHECK_FALSE(HasStateWithPrefix(*net, "layer3.6."));
  CHECK(StateShape(*net, "layer4.2.conv3.weight") == std::vector<int64_t>{2048, 512, 1, 1});
  CHECK(StateShape(*net, "layer4.2.bn3.weight") == std::vector<int64_t>{2048});
}

TEST_CASE("ResNet-101 and ResNet-152 have torchvision's block counts") {
  auto r101 = MakeBackbone(R"(type = "resnet::ResNet"
depth = 101)");
  CHECK(HasStateWithPrefix(*r101, "layer3.22.conv3"));
  CHECK_FALSE(HasStateWithPrefix(*r101, "layer3.23."));
  // torchvision: 44,549,160 with fc (2048 * 1000 + 1000 = 2,049,000).
  CHECK(CountParameters(*r101) == 44549160 - 2049000);
  auto r152 = MakeBackbone(R"(type = "resnet::ResNet"
depth = 152)");
  CHECK(HasStateWithPrefix(*r152, "layer2.7.conv3"));
  CHECK(HasStateWithPrefix(*r152, "layer3.35.conv3"));
  CHECK_FALSE(HasStateWithPrefix(*r152, "layer3.36."));
}

TEST_CASE("ResNeXt-50 (32x4d) has torchvision's parameters without fc: 22,979,904 in 318 entries") {
  auto net = MakeBackbone(R"(type = "resnet::ResNet"
depth = 50
groups = 32
width_per_group = 4)");
  CHECK(CountParameters(*net) == 22979904);
  CHECK(CountStateEntries(*net) == 318);
  // Bottleneck width = int(planes * 4 / 64) * 32: 128 in layer1 (planes 64) ... 1024 in layer4;
  // the grouped 3x3 convolution sees width / 32 input channels per group.
  CHECK(StateShape(*net, "layer1.0.conv1.weight") == std::vector<int64_t>{128, 64, 1, 1});
  CHECK(StateShape(*net, "layer1.0.conv2.weight") == std::vector<int64_t>{128, 4, 3, 3});
  CHECK(StateShape(*net, "layer1.0.bn2.running_mean") == std::vector<int64_t>{128});
  CHECK(StateShape(*net, "layer1.0.conv3.weight") == std::vector<int64_t>{256, 128, 1, 1});
  CHECK(StateShape(*net, "layer1.0.downsample.0.weight") == std::vector<int64_t>{256, 64, 1, 1});
  CHECK(StateShape(*net, "layer3.5.conv2.weight") == std::vector<int64_t>{512, 16, 3, 3});
  CHECK(StateShape(*net, "layer4.2.conv2.weight") == std::vector<int64_t>{1024, 32, 3, 3});
  CHECK(StateShape(*net, "layer4.2.conv3.weight") == std::vector<int64_t>{2048, 1024, 1, 1});
  // The outputs of each stage keep ResNet-50's channels.
  CHECK(net->FeatureChannels("feat.layer4") == 2048);
  auto conv2 = net->named_modules()["layer2.0.conv2"]->as<torch::nn::Conv2d>();
  REQUIRE(conv2 != nullptr);
  CHECK(conv2->options.groups() == 32);
  CHECK(FeatureShapes(*net, torch::randn({1, 3, 64, 64})) ==
        Shapes{{1, 256, 16, 16}, {1, 512, 8, 8}, {1, 1024, 4, 4}, {1, 2048, 2, 2}});
}

TEST_CASE("Wide ResNet-50-2 and ResNeXt-101 (32x8d) have torchvision's parameter counts") {
  auto wide = MakeBackbone(R"(type = "resnet::ResNet"
depth = 50
width_per_group = 128)");
  // torchvision wide_resnet50_2: 68,883,240 with fc.
  CHECK(CountParameters(*wide) == 68883240 - 2049000);
  CHECK(StateShape(*wide, "layer4.2.conv2.weight") == std::vector<int64_t>{1024, 1024, 3, 3});
  auto x101 = MakeBackbone(R"(type = "resnet::ResNet"
depth = 101
groups = 32
width_per_group = 8)");
  // torchvision resnext101_32x8d: 88,791,336 with fc.
  CHECK(CountParameters(*x101) == 88791336 - 2049000);
  CHECK(StateShape(*x101, "layer1.0.conv2.weight") == std::vector<int64_t>{256, 8, 3, 3});
}

TEST_CASE("ResNet-18 and ResNet-34 refuse groups and width_per_group like torchvision") {
  REQUIRE_THROWS_WITH(MakeBackbone(R"(type = "resnet::ResNet"
depth = 18
groups = 32)"),
                      Catch::Contains("groups") && Catch::Contains("basic blocks") &&
                          Catch::Contains("depth 50, 101 or 152"));
  REQUIRE_THROWS_WITH(MakeBackbone(R"(type = "resnet::ResNet"
depth = 34
width_per_group = 128)"),
                      Catch::Contains("width_per_group") && Catch::Contains("basic blocks"));
}

TEST_CASE("ResNet-18 features at 224 px are [B,64,56,56] ... [B,512,7,7]") {
  auto net = MakeBackbone(R"(type = "resnet::ResNet"
depth = 18)");
  CHECK(net->FeatureNames() ==
        std::vector<std::string>{"feat.layer1", "feat.layer2", "feat.layer3", "feat.layer4"});
  CHECK(FeatureShapes(*net, torch::randn({1, 3, 224, 224})) ==
        Shapes{{1, 64, 56, 56}, {1, 128, 28, 28}, {1, 256, 14, 14}, {1, 512, 7, 7}});
  CHECK(net->FeatureChannels("feat.layer1") == 64);
  CHECK(net->FeatureChannels("feat.layer4") == 512);
}

TEST_CASE("ResNet-50 feature channels are 256, 512, 1024, 2048") {
  auto net = MakeBackbone(R"(type = "resnet::ResNet"
depth = 50)");
  CHECK(net->FeatureChannels("feat.layer1") == 256);
  CHECK(net->FeatureChannels("feat.layer2") == 512);
  CHECK(net->FeatureChannels("feat.layer3") == 1024);
  CHECK(net->FeatureChannels("feat.layer4") == 2048);
  REQUIRE_THROWS_WITH(net->FeatureChannels("feat.layer5"),
                      Catch::Contains("feat.layer5") &&
                          Catch::Contains("feat.layer1, feat.layer2, feat.layer3, feat.layer4"));
}

TEST_CASE("ResNet-50 with output_stride 8 dilates layer3 and layer4 instead of striding") {
  auto net = MakeBackbone(R"(type = "resnet::ResNet"
depth = 50
output_stride = 8)");
  // 32 px: conv1 /2 -> 16, max-pool /2 -> 8, layer2 /2 -> 4, then no more striding.
  CHECK(FeatureShapes(*net, torch::randn({1, 3, 32, 32})) ==
        Shapes{{1, 256, 8, 8}, {1, 512, 4, 4}, {1, 1024, 4, 4}, {1, 2048, 4, 4}});
  // torchvision: a dilated layer's first block keeps the previous dilation.
  CHECK(ConvDilation(*net, "layer2.3.conv2") == 1);
  CHECK(ConvDilation(*net, "layer3.0.conv2") == 1);
  CHECK(ConvDilation(*net, "layer3.1.conv2") == 2);
  CHECK(ConvDilation(*net, "layer4.0.conv2") == 2);
  CHECK(ConvDilation(*net, "layer4.2.conv2") == 4);
  // Dilation changes no parameter.
  CHECK(CountParameters(*net) == 23508032);
}

TEST_CASE("ResNet with output_stride 16 dilates layer4 only") {
  auto net = MakeBackbone(R"(type = "resnet::ResNet"
depth = 50
output_stride = 16)");
  // 32 px: layer1 8, layer2 4, layer3 2, layer4 stays 2.
  CHECK(FeatureShapes(*net, torch::randn({1, 3, 32, 32})) ==
        Shapes{{1, 256, 8, 8}, {1, 512, 4, 4}, {1, 1024, 2, 2}, {1, 2048, 2, 2}});
  CHECK(ConvDilation(*net, "layer3.5.conv2") == 1);
  CHECK(ConvDilation(*net, "layer4.0.conv2") == 1);
  CHECK(ConvDilation(*net, "layer4.1.conv2") == 2);
}

TEST_CASE("ResNet-18 also supports output_stride 8 by dilating its basic blocks") {
  auto net = MakeBackbone(R"(type = "resnet::ResNet"
depth = 18
output_stride = 8)");
  CHECK(FeatureShapes(*net, torch::randn({1, 3, 32, 32})) ==
        Shapes{{1, 64, 8, 8}, {1, 128, 4, 4}, {1, 256, 4, 4}, {1, 512, 4, 4}});
  CHECK(ConvDilation(*net, "layer4.1.conv1") == 4);
  CHECK(CountParameters(*net) == 11176512);
}

TEST_CASE("The small stem keeps 28x28 resolution in layer1 and the names conv1 and bn1") {
  auto net = MakeBackbone(R"(type = "resnet::ResNet"
depth = 18
in_channels = 1
stem = "small")");
  CHECK(StateShape(*net, "conv1.weight") == std::vector<int64_t>{64, 1, 3, 3});
  CHECK(StateShape(*net, "bn1.weight") == std::vector<int64_t>{64});
  // 28 -> 28 (layer1) -> 14 -> 7 -> 4 (3x3/2 with padding 1 rounds up).
  CHECK(FeatureShapes(*net, torch::randn({1, 1, 28, 28})) ==
        Shapes{{1, 64, 28, 28}, {1, 128, 14, 14}, {1, 256, 7, 7}, {1, 512, 4, 4}});
}

TEST_CASE("The deep stem has ResNetV1b's conv1..3 and bn1..3 and feeds 128 channels to layer1") {
  auto net = MakeBackbone(R"(type = "resnet::ResNet"
depth = 18
stem = "deep")");
  // CIRKD's ResNetV1b(deep_stem=True): conv3x3/2 3->64, conv3x3 64->64, conv3x3 64->128.
  CHECK(StateShape(*net, "conv1.weight") == std::vector<int64_t>{64, 3, 3, 3});
  CHECK(StateShape(*net, "bn1.weight") == std::vector<int64_t>{64});
  CHECK(StateShape(*net, "conv2.weight") == std::vector<int64_t>{64, 64, 3, 3});
  CHECK(StateShape(*net, "bn2.running_var") == std::vector<int64_t>{64});
  CHECK(StateShape(*net, "conv3.weight") == std::vector<int64_t>{128, 64, 3, 3});
  CHECK(StateShape(*net, "bn3.weight") == std::vector<int64_t>{128});
  CHECK(StateShape(*net, "bn3.num_batches_tracked") == std::vector<int64_t>{});
  CHECK_FALSE(HasStateWithPrefix(*net, "conv1.0"));
  CHECK_FALSE(HasStateWithPrefix(*net, "conv4"));
  // layer1 takes 128 channels, so even a basic block gets a projection shortcut there.
  CHECK(StateShape(*net, "layer1.0.conv1.weight") == std::vector<int64_t>{64, 128, 3, 3});
  CHECK(StateShape(*net, "layer1.0.downsample.0.weight") == std::vector<int64_t>{64, 128, 1, 1});
  CHECK(StateShape(*net, "layer1.0.downsample.1.weight") == std::vector<int64_t>{64});
  CHECK_FALSE(HasStateWithPrefix(*net, "layer1.1.downsample"));
  CHECK(StateShape(*net, "layer2.0.conv1.weight") == std::vector<int64_t>{128, 64, 3, 3});
  // 11,176,512 - 9,536 (7x7 stem) + 112,832 (deep stem) + 36,864 (wider layer1.0.conv1)
  // + 8,320 (layer1.0.downsample); 120 state entries + 12 (conv2, bn2, conv3, bn3) + 6.
  CHECK(CountParameters(*net) == 11324992);
  CHECK(CountStateEntries(*net) == 138);
}

TEST_CASE("The deep stem widens ResNet-101's first bottleneck input to 128 channels") {
  auto net = MakeBackbone(R"(type = "resnet::ResNet"
depth = 101
stem = "deep")");
  CHECK(StateShape(*net, "layer1.0.conv1.weight") == std::vector<int64_t>{64, 128, 1, 1});
  CHECK(StateShape(*net, "layer1.0.downsample.0.weight") == std::vector<int64_t>{256, 128, 1, 1});
  CHECK(StateShape(*net, "layer1.1.conv1.weight") == std::vector<int64_t>{64, 256, 1, 1});
  // 42,500,160 - 9,536 + 112,832 + 4,096 (layer1.0.conv1) + 16,384 (layer1.0.downsample.0).
  CHECK(CountParameters(*net) == 42623936);
}

TEST_CASE("The deep stem with output_stride 8 gives stride-8 features at 64 px") {
  auto r18 = MakeBackbone(R"(type = "resnet::ResNet"
depth = 18
stem = "deep"
output_stride = 8)");
  // 64 px: conv1 /2 -> 32, max-pool /2 -> 16, layer2 /2 -> 8, then dilation.
  CHECK(FeatureShapes(*r18, torch::randn({1, 3, 64, 64})) ==
        Shapes{{1, 64, 16, 16}, {1, 128, 8, 8}, {1, 256, 8, 8}, {1, 512, 8, 8}});
  CHECK(ConvDilation(*r18, "layer4.1.conv2") == 4);
  auto r101 = MakeBackbone(R"(type = "resnet::ResNet"
depth = 101
stem = "deep"
output_stride = 8)");
  CHECK(FeatureShapes(*r101, torch::randn({1, 3, 64, 64})) ==
        Shapes{{1, 256, 16, 16}, {1, 512, 8, 8}, {1, 1024, 8, 8}, {1, 2048, 8, 8}});
  CHECK(r101->FeatureChannels("feat.layer3") == 1024);
}

TEST_CASE("The deep stem takes in_channels in conv1 and initialises like the rest") {
  auto net = MakeBackbone(R"(type = "resnet::ResNet"
depth = 18
in_channels = 1
stem = "deep")");
  CHECK(StateShape(*net, "conv1.weight") == std::vector<int64_t>{64, 1, 3, 3});
  const auto params = net->named_parameters();
  // kaiming_normal_(fan_out, relu) on conv3: std = sqrt(2 / (128 * 3 * 3)).
  CHECK(params["conv3.weight"].std().item<double>() ==
        Approx(std::sqrt(2.0 / (128 * 9))).epsilon(0.05));
  CHECK(torch::all(params["bn3.weight"] == 1).item<bool>());
  CHECK(torch::all(params["bn2.bias"] == 0).item<bool>());
  CHECK(FeatureShapes(*net, torch::randn({2, 1, 32, 32})) ==
        Shapes{{2, 64, 8, 8}, {2, 128, 4, 4}, {2, 256, 2, 2}, {2, 512, 1, 1}});
}

TEST_CASE("ResNet initialises like torchvision: kaiming fan_out convs, BN weight 1 and bias 0") {
  auto net = MakeBackbone(R"(type = "resnet::ResNet"
depth = 18)");
  const auto params = net->named_parameters();
  // kaiming_normal_(fan_out, relu): std = sqrt(2 / (out_channels * 3 * 3)).
  const double expected_std = std::sqrt(2.0 / (512 * 9));
  CHECK(params["layer4.0.conv2.weight"].std().item<double>() == Approx(expected_std).epsilon(0.02));
  CHECK(params["layer4.0.conv2.weight"].mean().item<double>() == Approx(0).margin(1e-3));
  CHECK(torch::all(params["layer1.0.bn2.weight"] == 1).item<bool>());
  CHECK(torch::all(params["layer1.0.bn2.bias"] == 0).item<bool>());
  CHECK(torch::all(params["bn1.weight"] == 1).item<bool>());
}

TEST_CASE("zero_init_residual zeroes the last batch-norm weight of every block only") {
  auto r18 = MakeBackbone(R"(type = "resnet::ResNet"
depth = 18
zero_init_residual = true)");
  auto p18 = r18->named_parameters();
  for (const char* name : {"layer1.0.bn2.weight", "layer2.1.bn2.weight", "layer4.1.bn2.weight"}) {
    INFO(name);
    CHECK(torch::all(p18[name] == 0).item<bool>());
  }
  CHECK(torch::all(p18["layer1.0.bn1.weight"] == 1).item<bool>());
  CHECK(torch::all(p18["layer2.0.downsample.1.weight"] == 1).item<bool>());

  auto r50 = MakeBackbone(R"(type = "resnet::ResNet"
depth = 50
zero_init_residual = true)");
  auto p50 = r50->named_parameters();
  CHECK(torch::all(p50["layer3.5.bn3.weight"] == 0).item<bool>());
  CHECK(torch::all(p50["layer3.5.bn2.weight"] == 1).item<bool>());
}

TEST_CASE("ResNet rejects a depth that does not exist and lists the allowed ones") {
  REQUIRE_THROWS_WITH(MakeBackbone(R"(type = "resnet::ResNet"
depth = 20)"),
                      Catch::Contains("depth") && Catch::Contains("18, 34, 50, 101, 152"));
}

TEST_CASE("ResNet rejects an output_stride other than 8, 16 or 32") {
  REQUIRE_THROWS_WITH(MakeBackbone(R"(type = "resnet::ResNet"
output_stride = 4)"),
                      Catch::Contains("output_stride") && Catch::Contains("8, 16, 32"));
}

TEST_CASE("SmallCNN halves the resolution in every stage and names its features stage1..N") {
  auto net = MakeBackbone(R"(type = "resnet::SmallCNN"
in_channels = 1)");
  CHECK(net->FeatureNames() ==
        std::vector<std::string>{"feat.stage1", "feat.stage2", "feat.stage3"});
  CHECK(FeatureShapes(*net, torch::randn({2, 1, 28, 28})) ==
        Shapes{{2, 32, 14, 14}, {2, 64, 7, 7}, {2, 128, 3, 3}});
  CHECK(net->FeatureChannels("feat.stage2") == 64);
  REQUIRE_THROWS_WITH(net->FeatureChannels("feat.layer4"),
                      Catch::Contains("feat.stage1, feat.stage2, feat.stage3"));
}

TEST_CASE("SmallCNN's parameters are stage<i>.<index> like torchvision's VGG features") {
  auto net = MakeBackbone(R"(type = "resnet::SmallCNN"
channels = [8, 16])");
  CHECK(StateShape(*net, "stage1.0.weight") == std::vector<int64_t>{8, 3, 3, 3});
  CHECK(StateShape(*net, "stage1.1.weight") == std::vector<int64_t>{8});
  CHECK(StateShape(*net, "stage1.1.running_mean") == std::vector<int64_t>{8});
  CHECK(StateShape(*net, "stage1.3.weight") == std::vector<int64_t>{8, 8, 3, 3});
  CHECK(StateShape(*net, "stage2.0.weight") == std::vector<int64_t>{16, 8, 3, 3});
  CHECK(StateShape(*net, "stage2.4.running_var") == std::vector<int64_t>{16});
  CHECK_FALSE(HasStateWithPrefix(*net, "stage1.0.bias"));
  CHECK_FALSE(HasStateWithPrefix(*net, "stage3."));
  // Per stage: two convs (c_in*c*9 + c*c*9) and two batch norms (2c each).
  CHECK(CountParameters(*net) ==
        (3 * 8 * 9 + 8 * 8 * 9 + 4 * 8) + (8 * 16 * 9 + 16 * 16 * 9 + 4 * 16));
  CHECK(FeatureShapes(*net, torch::randn({1, 3, 32, 32})) == Shapes{{1, 8, 16, 16}, {1, 16, 8, 8}});
}

TEST_CASE("SmallCNN rejects an empty channel list") {
  REQUIRE_THROWS_WITH(MakeBackbone(R"(type = "resnet::SmallCNN"
channels = [])"),
                      Catch::Contains("channels"));
}
