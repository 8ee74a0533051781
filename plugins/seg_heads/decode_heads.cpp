// Segmentation heads on one backbone feature: DeepLabV3 (ASPP), PSPNet (pyramid pooling) and the
// FCN head used as the auxiliary head on layer3. Each returns [B, K, h, w] logits at the feature's
// resolution under `out_key`; the loss and the metric resize them to the labels. Each offers taps
// of its own blocks (head_taps.h): the feature its classifier reads and, for DeepLabV3 and PSPNet,
// the output of the ASPP or the pyramid.
#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "components.h"
#include "head_inputs/head_inputs.h"
#include "head_taps.h"
#include "kd/batch_norm.h"
#include "kd/model.h"
#include "kd/registry.h"

namespace seg_heads {
namespace {

namespace F = torch::nn::functional;

torch::nn::Conv2d Conv(int64_t in, int64_t out, int64_t kernel, int64_t dilation = 1,
                       bool bias = false) {
  return torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, kernel)
                               .padding(dilation * (kernel / 2))
                               .dilation(dilation)
                               .bias(bias));
}

// conv (no bias) -> batch norm -> ReLU, as torchvision's ASPPConv and the heads' first layers.
torch::nn::Sequential ConvBnRelu(int64_t in, int64_t out, int64_t kernel, int64_t dilation = 1) {
  return torch::nn::Sequential(Conv(in, out, kernel, dilation), kd::nn::BatchNorm2d(out),
                               torch::nn::ReLU());
}

torch::Tensor ResizeTo(const torch::Tensor& x, const torch::Tensor& like) {
  return F::interpolate(x, F::InterpolateFuncOptions()
                               .size(std::vector<int64_t>{like.size(2), like.size(3)})
                               .mode(torch::kBilinear)
                               .align_corners(true));
}

// What every head reads from its options and its backbone.
struct HeadOptions {
  std::string in_feature;
  int64_t in_channels = 0;
  int64_t num_classes = 0;
  int64_t channels = 0;
  double dropout = 0;
  std::string out_key;
  std::vector<int64_t> sizes;  // ASPP dilations or PSP bins
};

HeadOptions ReadHeadOptions(const kd::Options& options, const kd::BuildContext& ctx,
                            const char* head, const char* sizes_key) {
  HeadOptions o;
  const head_inputs::HeadInput input = head_inputs::ResolveHeadInput(options, ctx, head);
  o.in_feature = input.feature;
  o.in_channels = input.channels;
  o.num_classes = head_inputs::ResolveNumClasses(options, ctx);
  o.channels = options.Int("channels");
  o.dropout = options.Float("dropout");
  o.out_key = options.String("out_key");
  if (sizes_key != nullptr) {
    o.sizes = options.IntList(sizes_key);
    if (o.sizes.empty()) options.Fail(sizes_key, "give at least one value");
  }
  return o;
}

// torchvision's ASPP: a 1x1 branch, one dilated 3x3 branch per rate and an image-pooling branch,
// concatenated and projected to `channels` (with dropout 0.5 in training).
class AsppImpl : public torch::nn::Module {
 public:
  AsppImpl(int64_t in, int64_t channels, const std::vector<int64_t>& rates)
      : convs_(register_module("convs", torch::nn::ModuleList())) {
    convs_->push_back(ConvBnRelu(in, channels, 1));
    for (int64_t rate : rates) convs_->push_back(ConvBnRelu(in, channels, 3, rate));
    convs_->push_back(torch::nn::Sequential(torch::nn::AdaptiveAvgPool2d(1), Conv(in, channels, 1),
                                            kd::nn::BatchNorm2d(channels), torch::nn::ReLU()));
    project_ = register_module(
        "project", ConvBnRelu(channels * static_cast<int64_t>(convs_->size()), channels, 1));
  }

  torch::Tensor forward(const torch::Tensor& x) {
    std::vector<torch::Tensor> branches;
    for (size_t i = 0; i < convs_->size(); ++i) {
      torch::Tensor y = convs_[i]->as<torch::nn::Sequential>()->forward(x);
      if (i + 1 == convs_->size()) y = ResizeTo(y, x);
      branches.push_back(y);
    }
    return torch::dropout(project_->forward(torch::cat(branches, 1)), 0.5, is_training());
  }

 private:
  torch::nn::ModuleList convs_;
  torch::nn::Sequential project_{nullptr};
};
TORCH_MODULE(Aspp);

// torchvision's DeepLabHead (submodules 0 = ASPP, 1 = 3x3 conv, 2 = BN, 3 = ReLU, 4 =
// classifier), with the dropout CIRKD's head puts before the classifier. Taps: "0", the ASPP's
// output (after its projection's dropout in training), and "3", the ReLU's output, which the
// classifier reads (before the dropout).
class DeepLabV3 : public TappedHead {
 public:
  explicit DeepLabV3(const HeadOptions& o)
      : TappedHead("seg_heads::DeepLabV3"),
        o_(o),
        aspp_(register_module("0", Aspp(o.in_channels, o.channels, o.sizes))),
        conv_(register_module("1", Conv(o.channels, o.channels, 3))),
        bn_(register_module("2", kd::nn::BatchNorm2d(o.channels))),
        classifier_(register_module("4", Conv(o.channels, o.num_classes, 1, 1, true))) {
    AddTap("0", o.channels);
    AddTap("3", o.channels);
  }

  kd::TensorDict Forward(const kd::TensorDict& features, const kd::TensorDict&) override {
    const torch::Tensor aspp = aspp_(features.at(o_.in_feature));
    const torch::Tensor x = torch::relu(bn_(conv_(aspp)));
    kd::TensorDict outputs{{o_.out_key, classifier_(torch::dropout(x, o_.dropout, is_training()))}};
    Record("0", aspp, outputs);
    Record("3", x, outputs);
    return outputs;
  }

 private:
  HeadOptions o_;
  Aspp aspp_;
  torch::nn::Conv2d conv_;
  kd::nn::BatchNorm2d bn_;
  torch::nn::Conv2d classifier_;
};

// PSPNet's pyramid pooling: the feature average-pooled to each bin size, reduced to in/4
// channels, resized back and concatenated with the feature; then 3x3 conv to `channels`,
// dropout and the classifier. Taps: "ppm", the pyramid's branches concatenated with the feature
// (the bottleneck's input), and "bottleneck", the feature the classifier reads (before the
// dropout).
class PspNet : public TappedHead {
 public:
  explicit PspNet(const HeadOptions& o)
      : TappedHead("seg_heads::PSPNet"),
        o_(o),
        stages_(register_module("ppm", torch::nn::ModuleList())) {
    const int64_t reduced = o.in_channels / static_cast<int64_t>(o.sizes.size());
    for (int64_t bin : o.sizes) {
      stages_->push_back(torch::nn::Sequential(torch::nn::AdaptiveAvgPool2d(bin),
                                               Conv(o.in_channels, reduced, 1),
                                               kd::nn::BatchNorm2d(reduced), torch::nn::ReLU()));
    }
    bottleneck_ = register_module(
        "bottleneck",
        ConvBnRelu(o.in_channels + reduced * static_cast<int64_t>(o.sizes.size()), o.channels, 3));
    classifier_ = register_module("classifier", Conv(o.channels, o.num_classes, 1, 1, true));
    AddTap("ppm", o.in_channels + reduced * static_cast<int64_t>(o.sizes.size()));
    AddTap("bottleneck", o.channels);
  }

  kd::TensorDict Forward(const kd::TensorDict& features, const kd::TensorDict&) override {
    const torch::Tensor& x = features.at(o_.in_feature);
    std::vector<torch::Tensor> parts = {x};
    for (const auto& stage : *stages_) {
      parts.push_back(ResizeTo(stage->as<torch::nn::Sequential>()->forward(x), x));
    }
    const torch::Tensor pyramid = torch::cat(parts, 1);
    const torch::Tensor y = bottleneck_->forward(pyramid);
    kd::TensorDict outputs{{o_.out_key, classifier_(torch::dropout(y, o_.dropout, is_training()))}};
    Record("ppm", pyramid, outputs);
    Record("bottleneck", y, outputs);
    return outputs;
  }

 private:
  HeadOptions o_;
  torch::nn::ModuleList stages_;
  torch::nn::Sequential bottleneck_{nullptr};
  torch::nn::Conv2d classifier_{nullptr};
};

// torchvision's FCNHead (0 = 3x3 conv to in/4, 1 = BN, 2 = ReLU, 4 = classifier; dropout
// between). Tap: "2", the ReLU's output, which the classifier reads (before the dropout).
class FcnHead : public TappedHead {
 public:
  explicit FcnHead(const HeadOptions& o)
      : TappedHead("seg_heads::FCNHead"),
        o_(o),
        conv_(register_module("0", Conv(o.in_channels, Inner(o), 3))),
        bn_(register_module("1", kd::nn::BatchNorm2d(Inner(o)))),
        classifier_(register_module("4", Conv(Inner(o), o.num_classes, 1, 1, true))) {
    AddTap("2", Inner(o));
  }

  kd::TensorDict Forward(const kd::TensorDict& features, const kd::TensorDict&) override {
    const torch::Tensor x = torch::relu(bn_(conv_(features.at(o_.in_feature))));
    kd::TensorDict outputs{{o_.out_key, classifier_(torch::dropout(x, o_.dropout, is_training()))}};
    Record("2", x, outputs);
    return outputs;
  }

 private:
  static int64_t Inner(const HeadOptions& o) {
    return o.channels > 0 ? o.channels : std::max<int64_t>(1, o.in_channels / 4);
  }

  HeadOptions o_;
  torch::nn::Conv2d conv_;
  kd::nn::BatchNorm2d bn_;
  torch::nn::Conv2d classifier_;
};

kd::Schema HeadSchema(const char* default_out, const char* feature_doc) {
  return kd::Schema()
      .String("in_feature", "", feature_doc)
      .Int("num_classes", 0, "classes K; 0: the number of class names of the training data")
      .Min(0)
      .Float("dropout", 0.1, "dropout before the classifier (training only)")
      .Min(0)
      .Max(1)
      .String("out_key", default_out, "output key of the [B, K, h, w] logits");
}

}  // namespace

void RegisterDecodeHeads(kd::Registrar& registrar) {
  registrar.Add(kd::Kind::kHead, "DeepLabV3",
                "DeepLabV3 head: ASPP (1x1, dilated 3x3 per rate, image pooling) -> 3x3 conv -> "
                "classifier (torchvision DeepLabHead names); taps 0 (the ASPP) and 3 (the "
                "classifier's input), e.g. decode_head.3 in an EncoderDecoder",
                HeadSchema("logits", "backbone feature to read; empty: the deepest")
                    .Int("channels", 256, "channels of every ASPP branch and of the 3x3 conv")
                    .Min(1)
                    .IntList("dilations", {12, 24, 36},
                             "ASPP rates: 12, 24, 36 at output stride 8; 6, 12, 18 at 16")
                    .Min(1),
                [](const kd::Options& o, const kd::BuildContext& ctx) {
                  return std::make_shared<DeepLabV3>(
                      ReadHeadOptions(o, ctx, "seg_heads::DeepLabV3", "dilations"));
                });
  registrar.Add(
      kd::Kind::kHead, "PSPNet",
      "PSPNet head: pyramid pooling over the bins, concatenated with the feature -> "
      "3x3 conv -> classifier; taps ppm (the concatenation) and bottleneck (the classifier's "
      "input), e.g. decode_head.bottleneck in an EncoderDecoder",
      HeadSchema("logits", "backbone feature to read; empty: the deepest")
          .Int("channels", 512, "channels of the 3x3 conv after the pyramid")
          .Min(1)
          .IntList("bins", {1, 2, 3, 6}, "output sizes of the pyramid's pooling")
          .Min(1),
      [](const kd::Options& o, const kd::BuildContext& ctx) {
        return std::make_shared<PspNet>(ReadHeadOptions(o, ctx, "seg_heads::PSPNet", "bins"));
      });
  registrar.Add(
      kd::Kind::kHead, "FCNHead",
      "FCN head (the auxiliary head on layer3): 3x3 conv -> BN -> ReLU -> dropout -> classifier "
      "(torchvision FCNHead names); tap 2 (the classifier's input), e.g. aux_head.2",
      HeadSchema("aux_logits", "backbone feature to read, e.g. feat.layer3; empty: the deepest")
          .Int("channels", 0, "channels of the 3x3 conv; 0: a quarter of the input's")
          .Min(0),
      [](const kd::Options& o, const kd::BuildContext& ctx) {
        return std::make_shared<FcnHead>(ReadHeadOptions(o, ctx, "seg_heads::FCNHead", nullptr));
      });
}

}  // namespace seg_heads
