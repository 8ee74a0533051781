// The RDD formulas (see rdd_loss.h).
#include "rdd_loss.h"

#include <torch/torch.h>

#include "seg_losses/seg_losses.h"

namespace rdd {

torch::Tensor RelativeDifficulty(const torch::Tensor& teacher_main,
                                 const torch::Tensor& teacher_aux, TfeDirection direction) {
  torch::NoGradGuard no_grad;
  const torch::Tensor log_main = torch::log_softmax(teacher_main.to(torch::kFloat), 1);
  const torch::Tensor aux =
      seg_losses::Upsample(teacher_aux, teacher_main.size(2), teacher_main.size(3));
  const torch::Tensor log_aux = torch::log_softmax(aux.to(torch::kFloat), 1);
  const torch::Tensor divergence = direction == TfeDirection::kAuxToMain
                                       ? (log_aux.exp() * (log_aux - log_main)).sum(1)
                                       : (log_main.exp() * (log_main - log_aux)).sum(1);
  return torch::exp(-divergence);
}

torch::Tensor TfeTaskLoss(const torch::Tensor& student_main, const torch::Tensor& student_aux,
                          const torch::Tensor& difficulty, const torch::Tensor& target,
                          int64_t ignore_index, double aux_weight) {
  const int64_t height = target.size(1);
  const int64_t width = target.size(2);
  const torch::Tensor main = seg_losses::Upsample(student_main, height, width);
  seg_losses::CheckLabels(main, target, ignore_index, "rdd::RDD (TFE)");
  torch::Tensor ce = seg_losses::PixelCrossEntropy(main, target, ignore_index);
  if (student_aux.defined() && aux_weight != 0) {
    ce = ce +
         aux_weight * seg_losses::PixelCrossEntropy(
                          seg_losses::Upsample(student_aux, height, width), target, ignore_index);
  }
  const torch::Tensor weights =
      seg_losses::Upsample(difficulty.unsqueeze(1).to(ce.scalar_type()), height, width).squeeze(1);
  return (ce * weights).mean();
}

torch::Tensor TseSelection(const torch::Tensor& student, const torch::Tensor& teacher,
                           const torch::Tensor& target, int64_t ignore_index,
                           const HardPixelRule& rule, Selection selection) {
  const int64_t height = target.size(1);
  const int64_t width = target.size(2);
  const torch::Tensor s = seg_losses::Upsample(student.detach(), height, width);
  seg_losses::CheckLabels(s, target, ignore_index, "rdd::RDD (TSE)");
  const torch::Tensor hard_student = seg_losses::HardPixels(s, target, ignore_index, rule.thresh,
                                                            rule.min_kept, rule.chunk_images);
  if (selection == Selection::kOhem) return hard_student;
  const torch::Tensor hard_teacher =
      seg_losses::HardPixels(seg_losses::Upsample(teacher.detach(), height, width), target,
                             ignore_index, rule.thresh, rule.min_kept, rule.chunk_images);
  switch (selection) {
    case Selection::kXor:
      return hard_student.logical_xor(hard_teacher);
    case Selection::kAnd:
      return hard_student.logical_and(hard_teacher);
    default:
      return hard_student.logical_or(hard_teacher);
  }
}

}  // namespace rdd
