// The segmentation cross-entropy pieces (see seg_losses.h for the behaviour each one follows).
#include "seg_losses/seg_losses.h"

#include <torch/torch.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "kd/error.h"

namespace seg_losses {

torch::Tensor Upsample(const torch::Tensor& logits, int64_t height, int64_t width) {
  if (logits.size(2) == height && logits.size(3) == width) return logits;
  namespace F = torch::nn::functional;
  return F::interpolate(logits, F::InterpolateFuncOptions()
                                    .size(std::vector<int64_t>{height, width})
                                    .mode(torch::kBilinear)
                                    .align_corners(true));
}

void CheckLabels(const torch::Tensor& logits, const torch::Tensor& target, int64_t ignore_index,
                 const char* where) {
  if (logits.dim() != 4 || target.dim() != 3 || logits.size(0) != target.size(0) ||
      logits.size(2) != target.size(1) || logits.size(3) != target.size(2)) {
    throw kd::Error(absl::InvalidArgumentError(absl::StrCat(
        where, ": logits ", c10::str(logits.sizes()), " and labels ", c10::str(target.sizes()),
        " do not describe the same pixels; expected [B, C, H, W] and [B, H, W]")));
  }
  if (target.scalar_type() != torch::kLong) {
    throw kd::Error(absl::InvalidArgumentError(absl::StrCat(
        where, ": labels must be int64 class indices, got ", c10::toString(target.scalar_type()))));
  }
  const torch::Tensor bad =
      (target != ignore_index).logical_and(target.lt(0).logical_or(target.ge(logits.size(1))));
  if (bad.any().item<bool>()) {
    const int64_t value = target.masked_select(bad)[0].item<int64_t>();
    throw kd::Error(absl::InvalidArgumentError(absl::StrCat(
        where, ": a pixel is labelled ", value, ", outside the ", logits.size(1), " classes [0, ",
        logits.size(1) - 1, "] and not the ignore index ", ignore_index,
        "; check the dataset's label mapping and the head's num_classes")));
  }
}

torch::Tensor PixelCrossEntropy(const torch::Tensor& logits, const torch::Tensor& target,
                                int64_t ignore_index) {
  namespace F = torch::nn::functional;
  return F::cross_entropy(
      logits, target,
      F::CrossEntropyFuncOptions().ignore_index(ignore_index).reduction(torch::kNone));
}

torch::Tensor MeanCrossEntropy(const torch::Tensor& logits, const torch::Tensor& target,
                               const torch::Tensor& class_weights, int64_t ignore_index,
                               const torch::Tensor& selected) {
  torch::Tensor use = target != ignore_index;
  if (selected.defined()) use = use.logical_and(selected);
  const torch::Tensor safe_target = torch::where(use, target, torch::zeros_like(target));
  const torch::Tensor ce = PixelCrossEntropy(logits, safe_target, -100);
  torch::Tensor w = use.to(ce.scalar_type());
  if (class_weights.defined()) {
    w = w * class_weights.to(ce.device(), ce.scalar_type()).index({safe_target});
  }
  const torch::Tensor denominator = w.sum();
  // With nothing selected both sums are 0; dividing by 1 instead keeps the result an exact 0.
  return (ce * w).sum() / torch::where(denominator > 0, denominator, torch::ones_like(denominator));
}

torch::Tensor HardPixels(const torch::Tensor& logits, const torch::Tensor& target,
                         int64_t ignore_index, double thresh, int64_t min_kept,
                         int64_t chunk_images) {
  torch::NoGradGuard no_grad;
  const torch::Tensor labelled = target != ignore_index;
  const torch::Tensor safe_target = torch::where(labelled, target, torch::zeros_like(target));
  // g: probability of the labelled class; 1 at ignored pixels, as the official code fills them.
  const torch::Tensor g =
      torch::where(labelled,
                   torch::softmax(logits.detach().to(torch::kFloat), 1)
                       .gather(1, safe_target.unsqueeze(1))
                       .squeeze(1),
                   torch::ones_like(target, torch::TensorOptions().dtype(torch::kFloat)));
  torch::Tensor hard = torch::zeros_like(labelled);
  const int64_t batch = target.size(0);
  const int64_t chunk = std::max<int64_t>(1, chunk_images);
  for (int64_t begin = 0; begin < batch; begin += chunk) {
    const int64_t end = std::min(batch, begin + chunk);
    const torch::Tensor part = g.slice(0, begin, end);
    double threshold = thresh;
    if (min_kept > 0) {
      const int64_t k = std::min<int64_t>(part.numel(), min_kept);
      const double kth = std::get<0>(part.reshape({-1}).kthvalue(k)).item<double>();
      threshold = std::max(thresh, kth);
    }
    hard.slice(0, begin, end).copy_(labelled.slice(0, begin, end).logical_and(part.le(threshold)));
  }
  return hard;
}

const std::vector<double>& CityscapesClassWeights() {
  static const auto* weights = new std::vector<double>{
      0.8373, 0.918,  0.866,  1.0345, 1.0166, 0.9969, 0.9754, 1.0489, 0.8786, 1.0023,
      0.9539, 0.9843, 1.1116, 0.9037, 1.0865, 1.0955, 1.0865, 1.1529, 1.0507};
  return *weights;
}

}  // namespace seg_losses
