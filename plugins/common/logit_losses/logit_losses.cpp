// The logit distillation formulas (see logit_losses.h for the sources).
#include "logit_losses/logit_losses.h"

#include <torch/torch.h>

#include "absl/strings/str_cat.h"
#include "kd/error.h"

namespace logit_losses {

namespace {

// Student and teacher logits must describe the same labels of the same samples.
void CheckSameShape(absl::string_view loss, const torch::Tensor& student,
                    const torch::Tensor& teacher) {
  if (student.sizes() != teacher.sizes()) {
    throw kd::Error(absl::InvalidArgumentError(
        absl::StrCat(loss, ": student logits have shape ", c10::str(student.sizes()),
                     " but the teacher's have shape ", c10::str(teacher.sizes()),
                     "; the teacher must predict the same labels as the student")));
  }
}

}  // namespace

torch::Tensor SoftmaxKd(const torch::Tensor& student, const torch::Tensor& teacher,
                        double temperature) {
  CheckSameShape("KD", student, teacher);
  if (student.dim() != 2) {
    throw kd::Error(absl::InvalidArgumentError(absl::StrCat(
        "KD (softmax): expected [batch, classes] logits, got shape ", c10::str(student.sizes()))));
  }
  const torch::Tensor log_q = torch::log_softmax(student / temperature, -1);
  const torch::Tensor log_p = torch::log_softmax(teacher.detach() / temperature, -1);
  const torch::Tensor kl = (log_p.exp() * (log_p - log_q)).sum();
  return kl / student.size(0) * (temperature * temperature);
}

torch::Tensor MultiLabelKd(const torch::Tensor& student, const torch::Tensor& teacher,
                           double temperature) {
  CheckSameShape("KD (multilabel)", student, teacher);
  const torch::Tensor s = student / temperature;
  const torch::Tensor t = teacher.detach() / temperature;
  // log σ(x) and log(1 − σ(x)) = log σ(−x).
  const torch::Tensor log_p = torch::log_sigmoid(t);
  const torch::Tensor log_not_p = torch::log_sigmoid(-t);
  const torch::Tensor log_q = torch::log_sigmoid(s);
  const torch::Tensor log_not_q = torch::log_sigmoid(-s);
  const torch::Tensor kl =
      log_p.exp() * (log_p - log_q) + log_not_p.exp() * (log_not_p - log_not_q);
  return kl.mean() * (temperature * temperature);
}

namespace {

void CheckDense(absl::string_view loss, const torch::Tensor& student) {
  if (student.dim() != 4) {
    throw kd::Error(absl::InvalidArgumentError(
        absl::StrCat(loss, ": expected dense [batch, channels, height, width] maps, got shape ",
                     c10::str(student.sizes()))));
  }
}

// KL(p ‖ q) summed over `dim` and every other element, from logits already divided by T.
torch::Tensor KlSum(const torch::Tensor& student, const torch::Tensor& teacher, int64_t dim) {
  const torch::Tensor log_q = torch::log_softmax(student, dim);
  const torch::Tensor log_p = torch::log_softmax(teacher, dim);
  return (log_p.exp() * (log_p - log_q)).sum();
}

}  // namespace

torch::Tensor PixelKd(const torch::Tensor& student, const torch::Tensor& teacher,
                      double temperature) {
  CheckSameShape("PixelKD", student, teacher);
  CheckDense("PixelKD", student);
  const double pixels = static_cast<double>(student.size(0) * student.size(2) * student.size(3));
  return KlSum(student / temperature, teacher.detach() / temperature, 1) / pixels *
         (temperature * temperature);
}

torch::Tensor ChannelWiseKd(const torch::Tensor& student, const torch::Tensor& teacher,
                            double temperature) {
  CheckSameShape("CWD", student, teacher);
  CheckDense("CWD", student);
  const int64_t b = student.size(0);
  const int64_t c = student.size(1);
  const torch::Tensor s = (student / temperature).reshape({b, c, -1});
  const torch::Tensor t = (teacher.detach() / temperature).reshape({b, c, -1});
  return KlSum(s, t, 2) / static_cast<double>(b * c) * (temperature * temperature);
}

torch::Tensor LogitMse(const torch::Tensor& student, const torch::Tensor& teacher,
                       Reduction reduction) {
  CheckSameShape("LogitMSE", student, teacher);
  const torch::Tensor squared = (student - teacher.detach()).pow(2);
  return reduction == Reduction::kSum ? squared.sum() : squared.mean();
}

}  // namespace logit_losses
