// mlic_heads::BCE: binary cross-entropy with logits between the model's `logits` and the batch's
// multi-hot `labels`, the usual multi-label baseline loss.
#include <torch/torch.h>

#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "components.h"
#include "input_checks.h"
#include "kd/error.h"
#include "kd/loss.h"
#include "kd/registry.h"

namespace mlic_heads {
namespace {

struct BceOptions {
  double weight = 1.0;
  bool sum = false;
};

BceOptions ReadOptions(const kd::Options& options) {
  BceOptions o;
  o.weight = options.Float("weight");
  o.sum = options.String("reduction") == "sum";
  return o;
}

class Bce : public kd::Loss {
 public:
  explicit Bce(const BceOptions& o) : o_(o) {}

  kd::TensorDict Forward(const kd::TensorDict& outputs, const kd::TensorDict& batch) override {
    const torch::Tensor& logits = outputs.at("logits");
    const torch::Tensor& labels = batch.at("labels");
    CheckLossInputs("mlic_heads::BCE", logits, labels);
    // In at least float32: summing B*K terms in bf16/fp16 (AMP logits) loses precision.
    const auto dtype = torch::promote_types(logits.scalar_type(), torch::kFloat);
    // Labels of -1 (ignored, e.g. VOC "difficult") contribute nothing; "mean" averages over the
    // labelled entries.
    const torch::Tensor valid = (labels >= 0).to(dtype);
    const torch::Tensor elements = torch::binary_cross_entropy_with_logits(
                                       logits.to(dtype), labels.to(dtype).clamp_min(0),
                                       /*weight=*/{}, /*pos_weight=*/{}, at::Reduction::None) *
                                   valid;
    const torch::Tensor loss = o_.sum ? elements.sum() : elements.sum() / valid.sum().clamp_min(1);
    return {{"loss.bce", o_.weight * loss}};
  }

 private:
  BceOptions o_;
};

}  // namespace

void RegisterBce(kd::Registrar& registrar) {
  registrar.Add(
      kd::Kind::kLoss, "BCE",
      "binary cross-entropy with logits on `logits` vs multi-hot `labels`; term loss.bce",
      kd::Schema()
          .Float("weight", 1.0, "factor on the loss term")
          .Min(0)
          .Enum("reduction", {"mean", "sum"}, "mean", "mean over all B*K elements, or their sum"),
      [](const kd::Options& options, const kd::BuildContext&) {
        return std::make_shared<Bce>(ReadOptions(options));
      });
}

}  // namespace mlic_heads
