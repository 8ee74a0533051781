// mlic_heads::MultiLabelF1: the threshold metrics of multi-label image classification reported next
// to mAP (ML-GCN, ASL, PSD): per-class (CP, CR, CF1) and overall (OP, OR, OF1) precision, recall
// and F1, at each of a list of thresholds, for all predictions and for each image's top k. The
// counting follows the official PSD evaluation (utils/util.py, AveragePrecisionMeter.evaluation and
// overall_topk). Logits and labels of a whole pass are kept on the CPU in float64.
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
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

struct F1Options {
  std::vector<double> thresholds;
  int64_t top_k = 3;
  bool skip_absent_classes = true;
  bool guard_pooled_precision = true;
};

F1Options ReadOptions(const kd::Options& options) {
  F1Options o;
  o.thresholds = options.FloatList("thresholds");
  if (o.thresholds.empty()) options.Fail("thresholds", "give at least one threshold, e.g. [0.5]");
  o.top_k = options.Int("top_k");
  o.skip_absent_classes = options.String("absent_class_recall") == "skip";
  o.guard_pooled_precision = options.Bool("guard_pooled_precision");
  return o;
}

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// 2PR / (P + R); 0 when both are 0, NaN when either is.
double F1(double precision, double recall) {
  if (std::isnan(precision) || std::isnan(recall)) return kNaN;
  const double sum = precision + recall;
  return sum == 0 ? 0.0 : 2 * precision * recall / sum;
}

struct Scores {
  double cp, cr, cf1, op, or_, of1;
};

// From [N, K] booleans `predicted` and `positive`, per class k: Nc (correct predictions), Np
// (predictions), Ng (positives). As the official evaluation:
//   - a class that is never predicted counts Np = 1, so its precision Nc / Np is 0, and (with
//     guard_pooled_precision) the 1 is also in OP's denominator sum_k Np;
//   - CP = mean over all K classes of Nc / Np; CF1 = 2 CP CR / (CP + CR) from the two averages;
//   - OP = sum Nc / sum Np, OR = sum Nc / sum Ng, OF1 = 2 OP OR / (OP + OR).
// A class without any positive has no recall (the official code gives NaN for CR): it is left out
// of CR's average (skip_absent_classes) or counts 0. OR is NaN when there is no positive at all.
Scores Count(const torch::Tensor& predicted, const torch::Tensor& positive, const F1Options& o) {
  const torch::Tensor nc = (predicted & positive).sum(0).to(torch::kDouble);
  const torch::Tensor np_raw = predicted.sum(0).to(torch::kDouble);
  const torch::Tensor ng = positive.sum(0).to(torch::kDouble);
  const torch::Tensor np = np_raw.clamp_min(1);
  const int64_t num_classes = nc.size(0);

  const double cp = (nc / np).sum().item<double>() / static_cast<double>(num_classes);
  const torch::Tensor has_positive = ng > 0;
  const torch::Tensor class_recall = torch::where(has_positive, nc / ng.clamp_min(1), 0.0);
  const int64_t recall_classes =
      o.skip_absent_classes ? has_positive.sum().item<int64_t>() : num_classes;
  const double cr = recall_classes == 0
                        ? kNaN
                        : class_recall.sum().item<double>() / static_cast<double>(recall_classes);

  const double correct = nc.sum().item<double>();
  const double predictions = (o.guard_pooled_precision ? np : np_raw).sum().item<double>();
  const double positives = ng.sum().item<double>();
  const double op = predictions == 0 ? 0.0 : correct / predictions;
  const double or_ = positives == 0 ? kNaN : correct / positives;
  return {cp, cr, F1(cp, cr), op, or_, F1(op, or_)};
}

// The official overall_topk: a label counts as predicted when it is among its image's k highest
// logits (ties go to the lower class index) and its score reaches the threshold.
torch::Tensor TopK(const torch::Tensor& logits, int64_t k) {
  const int64_t keep = std::min<int64_t>(k, logits.size(1));
  // A stable descending sort keeps equal logits in class order.
  const torch::Tensor order =
      std::get<1>(logits.sort(/*stable=*/true, /*dim=*/1, /*descending=*/true));
  torch::Tensor in_top = torch::zeros_like(logits, torch::kBool);
  in_top.scatter_(1, order.narrow(1, 0, keep), true);
  return in_top;
}

class MultiLabelF1 : public kd::Metric {
 public:
  explicit MultiLabelF1(const F1Options& o) : o_(o) {}

  void Reset() override {
    logits_.clear();
    labels_.clear();
  }

  void Update(const kd::TensorDict& outputs, const kd::TensorDict& batch) override {
    const torch::Tensor& logits = outputs.at("logits");
    const torch::Tensor& labels = batch.at("labels");
    CheckMetricInputs("mlic_heads::MultiLabelF1", logits, labels,
                      logits_.empty() ? -1 : logits_.front().size(1));
    logits_.push_back(logits.detach().to(torch::kCPU, torch::kDouble));
    labels_.push_back(labels.detach().to(torch::kCPU, torch::kDouble));
  }

  std::vector<kd::MetricValue> Compute() const override {
    // Nothing evaluated: every value is NaN, as mAP's.
    const bool empty = logits_.empty();
    torch::Tensor logits, positive, valid, scores, in_top;
    if (!empty) {
      logits = torch::cat(logits_);
      const torch::Tensor labels = torch::cat(labels_);
      positive = labels > 0.5;
      // Entries labelled -1 (ignored) are neither predictions nor ground truth.
      valid = labels >= 0;
      scores = torch::sigmoid(logits);
      if (o_.top_k > 0) in_top = TopK(logits, o_.top_k);
    }
    const Scores none{kNaN, kNaN, kNaN, kNaN, kNaN, kNaN};
    std::vector<kd::MetricValue> values;
    for (double threshold : o_.thresholds) {
      Add(values, absl::StrCat("@", threshold),
          empty ? none : Count((scores >= threshold) & valid, positive, o_));
    }
    if (o_.top_k > 0) {
      for (double threshold : o_.thresholds) {
        Add(values, absl::StrCat("@", threshold, "/top", o_.top_k),
            empty ? none : Count((scores >= threshold) & in_top & valid, positive, o_));
      }
    }
    return values;
  }

 private:
  // CF1 first: it is the metric's primary value.
  static void Add(std::vector<kd::MetricValue>& values, const std::string& suffix,
                  const Scores& s) {
    values.push_back({"CF1" + suffix, 100 * s.cf1});
    values.push_back({"CP" + suffix, 100 * s.cp});
    values.push_back({"CR" + suffix, 100 * s.cr});
    values.push_back({"OF1" + suffix, 100 * s.of1});
    values.push_back({"OP" + suffix, 100 * s.op});
    values.push_back({"OR" + suffix, 100 * s.or_});
  }

  F1Options o_;
  std::vector<torch::Tensor> logits_;  // [B, K] float64 logits per Update
  std::vector<torch::Tensor> labels_;  // [B, K] float64 multi-hot labels per Update
};

}  // namespace

void RegisterMultiLabelF1(kd::Registrar& registrar) {
  registrar.Add(
      kd::Kind::kMetric, "MultiLabelF1",
      "CP, CR, CF1 (class-averaged) and OP, OR, OF1 (pooled) of sigmoid(logits) >= threshold, "
      "x100, for every threshold and for each image's top k; values CF1@0.5, OP@0.8/top3, ...; "
      "the first is CF1 at the first threshold",
      kd::Schema()
          .FloatList("thresholds", {0.5, 0.8},
                     "a label is predicted when its sigmoid score is >= the threshold (the "
                     "official PSD evaluation uses 0.8)")
          .Min(0)
          .Max(1)
          .Int("top_k", 3,
               "also report each threshold's values with only the image's k highest scores "
               "predicted (names end in /top<k>); 0: no top-k values")
          .Min(0)
          .Enum("absent_class_recall", {"skip", "zero"}, "skip",
                "a class without any positive image has no recall: leave it out of CR's average "
                "(skip), or count it as 0; its precision (0) always counts in CP")
          .Bool("guard_pooled_precision", true,
                "count a never-predicted class as 1 prediction in OP's denominator too, as the "
                "official code does (false: OP = correct / predictions)"),
      [](const kd::Options& options, const kd::BuildContext&) {
        return std::make_shared<MultiLabelF1>(ReadOptions(options));
      });
}

}  // namespace mlic_heads
