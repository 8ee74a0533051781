// Tests of the mobilenet plugin: torchvision's parameter names, shapes and counts, feature shapes
// and dilations for every output stride, width multipliers, initialisation and option errors.
#include <torch/torch.h>
#include <catch2/catch.hpp>

#include <cmath>
#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "kd/batch_norm.h"
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

using Shapes = std::vector<std::vector<int64_t>>;

Shapes FeatureShapes(kd::Backbone& backbone, const torch::Tensor& image) {
  torch::NoGradGuard no_grad;
  backbone.eval();
  const kd::TensorDict features = backbone.Forward(image);
  REQUIRE(features.Keys() == backbone.FeatureNames());
  Shapes shapes;
  for (const auto& [name, value] : features) shapes.push_back(value.sizes().vec());
  return shapes;
}

std::vector<int64_t> FeatureChannels(const kd::Backbone& backbone) {
  std::vector<int64_t> channels;
  for (const std::string& name : backbone.FeatureNames()) {
    channels.push_back(backbone.FeatureChannels(name));
  }
  return channels;
}

// {stride, dilation, padding} of the convolution `name`.
std::vector<int64_t> ConvGeometry(torch::nn::Module& module, const std::string& name) {
  auto conv = module.named_modules()[name]->as<torch::nn::Conv2d>();
  REQUIRE(conv != nullptr);
  const auto& padding = std::get<torch::ExpandingArray<2>>(conv->options.padding());
  return {(*conv->options.stride())[0], (*conv->options.dilation())[0], (*padding)[0]};
}

// The depthwise 3x3 convolution of inverted-residual block `index` (features.1 has no expansion
// convolution, so its depthwise one comes first).
std::string Depthwise(int index) {
  return "features." + std::to_string(index) + (index == 1 ? ".conv.0.0" : ".conv.1.0");
}

}  // namespace

TEST_CASE(
    "MobileNetV2 has torchvision's features parameters: 1,811,712, or 2,223,872 with "
    "last_conv") {
  auto net = MakeBackbone(R"(type = "mobilenet::MobileNetV2")");
  // torchvision's mobilenet_v2 has 3,504,872 parameters; its classifier Linear(1280, 1000) has
  // 1,281,000 and features.18 (1x1 conv 320 -> 1280 and its batch norm) 409,600 + 2,560.
  CHECK(CountParameters(*net) == 3504872 - 1281000 - 412160);
  // 306 of features' 312 state entries: features.18 has a weight and five batch-norm entries.
  CHECK(CountStateEntries(*net) == 306);
  CHECK_FALSE(HasStateWithPrefix(*net, "features.18."));

  auto with_last = MakeBackbone(R"(type = "mobilenet::MobileNetV2"
last_conv = true)");
  CHECK(CountParameters(*with_last) == 2223872);
  CHECK(CountStateEntries(*with_last) == 312);
}

TEST_CASE("MobileNetV2 parameter and buffer names and shapes equal torchvision's") {
  auto net = MakeBackbone(R"(type = "mobilenet::MobileNetV2"
last_conv = true)");
  // Stem: Conv2dNormActivation(3, 32, stride 2) = features.0.{0 conv, 1 bn, 2 relu6}.
  CHECK(StateShape(*net, "features.0.0.weight") == std::vector<int64_t>{32, 3, 3, 3});
  CHECK(StateShape(*net, "features.0.1.weight") == std::vector<int64_t>{32});
  CHECK(StateShape(*net, "features.0.1.running_var") == std::vector<int64_t>{32});
  CHECK(StateShape(*net, "features.0.1.num_batches_tracked") == std::vector<int64_t>{});
  CHECK_FALSE(HasStateWithPrefix(*net, "features.0.0.bias"));
  // features.1 (expand ratio 1): depthwise conv.0, projection conv.1, batch norm conv.2.
  CHECK(StateShape(*net, "features.1.conv.0.0.weight") == std::vector<int64_t>{32, 1, 3, 3});
  CHECK(StateShape(*net, "features.1.conv.0.1.running_mean") == std::vector<int64_t>{32});
  CHECK(StateShape(*net, "features.1.conv.1.weight") == std::vector<int64_t>{16, 32, 1, 1});
  CHECK(StateShape(*net, "features.1.conv.2.weight") == std::vector<int64_t>{16});
  CHECK_FALSE(HasStateWithPrefix(*net, "features.1.conv.3"));
  // Expanding blocks: expansion conv.0, depthwise conv.1, projection conv.2, batch norm conv.3.
  CHECK(StateShape(*net, "features.2.conv.0.0.weight") == std::vector<int64_t>{96, 16, 1, 1});
  CHECK(StateShape(*net, "features.2.conv.0.1.bias") == std::vector<int64_t>{96});
  CHECK(StateShape(*net, "features.2.conv.1.0.weight") == std::vector<int64_t>{96, 1, 3, 3});
  CHECK(StateShape(*net, "features.2.conv.2.weight") == std::vector<int64_t>{24, 96, 1, 1});
  CHECK(StateShape(*net, "features.2.conv.3.num_batches_tracked") == std::vector<int64_t>{});
  CHECK(StateShape(*net, "features.13.conv.1.0.weight") == std::vector<int64_t>{576, 1, 3, 3});
  CHECK(StateShape(*net, "features.17.conv.0.0.weight") == std::vector<int64_t>{960, 160, 1, 1});
  CHECK(StateShape(*net, "features.17.conv.2.weight") == std::vector<int64_t>{320, 960, 1, 1});
  CHECK(StateShape(*net, "features.18.0.weight") == std::vector<int64_t>{1280, 320, 1, 1});
  CHECK(StateShape(*net, "features.18.1.running_var") == std::vector<int64_t>{1280});
  CHECK_FALSE(HasStateWithPrefix(*net, "features.19."));
  CHECK_FALSE(HasStateWithPrefix(*net, "classifier"));
  auto depthwise = net->named_modules()["features.5.conv.1.0"]->as<torch::nn::Conv2d>();
  REQUIRE(depthwise != nullptr);
  CHECK(depthwise->options.groups() == 192);
}

TEST_CASE("MobileNetV2 features on 64 px are strides 4, 8, 16, 32 with 24, 32, 96, 320 channels") {
  auto net = MakeBackbone(R"(type = "mobilenet::MobileNetV2")");
  CHECK(net->FeatureNames() ==
        std::vector<std::string>{"feat.layer1", "feat.layer2", "feat.layer3", "feat.layer4"});
  CHECK(FeatureShapes(*net, torch::randn({1, 3, 64, 64})) ==
        Shapes{{1, 24, 16, 16}, {1, 32, 8, 8}, {1, 96, 4, 4}, {1, 320, 2, 2}});
  CHECK(FeatureChannels(*net) == std::vector<int64_t>{24, 32, 96, 320});
  for (int block : {2, 4, 7, 14}) {
    INFO("block " << block);
    CHECK(ConvGeometry(*net, Depthwise(block)) == std::vector<int64_t>{2, 1, 1});
  }
  REQUIRE_THROWS_WITH(net->FeatureChannels("feat.layer5"),
                      Catch::Contains("feat.layer5") &&
                          Catch::Contains("feat.layer1, feat.layer2, feat.layer3, feat.layer4"));
}

TEST_CASE("MobileNetV2 with last_conv ends feat.layer4 with 1280 channels") {
  auto net = MakeBackbone(R"(type = "mobilenet::MobileNetV2"
last_conv = true)");
  CHECK(FeatureShapes(*net, torch::randn({1, 3, 64, 64})) ==
        Shapes{{1, 24, 16, 16}, {1, 32, 8, 8}, {1, 96, 4, 4}, {1, 1280, 2, 2}});
  CHECK(net->FeatureChannels("feat.layer4") == 1280);
}

TEST_CASE("MobileNetV2 with output_stride 16 keeps features.14 at stride 1 and dilates after it") {
  auto net = MakeBackbone(R"(type = "mobilenet::MobileNetV2"
output_stride = 16)");
  CHECK(FeatureShapes(*net, torch::randn({1, 3, 64, 64})) ==
        Shapes{{1, 24, 16, 16}, {1, 32, 8, 8}, {1, 96, 4, 4}, {1, 320, 4, 4}});
  CHECK(ConvGeometry(*net, Depthwise(7)) == std::vector<int64_t>{2, 1, 1});
  CHECK(ConvGeometry(*net, Depthwise(13)) == std::vector<int64_t>{1, 1, 1});
  // The block that stops striding keeps the previous dilation; the ones after it use twice that.
  CHECK(ConvGeometry(*net, Depthwise(14)) == std::vector<int64_t>{1, 1, 1});
  CHECK(ConvGeometry(*net, Depthwise(15)) == std::vector<int64_t>{1, 2, 2});
  CHECK(ConvGeometry(*net, Depthwise(17)) == std::vector<int64_t>{1, 2, 2});
  // 1x1 convolutions are never dilated.
  CHECK(ConvGeometry(*net, "features.17.conv.0.0") == std::vector<int64_t>{1, 1, 0});
  CHECK(CountParameters(*net) == 1811712);
}

TEST_CASE("MobileNetV2 with output_stride 8 dilates from features.7 on, by 2 then by 4") {
  auto net = MakeBackbone(R"(type = "mobilenet::MobileNetV2"
output_stride = 8
last_conv = true)");
  CHECK(FeatureShapes(*net, torch::randn({1, 3, 64, 64})) ==
        Shapes{{1, 24, 16, 16}, {1, 32, 8, 8}, {1, 96, 8, 8}, {1, 1280, 8, 8}});
  CHECK(ConvGeometry(*net, Depthwise(4)) == std::vector<int64_t>{2, 1, 1});
  CHECK(ConvGeometry(*net, Depthwise(6)) == std::vector<int64_t>{1, 1, 1});
  CHECK(ConvGeometry(*net, Depthwise(7)) == std::vector<int64_t>{1, 1, 1});
  CHECK(ConvGeometry(*net, Depthwise(8)) == std::vector<int64_t>{1, 2, 2});
  CHECK(ConvGeometry(*net, Depthwise(13)) == std::vector<int64_t>{1, 2, 2});
  CHECK(ConvGeometry(*net, Depthwise(14)) == std::vector<int64_t>{1, 2, 2});
  CHECK(ConvGeometry(*net, Depthwise(15)) == std::vector<int64_t>{1, 4, 4});
  CHECK(ConvGeometry(*net, Depthwise(17)) == std::vector<int64_t>{1, 4, 4});
  CHECK(ConvGeometry(*net, "features.18.0") == std::vector<int64_t>{1, 1, 0});
  // Dilation changes no parameter.
  CHECK(CountParameters(*net) == 2223872);
}

TEST_CASE("MobileNetV2 rounds width_mult 0.5 channels like torchvision's _make_divisible") {
  auto net = MakeBackbone(R"(type = "mobilenet::MobileNetV2"
width_mult = 0.5)");
  // 32 * 0.5 = 16 (stem), 16 * 0.5 = 8, 24 * 0.5 = 12 -> 16, 32 -> 16, 96 -> 48, 320 -> 160.
  CHECK(StateShape(*net, "features.0.0.weight") == std::vector<int64_t>{16, 3, 3, 3});
  CHECK(StateShape(*net, "features.1.conv.1.weight") == std::vector<int64_t>{8, 16, 1, 1});
  CHECK(StateShape(*net, "features.2.conv.0.0.weight") == std::vector<int64_t>{48, 8, 1, 1});
  CHECK(FeatureChannels(*net) == std::vector<int64_t>{16, 16, 48, 160});
  CHECK(FeatureShapes(*net, torch::randn({1, 3, 64, 64})) ==
        Shapes{{1, 16, 16, 16}, {1, 16, 8, 8}, {1, 48, 4, 4}, {1, 160, 2, 2}});
  // torchvision mobilenet_v2(width_mult=0.5): 1,968,680 parameters, less the classifier
  // (1,281,000) and features.18 (160 * 1280 + 2 * 1280 = 207,360).
  CHECK(CountParameters(*net) == 1968680 - 1281000 - 207360);

  // The final convolution never narrows below 1280 channels.
  auto with_last = MakeBackbone(R"(type = "mobilenet::MobileNetV2"
width_mult = 0.5
last_conv = true)");
  CHECK(StateShape(*with_last, "features.18.0.weight") == std::vector<int64_t>{1280, 160, 1, 1});
  CHECK(with_last->FeatureChannels("feat.layer4") == 1280);
}

TEST_CASE("MobileNetV2 rounding never drops a width more than 10% (width_mult 0.75 and 1.4)") {
  // 24 * 0.75 = 18 rounds down to 16, which is below 0.9 * 18, so it becomes 24.
  auto narrow = MakeBackbone(R"(type = "mobilenet::MobileNetV2"
width_mult = 0.75)");
  CHECK(FeatureChannels(*narrow) == std::vector<int64_t>{24, 24, 72, 240});
  // 32 * 1.4 = 44.8 -> 48, 24 * 1.4 = 33.6 -> 32, 96 * 1.4 = 134.4 -> 136; the final
  // convolution widens too: 1280 * 1.4 = 1792.
  auto wide = MakeBackbone(R"(type = "mobilenet::MobileNetV2"
width_mult = 1.4
last_conv = true)");
  CHECK(StateShape(*wide, "features.0.0.weight") == std::vector<int64_t>{48, 3, 3, 3});
  CHECK(FeatureChannels(*wide) == std::vector<int64_t>{32, 48, 136, 1792});
}

TEST_CASE("MobileNetV2 takes in_channels in its stem convolution") {
  auto net = MakeBackbone(R"(type = "mobilenet::MobileNetV2"
in_channels = 1)");
  CHECK(StateShape(*net, "features.0.0.weight") == std::vector<int64_t>{32, 1, 3, 3});
  CHECK(FeatureShapes(*net, torch::randn({2, 1, 32, 32})) ==
        Shapes{{2, 24, 8, 8}, {2, 32, 4, 4}, {2, 96, 2, 2}, {2, 320, 1, 1}});
}

TEST_CASE("MobileNetV2 initialises like torchvision: kaiming fan_out convs, BN weight 1 bias 0") {
  auto net = MakeBackbone(R"(type = "mobilenet::MobileNetV2")");
  const auto params = net->named_parameters();
  // kaiming_normal_(fan_out): std = sqrt(2 / fan_out); a 1x1 320 x 960 projection has fan_out 320,
  // a depthwise 3x3 conv [960, 1, 3, 3] has fan_out 960 * 9.
  const torch::Tensor projection = params["features.17.conv.2.weight"];
  CHECK(projection.std().item<double>() == Approx(std::sqrt(2.0 / 320)).epsilon(0.02));
  CHECK(projection.mean().item<double>() == Approx(0).margin(1e-3));
  CHECK(params["features.16.conv.1.0.weight"].std().item<double>() ==
        Approx(std::sqrt(2.0 / (960 * 9))).epsilon(0.05));
  CHECK(torch::all(params["features.0.1.weight"] == 1).item<bool>());
  CHECK(torch::all(params["features.9.conv.3.weight"] == 1).item<bool>());
  CHECK(torch::all(params["features.9.conv.3.bias"] == 0).item<bool>());
}

TEST_CASE("MobileNetV2 blocks add their input back only when stride and channels are kept") {
  auto net = MakeBackbone(R"(type = "mobilenet::MobileNetV2")");
  net->eval();
  torch::NoGradGuard no_grad;
  auto modules = net->named_modules();
  // With its last batch norm zeroed (eval mode, running mean 0) a block's branch outputs zeros, so
  // a residual block is the identity and any other block outputs zeros.
  for (const char* bn : {"features.2.conv.3", "features.3.conv.3"}) {
    modules[bn]->as<kd::nn::BatchNorm2d>()->weight.zero_();
  }
  auto& features = *modules["features"]->as<torch::nn::Sequential>();
  auto block = [&](size_t index, const torch::Tensor& input) {
    return (features.begin() + static_cast<std::ptrdiff_t>(index))->forward(input);
  };
  // features.3: 24 -> 24 channels at stride 1.
  const torch::Tensor x = torch::randn({1, 24, 8, 8});
  CHECK(torch::equal(block(3, x), x));
  // features.2: 16 -> 24 channels at stride 2.
  const torch::Tensor y = block(2, torch::randn({1, 16, 8, 8}));
  CHECK(y.sizes() == torch::IntArrayRef({1, 24, 4, 4}));
  CHECK(torch::all(y == 0).item<bool>());
}

TEST_CASE("MobileNetV2 rejects an output_stride other than 8, 16 or 32 and a width_mult <= 0") {
  REQUIRE_THROWS_WITH(MakeBackbone(R"(type = "mobilenet::MobileNetV2"
output_stride = 4)"),
                      Catch::Contains("output_stride") && Catch::Contains("8, 16, 32"));
  REQUIRE_THROWS_WITH(MakeBackbone(R"(type = "mobilenet::MobileNetV2"
width_mult = 0.0)"),
                      Catch::Contains("width_mult") && Catch::Contains("positive"));
}
