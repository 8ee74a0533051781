// sgg_heads::SGGLoss: the scene-graph task loss of the standard benchmark — (P + 1)-way
// cross-entropy over the scored pairs' predicates and, in SGCls, cross-entropy over the object
// labels.
#include <torch/torch.h>

#include <memory>

#include "components.h"
#include "kd/loss.h"
#include "kd/registry.h"
#include "sgg_losses/sgg_losses.h"

namespace sgg_heads {
namespace {

class SggLoss : public kd::Loss {
 public:
  explicit SggLoss(const kd::Options& options)
      : relation_weight_(options.Float("relation_weight")),
        object_weight_(options.Float("object_weight")) {}

  kd::TensorDict Forward(const kd::TensorDict& outputs, const kd::TensorDict& batch) override {
    kd::TensorDict terms{{"loss.rel", relation_weight_ * sgg_losses::RelationLoss(outputs)}};
    if (outputs.contains("obj_logits") && object_weight_ > 0) {
      terms.Set("loss.obj", object_weight_ * sgg_losses::ObjectLoss(outputs, batch));
    }
    return terms;
  }

 private:
  double relation_weight_;
  double object_weight_;
};

}  // namespace

void RegisterSggLoss(kd::Registrar& registrar) {
  registrar.Add(
      kd::Kind::kLoss, "SGGLoss",
      "predicate cross-entropy over the scored pairs (loss.rel) and, when the model "
      "predicts object labels (SGCls), object cross-entropy (loss.obj)",
      kd::Schema()
          .Float("relation_weight", 1.0, "weight of loss.rel")
          .Min(0.0)
          .Float("object_weight", 1.0, "weight of loss.obj (SGCls)")
          .Min(0.0),
      [](const kd::Options& o, const kd::BuildContext&) { return std::make_shared<SggLoss>(o); });
}

}  // namespace sgg_heads
