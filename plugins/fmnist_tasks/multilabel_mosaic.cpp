// fmnist_tasks::MultiLabelMosaic: multi-label classification of Fashion-MNIST mosaics. The labels
// are the multi-hot presence vector of the classes on the canvas.
#include <torch/torch.h>

#include "absl/strings/str_cat.h"
#include "kd/error.h"
#include "kd/transform_list.h"
#include "mosaic.h"

namespace fmnist_tasks {

namespace {

class MultiLabelMosaic : public kd::Dataset {
 public:
  MultiLabelMosaic(const kd::Options& options, const kd::BuildContext& ctx)
      : composer_(options), transforms_(options, ctx) {}

  int64_t Size() const override { return composer_.options().num_samples; }

  kd::TensorDict Get(int64_t index, kd::Rng& rng) const override {
    if (index < 0 || index >= Size()) {
      throw kd::Error(absl::OutOfRangeError(
          absl::StrCat("MultiLabelMosaic: sample ", index, " is outside 0..", Size() - 1)));
    }
    const Composition composition = composer_.Compose(index);
    torch::Tensor labels = torch::zeros({kNumClasses}, torch::kFloat);
    float* hot = labels.data_ptr<float>();
    for (const PlacedItem& item : composition.items) hot[item.label] = 1.0f;
    kd::TensorDict sample{{"image", composer_.Render(composition)}, {"labels", labels}};
    return transforms_.Apply(std::move(sample), rng);
  }

  kd::DatasetInfo Info() const override { return {"multilabel", ClassNames()}; }

 private:
  MosaicComposer composer_;
  kd::TransformList transforms_;
};

}  // namespace

void RegisterMultiLabelMosaic(kd::Registrar& registrar) {
  registrar.Add(kd::Kind::kDataset, "MultiLabelMosaic",
                "multi-label task: grid mosaics of Fashion-MNIST items with scene-driven "
                "co-occurrence; keys image [1,S,S], labels [10]",
                MosaicSchema(), [](const kd::Options& o, const kd::BuildContext& ctx) {
                  return std::make_shared<MultiLabelMosaic>(o, ctx);
                });
}

}  // namespace fmnist_tasks
