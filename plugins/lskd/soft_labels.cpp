#include "soft_labels.h"

#include <torch/torch.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "kd/error.h"

namespace lskd {

torch::Tensor OneHot(const torch::Tensor& labels, int64_t classes) {
  if (labels.dim() != 1) {
    throw kd::Error(absl::InvalidArgumentError(
        absl::StrCat("LS-KD: rel_labels has shape ", c10::str(labels.sizes()), "; expected [R]")));
  }
  const torch::Tensor as_long = labels.to(torch::kLong);
  if (labels.numel() > 0 && ((as_long < 0) | (as_long >= classes)).any().item<bool>()) {
    throw kd::Error(absl::InvalidArgumentError(
        absl::StrCat("LS-KD: rel_labels holds a predicate outside [0, ", classes - 1,
                     "]; the logits have ", classes, " classes (background and the predicates)")));
  }
  return torch::one_hot(as_long, classes).to(torch::kFloat);
}

torch::Tensor SoftLabels(const torch::Tensor& teacher_logits, const torch::Tensor& labels,
                         const SoftLabelOptions& options) {
  if (teacher_logits.dim() != 2 || teacher_logits.size(1) < 2 ||
      labels.sizes() != torch::IntArrayRef({teacher_logits.size(0)})) {
    throw kd::Error(absl::InvalidArgumentError(
        absl::StrCat("LS-KD: teacher logits ", c10::str(teacher_logits.sizes()), " and labels ",
                     c10::str(labels.sizes()), " must be [R, P + 1] (P >= 1) and [R]")));
  }
  torch::NoGradGuard no_grad;
  const int64_t classes = teacher_logits.size(1);
  const torch::Tensor t = teacher_logits.detach().to(torch::kFloat) / options.tau;
  const torch::Tensor positive = (labels > 0).unsqueeze(1);
  torch::Tensor lsd = torch::softmax(t, 1);
  if (options.positive_lsd == PositiveLsd::kForeground) {
    const torch::Tensor foreground = torch::cat(
        {torch::zeros_like(t.narrow(1, 0, 1)), torch::softmax(t.narrow(1, 1, classes - 1), 1)}, 1);
    lsd = torch::where(positive, foreground, lsd);
  }
  const torch::Tensor is_positive = positive.to(torch::kFloat);
  const torch::Tensor alpha =
      is_positive * options.alpha_pos + (1 - is_positive) * options.alpha_neg;
  return (1 - alpha) * OneHot(labels, classes) + alpha * lsd;
}

double ScheduledAlpha(double alpha, AlphaSchedule schedule, const kd::StepInfo& step) {
  if (schedule == AlphaSchedule::kConstant || step.total_epochs <= 0) return alpha;
  return alpha * std::min(1.0, static_cast<double>(step.epoch + 1) /
                                   static_cast<double>(step.total_epochs));
}

}  // namespace lskd
