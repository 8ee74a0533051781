// Per-sample transforms of the Fashion-MNIST tasks.
#include <torch/torch.h>

#include "mosaic.h"

namespace fmnist_tasks {

namespace {

// Flips `image` (and `mask`, when the sample has one) left to right with probability p.
class RandomFlip : public kd::Transform {
 public:
  explicit RandomFlip(const kd::Options& options) : p_(options.Float("p")) {}

  kd::TensorDict Apply(kd::TensorDict sample, kd::Rng& rng) const override {
    if (!rng.Bernoulli(p_)) return sample;
    for (const char* key : {"image", "mask"}) {
      if (const torch::Tensor* t = sample.Find(key)) sample.Set(key, t->flip({-1}));
    }
    return sample;
  }

 private:
  double p_;
};

}  // namespace

void RegisterTransforms(kd::Registrar& registrar) {
  registrar.Add(kd::Kind::kTransform, "RandomFlip",
                "horizontal flip of image (and mask) with probability p",
                kd::Schema().Float("p", 0.5, "probability of flipping").Min(0).Max(1),
                [](const kd::Options& o, const kd::BuildContext&) {
                  return std::make_shared<RandomFlip>(o);
                });
}

}  // namespace fmnist_tasks
