// classification::Accuracy: the share of samples whose label is among the k highest logits, in
// percent, for each k asked for (top-1 first: it is the primary value).
#include <torch/torch.h>

#include <algorithm>
#include <limits>
#include <memory>
#include <vector>

#include "components.h"
#include "kd/metric.h"
#include "kd/options.h"
#include "kd/registry.h"

namespace classification {
namespace {

class Accuracy : public kd::Metric {
 public:
  explicit Accuracy(std::vector<int64_t> ks) : ks_(std::move(ks)), hits_(ks_.size(), 0) {}

  void Reset() override {
    std::fill(hits_.begin(), hits_.end(), 0);
    count_ = 0;
    classes_ = -1;
  }

  void Update(const kd::TensorDict& outputs, const kd::TensorDict& batch) override {
    const torch::Tensor& logits = outputs.at("logits");
    const torch::Tensor& labels = batch.at("labels");
    CheckInputs("classification::Accuracy", logits, labels);
    if (classes_ >= 0 && classes_ != logits.size(1)) {
      throw kd::Error(absl::InvalidArgumentError(absl::StrCat(
          "classification::Accuracy: 'logits' has ", logits.size(1), " classes in this batch but ",
          classes_, " in earlier batches of the same evaluation")));
    }
    classes_ = logits.size(1);
    const int64_t k_max = *std::max_element(ks_.begin(), ks_.end());
    if (k_max > classes_) {
      throw kd::Error(absl::InvalidArgumentError(
          absl::StrCat("classification::Accuracy: top-", k_max, " of ", classes_,
                       " classes; every entry of `topk` must be at most the class count")));
    }
    // The rank of the label among the logits: ties count against the sample, as a stable
    // descending sort that puts the label after the classes it ties with (torch.topk may break
    // ties either way).
    const torch::Tensor scores = logits.detach().to(torch::kCPU, torch::kFloat);
    const torch::Tensor target = labels.detach().to(torch::kCPU, torch::kLong).unsqueeze(1);
    const torch::Tensor label_score = scores.gather(1, target);
    const torch::Tensor rank = (scores >= label_score).sum(1);  // 1 = the label is the highest
    for (size_t i = 0; i < ks_.size(); ++i) hits_[i] += (rank <= ks_[i]).sum().item<int64_t>();
    count_ += labels.size(0);
  }

  std::vector<kd::MetricValue> Compute() const override {
    std::vector<kd::MetricValue> values;
    for (size_t i = 0; i < ks_.size(); ++i) {
      values.push_back({absl::StrCat("top", ks_[i]),
                        count_ == 0
                            ? std::numeric_limits<double>::quiet_NaN()
                            : 100.0 * static_cast<double>(hits_[i]) / static_cast<double>(count_)});
    }
    return values;
  }

 private:
  std::vector<int64_t> ks_;
  std::vector<int64_t> hits_;
  int64_t count_ = 0;
  int64_t classes_ = -1;
};

}  // namespace

void RegisterAccuracy(kd::Registrar& registrar) {
  registrar.Add(
      kd::Kind::kMetric, "Accuracy",
      "top-k accuracy of `logits` [B,C] vs class indices `labels` [B], x100, one value per k "
      "(top1, top5, ...; the first is primary); a label tied with another class counts as "
      "ranked below it",
      kd::Schema().IntList("topk", {1}, "the k of each value, e.g. [1, 5]"),
      [](const kd::Options& options, const kd::BuildContext&) {
        std::vector<int64_t> ks = options.IntList("topk");
        if (ks.empty()) options.Fail("topk", "give at least one k, e.g. topk = [1]");
        for (int64_t k : ks) {
          if (k < 1) options.Fail("topk", absl::StrCat("k = ", k, ": every k is at least 1"));
        }
        return std::make_shared<Accuracy>(std::move(ks));
      });
}

}  // namespace classification
