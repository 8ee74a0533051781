// classification::CrossEntropy: softmax cross-entropy between the model's `logits` [B, C] and
// the batch's class indices `labels` [B], with torch's label smoothing.
#include <torch/torch.h>

#include <memory>

#include "components.h"
#include "kd/loss.h"
#include "kd/registry.h"

namespace classification {
namespace {

class CrossEntropy : public kd::Loss {
 public:
  CrossEntropy(double weight, double smoothing) : weight_(weight), smoothing_(smoothing) {}

  kd::TensorDict Forward(const kd::TensorDict& outputs, const kd::TensorDict& batch) override {
    const torch::Tensor& logits = outputs.at("logits");
    const torch::Tensor& labels = batch.at("labels");
    CheckInputs("classification::CrossEntropy", logits, labels);
    // In at least float32, as AMP logits may be half precision.
    const auto dtype = torch::promote_types(logits.scalar_type(), torch::kFloat);
    // With smoothing e the target is (1 - e) one-hot + e / C uniform (Szegedy et al. 2016,
    // eq. in sec. 7), torch's label_smoothing: (1 - e) * CE + e * mean_c(-log p_c).
    namespace F = torch::nn::functional;
    const torch::Tensor loss =
        F::cross_entropy(logits.to(dtype), labels.to(torch::kLong),
                         F::CrossEntropyFuncOptions().label_smoothing(smoothing_));
    return {{"loss.ce", weight_ * loss}};
  }

 private:
  double weight_;
  double smoothing_;
};

}  // namespace

void RegisterCrossEntropy(kd::Registrar& registrar) {
  registrar.Add(
      kd::Kind::kLoss, "CrossEntropy",
      "softmax cross-entropy of `logits` [B,C] vs class indices `labels` [B], mean over the "
      "batch; term loss.ce",
      kd::Schema()
          .Float("weight", 1.0, "factor on the loss term")
          .Min(0)
          .Float("label_smoothing", 0.0,
                 "e: the target is (1 - e) on the label plus e / C on every class")
          .Min(0)
          .Max(1),
      [](const kd::Options& options, const kd::BuildContext&) {
        return std::make_shared<CrossEntropy>(options.Float("weight"),
                                              options.Float("label_smoothing"));
      });
}

}  // namespace classification
