// mlic_heads::GapLinear: the standard multi-label baseline head (global average pooling of one
// backbone feature, dropout, one linear layer registered as torchvision's `fc`).
#include <torch/torch.h>

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "components.h"
#include "kd/model.h"
#include "kd/registry.h"

namespace mlic_heads {
namespace {

struct GapLinearOptions {
  int64_t num_classes = 0;
  std::string in_feature;
  int64_t in_channels = 0;
  double dropout = 0;
};

// Resolves the input feature against the backbone the head is built on (the BuildContext's).
GapLinearOptions ReadOptions(const kd::Options& options, const kd::BuildContext& ctx) {
  GapLinearOptions o;
  o.num_classes = options.Int("num_classes");
  o.dropout = options.Float("dropout");
  const kd::Backbone* backbone = ctx.backbone();
  if (backbone == nullptr) {
    options.Fail("",
                 "GapLinear reads its input channels from a backbone: use it as the `head` of "
                 "a model with a backbone, e.g. core::BackboneHead");
  }
  const std::vector<std::string> names = backbone->FeatureNames();
  if (names.empty()) options.Fail("", "the backbone has no features for GapLinear to read");
  o.in_feature = options.String("in_feature");
  if (o.in_feature.empty()) {
    o.in_feature = names.back();
  } else if (std::find(names.begin(), names.end(), o.in_feature) == names.end()) {
    options.Fail("in_feature", absl::StrCat("the backbone has no feature '", o.in_feature,
                                            "'; it has ", absl::StrJoin(names, ", ")));
  }
  o.in_channels = backbone->FeatureChannels(o.in_feature);
  return o;
}

class GapLinear : public kd::Head {
 public:
  explicit GapLinear(const GapLinearOptions& o)
      : in_feature_(o.in_feature),
        dropout_(o.dropout),
        fc_(register_module("fc", torch::nn::Linear(o.in_channels, o.num_classes))) {}

  kd::TensorDict Forward(const kd::TensorDict& features, const kd::TensorDict&) override {
    torch::Tensor x = features.at(in_feature_).mean({2, 3});
    if (dropout_ > 0) x = torch::dropout(x, dropout_, is_training());
    return {{"logits", fc_(x)}};
  }

 private:
  std::string in_feature_;
  double dropout_;
  torch::nn::Linear fc_;
};

}  // namespace

void RegisterGapLinear(kd::Registrar& registrar) {
  registrar.Add(kd::Kind::kHead, "GapLinear",
                "global average pool of one backbone feature -> dropout -> linear `fc`; outputs "
                "logits [B,K]",
                kd::Schema()
                    .Required("num_classes", kd::OptionType::kInt, "number of labels K")
                    .Min(1)
                    .String("in_feature", "",
                            "backbone feature to pool, e.g. feat.layer4; empty: the deepest")
                    .Float("dropout", 0.0, "dropout probability before the linear layer")
                    .Min(0)
                    .Max(1),
                [](const kd::Options& options, const kd::BuildContext& ctx) {
                  return std::make_shared<GapLinear>(ReadOptions(options, ctx));
                });
}

}  // namespace mlic_heads
