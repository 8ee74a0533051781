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
#include "head_inputs/head_inputs.h"
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
  o.num_classes = head_inputs::ResolveNumClasses(options, ctx);
  o.dropout = options.Float("dropout");
  const head_inputs::HeadInput input = head_inputs::ResolveHeadInput(options, ctx, "GapLinear");
  o.in_feature = input.feature;
  o.in_channels = input.channels;
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
                    .Int("num_classes", 0,
                         "number of labels K; 0: the number of class names of the training data")
                    .Min(0)
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
