// mobilenet::MobileNetV2: torchvision's mobilenet_v2 `features` without the classifier, returning
// four stage outputs under the names ResNet uses, so that heads written for ResNet take it as it
// is. Submodules carry torchvision's names (features.0.0, features.1.conv.0.0, features.2.conv.1.1,
// features.18.0, ...) so that torchvision state dicts load by name.
#include <torch/torch.h>

#include <algorithm>
#include <array>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "components.h"
#include "kd/batch_norm.h"
#include "kd/error.h"
#include "kd/model.h"
#include "kd/registry.h"

namespace mobilenet {
namespace {

// torchvision's _make_divisible (from the TensorFlow reference): rounds `value` to the nearest
// multiple of `divisor`, at least `divisor`, and never more than 10% below `value`.
int64_t MakeDivisible(double value, int64_t divisor = 8) {
  int64_t rounded =
      std::max(divisor, static_cast<int64_t>(value + divisor / 2.0) / divisor * divisor);
  if (rounded < 0.9 * value) rounded += divisor;
  return rounded;
}

// torchvision's Conv2dNormActivation with ReLU6: conv (no bias) "0", batch norm "1", ReLU6 "2",
// padding (kernel - 1) / 2 * dilation. A module of its own rather than a Sequential because
// LibTorch cannot nest Sequentials.
class ConvBnRelu6Impl : public torch::nn::Module {
 public:
  ConvBnRelu6Impl(int64_t in_channels, int64_t out_channels, int64_t kernel, int64_t stride = 1,
                  int64_t dilation = 1, int64_t groups = 1)
      : conv_(register_module(
            "0", torch::nn::Conv2d(torch::nn::Conv2dOptions(in_channels, out_channels, kernel)
                                       .stride(stride)
                                       .padding((kernel - 1) / 2 * dilation)
                                       .dilation(dilation)
                                       .groups(groups)
                                       .bias(false)))),
        bn_(register_module("1", kd::nn::BatchNorm2d(out_channels))),
        relu6_(register_module("2", torch::nn::ReLU6())) {}

  torch::Tensor forward(const torch::Tensor& x) { return relu6_(bn_(conv_(x))); }

 private:
  torch::nn::Conv2d conv_;
  kd::nn::BatchNorm2d bn_;
  torch::nn::ReLU6 relu6_;
};
TORCH_MODULE(ConvBnRelu6);

// torchvision's InvertedResidual: `conv` is [1x1 expansion ConvBNReLU6 when expand_ratio != 1],
// 3x3 depthwise ConvBNReLU6 (strided or dilated), 1x1 linear projection, batch norm. The input is
// added back when the block keeps both resolution and channels.
class InvertedResidualImpl : public torch::nn::Module {
 public:
  InvertedResidualImpl(int64_t in_channels, int64_t out_channels, int64_t stride, int64_t dilation,
                       int64_t expand_ratio)
      : use_residual_(stride == 1 && in_channels == out_channels) {
    const int64_t hidden = in_channels * expand_ratio;
    torch::nn::Sequential conv;
    if (expand_ratio != 1) conv->push_back(ConvBnRelu6(in_channels, hidden, 1));
    conv->push_back(ConvBnRelu6(hidden, hidden, 3, stride, dilation, hidden));
    conv->push_back(
        torch::nn::Conv2d(torch::nn::Conv2dOptions(hidden, out_channels, 1).bias(false)));
    conv->push_back(kd::nn::BatchNorm2d(out_channels));
    conv_ = register_module("conv", conv);
  }

  torch::Tensor forward(const torch::Tensor& x) {
    return use_residual_ ? x + conv_->forward(x) : conv_->forward(x);
  }

 private:
  bool use_residual_;
  torch::nn::Sequential conv_{nullptr};
};
TORCH_MODULE(InvertedResidual);

// One row of torchvision's inverted_residual_setting: expansion t, channels c, blocks n, stride s
// of the first block.
struct Stage {
  int64_t expand_ratio;
  int64_t channels;
  int64_t blocks;
  int64_t stride;
};
constexpr std::array<Stage, 7> kStages = {{{1, 16, 1, 1},
                                           {6, 24, 2, 2},
                                           {6, 32, 3, 2},
                                           {6, 64, 4, 2},
                                           {6, 96, 3, 1},
                                           {6, 160, 3, 2},
                                           {6, 320, 1, 1}}};

// The `features` indices whose outputs are feat.layer1..3 (strides 4, 8, 16 without dilation);
// feat.layer4 is the last one (17, or 18 with last_conv).
constexpr std::array<size_t, 3> kTaps = {3, 6, 13};

struct MobileNetV2Options {
  double width_mult = 1.0;
  int64_t in_channels = 3;
  int64_t output_stride = 32;
  bool last_conv = false;
};

MobileNetV2Options ReadOptions(const kd::Options& options) {
  MobileNetV2Options o;
  o.width_mult = options.Float("width_mult");
  if (!(o.width_mult > 0)) {
    options.Fail("width_mult", absl::StrCat("width_mult must be positive, not ", o.width_mult,
                                            "; torchvision's models use 0.5, 0.75, 1.0, 1.4"));
  }
  o.in_channels = options.Int("in_channels");
  o.output_stride = options.Int("output_stride");
  if (o.output_stride != 8 && o.output_stride != 16 && o.output_stride != 32) {
    options.Fail("output_stride", absl::StrCat("output_stride ", o.output_stride,
                                               " is not supported; use one of 8, 16, 32"));
  }
  o.last_conv = options.Bool("last_conv");
  return o;
}

const std::vector<std::string>& FeatureNameList() {
  static const std::vector<std::string> names = {"feat.layer1", "feat.layer2", "feat.layer3",
                                                 "feat.layer4"};
  return names;
}

class MobileNetV2 : public kd::Backbone {
 public:
  explicit MobileNetV2(const MobileNetV2Options& o) {
    torch::nn::Sequential features;
    int64_t in_channels = MakeDivisible(32 * o.width_mult);
    features->push_back(ConvBnRelu6(o.in_channels, in_channels, 3, 2));
    std::vector<int64_t> block_channels = {in_channels};
    int64_t stride = 2;
    int64_t dilation = 1;
    for (const Stage& stage : kStages) {
      const int64_t out_channels = MakeDivisible(stage.channels * o.width_mult);
      for (int64_t i = 0; i < stage.blocks; ++i) {
        int64_t block_stride = i == 0 ? stage.stride : 1;
        int64_t block_dilation = dilation;
        if (block_stride == 2 && stride * 2 > o.output_stride) {
          // Past the output stride a strided block keeps the resolution; its depthwise
          // convolution keeps the previous dilation and the blocks after it dilate twice as much
          // (the _nostride_dilate rewrite of CIRKD's MobileNetV2Dilated, and torchvision's
          // ResNet convention).
          block_stride = 1;
          dilation *= 2;
        }
        stride *= block_stride;
        features->push_back(InvertedResidual(in_channels, out_channels, block_stride,
                                             block_dilation, stage.expand_ratio));
        block_channels.push_back(out_channels);
        in_channels = out_channels;
      }
    }
    if (o.last_conv) {
      const int64_t last_channels = MakeDivisible(1280 * std::max(1.0, o.width_mult));
      features->push_back(ConvBnRelu6(in_channels, last_channels, 1));
      block_channels.push_back(last_channels);
    }
    features_ = register_module("features", features);
    for (size_t i = 0; i < kTaps.size(); ++i) {
      taps_[i] = kTaps[i];
      channels_[i] = block_channels[kTaps[i]];
    }
    taps_[3] = block_channels.size() - 1;
    channels_[3] = block_channels.back();
    for (size_t i = 0; i < block_channels.size(); ++i) {
      tap_names_.push_back(absl::StrCat("features.", i));
    }
    block_channels_ = std::move(block_channels);
    InitLikeTorchvision();
  }

  kd::TensorDict Forward(const torch::Tensor& image) override {
    kd::TensorDict features;
    torch::Tensor x = image;
    size_t index = 0;
    size_t tap = 0;
    for (auto& layer : *features_) {
      x = layer.forward(x);
      if (!requested_taps_.empty()) requested_taps_.Record(tap_names_[index], x, features);
      if (tap < taps_.size() && index == taps_[tap]) {
        features.Set(FeatureNameList()[tap], x);
        ++tap;
      }
      ++index;
    }
    return features;
  }

  std::vector<std::string> FeatureNames() const override { return FeatureNameList(); }

  // Every block of `features`: features.0 (the stem) .. features.17 (features.18 with last_conv).
  std::vector<std::string> TapNames() const override { return tap_names_; }

  int64_t TapChannels(const std::string& name) const override {
    for (size_t i = 0; i < tap_names_.size(); ++i) {
      if (tap_names_[i] == name) return block_channels_[i];
    }
    kd::TapSet().Add({name}, tap_names_, "mobilenet::MobileNetV2");  // throws: an unknown tap
    return 0;
  }

  void SetTaps(const std::vector<std::string>& names) override {
    requested_taps_.Add(names, tap_names_, "mobilenet::MobileNetV2");
  }

  int64_t FeatureChannels(const std::string& name) const override {
    const std::vector<std::string>& names = FeatureNameList();
    for (size_t i = 0; i < names.size(); ++i) {
      if (names[i] == name) return channels_[i];
    }
    throw kd::Error(
        absl::NotFoundError(absl::StrCat("mobilenet::MobileNetV2 has no feature '", name,
                                         "'; it has ", absl::StrJoin(names, ", "))));
  }

 private:
  // As torchvision.models.MobileNetV2.__init__: kaiming_normal_(mode = fan_out) for every
  // convolution (a = 0, so the gain is ReLU's), weight 1 and bias 0 for every batch norm.
  void InitLikeTorchvision() {
    torch::NoGradGuard no_grad;
    for (const auto& module : modules(/*include_self=*/false)) {
      if (auto* conv = module->as<torch::nn::Conv2d>()) {
        torch::nn::init::kaiming_normal_(conv->weight, 0.0, torch::kFanOut, torch::kReLU);
      } else if (auto* bn = module->as<kd::nn::BatchNorm2d>()) {
        torch::nn::init::ones_(bn->weight);
        torch::nn::init::zeros_(bn->bias);
      }
    }
  }

  torch::nn::Sequential features_{nullptr};
  std::array<size_t, 4> taps_{};
  std::array<int64_t, 4> channels_{};
  std::vector<int64_t> block_channels_;  // of features.<i>
  std::vector<std::string> tap_names_;   // "features.<i>"
  kd::TapSet requested_taps_;
};

}  // namespace

void RegisterMobileNetV2(kd::Registrar& registrar) {
  registrar.Add(
      kd::Kind::kBackbone, "MobileNetV2",
      "torchvision mobilenet_v2 features without the classifier (same parameter names); features "
      "feat.layer1..4 after features.3, .6, .13 and the last block",
      kd::Schema()
          .Float("width_mult", 1.0,
                 "width multiplier; channels are rounded to multiples of 8 as torchvision's "
                 "_make_divisible does")
          .Int("in_channels", 3, "channels of the input image")
          .Min(1)
          .Int("output_stride", 32,
               "32, or 16 / 8 to dilate the blocks after features.13 / features.6 instead of "
               "striding them (DeepLabV3-MobileNetV2; for dense prediction)")
          .Bool("last_conv", false,
                "append torchvision's final 1x1 ConvBNReLU6 to 1280 channels (features.18); "
                "segmentation models use the 320-channel output of features.17"),
      [](const kd::Options& options, const kd::BuildContext&) {
        return std::make_shared<MobileNetV2>(ReadOptions(options));
      });
}

}  // namespace mobilenet
