// mlic_heads::mAP: mean average precision over classes, the headline metric of multi-label image
// classification (COCO, NUS-WIDE, VOC). Scores and labels of a whole evaluation pass are kept on
// the CPU in float64 and ranked per class in Compute().
#include <torch/torch.h>

#include <algorithm>
#include <limits>
#include <memory>
#include <numeric>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "components.h"
#include "input_checks.h"
#include "kd/error.h"
#include "kd/metric.h"
#include "kd/registry.h"

namespace mlic_heads {
namespace {

// Non-interpolated average precision of one class over n images: rank the images by score,
// descending (ties keep their order of arrival), and average the precision at the rank of each
// positive: AP = (1 / P) * sum over positives at rank r of (positives in the top r) / r, the
// formula of the ML-GCN and ASL evaluation code. nullopt when the class has no positive (AP is
// undefined). Images whose label is negative (-1: ignored) take no rank, as the ML-GCN AP meter
// skips difficult examples. `order` is scratch space of size n.
std::optional<double> AveragePrecision(const double* scores, const double* labels, int64_t n,
                                       std::vector<int64_t>& order) {
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [scores](int64_t a, int64_t b) { return scores[a] > scores[b]; });
  int64_t positives = 0, rank = 0;
  double precision_sum = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double label = labels[order[i]];
    if (label < 0) continue;  // ignored (e.g. VOC "difficult"): not ranked at all
    ++rank;
    if (label > 0.5) {
      ++positives;
      precision_sum += static_cast<double>(positives) / static_cast<double>(rank);
    }
  }
  if (positives == 0) return std::nullopt;
  return precision_sum / static_cast<double>(positives);
}

class MeanAveragePrecision : public kd::Metric {
 public:
  void Reset() override {
    scores_.clear();
    labels_.clear();
  }

  void Update(const kd::TensorDict& outputs, const kd::TensorDict& batch) override {
    const torch::Tensor& logits = outputs.at("logits");
    const torch::Tensor& labels = batch.at("labels");
    CheckMetricInputs("mlic_heads::mAP", logits, labels,
                      scores_.empty() ? -1 : scores_.front().size(1));
    // The sigmoid is taken in float64 so that confident logits do not saturate to 1.0f and tie.
    scores_.push_back(torch::sigmoid(logits.detach().to(torch::kCPU, torch::kDouble)));
    labels_.push_back(labels.detach().to(torch::kCPU, torch::kDouble));
  }

  std::vector<kd::MetricValue> Compute() const override {
    double ap_sum = 0;
    int64_t classes_with_positives = 0;
    if (!scores_.empty()) {
      // [K, N]: one contiguous row of scores and labels per class.
      const torch::Tensor scores = torch::cat(scores_).t().contiguous();
      const torch::Tensor labels = torch::cat(labels_).t().contiguous();
      const int64_t num_classes = scores.size(0);
      const int64_t n = scores.size(1);
      std::vector<int64_t> order(n);
      for (int64_t k = 0; k < num_classes; ++k) {
        const std::optional<double> ap = AveragePrecision(
            scores.data_ptr<double>() + k * n, labels.data_ptr<double>() + k * n, n, order);
        // A class without any positive in the evaluated images has no AP; it is left out of the
        // mean rather than counted as 0 or 1.
        if (!ap) continue;
        ap_sum += *ap;
        ++classes_with_positives;
      }
    }
    const double map = classes_with_positives == 0
                           ? std::numeric_limits<double>::quiet_NaN()
                           : 100.0 * ap_sum / static_cast<double>(classes_with_positives);
    return {{"mAP", map}};
  }

 private:
  std::vector<torch::Tensor> scores_;  // [B, K] float64 sigmoid scores per Update
  std::vector<torch::Tensor> labels_;  // [B, K] float64 multi-hot labels per Update
};

}  // namespace

void RegisterMeanAveragePrecision(kd::Registrar& registrar) {
  registrar.Add(
      kd::Kind::kMetric, "mAP",
      "mean over classes of non-interpolated AP of sigmoid(logits) vs labels, x100; classes "
      "without a positive in the evaluated set are left out (NaN if none has one)",
      kd::Schema(), [](const kd::Options&, const kd::BuildContext&) {
        return std::make_shared<MeanAveragePrecision>();
      });
}

}  // namespace mlic_heads
