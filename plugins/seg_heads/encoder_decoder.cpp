// seg_heads::EncoderDecoder: the segmentation model — a backbone, a decode head on its deepest
// feature and an optional auxiliary head (FCN on layer3) — with optional flip and multi-scale
// testing in evaluation. Its feature taps are its backbone's and its heads' own (head_taps.h).
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "components.h"
#include "head_taps.h"
#include "kd/error.h"
#include "kd/model.h"
#include "kd/registry.h"

namespace seg_heads {
namespace {

namespace F = torch::nn::functional;

struct TestOptions {
  bool flip = false;
  std::vector<double> scales;

  bool Augmented() const { return flip || scales.size() != 1 || scales[0] != 1.0; }
};

class EncoderDecoder : public kd::Model {
 public:
  EncoderDecoder(const kd::Options& options, const kd::BuildContext& ctx)
      : input_key_(options.String("input")) {
    test_.flip = options.Bool("test_flip");
    test_.scales = options.FloatList("test_scales");
    if (test_.scales.empty()) options.Fail("test_scales", "give at least one scale, e.g. [1.0]");
    for (double s : test_.scales) {
      if (s <= 0) options.Fail("test_scales", "scales must be > 0");
    }
    backbone_ = register_module(
        "backbone", ctx.Build<kd::Backbone>(kd::Kind::kBackbone, options.Sub("backbone")));
    const kd::BuildContext with_backbone = ctx.WithBackbone(backbone_.get());
    decode_head_ = register_module(
        "decode_head", with_backbone.Build<kd::Head>(kd::Kind::kHead, options.Sub("decode_head")));
    if (options.Has("aux_head")) {
      aux_head_ = register_module(
          "aux_head", with_backbone.Build<kd::Head>(kd::Kind::kHead, options.Sub("aux_head")));
    }
    decode_taps_ = Tapped(decode_head_.get(), "decode_head.");
    if (aux_head_) aux_taps_ = Tapped(aux_head_.get(), "aux_head.");
  }

  kd::TensorDict Forward(const kd::TensorDict& batch) override {
    const torch::Tensor& image = batch.at(input_key_);
    if (!is_training() && test_.Augmented()) return Augmented(image, batch);
    kd::TensorDict features = backbone_->Forward(image);
    kd::TensorDict outputs = decode_head_->Forward(features, batch);
    if (aux_head_) outputs.Update(aux_head_->Forward(features, batch));
    for (const auto& [key, value] : features) {
      if (!outputs.contains(key)) outputs.Set(key, value);
    }
    return outputs;
  }

  // The backbone's feature taps, then the decode head's ("decode_head.3") and the auxiliary
  // head's ("aux_head.2").
  std::vector<std::string> TapNames() const override {
    std::vector<std::string> names = backbone_->TapNames();
    for (const TappedHead* head : {decode_taps_, aux_taps_}) {
      if (head == nullptr) continue;
      const std::vector<std::string> own = head->TapNames();
      names.insert(names.end(), own.begin(), own.end());
    }
    return names;
  }

  int64_t TapChannels(const std::string& name) const override {
    if (const TappedHead* head = HeadOf(name)) return head->TapChannels(name);
    CheckKnown({name});
    return backbone_->TapChannels(name);
  }

  void SetTaps(const std::vector<std::string>& names) override {
    CheckKnown(names);
    std::vector<std::string> backbone;
    std::vector<std::string> decode;
    std::vector<std::string> aux;
    for (const std::string& name : names) {
      const TappedHead* head = HeadOf(name);
      (head == nullptr ? backbone : head == decode_taps_ ? decode : aux).push_back(name);
    }
    if (!backbone.empty()) backbone_->SetTaps(backbone);
    if (!decode.empty()) decode_taps_->SetTaps(decode);
    if (!aux.empty()) aux_taps_->SetTaps(aux);
  }

 private:
  static TappedHead* Tapped(kd::Head* head, const std::string& prefix) {
    auto* tapped = dynamic_cast<TappedHead*>(head);
    if (tapped != nullptr) tapped->SetTapPrefix(prefix);
    return tapped;
  }

  // The head whose tap `name` is; null for the backbone's taps and unknown names.
  TappedHead* HeadOf(const std::string& name) const {
    for (TappedHead* head : {decode_taps_, aux_taps_}) {
      if (head != nullptr && head->HasTap(name)) return head;
    }
    return nullptr;
  }

  // Throws kd::Error naming the first of `names` that is no tap of the model, with every tap.
  void CheckKnown(const std::vector<std::string>& names) const {
    const std::vector<std::string> all = TapNames();
    for (const std::string& name : names) {
      if (std::find(all.begin(), all.end(), name) != all.end()) continue;
      throw kd::Error(absl::NotFoundError(
          absl::StrCat("seg_heads::EncoderDecoder has no feature tap '", name, "'; its taps are ",
                       absl::StrJoin(all, ", "),
                       " (its backbone's, then its heads' own, named decode_head.<module> and "
                       "aux_head.<module>)")));
    }
  }

  // The mean of the softmax over every scale and flip, each resized to the image (align_corners),
  // returned as its log under "logits" ([B, K, H, W]; argmax and mIoU as of the mean).
  kd::TensorDict Augmented(const torch::Tensor& image, const kd::TensorDict& batch) {
    const int64_t height = image.size(2);
    const int64_t width = image.size(3);
    torch::Tensor sum;
    int64_t passes = 0;
    for (double scale : test_.scales) {
      torch::Tensor scaled = image;
      if (scale != 1.0) {
        const auto h = static_cast<int64_t>(std::lround(static_cast<double>(height) * scale));
        const auto w = static_cast<int64_t>(std::lround(static_cast<double>(width) * scale));
        scaled = F::interpolate(image, F::InterpolateFuncOptions()
                                           .size(std::vector<int64_t>{h, w})
                                           .mode(torch::kBilinear)
                                           .align_corners(false));
      }
      for (int flip = 0; flip < (test_.flip ? 2 : 1); ++flip) {
        torch::Tensor input = flip ? scaled.flip({3}) : scaled;
        torch::Tensor logits =
            decode_head_->Forward(backbone_->Forward(input), batch).begin()->second;
        logits = F::interpolate(logits, F::InterpolateFuncOptions()
                                            .size(std::vector<int64_t>{height, width})
                                            .mode(torch::kBilinear)
                                            .align_corners(true));
        if (flip) logits = logits.flip({3});
        torch::Tensor probs = torch::softmax(logits.to(torch::kFloat), 1);
        sum = sum.defined() ? sum + probs : probs;
        ++passes;
      }
    }
    return {{"logits", (sum / static_cast<double>(passes)).log()}};
  }

  std::string input_key_;
  TestOptions test_;
  std::shared_ptr<kd::Backbone> backbone_;
  std::shared_ptr<kd::Head> decode_head_;
  std::shared_ptr<kd::Head> aux_head_;
  TappedHead* decode_taps_ = nullptr;  // the heads, when they offer taps of their own
  TappedHead* aux_taps_ = nullptr;
};

}  // namespace

void RegisterEncoderDecoder(kd::Registrar& registrar) {
  registrar.Add(
      kd::Kind::kModel, "EncoderDecoder",
      "segmentation model: backbone -> decode_head (logits) and optional aux_head (aux_logits) "
      "at feature resolution; backbone features kept in the outputs; feature taps of the "
      "backbone and of the heads' blocks (decode_head.3, aux_head.2, ...)",
      kd::Schema()
          .Nested("backbone", kd::Kind::kBackbone, "the feature extractor (a dilated ResNet, ...)")
          .Nested("decode_head", kd::Kind::kHead, "the main head, e.g. seg_heads::DeepLabV3")
          .Nested("aux_head", kd::Kind::kHead,
                  "auxiliary head for training and distillation, e.g. seg_heads::FCNHead on "
                  "feat.layer3; absent: none",
                  false)
          .String("input", "image", "batch key the backbone reads")
          .Bool("test_flip", false,
                "evaluation: also predict the mirrored image and average the probabilities")
          .FloatList("test_scales", {1.0},
                     "evaluation: image scales whose probabilities are averaged (e.g. [0.5, "
                     "0.75, 1.0, 1.25, 1.5, 1.75]); with flip or scales other than [1.0] the "
                     "evaluation output is only `logits`, at image size"),
      [](const kd::Options& o, const kd::BuildContext& ctx) {
        return std::make_shared<EncoderDecoder>(o, ctx);
      });
}

}  // namespace seg_heads
