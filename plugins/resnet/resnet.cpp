// resnet::ResNet: torchvision's ResNet-18/34/50/101/152, ResNeXt and Wide ResNet without the
// classifier, returning the outputs of layer1..layer4 as features. Submodules carry torchvision's
// names (conv1, bn1, layer1.0.conv1, layer1.0.downsample.0, ...) so that torchvision state dicts
// load by name. The deep stem is the one of CIRKD's segmentation ResNets (ResNetV1b with
// deep_stem), with its names (conv1, bn1, conv2, bn2, conv3, bn3).
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
#include "init.h"
#include "kd/batch_norm.h"
#include "kd/error.h"
#include "kd/model.h"
#include "kd/registry.h"

namespace resnet {
namespace {

torch::nn::Conv2d Conv(int64_t in_channels, int64_t out_channels, int64_t kernel, int64_t stride,
                       int64_t dilation = 1, int64_t groups = 1) {
  return torch::nn::Conv2d(torch::nn::Conv2dOptions(in_channels, out_channels, kernel)
                               .stride(stride)
                               .padding(dilation * (kernel / 2))
                               .dilation(dilation)
                               .groups(groups)
                               .bias(false));
}

// The cardinality and width of the bottleneck's grouped 3x3 convolution (torchvision's `groups`
// and `width_per_group`): 1 and 64 for ResNet, 32 and 4 for ResNeXt-50 (32x4d), 1 and 128 for
// Wide ResNet-50-2.
struct BlockShape {
  int64_t groups = 1;
  int64_t width_per_group = 64;
};

// torchvision's BasicBlock (ResNet-18/34): two 3x3 convolutions, the first one strided.
// torchvision refuses dilation here; we dilate both convolutions (as mmsegmentation does) so that
// ResNet-18/34 also have output-stride 8/16 variants. Parameter names are unaffected. Its shape is
// always 1 x 64: ReadOptions refuses others, as torchvision does.
class BasicBlockImpl : public torch::nn::Module {
 public:
  static constexpr int64_t kExpansion = 1;

  BasicBlockImpl(int64_t in_channels, int64_t planes, int64_t stride, int64_t dilation,
                 const BlockShape& /*shape*/, torch::nn::Sequential downsample)
      : conv1_(register_module("conv1", Conv(in_channels, planes, 3, stride, dilation))),
        bn1_(register_module("bn1", kd::nn::BatchNorm2d(planes))),
        conv2_(register_module("conv2", Conv(planes, planes, 3, 1, dilation))),
        bn2_(register_module("bn2", kd::nn::BatchNorm2d(planes))) {
    if (downsample) downsample_ = register_module("downsample", downsample);
  }

  torch::Tensor forward(const torch::Tensor& x) {
    torch::Tensor out = torch::relu(bn1_(conv1_(x)));
    out = bn2_(conv2_(out));
    return torch::relu(out + (downsample_ ? downsample_->forward(x) : x));
  }

  // The batch norm that closes the residual branch (zeroed by zero_init_residual).
  kd::nn::BatchNorm2d& last_bn() { return bn2_; }

 private:
  torch::nn::Conv2d conv1_;
  kd::nn::BatchNorm2d bn1_;
  torch::nn::Conv2d conv2_;
  kd::nn::BatchNorm2d bn2_;
  torch::nn::Sequential downsample_{nullptr};
};
TORCH_MODULE(BasicBlock);

// torchvision's Bottleneck (ResNet-50+, "ResNet v1.5"): 1x1 reduce to `width`, strided, dilated and
// grouped 3x3, 1x1 expand to planes * 4. torchvision's width is
// int(planes * width_per_group / 64) * groups, which is `planes` for plain ResNets.
class BottleneckImpl : public torch::nn::Module {
 public:
  static constexpr int64_t kExpansion = 4;

  static int64_t Width(int64_t planes, const BlockShape& shape) {
    return planes * shape.width_per_group / 64 * shape.groups;
  }

  BottleneckImpl(int64_t in_channels, int64_t planes, int64_t stride, int64_t dilation,
                 const BlockShape& shape, torch::nn::Sequential downsample)
      : conv1_(register_module("conv1", Conv(in_channels, Width(planes, shape), 1, 1))),
        bn1_(register_module("bn1", kd::nn::BatchNorm2d(Width(planes, shape)))),
        conv2_(register_module("conv2", Conv(Width(planes, shape), Width(planes, shape), 3, stride,
                                             dilation, shape.groups))),
        bn2_(register_module("bn2", kd::nn::BatchNorm2d(Width(planes, shape)))),
        conv3_(register_module("conv3", Conv(Width(planes, shape), planes * kExpansion, 1, 1))),
        bn3_(register_module("bn3", kd::nn::BatchNorm2d(planes * kExpansion))) {
    if (downsample) downsample_ = register_module("downsample", downsample);
  }

  torch::Tensor forward(const torch::Tensor& x) {
    torch::Tensor out = torch::relu(bn1_(conv1_(x)));
    out = torch::relu(bn2_(conv2_(out)));
    out = bn3_(conv3_(out));
    return torch::relu(out + (downsample_ ? downsample_->forward(x) : x));
  }

  kd::nn::BatchNorm2d& last_bn() { return bn3_; }

 private:
  torch::nn::Conv2d conv1_;
  kd::nn::BatchNorm2d bn1_;
  torch::nn::Conv2d conv2_;
  kd::nn::BatchNorm2d bn2_;
  torch::nn::Conv2d conv3_;
  kd::nn::BatchNorm2d bn3_;
  torch::nn::Sequential downsample_{nullptr};
};
TORCH_MODULE(Bottleneck);

// torchvision's resnet18 ... resnet152: block type and blocks per stage.
struct Architecture {
  int64_t depth;
  bool bottleneck;
  std::array<int64_t, 4> blocks;
};
constexpr std::array<Architecture, 5> kArchitectures = {{{18, false, {2, 2, 2, 2}},
                                                         {34, false, {3, 4, 6, 3}},
                                                         {50, true, {3, 4, 6, 3}},
                                                         {101, true, {3, 4, 23, 3}},
                                                         {152, true, {3, 8, 36, 3}}}};

// imagenet: 7x7/2 conv + 3x3/2 max-pool (torchvision); small: one 3x3/1 conv and no max-pool;
// deep: three 3x3 convs (the first one /2) to 128 channels + 3x3/2 max-pool.
enum class Stem { kImagenet, kSmall, kDeep };

struct ResNetOptions {
  Architecture architecture{};
  BlockShape shape;
  int64_t in_channels = 3;
  Stem stem = Stem::kImagenet;
  int64_t output_stride = 32;
  bool zero_init_residual = false;
};

ResNetOptions ReadOptions(const kd::Options& options) {
  ResNetOptions o;
  const int64_t depth = options.Int("depth");
  const auto* found = std::find_if(kArchitectures.begin(), kArchitectures.end(),
                                   [depth](const Architecture& a) { return a.depth == depth; });
  if (found == kArchitectures.end()) {
    options.Fail("depth", absl::StrCat("ResNet depth ", depth, " does not exist; use one of ",
                                       absl::StrJoin(kArchitectures, ", ",
                                                     [](std::string* out, const Architecture& a) {
                                                       absl::StrAppend(out, a.depth);
                                                     })));
  }
  o.architecture = *found;
  o.shape.groups = options.Int("groups");
  o.shape.width_per_group = options.Int("width_per_group");
  if (!o.architecture.bottleneck && (o.shape.groups != 1 || o.shape.width_per_group != 64)) {
    // As torchvision's BasicBlock: it has no grouped convolution to widen.
    options.Fail(o.shape.groups != 1 ? "groups" : "width_per_group",
                 absl::StrCat("ResNet-", depth,
                              " uses basic blocks, which only support groups = 1 and "
                              "width_per_group = 64; ResNeXt and Wide ResNet need depth 50, 101 "
                              "or 152"));
  }
  o.in_channels = options.Int("in_channels");
  const std::string stem = options.String("stem");
  o.stem = stem == "small" ? Stem::kSmall : stem == "deep" ? Stem::kDeep : Stem::kImagenet;
  o.output_stride = options.Int("output_stride");
  if (o.output_stride != 8 && o.output_stride != 16 && o.output_stride != 32) {
    options.Fail("output_stride", absl::StrCat("output_stride ", o.output_stride,
                                               " is not supported; use one of 8, 16, 32"));
  }
  o.zero_init_residual = options.Bool("zero_init_residual");
  return o;
}

const std::vector<std::string>& FeatureNameList() {
  static const std::vector<std::string> names = {"feat.layer1", "feat.layer2", "feat.layer3",
                                                 "feat.layer4"};
  return names;
}

class ResNet : public kd::Backbone {
 public:
  explicit ResNet(const ResNetOptions& o) : stem_(o.stem) {
    // The deep stem is ResNetV1b's deep_stem as CIRKD defines it: conv3x3/2 in->64, conv3x3
    // 64->64, conv3x3 64->128, each followed by its batch norm and a ReLU.
    conv1_ = register_module("conv1", o.stem == Stem::kImagenet ? Conv(o.in_channels, 64, 7, 2)
                                      : o.stem == Stem::kSmall  ? Conv(o.in_channels, 64, 3, 1)
                                                                : Conv(o.in_channels, 64, 3, 2));
    bn1_ = register_module("bn1", kd::nn::BatchNorm2d(64));
    if (o.stem == Stem::kDeep) {
      conv2_ = register_module("conv2", Conv(64, 64, 3, 1));
      bn2_ = register_module("bn2", kd::nn::BatchNorm2d(64));
      conv3_ = register_module("conv3", Conv(64, kDeepStemChannels, 3, 1));
      bn3_ = register_module("bn3", kd::nn::BatchNorm2d(kDeepStemChannels));
    }
    if (o.stem != Stem::kSmall) {
      maxpool_ = register_module(
          "maxpool", torch::nn::MaxPool2d(torch::nn::MaxPool2dOptions(3).stride(2).padding(1)));
    }
    const int64_t stem_channels = o.stem == Stem::kDeep ? kDeepStemChannels : 64;
    AddTap("relu", stem_channels);
    if (o.stem != Stem::kSmall) AddTap("maxpool", stem_channels);
    const std::vector<kd::nn::BatchNorm2d> residual_bns =
        o.architecture.bottleneck ? BuildLayers<Bottleneck>(o) : BuildLayers<BasicBlock>(o);

    InitLikeTorchvision(*this);
    if (o.zero_init_residual) {
      // Each residual branch starts at zero, so every block starts as the identity
      // (Goyal et al., "Accurate, Large Minibatch SGD", as torchvision's zero_init_residual).
      torch::NoGradGuard no_grad;
      for (const auto& bn : residual_bns) torch::nn::init::zeros_(bn->weight);
    }
  }

  kd::TensorDict Forward(const torch::Tensor& image) override {
    torch::Tensor x = torch::relu(bn1_(conv1_(image)));
    if (stem_ == Stem::kDeep) {
      x = torch::relu(bn2_(conv2_(x)));
      x = torch::relu(bn3_(conv3_(x)));
    }
    kd::TensorDict features;
    taps_.Record("relu", x, features);
    if (stem_ != Stem::kSmall) {
      x = maxpool_(x);
      taps_.Record("maxpool", x, features);
    }
    for (size_t i = 0; i < layers_.size(); ++i) {
      if (taps_.empty()) {
        x = layers_[i]->forward(x);
      } else {
        const std::string layer = absl::StrCat("layer", i + 1);
        size_t block = 0;
        for (auto& module : *layers_[i]) {
          x = module.forward(x);
          taps_.Record(absl::StrCat(layer, ".", block++), x, features);
        }
        taps_.Record(layer, x, features);
      }
      features.Set(FeatureNameList()[i], x);
    }
    return features;
  }

  // The stem's output ("relu", after its last ReLU), "maxpool" (without the small stem), each
  // block ("layer3.1") and each stage ("layer3", its last block's output).
  std::vector<std::string> TapNames() const override { return tap_names_; }

  int64_t TapChannels(const std::string& name) const override {
    for (size_t i = 0; i < tap_names_.size(); ++i) {
      if (tap_names_[i] == name) return tap_channels_[i];
    }
    kd::TapSet().Add({name}, tap_names_, "resnet::ResNet");  // throws: an unknown tap
    return 0;
  }

  void SetTaps(const std::vector<std::string>& names) override {
    taps_.Add(names, tap_names_, "resnet::ResNet");
  }

  std::vector<std::string> FeatureNames() const override { return FeatureNameList(); }

  int64_t FeatureChannels(const std::string& name) const override {
    const std::vector<std::string>& names = FeatureNameList();
    for (size_t i = 0; i < names.size(); ++i) {
      if (names[i] == name) return channels_[i];
    }
    throw kd::Error(absl::NotFoundError(absl::StrCat("resnet::ResNet has no feature '", name,
                                                     "'; it has ", absl::StrJoin(names, ", "))));
  }

 private:
  // torchvision's _make_layer for all four stages. A dilated stage (replace_stride_with_dilation)
  // keeps stride 1 and multiplies the running dilation by 2; its first block still uses the
  // previous dilation, as torchvision does. Returns the batch norm closing each block's residual
  // branch.
  template <typename Block>
  std::vector<kd::nn::BatchNorm2d> BuildLayers(const ResNetOptions& o) {
    const std::array<int64_t, 4>& blocks = o.architecture.blocks;
    const std::array<bool, 4> dilate = {false, false, o.output_stride == 8, o.output_stride <= 16};
    std::vector<kd::nn::BatchNorm2d> residual_bns;
    // The deep stem ends with 128 channels, so layer1's first block gets a projection shortcut
    // even with basic blocks (as in ResNetV1b).
    int64_t in_channels = o.stem == Stem::kDeep ? kDeepStemChannels : 64;
    int64_t dilation = 1;
    for (size_t stage = 0; stage < 4; ++stage) {
      const int64_t planes = int64_t{64} << stage;
      const int64_t out_channels = planes * Block::Impl::kExpansion;
      int64_t stride = stage == 0 ? 1 : 2;
      const int64_t previous_dilation = dilation;
      if (dilate[stage]) {
        dilation *= stride;
        stride = 1;
      }
      torch::nn::Sequential downsample{nullptr};
      if (stride != 1 || in_channels != out_channels) {
        downsample = torch::nn::Sequential(Conv(in_channels, out_channels, 1, stride),
                                           kd::nn::BatchNorm2d(out_channels));
      }
      torch::nn::Sequential layer;
      for (int64_t i = 0; i < blocks[stage]; ++i) {
        Block block =
            i == 0 ? Block(in_channels, planes, stride, previous_dilation, o.shape, downsample)
                   : Block(out_channels, planes, 1, dilation, o.shape, nullptr);
        residual_bns.push_back(block->last_bn());
        layer->push_back(block);
        AddTap(absl::StrCat("layer", stage + 1, ".", i), out_channels);
      }
      AddTap(absl::StrCat("layer", stage + 1), out_channels);
      in_channels = out_channels;
      channels_[stage] = out_channels;
      layers_.push_back(register_module(absl::StrCat("layer", stage + 1), layer));
    }
    return residual_bns;
  }

  void AddTap(std::string name, int64_t channels) {
    tap_names_.push_back(std::move(name));
    tap_channels_.push_back(channels);
  }

  static constexpr int64_t kDeepStemChannels = 128;

  Stem stem_;
  torch::nn::Conv2d conv1_{nullptr};
  kd::nn::BatchNorm2d bn1_{nullptr};
  torch::nn::Conv2d conv2_{nullptr};  // conv2 .. bn3: the deep stem only
  kd::nn::BatchNorm2d bn2_{nullptr};
  torch::nn::Conv2d conv3_{nullptr};
  kd::nn::BatchNorm2d bn3_{nullptr};
  torch::nn::MaxPool2d maxpool_{nullptr};
  std::vector<torch::nn::Sequential> layers_;
  std::array<int64_t, 4> channels_{};
  std::vector<std::string> tap_names_;
  std::vector<int64_t> tap_channels_;
  kd::TapSet taps_;
};

}  // namespace

void RegisterResNet(kd::Registrar& registrar) {
  registrar.Add(
      kd::Kind::kBackbone, "ResNet",
      "torchvision ResNet-18..152, ResNeXt and Wide ResNet without fc (same parameter names); "
      "features feat.layer1..4",
      kd::Schema()
          .Int("depth", 18, "18 or 34 (BasicBlock), 50, 101 or 152 (Bottleneck)")
          .Int("groups", 1,
               "groups of each bottleneck's 3x3 convolution (torchvision's groups): 32 for "
               "ResNeXt-50 (32x4d)")
          .Min(1)
          .Int("width_per_group", 64,
               "channels per group of the bottleneck's 3x3 convolution at 64 planes "
               "(torchvision's width_per_group): 4 for ResNeXt-50 (32x4d), 128 for Wide "
               "ResNet-50-2")
          .Min(1)
          .Int("in_channels", 3, "channels of the input image")
          .Min(1)
          .Enum("stem", {"imagenet", "small", "deep"}, "imagenet",
                "imagenet: 7x7/2 conv + 3x3/2 max-pool (torchvision); small: 3x3/1 conv, no "
                "max-pool, for 28-96 px images; deep: three 3x3 convs (/2, 64, 64, 128 channels; "
                "conv1..3, bn1..3) + 3x3/2 max-pool, the ResNetV1b deep stem of CIRKD's "
                "segmentation ResNets")
          .Int("output_stride", 32,
               "32, or 16 / 8 to dilate layer4 / layer3+layer4 instead of striding them "
               "(torchvision's replace_stride_with_dilation; for dense prediction)")
          .Bool("zero_init_residual", false,
                "zero the last batch-norm weight of every block so that blocks start as identity"),
      [](const kd::Options& options, const kd::BuildContext&) {
        return std::make_shared<ResNet>(ReadOptions(options));
      });
}

}  // namespace resnet
