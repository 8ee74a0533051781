// example_metrics::SubsetAccuracy: the share of images whose predicted label set (sigmoid of the
// logits >= threshold) equals the true label set exactly, in percent. A stricter multi-label
// metric than mAP, and a complete example of a plugin component.
#include <torch/torch.h>

#include "kd/plugin.h"

namespace {

class SubsetAccuracy : public kd::Metric {
 public:
  explicit SubsetAccuracy(const kd::Options& options) : threshold_(options.Float("threshold")) {}

  void Reset() override { exact_ = total_ = 0; }

  void Update(const kd::TensorDict& outputs, const kd::TensorDict& batch) override {
    const torch::Tensor predicted =
        torch::sigmoid(outputs.at("logits").detach().cpu()) >= threshold_;
    const torch::Tensor truth = batch.at("labels").cpu() > 0.5;
    exact_ += (predicted == truth).all(1).sum().item<int64_t>();
    total_ += predicted.size(0);
  }

  std::vector<kd::MetricValue> Compute() const override {
    return {{"subset_acc", total_ > 0 ? 100.0 * static_cast<double>(exact_) / total_ : 0.0}};
  }

 private:
  double threshold_;
  int64_t exact_ = 0, total_ = 0;
};

void Register(kd::Registrar& registrar) {
  registrar.Add(kd::Kind::kMetric, "SubsetAccuracy",
                "exact-match ratio of multi-label predictions (logits key `logits`, labels key "
                "`labels`), in percent",
                kd::Schema()
                    .Float("threshold", 0.5, "a label is predicted when sigmoid >= this")
                    .Min(0)
                    .Max(1),
                [](const kd::Options& options, const kd::BuildContext&) {
                  return std::make_shared<SubsetAccuracy>(options);
                });
}

}  // namespace

KD_PLUGIN("1.0.0", "example out-of-tree plugin: a subset-accuracy metric", Register);
