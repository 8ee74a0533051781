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

DkdTerms Dkd(const torch::Tensor& student, const torch::Tensor& teacher,
             const torch::Tensor& labels, double temperature) {
  CheckSameShape("DKD", student, teacher);
  if (student.dim() != 2 || labels.dim() != 1 || labels.size(0) != student.size(0)) {
    throw kd::Error(absl::InvalidArgumentError(
        absl::StrCat("DKD: expected [N, classes] logits and [N] class indices, got logits ",
                     c10::str(student.sizes()), " and labels ", c10::str(labels.sizes()),
                     "; DKD needs one class per sample (single-label softmax logits)")));
  }
  const int64_t n = student.size(0);
  const double t2 = temperature * temperature;
  const torch::Tensor target = torch::one_hot(labels, student.size(1)).to(student.dtype());
  const torch::Tensor s = student / temperature;
  const torch::Tensor t = teacher.detach() / temperature;
  // TCKD: KL between the binary (target, rest) distributions.
  const torch::Tensor p_s = torch::softmax(s, 1);
  const torch::Tensor p_t = torch::softmax(t, 1);
  const torch::Tensor b_s = torch::stack({(p_s * target).sum(1), (p_s * (1 - target)).sum(1)}, 1);
  const torch::Tensor b_t = torch::stack({(p_t * target).sum(1), (p_t * (1 - target)).sum(1)}, 1);
  const torch::Tensor tckd =
      torch::xlogy(b_t, b_t).sub(b_t * b_s.log()).sum() * t2 / static_cast<double>(n);
  // NCKD: KL between the distributions over the non-target classes.
  const torch::Tensor log_q = torch::log_softmax(s - 1000.0 * target, 1);
  const torch::Tensor q_t = torch::softmax(t - 1000.0 * target, 1);
  const torch::Tensor nckd =
      torch::xlogy(q_t, q_t).sub(q_t * log_q).sum() * t2 / static_cast<double>(n);
  return {tckd, nckd};
}

namespace {

// 1 − the mean over rows of the Pearson correlation between the rows of a and b.
torch::Tensor OneMinusPearson(const torch::Tensor& a, const torch::Tensor& b) {
  constexpr double kEps = 1e-8;
  const torch::Tensor ca = a - a.mean(1, /*keepdim=*/true);
  const torch::Tensor cb = b - b.mean(1, /*keepdim=*/true);
  const torch::Tensor cosine = (ca * cb).sum(1) / (ca.norm(2, 1) * cb.norm(2, 1) + kEps);
  return 1 - cosine.mean();
}

}  // namespace

DistTerms Dist(const torch::Tensor& student, const torch::Tensor& teacher, double tau) {
  CheckSameShape("DIST", student, teacher);
  if (student.dim() != 2) {
    throw kd::Error(absl::InvalidArgumentError(
        absl::StrCat("DIST: expected [N, classes] logits, got shape ", c10::str(student.sizes()))));
  }
  const torch::Tensor y_s = torch::softmax(student / tau, 1);
  const torch::Tensor y_t = torch::softmax(teacher.detach() / tau, 1);
  const double t2 = tau * tau;
  return {OneMinusPearson(y_s, y_t) * t2, OneMinusPearson(y_s.t(), y_t.t()) * t2};
}

}  // namespace logit_losses
