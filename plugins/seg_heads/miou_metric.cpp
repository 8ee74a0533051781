// seg_heads::mIoU: mean intersection over union from one confusion matrix over the whole
// evaluation set (not a mean of per-image scores), with both conventions for absent classes.
#include <torch/torch.h>

#include <cmath>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "components.h"
#include "kd/metric.h"
#include "kd/registry.h"
#include "miou.h"
#include "seg_losses/seg_losses.h"

namespace seg_heads {

void AddToConfusion(torch::Tensor& confusion, const torch::Tensor& predicted,
                    const torch::Tensor& target, int64_t ignore_index) {
  const int64_t k = confusion.size(0);
  const torch::Tensor labelled = target != ignore_index;
  const torch::Tensor t = target.masked_select(labelled).to(torch::kCPU, torch::kLong);
  const torch::Tensor p = predicted.masked_select(labelled).to(torch::kCPU, torch::kLong);
  confusion += torch::bincount(t * k + p, /*weights=*/{}, k * k).reshape({k, k});
}

IouSummary SummarizeConfusion(const torch::Tensor& confusion) {
  const torch::Tensor m = confusion.to(torch::kDouble);
  const int64_t k = m.size(0);
  const torch::Tensor tp = m.diagonal();
  const torch::Tensor labelled = m.sum(1);
  const torch::Tensor predicted = m.sum(0);
  const torch::Tensor unions = labelled + predicted - tp;
  IouSummary s;
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double total = m.sum().item<double>();
  double sum_zero = 0;
  double sum_present = 0;
  int64_t present = 0;
  double sum_recall = 0;
  int64_t labelled_classes = 0;
  for (int64_t c = 0; c < k; ++c) {
    const double u = unions[c].item<double>();
    const double t = tp[c].item<double>();
    const double iou = u > 0 ? t / u : nan;
    s.iou.push_back(iou);
    if (u > 0) {
      sum_zero += iou;
      sum_present += iou;
      ++present;
    }
    const double l = labelled[c].item<double>();
    if (l > 0) {
      sum_recall += t / l;
      ++labelled_classes;
    }
  }
  if (total <= 0) {
    s.miou_zero = s.miou_present = s.pixel_accuracy = s.mean_accuracy = nan;
    return s;
  }
  s.miou_zero = sum_zero / static_cast<double>(k);
  s.miou_present = sum_present / static_cast<double>(present);
  s.pixel_accuracy = tp.sum().item<double>() / total;
  s.mean_accuracy = sum_recall / static_cast<double>(labelled_classes);
  return s;
}

namespace {

struct MiouOptions {
  int64_t num_classes = 0;
  int64_t ignore_index = 255;
  std::string logits_key;
  std::string mask_key;
  bool per_class = true;
  std::vector<std::string> class_names;
};

class Miou : public kd::Metric {
 public:
  explicit Miou(MiouOptions o) : o_(std::move(o)) { Reset(); }

  void Reset() override {
    confusion_ = torch::zeros({o_.num_classes, o_.num_classes}, torch::kLong);
  }

  void Update(const kd::TensorDict& outputs, const kd::TensorDict& batch) override {
    torch::NoGradGuard no_grad;
    const torch::Tensor& target = batch.at(o_.mask_key);
    const torch::Tensor logits = outputs.at(o_.logits_key);
    if (logits.dim() != 4 || logits.size(1) != o_.num_classes) {
      throw kd::Error(absl::InvalidArgumentError(absl::StrCat(
          "seg_heads::mIoU: expected '", o_.logits_key, "' of shape [B, ", o_.num_classes,
          ", h, w], got ", c10::str(logits.sizes()), "; set num_classes to the head's")));
    }
    const torch::Tensor up = seg_losses::Upsample(logits, target.size(-2), target.size(-1));
    seg_losses::CheckLabels(up, target, o_.ignore_index, "seg_heads::mIoU");
    AddToConfusion(confusion_, up.argmax(1), target, o_.ignore_index);
  }

  std::vector<kd::MetricValue> Compute() const override {
    const IouSummary s = SummarizeConfusion(confusion_);
    std::vector<kd::MetricValue> values = {{"mIoU", 100 * s.miou_zero},
                                           {"mIoU_present", 100 * s.miou_present},
                                           {"aAcc", 100 * s.pixel_accuracy},
                                           {"mAcc", 100 * s.mean_accuracy}};
    if (o_.per_class) {
      for (size_t c = 0; c < s.iou.size(); ++c) {
        values.push_back({absl::StrCat("IoU.", o_.class_names[c]), 100 * s.iou[c]});
      }
    }
    return values;
  }

 private:
  MiouOptions o_;
  torch::Tensor confusion_;
};

MiouOptions ReadOptions(const kd::Options& options, const kd::BuildContext& ctx) {
  MiouOptions o;
  o.num_classes = options.Int("num_classes");
  const kd::DatasetInfo* info = ctx.dataset_info();
  if (o.num_classes == 0) {
    if (info == nullptr || info->class_names.empty()) {
      options.Fail("num_classes",
                   "num_classes = 0 takes the class count from the data, which names no "
                   "classes here; set num_classes");
    }
    o.num_classes = static_cast<int64_t>(info->class_names.size());
  }
  o.ignore_index = options.Int("ignore_index");
  o.logits_key = options.String("logits_key");
  o.mask_key = options.String("mask_key");
  o.per_class = options.Bool("per_class");
  for (int64_t c = 0; c < o.num_classes; ++c) {
    const bool named =
        info != nullptr && static_cast<int64_t>(info->class_names.size()) == o.num_classes;
    o.class_names.push_back(named ? info->class_names[c] : absl::StrCat(c));
  }
  return o;
}

}  // namespace

void RegisterMiou(kd::Registrar& registrar) {
  registrar.Add(
      kd::Kind::kMetric, "mIoU",
      "mean IoU from a confusion matrix over the whole set: mIoU (absent classes count 0), "
      "mIoU_present (absent classes skipped), aAcc, mAcc, IoU.<class>; x100",
      kd::Schema()
          .Int("num_classes", 0, "classes K; 0: the number of class names of the data")
          .Min(0)
          .Int("ignore_index", 255, "label of pixels that are not scored")
          .String("logits_key", "logits",
                  "output with [B, K, h, w] logits, bilinearly resized (align_corners) to the "
                  "mask")
          .String("mask_key", "mask", "batch key of the [B, H, W] int64 labels")
          .Bool("per_class", true, "also report IoU.<class name> for every class"),
      [](const kd::Options& o, const kd::BuildContext& ctx) {
        return std::make_shared<Miou>(ReadOptions(o, ctx));
      });
}

}  // namespace seg_heads
